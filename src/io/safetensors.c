/*
 * safetensors.c — see safetensors.h. Validation is done once, at open, so that every
 * later accessor can trust offsets and sizes; the checks follow the format's own rules
 * (huggingface/safetensors, "format" in its README): the data section is exactly the
 * concatenation of the tensors' byte ranges, in any order, with nothing before, between
 * or after them.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"

/* ---- dtypes -------------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} dtypes[DFD_ST__COUNT] = {
    [DFD_ST_F32] = {"F32", 4},   [DFD_ST_F16] = {"F16", 2},         [DFD_ST_BF16] = {"BF16", 2},
    [DFD_ST_F64] = {"F64", 8},   [DFD_ST_I64] = {"I64", 8},         [DFD_ST_I32] = {"I32", 4},
    [DFD_ST_I16] = {"I16", 2},   [DFD_ST_I8] = {"I8", 1},           [DFD_ST_U64] = {"U64", 8},
    [DFD_ST_U32] = {"U32", 4},   [DFD_ST_U16] = {"U16", 2},         [DFD_ST_U8] = {"U8", 1},
    [DFD_ST_BOOL] = {"BOOL", 1}, [DFD_ST_F8_E4M3] = {"F8_E4M3", 1}, [DFD_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *dfd_st_dtype_name(dfd_st_dtype t) { return (int)t >= 0 && (int)t < DFD_ST__COUNT ? dtypes[t].name : "?"; }

size_t dfd_st_dtype_size(dfd_st_dtype t) { return (int)t >= 0 && (int)t < DFD_ST__COUNT ? dtypes[t].size : 0; }

static int dtype_from_name(const char *s) {
    for (int i = 0; i < DFD_ST__COUNT; i++)
        if (strcmp(dtypes[i].name, s) == 0) return i;
    return -1;
}

/* ---- Conversions ------------------------------------------------------------------- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- Reading ------------------------------------------------------------------------ */

typedef struct meta_kv {
    char *key, *value;
} meta_kv;

struct dfd_st_file {
    uint8_t *bytes;     /* the whole file: mapped (mapped = 1) or malloc'ed */
    size_t len;
    int mapped;
    const uint8_t *data; /* start of the data section */
    size_t data_len;
    dfd_st_tensor *tensors; /* sorted by name; names malloc'ed */
    int n;
    meta_kv *meta;          /* sorted by key */
    int n_meta;
};

void dfd_st_close(dfd_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->meta);
    if (f->mapped)
        munmap(f->bytes, f->len);
    else
        free(f->bytes);
    free(f);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const dfd_st_tensor *)a)->name, ((const dfd_st_tensor *)b)->name);
}

static int cmp_meta_key(const void *a, const void *b) {
    return strcmp(((const meta_kv *)a)->key, ((const meta_kv *)b)->key);
}

/* Orders pointers to tensors by byte range, for the contiguity check. */
static int cmp_tensor_offset(const void *a, const void *b) {
    const dfd_st_tensor *x = *(const dfd_st_tensor *const *)a, *y = *(const dfd_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    len += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* Parses one tensor entry into t (name already set). */
static int parse_tensor(const char *src, const char *name, json_t *v, size_t data_len, dfd_st_tensor *t,
                        dfd_error *err) {
    if (!json_is_object(v)) return dfd_fail(err, DFD_E_MODEL, "%s: tensor '%s': entry is not a JSON object", src, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo))
        return dfd_fail(err, DFD_E_MODEL, "%s: tensor '%s': needs string \"dtype\", array \"shape\" and array "
                        "\"data_offsets\"", src, name);
    int dt = dtype_from_name(json_string_value(jd));
    if (dt < 0)
        return dfd_fail(err, DFD_E_MODEL, "%s: tensor '%s': unknown dtype '%.32s'", src, name,
                        json_string_value(jd));
    t->dtype = (dfd_st_dtype)dt;
    size_t nd = json_array_size(js);
    if (nd > DFD_ST_MAX_DIMS)
        return dfd_fail(err, DFD_E_MODEL, "%s: tensor '%s': %zu dimensions, at most %d supported", src, name, nd,
                        DFD_ST_MAX_DIMS);
    t->ndim = (int)nd;
    size_t count = 1;
    int overflow = 0;
    for (size_t i = 0; i < nd; i++) {
        json_t *e = json_array_get(js, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return dfd_fail(err, DFD_E_MODEL, "%s: tensor '%s': shape[%zu] is not a non-negative integer", src,
                            name, i);
        t->shape[i] = (int64_t)json_integer_value(e);
        if ((uint64_t)t->shape[i] > SIZE_MAX || dfd_mul_size(count, (size_t)t->shape[i], &count)) overflow = 1;
    }
    size_t nbytes = 0;
    if (overflow || dfd_mul_size(count, dtypes[dt].size, &nbytes))
        return dfd_fail(err, DFD_E_MODEL, "%s: tensor '%s': shape is too large (size overflows)", src, name);
    t->count = count;
    t->nbytes = nbytes;
    if (json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return dfd_fail(err, DFD_E_MODEL, "%s: tensor '%s': data_offsets must be two integers", src, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b)
        return dfd_fail(err, DFD_E_MODEL, "%s: tensor '%s': data_offsets [%lld, %lld] are not an increasing pair",
                        src, name, (long long)b, (long long)e);
    if ((uint64_t)e > (uint64_t)data_len)
        return dfd_fail(err, DFD_E_MODEL, "%s: tensor '%s': data_offsets [%lld, %lld] run past the end of the "
                        "data (%zu bytes)", src, name, (long long)b, (long long)e, data_len);
    t->offset = (size_t)b;
    if ((uint64_t)(e - b) != (uint64_t)nbytes) {
        char s[128];
        shape_str(t->shape, t->ndim, s, sizeof s);
        return dfd_fail(err, DFD_E_MODEL, "%s: tensor '%s': shape %s of %s is %zu bytes but data_offsets span %lld",
                        src, name, s, dtypes[dt].name, nbytes, (long long)(e - b));
    }
    return DFD_OK;
}

static int parse_metadata(const char *src, json_t *m, dfd_st_file *f, dfd_error *err) {
    if (!json_is_object(m)) return dfd_fail(err, DFD_E_MODEL, "%s: __metadata__ is not a JSON object", src);
    size_t n = json_object_size(m);
    f->meta = dfd_calloc_array(n, sizeof *f->meta);
    if (!f->meta) return dfd_fail(err, DFD_E_NOMEM, "%s: out of memory for metadata", src);
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v))
            return dfd_fail(err, DFD_E_MODEL, "%s: __metadata__ entry '%s' is not a string", src, k);
        meta_kv *kv = &f->meta[f->n_meta];
        kv->key = strdup(k);
        kv->value = strdup(json_string_value(v));
        if (!kv->key || !kv->value) {
            free(kv->key);
            free(kv->value);
            return dfd_fail(err, DFD_E_NOMEM, "%s: out of memory for metadata", src);
        }
        f->n_meta++;
    }
    qsort(f->meta, (size_t)f->n_meta, sizeof *f->meta, cmp_meta_key);
    return DFD_OK;
}

/* Validates f->bytes/f->len and fills the tables. src names the file in messages. */
static int parse(dfd_st_file *f, const char *src, dfd_error *err) {
    if (f->len < 8)
        return dfd_fail(err, DFD_E_MODEL, "%s: truncated (%zu bytes): a safetensors file starts with an 8-byte "
                        "header length", src, f->len);
    uint64_t hlen = dfd_rd64le(f->bytes);
    if (hlen > DFD_ST_MAX_HEADER)
        return dfd_fail(err, DFD_E_MODEL, "%s: header length %llu is over the %u-byte limit", src,
                        (unsigned long long)hlen, DFD_ST_MAX_HEADER);
    if (hlen > f->len - 8)
        return dfd_fail(err, DFD_E_MODEL, "%s: header length %llu runs past the end of the file (%zu bytes after "
                        "the length field): truncated", src, (unsigned long long)hlen, f->len - 8);
    const char *hdr = (const char *)f->bytes + 8;
    f->data = f->bytes + 8 + hlen;
    f->data_len = f->len - 8 - (size_t)hlen;
    if (hlen < 2 || hdr[0] != '{')
        return dfd_fail(err, DFD_E_MODEL, "%s: header is not a JSON object (it must start with '{')", src);

    json_error_t jerr;
    json_t *root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (strstr(jerr.text, "duplicate"))
            return dfd_fail(err, DFD_E_MODEL, "%s: duplicate name in header: %s", src, jerr.text);
        return dfd_fail(err, DFD_E_MODEL, "%s: header is not valid JSON: %s (at byte %d)", src, jerr.text,
                        jerr.position);
    }
    int rc = DFD_OK;
    dfd_st_tensor **by_offset = NULL;
    if (!json_is_object(root)) {
        rc = dfd_fail(err, DFD_E_MODEL, "%s: header is not a JSON object", src);
        goto done;
    }
    size_t n = json_object_size(root);
    f->tensors = dfd_calloc_array(n, sizeof *f->tensors);
    if (!f->tensors) {
        rc = dfd_fail(err, DFD_E_NOMEM, "%s: out of memory for %zu header entries", src, n);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = parse_metadata(src, val, f, err))) goto done;
            continue;
        }
        if (!*key) {
            rc = dfd_fail(err, DFD_E_MODEL, "%s: a tensor has an empty name", src);
            goto done;
        }
        dfd_st_tensor *t = &f->tensors[f->n];
        if ((rc = parse_tensor(src, key, val, f->data_len, t, err))) goto done;
        t->name = strdup(key);
        if (!t->name) {
            rc = dfd_fail(err, DFD_E_NOMEM, "%s: out of memory", src);
            goto done;
        }
        f->n++;
    }

    /* The byte ranges, in order, must tile the data section exactly. */
    by_offset = dfd_calloc_array((size_t)f->n, sizeof *by_offset);
    if (!by_offset) {
        rc = dfd_fail(err, DFD_E_NOMEM, "%s: out of memory", src);
        goto done;
    }
    for (int i = 0; i < f->n; i++) by_offset[i] = &f->tensors[i];
    qsort(by_offset, (size_t)f->n, sizeof *by_offset, cmp_tensor_offset);
    size_t expect = 0;
    for (int i = 0; i < f->n; i++) {
        const dfd_st_tensor *t = by_offset[i];
        if (t->offset < expect) {
            const dfd_st_tensor *p = by_offset[i - 1];
            rc = dfd_fail(err, DFD_E_MODEL, "%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", src, p->name,
                          p->offset, p->offset + p->nbytes, t->name, t->offset, t->offset + t->nbytes);
            goto done;
        }
        if (t->offset > expect) {
            rc = dfd_fail(err, DFD_E_MODEL, "%s: %zu unused bytes before tensor '%s' (data is not contiguous)", src,
                          t->offset - expect, t->name);
            goto done;
        }
        expect = t->offset + t->nbytes;
    }
    if (expect != f->data_len) {
        rc = dfd_fail(err, DFD_E_MODEL, "%s: %zu bytes of data after the last tensor (data section is %zu bytes)",
                      src, f->data_len - expect, f->data_len);
        goto done;
    }
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_tensor_name);
done:
    free(by_offset);
    json_decref(root);
    return rc;
}

static int finish_open(dfd_st_file *f, const char *src, dfd_st_file **out, dfd_error *err) {
    int rc = parse(f, src, err);
    if (rc) {
        dfd_st_close(f);
        return rc;
    }
    *out = f;
    return DFD_OK;
}

int dfd_st_open(const char *path, dfd_st_file **out, dfd_error *err) {
    if (!out || !path) return dfd_fail(err, DFD_E_ARG, "dfd_st_open: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dfd_fail(err, DFD_E_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dfd_fail(err, DFD_E_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)st.st_size >= SIZE_MAX) {
        close(fd);
        return dfd_fail(err, DFD_E_LIMIT, "'%s' is too large to map", path);
    }
    dfd_st_file *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    f->len = (size_t)st.st_size;
    if (f->len > 0) {
        /* Mapped read-only and private: a model of hundreds of MB costs no copy, and pages
         * of tensors that are never read are never loaded. */
        void *m = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(f);
            return dfd_fail(err, DFD_E_IO, "cannot map '%s': %s", path, strerror(e));
        }
        f->bytes = m;
        f->mapped = 1;
    }
    close(fd);
    return finish_open(f, path, out, err);
}

int dfd_st_open_memory(const void *data, size_t len, const char *name, dfd_st_file **out, dfd_error *err) {
    if (!out || (!data && len)) return dfd_fail(err, DFD_E_ARG, "dfd_st_open_memory: NULL argument");
    *out = NULL;
    dfd_st_file *f = calloc(1, sizeof *f);
    if (!f) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    f->bytes = malloc(len ? len : 1);
    if (!f->bytes) {
        free(f);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory copying %zu bytes", len);
    }
    if (len) memcpy(f->bytes, data, len);
    f->len = len;
    return finish_open(f, name ? name : "(memory)", out, err);
}

int dfd_st_count(const dfd_st_file *f) { return f ? f->n : 0; }

const dfd_st_tensor *dfd_st_tensor_at(const dfd_st_file *f, int i) {
    return f && i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const dfd_st_tensor *dfd_st_find(const dfd_st_file *f, const char *name) {
    if (!f || !name || f->n == 0) return NULL;
    dfd_st_tensor key = {.name = name};
    return bsearch(&key, f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_tensor_name);
}

const uint8_t *dfd_st_raw(const dfd_st_file *f, const dfd_st_tensor *t) {
    return f && t ? f->data + t->offset : NULL;
}

int dfd_st_read_f32(const dfd_st_file *f, const dfd_st_tensor *t, float *dst, size_t count, dfd_error *err) {
    if (!f || !t || (!dst && count)) return dfd_fail(err, DFD_E_ARG, "dfd_st_read_f32: NULL argument");
    if (count != t->count)
        return dfd_fail(err, DFD_E_ARG, "tensor '%s' has %zu values, the destination %zu", t->name, t->count, count);
    const uint8_t *p = f->data + t->offset;
    switch (t->dtype) {
    case DFD_ST_F32:
        for (size_t i = 0; i < count; i++) dst[i] = bits_f32(dfd_rd32le(p + 4 * i));
        return DFD_OK;
    case DFD_ST_BF16:
        for (size_t i = 0; i < count; i++) dst[i] = dfd_bf16_to_f32(dfd_rd16le(p + 2 * i));
        return DFD_OK;
    case DFD_ST_F16:
        for (size_t i = 0; i < count; i++) dst[i] = dfd_f16_to_f32(dfd_rd16le(p + 2 * i));
        return DFD_OK;
    case DFD_ST_F64:
        for (size_t i = 0; i < count; i++) {
            uint64_t u = dfd_rd64le(p + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            dst[i] = (float)d;
        }
        return DFD_OK;
    default:
        return dfd_fail(err, DFD_E_UNSUPPORTED, "tensor '%s': dtype %s cannot be read as fp32", t->name,
                        dtypes[t->dtype].name);
    }
}

const char *dfd_st_meta_get(const dfd_st_file *f, const char *key) {
    if (!f || !key || f->n_meta == 0) return NULL;
    meta_kv k = {.key = (char *)key};
    const meta_kv *m = bsearch(&k, f->meta, (size_t)f->n_meta, sizeof *f->meta, cmp_meta_key);
    return m ? m->value : NULL;
}

int dfd_st_meta_count(const dfd_st_file *f) { return f ? f->n_meta : 0; }

int dfd_st_meta_at(const dfd_st_file *f, int i, const char **key, const char **value) {
    if (!f || i < 0 || i >= f->n_meta) return DFD_E_NOT_FOUND;
    if (key) *key = f->meta[i].key;
    if (value) *value = f->meta[i].value;
    return DFD_OK;
}

/* ---- Writing ------------------------------------------------------------------------ */

typedef struct wtensor {
    char *name;
    int ndim;
    int64_t shape[DFD_ST_MAX_DIMS];
    const float *data;
    size_t count;
    dfd_st_dtype as;
    size_t offset; /* assigned when serialising */
} wtensor;

struct dfd_st_writer {
    wtensor *t;
    int n, cap;
    meta_kv *meta;
    int n_meta, cap_meta;
};

dfd_st_writer *dfd_st_writer_new(void) { return calloc(1, sizeof(dfd_st_writer)); }

void dfd_st_writer_free(dfd_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->meta);
    free(w);
}

int dfd_st_writer_add_f32(dfd_st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data,
                          dfd_st_dtype as, dfd_error *err) {
    if (!w || !name) return dfd_fail(err, DFD_E_ARG, "dfd_st_writer_add_f32: NULL argument");
    if (!*name || strcmp(name, "__metadata__") == 0)
        return dfd_fail(err, DFD_E_ARG, "'%s' cannot name a tensor", name);
    if (as != DFD_ST_F32 && as != DFD_ST_BF16)
        return dfd_fail(err, DFD_E_UNSUPPORTED, "tensor '%s': can only be written as F32 or BF16", name);
    if (ndim < 0 || ndim > DFD_ST_MAX_DIMS || (ndim && !shape))
        return dfd_fail(err, DFD_E_ARG, "tensor '%s': %d dimensions", name, ndim);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX || dfd_mul_size(count, (size_t)shape[i], &count))
            return dfd_fail(err, DFD_E_ARG, "tensor '%s': bad shape", name);
    }
    size_t nbytes;
    if (dfd_mul_size(count, 4, &nbytes)) return dfd_fail(err, DFD_E_ARG, "tensor '%s' is too large", name);
    if (count && !data) return dfd_fail(err, DFD_E_ARG, "tensor '%s': no data", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) return dfd_fail(err, DFD_E_ARG, "duplicate tensor name '%s'", name);
    wtensor *nt = dfd_grow(w->t, &w->cap, w->n + 1, sizeof *nt, 64);
    if (!nt) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    w->t = nt;
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    t->count = count;
    t->as = as;
    w->n++;
    return DFD_OK;
}

int dfd_st_writer_set_meta(dfd_st_writer *w, const char *key, const char *value, dfd_error *err) {
    if (!w || !key || !value) return dfd_fail(err, DFD_E_ARG, "dfd_st_writer_set_meta: NULL argument");
    char *v = strdup(value);
    if (!v) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = v;
            return DFD_OK;
        }
    meta_kv *nm = dfd_grow(w->meta, &w->cap_meta, w->n_meta + 1, sizeof *nm, 16);
    if (!nm) {
        free(v);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    w->meta = nm;
    char *k = strdup(key);
    if (!k) {
        free(v);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    w->meta[w->n_meta].key = k;
    w->meta[w->n_meta].value = v;
    w->n_meta++;
    return DFD_OK;
}

/* Data order: wider elements first (so every F32 tensor stays 4-byte aligned after the
 * 8-aligned header, as the reference writer does), then by name. */
static int cmp_wtensor(const void *a, const void *b) {
    const wtensor *x = *(const wtensor *const *)a, *y = *(const wtensor *const *)b;
    size_t sx = dtypes[x->as].size, sy = dtypes[y->as].size;
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Builds the padded header (with its 8-byte length prefix) and assigns offsets; returns
 * the order in which tensor data follows in *order (malloc'ed). */
static int build_header(dfd_st_writer *w, char **hdr_out, size_t *hdr_len, wtensor ***order_out, size_t *data_len,
                        dfd_error *err) {
    *hdr_out = NULL;
    *order_out = NULL;
    wtensor **order = dfd_calloc_array((size_t)w->n, sizeof *order);
    json_t *root = json_object();
    char *txt = NULL;
    int rc = DFD_OK;
    if (!order || !root) {
        rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < w->n; i++) order[i] = &w->t[i];
    qsort(order, (size_t)w->n, sizeof *order, cmp_wtensor);
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        wtensor *t = order[i];
        size_t nb = t->count * dtypes[t->as].size; /* checked when added (count * 4) */
        t->offset = off;
        if (dfd_add_size(off, nb, &off)) {
            rc = dfd_fail(err, DFD_E_LIMIT, "tensors too large in total");
            goto fail;
        }
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        int bad = !e || !shape || !offs;
        for (int d = 0; !bad && d < t->ndim; d++) bad = json_array_append_new(shape, json_integer(t->shape[d]));
        bad = bad || json_array_append_new(offs, json_integer((json_int_t)t->offset)) ||
              json_array_append_new(offs, json_integer((json_int_t)off)) ||
              json_object_set_new(e, "dtype", json_string(dtypes[t->as].name));
        if (bad) {
            json_decref(e);
            json_decref(shape);
            json_decref(offs);
            rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
            goto fail;
        }
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        if (json_object_set_new(root, t->name, e)) {
            rc = dfd_fail(err, DFD_E_ARG, "tensor name '%s' is not valid UTF-8", t->name);
            goto fail;
        }
    }
    if (w->n_meta) {
        json_t *m = json_object();
        if (!m || json_object_set_new(root, "__metadata__", m)) {
            rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < w->n_meta; i++) {
            json_t *s = json_string(w->meta[i].value);
            if (!s || json_object_set_new(m, w->meta[i].key, s)) {
                rc = dfd_fail(err, DFD_E_ARG, "metadata '%s' is not valid UTF-8", w->meta[i].key);
                goto fail;
            }
        }
    }
    txt = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!txt) {
        rc = dfd_fail(err, DFD_E_NOMEM, "out of memory serialising the header");
        goto fail;
    }
    size_t tl = strlen(txt);
    size_t padded = (tl + 7) & ~(size_t)7; /* 8 + padded is a multiple of 8 */
    char *h = malloc(8 + padded);
    if (!h) {
        rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < 8; i++) h[i] = (char)(((uint64_t)padded >> (8 * i)) & 0xff);
    memcpy(h + 8, txt, tl);
    memset(h + 8 + tl, ' ', padded - tl);
    free(txt);
    json_decref(root);
    *hdr_out = h;
    *hdr_len = 8 + padded;
    *order_out = order;
    *data_len = off;
    return DFD_OK;
fail:
    free(txt);
    json_decref(root);
    free(order);
    return rc;
}

/* Converts values [from, from+n) of t into dst in its stored little-endian form. */
static void encode(const wtensor *t, size_t from, size_t n, uint8_t *dst) {
    if (t->as == DFD_ST_F32) {
        for (size_t i = 0; i < n; i++) {
            uint32_t u = f32_bits(t->data[from + i]);
            for (int b = 0; b < 4; b++) dst[4 * i + b] = (uint8_t)(u >> (8 * b));
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = dfd_f32_to_bf16(t->data[from + i]);
            dst[2 * i] = (uint8_t)h;
            dst[2 * i + 1] = (uint8_t)(h >> 8);
        }
    }
}

int dfd_st_writer_to_memory(dfd_st_writer *w, uint8_t **data, size_t *len, dfd_error *err) {
    if (!w || !data || !len) return dfd_fail(err, DFD_E_ARG, "dfd_st_writer_to_memory: NULL argument");
    *data = NULL;
    *len = 0;
    char *hdr;
    size_t hl, dl, total;
    wtensor **order;
    int rc = build_header(w, &hdr, &hl, &order, &dl, err);
    if (rc) return rc;
    if (dfd_add_size(hl, dl, &total)) {
        free(hdr);
        free(order);
        return dfd_fail(err, DFD_E_LIMIT, "file too large");
    }
    uint8_t *buf = malloc(total);
    if (!buf) {
        free(hdr);
        free(order);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory for a %zu-byte file", total);
    }
    memcpy(buf, hdr, hl);
    for (int i = 0; i < w->n; i++) encode(order[i], 0, order[i]->count, buf + hl + order[i]->offset);
    free(hdr);
    free(order);
    *data = buf;
    *len = total;
    return DFD_OK;
}

int dfd_st_writer_save(dfd_st_writer *w, const char *path, dfd_error *err) {
    if (!w || !path) return dfd_fail(err, DFD_E_ARG, "dfd_st_writer_save: NULL argument");
    char *hdr;
    size_t hl, dl;
    wtensor **order;
    int rc = build_header(w, &hdr, &hl, &order, &dl, err);
    if (rc) return rc;
    /* Written to a temporary name beside the target and renamed, so a reader never sees
     * a half-written model; the counter keeps concurrent saves in one process apart. */
    static atomic_uint counter;
    size_t n = strlen(path) + 48;
    char *tmp = malloc(n);
    if (!tmp) {
        free(hdr);
        free(order);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    snprintf(tmp, n, "%s.tmp%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    FILE *fp = fopen(tmp, "wbx");
    if (!fp) {
        int e = errno;
        free(tmp);
        free(hdr);
        free(order);
        return dfd_fail(err, DFD_E_IO, "cannot create '%s': %s", path, strerror(e));
    }
    int ok = fwrite(hdr, 1, hl, fp) == hl;
    uint8_t chunk[16384];
    for (int i = 0; ok && i < w->n; i++) {
        const wtensor *t = order[i];
        size_t per = sizeof chunk / dtypes[t->as].size;
        for (size_t from = 0; ok && from < t->count; from += per) {
            size_t k = t->count - from < per ? t->count - from : per;
            encode(t, from, k, chunk);
            ok = fwrite(chunk, dtypes[t->as].size, k, fp) == k;
        }
    }
    ok = (fflush(fp) == 0) && ok;
    int e = errno;
    ok = (fclose(fp) == 0) && ok;
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        remove(tmp);
        rc = dfd_fail(err, DFD_E_IO, "cannot write '%s': %s", path, strerror(e ? e : EIO));
    }
    free(tmp);
    free(hdr);
    free(order);
    return rc;
}
