/* cmd_prepare.c — `dfd prepare`: a dataset of images/videos to a dataset of face crops. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "face/face.h"
#include "train/train.h"

const char cmd_prepare_help[] =
    "Usage: dfd prepare --data DIR --out DIR [options]\n\n"
    "Finds the faces in every image and video of a dataset and writes crops cut by dfd's\n"
    "crop contract (docs/preprocessing.md) as JPEG under DIR/crops/{real,fake}/, with\n"
    "DIR/manifest.csv (file,label,group,source,frame,box,split) and DIR/prepare.json (the\n"
    "contract, the options, what was kept and dropped). `dfd train` and `dfd eval` read it.\n"
    "Layouts: Celeb-DF v2 (its official test list is kept as split=test), FaceForensics++,\n"
    "DFDC (dfdc_train_part_*/metadata.json), or generic (labels.csv, or real/ and fake/).\n"
    "The main face is used: the largest in an image, the longest track in a video. Running\n"
    "again skips the files already done (and resumes an interrupted run).\n\n"
    "Options:\n"
    "  --layout auto|celebdf|ffpp|dfdc|generic   (auto)\n"
    "  --per-video K     crops from up to K evenly spaced frames per video (30)\n"
    "  --sequences       for video models: one sequence of --frames crops per video's main\n"
    "                    track; tracks found in fewer than --min-faces frames are dropped\n"
    "  --frames N        (30)    --min-faces M (80% of N)\n"
    "  --size S          crop side in pixels (224)  --margin M  (the contract's default)\n"
    "  --quality Q       JPEG quality (95)\n"
    "  --workers N       files processed at once (2)\n"
    "  --limit N         only the first N files (a trial run)\n"
    "  --face-mode auto|short|full   face detector mode (auto)\n"
    "  --models DIR      where the face detector models are\n";

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

int cmd_prepare(int argc, char **argv) {
    const char *cmd = "prepare";
    dfd_prepare_opts o;
    dfd_prepare_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        double d;
        if (strcmp(a, "--sequences") == 0) {
            o.sequences = 1;
            continue;
        }
        if (!v) return cli_usage_error(cmd, "unknown option '%s', or it needs a value", a);
        i++;
        if (strcmp(a, "--data") == 0) o.data = v;
        else if (strcmp(a, "--out") == 0) o.out = v;
        else if (strcmp(a, "--models") == 0) o.models_dir = v;
        else if (strcmp(a, "--layout") == 0) {
            if (dfd_layout_parse(v, &o.layout)) return cli_usage_error(cmd, "unknown layout '%s'", v);
        } else if (strcmp(a, "--face-mode") == 0) {
            if (strcmp(v, "auto") == 0) o.face_mode = DFD_FACE_AUTO;
            else if (strcmp(v, "short") == 0) o.face_mode = DFD_FACE_SHORT;
            else if (strcmp(v, "full") == 0) o.face_mode = DFD_FACE_FULL;
            else return cli_usage_error(cmd, "unknown face mode '%s' (auto, short, full)", v);
        } else if (strcmp(a, "--margin") == 0) {
            if (cli_parse_double(v, 1, 4, &d)) return cli_usage_error(cmd, "--margin wants 1..4");
            o.margin = (float)d;
        } else if (strcmp(a, "--per-video") == 0 || strcmp(a, "--frames") == 0 || strcmp(a, "--min-faces") == 0 ||
                   strcmp(a, "--size") == 0 || strcmp(a, "--quality") == 0 || strcmp(a, "--workers") == 0 ||
                   strcmp(a, "--limit") == 0) {
            if (cli_parse_int(v, 1, 1000000000L, &l)) return cli_usage_error(cmd, "%s wants a positive whole number", a);
            if (strcmp(a, "--per-video") == 0) o.per_video = (int)l;
            else if (strcmp(a, "--frames") == 0) o.frames = (int)l;
            else if (strcmp(a, "--min-faces") == 0) o.min_faces = (int)l;
            else if (strcmp(a, "--size") == 0) o.size = (int)l;
            else if (strcmp(a, "--quality") == 0) o.quality = (int)l;
            else if (strcmp(a, "--workers") == 0) o.workers = (int)l;
            else o.limit = l;
        } else return cli_usage_error(cmd, "unknown option '%s'", a);
    }
    if (!o.data || !o.out) return cli_usage_error(cmd, "--data and --out are required");
    cli_progress bar;
    cli_progress_start(&bar, "prepare");
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    dfd_prepare_summary s;
    dfd_error err;
    dfd_error_clear(&err);
    int rc = dfd_prepare_run(&o, on_progress, &bar, &s, &err);
    sigaction(SIGINT, &old, NULL);
    cli_progress_done(&bar);
    if (rc) {
        fprintf(stderr, "dfd prepare: %s\n", err.message);
        return DFD_EXIT_FAILED;
    }
    printf("%ld files (%ld done in an earlier run); this run: %ld images, %ld videos, %.0f s\n", s.files, s.already_done,
           s.images, s.videos, s.seconds);
    printf("kept: %ld crops", s.crops);
    if (o.sequences) printf(" in %ld sequences", s.sequences);
    printf("\ndropped (this run): %ld files without a face, %ld unreadable", s.no_face, s.unreadable);
    if (o.sequences) printf(", %ld tracks too short, %ld still images", s.short_tracks, s.stills_skipped);
    printf("; %ld sampled frames without a face, %ld other faces not used\n", s.frames_no_face, s.other_faces);
    printf("wrote %s/manifest.csv and %s/prepare.json\n", o.out, o.out);
    return DFD_EXIT_OK;
}
