/* bench/bench_cuda.c: the CUDA MoE forward pass (profiler/cuda/cuda_backend.h)
 * on the shapes, BF16 with FP32 accumulation, per-stage times from
 * CUDA events and TFLOP/s counted on the rows actually routed:
 *
 *   (a) hidden 1024, FFN 2816, 8 experts, top-2, 512 tokens
 *   (b) hidden 2048, FFN 1024, 64 experts, top-8, 512 tokens (OLMoE-like)
 *   (d) (a) with 4096 tokens
 *   (m) Mixtral-8x7B's layer: hidden 4096, FFN 14336, 8 experts, top-2, 4096 tokens
 *
 * With two GPUs or more, each shape's dispatch and combine over all of them
 * too (NCCL, the traffic of the layer's own routing under expert
 * parallelism, prof_cuda_a2a_layer_bytes).
 *
 * Usage: bench_cuda [--reps N] [--warmup N] [--shapes abdm] [--device N] [--fp16] [--loop]
 * Exit status 1 with "no CUDA device" on a machine without one.
 */
#include "config.h"
#include "profiler/cuda/cuda_backend.h"
#include "profiler/forward.h"
#include "profiler/harness.h"
#include "profiler/weights.h"

#include <gsl/gsl_rng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shape {
	char name;
	int hidden, ffn, experts, top_k, tokens;
};

static const struct shape shapes[] = {
	{'a', 1024, 2816, 8, 2, 512},
	{'b', 2048, 1024, 64, 8, 512},
	{'d', 1024, 2816, 8, 2, 4096},
	{'m', 4096, 14336, 8, 2, 4096},
};

/* With two GPUs or more: the layer's dispatch and combine over all of them
 * (expert parallelism as profiler/ep.h places it), from its own routing. */
static void run_ep(const struct prof_cuda *g, const struct shape *sh, int gpus, int warmup, int reps)
{
	struct prof_cuda_a2a_result ar;
	size_t *m = malloc((size_t)gpus * (size_t)gpus * sizeof(size_t));
	enum moe_status st = MOE_ENOMEM;

	if (m)
		st = prof_cuda_a2a_layer_bytes(prof_cuda_ids(g), (size_t)sh->tokens, sh->top_k,
					       sh->experts, gpus, (size_t)sh->hidden * 2, m);
	if (st == MOE_OK)
		st = prof_cuda_a2a_exchange(gpus, m, warmup, reps, &ar);
	if (st == MOE_OK)
		printf("EP over %d GPUs (NCCL, BF16 rows): dispatch %.1f us, combine %.1f us; largest sender %.2f MiB\n",
		       gpus, ar.dispatch_s * 1e6, ar.combine_s * 1e6, ar.bytes_max / 1048576);
	else
		printf("EP over %d GPUs: %s\n", gpus, moe_errmsg());
	free(m);
}

static int run_shape(const struct shape *sh, const struct prof_cuda_opts *o, int warmup, int reps,
		     int gpus)
{
	struct prof_layer_cfg c;
	struct prof_weights *w = NULL;
	struct prof_cuda *g = NULL;
	struct prof_result r;
	gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
	size_t n = (size_t)sh->tokens, H = (size_t)sh->hidden;
	float *x = malloc(n * H * sizeof(float)), *y = malloc(n * H * sizeof(float));
	enum moe_status st = MOE_ENOMEM;

	memset(&c, 0, sizeof c);
	c.hidden = sh->hidden;
	c.ffn = sh->ffn;
	c.experts = sh->experts;
	c.top_k = sh->top_k;
	c.kind = MOE_ROUTE_SOFTMAX_TOPK;
	c.norm = 1;
	c.scaling = 1;
	snprintf(c.model_type, sizeof c.model_type, "bench-%c", sh->name);
	gsl_rng_set(rng, 1);
	if (!x || !y || (st = prof_weights_random(&c, rng, &w)) != MOE_OK)
		goto out;
	for (size_t i = 0; i < n * H; i++)
		x[i] = (float)(2 * gsl_rng_uniform(rng) - 1);
	if ((st = prof_cuda_new(w, o, n, &g)) != MOE_OK)
		goto out;
	prof_weights_free(w);
	w = NULL;
	if ((st = prof_cuda_profile(g, x, n, y, warmup, reps, &r)) != MOE_OK)
		goto out;
	printf("\n(%c) hidden %d, ffn %d, experts %d, top-%d, %zu tokens, %s, GEMMs %s: %.3f ms, %.1f TFLOP/s\n",
	       sh->name, sh->hidden, sh->ffn, sh->experts, sh->top_k, n,
	       prof_cuda_dtype_name(o->dtype), prof_cuda_gemm_name(g),
	       r.stage[PROF_STAGE_TOTAL].median_s * 1e3, r.gflops / 1e3);
	printf("%-11s %10s %10s %10s %10s %7s %9s\n", "stage", "median_us", "p10_us", "p90_us",
	       "min_us", "share_%", "TFLOP/s");
	for (int s = 0; s < PROF_STAGE_COUNT; s++) {
		double med = r.stage[s].median_s;
		char tf[32] = "";
		if (r.flops[s] > 0 && med > 0)
			snprintf(tf, sizeof tf, "%.1f", r.flops[s] / med / 1e12);
		printf("%-11s %10.1f %10.1f %10.1f %10.1f %7.1f %9s\n", prof_stage_name((enum prof_stage)s),
		       med * 1e6, r.stage[s].p10_s * 1e6, r.stage[s].p90_s * 1e6, r.stage[s].min_s * 1e6,
		       r.stage[PROF_STAGE_TOTAL].median_s > 0 ? 100 * med / r.stage[PROF_STAGE_TOTAL].median_s : 0,
		       tf);
	}
	if (gpus >= 2 && sh->experts % gpus == 0)
		run_ep(g, sh, gpus, warmup, reps);
out:
	if (st != MOE_OK)
		fprintf(stderr, "bench_cuda: (%c): %s\n", sh->name, moe_errmsg());
	prof_cuda_free(g);
	prof_weights_free(w);
	gsl_rng_free(rng);
	free(x);
	free(y);
	return st == MOE_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct prof_cuda_opts o = PROF_CUDA_OPTS_INIT;
	struct prof_cuda_device d;
	const char *which = "abdm";
	int reps = 20, warmup = 3, rc = 0, count;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc)
			warmup = atoi(argv[++i]);
		else if (strcmp(argv[i], "--shapes") == 0 && i + 1 < argc)
			which = argv[++i];
		else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
			o.device = atoi(argv[++i]);
		else if (strcmp(argv[i], "--fp16") == 0)
			o.dtype = PROF_CUDA_FP16;
		else if (strcmp(argv[i], "--loop") == 0)
			o.gemm = PROF_CUDA_GEMM_LOOP;
		else {
			fprintf(stderr, "usage: bench_cuda [--reps N] [--warmup N] [--shapes abdm] [--device N] [--fp16] [--loop]\n");
			return 2;
		}
	}
	if (reps < 1 || warmup < 0) {
		fprintf(stderr, "bench_cuda: --reps >= 1, --warmup >= 0\n");
		return 2;
	}
	if (prof_cuda_device_count(&count) != MOE_OK || prof_cuda_device_query(o.device, &d) != MOE_OK) {
		fprintf(stderr, "bench_cuda: %s\n", moe_errmsg());
		return 1;
	}
	printf("# bench_cuda: MoE layer forward on %s (sm_%d%d, %d SMs, %.0f GiB, SM clock %.0f MHz)\n",
	       d.name, d.cc_major, d.cc_minor, d.sm_count, d.mem_bytes / 1073741824.0, d.sm_clock_hz / 1e6);
	printf("# driver %d, runtime %d, cuBLAS %d; warm-up %d, reps %d; times from CUDA events;\n",
	       d.driver_version, d.runtime_version, d.cublas_version, warmup, reps);
	printf("# TFLOP/s on the rows routed (2 H E router + 6 H F per routed row)\n");
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
		if (strchr(which, shapes[i].name))
			rc |= run_shape(&shapes[i], &o, warmup, reps, count);
	return rc;
}
