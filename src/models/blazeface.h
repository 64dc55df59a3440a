/*
 * blazeface — the two BlazeFace face detectors of MediaPipe as nn graphs:
 *
 *   blazeface-short  face_detection_short_range: input {128,128,3}, 896 anchors
 *   blazeface-full   face_detection_full_range:  input {192,192,3}, 2304 anchors
 *
 * The graphs reproduce the Keras models the .tflite files were exported from, with the
 * same layer and weight names ("conv2d_3/kernel", "depthwise_conv2d_3/depthwise_kernel",
 * "classificator_8/bias", ...), so that weights converted from the .tflite files by
 * `dfd import tflite` load by name. Inputs are RGB scaled to [-1, 1]. Output 0 is the
 * regressors {anchors, 16} (box x, y, w, h and six keypoints x, y, in input pixels
 * relative to the anchor), output 1 the classificators {anchors, 1} (score logits).
 * Anchor generation and decoding live in src/face.
 */
#ifndef DFD_MODELS_BLAZEFACE_H
#define DFD_MODELS_BLAZEFACE_H

#include "nn/nn.h"

typedef enum dfd_blazeface_kind { DFD_BLAZEFACE_SHORT = 0, DFD_BLAZEFACE_FULL = 1 } dfd_blazeface_kind;

/* Architecture name as recorded in model files: "blazeface-short" / "blazeface-full". */
const char *dfd_blazeface_name(dfd_blazeface_kind kind);
/* The kind for a name, or -1. */
int dfd_blazeface_kind_from_name(const char *name);
/* Side of the square input: 128 / 192. */
int dfd_blazeface_input_size(dfd_blazeface_kind kind);
/* Number of anchors (rows of both outputs): 896 / 2304. */
int dfd_blazeface_num_anchors(dfd_blazeface_kind kind);

/* Builds the graph with zeroed weights (load them from a model file). */
int dfd_blazeface_build(dfd_blazeface_kind kind, nn_graph **out, dfd_error *err);

#endif
