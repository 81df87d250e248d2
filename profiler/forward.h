/* profiler/forward.h: the MoE layer's forward pass on the CPU, FP32.
 *
 * For n tokens x [n x H]:
 *
 *     logits = x . router^T                         router   (CBLAS sgemm, [n x E])
 *     ids, g = route(logits)                        routing  (moe/route.h, the shared policy)
 *     rows   = tokens grouped by expert             permute  (counting sort)
 *     h_e    = silu(x_e . gate_e^T) * (x_e . up_e^T)  gate_up + activation
 *     y_e    = h_e . down_e^T                       down
 *     y[t]   = sum_j g[t,j] y_{ids[t,j]}[t] + s(t) shared(x[t])   combine
 *
 * with s(t) = 1, or sigmoid(x[t] . s_router) for Qwen2-MoE's gated shared
 * expert.  Each expert's weights are packed once, at prof_forward_new, into
 * the layout the GEMM kernel streams (panels of 16 output columns by 256 of
 * the reduction dimension, gate and up interleaved 8 + 8 so that one GEMM
 * computes both and its epilogue applies SiLU(gate) * up while the tile is
 * still in registers and cache).  Tokens are packed in 6-row panels by the
 * permute stage, which is the gather itself.  The kernel is AVX2+FMA when the
 * CPU has it (checked at run time), else portable C; the environment
 * variable MOEKIT_KERNEL=portable forces the portable one.
 *
 * Threads: one pool of `threads` threads (the caller is one of them) runs
 * every stage but routing; OpenBLAS is set to one thread and called by each
 * pool thread on its own rows, so BLAS and pool threads never compete.
 * Work is split into tiles (expert, 192 rows, 128 columns); every output
 * element is computed by one tile in a fixed order, so the result does not
 * depend on which thread ran which tile: same inputs, same output, bit for
 * bit, for a given thread count (and in fact for any thread count except
 * through the router GEMM's row split).
 */
#ifndef MOEKIT_PROFILER_FORWARD_H
#define MOEKIT_PROFILER_FORWARD_H

#include <stddef.h>
#include <stdint.h>
#include "moe/error.h"
#include "moe/route.h"
#include "profiler/weights.h"

enum prof_stage {
	PROF_STAGE_ROUTER,     /* router GEMM */
	PROF_STAGE_ROUTING,    /* moe_route_batch */
	PROF_STAGE_PERMUTE,    /* counting sort + gather into packed panels */
	PROF_STAGE_GATE_UP,    /* fused gate+up GEMM (all experts, shared included) */
	PROF_STAGE_ACTIVATION, /* SiLU(gate) * up, fused in the GEMM epilogue: summed epilogue time / threads */
	PROF_STAGE_DOWN,       /* down GEMM */
	PROF_STAGE_COMBINE,    /* weighted sum back into token order */
	PROF_STAGE_TOTAL,      /* the whole forward, wall clock */
	PROF_STAGE_COUNT
};

/* "router", "routing", "permute", "gate_up", "activation", "down", "combine", "total". */
const char *prof_stage_name(enum prof_stage s);

struct prof_forward;

/* Packs w for the forward pass and allocates every buffer for batches of up
 * to max_tokens tokens.  w is borrowed during the call only (it may be freed
 * after).  The routing policy is built from w->cfg (kind, top_k, norm,
 * scaling, groups, capacity, bias).  threads >= 1.  Returns MOE_OK with *out
 * owned by the caller (free with prof_forward_free); MOE_EINVAL for a bad cfg
 * or thread count (the routing policy's message when it cannot route);
 * MOE_ENOMEM naming the bytes; MOE_ERUNTIME when a thread cannot start. */
enum moe_status prof_forward_new(const struct prof_weights *w, int threads, size_t max_tokens,
				 struct prof_forward **out);

/* Stops the pool and frees everything; NULL is a no-op. */
void prof_forward_free(struct prof_forward *f);

/* Runs the layer on n tokens: x [n x H] (borrowed), y [n x H] (out, caller's),
 * stage_s[PROF_STAGE_COUNT] (out, seconds of wall clock; may be NULL).
 * Returns MOE_OK; MOE_EINVAL when n is 0 or above max_tokens; MOE_EFORMAT from
 * routing when a logit is NaN or infinite (naming the token). */
enum moe_status prof_forward_run(struct prof_forward *f, const float *x, size_t n, float *y,
				 double *stage_s);

/* Runs n pre-routed rows through their experts, without router, routing,
 * weights or shared experts: y[i] = FFN_{expert[i]}(x[i]) (x, y [n x H],
 * expert [n] in 0..E-1; borrowed).  The expert-parallel path uses it for the
 * rows a rank receives.  f must have no shared experts; n at most
 * max_tokens x top_k of prof_forward_new.  stage_s as prof_forward_run
 * (ROUTER and ROUTING 0; COMBINE the un-permutation).  Returns MOE_OK;
 * MOE_EINVAL when f has shared experts or n is too large; MOE_ERANGE naming
 * the row of an expert id out of range.  prof_forward_load gives the rows
 * per expert after. */
enum moe_status prof_forward_experts(struct prof_forward *f, const float *x,
				     const int32_t *expert, size_t n, float *y, double *stage_s);

/* The last run's routing: ids and gate weights [n x k], logits [n x E], the
 * slots each expert received [E]; borrowed, valid until the next run. */
const int32_t *prof_forward_ids(const struct prof_forward *f);
const float *prof_forward_gates(const struct prof_forward *f);
const float *prof_forward_logits(const struct prof_forward *f);
const uint64_t *prof_forward_load(const struct prof_forward *f);
uint64_t prof_forward_dropped(const struct prof_forward *f);

/* The last run's floating-point operations (multiply-add = 2) on the rows
 * actually routed: router GEMM, and 6 H F per routed row (2 H x 2F for gate
 * and up, 2 F H for down), shared experts included.  stage: the FLOPs of
 * PROF_STAGE_ROUTER, _GATE_UP, _DOWN or _TOTAL (the sum); 0 for the others. */
double prof_forward_flops(const struct prof_forward *f, enum prof_stage stage);

/* The layer configuration (top_k as routed). */
const struct prof_layer_cfg *prof_forward_cfg(const struct prof_forward *f);

/* Which GEMM kernel runs: "avx2-fma 6x16" or "portable 6x16". */
const char *prof_forward_kernel(const struct prof_forward *f);

/* Bytes of packed weights and buffers held. */
double prof_forward_bytes(const struct prof_forward *f);

#endif
