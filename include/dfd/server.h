/*
 * dfd/server.h — the HTTP API and web page (`dfd serve`, docs/api.md) as one call.
 * Conventions as in dfd.h.
 */
#ifndef DFD_SERVER_PUBLIC_H
#define DFD_SERVER_PUBLIC_H

#include "dfd/dfd.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dfd_serve_options {
    const char *host;          /* numeric address or "localhost"; default 127.0.0.1 */
    int port;                  /* default 8000; 0 = any free port (reported through on_ready) */
    int threads;               /* compute threads in all, split among workers; 0 = all cores */
    int workers;               /* analyses at once, each with its own models; 0 = automatic */
    int queue;                 /* uploads that may wait for a worker before 503; default 64 */
    uint64_t max_upload_bytes; /* largest request body; default 200 MiB */
    uint64_t max_held_bytes;   /* upload bytes stored at once (503 past it); 0 = 4 x max_upload_bytes */
    double job_ttl_s;          /* finished video jobs are kept this long; default 3600 */
    int conn_timeout_s;        /* idle connections are closed after this; default 30 */
    int max_connections;       /* open connections at once; default 1000 */
    int max_conn_per_ip;       /* open connections from one address; default 64; 0 = no limit */
    double request_timeout_s;  /* a request body must arrive within this; default 1800; 0 = none */
    double min_upload_rate;    /* bytes/s a body must average after its first 10 s; default 8192; 0 = none */
    const char *broker_url;    /* NULL: analyses run in this process; "redis://[user:password@]HOST:PORT[/DB]":
                                * they go on Redis for `dfd worker` processes (docs/scale-out.md) */
    const char *spool_dir;     /* with a broker: uploads go to this shared folder instead of into Redis */
    /* The analyses: models, frames, limits (read when workers start: the strings must
     * outlive dfd_serve). */
    dfd_options analysis;
    int require_models;        /* 1: fail to start when a model cannot be loaded; 0: start
                                * anyway, analyses answering 503 until one is installed */
    /* Called once listening, with the bound address and port (on the calling thread). */
    void (*on_ready)(void *user, const char *host, int port);
    /* One line per request (method, path, status, bytes, ms), from the server's threads,
     * one call per line; NULL: the library's log at level INFO. */
    void (*access_log)(void *user, const char *line);
    void *user;
} dfd_serve_options;

DFD_API void dfd_serve_options_default(dfd_serve_options *o);

/* Serves until stop_fd (a pipe's read end, written by a signal handler or another
 * thread) becomes readable, then stops accepting, lets requests in flight finish,
 * cancels queued jobs and returns DFD_OK; an error when the server cannot start
 * (DFD_E_ARG for inconsistent options, naming them). Blocks the calling thread. */
DFD_API int dfd_serve(const dfd_serve_options *o, int stop_fd, dfd_error *err);

/* ---- dfd worker: the other half of broker_url ---------------------------------------- */

typedef struct dfd_worker_options {
    const char *broker_url;      /* required: the serve's broker_url */
    const char *spool_dir;       /* where the serve's spool_dir is mounted here (NULL: none) */
    int threads;                 /* compute threads of the one analysis at a time; default 1 */
    const char *name;            /* this worker's name in Redis; NULL = HOST-PID-RANDOM */
    double visibility_timeout_s; /* a job with no sign of life for this long is run again elsewhere; default 30 */
    int max_attempts;            /* runs of one job before it fails with the reason; default 3 */
    uint64_t max_upload_bytes;   /* larger uploads fail; default 200 MiB */
    dfd_options analysis;        /* models and frames, as for dfd_serve */
    void (*on_ready)(void *user, const char *name); /* once connected and ready */
    void (*log)(void *user, const char *line);      /* one line per job; NULL: the library's log */
    void *user;
} dfd_worker_options;

DFD_API void dfd_worker_options_default(dfd_worker_options *o);

/* Takes jobs from the broker and runs them, one at a time, until stop_fd becomes readable
 * (then finishes the job in hand; a second byte leaves it to another worker). Returns an
 * error only when it cannot start (models, arguments); Redis being away is waited out.
 * Blocks the calling thread; callbacks run on it or on the worker's lease thread. */
DFD_API int dfd_worker(const dfd_worker_options *o, int stop_fd, dfd_error *err);

#ifdef __cplusplus
}
#endif
#endif
