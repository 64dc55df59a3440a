/*
 * train — everything dfd needs to make and judge its own models: binary-classification
 * metrics (AUC, ROC, EER, per-class reports), plots (cairo PNGs), dataset layouts and
 * group splits, on-the-fly augmentation including self-blended fakes, the training
 * loop with its prefetching loader, and evaluation.
 *
 * Conventions used throughout:
 *   - label 1 = FAKE (the positive class), 0 = REAL; scores are P(fake) (or any score
 *     that grows with "fake"); an item is predicted FAKE when score >= threshold, as
 *     detect's dfd_result_decide does;
 *   - every fallible call returns a DFD_E_* status and fills an optional dfd_error.
 */
#ifndef DFD_TRAIN_H
#define DFD_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "dfd/train.h"
#include "media/media.h"
#include "io/model_file.h"
#include "face/face.h"
#include "nn/nn.h"

/* ---- Metrics (metrics.c) -------------------------------------------------------- */

/* One operating point of a ROC curve: items with score >= threshold are called FAKE. */
typedef struct dfd_roc_point {
    double threshold; /* +inf for the first point (nothing called fake) */
    double fpr, tpr;
} dfd_roc_point;

/* dfd_confusion, dfd_class_report and dfd_metrics are public: include/dfd/train.h. */

/* Area under the ROC curve by the Mann-Whitney statistic, ties counting one half (average
 * ranks), which equals the trapezoidal area under the ROC curve. DFD_E_ARG when a label
 * is not 0/1 or a score is NaN; *auc = NaN (and DFD_OK) when one class is absent. */
int dfd_metric_auc(const double *scores, const int *labels, size_t n, double *auc, dfd_error *err);

/* The ROC curve: one point per distinct score, from (0,0) at threshold +inf down to (1,1)
 * at the lowest score; *pts is malloc'ed (caller frees), *count its length. */
int dfd_metric_roc(const double *scores, const int *labels, size_t n, dfd_roc_point **pts, size_t *count,
                   dfd_error *err);

/* Equal error rate: where FPR = FNR (= 1 - TPR) on the ROC curve, linearly interpolated
 * between the two points around the crossing. *threshold (may be NULL) receives the
 * threshold of the curve point with the smallest |FPR - FNR| (an operating point that is
 * actually reachable). NaN and DFD_OK when a class is absent. */
int dfd_metric_eer(const double *scores, const int *labels, size_t n, double *eer, double *threshold,
                   dfd_error *err);

/* The lowest threshold whose FPR is at most target_fpr (the most sensitive setting that
 * keeps false alarms under the target). */
int dfd_metric_threshold_for_fpr(const double *scores, const int *labels, size_t n, double target_fpr,
                                 double *threshold, dfd_error *err);

/* Confusion matrix at a threshold (score >= threshold = FAKE). */
void dfd_metric_confusion(const double *scores, const int *labels, size_t n, double threshold, dfd_confusion *cm);

/* Mean binary log-loss of probabilities, clipped to [1e-7, 1 - 1e-7] as Keras does. */
double dfd_metric_log_loss(const double *p, const int *labels, size_t n);

/* Everything above at once, at the given threshold. */
int dfd_metrics_compute(const double *scores, const int *labels, size_t n, double threshold, dfd_metrics *m,
                        dfd_error *err);

/* The metrics as a jansson object (json_t *, returned as void * so that this header does
 * not pull jansson in); NaN values become null. NULL on no memory; the caller owns it. */
void *dfd_metrics_to_json(const dfd_metrics *m);

/* ---- Plots (plot.c): PNG files drawn with cairo, written atomically --------------- */

/* ROC curve with the chance diagonal, the AUC and the EER point in the legend. */
int dfd_plot_roc(const char *path, const dfd_roc_point *pts, size_t n, double auc, double eer, const char *title,
                 dfd_error *err);

/* Confusion matrix: rows are the TRUE label (REAL top, FAKE bottom), columns the
 * PREDICTED label (REAL left, FAKE right), axes labelled so; each cell shows its count and
 * its share of the row, shaded by that share. */
int dfd_plot_confusion(const char *path, const dfd_confusion *cm, const char *title, dfd_error *err);

/* Where dfd_plot_confusion draws the cell (row = true label, col = predicted label) in
 * its image (x, y, w, h), so tests and callers need not guess the layout. */
void dfd_plot_confusion_cell(int row, int col, int rect[4]);
enum { DFD_PLOT_CM_W = 560, DFD_PLOT_CM_H = 500 };

/* dfd_history_row is public (dfd/train.h). */

/* Training history: three panels (loss, accuracy, AUC per epoch), train and validation. */
int dfd_plot_history(const char *path, const dfd_history_row *rows, int n, dfd_error *err);

/* ---- Datasets (dataset.c) ------------------------------------------------------------ */

typedef enum dfd_layout {
    DFD_LAYOUT_AUTO = 0,  /* told from the folder's contents */
    DFD_LAYOUT_CELEBDF,   /* Celeb-real/, YouTube-real/, Celeb-synthesis/, List_of_testing_videos.txt */
    DFD_LAYOUT_FFPP,      /* original_sequences/youtube/<c>/videos, manipulated_sequences/<m>/<c>/videos */
    DFD_LAYOUT_DFDC,      /* dfdc_train_part_* /metadata.json */
    DFD_LAYOUT_GENERIC    /* manifest.csv or labels.csv (file,label[,group,...]), or real/ + fake/ */
} dfd_layout;

typedef enum dfd_split { DFD_SPLIT_TRAIN = 0, DFD_SPLIT_VAL = 1, DFD_SPLIT_TEST = 2 } dfd_split;

typedef enum dfd_item_kind { DFD_ITEM_IMAGE = 0, DFD_ITEM_VIDEO = 1 } dfd_item_kind;

/* One labelled file: an image (or face crop), or a video before `dfd prepare`. */
typedef struct dfd_item {
    char *path;      /* full path (root joined with the listed file) */
    int label;       /* 0 REAL, 1 FAKE */
    char *group;     /* the unit a split keeps whole: real source video / person */
    char *source;    /* the original file a crop came from (+ "#track" for video tracks) */
    int frame;       /* frame index in the source video; -1 for a still image */
    float box[4];    /* face box in source pixels (x, y, w, h); NaN when unknown */
    dfd_split split; /* DFD_SPLIT_TEST for an official test item; else TRAIN until split */
    dfd_item_kind kind;
} dfd_item;

typedef struct dfd_dataset {
    char *root;
    dfd_layout layout;
    dfd_item *items;
    size_t n, cap;
} dfd_dataset;

/* "auto", "celebdf", "ffpp", "dfdc", "generic". */
const char *dfd_layout_name(dfd_layout l);
int dfd_layout_parse(const char *s, dfd_layout *out);

/* Lists a dataset folder. With DFD_LAYOUT_AUTO the layout is recognised by its marker
 * files and folders (see each layout above; GENERIC for anything with a labels.csv,
 * manifest.csv or real/ and fake/ folders). Folder listings are sorted, so the order of
 * items never depends on the file system. Celeb-DF's official test list marks items
 * DFD_SPLIT_TEST. Groups: Celeb-DF the target identity ("id3"; YouTube-real videos are
 * their own group); FF++ the connected pair of source videos (a fake "000_003" joins
 * 000 and 003); DFDC the `original` video (a real is its own); generic the csv's group
 * column, else the file's subfolder under real/ or fake/, else the file itself. */
int dfd_dataset_open(const char *root, dfd_layout layout, dfd_dataset **out, dfd_error *err);
/* An empty dataset (items are added with dfd_dataset_add). */
int dfd_dataset_new(const char *root, dfd_dataset **out, dfd_error *err);
void dfd_dataset_free(dfd_dataset *d);
/* Appends an item; strings are copied (group/source NULL = path). */
int dfd_dataset_add(dfd_dataset *d, const char *path, int label, const char *group, const char *source, int frame,
                    const float box[4], dfd_split split, dfd_error *err);

/* Counts by label among items whose split is `split` (-1 = all). */
void dfd_dataset_count(const dfd_dataset *d, int split, long *n_real, long *n_fake);

/* Splits the non-test items into TRAIN and VAL by group: whole groups go to VAL until
 * about val_fraction of the items of each stratum (groups with only reals, only fakes,
 * both) are there. The order of groups is a hash of (seed, group name), so the split is
 * deterministic and does not depend on the order of the items. */
int dfd_dataset_split_groups(dfd_dataset *d, double val_fraction, uint64_t seed, dfd_error *err);

/* Class weights that make both classes weigh the same in the loss: w_c = n / (2 n_c),
 * counted over items of `split` (-1 = all). 1 for an absent class. */
void dfd_dataset_class_weights(const dfd_dataset *d, int split, float w[2]);

/* Indices of the items of `split`, in a random order (seeded); with undersample the
 * larger class is cut down at random to the size of the smaller. limit > 0 keeps the
 * first `limit` of them. *idx is malloc'ed, *n its length. */
int dfd_dataset_epoch_order(const dfd_dataset *d, int split, int undersample, uint64_t seed, long limit,
                            size_t **idx, size_t *n, dfd_error *err);

/* Paired training (dfd_train_opts.paired). partner[i] is, for each fake item i of `split`
 * (-1 = all), a real item of the same split and the same group (for dfdc-faces and the
 * Celeb-DF and FF++ layouts: the real source video the fake was made from), each real
 * partnering at most one fake (the first in item order); DFD_NO_PARTNER for every other
 * item. *n_pairs counts the pairs. *partner is malloc'ed, d->n long. */
#define DFD_NO_PARTNER ((size_t)-1)
int dfd_dataset_fake_partners(const dfd_dataset *d, int split, size_t **partner, size_t *n_pairs, dfd_error *err);

/* dfd_order_balanced with pairs kept together: every fake with a partner (partner[i] < n,
 * a real of the same split) comes right after it, and (*with_prev)[k] = 1 marks such a fake
 * at position k; the pairs and the single items are shuffled as units. Undersampling cuts
 * only single items (a pair holds one of each class). *idx and *with_prev are malloc'ed;
 * *count is the order's length (at most limit when limit > 0). */
int dfd_order_paired(const int *labels, const int *splits, const size_t *partner, size_t n, int split, int undersample,
                     uint64_t seed, long limit, size_t **idx, unsigned char **with_prev, size_t *count, dfd_error *err);

/* Sorts indices ascending: an order's items back in listing (or sample) order, whatever
 * subset a seeded limit picked, so that reports and files come out the same every run. */
void dfd_sort_indices(size_t *idx, size_t n);

/* The same over any samples: indices i < n with splits[i] == split (-1 = all), labels 0/1. */
int dfd_order_balanced(const int *labels, const int *splits, size_t n, int split, int undersample, uint64_t seed,
                       long limit, size_t **idx, size_t *count, dfd_error *err);

/* Sequences for video models: consecutive items sharing a `source`, in frame order.
 * Each sequence is an index range into a malloc'ed array of item indices. */
typedef struct dfd_sequence {
    size_t first;   /* into *order */
    int count;
    int label;
    dfd_split split;
} dfd_sequence;
int dfd_dataset_sequences(const dfd_dataset *d, int min_frames, size_t **order, dfd_sequence **seqs, size_t *n_seqs,
                          dfd_error *err);

/* Writes the items as a manifest.csv (file,label,group,source,frame,box,split) with file
 * paths relative to dir when they lie under it. */
int dfd_dataset_write_manifest(const dfd_dataset *d, const char *path, dfd_error *err);

/* A 64-bit FNV-1a hash mixed with a seed (stable across runs and machines). */
uint64_t dfd_hash_str(const char *s, uint64_t seed);

/* ---- Augmentation (augment.c) -------------------------------------------------------- */

/* Each transform has a probability (0 = off) and a strength. Applied in this order:
 * flip, affine (rotation, shift, scale), colour, blur, noise, down-and-up resize, JPEG
 * re-compression, cutout. Geometry keeps the image size (edges replicated). */
typedef struct dfd_augment_opts {
    float flip;                   /* P(horizontal flip) */
    float affine;                 /* P(rotation/shift/scale) */
    float rotate;                 /* max |degrees| */
    float shift;                  /* max shift, fraction of the side */
    float scale;                  /* max relative zoom in or out */
    float color;                  /* P(colour jitter) */
    float brightness, contrast, saturation; /* max relative change */
    float hue;                    /* max |degrees| of hue rotation */
    float blur;                   /* P(Gaussian blur) */
    float blur_sigma;             /* max sigma, in pixels per 128 px of side */
    float noise;                  /* P(Gaussian noise) */
    float noise_std;              /* max std in 0-255 levels */
    float downscale;              /* P(resize down then back up: resolution loss) */
    float downscale_min;          /* smallest factor */
    float jpeg;                   /* P(JPEG re-compression) */
    int jpeg_qmin, jpeg_qmax;     /* quality range */
    float cutout;                 /* P(one rectangle erased to grey) */
    float cutout_size;            /* max side, fraction of the image side */
} dfd_augment_opts;

/* Defaults: flip .5; affine .5 (10 deg, .05, .1); colour .5 (.2, .2, .2, 5 deg); blur .1
 * (1.0); noise .1 (5); downscale .2 (.4); JPEG .5 (q 30-95); cutout .1 (.3). */
void dfd_augment_opts_default(dfd_augment_opts *o);
/* Everything off. */
void dfd_augment_opts_none(dfd_augment_opts *o);

/* Applies random augmentations to img in place (its size is kept). Deterministic in the
 * state of r. */
int dfd_augment(dfd_image *img, const dfd_augment_opts *o, nn_rng *r, dfd_error *err);
/* --sbi-loc's loss on a batch of n feature maps F (n x cells x C, plain): z = w . F_c + bias
 * per cell (the pooled head's logit before pooling), a binary cross-entropy of z against
 * the target t (n x cells) averaged over the cells of the samples with valid[i], times
 * lambda. Writes d(loss)/dF into dF (zero for the others; the head's own weights get no
 * gradient from it); returns the loss. */
float dfd_loc_loss(const float *F, int n, int cells, int C, const float *w, float bias, const float *t,
                   const unsigned char *valid, float lambda, float *dF);
/* The same, with the same random draws, and a w x h plane of floats (NULL: none) moved by
 * the same geometric transforms (mirror, rotation, shift, scale) as the image: a
 * self-blend's mask, which must stay where the blend is (dfd_train_opts.sbi_loc). */
int dfd_augment_masked(dfd_image *img, const dfd_augment_opts *o, nn_rng *r, float *mask, dfd_error *err);
void dfd_mask_flip_h(float *m, int w, int h);

/* Single transforms, exposed for tests and the preview. */
int dfd_aug_affine(dfd_image *img, float deg, float dx, float dy, float scale, dfd_error *err);
void dfd_aug_color(dfd_image *img, float brightness, float contrast, float saturation, float hue_deg,
                   const float shift[3]);
int dfd_aug_blur(dfd_image *img, float sigma, dfd_error *err);
int dfd_aug_jpeg(dfd_image *img, int quality, dfd_error *err);
int dfd_aug_downscale(dfd_image *img, float factor, dfd_error *err);
void dfd_aug_noise(dfd_image *img, float std, nn_rng *r);
void dfd_aug_cutout(dfd_image *img, int x, int y, int w, int h, uint8_t grey);

/* Self-blended images (Shiohara & Yamasaki, CVPR 2022): a fake made from a real face
 * alone. A copy of the face is perturbed in colour (channel shifts, hue, saturation,
 * brightness, contrast), sharpness (blur or sharpen) and geometry (a few percent of scale
 * and shift), then blended back over the original inside a soft face mask scaled by a
 * random blend ratio. The result carries the artefacts every face swap has (a blending
 * boundary, colour and resolution mismatch) without any particular generator's.
 *
 * The paper's mask is the convex hull of 68 dlib landmarks. With landmarks (MediaPipe Face
 * Mesh's, dfd_sbi_landmarks) the mask is the convex hull of the face oval, or of the oval
 * below the eyebrows and the eyebrows, its outline deformed by low-frequency radial noise,
 * eroded or dilated, and feathered by a Gaussian blur. Without them (dfd_sbi) it is an
 * ellipse over the inner face (given in fractions of the crop), randomly resized, deformed
 * and feathered the same way. */
typedef struct dfd_sbi_opts {
    float cx, cy, rx, ry;  /* face ellipse centre and semi-axes, fractions of width/height */
    float jitter;          /* relative random change of centre and axes */
    float deform;          /* amplitude of the outline's radial deformation (half of it
                              for landmark hulls, which need less) */
    float forehead;        /* landmark masks: probability that the hull is the whole face oval
                              (forehead included) rather than stopping at the eyebrows (0.5) */
    float part;            /* probability that the blend covers only a part of the face: the
                              face mask cut to a random ellipse (0.2-0.4 of the face's size,
                              any orientation) centred on a random point of it, as a pasted
                              eye, nose or mouth would be (0) */
} dfd_sbi_opts;

/* The landmarks a landmark mask uses, in this order: MediaPipe's face oval
 * (dfd_mesh_face_oval, 36) then the upper eyebrow contours (dfd_mesh_brows, 10), x and y in
 * the pixels of the image being blended. */
#define DFD_SBI_POINTS (DFD_MESH_OVAL_POINTS + DFD_MESH_BROW_POINTS)
/* Picks them from a mesh, scaling x by sx and y by sy (a mesh found on a w x h image and a
 * crop resized to S x S: sx = S / w, sy = S / h). */
void dfd_sbi_points_from_mesh(const dfd_face_mesh *m, float sx, float sy, float pts[DFD_SBI_POINTS][2]);

/* Convex hull of n (<= DFD_HULL_MAX) points, non-finite ones skipped: writes its corners
 * (clockwise on screen) into hull and returns how many (0 when under 3). */
#define DFD_HULL_MAX 64
int dfd_convex_hull(const float (*pts)[2], int n, float (*hull)[2]);
/* Whether (x, y) lies inside (or on) such a hull. */
int dfd_hull_contains(const float (*hull)[2], int n, float x, float y);

/* For a tight face crop (the face fills most of the crop, as in dfdc-faces). */
void dfd_sbi_opts_default(dfd_sbi_opts *o);
/* Places the face ellipse (cx, cy, rx, ry only; the other fields are kept) for a crop cut
 * with a margin: face box side = 1/margin of the crop, box centre shift_y box sides above
 * the crop centre. */
void dfd_sbi_opts_for_margin(dfd_sbi_opts *o, float margin, float shift_y);

/* Makes a self-blended fake of img in place. mask (may be NULL) receives w*h blend
 * weights in [0,1]: where it is 0 the output equals the input exactly. The mask is the
 * ellipse of o. */
int dfd_sbi(dfd_image *img, const dfd_sbi_opts *o, nn_rng *r, float *mask, dfd_error *err);
/* The same with the face's landmarks: pts holds DFD_SBI_POINTS points (see above) in img's
 * pixels, or is NULL for the ellipse (exactly dfd_sbi, same random draws). DFD_E_ARG when
 * the points span no area (e.g. all NaN). */
int dfd_sbi_landmarks(dfd_image *img, const dfd_sbi_opts *o, const float (*pts)[2], nn_rng *r, float *mask,
                      dfd_error *err);

/* ---- Landmarks for a dataset's crops (train/landmarks.c) ---------------------------------- */

typedef struct dfd_ds_landmark_opts {
    const char *models_dir;     /* where face-landmark.safetensors is; NULL = search */
    float margin;               /* crop side / face box side: 1 for tight crops (dfdc-faces),
                                   the `dfd prepare` margin for its crops (default 1) */
    float shift_y;              /* box centre shift_y box sides above the crop centre (0) */
    float min_presence;         /* meshes with a lower face presence are dropped (0.5) */
    int refine;                 /* extra passes on the mesh's own window (1) */
    int threads;                /* worker threads, each with its own landmarker (1) */
    nn_backend backend;         /* NN_BACKEND_DNNL */
    const unsigned char *want;  /* NULL = every item, else only items i with want[i] */
    int progress;               /* log every 1000 items */
} dfd_ds_landmark_opts;

void dfd_ds_landmark_opts_default(dfd_ds_landmark_opts *o);

typedef struct dfd_ds_landmarks {
    size_t n;                           /* the dataset's item count */
    size_t found;                       /* items with landmarks */
    float (*pts)[DFD_SBI_POINTS][2];    /* per item, in the item image's own pixels */
    int *w, *h;                         /* that image's size; 0 = no landmarks for the item */
    float *presence;
} dfd_ds_landmarks;

/* The mesh of one crop, with the face box derived from the crop as o describes. */
int dfd_crop_landmarks(dfd_landmarker *lm, const dfd_image *img, const dfd_ds_landmark_opts *o, dfd_face_mesh *mesh,
                       dfd_error *err);
/* Runs the mesh on every (wanted) item. Unreadable items and faces below min_presence get
 * no landmarks (w = 0); a missing model or no memory fails. */
int dfd_dataset_landmarks(const dfd_dataset *ds, const dfd_ds_landmark_opts *o, dfd_ds_landmarks **out, dfd_error *err);
void dfd_ds_landmarks_free(dfd_ds_landmarks *l);
/* Item's points scaled to an out_w x out_h resize of its image (what the loader feeds to
 * dfd_sbi_landmarks); returns 0 (pts untouched) when the item has none. */
int dfd_ds_landmarks_get(const dfd_ds_landmarks *l, size_t item, int out_w, int out_h, float pts[DFD_SBI_POINTS][2]);
/* A sidecar text file keyed by the items' paths relative to the dataset root, so landmarks
 * are computed once per dataset (format in train/landmarks.c). Loading matches keys to
 * ds's items (lines for items not listed are ignored). */
int dfd_ds_landmarks_save(const dfd_ds_landmarks *l, const dfd_dataset *ds, const char *path, dfd_error *err);
int dfd_ds_landmarks_load(const char *path, const dfd_dataset *ds, dfd_ds_landmarks **out, dfd_error *err);

/* A grid of images (resized to cell x cell) with a caption under each, as a PNG. */
int dfd_plot_image_grid(const char *path, const dfd_image *imgs, const char *const *captions, int n, int cols,
                        int cell, const char *title, dfd_error *err);

/* ---- Decoded-crop cache (cache.c) ------------------------------------------------------ */

/* Every crop of a dataset decoded and resized to side x side once per run, kept as RGB
 * bytes (exactly what decoding and resizing give) or as YCbCr 4:2:0 (half the bytes; see
 * cache.c). Cached and direct loading make the same samples as long as the direct path
 * passes its crops through dfd_img_cache_roundtrip. Thread-safe: many threads may read and
 * put at once. */
typedef struct dfd_img_cache dfd_img_cache;
typedef enum { DFD_CACHE_AUTO = 0, DFD_CACHE_RGB = 1, DFD_CACHE_YUV420 = 2 } dfd_cache_format;
const char *dfd_cache_format_name(dfd_cache_format f);
/* Bytes one crop of side x side takes in a format (RGB or YUV420). */
size_t dfd_img_cache_slot_bytes(int side, dfd_cache_format format);

/* Room for n_items crops of side x side in `format` (RGB or YUV420), up to max_bytes (items
 * past that many are not cached). file NULL: anonymous memory; else a file mapped in its
 * place (created, then unlinked at once: for sets larger than RAM), on a local disk. */
int dfd_img_cache_new(size_t n_items, int side, dfd_cache_format format, size_t max_bytes, const char *file,
                      dfd_img_cache **out, dfd_error *err);
void dfd_img_cache_free(dfd_img_cache *c);
int dfd_img_cache_side(const dfd_img_cache *c);
dfd_cache_format dfd_img_cache_format(const dfd_img_cache *c);
/* Whether item is stored. */
int dfd_img_cache_has(const dfd_img_cache *c, size_t item);
/* Writes the stored crop into out (allocated, side x side) and returns 1; 0 when it is not
 * (yet) stored. */
int dfd_img_cache_read(const dfd_img_cache *c, size_t item, dfd_image *out);
/* Stores a crop of side x side as decoded (ignored when stored already, out of room or of
 * another size). */
void dfd_img_cache_put(dfd_img_cache *c, size_t item, const dfd_image *im);
/* What storing and reading im would give, in place: a no-op for RGB caches (and NULL). */
int dfd_img_cache_roundtrip(const dfd_img_cache *c, dfd_image *im, dfd_error *err);
/* Crops stored, crops there is room for, bytes in use. */
void dfd_img_cache_stats(const dfd_img_cache *c, size_t *ready, size_t *capacity, size_t *bytes);
/* The direct path: item `item` of ds decoded and resized to side x side. */
int dfd_img_cache_load(const dfd_dataset *ds, size_t item, int side, dfd_image *out, dfd_error *err);
/* Called now and then while filling with (done, total); non-zero stops the fill. */
typedef int (*dfd_img_cache_progress_fn)(void *user, size_t done, size_t total);
/* Decodes every item of ds with want[i] != 0 (want NULL: all) into the cache on `threads`
 * threads (the caller's included). Unreadable files are counted in *failures and left
 * out (the loader reports them when it meets them). */
int dfd_img_cache_fill(dfd_img_cache *c, const dfd_dataset *ds, const unsigned char *want, int threads,
                       dfd_img_cache_progress_fn fn, void *user, long *failures, dfd_error *err);

/* ---- Batch loader (loader.c) ----------------------------------------------------------- */

/* Produces batches of normalised input tensors on worker threads while the caller trains
 * on the previous batch. Each sample's randomness comes from (seed, its position in the
 * epoch) alone, so the batches are the same whatever the number of workers or their
 * timing. A file that cannot be read gives a sample with ok = 0 (and weight 0), logged,
 * instead of stopping a long run. */
typedef struct dfd_loader_opts {
    const dfd_dataset *ds;
    const size_t *order;        /* image mode: item indices, in order; video: sequence indices */
    size_t n;                   /* number of samples */
    const dfd_sequence *seqs;   /* video mode: sequences, and the item order they index */
    const size_t *seq_items;
    int frames;                 /* video mode when > 0: frames per sample */
    int batch, size;            /* batch size, input side */
    int norm;                   /* dfd_norm of face.h */
    const dfd_augment_opts *aug;   /* NULL = no augmentation */
    float sbi_fraction;            /* share of REAL image samples turned into self-blended fakes */
    float real_downscale;          /* P(a sample made from a real face, kept real or self-blended,
                                    * is first scaled down and back up by 0.35-0.75): see
                                    * dfd_train_opts.real_downscale */
    const dfd_sbi_opts *sbi;
    const unsigned char *with_prev; /* image mode, NULL or one per position: 1 where the sample
                                    * is a fake paired with the real before it
                                    * (dfd_order_paired), which then gets that real's transform */
    const float *class_w;          /* weight per label, NULL = 1 */
    int flip;                      /* 1: every sample mirrored (test-time flip averaging) */
    uint64_t seed;
    int workers;                   /* threads besides the caller's, >= 0 */
    dfd_img_cache *cache;          /* decoded crops of ds (NULL: decode every time) */
    const dfd_ds_landmarks *landmarks; /* per item of ds: self-blending masks follow these
                                    * (dfd_sbi_landmarks); NULL, or an item without: the ellipse */
    int loc_grid;                  /* image mode, > 0: each sample also gets where it is
                                    * blended on a loc_grid x loc_grid grid (dfd_batch.loc) */
    int loc_reals;                 /* with loc_grid: reals' targets (0 everywhere) count too */
    int turns;                     /* 1: the workers run only while the caller waits in
                                    * dfd_loader_next (and the caller works with them), so the
                                    * feed never competes with the engine's threads for cores;
                                    * 0: they run ahead all the time */
} dfd_loader_opts;

typedef struct dfd_batch {
    int n;            /* samples in this batch (the last may be short) */
    long first;       /* position of the first sample in the epoch */
    float *x;         /* n x (frames x) size x size x 3 */
    float *y, *w;     /* labels (after SBI) and loss weights */
    size_t *sample;   /* the sample's index into opts.order ... */
    size_t *item;     /* ... and its item (video: the first frame's item) */
    unsigned char *ok, *sbi;
    float *loc;              /* loc_grid > 0: n x G x G, the share of each cell blended (a
                              * self-blend's mask after the sample's geometric transform,
                              * over its peak), 0 everywhere for a real */
    unsigned char *loc_ok;   /* 1 where loc is to be learnt: self-blends, and reals with
                              * loc_reals; never other fakes (their place is unknown) */
} dfd_batch;

typedef struct dfd_loader dfd_loader;

int dfd_loader_start(const dfd_loader_opts *o, dfd_loader **out, dfd_error *err);
/* The next batch in order (blocks until it is ready), or *b = NULL at the end. The batch
 * stays valid until the next call. */
int dfd_loader_next(dfd_loader *l, const dfd_batch **b, dfd_error *err);
/* Samples that could not be read so far. */
long dfd_loader_failures(const dfd_loader *l);
/* Where the time went so far: feed_cpu_s, seconds of CPU spent making samples (all
 * threads); wait_s, wall seconds the caller spent in dfd_loader_next waiting for (or
 * helping to make) a batch, i.e. the time the feed held the step up. */
typedef struct dfd_loader_stats {
    double feed_cpu_s, wait_s;
    long samples;
} dfd_loader_stats;
void dfd_loader_get_stats(const dfd_loader *l, dfd_loader_stats *s);
/* Stops the workers and frees everything. */
void dfd_loader_free(dfd_loader *l);

/* ---- Training (loop.c) ------------------------------------------------------------------- */

typedef enum dfd_balance { DFD_BALANCE_NONE = 0, DFD_BALANCE_UNDERSAMPLE = 1, DFD_BALANCE_WEIGHTS = 2 } dfd_balance;

typedef struct dfd_train_opts {
    const char *arch;          /* registry name, e.g. "mobilenet_v2-image" (required) */
    const char *task;          /* what the fakes in the data are, written into the model file:
                                * "manipulation" (NULL: the default) or "synthetic" */
    int video;                 /* 1: sequences of crops -> a *-video architecture */
    const char *data;          /* dataset folder (crops: a `dfd prepare` output or similar) */
    dfd_layout layout;
    const char *val;           /* separate validation folder, or NULL to split data by group */
    double val_fraction;       /* 0.2 */
    const char *extra_real;    /* extra REAL faces for training only (and SBI sources), or NULL */
    int epochs;                /* epochs of the (last) stage: 10 */
    int batch;                 /* 32 (video 8) */
    float lr;                  /* 1e-3 */
    nn_optim_kind optimizer;   /* AdamW */
    float weight_decay;        /* < 0: the optimiser's default */
    nn_lr_schedule schedule;   /* cosine (per stage) */
    long warmup_steps;         /* 100 */
    int input_size;            /* 0: the architecture's default */
    int norm;                  /* input normalisation (a dfd_norm of face.h); -1: the crops'
                                * contract's (prepare.json), else dfd's default */
    int frames;                /* video: frames per sample (0: 30) */
    float width, dropout;      /* architecture options (0 / -1: defaults) */
    dfd_balance balance;       /* undersample */
    const char *init;          /* start from these weights (by parameter name; mismatches skipped) */
    const char *freeze_until;  /* single stage: layers before this one are frozen */
    int freeze_bn;             /* keep batch-norm statistics fixed (single stage, or stage 2) */
    float bn_momentum;         /* batch-norm momentum while training (0.99); < 0: the architecture's */
    int bn_recalibrate;        /* batches to re-estimate batch-norm statistics from before training
                                * (cumulative average; 0 = none; default 32 with --init) */
    int stage1_epochs;         /* > 0: first train the head alone for up to this many epochs */
    const char *stage2_from;   /* stage 2 unfreezes from this layer (NULL: everything) */
    float stage2_lr;           /* <= 0: lr / 100 */
    int patience;              /* early stopping on validation AUC, per stage; 0 = off */
    const char *resume;        /* checkpoint.safetensors of an interrupted run */
    const char *out;           /* output folder (created) */
    int keep_epochs;           /* also keep epoch-NNN.safetensors for each epoch */
    int threads;               /* engine threads, 0 = all cores */
    int loader_threads;        /* feed threads besides the training thread; < 0: automatic
                                * (taking turns: engine threads - 1; running ahead: 1) */
    int feed_ahead;            /* 0 (default): the feed and the step take turns on all cores;
                                * 1: the feed runs ahead on its own threads beside the step */
    long cache_mb;             /* decoded-crop cache budget in MiB: < 0 automatic (half the
                                * machine's memory), 0 off */
    const char *cache_file;    /* NULL: the cache in memory; else a file mapped in its place */
    dfd_cache_format cache_format; /* AUTO (default): RGB when every crop fits in the budget
                                * that way, else YCbCr 4:2:0 (half the bytes) */
    int sbi_landmarks;         /* 1: self-blending masks from each real face's Face Mesh landmarks
                                * (computed once per run, kept in OUT/landmarks.txt); 0: the ellipse */
    const char *models_dir;    /* where face-landmark.safetensors is (NULL: search) */
    uint64_t seed;
    uint64_t split_seed;       /* the validation split's seed; 0: seed (so another seed can be
                                * trained on the same validation groups) */
    long limit;                /* use at most this many training samples per epoch (0 = all) */
    long val_limit;            /* ... and validation samples (0 = all) */
    float sbi_fraction;        /* share of real training images turned into self-blended fakes */
    int real_only;             /* 1: the training split's fakes are left out, so every fake the
                                * model sees is a self-blend (SBI's protocol); validation keeps its
                                * fakes. Needs sbi_fraction > 0 */
    float real_downscale;      /* P(a sample made from a real face, before self-blending, is scaled
                                * down by 0.35-0.75 and back up), on top of the augmentation that
                                * every sample gets: supervised fakes are often lower-resolution
                                * faces than their reals, so equal degradation of both classes
                                * leaves "a soft face" meaning fake; this closes that gap on the
                                * real side (a self-blend's own cue, a mismatch inside the face,
                                * is kept). 0: off, and no random draw (older runs reproduce) */
    int paired;                /* 1: every training fake whose real source (its group's real item)
                                * is in the training split comes in the same batch right after
                                * it, both with the same random transform, so that what tells
                                * the pair apart is the manipulation, not the video's
                                * compression, size or crop (dfd_order_paired); images only */
    float sbi_loc;             /* > 0: the weight of a second loss that teaches where a self-blend
                                * is: the head's dense unit applied to each cell of the feature
                                * map it pools, against the share of the cell blended (0 on
                                * reals; DFDC fakes, whose place is unknown, take no part), so
                                * that the evidence the model pools sits on the blend (issue 17's
                                * maps). Needs a GAP -> dense(1) head; 0: off */
    int sbi_loc_reals;         /* 1: the reals' cells are taught too (all 0), not only the
                                * self-blends' (session 14 measured both) */
    int augment;               /* 1: the augmentation below, 0: none */
    dfd_augment_opts aug;
    dfd_sbi_opts sbi;
    nn_backend backend;
    nn_precision precision;    /* training passes: AUTO/F32 fp32 (default), BF16 mixed precision (bf16
                                * activations and products, fp32 weights, gradients summed in fp32) */
    int bf16_save;             /* store checkpoints in bf16 */
    double threshold_fpr;      /* > 0: the stored threshold is the lowest whose validation false-positive
                                * rate is at most this; 0: the validation EER's */
} dfd_train_opts;

void dfd_train_opts_default(dfd_train_opts *o);
/* The public dfd_train_opts_set (options.c) on a plain struct: values are not copied. */
int dfd_train_opts_apply(dfd_train_opts *o, const char *name, const char *value, dfd_error *err);

/* dfd_train_phase, dfd_train_progress(_fn) and dfd_train_summary are public (dfd/train.h). */

/* Trains as the options say, writing into o->out: checkpoint.safetensors (+ its
 * .state.safetensors, the optimiser state) after every epoch, best.safetensors (the best
 * validation AUC so far, its threshold at the validation EER), history.csv/.png. */
int dfd_train_run(const dfd_train_opts *o, dfd_train_progress_fn fn, void *user, dfd_train_summary *s,
                  dfd_error *err);

/* Writes a grid of training samples (real, self-blended, augmented) as a PNG. */
int dfd_train_preview(const dfd_train_opts *o, const char *png, int n, dfd_error *err);

/* dfd_model_build_fn for io's dfd_model_load: builds the architecture the metadata names. */
int dfd_train_build_model(void *user, const dfd_model_meta *meta, nn_graph **out, dfd_error *err);

/* Copies from a safetensors file every tensor whose name and shape match a parameter of g
 * (a pretrained backbone into a new head, an image encoder into a video model); the rest
 * keep their values. *loaded and *skipped count graph parameters. */
int dfd_train_load_matching(nn_graph *g, const char *path, int *loaded, int *skipped, dfd_error *err);

/* ---- Evaluation (eval.c) ------------------------------------------------------------------ */

typedef enum dfd_eval_split {
    DFD_EVAL_ALL = 0,   /* every item of the folder */
    DFD_EVAL_TEST = 1,  /* the official test items (Celeb-DF's list, or split=test in a manifest) */
    DFD_EVAL_VAL = 2,   /* the validation groups `dfd train` held out with the same seed and fraction */
    DFD_EVAL_TRAIN = 3  /* ... and the rest */
} dfd_eval_split;

typedef struct dfd_eval_opts {
    const char *model;         /* a dfd model file */
    const char *data;          /* folder of crops (or a manifest/labels.csv folder) */
    dfd_layout layout;
    dfd_eval_split split;
    double val_fraction;       /* for DFD_EVAL_VAL/TRAIN: as given to dfd train (0.2) */
    uint64_t seed;             /* likewise (1) */
    int video_level;           /* 1: aggregate the frames of each source video; 2: the crops of
                                * each group (e.g. a clip's sampled frames in a labels.csv) */
    dfd_aggregation aggregation;
    int flip_tta;              /* average each crop's score with its mirror image's */
    double threshold;          /* < 0: the model's stored threshold */
    long limit;                /* at most this many samples (0 = all), seeded subset */
    int threads;
    const char *out;           /* folder for metrics.json, scores.csv, roc.png, confusion.png; NULL = none */
    dfd_progress_fn progress;
    void *user;
} dfd_eval_opts;

/* Loads a face crop and resizes it to size x size when it is not already (eval, calibrate). */
int dfd_load_crop(const char *path, int size, dfd_image *out, dfd_error *err);
void dfd_eval_opts_default(dfd_eval_opts *o);
int dfd_eval_opts_apply(dfd_eval_opts *o, const char *name, const char *value, dfd_error *err);

/* dfd_eval_result is public (dfd/train.h). */

/* Scores the data with the model exactly as `dfd scan` would score the same crops (the
 * detect module's classifier), and computes the metrics at the threshold. Deterministic. */
int dfd_eval_run(const dfd_eval_opts *o, dfd_eval_result *res, dfd_error *err);

/* ---- Calibrating a threshold (calibrate.c) ----------------------------------------------- */

typedef struct dfd_calibrate_opts {
    const char *model, *out;
    const char *data[DFD_CALIBRATE_MAX_SOURCES];
    int data_val[DFD_CALIBRATE_MAX_SOURCES]; /* 1: the folder's validation groups only */
    int n_data;
    double fpr;          /* target share of the reals flagged (0.03) */
    int degrade;         /* degraded copies scored per real crop (0) */
    uint64_t seed;       /* degradations and the validation split (1) */
    double val_fraction; /* for "data-val": as given to dfd train (0.2) */
    long limit;          /* at most this many crops per folder (0 = all), seeded subset */
    int threads;
    dfd_progress_fn progress;
    void *user;
} dfd_calibrate_opts;

void dfd_calibrate_opts_default(dfd_calibrate_opts *o);
int dfd_calibrate_opts_apply(dfd_calibrate_opts *o, const char *name, const char *value, dfd_error *err);
/* The degradations of a calibration's degraded copies (every copy re-compressed). */
void dfd_calibrate_degradation(dfd_augment_opts *a);

/* ---- Preparing datasets (prepare.c) ------------------------------------------------------ */

typedef struct dfd_prepare_opts {
    const char *data;          /* a dataset folder, any layout */
    dfd_layout layout;
    const char *out;           /* output folder (created; resumable) */
    int sequences;             /* 0: up to per_video crops per video (image models);
                                  1: one sequence of `frames` crops per face track (video models) */
    int per_video;             /* 30 */
    int frames;                /* 30 */
    int min_faces;             /* sequences: tracks seen in fewer frames are dropped (0: 80% of frames) */
    int size;                  /* crop side in pixels (224) */
    float margin;              /* > 0: crop margin instead of the contract's default */
    int quality;               /* JPEG quality (95) */
    int workers;               /* files processed at once (2) */
    long limit;                /* at most this many source files (0 = all) */
    const char *models_dir;    /* face detector models (NULL = the usual search) */
    int face_mode;             /* dfd_face_mode */
} dfd_prepare_opts;

void dfd_prepare_opts_default(dfd_prepare_opts *o);
int dfd_prepare_opts_apply(dfd_prepare_opts *o, const char *name, const char *value, dfd_error *err);

/* dfd_prepare_summary is public (dfd/train.h). */


/* Detects faces in every file of the dataset and writes out/crops/{real,fake}/... .jpg,
 * out/manifest.csv (file,label,group,source,frame,box,split) and out/prepare.json (the
 * crop contract, the options, the summary). Per file the main face is used: the largest in
 * an image, the longest track in a video (crops from up to per_video evenly spaced frames,
 * or one sequence). A journal (out/prepare.journal) records finished files, so a second
 * run skips them and an interrupted run resumes. */
int dfd_prepare_run(const dfd_prepare_opts *o, dfd_prepare_progress_fn fn, void *user, dfd_prepare_summary *s,
                    dfd_error *err);

#endif
