/*
 * models — dfd's architectures, built as nn graphs whose layer and weight names are
 * exactly Keras's, so that Keras .h5 weights, the npm registry's converted models and
 * dfd's own safetensors files all map onto them by name.
 *
 *   xception         keras.applications.Xception(include_top=False), output {H/32,W/32,2048}
 *   mobilenet_v2     keras.applications.MobileNetV2(alpha, include_top=False), {H/32,W/32,1280}
 *   inception_v3     keras.applications.InceptionV3(include_top=False), {(H-75)/32+1,...,2048};
 *                    its conv2d_bn layers named conv2d_1.., batch_normalization_1.. (Keras <= 2.2,
 *                    as the packaged file has them)
 *   *-image          backbone + the binary head; output 0 is one logit (p_fake = sigmoid)
 *   *-video          TimeDistributed(backbone + GAP) over T frames, two LSTMs, logit
 *   tiny-cnn/-video  small stand-ins with the same heads, for fast end-to-end tests
 *
 * Names of layers Keras creates without an explicit name (the residual 1x1 convolutions
 * of Xception, the heads' pooling/dropout/dense, the LSTMs) are the ones Keras gives them
 * in a fresh session: "conv2d", "conv2d_1", ..., "batch_normalization", "dense_1".
 * Node order follows Keras's model.layers order, so "unfreeze from layer X" means the same.
 *
 * Parameters are created as nn creates them (zero, batch-norm gamma and variance one):
 * call nn_graph_init_weights() to train from scratch, or load a model file.
 */
#ifndef DFD_MODELS_H
#define DFD_MODELS_H

#include "dfd/model.h"
#include "nn/nn.h"

/* Keras BatchNormalization's default epsilon, which Xception keeps and MobileNetV2 sets. */
#define DFD_KERAS_BN_EPS 1e-3f

typedef struct dfd_arch_opts {
    int input_size; /* square input side in pixels; 0 = the architecture's default */
    int frames;     /* video architectures: frames per clip; 0 = 30 */
    float dropout;  /* rate of the head's dropout layers; < 0 = 0.5 */
    float width;    /* MobileNetV2 alpha / tiny width multiplier; 0 = 1.0 (Xception: must be 0 or 1) */
    int members;    /* image classifiers: an ensemble of this many copies (0 or 1 = one; at most
                     * DFD_MODEL_MAX_MEMBERS), see dfd_arch_build */
} dfd_arch_opts;

/* All fields to "default" (0, 0, -1, 0). */
void dfd_arch_opts_default(dfd_arch_opts *o);

typedef struct dfd_arch_info {
    const char *name;        /* registry name, "xception-image" */
    const char *description; /* one line for `dfd` help and the bench */
    int default_input;       /* default input side */
    int min_input;           /* smallest input side it accepts */
    int is_video;            /* input {T,H,W,3} instead of {H,W,3} */
    int has_head;            /* output is a logit {1} (else a feature map) */
} dfd_arch_info;

/* The registry, in a stable order; *count receives its length. */
const dfd_arch_info *dfd_arch_list(int *count);
/* The entry for a name, or NULL. */
const dfd_arch_info *dfd_arch_find(const char *name);

/* Builds a new graph for a registered architecture (opts NULL = defaults). The input node
 * is named "input" ({S,S,3}, or {T,S,S,3} for video), output 0 is the model's output.
 * With opts->members = N > 1 (image classifiers only) the graph is an ensemble: N copies
 * of the network on the one input, layers named "m0/...", ..., "m<N-1>/...", their logits
 * joined ("ensemble_logits") and combined by a dense layer without bias, "ensemble" (its
 * kernel {N,1} is loaded from the model file; 1/N each is the logit mean).
 * Errors: DFD_E_NOT_FOUND for an unknown name (the message lists the known ones),
 * DFD_E_ARG for options out of range. */
int dfd_arch_build(const char *name, const dfd_arch_opts *opts, nn_graph **out, dfd_error *err);

/* ---- Pieces, for builders that compose them (importers, other architectures) ---------- */
/* Each appends layers to g after node x and returns the last node, or -1 with the
 * graph's error set (nn_graph_error). */

/* Xception without top: x must be {H,W,3} with H,W >= 71. */
int dfd_xception_backbone(nn_graph *g, int x);
/* MobileNetV2 without top at width multiplier alpha (> 0). */
int dfd_mobilenet_v2_backbone(nn_graph *g, int x, float alpha);
/* Inception v3 without top: x must be {H,W,3} with H,W >= 75. */
int dfd_inception_v3_backbone(nn_graph *g, int x);
/* Number of channels of MobileNetV2's last layer at alpha (1280 for alpha <= 1). */
int dfd_mobilenet_v2_channels(float alpha);

#endif
