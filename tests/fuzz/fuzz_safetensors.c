/* fuzz_safetensors — libFuzzer harness for the safetensors reader (src/io/safetensors.c)
 * and the dfd.model/1 metadata on top of it (src/io/model_file.c): a model file is the
 * one input a user may take from anywhere. Opens the bytes from memory, walks every
 * tensor and the metadata, converts tensors to fp32 (bounded, so that a valid huge
 * tensor does not exhaust memory), and reads the model metadata. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/model_file.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dfd_st_file *f = NULL;
    dfd_error e;
    if (dfd_st_open_memory(data, size, "fuzz", &f, &e) != DFD_OK) return 0;
    int n = dfd_st_count(f);
    for (int i = 0; i < n; i++) {
        const dfd_st_tensor *t = dfd_st_tensor_at(f, i);
        if (!t || dfd_st_find(f, t->name) != t) abort();
        if (t->count <= (1u << 20)) {
            float *dst = malloc((t->count ? t->count : 1) * sizeof(float));
            if (dst) {
                dfd_st_read_f32(f, t, dst, t->count, &e);
                free(dst);
            }
        }
    }
    for (int i = 0; i < dfd_st_meta_count(f); i++) {
        const char *k, *v;
        if (dfd_st_meta_at(f, i, &k, &v) == DFD_OK && dfd_st_meta_get(f, k) == NULL) abort();
    }
    dfd_model_meta m;
    dfd_model_meta_init(&m);
    dfd_model_meta_read(f, &m, &e);
    dfd_model_meta_free(&m);
    dfd_st_close(f);
    return 0;
}
