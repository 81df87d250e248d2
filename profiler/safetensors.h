/* profiler/safetensors.h: a reader for Hugging Face safetensors checkpoints,
 * one file or a sharded folder (model.safetensors.index.json), memory-mapped.
 *
 * The format (https://huggingface.co/docs/safetensors): an 8-byte
 * little-endian header length N, then N bytes of JSON
 *
 *     {"__metadata__": {...},
 *      "model.layers.0.mlp.gate.weight":
 *          {"dtype": "BF16", "shape": [64, 2048], "data_offsets": [0, 262144]},
 *      ...}
 *
 * then the data: each tensor's bytes at [begin, end) relative to the end of
 * the header, row-major, little-endian.  Every header is checked when a file
 * is opened: offsets inside the data, no two tensors overlapping, end - begin
 * equal to the element count times the dtype's size, known dtypes only.  A
 * header that lies is refused with MOE_EFORMAT naming the file and tensor.
 *
 * Worked example:
 *
 *     struct prof_st *st;
 *     float w[64 * 2048];
 *     int64_t shape[2] = {64, 2048};
 *     if (prof_st_open("ckpt/", &st) != MOE_OK) ...moe_errmsg()
 *     prof_st_load_f32(st, "model.layers.0.mlp.gate.weight", 2, shape, w);
 *     prof_st_close(st);
 *
 * F32, F16 and BF16 tensors are converted to float32 on load; other dtypes
 * are described (so the file is validated) but not loadable.
 * Thread safety: one thread at a time per object.
 */
#ifndef MOEKIT_PROFILER_SAFETENSORS_H
#define MOEKIT_PROFILER_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "moe/error.h"

#define PROF_ST_MAX_DIMS 8
/* The largest JSON header accepted (the format's own limit is 100 MB). */
#define PROF_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

enum prof_st_dtype {
	PROF_ST_F32, PROF_ST_F16, PROF_ST_BF16,            /* loadable */
	PROF_ST_F64, PROF_ST_I64, PROF_ST_I32, PROF_ST_I16, PROF_ST_I8, PROF_ST_U8,
	PROF_ST_BOOL, PROF_ST_F8_E4M3, PROF_ST_F8_E5M2, PROF_ST_U16, PROF_ST_U32,
	PROF_ST_U64,
	PROF_ST_DTYPE_COUNT
};

/* One tensor as described by its header.  Borrowed from the reader. */
struct prof_st_tensor {
	const char *name;
	enum prof_st_dtype dtype;
	int ndim;
	int64_t shape[PROF_ST_MAX_DIMS];
	const unsigned char *data; /* nbytes bytes inside the mapping; not aligned */
	uint64_t nbytes;
};

struct prof_st;

/* Opens path: a .safetensors file, or a folder holding
 * model.safetensors.index.json (its weight_map names the shard of every
 * tensor; shards are opened and checked when first needed) or a single
 * model.safetensors.  Returns MOE_OK with *out owned by the caller (free with
 * prof_st_close); MOE_ENOTFOUND / MOE_EIO when a file is missing or
 * unreadable; MOE_EFORMAT naming the file and tensor of a header (or index)
 * that is malformed or lies; MOE_ENOMEM. */
enum moe_status prof_st_open(const char *path, struct prof_st **out);

/* Parses one safetensors image held in memory (buf, n bytes; borrowed, must
 * outlive the reader): the fuzz target's entry.  what names it in messages.
 * Same returns as prof_st_open. */
enum moe_status prof_st_open_mem(const void *buf, size_t n, const char *what, struct prof_st **out);

/* Unmaps and frees; NULL is a no-op. */
void prof_st_close(struct prof_st *st);

/* Finds a tensor by name.  Returns MOE_OK with *out borrowed (valid until
 * close); MOE_ENOTFOUND naming the tensor and up to five of the names present
 * that are most alike (longest common prefix); MOE_EFORMAT / MOE_EIO when its
 * shard fails to open. */
enum moe_status prof_st_find(struct prof_st *st, const char *name,
			     const struct prof_st_tensor **out);

/* Whether the checkpoint names a tensor (without opening its shard). */
int prof_st_has(const struct prof_st *st, const char *name);

/* Loads tensor name into dst (float32, row-major, caller-owned, room for the
 * product of shape), checking that it has exactly ndim dimensions equal to
 * shape.  Returns MOE_OK; MOE_ENOTFOUND as prof_st_find; MOE_EFORMAT when the
 * shape disagrees ("NAME: shape [64, 2048], expected [32, 2048]");
 * MOE_EUNSUPPORTED for a dtype other than F32, F16, BF16. */
enum moe_status prof_st_load_f32(struct prof_st *st, const char *name, int ndim,
				 const int64_t *shape, float *dst);

/* Tensors of the single file (or of the shards opened so far): count and
 * i-th, in header order. */
size_t prof_st_count(const struct prof_st *st);
const struct prof_st_tensor *prof_st_at(const struct prof_st *st, size_t i);

/* "F32", "BF16" ... ; NULL when out of range. */
const char *prof_st_dtype_name(enum prof_st_dtype d);
/* Bytes per element. */
size_t prof_st_dtype_size(enum prof_st_dtype d);

/* Converts IEEE half and bfloat16 bit patterns to float (exact). */
float prof_f16_to_f32(uint16_t h);
float prof_bf16_to_f32(uint16_t b);

#endif
