/* traces/stats.c: load-balance statistics of a router trace in one
 * streaming pass (definitions in traces/stats.h). */
#include "config.h"
#include "traces/stats.h"

#include "moe/route.h"

#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Pair counts are kept only while they fit in this many bytes in all. */
#define PAIRS_BUDGET_BYTES (512ull << 20)

void trace_stats_opts_init(struct trace_stats_opts *o)
{
	memset(o, 0, sizeof *o);
	o->placement = MOE_PLACE_CONTIGUOUS;
	o->top_pairs = 10;
}

uint32_t trace_stats_ep_rank(enum moe_placement p, uint32_t experts, uint32_t ep, uint32_t e)
{
	if (p == MOE_PLACE_ROUND_ROBIN)
		return e % ep;
	return e / (experts / ep);
}

void trace_stats_free(struct trace_stats *s)
{
	if (!s)
		return;
	if (s->layer)
		for (uint32_t l = 0; l < s->layers; l++) {
			free(s->layer[l].load);
			free(s->layer[l].pairs);
			free(s->layer[l].ep_tokens);
		}
	free(s->layer);
	free(s);
}

/* Working state of one pass. */
struct acc {
	size_t e, k, r, l;
	uint64_t *pairs;      /* [L x E(E-1)/2] or NULL */
	size_t npair;         /* E(E-1)/2 */
	double *psum;         /* [L x E] sum over tokens of softmax(l) */
	double *zsum;         /* [L] sum of logsumexp^2 */
	uint64_t *ltokens;    /* [L] tokens that had logits */
	double *smo_sum;      /* [L] sum over steps of per-step max/mean */
	uint32_t *er;         /* [E] EP rank of each expert */
	uint64_t *cur;        /* [R x E] loads of the current (step, layer) per source rank */
	uint64_t *cur_tokens; /* [R] its tokens per source rank */
	uint64_t *tot;        /* [E] scratch: cur summed over ranks */
	uint64_t cur_step;
	uint32_t cur_layer;
	int have_cur;
	float *prob;          /* [E] scratch */
	double *dl;           /* [E] scratch */
	uint32_t *seen;       /* [k] EP ranks of one token */
	struct moe_route_policy cap; /* for moe_route_capacity */
};

static void acc_free(struct acc *a)
{
	free(a->pairs);
	free(a->psum);
	free(a->zsum);
	free(a->ltokens);
	free(a->smo_sum);
	free(a->er);
	free(a->cur);
	free(a->cur_tokens);
	free(a->tot);
	free(a->prob);
	free(a->dl);
	free(a->seen);
}

/* Closes the current (step, layer) group: per-step imbalance, and the
 * drops of each source rank's batch at the capacity factor. */
static void flush_group(struct trace_stats *s, struct acc *a)
{
	struct trace_layer_stats *ls;
	uint64_t sum = 0, mx = 0;

	if (!a->have_cur)
		return;
	ls = &s->layer[a->cur_layer];
	memset(a->tot, 0, a->e * sizeof *a->tot);
	for (size_t r = 0; r < a->r; r++)
		for (size_t i = 0; i < a->e; i++)
			a->tot[i] += a->cur[r * a->e + i];
	for (size_t i = 0; i < a->e; i++) {
		sum += a->tot[i];
		mx = a->tot[i] > mx ? a->tot[i] : mx;
	}
	ls->steps++;
	if (sum > 0)
		a->smo_sum[a->cur_layer] += (double)mx / ((double)sum / (double)a->e);
	if (s->opts.capacity_factor > 0) {
		a->cap.capacity_factor = s->opts.capacity_factor;
		for (size_t r = 0; r < a->r; r++) {
			const uint64_t *cr = a->cur + r * a->e;
			size_t c;

			if (s->header.flags & TRACE_F_COUNTS) {
				/* n k = the rank's total count: ceil(cf * total / E) */
				uint64_t tr = 0;

				for (size_t i = 0; i < a->e; i++)
					tr += cr[i];
				a->cap.k = 1;
				c = moe_route_capacity(&a->cap, (size_t)tr);
			} else {
				a->cap.k = (int)a->k;
				c = moe_route_capacity(&a->cap, (size_t)a->cur_tokens[r]);
			}
			for (size_t i = 0; i < a->e; i++)
				if (cr[i] > c)
					ls->dropped += cr[i] - c;
		}
	}
	memset(a->cur, 0, a->r * a->e * sizeof *a->cur);
	memset(a->cur_tokens, 0, a->r * sizeof *a->cur_tokens);
	a->have_cur = 0;
}

static void add_tokens(struct trace_stats *s, struct acc *a, const struct trace_chunk *c)
{
	struct trace_layer_stats *ls = &s->layer[c->layer];
	const size_t e = a->e, k = a->k, ep = s->opts.ep;
	uint64_t *pairs = a->pairs ? a->pairs + (size_t)c->layer * a->npair : NULL;

	ls->tokens += c->n;
	for (size_t t = 0; t < c->n; t++) {
		const int32_t *id = c->ids + t * k;
		uint64_t *cur = a->cur + (size_t)c->ranks[t] * e;
		size_t nseen = 0;

		a->cur_tokens[c->ranks[t]]++;
		for (size_t j = 0; j < k; j++) {
			if (id[j] < 0)
				continue;
			cur[id[j]]++;
			ls->load[id[j]]++;
			ls->slots++;
			if (pairs)
				for (size_t j2 = j + 1; j2 < k; j2++) {
					size_t x = (size_t)id[j], y = (size_t)id[j2];

					if (id[j2] < 0 || x == y)
						continue;
					if (x > y) {
						size_t tmp = x;

						x = y;
						y = tmp;
					}
					pairs[x * e - x * (x + 1) / 2 + (y - x - 1)]++;
				}
			if (ep) {
				uint32_t g = a->er[id[j]];
				int dup = 0;

				for (size_t q = 0; q < nseen; q++)
					dup |= a->seen[q] == g;
				if (!dup) {
					a->seen[nseen++] = g;
					ls->ep_tokens[(size_t)c->ranks[t] * ep + g]++;
				}
			}
		}
		if (c->logits) {
			const float *l = c->logits + t * e;
			double m = l[0], z = 0;

			for (size_t i = 1; i < e; i++)
				m = l[i] > m ? l[i] : m;
			for (size_t i = 0; i < e; i++)
				z += (a->dl[i] = exp((double)l[i] - m));
			for (size_t i = 0; i < e; i++)
				a->psum[(size_t)c->layer * e + i] += a->dl[i] / z;
			z = m + log(z);
			a->zsum[c->layer] += z * z;
			a->ltokens[c->layer]++;
		}
	}
}

static void add_counts(struct trace_stats *s, struct acc *a, const struct trace_chunk *c)
{
	struct trace_layer_stats *ls = &s->layer[c->layer];
	const size_t e = a->e, ep = s->opts.ep;
	uint64_t total = 0;

	for (size_t r = 0; r < a->r; r++)
		for (size_t i = 0; i < e; i++) {
			uint64_t v = c->counts[r * e + i];

			a->cur[r * e + i] += v;
			ls->load[i] += v;
			total += v;
			if (ep)
				ls->ep_tokens[r * ep + a->er[i]] += v;
		}
	ls->slots += total;
	ls->tokens += total / a->k;
}

static int cmp_pair(const void *x, const void *y)
{
	const struct trace_stats_pair *p = x, *q = y;

	if (p->count != q->count)
		return p->count > q->count ? -1 : 1;
	if (p->a != q->a)
		return p->a < q->a ? -1 : 1;
	return (p->b > q->b) - (p->b < q->b);
}

/* Per-layer figures from the accumulated loads. */
static enum moe_status finish(struct trace_stats *s, struct acc *a)
{
	const size_t e = a->e;

	for (uint32_t l = 0; l < s->layers; l++) {
		struct trace_layer_stats *ls = &s->layer[l];
		double sum = 0, mx = 0, mean, h = 0;

		for (size_t i = 0; i < e; i++) {
			a->dl[i] = (double)ls->load[i];
			sum += a->dl[i];
			mx = a->dl[i] > mx ? a->dl[i] : mx;
		}
		mean = sum / (double)e;
		if (sum > 0) {
			ls->max_over_mean = mx / mean;
			ls->cv = e > 1 ? sqrt(gsl_stats_variance_with_fixed_mean(a->dl, 1, e, mean)) /
					 mean : 0;
			for (size_t i = 0; i < e; i++)
				if (a->dl[i] > 0)
					h -= a->dl[i] / sum * log2(a->dl[i] / sum);
			ls->entropy_bits = h;
			ls->entropy_norm = e > 1 ? h / log2((double)e) : 1;
		}
		ls->step_max_over_mean = ls->steps ? a->smo_sum[l] / (double)ls->steps : 0;
		if (a->ltokens[l] > 0) {
			double aux = 0;

			ls->has_logits = 1;
			for (size_t i = 0; i < e; i++)
				aux += ((double)ls->load[i] / (double)ls->tokens) *
				       (a->psum[(size_t)l * e + i] / (double)a->ltokens[l]);
			ls->aux_loss = (double)e * aux;
			ls->z_loss = a->zsum[l] / (double)a->ltokens[l];
		}
		if (a->pairs && s->opts.top_pairs > 0) {
			const uint64_t *pc = a->pairs + (size_t)l * a->npair;
			size_t nz = 0, idx = 0;

			for (size_t x = 0; x < a->npair; x++)
				nz += pc[x] > 0;
			ls->pairs = malloc((nz ? nz : 1) * sizeof *ls->pairs);
			if (!ls->pairs)
				MOE_FAIL(MOE_ENOMEM, "trace stats: out of memory for pairs");
			for (size_t x = 0; x + 1 < e; x++)
				for (size_t y = x + 1; y < e; y++, idx++)
					if (pc[idx] > 0)
						ls->pairs[ls->npairs++] = (struct trace_stats_pair){
							(uint32_t)x, (uint32_t)y, pc[idx]};
			qsort(ls->pairs, ls->npairs, sizeof *ls->pairs, cmp_pair);
			if (ls->npairs > s->opts.top_pairs)
				ls->npairs = s->opts.top_pairs;
		}
	}
	return MOE_OK;
}

enum moe_status trace_stats_compute(const char *path, const struct trace_stats_opts *o,
				    struct trace_stats **out)
{
	struct trace_reader *rd = NULL;
	struct trace_stats *s = NULL;
	struct acc a;
	const struct trace_chunk *c;
	const struct trace_header *h;
	enum moe_status st;

	*out = NULL;
	memset(&a, 0, sizeof a);
	if ((st = trace_reader_open(path, &rd)) != MOE_OK)
		return st;
	h = trace_reader_header(rd);
	a.e = h->experts;
	a.k = h->top_k;
	a.r = h->ranks;
	a.l = h->layers;
	if (o->ep) {
		if (h->experts % o->ep != 0) {
			st = moe_error(MOE_EINVAL, "trace stats: --ep %u does not divide the %u experts "
				       "of %s", o->ep, h->experts, path);
			goto err;
		}
		if (!o->expert_rank && o->placement != MOE_PLACE_CONTIGUOUS &&
		    o->placement != MOE_PLACE_ROUND_ROBIN) {
			st = moe_error(MOE_EINVAL, "trace stats: placement %s: expected contiguous or "
				       "round-robin", moe_placement_name(o->placement));
			goto err;
		}
		if ((size_t)a.r > SIZE_MAX / 8 / o->ep / a.l) {
			st = moe_error(MOE_ENOMEM, "trace stats: %zu ranks x %u EP ranks is too large",
				       a.r, o->ep);
			goto err;
		}
	}
	s = calloc(1, sizeof *s);
	if (!s)
		goto nomem;
	s->header = *h;
	s->opts = *o;
	s->layers = h->layers;
	s->layer = calloc(a.l, sizeof *s->layer);
	a.psum = calloc(a.l * a.e, sizeof *a.psum);
	a.zsum = calloc(a.l, sizeof *a.zsum);
	a.ltokens = calloc(a.l, sizeof *a.ltokens);
	a.smo_sum = calloc(a.l, sizeof *a.smo_sum);
	a.er = calloc(a.e, sizeof *a.er);
	a.cur = a.r <= SIZE_MAX / 8 / a.e ? calloc(a.r * a.e, sizeof *a.cur) : NULL;
	a.cur_tokens = calloc(a.r, sizeof *a.cur_tokens);
	a.tot = calloc(a.e, sizeof *a.tot);
	a.prob = calloc(a.e, sizeof *a.prob);
	a.dl = calloc(a.e, sizeof *a.dl);
	a.seen = calloc(a.k, sizeof *a.seen);
	if (!s->layer || !a.psum || !a.zsum || !a.ltokens || !a.smo_sum || !a.er || !a.cur || !a.cur_tokens || !a.tot ||
	    !a.prob || !a.dl || !a.seen)
		goto nomem;
	for (uint32_t l = 0; l < s->layers; l++) {
		s->layer[l].layer = l;
		s->layer[l].load = calloc(a.e, sizeof *s->layer[l].load);
		if (o->ep)
			s->layer[l].ep_tokens = calloc(a.r * o->ep, sizeof *s->layer[l].ep_tokens);
		if (!s->layer[l].load || (o->ep && !s->layer[l].ep_tokens))
			goto nomem;
	}
	for (uint32_t i = 0; i < h->experts && o->ep; i++) {
		int32_t g = o->expert_rank ? o->expert_rank[i]
					   : (int32_t)trace_stats_ep_rank(o->placement, h->experts,
									  o->ep, i);

		if (g < 0 || (uint32_t)g >= o->ep) {
			st = moe_error(MOE_EINVAL, "trace stats: expert %u placed on EP rank %d: "
				       "expected 0 to %u", i, g, o->ep - 1);
			goto err;
		}
		a.er[i] = (uint32_t)g;
	}
	a.npair = a.e * (a.e - 1) / 2;
	if (!(h->flags & TRACE_F_COUNTS) && a.e >= 2 && a.k >= 2 && o->top_pairs > 0 &&
	    a.e <= TRACE_STATS_PAIRS_MAX_E &&
	    (unsigned long long)a.l * a.npair * 8 <= PAIRS_BUDGET_BYTES) {
		a.pairs = calloc(a.l * a.npair, sizeof *a.pairs);
		if (!a.pairs)
			goto nomem;
	}
	moe_route_policy_init(&a.cap, (int)a.e, (int)a.k);
	while ((st = trace_reader_next(rd, &c)) == MOE_OK && c) {
		if (!a.have_cur || c->step != a.cur_step || c->layer != a.cur_layer) {
			flush_group(s, &a);
			a.have_cur = 1;
			a.cur_step = c->step;
			a.cur_layer = c->layer;
		}
		if (c->kind == TRACE_CHUNK_COUNTS)
			add_counts(s, &a, c);
		else
			add_tokens(s, &a, c);
	}
	if (st != MOE_OK)
		goto err;
	flush_group(s, &a);
	if ((st = finish(s, &a)) != MOE_OK)
		goto err;
	trace_reader_close(rd);
	acc_free(&a);
	*out = s;
	return MOE_OK;
nomem:
	st = moe_error(MOE_ENOMEM, "trace stats: %s: out of memory", path);
err:
	trace_reader_close(rd);
	acc_free(&a);
	trace_stats_free(s);
	return st;
}
