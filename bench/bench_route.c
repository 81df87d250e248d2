/* bench/bench_route.c: routing throughput (moe/route.h) on one core.
 *
 *   bench/bench_route [TOKENS_PER_BATCH [SECONDS_PER_CASE]]
 *
 * Routes batches of random N(0, 1.5) logits (fixed seed) for E = 64, k = 8
 * (OLMoE's shape) and a few other shapes under each policy and prints tokens
 * per second, nccl-tests style: a '#' preamble, a header with units, rows.
 * The logits are generated once; only moe_route_batch is timed, in 5 trials
 * of SECONDS / 5 each; the best trial is printed, by wall clock and by the
 * thread's CPU time (the latter is less disturbed by other processes on a
 * shared machine). */
#include "config.h"
#include "moe/route.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct bcase {
	const char *name;
	int experts, k;
	enum moe_route_kind kind;
	int norm, groups, gpt, bias;
	double cf;
	enum moe_route_overflow overflow;
	double top_p;
};

int main(int argc, char **argv)
{
	static const struct bcase cases[] = {
		{"softmax-topk norm (Mixtral)", 64, 8, MOE_ROUTE_SOFTMAX_TOPK, 1, 1, 1, 0, 0, MOE_ROUTE_DROP, 1},
		{"softmax-topk raw (OLMoE)", 64, 8, MOE_ROUTE_SOFTMAX_TOPK, 0, 1, 1, 0, 0, MOE_ROUTE_DROP, 1},
		{"topk-softmax (gpt-oss)", 64, 8, MOE_ROUTE_TOPK_SOFTMAX, 1, 1, 1, 0, 0, MOE_ROUTE_DROP, 1},
		{"sigmoid-bias", 64, 8, MOE_ROUTE_SIGMOID_BIAS, 1, 1, 1, 1, 0, MOE_ROUTE_DROP, 1},
		{"sigmoid-bias groups 8/4", 64, 8, MOE_ROUTE_SIGMOID_BIAS, 1, 8, 4, 1, 0, MOE_ROUTE_DROP, 1},
		{"softmax-topk cf 1.0 drop", 64, 8, MOE_ROUTE_SOFTMAX_TOPK, 1, 1, 1, 0, 1.0, MOE_ROUTE_DROP, 1},
		{"softmax-topk cf 1.0 reroute", 64, 8, MOE_ROUTE_SOFTMAX_TOPK, 1, 1, 1, 0, 1.0, MOE_ROUTE_REROUTE, 1},
		{"top-p 0.8", 64, 8, MOE_ROUTE_TOP_P, 1, 1, 1, 0, 0, MOE_ROUTE_DROP, 0.8},
		{"softmax-topk norm E8 k2", 8, 2, MOE_ROUTE_SOFTMAX_TOPK, 1, 1, 1, 0, 0, MOE_ROUTE_DROP, 1},
		{"DeepSeek-V3 E256 k8 g8/4", 256, 8, MOE_ROUTE_SIGMOID_BIAS, 1, 8, 4, 1, 0, MOE_ROUTE_DROP, 1},
	};
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 4096;
	double secs = argc > 2 ? atof(argv[2]) : 1.0;
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	float *logits = malloc(n * 256 * sizeof *logits), *bias = malloc(256 * sizeof *bias);
	int32_t *ids = malloc(n * 8 * sizeof *ids);
	float *w = malloc(n * 8 * sizeof *w);
	uint64_t load[256];

	if (!r || !logits || !bias || !ids || !w || n < 1) {
		fprintf(stderr, "bench_route: out of memory or bad batch size\n");
		return 1;
	}
	gsl_rng_set(r, 1);
	for (size_t i = 0; i < n * 256; i++)
		logits[i] = (float)gsl_ran_gaussian(r, 1.5);
	for (int i = 0; i < 256; i++)
		bias[i] = (float)gsl_ran_gaussian(r, 0.01);
	printf("# bench_route: moe_route_batch on one core, batches of %zu tokens, logits N(0, 1.5), seed 1\n", n);
	printf("# %-30s %8s %4s %14s %10s %14s\n", "policy", "experts", "k", "tokens/s", "ns/token",
	       "tokens/cpu-s");
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		const struct bcase *b = &cases[c];
		struct moe_route_policy p;
		struct moe_route_workspace *ws;
		struct moe_route_out out = {ids, w, load, NULL, 0, 0};
		double best_wall = 0, best_cpu = 0;

		moe_route_policy_init(&p, b->experts, b->k);
		p.kind = b->kind;
		p.norm = b->norm;
		p.groups = b->groups;
		p.groups_per_token = b->gpt;
		p.bias = b->bias ? bias : NULL;
		p.capacity_factor = b->cf;
		p.overflow = b->overflow;
		p.top_p = b->top_p;
		if (moe_route_workspace_alloc(&p, n, &ws) != MOE_OK) {
			fprintf(stderr, "bench_route: %s\n", moe_errmsg());
			return 1;
		}
		moe_route_batch(&p, ws, logits, n, &out); /* warm-up */
		for (int trial = 0; trial < 5; trial++) {
			double t0 = clock_s(CLOCK_MONOTONIC), t1 = t0;
			double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), c1;
			size_t tokens = 0;

			while (t1 - t0 < secs / 5) {
				if (moe_route_batch(&p, ws, logits, n, &out) != MOE_OK) {
					fprintf(stderr, "bench_route: %s\n", moe_errmsg());
					return 1;
				}
				tokens += n;
				t1 = clock_s(CLOCK_MONOTONIC);
			}
			c1 = clock_s(CLOCK_THREAD_CPUTIME_ID);
			if (tokens / (t1 - t0) > best_wall)
				best_wall = tokens / (t1 - t0);
			if (c1 > c0 && tokens / (c1 - c0) > best_cpu)
				best_cpu = tokens / (c1 - c0);
		}
		printf("  %-30s %8d %4d %14.0f %10.1f %14.0f\n", b->name, b->experts, b->k,
		       best_wall, 1e9 / best_wall, best_cpu);
		moe_route_workspace_free(ws);
	}
	gsl_rng_free(r);
	free(logits);
	free(bias);
	free(ids);
	free(w);
	return 0;
}
