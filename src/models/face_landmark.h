/*
 * face_landmark — MediaPipe Face Mesh's landmark model (face_landmark.tflite from the npm
 * package @mediapipe/face_mesh) as an nn graph: architecture "face-landmark".
 *
 * Input {192,192,3}: an RGB face window scaled to [0, 1] (MediaPipe's face_landmark_cpu
 * graph: ImageToTensorCalculator with output range 0..1). Output 0 {1,1,1404}: 468
 * landmarks as x, y, z in input pixels (z on the x scale, relative to the face's centre);
 * output 1 {1,1,1}: the face-presence logit (sigmoid = probability that a face is there).
 * Layer and weight names are the file's ("conv2d_1/kernel", "p_re_lu_1/alpha", ...), so
 * that weights converted by `dfd import tflite` load by name.
 */
#ifndef DFD_MODELS_FACE_LANDMARK_H
#define DFD_MODELS_FACE_LANDMARK_H

#include "nn/nn.h"

#define DFD_FACE_LANDMARK_NAME "face-landmark"
#define DFD_FACE_LANDMARK_SIZE 192
#define DFD_FACE_LANDMARK_COUNT 468
#define DFD_FACE_LANDMARK_OUTPUT "face_landmarks" /* the model file's "output" */

/* Builds the graph with zeroed weights (load them from a model file). */
int dfd_face_landmark_build(nn_graph **out, dfd_error *err);

#endif
