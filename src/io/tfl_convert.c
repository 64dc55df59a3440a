/*
 * tfl_convert.c — turning a parsed TFLite model (tflite.c) into an nn graph.
 *
 * TFLite tensors carry the batch as their first dimension; nn shapes are per item, so
 * every shape here drops it (and the file's batch must be 1). Weights move from TFLite's
 * layouts into Keras's, which nn uses: a CONV_2D filter is OHWI and becomes HWIO, a
 * DEPTHWISE_CONV_2D filter is 1HWC and becomes {KH, KW, C, 1}. After each layer is built,
 * its shape is compared with the one the file declares, so a misread option (padding,
 * stride) fails the conversion instead of producing a silently wrong graph.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tflite.h"

typedef struct conv_ctx {
    const tfl_model *m;
    nn_graph *g;
    int *node_of;   /* tensor index -> nn node id, -1 when not (yet) a node */
    dfd_error *err;
    int op_index;   /* the operator being converted, for messages */
} conv_ctx;

static int unsupported(conv_ctx *c, const char *fmt, const char *detail) {
    const tfl_op *op = &c->m->ops[c->op_index];
    return dfd_fail(c->err, DFD_E_UNSUPPORTED, "TFLite %s (operator %d): %s%s", tfl_op_name(op->code), c->op_index, fmt,
                    detail ? detail : "");
}

static int malformed(conv_ctx *c, const char *what) {
    const tfl_op *op = &c->m->ops[c->op_index];
    return dfd_fail(c->err, DFD_E_CORRUPT, "malformed TFLite file: %s (operator %d): %s", tfl_op_name(op->code),
                    c->op_index, what);
}

/* The nn node computing tensor t into *id. */
static int node_in(conv_ctx *c, int t, int *id) {
    *id = -1;
    if (t < 0 || t >= c->m->n_tensors) return malformed(c, "missing input");
    if (c->node_of[t] < 0)
        return malformed(c, c->m->tensors[t].f32 || c->m->tensors[t].i32 ? "a constant where an activation is expected"
                                                                         : "input used before it is computed");
    *id = c->node_of[t];
    return DFD_OK;
}

/* Input 0 of op into *id. */
static int first_in(conv_ctx *c, const tfl_op *op, int *id) {
    return node_in(c, op->n_inputs > 0 ? op->inputs[0] : -1, id);
}

static const tfl_tensor *const_in(conv_ctx *c, const tfl_op *op, int i, int want_float) {
    if (i >= op->n_inputs || op->inputs[i] < 0) return NULL;
    const tfl_tensor *t = &c->m->tensors[op->inputs[i]];
    if (want_float ? !t->f32 : !t->i32) return NULL;
    return t;
}

/* A layer name from the output tensor's name when it is usable, else "<kind>_<op>". */
static void layer_name(conv_ctx *c, const tfl_op *op, const char *kind, char *out, size_t cap) {
    const char *n = op->n_outputs > 0 ? c->m->tensors[op->outputs[0]].name : "";
    size_t len = strlen(n);
    int ok = len > 0 && len < 64;
    for (size_t i = 0; ok && i < len; i++) {
        char ch = n[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '-' || ch == '.'))
            ok = 0;
    }
    if (ok && nn_graph_find_node(c->g, n) < 0) {
        snprintf(out, cap, "%s", n);
        return;
    }
    snprintf(out, cap, "%s_%d", kind, c->op_index);
}

static int act_of(conv_ctx *c, int tfl_act, nn_act *out) {
    switch (tfl_act) {
    case TFL_ACT_NONE: *out = NN_ACT_NONE; return DFD_OK;
    case TFL_ACT_RELU: *out = NN_ACT_RELU; return DFD_OK;
    case TFL_ACT_RELU6: *out = NN_ACT_RELU6; return DFD_OK;
    case TFL_ACT_TANH: *out = NN_ACT_TANH; return DFD_OK;
    default: return unsupported(c, "fused activation RELU_N1_TO_1 or SIGN_BIT", NULL);
    }
}

static int padding_of(conv_ctx *c, int p, nn_padding *out) {
    if (p == TFL_PAD_SAME) *out = NN_PAD_SAME;
    else if (p == TFL_PAD_VALID) *out = NN_PAD_VALID;
    else return malformed(c, "unknown padding");
    return DFD_OK;
}

/* After a builder call: its error, else a check of the node's shape against tensor t. */
static int check_node(conv_ctx *c, int id, int t) {
    if (id < 0) {
        const char *e = nn_graph_error(c->g);
        return dfd_fail(c->err, DFD_E_UNSUPPORTED, "TFLite %s (operator %d): cannot build the layer: %s",
                        tfl_op_name(c->m->ops[c->op_index].code), c->op_index, e ? e : "unknown error");
    }
    const nn_node *n = nn_graph_node(c->g, id);
    const tfl_tensor *tt = &c->m->tensors[t];
    int same = tt->ndim == n->ndim + 1 && tt->ndim >= 1 && tt->shape[0] == 1;
    for (int d = 0; same && d < n->ndim; d++) same = n->shape[d] == tt->shape[d + 1];
    if (!same) {
        char want[96] = "", got[96] = "";
        for (int d = 0; d < tt->ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", d ? "," : "", tt->shape[d]);
        for (int d = 0; d < n->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), ",%d", n->shape[d]);
        return dfd_fail(c->err, DFD_E_UNSUPPORTED,
                        "TFLite %s (operator %d): the file declares shape [%s] for '%s', dfd computes [1%s]",
                        tfl_op_name(c->m->ops[c->op_index].code), c->op_index, want, tt->name, got);
    }
    c->node_of[t] = id;
    return DFD_OK;
}

/* A separate activation layer after an op whose fused activation nn cannot fuse; *id is
 * the op's node on entry and the last node on return. */
static int fused_after(conv_ctx *c, const tfl_op *op, int *id, const char *name) {
    nn_act a = NN_ACT_NONE;
    int rc = act_of(c, op->activation, &a);
    if (rc || a == NN_ACT_NONE || *id < 0) return rc;
    char n[NN_NAME_MAX];
    snprintf(n, sizeof n, "%.80s_act", name);
    *id = nn_activation(c->g, n, *id, a);
    return DFD_OK;
}

static int conv2d(conv_ctx *c, const tfl_op *op) {
    int x, rc0 = first_in(c, op, &x);
    if (rc0) return rc0;
    const tfl_tensor *f = const_in(c, op, 1, 1), *b = const_in(c, op, 2, 1);
    if (!f || f->ndim != 4) return unsupported(c, "the filter must be a constant OHWI float tensor", NULL);
    if (op->n_inputs > 2 && op->inputs[2] >= 0 && !b) return unsupported(c, "the bias must be a float constant", NULL);
    int O = f->shape[0], KH = f->shape[1], KW = f->shape[2], I = f->shape[3];
    const nn_node *xn = nn_graph_node(c->g, x);
    if (xn->ndim != 3 || xn->shape[2] != I) return unsupported(c, "grouped convolution or non-image input", NULL);
    if (b && (b->count != (size_t)O)) return malformed(c, "bias size differs from the filter's output channels");
    if (op->stride_h < 1 || op->stride_w < 1 || op->dilation_h < 1 || op->dilation_w < 1)
        return malformed(c, "stride or dilation below 1");
    if (KH > TFL_MAX_WINDOW || KW > TFL_MAX_WINDOW) return malformed(c, "kernel larger than 4096");
    nn_conv_attr a;
    memset(&a, 0, sizeof a);
    a.kh = KH;
    a.kw = KW;
    a.sh = op->stride_h;
    a.sw = op->stride_w;
    a.dh = op->dilation_h;
    a.dw = op->dilation_w;
    a.groups = 1;
    a.out_c = O;
    a.has_bias = b != NULL;
    int rc = padding_of(c, op->padding, &a.padding);
    if (!rc) rc = act_of(c, op->activation, &a.act);
    if (rc) return rc;
    char name[NN_NAME_MAX];
    layer_name(c, op, "conv2d", name, sizeof name);
    int id = nn_conv2d(c->g, name, x, &a);
    if ((rc = check_node(c, id, op->outputs[0]))) return rc;
    char pn[NN_NAME_MAX + 16];
    snprintf(pn, sizeof pn, "%s/kernel", name);
    nn_param *k = nn_graph_find_param(c->g, pn);
    if (!k || k->count != f->count) return dfd_fail(c->err, DFD_E_INTERNAL, "conv layer '%s' has no kernel of the filter's size", name);
    for (int o = 0; o < O; o++)
        for (int h = 0; h < KH; h++)
            for (int w = 0; w < KW; w++)
                for (int i = 0; i < I; i++)
                    k->data[(((size_t)h * KW + w) * I + i) * O + o] = f->f32[(((size_t)o * KH + h) * KW + w) * I + i];
    if (b) {
        snprintf(pn, sizeof pn, "%s/bias", name);
        nn_param *bp = nn_graph_find_param(c->g, pn);
        if (!bp || bp->count != b->count) return dfd_fail(c->err, DFD_E_INTERNAL, "conv layer '%s' has no bias", name);
        memcpy(bp->data, b->f32, b->count * sizeof(float));
    }
    return DFD_OK;
}

static int depthwise(conv_ctx *c, const tfl_op *op) {
    int x, rc0 = first_in(c, op, &x);
    if (rc0) return rc0;
    const tfl_tensor *f = const_in(c, op, 1, 1), *b = const_in(c, op, 2, 1);
    if (!f || f->ndim != 4 || f->shape[0] != 1) return unsupported(c, "the filter must be a constant 1HWC float tensor", NULL);
    if (op->n_inputs > 2 && op->inputs[2] >= 0 && !b) return unsupported(c, "the bias must be a float constant", NULL);
    int KH = f->shape[1], KW = f->shape[2], C = f->shape[3];
    const nn_node *xn = nn_graph_node(c->g, x);
    if (xn->ndim != 3 || xn->shape[2] != C || (op->depth_multiplier != 1 && op->depth_multiplier != 0))
        return unsupported(c, "depth multiplier other than 1", NULL);
    if (op->dilation_h != 1 || op->dilation_w != 1) return unsupported(c, "dilated depthwise convolution", NULL);
    if (op->stride_h < 1 || op->stride_w < 1) return malformed(c, "stride below 1");
    if (KH > TFL_MAX_WINDOW || KW > TFL_MAX_WINDOW) return malformed(c, "kernel larger than 4096");
    if (b && b->count != (size_t)C) return malformed(c, "bias size differs from the channels");
    nn_padding pad = NN_PAD_VALID;
    nn_act act = NN_ACT_NONE;
    int rc = padding_of(c, op->padding, &pad);
    if (!rc) rc = act_of(c, op->activation, &act);
    if (rc) return rc;
    char name[NN_NAME_MAX];
    layer_name(c, op, "depthwise", name, sizeof name);
    int id = nn_depthwise2d(c->g, name, x, KH, KW, op->stride_h, op->stride_w, pad, b != NULL, act);
    if ((rc = check_node(c, id, op->outputs[0]))) return rc;
    char pn[NN_NAME_MAX + 24];
    snprintf(pn, sizeof pn, "%s/depthwise_kernel", name);
    nn_param *k = nn_graph_find_param(c->g, pn);
    if (!k || k->count != f->count) return dfd_fail(c->err, DFD_E_INTERNAL, "depthwise layer '%s' has no kernel", name);
    /* 1HWC and {KH,KW,C,1} list the values in the same order. */
    memcpy(k->data, f->f32, f->count * sizeof(float));
    if (b) {
        snprintf(pn, sizeof pn, "%s/bias", name);
        nn_param *bp = nn_graph_find_param(c->g, pn);
        if (!bp || bp->count != b->count) return dfd_fail(c->err, DFD_E_INTERNAL, "depthwise layer '%s' has no bias", name);
        memcpy(bp->data, b->f32, b->count * sizeof(float));
    }
    return DFD_OK;
}

static int maxpool(conv_ctx *c, const tfl_op *op) {
    int x, rc0 = first_in(c, op, &x);
    if (rc0) return rc0;
    if (op->filter_h < 1 || op->filter_w < 1 || op->stride_h < 1 || op->stride_w < 1)
        return malformed(c, "pool size or stride below 1");
    nn_padding pad = NN_PAD_VALID;
    int rc = padding_of(c, op->padding, &pad);
    if (rc) return rc;
    char name[NN_NAME_MAX];
    layer_name(c, op, "max_pool", name, sizeof name);
    int id = nn_maxpool(c->g, name, x, op->filter_h, op->filter_w, op->stride_h, op->stride_w, pad);
    if ((rc = fused_after(c, op, &id, name))) return rc;
    return check_node(c, id, op->outputs[0]);
}

static int pad(conv_ctx *c, const tfl_op *op) {
    int x, rc0 = first_in(c, op, &x);
    if (rc0) return rc0;
    const tfl_tensor *p = const_in(c, op, 1, 0);
    if (!p || p->ndim != 2 || p->shape[1] != 2 || p->shape[0] != 4)
        return unsupported(c, "paddings must be a constant int32 [4,2] tensor (NHWC input)", NULL);
    const int32_t *v = p->i32;
    for (int i = 0; i < 8; i++)
        if (v[i] < 0 || v[i] > 4096) return malformed(c, "padding out of range");
    if (v[0] || v[1]) return unsupported(c, "padding along the batch", NULL);
    if (v[6]) return unsupported(c, "channel padding before the channels", NULL);
    char name[NN_NAME_MAX];
    layer_name(c, op, "pad", name, sizeof name);
    int id = nn_pad(c->g, name, x, v[2], v[3], v[4], v[5], v[7]);
    return check_node(c, id, op->outputs[0]);
}

static int add(conv_ctx *c, const tfl_op *op) {
    if (op->n_inputs != 2) return malformed(c, "ADD needs two inputs");
    int a, b, rc = node_in(c, op->inputs[0], &a);
    if (!rc) rc = node_in(c, op->inputs[1], &b);
    if (rc) return rc;
    char name[NN_NAME_MAX];
    layer_name(c, op, "add", name, sizeof name);
    int id = nn_add(c->g, name, a, b);
    if ((rc = fused_after(c, op, &id, name))) return rc;
    return check_node(c, id, op->outputs[0]);
}

/* PRELU with a constant alpha that varies at most along the channels ({C}, {1,1,C}, ...:
 * how Keras's PReLU with shared_axes=[1,2] is exported): nn's PReLU activation, alpha
 * copied into "<name>/alpha". */
static int prelu(conv_ctx *c, const tfl_op *op) {
    int x, rc0 = first_in(c, op, &x);
    if (rc0) return rc0;
    if (op->n_inputs != 2) return malformed(c, "PRELU needs an input and an alpha");
    const tfl_tensor *al = const_in(c, op, 1, 1);
    if (!al) return unsupported(c, "alpha must be a float constant", NULL);
    const nn_node *xn = nn_graph_node(c->g, x);
    int C = xn->shape[xn->ndim - 1];
    for (int d = 0; d + 1 < al->ndim; d++)
        if (al->shape[d] != 1) return unsupported(c, "alpha varying along an axis other than the channels", NULL);
    if (al->count != (size_t)C) return malformed(c, "alpha size differs from the channels");
    char name[NN_NAME_MAX];
    layer_name(c, op, "prelu", name, sizeof name);
    int id = nn_activation(c->g, name, x, NN_ACT_PRELU);
    int rc = check_node(c, id, op->outputs[0]);
    if (rc) return rc;
    char pn[NN_NAME_MAX + 16];
    snprintf(pn, sizeof pn, "%s/alpha", name);
    nn_param *ap = nn_graph_find_param(c->g, pn);
    if (!ap || ap->count != al->count) return dfd_fail(c->err, DFD_E_INTERNAL, "PReLU layer '%s' has no alpha", name);
    memcpy(ap->data, al->f32, al->count * sizeof(float));
    return DFD_OK;
}

static int relu(conv_ctx *c, const tfl_op *op) {
    int x, rc0 = first_in(c, op, &x);
    if (rc0) return rc0;
    char name[NN_NAME_MAX];
    layer_name(c, op, "relu", name, sizeof name);
    return check_node(c, nn_activation(c->g, name, x, NN_ACT_RELU), op->outputs[0]);
}

/* RESHAPE takes its target from the output tensor's declared shape (checked against the
 * element count), which covers both the shape-input and the options forms. */
static int reshape(conv_ctx *c, const tfl_op *op) {
    int x, rc0 = first_in(c, op, &x);
    if (rc0) return rc0;
    const tfl_tensor *o = &c->m->tensors[op->outputs[0]];
    if (o->ndim < 2 || o->ndim - 1 > NN_MAX_DIMS || o->shape[0] != 1)
        return unsupported(c, "reshape that changes the batch or has more than 4 dimensions per item", NULL);
    char name[NN_NAME_MAX];
    layer_name(c, op, "reshape", name, sizeof name);
    int id = nn_reshape(c->g, name, x, o->ndim - 1, o->shape + 1);
    return check_node(c, id, op->outputs[0]);
}

/* nn concatenates along the last axis. Concatenation along an inner axis k is the same
 * thing on flattened inputs when every per-item dimension before k is 1 (BlazeFace joins
 * its [1, anchors, values] heads along axis 1), so that case is rewritten as flatten ->
 * concat -> reshape. */
static int concat(conv_ctx *c, const tfl_op *op) {
    if (op->n_inputs < 1 || op->n_inputs > TFL_MAX_OP_IO) return malformed(c, "no inputs");
    const tfl_tensor *o = &c->m->tensors[op->outputs[0]];
    int rank = o->ndim, axis = op->axis < 0 ? op->axis + rank : op->axis;
    if (rank < 2 || axis < 1 || axis >= rank) return unsupported(c, "concatenation along the batch or out of range", NULL);
    int xs[TFL_MAX_OP_IO];
    for (int i = 0; i < op->n_inputs; i++) {
        int rc = node_in(c, op->inputs[i], &xs[i]);
        if (rc) return rc;
    }
    char name[NN_NAME_MAX];
    layer_name(c, op, "concat", name, sizeof name);
    int id;
    if (axis == rank - 1) {
        id = nn_concat(c->g, name, op->n_inputs, xs);
    } else {
        for (int d = 1; d < axis; d++)
            if (o->shape[d] != 1) return unsupported(c, "concatenation along an inner axis with outer dimensions", NULL);
        int flat[TFL_MAX_OP_IO];
        for (int i = 0; i < op->n_inputs; i++) {
            const nn_node *n = nn_graph_node(c->g, xs[i]);
            size_t cnt_z = 1;
            for (int d = 0; d < n->ndim; d++) cnt_z *= (size_t)n->shape[d];
            if (cnt_z > (size_t)1 << 30) return unsupported(c, "input too large", NULL);
            int cnt = (int)cnt_z;
            char fn[NN_NAME_MAX];
            snprintf(fn, sizeof fn, "%.80s_flat%d", name, i);
            flat[i] = nn_reshape(c->g, fn, xs[i], 1, &cnt);
            if (flat[i] < 0) return check_node(c, -1, op->outputs[0]);
        }
        char cn[NN_NAME_MAX];
        snprintf(cn, sizeof cn, "%.80s_flat", name);
        int cat = nn_concat(c->g, cn, op->n_inputs, flat);
        id = cat < 0 ? -1 : nn_reshape(c->g, name, cat, rank - 1, o->shape + 1);
    }
    int rc = fused_after(c, op, &id, name);
    if (rc) return rc;
    return check_node(c, id, op->outputs[0]);
}

static int resize(conv_ctx *c, const tfl_op *op) {
    int x, rc0 = first_in(c, op, &x);
    if (rc0) return rc0;
    const tfl_tensor *s = const_in(c, op, 1, 0);
    if (!s || s->count != 2) return unsupported(c, "the size must be a constant int32 [2] tensor", NULL);
    if (s->i32[0] < 1 || s->i32[1] < 1 || s->i32[0] > 16384 || s->i32[1] > 16384) return malformed(c, "size out of range");
    if (op->align_corners && op->half_pixel_centers) return malformed(c, "align_corners with half_pixel_centers");
    char name[NN_NAME_MAX];
    layer_name(c, op, "resize", name, sizeof name);
    int id = nn_resize_bilinear(c->g, name, x, s->i32[0], s->i32[1], op->align_corners, op->half_pixel_centers);
    return check_node(c, id, op->outputs[0]);
}

int tfl_to_graph(const tfl_model *m, nn_graph **out, dfd_error *err) {
    *out = NULL;
    if (m->n_inputs != 1) return dfd_fail(err, DFD_E_UNSUPPORTED, "TFLite graph has %d inputs (dfd supports one)", m->n_inputs);
    if (m->n_outputs < 1) return dfd_fail(err, DFD_E_CORRUPT, "malformed TFLite file: the graph has no outputs");
    const tfl_tensor *in = &m->tensors[m->inputs[0]];
    if (in->type != TFL_FLOAT32 || in->ndim < 2 || in->ndim - 1 > NN_MAX_DIMS || in->shape[0] != 1)
        return dfd_fail(err, DFD_E_UNSUPPORTED, "TFLite input '%s' must be float32 with batch 1", in->name);
    conv_ctx c = {m, nn_graph_new(), NULL, err, 0};
    c.node_of = dfd_malloc_array((size_t)m->n_tensors, sizeof(int));
    if (!c.g || !c.node_of) {
        nn_graph_free(c.g);
        free(c.node_of);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory converting a TFLite graph");
    }
    for (int i = 0; i < m->n_tensors; i++) c.node_of[i] = -1;
    int rc = DFD_OK;
    int id = nn_input(c.g, "input", in->ndim - 1, in->shape + 1);
    if (id < 0) rc = dfd_fail(err, DFD_E_UNSUPPORTED, "cannot make the input layer: %s", nn_graph_error(c.g));
    else c.node_of[m->inputs[0]] = id;
    for (int i = 0; i < m->n_ops && !rc; i++) {
        const tfl_op *op = &m->ops[i];
        c.op_index = i;
        if (op->code == TFL_OP_DEQUANTIZE) continue; /* folded into constants at parse time */
        if (op->n_outputs != 1 || op->outputs[0] < 0) {
            rc = malformed(&c, "operators must have exactly one output");
            break;
        }
        if (c.node_of[op->outputs[0]] >= 0 || m->tensors[op->outputs[0]].f32 || m->tensors[op->outputs[0]].i32) {
            rc = malformed(&c, "output tensor written twice");
            break;
        }
        switch (op->code) {
        case TFL_OP_CONV_2D: rc = conv2d(&c, op); break;
        case TFL_OP_DEPTHWISE_CONV_2D: rc = depthwise(&c, op); break;
        case TFL_OP_MAX_POOL_2D: rc = maxpool(&c, op); break;
        case TFL_OP_PAD: rc = pad(&c, op); break;
        case TFL_OP_ADD: rc = add(&c, op); break;
        case TFL_OP_RELU: rc = relu(&c, op); break;
        case TFL_OP_PRELU: rc = prelu(&c, op); break;
        case TFL_OP_RESHAPE: rc = reshape(&c, op); break;
        case TFL_OP_CONCATENATION: rc = concat(&c, op); break;
        case TFL_OP_RESIZE_BILINEAR: rc = resize(&c, op); break;
        default: rc = dfd_fail(err, DFD_E_UNSUPPORTED, "unsupported TFLite operator '%s'", tfl_op_name(op->code)); break;
        }
    }
    for (int i = 0; i < m->n_outputs && !rc; i++) {
        int t = m->outputs[i];
        if (c.node_of[t] < 0) rc = dfd_fail(err, DFD_E_CORRUPT, "malformed TFLite file: output '%s' is never computed", m->tensors[t].name);
        else if (nn_mark_output(c.g, c.node_of[t]) < 0)
            rc = dfd_fail(err, DFD_E_INTERNAL, "cannot mark output '%s': %s", m->tensors[t].name, nn_graph_error(c.g));
    }
    free(c.node_of);
    if (rc) {
        nn_graph_free(c.g);
        return rc;
    }
    *out = c.g;
    return DFD_OK;
}
