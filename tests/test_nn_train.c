/* test_nn_train — the engine learns: a small conv net (conv, batch norm, relu, max pool,
 * dropout, dense) trained with Adam and with SGD+momentum on the reference backend
 * separates bright-left from bright-right images (loss falls, held-out accuracy > 95%);
 * the same seed gives bit-identical weights; frozen layers stay bit-identical; and the
 * pieces: BCE on logits equals the naive formula where that is stable and stays finite
 * at logits of +-100, its gradient matches finite differences; clipping bounds the global
 * gradient norm; Adam/AdamW/SGD update rules; learning-rate schedules; the RNG; Keras-like
 * initialisation (glorot bounds, orthogonal recurrent kernel, forget-gate bias 1). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

enum { IMG = 8, BATCH = 16 };

/* An 8x8 grey image whose left half (label 1) or right half (label 0) is brighter, in noise. */
static void make_sample(nn_rng *r, float *img, float *label) {
    int left = nn_rng_uniform(r) < 0.5f;
    for (int y = 0; y < IMG; y++)
        for (int x = 0; x < IMG; x++) {
            float bright = (x < IMG / 2) == left ? 0.6f : 0.0f;
            img[y * IMG + x] = bright + 0.8f * nn_rng_normal(r);
        }
    *label = (float)left;
}

static nn_graph *make_net(void) {
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "image", 3, (int[]){IMG, IMG, 1});
    nn_conv_attr a = {.kh = 3, .kw = 3, .padding = NN_PAD_SAME, .out_c = 4, .has_bias = 0};
    int c = nn_conv2d(g, "conv1", x, &a);
    int b = nn_batchnorm(g, "bn1", c, 1e-3f, 0.9f);
    int r = nn_activation(g, "relu1", b, NN_ACT_RELU);
    int p = nn_maxpool(g, "pool1", r, 2, 2, 2, 2, NN_PAD_VALID);
    int f = nn_reshape(g, "flatten", p, 1, (int[]){-1});
    int d = nn_dropout(g, "drop", f, 0.1f);
    int o = nn_dense(g, "logit", d, 1, 1, NN_ACT_NONE);
    nn_mark_output(g, o);
    assert_null(nn_graph_error(g));
    return g;
}

typedef struct run_result {
    double first_loss, last_loss, accuracy;
} run_result;

/* Trains g for `steps` batches with the given optimiser; returns loss at start / end and
 * held-out accuracy in inference mode. */
static run_result train(nn_graph *g, const nn_optim_opts *oo, int steps, uint64_t seed) {
    dfd_error e;
    nn_exec_opts eo;
    nn_exec_opts_default(&eo);
    eo.backend = NN_BACKEND_REF;
    eo.training = 1;
    eo.max_batch = BATCH;
    eo.seed = seed;
    nn_exec *ex;
    assert_int_equal(nn_exec_create(g, &eo, &ex, &e), DFD_OK);
    nn_optim *opt;
    assert_int_equal(nn_optim_create(g, oo, &opt, &e), DFD_OK);
    nn_rng r;
    nn_rng_seed(&r, seed);
    float x[BATCH * IMG * IMG], y[BATCH], dl[BATCH];
    run_result res = {0};
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < BATCH; i++) make_sample(&r, x + i * IMG * IMG, &y[i]);
        assert_int_equal(nn_forward(ex, x, BATCH, &e), DFD_OK);
        const float *logits = nn_output(ex, 0, NULL);
        float loss = nn_bce_logits(logits, y, NULL, BATCH, dl);
        assert_true(isfinite(loss));
        if (s < 10) res.first_loss += loss / 10;
        if (s >= steps - 10) res.last_loss += loss / 10;
        nn_graph_zero_grad(g);
        const float *d[1] = {dl};
        assert_int_equal(nn_backward(ex, d, &e), DFD_OK);
        nn_optim_step(opt, nn_lr_at(NN_LR_COSINE, oo->lr, s, steps, 10));
    }
    nn_optim_free(opt);
    nn_exec_free(ex);
    /* Held-out accuracy, inference mode (moving BN statistics, no dropout). */
    eo.training = 0;
    assert_int_equal(nn_exec_create(g, &eo, &ex, &e), DFD_OK);
    int correct = 0, total = 0;
    for (int s = 0; s < 16; s++) {
        for (int i = 0; i < BATCH; i++) make_sample(&r, x + i * IMG * IMG, &y[i]);
        assert_int_equal(nn_forward(ex, x, BATCH, &e), DFD_OK);
        const float *logits = nn_output(ex, 0, NULL);
        for (int i = 0; i < BATCH; i++, total++) correct += (logits[i] > 0) == (y[i] > 0.5f);
    }
    nn_exec_free(ex);
    res.accuracy = (double)correct / total;
    return res;
}

static void conv_net_learns_with_adam_and_sgd(void **state) {
    (void)state;
    for (int k = 0; k < 2; k++) {
        nn_graph *g = make_net();
        nn_graph_init_weights(g, 1);
        nn_optim_opts oo;
        nn_optim_opts_default(&oo, k == 0 ? NN_OPT_ADAM : NN_OPT_SGD);
        oo.lr = k == 0 ? 0.02f : 0.05f;
        oo.momentum = k == 0 ? 0.0f : 0.9f;
        run_result r = train(g, &oo, 150, 42);
        print_message("%s: loss %.3f -> %.3f, held-out accuracy %.3f\n", k == 0 ? "Adam" : "SGD+momentum",
                      r.first_loss, r.last_loss, r.accuracy);
        assert_true(r.last_loss < 0.5 * r.first_loss);
        assert_true(r.accuracy > 0.95);
        /* Training moved the batch-norm statistics off their initial 0 / 1. */
        assert_true(nn_graph_find_param(g, "bn1/moving_mean")->data[0] != 0.0f);
        nn_graph_free(g);
    }
}

static int graphs_equal(nn_graph *a, nn_graph *b) {
    for (int i = 0; i < nn_graph_param_count(a); i++) {
        nn_param *p = nn_graph_param(a, i), *q = nn_graph_param(b, i);
        if (memcmp(p->data, q->data, p->count * sizeof(float)) != 0) return 0;
    }
    return 1;
}

static void same_seed_gives_identical_weights(void **state) {
    (void)state;
    nn_graph *g[3];
    for (int k = 0; k < 3; k++) {
        g[k] = make_net();
        nn_graph_init_weights(g[k], k == 2 ? 8 : 7);
        nn_optim_opts oo;
        nn_optim_opts_default(&oo, NN_OPT_ADAMW);
        oo.lr = 0.01f;
        oo.clip_norm = 1.0f;
        train(g[k], &oo, 20, k == 2 ? 5 : 4);
    }
    assert_true(graphs_equal(g[0], g[1]));
    assert_false(graphs_equal(g[0], g[2]));
    for (int k = 0; k < 3; k++) nn_graph_free(g[k]);
}

static void frozen_layers_stay_bit_identical(void **state) {
    (void)state;
    nn_graph *g = make_net();
    nn_graph_init_weights(g, 3);
    nn_graph *ref = make_net();
    nn_graph_init_weights(ref, 3);
    assert_int_equal(nn_graph_set_trainable(g, "logit", 1), DFD_OK); /* only the classifier trains */
    nn_optim_opts oo;
    nn_optim_opts_default(&oo, NN_OPT_ADAM);
    oo.lr = 0.01f;
    oo.weight_decay = 0.01f; /* decay must not touch frozen weights either */
    train(g, &oo, 15, 9);
    const char *frozen[] = {"conv1/kernel", "bn1/gamma", "bn1/beta", "bn1/moving_mean", "bn1/moving_variance"};
    for (int i = 0; i < 5; i++) {
        nn_param *p = nn_graph_find_param(g, frozen[i]), *q = nn_graph_find_param(ref, frozen[i]);
        if (memcmp(p->data, q->data, p->count * sizeof(float)) != 0) fail_msg("frozen '%s' changed", frozen[i]);
    }
    nn_param *p = nn_graph_find_param(g, "logit/kernel"), *q = nn_graph_find_param(ref, "logit/kernel");
    assert_memory_not_equal(p->data, q->data, p->count * sizeof(float));
    nn_graph_free(g);
    nn_graph_free(ref);
}

static void bce_on_logits_is_stable(void **state) {
    (void)state;
    float z[9] = {-5, -1, -0.1f, 0, 0.3f, 1, 2.5f, 4, 5};
    float y[9] = {0, 1, 0.3f, 1, 0, 1, 0, 0.7f, 1};
    float w[9] = {1, 2, 0.5f, 1, 1, 3, 1, 1, 0.25f};
    float d[9];
    float L = nn_bce_logits(z, y, w, 9, d);
    double want = 0;
    for (int i = 0; i < 9; i++) {
        double s = 1 / (1 + exp(-z[i]));
        want += w[i] * -(y[i] * log(s) + (1 - y[i]) * log(1 - s));
    }
    want /= 9;
    assert_true(fabs(L - want) < 1e-5 * fabs(want) + 1e-6);
    /* The gradient is the loss's derivative (central differences). */
    for (int i = 0; i < 9; i++) {
        float zp[9], zm[9];
        memcpy(zp, z, sizeof z);
        memcpy(zm, z, sizeof z);
        zp[i] += 1e-2f;
        zm[i] -= 1e-2f;
        double fd = ((double)nn_bce_logits(zp, y, w, 9, NULL) - nn_bce_logits(zm, y, w, 9, NULL)) / 2e-2;
        assert_true(fabs(fd - d[i]) < 1e-3);
    }
    /* Extreme logits: the naive formula gives inf/NaN, this stays finite and right. */
    float zx[4] = {100, -100, 100, -100}, yx[4] = {0, 1, 1, 0};
    float dx[4];
    float Lx = nn_bce_logits(zx, yx, NULL, 4, dx);
    assert_true(isfinite(Lx));
    assert_true(fabs(Lx - (100 + 100 + 0 + 0) / 4.0) < 1e-3);
    for (int i = 0; i < 4; i++) assert_true(isfinite(dx[i]));
    assert_true(fabsf(dx[0] - 0.25f) < 1e-6f && fabsf(dx[1] + 0.25f) < 1e-6f);
    assert_true(fabsf(dx[2]) < 1e-6f && fabsf(dx[3]) < 1e-6f);
}

/* One dense layer whose grads the test sets by hand. */
static nn_graph *tiny(void) {
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "in", 1, (int[]){3});
    nn_mark_output(g, nn_dense(g, "d", x, 2, 1, NN_ACT_NONE)); /* 6 + 2 values */
    nn_graph_init_weights(g, 11);
    nn_exec_opts eo;
    nn_exec_opts_default(&eo);
    eo.backend = NN_BACKEND_REF;
    eo.training = 1;
    nn_exec *ex;
    assert_int_equal(nn_exec_create(g, &eo, &ex, NULL), DFD_OK); /* allocates the grads */
    nn_exec_free(ex);
    return g;
}

static void set_grads(nn_graph *g, float v) {
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        for (size_t k = 0; k < p->count; k++) p->grad[k] = v * (float)(k + 1) * (i ? -1.0f : 1.0f);
    }
}

static void snapshot(nn_graph *g, float *out) {
    for (int i = 0, o = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        memcpy(out + o, p->data, p->count * sizeof(float));
        o += (int)p->count;
    }
}

static void clipping_bounds_the_global_norm(void **state) {
    (void)state;
    nn_graph *g = tiny();
    nn_optim_opts oo;
    nn_optim_opts_default(&oo, NN_OPT_SGD);
    oo.clip_norm = 0.5f;
    nn_optim *opt;
    assert_int_equal(nn_optim_create(g, &oo, &opt, NULL), DFD_OK);
    set_grads(g, 1.0f); /* norm sqrt(1+4+..+36 + 1+4) = sqrt(96) */
    float before[8], after[8];
    snapshot(g, before);
    nn_optim_step(opt, 1.0f);
    snapshot(g, after);
    double n2 = 0;
    for (int k = 0; k < 8; k++) n2 += (double)(after[k] - before[k]) * (after[k] - before[k]);
    assert_true(fabs(sqrt(n2) - 0.5) < 1e-5);
    assert_true(fabs(nn_optim_grad_norm(opt) - sqrt(96.0)) < 1e-4);
    /* Below the bound nothing is rescaled: the step is exactly -lr * g. */
    set_grads(g, 0.01f);
    snapshot(g, before);
    nn_optim_step(opt, 1.0f);
    snapshot(g, after);
    assert_true(fabsf((before[0] - after[0]) - 0.01f) < 1e-6f);
    assert_true(fabsf((before[7] - after[7]) + 0.02f) < 1e-6f);
    nn_optim_free(opt);
    nn_graph_free(g);
}

static void update_rules(void **state) {
    (void)state;
    float before[8], after[8];
    /* Adam's first step moves every weight by lr against its gradient's sign. */
    nn_graph *g = tiny();
    nn_optim_opts oo;
    nn_optim_opts_default(&oo, NN_OPT_ADAM);
    nn_optim *opt;
    assert_int_equal(nn_optim_create(g, &oo, &opt, NULL), DFD_OK);
    set_grads(g, 0.3f);
    snapshot(g, before);
    nn_optim_step(opt, 0.01f);
    snapshot(g, after);
    for (int k = 0; k < 8; k++) assert_true(fabsf(fabsf(after[k] - before[k]) - 0.01f) < 1e-5f);
    assert_true(after[0] < before[0] && after[7] > before[7]);
    nn_optim_free(opt);
    /* AdamW with zero gradient: only the decoupled decay, w *= 1 - lr*wd. */
    nn_optim_opts_default(&oo, NN_OPT_ADAMW);
    oo.weight_decay = 0.1f;
    assert_int_equal(nn_optim_create(g, &oo, &opt, NULL), DFD_OK);
    set_grads(g, 0.0f);
    snapshot(g, before);
    nn_optim_step(opt, 0.5f);
    snapshot(g, after);
    for (int k = 0; k < 8; k++) assert_true(fabsf(after[k] - before[k] * 0.95f) < 1e-6f);
    nn_optim_free(opt);
    /* SGD with L2 weight decay and momentum: v1 = -lr (g + wd w); v2 = m v1 - lr (g + wd w'). */
    nn_optim_opts_default(&oo, NN_OPT_SGD);
    oo.momentum = 0.5f;
    oo.weight_decay = 0.1f;
    assert_int_equal(nn_optim_create(g, &oo, &opt, NULL), DFD_OK);
    set_grads(g, 1.0f);
    snapshot(g, before);
    nn_param *p = nn_graph_param(g, 0);
    double w0 = before[0], gr = p->grad[0];
    double v1 = -0.1 * (gr + 0.1 * w0), w1 = w0 + v1;
    double v2 = 0.5 * v1 - 0.1 * (gr + 0.1 * w1), w2 = w1 + v2;
    nn_optim_step(opt, 0.1f);
    nn_optim_step(opt, 0.1f);
    assert_true(fabs(p->data[0] - w2) < 1e-6);
    nn_optim_free(opt);
    /* Invalid options are refused. */
    oo.momentum = 1.5f;
    dfd_error e;
    assert_int_equal(nn_optim_create(g, &oo, &opt, &e), DFD_E_ARG);
    assert_null(opt);
    nn_graph_free(g);
}

static void lr_schedules(void **state) {
    (void)state;
    assert_true(fabsf(nn_lr_at(NN_LR_CONSTANT, 1, 0, 100, 10) - 0.1f) < 1e-7f); /* warm-up, linear */
    assert_true(fabsf(nn_lr_at(NN_LR_CONSTANT, 1, 4, 100, 10) - 0.5f) < 1e-7f);
    assert_true(fabsf(nn_lr_at(NN_LR_CONSTANT, 1, 9, 100, 10) - 1.0f) < 1e-7f);
    assert_true(fabsf(nn_lr_at(NN_LR_CONSTANT, 1, 50, 100, 10) - 1.0f) < 1e-7f);
    assert_true(fabsf(nn_lr_at(NN_LR_COSINE, 2, 10, 110, 10) - 2.0f) < 1e-6f);
    assert_true(fabsf(nn_lr_at(NN_LR_COSINE, 2, 60, 110, 10) - 1.0f) < 1e-6f);
    assert_true(fabsf(nn_lr_at(NN_LR_COSINE, 2, 110, 110, 10)) < 1e-6f);
    assert_true(fabsf(nn_lr_at(NN_LR_STEP, 1, 40, 100, 0) - 1.0f) < 1e-7f);
    assert_true(fabsf(nn_lr_at(NN_LR_STEP, 1, 60, 100, 0) - 0.1f) < 1e-7f);
    assert_true(fabsf(nn_lr_at(NN_LR_STEP, 1, 80, 100, 0) - 0.01f) < 1e-7f);
}

static void rng_is_deterministic_and_well_spread(void **state) {
    (void)state;
    nn_rng a, b;
    nn_rng_seed(&a, 123);
    nn_rng_seed(&b, 123);
    for (int i = 0; i < 100; i++) assert_true(nn_rng_next(&a) == nn_rng_next(&b));
    nn_rng_seed(&b, 124);
    assert_true(nn_rng_next(&a) != nn_rng_next(&b));
    double s = 0, s2 = 0, m = 0;
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        float u = nn_rng_uniform(&a);
        assert_true(u >= 0.0f && u < 1.0f);
        m += u;
        float z = nn_rng_normal(&a);
        s += z;
        s2 += (double)z * z;
    }
    assert_true(fabs(m / N - 0.5) < 0.01);
    assert_true(fabs(s / N) < 0.03);
    assert_true(fabs(s2 / N - 1.0) < 0.05);
}

static void initialisation_like_keras(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "in", 2, (int[]){3, 5});
    int l = nn_lstm(g, "lstm", x, 8, 0);
    int d = nn_dense(g, "d", l, 30, 1, NN_ACT_NONE);
    nn_mark_output(g, d);
    nn_graph_init_weights(g, 77);
    /* Dense kernel {8,30}: uniform in +-sqrt(6/(8+30)), variance limit^2/3. */
    nn_param *k = nn_graph_find_param(g, "d/kernel");
    double lim = sqrt(6.0 / 38), v = 0;
    for (size_t i = 0; i < k->count; i++) {
        assert_true(fabs(k->data[i]) <= lim);
        v += (double)k->data[i] * k->data[i];
    }
    v /= (double)k->count;
    assert_true(fabs(v - lim * lim / 3) < 0.25 * lim * lim / 3);
    for (int i = 0; i < 30; i++) assert_true(nn_graph_find_param(g, "d/bias")->data[i] == 0.0f);
    /* Recurrent kernel {8,32}: orthonormal rows. */
    nn_param *r = nn_graph_find_param(g, "lstm/recurrent_kernel");
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) {
            double dot = 0;
            for (int c = 0; c < 32; c++) dot += (double)r->data[i * 32 + c] * r->data[j * 32 + c];
            assert_true(fabs(dot - (i == j)) < 1e-5);
        }
    /* unit_forget_bias: ones for f, zeros elsewhere. */
    nn_param *b = nn_graph_find_param(g, "lstm/bias");
    for (int i = 0; i < 32; i++) assert_true(b->data[i] == (i >= 8 && i < 16 ? 1.0f : 0.0f));
    /* Same seed, same weights; another seed, others. */
    float keep = k->data[0];
    nn_graph_init_weights(g, 77);
    assert_true(k->data[0] == keep);
    nn_graph_init_weights(g, 78);
    assert_true(k->data[0] != keep);
    nn_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv_net_learns_with_adam_and_sgd),
        cmocka_unit_test(same_seed_gives_identical_weights),
        cmocka_unit_test(frozen_layers_stay_bit_identical),
        cmocka_unit_test(bce_on_logits_is_stable),
        cmocka_unit_test(clipping_bounds_the_global_norm),
        cmocka_unit_test(update_rules),
        cmocka_unit_test(lr_schedules),
        cmocka_unit_test(rng_is_deterministic_and_well_spread),
        cmocka_unit_test(initialisation_like_keras),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
