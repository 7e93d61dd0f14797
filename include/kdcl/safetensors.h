/* safetensors checkpoints (https://github.com/huggingface/safetensors).
 *
 * Layout: 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
 * header (padded with spaces so the data section starts 8-byte aligned), then
 * the data section. Header:
 *   {"__metadata__": {"k": "v", ...},
 *    "name": {"dtype": "F32", "shape": [a, b], "data_offsets": [begin, end]}, ...}
 * Offsets are relative to the data section; tensors are row-major and
 * little-endian. Files written here load with safetensors.torch.load_file.
 */
#ifndef KDCL_SAFETENSORS_H
#define KDCL_SAFETENSORS_H

#include <stddef.h>

#include "kdcl/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KDCL_ST_MAX_DIMS 8
/* Largest accepted JSON header (same limit as the reference implementation). */
#define KDCL_ST_MAX_HEADER 100000000u

typedef enum kdcl_dtype {
    KDCL_DT_F32 = 0,
    KDCL_DT_F64,
    KDCL_DT_F16,
    KDCL_DT_BF16,
    KDCL_DT_I64,
    KDCL_DT_I32,
    KDCL_DT_I16,
    KDCL_DT_I8,
    KDCL_DT_U64,
    KDCL_DT_U32,
    KDCL_DT_U16,
    KDCL_DT_U8,
    KDCL_DT_BOOL,
    KDCL_DT_COUNT
} kdcl_dtype;

/* "F32", "BF16", ...; "?" for an invalid value. */
KDCL_API const char *kdcl_dtype_name(kdcl_dtype dt);
/* Bytes per element (0 for an invalid value). */
KDCL_API size_t kdcl_dtype_size(kdcl_dtype dt);
/* Parse a safetensors dtype string; returns 0 on success, -1 if unknown. */
KDCL_API int kdcl_dtype_from_name(const char *name, kdcl_dtype *out);

typedef struct kdcl_st_tensor {
    char *name;
    kdcl_dtype dtype;
    size_t ndim;                      /* 0 = scalar (one element) */
    size_t shape[KDCL_ST_MAX_DIMS];
    void *data;   /* reader: owned copy, host byte order, never NULL;
                     writer input: borrowed, host byte order (NULL ok if nbytes == 0) */
    size_t nbytes; /* must equal prod(shape) * kdcl_dtype_size(dtype) */
} kdcl_st_tensor;

typedef struct kdcl_st_file {
    size_t n_tensors;
    kdcl_st_tensor *tensors;          /* in header order */
    size_t n_meta;
    char **meta_keys;
    char **meta_values;
    char *path;                       /* copy of the path it was read from */
} kdcl_st_file;

/* Write a checkpoint atomically: the bytes go to "<path>.tmp.<pid>" in the
 * same directory, which is fsync'ed, closed and renamed over `path`; the
 * directory is then fsync'ed. Everything is validated before any file is
 * created; on any failure the temp file is removed and an existing `path` is
 * left untouched. Tensor names must be unique, non-empty, valid UTF-8 and not
 * "__metadata__"; metadata keys must be unique (values any UTF-8 string).
 * Tensors are laid out contiguously in the given order. */
KDCL_API kdcl_status kdcl_st_write(const char *path, const kdcl_st_tensor *tensors, size_t n_tensors,
                          const char *const *meta_keys, const char *const *meta_values,
                          size_t n_meta);

/* Read and validate a checkpoint into `out` (overwritten; free with
 * kdcl_st_free). On failure `out` is left zeroed. Errors: KDCL_ERR_IO (cannot
 * open/read), KDCL_ERR_FORMAT (malformed: sizes, JSON, dtypes, shapes,
 * offsets, overlaps, metadata, duplicate names), KDCL_ERR_OOM. */
KDCL_API kdcl_status kdcl_st_read(const char *path, kdcl_st_file *out);

/* Tensor by name, NULL if absent. */
KDCL_API const kdcl_st_tensor *kdcl_st_find(const kdcl_st_file *f, const char *name);
/* Metadata value by key, NULL if absent. */
KDCL_API const char *kdcl_st_meta(const kdcl_st_file *f, const char *key);

/* Find an F32 tensor with exactly the given shape. Errors (KDCL_ERR_FORMAT):
 * missing tensor, wrong dtype, shape mismatch. */
KDCL_API kdcl_status kdcl_st_get_f32(const kdcl_st_file *f, const char *name, size_t ndim,
                            const size_t *shape, const float **data);

/* Free everything and zero the struct; safe on a zeroed struct and NULL. */
KDCL_API void kdcl_st_free(kdcl_st_file *f);

#ifdef __cplusplus
}
#endif
#endif
