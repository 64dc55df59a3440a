/*
 * train.c — what training needs besides the passes themselves: the binary cross-entropy
 * on logits, the optimisers (SGD with momentum, Adam, AdamW) with weight decay and global
 * gradient-norm clipping, learning-rate schedules with warm-up, the deterministic random
 * number generator, and Keras-like weight initialisation.
 *
 * Update rules follow Keras (tf.keras / Keras 3) so that hyper-parameters carry over:
 *   SGD:   v = momentum * v - lr * g;  w += v          (plain w -= lr * g when momentum = 0)
 *   Adam:  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *          w -= lr * sqrt(1-b2^t) / (1-b1^t) * m / (sqrt(v) + eps)
 *   AdamW: w -= lr * wd * w, then Adam without the L2 term (decoupled decay).
 * SGD and Adam take weight_decay as an L2 term added to the gradient (g += wd * w).
 * Clipping (Keras global_clipnorm) rescales all gradients together when their global
 * norm exceeds clip_norm, before weight decay is added.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/graph_internal.h"

void nn_graph_zero_grad(nn_graph *g) {
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        if (p->grad) memset(p->grad, 0, p->count * sizeof(float));
    }
}

/* ---- Loss ------------------------------------------------------------------------- */

/* loss = max(z,0) - z*y + log(1 + exp(-|z|)): equal to -(y log s + (1-y) log(1-s)) with
 * s = sigmoid(z), but never takes the log of 0 or exp of a large positive number. */
float nn_bce_logits(const float *logits, const float *labels, const float *w, int n, float *dlogits) {
    if (n <= 0) return 0.0f;
    double total = 0;
    for (int i = 0; i < n; i++) {
        double z = logits[i], y = labels[i], wi = w ? w[i] : 1.0;
        double l = (z > 0 ? z : 0) - z * y + log1p(exp(-fabs(z)));
        total += wi * l;
        if (dlogits) {
            double s = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
            dlogits[i] = (float)(wi * (s - y) / n);
        }
    }
    return (float)(total / n);
}

/* ---- Optimisers -------------------------------------------------------------------- */

struct nn_optim {
    nn_graph *g;
    nn_optim_opts o;
    long t;            /* steps taken (Adam's bias correction) */
    float last_norm;   /* global gradient norm of the last step, before clipping */
};

long nn_optim_steps(const nn_optim *opt) { return opt ? opt->t : 0; }

void nn_optim_set_steps(nn_optim *opt, long steps) {
    if (opt && steps >= 0) opt->t = steps;
}

void nn_optim_opts_default(nn_optim_opts *o, nn_optim_kind kind) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    /* Keras's defaults. */
    o->lr = kind == NN_OPT_SGD ? 0.01f : 0.001f;
    o->momentum = 0.0f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-7f;
    o->weight_decay = kind == NN_OPT_ADAMW ? 0.004f : 0.0f;
    o->clip_norm = 0.0f;
}

/* A parameter the optimiser updates: trainable, not a batch-norm statistic, with a grad. */
static int updatable(const nn_param *p) { return p->trainable && !p->is_statistic && p->grad; }

int nn_optim_create(nn_graph *g, const nn_optim_opts *o, nn_optim **out, dfd_error *err) {
    if (out) *out = NULL;
    if (!g || !o || !out) return dfd_fail(err, DFD_E_ARG, "nn_optim_create: missing argument");
    if (o->kind < NN_OPT_SGD || o->kind > NN_OPT_ADAMW) return dfd_fail(err, DFD_E_ARG, "unknown optimiser %d", (int)o->kind);
    if (!(o->lr >= 0) || !(o->momentum >= 0 && o->momentum < 1) || !(o->weight_decay >= 0) || !(o->clip_norm >= 0))
        return dfd_fail(err, DFD_E_ARG, "optimiser: lr %g, momentum %g, weight decay %g, clip norm %g out of range",
                        (double)o->lr, (double)o->momentum, (double)o->weight_decay, (double)o->clip_norm);
    if (o->kind != NN_OPT_SGD &&
        (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0)))
        return dfd_fail(err, DFD_E_ARG, "Adam: beta1 %g, beta2 %g must be in [0,1) and eps %g > 0", (double)o->beta1,
                        (double)o->beta2, (double)o->eps);
    /* The state lives in the parameters (the graph frees it); a new optimiser starts it afresh. */
    int need_m = o->kind != NN_OPT_SGD || o->momentum > 0, need_v = o->kind != NN_OPT_SGD;
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        if (p->is_statistic) continue;
        if (need_m && !p->opt_m && !(p->opt_m = dfd_calloc_array(p->count, sizeof(float))))
            return dfd_fail(err, DFD_E_NOMEM, "no memory for the optimiser state of '%s'", p->name);
        if (need_v && !p->opt_v && !(p->opt_v = dfd_calloc_array(p->count, sizeof(float))))
            return dfd_fail(err, DFD_E_NOMEM, "no memory for the optimiser state of '%s'", p->name);
        if (p->opt_m) memset(p->opt_m, 0, p->count * sizeof(float));
        if (p->opt_v) memset(p->opt_v, 0, p->count * sizeof(float));
    }
    nn_optim *opt = calloc(1, sizeof *opt);
    if (!opt) return dfd_fail(err, DFD_E_NOMEM, "no memory for an optimiser");
    opt->g = g;
    opt->o = *o;
    *out = opt;
    return DFD_OK;
}

void nn_optim_free(nn_optim *opt) { free(opt); }

float nn_optim_grad_norm(const nn_optim *opt) { return opt ? opt->last_norm : 0.0f; }

void nn_optim_step(nn_optim *opt, float lr) {
    if (!opt) return;
    nn_graph *g = opt->g;
    const nn_optim_opts *o = &opt->o;
    double sq = 0;
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        const nn_param *p = nn_graph_param(g, i);
        if (!updatable(p)) continue;
        for (size_t k = 0; k < p->count; k++) sq += (double)p->grad[k] * p->grad[k];
    }
    double norm = sqrt(sq), scale = 1.0;
    opt->last_norm = (float)norm;
    if (o->clip_norm > 0 && norm > o->clip_norm) scale = o->clip_norm / norm;
    opt->t++;
    double b1t = 1.0 - pow(o->beta1, (double)opt->t), b2t = 1.0 - pow(o->beta2, (double)opt->t);
    double adam_lr = o->kind == NN_OPT_SGD ? 0.0 : lr * sqrt(b2t) / b1t;
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        if (!updatable(p)) continue;
        for (size_t k = 0; k < p->count; k++) {
            double w = p->data[k], gr = p->grad[k] * scale;
            if (o->kind != NN_OPT_ADAMW) gr += o->weight_decay * w; /* L2 */
            if (o->kind == NN_OPT_SGD) {
                if (o->momentum > 0) {
                    double v = o->momentum * p->opt_m[k] - lr * gr;
                    p->opt_m[k] = (float)v;
                    w += v;
                } else {
                    w -= lr * gr;
                }
            } else {
                if (o->kind == NN_OPT_ADAMW) w -= (double)lr * o->weight_decay * w;
                double m = o->beta1 * (double)p->opt_m[k] + (1.0 - o->beta1) * gr;
                double v = o->beta2 * (double)p->opt_v[k] + (1.0 - o->beta2) * gr * gr;
                p->opt_m[k] = (float)m;
                p->opt_v[k] = (float)v;
                w -= adam_lr * m / (sqrt(v) + o->eps);
            }
            p->data[k] = (float)w;
        }
    }
}

/* ---- Learning-rate schedules ---------------------------------------------------------- */

/* Linear warm-up to base over the first `warmup` steps, then: constant; cosine decay to 0
 * at `total`; or step decay (x0.1 at half and again at three quarters of the steps after
 * warm-up). */
float nn_lr_at(nn_lr_schedule s, float base, long t, long total, long warmup) {
    if (t < 0) t = 0;
    if (warmup > 0 && t < warmup) return base * (float)(t + 1) / (float)warmup;
    if (s == NN_LR_CONSTANT || total <= 0) return base;
    long span = total - (warmup > 0 ? warmup : 0);
    if (span < 1) span = 1;
    double p = (double)(t - (warmup > 0 ? warmup : 0)) / (double)span;
    if (p > 1) p = 1;
    if (s == NN_LR_COSINE) return (float)(base * 0.5 * (1.0 + cos(M_PI * p)));
    if (s == NN_LR_STEP) return (float)(base * (p >= 0.75 ? 0.01 : p >= 0.5 ? 0.1 : 1.0));
    return base;
}

/* ---- Random numbers ---------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void nn_rng_seed(nn_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman & Vigna). */
uint64_t nn_rng_next(nn_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float nn_rng_uniform(nn_rng *r) { return (float)(nn_rng_next(r) >> 40) * 0x1.0p-24f; }

float nn_rng_normal(nn_rng *r) {
    /* Box-Muller; u1 in (0,1] keeps the log finite. */
    double u1 = 1.0 - (double)(nn_rng_next(r) >> 11) * 0x1.0p-53;
    double u2 = (double)(nn_rng_next(r) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

/* ---- Initialisation ------------------------------------------------------------------------ */

/* Keras's fans: the last two axes are (in, out), the others the receptive field. */
static void fans(const nn_param *p, double *fan_in, double *fan_out) {
    if (p->ndim == 1) {
        *fan_in = *fan_out = p->shape[0];
        return;
    }
    double rf = 1;
    for (int i = 0; i < p->ndim - 2; i++) rf *= p->shape[i];
    *fan_in = rf * p->shape[p->ndim - 2];
    *fan_out = rf * p->shape[p->ndim - 1];
}

/* Keras's Orthogonal for a {rows, cols} matrix with rows <= cols: orthonormal rows drawn
 * uniformly (Gram-Schmidt on Gaussian rows gives the same law as QR with the sign fix). */
static void orthogonal(nn_param *p, nn_rng *r) {
    size_t rows = (size_t)p->shape[0], cols = p->count / rows;
    float *a = p->data;
    for (size_t k = 0; k < p->count; k++) a[k] = nn_rng_normal(r);
    if (rows > cols) return; /* not used by any layer here; leave Gaussian */
    for (size_t i = 0; i < rows; i++) {
        float *v = a + i * cols;
        for (int pass = 0; pass < 2; pass++) /* twice: re-orthogonalisation for stability */
            for (size_t j = 0; j < i; j++) {
                const float *u = a + j * cols;
                double d = 0;
                for (size_t k = 0; k < cols; k++) d += (double)v[k] * u[k];
                for (size_t k = 0; k < cols; k++) v[k] -= (float)(d * u[k]);
            }
        double nrm = 0;
        for (size_t k = 0; k < cols; k++) nrm += (double)v[k] * v[k];
        nrm = sqrt(nrm);
        for (size_t k = 0; k < cols; k++) v[k] = (float)(v[k] / (nrm > 0 ? nrm : 1));
    }
}

void nn_graph_init_weights(nn_graph *g, uint64_t seed) {
    nn_rng r;
    nn_rng_seed(&r, seed);
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        switch (nn_graph_param_role(g, i)) {
        case NN_ROLE_KERNEL: {
            double fi, fo;
            fans(p, &fi, &fo);
            double limit = sqrt(6.0 / (fi + fo));
            for (size_t k = 0; k < p->count; k++) p->data[k] = (float)((2.0 * nn_rng_uniform(&r) - 1.0) * limit);
            break;
        }
        case NN_ROLE_RECURRENT:
            orthogonal(p, &r);
            break;
        case NN_ROLE_LSTM_BIAS: { /* unit_forget_bias: the forget gate's quarter starts at 1 */
            size_t U = p->count / 4;
            for (size_t k = 0; k < p->count; k++) p->data[k] = k >= U && k < 2 * U ? 1.0f : 0.0f;
            break;
        }
        case NN_ROLE_GAMMA:
        case NN_ROLE_MOVING_VAR:
            for (size_t k = 0; k < p->count; k++) p->data[k] = 1.0f;
            break;
        default:
            memset(p->data, 0, p->count * sizeof(float));
            break;
        }
    }
}
