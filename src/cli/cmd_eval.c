/* cmd_eval.c — `dfd eval`: a model's metrics on a labelled folder of face crops. The
 * options mean what dfd_eval_opts_set says (src/train/options.c); this file prints. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dfd/train.h"

enum { O_JSON = 256, O_LIB };

static const cli_opt eval_opts[] = {
    {NULL, 0, NULL, "Options:"},
    {"model", O_LIB, "MODEL", "the model file (.safetensors; required)"},
    {"data", O_LIB, "DIR", "the labelled crops (required)"},
    {"level", O_LIB, "frame|video|group", "score crops, or aggregate each source video's crops, or the\n"
                                           "crops of each group (a clip's frames in a labels.csv) (frame);\n"
                                           "a video model always scores sequences"},
    {"aggregation", O_LIB, "confident|mean", "how a video's crops are combined (confident, as scan)"},
    {"split", O_LIB, "all|test|val|train", "which items: all (default), the official test list, or\n"
                                            "the validation groups `dfd train` held out (same --seed and\n"
                                            "--val-fraction as the training run: 1 and 0.2 by default)"},
    {"seed", O_LIB, "S", "the training run's seed, for --split val|train (1)"},
    {"val-fraction", O_LIB, "F", "the training run's --val-fraction, for --split val|train (0.2)"},
    {"flip", O_LIB, NULL, "average each crop's score with its mirror image's"},
    {"threshold", O_LIB, "T", "decide at T instead of the model's stored threshold"},
    {"limit", O_LIB, "N", "evaluate a fixed subset of N samples"},
    {"layout", O_LIB, "L", "dataset layout (auto)"},
    {"threads", O_LIB, "N", "engine threads (all cores)"},
    {"out", O_LIB, "DIR", "write metrics.json, scores.csv, roc.png and confusion.png"},
    {"json", O_JSON, NULL, "print metrics.json's metrics object instead of the report"},
    {0}};

const cli_command cmd_eval_cmd = {
    "eval",
    "Usage: dfd eval --model MODEL.safetensors --data DIR [options]\n\n"
    "Scores every face crop of DIR (a `dfd prepare` output, or a folder with labels.csv or\n"
    "real/ and fake/) with the model, as `dfd scan` would score it, and reports loss, accuracy,\n"
    "balanced accuracy, AUC, EER, precision/recall/F1 per class and the confusion matrix at\n"
    "the model's threshold. The same model and data always give the same numbers.\n\n",
    eval_opts, NULL};

/* Parses the options into o; returns DFD_EXIT_OK or the exit code of a usage error. */
static int parse(int argc, char **argv, dfd_eval_opts *o, int *json, const char **out) {
    int k, have_model = 0, have_data = 0;
    const char *val;
    dfd_error err;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_eval_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((k = cli_next(&p, &val)) > 0) {
        if (k == O_JSON) {
            *json = 1;
            continue;
        }
        const char *name = p.opt->name;
        if (dfd_eval_opts_set(o, name, val, &err)) return cli_usage_error("eval", "%s", err.message);
        have_model |= strcmp(name, "model") == 0;
        have_data |= strcmp(name, "data") == 0;
        if (strcmp(name, "out") == 0) *out = val;
    }
    if (k < 0) return DFD_EXIT_USAGE;
    if (p.first < argc) return cli_usage_error("eval", "unexpected argument '%s'", argv[p.first]);
    if (!have_model) return cli_usage_error("eval", "--model is required");
    if (!have_data) return cli_usage_error("eval", "--data is required");
    return DFD_EXIT_OK;
}

int cmd_eval(int argc, char **argv) {
    dfd_eval_opts *o = NULL;
    dfd_error err;
    if (dfd_eval_opts_create(&o, &err)) {
        fprintf(stderr, "dfd eval: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    int json = 0;
    const char *out = NULL;
    int rc = parse(argc, argv, o, &json, &out);
    if (rc) {
        dfd_eval_opts_destroy(o);
        return rc;
    }
    cli_progress bar;
    cli_progress_start(&bar, "evaluating");
    dfd_eval_opts_set_progress(o, cli_progress_fn, &bar);
    dfd_eval_result r;
    rc = dfd_eval_run(o, &r, &err);
    cli_progress_done(&bar);
    dfd_eval_opts_destroy(o);
    if (rc) {
        fprintf(stderr, "dfd eval: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    const dfd_metrics *m = &r.m;
    if (json) {
        char *t = dfd_metrics_json(m);
        if (!t) return DFD_EXIT_FAILED;
        printf("%s\n", t);
        dfd_free(t);
        return DFD_EXIT_OK;
    }
    printf("%ld %s (%ld real, %ld fake)%s, %.1f s\n", r.samples, r.level_video == 2 ? "groups" : r.level_video ? "videos" : "crops", m->n_real, m->n_fake,
           r.failures ? " (some unreadable, left out)" : "", r.seconds);
    printf("AUC %.4f   EER %.4f   log-loss %.4f\n", m->auc, m->eer, m->loss);
    printf("at threshold %.4f: accuracy %.4f, balanced accuracy %.4f\n", m->threshold, m->accuracy, m->balanced_accuracy);
    printf("           precision  recall     F1   support\n");
    const char *names[2] = {"REAL", "FAKE"};
    for (int c = 0; c < 2; c++)
        printf("  %-6s   %8.4f %8.4f %8.4f %8ld\n", names[c], m->cls[c].precision, m->cls[c].recall, m->cls[c].f1,
               m->cls[c].support);
    printf("confusion (rows = true, columns = predicted):\n");
    printf("            pred REAL  pred FAKE\n  true REAL %9ld  %9ld\n  true FAKE %9ld  %9ld\n", m->cm.tn, m->cm.fp, m->cm.fn,
           m->cm.tp);
    if (out) printf("wrote %s/metrics.json, scores.csv, roc.png, confusion.png\n", out);
    return DFD_EXIT_OK;
}
