/* cmd_import.c — `dfd import FORMAT IN OUT`: converting models made elsewhere into dfd
 * model files. One entry per format in the table below: `tflite` (MediaPipe's BlazeFace
 * detectors and Face Mesh landmark model), `tfjs`, `keras` (the original system's models, io/keras.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "face/face.h"
#include "io/keras.h"
#include "io/model_file.h"
#include "io/tfjs.h"
#include "models/models.h"

const char cmd_import_help[] =
    "Usage: dfd import FORMAT IN OUT [OPTIONS]\n\n"
    "Converts a model from another framework into a dfd model file (safetensors with\n"
    "metadata naming its architecture).\n\n"
    "Formats:\n"
    "  tflite   a BlazeFace face detector from MediaPipe (face_detection_short_range.tflite\n"
    "           or face_detection_full_range.tflite, from the npm package\n"
    "           @mediapipe/face_detection); writes architecture blazeface-short or\n"
    "           blazeface-full after checking that dfd's graph computes what the file does.\n"
    "           Also MediaPipe Face Mesh's face_landmark.tflite (cut out of the npm package\n"
    "           @mediapipe/face_mesh by setup.sh): writes architecture face-landmark, checked\n"
    "           the same way.\n"
    "           Files using operators dfd does not run are refused, naming the operator.\n"
    "  tfjs     a TensorFlow.js layers model (model.json + weight shards) of a Keras\n"
    "           MobileNetV2, e.g. the ImageNet-derived one in the npm package nsfwjs;\n"
    "           writes the backbone (architecture mobilenet_v2, output \"features\") as a\n"
    "           starting point for `dfd train --init`. Its classifier head is dropped.\n"
    "  keras    the original system's Keras models: an .h5 (Keras 2 / tf.keras, e.g.\n"
    "           finetuned_model.h5) or a .keras archive (Keras 3), image (Xception + head)\n"
    "           or video (TimeDistributed Xception + LSTMs). Writes xception-image or\n"
    "           xception-video with the original's preprocessing (RGB, /255, no margin)\n"
    "           and its output read as P(real), which dfd turns into P(fake). Every\n"
    "           weight of the file must fit dfd's architecture; a mismatch names the layer.\n"
    "           Options: --arch xception-image|xception-video (default: from the file),\n"
    "           --input-size N and --frames N (default: the file's, else 299 and 30).\n"
    "           See docs/keras-import.md.\n\n"
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

static int build_arch(void *user, const dfd_model_meta *m, nn_graph **out, dfd_error *err) {
    (void)user;
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = m->input_size;
    o.frames = m->frames;
    return dfd_arch_build(m->arch, &o, out, err);
}

/* The original system's Keras models. Preprocessing is the original's: the detector's
 * box without margin, RGB, values / 255 (the importer sets the contract's size to the
 * network's input). */
static int import_keras(const char *in, const char *out, int argc, char **argv) {
    dfd_keras_import_opts o = {0};
    for (int i = 0; i < argc; i++) {
        long v;
        if (strcmp(argv[i], "--arch") == 0 && i + 1 < argc) {
            o.arch = argv[++i];
            if (strcmp(o.arch, "xception-image") != 0 && strcmp(o.arch, "xception-video") != 0)
                return cli_usage_error("import", "--arch must be xception-image or xception-video");
        } else if (strcmp(argv[i], "--input-size") == 0 && i + 1 < argc) {
            if (cli_parse_int(argv[++i], 71, 2048, &v)) return cli_usage_error("import", "--input-size: 71..2048");
            o.input_size = (int)v;
        } else if (strcmp(argv[i], "--frames") == 0 && i + 1 < argc) {
            if (cli_parse_int(argv[++i], 1, 1000, &v)) return cli_usage_error("import", "--frames: 1..1000");
            o.frames = (int)v;
        } else {
            return cli_usage_error("import", "keras: unknown option '%s'", argv[i]);
        }
    }
    dfd_crop_contract c;
    dfd_crop_contract_default(&c, o.input_size ? o.input_size : 299);
    c.margin = 1.0f;
    c.shift_y = 0.0f;
    c.align_roll = 0;
    c.norm = DFD_NORM_0_1;
    char *pre = dfd_crop_contract_to_json(&c);
    if (!pre) {
        fprintf(stderr, "dfd import: out of memory\n");
        return DFD_EXIT_FAILED;
    }
    o.preprocess = pre;
    dfd_error err;
    dfd_error_clear(&err);
    dfd_keras_import_report rep;
    int rc = dfd_keras_import(in, out, &o, build_arch, NULL, &rep, &err);
    free(pre);
    if (rc) {
        fprintf(stderr, "dfd import: %s: %s\n", in, err.message);
        return DFD_EXIT_FAILED;
    }
    printf("%s: %s -> %s (%s%s%s, %d weights in %d layers, input %d", rep.arch, in, out,
           rep.info.container == DFD_KERAS_ZIP ? ".keras" : ".h5", rep.info.keras_version[0] ? " from Keras " : "",
           rep.info.keras_version, rep.info.n_weights, rep.info.n_layers, rep.input_size);
    if (rep.frames) printf(", %d frames", rep.frames);
    printf("; output read as P(real))\n");
    return DFD_EXIT_OK;
}

/* Formats with options take them after IN OUT (run_args); the others take none. */
static const struct {
    const char *name;
    int (*run)(const char *in, const char *out);
    int (*run_args)(const char *in, const char *out, int argc, char **argv);
} formats[] = {
    {"tflite", import_tflite, NULL},
    {"tfjs", import_tfjs, NULL},
    {"keras", NULL, import_keras},
};

int cmd_import(int argc, char **argv) {
    if (argc < 4) return cli_usage_error("import", "expects FORMAT IN OUT");
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        if (strcmp(argv[1], formats[i].name) != 0) continue;
        if (formats[i].run_args) return formats[i].run_args(argv[2], argv[3], argc - 4, argv + 4);
        if (argc != 4) return cli_usage_error("import", "format '%s' takes no options", argv[1]);
        return formats[i].run(argv[2], argv[3]);
    }
    return cli_usage_error("import", "unknown format '%s' (known: tflite, tfjs, keras)", argv[1]);
}
