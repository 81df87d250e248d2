/* traces/trace.c: the .moetrace header, the streaming writer and reader, and
 * the per-chunk helpers.  Layout in docs/trace-format.md. */
#include "config.h"
#include "traces/trace.h"

#include <string.h>

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
	if (memchr(h->model, '\0', sizeof h->model) == NULL)
		MOE_FAIL(MOE_EFORMAT, "%s: header model name: not NUL-terminated within %d bytes",
			 what, TRACE_MODEL_MAX);
	return MOE_OK;
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
