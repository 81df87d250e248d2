/* traces/io.h: importers and exporters between .moetrace and the formats
 * frameworks dump: NumPy .npy/.npz (router logits or top-k ids and weights),
 * JSONL and CSV (one token per line or row), and count dumps as CSV.  Each
 * works a batch of tokens at a time, so memory stays bounded whatever the
 * input size (JSONL and CSV are read twice: once to learn the shape, once to
 * write).  Naming conventions and columns are in docs/trace-format.md.
 *
 *     struct trace_import_opts o;
 *     trace_import_opts_init(&o);
 *     o.top_k = 2;                       // route logits with softmax, top-2
 *     if (trace_import("router.npz", "out.moetrace", &o) != MOE_OK)
 *             fprintf(stderr, "%s\n", moe_errmsg());
 *
 * Outputs are written to "OUT.tmp.PID" and renamed when complete, so a
 * failed import or export never leaves a partial file under OUT.
 */
#ifndef MOEKIT_TRACES_IO_H
#define MOEKIT_TRACES_IO_H

#include <stdint.h>
#include "moe/error.h"
#include "moe/model.h"
#include "traces/trace.h"

enum trace_format {
	TRACE_FMT_AUTO,       /* from the file name: .moetrace .npy .npz .jsonl .csv */
	TRACE_FMT_MOETRACE,
	TRACE_FMT_NPY,
	TRACE_FMT_NPZ,
	TRACE_FMT_JSONL,      /* token lines, or count lines ({"rank","expert","tokens"}) */
	TRACE_FMT_CSV,        /* token rows, or count rows (told apart by the header row) */
};

/* How 16-bit floating point arrays are stored: .npy marks float16 ('<f2')
 * but has no bfloat16, which frameworks save as uint16 ('<u2'). */
enum trace_dtype { TRACE_DTYPE_AUTO, TRACE_DTYPE_F32, TRACE_DTYPE_F16, TRACE_DTYPE_BF16 };

struct trace_import_opts {
	enum trace_format format;    /* TRACE_FMT_AUTO: by extension */
	enum trace_dtype dtype;      /* for '<u2' arrays: F16 or BF16 (required); else a check */
	uint32_t experts;            /* 0: from the data (logits' last axis, largest id + 1) */
	uint32_t top_k;              /* 0: from the model, else required to route logits */
	uint32_t ranks;              /* source ranks; 0: from the data (largest rank + 1), or 1
				      * for NumPy input whose tokens carry no rank */
	uint32_t layers;             /* 0: from the data */
	int keep_logits;             /* store the logits too (TRACE_F_LOGITS); default 1 */
	const char *weights;         /* .npy input of top-k ids: a .npy of their gate weights
				      * (same shape), or NULL (borrowed) */
	const struct moe_model *model; /* optional (borrowed): its experts and layers must match
					* the data; gives top_k and the router kind */
	int zstd_level;              /* 0 none, else zstd level */
	size_t chunk_tokens;         /* 0: automatic */
};

/* Defaults: auto format and dtype, shape from the data, keep logits, raw. */
void trace_import_opts_init(struct trace_import_opts *o);

/* Parses "npy", "npz", "jsonl", "csv", "moetrace" (and "auto"); "f32",
 * "f16", "bf16".  Return 1 and set *out, or 0 when unknown. */
int trace_format_parse(const char *s, enum trace_format *out);
int trace_dtype_parse(const char *s, enum trace_dtype *out);
/* The format a file name implies, TRACE_FMT_AUTO when none. */
enum trace_format trace_format_guess(const char *path);

/* Imports in (of o->format) into the trace out.  Logits without routing
 * information are routed with the model's policy (moe/route.h; without a
 * model: softmax then top-k with renormalized weights) and no capacity
 * limit, so the stored routes are the router's raw choices.  Tokens of a
 * .npy/.npz layer are spread over o->ranks source ranks in contiguous
 * blocks (token t of T goes to rank floor(t * R / T)).
 * Returns MOE_OK; MOE_EINVAL for conflicting or missing options (no top-k
 * to route logits with, a dtype that disagrees with the file); MOE_ENOTFOUND
 * when in does not exist; MOE_EFORMAT (file and line, array, token or field
 * named) for malformed input, a shape that disagrees with the header or the
 * model, an unsupported dtype or Fortran order, NaN or infinite values, an
 * expert id out of range, records out of (step, layer) order; MOE_EIO;
 * MOE_ENOMEM.  Nothing is left under out on failure. */
enum moe_status trace_import(const char *in, const char *out, const struct trace_import_opts *o);

/* What a .npy export holds. */
enum trace_npy_array {
	TRACE_NPY_AUTO,     /* logits when present, counts for a count trace, else ids */
	TRACE_NPY_IDS,      /* int32 [.., k], -1 = none */
	TRACE_NPY_WEIGHTS,  /* float32 [.., k] */
	TRACE_NPY_LOGITS,   /* float32 [.., E] */
	TRACE_NPY_RANKS,    /* int32 [..] */
	TRACE_NPY_COUNTS,   /* int64 [.., ranks, E] */
};
int trace_npy_array_parse(const char *s, enum trace_npy_array *out);

struct trace_export_opts {
	enum trace_format format;    /* JSONL, CSV or NPY; AUTO: by extension */
	enum trace_npy_array array;  /* for NPY */
	int64_t step;                /* only this step; -1 = all */
	int64_t layer;               /* only this layer; -1 = all */
};
void trace_export_opts_init(struct trace_export_opts *o);

/* Exports the trace in to out ("-" = standard output, for JSONL and CSV).
 * A .npy export has shape [G, T, X] when the G selected (step, layer) groups
 * (G > 1) all hold T tokens, [T, X] when one group is selected, and [N, X]
 * otherwise (N tokens in file order); X is k, E, or absent for ranks; counts
 * are [G, ranks, E].  Floats are printed with 9 significant digits, so a
 * round trip is exact.  Returns MOE_OK; MOE_EINVAL for an array the trace
 * does not hold or an unknown format; the reader's errors; MOE_EIO. */
enum moe_status trace_export(const char *in, const char *out, const struct trace_export_opts *o);

#endif
