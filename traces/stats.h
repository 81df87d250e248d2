/* traces/stats.h: what a router trace says about load balance, computed in
 * one streaming pass (memory: O(layers x E^2 / 2) for the co-activation
 * counts when E <= TRACE_STATS_PAIRS_MAX_E, plus O(layers x (E + ranks x
 * ep)) and O(ranks x E) for the current step, not growing with the number
 * of tokens).
 *
 * Per layer, over every step of the trace (definitions; `slots` are the
 * non-empty (token, slot) entries, i.e. routed copies):
 *  - load[i]: slots routed to expert i;
 *  - max_over_mean = max_i load[i] / mean_i load[i];
 *    step_max_over_mean: the same per (step, layer), averaged over steps;
 *  - cv: population standard deviation of load over its mean;
 *  - entropy_bits: -sum f_i log2 f_i, f = load / sum(load) (0 log 0 = 0);
 *    entropy_norm = entropy_bits / log2(E) (1 = perfectly even);
 *  - dropped: slots over capacity at capacity factor cf.  As in routing
 *    (and `trace reroute`), each source rank's tokens of one (step, layer)
 *    are a batch: C = ceil(cf n k / E) (moe_route_capacity, n the batch's
 *    tokens; a count-level trace uses n k = the rank's total count) and
 *    dropped = sum over batches and experts of max(0, load[i] - C) (how
 *    many, whatever the order: with dropping, expert i admits min(load, C));
 *  - with logits: the Switch load-balancing loss aux = E sum_i f_i P_i, with
 *    f_i = slots to i / tokens and P_i = mean over tokens of softmax(l)_i
 *    (the Hugging Face Mixtral convention: 1 for balanced top-1, k for
 *    balanced top-k), and the router z-loss = mean over tokens of
 *    logsumexp(l)^2 (ST-MoE);
 *  - pairs: the most frequent unordered expert pairs {a, b} (a < b) chosen
 *    together by one token (token level, E <= TRACE_STATS_PAIRS_MAX_E), by
 *    count descending, ties by (a, b) ascending;
 *  - ep_tokens[r x ep]: with an expert-parallel size ep and a placement,
 *    how many tokens source rank r sends to EP rank g: a token is sent once
 *    to each distinct EP rank among its experts (copies to one GPU are
 *    de-duplicated); a count-level trace cannot de-duplicate and counts
 *    slots.
 */
#ifndef MOEKIT_TRACES_STATS_H
#define MOEKIT_TRACES_STATS_H

#include <stdint.h>
#include "moe/error.h"
#include "moe/model.h"
#include "traces/trace.h"

#define TRACE_STATS_PAIRS_MAX_E 4096u

struct trace_stats_opts {
	double capacity_factor;        /* 0: dropped not computed */
	uint32_t ep;                   /* 0: no EP table; else divides E */
	enum moe_placement placement;  /* contiguous or round-robin */
	const int32_t *expert_rank;    /* optional [E] EP rank of each expert (overrides
					* placement; borrowed) */
	uint32_t top_pairs;            /* pairs kept per layer (default 10) */
};

struct trace_stats_pair {
	uint32_t a, b;
	uint64_t count;
};

struct trace_layer_stats {
	uint32_t layer;
	uint64_t steps;                /* (step, layer) groups seen */
	uint64_t tokens;               /* tokens (token level), total count / k (count level) */
	uint64_t slots;
	uint64_t *load;                /* [E] */
	double max_over_mean, step_max_over_mean, cv, entropy_bits, entropy_norm;
	uint64_t dropped;
	int has_logits;
	double aux_loss, z_loss;
	uint32_t npairs;
	struct trace_stats_pair *pairs; /* [npairs] */
	uint64_t *ep_tokens;           /* [ranks x ep], NULL without ep */
};

struct trace_stats {
	struct trace_header header;
	struct trace_stats_opts opts;
	uint32_t layers;
	struct trace_layer_stats *layer; /* [layers] */
};

/* Fills the defaults: no capacity, no EP, contiguous, 10 pairs. */
void trace_stats_opts_init(struct trace_stats_opts *o);

/* Reads the trace at path once and computes the statistics.  Returns MOE_OK
 * with *out owned by the caller (trace_stats_free); the reader's errors
 * (MOE_EIO, MOE_EFORMAT naming the chunk); MOE_EINVAL when ep does not divide
 * E, an expert_rank is out of range or the placement is not contiguous or
 * round-robin; MOE_ENOMEM. */
enum moe_status trace_stats_compute(const char *path, const struct trace_stats_opts *o,
				    struct trace_stats **out);

/* Frees the statistics; NULL is a no-op. */
void trace_stats_free(struct trace_stats *s);

/* The EP rank of expert e under a placement of E experts over ep ranks:
 * contiguous blocks (e / (E / ep)) or round-robin (e mod ep). */
uint32_t trace_stats_ep_rank(enum moe_placement p, uint32_t experts, uint32_t ep, uint32_t e);

#endif
