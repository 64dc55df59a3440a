/* loader.c — the prefetching batch loader: decoding, resizing, self-blending, augmenting
 * and normalising samples on worker threads while the main thread runs the network.
 *
 * Work is handed out a sample at a time: a batch b always lands in slot b % K, its samples
 * are claimed one by one by whichever thread is free (the workers, and the caller while it
 * waits for that batch), and batches are handed out in order. Every sample draws its random
 * numbers from a generator seeded by (seed, sample position, source), so results do not
 * depend on which thread made which sample, nor on the number of threads.
 *
 * On this project's 2-core machines the network's step runs OpenMP threads on every core;
 * a feeder thread running beside them takes a core from one of them, and every barrier of
 * the step then waits for the thread that lost its core. So by default in training the
 * loader takes turns with the step (opts.turns): its threads run only while the caller is
 * inside dfd_loader_next, all cores make the next batch, and the step then has the cores to
 * itself. With the decoded-crop cache (cache.c) a batch's feed is a few percent of a step. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "face/face.h"
#include "train/train.h"

enum { SLOT_EMPTY = 0, SLOT_FILLING = 1, SLOT_READY = 2 };

typedef struct slot {
    dfd_batch b;
    int state;
    long index;   /* batch number it holds or is being filled with */
    int claimed;  /* samples handed out to a thread so far */
    int done;     /* samples finished */
} slot;

struct dfd_loader {
    dfd_loader_opts o;
    size_t sample_floats; /* floats per sample */
    long n_batches;
    int k;                /* slots */
    slot *slots;
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long next_fill, next_take;
    int taken;            /* the caller holds slot (next_take - 1) % k */
    int gate;             /* turns mode: 1 while the caller waits in dfd_loader_next */
    int stop;
    long failures;
    int err_code;         /* first fatal error (no memory), else 0 */
    char err_msg[512];
    double feed_cpu_s, wait_s;
    long samples;
};

/* ---- One sample ------------------------------------------------------------------------- */

static void normalize(const dfd_image *im, int norm, float *out) { dfd_crop_normalize(im, (dfd_norm)norm, out); }

/* Loads an item as an RGB image of size x size: from the cache when it holds it, else
 * decoded and resized (and then stored in the cache). */
static int load_item(const dfd_loader *l, size_t item, dfd_image *out, dfd_error *err) {
    dfd_img_cache *c = l->o.cache && dfd_img_cache_side(l->o.cache) == l->o.size ? l->o.cache : NULL;
    if (dfd_img_cache_has(c, item)) {
        int rc = dfd_image_alloc(out, l->o.size, l->o.size, err);
        if (rc) return rc;
        if (dfd_img_cache_read(c, item, out)) return DFD_OK;
        dfd_image_free(out);
    }
    int rc = dfd_img_cache_load(l->o.ds, item, l->o.size, out, err);
    if (rc || !c) return rc;
    dfd_img_cache_put(c, item, out); /* stores the decoded crop... */
    rc = dfd_img_cache_roundtrip(c, out, err); /* ...and uses what reading it back gives */
    if (rc) dfd_image_free(out);
    return rc;
}

/* A sample's random decisions. From the item's source name (relative to the dataset), not
 * its path: the same data moved elsewhere gives the same samples. */
typedef struct draws {
    int make_sbi;      /* a real image turned into a self-blended fake */
    uint64_t aug_seed; /* seeds the transform (and the self-blend) */
    float soften;      /* the extra down-and-up factor for a real-made sample, 0 = none */
} draws;

static draws sample_draws(const dfd_loader_opts *o, const dfd_item *first, long pos) {
    uint64_t sample_seed =
        dfd_hash_str(first->source, o->seed ^ ((uint64_t)pos * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)(first->frame + 1) << 40));
    nn_rng r;
    nn_rng_seed(&r, sample_seed);
    const int real_image = o->frames <= 0 && first->label == 0; /* may be self-blended or softened */
    draws d = {0, 0, 0};
    d.make_sbi = real_image && o->sbi && o->sbi_fraction > 0 && nn_rng_uniform(&r) < o->sbi_fraction;
    d.aug_seed = nn_rng_next(&r);
    if (real_image && o->real_downscale > 0 && nn_rng_uniform(&r) < o->real_downscale)
        d.soften = 0.35f + 0.4f * (float)nn_rng_uniform(&r);
    return d;
}

/* The G x G targets of a sample: each cell's mean of the self-blend's mask over the mask's
 * peak (so a blend at a quarter strength still marks where it is), or 0 without a mask. */
static void loc_targets(const float *mask, int w, int h, int G, float *out) {
    float peak = 0;
    for (size_t i = 0; mask && i < (size_t)w * h; i++) peak = mask[i] > peak ? mask[i] : peak;
    for (int gy = 0; gy < G; gy++)
        for (int gx = 0; gx < G; gx++) {
            int y0 = gy * h / G, y1 = (gy + 1) * h / G, x0 = gx * w / G, x1 = (gx + 1) * w / G;
            double sum = 0;
            for (int y = y0; mask && peak > 0 && y < y1; y++)
                for (int x = x0; x < x1; x++) sum += mask[(size_t)y * w + x];
            int cnt = (y1 - y0) * (x1 - x0);
            out[gy * G + gx] = cnt > 0 && peak > 0 ? (float)(sum / cnt / peak) : 0.0f;
        }
}

/* Fills sample j of batch b (epoch position pos). Returns a fatal error code (no memory),
 * or DFD_OK; unreadable files only clear ok. */
static int fill_sample(dfd_loader *l, dfd_batch *b, int j, long pos) {
    const dfd_loader_opts *o = &l->o;
    size_t s = o->order[pos];
    float *x = b->x + (size_t)j * l->sample_floats;
    size_t per_frame = (size_t)o->size * o->size * 3;
    int frames = o->frames > 0 ? o->frames : 1;
    const dfd_item *first;
    size_t first_item;
    if (o->frames > 0) {
        first_item = o->seq_items[o->seqs[s].first];
    } else first_item = s;
    first = &o->ds->items[first_item];
    b->sample[j] = (size_t)pos;
    b->item[j] = first_item;
    b->y[j] = (float)first->label;
    b->ok[j] = 1;
    b->sbi[j] = 0;
    if (o->loc_grid > 0) b->loc_ok[j] = 0;
    draws dr = sample_draws(o, first, pos);
    if (o->with_prev && o->with_prev[pos] && pos > 0 && o->frames <= 0) {
        /* A paired fake: its real partner's transform (crop, colour, compression), so the
         * pair differs by the manipulation alone. */
        draws partner = sample_draws(o, &o->ds->items[o->order[pos - 1]], pos - 1);
        dr.aug_seed = partner.aug_seed;
    }
    const int make_sbi = dr.make_sbi;
    const uint64_t aug_seed = dr.aug_seed;
    const float soften = dr.soften;
    for (int f = 0; f < frames; f++) {
        size_t item = first_item;
        if (o->frames > 0) {
            /* count frames of the sequence spread evenly over T (repeated when fewer). */
            const dfd_sequence *sq = &o->seqs[s];
            size_t k = (size_t)((long)f * sq->count / frames);
            item = o->seq_items[sq->first + k];
        }
        dfd_error e;
        dfd_image im;
        int rc = load_item(l, item, &im, &e);
        if (rc == DFD_E_NOMEM) return rc;
        if (rc) {
            pthread_mutex_lock(&l->mu);
            long nf = ++l->failures;
            pthread_mutex_unlock(&l->mu);
            if (nf <= 5) dfd_log(DFD_LOG_WARN, "loader: skipping '%s': %s", o->ds->items[item].path, e.message);
            b->ok[j] = 0;
            memset(x + f * per_frame, 0, per_frame * sizeof(float));
            continue;
        }
        /* Every frame of a sequence gets the same random transform. */
        nn_rng ar;
        nn_rng_seed(&ar, aug_seed);
        if (soften > 0 && (rc = dfd_aug_downscale(&im, soften, &e)) == DFD_E_NOMEM) {
            dfd_image_free(&im);
            return rc;
        }
        float *mask = NULL; /* the self-blend's mask, when its place is wanted (loc_grid) */
        if (!rc && make_sbi && o->loc_grid > 0 &&
            !(mask = dfd_malloc_array((size_t)im.w * im.h, sizeof *mask))) {
            dfd_image_free(&im);
            return DFD_E_NOMEM;
        }
        if (!rc && make_sbi) {
            float pts[DFD_SBI_POINTS][2];
            int has = o->landmarks && dfd_ds_landmarks_get(o->landmarks, item, im.w, im.h, pts);
            rc = dfd_sbi_landmarks(&im, o->sbi, has ? (const float(*)[2])pts : NULL, &ar, mask, &e);
            if (!rc) b->sbi[j] = 1, b->y[j] = 1;
        }
        if (!rc && o->aug) rc = dfd_augment_masked(&im, o->aug, &ar, mask, &e);
        if (rc) {
            dfd_image_free(&im);
            free(mask);
            if (rc == DFD_E_NOMEM) return rc;
            b->ok[j] = 0;
            continue;
        }
        if (o->flip) dfd_image_flip_h(&im);
        if (o->loc_grid > 0) { /* still images only: dfd_loader_start refuses it with frames */
            if (mask && o->flip) dfd_mask_flip_h(mask, im.w, im.h);
            loc_targets(mask, im.w, im.h, o->loc_grid, b->loc + (size_t)j * o->loc_grid * o->loc_grid);
            b->loc_ok[j] = mask != NULL || (o->loc_reals && b->y[j] < 0.5f);
        }
        free(mask);
        normalize(&im, o->norm, x + f * per_frame);
        dfd_image_free(&im);
    }
    float w = o->class_w ? o->class_w[(int)b->y[j]] : 1.0f;
    b->w[j] = b->ok[j] ? w : 0.0f;
    return DFD_OK;
}

/* ---- Handing out samples ------------------------------------------------------------------- */

static double cpu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Under mu: claims the next unmade sample (of the oldest batch being filled, else of a new
 * batch in a free slot). Returns 0 when there is none. */
static int claim(dfd_loader *l, slot **out, int *j) {
    for (long bi = l->next_take; bi < l->next_fill; bi++) {
        slot *sl = &l->slots[bi % l->k];
        if (sl->state == SLOT_FILLING && sl->index == bi && sl->claimed < sl->b.n) {
            *out = sl, *j = sl->claimed++;
            return 1;
        }
    }
    if (l->next_fill < l->n_batches && l->slots[l->next_fill % l->k].state == SLOT_EMPTY) {
        long bi = l->next_fill++;
        slot *sl = &l->slots[bi % l->k];
        long first = bi * l->o.batch;
        long n = (long)l->o.n - first;
        if (n > l->o.batch) n = l->o.batch;
        sl->state = SLOT_FILLING;
        sl->index = bi;
        sl->b.n = (int)n;
        sl->b.first = first;
        sl->claimed = 1, sl->done = 0;
        *out = sl, *j = 0;
        return 1;
    }
    return 0;
}

/* Under mu (released while working): makes sample j of sl's batch. */
static void make(dfd_loader *l, slot *sl, int j) {
    pthread_mutex_unlock(&l->mu);
    double c0 = cpu_now_s();
    int rc = fill_sample(l, &sl->b, j, sl->b.first + j);
    double c1 = cpu_now_s();
    pthread_mutex_lock(&l->mu);
    l->feed_cpu_s += c1 - c0;
    l->samples++;
    if (rc && !l->err_code) {
        l->err_code = rc;
        snprintf(l->err_msg, sizeof l->err_msg, "loader: out of memory while preparing batch %ld", sl->index);
    }
    if (++sl->done == sl->b.n) {
        sl->state = SLOT_READY;
        pthread_cond_broadcast(&l->cv);
    }
}

static void *worker(void *arg) {
    dfd_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        slot *sl;
        int j;
        while (!l->stop && !l->err_code && ((l->o.turns && !l->gate) || !claim(l, &sl, &j)))
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop || l->err_code) break;
        make(l, sl, j);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void free_slots(dfd_loader *l) {
    for (int i = 0; l->slots && i < l->k; i++) {
        dfd_batch *b = &l->slots[i].b;
        free(b->x), free(b->y), free(b->w), free(b->sample), free(b->item), free(b->ok), free(b->sbi), free(b->loc),
            free(b->loc_ok);
    }
    free(l->slots);
}

int dfd_loader_start(const dfd_loader_opts *o, dfd_loader **out, dfd_error *err) {
    *out = NULL;
    if (!o || !o->ds || (o->n && !o->order) || o->batch < 1 || o->size < 8 || o->size > 4096 ||
        (o->frames > 0 && (!o->seqs || !o->seq_items)) || o->frames > 1000 || o->workers < 0 || o->loc_grid < 0 ||
        o->loc_grid > 64 || (o->loc_grid > 0 && o->frames > 0))
        return dfd_fail(err, DFD_E_ARG, "loader: bad options (batch %d, size %d, frames %d, workers %d)",
                        o ? o->batch : 0, o ? o->size : 0, o ? o->frames : 0, o ? o->workers : 0);
    dfd_loader *l = calloc(1, sizeof *l);
    if (!l) return dfd_fail(err, DFD_E_NOMEM, "loader: no memory");
    l->o = *o;
    if (l->o.workers > 64) l->o.workers = 64;
    size_t per;
    if (dfd_mul3_size((size_t)o->size, (size_t)o->size, 3 * (size_t)(o->frames > 0 ? o->frames : 1), &per) ||
        dfd_mul_size(per, (size_t)o->batch, &(size_t){0})) {
        free(l);
        return dfd_fail(err, DFD_E_LIMIT, "loader: batch of %d x %d px is too large", o->batch, o->size);
    }
    l->sample_floats = per;
    l->n_batches = (long)((o->n + (size_t)o->batch - 1) / (size_t)o->batch);
    /* Running ahead, each worker may be on a batch of its own; taking turns, the caller's
     * batch and the next one are all that is ever being made. */
    l->k = l->o.turns ? 3 : l->o.workers + 2;
    l->slots = calloc((size_t)l->k, sizeof *l->slots);
    int rc = l->slots ? DFD_OK : DFD_E_NOMEM;
    for (int i = 0; i < l->k && !rc; i++) {
        dfd_batch *b = &l->slots[i].b;
        size_t B = (size_t)o->batch;
        b->x = dfd_malloc_array(B * per, sizeof(float));
        b->y = dfd_malloc_array(B, sizeof(float));
        b->w = dfd_malloc_array(B, sizeof(float));
        b->sample = dfd_malloc_array(B, sizeof(size_t));
        b->item = dfd_malloc_array(B, sizeof(size_t));
        b->ok = malloc(B);
        b->sbi = malloc(B);
        if (o->loc_grid > 0) {
            b->loc = dfd_malloc_array(B * (size_t)o->loc_grid * o->loc_grid, sizeof(float));
            b->loc_ok = calloc(B, 1);
        }
        if (!b->x || !b->y || !b->w || !b->sample || !b->item || !b->ok || !b->sbi ||
            (o->loc_grid > 0 && (!b->loc || !b->loc_ok)))
            rc = DFD_E_NOMEM;
    }
    if (rc) {
        free_slots(l);
        free(l);
        return dfd_fail(err, rc, "loader: no memory for %d batches of %d samples", o->workers + 2, o->batch);
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (l->o.workers > 0) {
        l->threads = calloc((size_t)l->o.workers, sizeof *l->threads);
        for (int i = 0; l->threads && i < l->o.workers; i++) {
            if (pthread_create(&l->threads[i], NULL, worker, l) != 0) break;
            l->n_threads++;
        }
        /* Fewer threads than asked only makes it slower: the caller makes what is left. */
        if (l->n_threads < l->o.workers)
            dfd_log(DFD_LOG_WARN, "loader: started %d of %d worker threads", l->n_threads, l->o.workers);
    }
    *out = l;
    return DFD_OK;
}

int dfd_loader_next(dfd_loader *l, const dfd_batch **b, dfd_error *err) {
    *b = NULL;
    double t0 = dfd_now_ms();
    pthread_mutex_lock(&l->mu);
    if (l->taken) { /* hand the previous batch's slot back to the workers */
        l->slots[(l->next_take - 1) % l->k].state = SLOT_EMPTY;
        l->taken = 0;
    }
    if (l->next_take >= l->n_batches) {
        pthread_mutex_unlock(&l->mu);
        return DFD_OK;
    }
    l->gate = 1;
    pthread_cond_broadcast(&l->cv);
    slot *sl = &l->slots[l->next_take % l->k];
    while (!l->err_code && !(sl->state == SLOT_READY && sl->index == l->next_take)) {
        /* Help make it (or the next one) rather than sit idle. Taking turns, the caller
         * stops once its own batch is all handed out, so that the step starts as soon as
         * that batch is done. */
        slot *cs;
        int j;
        int own_open = sl->index == l->next_take && sl->state == SLOT_FILLING && sl->claimed < sl->b.n;
        int may_claim = !l->o.turns || own_open || sl->state == SLOT_EMPTY;
        if (may_claim && claim(l, &cs, &j)) make(l, cs, j);
        else pthread_cond_wait(&l->cv, &l->mu);
    }
    if (l->o.turns) l->gate = 0;
    int rc = l->err_code;
    if (rc) {
        dfd_fail(err, rc, "%s", l->err_msg);
    } else {
        l->next_take++;
        l->taken = 1;
        *b = &sl->b;
    }
    l->wait_s += (dfd_now_ms() - t0) / 1000;
    pthread_mutex_unlock(&l->mu);
    return rc;
}

void dfd_loader_get_stats(const dfd_loader *l, dfd_loader_stats *s) {
    pthread_mutex_lock((pthread_mutex_t *)&l->mu);
    s->feed_cpu_s = l->feed_cpu_s;
    s->wait_s = l->wait_s;
    s->samples = l->samples;
    pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
}

long dfd_loader_failures(const dfd_loader *l) {
    pthread_mutex_lock((pthread_mutex_t *)&l->mu);
    long n = l->failures;
    pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
    return n;
}

void dfd_loader_free(dfd_loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_threads; i++) pthread_join(l->threads[i], NULL);
    free(l->threads);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free_slots(l);
    free(l);
}
