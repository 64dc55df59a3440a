/*
 * detect — the analysis pipeline: from a file or buffer to a verdict per face, per
 * frame and overall, and the result object behind dfd_result (dfd.result/1 JSON).
 *
 * The public entry points are in include/dfd/dfd.h (dfd_ctx_create, dfd_analyze_*,
 * dfd_result_*); this header is what the rest of the library (server, train's
 * evaluation) may use of the module's internals: building results and aggregating
 * per-frame scores.
 */
#ifndef DFD_DETECT_H
#define DFD_DETECT_H

#include <stddef.h>

#include "core/core.h"
#include "media/media.h" /* dfd_media_kind */

/* DFD_RESULT_SCHEMA ("dfd.result/1") is public: dfd.h. */


/* One face seen in one frame (or in the image). */
typedef struct dfd_face_obs {
    int track;          /* id of the face (image) or track (video) it belongs to */
    float box[4];       /* x, y, w, h in source pixels */
    double p_fake;      /* combined (dfd_combine); NaN when not scored */
    double p_manipulated, p_synthetic; /* each detector's; NaN when not scored / no such detector */
    int kind;           /* dfd_fake_kind */
} dfd_face_obs;

typedef struct dfd_frame_res {
    int index;          /* frame index in the video */
    double time_s;
    dfd_face_obs *faces;
    int n_faces;
} dfd_frame_res;

/* One face (image) or one track (video) with its overall score. */
typedef struct dfd_face_res {
    int id;
    float box[4];       /* image: the face's box; video: the box in its best-scored frame */
    double p_fake;      /* combined (dfd_combine) from the two below */
    double p_manipulated; /* aggregated over time (and with the video model) */
    double p_synthetic;   /* aggregated over time; NaN without a synthetic-face detector */
    int kind;             /* dfd_fake_kind */
    double p_fake_video_model; /* from the CNN-LSTM when one ran, else NaN */
    int *frames;        /* frame indices (video), n_frames of them */
    int n_frames;
    /* Heat maps (dfd_options.explain), each DFD_HEAT_CELLS values (detect.h's "Heat maps"):
     * NULL when not made; heat_s NULL without a synthetic-face detector. For a video track,
     * of the crop in its most suspicious frame (the one `box` is from). */
    float *heat_m, *heat_s;
    int heat_method;      /* DFD_EXPLAIN_*: how heat_m was made */
    int heat_method_s;    /* and heat_s */
    dfd_image heat_crop;  /* the manipulation model's crop the map covers (zeroed when none) */
    float heat_square[3]; /* that crop's square in source pixels: x, y, side */
    int heat_frame;       /* video: index of that frame; -1 for images */
    double heat_time_s;   /* video: its time; NaN for images */
} dfd_face_res;

struct dfd_result {
    char *file;
    dfd_media_kind media;
    int verdict;                /* dfd_verdict */
    double p_fake;              /* combined, set by dfd_result_decide; NaN when none */
    double threshold;           /* the threshold p_fake is compared with (its detector's) */
    double p_manipulated, threshold_manipulated; /* the maximum over faces; the threshold used */
    double p_synthetic, threshold_synthetic;     /* NaN without a synthetic-face detector */
    int kind;                   /* dfd_fake_kind, set by dfd_result_decide */
    char *error;                /* NULL when none */
    int status;                 /* DFD_OK, or the DFD_E_* code of the failure in error */
    char *model_image, *model_video, *model_synthetic; /* names of the models used, or NULL */
    dfd_face_res *faces;
    int n_faces;
    dfd_frame_res *frames;      /* videos only */
    int n_frames;
    int frames_skipped;         /* corrupt or undecodable frames skipped in a video */
    double t_decode_ms, t_faces_ms, t_classify_ms, t_total_ms;
};

/* A new empty result for `file` (copied); NULL on no memory. */
dfd_result *dfd_result_new(const char *file, dfd_media_kind media);
/* Marks the result as ERROR with the failure's status code (DFD_OK is taken as
 * DFD_E_INTERNAL: an error always has a code) and a message (copied). Returns DFD_OK or
 * DFD_E_NOMEM. */
int dfd_result_set_error(dfd_result *r, int code, const char *message);
/* Sets p_fake, threshold, kind and the verdict from p_manipulated, threshold_manipulated,
 * p_synthetic and threshold_synthetic (dfd_combine), and whether there is an error. */
void dfd_result_decide(dfd_result *r);

/* ---- Two detectors (combine.c) -------------------------------------------------------- */

/* How far p is past threshold t, as logit(p) - logit(t) (>= 0 when p >= t; p and t
 * clamped to [1e-9, 1 - 1e-9]); -inf when p is NaN. */
double dfd_detector_margin(double p, double t);
/* Combines the manipulation detector's score p_m (threshold t_m) and the synthetic-face
 * detector's p_s (t_s; NaN when there is none): *kind is the set of detectors with
 * p >= t (dfd_fake_kind); *p_fake and *threshold are the score and threshold of the
 * detector that fired (when one did), else of the one with the larger margin (the
 * manipulation detector on a tie), so that p_fake >= threshold exactly when kind != 0.
 * Both NaN: *p_fake NaN, *threshold t_m, kind 0. */
void dfd_combine(double p_m, double t_m, double p_s, double t_s, double *p_fake, double *threshold, int *kind);
/* The result as a jansson object (json_t *, returned as void * so this header does
 * not pull jansson in); NULL on no memory. The caller owns the reference. */
void *dfd_result_to_json(const dfd_result *r);
/* A whole dfd.result/1 document for n results, as a malloc'ed string (pretty or compact). */
char *dfd_results_document(const dfd_result *const *results, int n, int pretty);

/* ---- Classifiers (classifier.c) ------------------------------------------------ */

struct dfd_crop_contract;
struct dfd_model_meta;
struct nn_graph;
typedef struct dfd_classifier dfd_classifier;

/* The network a model file's metadata names (architecture, input size, frames, width,
 * dropout, ensemble members), untrained: the dfd_model_build_fn (io/model_file.h) that
 * loading a model, importing one, joining models (model_tools.c) and training from a
 * model file (train/loop.c) all use, so that none builds a different graph. user is unused. */
int dfd_model_build_graph(void *user, const struct dfd_model_meta *m, struct nn_graph **out, dfd_error *err);

/* Loads an image or video classifier from a dfd model file (io/model_file.h). */
int dfd_classifier_load(const char *path, int threads, dfd_classifier **out, dfd_error *err);
void dfd_classifier_free(dfd_classifier *c);
const char *dfd_classifier_name(const dfd_classifier *c);      /* file name without .safetensors */
double dfd_classifier_threshold(const dfd_classifier *c);      /* stored in the model */
const struct dfd_crop_contract *dfd_classifier_contract(const dfd_classifier *c);
int dfd_classifier_frames(const dfd_classifier *c);            /* 0 for image models */
const char *dfd_classifier_task(const dfd_classifier *c);      /* "manipulation" or "synthetic" */
/* P(fake) of n crops (each contract-size square RGB); flip_tta averages with the mirror. */
int dfd_classifier_score(dfd_classifier *c, const dfd_image *crops, int n, int flip_tta, double *p_fake,
                         dfd_error *err);
/* P(fake) of one track's crops in time order, with a video model. */
int dfd_classifier_score_sequence(dfd_classifier *c, const dfd_image *crops, int n, double *p_fake, dfd_error *err);

/* ---- Heat maps (classifier.c) --------------------------------------------------- */

/* A heat map is DFD_HEAT_GRID x DFD_HEAT_GRID values in [0, 1], row-major from the crop's
 * top-left cell: how much each region of the crop drives P(fake) up (1 at the maximum,
 * all 0 when nothing does). docs/explain.md measures the methods. */
#define DFD_HEAT_GRID 16
#define DFD_HEAT_CELLS (DFD_HEAT_GRID * DFD_HEAT_GRID)
enum {
    DFD_EXPLAIN_GRADCAM = 0,   /* Grad-CAM on the feature map under the pooling head (one pass of
                                * the crop and its mirror, no backward pass) */
    DFD_EXPLAIN_OCCLUSION = 1, /* P(fake) lost when a grey 3x3-cell patch hides each cell (256 passes) */
    DFD_EXPLAIN_GRADXINPUT = 2, /* gradient x input per cell (a backward pass; fp32 training executor) */
    DFD_EXPLAIN_GRADCAM_MID = 3, /* Grad-CAM at the last 8x8 layer (a backward pass): less faithful */
    DFD_EXPLAIN_GRADCAMPP = 4,   /* Grad-CAM++ on the last block (closed form, as Grad-CAM): what
                                  * dfd_options.explain makes */
    DFD_EXPLAIN_GRADCAMPP_FINE = 5, /* Grad-CAM++ at twice the resolution, from the crop moved by a
                                     * quarter of a feature cell four ways (four passes) */
    DFD_EXPLAIN_OCCLUSION_FAST = 6, /* occlusion by one-cell probes every third cell each way (36 passes),
                                     * interpolated between them */
    DFD_EXPLAIN_CAM = 7,            /* the head's per-cell scores (CAM, Grad-CAM without its ReLU), the
                                     * lowest cell 0: for models trained with --sbi-loc, whose cells
                                     * score where a blend is */
    DFD_EXPLAIN_GRADCAM_FULL = 8    /* Grad-CAM at the heat grid's resolution: the crop moved k x k
                                     * ways by fractions of a feature cell (k = 16 / the map's side:
                                     * 16 crops, one pass, for a 4 x 4 map), interleaved; no mirror
                                     * (measured: it adds nothing at twice the cost) */
};
/* "gradcam", "occlusion", "gradxinput", "gradcam-mid", "gradcam++", "gradcam++fine",
 * "occlusion-fast", "cam", "gradcam-full"; NULL when unknown */
const char *dfd_explain_method_name(int method);
/* The method the model file asks for its manipulation maps (its "heatmap" metadata):
 * DFD_EXPLAIN_GRADCAM_FULL for a model taught where blends are, when its head allows
 * Grad-CAM; else DFD_EXPLAIN_OCCLUSION_FAST. */
int dfd_classifier_heat_method(const dfd_classifier *c);
/* The heat map of one crop (c's contract size) into map[DFD_HEAT_CELLS]. */
int dfd_classifier_explain(dfd_classifier *c, const dfd_image *crop, int method, float *map, dfd_error *err);
/* How dfd_classifier_score_blanked hides cells: grey (the middle of the input range); a
 * blurred copy of the crop (a Gaussian-like blur about a cell wide), which draws no sharp
 * new edges into the face; or the same cells of another image of the crop's size (`src`:
 * for a fake whose original is known, the original's pixels, which undo the forgery there). */
enum { DFD_BLANK_GREY = 0, DFD_BLANK_BLUR = 1, DFD_BLANK_SOURCE = 2 };
/* P(fake) of one crop (no mirror averaging) with the grid cells where cells[i] != 0 hidden
 * as `how` (DFD_BLANK_*) says; cells NULL: none; src only for DFD_BLANK_SOURCE. For the
 * deletion check. */
int dfd_classifier_score_blanked(dfd_classifier *c, const dfd_image *crop, const unsigned char *cells, int how,
                                 const dfd_image *src, double *p_fake, dfd_error *err);

/* Finds the default image model: the newest models/dfd-image-*.safetensors in dir (or the
 * built-in search: $DFD_MODELS_DIR, then dfd_model_dirs (core.h): ./models, the executable's
 * ../models, the installed share/dfd/models). */
int dfd_default_image_model(const char *dir, char *buf, size_t cap, dfd_error *err);
/* Finds the default synthetic-face model: the newest dfd-synthetic-*.safetensors in the
 * folder where dfd_default_image_model finds its model. DFD_E_NOT_FOUND when there is none
 * (it is optional). */
int dfd_default_synthetic_model(const char *dir, char *buf, size_t cap, dfd_error *err);

/* Aggregation of the per-frame P(fake) of one track. */
double dfd_aggregate(const double *p, int n, dfd_aggregation how);
/* The DFDC winner's rule (Seferbekov, 2020): if many frames are confidently fake, the
 * mean of those; else if nearly all are confidently real, the mean of those; else the mean. */
double dfd_aggregate_confident(const double *p, int n);

#endif
