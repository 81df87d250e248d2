/* traces/rescale.c: resampling a trace onto another number of source ranks
 * (see traces/rescale.h for what is kept and assumed).  One (step, layer)
 * is buffered at a time, plus each new rank's drawn positions for the
 * current step. */
#include "config.h"
#include "traces/rescale.h"

#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rs {
	size_t e, k, R, N;
	int has_w, has_l;
	/* the buffered (step, layer) */
	size_t n, cap;
	uint64_t step;
	uint32_t layer;
	int have;
	uint32_t *ranks;
	int32_t *ids;
	float *w, *lg;
	size_t *order;       /* [cap] token indices by (rank, index) */
	uint64_t *rcount;    /* [R] tokens per recorded rank */
	uint64_t *rstart;    /* [R + 1] their offsets in order */
	/* the current step */
	int have_step;
	uint64_t pos_step;
	uint64_t *first;     /* [R] tokens per recorded rank at the step's first layer */
	uint32_t *pos;       /* drawn pool positions, new rank after new rank */
	size_t *pstart;      /* [N + 1] offsets into pos */
	size_t pcap;
	/* one new rank's output */
	size_t ocap;
	uint32_t *oranks;
	int32_t *oids;
	float *ow, *olg;
	/* count level */
	uint64_t *ocounts;   /* [N x E] */
	double *q;           /* [E] */
	unsigned int *draw;  /* [E] */
};

static void rs_free(struct rs *s)
{
	free(s->ranks);
	free(s->ids);
	free(s->w);
	free(s->lg);
	free(s->order);
	free(s->rcount);
	free(s->rstart);
	free(s->first);
	free(s->pos);
	free(s->pstart);
	free(s->oranks);
	free(s->oids);
	free(s->ow);
	free(s->olg);
	free(s->ocounts);
	free(s->q);
	free(s->draw);
}

static int grow(void **p, size_t n, size_t size)
{
	void *q;

	if (n == 0)
		n = 1;
	if (n > SIZE_MAX / size)
		return 0;
	q = realloc(*p, n * size);
	if (!q)
		return 0;
	*p = q;
	return 1;
}

/* Capacity for n tokens in the group buffers (or, out != 0, the output). */
static enum moe_status reserve(struct rs *s, size_t need, int out)
{
	size_t *cap = out ? &s->ocap : &s->cap, c = *cap ? *cap : 1024;

	if (need <= *cap)
		return MOE_OK;
	while (c < need)
		c *= 2;
	if (out ? (!grow((void **)&s->oranks, c, sizeof *s->oranks) ||
		   !grow((void **)&s->oids, c * s->k, sizeof *s->oids) ||
		   (s->has_w && !grow((void **)&s->ow, c * s->k, sizeof *s->ow)) ||
		   (s->has_l && !grow((void **)&s->olg, c * s->e, sizeof *s->olg)))
		: (!grow((void **)&s->ranks, c, sizeof *s->ranks) ||
		   !grow((void **)&s->ids, c * s->k, sizeof *s->ids) ||
		   (s->has_w && !grow((void **)&s->w, c * s->k, sizeof *s->w)) ||
		   (s->has_l && !grow((void **)&s->lg, c * s->e, sizeof *s->lg)) ||
		   !grow((void **)&s->order, c, sizeof *s->order)))
		MOE_FAIL(MOE_ENOMEM, "trace rescale: out of memory for %zu tokens", need);
	*cap = c;
	return MOE_OK;
}

/* Pool of new rank r': recorded ranks r' mod R (N >= R), or every r with
 * r mod N = r' (N < R), visited in ascending order. */
static size_t pool_first(const struct rs *s, size_t rn)
{
	return s->N >= s->R ? rn % s->R : rn;
}

static size_t pool_step(const struct rs *s)
{
	return s->N >= s->R ? s->R : s->N; /* next member: + N (N < R); none (N >= R) */
}

static size_t pool_size(const struct rs *s, size_t rn)
{
	return s->N >= s->R ? 1 : (s->R - rn + s->N - 1) / s->N;
}

/* Draws the positions of every new rank for a new step. */
static enum moe_status draw_positions(struct rs *s, gsl_rng *rng)
{
	size_t total = 0;

	memcpy(s->first, s->rcount, s->R * sizeof *s->first);
	for (size_t rn = 0; rn < s->N; rn++) {
		uint64_t pt = 0;
		size_t ps = pool_size(s, rn), m;

		for (size_t i = 0, r = pool_first(s, rn); i < ps; i++, r += pool_step(s))
			pt += s->rcount[r];
		if (pt > gsl_rng_max(rng) - gsl_rng_min(rng))
			MOE_FAIL(MOE_ERANGE, "trace rescale: %llu tokens in one pool exceed the "
				 "random generator's range", (unsigned long long)pt);
		m = (size_t)llround((double)pt / (double)ps);
		s->pstart[rn] = total;
		if (!grow((void **)&s->pos, total + m, sizeof *s->pos))
			MOE_FAIL(MOE_ENOMEM, "trace rescale: out of memory for the drawn tokens");
		for (size_t j = 0; j < m; j++)
			s->pos[total + j] = (uint32_t)gsl_rng_uniform_int(rng, (unsigned long)pt);
		total += m;
	}
	s->pstart[s->N] = total;
	return MOE_OK;
}

static enum moe_status flush_tokens(struct rs *s, struct trace_writer *w, gsl_rng *rng,
				    uint64_t *tokens_out)
{
	enum moe_status st;

	if (!s->have)
		return MOE_OK;
	/* counting sort by recorded rank */
	memset(s->rcount, 0, s->R * sizeof *s->rcount);
	for (size_t t = 0; t < s->n; t++)
		s->rcount[s->ranks[t]]++;
	s->rstart[0] = 0;
	for (size_t r = 0; r < s->R; r++)
		s->rstart[r + 1] = s->rstart[r] + s->rcount[r];
	for (size_t t = 0; t < s->n; t++)
		s->order[s->rstart[s->ranks[t]]++] = t;
	for (size_t r = 0; r < s->R; r++)
		s->rstart[r] -= s->rcount[r];
	if (!s->have_step || s->pos_step != s->step) {
		if ((st = draw_positions(s, rng)) != MOE_OK)
			return st;
		s->have_step = 1;
		s->pos_step = s->step;
	} else {
		for (size_t r = 0; r < s->R; r++)
			if (s->rcount[r] != s->first[r])
				MOE_FAIL(MOE_EFORMAT, "trace rescale: step %llu layer %u holds %llu "
					 "tokens from rank %zu, the step's first layer %llu: a token "
					 "must be the same at every layer of a step",
					 (unsigned long long)s->step, s->layer,
					 (unsigned long long)s->rcount[r], r,
					 (unsigned long long)s->first[r]);
	}
	for (size_t rn = 0; rn < s->N; rn++) {
		size_t m = s->pstart[rn + 1] - s->pstart[rn], ps = pool_size(s, rn);

		if (m == 0)
			continue;
		if ((st = reserve(s, m, 1)) != MOE_OK)
			return st;
		for (size_t j = 0; j < m; j++) {
			uint64_t p = s->pos[s->pstart[rn] + j];
			size_t r = pool_first(s, rn), t;

			for (size_t i = 0; i + 1 < ps && p >= s->rcount[r]; i++) {
				p -= s->rcount[r];
				r += pool_step(s);
			}
			t = s->order[s->rstart[r] + p];
			s->oranks[j] = (uint32_t)rn;
			memcpy(s->oids + j * s->k, s->ids + t * s->k, s->k * sizeof *s->oids);
			if (s->has_w)
				memcpy(s->ow + j * s->k, s->w + t * s->k, s->k * sizeof *s->ow);
			if (s->has_l)
				memcpy(s->olg + j * s->e, s->lg + t * s->e, s->e * sizeof *s->olg);
		}
		if ((st = trace_writer_add_tokens(w, s->step, s->layer, m, s->oranks, s->oids, s->ow,
						  s->olg)) != MOE_OK)
			return st;
		if (tokens_out)
			*tokens_out += m;
	}
	s->n = 0;
	s->have = 0;
	return MOE_OK;
}

static enum moe_status rescale_counts(struct rs *s, const struct trace_chunk *c,
				      struct trace_writer *w, gsl_rng *rng, uint64_t *tokens_out)
{
	for (size_t rn = 0; rn < s->N; rn++) {
		size_t ps = pool_size(s, rn);
		double qt = 0;
		uint64_t m;

		for (size_t i = 0; i < s->e; i++)
			s->q[i] = 0;
		for (size_t i = 0, r = pool_first(s, rn); i < ps; i++, r += pool_step(s))
			for (size_t x = 0; x < s->e; x++)
				s->q[x] += (double)c->counts[r * s->e + x];
		for (size_t x = 0; x < s->e; x++)
			qt += s->q[x];
		m = (uint64_t)llround(qt / (double)ps);
		if (m > 4000000000ull)
			MOE_FAIL(MOE_ERANGE, "trace rescale: %llu slots for one rank exceed the "
				 "multinomial sampler's range", (unsigned long long)m);
		if (m > 0)
			gsl_ran_multinomial(rng, s->e, (unsigned int)m, s->q, s->draw);
		for (size_t x = 0; x < s->e; x++) {
			s->ocounts[rn * s->e + x] = m > 0 ? s->draw[x] : 0;
			if (tokens_out)
				*tokens_out += s->ocounts[rn * s->e + x];
		}
	}
	return trace_writer_add_counts(w, c->step, c->layer, s->ocounts);
}

enum moe_status trace_rescale(const char *in, const char *out, const struct trace_rescale_opts *o,
			      gsl_rng *rng, uint64_t *tokens_in, uint64_t *tokens_out)
{
	struct trace_reader *rd = NULL;
	struct trace_writer *w = NULL;
	struct trace_writer_opts wo = {o->zstd_level, 0};
	const struct trace_header *h;
	const struct trace_chunk *c;
	struct trace_header nh;
	struct rs s;
	enum moe_status st;
	int counts;

	memset(&s, 0, sizeof s);
	if (o->ranks < 1 || o->ranks > TRACE_MAX_RANKS)
		MOE_FAIL(MOE_EINVAL, "trace rescale: ranks %u: expected 1 to %u", o->ranks,
			 TRACE_MAX_RANKS);
	if (tokens_in)
		*tokens_in = 0;
	if (tokens_out)
		*tokens_out = 0;
	if ((st = trace_reader_open(in, &rd)) != MOE_OK)
		return st;
	h = trace_reader_header(rd);
	counts = (h->flags & TRACE_F_COUNTS) != 0;
	s.e = h->experts;
	s.k = h->top_k;
	s.R = h->ranks;
	s.N = o->ranks;
	s.has_w = (h->flags & TRACE_F_WEIGHTS) != 0;
	s.has_l = (h->flags & TRACE_F_LOGITS) != 0;
	if (counts) {
		if (s.N > SIZE_MAX / 8 / s.e || !(s.ocounts = calloc(s.N * s.e, sizeof *s.ocounts)) ||
		    !(s.q = calloc(s.e, sizeof *s.q)) || !(s.draw = calloc(s.e, sizeof *s.draw)))
			goto nomem;
	} else if (!(s.rcount = calloc(s.R, sizeof *s.rcount)) ||
		   !(s.rstart = calloc(s.R + 1, sizeof *s.rstart)) ||
		   !(s.first = calloc(s.R, sizeof *s.first)) ||
		   !(s.pstart = calloc(s.N + 1, sizeof *s.pstart))) {
		goto nomem;
	}
	nh = *h;
	nh.ranks = o->ranks;
	if ((st = trace_writer_open(out, &nh, &wo, &w)) != MOE_OK)
		goto out;
	while ((st = trace_reader_next(rd, &c)) == MOE_OK && c) {
		if (c->kind == TRACE_CHUNK_COUNTS) {
			if (tokens_in)
				for (size_t x = 0; x < s.R * s.e; x++)
					*tokens_in += c->counts[x];
			if ((st = rescale_counts(&s, c, w, rng, tokens_out)) != MOE_OK)
				goto out;
			continue;
		}
		if (s.have && (c->step != s.step || c->layer != s.layer))
			if ((st = flush_tokens(&s, w, rng, tokens_out)) != MOE_OK)
				goto out;
		if ((st = reserve(&s, s.n + c->n, 0)) != MOE_OK)
			goto out;
		memcpy(s.ranks + s.n, c->ranks, c->n * sizeof *s.ranks);
		memcpy(s.ids + s.n * s.k, c->ids, c->n * s.k * sizeof *s.ids);
		if (s.has_w)
			memcpy(s.w + s.n * s.k, c->weights, c->n * s.k * sizeof *s.w);
		if (s.has_l)
			memcpy(s.lg + s.n * s.e, c->logits, c->n * s.e * sizeof *s.lg);
		s.n += c->n;
		s.step = c->step;
		s.layer = c->layer;
		s.have = 1;
		if (tokens_in)
			*tokens_in += c->n;
	}
	if (st != MOE_OK || (st = flush_tokens(&s, w, rng, tokens_out)) != MOE_OK)
		goto out;
	st = trace_writer_close(w);
	w = NULL;
	goto out;
nomem:
	st = moe_error(MOE_ENOMEM, "trace rescale: out of memory for %zu ranks", s.N);
out:
	trace_writer_abort(w);
	trace_reader_close(rd);
	rs_free(&s);
	return st;
}
