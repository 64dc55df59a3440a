/* test_io_tfjs — a TF.js layers model (manifest + shard) loads into a graph by name,
 * float32 and uint8-quantised weights dequantise to hand-computed values, skipped
 * prefixes are skipped, and bad files (unknown tensor, wrong shape, short shard, not
 * JSON, a later shard missing or outside the folder) are refused with the tensor or
 * shard named, holding no memory afterwards. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "io/tfjs.h"

static nn_graph *tiny_graph(void) {
    nn_graph *g = nn_graph_new();
    int in = nn_input(g, "input", 3, (int[]){4, 4, 3});
    nn_conv_attr a = {.kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .padding = NN_PAD_VALID,
                      .groups = 1, .out_c = 2, .has_bias = 1};
    int c = nn_conv2d(g, "c1", in, &a);
    nn_mark_output(g, c);
    assert_null(nn_graph_error(g));
    return g;
}

/* Writes model.json with the given manifest body and a shard of the given bytes. */
static char *write_model(const char *dir, const char *weights_json, const void *shard, size_t n) {
    char *shard_path = tu_join(dir, "shard1");
    tu_write_file(shard_path, shard, n);
    free(shard_path);
    char json[2048];
    snprintf(json, sizeof json,
             "{\"modelTopology\":{},\"weightsManifest\":[{\"paths\":[\"shard1\"],\"weights\":[%s]}]}", weights_json);
    char *p = tu_join(dir, "model.json");
    tu_write_file(p, json, strlen(json));
    return p;
}

static const char *const good_manifest =
    "{\"name\":\"c1/kernel\",\"shape\":[1,1,3,2],\"dtype\":\"float32\"},"
    "{\"name\":\"dense_9/kernel\",\"shape\":[2,2],\"dtype\":\"float32\",\"quantization\":{\"dtype\":\"uint8\",\"scale\":1,\"min\":0}},"
    "{\"name\":\"c1/bias\",\"shape\":[2],\"dtype\":\"float32\",\"quantization\":{\"dtype\":\"uint8\",\"scale\":0.5,\"min\":-1}}";

static void loads_float_and_quantised_weights_by_name(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    uint8_t shard[24 + 4 + 2];
    float k[6] = {1.5f, -2, 3, 0.25f, 0, -7};
    memcpy(shard, k, sizeof k);
    memset(shard + 24, 9, 4);   /* the skipped head */
    shard[28] = 0, shard[29] = 4; /* bias: 0*0.5-1 = -1, 4*0.5-1 = 1 */
    char *p = write_model(dir, good_manifest, shard, sizeof shard);
    nn_graph *g = tiny_graph();
    static const char *const skip[] = {"dense", NULL};
    dfd_tfjs_report rep;
    dfd_error e;
    assert_int_equal(dfd_tfjs_load(p, g, skip, &rep, &e), DFD_OK);
    assert_int_equal(rep.loaded, 2);
    assert_int_equal(rep.skipped, 1);
    assert_int_equal(rep.params_unset, 0);
    nn_param *kp = nn_graph_find_param(g, "c1/kernel"), *bp = nn_graph_find_param(g, "c1/bias");
    for (int i = 0; i < 6; i++) assert_float_equal(kp->data[i], k[i], 0);
    assert_float_equal(bp->data[0], -1.0f, 0);
    assert_float_equal(bp->data[1], 1.0f, 0);
    /* Without the skip list, the head's tensor has no parameter to go to. */
    assert_int_equal(dfd_tfjs_load(p, g, NULL, &rep, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "dense_9/kernel"));
    /* The manifest says which tensors a file holds, before any graph is built. */
    int found = -1;
    assert_int_equal(dfd_tfjs_has_weight(p, "c1/bias", &found, &e), DFD_OK);
    assert_int_equal(found, 1);
    assert_int_equal(dfd_tfjs_has_weight(p, "conv2d_94/kernel", &found, &e), DFD_OK);
    assert_int_equal(found, 0);
    nn_graph_free(g);
    free(p);
    tu_rmtree(dir);
    free(dir);
}

static void refuses_bad_shapes_short_shards_and_non_json(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    nn_graph *g = tiny_graph();
    dfd_error e;
    float k[6] = {0};
    /* Wrong shape for a known name. */
    char *p = write_model(dir, "{\"name\":\"c1/kernel\",\"shape\":[1,1,2,3],\"dtype\":\"float32\"}", k, sizeof k);
    assert_int_equal(dfd_tfjs_load(p, g, NULL, NULL, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "c1/kernel"));
    assert_non_null(strstr(e.message, "shape"));
    free(p);
    /* The manifest describes more bytes than the shard holds. */
    p = write_model(dir, "{\"name\":\"c1/kernel\",\"shape\":[1,1,3,2],\"dtype\":\"float32\"}", k, 20);
    assert_int_equal(dfd_tfjs_load(p, g, NULL, NULL, &e), DFD_E_CORRUPT);
    assert_non_null(strstr(e.message, "past the end"));
    free(p);
    /* Extra bytes the manifest does not account for. */
    uint8_t big[32] = {0};
    p = write_model(dir, "{\"name\":\"c1/kernel\",\"shape\":[1,1,3,2],\"dtype\":\"float32\"}", big, sizeof big);
    assert_int_equal(dfd_tfjs_load(p, g, NULL, NULL, &e), DFD_E_CORRUPT);
    free(p);
    /* A shard path that tries to leave the folder. */
    p = tu_join(dir, "model.json");
    const char *esc = "{\"weightsManifest\":[{\"paths\":[\"../etc/passwd\"],\"weights\":[]}]}";
    tu_write_file(p, esc, strlen(esc));
    assert_int_equal(dfd_tfjs_load(p, g, NULL, NULL, &e), DFD_E_MODEL);
    /* A later shard that is missing or refused, after a first one was read: the error
     * names it, and what the first shard read is freed (the sanitizer run checks; these
     * leaked before). */
    char *s1 = tu_join(dir, "shard1");
    tu_write_file(s1, k, sizeof k);
    free(s1);
    const char *later_missing = "{\"weightsManifest\":[{\"paths\":[\"shard1\",\"absent\"],\"weights\":[]}]}";
    tu_write_file(p, later_missing, strlen(later_missing));
    assert_int_equal(dfd_tfjs_load(p, g, NULL, NULL, &e), DFD_E_IO);
    assert_non_null(strstr(e.message, "absent"));
    const char *later_escapes = "{\"weightsManifest\":[{\"paths\":[\"shard1\",\"../x\"],\"weights\":[]}]}";
    tu_write_file(p, later_escapes, strlen(later_escapes));
    assert_int_equal(dfd_tfjs_load(p, g, NULL, NULL, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "shard path"));
    tu_write_file(p, "not json", 8);
    assert_int_equal(dfd_tfjs_load(p, g, NULL, NULL, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "not JSON"));
    int found = -1;
    assert_int_equal(dfd_tfjs_has_weight(p, "c1/bias", &found, &e), DFD_E_MODEL);
    assert_int_equal(found, 0);
    tu_write_file(p, "{}", 2);
    assert_int_equal(dfd_tfjs_load(p, g, NULL, NULL, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "weightsManifest"));
    assert_int_equal(dfd_tfjs_has_weight(p, "c1/bias", &found, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "weightsManifest"));
    free(p);
    nn_graph_free(g);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_float_and_quantised_weights_by_name),
        cmocka_unit_test(refuses_bad_shapes_short_shards_and_non_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
