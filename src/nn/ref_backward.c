/*
 * ref_backward.c — the reference backend's backward pass (being written).
 */
#include "nn/ref_internal.h"

int ref_backward(nn_exec *ex, const float *const *d_outputs, dfd_error *err) {
    (void)ex;
    (void)d_outputs;
    return dfd_fail(err, DFD_E_UNSUPPORTED, "reference backward pass not implemented yet");
}
