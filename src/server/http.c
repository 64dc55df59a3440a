/* http.c — the HTTP side of `dfd serve` on libmicrohttpd: routing, uploads streamed to
 * private temp files under a size limit, content sniffing, synchronous answers through
 * suspended connections, background jobs, the page's assets, logs, metrics and a clean
 * shutdown.
 *
 * Threads: libmicrohttpd's own I/O threads run the access handler and never analyse
 * anything; analyses run on the worker pool (jobs.c). A request that waits for its
 * analysis (an image, or the original's /predict_video) suspends its connection and is
 * resumed by the worker that finished it, so slow analyses hold no I/O thread and the
 * number of analyses at once is the number of workers, whatever the number of clients.
 *
 * With a broker (--broker redis://...), there is no pool here: an upload becomes a job in
 * Redis (broker.h) that some `dfd worker` runs; a request that waits for it is suspended
 * as above and resumed by this server's notifier thread when the worker reports the end
 * (a list per server instance, checked against the jobs' states every second too). Job
 * lookups, cancels, health and metrics then read Redis, so any server sees every job.
 *
 * Nothing from a request reaches a shell or a file name: uploads go to mkstemp() names
 * in a folder made for this process (0700), and assets are looked up by exact name in
 * the table compiled into the binary.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>
#include <jansson.h>
#include <microhttpd.h>

#include "broker.h"
#include "server.h"

/* After an upload passes the limit, its remaining bytes are read and thrown away (so the
 * client can still be told 413) up to this much more; past it the connection is closed. */
#define DISCARD_ALLOWANCE (4u << 20)
#define RETRY_AFTER_S "5" /* seconds a refused client should wait before trying again */

typedef struct request request;

/* A request waiting for a broker job (see the notifier). */
typedef struct waiter {
    char id[33];
    request *r;
    int suspended; /* its connection is suspended: the notifier resumes it */
    int done;      /* the end came before the suspension: the request answers at once */
    struct waiter *next;
} waiter;

typedef struct server {
    dfd_server_config cfg;
    struct MHD_Daemon *daemon;
    srv_pool *pool;           /* the in-process pool; NULL with a broker */
    srv_broker *broker;       /* with --broker: requests' connection (its own lock) */
    srv_broker *notify_b;     /* the notifier's connection (it blocks) */
    char sid[33];             /* this server instance: workers tell it of its jobs' ends */
    pthread_t notifier;
    int notifier_started;
    atomic_int notifier_quit;
    pthread_mutex_t wmu;      /* guards waiters */
    waiter *waiters;
    srv_metrics *metrics;
    char tmpdir[4096];
    int lock_fd;              /* flock'ed while this server lives: its folder is not stale */
    atomic_int inflight;      /* requests begun and not yet completed */
    atomic_int shutting_down;
    atomic_uint upload_seq;
    double started_ms;
    /* Upload bytes on disk: reserved as requests announce or send them, released when
     * their file is removed (by the request, or by the pool after the analysis). */
    _Atomic uint64_t held_bytes;
    uint64_t max_held;
} server;

struct request {
    server *s;
    struct MHD_Connection *conn;
    double t0;
    char method[12];
    char path[160];       /* sanitised, for the log line */
    const char *route_name; /* a fixed pattern, for metrics */
    enum srv_route route;
    int status;           /* 0 until a response is queued */
    size_t resp_bytes;
    uint64_t bytes_in;
    /* Upload */
    int uploading;
    int fd;
    char *tmp_path;       /* owned until handed to the pool */
    srv_multipart *mp;    /* NULL for a raw body */
    int over_limit;
    uint64_t discarded;
    uint64_t reserved;    /* this request's share of held_bytes */
    const char *cut;      /* why the server closed the connection mid-request (for the log) */
    int fail_status;      /* an error found while reading the body, answered at its end */
    char fail_msg[512];
    /* Waiting for the analysis */
    srv_job *job;
    int waiting;
    char job_id[33];      /* with a broker: the job this request waits for */
};

/* ---- small helpers ------------------------------------------------------------------ */

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void add_common_headers(struct MHD_Response *resp, const char *ctype, int cacheable) {
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cacheable ? "no-cache" : "no-store");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
}

/* Queues a response; takes ownership of body when must_free. */
static enum MHD_Result queue(request *r, int status, const char *ctype, const void *body, size_t len, int must_free,
                             int cacheable, const char *const *headers) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, (void *)body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (must_free) free((void *)body);
        return MHD_NO;
    }
    add_common_headers(resp, ctype, cacheable);
    for (int i = 0; headers && headers[i]; i += 2) MHD_add_response_header(resp, headers[i], headers[i + 1]);
    if (atomic_load(&r->s->shutting_down)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result q = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (q == MHD_YES) {
        r->status = status;
        r->resp_bytes = len;
        /* Counted now, not when the connection is done: a client that has its answer
         * and asks /metrics next must see it counted. */
        srv_metrics_request(r->s->metrics, r->route_name, status, (srv_now_ms() - r->t0) / 1000.0, r->bytes_in);
    }
    return q;
}

/* Queues obj (stolen) as JSON. */
static enum MHD_Result queue_json_h(request *r, int status, json_t *obj, const char *const *headers) {
    /* 10 significant digits: 172.1, not 172.09999999999999 (a float box widened to double). */
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(obj);
    if (!text) {
        static const char oom[] = "{\"error\":\"out of memory while writing the answer\"}";
        return queue(r, 500, "application/json", oom, sizeof oom - 1, 0, 0, NULL);
    }
    return queue(r, status, "application/json", text, strlen(text), 1, 0, headers);
}

static enum MHD_Result queue_json(request *r, int status, json_t *obj) { return queue_json_h(r, status, obj, NULL); }

/* {"error": message}; the original's routes also carry "prediction": null. */
static enum MHD_Result queue_error_h(request *r, int status, const char *const *headers, const char *fmt, ...)
    DFD_PRINTF(4, 5);
static enum MHD_Result queue_error_h(request *r, int status, const char *const *headers, const char *fmt, ...) {
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    if (o && (r->route == R_PREDICT_IMAGE || r->route == R_PREDICT_VIDEO)) json_object_set_new(o, "prediction", json_null());
    if (o) json_object_set_new(o, "error", json_string(msg));
    return queue_json_h(r, status, o, headers);
}
#define queue_error(r, status, ...) queue_error_h((r), (status), NULL, __VA_ARGS__)

static enum MHD_Result queue_busy(request *r, const char *msg) {
    static const char *const h[] = {MHD_HTTP_HEADER_RETRY_AFTER, RETRY_AFTER_S, NULL};
    return queue_error_h(r, 503, h, "%s; retry later", msg);
}

static const char *header(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* ---- routing ------------------------------------------------------------------------ */

/* ---- static routes ------------------------------------------------------------------- */

#ifdef DFD_HAVE_WEB_ASSETS
static const char *asset_type(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (!strcmp(dot, ".json")) return "application/json";
    if (!strcmp(dot, ".svg")) return "image/svg+xml";
    if (!strcmp(dot, ".png")) return "image/png";
    return "application/octet-stream";
}

/* The page may only load what this server serves (no CDN), and draw blob: previews. */
static const char page_csp[] = "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                               "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'";
#endif

static enum MHD_Result serve_asset(request *r, const char *name) {
#ifdef DFD_HAVE_WEB_ASSETS
    for (const struct dfd_asset *a = dfd_web_assets; a->name; a++)
        if (strcmp(a->name, name) == 0) {
            const char *const h[] = {"Content-Security-Policy", page_csp, MHD_HTTP_HEADER_VARY, "Accept", NULL};
            return queue(r, 200, asset_type(a->name), a->data, a->len, 0, 1, h);
        }
#endif
    return queue_error(r, 404, "'%s' is not built into this server", name);
}

static enum MHD_Result serve_root(request *r) {
    if (srv_wants_html(header(r->conn, MHD_HTTP_HEADER_ACCEPT))) return serve_asset(r, "index.html");
    json_t *o = json_pack("{s:s}", "status", "Deepfake Detector API is online and running.");
    const char *const h[] = {MHD_HTTP_HEADER_VARY, "Accept", NULL};
    return queue_json_h(r, 200, o, h);
}

static enum MHD_Result serve_health_broker(request *r) {
    server *s = r->s;
    srv_broker_stats st;
    dfd_error e;
    srv_error_clear(&e);
    int down = atomic_load(&s->shutting_down);
    if (srv_broker_stats_get(s->broker, s->cfg.worker_window_s, &st, &e) != DFD_OK) {
        json_t *o = json_pack("{s:s,s:s,s:f,s:s,s:s}", "status", "unavailable", "version", dfd_version(), "uptime_s",
                              (srv_now_ms() - s->started_ms) / 1000.0, "broker", srv_broker_where(s->broker), "error",
                              e.message);
        return queue_json(r, 503, o);
    }
    char why[160] = "";
    if (st.workers_seen == 0)
        snprintf(why, sizeof why, "no worker has been seen in the last %g s (start `dfd worker --broker ...`)",
                 s->cfg.worker_window_s);
    json_t *o = json_pack("{s:s,s:s,s:f,s:s,s:I,s:I,s:I,s:I,s:i,s:f,s:I}", "status",
                          down ? "stopping" : why[0] ? "degraded" : "ok", "version", dfd_version(), "uptime_s",
                          (srv_now_ms() - s->started_ms) / 1000.0, "broker", srv_broker_where(s->broker), "workers",
                          (json_int_t)st.workers_seen, "workers_seen", (json_int_t)st.workers_seen, "running",
                          (json_int_t)st.running, "queue_depth", (json_int_t)st.queued, "queue_capacity", s->cfg.queue,
                          "oldest_wait_s", st.oldest_wait_s, "retries", (json_int_t)st.retries);
    if (o) {
        json_object_set_new(o, "max_upload_bytes", json_integer((json_int_t)s->cfg.max_upload_bytes));
        json_object_set_new(o, "error", why[0] ? json_string(why) : json_null());
    }
    return queue_json(r, why[0] || down ? 503 : 200, o);
}

static enum MHD_Result serve_health(request *r) {
    server *s = r->s;
    if (s->broker) return serve_health_broker(r);
    srv_pool_stats st;
    srv_pool_get_stats(s->pool, &st);
    const char *deg = srv_pool_degraded(s->pool);
    int down = atomic_load(&s->shutting_down);
    json_t *o = json_pack("{s:s,s:s,s:f,s:i,s:i,s:i,s:i}", "status", deg ? "degraded" : down ? "stopping" : "ok",
                          "version", dfd_version(), "uptime_s", (srv_now_ms() - s->started_ms) / 1000.0, "workers",
                          st.workers, "running", st.running, "queue_depth", st.queued, "queue_capacity",
                          st.queue_capacity);
    if (o) {
        json_object_set_new(o, "max_upload_bytes", json_integer((json_int_t)s->cfg.max_upload_bytes));
        json_object_set_new(o, "error", deg ? json_string(deg) : json_null());
    }
    return queue_json(r, deg || down ? 503 : 200, o);
}

static enum MHD_Result serve_models(request *r) {
    server *s = r->s;
    const dfd_server_analyzer *a = s->cfg.analyzer;
    json_t *o = a->describe ? a->describe(a->cls) : NULL;
    if (!o) o = json_object();
    const char *deg = s->pool ? srv_pool_degraded(s->pool) : NULL;
    char why[600];
    if (s->broker) {
        /* The models are the workers': loaded when some worker is alive. */
        srv_broker_stats st;
        dfd_error e;
        srv_error_clear(&e);
        if (srv_broker_stats_get(s->broker, s->cfg.worker_window_s, &st, &e) != DFD_OK)
            snprintf(why, sizeof why, "%s", e.message);
        else if (st.workers_seen == 0)
            snprintf(why, sizeof why, "no worker has been seen in the last %g s", s->cfg.worker_window_s);
        else
            why[0] = 0;
        deg = why[0] ? why : NULL;
    }
    if (o) {
        json_object_set_new(o, "loaded", json_boolean(!deg));
        json_object_set_new(o, "error", deg ? json_string(deg) : json_null());
    }
    return queue_json(r, 200, o);
}

/* The gauges of requests and upload bytes, the same with or without a broker, appended at
 * extra + n (the snprintf convention: returns the length it would have). */
static int upload_gauges(server *s, char *extra, size_t cap, int n) {
    if (n < 0 || (size_t)n >= cap) return n;
    return n + snprintf(extra + n, cap - (size_t)n,
                        "# HELP dfd_requests_in_flight Requests begun and not yet answered.\n"
                        "# TYPE dfd_requests_in_flight gauge\ndfd_requests_in_flight %d\n"
                        "# HELP dfd_upload_bytes_held Upload bytes on disk: being received, queued or analysed.\n"
                        "# TYPE dfd_upload_bytes_held gauge\ndfd_upload_bytes_held %" PRIu64 "\n"
                        "# HELP dfd_upload_bytes_limit Upload bytes that may be held before uploads get 503.\n"
                        "# TYPE dfd_upload_bytes_limit gauge\ndfd_upload_bytes_limit %" PRIu64 "\n",
                        atomic_load(&s->inflight), (uint64_t)atomic_load(&s->held_bytes), s->max_held);
}

static enum MHD_Result serve_metrics_broker(request *r) {
    server *s = r->s;
    srv_broker_stats st;
    dfd_error e;
    srv_error_clear(&e);
    int up = srv_broker_stats_get(s->broker, s->cfg.worker_window_s, &st, &e) == DFD_OK;
    char extra[4096];
    int n = snprintf(extra, sizeof extra,
                     "# HELP dfd_broker_up Whether the job broker (Redis) answered.\n# TYPE dfd_broker_up gauge\n"
                     "dfd_broker_up %d\n"
                     "# HELP dfd_queue_capacity Jobs that may wait before uploads are refused with 503.\n"
                     "# TYPE dfd_queue_capacity gauge\ndfd_queue_capacity %d\n",
                     up, s->cfg.queue);
    n = upload_gauges(s, extra, sizeof extra, n);
    if (up && n > 0 && (size_t)n < sizeof extra)
        n += snprintf(extra + n, sizeof extra - (size_t)n,
                      "# HELP dfd_queue_depth Jobs waiting for a worker (all servers).\n# TYPE dfd_queue_depth gauge\n"
                      "dfd_queue_depth %" PRId64 "\n"
                      "# HELP dfd_queue_oldest_wait_seconds Age of the oldest job waiting for a worker.\n"
                      "# TYPE dfd_queue_oldest_wait_seconds gauge\ndfd_queue_oldest_wait_seconds %.3f\n"
                      "# HELP dfd_workers Workers with a heartbeat in the last interval.\n# TYPE dfd_workers gauge\n"
                      "dfd_workers %" PRId64 "\n"
                      "# HELP dfd_jobs_running Jobs a worker has taken and not finished.\n"
                      "# TYPE dfd_jobs_running gauge\ndfd_jobs_running %" PRId64 "\n"
                      "# HELP dfd_job_retries_total Runs that were a second or later attempt (a worker died).\n"
                      "# TYPE dfd_job_retries_total counter\ndfd_job_retries_total %" PRId64 "\n"
                      "# HELP dfd_jobs_finished_total Analyses finished (all servers), by end state.\n"
                      "# TYPE dfd_jobs_finished_total counter\n",
                      st.queued, st.oldest_wait_s, st.workers_seen, st.running, st.retries);
    for (int k = SRV_JOB_DONE; up && k < SRV_JOB__COUNT && n > 0 && (size_t)n < sizeof extra; k++)
        n += snprintf(extra + n, sizeof extra - (size_t)n, "dfd_jobs_finished_total{state=\"%s\"} %" PRIu64 "\n",
                      srv_job_state_name((srv_job_state)k), st.finished[k]);
    char *text = srv_metrics_render(s->metrics, extra);
    if (!text) return queue_error(r, 500, "out of memory while writing metrics");
    return queue(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text), 1, 0, NULL);
}

static enum MHD_Result serve_metrics(request *r) {
    server *s = r->s;
    if (s->broker) return serve_metrics_broker(r);
    srv_pool_stats st;
    srv_pool_get_stats(s->pool, &st);
    char extra[3072];
    int n = snprintf(extra, sizeof extra,
                     "# HELP dfd_queue_depth Jobs waiting for a worker.\n# TYPE dfd_queue_depth gauge\n"
                     "dfd_queue_depth %d\n"
                     "# HELP dfd_queue_capacity Jobs that may wait before uploads are refused with 503.\n"
                     "# TYPE dfd_queue_capacity gauge\ndfd_queue_capacity %d\n"
                     "# HELP dfd_workers Analysis workers.\n# TYPE dfd_workers gauge\ndfd_workers %d\n"
                     "# HELP dfd_jobs_running Analyses running now.\n# TYPE dfd_jobs_running gauge\n"
                     "dfd_jobs_running %d\n",
                     st.queued, st.queue_capacity, st.workers, st.running);
    n = upload_gauges(s, extra, sizeof extra, n);
    if (n > 0 && (size_t)n < sizeof extra)
        n += snprintf(extra + n, sizeof extra - (size_t)n, "# HELP dfd_jobs Background jobs kept, by state.\n# TYPE dfd_jobs gauge\n");
    for (int k = 0; k < SRV_JOB__COUNT && n > 0 && (size_t)n < sizeof extra; k++)
        n += snprintf(extra + n, sizeof extra - (size_t)n, "dfd_jobs{state=\"%s\"} %d\n",
                      srv_job_state_name((srv_job_state)k), st.jobs_by_state[k]);
    if (n > 0 && (size_t)n < sizeof extra)
        n += snprintf(extra + n, sizeof extra - (size_t)n,
                      "# HELP dfd_jobs_finished_total Analyses finished, by end state.\n"
                      "# TYPE dfd_jobs_finished_total counter\n");
    for (int k = SRV_JOB_DONE; k < SRV_JOB__COUNT && n > 0 && (size_t)n < sizeof extra; k++)
        n += snprintf(extra + n, sizeof extra - (size_t)n, "dfd_jobs_finished_total{state=\"%s\"} %" PRIu64 "\n",
                      srv_job_state_name((srv_job_state)k), st.finished_by_state[k]);
    char *text = srv_metrics_render(s->metrics, extra);
    if (!text) return queue_error(r, 500, "out of memory while writing metrics");
    return queue(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text), 1, 0, NULL);
}

/* ---- results ------------------------------------------------------------------------- */

int srv_http_status(int code) {
    switch (code) {
    case DFD_OK:
        return 200;
    case DFD_E_LIMIT:
        return 413;
    case DFD_E_UNSUPPORTED:
        return 415;
    case DFD_E_CORRUPT:
    case DFD_E_NO_STREAM:
        return 422;
    case DFD_E_CANCELLED:
        return 499; /* as nginx's "client closed request": the analysis was stopped, not failed */
    case DFD_E_MODEL:
        return 503;
    default: /* DFD_E_NOMEM, DFD_E_INTERNAL, and codes an analysis does not give */
        return 500;
    }
}

/* How an analysis ended, from the pool's job or the broker's: what the answers are made of. */
typedef struct outcome {
    srv_job_state state;
    int error_code;        /* the failure's DFD_E_* (not DONE) */
    const char *error;     /* the failure's message (not DONE) */
    json_t *element;       /* DONE: the dfd.result element (owned) */
    int verdict;           /* DONE */
    double p_fake;         /* DONE; NAN when none */
    int status;            /* DONE: the result's status (dfd_result_status) */
} outcome;

static void outcome_from_result(outcome *o, const dfd_result *res) {
    o->element = srv_result_element(res);
    o->verdict = (int)dfd_result_verdict(res);
    o->p_fake = dfd_result_p_fake(res);
    o->status = dfd_result_status(res);
}

/* The status for a result with verdict ERROR (never 200: an error result is no answer). */
static int error_result_status(int status) {
    int st = srv_http_status(status);
    return st == 200 ? 500 : st;
}

static const char *element_error(json_t *el) {
    const char *e = json_string_value(json_object_get(el, "error"));
    return e ? e : "the file could not be analysed";
}

/* Answers a waiting request from how its analysis ended (o->element is consumed). */
static enum MHD_Result answer_outcome(request *r, outcome *o) {
    server *s = r->s;
    if (o->state != SRV_JOB_DONE) {
        json_decref(o->element);
        if (o->state == SRV_JOB_CANCELLED) {
            if (atomic_load(&s->shutting_down))
                return queue_error(r, 503, "the analysis was cancelled: the server is stopping");
            return queue_error(r, srv_http_status(DFD_E_CANCELLED), "the analysis was cancelled");
        }
        int st = srv_http_status(o->error_code);
        return queue_error(r, st == 200 ? 500 : st, "%s", o->error ? o->error : "the analysis failed");
    }
    json_t *el = o->element;
    if (!el) return queue_error(r, 500, "out of memory while writing the result");
    if (r->route == R_ANALYZE) {
        int is_error = o->verdict == DFD_VERDICT_ERROR;
        json_t *doc = json_pack("{s:s,s:[O]}", "schema", DFD_RESULT_SCHEMA, "results", el);
        if (!doc) {
            json_decref(el);
            return queue_error(r, 500, "out of memory while writing the result");
        }
        if (is_error) {
            json_object_set_new(doc, "error", json_string(element_error(el)));
            json_decref(el);
            return queue_json(r, error_result_status(o->status), doc);
        }
        json_decref(el);
        return queue_json(r, 200, doc);
    }
    /* The original's answer: P(real) as raw_score, confidence in the verdict in percent. */
    enum MHD_Result q;
    if (o->verdict == DFD_VERDICT_NO_FACE) {
        q = queue_error(r, 422, "no face found");
    } else if (o->verdict != DFD_VERDICT_REAL && o->verdict != DFD_VERDICT_FAKE) {
        q = queue_error(r, error_result_status(o->status), "%s", element_error(el));
    } else {
        double p_real = 1.0 - o->p_fake;
        double conf = 100.0 * (p_real > 1.0 - p_real ? p_real : 1.0 - p_real);
        json_t *a = json_pack("{s:s,s:f,s:f,s:n}", "prediction", dfd_verdict_name((dfd_verdict)o->verdict),
                              "confidence", conf, "raw_score", p_real, "error");
        q = queue_json(r, 200, a);
    }
    json_decref(el);
    return q;
}

static enum MHD_Result answer_broker_job(request *r) {
    server *s = r->s;
    srv_broker_job j;
    dfd_error e;
    srv_error_clear(&e);
    if (srv_broker_get(s->broker, r->job_id, &j, &e) != DFD_OK) return queue_busy(r, e.message);
    if (!j.found) {
        srv_broker_job_clear(&j);
        return queue_busy(r, "the job is gone from the broker (Redis lost it, or it expired)");
    }
    if (j.state == SRV_JOB_QUEUED || j.state == SRV_JOB_RUNNING) {
        srv_broker_job_clear(&j); /* woken by a forced stop */
        if (atomic_load(&s->shutting_down)) return queue_error(r, 503, "the server is stopping");
        return queue_error(r, 500, "the job has not ended yet (woken too early)");
    }
    outcome o = {.state = j.state, .error_code = j.status, .error = j.error, .verdict = j.verdict,
                 .p_fake = j.p_fake, .status = j.status};
    if (j.state == SRV_JOB_DONE) {
        o.element = j.result ? json_loads(j.result, 0, NULL) : NULL;
        if (!json_is_object(o.element)) {
            json_decref(o.element);
            srv_broker_job_clear(&j);
            return queue_error(r, 500, "the broker holds no readable result for this job");
        }
    }
    enum MHD_Result q = answer_outcome(r, &o);
    srv_broker_job_clear(&j);
    return q;
}

static enum MHD_Result answer_job(request *r) {
    server *s = r->s;
    if (s->broker) return answer_broker_job(r);
    srv_job_view v;
    srv_job_get(s->pool, r->job, &v);
    outcome o = {.state = v.state, .error_code = v.error_code, .error = v.error, .p_fake = NAN};
    if (v.state == SRV_JOB_DONE) outcome_from_result(&o, v.result);
    return answer_outcome(r, &o);
}

/* The job document; element (the result's, or NULL) is stolen. */
static json_t *job_json(const srv_job_view *v, json_t *element, int attempts, const char *worker) {
    json_t *o = json_pack("{s:s,s:s,s:s,s:f,s:b,s:f,s:f,s:i}", "job_id", v->id, "state", srv_job_state_name(v->state),
                          "media", v->kind == DFD_MEDIA_VIDEO ? "video" : "image", "progress", v->progress,
                          "cancel_requested", v->cancel_requested, "age_s", v->age_s, "run_s", v->run_s, "attempts",
                          attempts);
    if (!o) {
        json_decref(element);
        return NULL;
    }
    json_object_set_new(o, "result",
                        element ? json_pack("{s:s,s:[o]}", "schema", DFD_RESULT_SCHEMA, "results", element) : json_null());
    json_object_set_new(o, "error", v->error[0] ? json_string(v->error) : json_null());
    if (worker) json_object_set_new(o, "worker", worker[0] ? json_string(worker) : json_null());
    return o;
}

/* 404 for a job id that is not (or no longer) known: the pool's and the broker's answer. */
static enum MHD_Result job_gone(request *r, const char *shown) {
    return queue_error(r, 404, "no job with id '%s' (unknown, or forgotten %g s after it ended)", shown,
                       r->s->cfg.job_ttl_s);
}

/* The answer to DELETE /v1/jobs/ID once the job was found in state st: a running job is
 * asked to stop (202), one that was over is deleted (200). */
static enum MHD_Result cancel_answer(request *r, const char *id, int st, int was_over) {
    json_t *o = json_pack("{s:s,s:s,s:b,s:b}", "job_id", id, "state", srv_job_state_name((srv_job_state)st),
                          "cancel_requested", !was_over, "deleted", was_over);
    return queue_json(r, st == SRV_JOB_RUNNING ? 202 : 200, o);
}

static enum MHD_Result serve_job_broker(request *r, const char *id, const char *shown, const char *method) {
    server *s = r->s;
    dfd_error e;
    srv_error_clear(&e);
    if (strcmp(method, "DELETE") == 0) {
        int st = -1, was_over = 0;
        if (srv_broker_cancel(s->broker, id, &st, &was_over, &e) != DFD_OK) return queue_busy(r, e.message);
        return st < 0 ? job_gone(r, shown) : cancel_answer(r, id, st, was_over);
    }
    srv_broker_job j;
    if (srv_broker_get(s->broker, id, &j, &e) != DFD_OK) return queue_busy(r, e.message);
    if (!j.found) {
        srv_broker_job_clear(&j);
        return job_gone(r, shown);
    }
    srv_job_view v;
    memset(&v, 0, sizeof v);
    snprintf(v.id, sizeof v.id, "%s", id);
    v.state = j.state;
    v.kind = j.kind;
    v.progress = j.progress;
    v.cancel_requested = j.cancel_requested;
    v.age_s = j.age_s;
    v.run_s = j.run_s;
    if (j.state == SRV_JOB_FAILED || j.state == SRV_JOB_CANCELLED) snprintf(v.error, sizeof v.error, "%s", j.error);
    json_t *el = j.state == SRV_JOB_DONE && j.result ? json_loads(j.result, 0, NULL) : NULL;
    if (el && !json_is_object(el)) {
        json_decref(el);
        el = NULL;
    }
    json_t *o = job_json(&v, el, j.attempts, j.worker);
    srv_broker_job_clear(&j);
    return queue_json(r, 200, o);
}

static enum MHD_Result serve_job(request *r, const char *url, const char *method) {
    server *s = r->s;
    const char *id = url + strlen("/v1/jobs/");
    char shown[48];
    srv_sanitize(shown, sizeof shown, id);
    if (!srv_valid_job_id(id))
        return queue_error(r, 404, "no job with id '%s' (job ids are 32 lowercase hex digits)", shown);
    if (s->broker) return serve_job_broker(r, id, shown, method);
    if (strcmp(method, "DELETE") == 0) {
        int was_over = 0;
        int st = srv_pool_cancel(s->pool, id, &was_over);
        return st < 0 ? job_gone(r, shown) : cancel_answer(r, id, st, was_over);
    }
    srv_job *j = srv_pool_find(s->pool, id);
    if (!j) return job_gone(r, shown);
    srv_job_view v;
    srv_job_get(s->pool, j, &v);
    /* the result is serialised while we hold the reference */
    json_t *o = job_json(&v, v.result ? srv_result_element(v.result) : NULL, v.attempts, NULL);
    srv_job_unref(s->pool, j);
    return queue_json(r, 200, o);
}

/* ---- waiting for a broker's job ------------------------------------------------------------ */

/* Adds a waiter for job id (before it is submitted: its end may come at once). */
static int waiter_add(server *s, request *r, const char *id) {
    waiter *w = calloc(1, sizeof *w);
    if (!w) return -1;
    snprintf(w->id, sizeof w->id, "%s", id);
    w->r = r;
    pthread_mutex_lock(&s->wmu);
    w->next = s->waiters;
    s->waiters = w;
    pthread_mutex_unlock(&s->wmu);
    return 0;
}

static waiter *waiter_unlink_locked(server *s, request *r) {
    for (waiter **l = &s->waiters; *l; l = &(*l)->next)
        if ((*l)->r == r) {
            waiter *w = *l;
            *l = w->next;
            return w;
        }
    return NULL;
}

/* Forgets r's waiter; 1 when it was still waiting (its job had not ended). */
static int waiter_remove(server *s, request *r) {
    pthread_mutex_lock(&s->wmu);
    waiter *w = waiter_unlink_locked(s, r);
    pthread_mutex_unlock(&s->wmu);
    int waiting = w && !w->done;
    free(w);
    return waiting;
}

/* Suspends r until its job ends; 0 when the end came already (answer now). */
static int waiter_suspend(server *s, request *r) {
    pthread_mutex_lock(&s->wmu);
    waiter *w = NULL;
    for (w = s->waiters; w && w->r != r; w = w->next) {
    }
    int suspended = 0;
    if (w && !w->done) {
        w->suspended = 1;
        r->waiting = 1;
        MHD_suspend_connection(r->conn);
        suspended = 1;
    } else if (w) {
        free(waiter_unlink_locked(s, r));
    }
    pthread_mutex_unlock(&s->wmu);
    return suspended;
}

/* Job id ended (or all, when id is NULL: a forced stop): resumes whoever waits for it. */
static void waiter_wake(server *s, const char *id) {
    pthread_mutex_lock(&s->wmu);
    for (waiter **l = &s->waiters; *l;) {
        waiter *w = *l;
        if (id && strcmp(w->id, id) != 0) {
            l = &w->next;
            continue;
        }
        if (w->suspended) {
            *l = w->next;
            MHD_resume_connection(w->r->conn);
            free(w);
            continue;
        }
        w->done = 1;
        l = &w->next;
    }
    pthread_mutex_unlock(&s->wmu);
}

/* The notifier: ends told by the workers (a list per server instance), and once a second
 * the state of every job waited for (an end told while this server was away, or lost by
 * Redis, is found that way). Redis being away only delays it. */
static void *notifier_main(void *arg) {
    server *s = arg;
    double next_sweep = 0;
    while (!atomic_load(&s->notifier_quit)) {
        char id[33];
        int got = 0;
        dfd_error e;
        srv_error_clear(&e);
        if (srv_broker_pop_done(s->notify_b, s->sid, 1, id, &got, &e) != DFD_OK) {
            struct timespec ts = {0, 500 * 1000000L};
            nanosleep(&ts, NULL);
        } else if (got) {
            waiter_wake(s, id);
        }
        if (srv_now_ms() < next_sweep) continue;
        next_sweep = srv_now_ms() + 1000;
        for (;;) { /* one waiter at a time: the list may change while Redis is asked */
            char ids[64][33];
            int n = 0;
            pthread_mutex_lock(&s->wmu);
            /* Suspended ones only: the others may not be in Redis yet (being submitted). */
            for (waiter *w = s->waiters; w && n < 64; w = w->next)
                if (w->suspended) snprintf(ids[n++], 33, "%s", w->id);
            pthread_mutex_unlock(&s->wmu);
            for (int i = 0; i < n; i++) {
                int st = -1;
                srv_error_clear(&e);
                if (srv_broker_state(s->notify_b, ids[i], &st, &e) != DFD_OK) break;
                if (st < 0 || st == SRV_JOB_DONE || st == SRV_JOB_FAILED || st == SRV_JOB_CANCELLED) waiter_wake(s, ids[i]);
            }
            break;
        }
    }
    return NULL;
}

/* ---- uploads -------------------------------------------------------------------------- */

/* Grows this request's share of the server's upload budget to total bytes; 0 when it
 * fits under --max-held-mb, -1 (nothing changed) when it does not. */
static int reserve(request *r, uint64_t total) {
    if (total <= r->reserved) return 0;
    uint64_t more = total - r->reserved, cur = atomic_load(&r->s->held_bytes);
    do {
        if (cur > r->s->max_held || more > r->s->max_held - cur) return -1;
    } while (!atomic_compare_exchange_weak(&r->s->held_bytes, &cur, cur + more));
    r->reserved = total;
    return 0;
}

static void unreserve(server *s, uint64_t bytes) {
    if (bytes) atomic_fetch_sub(&s->held_bytes, bytes);
}

static void on_file_removed(void *user, uint64_t bytes) { unreserve(user, bytes); }

static void drop_upload(request *r) {
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
    if (r->tmp_path) {
        unlink(r->tmp_path);
        free(r->tmp_path);
        r->tmp_path = NULL;
    }
    unreserve(r->s, r->reserved);
    r->reserved = 0;
}

static void held_full_message(server *s, char *m, size_t cap) {
    snprintf(m, cap, "the server holds as many uploads as it may (%" PRIu64 " of %" PRIu64 " bytes)",
             (uint64_t)atomic_load(&s->held_bytes), s->max_held);
}

static enum MHD_Result queue_held_full(request *r) {
    char m[200];
    held_full_message(r->s, m, sizeof m);
    return queue_busy(r, m);
}

static int file_sink(void *user, const void *data, size_t len) {
    request *r = user;
    return write_all(r->fd, data, len);
}

/* First call of an upload route: everything that can be refused before the body is. */
static enum MHD_Result upload_begin(request *r) {
    server *s = r->s;
    struct MHD_Connection *c = r->conn;
    if (atomic_load(&s->shutting_down)) return queue_busy(r, "the server is shutting down");
    const char *deg = s->pool ? srv_pool_degraded(s->pool) : NULL;
    if (deg) return queue_error(r, 503, "model not loaded: %s", deg);
    const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t declared = 0;
    if (cl) {
        if (srv_parse_content_length(cl, &declared) != 0) return queue_error(r, 400, "Content-Length is not a number");
        if (declared > s->cfg.max_upload_bytes)
            return queue_error(r, 413, "upload of %" PRIu64 " bytes is over the limit of %" PRIu64 " bytes", declared,
                               s->cfg.max_upload_bytes);
    }
    /* A body of known length reserves it all now, so that a client told to wait sends
     * none of it; a chunked one reserves as it comes (upload_data). */
    if (cl && reserve(r, declared) != 0) return queue_held_full(r);
    const char *ct = header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
    int multipart = srv_is_multipart(ct);
    if (!multipart && r->route != R_ANALYZE)
        return queue_error(r, 400, "expected a multipart/form-data upload with a field named 'file'");
    if (s->broker) {
        /* Refused before the body comes when Redis is away or the shared queue is full. */
        srv_broker_stats bs;
        dfd_error e;
        srv_error_clear(&e);
        if (srv_broker_stats_get(s->broker, s->cfg.worker_window_s, &bs, &e) != DFD_OK) return queue_busy(r, e.message);
        if (bs.queued >= s->cfg.queue) {
            char m[160];
            snprintf(m, sizeof m, "the queue is full (%" PRId64 " jobs waiting for %" PRId64 " workers)", bs.queued,
                     bs.workers_seen);
            return queue_busy(r, m);
        }
    } else {
        srv_pool_stats st;
        srv_pool_get_stats(s->pool, &st);
        if (st.queued >= st.queue_capacity) {
            char m[128];
            snprintf(m, sizeof m, "the queue is full (%d jobs waiting for %d workers)", st.queued, st.workers);
            return queue_busy(r, m);
        }
    }
    if (multipart) {
        r->mp = malloc(sizeof *r->mp);
        if (!r->mp) return queue_error(r, 500, "out of memory for the upload");
        dfd_error e;
        if (srv_multipart_init(r->mp, ct, &e) != DFD_OK) return queue_error(r, 400, "%s", e.message);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/upload-XXXXXX", s->tmpdir);
    int fd = mkstemp(path); /* 0600, a name nobody chose but us */
    if (fd < 0) return queue_error(r, 500, "cannot create a temporary file for the upload: %s", strerror(errno));
    r->fd = fd;
    r->tmp_path = strdup(path);
    if (!r->tmp_path) {
        close(fd);
        unlink(path);
        r->fd = -1;
        return queue_error(r, 500, "out of memory for the upload");
    }
    r->uploading = 1;
    return MHD_YES;
}

/* A body that takes too long in all, or trickles in, is cut off (the connection closed,
 * no answer): otherwise a client sending a byte every few seconds, never idle long enough
 * for --timeout, would hold its connection and its upload for hours, and enough of them
 * would take every connection the server has. */
static int too_slow(request *r) {
    const dfd_server_config *c = &r->s->cfg;
    double s = (srv_now_ms() - r->t0) / 1000.0;
    if (c->request_timeout_s > 0 && s > c->request_timeout_s) {
        r->cut = "request timeout";
        return 1;
    }
    if (c->min_upload_rate > 0 && s > c->min_rate_grace_s && (double)r->bytes_in < c->min_upload_rate * s) {
        r->cut = "upload too slow";
        return 1;
    }
    return 0;
}

static enum MHD_Result upload_data(request *r, const char *data, size_t *size) {
    server *s = r->s;
    size_t n = *size;
    *size = 0;
    r->bytes_in += n;
    if (too_slow(r)) {
        drop_upload(r);
        return MHD_NO;
    }
    if (r->over_limit || r->fail_status) {
        /* Read and drop the rest so that the client hears why; but not forever. */
        r->discarded += n;
        return r->discarded > DISCARD_ALLOWANCE ? MHD_NO : MHD_YES;
    }
    if (r->bytes_in > s->cfg.max_upload_bytes) {
        /* A chunked upload (no Content-Length) passing the limit: stop storing it. */
        r->over_limit = 1;
        drop_upload(r);
        return MHD_YES;
    }
    if (reserve(r, r->bytes_in) != 0) {
        /* A chunked upload passing the server's budget: stop storing it, answer 503. */
        r->fail_status = 503;
        held_full_message(s, r->fail_msg, sizeof r->fail_msg);
        drop_upload(r);
        return MHD_YES;
    }
    if (r->mp) {
        dfd_error e;
        if (srv_multipart_feed(r->mp, data, n, file_sink, r, &e) != DFD_OK) {
            r->fail_status = e.code == DFD_E_IO ? 500 : 400;
            snprintf(r->fail_msg, sizeof r->fail_msg, "%s", e.code == DFD_E_IO ? "cannot store the upload" : e.message);
            drop_upload(r);
        }
    } else if (write_all(r->fd, data, n) != 0) {
        r->fail_status = 500;
        snprintf(r->fail_msg, sizeof r->fail_msg, "cannot store the upload: %s", strerror(errno));
        drop_upload(r);
    }
    return MHD_YES;
}

static const char *kind_name(dfd_media_kind k) {
    return k == DFD_MEDIA_IMAGE ? "an image" : k == DFD_MEDIA_VIDEO ? "a video" : "unknown media";
}

static enum MHD_Result accepted(request *r, const char *id, dfd_media_kind kind) {
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/jobs/%s", id);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "job_id", id, "state", "queued", "media",
                          kind == DFD_MEDIA_VIDEO ? "video" : "image", "status_url", loc);
    const char *const h[] = {MHD_HTTP_HEADER_LOCATION, loc, NULL};
    return queue_json_h(r, 202, o, h);
}

/* The upload becomes a job in Redis (path is consumed: its bytes are in Redis, or moved
 * into the spool folder, and the local file removed either way). */
static enum MHD_Result submit_to_broker(request *r, char *path, uint64_t bytes, const char *name,
                                        dfd_media_kind kind, int background, int explain) {
    server *s = r->s;
    dfd_error e;
    srv_error_clear(&e);
    char id[33];
    if (srv_random_id(id) != 0) {
        unlink(path);
        free(path);
        unreserve(s, bytes);
        return queue_error(r, 500, "no random bytes for a job id");
    }
    if (!background && waiter_add(s, r, id) != 0) {
        unlink(path);
        free(path);
        unreserve(s, bytes);
        return queue_error(r, 500, "out of memory");
    }
    srv_broker_submit_args a = {.id = id, .name = name, .kind = kind, .explain = explain,
                                .notify = background ? NULL : s->sid, .path = path, .bytes = bytes,
                                .spool_dir = s->cfg.spool_dir, .job_ttl_s = s->cfg.job_ttl_s};
    int rc = srv_broker_submit(s->broker, &a, &e);
    unlink(path); /* gone already when it was moved into the spool folder */
    free(path);
    unreserve(s, bytes);
    if (rc != DFD_OK) {
        if (!background) waiter_remove(s, r);
        if (rc == DFD_E_IO) return queue_busy(r, e.message);
        return queue_error(r, 500, "%s", e.message);
    }
    if (background) return accepted(r, id, kind);
    snprintf(r->job_id, sizeof r->job_id, "%s", id);
    if (waiter_suspend(s, r)) return MHD_YES;
    return answer_job(r); /* it ended before we could suspend */
}

/* The whole body is in: check it, then hand it to the pool. */
static enum MHD_Result upload_end(request *r) {
    server *s = r->s;
    r->uploading = 0;
    if (r->over_limit)
        return queue_error(r, 413, "upload is over the limit of %" PRIu64 " bytes", s->cfg.max_upload_bytes);
    if (r->fail_status == 503) return queue_busy(r, r->fail_msg);
    if (r->fail_status) return queue_error(r, r->fail_status, "%s", r->fail_msg);
    char name[256] = "upload";
    if (r->mp) {
        dfd_error e;
        if (srv_multipart_finish(r->mp, &e) != DFD_OK) {
            drop_upload(r);
            return queue_error(r, 400, "%s", e.message);
        }
        if (r->mp->filename[0]) snprintf(name, sizeof name, "%s", r->mp->filename);
    }
    struct stat sb;
    if (fstat(r->fd, &sb) != 0 || close(r->fd) != 0) {
        r->fd = -1;
        drop_upload(r);
        return queue_error(r, 500, "cannot store the upload");
    }
    r->fd = -1;
    if (sb.st_size == 0) {
        drop_upload(r);
        return queue_error(r, 400, "the uploaded file is empty");
    }
    /* Non-media is refused before any work, by the rule the analysis applies (dfd_check_file). */
    dfd_media_kind kind;
    dfd_error e;
    int crc = dfd_check_file(r->tmp_path, &kind, NULL, &e);
    if (crc == DFD_E_UNSUPPORTED) {
        drop_upload(r);
        return queue_error(r, 415, "%s (images: JPEG, PNG, WebP, BMP; videos: MP4, MOV, MKV, WebM, AVI and "
                                   "other common containers)", e.message);
    }
    if (crc != DFD_OK) {
        drop_upload(r);
        return queue_error(r, 500, "cannot read back the upload");
    }
    if (r->route == R_PREDICT_IMAGE && kind != DFD_MEDIA_IMAGE) {
        drop_upload(r);
        return queue_error(r, 415, "/predict_image expects an image, and this upload is %s; use /predict_video "
                                   "or /v1/analyze", kind_name(kind));
    }
    if (r->route == R_PREDICT_VIDEO && kind != DFD_MEDIA_VIDEO) {
        drop_upload(r);
        return queue_error(r, 415, "/predict_video expects a video, and this upload is %s; use /predict_image "
                                   "or /v1/analyze", kind_name(kind));
    }
    /* Videos on /v1/analyze are jobs to poll; so is any upload with ?async=1. */
    const char *as = r->route == R_ANALYZE ? MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "async") : NULL;
    int background = r->route == R_ANALYZE && (kind == DFD_MEDIA_VIDEO || (as && (!strcmp(as, "1") || !strcmp(as, "true"))));
    /* Heat maps per face: /v1/analyze?explain=1 (or true). */
    const char *ex = r->route == R_ANALYZE ? MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "explain") : NULL;
    int explain = srv_explain_wanted(ex);
    char *path = r->tmp_path;
    r->tmp_path = NULL; /* the pool owns (and removes) it from here on, even on failure */
    /* The file holds its size of the budget (the multipart framing is released now) until
     * the pool removes it. */
    uint64_t bytes = (uint64_t)sb.st_size < r->reserved ? (uint64_t)sb.st_size : r->reserved;
    unreserve(s, r->reserved - bytes);
    r->reserved = 0;
    if (s->broker) return submit_to_broker(r, path, bytes, name, kind, background, explain);
    srv_job *job = NULL;
    if (background) {
        if (srv_pool_submit(s->pool, path, bytes, name, kind, 1, NULL, 0, explain, &job, &e) != DFD_OK) {
            if (e.code == DFD_E_LIMIT) return queue_busy(r, e.message);
            return queue_error(r, 500, "%s", e.message);
        }
        srv_job_view v;
        srv_job_get(s->pool, job, &v);
        srv_job_unref(s->pool, job);
        char loc[64];
        snprintf(loc, sizeof loc, "/v1/jobs/%s", v.id);
        json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "job_id", v.id, "state", srv_job_state_name(v.state), "media",
                              kind == DFD_MEDIA_VIDEO ? "video" : "image", "status_url", loc);
        const char *const h[] = {MHD_HTTP_HEADER_LOCATION, loc, NULL};
        return queue_json_h(r, 202, o, h);
    }
    /* Answered when done. The job takes its place in the queue first (which may be
     * refused: 503), then the connection is suspended, and only then may a worker take
     * the job: its resume can never come before the suspension. */
    if (srv_pool_submit(s->pool, path, bytes, name, kind, 0, r, 1, explain, &job, &e) != DFD_OK) {
        if (e.code == DFD_E_LIMIT) return queue_busy(r, e.message);
        return queue_error(r, 500, "%s", e.message);
    }
    r->job = job;
    r->waiting = 1;
    MHD_suspend_connection(r->conn);
    srv_pool_release(s->pool, job);
    return MHD_YES;
}

/* A worker finished the job a suspended request waits for. */
static void on_job_done(void *user, void *waiter) {
    (void)user;
    request *r = waiter;
    MHD_resume_connection(r->conn);
}

/* ---- the access handler --------------------------------------------------------------- */

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *data, size_t *data_size, void **con_cls) {
    (void)version;
    server *s = cls;
    request *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->s = s;
        r->conn = c;
        r->fd = -1;
        r->t0 = srv_now_ms();
        srv_sanitize(r->method, sizeof r->method, method);
        srv_sanitize(r->path, sizeof r->path, url);
        r->route = srv_route_of(url, &r->route_name);
        *con_cls = r;
        atomic_fetch_add(&s->inflight, 1);
        if (r->route == R_NONE) return queue_error(r, 404, "no such route: %s %s", r->method, r->path);
        if (!srv_method_allowed(r->route, method)) {
            const char *const h[] = {MHD_HTTP_HEADER_ALLOW, srv_route_methods(r->route), NULL};
            return queue_error_h(r, 405, h, "method %s is not allowed on %s (allowed: %s)", r->method,
                                 r->route_name, srv_route_methods(r->route));
        }
        switch (r->route) {
        case R_ROOT:
            return serve_root(r);
        case R_ASSET:
            return serve_asset(r, url + 1);
        case R_HEALTH:
            return serve_health(r);
        case R_MODELS:
            return serve_models(r);
        case R_METRICS:
            return serve_metrics(r);
        case R_JOB:
            return serve_job(r, url, method);
        default:
            return upload_begin(r);
        }
    }
    if (r->waiting) {
        /* Resumed by the worker: the analysis is over. */
        r->waiting = 0;
        return answer_job(r);
    }
    if (r->status) {
        /* Answered already (e.g. 413 at the headers) while the client still sends a body:
         * libmicrohttpd closes the connection after the answer. */
        *data_size = 0;
        return MHD_YES;
    }
    if (*data_size > 0) return upload_data(r, data, data_size);
    if (r->uploading) return upload_end(r);
    return MHD_YES;
}

static const char *termination_name(enum MHD_RequestTerminationCode toe) {
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK:
        return NULL;
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
        return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
        return "shutdown";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
    case MHD_REQUEST_TERMINATED_READ_ERROR:
        return "client closed";
    default:
        return "error";
    }
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    server *s = cls;
    request *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    double ms = srv_now_ms() - r->t0;
    const char *why = termination_name(toe);
    /* 499: closed before an answer was queued (client gone, timed out, or shutdown). */
    int status = r->status ? r->status : 499;
    char line[512];
    if (r->cut) why = r->cut;
    snprintf(line, sizeof line, "%s %s %d %zu %.1fms%s%s", r->method, r->path, status, r->resp_bytes, ms,
             why ? " closed: " : "", why ? why : "");
    if (s->cfg.access_log) s->cfg.access_log(s->cfg.user, line);
    else dfd_log(DFD_LOG_INFO, "%s", line);
    if (!r->status) srv_metrics_request(s->metrics, r->route_name, status, ms / 1000.0, r->bytes_in);
    drop_upload(r);
    if (r->job) {
        srv_job_detach(s->pool, r->job);
        srv_job_unref(s->pool, r->job);
    }
    if (r->job_id[0] && s->broker && waiter_remove(s, r)) {
        /* Nobody will read this result any more: do not spend a worker on it. */
        dfd_error e;
        srv_error_clear(&e);
        srv_broker_request_cancel(s->broker, r->job_id, &e);
    }
    free(r->mp);
    free(r);
    atomic_fetch_sub(&s->inflight, 1);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    dfd_log(DFD_LOG_INFO, "http: %s", msg);
}

/* ---- lifecycle ------------------------------------------------------------------------- */

void dfd_server_config_default(dfd_server_config *c) {
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8000;
    c->queue = 64;
    c->max_upload_bytes = 200ull << 20;
    c->job_ttl_s = 3600;
    c->max_jobs_kept = 1000;
    c->conn_timeout_s = 30;
    c->max_connections = 1000;
    c->max_conn_per_ip = 64;
    c->request_timeout_s = 1800;
    c->min_upload_rate = 8192;
    c->min_rate_grace_s = 10;
    c->io_threads = 2;
    c->worker_window_s = 10;
}

static void remove_tmpdir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4400];
            int n = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (n < 0 || (size_t)n >= sizeof p) { /* never a cut path: it could name another file */
                dfd_log(DFD_LOG_WARN, "cannot remove '%s' in '%s': the path is too long", e->d_name, dir);
                continue;
            }
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

#define TMPDIR_PREFIX "dfd-serve-"
#define TMPDIR_LOCK "lock"

static const char *tmp_parent_of(const server *s) {
    const char *parent = s->cfg.tmp_parent;
    if (!parent || !*parent) parent = getenv("TMPDIR");
    if (!parent || !*parent) parent = "/tmp";
    return parent;
}

/* Removes the upload folders that servers killed without a clean stop (kill -9, a crash,
 * the machine losing power) left in parent. Each server holds an flock on the file
 * "lock" in its folder for its whole life, and the kernel drops it when the process dies,
 * however it dies: a folder whose lock can be taken belongs to no live server. Only
 * folders named dfd-serve-XXXXXX, owned by this user, holding such a lock file, are
 * touched; nothing is followed through a symbolic link (the folder and its entries are
 * opened relative to their parent with O_NOFOLLOW, and entries are unlinked, never
 * descended into). Returns how many folders were removed. */
static int remove_stale_tmpdirs(const char *parent) {
    int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) return 0;
    DIR *d = fdopendir(dup(pfd));
    if (!d) {
        close(pfd);
        return 0;
    }
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        if (strncmp(name, TMPDIR_PREFIX, strlen(TMPDIR_PREFIX)) != 0 || strlen(name) != strlen(TMPDIR_PREFIX) + 6)
            continue;
        int dfd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0) continue; /* not a folder, or a link */
        struct stat st;
        int lfd = -1;
        if (fstat(dfd, &st) == 0 && st.st_uid == geteuid())
            lfd = openat(dfd, TMPDIR_LOCK, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (lfd >= 0 && flock(lfd, LOCK_EX | LOCK_NB) == 0) {
            /* Its server is gone: empty the folder (plain entries only) and remove it. */
            DIR *sd = fdopendir(dup(dfd));
            struct dirent *f;
            while (sd && (f = readdir(sd)))
                if (strcmp(f->d_name, ".") && strcmp(f->d_name, "..")) unlinkat(dfd, f->d_name, 0);
            if (sd) closedir(sd);
            if (unlinkat(pfd, name, AT_REMOVEDIR) == 0) {
                removed++;
                dfd_log(DFD_LOG_INFO, "removed %s/%s, left by a server that did not stop cleanly", parent, name);
            }
        }
        if (lfd >= 0) close(lfd);
        close(dfd);
    }
    closedir(d);
    close(pfd);
    return removed;
}

static int make_tmpdir(server *s, dfd_error *err) {
    const char *parent = tmp_parent_of(s);
    int n = snprintf(s->tmpdir, sizeof s->tmpdir, "%s/" TMPDIR_PREFIX "XXXXXX", parent);
    if (n < 0 || (size_t)n >= sizeof s->tmpdir) {
        s->tmpdir[0] = 0;
        return srv_fail(err, DFD_E_ARG, "temporary folder path is too long");
    }
    if (!mkdtemp(s->tmpdir)) { /* mode 0700: uploads are private to this user */
        s->tmpdir[0] = 0;
        return srv_fail(err, DFD_E_IO, "cannot create a private folder for uploads in '%s': %s", parent,
                        strerror(errno));
    }
    /* The lock is taken under a temporary name and only then named "lock", so that a
     * server starting now never finds this folder with an untaken lock. */
    char tmp[4200], lock[4200];
    snprintf(tmp, sizeof tmp, "%s/" TMPDIR_LOCK ".new", s->tmpdir);
    snprintf(lock, sizeof lock, "%s/" TMPDIR_LOCK, s->tmpdir);
    s->lock_fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0 || rename(tmp, lock) != 0)
        return srv_fail(err, DFD_E_IO, "cannot lock the upload folder '%s': %s", s->tmpdir, strerror(errno));
    return DFD_OK;
}

static int auto_workers(int threads) {
    /* Each worker holds its own models; beyond a few, more threads per analysis pay
     * more than more analyses at once. */
    int w = threads / 4;
    return w < 1 ? 1 : w > 4 ? 4 : w;
}

int dfd_server_run(const dfd_server_config *cfg, int stop_fd, dfd_error *err) {
    if (!cfg || !cfg->analyzer || !cfg->analyzer->analyze || !cfg->analyzer->worker_create)
        return srv_fail(err, DFD_E_ARG, "server needs an analyzer");
    if (cfg->port < 0 || cfg->port > 65535) return srv_fail(err, DFD_E_ARG, "port %d is out of range", cfg->port);
    if (cfg->max_held_bytes && cfg->max_held_bytes < cfg->max_upload_bytes)
        return srv_fail(err, DFD_E_ARG, "the uploads held at once (%" PRIu64 " bytes) must be at least one upload (%" PRIu64
                        " bytes)", cfg->max_held_bytes, cfg->max_upload_bytes);
    server *s = calloc(1, sizeof *s);
    if (!s) return srv_fail(err, DFD_E_NOMEM, "out of memory");
    s->lock_fd = -1;
    s->cfg = *cfg;
    if (!s->cfg.host || !*s->cfg.host) s->cfg.host = "127.0.0.1";
    if (s->cfg.io_threads < 1) s->cfg.io_threads = 1;
    if (s->cfg.conn_timeout_s < 1) s->cfg.conn_timeout_s = 1;
    if (s->cfg.max_connections < 1) s->cfg.max_connections = 1000;
    if (s->cfg.max_conn_per_ip < 0) s->cfg.max_conn_per_ip = 0;
    if (!(s->cfg.worker_window_s > 0)) s->cfg.worker_window_s = 10;
    s->started_ms = srv_now_ms();
    pthread_mutex_init(&s->wmu, NULL);
    atomic_init(&s->notifier_quit, 0);
    int rc = DFD_OK;
    struct addrinfo *ai = NULL;

    int threads = s->cfg.threads > 0 ? s->cfg.threads : dfd_cpu_count();
    int workers = s->cfg.workers > 0 ? s->cfg.workers : auto_workers(threads);
    if (workers > threads) workers = threads; /* no more analyses at once than cores given */
    srv_pool_config pc = {
        .analyzer = s->cfg.analyzer,
        .workers = workers,
        .threads_per_worker = threads / workers,
        .queue = s->cfg.queue,
        .ttl_s = s->cfg.job_ttl_s,
        .max_kept = s->cfg.max_jobs_kept,
        .on_done = on_job_done,
        .on_file_removed = on_file_removed,
        .user = s,
    };
    s->max_held = s->cfg.max_held_bytes ? s->cfg.max_held_bytes : 4 * s->cfg.max_upload_bytes;
    atomic_init(&s->held_bytes, 0);
    s->metrics = srv_metrics_new();
    if (!s->metrics) {
        rc = srv_fail(err, DFD_E_NOMEM, "out of memory");
        goto out;
    }
    remove_stale_tmpdirs(tmp_parent_of(s));
    if ((rc = make_tmpdir(s, err)) != DFD_OK) goto out;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", s->cfg.port);
    int gai = getaddrinfo(s->cfg.host, port_s, &hints, &ai);
    if (gai != 0) {
        rc = srv_fail(err, DFD_E_ARG, "cannot use host '%s': %s", s->cfg.host, gai_strerror(gai));
        goto out;
    }
    if (s->cfg.broker_url) {
        /* No models here: the workers have them. Redis away is no reason not to start. */
        if ((rc = srv_broker_open(s->cfg.broker_url, 5, &s->broker, err)) != DFD_OK) goto out;
        if ((rc = srv_broker_open(s->cfg.broker_url, 5, &s->notify_b, err)) != DFD_OK) goto out;
        if (srv_random_id(s->sid) != 0) {
            rc = srv_fail(err, DFD_E_INTERNAL, "no random bytes for the server's id");
            goto out;
        }
        dfd_error e;
        srv_error_clear(&e);
        if (srv_broker_ping(s->broker, &e) != DFD_OK)
            dfd_log(DFD_LOG_ERROR, "serving without the broker for now (uploads get 503 until it is back): %s", e.message);
        if (pthread_create(&s->notifier, NULL, notifier_main, s) != 0) {
            rc = srv_fail(err, DFD_E_INTERNAL, "cannot start the notifier thread");
            goto out;
        }
        s->notifier_started = 1;
    } else if ((rc = srv_pool_start(&pc, &s->pool, err)) != DFD_OK) {
        goto out;
    }
    if (s->pool && srv_pool_degraded(s->pool) && s->cfg.require_models) {
        rc = srv_fail(err, DFD_E_MODEL, "cannot load the models: %s", srv_pool_degraded(s->pool));
        goto out;
    }
    if (s->pool && srv_pool_degraded(s->pool))
        dfd_log(DFD_LOG_ERROR, "serving without a model (analysis requests get 503): %s", srv_pool_degraded(s->pool));

    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(flags, (uint16_t)s->cfg.port, NULL, NULL, handler, s,
                                 MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg.conn_timeout_s,
                                 MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                                 MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->cfg.io_threads,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections,
                                 MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->cfg.max_conn_per_ip,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        rc = srv_fail(err, DFD_E_IO, "cannot listen on %s port %d (in use, or not an address of this machine?)",
                      s->cfg.host, s->cfg.port);
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? (int)info->port : s->cfg.port;
    if (s->cfg.on_ready) s->cfg.on_ready(s->cfg.user, s->cfg.host, port);

    /* Serve until told to stop. */
    for (;;) {
        struct pollfd pfd = {.fd = stop_fd, .events = POLLIN};
        int n = poll(&pfd, 1, 1000);
        if (n > 0) break;
        if (n < 0 && errno != EINTR) break;
    }
    char b;
    if (read(stop_fd, &b, 1) < 0) { /* consume the first request to stop */
    }

    /* Stop accepting; let requests in flight finish (a second stop request forces it). */
    atomic_store(&s->shutting_down, 1);
    if (s->pool) srv_pool_begin_stop(s->pool); /* a broker's jobs stay in Redis for the workers */
    MHD_socket lsock = MHD_quiesce_daemon(s->daemon);
    if (lsock != MHD_INVALID_SOCKET) close(lsock);
    double forced_at = -1;
    while (atomic_load(&s->inflight) > 0) {
        struct pollfd pfd = {.fd = stop_fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) > 0 && forced_at < 0) {
            dfd_log(DFD_LOG_WARN, "stopping now: cancelling analyses in progress");
            if (s->pool) srv_pool_cancel_all(s->pool);
            else waiter_wake(s, NULL); /* the waiting requests are answered 503 */
            forced_at = srv_now_ms();
        }
        if (forced_at >= 0 && srv_now_ms() - forced_at > 5000) break;
    }
out:
    if (s->daemon) MHD_stop_daemon(s->daemon);
    if (s->notifier_started) {
        atomic_store(&s->notifier_quit, 1);
        pthread_join(s->notifier, NULL);
    }
    while (s->waiters) {
        waiter *w = s->waiters;
        s->waiters = w->next;
        free(w);
    }
    srv_broker_close(s->broker);
    srv_broker_close(s->notify_b);
    pthread_mutex_destroy(&s->wmu);
    if (s->pool) srv_pool_stop(s->pool);
    if (ai) freeaddrinfo(ai);
    if (s->tmpdir[0]) remove_tmpdir(s->tmpdir);
    if (s->lock_fd >= 0) close(s->lock_fd);
    srv_metrics_free(s->metrics);
    free(s);
    return rc;
}
