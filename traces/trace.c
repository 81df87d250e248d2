/* traces/trace.c: the .moetrace header, the streaming writer and reader, and
 * the per-chunk helpers.  Layout in docs/trace-format.md. */
#include "config.h"
#include "traces/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

static uint64_t per_token_bytes(const struct trace_header *h);
#ifndef TRACE_MAX_CHUNK_BYTES
#define TRACE_MAX_CHUNK_BYTES (1ull << 30)
#endif

void trace_header_init(struct trace_header *h, uint32_t layers, uint32_t experts, uint32_t top_k,
		       uint32_t ranks)
{
	memset(h, 0, sizeof *h);
	h->version = TRACE_VERSION;
	h->flags = TRACE_F_WEIGHTS;
	h->layers = layers;
	h->experts = experts;
	h->top_k = top_k;
	h->ranks = ranks;
}

enum moe_status trace_header_check(const struct trace_header *h, const char *what)
{
	if (h->version == 0 || h->version > TRACE_VERSION)
		MOE_FAIL(MOE_EVERSION, "%s: trace format version %u: this build reads up to %u",
			 what, h->version, TRACE_VERSION);
	if (h->flags & ~TRACE_F_KNOWN)
		MOE_FAIL(MOE_EFORMAT, "%s: header flags 0x%x: unknown bits (expected within 0x%x)",
			 what, h->flags, TRACE_F_KNOWN);
	if ((h->flags & TRACE_F_COUNTS) && (h->flags & (TRACE_F_WEIGHTS | TRACE_F_LOGITS)))
		MOE_FAIL(MOE_EFORMAT, "%s: header flags 0x%x: a count-level trace has no weights or logits",
			 what, h->flags);
	if (h->layers < 1 || h->layers > TRACE_MAX_LAYERS)
		MOE_FAIL(MOE_EFORMAT, "%s: header layers %u: expected 1 to %u", what, h->layers,
			 TRACE_MAX_LAYERS);
	if (h->experts < 1 || h->experts > TRACE_MAX_EXPERTS)
		MOE_FAIL(MOE_EFORMAT, "%s: header experts %u: expected 1 to %u", what, h->experts,
			 TRACE_MAX_EXPERTS);
	if (h->top_k < 1 || h->top_k > h->experts || h->top_k > TRACE_MAX_TOP_K)
		MOE_FAIL(MOE_EFORMAT, "%s: header top_k %u: expected 1 to %u", what, h->top_k,
			 h->experts < TRACE_MAX_TOP_K ? h->experts : TRACE_MAX_TOP_K);
	if (h->ranks < 1 || h->ranks > TRACE_MAX_RANKS)
		MOE_FAIL(MOE_EFORMAT, "%s: header ranks %u: expected 1 to %u", what, h->ranks,
			 TRACE_MAX_RANKS);
	/* One chunk must fit the reader's bound: a count chunk is R x E counts, a
	 * token chunk at least one token. */
	if ((h->flags & TRACE_F_COUNTS) &&
	    8ull * h->ranks * h->experts > TRACE_MAX_CHUNK_BYTES)
		MOE_FAIL(MOE_EFORMAT, "%s: header ranks x experts = %llu: a count chunk may hold at "
			 "most %llu", what, (unsigned long long)h->ranks * h->experts,
			 (unsigned long long)TRACE_MAX_CHUNK_BYTES / 8);
	if (!(h->flags & TRACE_F_COUNTS) && 2 * per_token_bytes(h) > TRACE_MAX_CHUNK_BYTES)
		MOE_FAIL(MOE_EFORMAT, "%s: header: one token takes %llu bytes: at most %llu", what,
			 (unsigned long long)per_token_bytes(h),
			 (unsigned long long)TRACE_MAX_CHUNK_BYTES / 2);
	if (memchr(h->model, '\0', sizeof h->model) == NULL)
		MOE_FAIL(MOE_EFORMAT, "%s: header model name: not NUL-terminated within %d bytes",
			 what, TRACE_MODEL_MAX);
	return MOE_OK;
}

/* ------------------------------------------------------------ byte layout */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .moetrace code stores arrays in host order and needs a little-endian host"
#endif

#define FILE_MAGIC "MOETRACE"
#define END_MAGIC "MOETEND"          /* 8 bytes with its NUL */
#define CHUNK_MAGIC 0x4B4E4843u      /* "CHNK" little-endian */
#define INDEX_MAGIC 0x58444E49u      /* "INDX" */
#define HEADER_BYTES 128
#define CHUNK_HEADER_BYTES 56
#define INDEX_HEADER_BYTES 16
#define INDEX_ENTRY_BYTES 32
#define FOOTER_BYTES 40
#define CODEC_RAW 0u
#define CODEC_ZSTD 1u
/* Bound on one chunk's decompressed payload, so a damaged size field can
 * never make the reader allocate without limit.  The writer keeps chunks far
 * below it. */
#ifndef TRACE_MAX_CHUNK_BYTES
#define TRACE_MAX_CHUNK_BYTES (1ull << 30)
#endif
/* Payload the writer aims for per chunk when chunk_tokens is 0. */
#define AUTO_CHUNK_BYTES (1u << 20)

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint32_t crc(const void *p, size_t n)
{
	return (uint32_t)crc32_z(0L, p, n);
}

static uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

static unsigned rank_bytes_for(uint32_t ranks)
{
	return ranks <= 65536u ? 2u : 4u;
}

static unsigned id_bytes_for(uint32_t experts)
{
	/* 0xFFFF is reserved for "none", so 16-bit ids hold up to 65535 experts. */
	return experts <= 65535u ? 2u : 4u;
}

/* Bytes of a token chunk's payload for n tokens, and its section offsets. */
struct layout {
	uint64_t ids_off, weights_off, logits_off, bytes;
};

static struct layout token_layout(const struct trace_header *h, uint64_t n)
{
	struct layout L;
	uint64_t k = h->top_k;

	L.ids_off = pad8(n * rank_bytes_for(h->ranks));
	L.weights_off = L.ids_off + pad8(n * k * id_bytes_for(h->experts));
	L.logits_off = L.weights_off + ((h->flags & TRACE_F_WEIGHTS) ? pad8(n * k * 4) : 0);
	L.bytes = L.logits_off + ((h->flags & TRACE_F_LOGITS) ? pad8(n * h->experts * 4) : 0);
	return L;
}

static uint64_t per_token_bytes(const struct trace_header *h)
{
	uint64_t b = rank_bytes_for(h->ranks) + (uint64_t)h->top_k * id_bytes_for(h->experts);

	if (h->flags & TRACE_F_WEIGHTS)
		b += 4ull * h->top_k;
	if (h->flags & TRACE_F_LOGITS)
		b += 4ull * h->experts;
	return b;
}

static void header_encode(const struct trace_header *h, unsigned char *b)
{
	memset(b, 0, HEADER_BYTES);
	memcpy(b, FILE_MAGIC, 8);
	put32(b + 8, h->version);
	put32(b + 12, HEADER_BYTES);
	put32(b + 16, h->flags);
	put32(b + 20, h->layers);
	put32(b + 24, h->experts);
	put32(b + 28, h->top_k);
	put32(b + 32, h->ranks);
	put32(b + 36, id_bytes_for(h->experts));
	put32(b + 40, rank_bytes_for(h->ranks));
	put64(b + 48, h->steps);
	memcpy(b + 56, h->model, TRACE_MODEL_MAX);
	put32(b + 124, crc(b, 124));
}

/* ------------------------------------------------------------------ writer */

struct index_entry {
	uint64_t step;
	uint32_t layer, kind;
	uint64_t offset, n;
};

struct trace_writer {
	char *path, *tmp;
	FILE *f;
	struct trace_header h;
	struct layout cap_layout;    /* sections for chunk_tokens tokens */
	int zstd_level;
	size_t chunk_tokens;
	unsigned rank_bytes, id_bytes;
	enum moe_status failed;
	char errmsg[1024];
	/* the buffered (step, layer) */
	int have_cur;
	uint64_t cur_step;
	uint32_t cur_layer;
	size_t nbuf;
	unsigned char *buf;          /* payload laid out for chunk_tokens tokens */
	void *zbuf;
	size_t zcap;
	ZSTD_CCtx *cctx;
	uint64_t offset;             /* bytes written so far */
	uint64_t max_step, tokens;
	int any_chunk;
	uint64_t last_step;
	uint32_t last_layer;
	struct index_entry *index;
	size_t nindex, index_cap;
};

static enum moe_status wfail(struct trace_writer *w, enum moe_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Records the writer's first error; later calls return it again. */
static enum moe_status wfail(struct trace_writer *w, enum moe_status st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	moe_verror(st, fmt, ap);
	va_end(ap);
	if (w->failed == MOE_OK) {
		w->failed = st;
		snprintf(w->errmsg, sizeof w->errmsg, "%s", moe_errmsg());
	}
	return st;
}

static enum moe_status wrecall(struct trace_writer *w)
{
	return moe_error(w->failed, "%s", w->errmsg);
}

static enum moe_status wwrite(struct trace_writer *w, const void *p, size_t n)
{
	if (n > 0 && fwrite(p, 1, n, w->f) != n)
		return wfail(w, MOE_EIO, "%s: writing %s failed: %s", w->path, w->tmp, strerror(errno));
	w->offset += n;
	return MOE_OK;
}

enum moe_status trace_writer_open(const char *path, const struct trace_header *h,
				  const struct trace_writer_opts *opts, struct trace_writer **out)
{
	struct trace_writer *w;
	struct trace_header hh = *h;
	enum moe_status st;
	unsigned char hb[HEADER_BYTES];
	uint64_t ptb;

	*out = NULL;
	hh.version = TRACE_VERSION;
	if ((st = trace_header_check(&hh, path)) != MOE_OK)
		return st;
	if (opts != NULL && (opts->zstd_level < 0 || opts->zstd_level > ZSTD_maxCLevel()))
		MOE_FAIL(MOE_EINVAL, "%s: zstd level %d: expected 0 (none) to %d", path,
			 opts->zstd_level, ZSTD_maxCLevel());
	w = calloc(1, sizeof *w);
	if (w == NULL)
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", path);
	w->h = hh;
	w->rank_bytes = rank_bytes_for(hh.ranks);
	w->id_bytes = id_bytes_for(hh.experts);
	w->zstd_level = opts ? opts->zstd_level : 0;
	ptb = per_token_bytes(&hh);
	w->chunk_tokens = opts && opts->chunk_tokens ? opts->chunk_tokens : AUTO_CHUNK_BYTES / ptb;
	if (w->chunk_tokens < 1)
		w->chunk_tokens = 1;
	/* Keep every chunk well inside what a reader accepts. */
	if (w->chunk_tokens > (TRACE_MAX_CHUNK_BYTES / 2) / ptb)
		w->chunk_tokens = (TRACE_MAX_CHUNK_BYTES / 2) / ptb > 0 ? (TRACE_MAX_CHUNK_BYTES / 2) / ptb : 1;
	if (hh.flags & TRACE_F_COUNTS)
		w->cap_layout.bytes = 8ull * hh.ranks * hh.experts;
	else
		w->cap_layout = token_layout(&hh, w->chunk_tokens);
	w->path = strdup(path);
	w->tmp = malloc(strlen(path) + 32);
	w->buf = malloc(w->cap_layout.bytes ? w->cap_layout.bytes : 8);
	if (w->path == NULL || w->tmp == NULL || w->buf == NULL) {
		trace_writer_abort(w);
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory for a %llu-byte chunk buffer", path,
			 (unsigned long long)w->cap_layout.bytes);
	}
	/* Zero the padding once, so files are byte-identical run to run. */
	memset(w->buf, 0, w->cap_layout.bytes);
	if (w->zstd_level > 0) {
		w->zcap = ZSTD_compressBound(w->cap_layout.bytes);
		w->zbuf = malloc(w->zcap);
		w->cctx = ZSTD_createCCtx();
		if (w->zbuf == NULL || w->cctx == NULL) {
			trace_writer_abort(w);
			MOE_FAIL(MOE_ENOMEM, "%s: out of memory for the zstd buffers", path);
		}
	}
	sprintf(w->tmp, "%s.tmp.%ld", path, (long)getpid());
	w->f = fopen(w->tmp, "wb");
	if (w->f == NULL) {
		int e = errno;
		free(w->tmp);
		w->tmp = NULL;
		trace_writer_abort(w);
		MOE_FAIL(MOE_EIO, "%s: cannot create the temporary file: %s", path, strerror(e));
	}
	header_encode(&w->h, hb);
	if ((st = wwrite(w, hb, sizeof hb)) != MOE_OK) {
		trace_writer_abort(w);
		return st;
	}
	*out = w;
	return MOE_OK;
}

static enum moe_status index_push(struct trace_writer *w, uint64_t step, uint32_t layer,
				  uint32_t kind, uint64_t offset, uint64_t n)
{
	if (w->nindex == w->index_cap) {
		size_t cap = w->index_cap ? 2 * w->index_cap : 256;
		struct index_entry *p = realloc(w->index, cap * sizeof *p);
		if (p == NULL)
			return wfail(w, MOE_ENOMEM, "%s: out of memory for the index", w->path);
		w->index = p;
		w->index_cap = cap;
	}
	w->index[w->nindex++] = (struct index_entry){step, layer, kind, offset, n};
	return MOE_OK;
}

/* Writes one chunk whose raw payload is raw[0..raw_bytes). */
static enum moe_status write_chunk(struct trace_writer *w, uint64_t step, uint32_t layer,
				   uint32_t kind, uint64_t n, const void *raw, size_t raw_bytes)
{
	unsigned char ch[CHUNK_HEADER_BYTES];
	const void *stored = raw;
	size_t stored_bytes = raw_bytes;
	uint32_t codec = CODEC_RAW;
	enum moe_status st;

	if (w->zstd_level > 0) {
		size_t z = ZSTD_compressCCtx(w->cctx, w->zbuf, w->zcap, raw, raw_bytes, w->zstd_level);
		if (ZSTD_isError(z))
			return wfail(w, MOE_ERUNTIME, "%s: chunk (step %llu, layer %u): zstd: %s",
				     w->path, (unsigned long long)step, layer, ZSTD_getErrorName(z));
		stored = w->zbuf;
		stored_bytes = z;
		codec = CODEC_ZSTD;
	}
	memset(ch, 0, sizeof ch);
	put32(ch, CHUNK_MAGIC);
	put32(ch + 4, layer);
	put64(ch + 8, step);
	put64(ch + 16, n);
	put32(ch + 24, codec);
	put32(ch + 28, kind);
	put64(ch + 32, raw_bytes);
	put64(ch + 40, stored_bytes);
	put32(ch + 48, crc(stored, stored_bytes));
	put32(ch + 52, crc(ch, 52));
	if ((st = index_push(w, step, layer, kind, w->offset, n)) != MOE_OK)
		return st;
	if ((st = wwrite(w, ch, sizeof ch)) != MOE_OK)
		return st;
	if ((st = wwrite(w, stored, stored_bytes)) != MOE_OK)
		return st;
	if (step > w->max_step || !w->any_chunk)
		w->max_step = step;
	w->any_chunk = 1;
	w->last_step = step;
	w->last_layer = layer;
	return MOE_OK;
}

/* Writes the buffered tokens as one chunk: the sections, laid out for
 * chunk_tokens tokens, move down to the offsets for nbuf tokens first. */
static enum moe_status flush_tokens(struct trace_writer *w)
{
	struct layout L;
	const struct layout *C = &w->cap_layout;
	size_t n = w->nbuf, k = w->h.top_k;
	enum moe_status st;

	if (n == 0)
		return MOE_OK;
	L = token_layout(&w->h, n);
	if (n < w->chunk_tokens) {
		/* Zero the tail padding of each section before moving it. */
		memset(w->buf + n * w->rank_bytes, 0, L.ids_off - n * w->rank_bytes);
		memmove(w->buf + L.ids_off, w->buf + C->ids_off, n * k * w->id_bytes);
		memset(w->buf + L.ids_off + n * k * w->id_bytes, 0,
		       L.weights_off - L.ids_off - n * k * w->id_bytes);
		if (w->h.flags & TRACE_F_WEIGHTS) {
			memmove(w->buf + L.weights_off, w->buf + C->weights_off, n * k * 4);
			memset(w->buf + L.weights_off + n * k * 4, 0,
			       L.logits_off - L.weights_off - n * k * 4);
		}
		if (w->h.flags & TRACE_F_LOGITS) {
			memmove(w->buf + L.logits_off, w->buf + C->logits_off, n * w->h.experts * 4);
			memset(w->buf + L.logits_off + n * w->h.experts * 4, 0,
			       L.bytes - L.logits_off - n * w->h.experts * 4);
		}
	}
	st = write_chunk(w, w->cur_step, w->cur_layer, TRACE_CHUNK_TOKENS, n, w->buf, L.bytes);
	w->tokens += n;
	w->nbuf = 0;
	return st;
}

/* Orders (step, layer) pairs. */
static int sl_cmp(uint64_t s1, uint32_t l1, uint64_t s2, uint32_t l2)
{
	if (s1 != s2)
		return s1 < s2 ? -1 : 1;
	return l1 < l2 ? -1 : l1 > l2;
}

static enum moe_status check_place(struct trace_writer *w, uint64_t step, uint32_t layer)
{
	if (layer >= w->h.layers)
		return wfail(w, MOE_EINVAL, "%s: layer %u: the trace has %u layers", w->path, layer,
			     w->h.layers);
	if (w->h.steps != 0 && step >= w->h.steps)
		return wfail(w, MOE_EINVAL, "%s: step %llu: the header declares %llu steps", w->path,
			     (unsigned long long)step, (unsigned long long)w->h.steps);
	return MOE_OK;
}

enum moe_status trace_writer_add_tokens(struct trace_writer *w, uint64_t step, uint32_t layer,
					size_t n, const uint32_t *ranks, const int32_t *ids,
					const float *weights, const float *logits)
{
	const size_t k = w->h.top_k, E = w->h.experts;
	const int want_w = (w->h.flags & TRACE_F_WEIGHTS) != 0;
	const int want_l = (w->h.flags & TRACE_F_LOGITS) != 0;
	enum moe_status st;
	size_t done = 0;

	if (w->failed)
		return wrecall(w);
	if (w->h.flags & TRACE_F_COUNTS)
		return wfail(w, MOE_EINVAL, "%s: tokens added to a count-level trace", w->path);
	if ((st = check_place(w, step, layer)) != MOE_OK)
		return st;
	if (n > 0 && (ids == NULL || (want_w && weights == NULL) || (want_l && logits == NULL)))
		return wfail(w, MOE_EINVAL, "%s: step %llu, layer %u: %s array missing", w->path,
			     (unsigned long long)step, layer,
			     ids == NULL ? "ids" : (want_w && weights == NULL) ? "weights" : "logits");
	if (w->have_cur || w->any_chunk) {
		uint64_t ps = w->have_cur ? w->cur_step : w->last_step;
		uint32_t pl = w->have_cur ? w->cur_layer : w->last_layer;
		int c = sl_cmp(step, layer, ps, pl);
		if (c < 0)
			return wfail(w, MOE_EINVAL,
				     "%s: step %llu, layer %u comes after step %llu, layer %u: chunks must "
				     "be added in (step, layer) order", w->path, (unsigned long long)step,
				     layer, (unsigned long long)ps, pl);
		if (c > 0 && (st = flush_tokens(w)) != MOE_OK)
			return st;
	}
	w->have_cur = 1;
	w->cur_step = step;
	w->cur_layer = layer;
	/* Validate everything first, so a failed call adds nothing. */
	for (size_t t = 0; t < n; t++) {
		if (ranks != NULL && ranks[t] >= w->h.ranks)
			return wfail(w, MOE_ERANGE, "%s: step %llu, layer %u, token %zu: rank %u: expected "
				     "0 to %u", w->path, (unsigned long long)step, layer, t, ranks[t],
				     w->h.ranks - 1);
		for (size_t j = 0; j < k; j++) {
			int32_t e = ids[t * k + j];
			if (e < TRACE_EXPERT_NONE || (e >= 0 && (uint32_t)e >= E))
				return wfail(w, MOE_ERANGE, "%s: step %llu, layer %u, token %zu, slot %zu: "
					     "expert id %d: expected 0 to %zu or -1 (none)", w->path,
					     (unsigned long long)step, layer, t, j, e, E - 1);
			if (want_w && !isfinite(weights[t * k + j]))
				return wfail(w, MOE_ERANGE, "%s: step %llu, layer %u, token %zu, slot %zu: "
					     "gate weight %g: expected a finite number", w->path,
					     (unsigned long long)step, layer, t, j, (double)weights[t * k + j]);
		}
		if (want_l)
			for (size_t e = 0; e < E; e++)
				if (!isfinite(logits[t * E + e]))
					return wfail(w, MOE_ERANGE, "%s: step %llu, layer %u, token %zu, "
						     "expert %zu: logit %g: expected a finite number",
						     w->path, (unsigned long long)step, layer, t, e,
						     (double)logits[t * E + e]);
	}
	while (done < n) {
		size_t m = w->chunk_tokens - w->nbuf, b = w->nbuf;
		const struct layout *C = &w->cap_layout;
		if (m > n - done)
			m = n - done;
		if (w->rank_bytes == 2) {
			uint16_t *d = (uint16_t *)w->buf + b;
			for (size_t t = 0; t < m; t++)
				d[t] = ranks ? (uint16_t)ranks[done + t] : 0;
		} else {
			uint32_t *d = (uint32_t *)w->buf + b;
			for (size_t t = 0; t < m; t++)
				d[t] = ranks ? ranks[done + t] : 0;
		}
		if (w->id_bytes == 2) {
			uint16_t *d = (uint16_t *)(w->buf + C->ids_off) + b * k;
			const int32_t *s = ids + done * k;
			for (size_t i = 0; i < m * k; i++)
				d[i] = s[i] < 0 ? 0xFFFFu : (uint16_t)s[i];
		} else {
			memcpy(w->buf + C->ids_off + b * k * 4, ids + done * k, m * k * 4);
		}
		if (want_w)
			memcpy(w->buf + C->weights_off + b * k * 4, weights + done * k, m * k * 4);
		if (want_l)
			memcpy(w->buf + C->logits_off + b * E * 4, logits + done * E, m * E * 4);
		w->nbuf += m;
		done += m;
		if (w->nbuf == w->chunk_tokens && (st = flush_tokens(w)) != MOE_OK)
			return st;
	}
	return MOE_OK;
}

enum moe_status trace_writer_add_counts(struct trace_writer *w, uint64_t step, uint32_t layer,
					const uint64_t *counts)
{
	enum moe_status st;
	uint64_t sum = 0, m = (uint64_t)w->h.ranks * w->h.experts;

	if (w->failed)
		return wrecall(w);
	if (!(w->h.flags & TRACE_F_COUNTS))
		return wfail(w, MOE_EINVAL, "%s: counts added to a token-level trace", w->path);
	if ((st = check_place(w, step, layer)) != MOE_OK)
		return st;
	if (w->any_chunk && sl_cmp(step, layer, w->last_step, w->last_layer) <= 0)
		return wfail(w, MOE_EINVAL,
			     "%s: counts of step %llu, layer %u after step %llu, layer %u: count chunks "
			     "must be added in increasing (step, layer) order, one per pair", w->path,
			     (unsigned long long)step, layer, (unsigned long long)w->last_step,
			     w->last_layer);
	for (uint64_t i = 0; i < m; i++)
		sum += counts[i];
	st = write_chunk(w, step, layer, TRACE_CHUNK_COUNTS, m, counts, m * 8);
	w->tokens += sum;
	return st;
}

enum moe_status trace_writer_close(struct trace_writer *w)
{
	unsigned char b[FOOTER_BYTES], hb[HEADER_BYTES];
	uint64_t index_off;
	uint32_t icrc;
	enum moe_status st;

	if (w == NULL)
		return MOE_OK;
	if (w->failed) {
		st = wrecall(w);
		trace_writer_abort(w);
		return moe_error(st, "%s", moe_errmsg());
	}
	if ((st = flush_tokens(w)) != MOE_OK)
		goto err;
	index_off = w->offset;
	memset(b, 0, INDEX_HEADER_BYTES);
	put32(b, INDEX_MAGIC);
	put64(b + 8, w->nindex);
	icrc = crc(b, INDEX_HEADER_BYTES);
	if ((st = wwrite(w, b, INDEX_HEADER_BYTES)) != MOE_OK)
		goto err;
	for (size_t i = 0; i < w->nindex; i++) {
		unsigned char e[INDEX_ENTRY_BYTES];
		put64(e, w->index[i].step);
		put32(e + 8, w->index[i].layer);
		put32(e + 12, w->index[i].kind);
		put64(e + 16, w->index[i].offset);
		put64(e + 24, w->index[i].n);
		icrc = (uint32_t)crc32_z(icrc, e, sizeof e);
		if ((st = wwrite(w, e, sizeof e)) != MOE_OK)
			goto err;
	}
	memset(b, 0, sizeof b);
	put64(b, index_off);
	put64(b + 8, w->nindex);
	put64(b + 16, w->tokens);
	put32(b + 24, icrc);
	put32(b + 28, crc(b, 28));
	memcpy(b + 32, END_MAGIC, 8);
	if ((st = wwrite(w, b, sizeof b)) != MOE_OK)
		goto err;
	/* The header's step count is final only now. */
	if (w->any_chunk && (w->h.steps == 0 || w->h.steps < w->max_step + 1))
		w->h.steps = w->max_step + 1;
	header_encode(&w->h, hb);
	if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(hb, 1, sizeof hb, w->f) != sizeof hb) {
		st = wfail(w, MOE_EIO, "%s: rewriting the header failed: %s", w->path, strerror(errno));
		goto err;
	}
	if (fclose(w->f) != 0) {
		w->f = NULL;
		st = wfail(w, MOE_EIO, "%s: writing %s failed: %s", w->path, w->tmp, strerror(errno));
		goto err;
	}
	w->f = NULL;
	if (rename(w->tmp, w->path) != 0) {
		st = wfail(w, MOE_EIO, "%s: renaming %s failed: %s", w->path, w->tmp, strerror(errno));
		goto err;
	}
	free(w->tmp);
	w->tmp = NULL;
	trace_writer_abort(w);
	return MOE_OK;
err:
	st = wrecall(w);
	trace_writer_abort(w);
	return moe_error(st, "%s", moe_errmsg());
}

void trace_writer_abort(struct trace_writer *w)
{
	if (w == NULL)
		return;
	if (w->f != NULL)
		fclose(w->f);
	if (w->tmp != NULL)
		unlink(w->tmp);
	ZSTD_freeCCtx(w->cctx);
	free(w->zbuf);
	free(w->buf);
	free(w->index);
	free(w->tmp);
	free(w->path);
	free(w);
}

/* ------------------------------------------------------------------ reader */

struct trace_reader {
	char *path;
	int fd;
	struct trace_header h;
	unsigned rank_bytes, id_bytes;
	uint64_t file_size, index_off, nchunks, tokens;
	uint32_t index_crc;
	int index_checked;
	uint64_t pos;
	int have_prev;
	uint64_t prev_step;
	uint32_t prev_layer;
	uint32_t prev_kind;
	/* buffers, grown to the largest chunk seen */
	void *stored, *raw;
	size_t stored_cap, raw_cap;
	uint32_t *ranks32;
	int32_t *ids32;
	size_t ranks_cap, ids_cap;
	ZSTD_DCtx *dctx;
	struct trace_chunk chunk;
};

/* Reads exactly n bytes at off; 0 on success, 1 on a short file, -1 on an
 * I/O error (errno set). */
static int pread_full(int fd, void *p, size_t n, uint64_t off)
{
	unsigned char *b = p;

	while (n > 0) {
		ssize_t got = pread(fd, b, n, (off_t)off);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (got == 0)
			return 1;
		b += got;
		n -= (size_t)got;
		off += (uint64_t)got;
	}
	return 0;
}

static enum moe_status rd(struct trace_reader *r, void *p, size_t n, uint64_t off, const char *what)
{
	int e = pread_full(r->fd, p, n, off);

	if (e < 0)
		MOE_FAIL(MOE_EIO, "%s: reading %s failed: %s", r->path, what, strerror(errno));
	if (e > 0)
		MOE_FAIL(MOE_EFORMAT, "%s: truncated: %s ends early", r->path, what);
	return MOE_OK;
}

static int grow(void **p, size_t *cap, size_t need)
{
	void *q;

	if (need <= *cap)
		return 1;
	q = malloc(need);
	if (q == NULL)
		return 0;
	free(*p);
	*p = q;
	*cap = need;
	return 1;
}

enum moe_status trace_reader_open(const char *path, struct trace_reader **out)
{
	struct trace_reader *r;
	unsigned char hb[HEADER_BYTES], fb[FOOTER_BYTES], ib[INDEX_HEADER_BYTES];
	struct stat sb;
	enum moe_status st;

	*out = NULL;
	r = calloc(1, sizeof *r);
	if (r == NULL || (r->path = strdup(path)) == NULL) {
		free(r);
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", path);
	}
	r->fd = -1;
	r->fd = open(path, O_RDONLY);
	if (r->fd < 0) {
		int e = errno;
		trace_reader_close(r);
		MOE_FAIL(e == ENOENT ? MOE_ENOTFOUND : MOE_EIO, "%s: cannot open: %s", path, strerror(e));
	}
	if (fstat(r->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		trace_reader_close(r);
		MOE_FAIL(MOE_EIO, "%s: not a regular file", path);
	}
	r->file_size = (uint64_t)sb.st_size;
	if ((st = rd(r, hb, 8 <= r->file_size ? 8 : r->file_size, 0, "the header")) != MOE_OK)
		goto err;
	if (r->file_size < 8 || memcmp(hb, FILE_MAGIC, 8) != 0) {
		st = moe_error(MOE_EFORMAT, "%s: not a .moetrace file (wrong magic: expected \"%s\")",
			       path, FILE_MAGIC);
		goto err;
	}
	if ((st = rd(r, hb, HEADER_BYTES, 0, "the header")) != MOE_OK)
		goto err;
	if (get32(hb + 124) != crc(hb, 124)) {
		st = moe_error(MOE_EFORMAT, "%s: header crc mismatch (stored 0x%08x, computed 0x%08x)",
			       path, get32(hb + 124), crc(hb, 124));
		goto err;
	}
	r->h.version = get32(hb + 8);
	if (r->h.version == 0 || r->h.version > TRACE_VERSION) {
		st = moe_error(MOE_EVERSION, "%s: trace format version %u: this build reads up to %u",
			       path, r->h.version, TRACE_VERSION);
		goto err;
	}
	if (get32(hb + 12) != HEADER_BYTES) {
		st = moe_error(MOE_EFORMAT, "%s: header size %u: expected %u", path, get32(hb + 12),
			       HEADER_BYTES);
		goto err;
	}
	r->h.flags = get32(hb + 16);
	r->h.layers = get32(hb + 20);
	r->h.experts = get32(hb + 24);
	r->h.top_k = get32(hb + 28);
	r->h.ranks = get32(hb + 32);
	r->h.steps = get64(hb + 48);
	memcpy(r->h.model, hb + 56, TRACE_MODEL_MAX);
	if ((st = trace_header_check(&r->h, path)) != MOE_OK)
		goto err;
	r->rank_bytes = rank_bytes_for(r->h.ranks);
	r->id_bytes = id_bytes_for(r->h.experts);
	if (get32(hb + 36) != r->id_bytes || get32(hb + 40) != r->rank_bytes) {
		st = moe_error(MOE_EFORMAT, "%s: header id/rank widths %u/%u: expected %u/%u", path,
			       get32(hb + 36), get32(hb + 40), r->id_bytes, r->rank_bytes);
		goto err;
	}
	if (r->file_size < HEADER_BYTES + INDEX_HEADER_BYTES + FOOTER_BYTES) {
		st = moe_error(MOE_EFORMAT, "%s: truncated: %llu bytes, no footer (the writer did not "
			       "finish)", path, (unsigned long long)r->file_size);
		goto err;
	}
	if ((st = rd(r, fb, FOOTER_BYTES, r->file_size - FOOTER_BYTES, "the footer")) != MOE_OK)
		goto err;
	if (memcmp(fb + 32, END_MAGIC, 8) != 0 || get32(fb + 28) != crc(fb, 28)) {
		st = moe_error(MOE_EFORMAT, "%s: truncated or damaged: no valid footer at the end",
			       path);
		goto err;
	}
	r->index_off = get64(fb);
	r->nchunks = get64(fb + 8);
	r->tokens = get64(fb + 16);
	r->index_crc = get32(fb + 24);
	if (r->index_off < HEADER_BYTES || r->nchunks > r->file_size / INDEX_ENTRY_BYTES ||
	    r->index_off + INDEX_HEADER_BYTES + r->nchunks * INDEX_ENTRY_BYTES + FOOTER_BYTES !=
		    r->file_size) {
		st = moe_error(MOE_EFORMAT, "%s: footer: index at byte %llu with %llu entries does not "
			       "fit the %llu-byte file", path, (unsigned long long)r->index_off,
			       (unsigned long long)r->nchunks, (unsigned long long)r->file_size);
		goto err;
	}
	if ((st = rd(r, ib, INDEX_HEADER_BYTES, r->index_off, "the index")) != MOE_OK)
		goto err;
	if (get32(ib) != INDEX_MAGIC || get64(ib + 8) != r->nchunks) {
		st = moe_error(MOE_EFORMAT, "%s: index header at byte %llu: wrong magic or entry count",
			       path, (unsigned long long)r->index_off);
		goto err;
	}
	r->dctx = ZSTD_createDCtx();
	if (r->dctx == NULL) {
		st = moe_error(MOE_ENOMEM, "%s: out of memory", path);
		goto err;
	}
	r->pos = HEADER_BYTES;
	*out = r;
	return MOE_OK;
err:
	trace_reader_close(r);
	return st;
}

const struct trace_header *trace_reader_header(const struct trace_reader *r)
{
	return &r->h;
}

uint64_t trace_reader_chunks(const struct trace_reader *r)
{
	return r->nchunks;
}

uint64_t trace_reader_tokens(const struct trace_reader *r)
{
	return r->tokens;
}

/* Widens 16-bit ids to int32 (0xFFFF becomes -1: v - 0x10000 exactly when
 * v + 1 carries into bit 16) and returns non-zero when an id other than
 * 0xFFFF is >= E.  Branch-free, in blocks of 16 with a fixed trip count, so
 * that gcc -O2 (whose cheap cost model refuses loop epilogues) and clang
 * vectorize it: about 3x faster than the plain loop. */
static uint32_t widen_ids16(const uint16_t *s, int32_t *d, size_t m, uint32_t E)
{
	uint32_t bad = 0;
	size_t i = 0;

	for (; i + 16 <= m; i += 16)
		for (int j = 0; j < 16; j++) {
			uint32_t v = s[i + j];
			bad |= (uint32_t)(v < 0xFFFFu) & (uint32_t)(v >= E);
			d[i + j] = (int32_t)v - (int32_t)(((v + 1) >> 16) << 16);
		}
	for (; i < m; i++) {
		uint32_t v = s[i];
		bad |= (uint32_t)(v < 0xFFFFu) & (uint32_t)(v >= E);
		d[i] = (int32_t)v - (int32_t)(((v + 1) >> 16) << 16);
	}
	return bad;
}

/* Widens 16-bit ranks; returns non-zero when one is >= R.  Blocked as above. */
static uint32_t widen_ranks16(const uint16_t *s, uint32_t *d, size_t n, uint32_t R)
{
	uint32_t bad = 0;
	size_t t = 0;

	for (; t + 16 <= n; t += 16)
		for (int j = 0; j < 16; j++) {
			d[t + j] = s[t + j];
			bad |= (uint32_t)(s[t + j] >= R);
		}
	for (; t < n; t++) {
		d[t] = s[t];
		bad |= (uint32_t)(s[t] >= R);
	}
	return bad;
}

#define CHUNK_FAIL(st, fmt, ...)                                                              \
	return moe_error((st), "%s: chunk (step %llu, layer %u) at byte %llu: " fmt, r->path,    \
			 (unsigned long long)step, layer, (unsigned long long)at, __VA_ARGS__)

enum moe_status trace_reader_next(struct trace_reader *r, const struct trace_chunk **out)
{
	unsigned char ch[CHUNK_HEADER_BYTES];
	uint64_t at = r->pos, step, n, raw_bytes, stored_bytes, expect;
	uint32_t layer, codec, kind, want_kind;
	struct trace_chunk *c = &r->chunk;
	const uint64_t k = r->h.top_k, E = r->h.experts;
	enum moe_status st;

	*out = NULL;
	if (r->pos == r->index_off)
		return MOE_OK;
	if (r->pos + CHUNK_HEADER_BYTES > r->index_off)
		MOE_FAIL(MOE_EFORMAT, "%s: truncated chunk header at byte %llu", r->path,
			 (unsigned long long)at);
	if ((st = rd(r, ch, sizeof ch, at, "a chunk header")) != MOE_OK)
		return st;
	if (get32(ch) != CHUNK_MAGIC || get32(ch + 52) != crc(ch, 52))
		MOE_FAIL(MOE_EFORMAT, "%s: chunk header at byte %llu: %s", r->path,
			 (unsigned long long)at,
			 get32(ch) != CHUNK_MAGIC ? "wrong magic (expected \"CHNK\")" : "crc mismatch");
	layer = get32(ch + 4);
	step = get64(ch + 8);
	n = get64(ch + 16);
	codec = get32(ch + 24);
	kind = get32(ch + 28);
	raw_bytes = get64(ch + 32);
	stored_bytes = get64(ch + 40);
	want_kind = (r->h.flags & TRACE_F_COUNTS) ? TRACE_CHUNK_COUNTS : TRACE_CHUNK_TOKENS;
	if (layer >= r->h.layers)
		CHUNK_FAIL(MOE_EFORMAT, "layer out of range (the header has %u layers)", r->h.layers);
	if (r->h.steps != 0 && step >= r->h.steps)
		CHUNK_FAIL(MOE_EFORMAT, "step out of range (the header has %llu steps)",
			   (unsigned long long)r->h.steps);
	if (kind != want_kind)
		CHUNK_FAIL(MOE_EFORMAT, "kind %u: expected %u (%s)", kind, want_kind,
			   want_kind == TRACE_CHUNK_COUNTS ? "counts" : "tokens");
	if (r->have_prev && (sl_cmp(step, layer, r->prev_step, r->prev_layer) < 0 ||
			     (kind == TRACE_CHUNK_COUNTS &&
			      sl_cmp(step, layer, r->prev_step, r->prev_layer) == 0)))
		CHUNK_FAIL(MOE_EFORMAT, "out of order after step %llu, layer %u",
			   (unsigned long long)r->prev_step, r->prev_layer);
	if (codec != CODEC_RAW && codec != CODEC_ZSTD)
		CHUNK_FAIL(MOE_EFORMAT, "unknown codec %u (expected 0 raw or 1 zstd)", codec);
	if (kind == TRACE_CHUNK_COUNTS) {
		if (n != (uint64_t)r->h.ranks * E)
			CHUNK_FAIL(MOE_EFORMAT, "%llu counts: expected ranks x experts = %llu",
				   (unsigned long long)n, (unsigned long long)r->h.ranks * E);
		expect = 8 * n;
	} else {
		if (n == 0 || n > TRACE_MAX_CHUNK_BYTES)
			CHUNK_FAIL(MOE_EFORMAT, "%llu tokens: expected 1 to %llu", (unsigned long long)n,
				   (unsigned long long)TRACE_MAX_CHUNK_BYTES);
		expect = token_layout(&r->h, n).bytes;
	}
	if (raw_bytes != expect || raw_bytes > TRACE_MAX_CHUNK_BYTES)
		CHUNK_FAIL(MOE_EFORMAT, "payload of %llu bytes: expected %llu (at most %llu)",
			   (unsigned long long)raw_bytes, (unsigned long long)expect,
			   (unsigned long long)TRACE_MAX_CHUNK_BYTES);
	if (stored_bytes > r->index_off - at - CHUNK_HEADER_BYTES)
		CHUNK_FAIL(MOE_EFORMAT, "truncated: %llu stored bytes run past the end of the chunks",
			   (unsigned long long)stored_bytes);
	if (codec == CODEC_RAW && stored_bytes != raw_bytes)
		CHUNK_FAIL(MOE_EFORMAT, "raw payload of %llu bytes: expected %llu",
			   (unsigned long long)stored_bytes, (unsigned long long)raw_bytes);
	if (!grow(&r->stored, &r->stored_cap, stored_bytes ? stored_bytes : 8))
		CHUNK_FAIL(MOE_ENOMEM, "out of memory for %llu bytes", (unsigned long long)stored_bytes);
	if ((st = rd(r, r->stored, stored_bytes, at + CHUNK_HEADER_BYTES, "a chunk payload")) != MOE_OK)
		return st;
	{
		uint32_t want = get32(ch + 48), got = crc(r->stored, stored_bytes);
		if (want != got)
			CHUNK_FAIL(MOE_EFORMAT, "crc mismatch (stored 0x%08x, computed 0x%08x)", want, got);
	}
	if (codec == CODEC_ZSTD) {
		size_t z;
		if (!grow(&r->raw, &r->raw_cap, raw_bytes ? raw_bytes : 8))
			CHUNK_FAIL(MOE_ENOMEM, "out of memory for %llu bytes", (unsigned long long)raw_bytes);
		z = ZSTD_decompressDCtx(r->dctx, r->raw, raw_bytes, r->stored, stored_bytes);
		if (ZSTD_isError(z))
			CHUNK_FAIL(MOE_EFORMAT, "zstd: %s", ZSTD_getErrorName(z));
		if (z != raw_bytes)
			CHUNK_FAIL(MOE_EFORMAT, "zstd gave %zu bytes: expected %llu", z,
				   (unsigned long long)raw_bytes);
	}
	memset(c, 0, sizeof *c);
	c->step = step;
	c->layer = layer;
	c->kind = (enum trace_chunk_kind)kind;
	c->offset = at;
	c->codec = codec;
	c->stored_bytes = stored_bytes;
	c->raw_bytes = raw_bytes;
	c->k = r->h.top_k;
	c->experts = r->h.experts;
	c->nranks = r->h.ranks;
	{
		const unsigned char *p = codec == CODEC_ZSTD ? r->raw : r->stored;
		if (kind == TRACE_CHUNK_COUNTS) {
			c->counts = (const uint64_t *)p;
		} else {
			struct layout L = token_layout(&r->h, n);
			uint32_t R = r->h.ranks;
			size_t m = n * k;
			c->n = n;
			if (!grow((void **)&r->ranks32, &r->ranks_cap, n * 4) ||
			    (r->id_bytes == 2 && !grow((void **)&r->ids32, &r->ids_cap, m * 4)))
				CHUNK_FAIL(MOE_ENOMEM, "out of memory for %llu tokens", (unsigned long long)n);
			if (r->rank_bytes == 2) {
				if (widen_ranks16((const uint16_t *)p, r->ranks32, n, R))
					goto bad_rank;
			} else {
				const uint32_t *s = (const uint32_t *)p;
				uint32_t bad = 0;
				for (size_t t = 0; t < n; t++) {
					r->ranks32[t] = s[t];
					bad |= s[t] >= R;
				}
				if (bad)
					goto bad_rank;
			}
			c->ranks = r->ranks32;
			if (r->id_bytes == 2) {
				const uint16_t *s = (const uint16_t *)(p + L.ids_off);
				uint32_t bad = widen_ids16(s, r->ids32, m, (uint32_t)E);
				if (bad)
					goto bad_id;
				c->ids16 = s;
				c->ids = r->ids32;
			} else {
				const int32_t *s = (const int32_t *)(p + L.ids_off);
				uint32_t bad = 0;
				for (size_t i = 0; i < m; i++)
					bad |= s[i] < -1 || (s[i] >= 0 && (uint64_t)s[i] >= E);
				if (bad)
					goto bad_id;
				c->ids = s;
			}
			if (r->h.flags & TRACE_F_WEIGHTS)
				c->weights = (const float *)(p + L.weights_off);
			if (r->h.flags & TRACE_F_LOGITS)
				c->logits = (const float *)(p + L.logits_off);
		}
	}
	r->pos = at + CHUNK_HEADER_BYTES + stored_bytes;
	r->have_prev = 1;
	r->prev_step = step;
	r->prev_layer = layer;
	r->prev_kind = kind;
	*out = c;
	return MOE_OK;
bad_rank:
	CHUNK_FAIL(MOE_EFORMAT, "a source rank is out of range (expected below %u)", r->h.ranks);
bad_id:
	CHUNK_FAIL(MOE_EFORMAT, "an expert id is out of range (expected below %u or none)",
		   r->h.experts);
}

/* Checks the index's CRC by streaming it once. */
static enum moe_status check_index(struct trace_reader *r)
{
	unsigned char buf[64 * INDEX_ENTRY_BYTES];
	uint64_t left = INDEX_HEADER_BYTES + r->nchunks * INDEX_ENTRY_BYTES, off = r->index_off;
	uint32_t c = 0;
	enum moe_status st;

	while (left > 0) {
		size_t m = left < sizeof buf ? (size_t)left : sizeof buf;
		if ((st = rd(r, buf, m, off, "the index")) != MOE_OK)
			return st;
		c = (uint32_t)crc32_z(c, buf, m);
		off += m;
		left -= m;
	}
	if (c != r->index_crc)
		MOE_FAIL(MOE_EFORMAT, "%s: index crc mismatch (stored 0x%08x, computed 0x%08x)", r->path,
			 r->index_crc, c);
	r->index_checked = 1;
	return MOE_OK;
}

enum moe_status trace_reader_seek(struct trace_reader *r, uint64_t step, uint32_t layer)
{
	uint64_t lo = 0, hi = r->nchunks;
	unsigned char e[INDEX_ENTRY_BYTES];
	enum moe_status st;

	if (!r->index_checked && (st = check_index(r)) != MOE_OK)
		return st;
	/* First entry whose (step, layer) is not below the target. */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if ((st = rd(r, e, sizeof e, r->index_off + INDEX_HEADER_BYTES + mid * INDEX_ENTRY_BYTES,
			     "the index")) != MOE_OK)
			return st;
		if (sl_cmp(get64(e), get32(e + 8), step, layer) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == r->nchunks)
		MOE_FAIL(MOE_ENOTFOUND, "%s: no chunk of step %llu, layer %u", r->path,
			 (unsigned long long)step, layer);
	if ((st = rd(r, e, sizeof e, r->index_off + INDEX_HEADER_BYTES + lo * INDEX_ENTRY_BYTES,
		     "the index")) != MOE_OK)
		return st;
	if (get64(e) != step || get32(e + 8) != layer)
		MOE_FAIL(MOE_ENOTFOUND, "%s: no chunk of step %llu, layer %u", r->path,
			 (unsigned long long)step, layer);
	if (get64(e + 16) < HEADER_BYTES || get64(e + 16) >= r->index_off)
		MOE_FAIL(MOE_EFORMAT, "%s: index entry %llu: offset %llu outside the chunks", r->path,
			 (unsigned long long)lo, (unsigned long long)get64(e + 16));
	r->pos = get64(e + 16);
	r->have_prev = 0;
	return MOE_OK;
}

enum moe_status trace_reader_rewind(struct trace_reader *r)
{
	r->pos = HEADER_BYTES;
	r->have_prev = 0;
	return MOE_OK;
}

void trace_reader_close(struct trace_reader *r)
{
	if (r == NULL)
		return;
	if (r->fd >= 0)
		close(r->fd);
	ZSTD_freeDCtx(r->dctx);
	free(r->stored);
	free(r->raw);
	free(r->ranks32);
	free(r->ids32);
	free(r->path);
	free(r);
}

void trace_chunk_loads(const struct trace_chunk *c, uint64_t *load)
{
	size_t m;

	if (c->kind == TRACE_CHUNK_COUNTS) {
		for (uint32_t r = 0; r < c->nranks; r++)
			for (uint32_t e = 0; e < c->experts; e++)
				load[e] += c->counts[(size_t)r * c->experts + e];
		return;
	}
	m = c->n * c->k;
	if (c->ids16 != NULL && c->experts <= 1024) {
		/* Four interleaved histograms break the dependency between
		 * increments of one counter (real routing is skewed: OLMoE's layer
		 * 0 sends 98 % of tokens to one expert); "none" (0xFFFF) lands in
		 * the extra bin E.  Counts of one chunk fit in 32 bits (a chunk's
		 * payload is below 2^30 bytes). */
		uint32_t h[4][1025];
		const uint16_t *s = c->ids16;
		const uint32_t E = c->experts;
		size_t i = 0;

		memset(h, 0, sizeof h);
		for (; i + 4 <= m; i += 4) {
			uint32_t a = s[i], b = s[i + 1], d = s[i + 2], e = s[i + 3];
			h[0][a > E ? E : a]++;
			h[1][b > E ? E : b]++;
			h[2][d > E ? E : d]++;
			h[3][e > E ? E : e]++;
		}
		for (; i < m; i++)
			h[0][s[i] > E ? E : s[i]]++;
		for (uint32_t e = 0; e < E; e++)
			load[e] += (uint64_t)h[0][e] + h[1][e] + h[2][e] + h[3][e];
		return;
	}
	if (c->ids16 != NULL) {
		for (size_t i = 0; i < m; i++)
			if (c->ids16[i] != 0xFFFFu)
				load[c->ids16[i]]++;
		return;
	}
	for (size_t i = 0; i < m; i++)
		if (c->ids[i] >= 0)
			load[c->ids[i]]++;
}
