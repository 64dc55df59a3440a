/*
 * nn — dfd's neural-network engine: graphs of layers with named parameters, run and
 * trained by interchangeable backends (a plain C reference, and oneDNN).
 *
 * Shape of the design (after ggml): a graph is built once by an architecture builder
 * (src/models) or an importer (src/io); an executor (nn_exec) binds it to a backend, a
 * precision and a maximum batch, allocates every activation up front (no malloc per
 * layer during a pass), and runs forward and backward passes. Parameters belong to the
 * graph, are stored fp32 in Keras's layouts and named "<layer>/<weight>" as Keras names
 * them (so Keras import and safetensors map one to one), and carry their gradient and
 * optimiser state.
 *
 * Layouts, per item of the batch (the batch dimension N is always outermost):
 *   feature maps  NHWC      shape {H, W, C}
 *   vectors       NC        shape {C}
 *   sequences     NTC       shape {T, C}
 * Parameter layouts (Keras): conv kernel {KH, KW, Cin/groups, Cout}; depthwise kernel
 * {KH, KW, C, 1}; dense kernel {Cin, Cout}; bias {Cout}; batch-norm gamma, beta,
 * moving_mean, moving_variance {C}; LSTM kernel {Cin, 4U}, recurrent_kernel {U, 4U},
 * bias {4U}, gates in Keras order i, f, c, o; PReLU alpha {C}.
 *
 * Not thread-safe per object: one nn_exec per thread. A graph may be shared read-only
 * by several executors for inference.
 */
#ifndef DFD_NN_H
#define DFD_NN_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define NN_MAX_DIMS 4
#define NN_MAX_INPUTS 4
#define NN_NAME_MAX 96

typedef enum nn_dtype { NN_F32 = 0, NN_BF16 = 1 } nn_dtype;

/* ---- Parameters ------------------------------------------------------------- */

typedef struct nn_param {
    char name[NN_NAME_MAX];    /* "block1_conv1/kernel" */
    int ndim;
    int shape[NN_MAX_DIMS];
    size_t count;              /* product of shape */
    float *data;               /* fp32 values, owned by the graph */
    float *grad;               /* same size, allocated by a training nn_exec_create (else NULL) */
    float *opt_m, *opt_v;      /* optimiser state, allocated (and zeroed) by nn_optim_create.
                                * grad, opt_m and opt_v are owned by the graph (nn_graph_free). */
    int trainable;             /* 0: frozen (by the user, or a statistic) */
    int is_statistic;          /* batch-norm moving mean/variance: never trained by gradient */
} nn_param;

/* ---- Graph ------------------------------------------------------------------ */

typedef enum nn_op {
    NN_OP_INPUT,
    NN_OP_CONV2D,      /* groups == Cin == Cout for depthwise */
    NN_OP_BATCHNORM,
    NN_OP_ACT,
    NN_OP_MAXPOOL,
    NN_OP_AVGPOOL,
    NN_OP_GAP,         /* global average pooling: {H,W,C} -> {C} */
    NN_OP_DENSE,       /* {C} -> {units}, or per step of a sequence {T,C} -> {T,units} */
    NN_OP_DROPOUT,
    NN_OP_ADD,         /* elementwise sum of two equal shapes */
    NN_OP_CONCAT,      /* along the last (channel) axis */
    NN_OP_PAD,         /* zero padding: spatial (top, bottom, left, right) and channels (at the end) */
    NN_OP_RESHAPE,     /* same element count per item, new shape */
    NN_OP_LSTM,        /* {T,C} -> {T,U} (return_sequences) or {U} */
    NN_OP_FOLD_TIME,   /* {T,H,W,C} per item -> {H,W,C} with batch N*T (TimeDistributed in) */
    NN_OP_UNFOLD_TIME, /* {C} with batch N*T -> {T,C} per item (TimeDistributed out) */
    NN_OP_RESIZE,      /* bilinear resize of {H,W,C} to {oh,ow,C} (TFLite RESIZE_BILINEAR semantics) */
    NN_OP__COUNT
} nn_op;

typedef enum nn_act {
    NN_ACT_NONE = 0,
    NN_ACT_RELU,
    NN_ACT_RELU6,
    NN_ACT_SIGMOID,
    NN_ACT_SWISH,
    NN_ACT_TANH,
    NN_ACT_PRELU /* per-channel alpha parameter */
} nn_act;

typedef enum nn_padding { NN_PAD_VALID = 0, NN_PAD_SAME = 1, NN_PAD_EXPLICIT = 2 } nn_padding;

typedef struct nn_conv_attr {
    int kh, kw, sh, sw, dh, dw; /* kernel, stride, dilation */
    nn_padding padding;         /* SAME as TensorFlow: extra pad row/column goes bottom/right */
    int pad_t, pad_b, pad_l, pad_r; /* resolved by the graph for every padding mode */
    int groups;
    int out_c;
    int has_bias;
    nn_act act;                 /* fused activation (Keras activation= argument) */
} nn_conv_attr;

typedef struct nn_pool_attr {
    int kh, kw, sh, sw;
    nn_padding padding;
    int pad_t, pad_b, pad_l, pad_r;
} nn_pool_attr;

typedef struct nn_node {
    nn_op op;
    char name[NN_NAME_MAX];     /* Keras layer name, unique in the graph ("" for glue nodes) */
    int inputs[NN_MAX_INPUTS];  /* node ids */
    int n_inputs;
    int ndim;                   /* per-item output shape (batch excluded) */
    int shape[NN_MAX_DIMS];
    int batch_mul;              /* this node's batch = graph batch * batch_mul (time folding) */
    int params[4];              /* indices into the graph's params, -1 when absent. Slots:
                                 * conv/dense [kernel, bias, PReLU alpha when act = PRELU];
                                 * batchnorm [gamma, beta, moving_mean, moving_variance];
                                 * act (PRELU) [alpha]; lstm [kernel, recurrent_kernel, bias] */
    int trainable;              /* 0 when the layer is frozen */
    union {
        nn_conv_attr conv;
        nn_pool_attr pool;
        struct { float eps, momentum; int frozen_stats; } bn;
        struct { nn_act act; } act;
        struct { int units; int has_bias; nn_act act; } dense;
        struct { float rate; } dropout;
        struct { int t, b, l, r, c; } pad;
        struct { int units; int return_sequences; } lstm;
        struct { int steps; } time;
        struct { int out_h, out_w, align_corners, half_pixel_centers; } resize;
    } a;
} nn_node;

typedef struct nn_graph nn_graph;

nn_graph *nn_graph_new(void);
void nn_graph_free(nn_graph *g);

/* Builders. Each returns the new node's id (>= 0) or -1 after recording the first error
 * in the graph (shape mismatch, duplicate name, no memory); nn_graph_error() tells it, so a
 * builder can chain calls and check once at the end. Parameters are created zeroed
 * (batch-norm gamma and moving_variance = 1) with names "<name>/<weight>".
 * Layers with parameters need a non-empty name; other layers may pass NULL or "" (glue).
 * Pointers from nn_graph_node / nn_graph_param stay valid while the graph grows.
 * In nn_conv_attr, a zero stride, dilation or groups means 1; pad_* are read only for
 * NN_PAD_EXPLICIT and are overwritten with the resolved padding in every mode. A fused
 * PRELU activation (conv, dense) adds an "<name>/alpha" {C} parameter. */
int nn_input(nn_graph *g, const char *name, int ndim, const int *shape);
int nn_conv2d(nn_graph *g, const char *name, int x, const nn_conv_attr *attr);
/* Depthwise conv (groups = C, depth multiplier 1), params "<name>/depthwise_kernel" [+ bias]. */
int nn_depthwise2d(nn_graph *g, const char *name, int x, int kh, int kw, int sh, int sw, nn_padding pad,
                   int has_bias, nn_act act);
/* Keras SeparableConv2D: depthwise ("<name>/depthwise_kernel") then 1x1 pointwise
 * ("<name>/pointwise_kernel", optional "<name>/bias"); returns the pointwise node. The
 * depthwise half is a CONV2D node of its own named "<name>/depthwise" (groups = C, no bias,
 * no activation); freezing treats the two nodes as one layer. */
int nn_separable2d(nn_graph *g, const char *name, int x, int out_c, int kh, int kw, int sh, int sw, nn_padding pad,
                   int has_bias, nn_act act);
/* Normalises the last axis. Training (batch statistics) normalises with the biased batch
 * variance and updates moving = moving * momentum + batch * (1 - momentum) during the
 * forward pass; a layer that is frozen (not trainable, or nn_graph_freeze_bn_stats) runs
 * in inference mode even in a training executor, as in Keras. */
int nn_batchnorm(nn_graph *g, const char *name, int x, float eps, float momentum);
int nn_activation(nn_graph *g, const char *name, int x, nn_act act);
int nn_maxpool(nn_graph *g, const char *name, int x, int kh, int kw, int sh, int sw, nn_padding pad);
int nn_avgpool(nn_graph *g, const char *name, int x, int kh, int kw, int sh, int sw, nn_padding pad);
int nn_gap(nn_graph *g, const char *name, int x); /* also {T,C} -> {C} (mean over all but the last axis) */
/* Acts on the last axis of any shape (as Keras Dense): {C} -> {units}, {T,C} -> {T,units}. */
int nn_dense(nn_graph *g, const char *name, int x, int units, int has_bias, nn_act act);
int nn_dropout(nn_graph *g, const char *name, int x, float rate);
int nn_add(nn_graph *g, const char *name, int a, int b);
int nn_concat(nn_graph *g, const char *name, int n, const int *xs);
/* Spatial padding needs {H,W,C}; channel padding works on any shape. */
int nn_pad(nn_graph *g, const char *name, int x, int t, int b, int l, int r, int extra_channels);
/* One dimension may be -1 (inferred). */
int nn_reshape(nn_graph *g, const char *name, int x, int ndim, const int *shape);
/* Keras LSTM (activation tanh, recurrent_activation sigmoid, unit_forget_bias). Params
 * "<name>/kernel", "<name>/recurrent_kernel", "<name>/bias". */
int nn_lstm(nn_graph *g, const char *name, int x, int units, int return_sequences);
/* Bilinear resize as TFLite's RESIZE_BILINEAR (align_corners / half_pixel_centers flags). */
int nn_resize_bilinear(nn_graph *g, const char *name, int x, int out_h, int out_w, int align_corners,
                       int half_pixel_centers);
int nn_fold_time(nn_graph *g, int x);   /* TimeDistributed: before the per-frame encoder */
int nn_unfold_time(nn_graph *g, int x); /* after it: {d..} -> {T,d..}, T from the matching fold */

/* Marks a node as an output (in call order: output 0, 1, ...); returns its index. A node
 * inside a fold_time (batch_mul > 1) cannot be an output. */
int nn_mark_output(nn_graph *g, int node);

/* The first builder error, or NULL. */
const char *nn_graph_error(const nn_graph *g);
/* Names the layers built from now on (and so their parameters) "<scope><name>", so that
 * one builder can add the same network twice to a graph (an ensemble's members: "m0/",
 * "m1/"); NULL or "" ends the scope. Unnamed glue layers stay unnamed. A scope of 16
 * characters or more is an error recorded in the graph. */
void nn_graph_set_scope(nn_graph *g, const char *scope);

/* Introspection. */
int nn_graph_node_count(const nn_graph *g);
const nn_node *nn_graph_node(const nn_graph *g, int id);
nn_node *nn_graph_node_mut(nn_graph *g, int id);
int nn_graph_find_node(const nn_graph *g, const char *name); /* -1 if absent */
/* The feature map that node d pools when d is a dense layer of one linear unit over GAP ->
 * [dropout] (a logit that is the mean of a per-cell score: CAM's head), or -1. The map is
 * per item H x W x C (ndim 3, not inside a fold_time). */
int nn_graph_pooled_map(const nn_graph *g, const nn_node *d);
int nn_graph_param_count(const nn_graph *g);
nn_param *nn_graph_param(nn_graph *g, int i);
nn_param *nn_graph_find_param(nn_graph *g, const char *name); /* NULL if absent */
int nn_graph_output_count(const nn_graph *g);
int nn_graph_output(const nn_graph *g, int i);
int nn_graph_input(const nn_graph *g); /* the (single) input node */
/* Total number of parameter values (trainable and statistics, as Keras counts). */
size_t nn_graph_num_weights(const nn_graph *g);
/* Multiply-accumulates of one forward pass for one item. */
uint64_t nn_graph_macs(const nn_graph *g);

/* Freezing: layers whose index is before the node named `from` are frozen (Keras
 * "unfreeze from layer X"); from == NULL freezes or unfreezes everything.
 * Precisely: with `from`, layers from it on get `trainable` and those before it get
 * !trainable; DFD_E_NOT_FOUND when no layer has that name. Batch-norm statistics are never
 * trainable. Sets both nn_node.trainable and each parameter's trainable flag. */
int nn_graph_set_trainable(nn_graph *g, const char *from, int trainable);
/* Freeze every batch-norm's statistics (use moving averages even when training). */
void nn_graph_freeze_bn_stats(nn_graph *g, int frozen);
/* Sets every batch norm's momentum (moving = moving * m + batch * (1 - m)); m in [0, 1). */
void nn_graph_set_bn_momentum(nn_graph *g, float momentum);

/* ---- Execution -------------------------------------------------------------- */

typedef enum nn_backend { NN_BACKEND_REF = 0, NN_BACKEND_DNNL = 1 } nn_backend;
typedef enum nn_precision { NN_PREC_AUTO = 0, NN_PREC_F32 = 1, NN_PREC_BF16 = 2 } nn_precision;

typedef struct nn_exec_opts {
    nn_backend backend;      /* default DNNL */
    nn_precision precision;  /* AUTO: bf16 for inference where the CPU has AMX/avx512_bf16, else fp32; training fp32.
                              * The reference backend is fp32 only: AUTO gives fp32 there, BF16 is refused. */
    int max_batch;           /* largest batch a pass may use */
    int training;            /* 1: keep what backward needs, dropout active, BN batch statistics */
    int threads;             /* 0: all cores */
    uint64_t seed;           /* dropout randomness */
    int no_input_grad;       /* training: no d(loss)/d(input) wanted, so the backward pass
                              * stops below the first trainable layer (a frozen backbone's
                              * backward is skipped; nn_input_grad gives NULL). oneDNN only. */
} nn_exec_opts;

void nn_exec_opts_default(nn_exec_opts *o);

typedef struct nn_exec nn_exec;

/* Binds a graph to a backend. Inference executors may fold batch-norm into the preceding
 * convolution and fuse activations/adds: they read parameters at creation, so call
 * nn_exec_refresh after changing parameters. */
int nn_exec_create(nn_graph *g, const nn_exec_opts *opts, nn_exec **out, dfd_error *err);
void nn_exec_free(nn_exec *ex);
int nn_exec_refresh(nn_exec *ex, dfd_error *err);
nn_precision nn_exec_precision(const nn_exec *ex);
/* Forward passes run so far; dropout masks are drawn from (seed, pass, layer), so a resumed
 * training run sets the count it had reached to draw the masks it would have drawn. */
void nn_exec_set_passes(nn_exec *ex, uint64_t passes);
/* Threads a forward pass of `batch` items runs on: opts.threads (0: all cores) is the
 * most; an inference pass takes one thread per 4 GMAC of work (see exec.c). */
int nn_exec_pass_threads(const nn_exec *ex, int batch);

/* Runs a forward pass on `batch` items of the input (fp32, the input node's layout). */
int nn_forward(nn_exec *ex, const float *input, int batch, dfd_error *err);
/* Output i of the last forward pass: batch * (per-item size) fp32 values, plain layout,
 * valid until the next pass. */
const float *nn_output(const nn_exec *ex, int i, size_t *count);
/* Backward pass from d(loss)/d(output i) for every output (NULL entries = zero).
 * Accumulates into each trainable parameter's grad. Training executors only. */
int nn_backward(nn_exec *ex, const float *const *d_outputs, dfd_error *err);
/* d(loss)/d(input) of the last backward pass (for gradient checks). */
const float *nn_input_grad(const nn_exec *ex);
/* d(loss)/d(node's output) of the last backward pass, plain layout, batch * size values
 * (Grad-CAM's gradient); NULL when the pass did not reach the node. Training executors. */
const float *nn_node_grad(const nn_exec *ex, int node, size_t *count);
/* Activation of any node after a forward pass, plain layout (for tests and features). */
const float *nn_node_output(const nn_exec *ex, int node, size_t *count);

/* ---- Training ---------------------------------------------------------------- */

void nn_graph_zero_grad(nn_graph *g);

/* Binary cross-entropy on logits, numerically stable; mean over the n items weighted
 * by w (NULL = 1). Writes d(loss)/d(logit) into dlogits when not NULL.
 * The mean divides by n (Keras's sum-over-batch-size with sample weights), not by sum(w). */
float nn_bce_logits(const float *logits, const float *labels, const float *w, int n, float *dlogits);

typedef enum nn_optim_kind { NN_OPT_SGD = 0, NN_OPT_ADAM = 1, NN_OPT_ADAMW = 2 } nn_optim_kind;

typedef struct nn_optim_opts {
    nn_optim_kind kind;
    float lr;
    float momentum;          /* SGD */
    float beta1, beta2, eps; /* Adam */
    float weight_decay;      /* L2 for SGD/Adam, decoupled for AdamW */
    float clip_norm;         /* global gradient-norm clipping; 0 = off */
} nn_optim_opts;

typedef struct nn_optim nn_optim;
void nn_optim_opts_default(nn_optim_opts *o, nn_optim_kind kind);
int nn_optim_create(nn_graph *g, const nn_optim_opts *o, nn_optim **out, dfd_error *err);
/* One update of every trainable parameter from its grad, at learning rate lr (Keras's
 * update rules; see train.c). Frozen parameters and batch-norm statistics are skipped. */
void nn_optim_step(nn_optim *opt, float lr);
void nn_optim_free(nn_optim *opt);
/* (Added by the engine.) Global L2 norm of the gradients at the last step, before clipping. */
float nn_optim_grad_norm(const nn_optim *opt);
/* Steps taken so far (Adam's bias correction counts them); set when resuming a run whose
 * moments were restored, so the next update is the one the uninterrupted run would make. */
long nn_optim_steps(const nn_optim *opt);
void nn_optim_set_steps(nn_optim *opt, long steps);

/* Learning-rate schedules: value at step t of total. The first `warmup` steps rise
 * linearly to base ((t+1)/warmup); then CONSTANT stays, COSINE decays to 0 at `total`,
 * STEP multiplies by 0.1 at half and again at three quarters of the steps after warm-up. */
typedef enum nn_lr_schedule { NN_LR_CONSTANT = 0, NN_LR_COSINE = 1, NN_LR_STEP = 2 } nn_lr_schedule;
float nn_lr_at(nn_lr_schedule s, float base, long t, long total, long warmup);

/* Deterministic random numbers (splitmix64 / xoshiro), for initialisation and dropout. */
typedef struct nn_rng { uint64_t s[4]; } nn_rng;
void nn_rng_seed(nn_rng *r, uint64_t seed);
uint64_t nn_rng_next(nn_rng *r);
float nn_rng_uniform(nn_rng *r);  /* [0,1) */
float nn_rng_normal(nn_rng *r);

/* He/Glorot initialisation of every kernel as Keras does (glorot_uniform kernels, zero
 * biases, orthogonal-free LSTM recurrent init is acceptable), deterministic in seed. */
void nn_graph_init_weights(nn_graph *g, uint64_t seed);

/* ---- Capability ------------------------------------------------------------- */

/* 1 when the CPU runs bf16 natively (AMX or avx512_bf16). */
int nn_cpu_has_bf16(void);
/* A short description of the ISA oneDNN uses ("avx512_core_amx"). */
const char *nn_cpu_isa(void);

#endif
