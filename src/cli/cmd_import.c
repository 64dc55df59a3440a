/* cmd_import.c — `dfd import FORMAT IN OUT`: converting models made elsewhere into dfd
 * model files. One entry per format in the table below; `tflite` (MediaPipe's BlazeFace
 * detectors) is the first, others (e.g. keras) are added as another row. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "face/face.h"
#include "io/model_file.h"
#include "io/tfjs.h"
#include "models/models.h"

const char cmd_import_help[] =
    "Usage: dfd import FORMAT IN OUT\n\n"
    "Converts a model from another framework into a dfd model file (safetensors with\n"
    "metadata naming its architecture).\n\n"
    "Formats:\n"
    "  tflite   a BlazeFace face detector from MediaPipe (face_detection_short_range.tflite\n"
    "           or face_detection_full_range.tflite, from the npm package\n"
    "           @mediapipe/face_detection); writes architecture blazeface-short or\n"
    "           blazeface-full after checking that dfd's graph computes what the file does.\n"
    "           Files using operators dfd does not run are refused, naming the operator.\n"
    "  tfjs     a TensorFlow.js layers model (model.json + weight shards) of a Keras\n"
    "           MobileNetV2, e.g. the ImageNet-derived one in the npm package nsfwjs;\n"
    "           writes the backbone (architecture mobilenet_v2, output \"features\") as a\n"
    "           starting point for `dfd train --init`. Its classifier head is dropped.\n\n"
    "setup.sh runs this for you (scripts/convert-registry-models.sh) into models/registry/.\n\n"
    "Exit status: 0 when the model was written, 1 when it could not be, 2 on a usage error.\n";

static int import_tflite(const char *in, const char *out) {
    dfd_error err;
    dfd_error_clear(&err);
    const char *arch = NULL;
    if (dfd_face_import_tflite(in, out, &arch, &err)) {
        fprintf(stderr, "dfd import: %s: %s\n", in, err.message);
        return DFD_EXIT_FAILED;
    }
    printf("%s: %s -> %s\n", arch, in, out);
    return DFD_EXIT_OK;
}

/* The backbone of a TF.js MobileNetV2: every backbone weight must be in the file; dense_*
 * layers (the package's own classifier head) are dropped. */
static int import_tfjs(const char *in, const char *out) {
    dfd_error err;
    dfd_error_clear(&err);
    nn_graph *g = NULL;
    dfd_arch_opts ao;
    dfd_arch_opts_default(&ao);
    ao.input_size = 224;
    static const char *const skip[] = {"dense", NULL};
    dfd_tfjs_report rep;
    int rc = dfd_arch_build("mobilenet_v2", &ao, &g, &err);
    if (!rc) rc = dfd_tfjs_load(in, g, skip, &rep, &err);
    if (!rc && rep.params_unset)
        rc = dfd_fail(&err, DFD_E_MODEL, "%d MobileNetV2 weights are not in the file (first: '%s')", rep.params_unset,
                      rep.first_unset);
    if (!rc) {
        dfd_model_meta m;
        dfd_model_meta_init(&m);
        m.arch = "mobilenet_v2";
        m.input_size = 224;
        m.output = "features";
        m.training_data = "ImageNet-derived MobileNetV2 weights from a TF.js model (e.g. npm nsfwjs); "
                          "classifier head dropped";
        rc = dfd_model_save(g, &m, NULL, out, &err);
    }
    nn_graph_free(g);
    if (rc) {
        fprintf(stderr, "dfd import: %s: %s\n", in, err.message);
        return DFD_EXIT_FAILED;
    }
    printf("mobilenet_v2: %s -> %s (%d tensors, %d head tensors dropped)\n", in, out, rep.loaded, rep.skipped);
    return DFD_EXIT_OK;
}

static const struct {
    const char *name;
    int (*run)(const char *in, const char *out);
} formats[] = {
    {"tflite", import_tflite},
    {"tfjs", import_tfjs},
};

int cmd_import(int argc, char **argv) {
    if (argc != 4) return cli_usage_error("import", "expects FORMAT IN OUT");
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(argv[1], formats[i].name) == 0) return formats[i].run(argv[2], argv[3]);
    return cli_usage_error("import", "unknown format '%s' (known: tflite, tfjs)", argv[1]);
}
