/*
 * backend.h — the contract between nn's executor and its backends (internal to src/nn).
 *
 * nn_exec (exec.c) validates options, resolves the precision and dispatches to a backend
 * through this table. A backend keeps whatever layouts it likes inside (oneDNN's blocked
 * formats, bf16 copies of weights) but answers node_output / input_grad in plain fp32
 * layout (NHWC / NC / NTC, see nn.h), and accumulates parameter gradients into
 * nn_param.grad in the parameter's Keras layout — so the two backends can be compared
 * node by node and gradient by gradient.
 *
 * Determinism across backends: dropout masks come from nn_dropout_mask() (exec.c), so the
 * reference and oneDNN backends drop the same units for the same seed and pass number.
 */
#ifndef DFD_NN_BACKEND_H
#define DFD_NN_BACKEND_H

#include "nn/nn.h"

typedef struct nn_backend_ops {
    const char *name;
    int (*create)(nn_exec *ex, dfd_error *err); /* sets ex->priv; allocates for opts.max_batch */
    int (*refresh)(nn_exec *ex, dfd_error *err); /* re-read parameters (after training / loading) */
    int (*forward)(nn_exec *ex, const float *input, int batch, dfd_error *err);
    int (*backward)(nn_exec *ex, const float *const *d_outputs, dfd_error *err);
    const float *(*node_output)(const nn_exec *ex, int node, size_t *count);
    const float *(*input_grad)(const nn_exec *ex);
    const float *(*node_grad)(const nn_exec *ex, int node); /* NULL: none reached the node */
    void (*destroy)(nn_exec *ex);
} nn_backend_ops;

struct nn_exec {
    nn_graph *g;
    nn_exec_opts opts;
    nn_precision precision; /* resolved: F32 or BF16 */
    int batch;              /* batch of the last forward pass */
    uint64_t pass;          /* forward passes so far (seeds dropout) */
    uint64_t macs;          /* multiply-accumulates per item, counted once (thread choice) */
    int max_threads;        /* opts.threads, or the cores online at creation */
    const nn_backend_ops *ops;
    void *priv;
};

extern const nn_backend_ops nn_backend_ref;
extern const nn_backend_ops nn_backend_dnnl;

/* Items per batch element of a node's output (product of its per-item shape). */
size_t nn_node_size(const nn_node *n);
/* Keep-mask for a dropout node in the current pass: n bytes of 0/1, scale = 1/(1-rate). */
void nn_dropout_mask(const nn_exec *ex, int node, size_t n, uint8_t *mask);

#endif
