/* tests/check_profiler.c: Check suite for profiler/: half and bfloat16
 * decoding, every safetensors header error, config.json reading, and the
 * forward pass against a plain double-precision reference written here
 * (odd shapes that exercise every padding path), its determinism across
 * runs and thread counts, and top-1 against top-2 from the same logits.
 * (tests/profiler_ref.sh holds it against an independent NumPy reference.) */
#include "config.h"
#include "moe/error.h"
#include "profiler/forward.h"
#include "profiler/npy.h"
#include "profiler/safetensors.h"
#include "profiler/weights.h"

#include <check.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

/* Builds a safetensors image: 8-byte length, header, data (n bytes). */
static unsigned char *image(const char *header, size_t data, size_t *len)
{
	size_t h = strlen(header);
	unsigned char *b = calloc(1, 8 + h + data + 1);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)h >> (8 * i));
	memcpy(b + 8, header, h);
	*len = 8 + h + data;
	return b;
}

static enum moe_status open_header(const char *header, size_t data, struct prof_st **st,
				   unsigned char **buf)
{
	size_t len;
	*buf = image(header, data, &len);
	return prof_st_open_mem(*buf, len, "t.safetensors", st);
}

static void expect_error(const char *header, size_t data, enum moe_status want, const char *needle)
{
	struct prof_st *st = NULL;
	unsigned char *buf;
	enum moe_status rc = open_header(header, data, &st, &buf);
	ck_assert_int_eq(rc, want);
	ck_assert_ptr_null(st);
	ck_assert_msg(strstr(moe_errmsg(), needle) != NULL, "message '%s' lacks '%s'", moe_errmsg(),
		      needle);
	free(buf);
}

/* ------------------------------------------------------------ core */

START_TEST(test_half)
{
	ck_assert_float_eq(prof_f16_to_f32(0x3c00), 1.0f);
	ck_assert_float_eq(prof_f16_to_f32(0xc000), -2.0f);
	ck_assert_float_eq(prof_f16_to_f32(0x3555), 0.333251953125f);
	ck_assert_float_eq(prof_f16_to_f32(0x0001), 5.9604644775390625e-8f); /* smallest subnormal */
	ck_assert_float_eq(prof_f16_to_f32(0x7bff), 65504.0f);
	ck_assert(isinf(prof_f16_to_f32(0x7c00)));
	ck_assert(isnan(prof_f16_to_f32(0x7e00)));
	ck_assert_float_eq(prof_bf16_to_f32(0x3f80), 1.0f);
	ck_assert_float_eq(prof_bf16_to_f32(0xc0a0), -5.0f);
	ck_assert_float_eq(prof_bf16_to_f32(0x3eaa), 0.33203125f);
}
END_TEST

START_TEST(test_st_load)
{
	/* a: F32 [2,2], b: F16 [3], c: BF16 [1]; data laid out a, b, c. */
	const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
			  "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
			  "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]},"
			  "\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[22,24]}}";
	size_t len, h = strlen(hdr);
	unsigned char *b = image(hdr, 24, &len);
	unsigned char *d = b + 8 + h;
	float a[4] = {1.5f, -2.f, 3.25f, 0.f}, out[4];
	uint16_t hv[3] = {0x3c00, 0xc000, 0x3800};
	struct prof_st *st;
	int64_t s22[2] = {2, 2}, s3[1] = {3}, s1[1] = {1};

	memcpy(d, a, 16);
	for (int i = 0; i < 3; i++) {
		d[16 + 2 * i] = (unsigned char)(hv[i] & 0xff);
		d[17 + 2 * i] = (unsigned char)(hv[i] >> 8);
	}
	d[22] = 0x80;
	d[23] = 0x3f;
	ck_assert_int_eq(prof_st_open_mem(b, len, "t", &st), MOE_OK);
	ck_assert_uint_eq(prof_st_count(st), 3);
	ck_assert_int_eq(prof_st_load_f32(st, "a", 2, s22, out), MOE_OK);
	ck_assert_mem_eq(out, a, 16);
	ck_assert_int_eq(prof_st_load_f32(st, "b", 1, s3, out), MOE_OK);
	ck_assert_float_eq(out[0], 1.0f);
	ck_assert_float_eq(out[1], -2.0f);
	ck_assert_float_eq(out[2], 0.5f);
	ck_assert_int_eq(prof_st_load_f32(st, "c", 1, s1, out), MOE_OK);
	ck_assert_float_eq(out[0], 1.0f);
	/* shape that disagrees with the model */
	ck_assert_int_eq(prof_st_load_f32(st, "a", 2, (int64_t[]){4, 1}, out), MOE_EFORMAT);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "has shape [2, 2], the model expects [4, 1]"));
	ck_assert_int_eq(prof_st_load_f32(st, "a", 1, s3, out), MOE_EFORMAT);
	prof_st_close(st);
	free(b);
}
END_TEST

/* ------------------------------------------------------------ errors */

START_TEST(test_st_errors)
{
	const char *two =
		"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		"\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
	size_t len;
	unsigned char *b;
	struct prof_st *st;

	/* shorter than the length field */
	ck_assert_int_eq(prof_st_open_mem("abc", 3, "t", &st), MOE_EFORMAT);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "shorter than the 8-byte header length"));
	/* header length past the end */
	b = image("{}", 0, &len);
	b[0] = 200;
	ck_assert_int_eq(prof_st_open_mem(b, len, "t", &st), MOE_EFORMAT);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "header length 200 exceeds the file"));
	free(b);
	expect_error("{\"x\": [1, 2", 0, MOE_EFORMAT, "JSON error");
	expect_error("[1]", 0, MOE_EFORMAT, "expected a JSON object");
	expect_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, MOE_EFORMAT,
		     "outside the 4 data bytes");
	expect_error(two, 12, MOE_EFORMAT, "overlap");
	expect_error("{\"x\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, MOE_EFORMAT,
		     "unknown dtype 'Q4'");
	expect_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, MOE_EFORMAT,
		     "expected 3 elements x 4 bytes");
	expect_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, MOE_EFORMAT,
		     "shape[0] is not a non-negative integer");
	expect_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
		     "\"data_offsets\":[0,8]}}", 8, MOE_EFORMAT, "shape overflows");
	expect_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, MOE_EFORMAT,
		     "outside");
	expect_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, MOE_EFORMAT, "data_offsets must be");
	expect_error("{\"x\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, MOE_EFORMAT, "no dtype");
	expect_error("{\"x\":3}", 8, MOE_EFORMAT, "is not an object");
	expect_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		     "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, MOE_EFORMAT,
		     "duplicate");
}
END_TEST

START_TEST(test_st_missing)
{
	const char *hdr =
		"{\"model.layers.0.mlp.gate.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		"\"model.layers.0.mlp.experts.0.up_proj.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
		"\"model.layers.0.mlp.experts.0.down_proj.weight\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[8,12]},"
		"\"lm_head.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}";
	struct prof_st *st;
	unsigned char *b;
	const struct prof_st_tensor *t;
	float out[4];

	ck_assert_int_eq(open_header(hdr, 16, &st, &b), MOE_OK);
	ck_assert_int_eq(prof_st_find(st, "model.layers.0.mlp.experts.0.gate_proj.weight", &t),
			 MOE_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "no tensor 'model.layers.0.mlp.experts.0.gate_proj.weight'"));
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "4 tensors"));
	/* the nearest are the two expert-0 tensors, not the router or lm_head */
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "experts.0.down_proj.weight, model.layers.0.mlp.experts.0.up_proj.weight"));
	ck_assert_ptr_null(strstr(moe_errmsg(), "lm_head"));
	ck_assert_int_eq(prof_st_load_f32(st, "model.layers.0.mlp.experts.0.down_proj.weight", 1,
					  (int64_t[]){4}, out), MOE_EUNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "dtype I8"));
	prof_st_close(st);
	free(b);
}
END_TEST

static char tmpdir[256];

static void write_file(const char *name, const char *text)
{
	char path[512];
	FILE *fp;
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
}

START_TEST(test_config)
{
	struct prof_layer_cfg c;
	int l0 = 0, l1 = 1, l4 = 4, lauto = -1;

	snprintf(tmpdir, sizeof tmpdir, "%s/check_profiler.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	ck_assert_int_eq(prof_hf_config_load(tmpdir, &l0, &c), MOE_ENOTFOUND);
	write_file("config.json", "{\"model_type\":\"deepseek_v3\",\"hidden_size\":64,"
		   "\"num_hidden_layers\":4,\"moe_intermediate_size\":16,\"intermediate_size\":99,"
		   "\"n_routed_experts\":16,\"num_experts_per_tok\":4,\"n_group\":4,\"topk_group\":2,"
		   "\"norm_topk_prob\":true,\"routed_scaling_factor\":2.5,\"scoring_func\":\"sigmoid\","
		   "\"n_shared_experts\":2,\"first_k_dense_replace\":1}");
	ck_assert_int_eq(prof_hf_config_load(tmpdir, &l1, &c), MOE_OK);
	ck_assert_int_eq(c.arch, PROF_ARCH_DEEPSEEK);
	ck_assert_int_eq(prof_hf_config_load(tmpdir, &lauto, &c), MOE_OK);
	ck_assert_int_eq(lauto, 1); /* the first MoE layer */
	ck_assert_int_eq(c.hidden, 64);
	ck_assert_int_eq(c.ffn, 16);
	ck_assert_int_eq(c.experts, 16);
	ck_assert_int_eq(c.top_k, 4);
	ck_assert_int_eq(c.groups, 4);
	ck_assert_int_eq(c.groups_per_token, 2);
	ck_assert_int_eq(c.shared_ffn, 32);
	ck_assert_int_eq(c.kind, MOE_ROUTE_SIGMOID_BIAS);
	ck_assert_int_eq(c.has_bias, 1);
	ck_assert_double_eq(c.scaling, 2.5);
	ck_assert_int_eq(prof_hf_config_load(tmpdir, &l0, &c), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "first_k_dense_replace"));
	ck_assert_int_eq(prof_hf_config_load(tmpdir, &l4, &c), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "layers 0..3"));
	write_file("config.json", "{\"model_type\":\"llama\",\"hidden_size\":64}");
	ck_assert_int_eq(prof_hf_config_load(tmpdir, &l0, &c), MOE_EUNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "\"llama\" is not an MoE architecture"));
	write_file("config.json", "{\"model_type\":\"mixtral\",\"hidden_size\":64,\"num_hidden_layers\":2,"
		   "\"intermediate_size\":32,\"num_local_experts\":8}");
	ck_assert_int_eq(prof_hf_config_load(tmpdir, &l0, &c), MOE_EFORMAT);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "\"num_experts_per_tok\" is missing"));
	write_file("config.json", "{\"model_type\":\"mixtral\",\"hidden_size\":\"x\"}");
	ck_assert_int_eq(prof_hf_config_load(tmpdir, &l0, &c), MOE_EFORMAT);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "\"hidden_size\": expected a non-negative integer"));
	write_file("config.json", "{\"model_type\":\"mixtral\",\"hidden_size\":64,\"num_hidden_layers\":2,"
		   "\"intermediate_size\":32,\"num_local_experts\":8,\"num_experts_per_tok\":2}");
	ck_assert_int_eq(prof_hf_config_load(tmpdir, &l1, &c), MOE_OK);
	ck_assert_int_eq(c.arch, PROF_ARCH_MIXTRAL);
	ck_assert_int_eq(c.norm, 1);
	ck_assert_int_eq(c.kind, MOE_ROUTE_SOFTMAX_TOPK);
	write_file("config.json", "{oops");
	ck_assert_int_eq(prof_hf_config_load(tmpdir, &l0, &c), MOE_EFORMAT);
	{
		char path[512];
		snprintf(path, sizeof path, "%s/config.json", tmpdir);
		ck_assert_int_eq(unlink(path), 0);
		ck_assert_int_eq(rmdir(tmpdir), 0);
	}
}
END_TEST

/* ------------------------------------------------------------ forward */

static double silu(double g)
{
	return g / (1.0 + exp(-g));
}

/* The layer in double precision, straight from the HF-layout weights and the
 * forward's own routing (routing has its own reference tests). */
static void reference(const struct prof_weights *w, const float *x, size_t n, const int32_t *ids,
		      const float *gates, double *y)
{
	const struct prof_layer_cfg *c = &w->cfg;
	int H = c->hidden, k = c->top_k;
	double *h = malloc(sizeof(double) * (size_t)(c->ffn > c->shared_ffn ? c->ffn : c->shared_ffn));

	for (size_t t = 0; t < n; t++) {
		const float *xt = x + t * (size_t)H;
		double *yt = y + t * (size_t)H;
		for (int o = 0; o < H; o++)
			yt[o] = 0;
		for (int j = 0; j <= k; j++) {
			const float *G, *U, *D;
			int F;
			double s;
			if (j < k) {
				int e = ids[t * (size_t)k + (size_t)j];
				if (e < 0)
					continue;
				G = w->gate[e]; U = w->up[e]; D = w->down[e]; F = c->ffn;
				s = gates[t * (size_t)k + (size_t)j];
			} else {
				if (!c->shared_ffn)
					break;
				G = w->s_gate; U = w->s_up; D = w->s_down; F = c->shared_ffn;
				s = 1;
			}
			for (int q = 0; q < F; q++) {
				double g = 0, u = 0;
				for (int i = 0; i < H; i++) {
					g += (double)G[(size_t)q * H + i] * xt[i];
					u += (double)U[(size_t)q * H + i] * xt[i];
				}
				h[q] = silu(g) * u;
			}
			for (int o = 0; o < H; o++) {
				double d = 0;
				for (int q = 0; q < F; q++)
					d += (double)D[(size_t)o * F + q] * h[q];
				yt[o] += s * d;
			}
		}
	}
	free(h);
}

static struct prof_layer_cfg small_cfg(int H, int F, int E, int k, int Fs)
{
	struct prof_layer_cfg c;
	memset(&c, 0, sizeof c);
	c.hidden = H; c.ffn = F; c.experts = E; c.top_k = k; c.shared_ffn = Fs;
	c.kind = MOE_ROUTE_SOFTMAX_TOPK; c.norm = 1; c.scaling = 1.0;
	c.groups = c.groups_per_token = 1;
	return c;
}

static void check_forward(struct prof_layer_cfg c, size_t n, int threads)
{
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	struct prof_weights *w;
	struct prof_forward *f;
	float *x = malloc(n * (size_t)c.hidden * sizeof(float));
	float *y = malloc(n * (size_t)c.hidden * sizeof(float));
	double *ref = malloc(n * (size_t)c.hidden * sizeof(double)), st[PROF_STAGE_COUNT];
	double maxref = 0, maxerr = 0;

	gsl_rng_set(r, 7);
	ck_assert_int_eq(prof_weights_random(&c, r, &w), MOE_OK);
	for (size_t i = 0; i < n * (size_t)c.hidden; i++)
		x[i] = (float)(2 * gsl_rng_uniform(r) - 1);
	ck_assert_int_eq(prof_forward_new(w, threads, n, &f), MOE_OK);
	ck_assert_int_eq(prof_forward_run(f, x, n, y, st), MOE_OK);
	reference(w, x, n, prof_forward_ids(f), prof_forward_gates(f), ref);
	for (size_t i = 0; i < n * (size_t)c.hidden; i++) {
		if (fabs(ref[i]) > maxref)
			maxref = fabs(ref[i]);
		if (fabs(ref[i] - y[i]) > maxerr)
			maxerr = fabs(ref[i] - y[i]);
	}
	ck_assert_msg(maxerr <= 1e-5 * maxref, "max error %g against max |y| %g", maxerr, maxref);
	ck_assert(maxref > 1e-3);
	ck_assert(st[PROF_STAGE_TOTAL] > 0);
	/* flops: router + 6 H F per routed row */
	{
		double rows = 0;
		for (int e = 0; e < c.experts; e++)
			rows += (double)prof_forward_load(f)[e];
		ck_assert_double_eq_tol(prof_forward_flops(f, PROF_STAGE_TOTAL),
					2.0 * n * c.hidden * c.experts + 6.0 * c.hidden * c.ffn * rows +
						6.0 * c.hidden * c.shared_ffn * n, 1e-3);
	}
	prof_forward_free(f);
	prof_weights_free(w);
	gsl_rng_free(r);
	free(x);
	free(y);
	free(ref);
}

START_TEST(test_forward_small)
{
	/* odd sizes: H not a multiple of 16, F not of 8, K blocks > 1 */
	check_forward(small_cfg(37, 19, 5, 2, 0), 23, 1);
	check_forward(small_cfg(37, 19, 5, 2, 11), 23, 3);
	check_forward(small_cfg(300, 270, 4, 1, 0), 50, 2);
	check_forward(small_cfg(16, 8, 1, 1, 0), 1, 1);
}
END_TEST

START_TEST(test_forward_portable)
{
	/* the portable C kernel and epilogue, forced, against the reference */
	setenv("MOEKIT_KERNEL", "portable", 1);
	{
		struct prof_layer_cfg c = small_cfg(300, 270, 4, 2, 21);
		gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
		struct prof_weights *w;
		struct prof_forward *f;
		ck_assert_int_eq(prof_weights_random(&c, r, &w), MOE_OK);
		ck_assert_int_eq(prof_forward_new(w, 1, 4, &f), MOE_OK);
		ck_assert_str_eq(prof_forward_kernel(f), "portable 6x16");
		prof_forward_free(f);
		prof_weights_free(w);
		gsl_rng_free(r);
		check_forward(c, 29, 2);
	}
	unsetenv("MOEKIT_KERNEL");
}
END_TEST

START_TEST(test_forward_deepseek)
{
	struct prof_layer_cfg c = small_cfg(64, 24, 16, 4, 48);
	c.kind = MOE_ROUTE_SIGMOID_BIAS;
	c.has_bias = 1;
	c.groups = 4;
	c.groups_per_token = 2;
	c.scaling = 2.5;
	check_forward(c, 40, 2);
}
END_TEST

/* Runs a layer and returns y (caller frees). */
static float *run_once(struct prof_layer_cfg c, size_t n, int threads, int32_t *ids_out)
{
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	struct prof_weights *w;
	struct prof_forward *f;
	float *x = malloc(n * (size_t)c.hidden * sizeof(float));
	float *y = malloc(n * (size_t)c.hidden * sizeof(float));

	gsl_rng_set(r, 11);
	ck_assert_int_eq(prof_weights_random(&c, r, &w), MOE_OK);
	for (size_t i = 0; i < n * (size_t)c.hidden; i++)
		x[i] = (float)(2 * gsl_rng_uniform(r) - 1);
	ck_assert_int_eq(prof_forward_new(w, threads, n, &f), MOE_OK);
	ck_assert_int_eq(prof_forward_run(f, x, n, y, NULL), MOE_OK);
	if (ids_out)
		memcpy(ids_out, prof_forward_ids(f), n * (size_t)c.top_k * sizeof(int32_t));
	/* a second run on the same input gives the same bits */
	{
		float *y2 = malloc(n * (size_t)c.hidden * sizeof(float));
		ck_assert_int_eq(prof_forward_run(f, x, n, y2, NULL), MOE_OK);
		ck_assert_mem_eq(y, y2, n * (size_t)c.hidden * sizeof(float));
		free(y2);
	}
	prof_forward_free(f);
	prof_weights_free(w);
	gsl_rng_free(r);
	free(x);
	return y;
}

START_TEST(test_forward_determinism)
{
	struct prof_layer_cfg c = small_cfg(96, 40, 8, 2, 0);
	float *a = run_once(c, 200, 1, NULL), *b = run_once(c, 200, 1, NULL);
	ck_assert_mem_eq(a, b, 200 * 96 * sizeof(float));
	free(b);
	/* the router GEMM's rows are split by thread count; the rest is not:
	 * with these sizes the result still agrees to float rounding */
	b = run_once(c, 200, 2, NULL);
	for (size_t i = 0; i < 200 * 96; i++)
		ck_assert_float_eq_tol(a[i], b[i], 1e-5f);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_top1_top2)
{
	/* same weights and logits (top_k does not change the draws): top-1's
	 * expert is top-2's first slot for every token */
	struct prof_layer_cfg c1 = small_cfg(48, 16, 8, 1, 0), c2 = small_cfg(48, 16, 8, 2, 0);
	int32_t id1[64], id2[128];
	free(run_once(c1, 64, 1, id1));
	free(run_once(c2, 64, 1, id2));
	for (int t = 0; t < 64; t++) {
		ck_assert_int_eq(id1[t], id2[2 * t]);
		ck_assert_int_ne(id2[2 * t], id2[2 * t + 1]);
	}
}
END_TEST

START_TEST(test_forward_experts)
{
	/* pre-routed rows, expert 1 left empty: y[i] = FFN_e(x[i]) */
	struct prof_layer_cfg c = small_cfg(40, 24, 3, 1, 0);
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	struct prof_weights *w;
	struct prof_forward *f;
	enum { N = 17 };
	float x[N * 40], y[N * 40];
	int32_t ex[N];
	double ref[40], h[24];

	ck_assert_int_eq(prof_weights_random(&c, r, &w), MOE_OK);
	for (int i = 0; i < N * 40; i++)
		x[i] = (float)(2 * gsl_rng_uniform(r) - 1);
	for (int i = 0; i < N; i++)
		ex[i] = (i * 7) % 2 ? 2 : 0;
	ck_assert_int_eq(prof_forward_new(w, 2, N, &f), MOE_OK);
	ck_assert_int_eq(prof_forward_experts(f, x, ex, N, y, NULL), MOE_OK);
	ck_assert_uint_eq(prof_forward_load(f)[1], 0);
	ck_assert_uint_eq(prof_forward_load(f)[0] + prof_forward_load(f)[2], N);
	for (int i = 0; i < N; i++) {
		int e = ex[i];
		for (int q = 0; q < 24; q++) {
			double g = 0, u = 0;
			for (int k = 0; k < 40; k++) {
				g += (double)w->gate[e][q * 40 + k] * x[i * 40 + k];
				u += (double)w->up[e][q * 40 + k] * x[i * 40 + k];
			}
			h[q] = silu(g) * u;
		}
		for (int o = 0; o < 40; o++) {
			ref[o] = 0;
			for (int q = 0; q < 24; q++)
				ref[o] += (double)w->down[e][o * 24 + q] * h[q];
			ck_assert_double_eq_tol(y[i * 40 + o], ref[o], 1e-5);
		}
	}
	ex[3] = 3;
	ck_assert_int_eq(prof_forward_experts(f, x, ex, N, y, NULL), MOE_ERANGE);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "row 3: expert 3"));
	ck_assert_int_eq(prof_forward_experts(f, x, ex, N + 1, y, NULL), MOE_EINVAL);
	prof_forward_free(f);
	prof_weights_free(w);
	gsl_rng_free(r);
}
END_TEST

START_TEST(test_forward_errors)
{
	struct prof_layer_cfg c = small_cfg(16, 8, 4, 5, 0);
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
	struct prof_weights *w;
	struct prof_forward *f;
	float x[16 * 2], y[16 * 2];

	ck_assert_int_eq(prof_weights_random(&c, r, &w), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "top-k: 5"));
	c.top_k = 2;
	ck_assert_int_eq(prof_weights_random(&c, r, &w), MOE_OK);
	ck_assert_int_eq(prof_forward_new(w, 0, 4, &f), MOE_EINVAL);
	ck_assert_int_eq(prof_forward_new(w, 1, 1, &f), MOE_OK);
	for (int i = 0; i < 32; i++)
		x[i] = 1.0f;
	ck_assert_int_eq(prof_forward_run(f, x, 2, y, NULL), MOE_EINVAL);
	x[3] = NAN;
	ck_assert_int_eq(prof_forward_run(f, x, 1, y, NULL), MOE_EFORMAT);
	prof_forward_free(f);
	prof_weights_free(w);
	gsl_rng_free(r);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("profiler");
	TCase *core = tcase_create("core"), *errors = tcase_create("errors");

	tcase_set_timeout(core, 120);
	tcase_add_test(core, test_half);
	tcase_add_test(core, test_st_load);
	tcase_add_test(core, test_config);
	tcase_add_test(core, test_forward_small);
	tcase_add_test(core, test_forward_deepseek);
	tcase_add_test(core, test_forward_portable);
	tcase_add_test(core, test_forward_determinism);
	tcase_add_test(core, test_top1_top2);
	tcase_add_test(core, test_forward_experts);
	tcase_add_test(errors, test_st_errors);
	tcase_add_test(errors, test_st_missing);
	tcase_add_test(errors, test_forward_errors);
	suite_add_tcase(s, core);
	suite_add_tcase(s, errors);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
