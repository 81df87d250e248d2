/* study/validate.h: predicted against measured.  For every profile run
 * that has a plan the simulator can run (a forward layer with its model
 * dimensions, tokens, top-k and expert-parallel ranks), simulate the same
 * plan on a (calibrated) cluster and set the simulated stage times beside
 * the measured ones.
 *
 * What is compared (seconds; -1 where the run has no such stage):
 *
 *   stage     measured (profile stages)              predicted (sim layer)
 *   experts   ep > 1: experts; one process:          compute_s (slowest GPU's
 *             gate_up + activation + down            expert GEMMs)
 *   dispatch  dispatch (MPI_Alltoallv of the rows)   dispatch_s
 *   combine   combine_a2a                            combine_s
 *   total     total                                  total_s
 *
 * The simulated model is the profiled layer: hidden, ffn, experts, top-k, a
 * shared expert when the run had one, SwiGLU, FP32 (4 bytes for weights,
 * activations, dispatch and combine), no attention; the plan: ep ranks,
 * tokens / ep tokens per GPU, contiguous placement (the profiler's rank r
 * owns experts [r E/ep, (r+1) E/ep)), one micro-batch, forward, direct
 * all-to-all without de-duplication (the profiler sends one row per token-
 * expert pair).  Routing: each token draws top-k distinct experts in
 * proportion to the per-expert loads the run stored (or a single-process
 * run of the same shape, tokens and seed, which routes identically), else
 * uniformly; seeded from the run's seed.  Not modelled, so part of the
 * error of `total`: the profiler's routing, permutation and weighted-sum
 * stages.
 *
 * Each simulation is stored as a run of kind sim labelled "validate of run
 * N", inputs naming the profile run, a layers row, stage rows experts,
 * dispatch, combine_a2a, total (the predictions) and metrics
 * measured_<stage>_s, predicted_<stage>_s and relerr_<stage> (predicted /
 * measured - 1), and for expert-parallel runs measured_dispatch_bytes and
 * predicted_dispatch_bytes.
 */
#ifndef MOEKIT_STUDY_VALIDATE_H
#define MOEKIT_STUDY_VALIDATE_H

#include <stdint.h>
#include "moe/error.h"

struct store;

enum study_valid_stage {
	STUDY_VALID_EXPERTS, STUDY_VALID_DISPATCH, STUDY_VALID_COMBINE, STUDY_VALID_TOTAL,
	STUDY_VALID_STAGES
};

/* "experts", "dispatch", "combine", "total". */
const char *study_valid_stage_name(enum study_valid_stage s);

struct study_valid_row {
	int64_t run;                 /* the profile run */
	int64_t sim_run;             /* the stored simulation, 0 when not stored */
	int ep, hidden, ffn, experts, top_k;
	double tokens;
	int64_t loads_from;          /* run whose expert loads drove the routing, 0: uniform */
	double measured_s[STUDY_VALID_STAGES];  /* -1 when not measured */
	double predicted_s[STUDY_VALID_STAGES];
	/* bytes sent to other ranks per forward, all ranks together: the
	 * profiler's metric dispatch_bytes (-1 when absent) and the simulated
	 * dispatch's: a check of the traffic model apart from the timing */
	double measured_dispatch_bytes, predicted_dispatch_bytes;
};

/* Simulates every matching profile run of db (all done profile runs when
 * nids is 0, else the runs ids, each of which must match) on the cluster
 * file or preset cluster (cluster_name is what the stored runs name) and,
 * when store is non-zero, stores each simulation.  Returns MOE_OK with
 * *rows (owned by the caller, free()) and *n >= 1; MOE_ENOTFOUND when no
 * run matches ("no profile run in the store has a plan to simulate ...":
 * nothing is written); MOE_EINVAL for a listed run that cannot be
 * simulated (naming it and why); the errors of moe_cluster_load, the
 * simulator and the store. */
enum moe_status study_valid_run(struct store *db, const char *cluster_name, const int64_t *ids,
				int nids, int store, struct study_valid_row **rows, int *n);

#endif
