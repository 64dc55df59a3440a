/* jobs.c — the server's bounded worker pool: a queue of jobs, a fixed number of workers
 * each owning its analyzer state (its own dfd_ctx: models loaded once per worker, no
 * sharing across threads), progress and cancellation through the library's progress
 * callback, and a table of background jobs kept for a time-to-live after they end.
 *
 * Jobs wait in two FIFO lanes, images and the rest, and workers take images first (see
 * struct lane). One mutex guards everything here; analyses run outside it. A job is
 * reference counted: the queue/worker, the table (background jobs) and each HTTP request looking
 * at it hold one reference each, and the last one frees it. The uploaded file belongs to
 * the job and is removed as soon as its analysis ends (or the job is dropped unrun).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

struct srv_job {
    srv_pool *pool;
    char id[33];
    int background;
    int explain;        /* heat maps asked for (?explain=1) */
    dfd_media_kind kind;
    srv_job_state state;
    double progress;
    atomic_int cancel;
    char *path; /* the upload; NULL once removed */
    uint64_t bytes; /* the upload budget it holds until removed */
    char *name;
    dfd_result *result;
    char error[512];
    int error_code;
    double created_ms, started_ms, finished_ms;
    int refs;
    void *waiter;
    srv_job *qnext;
};

typedef struct worker {
    srv_pool *pool;
    int index;
    pthread_t thread;
    int started;
    void *state;
    int loaded;       /* worker_create succeeded (state may legitimately be NULL) */
    dfd_error err;
    srv_job *current; /* the job it runs, for a forced stop */
} worker;

struct srv_pool {
    srv_pool_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* work available, or stopping */
    pthread_cond_t ready_cv; /* a worker finished loading */
    /* Two lanes, each a FIFO: images (a few tens of ms each) and the rest (videos: seconds
     * each). Workers take from the image lane first, so that a photo queued behind a row
     * of videos waits for one worker to finish what it is doing, not for every video. */
    struct lane {
        srv_job *head, *tail;
    } lane[2];
    /* But not forever: under a steady stream of images a queued video would never start
     * (the load test's clips waited 18 minutes and counting). While a video waits, at most
     * IMAGES_BEFORE_VIDEO images are taken ahead of it; and it is only taken ahead of
     * waiting images while fewer than max(1, workers - 1) videos run, so that with two
     * or more workers one is always left for images. */
    int images_ahead;        /* images taken while the other lane had a job waiting */
    int running_other;       /* analyses of the other lane running now */
    int queued, running;
    int held;                /* submitted with hold, not yet released: workers wait for them */
    srv_job **table;
    size_t n_table, cap_table;
    worker *workers;
    int n_ready;
    int stopping;
    char degraded[512];
    uint64_t finished[SRV_JOB__COUNT];
};

const char *srv_job_state_name(srv_job_state s) {
    static const char *const names[] = {"queued", "running", "done", "failed", "cancelled"};
    return (unsigned)s < SRV_JOB__COUNT ? names[s] : "unknown";
}

int srv_random_id(char out[33]) {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        got += (size_t)n;
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[32] = 0;
    return 0;
}

static void remove_upload(srv_job *j) {
    if (j->path) {
        unlink(j->path);
        free(j->path);
        j->path = NULL;
    }
    if (j->bytes && j->pool->cfg.on_file_removed) j->pool->cfg.on_file_removed(j->pool->cfg.user, j->bytes);
    j->bytes = 0;
}

static void job_free(srv_job *j) {
    remove_upload(j);
    dfd_result_free(j->result);
    free(j->name);
    free(j);
}

/* Drops one reference; the caller holds p->mu. */
static void unref_locked(srv_job *j) {
    if (--j->refs == 0) job_free(j);
}

void srv_job_unref(srv_pool *p, srv_job *j) {
    if (!j) return;
    pthread_mutex_lock(&p->mu);
    unref_locked(j);
    pthread_mutex_unlock(&p->mu);
}

enum { LANE_IMAGE = 0, LANE_OTHER = 1 };
#define IMAGES_BEFORE_VIDEO 8

static struct lane *lane_of(srv_pool *p, const srv_job *j) {
    return &p->lane[j->kind == DFD_MEDIA_IMAGE ? LANE_IMAGE : LANE_OTHER];
}

static void queue_push_locked(srv_pool *p, srv_job *j) {
    struct lane *l = lane_of(p, j);
    j->qnext = NULL;
    if (l->tail) l->tail->qnext = j;
    else l->head = j;
    l->tail = j;
}

/* The next job for a worker: the oldest image, else the oldest of the rest; except that
 * the oldest of the rest goes first once IMAGES_BEFORE_VIDEO images have overtaken it, if
 * a worker can be spared for it (see struct lane). */
static srv_job *queue_pop_locked(srv_pool *p) {
    int other_first = p->lane[LANE_OTHER].head && p->lane[LANE_IMAGE].head &&
                      p->images_ahead >= IMAGES_BEFORE_VIDEO &&
                      p->running_other < (p->cfg.workers > 1 ? p->cfg.workers - 1 : 1);
    for (int i = 0; i < 2; i++) {
        int k = other_first ? LANE_OTHER - i : i;
        struct lane *l = &p->lane[k];
        srv_job *j = l->head;
        if (!j) continue;
        l->head = j->qnext;
        if (!l->head) l->tail = NULL;
        j->qnext = NULL;
        if (k == LANE_IMAGE && p->lane[LANE_OTHER].head) p->images_ahead++;
        else p->images_ahead = 0;
        return j;
    }
    return NULL;
}

static int queue_empty_locked(const srv_pool *p) { return !p->lane[0].head && !p->lane[1].head; }

/* Takes j out of its lane; 1 if it was there. */
static int queue_remove_locked(srv_pool *p, srv_job *j) {
    struct lane *l = lane_of(p, j);
    srv_job **link = &l->head, *prev = NULL;
    while (*link && *link != j) {
        prev = *link;
        link = &(*link)->qnext;
    }
    if (!*link) return 0;
    *link = j->qnext;
    if (l->tail == j) l->tail = prev;
    j->qnext = NULL;
    return 1;
}

static int is_over(srv_job_state s) { return s == SRV_JOB_DONE || s == SRV_JOB_FAILED || s == SRV_JOB_CANCELLED; }

static void finish_locked(srv_pool *p, srv_job *j, srv_job_state s) {
    j->state = s;
    j->finished_ms = srv_now_ms();
    if (s == SRV_JOB_DONE) j->progress = 1.0;
    p->finished[s]++;
    remove_upload(j);
}

static void table_remove_at(srv_pool *p, size_t i) {
    srv_job *j = p->table[i];
    p->table[i] = p->table[--p->n_table];
    unref_locked(j);
}

/* Forgets background jobs past their TTL, and the oldest finished ones beyond max_kept. */
static void purge_locked(srv_pool *p) {
    double now = srv_now_ms();
    size_t n_over = 0;
    for (size_t i = 0; i < p->n_table;) {
        srv_job *j = p->table[i];
        if (is_over(j->state) && now - j->finished_ms > p->cfg.ttl_s * 1000.0) {
            table_remove_at(p, i);
            continue;
        }
        if (is_over(j->state)) n_over++;
        i++;
    }
    while (n_over > (size_t)p->cfg.max_kept) {
        size_t oldest = SIZE_MAX;
        for (size_t i = 0; i < p->n_table; i++)
            if (is_over(p->table[i]->state) && (oldest == SIZE_MAX || p->table[i]->finished_ms < p->table[oldest]->finished_ms))
                oldest = i;
        if (oldest == SIZE_MAX) break;
        table_remove_at(p, oldest);
        n_over--;
    }
}

static int on_progress(void *user, double fraction) {
    srv_job *j = user;
    srv_pool *p = j->pool;
    pthread_mutex_lock(&p->mu);
    if (fraction > 1) fraction = 1;
    if (fraction > j->progress) j->progress = fraction; /* never moves backwards for a poller */
    pthread_mutex_unlock(&p->mu);
    return atomic_load(&j->cancel);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    srv_pool *p = w->pool;
    const dfd_server_analyzer *a = p->cfg.analyzer;
    srv_error_clear(&w->err);
    int rc = a->worker_create(a->cls, w->index, p->cfg.threads_per_worker, &w->state, &w->err);
    pthread_mutex_lock(&p->mu);
    w->loaded = rc == DFD_OK;
    if (rc != DFD_OK) {
        w->state = NULL;
        if (!w->err.message[0]) srv_fail(&w->err, rc, "%s", dfd_strerror(rc));
        if (!p->degraded[0]) snprintf(p->degraded, sizeof p->degraded, "%s", w->err.message);
    }
    p->n_ready++;
    pthread_cond_broadcast(&p->ready_cv);
    for (;;) {
        while (queue_empty_locked(p) && !(p->stopping && p->held == 0)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            purge_locked(p); /* expired results are freed even when no request comes */
        }
        srv_job *j = queue_pop_locked(p);
        if (!j) break; /* stopping and nothing left, nor about to come */
        p->queued--;
        if (atomic_load(&j->cancel)) {
            snprintf(j->error, sizeof j->error, "cancelled");
            j->error_code = DFD_E_CANCELLED;
            finish_locked(p, j, SRV_JOB_CANCELLED);
        } else {
            j->state = SRV_JOB_RUNNING;
            j->started_ms = srv_now_ms();
            p->running++;
            int other = j->kind != DFD_MEDIA_IMAGE;
            p->running_other += other;
            w->current = j;
            pthread_mutex_unlock(&p->mu);

            dfd_result *res = NULL;
            dfd_error e;
            srv_error_clear(&e);
            if (w->loaded && a->set_explain) a->set_explain(a->cls, w->state, j->explain);
            if (w->loaded)
                rc = a->analyze(a->cls, w->state, j->path, j->name, on_progress, j, &res, &e);
            else
                rc = srv_fail(&e, DFD_E_MODEL, "model not loaded: %s", w->err.message);
            if (rc != DFD_OK && !e.message[0]) srv_fail(&e, rc, "%s", dfd_strerror(rc));

            pthread_mutex_lock(&p->mu);
            p->running--;
            p->running_other -= other;
            w->current = NULL;
            /* The library reports a cancelled analysis as a result with verdict ERROR and
             * status DFD_E_CANCELLED (its rule: a result whenever one can be made); a
             * cancel that came too late to stop a finished verdict keeps the verdict. */
            if (rc == DFD_OK && res && dfd_result_status(res) == DFD_E_CANCELLED) rc = DFD_E_CANCELLED;
            if (rc == DFD_OK && res) {
                j->result = res;
                finish_locked(p, j, SRV_JOB_DONE);
            } else {
                dfd_result_free(res);
                j->error_code = rc == DFD_OK ? DFD_E_INTERNAL : rc;
                int cancelled = rc == DFD_E_CANCELLED;
                snprintf(j->error, sizeof j->error, "%s", cancelled ? "cancelled" : e.message);
                finish_locked(p, j, cancelled ? SRV_JOB_CANCELLED : SRV_JOB_FAILED);
            }
        }
        void *waiter = j->waiter;
        j->waiter = NULL;
        if (waiter && p->cfg.on_done) {
            pthread_mutex_unlock(&p->mu);
            p->cfg.on_done(p->cfg.user, waiter);
            pthread_mutex_lock(&p->mu);
        }
        unref_locked(j); /* the queue's reference */
    }
    pthread_mutex_unlock(&p->mu);
    if (w->loaded) a->worker_destroy(a->cls, w->state);
    w->state = NULL;
    return NULL;
}

int srv_pool_start(const srv_pool_config *cfg, srv_pool **out, dfd_error *err) {
    *out = NULL;
    if (!cfg->analyzer || cfg->workers < 1 || cfg->queue < 0)
        return srv_fail(err, DFD_E_ARG, "worker pool needs an analyzer and at least one worker");
    srv_pool *p = calloc(1, sizeof *p);
    if (!p) return srv_fail(err, DFD_E_NOMEM, "out of memory for the worker pool");
    p->cfg = *cfg;
    if (p->cfg.threads_per_worker < 1) p->cfg.threads_per_worker = 1;
    if (p->cfg.max_kept < 0) p->cfg.max_kept = 0;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->ready_cv, NULL);
    p->workers = calloc((size_t)cfg->workers, sizeof *p->workers);
    if (!p->workers) {
        srv_pool_stop(p);
        return srv_fail(err, DFD_E_NOMEM, "out of memory for the worker pool");
    }
    int started = 0;
    for (int i = 0; i < cfg->workers; i++) {
        worker *w = &p->workers[i];
        w->pool = p;
        w->index = i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) break;
        w->started = 1;
        started++;
    }
    if (started < cfg->workers) {
        srv_pool_stop(p);
        return srv_fail(err, DFD_E_INTERNAL, "could not start %d worker threads", cfg->workers);
    }
    /* Wait until every worker has loaded its models, so that the server reports
     * "degraded" from its first request on, not after a race. */
    pthread_mutex_lock(&p->mu);
    while (p->n_ready < started) pthread_cond_wait(&p->ready_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    *out = p;
    return DFD_OK;
}

/* Stops taking work: queued background jobs are cancelled, running ones asked to stop;
 * jobs that someone waits on (synchronous requests) still run. */
static void begin_stop_locked(srv_pool *p) {
    p->stopping = 1;
    for (int k = 0; k < 2; k++) {
        struct lane *l = &p->lane[k];
        srv_job **link = &l->head;
        l->tail = NULL;
        while (*link) {
            srv_job *j = *link;
            if (j->background) {
                *link = j->qnext;
                j->qnext = NULL;
                p->queued--;
                snprintf(j->error, sizeof j->error, "cancelled: the server is shutting down");
                j->error_code = DFD_E_CANCELLED;
                finish_locked(p, j, SRV_JOB_CANCELLED);
                unref_locked(j);
            } else {
                l->tail = j;
                link = &j->qnext;
            }
        }
    }
    for (size_t i = 0; i < p->n_table; i++)
        if (p->table[i]->state == SRV_JOB_RUNNING) atomic_store(&p->table[i]->cancel, 1);
    pthread_cond_broadcast(&p->cv);
}

void srv_pool_begin_stop(srv_pool *p) {
    pthread_mutex_lock(&p->mu);
    begin_stop_locked(p);
    pthread_mutex_unlock(&p->mu);
}

void srv_pool_cancel_all(srv_pool *p) {
    pthread_mutex_lock(&p->mu);
    begin_stop_locked(p);
    for (int k = 0; k < 2; k++)
        for (srv_job *j = p->lane[k].head; j; j = j->qnext) atomic_store(&j->cancel, 1);
    for (int i = 0; i < p->cfg.workers; i++)
        if (p->workers[i].current) atomic_store(&p->workers[i].current->cancel, 1);
    pthread_mutex_unlock(&p->mu);
}

void srv_pool_stop(srv_pool *p) {
    if (!p) return;
    if (p->workers) {
        pthread_mutex_lock(&p->mu);
        begin_stop_locked(p);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->cfg.workers; i++)
            if (p->workers[i].started) pthread_join(p->workers[i].thread, NULL);
    }
    pthread_mutex_lock(&p->mu);
    while (p->n_table) table_remove_at(p, p->n_table - 1);
    pthread_mutex_unlock(&p->mu);
    free(p->table);
    free(p->workers);
    pthread_cond_destroy(&p->ready_cv);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

const char *srv_pool_degraded(srv_pool *p) { return p->degraded[0] ? p->degraded : NULL; }

int srv_pool_submit(srv_pool *p, char *path, uint64_t bytes, const char *name, dfd_media_kind kind, int background,
                    void *waiter, int hold, int explain, srv_job **out, dfd_error *err) {
    if (out) *out = NULL;
    srv_job *j = calloc(1, sizeof *j);
    if (!j || !(j->name = strdup(name ? name : "upload"))) {
        free(j);
        unlink(path);
        free(path);
        if (bytes && p->cfg.on_file_removed) p->cfg.on_file_removed(p->cfg.user, bytes);
        return srv_fail(err, DFD_E_NOMEM, "out of memory for a job");
    }
    j->pool = p;
    j->path = path;
    j->bytes = bytes;
    j->background = background;
    j->explain = explain;
    j->kind = kind;
    j->state = SRV_JOB_QUEUED;
    j->waiter = waiter;
    j->created_ms = srv_now_ms();
    atomic_init(&j->cancel, 0);
    if (srv_random_id(j->id) != 0) {
        job_free(j);
        return srv_fail(err, DFD_E_INTERNAL, "no random bytes for a job id");
    }
    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        job_free(j);
        pthread_mutex_unlock(&p->mu);
        return srv_fail(err, DFD_E_LIMIT, "the server is shutting down");
    }
    if (p->queued >= p->cfg.queue) {
        int q = p->queued;
        job_free(j);
        pthread_mutex_unlock(&p->mu);
        return srv_fail(err, DFD_E_LIMIT, "the queue is full (%d jobs waiting for %d workers)", q, p->cfg.workers);
    }
    if (background) {
        purge_locked(p);
        if (p->n_table == p->cap_table) {
            size_t nc = p->cap_table ? p->cap_table * 2 : 64;
            srv_job **nt = srv_malloc_array(nc, sizeof *nt);
            if (!nt) {
                job_free(j);
                pthread_mutex_unlock(&p->mu);
                return srv_fail(err, DFD_E_NOMEM, "out of memory for the job table");
            }
            if (p->table) memcpy(nt, p->table, p->n_table * sizeof *nt);
            free(p->table);
            p->table = nt;
            p->cap_table = nc;
        }
        p->table[p->n_table++] = j;
        j->refs++;
    }
    j->refs++; /* the queue's */
    if (out) {
        j->refs++;
        *out = j;
    }
    p->queued++; /* a held job already has its place in the queue */
    if (hold) {
        p->held++;
    } else {
        queue_push_locked(p, j);
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return DFD_OK;
}

void srv_pool_release(srv_pool *p, srv_job *j) {
    pthread_mutex_lock(&p->mu);
    p->held--;
    queue_push_locked(p, j);
    pthread_cond_broadcast(&p->cv); /* also wakes a stopping worker that waited for it */
    pthread_mutex_unlock(&p->mu);
}

static srv_job *find_locked(srv_pool *p, const char *id, size_t *index) {
    for (size_t i = 0; i < p->n_table; i++)
        if (strcmp(p->table[i]->id, id) == 0) {
            if (index) *index = i;
            return p->table[i];
        }
    return NULL;
}

srv_job *srv_pool_find(srv_pool *p, const char *id) {
    pthread_mutex_lock(&p->mu);
    purge_locked(p);
    srv_job *j = find_locked(p, id, NULL);
    if (j) j->refs++;
    pthread_mutex_unlock(&p->mu);
    return j;
}

int srv_pool_cancel(srv_pool *p, const char *id, int *was_over) {
    *was_over = 0;
    pthread_mutex_lock(&p->mu);
    purge_locked(p);
    size_t idx;
    srv_job *j = find_locked(p, id, &idx);
    int state = -1;
    if (!j) goto out;
    if (j->state == SRV_JOB_QUEUED) {
        atomic_store(&j->cancel, 1);
        /* Out of the queue at once, so that it frees its place for the next upload. */
        if (queue_remove_locked(p, j)) {
            p->queued--;
            snprintf(j->error, sizeof j->error, "cancelled");
            j->error_code = DFD_E_CANCELLED;
            finish_locked(p, j, SRV_JOB_CANCELLED);
            unref_locked(j); /* the queue's */
        }
        state = j->state;
    } else if (j->state == SRV_JOB_RUNNING) {
        atomic_store(&j->cancel, 1); /* the progress callback tells the analysis to stop */
        state = SRV_JOB_RUNNING;
    } else {
        state = j->state;
        *was_over = 1;
        table_remove_at(p, idx);
    }
out:
    pthread_mutex_unlock(&p->mu);
    return state;
}

void srv_job_detach(srv_pool *p, srv_job *j) {
    pthread_mutex_lock(&p->mu);
    j->waiter = NULL;
    /* Nobody will read a foreground job's result any more: do not spend a worker on it. */
    if (!j->background && !is_over(j->state)) atomic_store(&j->cancel, 1);
    pthread_mutex_unlock(&p->mu);
}

void srv_job_get(srv_pool *p, srv_job *j, srv_job_view *v) {
    memset(v, 0, sizeof *v);
    pthread_mutex_lock(&p->mu);
    double now = srv_now_ms();
    snprintf(v->id, sizeof v->id, "%s", j->id);
    v->state = j->state;
    v->kind = j->kind;
    v->progress = j->progress;
    v->cancel_requested = atomic_load(&j->cancel);
    v->age_s = (now - j->created_ms) / 1000.0;
    if (j->state == SRV_JOB_RUNNING) v->run_s = (now - j->started_ms) / 1000.0;
    else if (is_over(j->state) && j->started_ms > 0) v->run_s = (j->finished_ms - j->started_ms) / 1000.0;
    v->result = j->state == SRV_JOB_DONE ? j->result : NULL;
    snprintf(v->error, sizeof v->error, "%s", j->error);
    v->error_code = j->error_code;
    v->attempts = j->started_ms > 0;
    pthread_mutex_unlock(&p->mu);
}

void srv_pool_get_stats(srv_pool *p, srv_pool_stats *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&p->mu);
    purge_locked(p);
    s->queued = p->queued;
    s->running = p->running;
    s->workers = p->cfg.workers;
    s->queue_capacity = p->cfg.queue;
    for (size_t i = 0; i < p->n_table; i++) s->jobs_by_state[p->table[i]->state]++;
    memcpy(s->finished_by_state, p->finished, sizeof s->finished_by_state);
    pthread_mutex_unlock(&p->mu);
}
