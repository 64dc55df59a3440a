/*
 * dfd/train.h — making and judging models: cutting a dataset's faces into crops
 * (`dfd prepare`), training (`dfd train`), evaluating (`dfd eval`). Conventions as in
 * dfd.h. Options are opaque objects set by name with text values, the names and values of
 * the command's options (`dfd train --help`, docs/training.md), so that a program and the
 * CLI mean the same by each; the library copies the values. One run per options object at
 * a time; separate runs may go on in separate threads, though each uses all the cores it
 * is given. Progress callbacks are called on the thread that called the run (prepare: from
 * its worker threads, one at a time).
 */
#ifndef DFD_TRAIN_PUBLIC_H
#define DFD_TRAIN_PUBLIC_H

#include "dfd/dfd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Metrics of a binary classifier (label 1 = FAKE) -------------------------------- */

/* Confusion matrix at one threshold; rows are the true label, columns the prediction. */
typedef struct dfd_confusion {
    long tn, fp, fn, tp;
} dfd_confusion;

typedef struct dfd_class_report {
    double precision, recall, f1; /* NaN when undefined (0/0) */
    long support;                 /* items whose true label is this class */
} dfd_class_report;

typedef struct dfd_metrics {
    long n, n_real, n_fake;
    double threshold;          /* the threshold the confusion and reports use */
    double loss;               /* mean binary log-loss of the scores as probabilities */
    double accuracy;
    double balanced_accuracy;  /* mean of the two recalls */
    double auc;                /* NaN when one class is absent */
    double eer;                /* equal error rate, interpolated; NaN when one class is absent */
    double eer_threshold;      /* a threshold that operates near the EER */
    dfd_confusion cm;
    dfd_class_report cls[2];   /* [0] REAL, [1] FAKE */
} dfd_metrics;

/* The metrics as a JSON object (metrics.json's "metrics"); malloc'ed (dfd_free), NULL on
 * no memory. */
DFD_API char *dfd_metrics_json(const dfd_metrics *m);

/* ---- Preparing a dataset of face crops (`dfd prepare`) ------------------------------ */

typedef struct dfd_prepare_opts dfd_prepare_opts;

DFD_API int dfd_prepare_opts_create(dfd_prepare_opts **out, dfd_error *err);
DFD_API void dfd_prepare_opts_destroy(dfd_prepare_opts *o);
/* Sets the option `name` (as `dfd prepare --NAME`, without the dashes) to value (NULL for
 * a flag such as "sequences"). DFD_E_ARG names the option and what it wants. */
DFD_API int dfd_prepare_opts_set(dfd_prepare_opts *o, const char *name, const char *value, dfd_error *err);

typedef struct dfd_prepare_summary {
    long files;                /* source files in the dataset (after limit) */
    long already_done;         /* found done in the journal of an earlier run */
    long images, videos;       /* processed in this run */
    long crops;                /* crops in the manifest (all runs) */
    long sequences;            /* sequences in the manifest (all runs) */
    long no_face;              /* files where no face was found (dropped) */
    long unreadable;           /* files that could not be decoded (dropped) */
    long short_tracks;         /* sequences mode: tracks with too few faces (dropped) */
    long frames_no_face;       /* sampled frames without a face */
    long other_faces;          /* faces besides the main one (not used) */
    long stills_skipped;       /* sequences mode: still images (not videos), skipped */
    double seconds;
} dfd_prepare_summary;

/* Called after every file (from the worker threads, serialised); non-zero cancels. */
typedef int (*dfd_prepare_progress_fn)(void *user, long done, long total, const dfd_prepare_summary *s);

/* Detects faces in every file of the dataset and writes OUT/crops/{real,fake}/...jpg,
 * OUT/manifest.csv and OUT/prepare.json; resumable (docs/training.md). "data" and "out"
 * must be set (DFD_E_ARG). */
DFD_API int dfd_prepare_run(const dfd_prepare_opts *o, dfd_prepare_progress_fn fn, void *user, dfd_prepare_summary *s,
                            dfd_error *err);

/* ---- Training (`dfd train`) ---------------------------------------------------------- */

typedef struct dfd_train_opts dfd_train_opts;

/* Options with their defaults for an image (video 0) or video (video 1) model. */
DFD_API int dfd_train_opts_create(int video, dfd_train_opts **out, dfd_error *err);
DFD_API void dfd_train_opts_destroy(dfd_train_opts *o);
/* Sets the option `name` (as `dfd train --NAME`, without the dashes: "arch", "epochs",
 * "sbi-mask", ...) to value (NULL for a flag such as "freeze-bn"). DFD_E_ARG names the
 * option and what it wants; DFD_E_NOT_FOUND for an unknown name. */
DFD_API int dfd_train_opts_set(dfd_train_opts *o, const char *name, const char *value, dfd_error *err);
/* DFD_E_ARG when the options cannot make a run ("arch" and "data" are required; "task"
 * is manipulation or synthetic, synthetic for image models only); "out" is checked by
 * dfd_train_run, which needs it (dfd_train_preview does not). */
DFD_API int dfd_train_opts_check(const dfd_train_opts *o, dfd_error *err);

/* One epoch of training, as the history CSV and plot record it. NaN = not measured. */
typedef struct dfd_history_row {
    int epoch;          /* 1-based, counted over both stages */
    int stage;          /* 1 or 2 */
    double lr;
    double train_loss, train_acc, train_auc;
    double val_loss, val_acc, val_auc, val_eer;
    double seconds, images_per_s;
    double feed_wait_s;   /* of `seconds`, the wall time the step waited for the feed */
    double feed_cpu_s;    /* CPU seconds spent making training samples (all feed threads) */
} dfd_history_row;

typedef enum dfd_train_phase {
    DFD_TRAIN_STEP = 0,
    DFD_TRAIN_VALIDATING = 1,
    DFD_TRAIN_EPOCH_DONE = 2,
    DFD_TRAIN_CACHING = 3 /* decoding the crops into the cache: step of steps */
} dfd_train_phase;

typedef struct dfd_train_progress {
    dfd_train_phase phase;
    int stage, epoch, max_epoch; /* epoch counted over both stages, 1-based */
    long step, steps;            /* batches in this epoch */
    double loss, acc, auc;       /* running means over the epoch so far (auc refreshed now and then) */
    double images_per_s, eta_s;  /* eta of this epoch (DFD_TRAIN_CACHING: crops decoded per second) */
    double feed_share;           /* DFD_TRAIN_STEP: share of the epoch's time so far the step waited for the feed */
    const dfd_history_row *row;  /* DFD_TRAIN_EPOCH_DONE: the epoch's row */
    int improved;                /* DFD_TRAIN_EPOCH_DONE: a new best */
} dfd_train_progress;

/* Called from the training thread; return non-zero to stop (after the current step). */
typedef int (*dfd_train_progress_fn)(void *user, const dfd_train_progress *p);

typedef struct dfd_train_summary {
    int epochs_run, best_epoch;
    double best_val_auc;
    dfd_metrics best_val;
    double train_seconds, images_per_s;
    long n_train_real, n_train_fake, n_val_real, n_val_fake;
    long failures;
    int stopped_early, cancelled;
    char best_path[1100], last_path[1100];
} dfd_train_summary;

/* Trains as the options say, writing into "out": checkpoint.safetensors (+ its
 * .state.safetensors) after every epoch, best.safetensors, history.csv/.png. */
DFD_API int dfd_train_run(const dfd_train_opts *o, dfd_train_progress_fn fn, void *user, dfd_train_summary *s,
                          dfd_error *err);
/* Writes a grid of n training samples per kind (real, self-blended, augmented) as a PNG. */
DFD_API int dfd_train_preview(const dfd_train_opts *o, const char *png, int n, dfd_error *err);

/* ---- Evaluating a model (`dfd eval`) --------------------------------------------------- */

typedef struct dfd_eval_opts dfd_eval_opts;

DFD_API int dfd_eval_opts_create(dfd_eval_opts **out, dfd_error *err);
DFD_API void dfd_eval_opts_destroy(dfd_eval_opts *o);
/* Sets the option `name` (as `dfd eval --NAME`: "model", "data", "level", "flip", ...). */
DFD_API int dfd_eval_opts_set(dfd_eval_opts *o, const char *name, const char *value, dfd_error *err);
/* Progress of the scoring, fraction in [0, 1], on the calling thread; non-zero cancels. */
DFD_API void dfd_eval_opts_set_progress(dfd_eval_opts *o, dfd_progress_fn fn, void *user);

typedef struct dfd_eval_result {
    dfd_metrics m;
    long samples;     /* scored units: crops, or videos at video level, or sequences */
    long failures;    /* files that could not be read (left out) */
    double seconds;
    int level_video;  /* 0 crops, 1 videos, 2 groups */
    char model_arch[64];
} dfd_eval_result;

/* Scores the data with the model exactly as `dfd scan` would score the same crops and
 * computes the metrics at the threshold; deterministic. "model" and "data" must be set. */
DFD_API int dfd_eval_run(const dfd_eval_opts *o, dfd_eval_result *res, dfd_error *err);

/* ---- Calibrating a model's threshold on real faces (`dfd calibrate`) ------------------- */

/* Scores the real face crops of one or more folders (and, with "degrade", randomly
 * degraded copies of them: JPEG re-compression, down-and-up scaling, blur, noise, as low
 * quality video has) as `dfd scan` scores a face, and writes a copy of the model whose
 * stored threshold is the lowest one that flags at most "fpr" of them. The weights are
 * copied unchanged; the metadata gains "calibration" (the rule, the sources, the figures).
 * Fakes in the folders are scored too, to report what the new threshold still catches; they
 * do not move it. Options by name, as `dfd calibrate --NAME`: "model", "out", "data" and
 * "data-val" (repeatable: a folder's every crop, or only its validation groups as
 * `dfd eval --split val` picks them), "fpr", "degrade", "seed", "val-fraction", "limit",
 * "threads". Deterministic for the same options. */
typedef struct dfd_calibrate_opts dfd_calibrate_opts;

DFD_API int dfd_calibrate_opts_create(dfd_calibrate_opts **out, dfd_error *err);
DFD_API void dfd_calibrate_opts_destroy(dfd_calibrate_opts *o);
DFD_API int dfd_calibrate_opts_set(dfd_calibrate_opts *o, const char *name, const char *value, dfd_error *err);
DFD_API void dfd_calibrate_opts_set_progress(dfd_calibrate_opts *o, dfd_progress_fn fn, void *user);

#define DFD_CALIBRATE_MAX_SOURCES 16

typedef struct dfd_calibrate_source {
    char data[1024];
    int val_only;                 /* 1: its validation groups only ("data-val") */
    long real, fake;              /* crops scored (reals without their degraded copies) */
    double fpr_before, fpr_after; /* its real crops flagged at the old / new threshold */
    double tpr_before, tpr_after; /* its fakes flagged (NaN without fakes) */
} dfd_calibrate_source;

typedef struct dfd_calibrate_result {
    double threshold_before, threshold;
    double fpr_before, fpr;                   /* over every real scored, degraded copies included */
    double fpr_degraded_before, fpr_degraded; /* over the degraded copies alone (NaN without) */
    long reals, degraded, fakes, failures;    /* failures: crops that could not be read (left out) */
    int n_sources;
    dfd_calibrate_source sources[DFD_CALIBRATE_MAX_SOURCES];
    double seconds;
} dfd_calibrate_result;

/* Calibrates as the options say and writes "out" atomically ("out" may be "model"). */
DFD_API int dfd_calibrate_run(const dfd_calibrate_opts *o, dfd_calibrate_result *res, dfd_error *err);

/* ---- Measuring the engine (`dfd bench`) ------------------------------------------------ */

enum { DFD_BENCH_INFER = 1, DFD_BENCH_TRAIN = 2, DFD_BENCH_BOTH = 3 };

typedef struct dfd_bench_options {
    const char *arch; /* one architecture; NULL = every image architecture with a head */
    int precision;    /* 0 both (bf16 where the CPU runs it natively), 1 fp32, 2 bf16 */
    int batch;        /* 0: 1 and 8 for inference, 32 (8 over 4 GMAC per image) for training */
    int iters;        /* timed passes; 0: 10 (training 5), after 2 untimed warm-up passes */
    int threads;      /* 0: all cores */
    int size;         /* input side; 0: the architecture's */
    int mode;         /* DFD_BENCH_INFER, _TRAIN or _BOTH (default) */
} dfd_bench_options;

DFD_API void dfd_bench_options_default(dfd_bench_options *o);

/* One measurement: the median pass's figures. */
typedef struct dfd_bench_row {
    const char *arch, *mode, *precision; /* mode "infer" or "train", precision "fp32" or "bf16" */
    int batch, threads;                  /* threads: what the pass ran on */
    double ms_per_image, images_per_s, gflops;
    double cpu_ms_per_image;             /* processor time of all threads */
    const char *error;                   /* NULL, or why this measurement failed */
} dfd_bench_row;

/* Called on the calling thread after each measurement (strings valid during the call);
 * non-zero stops. */
typedef int (*dfd_bench_row_fn)(void *user, const dfd_bench_row *row);

/* Measures the oneDNN backend on dfd's architectures with random weights. Returns DFD_OK,
 * DFD_E_ARG for bad options (an unknown architecture), DFD_E_UNSUPPORTED for bf16 on a CPU
 * without it, or the code of the first measurement that failed (each reported to fn). */
DFD_API int dfd_bench_run(const dfd_bench_options *o, dfd_bench_row_fn fn, void *user, dfd_error *err);

typedef struct dfd_bench_machine_info {
    int threads, cores;
    const char *isa;    /* oneDNN's name for the CPU's instruction set (static) */
    int native_bf16;
    int onednn[3];      /* oneDNN's version */
} dfd_bench_machine_info;

/* What dfd_bench_run with `threads` (0: all cores) measures on. */
DFD_API void dfd_bench_machine(int threads, dfd_bench_machine_info *m);

/* ---- Measuring the heat maps (`dfd explain-eval`, docs/explain.md) -------------------- */

#define DFD_EXPLAIN_EVAL_METHODS 7

typedef struct dfd_explain_eval_options {
    const char *model;  /* image model; NULL = the shipped one */
    const char *methods[DFD_EXPLAIN_EVAL_METHODS]; /* "gradcam++" (what dfd_options.explain
                                                    * makes), "gradcam", "gradcam-mid",
                                                    * "gradxinput", "occlusion", "occlusion-fast";
                                                    * references drawn from the blend mask:
                                                    * "ref-inside", "ref-edge"; and "ref-centre", a
                                                    * fixed cone on the crop's centre (what knowing
                                                    * nothing but where faces sit scores) */
    int n_methods;      /* 0: gradcam++ alone */
    long fakes;         /* self-blended fakes to make (500) */
    long seed;          /* blend randomness (1) */
    int threads;        /* 0: all cores */
    int landmarks;      /* 1: blend along the face's Face Mesh landmarks (the masks `dfd train
                         * --sbi-mask landmarks` makes); 0: the ellipse (the default) */
    int blank;          /* deletion check: cells hidden with grey (0, the default), a blurred
                         * copy of the crop (1), or the real face before blending (2: the
                         * forgery undone there) */
    const char *models_dir; /* where face-landmark.safetensors is (landmarks); NULL = search */
    int parts;          /* 1 (not with landmarks): blend a part of the face only, an ellipse a
                         * third to a half of the face's size placed at random on it (a local
                         * edit, a composite): where the region lies cannot be guessed, as the
                         * whole-face masks' always-central region can (ref-centre) */
} dfd_explain_eval_options;

DFD_API void dfd_explain_eval_options_default(dfd_explain_eval_options *o);

typedef struct dfd_explain_eval_method {
    const char *method;
    double pointing, pointing_flagged;       /* share of maps whose peak is in the blend (all; flagged FAKE) */
    double mass_inside, mass_inside_flagged; /* the maps' mass inside the blend */
    double drop_top, drop_random;            /* mean P(fake) lost blanking the top 20% cells / 20% at random */
    double top_beats_random;                 /* share where the top cells' drop is larger */
    double ms_per_face;
} dfd_explain_eval_method;

typedef struct dfd_explain_eval_result {
    char model[128];
    long fakes, flagged;  /* made; flagged FAKE at the model's threshold */
    double threshold, mean_p_fake;
    double chance;        /* the blended region's share of the crop: a uniform map's mass inside */
    long no_mesh;         /* landmarks: faces skipped because Face Mesh found no face in the crop */
    int n_methods;
    dfd_explain_eval_method methods[DFD_EXPLAIN_EVAL_METHODS];
} dfd_explain_eval_result;

/* Makes self-blended fakes from the largest face of every other photo of files (in the
 * order given, from the second) and measures each method's maps against the blend masks.
 * DFD_E_NOT_FOUND when no photo has a face. */
DFD_API int dfd_explain_eval_run(const dfd_explain_eval_options *o, const char *const *files, int n_files,
                                 dfd_explain_eval_result *res, dfd_error *err);

#ifdef __cplusplus
}
#endif
#endif
