/*
 * model_file — dfd's model files: a safetensors file holding every parameter of an nn
 * graph under its parameter name ("block1_conv1/kernel", Keras layout) plus metadata that
 * says how to rebuild the graph and how to use its output:
 *
 *   format        "dfd.model/1"
 *   architecture  registry name (src/models), e.g. "xception-image"
 *   input_size    square input side in pixels;  frames, width, dropout: the other
 *                 architecture options (frames 0 for image models)
 *   preprocess    JSON object text: the preprocessing / crop contract the model was trained with
 *   output        what output 0 means: "logit_p_fake" (p_fake = sigmoid(output), what dfd
 *                 trains), "logit_p_real", "sigmoid_p_fake", "sigmoid_p_real" (models
 *                 imported from the original Keras system), or "features" (a backbone)
 *   members       an ensemble: this many networks of the architecture (2..8), layers and
 *                 tensors named "m0/...", "m1/...", on one input, their logits combined by
 *                 a last dense layer "ensemble" (weights 1/members: the logit mean); absent
 *                 for one network (src/models/registry.c builds both)
 *   threshold     decision threshold on p_fake, in [0,1]
 *   task          what "fake" means to this model: "manipulation" (a real face swapped or
 *                 altered: the default, and what a file without the field means) or
 *                 "synthetic" (a face generated whole, e.g. by a GAN or a diffusion model)
 *   heatmap       how a manipulation model's heat maps are made (dfd_options.explain):
 *                 "occlusion-fast" (probes; the default, and what a file without the field
 *                 means) or "gradcam-full" (Grad-CAM at the heat grid's resolution: for a
 *                 model taught where blends are, `dfd train --sbi-loc`, whose own Grad-CAM
 *                 localises; docs/explain.md measures both)
 *   training_data free text (data sets, splits);  metrics: JSON object text
 *   dfd_version   version of dfd that wrote the file
 *
 * Loading is strict: every tensor in the file must be a parameter of the graph with the
 * same shape, and every parameter must be in the file; otherwise DFD_E_MODEL naming the
 * tensor ("missing tensor 'block2_sepconv1/depthwise_kernel'"). Nothing is copied into
 * the graph unless everything matches.
 *
 * io must not depend on src/models (docs/architecture.md), so dfd_model_load takes the
 * architecture builder as a callback; callers pass one that calls dfd_arch_build.
 */
#ifndef DFD_IO_MODEL_FILE_H
#define DFD_IO_MODEL_FILE_H

#include "core/core.h"
#include "dfd/model.h"
#include "io/safetensors.h"
#include "nn/nn.h"

#define DFD_MODEL_FORMAT "dfd.model/1"
#define DFD_MODEL_OUTPUT_LOGIT "logit_p_fake"
#define DFD_MODEL_TASK_MANIPULATION "manipulation"
#define DFD_MODEL_TASK_SYNTHETIC "synthetic"
#define DFD_MODEL_HEATMAP_OCCLUSION "occlusion-fast"
#define DFD_MODEL_HEATMAP_GRADCAM_FULL "gradcam-full"

typedef struct dfd_model_meta {
    char *arch;          /* registry name (required) */
    int input_size;      /* > 0 */
    int frames;          /* video models: frames per clip; 0 otherwise */
    float width;         /* architecture width multiplier (1 = default) */
    float dropout;       /* head dropout rate used in training (< 0 = default) */
    int members;         /* an ensemble of this many networks of the architecture, their
                          * logits averaged (1 = one network; see "members" above) */
    char *preprocess;    /* JSON object text, or NULL */
    char *output;        /* see "output" above (NULL when saving means "logit_p_fake") */
    double threshold;    /* on p_fake, [0,1]; default 0.5 */
    char *task;          /* "manipulation" or "synthetic" (NULL when saving means "manipulation";
                          * always set by dfd_model_meta_read) */
    char *heatmap;       /* see "heatmap" above, or NULL (occlusion-fast) */
    char *training_data; /* free text, or NULL */
    char *metrics;       /* JSON object text, or NULL */
    char *dfd_version;   /* filled by dfd_model_save; read back by the loaders */
} dfd_model_meta;

/* Zeroes m and sets the defaults (threshold 0.5, width 1, dropout -1). */
void dfd_model_meta_init(dfd_model_meta *m);
/* Frees the strings and re-initialises m. */
void dfd_model_meta_free(dfd_model_meta *m);
/* 1 when task names a task dfd knows ("manipulation", "synthetic"). */
int dfd_model_task_known(const char *task);
/* 1 when method names a heat-map method a model file may ask for (see "heatmap"). */
int dfd_model_heatmap_known(const char *method);

typedef struct dfd_model_save_opts {
    int bf16; /* store every tensor as BF16 (half the size; ~3 significant digits) */
} dfd_model_save_opts;

/* Writes g's parameters and meta to path (atomically). opts may be NULL (fp32).
 * meta->arch and meta->input_size are required; preprocess and metrics, when given,
 * must be JSON objects. */
int dfd_model_save(nn_graph *g, const dfd_model_meta *meta, const dfd_model_save_opts *opts, const char *path,
                   dfd_error *err);

/* Reads and validates the metadata of an open file into m (caller frees with
 * dfd_model_meta_free). DFD_E_MODEL when the format, architecture, input size or
 * threshold is missing or invalid. */
int dfd_model_meta_read(const dfd_st_file *f, dfd_model_meta *m, dfd_error *err);

/* Copies the file's tensors into g's parameters, checking that names and shapes match
 * exactly (see above). Converts F16/BF16 to fp32. */
int dfd_model_load_params(const dfd_st_file *f, nn_graph *g, dfd_error *err);

/* Builds the graph the metadata names: typically a wrapper around dfd_arch_build. */
typedef int (*dfd_model_build_fn)(void *user, const dfd_model_meta *meta, nn_graph **out, dfd_error *err);

/* Opens path, reads its metadata, builds the graph with build(), loads the parameters.
 * On success *out owns the graph and meta (if not NULL) receives the metadata. */
int dfd_model_load(const char *path, dfd_model_build_fn build, void *user, nn_graph **out, dfd_model_meta *meta,
                   dfd_error *err);

#endif
