/* traces/gen.c: synthetic router traces (see traces/gen.h for the model):
 * per (step, layer) an expert popularity, per token Gumbel-perturbed log
 * popularities as router logits, routed by the shared policy (moe/route.h)
 * and streamed to a .moetrace writer.  Also the Zipf fit used to shape the
 * generator after real routing statistics.
 */
#include "config.h"
#include "traces/gen.h"

#include <gsl/gsl_fit.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Floor on a popularity before its log, so that an expert a Dirichlet draw
 * left at 0 still has a finite logit (it is then practically never picked). */
#define POP_FLOOR 1e-30
/* Added to every Dirichlet parameter of the drift so that none is 0. */
#define DRIFT_FLOOR 0.01

void trace_gen_opts_init(struct trace_gen_opts *o)
{
	memset(o, 0, sizeof *o);
	o->layers = 1;
	o->experts = 8;
	o->top_k = 2;
	o->ranks = 1;
	o->steps = 1;
	o->tokens_per_rank = 1024;
}

static enum moe_status check_opts(const struct trace_gen_opts *o)
{
	if (o->layers < 1 || o->layers > TRACE_MAX_LAYERS)
		MOE_FAIL(MOE_EINVAL, "trace gen: layers %u: expected 1 to %u", o->layers,
			 TRACE_MAX_LAYERS);
	if (o->experts < 1 || o->experts > 65536)
		MOE_FAIL(MOE_EINVAL, "trace gen: experts %u: expected 1 to 65536", o->experts);
	if (o->top_k < 1 || o->top_k > o->experts)
		MOE_FAIL(MOE_EINVAL, "trace gen: top-k %u: expected 1 to experts (%u)", o->top_k,
			 o->experts);
	if (o->ranks < 1 || o->ranks > 65536)
		MOE_FAIL(MOE_EINVAL, "trace gen: ranks %u: expected 1 to 65536", o->ranks);
	if (o->steps < 1 || o->steps > 1000000000ull)
		MOE_FAIL(MOE_EINVAL, "trace gen: steps %llu: expected 1 to 1e9",
			 (unsigned long long)o->steps);
	if (o->tokens_per_rank < 1 || o->tokens_per_rank > (1u << 24))
		MOE_FAIL(MOE_EINVAL, "trace gen: tokens per rank %u: expected 1 to 16777216",
			 o->tokens_per_rank);
	if (!(o->zipf_s >= 0 && o->zipf_s <= 100))
		MOE_FAIL(MOE_EINVAL, "trace gen: zipf exponent %g: expected 0 to 100", o->zipf_s);
	if (!(o->drift >= 0 && isfinite(o->drift)))
		MOE_FAIL(MOE_EINVAL, "trace gen: drift %g: expected a finite value >= 0", o->drift);
	if (!(o->rank_skew >= 0 && o->rank_skew <= 1))
		MOE_FAIL(MOE_EINVAL, "trace gen: rank skew %g: expected 0 to 1", o->rank_skew);
	if (!(o->layer_corr >= 0 && o->layer_corr <= 1))
		MOE_FAIL(MOE_EINVAL, "trace gen: layer correlation %g: expected 0 to 1",
			 o->layer_corr);
	if (o->popularity)
		for (size_t l = 0; l < o->layers; l++) {
			double sum = 0;

			for (size_t i = 0; i < o->experts; i++) {
				double v = o->popularity[l * o->experts + i];

				if (!(v >= 0) || !isfinite(v))
					MOE_FAIL(MOE_EINVAL, "trace gen: popularity of layer %zu expert "
						 "%zu is %g: expected a finite value >= 0", l, i, v);
				sum += v;
			}
			if (!(sum > 0))
				MOE_FAIL(MOE_EINVAL, "trace gen: popularity of layer %zu is all zero", l);
		}
	if (o->layer_matrix)
		for (size_t x = 0; x < (size_t)o->experts * o->experts; x++)
			if (!(o->layer_matrix[x] >= 0) || !isfinite(o->layer_matrix[x]))
				MOE_FAIL(MOE_EINVAL, "trace gen: layer matrix [%zu][%zu] = %g: expected a "
					 "finite weight >= 0", x / o->experts, x % o->experts,
					 o->layer_matrix[x]);
	if (o->counts && o->logits)
		MOE_FAIL(MOE_EINVAL, "trace gen: a count-level trace cannot hold logits");
	if (o->policy && ((uint32_t)o->policy->experts != o->experts ||
			  (uint32_t)o->policy->k != o->top_k))
		MOE_FAIL(MOE_EINVAL, "trace gen: the routing policy has %d experts and k %d, the "
			 "trace %u and %u", o->policy->experts, o->policy->k, o->experts, o->top_k);
	return MOE_OK;
}

/* Zipf weights 1/(j+1)^s placed on experts in the order of perm, normalized. */
static void zipf_popularity(double s, const size_t *perm, size_t e, double *pi)
{
	double z = 0;

	for (size_t j = 0; j < e; j++) {
		double v = pow((double)(j + 1), -s);

		pi[perm ? perm[j] : j] = v;
		z += v;
	}
	for (size_t i = 0; i < e; i++)
		pi[i] /= z;
}

/* Gumbel-perturbed log popularities for n tokens: out [n x e]. */
static void gumbel_logits(gsl_rng *rng, const float *logpi, size_t e, size_t n, float *out)
{
	for (size_t t = 0; t < n; t++)
		for (size_t i = 0; i < e; i++)
			out[t * e + i] = logpi[i] - (float)log(-log(gsl_rng_uniform_pos(rng)));
}

struct gen {
	size_t e, k, r, t, l;
	double *pi;        /* [L x E] popularity per layer, this step */
	size_t *perm;      /* [E] scratch permutation */
	size_t *rank_perm; /* [R x E] P_r (rank skew) */
	size_t *follow;    /* [L x E] f_l (layer correlation) */
	double *alpha;     /* [E] Dirichlet parameters */
	double *theta;     /* [E] */
	float *logpi;      /* [E] */
	float *logits;     /* [T x E] */
	int32_t *ids;      /* [T x k] */
	float *weights;    /* [T x k] */
	uint32_t *ranks;   /* [T] */
	int32_t *prev;     /* [R x T] first choice at the previous layer */
	uint64_t *counts;  /* [R x E] */
	gsl_ran_discrete_t **rows; /* [E] the layer matrix's rows, NULL where all zero */
};

static void gen_free(struct gen *g)
{
	free(g->pi);
	free(g->perm);
	free(g->rank_perm);
	free(g->follow);
	free(g->alpha);
	free(g->theta);
	free(g->logpi);
	free(g->logits);
	free(g->ids);
	free(g->weights);
	free(g->ranks);
	free(g->prev);
	free(g->counts);
	if (g->rows)
		for (size_t i = 0; i < g->e; i++)
			gsl_ran_discrete_free(g->rows[i]);
	free(g->rows);
}

static int gen_alloc(struct gen *g, const struct trace_gen_opts *o)
{
	memset(g, 0, sizeof *g);
	g->e = o->experts;
	g->k = o->top_k;
	g->r = o->ranks;
	g->t = o->tokens_per_rank;
	g->l = o->layers;
	g->pi = malloc(g->l * g->e * sizeof *g->pi);
	g->perm = malloc(g->e * sizeof *g->perm);
	g->rank_perm = malloc(g->r * g->e * sizeof *g->rank_perm);
	g->follow = malloc(g->l * g->e * sizeof *g->follow);
	g->alpha = malloc(g->e * sizeof *g->alpha);
	g->theta = malloc(g->e * sizeof *g->theta);
	g->logpi = malloc(g->e * sizeof *g->logpi);
	g->logits = malloc(g->t * g->e * sizeof *g->logits);
	g->ids = malloc(g->t * g->k * sizeof *g->ids);
	g->weights = malloc(g->t * g->k * sizeof *g->weights);
	g->ranks = malloc(g->t * sizeof *g->ranks);
	g->prev = malloc(g->r * g->t * sizeof *g->prev);
	g->counts = malloc(g->r * g->e * sizeof *g->counts);
	if (!(g->pi && g->perm && g->rank_perm && g->follow && g->alpha && g->theta && g->logpi &&
	      g->logits && g->ids && g->weights && g->ranks && g->prev && g->counts))
		return 0;
	if (o->layer_matrix) {
		g->rows = calloc(g->e, sizeof *g->rows);
		if (!g->rows)
			return 0;
		for (size_t a = 0; a < g->e; a++) {
			const double *row = o->layer_matrix + a * g->e;
			double sum = 0;

			for (size_t b = 0; b < g->e; b++)
				sum += row[b];
			if (sum > 0 && !(g->rows[a] = gsl_ran_discrete_preproc(g->e, row)))
				return 0;
		}
	}
	return 1;
}

static void identity(size_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = i;
}

/* Popularity of rank r at layer l into g->logpi (as float logs). */
static void rank_logpi(struct gen *g, const struct trace_gen_opts *o, size_t l, size_t r)
{
	const double *pi = g->pi + l * g->e;
	const size_t *pr = g->rank_perm + r * g->e;
	const double sg = o->rank_skew;

	for (size_t i = 0; i < g->e; i++) {
		double v = (1 - sg) * pi[i] + sg * pi[pr[i]];

		g->logpi[i] = (float)log(v > POP_FLOOR ? v : POP_FLOOR);
	}
}

enum moe_status trace_gen_write(const struct trace_gen_opts *o, gsl_rng *rng, const char *path,
				const struct moe_progress *progress)
{
	struct trace_header h;
	struct trace_writer *w = NULL;
	struct trace_writer_opts wo = {o->zstd_level, 0};
	struct moe_route_policy pol;
	struct moe_route_workspace *ws = NULL;
	struct gen g;
	enum moe_status st = check_opts(o);
	unsigned long long done = 0, total;

	if (st != MOE_OK)
		return st;
	if (!gen_alloc(&g, o)) {
		gen_free(&g);
		MOE_FAIL(MOE_ENOMEM, "trace gen: out of memory for %u tokens x %u experts",
			 o->tokens_per_rank, o->experts);
	}
	if (o->policy) {
		pol = *o->policy;
	} else {
		moe_route_policy_init(&pol, (int)o->experts, (int)o->top_k);
	}
	if ((st = moe_route_workspace_alloc(&pol, g.t, &ws)) != MOE_OK)
		goto out;
	/* fixed draws first: per layer popularity order and follow map, per
	 * rank the skew permutation */
	for (size_t l = 0; l < g.l; l++) {
		identity(g.perm, g.e);
		gsl_ran_shuffle(rng, g.perm, g.e, sizeof *g.perm);
		if (o->popularity) {
			double sum = 0;

			for (size_t i = 0; i < g.e; i++)
				sum += o->popularity[l * g.e + i];
			for (size_t i = 0; i < g.e; i++)
				g.pi[l * g.e + i] = o->popularity[l * g.e + i] / sum;
		} else {
			zipf_popularity(o->zipf_s, g.perm, g.e, g.pi + l * g.e);
		}
		identity(g.follow + l * g.e, g.e);
		gsl_ran_shuffle(rng, g.follow + l * g.e, g.e, sizeof *g.follow);
	}
	for (size_t r = 0; r < g.r; r++) {
		identity(g.rank_perm + r * g.e, g.e);
		if (o->rank_skew > 0)
			gsl_ran_shuffle(rng, g.rank_perm + r * g.e, g.e, sizeof *g.rank_perm);
	}
	trace_header_init(&h, o->layers, o->experts, o->top_k, o->ranks);
	h.flags = o->counts ? TRACE_F_COUNTS : TRACE_F_WEIGHTS | (o->logits ? TRACE_F_LOGITS : 0);
	h.steps = o->steps;
	snprintf(h.model, sizeof h.model, "%s", o->model);
	if ((st = trace_writer_open(path, &h, &wo, &w)) != MOE_OK)
		goto out;
	total = (unsigned long long)o->steps * g.l;
	for (uint64_t s = 0; s < o->steps; s++) {
		for (size_t l = 0; l < g.l; l++) {
			double *pi = g.pi + l * g.e;
			char what[64];

			if (s > 0 && o->drift > 0) {
				for (size_t i = 0; i < g.e; i++)
					g.alpha[i] = o->drift * pi[i] + DRIFT_FLOOR;
				gsl_ran_dirichlet(rng, g.e, g.alpha, g.theta);
				memcpy(pi, g.theta, g.e * sizeof *pi);
			}
			if (o->counts)
				memset(g.counts, 0, g.r * g.e * sizeof *g.counts);
			for (size_t r = 0; r < g.r; r++) {
				struct moe_route_out ro = {g.ids, g.weights, NULL, NULL, 0, 0};
				int32_t *prev = g.prev + r * g.t;

				rank_logpi(&g, o, l, r);
				gumbel_logits(rng, g.logpi, g.e, g.t, g.logits);
				if (l > 0 && o->layer_corr > 0)
					for (size_t t = 0; t < g.t; t++) {
						float *lt = g.logits + t * g.e, mx = lt[0];
						int follows = gsl_rng_uniform(rng) < o->layer_corr;

						size_t to;

						if (!follows || prev[t] < 0)
							continue;
						if (g.rows) {
							if (!g.rows[prev[t]])
								continue;
							to = gsl_ran_discrete(rng, g.rows[prev[t]]);
						} else {
							to = g.follow[l * g.e + (size_t)prev[t]];
						}
						for (size_t i = 1; i < g.e; i++)
							mx = lt[i] > mx ? lt[i] : mx;
						lt[to] = mx + 1;
					}
				if ((st = moe_route_batch(&pol, ws, g.logits, g.t, &ro)) != MOE_OK)
					goto out;
				for (size_t t = 0; t < g.t; t++) {
					prev[t] = g.ids[t * g.k];
					g.ranks[t] = (uint32_t)r;
				}
				if (o->counts) {
					for (size_t x = 0; x < g.t * g.k; x++)
						if (g.ids[x] >= 0)
							g.counts[r * g.e + (size_t)g.ids[x]]++;
				} else if ((st = trace_writer_add_tokens(w, s, (uint32_t)l, g.t, g.ranks,
									 g.ids, g.weights,
									 o->logits ? g.logits : NULL)) !=
					   MOE_OK) {
					goto out;
				}
			}
			if (o->counts &&
			    (st = trace_writer_add_counts(w, s, (uint32_t)l, g.counts)) != MOE_OK)
				goto out;
			snprintf(what, sizeof what, "step %llu layer %zu", (unsigned long long)s, l);
			moe_progress_report(progress, ++done, total, what);
		}
	}
	st = trace_writer_close(w);
	w = NULL;
out:
	trace_writer_abort(w);
	moe_route_workspace_free(ws);
	gen_free(&g);
	return st;
}

static int cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x < y) - (x > y);
}

enum moe_status trace_gen_fit_zipf(const uint64_t *load, uint32_t n, double *s, double *r2)
{
	double *x = malloc((n ? n : 1) * sizeof *x), *y = malloc((n ? n : 1) * sizeof *y);
	double c0, c1, cov00, cov01, cov11, sumsq, tss;
	size_t m = 0;

	if (!x || !y) {
		free(x);
		free(y);
		MOE_FAIL(MOE_ENOMEM, "zipf fit: out of memory");
	}
	for (uint32_t i = 0; i < n; i++)
		if (load[i] > 0)
			y[m++] = (double)load[i];
	if (m < 2) {
		free(x);
		free(y);
		MOE_FAIL(MOE_EINVAL, "zipf fit: %zu positive loads, expected at least 2", m);
	}
	qsort(y, m, sizeof *y, cmp_desc);
	for (size_t j = 0; j < m; j++) {
		x[j] = log((double)(j + 1));
		y[j] = log(y[j]);
	}
	gsl_fit_linear(x, 1, y, 1, m, &c0, &c1, &cov00, &cov01, &cov11, &sumsq);
	tss = gsl_stats_tss(y, 1, m);
	if (s)
		*s = -c1;
	if (r2)
		*r2 = tss > 0 ? 1 - sumsq / tss : 1;
	free(x);
	free(y);
	return MOE_OK;
}

/* Sorted-load Zipf exponent of top-k routing under popularity exponent s,
 * over the fixed Gumbel draws g [n x e]. */
static enum moe_status loads_exponent(double s, const float *gum, size_t n, size_t e,
				      struct moe_route_policy *pol, struct moe_route_workspace *ws,
				      float *logits, int32_t *ids, float *wt, uint64_t *load,
				      double *pi, double *out)
{
	struct moe_route_out ro = {ids, wt, load, NULL, 0, 0};
	enum moe_status st;

	zipf_popularity(s, NULL, e, pi);
	for (size_t t = 0; t < n; t++)
		for (size_t i = 0; i < e; i++)
			logits[t * e + i] = (float)log(pi[i] > POP_FLOOR ? pi[i] : POP_FLOOR) +
					    gum[t * e + i];
	if ((st = moe_route_batch(pol, ws, logits, n, &ro)) != MOE_OK)
		return st;
	{
		size_t pos = 0;

		for (size_t i = 0; i < e; i++)
			pos += load[i] > 0;
		if (pos < 2) { /* one expert took everything: steeper than any fit */
			*out = INFINITY;
			return MOE_OK;
		}
	}
	return trace_gen_fit_zipf(load, (uint32_t)e, out, NULL);
}

enum moe_status trace_gen_zipf_for_loads(uint32_t experts, uint32_t top_k, double s_load,
					 uint32_t tokens, gsl_rng *rng, double *s_pop)
{
	const size_t e = experts, n = tokens;
	struct moe_route_policy pol;
	struct moe_route_workspace *ws = NULL;
	float *gum = NULL, *logits = NULL, *wt = NULL;
	int32_t *ids = NULL;
	uint64_t *load = NULL;
	double *pi = NULL, lo = 0, hi = 20, f;
	enum moe_status st;

	if (experts < 2 || top_k < 1 || top_k > experts || tokens < 100 || tokens > (1u << 22) ||
	    !(s_load >= 0 && isfinite(s_load)))
		MOE_FAIL(MOE_EINVAL, "zipf inversion: experts %u, top-k %u, tokens %u, exponent %g: "
			 "expected experts >= 2, 1 <= k <= experts, 100 <= tokens, exponent >= 0",
			 experts, top_k, tokens, s_load);
	moe_route_policy_init(&pol, (int)experts, (int)top_k);
	if ((st = moe_route_workspace_alloc(&pol, n, &ws)) != MOE_OK)
		return st;
	gum = malloc(n * e * sizeof *gum);
	logits = malloc(n * e * sizeof *logits);
	wt = malloc(n * top_k * sizeof *wt);
	ids = malloc(n * top_k * sizeof *ids);
	load = malloc(e * sizeof *load);
	pi = malloc(e * sizeof *pi);
	if (!gum || !logits || !wt || !ids || !load || !pi) {
		st = moe_error(MOE_ENOMEM, "zipf inversion: out of memory");
		goto out;
	}
	/* common random numbers: one set of Gumbels for every trial, so the
	 * fitted exponent is a monotone function of s */
	for (size_t x = 0; x < n * e; x++)
		gum[x] = (float)-log(-log(gsl_rng_uniform_pos(rng)));
	if ((st = loads_exponent(hi, gum, n, e, &pol, ws, logits, ids, wt, load, pi, &f)) != MOE_OK)
		goto out;
	if (f < s_load) {
		st = moe_error(MOE_ERANGE, "zipf inversion: a load exponent of %g is beyond top-%u "
			       "routing over %u experts (at most %.3g)", s_load, top_k, experts, f);
		goto out;
	}
	for (int it = 0; it < 40; it++) {
		double mid = 0.5 * (lo + hi);

		if ((st = loads_exponent(mid, gum, n, e, &pol, ws, logits, ids, wt, load, pi, &f)) !=
		    MOE_OK)
			goto out;
		if (f < s_load)
			lo = mid;
		else
			hi = mid;
	}
	*s_pop = 0.5 * (lo + hi);
out:
	moe_route_workspace_free(ws);
	free(gum);
	free(logits);
	free(wt);
	free(ids);
	free(load);
	free(pi);
	return st;
}

enum moe_status trace_gen_popularity_for_loads(uint32_t experts, uint32_t top_k,
					       const double *share, uint32_t tokens, gsl_rng *rng,
					       double *pi)
{
	const size_t e = experts, n = tokens;
	struct moe_route_policy pol;
	struct moe_route_workspace *ws = NULL;
	struct moe_route_out ro;
	float *gum = NULL, *logits = NULL, *wt = NULL;
	int32_t *ids = NULL;
	uint64_t *load = NULL;
	double *target = NULL, sum = 0, gap = 0;
	enum moe_status st = MOE_OK;

	if (experts < 1 || top_k < 1 || top_k > experts || tokens < 100 || tokens > (1u << 22))
		MOE_FAIL(MOE_EINVAL, "popularity inversion: experts %u, top-k %u, tokens %u: expected "
			 "1 <= k <= experts and 100 <= tokens <= 4194304", experts, top_k, tokens);
	for (size_t i = 0; i < e; i++) {
		if (!(share[i] >= 0) || !isfinite(share[i]))
			MOE_FAIL(MOE_EINVAL, "popularity inversion: share of expert %zu is %g: expected "
				 "a finite value >= 0", i, share[i]);
		sum += share[i];
	}
	if (!(sum > 0))
		MOE_FAIL(MOE_EINVAL, "popularity inversion: every share is 0");
	for (size_t i = 0; i < e; i++)
		if (share[i] / sum > 1.0 / top_k + 1e-12)
			MOE_FAIL(MOE_ERANGE, "popularity inversion: expert %zu has %.4f of the slots, "
				 "above the 1/%u a top-%u router can give one expert", i, share[i] / sum,
				 top_k, top_k);
	moe_route_policy_init(&pol, (int)experts, (int)top_k);
	if ((st = moe_route_workspace_alloc(&pol, n, &ws)) != MOE_OK)
		return st;
	gum = malloc(n * e * sizeof *gum);
	logits = malloc(n * e * sizeof *logits);
	wt = malloc(n * top_k * sizeof *wt);
	ids = malloc(n * top_k * sizeof *ids);
	load = malloc(e * sizeof *load);
	target = malloc(e * sizeof *target);
	if (!gum || !logits || !wt || !ids || !load || !target) {
		st = moe_error(MOE_ENOMEM, "popularity inversion: out of memory");
		goto out;
	}
	for (size_t x = 0; x < n * e; x++)
		gum[x] = (float)-log(-log(gsl_rng_uniform_pos(rng)));
	for (size_t i = 0; i < e; i++)
		pi[i] = target[i] = share[i] / sum;
	ro = (struct moe_route_out){ids, wt, load, NULL, 0, 0};
	for (int round = 0; round < 200; round++) {
		double z = 0;

		for (size_t t = 0; t < n; t++)
			for (size_t i = 0; i < e; i++)
				logits[t * e + i] = (float)log(pi[i] > POP_FLOOR ? pi[i] : POP_FLOOR) +
						    gum[t * e + i];
		if ((st = moe_route_batch(&pol, ws, logits, n, &ro)) != MOE_OK)
			goto out;
		gap = 0;
		for (size_t i = 0; i < e; i++) {
			double got = (double)load[i] / ((double)n * top_k);

			gap = fabs(got - target[i]) > gap ? fabs(got - target[i]) : gap;
		}
		if (gap < 0.002)
			goto out; /* pi is the popularity just measured */
		for (size_t i = 0; i < e; i++) {
			double got = (double)load[i] / ((double)n * top_k);

			/* scale by the ratio; an expert never drawn grows tenfold */
			pi[i] *= target[i] == 0 ? 0 : got > 0 ? target[i] / got : 10;
			z += pi[i];
		}
		for (size_t i = 0; i < e; i++)
			pi[i] /= z;
	}
	st = moe_error(MOE_ERANGE, "popularity inversion: after 200 rounds a share is still %.4f "
		       "off (the loads may be at the limit of 1/%u)", gap, top_k);
out:
	moe_route_workspace_free(ws);
	free(gum);
	free(logits);
	free(wt);
	free(ids);
	free(load);
	free(target);
	return st;
}
