/*
 * tfjs — reads TensorFlow.js layers models (model.json + binary weight shards), the form
 * in which npm packages ship pretrained Keras models (nsfwjs's ImageNet-derived
 * MobileNetV2), and copies their weights into an nn graph by Keras name.
 *
 * Handles float32 weights and the uint8/uint16 affine quantisation TF.js writes
 * (value = q * scale + min). Everything read is checked: manifest entries against the
 * shard sizes, shapes against the graph.
 */
#ifndef DFD_IO_TFJS_H
#define DFD_IO_TFJS_H

#include "nn/nn.h"

typedef struct dfd_tfjs_report {
    int loaded;        /* tensors copied into the graph */
    int skipped;       /* tensors whose name matched skip_prefixes */
    int params_unset;  /* graph parameters no tensor set (e.g. a new head) */
    int gamma_unset;   /* ... of which batch-norm scales ("/gamma"), which Keras layers built
                        * with scale=False (Inception v3) do not have: nn leaves them at one */
    char first_unset[NN_NAME_MAX]; /* the first unset parameter that is not a gamma */
} dfd_tfjs_report;

/* Loads model.json (and the shards it names, from the same folder) into g. Every tensor
 * must match a graph parameter by name and shape, except those whose name starts with one
 * of the NULL-terminated skip_prefixes (e.g. another task's classifier head): an unknown
 * name or a shape mismatch is DFD_E_MODEL naming the tensor. */
int dfd_tfjs_load(const char *model_json, nn_graph *g, const char *const *skip_prefixes, dfd_tfjs_report *rep,
                  dfd_error *err);

/* *found = 1 when the manifest of model_json lists a tensor of that name (to tell which
 * architecture a file holds before building one). */
int dfd_tfjs_has_weight(const char *model_json, const char *name, int *found, dfd_error *err);

#endif
