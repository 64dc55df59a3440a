/* test_train_loader — the prefetching loader hands out batches in order, the last one
 * short; the samples (augmentation and self-blending included) are the same whatever the
 * number of worker threads, whether the feed takes turns with the caller or runs ahead,
 * and whether crops come from the decoded-crop cache (filled up front, filled as they are
 * met, in memory or mapped from a file, as RGB or as 4:2:0) or are decoded every time; an
 * unreadable file
 * gives a sample with ok = 0 and weight 0 instead of an error; class weights and
 * normalisation are applied; --real-downscale softens the samples made from real faces
 * only; --paired gives a fake its real partner's transform; --sbi-loc's targets mark where
 * each self-blend is, and its loss has the gradient it claims. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "face/face.h"
#include "train/train.h"

#define N_ITEMS 21

static dfd_dataset *make(const char *dir) {
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_new(dir, &d, NULL), DFD_OK);
    for (int i = 0; i < N_ITEMS; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%02d.jpg", dir, i);
        if (i != 5) { /* item 5 is listed but never written */
            dfd_image im;
            assert_int_equal(dfd_image_alloc(&im, 40, 30, NULL), DFD_OK);
            for (int k = 0; k < 40 * 30 * 3; k++) im.rgb[k] = (uint8_t)(k * (i + 3) % 251);
            assert_int_equal(dfd_jpeg_write_file(&im, 90, p, NULL), DFD_OK);
            dfd_image_free(&im);
        }
        assert_int_equal(dfd_dataset_add(d, p, i % 3 == 0, NULL, NULL, -1, NULL, DFD_SPLIT_TRAIN, NULL), DFD_OK);
    }
    return d;
}

/* All batches of one pass, concatenated. */
typedef struct pass {
    float *x, *y, *w;
    unsigned char *ok, *sbi;
    int sizes[8], n_batches;
    long failures;
} pass;

typedef struct feed {
    int workers, turns;
    float soften; /* dfd_loader_opts.real_downscale */
    dfd_img_cache *cache;
    int size, batch;
    size_t n;
} feed;

static pass run_feed(const dfd_dataset *d, const size_t *order, feed f, const dfd_augment_opts *aug, float sbi) {
    dfd_sbi_opts so;
    dfd_sbi_opts_default(&so);
    const float cw[2] = {0.75f, 1.5f};
    size_t N = f.n ? f.n : N_ITEMS;
    int size = f.size ? f.size : 24;
    dfd_loader_opts o = {.ds = d, .order = order, .n = N, .batch = f.batch ? f.batch : 4, .size = size,
                         .norm = DFD_NORM_0_1, .aug = aug, .sbi_fraction = sbi, .sbi = &so, .class_w = cw, .seed = 99,
                         .workers = f.workers, .turns = f.turns, .cache = f.cache, .real_downscale = f.soften};
    const size_t per = (size_t)size * size * 3;
    pass p = {0};
    p.x = calloc(N * per, sizeof(float));
    p.y = calloc(N, sizeof(float));
    p.w = calloc(N, sizeof(float));
    p.ok = calloc(N, 1);
    p.sbi = calloc(N, 1);
    dfd_loader *l;
    assert_int_equal(dfd_loader_start(&o, &l, NULL), DFD_OK);
    const dfd_batch *b;
    long at = 0;
    while (dfd_loader_next(l, &b, NULL) == DFD_OK && b) {
        assert_int_equal(b->first, at); /* in order */
        if (p.n_batches < 8) p.sizes[p.n_batches] = b->n;
        p.n_batches++;
        memcpy(p.x + at * per, b->x, b->n * per * sizeof(float));
        memcpy(p.y + at, b->y, b->n * sizeof(float));
        memcpy(p.w + at, b->w, b->n * sizeof(float));
        memcpy(p.ok + at, b->ok, b->n);
        memcpy(p.sbi + at, b->sbi, b->n);
        for (int i = 0; i < b->n; i++) assert_int_equal(b->item[i], order[at + i]);
        at += b->n;
    }
    assert_int_equal(at, (long)N);
    p.failures = dfd_loader_failures(l);
    dfd_loader_stats st;
    dfd_loader_get_stats(l, &st);
    assert_int_equal(st.samples, (long)N); /* every sample made once */
    assert_true(st.feed_cpu_s >= 0 && st.wait_s >= 0);
    dfd_loader_free(l);
    return p;
}

static pass run(const dfd_dataset *d, const size_t *order, int workers, const dfd_augment_opts *aug, float sbi) {
    return run_feed(d, order, (feed){.workers = workers}, aug, sbi);
}

static void assert_same_pass(const pass *a, const pass *b, size_t n, int size) {
    assert_int_equal(a->n_batches, b->n_batches);
    assert_memory_equal(a->x, b->x, n * (size_t)size * size * 3 * sizeof(float));
    assert_memory_equal(a->y, b->y, n * sizeof(float));
    assert_memory_equal(a->w, b->w, n * sizeof(float));
    assert_memory_equal(a->ok, b->ok, n);
    assert_memory_equal(a->sbi, b->sbi, n);
}

static void free_pass(pass *p) { free(p->x), free(p->y), free(p->w), free(p->ok), free(p->sbi); }

static void batches_are_the_same_with_any_worker_count(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    dfd_dataset *d = make(dir);
    size_t order[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++) order[i] = (size_t)((i * 8) % N_ITEMS); /* a permutation */
    dfd_augment_opts aug;
    dfd_augment_opts_default(&aug);
    pass a = run(d, order, 1, &aug, 0.5f), b = run(d, order, 3, &aug, 0.5f);
    assert_int_equal(a.n_batches, 6); /* 21 = 5 x 4 + 1 */
    assert_int_equal(a.sizes[5], 1);
    assert_memory_equal(a.x, b.x, N_ITEMS * 24 * 24 * 3 * sizeof(float));
    assert_memory_equal(a.y, b.y, N_ITEMS * sizeof(float));
    assert_memory_equal(a.sbi, b.sbi, N_ITEMS);
    int n_sbi = 0;
    for (int k = 0; k < N_ITEMS; k++) {
        int item = (int)order[k], label = item % 3 == 0;
        if (item == 5) {
            assert_int_equal(a.ok[k], 0); /* unreadable: kept out of the loss */
            assert_float_equal(a.w[k], 0, 0);
            continue;
        }
        assert_int_equal(a.ok[k], 1);
        if (a.sbi[k]) {
            assert_int_equal(label, 0); /* only reals are self-blended ... */
            assert_float_equal(a.y[k], 1, 0); /* ... and then count as fakes */
            n_sbi++;
        } else assert_float_equal(a.y[k], label, 0);
        assert_float_equal(a.w[k], a.y[k] > 0.5f ? 1.5f : 0.75f, 0);
        for (size_t q = 0; q < 24 * 24 * 3; q++) {
            float v = a.x[k * 24 * 24 * 3 + q];
            assert_true(v >= 0 && v <= 1); /* DFD_NORM_0_1 */
        }
    }
    assert_true(n_sbi > 0);
    assert_int_equal(a.failures, 1);
    /* Without augmentation the samples are the resized images themselves. */
    pass c = run(d, order, 2, NULL, 0);
    dfd_image im, small;
    assert_int_equal(dfd_image_load(d->items[order[0]].path, NULL, &im, NULL, NULL), DFD_OK);
    assert_int_equal(dfd_image_resize(&im, 24, 24, &small, NULL), DFD_OK);
    for (int q = 0; q < 24 * 24 * 3; q++) assert_float_equal(c.x[q], small.rgb[q] / 255.0f, 1e-6);
    dfd_image_free(&im);
    dfd_image_free(&small);
    free_pass(&a);
    free_pass(&b);
    free_pass(&c);
    dfd_dataset_free(d);
    tu_rmtree(dir);
    free(dir);
}

static void stops_early_without_leaks(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    dfd_dataset *d = make(dir);
    size_t order[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++) order[i] = (size_t)i;
    dfd_loader_opts o = {.ds = d, .order = order, .n = N_ITEMS, .batch = 2, .size = 16, .norm = DFD_NORM_0_1,
                         .seed = 1, .workers = 2};
    dfd_loader *l;
    assert_int_equal(dfd_loader_start(&o, &l, NULL), DFD_OK);
    const dfd_batch *b;
    assert_int_equal(dfd_loader_next(l, &b, NULL), DFD_OK);
    assert_non_null(b);
    dfd_loader_free(l); /* workers still running ahead: must stop cleanly */
    o.batch = 0;
    assert_int_equal(dfd_loader_start(&o, &l, NULL), DFD_E_ARG);
    dfd_dataset_free(d);
    tu_rmtree(dir);
    free(dir);
}

/* Sum of |differences| between horizontal neighbours: what down-and-up scaling removes. */
static double detail(const float *x, int size) {
    double s = 0;
    for (int y = 0; y < size; y++)
        for (int xx = 1; xx < size; xx++)
            for (int c = 0; c < 3; c++) s += fabsf(x[(y * size + xx) * 3 + c] - x[(y * size + xx - 1) * 3 + c]);
    return s;
}

/* --real-downscale: every sample made from a real face (with share 1) loses detail, the
 * fakes are untouched, self-blends start from the softened face, and the samples stay the
 * same for a seed whatever the number of workers. */
static void real_downscale_softens_only_real_made_samples(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    dfd_dataset *d = make(dir);
    size_t order[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++) order[i] = (size_t)i;
    const int size = 24;
    const size_t per = (size_t)size * size * 3;
    pass plain = run_feed(d, order, (feed){.workers = 1}, NULL, 0);
    pass soft = run_feed(d, order, (feed){.workers = 1, .soften = 1}, NULL, 0);
    pass soft3 = run_feed(d, order, (feed){.workers = 3, .soften = 1}, NULL, 0);
    assert_same_pass(&soft, &soft3, N_ITEMS, size);
    int softened = 0;
    for (int k = 0; k < N_ITEMS; k++) {
        if (k == 5) continue; /* unreadable */
        if (k % 3 == 0) { /* a fake: as without the option */
            assert_memory_equal(plain.x + k * per, soft.x + k * per, per * sizeof(float));
            continue;
        }
        assert_float_equal(soft.y[k], 0, 0); /* still real */
        double a = detail(plain.x + k * per, size), b = detail(soft.x + k * per, size);
        assert_true(b < a);
        softened += b < 0.9 * a;
    }
    assert_true(softened >= 10); /* of 13 readable reals; a factor near 0.75 may keep much */
    /* With self-blending too: the same reals become the same self-blends as without the
     * option (the share draws come first), made from the softened face. */
    pass sb = run_feed(d, order, (feed){.workers = 2}, NULL, 0.5f);
    pass sbs = run_feed(d, order, (feed){.workers = 2, .soften = 1}, NULL, 0.5f);
    assert_memory_equal(sb.sbi, sbs.sbi, N_ITEMS);
    assert_memory_equal(sb.y, sbs.y, N_ITEMS * sizeof(float));
    free_pass(&plain), free_pass(&soft), free_pass(&soft3), free_pass(&sb), free_pass(&sbs);
    dfd_dataset_free(d);
    tu_rmtree(dir);
    free(dir);
}

/* One pass with where-blended targets on a G x G grid (dfd_loader_opts.loc_grid): x, y,
 * sbi, loc and loc_ok of every sample. */
typedef struct loc_pass {
    float *x, *y, *loc;
    unsigned char *ok, *sbi, *loc_ok;
} loc_pass;

static loc_pass run_loc(const dfd_dataset *d, const size_t *order, const dfd_augment_opts *aug, float sbi, int G, int reals) {
    dfd_sbi_opts so;
    dfd_sbi_opts_default(&so);
    const int size = 24;
    const size_t per = (size_t)size * size * 3, N = N_ITEMS;
    dfd_loader_opts o = {.ds = d, .order = order, .n = N, .batch = 4, .size = size, .norm = DFD_NORM_0_1, .aug = aug,
                         .sbi_fraction = sbi, .sbi = &so, .seed = 7, .workers = 2, .loc_grid = G,
                         .loc_reals = reals};
    loc_pass p = {calloc(N * per, sizeof(float)), calloc(N, sizeof(float)), calloc(N * 16, sizeof(float)),
                  calloc(N, 1), calloc(N, 1), calloc(N, 1)};
    dfd_loader *l;
    assert_int_equal(dfd_loader_start(&o, &l, NULL), DFD_OK);
    const dfd_batch *b;
    long at = 0;
    while (dfd_loader_next(l, &b, NULL) == DFD_OK && b) {
        memcpy(p.x + at * per, b->x, b->n * per * sizeof(float));
        memcpy(p.y + at, b->y, b->n * sizeof(float));
        memcpy(p.ok + at, b->ok, b->n);
        memcpy(p.sbi + at, b->sbi, b->n);
        if (G) {
            assert_non_null(b->loc);
            memcpy(p.loc + at * G * G, b->loc, (size_t)b->n * G * G * sizeof(float));
            memcpy(p.loc_ok + at, b->loc_ok, b->n);
        } else assert_null(b->loc);
        at += b->n;
    }
    dfd_loader_free(l);
    return p;
}

static void loc_free(loc_pass *p) { free(p->x), free(p->y), free(p->loc), free(p->ok), free(p->sbi), free(p->loc_ok); }

/* --sbi-loc's targets: asking for them changes no sample; a self-blend's cells are marked
 * exactly where its pixels changed (without geometric augmentation the target is the
 * blended crop against the plain one: a cell marked 0 is bit for bit the real face, a
 * changed cell is marked); reals are 0 everywhere, and taught only with loc_reals; other
 * fakes are never taught. */
static void loc_targets_mark_the_blend(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    dfd_dataset *d = make(dir);
    size_t order[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++) order[i] = (size_t)i;
    const int size = 24, G = 4, cs = size / G;
    const size_t per = (size_t)size * size * 3;
    dfd_augment_opts aug;
    dfd_augment_opts_default(&aug);
    aug.flip = aug.affine = 1;
    loc_pass with = run_loc(d, order, &aug, 0.6f, G, 1), without = run_loc(d, order, &aug, 0.6f, 0, 1);
    assert_memory_equal(with.x, without.x, N_ITEMS * per * sizeof(float));
    assert_memory_equal(with.sbi, without.sbi, N_ITEMS);
    loc_pass blended = run_loc(d, order, NULL, 0.6f, G, 1), plain = run_loc(d, order, NULL, 0, G, 1),
             only = run_loc(d, order, NULL, 0.6f, G, 0);
    int sbis = 0;
    double centre = 0, corners = 0;
    for (int k = 0; k < N_ITEMS; k++) {
        if (!blended.ok[k]) {
            assert_int_equal(blended.loc_ok[k], 0);
            continue;
        }
        const float *t = blended.loc + k * G * G;
        if (!blended.sbi[k]) {
            assert_int_equal(blended.loc_ok[k], blended.y[k] < 0.5f); /* a real: known; a fake: not */
            assert_int_equal(only.loc_ok[k], 0);                       /* without loc_reals, neither */
            if (blended.loc_ok[k])
                for (int c = 0; c < G * G; c++) assert_float_equal(t[c], 0, 0);
            continue;
        }
        sbis++;
        assert_int_equal(blended.loc_ok[k], 1);
        assert_int_equal(only.loc_ok[k], 1);
        assert_memory_equal(only.loc + k * G * G, t, G * G * sizeof(float));
        float peak = 0;
        for (int c = 0; c < G * G; c++) {
            assert_true(t[c] >= 0 && t[c] <= 1);
            peak = t[c] > peak ? t[c] : peak;
            double diff = 0;
            for (int y = (c / G) * cs; y < (c / G + 1) * cs; y++)
                for (int x = (c % G) * cs; x < (c % G + 1) * cs; x++)
                    for (int ch = 0; ch < 3; ch++) {
                        size_t i = (size_t)k * per + ((size_t)y * size + x) * 3 + ch;
                        diff += fabs(blended.x[i] - plain.x[i]);
                    }
            if (diff > 0) assert_true(t[c] > 0); /* every changed cell is marked */
        }
        assert_true(peak > 0.5f);
        /* the face's middle is blended more than the crop's corners */
        centre += (t[5] + t[6] + t[9] + t[10]) / 4, corners += (t[0] + t[3] + t[12] + t[15]) / 4;
    }
    assert_true(sbis >= 4);
    assert_true(centre / sbis > 0.9 && corners / sbis < 0.5 * centre / sbis);
    loc_free(&with), loc_free(&without), loc_free(&blended), loc_free(&plain), loc_free(&only);
    dfd_dataset_free(d);
    tu_rmtree(dir);
    free(dir);
}

/* --sbi-loc's loss: its gradient matches central finite differences, samples without a
 * target take no part (zero gradient, and changing them changes nothing), and the loss is
 * lower when the cells' scores agree with the targets. */
static double loc_loss_at(const float *F, int n, int cells, int C, const float *w, float bias, const float *t,
                          const unsigned char *valid, float *dF) {
    return dfd_loc_loss(F, n, cells, C, w, bias, t, valid, 0.7f, dF);
}

static void loc_loss_gradient_is_right(void **state) {
    (void)state;
    enum { n = 3, cells = 4, C = 5 };
    float F[n * cells * C], w[C], t[n * cells], dF[n * cells * C], scratch[n * cells * C];
    nn_rng r;
    nn_rng_seed(&r, 5);
    for (int i = 0; i < n * cells * C; i++) F[i] = (float)nn_rng_uniform(&r) * 2 - 1;
    for (int j = 0; j < C; j++) w[j] = (float)nn_rng_uniform(&r) * 2 - 1;
    for (int i = 0; i < n * cells; i++) t[i] = (float)nn_rng_uniform(&r);
    const unsigned char valid[n] = {1, 0, 1};
    double L = loc_loss_at(F, n, cells, C, w, 0.3f, t, valid, dF);
    assert_true(L > 0);
    for (int i = 0; i < n * cells * C; i++) {
        float keep = F[i];
        const float h = 1e-2f;
        F[i] = keep + h;
        double lp = loc_loss_at(F, n, cells, C, w, 0.3f, t, valid, scratch);
        F[i] = keep - h;
        double lm = loc_loss_at(F, n, cells, C, w, 0.3f, t, valid, scratch);
        F[i] = keep;
        double fd = (lp - lm) / (2 * h);
        if (!(fabs(fd - dF[i]) <= 1e-4 + 1e-2 * fabs(fd))) print_message("dF[%d]: %.7g, finite differences %.7g\n", i, dF[i], fd);
        assert_true(fabs(fd - dF[i]) <= 1e-4 + 1e-2 * fabs(fd));
        if (i / (cells * C) == 1) assert_float_equal(dF[i], 0, 0);
    }
    /* Scores that agree with the targets: each cell's z pushed towards its target's side. */
    float G2[n * cells * C];
    for (int s = 0; s < n; s++)
        for (int c = 0; c < cells; c++)
            for (int j = 0; j < C; j++) G2[(s * cells + c) * C + j] = (t[s * cells + c] > 0.5f ? 3.0f : -3.0f) * w[j];
    float tb[n * cells];
    for (int i = 0; i < n * cells; i++) tb[i] = t[i] > 0.5f ? 1.0f : 0.0f;
    assert_true(loc_loss_at(G2, n, cells, C, w, 0, tb, valid, scratch) < loc_loss_at(F, n, cells, C, w, 0, tb, valid, scratch));
    const unsigned char none[n] = {0, 0, 0};
    assert_float_equal(loc_loss_at(F, n, cells, C, w, 0.3f, t, none, dF), 0, 0);
}

/* --paired: a fake right after its real (with_prev) gets the real's random transform, so a
 * pair of identical pictures gives identical samples but for the label; unpaired, the same
 * two pictures are transformed differently. */
static void paired_fake_gets_its_reals_transform(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_new(dir, &d, NULL), DFD_OK);
    for (int i = 0; i < 8; i++) { /* items 2k (real) and 2k + 1 (fake) show the same picture */
        char p[512], g[16];
        snprintf(p, sizeof p, "%s/%02d.jpg", dir, i);
        snprintf(g, sizeof g, "g%d", i / 2);
        dfd_image im;
        assert_int_equal(dfd_image_alloc(&im, 40, 30, NULL), DFD_OK);
        for (int k = 0; k < 40 * 30 * 3; k++) im.rgb[k] = (uint8_t)(k * (i / 2 + 3) % 251);
        assert_int_equal(dfd_jpeg_write_file(&im, 90, p, NULL), DFD_OK);
        dfd_image_free(&im);
        assert_int_equal(dfd_dataset_add(d, p, i % 2, g, NULL, -1, NULL, DFD_SPLIT_TRAIN, NULL), DFD_OK);
    }
    dfd_augment_opts aug;
    dfd_augment_opts_default(&aug);
    aug.flip = 0.5f, aug.affine = 1, aug.color = 1, aug.noise = 1; /* a transform every time */
    dfd_sbi_opts so;
    dfd_sbi_opts_default(&so);
    const size_t order[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    const unsigned char with_prev[8] = {0, 1, 0, 1, 0, 1, 0, 1};
    const int size = 24;
    const size_t per = (size_t)size * size * 3;
    float *x[2];
    for (int paired = 0; paired < 2; paired++) {
        dfd_loader_opts o = {.ds = d, .order = order, .n = 8, .batch = 4, .size = size, .norm = DFD_NORM_0_1,
                             .aug = &aug, .sbi = &so, .seed = 3, .workers = 1, .with_prev = paired ? with_prev : NULL};
        x[paired] = calloc(8 * per, sizeof(float));
        dfd_loader *l;
        assert_int_equal(dfd_loader_start(&o, &l, NULL), DFD_OK);
        const dfd_batch *b;
        while (dfd_loader_next(l, &b, NULL) == DFD_OK && b) {
            memcpy(x[paired] + b->first * per, b->x, b->n * per * sizeof(float));
            for (int j = 0; j < b->n; j++) assert_float_equal(b->y[j], (float)((b->first + j) % 2), 0);
        }
        dfd_loader_free(l);
    }
    for (int k = 0; k < 8; k += 2) {
        /* The reals are the same either way; the fakes copy their real only when paired. */
        assert_memory_equal(x[0] + k * per, x[1] + k * per, per * sizeof(float));
        assert_memory_equal(x[1] + k * per, x[1] + (k + 1) * per, per * sizeof(float));
        assert_memory_not_equal(x[0] + k * per, x[0] + (k + 1) * per, per * sizeof(float));
    }
    free(x[0]), free(x[1]);
    dfd_dataset_free(d);
    tu_rmtree(dir);
    free(dir);
}

/* The cache holds exactly what decoding and resizing give, so the batches are the same
 * bit for bit: decoded every time and running ahead (the old loader), taking turns with the
 * caller alone or with helpers, with a cache filled up front or as the crops are met, in
 * memory or mapped from a file. */
static void cached_and_direct_paths_make_the_same_batches(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    dfd_dataset *d = make(dir);
    size_t order[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++) order[i] = (size_t)((i * 5 + 3) % N_ITEMS);
    dfd_augment_opts aug;
    dfd_augment_opts_default(&aug);
    pass direct = run_feed(d, order, (feed){.workers = 1}, &aug, 0.5f);

    dfd_img_cache *c;
    assert_int_equal(dfd_img_cache_new(d->n, 24, DFD_CACHE_RGB, (size_t)1 << 20, NULL, &c, NULL), DFD_OK);
    long bad = -1;
    assert_int_equal(dfd_img_cache_fill(c, d, NULL, 2, NULL, NULL, &bad, NULL), DFD_OK);
    size_t ready, cap, bytes;
    dfd_img_cache_stats(c, &ready, &cap, &bytes);
    assert_int_equal(bad, 1); /* item 5 was never written */
    assert_int_equal(ready, N_ITEMS - 1);
    assert_int_equal(cap, N_ITEMS);
    assert_int_equal(bytes, (N_ITEMS - 1) * 24 * 24 * 3);
    assert_false(dfd_img_cache_has(c, 5));
    pass turns0 = run_feed(d, order, (feed){.workers = 0, .turns = 1, .cache = c}, &aug, 0.5f);
    pass turns2 = run_feed(d, order, (feed){.workers = 2, .turns = 1, .cache = c}, &aug, 0.5f);
    assert_same_pass(&direct, &turns0, N_ITEMS, 24);
    assert_same_pass(&direct, &turns2, N_ITEMS, 24);
    assert_int_equal(turns0.failures, 1);
    dfd_img_cache_free(c);

    /* Filled as met, with room for only 7 crops (the rest decoded every time), from a file. */
    char file[600];
    snprintf(file, sizeof file, "%s/cache.bin", dir);
    assert_int_equal(dfd_img_cache_new(d->n, 24, DFD_CACHE_RGB, 7 * 24 * 24 * 3 + 100, file, &c, NULL), DFD_OK);
    pass lazy1 = run_feed(d, order, (feed){.workers = 1, .cache = c}, &aug, 0.5f);
    dfd_img_cache_stats(c, &ready, &cap, NULL);
    assert_int_equal(cap, 7);
    assert_int_equal(ready, 7 - 1); /* items 0-6 but the missing item 5 */
    pass lazy2 = run_feed(d, order, (feed){.workers = 3, .turns = 1, .cache = c}, &aug, 0.5f);
    assert_same_pass(&direct, &lazy1, N_ITEMS, 24);
    assert_same_pass(&direct, &lazy2, N_ITEMS, 24);
    dfd_img_cache_free(c);
    FILE *gone = fopen(file, "rb"); /* unlinked as soon as it was mapped */
    assert_null(gone);

    /* A cache of another side is ignored, not misread. */
    assert_int_equal(dfd_img_cache_new(d->n, 16, DFD_CACHE_RGB, (size_t)1 << 20, NULL, &c, NULL), DFD_OK);
    assert_int_equal(dfd_img_cache_fill(c, d, NULL, 1, NULL, NULL, NULL, NULL), DFD_OK);
    pass other = run_feed(d, order, (feed){.workers = 1, .turns = 1, .cache = c}, &aug, 0.5f);
    assert_same_pass(&direct, &other, N_ITEMS, 24);
    dfd_img_cache_free(c);

    free_pass(&direct), free_pass(&turns0), free_pass(&turns2), free_pass(&lazy1), free_pass(&lazy2),
        free_pass(&other);
    dfd_dataset_free(d);
    tu_rmtree(dir);
    free(dir);
}

/* The same on real crops at a model's input size, with the shipped recipe (augmentation,
 * 20% self-blended reals, JPEG re-compression), batch 32. */
static void cached_path_on_real_crops(void **state) {
    (void)state;
    TU_REQUIRE_SHARED_DATA();
    char *root = tu_shared_path("dfdc-faces");
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_AUTO, &d, NULL), DFD_OK);
    enum { N = 96 };
    size_t order[N];
    for (int i = 0; i < N; i++) order[i] = (size_t)i * (d->n / N);
    dfd_augment_opts aug;
    dfd_augment_opts_default(&aug);
    pass direct = run_feed(d, order, (feed){.workers = 1, .size = 128, .batch = 32, .n = N}, &aug, 0.2f);
    dfd_img_cache *c;
    /* slots are by item index; untouched ones cost no memory */
    assert_int_equal(dfd_img_cache_new(d->n, 128, DFD_CACHE_RGB, d->n * 128 * 128 * 3, NULL, &c, NULL), DFD_OK);
    unsigned char *want = calloc(d->n, 1);
    for (int i = 0; i < N; i++) want[order[i]] = 1;
    long bad = -1;
    assert_int_equal(dfd_img_cache_fill(c, d, want, 2, NULL, NULL, &bad, NULL), DFD_OK);
    assert_int_equal(bad, 0);
    size_t ready;
    dfd_img_cache_stats(c, &ready, NULL, NULL);
    assert_int_equal(ready, N);
    pass cached = run_feed(d, order, (feed){.workers = 1, .turns = 1, .cache = c, .size = 128, .batch = 32, .n = N},
                           &aug, 0.2f);
    assert_same_pass(&direct, &cached, N, 128);
    int n_sbi = 0;
    for (int i = 0; i < N; i++) n_sbi += cached.sbi[i];
    assert_true(n_sbi > 0);
    free_pass(&direct), free_pass(&cached);
    free(want);
    dfd_img_cache_free(c);
    dfd_dataset_free(d);
    free(root);
}

/* A 4:2:0 cache keeps half the bytes, and its samples are the same whether a crop was read
 * back from it, stored as it was met, or decoded every time because the cache was full:
 * the direct path makes the same round trip. They differ from the RGB samples, a little. */
static void yuv420_cache_is_half_the_size_and_consistent(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    dfd_dataset *d = make(dir);
    size_t order[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++) order[i] = (size_t)((i * 5 + 3) % N_ITEMS);
    dfd_augment_opts aug;
    dfd_augment_opts_default(&aug);
    pass rgb = run_feed(d, order, (feed){.workers = 1}, &aug, 0.5f);

    const size_t slot = 24 * 24 + 2 * 12 * 12;
    assert_int_equal(dfd_img_cache_slot_bytes(24, DFD_CACHE_YUV420), slot);
    assert_int_equal(dfd_img_cache_slot_bytes(23, DFD_CACHE_YUV420), 23 * 23 + 2 * 12 * 12);
    assert_int_equal(dfd_img_cache_slot_bytes(24, DFD_CACHE_RGB), 2 * slot);
    dfd_img_cache *full, *part, *none;
    assert_int_equal(dfd_img_cache_new(d->n, 24, DFD_CACHE_YUV420, (size_t)1 << 20, NULL, &full, NULL), DFD_OK);
    assert_int_equal(dfd_img_cache_fill(full, d, NULL, 2, NULL, NULL, NULL, NULL), DFD_OK);
    size_t ready, bytes;
    dfd_img_cache_stats(full, &ready, NULL, &bytes);
    assert_int_equal(ready, N_ITEMS - 1);
    assert_int_equal(bytes, (N_ITEMS - 1) * slot);
    assert_int_equal(dfd_img_cache_new(d->n, 24, DFD_CACHE_YUV420, 7 * slot, NULL, &part, NULL), DFD_OK);
    assert_int_equal(dfd_img_cache_new(d->n, 24, DFD_CACHE_YUV420, 0, NULL, &none, NULL), DFD_OK);
    assert_int_equal(dfd_img_cache_new(d->n, 24, DFD_CACHE_AUTO, 1 << 20, NULL, &(dfd_img_cache *){NULL}, NULL),
                     DFD_E_ARG);

    pass a = run_feed(d, order, (feed){.workers = 2, .turns = 1, .cache = full}, &aug, 0.5f);
    pass b = run_feed(d, order, (feed){.workers = 1, .cache = part}, &aug, 0.5f); /* stores as met */
    pass b2 = run_feed(d, order, (feed){.workers = 0, .turns = 1, .cache = part}, &aug, 0.5f);
    pass c = run_feed(d, order, (feed){.workers = 1, .cache = none}, &aug, 0.5f); /* never stores */
    dfd_img_cache_stats(part, &ready, NULL, NULL);
    assert_int_equal(ready, 7 - 1);
    assert_same_pass(&a, &b, N_ITEMS, 24);
    assert_same_pass(&a, &b2, N_ITEMS, 24);
    assert_same_pass(&a, &c, N_ITEMS, 24);

    /* Not the RGB samples (the format is in effect), but close to them. */
    const size_t nx = (size_t)N_ITEMS * 24 * 24 * 3;
    double diff = 0;
    size_t differ = 0;
    for (size_t i = 0; i < nx; i++) {
        double e = fabs((double)a.x[i] - rgb.x[i]);
        diff += e, differ += e > 0;
    }
    assert_true(differ > 0);
    assert_true(diff / (double)nx < 0.1); /* on [0, 1] inputs */

    free_pass(&rgb), free_pass(&a), free_pass(&b), free_pass(&b2), free_pass(&c);
    dfd_img_cache_free(full), dfd_img_cache_free(part), dfd_img_cache_free(none);
    dfd_dataset_free(d);
    tu_rmtree(dir);
    free(dir);
}

/* On real face crops at 160 px the 4:2:0 round trip keeps luma (what every blending and
 * compression trace lives in) to within one level on 99% of the pixels, and colour close:
 * PSNR over RGB >= 45 dB (53.7 dB when written). */
static void yuv420_round_trip_keeps_luma_on_real_crops(void **state) {
    (void)state;
    TU_REQUIRE_SHARED_DATA();
    char *root = tu_shared_path("dfdc-faces");
    dfd_dataset *d;
    assert_int_equal(dfd_dataset_open(root, DFD_LAYOUT_AUTO, &d, NULL), DFD_OK);
    dfd_img_cache *c;
    assert_int_equal(dfd_img_cache_new(d->n, 160, DFD_CACHE_YUV420, 0, NULL, &c, NULL), DFD_OK);
    double se = 0;
    size_t luma_off = 0, px = 0;
    for (size_t k = 0; k < 40; k++) {
        size_t item = k * (d->n / 40);
        dfd_image im, rt;
        assert_int_equal(dfd_img_cache_load(d, item, 160, &im, NULL), DFD_OK);
        assert_int_equal(dfd_image_alloc(&rt, 160, 160, NULL), DFD_OK);
        memcpy(rt.rgb, im.rgb, (size_t)160 * 160 * 3);
        assert_int_equal(dfd_img_cache_roundtrip(c, &rt, NULL), DFD_OK);
        for (size_t i = 0; i < (size_t)160 * 160; i++) {
            const uint8_t *p = im.rgb + 3 * i, *q = rt.rgb + 3 * i;
            double y0 = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2], y1 = 0.299 * q[0] + 0.587 * q[1] + 0.114 * q[2];
            luma_off += fabs(y0 - y1) > 1.0;
            px++;
            for (int ch = 0; ch < 3; ch++) se += ((double)p[ch] - q[ch]) * ((double)p[ch] - q[ch]);
        }
        dfd_image_free(&im), dfd_image_free(&rt);
    }
    double psnr = 10 * log10(255.0 * 255.0 / (se / (3.0 * (double)px)));
    printf("4:2:0 round trip at 160 px: PSNR %.1f dB, luma off by > 1 on %.3f%% of pixels\n", psnr,
           100.0 * (double)luma_off / (double)px);
    assert_true(psnr >= 45);
    assert_true((double)luma_off < 0.01 * (double)px);
    dfd_img_cache_free(c);
    dfd_dataset_free(d);
    free(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batches_are_the_same_with_any_worker_count),
        cmocka_unit_test(stops_early_without_leaks),
        cmocka_unit_test(real_downscale_softens_only_real_made_samples),
        cmocka_unit_test(paired_fake_gets_its_reals_transform),
        cmocka_unit_test(loc_targets_mark_the_blend),
        cmocka_unit_test(loc_loss_gradient_is_right),
        cmocka_unit_test(cached_and_direct_paths_make_the_same_batches),
        cmocka_unit_test(cached_path_on_real_crops),
        cmocka_unit_test(yuv420_cache_is_half_the_size_and_consistent),
        cmocka_unit_test(yuv420_round_trip_keeps_luma_on_real_crops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
