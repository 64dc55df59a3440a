/*
 * graph_internal.h — the nn_graph structure and helpers shared inside src/nn (graph.c,
 * exec.c, the backends, train.c). Other modules use nn.h only.
 */
#ifndef DFD_NN_GRAPH_INTERNAL_H
#define DFD_NN_GRAPH_INTERNAL_H

#include "nn/nn.h"

/* What a parameter is, for initialisation (nn_graph_init_weights) and statistics. */
enum {
    NN_ROLE_KERNEL = 0,  /* glorot-uniform */
    NN_ROLE_BIAS,        /* zeros */
    NN_ROLE_GAMMA,       /* ones */
    NN_ROLE_BETA,        /* zeros */
    NN_ROLE_MOVING_MEAN, /* zeros, a statistic */
    NN_ROLE_MOVING_VAR,  /* ones, a statistic */
    NN_ROLE_ALPHA,       /* PReLU slope: zeros, as Keras */
    NN_ROLE_RECURRENT,   /* LSTM recurrent kernel: orthogonal */
    NN_ROLE_LSTM_BIAS    /* zeros except the forget gate's ones (unit_forget_bias) */
};

struct nn_graph {
    nn_node **nodes;
    int n_nodes, cap_nodes;
    int *layer_start; /* per node: first node of the Keras layer it belongs to (separable = 2 nodes) */
    nn_param **params;
    uint8_t *param_role;
    int n_params, cap_params;
    int *outputs;
    int n_outputs, cap_outputs;
    int input;
    int has_error;
    char error[256];
    char scope[16]; /* prefixed to the names of layers and parameters built from now on */
};

/* Output size of one spatial axis, filling the padding before/after for SAME and VALID
 * (EXPLICIT reads them). See graph.c. */
int nn_resolve_axis(nn_padding mode, int in, int k, int s, int d, int *pad_before, int *pad_after);
/* The role (NN_ROLE_*) of parameter i, or -1. */
int nn_graph_param_role(const nn_graph *g, int i);

#endif
