/* test_io_tflite — the TFLite reader and converter: the BlazeFace files parse into the
 * graphs they are (ops, shapes, outputs); converted graphs compute, on the reference and
 * oneDNN backends, what a direct reading of TFLite's operator semantics computes (an
 * interpreter written here, over the parsed file, with TFLite's own layouts: so the
 * OHWI->HWIO transposition, padding and resize conventions are checked independently);
 * small hand-built models pin down layouts and fp16 weights; unsupported operators are
 * refused by name; truncated, garbage and bit-flipped files fail cleanly. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tflite.h"

/* ---- A minimal flatbuffer writer (offsets always point forward) ------------------- */

typedef struct fbb {
    uint8_t *b;
    size_t len, cap;
} fbb;

static size_t fb_alloc(fbb *f, size_t n, size_t align) {
    while (f->len % align) f->len++;
    if (f->len + n > f->cap) {
        size_t cap = f->cap ? f->cap : 1024;
        while (cap < f->len + n) cap *= 2;
        f->b = realloc(f->b, cap);
        assert_non_null(f->b);
        memset(f->b + f->cap, 0, cap - f->cap);
        f->cap = cap;
    }
    size_t p = f->len;
    f->len += n;
    return p;
}

static void put16(fbb *f, size_t p, uint16_t v) {
    f->b[p] = (uint8_t)v;
    f->b[p + 1] = (uint8_t)(v >> 8);
}
static void put32(fbb *f, size_t p, uint32_t v) {
    for (int i = 0; i < 4; i++) f->b[p + i] = (uint8_t)(v >> (8 * i));
}

/* A table whose field i takes sz[i] bytes (0 = absent); fields[i] receives its position. */
static size_t fb_table(fbb *f, int nf, const int *sz, size_t *fields) {
    size_t vt = fb_alloc(f, 4 + 2 * (size_t)nf, 2);
    unsigned off = 4;
    unsigned offs[16];
    for (int i = 0; i < nf; i++) {
        offs[i] = sz[i] ? off : 0;
        off += sz[i] ? (unsigned)((sz[i] + 3) & ~3) : 0;
    }
    size_t t = fb_alloc(f, off, 4);
    put16(f, vt, (uint16_t)(4 + 2 * nf));
    put16(f, vt + 2, (uint16_t)off);
    for (int i = 0; i < nf; i++) {
        put16(f, vt + 4 + 2 * i, (uint16_t)offs[i]);
        fields[i] = offs[i] ? t + offs[i] : 0;
    }
    put32(f, t, (uint32_t)(int32_t)(t - vt));
    return t;
}

static void fb_ref(fbb *f, size_t field, size_t target) { put32(f, field, (uint32_t)(target - field)); }

/* A vector of n elements of `elem` bytes; returns the position of its length word. */
static size_t fb_vec(fbb *f, size_t n, size_t elem, const void *data) {
    size_t p = fb_alloc(f, 4 + n * elem + 1, 4);
    put32(f, p, (uint32_t)n);
    if (data && n) memcpy(f->b + p + 4, data, n * elem);
    return p;
}

typedef struct mt_tensor {
    int ndim, shape[4], type;
    const void *data;
    size_t nbytes;
    const char *name;
} mt_tensor;

typedef struct mt_opt {
    int id, size;
    int64_t value;
} mt_opt;

typedef struct mt_op {
    int code;
    int n_in, in[4], n_out, out[2];
    int opt_type, n_opt;
    mt_opt opt[8];
} mt_op;

/* Builds a one-subgraph model; each distinct op code gets an OperatorCode entry. */
static uint8_t *build_model(const mt_tensor *ts, int nt, const mt_op *ops, int nops, int input, int output, size_t *len) {
    fbb f = {0};
    size_t root = fb_alloc(&f, 8, 4); /* root offset + "TFL3" */
    memcpy(f.b + 4, "TFL3", 4);
    size_t mf[5];
    int msz[5] = {4, 4, 4, 0, 4};
    size_t model = fb_table(&f, 5, msz, mf);
    put32(&f, root, (uint32_t)model);
    put32(&f, mf[0], 3);
    int codes[16], nc = 0, op_code_idx[16];
    for (int i = 0; i < nops; i++) {
        int k = 0;
        while (k < nc && codes[k] != ops[i].code) k++;
        if (k == nc) codes[nc++] = ops[i].code;
        op_code_idx[i] = k;
    }
    size_t cv = fb_vec(&f, (size_t)nc, 4, NULL);
    fb_ref(&f, mf[1], cv);
    for (int k = 0; k < nc; k++) {
        size_t cf[4];
        int csz[4] = {1, 0, 4, 4};
        size_t t = fb_table(&f, 4, csz, cf);
        f.b[cf[0]] = (uint8_t)(codes[k] < 127 ? codes[k] : 127);
        put32(&f, cf[2], 1);
        put32(&f, cf[3], (uint32_t)codes[k]);
        fb_ref(&f, cv + 4 + 4 * (size_t)k, t);
    }
    /* Buffers: 0 is empty, tensor i with data uses buffer i + 1. */
    size_t bv = fb_vec(&f, (size_t)nt + 1, 4, NULL);
    fb_ref(&f, mf[4], bv);
    for (int i = 0; i <= nt; i++) {
        size_t bf[1];
        int has = i > 0 && ts[i - 1].data;
        int bsz[1] = {has ? 4 : 0};
        size_t t = fb_table(&f, 1, bsz, bf);
        fb_ref(&f, bv + 4 + 4 * (size_t)i, t);
        if (has) fb_ref(&f, bf[0], fb_vec(&f, ts[i - 1].nbytes, 1, ts[i - 1].data));
    }
    size_t sv = fb_vec(&f, 1, 4, NULL);
    fb_ref(&f, mf[2], sv);
    size_t sf[4];
    int ssz[4] = {4, 4, 4, 4};
    size_t sg = fb_table(&f, 4, ssz, sf);
    fb_ref(&f, sv + 4, sg);
    int32_t io[1] = {input};
    fb_ref(&f, sf[1], fb_vec(&f, 1, 4, io));
    io[0] = output;
    fb_ref(&f, sf[2], fb_vec(&f, 1, 4, io));
    size_t tv = fb_vec(&f, (size_t)nt, 4, NULL);
    fb_ref(&f, sf[0], tv);
    for (int i = 0; i < nt; i++) {
        size_t tf[4];
        int tsz[4] = {4, 1, 4, 4};
        size_t t = fb_table(&f, 4, tsz, tf);
        fb_ref(&f, tv + 4 + 4 * (size_t)i, t);
        int32_t sh[4];
        for (int d = 0; d < ts[i].ndim; d++) sh[d] = ts[i].shape[d];
        fb_ref(&f, tf[0], fb_vec(&f, (size_t)ts[i].ndim, 4, sh));
        f.b[tf[1]] = (uint8_t)ts[i].type;
        put32(&f, tf[2], ts[i].data ? (uint32_t)i + 1 : 0);
        const char *nm = ts[i].name ? ts[i].name : "";
        fb_ref(&f, tf[3], fb_vec(&f, strlen(nm), 1, nm));
    }
    size_t ov = fb_vec(&f, (size_t)nops, 4, NULL);
    fb_ref(&f, sf[3], ov);
    for (int i = 0; i < nops; i++) {
        size_t of[5];
        int osz[5] = {4, 4, 4, ops[i].opt_type ? 1 : 0, ops[i].opt_type ? 4 : 0};
        size_t t = fb_table(&f, 5, osz, of);
        fb_ref(&f, ov + 4 + 4 * (size_t)i, t);
        put32(&f, of[0], (uint32_t)op_code_idx[i]);
        int32_t v[4];
        for (int k = 0; k < ops[i].n_in; k++) v[k] = ops[i].in[k];
        fb_ref(&f, of[1], fb_vec(&f, (size_t)ops[i].n_in, 4, v));
        for (int k = 0; k < ops[i].n_out; k++) v[k] = ops[i].out[k];
        fb_ref(&f, of[2], fb_vec(&f, (size_t)ops[i].n_out, 4, v));
        if (ops[i].opt_type) {
            f.b[of[3]] = (uint8_t)ops[i].opt_type;
            int nf = 0;
            for (int k = 0; k < ops[i].n_opt; k++)
                if (ops[i].opt[k].id + 1 > nf) nf = ops[i].opt[k].id + 1;
            int psz[16] = {0};
            for (int k = 0; k < ops[i].n_opt; k++) psz[ops[i].opt[k].id] = ops[i].opt[k].size;
            size_t pf[16];
            size_t ot = fb_table(&f, nf, psz, pf);
            fb_ref(&f, of[4], ot);
            for (int k = 0; k < ops[i].n_opt; k++) {
                size_t p = pf[ops[i].opt[k].id];
                if (ops[i].opt[k].size == 1) f.b[p] = (uint8_t)ops[i].opt[k].value;
                else put32(&f, p, (uint32_t)ops[i].opt[k].value);
            }
        }
    }
    *len = f.len;
    return f.b;
}

/* ---- Direct TFLite semantics, in TFLite's layouts (batch 1) ------------------------- */

typedef struct interp {
    const tfl_model *m;
    float **val; /* per tensor */
} interp;

static float *tval(interp *it, int t) {
    if (it->m->tensors[t].f32) return it->m->tensors[t].f32;
    assert_non_null(it->val[t]);
    return it->val[t];
}

static float *alloc_out(interp *it, int t) {
    it->val[t] = calloc(it->m->tensors[t].count ? it->m->tensors[t].count : 1, sizeof(float));
    assert_non_null(it->val[t]);
    return it->val[t];
}

/* TensorFlow's SAME padding: the pad before is half the total, rounded down. */
static int pad_before(int in, int k, int s, int d, int same) {
    if (!same) return 0;
    int out = (in + s - 1) / s, eff = (k - 1) * d + 1;
    int total = (out - 1) * s + eff - in;
    return total > 0 ? total / 2 : 0;
}

static float act(float v, int a) {
    if (a == TFL_ACT_RELU) return v > 0 ? v : 0;
    if (a == TFL_ACT_RELU6) return v < 0 ? 0 : v > 6 ? 6 : v;
    return v;
}

static void run_op(interp *it, const tfl_op *op) {
    const tfl_model *m = it->m;
    const tfl_tensor *o = &m->tensors[op->outputs[0]];
    switch (op->code) {
    case TFL_OP_DEQUANTIZE: return; /* folded into constants by the reader */
    case TFL_OP_CONV_2D:
    case TFL_OP_DEPTHWISE_CONV_2D: {
        const tfl_tensor *x = &m->tensors[op->inputs[0]], *w = &m->tensors[op->inputs[1]];
        const float *X = tval(it, op->inputs[0]), *W = w->f32, *B = op->n_inputs > 2 && op->inputs[2] >= 0 ? m->tensors[op->inputs[2]].f32 : NULL;
        float *Y = alloc_out(it, op->outputs[0]);
        int H = x->shape[1], Wd = x->shape[2], C = x->shape[3], OH = o->shape[1], OW = o->shape[2], OC = o->shape[3];
        int KH = w->shape[1], KW = w->shape[2];
        int same = op->padding == TFL_PAD_SAME, dw = op->code == TFL_OP_DEPTHWISE_CONV_2D;
        int pt = pad_before(H, KH, op->stride_h, op->dilation_h, same), pl = pad_before(Wd, KW, op->stride_w, op->dilation_w, same);
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                for (int oc = 0; oc < OC; oc++) {
                    double s = B ? B[oc] : 0.0;
                    for (int ky = 0; ky < KH; ky++)
                        for (int kx = 0; kx < KW; kx++) {
                            int iy = oy * op->stride_h + ky * op->dilation_h - pt, ix = ox * op->stride_w + kx * op->dilation_w - pl;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= Wd) continue;
                            const float *xp = X + ((size_t)iy * Wd + ix) * C;
                            if (dw) s += (double)xp[oc] * W[((size_t)ky * KW + kx) * OC + oc]; /* 1HWC */
                            else
                                for (int ic = 0; ic < C; ic++) s += (double)xp[ic] * W[(((size_t)oc * KH + ky) * KW + kx) * C + ic]; /* OHWI */
                        }
                    Y[((size_t)oy * OW + ox) * OC + oc] = act((float)s, op->activation);
                }
        return;
    }
    case TFL_OP_MAX_POOL_2D: {
        const tfl_tensor *x = &m->tensors[op->inputs[0]];
        const float *X = tval(it, op->inputs[0]);
        float *Y = alloc_out(it, op->outputs[0]);
        int H = x->shape[1], Wd = x->shape[2], C = x->shape[3], OH = o->shape[1], OW = o->shape[2];
        int same = op->padding == TFL_PAD_SAME;
        int pt = pad_before(H, op->filter_h, op->stride_h, 1, same), pl = pad_before(Wd, op->filter_w, op->stride_w, 1, same);
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                for (int c = 0; c < C; c++) {
                    float best = -INFINITY;
                    for (int ky = 0; ky < op->filter_h; ky++)
                        for (int kx = 0; kx < op->filter_w; kx++) {
                            int iy = oy * op->stride_h + ky - pt, ix = ox * op->stride_w + kx - pl;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= Wd) continue;
                            float v = X[((size_t)iy * Wd + ix) * C + c];
                            if (v > best) best = v;
                        }
                    Y[((size_t)oy * OW + ox) * C + c] = act(best, op->activation);
                }
        return;
    }
    case TFL_OP_PAD: {
        const tfl_tensor *x = &m->tensors[op->inputs[0]];
        const int32_t *P = m->tensors[op->inputs[1]].i32;
        const float *X = tval(it, op->inputs[0]);
        float *Y = alloc_out(it, op->outputs[0]);
        int H = x->shape[1], Wd = x->shape[2], C = x->shape[3], OW = o->shape[2], OC = o->shape[3];
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < Wd; xx++)
                for (int c = 0; c < C; c++)
                    Y[((size_t)(y + P[2]) * OW + xx + P[4]) * OC + c + P[6]] = X[((size_t)y * Wd + xx) * C + c];
        return;
    }
    case TFL_OP_ADD: {
        const float *A = tval(it, op->inputs[0]), *B = tval(it, op->inputs[1]);
        float *Y = alloc_out(it, op->outputs[0]);
        for (size_t i = 0; i < o->count; i++) Y[i] = act(A[i] + B[i], op->activation);
        return;
    }
    case TFL_OP_PRELU: { /* alpha broadcast along the channels (face_landmark's {1,1,C}) */
        const float *X = tval(it, op->inputs[0]), *A = m->tensors[op->inputs[1]].f32;
        size_t C = m->tensors[op->inputs[1]].count;
        float *Y = alloc_out(it, op->outputs[0]);
        for (size_t i = 0; i < o->count; i++) Y[i] = X[i] >= 0 ? X[i] : A[i % C] * X[i];
        return;
    }
    case TFL_OP_RELU: {
        const float *X = tval(it, op->inputs[0]);
        float *Y = alloc_out(it, op->outputs[0]);
        for (size_t i = 0; i < o->count; i++) Y[i] = X[i] > 0 ? X[i] : 0;
        return;
    }
    case TFL_OP_RESHAPE: {
        float *Y = alloc_out(it, op->outputs[0]);
        memcpy(Y, tval(it, op->inputs[0]), o->count * sizeof(float));
        return;
    }
    case TFL_OP_CONCATENATION: {
        float *Y = alloc_out(it, op->outputs[0]);
        int axis = op->axis < 0 ? op->axis + o->ndim : op->axis;
        size_t outer = 1;
        for (int d = 0; d < axis; d++) outer *= (size_t)o->shape[d];
        size_t pos = 0;
        for (size_t r = 0; r < outer; r++)
            for (int k = 0; k < op->n_inputs; k++) {
                const tfl_tensor *x = &m->tensors[op->inputs[k]];
                size_t inner = x->count / outer;
                memcpy(Y + pos, tval(it, op->inputs[k]) + r * inner, inner * sizeof(float));
                pos += inner;
            }
        return;
    }
    case TFL_OP_RESIZE_BILINEAR: { /* tflite reference_ops::ResizeBilinear */
        const tfl_tensor *x = &m->tensors[op->inputs[0]];
        const float *X = tval(it, op->inputs[0]);
        float *Y = alloc_out(it, op->outputs[0]);
        int H = x->shape[1], Wd = x->shape[2], C = x->shape[3], OH = o->shape[1], OW = o->shape[2];
        float sy = op->align_corners && OH > 1 ? (float)(H - 1) / (OH - 1) : (float)H / OH;
        float sx = op->align_corners && OW > 1 ? (float)(Wd - 1) / (OW - 1) : (float)Wd / OW;
        for (int y = 0; y < OH; y++) {
            float iy = op->half_pixel_centers ? (y + 0.5f) * sy - 0.5f : y * sy;
            int y0 = (int)floorf(iy) < 0 ? 0 : (int)floorf(iy), y1 = (int)ceilf(iy) > H - 1 ? H - 1 : (int)ceilf(iy);
            for (int xx = 0; xx < OW; xx++) {
                float ix = op->half_pixel_centers ? (xx + 0.5f) * sx - 0.5f : xx * sx;
                int x0 = (int)floorf(ix) < 0 ? 0 : (int)floorf(ix), x1 = (int)ceilf(ix) > Wd - 1 ? Wd - 1 : (int)ceilf(ix);
                for (int c = 0; c < C; c++) {
                    float a = X[((size_t)y0 * Wd + x0) * C + c], b = X[((size_t)y1 * Wd + x0) * C + c];
                    float cc = X[((size_t)y0 * Wd + x1) * C + c], d = X[((size_t)y1 * Wd + x1) * C + c];
                    Y[((size_t)y * OW + xx) * C + c] = a * (1 - (iy - y0)) * (1 - (ix - x0)) + b * (iy - y0) * (1 - (ix - x0)) +
                                                       cc * (1 - (iy - y0)) * (ix - x0) + d * (iy - y0) * (ix - x0);
                }
            }
        }
        return;
    }
    default: fail_msg("interpreter: no %s", tfl_op_name(op->code));
    }
}

/* Runs the whole model on input x; returns malloc'ed copies of the outputs. */
static float **interpret(const tfl_model *m, const float *x) {
    interp it = {m, calloc((size_t)m->n_tensors, sizeof(float *))};
    assert_non_null(it.val);
    float *in = alloc_out(&it, m->inputs[0]);
    memcpy(in, x, m->tensors[m->inputs[0]].count * sizeof(float));
    for (int i = 0; i < m->n_ops; i++) run_op(&it, &m->ops[i]);
    float **outs = calloc((size_t)m->n_outputs, sizeof(float *));
    for (int k = 0; k < m->n_outputs; k++) {
        size_t n = m->tensors[m->outputs[k]].count;
        outs[k] = malloc(n * sizeof(float));
        memcpy(outs[k], tval(&it, m->outputs[k]), n * sizeof(float));
    }
    for (int t = 0; t < m->n_tensors; t++) free(it.val[t]);
    free(it.val);
    return outs;
}

static void fill_input(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((seed >> 33) % 2001) / 1000.0f - 1.0f;
    }
}

/* Converts m, runs it on the backend (skips when the backend is not built) and compares
 * with the interpreter; returns 0 when the backend was not available. */
static int compare_backend(const tfl_model *m, nn_backend backend, const float *x, float **want, double tol) {
    nn_graph *g;
    dfd_error e;
    assert_int_equal(tfl_to_graph(m, &g, &e), DFD_OK);
    nn_exec_opts o;
    nn_exec_opts_default(&o);
    o.backend = backend;
    o.max_batch = 1;
    o.precision = NN_PREC_F32;
    nn_exec *ex;
    if (nn_exec_create(g, &o, &ex, &e) != DFD_OK) {
        print_message("backend %d unavailable: %s\n", (int)backend, e.message);
        nn_graph_free(g);
        return 0;
    }
    assert_int_equal(nn_forward(ex, x, 1, &e), DFD_OK);
    for (int k = 0; k < m->n_outputs; k++) {
        size_t n;
        const float *y = nn_output(ex, k, &n);
        assert_int_equal(n, m->tensors[m->outputs[k]].count);
        double scale = 1.0, worst = 0.0;
        for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[k][i]));
        for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)y[i] - want[k][i]));
        if (!(worst <= tol * scale)) fail_msg("output %d: max difference %g (scale %g)", k, worst, scale);
    }
    nn_exec_free(ex);
    nn_graph_free(g);
    return 1;
}

/* ---- Tests ---------------------------------------------------------------------------- */

static char *registry_file_in(const char *folder, const char *name) {
    char *dir = tu_join(tu_source_dir(), folder);
    char *p = tu_join(dir, name);
    free(dir);
    FILE *f = fopen(p, "rb");
    if (!f) {
        free(p);
        return NULL;
    }
    fclose(f);
    return p;
}

static char *registry_file(const char *name) { return registry_file_in("third_party/@mediapipe_face_detection", name); }

#define REQUIRE_FILE(var, name)                                                                   \
    char *var = registry_file(name);                                                              \
    if (!var) {                                                                                   \
        print_message("skipped: third_party/@mediapipe_face_detection/%s missing (run ./setup.sh)\n", name); \
        skip();                                                                                   \
    }

static void blazeface_files_parse_into_their_graphs(void **state) {
    (void)state;
    REQUIRE_FILE(sp, "face_detection_short_range.tflite");
    REQUIRE_FILE(fp, "face_detection_full_range.tflite");
    tfl_model *m;
    dfd_error e;
    assert_int_equal(tfl_read_file(sp, &m, &e), DFD_OK);
    assert_int_equal(m->n_inputs, 1);
    const tfl_tensor *in = &m->tensors[m->inputs[0]];
    assert_int_equal(in->ndim, 4);
    assert_int_equal(in->shape[1], 128);
    assert_int_equal(in->shape[3], 3);
    assert_int_equal(m->n_outputs, 2);
    assert_string_equal(m->tensors[m->outputs[0]].name, "regressors");
    assert_string_equal(m->tensors[m->outputs[1]].name, "classificators");
    int convs = 0, dws = 0;
    for (int i = 0; i < m->n_ops; i++) {
        convs += m->ops[i].code == TFL_OP_CONV_2D;
        dws += m->ops[i].code == TFL_OP_DEPTHWISE_CONV_2D;
    }
    assert_int_equal(convs, 17 + 4); /* stem + 16 blocks + 4 heads */
    assert_int_equal(dws, 16);
    nn_graph *g;
    assert_int_equal(tfl_to_graph(m, &g, &e), DFD_OK);
    assert_int_equal(nn_graph_output_count(g), 2);
    const nn_node *r = nn_graph_node(g, nn_graph_output(g, 0)), *c = nn_graph_node(g, nn_graph_output(g, 1));
    assert_int_equal(r->shape[0], 896);
    assert_int_equal(r->shape[1], 16);
    assert_int_equal(c->shape[0], 896);
    assert_int_equal(c->shape[1], 1);
    /* Keras names and layouts: a 5x5 stem from 3 to 24 channels, HWIO. */
    nn_param *k = nn_graph_find_param(g, "conv2d/kernel");
    assert_non_null(k);
    assert_int_equal(k->shape[0], 5);
    assert_int_equal(k->shape[2], 3);
    assert_int_equal(k->shape[3], 24);
    assert_non_null(nn_graph_find_param(g, "depthwise_conv2d_15/depthwise_kernel"));
    nn_graph_free(g);
    tfl_free(m);

    assert_int_equal(tfl_read_file(fp, &m, &e), DFD_OK);
    assert_int_equal(m->tensors[m->inputs[0]].shape[1], 192);
    assert_int_equal(tfl_to_graph(m, &g, &e), DFD_OK);
    assert_int_equal(nn_graph_node(g, nn_graph_output(g, 0))->shape[0], 2304);
    nn_graph_free(g);
    tfl_free(m);
    free(sp);
    free(fp);
}

static void sparse_model_is_refused_naming_the_operator(void **state) {
    (void)state;
    REQUIRE_FILE(p, "face_detection_full_range_sparse.tflite");
    tfl_model *m = NULL;
    dfd_error e;
    assert_int_equal(tfl_read_file(p, &m, &e), DFD_E_UNSUPPORTED);
    assert_null(m);
    assert_non_null(strstr(e.message, "unsupported TFLite operator 'DENSIFY'"));
    free(p);
}

static void converted_blazeface_computes_tflite_semantics(void **state) {
    (void)state;
    REQUIRE_FILE(sp, "face_detection_short_range.tflite");
    REQUIRE_FILE(fp, "face_detection_full_range.tflite");
    const char *paths[2] = {sp, fp};
    for (int k = 0; k < 2; k++) {
        tfl_model *m;
        dfd_error e;
        assert_int_equal(tfl_read_file(paths[k], &m, &e), DFD_OK);
        size_t n = m->tensors[m->inputs[0]].count;
        float *x = malloc(n * sizeof(float));
        fill_input(x, n, 42 + (uint64_t)k);
        float **want = interpret(m, x);
        /* Heads are sums of hundreds of products: fp32 reordering stays far below 1e-4. */
        assert_int_equal(compare_backend(m, NN_BACKEND_REF, x, want, 1e-4), 1);
        compare_backend(m, NN_BACKEND_DNNL, x, want, 1e-3);
        for (int o = 0; o < m->n_outputs; o++) free(want[o]);
        free(want);
        free(x);
        tfl_free(m);
    }
    free(sp);
    free(fp);
}

/* MediaPipe's face mesh (face_landmark.tflite, cut out of the npm package @mediapipe/face_mesh
 * by setup.sh): 23 PRELU layers besides BlazeFace's operators, two heads (1404 landmark
 * coordinates, one face-presence logit), each checked against the direct interpretation. */
static void face_landmark_file_computes_tflite_semantics(void **state) {
    (void)state;
    char *p = registry_file_in("third_party/@mediapipe_face_mesh", "face_landmark.tflite");
    if (!p) {
        print_message("skipped: third_party/@mediapipe_face_mesh/face_landmark.tflite missing (run ./setup.sh)\n");
        skip();
    }
    tfl_model *m;
    dfd_error e;
    assert_int_equal(tfl_read_file(p, &m, &e), DFD_OK);
    int prelus = 0;
    for (int i = 0; i < m->n_ops; i++) prelus += m->ops[i].code == TFL_OP_PRELU;
    assert_int_equal(prelus, 23);
    assert_int_equal(m->n_outputs, 2);
    assert_int_equal(m->tensors[m->outputs[0]].count, 1404);
    assert_int_equal(m->tensors[m->outputs[1]].count, 1);
    nn_graph *g;
    assert_int_equal(tfl_to_graph(m, &g, &e), DFD_OK);
    nn_param *a = nn_graph_find_param(g, "p_re_lu_1/alpha");
    assert_non_null(a);
    assert_int_equal(a->count, 16);
    nn_graph_free(g);
    size_t n = m->tensors[m->inputs[0]].count;
    float *x = malloc(n * sizeof(float));
    for (int k = 0; k < 2; k++) {
        fill_input(x, n, 7 + (uint64_t)k);
        if (k == 1) /* the model's own range, [0, 1] */
            for (size_t i = 0; i < n; i++) x[i] = 0.5f * (x[i] + 1.0f);
        float **want = interpret(m, x);
        assert_int_equal(compare_backend(m, NN_BACKEND_REF, x, want, 1e-4), 1);
        compare_backend(m, NN_BACKEND_DNNL, x, want, 1e-3);
        for (int o = 0; o < m->n_outputs; o++) free(want[o]);
        free(want);
    }
    free(x);
    tfl_free(m);
    free(p);
}

/* A hand-built PRELU: alpha per channel gives the direct semantics on both backends; an
 * alpha of the wrong size, one varying along another axis, or one that is not a constant
 * is refused at conversion, naming the problem. */
static void prelu_matches_direct_semantics_and_checks_alpha(void **state) {
    (void)state;
    static const float alpha[3] = {0.1f, -0.5f, 2.0f}, alpha4[4] = {1, 2, 3, 4}, alpha_hw[2 * 3] = {1, 2, 3, 4, 5, 6};
    static const struct {
        int ndim, shape[3];
        const float *data;
        size_t nbytes;
        int want;
        const char *msg;
    } cases[] = {
        {3, {1, 1, 3}, alpha, sizeof alpha, DFD_OK, NULL},
        {1, {4}, alpha4, sizeof alpha4, DFD_E_CORRUPT, "alpha size differs"},
        {3, {2, 1, 3}, alpha_hw, sizeof alpha_hw, DFD_E_UNSUPPORTED, "other than the channels"},
        {3, {1, 1, 3}, NULL, 0, DFD_E_UNSUPPORTED, "alpha must be a float constant"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mt_tensor ts[3] = {{4, {1, 2, 2, 3}, TFL_FLOAT32, NULL, 0, "in"},
                           {cases[c].ndim, {cases[c].shape[0], cases[c].shape[1], cases[c].shape[2]}, TFL_FLOAT32,
                            cases[c].data, cases[c].nbytes, "alpha"},
                           {4, {1, 2, 2, 3}, TFL_FLOAT32, NULL, 0, "out"}};
        mt_op ops[1] = {{TFL_OP_PRELU, 2, {0, 1}, 1, {2}, 0, 0, {{0}}}};
        size_t len;
        uint8_t *buf = build_model(ts, 3, ops, 1, 0, 2, &len);
        tfl_model *m;
        dfd_error e;
        assert_int_equal(tfl_parse(buf, len, &m, &e), DFD_OK);
        nn_graph *g = NULL;
        int rc = tfl_to_graph(m, &g, &e);
        assert_int_equal(rc, cases[c].want);
        if (rc) {
            assert_null(g);
            if (!strstr(e.message, cases[c].msg)) fail_msg("message '%s' lacks \"%s\"", e.message, cases[c].msg);
        } else {
            nn_graph_free(g);
            float x[12];
            for (int i = 0; i < 12; i++) x[i] = (float)(i - 6) * 0.75f;
            float **want = interpret(m, x);
            assert_true(want[0][0] == alpha[0] * x[0] && want[0][1] == alpha[1] * x[1] && want[0][2] == alpha[2] * x[2]);
            assert_int_equal(compare_backend(m, NN_BACKEND_REF, x, want, 1e-6), 1);
            compare_backend(m, NN_BACKEND_DNNL, x, want, 1e-5);
            free(want[0]);
            free(want);
        }
        tfl_free(m);
        free(buf);
    }
}

static uint16_t h16(float v) { /* exact for the values used below */
    if (v == 1.0f) return 0x3C00;
    if (v == -2.0f) return 0xC000;
    if (v == 0.5f) return 0x3800;
    if (v == 0.25f) return 0x3400;
    return 0;
}

/* Input [1,4,5,2] -> CONV_2D with a 3x2 kernel (so H and W cannot be swapped unnoticed),
 * stride 2x1, SAME, fused RELU, weights stored fp16 behind DEQUANTIZE. */
static uint8_t *conv_model(int code, size_t *len, int opt_act) {
    static float wv[4 * 3 * 2 * 2];
    static uint16_t wh[4 * 3 * 2 * 2];
    static const float vals[4] = {1.0f, -2.0f, 0.5f, 0.25f};
    for (int i = 0; i < 48; i++) {
        wv[i] = vals[(i * 7 + i / 5) % 4];
        wh[i] = h16(wv[i]);
    }
    static const float bias[4] = {0.5f, -1.0f, 0.25f, 0.0f};
    mt_tensor ts[5] = {
        {4, {1, 4, 5, 2}, TFL_FLOAT32, NULL, 0, "input"},
        {4, {4, 3, 2, 2}, TFL_FLOAT16, wh, sizeof wh, "w16"},
        {4, {4, 3, 2, 2}, TFL_FLOAT32, NULL, 0, "w"},
        {1, {4}, TFL_FLOAT32, bias, sizeof bias, "b"},
        {4, {1, 2, 5, 4}, TFL_FLOAT32, NULL, 0, "conv"},
    };
    mt_op ops[2] = {
        {TFL_OP_DEQUANTIZE, 1, {1}, 1, {2}, 0, 0, {{0}}},
        {code, 3, {0, 2, 3}, 1, {4}, 1, 6,
         {{0, 1, TFL_PAD_SAME}, {1, 4, 1}, {2, 4, 2}, {3, 1, opt_act}, {4, 4, 1}, {5, 4, 1}}},
    };
    return build_model(ts, 5, ops, 2, 0, 4, len);
}

static void hand_built_conv_matches_direct_semantics(void **state) {
    (void)state;
    size_t len;
    uint8_t *buf = conv_model(TFL_OP_CONV_2D, &len, TFL_ACT_RELU);
    tfl_model *m;
    dfd_error e;
    assert_int_equal(tfl_parse(buf, len, &m, &e), DFD_OK);
    /* fp16 weights come out as their exact fp32 values. */
    const tfl_tensor *w = &m->tensors[2];
    assert_non_null(w->f32);
    assert_true(w->f32[0] == 1.0f);
    int seen[4] = {0};
    for (int i = 0; i < 48; i++)
        for (int v = 0; v < 4; v++) seen[v] += w->f32[i] == (v == 0 ? 1.0f : v == 1 ? -2.0f : v == 2 ? 0.5f : 0.25f);
    assert_int_equal(seen[0] + seen[1] + seen[2] + seen[3], 48);
    float x[40];
    fill_input(x, 40, 7);
    float **want = interpret(m, x);
    /* Hand check of one output: row 0, column 0, channel 0. SAME padding with 4 rows,
     * stride 2, kernel 3 needs one padding row, which TensorFlow puts at the bottom, so
     * rows 0..2 are read; 5 columns, kernel 2, stride 1 pad one column on the right, so
     * columns 0..1. Weight layout OHWI: w[o][ky][kx][ic]. */
    double s = 0.5;
    for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 2; kx++)
            for (int ic = 0; ic < 2; ic++) s += x[(ky * 5 + kx) * 2 + ic] * w->f32[((0 * 3 + ky) * 2 + kx) * 2 + ic];
    assert_float_equal(want[0][0], s > 0 ? s : 0, 1e-5);
    assert_int_equal(compare_backend(m, NN_BACKEND_REF, x, want, 1e-5), 1);
    free(want[0]);
    free(want);
    tfl_free(m);
    free(buf);
}

static void unsupported_operators_are_named(void **state) {
    (void)state;
    static const struct {
        int code;
        const char *name;
    } cases[] = {{14, "LOGISTIC"}, {32, "CUSTOM"}, {9, "FULLY_CONNECTED"}, {300, "UNKNOWN"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mt_tensor ts[2] = {{4, {1, 2, 2, 1}, TFL_FLOAT32, NULL, 0, "a"}, {4, {1, 2, 2, 1}, TFL_FLOAT32, NULL, 0, "b"}};
        mt_op ops[1] = {{cases[i].code, 1, {0}, 1, {1}, 0, 0, {{0}}}};
        size_t len;
        uint8_t *buf = build_model(ts, 2, ops, 1, 0, 1, &len);
        tfl_model *m = NULL;
        dfd_error e;
        assert_int_equal(tfl_parse(buf, len, &m, &e), DFD_E_UNSUPPORTED);
        assert_null(m);
        char want[96];
        snprintf(want, sizeof want, "unsupported TFLite operator '%s'", cases[i].name);
        if (!strstr(e.message, want)) fail_msg("message '%s' lacks \"%s\"", e.message, want);
        free(buf);
    }
    /* A supported operator the converter cannot express is refused at conversion:
     * depth multiplier 2. */
    static float wv[1 * 3 * 3 * 4];
    mt_tensor ts[3] = {{4, {1, 4, 4, 2}, TFL_FLOAT32, NULL, 0, "in"},
                       {4, {1, 3, 3, 4}, TFL_FLOAT32, wv, sizeof wv, "w"},
                       {4, {1, 4, 4, 4}, TFL_FLOAT32, NULL, 0, "out"}};
    mt_op ops[1] = {{TFL_OP_DEPTHWISE_CONV_2D, 2, {0, 1}, 1, {2}, 2, 4, {{0, 1, 0}, {1, 4, 1}, {2, 4, 1}, {3, 4, 2}}}};
    size_t len;
    uint8_t *buf = build_model(ts, 3, ops, 1, 0, 2, &len);
    tfl_model *m;
    dfd_error e;
    assert_int_equal(tfl_parse(buf, len, &m, &e), DFD_OK);
    nn_graph *g = NULL;
    assert_int_equal(tfl_to_graph(m, &g, &e), DFD_E_UNSUPPORTED);
    assert_null(g);
    assert_non_null(strstr(e.message, "depth multiplier"));
    tfl_free(m);
    free(buf);
}

/* A CONV_2D on [1,8,8,2] with a 3x3 float kernel and the given dilation (field 5, the
 * height) and stride (field 2). */
static uint8_t *dilated_conv_model(int64_t dil_h, int64_t stride_h, int padding, size_t *len) {
    static float wv[2 * 3 * 3 * 2];
    mt_tensor ts[3] = {{4, {1, 8, 8, 2}, TFL_FLOAT32, NULL, 0, "input"},
                       {4, {2, 3, 3, 2}, TFL_FLOAT32, wv, sizeof wv, "w"},
                       {4, {1, 8, 8, 2}, TFL_FLOAT32, NULL, 0, "conv"}};
    mt_op ops[1] = {{TFL_OP_CONV_2D, 2, {0, 1}, 1, {2}, 1, 6,
                     {{0, 1, padding}, {1, 4, 1}, {2, 4, stride_h}, {3, 1, 0}, {4, 4, 1}, {5, 4, dil_h}}}};
    return build_model(ts, 3, ops, 1, 0, 2, len);
}

/* Window options out of 0..TFL_MAX_WINDOW are refused when the file is read, naming the
 * option (a dilation of 2^31-1 used to overflow the graph's size arithmetic, issue 18);
 * a large in-range dilation that does not fit the input fails conversion cleanly. The
 * model's padding is SAME (where any window fits) or VALID. */
static void huge_window_options_are_refused(void **state) {
    (void)state;
    static const struct {
        int64_t dil, stride;
        const char *needle;
    } bad[] = {{0x7fffffff, 1, "CONV_2D dilation_h 2147483647 is out of range (0..4096)"},
               {-5, 1, "CONV_2D dilation_h -5 is out of range"},
               {4097, 1, "dilation_h 4097 is out of range"},
               {1, 1 << 30, "CONV_2D stride_h 1073741824 is out of range"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len;
        uint8_t *buf = dilated_conv_model(bad[i].dil, bad[i].stride, TFL_PAD_SAME, &len);
        tfl_model *m = NULL;
        dfd_error e;
        assert_int_equal(tfl_parse(buf, len, &m, &e), DFD_E_CORRUPT);
        assert_null(m);
        if (!strstr(e.message, bad[i].needle)) fail_msg("message '%s' lacks '%s'", e.message, bad[i].needle);
        free(buf);
    }
    size_t len;
    uint8_t *buf = dilated_conv_model(TFL_MAX_WINDOW, 1, TFL_PAD_VALID, &len);
    tfl_model *m;
    dfd_error e;
    assert_int_equal(tfl_parse(buf, len, &m, &e), DFD_OK);
    nn_graph *g = NULL;
    assert_int_not_equal(tfl_to_graph(m, &g, &e), DFD_OK);
    assert_null(g);
    if (!strstr(e.message, "does not fit")) fail_msg("message '%s' lacks 'does not fit'", e.message);
    tfl_free(m);
    free(buf);
}

static void truncated_and_garbage_files_fail_cleanly(void **state) {
    (void)state;
    tfl_model *m = NULL;
    dfd_error e;
    /* Hand-built model: every truncation fails (its last bytes are tensor tables and
     * strings that something refers to). */
    size_t len;
    uint8_t *buf = conv_model(TFL_OP_CONV_2D, &len, TFL_ACT_NONE);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = tfl_parse(buf, cut, &m, &e);
        if (rc == DFD_OK) fail_msg("a model cut to %zu of %zu bytes parsed", cut, len);
        assert_null(m);
    }
    free(buf);
    assert_int_equal(tfl_parse((const uint8_t *)"\0\0\0\0TFL", 7, &m, &e), DFD_E_CORRUPT);
    /* Random bytes behind a valid identifier. */
    uint8_t junk[4096];
    uint64_t s = 99;
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof junk; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            junk[i] = (uint8_t)(s >> 56);
        }
        memcpy(junk + 4, "TFL3", 4);
        junk[0] = (uint8_t)(8 + round % 64);
        junk[1] = junk[2] = junk[3] = 0;
        if (tfl_parse(junk, sizeof junk, &m, &e) == DFD_OK) tfl_free(m); /* must not crash; success is unlikely */
    }
    /* The real model, truncated anywhere and with bytes flipped: no crash, and a
     * truncated file never parses. */
    char *p = registry_file("face_detection_short_range.tflite");
    if (!p) return;
    uint8_t *data = tu_read_file(p, &len);
    free(p);
    for (size_t cut = 0; cut < len; cut += 1 + len / 300) {
        if (tfl_parse(data, cut, &m, &e) == DFD_OK) fail_msg("the model cut to %zu of %zu bytes parsed", cut, len);
    }
    for (size_t cut = len - 64; cut < len; cut++)
        if (tfl_parse(data, cut, &m, &e) == DFD_OK) fail_msg("the model cut to %zu of %zu bytes parsed", cut, len);
    uint8_t *copy = malloc(len);
    for (int round = 0; round < 300; round++) {
        memcpy(copy, data, len);
        for (int k = 0; k < 4; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            copy[(s >> 20) % 4096 + (round % 2 ? 0 : (s >> 40) % (len - 4096))] ^= (uint8_t)(1u << ((s >> 8) & 7));
        }
        if (tfl_parse(copy, len, &m, &e) == DFD_OK) {
            nn_graph *g;
            if (tfl_to_graph(m, &g, &e) == DFD_OK) nn_graph_free(g);
            tfl_free(m);
        }
    }
    free(copy);
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(blazeface_files_parse_into_their_graphs),
        cmocka_unit_test(sparse_model_is_refused_naming_the_operator),
        cmocka_unit_test(converted_blazeface_computes_tflite_semantics),
        cmocka_unit_test(face_landmark_file_computes_tflite_semantics),
        cmocka_unit_test(prelu_matches_direct_semantics_and_checks_alpha),
        cmocka_unit_test(hand_built_conv_matches_direct_semantics),
        cmocka_unit_test(unsupported_operators_are_named),
        cmocka_unit_test(huge_window_options_are_refused),
        cmocka_unit_test(truncated_and_garbage_files_fail_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
