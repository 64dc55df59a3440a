/* tfjs.c — TensorFlow.js layers-model weights into an nn graph (see tfjs.h).
 * Own code because no C library reads TF.js manifests; the format is a JSON manifest
 * listing tensors in order, whose bytes are the shards concatenated. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/tfjs.h"

#define TFJS_MAX_JSON (64u << 20)
#define TFJS_MAX_WEIGHTS (2000ull << 20)

typedef struct shard_buf {
    uint8_t *data;
    size_t len;
} shard_buf;

/* Concatenates the group's shards (paths relative to the model.json folder). On failure
 * out holds nothing: what the earlier shards had read is freed here. */
static int read_shards_into(const char *dir, json_t *paths, shard_buf *out, dfd_error *err);
static int read_shards(const char *dir, json_t *paths, shard_buf *out, dfd_error *err) {
    out->data = NULL;
    out->len = 0;
    int rc = read_shards_into(dir, paths, out, err);
    if (rc) {
        free(out->data);
        out->data = NULL;
        out->len = 0;
    }
    return rc;
}

static int read_shards_into(const char *dir, json_t *paths, shard_buf *out, dfd_error *err) {
    size_t n = json_array_size(paths);
    for (size_t i = 0; i < n; i++) {
        const char *p = json_string_value(json_array_get(paths, i));
        if (!p || strstr(p, "..") || p[0] == '/')
            return dfd_fail(err, DFD_E_MODEL, "TF.js manifest: bad shard path");
        size_t pl = strlen(dir) + strlen(p) + 2;
        char *full = malloc(pl);
        if (!full) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
        uint8_t *d;
        size_t len;
        int rc = dfd_path_join(full, pl, dir, p, err);
        if (!rc) rc = dfd_read_file(full, TFJS_MAX_WEIGHTS, &d, &len, err);
        free(full);
        if (rc) return rc;
        if (out->len + len > TFJS_MAX_WEIGHTS) {
            free(d);
            return dfd_fail(err, DFD_E_LIMIT, "TF.js weights over %llu bytes", (unsigned long long)TFJS_MAX_WEIGHTS);
        }
        uint8_t *nd = realloc(out->data, out->len + len + 1);
        if (!nd) {
            free(d);
            return dfd_fail(err, DFD_E_NOMEM, "out of memory");
        }
        memcpy(nd + out->len, d, len);
        free(d);
        out->data = nd;
        out->len += len;
    }
    return DFD_OK;
}

static int has_prefix(const char *s, const char *const *prefixes) {
    for (; prefixes && *prefixes; prefixes++)
        if (strncmp(s, *prefixes, strlen(*prefixes)) == 0) return 1;
    return 0;
}

/* One manifest entry: checks it, and (unless skipped) dequantises it into its param. */
static int load_entry(json_t *w, const shard_buf *buf, size_t *off, nn_graph *g, const char *const *skip,
                      unsigned char *set, dfd_tfjs_report *rep, dfd_error *err) {
    const char *name = json_string_value(json_object_get(w, "name"));
    const char *dtype = json_string_value(json_object_get(w, "dtype"));
    json_t *shape = json_object_get(w, "shape");
    if (!name || !dtype || !json_is_array(shape) || json_array_size(shape) > NN_MAX_DIMS)
        return dfd_fail(err, DFD_E_MODEL, "TF.js manifest: malformed weight entry");
    size_t count = 1;
    int dims[NN_MAX_DIMS];
    int nd = (int)json_array_size(shape);
    for (int i = 0; i < nd; i++) {
        json_int_t d = json_integer_value(json_array_get(shape, (size_t)i));
        if (d <= 0 || d > (1 << 24) || dfd_mul_size(count, (size_t)d, &count))
            return dfd_fail(err, DFD_E_MODEL, "TF.js tensor '%s': bad shape", name);
        dims[i] = (int)d;
    }
    if (strcmp(dtype, "float32") != 0)
        return dfd_fail(err, DFD_E_UNSUPPORTED, "TF.js tensor '%s': dtype '%s' not supported", name, dtype);
    json_t *q = json_object_get(w, "quantization");
    size_t elem = 4;
    double scale = 1, minv = 0;
    if (q) {
        const char *qd = json_string_value(json_object_get(q, "dtype"));
        if (!qd || (strcmp(qd, "uint8") != 0 && strcmp(qd, "uint16") != 0))
            return dfd_fail(err, DFD_E_UNSUPPORTED, "TF.js tensor '%s': quantisation '%s' not supported", name,
                            qd ? qd : "?");
        elem = qd[4] == '8' ? 1 : 2;
        scale = json_number_value(json_object_get(q, "scale"));
        minv = json_number_value(json_object_get(q, "min"));
        if (!isfinite(scale) || !isfinite(minv))
            return dfd_fail(err, DFD_E_MODEL, "TF.js tensor '%s': bad quantisation", name);
    }
    size_t bytes;
    if (dfd_mul_size(count, elem, &bytes) || *off > buf->len || bytes > buf->len - *off)
        return dfd_fail(err, DFD_E_CORRUPT, "TF.js tensor '%s' runs past the end of the weight shards", name);
    const uint8_t *src = buf->data + *off;
    *off += bytes;
    if (has_prefix(name, skip)) {
        rep->skipped++;
        return DFD_OK;
    }
    nn_param *p = nn_graph_find_param(g, name);
    if (!p) return dfd_fail(err, DFD_E_MODEL, "TF.js tensor '%s' has no parameter of that name in the model", name);
    int same = p->ndim == nd;
    for (int i = 0; same && i < nd; i++) same = p->shape[i] == dims[i];
    if (!same) return dfd_fail(err, DFD_E_MODEL, "TF.js tensor '%s': shape differs from the model's", name);
    for (size_t i = 0; i < count; i++) {
        if (elem == 4) {
            float f;
            memcpy(&f, src + 4 * i, 4); /* little-endian on every target we build for */
            p->data[i] = f;
        } else if (elem == 1) {
            p->data[i] = (float)(src[i] * scale + minv);
        } else {
            p->data[i] = (float)(dfd_rd16le(src + 2 * i) * scale + minv);
        }
    }
    for (int i = 0; i < nn_graph_param_count(g); i++)
        if (nn_graph_param(g, i) == p) {
            if (set[i]) return dfd_fail(err, DFD_E_MODEL, "TF.js tensor '%s' appears twice", name);
            set[i] = 1;
        }
    rep->loaded++;
    return DFD_OK;
}

/* Reads model_json; *root owns the document, *groups is its weightsManifest array. */
static int read_manifest(const char *model_json, json_t **root, json_t **groups, dfd_error *err) {
    uint8_t *text;
    size_t len;
    int rc = dfd_read_file(model_json, TFJS_MAX_JSON, &text, &len, err);
    if (rc) return rc;
    json_error_t je;
    *root = json_loadb((const char *)text, len, 0, &je);
    free(text);
    if (!*root) return dfd_fail(err, DFD_E_MODEL, "'%s' is not JSON: %s (line %d)", model_json, je.text, je.line);
    *groups = json_object_get(*root, "weightsManifest");
    if (!json_is_array(*groups)) {
        json_decref(*root);
        *root = NULL;
        return dfd_fail(err, DFD_E_MODEL, "'%s' is not a TF.js model (no weightsManifest)", model_json);
    }
    return DFD_OK;
}

int dfd_tfjs_load(const char *model_json, nn_graph *g, const char *const *skip_prefixes, dfd_tfjs_report *rep,
                  dfd_error *err) {
    dfd_tfjs_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    json_t *root, *groups;
    int rc = read_manifest(model_json, &root, &groups, err);
    if (rc) return rc;
    char *dir = strdup(model_json);
    if (!dir) {
        json_decref(root);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    unsigned char *set = calloc((size_t)nn_graph_param_count(g) + 1, 1);
    rc = set ? DFD_OK : dfd_fail(err, DFD_E_NOMEM, "out of memory");
    for (size_t gi = 0; gi < json_array_size(groups) && rc == DFD_OK; gi++) {
        json_t *grp = json_array_get(groups, gi);
        shard_buf buf;
        rc = read_shards(dir, json_object_get(grp, "paths"), &buf, err);
        if (rc) break;
        json_t *ws = json_object_get(grp, "weights");
        size_t off = 0;
        for (size_t i = 0; i < json_array_size(ws) && rc == DFD_OK; i++)
            rc = load_entry(json_array_get(ws, i), &buf, &off, g, skip_prefixes, set, rep, err);
        if (rc == DFD_OK && off != buf.len)
            rc = dfd_fail(err, DFD_E_CORRUPT, "TF.js shards hold %zu bytes, the manifest describes %zu", buf.len, off);
        free(buf.data);
    }
    /* Which parameters did nothing set? Statistics count too: an unset moving variance
     * would silently change the network. The caller decides whether that is fine (a new
     * head) or not. */
    for (int i = 0; rc == DFD_OK && i < nn_graph_param_count(g); i++) {
        if (set[i]) continue;
        const char *pn = nn_graph_param(g, i)->name;
        size_t pl = strlen(pn);
        if (pl >= 6 && strcmp(pn + pl - 6, "/gamma") == 0) rep->gamma_unset++;
        else if (rep->params_unset - rep->gamma_unset == 0)
            snprintf(rep->first_unset, sizeof rep->first_unset, "%s", pn);
        rep->params_unset++;
    }
    free(set);
    free(dir);
    json_decref(root);
    return rc;
}

int dfd_tfjs_has_weight(const char *model_json, const char *name, int *found, dfd_error *err) {
    *found = 0;
    json_t *root, *groups;
    int rc = read_manifest(model_json, &root, &groups, err);
    if (rc) return rc;
    for (size_t gi = 0; gi < json_array_size(groups) && !*found; gi++) {
        json_t *ws = json_object_get(json_array_get(groups, gi), "weights");
        for (size_t i = 0; i < json_array_size(ws) && !*found; i++) {
            const char *n = json_string_value(json_object_get(json_array_get(ws, i), "name"));
            *found = n && strcmp(n, name) == 0;
        }
    }
    json_decref(root);
    return DFD_OK;
}
