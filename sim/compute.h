/* sim/compute.h: how long a GPU computes: a roofline per kernel.
 *
 *   t = max(flops / (peak x eff(m)), bytes / hbm_bw) x slowdown + launches x launch_s
 *
 * peak is the GPU's FP8 peak when the model's weights are 1 byte or less
 * and the GPU has one, else its BF16 peak.  eff(m) is the fraction of peak
 * a GEMM with m rows (tokens) reaches; the default curve
 *
 *   eff(m) = eff_max x m / (m + m_half),   eff_max = cluster gpu.efficiency,
 *                                          m_half = 128 rows
 *
 * says a 128-token GEMM reaches half of what large GEMMs reach (an
 * assumption of the shape of measured cuBLAS curves; `moekit calibrate`
 * may replace eff_max and m_half).  Example, H100 (989 TFLOP/s, eff_max
 * 0.7), Mixtral expert (d 4096, f 14336, SwiGLU) with 512 tokens:
 * flops = 2 x 3 x 512 x 4096 x 14336 = 180 GFLOP; eff = 0.7 x 512/640 =
 * 0.56; t = 180e9 / (989e12 x 0.56) = 0.33 ms; its weights (352 MB at BF16)
 * take 0.105 ms at 3.35 TB/s, so the GEMM is compute bound.
 *
 * Parts of one MoE layer per GPU:
 *   experts   per local expert with n tokens: SwiGLU 3 matrices d x f (GELU
 *             or ReLU: 2), flops 2 x mats x n x d x f, bytes = weights (if
 *             n > 0) + activations n x (2d + mats x f) x act_bytes; one
 *             grouped launch per matrix.
 *   shared    the shared experts on the GPU's own tokens, the same way.
 *   other     attention (QKV and output projections from heads, kv_heads,
 *             head_dim; scores and values over a causal context of the
 *             GPU's tokens, or over `context` cached tokens when decoding)
 *             and the router (d x E), 4 launches.
 */
#ifndef MOEKIT_SIM_COMPUTE_H
#define MOEKIT_SIM_COMPUTE_H

#include "moe/model.h"

struct sim_compute {
	double peak_flops;   /* FLOP/s */
	double hbm_Bps;
	double launch_s;
	double eff_max, m_half;
};

/* Fills a compute model for cluster c running model m (defaults above):
 * the GPU of the cluster's own fields (a cluster with node groups: its
 * first group's). */
void sim_compute_init(struct sim_compute *k, const struct moe_cluster *c, const struct moe_model *m);

/* The same for the GPU of node kind `kind` of c (0..moe_cluster_kinds(c)-1,
 * see moe/model.h): a cluster with node groups computes on each node with
 * its group's GPU.  Kind 0 of a homogeneous cluster is sim_compute_init. */
void sim_compute_init_kind(struct sim_compute *k, const struct moe_cluster *c, int kind,
			   const struct moe_model *m);

/* eff(m rows), dimensionless. */
double sim_compute_eff(const struct sim_compute *k, double rows);

/* Seconds for one FFN of width ffn on n tokens (0 when n is 0): a routed
 * or shared expert of model m, without launch overhead. */
double sim_compute_ffn_s(const struct sim_compute *k, const struct moe_model *m, int ffn, double n);

/* Seconds of the experts of one GPU: loads[i] tokens for each of its
 * nexperts local experts, times slowdown, plus the launches. */
double sim_compute_experts_s(const struct sim_compute *k, const struct moe_model *m,
			     const double *loads, int nexperts, double slowdown);

/* Seconds of the non-expert work of one MoE layer on a GPU with tokens
 * tokens (attention, router, shared experts).  context: cached tokens per
 * sequence when decoding (0: prefill/training, causal over the tokens). */
double sim_compute_other_s(const struct sim_compute *k, const struct moe_model *m, double tokens,
			   double context, double slowdown);

#endif
