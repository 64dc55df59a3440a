/*
 * exec.c — nn_exec: validates executor options, resolves the precision, allocates the
 * gradients a training executor needs, and dispatches every pass to a backend through
 * the table in backend.h. Also the pieces both backends must agree on exactly: the
 * dropout masks (so the reference and oneDNN backends drop the same units) and node sizes.
 */
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/graph_internal.h"

void nn_exec_opts_default(nn_exec_opts *o) {
    memset(o, 0, sizeof *o);
    o->backend = NN_BACKEND_DNNL;
    o->precision = NN_PREC_AUTO;
    o->max_batch = 1;
    o->training = 0;
    o->threads = 0;
    o->seed = 0;
}

/* The precision a pass runs in: AUTO is bf16 for oneDNN inference on a CPU with native
 * bf16 (AMX / avx512_bf16), fp32 otherwise; training is fp32 unless bf16 is asked for.
 * The reference backend is the fp32 yardstick and always resolves AUTO to fp32. */
static nn_precision resolve_precision(const nn_exec_opts *o) {
    if (o->precision == NN_PREC_F32 || o->precision == NN_PREC_BF16) return o->precision;
    if (o->training || o->backend == NN_BACKEND_REF) return NN_PREC_F32;
    return nn_cpu_has_bf16() ? NN_PREC_BF16 : NN_PREC_F32;
}

static const char *backend_name(nn_backend b) { return b == NN_BACKEND_REF ? "reference" : "oneDNN"; }

int nn_exec_create(nn_graph *g, const nn_exec_opts *opts, nn_exec **out, dfd_error *err) {
    if (out) *out = NULL;
    if (!g || !out) return dfd_fail(err, DFD_E_ARG, "nn_exec_create: no graph or no result pointer");
    nn_exec_opts o;
    if (opts)
        o = *opts;
    else
        nn_exec_opts_default(&o);
    if (nn_graph_error(g)) return dfd_fail(err, DFD_E_ARG, "graph was built with an error: %s", nn_graph_error(g));
    if (nn_graph_input(g) < 0) return dfd_fail(err, DFD_E_ARG, "graph has no input");
    if (nn_graph_output_count(g) < 1) return dfd_fail(err, DFD_E_ARG, "graph has no output (nn_mark_output)");
    if (o.max_batch < 1 || o.max_batch > (1 << 20))
        return dfd_fail(err, DFD_E_ARG, "max_batch %d out of range (1..%d)", o.max_batch, 1 << 20);
    if (o.threads < 0) return dfd_fail(err, DFD_E_ARG, "threads %d is negative", o.threads);
    if (o.precision < NN_PREC_AUTO || o.precision > NN_PREC_BF16)
        return dfd_fail(err, DFD_E_ARG, "unknown precision %d", (int)o.precision);
    const nn_backend_ops *ops = NULL;
    if (o.backend == NN_BACKEND_REF) {
        ops = &nn_backend_ref;
    } else if (o.backend == NN_BACKEND_DNNL) {
        ops = &nn_backend_dnnl;
    } else {
        return dfd_fail(err, DFD_E_ARG, "unknown backend %d", (int)o.backend);
    }
    nn_precision prec = resolve_precision(&o);
    if (o.backend == NN_BACKEND_REF && prec != NN_PREC_F32)
        return dfd_fail(err, DFD_E_UNSUPPORTED, "the reference backend computes in fp32 only (bf16 was asked for)");

    /* A training executor accumulates into every parameter's grad: allocate them here
     * (the graph owns them; nn_graph_zero_grad clears them). */
    if (o.training) {
        for (int i = 0; i < nn_graph_param_count(g); i++) {
            nn_param *p = nn_graph_param(g, i);
            if (p->grad) continue;
            p->grad = dfd_calloc_array(p->count, sizeof(float));
            if (!p->grad) return dfd_fail(err, DFD_E_NOMEM, "no memory for the gradient of '%s'", p->name);
        }
    }

    nn_exec *ex = calloc(1, sizeof *ex);
    if (!ex) return dfd_fail(err, DFD_E_NOMEM, "no memory for an executor");
    ex->g = g;
    ex->opts = o;
    ex->precision = prec;
    ex->ops = ops;
    ex->macs = nn_graph_macs(g);
    ex->max_threads = o.threads > 0 ? o.threads : dfd_cpu_count();
    int rc = ops->create(ex, err);
    if (rc != DFD_OK) {
        free(ex);
        return rc;
    }
    dfd_log(DFD_LOG_DEBUG, "nn: %s executor, %s, max batch %d%s", backend_name(o.backend),
            prec == NN_PREC_BF16 ? "bf16" : "fp32", o.max_batch, o.training ? ", training" : "");
    *out = ex;
    return DFD_OK;
}

void nn_exec_free(nn_exec *ex) {
    if (!ex) return;
    if (ex->ops && ex->ops->destroy) ex->ops->destroy(ex);
    free(ex);
}

int nn_exec_refresh(nn_exec *ex, dfd_error *err) {
    if (!ex) return dfd_fail(err, DFD_E_ARG, "nn_exec_refresh: no executor");
    return ex->ops->refresh ? ex->ops->refresh(ex, err) : DFD_OK;
}

nn_precision nn_exec_precision(const nn_exec *ex) { return ex ? ex->precision : NN_PREC_F32; }

int nn_forward(nn_exec *ex, const float *input, int batch, dfd_error *err) {
    if (!ex || !input) return dfd_fail(err, DFD_E_ARG, "nn_forward: no executor or no input");
    if (batch < 1 || batch > ex->opts.max_batch)
        return dfd_fail(err, DFD_E_ARG, "batch %d out of range (1..%d, the executor's max_batch)", batch,
                        ex->opts.max_batch);
    /* The pass number seeds dropout; it is advanced before the pass so that the backward
     * pass that follows sees the same number as its forward pass. */
    ex->pass++;
    ex->batch = 0;
    int rc = ex->ops->forward(ex, input, batch, err);
    if (rc == DFD_OK) ex->batch = batch;
    return rc;
}

const float *nn_output(const nn_exec *ex, int i, size_t *count) {
    if (count) *count = 0;
    if (!ex || ex->batch <= 0) return NULL;
    int node = nn_graph_output(ex->g, i);
    if (node < 0) return NULL;
    return ex->ops->node_output(ex, node, count);
}

const float *nn_node_output(const nn_exec *ex, int node, size_t *count) {
    if (count) *count = 0;
    if (!ex || ex->batch <= 0 || node < 0 || node >= nn_graph_node_count(ex->g)) return NULL;
    return ex->ops->node_output(ex, node, count);
}

int nn_backward(nn_exec *ex, const float *const *d_outputs, dfd_error *err) {
    if (!ex) return dfd_fail(err, DFD_E_ARG, "nn_backward: no executor");
    if (!ex->opts.training) return dfd_fail(err, DFD_E_ARG, "nn_backward needs an executor created with training = 1");
    if (ex->batch <= 0) return dfd_fail(err, DFD_E_ARG, "nn_backward before a successful forward pass");
    return ex->ops->backward(ex, d_outputs, err);
}

const float *nn_input_grad(const nn_exec *ex) {
    if (!ex || !ex->opts.training || ex->batch <= 0 || (ex->opts.no_input_grad && ex->opts.backend == NN_BACKEND_DNNL))
        return NULL;
    return ex->ops->input_grad(ex);
}

const float *nn_node_grad(const nn_exec *ex, int node, size_t *count) {
    if (!ex || !ex->opts.training || ex->batch <= 0 || node < 0 || node >= nn_graph_node_count(ex->g)) return NULL;
    const nn_node *n = nn_graph_node(ex->g, node);
    const float *g = ex->ops->node_grad ? ex->ops->node_grad(ex, node) : NULL;
    if (g && count) *count = (size_t)ex->batch * (size_t)n->batch_mul * nn_node_size(n);
    return g;
}

/* splitmix64's finaliser: a good 64-bit mix, used to derive independent streams. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* One thread per NN_MACS_PER_THREAD of work, at most the executor's. A small pass (one
 * 128 px MobileNetV2 crop, 0.1 GMAC: ~1 ms; a video's 30 crops, 3 GMAC: ~30 ms) gains
 * little from a second thread on a quiet machine and loses much on a busy one: each of its ~60 primitives ends in an OpenMP
 * barrier, and a partner thread the kernel has descheduled costs a time slice (measured:
 * 890 ms instead of 3 ms per photo while a training run held both cores). The choice is
 * fixed per batch size, so a backend's plan for a batch runs with the threads it was
 * built for. Training keeps every thread (its passes are large). */
#define NN_MACS_PER_THREAD 4000000000ull
int nn_exec_pass_threads(const nn_exec *ex, int batch) {
    int max = ex->max_threads;
    if (ex->opts.training || max <= 1) return max;
    uint64_t n = ex->macs * (uint64_t)(batch > 0 ? batch : 1) / NN_MACS_PER_THREAD;
    return n < 1 ? 1 : n < (uint64_t)max ? (int)n : max;
}

void nn_exec_set_passes(nn_exec *ex, uint64_t passes) {
    if (ex) ex->pass = passes;
}

void nn_dropout_mask(const nn_exec *ex, int node, size_t n, uint8_t *mask) {
    const nn_node *nd = nn_graph_node(ex->g, node);
    float rate = nd && nd->op == NN_OP_DROPOUT ? nd->a.dropout.rate : 0.0f;
    nn_rng r;
    /* One stream per (seed, pass, node): masks differ between passes and layers, and do
     * not depend on the backend or on how many other dropout layers ran before. */
    nn_rng_seed(&r, mix64(ex->opts.seed ^ mix64(ex->pass * 0x9e3779b97f4a7c15ULL + (uint64_t)node)));
    for (size_t i = 0; i < n; i++) mask[i] = nn_rng_uniform(&r) >= rate;
}
