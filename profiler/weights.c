/* profiler/weights.c: one MoE layer's weights - random, or from a Hugging
 * Face checkpoint (config.json for the shape and routing, safetensors for
 * the tensors).  See weights.h for shapes and names. */
#include "config.h"
#include "profiler/weights.h"
#include "profiler/safetensors.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *prof_arch_name(enum prof_arch a)
{
	switch (a) {
	case PROF_ARCH_NONE: return "random";
	case PROF_ARCH_MIXTRAL: return "mixtral";
	case PROF_ARCH_QWEN: return "qwen-moe";
	case PROF_ARCH_DEEPSEEK: return "deepseek-v3";
	}
	return NULL;
}

enum moe_status prof_layer_cfg_check(const struct prof_layer_cfg *c)
{
	if (c->hidden < 1 || c->hidden > (1 << 20))
		MOE_FAIL(MOE_EINVAL, "hidden: %d, expected 1..1048576", c->hidden);
	if (c->ffn < 1 || c->ffn > (1 << 22))
		MOE_FAIL(MOE_EINVAL, "ffn: %d, expected 1..4194304", c->ffn);
	if (c->experts < 1 || c->experts > 65536)
		MOE_FAIL(MOE_EINVAL, "experts: %d, expected 1..65536", c->experts);
	if (c->top_k < 1 || c->top_k > c->experts)
		MOE_FAIL(MOE_EINVAL, "top-k: %d, expected 1..%d (the experts)", c->top_k, c->experts);
	if (c->shared_ffn < 0 || c->shared_ffn > (1 << 22))
		MOE_FAIL(MOE_EINVAL, "shared ffn: %d, expected 0..4194304", c->shared_ffn);
	if (c->groups > 1 && (c->experts % c->groups != 0 || c->groups_per_token < 1 ||
			      c->groups_per_token > c->groups))
		MOE_FAIL(MOE_EINVAL, "groups: %d groups with %d per token do not fit %d experts",
			 c->groups, c->groups_per_token, c->experts);
	if (!(c->scaling > 0) || !isfinite(c->scaling))
		MOE_FAIL(MOE_EINVAL, "routed scaling: %g, expected > 0", c->scaling);
	return MOE_OK;
}

void prof_layer_cfg_policy(const struct prof_layer_cfg *c, const float *bias,
			   struct moe_route_policy *p)
{
	moe_route_policy_init(p, c->experts, c->top_k);
	p->kind = c->kind;
	p->norm = c->norm;
	p->scaling = c->scaling;
	p->groups = c->groups > 1 ? c->groups : 0;
	p->groups_per_token = c->groups > 1 ? c->groups_per_token : 1;
	p->capacity_factor = c->capacity_factor;
	p->bias = bias;
}

double prof_layer_cfg_weight_bytes(const struct prof_layer_cfg *c)
{
	double h = c->hidden;
	return 4.0 * (h * c->experts + 3.0 * h * c->ffn * c->experts + 3.0 * h * c->shared_ffn +
		      (c->has_bias ? c->experts : 0) + (c->shared_gate ? h : 0));
}

enum moe_status prof_layer_cfg_from_model(const struct moe_model *m, struct prof_layer_cfg *c)
{
	memset(c, 0, sizeof *c);
	if (m->activation != MOE_ACT_SWIGLU)
		MOE_FAIL(MOE_EINVAL, "model %s: activation must be swiglu for the profiler", m->name);
	c->hidden = m->hidden;
	c->ffn = m->expert_ffn;
	c->experts = m->experts;
	c->top_k = m->top_k;
	c->shared_ffn = m->shared_experts * m->shared_ffn;
	switch (m->router) {
	case MOE_ROUTER_SOFTMAX_TOPK: c->kind = MOE_ROUTE_SOFTMAX_TOPK; break;
	case MOE_ROUTER_TOPK_SOFTMAX: c->kind = MOE_ROUTE_TOPK_SOFTMAX; break;
	case MOE_ROUTER_SIGMOID_BIAS: c->kind = MOE_ROUTE_SIGMOID_BIAS; c->has_bias = 1; break;
	default: MOE_FAIL(MOE_EINVAL, "model %s: router kind %d unknown", m->name, (int)m->router);
	}
	c->norm = m->norm_topk;
	c->scaling = m->routed_scaling > 0 ? m->routed_scaling : 1.0;
	c->groups = m->groups > 1 ? m->groups : 1;
	c->groups_per_token = m->groups > 1 ? m->groups_per_token : 1;
	c->capacity_factor = m->capacity_factor;
	c->arch = PROF_ARCH_NONE;
	snprintf(c->model_type, sizeof c->model_type, "%s", m->name);
	return MOE_OK;
}

/* Reads an integer key; *out unchanged when the key is absent and optional. */
static enum moe_status cfg_int(const char *file, json_t *root, const char *key, int required,
			       int *out)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v)) {
		if (required)
			MOE_FAIL(MOE_EFORMAT, "%s: key \"%s\" is missing (an integer)", file, key);
		return MOE_OK;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 30))
		MOE_FAIL(MOE_EFORMAT, "%s: \"%s\": expected a non-negative integer", file, key);
	*out = (int)json_integer_value(v);
	return MOE_OK;
}

static enum moe_status cfg_num(const char *file, json_t *root, const char *key, double *out)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return MOE_OK;
	if (!json_is_number(v))
		MOE_FAIL(MOE_EFORMAT, "%s: \"%s\": expected a number", file, key);
	*out = json_number_value(v);
	return MOE_OK;
}

static enum moe_status cfg_bool(const char *file, json_t *root, const char *key, int *out)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return MOE_OK;
	if (!json_is_boolean(v))
		MOE_FAIL(MOE_EFORMAT, "%s: \"%s\": expected true or false", file, key);
	*out = json_is_true(v);
	return MOE_OK;
}

/* Whether layer is an MoE layer under the config's dense-layer keys. */
static int is_moe_layer(json_t *root, int layer, int first_dense, int sparse_step)
{
	json_t *mlp_only = json_object_get(root, "mlp_only_layers"), *v;
	size_t i;

	if (layer < first_dense || (sparse_step > 1 && (layer + 1) % sparse_step != 0))
		return 0;
	if (json_is_array(mlp_only))
		json_array_foreach(mlp_only, i, v)
			if (json_is_integer(v) && json_integer_value(v) == layer)
				return 0;
	return 1;
}

enum moe_status prof_hf_config_load(const char *dir, int *layer_io, struct prof_layer_cfg *c)
{
	int layer = *layer_io;
	char file[4096];
	json_error_t jerr;
	json_t *root, *mt, *sf;
	const char *type;
	enum moe_status st = MOE_OK;
	int layers = 0, first_dense = 0, sparse_step = 1, n_shared = 0, inter = 0, moe_inter = 0;
	int shared_inter = 0;

	memset(c, 0, sizeof *c);
	snprintf(file, sizeof file, "%s/config.json", dir);
	if (access(file, F_OK) != 0)
		MOE_FAIL(MOE_ENOTFOUND, "%s: no such file", file);
	if (!(root = json_load_file(file, 0, &jerr)))
		MOE_FAIL(MOE_EFORMAT, "%s:%d: %s", file, jerr.line, jerr.text);
	if (!json_is_object(root)) {
		json_decref(root);
		MOE_FAIL(MOE_EFORMAT, "%s: expected a JSON object", file);
	}
	mt = json_object_get(root, "model_type");
	if (!json_is_string(mt)) {
		st = moe_error(MOE_EFORMAT, "%s: key \"model_type\" is missing (a string)", file);
		goto out;
	}
	type = json_string_value(mt);
	snprintf(c->model_type, sizeof c->model_type, "%s", type);
	if (strcmp(type, "mixtral") == 0) {
		c->arch = PROF_ARCH_MIXTRAL;
		c->norm = 1; /* Mixtral always renormalizes its top-k */
	} else if (strcmp(type, "qwen2_moe") == 0 || strcmp(type, "qwen3_moe") == 0 ||
		   strcmp(type, "olmoe") == 0) {
		c->arch = PROF_ARCH_QWEN;
	} else if (strcmp(type, "deepseek_v3") == 0) {
		c->arch = PROF_ARCH_DEEPSEEK;
	} else {
		st = moe_error(MOE_EUNSUPPORTED,
			       "%s: model_type \"%s\" is not an MoE architecture the profiler knows "
			       "(mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v3)", file, type);
		goto out;
	}
	c->kind = MOE_ROUTE_SOFTMAX_TOPK;
	c->scaling = 1.0;
	c->groups = c->groups_per_token = 1;
	if ((st = cfg_int(file, root, "hidden_size", 1, &c->hidden)) != MOE_OK ||
	    (st = cfg_int(file, root, "num_hidden_layers", 1, &layers)) != MOE_OK ||
	    (st = cfg_int(file, root, "intermediate_size", 0, &inter)) != MOE_OK ||
	    (st = cfg_int(file, root, "moe_intermediate_size", 0, &moe_inter)) != MOE_OK ||
	    (st = cfg_int(file, root, "num_local_experts", 0, &c->experts)) != MOE_OK ||
	    (st = cfg_int(file, root, "num_experts", 0, &c->experts)) != MOE_OK ||
	    (st = cfg_int(file, root, "n_routed_experts", 0, &c->experts)) != MOE_OK ||
	    (st = cfg_int(file, root, "num_experts_per_tok", 1, &c->top_k)) != MOE_OK ||
	    (st = cfg_int(file, root, "n_group", 0, &c->groups)) != MOE_OK ||
	    (st = cfg_int(file, root, "topk_group", 0, &c->groups_per_token)) != MOE_OK ||
	    (st = cfg_int(file, root, "n_shared_experts", 0, &n_shared)) != MOE_OK ||
	    (st = cfg_int(file, root, "shared_expert_intermediate_size", 0, &shared_inter)) != MOE_OK ||
	    (st = cfg_int(file, root, "first_k_dense_replace", 0, &first_dense)) != MOE_OK ||
	    (st = cfg_int(file, root, "decoder_sparse_step", 0, &sparse_step)) != MOE_OK ||
	    (st = cfg_bool(file, root, "norm_topk_prob", &c->norm)) != MOE_OK ||
	    (st = cfg_num(file, root, "routed_scaling_factor", &c->scaling)) != MOE_OK)
		goto out;
	c->ffn = moe_inter > 0 ? moe_inter : inter;
	if (c->ffn <= 0) {
		st = moe_error(MOE_EFORMAT, "%s: neither \"moe_intermediate_size\" nor \"intermediate_size\" is set",
			       file);
		goto out;
	}
	if (c->experts <= 0) {
		st = moe_error(MOE_EFORMAT,
			       "%s: no expert count (num_local_experts, num_experts or n_routed_experts)", file);
		goto out;
	}
	sf = json_object_get(root, "scoring_func");
	if (sf && !json_is_null(sf)) {
		if (json_is_string(sf) && strcmp(json_string_value(sf), "sigmoid") == 0)
			c->kind = MOE_ROUTE_SIGMOID_BIAS;
		else if (!json_is_string(sf) || strcmp(json_string_value(sf), "softmax") != 0) {
			st = moe_error(MOE_EFORMAT, "%s: \"scoring_func\": expected \"softmax\" or \"sigmoid\"", file);
			goto out;
		}
	}
	if (c->arch == PROF_ARCH_DEEPSEEK) {
		c->has_bias = 1;
		c->shared_ffn = n_shared * c->ffn;
	} else if (strcmp(type, "qwen2_moe") == 0 && shared_inter > 0) {
		c->shared_ffn = shared_inter;
		c->shared_gate = 1;
	}
	if (c->groups < 1)
		c->groups = 1;
	if (c->groups_per_token < 1)
		c->groups_per_token = c->groups;
	if (layer < 0) {
		for (layer = 0; layer < layers && !is_moe_layer(root, layer, first_dense, sparse_step); layer++)
			;
		*layer_io = layer;
	}
	if (layer < 0 || layer >= layers) {
		st = moe_error(MOE_EINVAL, "--layer %d: %s has layers 0..%d", layer, file, layers - 1);
		goto out;
	}
	if (!is_moe_layer(root, layer, first_dense, sparse_step)) {
		st = moe_error(MOE_EINVAL,
			       "--layer %d: a dense layer (%s: first_k_dense_replace %d, decoder_sparse_step %d, "
			       "mlp_only_layers)", layer, file, first_dense, sparse_step);
		goto out;
	}
	st = prof_layer_cfg_check(c);
	if (st != MOE_OK)
		st = moe_error(st, "%s: %s", file, moe_errmsg());
out:
	json_decref(root);
	return st;
}

enum prof_arch prof_arch_detect(const struct prof_st *st, int layer)
{
	char name[256];

	snprintf(name, sizeof name, "model.layers.%d.block_sparse_moe.gate.weight", layer);
	if (prof_st_has(st, name))
		return PROF_ARCH_MIXTRAL;
	snprintf(name, sizeof name, "model.layers.%d.mlp.gate.e_score_correction_bias", layer);
	if (prof_st_has(st, name))
		return PROF_ARCH_DEEPSEEK;
	snprintf(name, sizeof name, "model.layers.%d.mlp.gate.weight", layer);
	if (prof_st_has(st, name))
		return PROF_ARCH_QWEN;
	return PROF_ARCH_NONE;
}

void prof_weights_free(struct prof_weights *w)
{
	if (!w)
		return;
	for (int e = 0; e < w->cfg.experts; e++) {
		if (w->gate)
			free(w->gate[e]);
		if (w->up)
			free(w->up[e]);
		if (w->down)
			free(w->down[e]);
	}
	free(w->gate);
	free(w->up);
	free(w->down);
	free(w->router);
	free(w->bias);
	free(w->s_gate);
	free(w->s_up);
	free(w->s_down);
	free(w->s_router);
	free(w);
}

static enum moe_status weights_alloc(const struct prof_layer_cfg *c, struct prof_weights **out)
{
	struct prof_weights *w;
	size_t h = (size_t)c->hidden, f = (size_t)c->ffn, fs = (size_t)c->shared_ffn;
	size_t e = (size_t)c->experts;
	enum moe_status st;

	*out = NULL;
	if ((st = prof_layer_cfg_check(c)) != MOE_OK)
		return st;
	if (!(w = calloc(1, sizeof *w)))
		goto nomem;
	w->cfg = *c;
	w->gate = calloc(e, sizeof *w->gate);
	w->up = calloc(e, sizeof *w->up);
	w->down = calloc(e, sizeof *w->down);
	w->router = malloc(e * h * sizeof(float));
	if (!w->gate || !w->up || !w->down || !w->router)
		goto nomem;
	if (c->has_bias && !(w->bias = malloc(e * sizeof(float))))
		goto nomem;
	for (size_t i = 0; i < e; i++)
		if (!(w->gate[i] = malloc(f * h * sizeof(float))) ||
		    !(w->up[i] = malloc(f * h * sizeof(float))) ||
		    !(w->down[i] = malloc(f * h * sizeof(float))))
			goto nomem;
	if (fs && (!(w->s_gate = malloc(fs * h * sizeof(float))) ||
		   !(w->s_up = malloc(fs * h * sizeof(float))) ||
		   !(w->s_down = malloc(fs * h * sizeof(float)))))
		goto nomem;
	if (c->shared_gate && !(w->s_router = malloc(h * sizeof(float))))
		goto nomem;
	*out = w;
	return MOE_OK;
nomem:
	prof_weights_free(w);
	MOE_FAIL(MOE_ENOMEM, "out of memory for %.3g GiB of FP32 layer weights",
		 prof_layer_cfg_weight_bytes(c) / 1073741824.0);
}

static void fill_uniform(gsl_rng *r, float *p, size_t n, double bound)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (float)((2.0 * gsl_rng_uniform(r) - 1.0) * bound);
}

enum moe_status prof_weights_random(const struct prof_layer_cfg *c, gsl_rng *r,
				    struct prof_weights **out)
{
	struct prof_weights *w;
	enum moe_status st;
	size_t h = (size_t)c->hidden, f = (size_t)c->ffn, fs = (size_t)c->shared_ffn;
	double bh = 1.0 / sqrt((double)h);

	if ((st = weights_alloc(c, &w)) != MOE_OK)
		return st;
	fill_uniform(r, w->router, (size_t)c->experts * h, bh);
	if (w->bias)
		fill_uniform(r, w->bias, (size_t)c->experts, 0.1);
	for (int e = 0; e < c->experts; e++) {
		fill_uniform(r, w->gate[e], f * h, bh);
		fill_uniform(r, w->up[e], f * h, bh);
		fill_uniform(r, w->down[e], f * h, 1.0 / sqrt((double)f));
	}
	if (fs) {
		fill_uniform(r, w->s_gate, fs * h, bh);
		fill_uniform(r, w->s_up, fs * h, bh);
		fill_uniform(r, w->s_down, fs * h, 1.0 / sqrt((double)fs));
	}
	if (w->s_router)
		fill_uniform(r, w->s_router, h, bh);
	*out = w;
	return MOE_OK;
}

static enum moe_status load2(struct prof_st *st, const char *name, int64_t rows, int64_t cols,
			     float *dst)
{
	int64_t shape[2] = {rows, cols};
	return prof_st_load_f32(st, name, 2, shape, dst);
}

enum moe_status prof_weights_load(const char *dir, int layer, const struct prof_layer_cfg *c,
				  struct prof_weights **out)
{
	struct prof_st *st = NULL;
	struct prof_weights *w = NULL;
	enum moe_status rc;
	char name[256], pre[64];
	const char *router, *g, *u, *d, *experts;
	int64_t h = c->hidden, f = c->ffn, fs = c->shared_ffn, e = c->experts;

	*out = NULL;
	switch (c->arch) {
	case PROF_ARCH_MIXTRAL:
		router = "block_sparse_moe.gate.weight";
		experts = "block_sparse_moe.experts";
		g = "w1"; u = "w3"; d = "w2";
		break;
	case PROF_ARCH_QWEN:
	case PROF_ARCH_DEEPSEEK:
		router = "mlp.gate.weight";
		experts = "mlp.experts";
		g = "gate_proj"; u = "up_proj"; d = "down_proj";
		break;
	default:
		MOE_FAIL(MOE_EINVAL, "%s: no tensor naming scheme for the checkpoint", dir);
	}
	if ((rc = prof_st_open(dir, &st)) != MOE_OK)
		return rc;
	if ((rc = weights_alloc(c, &w)) != MOE_OK)
		goto out;
	snprintf(pre, sizeof pre, "model.layers.%d.", layer);
	snprintf(name, sizeof name, "%s%s", pre, router);
	if ((rc = load2(st, name, e, h, w->router)) != MOE_OK)
		goto out;
	if (w->bias) {
		int64_t shape[1] = {e};
		snprintf(name, sizeof name, "%smlp.gate.e_score_correction_bias", pre);
		if ((rc = prof_st_load_f32(st, name, 1, shape, w->bias)) != MOE_OK)
			goto out;
	}
	for (int x = 0; x < c->experts; x++) {
		snprintf(name, sizeof name, "%s%s.%d.%s.weight", pre, experts, x, g);
		if ((rc = load2(st, name, f, h, w->gate[x])) != MOE_OK)
			goto out;
		snprintf(name, sizeof name, "%s%s.%d.%s.weight", pre, experts, x, u);
		if ((rc = load2(st, name, f, h, w->up[x])) != MOE_OK)
			goto out;
		snprintf(name, sizeof name, "%s%s.%d.%s.weight", pre, experts, x, d);
		if ((rc = load2(st, name, h, f, w->down[x])) != MOE_OK)
			goto out;
	}
	if (fs) {
		const char *sh = c->arch == PROF_ARCH_DEEPSEEK ? "mlp.shared_experts" : "mlp.shared_expert";
		snprintf(name, sizeof name, "%s%s.gate_proj.weight", pre, sh);
		if ((rc = load2(st, name, fs, h, w->s_gate)) != MOE_OK)
			goto out;
		snprintf(name, sizeof name, "%s%s.up_proj.weight", pre, sh);
		if ((rc = load2(st, name, fs, h, w->s_up)) != MOE_OK)
			goto out;
		snprintf(name, sizeof name, "%s%s.down_proj.weight", pre, sh);
		if ((rc = load2(st, name, h, fs, w->s_down)) != MOE_OK)
			goto out;
	}
	if (w->s_router) {
		snprintf(name, sizeof name, "%smlp.shared_expert_gate.weight", pre);
		if ((rc = load2(st, name, 1, h, w->s_router)) != MOE_OK)
			goto out;
	}
	*out = w;
	w = NULL;
out:
	prof_weights_free(w);
	prof_st_close(st);
	return rc;
}
