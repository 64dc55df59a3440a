/* fuzz_keras — libFuzzer harness for the Keras model reader (src/io/keras.c, `dfd import
 * keras`): what dfd itself does with a Keras file's structure. It walks HDF5 groups,
 * attributes and datasets (layer_names / weight_names as fixed or variable-length strings,
 * chunked attributes, links, dataset types and shapes), parses the model config (the
 * model_config attribute of a .h5, config.json and metadata.json of a .keras zip), pairs
 * the file's layers with a graph's and reads the weights into it.
 *
 * Why structure-aware, not raw bytes: parsing the HDF5 container format is the HDF5
 * library's job, and Debian's libhdf5 is not hardened against hostile files (keras.h says
 * so: Keras import is for models you would load into Keras, and the server never loads
 * one). Mutating raw HDF5 bytes would spend the hour on libhdf5's own crashes, which dfd
 * cannot fix. So each input is a recipe, and the harness writes a well-formed HDF5 file
 * from it with libhdf5 itself (and a zip with libzip), so every byte the fuzzer controls
 * lands in something dfd's code interprets: names, strings, JSON, types, shapes, values.
 *
 * Recipe (little-endian, every field optional: a short input reads as zeros):
 *   u8 mode      0 .h5 model.save (weights under /model_weights), 1 .h5 save_weights
 *                (at the root), 2 .keras zip (config.json, metadata.json, model.weights.h5
 *                with the layers under /layers), 3 raw bytes as the file (sniffing only:
 *                skipped when they hold an HDF5 signature or start like a zip)
 *   u8 flags     1 strings variable-length, 2 keras_version attribute, 4 layer_names split
 *                into chunks layer_names0/1, 8 model_config an integer attribute, 16 a soft
 *                link in the weights root, 32 (zip) weights as model.weights.npz, 64 (zip)
 *                no metadata.json, 128 an extra dataset no layer lists
 *   u16 + bytes  the model config (model_config / config.json; absent when empty)
 *   u16 + bytes  metadata.json (zip)
 *   u8           layer count (mod 16), then per layer:
 *     u8 + bytes the layer's group name under the weights root ('/' makes subgroups)
 *     u8         weight count (mod 8), then per weight:
 *       u8 + bytes  the dataset's path under the layer's group (its weight_names entry)
 *       u8          type: 0 f32, 1 f64, 2 i32, 3 string
 *       u8          rank (mod 5), then u8 per dimension (mod 6)
 *       u8          values: 0 zeros, 1 a ramp, 2 NaN, 3 the next bytes
 * The graph it loads into has Keras-named layers (conv2d, batch_normalization, dense), so
 * a recipe can pair fully and reach the weight reads. After each input every HDF5 object
 * must be closed again: a handle dfd forgot aborts the run. tests/fuzz/make_keras_seeds.py
 * writes the seed recipes. */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

#include "io/keras.h"

static char dir[64], h5path[96], keraspath[96], rawpath[96];
static nn_graph *graph;

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd;

static unsigned u8(rd *r) {
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static unsigned u16(rd *r) { return u8(r) | (u8(r) << 8); }

/* len bytes (at most cap - 1) as a NUL-terminated string; embedded NULs end it early. */
static void take(rd *r, size_t len, char *out, size_t cap) {
    if (len > r->n) len = r->n;
    size_t k = len < cap - 1 ? len : cap - 1;
    memcpy(out, r->p, k);
    out[k] = 0;
    r->p += len;
    r->n -= len;
}

static void cleanup(void) {
    unlink(h5path);
    unlink(keraspath);
    unlink(rawpath);
    rmdir(dir);
    nn_graph_free(graph);
}

static nn_graph *make_graph(void) {
    nn_graph *g = nn_graph_new();
    int x = nn_input(g, "input", 3, (int[]){4, 4, 3});
    nn_conv_attr a = {.kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .padding = NN_PAD_SAME,
                      .groups = 1, .out_c = 2, .has_bias = 1};
    x = nn_conv2d(g, "conv2d", x, &a);
    x = nn_batchnorm(g, "batch_normalization", x, 1e-3f, 0.99f);
    x = nn_gap(g, "global_average_pooling2d", x);
    x = nn_dense(g, "dense", x, 1, 1, NN_ACT_NONE);
    nn_mark_output(g, x);
    if (nn_graph_error(g)) abort();
    return g;
}

/* A string attribute holding n strings, fixed-length (the longest) or variable-length. */
static void put_strings(hid_t obj, const char *name, char (*s)[256], int n, int vlen) {
    hsize_t dim = (hsize_t)n;
    hid_t sp = n ? H5Screate_simple(1, &dim, NULL) : H5Screate(H5S_NULL);
    hid_t t = H5Tcopy(H5T_C_S1);
    if (vlen) {
        H5Tset_size(t, H5T_VARIABLE);
        const char *v[16];
        for (int i = 0; i < n; i++) v[i] = s[i];
        hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            if (n) H5Awrite(a, t, v);
            H5Aclose(a);
        }
    } else {
        size_t w = 1;
        for (int i = 0; i < n; i++)
            if (strlen(s[i]) > w) w = strlen(s[i]);
        H5Tset_size(t, w);
        H5Tset_strpad(t, H5T_STR_NULLPAD);
        char *buf = calloc((size_t)(n ? n : 1), w);
        if (!buf) abort();
        for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * w, s[i], strlen(s[i]));
        hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            if (n) H5Awrite(a, t, buf);
            H5Aclose(a);
        }
        free(buf);
    }
    H5Tclose(t);
    H5Sclose(sp);
}

static void put_text(hid_t obj, const char *name, const char *text, int vlen) {
    /* One string; long texts (configs) go variable-length, as h5py writes them. A fixed
     * size of strlen (1 for "") reads text up to, or just its, NUL. */
    size_t n = strlen(text);
    if (n >= 256) vlen = 1;
    hid_t sp = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, vlen ? H5T_VARIABLE : (n ? n : 1));
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        H5Awrite(a, t, vlen ? (const void *)&text : (const void *)text);
        H5Aclose(a);
    }
    H5Tclose(t);
    H5Sclose(sp);
}

/* One dataset from the recipe at path (relative to loc; missing groups are made). */
static void put_dataset(hid_t loc, hid_t lcpl, const char *path, rd *r) {
    unsigned type = u8(r) % 4, rank = u8(r) % 5;
    hsize_t dims[4];
    size_t count = 1;
    for (unsigned i = 0; i < rank; i++) {
        dims[i] = u8(r) % 6;
        count *= (size_t)dims[i];
    }
    unsigned fill = u8(r) % 4;
    hid_t sp = rank ? H5Screate_simple((int)rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t ft = type == 0 ? H5Tcopy(H5T_IEEE_F32LE) : type == 1 ? H5Tcopy(H5T_IEEE_F64LE)
               : type == 2 ? H5Tcopy(H5T_STD_I32LE) : H5Tcopy(H5T_C_S1);
    if (type == 3) H5Tset_size(ft, 4);
    hid_t d = H5Dcreate2(loc, path, ft, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (d >= 0 && count) {
        if (type == 3) {
            char *b = calloc(count, 4);
            if (!b) abort();
            H5Dwrite(d, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, b);
            free(b);
        } else {
            double *v = calloc(count, sizeof *v);
            if (!v) abort();
            for (size_t i = 0; i < count; i++) {
                if (fill == 1) v[i] = 0.01 * (double)i - 0.1;
                else if (fill == 2) v[i] = i == count / 2 ? (double)NAN : 0.5;
                else if (fill == 3) v[i] = ((int)u8(r) - 128) / 16.0;
            }
            H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
            free(v);
        }
    }
    if (d >= 0) H5Dclose(d);
    H5Tclose(ft);
    H5Sclose(sp);
}

/* Writes the recipe's HDF5 file to h5path; the config and metadata texts to cfg/meta. */
static int write_h5(rd *r, unsigned mode, unsigned flags) {
    hid_t f = H5Fcreate(h5path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    const char *root = mode == 0 ? "model_weights" : mode == 2 ? "layers" : "/";
    hid_t g = strcmp(root, "/") == 0 ? H5Gopen2(f, "/", H5P_DEFAULT) : H5Gcreate2(f, root, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int vlen = flags & 1;
    unsigned nl = u8(r) % 16;
    char names[16][256];
    int n = 0;
    for (unsigned i = 0; i < nl; i++) {
        char lname[256];
        take(r, u8(r), lname, sizeof lname);
        snprintf(names[n++], sizeof names[0], "%s", lname);
        hid_t lg = lname[0] ? H5Gcreate2(g, lname, lcpl, H5P_DEFAULT, H5P_DEFAULT) : -1;
        if (lg < 0 && lname[0]) lg = H5Gopen2(g, lname, H5P_DEFAULT);
        unsigned nw = u8(r) % 8;
        char wn[8][256];
        for (unsigned k = 0; k < nw; k++) {
            take(r, u8(r), wn[k], sizeof wn[k]);
            if (lg >= 0 && wn[k][0]) put_dataset(lg, lcpl, wn[k], r);
            else put_dataset(g, lcpl, "", r); /* consumes the same fields, creates nothing */
        }
        if (lg >= 0) {
            if (mode != 2) put_strings(lg, "weight_names", wn, (int)nw, vlen);
            H5Gclose(lg);
        }
    }
    if (mode != 2) {
        if (flags & 4) {
            int half = n / 2;
            put_strings(g, "layer_names0", names, half, vlen);
            put_strings(g, "layer_names1", names + half, n - half, vlen);
        } else {
            put_strings(g, "layer_names", names, n, vlen);
        }
    }
    if (flags & 2) put_text(g, "keras_version", "2.12.0", vlen);
    if (flags & 16) H5Lcreate_soft("/elsewhere", g, "soft", H5P_DEFAULT, H5P_DEFAULT);
    if (flags & 128) {
        rd z = {0};
        put_dataset(g, lcpl, "stray/extra:0", &z);
    }
    H5Gclose(g);
    H5Pclose(lcpl);
    H5Fclose(f);
    return 0;
}

static int write_zip(const char *cfg, size_t cfg_len, const char *meta, size_t meta_len, unsigned flags) {
    FILE *fp = fopen(h5path, "rb");
    if (!fp) return -1;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *w = malloc(n > 0 ? (size_t)n : 1);
    if (!w || n <= 0 || fread(w, 1, (size_t)n, fp) != (size_t)n) abort();
    fclose(fp);
    unlink(keraspath);
    int zerr;
    zip_t *z = zip_open(keraspath, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    if (!z) abort();
    /* zip_source_buffer keeps pointers: everything stays alive until zip_close. */
    zip_source_t *s = zip_source_buffer(z, cfg, cfg_len, 0);
    if (!s || zip_file_add(z, "config.json", s, ZIP_FL_OVERWRITE) < 0) abort();
    if (!(flags & 64)) {
        s = zip_source_buffer(z, meta, meta_len, 0);
        if (!s || zip_file_add(z, "metadata.json", s, ZIP_FL_OVERWRITE) < 0) abort();
    }
    s = zip_source_buffer(z, w, (zip_uint64_t)n, 0);
    if (!s || zip_file_add(z, flags & 32 ? "model.weights.npz" : "model.weights.h5", s, ZIP_FL_OVERWRITE) < 0) abort();
    if (zip_close(z) != 0) abort();
    free(w);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/fuzz-keras-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(dir)) abort();
        snprintf(h5path, sizeof h5path, "%s/m.h5", dir);
        snprintf(keraspath, sizeof keraspath, "%s/m.keras", dir);
        snprintf(rawpath, sizeof rawpath, "%s/m.bin", dir);
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        graph = make_graph();
        atexit(cleanup);
    }
    rd r = {data, size};
    unsigned mode = u8(&r) % 4;
    const char *path = h5path;
    if (mode == 3) {
        static const uint8_t sig[4] = {0x89, 'H', 'D', 'F'};
        for (size_t i = 0; i + 4 <= r.n; i++)
            if (memcmp(r.p + i, sig, 4) == 0) return 0;
        if (r.n >= 2 && r.p[0] == 'P' && r.p[1] == 'K') return 0;
        FILE *fp = fopen(rawpath, "wb");
        if (!fp || (r.n && fwrite(r.p, 1, r.n, fp) != r.n) || fclose(fp) != 0) abort();
        path = rawpath;
    } else {
        unsigned flags = u8(&r);
        size_t cl = u16(&r);
        char *cfg = malloc(cl + 1), *meta = NULL;
        if (!cfg) abort();
        take(&r, cl, cfg, cl + 1);
        size_t ml = u16(&r);
        meta = malloc(ml + 1);
        if (!meta) abort();
        take(&r, ml, meta, ml + 1);
        if (write_h5(&r, mode, flags) != 0) abort();
        if (mode != 2 && (cfg[0] || (flags & 8))) {
            hid_t f = H5Fopen(h5path, H5F_ACC_RDWR, H5P_DEFAULT);
            hid_t root = f >= 0 ? H5Gopen2(f, "/", H5P_DEFAULT) : -1;
            if (root >= 0 && (flags & 8)) {
                hid_t sp = H5Screate(H5S_SCALAR);
                hid_t a = H5Acreate2(root, "model_config", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
                int v = 7;
                if (a >= 0) H5Awrite(a, H5T_NATIVE_INT, &v), H5Aclose(a);
                H5Sclose(sp);
            } else if (root >= 0) {
                put_text(root, "model_config", cfg, flags & 1);
            }
            if (root >= 0) H5Gclose(root);
            if (f >= 0) H5Fclose(f);
        }
        if (mode == 2) {
            if (write_zip(cfg, strlen(cfg), meta, strlen(meta), flags) != 0) abort();
            path = keraspath;
        }
        free(cfg);
        free(meta);
    }
    if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) abort(); /* the harness's own */

    dfd_keras_file *kf = NULL;
    dfd_error e;
    static int verbose = -1; /* FUZZ_KERAS_VERBOSE=1: say how far each input got (for the seeds) */
    if (verbose < 0) verbose = getenv("FUZZ_KERAS_VERBOSE") != NULL;
    if (dfd_keras_open(path, &kf, &e) == DFD_OK) {
        const dfd_keras_info *in = dfd_keras_get_info(kf);
        if (in->n_layers < 0 || in->n_weights < 0 || strlen(in->keras_version) >= sizeof in->keras_version) abort();
        int rc = dfd_keras_load(kf, graph, &e);
        if (rc != DFD_OK && e.message[0] == 0) abort();
        if (verbose) fprintf(stderr, "fuzz_keras: opened (%d layers, %d weights); load: %s\n", in->n_layers,
                             in->n_weights, rc == DFD_OK ? "ok" : e.message);
        dfd_keras_close(kf);
    } else if (e.message[0] == 0) {
        abort(); /* every refusal says why */
    } else if (verbose) {
        fprintf(stderr, "fuzz_keras: open: %s\n", e.message);
    }
    if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != 0) abort(); /* dfd left an HDF5 object open */
    return 0;
}
