/* bench.c — how fast the nn engine runs dfd's architectures on this machine (`dfd bench`,
 * dfd_bench_run in include/dfd/train.h): forward milliseconds per image, images per second
 * and achieved GFLOP/s (2 x the graph's multiply-accumulates), per precision and batch
 * size, and training images per second (forward + backward + Adam step). Warm-up passes
 * (which build the plans) are not timed; each figure is the median of the timed passes,
 * as the machine may be noisy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "models/models.h"
#include "nn/nn.h"
#include "train/train.h"


static double cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static size_t item_size(nn_graph *g, int node) {
    const nn_node *n = nn_graph_node(g, node);
    size_t s = 1;
    for (int i = 0; i < n->ndim; i++) s *= (size_t)n->shape[i];
    return s;
}

static float *random_floats(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof *x);
    if (!x) return NULL;
    nn_rng r;
    nn_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
    return x;
}

/* One measurement; returns 0 on success (the row filled), else the code, saying why in *errp. */
static int measure(nn_graph *g, const char *arch, int train, nn_precision prec, int batch, int threads, int iters,
                   dfd_bench_row *row, dfd_error *errp) {
    dfd_error err;
    dfd_error_clear(&err);
    nn_exec_opts o;
    nn_exec_opts_default(&o);
    o.backend = NN_BACKEND_DNNL;
    o.precision = prec;
    o.max_batch = batch;
    o.training = train;
    o.no_input_grad = train; /* as dfd train runs: nothing upstream of the first layer learns */
    o.threads = threads;
    nn_exec *ex = NULL;
    nn_optim *opt = NULL;
    float *x = NULL, *labels = NULL, *dl = NULL;
    double *t = NULL, *tc = NULL;
    int rc = 1;
    if (nn_exec_create(g, &o, &ex, &err)) goto fail;
    if (train) {
        nn_optim_opts oo;
        nn_optim_opts_default(&oo, NN_OPT_ADAM);
        if (nn_optim_create(g, &oo, &opt, &err)) goto fail;
    }
    int out = nn_graph_output(g, 0);
    size_t nout = item_size(g, out) * (size_t)batch;
    x = random_floats(item_size(g, nn_graph_input(g)) * (size_t)batch, 7);
    labels = random_floats(nout, 8);
    dl = calloc(nout, sizeof *dl);
    t = calloc((size_t)iters, sizeof *t);
    tc = calloc((size_t)iters, sizeof *tc);
    if (!x || !labels || !dl || !t || !tc) {
        dfd_fail(&err, DFD_E_NOMEM, "no memory");
        goto fail;
    }
    for (size_t i = 0; i < nout; i++) labels[i] = labels[i] > 0;
    for (int it = -2; it < iters; it++) {
        double t0 = dfd_now_ms(), c0 = cpu_ms();
        if (train) nn_graph_zero_grad(g);
        if (nn_forward(ex, x, batch, &err)) goto fail;
        if (train) {
            size_t cnt;
            const float *logits = nn_output(ex, 0, &cnt);
            nn_bce_logits(logits, labels, NULL, (int)cnt, dl);
            const float *d[1] = {dl};
            if (nn_backward(ex, d, &err)) goto fail;
            nn_optim_step(opt, 1e-4f);
        } else {
            size_t cnt;
            if (!nn_output(ex, 0, &cnt)) { /* the output's conversion to fp32 counts too */
                dfd_fail(&err, DFD_E_INTERNAL, "no output");
                goto fail;
            }
        }
        if (it >= 0) {
            t[it] = dfd_now_ms() - t0;
            tc[it] = cpu_ms() - c0;
        }
    }
    double med = median(t, iters);
    row->arch = arch;
    row->mode = train ? "train" : "infer";
    row->precision = nn_exec_precision(ex) == NN_PREC_BF16 ? "bf16" : "fp32";
    row->batch = batch;
    row->threads = nn_exec_pass_threads(ex, batch); /* what the pass ran on (small inference passes: fewer) */
    row->ms_per_image = med / batch;
    row->images_per_s = 1000.0 * batch / med;
    row->gflops = 2.0 * (double)nn_graph_macs(g) * (train ? 3.0 : 1.0) * row->images_per_s / 1e9;
    row->cpu_ms_per_image = median(tc, iters) / batch;
    rc = 0;
fail:
    if (rc) rc = dfd_fail(errp, err.code ? err.code : DFD_E_INTERNAL, "%s %s %s batch %d: %s", arch, train ? "training" : "inference",
                          prec == NN_PREC_BF16 ? "bf16" : "fp32", batch, err.message);
    free(t);
    free(tc);
    free(dl);
    free(labels);
    free(x);
    nn_optim_free(opt);
    nn_exec_free(ex);
    return rc;
}

void dfd_bench_options_default(dfd_bench_options *o) {
    memset(o, 0, sizeof *o);
    o->mode = DFD_BENCH_BOTH;
}

void dfd_bench_machine(int threads, dfd_bench_machine_info *m) {
    memset(m, 0, sizeof *m);
    m->cores = dfd_cpu_count();
    m->threads = threads > 0 ? threads : m->cores;
    m->isa = nn_cpu_isa();
    m->native_bf16 = nn_cpu_has_bf16();
    const dnnl_version_t *dv = dnnl_version();
    m->onednn[0] = dv->major, m->onednn[1] = dv->minor, m->onednn[2] = dv->patch;
}

int dfd_bench_run(const dfd_bench_options *o, dfd_bench_row_fn fn, void *user, dfd_error *err) {
    dfd_bench_options def;
    if (!o) dfd_bench_options_default(&def), o = &def;
    if (o->arch && !dfd_arch_find(o->arch)) return dfd_fail(err, DFD_E_ARG, "unknown architecture '%s'", o->arch);
    if (o->mode < DFD_BENCH_INFER || o->mode > DFD_BENCH_BOTH) return dfd_fail(err, DFD_E_ARG, "unknown mode %d", o->mode);
    if (o->precision < 0 || o->precision > 2) return dfd_fail(err, DFD_E_ARG, "unknown precision %d", o->precision);
    if (o->batch < 0 || o->batch > 4096 || o->iters < 0 || o->iters > 4096 || o->threads < 0 || o->threads > 4096 ||
        o->size < 0 || o->size > 4096)
        return dfd_fail(err, DFD_E_ARG, "batch, iters, threads and size are 0 (default) or 1..4096");
    int threads = o->threads ? o->threads : dfd_cpu_count();
    const int has_bf16 = nn_cpu_has_bf16();
    if (o->precision == 2 && !has_bf16)
        return dfd_fail(err, DFD_E_UNSUPPORTED, "this CPU (%s) has no native bf16", nn_cpu_isa());
    nn_precision precs[2];
    int nprec = 0;
    if (o->precision != 2) precs[nprec++] = NN_PREC_F32;
    if (o->precision != 1 && has_bf16) precs[nprec++] = NN_PREC_BF16;
    int count = 0, failed = DFD_OK;
    const dfd_arch_info *list = dfd_arch_list(&count);
    for (int k = 0; k < count; k++) {
        const dfd_arch_info *ai = &list[k];
        if (o->arch ? strcmp(o->arch, ai->name) != 0 : (ai->is_video || !ai->has_head)) continue;
        dfd_arch_opts ao;
        dfd_arch_opts_default(&ao);
        ao.input_size = o->size;
        nn_graph *g = NULL;
        dfd_error e;
        dfd_error_clear(&e);
        if (dfd_arch_build(ai->name, &ao, &g, &e)) {
            dfd_bench_row row = {.arch = ai->name, .error = e.message};
            if (!failed) failed = dfd_fail(err, e.code, "%s: %s", ai->name, e.message);
            if (fn && fn(user, &row)) return dfd_fail(err, DFD_E_CANCELLED, "cancelled");
            continue;
        }
        nn_graph_init_weights(g, 1);
        for (int m = 0; m < 2; m++) {
            int train = m == 1;
            if (!(o->mode & (1 << m))) continue;
            if (train && !ai->has_head) continue; /* a loss needs a logit */
            int batches[2] = {1, 8}, nb = 2;
            if (o->batch) batches[0] = o->batch, nb = 1;
            if (train && !o->batch) batches[0] = nn_graph_macs(g) > 4000000000ull ? 8 : 32, nb = 1;
            for (int p = 0; p < nprec; p++)
                for (int b = 0; b < nb; b++) {
                    dfd_bench_row row;
                    memset(&row, 0, sizeof row);
                    int n_it = o->iters ? o->iters : train ? 5 : 10;
                    dfd_error_clear(&e);
                    if (measure(g, ai->name, train, precs[p], batches[b], threads, n_it, &row, &e)) {
                        row.arch = ai->name;
                        row.mode = train ? "train" : "infer";
                        row.precision = precs[p] == NN_PREC_BF16 ? "bf16" : "fp32";
                        row.batch = batches[b];
                        row.error = e.message;
                        if (!failed) failed = dfd_fail(err, e.code, "%s", e.message);
                    }
                    if (fn && fn(user, &row)) {
                        nn_graph_free(g);
                        return dfd_fail(err, DFD_E_CANCELLED, "cancelled");
                    }
                }
        }
        nn_graph_free(g);
    }
    return failed;
}
