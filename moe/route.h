/* moe/route.h: routing policies - from router logits to each token's experts
 * and gate weights.  The one implementation shared by trace re-routing
 * (traces/) and the profiler's forward pass (profiler/), so that top-k,
 * bias, groups and capacity mean the same thing everywhere.
 *
 * Worked example (softmax then top-k, k = 2, renormalized, E = 4, 1 token):
 *
 *     logits  = [ 1.0, 3.0, 2.0, 0.0 ]
 *     selected ids (rank order) = [ 1, 2 ]
 *     weights = [ e^3, e^2 ] / (e^3 + e^2) = [ 0.7310586, 0.2689414 ]
 *
 *     struct moe_route_policy pol;
 *     struct moe_route_workspace *ws;
 *     int32_t ids[2]; float w[2]; uint64_t load[4];
 *     struct moe_route_out out = { ids, w, load, NULL, 0, 0 };
 *     moe_route_policy_init(&pol, 4, 2);          // softmax-topk, norm on
 *     moe_route_workspace_alloc(&pol, 1, &ws);    // once, for up to 1 token
 *     moe_route_batch(&pol, ws, logits, 1, &out); // no allocation inside
 *     moe_route_workspace_free(ws);
 *
 * The exact definitions (selection key, weights, group/node limits, capacity
 * and which tokens overflow, noise, top-p, tie-breaks, the balancer) are in
 * docs/routing.md; the summary here is normative too and must agree with it.
 *
 * Per token t with logits l[0..E-1] (float32):
 *  1. Selection key x_i (what is ranked), with noise n_i ~ N(0, noise_std^2)
 *     (0 when noise_std = 0) and bias b_i (0 when no bias):
 *       SOFTMAX_TOPK, TOP_P: x_i = l_i + n_i when there is no bias and no
 *         group or node limit (softmax is monotone, so this is the top-k by
 *         probability); otherwise x_i = softmax(l + n)_i + b_i.
 *       TOPK_SOFTMAX:        x_i = l_i + n_i + b_i.
 *       SIGMOID_BIAS:        x_i = sigmoid(l_i + n_i) + b_i.
 *  2. Group limit (groups G > 1): experts are G contiguous blocks of E/G;
 *     a group's score is the sum of its group_topn largest keys (DeepSeek-V3
 *     uses 2); the groups_per_token best groups are kept, the other experts
 *     excluded.  Node limit (node_of != NULL): the same over each node's
 *     experts, keeping max_nodes nodes (applied after the group limit).
 *  3. Selection: the k largest keys among allowed experts, in descending
 *     order; equal keys: the lower expert id ranks first.  Slot j of a
 *     token holds its rank-j expert.  TOP_P keeps only the first m slots,
 *     m the fewest whose probabilities p (unnoised softmax) sum to >= top_p,
 *     m <= k; the remaining slots are MOE_ROUTE_NONE with weight 0.
 *  4. Weights, from the unnoised, unbiased scores of the selected experts:
 *       SOFTMAX_TOPK, TOP_P: p_i = softmax(l)_i; norm: p_i / sum_sel p.
 *       TOPK_SOFTMAX:        softmax over the selected logits (sums to 1).
 *       SIGMOID_BIAS:        s_i = sigmoid(l_i); norm: s_i / sum_sel s.
 *     then times scaling.  Written D for the normalizer (1 when not norm).
 *  5. Capacity (capacity_factor > 0): C = ceil(cf * n * k / E) slots per
 *     expert for the batch of n tokens.  Slots are admitted rank by rank,
 *     tokens in order within a rank: (rank 0: token 0, 1, ..., n-1), then
 *     rank 1, ...  A slot whose expert already holds C slots overflows:
 *       MOE_ROUTE_DROP: the slot becomes MOE_ROUTE_NONE, weight 0 (the other
 *         weights of the token are unchanged, not renormalized);
 *       MOE_ROUTE_REROUTE: the slot moves to the token's best-keyed allowed
 *         expert that is in none of its slots and has room at that moment;
 *         its weight is that expert's score over the same D (times scaling);
 *         when no expert has room the slot is dropped.
 *
 * Thread safety: a workspace serves one thread at a time; policies are read
 * only (except the rng, which moe_route_batch draws from).
 */
#ifndef MOEKIT_MOE_ROUTE_H
#define MOEKIT_MOE_ROUTE_H

#include <stddef.h>
#include <stdint.h>
#include <gsl/gsl_rng.h>
#include "moe/error.h"
#include "moe/model.h"

/* The expert id of an unused slot (dropped, or beyond top-p's count). */
#define MOE_ROUTE_NONE (-1)

enum moe_route_kind {
	MOE_ROUTE_SOFTMAX_TOPK, /* softmax over E, top-k (Mixtral; OLMoE, Switch without norm) */
	MOE_ROUTE_TOPK_SOFTMAX, /* top-k logits, softmax over those k (gpt-oss) */
	MOE_ROUTE_SIGMOID_BIAS, /* sigmoid scores, bias for selection only (DeepSeek-V3) */
	MOE_ROUTE_TOP_P,        /* softmax; fewest experts reaching probability top_p, <= k */
	MOE_ROUTE_KIND_COUNT
};

enum moe_route_overflow {
	MOE_ROUTE_DROP,    /* an overflowing slot is dropped */
	MOE_ROUTE_REROUTE  /* it moves to the token's next-best expert with room */
};

struct moe_route_policy {
	enum moe_route_kind kind;
	int experts;             /* E, routed experts, >= 1 */
	int k;                   /* slots per token, 1..E (k_max for TOP_P) */
	int norm;                /* renormalize the weights over the selected experts */
	double scaling;          /* multiplier on the weights (DeepSeek-V3: 2.5); > 0 */
	int groups;              /* expert groups, 0 or 1 = none; must divide E */
	int groups_per_token;    /* groups kept per token, 1..groups */
	int group_topn;          /* keys summed per group or node score (>= 1; capped at its size) */
	const int *node_of;      /* [E] node of each expert, NULL = no node limit (borrowed) */
	int nodes;               /* nodes named by node_of (values 0..nodes-1) */
	int max_nodes;           /* M, nodes kept per token, 1..nodes */
	double capacity_factor;  /* 0 = no capacity limit */
	enum moe_route_overflow overflow;
	double noise_std;        /* std of the selection noise added to logits, 0 = none */
	gsl_rng *rng;            /* noise source, required when noise_std > 0 (borrowed) */
	double top_p;            /* TOP_P only: probability to reach, in (0, 1] */
	const float *bias;       /* [E] selection-only bias, NULL = none (borrowed) */
};

/* What a batch routes to.  The caller owns every array. */
struct moe_route_out {
	int32_t *ids;            /* [n x k] expert of each slot, MOE_ROUTE_NONE when unused */
	float *weights;          /* [n x k] gate weight of each slot, 0 when unused */
	uint64_t *load;          /* [E] slots each expert received (after capacity); NULL = skip */
	uint64_t *dropped;       /* [E] slots dropped that had selected this expert; NULL = skip */
	uint64_t n_dropped;      /* out: slots dropped in the batch */
	uint64_t n_rerouted;     /* out: slots moved to another expert in the batch */
};

struct moe_route_workspace;

/* Fills *p with defaults for E experts and k slots: SOFTMAX_TOPK, norm on,
 * scaling 1, no groups (group_topn 2), no node limit, no capacity, DROP, no
 * noise, top_p 1, no bias. */
void moe_route_policy_init(struct moe_route_policy *p, int experts, int k);

/* Fills *p from a model: kind from m->router, experts, top_k, norm_topk,
 * routed_scaling, groups, groups_per_token, capacity_factor; the rest as
 * moe_route_policy_init.  The caller may then override any field (call
 * moe_route_policy_validate after).  Returns MOE_OK, or MOE_EINVAL naming the
 * model field that cannot be routed. */
enum moe_status moe_route_policy_from_model(const struct moe_model *m, struct moe_route_policy *p);

/* Checks every field and their agreement (k <= E, groups divide E, k fits in
 * the allowed groups and nodes, rng when noise, top_p in (0,1], node_of
 * values in range).  Returns MOE_OK or MOE_EINVAL naming the field. */
enum moe_status moe_route_policy_validate(const struct moe_route_policy *p);

/* Allocates a workspace for batches of up to max_tokens tokens under policy p
 * (validated here).  Sized once: moe_route_batch never allocates.  Memory is
 * O(E + groups + nodes), plus 4 * max_tokens * E bytes for MOE_ROUTE_REROUTE
 * (the keys kept for the overflow pass).  Returns MOE_OK with *out owned by
 * the caller (free with moe_route_workspace_free); MOE_EINVAL as validate;
 * MOE_ENOMEM. */
enum moe_status moe_route_workspace_alloc(const struct moe_route_policy *p, size_t max_tokens,
					  struct moe_route_workspace **out);
/* Frees a workspace; NULL is a no-op. */
void moe_route_workspace_free(struct moe_route_workspace *w);

/* Routes n tokens: logits is [n x E] row-major float32 (borrowed).  Fills
 * out->ids and out->weights ([n x k]), and when not NULL out->load and
 * out->dropped ([E], overwritten), and n_dropped, n_rerouted.  The policy
 * must have the same shape (E, k, groups, nodes, overflow) as the one the
 * workspace was allocated for.  Returns MOE_OK; MOE_EINVAL when n exceeds the
 * workspace or the policy does not fit it; MOE_EFORMAT naming the token and
 * expert of the first NaN or infinite logit (outputs then unspecified).
 * Deterministic: same logits, policy and rng state give identical output. */
enum moe_status moe_route_batch(const struct moe_route_policy *p, struct moe_route_workspace *w,
				const float *logits, size_t n, struct moe_route_out *out);

/* Capacity per expert for n tokens: ceil(cf * n * k / E) computed in double
 * (with a relative slack of 1e-9 so that 1.1 * 100 gives 110, not 111);
 * SIZE_MAX when capacity_factor is 0 (no limit). */
size_t moe_route_capacity(const struct moe_route_policy *p, size_t n);

/* Names as written in options and files: "softmax-topk", "topk-softmax",
 * "sigmoid-bias", "top-p"; "drop", "reroute".  NULL when out of range.
 * _parse returns 1 and sets *out, or 0 when the name is unknown. */
const char *moe_route_kind_name(enum moe_route_kind k);
int moe_route_kind_parse(const char *s, enum moe_route_kind *out);
const char *moe_route_overflow_name(enum moe_route_overflow o);
int moe_route_overflow_parse(const char *s, enum moe_route_overflow *out);

/* DeepSeek-V3's auxiliary-loss-free balancing, replayed over steps:
 *
 *     moe_route_balancer_new(E, u, &bal);
 *     pol.bias = moe_route_balancer_bias(bal);
 *     for each step: moe_route_batch(&pol, ws, logits, n, &out);
 *                    moe_route_balancer_update(bal, out.load);
 *
 * After each step every expert's bias moves by the rate u towards balance:
 * b_i += u * sign(mean_load - load_i) (sign 0 when equal), with mean_load =
 * sum(load) / E.  Biases start at 0 and are float32. */
struct moe_route_balancer;

/* Returns MOE_OK with *out owned by the caller; MOE_EINVAL when experts < 1
 * or rate is negative or not finite; MOE_ENOMEM. */
enum moe_status moe_route_balancer_new(int experts, double rate, struct moe_route_balancer **out);
void moe_route_balancer_free(struct moe_route_balancer *b);
/* The current bias [E]; borrowed, valid until the balancer is freed, and
 * updated in place by moe_route_balancer_update. */
const float *moe_route_balancer_bias(const struct moe_route_balancer *b);
/* Moves the bias by one step given the loads [E] just measured. */
void moe_route_balancer_update(struct moe_route_balancer *b, const uint64_t *load);

#endif
