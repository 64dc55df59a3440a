/* cmd_ensemble.c — `dfd ensemble --out OUT MODEL MODEL...`: joins image models dfd trained
 * into one model file whose P(fake) is their logit mean (dfd_model_ensemble in
 * include/dfd/model.h, which checks that the members fit together). */
#include <stdio.h>

#include "cli.h"
#include "dfd/model.h"

enum { O_OUT = 256, O_THRESHOLD };

static const cli_opt ensemble_opts[] = {
    {"out", O_OUT, "FILE", "the model file to write (required)"},
    {"threshold", O_THRESHOLD, "T", "the decision threshold to store, 0..1 (default: the members'\n"
                                    "thresholds averaged as logits, a starting point only)"},
    {0}};

const cli_command cmd_ensemble_cmd = {
    "ensemble",
    "Usage: dfd ensemble --out FILE [--threshold T] MODEL MODEL [MODEL...]\n\n"
    "Joins 2 to 8 image models trained by dfd (the same architecture, input size, crop\n"
    "contract and task, e.g. one recipe trained with different --seed) into one model\n"
    "file: P(fake) is the sigmoid of the mean of their logits. It loads and runs as any\n"
    "model (scan, serve, eval, calibrate, heat maps), costing the members' sum.\n"
    "Choose its threshold on validation data: `dfd eval` reports the EER threshold,\n"
    "`dfd calibrate` sets one from real faces; or give it with --threshold.\n\n",
    ensemble_opts,
    "Exit status: 0 when the model was written, 1 when it could not be, 2 on a usage error.\n"};

int cmd_ensemble(int argc, char **argv) {
    const char *out = NULL;
    double threshold = -1;
    int k;
    const char *val;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_ensemble_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((k = cli_next(&p, &val)) > 0) {
        switch (k) {
        case O_OUT: out = val; break;
        case O_THRESHOLD:
            if (cli_parse_double(val, 0, 1, &threshold)) return cli_usage_error("ensemble", "--threshold: 0..1");
            break;
        }
    }
    if (k < 0) return DFD_EXIT_USAGE;
    if (!out) return cli_usage_error("ensemble", "--out FILE is required");
    int n = argc - p.first;
    if (n < 2 || n > DFD_MODEL_MAX_MEMBERS)
        return cli_usage_error("ensemble", "expects 2 to %d models (got %d)", DFD_MODEL_MAX_MEMBERS, n);
    char *summary = NULL;
    dfd_error err;
    if (dfd_model_ensemble((const char *const *)(argv + p.first), n, out, threshold, &summary, &err) != DFD_OK) {
        fprintf(stderr, "dfd ensemble: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    printf("%s\n", summary);
    dfd_free(summary);
    return DFD_EXIT_OK;
}
