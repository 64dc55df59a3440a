/*
 * graph.c — nn graphs: the builders (shape inference, TensorFlow 'same' padding
 * resolution, parameter creation and naming "<layer>/<weight>"), introspection, weight
 * and multiply-accumulate counting, and freezing.
 *
 * A graph is a list of nodes in creation order; a node may only consume nodes created
 * before it, so creation order is a topological order and the executors simply walk it
 * forwards (and backwards for gradients). Nodes and parameters are allocated one by one
 * and held through pointer arrays so that pointers handed out by nn_graph_node /
 * nn_graph_param stay valid while the graph keeps growing.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/graph_internal.h"

nn_graph *nn_graph_new(void) {
    nn_graph *g = calloc(1, sizeof *g);
    if (g) g->input = -1;
    return g;
}

void nn_graph_free(nn_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_nodes; i++) free(g->nodes[i]);
    free(g->nodes);
    free(g->layer_start);
    for (int i = 0; i < g->n_params; i++) {
        nn_param *p = g->params[i];
        free(p->data);
        free(p->grad);
        free(p->opt_m);
        free(p->opt_v);
        free(p);
    }
    free(g->params);
    free(g->param_role);
    free(g->outputs);
    free(g);
}

/* Records the first error only: later errors are usually consequences of it. */
static int gfail(nn_graph *g, const char *fmt, ...) DFD_PRINTF(2, 3);
static int gfail(nn_graph *g, const char *fmt, ...) {
    if (!g->has_error) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->error, sizeof g->error, fmt, ap);
        va_end(ap);
        g->has_error = 1;
    }
    return -1;
}

const char *nn_graph_error(const nn_graph *g) { return g && g->has_error ? g->error : NULL; }

size_t nn_node_size(const nn_node *n) {
    size_t s = 1;
    for (int i = 0; i < n->ndim; i++) s *= (size_t)n->shape[i];
    return s;
}

/* ---- Node and parameter creation ------------------------------------------------ */

static const char *disp(const char *name) { return name && *name ? name : "(unnamed)"; }

/* Checks an input id and returns its node, or NULL after recording an error. */
static const nn_node *in_node(nn_graph *g, const char *name, int x) {
    if (x < 0 || x >= g->n_nodes) {
        gfail(g, "layer '%s': input node %d does not exist (graph has %d nodes)", disp(name), x, g->n_nodes);
        return NULL;
    }
    return g->nodes[x];
}

void nn_graph_set_scope(nn_graph *g, const char *scope) {
    if (!g) return;
    size_t len = scope ? strlen(scope) : 0;
    if (len >= sizeof g->scope) {
        gfail(g, "layer-name scope '%.20s...' is too long (at most %d characters)", scope, (int)sizeof g->scope - 1);
        return;
    }
    memcpy(g->scope, scope ? scope : "", len + 1);
}

/* Appends a node (op, name, inputs); returns it with params = -1, trainable = 1, or NULL.
 * A non-empty name gets the graph's scope in front (nn_graph_set_scope). */
static nn_node *add_node(nn_graph *g, nn_op op, const char *name, int n_in, const int *ins) {
    if (g->has_error) return NULL;
    char scoped[NN_NAME_MAX];
    if (name && *name && g->scope[0]) {
        int len = snprintf(scoped, sizeof scoped, "%s%s", g->scope, name);
        if (len < 0 || len >= (int)sizeof scoped) {
            gfail(g, "layer name '%s%.40s...' is too long", g->scope, name);
            return NULL;
        }
        name = scoped;
    }
    if (name && strlen(name) >= NN_NAME_MAX - 24) {
        gfail(g, "layer name '%.40s...' is too long (at most %d characters)", name, NN_NAME_MAX - 25);
        return NULL;
    }
    if (name && *name && nn_graph_find_node(g, name) >= 0) {
        gfail(g, "duplicate layer name '%s'", name);
        return NULL;
    }
    if (n_in > NN_MAX_INPUTS) {
        gfail(g, "layer '%s': %d inputs, at most %d", disp(name), n_in, NN_MAX_INPUTS);
        return NULL;
    }
    for (int i = 0; i < n_in; i++)
        if (!in_node(g, name, ins[i])) return NULL;
    if (g->n_nodes == g->cap_nodes) {
        int cn = g->cap_nodes, cl = g->cap_nodes; /* two arrays of one capacity */
        nn_node **nn = dfd_grow(g->nodes, &cn, g->n_nodes + 1, sizeof *nn, 32);
        if (!nn) return gfail(g, "out of memory adding layer '%s'", disp(name)), NULL;
        g->nodes = nn;
        int *ls = dfd_grow(g->layer_start, &cl, g->n_nodes + 1, sizeof *ls, 32);
        if (!ls) return gfail(g, "out of memory adding layer '%s'", disp(name)), NULL;
        g->layer_start = ls;
        g->cap_nodes = cn < cl ? cn : cl;
    }
    nn_node *n = calloc(1, sizeof *n);
    if (!n) return gfail(g, "out of memory adding layer '%s'", disp(name)), NULL;
    n->op = op;
    if (name) snprintf(n->name, sizeof n->name, "%s", name);
    n->n_inputs = n_in;
    for (int i = 0; i < NN_MAX_INPUTS; i++) n->inputs[i] = i < n_in ? ins[i] : -1;
    for (int i = 0; i < 4; i++) n->params[i] = -1;
    n->trainable = 1;
    n->batch_mul = n_in > 0 ? g->nodes[ins[0]]->batch_mul : 1;
    g->layer_start[g->n_nodes] = g->n_nodes;
    g->nodes[g->n_nodes++] = n;
    return n;
}

/* The id of a node just created by add_node (always the last one). */
static int node_id(const nn_graph *g, const nn_node *n) {
    (void)n;
    return g->n_nodes - 1;
}

/* Creates a zeroed parameter "<layer>/<weight>" of the given shape and returns its index. */
static int add_param(nn_graph *g, const char *layer, const char *weight, int role, int ndim, const int *shape) {
    if (g->has_error) return -1;
    char name[NN_NAME_MAX];
    int len = snprintf(name, sizeof name, "%s%s/%s", g->scope, layer, weight);
    if (len < 0 || len >= (int)sizeof name)
        return gfail(g, "parameter name '%s%s/%s' is too long", g->scope, layer, weight);
    if (nn_graph_find_param(g, name)) return gfail(g, "duplicate parameter name '%s'", name);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) return gfail(g, "parameter '%s': dimension %d is %d", name, i, shape[i]);
        if (dfd_mul_size(count, (size_t)shape[i], &count)) return gfail(g, "parameter '%s' is too large", name);
    }
    if (g->n_params == g->cap_params) {
        int cp = g->cap_params, cr = g->cap_params; /* two arrays of one capacity */
        nn_param **np = dfd_grow(g->params, &cp, g->n_params + 1, sizeof *np, 32);
        if (!np) return gfail(g, "out of memory for parameter '%s'", name);
        g->params = np;
        uint8_t *nr = dfd_grow(g->param_role, &cr, g->n_params + 1, 1, 32);
        if (!nr) return gfail(g, "out of memory for parameter '%s'", name);
        g->param_role = nr;
        g->cap_params = cp < cr ? cp : cr;
    }
    nn_param *p = calloc(1, sizeof *p);
    if (!p) return gfail(g, "out of memory for parameter '%s'", name);
    p->data = dfd_calloc_array(count, sizeof(float));
    if (!p->data) {
        free(p);
        return gfail(g, "out of memory for parameter '%s' (%zu values)", name, count);
    }
    memcpy(p->name, name, (size_t)len + 1);
    p->ndim = ndim;
    for (int i = 0; i < ndim; i++) p->shape[i] = shape[i];
    p->count = count;
    p->is_statistic = role == NN_ROLE_MOVING_MEAN || role == NN_ROLE_MOVING_VAR;
    p->trainable = !p->is_statistic;
    /* Parameters are created zeroed except where zero would be a broken layer. */
    if (role == NN_ROLE_GAMMA || role == NN_ROLE_MOVING_VAR)
        for (size_t i = 0; i < count; i++) p->data[i] = 1.0f;
    g->param_role[g->n_params] = (uint8_t)role;
    g->params[g->n_params] = p;
    return g->n_params++;
}

/* ---- Shape inference helpers ------------------------------------------------------- */

/* Resolves one spatial axis: output size and the padding before/after, as TensorFlow does.
 * SAME: out = ceil(in / s); total = max((out-1)*s + eff_k - in, 0), the smaller half before
 * (so the extra row/column goes bottom/right). VALID: out = floor((in - eff_k) / s) + 1.
 * EXPLICIT: the caller's pads. Returns the output size, 0 when the window does not fit,
 * or -1 when a size or padding does not fit an int (a huge dilation or kernel from an
 * untrusted model file): the arithmetic is done in 64 bits, where it cannot overflow for
 * int operands, and each result is checked before it is narrowed. */
int nn_resolve_axis(nn_padding mode, int in, int k, int s, int d, int *pad_before, int *pad_after) {
    if (in < 1 || k < 1 || s < 1 || d < 1) return 0;
    int64_t eff = ((int64_t)k - 1) * d + 1; /* < 2^62 */
    if (eff > INT_MAX) return -1;
    if (mode == NN_PAD_SAME) {
        int64_t out = ((int64_t)in + s - 1) / s;
        int64_t total = (out - 1) * s + eff - in; /* (out-1)*s < in, so < 2^32 */
        if (total < 0) total = 0;
        if (total > INT_MAX) return -1;
        *pad_before = (int)(total / 2);
        *pad_after = (int)(total - total / 2);
        return (int)out;
    }
    if (mode == NN_PAD_VALID) *pad_before = *pad_after = 0;
    if (*pad_before < 0 || *pad_after < 0) return -1;
    int64_t span = (int64_t)in + *pad_before + *pad_after - eff;
    if (span < 0) return 0;
    int64_t out = span / s + 1;
    return out > INT_MAX ? -1 : (int)out;
}

static int valid_act(nn_act a) { return a >= NN_ACT_NONE && a <= NN_ACT_PRELU; }

/* ---- Builders -------------------------------------------------------------------------- */

int nn_input(nn_graph *g, const char *name, int ndim, const int *shape) {
    if (!g) return -1;
    if (g->has_error) return -1;
    if (g->input >= 0) return gfail(g, "input '%s': the graph already has an input", disp(name));
    if (ndim < 1 || ndim > NN_MAX_DIMS || !shape)
        return gfail(g, "input '%s': %d dimensions (1..%d)", disp(name), ndim, NN_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0) return gfail(g, "input '%s': dimension %d is %d", disp(name), i, shape[i]);
    nn_node *n = add_node(g, NN_OP_INPUT, name, 0, NULL);
    if (!n) return -1;
    n->ndim = ndim;
    memcpy(n->shape, shape, (size_t)ndim * sizeof(int));
    n->trainable = 0;
    g->input = g->n_nodes - 1;
    return g->input;
}

/* Creates the optional PReLU alpha of a layer with a fused activation: {C}, C = last axis. */
static int add_alpha(nn_graph *g, const char *name, nn_act act, int channels) {
    if (act != NN_ACT_PRELU) return -1;
    return add_param(g, name, "alpha", NN_ROLE_ALPHA, 1, (int[]){channels});
}

/* The shared body of conv2d / depthwise / separable: kernel parameter named `kname`,
 * stored with shape kshape (Keras's layout for that layer). */
static int conv_common(nn_graph *g, const char *name, int x, const nn_conv_attr *attr, const char *kname,
                       int kernel_depthwise) {
    if (!g || g->has_error) return -1;
    if (!attr) return gfail(g, "conv '%s': no attributes", disp(name));
    if (!name || !*name) return gfail(g, "a convolution needs a layer name (its parameters are named after it)");
    const nn_node *xi = in_node(g, name, x);
    if (!xi) return -1;
    nn_conv_attr a = *attr;
    if (a.sh == 0) a.sh = 1;
    if (a.sw == 0) a.sw = 1;
    if (a.dh == 0) a.dh = 1;
    if (a.dw == 0) a.dw = 1;
    if (a.groups == 0) a.groups = 1;
    if (xi->ndim != 3)
        return gfail(g, "conv '%s': input must be {H,W,C}, it has %d dimensions", name, xi->ndim);
    int H = xi->shape[0], W = xi->shape[1], C = xi->shape[2];
    if (a.kh < 1 || a.kw < 1 || a.sh < 1 || a.sw < 1 || a.dh < 1 || a.dw < 1)
        return gfail(g, "conv '%s': kernel %dx%d, stride %dx%d, dilation %dx%d must be positive", name, a.kh, a.kw,
                     a.sh, a.sw, a.dh, a.dw);
    if (a.groups < 1 || C % a.groups || a.out_c < 1 || a.out_c % a.groups)
        return gfail(g, "conv '%s': %d input and %d output channels do not split into %d groups", name, C, a.out_c,
                     a.groups);
    if (a.padding != NN_PAD_VALID && a.padding != NN_PAD_SAME && a.padding != NN_PAD_EXPLICIT)
        return gfail(g, "conv '%s': unknown padding mode %d", name, (int)a.padding);
    if (a.padding == NN_PAD_EXPLICIT && (a.pad_t < 0 || a.pad_b < 0 || a.pad_l < 0 || a.pad_r < 0))
        return gfail(g, "conv '%s': negative explicit padding", name);
    if (!valid_act(a.act)) return gfail(g, "conv '%s': unknown activation %d", name, (int)a.act);
    int oh = nn_resolve_axis(a.padding, H, a.kh, a.sh, a.dh, &a.pad_t, &a.pad_b);
    int ow = nn_resolve_axis(a.padding, W, a.kw, a.sw, a.dw, &a.pad_l, &a.pad_r);
    if (oh < 0 || ow < 0)
        return gfail(g, "conv '%s': a %dx%d kernel with dilation %dx%d, stride %dx%d and padding %d,%d,%d,%d on a "
                        "%dx%d input gives sizes too large to represent", name, a.kh, a.kw, a.dh, a.dw, a.sh, a.sw,
                     a.pad_t, a.pad_b, a.pad_l, a.pad_r, H, W);
    if (oh < 1 || ow < 1)
        return gfail(g, "conv '%s': a %dx%d kernel (dilation %dx%d) does not fit a %dx%d input", name, a.kh, a.kw,
                     a.dh, a.dw, H, W);
    nn_node *n = add_node(g, NN_OP_CONV2D, name, 1, &x);
    if (!n) return -1;
    n->ndim = 3;
    n->shape[0] = oh;
    n->shape[1] = ow;
    n->shape[2] = a.out_c;
    n->a.conv = a;
    int kshape[4] = {a.kh, a.kw, C / a.groups, a.out_c};
    if (kernel_depthwise) { /* {KH,KW,C,1}: the same memory order as {KH,KW,1,C} */
        kshape[2] = C;
        kshape[3] = 1;
    }
    n->params[0] = add_param(g, name, kname, NN_ROLE_KERNEL, 4, kshape);
    if (a.has_bias) n->params[1] = add_param(g, name, "bias", NN_ROLE_BIAS, 1, (int[]){a.out_c});
    n->params[2] = add_alpha(g, name, a.act, a.out_c);
    return g->has_error ? -1 : node_id(g, n);
}

int nn_conv2d(nn_graph *g, const char *name, int x, const nn_conv_attr *attr) {
    return conv_common(g, name, x, attr, "kernel", 0);
}

int nn_depthwise2d(nn_graph *g, const char *name, int x, int kh, int kw, int sh, int sw, nn_padding pad,
                   int has_bias, nn_act act) {
    if (!g || g->has_error) return -1;
    const nn_node *xi = in_node(g, name, x);
    if (!xi) return -1;
    if (xi->ndim != 3) return gfail(g, "depthwise conv '%s': input must be {H,W,C}", disp(name));
    int C = xi->shape[2];
    nn_conv_attr a = {.kh = kh, .kw = kw, .sh = sh, .sw = sw, .dh = 1, .dw = 1, .padding = pad,
                      .groups = C, .out_c = C, .has_bias = has_bias, .act = act};
    return conv_common(g, name, x, &a, "depthwise_kernel", 1);
}

int nn_separable2d(nn_graph *g, const char *name, int x, int out_c, int kh, int kw, int sh, int sw, nn_padding pad,
                   int has_bias, nn_act act) {
    if (!g || g->has_error) return -1;
    if (!name || !*name) return gfail(g, "a separable convolution needs a layer name");
    if (nn_graph_find_node(g, name) >= 0) return gfail(g, "duplicate layer name '%s'", name);
    const nn_node *xi = in_node(g, name, x);
    if (!xi) return -1;
    if (xi->ndim != 3) return gfail(g, "separable conv '%s': input must be {H,W,C}", name);
    int C = xi->shape[2];
    /* The depthwise half is its own node named "<name>/depthwise" (a '/' cannot occur in a
     * Keras layer name, so it never collides); its kernel is "<name>/depthwise_kernel". */
    char dname[NN_NAME_MAX];
    int len = snprintf(dname, sizeof dname, "%s/depthwise", name);
    if (len < 0 || len >= NN_NAME_MAX - 24) return gfail(g, "layer name '%s' is too long", name);
    nn_conv_attr da = {.kh = kh, .kw = kw, .sh = sh, .sw = sw, .dh = 1, .dw = 1, .padding = pad,
                       .groups = C, .out_c = C, .has_bias = 0, .act = NN_ACT_NONE};
    if (!valid_act(act)) return gfail(g, "separable conv '%s': unknown activation %d", name, (int)act);
    int d = g->n_nodes; /* the depthwise node's id */
    /* conv_common names params after its node; the depthwise half is built by hand so
     * that its kernel is named after the separable layer. */
    nn_node *dn;
    {
        int H = xi->shape[0], W = xi->shape[1];
        if (kh < 1 || kw < 1 || sh < 0 || sw < 0)
            return gfail(g, "separable conv '%s': kernel %dx%d stride %dx%d", name, kh, kw, sh, sw);
        if (!da.sh) da.sh = 1;
        if (!da.sw) da.sw = 1;
        if (pad != NN_PAD_VALID && pad != NN_PAD_SAME)
            return gfail(g, "separable conv '%s': padding must be valid or same", name);
        int oh = nn_resolve_axis(pad, H, kh, da.sh, 1, &da.pad_t, &da.pad_b);
        int ow = nn_resolve_axis(pad, W, kw, da.sw, 1, &da.pad_l, &da.pad_r);
        if (oh < 0 || ow < 0)
            return gfail(g, "separable conv '%s': a %dx%d kernel on a %dx%d input gives sizes too large to represent",
                         name, kh, kw, H, W);
        if (oh < 1 || ow < 1) return gfail(g, "separable conv '%s': kernel does not fit a %dx%d input", name, H, W);
        dn = add_node(g, NN_OP_CONV2D, dname, 1, &x);
        if (!dn) return -1;
        dn->ndim = 3;
        dn->shape[0] = oh;
        dn->shape[1] = ow;
        dn->shape[2] = C;
        dn->a.conv = da;
        dn->params[0] = add_param(g, name, "depthwise_kernel", NN_ROLE_KERNEL, 4, (int[]){kh, kw, C, 1});
        if (g->has_error) return -1;
    }
    nn_conv_attr pa = {.kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .padding = NN_PAD_VALID,
                       .groups = 1, .out_c = out_c, .has_bias = has_bias, .act = act};
    int p = conv_common(g, name, d, &pa, "pointwise_kernel", 0);
    if (p < 0) return -1;
    g->layer_start[p] = d; /* one Keras layer: freezing treats the pair as one */
    return p;
}

int nn_batchnorm(nn_graph *g, const char *name, int x, float eps, float momentum) {
    if (!g || g->has_error) return -1;
    if (!name || !*name) return gfail(g, "batch normalisation needs a layer name");
    const nn_node *xi = in_node(g, name, x);
    if (!xi) return -1;
    if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f))
        return gfail(g, "batchnorm '%s': epsilon %g must be > 0 and momentum %g in [0,1]", name, (double)eps,
                     (double)momentum);
    nn_node *n = add_node(g, NN_OP_BATCHNORM, name, 1, &x);
    if (!n) return -1;
    xi = g->nodes[x];
    n->ndim = xi->ndim;
    memcpy(n->shape, xi->shape, sizeof n->shape);
    n->a.bn.eps = eps;
    n->a.bn.momentum = momentum;
    n->a.bn.frozen_stats = 0;
    int C[1] = {xi->shape[xi->ndim - 1]};
    n->params[0] = add_param(g, name, "gamma", NN_ROLE_GAMMA, 1, C);
    n->params[1] = add_param(g, name, "beta", NN_ROLE_BETA, 1, C);
    n->params[2] = add_param(g, name, "moving_mean", NN_ROLE_MOVING_MEAN, 1, C);
    n->params[3] = add_param(g, name, "moving_variance", NN_ROLE_MOVING_VAR, 1, C);
    return g->has_error ? -1 : node_id(g, n);
}

/* Nodes whose output has the input's shape and no parameters (dropout etc.). */
static nn_node *same_shape_node(nn_graph *g, nn_op op, const char *name, int x) {
    if (!g || g->has_error) return NULL;
    if (!in_node(g, name, x)) return NULL;
    nn_node *n = add_node(g, op, name, 1, &x);
    if (!n) return NULL;
    const nn_node *xi = g->nodes[x];
    n->ndim = xi->ndim;
    memcpy(n->shape, xi->shape, sizeof n->shape);
    return n;
}

int nn_activation(nn_graph *g, const char *name, int x, nn_act act) {
    if (!g || g->has_error) return -1;
    if (!valid_act(act)) return gfail(g, "activation '%s': unknown activation %d", disp(name), (int)act);
    if (act == NN_ACT_PRELU && (!name || !*name))
        return gfail(g, "a PReLU activation needs a layer name (its alpha is named after it)");
    nn_node *n = same_shape_node(g, NN_OP_ACT, name, x);
    if (!n) return -1;
    n->a.act.act = act;
    n->params[0] = add_alpha(g, name, act, n->shape[n->ndim - 1]);
    return g->has_error ? -1 : node_id(g, n);
}

static int pool(nn_graph *g, nn_op op, const char *name, int x, int kh, int kw, int sh, int sw, nn_padding pad) {
    if (!g || g->has_error) return -1;
    const nn_node *xi = in_node(g, name, x);
    if (!xi) return -1;
    const char *what = op == NN_OP_MAXPOOL ? "max pool" : "average pool";
    if (xi->ndim != 3) return gfail(g, "%s '%s': input must be {H,W,C}", what, disp(name));
    if (kh < 1 || kw < 1 || sh < 1 || sw < 1)
        return gfail(g, "%s '%s': pool %dx%d stride %dx%d must be positive", what, disp(name), kh, kw, sh, sw);
    if (pad != NN_PAD_VALID && pad != NN_PAD_SAME)
        return gfail(g, "%s '%s': padding must be valid or same", what, disp(name));
    nn_pool_attr a = {.kh = kh, .kw = kw, .sh = sh, .sw = sw, .padding = pad};
    int oh = nn_resolve_axis(pad, xi->shape[0], kh, sh, 1, &a.pad_t, &a.pad_b);
    int ow = nn_resolve_axis(pad, xi->shape[1], kw, sw, 1, &a.pad_l, &a.pad_r);
    if (oh < 0 || ow < 0)
        return gfail(g, "%s '%s': a %dx%d window on a %dx%d input gives sizes too large to represent", what,
                     disp(name), kh, kw, xi->shape[0], xi->shape[1]);
    if (oh < 1 || ow < 1)
        return gfail(g, "%s '%s': a %dx%d window does not fit a %dx%d input", what, disp(name), kh, kw, xi->shape[0],
                     xi->shape[1]);
    int C = xi->shape[2];
    nn_node *n = add_node(g, op, name, 1, &x);
    if (!n) return -1;
    n->ndim = 3;
    n->shape[0] = oh;
    n->shape[1] = ow;
    n->shape[2] = C;
    n->a.pool = a;
    return node_id(g, n);
}

int nn_maxpool(nn_graph *g, const char *name, int x, int kh, int kw, int sh, int sw, nn_padding pad) {
    return pool(g, NN_OP_MAXPOOL, name, x, kh, kw, sh, sw, pad);
}

int nn_avgpool(nn_graph *g, const char *name, int x, int kh, int kw, int sh, int sw, nn_padding pad) {
    return pool(g, NN_OP_AVGPOOL, name, x, kh, kw, sh, sw, pad);
}

int nn_gap(nn_graph *g, const char *name, int x) {
    if (!g || g->has_error) return -1;
    const nn_node *xi = in_node(g, name, x);
    if (!xi) return -1;
    if (xi->ndim < 2) return gfail(g, "global average pool '%s': input must be {H,W,C} or {T,C}", disp(name));
    int C = xi->shape[xi->ndim - 1];
    nn_node *n = add_node(g, NN_OP_GAP, name, 1, &x);
    if (!n) return -1;
    n->ndim = 1;
    n->shape[0] = C;
    return node_id(g, n);
}

int nn_dense(nn_graph *g, const char *name, int x, int units, int has_bias, nn_act act) {
    if (!g || g->has_error) return -1;
    if (!name || !*name) return gfail(g, "a dense layer needs a layer name");
    const nn_node *xi = in_node(g, name, x);
    if (!xi) return -1;
    if (units < 1) return gfail(g, "dense '%s': %d units", name, units);
    if (!valid_act(act)) return gfail(g, "dense '%s': unknown activation %d", name, (int)act);
    int cin = xi->shape[xi->ndim - 1];
    nn_node *n = add_node(g, NN_OP_DENSE, name, 1, &x);
    if (!n) return -1;
    xi = g->nodes[x];
    n->ndim = xi->ndim;
    memcpy(n->shape, xi->shape, sizeof n->shape);
    n->shape[n->ndim - 1] = units; /* Keras Dense acts on the last axis */
    n->a.dense.units = units;
    n->a.dense.has_bias = has_bias;
    n->a.dense.act = act;
    n->params[0] = add_param(g, name, "kernel", NN_ROLE_KERNEL, 2, (int[]){cin, units});
    if (has_bias) n->params[1] = add_param(g, name, "bias", NN_ROLE_BIAS, 1, (int[]){units});
    n->params[2] = add_alpha(g, name, act, units);
    return g->has_error ? -1 : node_id(g, n);
}

int nn_dropout(nn_graph *g, const char *name, int x, float rate) {
    if (!g || g->has_error) return -1;
    if (!(rate >= 0.0f && rate < 1.0f)) return gfail(g, "dropout '%s': rate %g not in [0,1)", disp(name), (double)rate);
    nn_node *n = same_shape_node(g, NN_OP_DROPOUT, name, x);
    if (!n) return -1;
    n->a.dropout.rate = rate;
    return node_id(g, n);
}

static int same_dims(const nn_node *a, const nn_node *b) {
    if (a->ndim != b->ndim || a->batch_mul != b->batch_mul) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static void shape_str(const nn_node *n, char *buf, size_t cap) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "{");
    for (int i = 0; i < n->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ",%d" : "%d", n->shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "}");
}

int nn_add(nn_graph *g, const char *name, int a, int b) {
    if (!g || g->has_error) return -1;
    const nn_node *na = in_node(g, name, a), *nb = na ? in_node(g, name, b) : NULL;
    if (!nb) return -1;
    if (!same_dims(na, nb)) {
        char sa[64], sb[64];
        shape_str(na, sa, sizeof sa);
        shape_str(nb, sb, sizeof sb);
        return gfail(g, "add '%s': shapes %s and %s differ", disp(name), sa, sb);
    }
    int ins[2] = {a, b};
    nn_node *n = add_node(g, NN_OP_ADD, name, 2, ins);
    if (!n) return -1;
    n->ndim = na->ndim;
    memcpy(n->shape, g->nodes[a]->shape, sizeof n->shape);
    return node_id(g, n);
}

int nn_concat(nn_graph *g, const char *name, int n_in, const int *xs) {
    if (!g || g->has_error) return -1;
    if (n_in < 1 || n_in > NN_MAX_INPUTS || !xs)
        return gfail(g, "concat '%s': %d inputs (1..%d)", disp(name), n_in, NN_MAX_INPUTS);
    int64_t total = 0;
    const nn_node *first = in_node(g, name, xs[0]);
    if (!first) return -1;
    for (int i = 0; i < n_in; i++) {
        const nn_node *xi = in_node(g, name, xs[i]);
        if (!xi) return -1;
        int ok = xi->ndim == first->ndim && xi->batch_mul == first->batch_mul;
        for (int d = 0; ok && d < xi->ndim - 1; d++) ok = xi->shape[d] == first->shape[d];
        if (!ok) {
            char sa[64], sb[64];
            shape_str(first, sa, sizeof sa);
            shape_str(xi, sb, sizeof sb);
            return gfail(g, "concat '%s': input %d has shape %s, input 0 has %s (only the last axis may differ)",
                         disp(name), i, sb, sa);
        }
        total += xi->shape[xi->ndim - 1];
        if (total > INT_MAX) return gfail(g, "concat '%s': the joined axis is too large", disp(name));
    }
    nn_node *n = add_node(g, NN_OP_CONCAT, name, n_in, xs);
    if (!n) return -1;
    first = g->nodes[xs[0]];
    n->ndim = first->ndim;
    memcpy(n->shape, first->shape, sizeof n->shape);
    n->shape[n->ndim - 1] = (int)total;
    return node_id(g, n);
}

int nn_pad(nn_graph *g, const char *name, int x, int t, int b, int l, int r, int extra_channels) {
    if (!g || g->has_error) return -1;
    const nn_node *xi = in_node(g, name, x);
    if (!xi) return -1;
    if (t < 0 || b < 0 || l < 0 || r < 0 || extra_channels < 0)
        return gfail(g, "pad '%s': negative padding", disp(name));
    if (xi->ndim != 3 && (t || b || l || r))
        return gfail(g, "pad '%s': spatial padding needs a {H,W,C} input", disp(name));
    int64_t h = (int64_t)xi->shape[0] + t + b, w = xi->ndim == 3 ? (int64_t)xi->shape[1] + l + r : 0;
    int64_t c = (int64_t)xi->shape[xi->ndim - 1] + extra_channels;
    if (h > INT_MAX || w > INT_MAX || c > INT_MAX) return gfail(g, "pad '%s': padded size too large", disp(name));
    nn_node *n = same_shape_node(g, NN_OP_PAD, name, x);
    if (!n) return -1;
    if (n->ndim == 3) {
        n->shape[0] = (int)h;
        n->shape[1] = (int)w;
    }
    n->shape[n->ndim - 1] = (int)c;
    n->a.pad.t = t;
    n->a.pad.b = b;
    n->a.pad.l = l;
    n->a.pad.r = r;
    n->a.pad.c = extra_channels;
    return node_id(g, n);
}

int nn_reshape(nn_graph *g, const char *name, int x, int ndim, const int *shape) {
    if (!g || g->has_error) return -1;
    const nn_node *xi = in_node(g, name, x);
    if (!xi) return -1;
    if (ndim < 1 || ndim > NN_MAX_DIMS || !shape)
        return gfail(g, "reshape '%s': %d dimensions (1..%d)", disp(name), ndim, NN_MAX_DIMS);
    size_t have = nn_node_size(xi), known = 1;
    int infer = -1, s[NN_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0) {
            infer = i;
            continue;
        }
        if (s[i] <= 0) return gfail(g, "reshape '%s': dimension %d is %d", disp(name), i, s[i]);
        if (dfd_mul_size(known, (size_t)s[i], &known))
            return gfail(g, "reshape '%s': the new shape is too large", disp(name));
    }
    if (infer >= 0) {
        if (have % known) return gfail(g, "reshape '%s': %zu values do not divide by %zu", disp(name), have, known);
        if (have / known > INT_MAX) return gfail(g, "reshape '%s': the inferred dimension is too large", disp(name));
        s[infer] = (int)(have / known);
        known = have;
    }
    if (known != have)
        return gfail(g, "reshape '%s': %zu values per item cannot become %zu", disp(name), have, known);
    nn_node *n = add_node(g, NN_OP_RESHAPE, name, 1, &x);
    if (!n) return -1;
    n->ndim = ndim;
    memcpy(n->shape, s, (size_t)ndim * sizeof(int));
    return node_id(g, n);
}

int nn_lstm(nn_graph *g, const char *name, int x, int units, int return_sequences) {
    if (!g || g->has_error) return -1;
    if (!name || !*name) return gfail(g, "an LSTM needs a layer name");
    const nn_node *xi = in_node(g, name, x);
    if (!xi) return -1;
    if (xi->ndim != 2) return gfail(g, "LSTM '%s': input must be a sequence {T,C}, it has %d dimensions", name, xi->ndim);
    if (units < 1) return gfail(g, "LSTM '%s': %d units", name, units);
    int T = xi->shape[0], C = xi->shape[1];
    nn_node *n = add_node(g, NN_OP_LSTM, name, 1, &x);
    if (!n) return -1;
    if (return_sequences) {
        n->ndim = 2;
        n->shape[0] = T;
        n->shape[1] = units;
    } else {
        n->ndim = 1;
        n->shape[0] = units;
    }
    n->a.lstm.units = units;
    n->a.lstm.return_sequences = !!return_sequences;
    n->params[0] = add_param(g, name, "kernel", NN_ROLE_KERNEL, 2, (int[]){C, 4 * units});
    n->params[1] = add_param(g, name, "recurrent_kernel", NN_ROLE_RECURRENT, 2, (int[]){units, 4 * units});
    n->params[2] = add_param(g, name, "bias", NN_ROLE_LSTM_BIAS, 1, (int[]){4 * units});
    return g->has_error ? -1 : node_id(g, n);
}

int nn_resize_bilinear(nn_graph *g, const char *name, int x, int out_h, int out_w, int align_corners,
                       int half_pixel_centers) {
    if (!g || g->has_error) return -1;
    const nn_node *xi = in_node(g, name, x);
    if (!xi) return -1;
    if (xi->ndim != 3) return gfail(g, "resize '%s': input must be {H,W,C}", disp(name));
    if (out_h < 1 || out_w < 1) return gfail(g, "resize '%s': output %dx%d", disp(name), out_h, out_w);
    if (align_corners && half_pixel_centers)
        return gfail(g, "resize '%s': align_corners and half_pixel_centers exclude each other (as in TFLite)",
                     disp(name));
    nn_node *n = same_shape_node(g, NN_OP_RESIZE, name, x);
    if (!n) return -1;
    n->shape[0] = out_h;
    n->shape[1] = out_w;
    n->a.resize.out_h = out_h;
    n->a.resize.out_w = out_w;
    n->a.resize.align_corners = !!align_corners;
    n->a.resize.half_pixel_centers = !!half_pixel_centers;
    return node_id(g, n);
}

int nn_fold_time(nn_graph *g, int x) {
    if (!g || g->has_error) return -1;
    const nn_node *xi = in_node(g, "fold_time", x);
    if (!xi) return -1;
    if (xi->ndim < 2) return gfail(g, "fold_time: input must have a time axis and at least one more");
    int T = xi->shape[0];
    if (xi->batch_mul > (1 << 30) / T) return gfail(g, "fold_time: nested time folding too large");
    nn_node *n = add_node(g, NN_OP_FOLD_TIME, "", 1, &x);
    if (!n) return -1;
    xi = g->nodes[x];
    n->ndim = xi->ndim - 1;
    for (int i = 1; i < xi->ndim; i++) n->shape[i - 1] = xi->shape[i];
    n->batch_mul = xi->batch_mul * T;
    n->a.time.steps = T;
    return node_id(g, n);
}

int nn_unfold_time(nn_graph *g, int x) {
    if (!g || g->has_error) return -1;
    const nn_node *xi = in_node(g, "unfold_time", x);
    if (!xi) return -1;
    if (xi->batch_mul <= 1) return gfail(g, "unfold_time: node %d is not inside a fold_time", x);
    if (xi->ndim >= NN_MAX_DIMS) return gfail(g, "unfold_time: input has too many dimensions");
    /* The time length is that of the fold that raised the batch to this node's batch_mul:
     * walk back along first inputs until it. */
    int T = 0;
    for (int id = x; id >= 0;) {
        const nn_node *m = g->nodes[id];
        if (m->op == NN_OP_FOLD_TIME && m->batch_mul == xi->batch_mul) {
            T = m->a.time.steps;
            break;
        }
        id = m->n_inputs > 0 ? m->inputs[0] : -1;
    }
    if (T <= 0) return gfail(g, "unfold_time: no matching fold_time before node %d", x);
    nn_node *n = add_node(g, NN_OP_UNFOLD_TIME, "", 1, &x);
    if (!n) return -1;
    xi = g->nodes[x];
    n->ndim = xi->ndim + 1;
    n->shape[0] = T;
    for (int i = 0; i < xi->ndim; i++) n->shape[i + 1] = xi->shape[i];
    n->batch_mul = xi->batch_mul / T;
    n->a.time.steps = T;
    return node_id(g, n);
}

int nn_mark_output(nn_graph *g, int node) {
    if (!g || g->has_error) return -1;
    if (node < 0 || node >= g->n_nodes) return gfail(g, "output: node %d does not exist", node);
    if (g->nodes[node]->batch_mul != 1)
        return gfail(g, "output: node %d is inside a fold_time (unfold it first)", node);
    if (g->n_outputs == g->cap_outputs) {
        int *o = dfd_grow(g->outputs, &g->cap_outputs, g->n_outputs + 1, sizeof *o, 4);
        if (!o) return gfail(g, "out of memory marking an output");
        g->outputs = o;
    }
    g->outputs[g->n_outputs] = node;
    return g->n_outputs++;
}

/* ---- Introspection ------------------------------------------------------------------------ */

int nn_graph_node_count(const nn_graph *g) { return g ? g->n_nodes : 0; }

const nn_node *nn_graph_node(const nn_graph *g, int id) {
    return g && id >= 0 && id < g->n_nodes ? g->nodes[id] : NULL;
}

nn_node *nn_graph_node_mut(nn_graph *g, int id) { return g && id >= 0 && id < g->n_nodes ? g->nodes[id] : NULL; }

int nn_graph_pooled_map(const nn_graph *g, const nn_node *d) {
    if (!d || d->op != NN_OP_DENSE || d->a.dense.units != 1 || d->a.dense.act != NN_ACT_NONE || d->params[0] < 0)
        return -1;
    const nn_node *x = nn_graph_node(g, d->inputs[0]);
    while (x && x->op == NN_OP_DROPOUT) x = nn_graph_node(g, x->inputs[0]);
    if (!x || x->op != NN_OP_GAP) return -1;
    const nn_node *f = nn_graph_node(g, x->inputs[0]);
    return f && f->ndim == 3 && f->batch_mul == 1 ? x->inputs[0] : -1;
}

int nn_graph_find_node(const nn_graph *g, const char *name) {
    if (!g || !name || !*name) return -1;
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i]->name, name) == 0) return i;
    return -1;
}

int nn_graph_param_count(const nn_graph *g) { return g ? g->n_params : 0; }

nn_param *nn_graph_param(nn_graph *g, int i) { return g && i >= 0 && i < g->n_params ? g->params[i] : NULL; }

nn_param *nn_graph_find_param(nn_graph *g, const char *name) {
    if (!g || !name) return NULL;
    for (int i = 0; i < g->n_params; i++)
        if (strcmp(g->params[i]->name, name) == 0) return g->params[i];
    return NULL;
}

int nn_graph_output_count(const nn_graph *g) { return g ? g->n_outputs : 0; }

int nn_graph_output(const nn_graph *g, int i) { return g && i >= 0 && i < g->n_outputs ? g->outputs[i] : -1; }

int nn_graph_input(const nn_graph *g) { return g ? g->input : -1; }

size_t nn_graph_num_weights(const nn_graph *g) {
    size_t s = 0;
    for (int i = 0; g && i < g->n_params; i++) s += g->params[i]->count;
    return s;
}

uint64_t nn_graph_macs(const nn_graph *g) {
    uint64_t total = 0;
    for (int i = 0; g && i < g->n_nodes; i++) {
        const nn_node *n = g->nodes[i];
        uint64_t m = 0;
        switch (n->op) {
        case NN_OP_CONV2D: {
            const nn_node *x = g->nodes[n->inputs[0]];
            const nn_conv_attr *a = &n->a.conv;
            m = (uint64_t)n->shape[0] * (uint64_t)n->shape[1] * (uint64_t)a->out_c * (uint64_t)a->kh *
                (uint64_t)a->kw * (uint64_t)(x->shape[2] / a->groups);
            break;
        }
        case NN_OP_DENSE: {
            const nn_node *x = g->nodes[n->inputs[0]];
            m = (uint64_t)nn_node_size(x) * (uint64_t)n->a.dense.units;
            break;
        }
        case NN_OP_LSTM: {
            const nn_node *x = g->nodes[n->inputs[0]];
            uint64_t T = (uint64_t)x->shape[0], C = (uint64_t)x->shape[1], U = (uint64_t)n->a.lstm.units;
            m = T * (C + U) * 4 * U;
            break;
        }
        default:
            break;
        }
        total += m * (uint64_t)n->batch_mul;
    }
    return total;
}

/* ---- Freezing ------------------------------------------------------------------------------ */

static void set_node_trainable(nn_graph *g, nn_node *n, int trainable) {
    n->trainable = trainable;
    for (int k = 0; k < 4; k++) {
        if (n->params[k] < 0) continue;
        nn_param *p = g->params[n->params[k]];
        p->trainable = trainable && !p->is_statistic;
    }
}

int nn_graph_set_trainable(nn_graph *g, const char *from, int trainable) {
    if (!g) return DFD_E_ARG;
    int start = 0;
    if (from) {
        int id = nn_graph_find_node(g, from);
        if (id < 0) return DFD_E_NOT_FOUND;
        start = g->layer_start[id];
    }
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i]->op == NN_OP_INPUT) continue;
        set_node_trainable(g, g->nodes[i], i >= start ? !!trainable : !trainable);
    }
    return DFD_OK;
}

void nn_graph_freeze_bn_stats(nn_graph *g, int frozen) {
    for (int i = 0; g && i < g->n_nodes; i++)
        if (g->nodes[i]->op == NN_OP_BATCHNORM) g->nodes[i]->a.bn.frozen_stats = !!frozen;
}

void nn_graph_set_bn_momentum(nn_graph *g, float momentum) {
    for (int i = 0; g && i < g->n_nodes; i++)
        if (g->nodes[i]->op == NN_OP_BATCHNORM) g->nodes[i]->a.bn.momentum = momentum;
}

int nn_graph_param_role(const nn_graph *g, int i) {
    return g && i >= 0 && i < g->n_params ? g->param_role[i] : -1;
}
