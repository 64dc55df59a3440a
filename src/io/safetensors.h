/*
 * safetensors — reading and writing the safetensors format (huggingface/safetensors):
 *
 *   [8 bytes: N, little-endian u64][N bytes: JSON header][data]
 *   header = { "<tensor>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 *              ..., "__metadata__": {"<key>": "<string>", ...} }
 *
 * Offsets are relative to the start of the data and little-endian values are stored
 * row-major. A file comes from outside (a download, another program), so opening it
 * checks everything before anything is trusted: the header length against the file size
 * and a 100 MB cap, well-formed JSON with unique names, known dtypes, shapes whose
 * element count times the dtype size is exactly the byte range, and byte ranges inside
 * the data that neither overlap nor leave gaps. Any failure is DFD_E_MODEL with a message
 * naming the tensor and the problem.
 *
 * Files are mapped read-only (mmap); tensors are converted to fp32 on request. F32, F16
 * and BF16 convert; the other standard dtypes are recognised (so the file still opens and
 * lists) but reading them as fp32 is DFD_E_UNSUPPORTED. The writer stores F32 or BF16
 * (round to nearest even), sorts tensors by name and aligns the data start to 8 bytes.
 */
#ifndef DFD_IO_SAFETENSORS_H
#define DFD_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define DFD_ST_MAX_DIMS 8
/* Largest JSON header accepted (the reference implementation's limit is also 100 MB). */
#define DFD_ST_MAX_HEADER (100u * 1000u * 1000u)

typedef enum dfd_st_dtype {
    DFD_ST_F32 = 0,
    DFD_ST_F16,
    DFD_ST_BF16,
    DFD_ST_F64,
    DFD_ST_I64,
    DFD_ST_I32,
    DFD_ST_I16,
    DFD_ST_I8,
    DFD_ST_U64,
    DFD_ST_U32,
    DFD_ST_U16,
    DFD_ST_U8,
    DFD_ST_BOOL,
    DFD_ST_F8_E4M3,
    DFD_ST_F8_E5M2,
    DFD_ST__COUNT
} dfd_st_dtype;

/* "F32", "BF16", ... */
const char *dfd_st_dtype_name(dfd_st_dtype t);
/* Bytes per element. */
size_t dfd_st_dtype_size(dfd_st_dtype t);

typedef struct dfd_st_tensor {
    const char *name;
    dfd_st_dtype dtype;
    int ndim;                       /* 0 for a scalar */
    int64_t shape[DFD_ST_MAX_DIMS];
    size_t count;                   /* product of shape (1 for a scalar) */
    size_t offset;                  /* into the data section */
    size_t nbytes;                  /* count * dtype size */
} dfd_st_tensor;

/* ---- Reading ------------------------------------------------------------------ */

typedef struct dfd_st_file dfd_st_file;

/* Opens and validates a file (mapped, not read into memory). */
int dfd_st_open(const char *path, dfd_st_file **out, dfd_error *err);
/* The same from bytes in memory; the bytes are copied. name is used in messages. */
int dfd_st_open_memory(const void *data, size_t len, const char *name, dfd_st_file **out, dfd_error *err);
void dfd_st_close(dfd_st_file *f);

/* Tensors, sorted by name. */
int dfd_st_count(const dfd_st_file *f);
const dfd_st_tensor *dfd_st_tensor_at(const dfd_st_file *f, int i);
/* By name, or NULL. */
const dfd_st_tensor *dfd_st_find(const dfd_st_file *f, const char *name);
/* The tensor's bytes as stored (little-endian, dtype t->dtype). */
const uint8_t *dfd_st_raw(const dfd_st_file *f, const dfd_st_tensor *t);
/* Converts a tensor to fp32 into dst, which holds count floats (must equal t->count). */
int dfd_st_read_f32(const dfd_st_file *f, const dfd_st_tensor *t, float *dst, size_t count, dfd_error *err);

/* Metadata ("__metadata__"): value for a key or NULL; and enumeration in key order. */
const char *dfd_st_meta_get(const dfd_st_file *f, const char *key);
int dfd_st_meta_count(const dfd_st_file *f);
int dfd_st_meta_at(const dfd_st_file *f, int i, const char **key, const char **value);

/* ---- Writing ------------------------------------------------------------------ */

typedef struct dfd_st_writer dfd_st_writer;

dfd_st_writer *dfd_st_writer_new(void);
void dfd_st_writer_free(dfd_st_writer *w);
/* Adds a tensor of fp32 values stored as `as` (DFD_ST_F32 or DFD_ST_BF16). The data is
 * borrowed, not copied: it must stay valid until the writer is saved or freed. */
int dfd_st_writer_add_f32(dfd_st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data,
                          dfd_st_dtype as, dfd_error *err);
/* Sets (or replaces) a metadata entry; both strings are copied. */
int dfd_st_writer_set_meta(dfd_st_writer *w, const char *key, const char *value, dfd_error *err);
/* Writes the file atomically (temporary file, then rename). */
int dfd_st_writer_save(dfd_st_writer *w, const char *path, dfd_error *err);
/* Or into memory: *data is malloc'ed (caller frees), *len its size. */
int dfd_st_writer_to_memory(dfd_st_writer *w, uint8_t **data, size_t *len, dfd_error *err);

/* ---- Conversions (exposed for tests and importers) ----------------------------- */

/* (bf16 <-> fp32: dfd_f32_to_bf16 / dfd_bf16_to_f32, IEEE half: dfd_f16_to_f32, in core/core.h) */

#endif
