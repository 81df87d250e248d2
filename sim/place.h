/* sim/place.h: expert placement: which GPUs of an expert-parallel group
 * hold each routed expert, with redundant replicas of hot experts.
 *
 *   contiguous   expert e on rank e / (E / ep)          (Megatron, DeepSpeed)
 *   round-robin  expert e on rank e mod ep
 *   balanced     the `redundant` hottest experts (by the loads given) get a
 *                second replica, each replica carrying half the expert's
 *                load; then replicas are placed greedily, heaviest first, on
 *                the least loaded rank that has a free slot (longest
 *                processing time first; slots per rank = ceil((E +
 *                redundant) / ep)).  With node-limited routing (groups > 1
 *                and as many groups as nodes in the group) the experts of
 *                group g stay on node g, so a token's node limit still holds.
 *
 * A token routed to an expert with several replicas goes to the replica in
 * its own node when there is one, else to replica (token index mod count),
 * spreading an expert's load evenly.
 */
#ifndef MOEKIT_SIM_PLACE_H
#define MOEKIT_SIM_PLACE_H

#include "moe/error.h"
#include "moe/model.h"

#define SIM_PLACE_MAX_REPLICAS 2

struct sim_placement {
	int experts, ep, gpus_per_node;
	int *nrep;                 /* experts: replica count (1 or 2) */
	int *rep;                  /* experts x SIM_PLACE_MAX_REPLICAS: rank of each replica */
};

/* Places experts experts on ep ranks (gpus_per_node ranks per node).
 * loads (experts entries, may be NULL for non-balanced kinds; tokens per
 * expert) drive the balanced kind; redundant is its number of extra
 * replicas (0..experts); groups is the model's expert groups (1 = none).
 * Returns MOE_OK and *out (free with sim_placement_free); MOE_EINVAL when
 * ep does not divide experts for contiguous placement, loads is missing
 * for balanced, or redundant is out of range; MOE_ENOMEM. */
enum moe_status sim_placement_new(enum moe_placement kind, int experts, int ep,
				  int gpus_per_node, int groups, const double *loads,
				  int redundant, struct sim_placement **out);
void sim_placement_free(struct sim_placement *p);

/* sim_placement_replica for an expert with more than one replica. */
int sim_placement_replica_many(const struct sim_placement *p, int e, int src, long tok);

/* Which replica of expert e serves token number tok coming from rank src:
 * its index i, the replica's rank being p->rep[e x SIM_PLACE_MAX_REPLICAS
 * + i] (replicas of one expert are on different ranks).  The replica in
 * src's node when there is one, else dealt round the replicas by tok.
 * Inline: a step calls it for every token of every layer. */
static inline int sim_placement_replica(const struct sim_placement *p, int e, int src, long tok)
{
	return p->nrep[e] == 1 ? 0 : sim_placement_replica_many(p, e, src, tok);
}

/* The rank that serves expert e for token number tok coming from rank src. */
int sim_placement_rank(const struct sim_placement *p, int e, int src, long tok);

/* How n (>= 0) assignments of expert e from rank src spread over e's
 * replicas when only their number is known (count-level traces): out[i]
 * gets replica i's share (rank p->rep[e x SIM_PLACE_MAX_REPLICAS + i]),
 * unused entries 0, the shares adding up to n.  The rule of
 * sim_placement_rank for tokens numbered 0..n-1: everything to the replica
 * in src's node when there is one, else dealt round the replicas (the first
 * n mod count replicas get one more).  A token-level caller routes by the
 * token's own index, so the two agree on where the tokens go but can differ
 * by the parity of the token indices. */
void sim_placement_split(const struct sim_placement *p, int e, int src, double n,
			 double out[SIM_PLACE_MAX_REPLICAS]);

#endif
