/* test_models_arch — the architecture builders make exactly what Keras makes.
 *
 * Independent references used here (none is read off dfd's own output):
 *   - parameter totals from Keras's model.summary(): Xception include_top=False
 *     20,861,480 (54,528 non-trainable BN statistics), MobileNetV2 alpha 1.0
 *     include_top=False 2,257,984 (34,112 non-trainable);
 *   - MACs: Xception at 299 is 8.36 G and MobileNetV2 at 224 is 300 M multiply-adds
 *     (the papers; both re-derived by a separate layer-by-layer count);
 *   - layer names, weight shapes and feature-map sizes from keras/src/applications/
 *     xception.py and mobilenet_v2.py, and the LSTM/Dense parameter formulas
 *     4*U*(C+U+1) and C*U+U;
 *   - when setup.sh has fetched it, the TF.js model.json of the pretrained MobileNetV2 in
 *     the npm package nsfwjs (Keras 2.2.4): every backbone weight name and shape in it must
 *     exist in dfd's graph, and vice versa;
 *   - Inception v3 include_top=False: 21,802,784 parameters (34,432 non-trainable BN
 *     statistics; its batch norms have no scale, so dfd's graph holds 17,216 gammas more),
 *     5.7 G multiply-adds at 299 (the paper's 5.72 G), the feature-map sizes of
 *     keras/src/applications/inception_v3.py; and the packaged nsfwjs Inception v3 (its
 *     names and shapes, and its own 5-class head run on dfd's graph: the wiring, concat
 *     order included, reproduces the package's verdicts: photos "neutral", a line drawing
 *     far more "drawing"). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tfjs.h"
#include "media/media.h"
#include "models/models.h"

static nn_graph *build(const char *name, int size, int frames) {
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = size;
    o.frames = frames;
    nn_graph *g = NULL;
    dfd_error e;
    int rc = dfd_arch_build(name, &o, &g, &e);
    if (rc) print_message("dfd_arch_build(%s): %s\n", name, e.message);
    assert_int_equal(rc, DFD_OK);
    assert_non_null(g);
    assert_null(nn_graph_error(g));
    return g;
}

static const nn_node *node(const nn_graph *g, const char *name) {
    int id = nn_graph_find_node(g, name);
    if (id < 0) print_message("layer '%s' is missing\n", name);
    assert_true(id >= 0);
    return nn_graph_node(g, id);
}

static void assert_shape(const int *got, int got_ndim, int ndim, const int *want, const char *what) {
    int same = got_ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = got[i] == want[i];
    if (!same) {
        print_message("%s: shape has %d dims:", what, got_ndim);
        for (int i = 0; i < got_ndim; i++) print_message(" %d", got[i]);
        print_message("\n");
    }
    assert_true(same);
}

#define NODE_SHAPE(g, name, ...)                                                        \
    do {                                                                                \
        const int want_[] = {__VA_ARGS__};                                              \
        const nn_node *n_ = node(g, name);                                              \
        assert_shape(n_->shape, n_->ndim, (int)(sizeof want_ / sizeof want_[0]), want_, name); \
    } while (0)

#define PARAM_SHAPE(g, name, ...)                                                       \
    do {                                                                                \
        const int want_[] = {__VA_ARGS__};                                              \
        const nn_param *p_ = nn_graph_find_param(g, name);                              \
        if (!p_) print_message("parameter '%s' is missing\n", name);                    \
        assert_non_null(p_);                                                            \
        assert_shape(p_->shape, p_->ndim, (int)(sizeof want_ / sizeof want_[0]), want_, name); \
    } while (0)

static size_t statistics_count(nn_graph *g) {
    size_t s = 0;
    for (int i = 0; i < nn_graph_param_count(g); i++)
        if (nn_graph_param(g, i)->is_statistic) s += nn_graph_param(g, i)->count;
    return s;
}

static const nn_node *output_node(const nn_graph *g) {
    assert_int_equal(nn_graph_output_count(g), 1);
    return nn_graph_node(g, nn_graph_output(g, 0));
}

static void xception_matches_keras_counts_and_shapes(void **state) {
    (void)state;
    nn_graph *g = build("xception", 0, 0);
    assert_int_equal(nn_graph_num_weights(g), 20861480);
    assert_int_equal(statistics_count(g), 54528);
    double macs = (double)nn_graph_macs(g);
    print_message("Xception 299: %.4f GMAC\n", macs / 1e9);
    assert_true(fabs(macs - 8.36e9) / 8.36e9 < 0.01);

    const nn_node *out = output_node(g);
    assert_shape(out->shape, out->ndim, 3, (int[]){10, 10, 2048}, "output");
    assert_string_equal(out->name, "block14_sepconv2_act");
    NODE_SHAPE(g, "input", 299, 299, 3);
    NODE_SHAPE(g, "block1_conv1", 149, 149, 32); /* 'valid' */
    NODE_SHAPE(g, "block1_conv2_act", 147, 147, 64);
    NODE_SHAPE(g, "block2_pool", 74, 74, 128); /* 3x3 s2 'same' */
    NODE_SHAPE(g, "add", 74, 74, 128);
    NODE_SHAPE(g, "add_1", 37, 37, 256);
    NODE_SHAPE(g, "add_2", 19, 19, 728);
    NODE_SHAPE(g, "add_10", 19, 19, 728);
    NODE_SHAPE(g, "add_11", 10, 10, 1024);
    NODE_SHAPE(g, "block14_sepconv1_act", 10, 10, 1536);
    nn_graph_free(g);
}

static void xception_has_keras_layer_and_weight_names(void **state) {
    (void)state;
    nn_graph *g = build("xception", 0, 0);
    /* Layers named in Keras's xception.py (and the automatic names of its unnamed ones). */
    static const char *const present[] = {
        "block1_conv1", "block1_conv1_bn", "block1_conv1_act", "block1_conv2", "block1_conv2_bn",
        "block1_conv2_act", "block2_sepconv1", "block2_sepconv1_bn", "block2_sepconv2_act", "block2_sepconv2",
        "block2_sepconv2_bn", "block2_pool", "conv2d", "batch_normalization", "add", "block3_sepconv1_act",
        "block3_sepconv1", "block3_pool", "conv2d_1", "batch_normalization_1", "add_1", "block4_sepconv2_bn",
        "conv2d_2", "batch_normalization_2", "add_2", "block5_sepconv1_act", "block5_sepconv3", "block5_sepconv3_bn",
        "add_3", "block12_sepconv3_act", "block12_sepconv3_bn", "add_10", "block13_sepconv1_act",
        "block13_sepconv2", "block13_sepconv2_bn", "conv2d_3", "block13_pool", "batch_normalization_3", "add_11",
        "block14_sepconv1", "block14_sepconv1_bn", "block14_sepconv1_act", "block14_sepconv2",
        "block14_sepconv2_bn", "block14_sepconv2_act",
    };
    for (size_t i = 0; i < sizeof present / sizeof present[0]; i++) node(g, present[i]);
    /* Layers Keras does not have: block2 starts without an activation, four shortcuts only. */
    static const char *const absent[] = {"block2_sepconv1_act", "conv2d_4", "batch_normalization_4", "add_12",
                                         "block14_pool", "block13_sepconv3"};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
        assert_int_equal(nn_graph_find_node(g, absent[i]), -1);

    PARAM_SHAPE(g, "block1_conv1/kernel", 3, 3, 3, 32);
    PARAM_SHAPE(g, "block1_conv2/kernel", 3, 3, 32, 64);
    PARAM_SHAPE(g, "block1_conv1_bn/gamma", 32);
    PARAM_SHAPE(g, "block1_conv1_bn/moving_variance", 32);
    PARAM_SHAPE(g, "block2_sepconv1/depthwise_kernel", 3, 3, 64, 1);
    PARAM_SHAPE(g, "block2_sepconv1/pointwise_kernel", 1, 1, 64, 128);
    PARAM_SHAPE(g, "conv2d/kernel", 1, 1, 64, 128);
    PARAM_SHAPE(g, "batch_normalization/beta", 128);
    PARAM_SHAPE(g, "conv2d_2/kernel", 1, 1, 256, 728);
    PARAM_SHAPE(g, "block13_sepconv2/pointwise_kernel", 1, 1, 728, 1024);
    PARAM_SHAPE(g, "conv2d_3/kernel", 1, 1, 728, 1024);
    PARAM_SHAPE(g, "block14_sepconv2/depthwise_kernel", 3, 3, 1536, 1);
    PARAM_SHAPE(g, "block14_sepconv2/pointwise_kernel", 1, 1, 1536, 2048);
    PARAM_SHAPE(g, "block14_sepconv2_bn/moving_mean", 2048);
    /* use_bias=False everywhere; BN epsilon 1e-3 and momentum 0.99 (Keras defaults). */
    for (int i = 0; i < nn_graph_param_count(g); i++) assert_null(strstr(nn_graph_param(g, i)->name, "/bias"));
    const nn_node *bn = node(g, "block5_sepconv2_bn");
    assert_float_equal(bn->a.bn.eps, 1e-3f, 0);
    assert_float_equal(bn->a.bn.momentum, 0.99f, 0);
    const nn_node *pool = node(g, "block13_pool");
    assert_int_equal(pool->a.pool.kh, 3);
    assert_int_equal(pool->a.pool.sh, 2);
    assert_int_equal(pool->a.pool.padding, NN_PAD_SAME);
    /* Keras's model.layers order: the shortcut conv after the main branch's last BN, then
     * the pool, then the shortcut's BN; so "unfreeze from block14_sepconv1" freezes block13. */
    assert_true(nn_graph_find_node(g, "conv2d_3") > nn_graph_find_node(g, "block13_sepconv2_bn"));
    assert_true(nn_graph_find_node(g, "block13_pool") < nn_graph_find_node(g, "batch_normalization_3"));
    assert_int_equal(nn_graph_set_trainable(g, "block14_sepconv1", 1), DFD_OK);
    assert_false(nn_graph_find_param(g, "conv2d_3/kernel")->trainable);
    assert_false(nn_graph_find_param(g, "block13_sepconv2/depthwise_kernel")->trainable);
    assert_true(nn_graph_find_param(g, "block14_sepconv1/depthwise_kernel")->trainable);
    nn_graph_free(g);
}

static void xception_image_head_is_the_original_systems(void **state) {
    (void)state;
    nn_graph *g = build("xception-image", 0, 0);
    NODE_SHAPE(g, "global_average_pooling2d", 2048);
    PARAM_SHAPE(g, "dense/kernel", 2048, 256);
    PARAM_SHAPE(g, "dense/bias", 256);
    PARAM_SHAPE(g, "dense_1/kernel", 256, 1);
    PARAM_SHAPE(g, "dense_1/bias", 1);
    assert_float_equal(node(g, "dropout")->a.dropout.rate, 0.5f, 0);
    assert_float_equal(node(g, "dropout_1")->a.dropout.rate, 0.5f, 0);
    assert_int_equal(node(g, "dense")->a.dense.act, NN_ACT_RELU);
    const nn_node *out = output_node(g);
    assert_string_equal(out->name, "dense_1");
    assert_int_equal(out->a.dense.act, NN_ACT_NONE); /* a logit: the caller applies the sigmoid */
    assert_shape(out->shape, out->ndim, 1, (int[]){1}, "output");
    assert_int_equal(nn_graph_num_weights(g), 20861480 + (2048 * 256 + 256) + (256 * 1 + 1));
    nn_graph_free(g);
}

static void mobilenet_v2_matches_keras(void **state) {
    (void)state;
    nn_graph *g = build("mobilenet_v2", 0, 0);
    assert_int_equal(nn_graph_num_weights(g), 2257984);
    assert_int_equal(statistics_count(g), 34112);
    double macs = (double)nn_graph_macs(g);
    print_message("MobileNetV2 224: %.1f MMAC\n", macs / 1e6);
    assert_true(fabs(macs - 300e6) / 300e6 < 0.01);
    const nn_node *out = output_node(g);
    assert_string_equal(out->name, "out_relu");
    assert_shape(out->shape, out->ndim, 3, (int[]){7, 7, 1280}, "output");

    static const char *const present[] = {
        "Conv1", "bn_Conv1", "Conv1_relu", "expanded_conv_depthwise", "expanded_conv_depthwise_BN",
        "expanded_conv_depthwise_relu", "expanded_conv_project", "expanded_conv_project_BN", "block_1_expand",
        "block_1_expand_BN", "block_1_expand_relu", "block_1_pad", "block_1_depthwise", "block_1_depthwise_BN",
        "block_1_depthwise_relu", "block_1_project", "block_1_project_BN", "block_2_add", "block_3_pad",
        "block_4_add", "block_5_add", "block_6_pad", "block_7_add", "block_9_add", "block_11_add", "block_12_add",
        "block_13_pad", "block_14_add", "block_15_add", "block_16_project_BN", "Conv_1", "Conv_1_bn", "out_relu",
    };
    for (size_t i = 0; i < sizeof present / sizeof present[0]; i++) node(g, present[i]);
    /* No shortcut where channels or stride change; pads only before stride-2 blocks. */
    static const char *const absent[] = {"expanded_conv_add", "expanded_conv_pad", "expanded_conv_expand",
                                         "block_1_add", "block_3_add", "block_6_add", "block_10_add",
                                         "block_13_add", "block_16_add", "block_2_pad", "block_17_expand"};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
        assert_int_equal(nn_graph_find_node(g, absent[i]), -1);
    NODE_SHAPE(g, "Conv1", 112, 112, 32);
    NODE_SHAPE(g, "block_1_expand_relu", 112, 112, 96);
    NODE_SHAPE(g, "block_1_pad", 113, 113, 96); /* correct_pad: bottom/right only for even sides */
    NODE_SHAPE(g, "block_1_depthwise", 56, 56, 96);
    NODE_SHAPE(g, "block_2_add", 56, 56, 24);
    NODE_SHAPE(g, "block_5_add", 28, 28, 32);
    NODE_SHAPE(g, "block_12_add", 14, 14, 96);
    NODE_SHAPE(g, "block_16_project_BN", 7, 7, 320);
    const nn_node *pad = node(g, "block_1_pad");
    assert_int_equal(pad->a.pad.t, 0);
    assert_int_equal(pad->a.pad.b, 1);
    assert_int_equal(node(g, "block_1_depthwise")->a.conv.padding, NN_PAD_VALID);
    assert_int_equal(node(g, "block_2_depthwise")->a.conv.padding, NN_PAD_SAME);
    assert_int_equal(node(g, "block_2_expand_relu")->a.act.act, NN_ACT_RELU6);
    assert_float_equal(node(g, "block_2_expand_BN")->a.bn.momentum, 0.999f, 0);
    assert_float_equal(node(g, "block_2_expand_BN")->a.bn.eps, 1e-3f, 0);
    PARAM_SHAPE(g, "Conv1/kernel", 3, 3, 3, 32);
    PARAM_SHAPE(g, "expanded_conv_depthwise/depthwise_kernel", 3, 3, 32, 1);
    PARAM_SHAPE(g, "expanded_conv_project/kernel", 1, 1, 32, 16);
    PARAM_SHAPE(g, "block_10_expand/kernel", 1, 1, 64, 384);
    PARAM_SHAPE(g, "block_10_depthwise/depthwise_kernel", 3, 3, 384, 1);
    PARAM_SHAPE(g, "block_10_project/kernel", 1, 1, 384, 96);
    PARAM_SHAPE(g, "Conv_1/kernel", 1, 1, 320, 1280);
    PARAM_SHAPE(g, "Conv_1_bn/moving_variance", 1280);
    for (int i = 0; i < nn_graph_param_count(g); i++) assert_null(strstr(nn_graph_param(g, i)->name, "/bias"));
    nn_graph_free(g);
}

static void mobilenet_v2_other_sizes_and_widths(void **state) {
    (void)state;
    static const int sizes[][2] = {{128, 4}, {160, 5}, {96, 3}, {225, 8}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        nn_graph *g = build("mobilenet_v2", sizes[i][0], 0);
        assert_int_equal(nn_graph_num_weights(g), 2257984); /* weights do not depend on size */
        const nn_node *out = output_node(g);
        int s = sizes[i][1];
        assert_shape(out->shape, out->ndim, 3, (int[]){s, s, 1280}, "output");
        if (sizes[i][0] == 225) { /* odd side: correct_pad adds a row on both sides */
            assert_int_equal(node(g, "block_1_pad")->a.pad.t, 1);
            NODE_SHAPE(g, "Conv1", 113, 113, 32);
            NODE_SHAPE(g, "block_1_depthwise", 57, 57, 96);
        }
        nn_graph_free(g);
    }
    /* Keras's _make_divisible at other widths: 0.35 -> first conv 16, 1280 features; 1.4 -> 48 and 1792. */
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.width = 0.35f;
    nn_graph *g;
    assert_int_equal(dfd_arch_build("mobilenet_v2", &o, &g, NULL), DFD_OK);
    PARAM_SHAPE(g, "Conv1/kernel", 3, 3, 3, 16);
    PARAM_SHAPE(g, "expanded_conv_project/kernel", 1, 1, 16, 8);
    PARAM_SHAPE(g, "Conv_1/kernel", 1, 1, 112, 1280);
    nn_graph_free(g);
    o.width = 1.4f;
    assert_int_equal(dfd_arch_build("mobilenet_v2", &o, &g, NULL), DFD_OK);
    PARAM_SHAPE(g, "Conv1/kernel", 3, 3, 3, 48);
    PARAM_SHAPE(g, "Conv_1/kernel", 1, 1, 448, 1792);
    nn_graph_free(g);
    assert_int_equal(dfd_mobilenet_v2_channels(1.0f), 1280);
    assert_int_equal(dfd_mobilenet_v2_channels(1.4f), 1792);
}

static void mobilenet_v2_image_head(void **state) {
    (void)state;
    nn_graph *g = build("mobilenet_v2-image", 160, 0);
    NODE_SHAPE(g, "global_average_pooling2d", 1280);
    PARAM_SHAPE(g, "dense/kernel", 1280, 1);
    PARAM_SHAPE(g, "dense/bias", 1);
    assert_int_equal(nn_graph_find_node(g, "dense_1"), -1);
    const nn_node *out = output_node(g);
    assert_string_equal(out->name, "dense");
    assert_int_equal(out->a.dense.act, NN_ACT_NONE);
    assert_int_equal(nn_graph_num_weights(g), 2257984 + 1281);
    nn_graph_free(g);
}

/* The pretrained MobileNetV2 in nsfwjs (Keras 2.2.4, TF.js format), as unpacked by setup.sh. */
static void mobilenet_v2_names_match_the_nsfwjs_model(void **state) {
    (void)state;
    char *path = tu_join(tu_source_dir(), "third_party/nsfwjs/tfjs-mobilenet_v2/model.json");
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    free(path);
    if (!root) {
        print_message("skipped: third_party/nsfwjs/tfjs-mobilenet_v2/model.json is absent (run setup.sh)\n");
        skip();
    }
    json_t *weights = json_object_get(json_array_get(json_object_get(root, "weightsManifest"), 0), "weights");
    assert_true(json_is_array(weights));
    nn_graph *g = build("mobilenet_v2", 224, 0);
    int matched = 0;
    size_t i;
    json_t *w;
    json_array_foreach(weights, i, w) {
        const char *name = json_string_value(json_object_get(w, "name"));
        assert_non_null(name);
        if (strncmp(name, "dense", 5) == 0) continue; /* nsfwjs's own 5-class head */
        nn_param *p = nn_graph_find_param(g, name);
        if (!p) print_message("nsfwjs weight '%s' has no parameter in dfd's graph\n", name);
        assert_non_null(p);
        json_t *shape = json_object_get(w, "shape");
        assert_int_equal((int)json_array_size(shape), p->ndim);
        for (int d = 0; d < p->ndim; d++)
            assert_int_equal((int)json_integer_value(json_array_get(shape, (size_t)d)), p->shape[d]);
        matched++;
    }
    assert_int_equal(matched, nn_graph_param_count(g)); /* and nothing of ours is missing there */
    nn_graph_free(g);
    json_decref(root);
}

static void inception_v3_matches_keras(void **state) {
    (void)state;
    nn_graph *g = build("inception_v3", 0, 0);
    assert_int_equal(nn_graph_num_weights(g), 21802784 + 17216);
    assert_int_equal(statistics_count(g), 34432);
    double macs = (double)nn_graph_macs(g);
    print_message("Inception v3 299: %.2f GMAC\n", macs / 1e9);
    assert_true(fabs(macs - 5.72e9) / 5.72e9 < 0.01);
    const nn_node *out = output_node(g);
    assert_string_equal(out->name, "mixed10");
    assert_shape(out->shape, out->ndim, 3, (int[]){8, 8, 2048}, "output");
    NODE_SHAPE(g, "activation_1", 149, 149, 32);
    NODE_SHAPE(g, "activation_3", 147, 147, 64);
    NODE_SHAPE(g, "max_pooling2d_1", 73, 73, 64);
    NODE_SHAPE(g, "activation_5", 71, 71, 192);
    NODE_SHAPE(g, "mixed0", 35, 35, 256);
    NODE_SHAPE(g, "mixed2", 35, 35, 288);
    NODE_SHAPE(g, "mixed3", 17, 17, 768);
    NODE_SHAPE(g, "mixed7", 17, 17, 768);
    NODE_SHAPE(g, "mixed8", 8, 8, 1280);
    NODE_SHAPE(g, "mixed9_0", 8, 8, 768);
    NODE_SHAPE(g, "mixed9", 8, 8, 2048);
    /* conv2d_bn in Keras's creation order: the second branch of mixed0 is conv2d_7 (48
     * 1x1) then conv2d_8 (5x5); mixed4's factorised 7x7 runs 1x7 (conv2d_33) then 7x1. */
    PARAM_SHAPE(g, "conv2d_1/kernel", 3, 3, 3, 32);
    PARAM_SHAPE(g, "conv2d_7/kernel", 1, 1, 192, 48);
    PARAM_SHAPE(g, "conv2d_8/kernel", 5, 5, 48, 64);
    PARAM_SHAPE(g, "conv2d_33/kernel", 1, 7, 128, 128);
    PARAM_SHAPE(g, "conv2d_34/kernel", 7, 1, 128, 192);
    PARAM_SHAPE(g, "conv2d_94/kernel", 1, 1, 2048, 192);
    PARAM_SHAPE(g, "batch_normalization_94/moving_variance", 192);
    assert_null(nn_graph_find_param(g, "conv2d_95/kernel"));
    assert_float_equal(node(g, "batch_normalization_1")->a.bn.momentum, 0.99f, 0);
    assert_float_equal(node(g, "batch_normalization_1")->a.bn.eps, 1e-3f, 0);
    assert_int_equal(node(g, "conv2d_1")->a.conv.padding, NN_PAD_VALID);
    assert_int_equal(node(g, "conv2d_3")->a.conv.padding, NN_PAD_SAME);
    for (int i = 0; i < nn_graph_param_count(g); i++) assert_null(strstr(nn_graph_param(g, i)->name, "/bias"));
    nn_graph_free(g);
    /* At dfd's face-crop size, and refused below Keras's minimum. */
    g = build("inception_v3-image", 128, 0);
    const nn_node *m10 = node(g, "mixed10");
    assert_shape(m10->shape, m10->ndim, 3, (int[]){2, 2, 2048}, "mixed10 at 128");
    nn_graph_free(g);
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = 74;
    dfd_error e;
    assert_int_equal(dfd_arch_build("inception_v3", &o, &g, &e), DFD_E_ARG);
    dfd_arch_opts_default(&o);
    o.width = 1.4f;
    assert_int_equal(dfd_arch_build("inception_v3-image", &o, &g, &e), DFD_E_ARG);
}

/* The packaged nsfwjs Inception v3, backbone and 5-class head, on dfd's graph. Its weights
 * load by name and shape; run on example photos it calls them "neutral" (its classes:
 * drawing, hentai, neutral, porn, sexy; inputs / 255, as nsfwjs feeds them) and on a line
 * drawing it gives "drawing" many times the share it gives photos. A graph wired wrong (a
 * branch in another place of a concatenation) loads the same weights and loses both. */
static void inception_v3_runs_the_nsfwjs_model(void **state) {
    (void)state;
    char *path = tu_join(tu_source_dir(), "third_party/nsfwjs/tfjs-inception_v3/model.json");
    FILE *f = fopen(path, "rb");
    if (!f) {
        free(path);
        print_message("skipped: third_party/nsfwjs/tfjs-inception_v3/model.json is absent (run setup.sh)\n");
        skip();
    }
    fclose(f);
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "input", 3, (int[]){299, 299, 3});
    x = dfd_inception_v3_backbone(g, x);
    x = nn_avgpool(g, "average_pooling2d_10", x, 8, 8, 8, 8, NN_PAD_VALID);
    x = nn_reshape(g, "flatten_1", x, 1, (int[]){2048});
    x = nn_dense(g, "dense_1", x, 256, 1, NN_ACT_RELU);
    x = nn_dense(g, "dense_2", x, 128, 1, NN_ACT_RELU);
    nn_mark_output(g, nn_dense(g, "dense_3", x, 5, 1, NN_ACT_NONE));
    assert_null(nn_graph_error(g));
    dfd_tfjs_report rep;
    dfd_error e;
    int rc = dfd_tfjs_load(path, g, NULL, &rep, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    free(path);
    assert_int_equal(rep.loaded, 94 * 4 + 6);
    assert_int_equal(rep.params_unset, 94); /* the gammas Keras did not make */
    assert_int_equal(rep.gamma_unset, 94);
    /* Two photos and a drawing (a face in black lines on white) at 299 x 299. */
    const size_t per = 299 * 299 * 3;
    float *in = malloc(3 * per * sizeof *in);
    assert_non_null(in);
    static const char *const photos[2] = {"examples/astronaut.jpg", "examples/chelsea.png"};
    for (int k = 0; k < 2; k++) {
        char *p = tu_join(tu_source_dir(), photos[k]);
        dfd_image im, rs;
        assert_int_equal(dfd_image_load(p, NULL, &im, NULL, &e), DFD_OK);
        assert_int_equal(dfd_image_resize(&im, 299, 299, &rs, &e), DFD_OK);
        for (size_t i = 0; i < per; i++) in[k * per + i] = rs.rgb[i] / 255.0f;
        dfd_image_free(&im), dfd_image_free(&rs);
        free(p);
    }
    for (int yy = 0; yy < 299; yy++)
        for (int xx = 0; xx < 299; xx++) {
            double dx = (xx - 150) / 90.0, dy = (yy - 150) / 110.0, r = sqrt(dx * dx + dy * dy);
            double ex = hypot(xx - 115.0, yy - 125.0), ey = hypot(xx - 185.0, yy - 125.0);
            int ink = fabs(r - 1) < 0.025 || ex < 15 || ey < 15;
            int mouth = yy > 185 && yy < 191 && fabs(xx - 150.0) < 45;
            static const float skin[3] = {1.0f, 0.86f, 0.7f}, red[3] = {1, 0, 0};
            for (int c = 0; c < 3; c++)
                in[2 * per + ((size_t)yy * 299 + xx) * 3 + c] = ink ? 0.0f : mouth ? red[c] : r < 1 ? skin[c] : 1.0f;
        }
    nn_exec_opts eo;
    nn_exec_opts_default(&eo);
    eo.precision = NN_PREC_F32;
    eo.max_batch = 3;
    nn_exec *ex = NULL;
    assert_int_equal(nn_exec_create(g, &eo, &ex, &e), DFD_OK);
    assert_int_equal(nn_forward(ex, in, 3, &e), DFD_OK);
    size_t n = 0;
    const float *y = nn_output(ex, 0, &n);
    assert_int_equal(n, 15);
    double p[3][5];
    for (int k = 0; k < 3; k++) {
        double m = y[k * 5], s = 0;
        for (int c = 1; c < 5; c++) m = fmax(m, y[k * 5 + c]);
        for (int c = 0; c < 5; c++) s += p[k][c] = exp(y[k * 5 + c] - m);
        for (int c = 0; c < 5; c++) p[k][c] /= s;
        print_message("image %d: drawing %.3f hentai %.3f neutral %.3f porn %.3f sexy %.3f\n", k, p[k][0], p[k][1],
                      p[k][2], p[k][3], p[k][4]);
    }
    for (int k = 0; k < 2; k++) assert_true(p[k][2] > 0.9);
    assert_true(p[2][0] > 10 * fmax(p[0][0], p[1][0]));
    /* The check can fail: the same weights with two same-shaped convolutions of mixed0
     * swapped (conv2d_6 and conv2d_9, one branch's place taken by another's) move the
     * photo's logits far. */
    float before[5];
    memcpy(before, y, sizeof before);
    nn_param *a = nn_graph_find_param(g, "conv2d_6/kernel"), *b = nn_graph_find_param(g, "conv2d_9/kernel");
    assert_true(a && b && a->count == b->count);
    for (size_t i = 0; i < a->count; i++) {
        float t = a->data[i];
        a->data[i] = b->data[i], b->data[i] = t;
    }
    assert_int_equal(nn_exec_refresh(ex, &e), DFD_OK);
    assert_int_equal(nn_forward(ex, in, 3, &e), DFD_OK);
    y = nn_output(ex, 0, &n);
    double moved = 0;
    for (int c = 0; c < 5; c++) moved = fmax(moved, fabs(y[c] - before[c]));
    print_message("swapped branches move the photo's logits by %.2f\n", moved);
    assert_true(moved > 1.0);
    nn_exec_free(ex);
    free(in);
    nn_graph_free(g);
}

static size_t lstm_params(size_t c, size_t u) { return 4 * u * (c + u + 1); }

static void video_models_have_the_lstm_head(void **state) {
    (void)state;
    nn_graph *g = build("xception-video", 71, 4);
    NODE_SHAPE(g, "input", 4, 71, 71, 3);
    NODE_SHAPE(g, "block14_sepconv2_act", 3, 3, 2048); /* per frame */
    NODE_SHAPE(g, "global_average_pooling2d", 2048);
    NODE_SHAPE(g, "lstm", 4, 256);
    NODE_SHAPE(g, "lstm_1", 128);
    NODE_SHAPE(g, "dense", 64);
    PARAM_SHAPE(g, "lstm/kernel", 2048, 1024);
    PARAM_SHAPE(g, "lstm/recurrent_kernel", 256, 1024);
    PARAM_SHAPE(g, "lstm/bias", 1024);
    PARAM_SHAPE(g, "lstm_1/kernel", 256, 512);
    PARAM_SHAPE(g, "dense_1/kernel", 64, 1);
    assert_int_equal(node(g, "lstm")->a.lstm.return_sequences, 1);
    assert_int_equal(node(g, "lstm_1")->a.lstm.return_sequences, 0);
    assert_int_equal(node(g, "block1_conv1")->batch_mul, 4); /* TimeDistributed: frames fold into the batch */
    assert_int_equal(node(g, "lstm")->batch_mul, 1);
    const nn_node *out = output_node(g);
    assert_string_equal(out->name, "dense_1");
    assert_shape(out->shape, out->ndim, 1, (int[]){1}, "output");
    size_t head = lstm_params(2048, 256) + lstm_params(256, 128) + (128 * 64 + 64) + (64 + 1);
    assert_int_equal(nn_graph_num_weights(g), 20861480 + head);
    /* The encoder runs once per frame. */
    nn_graph *bb = build("xception", 71, 0);
    uint64_t head_macs = 4 * (2048 + 256) * 4 * 256 + 4 * (256 + 128) * 4 * 128 + 128 * 64 + 64;
    assert_int_equal(nn_graph_macs(g), 4 * nn_graph_macs(bb) + head_macs);
    nn_graph_free(bb);
    nn_graph_free(g);

    g = build("mobilenet_v2-video", 96, 4);
    NODE_SHAPE(g, "input", 4, 96, 96, 3);
    NODE_SHAPE(g, "out_relu", 3, 3, 1280);
    NODE_SHAPE(g, "lstm", 4, 256);
    PARAM_SHAPE(g, "lstm/kernel", 1280, 1024);
    assert_int_equal(nn_graph_num_weights(g), 2257984 + lstm_params(1280, 256) + lstm_params(256, 128) +
                                                  (128 * 64 + 64) + (64 + 1));
    nn_graph_free(g);

    g = build("xception-video", 0, 0); /* default: 30 frames of 299 */
    NODE_SHAPE(g, "input", 30, 299, 299, 3);
    nn_graph_free(g);
}

static void registry_lists_and_validates(void **state) {
    (void)state;
    int n = 0;
    const dfd_arch_info *list = dfd_arch_list(&n);
    static const char *const want[] = {"xception", "xception-image", "xception-video", "mobilenet_v2",
                                       "mobilenet_v2-image", "mobilenet_v2-video", "inception_v3",
                                       "inception_v3-image", "tiny-cnn", "tiny-video"};
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        int found = 0;
        for (int i = 0; i < n; i++) found |= strcmp(list[i].name, want[w]) == 0;
        assert_true(found);
        assert_non_null(dfd_arch_find(want[w]));
    }
    for (int i = 0; i < n; i++) {
        assert_non_null(list[i].description);
        assert_true(list[i].default_input >= list[i].min_input);
    }
    nn_graph *g = (nn_graph *)1;
    dfd_error e;
    assert_int_equal(dfd_arch_build("resnet50", NULL, &g, &e), DFD_E_NOT_FOUND);
    assert_null(g);
    assert_non_null(strstr(e.message, "resnet50"));
    assert_non_null(strstr(e.message, "mobilenet_v2-image")); /* says what is known */

    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = 70; /* Keras: at least 71 */
    assert_int_equal(dfd_arch_build("xception", &o, &g, &e), DFD_E_ARG);
    assert_non_null(strstr(e.message, "70"));
    dfd_arch_opts_default(&o);
    o.width = 0.5f;
    assert_int_equal(dfd_arch_build("xception-image", &o, &g, &e), DFD_E_ARG);
    dfd_arch_opts_default(&o);
    o.dropout = 1.0f;
    assert_int_equal(dfd_arch_build("tiny-cnn", &o, &g, &e), DFD_E_ARG);
    dfd_arch_opts_default(&o);
    o.frames = -3;
    assert_int_equal(dfd_arch_build("tiny-video", &o, &g, &e), DFD_E_ARG);
    assert_null(g);
    dfd_arch_opts_default(&o);
    o.dropout = 0.2f;
    assert_int_equal(dfd_arch_build("mobilenet_v2-image", &o, &g, &e), DFD_OK);
    assert_float_equal(node(g, "dropout")->a.dropout.rate, 0.2f, 0);
    nn_graph_free(g);
}

/* With every kernel zero and the batch norms at identity, the head's output is exactly the
 * last bias: proves the output is the raw logit (no sigmoid) and the graphs execute. */
static void forward_outputs_the_logit(const char *arch, int size, int frames) {
    nn_graph *g = build(arch, size, frames);
    nn_param *bias = nn_graph_find_param(g, nn_graph_find_param(g, "dense_1/bias") ? "dense_1/bias" : "dense/bias");
    assert_non_null(bias);
    bias->data[0] = 0.25f;
    const nn_node *in = nn_graph_node(g, nn_graph_input(g));
    size_t n = 1;
    for (int i = 0; i < in->ndim; i++) n *= (size_t)in->shape[i];
    float *x = malloc(2 * n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < 2 * n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    float y[2];
    tu_forward(g, NN_BACKEND_REF, x, 2, y);
    assert_float_equal(y[0], 0.25f, 0);
    assert_float_equal(y[1], 0.25f, 0);
    free(x);
    nn_graph_free(g);
}

static void heads_output_a_logit(void **state) {
    (void)state;
    forward_outputs_the_logit("tiny-cnn", 0, 0);
    forward_outputs_the_logit("tiny-video", 16, 3);
    forward_outputs_the_logit("mobilenet_v2-image", 32, 0);
}

/* An ensemble graph (members = 3) holds three copies of the network under "m0/".."m2/" and
 * a combining dense layer "ensemble"; with each member's weights copied from a network
 * built and initialised on its own, its output is the weighted sum of those networks'
 * outputs (computed separately, one graph each). Members and a video model are refused
 * outside the limits. */
static void ensembles_combine_their_members(void **state) {
    (void)state;
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = 24;
    o.members = 3;
    nn_graph *g = NULL, *m[3];
    dfd_error e;
    assert_int_equal(dfd_arch_build("tiny-cnn", &o, &g, &e), DFD_OK);
    o.members = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(dfd_arch_build("tiny-cnn", &o, &m[i], &e), DFD_OK);
        nn_graph_init_weights(m[i], 100 + (uint64_t)i);
        /* non-trivial batch norms and bias, so that a mixed-up copy shows */
        for (int k = 0; k < nn_graph_param_count(m[i]); k++) {
            nn_param *p = nn_graph_param(m[i], k);
            if (strstr(p->name, "moving_mean") || strstr(p->name, "bias") || strstr(p->name, "beta"))
                for (size_t j = 0; j < p->count; j++) p->data[j] = 0.05f * (float)((j + (size_t)i * 7) % 5) - 0.1f;
        }
    }
    assert_int_equal(nn_graph_param_count(g), 3 * nn_graph_param_count(m[0]) + 1);
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < nn_graph_param_count(m[i]); k++) {
            const nn_param *p = nn_graph_param(m[i], k);
            char name[NN_NAME_MAX + 8];
            snprintf(name, sizeof name, "m%d/%s", i, p->name);
            nn_param *q = nn_graph_find_param(g, name);
            if (!q) print_message("no '%s' in the ensemble\n", name);
            assert_non_null(q);
            assert_int_equal(q->count, p->count);
            memcpy(q->data, p->data, p->count * sizeof *p->data);
        }
    nn_param *w = nn_graph_find_param(g, "ensemble/kernel");
    assert_non_null(w);
    assert_int_equal(w->count, 3);
    assert_null(nn_graph_find_param(g, "ensemble/bias"));
    const float wt[3] = {0.5f, 0.25f, 0.25f};
    memcpy(w->data, wt, sizeof wt);
    node(g, "m2/conv3/depthwise"); /* the separable layer's inner node is scoped too */
    node(g, "input");              /* the one input is not */
    const nn_node *in = nn_graph_node(g, nn_graph_input(g));
    size_t n = (size_t)in->shape[0] * in->shape[1] * in->shape[2];
    float *x = malloc(2 * n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < 2 * n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    for (int backend = 0; backend < 2; backend++) {
        int be = backend ? NN_BACKEND_DNNL : NN_BACKEND_REF;
        float want[2] = {0, 0}, got[2], y[2], spread = 0;
        for (int i = 0; i < 3; i++) {
            tu_forward(m[i], be, x, 2, y);
            want[0] += wt[i] * y[0], want[1] += wt[i] * y[1];
            if (i) spread += fabsf(y[0] - got[0]);
            got[0] = y[0];
        }
        assert_true(spread > 1e-3f); /* the members differ: a mixed-up copy would show */
        tu_forward(g, be, x, 2, got);
        assert_float_equal(got[0], want[0], 1e-4f * (1 + fabsf(want[0])));
        assert_float_equal(got[1], want[1], 1e-4f * (1 + fabsf(want[1])));
    }
    free(x);
    for (int i = 0; i < 3; i++) nn_graph_free(m[i]);
    nn_graph_free(g);
    /* the limits */
    o.members = DFD_MODEL_MAX_MEMBERS + 1;
    assert_int_equal(dfd_arch_build("tiny-cnn", &o, &g, &e), DFD_E_ARG);
    o.members = 2;
    o.frames = 2;
    assert_int_equal(dfd_arch_build("tiny-video", &o, &g, &e), DFD_E_ARG);
    assert_non_null(strstr(e.message, "only image classifiers"));
    assert_int_equal(dfd_arch_build("mobilenet_v2", &o, &g, &e), DFD_E_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(xception_matches_keras_counts_and_shapes),
        cmocka_unit_test(xception_has_keras_layer_and_weight_names),
        cmocka_unit_test(xception_image_head_is_the_original_systems),
        cmocka_unit_test(mobilenet_v2_matches_keras),
        cmocka_unit_test(mobilenet_v2_other_sizes_and_widths),
        cmocka_unit_test(mobilenet_v2_image_head),
        cmocka_unit_test(mobilenet_v2_names_match_the_nsfwjs_model),
        cmocka_unit_test(inception_v3_matches_keras),
        cmocka_unit_test(inception_v3_runs_the_nsfwjs_model),
        cmocka_unit_test(video_models_have_the_lstm_head),
        cmocka_unit_test(registry_lists_and_validates),
        cmocka_unit_test(heads_output_a_logit),
        cmocka_unit_test(ensembles_combine_their_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
