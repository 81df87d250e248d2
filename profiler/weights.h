/* profiler/weights.h: the weights of one MoE layer, FP32, in Hugging Face's
 * layout: seeded random, or loaded from a checkpoint folder (config.json +
 * safetensors) for the Mixtral, Qwen2-MoE / Qwen3-MoE / OLMoE and
 * DeepSeek-V3 tensor names.
 *
 * Shapes (H hidden, F expert FFN, E experts, Fs shared FFN), all row-major as
 * torch.nn.Linear stores them (out_features x in_features):
 *
 *     router        [E x H]     logits = x . router^T
 *     bias          [E]         DeepSeek-V3 e_score_correction_bias (selection only)
 *     gate[e], up[e] [F x H]    h = silu(x . gate^T) * (x . up^T)
 *     down[e]       [H x F]     y = h . down^T
 *     s_gate, s_up  [Fs x H]    shared experts (DeepSeek-V3: n_shared x moe_intermediate_size)
 *     s_down        [H x Fs]
 *     s_router      [H]         Qwen2-MoE shared_expert_gate: shared output x sigmoid(x . s_router)
 *
 * Tensor names, for layer L (prefix "model.layers.L."):
 *     mixtral:           block_sparse_moe.gate.weight, block_sparse_moe.experts.N.{w1,w3,w2}.weight
 *                        (w1 gate, w3 up, w2 down)
 *     qwen2_moe, qwen3_moe, olmoe:
 *                        mlp.gate.weight, mlp.experts.N.{gate,up,down}_proj.weight;
 *                        qwen2_moe also mlp.shared_expert.*_proj.weight, mlp.shared_expert_gate.weight
 *     deepseek_v3:       mlp.gate.weight, mlp.gate.e_score_correction_bias, mlp.experts.N.*,
 *                        mlp.shared_experts.{gate,up,down}_proj.weight
 */
#ifndef MOEKIT_PROFILER_WEIGHTS_H
#define MOEKIT_PROFILER_WEIGHTS_H

#include <gsl/gsl_rng.h>
#include "moe/error.h"
#include "moe/model.h"
#include "moe/route.h"

enum prof_arch {
	PROF_ARCH_NONE,      /* random weights, no names */
	PROF_ARCH_MIXTRAL,   /* block_sparse_moe.* */
	PROF_ARCH_QWEN,      /* mlp.gate, mlp.experts.N.*_proj (qwen2_moe, qwen3_moe, olmoe) */
	PROF_ARCH_DEEPSEEK,  /* mlp.gate + e_score_correction_bias, mlp.shared_experts */
};

/* The shape and routing of one MoE layer. */
struct prof_layer_cfg {
	int hidden;             /* H */
	int ffn;                /* F, one routed expert's intermediate size */
	int experts;            /* E */
	int top_k;
	int shared_ffn;         /* Fs: total intermediate size of the shared experts, 0 = none */
	int shared_gate;        /* Qwen2-MoE: the shared output is scaled by sigmoid(x . s_router) */
	int has_bias;           /* a selection bias [E] (DeepSeek-V3) */
	enum moe_route_kind kind;
	int norm;               /* renormalize the top-k weights */
	double scaling;         /* routed_scaling_factor */
	int groups, groups_per_token;
	double capacity_factor; /* 0 = no capacity limit (moe/route.h) */
	enum prof_arch arch;
	char model_type[64];    /* config.json model_type, or the preset name */
};

struct prof_weights {
	struct prof_layer_cfg cfg;
	float *router;          /* [E x H] */
	float *bias;            /* [E] or NULL */
	float **gate, **up;     /* [E] arrays of [F x H] */
	float **down;           /* [E] arrays of [H x F] */
	float *s_gate, *s_up;   /* [Fs x H] or NULL */
	float *s_down;          /* [H x Fs] or NULL */
	float *s_router;        /* [H] or NULL */
};

/* Fills cfg from a model (preset or INI file): dimensions, top-k, router
 * kind, norm, scaling, groups, shared experts (shared_experts x shared_ffn);
 * a sigmoid-bias router gets a bias.  Returns MOE_OK or MOE_EINVAL naming the
 * model field the profiler cannot run (a router kind route.h lacks, a
 * non-SwiGLU activation). */
enum moe_status prof_layer_cfg_from_model(const struct moe_model *m, struct prof_layer_cfg *cfg);

/* Checks a cfg: positive sizes, top_k <= experts, groups divide experts.
 * Returns MOE_OK or MOE_EINVAL naming the field. */
enum moe_status prof_layer_cfg_check(const struct prof_layer_cfg *cfg);

/* Reads DIR/config.json into *cfg (the fields listed in the README: model_type,
 * hidden_size, intermediate_size / moe_intermediate_size, num_local_experts /
 * num_experts / n_routed_experts, num_experts_per_tok, n_group, topk_group,
 * norm_topk_prob, routed_scaling_factor, scoring_func, n_shared_experts,
 * shared_expert_intermediate_size) and checks that layer is an MoE layer
 * (num_hidden_layers, first_k_dense_replace, decoder_sparse_step,
 * mlp_only_layers).  *layer < 0 picks the first MoE layer and writes it
 * back.  Returns MOE_OK; MOE_ENOTFOUND when config.json is
 * absent; MOE_EFORMAT naming the key that is missing or malformed;
 * MOE_EUNSUPPORTED for a model_type this profiler has no names for (the
 * message lists those it has); MOE_EINVAL when layer is out of range or
 * dense. */
enum moe_status prof_hf_config_load(const char *dir, int *layer, struct prof_layer_cfg *cfg);

/* Guesses the naming scheme of a checkpoint without config.json from the
 * names of layer `layer`'s router; returns PROF_ARCH_NONE when none fits. */
struct prof_st;
enum prof_arch prof_arch_detect(const struct prof_st *st, int layer);

/* Random weights: every element uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)]
 * (torch.nn.Linear's default bound), the bias uniform in [-0.1, 0.1], drawn
 * from r in a fixed order (router, bias, then per expert gate, up, down, then
 * shared), so a seed fixes them.  Returns MOE_OK with *out owned by the
 * caller (free with prof_weights_free); MOE_EINVAL for a bad cfg; MOE_ENOMEM
 * naming the bytes needed. */
enum moe_status prof_weights_random(const struct prof_layer_cfg *cfg, gsl_rng *r,
				    struct prof_weights **out);

/* Loads layer `layer` from the safetensors of DIR (file or folder) with the
 * names of cfg->arch and the shapes of cfg.  Returns MOE_OK with *out owned by
 * the caller; the errors of prof_st_open / prof_st_load_f32 (a missing name
 * lists the nearest present, a wrong shape or dtype names the tensor);
 * MOE_EINVAL when cfg->arch is PROF_ARCH_NONE; MOE_ENOMEM. */
enum moe_status prof_weights_load(const char *dir, int layer, const struct prof_layer_cfg *cfg,
				  struct prof_weights **out);

/* Frees all the weights; NULL is a no-op. */
void prof_weights_free(struct prof_weights *w);

/* The routing policy of a cfg (kind, top_k, norm, scaling, groups,
 * capacity) with bias (borrowed, may be NULL); the rest as
 * moe_route_policy_init.  The forward pass and the expert-parallel path both
 * route through it. */
void prof_layer_cfg_policy(const struct prof_layer_cfg *cfg, const float *bias,
			   struct moe_route_policy *p);

/* Bytes of FP32 weights a cfg holds. */
double prof_layer_cfg_weight_bytes(const struct prof_layer_cfg *cfg);

const char *prof_arch_name(enum prof_arch a);

#endif
