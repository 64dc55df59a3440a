/* cmd_calibrate.c — `dfd calibrate`: a copy of a model whose threshold flags at most a
 * chosen share of the user's own real faces. The options mean what dfd_calibrate_opts_set
 * says (src/train/options.c); this file prints. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dfd/train.h"

enum { O_LIB = 256 };

static const cli_opt calibrate_opts[] = {
    {NULL, 0, NULL, "Options:"},
    {"model", O_LIB, "MODEL", "the model file to calibrate (.safetensors; required)"},
    {"out", O_LIB, "FILE", "the calibrated copy to write (required; may be MODEL itself)"},
    {"data", O_LIB, "DIR", "face crops of real footage you trust (a `dfd prepare` output, or a folder\n"
                           "with labels.csv or real/ and fake/); repeat for more folders. Fakes in it\n"
                           "are scored to report what is still caught; they do not move the threshold"},
    {"data-val", O_LIB, "DIR", "as --data, but only the folder's validation groups (those `dfd eval\n"
                               "--split val` picks, with --seed and --val-fraction)"},
    {"fpr", O_LIB, "F", "the share of the real crops the new threshold may flag (0.03)"},
    {"degrade", O_LIB, "K", "also score K degraded copies of each real crop: JPEG q20-95, and at random\n"
                            "down-and-up scaling, blur, noise, as low-quality video has (0; at most 16)"},
    {"seed", O_LIB, "S", "seed of the degradations and of the validation split (1)"},
    {"val-fraction", O_LIB, "F", "the training run's --val-fraction, for --data-val (0.2)"},
    {"limit", O_LIB, "N", "at most N crops of each folder, a seeded subset (all)"},
    {"threads", O_LIB, "N", "engine threads (all cores)"},
    {0}};

const cli_command cmd_calibrate_cmd = {
    "calibrate",
    "Usage: dfd calibrate --model MODEL --data DIR [--data DIR ...] --out NEW.safetensors [options]\n\n"
    "Scores the real face crops of each DIR as `dfd scan` would (and, with --degrade, degraded\n"
    "copies of them), then writes a copy of the model whose stored threshold is the lowest that\n"
    "judges at most --fpr of them FAKE. Use it when a detector flags too much of your own real\n"
    "footage: scores and AUC do not change, only where REAL ends and FAKE begins. The copy\n"
    "records how its threshold was chosen (metadata \"calibration\"). Give it real faces the\n"
    "model never trained on, and measure the result on others (`dfd eval`).\n\n",
    calibrate_opts, NULL};

static void pct(double v) {
    if (isnan(v)) printf("%8s", "-");
    else printf("%7.1f%%", 100 * v);
}

int cmd_calibrate(int argc, char **argv) {
    dfd_calibrate_opts *o = NULL;
    dfd_error err;
    if (dfd_calibrate_opts_create(&o, &err)) {
        fprintf(stderr, "dfd calibrate: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    int k, have_model = 0, have_data = 0, have_out = 0, rc = DFD_EXIT_OK;
    const char *val, *out = NULL;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_calibrate_cmd, argc, argv)) rc = DFD_EXIT_USAGE;
    while (!rc && (k = cli_next(&p, &val)) > 0) {
        const char *name = p.opt->name;
        if (dfd_calibrate_opts_set(o, name, val, &err)) rc = cli_usage_error("calibrate", "%s", err.message);
        have_model |= strcmp(name, "model") == 0;
        have_data |= strncmp(name, "data", 4) == 0;
        if (strcmp(name, "out") == 0) have_out = 1, out = val;
    }
    if (!rc && k < 0) rc = DFD_EXIT_USAGE;
    if (!rc && p.first < argc) rc = cli_usage_error("calibrate", "unexpected argument '%s'", argv[p.first]);
    if (!rc && !have_model) rc = cli_usage_error("calibrate", "--model is required");
    if (!rc && !have_data) rc = cli_usage_error("calibrate", "--data or --data-val is required");
    if (!rc && !have_out) rc = cli_usage_error("calibrate", "--out is required");
    if (rc) {
        dfd_calibrate_opts_destroy(o);
        return rc;
    }
    cli_progress bar;
    cli_progress_start(&bar, "scoring");
    dfd_calibrate_opts_set_progress(o, cli_progress_fn, &bar);
    dfd_calibrate_result r;
    int failed = dfd_calibrate_run(o, &r, &err);
    cli_progress_done(&bar);
    dfd_calibrate_opts_destroy(o);
    if (failed) {
        fprintf(stderr, "dfd calibrate: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    printf("%ld real crops%s", r.reals, r.degraded ? "" : "\n");
    if (r.degraded) printf(" and %ld degraded copies\n", r.degraded);
    if (r.fakes) printf("%ld fake crops (reported, not used for the threshold)\n", r.fakes);
    if (r.failures) printf("%ld crops could not be read (left out)\n", r.failures);
    printf("threshold %.4f -> %.4f: reals judged FAKE %.1f%% -> %.1f%%\n", r.threshold_before, r.threshold,
           100 * r.fpr_before, 100 * r.fpr);
    if (r.degraded) printf("  of the degraded copies: %.1f%% -> %.1f%%\n", 100 * r.fpr_degraded_before, 100 * r.fpr_degraded);
    printf("%-40s %7s %8s %8s %7s %8s %8s\n", "folder", "reals", "flagged", "now", "fakes", "caught", "now");
    for (int s = 0; s < r.n_sources; s++) {
        const dfd_calibrate_source *x = &r.sources[s];
        char name[1100];
        snprintf(name, sizeof name, "%s%s", x->data, x->val_only ? " (val)" : "");
        size_t n = strlen(name);
        printf("%-40s %7ld ", n > 40 ? name + n - 40 : name, x->real);
        pct(x->fpr_before), printf(" "), pct(x->fpr_after);
        printf(" %7ld ", x->fake);
        pct(x->tpr_before), printf(" "), pct(x->tpr_after);
        printf("\n");
    }
    printf("wrote %s (%.1f s)\n", out, r.seconds);
    return DFD_EXIT_OK;
}
