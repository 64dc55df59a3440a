/*
 * dnnl_bwd.c — the oneDNN backend's backward pass (training executors, plain layouts, fp32 or
 * mixed-precision bf16).
 *
 * Built once per batch size, after that size's first forward pass, from the forward
 * descriptors the forward plan kept (oneDNN wants them as hints). Nodes are visited in
 * reverse order; each one turns d(loss)/d(its value) into contributions to its inputs'
 * gradients. Which contribution reaches an input first is fixed by the graph, so the plan
 * says statically whether a step writes an input's gradient or adds to it: the first one
 * writes straight into the gradient buffer, later ones write a temporary that is added.
 * Parameter gradients are accumulated into nn_param.grad (Keras layout) by reorders with a
 * sum post-op, which also convert from the primitive's layout.
 * Plain loops (no oneDNN primitive): gradient sums and copies, dropout, padding, concat
 * slices, bilinear resize; batch-norm (with the activation it absorbed) runs our fused
 * kernel (nn/bnact.h), which adds d(gamma), d(beta) to the parameters itself.
 */
#include <stdlib.h>
#include <string.h>

#include "nn/bnact.h"
#include "nn/dnnl_internal.h"
#include "nn/ref_internal.h"

static const nn_node *NODE(const dn_priv *d, int id) { return nn_graph_node(d->g, id); }

static void *mem_ptr(dnnl_memory_t m) {
    void *p = NULL;
    dnnl_memory_get_data_handle(m, &p);
    return p;
}

static dnnl_data_type_t mem_dt(dnnl_memory_t m) {
    const dnnl_memory_desc_t *md = NULL;
    dnnl_memory_get_memory_desc(m, &md);
    return md->data_type;
}

/* Elements of a memory (fp32 or bf16). */
static size_t mem_elems(dnnl_memory_t m) {
    const dnnl_memory_desc_t *md = NULL;
    dnnl_memory_get_memory_desc(m, &md);
    return dnnl_memory_desc_get_size(md) / dnnl_data_type_size(md->data_type);
}

/* Element i of fp32 or bf16 data. */
static inline float ld(const void *p, size_t i, dnnl_data_type_t t) {
    return t != dnnl_bf16 ? ((const float *)p)[i] : dfd_bf16_to_f32(((const uint16_t *)p)[i]);
}

/* Stores v as fp32 or bf16 (rounded to nearest even, as oneDNN does). */
static inline void st(void *p, size_t i, dnnl_data_type_t t, float v) {
    if (t != dnnl_bf16)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = dfd_f32_to_bf16(v);
}

static const dnnl_memory_desc_t *q_md(const_dnnl_primitive_desc_t pd, int arg) {
    return dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
}

static int plain_md_dt(dnnl_memory_desc_t *md, const nn_node *n, int batch, dnnl_data_type_t dt) {
    dnnl_dims_t dims;
    int nd = dn_node_dims(n, batch, dims);
    return dn_md_plain(md, nd, dims, dt);
}

static int plain_md(dnnl_memory_desc_t *md, const nn_node *n, int batch) {
    return plain_md_dt(md, n, batch, dnnl_f32);
}

/* ---- Plain-loop steps ------------------------------------------------------------------------ */

static int fn_zero(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    (void)d, (void)pl, (void)err;
    memset(mem_ptr(s->m1), 0, mem_elems(s->m1) * dnnl_data_type_size(mem_dt(s->m1)));
    return DFD_OK;
}

/* The caller's d(loss)/d(output i0) into the output node's gradient (zero when NULL). */
static int fn_out_grad(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    (void)pl, (void)err;
    void *y = mem_ptr(s->m1);
    size_t n = mem_elems(s->m1);
    dnnl_data_type_t t = mem_dt(s->m1);
    const float *g = d->cur_douts ? d->cur_douts[s->i0] : NULL;
    for (size_t i = 0; i < n; i++) st(y, i, t, (g ? g[i] : 0.0f) + (s->i1 ? ld(y, i, t) : 0.0f));
    return DFD_OK;
}

static int fn_dropout_bwd(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    (void)pl, (void)err;
    const nn_node *n = NODE(d, s->node);
    const float *dy = mem_ptr(s->m0);
    float *dx = mem_ptr(s->m1);
    const uint8_t *mask = d->bufs[dn_slot(s->node, DN_SLOT_AUX0)].p;
    size_t cnt = mem_elems(s->m1);
    float scale = n->a.dropout.rate > 0 ? 1.0f / (1.0f - n->a.dropout.rate) : 1.0f;
    for (size_t i = 0; i < cnt; i++) {
        float v = mask[i] ? dy[i] * scale : 0.0f;
        dx[i] = s->i0 ? dx[i] + v : v;
    }
    return DFD_OK;
}

/* Rows of a node's per-item shape over its last axis, for a batch. */
static size_t rows_of(const nn_node *n, int batch) {
    return (size_t)batch * (size_t)n->batch_mul * (nn_node_size(n) / (size_t)n->shape[n->ndim - 1]);
}

/* d(concat)/d(input i1) is the input's slice of the channels; i0: add. */
static int fn_concat_bwd(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    (void)err;
    const nn_node *n = NODE(d, s->node);
    const int k = s->i1, CT = n->shape[n->ndim - 1];
    int off = 0;
    for (int j = 0; j < k; j++) {
        const nn_node *xj = NODE(d, n->inputs[j]);
        off += xj->shape[xj->ndim - 1];
    }
    const nn_node *xk = NODE(d, n->inputs[k]);
    const int C = xk->shape[xk->ndim - 1];
    const size_t R = rows_of(n, pl->batch);
    const void *dy = mem_ptr(s->m0);
    dnnl_data_type_t ty = mem_dt(s->m0);
    float *dx = mem_ptr(s->m1);
    for (size_t r = 0; r < R; r++) {
        float *b = dx + r * (size_t)C;
        for (int c = 0; c < C; c++) {
            float v = ld(dy, r * (size_t)CT + (size_t)off + (size_t)c, ty);
            b[c] = s->i0 ? b[c] + v : v;
        }
    }
    return DFD_OK;
}

/* d(pad)/d(input): the interior of the gradient. */
static int fn_pad_bwd(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    (void)err;
    const nn_node *n = NODE(d, s->node), *xn = NODE(d, n->inputs[0]);
    const void *dy = mem_ptr(s->m0);
    dnnl_data_type_t ty = mem_dt(s->m0);
    float *dx = mem_ptr(s->m1);
    const int C = xn->shape[xn->ndim - 1], OC = n->shape[n->ndim - 1];
    const size_t items = (size_t)pl->batch * (size_t)n->batch_mul;
    const int H = n->ndim == 3 ? xn->shape[0] : 1, W = n->ndim == 3 ? xn->shape[1] : 1;
    const int OW = n->ndim == 3 ? n->shape[1] : 1, OH = n->ndim == 3 ? n->shape[0] : 1;
    const int t = n->ndim == 3 ? n->a.pad.t : 0, l = n->ndim == 3 ? n->a.pad.l : 0;
    const size_t inner = n->ndim == 3 ? 1 : nn_node_size(xn) / (size_t)C; /* sequence rows */
    for (size_t b = 0; b < items; b++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (size_t r = 0; r < inner; r++) {
                    size_t a = (((b * (size_t)OH + (size_t)(y + t)) * (size_t)OW + (size_t)(x + l)) * inner + r) * (size_t)OC;
                    float *o = dx + (((b * (size_t)H + (size_t)y) * (size_t)W + (size_t)x) * inner + r) * (size_t)C;
                    for (int c = 0; c < C; c++) {
                        float v = ld(dy, a + (size_t)c, ty);
                        o[c] = s->i0 ? o[c] + v : v;
                    }
                }
    return DFD_OK;
}

/* The transpose of the forward interpolation (dnnl_fwd.c fn_resize). */
static int fn_resize_bwd(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    (void)err;
    const nn_node *n = NODE(d, s->node), *xn = NODE(d, n->inputs[0]);
    const float *dy = mem_ptr(s->m0);
    float *dx = mem_ptr(s->m1);
    const int H = xn->shape[0], W = xn->shape[1], C = xn->shape[2], OH = n->shape[0], OW = n->shape[1];
    const int hp = n->a.resize.half_pixel_centers;
    const float hs = ref_resize_scale(H, OH, n->a.resize.align_corners);
    const float ws = ref_resize_scale(W, OW, n->a.resize.align_corners);
    const size_t rows = (size_t)pl->batch * (size_t)n->batch_mul;
    if (!s->i0) memset(dx, 0, rows * (size_t)H * (size_t)W * (size_t)C * sizeof(float));
    for (size_t b = 0; b < rows; b++)
        for (int oy = 0; oy < OH; oy++) {
            float sy;
            int y0, y1;
            ref_resize_coord(oy, hs, hp, H, &sy, &y0, &y1);
            const float fy = sy - (float)y0;
            float *r0 = dx + (b * (size_t)H + (size_t)y0) * (size_t)W * (size_t)C;
            float *r1 = dx + (b * (size_t)H + (size_t)y1) * (size_t)W * (size_t)C;
            for (int ox = 0; ox < OW; ox++) {
                float sx;
                int x0, x1;
                ref_resize_coord(ox, ws, hp, W, &sx, &x0, &x1);
                const float fx = sx - (float)x0;
                const float *g = dy + ((b * (size_t)OH + (size_t)oy) * (size_t)OW + (size_t)ox) * (size_t)C;
                float *a00 = r0 + (size_t)x0 * (size_t)C, *a10 = r1 + (size_t)x0 * (size_t)C;
                float *a01 = r0 + (size_t)x1 * (size_t)C, *a11 = r1 + (size_t)x1 * (size_t)C;
                for (int c = 0; c < C; c++) {
                    a00[c] += g[c] * (1 - fy) * (1 - fx);
                    a10[c] += g[c] * fy * (1 - fx);
                    a01[c] += g[c] * (1 - fy) * fx;
                    a11[c] += g[c] * fy * fx;
                }
            }
        }
    return DFD_OK;
}

/* ---- Gradient routing ------------------------------------------------------------------------- */

typedef struct bctx {
    dn_priv *d;
    dn_plan *pl;
    dn_steps *st;
    int *has;          /* per node: its gradient buffer has received a contribution */
    const int *needed; /* per node: its gradient is wanted (see dn_build_backward) */
} bctx;

/* A node's gradient has its value's type (fp32, or bf16 in mixed-precision training) and
 * the plain layout of its dimensions. */
static dnnl_data_type_t gdt(const bctx *b, int x) { return b->pl->vals[x].md.data_type; }

static int grad_md(const bctx *b, int x, dnnl_memory_desc_t *md) {
    return plain_md_dt(md, NODE(b->d, x), b->pl->batch, gdt(b, x));
}

/* The gradient of node x as a memory of layout md (plain, possibly a view of other dims). */
static int grad_mem(bctx *b, int x, const dnnl_memory_desc_t *md, dnnl_memory_t *m, dfd_error *err) {
    return dn_mem_buf(b->d, b->pl, md, dn_slot(x, DN_SLOT_DIFF), m, err);
}

/* Where a contribution to x's gradient goes: x's gradient itself when it is the first and
 * of its type, else a temporary (*tmp set; contrib_done adds or converts it). md: the
 * contribution's layout (plain, x's dimensions). */
static int contrib_begin(bctx *b, int x, const dnnl_memory_desc_t *md, dnnl_memory_t *target, dnnl_memory_t *tmp,
                         dfd_error *err) {
    *tmp = NULL;
    if (!b->has[x] && md->data_type == gdt(b, x)) return grad_mem(b, x, md, target, err);
    int rc = dn_mem_buf(b->d, b->pl, md, dn_global(b->d, DN_G_TMP0), tmp, err);
    *target = *tmp;
    return rc;
}

/* dst = src or dst += src (converting types) as a oneDNN reorder with a sum post-op: on
 * every thread, unlike a plain loop. */
static int accum_step(bctx *b, dnnl_memory_t src, dnnl_memory_t dst, int add, const char *what, dfd_error *err) {
    dnnl_primitive_attr_t attr;
    int rc = dn_attr_new(&attr, err);
    if (rc) return rc;
    if (add) {
        dnnl_post_ops_t po;
        dnnl_post_ops_create(&po);
        dnnl_post_ops_append_sum(po, 1.0f);
        dnnl_primitive_attr_set_post_ops(attr, po);
        dnnl_post_ops_destroy(po);
    }
    const dnnl_memory_desc_t *smd, *dmd;
    dnnl_memory_get_memory_desc(src, &smd);
    dnnl_memory_get_memory_desc(dst, &dmd);
    dnnl_primitive_desc_t pd;
    rc = dn_check(dnnl_reorder_primitive_desc_create(&pd, smd, b->d->eng, dmd, b->d->eng, attr), err, what, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
    rc = dn_add_prim(b->d, b->pl, b->st, pd, 2, args, err);
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* A contribution that is node `node`'s gradient itself (add, reshape, time folding): the
 * same values in plain layout, seen with x's dimensions. */
static int contrib_same(bctx *b, int node, int x, dfd_error *err) {
    dnnl_memory_desc_t vmd, gmd;
    if (plain_md_dt(&vmd, NODE(b->d, x), b->pl->batch, gdt(b, node)) || grad_md(b, x, &gmd))
        return dfd_fail(err, DFD_E_INTERNAL, "descriptor");
    dnnl_memory_t src, dst;
    int rc = dn_mem_buf(b->d, b->pl, &vmd, dn_slot(node, DN_SLOT_DIFF), &src, err);
    if (!rc) rc = grad_mem(b, x, &gmd, &dst, err);
    if (!rc) rc = accum_step(b, src, dst, b->has[x], "gradient sum", err);
    b->has[x] = 1;
    return rc;
}

static int contrib_done(bctx *b, int x, const dnnl_memory_desc_t *md, dnnl_memory_t tmp, dfd_error *err) {
    (void)md;
    int rc = DFD_OK;
    if (tmp) {
        dnnl_memory_desc_t gmd;
        dnnl_memory_t g;
        rc = grad_md(b, x, &gmd) ? dfd_fail(err, DFD_E_INTERNAL, "descriptor") : grad_mem(b, x, &gmd, &g, err);
        if (!rc) rc = accum_step(b, tmp, g, b->has[x], "gradient sum", err);
    }
    b->has[x] = 1;
    return rc;
}

/* A plain-loop contribution: fn writes (i0 = 0) or adds (i0 = 1) fp32 values into x's
 * gradient, through an fp32 temporary when that gradient is bf16. */
static int contrib_fn(bctx *b, int node, int x, dn_fn fn, int i1, dnnl_memory_t src, dfd_error *err) {
    dnnl_memory_desc_t md;
    if (plain_md(&md, NODE(b->d, x), b->pl->batch)) return dfd_fail(err, DFD_E_INTERNAL, "descriptor");
    dnnl_memory_t target, tmp = NULL;
    int rc;
    if (gdt(b, x) == dnnl_f32) { /* the loops add in place */
        rc = grad_mem(b, x, &md, &target, err);
        if (!rc) rc = dn_add_fn(b->st, fn, node, b->has[x], i1, src, target, err);
        b->has[x] = 1;
        return rc;
    }
    rc = contrib_begin(b, x, &md, &target, &tmp, err);
    if (!rc) rc = dn_add_fn(b->st, fn, node, 0, i1, src, target, err);
    if (!rc) rc = contrib_done(b, x, &md, tmp, err);
    return rc;
}

/* Accumulates a parameter gradient (layout of `src`) into p->grad (layout `user`). */
static int add_param_grad(bctx *b, dnnl_memory_t src, const dnnl_memory_desc_t *user, nn_param *p, dfd_error *err) {
    if (!p || !p->grad || !p->trainable) return DFD_OK;
    dnnl_memory_t dst;
    int rc = dn_mem_ext(b->d, b->pl, user, p->grad, &dst, err);
    return rc ? rc : accum_step(b, src, dst, 1, "gradient accumulation", err);
}

static int trainable(const nn_param *p) { return p && p->grad && p->trainable; }

static int prim(bctx *b, const void *desc, const_dnnl_primitive_desc_t hint, const nn_node *n, const char *what,
                dnnl_primitive_desc_t *pd, dfd_error *err) {
    dnnl_primitive_attr_t attr;
    int rc = dn_attr_new(&attr, err);
    if (rc) return rc;
    rc = dn_check(dnnl_primitive_desc_create(pd, desc, attr, b->d->eng, hint), err, what, n);
    dnnl_primitive_attr_destroy(attr);
    return rc;
}

static int run_prim(bctx *b, dnnl_primitive_desc_t pd, int nargs, const dnnl_exec_arg_t *args, int node,
                    dfd_error *err) {
    int rc = dn_add_prim(b->d, b->pl, b->st, pd, nargs, args, err);
    if (!rc) b->st->v[b->st->n - 1].node = node;
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* ---- Activation backward: d(pre) from d(out) ------------------------------------------------------ */

/* Eltwise / PReLU backward of node `node`'s activation (forward descriptor in hint slot
 * `hslot`) with source `src`, writing d(pre) into `dsrc`; PReLU also accumulates alpha. */
static int act_bwd(bctx *b, int node, int hslot, nn_act act, int alpha_param, const dnnl_memory_desc_t *md,
                   dnnl_memory_t src, dnnl_memory_t ddst, dnnl_memory_t dsrc, dfd_error *err) {
    dn_priv *d = b->d;
    const nn_node *n = NODE(d, node);
    const_dnnl_primitive_desc_t hint = b->pl->hint[node * 2 + hslot];
    if (!hint) return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: no forward descriptor for '%s'", n->name);
    dnnl_primitive_desc_t pd;
    int rc;
    if (act == NN_ACT_PRELU) {
        nn_param *alpha = nn_graph_param(d->g, alpha_param);
        dnnl_memory_desc_t wu, wany;
        dnnl_dims_t wd;
        for (int i = 0; i < md->ndims; i++) wd[i] = 1;
        wd[1] = md->dims[1];
        dn_md_plain(&wu, md->ndims, wd, dnnl_f32);
        dn_md_any(&wany, md->ndims, wd, dnnl_f32);
        dnnl_prelu_desc_t pdsc;
        rc = dn_check(dnnl_prelu_backward_desc_init(&pdsc, md, &wany, md, &wany), err, "PReLU backward", n);
        if (!rc) rc = prim(b, &pdsc, hint, n, "PReLU backward", &pd, err);
        if (rc) return rc;
        dnnl_memory_t wm, dw;
        rc = dn_get_weight(d, b->pl, b->st, node, 7, &wu, alpha->data, q_md(pd, DNNL_ARG_WEIGHTS), &wm, err);
        if (!rc) rc = dn_mem_buf(d, b->pl, q_md(pd, DNNL_ARG_DIFF_WEIGHTS), dn_slot(node, DN_SLOT_B2), &dw, err);
        if (rc) {
            dnnl_primitive_desc_destroy(pd);
            return rc;
        }
        dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_DST, ddst},
                                   {DNNL_ARG_DIFF_SRC, dsrc}, {DNNL_ARG_DIFF_WEIGHTS, dw}};
        rc = run_prim(b, pd, 5, args, node, err);
        if (!rc) rc = add_param_grad(b, dw, &wu, alpha, err);
        return rc;
    }
    float alpha = 1.0f, beta = 0.0f;
    dnnl_alg_kind_t alg = act == NN_ACT_NONE ? dnnl_eltwise_linear : dn_act_alg(act, &alpha, &beta);
    dnnl_eltwise_desc_t ed;
    rc = dn_check(dnnl_eltwise_backward_desc_init(&ed, alg, md, md, alpha, beta), err, "activation backward", n);
    if (!rc) rc = prim(b, &ed, hint, n, "activation backward", &pd, err);
    if (rc) return rc;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_SRC, dsrc}};
    return run_prim(b, pd, 3, args, node, err);
}

/* ---- Per op ---------------------------------------------------------------------------------------- */

static int bwd_conv(bctx *b, int id, dnnl_memory_t dy, dfd_error *err) {
    dn_priv *d = b->d;
    dn_plan *pl = b->pl;
    const nn_node *n = NODE(d, id);
    const nn_conv_attr *a = &n->a.conv;
    const dn_chain *ch = &d->chains[d->nodes[id].chain]; /* its input and padding, a zero-padding folded in */
    int in = ch->src;
    const_dnnl_primitive_desc_t hint = pl->hint[id * 2];
    if (!hint) return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: no forward descriptor for '%s'", n->name);
    /* smd: the input's gradient (its type); xmd: the input as the forward pass read it;
     * dmd: this node's value and gradient (the compute type) */
    dnnl_memory_desc_t smd, xmd, dmd, wu, wany, wdiff, bmd;
    dnnl_dims_t bd = {a->out_c};
    if (grad_md(b, in, &smd) || plain_md_dt(&xmd, NODE(d, in), pl->batch, d->adt) || grad_md(b, id, &dmd) ||
        dn_conv_weights_md(n, NODE(d, in)->shape[2], a->out_c, &wu, &wany, d->adt) ||
        dn_conv_weights_md(n, NODE(d, in)->shape[2], a->out_c, &wu, &wdiff, dnnl_f32) || dn_md_plain(&bmd, 1, bd, dnnl_f32))
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    int rc = DFD_OK;
    dnnl_memory_t g = dy;
    if (a->act != NN_ACT_NONE) { /* through the activation first, into a temporary */
        dnnl_memory_t pre, dpre;
        rc = dn_mem_buf(d, pl, &dmd, dn_slot(id, DN_SLOT_AUX0), &pre, err);
        if (!rc) rc = dn_mem_buf(d, pl, &dmd, dn_slot(id, DN_SLOT_B0), &dpre, err);
        if (!rc) rc = act_bwd(b, id, 1, a->act, n->params[2], &dmd, pre, dy, dpre, err);
        if (rc) return rc;
        g = dpre;
    }
    nn_param *K = dn_param(d, id, 0), *Bp = dn_param(d, id, 1);
    dnnl_dims_t strides = {a->sh, a->sw}, dil = {a->dh - 1, a->dw - 1}, pl_ = {ch->pad[0], ch->pad[2]},
                pr = {ch->pad[1], ch->pad[3]};
    dnnl_convolution_desc_t cd;
    dnnl_primitive_desc_t pd;
    /* d(input), unless nothing upstream wants it (the first trainable layer) */
    if (b->needed[in]) {
        rc = dn_check(dnnl_dilated_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &smd, &wany, &dmd,
                                                                       strides, dil, pl_, pr),
                      err, "convolution backward (data)", n);
        if (!rc) rc = prim(b, &cd, hint, n, "convolution backward (data)", &pd, err);
        if (rc) return rc;
        dnnl_memory_t mw, target, tmp;
        rc = dn_get_weight(d, pl, b->st, id, 0, &wu, K->data, q_md(pd, DNNL_ARG_WEIGHTS), &mw, err);
        if (!rc) rc = contrib_begin(b, in, &smd, &target, &tmp, err);
        if (rc) {
            dnnl_primitive_desc_destroy(pd);
            return rc;
        }
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, g}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DIFF_SRC, target}};
        rc = run_prim(b, pd, 3, args, id, err);
        if (!rc) rc = contrib_done(b, in, &smd, tmp, err);
    }
    if (rc || (!trainable(K) && !trainable(Bp))) return rc;
    /* d(kernel), d(bias) */
    rc = dn_check(dnnl_dilated_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &xmd, &wdiff,
                                                                      Bp ? &bmd : NULL, &dmd, strides, dil, pl_, pr),
                  err, "convolution backward (weights)", n);
    if (!rc) rc = prim(b, &cd, hint, n, "convolution backward (weights)", &pd, err);
    if (rc) return rc;
    dnnl_memory_t dw, db = NULL, mx;
    rc = dn_get_input(d, pl, b->st, in, &xmd, &mx, NULL, err); /* converted by the forward pass */
    if (!rc) rc = dn_mem_buf(d, pl, q_md(pd, DNNL_ARG_DIFF_WEIGHTS), dn_slot(id, DN_SLOT_B1), &dw, err);
    if (!rc && Bp) rc = dn_mem_buf(d, pl, &bmd, dn_slot(id, DN_SLOT_B2), &db, err);
    if (rc) {
        dnnl_primitive_desc_destroy(pd);
        return rc;
    }
    dnnl_exec_arg_t wargs[4] = {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DIFF_DST, g},
                                {DNNL_ARG_DIFF_WEIGHTS, dw}, {DNNL_ARG_DIFF_BIAS, db}};
    rc = run_prim(b, pd, db ? 4 : 3, wargs, id, err);
    if (!rc) rc = add_param_grad(b, dw, &wu, K, err);
    if (!rc && db) rc = add_param_grad(b, db, &bmd, Bp, err);
    return rc;
}

/* Our fused batch-norm (+ activation) backward: d(x) written or added (i0) into m1 (NULL:
 * not wanted), d(gamma), d(beta) added to the parameters' gradients. i1: the node whose
 * value the forward step produced (the batch-norm or its activation), m0: x as it read it. */
static int fn_bnact_bwd(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err) {
    nn_bnact_desc bd;
    if (dn_bnact_desc(d, pl, s->node, &bd)) return dfd_fail(err, DFD_E_INTERNAL, "batch-norm: data type");
    float *mean, *var;
    dn_bnact_stats(d, s->node, bd.batch_stats, &mean, &var);
    nn_param *gamma = dn_param(d, s->node, 0), *beta = dn_param(d, s->node, 1);
    float *dg = d->bufs[dn_slot(s->node, DN_SLOT_B1)].p, *db = d->bufs[dn_slot(s->node, DN_SLOT_B2)].p;
    const int cap = d->threads > 0 ? d->threads : 1;
    nn_bnact_backward(&bd, mem_ptr(s->m0), d->bufs[dn_slot(s->i1, DN_SLOT_DIFF)].p, s->m1 ? mem_ptr(s->m1) : NULL,
                      s->i0, gamma ? gamma->data : NULL, beta ? beta->data : NULL, mean, var, dg, db,
                      d->bufs[dn_slot(s->node, DN_SLOT_AUX2)].p, dn_bnact_threads(cap));
    if (trainable(gamma))
        for (int c = 0; c < bd.C; c++) gamma->grad[c] += dg[c];
    if (trainable(beta))
        for (int c = 0; c < bd.C; c++) beta->grad[c] += db[c];
    return DFD_OK;
}

/* Training batch-norm `bn` whose fused step produced node `out` (itself or its activation),
 * dy: d(loss)/d(out). x's gradient has x's type, as does dy: the kernel adds into it. */
static int bwd_bnact(bctx *b, int bn, int out, dfd_error *err) {
    dn_priv *d = b->d;
    dn_plan *pl = b->pl;
    const nn_node *n = NODE(d, bn);
    const int in = n->inputs[0];
    nn_bnact_desc bd;
    if (dn_bnact_desc(d, pl, bn, &bd) || gdt(b, in) != gdt(b, out) || gdt(b, out) != pl->vals[in].md.data_type)
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: batch-norm '%s': gradient types", n->name);
    dnnl_memory_desc_t xmd, cmd;
    dnnl_dims_t cd = {bd.C};
    if (grad_md(b, in, &xmd) || dn_md_plain(&cmd, 1, cd, dnnl_f32))
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    dnnl_memory_t mx, target = NULL;
    int rc = dn_get_input(d, pl, b->st, in, &xmd, &mx, NULL, err); /* converted by the forward pass */
    if (!rc) rc = dn_buf_need(d, dn_slot(bn, DN_SLOT_B1), (size_t)bd.C * sizeof(float), err);
    if (!rc) rc = dn_buf_need(d, dn_slot(bn, DN_SLOT_B2), (size_t)bd.C * sizeof(float), err);
    if (!rc && b->needed[in]) rc = grad_mem(b, in, &xmd, &target, err);
    if (!rc) rc = dn_add_fn(b->st, fn_bnact_bwd, bn, target ? b->has[in] : 0, out, mx, target, err);
    if (!rc && target) b->has[in] = 1;
    return rc;
}

static int bwd_act(bctx *b, int id, dnnl_memory_t dy, dfd_error *err) {
    const nn_node *n = NODE(b->d, id);
    int in = n->inputs[0];
    dnnl_memory_desc_t md;
    if (grad_md(b, id, &md)) return dfd_fail(err, DFD_E_INTERNAL, "descriptor");
    dnnl_memory_t target, tmp;
    int rc = contrib_begin(b, in, &md, &target, &tmp, err);
    if (!rc) rc = act_bwd(b, id, 0, n->a.act.act, n->params[0], &md, b->pl->vals[in].mem, dy, target, err);
    if (!rc) rc = contrib_done(b, in, &md, tmp, err);
    return rc;
}

static int bwd_pool(bctx *b, int id, dnnl_memory_t dy, int global, dfd_error *err) {
    dn_priv *d = b->d;
    dn_plan *pl = b->pl;
    const nn_node *n = NODE(d, id);
    int in = n->inputs[0];
    const_dnnl_primitive_desc_t hint = pl->hint[id * 2];
    if (!hint) return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: no forward descriptor for '%s'", n->name);
    dnnl_memory_desc_t smd, dmd;
    if (grad_md(b, in, &smd)) return dfd_fail(err, DFD_E_INTERNAL, "descriptor");
    const int nd = smd.ndims, ns = nd - 2;
    dnnl_dims_t strides, kernel, pl_ = {0, 0, 0}, pr = {0, 0, 0}, dd;
    dnnl_alg_kind_t alg = dnnl_pooling_avg_exclude_padding;
    dnnl_memory_t g = dy;
    if (global) {
        dd[0] = smd.dims[0];
        dd[1] = smd.dims[1];
        for (int i = 0; i < ns; i++) {
            dd[2 + i] = 1;
            kernel[i] = strides[i] = smd.dims[2 + i];
        }
        dnnl_memory_desc_t v;
        dn_md_plain(&v, nd, dd, dnnl_f32);
        dn_md_plain(&dmd, nd, dd, smd.data_type);
        /* the {N,C} fp32 gradient seen as {N,C,1,1}, in the input's type */
        int rc = dn_mem_buf(d, pl, &v, dn_slot(id, DN_SLOT_DIFF), &g, err);
        if (!rc && smd.data_type != dnnl_f32) {
            dnnl_memory_t g2;
            rc = dn_mem_buf(d, pl, &dmd, dn_slot(id, DN_SLOT_B0), &g2, err);
            if (!rc) rc = dn_add_reorder(d, pl, b->st, g, g2, err);
            g = g2;
        }
        if (rc) return rc;
    } else {
        const nn_pool_attr *a = &n->a.pool;
        grad_md(b, id, &dmd);
        strides[0] = a->sh, strides[1] = a->sw, kernel[0] = a->kh, kernel[1] = a->kw;
        pl_[0] = a->pad_t, pl_[1] = a->pad_l, pr[0] = a->pad_b, pr[1] = a->pad_r;
        if (n->op == NN_OP_MAXPOOL) alg = dnnl_pooling_max;
    }
    dnnl_pooling_desc_t pdsc;
    dnnl_primitive_desc_t pd;
    int rc = dn_check(dnnl_pooling_backward_desc_init(&pdsc, alg, &smd, &dmd, strides, kernel, pl_, pr), err,
                      "pooling backward", n);
    if (!rc) rc = prim(b, &pdsc, hint, n, "pooling backward", &pd, err);
    if (rc) return rc;
    dnnl_memory_t target, tmp, ws = NULL;
    rc = contrib_begin(b, in, &smd, &target, &tmp, err);
    const dnnl_memory_desc_t *wmd = q_md(pd, DNNL_ARG_WORKSPACE);
    if (!rc && wmd && wmd->ndims > 0) rc = dn_mem_buf(d, pl, wmd, dn_slot(id, DN_SLOT_AUX0), &ws, err);
    if (rc) {
        dnnl_primitive_desc_destroy(pd);
        return rc;
    }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, g}, {DNNL_ARG_DIFF_SRC, target}, {DNNL_ARG_WORKSPACE, ws}};
    rc = run_prim(b, pd, ws ? 3 : 2, args, id, err);
    if (!rc) rc = contrib_done(b, in, &smd, tmp, err);
    return rc;
}

static int bwd_dense(bctx *b, int id, dfd_error *err) {
    dn_priv *d = b->d;
    dn_plan *pl = b->pl;
    const nn_node *n = NODE(d, id);
    int in = n->inputs[0];
    const nn_node *xn = NODE(d, in);
    const_dnnl_primitive_desc_t hint = pl->hint[id * 2];
    if (!hint) return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: no forward descriptor for '%s'", n->name);
    const dnnl_dim_t CI = xn->shape[xn->ndim - 1], U = n->a.dense.units;
    const dnnl_dim_t rows = (dnnl_dim_t)pl->batch * xn->batch_mul * (dnnl_dim_t)(nn_node_size(xn) / (size_t)CI);
    const dnnl_data_type_t dt = d->adt;
    /* src2: the input as the forward pass read it ({rows, CI}, compute type); dsrc2/sfull:
     * the input's gradient; dst2: the output and its fp32 gradient; ddst2: that gradient in
     * the compute type (bf16 inner products take bf16 gradients). */
    dnnl_memory_desc_t src2, dsrc2, wu, wany, wdiff, bmd, dst2, ddst2, sfull, xfull;
    dnnl_dims_t sdims = {rows, CI}, wdims = {U, CI}, ddims = {rows, U}, bdims = {U};
    if (dn_md_plain(&src2, 2, sdims, dt) || dn_md_plain(&dsrc2, 2, sdims, gdt(b, in)) ||
        dnnl_memory_desc_init_by_tag(&wu, 2, wdims, dnnl_f32, dnnl_io) || dn_md_any(&wany, 2, wdims, dt) ||
        dn_md_any(&wdiff, 2, wdims, dnnl_f32) || dn_md_plain(&bmd, 1, bdims, dnnl_f32) ||
        dn_md_plain(&dst2, 2, ddims, dnnl_f32) || dn_md_plain(&ddst2, 2, ddims, dt) || grad_md(b, in, &sfull) ||
        plain_md_dt(&xfull, xn, pl->batch, dt))
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    nn_param *K = dn_param(d, id, 0), *Bp = dn_param(d, id, 1);
    dnnl_memory_t g;
    int rc = dn_mem_buf(d, pl, &dst2, dn_slot(id, DN_SLOT_DIFF), &g, err);
    if (rc) return rc;
    if (n->a.dense.act != NN_ACT_NONE) {
        dnnl_memory_t pre, dpre;
        rc = dn_mem_buf(d, pl, &dst2, dn_slot(id, DN_SLOT_AUX0), &pre, err);
        if (!rc) rc = dn_mem_buf(d, pl, &dst2, dn_slot(id, DN_SLOT_B0), &dpre, err);
        if (!rc) rc = act_bwd(b, id, 1, n->a.dense.act, n->params[2], &dst2, pre, g, dpre, err);
        if (rc) return rc;
        g = dpre;
    }
    if (dt != dnnl_f32) {
        dnnl_memory_t g2;
        rc = dn_mem_buf(d, pl, &ddst2, dn_slot(id, DN_SLOT_B3), &g2, err);
        if (!rc) rc = dn_add_reorder(d, pl, b->st, g, g2, err);
        if (rc) return rc;
        g = g2;
    }
    dnnl_inner_product_desc_t ipd;
    dnnl_primitive_desc_t pd;
    rc = dn_check(dnnl_inner_product_backward_data_desc_init(&ipd, &dsrc2, &wany, &ddst2), err, "dense backward (data)",
                  n);
    if (!rc) rc = prim(b, &ipd, hint, n, "dense backward (data)", &pd, err);
    if (rc) return rc;
    dnnl_memory_t mw, target, tmp, target2;
    rc = dn_get_weight(d, pl, b->st, id, 0, &wu, K->data, q_md(pd, DNNL_ARG_WEIGHTS), &mw, err);
    if (!rc) rc = contrib_begin(b, in, &sfull, &target, &tmp, err);
    if (!rc) /* the same bytes as {rows, CI} */
        rc = dn_mem_buf(d, pl, &dsrc2, tmp ? dn_global(d, DN_G_TMP0) : dn_slot(in, DN_SLOT_DIFF), &target2, err);
    if (rc) {
        dnnl_primitive_desc_destroy(pd);
        return rc;
    }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, g}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DIFF_SRC, target2}};
    rc = run_prim(b, pd, 3, args, id, err);
    if (!rc) rc = contrib_done(b, in, &sfull, tmp, err);
    if (rc || (!trainable(K) && !trainable(Bp))) return rc;
    rc = dn_check(dnnl_inner_product_backward_weights_desc_init(&ipd, &src2, &wdiff, Bp ? &bmd : NULL, &ddst2), err,
                  "dense backward (weights)", n);
    if (!rc) rc = prim(b, &ipd, hint, n, "dense backward (weights)", &pd, err);
    if (rc) return rc;
    dnnl_memory_t mx, msrc, dw, db = NULL;
    int sbuf = -1;
    rc = dn_get_input(d, pl, b->st, in, &xfull, &mx, &sbuf, err); /* as the forward pass read it */
    if (!rc) rc = dn_mem_buf(d, pl, &src2, sbuf, &msrc, err);
    if (!rc) rc = dn_mem_buf(d, pl, q_md(pd, DNNL_ARG_DIFF_WEIGHTS), dn_slot(id, DN_SLOT_B1), &dw, err);
    if (!rc && Bp) rc = dn_mem_buf(d, pl, &bmd, dn_slot(id, DN_SLOT_B2), &db, err);
    if (rc) {
        dnnl_primitive_desc_destroy(pd);
        return rc;
    }
    dnnl_exec_arg_t wargs[4] = {{DNNL_ARG_SRC, msrc}, {DNNL_ARG_DIFF_DST, g}, {DNNL_ARG_DIFF_WEIGHTS, dw},
                                {DNNL_ARG_DIFF_BIAS, db}};
    rc = run_prim(b, pd, db ? 4 : 3, wargs, id, err);
    if (!rc) rc = add_param_grad(b, dw, &wu, K, err);
    if (!rc && db) rc = add_param_grad(b, db, &bmd, Bp, err);
    return rc;
}

static int bwd_lstm(bctx *b, int id, dfd_error *err) {
    dn_priv *d = b->d;
    dn_plan *pl = b->pl;
    const nn_node *n = NODE(d, id);
    int in = n->inputs[0];
    const nn_node *xn = NODE(d, in);
    const_dnnl_primitive_desc_t hint = pl->hint[id * 2];
    if (!hint) return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: no forward descriptor for '%s'", n->name);
    const dnnl_dim_t N = (dnnl_dim_t)pl->batch * n->batch_mul, T = xn->shape[0], C = xn->shape[1], U = n->a.lstm.units;
    const int rs = n->a.lstm.return_sequences;
    dnnl_memory_desc_t sl, wlu, wiu, bu, wla, wia, ba, dl, di, sfull;
    dnnl_dims_t sld = {T, N, C}, wld = {1, 1, C, 4, U}, wid = {1, 1, U, 4, U}, bd = {1, 1, 4, U}, dld = {T, N, U},
                did = {1, 1, N, U};
    if (dnnl_memory_desc_init_by_tag(&sl, 3, sld, dnnl_f32, dnnl_ntc) ||
        dnnl_memory_desc_init_by_tag(&wlu, 5, wld, dnnl_f32, dnnl_ldigo) ||
        dnnl_memory_desc_init_by_tag(&wiu, 5, wid, dnnl_f32, dnnl_ldigo) ||
        dnnl_memory_desc_init_by_tag(&bu, 4, bd, dnnl_f32, dnnl_ldgo) ||
        dnnl_memory_desc_init_by_tag(&wla, 5, wld, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&wia, 5, wid, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&ba, 4, bd, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&dl, 3, dld, dnnl_f32, dnnl_ntc) ||
        dnnl_memory_desc_init_by_tag(&di, 4, did, dnnl_f32, dnnl_ldnc) || plain_md(&sfull, xn, pl->batch))
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: descriptor");
    dnnl_rnn_desc_t rd;
    dnnl_primitive_desc_t pd;
    int rc = dn_check(dnnl_lstm_backward_desc_init(&rd, dnnl_backward, dnnl_unidirectional_left2right, &sl, NULL, NULL,
                                                   &wla, &wia, &bu, &dl, &di, &di, &sl, NULL, NULL, &wla, &wia, &ba,
                                                   &dl, &di, &di, 0),
                      err, "LSTM backward", n);
    if (!rc) rc = prim(b, &rd, hint, n, "LSTM backward", &pd, err);
    if (rc) return rc;
    dnnl_memory_t mx, msl, mwl, mwi, mb, mdl, mdi, mdc, mws, ddl, ddi, ddc, target, tmp, tsl, dwl, dwi, dbias;
    int sbuf = -1;
    rc = dn_get_input(d, pl, b->st, in, &sfull, &mx, &sbuf, err); /* fp32, as the forward pass read it */
    if (!rc) rc = dn_mem_buf(d, pl, &sl, sbuf, &msl, err);
    if (!rc) rc = dn_get_weight(d, pl, b->st, id, 0, &wlu, dn_param(d, id, 0)->data, q_md(pd, DNNL_ARG_WEIGHTS_LAYER), &mwl, err);
    if (!rc) rc = dn_get_weight(d, pl, b->st, id, 1, &wiu, dn_param(d, id, 1)->data, q_md(pd, DNNL_ARG_WEIGHTS_ITER), &mwi, err);
    if (!rc) rc = dn_get_weight(d, pl, b->st, id, 2, &bu, dn_param(d, id, 2)->data, q_md(pd, DNNL_ARG_BIAS), &mb, err);
    if (!rc) rc = dn_mem_buf(d, pl, &dl, dn_slot(id, rs ? DN_SLOT_VAL : DN_SLOT_AUX2), &mdl, err);
    if (!rc) rc = dn_mem_buf(d, pl, &di, dn_slot(id, rs ? DN_SLOT_AUX0 : DN_SLOT_VAL), &mdi, err);
    if (!rc) rc = dn_mem_buf(d, pl, &di, dn_slot(id, DN_SLOT_AUX1), &mdc, err);
    if (!rc) rc = dn_mem_buf(d, pl, q_md(pd, DNNL_ARG_WORKSPACE), dn_slot(id, DN_SLOT_AUX3), &mws, err);
    /* d(loss)/d(h_t) for every t (sequences) or d(loss)/d(h_T) (last): the other ones are zero */
    if (!rc) rc = dn_mem_buf(d, pl, &dl, rs ? dn_slot(id, DN_SLOT_DIFF) : dn_slot(id, DN_SLOT_B3), &ddl, err);
    if (!rc) rc = dn_mem_buf(d, pl, &di, rs ? dn_slot(id, DN_SLOT_B3) : dn_slot(id, DN_SLOT_DIFF), &ddi, err);
    if (!rc) rc = dn_mem_buf(d, pl, &di, dn_slot(id, DN_SLOT_B4), &ddc, err);
    if (!rc) rc = dn_add_fn(b->st, fn_zero, id, 0, 0, NULL, rs ? ddi : ddl, err);
    if (!rc) rc = dn_add_fn(b->st, fn_zero, id, 0, 0, NULL, ddc, err);
    /* oneDNN accumulates into the weight gradients: start them at zero */
    if (!rc) rc = dn_mem_buf(d, pl, q_md(pd, DNNL_ARG_DIFF_WEIGHTS_LAYER), dn_slot(id, DN_SLOT_B0), &dwl, err);
    if (!rc) rc = dn_mem_buf(d, pl, q_md(pd, DNNL_ARG_DIFF_WEIGHTS_ITER), dn_slot(id, DN_SLOT_B1), &dwi, err);
    if (!rc) rc = dn_mem_buf(d, pl, q_md(pd, DNNL_ARG_DIFF_BIAS), dn_slot(id, DN_SLOT_B2), &dbias, err);
    if (!rc) rc = dn_add_fn(b->st, fn_zero, id, 0, 0, NULL, dwl, err);
    if (!rc) rc = dn_add_fn(b->st, fn_zero, id, 0, 0, NULL, dwi, err);
    if (!rc) rc = dn_add_fn(b->st, fn_zero, id, 0, 0, NULL, dbias, err);
    if (!rc) rc = contrib_begin(b, in, &sfull, &target, &tmp, err);
    if (!rc) rc = dn_mem_buf(d, pl, &sl, tmp ? dn_global(d, DN_G_TMP0) : dn_slot(in, DN_SLOT_DIFF), &tsl, err);
    if (rc) {
        dnnl_primitive_desc_destroy(pd);
        return rc;
    }
    dnnl_exec_arg_t args[18] = {
        {DNNL_ARG_SRC_LAYER, msl},          {DNNL_ARG_WEIGHTS_LAYER, mwl},       {DNNL_ARG_WEIGHTS_ITER, mwi},
        {DNNL_ARG_BIAS, mb},                {DNNL_ARG_DST_LAYER, mdl},           {DNNL_ARG_DST_ITER, mdi},
        {DNNL_ARG_DST_ITER_C, mdc},         {DNNL_ARG_WORKSPACE, mws},           {DNNL_ARG_DIFF_DST_LAYER, ddl},
        {DNNL_ARG_DIFF_DST_ITER, ddi},      {DNNL_ARG_DIFF_DST_ITER_C, ddc},     {DNNL_ARG_DIFF_SRC_LAYER, tsl},
        {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwl}, {DNNL_ARG_DIFF_WEIGHTS_ITER, dwi},   {DNNL_ARG_DIFF_BIAS, dbias}};
    rc = run_prim(b, pd, 15, args, id, err);
    if (!rc) rc = contrib_done(b, in, &sfull, tmp, err);
    if (!rc) rc = add_param_grad(b, dwl, &wlu, dn_param(d, id, 0), err);
    if (!rc) rc = add_param_grad(b, dwi, &wiu, dn_param(d, id, 1), err);
    if (!rc) rc = add_param_grad(b, dbias, &bu, dn_param(d, id, 2), err);
    return rc;
}

/* ---- The plan ------------------------------------------------------------------------------------------ */

int dn_build_backward(dn_priv *d, dn_plan *pl, dfd_error *err) {
    int *has = calloc((size_t)d->n, sizeof *has), *needed = calloc((size_t)d->n, sizeof *needed);
    if (!has || !needed) {
        free(has), free(needed);
        return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory");
    }
    /* needed[id]: the node's gradient leads to a trainable parameter (at it or upstream),
     * or to the input when its gradient is wanted. Nodes come in topological order. */
    for (int id = 0; id < d->n; id++) {
        const nn_node *n = NODE(d, id);
        needed[id] = n->op == NN_OP_INPUT ? !d->ex->opts.no_input_grad : 0;
        for (int k = 0; k < 4; k++)
            if (n->params[k] >= 0 && trainable(nn_graph_param(d->g, n->params[k]))) needed[id] = 1;
        for (int k = 0; k < n->n_inputs; k++)
            if (needed[n->inputs[k]]) needed[id] = 1;
    }
    bctx b = {d, pl, &pl->bwd, has, needed};
    int rc = DFD_OK;
    d->building_bwd = 1;
    /* The caller's gradients of the outputs come first. */
    for (int o = 0; !rc && o < nn_graph_output_count(d->g); o++) {
        int x = nn_graph_output(d->g, o);
        dnnl_memory_desc_t md;
        dnnl_memory_t g;
        if (grad_md(&b, x, &md)) rc = dfd_fail(err, DFD_E_INTERNAL, "descriptor");
        if (!rc) rc = grad_mem(&b, x, &md, &g, err);
        if (!rc) rc = dn_add_fn(b.st, fn_out_grad, x, o, has[x], NULL, g, err);
        has[x] = 1;
    }
    for (int id = d->n - 1; !rc && id >= 0; id--) {
        const nn_node *n = NODE(d, id);
        if (!has[id] || n->op == NN_OP_INPUT) continue; /* no gradient reaches it */
        if (!needed[id]) continue;                       /* nothing it would reach is wanted */
        dnnl_memory_desc_t md;
        dnnl_memory_t dy;
        if (grad_md(&b, id, &md)) rc = dfd_fail(err, DFD_E_INTERNAL, "descriptor");
        if (!rc) rc = grad_mem(&b, id, &md, &dy, err);
        if (rc) break;
        int in = n->n_inputs > 0 ? n->inputs[0] : -1;
        switch (n->op) {
        case NN_OP_CONV2D: rc = bwd_conv(&b, id, dy, err); break;
        case NN_OP_BATCHNORM: rc = bwd_bnact(&b, id, id, err); break;
        case NN_OP_ACT:
            rc = d->nodes[id].act_bn >= 0 ? bwd_bnact(&b, d->nodes[id].act_bn, id, err) : bwd_act(&b, id, dy, err);
            break;
        case NN_OP_MAXPOOL:
        case NN_OP_AVGPOOL: rc = bwd_pool(&b, id, dy, 0, err); break;
        case NN_OP_GAP: rc = bwd_pool(&b, id, dy, 1, err); break;
        case NN_OP_DENSE: rc = bwd_dense(&b, id, err); break;
        case NN_OP_LSTM: rc = bwd_lstm(&b, id, err); break;
        case NN_OP_DROPOUT: rc = contrib_fn(&b, id, in, fn_dropout_bwd, 0, dy, err); break;
        case NN_OP_ADD:
            rc = contrib_same(&b, id, n->inputs[0], err);
            if (!rc) rc = contrib_same(&b, id, n->inputs[1], err);
            break;
        case NN_OP_CONCAT:
            for (int k = 0; !rc && k < n->n_inputs; k++) rc = contrib_fn(&b, id, n->inputs[k], fn_concat_bwd, k, dy, err);
            break;
        case NN_OP_PAD: rc = contrib_fn(&b, id, in, fn_pad_bwd, 0, dy, err); break;
        case NN_OP_RESHAPE:
        case NN_OP_FOLD_TIME:
        case NN_OP_UNFOLD_TIME: rc = contrib_same(&b, id, in, err); break;
        case NN_OP_RESIZE: rc = contrib_fn(&b, id, in, fn_resize_bwd, 0, dy, err); break;
        default:
            rc = dfd_fail(err, DFD_E_UNSUPPORTED, "oneDNN backend: no backward for op %d ('%s')", (int)n->op, n->name);
        }
    }
    int x = nn_graph_input(d->g);
    if (!rc && !has[x]) { /* nothing reaches the input: its gradient is zero */
        dnnl_memory_desc_t md;
        dnnl_memory_t g;
        if (grad_md(&b, x, &md)) rc = dfd_fail(err, DFD_E_INTERNAL, "descriptor");
        if (!rc) rc = grad_mem(&b, x, &md, &g, err);
        if (!rc) rc = dn_add_fn(b.st, fn_zero, x, 0, 0, NULL, g, err);
    }
    d->building_bwd = 0;
    free(has);
    free(needed);
    return rc;
}

int dn_backward(nn_exec *ex, const float *const *d_outputs, dfd_error *err) {
    dn_priv *d = ex->priv;
    dn_plan *pl = d->cur;
    if (!pl) return dfd_fail(err, DFD_E_ARG, "nn_backward before a successful forward pass");
    if (!pl->bwd_built) {
        int rc = dn_build_backward(d, pl, err);
        if (rc) {
            /* drop the half-built steps so that a later call starts over */
            for (int i = 0; i < pl->bwd.n; i++)
                if (pl->bwd.v[i].prim) dnnl_primitive_destroy(pl->bwd.v[i].prim), free(pl->bwd.v[i].args);
            pl->bwd.n = 0;
            return rc;
        }
        pl->bwd_built = 1;
    }
    /* building may have grown buffers: re-point every plan's memories */
    if (pl->gen != d->gen) dn_plan_rebind(d, pl);
    d->cur_douts = d_outputs;
    int rc = dn_run_steps(d, pl, &pl->bwd, err);
    d->cur_douts = NULL;
    return rc;
}

const float *dn_input_grad(const nn_exec *ex) {
    const dn_priv *d = ex->priv;
    if (!d->cur || !d->cur->bwd_built) return NULL;
    return d->bufs[dn_slot(nn_graph_input(d->g), DN_SLOT_DIFF)].p;
}

const float *dn_node_grad(const nn_exec *ex, int node) {
    const dn_priv *d = ex->priv;
    if (!d->cur || !d->cur->bwd_built) return NULL;
    /* Every node has a DIFF buffer of its own (never shared), which the backward pass of
     * its consumers fills in plain fp32; a node the pass never reached has none. */
    const nn_node *n = nn_graph_node(d->g, node);
    const dn_buf *b = &d->bufs[dn_slot(node, DN_SLOT_DIFF)];
    size_t need = (size_t)d->cur->batch * (size_t)n->batch_mul * nn_node_size(n) * sizeof(float);
    return b->p && b->size >= need ? b->p : NULL;
}
