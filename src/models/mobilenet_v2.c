/*
 * mobilenet_v2.c — MobileNetV2 (Sandler et al. 2018) without its top, layer for layer
 * as keras.applications.MobileNetV2(alpha, include_top=False) builds it
 * (keras/src/applications/mobilenet_v2.py). The pretrained compact CNN that dfd imports
 * (from the npm package nsfwjs) was made by that code, so names and shapes must match:
 *
 *   Conv1 (3x3 s2 'same') bn_Conv1 Conv1_relu
 *   expanded_conv_{depthwise,depthwise_BN,depthwise_relu,project,project_BN}   (block 0,
 *       expansion 1: no expand conv)
 *   block_N_{expand,expand_BN,expand_relu,[pad],depthwise,depthwise_BN,depthwise_relu,
 *            project,project_BN,[add]}                                            N=1..16
 *   Conv_1 (1x1) Conv_1_bn out_relu
 *
 * Stride-2 blocks zero-pad first (block_N_pad, Keras's correct_pad: one row/column at the
 * bottom/right, plus one at the top/left when the side is odd) and then run a 'valid'
 * depthwise conv; stride-1 blocks use 'same'. Activations are ReLU6, no conv has a bias,
 * batch norms use epsilon 1e-3 and momentum 0.999. Older Keras versions padded the input
 * explicitly (a weightless Conv1_pad layer, then a 'valid' Conv1); that computes the same
 * thing, and weight names are unaffected. 2,257,984 parameters at alpha 1.0.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/models.h"

#define MB_BN_MOMENTUM 0.999f

/* Keras's _make_divisible: round v to the nearest multiple of divisor, never below
 * divisor and never more than 10% below v. */
static int make_divisible(double v, int divisor) {
    int nv = (int)(v + divisor / 2.0) / divisor * divisor;
    if (nv < divisor) nv = divisor;
    if (nv < 0.9 * v) nv += divisor;
    return nv;
}

/* alpha as the decimal the user meant (1.4f is 1.39999998): Keras computes in Python
 * doubles from the literal 1.4, and int(320 * alpha) must truncate the same way. */
static double decimal_alpha(float alpha) { return round((double)alpha * 1e6) / 1e6; }

int dfd_mobilenet_v2_channels(float alpha) {
    return alpha > 1.0f ? make_divisible(1280.0 * decimal_alpha(alpha), 8) : 1280;
}

static int conv1x1(nn_graph *g, const char *name, int x, int out_c) {
    nn_conv_attr a;
    memset(&a, 0, sizeof a);
    a.kh = a.kw = 1;
    a.sh = a.sw = 1;
    a.dh = a.dw = 1;
    a.padding = NN_PAD_SAME;
    a.groups = 1;
    a.out_c = out_c;
    a.has_bias = 0;
    a.act = NN_ACT_NONE;
    return nn_conv2d(g, name, x, &a);
}

static int bn(nn_graph *g, const char *name, int x) {
    return nn_batchnorm(g, name, x, DFD_KERAS_BN_EPS, MB_BN_MOMENTUM);
}

static const char *nm(char *buf, const char *prefix, const char *suffix) {
    snprintf(buf, NN_NAME_MAX, "%s%s", prefix, suffix);
    return buf;
}

/* Channels (last dimension) of node x, or -1 when x is not a valid node. */
static int channels(const nn_graph *g, int x) {
    if (x < 0) return -1;
    const nn_node *n = nn_graph_node(g, x);
    return n && n->ndim >= 1 ? n->shape[n->ndim - 1] : -1;
}

static int inverted_res_block(nn_graph *g, int inputs, int expansion, int stride, float alpha, int filters,
                              int block_id) {
    char prefix[32], buf[NN_NAME_MAX];
    int in_c = channels(g, inputs);
    if (in_c < 0) return -1;
    int out_c = make_divisible((double)(int)(filters * decimal_alpha(alpha)), 8);
    int x = inputs;
    if (block_id) {
        snprintf(prefix, sizeof prefix, "block_%d_", block_id);
        x = conv1x1(g, nm(buf, prefix, "expand"), x, expansion * in_c);
        x = bn(g, nm(buf, prefix, "expand_BN"), x);
        x = nn_activation(g, nm(buf, prefix, "expand_relu"), x, NN_ACT_RELU6);
    } else {
        snprintf(prefix, sizeof prefix, "expanded_conv_");
    }
    if (stride == 2) {
        if (x < 0) return -1;
        const nn_node *n = nn_graph_node(g, x);
        int h = n->shape[0], w = n->shape[1];
        x = nn_pad(g, nm(buf, prefix, "pad"), x, h % 2, 1, w % 2, 1, 0);
    }
    x = nn_depthwise2d(g, nm(buf, prefix, "depthwise"), x, 3, 3, stride, stride,
                       stride == 1 ? NN_PAD_SAME : NN_PAD_VALID, 0, NN_ACT_NONE);
    x = bn(g, nm(buf, prefix, "depthwise_BN"), x);
    x = nn_activation(g, nm(buf, prefix, "depthwise_relu"), x, NN_ACT_RELU6);
    x = conv1x1(g, nm(buf, prefix, "project"), x, out_c);
    x = bn(g, nm(buf, prefix, "project_BN"), x);
    if (in_c == out_c && stride == 1) return nn_add(g, nm(buf, prefix, "add"), inputs, x);
    return x;
}

int dfd_mobilenet_v2_backbone(nn_graph *g, int x, float alpha) {
    /* filters, stride, expansion of blocks 0..16 (the paper's table 2). */
    static const int cfg[17][3] = {
        {16, 1, 1},  {24, 2, 6},  {24, 1, 6},  {32, 2, 6},  {32, 1, 6},  {32, 1, 6},
        {64, 2, 6},  {64, 1, 6},  {64, 1, 6},  {64, 1, 6},  {96, 1, 6},  {96, 1, 6},
        {96, 1, 6},  {160, 2, 6}, {160, 1, 6}, {160, 1, 6}, {320, 1, 6},
    };
    nn_conv_attr a;
    memset(&a, 0, sizeof a);
    a.kh = a.kw = 3;
    a.sh = a.sw = 2;
    a.dh = a.dw = 1;
    a.padding = NN_PAD_SAME;
    a.groups = 1;
    a.out_c = make_divisible(32.0 * decimal_alpha(alpha), 8);
    a.act = NN_ACT_NONE;
    x = nn_conv2d(g, "Conv1", x, &a);
    x = bn(g, "bn_Conv1", x);
    x = nn_activation(g, "Conv1_relu", x, NN_ACT_RELU6);
    for (int i = 0; i < 17; i++) x = inverted_res_block(g, x, cfg[i][2], cfg[i][1], alpha, cfg[i][0], i);
    x = conv1x1(g, "Conv_1", x, dfd_mobilenet_v2_channels(alpha));
    x = bn(g, "Conv_1_bn", x);
    return nn_activation(g, "out_relu", x, NN_ACT_RELU6);
}
