/* worker.c — `dfd worker`: a stateless process that takes analyses from the Redis broker
 * (broker.h), runs them with the same analyzer `dfd serve` uses (one dfd_ctx, its
 * models loaded once), and stores each end once.
 *
 * Why it exists: so that the work of one API can be spread over as many processes and
 * machines as reach Redis, and a worker that dies loses nothing (its job is claimed
 * again by another after the visibility timeout).
 *
 * Two threads, each with its own Redis connection: the main one takes a job, fetches its
 * upload into a private temp file, analyses it and stores the end; the lease keeper,
 * while a job runs, keeps its stream entry this worker's (so that nobody claims it while
 * it is alive), copies the progress into Redis, and reads the job's cancel flag, which
 * the analysis's progress callback then returns. It also writes the heartbeat that
 * /v1/health counts as "workers seen".
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#include "broker.h"
#include "server.h"

typedef struct wrk {
    dfd_worker_config cfg;
    srv_broker *main, *keeper;
    char name[128];
    char tmpdir[4096];
    int stop_fd;
    atomic_int stops;    /* stop requests read so far: 1 = finish the job, 2 = abort it */
    atomic_int quit;     /* the keeper thread ends */
    pthread_mutex_t mu;  /* guards task and has_task */
    srv_broker_task task;
    int has_task;
    _Atomic double progress;
    atomic_int cancel, lost;
} wrk;

void dfd_worker_config_default(dfd_worker_config *c) {
    memset(c, 0, sizeof *c);
    c->visibility_timeout_s = 30;
    c->max_attempts = 3;
    c->max_upload_bytes = 200ull << 20;
    c->heartbeat_s = 2;
    c->threads = 1;
}

static void wlog(wrk *w, const char *fmt, ...) DFD_PRINTF(2, 3);
static void wlog(wrk *w, const char *fmt, ...) {
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (w->cfg.log) w->cfg.log(w->cfg.user, line);
    else dfd_log(DFD_LOG_INFO, "%s", line);
}

/* Reads pending stop requests; returns how many there have been in all. */
static int poll_stop(wrk *w, int wait_ms) {
    struct pollfd p = {.fd = w->stop_fd, .events = POLLIN};
    if (w->stop_fd >= 0 && poll(&p, 1, wait_ms) > 0) {
        char b[8];
        ssize_t n = read(w->stop_fd, b, sizeof b);
        if (n > 0) atomic_fetch_add(&w->stops, (int)n);
    } else if (w->stop_fd < 0 && wait_ms > 0) {
        struct timespec ts = {wait_ms / 1000, (long)(wait_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return atomic_load(&w->stops);
}

static void *keeper_main(void *arg) {
    wrk *w = arg;
    double lease_ms = w->cfg.visibility_timeout_s * 1000.0 / 4;
    if (lease_ms > 250) lease_ms = 250;
    if (lease_ms < 20) lease_ms = 20;
    double next_beat = 0, next_lease = 0;
    while (!atomic_load(&w->quit)) {
        double now = srv_now_ms();
        dfd_error e;
        if (now >= next_beat) {
            srv_error_clear(&e);
            srv_broker_heartbeat(w->keeper, w->name, &e); /* a failure is logged by the broker */
            next_beat = now + w->cfg.heartbeat_s * 1000.0;
        }
        if (now >= next_lease) {
            pthread_mutex_lock(&w->mu);
            int has = w->has_task;
            srv_broker_task t = w->task;
            pthread_mutex_unlock(&w->mu);
            if (has) {
                int cancel = 0, lost = 0;
                srv_error_clear(&e);
                if (srv_broker_lease(w->keeper, &t, w->name, atomic_load(&w->progress), &cancel, &lost, &e) == DFD_OK) {
                    pthread_mutex_lock(&w->mu);
                    if (w->has_task && strcmp(w->task.entry, t.entry) == 0) {
                        if (cancel) atomic_store(&w->cancel, 1);
                        if (lost) atomic_store(&w->lost, 1);
                    }
                    pthread_mutex_unlock(&w->mu);
                }
            }
            next_lease = now + lease_ms;
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int on_progress(void *user, double fraction) {
    wrk *w = user;
    if (fraction > 1) fraction = 1;
    if (fraction > atomic_load(&w->progress)) atomic_store(&w->progress, fraction);
    return atomic_load(&w->cancel) || atomic_load(&w->lost) || atomic_load(&w->stops) >= 2;
}

/* Stores the end, trying again while Redis is away (the result is not thrown away for a
 * short outage); gives up only when told to stop twice, and then the entry stays
 * pending for another worker. Returns 1 when this end was written. */
static int store_end(wrk *w, const srv_broker_task *t, const srv_broker_end *end) {
    for (;;) {
        int written = 0;
        dfd_error e;
        srv_error_clear(&e);
        if (srv_broker_finish(w->main, t, end, &written, &e) == DFD_OK) return written;
        if (e.code != DFD_E_IO) {
            wlog(w, "worker %s: job %s: cannot store the end: %s", w->name, t->id, e.message);
            return 0;
        }
        if (poll_stop(w, 1000) >= 2) return 0;
    }
}

static void run_task(wrk *w, const srv_broker_task *t, void *state) {
    const dfd_server_analyzer *a = w->cfg.analyzer;
    srv_broker_start_info info;
    dfd_error e;
    srv_error_clear(&e);
    if (srv_broker_start(w->main, t, w->name, w->cfg.max_attempts, &info, &e) != DFD_OK) {
        wlog(w, "worker %s: job %s: cannot start it: %s", w->name, t->id, e.message);
        return; /* left pending: claimed again after the visibility timeout */
    }
    if (!info.run) {
        /* Ended without a run (cancelled while queued, out of attempts, expired): nobody
         * needs its spooled upload any more. */
        if (w->cfg.spool_dir) {
            char sp[4400];
            snprintf(sp, sizeof sp, "%s/%s.upload", w->cfg.spool_dir, t->id);
            unlink(sp);
        }
        return;
    }
    double t0 = srv_now_ms();
    srv_broker_end end = {.state = SRV_JOB_FAILED, .status = DFD_E_INTERNAL, .p_fake = NAN, .verdict = DFD_VERDICT_ERROR};
    char msg[600] = "";
    char *result_json = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/job-XXXXXX", w->tmpdir);
    int fd = mkstemp(path);
    atomic_store(&w->progress, 0.0);
    atomic_store(&w->cancel, 0);
    atomic_store(&w->lost, 0);
    pthread_mutex_lock(&w->mu);
    w->task = *t;
    w->has_task = 1;
    pthread_mutex_unlock(&w->mu);
    int rc;
    if (fd < 0) {
        rc = srv_fail(&e, DFD_E_IO, "the worker cannot create a temporary file: %s", strerror(errno));
    } else {
        rc = srv_broker_fetch_upload(w->main, t->id, info.spooled, w->cfg.spool_dir, w->cfg.max_upload_bytes, fd, &e);
        if (close(fd) != 0 && rc == DFD_OK) rc = srv_fail(&e, DFD_E_IO, "cannot write a temporary file");
    }
    if (rc == DFD_OK) {
        dfd_result *res = NULL;
        srv_error_clear(&e);
        if (a->set_explain) a->set_explain(a->cls, state, info.explain);
        rc = a->analyze(a->cls, state, path, info.name, on_progress, w, &res, &e);
        if (rc != DFD_OK && !e.message[0]) srv_fail(&e, rc, "%s", dfd_strerror(rc));
        /* As jobs.c: a cancelled analysis is a result with status DFD_E_CANCELLED. */
        if (rc == DFD_OK && res && dfd_result_status(res) == DFD_E_CANCELLED) rc = DFD_E_CANCELLED;
        if (rc == DFD_OK && res) {
            result_json = dfd_result_json(res); /* compact, as the server stores it */
            if (result_json) {
                end.state = SRV_JOB_DONE;
                end.status = dfd_result_status(res);
                end.verdict = (int)dfd_result_verdict(res);
                end.p_fake = dfd_result_p_fake(res);
            } else {
                end.status = DFD_E_NOMEM;
                snprintf(msg, sizeof msg, "out of memory while writing the result");
            }
        } else {
            end.status = rc == DFD_OK ? DFD_E_INTERNAL : rc;
            end.state = rc == DFD_E_CANCELLED ? SRV_JOB_CANCELLED : SRV_JOB_FAILED;
            snprintf(msg, sizeof msg, "%s", rc == DFD_E_CANCELLED ? "cancelled" : e.message);
        }
        dfd_result_free(res);
    } else {
        end.status = rc;
        snprintf(msg, sizeof msg, "%s", e.message);
    }
    if (fd >= 0) unlink(path);
    pthread_mutex_lock(&w->mu);
    w->has_task = 0;
    pthread_mutex_unlock(&w->mu);
    int lost = atomic_load(&w->lost), aborted = atomic_load(&w->stops) >= 2 && end.state == SRV_JOB_CANCELLED &&
                                                  !atomic_load(&w->cancel);
    double ms = srv_now_ms() - t0;
    if (lost || aborted) {
        /* Not ours to end: another worker has it, or we stop and leave it to another. */
        wlog(w, "worker %s: job %s attempt %d %s after %.0f ms", w->name, t->id, info.attempts,
             lost ? "lost to another worker" : "abandoned (stopping)", ms);
        dfd_free(result_json);
        return;
    }
    end.error = msg[0] ? msg : NULL;
    end.result_json = result_json;
    int written = store_end(w, t, &end);
    if (written && info.spooled && w->cfg.spool_dir) {
        char sp[4400];
        snprintf(sp, sizeof sp, "%s/%s.upload", w->cfg.spool_dir, t->id);
        unlink(sp);
    }
    wlog(w, "worker %s: job %s attempt %d %s in %.0f ms%s", w->name, t->id, info.attempts,
         srv_job_state_name(end.state), ms, written ? "" : " (not stored: it had ended already)");
    if (end.state == SRV_JOB_FAILED) wlog(w, "worker %s: job %s failed: %s", w->name, t->id, msg);
    dfd_free(result_json);
}

static void remove_dir(const char *dir) {
    if (dir[0]) rmdir(dir); /* job files are unlinked as each job ends */
}

int dfd_worker_run(const dfd_worker_config *cfg, int stop_fd, dfd_error *err) {
    if (!cfg || !cfg->analyzer || !cfg->analyzer->analyze || !cfg->analyzer->worker_create)
        return srv_fail(err, DFD_E_ARG, "worker needs an analyzer");
    if (!cfg->broker_url) return srv_fail(err, DFD_E_ARG, "worker needs --broker redis://HOST:PORT");
    if (!(cfg->visibility_timeout_s > 0) || cfg->max_attempts < 1)
        return srv_fail(err, DFD_E_ARG, "the visibility timeout must be > 0 and the attempts >= 1");
    wrk *w = calloc(1, sizeof *w);
    if (!w) return srv_fail(err, DFD_E_NOMEM, "out of memory");
    w->cfg = *cfg;
    w->stop_fd = stop_fd;
    if (w->cfg.heartbeat_s <= 0) w->cfg.heartbeat_s = 2;
    if (w->cfg.max_upload_bytes == 0) w->cfg.max_upload_bytes = 200ull << 20;
    pthread_mutex_init(&w->mu, NULL);
    atomic_init(&w->stops, 0);
    atomic_init(&w->quit, 0);
    atomic_init(&w->progress, 0.0);
    atomic_init(&w->cancel, 0);
    atomic_init(&w->lost, 0);
    if (cfg->name && cfg->name[0]) {
        snprintf(w->name, sizeof w->name, "%s", cfg->name);
    } else {
        char host[64] = "host", rnd[33];
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        if (srv_random_id(rnd) != 0) snprintf(rnd, sizeof rnd, "0");
        snprintf(w->name, sizeof w->name, "%s-%ld-%.6s", host, (long)getpid(), rnd);
    }
    void *state = NULL;
    int loaded = 0, keeper_started = 0;
    pthread_t keeper;
    int rc = DFD_OK;
    const char *parent = cfg->tmp_parent && *cfg->tmp_parent ? cfg->tmp_parent : getenv("TMPDIR");
    if (!parent || !*parent) parent = "/tmp";
    snprintf(w->tmpdir, sizeof w->tmpdir, "%s/dfd-worker-XXXXXX", parent);
    if (!mkdtemp(w->tmpdir)) {
        rc = srv_fail(err, DFD_E_IO, "cannot create a private folder in '%s': %s", parent, strerror(errno));
        w->tmpdir[0] = 0;
        goto out;
    }
    if ((rc = srv_broker_open(cfg->broker_url, 5, &w->main, err)) != DFD_OK) goto out;
    if ((rc = srv_broker_open(cfg->broker_url, 5, &w->keeper, err)) != DFD_OK) goto out;
    const dfd_server_analyzer *a = cfg->analyzer;
    if ((rc = a->worker_create(a->cls, 0, cfg->threads > 0 ? cfg->threads : 1, &state, err)) != DFD_OK) {
        if (!err->message[0]) srv_fail(err, rc, "cannot load the models");
        goto out;
    }
    loaded = 1;
    dfd_error e;
    srv_error_clear(&e);
    if (srv_broker_ping(w->main, &e) != DFD_OK)
        dfd_log(DFD_LOG_WARN, "worker %s: %s; waiting for it", w->name, e.message);
    if (pthread_create(&keeper, NULL, keeper_main, w) != 0) {
        rc = srv_fail(err, DFD_E_INTERNAL, "cannot start a thread");
        goto out;
    }
    keeper_started = 1;
    if (cfg->on_ready) cfg->on_ready(cfg->user, w->name);
    char cursor[64] = "0-0";
    while (poll_stop(w, 0) == 0) {
        srv_broker_task t;
        int got = 0;
        srv_error_clear(&e);
        if (srv_broker_take(w->main, w->name, cfg->visibility_timeout_s, 1000, cursor, &t, &got, &e) != DFD_OK) {
            if (e.code != DFD_E_IO) wlog(w, "worker %s: %s", w->name, e.message);
            poll_stop(w, 1000); /* Redis away: try again in a second */
            continue;
        }
        if (got) run_task(w, &t, state);
    }
out:
    if (keeper_started) {
        atomic_store(&w->quit, 1);
        pthread_join(keeper, NULL);
    }
    if (loaded) cfg->analyzer->worker_destroy(cfg->analyzer->cls, state);
    srv_broker_close(w->main);
    srv_broker_close(w->keeper);
    remove_dir(w->tmpdir);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return rc;
}
