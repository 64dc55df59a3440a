/*
 * keras — reading the original system's Keras models (`dfd import keras`): the weights of
 * a Keras 2 / tf.keras HDF5 file (.h5) or a Keras 3 archive (.keras) copied into one of
 * dfd's architectures (built by the caller: io does not depend on src/models).
 *
 * The two layouts (docs/keras-import.md has the details and the sources):
 *   .h5     HDF5. Root attribute model_config (JSON), group model_weights (or the root
 *           itself for a save_weights file) with attribute layer_names (model.layers
 *           order); one group per layer with attribute weight_names, the datasets at
 *           "<layer>/<weight name>" (e.g. "block1_conv1/block1_conv1/kernel:0"). A nested
 *           model (a functional "xception" inside the image model, TimeDistributed(Model)
 *           in the video model) is one group holding its inner layers' weights, named
 *           "<inner layer>/<weight>:0".
 *   .keras  a zip with metadata.json, config.json (the model's serialised config) and
 *           model.weights.h5, whose datasets are "layers/<class>[_k]/vars/<i>": the group
 *           names come from the layer's class (snake_case, numbered per class in layer
 *           order), not its name, and variables are numbered in the layer's weight
 *           order. config.json gives names, classes and order; LSTMs keep theirs under
 *           ".../cell/vars", a wrapper's inner layer under ".../layer", a nested model's
 *           under ".../layers/...".
 *
 * Mapping onto dfd's graph (whose parameters carry Keras names, "<layer>/<weight>"):
 * named layers (block1_conv1, block5_sepconv2_bn, ...) by name; layers Keras names
 * automatically (conv2d*, batch_normalization*, dense*, lstm*) by their order of
 * appearance within that family, since their numbers depend on what else the Keras
 * session had created. Every weight in the file must land in a parameter and every
 * parameter must be in the file, with the same shape; problems name the layer.
 *
 * Files come from outside: HDF5 structure is walked with caps on counts and string
 * sizes, only hard links are followed, and a dataset's type and dimensions are checked
 * against the parameter before anything is read. Parsing the HDF5 container itself is the
 * HDF5 library's job, and it is not hardened against hostile files: import models you
 * would load into Keras, not arbitrary uploads. HDF5 is not thread-safe in Debian's serial build: import from one
 * thread at a time. The library's own error printing is silenced during each call.
 */
#ifndef DFD_IO_KERAS_H
#define DFD_IO_KERAS_H

#include "core/core.h"
#include "io/model_file.h"
#include "nn/nn.h"

typedef enum dfd_keras_container {
    DFD_KERAS_H5 = 1,   /* HDF5 .h5 (Keras 2 / tf.keras model.save or save_weights) */
    DFD_KERAS_ZIP = 3   /* Keras 3 .keras archive */
} dfd_keras_container;

/* What the file says about itself (from its config where it has one). */
typedef struct dfd_keras_info {
    dfd_keras_container container;
    char keras_version[32];      /* "2.12.0", "3.3.3"; "" when the file does not say */
    int has_config;              /* 1 when layer classes and order come from a config */
    int is_video;                /* LSTM layers or a 5-D input: a video model */
    int input_size;              /* square input side from the config, 0 when unknown */
    int frames;                  /* frames per clip from the config, 0 when unknown */
    float dropout;               /* rate of the first Dropout layer, -1 when unknown */
    char final_activation[32];   /* activation of the last Dense layer ("sigmoid"), "" unknown */
    int n_layers;                /* layers that hold weights (nested ones counted inside) */
    int n_weights;               /* weight datasets under those layers */
} dfd_keras_info;

typedef struct dfd_keras_file dfd_keras_file;

/* Opens a .h5 or .keras file (told apart by content, not name) and reads its structure.
 * DFD_E_UNSUPPORTED for a file that is neither HDF5 nor a zip; DFD_E_MODEL for an HDF5
 * file or zip that is not a Keras model, or whose structure is inconsistent. */
int dfd_keras_open(const char *path, dfd_keras_file **out, dfd_error *err);
void dfd_keras_close(dfd_keras_file *f);
const dfd_keras_info *dfd_keras_get_info(const dfd_keras_file *f);

/* Copies the file's weights into g's parameters. Every check (layers present on both
 * sides, classes, the configured activations, strides and padding where the file has a
 * config, shapes) runs before any value is read; DFD_E_MODEL names the first problem,
 * e.g. "layer 'block3_sepconv1': missing in the file", "unexpected layer 'foo'", "shape
 * mismatch for 'dense/kernel' ...". On failure g's parameters may be partly written. */
int dfd_keras_load(dfd_keras_file *f, nn_graph *g, dfd_error *err);

typedef struct dfd_keras_import_opts {
    const char *arch;       /* "xception-image" / "xception-video"; NULL: video when the
                             * file has LSTMs or a 5-D input, else image */
    int input_size;         /* 0: the file's, else 299 */
    int frames;             /* video: 0 = the file's, else 30 */
    const char *preprocess; /* JSON object for the model file's "preprocess" (the crop
                             * contract, made by the caller; its "size", when present,
                             * becomes the input size); NULL = none */
} dfd_keras_import_opts;

typedef struct dfd_keras_import_report {
    dfd_keras_info info;
    char arch[32];
    int input_size, frames;
    const char *output;     /* the output meaning written ("logit_p_real"), static */
} dfd_keras_import_report;

/* The whole import: opens in, builds the architecture with build (given a meta with arch,
 * input_size and frames), loads the weights, and writes a dfd model file to out with
 * output "logit_p_real" (see keras.c for why), threshold 0.5, the caller's preprocess
 * and a note on the file's origin. opts and rep may be NULL. */
int dfd_keras_import(const char *in, const char *out, const dfd_keras_import_opts *opts, dfd_model_build_fn build,
                     void *user, dfd_keras_import_report *rep, dfd_error *err);

/* Keras's class-name to snake_case rule (keras.src.utils.naming.to_snake_case), used for
 * the .keras group names: "SeparableConv2D" -> "separable_conv2d". Exposed for tests. */
void dfd_keras_snake_case(const char *cls, char *out, size_t cap);

#endif
