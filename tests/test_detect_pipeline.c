/* test_detect_pipeline — the video path of dfd_analyze_file through the library API:
 * frames are decoded on a thread of their own while faces are searched, so a run gives
 * per-frame results in order and the same scores every time, a cancel from the progress
 * callback part-way through stops both threads cleanly (an ERROR result saying so, no
 * leak under ASan), and the context works again afterwards. Two detectors through the API:
 * a synthetic-face stand-in (the shipped weights re-saved with task "synthetic" at 160 px)
 * whose threshold the astronaut's face crosses makes the photo FAKE of kind synthetic;
 * no_synthetic gives the image model's result alone. Each kind of failure (corrupt,
 * unsupported, over a limit, cancelled) keeps its status code (dfd_result_status). Uses examples/ and the shipped
 * model; skips without the face models (run ./setup.sh). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dfd/dfd.h"
#include "io/model_file.h"
#include "models/models.h"

static dfd_ctx *open_ctx(void) {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/models/registry/blazeface-short.safetensors", tu_source_dir());
    if (access(probe, R_OK) != 0) {
        print_message("skipped: %s missing (run ./setup.sh)\n", probe);
        return NULL;
    }
    return tu_ctx_open(12);
}

typedef struct progress_log {
    double last;
    int calls, backwards;
    double cancel_at; /* > 0: cancel once this fraction is reached */
} progress_log;

static int on_progress(void *user, double f) {
    progress_log *p = user;
    if (f < p->last) p->backwards++;
    p->last = f;
    p->calls++;
    return p->cancel_at > 0 && f >= p->cancel_at;
}

static json_t *analyze(dfd_ctx *ctx, const char *path, progress_log *pl, dfd_result **out) {
    dfd_error e;
    dfd_result *r;
    if (dfd_analyze_file(ctx, path, on_progress, pl, &r, &e)) fail_msg("dfd_analyze_file: %s", e.message);
    char *js = dfd_result_json(r);
    assert_non_null(js);
    json_t *j = json_loads(js, 0, NULL);
    dfd_free(js);
    assert_non_null(j);
    *out = r;
    return j;
}

static void video_frames_in_order_and_cancel_midway(void **state) {
    (void)state;
    dfd_ctx *ctx = open_ctx();
    if (!ctx) skip();
    char clip[4096];
    snprintf(clip, sizeof clip, "%s/examples/astronaut-clip.mp4", tu_source_dir());

    progress_log p1 = {0};
    dfd_result *r1;
    json_t *j1 = analyze(ctx, clip, &p1, &r1);
    assert_true(dfd_result_verdict(r1) == DFD_VERDICT_FAKE || dfd_result_verdict(r1) == DFD_VERDICT_REAL);
    json_t *frames = json_object_get(j1, "frames");
    assert_true(json_array_size(frames) == 12);
    double last_t = -1;
    for (size_t i = 0; i < json_array_size(frames); i++) {
        double t = json_number_value(json_object_get(json_array_get(frames, i), "time_s"));
        assert_true(t > last_t);
        last_t = t;
        assert_true(json_array_size(json_object_get(json_array_get(frames, i), "faces")) >= 1);
    }
    assert_int_equal(p1.backwards, 0);
    assert_true(p1.calls >= 12);
    assert_float_equal(p1.last, 1.0, 1e-9);

    /* Cancelled a third of the way through the face search: an ERROR result that says so. */
    progress_log p2 = {.cancel_at = 0.3};
    dfd_result *r2;
    json_t *j2 = analyze(ctx, clip, &p2, &r2);
    assert_int_equal(dfd_result_verdict(r2), DFD_VERDICT_ERROR);
    assert_non_null(dfd_result_error(r2));
    assert_int_equal(dfd_result_status(r2), DFD_E_CANCELLED);
    assert_true(p2.last < 0.5);

    /* The context is whole again: the same scores as the first run. */
    progress_log p3 = {0};
    dfd_result *r3;
    json_t *j3 = analyze(ctx, clip, &p3, &r3);
    assert_int_equal(dfd_result_verdict(r3), dfd_result_verdict(r1));
    assert_true(dfd_result_p_fake(r3) == dfd_result_p_fake(r1));
    json_object_del(j1, "timing_ms");
    json_object_del(j3, "timing_ms");
    assert_true(json_equal(j1, j3));

    json_decref(j1), json_decref(j2), json_decref(j3);
    dfd_result_free(r1), dfd_result_free(r2), dfd_result_free(r3);
    dfd_ctx_destroy(ctx);
}

static int build_arch(void *user, const dfd_model_meta *m, nn_graph **out, dfd_error *err) {
    (void)user;
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = m->input_size;
    return dfd_arch_build(m->arch, &o, out, err);
}

/* The shipped image model's weights saved as a synthetic-face model with its own input
 * size and threshold. */
static void save_stand_in(const char *shipped, const char *path, double threshold) {
    nn_graph *g = NULL;
    dfd_model_meta m;
    dfd_error e;
    if (dfd_model_load(shipped, build_arch, NULL, &g, &m, &e)) fail_msg("%s", e.message);
    free(m.task);
    m.task = strdup("synthetic");
    m.input_size = 160;
    m.threshold = threshold;
    if (dfd_model_save(g, &m, NULL, path, &e)) fail_msg("%s", e.message);
    dfd_model_meta_free(&m);
    nn_graph_free(g);
}

static dfd_result *analyze_with(const char *image_model, const char *synthetic, int no_synthetic, const char *file,
                                int want_rc, const char *want_msg) {
    char models[4096];
    snprintf(models, sizeof models, "%s/models", tu_source_dir());
    dfd_options o;
    dfd_options_default(&o);
    o.models_dir = models;
    o.image_model = image_model;
    o.synthetic_model = synthetic;
    o.no_synthetic = no_synthetic;
    dfd_ctx *ctx;
    dfd_error e;
    int rc = dfd_ctx_create(&o, &ctx, &e);
    if (rc != want_rc) fail_msg("dfd_ctx_create: %d %s", rc, e.message);
    if (rc) {
        assert_non_null(strstr(e.message, want_msg));
        return NULL;
    }
    dfd_result *r;
    if (dfd_analyze_file(ctx, file, NULL, NULL, &r, &e)) fail_msg("dfd_analyze_file: %s", e.message);
    dfd_ctx_destroy(ctx);
    return r;
}

static void synthetic_detector_beside_the_image_model(void **state) {
    (void)state;
    dfd_ctx *probe = open_ctx();
    if (!probe) skip();
    dfd_ctx_destroy(probe);
    char shipped[4096], img[4096];
    snprintf(shipped, sizeof shipped, "%s/models/dfd-image-2.safetensors", tu_source_dir());
    snprintf(img, sizeof img, "%s/examples/astronaut.png", tu_source_dir());
    if (access(shipped, R_OK) != 0) skip();
    char *dir = tu_mkdtemp();
    char *s0 = tu_join(dir, "s0.safetensors"), *s1 = tu_join(dir, "s1.safetensors");
    save_stand_in(shipped, s0, 1.0);

    /* Threshold 1: scored, never firing; the image model says REAL on the astronaut. */
    dfd_result *r = analyze_with(shipped, s0, 0, img, DFD_OK, NULL);
    double pm = dfd_result_p_manipulated(r), ps = dfd_result_p_synthetic(r);
    assert_int_equal(dfd_result_verdict(r), DFD_VERDICT_REAL);
    assert_int_equal(dfd_result_kind(r), DFD_KIND_NONE);
    assert_true(ps > 0.001 && ps < 1 && fabs(ps - pm) > 1e-4); /* its own 160 px crop */
    dfd_result_free(r);

    /* Its threshold below the face's score: FAKE, kind synthetic, p_fake its score. */
    save_stand_in(shipped, s1, 0.9 * ps);
    r = analyze_with(shipped, s1, 0, img, DFD_OK, NULL);
    assert_int_equal(dfd_result_verdict(r), DFD_VERDICT_FAKE);
    assert_int_equal(dfd_result_kind(r), DFD_KIND_SYNTHETIC);
    assert_true(dfd_result_p_fake(r) == ps && dfd_result_p_synthetic(r) == ps);
    assert_true(dfd_result_p_manipulated(r) == pm);
    char *js = dfd_result_json(r);
    json_t *j = json_loads(js, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "synthetic");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "model"), "synthetic")), "s1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "faces"), 0), "kind")),
                        "synthetic");
    json_decref(j);
    dfd_free(js);
    dfd_result_free(r);

    /* no_synthetic: the image model alone, whatever is named or installed. */
    r = analyze_with(shipped, NULL, 1, img, DFD_OK, NULL);
    assert_int_equal(dfd_result_verdict(r), DFD_VERDICT_REAL);
    assert_true(isnan(dfd_result_p_synthetic(r)));
    assert_true(dfd_result_p_fake(r) == pm);
    dfd_result_free(r);

    /* Each model in the other's slot is refused, saying why. */
    assert_null(analyze_with(shipped, shipped, 0, img, DFD_E_MODEL, "is not a synthetic-face image model"));
    assert_null(analyze_with(s1, NULL, 1, img, DFD_E_MODEL, "pass it with --model-synthetic"));
    tu_rmtree(dir);
    free(s0), free(s1), free(dir);
}

/* The status code of each kind of failure comes through dfd_result_status (the server's
 * HTTP status is chosen by it), and a verdict has DFD_OK. */
static int status_of_buffer(dfd_ctx *ctx, const void *data, size_t len, dfd_verdict *verdict) {
    dfd_result *r;
    dfd_error e;
    if (dfd_analyze_buffer(ctx, data, len, "buf", NULL, NULL, &r, &e)) fail_msg("dfd_analyze_buffer: %s", e.message);
    *verdict = dfd_result_verdict(r);
    int status = dfd_result_status(r);
    if (status != DFD_OK) assert_non_null(dfd_result_error(r));
    else assert_null(dfd_result_error(r));
    dfd_result_free(r);
    return status;
}

static void failure_status_codes(void **state) {
    (void)state;
    dfd_ctx *ctx = open_ctx();
    if (!ctx) skip();
    char path[4096];
    snprintf(path, sizeof path, "%s/examples/astronaut.jpg", tu_source_dir());
    size_t n;
    uint8_t *jpg = tu_read_file(path, &n);
    dfd_verdict v;
    assert_int_equal(status_of_buffer(ctx, jpg, n, &v), DFD_OK);
    assert_true(v == DFD_VERDICT_REAL || v == DFD_VERDICT_FAKE);
    /* A JPEG cut short: undecodable. */
    assert_int_equal(status_of_buffer(ctx, jpg, n / 3, &v), DFD_E_CORRUPT);
    assert_int_equal(v, DFD_VERDICT_ERROR);
    /* Not a format dfd reads. */
    static const char gif[] = "GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    assert_int_equal(status_of_buffer(ctx, gif, sizeof gif - 1, &v), DFD_E_UNSUPPORTED);
    assert_int_equal(v, DFD_VERDICT_ERROR);
    free(jpg);
    dfd_ctx_destroy(ctx);

    /* Over the byte limit, and over the pixel limit (the header's 512x512 > 1000 pixels). */
    dfd_options o;
    dfd_options_default(&o);
    char models[4096];
    snprintf(models, sizeof models, "%s/models", tu_source_dir());
    o.models_dir = models;
    o.limits.max_file_bytes = 1000;
    dfd_error e;
    assert_int_equal(dfd_ctx_create(&o, &ctx, &e), DFD_OK);
    jpg = tu_read_file(path, &n);
    assert_int_equal(status_of_buffer(ctx, jpg, n, &v), DFD_E_LIMIT);
    dfd_ctx_destroy(ctx);
    dfd_options_default(&o);
    o.models_dir = models;
    o.limits.max_image_pixels = 1000;
    assert_int_equal(dfd_ctx_create(&o, &ctx, &e), DFD_OK);
    assert_int_equal(status_of_buffer(ctx, jpg, n, &v), DFD_E_LIMIT);
    assert_int_equal(v, DFD_VERDICT_ERROR);
    free(jpg);
    dfd_ctx_destroy(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failure_status_codes),
        cmocka_unit_test(video_frames_in_order_and_cancel_midway),
        cmocka_unit_test(synthetic_detector_beside_the_image_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
