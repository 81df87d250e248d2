/* traces/reroute.c: re-routing a trace's stored logits under another policy
 * (see traces/reroute.h).  One (step, layer) is buffered at a time; its
 * tokens are routed per source rank and written back in their order. */
#include "config.h"
#include "traces/reroute.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void trace_reroute_opts_init(struct trace_reroute_opts *o)
{
	memset(o, 0, sizeof *o);
	o->keep_logits = 1;
}

struct group {
	size_t n, cap, e, k;
	uint64_t step;
	uint32_t layer;
	int have;
	uint32_t *ranks;   /* [cap] */
	float *logits;     /* [cap x E] */
	int32_t *ids;      /* [cap x k] */
	float *w;          /* [cap x k] */
	size_t *order;     /* [cap] token indices sorted by (rank, index) */
	float *glog;       /* [cap x E] one rank's logits, gathered */
	int32_t *gids;     /* [cap x k] */
	float *gw;         /* [cap x k] */
	uint64_t *load;    /* [E] one batch's loads */
	uint64_t *lload;   /* [E] the layer's loads in this step */
};

static void group_free(struct group *g)
{
	free(g->ranks);
	free(g->logits);
	free(g->ids);
	free(g->w);
	free(g->order);
	free(g->glog);
	free(g->gids);
	free(g->gw);
	free(g->load);
	free(g->lload);
}

static int grow(void **p, size_t n, size_t size)
{
	void *q = realloc(*p, n * size);

	if (!q)
		return 0;
	*p = q;
	return 1;
}

static enum moe_status group_reserve(struct group *g, size_t need)
{
	size_t cap = g->cap ? g->cap : 1024;

	if (need <= g->cap)
		return MOE_OK;
	while (cap < need)
		cap *= 2;
	if (cap > SIZE_MAX / sizeof(float) / (g->e > g->k ? g->e : g->k) ||
	    !grow((void **)&g->ranks, cap, sizeof *g->ranks) ||
	    !grow((void **)&g->logits, cap * g->e, sizeof *g->logits) ||
	    !grow((void **)&g->ids, cap * g->k, sizeof *g->ids) ||
	    !grow((void **)&g->w, cap * g->k, sizeof *g->w) ||
	    !grow((void **)&g->order, cap, sizeof *g->order) ||
	    !grow((void **)&g->glog, cap * g->e, sizeof *g->glog) ||
	    !grow((void **)&g->gids, cap * g->k, sizeof *g->gids) ||
	    !grow((void **)&g->gw, cap * g->k, sizeof *g->gw))
		MOE_FAIL(MOE_ENOMEM, "trace reroute: out of memory for %zu tokens", need);
	g->cap = cap;
	return MOE_OK;
}

static const uint32_t *sort_ranks; /* qsort has no context argument in C11 */

static int cmp_order(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	if (sort_ranks[x] != sort_ranks[y])
		return sort_ranks[x] < sort_ranks[y] ? -1 : 1;
	return (x > y) - (x < y);
}

struct ctx {
	struct moe_route_policy pol;
	struct moe_route_workspace *ws;
	size_t ws_tokens;
	struct moe_route_balancer **bal; /* [layers] or NULL */
	struct trace_writer *w;
	const struct trace_reroute_opts *o;
	struct trace_reroute_result *res;
};

static enum moe_status route_group(struct ctx *cx, struct group *g)
{
	const size_t e = g->e, k = g->k;
	enum moe_status st;
	size_t a = 0;

	if (!g->have || g->n == 0)
		return MOE_OK;
	for (size_t t = 0; t < g->n; t++)
		g->order[t] = t;
	sort_ranks = g->ranks;
	qsort(g->order, g->n, sizeof *g->order, cmp_order);
	if (cx->bal)
		cx->pol.bias = moe_route_balancer_bias(cx->bal[g->layer]);
	memset(g->lload, 0, e * sizeof *g->lload);
	while (a < g->n) {
		size_t b = a;
		struct moe_route_out out = {g->gids, g->gw, g->load, NULL, 0, 0};

		while (b < g->n && g->ranks[g->order[b]] == g->ranks[g->order[a]])
			b++;
		if (b - a > cx->ws_tokens) {
			moe_route_workspace_free(cx->ws);
			cx->ws = NULL;
			if ((st = moe_route_workspace_alloc(&cx->pol, b - a, &cx->ws)) != MOE_OK)
				return st;
			cx->ws_tokens = b - a;
		}
		for (size_t i = a; i < b; i++)
			memcpy(g->glog + (i - a) * e, g->logits + g->order[i] * e, e * sizeof *g->glog);
		if ((st = moe_route_batch(&cx->pol, cx->ws, g->glog, b - a, &out)) != MOE_OK) {
			char msg[512];

			snprintf(msg, sizeof msg, "%s", moe_errmsg());
			return moe_error(st, "step %llu layer %u rank %u: %s",
					 (unsigned long long)g->step, g->layer, g->ranks[g->order[a]],
					 msg);
		}
		for (size_t i = a; i < b; i++) {
			memcpy(g->ids + g->order[i] * k, g->gids + (i - a) * k, k * sizeof *g->ids);
			memcpy(g->w + g->order[i] * k, g->gw + (i - a) * k, k * sizeof *g->w);
		}
		for (size_t i = 0; i < e; i++)
			g->lload[i] += g->load[i];
		if (cx->res) {
			if (cx->res->dropped)
				cx->res->dropped[g->layer] += out.n_dropped;
			if (cx->res->rerouted)
				cx->res->rerouted[g->layer] += out.n_rerouted;
		}
		a = b;
	}
	if (cx->bal)
		moe_route_balancer_update(cx->bal[g->layer], g->lload);
	if (cx->res && cx->res->tokens)
		cx->res->tokens[g->layer] += g->n;
	st = trace_writer_add_tokens(cx->w, g->step, g->layer, g->n, g->ranks, g->ids, g->w,
				     cx->o->keep_logits ? g->logits : NULL);
	g->n = 0;
	g->have = 0;
	return st;
}

enum moe_status trace_reroute(const char *in, const char *out, const struct trace_reroute_opts *o,
			      struct trace_reroute_result *res)
{
	struct trace_reader *rd = NULL;
	const struct trace_header *h;
	const struct trace_chunk *c;
	struct trace_header nh;
	struct trace_writer_opts wo = {o->zstd_level, 0};
	struct group g;
	struct ctx cx;
	enum moe_status st;
	uint32_t layers = 0;

	memset(&g, 0, sizeof g);
	memset(&cx, 0, sizeof cx);
	if (!o->policy)
		MOE_FAIL(MOE_EINVAL, "trace reroute: no routing policy given");
	if ((st = moe_route_policy_validate(o->policy)) != MOE_OK)
		return st;
	if ((st = trace_reader_open(in, &rd)) != MOE_OK)
		return st;
	h = trace_reader_header(rd);
	layers = h->layers;
	if ((h->flags & TRACE_F_COUNTS) || !(h->flags & TRACE_F_LOGITS)) {
		st = moe_error(MOE_EUNSUPPORTED, "%s: the trace holds no router logits (%s), and "
			       "re-routing needs them: import the logits, or generate with --logits",
			       in, (h->flags & TRACE_F_COUNTS) ? "counts only" : "expert ids only");
		goto out;
	}
	if ((uint32_t)o->policy->experts != h->experts) {
		st = moe_error(MOE_EINVAL, "trace reroute: the policy routes %d experts, %s has %u",
			       o->policy->experts, in, h->experts);
		goto out;
	}
	if (!(o->balance_rate >= 0)) {
		st = moe_error(MOE_EINVAL, "trace reroute: balance rate %g: expected >= 0",
			       o->balance_rate);
		goto out;
	}
	cx.pol = *o->policy;
	cx.o = o;
	cx.res = res;
	if (o->balance_rate > 0) {
		cx.bal = calloc(h->layers, sizeof *cx.bal);
		if (!cx.bal) {
			st = moe_error(MOE_ENOMEM, "trace reroute: out of memory");
			goto out;
		}
		for (uint32_t l = 0; l < h->layers; l++)
			if ((st = moe_route_balancer_new((int)h->experts, o->balance_rate, &cx.bal[l])) !=
			    MOE_OK)
				goto out;
	}
	g.e = h->experts;
	g.k = (size_t)cx.pol.k;
	g.load = malloc(g.e * sizeof *g.load);
	g.lload = malloc(g.e * sizeof *g.lload);
	if (!g.load || !g.lload) {
		st = moe_error(MOE_ENOMEM, "trace reroute: out of memory");
		goto out;
	}
	if (res)
		for (uint32_t l = 0; l < h->layers; l++) {
			if (res->tokens)
				res->tokens[l] = 0;
			if (res->dropped)
				res->dropped[l] = 0;
			if (res->rerouted)
				res->rerouted[l] = 0;
		}
	nh = *h;
	nh.top_k = (uint32_t)cx.pol.k;
	nh.flags = TRACE_F_WEIGHTS | (o->keep_logits ? TRACE_F_LOGITS : 0);
	if ((st = trace_writer_open(out, &nh, &wo, &cx.w)) != MOE_OK)
		goto out;
	while ((st = trace_reader_next(rd, &c)) == MOE_OK && c) {
		if (g.have && (c->step != g.step || c->layer != g.layer))
			if ((st = route_group(&cx, &g)) != MOE_OK)
				goto out;
		if ((st = group_reserve(&g, g.n + c->n)) != MOE_OK)
			goto out;
		memcpy(g.ranks + g.n, c->ranks, c->n * sizeof *g.ranks);
		memcpy(g.logits + g.n * g.e, c->logits, c->n * g.e * sizeof *g.logits);
		g.n += c->n;
		g.step = c->step;
		g.layer = c->layer;
		g.have = 1;
	}
	if (st != MOE_OK || (st = route_group(&cx, &g)) != MOE_OK)
		goto out;
	st = trace_writer_close(cx.w);
	cx.w = NULL;
out:
	trace_writer_abort(cx.w);
	trace_reader_close(rd);
	moe_route_workspace_free(cx.ws);
	if (cx.bal)
		for (uint32_t l = 0; l < layers; l++)
			moe_route_balancer_free(cx.bal[l]);
	free(cx.bal);
	group_free(&g);
	return st;
}
