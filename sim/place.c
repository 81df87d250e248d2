/* sim/place.c: expert placement.  See place.h. */
#include "config.h"
#include "sim/place.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void sim_placement_free(struct sim_placement *p)
{
	if (p == NULL)
		return;
	free(p->nrep);
	free(p->rep);
	free(p);
}

struct unit {
	double load;
	int expert, replica;
};

static int by_load_desc(const void *a, const void *b)
{
	const struct unit *x = a, *y = b;

	if (x->load != y->load)
		return x->load < y->load ? 1 : -1;
	if (x->expert != y->expert)
		return x->expert - y->expert;
	return x->replica - y->replica;
}


/* Greedy LPT on ranks [r0, r1) for units u[0..n). */
static void lpt(struct sim_placement *p, struct unit *u, int n, int r0, int r1, int slots,
		double *rank_load, int *rank_used)
{
	qsort(u, (size_t)n, sizeof *u, by_load_desc);
	for (int i = 0; i < n; i++) {
		int best = -1;
		for (int r = r0; r < r1; r++) {
			/* replicas of one expert go to different ranks */
			if (rank_used[r] >= slots)
				continue;
			if (u[i].replica == 1 && p->rep[u[i].expert * SIM_PLACE_MAX_REPLICAS] == r)
				continue;
			if (best < 0 || rank_load[r] < rank_load[best])
				best = r;
		}
		if (best < 0 && u[i].replica == 1) {
			/* the only rank with room holds the first replica (one
			 * GPU per node under node-limited routing): a second
			 * copy on the same GPU would serve nothing */
			p->nrep[u[i].expert] = 1;
			rank_load[p->rep[u[i].expert * SIM_PLACE_MAX_REPLICAS]] += u[i].load;
			continue;
		}
		if (best < 0)
			best = r0 + i % (r1 - r0); /* cannot happen with enough slots */
		p->rep[u[i].expert * SIM_PLACE_MAX_REPLICAS + u[i].replica] = best;
		rank_load[best] += u[i].load;
		rank_used[best]++;
	}
}

enum moe_status sim_placement_new(enum moe_placement kind, int E, int ep, int gpn, int groups,
				  const double *loads, int redundant, struct sim_placement **out)
{
	struct sim_placement *p;

	if (E < 1 || ep < 1 || gpn < 1)
		MOE_FAIL(MOE_EINVAL, "placement: %d experts on %d ranks", E, ep);
	if (kind == MOE_PLACE_CONTIGUOUS && E % ep != 0)
		MOE_FAIL(MOE_EINVAL, "--ep: %d does not divide the %d experts (contiguous placement)", ep, E);
	if (kind == MOE_PLACE_BALANCED && loads == NULL)
		MOE_FAIL(MOE_EINVAL, "placement: balanced placement needs expert loads");
	if (redundant < 0 || redundant > E)
		MOE_FAIL(MOE_EINVAL, "--redundant-experts: %d is outside 0..%d", redundant, E);
	if ((p = calloc(1, sizeof *p)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "placement: out of memory");
	p->experts = E;
	p->ep = ep;
	p->gpus_per_node = gpn;
	p->nrep = calloc((size_t)E, sizeof *p->nrep);
	p->rep = calloc((size_t)E * SIM_PLACE_MAX_REPLICAS, sizeof *p->rep);
	if (p->nrep == NULL || p->rep == NULL) {
		sim_placement_free(p);
		MOE_FAIL(MOE_ENOMEM, "placement: out of memory");
	}
	for (int e = 0; e < E; e++) {
		p->nrep[e] = 1;
		p->rep[e * SIM_PLACE_MAX_REPLICAS] = kind == MOE_PLACE_ROUND_ROBIN ? e % ep
						    : (int)((long)e * ep / E);
	}
	if (kind == MOE_PLACE_BALANCED) {
		struct unit *u = malloc(((size_t)E + (size_t)redundant) * sizeof *u);
		double *rl = calloc((size_t)ep, sizeof *rl);
		int *ru = calloc((size_t)ep, sizeof *ru);
		int *order = malloc((size_t)E * sizeof *order);
		int n = 0, nodes = ep / gpn;
		if (u == NULL || rl == NULL || ru == NULL || order == NULL) {
			free(u); free(rl); free(ru); free(order);
			sim_placement_free(p);
			MOE_FAIL(MOE_ENOMEM, "placement: out of memory");
		}
		/* the hottest experts get a second replica (ties: lower id) */
		for (int e = 0; e < E; e++)
			order[e] = e;
		for (int i = 0; i < redundant; i++) {
			int best = i;
			for (int j = i + 1; j < E; j++)
				if (loads[order[j]] > loads[order[best]])
					best = j;
			int x = order[i]; order[i] = order[best]; order[best] = x;
			if (ep > 1)
				p->nrep[order[i]] = 2;
		}
		if (groups > 1 && nodes == groups && E % groups == 0 && ep % gpn == 0) {
			/* node-limited routing: group g's experts stay on node g */
			int per = E / groups;
			for (int g = 0; g < groups; g++) {
				int cnt = 0, slots;
				n = 0;
				for (int e = g * per; e < (g + 1) * per; e++)
					for (int r = 0; r < p->nrep[e]; r++) {
						u[n].load = loads[e] / p->nrep[e];
						u[n].expert = e;
						u[n].replica = r;
						n++;
						cnt++;
					}
				slots = (cnt + gpn - 1) / gpn;
				lpt(p, u, n, g * gpn, (g + 1) * gpn, slots, rl, ru);
			}
		} else {
			int slots;
			for (int e = 0; e < E; e++)
				for (int r = 0; r < p->nrep[e]; r++) {
					u[n].load = loads[e] / p->nrep[e];
					u[n].expert = e;
					u[n].replica = r;
					n++;
				}
			slots = (n + ep - 1) / ep;
			lpt(p, u, n, 0, ep, slots, rl, ru);
		}
		free(u); free(rl); free(ru); free(order);
	}
	*out = p;
	return MOE_OK;
}

/* The index of e's replica in src's node, -1 when there is none. */
static int own_node_replica(const struct sim_placement *p, int e, int src)
{
	const int *r = &p->rep[e * SIM_PLACE_MAX_REPLICAS];

	for (int i = 0; i < p->nrep[e]; i++)
		if (r[i] / p->gpus_per_node == src / p->gpus_per_node)
			return i;
	return -1;
}

int sim_placement_replica_many(const struct sim_placement *p, int e, int src, long tok)
{
	int own = own_node_replica(p, e, src);

	return own >= 0 ? own : (int)(tok % p->nrep[e]);
}

int sim_placement_rank(const struct sim_placement *p, int e, int src, long tok)
{
	return p->rep[e * SIM_PLACE_MAX_REPLICAS + sim_placement_replica(p, e, src, tok)];
}

void sim_placement_split(const struct sim_placement *p, int e, int src, double n,
			 double out[SIM_PLACE_MAX_REPLICAS])
{
	int nr = p->nrep[e], own = nr == 1 ? 0 : own_node_replica(p, e, src);
	double base, rem;

	for (int i = 0; i < SIM_PLACE_MAX_REPLICAS; i++)
		out[i] = 0;
	if (own >= 0) {
		out[own] = n;
		return;
	}
	/* tokens 0..n-1 dealt round the replicas: the first n mod nr get one
	 * more; a fractional remainder goes the same way, so the parts add
	 * up to n exactly */
	base = floor(n / nr);
	rem = n - base * nr;
	for (int i = 0; i < nr; i++)
		out[i] = base + fmin(1, fmax(0, rem - i));
}
