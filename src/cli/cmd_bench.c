/* cmd_bench.c — `dfd bench`: how fast the nn engine runs dfd's architectures on this
 * machine: forward milliseconds per image, images per second and achieved GFLOP/s (2 x the
 * graph's multiply-accumulates), per precision and batch size, and training images per
 * second (forward + backward + Adam step). Warm-up passes (which build the plans) are not
 * timed; each figure is the median of the timed passes, as the machine may be noisy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl.h>

#include "cli/cli.h"
#include "models/models.h"
#include "nn/nn.h"

const char cmd_bench_help[] =
    "Usage: dfd bench [--json] [--arch NAME] [--precision fp32|bf16] [--batch B]\n"
    "                 [--iters N] [--threads T] [--size S] [--mode infer|train|both]\n\n"
    "Measures the oneDNN backend on dfd's architectures with random weights:\n"
    "  inference  ms per image and images/s at batch 1 and 8 (or --batch B), and the\n"
    "             GFLOP/s achieved (2 x multiply-accumulates of the graph per image);\n"
    "  training   images/s of forward + backward + Adam step at dfd train's batch, 32\n"
    "             (8 for architectures over 4 GMAC per image, such as Xception; or --batch B).\n"
    "Both precisions are measured (bf16 only where the CPU runs it natively) unless\n"
    "--precision picks one. Each figure is the median of N timed passes (default 10,\n"
    "training 5) after 2 untimed warm-up passes.\n\n"
    "  --arch NAME    one architecture (default: every image architecture of the registry)\n"
    "  --size S       input side in pixels (default: the architecture's)\n"
    "  --threads T    threads (default: all cores)\n"
    "  --mode M       infer, train or both (default both; --json defaults to infer)\n"
    "  --json         print a JSON array of rows {\"arch\", \"mode\", \"precision\", \"batch\",\n"
    "                 \"threads\", \"ms_per_image\", \"images_per_s\", \"gflops\", \"cpu_ms_per_image\"}\n\n"
    "CPU ms/image is the processor time of all threads (the median pass's): on a machine\n"
    "shared with other work it shows what a pass costs where wall time also counts waiting;\n"
    "with one thread it is close to the wall time the pass takes on an idle machine.\n\n"
    "Exit status: 0 on success, 1 when a measurement failed, 2 on a usage error.\n";

typedef struct bench_row {
    const char *arch, *mode, *prec;
    int batch, threads;
    double ms_per_image, images_per_s, gflops;
    double cpu_ms_per_image; /* processor time of all threads: robust to a busy machine */
} bench_row;

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

/* One measurement; returns 0 on success (the row filled), else prints why. */
static int measure(nn_graph *g, const char *arch, int train, nn_precision prec, int batch, int threads, int iters,
                   bench_row *row) {
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
    row->prec = nn_exec_precision(ex) == NN_PREC_BF16 ? "bf16" : "fp32";
    row->batch = batch;
    row->threads = nn_exec_pass_threads(ex, batch); /* what the pass ran on (small inference passes: fewer) */
    row->ms_per_image = med / batch;
    row->images_per_s = 1000.0 * batch / med;
    row->gflops = 2.0 * (double)nn_graph_macs(g) * (train ? 3.0 : 1.0) * row->images_per_s / 1e9;
    row->cpu_ms_per_image = median(tc, iters) / batch;
    rc = 0;
fail:
    if (rc) fprintf(stderr, "dfd bench: %s %s %s batch %d: %s\n", arch, train ? "training" : "inference",
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

static void print_row_json(const bench_row *r, int first) {
    printf("%s\n  {\"arch\": \"%s\", \"mode\": \"%s\", \"precision\": \"%s\", \"batch\": %d, \"threads\": %d, "
           "\"ms_per_image\": %.6g, \"images_per_s\": %.6g, \"gflops\": %.4g, \"cpu_ms_per_image\": %.6g}",
           first ? "" : ",", r->arch, r->mode, r->prec, r->batch, r->threads, r->ms_per_image, r->images_per_s, r->gflops,
           r->cpu_ms_per_image);
    fflush(stdout);
}

static void print_row_text(const bench_row *r) {
    printf("%-20s %-6s %-5s %5d %7d %10.2f %10.1f %9.1f %12.2f\n", r->arch, r->mode, r->prec, r->batch, r->threads, r->ms_per_image,
           r->images_per_s, r->gflops, r->cpu_ms_per_image);
    fflush(stdout);
}

int cmd_bench(int argc, char **argv) {
    int json = 0, batch = 0, iters = 0, threads = 0, size = 0, mode = -1; /* mode: 1 infer, 2 train, 3 both */
    const char *arch = NULL;
    nn_precision prec = NN_PREC_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(cmd_bench_help, stdout);
            return DFD_EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (i + 1 >= argc) {
            return cli_usage_error("bench", "unknown option or missing value: '%s'", a);
        } else if (!strcmp(a, "--arch")) {
            arch = argv[++i];
            if (!dfd_arch_find(arch)) return cli_usage_error("bench", "unknown architecture '%s'", arch);
        } else if (!strcmp(a, "--precision")) {
            const char *p = argv[++i];
            if (!strcmp(p, "fp32")) prec = NN_PREC_F32;
            else if (!strcmp(p, "bf16")) prec = NN_PREC_BF16;
            else return cli_usage_error("bench", "--precision is fp32 or bf16, not '%s'", p);
        } else if (!strcmp(a, "--mode")) {
            const char *m = argv[++i];
            if (!strcmp(m, "infer")) mode = 1;
            else if (!strcmp(m, "train")) mode = 2;
            else if (!strcmp(m, "both")) mode = 3;
            else return cli_usage_error("bench", "--mode is infer, train or both, not '%s'", m);
        } else if (!strcmp(a, "--batch") || !strcmp(a, "--iters") || !strcmp(a, "--threads") || !strcmp(a, "--size")) {
            if (cli_parse_int(argv[++i], 1, 4096, &v)) return cli_usage_error("bench", "%s needs a positive integer", a);
            if (!strcmp(a, "--batch")) batch = (int)v;
            else if (!strcmp(a, "--iters")) iters = (int)v;
            else if (!strcmp(a, "--threads")) threads = (int)v;
            else size = (int)v;
        } else {
            return cli_usage_error("bench", "unknown option '%s'", a);
        }
    }
    if (mode < 0) mode = json ? 1 : 3;
    if (!threads) threads = dfd_cpu_count();
    const int has_bf16 = nn_cpu_has_bf16();
    if (prec == NN_PREC_BF16 && !has_bf16) {
        fprintf(stderr, "dfd bench: this CPU (%s) has no native bf16\n", nn_cpu_isa());
        return DFD_EXIT_FAILED;
    }
    nn_precision precs[2];
    int nprec = 0;
    if (prec != NN_PREC_BF16) precs[nprec++] = NN_PREC_F32;
    if (prec != NN_PREC_F32 && has_bf16) precs[nprec++] = NN_PREC_BF16;
    int count = 0;
    const dfd_arch_info *list = dfd_arch_list(&count);
    if (!json) {
        const dnnl_version_t *dv = dnnl_version();
        printf("dfd bench: %d thread%s on %d core%s, ISA %s (native bf16: %s), oneDNN %d.%d.%d\n", threads,
               threads == 1 ? "" : "s", dfd_cpu_count(), dfd_cpu_count() == 1 ? "" : "s", nn_cpu_isa(),
               has_bf16 ? "yes" : "no", dv->major, dv->minor, dv->patch);
        printf("%-20s %-6s %-5s %5s %7s %10s %10s %9s %12s\n", "arch", "mode", "prec", "batch", "threads", "ms/image", "images/s", "GFLOP/s",
               "CPU ms/image");
    } else {
        printf("[");
    }
    int failed = 0, first = 1;
    for (int k = 0; k < count; k++) {
        const dfd_arch_info *ai = &list[k];
        if (arch ? strcmp(arch, ai->name) != 0 : (ai->is_video || !ai->has_head)) continue;
        dfd_arch_opts ao;
        dfd_arch_opts_default(&ao);
        ao.input_size = size;
        nn_graph *g = NULL;
        dfd_error err;
        dfd_error_clear(&err);
        if (dfd_arch_build(ai->name, &ao, &g, &err)) {
            fprintf(stderr, "dfd bench: %s: %s\n", ai->name, err.message);
            failed = 1;
            continue;
        }
        nn_graph_init_weights(g, 1);
        for (int m = 0; m < 2; m++) {
            int train = m == 1;
            if (!(mode & (1 << m))) continue;
            if (train && !ai->has_head) continue; /* a loss needs a logit */
            int batches[2] = {1, 8}, nb = 2;
            if (batch) batches[0] = batch, nb = 1;
            if (train && !batch) batches[0] = nn_graph_macs(g) > 4000000000ull ? 8 : 32, nb = 1;
            for (int p = 0; p < nprec; p++)
                for (int b = 0; b < nb; b++) {
                    bench_row row;
                    int n_it = iters ? iters : train ? 5 : 10;
                    if (measure(g, ai->name, train, precs[p], batches[b], threads, n_it, &row)) {
                        failed = 1;
                        continue;
                    }
                    if (json) print_row_json(&row, first);
                    else print_row_text(&row);
                    first = 0;
                }
        }
        nn_graph_free(g);
    }
    if (json) printf("\n]\n");
    return failed ? DFD_EXIT_FAILED : DFD_EXIT_OK;
}
