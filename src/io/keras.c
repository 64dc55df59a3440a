/*
 * keras.c — Keras .h5 / .keras weights into an nn graph (see keras.h and
 * docs/keras-import.md).
 *
 * Opening a file turns it into one flat list of "file layers": every leaf layer that
 * holds weights, with its name, its class (snake_case, as Keras's own group names spell
 * it), its config object, its position in the model's topology, and its weight
 * datasets in the layer's weight order. Nested models and wrappers are flattened
 * (their inner layers take the wrapper's place in the order). Loading then pairs file
 * layers with the graph's layers (parameter name prefixes), checks everything, and
 * only then reads values.
 *
 * Why pairing is by name for some layers and by order for others: Keras names a layer
 * the user did not name after a per-session counter of its class ("conv2d", "conv2d_1",
 * ...; 1-based "conv2d_1" in Keras <= 2.2; "dense_2" when the session had built another
 * model first), so those numbers say nothing stable. Their order of appearance within
 * the class does not change: the k-th unnamed conv2d of the file is the k-th of dfd's
 * Xception (the shortcut of block 2, 3, 4, 13), the k-th dense the k-th of the head.
 * "Order of appearance" is the topological order of the config (model.layers, nested
 * models in place) when the file has a config; a weights-only .h5 has none, and there
 * the auto-name counter itself gives the order (Keras assigns it at creation, and both
 * architectures are built front to back). Layers Keras applications name explicitly
 * (block1_conv1 ...) pair by name.
 */
#include <ctype.h>
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "io/keras.h"

#define KW_MAX_LAYERS 20000          /* layers holding weights (Xception video: ~160) */
#define KW_MAX_DATASETS 100000       /* datasets under the weights root */
#define KW_MAX_W 16                  /* weights of one layer (Keras layers here have <= 4) */
#define KW_MAX_NAME 256              /* a layer or weight name */
#define KW_MAX_PATH 1024             /* an HDF5 path */
#define KW_MAX_STRINGS 100000        /* entries of one string-array attribute */
#define KW_MAX_CONFIG (64u << 20)    /* model_config / config.json */
#define KW_MAX_SMALL (1u << 20)      /* metadata.json, version strings */
#define KW_MAX_WEIGHTS_FILE (4ull << 30) /* model.weights.h5 inside a .keras */
#define KW_MAX_DEPTH 16              /* nesting of models and wrappers */

/* ---- HDF5 error printing ----------------------------------------------------------
 * HDF5 prints its error stack to stderr by default; library code must not print. Each
 * public entry point silences it and restores the caller's handler on the way out. */
typedef struct h5_quiet {
    H5E_auto2_t fn;
    void *data;
} h5_quiet;

static void quiet_on(h5_quiet *q) {
    q->fn = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_off(const h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->fn, q->data); }

/* ---- Structures ------------------------------------------------------------------- */

typedef struct kw_weight {
    char kind[48];              /* "kernel", "moving_mean", ... from the name (.h5); "" when
                                 * the file numbers variables (.keras) */
    char *path;                 /* HDF5 path from the file's root group */
    int ndim;
    int dims[NN_MAX_DIMS];
    int is_float;
} kw_weight;

typedef struct kw_layer {
    char name[KW_MAX_NAME];
    char cls[48];               /* snake_case class, from the config or inferred from weights */
    json_t *cfg;                /* the layer's "config" object (borrowed), or NULL */
    int order;                  /* position in the topology */
    int n_w;
    kw_weight w[KW_MAX_W];
    int match;                  /* index of the paired graph layer, -1 */
} kw_layer;

typedef struct kw_dataset {
    char *path;
    int used;
    int ignored;                /* a Keras 3 random-seed state, not a weight */
} kw_dataset;

struct dfd_keras_file {
    char *path;
    hid_t h5;
    json_t *config;             /* the serialised model, or NULL */
    char root[64];              /* group holding the weights: "model_weights", "", "layers" */
    kw_layer *layers;
    int n_layers, cap_layers;
    kw_dataset *sets;           /* every dataset under root, sorted by path */
    int n_sets, cap_sets;
    int next_order;
    dfd_keras_info info;
};

/* ---- Small helpers ---------------------------------------------------------------- */

static int str_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

void dfd_keras_snake_case(const char *cls, char *out, size_t cap) {
    /* Python: re.sub(r"\W+", "", s); re.sub("(.)([A-Z][a-z]+)", r"\1_\2", s);
     * re.sub("([a-z])([A-Z])", r"\1_\2", s).lower(). Each re.sub scans left to right
     * and resumes after a match, which the loops below reproduce. */
    char a[KW_MAX_NAME], b[2 * KW_MAX_NAME], c[4 * KW_MAX_NAME];
    size_t n = 0;
    for (const char *p = cls; *p && n + 1 < sizeof a; p++)
        if (isalnum((unsigned char)*p) || *p == '_') a[n++] = *p;
    a[n] = 0;
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        if (i + 2 < n && isupper((unsigned char)a[i + 1]) && islower((unsigned char)a[i + 2])) {
            size_t j = i + 2;
            while (j < n && islower((unsigned char)a[j])) j++;
            b[m++] = a[i];
            b[m++] = '_';
            for (size_t k = i + 1; k < j; k++) b[m++] = a[k];
            i = j;
        } else {
            b[m++] = a[i++];
        }
    }
    b[m] = 0;
    size_t r = 0;
    for (size_t i = 0; i < m;) {
        if (i + 1 < m && islower((unsigned char)b[i]) && isupper((unsigned char)b[i + 1])) {
            c[r++] = b[i];
            c[r++] = '_';
            c[r++] = b[i + 1];
            i += 2;
        } else {
            c[r++] = b[i++];
        }
    }
    c[r] = 0;
    for (size_t i = 0; i < r; i++) c[i] = (char)tolower((unsigned char)c[i]);
    snprintf(out, cap, "%s", c);
}

/* Families of layers Keras names automatically, in the architectures dfd imports. */
static const char *const auto_families[] = {"conv2d", "batch_normalization", "dense", "lstm", NULL};

/* For "conv2d_3" sets family to "conv2d" and returns 3 ("conv2d" gives 0); -1 when the
 * name is not an automatic one. */
static int auto_name(const char *name, const char **family) {
    for (int i = 0; auto_families[i]; i++) {
        size_t n = strlen(auto_families[i]);
        if (strncmp(name, auto_families[i], n) != 0) continue;
        const char *rest = name + n;
        if (*rest == 0) {
            *family = auto_families[i];
            return 0;
        }
        if (*rest != '_' || !rest[1] || strlen(rest + 1) > 6) continue;
        int ok = 1;
        for (const char *q = rest + 1; *q; q++) ok &= isdigit((unsigned char)*q) != 0;
        if (!ok) continue;
        *family = auto_families[i];
        return atoi(rest + 1);
    }
    return -1;
}

static void dims_text(const int *d, int n, char *buf, size_t cap) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && len < cap; i++) len += (size_t)snprintf(buf + len, cap - len, "%s%d", i ? "," : "", d[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* The weight's kind from its Keras 2 name: "block1_conv1/kernel:0" -> "kernel". */
static void weight_kind(const char *wname, char *kind, size_t cap) {
    const char *slash = strrchr(wname, '/');
    const char *k = slash ? slash + 1 : wname;
    snprintf(kind, cap, "%s", k);
    char *colon = strrchr(kind, ':');
    if (colon) *colon = 0;
}

/* The layer a nested model's weight belongs to: the path component before the kind,
 * skipping an RNN cell ("lstm/lstm_cell/kernel:0" -> "lstm"). NULL-free: writes "" when
 * the name has no such component. */
static void weight_owner(const char *wname, char *owner, size_t cap) {
    char tmp[KW_MAX_PATH];
    snprintf(tmp, sizeof tmp, "%s", wname);
    char *comps[32], *save = NULL;
    int n = 0;
    for (char *tok = strtok_r(tmp, "/", &save); tok && n < 32; tok = strtok_r(NULL, "/", &save)) comps[n++] = tok;
    int i = n - 2;
    while (i > 0 && (str_ends_with(comps[i], "_cell") || strstr(comps[i], "_cell_"))) i--;
    snprintf(owner, cap, "%s", i >= 0 ? comps[i] : "");
}

/* A class from the weights a layer holds (files without a config). */
static const char *infer_class(const char *const *kinds, const int *ndims, int n) {
    int has_k = -1, has_dw = 0, has_pw = 0, has_rk = 0, has_bn = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(kinds[i], "kernel") == 0) has_k = ndims[i];
        if (strcmp(kinds[i], "depthwise_kernel") == 0) has_dw = 1;
        if (strcmp(kinds[i], "pointwise_kernel") == 0) has_pw = 1;
        if (strcmp(kinds[i], "recurrent_kernel") == 0) has_rk = 1;
        if (strcmp(kinds[i], "moving_mean") == 0 || strcmp(kinds[i], "gamma") == 0) has_bn = 1;
    }
    if (has_rk) return "lstm";
    if (has_dw && has_pw) return "separable_conv2d";
    if (has_dw) return "depthwise_conv2d";
    if (has_bn) return "batch_normalization";
    if (has_k == 4) return "conv2d";
    if (has_k == 2) return "dense";
    return "";
}

/* ---- HDF5 access ------------------------------------------------------------------ */

/* An HDF5 object path a/b (a alone when b is empty, b alone when a is); DFD_E_ARG when
 * it does not fit in cap bytes: a path cut short would name another object. */
static int join_path(char *out, size_t cap, const char *a, const char *b, dfd_error *err) {
    if (!a || !*a) a = "";
    if (!b || !*b) b = "";
    if (!*a || !*b) {
        const char *one = *a ? a : b;
        if (strlen(one) >= cap) return dfd_fail(err, DFD_E_ARG, "Keras file: object path too long: '%s'", one);
        memcpy(out, one, strlen(one) + 1);
        return DFD_OK;
    }
    return dfd_path_join(out, cap, a, b, err);
}

/* The object type at path (relative to loc), checking each component exists first
 * (H5Oopen fails noisily on a missing middle component). H5I_BADID when absent. */
static H5I_type_t h5_type_at(hid_t loc, const char *path) {
    if (!path || !*path) return H5Iget_type(loc) == H5I_FILE ? H5I_GROUP : H5Iget_type(loc);
    char buf[KW_MAX_PATH];
    if (strlen(path) >= sizeof buf) return H5I_BADID;
    for (size_t i = 0;; i++) {
        if (path[i] == '/' || path[i] == 0) {
            memcpy(buf, path, i);
            buf[i] = 0;
            if (i > 0 && H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return H5I_BADID;
            if (path[i] == 0) break;
        }
    }
    hid_t o = H5Oopen(loc, path, H5P_DEFAULT);
    if (o < 0) return H5I_BADID;
    H5I_type_t t = H5Iget_type(o);
    H5Oclose(o);
    return t;
}

typedef struct str_list {
    char **s;
    int n, cap;
} str_list;

static void str_list_free(str_list *l) {
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

static int str_list_push(str_list *l, const char *s, size_t len, dfd_error *err) {
    if (l->n >= KW_MAX_STRINGS) return dfd_fail(err, DFD_E_LIMIT, "Keras file: over %d names in one list", KW_MAX_STRINGS);
    char **ns = dfd_grow(l->s, &l->cap, l->n + 1, sizeof *ns, 64);
    if (!ns) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    l->s = ns;
    char *c = malloc(len + 1);
    if (!c) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    memcpy(c, s, len);
    c[len] = 0;
    l->s[l->n++] = c;
    return DFD_OK;
}

/* Appends the strings of one attribute (fixed- or variable-length, scalar or array) to
 * out. An empty or null-space attribute (Keras writes one for weightless layers) adds
 * nothing whatever its type. */
static int attr_strings(hid_t obj, const char *name, size_t max_each, str_list *out, dfd_error *err) {
    int rc = DFD_OK;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return dfd_fail(err, DFD_E_CORRUPT, "Keras file: attribute '%s' cannot be read", name);
    hid_t t = H5Aget_type(a), s = H5Aget_space(a), mt = -1;
    hssize_t n = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    if (t < 0 || s < 0 || n < 0) {
        rc = dfd_fail(err, DFD_E_CORRUPT, "Keras file: attribute '%s' cannot be read", name);
        goto done;
    }
    if (n == 0 || H5Sget_simple_extent_type(s) == H5S_NULL) goto done;
    if (H5Tget_class(t) != H5T_STRING) {
        rc = dfd_fail(err, DFD_E_MODEL, "Keras file: attribute '%s' is not text", name);
        goto done;
    }
    if (n > KW_MAX_STRINGS) {
        rc = dfd_fail(err, DFD_E_LIMIT, "Keras file: attribute '%s' has %lld entries", name, (long long)n);
        goto done;
    }
    if (H5Tis_variable_str(t) > 0) {
        char **v = calloc((size_t)n, sizeof *v);
        mt = H5Tcopy(H5T_C_S1);
        if (!v || mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0) {
            free(v);
            rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
            goto done;
        }
        if (H5Aread(a, mt, v) < 0) {
            free(v);
            rc = dfd_fail(err, DFD_E_CORRUPT, "Keras file: attribute '%s' cannot be read", name);
            goto done;
        }
        for (hssize_t i = 0; i < n; i++) {
            size_t len = v[i] ? strnlen(v[i], max_each + 1) : 0;
            if (rc == DFD_OK && len > max_each)
                rc = dfd_fail(err, DFD_E_LIMIT, "Keras file: attribute '%s' holds a string over %zu bytes", name,
                              max_each);
            if (rc == DFD_OK) rc = str_list_push(out, v[i] ? v[i] : "", len, err);
            if (v[i]) H5free_memory(v[i]);
        }
        free(v);
    } else {
        size_t sz = H5Tget_size(t), total;
        if (sz == 0 || sz > max_each || dfd_mul_size((size_t)n, sz, &total) || total > KW_MAX_CONFIG) {
            rc = dfd_fail(err, DFD_E_LIMIT, "Keras file: attribute '%s' has strings of %zu bytes", name, sz);
            goto done;
        }
        char *buf = malloc(total + 1);
        mt = H5Tcopy(H5T_C_S1);
        if (!buf || mt < 0 || H5Tset_size(mt, sz) < 0 || H5Tset_strpad(mt, H5T_STR_NULLPAD) < 0) {
            free(buf);
            rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
            goto done;
        }
        if (H5Aread(a, mt, buf) < 0) {
            free(buf);
            rc = dfd_fail(err, DFD_E_CORRUPT, "Keras file: attribute '%s' cannot be read", name);
            goto done;
        }
        for (hssize_t i = 0; i < n && rc == DFD_OK; i++) {
            const char *e = buf + (size_t)i * sz;
            const char *z = memchr(e, 0, sz);
            rc = str_list_push(out, e, z ? (size_t)(z - e) : sz, err);
        }
        free(buf);
    }
done:
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    H5Aclose(a);
    return rc;
}

/* Keras's load_attributes_from_hdf5_group: the attribute itself, or, when it was too big
 * for one HDF5 object header, its chunks name0, name1, ... *present tells whether any
 * was there. */
static int attr_string_list(hid_t obj, const char *name, size_t max_each, str_list *out, int *present,
                            dfd_error *err) {
    *present = 0;
    if (H5Aexists(obj, name) > 0) {
        *present = 1;
        return attr_strings(obj, name, max_each, out, err);
    }
    char chunk[KW_MAX_NAME + 16];
    for (int i = 0; i < 100000; i++) {
        snprintf(chunk, sizeof chunk, "%s%d", name, i);
        if (H5Aexists(obj, chunk) <= 0) break;
        *present = 1;
        int rc = attr_strings(obj, chunk, max_each, out, err);
        if (rc) return rc;
    }
    return DFD_OK;
}

/* One text attribute (e.g. model_config) as a malloc'ed string, NULL when absent. */
static int attr_text(hid_t obj, const char *name, size_t max, char **out, dfd_error *err) {
    *out = NULL;
    if (H5Aexists(obj, name) <= 0) return DFD_OK;
    str_list l = {0};
    int rc = attr_strings(obj, name, max, &l, err);
    if (rc == DFD_OK && l.n >= 1) {
        *out = l.s[0];
        l.s[0] = NULL;
    }
    str_list_free(&l);
    return rc;
}

/* Every dataset under the weights root, so that loading can tell which were used. Only
 * hard links: a Keras file has no soft or external links, and following an external one
 * would open another file. */
typedef struct visit_ctx {
    dfd_keras_file *f;
    dfd_error *err;
    int rc;
} visit_ctx;

static herr_t visit_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    visit_ctx *v = data;
    dfd_keras_file *f = v->f;
    if (info->type != H5L_TYPE_HARD) {
        v->rc = dfd_fail(v->err, DFD_E_MODEL, "Keras file: '%s' is a soft or external link (Keras writes none)", name);
        return -1;
    }
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) {
        v->rc = dfd_fail(v->err, DFD_E_CORRUPT, "Keras file: object '%s' cannot be opened", name);
        return -1;
    }
    H5I_type_t t = H5Iget_type(o);
    H5Oclose(o);
    if (t != H5I_DATASET) return 0;
    if (f->n_sets >= KW_MAX_DATASETS) {
        v->rc = dfd_fail(v->err, DFD_E_LIMIT, "Keras file: over %d weight datasets", KW_MAX_DATASETS);
        return -1;
    }
    if (f->n_sets == f->cap_sets) {
        int nc = f->cap_sets ? f->cap_sets * 2 : 256;
        kw_dataset *ns = realloc(f->sets, (size_t)nc * sizeof *ns);
        if (!ns) {
            v->rc = dfd_fail(v->err, DFD_E_NOMEM, "out of memory");
            return -1;
        }
        f->sets = ns;
        f->cap_sets = nc;
    }
    char full[KW_MAX_PATH];
    int jrc = join_path(full, sizeof full, f->root, name, v->err);
    if (jrc) {
        v->rc = jrc;
        return -1;
    }
    f->sets[f->n_sets].path = strdup(full);
    f->sets[f->n_sets].used = 0;
    f->sets[f->n_sets].ignored = 0;
    if (!f->sets[f->n_sets].path) {
        v->rc = dfd_fail(v->err, DFD_E_NOMEM, "out of memory");
        return -1;
    }
    f->n_sets++;
    return 0;
}

static int cmp_set(const void *a, const void *b) {
    return strcmp(((const kw_dataset *)a)->path, ((const kw_dataset *)b)->path);
}

static kw_dataset *find_set(dfd_keras_file *f, const char *path) {
    kw_dataset key = {(char *)path, 0, 0};
    if (f->n_sets == 0) return NULL; /* sets is NULL then, which bsearch must not get */
    return bsearch(&key, f->sets, (size_t)f->n_sets, sizeof *f->sets, cmp_set);
}

static int list_datasets(dfd_keras_file *f, dfd_error *err) {
    hid_t g = f->root[0] ? H5Gopen2(f->h5, f->root, H5P_DEFAULT) : H5Gopen2(f->h5, "/", H5P_DEFAULT);
    if (g < 0) return dfd_fail(err, DFD_E_CORRUPT, "Keras file: group '%s' cannot be opened", f->root);
    visit_ctx v = {f, err, DFD_OK};
    herr_t r = H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, visit_cb, &v);
    H5Gclose(g);
    if (v.rc) return v.rc;
    if (r < 0) return dfd_fail(err, DFD_E_CORRUPT, "Keras file: its groups cannot be listed");
    /* A file without datasets leaves sets NULL; qsort's pointer must not be (UB even for
     * zero elements: found by tests/fuzz/fuzz_keras.c). */
    if (f->n_sets > 1) qsort(f->sets, (size_t)f->n_sets, sizeof *f->sets, cmp_set);
    return DFD_OK;
}

/* ---- File layers -------------------------------------------------------------------- */

static kw_layer *new_layer(dfd_keras_file *f, const char *name, dfd_error *err) {
    if (strlen(name) >= KW_MAX_NAME) {
        dfd_fail(err, DFD_E_LIMIT, "Keras file: a layer name is over %d bytes", KW_MAX_NAME - 1);
        return NULL;
    }
    if (f->n_layers >= KW_MAX_LAYERS) {
        dfd_fail(err, DFD_E_LIMIT, "Keras file: over %d layers with weights", KW_MAX_LAYERS);
        return NULL;
    }
    if (f->n_layers == f->cap_layers) {
        int nc = f->cap_layers ? f->cap_layers * 2 : 64;
        kw_layer *nl = realloc(f->layers, (size_t)nc * sizeof *nl);
        if (!nl) {
            dfd_fail(err, DFD_E_NOMEM, "out of memory");
            return NULL;
        }
        f->layers = nl;
        f->cap_layers = nc;
    }
    kw_layer *l = &f->layers[f->n_layers++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->match = -1;
    l->order = f->next_order++;
    return l;
}

/* Adds a weight dataset to a layer, reading its type and dimensions (not its values). */
static int add_weight(dfd_keras_file *f, kw_layer *l, const char *kind, const char *path, dfd_error *err) {
    if (l->n_w >= KW_MAX_W)
        return dfd_fail(err, DFD_E_MODEL, "Keras file: layer '%s' has over %d weights", l->name, KW_MAX_W);
    if (strlen(path) >= KW_MAX_PATH) return dfd_fail(err, DFD_E_LIMIT, "Keras file: a weight path is too long");
    kw_weight *w = &l->w[l->n_w];
    memset(w, 0, sizeof *w);
    snprintf(w->kind, sizeof w->kind, "%s", kind);
    hid_t d = H5Dopen2(f->h5, path, H5P_DEFAULT);
    if (d < 0) return dfd_fail(err, DFD_E_MODEL, "Keras file: weight '%s' of layer '%s' is not in the file", path, l->name);
    hid_t t = H5Dget_type(d), s = H5Dget_space(d);
    int nd = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    hsize_t dims[32];
    int rc = DFD_OK;
    if (t < 0 || s < 0 || nd < 0 || nd > 32 || H5Sget_simple_extent_dims(s, dims, NULL) < 0) {
        rc = dfd_fail(err, DFD_E_CORRUPT, "Keras file: weight '%s' cannot be read", path);
    } else if (nd > NN_MAX_DIMS) {
        rc = dfd_fail(err, DFD_E_MODEL, "Keras file: weight '%s' has %d dimensions", path, nd);
    } else {
        w->ndim = nd;
        for (int i = 0; i < nd && rc == DFD_OK; i++) {
            if (dims[i] > (1u << 30))
                rc = dfd_fail(err, DFD_E_LIMIT, "Keras file: weight '%s' has a dimension of %llu", path,
                              (unsigned long long)dims[i]);
            else
                w->dims[i] = (int)dims[i];
        }
        w->is_float = H5Tget_class(t) == H5T_FLOAT;
    }
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    H5Dclose(d);
    if (rc) return rc;
    w->path = strdup(path);
    if (!w->path) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    l->n_w++;
    return DFD_OK;
}

static void set_class_from_cfg(kw_layer *l, json_t *node) {
    const char *cls = json_string_value(json_object_get(node, "class_name"));
    if (cls) dfd_keras_snake_case(cls, l->cls, sizeof l->cls);
    json_t *c = json_object_get(node, "config");
    l->cfg = json_is_object(c) ? c : NULL;
}

static void infer_missing_class(kw_layer *l) {
    if (l->cls[0]) return;
    const char *kinds[KW_MAX_W];
    int nd[KW_MAX_W];
    for (int i = 0; i < l->n_w; i++) kinds[i] = l->w[i].kind, nd[i] = l->w[i].ndim;
    snprintf(l->cls, sizeof l->cls, "%s", infer_class(kinds, nd, l->n_w));
}

/* ---- Config access ------------------------------------------------------------------
 * A serialised layer is {"class_name": C, "config": {"name": N, ...}} (Keras 3 adds
 * "module" and "name"); a model has config.layers (a list of layers), a wrapper
 * config.layer (one layer). */

static json_t *cfg_of(json_t *node) {
    json_t *c = json_object_get(node, "config");
    return json_is_object(c) ? c : NULL;
}

static const char *cfg_name(json_t *node) {
    const char *n = json_string_value(json_object_get(cfg_of(node), "name"));
    return n ? n : json_string_value(json_object_get(node, "name"));
}

static json_t *cfg_layers(json_t *node) {
    json_t *c = json_object_get(node, "config");
    if (json_is_array(c)) return c; /* Keras <= 2.2 Sequential: the config is the layer list */
    json_t *l = json_object_get(c, "layers");
    return json_is_array(l) ? l : NULL;
}

static json_t *cfg_wrapped(json_t *node) {
    json_t *l = json_object_get(cfg_of(node), "layer");
    return json_is_object(l) ? l : NULL;
}

static json_t *cfg_child_named(json_t *container, const char *name) {
    json_t *ls = cfg_layers(container);
    for (size_t i = 0; ls && i < json_array_size(ls); i++) {
        json_t *c = json_array_get(ls, i);
        const char *n = cfg_name(c);
        if (n && strcmp(n, name) == 0) return c;
    }
    return NULL;
}

/* Leaf layers of a config subtree in topological order (depth first). */
typedef struct leaf_list {
    json_t *node[4096];
    int n;
} leaf_list;

static void cfg_leaves(json_t *node, int depth, leaf_list *out) {
    if (depth > KW_MAX_DEPTH || !json_is_object(node)) return;
    json_t *ls = cfg_layers(node), *w = cfg_wrapped(node);
    if (ls) {
        for (size_t i = 0; i < json_array_size(ls); i++) cfg_leaves(json_array_get(ls, i), depth + 1, out);
    } else if (w) {
        cfg_leaves(w, depth + 1, out);
    } else if (out->n < (int)(sizeof out->node / sizeof out->node[0])) {
        out->node[out->n++] = node;
    }
}

/* Input side and frames from the first layer that declares its batch shape. */
static void cfg_input_shape(json_t *model, dfd_keras_info *info) {
    leaf_list *ll = calloc(1, sizeof *ll);
    if (!ll) return;
    cfg_leaves(model, 0, ll);
    for (int i = 0; i < ll->n; i++) {
        json_t *c = cfg_of(ll->node[i]);
        json_t *shape = json_object_get(c, "batch_shape");
        if (!json_is_array(shape)) shape = json_object_get(c, "batch_input_shape");
        if (!json_is_array(shape)) continue;
        size_t n = json_array_size(shape);
        if (n == 5) {
            info->is_video = 1;
            json_int_t t = json_integer_value(json_array_get(shape, 1));
            if (t > 0 && t <= 100000) info->frames = (int)t;
        }
        if (n == 4 || n == 5) {
            json_int_t h = json_integer_value(json_array_get(shape, n - 3));
            json_int_t w = json_integer_value(json_array_get(shape, n - 2));
            if (h > 0 && h == w && h <= 100000) info->input_size = (int)h;
        }
        break;
    }
    for (int i = 0; i < ll->n; i++) {
        const char *cls = json_string_value(json_object_get(ll->node[i], "class_name"));
        if (cls && strcmp(cls, "Dropout") == 0) {
            json_t *r = json_object_get(cfg_of(ll->node[i]), "rate");
            if (json_is_number(r)) info->dropout = (float)json_number_value(r);
            break;
        }
    }
    free(ll);
}

/* ---- Keras 2 (.h5) ------------------------------------------------------------------ */

static int kinds_repeat(const str_list *wn) {
    for (int i = 0; i < wn->n; i++)
        for (int j = i + 1; j < wn->n; j++) {
            char a[KW_MAX_NAME], b[KW_MAX_NAME];
            weight_kind(wn->s[i], a, sizeof a);
            weight_kind(wn->s[j], b, sizeof b);
            if (strcmp(a, b) == 0) return 1;
        }
    return 0;
}

/* One top-level layer group: a plain layer, or a nested model/wrapper whose weights are
 * split among its inner layers by the component before the weight's kind. */
static int h5_layer_group(dfd_keras_file *f, const char *lname, json_t *top, dfd_error *err) {
    char gpath[KW_MAX_PATH];
    int jrc = join_path(gpath, sizeof gpath, f->root, lname, err);
    if (jrc) return jrc;
    if (h5_type_at(f->h5, gpath) != H5I_GROUP)
        return dfd_fail(err, DFD_E_MODEL, "Keras file: layer '%s' is listed in layer_names but has no group", lname);
    hid_t g = H5Gopen2(f->h5, gpath, H5P_DEFAULT);
    if (g < 0) return dfd_fail(err, DFD_E_CORRUPT, "Keras file: group '%s' cannot be opened", gpath);
    str_list wn = {0};
    int present, rc = attr_string_list(g, "weight_names", KW_MAX_PATH - 64, &wn, &present, err);
    H5Gclose(g);
    json_t *node = top ? cfg_child_named(top, lname) : NULL;
    int nested = node ? (cfg_layers(node) || cfg_wrapped(node)) : kinds_repeat(&wn);
    leaf_list *inner = NULL;
    int first_inner = f->n_layers, base_order = f->next_order;
    if (rc == DFD_OK && nested && node) {
        /* Inner layers take their topological positions, weights or not. */
        inner = calloc(1, sizeof *inner);
        if (!inner) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        else {
            cfg_leaves(node, 0, inner);
            f->next_order += inner->n;
        }
    }
    for (int i = 0; rc == DFD_OK && i < wn.n; i++) {
        char kind[48], path[KW_MAX_PATH];
        weight_kind(wn.s[i], kind, sizeof kind);
        if ((rc = join_path(path, sizeof path, gpath, wn.s[i], err))) break;
        kw_layer *l = NULL;
        if (!nested) {
            if (i == 0) {
                l = new_layer(f, lname, err);
                if (!l) {
                    rc = err ? err->code : DFD_E_NOMEM;
                    break;
                }
                if (node) set_class_from_cfg(l, node);
            }
            l = &f->layers[f->n_layers - 1];
        } else {
            char owner[KW_MAX_NAME];
            weight_owner(wn.s[i], owner, sizeof owner);
            if (!owner[0]) {
                rc = dfd_fail(err, DFD_E_MODEL, "Keras file: weight '%s' of nested layer '%s' names no inner layer",
                              wn.s[i], lname);
                break;
            }
            for (int k = first_inner; k < f->n_layers && !l; k++)
                if (strcmp(f->layers[k].name, owner) == 0) l = &f->layers[k];
            if (!l) {
                l = new_layer(f, owner, err);
                if (!l) {
                    rc = err ? err->code : DFD_E_NOMEM;
                    break;
                }
                for (int k = 0; inner && k < inner->n; k++) {
                    const char *n = cfg_name(inner->node[k]);
                    if (n && strcmp(n, owner) == 0) {
                        set_class_from_cfg(l, inner->node[k]);
                        l->order = base_order + k;
                        f->next_order--; /* new_layer took a fresh position it does not need */
                        break;
                    }
                }
            }
        }
        rc = add_weight(f, l, kind, path, err);
    }
    free(inner);
    str_list_free(&wn);
    return rc;
}

static int open_h5_layers(dfd_keras_file *f, dfd_error *err) {
    /* model.save: weights under model_weights; save_weights: at the root. */
    if (h5_type_at(f->h5, "model_weights") == H5I_GROUP)
        snprintf(f->root, sizeof f->root, "model_weights");
    else
        f->root[0] = 0;
    hid_t g = f->root[0] ? H5Gopen2(f->h5, f->root, H5P_DEFAULT) : H5Gopen2(f->h5, "/", H5P_DEFAULT);
    if (g < 0) return dfd_fail(err, DFD_E_CORRUPT, "Keras file: root group cannot be opened");
    str_list names = {0};
    int present;
    int rc = attr_string_list(g, "layer_names", KW_MAX_NAME - 1, &names, &present, err);
    char *ver = NULL;
    if (rc == DFD_OK) rc = attr_text(g, "keras_version", 31, &ver, err);
    H5Gclose(g);
    if (rc == DFD_OK && !present) {
        if (h5_type_at(f->h5, "layers") == H5I_GROUP || h5_type_at(f->h5, "_layer_checkpoint_dependencies") == H5I_GROUP)
            rc = dfd_fail(err, DFD_E_MODEL,
                          "'%s' is a Keras 3 weights-only file, which has no layer names: import the .keras "
                          "model file instead",
                          f->path);
        else
            rc = dfd_fail(err, DFD_E_MODEL, "'%s' is an HDF5 file but not a Keras model (no model_weights or layer_names)",
                          f->path);
    }
    if (ver) {
        snprintf(f->info.keras_version, sizeof f->info.keras_version, "%s", ver);
        free(ver);
    }
    /* The config (model.save only) gives classes, nesting and topological order. */
    char *cfg_text = NULL;
    hid_t root = H5Gopen2(f->h5, "/", H5P_DEFAULT);
    if (rc == DFD_OK && root >= 0) rc = attr_text(root, "model_config", KW_MAX_CONFIG, &cfg_text, err);
    if (rc == DFD_OK && root >= 0 && !f->info.keras_version[0]) {
        if ((rc = attr_text(root, "keras_version", 31, &ver, err)) == DFD_OK && ver) {
            snprintf(f->info.keras_version, sizeof f->info.keras_version, "%s", ver);
            free(ver);
        }
    }
    if (root >= 0) H5Gclose(root);
    if (rc == DFD_OK && cfg_text) {
        json_error_t je;
        f->config = json_loads(cfg_text, 0, &je);
        if (!f->config || !json_is_object(f->config))
            rc = dfd_fail(err, DFD_E_MODEL, "'%s': model_config is not a Keras model config%s%s", f->path,
                          f->config ? "" : ": ", f->config ? "" : je.text);
    }
    free(cfg_text);
    if (rc == DFD_OK) rc = list_datasets(f, err);
    json_t *top = f->config;
    if (top && !cfg_layers(top)) top = NULL; /* a config that is not a model: no help */
    f->info.has_config = top != NULL;
    for (int i = 0; rc == DFD_OK && i < names.n; i++) rc = h5_layer_group(f, names.s[i], top, err);
    str_list_free(&names);
    return rc;
}

/* ---- Keras 3 (.keras) ------------------------------------------------------------------ */

typedef struct name_count {
    char name[64];
    int n;
} name_count;

/* Child group names of a group, sorted (H5Literate by name). */
static herr_t child_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    str_list *l = data;
    return str_list_push(l, name, strlen(name), NULL) == DFD_OK ? 0 : -1;
}

/* Keras 3 layers that draw random numbers (Dropout) may keep a SeedGenerator, whose
 * state is a variable of two integers. It is not a weight: skipped, and not counted as
 * an unused one. */
static int is_seed_state(dfd_keras_file *f, const char *path) {
    hid_t d = H5Dopen2(f->h5, path, H5P_DEFAULT);
    if (d < 0) return 0;
    hid_t t = H5Dget_type(d), s = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int seed = t >= 0 && s >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Sget_simple_extent_ndims(s) == 1 &&
               H5Sget_simple_extent_dims(s, dims, NULL) == 1 && dims[0] == 2;
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    H5Dclose(d);
    return seed;
}

/* A leaf layer's variables: <path>/vars/0, 1, ... in order, then those of child objects
 * it owns (an LSTM's "cell"), depth first. */
static int k3_collect(dfd_keras_file *f, kw_layer *l, const char *path, int depth, dfd_error *err) {
    if (depth > KW_MAX_DEPTH) return dfd_fail(err, DFD_E_LIMIT, "Keras file: '%s' is nested too deeply", path);
    char p[KW_MAX_PATH];
    int jrc = join_path(p, sizeof p, path, "vars", err);
    if (jrc) return jrc;
    if (h5_type_at(f->h5, p) == H5I_GROUP) {
        for (int i = 0; i < KW_MAX_W + 1; i++) {
            char v[KW_MAX_PATH + 16];
            snprintf(v, sizeof v, "%s/%d", p, i);
            if (h5_type_at(f->h5, v) != H5I_DATASET) break;
            if (is_seed_state(f, v)) {
                kw_dataset *d = find_set(f, v);
                if (d) d->ignored = 1;
                continue;
            }
            int rc = add_weight(f, l, "", v, err);
            if (rc) return rc;
        }
    }
    hid_t g = H5Gopen2(f->h5, path, H5P_DEFAULT);
    if (g < 0) return DFD_OK;
    str_list kids = {0};
    hsize_t idx = 0;
    herr_t r = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, child_cb, &kids);
    H5Gclose(g);
    int rc = r < 0 ? dfd_fail(err, DFD_E_CORRUPT, "Keras file: group '%s' cannot be listed", path) : DFD_OK;
    for (int i = 0; rc == DFD_OK && i < kids.n; i++) {
        if (strcmp(kids.s[i], "vars") == 0) continue;
        if ((rc = join_path(p, sizeof p, path, kids.s[i], err))) break;
        if (h5_type_at(f->h5, p) == H5I_GROUP) rc = k3_collect(f, l, p, depth + 1, err);
    }
    str_list_free(&kids);
    return rc;
}

/* Walks the config as Keras's saving_lib walks the model: a model's layers sit under
 * "<path>/layers/<snake_case class>[_k]" (k counting that class within this model), a
 * wrapper's layer under "<path>/layer", a layer's own variables under "<path>/vars". */
static int k3_walk(dfd_keras_file *f, json_t *node, const char *path, const char *layers_key, int depth,
                   dfd_error *err) {
    if (depth > KW_MAX_DEPTH) return dfd_fail(err, DFD_E_LIMIT, "Keras config nested too deeply");
    if (!json_is_object(node)) return dfd_fail(err, DFD_E_MODEL, "Keras config: a layer entry is not an object");
    json_t *ls = cfg_layers(node), *w = cfg_wrapped(node);
    char p[KW_MAX_PATH];
    if (ls) {
        size_t n = json_array_size(ls);
        name_count *seen = calloc(n ? n : 1, sizeof *seen);
        if (!seen) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
        int used = 0, rc = DFD_OK;
        for (size_t i = 0; i < n && rc == DFD_OK; i++) {
            json_t *c = json_array_get(ls, i);
            const char *cls = json_string_value(json_object_get(c, "class_name"));
            if (!cls) {
                rc = dfd_fail(err, DFD_E_MODEL, "Keras config: a layer has no class_name");
                break;
            }
            char snake[64], key[80];
            dfd_keras_snake_case(cls, snake, sizeof snake);
            int k = 0;
            for (; k < used && strcmp(seen[k].name, snake) != 0; k++) {
            }
            if (k == used) {
                snprintf(seen[used++].name, sizeof seen[0].name, "%s", snake);
                snprintf(key, sizeof key, "%s", snake);
            } else {
                snprintf(key, sizeof key, "%s_%d", snake, ++seen[k].n);
            }
            char sub[KW_MAX_PATH];
            if ((rc = join_path(sub, sizeof sub, path, layers_key, err)) || (rc = join_path(p, sizeof p, sub, key, err)))
                break;
            rc = k3_walk(f, c, p, layers_key, depth + 1, err);
        }
        free(seen);
        return rc;
    }
    if (w) {
        int jrc = join_path(p, sizeof p, path, "layer", err);
        return jrc ? jrc : k3_walk(f, w, p, layers_key, depth + 1, err);
    }
    const char *name = cfg_name(node);
    if (!name) return dfd_fail(err, DFD_E_MODEL, "Keras config: a layer has no name");
    kw_layer *l = new_layer(f, name, err);
    if (!l) return err ? err->code : DFD_E_NOMEM;
    set_class_from_cfg(l, node);
    int rc = k3_collect(f, l, path, 0, err);
    if (rc == DFD_OK && l->n_w == 0) f->n_layers--; /* weightless (activation, pool, ...) */
    return rc;
}

static int read_zip_entry(zip_t *z, const char *name, uint64_t cap, uint8_t **data, size_t *len, dfd_error *err) {
    *data = NULL;
    *len = 0;
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat(z, name, 0, &st) != 0) return DFD_E_NOT_FOUND;
    if (!(st.valid & ZIP_STAT_SIZE) || st.size > cap)
        return dfd_fail(err, DFD_E_LIMIT, "'%s' in the archive is over %llu bytes", name, (unsigned long long)cap);
    uint8_t *buf = malloc((size_t)st.size + 1);
    if (!buf) return dfd_fail(err, DFD_E_NOMEM, "out of memory reading '%s'", name);
    zip_file_t *zf = zip_fopen(z, name, 0);
    if (!zf) {
        free(buf);
        return dfd_fail(err, DFD_E_CORRUPT, "'%s' in the archive cannot be opened: %s", name, zip_strerror(z));
    }
    zip_int64_t got = zip_fread(zf, buf, st.size);
    zip_fclose(zf);
    if (got < 0 || (zip_uint64_t)got != st.size) {
        free(buf);
        return dfd_fail(err, DFD_E_CORRUPT, "'%s' in the archive is truncated or corrupt", name);
    }
    buf[st.size] = 0;
    *data = buf;
    *len = (size_t)st.size;
    return DFD_OK;
}

static int open_keras3(dfd_keras_file *f, dfd_error *err) {
    int zerr = 0;
    zip_t *z = zip_open(f->path, ZIP_RDONLY, &zerr);
    if (!z) return dfd_fail(err, DFD_E_UNSUPPORTED, "'%s' is not a readable zip archive (a .keras file is one)", f->path);
    uint8_t *cfg = NULL, *meta = NULL, *weights = NULL;
    size_t cfg_len, meta_len, w_len;
    int rc = read_zip_entry(z, "config.json", KW_MAX_CONFIG, &cfg, &cfg_len, err);
    if (rc == DFD_E_NOT_FOUND)
        rc = dfd_fail(err, DFD_E_MODEL, "'%s' is a zip archive but not a Keras model (no config.json)", f->path);
    if (rc == DFD_OK) {
        rc = read_zip_entry(z, "metadata.json", KW_MAX_SMALL, &meta, &meta_len, err);
        if (rc == DFD_E_NOT_FOUND) rc = DFD_OK; /* optional: only the version comes from it */
    }
    if (rc == DFD_OK) {
        rc = read_zip_entry(z, "model.weights.h5", KW_MAX_WEIGHTS_FILE, &weights, &w_len, err);
        if (rc == DFD_E_NOT_FOUND) {
            zip_stat_t st;
            rc = zip_stat(z, "model.weights.npz", 0, &st) == 0
                     ? dfd_fail(err, DFD_E_UNSUPPORTED, "'%s' stores its weights as .npz; only model.weights.h5 is read",
                                f->path)
                     : dfd_fail(err, DFD_E_MODEL, "'%s': the Keras archive has no model.weights.h5", f->path);
        }
    }
    zip_close(z);
    if (rc == DFD_OK) {
        json_error_t je;
        f->config = json_loadb((const char *)cfg, cfg_len, 0, &je);
        if (!f->config || !json_is_object(f->config))
            rc = dfd_fail(err, DFD_E_MODEL, "'%s': config.json is not a Keras model config%s%s", f->path,
                          f->config ? "" : ": ", f->config ? "" : je.text);
    }
    if (rc == DFD_OK && meta) {
        json_t *m = json_loadb((const char *)meta, meta_len, 0, NULL);
        const char *v = json_string_value(json_object_get(m, "keras_version"));
        if (v) snprintf(f->info.keras_version, sizeof f->info.keras_version, "%s", v);
        json_decref(m);
    }
    if (rc == DFD_OK) {
        static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
        if (w_len < 8 || memcmp(weights, sig, 8) != 0)
            rc = dfd_fail(err, DFD_E_MODEL, "'%s': model.weights.h5 is not an HDF5 file", f->path);
    }
    if (rc == DFD_OK) {
        /* Opened from memory: the core driver over a copy of the bytes. */
        hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0 || H5Pset_file_image(fapl, weights, w_len) < 0)
            rc = dfd_fail(err, DFD_E_INTERNAL, "HDF5 cannot open a file image");
        else if ((f->h5 = H5Fopen("model.weights.h5", H5F_ACC_RDONLY, fapl)) < 0)
            rc = dfd_fail(err, DFD_E_CORRUPT, "'%s': model.weights.h5 cannot be opened (corrupt HDF5)", f->path);
        if (fapl >= 0) H5Pclose(fapl);
    }
    free(cfg);
    free(meta);
    free(weights);
    if (rc) return rc;
    const char *key = NULL;
    if (h5_type_at(f->h5, "layers") == H5I_GROUP)
        key = "layers";
    else if (h5_type_at(f->h5, "_layer_checkpoint_dependencies") == H5I_GROUP)
        key = "_layer_checkpoint_dependencies"; /* Keras 2.13-2.15's first .keras files */
    if (!key) return dfd_fail(err, DFD_E_MODEL, "'%s': model.weights.h5 has no layers group", f->path);
    snprintf(f->root, sizeof f->root, "%s", key);
    f->info.has_config = 1;
    if ((rc = list_datasets(f, err))) return rc;
    if (!cfg_layers(f->config) && !cfg_wrapped(f->config))
        return dfd_fail(err, DFD_E_MODEL, "'%s': config.json describes a %s, not a model", f->path,
                        json_string_value(json_object_get(f->config, "class_name")) ? json_string_value(json_object_get(f->config, "class_name")) : "layer");
    return k3_walk(f, f->config, "", key, 0, err);
}

/* ---- Opening ---------------------------------------------------------------------- */

/* HDF5's superblock sits at 0, 512, 1024, 2048, ... (after an optional user block). */
static int sniff(const char *path, int *is_h5, int *is_zip, dfd_error *err) {
    *is_h5 = *is_zip = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return dfd_fail(err, DFD_E_IO, "cannot open '%s'", path);
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    uint8_t b[8];
    size_t n = fread(b, 1, 8, fp);
    if (n >= 4 && b[0] == 'P' && b[1] == 'K' && ((b[2] == 3 && b[3] == 4) || (b[2] == 5 && b[3] == 6))) *is_zip = 1;
    for (long off = 0; !*is_zip && n == 8 && off <= (1L << 30); off = off ? off * 2 : 512) {
        if (off && (fseek(fp, off, SEEK_SET) != 0 || (n = fread(b, 1, 8, fp)) != 8)) break;
        if (memcmp(b, sig, 8) == 0) *is_h5 = 1;
        if (*is_h5) break;
    }
    fclose(fp);
    return DFD_OK;
}

void dfd_keras_close(dfd_keras_file *f) {
    if (!f) return;
    h5_quiet q;
    quiet_on(&q);
    if (f->h5 >= 0) H5Fclose(f->h5);
    quiet_off(&q);
    for (int i = 0; i < f->n_layers; i++)
        for (int j = 0; j < f->layers[i].n_w; j++) free(f->layers[i].w[j].path);
    free(f->layers);
    for (int i = 0; i < f->n_sets; i++) free(f->sets[i].path);
    free(f->sets);
    json_decref(f->config);
    free(f->path);
    free(f);
}

const dfd_keras_info *dfd_keras_get_info(const dfd_keras_file *f) { return &f->info; }

/* Summary fields, and the check that every dataset under the root belongs to a layer. */
static int finish_open(dfd_keras_file *f, dfd_error *err) {
    dfd_keras_info *in = &f->info;
    in->dropout = -1.0f;
    int last_dense = -1;
    for (int i = 0; i < f->n_layers; i++) {
        kw_layer *l = &f->layers[i];
        infer_missing_class(l);
        if (strcmp(l->cls, "lstm") == 0) in->is_video = 1;
        if (strcmp(l->cls, "dense") == 0 && (last_dense < 0 || l->order > f->layers[last_dense].order)) last_dense = i;
        in->n_weights += l->n_w;
        for (int j = 0; j < l->n_w; j++) {
            kw_dataset *d = find_set(f, l->w[j].path);
            if (d) d->used = 1;
        }
    }
    in->n_layers = f->n_layers;
    if (last_dense >= 0 && f->layers[last_dense].cfg) {
        const char *a = json_string_value(json_object_get(f->layers[last_dense].cfg, "activation"));
        if (a) snprintf(in->final_activation, sizeof in->final_activation, "%s", a);
    }
    if (f->config) cfg_input_shape(f->config, in);
    for (int i = 0; i < f->n_sets; i++)
        if (!f->sets[i].used && !f->sets[i].ignored)
            return dfd_fail(err, DFD_E_MODEL, "unexpected weight '%s': no layer of the model holds it", f->sets[i].path);
    for (int i = 0; i < f->n_sets; i++) f->sets[i].used = 0; /* loading marks them again */
    return DFD_OK;
}

int dfd_keras_open(const char *path, dfd_keras_file **out, dfd_error *err) {
    *out = NULL;
    int is_h5, is_zip;
    int rc = sniff(path, &is_h5, &is_zip, err);
    if (rc) return rc;
    if (!is_h5 && !is_zip)
        return dfd_fail(err, DFD_E_UNSUPPORTED,
                        "'%s' is neither an HDF5 file (Keras .h5) nor a zip archive (Keras .keras)", path);
    dfd_keras_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    f->h5 = -1;
    h5_quiet q;
    quiet_on(&q);
    if (is_zip) {
        f->info.container = DFD_KERAS_ZIP;
        rc = open_keras3(f, err);
    } else {
        f->info.container = DFD_KERAS_H5;
        f->h5 = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        rc = f->h5 < 0 ? dfd_fail(err, DFD_E_CORRUPT, "'%s' cannot be opened as HDF5 (truncated or corrupt)", path)
                       : open_h5_layers(f, err);
    }
    if (rc == DFD_OK) rc = finish_open(f, err);
    quiet_off(&q);
    if (rc) {
        dfd_keras_close(f);
        return rc;
    }
    *out = f;
    return DFD_OK;
}

/* ---- Loading into a graph ------------------------------------------------------------ */

typedef struct g_layer {
    char name[NN_NAME_MAX];
    char cls[48];
    int n;
    int p[KW_MAX_W];   /* parameter indices, in creation (= Keras weight) order */
    int match;         /* file layer, -1 */
} g_layer;

/* The graph's layers: parameter name prefixes, in parameter (= node = Keras) order. */
static int graph_layers(nn_graph *g, g_layer **out, int *count, dfd_error *err) {
    int np = nn_graph_param_count(g), n = 0;
    g_layer *ls = calloc((size_t)(np ? np : 1), sizeof *ls);
    if (!ls) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    for (int i = 0; i < np; i++) {
        const nn_param *p = nn_graph_param(g, i);
        const char *slash = strrchr(p->name, '/');
        size_t plen = slash ? (size_t)(slash - p->name) : strlen(p->name);
        int k = n - 1;
        while (k >= 0 && !(strlen(ls[k].name) == plen && strncmp(ls[k].name, p->name, plen) == 0)) k--;
        if (k < 0) {
            k = n++;
            memcpy(ls[k].name, p->name, plen);
            ls[k].name[plen] = 0;
            ls[k].match = -1;
        }
        if (ls[k].n >= KW_MAX_W) {
            int rc = dfd_fail(err, DFD_E_INTERNAL, "layer '%s' has too many parameters", ls[k].name);
            free(ls);
            return rc;
        }
        ls[k].p[ls[k].n++] = i;
    }
    for (int k = 0; k < n; k++) {
        const char *kinds[KW_MAX_W];
        int nd[KW_MAX_W];
        for (int j = 0; j < ls[k].n; j++) {
            const nn_param *p = nn_graph_param(g, ls[k].p[j]);
            kinds[j] = strrchr(p->name, '/') ? strrchr(p->name, '/') + 1 : p->name;
            nd[j] = p->ndim;
        }
        snprintf(ls[k].cls, sizeof ls[k].cls, "%s", infer_class(kinds, nd, ls[k].n));
    }
    *out = ls;
    *count = n;
    return DFD_OK;
}

/* Problems are collected so that the message can say how many there are; each is logged. */
typedef struct probs {
    int n;
    int code;
    char first[400];
} probs;

static void prob(probs *p, const char *fmt, ...) DFD_PRINTF(2, 3);
static void prob(probs *p, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->n++ == 0) snprintf(p->first, sizeof p->first, "%s", msg);
    dfd_log(DFD_LOG_INFO, "keras import: %s", msg);
}

typedef struct fam_item {
    int idx;
    int key, key2;
} fam_item;

static int cmp_fam(const void *a, const void *b) {
    const fam_item *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->key2 < y->key2 ? -1 : x->key2 > y->key2;
}

static const char *act_name(nn_act a) {
    switch (a) {
    case NN_ACT_NONE: return "linear";
    case NN_ACT_RELU: return "relu";
    case NN_ACT_RELU6: return "relu6";
    case NN_ACT_SIGMOID: return "sigmoid";
    case NN_ACT_SWISH: return "swish";
    case NN_ACT_TANH: return "tanh";
    case NN_ACT_PRELU: return "prelu";
    }
    return "?";
}

/* Where the file has a config, the settings that change what a layer computes without
 * changing its weights' shapes must be dfd's: strides, padding, dilation, activations,
 * batch-norm epsilon, the LSTMs' gate functions and return_sequences. Missing keys are
 * Keras defaults and pass. */
static void check_config(const kw_layer *l, const g_layer *gl, nn_graph *g, probs *pr) {
    json_t *c = l->cfg;
    if (!c) return;
    const nn_node *nd = NULL;
    int id = nn_graph_find_node(g, gl->name);
    if (id >= 0) nd = nn_graph_node(g, id);
    if (!nd) return;
    const char *act = json_string_value(json_object_get(c, "activation"));
    json_t *act_j = json_object_get(c, "activation");
    if (act_j && !act) {
        prob(pr, "layer '%s': its activation is not a built-in Keras one", l->name);
        return;
    }
    if (strcmp(gl->cls, "conv2d") == 0 || strcmp(gl->cls, "separable_conv2d") == 0) {
        const nn_node *geo = nd; /* where strides live: the depthwise half of a separable conv */
        if (strcmp(gl->cls, "separable_conv2d") == 0) {
            char dn[NN_NAME_MAX + 16];
            snprintf(dn, sizeof dn, "%s/depthwise", gl->name);
            int did = nn_graph_find_node(g, dn);
            if (did >= 0) geo = nn_graph_node(g, did);
        }
        json_t *s = json_object_get(c, "strides");
        if (json_is_array(s) && json_array_size(s) == 2 &&
            (json_integer_value(json_array_get(s, 0)) != geo->a.conv.sh ||
             json_integer_value(json_array_get(s, 1)) != geo->a.conv.sw))
            prob(pr, "layer '%s': strides [%lld,%lld] in the file, dfd's architecture uses [%d,%d]", l->name,
                 (long long)json_integer_value(json_array_get(s, 0)), (long long)json_integer_value(json_array_get(s, 1)),
                 geo->a.conv.sh, geo->a.conv.sw);
        json_t *dl = json_object_get(c, "dilation_rate");
        if (json_is_array(dl) && json_array_size(dl) == 2 &&
            (json_integer_value(json_array_get(dl, 0)) != geo->a.conv.dh ||
             json_integer_value(json_array_get(dl, 1)) != geo->a.conv.dw))
            prob(pr, "layer '%s': a dilation other than dfd's", l->name);
        const char *pad = json_string_value(json_object_get(c, "padding"));
        const char *want = geo->a.conv.padding == NN_PAD_SAME ? "same" : "valid";
        if (pad && strcmp(pad, want) != 0)
            prob(pr, "layer '%s': padding '%s' in the file, dfd's architecture uses '%s'", l->name, pad, want);
        if (act && strcmp(act, act_name(nd->a.conv.act)) != 0)
            prob(pr, "layer '%s': activation '%s' in the file, dfd's architecture uses '%s'", l->name, act,
                 act_name(nd->a.conv.act));
    } else if (strcmp(gl->cls, "batch_normalization") == 0) {
        json_t *e = json_object_get(c, "epsilon");
        if (json_is_number(e)) {
            double fe = json_number_value(e), ge = nd->a.bn.eps;
            if (!(fabs(fe - ge) <= 1e-4 * ge))
                prob(pr, "layer '%s': batch-norm epsilon %g in the file, dfd's architecture uses %g", l->name, fe, ge);
        }
    } else if (strcmp(gl->cls, "dense") == 0) {
        const char *want = act_name(nd->a.dense.act);
        /* dfd's last dense layer outputs the logit; Keras's applies sigmoid to it (or
         * nothing, for a model trained on logits): both leave the logit in dfd's graph. */
        int ok = !act || strcmp(act, want) == 0 ||
                 (nd->a.dense.act == NN_ACT_NONE && strcmp(act, "sigmoid") == 0);
        if (!ok)
            prob(pr, "layer '%s': activation '%s' in the file, dfd's architecture expects '%s'%s", l->name, act, want,
                 nd->a.dense.act == NN_ACT_NONE ? " or 'sigmoid'" : "");
    } else if (strcmp(gl->cls, "lstm") == 0) {
        const char *ra = json_string_value(json_object_get(c, "recurrent_activation"));
        if (act && strcmp(act, "tanh") != 0)
            prob(pr, "layer '%s': activation '%s' in the file, dfd's LSTM uses 'tanh'", l->name, act);
        if (ra && strcmp(ra, "sigmoid") != 0)
            prob(pr, "layer '%s': recurrent_activation '%s' in the file, dfd's LSTM uses 'sigmoid'", l->name, ra);
        json_t *rs = json_object_get(c, "return_sequences");
        if (json_is_boolean(rs) && json_is_true(rs) != (nd->a.lstm.return_sequences != 0))
            prob(pr, "layer '%s': return_sequences differs from dfd's architecture", l->name);
        json_t *gb = json_object_get(c, "go_backwards");
        if (json_is_true(gb)) prob(pr, "layer '%s': go_backwards is not supported", l->name);
    }
}

/* The file weight that fills graph parameter j of a paired layer: by kind for .h5 (the
 * names say it), by position for .keras (variables are numbered in the layer's weight
 * order, which dfd's builders reproduce). */
static kw_weight *pair_weight(kw_layer *l, const g_layer *gl, int j, nn_graph *g) {
    if (l->n_w > 0 && l->w[0].kind[0] == 0) return j < l->n_w ? &l->w[j] : NULL;
    const nn_param *p = nn_graph_param(g, gl->p[j]);
    const char *kind = strrchr(p->name, '/') ? strrchr(p->name, '/') + 1 : p->name;
    for (int i = 0; i < l->n_w; i++)
        if (strcmp(l->w[i].kind, kind) == 0) return &l->w[i];
    return NULL;
}

static void check_weights(kw_layer *l, const g_layer *gl, nn_graph *g, probs *pr) {
    if (strcmp(l->cls, gl->cls) != 0) {
        prob(pr, "layer '%s' is a %s in the file, dfd's architecture has a %s there ('%s')", l->name,
             l->cls[0] ? l->cls : "layer of unknown class", gl->cls, gl->name);
        return;
    }
    if (l->n_w != gl->n) {
        prob(pr, "layer '%s' has %d weights in the file, dfd's '%s' has %d", l->name, l->n_w, gl->name, gl->n);
        return;
    }
    for (int j = 0; j < gl->n; j++) {
        const nn_param *p = nn_graph_param(g, gl->p[j]);
        kw_weight *w = pair_weight(l, gl, j, g);
        if (!w) {
            prob(pr, "layer '%s': weight '%s' missing in the file", l->name, strrchr(p->name, '/') + 1);
            continue;
        }
        int same = w->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = w->dims[d] == p->shape[d];
        if (!same) {
            char a[96], b[96];
            dims_text(w->dims, w->ndim, a, sizeof a);
            dims_text(p->shape, p->ndim, b, sizeof b);
            prob(pr, "shape mismatch for '%s' (the file's '%s'): the file has %s, dfd's architecture %s", p->name,
                 w->path, a, b);
        } else if (!w->is_float) {
            prob(pr, "weight '%s' is not floating point", w->path);
        }
    }
}

static int read_weight(dfd_keras_file *f, const kw_weight *w, nn_param *p, dfd_error *err) {
    hid_t d = H5Dopen2(f->h5, w->path, H5P_DEFAULT);
    if (d < 0) return dfd_fail(err, DFD_E_CORRUPT, "weight '%s' cannot be opened", w->path);
    /* HDF5 converts any stored float format (f16, f32, f64, either byte order). */
    herr_t r = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p->data);
    H5Dclose(d);
    if (r < 0) return dfd_fail(err, DFD_E_CORRUPT, "weight '%s' cannot be read (truncated or corrupt)", w->path);
    for (size_t i = 0; i < p->count; i++)
        if (!isfinite(p->data[i]))
            return dfd_fail(err, DFD_E_MODEL, "weight '%s' holds NaN or infinite values", w->path);
    kw_dataset *s = find_set(f, w->path);
    if (s) s->used = 1;
    return DFD_OK;
}

static int pair_layers(dfd_keras_file *f, g_layer *gls, int ng, probs *pr) {
    /* Named layers by name. */
    for (int k = 0; k < ng; k++) {
        const char *fam;
        if (auto_name(gls[k].name, &fam) >= 0) continue;
        for (int i = 0; i < f->n_layers; i++) {
            if (strcmp(f->layers[i].name, gls[k].name) != 0) continue;
            if (gls[k].match >= 0) {
                prob(pr, "layer '%s' appears twice in the file", gls[k].name);
                break;
            }
            gls[k].match = i;
            f->layers[i].match = k;
        }
    }
    /* Automatically named layers by order within their family. */
    fam_item *fi = calloc((size_t)(f->n_layers + 1), sizeof *fi), *gi = calloc((size_t)(ng + 1), sizeof *gi);
    if (!fi || !gi) {
        free(fi);
        free(gi);
        return DFD_E_NOMEM;
    }
    for (int a = 0; auto_families[a]; a++) {
        int nf = 0, n_g = 0;
        for (int i = 0; i < f->n_layers; i++) {
            const char *fam;
            int sfx = auto_name(f->layers[i].name, &fam);
            if (sfx < 0 || strcmp(fam, auto_families[a]) != 0) continue;
            fi[nf].idx = i;
            fi[nf].key = f->info.has_config ? f->layers[i].order : sfx;
            fi[nf].key2 = f->layers[i].order;
            nf++;
        }
        for (int k = 0; k < ng; k++) {
            const char *fam;
            if (auto_name(gls[k].name, &fam) < 0 || strcmp(fam, auto_families[a]) != 0) continue;
            gi[n_g].idx = k;
            n_g++;
        }
        qsort(fi, (size_t)nf, sizeof *fi, cmp_fam);
        for (int j = 0; j < nf && j < n_g; j++) {
            gls[gi[j].idx].match = fi[j].idx;
            f->layers[fi[j].idx].match = gi[j].idx;
        }
    }
    free(fi);
    free(gi);
    for (int k = 0; k < ng; k++)
        if (gls[k].match < 0) prob(pr, "layer '%s': missing in the file", gls[k].name);
    for (int i = 0; i < f->n_layers; i++)
        if (f->layers[i].match < 0) prob(pr, "unexpected layer '%s'", f->layers[i].name);
    return DFD_OK;
}

int dfd_keras_load(dfd_keras_file *f, nn_graph *g, dfd_error *err) {
    g_layer *gls = NULL;
    int ng = 0;
    int rc = graph_layers(g, &gls, &ng, err);
    if (rc) return rc;
    for (int i = 0; i < f->n_layers; i++) f->layers[i].match = -1;
    probs pr = {0, DFD_E_MODEL, ""};
    rc = pair_layers(f, gls, ng, &pr);
    if (rc) {
        free(gls);
        return dfd_fail(err, rc, "out of memory");
    }
    if (pr.n == 0) /* per-layer checks only once every layer has its partner */
        for (int k = 0; k < ng; k++) {
            kw_layer *l = &f->layers[gls[k].match];
            check_weights(l, &gls[k], g, &pr);
            check_config(l, &gls[k], g, &pr);
        }
    if (pr.n) {
        free(gls);
        if (pr.n == 1) return dfd_fail(err, DFD_E_MODEL, "%s", pr.first);
        return dfd_fail(err, DFD_E_MODEL, "%s (and %d more problem%s)", pr.first, pr.n - 1, pr.n > 2 ? "s" : "");
    }
    h5_quiet q;
    quiet_on(&q);
    for (int k = 0; rc == DFD_OK && k < ng; k++) {
        kw_layer *l = &f->layers[gls[k].match];
        for (int j = 0; rc == DFD_OK && j < gls[k].n; j++)
            rc = read_weight(f, pair_weight(l, &gls[k], j, g), nn_graph_param(g, gls[k].p[j]), err);
    }
    quiet_off(&q);
    free(gls);
    for (int i = 0; rc == DFD_OK && i < f->n_sets; i++)
        if (!f->sets[i].used && !f->sets[i].ignored)
            rc = dfd_fail(err, DFD_E_MODEL, "unexpected weight '%s': not used by dfd's architecture", f->sets[i].path);
    return rc;
}

/* ---- The whole import ------------------------------------------------------------------ */

/* What the imported model's output means. The original's last layer is Dense(1,
 * activation="sigmoid") trained on class folders sorted alphabetically (fake = 0,
 * real = 1), so Keras's output is P(real). dfd's graph stops before the sigmoid (its
 * dense_1 has no activation), so output 0 is the logit of P(real): "logit_p_real", which
 * detect/classifier.c turns into P(fake) = 1 - sigmoid(output). ("sigmoid_p_real" would
 * be right only for a graph that applied the sigmoid itself.) */
#define KERAS_OUTPUT "logit_p_real"

int dfd_keras_import(const char *in, const char *out, const dfd_keras_import_opts *opts, dfd_model_build_fn build,
                     void *user, dfd_keras_import_report *rep, dfd_error *err) {
    dfd_keras_import_opts o = {0};
    if (opts) o = *opts;
    dfd_keras_import_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    if (!build) return dfd_fail(err, DFD_E_ARG, "keras import: no architecture builder");
    dfd_keras_file *f = NULL;
    int rc = dfd_keras_open(in, &f, err);
    if (rc) return rc;
    const dfd_keras_info *info = dfd_keras_get_info(f);
    rep->info = *info;
    const char *arch = o.arch ? o.arch : info->is_video ? "xception-video" : "xception-image";
    int is_video = strstr(arch, "-video") != NULL;
    int size = o.input_size > 0 ? o.input_size : info->input_size > 0 ? info->input_size : 299;
    int frames = is_video ? (o.frames > 0 ? o.frames : info->frames > 0 ? info->frames : 30) : 0;
    if (o.arch && info->has_config && info->is_video != is_video)
        dfd_log(DFD_LOG_WARN, "keras import: '%s' looks like %s model, importing as %s", in,
                info->is_video ? "a video" : "an image", arch);

    dfd_model_meta m;
    dfd_model_meta_init(&m);
    char note[1024];
    snprintf(note, sizeof note,
             "Imported by `dfd import keras` from '%s' (%s%s%s). The Keras model's last layer is Dense(1, %s): "
             "P(real), since Keras numbered the class folders alphabetically (fake = 0, real = 1). dfd's graph "
             "stops before that sigmoid, so output 0 is the logit of P(real) (output = logit_p_real) and dfd "
             "reports P(fake) = 1 - sigmoid(output). Preprocessing as the original: RGB, values / 255, %dx%d, "
             "face box without margin.",
             strrchr(in, '/') ? strrchr(in, '/') + 1 : in,
             info->container == DFD_KERAS_ZIP ? "Keras 3 .keras" : "Keras HDF5 .h5",
             info->keras_version[0] ? ", Keras " : "", info->keras_version,
             info->final_activation[0] ? info->final_activation : "sigmoid", size, size);
    m.arch = (char *)arch;
    m.input_size = size;
    m.frames = frames;
    m.dropout = info->dropout >= 0 && info->dropout < 1 ? info->dropout : -1.0f;
    m.output = KERAS_OUTPUT;
    m.threshold = 0.5;
    m.training_data = note;
    /* The crop's side is the network's input, known only now (from the file). */
    char *pre = NULL;
    if (o.preprocess) {
        json_t *pj = json_loads(o.preprocess, 0, NULL);
        if (!json_is_object(pj)) {
            json_decref(pj);
            dfd_keras_close(f);
            return dfd_fail(err, DFD_E_ARG, "keras import: preprocess is not a JSON object");
        }
        if (json_object_get(pj, "size")) json_object_set_new(pj, "size", json_integer(size));
        pre = json_dumps(pj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(pj);
        if (!pre) {
            dfd_keras_close(f);
            return dfd_fail(err, DFD_E_NOMEM, "out of memory");
        }
    }
    m.preprocess = pre;

    nn_graph *g = NULL;
    rc = build(user, &m, &g, err);
    if (rc == DFD_OK) rc = dfd_keras_load(f, g, err);
    if (rc == DFD_OK) rc = dfd_model_save(g, &m, NULL, out, err);
    if (rc == DFD_OK) {
        snprintf(rep->arch, sizeof rep->arch, "%s", arch);
        rep->input_size = size;
        rep->frames = frames;
        rep->output = KERAS_OUTPUT;
    }
    free(pre);
    nn_graph_free(g);
    dfd_keras_close(f);
    return rc;
}
