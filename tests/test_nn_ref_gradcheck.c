/* test_nn_ref_gradcheck — the reference backend's backward pass is the derivative of its
 * forward pass: for every op (strided/dilated/grouped/depthwise/separable conv with 'same'
 * padding on odd sizes, batch norm in training and inference mode, every activation incl.
 * PReLU, max/avg pooling, GAP, dense on vectors and sequences, dropout, add, concat, pad,
 * reshape, LSTM with backpropagation through time, time folding, bilinear resize), d(input)
 * and d(every trainable parameter) from nn_backward match central finite differences of
 * the loss L = sum_k w_k * output_k (random w), the forward running in fp32 and L summed
 * in double. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/nn.h"

#define EPS 1e-2
#define RTOL 2e-2
#define ATOL 2e-3
#define MAX_CHECK 120 /* elements checked per tensor (evenly spread) */

typedef struct gc {
    nn_graph *g;
    nn_exec *ex;
    int batch;
    float *x;
    size_t nx;
    float **w; /* per output */
    int failures;
} gc;

static double loss(gc *c) {
    c->ex->pass = 0; /* the same pass number every time: the same dropout mask */
    dfd_error e;
    assert_int_equal(nn_forward(c->ex, c->x, c->batch, &e), DFD_OK);
    double L = 0;
    for (int i = 0; i < nn_graph_output_count(c->g); i++) {
        size_t n;
        const float *y = nn_output(c->ex, i, &n);
        for (size_t k = 0; k < n; k++) L += (double)c->w[i][k] * y[k];
    }
    return L;
}

static void compare(gc *c, const char *what, const char *tensor, size_t k, double analytic, double numeric) {
    double diff = fabs(analytic - numeric), scale = fmax(fabs(analytic), fabs(numeric));
    if (diff > ATOL + RTOL * scale) {
        if (c->failures < 10)
            print_error("%s: d/d %s[%zu]: backward %.6g, finite difference %.6g\n", what, tensor, k, analytic, numeric);
        c->failures++;
    }
}

/* Checks one tensor `v` of n values whose analytic gradient is `ga`. */
static void check_tensor(gc *c, const char *what, const char *tensor, float *v, size_t n, const float *ga) {
    size_t step = n > MAX_CHECK ? n / MAX_CHECK : 1;
    for (size_t k = 0; k < n; k += step) {
        float keep = v[k];
        v[k] = (float)(keep + EPS);
        double lp = loss(c);
        v[k] = (float)(keep - EPS);
        double lm = loss(c);
        v[k] = keep;
        /* The step actually taken in fp32, not the nominal one. */
        double h = (double)(float)(keep + EPS) - (double)(float)(keep - EPS);
        compare(c, what, tensor, k, ga[k], (lp - lm) / h);
    }
}

/* Randomises trainable parameters (so that biases, gammas, alphas are not trivial) and
 * gives statistics plausible values; fills the input uniformly in [lo, hi]. */
static void randomise(nn_graph *g, nn_rng *r) {
    nn_graph_init_weights(g, nn_rng_next(r));
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        int is_var = strstr(p->name, "moving_variance") != NULL;
        for (size_t k = 0; k < p->count; k++) {
            if (is_var)
                p->data[k] = 0.5f + nn_rng_uniform(r);
            else
                p->data[k] += 0.3f * (2 * nn_rng_uniform(r) - 1);
        }
    }
}

/* Runs the whole check on a built graph; `x` (batch items) is copied. */
static void gradcheck(const char *what, nn_graph *g, int batch, const float *x) {
    assert_null(nn_graph_error(g));
    gc c = {.g = g, .batch = batch, .failures = 0};
    nn_exec_opts o;
    nn_exec_opts_default(&o);
    o.backend = NN_BACKEND_REF;
    o.training = 1;
    o.max_batch = batch;
    o.seed = 7;
    dfd_error e;
    assert_int_equal(nn_exec_create(g, &o, &c.ex, &e), DFD_OK);
    const nn_node *in = nn_graph_node(g, nn_graph_input(g));
    c.nx = (size_t)batch * nn_node_size(in);
    c.x = malloc(c.nx * sizeof(float));
    memcpy(c.x, x, c.nx * sizeof(float));
    nn_rng r;
    nn_rng_seed(&r, 99);
    int no = nn_graph_output_count(g);
    c.w = calloc((size_t)no, sizeof *c.w);
    for (int i = 0; i < no; i++) {
        const nn_node *on = nn_graph_node(g, nn_graph_output(g, i));
        size_t n = (size_t)batch * nn_node_size(on);
        c.w[i] = malloc(n * sizeof(float));
        for (size_t k = 0; k < n; k++) c.w[i][k] = nn_rng_normal(&r);
    }
    /* Analytic gradients. */
    nn_graph_zero_grad(g);
    loss(&c);
    assert_int_equal(nn_backward(c.ex, (const float *const *)c.w, &e), DFD_OK);
    float *gx = malloc(c.nx * sizeof(float));
    memcpy(gx, nn_input_grad(c.ex), c.nx * sizeof(float));
    int np = nn_graph_param_count(g);
    float **gp = calloc((size_t)np, sizeof *gp);
    int checked = 0;
    for (int i = 0; i < np; i++) {
        nn_param *p = nn_graph_param(g, i);
        if (!p->trainable) continue;
        gp[i] = malloc(p->count * sizeof(float));
        memcpy(gp[i], p->grad, p->count * sizeof(float));
    }
    /* Finite differences. */
    check_tensor(&c, what, "input", c.x, c.nx, gx);
    for (int i = 0; i < np; i++) {
        nn_param *p = nn_graph_param(g, i);
        if (!gp[i]) continue;
        check_tensor(&c, what, p->name, p->data, p->count, gp[i]);
        checked++;
    }
    if (c.failures) print_error("%s: %d gradient mismatches\n", what, c.failures);
    assert_int_equal(c.failures, 0);
    for (int i = 0; i < np; i++) free(gp[i]);
    free(gp);
    free(gx);
    for (int i = 0; i < no; i++) free(c.w[i]);
    free(c.w);
    free(c.x);
    nn_exec_free(c.ex);
    (void)checked;
}

static float *rand_input(size_t n, float lo, float hi, uint64_t seed) {
    nn_rng r;
    nn_rng_seed(&r, seed);
    float *x = malloc(n * sizeof(float));
    for (size_t k = 0; k < n; k++) x[k] = lo + (hi - lo) * nn_rng_uniform(&r);
    return x;
}

/* Values at least `gap` away from 0 (so no kink of relu/prelu lies within EPS). */
static float *rand_away_from_zero(size_t n, float gap, uint64_t seed) {
    float *x = rand_input(n, -1.5f, 1.5f, seed);
    for (size_t k = 0; k < n; k++)
        if (fabsf(x[k]) < gap) x[k] = x[k] < 0 ? -gap - x[k] : gap + x[k];
    return x;
}

/* An input in [-1,1] for which every output of g is at least `margin` away from 0. Used
 * where g ends in a fused PReLU (alpha in [-1,1]): then every pre-activation is that far
 * from the kink and a finite-difference step cannot cross it. */
static float *input_clear_of_kink(nn_graph *g, int batch, size_t n, float margin) {
    /* Slopes in [0.25, 0.5]: negative outputs are not squashed to near 0 by a tiny alpha. */
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        if (strstr(p->name, "/alpha"))
            for (size_t k = 0; k < p->count; k++) p->data[k] = 0.25f + 0.25f * (float)k / (float)p->count;
    }
    nn_exec_opts o;
    nn_exec_opts_default(&o);
    o.backend = NN_BACKEND_REF;
    o.max_batch = batch;
    nn_exec *ex;
    dfd_error e;
    assert_int_equal(nn_exec_create(g, &o, &ex, &e), DFD_OK);
    for (uint64_t seed = 100; seed < 2100; seed++) {
        float *x = rand_input(n, -1, 1, seed);
        assert_int_equal(nn_forward(ex, x, batch, &e), DFD_OK);
        size_t ny;
        const float *y = nn_output(ex, 0, &ny);
        float m = INFINITY;
        for (size_t k = 0; k < ny; k++) m = fminf(m, fabsf(y[k]));
        if (m > margin) {
            nn_exec_free(ex);
            return x;
        }
        free(x);
    }
    nn_exec_free(ex);
    fail_msg("no input keeps the outputs %g away from the kink", (double)margin);
    return NULL;
}

static size_t prod(int n, const int *s) {
    size_t p = 1;
    for (int i = 0; i < n; i++) p *= (size_t)s[i];
    return p;
}

/* One conv (any attributes) on an input of shape s, then run the check. */
static void conv_case(const char *what, const int *s, nn_conv_attr a, int batch) {
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "in", 3, s);
    int y = nn_conv2d(g, "conv", x, &a);
    nn_mark_output(g, y);
    nn_rng r;
    nn_rng_seed(&r, 1);
    randomise(g, &r);
    float *in = a.act == NN_ACT_PRELU ? input_clear_of_kink(g, batch, (size_t)batch * prod(3, s), 0.015f)
                                      : rand_input((size_t)batch * prod(3, s), -1, 1, 2);
    gradcheck(what, g, batch, in);
    free(in);
    nn_graph_free(g);
}

static void conv_same_odd_sizes(void **state) {
    (void)state;
    conv_case("conv 3x3 same, 5x7 input", (int[]){5, 7, 3},
              (nn_conv_attr){.kh = 3, .kw = 3, .padding = NN_PAD_SAME, .out_c = 4, .has_bias = 1, .act = NN_ACT_TANH}, 2);
    /* An even kernel width with stride 3 makes TF put the extra pad column on the right. */
    conv_case("conv 3x2 stride 2x3 same, 7x5 input", (int[]){7, 5, 2},
              (nn_conv_attr){.kh = 3, .kw = 2, .sh = 2, .sw = 3, .padding = NN_PAD_SAME, .out_c = 3, .has_bias = 1,
                             .act = NN_ACT_SWISH},
              2);
    conv_case("conv 4x4 stride 2 valid, 9x9", (int[]){9, 9, 2},
              (nn_conv_attr){.kh = 4, .kw = 4, .sh = 2, .sw = 2, .padding = NN_PAD_VALID, .out_c = 2,
                             .act = NN_ACT_SIGMOID},
              1);
}

static void conv_dilated_grouped_explicit(void **state) {
    (void)state;
    conv_case("conv 3x3 dilation 2 same, 7x6", (int[]){7, 6, 2},
              (nn_conv_attr){.kh = 3, .kw = 3, .dh = 2, .dw = 2, .padding = NN_PAD_SAME, .out_c = 3, .has_bias = 1}, 2);
    conv_case("conv grouped (2 groups) 3x3 valid", (int[]){5, 5, 4},
              (nn_conv_attr){.kh = 3, .kw = 3, .padding = NN_PAD_VALID, .groups = 2, .out_c = 6, .has_bias = 1,
                             .act = NN_ACT_TANH},
              2);
    conv_case("conv explicit padding 1,2,0,1 with fused PReLU", (int[]){4, 5, 2},
              (nn_conv_attr){.kh = 3, .kw = 2, .sh = 1, .sw = 2, .padding = NN_PAD_EXPLICIT, .pad_t = 1, .pad_b = 2,
                             .pad_l = 0, .pad_r = 1, .out_c = 3, .has_bias = 1, .act = NN_ACT_PRELU},
              2);
}

static void depthwise_and_separable(void **state) {
    (void)state;
    nn_rng r;
    nn_rng_seed(&r, 3);
    {
        nn_graph *g = nn_graph_new();
        int x = nn_input(g, "in", 3, (int[]){6, 5, 3});
        int d = nn_depthwise2d(g, "dw", x, 3, 3, 2, 2, NN_PAD_SAME, 1, NN_ACT_SIGMOID);
        nn_mark_output(g, d);
        randomise(g, &r);
        float *in = rand_input(2 * 90, -1, 1, 4);
        gradcheck("depthwise 3x3 stride 2 same", g, 2, in);
        free(in);
        nn_graph_free(g);
    }
    {
        nn_graph *g = nn_graph_new();
        int x = nn_input(g, "in", 3, (int[]){5, 5, 3});
        int s = nn_separable2d(g, "sep", x, 4, 3, 3, 1, 1, NN_PAD_SAME, 1, NN_ACT_SWISH);
        nn_mark_output(g, s);
        randomise(g, &r);
        float *in = rand_input(2 * 75, -1, 1, 5);
        gradcheck("separable 3x3 same", g, 2, in);
        free(in);
        nn_graph_free(g);
    }
}

static void batchnorm_training_and_inference(void **state) {
    (void)state;
    for (int frozen = 0; frozen <= 1; frozen++) {
        nn_graph *g = nn_graph_new();
        int x = nn_input(g, "in", 3, (int[]){3, 2, 3});
        nn_conv_attr a = {.kh = 1, .kw = 1, .out_c = 3, .has_bias = 1};
        int c = nn_conv2d(g, "conv", x, &a); /* so that the BN's input gradient reaches parameters too */
        int b = nn_batchnorm(g, "bn", c, 1e-3f, 0.9f);
        int t = nn_activation(g, "act", b, NN_ACT_TANH);
        nn_mark_output(g, t);
        nn_graph_freeze_bn_stats(g, frozen);
        nn_rng r;
        nn_rng_seed(&r, 6);
        randomise(g, &r);
        float *in = rand_input(4 * 18, -1, 1, 7);
        gradcheck(frozen ? "batchnorm, frozen statistics" : "batchnorm, training (batch statistics)", g, 4, in);
        free(in);
        nn_graph_free(g);
    }
}

static void activations(void **state) {
    (void)state;
    const nn_act acts[] = {NN_ACT_RELU, NN_ACT_RELU6, NN_ACT_SIGMOID, NN_ACT_SWISH, NN_ACT_TANH, NN_ACT_PRELU};
    const char *names[] = {"relu", "relu6", "sigmoid", "swish", "tanh", "prelu"};
    for (int i = 0; i < 6; i++) {
        nn_graph *g = nn_graph_new();
        int x = nn_input(g, "in", 3, (int[]){2, 3, 4});
        int y = nn_activation(g, "act", x, acts[i]);
        nn_mark_output(g, y);
        nn_rng r;
        nn_rng_seed(&r, 8);
        randomise(g, &r);
        /* relu6's upper kink: values up to 7 straddle 6 but stay 0.05 away from it. */
        float *in = rand_away_from_zero(2 * 24, 0.05f, 9);
        if (acts[i] == NN_ACT_RELU6)
            for (int k = 0; k < 48; k += 3) in[k] = k % 2 ? 6.5f + 0.01f * (float)k / 48 : 5.5f;
        char what[64];
        snprintf(what, sizeof what, "activation %s", names[i]);
        gradcheck(what, g, 2, in);
        free(in);
        nn_graph_free(g);
    }
}

static void pooling(void **state) {
    (void)state;
    for (int is_max = 0; is_max <= 1; is_max++)
        for (int pad = 0; pad <= 1; pad++) {
            nn_graph *g = nn_graph_new();
            int x = nn_input(g, "in", 3, (int[]){5, 7, 2});
            int y = is_max ? nn_maxpool(g, "pool", x, 3, 2, 2, 2, pad ? NN_PAD_SAME : NN_PAD_VALID)
                           : nn_avgpool(g, "pool", x, 3, 2, 2, 2, pad ? NN_PAD_SAME : NN_PAD_VALID);
            nn_mark_output(g, y);
            /* Distinct values 0.05 apart in a shuffled order: a step of EPS never changes
             * which value is the maximum of a window. */
            size_t n = 2 * 70;
            float *in = malloc(n * sizeof(float));
            nn_rng r;
            nn_rng_seed(&r, 10);
            for (size_t k = 0; k < n; k++) in[k] = 0.05f * (float)k - 3.0f;
            for (size_t k = n - 1; k > 0; k--) {
                size_t j = (size_t)(nn_rng_next(&r) % (k + 1));
                float t = in[k];
                in[k] = in[j];
                in[j] = t;
            }
            char what[64];
            snprintf(what, sizeof what, "%s pool 3x2 stride 2 %s on 5x7", is_max ? "max" : "average",
                     pad ? "same" : "valid");
            gradcheck(what, g, 2, in);
            free(in);
            nn_graph_free(g);
        }
}

static void gap_dense_dropout(void **state) {
    (void)state;
    nn_rng r;
    nn_rng_seed(&r, 11);
    {
        nn_graph *g = nn_graph_new();
        int x = nn_input(g, "in", 3, (int[]){3, 3, 4});
        int p = nn_gap(g, "gap", x);
        int d = nn_dropout(g, "drop", p, 0.4f);
        int y = nn_dense(g, "fc", d, 3, 1, NN_ACT_SIGMOID);
        int z = nn_dense(g, "fc2", y, 2, 0, NN_ACT_NONE);
        nn_mark_output(g, z);
        randomise(g, &r);
        float *in = rand_input(3 * 36, -1, 1, 12);
        gradcheck("gap + dropout(training) + dense", g, 3, in);
        free(in);
        nn_graph_free(g);
    }
    {
        nn_graph *g = nn_graph_new();
        int x = nn_input(g, "in", 2, (int[]){4, 3});
        int y = nn_dense(g, "fc", x, 5, 1, NN_ACT_PRELU); /* per time step */
        nn_mark_output(g, y);
        randomise(g, &r);
        float *in = input_clear_of_kink(g, 2, 2 * 12, 0.015f);
        gradcheck("dense per step of a sequence, fused PReLU", g, 2, in);
        free(in);
        nn_graph_free(g);
    }
}

static void add_concat_pad_reshape(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "in", 3, (int[]){3, 3, 2});
    nn_conv_attr a = {.kh = 3, .kw = 3, .padding = NN_PAD_SAME, .out_c = 2, .has_bias = 1, .act = NN_ACT_TANH};
    int c1 = nn_conv2d(g, "c1", x, &a);
    int c2 = nn_conv2d(g, "c2", c1, &a);
    int s = nn_add(g, "add", c1, c2); /* c1 feeds two nodes: gradients must accumulate */
    int cat = nn_concat(g, "cat", 3, (int[]){x, s, c2});
    int p = nn_pad(g, "pad", cat, 1, 0, 2, 1, 2);
    int rs = nn_reshape(g, "flat", p, 1, (int[]){-1});
    int y = nn_dense(g, "fc", rs, 2, 1, NN_ACT_NONE);
    nn_mark_output(g, y);
    nn_mark_output(g, c1); /* a second output, also consumed inside */
    nn_rng r;
    nn_rng_seed(&r, 14);
    randomise(g, &r);
    float *in = rand_input(2 * 18, -1, 1, 15);
    gradcheck("add + concat + pad + reshape, two outputs", g, 2, in);
    free(in);
    nn_graph_free(g);
}

static void lstm_bptt(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "in", 2, (int[]){4, 3});
    int l1 = nn_lstm(g, "lstm1", x, 3, 1);
    int l2 = nn_lstm(g, "lstm2", l1, 2, 0);
    nn_mark_output(g, l2);
    nn_mark_output(g, l1);
    nn_rng r;
    nn_rng_seed(&r, 16);
    randomise(g, &r);
    float *in = rand_input(2 * 12, -1, 1, 17);
    gradcheck("LSTM (sequences) -> LSTM (last)", g, 2, in);
    free(in);
    nn_graph_free(g);
}

static void time_folding(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "clip", 4, (int[]){3, 4, 4, 2});
    int f = nn_fold_time(g, x);
    nn_conv_attr a = {.kh = 3, .kw = 3, .sh = 2, .sw = 2, .padding = NN_PAD_SAME, .out_c = 3, .has_bias = 1,
                      .act = NN_ACT_SWISH};
    int c = nn_conv2d(g, "enc", f, &a);
    int p = nn_gap(g, "gap", c);
    int u = nn_unfold_time(g, p);
    int l = nn_lstm(g, "lstm", u, 2, 0);
    int y = nn_dense(g, "out", l, 1, 1, NN_ACT_NONE);
    nn_mark_output(g, y);
    nn_rng r;
    nn_rng_seed(&r, 18);
    randomise(g, &r);
    float *in = rand_input(2 * 96, -1, 1, 19);
    gradcheck("fold time -> conv -> gap -> unfold -> LSTM", g, 2, in);
    free(in);
    nn_graph_free(g);
}

static void resize(void **state) {
    (void)state;
    const int sizes[][2] = {{7, 5}, {2, 3}, {4, 4}};
    for (int mode = 0; mode < 3; mode++)
        for (int s = 0; s < 3; s++) {
            nn_graph *g = nn_graph_new();
            int x = nn_input(g, "in", 3, (int[]){3, 4, 2});
            int y = nn_resize_bilinear(g, "rs", x, sizes[s][0], sizes[s][1], mode == 1, mode == 2);
            nn_mark_output(g, y);
            float *in = rand_input(2 * 24, -1, 1, 20);
            char what[96];
            snprintf(what, sizeof what, "resize 3x4 -> %dx%d (%s)", sizes[s][0], sizes[s][1],
                     mode == 0 ? "plain" : mode == 1 ? "align_corners" : "half_pixel_centers");
            gradcheck(what, g, 2, in);
            free(in);
            nn_graph_free(g);
        }
}

/* The checker itself must be able to fail: a deliberately wrong gradient is caught. */
static void checker_catches_a_wrong_gradient(void **state) {
    (void)state;
    gc c = {0};
    compare(&c, "self-test", "x", 0, 1.0, 1.0 + 1e-4);
    assert_int_equal(c.failures, 0);
    compare(&c, "self-test (expected mismatch)", "x", 0, 1.0, 1.1);
    assert_int_equal(c.failures, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(checker_catches_a_wrong_gradient),
        cmocka_unit_test(conv_same_odd_sizes),
        cmocka_unit_test(conv_dilated_grouped_explicit),
        cmocka_unit_test(depthwise_and_separable),
        cmocka_unit_test(batchnorm_training_and_inference),
        cmocka_unit_test(activations),
        cmocka_unit_test(pooling),
        cmocka_unit_test(gap_dense_dropout),
        cmocka_unit_test(add_concat_pad_reshape),
        cmocka_unit_test(lstm_bptt),
        cmocka_unit_test(time_folding),
        cmocka_unit_test(resize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
