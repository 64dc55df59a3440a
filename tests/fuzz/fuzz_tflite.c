/* fuzz_tflite — libFuzzer harness for the TFLite reader and converter (src/io/tflite.c,
 * src/io/tfl_convert.c), which `dfd import tflite` runs on a file from anywhere: parse
 * the flatbuffer, then build the nn graph (shape inference, option bounds); nothing is
 * executed. */
#include <stdint.h>

#include "io/tflite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tfl_model *m = NULL;
    dfd_error e;
    if (tfl_parse(data, size, &m, &e) != DFD_OK) return 0;
    nn_graph *g = NULL;
    if (tfl_to_graph(m, &g, &e) == DFD_OK) nn_graph_free(g);
    tfl_free(m);
    return 0;
}
