/* bench/bench_forward.c: the CPU MoE forward pass on the shapes,
 * FP32, 1 and 2 threads, against this machine's SGEMM roof and PyTorch's
 * eager Hugging Face-style block (bench/torch_moe_block.py) on the same
 * shapes and threads, in the same run.
 *
 *   (a) hidden 1024, FFN 2816, 8 experts, top-2, 512 tokens
 *   (b) hidden 2048, FFN 1024, 64 experts, top-8, 512 tokens (OLMoE-like)
 *   (c) (a) with top-1
 *   (d) (a) with 4096 tokens
 *
 * cores: CPU time over wall time of moekit's timed forwards (how many cores
 * it really had on a shared machine); GF/core: GFLOP per CPU-second, the
 * throughput per busy core, which other users' load does not hide.
 *
 * Usage: bench_forward [--reps N] [--threads LIST] [--shapes abcd] [--no-torch]
 * PyTorch runs as `$PYTHON3 bench/torch_moe_block.py ...` with
 * OMP_WAIT_POLICY=passive and OMP/MKL/OPENBLAS_NUM_THREADS set to the thread
 * count (and torch.set_num_threads inside); when it cannot be imported its
 * column reads "n/a".
 */
#include "config.h"
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
	{'c', 1024, 2816, 8, 1, 512},
	{'d', 1024, 2816, 8, 2, 4096},
};

/* Runs the torch block; returns its median seconds, or -1. */
static double torch_time(const struct shape *s, int threads, int reps, const char *srcdir)
{
	char cmd[1024];
	const char *py = getenv("PYTHON3") ? getenv("PYTHON3") : "python3";
	FILE *p;
	double t = -1;
	snprintf(cmd, sizeof cmd,
		 "OMP_WAIT_POLICY=passive OMP_NUM_THREADS=%d MKL_NUM_THREADS=%d OPENBLAS_NUM_THREADS=%d "
		 "%s %s/bench/torch_moe_block.py --hidden %d --ffn %d --experts %d --top-k %d "
		 "--tokens %d --threads %d --reps %d 2>/dev/null",
		 threads, threads, threads, py, srcdir, s->hidden, s->ffn, s->experts, s->top_k,
		 s->tokens, threads, reps);
	if (!(p = popen(cmd, "r")))
		return -1;
	if (fscanf(p, "%lf", &t) != 1)
		t = -1;
	pclose(p);
	return t;
}

int main(int argc, char **argv)
{
	int reps = 5, torch = 1;
	const char *threads_list = "1,2", *which = "abcd";
	const char *srcdir = getenv("srcdir") ? getenv("srcdir") : MOEKIT_SRCDIR;
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads_list = argv[++i];
		else if (strcmp(argv[i], "--shapes") == 0 && i + 1 < argc)
			which = argv[++i];
		else if (strcmp(argv[i], "--no-torch") == 0)
			torch = 0;
		else {
			fprintf(stderr, "usage: bench_forward [--reps N] [--threads 1,2] [--shapes abcd] [--no-torch]\n");
			return 2;
		}
	}
	if (reps < 1)
		reps = 1;
	printf("# bench_forward: moekit CPU MoE forward (FP32) vs SGEMM roof and PyTorch eager\n");
	printf("# torch: OMP_WAIT_POLICY=passive, OMP/MKL/OPENBLAS_NUM_THREADS and torch.set_num_threads = threads\n");
	printf("# reps %d (median), warm-up 2; GFLOP/s on the routed rows\n", reps);
	for (const char *tl = threads_list; *tl;) {
		int threads = atoi(tl);
		struct prof_machine m;
		prof_machine_probe(threads, 1, &m);
		printf("#\n# cpu: %s, %d cores; blas: %s\n", m.cpu, m.cores, m.blas);
		printf("# threads %d: SGEMM roof %.1f GFLOP/s (%d^3, best of 3); load average %.2f\n",
		       threads, m.sgemm_gflops, m.sgemm_n, m.load_avg);
		printf("%5s %5s %5s %4s %3s %6s %3s %10s %9s %7s %6s %9s %10s %9s %7s\n", "shape", "H", "F",
		       "E", "k", "tokens", "thr", "moekit_ms", "GFLOP/s", "%roof", "cores", "GF/core", "torch_ms",
		       "GFLOP/s", "ratio");
		for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
			const struct shape *s = &shapes[si];
			struct prof_layer_cfg c;
			struct prof_weights *w;
			struct prof_forward *f;
			struct prof_result res;
			float *x, *y;
			double tt = -1;
			if (!strchr(which, s->name))
				continue;
			memset(&c, 0, sizeof c);
			c.hidden = s->hidden; c.ffn = s->ffn; c.experts = s->experts; c.top_k = s->top_k;
			c.kind = MOE_ROUTE_SOFTMAX_TOPK; c.norm = 1; c.scaling = 1; c.groups = 1;
			c.groups_per_token = 1;
			gsl_rng_set(r, 1);
			if (prof_weights_random(&c, r, &w) != MOE_OK ||
			    prof_forward_new(w, threads, (size_t)s->tokens, &f) != MOE_OK) {
				fprintf(stderr, "bench_forward: %s\n", moe_errmsg());
				return 1;
			}
			prof_weights_free(w);
			x = malloc(sizeof(float) * (size_t)s->tokens * (size_t)s->hidden);
			y = malloc(sizeof(float) * (size_t)s->tokens * (size_t)s->hidden);
			for (size_t i = 0; i < (size_t)s->tokens * (size_t)s->hidden; i++)
				x[i] = (float)(2 * gsl_rng_uniform(r) - 1);
			if (prof_harness_run(f, x, (size_t)s->tokens, y, 2, reps, NULL, NULL, &res) != MOE_OK) {
				fprintf(stderr, "bench_forward: %s\n", moe_errmsg());
				return 1;
			}
			prof_forward_free(f);
			free(x);
			free(y);
			if (torch)
				tt = torch_time(s, threads, reps, srcdir);
			double ms = res.stage[PROF_STAGE_TOTAL].median_s * 1e3;
			if (tt > 0)
				printf("%5c %5d %5d %4d %3d %6d %3d %10.2f %9.1f %6.1f%% %6.2f %9.1f %10.2f %9.1f %6.2fx\n",
				       s->name, s->hidden, s->ffn, s->experts, s->top_k, s->tokens, threads, ms,
				       res.gflops, 100 * res.gflops / m.sgemm_gflops, res.cores_used,
				       res.flops[PROF_STAGE_TOTAL] / res.cpu_s / 1e9, tt * 1e3,
				       res.flops[PROF_STAGE_TOTAL] / tt / 1e9, tt * 1e3 / ms);
			else
				printf("%5c %5d %5d %4d %3d %6d %3d %10.2f %9.1f %6.1f%% %6.2f %9.1f %10s %9s %7s\n",
				       s->name, s->hidden, s->ffn, s->experts, s->top_k, s->tokens, threads, ms,
				       res.gflops, 100 * res.gflops / m.sgemm_gflops, res.cores_used,
				       res.flops[PROF_STAGE_TOTAL] / res.cpu_s / 1e9, "n/a", "n/a", "n/a");
			printf("#   stages (median ms): router %.2f routing %.2f permute %.2f gate_up %.2f "
			       "activation %.2f down %.2f combine %.2f\n",
			       res.stage[PROF_STAGE_ROUTER].median_s * 1e3, res.stage[PROF_STAGE_ROUTING].median_s * 1e3,
			       res.stage[PROF_STAGE_PERMUTE].median_s * 1e3, res.stage[PROF_STAGE_GATE_UP].median_s * 1e3,
			       res.stage[PROF_STAGE_ACTIVATION].median_s * 1e3, res.stage[PROF_STAGE_DOWN].median_s * 1e3,
			       res.stage[PROF_STAGE_COMBINE].median_s * 1e3);
			fflush(stdout);
		}
		tl = strchr(tl, ',');
		if (!tl)
			break;
		tl++;
	}
	gsl_rng_free(r);
	return 0;
}
