/* cache.c — decoded face crops, kept for the whole training run.
 *
 * Why our own: a training run reads every crop once per epoch, and decoding a JPEG and
 * resizing it to the model's input costs about as much CPU as all the augmentations put
 * together. On this project's 2-core machines every cycle the feed spends is taken from
 * the network's step, so each crop is decoded and resized once per run and kept here.
 *
 * Two storage formats:
 * - RGB: the exact bytes the direct path (decode + resize) gives, 3 bytes a pixel. At
 *   160 px dfdc-faces + utkface-real + synthetic-faces (27,000 crops) take 2.07 GB.
 * - YCbCr 4:2:0: full-resolution luma, chroma averaged over 2 x 2 pixels (JPEG's own
 *   BT.601 full-range transform), 1.5 bytes a pixel: the same set takes 1.04 GB. Every
 *   crop of those sets is a 4:2:0 JPEG already, so their colour never had more than half
 *   the resolution of their luma; what this loses is the chroma between half the cache's
 *   side and half the source's, where the source is larger than the cache's side. The
 *   direct path makes the same round trip (dfd_img_cache_load), so cached and uncached
 *   items still make the same samples.
 *
 * Storage is one mapping of n_items slots: anonymous memory by default (pages are only
 * touched, hence only resident, once a crop is stored), or a file given by the caller for
 * sets larger than RAM, which the kernel then pages in and out. Items past max_bytes are
 * simply not cached (the loader decodes those every time).
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
    dfd_cache_format format; /* RGB or YUV420, never AUTO */
    size_t n;           /* items */
    size_t cached;      /* items that have a slot (the first `cached` items) */
    size_t slot_bytes;
    uint8_t *mem;       /* cached * slot_bytes, mmap'ed */
    size_t map_bytes;
    _Atomic unsigned char *state;
    atomic_size_t ready;
};

size_t dfd_img_cache_slot_bytes(int side, dfd_cache_format format) {
    size_t s = (size_t)side, h = (s + 1) / 2;
    return format == DFD_CACHE_YUV420 ? s * s + 2 * h * h : s * s * 3;
}

const char *dfd_cache_format_name(dfd_cache_format f) {
    return f == DFD_CACHE_RGB ? "rgb" : f == DFD_CACHE_YUV420 ? "yuv420" : "auto";
}

/* ---- YCbCr 4:2:0 ---------------------------------------------------------------------- */

static uint8_t clamp_u8(float v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5f); }

/* Y plane (side x side), then Cb and Cr planes (half x half, half = ceil(side / 2)), each
 * chroma sample the mean of its (up to) 2 x 2 pixels. */
static void pack_420(const uint8_t *rgb, int side, uint8_t *dst) {
    int half = (side + 1) / 2;
    uint8_t *yp = dst, *cb = dst + (size_t)side * side, *cr = cb + (size_t)half * half;
    for (size_t i = 0; i < (size_t)side * side; i++) {
        const uint8_t *p = rgb + 3 * i;
        yp[i] = clamp_u8(0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]);
    }
    for (int by = 0; by < half; by++)
        for (int bx = 0; bx < half; bx++) {
            float r = 0, g = 0, b = 0;
            int n = 0;
            for (int y = 2 * by; y < 2 * by + 2 && y < side; y++)
                for (int x = 2 * bx; x < 2 * bx + 2 && x < side; x++) {
                    const uint8_t *p = rgb + 3 * ((size_t)y * side + x);
                    r += p[0], g += p[1], b += p[2], n++;
                }
            r /= (float)n, g /= (float)n, b /= (float)n;
            cb[by * half + bx] = clamp_u8(128.0f - 0.168736f * r - 0.331264f * g + 0.5f * b);
            cr[by * half + bx] = clamp_u8(128.0f + 0.5f * r - 0.418688f * g - 0.081312f * b);
        }
}

static uint8_t clamp_i(int v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }

/* Chroma upsampled as libjpeg's "fancy" upsampling does: a chroma sample sits at the
 * centre of its 2 x 2 block, so pixel 2k takes 3/4 of sample k and 1/4 of k-1, pixel 2k+1
 * 3/4 of k and 1/4 of k+1 (edges repeat), in both directions. In 16.16 fixed point, one
 * row of chroma at a time: this runs for every sample the feed makes, while the step waits. */
static void unpack_420(const uint8_t *src, int side, uint8_t *rgb) {
    int half = (side + 1) / 2;
    const uint8_t *yp = src, *cb = src + (size_t)side * side, *cr = cb + (size_t)half * half;
    int16_t vb[2048], vr[2048]; /* a chroma row, vertically interpolated: 4 x the value */
    for (int y = 0; y < side; y++) {
        int ky = y / 2, ny = y % 2 ? ky + 1 : ky - 1;
        if (ny < 0) ny = 0;
        if (ny >= half) ny = half - 1;
        const uint8_t *b0 = cb + (size_t)ky * half, *b1 = cb + (size_t)ny * half;
        const uint8_t *r0 = cr + (size_t)ky * half, *r1 = cr + (size_t)ny * half;
        for (int k = 0; k < half; k++) vb[k] = (int16_t)(3 * b0[k] + b1[k]), vr[k] = (int16_t)(3 * r0[k] + r1[k]);
        const uint8_t *yr = yp + (size_t)y * side;
        uint8_t *p = rgb + (size_t)y * side * 3;
        for (int x = 0; x < side; x++) {
            int kx = x / 2, nx = x % 2 ? kx + 1 : kx - 1;
            if (nx < 0) nx = 0;
            if (nx >= half) nx = half - 1;
            int u = 3 * vb[kx] + vb[nx] - 128 * 16, v = 3 * vr[kx] + vr[nx] - 128 * 16; /* 16 x (C - 128) */
            int l = (int)yr[x] * 65536 + 32768;
            /* 1.402 / 16, 0.344136 / 16, 0.714136 / 16, 1.772 / 16 in 16.16 */
            p[3 * x] = clamp_i((l + 5743 * v) >> 16);
            p[3 * x + 1] = clamp_i((l - 1410 * u - 2925 * v) >> 16);
            p[3 * x + 2] = clamp_i((l + 7258 * u) >> 16);
        }
    }
}

int dfd_img_cache_roundtrip(const dfd_img_cache *c, dfd_image *im, dfd_error *err) {
    if (!c || c->format != DFD_CACHE_YUV420 || im->w != c->side || im->h != c->side) return DFD_OK;
    uint8_t *planes = malloc(c->slot_bytes);
    if (!planes) return dfd_fail(err, DFD_E_NOMEM, "cache: no memory for a crop's planes");
    pack_420(im->rgb, c->side, planes);
    unpack_420(planes, c->side, im->rgb);
    free(planes);
    return DFD_OK;
}

int dfd_img_cache_new(size_t n_items, int side, dfd_cache_format format, size_t max_bytes, const char *file,
                      dfd_img_cache **out, dfd_error *err) {
    *out = NULL;
    if (side < 8 || side > 4096) return dfd_fail(err, DFD_E_ARG, "cache: bad side %d", side);
    if (format != DFD_CACHE_RGB && format != DFD_CACHE_YUV420)
        return dfd_fail(err, DFD_E_ARG, "cache: no storage format chosen");
    dfd_img_cache *c = calloc(1, sizeof *c);
    if (!c) return dfd_fail(err, DFD_E_NOMEM, "cache: no memory");
    c->side = side;
    c->format = format;
    c->n = n_items;
    c->slot_bytes = dfd_img_cache_slot_bytes(side, format);
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
dfd_cache_format dfd_img_cache_format(const dfd_img_cache *c) { return c->format; }

int dfd_img_cache_has(const dfd_img_cache *c, size_t item) {
    return c && item < c->cached && atomic_load_explicit(&c->state[item], memory_order_acquire) == SLOT_READY;
}

int dfd_img_cache_read(const dfd_img_cache *c, size_t item, dfd_image *out) {
    if (!dfd_img_cache_has(c, item) || out->w != c->side || out->h != c->side) return 0;
    const uint8_t *px = c->mem + item * c->slot_bytes;
    if (c->format == DFD_CACHE_YUV420) unpack_420(px, c->side, out->rgb);
    else memcpy(out->rgb, px, c->slot_bytes);
    return 1;
}

void dfd_img_cache_put(dfd_img_cache *c, size_t item, const dfd_image *im) {
    if (!c || item >= c->cached || im->w != c->side || im->h != c->side) return;
    unsigned char want = SLOT_EMPTY;
    if (!atomic_compare_exchange_strong_explicit(&c->state[item], &want, SLOT_FILLING, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return; /* stored already, or being stored by another thread */
    uint8_t *slot = c->mem + item * c->slot_bytes;
    if (c->format == DFD_CACHE_YUV420) pack_420(im->rgb, c->side, slot);
    else memcpy(slot, im->rgb, c->slot_bytes);
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
        if (!(j->want && !j->want[i]) && !dfd_img_cache_has(j->c, i)) {
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
