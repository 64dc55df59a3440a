/*
 * tflite.c — reading TensorFlow Lite flatbuffers without the flatbuffers library.
 *
 * A flatbuffer is a tree of tables addressed by 32-bit offsets: a table starts with a
 * signed offset back to its vtable, whose 16-bit entries give each field's position
 * inside the table (0 = absent, use the schema default). Every access below goes through
 * fb_* helpers that check the position and size against the file, so a crafted file can
 * make parsing fail but never read outside the buffer. Field numbers are those of
 * tensorflow/lite/schema/schema.fbs (Model, SubGraph, Tensor, Buffer, Operator, ...).
 */
#include "io/tflite.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Operator names (BuiltinOperator, schema order) ------------------------------- */

static const char *const op_names[] = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION", "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION",
    "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "RNN",
    "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH", "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL", "CUSTOM",
    "EMBEDDING_LOOKUP_SPARSE", "PAD", "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER", "BATCH_TO_SPACE_ND",
    "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB", "DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2", "SPLIT", "LOG_SOFTMAX", "DELEGATE",
    "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM", "ARG_MAX", "MINIMUM", "LESS", "NEG",
    "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL", "SELECT", "SLICE", "SIN", "TRANSPOSE_CONV",
    "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG", "SUM", "SQRT", "RSQRT",
    "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR",
    "ONE_HOT", "LOGICAL_AND", "LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY",
    "SQUARE", "ZEROS_LIKE", "FILL", "FLOOR_MOD", "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU",
    "SQUARED_DIFFERENCE", "MIRROR_PAD", "ABS", "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N",
    "GATHER_ND", "COS", "WHERE", "RANK", "ELU", "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE",
    "MATRIX_SET_DIAG", "ROUND", "HARD_SWISH", "IF", "WHILE", "NON_MAX_SUPPRESSION_V4",
    "NON_MAX_SUPPRESSION_V5", "SCATTER_ND", "SELECT_V2", "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL",
    "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM", "CALL_ONCE", "BROADCAST_TO", "RFFT2D", "CONV_3D",
    "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE",
    "REDUCE_ALL", "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE",
    "BROADCAST_ARGS",
};

const char *tfl_op_name(int code) {
    if (code < 0 || (size_t)code >= sizeof op_names / sizeof op_names[0]) return "UNKNOWN";
    return op_names[code];
}

static int op_supported(int code) {
    switch (code) {
    case TFL_OP_ADD: case TFL_OP_CONCATENATION: case TFL_OP_CONV_2D: case TFL_OP_DEPTHWISE_CONV_2D:
    case TFL_OP_DEQUANTIZE: case TFL_OP_MAX_POOL_2D: case TFL_OP_RELU: case TFL_OP_RESHAPE:
    case TFL_OP_RESIZE_BILINEAR: case TFL_OP_PAD: case TFL_OP_PRELU:
        return 1;
    default:
        return 0;
    }
}

/* BuiltinOptions union type each supported operator carries (0 = none expected). */
static int options_type_for(int code) {
    switch (code) {
    case TFL_OP_CONV_2D: return 1;           /* Conv2DOptions */
    case TFL_OP_DEPTHWISE_CONV_2D: return 2; /* DepthwiseConv2DOptions */
    case TFL_OP_MAX_POOL_2D: return 5;       /* Pool2DOptions */
    case TFL_OP_CONCATENATION: return 10;    /* ConcatenationOptions */
    case TFL_OP_ADD: return 11;              /* AddOptions */
    case TFL_OP_RESIZE_BILINEAR: return 15;  /* ResizeBilinearOptions */
    case TFL_OP_RESHAPE: return 17;          /* ReshapeOptions */
    case TFL_OP_PAD: return 22;              /* PadOptions */
    case TFL_OP_DEQUANTIZE: return 38;       /* DequantizeOptions */
    default: return 0;
    }
}

/* ---- Checked flatbuffer access -------------------------------------------------- */

typedef struct fb {
    const uint8_t *p;
    size_t len;
    dfd_error *err;
} fb;

typedef struct fbt {
    size_t pos;       /* table start */
    size_t vt;        /* vtable start */
    unsigned vt_size; /* bytes of vtable */
    unsigned size;    /* bytes of table (inline part) */
} fbt;

static int corrupt(fb *b, const char *what) {
    return dfd_fail(b->err, DFD_E_CORRUPT, "malformed TFLite file: %s", what);
}

static int in_file(const fb *b, size_t pos, size_t n) { return pos <= b->len && n <= b->len - pos; }

/* Opens the table at pos, checking it and its vtable lie in the file. */
static int fb_table(fb *b, size_t pos, fbt *t, const char *what) {
    if (!in_file(b, pos, 4)) return corrupt(b, what);
    int32_t so = (int32_t)dfd_rd32le(b->p + pos);
    int64_t vt = (int64_t)pos - (int64_t)so;
    if (vt < 0 || !in_file(b, (size_t)vt, 4)) return corrupt(b, what);
    t->pos = pos;
    t->vt = (size_t)vt;
    t->vt_size = dfd_rd16le(b->p + t->vt);
    t->size = dfd_rd16le(b->p + t->vt + 2);
    if (t->vt_size < 4 || (t->vt_size & 1) || !in_file(b, t->vt, t->vt_size) || t->size < 4 ||
        !in_file(b, pos, t->size))
        return corrupt(b, what);
    return DFD_OK;
}

/* Position of field `id` holding `size` bytes, 0 when absent; SIZE_MAX when the vtable
 * points outside the table. */
static size_t fb_field(const fb *b, const fbt *t, int id, size_t size) {
    size_t e = 4 + 2 * (size_t)id;
    if (e + 2 > t->vt_size) return 0;
    unsigned off = dfd_rd16le(b->p + t->vt + e);
    if (off == 0) return 0;
    if (off < 4 || off + size > t->size) return SIZE_MAX;
    return t->pos + off;
}

static int fb_scalar(fb *b, const fbt *t, int id, size_t size, uint64_t def, uint64_t *v, const char *what) {
    size_t f = fb_field(b, t, id, size);
    if (f == SIZE_MAX) return corrupt(b, what);
    if (f == 0) {
        *v = def;
        return DFD_OK;
    }
    switch (size) {
    case 1: *v = b->p[f]; break;
    case 2: *v = dfd_rd16le(b->p + f); break;
    case 4: *v = dfd_rd32le(b->p + f); break;
    default: *v = dfd_rd64le(b->p + f); break;
    }
    return DFD_OK;
}

/* Follows the offset stored in field `id`: *target = 0 when the field is absent. */
static int fb_ref(fb *b, const fbt *t, int id, size_t *target, const char *what) {
    *target = 0;
    size_t f = fb_field(b, t, id, 4);
    if (f == SIZE_MAX) return corrupt(b, what);
    if (f == 0) return DFD_OK;
    uint32_t off = dfd_rd32le(b->p + f);
    if (off == 0 || !in_file(b, f, (size_t)off) || !in_file(b, f + off, 4)) return corrupt(b, what);
    *target = f + off;
    return DFD_OK;
}

/* A vector field: *start = first element, *count elements of elem bytes (0, 0 if absent). */
static int fb_vector(fb *b, const fbt *t, int id, size_t elem, size_t *start, size_t *count, const char *what) {
    size_t v;
    *start = 0;
    *count = 0;
    int rc = fb_ref(b, t, id, &v, what);
    if (rc || v == 0) return rc;
    size_t n = dfd_rd32le(b->p + v), bytes;
    if (dfd_mul_size(n, elem, &bytes) || !in_file(b, v + 4, bytes)) return corrupt(b, what);
    *start = v + 4;
    *count = n;
    return DFD_OK;
}

/* Element i of a vector of tables. */
static int fb_vector_table(fb *b, size_t start, size_t i, fbt *t, const char *what) {
    size_t e = start + 4 * i;
    uint32_t off = dfd_rd32le(b->p + e);
    if (!in_file(b, e, (size_t)off)) return corrupt(b, what);
    return fb_table(b, e + off, t, what);
}

/* A string field copied into a new NUL-terminated string ("" when absent). */
static int fb_string(fb *b, const fbt *t, int id, char **out, const char *what) {
    size_t s, n;
    *out = NULL;
    int rc = fb_vector(b, t, id, 1, &s, &n, what);
    if (rc) return rc;
    char *str = malloc(n + 1);
    if (!str) return dfd_fail(b->err, DFD_E_NOMEM, "out of memory reading a TFLite string");
    if (n) memcpy(str, b->p + s, n);
    str[n] = '\0';
    *out = str;
    return DFD_OK;
}

/* A vector of int32 indices, each -1 or < limit, into out[max]. */
static int fb_indices(fb *b, const fbt *t, int id, int *out, int max, int *n_out, int limit, const char *what) {
    size_t s, n;
    int rc = fb_vector(b, t, id, 4, &s, &n, what);
    if (rc) return rc;
    if (n > (size_t)max)
        return dfd_fail(b->err, DFD_E_UNSUPPORTED, "TFLite %s lists %zu tensors (at most %d supported)", what, n, max);
    for (size_t i = 0; i < n; i++) {
        int32_t v = (int32_t)dfd_rd32le(b->p + s + 4 * i);
        if (v < -1 || v >= limit) return corrupt(b, what);
        out[i] = v;
    }
    *n_out = (int)n;
    return DFD_OK;
}

/* ---- Model ------------------------------------------------------------------------- */

void tfl_free(tfl_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_tensors; i++) {
        free(m->tensors[i].name);
        free(m->tensors[i].f32);
        free(m->tensors[i].i32);
    }
    free(m->tensors);
    free(m->ops);
    free(m->description);
    free(m);
}

typedef struct bufref {
    size_t start, len;
} bufref;

static int parse_buffers(fb *b, const fbt *model, bufref **out, size_t *n_out) {
    size_t s, n;
    *out = NULL;
    *n_out = 0;
    int rc = fb_vector(b, model, 4, 4, &s, &n, "buffer list");
    if (rc) return rc;
    bufref *bufs = dfd_calloc_array(n, sizeof *bufs);
    if (!bufs) return dfd_fail(b->err, DFD_E_NOMEM, "out of memory for %zu TFLite buffers", n);
    for (size_t i = 0; i < n; i++) {
        fbt t;
        size_t ds, dn;
        uint64_t off = 0, size = 0; /* set by fb_scalar; zero so gcc -O3 sees them set */
        if ((rc = fb_vector_table(b, s, i, &t, "buffer")) || (rc = fb_vector(b, &t, 0, 1, &ds, &dn, "buffer data")) ||
            (rc = fb_scalar(b, &t, 1, 8, 0, &off, "buffer offset")) ||
            (rc = fb_scalar(b, &t, 2, 8, 0, &size, "buffer size"))) {
            free(bufs);
            return rc;
        }
        if (off > 1) { /* data stored after the flatbuffer (models over 2 GB) */
            if (off > b->len || size > b->len - off) {
                free(bufs);
                return corrupt(b, "buffer past the end of the file");
            }
            ds = (size_t)off;
            dn = (size_t)size;
        }
        bufs[i].start = ds;
        bufs[i].len = dn;
    }
    *out = bufs;
    *n_out = n;
    return DFD_OK;
}

static size_t type_size(int type) {
    switch (type) {
    case TFL_FLOAT32: case TFL_INT32: return 4;
    case TFL_FLOAT16: return 2;
    case TFL_INT64: return 8;
    default: return 0;
    }
}

static int parse_tensor(fb *b, size_t vec, size_t i, const bufref *bufs, size_t n_bufs, tfl_tensor *ts) {
    fbt t;
    size_t ss, sn;
    uint64_t type = 0, buffer = 0; /* set by fb_scalar; zero so gcc -O3 sees them set */
    int rc;
    if ((rc = fb_vector_table(b, vec, i, &t, "tensor")) || (rc = fb_vector(b, &t, 0, 4, &ss, &sn, "tensor shape")) ||
        (rc = fb_scalar(b, &t, 1, 1, 0, &type, "tensor type")) ||
        (rc = fb_scalar(b, &t, 2, 4, 0, &buffer, "tensor buffer")) || (rc = fb_string(b, &t, 3, &ts->name, "tensor name")))
        return rc;
    if (sn > TFL_MAX_DIMS)
        return dfd_fail(b->err, DFD_E_UNSUPPORTED, "TFLite tensor '%s' has %zu dimensions (at most %d supported)",
                        ts->name, sn, TFL_MAX_DIMS);
    ts->ndim = (int)sn;
    ts->type = (int)type;
    size_t count = 1;
    for (size_t d = 0; d < sn; d++) {
        int32_t v = (int32_t)dfd_rd32le(b->p + ss + 4 * d);
        if (v < 0 || v > (1 << 24)) return corrupt(b, "tensor dimension out of range");
        ts->shape[d] = v;
        if (dfd_mul_size(count, (size_t)v, &count) || count > ((size_t)1 << 31))
            return corrupt(b, "tensor too large");
    }
    ts->count = count;
    size_t q;
    if ((rc = fb_ref(b, &t, 6, &q, "tensor sparsity"))) return rc;
    if (q) return dfd_fail(b->err, DFD_E_UNSUPPORTED, "TFLite tensor '%s' is sparse (not supported)", ts->name);
    /* Quantisation parameters with scales mean integer arithmetic, which dfd does not do. */
    if ((rc = fb_ref(b, &t, 4, &q, "tensor quantization"))) return rc;
    if (q) {
        fbt qt;
        size_t qs, qn;
        if ((rc = fb_table(b, q, &qt, "quantization")) || (rc = fb_vector(b, &qt, 2, 4, &qs, &qn, "quantization scale")))
            return rc;
        if (qn && ts->type != TFL_FLOAT32 && ts->type != TFL_FLOAT16)
            return dfd_fail(b->err, DFD_E_UNSUPPORTED, "TFLite tensor '%s' is quantized (not supported)", ts->name);
    }
    if (buffer >= n_bufs) return corrupt(b, "tensor buffer index out of range");
    const bufref *br = &bufs[buffer];
    if (br->len == 0) return DFD_OK; /* not a constant */
    size_t es = type_size(ts->type), want;
    if (es == 0)
        return dfd_fail(b->err, DFD_E_UNSUPPORTED, "TFLite constant '%s' has type %d (not supported)", ts->name, ts->type);
    if (dfd_mul_size(count, es, &want) || want != br->len)
        return dfd_fail(b->err, DFD_E_CORRUPT, "malformed TFLite file: constant '%s' holds %zu bytes, its shape needs %zu",
                        ts->name, br->len, want);
    const uint8_t *d = b->p + br->start;
    if (ts->type == TFL_FLOAT32 || ts->type == TFL_FLOAT16) {
        ts->f32 = dfd_malloc_array(count, sizeof(float));
        if (!ts->f32) return dfd_fail(b->err, DFD_E_NOMEM, "out of memory for tensor '%s'", ts->name);
        for (size_t k = 0; k < count; k++) {
            if (ts->type == TFL_FLOAT32) {
                uint32_t u = dfd_rd32le(d + 4 * k);
                memcpy(&ts->f32[k], &u, 4);
            } else {
                ts->f32[k] = dfd_f16_to_f32(dfd_rd16le(d + 2 * k));
            }
        }
    } else {
        ts->i32 = dfd_malloc_array(count, sizeof(int32_t));
        if (!ts->i32) return dfd_fail(b->err, DFD_E_NOMEM, "out of memory for tensor '%s'", ts->name);
        for (size_t k = 0; k < count; k++) {
            if (ts->type == TFL_INT32) {
                ts->i32[k] = (int32_t)dfd_rd32le(d + 4 * k);
            } else {
                int64_t v = (int64_t)dfd_rd64le(d + 8 * k);
                if (v < INT32_MIN || v > INT32_MAX) return corrupt(b, "int64 constant out of int32 range");
                ts->i32[k] = (int32_t)v;
            }
        }
    }
    return DFD_OK;
}

/* A 32-bit window option (stride, dilation, pool size, depth multiplier) into *out, when
 * it lies in 0..TFL_MAX_WINDOW (0 = absent; the converter refuses it where it needs one). */
static int window_option(fb *b, uint64_t v, const char *opname, const char *what, int *out) {
    if (v > TFL_MAX_WINDOW) /* a negative int32 reads as >= 2^31 */
        return dfd_fail(b->err, DFD_E_CORRUPT, "malformed TFLite file: %s %s %" PRId32 " is out of range (0..%d)",
                        opname, what, (int32_t)(uint32_t)v, TFL_MAX_WINDOW);
    *out = (int)v;
    return DFD_OK;
}

static int parse_options(fb *b, const fbt *opt, tfl_op *op) {
    uint64_t v[7] = {0};
    int rc = DFD_OK;
    switch (op->code) {
    case TFL_OP_CONV_2D: /* padding, stride_w, stride_h, activation, dilation_w, dilation_h */
        if ((rc = fb_scalar(b, opt, 0, 1, 0, &v[0], "conv options")) || (rc = fb_scalar(b, opt, 1, 4, 0, &v[1], "conv options")) ||
            (rc = fb_scalar(b, opt, 2, 4, 0, &v[2], "conv options")) || (rc = fb_scalar(b, opt, 3, 1, 0, &v[3], "conv options")) ||
            (rc = fb_scalar(b, opt, 4, 4, 1, &v[4], "conv options")) || (rc = fb_scalar(b, opt, 5, 4, 1, &v[5], "conv options")))
            return rc;
        op->padding = (int)v[0];
        op->activation = (int)v[3];
        if ((rc = window_option(b, v[1], "CONV_2D", "stride_w", &op->stride_w)) ||
            (rc = window_option(b, v[2], "CONV_2D", "stride_h", &op->stride_h)) ||
            (rc = window_option(b, v[4], "CONV_2D", "dilation_w", &op->dilation_w)) ||
            (rc = window_option(b, v[5], "CONV_2D", "dilation_h", &op->dilation_h)))
            return rc;
        break;
    case TFL_OP_DEPTHWISE_CONV_2D: /* padding, stride_w, stride_h, depth_multiplier, activation, dil_w, dil_h */
        for (int i = 0; i < 7 && !rc; i++)
            rc = fb_scalar(b, opt, i, (i == 0 || i == 4) ? 1 : 4, (i >= 5) ? 1 : 0, &v[i], "depthwise options");
        if (rc) return rc;
        op->padding = (int)v[0];
        op->activation = (int)v[4];
        if ((rc = window_option(b, v[1], "DEPTHWISE_CONV_2D", "stride_w", &op->stride_w)) ||
            (rc = window_option(b, v[2], "DEPTHWISE_CONV_2D", "stride_h", &op->stride_h)) ||
            (rc = window_option(b, v[3], "DEPTHWISE_CONV_2D", "depth_multiplier", &op->depth_multiplier)) ||
            (rc = window_option(b, v[5], "DEPTHWISE_CONV_2D", "dilation_w", &op->dilation_w)) ||
            (rc = window_option(b, v[6], "DEPTHWISE_CONV_2D", "dilation_h", &op->dilation_h)))
            return rc;
        break;
    case TFL_OP_MAX_POOL_2D: /* padding, stride_w, stride_h, filter_width, filter_height, activation */
        for (int i = 0; i < 6 && !rc; i++)
            rc = fb_scalar(b, opt, i, (i == 0 || i == 5) ? 1 : 4, 0, &v[i], "pool options");
        if (rc) return rc;
        op->padding = (int)v[0];
        op->activation = (int)v[5];
        if ((rc = window_option(b, v[1], "MAX_POOL_2D", "stride_w", &op->stride_w)) ||
            (rc = window_option(b, v[2], "MAX_POOL_2D", "stride_h", &op->stride_h)) ||
            (rc = window_option(b, v[3], "MAX_POOL_2D", "filter_width", &op->filter_w)) ||
            (rc = window_option(b, v[4], "MAX_POOL_2D", "filter_height", &op->filter_h)))
            return rc;
        break;
    case TFL_OP_CONCATENATION: /* axis, activation */
        if ((rc = fb_scalar(b, opt, 0, 4, 0, &v[0], "concatenation options")) ||
            (rc = fb_scalar(b, opt, 1, 1, 0, &v[1], "concatenation options")))
            return rc;
        op->axis = (int32_t)v[0];
        op->activation = (int)v[1];
        break;
    case TFL_OP_ADD: /* activation */
        if ((rc = fb_scalar(b, opt, 0, 1, 0, &v[0], "add options"))) return rc;
        op->activation = (int)v[0];
        break;
    case TFL_OP_RESIZE_BILINEAR: /* (new_height, new_width: deprecated), align_corners, half_pixel_centers */
        if ((rc = fb_scalar(b, opt, 2, 1, 0, &v[0], "resize options")) ||
            (rc = fb_scalar(b, opt, 3, 1, 0, &v[1], "resize options")))
            return rc;
        op->align_corners = v[0] != 0;
        op->half_pixel_centers = v[1] != 0;
        break;
    case TFL_OP_RESHAPE: { /* new_shape */
        size_t s, n;
        if ((rc = fb_vector(b, opt, 0, 4, &s, &n, "reshape options"))) return rc;
        if (n > TFL_MAX_DIMS) return corrupt(b, "reshape to too many dimensions");
        for (size_t i = 0; i < n; i++) op->new_shape[i] = (int32_t)dfd_rd32le(b->p + s + 4 * i);
        op->n_new_shape = (int)n;
        break;
    }
    default:
        break;
    }
    return DFD_OK;
}

static void set_option_defaults(tfl_op *op) {
    op->dilation_w = op->dilation_h = 1;
}

static int parse_operator(fb *b, size_t vec, size_t i, const int *codes, size_t n_codes, int n_tensors, tfl_op *op) {
    fbt t;
    uint64_t idx, otype;
    int rc;
    if ((rc = fb_vector_table(b, vec, i, &t, "operator")) || (rc = fb_scalar(b, &t, 0, 4, 0, &idx, "operator code index")))
        return rc;
    if (idx >= n_codes) return corrupt(b, "operator code index out of range");
    op->code = codes[idx];
    set_option_defaults(op);
    if ((rc = fb_indices(b, &t, 1, op->inputs, TFL_MAX_OP_IO, &op->n_inputs, n_tensors, "operator inputs")) ||
        (rc = fb_indices(b, &t, 2, op->outputs, TFL_MAX_OP_IO, &op->n_outputs, n_tensors, "operator outputs")) ||
        (rc = fb_scalar(b, &t, 3, 1, 0, &otype, "operator options type")))
        return rc;
    size_t opt;
    if ((rc = fb_ref(b, &t, 4, &opt, "operator options"))) return rc;
    if (opt) {
        if ((int)otype != options_type_for(op->code))
            return dfd_fail(b->err, DFD_E_CORRUPT, "malformed TFLite file: %s operator with options of type %d",
                            tfl_op_name(op->code), (int)otype);
        fbt ot;
        if ((rc = fb_table(b, opt, &ot, "operator options")) || (rc = parse_options(b, &ot, op))) return rc;
    }
    return DFD_OK;
}

int tfl_parse(const uint8_t *data, size_t len, tfl_model **out, dfd_error *err) {
    *out = NULL;
    fb b = {data, len, err};
    if (!data || len < 8 || memcmp(data + 4, "TFL3", 4) != 0)
        return dfd_fail(err, DFD_E_CORRUPT, "not a TFLite model (no 'TFL3' identifier)");
    fbt model;
    int rc = fb_table(&b, dfd_rd32le(data), &model, "model table");
    if (rc) return rc;

    tfl_model *m = calloc(1, sizeof *m);
    int *codes = NULL;
    bufref *bufs = NULL;
    size_t n_bufs = 0;
    if (!m) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    uint64_t ver;
    if ((rc = fb_scalar(&b, &model, 0, 4, 0, &ver, "model version"))) goto fail;
    m->version = (uint32_t)ver;
    if (m->version != 3) {
        rc = dfd_fail(err, DFD_E_UNSUPPORTED, "TFLite schema version %u (dfd reads version 3)", m->version);
        goto fail;
    }
    if ((rc = fb_string(&b, &model, 3, &m->description, "model description"))) goto fail;

    /* Operator codes: the effective code is the larger of the two fields (the schema moved
     * codes past 127 into builtin_code and kept deprecated_builtin_code for old readers). */
    size_t cs, cn;
    if ((rc = fb_vector(&b, &model, 1, 4, &cs, &cn, "operator code list"))) goto fail;
    codes = dfd_calloc_array(cn, sizeof *codes);
    if (!codes) {
        rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cn; i++) {
        fbt t;
        uint64_t dep = 0, code = 0; /* set by fb_scalar; zero so gcc -O3 sees them set */
        if ((rc = fb_vector_table(&b, cs, i, &t, "operator code")) ||
            (rc = fb_scalar(&b, &t, 0, 1, 0, &dep, "operator code")) || (rc = fb_scalar(&b, &t, 3, 4, 0, &code, "operator code")))
            goto fail;
        int c = (int)(int8_t)dep > (int)(int32_t)code ? (int)(int8_t)dep : (int)(int32_t)code;
        codes[i] = c;
    }

    size_t ss, sn;
    if ((rc = fb_vector(&b, &model, 2, 4, &ss, &sn, "subgraph list"))) goto fail;
    if (sn != 1) {
        rc = dfd_fail(err, sn ? DFD_E_UNSUPPORTED : DFD_E_CORRUPT, "TFLite model has %zu subgraphs (dfd reads exactly one)", sn);
        goto fail;
    }
    fbt sg;
    if ((rc = fb_vector_table(&b, ss, 0, &sg, "subgraph"))) goto fail;

    size_t ts, tn, os, on;
    if ((rc = fb_vector(&b, &sg, 0, 4, &ts, &tn, "tensor list")) || (rc = fb_vector(&b, &sg, 3, 4, &os, &on, "operator list")))
        goto fail;
    if (tn > (1u << 20) || on > (1u << 20)) {
        rc = dfd_fail(err, DFD_E_LIMIT, "TFLite graph too large (%zu tensors, %zu operators)", tn, on);
        goto fail;
    }
    /* Operators first, so that an unsupported operator is what the error names. */
    m->ops = dfd_calloc_array(on, sizeof *m->ops);
    if (!m->ops) {
        rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < on; i++) {
        fbt t;
        uint64_t idx;
        if ((rc = fb_vector_table(&b, os, i, &t, "operator")) || (rc = fb_scalar(&b, &t, 0, 4, 0, &idx, "operator code index")))
            goto fail;
        if (idx >= cn) {
            rc = corrupt(&b, "operator code index out of range");
            goto fail;
        }
        if (!op_supported(codes[idx])) {
            rc = dfd_fail(err, DFD_E_UNSUPPORTED, "unsupported TFLite operator '%s' (operator %zu of the graph)",
                          tfl_op_name(codes[idx]), i);
            goto fail;
        }
    }
    for (size_t i = 0; i < on; i++) {
        if ((rc = parse_operator(&b, os, i, codes, cn, (int)tn, &m->ops[i]))) goto fail;
        m->n_ops++;
    }

    if ((rc = parse_buffers(&b, &model, &bufs, &n_bufs))) goto fail;
    m->tensors = dfd_calloc_array(tn, sizeof *m->tensors);
    if (!m->tensors) {
        rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < tn; i++) {
        m->n_tensors++;
        if ((rc = parse_tensor(&b, ts, i, bufs, n_bufs, &m->tensors[i]))) goto fail;
    }
    if ((rc = fb_indices(&b, &sg, 1, m->inputs, TFL_MAX_OP_IO, &m->n_inputs, (int)tn, "subgraph inputs")) ||
        (rc = fb_indices(&b, &sg, 2, m->outputs, TFL_MAX_OP_IO, &m->n_outputs, (int)tn, "subgraph outputs")))
        goto fail;
    for (int i = 0; i < m->n_inputs; i++)
        if (m->inputs[i] < 0) { rc = corrupt(&b, "subgraph input index"); goto fail; }
    for (int i = 0; i < m->n_outputs; i++)
        if (m->outputs[i] < 0) { rc = corrupt(&b, "subgraph output index"); goto fail; }

    /* Fold DEQUANTIZE of fp16 constants into fp32 constants (weights are used as fp32). */
    for (int i = 0; i < m->n_ops; i++) {
        tfl_op *op = &m->ops[i];
        if (op->code != TFL_OP_DEQUANTIZE) continue;
        if (op->n_inputs != 1 || op->n_outputs != 1 || op->inputs[0] < 0 || op->outputs[0] < 0) {
            rc = corrupt(&b, "DEQUANTIZE with wrong inputs/outputs");
            goto fail;
        }
        tfl_tensor *in = &m->tensors[op->inputs[0]], *o = &m->tensors[op->outputs[0]];
        if (in->type != TFL_FLOAT16 || !in->f32) {
            rc = dfd_fail(err, DFD_E_UNSUPPORTED, "TFLite DEQUANTIZE of '%s' (only fp16 constants are supported)", in->name);
            goto fail;
        }
        if (o->count != in->count || o->f32 || o->i32) {
            rc = corrupt(&b, "DEQUANTIZE output does not match its input");
            goto fail;
        }
        o->f32 = dfd_malloc_array(in->count, sizeof(float));
        if (!o->f32) {
            rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
            goto fail;
        }
        memcpy(o->f32, in->f32, in->count * sizeof(float));
        o->type = TFL_FLOAT32;
    }
    free(codes);
    free(bufs);
    *out = m;
    return DFD_OK;
fail:
    free(codes);
    free(bufs);
    tfl_free(m);
    return rc;
}

int tfl_read_file(const char *path, tfl_model **out, dfd_error *err) {
    uint8_t *data;
    size_t len;
    *out = NULL;
    int rc = dfd_read_file(path, 64u << 20, &data, &len, err);
    if (rc) return rc;
    rc = tfl_parse(data, len, out, err);
    free(data);
    return rc;
}
