/*
 * ref.c — the reference backend's set-up and forward pass: plain loops over the nn.h
 * layouts, written to be obviously correct rather than fast. It is the yardstick the
 * oneDNN backend is compared against node by node, and it runs the gradient checks.
 * The backward pass is in ref_backward.c.
 */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "nn/ref_internal.h"

/* ---- Set-up ----------------------------------------------------------------------- */

static void ref_destroy(nn_exec *ex) {
    ref_priv *P = ex->priv;
    if (!P) return;
    for (int i = 0; i < P->n_nodes; i++) {
        ref_node *r = &P->nodes[i];
        free(r->out);
        free(r->pre);
        free(r->grad);
        free(r->mask);
        free(r->bn_mean);
        free(r->bn_invstd);
        free(r->lstm);
        free(r->work);
    }
    free(P->nodes);
    free(P->scratch);
    free(P->acc);
    free(P);
    ex->priv = NULL;
}

static int ref_create(nn_exec *ex, dfd_error *err) {
    nn_graph *g = ex->g;
    int n = nn_graph_node_count(g);
    ref_priv *P = calloc(1, sizeof *P);
    if (!P) return dfd_fail(err, DFD_E_NOMEM, "no memory for the reference backend");
    ex->priv = P;
    P->nodes = calloc((size_t)n, sizeof *P->nodes);
    if (!P->nodes) goto nomem;
    P->n_nodes = n;
    int train = ex->opts.training;
    int max_c = 1;
    for (int i = 0; i < n; i++) {
        const nn_node *nd = nn_graph_node(g, i);
        ref_node *r = &P->nodes[i];
        size_t rows = ref_rows(nd, ex->opts.max_batch), elems;
        if (nd->ndim > 0 && nd->shape[nd->ndim - 1] > max_c) max_c = nd->shape[nd->ndim - 1];
        if (dfd_mul_size(rows, nn_node_size(nd), &elems)) goto toolarge;
        r->out = dfd_malloc_array(elems, sizeof(float));
        if (!r->out) goto nomem;
        if (train) {
            r->grad = dfd_malloc_array(elems, sizeof(float));
            if (!r->grad) goto nomem;
            if (elems > P->scratch_n) P->scratch_n = elems;
        }
        nn_act fused = nd->op == NN_OP_CONV2D ? nd->a.conv.act : nd->op == NN_OP_DENSE ? nd->a.dense.act : NN_ACT_NONE;
        if (train && fused != NN_ACT_NONE) {
            r->pre = dfd_malloc_array(elems, sizeof(float));
            if (!r->pre) goto nomem;
        }
        if (train && nd->op == NN_OP_DROPOUT) {
            r->mask = dfd_malloc_array(elems, 1);
            if (!r->mask) goto nomem;
        }
        if (nd->op == NN_OP_BATCHNORM) {
            size_t C = (size_t)nd->shape[nd->ndim - 1];
            r->bn_mean = dfd_malloc_array(C, sizeof(float));
            r->bn_invstd = dfd_malloc_array(C, sizeof(float));
            if (!r->bn_mean || !r->bn_invstd) goto nomem;
        }
        if (nd->op == NN_OP_LSTM) {
            const nn_node *x = nn_graph_node(g, nd->inputs[0]);
            size_t U = (size_t)nd->a.lstm.units, T = (size_t)x->shape[0], st;
            if (dfd_mul3_size(rows, T, 6 * U, &st)) goto toolarge;
            r->lstm = dfd_malloc_array(st, sizeof(float));
            r->work = dfd_malloc_array(6 * U, sizeof(float));
            if (!r->lstm || !r->work) goto nomem;
        }
    }
    if (train) {
        P->scratch = dfd_malloc_array(P->scratch_n, sizeof(float));
        if (!P->scratch) goto nomem;
    }
    P->acc = dfd_malloc_array((size_t)max_c, sizeof(double));
    if (!P->acc) goto nomem;
    return DFD_OK;
nomem:
    ref_destroy(ex);
    return dfd_fail(err, DFD_E_NOMEM, "no memory for the reference backend's activations (max batch %d)",
                    ex->opts.max_batch);
toolarge:
    ref_destroy(ex);
    return dfd_fail(err, DFD_E_LIMIT, "activations too large for max batch %d", ex->opts.max_batch);
}

/* Parameters are read at every pass: nothing to refresh. */
static int ref_refresh(nn_exec *ex, dfd_error *err) {
    (void)ex;
    (void)err;
    return DFD_OK;
}

/* ---- Forward, op by op ---------------------------------------------------------------- */

/* Applies a fused activation over rows x C values: out = act(pre). */
static void apply_act(nn_act act, const float *alpha, const float *pre, float *out, size_t rows, int C) {
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) {
            size_t i = r * (size_t)C + (size_t)c;
            out[i] = ref_act(act, pre[i], alpha ? alpha[c] : 0.0f);
        }
}

/* A layer with a fused activation writes its linear result into `lin`: the pre-activation
 * buffer when training (backward needs it), else the output itself. */
static float *linear_target(ref_node *r, nn_act act) { return act != NN_ACT_NONE && r->pre ? r->pre : r->out; }

static void finish_act(const nn_exec *ex, const nn_node *n, ref_node *r, nn_act act, size_t rows) {
    if (act == NN_ACT_NONE) return;
    nn_param *alpha = ref_param(ex, n, 2);
    int C = n->shape[n->ndim - 1];
    size_t count = rows * nn_node_size(n) / (size_t)C;
    apply_act(act, alpha ? alpha->data : NULL, linear_target(r, act), r->out, count, C);
}

/* Convolution, one output pixel at a time: every kernel tap adds x * K[tap][ci][:] to
 * the pixel's output channels (a contiguous row of the Keras kernel, which keeps the inner
 * loop simple and fast enough for tests on real architectures). Accumulates in double. */
static void fwd_conv(const nn_exec *ex, const nn_node *n, const nn_node *xn, const float *x, ref_node *r,
                     size_t rows) {
    const nn_conv_attr *a = &n->a.conv;
    const int H = xn->shape[0], W = xn->shape[1], C = xn->shape[2];
    const int OH = n->shape[0], OW = n->shape[1], CO = a->out_c;
    const int cig = C / a->groups, cog = CO / a->groups;
    const float *K = ref_param(ex, n, 0)->data; /* {KH,KW,cig,CO} */
    nn_param *bp = ref_param(ex, n, 1);
    double *acc = ((ref_priv *)ex->priv)->acc;
    float *y = linear_target(r, a->act);
    for (size_t b = 0; b < rows; b++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                for (int co = 0; co < CO; co++) acc[co] = bp ? bp->data[co] : 0.0;
                for (int ky = 0; ky < a->kh; ky++) {
                    int iy = oy * a->sh - a->pad_t + ky * a->dh;
                    if (iy < 0 || iy >= H) continue; /* zero padding */
                    for (int kx = 0; kx < a->kw; kx++) {
                        int ix = ox * a->sw - a->pad_l + kx * a->dw;
                        if (ix < 0 || ix >= W) continue;
                        const float *xp = x + ((b * (size_t)H + (size_t)iy) * (size_t)W + (size_t)ix) * (size_t)C;
                        const float *kt = K + (size_t)(ky * a->kw + kx) * (size_t)cig * (size_t)CO;
                        for (int g = 0; g < a->groups; g++)
                            for (int ci = 0; ci < cig; ci++) {
                                const double xv = xp[g * cig + ci];
                                const float *kr = kt + (size_t)ci * (size_t)CO + (size_t)(g * cog);
                                double *ac = acc + g * cog;
                                for (int j = 0; j < cog; j++) ac[j] += xv * kr[j];
                            }
                    }
                }
                float *yp = y + ((b * (size_t)OH + (size_t)oy) * (size_t)OW + (size_t)ox) * (size_t)CO;
                for (int co = 0; co < CO; co++) yp[co] = (float)acc[co];
            }
    finish_act(ex, n, r, a->act, rows);
}

static void fwd_batchnorm(const nn_exec *ex, const nn_node *n, const float *x, ref_node *r, size_t rows) {
    const int C = n->shape[n->ndim - 1];
    const size_t M = rows * nn_node_size(n) / (size_t)C; /* values per channel */
    float *gamma = ref_param(ex, n, 0)->data, *beta = ref_param(ex, n, 1)->data;
    nn_param *mm = ref_param(ex, n, 2), *mv = ref_param(ex, n, 3);
    const float eps = n->a.bn.eps, mom = n->a.bn.momentum;
    if (ref_bn_batch_stats(ex, n)) {
        for (int c = 0; c < C; c++) {
            double s = 0, s2 = 0;
            for (size_t i = 0; i < M; i++) s += x[i * (size_t)C + (size_t)c];
            double mean = s / (double)M;
            for (size_t i = 0; i < M; i++) {
                double d = x[i * (size_t)C + (size_t)c] - mean;
                s2 += d * d;
            }
            double var = s2 / (double)M; /* biased, as Keras normalises with */
            r->bn_mean[c] = (float)mean;
            r->bn_invstd[c] = (float)(1.0 / sqrt(var + eps));
            /* Keras: moving = moving * momentum + batch * (1 - momentum). */
            mm->data[c] = (float)(mm->data[c] * (double)mom + mean * (1.0 - (double)mom));
            mv->data[c] = (float)(mv->data[c] * (double)mom + var * (1.0 - (double)mom));
        }
    } else {
        for (int c = 0; c < C; c++) {
            r->bn_mean[c] = mm->data[c];
            r->bn_invstd[c] = (float)(1.0 / sqrt((double)mv->data[c] + eps));
        }
    }
    for (size_t i = 0; i < M; i++)
        for (int c = 0; c < C; c++) {
            size_t k = i * (size_t)C + (size_t)c;
            r->out[k] = gamma[c] * (x[k] - r->bn_mean[c]) * r->bn_invstd[c] + beta[c];
        }
}

static void fwd_pool(const nn_node *n, const nn_node *xn, const float *x, float *y, size_t rows) {
    const nn_pool_attr *a = &n->a.pool;
    const int H = xn->shape[0], W = xn->shape[1], C = xn->shape[2], OH = n->shape[0], OW = n->shape[1];
    const int is_max = n->op == NN_OP_MAXPOOL;
    for (size_t b = 0; b < rows; b++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                for (int c = 0; c < C; c++) {
                    double acc = is_max ? -INFINITY : 0.0;
                    int cnt = 0;
                    for (int ky = 0; ky < a->kh; ky++) {
                        int iy = oy * a->sh - a->pad_t + ky;
                        if (iy < 0 || iy >= H) continue;
                        for (int kx = 0; kx < a->kw; kx++) {
                            int ix = ox * a->sw - a->pad_l + kx;
                            if (ix < 0 || ix >= W) continue;
                            float v = x[((b * (size_t)H + (size_t)iy) * (size_t)W + (size_t)ix) * (size_t)C + (size_t)c];
                            if (is_max) {
                                if (v > acc) acc = v;
                            } else {
                                acc += v;
                            }
                            cnt++;
                        }
                    }
                    /* Padding never counts: max over real values, average over the real
                     * values only (TensorFlow's 'same' average pooling). A window always
                     * holds at least one real value since pads are smaller than windows. */
                    float out = is_max ? (float)acc : (float)(acc / (cnt ? cnt : 1));
                    y[((b * (size_t)OH + (size_t)oy) * (size_t)OW + (size_t)ox) * (size_t)C + (size_t)c] = out;
                }
}

static void fwd_gap(const nn_node *n, const nn_node *xn, const float *x, float *y, size_t rows) {
    const int C = n->shape[0];
    const size_t P = nn_node_size(xn) / (size_t)C;
    for (size_t b = 0; b < rows; b++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (size_t p = 0; p < P; p++) s += x[(b * P + p) * (size_t)C + (size_t)c];
            y[b * (size_t)C + (size_t)c] = (float)(s / (double)P);
        }
}

static void fwd_dense(const nn_exec *ex, const nn_node *n, const nn_node *xn, const float *x, ref_node *r,
                      size_t rows) {
    const int CI = xn->shape[xn->ndim - 1], U = n->a.dense.units;
    const size_t R = rows * (nn_node_size(xn) / (size_t)CI); /* one row per item and step */
    const float *K = ref_param(ex, n, 0)->data;             /* {CI,U} */
    nn_param *bp = ref_param(ex, n, 1);
    float *y = linear_target(r, n->a.dense.act);
    for (size_t i = 0; i < R; i++)
        for (int u = 0; u < U; u++) {
            double acc = bp ? bp->data[u] : 0.0;
            for (int c = 0; c < CI; c++) acc += (double)x[i * (size_t)CI + (size_t)c] * K[(size_t)c * (size_t)U + (size_t)u];
            y[i * (size_t)U + (size_t)u] = (float)acc;
        }
    finish_act(ex, n, r, n->a.dense.act, rows);
}

static void fwd_concat(const nn_exec *ex, const nn_node *n, float *y, size_t rows) {
    const ref_priv *P = ex->priv;
    const int CT = n->shape[n->ndim - 1];
    const size_t R = rows * (nn_node_size(n) / (size_t)CT);
    int off = 0;
    for (int k = 0; k < n->n_inputs; k++) {
        const nn_node *xn = nn_graph_node(ex->g, n->inputs[k]);
        const float *x = P->nodes[n->inputs[k]].out;
        const int C = xn->shape[xn->ndim - 1];
        for (size_t i = 0; i < R; i++)
            memcpy(y + i * (size_t)CT + (size_t)off, x + i * (size_t)C, (size_t)C * sizeof(float));
        off += C;
    }
}

static void fwd_pad(const nn_node *n, const nn_node *xn, const float *x, float *y, size_t rows) {
    const size_t total = rows * nn_node_size(n);
    memset(y, 0, total * sizeof(float));
    const int C = xn->shape[xn->ndim - 1], OC = n->shape[n->ndim - 1];
    if (n->ndim != 3) { /* channel padding only */
        const size_t R = rows * (nn_node_size(xn) / (size_t)C);
        for (size_t i = 0; i < R; i++) memcpy(y + i * (size_t)OC, x + i * (size_t)C, (size_t)C * sizeof(float));
        return;
    }
    const int H = xn->shape[0], W = xn->shape[1], OH = n->shape[0], OW = n->shape[1];
    for (size_t b = 0; b < rows; b++)
        for (int iy = 0; iy < H; iy++)
            for (int ix = 0; ix < W; ix++) {
                const float *s = x + ((b * (size_t)H + (size_t)iy) * (size_t)W + (size_t)ix) * (size_t)C;
                float *d = y + ((b * (size_t)OH + (size_t)(iy + n->a.pad.t)) * (size_t)OW + (size_t)(ix + n->a.pad.l)) *
                                   (size_t)OC;
                memcpy(d, s, (size_t)C * sizeof(float));
            }
}

static void fwd_lstm(const nn_exec *ex, const nn_node *n, const nn_node *xn, const float *x, ref_node *r,
                     size_t rows) {
    const int T = xn->shape[0], C = xn->shape[1], U = n->a.lstm.units, G = 4 * U;
    const float *K = ref_param(ex, n, 0)->data;  /* {C,4U} */
    const float *RK = ref_param(ex, n, 1)->data; /* {U,4U} */
    const float *B = ref_param(ex, n, 2)->data;  /* {4U} */
    for (size_t b = 0; b < rows; b++) {
        float *st = r->lstm + b * (size_t)T * 6 * (size_t)U;
        for (int t = 0; t < T; t++) {
            const float *xt = x + (b * (size_t)T + (size_t)t) * (size_t)C;
            const float *hprev = t ? st + (size_t)(t - 1) * 6 * (size_t)U + 5 * (size_t)U : NULL;
            const float *cprev = t ? st + (size_t)(t - 1) * 6 * (size_t)U + 4 * (size_t)U : NULL;
            float *cur = st + (size_t)t * 6 * (size_t)U; /* i f g o c h */
            for (int j = 0; j < G; j++) {
                double z = B[j];
                for (int c = 0; c < C; c++) z += (double)xt[c] * K[(size_t)c * (size_t)G + (size_t)j];
                for (int u = 0; hprev && u < U; u++) z += (double)hprev[u] * RK[(size_t)u * (size_t)G + (size_t)j];
                /* Keras gate order i, f, c (candidate, tanh), o. */
                cur[j] = j / U == 2 ? tanhf((float)z) : ref_sigmoid((float)z);
            }
            for (int u = 0; u < U; u++) {
                float i = cur[u], f = cur[U + u], gg = cur[2 * U + u], o = cur[3 * U + u];
                float c = i * gg + (cprev ? f * cprev[u] : 0.0f);
                cur[4 * U + u] = c;
                cur[5 * U + u] = o * tanhf(c);
            }
        }
        /* Output: every h_t (return_sequences) or only the last one. */
        if (n->a.lstm.return_sequences)
            for (int t = 0; t < T; t++)
                memcpy(r->out + (b * (size_t)T + (size_t)t) * (size_t)U, st + (size_t)t * 6 * (size_t)U + 5 * (size_t)U,
                       (size_t)U * sizeof(float));
        else
            memcpy(r->out + b * (size_t)U, st + (size_t)(T - 1) * 6 * (size_t)U + 5 * (size_t)U,
                   (size_t)U * sizeof(float));
    }
}

float ref_resize_scale(int in_size, int out_size, int align_corners) {
    if (align_corners && out_size > 1) return (float)(in_size - 1) / (float)(out_size - 1);
    return (float)in_size / (float)out_size;
}

/* TFLite's reference: src = (v + 0.5) * scale - 0.5 with half-pixel centres, else v * scale;
 * lo = max(floor(src), 0), hi = min(ceil(src), in - 1); weights (1 - (src - lo)) and
 * (src - lo). Computed in float as TFLite does so that results match it bit for bit. */
void ref_resize_coord(int v, float scale, int half_pixel, int in_size, float *src, int *lo, int *hi) {
    float s = half_pixel ? ((float)v + 0.5f) * scale - 0.5f : (float)v * scale;
    int f = (int)floorf(s), c = (int)ceilf(s);
    *src = s;
    *lo = f > 0 ? f : 0;
    *hi = c < in_size - 1 ? c : in_size - 1;
}

static void fwd_resize(const nn_node *n, const nn_node *xn, const float *x, float *y, size_t rows) {
    const int H = xn->shape[0], W = xn->shape[1], C = xn->shape[2], OH = n->shape[0], OW = n->shape[1];
    const int hp = n->a.resize.half_pixel_centers;
    const float hs = ref_resize_scale(H, OH, n->a.resize.align_corners);
    const float ws = ref_resize_scale(W, OW, n->a.resize.align_corners);
    for (size_t b = 0; b < rows; b++)
        for (int oy = 0; oy < OH; oy++) {
            float sy;
            int y0, y1;
            ref_resize_coord(oy, hs, hp, H, &sy, &y0, &y1);
            for (int ox = 0; ox < OW; ox++) {
                float sx;
                int x0, x1;
                ref_resize_coord(ox, ws, hp, W, &sx, &x0, &x1);
                const float *r0 = x + (b * (size_t)H + (size_t)y0) * (size_t)W * (size_t)C;
                const float *r1 = x + (b * (size_t)H + (size_t)y1) * (size_t)W * (size_t)C;
                float *d = y + ((b * (size_t)OH + (size_t)oy) * (size_t)OW + (size_t)ox) * (size_t)C;
                for (int c = 0; c < C; c++)
                    d[c] = r0[(size_t)x0 * (size_t)C + (size_t)c] * (1 - (sy - (float)y0)) * (1 - (sx - (float)x0)) +
                           r1[(size_t)x0 * (size_t)C + (size_t)c] * (sy - (float)y0) * (1 - (sx - (float)x0)) +
                           r0[(size_t)x1 * (size_t)C + (size_t)c] * (1 - (sy - (float)y0)) * (sx - (float)x0) +
                           r1[(size_t)x1 * (size_t)C + (size_t)c] * (sy - (float)y0) * (sx - (float)x0);
            }
        }
}

static int ref_forward(nn_exec *ex, const float *input, int batch, dfd_error *err) {
    ref_priv *P = ex->priv;
    nn_graph *g = ex->g;
    for (int id = 0; id < P->n_nodes; id++) {
        const nn_node *n = nn_graph_node(g, id);
        ref_node *r = &P->nodes[id];
        const size_t rows = ref_rows(n, batch), count = rows * nn_node_size(n);
        const nn_node *xn = n->n_inputs > 0 ? nn_graph_node(g, n->inputs[0]) : NULL;
        const float *x = n->n_inputs > 0 ? P->nodes[n->inputs[0]].out : NULL;
        switch (n->op) {
        case NN_OP_INPUT:
            memcpy(r->out, input, count * sizeof(float));
            break;
        case NN_OP_CONV2D:
            fwd_conv(ex, n, xn, x, r, rows);
            break;
        case NN_OP_BATCHNORM:
            fwd_batchnorm(ex, n, x, r, rows);
            break;
        case NN_OP_ACT: {
            nn_param *alpha = ref_param(ex, n, 0);
            apply_act(n->a.act.act, alpha ? alpha->data : NULL, x, r->out, count / (size_t)n->shape[n->ndim - 1],
                      n->shape[n->ndim - 1]);
            break;
        }
        case NN_OP_MAXPOOL:
        case NN_OP_AVGPOOL:
            fwd_pool(n, xn, x, r->out, rows);
            break;
        case NN_OP_GAP:
            fwd_gap(n, xn, x, r->out, rows);
            break;
        case NN_OP_DENSE:
            fwd_dense(ex, n, xn, x, r, rows);
            break;
        case NN_OP_DROPOUT:
            /* Inverted dropout, active only when training: kept units are scaled by
             * 1/(1-rate) so inference needs no rescaling. */
            if (ex->opts.training && n->a.dropout.rate > 0) {
                nn_dropout_mask(ex, id, count, r->mask);
                float scale = 1.0f / (1.0f - n->a.dropout.rate);
                for (size_t i = 0; i < count; i++) r->out[i] = r->mask[i] ? x[i] * scale : 0.0f;
            } else {
                if (r->mask) memset(r->mask, 1, count);
                memcpy(r->out, x, count * sizeof(float));
            }
            break;
        case NN_OP_ADD: {
            const float *x2 = P->nodes[n->inputs[1]].out;
            for (size_t i = 0; i < count; i++) r->out[i] = x[i] + x2[i];
            break;
        }
        case NN_OP_CONCAT:
            fwd_concat(ex, n, r->out, rows);
            break;
        case NN_OP_PAD:
            fwd_pad(n, xn, x, r->out, rows);
            break;
        case NN_OP_RESHAPE:
        case NN_OP_FOLD_TIME:
        case NN_OP_UNFOLD_TIME:
            /* Same values in the same order: only the shape / batch bookkeeping changes. */
            memcpy(r->out, x, count * sizeof(float));
            break;
        case NN_OP_LSTM:
            fwd_lstm(ex, n, xn, x, r, rows);
            break;
        case NN_OP_RESIZE:
            fwd_resize(n, xn, x, r->out, rows);
            break;
        default:
            return dfd_fail(err, DFD_E_UNSUPPORTED, "reference backend: op %d of node %d ('%s') not implemented",
                            (int)n->op, id, n->name);
        }
    }
    return DFD_OK;
}

static const float *ref_node_output(const nn_exec *ex, int node, size_t *count) {
    const ref_priv *P = ex->priv;
    const nn_node *n = nn_graph_node(ex->g, node);
    if (count) *count = ref_rows(n, ex->batch) * nn_node_size(n);
    return P->nodes[node].out;
}

static const float *ref_input_grad(const nn_exec *ex) {
    const ref_priv *P = ex->priv;
    return P->nodes[nn_graph_input(ex->g)].grad;
}

static const float *ref_node_grad(const nn_exec *ex, int node) {
    const ref_priv *P = ex->priv;
    return P->nodes[node].grad;
}

const nn_backend_ops nn_backend_ref = {
    .name = "reference",
    .create = ref_create,
    .refresh = ref_refresh,
    .forward = ref_forward,
    .backward = ref_backward,
    .node_output = ref_node_output,
    .input_grad = ref_input_grad,
    .node_grad = ref_node_grad,
    .destroy = ref_destroy,
};
