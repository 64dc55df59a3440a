/*
 * face — finding faces and cutting them out the one way every model of dfd expects.
 *
 *   detection   MediaPipe's BlazeFace (short range 128 px, full range 192 px) run on dfd's
 *               nn engine, anchors decoded and merged by weighted non-maximum suppression
 *               exactly as MediaPipe's face detection graphs configure them; an automatic
 *               mode combines both models (and tiles large images) so faces from about
 *               40 px to the whole frame are found in portrait and landscape images;
 *   tracks      detections on a video's sampled frames linked into one track per person;
 *   crops       the preprocessing contract of docs/preprocessing.md (square box from the
 *               detector box times a margin, optional roll alignment, border handling,
 *               output size, resampling, RGB, normalisation), serialised as JSON into the
 *               classifier's model file ("preprocess") so inference crops as training did;
 *   landmarks   MediaPipe Face Mesh's 468 landmarks for a face (landmark.c);
 *   import      `dfd import tflite`: BlazeFace / face_landmark .tflite -> dfd model file.
 *
 * Coordinates are in source-image pixels, x to the right and y down, with pixel i covering
 * [i, i+1). Keypoints are MediaPipe's six, in its order: the subject's right eye (on the
 * image's left for a frontal face), left eye, nose tip, mouth centre, right ear tragion,
 * left ear tragion.
 */
#ifndef DFD_FACE_H
#define DFD_FACE_H

#include <stdint.h>

#include "core/core.h"
#include "media/media.h"
#include "models/blazeface.h"
#include "nn/nn.h"

#define DFD_FACE_KEYPOINTS 6
enum { DFD_KP_RIGHT_EYE = 0, DFD_KP_LEFT_EYE, DFD_KP_NOSE, DFD_KP_MOUTH, DFD_KP_RIGHT_EAR, DFD_KP_LEFT_EAR };

typedef struct dfd_face {
    float box[4];                      /* x, y, w, h */
    float score;                       /* detector confidence in [0, 1] */
    float kp[DFD_FACE_KEYPOINTS][2];   /* x, y */
    float roll_deg;                    /* in-plane rotation: angle of the line from the right
                                          eye to the left eye, degrees, positive = clockwise
                                          on screen (the face's left eye lower) */
} dfd_face;

/* ---- Building blocks (pure functions, exposed for tests) ---------------------------- */

/* MediaPipe SsdAnchorsCalculator options (ssd_anchors_calculator.proto). */
typedef struct dfd_ssd_anchor_opts {
    int num_layers;
    float min_scale, max_scale;
    int input_h, input_w;
    float anchor_offset_x, anchor_offset_y;
    int strides[8];
    int n_aspect_ratios;
    float aspect_ratios[4];
    int fixed_anchor_size;
    float interpolated_scale_aspect_ratio;
    int reduce_boxes_in_lowest_layer;
} dfd_ssd_anchor_opts;

/* MediaPipe TensorsToDetectionsCalculator options as the face graphs set them. */
typedef struct dfd_ssd_decode_opts {
    int num_boxes, num_coords, num_keypoints;
    float x_scale, y_scale, w_scale, h_scale;
    float score_clipping_thresh;
    float min_score_thresh;
} dfd_ssd_decode_opts;

/* The options of face_detection_short_range / _full_range (min score 0.5). */
void dfd_face_anchor_opts(dfd_blazeface_kind kind, dfd_ssd_anchor_opts *o);
void dfd_face_decode_opts(dfd_blazeface_kind kind, dfd_ssd_decode_opts *o);

/* Anchors as MediaPipe computes them: *anchors receives n rows of {x_center, y_center, w,
 * h} (malloc'ed, caller frees), in the order the model's outputs list them. */
int dfd_ssd_anchors(const dfd_ssd_anchor_opts *o, float **anchors, int *n, dfd_error *err);

/* Decodes raw outputs (reg: n x num_coords, cls: n logits) into detections in coordinates
 * relative to the model input ([0,1] spans it), keeping scores >= min_score_thresh after
 * clipping the logit to +-score_clipping_thresh and a sigmoid. Writes at most max_out
 * detections into out (best-scored first when there are more) and returns how many. */
int dfd_ssd_decode(const dfd_ssd_decode_opts *o, const float *anchors, const float *reg, const float *cls,
                   dfd_face *out, int max_out);

/* Intersection over union of two x, y, w, h boxes (0 when they do not intersect). */
float dfd_box_iou(const float a[4], const float b[4]);

/* MediaPipe's WEIGHTED non-maximum suppression: repeatedly takes the best-scored
 * detection, gathers every remaining one whose IoU with it is above iou_thresh (itself
 * included), and outputs the score-weighted mean of their boxes and keypoints with the
 * best score. Works in place on dets[0..n), returns the number kept (best first). */
int dfd_weighted_nms(dfd_face *dets, int n, float iou_thresh);

/* Roll angle of a face from its eye keypoints (see dfd_face.roll_deg). */
float dfd_face_roll(const dfd_face *f);

/* ---- Detector ----------------------------------------------------------------------- */

typedef enum dfd_face_mode {
    DFD_FACE_AUTO = 0,  /* short range first; full range (and tiles) when needed, see face.c */
    DFD_FACE_SHORT = 1, /* short range on the letterboxed image only (MediaPipe's default) */
    DFD_FACE_FULL = 2   /* full range on the letterboxed image only */
} dfd_face_mode;

typedef struct dfd_face_opts {
    const char *models_dir; /* folder with blazeface-short/-full.safetensors, or with them in its
                               registry/ (as --models and $DFD_MODELS_DIR mean); NULL = search:
                               $DFD_MODELS_DIR, $DFD_MODELS_DIR/registry, then the registry/
                               folder of each of dfd_model_dirs (core.h: ./models, build/../models,
                               the installed share/dfd/models) */
    dfd_face_mode mode;
    float min_score;        /* 0.5 */
    float nms_iou;          /* 0.3 */
    int min_face;           /* smallest face side, in source pixels, auto mode looks for; 40 */
    int max_faces;          /* keep at most this many (best first); 0 = no cap */
    nn_backend backend;     /* NN_BACKEND_DNNL (NN_BACKEND_REF for tests) */
    int threads;            /* nn threads per pass; default 1 (see face/detector.c), 0 = all */
} dfd_face_opts;

void dfd_face_opts_default(dfd_face_opts *o);

/* A detector holds its models and buffers: use one per thread (several may run at once). */
typedef struct dfd_face_detector dfd_face_detector;

/* Loads the models the mode needs (both for AUTO). DFD_E_NOT_FOUND names the file and
 * says to run setup.sh when a model is missing. */
int dfd_face_detector_create(const dfd_face_opts *o, dfd_face_detector **out, dfd_error *err);
void dfd_face_detector_free(dfd_face_detector *d);

/* Finds the faces of an image: *faces (malloc'ed, caller frees; NULL when none) receives
 * *count faces, best score first. */
int dfd_face_detect(dfd_face_detector *d, const dfd_image *img, dfd_face **faces, int *count, dfd_error *err);

/* The index of the largest of n >= 1 faces by box area (the original pipeline's choice of
 * a photo's face, and the subject in most photos); the first of equals. */
int dfd_face_largest(const dfd_face *f, int n);

/* Changes the smallest face side the automatic mode looks for (values under 8 px are
 * ignored). */
void dfd_face_set_min_face(dfd_face_detector *d, int min_face);

/* Faces near known ones (e.g. a video's faces one sampled frame earlier): a short-range
 * pass on a window around each (see detector.c); much cheaper than dfd_face_detect on a
 * large frame, and blind to faces elsewhere. Output as dfd_face_detect. */
int dfd_face_detect_near(dfd_face_detector *d, const dfd_image *img, const dfd_face *near, int n_near,
                         dfd_face **faces, int *count, dfd_error *err);

/* One model on one square window of the image (x, y, side in source pixels; the window
 * may extend past the image, which is padded with black): faces in source pixels, before
 * any merging. max_out bounds the output. Returns the count or a negative DFD_E_* code. */
int dfd_face_detect_window(dfd_face_detector *d, dfd_blazeface_kind kind, const dfd_image *img, float x, float y,
                           float side, dfd_face *out, int max_out, dfd_error *err);

/* The raw model outputs for an already prepared input (side x side x 3, [-1,1] floats):
 * pointers valid until the next call. For tests comparing backends. */
int dfd_face_run_model(dfd_face_detector *d, dfd_blazeface_kind kind, const float *input, const float **reg,
                       const float **cls, dfd_error *err);

/* Where the model files are looked for (see dfd_face_opts.models_dir); writes the folder
 * into buf. Returns DFD_OK when blazeface-short.safetensors exists there. */
int dfd_face_models_dir(const char *hint, char *buf, size_t cap);

/* ---- Tracks ------------------------------------------------------------------------- */

typedef struct dfd_track_point {
    int sample;          /* index into the sampled frames passed in */
    dfd_face face;
} dfd_track_point;

typedef struct dfd_face_track {
    int id;              /* 1, 2, ... in order of length (1 = the main track) */
    dfd_track_point *points;
    int n_points;        /* in frame order */
} dfd_face_track;

typedef struct dfd_track_opts {
    float min_iou;       /* a detection continues a track when IoU >= this ... (0.2) */
    float max_dist;      /* ... or its centre is within max_dist x the track's box side (0.6) */
    int max_gap;         /* frames a track may miss and still be continued (3) */
    float min_coverage;  /* tracks on fewer than this fraction of frames are dropped as
                            spurious, unless they are the only track (0.1) */
} dfd_track_opts;

void dfd_track_opts_default(dfd_track_opts *o);

/* Links per-frame detections (faces[i] has counts[i] faces, frames in time order) into
 * tracks, one per person: greedy matching by overlap and centre distance against each
 * track's last box, tracks surviving up to max_gap missed frames, then fragments of one
 * person (disjoint in time, ends close in position and size) joined. *tracks is
 * malloc'ed (free with dfd_face_tracks_free), sorted longest first. */
int dfd_face_track_link(const dfd_face *const *faces, const int *counts, int n_frames, const dfd_track_opts *o,
                        dfd_face_track **tracks, int *n_tracks, dfd_error *err);
void dfd_face_tracks_free(dfd_face_track *tracks, int n);

/* The face search on a video's samples, as every video analysis and `dfd faces` does it
 * (track.c): a whole-frame search on the first sample, every DFD_VIDEO_FULL_SCAN_EVERY
 * samples, after a sample where a face was lost, and every DFD_VIDEO_FULL_SCAN_EMPTY
 * samples while none is in view, looking for faces from 1/DFD_VIDEO_MIN_FACE_DIV of the
 * frame's short side (but at least min_face, the detector's own minimum, restored after);
 * in between, a search only around the previous sample's faces (dfd_face_detect_near).
 * Call it for samples i = 0, 1, ... in order with faces[i]/counts[i] to fill (the earlier
 * ones are read) and *since_full 0 before the first; link the result with
 * dfd_face_track_link (default options). */
#define DFD_VIDEO_FULL_SCAN_EVERY 10
#define DFD_VIDEO_FULL_SCAN_EMPTY 3
#define DFD_VIDEO_MIN_FACE_DIV 20
int dfd_face_detect_sample(dfd_face_detector *d, const dfd_image *img, int i, dfd_face **faces, int *counts,
                           int *since_full, int min_face, dfd_error *err);

/* ---- Crop contract -------------------------------------------------------------------- */

typedef enum dfd_norm {
    DFD_NORM_MINUS1_1 = 0, /* v / 127.5 - 1 (Keras MobileNet/Xception "tf" mode) */
    DFD_NORM_0_1 = 1,      /* v / 255 */
    DFD_NORM_IMAGENET = 2, /* (v / 255 - mean) / std, ImageNet RGB mean and std */
    DFD_NORM_RESIDUAL = 3  /* (v - mean of its 3 x 3 neighbourhood) / 16, per channel: a
                            * high-pass "noise residual" input (faces' content and colour
                            * gone, fine texture, noise and compression traces kept) */
} dfd_norm;
#define DFD_NORM_COUNT 4
/* The contract's name of a normalisation ("minus1_1", ..., "residual"); NULL if unknown. */
const char *dfd_norm_name(dfd_norm n);
/* The normalisation of that name, -1 if none. */
int dfd_norm_from_name(const char *name);

typedef struct dfd_crop_contract {
    float margin;          /* crop side = margin x max(box w, box h) */
    float shift_y;         /* crop centre = box centre + shift_y x that box side, downwards */
    int align_roll;        /* 1: rotate about the crop centre so the eyes are level */
    dfd_border border;     /* outside the image: DFD_BORDER_REPLICATE or black (FILL) */
    int size;              /* output side in pixels */
    dfd_norm norm;
} dfd_crop_contract;

/* The default contract (docs/preprocessing.md) at output side size. */
void dfd_crop_contract_default(dfd_crop_contract *c, int size);
/* As a JSON object text (malloc'ed), for a model file's "preprocess" metadata. */
char *dfd_crop_contract_to_json(const dfd_crop_contract *c);
/* Parses that JSON; keys left out take the defaults; unknown values are DFD_E_MODEL. */
int dfd_crop_contract_from_json(const char *json, dfd_crop_contract *c, dfd_error *err);

/* The square (x, y, side) in source pixels that the contract crops for a face. */
void dfd_face_crop_square(const dfd_face *f, const dfd_crop_contract *c, float sq[3]);
/* Cuts the face out as an RGB image of c->size x c->size. */
int dfd_face_crop(const dfd_image *img, const dfd_face *f, const dfd_crop_contract *c, dfd_image *out, dfd_error *err);
/* Normalises an RGB image (HWC) into floats per c->norm; out holds w*h*3 values. */
void dfd_crop_normalize(const dfd_image *img, dfd_norm norm, float *out);

/* ---- Landmarks: MediaPipe Face Mesh ------------------------------------------------------ */

#define DFD_MESH_POINTS 468
#define DFD_MESH_OVAL_POINTS 36
#define DFD_MESH_BROW_POINTS 10
/* Mesh indices of the face's outline (MediaPipe's FACE_OVAL, from the top of the forehead,
 * clockwise on screen) and of the upper eyebrow contours (subject's right, then left). */
extern const int dfd_mesh_face_oval[DFD_MESH_OVAL_POINTS];
extern const int dfd_mesh_brows[DFD_MESH_BROW_POINTS];

typedef struct dfd_face_mesh {
    float pt[DFD_MESH_POINTS][3]; /* x, y in source pixels; z: relative depth on the x scale */
    float presence;               /* sigmoid of the face-presence logit: is a face in the window */
    float roi[4];                 /* the window it ran on: centre x, y, side, angle (radians) */
} dfd_face_mesh;

/* A landmarker holds face-landmark.safetensors and its buffers; one per thread. */
typedef struct dfd_landmarker dfd_landmarker;

/* Loads <models_dir>/face-landmark.safetensors (models_dir NULL: as dfd_face_models_dir
 * searches). threads: nn threads per pass (1 is right for this small net). */
int dfd_landmarker_create(const char *models_dir, nn_backend backend, int threads, dfd_landmarker **out, dfd_error *err);
void dfd_landmarker_free(dfd_landmarker *l);

/* Windows (roi: centre x, y, side, angle in radians, positive = clockwise on screen), as
 * MediaPipe derives them: from a detection (box centre, 1.5 x the longer box side, turned
 * by the eye line), from a box alone (not turned), from a previous mesh (its extent in its
 * own frame, turned by the line between the outer eye corners 33 and 263, x 1.5). */
void dfd_face_mesh_roi_from_face(const dfd_face *f, float roi[4]);
void dfd_face_mesh_roi_from_box(const float box[4], float roi[4]);
void dfd_face_mesh_roi_from_mesh(const dfd_face_mesh *m, float roi[4]);

/* Runs the model on the window of img (RGB in [0,1], 192 px, edges replicated). */
int dfd_face_mesh_run(dfd_landmarker *l, const dfd_image *img, const float roi[4], dfd_face_mesh *out, dfd_error *err);
/* The window from face (or, when face is NULL, from box), then `refine` more passes each
 * on the window of the previous result (1 is MediaPipe's tracking step, done in place). */
int dfd_face_mesh_detect(dfd_landmarker *l, const dfd_image *img, const dfd_face *face, const float box[4], int refine,
                         dfd_face_mesh *out, dfd_error *err);

/* ---- Import ---------------------------------------------------------------------------- */

/* Converts a BlazeFace .tflite (short or full range, told apart by its input size) into a
 * dfd model file (or Face Mesh's face_landmark.tflite, told apart by its outputs, into
 * architecture "face-landmark" checked against src/models/face_landmark.c) 
 * dfd model file: builds the graph with src/models/blazeface.c, copies the weights by
 * name, checks that it computes what the graph converted from the .tflite computes on a
 * fixed input, and writes the parameters with metadata (architecture "blazeface-short" or
 * "blazeface-full"). *arch (may be NULL) receives the architecture name (static). */
int dfd_face_import_tflite(const char *in_path, const char *out_path, const char **arch, dfd_error *err);

/* Loads a BlazeFace model file: checks its metadata names a BlazeFace architecture and
 * loads the weights by name into the graph the builder makes. */
int dfd_face_load_model(const char *path, dfd_blazeface_kind *kind, nn_graph **out, dfd_error *err);

#endif
