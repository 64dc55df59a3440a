/*
 * server — `dfd serve`: the HTTP API (the original's /predict_* routes and the v1 API)
 * and the web page, on libmicrohttpd, over the same library calls `dfd scan` makes.
 *
 * Pieces, one file each:
 *   http.c       the daemon, routing, uploads to private temp files, responses, logs;
 *   multipart.c  a streaming multipart/form-data parser (boundaries across chunks);
 *   jobs.c       the bounded worker pool and queue, jobs with progress/cancel/TTL;
 *   metrics.c    counters and latency histograms in Prometheus text format;
 *   analyzer.c   the binding of the pool's workers to libdfd (one dfd_ctx per worker);
 *   broker.c     with --broker: jobs on Redis Streams instead of the pool (broker.h);
 *   worker.c     `dfd worker`: takes jobs from the broker and runs the analyzer.
 *
 * The analysis is reached through dfd_server_analyzer, a small table of functions,
 * so that the HTTP machinery (limits, jobs, queue, cancellation) can be tested with a
 * controllable stand-in, and the real one (analyzer.c) is just dfd_ctx_* calls.
 */
#ifndef DFD_SERVER_H
#define DFD_SERVER_H

#include <stddef.h>
#include <stdint.h>

/* A client of the public API only (docs/architecture.md): its own helpers are srv_util.h. */
#include "dfd/dfd.h"
#include "srv_util.h"

/* ---- The analysis, as the server sees it --------------------------------------- */

typedef struct dfd_server_analyzer {
    void *cls;
    /* Per-worker state (the library analyzer: one dfd_ctx with `threads` threads). */
    int (*worker_create)(void *cls, int worker, int threads, void **state, dfd_error *err);
    void (*worker_destroy)(void *cls, void *state);
    /* Analyses the file at path (a private temp file; `name` is the client's file name,
     * for the result's "file" field). Returns DFD_OK with *out set, or an error. */
    int (*analyze)(void *cls, void *state, const char *path, const char *name, dfd_progress_fn progress,
                   void *user, dfd_result **out, dfd_error *err);
    /* What /v1/models says about the models: a new jansson object (json_t *), or NULL. */
    void *(*describe)(void *cls);
    /* Heat maps on or off for the worker's next analyses (?explain=1); NULL: never made. */
    void (*set_explain)(void *cls, void *state, int on);
} dfd_server_analyzer;

/* The real analyzer on libdfd: models loaded per worker from opts (which must outlive
 * the server). */
void dfd_server_library_analyzer(dfd_server_analyzer *a, const dfd_options *opts);

/* ---- The server ------------------------------------------------------------------ */

/* The HTTP status for an analysis that failed with a DFD_E_* code (the result's
 * dfd_result_status, or the code of a failure that made no result): 413 over a limit,
 * 415 unsupported format, 422 undecodable or no video stream, 499 cancelled, 503 no
 * usable model, 500 out of memory, internal and anything else; 200 for DFD_OK. */
int srv_http_status(int code);

typedef struct dfd_server_config {
    const char *host;           /* numeric address or "localhost"; default 127.0.0.1 */
    int port;                   /* 0 = any free port (reported through on_ready) */
    int threads;                /* compute threads in all, split among workers; 0 = all cores */
    int workers;                /* analyses run at once; 0 = automatic */
    int queue;                  /* jobs waiting for a worker before 503; default 64 */
    uint64_t max_upload_bytes;  /* request body limit; default 200 MiB */
    uint64_t max_held_bytes;    /* upload bytes stored at once, being received or waiting for or in
                                   an analysis (503 past it); 0 = 4 x max_upload_bytes */
    double job_ttl_s;           /* finished jobs are kept this long; default 3600 */
    int max_jobs_kept;          /* finished jobs kept at most (oldest dropped); default 1000 */
    int conn_timeout_s;         /* idle connection timeout (stalled clients); default 30 */
    int max_connections;        /* open connections at once; default 1000 */
    int max_conn_per_ip;        /* open connections from one address; default 64; 0 = no limit */
    double request_timeout_s;   /* a request body must arrive within this, from the end of its
                                   headers; default 1800; 0 = no limit */
    double min_upload_rate;     /* bytes/s a body must average once min_rate_grace_s have passed;
                                   default 8192; 0 = no minimum */
    double min_rate_grace_s;    /* default 10 */
    int io_threads;             /* libmicrohttpd threads; default 2 */
    const char *tmp_parent;     /* where the private upload folder is made; NULL = $TMPDIR or /tmp */
    int require_models;         /* fail to start when models cannot be loaded (else serve degraded: 503) */
    /* With a broker (redis://[user:password@]HOST:PORT[/DB]), analyses go to Redis for
     * `dfd worker` processes instead of this process's pool (no models are loaded here);
     * uploads go to Redis, or to spool_dir when set (a folder the workers share). */
    const char *broker_url;
    const char *spool_dir;
    double worker_window_s;     /* "workers seen": a heartbeat within this; default 10 */
    const dfd_server_analyzer *analyzer; /* required */
    /* Called once listening, with the bound port. */
    void (*on_ready)(void *user, const char *host, int port);
    /* One line per request (method, path, status, bytes, ms); NULL = dfd_log at INFO. */
    void (*access_log)(void *user, const char *line);
    void *user;
} dfd_server_config;

void dfd_server_config_default(dfd_server_config *c);

/* Serves until stop_fd becomes readable (a self-pipe written by a signal handler, or
 * a test), then stops accepting, lets requests in flight finish, cancels queued
 * background jobs, and returns DFD_OK, or an error if the server could not start. */
int dfd_server_run(const dfd_server_config *cfg, int stop_fd, dfd_error *err);

/* ---- worker.c: `dfd worker` ---------------------------------------------------------- */

typedef struct dfd_worker_config {
    const char *broker_url;      /* required */
    const char *spool_dir;       /* where spooled uploads are (the serve's --spool, as mounted here) */
    int threads;                 /* compute threads of the one analysis at a time; default 1 */
    const char *name;            /* consumer name; NULL = HOST-PID-RANDOM */
    double visibility_timeout_s; /* a job pending longer with no sign of life is taken over; default 30 */
    int max_attempts;            /* runs of one job before it fails; default 3 */
    uint64_t max_upload_bytes;   /* larger uploads fail (sizes from Redis are not trusted); default 200 MiB */
    double heartbeat_s;          /* default 2 */
    const char *tmp_parent;      /* where the private folder for uploads is made; NULL = $TMPDIR or /tmp */
    const dfd_server_analyzer *analyzer; /* required */
    void (*on_ready)(void *user, const char *name);
    void (*log)(void *user, const char *line); /* one line per job; NULL = dfd_log at INFO */
    void *user;
} dfd_worker_config;

void dfd_worker_config_default(dfd_worker_config *c);
/* Takes and runs jobs until stop_fd becomes readable (then finishes the job in hand; a
 * second byte abandons it to another worker). Errors only when it cannot start (models,
 * arguments); Redis being away is waited out. */
int dfd_worker_run(const dfd_worker_config *cfg, int stop_fd, dfd_error *err);

/* ---- request.c: what a request's line and headers ask for ---------------------------
 * Pure functions of the strings a client sends (no connection, no state), so that
 * tests/fuzz/fuzz_http.c can throw arbitrary bytes at each of them. */

enum srv_route {
    R_NONE,
    R_ROOT,
    R_ASSET,
    R_PREDICT_IMAGE,
    R_PREDICT_VIDEO,
    R_ANALYZE,
    R_JOB,
    R_HEALTH,
    R_MODELS,
    R_METRICS,
};

#ifdef DFD_HAVE_WEB_ASSETS
/* The web page's files, compiled in (generated web_assets.c); ends with a NULL name. */
extern const struct dfd_asset {
    const char *name;
    const unsigned char *data;
    size_t len;
} dfd_web_assets[];
#endif

/* The route of a URL path (exact match, no normalisation); *name gets its fixed pattern
 * for metrics and logs ("/v1/jobs/{id}", "other" for R_NONE), never the raw path. */
enum srv_route srv_route_of(const char *path, const char **name);
/* The methods a route answers, for Allow ("GET, HEAD"), and whether method is one. */
const char *srv_route_methods(enum srv_route r);
int srv_method_allowed(enum srv_route r, const char *method);
/* True for a job id as the server makes them: 32 lowercase hex digits. */
int srv_valid_job_id(const char *id);
/* True when an Accept value (may be NULL) prefers text/html over application/json. */
int srv_wants_html(const char *accept);
/* True when /v1/analyze's explain argument (may be NULL) asks for heat maps: "1"/"true". */
int srv_explain_wanted(const char *arg);
/* Content-Length: 0 and *n for a decimal number (as strtoull reads it), -1 otherwise. */
int srv_parse_content_length(const char *value, uint64_t *n);
/* Copies in (may be NULL) to out for a log line: bytes outside printable ASCII become
 * '?', and text that does not fit ends with "..."; out is always terminated (cap >= 1). */
void srv_sanitize(char *out, size_t cap, const char *in);

/* ---- multipart.c: streaming multipart/form-data ----------------------------------- */

#define SRV_MP_MAX_BOUNDARY 70 /* RFC 2046 section 5.1.1: 1 to 70 characters */
#define SRV_MP_MAX_HEADERS 8192

typedef int (*srv_mp_sink)(void *user, const void *data, size_t len); /* non-zero = stop */

typedef struct srv_multipart {
    char delim[SRV_MP_MAX_BOUNDARY + 4]; /* "\r\n--" + boundary */
    size_t dlen;
    int fail[SRV_MP_MAX_BOUNDARY + 5];   /* KMP failure function of delim: fail[0..dlen] */
    size_t matched;                      /* bytes of delim matched so far */
    int state;
    int after;                           /* sub-state after a delimiter */
    char hdr[SRV_MP_MAX_HEADERS];
    size_t hlen;
    int part_is_file;                    /* the current part is the (first) field "file" */
    int have_file;                       /* a field "file" was seen */
    int file_done;                       /* its data ended */
    uint64_t file_bytes;
    char filename[256];                  /* informational: the client's name, sanitised */
    char file_type[128];                 /* the part's Content-Type, informational */
} srv_multipart;

/* Reads the boundary from a Content-Type value; fails (DFD_E_ARG) when it is not
 * multipart/form-data or has no usable boundary. */
int srv_multipart_init(srv_multipart *m, const char *content_type, dfd_error *err);
/* Feeds the next bytes of the body; data of the field "file" goes to sink.
 * DFD_E_CORRUPT on malformed input, or the sink's failure as DFD_E_IO. */
int srv_multipart_feed(srv_multipart *m, const void *data, size_t len, srv_mp_sink sink, void *user,
                       dfd_error *err);
/* After the last byte: DFD_OK if the body was complete and had a field "file". */
int srv_multipart_finish(srv_multipart *m, dfd_error *err);
/* True when the Content-Type value is multipart/form-data. */
int srv_is_multipart(const char *content_type);

/* ---- metrics.c -------------------------------------------------------------------- */

typedef struct srv_metrics srv_metrics;
srv_metrics *srv_metrics_new(void);
void srv_metrics_free(srv_metrics *m);
/* One finished request on a route (a pattern such as "/v1/jobs/{id}", never a raw path). */
void srv_metrics_request(srv_metrics *m, const char *route, int status, double seconds, uint64_t bytes_in);
/* Appends the Prometheus text of the counters to a malloc'ed buffer; NULL on no memory.
 * extra (may be NULL) is appended verbatim (gauges the caller computes). */
char *srv_metrics_render(srv_metrics *m, const char *extra);

/* ---- jobs.c: the worker pool ------------------------------------------------------- */

typedef enum srv_job_state {
    SRV_JOB_QUEUED = 0,
    SRV_JOB_RUNNING = 1,
    SRV_JOB_DONE = 2,
    SRV_JOB_FAILED = 3,
    SRV_JOB_CANCELLED = 4,
    SRV_JOB__COUNT
} srv_job_state;

const char *srv_job_state_name(srv_job_state s);

typedef struct srv_job srv_job;
typedef struct srv_pool srv_pool;

/* Called by a worker (outside the pool's lock) when a job with a waiter finishes;
 * the HTTP layer resumes the waiting connection. */
typedef void (*srv_job_done_fn)(void *user, void *waiter);

typedef struct srv_pool_config {
    const dfd_server_analyzer *analyzer;
    int workers, threads_per_worker, queue;
    double ttl_s;
    int max_kept;
    srv_job_done_fn on_done;
    /* Called when the pool removes an upload it was given with bytes > 0, with those
     * bytes; possibly with the pool's lock held, so it must not call back into the pool. */
    void (*on_file_removed)(void *user, uint64_t bytes);
    void *user;
} srv_pool_config;

/* Starts the workers; each creates its analyzer state. A worker whose state cannot be
 * made keeps failing jobs with that error (the server is then "degraded"). */
int srv_pool_start(const srv_pool_config *cfg, srv_pool **out, dfd_error *err);
/* Refuses new jobs from now on, cancels queued background jobs and asks running
 * background jobs to stop; foreground jobs (someone waits for them) still run. */
void srv_pool_begin_stop(srv_pool *p);
/* The same, and asks every job, foreground ones included, to stop (a forced stop). */
void srv_pool_cancel_all(srv_pool *p);
/* Cancels background jobs, waits for running ones, joins workers, frees everything. */
void srv_pool_stop(srv_pool *p);
/* NULL when every worker has its models, else the first worker's error message. */
const char *srv_pool_degraded(srv_pool *p);

/* Creates a job for the file at path (ownership passes: the pool removes the file when
 * the analysis ends, or when submission fails; either way on_file_removed then gets
 * bytes, the share of the server's upload budget the file holds). Background jobs are kept in the table
 * (looked up by id) until their TTL; a waiter (non-NULL) is resumed via on_done.
 * DFD_E_LIMIT when the queue is full. On success *out (may be NULL) gets a reference.
 * With hold, the job has its place in the queue but no worker takes it before
 * srv_pool_release (so that the caller can get ready to be resumed, which cannot fail).
 * explain: the analysis makes heat maps (through the analyzer's set_explain). */
int srv_pool_submit(srv_pool *p, char *path, uint64_t bytes, const char *name, dfd_media_kind kind, int background,
                    void *waiter, int hold, int explain, srv_job **out, dfd_error *err);
void srv_pool_release(srv_pool *p, srv_job *j);
/* A reference to the background job with this id (NULL if none or expired). */
srv_job *srv_pool_find(srv_pool *p, const char *id);
/* Cancels (queued: at once; running: asks the progress callback to stop) or, when the
 * job is already over, forgets it. Returns the state after the call; -1 if no such job. */
int srv_pool_cancel(srv_pool *p, const char *id, int *was_over);
void srv_job_unref(srv_pool *p, srv_job *j);
/* Detaches a waiter that has gone (its connection closed); no-op if done. */
void srv_job_detach(srv_pool *p, srv_job *j);

/* A consistent snapshot of a job. result is a new reference to the result document
 * element (json_t *) when done, else NULL. */
typedef struct srv_job_view {
    char id[40];
    srv_job_state state;
    dfd_media_kind kind;
    double progress;
    int cancel_requested;
    double age_s, run_s;
    const dfd_result *result;  /* valid while the caller holds its job reference */
    char error[512];
    int error_code;
    int attempts;              /* runs begun: 0 or 1 here (a broker's worker may retry) */
} srv_job_view;
void srv_job_get(srv_pool *p, srv_job *j, srv_job_view *v);

typedef struct srv_pool_stats {
    int queued, running, workers, queue_capacity;
    int jobs_by_state[SRV_JOB__COUNT];    /* background jobs in the table */
    uint64_t finished_by_state[SRV_JOB__COUNT]; /* every job ever finished, by end state */
} srv_pool_stats;
void srv_pool_get_stats(srv_pool *p, srv_pool_stats *s);

/* Random hex id (32 chars + NUL) from the kernel's generator. */
int srv_random_id(char out[33]);

#endif
