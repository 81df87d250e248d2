/* traces/gen.h: synthetic router traces, shaped by a model (layers, experts,
 * top-k) and seeded through an explicit gsl_rng.
 *
 * The model of a token.  Each (step, layer) has an expert popularity pi
 * (sums to 1); a token from source rank r draws its router logits as
 *
 *     l_i = log pi_r,i + G_i,      G_i ~ Gumbel(0, 1) i.i.d.
 *
 * and is routed by the shared policy (moe/route.h; softmax then top-k by
 * default).  The top-k of log pi + Gumbel is a draw of k experts without
 * replacement with probabilities pi (Plackett-Luce), so a token's first
 * choice is expert i with probability pi_r,i exactly, and its later
 * choices follow pi among the experts left.  (With k > 1 the per-expert
 * loads are flatter than pi: no expert can take more than 1/k of the slots.)
 * The logits are stored when asked, so the trace can be re-routed.
 *
 * pi is built from:
 *  - popularity (when given): layer l's pi is row l of it, as is (the
 *    experts keep their ids); trace_gen_popularity_for_loads turns measured
 *    per-expert loads into such a row;
 *  - otherwise zipf_s: the expert of popularity rank j (0-based) has weight
 *    1 / (j + 1)^s; s = 0 is uniform.  Which expert holds rank j is a random
 *    permutation per layer (real routers' hot experts differ per layer).
 *  - drift (Dirichlet concentration C > 0): at every step after the first,
 *    pi_s ~ Dirichlet(C pi_{s-1} + 0.01): hot experts wander from step to step
 *    (E[pi_s] is pi_{s-1}, up to the 0.01 floor; larger C, slower drift).
 *  - rank_skew (sigma in [0, 1]): source rank r uses
 *    pi_r = (1 - sigma) pi + sigma P_r(pi), P_r a random permutation of the
 *    experts per rank and layer: ranks that see different data.
 *  - layer_corr (rho in [0, 1]): at layer l > 0, with probability rho a token
 *    "follows": its first choice is forced to f_l(e), e its first choice at
 *    layer l - 1 and f_l a random permutation per layer (its logit is set to
 *    1 above the largest), so the pair (e, f_l(e)) recurs across layers.
 *    With a layer_matrix M [E x E] instead, a following token's first choice
 *    is drawn from row e of M (weights, normalized per row; a row of zeros
 *    means tokens from e do not follow), e.g. measured joint counts of the
 *    expert at one layer and the next.
 *
 * Random numbers are drawn in a fixed order (per layer permutations first,
 * then step by step, layer by layer, rank by rank, token by token, E
 * Gumbels per token, then the follow draw and, with a matrix, the followed
 * expert), so a seed gives a bit-identical
 * trace.  Memory: O(ranks x tokens_per_rank + E x (ranks + layers)), not
 * growing with steps.
 */
#ifndef MOEKIT_TRACES_GEN_H
#define MOEKIT_TRACES_GEN_H

#include <stdint.h>
#include <gsl/gsl_rng.h>
#include "moe/error.h"
#include "moe/progress.h"
#include "moe/route.h"
#include "traces/trace.h"

struct trace_gen_opts {
	uint32_t layers, experts, top_k, ranks; /* shape (from a model preset) */
	uint64_t steps;                 /* >= 1 */
	uint32_t tokens_per_rank;       /* tokens each source rank sends per (step, layer), >= 1 */
	double zipf_s;                  /* Zipf exponent of the popularity, >= 0 (0: uniform) */
	const double *popularity;       /* [layers x E] pi per layer (borrowed, rows normalized
					 * here), NULL: Zipf */
	double drift;                   /* Dirichlet concentration of the step drift, 0 = none */
	double rank_skew;               /* sigma in [0, 1] */
	double layer_corr;              /* rho in [0, 1] */
	const double *layer_matrix;     /* [E x E] follow weights (borrowed), NULL: permutation */
	int logits;                     /* store the router logits (TRACE_F_LOGITS) */
	int counts;                     /* write a count-level trace instead of tokens */
	const struct moe_route_policy *policy; /* borrowed; NULL: softmax-topk, norm, top_k */
	char model[TRACE_MODEL_MAX];    /* model name for the header, may be "" */
	int zstd_level;                 /* 0 raw */
};

/* Defaults: 1 layer, 8 experts, top-2, 1 rank, 1 step, 1024 tokens per rank,
 * uniform, no drift, skew or correlation, weights only, raw. */
void trace_gen_opts_init(struct trace_gen_opts *o);

/* Writes the trace to path (a temporary name renamed when complete: nothing
 * is left under path on failure).  rng (borrowed) supplies every random
 * number.  progress may be NULL.  Returns MOE_OK; MOE_EINVAL naming the
 * option out of range (or a policy whose experts/k disagree, or a layer
 * matrix with a negative or non-finite weight); MOE_EIO, MOE_ENOMEM. */
enum moe_status trace_gen_write(const struct trace_gen_opts *o, gsl_rng *rng, const char *path,
				const struct moe_progress *progress);

/* Fits a Zipf law to loads [n] (any order): sorts them descending, drops
 * zeros, and fits log(load_j) = c - s log(j + 1) by least squares
 * (gsl_fit_linear).  Returns MOE_OK with *s and the coefficient of
 * determination *r2 (either may be NULL); MOE_EINVAL when fewer than 2
 * loads are positive. */
enum moe_status trace_gen_fit_zipf(const uint64_t *load, uint32_t n, double *s, double *r2);

/* The popularity exponent to give trace_gen_write so that top-k routing over
 * E experts yields sorted per-expert loads with Zipf exponent s_load (as
 * trace_gen_fit_zipf measures them), found by bisection over simulated
 * routing (tokens draws per trial, from rng).  Needed because with k > 1 the
 * loads are flatter than the popularity.  Returns MOE_OK with *s_pop;
 * MOE_ERANGE when s_load is beyond what any exponent up to 20 yields (the
 * loads of a top-k router cannot be steeper than 1/k of all slots on one
 * expert); MOE_EINVAL for bad arguments; MOE_ENOMEM. */
enum moe_status trace_gen_zipf_for_loads(uint32_t experts, uint32_t top_k, double s_load,
					 uint32_t tokens, gsl_rng *rng, double *s_pop);

/* The popularity pi [E] that makes top-k routing (softmax-topk over log pi
 * + Gumbel) give each expert the slot share share[E] (any non-negative
 * weights; normalized here), e.g. measured loads: pi is scaled by share /
 * simulated share until every share is within 0.002 or 200 rounds pass,
 * over one fixed set of tokens x E Gumbels from rng (so the rounds are
 * comparable).  Returns MOE_OK with pi filled (summing to 1); MOE_ERANGE
 * when a share is above 1/k (no top-k router gives one expert more than
 * 1/k of the slots) or the rounds end without agreement (the message gives
 * the largest gap); MOE_EINVAL for bad arguments; MOE_ENOMEM. */
enum moe_status trace_gen_popularity_for_loads(uint32_t experts, uint32_t top_k,
					       const double *share, uint32_t tokens, gsl_rng *rng,
					       double *pi);

#endif
