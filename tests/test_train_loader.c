/* test_train_loader — the prefetching loader hands out batches in order, the last one
 * short; the samples (augmentation and self-blending included) are the same whatever the
 * number of worker threads; an unreadable file gives a sample with ok = 0 and weight 0
 * instead of an error; class weights and normalisation are applied. */
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

static pass run(const dfd_dataset *d, const size_t *order, int workers, const dfd_augment_opts *aug, float sbi) {
    dfd_sbi_opts so;
    dfd_sbi_opts_default(&so);
    const float cw[2] = {0.75f, 1.5f};
    dfd_loader_opts o = {.ds = d, .order = order, .n = N_ITEMS, .batch = 4, .size = 24, .norm = DFD_NORM_0_1,
                         .aug = aug, .sbi_fraction = sbi, .sbi = &so, .class_w = cw, .seed = 99, .workers = workers};
    const size_t per = 24 * 24 * 3;
    pass p = {0};
    p.x = calloc(N_ITEMS * per, sizeof(float));
    p.y = calloc(N_ITEMS, sizeof(float));
    p.w = calloc(N_ITEMS, sizeof(float));
    p.ok = calloc(N_ITEMS, 1);
    p.sbi = calloc(N_ITEMS, 1);
    dfd_loader *l;
    assert_int_equal(dfd_loader_start(&o, &l, NULL), DFD_OK);
    const dfd_batch *b;
    long at = 0;
    while (dfd_loader_next(l, &b, NULL) == DFD_OK && b) {
        assert_int_equal(b->first, at); /* in order */
        p.sizes[p.n_batches++] = b->n;
        memcpy(p.x + at * per, b->x, b->n * per * sizeof(float));
        memcpy(p.y + at, b->y, b->n * sizeof(float));
        memcpy(p.w + at, b->w, b->n * sizeof(float));
        memcpy(p.ok + at, b->ok, b->n);
        memcpy(p.sbi + at, b->sbi, b->n);
        for (int i = 0; i < b->n; i++) assert_int_equal(b->item[i], order[at + i]);
        at += b->n;
    }
    assert_int_equal(at, N_ITEMS);
    p.failures = dfd_loader_failures(l);
    dfd_loader_free(l);
    return p;
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batches_are_the_same_with_any_worker_count),
        cmocka_unit_test(stops_early_without_leaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
