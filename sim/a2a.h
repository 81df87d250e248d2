/* sim/a2a.h: the dispatch and combine all-to-alls of expert parallelism,
 * as flows on the network model (sim/net.h).
 *
 * Traffic.  What one layer must move is kept as counts of tokens, so that
 * one matrix serves any byte width (dispatch and combine may use different
 * dtypes: FP8 out, BF16 back):
 *
 *   pairs[s][d]  token-expert assignments from GPU s to experts on GPU d
 *                (no de-duplication: a token with two experts on d counts 2)
 *   gpu[s][d]    distinct tokens from s needing GPU d (one copy per GPU)
 *   node[s][N]   distinct tokens from s needing some GPU of node N
 *
 * Built token by token (sim_traffic_add_token: k destination GPUs of one
 * token) all three are exact.  From a byte or count matrix alone
 * (sim_traffic_add) the copies cannot be told apart: gpu = pairs and
 * node[s][N] = sum of gpu[s][d] over d in N.
 *
 * Algorithms (dispatch; combine runs every transfer backwards, stages in
 * reverse order, and the de-duplicated copies are the partial sums reduced
 * on the way back):
 *
 *   direct        s -> d for every pair with traffic: gpu[s][d] tokens
 *                 (pairs[s][d] without de-duplication).
 *   hierarchical  for each ordered node pair (M, N): every s in M sends
 *                 node[s][N] tokens to the proxy of N in M (GPU N mod G of
 *                 M: node pairs spread over GPUs and rails); when all have
 *                 arrived the proxy sends their sum to the proxy in N (same
 *                 local index: the same rail), which scatters gpu[s][d]
 *                 summed over s in M to each d in N.  Traffic inside a node
 *                 is direct.
 *   nvlink-forward  s sends node[s][N] tokens over the network to r, the
 *                 GPU of node N on s's rail (same local index); when that
 *                 transfer ends, r forwards gpu[s][d] tokens to each d in N
 *                 over NVLink (DeepEP's and NCCL PXN's scheme).
 *
 * A stage starts when the transfers it depends on have ended: chunked
 * pipelining inside a stage is not modelled, which overstates the time of
 * the two-stage algorithms by at most one chunk's worth of their first
 * stage.
 *
 * A GPU's finish time is when the last transfer that brings it its own data
 * (a final stage, not a relay's inbound copy) ended: after dispatch, when it
 * holds every token its experts must process; after combine, when it holds
 * every result of its tokens.  0 when it receives nothing.  The bottleneck link is the one with the largest
 * bytes / bandwidth; its utilization is bytes / (bandwidth x completion).
 */
#ifndef MOEKIT_SIM_A2A_H
#define MOEKIT_SIM_A2A_H

#include <stdint.h>
#include "moe/error.h"
#include "sim/net.h"
#include "sim/topo.h"

struct sim_traffic {
	int gpus, nodes, gpus_per_node;
	double *pairs;  /* gpus x gpus, row = source */
	double *gpu;    /* gpus x gpus */
	double *node;   /* gpus x nodes */
	int *node_of;   /* gpus: node of each GPU (a table: no division per token) */
	/* per GPU and per node: the token that last counted it (de-duplication
	 * in O(k) per token instead of comparing its k choices pairwise) */
	unsigned *gseen, *nseen, stamp;
	/* sim_traffic_add_tokens: one source's counts in integers, added to
	 * its rows once a call (an increment per assignment instead of a
	 * floating-point add, whose latency chains repeats of a hot GPU) */
	int64_t *kp, *kg, *kn;
};

/* Allocates zeroed traffic for gpus GPUs, gpus_per_node per node (must
 * divide gpus).  Returns MOE_OK and *out (free with sim_traffic_free),
 * MOE_EINVAL for bad sizes, MOE_ENOMEM. */
enum moe_status sim_traffic_new(int gpus, int gpus_per_node, struct sim_traffic **out);
void sim_traffic_free(struct sim_traffic *tr);
void sim_traffic_clear(struct sim_traffic *tr);

/* Adds count tokens from GPU src whose k experts live on GPUs dst[0..k-1]
 * (repeats allowed: that is what de-duplication removes).  Returns MOE_OK,
 * or MOE_EINVAL for a GPU outside the traffic or k outside 1..1024. */
enum moe_status sim_traffic_add_token(struct sim_traffic *tr, int src, const int *dst, int k,
				      double count);

/* Adds ntok tokens from GPU src, one each: token i's experts live on GPUs
 * dst[i*k .. i*k+k-1], where a negative entry is an expert it lost (a
 * dropped assignment).  The same as sim_traffic_add_token per token with
 * its non-negative entries and count 1, in one call per source.  Returns
 * MOE_OK, or MOE_EINVAL as sim_traffic_add_token (nothing added then). */
enum moe_status sim_traffic_add_tokens(struct sim_traffic *tr, int src, const int *dst, int k,
				       long ntok);

/* Adds count (>= 0) units from src to dst where only counts are known. */
enum moe_status sim_traffic_add(struct sim_traffic *tr, int src, int dst, double count);

enum sim_a2a_algo { SIM_A2A_DIRECT, SIM_A2A_HIERARCHICAL, SIM_A2A_NVLINK_FORWARD };

/* Parses "direct", "hierarchical", "nvlink-forward"; 0 when unknown. */
int sim_a2a_algo_parse(const char *s, enum sim_a2a_algo *out);
const char *sim_a2a_algo_name(enum sim_a2a_algo a);

struct sim_a2a_opts {
	enum sim_a2a_algo algo;
	int dedup;              /* send one copy per GPU / node, not per expert */
	int combine;            /* run backwards (the combine phase) */
	double bytes_per_token; /* bytes of one token copy (hidden x dtype bytes) */
};

struct sim_a2a_result {
	double completion_s;    /* when the last transfer ended, seconds */
	double bytes;           /* all bytes moved (forwarded bytes count twice) */
	double network_bytes;   /* bytes that crossed between nodes */
	double intra_bytes;     /* bytes moved inside nodes */
	uint64_t flows;
	int bottleneck_link;    /* -1 when nothing moved */
	double bottleneck_util; /* of that link over the completion time */
	double bottleneck_bytes;
};

/* Simulates one collective of traffic tr on the network net (built on
 * topology t; it is reset first, so the collective starts at time 0).
 * Writes each GPU's finish time into gpu_finish_s (t->gpus entries; may be
 * NULL).  Returns MOE_OK; MOE_EINVAL when tr does not match t or
 * bytes_per_token is negative; MOE_ENOMEM. */
enum moe_status sim_a2a_run(struct sim_net *net, const struct sim_topo *t,
			    const struct sim_traffic *tr, const struct sim_a2a_opts *o,
			    double *gpu_finish_s, struct sim_a2a_result *res);

/* The analytic bound of the same collective, without events: every
 * transfer's bytes are added to the links of its route, and
 *
 *   completion = max over links (bytes / bandwidth)
 *              + sum over stages of the largest route latency
 *
 * (1 stage for direct, 2 for nvlink-forward, 3 for hierarchical).  It is
 * exact when the busiest link is busy from start to end (a uniform
 * all-to-all on a symmetric fabric) and otherwise a lower bound on the
 * transfer part: it ignores that a flow held back by one link leaves
 * another idle.  gpu_finish_s gets the completion for every GPU that
 * receives data.  Same errors as sim_a2a_run; link_bytes (t->nlinks
 * entries, may be NULL) receives the bytes per link. */
enum moe_status sim_a2a_bound(const struct sim_topo *t, const struct sim_traffic *tr,
			      const struct sim_a2a_opts *o, double *gpu_finish_s, double *link_bytes,
			      struct sim_a2a_result *res);

#endif
