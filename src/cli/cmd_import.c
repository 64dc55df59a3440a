/* cmd_import.c — `dfd import FORMAT IN OUT`: converting models made elsewhere into dfd
 * model files. One entry per format in the table below; `tflite` (MediaPipe's BlazeFace
 * detectors) is the first, others (e.g. keras) are added as another row. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "face/face.h"

const char cmd_import_help[] =
    "Usage: dfd import FORMAT IN OUT\n\n"
    "Converts a model from another framework into a dfd model file (safetensors with\n"
    "metadata naming its architecture).\n\n"
    "Formats:\n"
    "  tflite   a BlazeFace face detector from MediaPipe (face_detection_short_range.tflite\n"
    "           or face_detection_full_range.tflite, from the npm package\n"
    "           @mediapipe/face_detection); writes architecture blazeface-short or\n"
    "           blazeface-full after checking that dfd's graph computes what the file does.\n"
    "           Files using operators dfd does not run are refused, naming the operator.\n\n"
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

static const struct {
    const char *name;
    int (*run)(const char *in, const char *out);
} formats[] = {
    {"tflite", import_tflite},
};

int cmd_import(int argc, char **argv) {
    if (argc != 4) return cli_usage_error("import", "expects FORMAT IN OUT");
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(argv[1], formats[i].name) == 0) return formats[i].run(argv[2], argv[3]);
    return cli_usage_error("import", "unknown format '%s' (known: tflite)", argv[1]);
}
