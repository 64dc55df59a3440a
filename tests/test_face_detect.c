/* test_face_detect — BlazeFace converted into dfd finds real faces where they are:
 * examples/astronaut.png has one face whose box and eyes were located by hand (eyes near
 * (205, 100) and (242, 100), face about x 175-275, y 70-175); examples/chelsea.png (a
 * cat) has none; the reference and oneDNN backends give the same raw outputs and faces;
 * a re-import of the .tflite loads back with exactly the weights the converter reads; model
 * files that are not BlazeFace are refused; two UTKFace photos side by side give two faces;
 * faces from 72 px to the whole image are found in landscape and portrait frames; and a
 * clip made of two people (encoded with ffmpeg when available) gives two tracks.
 * Needs models/registry (./setup.sh); skips with a message otherwise. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "face/face.h"
#include "io/safetensors.h"
#include "io/tflite.h"

static int have_models(void) {
    char dir[4096];
    if (dfd_face_models_dir(NULL, dir, sizeof dir) == DFD_OK) return 1;
    print_message("skipped: %s/blazeface-short.safetensors missing (run ./setup.sh)\n", dir);
    return 0;
}

#define REQUIRE_MODELS()             \
    do {                             \
        if (!have_models()) skip();  \
    } while (0)

static dfd_face_detector *detector(nn_backend backend, dfd_face_mode mode) {
    dfd_face_opts o;
    dfd_face_opts_default(&o);
    o.backend = backend;
    o.mode = mode;
    dfd_face_detector *d = NULL;
    dfd_error e;
    if (dfd_face_detector_create(&o, &d, &e) != DFD_OK) fail_msg("detector: %s", e.message);
    return d;
}

static dfd_image load_example(const char *name) {
    char *dir = tu_join(tu_source_dir(), "examples");
    char *p = tu_join(dir, name);
    dfd_image img;
    dfd_error e;
    if (dfd_image_load(p, NULL, &img, NULL, &e) != DFD_OK) fail_msg("%s: %s", p, e.message);
    free(p);
    free(dir);
    return img;
}

static void astronaut_has_one_face_where_it_was_seen(void **state) {
    (void)state;
    REQUIRE_MODELS();
    dfd_face_detector *d = detector(NN_BACKEND_DNNL, DFD_FACE_AUTO);
    dfd_image img = load_example("astronaut.png");
    dfd_face *f;
    int n;
    dfd_error e;
    assert_int_equal(dfd_face_detect(d, &img, &f, &n, &e), DFD_OK);
    assert_int_equal(n, 1);
    float cx = f[0].box[0] + f[0].box[2] / 2, cy = f[0].box[1] + f[0].box[3] / 2;
    assert_in_range((int)cx, 210, 240);
    assert_in_range((int)cy, 105, 135);
    assert_in_range((int)f[0].box[2], 85, 130);
    assert_true(f[0].score > 0.8f);
    assert_in_range((int)f[0].kp[DFD_KP_RIGHT_EYE][0], 195, 215);
    assert_in_range((int)f[0].kp[DFD_KP_RIGHT_EYE][1], 90, 110);
    assert_in_range((int)f[0].kp[DFD_KP_LEFT_EYE][0], 232, 252);
    assert_in_range((int)f[0].kp[DFD_KP_LEFT_EYE][1], 90, 110);
    assert_true(f[0].kp[DFD_KP_MOUTH][1] > f[0].kp[DFD_KP_NOSE][1]); /* mouth below the nose */
    assert_true(fabsf(f[0].roll_deg) < 10.0f);
    free(f);
    dfd_image_free(&img);
    dfd_face_detector_free(d);
}

static void cat_has_no_human_face(void **state) {
    (void)state;
    REQUIRE_MODELS();
    dfd_face_detector *d = detector(NN_BACKEND_DNNL, DFD_FACE_AUTO);
    dfd_image img = load_example("chelsea.png");
    dfd_face *f;
    int n;
    dfd_error e;
    assert_int_equal(dfd_face_detect(d, &img, &f, &n, &e), DFD_OK);
    assert_int_equal(n, 0);
    assert_null(f);
    dfd_image_free(&img);
    dfd_face_detector_free(d);
}

static void backends_agree(void **state) {
    (void)state;
    REQUIRE_MODELS();
    dfd_face_detector *r = detector(NN_BACKEND_REF, DFD_FACE_AUTO), *o = detector(NN_BACKEND_DNNL, DFD_FACE_AUTO);
    dfd_error e;
    for (int k = 0; k < 2; k++) {
        int side = k ? 192 : 128;
        size_t n = (size_t)side * side * 3;
        float *x = malloc(n * sizeof(float));
        uint64_t s = 5;
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (float)((s >> 33) % 2001) / 1000.0f - 1.0f;
        }
        const float *rr, *rc, *orr, *oc;
        assert_int_equal(dfd_face_run_model(r, (dfd_blazeface_kind)k, x, &rr, &rc, &e), DFD_OK);
        float *copy = malloc((size_t)dfd_blazeface_num_anchors((dfd_blazeface_kind)k) * 17 * sizeof(float));
        int na = dfd_blazeface_num_anchors((dfd_blazeface_kind)k);
        memcpy(copy, rr, (size_t)na * 16 * sizeof(float));
        memcpy(copy + (size_t)na * 16, rc, (size_t)na * sizeof(float));
        assert_int_equal(dfd_face_run_model(o, (dfd_blazeface_kind)k, x, &orr, &oc, &e), DFD_OK);
        double worst = 0, scale = 1;
        for (int i = 0; i < na * 16; i++) {
            worst = fmax(worst, fabs(copy[i] - orr[i]));
            scale = fmax(scale, fabs(copy[i]));
        }
        for (int i = 0; i < na; i++) worst = fmax(worst, fabs(copy[na * 16 + i] - oc[i]));
        if (worst > 1e-3 * scale) fail_msg("%s: backends differ by %g (scale %g)", dfd_blazeface_name((dfd_blazeface_kind)k), worst, scale);
        free(copy);
        free(x);
    }
    dfd_image img = load_example("astronaut.png");
    dfd_face *fa, *fb;
    int na, nb;
    assert_int_equal(dfd_face_detect(r, &img, &fa, &na, &e), DFD_OK);
    assert_int_equal(dfd_face_detect(o, &img, &fb, &nb, &e), DFD_OK);
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++)
        for (int k = 0; k < 4; k++) assert_float_equal(fa[i].box[k], fb[i].box[k], 0.5);
    free(fa);
    free(fb);
    dfd_image_free(&img);
    dfd_face_detector_free(r);
    dfd_face_detector_free(o);
}

static void import_round_trip_and_refusals(void **state) {
    (void)state;
    char *tp = tu_join(tu_source_dir(), "third_party/@mediapipe_face_detection/face_detection_short_range.tflite");
    FILE *fh = fopen(tp, "rb");
    if (!fh) {
        free(tp);
        print_message("skipped: third_party/@mediapipe_face_detection missing (run ./setup.sh)\n");
        skip();
    }
    fclose(fh);
    char *dir = tu_mkdtemp(), *out = tu_join(dir, "short.safetensors");
    const char *arch;
    dfd_error e;
    assert_int_equal(dfd_face_import_tflite(tp, out, &arch, &e), DFD_OK);
    assert_string_equal(arch, "blazeface-short");
    dfd_blazeface_kind kind;
    nn_graph *g;
    assert_int_equal(dfd_face_load_model(out, &kind, &g, &e), DFD_OK);
    assert_int_equal(kind, DFD_BLAZEFACE_SHORT);
    /* Every weight equals what the converter reads from the file (itself checked against
     * TFLite semantics in test_io_tflite). */
    tfl_model *m;
    nn_graph *cg;
    assert_int_equal(tfl_read_file(tp, &m, &e), DFD_OK);
    assert_int_equal(tfl_to_graph(m, &cg, &e), DFD_OK);
    assert_int_equal(nn_graph_param_count(g), nn_graph_param_count(cg));
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i), *q = nn_graph_find_param(cg, p->name);
        assert_non_null(q);
        assert_int_equal(p->count, q->count);
        assert_memory_equal(p->data, q->data, p->count * sizeof(float));
    }
    nn_graph_free(cg);
    tfl_free(m);
    nn_graph_free(g);
    /* A dfd model file of another architecture is refused. */
    char *other = tu_join(dir, "other.safetensors");
    dfd_st_writer *w = dfd_st_writer_new();
    float v = 1;
    int64_t shape[1] = {1};
    assert_int_equal(dfd_st_writer_add_f32(w, "dense/bias", 1, shape, &v, DFD_ST_F32, &e), DFD_OK);
    assert_int_equal(dfd_st_writer_set_meta(w, "format", "dfd.model/1", &e), DFD_OK);
    assert_int_equal(dfd_st_writer_set_meta(w, "architecture", "xception-image", &e), DFD_OK);
    assert_int_equal(dfd_st_writer_save(w, other, &e), DFD_OK);
    dfd_st_writer_free(w);
    assert_int_equal(dfd_face_load_model(other, &kind, &g, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "xception-image"));
    /* Not a model at all, and a tflite that is not BlazeFace-shaped. */
    assert_int_equal(dfd_face_import_tflite(other, out, &arch, &e), DFD_E_CORRUPT);
    char *missing = tu_join(dir, "missing.tflite");
    assert_int_equal(dfd_face_import_tflite(missing, out, &arch, &e), DFD_E_IO);
    tu_rmtree(dir);
    free(missing);
    free(other);
    free(out);
    free(dir);
    free(tp);
}

/* Pastes two UTKFace photos into a w x h grey canvas, at x0 and x1. */
static void paste(dfd_image *canvas, const dfd_image *a, int x0, int y0) {
    for (int y = 0; y < a->h; y++) {
        int cy = y0 + y;
        if (cy < 0 || cy >= canvas->h) continue;
        for (int x = 0; x < a->w; x++) {
            int cx = x0 + x;
            if (cx < 0 || cx >= canvas->w) continue;
            memcpy(canvas->rgb + ((size_t)cy * canvas->w + cx) * 3, a->rgb + ((size_t)y * a->w + x) * 3, 3);
        }
    }
}

static void two_people(dfd_image *p) {
    static const char *const names[2] = {"utkface-real/23_1_1_20170117171341177.jpg", "utkface-real/32_0_4_20170104000716333.jpg"};
    for (int i = 0; i < 2; i++) {
        char *path = tu_shared_path(names[i]);
        dfd_error e;
        if (!path || dfd_image_load(path, NULL, &p[i], NULL, &e) != DFD_OK) fail_msg("cannot load %s", names[i]);
        free(path);
    }
}

static void two_photos_side_by_side_give_two_faces(void **state) {
    (void)state;
    REQUIRE_MODELS();
    TU_REQUIRE_SHARED_DATA();
    dfd_image p[2], canvas;
    two_people(p);
    dfd_error e;
    assert_int_equal(dfd_image_alloc(&canvas, 480, 240, &e), DFD_OK);
    memset(canvas.rgb, 128, 480 * 240 * 3);
    paste(&canvas, &p[0], 20, 20);
    paste(&canvas, &p[1], 260, 20);
    dfd_face_detector *d = detector(NN_BACKEND_DNNL, DFD_FACE_AUTO);
    dfd_face *f;
    int n;
    assert_int_equal(dfd_face_detect(d, &canvas, &f, &n, &e), DFD_OK);
    assert_int_equal(n, 2);
    int left = 0, right = 0;
    for (int i = 0; i < n; i++) {
        float cx = f[i].box[0] + f[i].box[2] / 2;
        left += cx > 20 && cx < 220;
        right += cx > 260 && cx < 460;
    }
    assert_int_equal(left, 1);
    assert_int_equal(right, 1);
    free(f);
    dfd_face_detector_free(d);
    dfd_image_free(&canvas);
    dfd_image_free(&p[0]);
    dfd_image_free(&p[1]);
}

/* Faces from about 60 px to the whole image, in landscape and portrait frames: three
 * small faces and a large one pasted into a grey frame, and a portrait filling an image. */
static void sizes_from_small_to_whole_image(void **state) {
    (void)state;
    REQUIRE_MODELS();
    TU_REQUIRE_SHARED_DATA();
    dfd_image p[2];
    two_people(p);
    dfd_face_detector *d = detector(NN_BACKEND_DNNL, DFD_FACE_AUTO);
    dfd_error e;
    for (int portrait = 0; portrait < 2; portrait++) {
        int W = portrait ? 720 : 1280, H = portrait ? 1280 : 720;
        dfd_image canvas, sm[2], big;
        assert_int_equal(dfd_image_alloc(&canvas, W, H, &e), DFD_OK);
        memset(canvas.rgb, 128, (size_t)W * H * 3);
        assert_int_equal(dfd_image_resize(&p[0], 72, 72, &sm[0], &e), DFD_OK);
        assert_int_equal(dfd_image_resize(&p[1], 72, 72, &sm[1], &e), DFD_OK);
        assert_int_equal(dfd_image_resize(&p[1], 360, 360, &big, &e), DFD_OK);
        int xs[4] = {60, 250, 60, W - 400}, ys[4] = {60, 90, H - 200, H - 400}, side[4] = {72, 72, 72, 360};
        paste(&canvas, &sm[0], xs[0], ys[0]);
        paste(&canvas, &sm[1], xs[1], ys[1]);
        paste(&canvas, &sm[0], xs[2], ys[2]);
        paste(&canvas, &big, xs[3], ys[3]);
        dfd_face *f;
        int n;
        assert_int_equal(dfd_face_detect(d, &canvas, &f, &n, &e), DFD_OK);
        for (int k = 0; k < 4; k++) {
            int found = 0;
            for (int i = 0; i < n; i++) {
                float cx = f[i].box[0] + f[i].box[2] / 2, cy = f[i].box[1] + f[i].box[3] / 2;
                found += cx > xs[k] && cx < xs[k] + side[k] && cy > ys[k] && cy < ys[k] + side[k];
            }
            if (found != 1) fail_msg("%s frame: face %d (%d px) found %d times", portrait ? "portrait" : "landscape", k, side[k], found);
        }
        assert_int_equal(n, 4);
        free(f);
        dfd_image_free(&canvas);
        dfd_image_free(&sm[0]);
        dfd_image_free(&sm[1]);
        dfd_image_free(&big);
    }
    /* A portrait blown up to fill a 600x600 image. */
    dfd_image full;
    assert_int_equal(dfd_image_resize(&p[0], 600, 600, &full, &e), DFD_OK);
    dfd_face *f;
    int n;
    assert_int_equal(dfd_face_detect(d, &full, &f, &n, &e), DFD_OK);
    assert_int_equal(n, 1);
    assert_true(f[0].box[2] > 300);
    free(f);
    dfd_image_free(&full);
    dfd_face_detector_free(d);
    dfd_image_free(&p[0]);
    dfd_image_free(&p[1]);
}

#define CLIP_W 480
#define CLIP_H 240
#define CLIP_N 30

/* Frame i of the clip: the two people drift towards each other by 2 px a frame. */
static void clip_frame(const dfd_image *p, int i, dfd_image *out) {
    dfd_error e;
    assert_int_equal(dfd_image_alloc(out, CLIP_W, CLIP_H, &e), DFD_OK);
    memset(out->rgb, 128, CLIP_W * CLIP_H * 3);
    paste(out, &p[0], 10 + i, 20);
    paste(out, &p[1], 270 - i, 20);
}

static void generated_clip_gives_two_tracks(void **state) {
    (void)state;
    REQUIRE_MODELS();
    TU_REQUIRE_SHARED_DATA();
    dfd_image p[2];
    two_people(p);
    dfd_error e;
    dfd_frame_set set;
    memset(&set, 0, sizeof set);
    char *dir = tu_mkdtemp();
    int from_video = tu_have_program("ffmpeg");
    if (from_video) {
        /* Encode the frames with ffmpeg (MPEG-4 part 2, built into every FFmpeg) and read
         * them back through the media module, as dfd faces does. */
        char *raw = tu_join(dir, "clip.rgb"), *mp4 = tu_join(dir, "clip.mp4");
        FILE *f = fopen(raw, "wb");
        assert_non_null(f);
        for (int i = 0; i < CLIP_N; i++) {
            dfd_image fr;
            clip_frame(p, i, &fr);
            assert_int_equal(fwrite(fr.rgb, 1, CLIP_W * CLIP_H * 3, f), CLIP_W * CLIP_H * 3);
            dfd_image_free(&fr);
        }
        fclose(f);
        char cmd[8192];
        snprintf(cmd, sizeof cmd,
                 "ffmpeg -v error -y -f rawvideo -pix_fmt rgb24 -s %dx%d -r 10 -i '%s' -c:v mpeg4 -q:v 2 -pix_fmt yuv420p '%s'",
                 CLIP_W, CLIP_H, raw, mp4);
        assert_int_equal(tu_run(cmd, NULL), 0);
        assert_int_equal(dfd_video_sample(mp4, CLIP_N, NULL, 1, &set, &e), DFD_OK);
        free(raw);
        free(mp4);
    } else {
        print_message("ffmpeg not found: tracking frames made in memory instead of a decoded clip\n");
        set.frames = calloc(CLIP_N, sizeof *set.frames);
        for (int i = 0; i < CLIP_N; i++) clip_frame(p, i, &set.frames[i].img);
        set.count = CLIP_N;
    }
    assert_true(set.count >= 28);
    dfd_face_detector *d = detector(NN_BACKEND_DNNL, DFD_FACE_AUTO);
    dfd_face *per[CLIP_N] = {0};
    int counts[CLIP_N] = {0};
    for (int i = 0; i < set.count; i++) assert_int_equal(dfd_face_detect(d, &set.frames[i].img, &per[i], &counts[i], &e), DFD_OK);
    dfd_face_track *t;
    int nt;
    assert_int_equal(dfd_face_track_link((const dfd_face *const *)per, counts, set.count, NULL, &t, &nt, &e), DFD_OK);
    assert_int_equal(nt, 2);
    float mean_x[2];
    for (int k = 0; k < 2; k++) {
        if (t[k].n_points < set.count - 3) fail_msg("track %d covers %d of %d frames", k + 1, t[k].n_points, set.count);
        mean_x[k] = 0;
        for (int i = 0; i < t[k].n_points; i++) mean_x[k] += t[k].points[i].face.box[0] / t[k].n_points;
    }
    assert_true((mean_x[0] < CLIP_W / 2) != (mean_x[1] < CLIP_W / 2)); /* one left, one right */
    dfd_face_tracks_free(t, nt);
    for (int i = 0; i < set.count; i++) free(per[i]);
    dfd_face_detector_free(d);
    if (from_video) {
        dfd_frame_set_free(&set);
    } else {
        for (int i = 0; i < set.count; i++) dfd_image_free(&set.frames[i].img);
        free(set.frames);
    }
    tu_rmtree(dir);
    free(dir);
    dfd_image_free(&p[0]);
    dfd_image_free(&p[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(astronaut_has_one_face_where_it_was_seen),
        cmocka_unit_test(cat_has_no_human_face),
        cmocka_unit_test(backends_agree),
        cmocka_unit_test(import_round_trip_and_refusals),
        cmocka_unit_test(two_photos_side_by_side_give_two_faces),
        cmocka_unit_test(sizes_from_small_to_whole_image),
        cmocka_unit_test(generated_clip_gives_two_tracks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
