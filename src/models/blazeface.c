/*
 * blazeface.c — MediaPipe's BlazeFace short- and full-range detectors as nn graphs.
 *
 * Why builders in C rather than the graph stored in the model file: a dfd model file holds
 * weights by name and names its architecture, like every other model dfd runs, so one
 * loader serves all of them and the graph is code that can be read and reviewed. The
 * structure below was read off the .tflite files (see `dfd import tflite`, which checks on
 * every import that this builder and the graph converted from the file give the same
 * outputs on the same input, so a drift between the two cannot go unnoticed).
 *
 * Both nets are stacks of "BlazeBlocks": a 3x3 depthwise convolution and a 1x1 convolution
 * (the full-range net doubles that pair with a ReLU between, a bottleneck), added to a
 * shortcut that is max-pooled when the block has stride 2 and zero-padded in channels when
 * the block widens, then a ReLU. Layer names follow Keras's automatic numbering in creation
 * order (conv2d, conv2d_1, ...; depthwise_conv2d, depthwise_conv2d_1, ...), as in the files.
 */
#include "models/blazeface.h"

#include <stdio.h>
#include <string.h>

typedef struct bf {
    nn_graph *g;
    int n_conv, n_dw, n_act, n_add, n_pad, n_pool, n_up, n_reshape;
} bf;

/* Keras's automatic names: "base" for the first, then "base_1", "base_2", ... */
static const char *kname(char *buf, size_t cap, const char *base, int *counter) {
    if (*counter == 0) snprintf(buf, cap, "%s", base);
    else snprintf(buf, cap, "%s_%d", base, *counter);
    (*counter)++;
    return buf;
}

static int conv1x1(bf *b, int x, int out_c, const char *name) {
    nn_conv_attr a;
    memset(&a, 0, sizeof a);
    a.kh = a.kw = a.sh = a.sw = a.dh = a.dw = 1;
    a.padding = NN_PAD_VALID;
    a.groups = 1;
    a.out_c = out_c;
    a.has_bias = 1;
    a.act = NN_ACT_NONE;
    char n[NN_NAME_MAX];
    return nn_conv2d(b->g, name ? name : kname(n, sizeof n, "conv2d", &b->n_conv), x, &a);
}

static int dw3x3(bf *b, int x, int stride) {
    char n[NN_NAME_MAX];
    return nn_depthwise2d(b->g, kname(n, sizeof n, "depthwise_conv2d", &b->n_dw), x, 3, 3, stride, stride, NN_PAD_SAME, 1,
                          NN_ACT_NONE);
}

static int relu(bf *b, int x) {
    char n[NN_NAME_MAX];
    return nn_activation(b->g, kname(n, sizeof n, "activation", &b->n_act), x, NN_ACT_RELU);
}

static int channels(bf *b, int x) {
    const nn_node *n = x >= 0 ? nn_graph_node(b->g, x) : NULL;
    return n ? n->shape[n->ndim - 1] : -1;
}

/* The shortcut and the closing add + ReLU of a block whose main path ended in `y`. */
static int shortcut_add(bf *b, int x, int y, int stride) {
    char n[NN_NAME_MAX];
    int s = x, in_c = channels(b, x), out_c = channels(b, y);
    if (stride == 2) s = nn_maxpool(b->g, kname(n, sizeof n, "max_pooling2d", &b->n_pool), s, 2, 2, 2, 2, NN_PAD_SAME);
    if (out_c > in_c) s = nn_pad(b->g, kname(n, sizeof n, "channel_padding", &b->n_pad), s, 0, 0, 0, 0, out_c - in_c);
    int a = nn_add(b->g, kname(n, sizeof n, "add", &b->n_add), s, y);
    return relu(b, a);
}

/* Short-range block: depthwise 3x3 (stride), 1x1 to out_c, shortcut, ReLU. */
static int single_block(bf *b, int x, int out_c, int stride) {
    int y = conv1x1(b, dw3x3(b, x, stride), out_c, NULL);
    return shortcut_add(b, x, y, stride);
}

/* Full-range block: depthwise (stride), 1x1 to mid + ReLU, depthwise, 1x1 to out_c,
 * shortcut, ReLU. */
static int double_block(bf *b, int x, int mid_c, int out_c, int stride) {
    int y = relu(b, conv1x1(b, dw3x3(b, x, stride), mid_c, NULL));
    y = conv1x1(b, dw3x3(b, y, 1), out_c, NULL);
    return shortcut_add(b, x, y, stride);
}

/* 1x1 + ReLU on a coarse map, bilinear 2x upsampling, added to 1x1 + ReLU of a finer map
 * (the full-range net's feature pyramid). No ReLU after the add, as in the file. */
static int upsample_merge(bf *b, int coarse, int fine, int c) {
    char n[NN_NAME_MAX];
    int u = relu(b, conv1x1(b, coarse, c, NULL));
    int f = relu(b, conv1x1(b, fine, c, NULL));
    const nn_node *fn = f >= 0 ? nn_graph_node(b->g, f) : NULL;
    if (!fn) return -1;
    u = nn_resize_bilinear(b->g, kname(n, sizeof n, "up_sampling2d", &b->n_up), u, fn->shape[0], fn->shape[1], 0, 1);
    return nn_add(b->g, kname(n, sizeof n, "add", &b->n_add), f, u);
}

/* Reshape a head's {H,W,A*V} map to {H*W*A, V}. */
static int head_reshape(bf *b, int x, int values) {
    char n[NN_NAME_MAX];
    const nn_node *xn = x >= 0 ? nn_graph_node(b->g, x) : NULL;
    if (!xn) return -1;
    int shape[2] = {xn->shape[0] * xn->shape[1] * xn->shape[2] / values, values};
    return nn_reshape(b->g, kname(n, sizeof n, "reshape", &b->n_reshape), x, 2, shape);
}

/* Joins two {N_i, V} head outputs into {N_0 + N_1, V} (flatten, concat, reshape: nn
 * concatenates along the last axis only). */
static int join_heads(bf *b, int a, int c, const char *name) {
    char n[NN_NAME_MAX];
    const nn_node *an = a >= 0 ? nn_graph_node(b->g, a) : NULL, *cn = c >= 0 ? nn_graph_node(b->g, c) : NULL;
    if (!an || !cn) return -1;
    int la = an->shape[0] * an->shape[1], lc = cn->shape[0] * cn->shape[1];
    snprintf(n, sizeof n, "%s_flat0", name);
    int fa = nn_reshape(b->g, n, a, 1, &la);
    snprintf(n, sizeof n, "%s_flat1", name);
    int fc = nn_reshape(b->g, n, c, 1, &lc);
    int xs[2] = {fa, fc};
    snprintf(n, sizeof n, "%s_flat", name);
    int cat = nn_concat(b->g, n, 2, xs);
    int shape[2] = {an->shape[0] + cn->shape[0], an->shape[1]};
    return nn_reshape(b->g, name, cat, 2, shape);
}

static int stem(bf *b, int x, int k, int out_c) {
    nn_conv_attr a;
    memset(&a, 0, sizeof a);
    a.kh = a.kw = k;
    a.sh = a.sw = 2;
    a.dh = a.dw = 1;
    a.padding = NN_PAD_SAME;
    a.groups = 1;
    a.out_c = out_c;
    a.has_bias = 1;
    char n[NN_NAME_MAX];
    return relu(b, nn_conv2d(b->g, kname(n, sizeof n, "conv2d", &b->n_conv), x, &a));
}

static void build_short(bf *b) {
    int shape[3] = {128, 128, 3};
    int x = nn_input(b->g, "input", 3, shape);
    x = stem(b, x, 5, 24);                                           /* 64x64x24 */
    static const int widths[] = {24, 28, 32, 36, 42, 48, 56, 64, 72, 80, 88};
    static const int strides[] = {1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1};
    for (int i = 0; i < 11; i++) x = single_block(b, x, widths[i], strides[i]);
    int f16 = x;                                                     /* 16x16x88 */
    x = single_block(b, x, 96, 2);                                   /* 8x8x96 */
    for (int i = 0; i < 4; i++) x = single_block(b, x, 96, 1);
    int f8 = x;
    int c16 = conv1x1(b, f16, 2, "classificator_8");                /* 2 anchors per cell */
    int c8 = conv1x1(b, f8, 6, "classificator_16");                 /* 6 anchors per cell */
    int r16 = conv1x1(b, f16, 32, "regressor_8");
    int r8 = conv1x1(b, f8, 96, "regressor_16");
    int rc16 = head_reshape(b, c16, 1), rc8 = head_reshape(b, c8, 1);
    int rr16 = head_reshape(b, r16, 16), rr8 = head_reshape(b, r8, 16);
    int cls = join_heads(b, rc16, rc8, "classificators");
    int reg = join_heads(b, rr16, rr8, "regressors");
    nn_mark_output(b->g, reg);
    nn_mark_output(b->g, cls);
}

static void build_full(bf *b) {
    int shape[3] = {192, 192, 3};
    int x = nn_input(b->g, "input", 3, shape);
    x = stem(b, x, 3, 32);                                           /* 96x96x32 */
    x = double_block(b, x, 8, 32, 1);
    x = double_block(b, x, 8, 32, 1);
    x = double_block(b, x, 12, 48, 2);                               /* 48x48 */
    x = double_block(b, x, 12, 48, 1);
    x = double_block(b, x, 16, 64, 1);
    int p48 = x;                                                     /* 48x48x64 */
    x = double_block(b, x, 24, 96, 2);                               /* 24x24 */
    x = double_block(b, x, 32, 128, 1);
    x = double_block(b, x, 32, 128, 1);
    int p24 = x;                                                     /* 24x24x128 */
    x = double_block(b, x, 36, 144, 2);                              /* 12x12 */
    x = double_block(b, x, 48, 192, 1);
    x = double_block(b, x, 64, 256, 1);
    int p12 = x;                                                     /* 12x12x256 */
    x = double_block(b, x, 96, 384, 2);                              /* 6x6 */
    for (int i = 0; i < 3; i++) x = double_block(b, x, 96, 384, 1);
    x = upsample_merge(b, x, p12, 96);                               /* 12x12x96 */
    x = double_block(b, x, 48, 96, 1);
    x = double_block(b, x, 48, 96, 1);
    x = upsample_merge(b, x, p24, 64);                               /* 24x24x64 */
    x = double_block(b, x, 32, 64, 1);
    x = double_block(b, x, 32, 64, 1);
    x = upsample_merge(b, x, p48, 48);                               /* 48x48x48 */
    x = double_block(b, x, 24, 48, 1);
    int cls = conv1x1(b, x, 1, "classifier_face_4");
    int reg = conv1x1(b, x, 16, "regressor_face_4");
    int shape_r[2] = {2304, 16}, shape_c[2] = {2304, 1};
    reg = nn_reshape(b->g, "reshaped_regressor_face_4", reg, 2, shape_r);
    cls = nn_reshape(b->g, "reshaped_classifier_face_4", cls, 2, shape_c);
    nn_mark_output(b->g, reg);
    nn_mark_output(b->g, cls);
}

const char *dfd_blazeface_name(dfd_blazeface_kind kind) {
    return kind == DFD_BLAZEFACE_FULL ? "blazeface-full" : "blazeface-short";
}

int dfd_blazeface_kind_from_name(const char *name) {
    if (!name) return -1;
    if (strcmp(name, "blazeface-short") == 0) return DFD_BLAZEFACE_SHORT;
    if (strcmp(name, "blazeface-full") == 0) return DFD_BLAZEFACE_FULL;
    return -1;
}

int dfd_blazeface_input_size(dfd_blazeface_kind kind) { return kind == DFD_BLAZEFACE_FULL ? 192 : 128; }
int dfd_blazeface_num_anchors(dfd_blazeface_kind kind) { return kind == DFD_BLAZEFACE_FULL ? 2304 : 896; }

int dfd_blazeface_build(dfd_blazeface_kind kind, nn_graph **out, dfd_error *err) {
    *out = NULL;
    if (kind != DFD_BLAZEFACE_SHORT && kind != DFD_BLAZEFACE_FULL)
        return dfd_fail(err, DFD_E_ARG, "unknown BlazeFace kind %d", (int)kind);
    bf b;
    memset(&b, 0, sizeof b);
    b.g = nn_graph_new();
    if (!b.g) return dfd_fail(err, DFD_E_NOMEM, "out of memory building %s", dfd_blazeface_name(kind));
    if (kind == DFD_BLAZEFACE_SHORT) build_short(&b);
    else build_full(&b);
    const char *e = nn_graph_error(b.g);
    if (e || nn_graph_output_count(b.g) != 2) {
        int rc = dfd_fail(err, DFD_E_INTERNAL, "building %s: %s", dfd_blazeface_name(kind), e ? e : "outputs missing");
        nn_graph_free(b.g);
        return rc;
    }
    *out = b.g;
    return DFD_OK;
}
