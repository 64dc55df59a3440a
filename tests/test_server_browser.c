/* test_server_browser — the web page works in a real browser: Debian's headless Chromium,
 * driven by playwright-core (tests/browser/page.test.cjs), uploads an image and a video
 * to a running server and sees the verdicts (FAKE red, REAL green), the face boxes, the
 * video's progress bar, timeline and thumbnails, each face's heat map (asked for with
 * ?explain=1) and its toggle, an API error, and a phone layout.
 * Screenshots go to build/screenshots/.
 *
 * The server here answers with a stand-in analyzer whose results are fixed (a face on the
 * image that the synthetic-face detector flags and the manipulation detector does not, shown
 * in words for each; two REAL tracks over the video's frames), so this proves the page and the
 * API's plumbing, not the model; tests/cli/server_e2e.sh runs the real `dfd serve`.
 * Skips (77) when node, Chromium or playwright-core (setup.sh installs them) are missing. */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

#include "server_harness.h"

static int standin_create(void *cls, int worker, int threads, void **state, dfd_error *err) {
    (void)cls, (void)worker, (void)threads, (void)err;
    *state = NULL;
    return DFD_OK;
}

static void standin_destroy(void *cls, void *state) { (void)cls, (void)state; }

/* Heat maps when the request asks for them (?explain=1, which the page always sends). */
static int standin_explain;
static void standin_set_explain(void *cls, void *state, int on) { (void)cls, (void)state, standin_explain = on; }

/* A heat map: a blob around grid cell (cx, cy), as a face's evidence might look. */
static float *blob(float cx, float cy) {
    float *m = calloc(DFD_HEAT_CELLS, sizeof *m);
    for (int y = 0; m && y < DFD_HEAT_GRID; y++)
        for (int x = 0; x < DFD_HEAT_GRID; x++)
            m[y * DFD_HEAT_GRID + x] = expf(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / 8.0f);
    return m;
}

static void standin_heat(dfd_face_res *f, float sx, float sy, float side, int frame, double t) {
    if (!standin_explain) return;
    f->heat_m = blob(8, 10); /* the mouth */
    f->heat_s = blob(5, 6);  /* an eye */
    f->heat_method = DFD_EXPLAIN_GRADCAMPP;
    f->heat_square[0] = sx, f->heat_square[1] = sy, f->heat_square[2] = side;
    f->heat_frame = frame, f->heat_time_s = t;
}

static int standin_analyze(void *cls, void *state, const char *path, const char *name, dfd_progress_fn progress,
                           void *user, dfd_result **out, dfd_error *err) {
    (void)cls, (void)state;
    dfd_media_kind kind;
    const char *fmt;
    int rc = dfd_media_sniff_file(path, &kind, &fmt, err);
    if (rc) return rc;
    dfd_result *r = dfd_result_new(name, kind);
    if (!r) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    /* Two detectors, both flagging from 0.5. */
    r->threshold_manipulated = 0.5, r->threshold_synthetic = 0.5;
    if (kind == DFD_MEDIA_IMAGE) {
        /* examples/astronaut.png (512×512): her face, generated (0.91) and not swapped (0.30). */
        r->faces = calloc(1, sizeof *r->faces);
        r->n_faces = 1;
        r->faces[0] = (dfd_face_res){.id = 0, .box = {170, 60, 150, 185}, .p_fake = 0.91, .p_manipulated = 0.30,
                                     .p_synthetic = 0.91, .kind = DFD_KIND_SYNTHETIC, .p_fake_video_model = NAN};
        r->p_manipulated = 0.30, r->p_synthetic = 0.91;
        standin_heat(&r->faces[0], 160, 50, 180, -1, NAN);
    } else {
        /* examples/astronaut-clip.mp4 (256×256, 3 s): 15 frames, a face and a small second track. */
        enum { N = 15 };
        r->frames = calloc(N, sizeof *r->frames);
        r->n_frames = N;
        r->faces = calloc(2, sizeof *r->faces);
        r->n_faces = 2;
        double mx0 = 0, mx1 = 0;
        for (int i = 0; i < N; i++) {
            if (progress(user, (double)i / N)) {
                dfd_result_free(r);
                return dfd_fail(err, DFD_E_CANCELLED, "cancelled");
            }
            th_sleep_ms(120); /* slow enough that the page shows its progress bar moving */
            dfd_frame_res *f = &r->frames[i];
            f->index = 2 * i;
            f->time_s = 0.2 * i;
            f->n_faces = i % 3 == 0 ? 2 : 1;
            f->faces = calloc((size_t)f->n_faces, sizeof *f->faces);
            double p0 = 0.15 + 0.2 * sin(i * 0.5) * sin(i * 0.5);
            f->faces[0] = (dfd_face_obs){.track = 0, .box = {84, 28, 76, 96}, .p_fake = p0, .p_manipulated = p0,
                                         .p_synthetic = 0.1};
            mx0 = fmax(mx0, p0);
            if (f->n_faces == 2) {
                double p1 = 0.05 + 0.02 * i;
                f->faces[1] = (dfd_face_obs){.track = 1, .box = {10, 180, 40, 48}, .p_fake = p1, .p_manipulated = p1,
                                             .p_synthetic = 0.1};
                mx1 = fmax(mx1, p1);
            }
        }
        r->faces[0] = (dfd_face_res){.id = 0, .box = {84, 28, 76, 96}, .p_fake = mx0, .p_manipulated = mx0,
                                     .p_synthetic = 0.1, .p_fake_video_model = NAN};
        r->faces[1] = (dfd_face_res){.id = 1, .box = {10, 180, 40, 48}, .p_fake = mx1, .p_manipulated = mx1,
                                     .p_synthetic = 0.1, .p_fake_video_model = NAN};
        for (int k = 0; k < 2; k++) { /* the sampled frames where each track was seen */
            r->faces[k].frames = calloc(N, sizeof(int));
            for (int i = 0; i < N; i++)
                if (k == 0 || i % 3 == 0) r->faces[k].frames[r->faces[k].n_frames++] = r->frames[i].index;
        }
        standin_heat(&r->faces[0], 72, 20, 100, r->frames[4].index, r->frames[4].time_s);
        r->p_manipulated = fmax(mx0, mx1); /* a file is as fake as its most suspicious track */
        r->p_synthetic = 0.1;
    }
    dfd_result_decide(r);
    *out = r;
    return DFD_OK;
}

static const dfd_server_analyzer standin = {NULL, standin_create, standin_destroy, standin_analyze, NULL,
                                            standin_set_explain};

static void page_in_headless_chromium(void **state) {
    (void)state;
    char *tmp = tu_mkdtemp();
    dfd_server_config c;
    dfd_server_config_default(&c);
    c.analyzer = &standin;
    c.threads = 1;
    c.workers = 1;
    c.tmp_parent = tmp;
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    char *shots = tu_join(tu_build_dir(), "screenshots");
    char *script = tu_join(tu_source_dir(), "tests/browser/page.test.cjs");
    char *image = tu_join(tu_source_dir(), "examples/astronaut.png");
    char *video = tu_join(tu_source_dir(), "examples/astronaut-clip.mp4");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "DFD_EXPECT_HEAT_MAPS=2 DFD_EXPECT_IMAGE=FAKE DFD_EXPECT_VIDEO=REAL DFD_EXPECT_PROGRESS=1 DFD_EXPECT_IMAGE_KIND=synthetic "
             "DFD_EXPECT_IMAGE_FINDINGS='Looks AI-generated (91.0 %%, flagged from 50.0 %%)|No sign of a face swap or "
             "alteration (30.0 %%, flagged from 50.0 %%)' node '%s' http://127.0.0.1:%d/ '%s' '%s' '%s' 1>&2",
             script, s.port, image, video, shots);
    int rc = tu_run(cmd, NULL);
    assert_int_equal(th_stop(&s), DFD_OK);
    if (rc != 0) print_message("the browser test failed (exit %d); see %s/failure.png\n", rc, shots);
    assert_int_equal(rc, 0);
    /* Both verdict views were captured. */
    const char *views[] = {"image-verdict.png", "video-verdict.png", "phone.png", "image-heatmap.png"};
    for (int i = 0; i < 4; i++) {
        char *p = tu_join(shots, views[i]);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_true(st.st_size > 10000);
        free(p);
    }
    free(shots);
    free(script);
    free(image);
    free(video);
    tu_rmtree(tmp);
    free(tmp);
}

/* What the browser test needs, or why it cannot run (a message, then exit 77 = skipped). */
static int have_browser(void) {
    char *modules = tu_join(tu_source_dir(), "tests/browser/node_modules/playwright-core/package.json");
    const char *chromium = getenv("DFD_CHROMIUM") ? getenv("DFD_CHROMIUM") : "/usr/bin/chromium";
    int have_pw = access(modules, R_OK) == 0;
    free(modules);
    if (tu_have_program("node") && access(chromium, X_OK) == 0 && have_pw) return 1;
    fprintf(stderr, "skipped: the browser test needs node, %s and tests/browser/node_modules "
                    "(setup.sh installs them: Debian's chromium, and npm ci in tests/browser)\n", chromium);
    return 0;
}

int main(void) {
    if (!have_browser()) return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(page_in_headless_chromium),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
