/* moe/route.c: routing policies (see moe/route.h and docs/routing.md for the
 * exact definitions).  Per token: selection keys, optional group and node
 * limits, a partial top-k selection (insertion into a k-long sorted list:
 * O(E + k * insertions), no sort of all E), the weights; then, for a
 * capacity limit, one pass over the batch's slots rank by rank.  All scratch
 * lives in the workspace, sized once.
 */
#include "config.h"
#include "moe/route.h"

#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct moe_route_workspace {
	/* the shape this workspace was sized for */
	int experts, k, groups, nodes, topn;
	enum moe_route_overflow overflow;
	size_t max_tokens;
	float *noisy;       /* [E] logits + noise */
	float *key;         /* [E] selection keys (the token's row of keys_all for reroute) */
	float *prob;        /* [E] probabilities */
	float *topv;        /* [k + 1] keys of the top-k, descending (+1: a sink slot) */
	int *topi;          /* [k + 1] their experts */
	float *sel;         /* [k] logits of the selected experts */
	float *colmax;      /* [max(k rounded up to 4, 8)] column maxima */
	float *cv;          /* [E rounded up to 8, + 8] candidate keys, padded with -inf */
	int *ci;            /* [E + 8] candidate experts */
	int nsets;          /* max(groups, nodes) */
	float *set_best;    /* [nsets x topn] best keys per group or node */
	int *set_cnt;       /* [nsets] how many of set_best are filled */
	float *set_score;   /* [nsets] */
	unsigned char *set_keep; /* [nsets] */
	uint64_t *count;    /* [E] slots admitted per expert */
	/* REROUTE only: kept for the overflow pass */
	float *keys_all;    /* [max_tokens x E] masked selection keys */
	double *shift;      /* [max_tokens] weight of expert i = g(l_i - shift) / den */
	double *den;        /* [max_tokens] */
};

static const char *const kind_names[] = {"softmax-topk", "topk-softmax", "sigmoid-bias", "top-p",
					 NULL};
static const char *const overflow_names[] = {"drop", "reroute", NULL};

const char *moe_route_kind_name(enum moe_route_kind k)
{
	return (unsigned)k < MOE_ROUTE_KIND_COUNT ? kind_names[k] : NULL;
}

int moe_route_kind_parse(const char *s, enum moe_route_kind *out)
{
	for (int i = 0; kind_names[i]; i++)
		if (s && strcmp(s, kind_names[i]) == 0) {
			*out = (enum moe_route_kind)i;
			return 1;
		}
	return 0;
}

const char *moe_route_overflow_name(enum moe_route_overflow o)
{
	return (unsigned)o <= MOE_ROUTE_REROUTE ? overflow_names[o] : NULL;
}

int moe_route_overflow_parse(const char *s, enum moe_route_overflow *out)
{
	for (int i = 0; overflow_names[i]; i++)
		if (s && strcmp(s, overflow_names[i]) == 0) {
			*out = (enum moe_route_overflow)i;
			return 1;
		}
	return 0;
}

void moe_route_policy_init(struct moe_route_policy *p, int experts, int k)
{
	memset(p, 0, sizeof *p);
	p->kind = MOE_ROUTE_SOFTMAX_TOPK;
	p->experts = experts;
	p->k = k;
	p->norm = 1;
	p->scaling = 1;
	p->groups = 1;
	p->groups_per_token = 1;
	p->group_topn = 2;
	p->overflow = MOE_ROUTE_DROP;
	p->top_p = 1;
}

enum moe_status moe_route_policy_from_model(const struct moe_model *m, struct moe_route_policy *p)
{
	moe_route_policy_init(p, m->experts, m->top_k);
	switch (m->router) {
	case MOE_ROUTER_SOFTMAX_TOPK: p->kind = MOE_ROUTE_SOFTMAX_TOPK; break;
	case MOE_ROUTER_TOPK_SOFTMAX: p->kind = MOE_ROUTE_TOPK_SOFTMAX; break;
	case MOE_ROUTER_SIGMOID_BIAS: p->kind = MOE_ROUTE_SIGMOID_BIAS; break;
	default:
		MOE_FAIL(MOE_EINVAL, "model %s: router kind %d is not a routing policy", m->name,
			 (int)m->router);
	}
	p->norm = m->norm_topk != 0;
	p->scaling = m->routed_scaling > 0 ? m->routed_scaling : 1;
	p->groups = m->groups > 1 ? m->groups : 1;
	p->groups_per_token = m->groups > 1 ? m->groups_per_token : 1;
	p->capacity_factor = m->capacity_factor;
	return moe_route_policy_validate(p);
}

enum moe_status moe_route_policy_validate(const struct moe_route_policy *p)
{
	if (p->experts < 1 || p->experts > (1 << 24))
		MOE_FAIL(MOE_EINVAL, "routing policy: experts %d: expected 1 to 16777216", p->experts);
	if (p->k < 1 || p->k > p->experts)
		MOE_FAIL(MOE_EINVAL, "routing policy: k %d: expected 1 to experts (%d)", p->k,
			 p->experts);
	if ((unsigned)p->kind >= MOE_ROUTE_KIND_COUNT)
		MOE_FAIL(MOE_EINVAL, "routing policy: kind %d is unknown", (int)p->kind);
	if (!(p->scaling > 0) || !isfinite(p->scaling))
		MOE_FAIL(MOE_EINVAL, "routing policy: scaling %g: expected a finite value > 0",
			 p->scaling);
	if (p->groups > 1) {
		if (p->experts % p->groups != 0)
			MOE_FAIL(MOE_EINVAL, "routing policy: groups %d does not divide experts %d",
				 p->groups, p->experts);
		if (p->groups_per_token < 1 || p->groups_per_token > p->groups)
			MOE_FAIL(MOE_EINVAL,
				 "routing policy: groups_per_token %d: expected 1 to groups (%d)",
				 p->groups_per_token, p->groups);
		if (p->k > p->groups_per_token * (p->experts / p->groups))
			MOE_FAIL(MOE_EINVAL,
				 "routing policy: k %d cannot be picked from %d groups of %d experts",
				 p->k, p->groups_per_token, p->experts / p->groups);
	} else if (p->groups < 0) {
		MOE_FAIL(MOE_EINVAL, "routing policy: groups %d: expected 0 or more", p->groups);
	}
	if ((p->groups > 1 || p->node_of) && p->group_topn < 1)
		MOE_FAIL(MOE_EINVAL, "routing policy: group_topn %d: expected 1 or more",
			 p->group_topn);
	if (p->node_of) {
		if (p->nodes < 1 || p->nodes > p->experts)
			MOE_FAIL(MOE_EINVAL, "routing policy: nodes %d: expected 1 to experts (%d)",
				 p->nodes, p->experts);
		if (p->max_nodes < 1 || p->max_nodes > p->nodes)
			MOE_FAIL(MOE_EINVAL, "routing policy: max_nodes %d: expected 1 to nodes (%d)",
				 p->max_nodes, p->nodes);
		for (int i = 0; i < p->experts; i++)
			if (p->node_of[i] < 0 || p->node_of[i] >= p->nodes)
				MOE_FAIL(MOE_EINVAL,
					 "routing policy: node_of[%d] = %d: expected 0 to %d", i,
					 p->node_of[i], p->nodes - 1);
	}
	if (!(p->capacity_factor >= 0) || !isfinite(p->capacity_factor))
		MOE_FAIL(MOE_EINVAL, "routing policy: capacity factor %g: expected a finite value >= 0",
			 p->capacity_factor);
	if (p->overflow != MOE_ROUTE_DROP && p->overflow != MOE_ROUTE_REROUTE)
		MOE_FAIL(MOE_EINVAL, "routing policy: overflow mode %d is unknown", (int)p->overflow);
	if (!(p->noise_std >= 0) || !isfinite(p->noise_std))
		MOE_FAIL(MOE_EINVAL, "routing policy: noise std %g: expected a finite value >= 0",
			 p->noise_std);
	if (p->noise_std > 0 && !p->rng)
		MOE_FAIL(MOE_EINVAL, "routing policy: noise std %g needs a random number generator",
			 p->noise_std);
	if (p->kind == MOE_ROUTE_TOP_P && !(p->top_p > 0 && p->top_p <= 1))
		MOE_FAIL(MOE_EINVAL, "routing policy: top_p %g: expected a value in (0, 1]", p->top_p);
	if (p->bias)
		for (int i = 0; i < p->experts; i++)
			if (!isfinite(p->bias[i]))
				MOE_FAIL(MOE_EINVAL, "routing policy: bias[%d] is not finite", i);
	return MOE_OK;
}

/* group_topn as the workspace holds it: at least 1, at most E. */
static int effective_topn(const struct moe_route_policy *p)
{
	int t = p->group_topn > 0 ? p->group_topn : 1;

	return t > p->experts ? p->experts : t;
}

void moe_route_workspace_free(struct moe_route_workspace *w)
{
	if (!w)
		return;
	free(w->noisy);
	free(w->key);
	free(w->prob);
	free(w->topv);
	free(w->topi);
	free(w->sel);
	free(w->colmax);
	free(w->cv);
	free(w->ci);
	free(w->set_best);
	free(w->set_cnt);
	free(w->set_score);
	free(w->set_keep);
	free(w->count);
	free(w->keys_all);
	free(w->shift);
	free(w->den);
	free(w);
}

enum moe_status moe_route_workspace_alloc(const struct moe_route_policy *p, size_t max_tokens,
					  struct moe_route_workspace **out)
{
	enum moe_status st = moe_route_policy_validate(p);
	struct moe_route_workspace *w;
	size_t e;

	*out = NULL;
	if (st != MOE_OK)
		return st;
	w = calloc(1, sizeof *w);
	if (!w)
		goto err;
	e = (size_t)p->experts;
	w->experts = p->experts;
	w->k = p->k;
	w->groups = p->groups > 1 ? p->groups : 1;
	w->nodes = p->node_of ? p->nodes : 0;
	w->topn = effective_topn(p);
	w->overflow = p->capacity_factor > 0 ? p->overflow : MOE_ROUTE_DROP;
	w->max_tokens = max_tokens;
	w->nsets = w->groups > w->nodes ? w->groups : w->nodes;
	w->noisy = malloc(e * sizeof *w->noisy);
	w->key = malloc(e * sizeof *w->key);
	w->prob = malloc(e * sizeof *w->prob);
	w->topv = malloc((size_t)(p->k + 1) * sizeof *w->topv);
	w->topi = malloc((size_t)(p->k + 1) * sizeof *w->topi);
	w->sel = malloc((size_t)p->k * sizeof *w->sel);
	w->colmax = malloc((size_t)(p->k + 8) * sizeof *w->colmax);
	w->cv = malloc((e + 16) * sizeof *w->cv);
	w->ci = malloc((e + 16) * sizeof *w->ci);
	w->set_best = malloc((size_t)w->nsets * (size_t)w->topn * sizeof *w->set_best);
	w->set_cnt = malloc((size_t)w->nsets * sizeof *w->set_cnt);
	w->set_score = malloc((size_t)w->nsets * sizeof *w->set_score);
	w->set_keep = malloc((size_t)w->nsets);
	w->count = malloc(e * sizeof *w->count);
	if (!w->noisy || !w->key || !w->prob || !w->topv || !w->topi || !w->sel || !w->colmax || !w->cv || !w->ci || !w->set_best ||
	    !w->set_cnt || !w->set_score || !w->set_keep || !w->count)
		goto err;
	if (w->overflow == MOE_ROUTE_REROUTE && max_tokens > 0) {
		if (max_tokens > SIZE_MAX / sizeof(float) / e)
			goto err;
		w->keys_all = malloc(max_tokens * e * sizeof *w->keys_all);
		w->shift = malloc(max_tokens * sizeof *w->shift);
		w->den = malloc(max_tokens * sizeof *w->den);
		if (!w->keys_all || !w->shift || !w->den)
			goto err;
	}
	*out = w;
	return MOE_OK;
err:
	moe_route_workspace_free(w);
	MOE_FAIL(MOE_ENOMEM, "routing workspace for %zu tokens of %d experts: out of memory",
		 max_tokens, p->experts);
}

size_t moe_route_capacity(const struct moe_route_policy *p, size_t n)
{
	double x, c;

	if (!(p->capacity_factor > 0))
		return SIZE_MAX;
	x = p->capacity_factor * (double)n * (double)p->k / (double)p->experts;
	c = ceil(x - 1e-9 * x);
	if (c >= (double)SIZE_MAX)
		return SIZE_MAX;
	return (size_t)c;
}

#if (defined(__GNUC__) || defined(__clang__)) && !defined(MOE_ROUTE_SCALAR)
/* GCC and clang vector extensions, 16 bytes (SSE2 on x86-64, NEON on ARM):
 * the compiler's auto-vectorizer leaves these loops scalar at -O2, and
 * wider vectors get scalarized on a baseline x86-64 build. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
#define ROUTE_VECTOR 1

static inline v4f vsplat(float x)
{
	return (v4f){x, x, x, x};
}

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Lane-wise a > b ? a : b: MAXPS on x86 (exactly this, NaN and -0 included);
 * elsewhere by masks (the vector ?: is C++ only). */
static inline v4f vmax4(v4f a, v4f b)
{
#ifdef __SSE2__
	return (v4f)_mm_max_ps((__m128)a, (__m128)b);
#else
	v4i gt = a > b, ai, bi;

	memcpy(&ai, &a, sizeof ai);
	memcpy(&bi, &b, sizeof bi);
	ai = (ai & gt) | (bi & ~gt);
	memcpy(&a, &ai, sizeof a);
	return a;
#endif
}

/* Lane-wise a < b ? a : b. */
static inline v4f vmin4(v4f a, v4f b)
{
#ifdef __SSE2__
	return (v4f)_mm_min_ps((__m128)a, (__m128)b);
#else
	v4i lt = a < b, ai, bi;

	memcpy(&ai, &a, sizeof ai);
	memcpy(&bi, &b, sizeof bi);
	ai = (ai & lt) | (bi & ~lt);
	memcpy(&a, &ai, sizeof a);
	return a;
#endif
}
#endif

/* How many of cv[0..mpad-1] beat cv[a] = va: greater, or equal at a lower
 * index.  mpad is a multiple of 4; the padding is -inf and beats nothing.
 * Counts greater and equal keys in vectors; only when another key equals va
 * (rare with real logits) does a scalar pass count the lower equal ones. */
static inline int rank_of(const float *cv, int mpad, int a, float va)
{
	int gt = 0, eq = 0;

#ifdef ROUTE_VECTOR
	const v4f vva = {va, va, va, va};

	if (mpad < 32768) {
		/* both counts in one accumulator: greater in the low 16 bits,
		 * equal in the high ones; one horizontal sum */
		v4i acc = {0, 0, 0, 0};
		int sum;

		for (int b0 = 0; b0 < mpad; b0 += 4) {
			v4f vb;

			memcpy(&vb, cv + b0, sizeof vb);
			acc += (vb > vva) + (vb == vva) * 65536; /* -1 and -65536 where true */
		}
		sum = -(acc[0] + acc[1] + acc[2] + acc[3]);
		gt = sum & 0xffff;
		eq = sum >> 16;
	} else {
		v4i agt = {0, 0, 0, 0}, aeq = {0, 0, 0, 0};

		for (int b0 = 0; b0 < mpad; b0 += 4) {
			v4f vb;

			memcpy(&vb, cv + b0, sizeof vb);
			agt += vb > vva; /* -1 where true */
			aeq += vb == vva;
		}
		gt = -(agt[0] + agt[1] + agt[2] + agt[3]);
		eq = -(aeq[0] + aeq[1] + aeq[2] + aeq[3]);
	}
#else
	for (int b = 0; b < mpad; b++) {
		gt += cv[b] > va;
		eq += cv[b] == va;
	}
#endif
	if (eq > 1) /* itself and at least one tie */
		for (int b = 0; b < a; b++)
			gt += cv[b] == va;
	return gt;
}

/* Partial top-k selection without a sort and with few unpredictable
 * branches (branch misses, not comparisons, were the cost of a plain
 * insertion into a sorted k-list).  1. A threshold: split the experts into k
 * columns (expert i in column i mod k) and take T = the least column
 * maximum; each column holds an element >= T, so at least k keys are >= T
 * and every key of the top-k is >= T.  2. Candidates: the keys >= T (and not
 * -inf), gathered without branches (about 2k of E for random keys).  3. The
 * rank of each candidate = how many candidates beat it (greater, or equal
 * with a lower id: the tie-break), counted 4 lanes at a time; ranks below
 * k are written to their slot.  When there are many candidates (2k or
 * more), step 1 is applied once more to them.  Returns
 * the number of slots filled, min(k, allowed experts). */
static float column_threshold(const float *key, int e, int k, float *cm)
{
	float thr;
	int base, c = k;

#ifdef ROUTE_VECTOR
	/* c = k rounded up to 4 columns (still >= k, so still a valid bound);
	 * up to 8 columns stay in registers */
	if (((k + 3) & ~3) <= e) {
		c = (k + 3) & ~3;
		if (c <= 8) {
			v4f c0, c1 = vsplat(-INFINITY);

			memcpy(&c0, key, sizeof c0);
			if (c == 8)
				memcpy(&c1, key + 4, sizeof c1);
			for (base = c; base + c <= e; base += c) {
				v4f x;

				memcpy(&x, key + base, sizeof x);
				c0 = vmax4(x, c0);
				if (c == 8) {
					memcpy(&x, key + base + 4, sizeof x);
					c1 = vmax4(x, c1);
				}
			}
			if (base == e) { /* no tail: the least maximum in registers */
				v4f mn = c == 8 ? vmin4(c0, c1) : c0;

				thr = mn[0] < mn[1] ? mn[0] : mn[1];
				thr = mn[2] < thr ? mn[2] : thr;
				return mn[3] < thr ? mn[3] : thr;
			}
			memcpy(cm, &c0, sizeof c0);
			memcpy(cm + 4, &c1, sizeof c1);
		} else {
			for (int j = 0; j < c; j++)
				cm[j] = key[j];
			for (base = c; base + c <= e; base += c)
				for (int j = 0; j < c; j += 4) {
					v4f x, y;

					memcpy(&x, key + base + j, sizeof x);
					memcpy(&y, cm + j, sizeof y);
					y = vmax4(x, y);
					memcpy(cm + j, &y, sizeof y);
				}
		}
	} else
#endif
	{
		for (int j = 0; j < k; j++)
			cm[j] = key[j];
		for (base = k; base + k <= e; base += k)
			for (int j = 0; j < k; j++)
				cm[j] = key[base + j] > cm[j] ? key[base + j] : cm[j];
	}
	for (int i = base; i < e; i++)
		cm[i - base] = key[i] > cm[i - base] ? key[i] : cm[i - base];
	thr = cm[0];
	for (int j = 1; j < c; j++)
		thr = cm[j] < thr ? cm[j] : thr;
	return thr;
}

static int select_topk(struct moe_route_workspace *w, const float *key, int e, int k, float *tv,
		       int *ti, int limits)
{
	float *cv = w->cv;
	int *ci = w->ci;
	float thr = column_threshold(key, e, k, w->colmax);
	int m = 0, mpad;

	if (limits) {
		for (int i = 0; i < e; i++) {
			cv[m] = key[i];
			ci[m] = i;
			m += (key[i] >= thr) & (key[i] != -INFINITY);
		}
	} else {
		for (int i = 0; i < e; i++) {
			cv[m] = key[i];
			ci[m] = i;
			m += key[i] >= thr;
		}
	}
	/* many candidates: the same bound once more over them (in place) */
	if (m >= 2 * ((k + 3) & ~3)) {
		int m2 = 0;

		thr = column_threshold(cv, m, k, w->colmax);
		for (int i = 0; i < m; i++) {
			const float v = cv[i];
			const int id = ci[i];

			cv[m2] = v;
			ci[m2] = id;
			m2 += v >= thr;
		}
		m = m2;
	}
	mpad = (m + 3) & ~3;
	for (int i = m; i < mpad; i++)
		cv[i] = -INFINITY;
	for (int a = 0; a < m; a++) {
		const float va = cv[a];
		int r = rank_of(cv, mpad, a, va), dst;

		dst = r < k ? r : k; /* slot k is a sink */
		tv[dst] = va;
		ti[dst] = ci[a];
	}
	return m < k ? m : k;
}

/* Group or node limit: each set's score is the sum of its topn largest
 * allowed keys; the keep best sets (ties: lower set id) stay allowed and
 * every other expert's key becomes -inf.  set_of == NULL means contiguous
 * blocks of E / nsets experts. */
static void limit_sets(struct moe_route_workspace *w, float *key, const int *set_of, int nsets,
		       int keep)
{
	int e = w->experts, block = e / nsets, topn = w->topn;
	float *best = w->set_best;
	int kept = 0;

	if (!set_of && topn <= 2) {
		/* contiguous groups, the top 1 or 2 (DeepSeek): without branches */
		for (int s = 0; s < nsets; s++) {
			const float *x = key + (size_t)s * (size_t)block;
			float b1 = -INFINITY, b2 = -INFINITY;

			for (int j = 0; j < block; j++) {
				const float v = x[j], lo = v < b1 ? v : b1;

				b1 = v > b1 ? v : b1;
				b2 = lo > b2 ? lo : b2;
			}
			/* a float sum is correctly rounded, as the double sum cast */
			w->set_score[s] = topn == 1 || b2 == -INFINITY ? b1 : b1 + b2;
			w->set_keep[s] = 0;
		}
		goto choose;
	}
	for (int s = 0; s < nsets; s++)
		w->set_cnt[s] = 0;
	for (int i = 0; i < e; i++) {
		int s = set_of ? set_of[i] : i / block;

		if (key[i] == -INFINITY)
			continue;
		/* the ids inserted are unused: only the keys are summed */
		{
			float *bv = best + (size_t)s * (size_t)topn;
			int c = w->set_cnt[s], j;

			if (c == topn) {
				if (!(key[i] > bv[topn - 1]))
					continue;
				j = topn - 1;
			} else {
				j = c;
				w->set_cnt[s] = c + 1;
			}
			while (j > 0 && key[i] > bv[j - 1]) {
				bv[j] = bv[j - 1];
				j--;
			}
			bv[j] = key[i];
		}
	}
	for (int s = 0; s < nsets; s++) {
		double sum = 0;

		for (int j = 0; j < w->set_cnt[s]; j++)
			sum += best[(size_t)s * (size_t)topn + (size_t)j];
		w->set_score[s] = w->set_cnt[s] ? (float)sum : -INFINITY;
		w->set_keep[s] = 0;
	}
choose:
	/* pick the keep best: repeated arg-max, fine for the few groups/nodes */
	while (kept < keep) {
		int b = -1;

		for (int s = 0; s < nsets; s++)
			if (!w->set_keep[s] && (b < 0 || w->set_score[s] > w->set_score[b]))
				b = s;
		if (b < 0)
			break;
		w->set_keep[b] = 1;
		kept++;
	}
	if (!set_of) {
		for (int s = 0; s < nsets; s++)
			if (!w->set_keep[s])
				for (int j = 0; j < block; j++)
					key[(size_t)s * (size_t)block + (size_t)j] = -INFINITY;
		return;
	}
	for (int i = 0; i < e; i++)
		if (!w->set_keep[set_of[i]])
			key[i] = -INFINITY;
}

/* exp(x) in float32 for the weights and probabilities: Cody-Waite range
 * reduction (x = n ln2 + r, |r| <= ln2 / 2) and the degree-6 Taylor
 * polynomial of e^r, relative error below 3e-7 (glibc's expf: 0.5 ulp, but
 * one call per value; this one runs 4 lanes at a time).  x is clamped to
 * [-87, 88] (e^-87 = 1.6e-38 stands for anything smaller; nothing larger
 * arises, the callers subtract a maximum).  The scalar and vector versions
 * do the same operations, so a value gets the same result in either. */
#define EXP_LO (-87.0f)
#define EXP_HI 88.0f
#define EXP_MAGIC 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO (-2.12194440e-4f)

static inline float exp_poly(float x)
{
	float t, n, r, q, sc;
	uint32_t tb, mb, eb;
	const float magic = EXP_MAGIC;

	x = x > EXP_HI ? EXP_HI : x;
	x = x < EXP_LO ? EXP_LO : x;
	t = x * EXP_LOG2E + magic;
	n = t - magic;
	memcpy(&tb, &t, sizeof tb);
	memcpy(&mb, &magic, sizeof mb);
	r = x - n * EXP_LN2_HI;
	r = r - n * EXP_LN2_LO;
	q = 1.0f / 720;
	q = q * r + 1.0f / 120;
	q = q * r + 1.0f / 24;
	q = q * r + 1.0f / 6;
	q = q * r + 0.5f;
	q = q * r + 1.0f;
	q = q * r + 1.0f;
	eb = (uint32_t)((int32_t)(tb - mb) + 127) << 23;
	memcpy(&sc, &eb, sizeof sc);
	return q * sc;
}

#ifdef ROUTE_VECTOR

static inline v4f exp_poly4(v4f x)
{
	v4f t, n, r, q, sc;
	v4i tb, eb;
	const v4f magic = vsplat(EXP_MAGIC);
	const v4i mb = {0x4b400000, 0x4b400000, 0x4b400000, 0x4b400000};

	x = vmin4(x, vsplat(EXP_HI));
	x = vmax4(x, vsplat(EXP_LO));
	t = x * EXP_LOG2E + magic;
	n = t - magic;
	memcpy(&tb, &t, sizeof tb);
	r = x - n * EXP_LN2_HI;
	r = r - n * EXP_LN2_LO;
	q = vsplat(1.0f / 720);
	q = q * r + 1.0f / 120;
	q = q * r + 1.0f / 24;
	q = q * r + 1.0f / 6;
	q = q * r + 0.5f;
	q = q * r + 1.0f;
	q = q * r + 1.0f;
	eb = (tb - mb + 127) << 23;
	memcpy(&sc, &eb, sizeof sc);
	return q * sc;
}
#endif

/* out[i] = exp(x[i] - s) for i < n; returns the sum (in double). */
static double exp_shift(const float *x, int n, float s, float *out)
{
	double z = 0;
	int i = 0;

#ifdef ROUTE_VECTOR
	v4f acc = vsplat(0);

	for (; i + 4 <= n; i += 4) {
		v4f v;

		memcpy(&v, x + i, sizeof v);
		v = exp_poly4(v - s);
		memcpy(out + i, &v, sizeof v);
		acc += v;
	}
	z = (double)acc[0] + (double)acc[1] + (double)acc[2] + (double)acc[3];
#endif
	for (; i < n; i++) {
		out[i] = exp_poly(x[i] - s);
		z += out[i];
	}
	return z;
}

/* The largest of x[0..n-1], n >= 1. */
static float max_of(const float *x, int n)
{
	float m = x[0];
	int i = 0;

#ifdef ROUTE_VECTOR
	if (n >= 4) {
		v4f vm;

		memcpy(&vm, x, sizeof vm);
		for (i = 4; i + 4 <= n; i += 4) {
			v4f v;

			memcpy(&v, x + i, sizeof v);
			vm = vmax4(v, vm);
		}
		m = vm[0];
		for (int j = 1; j < 4; j++)
			m = vm[j] > m ? vm[j] : m;
	}
#endif
	for (; i < n; i++)
		m = x[i] > m ? x[i] : m;
	return m;
}

/* out[i] = sigmoid(x[i]) + (bias ? bias[i] : 0). */
static void sigmoid_keys(const float *x, const float *bias, int n, float *out)
{
	int i = 0;

#ifdef ROUTE_VECTOR
	for (; i + 4 <= n; i += 4) {
		v4f v, b = vsplat(0);

		memcpy(&v, x + i, sizeof v);
		if (bias)
			memcpy(&b, bias + i, sizeof b);
		v = 1.0f / (1.0f + exp_poly4(vsplat(0) - v)) + b;
		memcpy(out + i, &v, sizeof v);
	}
#endif
	for (; i < n; i++)
		out[i] = 1.0f / (1.0f + exp_poly(-x[i])) + (bias ? bias[i] : 0.0f);
}

/* Softmax of x[0..e-1] into out; max subtracted for range. */
static void softmax(const float *x, int e, float *out)
{
	double z = exp_shift(x, e, max_of(x, e), out);
	float inv = (float)(1 / z);

	for (int i = 0; i < e; i++)
		out[i] *= inv;
}

/* Returns the index of the first non-finite value or -1: exponent bits all
 * ones, tested on integers so the loop vectorizes. */
static int first_nonfinite(const float *l, int e)
{
	uint32_t bad = 0;
	int i = 0;

#ifdef ROUTE_VECTOR
	{
		typedef uint32_t v4u __attribute__((vector_size(16)));
		const v4u ex = {0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u};
		v4u acc = {0, 0, 0, 0};

		for (; i + 4 <= e; i += 4) {
			v4u u;

			memcpy(&u, l + i, sizeof u);
			acc |= (v4u)((u & ex) == ex);
		}
		bad = acc[0] | acc[1] | acc[2] | acc[3];
	}
#endif
	for (; i < e; i++) {
		uint32_t u;

		memcpy(&u, &l[i], sizeof u);
		bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
	}
	if (!bad)
		return -1;
	for (int j = 0; j < e; j++)
		if (!isfinite(l[j]))
			return j;
	return -1;
}

/* Routes one token into ids/wt[0..k-1]; for reroute also records the
 * token's weight normalizer (shift, den). */
static void route_token(const struct moe_route_policy *p, struct moe_route_workspace *w,
			const float *l, float *keyrow, int32_t *ids, float *wt, double *shift_out,
			double *den_out)
{
	const int e = p->experts, k = p->k;
	const int limits = p->groups > 1 || p->node_of;
	const int softmax_kind = p->kind == MOE_ROUTE_SOFTMAX_TOPK || p->kind == MOE_ROUTE_TOP_P;
	const float *sel = l;   /* the noisy logits, or l itself */
	const float *key;
	float *tv = w->topv, *sl = w->sel;
	int *ti = w->topi;
	int c = 0, m;
	double shift = 0, den = 1;

	if (p->noise_std > 0) {
		for (int i = 0; i < e; i++)
			w->noisy[i] = l[i] + (float)gsl_ran_gaussian(p->rng, p->noise_std);
		sel = w->noisy;
	}
	/* 1. keys */
	if (softmax_kind && (p->bias || limits)) {
		softmax(sel, e, keyrow);
		if (p->bias)
			for (int i = 0; i < e; i++)
				keyrow[i] += p->bias[i];
		key = keyrow;
	} else if (p->kind == MOE_ROUTE_SIGMOID_BIAS) {
		sigmoid_keys(sel, p->bias, e, keyrow);
		key = keyrow;
	} else if (p->bias) {
		for (int i = 0; i < e; i++)
			keyrow[i] = sel[i] + p->bias[i];
		key = keyrow;
	} else if (limits || w->keys_all) {
		memcpy(keyrow, sel, (size_t)e * sizeof *keyrow);
		key = keyrow;
	} else {
		key = sel;
	}
	/* 2. group and node limits */
	if (p->groups > 1)
		limit_sets(w, keyrow, NULL, p->groups, p->groups_per_token);
	if (p->node_of)
		limit_sets(w, keyrow, p->node_of, p->nodes, p->max_nodes);
	/* 3. top-k by key; excluded experts (-inf) are never offered */
	c = select_topk(w, key, e, k, tv, ti, limits);
	m = c;
	/* 4. weights from unnoised, unbiased scores */
	if (key == l) {
		sl = tv; /* the keys are the logits: already gathered, descending */
	} else {
		for (int j = 0; j < m; j++)
			sl[j] = l[ti[j]];
	}
	switch (p->kind) {
	case MOE_ROUTE_SOFTMAX_TOPK:
	case MOE_ROUTE_TOPK_SOFTMAX:
		if (p->norm || p->kind == MOE_ROUTE_TOPK_SOFTMAX) {
			/* p_i / sum_sel p = exp(l_i - s) / sum_sel exp(l - s) */
			shift = key == l ? sl[0] : max_of(sl, m);
			den = exp_shift(sl, m, (float)shift, wt);
		} else {
			shift = max_of(l, e);
			den = exp_shift(l, e, (float)shift, w->prob);
			for (int j = 0; j < m; j++)
				wt[j] = w->prob[ti[j]];
		}
		break;
	case MOE_ROUTE_TOP_P: {
		double z, cum = 0, kept = 0;

		shift = max_of(l, e);
		z = exp_shift(l, e, (float)shift, w->prob);
		for (int j = 0; j < c; j++) {
			cum += w->prob[ti[j]] / z;
			if (cum >= p->top_p) {
				m = j + 1;
				break;
			}
		}
		for (int j = 0; j < m; j++) {
			wt[j] = w->prob[ti[j]];
			kept += wt[j];
		}
		den = p->norm ? kept : z;
		break;
	}
	case MOE_ROUTE_SIGMOID_BIAS:
	default:
		sigmoid_keys(sl, NULL, m, wt);
		den = 1;
		if (p->norm) {
			den = 0;
			for (int j = 0; j < m; j++)
				den += wt[j];
		}
		break;
	}
	{
		const float inv = (float)(p->scaling / den);

		for (int j = 0; j < m; j++) {
			ids[j] = ti[j];
			wt[j] *= inv;
		}
	}
	for (int j = m; j < k; j++) {
		ids[j] = MOE_ROUTE_NONE;
		wt[j] = 0;
	}
	*shift_out = shift;
	*den_out = den;
}

/* The weight expert i gets when a slot of token t is moved to it. */
static float reroute_weight(const struct moe_route_policy *p, float li, double shift, double den)
{
	double g;

	if (p->kind == MOE_ROUTE_SIGMOID_BIAS)
		g = 1.0f / (1.0f + exp_poly(-li));
	else
		g = exp_poly(li - (float)shift);
	return (float)(g / den * p->scaling);
}

enum moe_status moe_route_batch(const struct moe_route_policy *p, struct moe_route_workspace *w,
				const float *logits, size_t n, struct moe_route_out *out)
{
	const int e = p->experts, k = p->k;
	const size_t ek = (size_t)e, kk = (size_t)k;
	size_t cap;

	if (n > w->max_tokens)
		MOE_FAIL(MOE_EINVAL, "routing: batch of %zu tokens exceeds the workspace's %zu", n,
			 w->max_tokens);
	if (e != w->experts || k != w->k || (p->groups > 1 ? p->groups : 1) != w->groups ||
	    (p->node_of ? p->nodes : 0) != w->nodes || effective_topn(p) != w->topn ||
	    (p->capacity_factor > 0 && p->overflow == MOE_ROUTE_REROUTE && !w->keys_all && n))
		MOE_FAIL(MOE_EINVAL, "routing: the policy does not match the workspace's shape");
	out->n_dropped = 0;
	out->n_rerouted = 0;
	if ((p->kind == MOE_ROUTE_TOPK_SOFTMAX || (p->kind == MOE_ROUTE_SOFTMAX_TOPK && p->norm)) &&
	    !p->bias && !(p->noise_std > 0) && p->groups <= 1 && !p->node_of && !w->keys_all) {
		/* the common case (Mixtral, gpt-oss): the keys are the logits and
		 * the weights a softmax over the selected ones */
		for (size_t t = 0; t < n; t++) {
			const float *l = logits + t * ek;
			int32_t *ids = out->ids + t * kk;
			float *wt = out->weights + t * kk;
			int bad = first_nonfinite(l, e), c;
			float inv;

			if (bad >= 0)
				MOE_FAIL(MOE_EFORMAT, "routing: token %zu expert %d: logit is %s, expected "
					 "a finite value", t, bad, isnan(l[bad]) ? "NaN" : "infinite");
			c = select_topk(w, l, e, k, w->topv, w->topi, 0);
			inv = (float)(p->scaling / exp_shift(w->topv, c, w->topv[0], wt));
			for (int j = 0; j < c; j++) {
				ids[j] = w->topi[j];
				wt[j] *= inv;
			}
		}
		goto admit;
	}
	for (size_t t = 0; t < n; t++) {
		const float *l = logits + t * ek;
		int bad = first_nonfinite(l, e);
		float *keyrow = w->keys_all ? w->keys_all + t * ek : w->key;
		double sh, dn;

		if (bad >= 0)
			MOE_FAIL(MOE_EFORMAT, "routing: token %zu expert %d: logit is %s, expected a "
				 "finite value", t, bad, isnan(l[bad]) ? "NaN" : "infinite");
		route_token(p, w, l, keyrow, out->ids + t * kk, out->weights + t * kk, &sh, &dn);
		if (w->shift) {
			w->shift[t] = sh;
			w->den[t] = dn;
		}
	}
admit:
	memset(w->count, 0, ek * sizeof *w->count);
	if (out->dropped)
		memset(out->dropped, 0, ek * sizeof *out->dropped);
	cap = moe_route_capacity(p, n);
	if (cap == SIZE_MAX) {
		for (size_t s = 0; s < n * kk; s++)
			if (out->ids[s] != MOE_ROUTE_NONE)
				w->count[out->ids[s]]++;
	} else {
		/* rank by rank, tokens in order: every token's first choice is
		 * admitted before any second choice (GShard, Switch) */
		for (size_t r = 0; r < kk; r++)
			for (size_t t = 0; t < n; t++) {
				int32_t *id = out->ids + t * kk + r;
				float *wt = out->weights + t * kk + r;
				int best = -1;

				if (*id == MOE_ROUTE_NONE)
					continue;
				if (w->count[*id] < cap) {
					w->count[*id]++;
					continue;
				}
				if (p->overflow == MOE_ROUTE_REROUTE) {
					const float *key = w->keys_all + t * ek;
					const int32_t *mine = out->ids + t * kk;

					for (int i = 0; i < e; i++) {
						int taken = 0;

						if (key[i] == -INFINITY || w->count[i] >= cap)
							continue;
						if (best >= 0 && !(key[i] > key[best]))
							continue;
						for (size_t j = 0; j < kk; j++)
							taken |= mine[j] == i;
						if (!taken)
							best = i;
					}
				}
				if (best >= 0) {
					*id = best;
					*wt = reroute_weight(p, logits[t * ek + (size_t)best],
							     w->shift[t], w->den[t]);
					w->count[best]++;
					out->n_rerouted++;
				} else {
					if (out->dropped)
						out->dropped[*id]++;
					*id = MOE_ROUTE_NONE;
					*wt = 0;
					out->n_dropped++;
				}
			}
	}
	if (out->load)
		memcpy(out->load, w->count, ek * sizeof *out->load);
	return MOE_OK;
}

/* ---- auxiliary-loss-free balancing ---- */

struct moe_route_balancer {
	int experts;
	double rate;
	float *bias;
};

enum moe_status moe_route_balancer_new(int experts, double rate, struct moe_route_balancer **out)
{
	struct moe_route_balancer *b;

	*out = NULL;
	if (experts < 1)
		MOE_FAIL(MOE_EINVAL, "balancer: experts %d: expected 1 or more", experts);
	if (!(rate >= 0) || !isfinite(rate))
		MOE_FAIL(MOE_EINVAL, "balancer: rate %g: expected a finite value >= 0", rate);
	b = calloc(1, sizeof *b);
	if (!b || !(b->bias = calloc((size_t)experts, sizeof *b->bias))) {
		free(b);
		MOE_FAIL(MOE_ENOMEM, "balancer for %d experts: out of memory", experts);
	}
	b->experts = experts;
	b->rate = rate;
	*out = b;
	return MOE_OK;
}

void moe_route_balancer_free(struct moe_route_balancer *b)
{
	if (!b)
		return;
	free(b->bias);
	free(b);
}

const float *moe_route_balancer_bias(const struct moe_route_balancer *b)
{
	return b->bias;
}

void moe_route_balancer_update(struct moe_route_balancer *b, const uint64_t *load)
{
	double sum = 0, mean;

	for (int i = 0; i < b->experts; i++)
		sum += (double)load[i];
	mean = sum / b->experts;
	for (int i = 0; i < b->experts; i++) {
		double d = mean - (double)load[i];

		if (d > 0)
			b->bias[i] = (float)(b->bias[i] + b->rate);
		else if (d < 0)
			b->bias[i] = (float)(b->bias[i] - b->rate);
	}
}
