/* sim/step.h: one MoE layer and one step, from the experts each token was
 * routed to (or only from how many assignments each GPU sent to each
 * expert), on a modeled cluster.
 *
 * A layer (forward, prefill or decode), one micro-batch:
 *
 *   other      attention, router and shared experts on every GPU (compute.h)
 *   dispatch   the all-to-all taking each kept token to its experts' GPUs
 *              (a2a.h), hidden x dispatch_bytes per copy
 *   experts    each GPU starts when its own data has arrived and computes its
 *              experts (compute.h); the phase ends with the slowest GPU
 *   combine    the all-to-all back, hidden x combine_bytes per copy
 *
 *   total = other + max over GPUs (dispatch finish + expert time) + combine
 *
 * (a barrier before combine: a GPU's results go back only when every GPU
 * is done, as in all-to-all implementations that do not stream per expert).
 * exposed = total - other - slowest expert time: communication that nothing
 * hides.
 *
 * Two micro-batches with overlap (plan.micro_batches >= 2 and overlap): each
 * carries half the tokens; a compute stream runs other(A), other(B),
 * experts(A), experts(B) and a communication stream dispatch(A),
 * dispatch(B), combine(A), combine(B), each task starting when its stream
 * is free and its inputs are ready; the layer ends with the last task.
 * This is a task graph on the engine (sim/engine.h), whose worked example
 * is this schedule.  Layers do not overlap each other.
 *
 * Backward (phase training): per layer, after the forward: gradients of the
 * outputs travel the dispatch direction, the experts compute twice their
 * forward time, gradients of the inputs travel back the combine direction
 * (both at combine_bytes), and the other work takes twice its forward time.
 *
 * Capacity: with a capacity factor c > 0 each expert accepts at most
 * ceil(c x tokens x k / experts) token assignments per layer, first come
 * (source GPU order, then token order) first served; the rest are dropped
 * (not sent, not computed).
 *
 * The mode SIM_STEP_ANALYTIC replaces each all-to-all by its bottleneck
 * bound (sim_a2a_bound): no events.
 */
#ifndef MOEKIT_SIM_STEP_H
#define MOEKIT_SIM_STEP_H

#include <stdint.h>
#include "moe/error.h"
#include "moe/model.h"
#include "sim/a2a.h"
#include "sim/compute.h"
#include "sim/engine.h"
#include "sim/net.h"
#include "sim/place.h"
#include "sim/topo.h"

enum sim_step_mode { SIM_STEP_EVENTS, SIM_STEP_ANALYTIC };

struct sim_step_opts {
	enum sim_a2a_algo algo;
	int dedup;
	enum sim_step_mode mode;
	double capacity_factor;  /* 0: no limit */
	double context;          /* cached tokens per sequence when decoding */
};

/* Results of one layer in one phase (store_layer_row's fields). */
struct sim_layer_out {
	double dispatch_s, compute_s, combine_s, other_s, exposed_s, total_s;
	double dispatch_bytes, combine_bytes, network_bytes;
	double tokens, dropped, imbalance;
	int bottleneck_link;     /* of the dispatch, -1 none */
	double bottleneck_util;
};

/* Largest EP group whose dispatch and combine are simulated at once. */
#define SIM_STEP_PAIR_MAX_GPUS 1024

struct sim_step {
	const struct moe_model *m;
	const struct moe_plan *plan;
	struct sim_step_opts o;
	struct sim_topo *t;          /* borrowed */
	struct sim_net *net;
	/* the combine's network, simulated on a thread of its own beside the
	 * dispatch (they are independent: each starts from an idle network);
	 * NULL when the two run one after the other on net (analytic mode,
	 * clusters above SIM_STEP_PAIR_MAX_GPUS, where it would double the
	 * network's memory) */
	struct sim_net *net2;
	struct sim_traffic *tr;
	struct sim_placement *place; /* borrowed */
	struct sim_compute k[MOE_NODE_GROUPS_MAX]; /* per node kind (moe_cluster_kind) */
	int gpus;
	/* per GPU, accumulated over the layers simulated */
	double *busy_s, *compute_s, *tokens, *sent, *recv;
	/* per link, accumulated: bytes and busy time (network-model runs) */
	double *link_bytes, *link_busy_s;
	double elapsed_s;            /* sum of layer totals */
	/* scratch */
	double *fin, *fin2, *comp, *load, *lb;
	double *cnt;                 /* count path: assignments kept per expert this layer */
	/* token path: kept assignments per expert and per expert replica,
	 * counted in integers and added to the loads once per layer (a
	 * floating-point add per assignment into a hot expert's slot is a
	 * chain of dependent adds; the sums are the same, exact integers) */
	int64_t *kexp, *krep;
	/* token path: one GPU's tokens' destination ranks (tokens x k, -1
	 * where an assignment was dropped), for sim_traffic_add_tokens */
	int *dst;
	size_t dst_cap;
	int *slot;                   /* experts x replicas: index in its GPU's loads */
	int *nslots;                 /* per GPU */
	/* the two-micro-batch schedule (overlap_graph in step.c): built once,
	 * its durations set per phase */
	struct sim_tasks *mb;
	int mb_task[8];
};

/* Prepares the simulation of model m on cluster c (its GPU, or each node
 * group's for the nodes of the group) with plan p on topology t (built
 * from c; the EP group: t->gpus must equal p->ep) with placement pl (borrowed, like m, p
 * and t; all must outlive the step).  Returns MOE_OK and *out (free with
 * sim_step_free); MOE_EINVAL when the plan does not match the topology;
 * MOE_ENOMEM. */
enum moe_status sim_step_new(const struct moe_model *m, const struct moe_cluster *c,
			     const struct moe_plan *p,
			     struct sim_topo *t, struct sim_placement *pl,
			     const struct sim_step_opts *o, struct sim_step **out);
void sim_step_free(struct sim_step *s);

/* Sets the network's event coalescing window (sim_net_set_coalesce) for the
 * layers simulated from now on; 0 (the default) is exact. */
void sim_step_set_coalesce(struct sim_step *s, double rel);

/* Simulates one MoE layer.  experts: gpus x tokens x k expert ids (row
 * major: GPU, token, choice; -1 = none), tokens per GPU as in the plan.
 * expert_tokens and expert_dropped (experts x SIM_PLACE_MAX_REPLICAS
 * entries each, may be NULL) receive per expert replica the assignments
 * kept and dropped.  fwd gets the forward (or decode) layer, bwd (may be
 * NULL; only filled in phase training) the backward.  Returns MOE_OK,
 * MOE_EINVAL for an expert id out of range, MOE_ENOMEM. */
enum moe_status sim_step_layer(struct sim_step *s, const int *experts, int k,
			       double *expert_tokens, double *expert_dropped,
			       struct sim_layer_out *fwd, struct sim_layer_out *bwd);

/* Simulates one MoE layer from counts alone (a count-level trace): counts
 * is gpus x experts (row major: source GPU, expert), the token-expert
 * assignments each GPU sends to each expert, k the experts per token they
 * came from (it sets the capacity, as in sim_step_layer).  Everything else
 * is the token path's:
 *  - capacity: expert e keeps its first cap assignments in source GPU
 *    order, so GPU g keeps min(counts[g][e], cap - what GPUs < g kept) and
 *    drops the rest; exactly what sim_step_layer keeps and drops per GPU
 *    and expert, whatever the order of the tokens inside a GPU;
 *  - replicas: an expert's kept count from GPU g goes to the replica in g's
 *    node, else is dealt round its replicas (sim_placement_split);
 *  - traffic: one copy per kept assignment (sim_traffic_add).  A count
 *    cannot tell whether two assignments belong to one token, so nothing is
 *    de-duplicated whatever s->o.dedup says: dispatch and combine bytes
 *    count every assignment, an upper bound on the token path's bytes that
 *    is reached when no token has two experts on one GPU (direct
 *    algorithm) or on one node (hierarchical, nvlink-forward);
 *  - compute, per-GPU accounting, phases and outputs as sim_step_layer.
 * fwd->tokens + fwd->dropped is the sum of counts.  Returns MOE_OK;
 * MOE_EINVAL for k outside 1..1024 or a count that is negative or not
 * finite (the layer's results are then undefined); MOE_ENOMEM. */
enum moe_status sim_step_layer_counts(struct sim_step *s, const double *counts, int k,
				      double *expert_tokens, double *expert_dropped,
				      struct sim_layer_out *fwd, struct sim_layer_out *bwd);

#endif
