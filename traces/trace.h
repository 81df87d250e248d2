/* traces/trace.h: the native router-trace format (.moetrace), streamed in
 * constant memory: a writer that appends one chunk at a time, a reader that
 * hands back one chunk at a time and can seek to a (step, layer) through the
 * index at the end of the file.  The byte layout is in docs/trace-format.md.
 *
 * A trace is steps x layers x tokens.  It holds one of two kinds of content:
 *  - token level: per token its source rank, k expert ids (slot j = the
 *    token's rank-j expert) and, when TRACE_F_WEIGHTS is set, k gate weights,
 *    and when TRACE_F_LOGITS is set the E router logits (float32);
 *  - count level (TRACE_F_COUNTS): per (step, layer) a [ranks x experts]
 *    matrix of token counts, which is what many production systems record.
 * k is fixed per trace; a slot may hold TRACE_EXPERT_NONE (a token dropped by
 * a capacity limit, or a top-p token using fewer than k experts), whose
 * weight is 0.
 *
 * Worked example (write two layers of 3 tokens, k = 2, E = 4, 2 ranks):
 *
 *     struct trace_header h;
 *     trace_header_init(&h, 2, 4, 2, 2);          // layers, experts, k, ranks
 *     h.flags = TRACE_F_WEIGHTS;
 *     struct trace_writer *w;
 *     uint32_t ranks[3] = {0, 0, 1};
 *     int32_t ids[6] = {1, 2,  0, 3,  2, TRACE_EXPERT_NONE};
 *     float wts[6] = {.7f, .3f,  .6f, .4f,  1.f, 0.f};
 *     if (trace_writer_open("t.moetrace", &h, NULL, &w) != MOE_OK) ...error
 *     for (uint32_t l = 0; l < 2; l++)
 *             trace_writer_add_tokens(w, 0, l, 3, ranks, ids, wts, NULL);
 *     trace_writer_close(w);                      // renames t.moetrace.tmp.PID
 *
 *     struct trace_reader *r;
 *     const struct trace_chunk *c;
 *     uint64_t load[4] = {0};
 *     trace_reader_open("t.moetrace", &r);
 *     while (trace_reader_next(r, &c) == MOE_OK && c != NULL)
 *             trace_chunk_loads(c, load);          // adds: load = {1, 1, 2, 1}
 *     trace_reader_close(r);
 *
 * Chunks come in non-decreasing (step, layer) order; one (step, layer) may
 * span several token chunks (the writer cuts a chunk every chunk_tokens
 * tokens so that memory stays bounded), but has at most one count chunk.
 * Token order inside a (step, layer) is the order the tokens were added.
 *
 * Errors: every function returns enum moe_status (moe/error.h) and records a
 * one-line message naming the file and, for chunk errors, the chunk's step
 * and layer ("t.moetrace: chunk (step 3, layer 7): crc mismatch").
 * Thread safety: a reader or writer serves one thread at a time; distinct
 * objects are independent.
 */
#ifndef MOEKIT_TRACES_TRACE_H
#define MOEKIT_TRACES_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include "moe/error.h"

/* File format version this build writes and the newest it reads. */
#define TRACE_VERSION 1

/* The expert id of an unused slot (as int32; stored as 0xFFFF or
 * 0xFFFFFFFF in the file).  Same value as MOE_ROUTE_NONE in moe/route.h. */
#define TRACE_EXPERT_NONE (-1)

/* Header flags. */
#define TRACE_F_WEIGHTS 0x1u /* token level: k gate weights per token */
#define TRACE_F_LOGITS  0x2u /* token level: E router logits per token */
#define TRACE_F_COUNTS  0x4u /* count level: per (rank, expert) token counts only */
#define TRACE_F_KNOWN   0x7u /* every flag this version defines */

/* Limits a header must respect (so that sizes never overflow). */
#define TRACE_MAX_LAYERS  65536u
#define TRACE_MAX_EXPERTS 1048576u
#define TRACE_MAX_TOP_K   1024u
#define TRACE_MAX_RANKS   16777216u
#define TRACE_MODEL_MAX   64         /* bytes of the model name, with its NUL */

struct trace_header {
	uint32_t version;      /* file format version (TRACE_VERSION when writing) */
	uint32_t flags;        /* TRACE_F_* */
	uint32_t layers;       /* MoE layers, 1..TRACE_MAX_LAYERS */
	uint32_t experts;      /* routed experts per layer E, 1..TRACE_MAX_EXPERTS */
	uint32_t top_k;        /* slots per token k, 1..min(E, TRACE_MAX_TOP_K); any
				* value in that range for count-level traces */
	uint32_t ranks;        /* source ranks (GPUs that sent tokens), 1..TRACE_MAX_RANKS */
	uint64_t steps;        /* steps in the trace; 0 = unknown.  A writer refuses
				* steps >= a declared count, and trace_writer_close
				* stores max(declared, largest step + 1). */
	char model[TRACE_MODEL_MAX]; /* model preset name or "", NUL-terminated */
};

enum trace_chunk_kind { TRACE_CHUNK_TOKENS = 1, TRACE_CHUNK_COUNTS = 2 };

/* A chunk as the reader hands it back: all pointers are borrowed from the
 * reader and valid until its next call to trace_reader_next, _seek or
 * _close.  Arrays are row-major. */
struct trace_chunk {
	uint64_t step;
	uint32_t layer;
	enum trace_chunk_kind kind;
	size_t n;                /* tokens in this chunk (token level); 0 for counts */
	const uint32_t *ranks;   /* [n] source rank of each token (< ranks) */
	const int32_t *ids;      /* [n x k] expert ids, TRACE_EXPERT_NONE when unused */
	const uint16_t *ids16;   /* the same ids as stored when the file uses 16-bit ids
				  * (E <= 65535; 0xFFFF = none), else NULL: a fast path */
	const float *weights;    /* [n x k] gate weights, NULL without TRACE_F_WEIGHTS */
	const float *logits;     /* [n x E] router logits, NULL without TRACE_F_LOGITS */
	const uint64_t *counts;  /* [ranks x E] token counts (count level), else NULL */
	uint64_t offset;         /* byte offset of the chunk in the file */
	uint32_t codec;          /* 0 stored raw, 1 zstd */
	uint64_t stored_bytes;   /* payload bytes in the file */
	uint64_t raw_bytes;      /* payload bytes after decompression */
	uint32_t k, experts, nranks; /* copied from the header, for convenience */
};

/* Fills *h for a token-level trace with gate weights (flags =
 * TRACE_F_WEIGHTS), version TRACE_VERSION, steps 0, model "".  The caller
 * then adjusts flags and model. */
void trace_header_init(struct trace_header *h, uint32_t layers, uint32_t experts, uint32_t top_k,
		       uint32_t ranks);

/* Checks a header's fields and limits and the flags' agreement (COUNTS
 * excludes WEIGHTS and LOGITS).  what names the source in the message (a
 * file name).  Returns MOE_OK, MOE_EVERSION for an unknown version, or
 * MOE_EFORMAT naming the field. */
enum moe_status trace_header_check(const struct trace_header *h, const char *what);

/* ------------------------------------------------------------------ writer */

struct trace_writer;

struct trace_writer_opts {
	int zstd_level;        /* 0 = store raw; 1..19 = zstd level (3 is a good default) */
	size_t chunk_tokens;   /* tokens per chunk; 0 = about 1 MiB of payload per chunk */
};

/* Opens path for writing a trace with header *h (copied; checked with
 * trace_header_check).  Output goes to "PATH.tmp.PID" and is renamed to path
 * only by a successful trace_writer_close, so no partial file ever stands
 * under the final name.  opts may be NULL (raw, automatic chunk size).
 * Memory: one chunk's buffers (chunk_tokens tokens) plus 32 bytes per chunk
 * written for the index.  Returns MOE_OK with *out owned by the caller (end
 * with _close or _abort); MOE_EINVAL/MOE_EFORMAT for a bad header or
 * option; MOE_EIO when the temporary file cannot be created; MOE_ENOMEM. */
enum moe_status trace_writer_open(const char *path, const struct trace_header *h,
				  const struct trace_writer_opts *opts, struct trace_writer **out);

/* Appends n tokens of (step, layer) to a token-level trace.  ranks [n] (NULL
 * = every token from rank 0), ids [n x k] (TRACE_EXPERT_NONE for an unused
 * slot), weights [n x k] (required iff TRACE_F_WEIGHTS, else ignored; must be
 * finite), logits [n x E] (required iff TRACE_F_LOGITS, else ignored; must be
 * finite).  All borrowed and copied.  Tokens are buffered and written as
 * chunks of chunk_tokens.  Returns MOE_OK; MOE_EINVAL when (step, layer)
 * goes backwards, layer >= layers, step >= a declared steps, the trace is
 * count level or a required array is NULL; MOE_ERANGE naming the token and
 * slot of an expert id >= E (or < -1), a rank >= ranks, or a NaN/infinite
 * weight or logit; MOE_EIO on a write error.  After any error the writer
 * is failed: further calls return the first error, and _close removes the
 * temporary file. */
enum moe_status trace_writer_add_tokens(struct trace_writer *w, uint64_t step, uint32_t layer,
					size_t n, const uint32_t *ranks, const int32_t *ids,
					const float *weights, const float *logits);

/* Writes the count chunk of (step, layer) of a count-level trace: counts is
 * [ranks x E] (borrowed).  Returns MOE_OK; MOE_EINVAL when the trace is token
 * level, (step, layer) does not come after the previous count chunk, or is
 * out of range; MOE_EIO.  Failing puts the writer in the failed state. */
enum moe_status trace_writer_add_counts(struct trace_writer *w, uint64_t step, uint32_t layer,
					const uint64_t *counts);

/* Flushes the last chunk, writes the index and footer, rewrites the header
 * with the final step count, closes and renames the temporary file onto the
 * final path, and frees w.  Returns MOE_OK, or the writer's first error (the
 * temporary file then removed, nothing left under path).  NULL: MOE_OK. */
enum moe_status trace_writer_close(struct trace_writer *w);

/* Closes and removes the temporary file and frees w; nothing is left under
 * the final path.  NULL is a no-op. */
void trace_writer_abort(struct trace_writer *w);

/* ------------------------------------------------------------------ reader */

struct trace_reader;

/* Opens a trace and checks its header, footer and index placement (not yet
 * every chunk: those are checked as they are read).  Returns MOE_OK with
 * *out owned by the caller (free with trace_reader_close); MOE_EIO when it
 * cannot be opened; MOE_EFORMAT for a wrong magic, a truncated file (no
 * footer) or a bad header CRC; MOE_EVERSION for a newer version;
 * MOE_ENOMEM. */
enum moe_status trace_reader_open(const char *path, struct trace_reader **out);

/* The header (borrowed, valid until close).  steps is as written by the
 * writer. */
const struct trace_header *trace_reader_header(const struct trace_reader *r);

/* Chunks and token-level entries in the file (from the footer). */
uint64_t trace_reader_chunks(const struct trace_reader *r);
uint64_t trace_reader_tokens(const struct trace_reader *r);

/* Reads the next chunk: *out points at a view valid until the next call, or
 * is NULL at the end of the trace.  Checks the chunk's CRC, decompresses,
 * and validates expert ids (< E or none) and ranks (< ranks).  Memory: one
 * chunk's buffers, reused.  Returns MOE_OK; MOE_EFORMAT naming the file, the
 * chunk (step, layer) and what is wrong (CRC mismatch, truncated, bad size,
 * zstd error, id out of range); MOE_EIO; MOE_ENOMEM. */
enum moe_status trace_reader_next(struct trace_reader *r, const struct trace_chunk **out);

/* Positions the reader so that the next trace_reader_next returns the first
 * chunk of (step, layer), found by binary search in the index (read from
 * the file, not held in memory).  The index's CRC is checked at the first
 * seek.  Returns MOE_OK; MOE_ENOTFOUND when the trace has no such chunk
 * (position unchanged); MOE_EFORMAT when the index is damaged; MOE_EIO. */
enum moe_status trace_reader_seek(struct trace_reader *r, uint64_t step, uint32_t layer);

/* Goes back to the first chunk.  Returns MOE_OK or MOE_EIO. */
enum moe_status trace_reader_rewind(struct trace_reader *r);

/* Closes the file and frees r; NULL is a no-op. */
void trace_reader_close(struct trace_reader *r);

/* -------------------------------------------------------------- helpers */

/* Adds the chunk's expert loads into load[E]: for a token chunk, 1 per slot
 * whose id is not TRACE_EXPERT_NONE; for a count chunk, the counts summed
 * over ranks.  load is not cleared first.  This is the fast path the
 * benchmark measures (16-bit ids read directly). */
void trace_chunk_loads(const struct trace_chunk *c, uint64_t *load);

#endif
