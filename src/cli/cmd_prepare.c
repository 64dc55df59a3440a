/* cmd_prepare.c — `dfd prepare`: a dataset of images/videos to a dataset of face crops.
 * The options mean what dfd_prepare_opts_set says (src/train/options.c). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dfd/train.h"

enum { O_LIB = 256 };

static const cli_opt prepare_opts[] = {
    {NULL, 0, NULL, "Options:"},
    {"data", O_LIB, "DIR", "the dataset (required)"},
    {"out", O_LIB, "DIR", "where the crops, manifest.csv and prepare.json go (required)"},
    {"layout", O_LIB, "L", "auto, celebdf, ffpp, dfdc or generic (auto)"},
    {"per-video", O_LIB, "K", "crops from up to K evenly spaced frames per video (30)"},
    {"sequences", O_LIB, NULL, "for video models: one sequence of --frames crops per video's main\n"
                               "track; tracks found in fewer than --min-faces frames are dropped"},
    {"frames", O_LIB, "N", "frames per sequence (30)"},
    {"min-faces", O_LIB, "M", "shortest track kept in --sequences (80% of --frames)"},
    {"size", O_LIB, "S", "crop side in pixels (224)"},
    {"margin", O_LIB, "M", "crop margin, 1..4 (the contract's default)"},
    {"quality", O_LIB, "Q", "JPEG quality (95)"},
    {"workers", O_LIB, "N", "files processed at once (2)"},
    {"limit", O_LIB, "N", "only the first N files (a trial run)"},
    {"face-mode", O_LIB, "auto|short|full", "face detector mode (auto)"},
    {"models", O_LIB, "DIR", "where the face detector models are (as scan's --models)"},
    {0}};

const cli_command cmd_prepare_cmd = {
    "prepare",
    "Usage: dfd prepare --data DIR --out DIR [options]\n\n"
    "Finds the faces in every image and video of a dataset and writes crops cut by dfd's\n"
    "crop contract (docs/preprocessing.md) as JPEG under DIR/crops/{real,fake}/, with\n"
    "DIR/manifest.csv (file,label,group,source,frame,box,split) and DIR/prepare.json (the\n"
    "contract, the options, what was kept and dropped). `dfd train` and `dfd eval` read it.\n"
    "Layouts: Celeb-DF v2 (its official test list is kept as split=test), FaceForensics++,\n"
    "DFDC (dfdc_train_part_*/metadata.json), or generic (labels.csv, or real/ and fake/).\n"
    "The main face is used: the largest in an image, the longest track in a video. Running\n"
    "again skips the files already done (and resumes an interrupted run).\n\n",
    prepare_opts, NULL};

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static int on_progress(void *user, long done, long total, const dfd_prepare_summary *s) {
    char detail[160];
    snprintf(detail, sizeof detail, "%ld/%ld files, %ld crops, %ld without a face", done, total, s->crops, s->no_face);
    cli_progress_update(user, total ? (double)done / (double)total : 1, detail);
    return interrupted != 0;
}

/* Parses the options into o; returns DFD_EXIT_OK or the exit code of a usage error. */
static int parse(int argc, char **argv, dfd_prepare_opts *o, const char **out, int *sequences) {
    int k;
    const char *val, *data = NULL;
    dfd_error err;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_prepare_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((k = cli_next(&p, &val)) > 0) {
        const char *name = p.opt->name;
        if (dfd_prepare_opts_set(o, name, val, &err)) return cli_usage_error("prepare", "%s", err.message);
        if (strcmp(name, "data") == 0) data = val;
        if (strcmp(name, "out") == 0) *out = val;
        if (strcmp(name, "sequences") == 0) *sequences = 1;
    }
    if (k < 0) return DFD_EXIT_USAGE;
    if (p.first < argc) return cli_usage_error("prepare", "unexpected argument '%s'", argv[p.first]);
    if (!data || !*out) return cli_usage_error("prepare", "--data and --out are required");
    return DFD_EXIT_OK;
}

int cmd_prepare(int argc, char **argv) {
    dfd_prepare_opts *o = NULL;
    dfd_error err;
    if (dfd_prepare_opts_create(&o, &err)) {
        fprintf(stderr, "dfd prepare: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    const char *out = NULL;
    int sequences = 0;
    int rc = parse(argc, argv, o, &out, &sequences);
    if (rc) {
        dfd_prepare_opts_destroy(o);
        return rc;
    }
    cli_progress bar;
    cli_progress_start(&bar, "prepare");
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    dfd_prepare_summary s;
    rc = dfd_prepare_run(o, on_progress, &bar, &s, &err);
    sigaction(SIGINT, &old, NULL);
    cli_progress_done(&bar);
    dfd_prepare_opts_destroy(o);
    if (rc) {
        fprintf(stderr, "dfd prepare: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    printf("%ld files (%ld done in an earlier run); this run: %ld images, %ld videos, %.0f s\n", s.files, s.already_done,
           s.images, s.videos, s.seconds);
    printf("kept: %ld crops", s.crops);
    if (sequences) printf(" in %ld sequences", s.sequences);
    printf("\ndropped (this run): %ld files without a face, %ld unreadable", s.no_face, s.unreadable);
    if (sequences) printf(", %ld tracks too short, %ld still images", s.short_tracks, s.stills_skipped);
    printf("; %ld sampled frames without a face, %ld other faces not used\n", s.frames_no_face, s.other_faces);
    printf("wrote %s/manifest.csv and %s/prepare.json\n", out, out);
    return DFD_EXIT_OK;
}
