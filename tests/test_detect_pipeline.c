/* test_detect_pipeline — the video path of dfd_analyze_file through the library API:
 * frames are decoded on a thread of their own while faces are searched, so a run gives
 * per-frame results in order and the same scores every time, a cancel from the progress
 * callback part-way through stops both threads cleanly (an ERROR result saying so, no
 * leak under ASan), and the context works again afterwards. Uses examples/ and the shipped
 * model; skips without the face models (run ./setup.sh). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dfd/dfd.h"

static dfd_ctx *open_ctx(void) {
    char models[4096], probe[4200];
    snprintf(models, sizeof models, "%s/models", tu_source_dir());
    snprintf(probe, sizeof probe, "%s/registry/blazeface-short.safetensors", models);
    if (access(probe, R_OK) != 0) {
        print_message("skipped: %s missing (run ./setup.sh)\n", probe);
        return NULL;
    }
    dfd_options o;
    dfd_options_default(&o);
    o.models_dir = models;
    o.frames = 12;
    dfd_ctx *ctx;
    dfd_error e;
    int rc = dfd_ctx_create(&o, &ctx, &e);
    if (rc == DFD_E_NOT_FOUND) {
        print_message("skipped: %s\n", e.message);
        return NULL;
    }
    if (rc) fail_msg("dfd_ctx_create: %s", e.message);
    return ctx;
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
    assert_non_null(strstr(dfd_result_error(r2), "cancel"));
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(video_frames_in_order_and_cancel_midway),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
