/*
 * dnnl_fwd.c — the oneDNN backend's forward pass: graph analysis (what fuses into what),
 * batch-norm folding, and building the steps of a forward plan for one batch size.
 *
 * Inference fusions (none when training, where every node keeps its own value):
 *   - a convolution absorbs the batch-norm that follows it (folded into kernel and bias),
 *     then an activation (eltwise post-op), then a residual add (sum post-op: the other
 *     operand is already in the destination, in place when nothing reads it afterwards),
 *     then an activation after the add;
 *   - a zero-padding node feeding only a convolution becomes that convolution's padding.
 * Ops without a oneDNN primitive (dropout masks, bilinear resize, moving statistics) are
 * plain loops over plain fp32 data, marked as such below.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "nn/bnact.h"
#include "nn/dnnl_internal.h"
#include "nn/ref_internal.h" /* TFLite's resize coordinates, shared with the reference */

static const nn_node *NODE(const dn_priv *d, int id) { return nn_graph_node(d->g, id); }

/* ---- Analysis ------------------------------------------------------------------------------- */

/* The only consumer of x, or -1 when x has several, none, or is a graph output. */
static int single_consumer(const dn_priv *d, int x) {
    const dn_node *dn = &d->nodes[x];
    if (dn->is_output || dn->n_uses != 1) return -1;
    return d->uses[x][0];
}

static int is_alias_op(nn_op op) {
    return op == NN_OP_DROPOUT || op == NN_OP_RESHAPE || op == NN_OP_FOLD_TIME || op == NN_OP_UNFOLD_TIME;
}

/* ---- Zero-padded channels (bf16 inference) ---------------------------------------------------- *
 * oneDNN 2.6's AMX 1x1 convolutions are much slower when a channel count is not a multiple of
 * 32 (bf16 pairs x 16 lanes): Xception's 728-channel pointwise convolutions, 55% of its work,
 * run 1.45x faster at 736 channels, its 256->728 and 728->1024 ones 1.2-1.3x (one-primitive
 * timings, batch 8, 2 cores). So in bf16 inference such values are carried with their
 * channels zero-padded to a multiple of 32 wherever every reader can take that: convolutions
 * (their kernels get zero rows and columns, biases zeros), depthwise convolutions, batch-norms
 * folded into them, activations whose value at 0 is 0, residual adds and poolings; the
 * padded channels then hold zeros from one convolution to the next. Not done in fp32, where
 * the same convolutions measured no faster padded, nor for a value the caller can see as a
 * graph output or a plain loop reads. */

enum { PAD_TO = 32, PAD_MIN = 128 };

static int is_depthwise(const nn_node *n) {
    return n->op == NN_OP_CONV2D && n->a.conv.groups > 1 && n->a.conv.groups == n->a.conv.out_c;
}

/* Activations that map 0 to 0 with no per-channel parameter. */
static int keeps_zero(nn_act a) { return a == NN_ACT_NONE || a == NN_ACT_RELU || a == NN_ACT_RELU6 || a == NN_ACT_TANH; }

/* Ops whose channel c of output depends only on channel c of input, and 0 stays 0. */
static int channelwise(const dn_priv *d, int id) {
    const nn_node *n = NODE(d, id);
    switch (n->op) {
    case NN_OP_ACT: return keeps_zero(n->a.act.act);
    case NN_OP_ADD:
    case NN_OP_MAXPOOL:
    case NN_OP_AVGPOOL: return 1;
    case NN_OP_BATCHNORM: return d->nodes[id].chain >= 0; /* folded into a convolution */
    case NN_OP_PAD: return d->nodes[id].chain >= 0 && d->nodes[id].fused; /* folded into a convolution */
    case NN_OP_CONV2D: return is_depthwise(n) && keeps_zero(n->a.conv.act);
    default: return 0;
    }
}

/* A full convolution: reads any padded input (zero kernel rows); its output may be padded
 * when its activation keeps the padded channels at zero. */
static int full_conv(const nn_node *n) { return n->op == NN_OP_CONV2D && n->a.conv.groups == 1; }

/* A reader that takes a zero-padded input. */
static int takes_padded(const dn_priv *d, int id) {
    const nn_node *n = NODE(d, id);
    return (full_conv(n) && n->a.conv.act != NN_ACT_PRELU) || channelwise(d, id);
}

static void pad_channels(dn_priv *d) {
    if (d->training || d->adt != dnnl_bf16) return;
    const int n = d->n;
    int *want = calloc((size_t)n, sizeof *want);
    if (!want) return; /* an optimisation: without memory, none */
    for (int i = 0; i < n; i++) {
        const nn_node *nd = NODE(d, i);
        const int C = nd->shape[nd->ndim - 1];
        want[i] = nd->ndim == 3 && C % PAD_TO && C >= PAD_MIN && !d->nodes[i].is_output &&
                  (channelwise(d, i) || (full_conv(nd) && keeps_zero(nd->a.conv.act)));
    }
    /* Drop until stable: a padded value's readers all take it, and a channel-wise reader
     * is padded with it; a channel-wise node is padded only with all its inputs. */
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < n; i++) {
            if (!want[i]) continue;
            int ok = 1;
            for (int k = 0; ok && k < d->nodes[i].n_uses; k++) {
                int u = d->uses[i][k];
                if (!takes_padded(d, u) || (channelwise(d, u) && !want[u])) ok = 0;
            }
            if (ok && channelwise(d, i))
                for (int k = 0; ok && k < NODE(d, i)->n_inputs; k++)
                    if (!want[NODE(d, i)->inputs[k]]) ok = 0;
            if (!ok) want[i] = 0, changed = 1;
        }
    }
    for (int i = 0; i < n; i++) {
        const nn_node *nd = NODE(d, i);
        const int C = nd->shape[nd->ndim - 1];
        d->nodes[i].cpad = want[i] ? (C + PAD_TO - 1) / PAD_TO * PAD_TO : 0;
    }
    free(want);
}

int dn_analyse(dn_priv *d, dfd_error *err) {
    const int n = d->n;
    int *cnt = calloc((size_t)n, sizeof *cnt);
    d->uses = calloc((size_t)n, sizeof *d->uses);
    d->chains = calloc((size_t)n, sizeof *d->chains);
    int *claimed = calloc((size_t)n, sizeof *claimed);
    if (!cnt || !d->uses || !d->chains || !claimed) {
        free(cnt);
        free(claimed);
        return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory");
    }
    for (int i = 0; i < n; i++) {
        const nn_node *nd = NODE(d, i);
        for (int k = 0; k < nd->n_inputs; k++) cnt[nd->inputs[k]]++;
    }
    for (int i = 0; i < n; i++) {
        d->uses[i] = calloc((size_t)cnt[i] + 1, sizeof(int));
        if (!d->uses[i]) {
            free(cnt);
            free(claimed);
            return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory");
        }
        d->nodes[i].chain = -1;
        d->nodes[i].bn_act = d->nodes[i].act_bn = -1;
        d->nodes[i].exec_pos = i;
        d->nodes[i].root = i;
    }
    for (int i = 0; i < n; i++) {
        const nn_node *nd = NODE(d, i);
        for (int k = 0; k < nd->n_inputs; k++) {
            int x = nd->inputs[k];
            d->uses[x][d->nodes[x].n_uses++] = i;
        }
    }
    for (int i = 0; i < nn_graph_output_count(d->g); i++) d->nodes[nn_graph_output(d->g, i)].is_output = 1;
    free(cnt);

    for (int i = 0; i < n; i++) {
        const nn_node *nd = NODE(d, i);
        if (!d->training && is_alias_op(nd->op)) d->nodes[i].root = d->nodes[nd->inputs[0]].root;
        if (nd->op != NN_OP_CONV2D) continue;
        dn_chain *c = &d->chains[d->nchains];
        const nn_conv_attr *a = &nd->a.conv;
        c->head = i;
        c->src = nd->inputs[0];
        c->pad[0] = a->pad_t;
        c->pad[1] = a->pad_b;
        c->pad[2] = a->pad_l;
        c->pad[3] = a->pad_r;
        c->bn = c->add = c->add_other = -1;
        c->act1 = a->act;
        c->act1_alpha = a->act == NN_ACT_PRELU ? nd->params[2] : -1;
        c->act2 = NN_ACT_NONE;
        int cur = i;
        /* A zero-padding node feeding only this convolution becomes its padding (training
         * too: the backward-data pass then writes the unpadded input's gradient). */
        const nn_node *s = NODE(d, c->src);
        if (s->op == NN_OP_PAD && s->a.pad.c == 0 && s->ndim == 3 && single_consumer(d, c->src) == i) {
            d->nodes[c->src].fused = 1;
            d->nodes[c->src].chain = d->nchains;
            c->pad[0] += s->a.pad.t;
            c->pad[1] += s->a.pad.b;
            c->pad[2] += s->a.pad.l;
            c->pad[3] += s->a.pad.r;
            c->src = s->inputs[0];
        }
        if (!d->training) {
            if (c->act1 == NN_ACT_NONE) {
                int b = single_consumer(d, cur);
                if (b >= 0 && NODE(d, b)->op == NN_OP_BATCHNORM) {
                    c->bn = b;
                    cur = b;
                }
                int ac = single_consumer(d, cur);
                if (ac >= 0 && NODE(d, ac)->op == NN_OP_ACT && NODE(d, ac)->a.act.act != NN_ACT_NONE &&
                    NODE(d, ac)->a.act.act != NN_ACT_PRELU) {
                    c->act1 = NODE(d, ac)->a.act.act;
                    cur = ac;
                }
            }
            int ad = c->act1 == NN_ACT_PRELU ? -1 : single_consumer(d, cur);
            if (ad >= 0 && NODE(d, ad)->op == NN_OP_ADD && !claimed[ad]) {
                const nn_node *an = NODE(d, ad);
                int other = an->inputs[0] == cur ? an->inputs[1] : an->inputs[0];
                if (other != cur) {
                    /* other < ad and, having a consumer outside any chain, it is materialised
                     * at its own position: before this chain runs (at its end). */
                    c->add = ad;
                    c->add_other = other;
                    claimed[ad] = 1;
                    cur = ad;
                    int a2 = single_consumer(d, cur);
                    if (a2 >= 0 && NODE(d, a2)->op == NN_OP_ACT && NODE(d, a2)->a.act.act != NN_ACT_NONE &&
                        NODE(d, a2)->a.act.act != NN_ACT_PRELU) {
                        c->act2 = NODE(d, a2)->a.act.act;
                        cur = a2;
                    }
                }
            }
        }
        c->end = cur;
        /* Members: every node from the head along single consumers up to the end. */
        for (int m = i;; m = single_consumer(d, m)) {
            d->nodes[m].chain = d->nchains;
            if (m != cur) d->nodes[m].fused = 1;
            if (m == cur) break;
        }
        d->nchains++;
    }
    free(claimed);
    /* Training: a batch-norm runs as our fused kernel (nn/bnact.h), which also applies a
     * ReLU or ReLU6 that is its only consumer; that activation node produces nothing itself. */
    for (int i = 0; d->training && i < n; i++) {
        if (NODE(d, i)->op != NN_OP_BATCHNORM) continue;
        int ac = single_consumer(d, i);
        if (ac >= 0 && NODE(d, ac)->op == NN_OP_ACT && NODE(d, ac)->a.act.act != NN_ACT_NONE &&
            nn_bnact_supports(NODE(d, ac)->a.act.act)) {
            d->nodes[i].bn_act = ac;
            d->nodes[ac].act_bn = i;
        }
    }
    for (int i = 0; i < n; i++)
        if (d->nodes[i].chain >= 0) d->nodes[i].exec_pos = d->chains[d->nodes[i].chain].end;

    pad_channels(d);

    /* In-place residual adds: the other operand's buffer may receive the sum when nothing
     * reads that buffer (through any alias) after the chain runs, and it is not an output,
     * the caller's input, or a zero-padded buffer (whose borders must stay zero). */
    for (int ci = 0; ci < d->nchains; ci++) {
        dn_chain *c = &d->chains[ci];
        if (c->add < 0) continue;
        int r = d->nodes[c->add_other].root;
        nn_op rop = NODE(d, r)->op;
        int ok = rop != NN_OP_INPUT && rop != NN_OP_PAD && !d->nodes[r].fused;
        for (int x = 0; ok && x < n; x++) {
            if (d->nodes[x].root != r) continue;
            if (d->nodes[x].is_output) ok = 0;
            for (int k = 0; ok && k < d->nodes[x].n_uses; k++) {
                int u = d->uses[x][k];
                if (u != c->add && d->nodes[u].exec_pos >= c->end) ok = 0;
            }
        }
        c->inplace_ok = ok;
    }
    return DFD_OK;
}

/* ---- Batch-norm folding, padded kernels (inference) ------------------------------------------ */

int dn_prepare_weights(dn_priv *d, dfd_error *err) {
    if (d->training) return DFD_OK;
    for (int ci = 0; ci < d->nchains; ci++) {
        const dn_chain *c = &d->chains[ci];
        const nn_node *h = NODE(d, c->head), *sn = NODE(d, c->src);
        const nn_conv_attr *a = &h->a.conv;
        dn_node *dn = &d->nodes[c->head];
        const int O = a->out_c, Op = dn->cpad ? dn->cpad : O, cin = sn->shape[sn->ndim - 1];
        const int cinp = d->nodes[c->src].cpad ? d->nodes[c->src].cpad : cin;
        if (c->bn < 0 && Op == O && cinp == cin) continue; /* the parameters as they are */
        nn_param *K = dn_param(d, c->head, 0), *B = dn_param(d, c->head, 1);
        nn_param *gamma = NULL, *beta = NULL, *mean = NULL, *var = NULL;
        if (c->bn >= 0) {
            gamma = dn_param(d, c->bn, 0), beta = dn_param(d, c->bn, 1);
            mean = dn_param(d, c->bn, 2), var = dn_param(d, c->bn, 3);
        }
        /* Keras kernel {KH, KW, IG, O} (depthwise: IG = 1, O = C) into {KH, KW, IGp, Op},
         * zeros in the padded rows and columns. */
        const int depthwise = is_depthwise(h);
        const size_t KK = (size_t)a->kh * (size_t)a->kw;
        const size_t IG = depthwise ? 1 : (size_t)(cin / a->groups), IGp = depthwise ? 1 : (size_t)cinp / (size_t)a->groups;
        if (!dn->wf) dn->wf = dfd_malloc_array(KK * IGp * (size_t)Op, sizeof(float));
        if (!dn->bf && (B || c->bn >= 0)) dn->bf = dfd_malloc_array((size_t)Op, sizeof(float));
        if (!dn->wf || (!dn->bf && (B || c->bn >= 0)))
            return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory to fold batch-norms");
        memset(dn->wf, 0, KK * IGp * (size_t)Op * sizeof(float));
        if (dn->bf) memset(dn->bf, 0, (size_t)Op * sizeof(float));
        /* BN(conv(x)) = s*(W*x + b - mean) + beta with s = gamma / sqrt(var + eps): scale
         * each output channel's kernel by s and fold the rest into the bias. */
        for (int o = 0; o < O; o++) {
            double sc = 1.0, bias = B ? B->data[o] : 0.0;
            if (c->bn >= 0) {
                sc = gamma->data[o] / sqrt((double)var->data[o] + (double)NODE(d, c->bn)->a.bn.eps);
                bias = (bias - mean->data[o]) * sc + beta->data[o];
            }
            if (dn->bf) dn->bf[o] = (float)bias;
            for (size_t k = 0; k < KK; k++)
                for (size_t i = 0; i < IG; i++)
                    dn->wf[(k * IGp + i) * (size_t)Op + (size_t)o] =
                        (float)(K->data[(k * IG + i) * (size_t)O + (size_t)o] * sc);
        }
    }
    return DFD_OK;
}

/* ---- Plain-loop steps ------------------------------------------------------------------------------ */

static void *mem_ptr(dnnl_memory_t m) {
    void *p = NULL;
    dnnl_memory_get_data_handle(m, &p);
    return p;
}

static size_t node_count(const dn_priv *d, const dn_plan *pl, int id) {
    const nn_node *n = NODE(d, id);
    return (size_t)pl->batch * (size_t)n->batch_mul * nn_node_size(n);
}

/* Training keeps its own copy of the input: backward needs it after the caller's is gone. */
static int fn_copy_input(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    (void)err;
    memcpy(mem_ptr(s->m0), d->cur_input, node_count(d, pl, s->node) * sizeof(float));
    return DFD_OK;
}

/* Keras's moving statistics (no oneDNN primitive): moving = moving*momentum + batch*(1-momentum),
 * with the biased batch variance that normalised the batch (as the reference does). */
static int fn_bn_moving(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    (void)pl;
    (void)err;
    const nn_node *n = NODE(d, s->node);
    const float *mean = mem_ptr(s->m0), *var = mem_ptr(s->m1);
    nn_param *mm = dn_param(d, s->node, 2), *mv = dn_param(d, s->node, 3);
    const double mom = n->a.bn.momentum;
    for (size_t c = 0; c < mm->count; c++) {
        mm->data[c] = (float)(mm->data[c] * mom + mean[c] * (1.0 - mom));
        mv->data[c] = (float)(mv->data[c] * mom + var[c] * (1.0 - mom));
    }
    return DFD_OK;
}

/* Inverted dropout with the executor's shared masks (plain loop: oneDNN has no dropout). */
static int fn_dropout(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    (void)err;
    const nn_node *n = NODE(d, s->node);
    size_t cnt = node_count(d, pl, s->node);
    const float *x = mem_ptr(s->m0);
    float *y = mem_ptr(s->m1);
    uint8_t *mask = d->bufs[dn_slot(s->node, DN_SLOT_AUX0)].p;
    if (n->a.dropout.rate > 0) {
        nn_dropout_mask(d->ex, s->node, cnt, mask);
        float scale = 1.0f / (1.0f - n->a.dropout.rate);
        for (size_t i = 0; i < cnt; i++) y[i] = mask[i] ? x[i] * scale : 0.0f;
    } else {
        memset(mask, 1, cnt);
        memcpy(y, x, cnt * sizeof(float));
    }
    return DFD_OK;
}

/* TFLite RESIZE_BILINEAR (plain loop: oneDNN's resampling has only half-pixel centres). */
static int fn_resize(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    (void)err;
    const nn_node *n = NODE(d, s->node), *xn = NODE(d, n->inputs[0]);
    const float *x = mem_ptr(s->m0);
    float *y = mem_ptr(s->m1);
    const int H = xn->shape[0], W = xn->shape[1], C = xn->shape[2], OH = n->shape[0], OW = n->shape[1];
    const int hp = n->a.resize.half_pixel_centers;
    const float hs = ref_resize_scale(H, OH, n->a.resize.align_corners);
    const float ws = ref_resize_scale(W, OW, n->a.resize.align_corners);
    const size_t rows = (size_t)pl->batch * (size_t)n->batch_mul;
    for (size_t b = 0; b < rows; b++)
        for (int oy = 0; oy < OH; oy++) {
            float sy;
            int y0, y1;
            ref_resize_coord(oy, hs, hp, H, &sy, &y0, &y1);
            const float fy = sy - (float)y0;
            const float *r0 = x + (b * (size_t)H + (size_t)y0) * (size_t)W * (size_t)C;
            const float *r1 = x + (b * (size_t)H + (size_t)y1) * (size_t)W * (size_t)C;
            for (int ox = 0; ox < OW; ox++) {
                float sx;
                int x0, x1;
                ref_resize_coord(ox, ws, hp, W, &sx, &x0, &x1);
                const float fx = sx - (float)x0;
                float *o = y + ((b * (size_t)OH + (size_t)oy) * (size_t)OW + (size_t)ox) * (size_t)C;
                const float *a00 = r0 + (size_t)x0 * (size_t)C, *a10 = r1 + (size_t)x0 * (size_t)C;
                const float *a01 = r0 + (size_t)x1 * (size_t)C, *a11 = r1 + (size_t)x1 * (size_t)C;
                for (int c = 0; c < C; c++)
                    o[c] = a00[c] * (1 - fy) * (1 - fx) + a10[c] * fy * (1 - fx) + a01[c] * (1 - fy) * fx +
                           a11[c] * fy * fx;
            }
        }
    return DFD_OK;
}

/* ---- Building blocks -------------------------------------------------------------------------------- */

static dnnl_prop_kind_t prop(const dn_priv *d) { return d->training ? dnnl_forward_training : dnnl_forward_inference; }

int dn_attr_new(dnnl_primitive_attr_t *attr, dfd_error *err) {
    int rc = dn_check(dnnl_primitive_attr_create(attr), err, "attribute", NULL);
    if (!rc) dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    return rc;
}

static int pd_create(dnnl_primitive_desc_t *pd, const void *desc, const_dnnl_primitive_attr_t attr, const dn_priv *d,
                     const_dnnl_primitive_desc_t hint, const nn_node *n, const char *what, dfd_error *err) {
    return dn_check(dnnl_primitive_desc_create(pd, desc, attr, d->eng, hint), err, what, n);
}

/* Training: keeps a forward descriptor for the backward pass (slot 0 the op, 1 its activation). */
static void keep_hint(dn_priv *d, dn_plan *pl, int node, int slot, const_dnnl_primitive_desc_t pd) {
    if (!d->training || node < 0) return;
    dnnl_primitive_desc_t *h = &pl->hint[node * 2 + slot];
    if (*h) dnnl_primitive_desc_destroy(*h);
    if (dnnl_primitive_desc_clone(h, pd) != dnnl_success) *h = NULL;
}

static const dnnl_memory_desc_t *q_md(const_dnnl_primitive_desc_t pd, int arg) {
    return dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
}

/* Sets a node's value to a new memory on its own value buffer. */
static int set_val(dn_priv *d, dn_plan *pl, int id, const dnnl_memory_desc_t *md, dfd_error *err) {
    dn_val *v = &pl->vals[id];
    v->buf = dn_slot(id, DN_SLOT_VAL);
    v->md = *md;
    return dn_mem_buf(d, pl, md, v->buf, &v->mem, err);
}

/* The value of `in` as plain (channels-last) data of type dt, and its buffer. */
static int get_plain(dn_priv *d, dn_plan *pl, dn_steps *st, int in, dnnl_data_type_t dt, dnnl_memory_t *m, int *buf,
                     dfd_error *err) {
    dnnl_dims_t dims;
    dnnl_memory_desc_t want;
    int nd = dn_node_dims(NODE(d, in), pl->batch, dims);
    if (dn_md_plain(&want, nd, dims, dt)) return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    return dn_get_input(d, pl, st, in, &want, m, buf, err);
}

static int plain_md(dnnl_memory_desc_t *md, const nn_node *n, int batch, dnnl_data_type_t dt, dfd_error *err) {
    dnnl_dims_t dims;
    int nd = dn_node_dims(n, batch, dims);
    if (dn_md_plain(md, nd, dims, dt)) return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    return DFD_OK;
}

static int md_1d(dnnl_memory_desc_t *md, dnnl_dim_t c) {
    dnnl_dims_t dims = {c};
    return dn_md_plain(md, 1, dims, dnnl_f32);
}

/* An eltwise (non-PReLU activation) step from src to dst, both of layout md. */
static int add_eltwise(dn_priv *d, dn_plan *pl, dn_steps *st, const nn_node *n, nn_act act,
                       const dnnl_memory_desc_t *md, dnnl_memory_t src, dnnl_memory_t dst, int hnode, int hslot,
                       dfd_error *err) {
    float alpha, beta;
    dnnl_alg_kind_t alg = act == NN_ACT_NONE ? dnnl_eltwise_linear : dn_act_alg(act, &alpha, &beta);
    if (act == NN_ACT_NONE) {
        alpha = 1.0f;
        beta = 0.0f;
    }
    dnnl_eltwise_desc_t ed;
    int rc = dn_check(dnnl_eltwise_forward_desc_init(&ed, prop(d), alg, md, alpha, beta), err, "activation", n);
    if (rc) return rc;
    dnnl_primitive_attr_t attr;
    if ((rc = dn_attr_new(&attr, err))) return rc;
    dnnl_primitive_desc_t pd;
    rc = pd_create(&pd, &ed, attr, d, NULL, n, "activation", err);
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    keep_hint(d, pl, hnode, hslot, pd);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
    rc = dn_add_prim(d, pl, st, pd, 2, args, err);
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* PReLU weights: alpha {C} as {1, C, 1, ...} of the data's rank. */
static int prelu_user_md(dnnl_memory_desc_t *md, int ndims, dnnl_dim_t C) {
    dnnl_dims_t dims;
    for (int i = 0; i < ndims; i++) dims[i] = 1;
    dims[1] = C;
    return dn_md_plain(md, ndims, dims, dnnl_f32);
}

static int add_prelu(dn_priv *d, dn_plan *pl, dn_steps *st, int node, int alpha_param, const dnnl_memory_desc_t *md,
                     dnnl_memory_t src, dnnl_memory_t dst, int hslot, dfd_error *err) {
    const nn_node *n = NODE(d, node);
    nn_param *alpha = nn_graph_param(d->g, alpha_param);
    dnnl_memory_desc_t wu, wany;
    if (prelu_user_md(&wu, md->ndims, md->dims[1]) ||
        dnnl_memory_desc_init_by_tag(&wany, md->ndims, wu.dims, md->data_type, dnnl_format_tag_any) != dnnl_success)
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    dnnl_prelu_desc_t pdsc;
    int rc = dn_check(dnnl_prelu_forward_desc_init(&pdsc, prop(d), md, &wany), err, "PReLU", n);
    if (rc) return rc;
    dnnl_primitive_attr_t attr;
    if ((rc = dn_attr_new(&attr, err))) return rc;
    dnnl_primitive_desc_t pd;
    rc = pd_create(&pd, &pdsc, attr, d, NULL, n, "PReLU", err);
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    keep_hint(d, pl, node, hslot, pd);
    dnnl_memory_t wm;
    rc = dn_get_weight(d, pl, st, node, 7, &wu, alpha->data, q_md(pd, DNNL_ARG_WEIGHTS), &wm, err);
    if (!rc) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dst}};
        rc = dn_add_prim(d, pl, st, pd, 3, args, err);
    }
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

static int add_post_eltwise(dnnl_post_ops_t po, nn_act act) {
    float alpha, beta;
    dnnl_alg_kind_t alg = dn_act_alg(act, &alpha, &beta);
    return dnnl_post_ops_append_eltwise(po, 1.0f, alg, alpha, beta) == dnnl_success ? 0 : -1;
}

/* ---- Convolution chains ------------------------------------------------------------------------------ */

static int build_chain(dn_priv *d, dn_plan *pl, dn_steps *st, int ci, dfd_error *err) {
    const dn_chain *c = &d->chains[ci];
    const nn_node *h = NODE(d, c->head);
    const nn_conv_attr *a = &h->a.conv;
    const int B = pl->batch;
    const dnnl_data_type_t dt = d->adt;
    dnnl_dims_t sd, dd;
    dn_dims(d, c->src, B, sd);
    dn_dims(d, c->head, B, dd);
    dnnl_memory_desc_t src_md, dst_md, wu, wany, bmd;
    if (d->training) { /* plain layouts, so that gradients and plain loops need no reorders */
        if (dn_md_plain(&src_md, 4, sd, dt) || dn_md_plain(&dst_md, 4, dd, dt))
            return dfd_fail(err, DFD_E_INTERNAL, "descriptor");
    } else if (dn_md_any(&src_md, 4, sd, dt) || dn_md_any(&dst_md, 4, dd, dt)) {
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    }
    if (dn_conv_weights_md(h, (int)sd[1], (int)dd[1], &wu, &wany, dt) || md_1d(&bmd, dd[1]))
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    const dn_node *hn = &d->nodes[c->head];
    nn_param *K = dn_param(d, c->head, 0), *Bp = dn_param(d, c->head, 1);
    const float *wsrc = hn->wf ? hn->wf : K->data;
    const float *bsrc = hn->bf ? hn->bf : Bp ? Bp->data : NULL;
    dnnl_dims_t strides = {a->sh, a->sw}, dil = {a->dh - 1, a->dw - 1}, pl_ = {c->pad[0], c->pad[2]},
                pr = {c->pad[1], c->pad[3]};
    dnnl_convolution_desc_t cd;
    int rc = dn_check(dnnl_dilated_convolution_forward_desc_init(&cd, prop(d), dnnl_convolution_direct, &src_md, &wany,
                                                                 bsrc ? &bmd : NULL, &dst_md, strides, dil, pl_, pr),
                      err, "convolution", h);
    if (rc) return rc;
    /* Post-ops (inference): activation, residual sum, activation. */
    dnnl_primitive_attr_t attr;
    if ((rc = dn_attr_new(&attr, err))) return rc;
    int separate_act = c->act1 != NN_ACT_NONE && (d->training || c->act1 == NN_ACT_PRELU);
    if (!d->training) {
        dnnl_post_ops_t po;
        if (dnnl_post_ops_create(&po) != dnnl_success) {
            dnnl_primitive_attr_destroy(attr);
            return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: post-ops");
        }
        int bad = 0;
        if (c->act1 != NN_ACT_NONE && !separate_act) bad |= add_post_eltwise(po, c->act1);
        if (c->add >= 0) bad |= dnnl_post_ops_append_sum(po, 1.0f) != dnnl_success;
        if (c->act2 != NN_ACT_NONE) bad |= add_post_eltwise(po, c->act2);
        if (!bad) bad |= dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success;
        dnnl_post_ops_destroy(po);
        if (bad) {
            dnnl_primitive_attr_destroy(attr);
            return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: post-ops for '%s'", h->name);
        }
    }
    dnnl_primitive_desc_t pd;
    rc = pd_create(&pd, &cd, attr, d, NULL, h, "convolution", err);
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    keep_hint(d, pl, c->head, 0, pd);
    dnnl_memory_t msrc, mw, mb = NULL, mdst;
    rc = dn_get_input(d, pl, st, c->src, q_md(pd, DNNL_ARG_SRC), &msrc, NULL, err);
    if (!rc) rc = dn_get_weight(d, pl, st, c->head, 0, &wu, wsrc, q_md(pd, DNNL_ARG_WEIGHTS), &mw, err);
    if (!rc && bsrc) rc = dn_get_weight(d, pl, st, c->head, 1, &bmd, bsrc, q_md(pd, DNNL_ARG_BIAS), &mb, err);
    const dnnl_memory_desc_t *qdst = q_md(pd, DNNL_ARG_DST);
    dn_val *ve = &pl->vals[c->end];
    if (!rc && c->add >= 0) {
        dn_val *vo = &pl->vals[c->add_other];
        /* The buffer holding the other operand: a node's value buffer (possibly an earlier
         * node's, itself overwritten in place), not a padded one, not a conversion. */
        int own = vo->buf >= 0 && vo->buf % DN_SLOTS == DN_SLOT_VAL && NODE(d, vo->buf / DN_SLOTS)->op != NN_OP_PAD;
        if (c->inplace_ok && own && dnnl_memory_desc_equal(&vo->md, qdst)) {
            /* The sum lands on the other operand's own buffer: its value is gone after this. */
            for (int x = 0; x < d->n; x++)
                if (pl->vals[x].buf == vo->buf) pl->vals[x].clobbered = 1;
            ve->buf = vo->buf;
            ve->md = *qdst;
            ve->mem = vo->mem;
        } else {
            rc = set_val(d, pl, c->end, qdst, err);
            if (!rc) rc = dn_add_reorder(d, pl, st, vo->mem, ve->mem, err); /* dst = other, then += conv */
        }
        mdst = ve->mem;
    } else if (!rc && separate_act) {
        rc = dn_mem_buf(d, pl, qdst, dn_slot(c->head, DN_SLOT_AUX0), &mdst, err);
        if (!rc) rc = set_val(d, pl, c->end, qdst, err);
    } else if (!rc) {
        rc = set_val(d, pl, c->end, qdst, err);
        mdst = ve->mem;
    }
    if (!rc) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, msrc}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, mdst}, {DNNL_ARG_BIAS, mb}};
        rc = dn_add_prim(d, pl, st, pd, mb ? 4 : 3, args, err);
        st->v[st->n - 1].node = c->head;
    }
    if (!rc && separate_act) {
        if (c->act1 == NN_ACT_PRELU)
            rc = add_prelu(d, pl, st, c->head, c->act1_alpha, qdst, mdst, ve->mem, 1, err);
        else
            rc = add_eltwise(d, pl, st, h, c->act1, qdst, mdst, ve->mem, c->head, 1, err);
    }
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* ---- Other ops ------------------------------------------------------------------------------------------ */

static int build_input(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    dnnl_memory_desc_t md;
    int rc = plain_md(&md, NODE(d, id), pl->batch, dnnl_f32, err);
    if (rc) return rc;
    dn_val *v = &pl->vals[id];
    if (!d->training) { /* read in place from the caller's buffer */
        v->buf = DN_BUF_INPUT;
        v->md = md;
        return dn_mem_buf(d, pl, &md, DN_BUF_INPUT, &v->mem, err);
    }
    rc = set_val(d, pl, id, &md, err);
    if (!rc) rc = dn_add_fn(st, fn_copy_input, id, 0, 0, v->mem, NULL, err);
    return rc;
}

/* Inference batch-norm that no convolution absorbed: oneDNN's, with the moving statistics. */
static int build_bn(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    int in = n->inputs[0];
    const dnnl_memory_desc_t *md = &pl->vals[in].md;
    dnnl_memory_desc_t f32md;
    /* oneDNN 2.6 has jit bf16 batch-norm only for channels in multiples of 16 (else a slow
     * generic one, 50x slower): run those in fp32. */
    if (md->data_type == dnnl_bf16 && n->shape[n->ndim - 1] % 16) {
        int rc = plain_md(&f32md, NODE(d, in), pl->batch, dnnl_f32, err);
        if (rc) return rc;
        md = &f32md;
    }
    unsigned flags = dnnl_use_scale | dnnl_use_shift | dnnl_use_global_stats;
    dnnl_batch_normalization_desc_t bd;
    int rc = dn_check(dnnl_batch_normalization_forward_desc_init(&bd, prop(d), md, n->a.bn.eps, flags), err,
                      "batch-norm", n);
    if (rc) return rc;
    dnnl_primitive_attr_t attr;
    if ((rc = dn_attr_new(&attr, err))) return rc;
    dnnl_primitive_desc_t pd;
    rc = pd_create(&pd, &bd, attr, d, NULL, n, "batch-norm", err);
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    dnnl_memory_desc_t cmd;
    md_1d(&cmd, n->shape[n->ndim - 1]);
    dnnl_memory_t msrc, ms, mh, mm, mv;
    rc = dn_get_input(d, pl, st, in, q_md(pd, DNNL_ARG_SRC), &msrc, NULL, err);
    if (!rc) rc = dn_mem_ext(d, pl, &cmd, dn_param(d, id, 0)->data, &ms, err);
    if (!rc) rc = dn_mem_ext(d, pl, &cmd, dn_param(d, id, 1)->data, &mh, err);
    if (!rc) rc = dn_mem_ext(d, pl, &cmd, dn_param(d, id, 2)->data, &mm, err);
    if (!rc) rc = dn_mem_ext(d, pl, &cmd, dn_param(d, id, 3)->data, &mv, err);
    if (!rc) rc = set_val(d, pl, id, q_md(pd, DNNL_ARG_DST), err);
    if (!rc) {
        dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, msrc},  {DNNL_ARG_SCALE, ms},    {DNNL_ARG_SHIFT, mh},
                                   {DNNL_ARG_MEAN, mm},   {DNNL_ARG_VARIANCE, mv}, {DNNL_ARG_DST, pl->vals[id].mem}};
        rc = dn_add_prim(d, pl, st, pd, 6, args, err);
    }
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* ---- Training batch-norm: our fused kernel -------------------------------------------------------- */

int dn_bnact_desc(const dn_priv *d, const dn_plan *pl, int bn, nn_bnact_desc *bd) {
    const nn_node *n = NODE(d, bn);
    const int C = n->shape[n->ndim - 1];
    dnnl_data_type_t t = pl->vals[n->inputs[0]].md.data_type;
    bd->rows = (size_t)pl->batch * (size_t)n->batch_mul * (nn_node_size(n) / (size_t)C);
    bd->C = C;
    bd->bf16 = t == dnnl_bf16;
    bd->act = d->nodes[bn].bn_act >= 0 ? NODE(d, d->nodes[bn].bn_act)->a.act.act : NN_ACT_NONE;
    bd->batch_stats = ref_bn_batch_stats(d->ex, n);
    bd->eps = n->a.bn.eps;
    return t == dnnl_bf16 || t == dnnl_f32 ? DFD_OK : DFD_E_INTERNAL;
}

int dn_bnact_threads(int cap) {
    int t = omp_get_max_threads();
    return t < cap ? t : cap;
}

/* The statistics a training batch-norm normalises with: the batch's (its AUX buffers) or
 * the moving ones (frozen statistics). */
void dn_bnact_stats(const dn_priv *d, int bn, int batch_stats, float **mean, float **var) {
    if (batch_stats) {
        *mean = d->bufs[dn_slot(bn, DN_SLOT_AUX0)].p;
        *var = d->bufs[dn_slot(bn, DN_SLOT_AUX1)].p;
    } else {
        *mean = dn_param(d, bn, 2)->data;
        *var = dn_param(d, bn, 3)->data;
    }
}

static int fn_bnact_fwd(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    nn_bnact_desc bd;
    if (dn_bnact_desc(d, pl, s->node, &bd)) return dfd_fail(err, DFD_E_INTERNAL, "batch-norm: data type");
    float *mean, *var;
    dn_bnact_stats(d, s->node, bd.batch_stats, &mean, &var);
    nn_bnact_forward(&bd, mem_ptr(s->m0), mem_ptr(s->m1), dn_param(d, s->node, 0)->data, dn_param(d, s->node, 1)->data,
                     mean, var, d->bufs[dn_slot(s->node, DN_SLOT_AUX2)].p, dn_bnact_threads(s->i0));
    return DFD_OK;
}

/* Training: y = act(bn(x)) in one step on plain data of x's type, into the value of the
 * activation it absorbed (or its own), then the moving statistics' update. */
static int build_bn_train(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    const int in = n->inputs[0], out = d->nodes[id].bn_act >= 0 ? d->nodes[id].bn_act : id;
    nn_bnact_desc bd;
    if (dn_bnact_desc(d, pl, id, &bd))
        return dfd_fail(err, DFD_E_UNSUPPORTED, "batch-norm '%s': input neither fp32 nor bf16", n->name);
    dnnl_data_type_t t = bd.bf16 ? dnnl_bf16 : dnnl_f32;
    const int cap = d->threads > 0 ? d->threads : 1;
    dnnl_memory_desc_t ymd, cmd;
    dnnl_memory_t mx, mm, mv;
    md_1d(&cmd, bd.C);
    int rc = get_plain(d, pl, st, in, t, &mx, NULL, err);
    if (!rc) rc = plain_md(&ymd, NODE(d, out), pl->batch, t, err);
    if (!rc) rc = set_val(d, pl, out, &ymd, err);
    if (!rc) rc = dn_mem_buf(d, pl, &cmd, dn_slot(id, DN_SLOT_AUX0), &mm, err);
    if (!rc) rc = dn_mem_buf(d, pl, &cmd, dn_slot(id, DN_SLOT_AUX1), &mv, err);
    if (!rc) rc = dn_buf_need(d, dn_slot(id, DN_SLOT_AUX2), nn_bnact_workspace(&bd, cap), err);
    if (!rc) rc = dn_add_fn(st, fn_bnact_fwd, id, cap, 0, mx, pl->vals[out].mem, err);
    if (!rc && bd.batch_stats) rc = dn_add_fn(st, fn_bn_moving, id, 0, 0, mm, mv, err);
    return rc;
}

static int build_act(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    int in = n->inputs[0];
    dnnl_memory_desc_t md = pl->vals[in].md;
    int rc = set_val(d, pl, id, &md, err);
    if (rc) return rc;
    if (n->a.act.act == NN_ACT_PRELU)
        return add_prelu(d, pl, st, id, n->params[0], &md, pl->vals[in].mem, pl->vals[id].mem, 0, err);
    return add_eltwise(d, pl, st, n, n->a.act.act, &md, pl->vals[in].mem, pl->vals[id].mem, id, 0, err);
}

static int build_pool(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    int in = n->inputs[0];
    const nn_pool_attr *a = &n->a.pool;
    const dnnl_memory_desc_t *smd = &pl->vals[in].md;
    dnnl_dims_t dd;
    dn_dims(d, id, pl->batch, dd);
    dnnl_memory_desc_t dmd;
    if (d->training ? dn_md_plain(&dmd, 4, dd, smd->data_type) : dn_md_any(&dmd, 4, dd, smd->data_type))
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    dnnl_dims_t strides = {a->sh, a->sw}, kernel = {a->kh, a->kw}, pl_ = {a->pad_t, a->pad_l}, pr = {a->pad_b, a->pad_r};
    dnnl_alg_kind_t alg = n->op == NN_OP_MAXPOOL ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding;
    dnnl_pooling_desc_t pdsc;
    int rc = dn_check(dnnl_pooling_forward_desc_init(&pdsc, prop(d), alg, smd, &dmd, strides, kernel, pl_, pr), err,
                      "pooling", n);
    if (rc) return rc;
    dnnl_primitive_attr_t attr;
    if ((rc = dn_attr_new(&attr, err))) return rc;
    dnnl_primitive_desc_t pd;
    rc = pd_create(&pd, &pdsc, attr, d, NULL, n, "pooling", err);
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    keep_hint(d, pl, id, 0, pd);
    rc = set_val(d, pl, id, q_md(pd, DNNL_ARG_DST), err);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, pl->vals[in].mem}, {DNNL_ARG_DST, pl->vals[id].mem}, {0, NULL}};
    int nargs = 2;
    const dnnl_memory_desc_t *wmd = q_md(pd, DNNL_ARG_WORKSPACE);
    if (!rc && wmd && wmd->ndims > 0) {
        rc = dn_mem_buf(d, pl, wmd, dn_slot(id, DN_SLOT_AUX0), &args[2].memory, err);
        args[2].arg = DNNL_ARG_WORKSPACE;
        nargs = 3;
    }
    if (!rc) rc = dn_add_prim(d, pl, st, pd, nargs, args, err);
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* Global average pooling: an average pool whose window is the whole map (or sequence). */
static int build_gap(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    int in = n->inputs[0];
    const dnnl_memory_desc_t *smd = &pl->vals[in].md;
    const int nd = smd->ndims, ns = nd - 2;
    if (ns < 1 || ns > 3) return dfd_fail(err, DFD_E_UNSUPPORTED, "global pooling of a %d-D input", nd);
    dnnl_dims_t dd, kernel, strides, zero = {0, 0, 0};
    dd[0] = smd->dims[0];
    dd[1] = smd->dims[1];
    for (int i = 0; i < ns; i++) {
        dd[2 + i] = 1;
        kernel[i] = strides[i] = smd->dims[2 + i];
    }
    dnnl_memory_desc_t dmd, view, vmd;
    int rc = plain_md(&vmd, n, pl->batch, dnnl_f32, err);
    if (rc) return rc;
    if (dn_md_plain(&view, nd, dd, dnnl_f32) ||
        (d->training ? dn_md_plain(&dmd, nd, dd, smd->data_type) : dn_md_any(&dmd, nd, dd, smd->data_type)))
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    dnnl_pooling_desc_t pdsc;
    rc = dn_check(dnnl_pooling_forward_desc_init(&pdsc, prop(d), dnnl_pooling_avg_exclude_padding, smd, &dmd, strides,
                                                 kernel, zero, zero),
                  err, "global pooling", n);
    if (rc) return rc;
    dnnl_primitive_attr_t attr;
    if ((rc = dn_attr_new(&attr, err))) return rc;
    dnnl_primitive_desc_t pd;
    rc = pd_create(&pd, &pdsc, attr, d, NULL, n, "global pooling", err);
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    keep_hint(d, pl, id, 0, pd);
    /* The value is {N, C} plain fp32; the pool writes {N, C, 1, 1}, the same bytes when plain. */
    dnnl_memory_t mview, mdst;
    rc = set_val(d, pl, id, &vmd, err);
    if (!rc) rc = dn_mem_buf(d, pl, &view, dn_slot(id, DN_SLOT_VAL), &mview, err);
    const dnnl_memory_desc_t *qd = q_md(pd, DNNL_ARG_DST);
    int direct = dnnl_memory_desc_equal(qd, &view);
    if (!rc) rc = direct ? (mdst = mview, DFD_OK) : dn_mem_buf(d, pl, qd, dn_slot(id, DN_SLOT_AUX0), &mdst, err);
    if (!rc) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, pl->vals[in].mem}, {DNNL_ARG_DST, mdst}};
        rc = dn_add_prim(d, pl, st, pd, 2, args, err);
    }
    if (!rc && !direct) rc = dn_add_reorder(d, pl, st, mdst, mview, err);
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* Dense on the last axis: an inner product over rows = items x positions. */
static int build_dense(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    int in = n->inputs[0];
    const nn_node *xn = NODE(d, in);
    const dnnl_data_type_t dt = d->adt;
    const dnnl_dim_t CI = xn->shape[xn->ndim - 1], U = n->a.dense.units;
    const dnnl_dim_t rows = (dnnl_dim_t)pl->batch * xn->batch_mul * (dnnl_dim_t)(nn_node_size(xn) / (size_t)CI);
    const nn_act act = n->a.dense.act;
    const int separate_act = act != NN_ACT_NONE && (d->training || act == NN_ACT_PRELU);
    dnnl_memory_desc_t src2, wu, wany, bmd, dst2, vmd;
    dnnl_dims_t sdims = {rows, CI}, wdims = {U, CI}, ddims = {rows, U};
    if (dn_md_plain(&src2, 2, sdims, dt) || dnnl_memory_desc_init_by_tag(&wu, 2, wdims, dnnl_f32, dnnl_io) ||
        dn_md_any(&wany, 2, wdims, dt) || md_1d(&bmd, U) || dn_md_plain(&dst2, 2, ddims, dnnl_f32))
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    int rc = plain_md(&vmd, n, pl->batch, dnnl_f32, err);
    if (rc) return rc;
    nn_param *K = dn_param(d, id, 0), *Bp = dn_param(d, id, 1);
    dnnl_inner_product_desc_t ipd;
    rc = dn_check(dnnl_inner_product_forward_desc_init(&ipd, prop(d), &src2, &wany, Bp ? &bmd : NULL, &dst2), err,
                  "dense", n);
    if (rc) return rc;
    dnnl_primitive_attr_t attr;
    if ((rc = dn_attr_new(&attr, err))) return rc;
    if (act != NN_ACT_NONE && !separate_act) {
        dnnl_post_ops_t po;
        dnnl_post_ops_create(&po);
        add_post_eltwise(po, act);
        dnnl_primitive_attr_set_post_ops(attr, po);
        dnnl_post_ops_destroy(po);
    }
    dnnl_primitive_desc_t pd;
    rc = pd_create(&pd, &ipd, attr, d, NULL, n, "dense", err);
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    keep_hint(d, pl, id, 0, pd);
    dnnl_memory_t mfull, msrc, mw, mb = NULL, mdst;
    int buf;
    rc = get_plain(d, pl, st, in, dt, &mfull, &buf, err);
    if (!rc) rc = dn_mem_buf(d, pl, &src2, buf, &msrc, err); /* the same bytes seen as {rows, CI} */
    if (!rc) rc = dn_get_weight(d, pl, st, id, 0, &wu, K->data, q_md(pd, DNNL_ARG_WEIGHTS), &mw, err);
    if (!rc && Bp) rc = dn_mem_ext(d, pl, &bmd, Bp->data, &mb, err);
    if (!rc) rc = set_val(d, pl, id, &vmd, err);
    if (!rc) rc = dn_mem_buf(d, pl, &dst2, dn_slot(id, separate_act ? DN_SLOT_AUX0 : DN_SLOT_VAL), &mdst, err);
    if (!rc) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, msrc}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, mdst}, {DNNL_ARG_BIAS, mb}};
        rc = dn_add_prim(d, pl, st, pd, mb ? 4 : 3, args, err);
        if (!rc) st->v[st->n - 1].node = id;
    }
    if (!rc && separate_act) {
        dnnl_memory_t mval;
        rc = dn_mem_buf(d, pl, &dst2, dn_slot(id, DN_SLOT_VAL), &mval, err);
        if (!rc && act == NN_ACT_PRELU) rc = add_prelu(d, pl, st, id, n->params[2], &dst2, mdst, mval, 1, err);
        else if (!rc) rc = add_eltwise(d, pl, st, n, act, &dst2, mdst, mval, id, 1, err);
    }
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

static int build_dropout(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    int in = NODE(d, id)->inputs[0];
    if (!d->training) { /* identity: share the input's value */
        dn_val *v = &pl->vals[id], *x = &pl->vals[in];
        v->buf = x->buf;
        v->md = x->md;
        v->mem = x->mem;
        return DFD_OK;
    }
    size_t cnt = node_count(d, pl, id);
    dnnl_memory_t mx;
    dnnl_memory_desc_t md;
    int rc = dn_buf_need(d, dn_slot(id, DN_SLOT_AUX0), cnt, err);
    if (!rc) rc = get_plain(d, pl, st, in, dnnl_f32, &mx, NULL, err);
    if (!rc) rc = plain_md(&md, NODE(d, id), pl->batch, dnnl_f32, err);
    if (!rc) rc = set_val(d, pl, id, &md, err);
    if (!rc) rc = dn_add_fn(st, fn_dropout, id, 0, 0, mx, pl->vals[id].mem, err);
    return rc;
}

static int build_add(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    int a = n->inputs[0], b = n->inputs[1];
    dnnl_memory_desc_t md = pl->vals[a].md;
    dnnl_binary_desc_t bd;
    int rc = dn_check(dnnl_binary_desc_init(&bd, dnnl_binary_add, &md, &md, &md), err, "add", n);
    if (rc) return rc;
    dnnl_primitive_attr_t attr;
    if ((rc = dn_attr_new(&attr, err))) return rc;
    dnnl_primitive_desc_t pd;
    rc = pd_create(&pd, &bd, attr, d, NULL, n, "add", err);
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    dnnl_memory_t mb;
    rc = dn_get_input(d, pl, st, b, &md, &mb, NULL, err);
    if (!rc) rc = set_val(d, pl, id, &md, err);
    if (!rc) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC_0, pl->vals[a].mem}, {DNNL_ARG_SRC_1, mb}, {DNNL_ARG_DST, pl->vals[id].mem}};
        rc = dn_add_prim(d, pl, st, pd, 3, args, err);
    }
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

static int build_concat(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    dnnl_memory_desc_t smd[NN_MAX_INPUTS], dmd;
    dnnl_memory_t sm[NN_MAX_INPUTS];
    dnnl_dims_t dd;
    int nd = dn_node_dims(n, pl->batch, dd);
    dnnl_data_type_t dt = pl->vals[n->inputs[0]].md.data_type;
    int same_type = 1;
    for (int k = 0; k < n->n_inputs; k++) {
        smd[k] = pl->vals[n->inputs[k]].md;
        sm[k] = pl->vals[n->inputs[k]].mem;
        if (smd[k].data_type != dt) same_type = 0;
    }
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr;
    int rc = dn_attr_new(&attr, err);
    if (rc) return rc;
    if (same_type && !d->training && !dn_md_any(&dmd, nd, dd, dt))
        if (dnnl_concat_primitive_desc_create(&pd, &dmd, n->n_inputs, 1, smd, attr, d->eng) != dnnl_success) pd = NULL;
    if (!pd) { /* fall back to plain layouts of one type */
        if (!same_type) dt = dnnl_f32;
        for (int k = 0; k < n->n_inputs && !rc; k++) {
            rc = get_plain(d, pl, st, n->inputs[k], dt, &sm[k], NULL, err);
            if (!rc) {
                const dnnl_memory_desc_t *m;
                dnnl_memory_get_memory_desc(sm[k], &m);
                smd[k] = *m;
            }
        }
        if (!rc && dn_md_plain(&dmd, nd, dd, dt)) rc = dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
        if (!rc)
            rc = dn_check(dnnl_concat_primitive_desc_create(&pd, &dmd, n->n_inputs, 1, smd, attr, d->eng), err, "concat", n);
    }
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    rc = set_val(d, pl, id, q_md(pd, DNNL_ARG_DST), err);
    if (!rc) {
        dnnl_exec_arg_t args[NN_MAX_INPUTS + 1];
        for (int k = 0; k < n->n_inputs; k++) {
            args[k].arg = DNNL_ARG_MULTIPLE_SRC + k;
            args[k].memory = sm[k];
        }
        args[n->n_inputs].arg = DNNL_ARG_DST;
        args[n->n_inputs].memory = pl->vals[id].mem;
        rc = dn_add_prim(d, pl, st, pd, n->n_inputs + 1, args, err);
    }
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* Zero padding: a reorder of the input into the interior of a zeroed buffer. The borders
 * are zeroed when the buffer is allocated and nothing else ever writes this buffer. */
static int build_pad(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    int in = n->inputs[0];
    dnnl_data_type_t dt = pl->vals[in].md.data_type;
    dnnl_memory_desc_t md, sub;
    int rc = plain_md(&md, n, pl->batch, dt, err);
    if (rc) return rc;
    dnnl_dims_t sd, off = {0, 0, 0, 0, 0};
    dn_node_dims(NODE(d, in), pl->batch, sd);
    if (n->ndim == 3) {
        off[2] = n->a.pad.t;
        off[3] = n->a.pad.l;
    }
    rc = dn_check(dnnl_memory_desc_init_submemory(&sub, &md, sd, off), err, "padding view", n);
    dnnl_memory_t msub;
    if (!rc) rc = set_val(d, pl, id, &md, err);
    if (!rc) rc = dn_mem_buf(d, pl, &sub, dn_slot(id, DN_SLOT_VAL), &msub, err);
    if (!rc) rc = dn_add_reorder(d, pl, st, pl->vals[in].mem, msub, err);
    return rc;
}

/* Reshape and time folding: the same bytes in plain layout under new dimensions. */
static int build_reshape(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    int in = n->inputs[0];
    dnnl_data_type_t dt = pl->vals[in].md.data_type;
    dnnl_memory_t m;
    int buf;
    int rc = get_plain(d, pl, st, in, dt, &m, &buf, err);
    if (rc) return rc;
    dn_val *v = &pl->vals[id];
    rc = plain_md(&v->md, n, pl->batch, dt, err);
    v->buf = buf;
    if (!rc) rc = dn_mem_buf(d, pl, &v->md, buf, &v->mem, err);
    return rc;
}

/* Keras LSTM as oneDNN's: both use gate order i, f, c~, o, and Keras's kernel {C, 4U},
 * recurrent kernel {U, 4U} and bias {4U} are exactly oneDNN's ldigo / ldgo layouts
 * (l = d = 1), so the parameters are used as they are. */
static int build_lstm(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    int in = n->inputs[0];
    const nn_node *xn = NODE(d, in);
    const dnnl_dim_t N = (dnnl_dim_t)pl->batch * n->batch_mul, T = xn->shape[0], C = xn->shape[1],
                     U = n->a.lstm.units;
    dnnl_memory_desc_t sl, wlu, wiu, bu, wla, wia, dl, di, dc, vmd;
    dnnl_dims_t sld = {T, N, C}, wld = {1, 1, C, 4, U}, wid = {1, 1, U, 4, U}, bd = {1, 1, 4, U}, dld = {T, N, U},
                did = {1, 1, N, U};
    if (dnnl_memory_desc_init_by_tag(&sl, 3, sld, dnnl_f32, dnnl_ntc) ||
        dnnl_memory_desc_init_by_tag(&wlu, 5, wld, dnnl_f32, dnnl_ldigo) ||
        dnnl_memory_desc_init_by_tag(&wiu, 5, wid, dnnl_f32, dnnl_ldigo) ||
        dnnl_memory_desc_init_by_tag(&bu, 4, bd, dnnl_f32, dnnl_ldgo) ||
        dnnl_memory_desc_init_by_tag(&wla, 5, wld, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&wia, 5, wid, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&dl, 3, dld, dnnl_f32, dnnl_ntc) ||
        dnnl_memory_desc_init_by_tag(&di, 4, did, dnnl_f32, dnnl_ldnc) ||
        dnnl_memory_desc_init_by_tag(&dc, 4, did, dnnl_f32, dnnl_ldnc))
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    int rc = plain_md(&vmd, n, pl->batch, dnnl_f32, err);
    if (rc) return rc;
    dnnl_rnn_desc_t rd;
    rc = dn_check(dnnl_lstm_forward_desc_init(&rd, prop(d), dnnl_unidirectional_left2right, &sl, NULL, NULL, &wla, &wia,
                                              &bu, &dl, &di, &dc, 0),
                  err, "LSTM", n);
    if (rc) return rc;
    dnnl_primitive_attr_t attr;
    if ((rc = dn_attr_new(&attr, err))) return rc;
    dnnl_primitive_desc_t pd;
    rc = pd_create(&pd, &rd, attr, d, NULL, n, "LSTM", err);
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    keep_hint(d, pl, id, 0, pd);
    dnnl_memory_t mx, msl, mwl, mwi, mb, mdl, mdi, mdc, mws = NULL;
    int buf;
    const int rs = n->a.lstm.return_sequences;
    rc = get_plain(d, pl, st, in, dnnl_f32, &mx, &buf, err);
    if (!rc) rc = dn_mem_buf(d, pl, &sl, buf, &msl, err);
    if (!rc) rc = dn_get_weight(d, pl, st, id, 0, &wlu, dn_param(d, id, 0)->data, q_md(pd, DNNL_ARG_WEIGHTS_LAYER), &mwl, err);
    if (!rc) rc = dn_get_weight(d, pl, st, id, 1, &wiu, dn_param(d, id, 1)->data, q_md(pd, DNNL_ARG_WEIGHTS_ITER), &mwi, err);
    if (!rc) rc = dn_get_weight(d, pl, st, id, 2, &bu, dn_param(d, id, 2)->data, q_md(pd, DNNL_ARG_BIAS), &mb, err);
    if (!rc) rc = set_val(d, pl, id, &vmd, err);
    if (!rc) rc = dn_mem_buf(d, pl, &dl, dn_slot(id, rs ? DN_SLOT_VAL : DN_SLOT_AUX2), &mdl, err);
    if (!rc) rc = dn_mem_buf(d, pl, &di, dn_slot(id, rs ? DN_SLOT_AUX0 : DN_SLOT_VAL), &mdi, err);
    if (!rc) rc = dn_mem_buf(d, pl, &dc, dn_slot(id, DN_SLOT_AUX1), &mdc, err);
    const dnnl_memory_desc_t *wsmd = q_md(pd, DNNL_ARG_WORKSPACE);
    if (!rc && wsmd && wsmd->ndims > 0) rc = dn_mem_buf(d, pl, wsmd, dn_slot(id, DN_SLOT_AUX3), &mws, err);
    if (!rc) {
        dnnl_exec_arg_t args[8] = {{DNNL_ARG_SRC_LAYER, msl}, {DNNL_ARG_WEIGHTS_LAYER, mwl}, {DNNL_ARG_WEIGHTS_ITER, mwi},
                                   {DNNL_ARG_BIAS, mb},       {DNNL_ARG_DST_LAYER, mdl},     {DNNL_ARG_DST_ITER, mdi},
                                   {DNNL_ARG_DST_ITER_C, mdc}, {DNNL_ARG_WORKSPACE, mws}};
        rc = dn_add_prim(d, pl, st, pd, mws ? 8 : 7, args, err);
    }
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

static int build_resize(dn_priv *d, dn_plan *pl, dn_steps *st, int id, dfd_error *err) {
    const nn_node *n = NODE(d, id);
    dnnl_memory_t mx;
    dnnl_memory_desc_t md;
    int rc = get_plain(d, pl, st, n->inputs[0], dnnl_f32, &mx, NULL, err);
    if (!rc) rc = plain_md(&md, n, pl->batch, dnnl_f32, err);
    if (!rc) rc = set_val(d, pl, id, &md, err);
    if (!rc) rc = dn_add_fn(st, fn_resize, id, 0, 0, mx, pl->vals[id].mem, err);
    return rc;
}

int dn_build_forward(dn_priv *d, dn_plan *pl, dfd_error *err) {
    for (int id = 0; id < d->n; id++) {
        const nn_node *n = NODE(d, id);
        const dn_node *dn = &d->nodes[id];
        int rc;
        if (dn->chain >= 0) {
            /* A chain is built where its value is produced; its other members produce nothing. */
            if (d->chains[dn->chain].end == id) {
                rc = build_chain(d, pl, &pl->fwd, dn->chain, err);
                if (rc) return rc;
            }
            continue;
        }
        switch (n->op) {
        case NN_OP_INPUT: rc = build_input(d, pl, &pl->fwd, id, err); break;
        case NN_OP_BATCHNORM:
            rc = d->training ? build_bn_train(d, pl, &pl->fwd, id, err) : build_bn(d, pl, &pl->fwd, id, err);
            break;
        case NN_OP_ACT: rc = dn->act_bn >= 0 ? DFD_OK : build_act(d, pl, &pl->fwd, id, err); break;
        case NN_OP_MAXPOOL:
        case NN_OP_AVGPOOL: rc = build_pool(d, pl, &pl->fwd, id, err); break;
        case NN_OP_GAP: rc = build_gap(d, pl, &pl->fwd, id, err); break;
        case NN_OP_DENSE: rc = build_dense(d, pl, &pl->fwd, id, err); break;
        case NN_OP_DROPOUT: rc = build_dropout(d, pl, &pl->fwd, id, err); break;
        case NN_OP_ADD: rc = build_add(d, pl, &pl->fwd, id, err); break;
        case NN_OP_CONCAT: rc = build_concat(d, pl, &pl->fwd, id, err); break;
        case NN_OP_PAD: rc = build_pad(d, pl, &pl->fwd, id, err); break;
        case NN_OP_RESHAPE:
        case NN_OP_FOLD_TIME:
        case NN_OP_UNFOLD_TIME: rc = build_reshape(d, pl, &pl->fwd, id, err); break;
        case NN_OP_LSTM: rc = build_lstm(d, pl, &pl->fwd, id, err); break;
        case NN_OP_RESIZE: rc = build_resize(d, pl, &pl->fwd, id, err); break;
        default:
            rc = dfd_fail(err, DFD_E_UNSUPPORTED, "oneDNN backend: op %d of node %d ('%s') not supported", (int)n->op, id,
                          n->name);
        }
        if (rc) return rc;
    }
    return DFD_OK;
}
