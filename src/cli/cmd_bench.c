/* cmd_bench.c — `dfd bench`: how fast the nn engine runs dfd's architectures on this
 * machine; the measuring is the library's (dfd_bench_run), this file prints the rows. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dfd/train.h"

enum { O_JSON = 256, O_ARCH, O_PREC, O_BATCH, O_ITERS, O_THREADS, O_SIZE, O_MODE };

static const cli_opt bench_opts[] = {
    {"arch", O_ARCH, "NAME", "one architecture (default: every image architecture of the registry)"},
    {"precision", O_PREC, "fp32|bf16", "one precision (default: both, bf16 where the CPU has it)"},
    {"batch", O_BATCH, "B", "one batch size (default: 1 and 8; training 32, or 8 over 4 GMAC)"},
    {"iters", O_ITERS, "N", "timed passes (default 10, training 5)"},
    {"size", O_SIZE, "S", "input side in pixels (default: the architecture's)"},
    {"threads", O_THREADS, "T", "threads (default: all cores)"},
    {"mode", O_MODE, "M", "infer, train or both (default both; --json defaults to infer)"},
    {"json", O_JSON, NULL, "print a JSON array of rows {\"arch\", \"mode\", \"precision\", \"batch\",\n"
                           "\"threads\", \"ms_per_image\", \"images_per_s\", \"gflops\", \"cpu_ms_per_image\"}"},
    {0}};

const cli_command cmd_bench_cmd = {
    "bench",
    "Usage: dfd bench [--json] [--arch NAME] [--precision fp32|bf16] [--batch B]\n"
    "                 [--iters N] [--threads T] [--size S] [--mode infer|train|both]\n\n"
    "Measures the oneDNN backend on dfd's architectures with random weights:\n"
    "  inference  ms per image and images/s at batch 1 and 8 (or --batch B), and the\n"
    "             GFLOP/s achieved (2 x multiply-accumulates of the graph per image);\n"
    "  training   images/s of forward + backward + Adam step at dfd train's batch, 32\n"
    "             (8 for architectures over 4 GMAC per image, such as Xception; or --batch B).\n"
    "Both precisions are measured (bf16 only where the CPU runs it natively) unless\n"
    "--precision picks one. Each figure is the median of N timed passes (default 10,\n"
    "training 5) after 2 untimed warm-up passes.\n\n",
    bench_opts,
    "CPU ms/image is the processor time of all threads (the median pass's): on a machine\n"
    "shared with other work it shows what a pass costs where wall time also counts waiting;\n"
    "with one thread it is close to the wall time the pass takes on an idle machine.\n\n"
    "Exit status: 0 on success, 1 when a measurement failed, 2 on a usage error.\n"};

typedef struct printer {
    int json, first;
} printer;

static int print_row(void *user, const dfd_bench_row *r) {
    printer *pr = user;
    if (r->error) {
        fprintf(stderr, "dfd bench: %s\n", r->error);
        return 0;
    }
    if (pr->json)
        printf("%s\n  {\"arch\": \"%s\", \"mode\": \"%s\", \"precision\": \"%s\", \"batch\": %d, \"threads\": %d, "
               "\"ms_per_image\": %.6g, \"images_per_s\": %.6g, \"gflops\": %.4g, \"cpu_ms_per_image\": %.6g}",
               pr->first ? "" : ",", r->arch, r->mode, r->precision, r->batch, r->threads, r->ms_per_image,
               r->images_per_s, r->gflops, r->cpu_ms_per_image);
    else
        printf("%-20s %-6s %-5s %5d %7d %10.2f %10.1f %9.1f %12.2f\n", r->arch, r->mode, r->precision, r->batch,
               r->threads, r->ms_per_image, r->images_per_s, r->gflops, r->cpu_ms_per_image);
    pr->first = 0;
    fflush(stdout);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    dfd_bench_options o;
    dfd_bench_options_default(&o);
    int json = 0, mode = 0, k;
    const char *v;
    long n;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_bench_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((k = cli_next(&p, &v)) > 0) {
        switch (k) {
        case O_JSON: json = 1; break;
        case O_ARCH: o.arch = v; break;
        case O_PREC:
            if (!strcmp(v, "fp32")) o.precision = 1;
            else if (!strcmp(v, "bf16")) o.precision = 2;
            else return cli_usage_error("bench", "--precision is fp32 or bf16, not '%s'", v);
            break;
        case O_MODE:
            if (!strcmp(v, "infer")) mode = DFD_BENCH_INFER;
            else if (!strcmp(v, "train")) mode = DFD_BENCH_TRAIN;
            else if (!strcmp(v, "both")) mode = DFD_BENCH_BOTH;
            else return cli_usage_error("bench", "--mode is infer, train or both, not '%s'", v);
            break;
        default:
            if (cli_parse_int(v, 1, 4096, &n)) return cli_usage_error("bench", "--%s needs a positive integer", p.opt->name);
            if (k == O_BATCH) o.batch = (int)n;
            else if (k == O_ITERS) o.iters = (int)n;
            else if (k == O_THREADS) o.threads = (int)n;
            else o.size = (int)n;
        }
    }
    if (k < 0) return DFD_EXIT_USAGE;
    if (p.first < argc) return cli_usage_error("bench", "unexpected argument '%s'", argv[p.first]);
    o.mode = mode ? mode : json ? DFD_BENCH_INFER : DFD_BENCH_BOTH;
    dfd_bench_machine_info m;
    dfd_bench_machine(o.threads, &m);
    if (o.precision == 2 && !m.native_bf16) {
        fprintf(stderr, "dfd bench: this CPU (%s) has no native bf16\n", m.isa);
        return DFD_EXIT_FAILED;
    }
    if (!json) {
        printf("dfd bench: %d thread%s on %d core%s, ISA %s (native bf16: %s), oneDNN %d.%d.%d\n", m.threads,
               m.threads == 1 ? "" : "s", m.cores, m.cores == 1 ? "" : "s", m.isa, m.native_bf16 ? "yes" : "no",
               m.onednn[0], m.onednn[1], m.onednn[2]);
        printf("%-20s %-6s %-5s %5s %7s %10s %10s %9s %12s\n", "arch", "mode", "prec", "batch", "threads", "ms/image",
               "images/s", "GFLOP/s", "CPU ms/image");
    }
    printer pr = {json, 1};
    dfd_error err;
    if (json) printf("[");
    int rc = dfd_bench_run(&o, print_row, &pr, &err);
    if (rc == DFD_E_ARG) return cli_usage_error("bench", "%s", err.message);
    if (json) printf("\n]\n");
    return rc ? DFD_EXIT_FAILED : DFD_EXIT_OK;
}
