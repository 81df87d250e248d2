/* traces/rescale.h: turn a trace recorded on R source ranks into one for N
 * ranks ("we recorded on 8 GPUs and plan for 512").
 *
 * Pools: new rank r' draws from the original ranks P(r') = {r' mod R} when
 * N >= R (ranks mirror the recorded ones round-robin), and P(r') = {r : r mod
 * N = r'} when N < R (recorded ranks merge).  Per (step, layer) new rank r'
 * gets m(r') = round(pool tokens / |P(r')|) tokens: as many as its recorded
 * ranks had on average.
 *
 * Token level: at the first layer of every step each new rank draws m(r')
 * positions uniformly with replacement (a bootstrap) from its pool's tokens
 * in (rank, order) order, and reuses the same positions at every later
 * layer of the step, so a drawn token keeps its whole path (ids, weights,
 * logits) through the layers.  Count level: new rank r' draws m(r') slots
 * from a multinomial over the experts with the pool's counts as weights
 * (gsl_ran_multinomial).
 *
 * What is kept: each layer's expert-load distribution per pool (in
 * expectation: every token of the pool is equally likely; sampling noise
 * shrinks as tokens grow), the cross-layer correlation of token-level traces
 * exactly (paths are copied whole), the skew between recorded ranks (N >=
 * R: a new rank behaves as the rank it mirrors), the tokens per rank.
 * What is assumed: token i of rank r is the same token at every layer of a
 * step (true of captures and generated traces; a trace whose layers hold
 * different token counts for a rank is refused); tokens of a rank are
 * exchangeable (order and drops carry no meaning); ranks beyond the recorded
 * ones see data like the recorded ones; total tokens grow with N (weak
 * scaling, fixed tokens per GPU).
 */
#ifndef MOEKIT_TRACES_RESCALE_H
#define MOEKIT_TRACES_RESCALE_H

#include <stdint.h>
#include <gsl/gsl_rng.h>
#include "moe/error.h"
#include "traces/trace.h"

struct trace_rescale_opts {
	uint32_t ranks;     /* N, 1..TRACE_MAX_RANKS */
	int zstd_level;     /* 0 raw */
};

/* Rescales in to out (a temporary name renamed when complete) drawing from
 * rng (borrowed).  tokens_in/tokens_out (may be NULL) receive the token-level
 * tokens (or count-level slots) read and written.  Returns MOE_OK; MOE_EINVAL
 * for a bad rank count; MOE_EFORMAT when a layer of a step holds a different
 * token count for a rank than the step's first layer; the reader's and
 * writer's errors; MOE_ENOMEM.  Nothing is left under out on failure. */
enum moe_status trace_rescale(const char *in, const char *out, const struct trace_rescale_opts *o,
			      gsl_rng *rng, uint64_t *tokens_in, uint64_t *tokens_out);

#endif
