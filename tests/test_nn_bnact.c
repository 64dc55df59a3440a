/* test_nn_bnact — the fused batch-norm + activation kernel (src/nn/bnact.c) against a plain
 * double-precision implementation written here, whose gradients are in turn checked by
 * central finite differences of L = sum_k w_k * y_k:
 *   - channel counts below, at and above the kernel's line length (1, 3, 16, 24, 100, 300)
 *     and row counts that leave a partial line, on 1 and 3 threads;
 *   - batch statistics (mean, biased variance, and a mean of 1000 over a spread of 1, which
 *     a one-pass sum of squares in fp32 would cancel away) and given ones (frozen);
 *   - activations none, ReLU, ReLU6; d(x) written, added to what is there, or not wanted;
 *   - bf16 data against the fp32 kernel on the same (bf16-representable) values.
 */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/bnact.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* xorshift64, [0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

typedef struct ref_out {
    double *y, *dx, *dg, *db, *mean, *var;
} ref_out;

static double act_f(nn_act a, double z) {
    if (a == NN_ACT_RELU) return z > 0 ? z : 0;
    if (a == NN_ACT_RELU6) return z < 0 ? 0 : z > 6 ? 6 : z;
    return z;
}

static double act_d(nn_act a, double z) {
    if (a == NN_ACT_RELU) return z > 0;
    if (a == NN_ACT_RELU6) return z > 0 && z < 6;
    return 1;
}

/* Plain forward (and backward when w != NULL) in double. Frozen: mean/var are inputs. */
static void reference(const nn_bnact_desc *d, const double *x, const double *gamma, const double *beta, const double *w,
                      const double *fmean, const double *fvar, ref_out *o) {
    const size_t M = d->rows;
    const int C = d->C;
    for (int c = 0; c < C; c++) {
        double m = 0, v = 0;
        if (d->batch_stats) {
            for (size_t r = 0; r < M; r++) m += x[r * C + c];
            m /= (double)M;
            for (size_t r = 0; r < M; r++) v += (x[r * C + c] - m) * (x[r * C + c] - m);
            v /= (double)M;
        } else {
            m = fmean[c], v = fvar[c];
        }
        o->mean[c] = m, o->var[c] = v;
        const double rs = 1 / sqrt(v + d->eps);
        double sg = 0, sgx = 0;
        for (size_t r = 0; r < M; r++) {
            double xh = (x[r * C + c] - m) * rs, z = gamma[c] * xh + beta[c];
            o->y[r * C + c] = act_f(d->act, z);
            if (w) {
                double g = w[r * C + c] * act_d(d->act, z);
                sg += g, sgx += g * xh;
            }
        }
        if (!w) continue;
        o->db[c] = sg, o->dg[c] = sgx;
        for (size_t r = 0; r < M; r++) {
            double xh = (x[r * C + c] - m) * rs, z = gamma[c] * xh + beta[c];
            double g = w[r * C + c] * act_d(d->act, z);
            o->dx[r * C + c] = d->batch_stats ? gamma[c] * rs * (g - sg / (double)M - xh * sgx / (double)M)
                                              : gamma[c] * rs * g;
        }
    }
}

static double loss(const nn_bnact_desc *d, const double *x, const double *gamma, const double *beta, const double *w,
                   const double *fm, const double *fv, ref_out *tmp) {
    reference(d, x, gamma, beta, NULL, fm, fv, tmp);
    double L = 0;
    for (size_t i = 0; i < d->rows * (size_t)d->C; i++) L += w[i] * tmp->y[i];
    return L;
}

static ref_out ref_alloc(size_t n, int C) {
    ref_out o = {calloc(n, sizeof(double)), calloc(n, sizeof(double)), calloc((size_t)C, sizeof(double)),
                 calloc((size_t)C, sizeof(double)), calloc((size_t)C, sizeof(double)), calloc((size_t)C, sizeof(double))};
    assert_true(o.y && o.dx && o.dg && o.db && o.mean && o.var);
    return o;
}

static void ref_free(ref_out *o) { free(o->y), free(o->dx), free(o->dg), free(o->db), free(o->mean), free(o->var); }

/* The reference's own gradients against central differences (a few elements of each). */
static void check_reference_gradients(const nn_bnact_desc *d, double *x, double *gamma, double *beta, const double *w,
                                      const double *fm, const double *fv, const ref_out *an) {
    const size_t n = d->rows * (size_t)d->C;
    ref_out tmp = ref_alloc(n, d->C);
    const double h = 1e-5;
    double *targets[3] = {x, gamma, beta};
    const double *grads[3] = {an->dx, an->dg, an->db};
    const size_t counts[3] = {n, (size_t)d->C, (size_t)d->C};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < counts[k]; i += counts[k] / 7 + 1) {
            const double keep = targets[k][i];
            if (k == 0 && d->act != NN_ACT_NONE) { /* not astride a kink */
                reference(d, x, gamma, beta, NULL, fm, fv, &tmp);
                const double z = tmp.y[i];
                if (fabs(z) < 1e-3 || fabs(z - 6) < 1e-3) continue;
            }
            targets[k][i] = keep + h;
            double lp = loss(d, x, gamma, beta, w, fm, fv, &tmp);
            targets[k][i] = keep - h;
            double lm = loss(d, x, gamma, beta, w, fm, fv, &tmp);
            targets[k][i] = keep;
            double fd = (lp - lm) / (2 * h), g = grads[k][i];
            if (!(fabs(fd - g) <= 1e-5 + 1e-4 * fabs(fd)))
                print_message("reference gradient %d[%zu]: analytic %.9g, finite differences %.9g\n", k, i, g, fd);
            assert_true(fabs(fd - g) <= 1e-5 + 1e-4 * fabs(fd));
        }
    ref_free(&tmp);
}

/* max |a - b| / max(RMS(b), floor) */
static double err_rel(const float *a, const double *b, size_t n, double floor) {
    double ss = 0, mx = 0;
    for (size_t i = 0; i < n; i++) ss += b[i] * b[i];
    double rms = sqrt(ss / (double)(n ? n : 1));
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)a[i] - b[i]));
    return mx / fmax(rms, floor);
}

static void run_case(size_t rows, int C, nn_act act, int batch_stats, double offset, int threads) {
    const size_t n = rows * (size_t)C;
    nn_bnact_desc d = {rows, C, 0, act, batch_stats, 1e-3f};
    double *x = calloc(n, sizeof *x), *w = calloc(n, sizeof *w), *gamma = malloc((size_t)C * sizeof(double));
    double *beta = malloc((size_t)C * sizeof(double)), *fm = malloc((size_t)C * sizeof(double));
    double *fv = malloc((size_t)C * sizeof(double));
    float *xf = malloc(n * sizeof *xf), *wf = malloc(n * sizeof *wf), *y = malloc(n * sizeof *y);
    float *dx = malloc(n * sizeof *dx), *gf = malloc((size_t)C * 4), *bf = malloc((size_t)C * 4);
    float *mean = malloc((size_t)C * 4), *var = malloc((size_t)C * 4), *dg = malloc((size_t)C * 4);
    float *db = malloc((size_t)C * 4);
    void *ws = malloc(nn_bnact_workspace(&d, threads));
    assert_true(x && w && gamma && beta && fm && fv && xf && wf && y && dx && gf && bf && mean && var && dg && db && ws);
    for (int c = 0; c < C; c++) {
        gamma[c] = gf[c] = (float)(0.5 + urand());
        beta[c] = bf[c] = (float)(urand() * 4 - 1);
        fm[c] = mean[c] = (float)(offset + urand() - 0.5);
        fv[c] = var[c] = (float)(0.5 + urand());
    }
    for (size_t i = 0; i < n; i++) {
        xf[i] = (float)(offset + (urand() * 2 - 1) * (1 + (double)(i % (size_t)C) / C));
        wf[i] = (float)(urand() * 2 - 1);
        x[i] = xf[i], w[i] = wf[i];
    }
    ref_out r = ref_alloc(n, C);
    reference(&d, x, gamma, beta, w, fm, fv, &r);
    if (rows * (size_t)C <= 4000) check_reference_gradients(&d, x, gamma, beta, w, fm, fv, &r);

    nn_bnact_forward(&d, xf, y, gf, bf, mean, var, ws, threads);
    char what[160];
    snprintf(what, sizeof what, "rows %zu, C %d, act %d, %s statistics, offset %g, %d threads", rows, C, (int)act,
             batch_stats ? "batch" : "given", offset, threads);
    double e_y = err_rel(y, r.y, n, 1e-3), e_m = 0, e_v = 0;
    for (int c = 0; c < C; c++) {
        /* in units of the spread, less the mean's own fp32 rounding (an ulp) */
        e_m = fmax(e_m, (fabs(mean[c] - r.mean[c]) - FLT_EPSILON * fabs(r.mean[c])) / sqrt(r.var[c]));
        e_v = fmax(e_v, fabs(var[c] - r.var[c]) / r.var[c]);
    }
    if (!(e_y < 1e-4 && e_m < 1e-5 && e_v < 1e-4))
        print_message("%s: forward differs: y %.3g, mean %.3g, var %.3g\n", what, e_y, e_m, e_v);
    assert_true(e_y < 1e-4 && e_m < 1e-5 && e_v < 1e-4);

    nn_bnact_backward(&d, xf, wf, dx, 0, gf, bf, mean, var, dg, db, ws, threads);
    double e_dx = err_rel(dx, r.dx, n, 1e-6), e_dg = err_rel(dg, r.dg, (size_t)C, 1e-6);
    double e_db = err_rel(db, r.db, (size_t)C, 1e-6);
    if (!(e_dx < 1e-3 && e_dg < 1e-3 && e_db < 1e-4))
        print_message("%s: backward differs: dx %.3g, dgamma %.3g, dbeta %.3g\n", what, e_dx, e_dg, e_db);
    assert_true(e_dx < 1e-3 && e_dg < 1e-3 && e_db < 1e-4);

    /* added to what is there; and with d(x) not wanted, the parameter gradients alone */
    float *dx2 = malloc(n * sizeof *dx2), *dg2 = malloc((size_t)C * 4);
    assert_true(dx2 && dg2);
    for (size_t i = 0; i < n; i++) dx2[i] = (float)i * 0.25f;
    nn_bnact_backward(&d, xf, wf, dx2, 1, gf, bf, mean, var, NULL, NULL, ws, threads);
    for (size_t i = 0; i < n; i++) assert_true(fabsf(dx2[i] - ((float)i * 0.25f + dx[i])) <= 1e-6f * (1 + (float)i));
    nn_bnact_backward(&d, xf, wf, NULL, 0, gf, bf, mean, var, dg2, NULL, ws, threads);
    assert_memory_equal(dg2, dg, (size_t)C * 4);
    free(dx2), free(dg2);

    /* bf16 data: the same values (rounded to bf16 first) through the bf16 path, against
     * the fp32 path; outputs are rounded once more (8 bits: 0.4%). */
    nn_bnact_desc db16 = d;
    db16.bf16 = 1;
    uint16_t *xb = malloc(n * 2), *wb = malloc(n * 2), *yb = malloc(n * 2), *dxb = malloc(n * 2);
    float *y32 = malloc(n * 4), *dx32 = malloc(n * 4), *xr = malloc(n * 4), *wr = malloc(n * 4);
    assert_true(xb && wb && yb && dxb && y32 && dx32 && xr && wr);
    for (size_t i = 0; i < n; i++) {
        xb[i] = dfd_f32_to_bf16(xf[i]), wb[i] = dfd_f32_to_bf16(wf[i]);
        xr[i] = dfd_bf16_to_f32(xb[i]), wr[i] = dfd_bf16_to_f32(wb[i]);
    }
    float *m2 = malloc((size_t)C * 4), *v2 = malloc((size_t)C * 4), *m3 = malloc((size_t)C * 4), *v3 = malloc((size_t)C * 4);
    assert_true(m2 && v2 && m3 && v3);
    memcpy(m2, mean, (size_t)C * 4), memcpy(v2, var, (size_t)C * 4);
    memcpy(m3, mean, (size_t)C * 4), memcpy(v3, var, (size_t)C * 4);
    nn_bnact_forward(&d, xr, y32, gf, bf, m2, v2, ws, threads);
    nn_bnact_forward(&db16, xb, yb, gf, bf, m3, v3, ws, threads);
    for (int c = 0; c < C; c++) assert_true(fabsf(m2[c] - m3[c]) <= 1e-6f * (1 + fabsf(m2[c])) && fabsf(v2[c] - v3[c]) <= 1e-5f * v2[c]);
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(dfd_bf16_to_f32(yb[i]) - y32[i]) / fmax(fabs(y32[i]), 1e-2));
    if (!(worst <= 1.0 / 128)) print_message("%s: bf16 output off by %.3g (relative)\n", what, worst);
    assert_true(worst <= 1.0 / 128);
    nn_bnact_backward(&d, xr, wr, dx32, 0, gf, bf, m2, v2, NULL, NULL, ws, threads);
    nn_bnact_backward(&db16, xb, wb, dxb, 0, gf, bf, m3, v3, NULL, NULL, ws, threads);
    double ss = 0, sd = 0;
    for (size_t i = 0; i < n; i++) {
        ss += (double)dx32[i] * dx32[i];
        sd += (dfd_bf16_to_f32(dxb[i]) - (double)dx32[i]) * (dfd_bf16_to_f32(dxb[i]) - (double)dx32[i]);
    }
    if (!(sqrt(sd / fmax(ss, 1e-30)) <= 1e-2)) print_message("%s: bf16 d(x) off by %.3g x RMS\n", what, sqrt(sd / ss));
    assert_true(sqrt(sd / fmax(ss, 1e-30)) <= 1e-2);
    free(xb), free(wb), free(yb), free(dxb), free(y32), free(dx32), free(xr), free(wr);
    free(m2), free(v2), free(m3), free(v3);

    ref_free(&r);
    free(x), free(w), free(gamma), free(beta), free(fm), free(fv), free(xf), free(wf), free(y), free(dx);
    free(gf), free(bf), free(mean), free(var), free(dg), free(db), free(ws);
}

static void shapes_and_activations(void **state) {
    (void)state;
    const struct {
        size_t rows;
        int C;
    } shapes[] = {{37, 1}, {50, 3}, {33, 16}, {29, 24}, {13, 100}, {7, 300}, {1, 5}};
    const nn_act acts[] = {NN_ACT_NONE, NN_ACT_RELU, NN_ACT_RELU6};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int a = 0; a < 3; a++)
            for (int bs = 0; bs < 2; bs++) {
                if (shapes[s].rows == 1 && bs) continue; /* one row: variance 0, xhat 0 */
                run_case(shapes[s].rows, shapes[s].C, acts[a], bs, 0.0, 1);
            }
}

/* Enough data for several threads; a mean far from zero. */
static void threads_and_large_means(void **state) {
    (void)state;
    run_case(4099, 24, NN_ACT_RELU6, 1, 0.0, 3);
    run_case(1500, 96, NN_ACT_RELU, 1, 0.0, 3);
    run_case(3001, 40, NN_ACT_NONE, 1, 1000.0, 3);
    run_case(2000, 40, NN_ACT_RELU6, 0, 0.0, 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shapes_and_activations),
        cmocka_unit_test(threads_and_large_means),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
