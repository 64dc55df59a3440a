/*
 * inception_v3.c — Inception v3 (Szegedy et al. 2016) without its top, layer for layer as
 * keras.applications.InceptionV3(include_top=False) builds it
 * (keras/src/applications/inception_v3.py). The npm package nsfwjs ships one such network,
 * trained (from ImageNet) for its own task, as a TF.js model; dfd imports its backbone as a
 * second, wider pretrained start beside MobileNetV2 (issue 15's "a wider or different
 * backbone"), so names, shapes and the order of concatenations must match that file.
 *
 * Convolutions are made one statement at a time (never two calls in one initialiser list,
 * whose order C leaves open), since their names count in creation order.
 *
 * Every convolution is Keras's conv2d_bn: a convolution without bias, a batch norm
 * without scale (no gamma: left at one here, where nn creates one; it trains like any
 * other weight), epsilon 1e-3, momentum 0.99, and a ReLU. Keras names them in creation
 * order; the packaged file was written by Keras <= 2.2, which counts from one:
 * conv2d_1 ... conv2d_94 and batch_normalization_1 ... batch_normalization_94. The blocks
 * concatenate as mixed0 ... mixed10 (mixed9_0, mixed9_1 and two unnamed concatenations
 * inside the last two). Output {S',S',2048}: 2 x 2 at 128 px, 8 x 8 at 299 (min input 75).
 */
#include <stdio.h>
#include <string.h>

#include "models/models.h"

#define INC_BN_MOMENTUM 0.99f

typedef struct inc {
    nn_graph *g;
    int k; /* convolutions made so far: the next is conv2d_<k + 1> */
} inc;

static int conv_bn(inc *c, int x, int filters, int kh, int kw, int stride, nn_padding pad) {
    char name[NN_NAME_MAX];
    nn_conv_attr a;
    memset(&a, 0, sizeof a);
    a.kh = kh, a.kw = kw;
    a.sh = a.sw = stride;
    a.dh = a.dw = 1;
    a.padding = pad;
    a.groups = 1;
    a.out_c = filters;
    a.has_bias = 0;
    a.act = NN_ACT_NONE;
    c->k++;
    snprintf(name, sizeof name, "conv2d_%d", c->k);
    x = nn_conv2d(c->g, name, x, &a);
    snprintf(name, sizeof name, "batch_normalization_%d", c->k);
    x = nn_batchnorm(c->g, name, x, DFD_KERAS_BN_EPS, INC_BN_MOMENTUM);
    snprintf(name, sizeof name, "activation_%d", c->k);
    return nn_activation(c->g, name, x, NN_ACT_RELU);
}

static int same(inc *c, int x, int filters, int kh, int kw) { return conv_bn(c, x, filters, kh, kw, 1, NN_PAD_SAME); }

static int avg3(inc *c, int x) { return nn_avgpool(c->g, NULL, x, 3, 3, 1, 1, NN_PAD_SAME); }

static int concat(inc *c, const char *name, int n, const int *xs) { return nn_concat(c->g, name, n, xs); }

/* mixed0-2 (35 x 35 at 299 px): 1x1, 5x5, double 3x3 and pooled branches. */
static int block_a(inc *c, int x, int pool_filters, const char *name) {
    int b1 = same(c, x, 64, 1, 1);
    int b5 = same(c, x, 48, 1, 1);
    b5 = same(c, b5, 64, 5, 5);
    int b3 = same(c, x, 64, 1, 1);
    b3 = same(c, b3, 96, 3, 3);
    b3 = same(c, b3, 96, 3, 3);
    int bp = same(c, avg3(c, x), pool_filters, 1, 1);
    const int xs[4] = {b1, b5, b3, bp};
    return concat(c, name, 4, xs);
}

/* mixed4-7 (17 x 17): 1x1, factorised 7x7, double factorised 7x7 and pooled branches. */
static int block_c(inc *c, int x, int mid, const char *name) {
    int b1 = same(c, x, 192, 1, 1);
    int b7 = same(c, x, mid, 1, 1);
    b7 = same(c, b7, mid, 1, 7);
    b7 = same(c, b7, 192, 7, 1);
    int bd = same(c, x, mid, 1, 1);
    bd = same(c, bd, mid, 7, 1);
    bd = same(c, bd, mid, 1, 7);
    bd = same(c, bd, mid, 7, 1);
    bd = same(c, bd, 192, 1, 7);
    int bp = same(c, avg3(c, x), 192, 1, 1);
    const int xs[4] = {b1, b7, bd, bp};
    return concat(c, name, 4, xs);
}

/* mixed9-10 (8 x 8): 1x1, split 3x3, double split 3x3 and pooled branches. */
static int block_e(inc *c, int x, int i) {
    char name[32];
    int b1 = same(c, x, 320, 1, 1);
    int b3 = same(c, x, 384, 1, 1);
    int s3[2]; /* one statement each: an initialiser list's calls are unsequenced in C */
    s3[0] = same(c, b3, 384, 1, 3);
    s3[1] = same(c, b3, 384, 3, 1);
    snprintf(name, sizeof name, "mixed9_%d", i);
    b3 = concat(c, name, 2, s3);
    int bd = same(c, x, 448, 1, 1);
    bd = same(c, bd, 384, 3, 3);
    int sd[2];
    sd[0] = same(c, bd, 384, 1, 3);
    sd[1] = same(c, bd, 384, 3, 1);
    bd = concat(c, NULL, 2, sd);
    int bp = same(c, avg3(c, x), 192, 1, 1);
    const int xs[4] = {b1, b3, bd, bp};
    snprintf(name, sizeof name, "mixed%d", 9 + i);
    return concat(c, name, 4, xs);
}

int dfd_inception_v3_backbone(nn_graph *g, int x) {
    inc c = {g, 0};
    x = conv_bn(&c, x, 32, 3, 3, 2, NN_PAD_VALID);
    x = conv_bn(&c, x, 32, 3, 3, 1, NN_PAD_VALID);
    x = same(&c, x, 64, 3, 3);
    x = nn_maxpool(g, "max_pooling2d_1", x, 3, 3, 2, 2, NN_PAD_VALID);
    x = conv_bn(&c, x, 80, 1, 1, 1, NN_PAD_VALID);
    x = conv_bn(&c, x, 192, 3, 3, 1, NN_PAD_VALID);
    x = nn_maxpool(g, "max_pooling2d_2", x, 3, 3, 2, 2, NN_PAD_VALID);
    x = block_a(&c, x, 32, "mixed0");
    x = block_a(&c, x, 64, "mixed1");
    x = block_a(&c, x, 64, "mixed2");
    { /* mixed3: to 17 x 17 */
        int b3 = conv_bn(&c, x, 384, 3, 3, 2, NN_PAD_VALID);
        int bd = same(&c, x, 64, 1, 1);
        bd = same(&c, bd, 96, 3, 3);
        bd = conv_bn(&c, bd, 96, 3, 3, 2, NN_PAD_VALID);
        int bp = nn_maxpool(g, "max_pooling2d_3", x, 3, 3, 2, 2, NN_PAD_VALID);
        const int xs[3] = {b3, bd, bp};
        x = concat(&c, "mixed3", 3, xs);
    }
    x = block_c(&c, x, 128, "mixed4");
    x = block_c(&c, x, 160, "mixed5");
    x = block_c(&c, x, 160, "mixed6");
    x = block_c(&c, x, 192, "mixed7");
    { /* mixed8: to 8 x 8 */
        int b3 = same(&c, x, 192, 1, 1);
        b3 = conv_bn(&c, b3, 320, 3, 3, 2, NN_PAD_VALID);
        int b7 = same(&c, x, 192, 1, 1);
        b7 = same(&c, b7, 192, 1, 7);
        b7 = same(&c, b7, 192, 7, 1);
        b7 = conv_bn(&c, b7, 192, 3, 3, 2, NN_PAD_VALID);
        int bp = nn_maxpool(g, "max_pooling2d_4", x, 3, 3, 2, 2, NN_PAD_VALID);
        const int xs[3] = {b3, b7, bp};
        x = concat(&c, "mixed8", 3, xs);
    }
    x = block_e(&c, x, 0);
    return block_e(&c, x, 1);
}
