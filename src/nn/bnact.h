/*
 * bnact.h — batch normalisation fused with the activation after it, forward and backward,
 * on channels-last data (rows x C, fp32 or bf16): the training path of the oneDNN backend.
 *
 * Why our own kernel: in training, batch-norm and the ReLU6 after it are memory-bound
 * passes over full-size activations (about half of MobileNetV2's training step). oneDNN 2.6
 * fuses only a plain ReLU into its batch normalisation (no ReLU6, no post-ops), so the
 * activation costs a pass of its own forward and two backward, and its channels-last
 * batch-norm runs well below memory speed. Fused, a training step reads and writes each
 * activation 3 times forward (statistics, normalise+activate) and 5 times backward, against
 * 5 and 8 with the separate primitives.
 *
 * Forward:  z = gamma * (x - mean) / sqrt(var + eps) + beta,  y = act(z)
 *           mean, var: the batch's (biased variance, written out) or given ones.
 * Backward: from dy = d(loss)/dy: g = dy * act'(z) (z recomputed from x, exactly as the
 *           forward computed it), dbeta = sum g, dgamma = sum g * xhat, and
 *           dx = gamma/sigma * (g - dbeta/M - xhat * dgamma/M) with batch statistics,
 *           gamma/sigma * g with given ones.
 * act: NN_ACT_NONE, NN_ACT_RELU or NN_ACT_RELU6 (nn_bnact_supports).
 */
#ifndef DFD_NN_BNACT_H
#define DFD_NN_BNACT_H

#include <stddef.h>

#include "nn/nn.h"

typedef struct nn_bnact_desc {
    size_t rows;     /* N x H x W */
    int C;           /* channels: the fastest axis */
    int bf16;        /* x, y, dy, dx are bf16 (else fp32) */
    nn_act act;      /* applied after the normalisation */
    int batch_stats; /* normalise with the batch's statistics (else with the given mean/var) */
    float eps;
} nn_bnact_desc;

int nn_bnact_supports(nn_act act);

/* Bytes of workspace a call with up to `threads` threads needs. */
size_t nn_bnact_workspace(const nn_bnact_desc *d, int threads);

/* y = act(bn(x)). batch_stats: the batch's mean and biased variance are written to mean and
 * var; else they are read. gamma/beta may be NULL (1 and 0). */
void nn_bnact_forward(const nn_bnact_desc *d, const void *x, void *y, const float *gamma, const float *beta,
                      float *mean, float *var, void *ws, int threads);

/* dx = d(loss)/dx (add_dx: added to dx's contents), dgamma/dbeta = d(loss)/d(gamma, beta)
 * (written; either may be NULL). mean/var: what the forward pass normalised with. */
void nn_bnact_backward(const nn_bnact_desc *d, const void *x, const void *dy, void *dx, int add_dx,
                       const float *gamma, const float *beta, const float *mean, const float *var, float *dgamma,
                       float *dbeta, void *ws, int threads);

#endif
