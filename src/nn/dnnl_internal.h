/*
 * dnnl_internal.h — state of the oneDNN backend, shared by its halves: dnnl.c (executor
 * life cycle, buffers, node outputs), dnnl_fwd.c (forward plans, fusion), dnnl_bwd.c
 * (backward plans).
 *
 * How it works, in short:
 *   - At creation the graph is analysed once: which convolutions absorb the batch-norm,
 *     activation and residual add that follow them (inference only), which zero-padding
 *     nodes fold into a convolution's padding, which activations a training batch-norm
 *     absorbs (our kernel, nn/bnact.h), which values bf16 inference carries with padded
 *     channels (dn_node.cpad), and where each node's value is produced.
 *   - A *plan* is everything that depends on the batch size: oneDNN memory descriptors,
 *     primitives and the list of steps of a pass. Plans are built lazily, one per batch size
 *     used, and cached: a pass of a batch size seen before creates nothing.
 *   - Activations live in buffers owned by the executor and shared by all plans (buffer i
 *     is the same role for every batch size, sized for the largest plan seen); a memory
 *     object is bound to a buffer and re-pointed when a buffer grows.
 *   - Convolutions choose their layout (format_tag_any) and the next layer takes it as it
 *     is; a reorder is inserted only where a consumer wants another layout or type (the
 *     input, plain-loop ops, outputs). Inference runs in bf16 where the CPU has it.
 */
#ifndef DFD_NN_DNNL_INTERNAL_H
#define DFD_NN_DNNL_INTERNAL_H

#include <oneapi/dnnl/dnnl.h>

#include "nn/backend.h"
#include "nn/graph_internal.h"

/* Buffers: DN_SLOTS per node, then a few global ones. */
enum {
    DN_SLOT_VAL = 0, /* the node's value */
    DN_SLOT_DIFF,    /* training: d(loss)/d(value), plain fp32 */
    DN_SLOT_AUX0,    /* pre-activation, workspace, statistics... (per op) */
    DN_SLOT_AUX1,
    DN_SLOT_AUX2,
    DN_SLOT_AUX3,
    DN_SLOT_CONV0, /* the value converted to other layouts/types wanted by consumers */
    DN_SLOT_B0 = DN_SLOT_CONV0 + 4, /* training: backward temporaries of the node */
    DN_SLOT_B1,
    DN_SLOT_B2,
    DN_SLOT_B3,
    DN_SLOT_B4,
    DN_SLOTS
};
/* A memory "on" this buffer id is bound to the caller's input at every pass (inference). */
#define DN_BUF_INPUT (-2)
enum { DN_G_SCRATCH = 0, DN_G_TMP0, DN_G_TMP1, DN_G_TMP2, DN_G_TMP3, DN_GLOBALS };

typedef struct dn_buf {
    void *p;
    size_t size;
} dn_buf;

typedef struct dn_priv dn_priv;
typedef struct dn_plan dn_plan;
typedef struct dn_step dn_step;

typedef int (*dn_fn)(dn_priv *d, dn_plan *pl, const dn_step *s, dfd_error *err);

/* One step of a pass: a oneDNN primitive with its arguments, or a plain C function. */
struct dn_step {
    dnnl_primitive_t prim;
    dnnl_exec_arg_t *args;
    int nargs;
    dn_fn fn;
    int node;
    int i0, i1;
    dnnl_memory_t m0, m1; /* memories a function step uses */
};

typedef struct dn_steps {
    dn_step *v;
    int n, cap;
} dn_steps;

/* Where a node's value lives in one plan. */
typedef struct dn_val {
    int buf;               /* buffer id; -1 not materialised (fused away); DN_BUF_INPUT */
    dnnl_memory_desc_t md; /* its layout and type */
    dnnl_memory_t mem;
    int clobbered;         /* overwritten later in the pass (in-place residual add) */
    int nconv;             /* cached conversions of the value */
    dnnl_memory_desc_t conv_md[4];
    dnnl_memory_t conv_mem[4];
    dnnl_memory_t diff;    /* training: plain fp32 gradient, on DN_SLOT_DIFF */
    /* node_output of a non-plain value: a reorder into the node's staging buffer */
    dnnl_primitive_t out_prim;
    dnnl_memory_t out_mem;
} dn_val;

typedef struct dn_bind {
    dnnl_memory_t mem;
    int buf; /* -1: not on a buffer (only destroyed with the plan) */
} dn_bind;

struct dn_plan {
    int batch;
    dn_val *vals;       /* per node */
    dn_steps fwd, bwd;
    int bwd_built;
    dn_bind *mems;      /* every memory object of the plan */
    int nmems, capmems;
    unsigned gen;       /* buffer generation the memories point into */
    int *grad_ready;    /* training: per node, its DIFF buffer receives a gradient */
    dnnl_primitive_desc_t *hint; /* training: per node 2 forward descriptors (op, activation) */
};

/* A fused convolution: conv [+ folded batch-norm] [+ act] [+ residual add] [+ act]. */
typedef struct dn_chain {
    int head;       /* the convolution node */
    int src;        /* node whose value is the convolution's input (after pad folding) */
    int pad[4];     /* effective padding t, b, l, r */
    int bn;         /* folded batch-norm node, or -1 */
    nn_act act1;    /* activation after conv(+bn), NONE if none */
    int act1_alpha; /* PReLU alpha parameter index, or -1 */
    int add;        /* residual add fused as a sum post-op, or -1 */
    int add_other;  /* the add's other operand */
    int inplace_ok; /* the other operand's buffer may be overwritten (analysis part) */
    nn_act act2;    /* activation after the add */
    int end;        /* the node whose value the chain produces */
} dn_chain;

/* A weight prepared for a primitive: oneDNN layout (and type) of a source in Keras layout. */
typedef struct dn_wcopy {
    int key;                  /* which weight of the node (caller's choice) */
    dnnl_memory_desc_t user;  /* the source's layout */
    const float *src;         /* fp32 source */
    dnnl_memory_desc_t md;    /* the primitive's layout */
    dnnl_memory_t mem;
    void *p;
    const void *stamp; /* training: the plan whose steps last got a conversion into it */
} dn_wcopy;

typedef struct dn_node {
    int chain;     /* chain this node belongs to, or -1 */
    int fused;     /* 1: produced by another node's step (chain member, folded pad) */
    int exec_pos;  /* position in the pass at which its value is produced */
    int root;      /* inference: node owning the buffer this node's value may alias */
    int n_uses;    /* consumers + (graph output ? 1 : 0) */
    int cpad;      /* bf16 inference: channels in the backend's layout, zero-padded up from the
                    * node's (see dn_pad_channels), or 0: the node's own */
    int bn_act;    /* training, batch-norm: the activation node its fused step also computes, or -1 */
    int act_bn;    /* training, that activation: the batch-norm node producing its value, or -1 */
    int is_output;
    float *wf, *bf; /* inference convolutions: effective (batch-norm folded) kernel and bias */
    dn_wcopy *w;
    int nw, capw;
    float *stage;   /* node_output staging (plain fp32) */
    size_t stage_cap;
    uint64_t stage_pass;
} dn_node;

struct dn_priv {
    nn_exec *ex;
    nn_graph *g;
    int n;
    int training;
    int threads;
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    dnnl_data_type_t adt; /* type convolutions and dense layers compute in (bf16: mixed precision) */
    dn_buf *bufs;
    int nbufs;
    unsigned gen;
    dn_node *nodes;
    int **uses;     /* per node: consumer ids */
    dn_chain *chains;
    int nchains;
    dn_plan **plans; /* [max_batch + 1] */
    dn_plan *cur;
    const float *cur_input;
    const float *const *cur_douts; /* d(loss)/d(outputs) of the backward pass running */
    int building_bwd;              /* weights converted by the forward pass are current */
};

/* ---- dnnl.c ---- */
int dn_check(dnnl_status_t st, dfd_error *err, const char *what, const nn_node *n);
/* Dimensions of a node's value for a batch (N, C, spatial...), returns ndims. */
int dn_node_dims(const nn_node *n, int batch, dnnl_dims_t dims);
/* The same in the backend's layout: C zero-padded where dn_pad_channels chose to. */
int dn_dims(const dn_priv *d, int node, int batch, dnnl_dims_t dims);
int dn_md_plain(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, dnnl_data_type_t dt);
int dn_md_any(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims, dnnl_data_type_t dt);
int dn_is_plain(const dnnl_memory_desc_t *md, dnnl_data_type_t dt);
/* Buffer id of a node slot / a global buffer. */
static inline int dn_slot(int node, int slot) { return node * DN_SLOTS + slot; }
static inline int dn_global(const dn_priv *d, int g) { return d->n * DN_SLOTS + g; }
/* Grows buffer `id` to `size` bytes (zero-filled when reallocated). */
int dn_buf_need(dn_priv *d, int id, size_t size, dfd_error *err);
/* A memory of layout md on buffer id (grown as needed), owned by the plan. */
int dn_mem_buf(dn_priv *d, dn_plan *pl, const dnnl_memory_desc_t *md, int id, dnnl_memory_t *out, dfd_error *err);
/* A memory on caller storage (parameters), owned by the plan. */
int dn_mem_ext(dn_priv *d, dn_plan *pl, const dnnl_memory_desc_t *md, void *p, dnnl_memory_t *out, dfd_error *err);
/* Appends a primitive step; adds the scratchpad argument when the primitive wants one. */
int dn_add_prim(dn_priv *d, dn_plan *pl, dn_steps *st, const_dnnl_primitive_desc_t pd, int nargs,
                const dnnl_exec_arg_t *args, dfd_error *err);
int dn_add_fn(dn_steps *st, dn_fn fn, int node, int i0, int i1, dnnl_memory_t m0, dnnl_memory_t m1, dfd_error *err);
int dn_add_reorder(dn_priv *d, dn_plan *pl, dn_steps *st, dnnl_memory_t src, dnnl_memory_t dst, dfd_error *err);
/* The node's value in layout `want`: the value itself or a cached converted copy. */
int dn_get_input(dn_priv *d, dn_plan *pl, dn_steps *st, int node, const dnnl_memory_desc_t *want, dnnl_memory_t *out,
                 int *buf, dfd_error *err);
/* A weight in the primitive's layout `want`, from fp32 `src` in layout `user`. Inference:
 * converted once (and again on refresh); training: converted by a step of every pass. */
int dn_get_weight(dn_priv *d, dn_plan *pl, dn_steps *st, int node, int key, const dnnl_memory_desc_t *user,
                  const float *src, const dnnl_memory_desc_t *want, dnnl_memory_t *out, dfd_error *err);
int dn_run_steps(dn_priv *d, dn_plan *pl, const dn_steps *st, dfd_error *err);
void dn_plan_rebind(dn_priv *d, dn_plan *pl);
dnnl_alg_kind_t dn_act_alg(nn_act a, float *alpha, float *beta);
nn_param *dn_param(const dn_priv *d, int node, int k);
/* Keras-layout user descriptor of a convolution kernel with cin input and cout output
 * channels (the node's, or zero-padded ones: a depthwise kernel then has cout groups). */
int dn_conv_weights_md(const nn_node *n, int cin, int cout, dnnl_memory_desc_t *user, dnnl_memory_desc_t *any,
                       dnnl_data_type_t dt);

/* ---- dnnl_fwd.c ---- */
int dn_analyse(dn_priv *d, dfd_error *err);
int dn_prepare_weights(dn_priv *d, dfd_error *err); /* inference: fold batch-norms into convolutions */
int dn_build_forward(dn_priv *d, dn_plan *pl, dfd_error *err);
int dn_attr_new(dnnl_primitive_attr_t *attr, dfd_error *err); /* user scratchpad */
/* Training batch-norms run our fused kernel (nn/bnact.h): its description for a plan, the
 * threads a call uses (at most cap, the workspace's size), and the statistics it uses. */
struct nn_bnact_desc;
int dn_bnact_desc(const dn_priv *d, const dn_plan *pl, int bn, struct nn_bnact_desc *bd);
int dn_bnact_threads(int cap);
void dn_bnact_stats(const dn_priv *d, int bn, int batch_stats, float **mean, float **var);

/* ---- dnnl_bwd.c ---- */
int dn_build_backward(dn_priv *d, dn_plan *pl, dfd_error *err);
int dn_backward(nn_exec *ex, const float *const *d_outputs, dfd_error *err);
const float *dn_input_grad(const nn_exec *ex);
const float *dn_node_grad(const nn_exec *ex, int node);

#endif
