/* tests/check_tracegen.c: synthetic traces (traces/gen.h): the statistics of
 * each generator against its parameters, identical bytes for a seed, the
 * Zipf fit; statistics (traces/stats.h) on a small hand-computed trace;
 * re-routing and rescaling (traces/reroute.h, traces/rescale.h). */
#include "config.h"
#include "moe/error.h"
#include "moe/route.h"
#include "traces/gen.h"
#include "traces/reroute.h"
#include "traces/rescale.h"
#include "traces/stats.h"
#include "traces/trace.h"
#include "tests/testutil.h"

#include <check.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* trace_gen_opts_init, then the shape: layers, experts, top-k, source ranks,
 * steps and tokens per rank; the rest stays at its default. */
static void gen_opts(struct trace_gen_opts *o, uint32_t layers, uint32_t experts, uint32_t top_k,
		     uint32_t ranks, uint64_t steps, uint32_t tokens_per_rank)
{
	trace_gen_opts_init(o);
	o->layers = layers;
	o->experts = experts;
	o->top_k = top_k;
	o->ranks = ranks;
	o->steps = steps;
	o->tokens_per_rank = tokens_per_rank;
}

static void gen_ok(const struct trace_gen_opts *o, unsigned long seed, const char *path)
{
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);

	gsl_rng_set(r, seed);
	ck_assert_msg(trace_gen_write(o, r, path, NULL) == MOE_OK, "%s", moe_errmsg());
	gsl_rng_free(r);
}

/* Per (step, layer, rank) first-choice counts: out[((s * L + l) * R + r) * E + e]. */
static uint64_t *first_choices(const char *path, struct trace_header *hout)
{
	struct trace_reader *rd;
	const struct trace_chunk *c;
	const struct trace_header *h;
	uint64_t *fc;

	ck_assert_int_eq(trace_reader_open(path, &rd), MOE_OK);
	h = trace_reader_header(rd);
	*hout = *h;
	fc = calloc(h->steps * h->layers * h->ranks * h->experts, sizeof *fc);
	while (trace_reader_next(rd, &c) == MOE_OK && c)
		for (size_t t = 0; t < c->n; t++) {
			int32_t e = c->ids[t * c->k];

			if (e >= 0)
				fc[((c->step * h->layers + c->layer) * h->ranks + c->ranks[t]) *
					   h->experts + (size_t)e]++;
		}
	trace_reader_close(rd);
	return fc;
}

static int cmp_desc_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x < y) - (x > y);
}

static int files_equal(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	int ca, cb, eq = 1;

	ck_assert_ptr_nonnull(fa);
	ck_assert_ptr_nonnull(fb);
	do {
		ca = getc(fa);
		cb = getc(fb);
		if (ca != cb)
			eq = 0;
	} while (eq && ca != EOF);
	fclose(fa);
	fclose(fb);
	return eq;
}

/* ---- generators ---- */

START_TEST(uniform_first_choice)
{
	struct trace_gen_opts o;
	struct trace_header h;
	uint64_t *fc;

	gen_opts(&o, 1, 8, 2, 1, 1, 40000);
	gen_ok(&o, 11, test_path("u.moetrace"));
	fc = first_choices(test_path("u.moetrace"), &h);
	ck_assert_uint_eq(h.experts, 8);
	ck_assert_uint_eq(h.top_k, 2);
	ck_assert_uint_eq(h.steps, 1);
	for (int e = 0; e < 8; e++) /* sd 0.0017 */
		ck_assert_double_eq_tol(fc[e] / 40000.0, 0.125, 0.008);
	free(fc);
}
END_TEST

START_TEST(zipf_first_choice)
{
	/* first choices follow pi: the sorted frequencies match 1/(j+1)^1.2 */
	struct trace_gen_opts o;
	struct trace_header h;
	uint64_t *fc;
	double z = 0, s;

	gen_opts(&o, 1, 16, 4, 1, 1, 50000);
	o.zipf_s = 1.2;
	gen_ok(&o, 5, test_path("z.moetrace"));
	fc = first_choices(test_path("z.moetrace"), &h);
	qsort(fc, 16, sizeof *fc, cmp_desc_u64);
	for (int j = 0; j < 16; j++)
		z += pow(j + 1, -1.2);
	for (int j = 0; j < 16; j++)
		ck_assert_double_eq_tol(fc[j] / 50000.0, pow(j + 1, -1.2) / z, 0.008);
	ck_assert_int_eq(trace_gen_fit_zipf(fc, 16, &s, NULL), MOE_OK);
	ck_assert_double_eq_tol(s, 1.2, 0.05);
	free(fc);
}
END_TEST

START_TEST(same_seed_same_bytes)
{
	struct trace_gen_opts o;

	gen_opts(&o, 3, 16, 2, 2, 3, 300);
	o.zipf_s = 1;
	o.drift = 20;
	o.rank_skew = 0.5;
	o.layer_corr = 0.4;
	o.logits = 1;
	gen_ok(&o, 42, test_path("s1.moetrace"));
	gen_ok(&o, 42, test_path("s2.moetrace"));
	gen_ok(&o, 43, test_path("s3.moetrace"));
	ck_assert(files_equal(test_path("s1.moetrace"), test_path("s2.moetrace")));
	ck_assert(!files_equal(test_path("s1.moetrace"), test_path("s3.moetrace")));
}
END_TEST

START_TEST(layer_correlation)
{
	/* rho = 1: layer 1's first choice is a function of layer 0's; rho = 0.5:
	 * it equals f(e) for 0.5 + 0.5 / E of tokens (uniform popularity) */
	struct trace_gen_opts o;
	struct trace_reader *rd;
	const struct trace_chunk *c;
	enum { E = 8, T = 20000 };
	int32_t *first0 = malloc(T * sizeof *first0);
	uint64_t pair[E][E];

	for (int pass = 0; pass < 2; pass++) {
		double rho = pass ? 0.5 : 1.0, hit = 0;

		gen_opts(&o, 2, E, 2, 1, 1, T);
		o.layer_corr = rho;
		gen_ok(&o, 9, test_path("c.moetrace"));
		memset(pair, 0, sizeof pair);
		ck_assert_int_eq(trace_reader_open(test_path("c.moetrace"), &rd), MOE_OK);
		{
			size_t t0 = 0, t1 = 0;

			while (trace_reader_next(rd, &c) == MOE_OK && c)
				for (size_t t = 0; t < c->n; t++) {
					if (c->layer == 0)
						first0[t0++] = c->ids[t * 2];
					else
						pair[first0[t1++]][c->ids[t * 2]]++;
				}
			ck_assert_uint_eq(t0, T);
			ck_assert_uint_eq(t1, T);
		}
		trace_reader_close(rd);
		for (int a = 0; a < E; a++) {
			uint64_t row = 0, mx = 0;

			for (int b = 0; b < E; b++) {
				row += pair[a][b];
				mx = pair[a][b] > mx ? pair[a][b] : mx;
			}
			if (rho == 1.0)
				ck_assert_uint_eq(mx, row);
			hit += (double)mx;
		}
		ck_assert_double_eq_tol(hit / T, rho + (1 - rho) / E, 0.02);
	}
	free(first0);
}
END_TEST

START_TEST(layer_matrix)
{
	/* rho = 1 and a matrix: expert a at layer 0 goes on to a + 1 (mod E)
	 * with weight 3, to a with weight 1; row 5 is empty: no following */
	enum { E = 8, T = 20000 };
	struct trace_gen_opts o;
	struct trace_reader *rd;
	const struct trace_chunk *c;
	double m[E * E] = {0};
	int32_t *first0 = malloc(T * sizeof *first0);
	size_t t0 = 0, t1 = 0, next = 0, same = 0, from = 0;

	for (int a = 0; a < E; a++)
		if (a != 5) {
			m[a * E + (a + 1) % E] = 3;
			m[a * E + a] = 1;
		}
	gen_opts(&o, 2, E, 2, 1, 1, T);
	o.layer_corr = 1;
	o.layer_matrix = m;
	gen_ok(&o, 12, test_path("m.moetrace"));
	ck_assert_int_eq(trace_reader_open(test_path("m.moetrace"), &rd), MOE_OK);
	while (trace_reader_next(rd, &c) == MOE_OK && c)
		for (size_t t = 0; t < c->n; t++) {
			if (c->layer == 0) {
				first0[t0++] = c->ids[t * 2];
				continue;
			}
			{
				int32_t a = first0[t1++], b = c->ids[t * 2];

				if (a == 5)
					continue;
				from++;
				next += b == (a + 1) % E;
				same += b == a;
			}
		}
	trace_reader_close(rd);
	ck_assert_uint_eq(next + same, from);
	ck_assert_double_eq_tol((double)next / from, 0.75, 0.015);
	m[3] = -1;
	ck_assert_int_eq(trace_gen_write(&o, NULL, test_path("m2.moetrace"), NULL), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "layer matrix [0][3]"));
	free(first0);
}
END_TEST

START_TEST(rank_skew)
{
	/* sigma = 1: each rank uses its own permutation of pi; sigma = 0 all
	 * ranks share pi (total variation between two ranks: sampling noise) */
	struct trace_gen_opts o;
	struct trace_header h;
	enum { E = 16, T = 20000 };

	for (int pass = 0; pass < 2; pass++) {
		uint64_t *fc;
		double tv = 0;

		gen_opts(&o, 1, E, 2, 2, 1, T);
		o.zipf_s = 1.5;
		o.rank_skew = pass ? 1.0 : 0.0;
		gen_ok(&o, 21, test_path("r.moetrace"));
		fc = first_choices(test_path("r.moetrace"), &h);
		for (int e = 0; e < E; e++)
			tv += fabs((double)fc[e] - (double)fc[E + e]) / (2.0 * T);
		if (pass)
			ck_assert_msg(tv > 0.2, "tv %g", tv);
		else
			ck_assert_msg(tv < 0.03, "tv %g", tv);
		free(fc);
	}
}
END_TEST

START_TEST(drift_moves_hot_experts)
{
	/* step-to-step change of first-choice frequencies: with C = 10 far
	 * above the sampling noise that C = 1e9 (no real drift) shows */
	struct trace_gen_opts o;
	struct trace_header h;
	enum { E = 16, T = 20000, S = 6 };
	double change[2];

	for (int pass = 0; pass < 2; pass++) {
		uint64_t *fc;
		double tv = 0;

		gen_opts(&o, 1, E, 2, 1, S, T);
		o.zipf_s = 1;
		o.drift = pass ? 1e9 : 10;
		gen_ok(&o, 3, test_path("d.moetrace"));
		fc = first_choices(test_path("d.moetrace"), &h);
		ck_assert_uint_eq(h.steps, S);
		for (int s = 1; s < S; s++)
			for (int e = 0; e < E; e++)
				tv += fabs((double)fc[s * E + e] - (double)fc[(s - 1) * E + e]) /
				      (2.0 * T);
		change[pass] = tv / (S - 1);
		free(fc);
	}
	ck_assert_msg(change[1] < 0.03, "no-drift change %g", change[1]);
	ck_assert_msg(change[0] > 0.1, "drift change %g", change[0]);
}
END_TEST

START_TEST(drift_matches_dirichlet)
{
	/* step 0 -> 1 of each layer: pi_1 ~ Dirichlet(C pi_0 + 0.01), C = 1000,
	 * so E|pi_1,i - pi_0,i| = sqrt(2 / pi) sd (normal approximation of the
	 * Beta marginal: var = m (1 - m) / (C + 0.01 E + 1)), plus the sampling
	 * noise of two steps of T first choices (var 2 pi (1 - pi) / T); the
	 * mean total variation over 40 layers must match within 12% (3 sd) */
	enum { E = 16, T = 30000, L = 40 };
	struct trace_gen_opts o;
	struct trace_header h;
	uint64_t *fc;
	double z = 0, want = 0, got = 0;

	for (int j = 0; j < E; j++)
		z += 1.0 / (j + 1);
	for (int j = 0; j < E; j++) {
		double pi = 1.0 / (j + 1) / z, a0 = 1000 + 0.01 * E;
		double m = (1000 * pi + 0.01) / a0;
		double var = m * (1 - m) / (a0 + 1) + 2 * pi * (1 - pi) / T;

		want += 0.5 * sqrt(2 / M_PI) * sqrt(var);
	}
	gen_opts(&o, L, E, 2, 1, 2, T);
	o.zipf_s = 1;
	o.drift = 1000;
	gen_ok(&o, 31, test_path("dd.moetrace"));
	fc = first_choices(test_path("dd.moetrace"), &h);
	for (int l = 0; l < L; l++)
		for (int e = 0; e < E; e++)
			got += fabs((double)fc[(L + l) * E + e] - (double)fc[l * E + e]) / (2.0 * T);
	got /= L;
	ck_assert_msg(fabs(got / want - 1) < 0.12, "mean TV %g, expected %g", got, want);
	free(fc);
}
END_TEST

START_TEST(counts_level)
{
	struct trace_gen_opts o;
	struct trace_reader *rd;
	const struct trace_chunk *c;
	int chunks = 0;

	gen_opts(&o, 2, 8, 2, 3, 2, 100);
	o.counts = 1;
	gen_ok(&o, 1, test_path("k.moetrace"));
	ck_assert_int_eq(trace_reader_open(test_path("k.moetrace"), &rd), MOE_OK);
	ck_assert(trace_reader_header(rd)->flags & TRACE_F_COUNTS);
	while (trace_reader_next(rd, &c) == MOE_OK && c) {
		ck_assert_int_eq(c->kind, TRACE_CHUNK_COUNTS);
		for (int r = 0; r < 3; r++) {
			uint64_t sum = 0;

			for (int e = 0; e < 8; e++)
				sum += c->counts[r * 8 + e];
			ck_assert_uint_eq(sum, 200); /* 100 tokens x k = 2 */
		}
		chunks++;
	}
	ck_assert_int_eq(chunks, 4);
	trace_reader_close(rd);
}
END_TEST

START_TEST(logits_reroute_consistently)
{
	/* the stored routes are the policy applied to the stored logits */
	struct trace_gen_opts o;
	struct trace_reader *rd;
	const struct trace_chunk *c;
	struct moe_route_policy p;
	struct moe_route_workspace *ws;
	int32_t ids[500 * 2];
	float w[500 * 2];

	gen_opts(&o, 1, 8, 2, 1, 1, 500);
	o.zipf_s = 0.8;
	o.logits = 1;
	gen_ok(&o, 2, test_path("l.moetrace"));
	moe_route_policy_init(&p, 8, 2);
	ck_assert_int_eq(moe_route_workspace_alloc(&p, 500, &ws), MOE_OK);
	ck_assert_int_eq(trace_reader_open(test_path("l.moetrace"), &rd), MOE_OK);
	while (trace_reader_next(rd, &c) == MOE_OK && c) {
		struct moe_route_out out = {ids, w, NULL, NULL, 0, 0};

		ck_assert_ptr_nonnull(c->logits);
		ck_assert_int_eq(moe_route_batch(&p, ws, c->logits, c->n, &out), MOE_OK);
		ck_assert_int_eq(memcmp(ids, c->ids, c->n * 2 * sizeof *ids), 0);
		for (size_t i = 0; i < c->n * 2; i++)
			ck_assert_double_eq_tol(w[i], c->weights[i], 1e-6);
	}
	trace_reader_close(rd);
	moe_route_workspace_free(ws);
}
END_TEST

START_TEST(popularity_reproduces_loads)
{
	/* measured-like slot shares under top-2: invert, generate, compare */
	const double share[8] = {0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05};
	double pi[8], bad[8] = {0.6, 0.1, 0.1, 0.1, 0.1, 0, 0, 0}, zero[8] = {0};
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	struct trace_gen_opts o;
	struct trace_stats_opts so;
	struct trace_stats *s;
	double sum = 0;

	gsl_rng_set(r, 5);
	ck_assert_msg(trace_gen_popularity_for_loads(8, 2, share, 20000, r, pi) == MOE_OK, "%s",
		      moe_errmsg());
	for (int i = 0; i < 8; i++)
		sum += pi[i];
	ck_assert_double_eq_tol(sum, 1, 1e-9);
	ck_assert(pi[0] > 0.3); /* top-2 flattens: the first choice must be steeper */
	gen_opts(&o, 1, 8, 2, 1, 1, 30000);
	o.popularity = pi;
	gen_ok(&o, 6, test_path("pop.moetrace"));
	trace_stats_opts_init(&so);
	ck_assert_int_eq(trace_stats_compute(test_path("pop.moetrace"), &so, &s), MOE_OK);
	for (int i = 0; i < 8; i++) /* no permutation: experts keep their ids */
		ck_assert_double_eq_tol((double)s->layer[0].load[i] / s->layer[0].slots, share[i],
					0.01);
	trace_stats_free(s);
	ck_assert_int_eq(trace_gen_popularity_for_loads(8, 2, bad, 20000, r, pi), MOE_ERANGE);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "above the 1/2"));
	ck_assert_int_eq(trace_gen_popularity_for_loads(8, 2, zero, 20000, r, pi), MOE_EINVAL);
	o.popularity = zero;
	ck_assert_int_eq(trace_gen_write(&o, r, test_path("pop0.moetrace"), NULL), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "all zero"));
	gsl_rng_free(r);
}
END_TEST

/* ---- fit ---- */

START_TEST(zipf_fit_exact)
{
	uint64_t load[10];
	double s, r2;

	for (int j = 0; j < 10; j++)
		load[9 - j] = (uint64_t)llround(1e9 * pow(j + 1, -1.5)); /* any order */
	ck_assert_int_eq(trace_gen_fit_zipf(load, 10, &s, &r2), MOE_OK);
	ck_assert_double_eq_tol(s, 1.5, 1e-6);
	ck_assert_double_eq_tol(r2, 1, 1e-9);
	load[0] = 0; /* zeros are dropped */
	ck_assert_int_eq(trace_gen_fit_zipf(load, 10, &s, NULL), MOE_OK);
	ck_assert_double_eq_tol(s, 1.5, 1e-6);
}
END_TEST

START_TEST(zipf_inversion)
{
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	double s1, s8;

	gsl_rng_set(r, 1);
	/* top-1: loads are first choices, the exponent carries over */
	ck_assert_msg(trace_gen_zipf_for_loads(16, 1, 1.0, 40000, r, &s1) == MOE_OK, "%s", moe_errmsg());
	ck_assert_double_eq_tol(s1, 1.0, 0.06);
	/* top-8 of 64 flattens the loads: a steeper popularity is needed */
	ck_assert_int_eq(trace_gen_zipf_for_loads(64, 8, 0.5, 20000, r, &s8), MOE_OK);
	ck_assert_msg(s8 > 0.52 && s8 < 0.7, "s8 %g", s8);
	ck_assert_int_eq(trace_gen_zipf_for_loads(64, 8, 50, 2000, r, &s8), MOE_ERANGE);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "beyond top-8"));
	gsl_rng_free(r);
}
END_TEST

/* ---- statistics ---- */

/* 1 layer, E = 4, k = 2, 2 ranks, 2 steps:
 *   step 0: t0 rank 0 [0, 1], t1 rank 0 [0, 2], t2 rank 1 [0, 1]
 *   step 1: t3 rank 1 [3, none]
 * every token's logits are log [1, 2, 3, 4] (p = [.1, .2, .3, .4]). */
static void write_small(const char *path, int counts)
{
	struct trace_header h;
	struct trace_writer *w;
	const float lg[4] = {0, logf(2), logf(3), logf(4)};
	float logits[12], wts[6] = {.5f, .5f, .5f, .5f, .5f, .5f};

	for (int i = 0; i < 12; i++)
		logits[i] = lg[i % 4];
	trace_header_init(&h, 1, 4, 2, 2);
	h.flags = counts ? TRACE_F_COUNTS : TRACE_F_WEIGHTS | TRACE_F_LOGITS;
	ck_assert_int_eq(trace_writer_open(path, &h, NULL, &w), MOE_OK);
	if (counts) {
		const uint64_t c0[8] = {2, 1, 1, 0, 1, 1, 0, 0}, c1[8] = {0, 0, 0, 0, 0, 0, 0, 1};

		ck_assert_int_eq(trace_writer_add_counts(w, 0, 0, c0), MOE_OK);
		ck_assert_int_eq(trace_writer_add_counts(w, 1, 0, c1), MOE_OK);
	} else {
		const uint32_t r0[3] = {0, 0, 1}, r1[1] = {1};
		const int32_t i0[6] = {0, 1, 0, 2, 0, 1}, i1[2] = {3, TRACE_EXPERT_NONE};
		const float w1[2] = {1, 0};

		ck_assert_int_eq(trace_writer_add_tokens(w, 0, 0, 3, r0, i0, wts, logits), MOE_OK);
		ck_assert_int_eq(trace_writer_add_tokens(w, 1, 0, 1, r1, i1, w1, logits), MOE_OK);
	}
	ck_assert_int_eq(trace_writer_close(w), MOE_OK);
}

START_TEST(stats_hand_computed)
{
	struct trace_stats_opts o;
	struct trace_stats *s;
	const struct trace_layer_stats *ls;

	write_small(test_path("small.moetrace"), 0);
	trace_stats_opts_init(&o);
	o.capacity_factor = 1;
	o.ep = 2;
	ck_assert_int_eq(trace_stats_compute(test_path("small.moetrace"), &o, &s), MOE_OK);
	ck_assert_uint_eq(s->layers, 1);
	ls = &s->layer[0];
	ck_assert_uint_eq(ls->steps, 2);
	ck_assert_uint_eq(ls->tokens, 4);
	ck_assert_uint_eq(ls->slots, 7);
	ck_assert_uint_eq(ls->load[0], 3);
	ck_assert_uint_eq(ls->load[1], 2);
	ck_assert_uint_eq(ls->load[2], 1);
	ck_assert_uint_eq(ls->load[3], 1);
	ck_assert_double_eq_tol(ls->max_over_mean, 3 / 1.75, 1e-12);
	ck_assert_double_eq_tol(ls->step_max_over_mean, (2.0 + 4.0) / 2, 1e-12);
	ck_assert_double_eq_tol(ls->cv, 0.47380354147934284, 1e-12);
	ck_assert_double_eq_tol(ls->entropy_bits, 1.8423709931771088, 1e-12);
	ck_assert_double_eq_tol(ls->entropy_norm, 0.9211854965885544, 1e-12);
	/* step 0: C = ceil(3 * 2 / 4) = 2, expert 0 has 3; step 1: C = 1 */
	ck_assert_uint_eq(ls->dropped, 1);
	ck_assert(ls->has_logits);
	/* 4 * (3/4 * .1 + 2/4 * .2 + 1/4 * .3 + 1/4 * .4) */
	ck_assert_double_eq_tol(ls->aux_loss, 1.4, 1e-6);
	ck_assert_double_eq_tol(ls->z_loss, 5.301898110478399, 1e-5);
	ck_assert_uint_eq(ls->npairs, 2);
	ck_assert_uint_eq(ls->pairs[0].a, 0);
	ck_assert_uint_eq(ls->pairs[0].b, 1);
	ck_assert_uint_eq(ls->pairs[0].count, 2);
	ck_assert_uint_eq(ls->pairs[1].a, 0);
	ck_assert_uint_eq(ls->pairs[1].b, 2);
	ck_assert_uint_eq(ls->pairs[1].count, 1);
	/* contiguous: experts {0,1} on EP rank 0, {2,3} on 1 */
	ck_assert_uint_eq(ls->ep_tokens[0], 2);
	ck_assert_uint_eq(ls->ep_tokens[1], 1);
	ck_assert_uint_eq(ls->ep_tokens[2], 1);
	ck_assert_uint_eq(ls->ep_tokens[3], 1);
	trace_stats_free(s);
	/* round-robin: t1's experts 0 and 2 share EP rank 0: sent once */
	o.placement = MOE_PLACE_ROUND_ROBIN;
	o.capacity_factor = 0;
	ck_assert_int_eq(trace_stats_compute(test_path("small.moetrace"), &o, &s), MOE_OK);
	ls = &s->layer[0];
	ck_assert_uint_eq(ls->dropped, 0);
	ck_assert_uint_eq(ls->ep_tokens[0], 2);
	ck_assert_uint_eq(ls->ep_tokens[1], 1);
	ck_assert_uint_eq(ls->ep_tokens[2], 1);
	ck_assert_uint_eq(ls->ep_tokens[3], 2);
	trace_stats_free(s);
	trace_stats_free(NULL);
}
END_TEST

START_TEST(stats_count_level)
{
	struct trace_stats_opts o;
	struct trace_stats *s;
	const struct trace_layer_stats *ls;

	write_small(test_path("smallc.moetrace"), 1);
	trace_stats_opts_init(&o);
	o.capacity_factor = 1;
	o.ep = 2;
	ck_assert_int_eq(trace_stats_compute(test_path("smallc.moetrace"), &o, &s), MOE_OK);
	ls = &s->layer[0];
	ck_assert_uint_eq(ls->slots, 7);
	ck_assert_uint_eq(ls->tokens, 3); /* 6 / 2 + 1 / 2 */
	ck_assert_double_eq_tol(ls->max_over_mean, 3 / 1.75, 1e-12);
	ck_assert_uint_eq(ls->dropped, 1);
	ck_assert(!ls->has_logits);
	ck_assert_uint_eq(ls->npairs, 0);
	/* slots, not de-duplicated */
	ck_assert_uint_eq(ls->ep_tokens[0], 3);
	ck_assert_uint_eq(ls->ep_tokens[1], 1);
	ck_assert_uint_eq(ls->ep_tokens[2], 2);
	ck_assert_uint_eq(ls->ep_tokens[3], 1);
	trace_stats_free(s);
}
END_TEST

START_TEST(stats_errors)
{
	struct trace_stats_opts o;
	struct trace_stats *s = (void *)1;
	const int32_t bad[4] = {0, 1, 2, 0};

	write_small(test_path("small.moetrace"), 0);
	trace_stats_opts_init(&o);
	o.ep = 3;
	ck_assert_int_eq(trace_stats_compute(test_path("small.moetrace"), &o, &s), MOE_EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "does not divide"));
	o.ep = 2;
	o.expert_rank = bad;
	ck_assert_int_eq(trace_stats_compute(test_path("small.moetrace"), &o, &s), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "expert 2 placed on EP rank 2"));
	o.expert_rank = NULL;
	o.placement = MOE_PLACE_BALANCED;
	ck_assert_int_eq(trace_stats_compute(test_path("small.moetrace"), &o, &s), MOE_EINVAL);
	trace_stats_opts_init(&o);
	ck_assert_int_ne(trace_stats_compute(test_path("missing.moetrace"), &o, &s), MOE_OK);
}
END_TEST

/* ---- re-routing ---- */

static void gen_logits_trace(const char *path, uint32_t ranks, uint64_t steps, double zipf)
{
	struct trace_gen_opts o;

	gen_opts(&o, 2, 8, 2, ranks, steps, 400);
	o.zipf_s = zipf;
	o.logits = 1;
	gen_ok(&o, 77, path);
}

START_TEST(reroute_top1_vs_top2)
{
	/* same logits: top-1's expert is top-2's first slot, weight 1;
	 * top-2 again reproduces the original exactly */
	struct moe_route_policy p;
	struct trace_reroute_opts ro;
	struct trace_reader *a, *b;
	const struct trace_chunk *ca, *cb;
	uint64_t tokens[2], dropped[2], rerouted[2];
	struct trace_reroute_result res = {tokens, dropped, rerouted};
	size_t seen = 0;

	gen_logits_trace(test_path("g.moetrace"), 2, 2, 1.0);
	moe_route_policy_init(&p, 8, 1);
	trace_reroute_opts_init(&ro);
	ro.policy = &p;
	ck_assert_int_eq(trace_reroute(test_path("g.moetrace"), test_path("g1.moetrace"), &ro,
				       &res), MOE_OK);
	ck_assert_uint_eq(tokens[0], 1600);
	ck_assert_uint_eq(tokens[1], 1600);
	ck_assert_uint_eq(dropped[0] + rerouted[0], 0);
	ck_assert_int_eq(trace_reader_open(test_path("g.moetrace"), &a), MOE_OK);
	ck_assert_int_eq(trace_reader_open(test_path("g1.moetrace"), &b), MOE_OK);
	ck_assert_uint_eq(trace_reader_header(b)->top_k, 1);
	ck_assert(trace_reader_header(b)->flags & TRACE_F_LOGITS);
	while (trace_reader_next(a, &ca) == MOE_OK && ca) {
		ck_assert_int_eq(trace_reader_next(b, &cb), MOE_OK);
		ck_assert_ptr_nonnull(cb);
		ck_assert_uint_eq(ca->n, cb->n);
		ck_assert_uint_eq(ca->step, cb->step);
		for (size_t t = 0; t < ca->n; t++) {
			ck_assert_int_eq(cb->ids[t], ca->ids[t * 2]);
			ck_assert_uint_eq(cb->ranks[t], ca->ranks[t]);
			ck_assert_double_eq_tol(cb->weights[t], 1, 1e-6);
		}
		seen += ca->n;
	}
	ck_assert_uint_eq(seen, 3200);
	trace_reader_close(a);
	trace_reader_close(b);
	/* top-2 again: identical routes */
	p.k = 2;
	ck_assert_int_eq(trace_reroute(test_path("g.moetrace"), test_path("g2.moetrace"), &ro,
				       NULL), MOE_OK);
	ck_assert_int_eq(trace_reader_open(test_path("g.moetrace"), &a), MOE_OK);
	ck_assert_int_eq(trace_reader_open(test_path("g2.moetrace"), &b), MOE_OK);
	while (trace_reader_next(a, &ca) == MOE_OK && ca) {
		ck_assert_int_eq(trace_reader_next(b, &cb), MOE_OK);
		ck_assert_int_eq(memcmp(ca->ids, cb->ids, ca->n * 2 * sizeof *ca->ids), 0);
		for (size_t i = 0; i < ca->n * 2; i++)
			ck_assert_double_eq_tol(ca->weights[i], cb->weights[i], 1e-6);
	}
	trace_reader_close(a);
	trace_reader_close(b);
}
END_TEST

START_TEST(reroute_capacity_matches_stats)
{
	/* dropping at cf 1: the slots the re-routing drops are the slots the
	 * statistics count over capacity on the original (same batches) */
	struct moe_route_policy p;
	struct trace_reroute_opts ro;
	struct trace_stats_opts so;
	struct trace_stats *s;
	uint64_t tokens[2], dropped[2], rerouted[2];
	struct trace_reroute_result res = {tokens, dropped, rerouted};

	gen_logits_trace(test_path("g.moetrace"), 3, 2, 1.2);
	moe_route_policy_init(&p, 8, 2);
	p.capacity_factor = 1;
	trace_reroute_opts_init(&ro);
	ro.policy = &p;
	ck_assert_int_eq(trace_reroute(test_path("g.moetrace"), test_path("gc.moetrace"), &ro,
				       &res), MOE_OK);
	trace_stats_opts_init(&so);
	so.capacity_factor = 1;
	ck_assert_int_eq(trace_stats_compute(test_path("g.moetrace"), &so, &s), MOE_OK);
	ck_assert_uint_gt(dropped[0], 100);
	ck_assert_uint_eq(dropped[0], s->layer[0].dropped);
	ck_assert_uint_eq(dropped[1], s->layer[1].dropped);
	trace_stats_free(s);
	/* and the re-routed trace holds exactly that many fewer slots */
	ck_assert_int_eq(trace_stats_compute(test_path("gc.moetrace"), &so, &s), MOE_OK);
	ck_assert_uint_eq(s->layer[0].slots, 2400 * 2 - dropped[0]);
	ck_assert_uint_eq(s->layer[0].dropped, 0);
	trace_stats_free(s);
	/* re-routing overflow instead: fewer drops, some moved */
	p.overflow = MOE_ROUTE_REROUTE;
	ck_assert_int_eq(trace_reroute(test_path("g.moetrace"), test_path("gr.moetrace"), &ro,
				       &res), MOE_OK);
	ck_assert_uint_gt(rerouted[0], 0);
}
END_TEST

START_TEST(reroute_balancer_flattens)
{
	/* DeepSeek-V3 balancing replayed over 30 steps of a skewed trace: the
	 * last 5 steps' imbalance is well below the first step's */
	struct trace_gen_opts o;
	struct moe_route_policy p;
	struct trace_reroute_opts ro;
	struct trace_reader *rd;
	const struct trace_chunk *c;
	double first = 0, last = 0;

	gen_opts(&o, 1, 8, 2, 1, 30, 2000);
	o.zipf_s = 1.5;
	o.logits = 1;
	gen_ok(&o, 4, test_path("b.moetrace"));
	moe_route_policy_init(&p, 8, 2);
	p.kind = MOE_ROUTE_SIGMOID_BIAS;
	trace_reroute_opts_init(&ro);
	ro.policy = &p;
	ro.balance_rate = 0.02;
	ck_assert_int_eq(trace_reroute(test_path("b.moetrace"), test_path("bb.moetrace"), &ro,
				       NULL), MOE_OK);
	ck_assert_int_eq(trace_reader_open(test_path("bb.moetrace"), &rd), MOE_OK);
	while (trace_reader_next(rd, &c) == MOE_OK && c) {
		uint64_t load[8] = {0}, mx = 0;

		trace_chunk_loads(c, load);
		for (int e = 0; e < 8; e++)
			mx = load[e] > mx ? load[e] : mx;
		if (c->step == 0)
			first = mx / 500.0; /* mean load 4000 / 8 */
		if (c->step >= 25)
			last += mx / 500.0 / 5;
	}
	trace_reader_close(rd);
	ck_assert_msg(first > 2 && last < 1.4, "max/mean first %g last %g", first, last);
}
END_TEST

START_TEST(reroute_errors)
{
	struct moe_route_policy p;
	struct trace_reroute_opts ro;
	struct trace_gen_opts o;

	trace_gen_opts_init(&o); /* ids and weights only */
	gen_ok(&o, 1, test_path("nl.moetrace"));
	moe_route_policy_init(&p, 8, 1);
	trace_reroute_opts_init(&ro);
	ro.policy = &p;
	ck_assert_int_eq(trace_reroute(test_path("nl.moetrace"), test_path("nlo.moetrace"), &ro,
				       NULL), MOE_EUNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "no router logits"));
	ck_assert_int_eq(access(test_path("nlo.moetrace"), F_OK), -1);
	write_small(test_path("smallc.moetrace"), 1);
	ck_assert_int_eq(trace_reroute(test_path("smallc.moetrace"), test_path("nlo.moetrace"), &ro,
				       NULL), MOE_EUNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "counts only"));
	gen_logits_trace(test_path("g.moetrace"), 1, 1, 0);
	moe_route_policy_init(&p, 16, 1);
	ck_assert_int_eq(trace_reroute(test_path("g.moetrace"), test_path("nlo.moetrace"), &ro,
				       NULL), MOE_EINVAL);
	ck_assert_int_eq(access(test_path("nlo.moetrace"), F_OK), -1);
	ro.policy = NULL;
	ck_assert_int_eq(trace_reroute(test_path("g.moetrace"), test_path("nlo.moetrace"), &ro,
				       NULL), MOE_EINVAL);
}
END_TEST

/* ---- rescaling ---- */

static void rescale_ok(const char *in, const char *out, uint32_t ranks, unsigned long seed)
{
	struct trace_rescale_opts ro = {ranks, 0};
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);

	gsl_rng_set(r, seed);
	ck_assert_msg(trace_rescale(in, out, &ro, r, NULL, NULL) == MOE_OK, "%s", moe_errmsg());
	gsl_rng_free(r);
}

START_TEST(rescale_keeps_paths_and_loads)
{
	/* 2 recorded ranks, layer 1 fully determined by layer 0 (rho = 1):
	 * rescaled to 6 ranks, every token still follows the same map, and the
	 * per-layer load shares stay within sampling noise */
	struct trace_gen_opts o;
	struct trace_stats_opts so;
	struct trace_stats *a, *b;
	struct trace_reader *rd;
	const struct trace_chunk *c;
	enum { T = 3000 };
	int32_t *first0 = malloc(6 * T * sizeof *first0);
	int32_t map[8];
	size_t n0 = 0, n1 = 0;

	gen_opts(&o, 2, 8, 2, 2, 1, T);
	o.zipf_s = 1;
	o.rank_skew = 0.5;
	o.layer_corr = 1;
	gen_ok(&o, 8, test_path("p.moetrace"));
	rescale_ok(test_path("p.moetrace"), test_path("p6.moetrace"), 6, 1);
	rescale_ok(test_path("p.moetrace"), test_path("p6b.moetrace"), 6, 1);
	ck_assert(files_equal(test_path("p6.moetrace"), test_path("p6b.moetrace")));
	for (int e = 0; e < 8; e++)
		map[e] = -1;
	ck_assert_int_eq(trace_reader_open(test_path("p6.moetrace"), &rd), MOE_OK);
	ck_assert_uint_eq(trace_reader_header(rd)->ranks, 6);
	while (trace_reader_next(rd, &c) == MOE_OK && c)
		for (size_t t = 0; t < c->n; t++) {
			if (c->layer == 0) {
				first0[n0++] = c->ids[t * 2];
			} else {
				int32_t e0 = first0[n1++], e1 = c->ids[t * 2];

				ck_assert(map[e0] < 0 || map[e0] == e1);
				map[e0] = e1;
			}
		}
	trace_reader_close(rd);
	ck_assert_uint_eq(n0, 6 * T);
	ck_assert_uint_eq(n1, 6 * T);
	trace_stats_opts_init(&so);
	ck_assert_int_eq(trace_stats_compute(test_path("p.moetrace"), &so, &a), MOE_OK);
	ck_assert_int_eq(trace_stats_compute(test_path("p6.moetrace"), &so, &b), MOE_OK);
	for (int l = 0; l < 2; l++)
		for (int e = 0; e < 8; e++)
			ck_assert_double_eq_tol((double)b->layer[l].load[e] / b->layer[l].slots,
						(double)a->layer[l].load[e] / a->layer[l].slots, 0.02);
	trace_stats_free(a);
	trace_stats_free(b);
	/* fewer ranks: 2 -> 1 pools both, at the average tokens per rank */
	rescale_ok(test_path("p.moetrace"), test_path("p1.moetrace"), 1, 2);
	ck_assert_int_eq(trace_stats_compute(test_path("p1.moetrace"), &so, &b), MOE_OK);
	ck_assert_uint_eq(b->header.ranks, 1);
	ck_assert_uint_eq(b->layer[0].tokens, T);
	trace_stats_free(b);
	free(first0);
}
END_TEST

START_TEST(rescale_counts)
{
	/* small counts: rank 0 totals 4 then 0, rank 1 totals 2 then 1; to 4
	 * ranks: new ranks 0 and 2 mirror rank 0, 1 and 3 mirror rank 1 */
	struct trace_reader *rd;
	const struct trace_chunk *c;
	const uint64_t want[2][4] = {{4, 2, 4, 2}, {0, 1, 0, 1}};

	write_small(test_path("smallc.moetrace"), 1);
	rescale_ok(test_path("smallc.moetrace"), test_path("smallc4.moetrace"), 4, 1);
	ck_assert_int_eq(trace_reader_open(test_path("smallc4.moetrace"), &rd), MOE_OK);
	ck_assert_uint_eq(trace_reader_header(rd)->ranks, 4);
	while (trace_reader_next(rd, &c) == MOE_OK && c)
		for (int r = 0; r < 4; r++) {
			uint64_t sum = 0;

			for (int e = 0; e < 4; e++) {
				sum += c->counts[r * 4 + e];
				/* never an expert the pool did not use */
				if (c->step == 1)
					ck_assert(e == 3 || c->counts[r * 4 + e] == 0);
			}
			ck_assert_uint_eq(sum, want[c->step][r]);
		}
	trace_reader_close(rd);
}
END_TEST

START_TEST(rescale_errors)
{
	/* layer 1 of step 0 holds 1 token of rank 0, layer 0 held 2 */
	struct trace_header h;
	struct trace_writer *w;
	struct trace_rescale_opts ro = {4, 0};
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	const uint32_t rk[2] = {0, 0};
	const int32_t ids[2] = {0, 1};
	const float wt[2] = {1, 1};

	trace_header_init(&h, 2, 4, 1, 1);
	ck_assert_int_eq(trace_writer_open(test_path("bad.moetrace"), &h, NULL, &w), MOE_OK);
	ck_assert_int_eq(trace_writer_add_tokens(w, 0, 0, 2, rk, ids, wt, NULL), MOE_OK);
	ck_assert_int_eq(trace_writer_add_tokens(w, 0, 1, 1, rk, ids, wt, NULL), MOE_OK);
	ck_assert_int_eq(trace_writer_close(w), MOE_OK);
	ck_assert_int_eq(trace_rescale(test_path("bad.moetrace"), test_path("bad4.moetrace"), &ro,
				       r, NULL, NULL), MOE_EFORMAT);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "step 0 layer 1 holds 1 tokens from rank 0"));
	ck_assert_int_eq(access(test_path("bad4.moetrace"), F_OK), -1);
	ro.ranks = 0;
	ck_assert_int_eq(trace_rescale(test_path("bad.moetrace"), test_path("bad4.moetrace"), &ro,
				       r, NULL, NULL), MOE_EINVAL);
	ro.ranks = 2;
	ck_assert_int_ne(trace_rescale(test_path("nothere.moetrace"), test_path("bad4.moetrace"),
				       &ro, r, NULL, NULL), MOE_OK);
	gsl_rng_free(r);
}
END_TEST

/* ---- errors ---- */

START_TEST(gen_errors)
{
	struct trace_gen_opts o;
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	struct moe_route_policy p;
	uint64_t one[3] = {0, 5, 0};
	double s;

	trace_gen_opts_init(&o);
	o.top_k = 9;
	ck_assert_int_eq(trace_gen_write(&o, r, test_path("e.moetrace"), NULL), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "top-k 9"));
	trace_gen_opts_init(&o);
	o.layer_corr = 1.5;
	ck_assert_int_eq(trace_gen_write(&o, r, test_path("e.moetrace"), NULL), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "layer correlation"));
	trace_gen_opts_init(&o);
	o.rank_skew = -0.1;
	ck_assert_int_eq(trace_gen_write(&o, r, test_path("e.moetrace"), NULL), MOE_EINVAL);
	trace_gen_opts_init(&o);
	o.counts = o.logits = 1;
	ck_assert_int_eq(trace_gen_write(&o, r, test_path("e.moetrace"), NULL), MOE_EINVAL);
	trace_gen_opts_init(&o);
	moe_route_policy_init(&p, 16, 2);
	o.policy = &p;
	ck_assert_int_eq(trace_gen_write(&o, r, test_path("e.moetrace"), NULL), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "routing policy"));
	ck_assert_int_eq(access(test_path("e.moetrace"), F_OK), -1);
	trace_gen_opts_init(&o);
	ck_assert_int_eq(trace_gen_write(&o, r, "/nonexistent-dir/x.moetrace", NULL), MOE_EIO);
	ck_assert_int_eq(trace_gen_fit_zipf(one, 3, &s, NULL), MOE_EINVAL);
	ck_assert_int_eq(trace_gen_zipf_for_loads(1, 1, 1, 1000, r, &s), MOE_EINVAL);
	gsl_rng_free(r);
}
END_TEST

static Suite *tracegen_suite(void)
{
	Suite *s = suite_create("tracegen");
	TCase *c = tcase_create("core"), *e = tcase_create("errors");

	tcase_set_timeout(c, 120);
	tcase_add_test(c, uniform_first_choice);
	tcase_add_test(c, zipf_first_choice);
	tcase_add_test(c, same_seed_same_bytes);
	tcase_add_test(c, layer_correlation);
	tcase_add_test(c, layer_matrix);
	tcase_add_test(c, rank_skew);
	tcase_add_test(c, drift_moves_hot_experts);
	tcase_add_test(c, drift_matches_dirichlet);
	tcase_add_test(c, counts_level);
	tcase_add_test(c, logits_reroute_consistently);
	tcase_add_test(c, popularity_reproduces_loads);
	tcase_add_test(c, zipf_fit_exact);
	tcase_add_test(c, zipf_inversion);
	tcase_add_test(c, stats_hand_computed);
	tcase_add_test(c, stats_count_level);
	tcase_add_test(c, reroute_top1_vs_top2);
	tcase_add_test(c, reroute_capacity_matches_stats);
	tcase_add_test(c, reroute_balancer_flattens);
	tcase_add_test(c, rescale_keeps_paths_and_loads);
	tcase_add_test(c, rescale_counts);
	tcase_add_test(e, gen_errors);
	tcase_add_test(e, rescale_errors);
	tcase_add_test(e, reroute_errors);
	tcase_add_test(e, stats_errors);
	suite_add_tcase(s, c);
	suite_add_tcase(s, e);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	gsl_set_error_handler_off();
	if (test_tmpdir_make("check_tracegen.") != 0) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	sr = srunner_create(tracegen_suite());
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (test_tmpdir_remove() != 0)
		fprintf(stderr, "check_tracegen: could not remove %s\n", test_dir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
