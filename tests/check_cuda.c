/* tests/check_cuda.c: the CUDA back end (profiler/cuda/cuda_backend.h)
 * against the CPU: `make check-cuda` on a machine with an NVIDIA GPU.
 *
 * For each layer below (random weights and input from a fixed seed, the
 * weights and input rounded to the device type first, so both sides compute
 * on the same values):
 *   - routing: moe_route_batch (moe/route.h) on the GPU's own FP32 logits
 *     must give the same expert ids, the same loads and drops, and gate
 *     weights equal to 1e-6 relative (the kernel repeats route.c's float
 *     operations: they should be bit-identical, and the count is printed);
 *   - output: the CPU forward pass (profiler/forward.h, FP32) on the same
 *     rounded weights and input; tokens whose CPU routing differs (logits
 *     summed in another order can swap near-equal experts) are left out and
 *     must be at most 1 %; on the others max |gpu - cpu| / max |cpu| < 2e-2
 *     and ||gpu - cpu|| / ||cpu|| < 1e-2 (BF16 rounds the intermediate
 *     activations to 8 bits of mantissa);
 *   - determinism: a second run gives the same output bit for bit;
 *   - the grouped-GEMM and looped-GEMM paths agree (1e-2 normalized);
 * then the documented errors (bad device, token counts, NaN logit naming the
 * token, unsupported policy), the timing harness (stages printed) and the
 * NCCL all-to-all over every GPU of the node (data checked inside).
 *
 * Without a CUDA device (or driver): prints "no CUDA device" and exits 77.
 *
 * `cuda_gpu --host-route` (run by make check through tests/cuda_route_host.sh,
 * no GPU needed): the routing kernel's source compiled for the host against
 * moe_route_batch, ids and weights bit for bit, on every policy. */
#include "config.h"

#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe/route.h"
#include "profiler/cuda/cuda_backend.h"
#include "profiler/forward.h"
#include "profiler/harness.h"
#include "profiler/weights.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		checks++;                                                                  \
		if (!(cond)) {                                                             \
			failures++;                                                        \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);                        \
			printf(__VA_ARGS__);                                               \
			printf("\n");                                                      \
		}                                                                          \
	} while (0)

struct layer_case {
	const char *name;
	int hidden, ffn, experts, top_k, shared_ffn, shared_gate, has_bias;
	enum moe_route_kind kind;
	int norm;
	double scaling;
	int groups, gpt;
	double capacity, top_p;
	size_t tokens;
	enum prof_cuda_dtype dtype;
};

static const struct layer_case cases[] = {
	/* name                 H    F    E  k  Fs  sg bias kind                    norm scal  G  g  cap  top_p tokens dtype */
	{"mixtral-like",       256, 512, 8, 2, 0,   0, 0, MOE_ROUTE_SOFTMAX_TOPK, 1, 1.0, 0, 1, 0,   1,   300, PROF_CUDA_BF16},
	{"olmoe-like",         256, 128, 64, 8, 0,  0, 0, MOE_ROUTE_SOFTMAX_TOPK, 0, 1.0, 0, 1, 0,   1,   513, PROF_CUDA_BF16},
	{"deepseek-like",      256, 128, 64, 8, 256, 0, 1, MOE_ROUTE_SIGMOID_BIAS, 1, 2.5, 8, 4, 0,  1,   257, PROF_CUDA_BF16},
	{"gpt-oss-like",       128, 256, 16, 4, 0,  0, 0, MOE_ROUTE_TOPK_SOFTMAX, 1, 1.0, 0, 1, 0,   1,   200, PROF_CUDA_BF16},
	{"top-p",              128, 256, 16, 4, 0,  0, 0, MOE_ROUTE_TOP_P,        1, 1.0, 0, 1, 0,   0.6, 200, PROF_CUDA_BF16},
	{"softmax-groups-bias",128, 128, 32, 4, 0,  0, 1, MOE_ROUTE_SOFTMAX_TOPK, 1, 1.0, 4, 2, 0,   1,   200, PROF_CUDA_BF16},
	{"capacity-drop",      128, 256, 8, 2, 0,   0, 0, MOE_ROUTE_SOFTMAX_TOPK, 1, 1.0, 0, 1, 0.8, 1,   300, PROF_CUDA_BF16},
	{"qwen2-shared-gate",  128, 128, 16, 4, 256, 1, 0, MOE_ROUTE_SOFTMAX_TOPK, 0, 1.0, 0, 1, 0,  1,   129, PROF_CUDA_BF16},
	{"mixtral-fp16",       256, 512, 8, 2, 0,   0, 0, MOE_ROUTE_SOFTMAX_TOPK, 1, 1.0, 0, 1, 0,   1,   300, PROF_CUDA_FP16},
	/* not multiples of 8: the looped GEMMs and the 2-byte row gather */
	{"odd-shapes",         100, 60,  6, 2, 36,  0, 0, MOE_ROUTE_SOFTMAX_TOPK, 1, 1.0, 0, 1, 0,   1,   77,  PROF_CUDA_BF16},
};

static void round_weights(struct prof_weights *w, enum prof_cuda_dtype dt)
{
	const struct prof_layer_cfg *c = &w->cfg;
	size_t H = (size_t)c->hidden, F = (size_t)c->ffn, Fs = (size_t)c->shared_ffn;

	prof_cuda_round(w->router, (size_t)c->experts * H, dt);
	for (int e = 0; e < c->experts; e++) {
		prof_cuda_round(w->gate[e], F * H, dt);
		prof_cuda_round(w->up[e], F * H, dt);
		prof_cuda_round(w->down[e], H * F, dt);
	}
	if (Fs) {
		prof_cuda_round(w->s_gate, Fs * H, dt);
		prof_cuda_round(w->s_up, Fs * H, dt);
		prof_cuda_round(w->s_down, H * Fs, dt);
	}
}

/* Normalized errors over the tokens where keep[t]. */
static void errors(const float *a, const float *ref, size_t n, size_t H, const int *keep,
		   double *max_norm, double *l2_rel)
{
	double maxd = 0, maxr = 0, d2 = 0, r2 = 0;
	for (size_t t = 0; t < n; t++) {
		if (keep && !keep[t])
			continue;
		for (size_t c = 0; c < H; c++) {
			double d = fabs((double)a[t * H + c] - ref[t * H + c]), r = fabs(ref[t * H + c]);
			maxd = d > maxd ? d : maxd;
			maxr = r > maxr ? r : maxr;
			d2 += d * d;
			r2 += r * r;
		}
	}
	*max_norm = maxr > 0 ? maxd / maxr : maxd;
	*l2_rel = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
}

/* A plain layer: softmax then top-k, normalized, scaling 1, no shared
 * expert, bias or groups. */
static void plain_cfg(struct prof_layer_cfg *c, int hidden, int ffn, int experts, int top_k)
{
	memset(c, 0, sizeof *c);
	c->hidden = hidden;
	c->ffn = ffn;
	c->experts = experts;
	c->top_k = top_k;
	c->kind = MOE_ROUTE_SOFTMAX_TOPK;
	c->norm = 1;
	c->scaling = 1;
}

/* r seeded with seed, random weights for c (*w, out), then x[nx] (out)
 * uniform in [-scale / 2, scale / 2) from the same stream (for scale 2 the
 * same floats as 2 u - 1: u has 32 bits, both forms are exact).  Returns
 * MOE_OK, or prof_weights_random's error with x untouched. */
static enum moe_status random_layer(const struct prof_layer_cfg *c, gsl_rng *r, unsigned long seed,
				    struct prof_weights **w, float *x, size_t nx, double scale)
{
	enum moe_status st;

	gsl_rng_set(r, seed);
	if ((st = prof_weights_random(c, r, w)) != MOE_OK)
		return st;
	for (size_t i = 0; i < nx; i++)
		x[i] = (float)(scale * (gsl_rng_uniform(r) - 0.5));
	return MOE_OK;
}

static void policy_of(const struct layer_case *lc, const struct prof_weights *w,
		      struct moe_route_policy *p)
{
	prof_layer_cfg_policy(&w->cfg, w->bias, p);
	p->top_p = lc->top_p;
}

static void run_case(const struct layer_case *lc, int device)
{
	struct prof_layer_cfg c;
	struct prof_weights *w = NULL;
	struct prof_forward *f = NULL;
	struct prof_cuda *g = NULL, *g2 = NULL;
	struct prof_cuda_opts o = PROF_CUDA_OPTS_INIT;
	struct moe_route_policy pol;
	struct moe_route_workspace *ws = NULL;
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	size_t n = lc->tokens, H = (size_t)lc->hidden, k = (size_t)lc->top_k, E = (size_t)lc->experts;
	float *x = malloc(n * H * sizeof(float)), *y = malloc(n * H * sizeof(float));
	float *y2 = malloc(n * H * sizeof(float)), *yc = malloc(n * H * sizeof(float));
	int32_t *ids = malloc(n * k * sizeof(int32_t));
	float *wts = malloc(n * k * sizeof(float));
	uint64_t *load = malloc(E * sizeof(uint64_t));
	int *keep = malloc(n * sizeof(int));
	enum moe_status st;
	size_t id_diff = 0, wt_diff = 0, wt_exact = 0, swapped = 0;
	double worst_w = 0, e_max, e_l2;

	printf("-- %s: H %zu, F %d, E %zu, top-%zu, %s%s%s, %zu tokens, %s\n", lc->name, H, lc->ffn, E,
	       k, moe_route_kind_name(lc->kind), lc->groups > 1 ? " groups" : "",
	       lc->shared_ffn ? " + shared" : "", n, prof_cuda_dtype_name(lc->dtype));
	memset(&c, 0, sizeof c);
	c.hidden = lc->hidden;
	c.ffn = lc->ffn;
	c.experts = lc->experts;
	c.top_k = lc->top_k;
	c.shared_ffn = lc->shared_ffn;
	c.shared_gate = lc->shared_gate;
	c.has_bias = lc->has_bias;
	c.kind = lc->kind;
	c.norm = lc->norm;
	c.scaling = lc->scaling;
	c.groups = lc->groups;
	c.groups_per_token = lc->gpt;
	c.capacity_factor = lc->capacity;
	snprintf(c.model_type, sizeof c.model_type, "%s", lc->name);
	if (!x || !y || !y2 || !yc || !ids || !wts || !load || !keep)
		goto out;
	st = random_layer(&c, r, 42, &w, x, n * H, 2);
	CHECK(st == MOE_OK, "prof_weights_random: %s", moe_errmsg());
	if (st != MOE_OK)
		goto out;
	round_weights(w, lc->dtype);
	prof_cuda_round(x, n * H, lc->dtype);
	policy_of(lc, w, &pol);

	o.device = device;
	o.dtype = lc->dtype;
	o.policy = &pol;
	st = prof_cuda_new(w, &o, n, &g);
	CHECK(st == MOE_OK, "prof_cuda_new: %s", moe_errmsg());
	if (st != MOE_OK)
		goto out;
	st = prof_cuda_run(g, x, n, y, NULL);
	CHECK(st == MOE_OK, "prof_cuda_run: %s", moe_errmsg());
	if (st != MOE_OK)
		goto out;

	/* routing: the CPU policy on the GPU's logits */
	{
		struct moe_route_out ro = {ids, wts, load, NULL, 0, 0};
		const int32_t *gi = prof_cuda_ids(g);
		const float *gw = prof_cuda_gates(g);
		st = moe_route_workspace_alloc(&pol, n, &ws);
		CHECK(st == MOE_OK, "workspace: %s", moe_errmsg());
		if (st != MOE_OK)
			goto out;
		st = moe_route_batch(&pol, ws, prof_cuda_logits(g), n, &ro);
		CHECK(st == MOE_OK, "moe_route_batch: %s", moe_errmsg());
		for (size_t s = 0; s < n * k; s++) {
			double d = fabs((double)gw[s] - wts[s]);
			id_diff += gi[s] != ids[s];
			wt_exact += gw[s] == wts[s];
			if (d > 1e-6 * fabs(wts[s]) + 1e-12)
				wt_diff++;
			worst_w = d > worst_w ? d : worst_w;
		}
		CHECK(id_diff == 0, "%zu of %zu slots route to other experts than moe_route_batch", id_diff, n * k);
		CHECK(wt_diff == 0, "%zu gate weights differ by more than 1e-6 relative (worst %.3g)", wt_diff, worst_w);
		for (size_t e = 0; e < E; e++)
			CHECK(prof_cuda_load(g)[e] == load[e], "expert %zu: load %llu on the GPU, %llu on the CPU",
			      e, (unsigned long long)prof_cuda_load(g)[e], (unsigned long long)load[e]);
		CHECK(prof_cuda_dropped(g) == ro.n_dropped, "dropped %llu on the GPU, %llu on the CPU",
		      (unsigned long long)prof_cuda_dropped(g), (unsigned long long)ro.n_dropped);
		if (lc->capacity > 0)
			CHECK(ro.n_dropped > 0, "capacity %.2f dropped nothing: the case tests nothing", lc->capacity);
		printf("   routing: %zu slots, ids identical: %s, weights bit-identical %zu/%zu, max diff %.3g, dropped %llu\n",
		       n * k, id_diff ? "NO" : "yes", wt_exact, n * k, worst_w,
		       (unsigned long long)ro.n_dropped);
	}

	/* output against the CPU forward on the same rounded values */
	if (lc->top_p >= 1) {
		st = prof_forward_new(w, 1, n, &f);
		CHECK(st == MOE_OK, "prof_forward_new: %s", moe_errmsg());
		if (st == MOE_OK)
			st = prof_forward_run(f, x, n, yc, NULL);
		CHECK(st == MOE_OK, "prof_forward_run: %s", moe_errmsg());
		if (st != MOE_OK)
			goto out;
		for (size_t t = 0; t < n; t++) {
			keep[t] = 1;
			for (size_t j = 0; j < k; j++)
				keep[t] &= prof_forward_ids(f)[t * k + j] == prof_cuda_ids(g)[t * k + j];
			swapped += !keep[t];
		}
		errors(y, yc, n, H, keep, &e_max, &e_l2);
		CHECK(swapped * 100 <= n, "%zu of %zu tokens routed differently by the CPU's own logits", swapped, n);
		CHECK(e_max < 2e-2, "max |gpu - cpu| / max |cpu| = %.3g, expected < 2e-2", e_max);
		CHECK(e_l2 < 1e-2, "||gpu - cpu|| / ||cpu|| = %.3g, expected < 1e-2", e_l2);
		printf("   output vs CPU FP32: max err / max |ref| %.3g, relative L2 %.3g (%zu tokens routed otherwise by the CPU logits, left out)\n",
		       e_max, e_l2, swapped);
	} else {
		printf("   output vs CPU: not compared (the CPU forward takes no top-p policy)\n");
	}

	/* determinism */
	st = prof_cuda_run(g, x, n, y2, NULL);
	CHECK(st == MOE_OK && memcmp(y, y2, n * H * sizeof(float)) == 0,
	      "a second run differs (status %d)", (int)st);

	if (H % 8 || lc->ffn % 8 || lc->shared_ffn % 8) {
		struct prof_cuda *g3 = NULL;
		CHECK(strcmp(prof_cuda_gemm_name(g), "loop") == 0, "%s GEMMs for unaligned shapes",
		      prof_cuda_gemm_name(g));
		o.gemm = PROF_CUDA_GEMM_GROUPED;
		st = prof_cuda_new(w, &o, n, &g3);
		CHECK(st == MOE_EUNSUPPORTED, "grouped GEMMs for unaligned shapes: status %d", (int)st);
		prof_cuda_free(g3);
	}
	/* the other GEMM path */
	o.gemm = PROF_CUDA_GEMM_LOOP;
	st = prof_cuda_new(w, &o, n, &g2);
	CHECK(st == MOE_OK, "prof_cuda_new (loop): %s", moe_errmsg());
	if (st == MOE_OK && (st = prof_cuda_run(g2, x, n, y2, NULL)) == MOE_OK) {
		errors(y2, y, n, H, NULL, &e_max, &e_l2);
		CHECK(e_max < 1e-2, "loop against %s GEMMs: max err %.3g", prof_cuda_gemm_name(g), e_max);
		printf("   GEMMs %s vs %s: max err / max |y| %.3g\n", prof_cuda_gemm_name(g),
		       prof_cuda_gemm_name(g2), e_max);
	} else {
		CHECK(0, "loop run: %s", moe_errmsg());
	}
out:
	moe_route_workspace_free(ws);
	prof_forward_free(f);
	prof_cuda_free(g);
	prof_cuda_free(g2);
	prof_weights_free(w);
	gsl_rng_free(r);
	free(x);
	free(y);
	free(y2);
	free(yc);
	free(ids);
	free(wts);
	free(load);
	free(keep);
}

static void run_errors(int device, int count)
{
	struct prof_layer_cfg c;
	struct prof_weights *w = NULL;
	struct prof_cuda *g = NULL;
	struct prof_cuda_opts o = PROF_CUDA_OPTS_INIT;
	struct moe_route_policy pol;
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	size_t n = 16, H = 64;
	float x[16 * 64], y[16 * 64];
	enum moe_status st;

	printf("-- errors\n");
	plain_cfg(&c, (int)H, 64, 4, 2);
	if (random_layer(&c, r, 7, &w, x, n * H, 1) != MOE_OK) {
		CHECK(0, "weights: %s", moe_errmsg());
		gsl_rng_free(r);
		return;
	}

	o.device = count;
	st = prof_cuda_new(w, &o, n, &g);
	CHECK(st == MOE_EINVAL && strstr(moe_errmsg(), "device"), "device %d: status %d, %s", count,
	      (int)st, moe_errmsg());
	o.device = device;
	st = prof_cuda_new(w, &o, 0, &g);
	CHECK(st == MOE_EINVAL, "max tokens 0: status %d", (int)st);

	prof_layer_cfg_policy(&c, NULL, &pol);
	pol.noise_std = 0.1;
	pol.rng = r;
	o.policy = &pol;
	st = prof_cuda_new(w, &o, n, &g);
	CHECK(st == MOE_EUNSUPPORTED, "noise: status %d, %s", (int)st, moe_errmsg());
	o.policy = NULL;

	st = prof_cuda_new(w, &o, n, &g);
	CHECK(st == MOE_OK, "new: %s", moe_errmsg());
	if (st == MOE_OK) {
		st = prof_cuda_run(g, x, 0, y, NULL);
		CHECK(st == MOE_EINVAL, "0 tokens: status %d", (int)st);
		st = prof_cuda_run(g, x, n + 1, y, NULL);
		CHECK(st == MOE_EINVAL, "n + 1 tokens: status %d", (int)st);
		x[5 * H + 3] = NAN;
		st = prof_cuda_run(g, x, n, y, NULL);
		CHECK(st == MOE_EFORMAT && strstr(moe_errmsg(), "token 5"),
		      "NaN in token 5: status %d, %s", (int)st, moe_errmsg());
		x[5 * H + 3] = 0.25f;
		st = prof_cuda_run(g, x, n, y, NULL);
		CHECK(st == MOE_OK, "run after the NaN: %s", moe_errmsg());
	}
	prof_cuda_free(g);
	prof_cuda_free(NULL);
	prof_weights_free(w);
	gsl_rng_free(r);
}

static void run_timing(int device)
{
	struct prof_layer_cfg c;
	struct prof_weights *w = NULL;
	struct prof_cuda *g = NULL;
	struct prof_cuda_opts o = PROF_CUDA_OPTS_INIT;
	struct prof_result res;
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	size_t n = 512, H = 1024;
	float *x = malloc(n * H * sizeof(float)), *y = malloc(n * H * sizeof(float));
	enum moe_status st;

	printf("-- timing: H 1024, F 2816, E 8, top-2, 512 tokens, bf16 (warm-up 2, reps 10)\n");
	plain_cfg(&c, (int)H, 2816, 8, 2);
	if (!x || !y || random_layer(&c, r, 3, &w, x, n * H, 2) != MOE_OK)
		goto out;
	o.device = device;
	st = prof_cuda_new(w, &o, n, &g);
	CHECK(st == MOE_OK, "new: %s", moe_errmsg());
	if (st != MOE_OK)
		goto out;
	st = prof_cuda_profile(g, x, n, y, 2, 10, &res);
	CHECK(st == MOE_OK, "profile: %s", moe_errmsg());
	if (st == MOE_OK) {
		printf("   %-10s %10s %10s %10s %10s\n", "stage", "median_us", "p10_us", "p90_us", "min_us");
		for (int s = 0; s < PROF_STAGE_COUNT; s++)
			printf("   %-10s %10.1f %10.1f %10.1f %10.1f\n", prof_stage_name((enum prof_stage)s),
			       res.stage[s].median_s * 1e6, res.stage[s].p10_s * 1e6,
			       res.stage[s].p90_s * 1e6, res.stage[s].min_s * 1e6);
		printf("   %.1f TFLOP/s over the layer; expert GEMMs: %s; %.0f MiB on the device\n",
		       res.gflops / 1e3, prof_cuda_gemm_name(g), prof_cuda_bytes(g) / 1048576);
		CHECK(res.stage[PROF_STAGE_TOTAL].median_s > 0, "total time %g", res.stage[PROF_STAGE_TOTAL].median_s);
		CHECK(res.stage[PROF_STAGE_TOTAL].min_s <= res.stage[PROF_STAGE_TOTAL].median_s &&
		      res.stage[PROF_STAGE_TOTAL].p10_s <= res.stage[PROF_STAGE_TOTAL].p90_s, "statistics out of order");
		CHECK(res.routed_rows == (double)(n * 2), "routed rows %.0f, expected %zu", res.routed_rows, n * 2);
	}
out:
	prof_cuda_free(g);
	prof_weights_free(w);
	gsl_rng_free(r);
	free(x);
	free(y);
}

static void run_a2a(int count)
{
	printf("-- NCCL all-to-all over %d GPU(s) (warm-up 5, iters 20)\n", count);
	printf("   %12s %12s %12s %12s\n", "size_B", "time_us", "algbw_GBps", "busbw_GBps");
	for (size_t b = 1 << 16; b <= (size_t)1 << 26; b <<= 5) {
		double t = 0, sent = 0;
		enum moe_status st = prof_cuda_a2a_run(count, b, 5, 20, &t, &sent);
		CHECK(st == MOE_OK, "a2a %zu bytes: %s", b, moe_errmsg());
		if (st != MOE_OK)
			return;
		printf("   %12.0f %12.2f %12.3f %12.3f\n", sent, t * 1e6, sent / t / 1e9,
		       sent / t / 1e9 * (count - 1) / count);
	}
	if (count >= 2) {
		/* an uneven exchange: GPU i sends (i + 1) (j + 1) KiB to GPU j */
		size_t *m = malloc((size_t)count * (size_t)count * sizeof(size_t));
		struct prof_cuda_a2a_result res;
		enum moe_status st;
		if (!m)
			return;
		for (int i = 0; i < count; i++)
			for (int j = 0; j < count; j++)
				m[(size_t)i * count + j] = (size_t)(i + 1) * (size_t)(j + 1) * 1024;
		st = prof_cuda_a2a_exchange(count, m, 2, 5, &res);
		CHECK(st == MOE_OK, "uneven exchange: %s", moe_errmsg());
		if (st == MOE_OK)
			printf("   uneven: dispatch %.2f us, combine %.2f us\n", res.dispatch_s * 1e6,
			       res.combine_s * 1e6);
		m[1] = 6; /* not a multiple of 4 */
		st = prof_cuda_a2a_exchange(count, m, 2, 5, &res);
		CHECK(st == MOE_EINVAL, "6 bytes: status %d", (int)st);
		free(m);
	}
	{
		double t, sent;
		enum moe_status st = prof_cuda_a2a_run(count + 1, 1024, 1, 1, &t, &sent);
		CHECK(st == MOE_EINVAL, "%d GPUs: status %d", count + 1, (int)st);
	}
}

/* --host-route: the routing kernel's code compiled for the host
 * (prof_cuda_route_host) against moe_route_batch, bit for bit, on every
 * policy the GPU runs; logits of every other token rounded to multiples of
 * 1/4 so that equal keys (the tie-break) occur.  Needs no GPU. */
struct route_case {
	const char *name;
	enum moe_route_kind kind;
	int E, k, norm;
	double scaling;
	int groups, gpt, topn, bias;
	double cf, top_p;
};

static const struct route_case route_cases[] = {
	{"softmax-topk norm",          MOE_ROUTE_SOFTMAX_TOPK, 8,  2, 1, 1.0, 0, 1, 2, 0, 0,   1},
	{"softmax-topk",               MOE_ROUTE_SOFTMAX_TOPK, 64, 8, 0, 1.0, 0, 1, 2, 0, 0,   1},
	{"softmax-topk bias groups",   MOE_ROUTE_SOFTMAX_TOPK, 32, 4, 1, 1.0, 4, 2, 2, 1, 0,   1},
	{"topk-softmax",               MOE_ROUTE_TOPK_SOFTMAX, 16, 4, 1, 1.0, 0, 1, 2, 0, 0,   1},
	{"topk-softmax bias",          MOE_ROUTE_TOPK_SOFTMAX, 16, 4, 1, 1.0, 0, 1, 2, 1, 0,   1},
	{"top-p 0.6 norm",             MOE_ROUTE_TOP_P,        16, 4, 1, 1.0, 0, 1, 2, 0, 0,   0.6},
	{"top-p 0.5",                  MOE_ROUTE_TOP_P,        32, 6, 0, 1.0, 0, 1, 2, 0, 0,   0.5},
	{"sigmoid-bias groups (V3)",   MOE_ROUTE_SIGMOID_BIAS, 64, 8, 1, 2.5, 8, 4, 2, 1, 0,   1},
	{"sigmoid-bias topn 1",        MOE_ROUTE_SIGMOID_BIAS, 64, 6, 1, 1.0, 8, 3, 1, 1, 0,   1},
	{"sigmoid-bias topn 3",        MOE_ROUTE_SIGMOID_BIAS, 64, 6, 1, 1.0, 8, 3, 3, 1, 0,   1},
	{"sigmoid no norm",            MOE_ROUTE_SIGMOID_BIAS, 13, 3, 0, 1.0, 0, 1, 2, 0, 0,   1},
	{"capacity drop 0.8",          MOE_ROUTE_SOFTMAX_TOPK, 8,  2, 1, 1.0, 0, 1, 2, 0, 0.8, 1},
	{"capacity drop groups",       MOE_ROUTE_SIGMOID_BIAS, 64, 8, 1, 2.5, 8, 4, 2, 1, 1.0, 1},
};

static int host_route(void)
{
	const size_t n = 1000;
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);

	for (size_t c = 0; c < sizeof route_cases / sizeof route_cases[0]; c++) {
		const struct route_case *rc = &route_cases[c];
		size_t E = (size_t)rc->E, k = (size_t)rc->k, id_diff = 0, wt_diff = 0, nones = 0;
		float *l = malloc(n * E * sizeof(float)), *bias = malloc(E * sizeof(float));
		float *w1 = malloc(n * k * sizeof(float)), *w2 = malloc(n * k * sizeof(float));
		int32_t *i1 = malloc(n * k * sizeof(int32_t)), *i2 = malloc(n * k * sizeof(int32_t));
		uint64_t *ld1 = malloc(E * sizeof(uint64_t)), *ld2 = malloc(E * sizeof(uint64_t)), dr = 0;
		struct moe_route_policy p;
		struct moe_route_workspace *ws = NULL;
		struct moe_route_out ro = {i2, w2, ld2, NULL, 0, 0};
		enum moe_status st;

		if (!l || !bias || !w1 || !w2 || !i1 || !i2 || !ld1 || !ld2) {
			CHECK(0, "out of memory");
			return 1;
		}
		gsl_rng_set(r, 100 + c);
		for (size_t t = 0; t < n; t++)
			for (size_t e = 0; e < E; e++) {
				double v = 3 * (2 * gsl_rng_uniform(r) - 1);
				l[t * E + e] = (float)(t % 2 ? floor(v * 4) / 4 : v);
			}
		for (size_t e = 0; e < E; e++)
			bias[e] = (float)(0.2 * (2 * gsl_rng_uniform(r) - 1));
		moe_route_policy_init(&p, rc->E, rc->k);
		p.kind = rc->kind;
		p.norm = rc->norm;
		p.scaling = rc->scaling;
		p.groups = rc->groups;
		p.groups_per_token = rc->gpt;
		p.group_topn = rc->topn;
		p.bias = rc->bias ? bias : NULL;
		p.capacity_factor = rc->cf;
		p.top_p = rc->top_p;
		st = moe_route_workspace_alloc(&p, n, &ws);
		CHECK(st == MOE_OK, "%s: workspace: %s", rc->name, moe_errmsg());
		if (st == MOE_OK)
			st = moe_route_batch(&p, ws, l, n, &ro);
		CHECK(st == MOE_OK, "%s: moe_route_batch: %s", rc->name, moe_errmsg());
		if (st == MOE_OK)
			st = prof_cuda_route_host(&p, l, n, i1, w1, ld1, &dr);
		CHECK(st == MOE_OK, "%s: prof_cuda_route_host: %s", rc->name, moe_errmsg());
		if (st == MOE_OK) {
			for (size_t s = 0; s < n * k; s++) {
				id_diff += i1[s] != i2[s];
				wt_diff += memcmp(&w1[s], &w2[s], sizeof(float)) != 0;
				nones += i2[s] == MOE_ROUTE_NONE;
			}
			CHECK(id_diff == 0, "%s: %zu of %zu slots differ", rc->name, id_diff, n * k);
			CHECK(wt_diff == 0, "%s: %zu of %zu weights not bit-identical", rc->name, wt_diff, n * k);
			CHECK(memcmp(ld1, ld2, E * sizeof(uint64_t)) == 0, "%s: loads differ", rc->name);
			CHECK(dr == ro.n_dropped, "%s: dropped %llu, moe_route_batch %llu", rc->name,
			      (unsigned long long)dr, (unsigned long long)ro.n_dropped);
			if (rc->cf > 0 || rc->top_p < 1)
				CHECK(nones > 0, "%s: no unused slot: the case tests nothing", rc->name);
			printf("   %-28s E %3zu k %zu: %zu slots, %zu unused; ids %s, weights %s\n", rc->name,
			       E, k, n * k, nones, id_diff ? "DIFFER" : "identical",
			       wt_diff ? "DIFFER" : "bit-identical");
		}
		moe_route_workspace_free(ws);
		free(l); free(bias); free(w1); free(w2); free(i1); free(i2); free(ld1); free(ld2);
	}
	/* errors: a NaN names its token; rerouting is not on the GPU */
	{
		float l[3 * 4] = {0.5f, 1, 2, 3, 1, 2, 3, 4, 0, 0, 0, 0};
		int32_t ids[3 * 2];
		float w[3 * 2];
		struct moe_route_policy p;
		enum moe_status st;
		moe_route_policy_init(&p, 4, 2);
		l[1 * 4 + 2] = NAN;
		st = prof_cuda_route_host(&p, l, 3, ids, w, NULL, NULL);
		CHECK(st == MOE_EFORMAT && strstr(moe_errmsg(), "token 1, expert 2"), "NaN: status %d, %s",
		      (int)st, moe_errmsg());
		p.capacity_factor = 1;
		p.overflow = MOE_ROUTE_REROUTE;
		st = prof_cuda_route_host(&p, l, 3, ids, w, NULL, NULL);
		CHECK(st == MOE_EUNSUPPORTED, "reroute: status %d", (int)st);
		p.overflow = MOE_ROUTE_DROP;
		p.k = 9;
		st = prof_cuda_route_host(&p, l, 3, ids, w, NULL, NULL);
		CHECK(st == MOE_EINVAL, "k 9 of 4 experts: status %d", (int)st);
	}
	/* the dispatch traffic of a routed layer (cuda_backend.h's worked example) */
	{
		const int32_t ids[8] = {0, 2, 1, 3, 2, 3, 0, MOE_ROUTE_NONE}, bad_ids[8] = {0, 2, 1, 4, 2, 3, 0, 1};
		const size_t want[4] = {16, 16, 8, 16};
		size_t bytes[4];
		enum moe_status st = prof_cuda_a2a_layer_bytes(ids, 4, 2, 4, 2, 8, bytes);
		CHECK(st == MOE_OK && memcmp(bytes, want, sizeof want) == 0,
		      "layer traffic: status %d, [%zu %zu; %zu %zu], expected [16 16; 8 16]", (int)st,
		      bytes[0], bytes[1], bytes[2], bytes[3]);
		printf("   layer traffic (4 tokens, top-2, 4 experts, 2 GPUs): [%zu %zu; %zu %zu] bytes\n",
		       bytes[0], bytes[1], bytes[2], bytes[3]);
		st = prof_cuda_a2a_layer_bytes(ids, 4, 2, 4, 3, 8, bytes);
		CHECK(st == MOE_EINVAL, "3 GPUs for 4 experts: status %d", (int)st);
		st = prof_cuda_a2a_layer_bytes(bad_ids, 4, 2, 4, 2, 8, bytes);
		CHECK(st == MOE_ERANGE && strstr(moe_errmsg(), "token 1 slot 1"), "expert 4 of 4: status %d, %s",
		      (int)st, moe_errmsg());
	}
	gsl_rng_free(r);
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	int count = 0;
	struct prof_cuda_device d;
	enum moe_status st;

	if (argc > 1 && strcmp(argv[1], "--host-route") == 0) {
		printf("-- the routing kernel's code on the host against moe_route_batch\n");
		return host_route();
	}
	if (argc > 1) {
		fprintf(stderr, "usage: cuda_gpu [--host-route]\n");
		return 2;
	}
	st = prof_cuda_device_count(&count);

	if (st == MOE_ENOTFOUND) {
		printf("%s\n", moe_errmsg());
		printf("SKIP: no CUDA device: the GPU tests did not run\n");
		return 77;
	}
	if (st != MOE_OK) {
		printf("FAIL: device count: %s\n", moe_errmsg());
		return 1;
	}
	if ((st = prof_cuda_device_query(0, &d)) != MOE_OK) {
		printf("FAIL: device query: %s\n", moe_errmsg());
		return 1;
	}
	printf("# %d CUDA device(s); device 0: %s, sm_%d%d, %d SMs, %.1f GiB, SM clock %.0f MHz, memory clock %.0f MHz, %d-bit bus\n",
	       count, d.name, d.cc_major, d.cc_minor, d.sm_count, d.mem_bytes / 1073741824.0,
	       d.sm_clock_hz / 1e6, d.mem_clock_hz / 1e6, d.mem_bus_bits);
	printf("# driver %d, runtime %d, cuBLAS %d, NCCL %d\n", d.driver_version, d.runtime_version,
	       d.cublas_version, d.nccl_version);
	CHECK(d.sm_count > 0 && d.mem_bytes > 0 && d.name[0], "device facts empty");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(&cases[i], 0);
	run_errors(0, count);
	run_timing(0);
	run_a2a(count);
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
