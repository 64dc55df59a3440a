/*
 * dnnl.c — the oneDNN backend of nn (nn_backend_dnnl): executor life cycle, the buffers
 * and memory objects that plans share, per-batch-size plan cache, running a pass, node
 * outputs in plain fp32.
 *
 * oneDNN 2.6 C API, OpenMP runtime. See dnnl_internal.h for the design; the forward plan
 * (fusion, layouts) is in dnnl_fwd.c and the backward plan in dnnl_bwd.c.
 */
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <oneapi/dnnl/dnnl_debug.h>

#include "nn/dnnl_internal.h"

/* ---- Errors and descriptors ---------------------------------------------------------- */

static const char *status_str(dnnl_status_t st) {
    switch (st) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "no implementation for these shapes/types";
    case dnnl_runtime_error: return "runtime error";
    default: return "error";
    }
}

int dn_check(dnnl_status_t st, dfd_error *err, const char *what, const nn_node *n) {
    if (st == dnnl_success) return DFD_OK;
    int code = st == dnnl_out_of_memory ? DFD_E_NOMEM : st == dnnl_unimplemented ? DFD_E_UNSUPPORTED : DFD_E_INTERNAL;
    if (n)
        return dfd_fail(err, code, "oneDNN: %s for layer '%s' (op %d) failed: %s", what, n->name[0] ? n->name : "(glue)",
                        (int)n->op, status_str(st));
    return dfd_fail(err, code, "oneDNN: %s failed: %s", what, status_str(st));
}

int dn_node_dims(const nn_node *n, int batch, dnnl_dims_t dims) {
    dims[0] = (dnnl_dim_t)batch * n->batch_mul;
    dims[1] = n->shape[n->ndim - 1];
    for (int i = 0; i < n->ndim - 1; i++) dims[2 + i] = n->shape[i];
    return n->ndim + 1;
}

int dn_dims(const dn_priv *d, int node, int batch, dnnl_dims_t dims) {
    int nd = dn_node_dims(nn_graph_node(d->g, node), batch, dims);
    if (d->nodes[node].cpad > 0) dims[1] = d->nodes[node].cpad;
    return nd;
}

/* Channels-last: the nn.h layouts NC, NTC, NHWC, NTHWC seen as {N, C, spatial...}. */
static dnnl_format_tag_t plain_tag(int ndims) {
    switch (ndims) {
    case 1: return dnnl_a;
    case 2: return dnnl_ab;
    case 3: return dnnl_acb;
    case 4: return dnnl_acdb;
    case 5: return dnnl_acdeb;
    default: return dnnl_format_tag_undef;
    }
}

int dn_md_plain(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, dnnl_data_type_t dt) {
    return dnnl_memory_desc_init_by_tag(md, ndims, dims, dt, plain_tag(ndims)) == dnnl_success ? 0 : -1;
}

int dn_md_any(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, dnnl_data_type_t dt) {
    return dnnl_memory_desc_init_by_tag(md, ndims, dims, dt, dnnl_format_tag_any) == dnnl_success ? 0 : -1;
}

int dn_is_plain(const dnnl_memory_desc_t *md, dnnl_data_type_t dt) {
    dnnl_memory_desc_t p;
    if (dn_md_plain(&p, md->ndims, md->dims, dt)) return 0;
    return dnnl_memory_desc_equal(&p, md);
}

nn_param *dn_param(const dn_priv *d, int node, int k) {
    const nn_node *n = nn_graph_node(d->g, node);
    return n && n->params[k] >= 0 ? nn_graph_param(d->g, n->params[k]) : NULL;
}

dnnl_alg_kind_t dn_act_alg(nn_act a, float *alpha, float *beta) {
    *alpha = 0.0f;
    *beta = 0.0f;
    switch (a) {
    case NN_ACT_RELU: return dnnl_eltwise_relu;
    case NN_ACT_RELU6: *beta = 6.0f; return dnnl_eltwise_clip_v2; /* derivative 1 on (0, 6), as the reference */
    case NN_ACT_SIGMOID: return dnnl_eltwise_logistic;
    case NN_ACT_SWISH: *alpha = 1.0f; return dnnl_eltwise_swish;
    case NN_ACT_TANH: return dnnl_eltwise_tanh;
    default: return dnnl_alg_kind_undef;
    }
}

int dn_conv_weights_md(const nn_node *n, int cin, int cout, dnnl_memory_desc_t *user, dnnl_memory_desc_t *any,
                       dnnl_data_type_t dt) {
    const nn_conv_attr *a = &n->a.conv;
    const int depthwise = a->groups > 1 && a->groups == a->out_c;
    dnnl_dim_t G = depthwise ? cout : a->groups, O = cout, IG = cin / G, OG = O / G, KH = a->kh, KW = a->kw;
    /* Keras stores {KH, KW, Cin/G, O} with o = g*OG + og: give oneDNN those strides. */
    if (G == 1) {
        dnnl_dims_t dims = {O, IG, KH, KW}, strides = {1, O, KW * IG * O, IG * O};
        if (dnnl_memory_desc_init_by_strides(user, 4, dims, dnnl_f32, strides) != dnnl_success) return -1;
        return any ? dn_md_any(any, 4, dims, dt) : 0;
    }
    dnnl_dims_t dims = {G, OG, IG, KH, KW}, strides = {OG, 1, O, KW * IG * O, IG * O};
    if (dnnl_memory_desc_init_by_strides(user, 5, dims, dnnl_f32, strides) != dnnl_success) return -1;
    return any ? dn_md_any(any, 5, dims, dt) : 0;
}

/* ---- Buffers and memories -------------------------------------------------------------- */

int dn_buf_need(dn_priv *d, int id, size_t size, dfd_error *err) {
    if (id < 0 || id >= d->nbufs) return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: buffer %d out of range", id);
    dn_buf *b = &d->bufs[id];
    if (size == 0) size = 64;
    if (b->size >= size) return DFD_OK;
    size = (size + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, size) != 0 || !p)
        return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory for a %zu-byte activation buffer", size);
    /* Zeroed: padding nodes rely on their borders staying zero (see dnnl_fwd.c). */
    memset(p, 0, size);
    free(b->p);
    b->p = p;
    b->size = size;
    d->gen++;
    return DFD_OK;
}

static int track_mem(dn_plan *pl, dnnl_memory_t m, int buf, dfd_error *err) {
    dn_bind *b = dfd_grow(pl->mems, &pl->capmems, pl->nmems + 1, sizeof *b, 64);
    if (!b) {
        dnnl_memory_destroy(m);
        return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory for a plan");
    }
    pl->mems = b;
    pl->mems[pl->nmems].mem = m;
    pl->mems[pl->nmems].buf = buf;
    pl->nmems++;
    return DFD_OK;
}

int dn_mem_buf(dn_priv *d, dn_plan *pl, const dnnl_memory_desc_t *md, int id, dnnl_memory_t *out, dfd_error *err) {
    int rc = id == DN_BUF_INPUT ? DFD_OK : dn_buf_need(d, id, dnnl_memory_desc_get_size(md), err);
    if (rc) return rc;
    dnnl_memory_t m;
    rc = dn_check(dnnl_memory_create(&m, md, d->eng, id == DN_BUF_INPUT ? DNNL_MEMORY_NONE : d->bufs[id].p), err,
                  "memory creation", NULL);
    if (rc) return rc;
    rc = track_mem(pl, m, id, err);
    if (rc) return rc;
    *out = m;
    return DFD_OK;
}

int dn_mem_ext(dn_priv *d, dn_plan *pl, const dnnl_memory_desc_t *md, void *p, dnnl_memory_t *out, dfd_error *err) {
    dnnl_memory_t m;
    int rc = dn_check(dnnl_memory_create(&m, md, d->eng, p ? p : DNNL_MEMORY_NONE), err, "memory creation", NULL);
    if (rc) return rc;
    rc = track_mem(pl, m, -1, err);
    if (rc) return rc;
    *out = m;
    return DFD_OK;
}

void dn_plan_rebind(dn_priv *d, dn_plan *pl) {
    for (int i = 0; i < pl->nmems; i++)
        if (pl->mems[i].buf >= 0) dnnl_memory_set_data_handle(pl->mems[i].mem, d->bufs[pl->mems[i].buf].p);
    pl->gen = d->gen;
}

/* ---- Steps ------------------------------------------------------------------------------- */

static dn_step *new_step(dn_steps *st, dfd_error *err) {
    dn_step *v = dfd_grow(st->v, &st->cap, st->n + 1, sizeof *v, 64);
    if (!v) {
        dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory for a plan");
        return NULL;
    }
    st->v = v;
    dn_step *s = &st->v[st->n];
    memset(s, 0, sizeof *s);
    return s;
}

int dn_add_prim(dn_priv *d, dn_plan *pl, dn_steps *st, const_dnnl_primitive_desc_t pd, int nargs,
                const dnnl_exec_arg_t *args, dfd_error *err) {
    dn_step *s = new_step(st, err);
    if (!s) return err ? err->code : DFD_E_NOMEM;
    s->args = malloc((size_t)(nargs + 1) * sizeof *s->args);
    if (!s->args) return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory for a plan");
    memcpy(s->args, args, (size_t)nargs * sizeof *args);
    s->nargs = nargs;
    int rc = dn_check(dnnl_primitive_create(&s->prim, pd), err, "primitive creation", NULL);
    if (rc) {
        free(s->args);
        return rc;
    }
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (smd && smd->ndims > 0 && dnnl_memory_desc_get_size(smd) > 0) {
        dnnl_memory_t m;
        rc = dn_mem_buf(d, pl, smd, dn_global(d, DN_G_SCRATCH), &m, err);
        if (rc) {
            dnnl_primitive_destroy(s->prim);
            free(s->args);
            return rc;
        }
        s->args[s->nargs].arg = DNNL_ARG_SCRATCHPAD;
        s->args[s->nargs].memory = m;
        s->nargs++;
    }
    st->n++;
    return DFD_OK;
}

int dn_add_fn(dn_steps *st, dn_fn fn, int node, int i0, int i1, dnnl_memory_t m0, dnnl_memory_t m1, dfd_error *err) {
    dn_step *s = new_step(st, err);
    if (!s) return err ? err->code : DFD_E_NOMEM;
    s->fn = fn;
    s->node = node;
    s->i0 = i0;
    s->i1 = i1;
    s->m0 = m0;
    s->m1 = m1;
    st->n++;
    return DFD_OK;
}

static const dnnl_memory_desc_t *mem_md(const_dnnl_memory_t m) {
    const dnnl_memory_desc_t *md = NULL;
    dnnl_memory_get_memory_desc(m, &md);
    return md;
}

int dn_add_reorder(dn_priv *d, dn_plan *pl, dn_steps *st, dnnl_memory_t src, dnnl_memory_t dst, dfd_error *err) {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_attr_t attr;
    int rc = dn_check(dnnl_primitive_attr_create(&attr), err, "attribute", NULL);
    if (rc) return rc;
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    rc = dn_check(dnnl_reorder_primitive_desc_create(&pd, mem_md(src), d->eng, mem_md(dst), d->eng, attr), err,
                  "reorder", NULL);
    dnnl_primitive_attr_destroy(attr);
    if (rc) return rc;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
    rc = dn_add_prim(d, pl, st, pd, 2, args, err);
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

int dn_get_input(dn_priv *d, dn_plan *pl, dn_steps *st, int node, const dnnl_memory_desc_t *want, dnnl_memory_t *out,
                 int *buf, dfd_error *err) {
    dn_val *v = &pl->vals[node];
    if (!v->mem)
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: the value of node %d is used but was not produced", node);
    if (dnnl_memory_desc_equal(&v->md, want)) {
        *out = v->mem;
        if (buf) *buf = v->buf;
        return DFD_OK;
    }
    for (int i = 0; i < v->nconv; i++)
        if (dnnl_memory_desc_equal(&v->conv_md[i], want)) {
            *out = v->conv_mem[i];
            if (buf) *buf = dn_slot(node, DN_SLOT_CONV0 + i);
            return DFD_OK;
        }
    if (v->nconv == 4)
        return dfd_fail(err, DFD_E_INTERNAL, "oneDNN backend: node %d is wanted in too many layouts", node);
    dnnl_memory_t m;
    int rc = dn_mem_buf(d, pl, want, dn_slot(node, DN_SLOT_CONV0 + v->nconv), &m, err);
    if (rc) return rc;
    rc = dn_add_reorder(d, pl, st, v->mem, m, err);
    if (rc) return rc;
    v->conv_md[v->nconv] = *want;
    v->conv_mem[v->nconv] = m;
    if (buf) *buf = dn_slot(node, DN_SLOT_CONV0 + v->nconv);
    v->nconv++;
    *out = m;
    return DFD_OK;
}

/* Runs one reorder now (weights, at creation and refresh). */
static int reorder_now(dn_priv *d, const dnnl_memory_desc_t *smd, const void *src, const dnnl_memory_desc_t *dmd,
                       void *dst, dfd_error *err) {
    dnnl_memory_t ms = NULL, md = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = NULL;
    int rc = dn_check(dnnl_memory_create(&ms, smd, d->eng, (void *)src), err, "memory creation", NULL);
    if (!rc) rc = dn_check(dnnl_memory_create(&md, dmd, d->eng, dst), err, "memory creation", NULL);
    if (!rc) rc = dn_check(dnnl_reorder_primitive_desc_create(&pd, smd, d->eng, dmd, d->eng, NULL), err, "weight reorder", NULL);
    if (!rc) rc = dn_check(dnnl_primitive_create(&p, pd), err, "weight reorder", NULL);
    if (!rc) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_DST, md}};
        rc = dn_check(dnnl_primitive_execute(p, d->strm, 2, args), err, "weight reorder", NULL);
        if (!rc) rc = dn_check(dnnl_stream_wait(d->strm), err, "weight reorder", NULL);
    }
    if (p) dnnl_primitive_destroy(p);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (md) dnnl_memory_destroy(md);
    if (ms) dnnl_memory_destroy(ms);
    return rc;
}

int dn_get_weight(dn_priv *d, dn_plan *pl, dn_steps *st, int node, int key, const dnnl_memory_desc_t *user,
                  const float *src, const dnnl_memory_desc_t *want, dnnl_memory_t *out, dfd_error *err) {
    if (dnnl_memory_desc_equal(user, want)) /* the source is already in the wanted layout */
        return dn_mem_ext(d, pl, want, (void *)src, out, err);
    dn_node *dn = &d->nodes[node];
    dn_wcopy *w = NULL;
    for (int i = 0; i < dn->nw; i++)
        if (dn->w[i].key == key && dnnl_memory_desc_equal(&dn->w[i].md, want)) w = &dn->w[i];
    if (!w) {
        dn_wcopy *nw = dfd_grow(dn->w, &dn->capw, dn->nw + 1, sizeof *nw, 4);
        if (!nw) return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory for weights");
        dn->w = nw;
        w = &dn->w[dn->nw];
        memset(w, 0, sizeof *w);
        w->key = key;
        w->user = *user;
        w->src = src;
        w->md = *want;
        size_t sz = dnnl_memory_desc_get_size(want);
        if (posix_memalign(&w->p, 64, sz ? sz : 64) != 0 || !w->p)
            return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory for a %zu-byte weight", sz);
        memset(w->p, 0, sz ? sz : 64);
        int rc = dn_check(dnnl_memory_create(&w->mem, want, d->eng, w->p), err, "memory creation", NULL);
        if (rc) {
            free(w->p);
            return rc;
        }
        dn->nw++;
        if (!d->training) {
            rc = reorder_now(d, user, src, want, w->p, err);
            if (rc) return rc;
        }
    }
    /* Training: parameters change between passes, so convert at every pass; a backward
     * pass reuses what its forward pass converted. */
    if (d->training && !(d->building_bwd && w->stamp == pl)) {
        dnnl_memory_t ms;
        int rc = dn_mem_ext(d, pl, user, (void *)src, &ms, err);
        if (!rc) rc = dn_add_reorder(d, pl, st, ms, w->mem, err);
        if (rc) return rc;
        w->stamp = pl;
    }
    *out = w->mem;
    return DFD_OK;
}

static int refresh_weights(dn_priv *d, dfd_error *err) {
    int rc = dn_prepare_weights(d, err);
    for (int i = 0; !rc && i < d->n; i++)
        for (int k = 0; !rc && k < d->nodes[i].nw; k++) {
            dn_wcopy *w = &d->nodes[i].w[k];
            rc = reorder_now(d, &w->user, w->src, &w->md, w->p, err);
        }
    return rc;
}

/* DFD_NN_VERBOSE=1: one line per step on stderr, like ONEDNN_VERBOSE's (which names only
 * oneDNN's primitives): "dfd_nn_verbose,exec,<primitive kind or plain>,<node>,<ms>". */
static int verbose_flag;
static pthread_once_t verbose_once = PTHREAD_ONCE_INIT;
static void read_verbose(void) {
    const char *e = getenv("DFD_NN_VERBOSE");
    verbose_flag = e && *e && strcmp(e, "0") != 0;
}
/* Read once, by whichever executor runs first: pthread_once orders that write before
 * every read, where a plain lazily set static was a data race between executors running
 * on several threads (the server's workers). */
static int verbose_steps(void) {
    pthread_once(&verbose_once, read_verbose);
    return verbose_flag;
}

static double now_ms(void) { return dfd_now_ms(); }

static void verbose_step(const dn_priv *d, const dn_step *s, double ms) {
    const char *kind = "plain";
    if (s->prim) {
        const_dnnl_primitive_desc_t pd = NULL;
        dnnl_primitive_kind_t k = dnnl_undefined_primitive;
        if (dnnl_primitive_get_primitive_desc(s->prim, &pd) == dnnl_success)
            dnnl_primitive_desc_query(pd, dnnl_query_primitive_kind, 0, &k);
        kind = dnnl_prim_kind2str(k);
    }
    fprintf(stderr, "dfd_nn_verbose,exec,%s,%s,%.4f\n", kind, s->node >= 0 ? nn_graph_node(d->g, s->node)->name : "-",
            ms);
}

int dn_run_steps(dn_priv *d, dn_plan *pl, const dn_steps *st, dfd_error *err) {
    const int verbose = verbose_steps();
    for (int i = 0; i < st->n; i++) {
        const dn_step *s = &st->v[i];
        int rc;
        double t0 = verbose ? now_ms() : 0;
        if (s->prim) {
            rc = dn_check(dnnl_primitive_execute(s->prim, d->strm, s->nargs, s->args), err, "execution",
                          s->node >= 0 ? nn_graph_node(d->g, s->node) : NULL);
        } else {
            rc = dn_check(dnnl_stream_wait(d->strm), err, "execution", NULL);
            if (!rc) rc = s->fn(d, pl, s, err);
        }
        if (rc) return rc;
        if (verbose) {
            dnnl_stream_wait(d->strm);
            verbose_step(d, s, now_ms() - t0);
        }
    }
    return dn_check(dnnl_stream_wait(d->strm), err, "execution", NULL);
}

/* ---- Plans --------------------------------------------------------------------------------- */

static void free_steps(dn_steps *st) {
    for (int i = 0; i < st->n; i++) {
        if (st->v[i].prim) dnnl_primitive_destroy(st->v[i].prim);
        free(st->v[i].args);
    }
    free(st->v);
    memset(st, 0, sizeof *st);
}

static void plan_free(dn_priv *d, dn_plan *pl) {
    if (!pl) return;
    free_steps(&pl->fwd);
    free_steps(&pl->bwd);
    for (int i = 0; pl->vals && i < d->n; i++)
        if (pl->vals[i].out_prim) dnnl_primitive_destroy(pl->vals[i].out_prim);
    for (int i = 0; pl->hint && i < 2 * d->n; i++)
        if (pl->hint[i]) dnnl_primitive_desc_destroy(pl->hint[i]);
    free(pl->hint);
    for (int i = 0; i < pl->nmems; i++) dnnl_memory_destroy(pl->mems[i].mem);
    free(pl->mems);
    free(pl->vals);
    free(pl->grad_ready);
    free(pl);
}

/* omp_set_num_threads applies to the calling thread's later parallel regions, which is
 * where oneDNN (OpenMP runtime) runs: set it around each call and put it back. */
static int threads_enter(const dn_priv *d) {
    int prev = omp_get_max_threads();
    if (d->threads > 0 && d->threads != prev) omp_set_num_threads(d->threads);
    return prev;
}
static void threads_leave(const dn_priv *d, int prev) {
    if (d->threads > 0 && d->threads != prev) omp_set_num_threads(prev);
}

static int plan_get(dn_priv *d, int batch, dn_plan **out, dfd_error *err) {
    dn_plan *pl = d->plans[batch];
    if (!pl) {
        pl = calloc(1, sizeof *pl);
        if (!pl) return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory for a plan");
        pl->batch = batch;
        pl->vals = calloc((size_t)d->n, sizeof *pl->vals);
        pl->grad_ready = calloc((size_t)d->n, sizeof *pl->grad_ready);
        pl->hint = calloc((size_t)d->n * 2, sizeof *pl->hint);
        if (!pl->vals || !pl->grad_ready || !pl->hint) {
            plan_free(d, pl);
            return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory for a plan");
        }
        for (int i = 0; i < d->n; i++) pl->vals[i].buf = -1;
        int rc = dn_build_forward(d, pl, err);
        if (rc) {
            plan_free(d, pl);
            return rc;
        }
        d->plans[batch] = pl;
    }
    if (pl->gen != d->gen) dn_plan_rebind(d, pl);
    *out = pl;
    return DFD_OK;
}

/* ---- Backend operations --------------------------------------------------------------------- */

static void dn_destroy(nn_exec *ex);

static int dn_create(nn_exec *ex, dfd_error *err) {
    dn_priv *d = calloc(1, sizeof *d);
    if (!d) return dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory");
    ex->priv = d;
    d->ex = ex;
    d->g = ex->g;
    d->n = nn_graph_node_count(ex->g);
    d->training = ex->opts.training;
    d->threads = ex->opts.threads > 0 ? ex->opts.threads : dfd_cpu_count();
    d->adt = ex->precision == NN_PREC_BF16 ? dnnl_bf16 : dnnl_f32;
    int rc = DFD_OK;
    if (ex->precision == NN_PREC_BF16 && !nn_cpu_has_bf16())
        rc = dfd_fail(err, DFD_E_UNSUPPORTED, "oneDNN backend: this CPU (%s) has no native bf16", nn_cpu_isa());
    int prev = threads_enter(d);
    if (!rc) rc = dn_check(dnnl_engine_create(&d->eng, dnnl_cpu, 0), err, "engine creation", NULL);
    if (!rc) rc = dn_check(dnnl_stream_create(&d->strm, d->eng, dnnl_stream_default_flags), err, "stream creation", NULL);
    if (!rc) {
        d->nbufs = d->n * DN_SLOTS + DN_GLOBALS;
        d->bufs = calloc((size_t)d->nbufs, sizeof *d->bufs);
        d->nodes = calloc((size_t)d->n, sizeof *d->nodes);
        d->plans = calloc((size_t)ex->opts.max_batch + 1, sizeof *d->plans);
        if (!d->bufs || !d->nodes || !d->plans) rc = dfd_fail(err, DFD_E_NOMEM, "oneDNN backend: no memory");
    }
    if (!rc) rc = dn_analyse(d, err);
    if (!rc) rc = dn_prepare_weights(d, err);
    threads_leave(d, prev);
    if (rc) {
        dn_destroy(ex);
        ex->priv = NULL;
    }
    return rc;
}

static void dn_destroy(nn_exec *ex) {
    dn_priv *d = ex->priv;
    if (!d) return;
    for (int b = 0; d->plans && b <= ex->opts.max_batch; b++) plan_free(d, d->plans[b]);
    free(d->plans);
    for (int i = 0; d->nodes && i < d->n; i++) {
        dn_node *dn = &d->nodes[i];
        for (int k = 0; k < dn->nw; k++) {
            dnnl_memory_destroy(dn->w[k].mem);
            free(dn->w[k].p);
        }
        free(dn->w);
        free(dn->wf);
        free(dn->bf);
        free(dn->stage);
    }
    free(d->nodes);
    for (int i = 0; d->uses && i < d->n; i++) free(d->uses[i]);
    free(d->uses);
    free(d->chains);
    for (int i = 0; d->bufs && i < d->nbufs; i++) free(d->bufs[i].p);
    free(d->bufs);
    if (d->strm) dnnl_stream_destroy(d->strm);
    if (d->eng) dnnl_engine_destroy(d->eng);
    free(d);
    ex->priv = NULL;
}

static int dn_refresh(nn_exec *ex, dfd_error *err) {
    dn_priv *d = ex->priv;
    if (d->training) return DFD_OK; /* training passes read the parameters every time */
    int prev = threads_enter(d);
    int rc = refresh_weights(d, err);
    threads_leave(d, prev);
    return rc;
}

static int dn_forward(nn_exec *ex, const float *input, int batch, dfd_error *err) {
    dn_priv *d = ex->priv;
    int prev = omp_get_max_threads(), want = nn_exec_pass_threads(ex, batch);
    if (want != prev) omp_set_num_threads(want);
    dn_plan *pl = NULL;
    d->cur = NULL;
    int rc = plan_get(d, batch, &pl, err);
    if (!rc) {
        d->cur_input = input;
        for (int i = 0; i < pl->nmems; i++)
            if (pl->mems[i].buf == DN_BUF_INPUT) dnnl_memory_set_data_handle(pl->mems[i].mem, (void *)input);
        rc = dn_run_steps(d, pl, &pl->fwd, err);
    }
    if (!rc) d->cur = pl;
    if (want != prev) omp_set_num_threads(prev);
    return rc;
}

static const float *dn_node_output(const nn_exec *ex, int node, size_t *count) {
    dn_priv *d = ex->priv;
    dn_plan *pl = d->cur;
    if (!pl || node < 0 || node >= d->n) return NULL;
    dn_val *v = &pl->vals[node];
    if (v->buf < 0 || !v->mem || v->clobbered) return NULL; /* fused away, or overwritten later in the pass */
    const nn_node *n = nn_graph_node(d->g, node);
    size_t cnt = (size_t)pl->batch * (size_t)n->batch_mul * nn_node_size(n);
    if (dn_is_plain(&v->md, dnnl_f32) && !d->nodes[node].cpad) {
        if (count) *count = cnt;
        return d->bufs[v->buf].p;
    }
    dn_node *dn = &d->nodes[node];
    if (dn->stage && dn->stage_pass == ex->pass && dn->stage_cap >= cnt && v->out_prim) {
        if (count) *count = cnt;
        return dn->stage;
    }
    int prev = threads_enter(d);
    const float *res = NULL;
    if (dn->stage_cap < cnt) {
        float *s = NULL;
        if (posix_memalign((void **)&s, 64, cnt * sizeof(float)) != 0) goto out;
        free(dn->stage);
        dn->stage = s;
        dn->stage_cap = cnt;
    }
    if (!v->out_prim) {
        dnnl_memory_desc_t pmd;
        dnnl_primitive_desc_t pd;
        /* a value with zero-padded channels: its first C channels (a view of it) */
        dnnl_memory_desc_t vmd = v->md;
        dnnl_dims_t real, off = {0};
        dn_node_dims(n, pl->batch, real);
        if (dn->cpad && dnnl_memory_desc_init_submemory(&vmd, &v->md, real, off) != dnnl_success) goto out;
        if (dn_md_plain(&pmd, v->md.ndims, real, dnnl_f32)) goto out;
        if (dn_mem_ext(d, pl, &pmd, dn->stage, &v->out_mem, NULL)) goto out;
        if (dnnl_reorder_primitive_desc_create(&pd, &vmd, d->eng, &pmd, d->eng, NULL) != dnnl_success) goto out;
        dnnl_status_t st = dnnl_primitive_create(&v->out_prim, pd);
        dnnl_primitive_desc_destroy(pd);
        if (st != dnnl_success) {
            v->out_prim = NULL;
            goto out;
        }
    }
    /* The staging buffer is the node's, shared by every plan: point this plan's memory at it. */
    dnnl_memory_set_data_handle(v->out_mem, dn->stage);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, v->mem}, {DNNL_ARG_DST, v->out_mem}};
    if (dnnl_primitive_execute(v->out_prim, d->strm, 2, args) != dnnl_success) goto out;
    if (dnnl_stream_wait(d->strm) != dnnl_success) goto out;
    dn->stage_pass = ex->pass;
    res = dn->stage;
    if (count) *count = cnt;
out:
    threads_leave(d, prev);
    return res;
}

static int dn_backward_op(nn_exec *ex, const float *const *d_outputs, dfd_error *err) {
    dn_priv *d = ex->priv;
    int prev = threads_enter(d);
    int rc = dn_backward(ex, d_outputs, err);
    threads_leave(d, prev);
    return rc;
}

const nn_backend_ops nn_backend_dnnl = {
    .name = "oneDNN",
    .create = dn_create,
    .refresh = dn_refresh,
    .forward = dn_forward,
    .backward = dn_backward_op,
    .node_output = dn_node_output,
    .input_grad = dn_input_grad,
    .node_grad = dn_node_grad,
    .destroy = dn_destroy,
};
