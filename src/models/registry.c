/*
 * registry.c — the named architectures dfd can build (for the CLI, the bench, model
 * files' "architecture" field), their heads, and the small test stand-ins.
 *
 * Heads are the original system's (Keras names in a fresh session, since it built them
 * with unnamed layers):
 *   image, Xception:   global_average_pooling2d -> dropout -> dense (256, ReLU)
 *                      -> dropout_1 -> dense_1 (1)
 *   image, MobileNetV2, Inception v3 and tiny: global_average_pooling2d -> dropout -> dense (1)
 *   video: TimeDistributed(backbone + global_average_pooling2d) -> lstm (256, sequences)
 *          -> dropout -> lstm_1 (128) -> dropout_1 -> dense (64, ReLU) -> dense_1 (1)
 * The last dense layer has no activation: output 0 is a logit and callers apply the
 * sigmoid (training uses binary cross-entropy on logits).
 *
 * In Keras the video model's encoder sits inside a TimeDistributed wrapper (one layer,
 * "time_distributed", whose weights are the inner layers'); here the encoder's layers
 * keep their own names, so an image model's backbone weights load into a video model
 * unchanged.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/models.h"

#define DFD_DEFAULT_FRAMES 30
#define DFD_DEFAULT_DROPOUT 0.5f
#define DFD_MAX_INPUT 2048
#define DFD_MAX_FRAMES 1000

typedef enum { BB_XCEPTION, BB_MOBILENET_V2, BB_INCEPTION_V3, BB_TINY } backbone_kind;
typedef enum { HEAD_NONE, HEAD_IMAGE, HEAD_VIDEO } head_kind;

/* The registry: what callers see ... */
static const dfd_arch_info arch_infos[] = {
    {"xception", "Xception backbone (Keras, no top): {S,S,3} -> {S/32,S/32,2048}", 299, 71, 0, 0},
    {"xception-image", "Xception + GAP, dropout, dense 256, dropout, logit (per face crop)", 299, 71, 0, 1},
    {"xception-video", "TimeDistributed Xception + GAP, LSTM 256, LSTM 128, dense 64, logit", 299, 71, 1, 1},
    {"mobilenet_v2", "MobileNetV2 backbone (Keras, no top): {S,S,3} -> {S/32,S/32,1280}", 224, 32, 0, 0},
    {"mobilenet_v2-image", "MobileNetV2 + GAP, dropout, logit (compact per-face CNN)", 224, 32, 0, 1},
    {"mobilenet_v2-video", "TimeDistributed MobileNetV2 + GAP, LSTM 256, LSTM 128, dense 64, logit", 224, 32, 1, 1},
    {"inception_v3", "Inception v3 backbone (Keras, no top): {S,S,3} -> {S',S',2048}", 299, 75, 0, 0},
    {"inception_v3-image", "Inception v3 + GAP, dropout, logit (wider per-face CNN)", 299, 75, 0, 1},
    {"tiny-cnn", "three small convolutions + GAP, dropout, logit (for fast tests)", 32, 8, 0, 1},
    {"tiny-video", "tiny-cnn encoder per frame, LSTM 16, LSTM 8, dense 8, logit (for fast tests)", 32, 8, 1, 1},
};

/* ... and how each is built (same order). */
static const struct {
    backbone_kind backbone;
    head_kind head;
} arch_kinds[] = {
    {BB_XCEPTION, HEAD_NONE},     {BB_XCEPTION, HEAD_IMAGE},     {BB_XCEPTION, HEAD_VIDEO},
    {BB_MOBILENET_V2, HEAD_NONE}, {BB_MOBILENET_V2, HEAD_IMAGE}, {BB_MOBILENET_V2, HEAD_VIDEO},
    {BB_INCEPTION_V3, HEAD_NONE}, {BB_INCEPTION_V3, HEAD_IMAGE},
    {BB_TINY, HEAD_IMAGE},        {BB_TINY, HEAD_VIDEO},
};

#define N_ARCHS ((int)(sizeof arch_infos / sizeof arch_infos[0]))
_Static_assert(sizeof arch_infos / sizeof arch_infos[0] == sizeof arch_kinds / sizeof arch_kinds[0],
               "one build recipe per registry entry");

const dfd_arch_info *dfd_arch_list(int *count) {
    if (count) *count = N_ARCHS;
    return arch_infos;
}

const dfd_arch_info *dfd_arch_find(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < N_ARCHS; i++)
        if (strcmp(arch_infos[i].name, name) == 0) return &arch_infos[i];
    return NULL;
}

void dfd_arch_opts_default(dfd_arch_opts *o) {
    memset(o, 0, sizeof *o);
    o->dropout = -1.0f;
}

/* tiny-cnn's encoder: conv1 (3x3 s2) + BN + ReLU, conv2 (3x3 s2) + BN + ReLU, a separable
 * conv3 + BN + ReLU: every layer kind the real backbones use, in a few thousand weights. */
static int tiny_backbone(nn_graph *g, int x, float width) {
    static const int base[3] = {8, 16, 32};
    int c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = (int)lrintf((float)base[i] * width);
        if (c[i] < 1) c[i] = 1;
    }
    nn_conv_attr a;
    memset(&a, 0, sizeof a);
    a.kh = a.kw = 3;
    a.sh = a.sw = 2;
    a.dh = a.dw = 1;
    a.padding = NN_PAD_SAME;
    a.groups = 1;
    a.act = NN_ACT_NONE;
    a.out_c = c[0];
    x = nn_conv2d(g, "conv1", x, &a);
    x = nn_batchnorm(g, "conv1_bn", x, DFD_KERAS_BN_EPS, 0.99f);
    x = nn_activation(g, "conv1_relu", x, NN_ACT_RELU);
    a.out_c = c[1];
    x = nn_conv2d(g, "conv2", x, &a);
    x = nn_batchnorm(g, "conv2_bn", x, DFD_KERAS_BN_EPS, 0.99f);
    x = nn_activation(g, "conv2_relu", x, NN_ACT_RELU);
    x = nn_separable2d(g, "conv3", x, c[2], 3, 3, 1, 1, NN_PAD_SAME, 0, NN_ACT_NONE);
    x = nn_batchnorm(g, "conv3_bn", x, DFD_KERAS_BN_EPS, 0.99f);
    return nn_activation(g, "conv3_relu", x, NN_ACT_RELU);
}

static int backbone(nn_graph *g, backbone_kind k, int x, float width) {
    switch (k) {
    case BB_XCEPTION: return dfd_xception_backbone(g, x);
    case BB_MOBILENET_V2: return dfd_mobilenet_v2_backbone(g, x, width);
    case BB_INCEPTION_V3: return dfd_inception_v3_backbone(g, x);
    case BB_TINY: return tiny_backbone(g, x, width);
    }
    return -1;
}

static int image_head(nn_graph *g, backbone_kind k, int x, float rate) {
    x = nn_gap(g, "global_average_pooling2d", x);
    x = nn_dropout(g, "dropout", x, rate);
    if (k == BB_XCEPTION) {
        x = nn_dense(g, "dense", x, 256, 1, NN_ACT_RELU);
        x = nn_dropout(g, "dropout_1", x, rate);
        return nn_dense(g, "dense_1", x, 1, 1, NN_ACT_NONE);
    }
    return nn_dense(g, "dense", x, 1, 1, NN_ACT_NONE);
}

/* N image classifiers on input x, each under its own name scope, their logits joined and
 * weighed by one dense layer (see dfd_arch_build). Why in one graph rather than N models
 * side by side: every caller (scoring, batching, bf16, heat maps by occlusion) then treats
 * an ensemble as the one network it is to the user, with no second code path. */
static int ensemble(nn_graph *g, backbone_kind k, int input, float width, float rate, int n) {
    int logits[DFD_MODEL_MAX_MEMBERS];
    for (int i = 0; i < n; i++) {
        char scope[16];
        snprintf(scope, sizeof scope, "m%d/", i);
        nn_graph_set_scope(g, scope);
        logits[i] = image_head(g, k, backbone(g, k, input, width), rate);
    }
    nn_graph_set_scope(g, NULL);
    int x = nn_concat(g, "ensemble_logits", n, logits);
    return nn_dense(g, "ensemble", x, 1, 0, NN_ACT_NONE);
}

/* x is the {T,S,S,3} input. */
static int video_model(nn_graph *g, backbone_kind k, int x, float width, float rate) {
    int tiny = k == BB_TINY;
    x = nn_fold_time(g, x);
    x = backbone(g, k, x, width);
    x = nn_gap(g, "global_average_pooling2d", x);
    x = nn_unfold_time(g, x);
    x = nn_lstm(g, "lstm", x, tiny ? 16 : 256, 1);
    x = nn_dropout(g, "dropout", x, rate);
    x = nn_lstm(g, "lstm_1", x, tiny ? 8 : 128, 0);
    x = nn_dropout(g, "dropout_1", x, rate);
    x = nn_dense(g, "dense", x, tiny ? 8 : 64, 1, NN_ACT_RELU);
    return nn_dense(g, "dense_1", x, 1, 1, NN_ACT_NONE);
}

static void list_names(char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < N_ARCHS && len < cap; i++) {
        int n = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", arch_infos[i].name);
        if (n < 0) break;
        len += (size_t)n;
    }
}

int dfd_arch_build(const char *name, const dfd_arch_opts *opts, nn_graph **out, dfd_error *err) {
    if (!out) return dfd_fail(err, DFD_E_ARG, "dfd_arch_build: no output graph pointer");
    *out = NULL;
    const dfd_arch_info *info = dfd_arch_find(name);
    if (!info) {
        char known[256];
        list_names(known, sizeof known);
        return dfd_fail(err, DFD_E_NOT_FOUND, "unknown architecture '%s' (known: %s)", name ? name : "(null)",
                        known);
    }
    int idx = (int)(info - arch_infos);
    backbone_kind bk = arch_kinds[idx].backbone;
    head_kind hk = arch_kinds[idx].head;

    dfd_arch_opts o;
    if (opts)
        o = *opts;
    else
        dfd_arch_opts_default(&o);
    int size = o.input_size ? o.input_size : info->default_input;
    int frames = o.frames ? o.frames : DFD_DEFAULT_FRAMES;
    float rate = o.dropout < 0 ? DFD_DEFAULT_DROPOUT : o.dropout;
    float width = o.width == 0.0f ? 1.0f : o.width;
    if (size < info->min_input || size > DFD_MAX_INPUT)
        return dfd_fail(err, DFD_E_ARG, "%s: input size %d outside [%d, %d]", info->name, size, info->min_input,
                        DFD_MAX_INPUT);
    if (info->is_video && (frames < 1 || frames > DFD_MAX_FRAMES))
        return dfd_fail(err, DFD_E_ARG, "%s: %d frames outside [1, %d]", info->name, frames, DFD_MAX_FRAMES);
    if (!(rate >= 0.0f && rate < 1.0f))
        return dfd_fail(err, DFD_E_ARG, "%s: dropout rate %g outside [0, 1)", info->name, (double)rate);
    if (!(width > 0.0f && width <= 4.0f))
        return dfd_fail(err, DFD_E_ARG, "%s: width %g outside (0, 4]", info->name, (double)width);
    if ((bk == BB_XCEPTION || bk == BB_INCEPTION_V3) && width != 1.0f)
        return dfd_fail(err, DFD_E_ARG, "%s has no width multiplier (got %g)", info->name, (double)width);
    int members = o.members ? o.members : 1;
    if (members < 1 || members > DFD_MODEL_MAX_MEMBERS)
        return dfd_fail(err, DFD_E_ARG, "%s: %d ensemble members outside [1, %d]", info->name, members,
                        DFD_MODEL_MAX_MEMBERS);
    if (members > 1 && (info->is_video || hk != HEAD_IMAGE))
        return dfd_fail(err, DFD_E_ARG, "%s: only image classifiers can be ensembles", info->name);

    nn_graph *g = nn_graph_new();
    if (!g) return dfd_fail(err, DFD_E_NOMEM, "out of memory building '%s'", info->name);
    int x;
    if (info->is_video) {
        int shape[4] = {frames, size, size, 3};
        x = nn_input(g, "input", 4, shape);
        x = video_model(g, bk, x, width, rate);
    } else {
        int shape[3] = {size, size, 3};
        x = nn_input(g, "input", 3, shape);
        if (members > 1) {
            x = ensemble(g, bk, x, width, rate, members);
        } else {
            x = backbone(g, bk, x, width);
            if (hk == HEAD_IMAGE) x = image_head(g, bk, x, rate);
        }
    }
    if (x >= 0 && nn_mark_output(g, x) < 0) x = -1;
    const char *gerr = nn_graph_error(g);
    if (x < 0 || gerr) {
        int rc = dfd_fail(err, DFD_E_INTERNAL, "building '%s' at input %d: %s", info->name, size,
                          gerr ? gerr : "a layer could not be added");
        nn_graph_free(g);
        return rc;
    }
    *out = g;
    return DFD_OK;
}
