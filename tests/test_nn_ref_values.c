/* test_nn_ref_values — the reference backend's forward values equal small cases worked
 * out by hand or straight from the defining equations: a 3x3 conv on a 4x4 input (valid
 * and 'same'), the Keras kernel layout {KH,KW,Cin,Cout}, depthwise and strided conv, an
 * LSTM step from the Keras equations, TF 'same' average/max pooling at the borders, batch
 * norm in inference and training (Keras moving-average momentum), activations, dense per
 * time step, pad/concat/GAP, bilinear resize in TFLite's three modes, dropout (identity
 * in inference, inverted scaling and a deterministic mask in training), time folding. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/nn.h"

/* Runs g on x (batch items) with the reference backend; returns output `which` copied. */
static float *run(nn_graph *g, const float *x, int batch, int training, int which, size_t *n) {
    assert_null(nn_graph_error(g));
    nn_exec_opts o;
    nn_exec_opts_default(&o);
    o.backend = NN_BACKEND_REF;
    o.max_batch = batch;
    o.training = training;
    nn_exec *ex;
    dfd_error e;
    assert_int_equal(nn_exec_create(g, &o, &ex, &e), DFD_OK);
    assert_int_equal(nn_forward(ex, x, batch, &e), DFD_OK);
    size_t cnt;
    const float *y = nn_output(ex, which, &cnt);
    assert_non_null(y);
    float *c = malloc(cnt * sizeof(float));
    memcpy(c, y, cnt * sizeof(float));
    *n = cnt;
    nn_exec_free(ex);
    return c;
}

static void expect(const float *got, const double *want, size_t n, double tol) {
    for (size_t k = 0; k < n; k++) {
        if (fabs(got[k] - want[k]) > tol) fail_msg("value %zu: got %.7g, expected %.7g", k, (double)got[k], want[k]);
    }
}

static void set_param(nn_graph *g, const char *name, const float *v) {
    nn_param *p = nn_graph_find_param(g, name);
    assert_non_null(p);
    memcpy(p->data, v, p->count * sizeof(float));
}

/* Input 1..16 in a 4x4 grid; kernel all ones except a centre of 2 (so each output is the
 * window sum plus its centre value) and bias 0.5. */
static void conv3x3_on_4x4_by_hand(void **state) {
    (void)state;
    float x[16], k[9];
    for (int i = 0; i < 16; i++) x[i] = (float)(i + 1);
    for (int i = 0; i < 9; i++) k[i] = i == 4 ? 2.0f : 1.0f;
    for (int same = 0; same <= 1; same++) {
        nn_graph *g = nn_graph_new();
        int in = nn_input(g, "in", 3, (int[]){4, 4, 1});
        nn_conv_attr a = {.kh = 3, .kw = 3, .padding = same ? NN_PAD_SAME : NN_PAD_VALID, .out_c = 1, .has_bias = 1};
        int c = nn_conv2d(g, "conv", in, &a);
        nn_mark_output(g, c);
        set_param(g, "conv/kernel", k);
        set_param(g, "conv/bias", (float[]){0.5f});
        size_t n;
        float *y = run(g, x, 1, 0, 0, &n);
        if (!same) {
            /* windows: rows 1-3 x cols 1-3 = 1+2+3+5+6+7+9+10+11 = 54, centre 6 -> 60.5 */
            const double want[4] = {54 + 6 + 0.5, 63 + 7 + 0.5, 90 + 10 + 0.5, 99 + 11 + 0.5};
            assert_int_equal(n, 4);
            expect(y, want, 4, 1e-5);
        } else {
            /* 'same' zero-pads one all round: corner (0,0) sees 1,2,5,6 with centre 1:
             * 14 + 1 + .5; edge (0,1) sees 1,2,3,5,6,7 = 24, centre 2; centre (1,1) = 60.5. */
            assert_int_equal(n, 16);
            const double want_some[3] = {14 + 1 + 0.5, 24 + 2 + 0.5, 60.5};
            float got[3] = {y[0], y[1], y[5]};
            expect(got, want_some, 3, 1e-5);
            /* bottom-right corner: 11,12,15,16 = 54, centre 16 */
            assert_true(fabsf(y[15] - (54 + 16 + 0.5f)) < 1e-5f);
        }
        free(y);
        nn_graph_free(g);
    }
}

/* A 1x1 conv with kernel {1,1,Cin=2,Cout=3} = [[1,2,3],[4,5,6]]: out_co = sum_ci x_ci K[ci][co]. */
static void conv_kernel_layout_is_keras(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int in = nn_input(g, "in", 3, (int[]){1, 2, 2});
    nn_conv_attr a = {.kh = 1, .kw = 1, .out_c = 3};
    int c = nn_conv2d(g, "conv", in, &a);
    nn_mark_output(g, c);
    set_param(g, "conv/kernel", (float[]){1, 2, 3, 4, 5, 6});
    size_t n;
    float *y = run(g, (float[]){1, 10, 2, 20}, 1, 0, 0, &n);
    const double want[6] = {1 + 40, 2 + 50, 3 + 60, 2 + 80, 4 + 100, 6 + 120};
    expect(y, want, 6, 1e-5);
    free(y);
    nn_graph_free(g);
}

/* Depthwise 2x2 stride 2 valid on a 2x4x2 input: each channel its own kernel. And a 1-D
 * strided dilated case: 1x5 input, kernel 1x2 dilation 3 -> x0*k0 + x3*k1, x1*k0 + x4*k1. */
static void depthwise_and_dilated_by_hand(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int in = nn_input(g, "in", 3, (int[]){2, 4, 2});
    int d = nn_depthwise2d(g, "dw", in, 2, 2, 2, 2, NN_PAD_VALID, 0, NN_ACT_NONE);
    nn_mark_output(g, d);
    /* kernel {2,2,C=2,1}: channel 0 weights 1,1,1,1; channel 1 weights 1,0,0,-1 */
    set_param(g, "dw/depthwise_kernel", (float[]){1, 1, 1, 0, 1, 0, 1, -1});
    float x[16];
    for (int i = 0; i < 16; i++) x[i] = (float)i; /* (y, x, c) -> (y*4 + x)*2 + c */
    size_t n;
    float *y = run(g, x, 1, 0, 0, &n);
    /* window cols 0-1: c0 = 0+2+8+10 = 20; c1 = x(0,0,1) - x(1,1,1) = 1 - 11 = -10
     * window cols 2-3: c0 = 4+6+12+14 = 36; c1 = 5 - 15 = -10 */
    const double want[4] = {20, -10, 36, -10};
    assert_int_equal(n, 4);
    expect(y, want, 4, 1e-5);
    free(y);
    nn_graph_free(g);

    g = nn_graph_new();
    in = nn_input(g, "in", 3, (int[]){1, 5, 1});
    nn_conv_attr a = {.kh = 1, .kw = 2, .dw = 3, .out_c = 1};
    int c = nn_conv2d(g, "conv", in, &a);
    nn_mark_output(g, c);
    set_param(g, "conv/kernel", (float[]){2, 10});
    y = run(g, (float[]){1, 2, 3, 4, 5}, 1, 0, 0, &n);
    const double want2[2] = {2 * 1 + 10 * 4, 2 * 2 + 10 * 5};
    assert_int_equal(n, 2);
    expect(y, want2, 2, 1e-5);
    free(y);
    nn_graph_free(g);
}

static double sig(double x) { return 1 / (1 + exp(-x)); }

/* Two steps of a 1-unit LSTM on a 2-feature input, from the Keras equations:
 * z = x W + h R + b; i, f, o = sigmoid; g = tanh; c = f c + i g; h = o tanh(c). */
static void lstm_two_steps_from_keras_equations(void **state) {
    (void)state;
    const float W[8] = {0.5f, -0.3f, 0.8f, 0.1f, /* feature 0 -> i f c o */
                        0.2f, 0.4f, -0.6f, 0.7f};
    const float R[4] = {0.3f, -0.2f, 0.5f, 0.9f};
    const float B[4] = {0.1f, 1.0f, -0.1f, 0.2f};
    const float x[4] = {1.0f, -1.0f, 0.5f, 2.0f}; /* t0 = (1,-1), t1 = (0.5, 2) */
    for (int seq = 0; seq <= 1; seq++) {
        nn_graph *g = nn_graph_new();
        int in = nn_input(g, "in", 2, (int[]){2, 2});
        int l = nn_lstm(g, "lstm", in, 1, seq);
        nn_mark_output(g, l);
        set_param(g, "lstm/kernel", W);
        set_param(g, "lstm/recurrent_kernel", R);
        set_param(g, "lstm/bias", B);
        size_t n;
        float *y = run(g, x, 1, 0, 0, &n);
        double h = 0, c = 0, hs[2];
        for (int t = 0; t < 2; t++) {
            double z[4];
            for (int j = 0; j < 4; j++) z[j] = x[2 * t] * W[j] + x[2 * t + 1] * W[4 + j] + h * R[j] + B[j];
            double i = sig(z[0]), f = sig(z[1]), gg = tanh(z[2]), o = sig(z[3]);
            c = f * c + i * gg;
            h = o * tanh(c);
            hs[t] = h;
        }
        if (seq) {
            assert_int_equal(n, 2);
            expect(y, hs, 2, 1e-6);
        } else {
            assert_int_equal(n, 1);
            expect(y, &hs[1], 1, 1e-6);
        }
        free(y);
        nn_graph_free(g);
    }
}

/* 3x3 input 1..9, 2x2 pool stride 2 'same': TF pads one row/column at the bottom/right
 * only, and the average counts only real values: (1,2,4,5)/4 = 3, (3,6)/2 = 4.5,
 * (7,8)/2 = 7.5, 9/1 = 9. Max pool: 5, 6, 8, 9. A 3x3 stride-1 'same' average at the
 * corner is (1+2+4+5)/4 = 3 (not /9). */
static void same_pooling_at_borders(void **state) {
    (void)state;
    float x[9];
    for (int i = 0; i < 9; i++) x[i] = (float)(i + 1);
    for (int is_max = 0; is_max <= 1; is_max++) {
        nn_graph *g = nn_graph_new();
        int in = nn_input(g, "in", 3, (int[]){3, 3, 1});
        int p = is_max ? nn_maxpool(g, "p", in, 2, 2, 2, 2, NN_PAD_SAME) : nn_avgpool(g, "p", in, 2, 2, 2, 2, NN_PAD_SAME);
        int q = nn_avgpool(g, "q", in, 3, 3, 1, 1, NN_PAD_SAME);
        nn_mark_output(g, p);
        nn_mark_output(g, q);
        const nn_node *pn = nn_graph_node(g, p);
        assert_int_equal(pn->a.pool.pad_t, 0);
        assert_int_equal(pn->a.pool.pad_b, 1);
        size_t n;
        float *y = run(g, x, 1, 0, 0, &n);
        const double want_avg[4] = {3, 4.5, 7.5, 9}, want_max[4] = {5, 6, 8, 9};
        assert_int_equal(n, 4);
        expect(y, is_max ? want_max : want_avg, 4, 1e-6);
        free(y);
        y = run(g, x, 1, 0, 1, &n);
        /* corner 3, edge (0,1): (1+2+3+4+5+6)/6 = 3.5, centre 5 */
        const double want_q[3] = {3, 3.5, 5};
        float got[3] = {y[0], y[1], y[4]};
        expect(got, want_q, 3, 1e-6);
        free(y);
        nn_graph_free(g);
    }
}

static void batchnorm_inference_and_training(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int in = nn_input(g, "in", 1, (int[]){2});
    int b = nn_batchnorm(g, "bn", in, 0.001f, 0.9f);
    nn_mark_output(g, b);
    set_param(g, "bn/gamma", (float[]){2, 0.5f});
    set_param(g, "bn/beta", (float[]){1, -1});
    set_param(g, "bn/moving_mean", (float[]){0.5f, -2});
    set_param(g, "bn/moving_variance", (float[]){4, 0.25f});
    const float x[4] = {1.5f, 0, 3.5f, 2}; /* two items */
    size_t n;
    float *y = run(g, x, 2, 0, 0, &n);
    const double want[4] = {2 * (1.5 - 0.5) / sqrt(4.001) + 1, 0.5 * (0 + 2) / sqrt(0.251) - 1,
                            2 * (3.5 - 0.5) / sqrt(4.001) + 1, 0.5 * (2 + 2) / sqrt(0.251) - 1};
    expect(y, want, 4, 1e-5);
    free(y);
    /* Training: batch statistics (mean 2.5 and 1, biased variance 1 and 1) normalise, and
     * the moving averages move by Keras's rule moving = moving*0.9 + batch*0.1. */
    y = run(g, x, 2, 1, 0, &n);
    const double want_t[4] = {2 * (1.5 - 2.5) / sqrt(1.001) + 1, 0.5 * (0 - 1) / sqrt(1.001) - 1,
                              2 * (3.5 - 2.5) / sqrt(1.001) + 1, 0.5 * (2 - 1) / sqrt(1.001) - 1};
    expect(y, want_t, 4, 1e-5);
    const nn_param *mm = nn_graph_find_param(g, "bn/moving_mean"), *mv = nn_graph_find_param(g, "bn/moving_variance");
    const double want_mm[2] = {0.5 * 0.9 + 2.5 * 0.1, -2 * 0.9 + 1 * 0.1};
    const double want_mv[2] = {4 * 0.9 + 1 * 0.1, 0.25 * 0.9 + 1 * 0.1};
    expect(mm->data, want_mm, 2, 1e-6);
    expect(mv->data, want_mv, 2, 1e-6);
    free(y);
    /* Frozen statistics: training uses the moving values and leaves them alone. */
    nn_graph_freeze_bn_stats(g, 1);
    float before[2];
    memcpy(before, mm->data, sizeof before);
    y = run(g, x, 2, 1, 0, &n);
    assert_memory_equal(before, mm->data, sizeof before);
    free(y);
    nn_graph_free(g);
}

static void activations_by_definition(void **state) {
    (void)state;
    const float x[4] = {-2, -0.5f, 1, 7};
    const nn_act acts[] = {NN_ACT_RELU, NN_ACT_RELU6, NN_ACT_SIGMOID, NN_ACT_SWISH, NN_ACT_TANH, NN_ACT_PRELU};
    for (int a = 0; a < 6; a++) {
        nn_graph *g = nn_graph_new();
        int in = nn_input(g, "in", 1, (int[]){4});
        int y = nn_activation(g, "act", in, acts[a]);
        nn_mark_output(g, y);
        if (acts[a] == NN_ACT_PRELU) set_param(g, "act/alpha", (float[]){0.1f, 0.2f, 0.3f, 0.4f});
        size_t n;
        float *out = run(g, x, 1, 0, 0, &n);
        double want[4];
        for (int k = 0; k < 4; k++) {
            double v = x[k];
            switch (acts[a]) {
            case NN_ACT_RELU: want[k] = v > 0 ? v : 0; break;
            case NN_ACT_RELU6: want[k] = v < 0 ? 0 : v > 6 ? 6 : v; break;
            case NN_ACT_SIGMOID: want[k] = 1 / (1 + exp(-v)); break;
            case NN_ACT_SWISH: want[k] = v / (1 + exp(-v)); break;
            case NN_ACT_TANH: want[k] = tanh(v); break;
            default: want[k] = v > 0 ? v : (0.1 + 0.1 * k) * v; break;
            }
        }
        expect(out, want, 4, 1e-6);
        free(out);
        nn_graph_free(g);
    }
}

/* Dense on a {T=2, C=2} sequence applies the same kernel to each step. */
static void dense_per_step_gap_pad_concat(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int in = nn_input(g, "in", 2, (int[]){2, 2});
    int d = nn_dense(g, "fc", in, 1, 1, NN_ACT_NONE);
    nn_mark_output(g, d);
    set_param(g, "fc/kernel", (float[]){2, 3});
    set_param(g, "fc/bias", (float[]){1});
    size_t n;
    float *y = run(g, (float[]){1, 1, 2, -1}, 1, 0, 0, &n);
    const double want[2] = {2 + 3 + 1, 4 - 3 + 1};
    assert_int_equal(n, 2);
    expect(y, want, 2, 1e-6);
    free(y);
    nn_graph_free(g);

    /* 2x2x1 -> pad (top 1, right 1, +1 channel) -> 3x3x2; concat with itself -> 4 channels; GAP. */
    g = nn_graph_new();
    in = nn_input(g, "in", 3, (int[]){2, 2, 1});
    int p = nn_pad(g, "pad", in, 1, 0, 0, 1, 1);
    int c = nn_concat(g, "cat", 2, (int[]){p, p});
    int gp = nn_gap(g, "gap", c);
    nn_mark_output(g, p);
    nn_mark_output(g, gp);
    y = run(g, (float[]){1, 2, 3, 4}, 1, 0, 0, &n);
    /* rows: [0 0 0], [1 2 0], [3 4 0], each value followed by its zero channel */
    const double want_p[18] = {0, 0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 3, 0, 4, 0, 0, 0};
    assert_int_equal(n, 18);
    expect(y, want_p, 18, 0);
    free(y);
    y = run(g, (float[]){1, 2, 3, 4}, 1, 0, 1, &n);
    const double want_g[4] = {10.0 / 9, 0, 10.0 / 9, 0};
    expect(y, want_g, 4, 1e-6);
    free(y);
    nn_graph_free(g);
}

/* Input value 2y + x on a 2x2 grid: bilinear interpolation of a linear function is the
 * function at the source coordinate, clamped to the grid; TFLite's source coordinates are
 * plain v*in/out, align_corners v*(in-1)/(out-1), half-pixel (v+0.5)*in/out-0.5. */
static void resize_tflite_modes(void **state) {
    (void)state;
    const float x[4] = {0, 1, 2, 3};
    struct {
        int oh, ac, hp;
        double src[4];
    } cases[] = {
        {4, 0, 0, {0, 0.5, 1, 1}},     /* 0, .5, 1, 1.5 -> clamped to 1 */
        {3, 1, 0, {0, 0.5, 1, 0}},     /* 0, .5, 1 */
        {4, 0, 1, {0, 0.25, 0.75, 1}}, /* -.25, .25, .75, 1.25 -> clamped */
    };
    for (int k = 0; k < 3; k++) {
        nn_graph *g = nn_graph_new();
        int in = nn_input(g, "in", 3, (int[]){2, 2, 1});
        int r = nn_resize_bilinear(g, "rs", in, cases[k].oh, cases[k].oh, cases[k].ac, cases[k].hp);
        nn_mark_output(g, r);
        size_t n;
        float *y = run(g, x, 1, 0, 0, &n);
        int o = cases[k].oh;
        assert_int_equal(n, (size_t)(o * o));
        for (int yy = 0; yy < o; yy++)
            for (int xx = 0; xx < o; xx++) {
                double want = 2 * cases[k].src[yy] + cases[k].src[xx];
                if (fabs(y[yy * o + xx] - want) > 1e-6)
                    fail_msg("resize case %d at (%d,%d): %g, expected %g", k, yy, xx, (double)y[yy * o + xx], want);
            }
        free(y);
        nn_graph_free(g);
    }
}

static void dropout_inverted_and_deterministic(void **state) {
    (void)state;
    enum { N = 4000 };
    nn_graph *g = nn_graph_new();
    int in = nn_input(g, "in", 1, (int[]){N});
    int d = nn_dropout(g, "drop", in, 0.25f);
    nn_mark_output(g, d);
    float *x = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = 1.0f + (float)i;
    size_t n;
    float *y = run(g, x, 1, 0, 0, &n);
    assert_memory_equal(x, y, N * sizeof(float)); /* inference: identity */
    free(y);
    y = run(g, x, 1, 1, 0, &n);
    int kept = 0;
    for (int i = 0; i < N; i++) {
        if (y[i] != 0) {
            assert_true(fabsf(y[i] - x[i] / 0.75f) <= 1e-6f * x[i]);
            kept++;
        }
    }
    assert_in_range(kept, (int)(0.72 * N), (int)(0.78 * N));
    /* Same seed and pass: the same mask, which is what the oneDNN backend will use too. */
    float *y2 = run(g, x, 1, 1, 0, &n);
    assert_memory_equal(y, y2, N * sizeof(float));
    nn_exec_opts o;
    nn_exec_opts_default(&o);
    o.backend = NN_BACKEND_REF;
    o.training = 1;
    nn_exec *ex;
    assert_int_equal(nn_exec_create(g, &o, &ex, NULL), DFD_OK);
    uint8_t *m = malloc(N);
    ex->pass = 1;
    nn_dropout_mask(ex, d, N, m);
    for (int i = 0; i < N; i++) assert_int_equal(m[i], y[i] != 0);
    ex->pass = 2; /* a later pass drops other units */
    uint8_t *m2 = malloc(N);
    nn_dropout_mask(ex, d, N, m2);
    assert_memory_not_equal(m, m2, N);
    nn_exec_free(ex);
    free(m);
    free(m2);
    free(y);
    free(y2);
    free(x);
    nn_graph_free(g);
}

/* fold: {T,H,W,C} items become T items; a per-frame GAP then unfold gives {T,C}. */
static void time_folding_keeps_frames_apart(void **state) {
    (void)state;
    nn_graph *g = nn_graph_new();
    int in = nn_input(g, "clip", 4, (int[]){3, 2, 2, 1});
    int f = nn_fold_time(g, in);
    int p = nn_gap(g, "gap", f);
    int u = nn_unfold_time(g, p);
    nn_mark_output(g, u);
    float x[24];
    for (int i = 0; i < 24; i++) x[i] = (float)i;
    size_t n;
    float *y = run(g, x, 2, 0, 0, &n);
    assert_int_equal(n, 6);
    for (int k = 0; k < 6; k++) assert_true(fabsf(y[k] - (4.0f * (float)k + 1.5f)) < 1e-6f);
    free(y);
    nn_graph_free(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv3x3_on_4x4_by_hand),
        cmocka_unit_test(conv_kernel_layout_is_keras),
        cmocka_unit_test(depthwise_and_dilated_by_hand),
        cmocka_unit_test(lstm_two_steps_from_keras_equations),
        cmocka_unit_test(same_pooling_at_borders),
        cmocka_unit_test(batchnorm_inference_and_training),
        cmocka_unit_test(activations_by_definition),
        cmocka_unit_test(dense_per_step_gap_pad_concat),
        cmocka_unit_test(resize_tflite_modes),
        cmocka_unit_test(dropout_inverted_and_deterministic),
        cmocka_unit_test(time_folding_keeps_frames_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
