/*
 * bnact.c — fused batch-norm + activation, forward and backward (see bnact.h for why it
 * is ours and not oneDNN's).
 *
 * Data are rows x C, channels fastest. The loops run over "lines" of L = R x C values (R
 * rows, L about LINE values, so that a 16-channel map does not pay a loop's overhead every
 * 16 values) with per-channel coefficients repeated R times: plain C loops the compiler
 * vectorises (this file is built with -O3 and OpenMP). Lines are split evenly between the
 * threads (the last one may be shorter); each thread sums its lines per position, in fp32
 * over blocks of BLOCK lines and in double across blocks, positions of the same channel and
 * threads, and the statistics are taken about the first row's values so that a large mean
 * does not cancel the variance away. bf16 rows are widened to fp32 in a per-thread row
 * buffer and narrowed back with core.h's conversions (round to nearest even, as oneDNN).
 */
#include "nn/bnact.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

enum { BLOCK = 64, ALIGN = 64, LINE = 256 };

int nn_bnact_supports(nn_act act) { return act == NN_ACT_NONE || act == NN_ACT_RELU || act == NN_ACT_RELU6; }

static size_t up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* Rows per line. */
static int reps(int C) { return C >= LINE ? 1 : LINE / C; }

/* Workspace: per thread 2 x L doubles (partial sums), 2 x L floats (block sums) and 3
 * lines of L floats (widened bf16 lines); shared 6 x L floats (coefficients). */
static size_t line_len(int C) { return (size_t)reps(C) * (size_t)C; }
static size_t per_thread(int C) { return up(2 * line_len(C) * sizeof(double)) + up(5 * line_len(C) * sizeof(float)); }
static size_t shared_size(int C) { return up(6 * line_len(C) * sizeof(float)); }

size_t nn_bnact_workspace(const nn_bnact_desc *d, int threads) {
    if (threads < 1) threads = 1;
    return shared_size(d->C) + (size_t)threads * per_thread(d->C) + ALIGN;
}

typedef struct tws {
    double *s1, *s2;
    float *a1, *a2, *r0, *r1, *r2;
} tws;

static unsigned char *align_ptr(void *ws) { return (unsigned char *)(((uintptr_t)ws + ALIGN - 1) / ALIGN * ALIGN); }

static tws thread_ws(void *ws, int C, int t) {
    const size_t L = line_len(C);
    unsigned char *p = align_ptr(ws) + shared_size(C) + (size_t)t * per_thread(C);
    tws w;
    w.s1 = (double *)(void *)p;
    w.s2 = w.s1 + L;
    float *f = (float *)(void *)(p + up(2 * L * sizeof(double)));
    w.a1 = f;
    w.a2 = f + L;
    w.r0 = f + 2 * L;
    w.r1 = f + 3 * L;
    w.r2 = f + 4 * L;
    return w;
}

/* Values [o, o + n) of p as fp32: the data itself (fp32) or widened into buf (bf16). */
static inline const float *line_in(const void *p, int bf16, size_t o, size_t n, float *buf) {
    if (!bf16) return (const float *)p + o;
    const uint16_t *h = (const uint16_t *)p + o;
    for (size_t c = 0; c < n; c++) buf[c] = dfd_bf16_to_f32(h[c]);
    return buf;
}

/* Where to compute values [o, o + n) of an output: in place (fp32) or in buf, stored by line_out. */
static inline float *line_dst(void *p, int bf16, size_t o, float *buf) { return bf16 ? buf : (float *)p + o; }

static inline void line_out(void *p, int bf16, size_t o, size_t n, const float *buf) {
    if (!bf16) return;
    uint16_t *h = (uint16_t *)p + o;
    for (size_t c = 0; c < n; c++) h[c] = dfd_f32_to_bf16(buf[c]);
}

/* The lines of a call: L values each, the last one `last` values. */
typedef struct lines {
    size_t L, n, last, total;
} lines;

static lines lines_of(const nn_bnact_desc *d) {
    lines l;
    l.L = line_len(d->C);
    l.total = d->rows * (size_t)d->C;
    l.n = (l.total + l.L - 1) / l.L;
    l.last = l.total - (l.n - 1) * l.L;
    return l;
}

static inline size_t line_n(const lines *l, size_t i) { return i + 1 == l->n ? l->last : l->L; }

/* Threads worth using: one per ~64k values. */
static int team(const nn_bnact_desc *d, int threads) {
    size_t want = d->rows * (size_t)d->C / 65536 + 1;
    if (threads < 1) threads = 1;
    return want < (size_t)threads ? (int)want : threads;
}

static void range_of(size_t n, int t, int T, size_t *i0, size_t *i1) {
    *i0 = n * (size_t)t / (size_t)T;
    *i1 = n * (size_t)(t + 1) / (size_t)T;
}

/* Folds the block sums a1/a2 into the thread's double sums and clears them. */
static inline void fold(tws *w, size_t L) {
    for (size_t c = 0; c < L; c++) {
        w->s1[c] += w->a1[c];
        w->s2[c] += w->a2[c];
        w->a1[c] = 0;
        w->a2[c] = 0;
    }
}

static void clear(tws *w, size_t L) {
    memset(w->s1, 0, 2 * L * sizeof(double));
    memset(w->a1, 0, 2 * L * sizeof(float));
}

/* Sums over threads and positions of channel c. */
static void sums_of(void *ws, int C, int T, int c, double *s1, double *s2) {
    const size_t L = line_len(C);
    double a = 0, b = 0;
    for (int u = 0; u < T; u++) {
        tws o = thread_ws(ws, C, u);
        for (size_t j = (size_t)c; j < L; j += (size_t)C) {
            a += o.s1[j];
            b += o.s2[j];
        }
    }
    *s1 = a;
    *s2 = b;
}

/* Repeats the first C values of each array over the line. */
static void repeat(float *const *v, int nv, int C) {
    const size_t L = line_len(C);
    for (int k = 0; k < nv; k++)
        for (size_t j = (size_t)C; j < L; j += (size_t)C) memcpy(v[k] + j, v[k], (size_t)C * sizeof(float));
}

/* z = x * scale + shift for channels [c0, c1): one formula for both passes, so that the
 * backward pass recomputes z, and ReLU6's mask, bit for bit as the forward computed them. */
static void coefficients(const nn_bnact_desc *d, const float *gamma, const float *beta, const float *mean,
                         const float *var, size_t c0, size_t c1, float *scale, float *shift) {
    for (size_t c = c0; c < c1; c++) {
        double sc = (gamma ? gamma[c] : 1.0) / sqrt((double)var[c] + (double)d->eps);
        scale[c] = (float)sc;
        shift[c] = (float)((beta ? beta[c] : 0.0) - (double)mean[c] * sc);
    }
}

void nn_bnact_forward(const nn_bnact_desc *d, const void *x, void *y, const float *gamma, const float *beta,
                      float *mean, float *var, void *ws, int threads) {
    const int C = d->C, T = team(d, threads), bf = d->bf16;
    const lines ln = lines_of(d);
    const size_t L = ln.L, M = d->rows;
    const nn_act act = d->act;
    float *sh = (float *)(void *)align_ptr(ws);
    float *k = sh, *scale = sh + L, *shift = sh + 2 * L;
#pragma omp parallel num_threads(T)
    {
        const int t = omp_get_thread_num();
        tws w = thread_ws(ws, C, t);
        size_t i0, i1, c0, c1;
        range_of(ln.n, t, T, &i0, &i1);
        range_of((size_t)C, t, T, &c0, &c1);
        if (d->batch_stats) {
            if (t == 0) {
                memcpy(k, line_in(x, bf, 0, (size_t)C, w.r0), (size_t)C * sizeof(float));
                float *rep[1] = {k};
                repeat(rep, 1, C);
            }
#pragma omp barrier
            clear(&w, L);
            for (size_t i = i0; i < i1; i++) {
                const size_t n = line_n(&ln, i);
                const float *xl = line_in(x, bf, i * L, n, w.r0);
                for (size_t c = 0; c < n; c++) {
                    float v = xl[c] - k[c];
                    w.a1[c] += v;
                    w.a2[c] += v * v;
                }
                if ((i - i0) % BLOCK == BLOCK - 1) fold(&w, L);
            }
            fold(&w, L);
#pragma omp barrier
            for (size_t c = c0; c < c1; c++) {
                double s1, s2;
                sums_of(ws, C, T, (int)c, &s1, &s2);
                double m1 = s1 / (double)M, v = s2 / (double)M - m1 * m1;
                mean[c] = (float)(k[c] + m1);
                var[c] = (float)(v > 0 ? v : 0);
            }
        }
        coefficients(d, gamma, beta, mean, var, c0, c1, scale, shift);
#pragma omp barrier
        if (t == 0) {
            float *rep[2] = {scale, shift};
            repeat(rep, 2, C);
        }
#pragma omp barrier
        for (size_t i = i0; i < i1; i++) {
            const size_t n = line_n(&ln, i);
            const float *xl = line_in(x, bf, i * L, n, w.r0);
            float *yl = line_dst(y, bf, i * L, w.r1);
            if (act == NN_ACT_RELU6)
                for (size_t c = 0; c < n; c++) {
                    float z = fmaf(xl[c], scale[c], shift[c]);
                    yl[c] = z < 0 ? 0.0f : z > 6 ? 6.0f : z;
                }
            else if (act == NN_ACT_RELU)
                for (size_t c = 0; c < n; c++) {
                    float z = fmaf(xl[c], scale[c], shift[c]);
                    yl[c] = z > 0 ? z : 0.0f;
                }
            else
                for (size_t c = 0; c < n; c++) yl[c] = fmaf(xl[c], scale[c], shift[c]);
            line_out(y, bf, i * L, n, yl);
        }
    }
}

/* g = dy * act'(z), z = x * scale + shift as the forward pass computed it. */
static inline void grad_line(nn_act act, size_t n, const float *xl, const float *dyl, const float *scale,
                             const float *shift, float *g) {
    if (act == NN_ACT_RELU6)
        for (size_t c = 0; c < n; c++) {
            float z = fmaf(xl[c], scale[c], shift[c]);
            g[c] = z > 0 && z < 6 ? dyl[c] : 0.0f;
        }
    else if (act == NN_ACT_RELU)
        for (size_t c = 0; c < n; c++) {
            float z = fmaf(xl[c], scale[c], shift[c]);
            g[c] = z > 0 ? dyl[c] : 0.0f;
        }
    else
        memcpy(g, dyl, n * sizeof(float));
}

void nn_bnact_backward(const nn_bnact_desc *d, const void *x, const void *dy, void *dx, int add_dx,
                       const float *gamma, const float *beta, const float *mean, const float *var, float *dgamma,
                       float *dbeta, void *ws, int threads) {
    const int C = d->C, T = team(d, threads), bf = d->bf16;
    const lines ln = lines_of(d);
    const size_t L = ln.L, M = d->rows;
    const nn_act act = d->act;
    const int need_sums = d->batch_stats || dgamma || dbeta;
    float *sh = (float *)(void *)align_ptr(ws);
    float *scale = sh, *shift = sh + L, *ca = sh + 2 * L, *cb = sh + 3 * L, *cd = sh + 4 * L, *mn = sh + 5 * L;
#pragma omp parallel num_threads(T)
    {
        const int t = omp_get_thread_num();
        tws w = thread_ws(ws, C, t);
        size_t i0, i1, c0, c1;
        range_of(ln.n, t, T, &i0, &i1);
        range_of((size_t)C, t, T, &c0, &c1);
        coefficients(d, gamma, beta, mean, var, c0, c1, scale, shift);
        for (size_t c = c0; c < c1; c++) mn[c] = mean[c];
#pragma omp barrier
        if (t == 0) {
            float *rep[3] = {scale, shift, mn};
            repeat(rep, 3, C);
        }
#pragma omp barrier
        if (need_sums) {
            clear(&w, L);
            for (size_t i = i0; i < i1; i++) {
                const size_t n = line_n(&ln, i);
                const float *xl = line_in(x, bf, i * L, n, w.r0), *dyl = line_in(dy, bf, i * L, n, w.r1);
                float *g = w.r2;
                grad_line(act, n, xl, dyl, scale, shift, g);
                for (size_t c = 0; c < n; c++) {
                    w.a1[c] += g[c];
                    w.a2[c] += g[c] * (xl[c] - mn[c]);
                }
                if ((i - i0) % BLOCK == BLOCK - 1) fold(&w, L);
            }
            fold(&w, L);
#pragma omp barrier
            for (size_t c = c0; c < c1; c++) {
                double s1, s2;
                sums_of(ws, C, T, (int)c, &s1, &s2);
                double rs = 1.0 / sqrt((double)var[c] + (double)d->eps), gm = gamma ? gamma[c] : 1.0;
                double db = s1, dg = s2 * rs; /* sum g, sum g * xhat */
                if (dbeta) dbeta[c] = (float)db;
                if (dgamma) dgamma[c] = (float)dg;
                /* dx = A g + B (x - mean) + D */
                ca[c] = (float)(gm * rs);
                cb[c] = d->batch_stats ? (float)(-gm * rs * rs * dg / (double)M) : 0.0f;
                cd[c] = d->batch_stats ? (float)(-gm * rs * db / (double)M) : 0.0f;
            }
        } else {
            for (size_t c = c0; c < c1; c++) {
                ca[c] = scale[c];
                cb[c] = 0;
                cd[c] = 0;
            }
        }
        if (!dx) goto done;
#pragma omp barrier
        if (t == 0) {
            float *rep[3] = {ca, cb, cd};
            repeat(rep, 3, C);
        }
#pragma omp barrier
        for (size_t i = i0; i < i1; i++) {
            const size_t n = line_n(&ln, i);
            const float *xl = line_in(x, bf, i * L, n, w.r0), *dyl = line_in(dy, bf, i * L, n, w.r1);
            float *g = w.r2;
            grad_line(act, n, xl, dyl, scale, shift, g);
            float *o = line_dst(dx, bf, i * L, w.r1); /* dy's line is consumed by now */
            if (add_dx) {
                const float *prev = line_in(dx, bf, i * L, n, w.r1);
                for (size_t c = 0; c < n; c++) o[c] = prev[c] + ca[c] * g[c] + cb[c] * (xl[c] - mn[c]) + cd[c];
            } else {
                for (size_t c = 0; c < n; c++) o[c] = ca[c] * g[c] + cb[c] * (xl[c] - mn[c]) + cd[c];
            }
            line_out(dx, bf, i * L, n, o);
        }
    done:;
    }
}
