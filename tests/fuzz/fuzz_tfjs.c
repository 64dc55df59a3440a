/* fuzz_tfjs — libFuzzer harness for the TF.js layers-model reader (src/io/tfjs.c), which
 * `dfd import` and setup.sh's registry conversion run on manifests and shards from npm:
 * the JSON manifest (groups, paths, entries, shapes, dtypes, quantisation) and the
 * dequantisation of the shard bytes into a small graph's parameters; and the manifest probe
 * (dfd_tfjs_has_weight) that tells MobileNetV2 from Inception v3.
 *
 * Input: the manifest (model.json) up to the first NUL byte, then the weight bytes, cut
 * in two halves written as the shards "shard1" and "shard2" of a private folder (made
 * once per process, removed at exit), so manifests naming one, both or missing shards
 * are all reachable. The graph has c1/kernel [1,1,3,2], c1/bias [2], d1/kernel [2,2],
 * d1/bias [2], the names the seeds use. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/tfjs.h"

static char dir[64];
static nn_graph *graph;

static void cleanup(void) {
    char p[128];
    const char *names[] = {"model.json", "shard1", "shard2"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    nn_graph_free(graph);
}

static void put(const char *name, const uint8_t *d, size_t n) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(d, 1, n, f) != n) || fclose(f) != 0) abort();
}

static nn_graph *make_graph(void) {
    nn_graph *g = nn_graph_new();
    int in = nn_input(g, "input", 3, (int[]){4, 4, 3});
    nn_conv_attr a = {.kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .padding = NN_PAD_VALID,
                      .groups = 1, .out_c = 2, .has_bias = 1};
    int c = nn_conv2d(g, "c1", in, &a);
    int d = nn_dense(g, "d1", c, 2, 1, NN_ACT_NONE);
    nn_mark_output(g, d);
    if (nn_graph_error(g)) abort();
    return g;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz-tfjs-XXXXXX");
        if (!mkdtemp(dir)) abort();
        graph = make_graph();
        atexit(cleanup);
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t jl = nul ? (size_t)(nul - data) : size;
    const uint8_t *w = nul ? nul + 1 : data + size;
    size_t wl = size - jl - (nul ? 1 : 0);
    put("model.json", data, jl);
    put("shard1", w, wl / 2);
    put("shard2", w + wl / 2, wl - wl / 2);
    char json[128];
    snprintf(json, sizeof json, "%s/model.json", dir);
    static const char *const skip[] = {"skip_", NULL};
    dfd_tfjs_report rep;
    dfd_error e;
    if (dfd_tfjs_load(json, graph, skip, &rep, &e) == DFD_OK) {
        if (rep.loaded < 0 || rep.loaded > nn_graph_param_count(graph) || rep.params_unset < 0 ||
            rep.gamma_unset < 0 || rep.gamma_unset > rep.params_unset)
            abort();
    }
    int found = -1; /* the architecture probe `dfd import tfjs` runs first */
    if (dfd_tfjs_has_weight(json, "c1/kernel", &found, &e) == DFD_OK ? found != 0 && found != 1 : found != 0) abort();
    return 0;
}
