/*
 * ref_internal.h — state of the reference backend, shared by its forward (ref.c) and
 * backward (ref_backward.c) halves. Plain fp32 buffers in the nn.h layouts, one per node,
 * sized for max_batch at creation so that passes never allocate.
 */
#ifndef DFD_NN_REF_INTERNAL_H
#define DFD_NN_REF_INTERNAL_H

#include <math.h>

#include "nn/backend.h"
#include "nn/graph_internal.h"

typedef struct ref_node {
    float *out;       /* output, max_batch * batch_mul * size */
    float *pre;       /* training, fused activation: the values before it */
    float *grad;      /* training: d(loss)/d(out) */
    uint8_t *mask;    /* training dropout: keep-mask of the last pass */
    float *bn_mean;   /* batchnorm: the batch mean / 1/sqrt(var+eps) last used, {C} */
    float *bn_invstd;
    float *lstm;      /* LSTM: per item and step i, f, g, o, c, h (6U values) */
    float *work;      /* LSTM backward scratch (6U) */
} ref_node;

typedef struct ref_priv {
    ref_node *nodes;
    int n_nodes;
    float *scratch;   /* training: d(pre-activation) of the node being differentiated */
    size_t scratch_n;
    double *acc;      /* one output pixel's channels (conv), as many as the widest node */
} ref_priv;

/* Rows of a node in a pass of `batch` items (the batch times its time folding). */
static inline size_t ref_rows(const nn_node *n, int batch) { return (size_t)batch * (size_t)n->batch_mul; }

static inline float ref_sigmoid(float x) {
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* Activation value and derivative (at pre-activation x; alpha is PReLU's slope). */
static inline float ref_act(nn_act a, float x, float alpha) {
    switch (a) {
    case NN_ACT_RELU: return x > 0 ? x : 0.0f;
    case NN_ACT_RELU6: return x < 0 ? 0.0f : x > 6 ? 6.0f : x;
    case NN_ACT_SIGMOID: return ref_sigmoid(x);
    case NN_ACT_SWISH: return x * ref_sigmoid(x);
    case NN_ACT_TANH: return tanhf(x);
    case NN_ACT_PRELU: return x > 0 ? x : alpha * x;
    case NN_ACT_NONE:
    default: return x;
    }
}

static inline float ref_act_deriv(nn_act a, float x, float alpha) {
    switch (a) {
    case NN_ACT_RELU: return x > 0 ? 1.0f : 0.0f;
    case NN_ACT_RELU6: return x > 0 && x < 6 ? 1.0f : 0.0f;
    case NN_ACT_SIGMOID: {
        float s = ref_sigmoid(x);
        return s * (1 - s);
    }
    case NN_ACT_SWISH: {
        float s = ref_sigmoid(x);
        return s + x * s * (1 - s);
    }
    case NN_ACT_TANH: {
        float t = tanhf(x);
        return 1 - t * t;
    }
    case NN_ACT_PRELU: return x > 0 ? 1.0f : alpha;
    case NN_ACT_NONE:
    default: return 1.0f;
    }
}

/* The parameter in slot k of node n, or NULL. */
static inline nn_param *ref_param(const nn_exec *ex, const nn_node *n, int k) {
    return n->params[k] >= 0 ? nn_graph_param(ex->g, n->params[k]) : NULL;
}

/* Batch norm uses the batch's statistics only when training a layer whose statistics are
 * not frozen; a frozen (non-trainable) layer runs in inference mode, as in Keras 2.1+. */
static inline int ref_bn_batch_stats(const nn_exec *ex, const nn_node *n) {
    return ex->opts.training && !n->a.bn.frozen_stats && n->trainable;
}

/* TFLite's RESIZE_BILINEAR source coordinate of output index v (see ref.c). */
void ref_resize_coord(int v, float scale, int half_pixel, int in_size, float *src, int *lo, int *hi);
float ref_resize_scale(int in_size, int out_size, int align_corners);

int ref_backward(nn_exec *ex, const float *const *d_outputs, dfd_error *err);

#endif
