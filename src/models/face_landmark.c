/*
 * face_landmark.c — MediaPipe Face Mesh's landmark network as an nn graph (see the header).
 *
 * Read off face_landmark.tflite (checked on every import: `dfd import tflite` converts the
 * file's graph too and requires both to give the same outputs on the same input). The net
 * is a stack of residual blocks like BlazeFace's, with PReLU instead of ReLU: a 3x3
 * depthwise convolution (stride 1 or 2, SAME) and a 1x1 convolution, added to a shortcut
 * that is max-pooled 2x2 when the block has stride 2 and zero-padded in channels when the
 * block widens, then a PReLU. After a 3x3 stride-2 stem (16 channels, 96x96) come blocks of
 * 16, 32, 64 and 128 channels down to 6x6; there the net splits into the landmark head
 * (blocks to 3x3, a 1x1 to 32 channels + PReLU, one more block, a 3x3 VALID convolution to
 * 1404 values) and the face-presence head (the same shape, to one value). The names below
 * are the file's, which follow Keras's numbering in creation order, with the presence
 * head's layers numbered after the landmark head's.
 */
#include "models/face_landmark.h"

#include <stdio.h>
#include <string.h>

typedef struct fl {
    nn_graph *g;
} fl;

static int conv(fl *b, int x, int n, int out_c, int k, nn_padding pad, int stride) {
    nn_conv_attr a;
    memset(&a, 0, sizeof a);
    a.kh = a.kw = k;
    a.sh = a.sw = stride;
    a.dh = a.dw = 1;
    a.padding = pad;
    a.groups = 1;
    a.out_c = out_c;
    a.has_bias = 1;
    a.act = NN_ACT_NONE;
    char name[NN_NAME_MAX];
    snprintf(name, sizeof name, "conv2d_%d", n);
    return nn_conv2d(b->g, name, x, &a);
}

static int prelu(fl *b, int x, int n) {
    char name[NN_NAME_MAX];
    snprintf(name, sizeof name, "p_re_lu_%d", n);
    return nn_activation(b->g, name, x, NN_ACT_PRELU);
}

static int channels(fl *b, int x) {
    const nn_node *n = x >= 0 ? nn_graph_node(b->g, x) : NULL;
    return n ? n->shape[n->ndim - 1] : -1;
}

/* One block: depthwise_conv2d_<dw> (stride), conv2d_<cv> to out_c, shortcut
 * (max_pooling2d_<pool> when stride 2, channel_padding_<pad> when widening), add_<add>,
 * p_re_lu_<act>. Numbers of the pooling and padding layers are only used when present. */
static int block(fl *b, int x, int out_c, int stride, int dw, int cv, int pool, int padn, int add, int act) {
    char name[NN_NAME_MAX];
    snprintf(name, sizeof name, "depthwise_conv2d_%d", dw);
    int y = nn_depthwise2d(b->g, name, x, 3, 3, stride, stride, NN_PAD_SAME, 1, NN_ACT_NONE);
    y = conv(b, y, cv, out_c, 1, NN_PAD_VALID, 1);
    int s = x, in_c = channels(b, x);
    if (stride == 2) {
        snprintf(name, sizeof name, "max_pooling2d_%d", pool);
        s = nn_maxpool(b->g, name, s, 2, 2, 2, 2, NN_PAD_VALID);
    }
    if (out_c > in_c) {
        snprintf(name, sizeof name, "channel_padding_%d", padn);
        s = nn_pad(b->g, name, s, 0, 0, 0, 0, out_c - in_c);
    }
    snprintf(name, sizeof name, "add_%d", add);
    return prelu(b, nn_add(b->g, name, s, y), act);
}

static void build(fl *b) {
    int shape[3] = {DFD_FACE_LANDMARK_SIZE, DFD_FACE_LANDMARK_SIZE, 3};
    int x = nn_input(b->g, "input", 3, shape);
    x = prelu(b, conv(b, x, 1, 16, 3, NN_PAD_SAME, 2), 1);          /* 96x96x16 */
    /* Blocks 1..14: {out_c, stride}; block i uses depthwise i, conv i+1, add i, PReLU i+1. */
    static const int out_c[14] = {16, 16, 32, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128};
    static const int stride[14] = {1, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1};
    int n_pool = 0, n_pad = 0;
    for (int i = 0; i < 14; i++) {
        int pool = stride[i] == 2 ? ++n_pool : 0;
        int padn = out_c[i] > channels(b, x) ? ++n_pad : 0;
        x = block(b, x, out_c[i], stride[i], i + 1, i + 2, pool, padn, i + 1, i + 2);
    }
    int trunk = x;                                                   /* 6x6x128 */
    /* Landmarks: blocks 15..17 (3x3), 1x1 to 32 + PReLU, block 18, 3x3 VALID to 1404. */
    x = block(b, trunk, 128, 2, 15, 16, 5, 0, 15, 16);
    x = block(b, x, 128, 1, 16, 17, 0, 0, 16, 17);
    x = block(b, x, 128, 1, 17, 18, 0, 0, 17, 18);
    x = prelu(b, conv(b, x, 19, 32, 1, NN_PAD_VALID, 1), 19);
    x = block(b, x, 32, 1, 18, 20, 0, 0, 18, 20);
    int lm = conv(b, x, 21, DFD_FACE_LANDMARK_COUNT * 3, 3, NN_PAD_VALID, 1);
    /* Presence: the same shape of head, numbered after the file's. */
    x = block(b, trunk, 128, 2, 23, 28, 7, 0, 23, 26);
    x = prelu(b, conv(b, x, 29, 32, 1, NN_PAD_VALID, 1), 27);
    x = block(b, x, 32, 1, 24, 30, 0, 0, 24, 28);
    int presence = conv(b, x, 31, 1, 3, NN_PAD_VALID, 1);
    nn_mark_output(b->g, lm);
    nn_mark_output(b->g, presence);
}

int dfd_face_landmark_build(nn_graph **out, dfd_error *err) {
    *out = NULL;
    fl b = {nn_graph_new()};
    if (!b.g) return dfd_fail(err, DFD_E_NOMEM, "out of memory building %s", DFD_FACE_LANDMARK_NAME);
    build(&b);
    const char *e = nn_graph_error(b.g);
    if (e || nn_graph_output_count(b.g) != 2) {
        int rc = dfd_fail(err, DFD_E_INTERNAL, "building %s: %s", DFD_FACE_LANDMARK_NAME, e ? e : "outputs missing");
        nn_graph_free(b.g);
        return rc;
    }
    *out = b.g;
    return DFD_OK;
}
