/*
 * ref_backward.c — the reference backend's backward pass: reverse-mode differentiation
 * of every op, walking the graph's nodes in reverse creation order (a topological order)
 * and accumulating d(loss)/d(node output) into each input's gradient buffer (a node may
 * feed several others) and d(loss)/d(parameter) into nn_param.grad of trainable
 * parameters. Loops mirror the forward loops in ref.c one for one, so that each can be
 * read against the other.
 */
#include <string.h>

#include "nn/ref_internal.h"

/* The gradient a parameter slot accumulates into, or NULL when it is frozen / absent. */
static float *pgrad(const nn_exec *ex, const nn_node *n, int k) {
    nn_param *p = ref_param(ex, n, k);
    return p && p->trainable && !p->is_statistic && p->grad ? p->grad : NULL;
}

/* d(loss)/d(pre-activation) of a layer with a fused activation (into the scratch buffer);
 * PReLU's alpha gradient is accumulated on the way. Returns dy itself when there is none. */
static const float *act_back(const nn_exec *ex, const nn_node *n, const ref_node *r, nn_act act, const float *pre,
                             const float *dy, size_t count, int alpha_slot) {
    if (act == NN_ACT_NONE) return dy;
    ref_priv *P = ex->priv;
    const int C = n->shape[n->ndim - 1];
    nn_param *ap = ref_param(ex, n, alpha_slot);
    const float *alpha = ap ? ap->data : NULL;
    float *dalpha = act == NN_ACT_PRELU ? pgrad(ex, n, alpha_slot) : NULL;
    float *d = P->scratch;
    (void)r;
    for (size_t i = 0; i < count; i++) {
        int c = (int)(i % (size_t)C);
        float a = alpha ? alpha[c] : 0.0f;
        d[i] = dy[i] * ref_act_deriv(act, pre[i], a);
        if (dalpha && pre[i] <= 0) dalpha[c] += dy[i] * pre[i];
    }
    return d;
}

/* Mirrors fwd_conv: per output pixel and kernel tap, dx[ci] += K[tap][ci][:] . d[:] and
 * dK[tap][ci][:] += x[ci] * d[:]. */
static void bwd_conv(const nn_exec *ex, const nn_node *n, const nn_node *xn, const float *x, float *dx,
                     const ref_node *r, const float *dy, size_t rows) {
    const nn_conv_attr *a = &n->a.conv;
    const int H = xn->shape[0], W = xn->shape[1], C = xn->shape[2];
    const int OH = n->shape[0], OW = n->shape[1], CO = a->out_c;
    const int cig = C / a->groups, cog = CO / a->groups;
    const float *K = ref_param(ex, n, 0)->data;
    float *dK = pgrad(ex, n, 0), *db = pgrad(ex, n, 1);
    const float *d = act_back(ex, n, r, a->act, r->pre, dy, rows * nn_node_size(n), 2);
    for (size_t b = 0; b < rows; b++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                const float *dp = d + ((b * (size_t)OH + (size_t)oy) * (size_t)OW + (size_t)ox) * (size_t)CO;
                if (db)
                    for (int co = 0; co < CO; co++) db[co] += dp[co];
                for (int ky = 0; ky < a->kh; ky++) {
                    int iy = oy * a->sh - a->pad_t + ky * a->dh;
                    if (iy < 0 || iy >= H) continue;
                    for (int kx = 0; kx < a->kw; kx++) {
                        int ix = ox * a->sw - a->pad_l + kx * a->dw;
                        if (ix < 0 || ix >= W) continue;
                        size_t xo = ((b * (size_t)H + (size_t)iy) * (size_t)W + (size_t)ix) * (size_t)C;
                        size_t ko = (size_t)(ky * a->kw + kx) * (size_t)cig * (size_t)CO;
                        for (int g = 0; g < a->groups; g++)
                            for (int ci = 0; ci < cig; ci++) {
                                size_t kr = ko + (size_t)ci * (size_t)CO + (size_t)(g * cog);
                                const float *dg = dp + g * cog;
                                double s = 0;
                                for (int j = 0; j < cog; j++) s += (double)dg[j] * K[kr + (size_t)j];
                                dx[xo + (size_t)(g * cig + ci)] += (float)s;
                                if (dK) {
                                    const float xv = x[xo + (size_t)(g * cig + ci)];
                                    for (int j = 0; j < cog; j++) dK[kr + (size_t)j] += xv * dg[j];
                                }
                            }
                    }
                }
            }
}

static void bwd_batchnorm(const nn_exec *ex, const nn_node *n, const float *x, float *dx, const ref_node *r,
                          const float *dy, size_t rows) {
    const int C = n->shape[n->ndim - 1];
    const size_t M = rows * nn_node_size(n) / (size_t)C;
    const float *gamma = ref_param(ex, n, 0)->data;
    float *dgamma = pgrad(ex, n, 0), *dbeta = pgrad(ex, n, 1);
    const int batch_stats = ref_bn_batch_stats(ex, n);
    for (int c = 0; c < C; c++) {
        const float mean = r->bn_mean[c], inv = r->bn_invstd[c];
        double sdy = 0, sdyx = 0; /* sum dy, sum dy * xhat */
        for (size_t i = 0; i < M; i++) {
            size_t k = i * (size_t)C + (size_t)c;
            sdy += dy[k];
            sdyx += (double)dy[k] * (x[k] - mean) * inv;
        }
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        for (size_t i = 0; i < M; i++) {
            size_t k = i * (size_t)C + (size_t)c;
            if (batch_stats) {
                /* The mean and variance depend on every x of the channel:
                 * dx = gamma * inv / M * (M dy - sum dy - xhat * sum(dy xhat)). */
                double xhat = (x[k] - mean) * inv;
                dx[k] += (float)(gamma[c] * inv / (double)M * ((double)M * dy[k] - sdy - xhat * sdyx));
            } else {
                dx[k] += gamma[c] * inv * dy[k];
            }
        }
    }
}

static void bwd_pool(const nn_node *n, const nn_node *xn, const float *x, float *dx, const float *dy, size_t rows) {
    const nn_pool_attr *a = &n->a.pool;
    const int H = xn->shape[0], W = xn->shape[1], C = xn->shape[2], OH = n->shape[0], OW = n->shape[1];
    const int is_max = n->op == NN_OP_MAXPOOL;
    for (size_t b = 0; b < rows; b++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                for (int c = 0; c < C; c++) {
                    float g = dy[((b * (size_t)OH + (size_t)oy) * (size_t)OW + (size_t)ox) * (size_t)C + (size_t)c];
                    size_t best = 0;
                    float bestv = -INFINITY;
                    int cnt = 0, found = 0;
                    for (int pass = 0; pass < (is_max ? 1 : 2); pass++)
                        for (int ky = 0; ky < a->kh; ky++) {
                            int iy = oy * a->sh - a->pad_t + ky;
                            if (iy < 0 || iy >= H) continue;
                            for (int kx = 0; kx < a->kw; kx++) {
                                int ix = ox * a->sw - a->pad_l + kx;
                                if (ix < 0 || ix >= W) continue;
                                size_t k = ((b * (size_t)H + (size_t)iy) * (size_t)W + (size_t)ix) * (size_t)C + (size_t)c;
                                if (is_max) {
                                    /* The gradient goes to the first maximum, as the forward's '>' picks it. */
                                    if (!found || x[k] > bestv) {
                                        bestv = x[k];
                                        best = k;
                                        found = 1;
                                    }
                                } else if (pass == 0) {
                                    cnt++;
                                } else {
                                    dx[k] += g / (float)cnt;
                                }
                            }
                        }
                    if (is_max && found) dx[best] += g;
                }
}

static void bwd_dense(const nn_exec *ex, const nn_node *n, const nn_node *xn, const float *x, float *dx,
                      const ref_node *r, const float *dy, size_t rows) {
    const int CI = xn->shape[xn->ndim - 1], U = n->a.dense.units;
    const size_t R = rows * (nn_node_size(xn) / (size_t)CI);
    const float *K = ref_param(ex, n, 0)->data;
    float *dK = pgrad(ex, n, 0), *db = pgrad(ex, n, 1);
    const float *d = act_back(ex, n, r, n->a.dense.act, r->pre, dy, rows * nn_node_size(n), 2);
    for (size_t i = 0; i < R; i++)
        for (int u = 0; u < U; u++) {
            float g = d[i * (size_t)U + (size_t)u];
            if (db) db[u] += g;
            for (int c = 0; c < CI; c++) {
                dx[i * (size_t)CI + (size_t)c] += g * K[(size_t)c * (size_t)U + (size_t)u];
                if (dK) dK[(size_t)c * (size_t)U + (size_t)u] += g * x[i * (size_t)CI + (size_t)c];
            }
        }
}

static void bwd_lstm(const nn_exec *ex, const nn_node *n, const nn_node *xn, const float *x, float *dx,
                     const ref_node *r, const float *dy, size_t rows) {
    const int T = xn->shape[0], C = xn->shape[1], U = n->a.lstm.units, G = 4 * U;
    const int seq = n->a.lstm.return_sequences;
    const float *K = ref_param(ex, n, 0)->data, *RK = ref_param(ex, n, 1)->data;
    float *dK = pgrad(ex, n, 0), *dR = pgrad(ex, n, 1), *dB = pgrad(ex, n, 2);
    float *dh_next = r->work, *dc_next = r->work + U, *dz = r->work + 2 * U;
    for (size_t b = 0; b < rows; b++) {
        const float *st = r->lstm + b * (size_t)T * 6 * (size_t)U;
        memset(dh_next, 0, 2 * (size_t)U * sizeof(float));
        /* Backpropagation through time, last step first. */
        for (int t = T - 1; t >= 0; t--) {
            const float *cur = st + (size_t)t * 6 * (size_t)U;
            const float *cprev = t ? cur - 6 * (size_t)U + 4 * (size_t)U : NULL;
            const float *hprev = t ? cur - 6 * (size_t)U + 5 * (size_t)U : NULL;
            for (int u = 0; u < U; u++) {
                float ig = cur[u], fg = cur[U + u], gg = cur[2 * U + u], og = cur[3 * U + u], c = cur[4 * U + u];
                float dh = dh_next[u];
                if (seq)
                    dh += dy[(b * (size_t)T + (size_t)t) * (size_t)U + (size_t)u];
                else if (t == T - 1)
                    dh += dy[b * (size_t)U + (size_t)u];
                float tc = tanhf(c);
                float d_o = dh * tc;
                float dc = dh * og * (1 - tc * tc) + dc_next[u];
                float di = dc * gg, dg = dc * ig, df = cprev ? dc * cprev[u] : 0.0f;
                dc_next[u] = dc * fg;
                dz[u] = di * ig * (1 - ig);
                dz[U + u] = df * fg * (1 - fg);
                dz[2 * U + u] = dg * (1 - gg * gg);
                dz[3 * U + u] = d_o * og * (1 - og);
            }
            /* z = x_t K + h_{t-1} R + b */
            const float *xt = x + (b * (size_t)T + (size_t)t) * (size_t)C;
            float *dxt = dx + (b * (size_t)T + (size_t)t) * (size_t)C;
            for (int j = 0; j < G; j++)
                if (dB) dB[j] += dz[j];
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int j = 0; j < G; j++) {
                    s += (double)dz[j] * K[(size_t)c * (size_t)G + (size_t)j];
                    if (dK) dK[(size_t)c * (size_t)G + (size_t)j] += xt[c] * dz[j];
                }
                dxt[c] += (float)s;
            }
            for (int u = 0; u < U; u++) {
                double s = 0;
                for (int j = 0; j < G; j++) {
                    s += (double)dz[j] * RK[(size_t)u * (size_t)G + (size_t)j];
                    if (dR && hprev) dR[(size_t)u * (size_t)G + (size_t)j] += hprev[u] * dz[j];
                }
                dh_next[u] = hprev ? (float)s : 0.0f;
            }
        }
    }
}

static void bwd_resize(const nn_node *n, const nn_node *xn, float *dx, const float *dy, size_t rows) {
    const int H = xn->shape[0], W = xn->shape[1], C = xn->shape[2], OH = n->shape[0], OW = n->shape[1];
    const int hp = n->a.resize.half_pixel_centers;
    const float hs = ref_resize_scale(H, OH, n->a.resize.align_corners);
    const float ws = ref_resize_scale(W, OW, n->a.resize.align_corners);
    for (size_t b = 0; b < rows; b++)
        for (int oy = 0; oy < OH; oy++) {
            float sy;
            int y0, y1;
            ref_resize_coord(oy, hs, hp, H, &sy, &y0, &y1);
            float wy = sy - (float)y0;
            for (int ox = 0; ox < OW; ox++) {
                float sx;
                int x0, x1;
                ref_resize_coord(ox, ws, hp, W, &sx, &x0, &x1);
                float wx = sx - (float)x0;
                const float *d = dy + ((b * (size_t)OH + (size_t)oy) * (size_t)OW + (size_t)ox) * (size_t)C;
                float *r0 = dx + (b * (size_t)H + (size_t)y0) * (size_t)W * (size_t)C;
                float *r1 = dx + (b * (size_t)H + (size_t)y1) * (size_t)W * (size_t)C;
                for (int c = 0; c < C; c++) {
                    r0[(size_t)x0 * (size_t)C + (size_t)c] += d[c] * (1 - wy) * (1 - wx);
                    r1[(size_t)x0 * (size_t)C + (size_t)c] += d[c] * wy * (1 - wx);
                    r0[(size_t)x1 * (size_t)C + (size_t)c] += d[c] * (1 - wy) * wx;
                    r1[(size_t)x1 * (size_t)C + (size_t)c] += d[c] * wy * wx;
                }
            }
        }
}

int ref_backward(nn_exec *ex, const float *const *d_outputs, dfd_error *err) {
    ref_priv *P = ex->priv;
    nn_graph *g = ex->g;
    const int batch = ex->batch;
    for (int id = 0; id < P->n_nodes; id++) {
        const nn_node *n = nn_graph_node(g, id);
        memset(P->nodes[id].grad, 0, ref_rows(n, batch) * nn_node_size(n) * sizeof(float));
    }
    for (int i = 0; d_outputs && i < nn_graph_output_count(g); i++) {
        if (!d_outputs[i]) continue;
        int id = nn_graph_output(g, i);
        const nn_node *n = nn_graph_node(g, id);
        size_t cnt = ref_rows(n, batch) * nn_node_size(n);
        float *gr = P->nodes[id].grad;
        for (size_t k = 0; k < cnt; k++) gr[k] += d_outputs[i][k];
    }
    for (int id = P->n_nodes - 1; id >= 0; id--) {
        const nn_node *n = nn_graph_node(g, id);
        if (n->op == NN_OP_INPUT) continue;
        const ref_node *r = &P->nodes[id];
        const size_t rows = ref_rows(n, batch), count = rows * nn_node_size(n);
        const float *dy = r->grad;
        const nn_node *xn = nn_graph_node(g, n->inputs[0]);
        const float *x = P->nodes[n->inputs[0]].out;
        float *dx = P->nodes[n->inputs[0]].grad;
        switch (n->op) {
        case NN_OP_CONV2D:
            bwd_conv(ex, n, xn, x, dx, r, dy, rows);
            break;
        case NN_OP_BATCHNORM:
            bwd_batchnorm(ex, n, x, dx, r, dy, rows);
            break;
        case NN_OP_ACT: {
            const float *d = act_back(ex, n, r, n->a.act.act, x, dy, count, 0);
            for (size_t k = 0; k < count; k++) dx[k] += d[k];
            break;
        }
        case NN_OP_MAXPOOL:
        case NN_OP_AVGPOOL:
            bwd_pool(n, xn, x, dx, dy, rows);
            break;
        case NN_OP_GAP: {
            const int C = n->shape[0];
            const size_t Pn = nn_node_size(xn) / (size_t)C;
            for (size_t b = 0; b < rows; b++)
                for (size_t p = 0; p < Pn; p++)
                    for (int c = 0; c < C; c++)
                        dx[(b * Pn + p) * (size_t)C + (size_t)c] += dy[b * (size_t)C + (size_t)c] / (float)Pn;
            break;
        }
        case NN_OP_DENSE:
            bwd_dense(ex, n, xn, x, dx, r, dy, rows);
            break;
        case NN_OP_DROPOUT:
            if (ex->opts.training && n->a.dropout.rate > 0) {
                float scale = 1.0f / (1.0f - n->a.dropout.rate);
                for (size_t k = 0; k < count; k++) dx[k] += r->mask[k] ? dy[k] * scale : 0.0f;
            } else {
                for (size_t k = 0; k < count; k++) dx[k] += dy[k];
            }
            break;
        case NN_OP_ADD: {
            float *dx2 = P->nodes[n->inputs[1]].grad;
            for (size_t k = 0; k < count; k++) dx[k] += dy[k];
            for (size_t k = 0; k < count; k++) dx2[k] += dy[k];
            break;
        }
        case NN_OP_CONCAT: {
            const int CT = n->shape[n->ndim - 1];
            const size_t R = count / (size_t)CT;
            int off = 0;
            for (int k = 0; k < n->n_inputs; k++) {
                const nn_node *in = nn_graph_node(g, n->inputs[k]);
                float *d = P->nodes[n->inputs[k]].grad;
                const int C = in->shape[in->ndim - 1];
                for (size_t i = 0; i < R; i++)
                    for (int c = 0; c < C; c++) d[i * (size_t)C + (size_t)c] += dy[i * (size_t)CT + (size_t)(off + c)];
                off += C;
            }
            break;
        }
        case NN_OP_PAD: {
            const int C = xn->shape[xn->ndim - 1], OC = n->shape[n->ndim - 1];
            if (n->ndim != 3) {
                const size_t R = rows * (nn_node_size(xn) / (size_t)C);
                for (size_t i = 0; i < R; i++)
                    for (int c = 0; c < C; c++) dx[i * (size_t)C + (size_t)c] += dy[i * (size_t)OC + (size_t)c];
                break;
            }
            const int H = xn->shape[0], W = xn->shape[1], OH = n->shape[0], OW = n->shape[1];
            for (size_t b = 0; b < rows; b++)
                for (int iy = 0; iy < H; iy++)
                    for (int ix = 0; ix < W; ix++) {
                        float *d = dx + ((b * (size_t)H + (size_t)iy) * (size_t)W + (size_t)ix) * (size_t)C;
                        const float *s = dy + ((b * (size_t)OH + (size_t)(iy + n->a.pad.t)) * (size_t)OW +
                                               (size_t)(ix + n->a.pad.l)) * (size_t)OC;
                        for (int c = 0; c < C; c++) d[c] += s[c];
                    }
            break;
        }
        case NN_OP_RESHAPE:
        case NN_OP_FOLD_TIME:
        case NN_OP_UNFOLD_TIME:
            for (size_t k = 0; k < count; k++) dx[k] += dy[k];
            break;
        case NN_OP_LSTM:
            bwd_lstm(ex, n, xn, x, dx, r, dy, rows);
            break;
        case NN_OP_RESIZE:
            bwd_resize(n, xn, dx, dy, rows);
            break;
        default:
            return dfd_fail(err, DFD_E_UNSUPPORTED, "reference backend: no backward for op %d of node %d ('%s')",
                            (int)n->op, id, n->name);
        }
    }
    return DFD_OK;
}
