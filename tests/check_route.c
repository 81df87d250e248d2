/* tests/check_route.c: routing policies (moe/route.h) on hand-worked cases:
 * every policy with exact ids and weights to 1e-6, the tie-break, capacity
 * (which slot overflows, dropped and re-routed), top-p, noise, the
 * auxiliary-loss-free balancer, and every documented error.  The NumPy
 * cross-check on random logits is tests/route_ref.sh. */
#include "config.h"
#include "moe/error.h"
#include "moe/model.h"
#include "moe/route.h"

#include <check.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-6

/* Routes n tokens of policy p; the arrays are caller-sized [n x k], [E]. */
static enum moe_status route(const struct moe_route_policy *p, const float *logits, size_t n,
			     int32_t *ids, float *w, uint64_t *load, uint64_t *dropped,
			     struct moe_route_out *res)
{
	struct moe_route_workspace *ws = NULL;
	struct moe_route_out out = {ids, w, load, dropped, 0, 0};
	enum moe_status st = moe_route_workspace_alloc(p, n, &ws);

	if (st != MOE_OK)
		return st;
	st = moe_route_batch(p, ws, logits, n, &out);
	moe_route_workspace_free(ws);
	if (res)
		*res = out;
	return st;
}

static void expect_ids(const int32_t *ids, const int *want, int n)
{
	for (int i = 0; i < n; i++)
		ck_assert_msg(ids[i] == want[i], "slot %d: id %d, expected %d", i, ids[i], want[i]);
}

static void expect_w(const float *w, const double *want, int n)
{
	for (int i = 0; i < n; i++)
		ck_assert_double_eq_tol(w[i], want[i], TOL);
}

/* ---- core ---- */

START_TEST(softmax_topk_norm_and_raw)
{
	const float l[4] = {1, 3, 2, 0};
	struct moe_route_policy p;
	int32_t ids[2];
	float w[2];
	uint64_t load[4];

	moe_route_policy_init(&p, 4, 2);
	ck_assert_int_eq(route(&p, l, 1, ids, w, load, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){1, 2}, 2);
	expect_w(w, (double[]){0.7310585786300049, 0.2689414213699951}, 2);
	ck_assert_uint_eq(load[0], 0);
	ck_assert_uint_eq(load[1], 1);
	ck_assert_uint_eq(load[2], 1);
	p.norm = 0; /* OLMoE, Switch: raw probabilities */
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){1, 2}, 2);
	expect_w(w, (double[]){0.6439142598879724, 0.23688281808991016}, 2);
	p.scaling = 2;
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_w(w, (double[]){2 * 0.6439142598879724, 2 * 0.23688281808991016}, 2);
}
END_TEST

START_TEST(tie_break_lower_id)
{
	const float l[5] = {2, 5, 5, 1, 5};
	struct moe_route_policy p;
	int32_t ids[3];
	float w[3];

	moe_route_policy_init(&p, 5, 2);
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){1, 2}, 2);
	expect_w(w, (double[]){0.5, 0.5}, 2);
	p.k = 3;
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){1, 2, 4}, 3);
	p.kind = MOE_ROUTE_SIGMOID_BIAS; /* ties among keys too */
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){1, 2, 4}, 3);
	/* all equal: the first k ids */
	{
		const float z[5] = {0, 0, 0, 0, 0};

		p.kind = MOE_ROUTE_TOPK_SOFTMAX;
		ck_assert_int_eq(route(&p, z, 1, ids, w, NULL, NULL, NULL), MOE_OK);
		expect_ids(ids, (int[]){0, 1, 2}, 3);
		expect_w(w, (double[]){1.0 / 3, 1.0 / 3, 1.0 / 3}, 3);
	}
}
END_TEST

START_TEST(topk_then_softmax)
{
	const float l[4] = {0.5f, -1, 2, 1.5f};
	struct moe_route_policy p;
	int32_t ids[2];
	float w[2];

	moe_route_policy_init(&p, 4, 2);
	p.kind = MOE_ROUTE_TOPK_SOFTMAX;
	p.norm = 0; /* irrelevant: a softmax over the k always sums to 1 */
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){2, 3}, 2);
	expect_w(w, (double[]){0.6224593312018546, 1 - 0.6224593312018546}, 2);
}
END_TEST

START_TEST(sigmoid_bias_selection_only)
{
	/* s = [0.5, 0.7310586, 0.2689414, 0.8807971]; keys s + b =
	 * [1.0, 0.7310586, 1.1689414, 0.3807971] -> experts 2, 0; weights
	 * from s: 2.5 * s_i / (s_2 + s_0) */
	const float l[4] = {0, 1, -1, 2};
	const float b[4] = {0.5f, 0, 0.9f, -0.5f};
	struct moe_route_policy p;
	int32_t ids[2];
	float w[2];

	moe_route_policy_init(&p, 4, 2);
	p.kind = MOE_ROUTE_SIGMOID_BIAS;
	p.scaling = 2.5;
	p.bias = b;
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){2, 0}, 2);
	expect_w(w, (double[]){0.8743885226355472, 1.6256114773644528}, 2);
	p.bias = NULL; /* without the bias: experts 3, 1 */
	p.norm = 0;
	p.scaling = 1;
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){3, 1}, 2);
	expect_w(w, (double[]){0.8807970779778823, 0.7310585786300049}, 2);
}
END_TEST

START_TEST(group_limited)
{
	/* groups {0,1} {2,3} {4,5} {6,7}; sigmoid keys, group score = sum of
	 * the top 2: 1.0, 1.7616, 1.5487, 1.0 -> groups 1 and 2 kept; plain
	 * top-2 would take experts 0 and 2 */
	const float l[8] = {3, -3, 2, 2, 1, 1.5f, 0, 0};
	struct moe_route_policy p;
	int32_t ids[2];
	float w[2];

	moe_route_policy_init(&p, 8, 2);
	p.kind = MOE_ROUTE_SIGMOID_BIAS;
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){0, 2}, 2);
	p.groups = 4;
	p.groups_per_token = 2;
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){2, 3}, 2);
	expect_w(w, (double[]){0.5, 0.5}, 2);
	/* group_topn 1 (DeepSeek-V2's max per group): 0.9526, 0.8808, 0.8176,
	 * 0.5 -> groups 0 and 1 -> experts 0, 2 */
	p.group_topn = 1;
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){0, 2}, 2);
	/* one group per token, k = 2 inside it */
	p.group_topn = 2;
	p.groups_per_token = 1;
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){2, 3}, 2);
}
END_TEST

START_TEST(node_limited)
{
	/* node 0 = {0, 2}, node 1 = {1, 3}; softmax probabilities are
	 * proportional to e^3, e^2.5, 1, e^2.4 */
	const float l[4] = {3, 2.5f, 0, 2.4f};
	const int node_of[4] = {0, 1, 0, 1};
	struct moe_route_policy p;
	int32_t ids[2];
	float w[2];

	moe_route_policy_init(&p, 4, 2);
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){0, 1}, 2);
	p.node_of = node_of;
	p.nodes = 2;
	p.max_nodes = 1;
	/* top 2 per node: node 0: 20.09 + 1, node 1: 12.18 + 11.02 -> node 1 */
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){1, 3}, 2);
	expect_w(w, (double[]){0.52497918747894, 1 - 0.52497918747894}, 2);
	/* top 1 per node: node 0 (20.09 > 12.18) -> experts 0, 2 */
	p.group_topn = 1;
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){0, 2}, 2);
	/* both nodes allowed: no limit */
	p.max_nodes = 2;
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){0, 1}, 2);
}
END_TEST

START_TEST(capacity_drop_and_reroute)
{
	/* E = 2, k = 1, n = 4, cf = 1: C = ceil(4 * 1 / 2) = 2; tokens 0..2 pick
	 * expert 0, token 3 expert 1: token 2 overflows */
	const float l[8] = {1, 0, 1, 0, 2, 0, 0, 1};
	struct moe_route_policy p;
	int32_t ids[4];
	float w[4];
	uint64_t load[2], dropped[2];
	struct moe_route_out res;

	moe_route_policy_init(&p, 2, 1);
	p.capacity_factor = 1;
	ck_assert_uint_eq(moe_route_capacity(&p, 4), 2);
	ck_assert_int_eq(route(&p, l, 4, ids, w, load, dropped, &res), MOE_OK);
	expect_ids(ids, (int[]){0, 0, MOE_ROUTE_NONE, 1}, 4);
	expect_w(w, (double[]){1, 1, 0, 1}, 4);
	ck_assert_uint_eq(load[0], 2);
	ck_assert_uint_eq(load[1], 1);
	ck_assert_uint_eq(dropped[0], 1);
	ck_assert_uint_eq(dropped[1], 0);
	ck_assert_uint_eq(res.n_dropped, 1);
	ck_assert_uint_eq(res.n_rerouted, 0);
	/* re-routed to expert 1; weight exp(0 - 2) / 1 (norm over {0}) */
	p.overflow = MOE_ROUTE_REROUTE;
	ck_assert_int_eq(route(&p, l, 4, ids, w, load, dropped, &res), MOE_OK);
	expect_ids(ids, (int[]){0, 0, 1, 1}, 4);
	expect_w(w, (double[]){1, 1, 0.1353352832366127, 1}, 4);
	ck_assert_uint_eq(load[0], 2);
	ck_assert_uint_eq(load[1], 2);
	ck_assert_uint_eq(dropped[0], 0);
	ck_assert_uint_eq(res.n_dropped, 0);
	ck_assert_uint_eq(res.n_rerouted, 1);
	/* cf 0.5: C = 1; token 1 re-routed to expert 1, token 2 finds no room,
	 * token 3's own choice (1) is then full too */
	p.capacity_factor = 0.5;
	ck_assert_int_eq(route(&p, l, 4, ids, w, load, dropped, &res), MOE_OK);
	expect_ids(ids, (int[]){0, 1, MOE_ROUTE_NONE, MOE_ROUTE_NONE}, 4);
	ck_assert_uint_eq(dropped[0], 1);
	ck_assert_uint_eq(dropped[1], 1);
	ck_assert_uint_eq(res.n_dropped, 2);
	ck_assert_uint_eq(res.n_rerouted, 1);
}
END_TEST

START_TEST(capacity_rank_priority)
{
	/* E = 3, k = 2, n = 3, cf = 1: C = 2.  Choices: t0 [0, 1], t1 [1, 0],
	 * t2 [1, 2].  Rank 0: t0->0, t1->1, t2->1 (expert 1 full); rank 1:
	 * t0->1 overflows, t1->0, t2->2.  (Token order would drop t2's first
	 * choice instead.) */
	const float l[9] = {3, 2, 0, 2, 3, 0, 0, 3, 2};
	struct moe_route_policy p;
	int32_t ids[6];
	float w[6];
	uint64_t load[3], dropped[3];
	struct moe_route_out res;

	moe_route_policy_init(&p, 3, 2);
	p.capacity_factor = 1;
	ck_assert_int_eq(route(&p, l, 3, ids, w, load, dropped, &res), MOE_OK);
	expect_ids(ids, (int[]){0, MOE_ROUTE_NONE, 1, 0, 1, 2}, 6);
	ck_assert_double_eq_tol(w[0], 0.7310585786300049, TOL); /* not renormalized */
	ck_assert(w[1] == 0);
	ck_assert_uint_eq(dropped[1], 1);
	ck_assert_uint_eq(load[0], 2);
	ck_assert_uint_eq(load[1], 2);
	ck_assert_uint_eq(load[2], 1);
	/* re-route: t0's slot 1 goes to expert 2 (not t0's, room), weight
	 * e^(0-3) / (1 + e^-1) */
	p.overflow = MOE_ROUTE_REROUTE;
	ck_assert_int_eq(route(&p, l, 3, ids, w, load, dropped, &res), MOE_OK);
	expect_ids(ids, (int[]){0, 2, 1, 0, 1, 2}, 6);
	ck_assert_double_eq_tol(w[1], 0.03639726343516549, TOL);
	ck_assert_uint_eq(load[2], 2);
	ck_assert_uint_eq(res.n_rerouted, 1);
}
END_TEST

START_TEST(capacity_formula)
{
	struct moe_route_policy p;

	moe_route_policy_init(&p, 1, 1);
	ck_assert_uint_eq(moe_route_capacity(&p, 100), SIZE_MAX);
	p.capacity_factor = 1.1;
	ck_assert_uint_eq(moe_route_capacity(&p, 100), 110);
	moe_route_policy_init(&p, 4, 2);
	p.capacity_factor = 1.25;
	ck_assert_uint_eq(moe_route_capacity(&p, 10), 7);
	moe_route_policy_init(&p, 64, 8);
	p.capacity_factor = 1;
	ck_assert_uint_eq(moe_route_capacity(&p, 1), 1);
	ck_assert_uint_eq(moe_route_capacity(&p, 4096), 512);
}
END_TEST

START_TEST(top_p_variable_count)
{
	/* probabilities 0.5, 0.3, 0.15, 0.05 */
	const float l[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
	struct moe_route_policy p;
	int32_t ids[3];
	float w[3];
	uint64_t load[4];

	moe_route_policy_init(&p, 4, 3);
	p.kind = MOE_ROUTE_TOP_P;
	p.top_p = 0.7;
	ck_assert_int_eq(route(&p, l, 1, ids, w, load, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){0, 1, MOE_ROUTE_NONE}, 3);
	expect_w(w, (double[]){0.625, 0.375, 0}, 3);
	ck_assert_uint_eq(load[0] + load[1] + load[2] + load[3], 2);
	p.norm = 0;
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_w(w, (double[]){0.5, 0.3, 0}, 3);
	p.top_p = 0.4; /* the first expert alone reaches it */
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){0, MOE_ROUTE_NONE, MOE_ROUTE_NONE}, 3);
	p.top_p = 0.99; /* capped at k = 3 */
	ck_assert_int_eq(route(&p, l, 1, ids, w, NULL, NULL, NULL), MOE_OK);
	expect_ids(ids, (int[]){0, 1, 2}, 3);
	expect_w(w, (double[]){0.5, 0.3, 0.15}, 3);
}
END_TEST

START_TEST(noisy_topk)
{
	/* two experts, logits 0 and 0.5, noise std 1: expert 0 wins when
	 * n0 - n1 > 0.5, probability P(Z > 0.5 / sqrt 2) = 0.361837 */
	enum { N = 20000 };
	float *l = malloc(sizeof(float) * 2 * N);
	int32_t *ids = malloc(sizeof(int32_t) * N), *ids2 = malloc(sizeof(int32_t) * N);
	float *w = malloc(sizeof(float) * N);
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	struct moe_route_policy p;
	int zero = 0;

	for (int t = 0; t < N; t++) {
		l[2 * t] = 0;
		l[2 * t + 1] = 0.5f;
	}
	moe_route_policy_init(&p, 2, 1);
	p.norm = 0;
	p.noise_std = 1;
	p.rng = r;
	gsl_rng_set(r, 7);
	ck_assert_int_eq(route(&p, l, N, ids, w, NULL, NULL, NULL), MOE_OK);
	for (int t = 0; t < N; t++) {
		zero += ids[t] == 0;
		/* weights from the unnoised logits */
		ck_assert_double_eq_tol(w[t], ids[t] == 0 ? 0.3775406687981454 : 0.6224593312018546,
					TOL);
	}
	ck_assert_double_eq_tol((double)zero / N, 0.361837, 0.01);
	/* same seed, same routes */
	gsl_rng_set(r, 7);
	ck_assert_int_eq(route(&p, l, N, ids2, w, NULL, NULL, NULL), MOE_OK);
	ck_assert_int_eq(memcmp(ids, ids2, sizeof(int32_t) * N), 0);
	gsl_rng_free(r);
	free(l);
	free(ids);
	free(ids2);
	free(w);
}
END_TEST

START_TEST(balancer_moves_bias)
{
	struct moe_route_balancer *b;
	const uint64_t load[3] = {5, 1, 3};
	const float *bias;

	ck_assert_int_eq(moe_route_balancer_new(3, 0.1, &b), MOE_OK);
	bias = moe_route_balancer_bias(b);
	moe_route_balancer_update(b, load);
	ck_assert_double_eq_tol(bias[0], -0.1, 1e-7);
	ck_assert_double_eq_tol(bias[1], 0.1, 1e-7);
	ck_assert(bias[2] == 0);
	moe_route_balancer_free(b);
	moe_route_balancer_free(NULL);
}
END_TEST

START_TEST(balancer_replay_balances)
{
	/* 4 experts, every token prefers expert 0 by a margin; sigmoid scores
	 * with the balancer's bias: after enough steps the bias steers tokens
	 * away and the max load falls */
	enum { N = 64, E = 4, STEPS = 40 };
	float l[N * E];
	int32_t ids[N * 2];
	float w[N * 2];
	uint64_t load[E];
	struct moe_route_policy p;
	struct moe_route_workspace *ws;
	struct moe_route_balancer *b;
	struct moe_route_out out = {ids, w, load, NULL, 0, 0};
	uint64_t first_max = 0, last_max = 0;
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);

	gsl_rng_set(r, 3);
	for (int i = 0; i < N * E; i++)
		l[i] = (float)(gsl_rng_uniform(r) + (i % E == 0 ? 1.5 : 0));
	moe_route_policy_init(&p, E, 2);
	p.kind = MOE_ROUTE_SIGMOID_BIAS;
	ck_assert_int_eq(moe_route_balancer_new(E, 0.01, &b), MOE_OK);
	p.bias = moe_route_balancer_bias(b);
	ck_assert_int_eq(moe_route_workspace_alloc(&p, N, &ws), MOE_OK);
	for (int s = 0; s < STEPS; s++) {
		uint64_t mx = 0;

		ck_assert_int_eq(moe_route_batch(&p, ws, l, N, &out), MOE_OK);
		for (int i = 0; i < E; i++)
			mx = load[i] > mx ? load[i] : mx;
		if (s == 0)
			first_max = mx;
		last_max = mx;
		moe_route_balancer_update(b, load);
	}
	ck_assert_uint_eq(first_max, N);    /* everyone took expert 0 */
	ck_assert_uint_le(last_max, N / 2 + 8); /* mean is 32 */
	ck_assert(moe_route_balancer_bias(b)[0] < 0);
	moe_route_workspace_free(ws);
	moe_route_balancer_free(b);
	gsl_rng_free(r);
}
END_TEST

START_TEST(from_model_presets)
{
	struct moe_model m;
	struct moe_route_policy p;

	ck_assert_int_eq(moe_model_load("deepseek-v3", &m), MOE_OK);
	ck_assert_int_eq(moe_route_policy_from_model(&m, &p), MOE_OK);
	ck_assert_int_eq(p.kind, MOE_ROUTE_SIGMOID_BIAS);
	ck_assert_int_eq(p.experts, 256);
	ck_assert_int_eq(p.k, 8);
	ck_assert_int_eq(p.groups, 8);
	ck_assert_int_eq(p.groups_per_token, 4);
	ck_assert_int_eq(p.norm, 1);
	ck_assert_double_eq(p.scaling, 2.5);
	ck_assert_int_eq(moe_model_load("mixtral-8x7b", &m), MOE_OK);
	ck_assert_int_eq(moe_route_policy_from_model(&m, &p), MOE_OK);
	ck_assert_int_eq(p.kind, MOE_ROUTE_SOFTMAX_TOPK);
	ck_assert_int_eq(p.k, 2);
	ck_assert_int_eq(p.experts, 8);
}
END_TEST

START_TEST(names_round_trip)
{
	enum moe_route_kind k;
	enum moe_route_overflow o;

	for (int i = 0; i < MOE_ROUTE_KIND_COUNT; i++) {
		ck_assert(moe_route_kind_parse(moe_route_kind_name((enum moe_route_kind)i), &k));
		ck_assert_int_eq(k, i);
	}
	ck_assert(!moe_route_kind_parse("softmax", &k));
	ck_assert_ptr_null(moe_route_kind_name(MOE_ROUTE_KIND_COUNT));
	ck_assert(moe_route_overflow_parse("reroute", &o));
	ck_assert_int_eq(o, MOE_ROUTE_REROUTE);
	ck_assert(!moe_route_overflow_parse("keep", &o));
}
END_TEST

/* ---- errors ---- */

static void expect_invalid(const struct moe_route_policy *p, const char *what)
{
	struct moe_route_workspace *ws = (void *)1;

	ck_assert_int_eq(moe_route_policy_validate(p), MOE_EINVAL);
	ck_assert_msg(strstr(moe_errmsg(), what), "'%s' lacks '%s'", moe_errmsg(), what);
	ck_assert_int_eq(moe_route_workspace_alloc(p, 4, &ws), MOE_EINVAL);
	ck_assert_ptr_null(ws);
}

START_TEST(invalid_policies)
{
	struct moe_route_policy p;
	const int bad_node[4] = {0, 1, 2, 0};
	const float bad_bias[4] = {0, NAN, 0, 0};

	moe_route_policy_init(&p, 4, 5);
	expect_invalid(&p, "k 5");
	moe_route_policy_init(&p, 0, 1);
	expect_invalid(&p, "experts 0");
	moe_route_policy_init(&p, 6, 2);
	p.groups = 4;
	expect_invalid(&p, "does not divide");
	p.groups = 3;
	p.groups_per_token = 4;
	expect_invalid(&p, "groups_per_token 4");
	p.groups_per_token = 1;
	p.k = 3;
	expect_invalid(&p, "cannot be picked");
	moe_route_policy_init(&p, 4, 2);
	p.noise_std = 1;
	expect_invalid(&p, "random number generator");
	moe_route_policy_init(&p, 4, 2);
	p.kind = MOE_ROUTE_TOP_P;
	p.top_p = 0;
	expect_invalid(&p, "top_p");
	moe_route_policy_init(&p, 4, 2);
	p.node_of = bad_node;
	p.nodes = 2;
	p.max_nodes = 1;
	expect_invalid(&p, "node_of[2] = 2");
	p.max_nodes = 3;
	expect_invalid(&p, "max_nodes 3");
	moe_route_policy_init(&p, 4, 2);
	p.capacity_factor = -1;
	expect_invalid(&p, "capacity factor");
	moe_route_policy_init(&p, 4, 2);
	p.scaling = 0;
	expect_invalid(&p, "scaling");
	moe_route_policy_init(&p, 4, 2);
	p.bias = bad_bias;
	expect_invalid(&p, "bias[1]");
	moe_route_policy_init(&p, 4, 2);
	p.kind = MOE_ROUTE_KIND_COUNT;
	expect_invalid(&p, "kind");
}
END_TEST

START_TEST(nonfinite_logits_and_shape)
{
	float l[8] = {0, 1, 2, 3, 0, 1, INFINITY, 3};
	struct moe_route_policy p, q;
	struct moe_route_workspace *ws;
	int32_t ids[4];
	float w[4];
	struct moe_route_out out = {ids, w, NULL, NULL, 0, 0};

	moe_route_policy_init(&p, 4, 2);
	ck_assert_int_eq(moe_route_workspace_alloc(&p, 2, &ws), MOE_OK);
	ck_assert_int_eq(moe_route_batch(&p, ws, l, 2, &out), MOE_EFORMAT);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "token 1 expert 2: logit is infinite"));
	l[6] = NAN;
	ck_assert_int_eq(moe_route_batch(&p, ws, l, 2, &out), MOE_EFORMAT);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "token 1 expert 2: logit is NaN"));
	l[6] = 2;
	ck_assert_int_eq(moe_route_batch(&p, ws, l, 3, &out), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "exceeds"));
	q = p;
	q.k = 1;
	ck_assert_int_eq(moe_route_batch(&q, ws, l, 2, &out), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "does not match"));
	q = p;
	q.capacity_factor = 1;
	q.overflow = MOE_ROUTE_REROUTE; /* needs the kept keys */
	ck_assert_int_eq(moe_route_batch(&q, ws, l, 2, &out), MOE_EINVAL);
	ck_assert_int_eq(moe_route_batch(&p, ws, l, 2, &out), MOE_OK);
	moe_route_workspace_free(ws);
	moe_route_workspace_free(NULL);
	ck_assert_int_eq(moe_route_balancer_new(0, 0.1, (struct moe_route_balancer **)&ws),
			 MOE_EINVAL);
	ck_assert_int_eq(moe_route_balancer_new(2, -1, (struct moe_route_balancer **)&ws),
			 MOE_EINVAL);
}
END_TEST

static Suite *route_suite(void)
{
	Suite *s = suite_create("route");
	TCase *c = tcase_create("core"), *e = tcase_create("errors");

	tcase_add_test(c, softmax_topk_norm_and_raw);
	tcase_add_test(c, tie_break_lower_id);
	tcase_add_test(c, topk_then_softmax);
	tcase_add_test(c, sigmoid_bias_selection_only);
	tcase_add_test(c, group_limited);
	tcase_add_test(c, node_limited);
	tcase_add_test(c, capacity_drop_and_reroute);
	tcase_add_test(c, capacity_rank_priority);
	tcase_add_test(c, capacity_formula);
	tcase_add_test(c, top_p_variable_count);
	tcase_add_test(c, noisy_topk);
	tcase_add_test(c, balancer_moves_bias);
	tcase_add_test(c, balancer_replay_balances);
	tcase_add_test(c, from_model_presets);
	tcase_add_test(c, names_round_trip);
	tcase_add_test(e, invalid_policies);
	tcase_add_test(e, nonfinite_logits_and_shape);
	suite_add_tcase(s, c);
	suite_add_tcase(s, e);
	return s;
}

/* ---- dump mode, for tests/route_ref.sh ----
 *
 *   check_route dump LOGITS N E OUT [key=value ...]
 *
 * routes the [N x E] float32 logits in the raw file LOGITS under the policy
 * given by the keys (kind k norm scaling groups gpt topn nodes max_nodes
 * node_of=a,b,... cf overflow top_p bias=FILE) and writes OUT.ids (int32
 * [N x k]), OUT.w (float32 [N x k]), OUT.load and OUT.dropped (uint64 [E]).
 * Exit 0, or 1 with a message. */

static int read_raw(const char *path, void *buf, size_t bytes)
{
	FILE *f = fopen(path, "rb");
	size_t got;

	if (!f)
		return -1;
	got = fread(buf, 1, bytes, f);
	fclose(f);
	return got == bytes ? 0 : -1;
}

static int write_raw(const char *prefix, const char *ext, const void *buf, size_t bytes)
{
	char path[4096];
	FILE *f;
	int ok;

	snprintf(path, sizeof path, "%s.%s", prefix, ext);
	f = fopen(path, "wb");
	if (!f)
		return -1;
	ok = fwrite(buf, 1, bytes, f) == bytes;
	return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int dump_main(int argc, char **argv)
{
	size_t n, e;
	float *l = NULL, *w = NULL, *bias = NULL;
	int32_t *ids = NULL;
	int *node_of = NULL;
	uint64_t *load = NULL, *dropped = NULL;
	struct moe_route_policy p;
	struct moe_route_workspace *ws = NULL;
	struct moe_route_out out;
	int rc = 1;
	const char *bad_arg = "";

	if (argc < 6) {
		fprintf(stderr, "usage: check_route dump LOGITS N E OUT [key=value ...]\n");
		return 1;
	}
	n = strtoul(argv[3], NULL, 10);
	e = strtoul(argv[4], NULL, 10);
	if (n < 1 || e < 1 || e > 65536 || n > (1u << 24)) {
		fprintf(stderr, "check_route dump: bad N or E\n");
		return 1;
	}
	moe_route_policy_init(&p, (int)e, 1);
	l = malloc(n * e * sizeof *l);
	bias = malloc(e * sizeof *bias);
	node_of = malloc(e * sizeof *node_of);
	load = malloc(e * sizeof *load);
	dropped = malloc(e * sizeof *dropped);
	if (!l || !bias || !node_of || !load || !dropped || read_raw(argv[2], l, n * e * 4)) {
		fprintf(stderr, "check_route dump: %s: cannot read %zu x %zu floats\n", argv[2], n, e);
		goto out;
	}
	for (int i = 6; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		const char *v;

		bad_arg = argv[i];
		if (!eq)
			goto bad;
		*eq = 0;
		v = eq + 1;
		if (!strcmp(argv[i], "kind")) {
			if (!moe_route_kind_parse(v, &p.kind))
				goto bad;
		} else if (!strcmp(argv[i], "overflow")) {
			if (!moe_route_overflow_parse(v, &p.overflow))
				goto bad;
		} else if (!strcmp(argv[i], "k")) {
			p.k = atoi(v);
		} else if (!strcmp(argv[i], "norm")) {
			p.norm = atoi(v);
		} else if (!strcmp(argv[i], "scaling")) {
			p.scaling = atof(v);
		} else if (!strcmp(argv[i], "groups")) {
			p.groups = atoi(v);
		} else if (!strcmp(argv[i], "gpt")) {
			p.groups_per_token = atoi(v);
		} else if (!strcmp(argv[i], "topn")) {
			p.group_topn = atoi(v);
		} else if (!strcmp(argv[i], "nodes")) {
			p.nodes = atoi(v);
		} else if (!strcmp(argv[i], "max_nodes")) {
			p.max_nodes = atoi(v);
		} else if (!strcmp(argv[i], "cf")) {
			p.capacity_factor = atof(v);
		} else if (!strcmp(argv[i], "top_p")) {
			p.top_p = atof(v);
		} else if (!strcmp(argv[i], "bias")) {
			if (read_raw(v, bias, e * sizeof *bias))
				goto bad;
			p.bias = bias;
		} else if (!strcmp(argv[i], "node_of")) {
			char *end = (char *)v;

			for (size_t j = 0; j < e; j++) {
				node_of[j] = (int)strtol(end, &end, 10);
				if (*end == ',')
					end++;
			}
			p.node_of = node_of;
		} else {
			goto bad;
		}
	}
	ids = malloc(n * (size_t)p.k * sizeof *ids);
	w = malloc(n * (size_t)p.k * sizeof *w);
	if (!ids || !w)
		goto out;
	out = (struct moe_route_out){ids, w, load, dropped, 0, 0};
	if (moe_route_workspace_alloc(&p, n, &ws) != MOE_OK ||
	    moe_route_batch(&p, ws, l, n, &out) != MOE_OK) {
		fprintf(stderr, "check_route dump: %s\n", moe_errmsg());
		goto out;
	}
	if (write_raw(argv[5], "ids", ids, n * (size_t)p.k * sizeof *ids) ||
	    write_raw(argv[5], "w", w, n * (size_t)p.k * sizeof *w) ||
	    write_raw(argv[5], "load", load, e * sizeof *load) ||
	    write_raw(argv[5], "dropped", dropped, e * sizeof *dropped)) {
		fprintf(stderr, "check_route dump: cannot write %s.*\n", argv[5]);
		goto out;
	}
	rc = 0;
	goto out;
bad:
	fprintf(stderr, "check_route dump: bad option '%s'\n", bad_arg);
out:
	moe_route_workspace_free(ws);
	free(l);
	free(w);
	free(ids);
	free(bias);
	free(node_of);
	free(load);
	free(dropped);
	return rc;
}

int main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	if (argc > 1 && strcmp(argv[1], "dump") == 0)
		return dump_main(argc, argv);
	sr = srunner_create(route_suite());

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
