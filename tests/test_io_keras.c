/* test_io_keras — `dfd import keras` reads the original system's Keras models: Keras 2
 * HDF5 (.h5: model.save with a nested "xception" or TimeDistributed encoder, frozen
 * layers' weights listed after the trainable ones, 1-based or offset automatic names;
 * save_weights without a config) and Keras 3 archives (.keras: class-numbered groups,
 * numbered variables, LSTM cells, a Dropout seed state, optimizer variables), for the
 * image and the video architecture.
 *
 * How it is checked without TensorFlow: each fixture is written here with the HDF5 C
 * library (and libzip) in Keras's own layout, from random weights held by a reference
 * graph whose parameters were set directly (not through the importer). After import,
 * every parameter must equal the reference's bit for bit, and the imported model run by
 * the oneDNN backend must give the reference's output on the plain-C reference backend
 * within 1e-4 (both printed). Where Debian's python3-torch and python3-h5py are
 * installed, tests/reference/xception_torch.py — an independent PyTorch implementation of
 * Keras's Xception and the original's heads, reading the same file with h5py — must
 * agree too (skipped elsewhere). Through the CLI, `dfd import keras` then `dfd scan
 * --model-image` on examples/astronaut.png must report the reference's P(fake) on the
 * same crop (skipped without the built binary and setup.sh's face models). Broken fixtures (a missing layer, an extra layer, a
 * wrong shape, a wrong activation) are refused naming the layer, as are files that are
 * not HDF5 or not Keras models.
 *
 * The input side is 71 (Xception's smallest) and video clips have 2 frames, so the whole
 * program stays within seconds even under AddressSanitizer. */
#include "testutil.h"

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include "face/face.h"
#include "io/keras.h"
#include "io/model_file.h"
#include "media/media.h"
#include "models/models.h"

#define SIZE 71
#define FRAMES 2

/* ---- Reference graphs with random weights --------------------------------------------- */

static uint64_t rng_state;
static float urand(void) { /* xorshift64*, uniform in [0,1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((rng_state * 2685821657736338717ull) >> 40) / (float)(1 << 24);
}
static float urange(float a, float b) { return a + (b - a) * urand(); }

static nn_graph *build(const char *arch) {
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = SIZE;
    o.frames = FRAMES;
    nn_graph *g = NULL;
    dfd_error e;
    int rc = dfd_arch_build(arch, &o, &g, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    return g;
}

static const char *kind_of(const nn_param *p) { return strrchr(p->name, '/') + 1; }

/* Weights on the scale trained networks have (kernels ~ 1/sqrt(fan-in), batch-norm
 * statistics near their identity), so activations neither vanish nor explode through
 * Xception's 36 convolutions and the outputs are informative. */
static void fill_random(nn_graph *g, uint64_t seed) {
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        const char *k = kind_of(p);
        size_t fan_in = 1;
        for (int d = 0; d < p->ndim - 1; d++) fan_in *= (size_t)p->shape[d];
        if (strcmp(k, "depthwise_kernel") == 0) fan_in = (size_t)p->shape[0] * (size_t)p->shape[1];
        float a = sqrtf(3.0f / (float)fan_in);
        /* The head's dense layers a little larger, so that the logit is O(1): an output near
         * zero would make the 1e-4 agreement below easy. */
        if (strncmp(p->name, "dense", 5) == 0) a *= 5.0f;
        float lo = -a, hi = a;
        if (strcmp(k, "gamma") == 0) lo = 0.6f, hi = 1.4f;
        else if (strcmp(k, "beta") == 0 || strcmp(k, "moving_mean") == 0) lo = -0.2f, hi = 0.2f;
        else if (strcmp(k, "moving_variance") == 0) lo = 0.5f, hi = 1.5f;
        else if (strcmp(k, "bias") == 0) lo = -0.1f, hi = 0.1f;
        for (size_t j = 0; j < p->count; j++) p->data[j] = urange(lo, hi);
    }
}

/* ---- The fixture's Keras model ------------------------------------------------------------
 * Derived from the graph's nodes, which follow Keras's model.layers order: one entry per
 * Keras layer with its class, the name the fixture gives it, the dfd parameters it holds
 * (in Keras's weight order) and whether it sits inside the nested model. */

typedef struct klayer {
    const char *cls;
    char name[96];
    char dfd[96];
    int node;
    int params[8], n_params;
    int inner;       /* inside the nested model (xception / the TimeDistributed encoder) */
} klayer;

typedef struct fixture_opts {
    int nested;               /* image model: Xception as a nested functional model "xception" */
    int inner_offset;         /* automatic names inside / outside the nested part: k -> k + offset */
    int outer_offset;
    int frozen_until;         /* .h5 nested: inner layers before this index are frozen (and every
                               * batch norm): their weights follow the trainable ones */
    int with_config;
    int root_weights;         /* .h5 save_weights layout: layers at the root, no config */
    int vlen_strings;         /* write the name attributes as variable-length strings */
    const char *drop;         /* leave this dfd layer out */
    int extra;                /* add a Dense "foo" before the head */
    const char *bad_shape;    /* this dfd parameter is written with one column less */
    const char *bad_act;      /* this layer's activation becomes "tanh" in the config */
    int no_data;              /* create datasets without writing values (error fixtures) */
} fixture_opts;

typedef struct kmodel {
    klayer l[600];
    int n;
    int is_video;
    float *foo_kernel, *foo_bias; /* the extra layer's weights */
} kmodel;

static void keras_name(const char *dfd, int offset, char *out, size_t cap) {
    static const char *const fams[] = {"conv2d", "batch_normalization", "dense", "lstm", "add", "dropout", NULL};
    for (int i = 0; fams[i]; i++) {
        size_t n = strlen(fams[i]);
        if (strncmp(dfd, fams[i], n) != 0 || (dfd[n] != 0 && dfd[n] != '_')) continue;
        if (dfd[n] == '_' && !(dfd[n + 1] >= '0' && dfd[n + 1] <= '9')) continue;
        int k = dfd[n] ? atoi(dfd + n + 1) : 0;
        k += offset;
        if (k == 0) snprintf(out, cap, "%s", fams[i]);
        else snprintf(out, cap, "%s_%d", fams[i], k);
        return;
    }
    snprintf(out, cap, "%s", dfd);
}

static void make_model(nn_graph *g, int is_video, const fixture_opts *o, kmodel *m) {
    memset(m, 0, sizeof *m);
    m->is_video = is_video;
    int inner = 0, seen_gap = 0;
    for (int id = 0; id < nn_graph_node_count(g); id++) {
        const nn_node *n = nn_graph_node(g, id);
        const char *cls = NULL;
        switch (n->op) {
        case NN_OP_INPUT: cls = "InputLayer"; break;
        case NN_OP_FOLD_TIME: inner = 1; continue;
        case NN_OP_UNFOLD_TIME: inner = 0; continue;
        case NN_OP_CONV2D: {
            if (strstr(n->name, "/depthwise")) continue;
            char dn[NN_NAME_MAX + 16];
            snprintf(dn, sizeof dn, "%s/depthwise", n->name);
            cls = nn_graph_find_node(g, dn) >= 0 ? "SeparableConv2D" : "Conv2D";
            break;
        }
        case NN_OP_BATCHNORM: cls = "BatchNormalization"; break;
        case NN_OP_ACT: cls = "Activation"; break;
        case NN_OP_MAXPOOL: cls = "MaxPooling2D"; break;
        case NN_OP_GAP: cls = "GlobalAveragePooling2D"; break;
        case NN_OP_DENSE: cls = "Dense"; break;
        case NN_OP_DROPOUT: cls = "Dropout"; break;
        case NN_OP_ADD: cls = "Add"; break;
        case NN_OP_LSTM: cls = "LSTM"; break;
        default: fail_msg("unexpected node op %d", n->op);
        }
        if (o->drop && strcmp(n->name, o->drop) == 0) continue;
        if (!is_video && n->op == NN_OP_GAP) seen_gap = 1;
        if (o->extra && n->op == NN_OP_GAP) {
            /* An extra Dense "foo" in the head (its weights are small random). */
            klayer *x = &m->l[m->n++];
            x->cls = "Dense";
            snprintf(x->name, sizeof x->name, "foo");
            x->node = -1;
        }
        klayer *k = &m->l[m->n++];
        k->cls = cls;
        k->node = id;
        k->inner = n->op != NN_OP_INPUT && (is_video ? inner : (o->nested && !seen_gap));
        if (n->op == NN_OP_INPUT) snprintf(k->name, sizeof k->name, "input_1");
        else keras_name(n->name, k->inner ? o->inner_offset : o->outer_offset, k->name, sizeof k->name);
        snprintf(k->dfd, sizeof k->dfd, "%s", n->name);
        for (int i = 0; i < nn_graph_param_count(g); i++) {
            const nn_param *p = nn_graph_param(g, i);
            size_t len = strlen(n->name);
            if (strncmp(p->name, n->name, len) == 0 && p->name[len] == '/' && !strchr(p->name + len + 1, '/'))
                k->params[k->n_params++] = i;
        }
    }
}

/* The layer's Keras config (the keys the importer may check, with Keras's values). */
static json_t *layer_config(nn_graph *g, const klayer *k, const fixture_opts *o, int keras3) {
    json_t *c = json_object();
    json_object_set_new(c, "name", json_string(k->name));
    json_object_set_new(c, "trainable", json_true());
    if (k->node < 0) { /* the extra Dense */
        json_object_set_new(c, "units", json_integer(4));
        json_object_set_new(c, "activation", json_string("relu"));
        return c;
    }
    const nn_node *n = nn_graph_node(g, k->node);
    const char *cls = k->cls;
    if (strcmp(cls, "InputLayer") == 0) {
        json_t *s = json_array();
        json_array_append_new(s, json_null());
        if (n->ndim == 4) json_array_append_new(s, json_integer(n->shape[0]));
        for (int i = n->ndim == 4 ? 1 : 0; i < n->ndim; i++) json_array_append_new(s, json_integer(n->shape[i]));
        json_object_set_new(c, keras3 ? "batch_shape" : "batch_input_shape", s);
    } else if (strcmp(cls, "Conv2D") == 0 || strcmp(cls, "SeparableConv2D") == 0) {
        const nn_node *geo = n;
        if (strcmp(cls, "SeparableConv2D") == 0) {
            char dn[NN_NAME_MAX + 16];
            snprintf(dn, sizeof dn, "%s/depthwise", n->name);
            geo = nn_graph_node(g, nn_graph_find_node(g, dn));
        }
        json_object_set_new(c, "filters", json_integer(n->a.conv.out_c));
        json_object_set_new(c, "kernel_size", json_pack("[i,i]", geo->a.conv.kh, geo->a.conv.kw));
        json_object_set_new(c, "strides", json_pack("[i,i]", geo->a.conv.sh, geo->a.conv.sw));
        json_object_set_new(c, "padding", json_string(geo->a.conv.padding == NN_PAD_SAME ? "same" : "valid"));
        json_object_set_new(c, "dilation_rate", json_pack("[i,i]", 1, 1));
        json_object_set_new(c, "activation", json_string("linear"));
        json_object_set_new(c, "use_bias", json_boolean(n->a.conv.has_bias));
    } else if (strcmp(cls, "BatchNormalization") == 0) {
        json_object_set_new(c, "axis", keras3 ? json_integer(-1) : json_pack("[i]", 3));
        json_object_set_new(c, "momentum", json_real(0.99));
        json_object_set_new(c, "epsilon", json_real(0.001));
        json_object_set_new(c, "center", json_true());
        json_object_set_new(c, "scale", json_true());
    } else if (strcmp(cls, "Activation") == 0) {
        json_object_set_new(c, "activation", json_string("relu"));
    } else if (strcmp(cls, "MaxPooling2D") == 0) {
        json_object_set_new(c, "pool_size", json_pack("[i,i]", 3, 3));
        json_object_set_new(c, "strides", json_pack("[i,i]", 2, 2));
        json_object_set_new(c, "padding", json_string("same"));
    } else if (strcmp(cls, "Dropout") == 0) {
        json_object_set_new(c, "rate", json_real(0.5));
    } else if (strcmp(cls, "Dense") == 0) {
        json_object_set_new(c, "units", json_integer(n->a.dense.units));
        json_object_set_new(c, "activation", json_string(n->a.dense.act == NN_ACT_RELU ? "relu" : "sigmoid"));
        json_object_set_new(c, "use_bias", json_true());
    } else if (strcmp(cls, "LSTM") == 0) {
        json_object_set_new(c, "units", json_integer(n->a.lstm.units));
        json_object_set_new(c, "activation", json_string("tanh"));
        json_object_set_new(c, "recurrent_activation", json_string("sigmoid"));
        json_object_set_new(c, "return_sequences", json_boolean(n->a.lstm.return_sequences));
        json_object_set_new(c, "go_backwards", json_false());
    }
    if (o->bad_act && strcmp(k->dfd, o->bad_act) == 0) json_object_set_new(c, "activation", json_string("tanh"));
    return c;
}

static json_t *layer_node(const char *cls, json_t *config, int keras3) {
    json_t *n = json_object();
    if (keras3) json_object_set_new(n, "module", json_string("keras.layers"));
    json_object_set_new(n, "class_name", json_string(cls));
    if (keras3) json_object_set_new(n, "name", json_incref(json_object_get(config, "name")));
    json_object_set_new(n, "config", config);
    return n;
}

/* The model's config: top-level layers, with the nested part as one entry (a functional
 * "xception", or TimeDistributed(functional encoder)) at the place of its first layer. */
static json_t *model_config(nn_graph *g, const kmodel *m, const fixture_opts *o, int keras3) {
    json_t *top = json_array(), *in = NULL;
    for (int i = 0; i < m->n; i++) {
        const klayer *k = &m->l[i];
        json_t *node = layer_node(k->cls, layer_config(g, k, o, keras3), keras3);
        if (!k->inner) {
            json_array_append_new(top, node);
            continue;
        }
        if (!in) {
            in = json_array();
            /* The nested model's own input layer. */
            json_t *ic = json_object();
            json_object_set_new(ic, "name", json_string("input_2"));
            json_object_set_new(ic, keras3 ? "batch_shape" : "batch_input_shape",
                                json_pack("[n,i,i,i]", SIZE, SIZE, 3));
            json_array_append_new(in, layer_node("InputLayer", ic, keras3));
            json_t *fc = json_object();
            json_object_set_new(fc, "name", json_string(m->is_video ? "encoder" : "xception"));
            json_object_set_new(fc, "layers", in);
            json_t *fn = layer_node("Functional", fc, keras3);
            if (m->is_video) {
                json_t *tc = json_object();
                json_object_set_new(tc, "name", json_string("time_distributed"));
                json_object_set_new(tc, "layer", fn);
                fn = layer_node("TimeDistributed", tc, keras3);
            }
            json_array_append_new(top, fn);
        }
        json_array_append_new(in, node);
    }
    json_t *mc = json_object();
    json_object_set_new(mc, "name", json_string("model"));
    json_object_set_new(mc, "layers", top);
    json_t *root = layer_node("Functional", mc, keras3);
    if (keras3) json_object_set_new(root, "module", json_string("keras.src.models.functional"));
    return root;
}

/* ---- HDF5 writing ------------------------------------------------------------------------ */

static void attr_str(hid_t obj, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1 > 1 ? strlen(value) : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, t, value) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

/* A string-array attribute as h5py writes a numpy bytes array (fixed length, null
 * padded), or variable-length strings; an empty list as Keras's empty float array. */
static void attr_strs(hid_t obj, const char *name, char **v, int n, int vlen) {
    if (n == 0) {
        hsize_t d = 0;
        hid_t s = H5Screate_simple(1, &d, NULL);
        if (s < 0) s = H5Screate(H5S_NULL);
        hid_t a = H5Acreate2(obj, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0) { /* this HDF5 refuses zero-sized attributes: a null dataspace instead */
            H5Sclose(s);
            s = H5Screate(H5S_NULL);
            a = H5Acreate2(obj, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
        }
        assert_true(a >= 0);
        H5Aclose(a);
        H5Sclose(s);
        return;
    }
    hsize_t d = (hsize_t)n;
    hid_t s = H5Screate_simple(1, &d, NULL), t = H5Tcopy(H5T_C_S1);
    if (vlen) {
        H5Tset_size(t, H5T_VARIABLE);
        hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(H5Awrite(a, t, v) >= 0);
        H5Aclose(a);
    } else {
        size_t w = 1;
        for (int i = 0; i < n; i++)
            if (strlen(v[i]) > w) w = strlen(v[i]);
        char *buf = calloc((size_t)n, w);
        for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * w, v[i], strlen(v[i]));
        H5Tset_size(t, w);
        H5Tset_strpad(t, H5T_STR_NULLPAD);
        hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(H5Awrite(a, t, buf) >= 0);
        H5Aclose(a);
        free(buf);
    }
    H5Tclose(t);
    H5Sclose(s);
}

/* A float32 dataset at path under loc (intermediate groups created, as h5py does). */
static void dataset(hid_t loc, const char *path, const nn_param *p, const float *data, const fixture_opts *o) {
    hsize_t dims[NN_MAX_DIMS];
    for (int i = 0; i < p->ndim; i++) dims[i] = (hsize_t)p->shape[i];
    int bad = o->bad_shape && strcmp(p->name, o->bad_shape) == 0;
    if (bad) dims[p->ndim - 1]--;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t s = H5Screate_simple(p->ndim, dims, NULL);
    hid_t d = H5Dcreate2(loc, path, H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    if (!o->no_data && !bad) assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(s);
    H5Pclose(lcpl);
}

/* The Keras 2 weight name of a parameter ("block1_conv1/kernel:0"; an LSTM's live in
 * its cell: "lstm/lstm_cell/kernel:0"). */
static void k2_weight_name(const klayer *k, const nn_param *p, char *out, size_t cap) {
    if (strcmp(k->cls, "LSTM") == 0) snprintf(out, cap, "%s/lstm_cell/%s:0", k->name, kind_of(p));
    else snprintf(out, cap, "%s/%s:0", k->name, kind_of(p));
}

typedef struct wlist {
    char *names[4096];
    const nn_param *params[4096];
    int n;
} wlist;

static void wl_add(wlist *w, const char *name, const nn_param *p) {
    assert_true(w->n < 4096);
    w->names[w->n] = strdup(name);
    w->params[w->n++] = p;
}

static void wl_free(wlist *w) {
    for (int i = 0; i < w->n; i++) free(w->names[i]);
    w->n = 0;
}

/* Keras 2 .h5 (hdf5_format.save_weights_to_hdf5_group): layer_names in model.layers order,
 * a group per layer with weight_names and the datasets under those names. A nested model's
 * group lists its layers' trainable weights first, then the non-trainable ones (frozen
 * layers and batch-norm statistics), as Keras's _legacy_weights does. */
static void write_h5(const char *path, nn_graph *g, kmodel *m, const fixture_opts *o) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t w = f;
    if (!o->root_weights) {
        attr_str(f, "keras_version", "2.12.0");
        attr_str(f, "backend", "tensorflow");
        if (o->with_config) {
            json_t *cfg = model_config(g, m, o, 0);
            char *txt = json_dumps(cfg, JSON_COMPACT);
            attr_str(f, "model_config", txt);
            free(txt);
            json_decref(cfg);
        }
        w = H5Gcreate2(f, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    }
    attr_str(w, "keras_version", "2.12.0");
    attr_str(w, "backend", "tensorflow");
    const char *nested_name = m->is_video ? "time_distributed" : "xception";
    char *names[700];
    int nn_ = 0, nested_seen = 0;
    for (int i = 0; i < m->n; i++) {
        if (m->l[i].inner) {
            if (!nested_seen) names[nn_++] = (char *)nested_name;
            nested_seen = 1;
        } else {
            names[nn_++] = m->l[i].name;
        }
    }
    attr_strs(w, "layer_names", names, nn_, o->vlen_strings);
    /* Top-level layers. */
    for (int i = 0; i < m->n; i++) {
        klayer *k = &m->l[i];
        if (k->inner) continue;
        hid_t lg = H5Gcreate2(w, k->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        wlist wl = {0};
        char wn[256];
        if (k->node < 0) { /* the extra Dense "foo" */
            static float kern[2048 * 4], bias[4];
            nn_param pk = {.ndim = 2, .shape = {2048, 4}, .count = 2048 * 4, .data = kern};
            nn_param pb = {.ndim = 1, .shape = {4}, .count = 4, .data = bias};
            snprintf(pk.name, sizeof pk.name, "foo/kernel");
            snprintf(pb.name, sizeof pb.name, "foo/bias");
            snprintf(wn, sizeof wn, "foo/kernel:0");
            dataset(lg, wn, &pk, kern, o);
            wl_add(&wl, wn, NULL);
            snprintf(wn, sizeof wn, "foo/bias:0");
            dataset(lg, wn, &pb, bias, o);
            wl_add(&wl, wn, NULL);
        }
        for (int j = 0; j < k->n_params; j++) {
            const nn_param *p = nn_graph_param(g, k->params[j]);
            k2_weight_name(k, p, wn, sizeof wn);
            dataset(lg, wn, p, p->data, o);
            wl_add(&wl, wn, p);
        }
        attr_strs(lg, "weight_names", wl.names, wl.n, o->vlen_strings);
        wl_free(&wl);
        H5Gclose(lg);
    }
    /* The nested model. */
    if (nested_seen) {
        hid_t lg = H5Gcreate2(w, nested_name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        wlist wl = {0};
        char wn[256];
        for (int pass = 0; pass < 2; pass++) {
            int idx = 0;
            for (int i = 0; i < m->n; i++) {
                klayer *k = &m->l[i];
                if (!k->inner) continue;
                int frozen = idx++ < o->frozen_until || strcmp(k->cls, "BatchNormalization") == 0;
                for (int j = 0; j < k->n_params; j++) {
                    const nn_param *p = nn_graph_param(g, k->params[j]);
                    int trainable = !frozen && !p->is_statistic;
                    if (trainable != (pass == 0)) continue;
                    k2_weight_name(k, p, wn, sizeof wn);
                    dataset(lg, wn, p, p->data, o);
                    wl_add(&wl, wn, p);
                }
            }
        }
        attr_strs(lg, "weight_names", wl.names, wl.n, o->vlen_strings);
        wl_free(&wl);
        H5Gclose(lg);
    }
    if (w != f) H5Gclose(w);
    H5Fclose(f);
}

/* Keras 3 (saving_lib): "layers/<snake_case class>[_k]/vars/<i>", k counting the class
 * within its model; every layer gets its vars group, weights or not; a wrapper's layer under
 * "layer", an LSTM's variables under "cell". Plus the root's empty vars and optimizer
 * variables, which are no layer's. */
static void snake(const char *cls, char *out, size_t cap) { dfd_keras_snake_case(cls, out, cap); }

typedef struct counter {
    char name[64];
    int n;
} counter;

static void k3_key(counter *c, int *nc, const char *cls, char *out, size_t cap) {
    char s[64];
    snake(cls, s, sizeof s);
    for (int i = 0; i < *nc; i++)
        if (strcmp(c[i].name, s) == 0) {
            snprintf(out, cap, "%s_%d", s, ++c[i].n);
            return;
        }
    snprintf(c[*nc].name, sizeof c[0].name, "%s", s);
    c[(*nc)++].n = 0;
    snprintf(out, cap, "%s", s);
}

static hid_t mkgroup(hid_t f, const char *path) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2(f, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    assert_true(g >= 0);
    return g;
}

static void k3_layer_vars(hid_t f, const char *base, nn_graph *g, const klayer *k, const fixture_opts *o) {
    char p[700], vp[800];
    snprintf(p, sizeof p, "%s/vars", base);
    H5Gclose(mkgroup(f, p));
    if (strcmp(k->cls, "LSTM") == 0) {
        snprintf(p, sizeof p, "%s/cell/vars", base);
        H5Gclose(mkgroup(f, p));
    }
    if (strcmp(k->cls, "Dropout") == 0) {
        /* A Dropout may keep its SeedGenerator's state (two integers) among its variables. */
        snprintf(vp, sizeof vp, "%s/0", p);
        hsize_t d = 2;
        uint32_t st[2] = {1337, 0};
        hid_t s = H5Screate_simple(1, &d, NULL);
        hid_t ds = H5Dcreate2(f, vp, H5T_STD_U32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(ds, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, st);
        H5Dclose(ds);
        H5Sclose(s);
    }
    if (k->node < 0) { /* the extra Dense "foo" */
        static float kern[2048 * 4], bias[4];
        nn_param pk = {.ndim = 2, .shape = {2048, 4}, .count = 2048 * 4, .data = kern};
        nn_param pb = {.ndim = 1, .shape = {4}, .count = 4, .data = bias};
        snprintf(vp, sizeof vp, "%s/0", p);
        dataset(f, vp, &pk, kern, o);
        snprintf(vp, sizeof vp, "%s/1", p);
        dataset(f, vp, &pb, bias, o);
    }
    for (int j = 0; j < k->n_params; j++) {
        snprintf(vp, sizeof vp, "%s/%d", p, j);
        const nn_param *q = nn_graph_param(g, k->params[j]);
        dataset(f, vp, q, q->data, o);
    }
}

static void write_keras3_h5(const char *path, nn_graph *g, kmodel *m, const fixture_opts *o) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    H5Gclose(mkgroup(f, "vars"));
    counter top[64], in[64];
    int ntop = 0, nin = 0;
    char base[512], nested_base[256] = "";
    for (int i = 0; i < m->n; i++) {
        klayer *k = &m->l[i];
        char key[96];
        if (k->inner) {
            if (!nested_base[0]) {
                k3_key(top, &ntop, m->is_video ? "TimeDistributed" : "Functional", key, sizeof key);
                snprintf(nested_base, sizeof nested_base, "layers/%s", key);
                snprintf(base, sizeof base, "%s/vars", nested_base);
                H5Gclose(mkgroup(f, base));
                if (m->is_video) {
                    snprintf(nested_base + strlen(nested_base), sizeof nested_base - strlen(nested_base), "/layer");
                    snprintf(base, sizeof base, "%s/vars", nested_base);
                    H5Gclose(mkgroup(f, base));
                }
                /* The nested model's input layer. */
                k3_key(in, &nin, "InputLayer", key, sizeof key);
                snprintf(base, sizeof base, "%s/layers/%s/vars", nested_base, key);
                H5Gclose(mkgroup(f, base));
            }
            k3_key(in, &nin, k->cls, key, sizeof key);
            snprintf(base, sizeof base, "%s/layers/%s", nested_base, key);
        } else {
            k3_key(top, &ntop, k->cls, key, sizeof key);
            snprintf(base, sizeof base, "layers/%s", key);
        }
        k3_layer_vars(f, base, g, k, o);
    }
    /* Optimizer state (iterations, learning rate): outside "layers", not weights. */
    hsize_t one = 1;
    hid_t s = H5Screate_simple(1, &one, NULL);
    const char *opt[2] = {"optimizer/vars/0", "optimizer/vars/1"};
    for (int i = 0; i < 2; i++) {
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        hid_t d = H5Dcreate2(f, opt[i], H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        float v = 0.002f;
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v);
        H5Dclose(d);
        H5Pclose(lcpl);
    }
    H5Sclose(s);
    H5Fclose(f);
}

/* A .keras archive as saving_lib writes it: metadata.json, config.json, model.weights.h5
 * (stored, not compressed, as Python's zipfile does by default). */
static void write_keras3(const char *path, const char *dir, nn_graph *g, kmodel *m, const fixture_opts *o) {
    char *h5 = tu_join(dir, "model.weights.h5");
    write_keras3_h5(h5, g, m, o);
    json_t *cfg = model_config(g, m, o, 1);
    char *cfg_txt = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    const char *meta = "{\"keras_version\": \"3.3.3\", \"date_saved\": \"2024-05-01@12:00:00\"}";
    int zerr;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    assert_non_null(z);
    zip_source_t *s1 = zip_source_buffer(z, meta, strlen(meta), 0);
    zip_int64_t i1 = zip_file_add(z, "metadata.json", s1, ZIP_FL_OVERWRITE);
    zip_source_t *s2 = zip_source_buffer(z, cfg_txt, strlen(cfg_txt), 0);
    zip_int64_t i2 = zip_file_add(z, "config.json", s2, ZIP_FL_OVERWRITE);
    zip_source_t *s3 = zip_source_file(z, h5, 0, -1);
    zip_int64_t i3 = zip_file_add(z, "model.weights.h5", s3, ZIP_FL_OVERWRITE);
    assert_true(i1 >= 0 && i2 >= 0 && i3 >= 0);
    zip_set_file_compression(z, (zip_uint64_t)i1, ZIP_CM_STORE, 0);
    zip_set_file_compression(z, (zip_uint64_t)i2, ZIP_CM_STORE, 0);
    zip_set_file_compression(z, (zip_uint64_t)i3, ZIP_CM_STORE, 0);
    assert_int_equal(zip_close(z), 0);
    free(cfg_txt);
    remove(h5);
    free(h5);
}

/* ---- Checks ------------------------------------------------------------------------------ */

/* Shared by the tests (built once: random Xception weights cost time under ASan): the
 * reference graphs, their outputs on the plain-C backend, and the good fixtures' paths
 * (the PyTorch comparison reads the same files). */
typedef struct shared {
    char *dir;
    nn_graph *ref[2];       /* image, video */
    float ref_logit[2];
    char *good[4];          /* image.h5, image.keras, video.h5, video.keras */
} shared;

static shared S;

static size_t input_count(int video) { return (size_t)SIZE * SIZE * 3 * (video ? FRAMES : 1); }

static void make_input(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = 0.5f + 0.45f * sinf(0.37f * (float)i + 0.11f * (float)(i % 3));
}

/* Output 0 of one forward pass on backend be (fp32). */
static float forward(nn_graph *g, nn_backend be, const float *x) {
    float v;
    tu_forward(g, be, x, 1, &v);
    return v;
}

static int setup(void **state) {
    (void)state;
    S.dir = tu_mkdtemp();
    static const char *const archs[2] = {"xception-image", "xception-video"};
    for (int v = 0; v < 2; v++) {
        S.ref[v] = build(archs[v]);
        fill_random(S.ref[v], (uint64_t)v + 1);
        size_t n = input_count(v);
        float *x = malloc(n * sizeof *x);
        make_input(x, n);
        S.ref_logit[v] = forward(S.ref[v], NN_BACKEND_REF, x);
        free(x);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int v = 0; v < 2; v++) nn_graph_free(S.ref[v]);
    for (int i = 0; i < 4; i++) free(S.good[i]);
    tu_rmtree(S.dir);
    free(S.dir);
    return 0;
}

/* Writes a fixture of arch's reference weights; returns its path (malloc'ed). */
static char *make_fixture(const char *arch, const char *file, int keras3, const fixture_opts *o) {
    int video = strstr(arch, "video") != NULL;
    kmodel *m = calloc(1, sizeof *m);
    make_model(S.ref[video], video, o, m);
    char *path = tu_join(S.dir, file);
    if (keras3) write_keras3(path, S.dir, S.ref[video], m, o);
    else write_h5(path, S.ref[video], m, o);
    free(m);
    return path;
}

/* Imports path into a fresh graph of arch; returns the status and the graph (or NULL). */
static int import_into(const char *path, const char *arch, nn_graph **out, dfd_error *e) {
    dfd_keras_file *kf = NULL;
    *out = NULL;
    int rc = dfd_keras_open(path, &kf, e);
    if (rc) return rc;
    nn_graph *g = build(arch);
    rc = dfd_keras_load(kf, g, e);
    dfd_keras_close(kf);
    if (rc) nn_graph_free(g);
    else *out = g;
    return rc;
}

static void assert_same_params(nn_graph *a, nn_graph *b) {
    assert_int_equal(nn_graph_param_count(a), nn_graph_param_count(b));
    for (int i = 0; i < nn_graph_param_count(a); i++) {
        nn_param *p = nn_graph_param(a, i), *q = nn_graph_find_param(b, p->name);
        assert_non_null(q);
        assert_int_equal(p->count, q->count);
        if (memcmp(p->data, q->data, p->count * sizeof(float)) != 0) fail_msg("parameter '%s' differs", p->name);
    }
}

/* The imported graph on oneDNN against the reference graph on the plain-C backend. */
/* (Its parameters being bit-identical to the reference's, the imported graph would give
 * the reference's output on the same backend exactly; what is measured is the deployed
 * path, oneDNN with batch norm folded, against the plain-C reference.) */
static void check_outputs(nn_graph *imp, int video, const char *what) {
    size_t n = input_count(video);
    float *x = malloc(n * sizeof *x);
    make_input(x, n);
    float want = S.ref_logit[video];
    float got = forward(imp, NN_BACKEND_DNNL, x);
    print_message("%s: reference backend %.6f, imported model on oneDNN %.6f (abs diff %.2e)\n", what,
                  (double)want, (double)got, fabs((double)got - want));
    assert_true(fabsf(want) > 0.1f && fabsf(want) < 100.0f); /* an informative output */
    assert_float_equal(got, want, 1e-4f);
    free(x);
}

/* ---- Tests -------------------------------------------------------------------------------- */

static void snake_case_matches_keras(void **state) {
    (void)state;
    static const char *const cases[][2] = {
        {"Conv2D", "conv2d"},
        {"SeparableConv2D", "separable_conv2d"},
        {"BatchNormalization", "batch_normalization"},
        {"GlobalAveragePooling2D", "global_average_pooling2d"},
        {"TimeDistributed", "time_distributed"},
        {"InputLayer", "input_layer"},
        {"LSTM", "lstm"},
        {"LSTMCell", "lstm_cell"},
        {"MaxPooling2D", "max_pooling2d"},
        {"Functional", "functional"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        dfd_keras_snake_case(cases[i][0], out, sizeof out);
        if (strcmp(out, cases[i][1]) != 0) fail_msg("%s -> %s, Keras says %s", cases[i][0], out, cases[i][1]);
    }
}

/* The good fixtures: the options of each, shared with the PyTorch comparison. */
static const fixture_opts good_opts[4] = {
    /* Keras 2 .h5 image model: Xception nested as "xception", layers before block10 and
     * every batch norm frozen (stage 2 of the original's training: their weights come
     * after the trainable ones), Keras <= 2.2's 1-based automatic names (conv2d_1..,
     * dense_1/dense_2: name for name they would land on the wrong layers). */
    {.nested = 1, .inner_offset = 1, .outer_offset = 1, .frozen_until = 60, .with_config = 1},
    /* Keras 3 .keras image model, flat, names offset by a model built earlier in the
     * session (conv2d_4.., dense_2, dense_3). */
    {.inner_offset = 4, .outer_offset = 2, .with_config = 1},
    /* Video: TimeDistributed(functional encoder), head dense_2 / dense_3 (the image model
     * was loaded first in that session). */
    {.outer_offset = 2, .with_config = 1},
    {.outer_offset = 2, .with_config = 1},
};
static const char *const good_files[4] = {"image.h5", "image.keras", "video.h5", "video.keras"};

static char *good_fixture(int i) {
    if (!S.good[i])
        S.good[i] = make_fixture(i < 2 ? "xception-image" : "xception-video", good_files[i], i % 2, &good_opts[i]);
    return S.good[i];
}

static void h5_image_nested_frozen(void **state) {
    (void)state;
    char *path = good_fixture(0);
    dfd_keras_file *kf;
    dfd_error e;
    assert_int_equal(dfd_keras_open(path, &kf, &e), DFD_OK);
    const dfd_keras_info *in = dfd_keras_get_info(kf);
    assert_int_equal(in->container, DFD_KERAS_H5);
    assert_string_equal(in->keras_version, "2.12.0");
    assert_int_equal(in->has_config, 1);
    assert_int_equal(in->is_video, 0);
    assert_int_equal(in->input_size, SIZE);
    assert_string_equal(in->final_activation, "sigmoid");
    assert_float_equal(in->dropout, 0.5f, 1e-6f);
    dfd_keras_close(kf);
    nn_graph *g;
    int rc = import_into(path, "xception-image", &g, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    assert_same_params(S.ref[0], g);
    check_outputs(g, 0, "Keras 2 .h5 image model");
    nn_graph_free(g);
}

/* Keras 2 save_weights files: no config, weights at the root. Flat, with TF2's 0-based
 * names offset by a model built earlier (conv2d_4.., dense_2, dense_3) and the names stored
 * as variable-length strings; and nested, partly frozen (so the nested group's weights are
 * not in layer order) with 1-based names. Without a config, nesting shows as repeated
 * weight kinds in one group, and order within a family comes from the names' numbers. */
static void h5_weights_only(void **state) {
    (void)state;
    const fixture_opts opts[2] = {
        {.inner_offset = 4, .outer_offset = 2, .root_weights = 1, .vlen_strings = 1},
        {.nested = 1, .inner_offset = 1, .outer_offset = 1, .frozen_until = 60, .root_weights = 1},
    };
    for (int i = 0; i < 2; i++) {
        char *path = make_fixture("xception-image", "weights.h5", 0, &opts[i]);
        nn_graph *g;
        dfd_error e;
        int rc = import_into(path, "xception-image", &g, &e);
        if (rc) print_message("%s\n", e.message);
        assert_int_equal(rc, DFD_OK);
        assert_same_params(S.ref[0], g);
        nn_graph_free(g);
        remove(path);
        free(path);
    }
}

/* The whole import of a .keras image model writes a model file that loads with its
 * metadata (output logit_p_real, the caller's preprocess) and computes the reference's
 * output. */
static int build_cb(void *user, const dfd_model_meta *m, nn_graph **out, dfd_error *err) {
    (void)user;
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = m->input_size;
    o.frames = m->frames;
    return dfd_arch_build(m->arch, &o, out, err);
}

static void keras3_image_import_to_model_file(void **state) {
    (void)state;
    char *path = good_fixture(1);
    char *out = tu_join(S.dir, "imported.safetensors");
    const char *pre = "{\"margin\":1.0,\"norm\":\"0_1\",\"size\":299}";
    dfd_keras_import_opts io = {.preprocess = pre};
    dfd_keras_import_report rep;
    dfd_error e;
    int rc = dfd_keras_import(path, out, &io, build_cb, NULL, &rep, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    assert_int_equal(rep.info.container, DFD_KERAS_ZIP);
    assert_string_equal(rep.info.keras_version, "3.3.3");
    assert_string_equal(rep.arch, "xception-image");
    assert_int_equal(rep.input_size, SIZE);
    nn_graph *g = NULL;
    dfd_model_meta m;
    rc = dfd_model_load(out, build_cb, NULL, &g, &m, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    assert_string_equal(m.arch, "xception-image");
    assert_int_equal(m.input_size, SIZE);
    assert_int_equal(m.frames, 0);
    assert_string_equal(m.output, "logit_p_real");
    assert_string_equal(m.task, "manipulation"); /* the original system detected face swaps */
    assert_float_equal(m.threshold, 0.5, 0);
    /* The caller's contract, its size now the network's input. */
    json_t *pj = json_loads(m.preprocess, 0, NULL), *want = json_loads(pre, 0, NULL);
    json_object_set_new(want, "size", json_integer(SIZE));
    assert_true(json_equal(pj, want));
    json_decref(pj);
    json_decref(want);
    assert_non_null(strstr(m.training_data, "P(real)"));
    assert_same_params(S.ref[0], g);
    check_outputs(g, 0, "Keras 3 .keras image model, via the model file");
    dfd_model_meta_free(&m);
    nn_graph_free(g);
    remove(out);
    free(out);
}

static void h5_video_time_distributed(void **state) {
    (void)state;
    char *path = good_fixture(2);
    dfd_keras_file *kf;
    dfd_error e;
    assert_int_equal(dfd_keras_open(path, &kf, &e), DFD_OK);
    assert_int_equal(dfd_keras_get_info(kf)->is_video, 1);
    assert_int_equal(dfd_keras_get_info(kf)->frames, FRAMES);
    assert_int_equal(dfd_keras_get_info(kf)->input_size, SIZE);
    dfd_keras_close(kf);
    nn_graph *g;
    int rc = import_into(path, "xception-video", &g, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    assert_same_params(S.ref[1], g);
    check_outputs(g, 1, "Keras 2 .h5 video model");
    nn_graph_free(g);
}

/* The Keras 3 video model, through the whole import with the architecture and frames
 * taken from the file. */
static void keras3_video(void **state) {
    (void)state;
    char *path = good_fixture(3);
    char *out = tu_join(S.dir, "video.safetensors");
    dfd_keras_import_report rep;
    dfd_error e;
    int rc = dfd_keras_import(path, out, NULL, build_cb, NULL, &rep, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    assert_string_equal(rep.arch, "xception-video");
    assert_int_equal(rep.frames, FRAMES);
    nn_graph *g = NULL;
    dfd_model_meta m;
    assert_int_equal(dfd_model_load(out, build_cb, NULL, &g, &m, &e), DFD_OK);
    assert_int_equal(m.frames, FRAMES);
    assert_string_equal(m.output, "logit_p_real");
    assert_same_params(S.ref[1], g);
    dfd_model_meta_free(&m);
    nn_graph_free(g);
    remove(out);
    free(out);
}

/* Broken fixtures, in both containers: the message names the layer. */
static void expect_refusal(int keras3, const fixture_opts *o, const char *want) {
    char *path = make_fixture("xception-image", keras3 ? "bad.keras" : "bad.h5", keras3, o);
    nn_graph *g;
    dfd_error e;
    int rc = import_into(path, "xception-image", &g, &e);
    print_message("%s: %s\n", keras3 ? ".keras" : ".h5", rc ? e.message : "(accepted)");
    assert_int_equal(rc, DFD_E_MODEL);
    if (!strstr(e.message, want)) fail_msg("'%s' does not say '%s'", e.message, want);
    remove(path);
    free(path);
}

static void refuses_architecture_mismatches_naming_the_layer(void **state) {
    (void)state;
    for (int k3 = 0; k3 <= 1; k3++) {
        fixture_opts base = {.nested = !k3, .with_config = 1, .no_data = 1};
        fixture_opts o = base;
        o.drop = "block3_sepconv1";
        expect_refusal(k3, &o, "layer 'block3_sepconv1': missing in the file");
        o = base;
        o.extra = 1;
        expect_refusal(k3, &o, "unexpected layer 'foo'");
        o = base;
        o.bad_shape = "dense/kernel";
        expect_refusal(k3, &o, "shape mismatch for 'dense/kernel'");
        o = base;
        o.bad_shape = "block7_sepconv2_bn/moving_variance";
        expect_refusal(k3, &o, "block7_sepconv2_bn/moving_variance");
        o = base;
        o.bad_act = "dense";
        expect_refusal(k3, &o, "layer 'dense': activation 'tanh'");
        /* An unnamed layer missing: the fourth shortcut convolution has no partner. */
        o = base;
        o.drop = "conv2d_3";
        expect_refusal(k3, &o, "layer 'conv2d_3': missing in the file");
    }
    /* A video model's file is not an image model. */
    fixture_opts vo = {.with_config = 1, .no_data = 1};
    char *vpath = make_fixture("xception-video", "v.h5", 0, &vo);
    nn_graph *g;
    dfd_error e;
    assert_int_equal(import_into(vpath, "xception-image", &g, &e), DFD_E_MODEL);
    print_message("video file as an image model: %s\n", e.message);
    assert_non_null(strstr(e.message, "unexpected layer 'lstm'"));
    remove(vpath);
    free(vpath);
}

static void refuses_files_that_are_not_keras_models(void **state) {
    (void)state;
    dfd_keras_file *kf;
    dfd_error e;
    char *p = tu_join(S.dir, "text.h5");
    tu_write_file(p, "hello, not a model\n", 19);
    assert_int_equal(dfd_keras_open(p, &kf, &e), DFD_E_UNSUPPORTED);
    assert_non_null(strstr(e.message, "neither an HDF5 file"));
    /* A failed import writes nothing. */
    char *out = tu_join(S.dir, "never.safetensors");
    assert_int_equal(dfd_keras_import(p, out, NULL, build_cb, NULL, NULL, &e), DFD_E_UNSUPPORTED);
    assert_int_equal(access(out, F_OK), -1);
    free(out);
    free(p);
    /* An HDF5 file with something else in it. */
    p = tu_join(S.dir, "other.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(H5Gcreate2(f, "table", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    assert_int_equal(dfd_keras_open(p, &kf, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "not a Keras model"));
    free(p);
    /* A Keras layout without a single weight (model_weights with an empty layer_names):
     * it opens with no layers, and loading names what the graph misses. The empty
     * dataset list once reached qsort with a NULL array (UBSan; tests/fuzz/fuzz_keras.c). */
    p = tu_join(S.dir, "empty.h5");
    f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t mw = H5Gcreate2(f, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t nsp = H5Screate(H5S_NULL), st = H5Tcopy(H5T_C_S1);
    H5Aclose(H5Acreate2(mw, "layer_names", st, nsp, H5P_DEFAULT, H5P_DEFAULT));
    H5Tclose(st);
    H5Sclose(nsp);
    H5Gclose(mw);
    H5Fclose(f);
    assert_int_equal(dfd_keras_open(p, &kf, &e), DFD_OK);
    assert_int_equal(dfd_keras_get_info(kf)->n_layers, 0);
    nn_graph *g = build("xception-image");
    assert_int_equal(dfd_keras_load(kf, g, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "missing in the file"));
    nn_graph_free(g);
    dfd_keras_close(kf);
    free(p);
    /* A truncated HDF5 file. */
    p = tu_join(S.dir, "short.h5");
    static const uint8_t sig[16] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n', 0, 0, 0, 0};
    tu_write_file(p, sig, sizeof sig);
    assert_int_equal(dfd_keras_open(p, &kf, &e), DFD_E_CORRUPT);
    free(p);
    /* A zip without a Keras model in it. */
    p = tu_join(S.dir, "other.keras");
    int zerr;
    zip_t *z = zip_open(p, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    zip_file_add(z, "readme.txt", zip_source_buffer(z, "hi", 2, 0), 0);
    zip_close(z);
    assert_int_equal(dfd_keras_open(p, &kf, &e), DFD_E_MODEL);
    assert_non_null(strstr(e.message, "not a Keras model"));
    free(p);
    /* A missing file. */
    p = tu_join(S.dir, "absent.h5");
    assert_int_equal(dfd_keras_open(p, &kf, &e), DFD_E_IO);
    free(p);
}

/* The independent PyTorch implementation (tests/reference/xception_torch.py) on the same
 * files and input, where Debian's python3-torch and python3-h5py are installed. */
static void matches_pytorch_reference(void **state) {
    (void)state;
    if (tu_run("/usr/bin/python3 -c 'import torch, h5py' >/dev/null 2>&1", NULL) != 0) {
        print_message("skipped: /usr/bin/python3 has no torch and h5py (apt-get install python3-torch python3-h5py)\n");
        skip();
    }
    for (int c = 0; c < 4; c++) {
        char *path = good_fixture(c);
        int video = c >= 2;
        size_t n = input_count(video);
        float *x = malloc(n * sizeof *x);
        make_input(x, n);
        char *xin = tu_join(S.dir, "input.f32");
        tu_write_file(xin, x, n * sizeof *x);
        nn_graph *g;
        dfd_error e;
        assert_int_equal(import_into(path, video ? "xception-video" : "xception-image", &g, &e), DFD_OK);
        float dfd = forward(g, NN_BACKEND_DNNL, x);
        char cmd[2048], *out = NULL;
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 '%s/tests/reference/xception_torch.py' --model '%s' --input '%s' --size %d "
                 "--frames %d",
                 tu_source_dir(), path, xin, SIZE, video ? FRAMES : 0);
        int rc = tu_run(cmd, &out);
        assert_int_equal(rc, 0);
        double torch_logit = 0, torch_p = 0;
        assert_int_equal(sscanf(out, "logit %lf p_real %lf", &torch_logit, &torch_p), 2);
        print_message("%s: dfd (oneDNN) logit %.6f, PyTorch %.6f (abs diff %.2e); P(real) %.6f\n", good_files[c],
                      (double)dfd, torch_logit, fabs(torch_logit - dfd), torch_p);
        assert_true(fabs(torch_logit - dfd) <= 1e-4);
        free(out);
        nn_graph_free(g);
        free(xin);
        free(x);
    }
}

/* `dfd import keras` then `dfd scan --model-image` on examples/astronaut.png: each face's
 * P(fake) is what the reference graph (weights set directly, plain-C backend) gives on the
 * same crop, cut here by the library with the contract stored in the imported file, which
 * must be the original's (no margin, no roll alignment, values / 255). scan averages a
 * crop and its mirror image (flip test-time augmentation), so the reference does too; P(fake)
 * = 1 - sigmoid(logit), the original's output being P(real). */
static double p_fake_of(nn_graph *g, nn_backend be, nn_precision prec, const float *x) {
    nn_exec_opts o;
    nn_exec_opts_default(&o);
    o.backend = be;
    o.precision = prec;
    o.max_batch = 1;
    nn_exec *ex = NULL;
    dfd_error e;
    assert_int_equal(nn_exec_create(g, &o, &ex, &e), DFD_OK);
    assert_int_equal(nn_forward(ex, x, 1, &e), DFD_OK);
    size_t n;
    double l = nn_output(ex, 0, &n)[0];
    nn_exec_free(ex);
    return 1.0 - 1.0 / (1.0 + exp(-l));
}

static void scan_reports_the_reference_p_fake(void **state) {
    (void)state;
    const char *bin = getenv("DFD_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        print_message("skipped: the dfd binary is not built (DFD_BIN)\n");
        skip();
    }
    char *models = tu_join(tu_source_dir(), "models/registry"), found[1024];
    if (dfd_face_models_dir(models, found, sizeof found) != DFD_OK) {
        print_message("skipped: no face detector in %s (run setup.sh)\n", models);
        free(models);
        skip();
    }
    char *path = good_fixture(0);
    char *out = tu_join(S.dir, "scan-model.safetensors");
    char *photo = tu_join(tu_source_dir(), "examples/astronaut.png");
    char cmd[4096], *text = NULL;
    snprintf(cmd, sizeof cmd, "'%s' import keras '%s' '%s' >/dev/null", bin, path, out);
    assert_int_equal(tu_run(cmd, NULL), 0);
    snprintf(cmd, sizeof cmd, "DFD_MODELS_DIR='%s' '%s' scan --json -q --model-image '%s' '%s'", models, bin, out,
             photo);
    assert_int_equal(tu_run(cmd, &text), 0);
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);
    if (!doc) fail_msg("scan printed no JSON: %s\n%s", je.text, text);
    json_t *jfaces = json_object_get(json_array_get(json_object_get(doc, "results"), 0), "faces");
    assert_true(json_array_size(jfaces) >= 1);

    /* The same faces and crops, by the library. */
    dfd_model_meta meta;
    nn_graph *g = NULL;
    dfd_error e;
    assert_int_equal(dfd_model_load(out, build_cb, NULL, &g, &meta, &e), DFD_OK);
    nn_graph *imp = g;
    int bf16 = nn_cpu_has_bf16();
    dfd_crop_contract cc;
    dfd_crop_contract_default(&cc, meta.input_size);
    assert_int_equal(dfd_crop_contract_from_json(meta.preprocess, &cc, &e), DFD_OK);
    cc.size = meta.input_size;
    assert_int_equal(cc.size, SIZE);
    assert_float_equal(cc.margin, 1.0f, 0);
    assert_float_equal(cc.shift_y, 0.0f, 0);
    assert_int_equal(cc.align_roll, 0);
    assert_int_equal(cc.norm, DFD_NORM_0_1);
    dfd_image img = {0};
    assert_int_equal(dfd_image_load(photo, NULL, &img, NULL, &e), DFD_OK);
    dfd_face_opts fo;
    dfd_face_opts_default(&fo);
    fo.models_dir = models; /* otherwise the detector's defaults, as scan's pipeline */
    dfd_face_detector *det = NULL;
    assert_int_equal(dfd_face_detector_create(&fo, &det, &e), DFD_OK);
    dfd_face *faces = NULL;
    int n = 0;
    assert_int_equal(dfd_face_detect(det, &img, &faces, &n, &e), DFD_OK);
    assert_int_equal(n, (int)json_array_size(jfaces));
    const int S_ = SIZE;
    float *x = malloc((size_t)S_ * S_ * 3 * sizeof *x), *xm = malloc((size_t)S_ * S_ * 3 * sizeof *xm);
    for (int i = 0; i < n; i++) {
        dfd_image crop = {0};
        assert_int_equal(dfd_face_crop(&img, &faces[i], &cc, &crop, &e), DFD_OK);
        assert_int_equal(crop.w, S_);
        for (int yy = 0; yy < S_; yy++)
            for (int xx = 0; xx < S_; xx++)
                for (int c = 0; c < 3; c++) {
                    float v = crop.rgb[((size_t)yy * S_ + xx) * 3 + c] / 255.0f;
                    x[((size_t)yy * S_ + xx) * 3 + c] = v;
                    xm[((size_t)yy * S_ + (S_ - 1 - xx)) * 3 + c] = v;
                }
        double want = 0.5 * (p_fake_of(S.ref[0], NN_BACKEND_REF, NN_PREC_F32, x) +
                             p_fake_of(S.ref[0], NN_BACKEND_REF, NN_PREC_F32, xm));
        double got = json_number_value(json_object_get(json_array_get(jfaces, (size_t)i), "p_fake"));
        print_message("face %d: dfd scan P(fake) %.6f, reference on the same crop %.6f (abs diff %.2e)\n", i, got,
                      want, fabs(got - want));
        if (bf16) {
            /* scan's classifier runs oneDNN in bf16 here (nn_exec's automatic precision on a CPU
             * with AMX / avx512_bf16): the same crop through bf16 must give scan's value, and
             * the fp32 reference within bf16's precision (8 mantissa bits, ~3 digits). */
            double mine = 0.5 * (p_fake_of(imp, NN_BACKEND_DNNL, NN_PREC_BF16, x) +
                                 p_fake_of(imp, NN_BACKEND_DNNL, NN_PREC_BF16, xm));
            print_message("face %d: bf16 here: the same crop through oneDNN bf16 %.6f (abs diff to scan %.2e)\n", i,
                          mine, fabs(got - mine));
            assert_true(fabs(got - mine) <= 2e-6); /* scan prints 6 decimals */
            assert_true(fabs(got - want) <= 2e-2);
        } else {
            assert_true(fabs(got - want) <= 1e-4);
        }
        dfd_image_free(&crop);
    }
    free(x);
    free(xm);
    nn_graph_free(imp);
    free(faces);
    dfd_face_detector_free(det);
    dfd_image_free(&img);
    dfd_model_meta_free(&meta);
    json_decref(doc);
    free(text);
    free(photo);
    remove(out);
    free(out);
    free(models);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(snake_case_matches_keras),
        cmocka_unit_test(h5_image_nested_frozen),
        cmocka_unit_test(h5_weights_only),
        cmocka_unit_test(keras3_image_import_to_model_file),
        cmocka_unit_test(h5_video_time_distributed),
        cmocka_unit_test(keras3_video),
        cmocka_unit_test(refuses_architecture_mismatches_naming_the_layer),
        cmocka_unit_test(refuses_files_that_are_not_keras_models),
        cmocka_unit_test(matches_pytorch_reference),
        cmocka_unit_test(scan_reports_the_reference_p_fake),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
