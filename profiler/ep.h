/* profiler/ep.h: expert parallelism across MPI processes, and the MPI
 * all-to-all microbenchmark.  Built only when configure finds MPI
 * (HAVE_MPI); the profiler's other headers never include mpi.h.
 *
 * Expert parallelism over R ranks (`mpirun -np R moekit profile --ep R`):
 * rank r owns experts [r E/R, (r+1) E/R) and tokens [r n/R, (r+1) n/R) of
 * the batch; every rank holds the router and the shared experts.  A forward:
 *
 *     router, routing       on the rank's own tokens (moe/route.h)
 *     permute               slots ordered by destination rank (counting sort)
 *     dispatch              MPI_Alltoall of counts, MPI_Alltoallv of rows
 *                           (H floats each) and of local expert ids
 *     experts               prof_forward_experts on the rows received
 *     combine_a2a           MPI_Alltoallv of the expert outputs back
 *     combine               y[t] = sum_j g[t,j] out[t,j] + shared(x[t])
 *
 * so the output equals the single-process layer's (same routing without a
 * capacity limit; the sums in the same order) to float rounding.  Stage
 * times are the maximum over ranks of each forward (the slowest rank is the
 * layer's time).  Each exchange starts after a barrier, so dispatch and
 * combine_a2a time the exchange alone and waiting for the slowest rank's
 * experts counts in `experts` (stages then add up to the total).
 *
 * All-to-all bandwidth, as nccl-tests defines it for alltoall
 * (doc/PERFORMANCE.md there): with S the bytes each rank sends in total
 * (S / R to every rank, itself included) and t the time of one call,
 *
 *     algbw = S / t          busbw = algbw * (R - 1) / R
 *
 * since each rank moves (R - 1) / R of its data over the network; busbw is
 * comparable with the link's bandwidth whatever R.  Example: R = 2, S = 64 MiB,
 * t = 10 ms: algbw = 6.71 GB/s, busbw = 3.36 GB/s.
 */
#ifndef MOEKIT_PROFILER_EP_H
#define MOEKIT_PROFILER_EP_H

#include <mpi.h>
#include <stddef.h>
#include "moe/error.h"
#include "profiler/forward.h"
#include "profiler/harness.h"
#include "profiler/weights.h"

enum prof_ep_stage {
	PROF_EP_ROUTER, PROF_EP_ROUTING, PROF_EP_PERMUTE, PROF_EP_DISPATCH, PROF_EP_EXPERTS,
	PROF_EP_COMBINE_A2A, PROF_EP_COMBINE, PROF_EP_TOTAL, PROF_EP_STAGE_COUNT
};

/* "router", "routing", "permute", "dispatch", "experts", "combine_a2a",
 * "combine", "total". */
const char *prof_ep_stage_name(enum prof_ep_stage s);

struct prof_ep;

struct prof_ep_result {
	int reps, warmup, ranks;
	struct prof_stat stage[PROF_EP_STAGE_COUNT]; /* max over ranks per forward */
	double flops;              /* whole layer per forward, all ranks */
	double gflops;             /* flops / median total / 1e9 */
	double dispatch_bytes;     /* bytes sent to other ranks per forward, all ranks */
	double routed_rows;        /* slots routed per forward, all ranks */
};

/* Collective over comm.  Sets up rank r's share of w (borrowed for the call;
 * every rank passes the same weights) for a batch of n tokens.  Returns
 * MOE_OK with *out owned by the caller (free with prof_ep_free, also
 * collective); MOE_EINVAL when the ranks do not divide the experts, or there
 * are more ranks than tokens; MOE_ENOMEM; MOE_ERUNTIME for an MPI failure.
 * A failure on one rank is not seen by the others: callers abort the job. */
enum moe_status prof_ep_new(const struct prof_weights *w, MPI_Comm comm, int threads, size_t n,
			    struct prof_ep **out);
void prof_ep_free(struct prof_ep *ep);

/* The rank's tokens: [*first, *first + *count) of the batch. */
void prof_ep_tokens(const struct prof_ep *ep, size_t *first, size_t *count);

/* One forward, collective: x_local [count x H] (the rank's tokens), y_local
 * out.  stage_s [PROF_EP_STAGE_COUNT] this rank's times (may be NULL).
 * Returns MOE_OK, the routing's MOE_EFORMAT, MOE_ERUNTIME for MPI errors. */
enum moe_status prof_ep_run(struct prof_ep *ep, const float *x_local, float *y_local,
			    double *stage_s);

/* warmup + reps forwards; the result on every rank. */
enum moe_status prof_ep_profile(struct prof_ep *ep, const float *x_local, float *y_local,
				int warmup, int reps, struct prof_ep_result *r);

/* All-to-all microbenchmark, collective: `bytes` in total per rank
 * (rounded down to a multiple of 4 R), warmup calls then iters timed calls
 * of MPI_Alltoall; the data received is checked.  *time_s: the mean time of
 * one call, maximum over ranks.  Returns MOE_OK; MOE_ENOMEM; MOE_ERUNTIME
 * when MPI fails or the data received is wrong. */
enum moe_status prof_a2a_run(MPI_Comm comm, size_t bytes, int warmup, int iters, double *time_s);

#endif
