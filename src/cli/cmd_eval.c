/* cmd_eval.c — `dfd eval`: a model's metrics on a labelled folder of face crops. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "train/train.h"

const char cmd_eval_help[] =
    "Usage: dfd eval --model MODEL.safetensors --data DIR [options]\n\n"
    "Scores every face crop of DIR (a `dfd prepare` output, or a folder with labels.csv or\n"
    "real/ and fake/) with the model, as `dfd scan` would score it, and reports loss, accuracy,\n"
    "balanced accuracy, AUC, EER, precision/recall/F1 per class and the confusion matrix at\n"
    "the model's threshold. The same model and data always give the same numbers.\n\n"
    "Options:\n"
    "  --level frame|video|group  score crops, or aggregate each source video's crops, or the\n"
    "                          crops of each group (a clip's frames in a labels.csv) (frame);\n"
    "                          a video model always scores sequences\n"
    "  --aggregation confident|mean   how a video's crops are combined (confident, as scan)\n"
    "  --split all|test|val|train     which items: all (default), the official test list, or\n"
    "                          the validation groups `dfd train` held out (same --seed and\n"
    "                          --val-fraction as the training run: 1 and 0.2 by default)\n"
    "  --flip                  average each crop's score with its mirror image's\n"
    "  --threshold T           decide at T instead of the model's stored threshold\n"
    "  --limit N               evaluate a fixed subset of N samples\n"
    "  --layout L              dataset layout (auto)\n"
    "  --threads N             engine threads (all cores)\n"
    "  --out DIR               write metrics.json, scores.csv, roc.png and confusion.png\n"
    "  --json                  print metrics.json's metrics object instead of the report\n";

static int on_progress(void *user, double f) {
    cli_progress_update(user, f, NULL);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    dfd_eval_opts o;
    dfd_eval_opts_default(&o);
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = strcmp(a, "--model") == 0 || strcmp(a, "--data") == 0 || strcmp(a, "--level") == 0 ||
                    strcmp(a, "--split") == 0 || strcmp(a, "--threshold") == 0 || strcmp(a, "--limit") == 0 ||
                    strcmp(a, "--layout") == 0 || strcmp(a, "--threads") == 0 || strcmp(a, "--out") == 0 ||
                    strcmp(a, "--seed") == 0 || strcmp(a, "--val-fraction") == 0 || strcmp(a, "--aggregation") == 0;
        if (takes && !v) return cli_usage_error(cmd, "%s needs a value", a);
        long l;
        if (strcmp(a, "--flip") == 0) o.flip_tta = 1;
        else if (strcmp(a, "--json") == 0) json = 1;
        else if (!takes) return cli_usage_error(cmd, "unknown option '%s'", a);
        else if (i++, strcmp(a, "--model") == 0) o.model = v;
        else if (strcmp(a, "--data") == 0) o.data = v;
        else if (strcmp(a, "--out") == 0) o.out = v;
        else if (strcmp(a, "--level") == 0) {
            if (strcmp(v, "frame") == 0) o.video_level = 0;
            else if (strcmp(v, "video") == 0) o.video_level = 1;
            else if (strcmp(v, "group") == 0) o.video_level = 2;
            else return cli_usage_error(cmd, "--level is frame, video or group, not '%s'", v);
        } else if (strcmp(a, "--aggregation") == 0) {
            if (strcmp(v, "confident") == 0) o.aggregation = DFD_AGG_CONFIDENT;
            else if (strcmp(v, "mean") == 0) o.aggregation = DFD_AGG_MEAN;
            else return cli_usage_error(cmd, "--aggregation is confident or mean, not '%s'", v);
        } else if (strcmp(a, "--split") == 0) {
            if (strcmp(v, "all") == 0) o.split = DFD_EVAL_ALL;
            else if (strcmp(v, "test") == 0) o.split = DFD_EVAL_TEST;
            else if (strcmp(v, "val") == 0) o.split = DFD_EVAL_VAL;
            else if (strcmp(v, "train") == 0) o.split = DFD_EVAL_TRAIN;
            else return cli_usage_error(cmd, "--split is all, test, val or train, not '%s'", v);
        } else if (strcmp(a, "--layout") == 0) {
            if (dfd_layout_parse(v, &o.layout)) return cli_usage_error(cmd, "unknown layout '%s'", v);
        } else if (strcmp(a, "--threshold") == 0) {
            if (cli_parse_double(v, 0, 1, &o.threshold)) return cli_usage_error(cmd, "--threshold wants 0..1");
        } else if (strcmp(a, "--val-fraction") == 0) {
            if (cli_parse_double(v, 0, 0.9, &o.val_fraction)) return cli_usage_error(cmd, "--val-fraction wants 0..0.9");
        } else {
            if (cli_parse_int(v, 0, 1000000000L, &l)) return cli_usage_error(cmd, "%s wants a whole number", a);
            if (strcmp(a, "--limit") == 0) o.limit = l;
            else if (strcmp(a, "--threads") == 0) o.threads = (int)l;
            else o.seed = (uint64_t)l;
        }
    }
    if (!o.model) return cli_usage_error(cmd, "--model is required");
    if (!o.data) return cli_usage_error(cmd, "--data is required");
    cli_progress bar;
    cli_progress_start(&bar, "evaluating");
    o.progress = on_progress;
    o.user = &bar;
    dfd_eval_result r;
    dfd_error err;
    dfd_error_clear(&err);
    int rc = dfd_eval_run(&o, &r, &err);
    cli_progress_done(&bar);
    if (rc) {
        fprintf(stderr, "dfd eval: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    const dfd_metrics *m = &r.m;
    if (json) {
        json_t *j = dfd_metrics_to_json(m);
        char *t = j ? json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
        json_decref(j);
        if (!t) return DFD_EXIT_FAILED;
        printf("%s\n", t);
        free(t);
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
    if (o.out) printf("wrote %s/metrics.json, scores.csv, roc.png, confusion.png\n", o.out);
    return DFD_EXIT_OK;
}
