/* cmd_import.c — `dfd import FORMAT IN OUT`: converting models made elsewhere into dfd
 * model files with dfd_model_import (include/dfd/model.h), which holds each format's
 * settings: `tflite` (MediaPipe's BlazeFace detectors and Face Mesh landmark model),
 * `tfjs`, `keras` (the original system's models). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dfd/model.h"

enum { O_ARCH = 256, O_INPUT_SIZE, O_FRAMES };

static const cli_opt import_opts[] = {
    {NULL, 0, NULL, "Options (keras only):"},
    {"arch", O_ARCH, "NAME", "xception-image or xception-video (default: from the file)"},
    {"input-size", O_INPUT_SIZE, "N", "input side, 71..2048 (default: the file's, else 299)"},
    {"frames", O_FRAMES, "N", "frames of a video model, 1..1000 (default: the file's, else 30)"},
    {0}};

const cli_command cmd_import_cmd = {
    "import",
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
    "           MobileNetV2 or Inception v3, e.g. the ImageNet-derived ones in the npm\n"
    "           package nsfwjs; writes the backbone (architecture mobilenet_v2 or\n"
    "           inception_v3, output \"features\") as a starting point for\n"
    "           `dfd train --init`. Its classifier head is dropped.\n"
    "  keras    the original system's Keras models: an .h5 (Keras 2 / tf.keras, e.g.\n"
    "           finetuned_model.h5) or a .keras archive (Keras 3), image (Xception + head)\n"
    "           or video (TimeDistributed Xception + LSTMs). Writes xception-image or\n"
    "           xception-video with the original's preprocessing (RGB, /255, no margin)\n"
    "           and its output read as P(real), which dfd turns into P(fake). Every\n"
    "           weight of the file must fit dfd's architecture; a mismatch names the layer.\n"
    "           See docs/keras-import.md.\n\n",
    import_opts,
    "setup.sh runs this for you (scripts/convert-registry-models.sh) into models/registry/.\n\n"
    "Exit status: 0 when the model was written, 1 when it could not be, 2 on a usage error.\n"};

int cmd_import(int argc, char **argv) {
    dfd_import_options o;
    dfd_import_options_default(&o);
    int k;
    long v;
    const char *val;
    cli_parser p;
    if (cli_parser_init(&p, &cmd_import_cmd, argc, argv)) return DFD_EXIT_USAGE;
    while ((k = cli_next(&p, &val)) > 0) {
        switch (k) {
        case O_ARCH:
            if (strcmp(val, "xception-image") != 0 && strcmp(val, "xception-video") != 0)
                return cli_usage_error("import", "--arch must be xception-image or xception-video");
            o.arch = val;
            break;
        case O_INPUT_SIZE:
            if (cli_parse_int(val, 71, 2048, &v)) return cli_usage_error("import", "--input-size: 71..2048");
            o.input_size = (int)v;
            break;
        case O_FRAMES:
            if (cli_parse_int(val, 1, 1000, &v)) return cli_usage_error("import", "--frames: 1..1000");
            o.frames = (int)v;
            break;
        }
    }
    if (k < 0) return DFD_EXIT_USAGE;
    if (argc - p.first != 3) return cli_usage_error("import", "expects FORMAT IN OUT");
    const char *format = argv[p.first], *in = argv[p.first + 1], *out = argv[p.first + 2];
    if (strcmp(format, "tflite") != 0 && strcmp(format, "tfjs") != 0 && strcmp(format, "keras") != 0)
        return cli_usage_error("import", "unknown format '%s' (known: tflite, tfjs, keras)", format);
    if (strcmp(format, "keras") != 0 && (o.arch || o.input_size || o.frames))
        return cli_usage_error("import", "format '%s' takes no options", format);
    char *summary = NULL;
    dfd_error err;
    if (dfd_model_import(format, in, out, &o, &summary, &err) != DFD_OK) {
        fprintf(stderr, "dfd import: %s: %s\n", in, err.message);
        return DFD_EXIT_FAILED;
    }
    printf("%s\n", summary);
    dfd_free(summary);
    return DFD_EXIT_OK;
}
