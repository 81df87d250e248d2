/* traces/reroute.h: re-derive a trace's routes from its stored router logits
 * under another routing policy (moe/route.h): top-1 against top-2 on the
 * same tokens, a capacity factor, DeepSeek-V3's bias balancing, ...
 *
 * Batches: the router runs per source rank, so the tokens of one (step,
 * layer) and one source rank form one batch (the n of the capacity
 * C = ceil(cf n k / E)), in the order they appear in the trace.  The output
 * keeps every token in its place, with its rank and (unless dropped) its
 * logits; only the ids and weights change, and the header's top-k becomes
 * the policy's k.
 *
 * Balancing (balance_rate u > 0): one moe_route_balancer per layer; after
 * each (step, layer) its bias moves by u towards balance using that layer's
 * loads over all ranks; the policy's bias is replaced by it.
 *
 * Memory: the tokens of one (step, layer) (ranks, logits), not the trace.
 */
#ifndef MOEKIT_TRACES_REROUTE_H
#define MOEKIT_TRACES_REROUTE_H

#include <stdint.h>
#include "moe/error.h"
#include "moe/route.h"
#include "traces/trace.h"

struct trace_reroute_opts {
	const struct moe_route_policy *policy; /* borrowed; experts must match the trace */
	int keep_logits;                /* store the logits in the output (default 1) */
	double balance_rate;            /* aux-loss-free balancing rate u, 0 = off */
	int zstd_level;                 /* 0 raw */
};

/* Per layer totals of a re-routing (caller-sized arrays [layers], or NULL). */
struct trace_reroute_result {
	uint64_t *tokens;
	uint64_t *dropped;
	uint64_t *rerouted;
};

void trace_reroute_opts_init(struct trace_reroute_opts *o);

/* Re-routes in into out (a temporary name renamed when complete).  res may be
 * NULL.  Returns MOE_OK; MOE_EUNSUPPORTED when in holds no logits (a count
 * level trace or ids only: the message says so); MOE_EINVAL when the policy's
 * experts differ from the trace's or balancing is asked with no policy;
 * the reader's and writer's errors; MOE_EFORMAT naming the token for a
 * non-finite logit; MOE_ENOMEM.  Nothing is left under out on failure. */
enum moe_status trace_reroute(const char *in, const char *out, const struct trace_reroute_opts *o,
			      struct trace_reroute_result *res);

#endif
