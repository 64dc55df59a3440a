/* keras_off.c — Keras import in a dfd built without HDF5 and libzip (cmake
 * -DDFD_WITH_KERAS=OFF, as the container image is: libhdf5 brings libcurl, OpenSSL,
 * Kerberos and LDAP, 14 MB a server does not need). Every entry point says so. */
#include <stdio.h>

#include "io/keras.h"

static int no_keras(dfd_error *err) {
    return dfd_fail(err, DFD_E_UNSUPPORTED, "this dfd was built without Keras import (cmake -DDFD_WITH_KERAS=ON)");
}

int dfd_keras_open(const char *path, dfd_keras_file **out, dfd_error *err) {
    (void)path;
    *out = NULL;
    return no_keras(err);
}

void dfd_keras_close(dfd_keras_file *f) { (void)f; }

const dfd_keras_info *dfd_keras_get_info(const dfd_keras_file *f) {
    (void)f;
    return NULL;
}

int dfd_keras_load(dfd_keras_file *f, nn_graph *g, dfd_error *err) {
    (void)f, (void)g;
    return no_keras(err);
}

int dfd_keras_import(const char *in, const char *out, const dfd_keras_import_opts *opts, dfd_model_build_fn build,
                     void *user, dfd_keras_import_report *rep, dfd_error *err) {
    (void)in, (void)out, (void)opts, (void)build, (void)user, (void)rep;
    return no_keras(err);
}

void dfd_keras_snake_case(const char *cls, char *out, size_t cap) {
    (void)cls;
    if (cap) out[0] = '\0';
}
