/* test_nn_graph — graph building: output shapes of every op; 'same' padding resolved as
 * TensorFlow's formula says (checked against it over many sizes, strides, dilations, and
 * against known cases); parameter names "<layer>/<weight>", shapes and counts equal to
 * what Keras reports for the same layers; duplicate names and shape errors are rejected
 * with a message, and the first error sticks; MAC counting; freezing; executor option
 * errors. */
#include "testutil.h"

#include <limits.h>

#include <stdlib.h>
#include <string.h>

#include "nn/graph_internal.h"
#include "nn/nn.h"

static void assert_shape(const nn_graph *g, int id, int ndim, const int *s) {
    assert_true(id >= 0);
    const nn_node *n = nn_graph_node(g, id);
    assert_non_null(n);
    assert_int_equal(n->ndim, ndim);
    for (int i = 0; i < ndim; i++) assert_int_equal(n->shape[i], s[i]);
}

static void assert_param(nn_graph *g, const char *name, int ndim, const int *s) {
    nn_param *p = nn_graph_find_param(g, name);
    if (!p) fail_msg("parameter '%s' missing", name);
    assert_int_equal(p->ndim, ndim);
    size_t c = 1;
    for (int i = 0; i < ndim; i++) {
        assert_int_equal(p->shape[i], s[i]);
        c *= (size_t)s[i];
    }
    assert_int_equal(p->count, c);
}

static void shapes_of_every_op(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "in", 3, (int[]){15, 9, 3});
    nn_conv_attr a = {.kh = 3, .kw = 3, .sh = 2, .sw = 2, .padding = NN_PAD_SAME, .out_c = 8};
    int c = nn_conv2d(g, "c", x, &a);
    assert_shape(g, c, 3, (int[]){8, 5, 8});
    a.padding = NN_PAD_VALID;
    int v = nn_conv2d(g, "v", x, &a);
    assert_shape(g, v, 3, (int[]){7, 4, 8});
    int dw = nn_depthwise2d(g, "dw", c, 3, 3, 1, 1, NN_PAD_SAME, 0, NN_ACT_RELU);
    assert_shape(g, dw, 3, (int[]){8, 5, 8});
    int sp = nn_separable2d(g, "sp", dw, 16, 3, 3, 2, 2, NN_PAD_VALID, 1, NN_ACT_NONE);
    assert_shape(g, sp, 3, (int[]){3, 2, 16});
    int bn = nn_batchnorm(g, "bn", sp, 1e-3f, 0.99f);
    assert_shape(g, bn, 3, (int[]){3, 2, 16});
    int mp = nn_maxpool(g, "mp", c, 3, 3, 2, 2, NN_PAD_SAME);
    assert_shape(g, mp, 3, (int[]){4, 3, 8});
    int ap = nn_avgpool(g, "ap", c, 2, 2, 2, 2, NN_PAD_VALID);
    assert_shape(g, ap, 3, (int[]){4, 2, 8});
    int gp = nn_gap(g, "gap", bn);
    assert_shape(g, gp, 1, (int[]){16});
    int d = nn_dense(g, "d", gp, 5, 1, NN_ACT_SIGMOID);
    assert_shape(g, d, 1, (int[]){5});
    int dr = nn_dropout(g, "drop", d, 0.5f);
    assert_shape(g, dr, 1, (int[]){5});
    int ad = nn_add(g, "add", d, dr);
    assert_shape(g, ad, 1, (int[]){5});
    int ct = nn_concat(g, "cat", 3, (int[]){c, c, dw});
    assert_shape(g, ct, 3, (int[]){8, 5, 24});
    int pd = nn_pad(g, "pad", c, 1, 2, 0, 3, 4);
    assert_shape(g, pd, 3, (int[]){11, 8, 12});
    int rs = nn_reshape(g, "rs", c, 2, (int[]){-1, 8});
    assert_shape(g, rs, 2, (int[]){40, 8});
    int l1 = nn_lstm(g, "l1", rs, 6, 1);
    assert_shape(g, l1, 2, (int[]){40, 6});
    int l2 = nn_lstm(g, "l2", l1, 4, 0);
    assert_shape(g, l2, 1, (int[]){4});
    int ds = nn_dense(g, "ds", l1, 3, 0, NN_ACT_NONE);
    assert_shape(g, ds, 2, (int[]){40, 3});
    int re = nn_resize_bilinear(g, "re", c, 16, 10, 0, 1);
    assert_shape(g, re, 3, (int[]){16, 10, 8});
    assert_null(nn_graph_error(g));
    assert_int_equal(nn_graph_input(g), x);
    assert_int_equal(nn_graph_find_node(g, "gap"), gp);
    assert_int_equal(nn_graph_find_node(g, "nope"), -1);
    nn_graph_free(g);

    /* Time folding: {T,H,W,C} -> {H,W,C} at batch*T -> ... -> {T,C}. */
    g = nn_graph_new();
    x = nn_input(g, "clip", 4, (int[]){5, 6, 6, 3});
    int f = nn_fold_time(g, x);
    assert_shape(g, f, 3, (int[]){6, 6, 3});
    assert_int_equal(nn_graph_node(g, f)->batch_mul, 5);
    int e = nn_gap(g, "gap", f);
    int u = nn_unfold_time(g, e);
    assert_shape(g, u, 2, (int[]){5, 3});
    assert_int_equal(nn_graph_node(g, u)->batch_mul, 1);
    assert_null(nn_graph_error(g));
    nn_graph_free(g);
}

/* TensorFlow's rule, written out independently: out = ceil(in/s), pad = max((out-1)*s +
 * (k-1)*d + 1 - in, 0), top/left gets floor(pad/2). */
static void same_padding_matches_tensorflow(void **state) {
    (void)state;
    for (int in = 1; in <= 17; in++)
        for (int k = 1; k <= 5; k++)
            for (int s = 1; s <= 3; s++)
                for (int d = 1; d <= 2; d++) {
                    nn_graph *g = nn_graph_new();
                    int x = nn_input(g, "in", 3, (int[]){in, 20, 1});
                    nn_conv_attr a = {.kh = k, .kw = 1, .sh = s, .dh = d, .padding = NN_PAD_SAME, .out_c = 1};
                    int c = nn_conv2d(g, "c", x, &a);
                    assert_null(nn_graph_error(g));
                    int out = (in + s - 1) / s;
                    int pad = (out - 1) * s + (k - 1) * d + 1 - in;
                    if (pad < 0) pad = 0;
                    const nn_node *n = nn_graph_node(g, c);
                    assert_int_equal(n->shape[0], out);
                    assert_int_equal(n->a.conv.pad_t, pad / 2);
                    assert_int_equal(n->a.conv.pad_b, pad - pad / 2);
                    assert_int_equal(n->a.conv.pad_l, 0);
                    assert_int_equal(n->a.conv.pad_r, 0);
                    nn_graph_free(g);
                }
    /* Known cases: Xception's entry 3x3 stride 2 on 299 (valid: 149), a same 3x3/2 on 224
     * pads (0,1), on 225 pads (1,1); a same 2x2/1 pads (0,1); 4x4/1 pads (1,2). */
    struct { int in, k, s; nn_padding p; int out, t, b; } known[] = {
        {299, 3, 2, NN_PAD_VALID, 149, 0, 0}, {224, 3, 2, NN_PAD_SAME, 112, 0, 1},
        {225, 3, 2, NN_PAD_SAME, 113, 1, 1},  {5, 2, 1, NN_PAD_SAME, 5, 0, 1},
        {7, 4, 1, NN_PAD_SAME, 7, 1, 2},      {128, 5, 2, NN_PAD_SAME, 64, 1, 2},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        nn_graph *g = nn_graph_new();
        int x = nn_input(g, "in", 3, (int[]){known[i].in, known[i].in, 1});
        int p = nn_maxpool(g, "p", x, known[i].k, known[i].k, known[i].s, known[i].s, known[i].p);
        const nn_node *n = nn_graph_node(g, p);
        assert_int_equal(n->shape[0], known[i].out);
        assert_int_equal(n->shape[1], known[i].out);
        assert_int_equal(n->a.pool.pad_t, known[i].t);
        assert_int_equal(n->a.pool.pad_b, known[i].b);
        assert_int_equal(n->a.pool.pad_l, known[i].t);
        assert_int_equal(n->a.pool.pad_r, known[i].b);
        nn_graph_free(g);
    }
}

/* Parameter names, shapes and counts as Keras's model.summary() gives them:
 * Conv2D(32, 3) on 3 channels 896; BatchNormalization(32) 128; SeparableConv2D(64, 3) on
 * 32 channels 288 + 2048 + 64 = 2400; DepthwiseConv2D(3) on 64, no bias, 576; Dense(10) on
 * 64 650; LSTM(16) on 8 features 4*(8*16 + 16*16 + 16) = 1600. */
static void parameter_names_and_counts_match_keras(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "input_1", 3, (int[]){16, 16, 3});
    nn_conv_attr a = {.kh = 3, .kw = 3, .padding = NN_PAD_SAME, .out_c = 32, .has_bias = 1, .act = NN_ACT_RELU};
    int c = nn_conv2d(g, "block1_conv1", x, &a);
    int b = nn_batchnorm(g, "block1_conv1_bn", c, 1e-3f, 0.99f);
    int s = nn_separable2d(g, "block2_sepconv1", b, 64, 3, 3, 1, 1, NN_PAD_SAME, 1, NN_ACT_NONE);
    int d = nn_depthwise2d(g, "dw", s, 3, 3, 1, 1, NN_PAD_SAME, 0, NN_ACT_NONE);
    int p = nn_gap(g, "avg_pool", d);
    int fc = nn_dense(g, "predictions", p, 10, 1, NN_ACT_NONE);
    int r = nn_reshape(g, "seq", fc, 2, (int[]){5, 2});
    int l = nn_lstm(g, "lstm", r, 16, 0);
    int pr = nn_activation(g, "prelu", l, NN_ACT_PRELU);
    nn_mark_output(g, pr);
    assert_null(nn_graph_error(g));
    assert_param(g, "block1_conv1/kernel", 4, (int[]){3, 3, 3, 32});
    assert_param(g, "block1_conv1/bias", 1, (int[]){32});
    assert_param(g, "block1_conv1_bn/gamma", 1, (int[]){32});
    assert_param(g, "block1_conv1_bn/beta", 1, (int[]){32});
    assert_param(g, "block1_conv1_bn/moving_mean", 1, (int[]){32});
    assert_param(g, "block1_conv1_bn/moving_variance", 1, (int[]){32});
    assert_param(g, "block2_sepconv1/depthwise_kernel", 4, (int[]){3, 3, 32, 1});
    assert_param(g, "block2_sepconv1/pointwise_kernel", 4, (int[]){1, 1, 32, 64});
    assert_param(g, "block2_sepconv1/bias", 1, (int[]){64});
    assert_param(g, "dw/depthwise_kernel", 4, (int[]){3, 3, 64, 1});
    assert_null(nn_graph_find_param(g, "dw/bias"));
    assert_param(g, "predictions/kernel", 2, (int[]){64, 10});
    assert_param(g, "lstm/kernel", 2, (int[]){2, 64});
    assert_param(g, "lstm/recurrent_kernel", 2, (int[]){16, 64});
    assert_param(g, "lstm/bias", 1, (int[]){64});
    assert_param(g, "prelu/alpha", 1, (int[]){16});
    assert_int_equal(nn_graph_param_count(g), 16);
    assert_int_equal(nn_graph_num_weights(g), 896 + 128 + 2400 + 576 + 650 + 4 * (2 * 16 + 16 * 16 + 16) + 16);
    /* Statistics are flagged and never trainable; gamma/moving_variance start at 1. */
    nn_param *mv = nn_graph_find_param(g, "block1_conv1_bn/moving_variance");
    assert_true(mv->is_statistic);
    assert_false(mv->trainable);
    assert_true(mv->data[0] == 1.0f);
    assert_true(nn_graph_find_param(g, "block1_conv1_bn/gamma")->trainable);
    nn_graph_free(g);
}

/* A scope prefixes the names of layers and their parameters built under it, lets the same
 * names be built twice, leaves glue unnamed, and ends with NULL; one too long is an error. */
static void scopes_prefix_names(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "in", 3, (int[]){8, 8, 3});
    nn_conv_attr a = {.kh = 3, .kw = 3, .out_c = 4, .has_bias = 1};
    int y[2];
    for (int i = 0; i < 2; i++) {
        nn_graph_set_scope(g, i ? "b/" : "a/");
        y[i] = nn_gap(g, "", nn_conv2d(g, "conv", x, &a));
        assert_true(y[i] >= 0);
        assert_string_equal(nn_graph_node(g, y[i])->name, "");
    }
    nn_graph_set_scope(g, NULL);
    assert_true(nn_conv2d(g, "conv", x, &a) >= 0);
    assert_null(nn_graph_error(g));
    assert_true(nn_graph_find_node(g, "a/conv") >= 0 && nn_graph_find_node(g, "b/conv") >= 0);
    assert_non_null(nn_graph_find_param(g, "b/conv/kernel"));
    assert_non_null(nn_graph_find_param(g, "a/conv/bias"));
    assert_non_null(nn_graph_find_param(g, "conv/kernel"));
    assert_int_equal(nn_graph_param_count(g), 6);
    nn_graph_set_scope(g, "a-scope-of-16-ch");
    assert_non_null(nn_graph_error(g));
    assert_non_null(strstr(nn_graph_error(g), "too long"));
    nn_graph_free(g);
}

static void errors_are_reported_and_sticky(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "in", 3, (int[]){8, 8, 3});
    nn_conv_attr a = {.kh = 3, .kw = 3, .out_c = 4};
    assert_true(nn_conv2d(g, "conv", x, &a) >= 0);
    assert_int_equal(nn_conv2d(g, "conv", x, &a), -1);
    assert_non_null(nn_graph_error(g));
    assert_non_null(strstr(nn_graph_error(g), "duplicate"));
    assert_non_null(strstr(nn_graph_error(g), "conv"));
    /* Later calls fail too and keep the first message. */
    assert_int_equal(nn_gap(g, "gap", x), -1);
    assert_non_null(strstr(nn_graph_error(g), "duplicate"));
    nn_graph_free(g);

    struct {
        const char *what, *needle;
    } cases[] = {
        {"add of different shapes", "differ"},   {"kernel larger than input", "does not fit"},
        {"groups not dividing", "groups"},      {"unknown node", "does not exist"},
        {"lstm on an image", "sequence"},       {"reshape count", "cannot become"},
        {"duplicate param via separable", "duplicate"}, {"second input", "already has an input"},
        {"unfold without fold", "fold_time"},   {"resize both flags", "exclude"},
        {"dropout rate 1", "rate"},             {"concat of different heights", "only the last axis"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        g = nn_graph_new();
        int in = nn_input(g, "in", 3, (int[]){6, 6, 4});
        int q = nn_maxpool(g, "q", in, 2, 2, 2, 2, NN_PAD_VALID);
        int r = -2;
        nn_conv_attr ca = {.kh = 3, .kw = 3, .out_c = 4};
        switch (i) {
        case 0: r = nn_add(g, "a", in, q); break;
        case 1: ca.kh = 7; r = nn_conv2d(g, "c", in, &ca); break;
        case 2: ca.groups = 3; r = nn_conv2d(g, "c", in, &ca); break;
        case 3: r = nn_gap(g, "g", 42); break;
        case 4: r = nn_lstm(g, "l", in, 4, 0); break;
        case 5: r = nn_reshape(g, "r", in, 1, (int[]){100}); break;
        case 6:
            nn_conv2d(g, "s/depthwise", in, &ca);
            r = nn_separable2d(g, "s", in, 4, 3, 3, 1, 1, NN_PAD_SAME, 0, NN_ACT_NONE);
            break;
        case 7: r = nn_input(g, "in2", 1, (int[]){3}); break;
        case 8: r = nn_unfold_time(g, q); break;
        case 9: r = nn_resize_bilinear(g, "rz", in, 3, 3, 1, 1); break;
        case 10: r = nn_dropout(g, "d", in, 1.0f); break;
        case 11: r = nn_concat(g, "cc", 2, (int[]){in, q}); break;
        }
        if (r != -1 || !nn_graph_error(g) || !strstr(nn_graph_error(g), cases[i].needle))
            fail_msg("%s: returned %d, error '%s' (expected to mention '%s')", cases[i].what, r,
                     nn_graph_error(g) ? nn_graph_error(g) : "(none)", cases[i].needle);
        /* An executor refuses a graph that was built with an error, saying why. */
        dfd_error e;
        nn_exec *ex;
        nn_exec_opts o;
        nn_exec_opts_default(&o);
        o.backend = NN_BACKEND_REF;
        assert_int_equal(nn_exec_create(g, &o, &ex, &e), DFD_E_ARG);
        assert_non_null(strstr(e.message, cases[i].needle));
        assert_null(ex);
        nn_graph_free(g);
    }
}

/* Sizes that do not fit an int are refused with a message instead of overflowing (a
 * huge dilation read from an untrusted model used to overflow (k-1)*d + 1, issue 18). */
static void huge_windows_are_refused_not_overflowed(void **state) {
    (void)state;
    const int huge[] = {1 << 30, INT_MAX};
    const nn_padding modes[] = {NN_PAD_VALID, NN_PAD_SAME};
    for (int h = 0; h < 2; h++)
        for (int m = 0; m < 2; m++) {
            nn_graph *g = nn_graph_new();
            int in = nn_input(g, "in", 3, (int[]){8, 8, 2});
            nn_conv_attr a = {.kh = 3, .kw = 3, .dh = huge[h], .dw = 1, .out_c = 2, .padding = modes[m]};
            assert_int_equal(nn_conv2d(g, "c", in, &a), -1);
            assert_non_null(nn_graph_error(g));
            if (!strstr(nn_graph_error(g), "too large to represent"))
                fail_msg("dilation %d, mode %d: '%s'", huge[h], (int)modes[m], nn_graph_error(g));
            nn_graph_free(g);
        }
    /* A huge kernel with a huge explicit padding: the padded span must not overflow. */
    nn_graph *g = nn_graph_new();
    int in = nn_input(g, "in", 3, (int[]){8, 8, 2});
    nn_conv_attr a = {.kh = 1, .kw = 1, .out_c = 2, .padding = NN_PAD_EXPLICIT, .pad_t = INT_MAX, .pad_b = INT_MAX};
    assert_int_equal(nn_conv2d(g, "c", in, &a), -1);
    assert_non_null(strstr(nn_graph_error(g), "too large to represent"));
    nn_graph_free(g);
    /* Padding and concatenation that would pass INT_MAX. */
    g = nn_graph_new();
    in = nn_input(g, "in", 3, (int[]){8, 8, 2});
    assert_int_equal(nn_pad(g, "p", in, INT_MAX, INT_MAX, 0, 0, 0), -1);
    assert_non_null(strstr(nn_graph_error(g), "too large"));
    nn_graph_free(g);
    g = nn_graph_new();
    in = nn_input(g, "in", 1, (int[]){INT_MAX / 2 + 1});
    assert_int_equal(nn_concat(g, "cc", 2, (int[]){in, in}), -1);
    assert_non_null(strstr(nn_graph_error(g), "too large"));
    nn_graph_free(g);
}

static void macs_are_counted_per_item(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "in", 3, (int[]){32, 32, 3});
    nn_conv_attr a = {.kh = 3, .kw = 3, .padding = NN_PAD_SAME, .out_c = 32, .has_bias = 1};
    int c = nn_conv2d(g, "c", x, &a);                                        /* 32*32*32*27 */
    int s = nn_separable2d(g, "s", c, 64, 3, 3, 2, 2, NN_PAD_SAME, 0, NN_ACT_NONE); /* 16*16*(32*9 + 32*64) */
    int p = nn_gap(g, "p", s);
    nn_dense(g, "d", p, 10, 1, NN_ACT_NONE); /* 640 */
    assert_null(nn_graph_error(g));
    assert_int_equal(nn_graph_macs(g), 32ull * 32 * 32 * 27 + 16ull * 16 * (32 * 9 + 32 * 64) + 640);
    nn_graph_free(g);

    /* Time-folded layers count once per frame; an LSTM T*(C+U)*4U. */
    g = nn_graph_new();
    x = nn_input(g, "clip", 4, (int[]){4, 2, 2, 3});
    int f = nn_fold_time(g, x);
    nn_conv_attr b = {.kh = 1, .kw = 1, .out_c = 5};
    int e = nn_conv2d(g, "e", f, &b);
    int gp = nn_gap(g, "gp", e);
    int u = nn_unfold_time(g, gp);
    nn_lstm(g, "l", u, 7, 0);
    assert_null(nn_graph_error(g));
    assert_int_equal(nn_graph_macs(g), 4ull * (2 * 2 * 3 * 5) + 4ull * (5 + 7) * 4 * 7);
    nn_graph_free(g);
}

static void freezing_from_a_layer(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "in", 3, (int[]){8, 8, 3});
    nn_conv_attr a = {.kh = 3, .kw = 3, .out_c = 4, .has_bias = 1};
    int c1 = nn_conv2d(g, "c1", x, &a);
    int b1 = nn_batchnorm(g, "b1", c1, 1e-3f, 0.99f);
    int s = nn_separable2d(g, "s", b1, 4, 3, 3, 1, 1, NN_PAD_SAME, 1, NN_ACT_NONE);
    int d = nn_dense(g, "d", nn_gap(g, "p", s), 1, 1, NN_ACT_NONE);
    (void)d;
    assert_null(nn_graph_error(g));
    /* Unfreeze from the separable layer: c1 and b1 frozen, both halves of s trainable. */
    assert_int_equal(nn_graph_set_trainable(g, "s", 1), DFD_OK);
    assert_false(nn_graph_find_param(g, "c1/kernel")->trainable);
    assert_false(nn_graph_find_param(g, "b1/gamma")->trainable);
    assert_false(nn_graph_node(g, c1)->trainable);
    assert_true(nn_graph_find_param(g, "s/depthwise_kernel")->trainable);
    assert_true(nn_graph_find_param(g, "s/pointwise_kernel")->trainable);
    assert_true(nn_graph_find_param(g, "d/kernel")->trainable);
    assert_false(nn_graph_find_param(g, "b1/moving_mean")->trainable); /* a statistic stays untrainable */
    /* Everything again; then all frozen. */
    assert_int_equal(nn_graph_set_trainable(g, NULL, 1), DFD_OK);
    assert_true(nn_graph_find_param(g, "c1/kernel")->trainable);
    assert_false(nn_graph_find_param(g, "b1/moving_variance")->trainable);
    assert_int_equal(nn_graph_set_trainable(g, NULL, 0), DFD_OK);
    assert_false(nn_graph_find_param(g, "d/bias")->trainable);
    assert_int_equal(nn_graph_set_trainable(g, "no_such_layer", 1), DFD_E_NOT_FOUND);
    nn_graph_freeze_bn_stats(g, 1);
    assert_true(nn_graph_node(g, b1)->a.bn.frozen_stats);
    nn_graph_free(g);
}

static void executor_option_errors(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "in", 1, (int[]){3});
    int d = nn_dense(g, "d", x, 2, 1, NN_ACT_NONE);
    nn_exec_opts o;
    nn_exec_opts_default(&o);
    assert_int_equal(o.backend, NN_BACKEND_DNNL);
    assert_int_equal(o.precision, NN_PREC_AUTO);
    o.backend = NN_BACKEND_REF;
    nn_exec *ex;
    dfd_error e;
    assert_int_equal(nn_exec_create(g, &o, &ex, &e), DFD_E_ARG); /* no output yet */
    assert_non_null(strstr(e.message, "output"));
    nn_mark_output(g, d);
    o.max_batch = 0;
    assert_int_equal(nn_exec_create(g, &o, &ex, &e), DFD_E_ARG);
    assert_non_null(strstr(e.message, "max_batch"));
    o.max_batch = 2;
    o.precision = NN_PREC_BF16;
    assert_int_equal(nn_exec_create(g, &o, &ex, &e), DFD_E_UNSUPPORTED);
    o.precision = NN_PREC_AUTO; /* the reference backend resolves AUTO to fp32 */
    assert_int_equal(nn_exec_create(g, &o, &ex, &e), DFD_OK);
    assert_int_equal(nn_exec_precision(ex), NN_PREC_F32);
    float in[9] = {0};
    assert_int_equal(nn_forward(ex, in, 3, &e), DFD_E_ARG); /* over max_batch */
    assert_null(nn_output(ex, 0, NULL));                   /* no successful pass yet */
    assert_int_equal(nn_forward(ex, in, 2, &e), DFD_OK);
    size_t n;
    assert_non_null(nn_output(ex, 0, &n));
    assert_int_equal(n, 4);
    assert_null(nn_output(ex, 1, &n));
    assert_int_equal(nn_backward(ex, NULL, &e), DFD_E_ARG); /* an inference executor */
    assert_non_null(strstr(e.message, "training"));
    assert_null(nn_input_grad(ex));
    nn_exec_free(ex);
    /* oneDNN inference AUTO precision follows the CPU (when that backend is built). */
    o.backend = NN_BACKEND_DNNL;
    int rc = nn_exec_create(g, &o, &ex, &e);
    if (rc == DFD_OK) {
        assert_int_equal(nn_exec_precision(ex), nn_cpu_has_bf16() ? NN_PREC_BF16 : NN_PREC_F32);
        nn_exec_free(ex);
    } else {
        assert_int_equal(rc, DFD_E_UNSUPPORTED);
        print_message("note: oneDNN backend not built: %s\n", e.message);
    }
    assert_non_null(nn_cpu_isa());
    nn_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shapes_of_every_op),
        cmocka_unit_test(same_padding_matches_tensorflow),
        cmocka_unit_test(parameter_names_and_counts_match_keras),
        cmocka_unit_test(errors_are_reported_and_sticky),
        cmocka_unit_test(scopes_prefix_names),
        cmocka_unit_test(huge_windows_are_refused_not_overflowed),
        cmocka_unit_test(macs_are_counted_per_item),
        cmocka_unit_test(freezing_from_a_layer),
        cmocka_unit_test(executor_option_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
