/* test_server_http — `dfd serve`'s HTTP machinery against a running server on loopback,
 * with a stand-in analyzer whose answers the test controls (the score, faces, errors,
 * speed, and a gate that holds a worker busy), so that every route and error can be
 * checked without a model: the original's /predict_* answers, the v1 API and its jobs
 * (progress, cancel, TTL, a full queue), upload limits (one byte over, chunked),
 * malformed and truncated multipart, unknown media, slow and stalled clients, 50
 * concurrent requests, metrics, the log line, temp files always removed, degraded
 * start-up and a clean shutdown that finishes requests in flight. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "server_harness.h"

/* ---- the stand-in analyzer --------------------------------------------------------------
 * It reads its instructions from the end of the upload: "DFDTEST key=value ...":
 *   p=0.93      P(fake) of the one face (p<0: no face)   err=N     result with an error, status N
 *   fail=N      return status N (no result)               steps=N   progress steps (video frames)
 *   delay=MS    per step                                   gate=1    wait for the test's gate
 */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open = 1;
static atomic_int gate_waiting;
static atomic_int fake_analyses;
static int fake_fail_load;
static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static char order[16][32]; /* the names of the files analysed, in the order they started */
static int n_order;

static void set_gate(int open) {
    pthread_mutex_lock(&gate_mu);
    gate_open = open;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static int fake_create(void *cls, int worker, int threads, void **state, dfd_error *err) {
    (void)cls;
    (void)worker;
    assert_true(threads >= 1);
    if (fake_fail_load) return dfd_fail(err, DFD_E_MODEL, "no model file 'fake.safetensors'");
    *state = malloc(1);
    return DFD_OK;
}

static void fake_destroy(void *cls, void *state) {
    (void)cls;
    free(state);
}

static double param(const char *text, const char *key, double dflt) {
    char pat[32];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(text, pat);
    return p ? strtod(p + strlen(pat), NULL) : dflt;
}

static int fake_analyze(void *cls, void *state, const char *path, const char *name, dfd_progress_fn progress,
                        void *user, dfd_result **out, dfd_error *err) {
    (void)cls;
    (void)state;
    atomic_fetch_add(&fake_analyses, 1);
    pthread_mutex_lock(&order_mu);
    if (n_order < 16) snprintf(order[n_order++], sizeof order[0], "%s", name);
    pthread_mutex_unlock(&order_mu);
    size_t n;
    uint8_t *d = tu_read_file(path, &n);
    const char *mark = NULL;
    for (size_t i = n >= 200 ? n - 200 : 0; i + 7 < n; i++)
        if (memcmp(d + i, "DFDTEST", 7) == 0) mark = (const char *)d + i + 7;
    char text[256] = "";
    if (mark) snprintf(text, sizeof text, "%.*s", (int)((const char *)d + n - mark), mark);
    int video = !(n > 2 && d[0] == 0xFF && d[1] == 0xD8);
    free(d);
    if (param(text, "gate", 0) > 0) {
        atomic_fetch_add(&gate_waiting, 1);
        pthread_mutex_lock(&gate_mu);
        while (!gate_open) {
            pthread_mutex_unlock(&gate_mu);
            if (progress(user, 0.0)) { /* cancelled while held */
                atomic_fetch_sub(&gate_waiting, 1);
                return dfd_fail(err, DFD_E_CANCELLED, "cancelled");
            }
            th_sleep_ms(10);
            pthread_mutex_lock(&gate_mu);
        }
        pthread_mutex_unlock(&gate_mu);
        atomic_fetch_sub(&gate_waiting, 1);
    }
    int steps = (int)param(text, "steps", 1), delay = (int)param(text, "delay", 0);
    for (int i = 1; i <= steps; i++) {
        if (delay) th_sleep_ms(delay);
        if (progress(user, (double)i / steps)) return dfd_fail(err, DFD_E_CANCELLED, "cancelled by the caller");
    }
    int fail = (int)param(text, "fail", 0);
    if (fail) return dfd_fail(err, fail, "stand-in failure %d", fail);
    dfd_result *r = dfd_result_new(name, video ? DFD_MEDIA_VIDEO : DFD_MEDIA_IMAGE);
    assert_non_null(r);
    r->threshold_manipulated = 0.5;
    double p = param(text, "p", 0.5), ps = param(text, "ps", -1); /* ps: a synthetic-face detector's */
    if (ps >= 0) r->threshold_synthetic = param(text, "ts", 0.5);
    if (p >= 0) {
        r->faces = calloc(1, sizeof *r->faces);
        r->n_faces = 1;
        r->faces[0] = (dfd_face_res){.id = 0, .box = {10, 20, 30, 40}, .p_manipulated = p,
                                     .p_synthetic = ps >= 0 ? ps : NAN, .p_fake_video_model = NAN};
        double t;
        dfd_combine(p, r->threshold_manipulated, r->faces[0].p_synthetic, r->threshold_synthetic, &r->faces[0].p_fake,
                    &t, &r->faces[0].kind);
        r->p_manipulated = p;
        r->p_synthetic = r->faces[0].p_synthetic;
        if (video) {
            r->frames = calloc((size_t)steps, sizeof *r->frames);
            r->n_frames = steps;
            for (int i = 0; i < steps; i++) {
                r->frames[i].index = i * 3;
                r->frames[i].time_s = i * 0.3;
                r->frames[i].faces = calloc(1, sizeof(dfd_face_obs));
                r->frames[i].n_faces = 1;
                r->frames[i].faces[0] = (dfd_face_obs){.track = 0, .box = {10, 20, 30, 40}, .p_fake = r->faces[0].p_fake,
                                                        .p_manipulated = p, .p_synthetic = r->faces[0].p_synthetic,
                                                        .kind = r->faces[0].kind};
            }
        }
    }
    if (strstr(text, " err=")) dfd_result_set_error(r, (int)param(text, "err", 0), "stand-in decode error");
    dfd_result_decide(r);
    *out = r;
    return DFD_OK;
}

static void *fake_describe(void *cls) {
    (void)cls;
    return json_pack("{s:s}", "image_model", "fake-1");
}

static const dfd_server_analyzer fake = {NULL, fake_create, fake_destroy, fake_analyze, fake_describe, NULL};

/* ---- inputs ----------------------------------------------------------------------------- */

/* A JPEG head (enough for content sniffing) and the stand-in's instructions. */
static char *image_with(const char *instr, size_t *n) {
    char *b = malloc(512);
    memcpy(b, "\xFF\xD8\xFF\xE0\x00\x10JFIF\x00", 11);
    memset(b + 11, 'x', 100);
    int k = snprintf(b + 111, 400, "DFDTEST %s ", instr);
    *n = 111 + (size_t)k;
    return b;
}

/* The example clip (a real MP4, so sniffing says video) and instructions. */
static char *video_with(const char *instr, size_t *n) {
    char *p = tu_join(tu_source_dir(), "examples/astronaut-clip.mp4");
    size_t vn;
    uint8_t *v = tu_read_file(p, &vn);
    free(p);
    char *b = malloc(vn + 300);
    memcpy(b, v, vn);
    free(v);
    int k = snprintf(b + vn, 300, "DFDTEST %s ", instr);
    *n = vn + (size_t)k;
    return b;
}

static char *tmp_parent;

static void base_config(dfd_server_config *c) {
    dfd_server_config_default(c);
    c->analyzer = &fake;
    c->threads = 2;
    c->workers = 2;
    c->tmp_parent = tmp_parent;
    c->conn_timeout_s = 2;
}

/* Counts files below tmp_parent (uploads not removed would show here), but for the
 * running servers' "lock" files. */
static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "lock")) continue;
        char *p = tu_join(dir, e->d_name);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) n += count_files(p);
        else n++;
        free(p);
    }
    closedir(d);
    return n;
}

static int setup(void **state) {
    (void)state;
    tmp_parent = tu_mkdtemp();
    set_gate(1);
    fake_fail_load = 0;
    atomic_store(&fake_analyses, 0);
    n_order = 0;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    /* Every upload is gone, and so is the server's private folder. */
    assert_int_equal(count_files(tmp_parent), 0);
    DIR *d = opendir(tmp_parent);
    int entries = 0;
    for (struct dirent *e; d && (e = readdir(d));) entries += e->d_name[0] != '.';
    if (d) closedir(d);
    assert_int_equal(entries, 0);
    tu_rmtree(tmp_parent);
    free(tmp_parent);
    return 0;
}

static json_t *expect_json(const th_resp *r, int status) {
    if (r->status != status) print_message("status %d, body: %s\n", r->status, r->body ? r->body : "(none)");
    assert_int_equal(r->status, status);
    const char *ct = th_header(r, "Content-Type");
    assert_non_null(ct);
    assert_non_null(strstr(ct, "application/json"));
    json_t *j = th_json(r);
    assert_non_null(j);
    return j;
}

/* An error answer: the status, JSON {"error": "..."} containing needle. */
static void expect_error(th_resp *r, int status, const char *needle) {
    json_t *j = expect_json(r, status);
    const char *e = json_string_value(json_object_get(j, "error"));
    assert_non_null(e);
    if (!strstr(e, needle)) print_message("error '%s' lacks '%s'\n", e, needle);
    assert_non_null(strstr(e, needle));
    json_decref(j);
    th_resp_free(r);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void status_page_and_static_routes(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    int port = s.port;

    /* curl-like clients (no Accept, or any type) get the original's status JSON. */
    const char *accepts[] = {NULL, "Accept: */*\r\n", "Accept: application/json\r\n"};
    for (int i = 0; i < 3; i++) {
        th_resp r = th_get(port, "/", accepts[i]);
        json_t *j = expect_json(&r, 200);
        assert_string_equal(json_string_value(json_object_get(j, "status")),
                            "Deepfake Detector API is online and running.");
        json_decref(j);
        th_resp_free(&r);
    }
    /* The page is built in when web/ has it (cmake embeds every file there). */
    char *index = tu_join(tu_source_dir(), "web/index.html");
    int have_page = access(index, R_OK) == 0;
    free(index);
    if (have_page) {
    th_resp r = th_get(port, "/", "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(th_header(&r, "Content-Type"), "text/html"));
    assert_non_null(strstr(r.body, "<html"));
    assert_non_null(th_header(&r, "Content-Security-Policy"));
    th_resp_free(&r);
    r = th_get(port, "/app.js", NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(th_header(&r, "Content-Type"), "javascript"));
    th_resp_free(&r);
    r = th_get(port, "/openapi.json", NULL);
    json_t *api = expect_json(&r, 200);
    assert_string_equal(json_string_value(json_object_get(api, "openapi")), "3.0.3");
    json_t *paths = json_object_get(api, "paths");
    const char *routes[] = {"/", "/predict_image", "/predict_video", "/v1/analyze", "/v1/jobs/{id}",
                            "/v1/health", "/v1/models", "/metrics"};
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        if (!json_object_get(paths, routes[i])) print_message("openapi.json lacks %s\n", routes[i]);
        assert_non_null(json_object_get(paths, routes[i]));
    }
    json_decref(api);
    th_resp_free(&r);
    }
    /* Unknown routes, wrong methods, paths that try to leave the asset table. */
    th_resp r2 = th_get(port, "/nope", NULL);
    expect_error(&r2, 404, "no such route: GET /nope");
    r2 = th_get(port, "/../../etc/passwd", NULL);
    assert_int_not_equal(r2.status, 200);
    th_resp_free(&r2);
    r2 = th_get(port, "/%2e%2e/CMakeLists.txt", NULL);
    assert_int_equal(r2.status, 404);
    th_resp_free(&r2);
    r2 = th_request(port, "PUT", "/v1/analyze", NULL, "x", 1);
    assert_string_equal(th_header(&r2, "Allow"), "POST");
    expect_error(&r2, 405, "method PUT is not allowed on /v1/analyze");
    r2 = th_get(port, "/predict_image", NULL);
    expect_error(&r2, 405, "not allowed");

    r2 = th_get(port, "/v1/health", NULL);
    json_t *h = expect_json(&r2, 200);
    assert_string_equal(json_string_value(json_object_get(h, "status")), "ok");
    assert_int_equal(json_integer_value(json_object_get(h, "workers")), 2);
    assert_string_equal(json_string_value(json_object_get(h, "version")), dfd_version());
    json_decref(h);
    th_resp_free(&r2);
    r2 = th_get(port, "/v1/models", NULL);
    h = expect_json(&r2, 200);
    assert_string_equal(json_string_value(json_object_get(h, "image_model")), "fake-1");
    assert_true(json_is_true(json_object_get(h, "loaded")));
    json_decref(h);
    th_resp_free(&r2);
    assert_int_equal(th_stop(&s), DFD_OK);
}

static void predict_image_answers_like_the_original(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    struct {
        const char *instr;
        const char *pred;
        double raw;
    } cases[] = {{"p=0.2", "REAL", 0.8},
                 {"p=0.9", "FAKE", 0.1},
                 {"p=0.5", "FAKE", 0.5},
                 /* With a synthetic-face detector: its firing makes the verdict, and raw_score is
                  * 1 - the score of the detector past its threshold by more (0.7 vs 0.3). */
                 {"p=0.2 ps=0.7 ts=0.3", "FAKE", 0.3},
                 {"p=0.2 ps=0.25 ts=0.3", "REAL", 0.75}};
    for (int i = 0; i < 5; i++) {
        size_t n;
        char *img = image_with(cases[i].instr, &n);
        th_resp r = th_upload(s.port, "/predict_image", "face.jpg", img, n);
        json_t *j = expect_json(&r, 200);
        assert_string_equal(json_string_value(json_object_get(j, "prediction")), cases[i].pred);
        double raw = json_real_value(json_object_get(j, "raw_score"));
        assert_true(fabs(raw - cases[i].raw) < 1e-9);
        /* confidence = 100·max(p, 1−p) with p = P(real), as the original computed it. */
        double conf = json_number_value(json_object_get(j, "confidence"));
        assert_true(fabs(conf - 100 * fmax(cases[i].raw, 1 - cases[i].raw)) < 1e-9);
        assert_true(json_is_null(json_object_get(j, "error")));
        assert_int_equal(json_object_size(j), 4); /* the original's shape, nothing added */
        json_decref(j);
        th_resp_free(&r);
        free(img);
    }
    /* No face: 422 with prediction null (the original said 200 and, on its page, REAL). */
    size_t n;
    char *img = image_with("p=-1", &n);
    th_resp r = th_upload(s.port, "/predict_image", "cat.jpg", img, n);
    json_t *j = expect_json(&r, 422);
    assert_true(json_is_null(json_object_get(j, "prediction")));
    assert_string_equal(json_string_value(json_object_get(j, "error")), "no face found");
    json_decref(j);
    th_resp_free(&r);
    free(img);
    img = image_with("p=0.3 err=5", &n); /* DFD_E_CORRUPT */
    r = th_upload(s.port, "/predict_image", "bad.jpg", img, n);
    expect_error(&r, 422, "stand-in decode error");
    free(img);
    img = image_with("fail=8", &n); /* DFD_E_MODEL */
    r = th_upload(s.port, "/predict_image", "x.jpg", img, n);
    expect_error(&r, 503, "stand-in failure 8");
    free(img);
    /* The right media per route. */
    char *vid = video_with("p=0.7", &n);
    r = th_upload(s.port, "/predict_image", "clip.mp4", vid, n);
    expect_error(&r, 415, "expects an image, and this upload is a video");
    r = th_upload(s.port, "/predict_video", "clip.mp4", vid, n);
    j = expect_json(&r, 200);
    assert_string_equal(json_string_value(json_object_get(j, "prediction")), "FAKE");
    assert_true(fabs(json_real_value(json_object_get(j, "raw_score")) - 0.3) < 1e-9);
    json_decref(j);
    th_resp_free(&r);
    free(vid);
    img = image_with("p=0.1", &n);
    r = th_upload(s.port, "/predict_video", "face.jpg", img, n);
    expect_error(&r, 415, "expects a video");
    free(img);
    assert_int_equal(th_stop(&s), DFD_OK);
}

static void v1_analyze_images_sync_multipart_and_raw(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    size_t n;
    char *img = image_with("p=0.75", &n);
    th_resp raws[2];
    raws[0] = th_upload(s.port, "/v1/analyze", "../../etc/evil\x01name.jpg", img, n);
    raws[1] = th_request(s.port, "POST", "/v1/analyze", "Content-Type: image/jpeg\r\n", img, n);
    for (int i = 0; i < 2; i++) {
        json_t *j = expect_json(&raws[i], 200);
        assert_string_equal(json_string_value(json_object_get(j, "schema")), "dfd.result/1");
        json_t *res = json_array_get(json_object_get(j, "results"), 0);
        assert_non_null(res);
        assert_string_equal(json_string_value(json_object_get(res, "verdict")), "FAKE");
        assert_true(fabs(json_real_value(json_object_get(res, "p_fake")) - 0.75) < 1e-9);
        assert_string_equal(json_string_value(json_object_get(res, "media")), "image");
        /* The result names the client's file (sanitised), never the server's temp file. */
        const char *file = json_string_value(json_object_get(res, "file"));
        assert_string_equal(file, i == 0 ? "evil_name.jpg" : "upload");
        assert_null(strstr(raws[i].body, "dfd-serve-"));
        json_decref(j);
        th_resp_free(&raws[i]);
    }
    free(img);
    /* A result with an error has its status's code (undecodable: 422), with the document
     * and its message. */
    img = image_with("err=5", &n);
    th_resp r = th_upload(s.port, "/v1/analyze", "e.jpg", img, n);
    json_t *j = expect_json(&r, 422);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "stand-in decode error");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "results"), 0), "verdict")),
                        "ERROR");
    json_decref(j);
    th_resp_free(&r);
    free(img);
    assert_int_equal(th_stop(&s), DFD_OK);
}

/* The HTTP status of a failed analysis follows its status code (dfd_result_status), on
 * both APIs: the table itself, then through the server. */
static void failed_analyses_answer_by_status_code(void **state) {
    (void)state;
    assert_int_equal(srv_http_status(DFD_OK), 200);
    assert_int_equal(srv_http_status(DFD_E_LIMIT), 413);
    assert_int_equal(srv_http_status(DFD_E_UNSUPPORTED), 415);
    assert_int_equal(srv_http_status(DFD_E_CORRUPT), 422);
    assert_int_equal(srv_http_status(DFD_E_NO_STREAM), 422);
    assert_int_equal(srv_http_status(DFD_E_CANCELLED), 499);
    assert_int_equal(srv_http_status(DFD_E_MODEL), 503);
    assert_int_equal(srv_http_status(DFD_E_NOMEM), 500);
    assert_int_equal(srv_http_status(DFD_E_INTERNAL), 500);
    assert_int_equal(srv_http_status(DFD_E_IO), 500);

    dfd_server_config c;
    base_config(&c);
    th_server s;
    assert_int_equal(th_start(&s, &c), DFD_OK);
    static const struct {
        int code, http;
    } cases[] = {{DFD_E_LIMIT, 413},     {DFD_E_UNSUPPORTED, 415}, {DFD_E_CORRUPT, 422},
                 {DFD_E_NO_STREAM, 422}, {DFD_E_INTERNAL, 500},    {DFD_E_NOMEM, 500}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char spec[32];
        snprintf(spec, sizeof spec, "p=0.3 err=%d", cases[i].code);
        size_t n;
        char *img = image_with(spec, &n);
        th_resp r = th_upload(s.port, "/v1/analyze", "e.jpg", img, n);
        json_t *j = expect_json(&r, cases[i].http);
        assert_string_equal(json_string_value(json_object_get(j, "error")), "stand-in decode error");
        json_decref(j);
        th_resp_free(&r);
        r = th_upload(s.port, "/predict_image", "e.jpg", img, n);
        expect_error(&r, cases[i].http, "stand-in decode error");
        free(img);
    }
    /* A result cancelled by the library (not by DELETE, not at shutdown): 499. */
    size_t n;
    char *img = image_with("p=0.3 err=9", &n); /* DFD_E_CANCELLED */
    th_resp r = th_upload(s.port, "/predict_image", "c.jpg", img, n);
    expect_error(&r, 499, "cancelled");
    free(img);
    assert_int_equal(th_stop(&s), DFD_OK);
}

static void bad_uploads_get_specific_errors(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    int port = s.port;
    /* Truncated multipart: the closing boundary never comes, Content-Length agrees. */
    size_t n, len;
    char *img = image_with("p=0.2", &n);
    char *body = th_multipart("file", "a.jpg", img, n, &len);
    th_resp r = th_request(port, "POST", "/v1/analyze", TH_MULTIPART_CT, body, len - 20);
    expect_error(&r, 400, "truncated");
    r = th_request(port, "POST", "/predict_image", TH_MULTIPART_CT, body, len / 2);
    json_t *j = expect_json(&r, 400);
    assert_true(json_is_null(json_object_get(j, "prediction")));
    json_decref(j);
    th_resp_free(&r);
    free(body);
    body = th_multipart("image", "a.jpg", img, n, &len);
    r = th_request(port, "POST", "/predict_image", TH_MULTIPART_CT, body, len);
    expect_error(&r, 400, "no field named 'file'");
    free(body);
    r = th_request(port, "POST", "/predict_image", "Content-Type: multipart/form-data\r\n", img, n);
    expect_error(&r, 400, "boundary");
    r = th_request(port, "POST", "/predict_image", "Content-Type: image/jpeg\r\n", img, n);
    expect_error(&r, 400, "expected a multipart/form-data upload with a field named 'file'");
    r = th_request(port, "POST", "/v1/analyze", TH_MULTIPART_CT, "garbage with no boundary", 24);
    expect_error(&r, 400, "never appears");
    free(img);
    /* Unknown media, refused image formats, empty files: told by content, not by name. */
    r = th_upload(port, "/v1/analyze", "photo.jpg", "just some text, not a picture", 29);
    expect_error(&r, 415, "not an image or a video");
    r = th_upload(port, "/v1/analyze", "anim.gif", "GIF89a\x01\x00\x01\x00\x00\x00\x00;", 14);
    expect_error(&r, 415, "unsupported format: 'GIF'");
    r = th_upload(port, "/v1/analyze", "empty.jpg", "", 0);
    expect_error(&r, 400, "empty");
    r = th_request(port, "POST", "/v1/analyze", "Content-Type: application/octet-stream\r\n", "", 0);
    expect_error(&r, 400, "empty");
    assert_int_equal(fake_analyses, 0); /* none of these reached the analyzer */
    assert_int_equal(th_stop(&s), DFD_OK);
}

/* Sends head, then body with Transfer-Encoding: chunked in pieces of `piece` bytes. */
static th_resp chunked_upload(int port, const char *body, size_t len, size_t piece) {
    th_resp r = {0};
    int fd = th_connect(port);
    char head[512];
    int h = snprintf(head, sizeof head,
                     "POST /v1/analyze HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" TH_MULTIPART_CT
                     "Transfer-Encoding: chunked\r\n\r\n");
    if (th_send(fd, head, (size_t)h) != 0) goto out;
    for (size_t off = 0; off < len; off += piece) {
        size_t k = len - off < piece ? len - off : piece;
        char sz[32];
        int z = snprintf(sz, sizeof sz, "%zx\r\n", k);
        if (th_send(fd, sz, (size_t)z) || th_send(fd, body + off, k) || th_send(fd, "\r\n", 2)) break;
    }
    th_send(fd, "0\r\n\r\n", 5);
    r = th_read(fd, 20);
out:
    close(fd);
    return r;
}

static void upload_limit_is_exact(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    size_t n, len;
    char *img = image_with("p=0.2", &n);
    char *body = th_multipart("file", "a.jpg", img, n, &len);
    c.max_upload_bytes = len; /* this body is exactly at the limit */
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    th_resp r = th_request(s.port, "POST", "/v1/analyze", TH_MULTIPART_CT, body, len);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    /* One byte more (a longer preamble keeps the body valid) is refused at the headers. */
    char *more = malloc(len + 1);
    more[0] = 'x';
    memcpy(more + 1, body, len);
    r = th_request(s.port, "POST", "/v1/analyze", TH_MULTIPART_CT, more, len + 1);
    char want[96];
    snprintf(want, sizeof want, "upload of %zu bytes is over the limit of %zu bytes", len + 1, len);
    expect_error(&r, 413, want);
    /* 413 comes before any of the body is sent: a client that waits for it sends nothing. */
    int fd = th_connect(s.port);
    char head[512];
    int h = snprintf(head, sizeof head,
                     "POST /predict_image HTTP/1.1\r\nHost: x\r\n" TH_MULTIPART_CT
                     "Content-Length: 999999999999\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(th_send(fd, head, (size_t)h), 0);
    r = th_read(fd, 5);
    close(fd);
    expect_error(&r, 413, "over the limit");
    /* Chunked uploads have no length to check first: counted as they come, cut at the limit. */
    r = chunked_upload(s.port, body, len, 100);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    r = chunked_upload(s.port, more, len + 1, 100);
    expect_error(&r, 413, "over the limit");
    free(more);
    /* A chunked upload far over the limit is cut off, not read forever. */
    size_t huge = 16u << 20;
    char *big = malloc(huge);
    memset(big, 'z', huge);
    memcpy(big, body, len / 2);
    r = chunked_upload(s.port, big, huge, 65536);
    assert_true(r.status == 413 || r.status == 0); /* answered, or the connection closed */
    th_resp_free(&r);
    free(big);
    free(body);
    free(img);
    assert_int_equal(fake_analyses, 2);
    assert_int_equal(th_stop(&s), DFD_OK);
}

static void slow_clients_work_and_stalled_ones_time_out(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    c.conn_timeout_s = 1;
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    size_t n, len;
    char *img = image_with("p=0.9", &n);
    char *body = th_multipart("file", "slow.jpg", img, n, &len);
    char head[512];
    int h = snprintf(head, sizeof head,
                     "POST /predict_image HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" TH_MULTIPART_CT
                     "Content-Length: %zu\r\n\r\n", len);
    /* Slow: the body in 8 pieces, 250 ms apart (2 s in all, twice the idle timeout). */
    int fd = th_connect(s.port);
    assert_int_equal(th_send(fd, head, (size_t)h), 0);
    size_t piece = (len + 7) / 8;
    for (size_t off = 0; off < len; off += piece) {
        th_sleep_ms(250);
        assert_int_equal(th_send(fd, body + off, len - off < piece ? len - off : piece), 0);
    }
    th_resp r = th_read(fd, 10);
    close(fd);
    json_t *j = expect_json(&r, 200);
    assert_string_equal(json_string_value(json_object_get(j, "prediction")), "FAKE");
    json_decref(j);
    th_resp_free(&r);
    /* Stalled: half the body, then silence: the server closes the connection. */
    fd = th_connect(s.port);
    assert_int_equal(th_send(fd, head, (size_t)h), 0);
    assert_int_equal(th_send(fd, body, len / 2), 0);
    double t0 = th_now();
    r = th_read(fd, 10);
    double waited = th_now() - t0;
    close(fd);
    assert_true(r.closed);
    assert_int_equal(r.status, 0);
    assert_true(waited >= 0.9 && waited < 5);
    th_resp_free(&r);
    /* Both were logged; the stalled one as closed by timeout, with no answer (499). */
    for (int i = 0; i < 300; i++) { /* the line is written once the server has closed it */
        pthread_mutex_lock(&s.mu);
        int done = s.log && strstr(s.log, "closed: timeout");
        pthread_mutex_unlock(&s.mu);
        if (done) break;
        th_sleep_ms(10);
    }
    pthread_mutex_lock(&s.mu);
    assert_non_null(strstr(s.log, "POST /predict_image 200 "));
    assert_non_null(strstr(s.log, "POST /predict_image 499 0 "));
    assert_non_null(strstr(s.log, "closed: timeout"));
    pthread_mutex_unlock(&s.mu);
    free(body);
    free(img);
    assert_int_equal(th_stop(&s), DFD_OK);
}

typedef struct conc_arg {
    int port, i;
    int ok;
} conc_arg;

static void *conc_client(void *arg) {
    conc_arg *a = arg;
    char instr[64];
    double p = (a->i + 0.5) / 50.0;
    snprintf(instr, sizeof instr, "p=%.4f delay=5", p);
    size_t n;
    char *img = image_with(instr, &n);
    char name[32];
    snprintf(name, sizeof name, "face%02d.jpg", a->i);
    th_resp r = th_upload(a->port, "/v1/analyze", name, img, n);
    json_t *j = th_json(&r);
    json_t *res = json_array_get(json_object_get(j, "results"), 0);
    /* Each answer is this client's own: its score and its file name. */
    a->ok = r.status == 200 && res && fabs(json_real_value(json_object_get(res, "p_fake")) - p) < 1e-4 &&
            !strcmp(json_string_value(json_object_get(res, "file")), name);
    json_decref(j);
    th_resp_free(&r);
    free(img);
    return NULL;
}

static void fifty_concurrent_images(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    pthread_t t[50];
    conc_arg a[50];
    for (int i = 0; i < 50; i++) {
        a[i] = (conc_arg){s.port, i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, conc_client, &a[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < 50; i++) {
        pthread_join(t[i], NULL);
        ok += a[i].ok;
    }
    assert_int_equal(ok, 50);
    assert_int_equal(th_stop(&s), DFD_OK);
}

static json_t *get_job(int port, const char *id, int status) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    th_resp r = th_get(port, path, NULL);
    json_t *j = expect_json(&r, status);
    th_resp_free(&r);
    return j;
}

static char *submit_video(int port, const char *instr) {
    size_t n;
    char *vid = video_with(instr, &n);
    th_resp r = th_upload(port, "/v1/analyze", "clip.mp4", vid, n);
    free(vid);
    json_t *j = expect_json(&r, 202);
    const char *id = json_string_value(json_object_get(j, "job_id"));
    assert_non_null(id);
    char loc[96];
    snprintf(loc, sizeof loc, "/v1/jobs/%s", id);
    assert_string_equal(th_header(&r, "Location"), loc);
    char *out = strdup(id);
    json_decref(j);
    th_resp_free(&r);
    return out;
}

static void video_job_polled_to_completion(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    char *id = submit_video(s.port, "p=0.8 steps=20 delay=25");
    double last = -1;
    int saw_partial = 0;
    json_t *j = NULL;
    for (int i = 0; i < 400; i++) {
        j = get_job(s.port, id, 200);
        const char *st = json_string_value(json_object_get(j, "state"));
        double pr = json_real_value(json_object_get(j, "progress"));
        assert_true(pr >= last && pr >= 0 && pr <= 1); /* never backwards */
        last = pr;
        if (pr > 0 && pr < 1) saw_partial = 1;
        if (!strcmp(st, "done")) break;
        assert_true(!strcmp(st, "queued") || !strcmp(st, "running"));
        assert_true(json_is_null(json_object_get(j, "result")));
        json_decref(j);
        j = NULL;
        th_sleep_ms(20);
    }
    assert_non_null(j);
    assert_true(saw_partial);
    assert_true(fabs(last - 1.0) < 1e-12);
    json_t *res = json_array_get(json_object_get(json_object_get(j, "result"), "results"), 0);
    assert_string_equal(json_string_value(json_object_get(res, "verdict")), "FAKE");
    assert_string_equal(json_string_value(json_object_get(res, "media")), "video");
    assert_int_equal(json_array_size(json_object_get(res, "frames")), 20);
    json_decref(j);
    /* Deleting a finished job forgets it. */
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    th_resp r = th_request(s.port, "DELETE", path, NULL, NULL, 0);
    j = expect_json(&r, 200);
    assert_true(json_is_true(json_object_get(j, "deleted")));
    json_decref(j);
    th_resp_free(&r);
    r = th_get(s.port, path, NULL);
    expect_error(&r, 404, "no job with id");
    r = th_get(s.port, "/v1/jobs/not-an-id", NULL);
    expect_error(&r, 404, "32 lowercase hex");
    free(id);
    assert_int_equal(th_stop(&s), DFD_OK);
}

static void jobs_cancel_queue_full_and_expire(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    c.workers = 1;
    c.queue = 2;
    c.job_ttl_s = 1.0;
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    int port = s.port;
    set_gate(0);
    char *running = submit_video(port, "gate=1 p=0.9");
    while (atomic_load(&gate_waiting) < 1) th_sleep_ms(5); /* the worker holds it */
    char *q1 = submit_video(port, "p=0.1");
    char *q2 = submit_video(port, "p=0.2");
    /* Their uploads wait in a private folder (0700), one private file (0600) each. */
    DIR *d = opendir(tmp_parent);
    struct dirent *e;
    char *priv = NULL;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "dfd-serve-", 10)) priv = tu_join(tmp_parent, e->d_name);
    closedir(d);
    assert_non_null(priv);
    struct stat sb;
    assert_int_equal(stat(priv, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    int files = 0;
    d = opendir(priv);
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "lock")) continue; /* the server's own lock */
        char *f = tu_join(priv, e->d_name);
        assert_int_equal(stat(f, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0600);
        free(f);
        files++;
    }
    closedir(d);
    assert_int_equal(files, 3);
    /* Full: 503 with Retry-After, for videos and for (synchronous) images alike. */
    size_t n;
    char *vid = video_with("p=0.3", &n);
    th_resp r = th_upload(port, "/v1/analyze", "c.mp4", vid, n);
    assert_non_null(th_header(&r, "Retry-After"));
    assert_true(atoi(th_header(&r, "Retry-After")) > 0);
    expect_error(&r, 503, "queue is full");
    free(vid);
    char *img = image_with("p=0.3", &n);
    r = th_upload(port, "/predict_image", "f.jpg", img, n);
    assert_non_null(th_header(&r, "Retry-After"));
    expect_error(&r, 503, "queue is full");
    /* Metrics show the queue depth. */
    r = th_get(port, "/metrics", NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\ndfd_queue_depth 2\n"));
    assert_non_null(strstr(r.body, "dfd_jobs{state=\"queued\"} 2\n"));
    assert_non_null(strstr(r.body, "dfd_jobs{state=\"running\"} 1\n"));
    th_resp_free(&r);
    /* Cancelling a queued job frees its place at once. */
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%s", q1);
    r = th_request(port, "DELETE", path, NULL, NULL, 0);
    json_t *j = expect_json(&r, 200);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "cancelled");
    json_decref(j);
    th_resp_free(&r);
    assert_int_equal(count_files(priv), 2); /* the cancelled one's upload is gone at once */
    free(priv);
    char *q3 = submit_video(port, "p=0.4");
    /* Cancelling the running one: 202, and the analysis stops through its progress callback. */
    snprintf(path, sizeof path, "/v1/jobs/%s", running);
    r = th_request(port, "DELETE", path, NULL, NULL, 0);
    j = expect_json(&r, 202);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
    assert_true(json_is_true(json_object_get(j, "cancel_requested")));
    json_decref(j);
    th_resp_free(&r);
    const char *st = NULL;
    for (int i = 0; i < 300; i++) {
        j = get_job(port, running, 200);
        st = json_string_value(json_object_get(j, "state"));
        if (strcmp(st, "running") != 0) break;
        json_decref(j);
        j = NULL;
        th_sleep_ms(10);
    }
    assert_string_equal(st, "cancelled");
    assert_true(json_is_null(json_object_get(j, "result")));
    json_decref(j);
    set_gate(1);
    /* The others run to completion. */
    const char *ids[] = {q2, q3};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 300; i++) {
            j = get_job(port, ids[k], 200);
            st = json_string_value(json_object_get(j, "state"));
            if (!strcmp(st, "done")) break;
            json_decref(j);
            j = NULL;
            th_sleep_ms(10);
        }
        assert_string_equal(st, "done");
        json_decref(j);
    }
    j = get_job(port, q1, 200);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "cancelled");
    json_decref(j);
    r = th_get(port, "/metrics", NULL);
    assert_non_null(strstr(r.body, "dfd_jobs_finished_total{state=\"cancelled\"} 2\n"));
    assert_non_null(strstr(r.body, "dfd_jobs_finished_total{state=\"done\"} 2\n"));
    th_resp_free(&r);
    /* After their time to live, finished jobs are forgotten. */
    th_sleep_ms(1600);
    r = th_get(port, path, NULL);
    expect_error(&r, 404, "forgotten 1 s after it ended");
    free(img);
    free(running);
    free(q1);
    free(q2);
    free(q3);
    assert_int_equal(th_stop(&s), DFD_OK);
}

static long metric(const char *text, const char *series) {
    const char *p = strstr(text, series);
    return p ? strtol(p + strlen(series), NULL, 10) : 0;
}

static void metrics_count_requests_and_log_lines(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    th_resp r = th_get(s.port, "/metrics", NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(th_header(&r, "Content-Type"), "text/plain; version=0.0.4"));
    const char *ok = "dfd_http_requests_total{route=\"/predict_image\",status=\"200\"} ";
    const char *nf = "dfd_http_requests_total{route=\"other\",status=\"404\"} ";
    long before_ok = metric(r.body, ok), before_nf = metric(r.body, nf);
    th_resp_free(&r);
    size_t n;
    char *img = image_with("p=0.6", &n);
    for (int i = 0; i < 3; i++) {
        r = th_upload(s.port, "/predict_image", "m.jpg", img, n);
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
    }
    free(img);
    r = th_get(s.port, "/missing", NULL);
    th_resp_free(&r);
    r = th_get(s.port, "/metrics", NULL);
    assert_int_equal(metric(r.body, ok), before_ok + 3);
    assert_int_equal(metric(r.body, nf), before_nf + 1);
    assert_int_equal(metric(r.body, "dfd_http_request_duration_seconds_count{route=\"/predict_image\"} "), 3);
    assert_int_equal(metric(r.body, "dfd_http_request_duration_seconds_bucket{route=\"/predict_image\",le=\"+Inf\"} "), 3);
    assert_true(metric(r.body, "\ndfd_http_upload_bytes_total ") > 3 * (long)n);
    th_resp_free(&r);
    /* One log line per request: method, path, status, bytes, milliseconds. A line is
     * written when the connection is done, which may be just after the client has its
     * answer: wait a little for the last ones. */
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&s.mu);
        int posts = 0;
        for (const char *q = s.log; q && (q = strstr(q, "POST /predict_image 200 ")); q++) posts++;
        int done = s.log && strstr(s.log, "GET /metrics 200 ") && strstr(s.log, "GET /missing 404 ") && posts >= 3;
        pthread_mutex_unlock(&s.mu);
        if (done) break;
        th_sleep_ms(10);
    }
    pthread_mutex_lock(&s.mu);
    int lines = 0;
    for (const char *p = s.log; (p = strstr(p, "POST /predict_image 200 ")); p++) {
        size_t bytes;
        double ms;
        assert_int_equal(sscanf(p, "POST /predict_image 200 %zu %lfms", &bytes, &ms), 2);
        assert_true(bytes > 20 && ms >= 0);
        lines++;
    }
    assert_int_equal(lines, 3);
    assert_non_null(strstr(s.log, "GET /missing 404 "));
    pthread_mutex_unlock(&s.mu);
    assert_int_equal(th_stop(&s), DFD_OK);
}

static void degraded_without_a_model(void **state) {
    (void)state;
    fake_fail_load = 1;
    dfd_server_config c;
    base_config(&c);
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    th_resp r = th_get(s.port, "/v1/health", NULL);
    json_t *j = expect_json(&r, 503);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "degraded");
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "fake.safetensors"));
    json_decref(j);
    th_resp_free(&r);
    size_t n;
    char *img = image_with("p=0.6", &n);
    r = th_upload(s.port, "/predict_image", "m.jpg", img, n);
    expect_error(&r, 503, "model not loaded: no model file 'fake.safetensors'");
    free(img);
    r = th_get(s.port, "/", NULL); /* the status route still answers */
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(th_stop(&s), DFD_OK);
}

typedef struct bg_req {
    int port;
    const char *instr;
    th_resp r;
} bg_req;

static void *bg_upload(void *arg) {
    bg_req *b = arg;
    size_t n;
    char *img = image_with(b->instr, &n);
    b->r = th_upload(b->port, "/predict_image", "late.jpg", img, n);
    free(img);
    return NULL;
}

static void long_analyses_outlive_the_idle_timeout_and_shutdown_finishes_them(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    c.conn_timeout_s = 1;
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    /* 1.5 s of analysis on a connection whose idle timeout is 1 s: the waiting
     * (suspended) request is not an idle client. */
    bg_req b = {s.port, "p=0.9 steps=15 delay=100", {0}};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bg_upload, &b), 0);
    while (atomic_load(&fake_analyses) < 1) th_sleep_ms(5);
    th_sleep_ms(50);
    /* Stop while it runs: the server stops listening but answers it first. */
    double t0 = th_now();
    assert_int_equal(th_stop(&s), DFD_OK);
    assert_true(th_now() - t0 > 0.5);
    pthread_join(t, NULL);
    json_t *j = expect_json(&b.r, 200);
    assert_string_equal(json_string_value(json_object_get(j, "prediction")), "FAKE");
    json_decref(j);
    th_resp_free(&b.r);
    assert_int_equal(th_connect(s.port), -1); /* no longer listening */
}

static void a_second_stop_request_cancels_analyses_in_flight(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    set_gate(0); /* the analysis would wait forever */
    bg_req b = {s.port, "gate=1 p=0.9", {0}};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bg_upload, &b), 0);
    while (atomic_load(&gate_waiting) < 1) th_sleep_ms(5);
    char one = 1;
    assert_int_equal(write(s.stop_pipe[1], &one, 1), 1);
    th_sleep_ms(300);
    pthread_mutex_lock(&s.mu);
    int done = s.done;
    pthread_mutex_unlock(&s.mu);
    assert_false(done); /* a graceful stop waits for the request in flight */
    assert_int_equal(write(s.stop_pipe[1], &one, 1), 1);
    pthread_join(t, NULL); /* the second one cancels it: the client hears why */
    expect_error(&b.r, 503, "the analysis was cancelled: the server is stopping");
    assert_int_equal(th_stop(&s), DFD_OK); /* (its extra byte is never read) */
    set_gate(1);
}

/* The upload bytes held at once (being received, or waiting for or in an analysis) are
 * capped server-wide: with two uploads held in their analyses, a third that would pass
 * --max-held-mb gets 503 with Retry-After, stores nothing, and leaks nothing of the
 * budget; once the analyses end, uploads are taken again. Eight open 150 MiB uploads
 * used to put 1.2 GiB on disk (issue 18). */
static void uploads_held_at_once_are_capped(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    size_t n, len;
    char *img = image_with("gate=1 p=0.9", &n);
    char *body = th_multipart("file", "late.jpg", img, n, &len);
    c.max_upload_bytes = len;
    c.max_held_bytes = 2 * n + len - 1; /* two files of n bytes fit, and a third body does not */
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    set_gate(0);
    bg_req b[2] = {{s.port, "gate=1 p=0.9", {0}}, {s.port, "gate=1 p=0.9", {0}}};
    pthread_t t[2];
    /* One after the other: while a body is being received it holds its whole length
     * (multipart framing included), and two at once would not fit. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, bg_upload, &b[i]), 0);
        for (int k = 0; k < 2000 && atomic_load(&gate_waiting) < i + 1; k++) th_sleep_ms(5);
        assert_int_equal(atomic_load(&gate_waiting), i + 1);
    }
    th_resp r = th_get(s.port, "/metrics", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(metric(r.body, "\ndfd_upload_bytes_held "), 2 * (long)n);
    assert_int_equal(metric(r.body, "\ndfd_upload_bytes_limit "), (long)(2 * n + len - 1));
    th_resp_free(&r);
    /* A body of known length is refused at its headers. */
    r = th_request(s.port, "POST", "/predict_image", TH_MULTIPART_CT, body, len);
    assert_string_equal(th_header(&r, "Retry-After"), "5");
    expect_error(&r, 503, "the server holds as many uploads as it may");
    /* A chunked one when it passes the budget; what it stored so far is removed. */
    r = chunked_upload(s.port, body, len, 64);
    assert_string_equal(th_header(&r, "Retry-After"), "5");
    expect_error(&r, 503, "the server holds as many uploads as it may");
    assert_int_equal(count_files(tmp_parent), 2); /* only the two in analysis */
    set_gate(1);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        json_t *j = expect_json(&b[i].r, 200);
        json_decref(j);
        th_resp_free(&b[i].r);
    }
    /* Everything was given back: the same upload is taken again, twice. */
    for (int i = 0; i < 2; i++) {
        r = th_request(s.port, "POST", "/predict_image", TH_MULTIPART_CT, body, len);
        json_decref(expect_json(&r, 200));
        th_resp_free(&r);
    }
    r = th_get(s.port, "/metrics", NULL);
    assert_int_equal(metric(r.body, "\ndfd_upload_bytes_held "), 0);
    th_resp_free(&r);
    free(body);
    free(img);
    assert_int_equal(th_stop(&s), DFD_OK);
}

/* Slow clients cannot take the server: one address may hold only --max-conn-per-ip
 * connections, and a body that trickles in (a byte every few seconds, never idle long
 * enough for --timeout) is cut off once it averages under --min-upload-rate, or when it
 * passes --request-timeout in all. 1,000 connections sending a byte every 10 s used to
 * freeze the service for everyone (issue 18). */
static int send_slowly(int port, const char *body, size_t len, size_t piece, int every_ms, double *took) {
    int fd = th_connect(port);
    assert_true(fd >= 0);
    char head[512];
    int h = snprintf(head, sizeof head,
                     "POST /predict_image HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" TH_MULTIPART_CT
                     "Content-Length: %zu\r\n\r\n", len);
    assert_int_equal(th_send(fd, head, (size_t)h), 0);
    double t0 = th_now();
    int cut = 0;
    for (size_t off = 0; off < len && !cut; off += piece) {
        th_sleep_ms(every_ms);
        cut = th_send(fd, body + off, len - off < piece ? len - off : piece) != 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (!cut && poll(&p, 1, 0) > 0) {
            char b;
            cut = recv(fd, &b, 1, MSG_PEEK) <= 0; /* closed by the server */
        }
    }
    th_resp r = th_read(fd, 3);
    *took = th_now() - t0;
    close(fd);
    int status = r.status;
    th_resp_free(&r);
    return cut || status == 0 ? 0 : status;
}

static void slow_and_greedy_clients_are_cut_off(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    c.conn_timeout_s = 2;
    c.max_conn_per_ip = 4;
    c.min_upload_rate = 100; /* bytes/s, averaged; far from both clients below, so that a
                              * busy machine (late sleeps, a slow server) does not flip them */
    c.min_rate_grace_s = 1;
    c.request_timeout_s = 3;
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    /* Four open connections from 127.0.0.1: a fifth is closed at once, unanswered. */
    int fds[4];
    for (int i = 0; i < 4; i++) assert_true((fds[i] = th_connect(s.port)) >= 0);
    th_sleep_ms(100);
    th_resp r = th_get(s.port, "/v1/health", NULL);
    assert_int_equal(r.status, 0);
    th_resp_free(&r);
    close(fds[0]);
    th_sleep_ms(100);
    r = th_get(s.port, "/v1/health", NULL); /* one went: room again */
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    for (int i = 1; i < 4; i++) close(fds[i]);
    th_sleep_ms(100);
    size_t n, len;
    char *img = image_with("p=0.9", &n);
    char *body = th_multipart("file", "slow.jpg", img, n, &len);
    /* 4 bytes every 250 ms (16 B/s, under 100 B/s): cut a little after the 1 s grace. */
    double took;
    assert_int_equal(send_slowly(s.port, body, len, 4, 250, &took), 0);
    assert_true(took >= 1.0 && took < 2.5);
    /* 60 bytes every 250 ms (240 B/s) is fast enough (2.4x the minimum), and done in about 1.5 s. */
    assert_int_equal(send_slowly(s.port, body, len, 60, 250, &took), 200);
    /* The same rate for a body that would take 5 s passes the 3 s request timeout. */
    size_t big_len;
    char *big_img = malloc(1200);
    memcpy(big_img, img, n);
    memset(big_img + n, 'x', 1200 - n);
    memcpy(big_img + 1200 - n + 111, img + 111, n - 111); /* keep the instructions at the end */
    char *big = th_multipart("file", "long.jpg", big_img, 1200, &big_len);
    assert_int_equal(send_slowly(s.port, big, big_len, 60, 250, &took), 0);
    assert_true(took >= 2.9 && took < 4.5);
    free(big);
    free(big_img);
    /* The log says why. */
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&s.mu);
        int done = s.log && strstr(s.log, "closed: request timeout");
        pthread_mutex_unlock(&s.mu);
        if (done) break;
        th_sleep_ms(10);
    }
    pthread_mutex_lock(&s.mu);
    assert_non_null(strstr(s.log, "POST /predict_image 499 0 "));
    assert_non_null(strstr(s.log, "closed: upload too slow"));
    assert_non_null(strstr(s.log, "closed: request timeout"));
    pthread_mutex_unlock(&s.mu);
    free(body);
    free(img);
    assert_int_equal(th_stop(&s), DFD_OK);
}

/* Images have a lane of their own: with the one worker busy on a video and four more
 * videos queued, an image queued after them is the next analysis to start, not the
 * sixth. A photo queued behind 18 videos used to wait 23.8 s instead of 31 ms (issue 18). */
static void images_overtake_queued_videos(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    c.workers = 1;
    c.threads = 1;
    c.queue = 10;
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    set_gate(0);
    char *ids[5];
    for (int i = 0; i < 5; i++) {
        size_t n;
        char *vid = video_with(i == 0 ? "gate=1 p=0.9" : "p=0.1", &n);
        char name[16];
        snprintf(name, sizeof name, "v%d.mp4", i);
        th_resp r = th_upload(s.port, "/v1/analyze", name, vid, n);
        free(vid);
        json_t *j = expect_json(&r, 202);
        ids[i] = strdup(json_string_value(json_object_get(j, "job_id")));
        json_decref(j);
        th_resp_free(&r);
        if (i == 0)
            for (int k = 0; k < 2000 && atomic_load(&gate_waiting) < 1; k++) th_sleep_ms(5);
    }
    assert_int_equal(atomic_load(&gate_waiting), 1); /* v0 runs, v1..v4 wait */
    bg_req b = {s.port, "p=0.9", {0}};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bg_upload, &b), 0);
    for (int k = 0; k < 2000; k++) { /* until the image waits in the queue too */
        th_resp r = th_get(s.port, "/metrics", NULL);
        long depth = metric(r.body, "\ndfd_queue_depth ");
        th_resp_free(&r);
        if (depth == 5) break;
        th_sleep_ms(5);
    }
    for (int i = 1; i < 5; i++) {
        json_t *j = get_job(s.port, ids[i], 200);
        assert_string_equal(json_string_value(json_object_get(j, "state")), "queued");
        json_decref(j);
    }
    set_gate(1);
    pthread_join(t, NULL);
    json_decref(expect_json(&b.r, 200));
    th_resp_free(&b.r);
    for (int i = 0; i < 5; i++) { /* every video still ends */
        for (int k = 0; k < 2000; k++) {
            json_t *j = get_job(s.port, ids[i], 200);
            int done = !strcmp(json_string_value(json_object_get(j, "state")), "done");
            json_decref(j);
            if (done) break;
            th_sleep_ms(5);
        }
        free(ids[i]);
    }
    pthread_mutex_lock(&order_mu);
    assert_int_equal(n_order, 6);
    static const char *const want[] = {"v0.mp4", "late.jpg", "v1.mp4", "v2.mp4", "v3.mp4", "v4.mp4"};
    for (int i = 0; i < 6; i++)
        if (strcmp(order[i], want[i])) fail_msg("analysis %d was '%s', expected '%s'", i, order[i], want[i]);
    pthread_mutex_unlock(&order_mu);
    assert_int_equal(th_stop(&s), DFD_OK);
}

/* ... but a steady stream of images does not hold a queued video back forever: at most 8
 * images are taken ahead of it. Before, the load test's clips never started while 50
 * clients kept posting photos (0 of 6 done after 18 minutes). One worker, held by the
 * first image; then a video and 10 more images queue; the video is the tenth analysis
 * (after the first image and 8 of the others), not the twelfth. */
static void queued_videos_are_not_starved_by_images(void **state) {
    (void)state;
    dfd_server_config c;
    base_config(&c);
    c.workers = 1;
    c.threads = 1;
    c.queue = 16;
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    set_gate(0);
    bg_req first = {s.port, "gate=1 p=0.9", {0}};
    pthread_t t0;
    assert_int_equal(pthread_create(&t0, NULL, bg_upload, &first), 0);
    for (int k = 0; k < 2000 && atomic_load(&gate_waiting) < 1; k++) th_sleep_ms(5);
    assert_int_equal(atomic_load(&gate_waiting), 1);
    size_t n;
    char *vid = video_with("p=0.1", &n);
    th_resp r = th_upload(s.port, "/v1/analyze", "v.mp4", vid, n);
    free(vid);
    json_t *j = expect_json(&r, 202);
    char *id = strdup(json_string_value(json_object_get(j, "job_id")));
    json_decref(j);
    th_resp_free(&r);
    bg_req more[10];
    pthread_t t[10];
    for (int i = 0; i < 10; i++) {
        more[i] = (bg_req){s.port, "p=0.2", {0}};
        assert_int_equal(pthread_create(&t[i], NULL, bg_upload, &more[i]), 0);
    }
    for (int k = 0; k < 4000; k++) { /* until all 11 wait in the queue */
        th_resp m = th_get(s.port, "/metrics", NULL);
        long depth = metric(m.body, "\ndfd_queue_depth ");
        th_resp_free(&m);
        if (depth == 11) break;
        th_sleep_ms(5);
    }
    set_gate(1);
    pthread_join(t0, NULL);
    json_decref(expect_json(&first.r, 200));
    th_resp_free(&first.r);
    for (int i = 0; i < 10; i++) {
        pthread_join(t[i], NULL);
        json_decref(expect_json(&more[i].r, 200));
        th_resp_free(&more[i].r);
    }
    for (int k = 0; k < 2000; k++) {
        j = get_job(s.port, id, 200);
        int done = !strcmp(json_string_value(json_object_get(j, "state")), "done");
        json_decref(j);
        if (done) break;
        th_sleep_ms(5);
    }
    free(id);
    pthread_mutex_lock(&order_mu);
    assert_int_equal(n_order, 12);
    int at = -1;
    for (int i = 0; i < n_order; i++)
        if (!strcmp(order[i], "v.mp4")) at = i;
    pthread_mutex_unlock(&order_mu);
    if (at != 9) fail_msg("the video was analysis %d, expected 9 (after the first image and 8 more)", at);
    assert_int_equal(th_stop(&s), DFD_OK);
}

static void mkdir_with(const char *dir, const char *file1, const char *file2) {
    assert_int_equal(mkdir(dir, 0700), 0);
    for (int i = 0; i < 2; i++) {
        const char *f = i ? file2 : file1;
        if (!f) continue;
        char *p = tu_join(dir, f);
        tu_write_file(p, "x", 1);
        free(p);
    }
}

/* A server killed with SIGKILL leaves its upload folder behind; the next server to start
 * in the same parent removes it, and only what is certainly such a folder: named
 * dfd-serve-XXXXXX, with a "lock" file that no live server holds (the kernel drops a
 * dead process's flock). A live server's folder, folders without a lock, other names,
 * and whatever a symbolic link points to are left alone. Old folders used to stay
 * forever (issue 18). */
static void stale_upload_folders_of_dead_servers_are_removed(void **state) {
    (void)state;
    char *dead = tu_join(tmp_parent, "dfd-serve-dead01");
    char *live = tu_join(tmp_parent, "dfd-serve-live01");
    char *nolock = tu_join(tmp_parent, "dfd-serve-nolck1");
    char *other = tu_join(tmp_parent, "dfd-serve-other-name");
    char *victim = tu_join(tmp_parent, "victim");
    char *link = tu_join(tmp_parent, "dfd-serve-link01");
    mkdir_with(dead, "lock", "upload-abc123");
    mkdir_with(live, "lock", "upload-def456");
    mkdir_with(nolock, "upload-ghi789", NULL);
    mkdir_with(other, "lock", NULL);
    mkdir_with(victim, "lock", "precious");
    assert_int_equal(symlink(victim, link), 0);
    char *live_lock = tu_join(live, "lock");
    int held = open(live_lock, O_RDONLY); /* a live server's lock */
    assert_true(held >= 0);
    assert_int_equal(flock(held, LOCK_EX), 0);
    dfd_server_config c;
    base_config(&c);
    th_server s;
    assert_int_equal(th_start(&s, &c), 0);
    struct stat st;
    assert_int_equal(stat(dead, &st), -1); /* gone */
    assert_int_equal(stat(live, &st), 0);
    assert_int_equal(stat(live_lock, &st), 0);
    assert_int_equal(stat(nolock, &st), 0);
    assert_int_equal(stat(other, &st), 0);
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    char *precious = tu_join(victim, "precious");
    assert_int_equal(stat(precious, &st), 0);
    /* The server's own folder has a lock that a second server cannot take. */
    DIR *d = opendir(tmp_parent);
    char *mine = NULL;
    for (struct dirent *e; (e = readdir(d));)
        if (!strncmp(e->d_name, "dfd-serve-", 10) && strlen(e->d_name) == 16 && strcmp(e->d_name, "dfd-serve-live01") &&
            strcmp(e->d_name, "dfd-serve-nolck1") && strcmp(e->d_name, "dfd-serve-link01"))
            mine = tu_join(tmp_parent, e->d_name);
    closedir(d);
    assert_non_null(mine);
    char *mine_lock = tu_join(mine, "lock");
    int fd = open(mine_lock, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), -1);
    close(fd);
    assert_int_equal(th_stop(&s), DFD_OK);
    assert_int_equal(stat(mine, &st), -1); /* a clean stop removes its own */
    /* Once the live one's server has gone too, the next start removes it. */
    close(held);
    assert_int_equal(th_start(&s, &c), 0);
    assert_int_equal(stat(live, &st), -1);
    assert_int_equal(th_stop(&s), DFD_OK);
    assert_int_equal(stat(precious, &st), 0);
    assert_int_equal(unlink(link), 0);
    tu_rmtree(victim);
    tu_rmtree(nolock);
    tu_rmtree(other);
    free(mine_lock);
    free(mine);
    free(precious);
    free(live_lock);
    free(link);
    free(victim);
    free(other);
    free(nolock);
    free(live);
    free(dead);
}

int main(void) {
    atomic_init(&gate_waiting, 0);
    atomic_init(&fake_analyses, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(status_page_and_static_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(predict_image_answers_like_the_original, setup, teardown),
        cmocka_unit_test_setup_teardown(v1_analyze_images_sync_multipart_and_raw, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_analyses_answer_by_status_code, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_uploads_get_specific_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(upload_limit_is_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(slow_clients_work_and_stalled_ones_time_out, setup, teardown),
        cmocka_unit_test_setup_teardown(fifty_concurrent_images, setup, teardown),
        cmocka_unit_test_setup_teardown(video_job_polled_to_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(jobs_cancel_queue_full_and_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_count_requests_and_log_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(degraded_without_a_model, setup, teardown),
        cmocka_unit_test_setup_teardown(long_analyses_outlive_the_idle_timeout_and_shutdown_finishes_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_second_stop_request_cancels_analyses_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(uploads_held_at_once_are_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(slow_and_greedy_clients_are_cut_off, setup, teardown),
        cmocka_unit_test_setup_teardown(images_overtake_queued_videos, setup, teardown),
        cmocka_unit_test_setup_teardown(queued_videos_are_not_starved_by_images, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_upload_folders_of_dead_servers_are_removed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
