/* test_nn_dnnl_vs_ref — the oneDNN backend computes what the reference backend computes.
 *
 * For every op of nn.h, a one- or two-layer graph with random weights (Keras-style
 * initialisation, then perturbed, with random batch-norm statistics) runs on both backends
 * and every value the oneDNN backend exposes is compared with the reference's:
 *   - fp32 inference: max |dnnl - ref| <= 1e-4 x RMS(ref);
 *   - bf16 inference (skipped, with a message, on CPUs without native bf16): <= 5e-2 x
 *     RMS(ref). bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%); inputs and
 *     weights are each rounded once (0.4% per product) and every layer's output once more,
 *     so a sum carries ~0.5% of the RMS of its *terms*; the maximum over a few thousand
 *     values sits ~4 standard deviations out (2%), and where terms cancel (an output smaller
 *     than its terms, e.g. tanh of a pre-activation scaled 8x) the error relative to the
 *     output grows further: the worst case here measures 4.3%;
 *   - fused patterns (conv+bn+relu, conv+bn+add+relu, separable, padding folded into a
 *     convolution) in inference against the reference's unfused layers;
 *   - fp32 training: outputs, moving statistics, parameter and input gradients against the
 *     reference's (whose gradients test_nn_ref_gradcheck checks by finite differences),
 *     gradients within 1e-3 x RMS (at least 1% of the model's largest gradient RMS, as a
 *     bias followed by batch-norm has a gradient that cancels to rounding noise);
 *   - bf16 (mixed-precision) training, compared by RMS(difference) / RMS(reference): a
 *     pre-activation that bf16 rounding moves across a kink (ReLU, ReLU6, PReLU, a max-pool
 *     argmax, a padded border) flips that element's gradient, so single elements may differ
 *     entirely. Measured: smooth paths ~0.4%, with kinks up to 16% for the input gradient
 *     and 13% for all parameter gradients together, 50% for a near-zero bias before
 *     batch-norm. Bounds: 25% (input gradient, all parameters together), 75% per
 *     parameter; a layout or accumulation bug gives ~100-140%.
 * Passes run at two batch sizes and twice each, so cached per-batch plans are exercised.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/nn.h"

#define TOL_F32 1e-4
#define TOL_BF16 5e-2

static int have_bf16(void) {
    static int said = 0;
    int b = nn_cpu_has_bf16();
    if (!b && !said) {
        print_message("bf16 cases skipped: this CPU (%s) has no native bf16\n", nn_cpu_isa());
        said = 1;
    }
    return b;
}

/* Keras initialisation, then every parameter perturbed so that biases, shifts and
 * statistics are not their trivial values (variance stays positive). */
static void randomize(nn_graph *g, uint64_t seed) {
    nn_graph_init_weights(g, seed);
    nn_rng r;
    nn_rng_seed(&r, seed * 7 + 1);
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        const char *w = strrchr(p->name, '/');
        w = w ? w + 1 : p->name;
        for (size_t k = 0; k < p->count; k++) {
            if (!strcmp(w, "moving_variance"))
                p->data[k] = 0.5f + nn_rng_uniform(&r);
            else if (!strcmp(w, "moving_mean"))
                p->data[k] = 0.3f * nn_rng_normal(&r);
            else if (!strcmp(w, "gamma"))
                p->data[k] = 1.0f + 0.3f * nn_rng_normal(&r);
            else if (!strcmp(w, "alpha"))
                p->data[k] = 0.25f + 0.1f * nn_rng_normal(&r);
            else
                p->data[k] += 0.1f * nn_rng_normal(&r);
        }
    }
}

static float *random_input(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    nn_rng r;
    nn_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = nn_rng_normal(&r);
    return x;
}

static size_t node_elems(nn_graph *g, int id, int batch) {
    const nn_node *n = nn_graph_node(g, id);
    size_t s = (size_t)batch * (size_t)n->batch_mul;
    for (int i = 0; i < n->ndim; i++) s *= (size_t)n->shape[i];
    return s;
}

/* max |a - b| / RMS(b) (RMS floored so that an all-zero reference compares absolutely). */
static double rel_err(const float *a, const float *b, size_t n) {
    double ss = 0, md = 0;
    for (size_t i = 0; i < n; i++) {
        ss += (double)b[i] * b[i];
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= md)) md = e; /* NaN propagates as a failure */
    }
    double rms = sqrt(ss / (double)(n ? n : 1));
    return md / (rms > 1e-3 ? rms : 1e-3);
}

/* max |a - b| / max(RMS(b), floor). */
static double rel_err_floor(const float *a, const float *b, size_t n, double floor) {
    double ss = 0, md = 0;
    for (size_t i = 0; i < n; i++) {
        ss += (double)b[i] * b[i];
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= md)) md = e;
    }
    double rms = sqrt(ss / (double)(n ? n : 1));
    if (rms < floor) rms = floor;
    return md / (rms > 1e-12 ? rms : 1e-12);
}

/* Gradients: fp32 as rel_err_floor; bf16 by RMS(a - b) / max(RMS(b), floor), because a
 * pre-activation that bf16 rounding moves across a kink (ReLU, ReLU6, max-pool argmax)
 * flips that element's gradient entirely while the rest agree. */
static double grad_err(nn_precision prec, const float *a, const float *b, size_t n, double floor) {
    if (prec != NN_PREC_BF16) return rel_err_floor(a, b, n, floor);
    double ss = 0, sd = 0;
    for (size_t i = 0; i < n; i++) {
        ss += (double)b[i] * b[i];
        sd += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    }
    double rms = sqrt(ss / (double)(n ? n : 1)), rd = sqrt(sd / (double)(n ? n : 1));
    if (rms < floor) rms = floor;
    if (!(rd == rd)) return INFINITY;
    return rd / (rms > 1e-12 ? rms : 1e-12);
}

static nn_exec *make_exec(nn_graph *g, nn_backend b, nn_precision p, int training, int max_batch) {
    nn_exec_opts o;
    nn_exec_opts_default(&o);
    o.backend = b;
    o.precision = p;
    o.training = training;
    o.max_batch = max_batch;
    o.seed = 1234;
    nn_exec *ex = NULL;
    dfd_error e = {0};
    int rc = nn_exec_create(g, &o, &ex, &e);
    if (rc) print_message("nn_exec_create (%s): %s\n", b == NN_BACKEND_REF ? "ref" : "dnnl", e.message);
    assert_int_equal(rc, DFD_OK);
    return ex;
}

static void forward(nn_exec *ex, const float *x, int batch) {
    dfd_error e = {0};
    int rc = nn_forward(ex, x, batch, &e);
    if (rc) print_message("nn_forward: %s\n", e.message);
    assert_int_equal(rc, DFD_OK);
}

/* Runs g on both backends in inference and compares every output, and every node whose
 * value the oneDNN backend still holds (fused-away nodes have none). */
static void check_inference(nn_graph *g, nn_precision prec, const char *what) {
    assert_null(nn_graph_error(g));
    double tol = prec == NN_PREC_BF16 ? TOL_BF16 : TOL_F32;
    if (prec == NN_PREC_BF16 && !have_bf16()) return;
    nn_exec *ref = make_exec(g, NN_BACKEND_REF, NN_PREC_F32, 0, 3);
    nn_exec *dn = make_exec(g, NN_BACKEND_DNNL, prec, 0, 3);
    assert_int_equal(nn_exec_precision(dn), prec);
    const int batches[4] = {3, 1, 3, 2};
    for (int bi = 0; bi < 4; bi++) {
        int batch = batches[bi];
        size_t nin = node_elems(g, nn_graph_input(g), batch);
        float *x = random_input(nin, 99 + (uint64_t)bi);
        forward(ref, x, batch);
        forward(dn, x, batch);
        free(x); /* the backend must not read the input after the pass */
        int compared = 0;
        for (int id = 0; id < nn_graph_node_count(g); id++) {
            if (nn_graph_node(g, id)->op == NN_OP_INPUT) continue;
            size_t cd = 0, cr = 0;
            const float *vd = nn_node_output(dn, id, &cd);
            if (!vd) continue;
            const float *vr = nn_node_output(ref, id, &cr);
            assert_non_null(vr);
            assert_int_equal(cd, cr);
            assert_int_equal(cd, node_elems(g, id, batch));
            double e = rel_err(vd, vr, cr);
            if (!(e <= tol))
                print_message("%s (%s, batch %d): node %d '%s' differs by %.3g x RMS (bound %.g)\n", what,
                              prec == NN_PREC_BF16 ? "bf16" : "fp32", batch, id, nn_graph_node(g, id)->name, e, tol);
            assert_true(e <= tol);
            compared++;
        }
        for (int o = 0; o < nn_graph_output_count(g); o++) { /* outputs are always available */
            size_t c = 0;
            assert_non_null(nn_output(dn, o, &c));
            assert_int_equal(c, node_elems(g, nn_graph_output(g, o), batch));
        }
        assert_true(compared >= 1);
    }
    nn_exec_free(dn);
    nn_exec_free(ref);
}

static void check_both(nn_graph *g, const char *what) {
    check_inference(g, NN_PREC_F32, what);
    check_inference(g, NN_PREC_BF16, what);
}

static int input3(nn_graph *g, int h, int w, int c) { return nn_input(g, "input", 3, (int[]){h, w, c}); }

/* ---- One op per graph --------------------------------------------------------------------------- */

static nn_conv_attr conv_attr(int k, int s, int d, nn_padding pad, int groups, int out_c, int bias, nn_act act) {
    nn_conv_attr a;
    memset(&a, 0, sizeof a);
    a.kh = a.kw = k;
    a.sh = a.sw = s;
    a.dh = a.dw = d;
    a.padding = pad;
    a.groups = groups;
    a.out_c = out_c;
    a.has_bias = bias;
    a.act = act;
    return a;
}

static void conv_variants(void **state) {
    (void)state;
    struct {
        int h, w, c, k, s, d;
        nn_padding pad;
        int groups, out_c, bias;
        nn_act act;
    } cases[] = {
        {9, 9, 5, 3, 1, 1, NN_PAD_SAME, 1, 7, 1, NN_ACT_NONE},     /* plain 3x3 same */
        {10, 8, 4, 3, 2, 1, NN_PAD_SAME, 1, 6, 0, NN_ACT_RELU},    /* stride 2, padding bottom/right only */
        {11, 11, 3, 3, 1, 2, NN_PAD_VALID, 1, 5, 1, NN_ACT_NONE},  /* dilation */
        {9, 7, 6, 3, 1, 1, NN_PAD_SAME, 2, 8, 1, NN_ACT_RELU6},    /* groups */
        {8, 8, 6, 1, 1, 1, NN_PAD_VALID, 1, 16, 1, NN_ACT_SWISH},  /* pointwise */
        {9, 9, 3, 5, 2, 1, NN_PAD_VALID, 1, 4, 1, NN_ACT_TANH},    /* 5x5 stride 2 valid */
        {7, 7, 4, 3, 1, 1, NN_PAD_SAME, 1, 4, 1, NN_ACT_SIGMOID},
        {7, 7, 4, 3, 1, 1, NN_PAD_SAME, 1, 5, 1, NN_ACT_PRELU},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_graph *g = nn_graph_new();
        int x = input3(g, cases[i].h, cases[i].w, cases[i].c);
        nn_conv_attr a = conv_attr(cases[i].k, cases[i].s, cases[i].d, cases[i].pad, cases[i].groups, cases[i].out_c,
                                   cases[i].bias, cases[i].act);
        nn_mark_output(g, nn_conv2d(g, "conv", x, &a));
        randomize(g, 10 + i);
        char what[64];
        snprintf(what, sizeof what, "conv case %zu", i);
        check_both(g, what);
        nn_graph_free(g);
    }
    /* Explicit, asymmetric padding. */
    nn_graph *g = nn_graph_new();
    int x = input3(g, 8, 9, 3);
    nn_conv_attr a = conv_attr(3, 2, 1, NN_PAD_EXPLICIT, 1, 4, 1, NN_ACT_NONE);
    a.pad_t = 2, a.pad_b = 0, a.pad_l = 1, a.pad_r = 3;
    nn_mark_output(g, nn_conv2d(g, "conv", x, &a));
    randomize(g, 3);
    check_both(g, "explicit padding");
    nn_graph_free(g);
}

static void depthwise_and_separable(void **state) {
    (void)state;
    for (int s = 1; s <= 2; s++) {
        nn_graph *g = nn_graph_new();
        int x = input3(g, 10, 9, 8);
        int y = nn_depthwise2d(g, "dw", x, 3, 3, s, s, NN_PAD_SAME, 1, NN_ACT_RELU6);
        nn_mark_output(g, y);
        randomize(g, 20 + (uint64_t)s);
        check_both(g, s == 1 ? "depthwise s1" : "depthwise s2");
        nn_graph_free(g);
    }
    nn_graph *g = nn_graph_new();
    int x = input3(g, 9, 9, 6);
    int y = nn_separable2d(g, "sep", x, 10, 3, 3, 1, 1, NN_PAD_SAME, 1, NN_ACT_RELU);
    nn_mark_output(g, y);
    randomize(g, 25);
    check_both(g, "separable");
    nn_graph_free(g);
}

static void batchnorm_standalone(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = input3(g, 5, 6, 7);
    int b = nn_batchnorm(g, "bn", x, 1e-3f, 0.99f);
    nn_mark_output(g, b);
    randomize(g, 30);
    check_both(g, "batchnorm on a map");
    nn_graph_free(g);

    g = nn_graph_new();
    x = nn_input(g, "input", 1, (int[]){12});
    int d = nn_dense(g, "dense", x, 9, 1, NN_ACT_NONE);
    nn_mark_output(g, nn_batchnorm(g, "bn", d, 1e-3f, 0.99f));
    randomize(g, 31);
    check_both(g, "batchnorm on a vector");
    nn_graph_free(g);
}

static void activations(void **state) {
    (void)state;
    nn_act acts[] = {NN_ACT_NONE, NN_ACT_RELU, NN_ACT_RELU6, NN_ACT_SIGMOID, NN_ACT_SWISH, NN_ACT_TANH, NN_ACT_PRELU};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        nn_graph *g = nn_graph_new();
        int x = input3(g, 4, 5, 6);
        /* scale the input so that relu6's upper bound is reached */
        nn_conv_attr a = conv_attr(1, 1, 1, NN_PAD_VALID, 1, 6, 1, NN_ACT_NONE);
        int c = nn_conv2d(g, "conv", x, &a);
        int y = nn_activation(g, "act", c, acts[i]);
        nn_mark_output(g, y);
        nn_mark_output(g, c); /* keeps the activation a separate layer */
        randomize(g, 40 + i);
        nn_param *k = nn_graph_find_param(g, "conv/kernel");
        for (size_t j = 0; j < k->count; j++) k->data[j] *= 8.0f;
        char what[64];
        snprintf(what, sizeof what, "activation %d", (int)acts[i]);
        check_both(g, what);
        nn_graph_free(g);
    }
    /* On vectors and sequences too. */
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "input", 2, (int[]){5, 6});
    nn_mark_output(g, nn_activation(g, "act", x, NN_ACT_PRELU));
    randomize(g, 48);
    check_both(g, "prelu on a sequence");
    nn_graph_free(g);
}

static void pooling(void **state) {
    (void)state;
    for (int op = 0; op < 2; op++)
        for (int pad = 0; pad < 2; pad++) {
            nn_graph *g = nn_graph_new();
            int x = input3(g, 9, 8, 5);
            int y = op ? nn_avgpool(g, "pool", x, 3, 3, 2, 2, pad ? NN_PAD_SAME : NN_PAD_VALID)
                       : nn_maxpool(g, "pool", x, 3, 3, 2, 2, pad ? NN_PAD_SAME : NN_PAD_VALID);
            nn_mark_output(g, y);
            char what[64];
            snprintf(what, sizeof what, "%s pool %s", op ? "avg" : "max", pad ? "same" : "valid");
            check_both(g, what);
            nn_graph_free(g);
        }
    nn_graph *g = nn_graph_new();
    int x = input3(g, 7, 6, 9);
    nn_mark_output(g, nn_gap(g, "gap", x));
    check_both(g, "global average pool");
    nn_graph_free(g);
    g = nn_graph_new();
    x = nn_input(g, "input", 2, (int[]){6, 5});
    nn_mark_output(g, nn_gap(g, "gap", x));
    check_both(g, "global average pool over time");
    nn_graph_free(g);
}

static void dense_dropout_add_concat(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "input", 1, (int[]){20});
    int d1 = nn_dense(g, "d1", x, 12, 1, NN_ACT_RELU);
    int dr = nn_dropout(g, "drop", d1, 0.5f);
    int d2 = nn_dense(g, "d2", dr, 3, 0, NN_ACT_SIGMOID);
    nn_mark_output(g, d2);
    randomize(g, 50);
    check_both(g, "dense + dropout");
    nn_graph_free(g);

    g = nn_graph_new(); /* per time step */
    x = nn_input(g, "input", 2, (int[]){4, 7});
    nn_mark_output(g, nn_dense(g, "d", x, 5, 1, NN_ACT_PRELU));
    randomize(g, 51);
    check_both(g, "dense per time step");
    nn_graph_free(g);

    g = nn_graph_new();
    x = input3(g, 6, 6, 4);
    nn_conv_attr a = conv_attr(3, 1, 1, NN_PAD_SAME, 1, 4, 1, NN_ACT_NONE);
    int c1 = nn_conv2d(g, "c1", x, &a);
    int c2 = nn_conv2d(g, "c2", x, &a);
    nn_mark_output(g, nn_add(g, "add", c1, c2));
    randomize(g, 52);
    check_both(g, "add of two convolutions");
    nn_graph_free(g);

    g = nn_graph_new();
    x = input3(g, 6, 5, 4);
    nn_conv_attr a3 = conv_attr(1, 1, 1, NN_PAD_VALID, 1, 3, 1, NN_ACT_NONE);
    nn_conv_attr a5 = conv_attr(3, 1, 1, NN_PAD_SAME, 1, 5, 1, NN_ACT_RELU);
    int ins[3] = {nn_conv2d(g, "c3", x, &a3), nn_conv2d(g, "c5", x, &a5), x};
    nn_mark_output(g, nn_concat(g, "cat", 3, ins));
    randomize(g, 53);
    check_both(g, "concat");
    nn_graph_free(g);

    g = nn_graph_new();
    x = nn_input(g, "input", 2, (int[]){3, 4});
    int s2[2] = {x, nn_dense(g, "d", x, 2, 1, NN_ACT_NONE)};
    nn_mark_output(g, nn_concat(g, "cat", 2, s2));
    randomize(g, 54);
    check_both(g, "concat of sequences");
    nn_graph_free(g);
}

static void pad_reshape_resize(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = input3(g, 5, 6, 3);
    nn_conv_attr a = conv_attr(3, 1, 1, NN_PAD_SAME, 1, 4, 1, NN_ACT_NONE);
    int c = nn_conv2d(g, "c", x, &a);
    int p = nn_pad(g, "pad", c, 1, 2, 0, 3, 2);
    nn_mark_output(g, p);
    nn_mark_output(g, nn_maxpool(g, "pool", p, 2, 2, 2, 2, NN_PAD_VALID));
    randomize(g, 60);
    check_both(g, "zero padding");
    nn_graph_free(g);

    g = nn_graph_new();
    x = nn_input(g, "input", 1, (int[]){6});
    nn_mark_output(g, nn_pad(g, "pad", x, 0, 0, 0, 0, 3));
    check_both(g, "channel padding of a vector");
    nn_graph_free(g);

    g = nn_graph_new();
    x = input3(g, 4, 3, 2);
    c = nn_conv2d(g, "c", x, &a);
    int r = nn_reshape(g, "r", c, 2, (int[]){12, 4});
    nn_mark_output(g, nn_dense(g, "d", r, 3, 1, NN_ACT_NONE));
    nn_mark_output(g, nn_reshape(g, "flat", c, 1, (int[]){-1}));
    randomize(g, 61);
    check_both(g, "reshape");
    nn_graph_free(g);

    for (int mode = 0; mode < 3; mode++) {
        g = nn_graph_new();
        x = input3(g, 5, 7, 3);
        int y = nn_resize_bilinear(g, "rs", x, mode == 2 ? 4 : 11, mode == 2 ? 3 : 9, mode == 1, mode == 2);
        nn_mark_output(g, y);
        check_both(g, mode == 0 ? "resize" : mode == 1 ? "resize align_corners" : "resize half_pixel (down)");
        nn_graph_free(g);
    }
}

static void lstm_and_time(void **state) {
    (void)state;
    for (int rs = 0; rs < 2; rs++) {
        nn_graph *g = nn_graph_new();
        int x = nn_input(g, "input", 2, (int[]){5, 6});
        int l = nn_lstm(g, "lstm", x, 7, rs);
        nn_mark_output(g, l);
        randomize(g, 70 + (uint64_t)rs);
        check_both(g, rs ? "LSTM sequences" : "LSTM last");
        nn_graph_free(g);
    }
    /* TimeDistributed(conv + GAP) then two LSTMs and a dense head: the video model's shape. */
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "input", 4, (int[]){3, 6, 6, 3});
    int f = nn_fold_time(g, x);
    nn_conv_attr a = conv_attr(3, 2, 1, NN_PAD_SAME, 1, 8, 1, NN_ACT_RELU);
    int c = nn_conv2d(g, "c", f, &a);
    int gp = nn_gap(g, "gap", c);
    int u = nn_unfold_time(g, gp);
    int l1 = nn_lstm(g, "lstm1", u, 6, 1);
    int l2 = nn_lstm(g, "lstm2", l1, 4, 0);
    nn_mark_output(g, nn_dense(g, "head", l2, 1, 1, NN_ACT_NONE));
    randomize(g, 72);
    check_both(g, "video model");
    nn_graph_free(g);
}

/* ---- Fused patterns (inference) ---------------------------------------------------------------- */

/* Xception's residual block: sepconv-bn-relu-sepconv-bn-maxpool plus a 1x1 stride-2
 * conv-bn shortcut, added; and MobileNetV2's padded stride-2 depthwise + bottleneck add. */
/* Two MobileNetV2 blocks: 1x1 expand + bn + relu6, zero-padding and a stride-2 depthwise,
 * bn + relu6, 1x1 project + bn; a stride-1 block with 'same' padding; their residual add. */
static nn_graph *mobilenet_v2_blocks(void) {
    nn_graph *g = nn_graph_new();
    int x = input3(g, 12, 12, 8);
    nn_conv_attr e = conv_attr(1, 1, 1, NN_PAD_VALID, 1, 24, 0, NN_ACT_NONE);
    int ex = nn_activation(g, "ex_relu", nn_batchnorm(g, "ex_bn", nn_conv2d(g, "ex", x, &e), 1e-3f, 0.999f),
                           NN_ACT_RELU6);
    int pd = nn_pad(g, "pad", ex, 0, 1, 0, 1, 0);
    int dw = nn_depthwise2d(g, "dw", pd, 3, 3, 2, 2, NN_PAD_VALID, 0, NN_ACT_NONE);
    int dr = nn_activation(g, "dw_relu", nn_batchnorm(g, "dw_bn", dw, 1e-3f, 0.999f), NN_ACT_RELU6);
    nn_conv_attr pj = conv_attr(1, 1, 1, NN_PAD_VALID, 1, 8, 0, NN_ACT_NONE);
    int pr = nn_batchnorm(g, "pj_bn", nn_conv2d(g, "pj", dr, &pj), 1e-3f, 0.999f);
    int dw2 = nn_depthwise2d(g, "dw2", pr, 3, 3, 1, 1, NN_PAD_SAME, 0, NN_ACT_NONE);
    int dr2 = nn_activation(g, "dw2_relu", nn_batchnorm(g, "dw2_bn", dw2, 1e-3f, 0.999f), NN_ACT_RELU6);
    int pr2 = nn_batchnorm(g, "pj2_bn", nn_conv2d(g, "pj2", dr2, &pj), 1e-3f, 0.999f);
    nn_mark_output(g, nn_add(g, "add", pr, pr2));
    return g;
}

static void fused_patterns(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = input3(g, 12, 11, 8);
    nn_conv_attr a = conv_attr(3, 1, 1, NN_PAD_SAME, 1, 16, 0, NN_ACT_NONE);
    int c = nn_conv2d(g, "c", x, &a);
    int b = nn_batchnorm(g, "bn", c, 1e-3f, 0.99f);
    int r = nn_activation(g, "relu", b, NN_ACT_RELU);
    nn_mark_output(g, r);
    randomize(g, 80);
    check_both(g, "conv+bn+relu");
    nn_graph_free(g);

    g = nn_graph_new();
    x = input3(g, 12, 11, 8);
    nn_conv_attr a1 = conv_attr(1, 2, 1, NN_PAD_SAME, 1, 16, 0, NN_ACT_NONE);
    int res = nn_batchnorm(g, "res_bn", nn_conv2d(g, "res", x, &a1), 1e-3f, 0.99f);
    int s1 = nn_separable2d(g, "sep1", x, 16, 3, 3, 1, 1, NN_PAD_SAME, 0, NN_ACT_NONE);
    int r1 = nn_activation(g, "sep1_act", nn_batchnorm(g, "sep1_bn", s1, 1e-3f, 0.99f), NN_ACT_RELU);
    int s2 = nn_separable2d(g, "sep2", r1, 16, 3, 3, 1, 1, NN_PAD_SAME, 0, NN_ACT_NONE);
    int mp = nn_maxpool(g, "pool", nn_batchnorm(g, "sep2_bn", s2, 1e-3f, 0.99f), 3, 3, 2, 2, NN_PAD_SAME);
    int add = nn_add(g, "add", mp, res);
    int post = nn_activation(g, "post", add, NN_ACT_RELU);
    /* conv+bn+add+relu with the add's other operand still needed afterwards */
    nn_conv_attr a3 = conv_attr(3, 1, 1, NN_PAD_SAME, 1, 16, 0, NN_ACT_NONE);
    int c3 = nn_batchnorm(g, "c3_bn", nn_conv2d(g, "c3", post, &a3), 1e-3f, 0.99f);
    int add2 = nn_activation(g, "post2", nn_add(g, "add2", c3, post), NN_ACT_RELU);
    int c4 = nn_batchnorm(g, "c4_bn", nn_conv2d(g, "c4", add2, &a3), 1e-3f, 0.99f);
    int add3 = nn_add(g, "add3", add2, c4);
    nn_mark_output(g, nn_gap(g, "gap", add3));
    randomize(g, 81);
    check_both(g, "xception block");
    nn_graph_free(g);

    g = mobilenet_v2_blocks();
    randomize(g, 82);
    check_both(g, "mobilenet_v2 blocks");
    nn_graph_free(g);
}

/* bf16 inference carries channel counts that are not multiples of 32 (from 128 up)
 * zero-padded (Xception's 728 as 736): an Xception-like stretch with 136 and 200 channels
 * (tanh where Xception has ReLU before a depthwise convolution: after a ReLU, its 9-term
 * sums cancel and bf16 rounding alone exceeds the 5% bound, padded or not),
 * every padded value read back through nn_node_output; a 1x1 convolution from a padded to
 * an unpadded count; a value also read by global pooling (which does not take padding). */
static void padded_channels(void **state) {
    (void)state;
    nn_conv_attr e = conv_attr(1, 1, 1, NN_PAD_VALID, 1, 136, 0, NN_ACT_NONE);
    nn_conv_attr rs = conv_attr(1, 2, 1, NN_PAD_SAME, 1, 136, 0, NN_ACT_NONE);
    nn_graph *g = nn_graph_new();
    int x = input3(g, 7, 7, 16);
    int a0 = nn_batchnorm(g, "b0", nn_conv2d(g, "c0", x, &e), 1e-3f, 0.99f);
    int s1 = nn_separable2d(g, "s1", a0, 136, 3, 3, 1, 1, NN_PAD_SAME, 0, NN_ACT_NONE);
    int b1 = nn_batchnorm(g, "b1", s1, 1e-3f, 0.99f);
    int r1 = nn_activation(g, "r1", b1, NN_ACT_TANH);
    int s2 = nn_separable2d(g, "s2", r1, 136, 3, 3, 1, 1, NN_PAD_SAME, 1, NN_ACT_NONE);
    int p2 = nn_maxpool(g, "p2", nn_batchnorm(g, "b2", s2, 1e-3f, 0.99f), 3, 3, 2, 2, NN_PAD_SAME);
    int res = nn_batchnorm(g, "rb", nn_conv2d(g, "rc", a0, &rs), 1e-3f, 0.99f);
    int add = nn_add(g, "add", p2, res);
    int r3 = nn_activation(g, "r3", add, NN_ACT_TANH);
    int s3 = nn_separable2d(g, "s3", r3, 200, 3, 3, 1, 1, NN_PAD_SAME, 0, NN_ACT_NONE);
    nn_conv_attr to200 = conv_attr(1, 1, 1, NN_PAD_VALID, 1, 200, 1, NN_ACT_NONE);
    int add2 = nn_add(g, "add2", nn_conv2d(g, "up", add, &to200), s3);
    nn_conv_attr to96 = conv_attr(1, 1, 1, NN_PAD_VALID, 1, 96, 1, NN_ACT_RELU);
    int c96 = nn_conv2d(g, "down", nn_activation(g, "r4", add2, NN_ACT_RELU), &to96);
    int ins[2] = {nn_gap(g, "gap1", c96), nn_gap(g, "gap2", add2)};
    nn_mark_output(g, nn_concat(g, "cat", 2, ins));
    randomize(g, 83);
    check_both(g, "padded channels");
    if (have_bf16()) { /* padded values are there to compare (check_inference skips absent ones) */
        nn_exec *dn = make_exec(g, NN_BACKEND_DNNL, NN_PREC_BF16, 0, 3);
        float *in = random_input(node_elems(g, x, 2), 5);
        forward(dn, in, 2);
        const char *held[] = {"r1", "add", "r3"}; /* (p2's buffer receives the residual sum) */
        for (int k = 0; k < 3; k++) {
            size_t cnt = 0;
            assert_non_null(nn_node_output(dn, nn_graph_find_node(g, held[k]), &cnt));
            assert_int_equal(cnt, node_elems(g, nn_graph_find_node(g, held[k]), 2));
        }
        free(in);
        nn_exec_free(dn);
    }
    nn_graph_free(g);
}

/* A folded executor reads parameters at creation: nn_exec_refresh picks up new ones. */
static void refresh_rereads_parameters(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = input3(g, 6, 6, 4);
    nn_conv_attr a = conv_attr(3, 1, 1, NN_PAD_SAME, 1, 8, 0, NN_ACT_NONE);
    nn_mark_output(g, nn_activation(g, "r", nn_batchnorm(g, "bn", nn_conv2d(g, "c", x, &a), 1e-3f, 0.9f), NN_ACT_RELU));
    randomize(g, 90);
    nn_exec *ref = make_exec(g, NN_BACKEND_REF, NN_PREC_F32, 0, 1);
    nn_exec *dn = make_exec(g, NN_BACKEND_DNNL, NN_PREC_F32, 0, 1);
    float *in = random_input(6 * 6 * 4, 5);
    forward(dn, in, 1);
    randomize(g, 91); /* new weights and statistics */
    dfd_error e;
    assert_int_equal(nn_exec_refresh(dn, &e), DFD_OK);
    forward(dn, in, 1);
    forward(ref, in, 1);
    size_t c;
    const float *vd = nn_output(dn, 0, &c), *vr = nn_output(ref, 0, &c);
    assert_true(rel_err(vd, vr, c) <= TOL_F32);
    free(in);
    nn_exec_free(dn);
    nn_exec_free(ref);
    nn_graph_free(g);
}

/* ---- Training: forward values, parameter and input gradients ---------------------------------- */

#define TOL_GRAD 1e-3
#define TOL_GRAD_BF16 0.75
#define TOL_GRAD_BF16_ALL 0.25

typedef struct snap {
    float **grad, **stat;
} snap;

static void zero_grads(nn_graph *g) { nn_graph_zero_grad(g); }

/* One training step's forward + backward on executor ex: returns copies of the output,
 * every parameter gradient and the input gradient; leaves the moving statistics as they
 * were before the pass in *before (restored) and as the pass left them in *after. */
typedef struct step_result {
    float *out;
    size_t nout;
    float **grads;
    float *dx;
    size_t ndx;
    float **stats;
} step_result;

static void step_free(nn_graph *g, step_result *r) {
    free(r->out);
    free(r->dx);
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        free(r->grads[i]);
        free(r->stats[i]);
    }
    free(r->grads);
    free(r->stats);
}

static float *dup_floats(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof *y);
    assert_non_null(y);
    if (n) memcpy(y, x, n * sizeof *y);
    return y;
}

static void train_step(nn_graph *g, nn_exec *ex, const float *x, const float *dy, int batch, step_result *r) {
    int np = nn_graph_param_count(g);
    float **saved = calloc((size_t)np, sizeof *saved);
    assert_non_null(saved);
    for (int i = 0; i < np; i++) /* moving statistics: restore after the pass */
        if (nn_graph_param(g, i)->is_statistic) saved[i] = dup_floats(nn_graph_param(g, i)->data, nn_graph_param(g, i)->count);
    zero_grads(g);
    forward(ex, x, batch);
    const float *o = nn_output(ex, 0, &r->nout);
    assert_non_null(o);
    r->out = dup_floats(o, r->nout);
    const float *douts[1] = {dy};
    dfd_error e = {0};
    int rc = nn_backward(ex, douts, &e);
    if (rc) print_message("nn_backward: %s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    r->ndx = node_elems(g, nn_graph_input(g), batch);
    const float *dx = nn_input_grad(ex);
    assert_non_null(dx);
    r->dx = dup_floats(dx, r->ndx);
    r->grads = calloc((size_t)np, sizeof *r->grads);
    r->stats = calloc((size_t)np, sizeof *r->stats);
    assert_true(r->grads && r->stats);
    for (int i = 0; i < np; i++) {
        nn_param *p = nn_graph_param(g, i);
        if (p->grad) r->grads[i] = dup_floats(p->grad, p->count);
        if (saved[i]) {
            r->stats[i] = dup_floats(p->data, p->count);
            memcpy(p->data, saved[i], p->count * sizeof(float));
            free(saved[i]);
        }
    }
    free(saved);
}

static void check_training_prec(nn_graph *g, nn_precision prec, const char *what) {
    assert_null(nn_graph_error(g));
    assert_int_equal(nn_graph_output_count(g), 1);
    if (prec == NN_PREC_BF16 && !have_bf16()) return;
    const double tol_out = prec == NN_PREC_BF16 ? TOL_BF16 : TOL_F32, tol_grad = prec == NN_PREC_BF16 ? TOL_GRAD_BF16 : TOL_GRAD;
    nn_exec *ref = make_exec(g, NN_BACKEND_REF, NN_PREC_F32, 1, 3);
    nn_exec *dn = make_exec(g, NN_BACKEND_DNNL, prec, 1, 3);
    const int batches[3] = {3, 2, 3};
    for (int bi = 0; bi < 3; bi++) {
        int batch = batches[bi];
        float *x = random_input(node_elems(g, nn_graph_input(g), batch), 200 + (uint64_t)bi);
        float *dy = random_input(node_elems(g, nn_graph_output(g, 0), batch), 300 + (uint64_t)bi);
        step_result a, b;
        train_step(g, ref, x, dy, batch, &a);
        train_step(g, dn, x, dy, batch, &b);
        assert_int_equal(a.nout, b.nout);
        double e = prec == NN_PREC_BF16 ? grad_err(prec, b.out, a.out, a.nout, 0) : rel_err(b.out, a.out, a.nout);
        const char *pn = prec == NN_PREC_BF16 ? "bf16" : "fp32";
        double tol_dx = tol_grad;
        if (!(e <= tol_out)) print_message("%s (%s training, batch %d): output differs by %.3g x RMS\n", what, pn, batch, e);
        assert_true(e <= tol_out);
        e = grad_err(prec, b.dx, a.dx, a.ndx, 0);
        if (prec == NN_PREC_BF16) tol_dx = TOL_GRAD_BF16_ALL;
        if (!(e <= tol_dx)) print_message("%s (%s, batch %d): input gradient differs by %.3g x RMS\n", what, pn, batch, e);
        assert_true(e <= tol_dx);
        /* A gradient that cancels to (nearly) zero, such as a bias followed by batch-norm,
         * holds only rounding noise: compare each one at least at 1% of the largest
         * gradient's RMS in the model. */
        double gscale = 0;
        for (int i = 0; i < nn_graph_param_count(g); i++) {
            nn_param *p = nn_graph_param(g, i);
            if (!a.grads[i] || !p->trainable || p->is_statistic) continue;
            double ss = 0;
            for (size_t k = 0; k < p->count; k++) ss += (double)a.grads[i][k] * a.grads[i][k];
            if (sqrt(ss / (double)p->count) > gscale) gscale = sqrt(ss / (double)p->count);
        }
        int checked = 0;
        double gss = 0, gsd = 0; /* all parameter gradients as one vector */
        for (int i = 0; i < nn_graph_param_count(g); i++) {
            nn_param *p = nn_graph_param(g, i);
            if (a.stats[i]) {
                e = rel_err(b.stats[i], a.stats[i], p->count);
                if (!(e <= tol_out)) print_message("%s (%s, batch %d): moving statistic '%s' differs by %.3g\n", what, pn, batch, p->name, e);
                assert_true(e <= tol_out);
            }
            if (!p->trainable || p->is_statistic) continue;
            assert_non_null(a.grads[i]);
            assert_non_null(b.grads[i]);
            e = grad_err(prec, b.grads[i], a.grads[i], p->count, 0.01 * gscale);
            for (size_t k = 0; k < p->count; k++) {
                gss += (double)a.grads[i][k] * a.grads[i][k];
                gsd += ((double)b.grads[i][k] - a.grads[i][k]) * ((double)b.grads[i][k] - a.grads[i][k]);
            }
            if (!(e <= tol_grad)) print_message("%s (%s, batch %d): gradient of '%s' differs by %.3g x RMS\n", what, pn, batch, p->name, e);
            assert_true(e <= tol_grad);
            checked++;
        }
        assert_true(checked == 0 || gscale > 0);
        if (checked && prec == NN_PREC_BF16) {
            double ge = sqrt(gsd / (gss > 0 ? gss : 1e-30));
            if (!(ge <= TOL_GRAD_BF16_ALL))
                print_message("%s (bf16, batch %d): all parameter gradients differ by %.3g x RMS\n", what, batch, ge);
            assert_true(ge <= TOL_GRAD_BF16_ALL);
        }
        step_free(g, &a);
        step_free(g, &b);
        free(x);
        free(dy);
    }
    nn_exec_free(dn);
    nn_exec_free(ref);
}

static void check_training(nn_graph *g, const char *what) {
    check_training_prec(g, NN_PREC_F32, what);
    check_training_prec(g, NN_PREC_BF16, what);
}

/* A node that is an output and also feeds the rest of the graph (training's --sbi-loc
 * marks the pooled feature map so): its gradient is the caller's plus its consumers',
 * on both backends. MobileNetV2's ending: conv, batch norm, relu6 (the marked node), GAP,
 * dense(1). Checked by linearity (the gradients with both outputs' d equal the sum of
 * those with each alone, which fails if either overwrites the other) and between the
 * backends; the feature map's own gradient must change the parameters' at all. */
static float *all_grads(nn_graph *g, nn_exec *ex, const float *x, const float *d0, const float *d1, int batch) {
    size_t total = 0;
    for (int i = 0; i < nn_graph_param_count(g); i++)
        if (nn_graph_param(g, i)->trainable && !nn_graph_param(g, i)->is_statistic) total += nn_graph_param(g, i)->count;
    float *v = malloc(total * sizeof *v);
    assert_non_null(v);
    float **saved = calloc((size_t)nn_graph_param_count(g), sizeof *saved);
    for (int i = 0; i < nn_graph_param_count(g); i++)
        if (nn_graph_param(g, i)->is_statistic)
            saved[i] = dup_floats(nn_graph_param(g, i)->data, nn_graph_param(g, i)->count);
    zero_grads(g);
    forward(ex, x, batch);
    const float *douts[2] = {d0, d1};
    assert_int_equal(nn_backward(ex, douts, NULL), DFD_OK);
    size_t k = 0;
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        if (saved[i]) memcpy(p->data, saved[i], p->count * sizeof(float)), free(saved[i]);
        if (!p->trainable || p->is_statistic) continue;
        assert_non_null(p->grad);
        memcpy(v + k, p->grad, p->count * sizeof *v);
        k += p->count;
    }
    free(saved);
    return v;
}

static void train_inner_output(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = input3(g, 6, 6, 3);
    nn_conv_attr a = conv_attr(3, 1, 1, NN_PAD_SAME, 1, 8, 0, NN_ACT_NONE);
    int c = nn_conv2d(g, "conv", x, &a);
    int f = nn_activation(g, "relu6", nn_batchnorm(g, "bn", c, 1e-3f, 0.99f), NN_ACT_RELU6);
    nn_mark_output(g, nn_dense(g, "logit", nn_gap(g, "gap", f), 1, 1, NN_ACT_NONE));
    nn_mark_output(g, f);
    assert_null(nn_graph_error(g));
    randomize(g, 70);
    const int batch = 3;
    float *in = random_input(node_elems(g, nn_graph_input(g), batch), 71);
    float *d0 = random_input(batch, 72), *d1 = random_input(node_elems(g, f, batch), 73);
    nn_exec *ex[2] = {make_exec(g, NN_BACKEND_REF, NN_PREC_F32, 1, 3), make_exec(g, NN_BACKEND_DNNL, NN_PREC_F32, 1, 3)};
    size_t total = 0;
    for (int i = 0; i < nn_graph_param_count(g); i++)
        if (nn_graph_param(g, i)->trainable && !nn_graph_param(g, i)->is_statistic) total += nn_graph_param(g, i)->count;
    float *both[2];
    for (int b = 0; b < 2; b++) {
        both[b] = all_grads(g, ex[b], in, d0, d1, batch);
        float *g0 = all_grads(g, ex[b], in, d0, NULL, batch), *g1 = all_grads(g, ex[b], in, NULL, d1, batch);
        float *sum = malloc(total * sizeof *sum);
        assert_non_null(sum);
        for (size_t k = 0; k < total; k++) sum[k] = g0[k] + g1[k];
        double e = rel_err(both[b], sum, total), moved = rel_err(both[b], g0, total);
        if (!(e <= TOL_GRAD) || !(moved > 0.05))
            print_message("%s: both outputs' gradients %.3g x RMS from the sum of each alone; the map's own moved them by %.3g\n",
                          b ? "oneDNN" : "reference", e, moved);
        assert_true(e <= TOL_GRAD);
        assert_true(moved > 0.05);
        free(g0), free(g1), free(sum);
    }
    double e = rel_err(both[1], both[0], total);
    if (!(e <= TOL_GRAD)) print_message("inner output: the backends' gradients differ by %.3g x RMS\n", e);
    assert_true(e <= TOL_GRAD);
    free(both[0]), free(both[1]), free(in), free(d0), free(d1);
    nn_exec_free(ex[0]), nn_exec_free(ex[1]);
    nn_graph_free(g);
}

static void train_conv_and_bn(void **state) {
    (void)state;
    struct {
        int k, s, d;
        nn_padding pad;
        int groups, out_c, bias;
        nn_act act;
    } cases[] = {
        {3, 1, 1, NN_PAD_SAME, 1, 6, 1, NN_ACT_RELU},  {3, 2, 1, NN_PAD_SAME, 1, 5, 0, NN_ACT_NONE},
        {3, 1, 2, NN_PAD_VALID, 1, 4, 1, NN_ACT_TANH}, {3, 1, 1, NN_PAD_SAME, 2, 6, 1, NN_ACT_PRELU},
        {1, 1, 1, NN_PAD_VALID, 1, 8, 1, NN_ACT_SWISH}, {3, 2, 1, NN_PAD_SAME, 4, 4, 1, NN_ACT_RELU6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_graph *g = nn_graph_new();
        int x = input3(g, 9, 8, 4);
        nn_conv_attr a = conv_attr(cases[i].k, cases[i].s, cases[i].d, cases[i].pad, cases[i].groups, cases[i].out_c,
                                   cases[i].bias, cases[i].act);
        int c = nn_conv2d(g, "conv", x, &a);
        nn_mark_output(g, nn_batchnorm(g, "bn", c, 1e-3f, 0.9f));
        randomize(g, 100 + i);
        char what[64];
        snprintf(what, sizeof what, "train conv case %zu", i);
        check_training(g, what);
        if (i < 2) { /* frozen statistics: the moving ones normalise, gamma/beta still learn */
            nn_graph_freeze_bn_stats(g, 1);
            check_training(g, "train conv, frozen bn statistics");
        }
        nn_graph_free(g);
    }
    /* a frozen prefix: no gradient for its parameters, still one for the input */
    nn_graph *g = nn_graph_new();
    int x = input3(g, 7, 7, 3);
    nn_conv_attr a = conv_attr(3, 1, 1, NN_PAD_SAME, 1, 4, 1, NN_ACT_RELU);
    int c1 = nn_conv2d(g, "c1", x, &a);
    int b1 = nn_batchnorm(g, "b1", c1, 1e-3f, 0.9f);
    int c2 = nn_conv2d(g, "c2", b1, &a);
    nn_mark_output(g, nn_batchnorm(g, "b2", c2, 1e-3f, 0.9f));
    randomize(g, 110);
    assert_int_equal(nn_graph_set_trainable(g, "c2", 1), DFD_OK);
    check_training(g, "frozen prefix");
    /* Without an input gradient the backward pass stops at c2 (the frozen prefix's
     * backward is skipped, and c2's data gradient too): c2's gradients are the same. */
    nn_exec *full = make_exec(g, NN_BACKEND_DNNL, NN_PREC_F32, 1, 3);
    nn_exec_opts o;
    nn_exec_opts_default(&o);
    o.training = 1, o.max_batch = 3, o.seed = 1234, o.no_input_grad = 1;
    nn_exec *part = NULL;
    assert_int_equal(nn_exec_create(g, &o, &part, NULL), DFD_OK);
    float *xin = random_input(node_elems(g, x, 3), 400), *dy = random_input(node_elems(g, nn_graph_output(g, 0), 3), 401);
    nn_param *k2 = nn_graph_find_param(g, "c2/kernel"), *k1 = nn_graph_find_param(g, "c1/kernel");
    float *g_full = NULL;
    for (int pass = 0; pass < 2; pass++) {
        nn_exec *ex = pass ? part : full;
        zero_grads(g);
        forward(ex, xin, 3);
        const float *douts[1] = {dy};
        assert_int_equal(nn_backward(ex, douts, NULL), DFD_OK);
        if (!pass) {
            assert_non_null(nn_input_grad(ex));
            g_full = dup_floats(k2->grad, k2->count);
        } else {
            assert_null(nn_input_grad(ex));
            assert_true(rel_err(k2->grad, g_full, k2->count) <= 1e-6);
            assert_true(!k1->grad || !k1->trainable);
        }
    }
    free(g_full), free(xin), free(dy);
    nn_exec_free(full);
    nn_exec_free(part);
    nn_graph_free(g);
}

static void train_depthwise_separable(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = input3(g, 8, 9, 6);
    int dw = nn_depthwise2d(g, "dw", x, 3, 3, 2, 2, NN_PAD_SAME, 1, NN_ACT_RELU6);
    int s = nn_separable2d(g, "sep", dw, 7, 3, 3, 1, 1, NN_PAD_SAME, 1, NN_ACT_NONE);
    nn_mark_output(g, nn_activation(g, "act", nn_batchnorm(g, "bn", s, 1e-3f, 0.9f), NN_ACT_RELU));
    randomize(g, 120);
    check_training(g, "train depthwise + separable");
    nn_graph_free(g);
}

static void train_activations_pooling(void **state) {
    (void)state;
    nn_act acts[] = {NN_ACT_NONE, NN_ACT_RELU, NN_ACT_RELU6, NN_ACT_SIGMOID, NN_ACT_SWISH, NN_ACT_TANH, NN_ACT_PRELU};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        nn_graph *g = nn_graph_new();
        int x = input3(g, 6, 7, 5);
        nn_conv_attr a = conv_attr(1, 1, 1, NN_PAD_VALID, 1, 5, 1, NN_ACT_NONE);
        int c = nn_conv2d(g, "conv", x, &a);
        nn_mark_output(g, nn_activation(g, "act", c, acts[i]));
        randomize(g, 130 + i);
        nn_param *k = nn_graph_find_param(g, "conv/kernel");
        for (size_t j = 0; j < k->count; j++) k->data[j] *= 6.0f;
        char what[64];
        snprintf(what, sizeof what, "train activation %d", (int)acts[i]);
        check_training(g, what);
        nn_graph_free(g);
    }
    for (int op = 0; op < 2; op++)
        for (int pad = 0; pad < 2; pad++) {
            nn_graph *g = nn_graph_new();
            int x = input3(g, 9, 8, 5);
            int y = op ? nn_avgpool(g, "pool", x, 3, 3, 2, 2, pad ? NN_PAD_SAME : NN_PAD_VALID)
                       : nn_maxpool(g, "pool", x, 3, 3, 2, 2, pad ? NN_PAD_SAME : NN_PAD_VALID);
            nn_mark_output(g, y);
            check_training(g, op ? "train avg pool" : "train max pool");
            nn_graph_free(g);
        }
    nn_graph *g = nn_graph_new();
    int x = input3(g, 5, 6, 4);
    nn_mark_output(g, nn_gap(g, "gap", x));
    check_training(g, "train global pooling");
    nn_graph_free(g);
    g = nn_graph_new();
    x = nn_input(g, "input", 2, (int[]){5, 4});
    nn_mark_output(g, nn_gap(g, "gap", x));
    check_training(g, "train global pooling over time");
    nn_graph_free(g);
}

static void train_dense_dropout_add_concat_pad(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "input", 1, (int[]){16});
    int d1 = nn_dense(g, "d1", x, 12, 1, NN_ACT_RELU);
    int b = nn_batchnorm(g, "bn", d1, 1e-3f, 0.9f);
    int dr = nn_dropout(g, "drop", b, 0.4f);
    nn_mark_output(g, nn_dense(g, "d2", dr, 3, 0, NN_ACT_SIGMOID));
    randomize(g, 140);
    check_training(g, "train dense + bn + dropout");
    nn_graph_free(g);

    g = nn_graph_new();
    x = nn_input(g, "input", 2, (int[]){4, 6});
    nn_mark_output(g, nn_dense(g, "d", x, 5, 1, NN_ACT_PRELU));
    randomize(g, 141);
    check_training(g, "train dense per time step");
    nn_graph_free(g);

    g = nn_graph_new();
    x = input3(g, 6, 6, 4);
    nn_conv_attr a = conv_attr(3, 1, 1, NN_PAD_SAME, 1, 4, 1, NN_ACT_NONE);
    int c1 = nn_conv2d(g, "c1", x, &a);
    int c2 = nn_conv2d(g, "c2", c1, &a);
    int add = nn_add(g, "add", c1, c2); /* c1 feeds two nodes: its gradient is a sum */
    nn_conv_attr a3 = conv_attr(1, 1, 1, NN_PAD_VALID, 1, 3, 1, NN_ACT_NONE);
    int ins[3] = {nn_conv2d(g, "c3", add, &a3), add, x};
    int cat = nn_concat(g, "cat", 3, ins);
    int p = nn_pad(g, "pad", cat, 1, 0, 2, 1, 2);
    nn_mark_output(g, nn_maxpool(g, "pool", p, 2, 2, 2, 2, NN_PAD_VALID));
    randomize(g, 142);
    check_training(g, "train add + concat + pad");
    nn_graph_free(g);

    g = nn_graph_new();
    x = input3(g, 4, 3, 2);
    int c = nn_conv2d(g, "c", x, &a);
    int r = nn_reshape(g, "r", c, 2, (int[]){12, 4});
    nn_mark_output(g, nn_dense(g, "d", r, 3, 1, NN_ACT_NONE));
    randomize(g, 143);
    check_training(g, "train reshape");
    nn_graph_free(g);

    for (int mode = 0; mode < 3; mode++) {
        g = nn_graph_new();
        x = input3(g, 5, 7, 3);
        c = nn_conv2d(g, "c", x, &a);
        nn_mark_output(g, nn_resize_bilinear(g, "rs", c, mode == 2 ? 4 : 11, mode == 2 ? 3 : 9, mode == 1, mode == 2));
        randomize(g, 144);
        check_training(g, "train resize");
        nn_graph_free(g);
    }
}

/* Training batch-norms run the backend's fused kernel (nn/bnact.h), which also applies the
 * ReLU/ReLU6 after them; zero-padding folds into the next convolution in training too. */
static void train_fused_batchnorm(void **state) {
    (void)state;
    /* MobileNetV2 blocks: bn+relu6 fused, a stride-2 depthwise with its padding folded, a
     * batch-norm without activation feeding a residual add */
    nn_graph *g = mobilenet_v2_blocks();
    randomize(g, 150);
    check_training(g, "train mobilenet_v2 blocks");
    nn_graph_freeze_bn_stats(g, 1);
    check_training(g, "train mobilenet_v2 blocks, frozen statistics");
    nn_graph_free(g);

    /* a batch-norm read by its activation and by an add (not fused); a sigmoid after one
     * (not a fusable activation); enough values for the kernel to split between threads */
    g = nn_graph_new();
    int x = input3(g, 48, 40, 4);
    /* no bias before the batch-norms: its gradient is zero up to rounding, which bf16
     * makes a large part of a small number on 5,760 rows */
    nn_conv_attr a = conv_attr(1, 1, 1, NN_PAD_VALID, 1, 40, 0, NN_ACT_NONE);
    int b1 = nn_batchnorm(g, "b1", nn_conv2d(g, "c1", x, &a), 1e-3f, 0.9f);
    int r1 = nn_activation(g, "r1", b1, NN_ACT_RELU);
    int s1 = nn_add(g, "s1", b1, r1);
    int b2 = nn_batchnorm(g, "b2", nn_conv2d(g, "c2", s1, &a), 1e-3f, 0.9f);
    int sg = nn_activation(g, "sg", b2, NN_ACT_SIGMOID);
    int b3 = nn_activation(g, "r3", nn_batchnorm(g, "b3", nn_conv2d(g, "c3", sg, &a), 1e-3f, 0.9f), NN_ACT_RELU6);
    nn_mark_output(g, b3);
    randomize(g, 151);
    check_training(g, "train batch-norm consumers");
    nn_graph_free(g);
}

static void train_lstm_video(void **state) {
    (void)state;
    for (int rs = 0; rs < 2; rs++) {
        nn_graph *g = nn_graph_new();
        int x = nn_input(g, "input", 2, (int[]){5, 6});
        nn_mark_output(g, nn_lstm(g, "lstm", x, 7, rs));
        randomize(g, 150 + (uint64_t)rs);
        check_training(g, rs ? "train LSTM sequences" : "train LSTM last");
        nn_graph_free(g);
    }
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "input", 4, (int[]){3, 6, 6, 3});
    int f = nn_fold_time(g, x);
    nn_conv_attr a = conv_attr(3, 2, 1, NN_PAD_SAME, 1, 8, 1, NN_ACT_RELU);
    int c = nn_batchnorm(g, "bn", nn_conv2d(g, "c", f, &a), 1e-3f, 0.9f);
    int u = nn_unfold_time(g, nn_gap(g, "gap", c));
    int l1 = nn_lstm(g, "lstm1", u, 6, 1);
    int l2 = nn_lstm(g, "lstm2", nn_dropout(g, "drop", l1, 0.3f), 4, 0);
    nn_mark_output(g, nn_dense(g, "head", l2, 1, 1, NN_ACT_NONE));
    randomize(g, 152);
    check_training(g, "train video model");
    nn_graph_free(g);
}

int main(void) {
    /* Linking the backend object explicitly (exec.c may refer to it weakly). */
    assert_string_equal(nn_backend_dnnl.name, "oneDNN");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv_variants),
        cmocka_unit_test(depthwise_and_separable),
        cmocka_unit_test(batchnorm_standalone),
        cmocka_unit_test(activations),
        cmocka_unit_test(pooling),
        cmocka_unit_test(dense_dropout_add_concat),
        cmocka_unit_test(pad_reshape_resize),
        cmocka_unit_test(lstm_and_time),
        cmocka_unit_test(fused_patterns),
        cmocka_unit_test(padded_channels),
        cmocka_unit_test(refresh_rereads_parameters),
        cmocka_unit_test(train_conv_and_bn),
        cmocka_unit_test(train_depthwise_separable),
        cmocka_unit_test(train_activations_pooling),
        cmocka_unit_test(train_dense_dropout_add_concat_pad),
        cmocka_unit_test(train_fused_batchnorm),
        cmocka_unit_test(train_lstm_video),
        cmocka_unit_test(train_inner_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
