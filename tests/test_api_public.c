/* test_api_public — the public API as a program outside the tree sees it: only
 * include/dfd/ is included here. The result accessors say what the result's JSON says
 * (files, faces, frames, tracks, scores) for a photo and a clip, and answer NULL results
 * and out-of-range indices without crashing; dfd_sniff_file, dfd_probe_file, dfd_faces_file
 * (whose video tracks are the analysis's: the same count as the result's faces on the
 * same frames) and dfd_png_write; the train, eval and prepare options by name (known
 * names set, unknown names and bad values refused with the option named); dfd_model_info
 * and dfd_model_import's refusals; what the server needs and a program may use alike:
 * dfd_check_file (the analysis's rule and message), dfd_analyze_file_as (the result and
 * its messages name the given name, never the path), dfd_find_models (what dfd_ctx_create
 * loads), dfd_cpu_count and dfd_log.
 * Uses examples/ and the shipped models; the parts needing models skip without them. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "dfd/dfd.h"
#include "dfd/model.h"
#include "dfd/train.h"

static char *example(const char *name) {
    char *dir = tu_join(tu_source_dir(), "examples");
    char *p = tu_join(dir, name);
    free(dir);
    return p;
}

static int have_models(void) {
    char p[4096];
    snprintf(p, sizeof p, "%s/models/registry/blazeface-short.safetensors", tu_source_dir());
    if (access(p, R_OK) == 0) return 1;
    print_message("skipped: %s missing (run ./setup.sh)\n", p);
    return 0;
}

static dfd_ctx *open_ctx(void) { return tu_ctx_open(10); }

static json_t *parse(const char *s) {
    json_error_t e;
    json_t *j = s ? json_loads(s, 0, &e) : NULL;
    if (!j) fail_msg("invalid JSON: %s", s ? e.text : "(null)");
    return j;
}

static void assert_same_number(double a, json_t *j) {
    if (json_is_null(j) || !j) {
        assert_true(isnan(a));
        return;
    }
    assert_true(fabs(a - json_number_value(j)) < 1e-5);
}

static void null_and_out_of_range(void **state) {
    (void)state;
    dfd_face_info fi;
    dfd_frame_info fr;
    dfd_frame_face ff;
    assert_null(dfd_result_file(NULL));
    assert_int_equal(dfd_result_media(NULL), DFD_MEDIA_UNKNOWN);
    assert_int_equal(dfd_result_face_count(NULL), 0);
    assert_int_equal(dfd_result_frame_count(NULL), 0);
    assert_int_equal(dfd_result_face(NULL, 0, &fi), DFD_E_NOT_FOUND);
    assert_int_equal(dfd_result_frame(NULL, 0, &fr), DFD_E_NOT_FOUND);
    assert_int_equal(dfd_result_frame_face(NULL, 0, 0, &ff), DFD_E_NOT_FOUND);
    assert_int_equal(dfd_result_face_frame(NULL, 0, 0), -1);
    assert_true(isnan(dfd_result_threshold(NULL)));
    assert_int_equal(dfd_result_status(NULL), DFD_E_ARG);
}

/* Every accessor against the result's own JSON. */
static void check_against_json(const dfd_result *r) {
    char *text = dfd_result_json(r);
    json_t *j = parse(text);
    dfd_free(text);
    assert_string_equal(dfd_result_file(r), json_string_value(json_object_get(j, "file")));
    const char *media = json_string_value(json_object_get(j, "media"));
    assert_int_equal(dfd_result_media(r), strcmp(media, "video") == 0 ? DFD_MEDIA_VIDEO : DFD_MEDIA_IMAGE);
    assert_string_equal(dfd_verdict_name(dfd_result_verdict(r)), json_string_value(json_object_get(j, "verdict")));
    assert_same_number(dfd_result_p_fake(r), json_object_get(j, "p_fake"));
    assert_same_number(dfd_result_threshold(r), json_object_get(j, "threshold"));
    json_t *faces = json_object_get(j, "faces");
    assert_int_equal(dfd_result_face_count(r), (int)json_array_size(faces));
    for (int i = 0; i < dfd_result_face_count(r); i++) {
        dfd_face_info f;
        assert_int_equal(dfd_result_face(r, i, &f), DFD_OK);
        json_t *jf = json_array_get(faces, (size_t)i);
        json_t *id = json_object_get(jf, "id");
        if (!id) id = json_object_get(jf, "track");
        assert_int_equal(f.id, (int)json_integer_value(id));
        assert_same_number(f.p_fake, json_object_get(jf, "p_fake"));
        assert_same_number(f.p_manipulated, json_object_get(jf, "p_manipulated"));
        json_t *box = json_object_get(jf, "box");
        for (int k = 0; k < 4; k++) assert_true(fabs(f.box[k] - json_number_value(json_array_get(box, (size_t)k))) <= 0.051);
        /* A track's frames are frames of the result in which the track is seen. */
        for (int k = 0; k < f.n_frames; k++) {
            int fi = dfd_result_face_frame(r, i, k);
            assert_true(fi >= 0 && fi < dfd_result_frame_count(r));
            dfd_frame_info fr;
            assert_int_equal(dfd_result_frame(r, fi, &fr), DFD_OK);
            int seen = 0;
            for (int m = 0; m < fr.n_faces; m++) {
                dfd_frame_face ff;
                assert_int_equal(dfd_result_frame_face(r, fi, m, &ff), DFD_OK);
                seen |= ff.track == f.id;
            }
            assert_true(seen);
        }
        assert_int_equal(dfd_result_face_frame(r, i, f.n_frames), -1);
    }
    dfd_face_info none;
    assert_int_equal(dfd_result_face(r, dfd_result_face_count(r), &none), DFD_E_NOT_FOUND);
    assert_int_equal(dfd_result_face(r, -1, &none), DFD_E_NOT_FOUND);
    json_t *frames = json_object_get(j, "frames");
    assert_int_equal(dfd_result_frame_count(r), json_is_array(frames) ? (int)json_array_size(frames) : 0);
    for (int i = 0; i < dfd_result_frame_count(r); i++) {
        dfd_frame_info fr;
        assert_int_equal(dfd_result_frame(r, i, &fr), DFD_OK);
        json_t *jf = json_array_get(frames, (size_t)i);
        assert_int_equal(fr.index, (int)json_integer_value(json_object_get(jf, "index")));
        assert_int_equal(fr.n_faces, (int)json_array_size(json_object_get(jf, "faces")));
        dfd_frame_face ff;
        assert_int_equal(dfd_result_frame_face(r, i, fr.n_faces, &ff), DFD_E_NOT_FOUND);
    }
    json_decref(j);
}

static void result_accessors_match_the_json(void **state) {
    (void)state;
    if (!have_models()) skip();
    dfd_ctx *ctx = open_ctx();
    if (!ctx) skip();
    const char *names[] = {"astronaut.jpg", "astronaut-clip.mp4"};
    dfd_result *rs[2];
    for (int i = 0; i < 2; i++) {
        char *p = example(names[i]);
        dfd_error e;
        assert_int_equal(dfd_analyze_file(ctx, p, NULL, NULL, &rs[i], &e), DFD_OK);
        assert_int_equal(dfd_result_status(rs[i]), DFD_OK);
        assert_true(dfd_result_face_count(rs[i]) >= 1);
        check_against_json(rs[i]);
        free(p);
    }
    assert_int_equal(dfd_result_media(rs[0]), DFD_MEDIA_IMAGE);
    assert_int_equal(dfd_result_frame_count(rs[0]), 0);
    assert_int_equal(dfd_result_media(rs[1]), DFD_MEDIA_VIDEO);
    assert_true(dfd_result_frame_count(rs[1]) > 1);
    assert_non_null(dfd_result_model_image(rs[0]));
    /* The document holds both, in order. */
    char *doc = dfd_results_json((const dfd_result *const *)rs, 2, 0);
    json_t *d = parse(doc);
    dfd_free(doc);
    assert_int_equal(json_array_size(json_object_get(d, "results")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(d, "results"), 1), "file")),
                        dfd_result_file(rs[1]));
    json_decref(d);

    /* dfd_faces_file on the clip: the analysis's search and tracking, so as many tracks
     * as the result has face tracks. */
    dfd_faces_options fo;
    dfd_faces_options_default(&fo);
    char models[4096];
    snprintf(models, sizeof models, "%s/models", tu_source_dir()); /* as --models means: face models in registry/ */
    fo.models_dir = models;
    fo.frames = 10;
    dfd_face_finder *finder;
    dfd_error e;
    assert_int_equal(dfd_face_finder_create(&fo, &finder, &e), DFD_OK);
    char *clip = example("astronaut-clip.mp4"), *text = NULL;
    assert_int_equal(dfd_faces_file(finder, clip, &text, &e), DFD_OK);
    json_t *fj = parse(text);
    dfd_free(text);
    assert_int_equal((int)json_array_size(json_object_get(fj, "tracks")), dfd_result_face_count(rs[1]));
    assert_int_equal((int)json_integer_value(json_object_get(fj, "frames_sampled")), dfd_result_frame_count(rs[1]));
    json_decref(fj);
    /* A missing file: its code, and the JSON says so too. */
    assert_int_equal(dfd_faces_file(finder, "/nonexistent/x.jpg", &text, &e), DFD_E_IO);
    fj = parse(text);
    dfd_free(text);
    assert_true(json_is_string(json_object_get(fj, "error")));
    json_decref(fj);
    free(clip);
    dfd_face_finder_destroy(finder);
    for (int i = 0; i < 2; i++) dfd_result_free(rs[i]);
    dfd_ctx_destroy(ctx);
}

static void files_sniff_probe_png(void **state) {
    (void)state;
    char *jpg = example("astronaut.jpg"), *clip = example("astronaut-clip.mp4");
    dfd_media_kind k;
    const char *format = NULL;
    dfd_error e;
    assert_int_equal(dfd_sniff_file(jpg, &k, &format, &e), DFD_OK);
    assert_int_equal(k, DFD_MEDIA_IMAGE);
    assert_string_equal(format, "JPEG");
    assert_int_equal(dfd_sniff_file(clip, &k, NULL, &e), DFD_OK);
    assert_int_equal(k, DFD_MEDIA_VIDEO);
    assert_int_equal(dfd_sniff_file("/nonexistent/x", &k, NULL, &e), DFD_E_IO);
    char *text = NULL;
    assert_int_equal(dfd_probe_file(clip, &text, &e), DFD_OK);
    json_t *j = parse(text);
    dfd_free(text);
    assert_string_equal(json_string_value(json_object_get(j, "media")), "video");
    assert_int_equal(json_integer_value(json_object_get(j, "frames")), 30);
    json_decref(j);
    assert_int_equal(dfd_probe_file("/nonexistent/x", &text, &e), DFD_E_IO);
    j = parse(text);
    dfd_free(text);
    assert_true(json_is_string(json_object_get(j, "error")));
    json_decref(j);
    /* A 2x1 PNG that reads back as what was written. */
    char *dir = tu_mkdtemp(), *png = tu_join(dir, "x.png");
    const uint8_t px[6] = {255, 0, 0, 0, 0, 255};
    assert_int_equal(dfd_png_write(png, px, 2, 1, &e), DFD_OK);
    assert_int_equal(dfd_probe_file(png, &text, &e), DFD_OK);
    j = parse(text);
    dfd_free(text);
    assert_int_equal(json_integer_value(json_object_get(j, "width")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "height")), 1);
    json_decref(j);
    assert_int_equal(dfd_png_write(png, px, 0, 1, &e), DFD_E_ARG);
    tu_rmtree(dir);
    free(png);
    free(dir);
    free(jpg);
    free(clip);
}

static void options_by_name(void **state) {
    (void)state;
    dfd_error e;
    dfd_train_opts *t;
    assert_int_equal(dfd_train_opts_create(0, &t, &e), DFD_OK);
    assert_int_equal(dfd_train_opts_check(t, &e), DFD_E_ARG); /* no arch, no data */
    assert_non_null(strstr(e.message, "--arch"));
    char arch[] = "tiny-cnn";
    assert_int_equal(dfd_train_opts_set(t, "arch", arch, &e), DFD_OK);
    arch[0] = 'X'; /* the options keep a copy */
    assert_int_equal(dfd_train_opts_set(t, "data", "d", &e), DFD_OK);
    assert_int_equal(dfd_train_opts_check(t, &e), DFD_OK);
    assert_int_equal(dfd_train_opts_set(t, "epochs", "3", &e), DFD_OK);
    assert_int_equal(dfd_train_opts_set(t, "freeze-bn", NULL, &e), DFD_OK);
    assert_int_equal(dfd_train_opts_set(t, "freeze-bn", "1", &e), DFD_E_ARG);
    assert_int_equal(dfd_train_opts_set(t, "epochs", "many", &e), DFD_E_ARG);
    assert_non_null(strstr(e.message, "--epochs"));
    assert_int_equal(dfd_train_opts_set(t, "flip", "1.5", &e), DFD_E_ARG);
    assert_int_equal(dfd_train_opts_set(t, "sbi-mask", "square", &e), DFD_E_ARG);
    assert_non_null(strstr(e.message, "ellipse"));
    assert_int_equal(dfd_train_opts_set(t, "jpeg-quality", "30:95", &e), DFD_OK);
    assert_int_equal(dfd_train_opts_set(t, "jpeg-quality", "95:30", &e), DFD_E_ARG);
    assert_int_equal(dfd_train_opts_set(t, "frobnicate", "1", &e), DFD_E_NOT_FOUND);
    assert_int_equal(dfd_train_opts_set(t, "task", "synthetic", &e), DFD_OK);
    assert_int_equal(dfd_train_opts_check(t, &e), DFD_OK);
    dfd_train_opts_destroy(t);
    assert_int_equal(dfd_train_opts_create(1, &t, &e), DFD_OK);
    assert_int_equal(dfd_train_opts_set(t, "arch", "tiny-video", &e), DFD_OK);
    assert_int_equal(dfd_train_opts_set(t, "data", "d", &e), DFD_OK);
    assert_int_equal(dfd_train_opts_set(t, "task", "synthetic", &e), DFD_OK);
    assert_int_equal(dfd_train_opts_check(t, &e), DFD_E_ARG); /* synthetic is for image models */
    dfd_train_opts_destroy(t);

    dfd_eval_opts *v;
    assert_int_equal(dfd_eval_opts_create(&v, &e), DFD_OK);
    assert_int_equal(dfd_eval_opts_set(v, "level", "video", &e), DFD_OK);
    assert_int_equal(dfd_eval_opts_set(v, "level", "pixel", &e), DFD_E_ARG);
    assert_int_equal(dfd_eval_opts_set(v, "threshold", "2", &e), DFD_E_ARG);
    assert_int_equal(dfd_eval_opts_set(v, "flip", NULL, &e), DFD_OK);
    dfd_eval_result res;
    assert_int_not_equal(dfd_eval_run(v, &res, &e), DFD_OK); /* no model, no data */
    dfd_eval_opts_destroy(v);

    dfd_prepare_opts *p;
    assert_int_equal(dfd_prepare_opts_create(&p, &e), DFD_OK);
    assert_int_equal(dfd_prepare_opts_set(p, "face-mode", "full", &e), DFD_OK);
    assert_int_equal(dfd_prepare_opts_set(p, "face-mode", "wide", &e), DFD_E_ARG);
    assert_int_equal(dfd_prepare_opts_set(p, "size", "0", &e), DFD_E_ARG);
    assert_int_equal(dfd_prepare_opts_set(p, "sequences", NULL, &e), DFD_OK);
    dfd_prepare_opts_destroy(p);
    dfd_train_opts_destroy(NULL);
    dfd_eval_opts_destroy(NULL);
    dfd_prepare_opts_destroy(NULL);
}

static void model_info_and_import_errors(void **state) {
    (void)state;
    dfd_error e;
    char *text = NULL;
    char p[4096];
    snprintf(p, sizeof p, "%s/models/dfd-synthetic-1.safetensors", tu_source_dir());
    if (access(p, R_OK) == 0) {
        assert_int_equal(dfd_model_info(p, &text, &e), DFD_OK);
        json_t *j = parse(text);
        dfd_free(text);
        assert_string_equal(json_string_value(json_object_get(j, "name")), "dfd-synthetic-1");
        assert_string_equal(json_string_value(json_object_get(j, "task")), "synthetic");
        assert_true(json_integer_value(json_object_get(j, "input_size")) > 0);
        assert_null(json_object_get(j, "members")); /* one network */
        json_decref(j);
    }
    snprintf(p, sizeof p, "%s/models/dfd-image-4.safetensors", tu_source_dir());
    if (access(p, R_OK) == 0) { /* the shipped ensemble */
        assert_int_equal(dfd_model_info(p, &text, &e), DFD_OK);
        json_t *j = parse(text);
        dfd_free(text);
        assert_int_equal(json_integer_value(json_object_get(j, "members")), 2);
        assert_string_equal(json_string_value(json_object_get(j, "task")), "manipulation");
        assert_string_equal(json_string_value(json_object_get(j, "heatmap")), "occlusion-fast"); /* no key: the probes */
        json_decref(j);
    }
    snprintf(p, sizeof p, "%s/models/dfd-image-5.safetensors", tu_source_dir());
    if (access(p, R_OK) == 0) { /* the shipped ensemble since session 15: members taught where blends are */
        assert_int_equal(dfd_model_info(p, &text, &e), DFD_OK);
        json_t *j = parse(text);
        dfd_free(text);
        assert_int_equal(json_integer_value(json_object_get(j, "members")), 2);
        assert_string_equal(json_string_value(json_object_get(j, "heatmap")), "gradcam-full");
        json_decref(j);
    }
    /* dfd_model_ensemble's argument checks, before any file is read */
    const char *one[1] = {p};
    assert_int_equal(dfd_model_ensemble(one, 1, "/nonexistent/e.safetensors", -1, NULL, &e), DFD_E_ARG);
    const char *two[2] = {p, p};
    assert_int_equal(dfd_model_ensemble(two, 2, "/nonexistent/e.safetensors", 1.5, NULL, &e), DFD_E_ARG);
    assert_int_not_equal(dfd_model_info("/nonexistent/m.safetensors", &text, &e), DFD_OK);
    json_t *j = parse(text);
    dfd_free(text);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "m");
    assert_true(json_is_string(json_object_get(j, "error")));
    json_decref(j);
    assert_int_equal(dfd_model_import("onnx", "a", "b", NULL, NULL, &e), DFD_E_UNSUPPORTED);
    dfd_import_options io;
    dfd_import_options_default(&io);
    io.frames = 10;
    assert_int_equal(dfd_model_import("tflite", "a", "b", &io, NULL, &e), DFD_E_ARG);
    io.frames = 0;
    io.arch = "resnet";
    assert_int_equal(dfd_model_import("keras", "a", "b", &io, NULL, &e), DFD_E_ARG);
    char *summary = (char *)"x";
    assert_int_not_equal(dfd_model_import("tflite", "/nonexistent/a.tflite", "/nonexistent/b", NULL, &summary, &e), DFD_OK);
    assert_null(summary);
}

/* dfd_check_file refuses what the analysis refuses, with the analysis's message. */
static void check_file_by_the_analysis_rule(void **state) {
    (void)state;
    char *jpg = example("astronaut.jpg"), *clip = example("astronaut-clip.mp4");
    dfd_media_kind k;
    const char *format = NULL;
    dfd_error e;
    assert_int_equal(dfd_check_file(jpg, &k, &format, &e), DFD_OK);
    assert_int_equal(k, DFD_MEDIA_IMAGE);
    assert_string_equal(format, "JPEG");
    assert_int_equal(dfd_check_file(clip, &k, NULL, &e), DFD_OK);
    assert_int_equal(k, DFD_MEDIA_VIDEO);
    char *dir = tu_mkdtemp(), *gif = tu_join(dir, "a.gif"), *txt = tu_join(dir, "a.jpg");
    static const char gif_bytes[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04;";
    tu_write_file(gif, gif_bytes, sizeof gif_bytes - 1);
    static const char text[] = "name,label\nx.jpg,1\n"; /* named .jpg: content decides */
    tu_write_file(txt, text, sizeof text - 1);
    assert_int_equal(dfd_check_file(gif, &k, &format, &e), DFD_E_UNSUPPORTED);
    assert_int_equal(k, DFD_MEDIA_IMAGE);
    assert_string_equal(format, "GIF");
    assert_string_equal(e.message, "unsupported format: 'GIF'");
    assert_int_equal(dfd_check_file(txt, &k, &format, &e), DFD_E_UNSUPPORTED);
    assert_int_equal(k, DFD_MEDIA_UNKNOWN);
    assert_non_null(strstr(e.message, "unsupported format"));
    assert_int_equal(e.code, DFD_E_UNSUPPORTED);
    char *missing = tu_join(dir, "missing");
    assert_int_equal(dfd_check_file(missing, &k, NULL, &e), DFD_E_IO);
    assert_int_equal(dfd_check_file(NULL, &k, NULL, &e), DFD_E_ARG);
    assert_int_equal(dfd_check_file(jpg, NULL, NULL, &e), DFD_E_ARG);
    /* The analysis refuses both with the same code and message. */
    dfd_ctx *ctx = have_models() ? open_ctx() : NULL;
    if (ctx) {
        const char *files[] = {gif, txt};
        for (int i = 0; i < 2; i++) {
            dfd_error ce;
            assert_int_equal(dfd_check_file(files[i], &k, NULL, &ce), DFD_E_UNSUPPORTED);
            dfd_result *r;
            assert_int_equal(dfd_analyze_file(ctx, files[i], NULL, NULL, &r, &e), DFD_OK);
            assert_int_equal(dfd_result_status(r), DFD_E_UNSUPPORTED);
            assert_string_equal(dfd_result_error(r), ce.message);
            dfd_result_free(r);
        }
        dfd_ctx_destroy(ctx);
    }
    tu_rmtree(dir);
    free(missing);
    free(gif);
    free(txt);
    free(dir);
    free(jpg);
    free(clip);
}

/* dfd_analyze_file_as: the result and every message name the name given, never the path. */
static void analyze_file_as_names_the_given_name(void **state) {
    (void)state;
    dfd_error e;
    dfd_result *r = NULL;
    assert_int_equal(dfd_analyze_file_as(NULL, "x", "y", NULL, NULL, &r, &e), DFD_E_ARG);
    if (!have_models()) skip();
    dfd_ctx *ctx = open_ctx();
    if (!ctx) skip();
    char *dir = tu_mkdtemp(), *tmp = tu_join(dir, "upload-Xq3Zt9"), *jpg = example("astronaut.jpg");
    size_t len;
    uint8_t *bytes = tu_read_file(jpg, &len);
    tu_write_file(tmp, bytes, len);
    free(bytes);
    assert_int_equal(dfd_analyze_file_as(ctx, tmp, "client photo.jpg", NULL, NULL, &r, &e), DFD_OK);
    assert_int_equal(dfd_result_status(r), DFD_OK);
    assert_string_equal(dfd_result_file(r), "client photo.jpg");
    char *text = dfd_result_json(r);
    assert_null(strstr(text, dir));
    json_t *j = parse(text);
    dfd_free(text);
    assert_string_equal(json_string_value(json_object_get(j, "file")), "client photo.jpg");
    json_decref(j);
    dfd_result_free(r);
    /* NULL name: the path, as dfd_analyze_file. */
    assert_int_equal(dfd_analyze_file_as(ctx, tmp, NULL, NULL, NULL, &r, &e), DFD_OK);
    assert_string_equal(dfd_result_file(r), tmp);
    dfd_result_free(r);
    /* A failure whose message names the file: the given name instead, every time. */
    char *gone = tu_join(dir, "gone-Xq3Zt9");
    assert_int_equal(dfd_analyze_file(ctx, gone, NULL, NULL, &r, &e), DFD_OK);
    assert_int_equal(dfd_result_status(r), DFD_E_IO);
    assert_non_null(strstr(dfd_result_error(r), gone)); /* the plain call names the path */
    dfd_result_free(r);
    assert_int_equal(dfd_analyze_file_as(ctx, gone, "clip.mp4", NULL, NULL, &r, &e), DFD_OK);
    assert_int_equal(dfd_result_status(r), DFD_E_IO);
    assert_int_equal(dfd_result_verdict(r), DFD_VERDICT_ERROR);
    assert_non_null(strstr(dfd_result_error(r), "'clip.mp4'"));
    assert_null(strstr(dfd_result_error(r), dir));
    assert_null(strstr(dfd_result_error(r), "Xq3Zt9"));
    text = dfd_result_json(r);
    assert_null(strstr(text, "Xq3Zt9"));
    dfd_free(text);
    dfd_result_free(r);
    tu_rmtree(dir);
    free(gone);
    free(tmp);
    free(jpg);
    free(dir);
    dfd_ctx_destroy(ctx);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* dfd_find_models: dfd_ctx_create's search, without loading anything. */
static void find_models_as_the_context_does(void **state) {
    (void)state;
    char models[4096];
    snprintf(models, sizeof models, "%s/models", tu_source_dir());
    dfd_options o;
    dfd_options_default(&o);
    o.models_dir = models;
    char *image = NULL, *syn = NULL;
    dfd_error e;
    int rc = dfd_find_models(&o, &image, &syn, &e);
    if (rc == DFD_E_NOT_FOUND) {
        print_message("skipped: %s\n", e.message);
        skip();
    }
    assert_int_equal(rc, DFD_OK);
    assert_non_null(image);
    assert_int_equal(strncmp(image, models, strlen(models)), 0);
    assert_int_equal(strncmp(base_name(image), "dfd-image-", 10), 0);
    assert_int_equal(access(image, R_OK), 0);
    if (syn) assert_int_equal(strncmp(base_name(syn), "dfd-synthetic-", 14), 0);
    /* What a context on the same options loads: the result names the same models. */
    dfd_ctx *ctx = have_models() ? open_ctx() : NULL;
    if (ctx) {
        char *jpg = example("astronaut.jpg");
        dfd_result *r;
        assert_int_equal(dfd_analyze_file(ctx, jpg, NULL, NULL, &r, &e), DFD_OK);
        char want[512];
        snprintf(want, sizeof want, "%s.safetensors", dfd_result_model_image(r));
        assert_string_equal(base_name(image), want);
        if (syn) {
            assert_non_null(dfd_result_model_synthetic(r));
            snprintf(want, sizeof want, "%s.safetensors", dfd_result_model_synthetic(r));
            assert_string_equal(base_name(syn), want);
        } else {
            assert_null(dfd_result_model_synthetic(r));
        }
        dfd_result_free(r);
        free(jpg);
        dfd_ctx_destroy(ctx);
    }
    dfd_free(image);
    dfd_free(syn);
    /* Named models are taken as named (copied); no_synthetic: none. */
    o.image_model = "a/m.safetensors";
    o.synthetic_model = "b/s.safetensors";
    assert_int_equal(dfd_find_models(&o, &image, &syn, &e), DFD_OK);
    assert_string_equal(image, "a/m.safetensors");
    assert_string_equal(syn, "b/s.safetensors");
    dfd_free(image);
    dfd_free(syn);
    o.no_synthetic = 1;
    assert_int_equal(dfd_find_models(&o, &image, &syn, &e), DFD_OK);
    assert_null(syn);
    dfd_free(image);
    assert_int_equal(dfd_find_models(&o, NULL, NULL, &e), DFD_OK); /* nothing wanted */
    /* A folder without models: not found, saying where it looked. */
    char *empty = tu_mkdtemp();
    dfd_options_default(&o);
    o.models_dir = empty;
    image = syn = (char *)"x";
    assert_int_equal(dfd_find_models(&o, &image, &syn, &e), DFD_E_NOT_FOUND);
    assert_null(image);
    assert_null(syn);
    assert_non_null(strstr(e.message, empty));
    tu_rmtree(empty);
    free(empty);
}

/* dfd_cpu_count, and dfd_log: the library's line format, at the level set. */
static void cpu_count_and_log(void **state) {
    (void)state;
    assert_true(dfd_cpu_count() >= 1);
    char *dir = tu_mkdtemp(), *path = tu_join(dir, "log");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fd, 2) == 2);
    dfd_set_log_level(DFD_LOG_INFO);
    dfd_log(DFD_LOG_INFO, "hello %d", 42);
    dfd_log(DFD_LOG_DEBUG, "not shown");
    dfd_set_log_level(DFD_LOG_QUIET);
    dfd_log(DFD_LOG_ERROR, "not shown either");
    dfd_set_log_level(DFD_LOG_WARN);
    fflush(stderr);
    assert_true(dup2(saved, 2) == 2);
    close(saved);
    close(fd);
    size_t len;
    char *got = (char *)tu_read_file(path, &len);
    assert_int_equal(len, strlen("dfd: info: hello 42\n"));
    assert_memory_equal(got, "dfd: info: hello 42\n", len);
    free(got);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(null_and_out_of_range),
        cmocka_unit_test(files_sniff_probe_png),
        cmocka_unit_test(options_by_name),
        cmocka_unit_test(model_info_and_import_errors),
        cmocka_unit_test(result_accessors_match_the_json),
        cmocka_unit_test(check_file_by_the_analysis_rule),
        cmocka_unit_test(analyze_file_as_names_the_given_name),
        cmocka_unit_test(find_models_as_the_context_does),
        cmocka_unit_test(cpu_count_and_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
