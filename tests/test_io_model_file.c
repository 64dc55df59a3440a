/* test_io_model_file — dfd model files: a graph saved and loaded back (through the
 * architecture its metadata names) has bit-identical parameters and gives bit-identical
 * outputs on the reference backend; bf16 files hold the bf16 rounding of each value;
 * metadata round-trips and is validated; and loading into a graph that does not match
 * names the offending tensor (missing, unexpected, or shape mismatch). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model_file.h"
#include "models/models.h"

/* The builder callback callers give dfd_model_load: the registry, driven by metadata. */
static int build_from_meta(void *user, const dfd_model_meta *m, nn_graph **out, dfd_error *err) {
    int *calls = user;
    if (calls) (*calls)++;
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = m->input_size;
    o.frames = m->frames;
    o.width = m->width;
    o.dropout = m->dropout;
    o.members = m->members;
    return dfd_arch_build(m->arch, &o, out, err);
}

/* A builder that ignores the stored width, to provoke shape mismatches. */
static int build_ignoring_width(void *user, const dfd_model_meta *m, nn_graph **out, dfd_error *err) {
    (void)user;
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = m->input_size;
    return dfd_arch_build(m->arch, &o, out, err);
}

static nn_graph *build(const char *arch, int size, int frames, float width) {
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = size;
    o.frames = frames;
    o.width = width;
    nn_graph *g;
    dfd_error e;
    int rc = dfd_arch_build(arch, &o, &g, &e);
    if (rc) print_message("%s: %s\n", arch, e.message);
    assert_int_equal(rc, DFD_OK);
    return g;
}

/* Random weights, and batch-norm statistics away from identity so they matter. */
static void randomise(nn_graph *g, uint64_t seed) {
    nn_graph_init_weights(g, seed);
    nn_rng r;
    nn_rng_seed(&r, seed ^ 0x5eed);
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        size_t n = strlen(p->name);
        int var = n > 16 && strcmp(p->name + n - 16, "/moving_variance") == 0;
        int stat = p->is_statistic || strstr(p->name, "/beta") || strstr(p->name, "/bias");
        if (!stat) continue;
        for (size_t k = 0; k < p->count; k++)
            p->data[k] = var ? 0.5f + nn_rng_uniform(&r) : 0.2f * (nn_rng_uniform(&r) - 0.5f);
    }
}

static void meta_for(dfd_model_meta *m, const char *arch, int size, int frames, float width) {
    dfd_model_meta_init(m);
    m->arch = strdup(arch);
    m->input_size = size;
    m->frames = frames;
    m->width = width;
    m->threshold = 0.4321;
    m->preprocess = strdup("{\"crop\":\"face-1.3\",\"size\":32,\"scale\":[-1,1]}");
    m->metrics = strdup("{\"auc\":0.91}");
    m->training_data = strdup("DFDC parts 0-9, UTKFace reals");
}

/* Saving m must be refused (DFD_E_ARG) with a message naming `needle`. */
static void save_refused(nn_graph *g, const dfd_model_meta *m, const char *path, const char *needle) {
    dfd_error e;
    assert_int_equal(dfd_model_save(g, m, NULL, path, &e), DFD_E_ARG);
    if (!strstr(e.message, needle)) fail_msg("refused with '%s', which does not name '%s'", e.message, needle);
}

static nn_exec *executor(nn_graph *g, int batch) {
    nn_exec_opts eo;
    nn_exec_opts_default(&eo);
    eo.backend = NN_BACKEND_REF;
    eo.precision = NN_PREC_F32;
    eo.max_batch = batch;
    nn_exec *ex;
    dfd_error e;
    int rc = nn_exec_create(g, &eo, &ex, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    return ex;
}

static float *input_for(nn_graph *g, int batch, size_t *n) {
    const nn_node *in = nn_graph_node(g, nn_graph_input(g));
    size_t per = 1;
    for (int i = 0; i < in->ndim; i++) per *= (size_t)in->shape[i];
    *n = per * (size_t)batch;
    float *x = malloc(*n * sizeof *x);
    assert_non_null(x);
    nn_rng r;
    nn_rng_seed(&r, 7);
    for (size_t i = 0; i < *n; i++) x[i] = 2.0f * nn_rng_uniform(&r) - 1.0f;
    return x;
}

static void save_load_forward_is_bit_exact(const char *arch, int size, int frames) {
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "model.safetensors");
    nn_graph *g = build(arch, size, frames, 0);
    randomise(g, 11);
    dfd_model_meta m;
    meta_for(&m, arch, size, frames, 1.0f);
    dfd_error e;
    int rc = dfd_model_save(g, &m, NULL, path, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    dfd_model_meta_free(&m);

    nn_graph *h = NULL;
    dfd_model_meta got;
    int calls = 0;
    rc = dfd_model_load(path, build_from_meta, &calls, &h, &got, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    assert_int_equal(calls, 1);
    assert_string_equal(got.arch, arch);
    assert_int_equal(got.input_size, size);
    assert_int_equal(got.frames, frames);
    assert_true(got.threshold == 0.4321);
    assert_string_equal(got.output, "logit_p_fake");
    assert_string_equal(got.preprocess, "{\"crop\":\"face-1.3\",\"size\":32,\"scale\":[-1,1]}");
    assert_string_equal(got.metrics, "{\"auc\":0.91}");
    assert_string_equal(got.training_data, "DFDC parts 0-9, UTKFace reals");
    assert_string_equal(got.dfd_version, dfd_version());
    assert_string_equal(got.task, "manipulation"); /* written by default */
    dfd_model_meta_free(&got);

    assert_int_equal(nn_graph_param_count(h), nn_graph_param_count(g));
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *a = nn_graph_param(g, i), *b = nn_graph_find_param(h, a->name);
        assert_non_null(b);
        assert_memory_equal(a->data, b->data, a->count * sizeof(float));
    }
    /* Same input, both graphs: every layer's output identical, bit for bit (deep in an
     * untrained MobileNetV2 the signal fades, so the early layers carry the check). */
    size_t n, c1, c2;
    float *x = input_for(g, 2, &n);
    nn_exec *e1 = executor(g, 2), *e2 = executor(h, 2);
    assert_int_equal(nn_forward(e1, x, 2, &e), DFD_OK);
    assert_int_equal(nn_forward(e2, x, 2, &e), DFD_OK);
    for (int i = 0; i < nn_graph_node_count(g); i++) {
        const float *a = nn_node_output(e1, i, &c1), *b = nn_node_output(e2, i, &c2);
        if (!a || !b) continue;
        assert_int_equal(c1, c2);
        assert_memory_equal(a, b, c1 * sizeof *a);
    }
    const float *y1 = nn_output(e1, 0, &c1), *y2 = nn_output(e2, 0, &c2);
    assert_int_equal(c1, 2);
    assert_int_equal(c2, 2);
    assert_memory_equal(y1, y2, c1 * sizeof *y1);
    assert_true(isfinite(y1[0]) && isfinite(y1[1]));
    if (strncmp(arch, "tiny", 4) == 0) assert_true(y1[0] != y1[1]); /* a real, input-dependent output */
    nn_exec_free(e1);
    nn_exec_free(e2);
    free(x);
    nn_graph_free(h);
    nn_graph_free(g);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

static void round_trip_reproduces_outputs(void **state) {
    (void)state;
    save_load_forward_is_bit_exact("tiny-cnn", 24, 0);
    save_load_forward_is_bit_exact("tiny-video", 16, 3);
    save_load_forward_is_bit_exact("mobilenet_v2-image", 32, 0);
}

static void bf16_files_hold_rounded_values(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *p32 = tu_join(dir, "f32.safetensors"), *p16 = tu_join(dir, "bf16.safetensors");
    nn_graph *g = build("tiny-cnn", 0, 0, 2.0f);
    randomise(g, 3);
    dfd_model_meta m;
    meta_for(&m, "tiny-cnn", 32, 0, 2.0f);
    dfd_model_save_opts so = {.bf16 = 1};
    assert_int_equal(dfd_model_save(g, &m, NULL, p32, NULL), DFD_OK);
    assert_int_equal(dfd_model_save(g, &m, &so, p16, NULL), DFD_OK);
    dfd_model_meta_free(&m);
    nn_graph *h;
    dfd_error e;
    int rc = dfd_model_load(p16, build_from_meta, NULL, &h, NULL, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    size_t values = nn_graph_num_weights(g), l32, l16;
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *a = nn_graph_param(g, i), *b = nn_graph_find_param(h, a->name);
        assert_int_equal(a->count, b->count);
        for (size_t k = 0; k < a->count; k++) assert_true(b->data[k] == dfd_bf16_to_f32(dfd_f32_to_bf16(a->data[k])));
    }
    free(tu_read_file(p32, &l32));
    free(tu_read_file(p16, &l16));
    /* Two bytes saved per value; the header is a few bytes longer ("BF16"). */
    assert_true(l16 + 2 * values <= l32 + 8 * (size_t)nn_graph_param_count(g));
    assert_true(l16 < l32 / 2 + 4096);
    nn_graph_free(h);
    nn_graph_free(g);
    tu_rmtree(dir);
    free(p32);
    free(p16);
    free(dir);
}

/* Writes g's parameters to a plain safetensors file, leaving out `skip` and adding `extra`. */
static dfd_st_file *params_file(nn_graph *g, const char *skip, const char *extra) {
    dfd_st_writer *w = dfd_st_writer_new();
    static const float one = 1.0f;
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        if (skip && strcmp(p->name, skip) == 0) continue;
        int64_t s[NN_MAX_DIMS];
        for (int d = 0; d < p->ndim; d++) s[d] = p->shape[d];
        assert_int_equal(dfd_st_writer_add_f32(w, p->name, p->ndim, s, p->data, DFD_ST_F32, NULL), DFD_OK);
    }
    if (extra) assert_int_equal(dfd_st_writer_add_f32(w, extra, 1, (int64_t[]){1}, &one, DFD_ST_F32, NULL), DFD_OK);
    uint8_t *b;
    size_t n;
    assert_int_equal(dfd_st_writer_to_memory(w, &b, &n, NULL), DFD_OK);
    dfd_st_writer_free(w);
    dfd_st_file *f;
    assert_int_equal(dfd_st_open_memory(b, n, "params", &f, NULL), DFD_OK);
    free(b);
    return f;
}

static void mismatches_are_reported_by_name(void **state) {
    (void)state;
    nn_graph *src = build("tiny-cnn", 0, 0, 1.0f);
    randomise(src, 5);
    nn_graph *dst = build("tiny-cnn", 0, 0, 1.0f);
    float before = nn_graph_find_param(dst, "conv1/kernel")->data[0];
    dfd_error e;

    dfd_st_file *f = params_file(src, "conv3/depthwise_kernel", NULL);
    assert_int_equal(dfd_model_load_params(f, dst, &e), DFD_E_MODEL);
    assert_string_equal(e.message, "missing tensor 'conv3/depthwise_kernel'");
    dfd_st_close(f);
    assert_true(nn_graph_find_param(dst, "conv1/kernel")->data[0] == before); /* untouched */

    f = params_file(src, NULL, "conv9/kernel");
    assert_int_equal(dfd_model_load_params(f, dst, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "unexpected tensor 'conv9/kernel'"));
    dfd_st_close(f);

    f = params_file(src, "dense/bias", "dense/biases");
    assert_int_equal(dfd_model_load_params(f, dst, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "unexpected tensor 'dense/biases'"));
    assert_non_null(strstr(e.message, "and 1 more problem"));
    dfd_st_close(f);

    nn_graph *wide = build("tiny-cnn", 0, 0, 2.0f);
    f = params_file(src, NULL, NULL);
    assert_int_equal(dfd_model_load_params(f, wide, &e), DFD_E_MODEL);
    print_message("%s\n", e.message);
    assert_non_null(strstr(e.message, "shape mismatch for 'conv1/kernel': file [3,3,3,8], model [3,3,3,16]"));
    assert_int_equal(dfd_model_load_params(f, dst, &e), DFD_OK); /* the matching graph loads */
    assert_true(nn_graph_find_param(dst, "conv1/kernel")->data[0] == nn_graph_find_param(src, "conv1/kernel")->data[0]);
    dfd_st_close(f);
    nn_graph_free(wide);
    nn_graph_free(dst);
    nn_graph_free(src);
}

/* The same through dfd_model_load, with Keras-named MobileNetV2 weights: a file saved at
 * alpha 0.35 loaded by a builder that makes alpha 1.0. */
static void model_load_names_the_tensor_and_the_file(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "mnv2.safetensors");
    nn_graph *g = build("mobilenet_v2-image", 32, 0, 0.35f);
    dfd_model_meta m;
    meta_for(&m, "mobilenet_v2-image", 32, 0, 0.35f);
    assert_int_equal(dfd_model_save(g, &m, NULL, path, NULL), DFD_OK);
    dfd_model_meta_free(&m);
    nn_graph *h = (nn_graph *)1;
    dfd_error e;
    assert_int_equal(dfd_model_load(path, build_ignoring_width, NULL, &h, NULL, &e), DFD_E_MODEL);
    assert_null(h);
    print_message("%s\n", e.message);
    assert_non_null(strstr(e.message, "mnv2.safetensors: shape mismatch for '"));
    assert_non_null(strstr(e.message, "more problems"));
    assert_int_equal(dfd_model_load(path, build_from_meta, NULL, &h, NULL, &e), DFD_OK);
    assert_int_equal(nn_graph_find_param(h, "Conv1/kernel")->shape[3], 16);
    nn_graph_free(h);
    nn_graph_free(g);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

static void metadata_is_validated(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "m.safetensors");
    nn_graph *g = build("tiny-cnn", 0, 0, 0);
    dfd_model_meta m;
    dfd_error e;
    meta_for(&m, "tiny-cnn", 32, 0, 1.0f);
    m.threshold = 1.5;
    save_refused(g, &m, path, "threshold");
    m.threshold = 0.5;
    free(m.preprocess);
    m.preprocess = strdup("crop=1.3");
    save_refused(g, &m, path, "preprocess");
    free(m.preprocess);
    m.preprocess = NULL;
    free(m.arch);
    m.arch = strdup("no-such-arch");
    assert_int_equal(dfd_model_save(g, &m, NULL, path, &e), DFD_OK);
    dfd_model_meta_free(&m);
    nn_graph *h;
    assert_int_equal(dfd_model_load(path, build_from_meta, NULL, &h, NULL, &e), DFD_E_NOT_FOUND);
    assert_non_null(strstr(e.message, "m.safetensors"));
    assert_non_null(strstr(e.message, "no-such-arch"));

    /* Files that are safetensors but not dfd models, or carry bad values. */
    static const struct {
        const char *k, *v, *needle;
    } bad[] = {
        {"format", "pt", "format 'pt'"},
        {"threshold", "0.5x", "threshold"},
        {"threshold", "nan", "threshold"},
        {"input_size", "-3", "input_size"},
        {"output", "probability", "output meaning 'probability'"},
        {"metrics", "[1,2]", "metrics"},
        {"architecture", "", "architecture"},
        {"task", "gan", "unknown task 'gan'"},
        {"heatmap", "lime", "unknown heat-map method 'lime'"},
        {"members", "0", "members"},
        {"members", "9", "members"},
        {"members", "2x", "members"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dfd_st_writer *w = dfd_st_writer_new();
        const char *base[][2] = {{"format", "dfd.model/1"}, {"architecture", "tiny-cnn"}, {"input_size", "32"},
                                 {"threshold", "0.5"},      {"output", "logit_p_fake"}};
        for (int k = 0; k < 5; k++) dfd_st_writer_set_meta(w, base[k][0], base[k][1], NULL);
        dfd_st_writer_set_meta(w, bad[i].k, bad[i].v, NULL);
        uint8_t *b;
        size_t n;
        assert_int_equal(dfd_st_writer_to_memory(w, &b, &n, NULL), DFD_OK);
        dfd_st_writer_free(w);
        dfd_st_file *f;
        assert_int_equal(dfd_st_open_memory(b, n, "x", &f, NULL), DFD_OK);
        free(b);
        dfd_model_meta got;
        int rc = dfd_model_meta_read(f, &got, &e);
        if (rc != DFD_E_MODEL || !strstr(e.message, bad[i].needle))
            print_message("%s=%s: rc %d '%s'\n", bad[i].k, bad[i].v, rc, e.message);
        assert_int_equal(rc, DFD_E_MODEL);
        assert_non_null(strstr(e.message, bad[i].needle));
        dfd_model_meta_free(&got);
        dfd_st_close(f);
    }
    dfd_st_file *f;
    uint8_t plain[] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    assert_int_equal(dfd_st_open_memory(plain, sizeof plain, "plain", &f, NULL), DFD_OK);
    dfd_model_meta got;
    assert_int_equal(dfd_model_meta_read(f, &got, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "not a dfd model file"));
    dfd_st_close(f);
    nn_graph_free(g);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* What a model detects: "task" is written and read back; a file without it (written
 * before the field existed) is a manipulation detector; an unknown task is refused. */
static void task_is_saved_and_defaults_to_manipulation(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "s.safetensors");
    nn_graph *g = build("tiny-cnn", 0, 0, 0);
    dfd_model_meta m;
    dfd_error e;
    meta_for(&m, "tiny-cnn", 32, 0, 1.0f);
    m.task = strdup("synthetic");
    assert_int_equal(dfd_model_save(g, &m, NULL, path, &e), DFD_OK);
    nn_graph *h = NULL;
    dfd_model_meta got;
    assert_int_equal(dfd_model_load(path, build_from_meta, NULL, &h, &got, &e), DFD_OK);
    assert_string_equal(got.task, "synthetic");
    /* The heat-map method: read back as written, absent when not set, checked on save. */
    assert_null(got.heatmap);
    dfd_model_meta_free(&got);
    nn_graph_free(h);
    m.heatmap = strdup("gradcam-full");
    assert_int_equal(dfd_model_save(g, &m, NULL, path, &e), DFD_OK);
    assert_int_equal(dfd_model_load(path, build_from_meta, NULL, &h, &got, &e), DFD_OK);
    assert_string_equal(got.heatmap, "gradcam-full");
    dfd_model_meta_free(&got);
    nn_graph_free(h);
    free(m.heatmap);
    m.heatmap = strdup("lime");
    save_refused(g, &m, path, "unknown heat-map method 'lime'");
    free(m.heatmap);
    m.heatmap = NULL;
    free(m.task);
    m.task = strdup("deepfake");
    save_refused(g, &m, path, "unknown task 'deepfake'");
    dfd_model_meta_free(&m);

    /* No "task" at all: an old file. */
    dfd_st_writer *w = dfd_st_writer_new();
    const char *base[][2] = {{"format", "dfd.model/1"}, {"architecture", "tiny-cnn"}, {"input_size", "32"},
                             {"threshold", "0.5"},      {"output", "logit_p_fake"}};
    for (int k = 0; k < 5; k++) dfd_st_writer_set_meta(w, base[k][0], base[k][1], NULL);
    uint8_t *b;
    size_t n;
    assert_int_equal(dfd_st_writer_to_memory(w, &b, &n, NULL), DFD_OK);
    dfd_st_writer_free(w);
    dfd_st_file *f;
    assert_int_equal(dfd_st_open_memory(b, n, "old", &f, NULL), DFD_OK);
    free(b);
    assert_int_equal(dfd_model_meta_read(f, &got, &e), DFD_OK);
    assert_string_equal(got.task, "manipulation");
    dfd_model_meta_free(&got);
    dfd_st_close(f);
    nn_graph_free(g);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

/* An ensemble's "members" is written, read back and rebuilt into the same graph; one
 * network writes no "members" (its file is as before) and reads back 1; an ensemble of
 * video models is refused. */
static void members_are_saved_and_default_to_one(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *path = tu_join(dir, "e.safetensors");
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = 32;
    o.members = 2;
    nn_graph *g = NULL, *h = NULL;
    dfd_error e;
    assert_int_equal(dfd_arch_build("tiny-cnn", &o, &g, &e), DFD_OK);
    randomise(g, 3);
    dfd_model_meta m, got;
    meta_for(&m, "tiny-cnn", 32, 0, 1.0f);
    m.members = 2;
    assert_int_equal(dfd_model_save(g, &m, NULL, path, &e), DFD_OK);
    assert_int_equal(dfd_model_load(path, build_from_meta, NULL, &h, &got, &e), DFD_OK);
    assert_int_equal(got.members, 2);
    assert_int_equal(nn_graph_param_count(h), nn_graph_param_count(g));
    const nn_param *a = nn_graph_find_param(g, "m1/conv1/kernel"), *b = nn_graph_find_param(h, "m1/conv1/kernel");
    assert_non_null(b);
    assert_memory_equal(a->data, b->data, a->count * sizeof *a->data);
    dfd_model_meta_free(&got);
    nn_graph_free(h);
    m.frames = 3;
    save_refused(g, &m, path, "members");
    dfd_model_meta_free(&m);
    nn_graph_free(g);

    g = build("tiny-cnn", 32, 0, 0);
    meta_for(&m, "tiny-cnn", 32, 0, 1.0f);
    assert_int_equal(dfd_model_save(g, &m, NULL, path, &e), DFD_OK);
    dfd_st_file *f;
    assert_int_equal(dfd_st_open(path, &f, &e), DFD_OK);
    assert_null(dfd_st_meta_get(f, "members"));
    assert_int_equal(dfd_model_meta_read(f, &got, &e), DFD_OK);
    assert_int_equal(got.members, 1);
    dfd_model_meta_free(&got);
    dfd_st_close(f);
    dfd_model_meta_free(&m);
    nn_graph_free(g);
    tu_rmtree(dir);
    free(path);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_reproduces_outputs),
        cmocka_unit_test(bf16_files_hold_rounded_values),
        cmocka_unit_test(mismatches_are_reported_by_name),
        cmocka_unit_test(model_load_names_the_tensor_and_the_file),
        cmocka_unit_test(metadata_is_validated),
        cmocka_unit_test(task_is_saved_and_defaults_to_manipulation),
        cmocka_unit_test(members_are_saved_and_default_to_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
