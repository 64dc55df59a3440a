/* cmd_explain_eval.c — `dfd explain-eval` (hidden: a measurement, not a user's command):
 * how faithful the heat maps are, measured by dfd_explain_eval_run (src/train/
 * explain_eval.c says how); this file lists the photos and prints the table that
 * docs/explain.md quotes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dfd/train.h"

enum { O_MODEL = 256, O_METHOD, O_SEED, O_THREADS, O_SBI_MASK, O_BLANK, O_MODELS };

static const cli_opt explain_eval_opts[] = {
    {NULL, 0, NULL, "Options:"},
    {"model", O_MODEL, "PATH", "image model (default: the shipped one)"},
    {"method", O_METHOD, "M", "gradcam++ (default: what scan --explain makes), gradcam++fine, gradcam,\n"
                              "gradcam-mid, cam (the head's per-cell scores: Grad-CAM without\n"
                              "its ReLU), gradcam-full (Grad-CAM at the grid's resolution, from\n"
                              "the crop moved 16 ways), "
                              "gradxinput, occlusion or occlusion-fast (what scan --explain\n"
                              "makes: one-cell probes every third cell); ref-inside or\n"
                              "ref-edge: maps drawn from the blend mask (the region, its\n"
                              "boundary), ref-centre: a fixed cone on the crop's centre, for\n"
                              "reference; up to seven, to compare"},
    {"fakes", 'n', "N", "fakes to make (default 500)"},
    {"seed", O_SEED, "S", "blend randomness (default 1)"},
    {"sbi-mask", O_SBI_MASK, "M", "ellipse (default: the inner face), landmarks (along each face's\n"
                                  "Face Mesh outline, as train --sbi-mask landmarks does) or part\n"
                                  "(a smaller ellipse placed at random on the face: a local edit)"},
    {"blank", O_BLANK, "B", "deletion check: hide cells with grey (default), blur (a blurred\n"
                            "copy of the crop) or original (the real face before blending)"},
    {"models", O_MODELS, "DIR", "where face-landmark.safetensors is (default: the built-in search)"},
    {"threads", O_THREADS, "N", "CPU threads (default: all cores)"},
    {0}};

const cli_command cmd_explain_eval_cmd = {
    "explain-eval",
    "Usage: dfd explain-eval [OPTIONS] DIR\n\n"
    "Measures the heat maps on self-blended fakes made from the real photos in DIR (every\n"
    "other file in name order, from the second): pointing game, map mass inside the\n"
    "blended region against chance, and a deletion check. See docs/explain.md.\n\n",
    explain_eval_opts, NULL};

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int cmd_explain_eval(int argc, char **argv) {
    dfd_explain_eval_options o;
    dfd_explain_eval_options_default(&o);
    int c;
    long v;
    const char *val;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_explain_eval_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((c = cli_next(&p, &val)) > 0) {
        switch (c) {
        case O_MODEL: o.model = val; break;
        case O_METHOD:
            if (o.n_methods == DFD_EXPLAIN_EVAL_METHODS)
                return cli_usage_error("explain-eval", "--method: at most %d", DFD_EXPLAIN_EVAL_METHODS);
            o.methods[o.n_methods++] = val;
            break;
        case 'n':
            if (cli_parse_int(val, 1, 100000, &o.fakes)) return cli_usage_error("explain-eval", "-n must be 1..100000");
            break;
        case O_SEED:
            if (cli_parse_int(val, 0, 1L << 30, &o.seed)) return cli_usage_error("explain-eval", "--seed must be >= 0");
            break;
        case O_SBI_MASK:
            if (strcmp(val, "ellipse") && strcmp(val, "landmarks") && strcmp(val, "part"))
                return cli_usage_error("explain-eval", "--sbi-mask: ellipse, landmarks or part, not '%s'", val);
            o.landmarks = !strcmp(val, "landmarks");
            o.parts = !strcmp(val, "part");
            break;
        case O_BLANK:
            if (!strcmp(val, "grey")) o.blank = 0;
            else if (!strcmp(val, "blur")) o.blank = 1;
            else if (!strcmp(val, "original")) o.blank = 2;
            else return cli_usage_error("explain-eval", "--blank: grey, blur or original, not '%s'", val);
            break;
        case O_MODELS: o.models_dir = val; break;
        case O_THREADS:
            if (cli_parse_int(val, 1, CLI_THREADS_MAX, &v))
                return cli_usage_error("explain-eval", "--threads must be 1..%d", CLI_THREADS_MAX);
            o.threads = (int)v;
            break;
        }
    }
    if (c < 0) return DFD_EXIT_USAGE;
    if (p.first != argc - 1) return cli_usage_error("explain-eval", "give one directory of real photos");
    char *dir = argv[p.first];
    cli_file_list files = {0};
    if (cli_files_add(&files, &dir, 1, 0)) {
        fprintf(stderr, "dfd explain-eval: out of memory\n");
        return DFD_EXIT_FAILED;
    }
    qsort(files.paths, (size_t)files.n, sizeof files.paths[0], cmp_name);
    dfd_explain_eval_result r;
    dfd_error err;
    int rc = dfd_explain_eval_run(&o, (const char *const *)files.paths, files.n, &r, &err);
    cli_files_free(&files);
    if (rc == DFD_E_ARG) return cli_usage_error("explain-eval", "%s", err.message);
    if (rc == DFD_E_NOT_FOUND && !strcmp(err.message, "no face found in the photos")) {
        fprintf(stderr, "dfd explain-eval: no face found in '%s'\n", dir);
        return DFD_EXIT_FAILED;
    }
    if (rc) {
        fprintf(stderr, "dfd explain-eval: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    printf("model %s, %ld self-blended fakes from %s (every other photo from the second), seed %ld\n", r.model, r.fakes,
           dir, o.seed);
    printf("flagged FAKE at the model's threshold %.4f: %ld (%.1f%%), mean P(fake) %.3f\n", r.threshold, r.flagged,
           100.0 * r.flagged / r.fakes, r.mean_p_fake);
    printf("blend mask: %s; deletion by %s\n", o.landmarks ? "Face Mesh landmarks" : o.parts ? "part of the face (ellipse placed at random)" : "ellipse", o.blank == 2 ? "restoring the original" : o.blank == 1 ? "blur" : "grey");
    if (o.landmarks) printf("faces skipped, no mesh found in the crop: %ld\n", r.no_mesh);
    printf("blended region (cells with mask > 0.5): %.1f%% of the crop = chance\n\n", 100.0 * r.chance);
    printf("| method | pointing game | (flagged) | mass inside | x chance | (flagged) | P drop, top 20%% | P drop, random 20%% | top > random | ms/face |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < r.n_methods; m++) {
        const dfd_explain_eval_method *s = &r.methods[m];
        printf("| %s | %.1f%% | %.1f%% | %.1f%% | %.2f | %.1f%% | %.3f | %.3f | %.1f%% | %.1f |\n", s->method,
               100.0 * s->pointing, 100.0 * s->pointing_flagged, 100.0 * s->mass_inside, s->mass_inside / r.chance,
               100.0 * s->mass_inside_flagged, s->drop_top, s->drop_random, 100.0 * s->top_beats_random, s->ms_per_face);
    }
    return DFD_EXIT_OK;
}
