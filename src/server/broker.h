/*
 * broker.h — the job broker that lets many `dfd worker` processes, on any machine, share
 * the analyses one or more `dfd serve` accept: Redis Streams with a consumer group
 * (hiredis is used only in broker.c, behind this interface).
 *
 * Why it exists: the in-process pool (jobs.c) keeps its jobs in one process's memory, so
 * a restart loses them and two servers cannot share work. Here a job is a Redis hash
 * (state, progress, attempts, result), its upload a Redis key with a TTL (or a file in a
 * shared spool folder), and its place in line an entry of the stream "dfd:jobs", read by
 * the group "dfd:workers". A worker that dies leaves its entry pending; another worker
 * claims it once it has been idle longer than the visibility timeout (the owner keeps it
 * fresh while it works), up to max_attempts. Every state change that must not race is
 * one Lua script, so that a result is written once even when two workers raced.
 *
 * A handle is one connection, guarded by its own mutex (hiredis contexts are not thread
 * safe): a thread that blocks (the server's notifier, a worker's lease keeper) opens its
 * own. A handle connects lazily and again after any failure: every call either reaches
 * Redis or returns DFD_E_IO with a message that says Redis is unreachable, and logs the
 * change (down, back) once.
 */
#ifndef DFD_SERVER_BROKER_H
#define DFD_SERVER_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

#define SRV_BROKER_MAX_URL 1024

typedef struct srv_broker srv_broker;

/* Parses redis://[user:password@]HOST:PORT[/DB] (port default 6379, db default 0) and
 * makes a handle; nothing is connected yet. timeout_s bounds connects and commands. */
int srv_broker_open(const char *url, double timeout_s, srv_broker **out, dfd_error *err);
void srv_broker_close(srv_broker *b);
/* "HOST:PORT/DB", for messages (never the password). */
const char *srv_broker_where(const srv_broker *b);
/* Connects if needed and makes sure the stream and its consumer group exist. */
int srv_broker_ping(srv_broker *b, dfd_error *err);

/* ---- the server's side ------------------------------------------------------------------- */

typedef struct srv_broker_submit_args {
    const char *id;        /* 32 hex digits */
    const char *name;      /* the client's file name */
    dfd_media_kind kind;
    int explain;
    const char *notify;    /* the server instance to tell when it ends (RPUSH), or NULL */
    const char *path;      /* the upload, read into Redis, or moved into spool_dir */
    uint64_t bytes;
    const char *spool_dir; /* NULL: the bytes go to Redis */
    double job_ttl_s;      /* how long the finished job is kept */
} srv_broker_submit_args;
int srv_broker_submit(srv_broker *b, const srv_broker_submit_args *a, dfd_error *err);

typedef struct srv_broker_job {
    int found;
    char id[33];
    srv_job_state state;
    dfd_media_kind kind;
    double progress;
    int cancel_requested;
    double age_s, run_s;
    int attempts;
    int status;            /* DFD_E_* of the end (result status, or the failure's code) */
    int verdict;           /* dfd_verdict of a done job */
    double p_fake;         /* NAN when none */
    char error[512];
    char worker[128];
    char *result;          /* a done job's dfd.result element as JSON text (malloc'ed), else NULL */
} srv_broker_job;
/* Reads the job (found = 0 when there is none, e.g. expired). */
int srv_broker_get(srv_broker *b, const char *id, srv_broker_job *j, dfd_error *err);
void srv_broker_job_clear(srv_broker_job *j);
/* Only the state: -1 when there is no such job. */
int srv_broker_state(srv_broker *b, const char *id, int *state, dfd_error *err);
/* DELETE: a queued job ends cancelled at once, a running one has its cancel flag set (its
 * worker stops it), a finished one is forgotten (was_over = 1). *state = -1: no such job. */
int srv_broker_cancel(srv_broker *b, const char *id, int *state, int *was_over, dfd_error *err);
/* Asks a job to stop, whatever it is doing (a waiting client went away). */
int srv_broker_request_cancel(srv_broker *b, const char *id, dfd_error *err);

typedef struct srv_broker_stats {
    int64_t queued;            /* submitted, not yet started */
    double oldest_wait_s;      /* age of the oldest of them; 0 when none */
    int64_t running;           /* delivered to a worker and not acknowledged */
    int64_t workers_seen;      /* workers with a heartbeat within the window */
    int64_t retries;           /* runs that were a second (or later) attempt */
    uint64_t finished[SRV_JOB__COUNT];
} srv_broker_stats;
int srv_broker_stats_get(srv_broker *b, double worker_window_s, srv_broker_stats *s, dfd_error *err);

/* Blocks up to timeout_s (whole seconds, >= 1) for the id of a job that ended, told to
 * server instance sid; *got = 0 on timeout. */
int srv_broker_pop_done(srv_broker *b, const char *sid, int timeout_s, char id[33], int *got, dfd_error *err);

/* ---- the worker's side ------------------------------------------------------------------- */

typedef struct srv_broker_task {
    char entry[64]; /* the stream entry */
    char id[33];    /* the job */
} srv_broker_task;

/* The next entry for this consumer: first one pending longer than visibility_s with a
 * dead (or slow) consumer, else a new one, waiting up to block_ms. *got = 0: none.
 * cursor (64 bytes, "0-0" at first) remembers where the scan of pending entries is. */
int srv_broker_take(srv_broker *b, const char *consumer, double visibility_s, int block_ms, char *cursor,
                    srv_broker_task *t, int *got, dfd_error *err);

typedef struct srv_broker_start_info {
    int run;                /* 1: run it; 0: nothing to do (gone, over, cancelled, out of attempts) */
    int attempts;           /* this run's number */
    char name[256];
    dfd_media_kind kind;
    int explain;
    int spooled;            /* the upload is in the spool folder, not in Redis */
} srv_broker_start_info;
int srv_broker_start(srv_broker *b, const srv_broker_task *t, const char *consumer, int max_attempts,
                     srv_broker_start_info *info, dfd_error *err);
/* Copies the job's upload into fd (at most max_bytes: a larger one is DFD_E_LIMIT).
 * DFD_E_NOT_FOUND when it is gone (expired). */
int srv_broker_fetch_upload(srv_broker *b, const char *id, int spooled, const char *spool_dir, uint64_t max_bytes,
                            int fd, dfd_error *err);
/* Keeps the entry this consumer's (resets its idle time), records progress, and tells
 * whether the job was asked to stop (*cancel) or is no longer this consumer's (*lost). */
int srv_broker_lease(srv_broker *b, const srv_broker_task *t, const char *consumer, double progress, int *cancel,
                     int *lost, dfd_error *err);
/* Stores the end, once: *written = 0 when the job had already ended (another worker's
 * result stands) or is gone. Acknowledges the entry either way. result_json may be NULL. */
typedef struct srv_broker_end {
    srv_job_state state;
    int status;
    const char *error;       /* NULL = none */
    const char *result_json; /* the dfd.result element, for DONE */
    int verdict;
    double p_fake;           /* NAN = none */
} srv_broker_end;
int srv_broker_finish(srv_broker *b, const srv_broker_task *t, const srv_broker_end *e, int *written, dfd_error *err);
/* "This worker is alive", for the server's workers-seen count. */
int srv_broker_heartbeat(srv_broker *b, const char *consumer, dfd_error *err);

#endif
