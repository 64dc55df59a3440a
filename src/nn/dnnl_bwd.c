/*
 * dnnl_bwd.c — the oneDNN backend's backward pass (training executors).
 */
#include "nn/dnnl_internal.h"

int dn_build_backward(dn_priv *d, dn_plan *pl, dfd_error *err) {
    (void)d;
    (void)pl;
    return dfd_fail(err, DFD_E_UNSUPPORTED, "oneDNN backend: backward pass not implemented yet");
}

int dn_backward(nn_exec *ex, const float *const *d_outputs, dfd_error *err) {
    (void)ex;
    (void)d_outputs;
    return dfd_fail(err, DFD_E_UNSUPPORTED, "oneDNN backend: backward pass not implemented yet");
}

const float *dn_input_grad(const nn_exec *ex) {
    (void)ex;
    return NULL;
}
