/*
 * dfd/model.h — model files: converting models made elsewhere into dfd model files, and
 * reading what a model file says about itself. Conventions as in dfd.h; every call here
 * works on its own arguments only, so any thread may make any call.
 */
#ifndef DFD_MODEL_H
#define DFD_MODEL_H

#include "dfd/dfd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Options of dfd_model_import that only some formats take (keras); zero = the defaults. */
typedef struct dfd_import_options {
    const char *arch; /* keras: "xception-image" or "xception-video"; NULL = from the file */
    int input_size;   /* keras: input side, 71..2048; 0 = the file's, else 299 */
    int frames;       /* keras: frames of a video model, 1..1000; 0 = the file's, else 30 */
} dfd_import_options;

DFD_API void dfd_import_options_default(dfd_import_options *o);

/* Converts the model `in` of format "tflite" (MediaPipe's BlazeFace detectors and Face
 * Mesh landmark model, checked to compute what the file computes), "tfjs" (a TF.js Keras
 * MobileNetV2, whose backbone becomes architecture mobilenet_v2 with output "features",
 * for `dfd train --init`) or "keras" (.h5 or .keras of the original system's Xception
 * image and video models, with the original's preprocessing: no margin, RGB / 255, output
 * read as P(real)) into the dfd model file `out` (docs/keras-import.md). o may be NULL.
 * *summary (may be NULL) receives one line saying what was written (malloc'ed, dfd_free).
 * DFD_E_UNSUPPORTED for an unknown format, DFD_E_ARG for an option the format does not
 * take or out of range. */
DFD_API int dfd_model_import(const char *format, const char *in, const char *out, const dfd_import_options *o,
                             char **summary, dfd_error *err);

/* The most networks an ensemble holds (dfd_model_ensemble, the model file's "members"). */
#define DFD_MODEL_MAX_MEMBERS 8

/* Joins n (2..DFD_MODEL_MAX_MEMBERS) image models dfd trained (same architecture, input size and crop
 * contract, same task) into one model file `out` whose P(fake) is the sigmoid of the mean
 * of their logits: an ensemble, loaded and used as any model (metadata "members"; its
 * networks run one after the other, so it costs n times one). threshold in [0,1] is
 * stored; < 0 stores the members' thresholds averaged as logits, a starting point only:
 * choose the ensemble's own on validation data (`dfd eval`, `dfd calibrate`). Weights stay
 * BF16 when every member's are. *summary (may be NULL) receives one line (dfd_free).
 * DFD_E_ARG when the members do not fit together (the message says which and why). */
DFD_API int dfd_model_ensemble(const char *const *models, int n, const char *out, double threshold, char **summary,
                               dfd_error *err);

/* What the model file at path says, as one JSON object: "file" (the base name), "name"
 * (without .safetensors), "architecture", "input_size", "frames" (video models), "members"
 * (ensembles), "task", "heatmap" (how its heat maps are made: "occlusion-fast" or
 * "gradcam-full", docs/explain.md), "threshold", "output", "preprocess" (the crop contract), "training_data", "metrics",
 * "dfd_version"; only the header is read. A file that cannot be read gives an object with
 * "file", "name" and "error", and the failure's code. *json is malloc'ed (dfd_free), NULL
 * only on DFD_E_NOMEM. */
DFD_API int dfd_model_info(const char *path, char **json, dfd_error *err);

#ifdef __cplusplus
}
#endif
#endif
