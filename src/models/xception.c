/*
 * xception.c — Xception (Chollet 2017) without its top, layer for layer as
 * keras.applications.Xception builds it (keras/src/applications/xception.py), so that
 * Keras's ImageNet weights and models fine-tuned in Keras load by name.
 *
 * What has to match Keras, and why it is written the way it is:
 *   - block1's two 3x3 convolutions are 'valid' (299 -> 149 -> 147); everything after is
 *     'same', max pools are 3x3 stride 2 'same' (147 -> 74 -> 37 -> 19 -> 10);
 *   - no convolution has a bias (each is followed by batch norm, epsilon 1e-3 and
 *     momentum 0.99: Keras's defaults, which Xception does not override);
 *   - the four 1x1 stride-2 shortcut convolutions and their batch norms are unnamed in
 *     Keras, so they get Keras's automatic names conv2d, conv2d_1.. and
 *     batch_normalization, batch_normalization_1..; the twelve residual sums are
 *     add .. add_11 (they carry no weights, the names only keep the graph readable);
 *   - block2 has no activation before its first separable conv (block1 ends with one),
 *     and block14's activations come after each batch norm, unlike blocks 3..13;
 *   - node order is Keras's model.layers order (the shortcut conv is listed after the
 *     main branch's last batch norm, then the pool, then the shortcut's batch norm).
 * 20,861,480 parameters (moving statistics included) at any input size.
 */
#include <stdio.h>
#include <string.h>

#include "models/models.h"

#define XC_BN_MOMENTUM 0.99f

static int conv(nn_graph *g, const char *name, int x, int out_c, int k, int s, nn_padding pad) {
    nn_conv_attr a;
    memset(&a, 0, sizeof a);
    a.kh = a.kw = k;
    a.sh = a.sw = s;
    a.dh = a.dw = 1;
    a.padding = pad;
    a.groups = 1;
    a.out_c = out_c;
    a.has_bias = 0;
    a.act = NN_ACT_NONE;
    return nn_conv2d(g, name, x, &a);
}

static int bn(nn_graph *g, const char *name, int x) {
    return nn_batchnorm(g, name, x, DFD_KERAS_BN_EPS, XC_BN_MOMENTUM);
}

/* Keras's automatic name for the i-th unnamed layer of a kind: "conv2d", "conv2d_1", ... */
static void auto_name(char *buf, const char *base, int i) {
    if (i == 0)
        snprintf(buf, NN_NAME_MAX, "%s", base);
    else
        snprintf(buf, NN_NAME_MAX, "%s_%d", base, i);
}

/* "<prefix>_<suffix>", e.g. block5_sepconv2_bn. */
static const char *nm(char *buf, int block, const char *suffix) {
    snprintf(buf, NN_NAME_MAX, "block%d_%s", block, suffix);
    return buf;
}

static int sepconv(nn_graph *g, int block, int i, int x, int out_c) {
    char name[NN_NAME_MAX];
    snprintf(name, sizeof name, "block%d_sepconv%d", block, i);
    x = nn_separable2d(g, name, x, out_c, 3, 3, 1, 1, NN_PAD_SAME, 0, NN_ACT_NONE);
    snprintf(name, sizeof name, "block%d_sepconv%d_bn", block, i);
    return bn(g, name, x);
}

static int relu(nn_graph *g, int block, int i, int x) {
    char name[NN_NAME_MAX];
    snprintf(name, sizeof name, "block%d_sepconv%d_act", block, i);
    return nn_activation(g, name, x, NN_ACT_RELU);
}

/* A downsampling block (2, 3, 4, 13): two separable convs, pool, plus a 1x1 stride-2
 * shortcut; shortcut index r names its conv2d_r / batch_normalization_r, and the sum is
 * add_<a> (adds are counted separately: the middle flow's come between). */
static int down_block(nn_graph *g, int x, int block, int r, int a, int c1, int c2, int pre_act) {
    char buf[NN_NAME_MAX];
    int in = x;
    if (pre_act) x = relu(g, block, 1, x);
    x = sepconv(g, block, 1, x, c1);
    x = relu(g, block, 2, x);
    x = sepconv(g, block, 2, x, c2);
    auto_name(buf, "conv2d", r);
    int res = conv(g, buf, in, c2, 1, 2, NN_PAD_SAME);
    x = nn_maxpool(g, nm(buf, block, "pool"), x, 3, 3, 2, 2, NN_PAD_SAME);
    auto_name(buf, "batch_normalization", r);
    res = bn(g, buf, res);
    auto_name(buf, "add", a);
    return nn_add(g, buf, x, res);
}

int dfd_xception_backbone(nn_graph *g, int x) {
    char buf[NN_NAME_MAX];
    x = conv(g, "block1_conv1", x, 32, 3, 2, NN_PAD_VALID);
    x = bn(g, "block1_conv1_bn", x);
    x = nn_activation(g, "block1_conv1_act", x, NN_ACT_RELU);
    x = conv(g, "block1_conv2", x, 64, 3, 1, NN_PAD_VALID);
    x = bn(g, "block1_conv2_bn", x);
    x = nn_activation(g, "block1_conv2_act", x, NN_ACT_RELU);

    /* Entry flow. */
    x = down_block(g, x, 2, 0, 0, 128, 128, 0);
    x = down_block(g, x, 3, 1, 1, 256, 256, 1);
    x = down_block(g, x, 4, 2, 2, 728, 728, 1);

    /* Middle flow: eight identity-shortcut blocks, adds add_3 .. add_10. */
    for (int i = 0; i < 8; i++) {
        int block = i + 5, res = x;
        for (int j = 1; j <= 3; j++) {
            x = relu(g, block, j, x);
            x = sepconv(g, block, j, x, 728);
        }
        auto_name(buf, "add", 3 + i);
        x = nn_add(g, buf, x, res);
    }

    /* Exit flow. */
    x = down_block(g, x, 13, 3, 11, 728, 1024, 1);
    x = sepconv(g, 14, 1, x, 1536);
    x = nn_activation(g, "block14_sepconv1_act", x, NN_ACT_RELU);
    x = sepconv(g, 14, 2, x, 2048);
    x = nn_activation(g, "block14_sepconv2_act", x, NN_ACT_RELU);
    return x;
}
