/* cache.c — decoded face crops, kept for the whole training run.
 *
 * Why our own: a training run reads every crop once per epoch, and decoding a JPEG and
 * resizing it to the model's input costs about as much CPU as all the augmentations put
 * together. On this project's 2-core machines every cycle the feed spends is taken from
 * the network's step, so each crop is decoded and resized once per run and kept here, as
 * the exact bytes the direct path (decode + resize) gives: cached and uncached runs make
 * the same batches. At 128 px a crop is 48 KB, so dfdc-faces + utkface-real +
 * synthetic-faces (27,000 crops) take 1.3 GB; at 160 px 1.9 GiB.
 *
 * Storage is one mapping of n_items x side x side x 3 bytes: anonymous memory by default
 * (pages are only touched, hence only resident, once a crop is stored), or a file given by
 * the caller for sets larger than RAM, which the kernel then pages in and out. Items past
 * max_bytes are simply not cached (the loader decodes those every time).
 *
 * Threads: any number of readers and writers at once. A slot goes EMPTY -> FILLING (one
 * writer wins the compare-and-swap) -> READY; readers use only READY slots (acquire/
 * release ordering), and a reader that finds a slot FILLING decodes for itself. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "train/train.h"

enum { SLOT_EMPTY = 0, SLOT_FILLING = 1, SLOT_READY = 2 };

struct dfd_img_cache {
    int side;
    size_t n;           /* items */
    size_t cached;      /* items that have a slot (the first `cached` items) */
    size_t slot_bytes;
    uint8_t *mem;       /* cached * slot_bytes, mmap'ed */
    size_t map_bytes;
    _Atomic unsigned char *state;
    atomic_size_t ready;
};

int dfd_img_cache_new(size_t n_items, int side, size_t max_bytes, const char *file, dfd_img_cache **out,
                      dfd_error *err) {
    *out = NULL;
    if (side < 8 || side > 4096) return dfd_fail(err, DFD_E_ARG, "cache: bad side %d", side);
    dfd_img_cache *c = calloc(1, sizeof *c);
    if (!c) return dfd_fail(err, DFD_E_NOMEM, "cache: no memory");
    c->side = side;
    c->n = n_items;
    c->slot_bytes = (size_t)side * (size_t)side * 3;
    size_t fit = c->slot_bytes ? max_bytes / c->slot_bytes : 0;
    c->cached = n_items < fit ? n_items : fit;
    c->state = calloc(n_items ? n_items : 1, sizeof *c->state);
    if (!c->state) {
        free(c);
        return dfd_fail(err, DFD_E_NOMEM, "cache: no memory for %zu item states", n_items);
    }
    atomic_init(&c->ready, 0);
    if (c->cached > 0) {
        c->map_bytes = c->cached * c->slot_bytes; /* <= max_bytes: no overflow */
        void *p;
        if (file) {
            int fd = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
            if (fd < 0) {
                int e = errno;
                free(c->state), free(c);
                return dfd_fail(err, DFD_E_IO, "cache: cannot create '%s': %s", file, strerror(e));
            }
            if (ftruncate(fd, (off_t)c->map_bytes) != 0) {
                int e = errno;
                size_t want = c->map_bytes;
                close(fd), unlink(file), free(c->state), free(c);
                return dfd_fail(err, DFD_E_IO, "cache: cannot size '%s' to %zu bytes: %s", file, want, strerror(e));
            }
            p = mmap(NULL, c->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            close(fd);
            unlink(file); /* the mapping keeps it alive; nothing is left behind after the run */
        } else {
            p = mmap(NULL, c->map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        }
        if (p == MAP_FAILED) {
            int e = errno;
            size_t want = c->map_bytes;
            free(c->state), free(c);
            return dfd_fail(err, DFD_E_NOMEM, "cache: cannot map %zu bytes: %s", want, strerror(e));
        }
        c->mem = p;
    }
    *out = c;
    return DFD_OK;
}

void dfd_img_cache_free(dfd_img_cache *c) {
    if (!c) return;
    if (c->mem) munmap(c->mem, c->map_bytes);
    free(c->state);
    free(c);
}

int dfd_img_cache_side(const dfd_img_cache *c) { return c->side; }

const uint8_t *dfd_img_cache_get(const dfd_img_cache *c, size_t item) {
    if (!c || item >= c->cached) return NULL;
    if (atomic_load_explicit(&c->state[item], memory_order_acquire) != SLOT_READY) return NULL;
    return c->mem + item * c->slot_bytes;
}

void dfd_img_cache_put(dfd_img_cache *c, size_t item, const dfd_image *im) {
    if (!c || item >= c->cached || im->w != c->side || im->h != c->side) return;
    unsigned char want = SLOT_EMPTY;
    if (!atomic_compare_exchange_strong_explicit(&c->state[item], &want, SLOT_FILLING, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return; /* stored already, or being stored by another thread */
    memcpy(c->mem + item * c->slot_bytes, im->rgb, c->slot_bytes);
    atomic_store_explicit(&c->state[item], SLOT_READY, memory_order_release);
    atomic_fetch_add_explicit(&c->ready, 1, memory_order_relaxed);
}

void dfd_img_cache_stats(const dfd_img_cache *c, size_t *ready, size_t *capacity, size_t *bytes) {
    size_t r = c ? atomic_load_explicit(&((dfd_img_cache *)c)->ready, memory_order_relaxed) : 0;
    if (ready) *ready = r;
    if (capacity) *capacity = c ? c->cached : 0;
    if (bytes) *bytes = c ? r * c->slot_bytes : 0;
}

/* ---- Filling it up front, on every core ------------------------------------------------ */

typedef struct fill_job {
    dfd_img_cache *c;
    const dfd_dataset *ds;
    const unsigned char *want; /* per item, NULL = all */
    size_t limit;              /* items with a slot */
    atomic_size_t next;
    atomic_long failures;
    atomic_int stop, nomem;
} fill_job;

int dfd_img_cache_load(const dfd_dataset *ds, size_t item, int side, dfd_image *out, dfd_error *err) {
    dfd_image im;
    int rc = dfd_image_load(ds->items[item].path, NULL, &im, NULL, err);
    if (rc) return rc;
    if (im.w == side && im.h == side) {
        *out = im;
        return DFD_OK;
    }
    rc = dfd_image_resize(&im, side, side, out, err);
    dfd_image_free(&im);
    return rc;
}

/* Claims items one at a time and stores each; every thread, the caller's included, runs
 * this. With fn (the caller), progress is reported every 256 items. */
static void fill_loop(fill_job *j, dfd_img_cache_progress_fn fn, void *user) {
    while (!atomic_load(&j->stop)) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->limit) break;
        if (!(j->want && !j->want[i]) && !dfd_img_cache_get(j->c, i)) {
            dfd_image im;
            dfd_error e;
            int rc = dfd_img_cache_load(j->ds, i, j->c->side, &im, &e);
            if (rc == DFD_E_NOMEM) {
                atomic_store(&j->nomem, 1);
                atomic_store(&j->stop, 1);
            } else if (rc) {
                atomic_fetch_add(&j->failures, 1); /* the loader meets it again, and says so */
            } else {
                dfd_img_cache_put(j->c, i, &im);
                dfd_image_free(&im);
            }
        }
        if (fn && i % 256 == 0 && fn(user, i, j->limit)) atomic_store(&j->stop, 1);
    }
}

static void *fill_worker(void *arg) {
    fill_loop(arg, NULL, NULL);
    return NULL;
}

int dfd_img_cache_fill(dfd_img_cache *c, const dfd_dataset *ds, const unsigned char *want, int threads,
                       dfd_img_cache_progress_fn fn, void *user, long *failures, dfd_error *err) {
    if (failures) *failures = 0;
    if (!c || !ds) return dfd_fail(err, DFD_E_ARG, "cache: nothing to fill");
    if (ds->n > c->n) return dfd_fail(err, DFD_E_ARG, "cache: %zu items for a cache of %zu", ds->n, c->n);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    fill_job j = {.c = c, .ds = ds, .want = want, .limit = c->cached < ds->n ? c->cached : ds->n};
    atomic_init(&j.next, 0);
    atomic_init(&j.failures, 0);
    atomic_init(&j.stop, 0);
    atomic_init(&j.nomem, 0);
    pthread_t th[64];
    int started = 0;
    for (int t = 0; t < threads - 1; t++) {
        if (pthread_create(&th[t], NULL, fill_worker, &j) != 0) break;
        started++;
    }
    fill_loop(&j, fn, user);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    if (failures) *failures = atomic_load(&j.failures);
    if (atomic_load(&j.nomem)) return dfd_fail(err, DFD_E_NOMEM, "cache: out of memory while decoding crops");
    if (atomic_load(&j.stop)) return dfd_fail(err, DFD_E_CANCELLED, "cache: filling stopped by the caller");
    if (fn) fn(user, j.limit, j.limit);
    return DFD_OK;
}
