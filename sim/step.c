/* sim/step.c: a layer as other work, dispatch, experts and combine; two
 * overlapped micro-batches; the backward pass.  See step.h. */
#include "config.h"
#include "sim/step.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define R SIM_PLACE_MAX_REPLICAS

void sim_step_free(struct sim_step *s)
{
	if (s == NULL)
		return;
	sim_net_free(s->net);
	sim_net_free(s->net2);
	sim_traffic_free(s->tr);
	sim_tasks_free(s->mb);
	free(s->busy_s); free(s->compute_s); free(s->tokens); free(s->sent); free(s->recv);
	free(s->link_bytes); free(s->link_busy_s); free(s->fin); free(s->fin2); free(s->comp);
	free(s->load); free(s->lb); free(s->cnt); free(s->kexp); free(s->krep); free(s->dst); free(s->slot); free(s->nslots);
	free(s);
}

/* Two micro-batches A and B (step.h): the tasks of one layer, in the order
 * each stream runs them, which is also the order they are added, so that
 * a stream freed with two tasks ready takes the earlier one:
 *
 *   compute  other A, other B, experts A, experts B
 *   comms    dispatch A, dispatch B, combine A, combine B
 *
 * and per micro-batch other -> dispatch -> experts -> combine.  Each
 * stream's tasks become ready in that order (experts A needs dispatch A,
 * which ends no earlier than other B can start; combine A needs experts A,
 * after other B), so the streams run them in exactly that order. */
enum { MB_OA, MB_OB, MB_EA, MB_EB, MB_DA, MB_DB, MB_CA, MB_CB };

static enum moe_status overlap_graph(struct sim_step *s)
{
	int comp, comm, *t = s->mb_task;
	enum moe_status st;

	if ((st = sim_tasks_new(8, &s->mb)) != MOE_OK ||
	    (st = sim_tasks_resource(s->mb, 1, &comp)) != MOE_OK ||
	    (st = sim_tasks_resource(s->mb, 1, &comm)) != MOE_OK)
		return st;
	for (int i = MB_OA; i <= MB_CB; i++)
		if ((st = sim_tasks_add(s->mb, i <= MB_EB ? comp : comm, 0, &t[i])) != MOE_OK)
			return st;
	for (int b = 0; b < 2; b++)
		if ((st = sim_tasks_after(s->mb, t[MB_DA + b], t[MB_OA + b])) != MOE_OK ||
		    (st = sim_tasks_after(s->mb, t[MB_EA + b], t[MB_DA + b])) != MOE_OK ||
		    (st = sim_tasks_after(s->mb, t[MB_CA + b], t[MB_EA + b])) != MOE_OK)
			return st;
	return MOE_OK;
}

/* The layer time of the two micro-batches, each with other work o,
 * dispatch d, slowest experts e and combine c (seconds). */
static enum moe_status overlap_total(struct sim_step *s, double o, double d, double e,
				     double c, double *total)
{
	const double dur[8] = {
		[MB_OA] = o, [MB_OB] = o, [MB_EA] = e, [MB_EB] = e,
		[MB_DA] = d, [MB_DB] = d, [MB_CA] = c, [MB_CB] = c,
	};
	enum moe_status st;

	for (int i = MB_OA; i <= MB_CB; i++)
		if ((st = sim_tasks_set_duration(s->mb, s->mb_task[i], dur[i])) != MOE_OK)
			return st;
	return sim_tasks_run(s->mb, total);
}

enum moe_status sim_step_new(const struct moe_model *m, const struct moe_cluster *c,
			     const struct moe_plan *p,
			     struct sim_topo *t, struct sim_placement *pl,
			     const struct sim_step_opts *o, struct sim_step **out)
{
	struct sim_step *s;
	int G = t->gpus, E = m->experts;
	enum moe_status st;

	if (p->ep != G || pl->ep != G || pl->experts != E)
		MOE_FAIL(MOE_EINVAL, "step: EP group of %d GPUs, placement of %d experts on %d ranks, "
			 "topology of %d GPUs", p->ep, pl->experts, pl->ep, G);
	if ((s = calloc(1, sizeof *s)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "step: out of memory");
	s->m = m;
	s->plan = p;
	s->o = *o;
	s->t = t;
	s->place = pl;
	s->gpus = G;
	if (moe_cluster_kinds(c) > MOE_NODE_GROUPS_MAX) {
		free(s);
		MOE_FAIL(MOE_EINVAL, "step: cluster %s has %d node groups: expected at most %d", c->name,
			 c->ngroups, MOE_NODE_GROUPS_MAX);
	}
	for (int n = 0; n < t->nodes; n++)
		if (t->node[n].kind >= moe_cluster_kinds(c)) {
			free(s);
			MOE_FAIL(MOE_EINVAL, "step: topology node %d is of node group %d; cluster %s has "
				 "%d", n, t->node[n].kind, c->name, moe_cluster_kinds(c));
		}
	for (int i = 0; i < moe_cluster_kinds(c); i++)
		sim_compute_init_kind(&s->k[i], c, i, m);
	s->busy_s = calloc((size_t)G, sizeof(double));
	s->compute_s = calloc((size_t)G, sizeof(double));
	s->tokens = calloc((size_t)G, sizeof(double));
	s->sent = calloc((size_t)G, sizeof(double));
	s->recv = calloc((size_t)G, sizeof(double));
	s->fin = calloc((size_t)G, sizeof(double));
	s->fin2 = calloc((size_t)G, sizeof(double));
	s->comp = calloc((size_t)G * 2, sizeof(double));
	s->load = calloc((size_t)E * R, sizeof(double));
	s->cnt = calloc((size_t)E, sizeof(double));
	s->kexp = calloc((size_t)E, sizeof(int64_t));
	s->krep = calloc((size_t)E * R, sizeof(int64_t));
	s->dst_cap = 1024;
	s->dst = calloc(s->dst_cap, sizeof(int));
	s->slot = calloc((size_t)E * R, sizeof(int));
	s->nslots = calloc((size_t)G + 1, sizeof(int));
	s->link_bytes = calloc((size_t)t->nlinks + 1, sizeof(double));
	s->link_busy_s = calloc((size_t)t->nlinks + 1, sizeof(double));
	s->lb = calloc((size_t)t->nlinks + 1, sizeof(double));
	if (s->busy_s == NULL || s->compute_s == NULL || s->tokens == NULL || s->sent == NULL ||
	    s->recv == NULL || s->fin == NULL || s->fin2 == NULL || s->comp == NULL ||
	    s->load == NULL || s->cnt == NULL || s->kexp == NULL || s->krep == NULL || s->dst == NULL || s->slot == NULL ||
	    s->nslots == NULL || s->link_bytes == NULL || s->link_busy_s == NULL || s->lb == NULL) {
		sim_step_free(s);
		MOE_FAIL(MOE_ENOMEM, "step: out of memory");
	}
	if ((st = sim_traffic_new(G, t->gpus_per_node, &s->tr)) != MOE_OK ||
	    (st = overlap_graph(s)) != MOE_OK ||
	    (o->mode == SIM_STEP_EVENTS && (st = sim_net_new(t, (size_t)G * 16, &s->net)) != MOE_OK) ||
	    (o->mode == SIM_STEP_EVENTS && G <= SIM_STEP_PAIR_MAX_GPUS &&
	     (st = sim_net_new(t, (size_t)G * 16, &s->net2)) != MOE_OK)) {
		sim_step_free(s);
		return st;
	}
	/* local expert slots: GPU-major, so one GPU's loads are contiguous */
	for (int e = 0; e < E; e++)
		for (int r = 0; r < pl->nrep[e]; r++)
			s->nslots[pl->rep[e * R + r] + 1]++;
	for (int g = 0; g < G; g++)
		s->nslots[g + 1] += s->nslots[g];
	{
		int *cur = malloc((size_t)G * sizeof *cur);
		if (cur == NULL) {
			sim_step_free(s);
			MOE_FAIL(MOE_ENOMEM, "step: out of memory");
		}
		memcpy(cur, s->nslots, (size_t)G * sizeof *cur);
		for (int e = 0; e < E; e++)
			for (int r = 0; r < pl->nrep[e]; r++)
				s->slot[e * R + r] = cur[pl->rep[e * R + r]]++;
		free(cur);
	}
	*out = s;
	return MOE_OK;
}

void sim_step_set_coalesce(struct sim_step *s, double rel)
{
	if (s->net != NULL)
		sim_net_set_coalesce(s->net, rel);
	if (s->net2 != NULL)
		sim_net_set_coalesce(s->net2, rel);
}

/* The links' bytes and busy time of an all-to-all that ran on net (or, in
 * analytic mode, whose bytes are in s->lb), counted times. */
static void account(struct sim_step *s, const struct sim_net *net, double times)
{
	for (int l = 0; l < s->t->nlinks; l++) {
		if (net == NULL) {
			s->link_bytes[l] += times * s->lb[l];
			s->link_busy_s[l] += times * s->lb[l] / s->t->links[l].bw_Bps;
		} else {
			s->link_bytes[l] += times * sim_net_link_bytes(net, l);
			s->link_busy_s[l] += times * sim_net_link_busy(net, l);
		}
	}
}

/* One all-to-all of the current traffic on net: times and per-GPU finish. */
struct a2a_job {
	struct sim_step *s;
	struct sim_net *net;
	struct sim_a2a_opts o;
	double *fin;
	struct sim_a2a_result res;
	struct moe_failure err;       /* kept here: it may run on a thread */
};

static void *a2a_job_run(void *arg)
{
	struct a2a_job *j = arg;

	moe_failure_keep(&j->err, sim_a2a_run(j->net, j->s->t, j->s->tr, &j->o, j->fin, &j->res));
	return NULL;
}

/* The dispatch (bytes per token out) and the combine (back) of the current
 * traffic, their links counted times: in analytic mode the bound; else the
 * flow network, the combine on a thread of its own when s->net2 exists.
 * The links are counted dispatch first either way, so the sums are the
 * same bits. */
static enum moe_status a2a_pair(struct sim_step *s, double out, double back, double times,
				struct sim_a2a_result *rd, struct sim_a2a_result *rc)
{
	struct a2a_job d = {.s = s, .net = s->net, .o = {s->o.algo, s->o.dedup, 0, out},
			    .fin = s->fin};
	struct a2a_job c = {.s = s, .net = s->net2 ? s->net2 : s->net,
			    .o = {s->o.algo, s->o.dedup, 1, back}, .fin = s->fin2};
	pthread_t th;
	int threaded = 0;
	enum moe_status st;

	if (s->o.mode == SIM_STEP_ANALYTIC) {
		if ((st = sim_a2a_bound(s->t, s->tr, &d.o, s->fin, s->lb, rd)) != MOE_OK)
			return st;
		account(s, NULL, times);
		if ((st = sim_a2a_bound(s->t, s->tr, &c.o, s->fin2, s->lb, rc)) != MOE_OK)
			return st;
		account(s, NULL, times);
		return MOE_OK;
	}
	if (s->net2 != NULL)
		threaded = pthread_create(&th, NULL, a2a_job_run, &c) == 0;
	a2a_job_run(&d);
	if (threaded)
		pthread_join(th, NULL);
	if (d.err.st != MOE_OK)
		return moe_failure_raise(&d.err);
	account(s, d.net, times);
	if (!threaded)
		a2a_job_run(&c);
	if (c.err.st != MOE_OK)
		return moe_failure_raise(&c.err);
	account(s, c.net, times);
	*rd = d.res;
	*rc = c.res;
	return MOE_OK;
}

/* GPU g's compute model: its node's group's GPU. */
static const struct sim_compute *gpu_k(const struct sim_step *s, int g)
{
	return &s->k[s->t->node[g / s->t->gpus_per_node].kind];
}

static double expert_time(struct sim_step *s, int g, double scale)
{
	int n = s->nslots[g + 1] - s->nslots[g];
	double buf[64], *l = n <= 64 ? buf : malloc((size_t)n * sizeof *l), t;

	if (l == NULL)
		return NAN;
	for (int i = 0; i < n; i++)
		l[i] = s->load[s->nslots[g] + i] * scale;
	t = sim_compute_experts_s(gpu_k(s, g), s->m, l, n, s->t->gpu_slowdown[g]);
	if (l != buf)
		free(l);
	return t;
}

/* Fills one layer's result from its parts (bytes filled by the caller). */
static enum moe_status phase(struct sim_step *s, double bpt_out, double bpt_back, double cscale,
			     double oscale, struct sim_layer_out *r)
{
	const struct moe_plan *p = s->plan;
	int G = s->gpus;
	int mb = p->micro_batches >= 2 && p->overlap;
	double div = mb ? 2 : 1, other = 0, emax = 0, eend = 0;
	struct sim_a2a_result rd, rc;
	enum moe_status st;

	for (int g = 0; g < G; g++) {
		double og = oscale * sim_compute_other_s(gpu_k(s, g), s->m, p->tokens_per_gpu / div,
							 s->o.context, s->t->gpu_slowdown[g]);
		double eg = cscale * expert_time(s, g, 1 / div);
		if (isnan(eg))
			MOE_FAIL(MOE_ENOMEM, "step: out of memory");
		s->comp[g] = eg;
		other = fmax(other, og);
		emax = fmax(emax, eg);
		s->busy_s[g] += div * (og + eg);
		s->compute_s[g] += div * eg;
	}
	/* with two micro-batches the network runs once for the half-size
	 * batch; both moved bytes, so the links count it twice */
	if ((st = a2a_pair(s, bpt_out / div, bpt_back / div, div, &rd, &rc)) != MOE_OK)
		return st;
	if (mb) {
		if ((st = overlap_total(s, other, rd.completion_s, emax, rc.completion_s,
					&r->total_s)) != MOE_OK)
			return st;
		r->dispatch_s = 2 * rd.completion_s;
		r->combine_s = 2 * rc.completion_s;
		r->compute_s = 2 * emax;
		r->other_s = 2 * other;
	} else {
		for (int g = 0; g < G; g++)
			eend = fmax(eend, s->fin[g] + s->comp[g]);
		r->total_s = other + eend + rc.completion_s;
		r->dispatch_s = rd.completion_s;
		r->combine_s = rc.completion_s;
		r->compute_s = emax;
		r->other_s = other;
	}
	r->exposed_s = fmax(0, r->total_s - r->other_s - r->compute_s);
	r->dispatch_bytes = rd.bytes * div;
	r->combine_bytes = rc.bytes * div;
	r->network_bytes = (rd.network_bytes + rc.network_bytes) * div;
	r->bottleneck_link = rd.bottleneck_link;
	r->bottleneck_util = rd.bottleneck_util;
	s->elapsed_s += r->total_s;
	return MOE_OK;
}

/* The start of a layer, shared by the token and count paths: checks k,
 * clears the outputs and the per-layer scratch, and gives the capacity of
 * each expert in assignments (INFINITY without a capacity factor). */
static enum moe_status layer_begin(struct sim_step *s, int k, double *expert_tokens,
				   double *expert_dropped, struct sim_layer_out *fwd,
				   struct sim_layer_out *bwd, double *cap)
{
	int E = s->m->experts;

	if (k < 1 || k > 1024)
		MOE_FAIL(MOE_EINVAL, "step: top-k %d outside 1..1024", k);
	memset(fwd, 0, sizeof *fwd);
	if (bwd != NULL)
		memset(bwd, 0, sizeof *bwd);
	*cap = INFINITY;
	if (s->o.capacity_factor > 0)
		*cap = ceil(s->o.capacity_factor * (double)s->gpus * s->plan->tokens_per_gpu * k / E);
	memset(s->cnt, 0, (size_t)E * sizeof *s->cnt);
	memset(s->kexp, 0, (size_t)E * sizeof *s->kexp);
	memset(s->krep, 0, (size_t)E * R * sizeof *s->krep);
	memset(s->load, 0, (size_t)E * R * sizeof *s->load);
	if (expert_tokens != NULL)
		memset(expert_tokens, 0, (size_t)E * R * sizeof *expert_tokens);
	if (expert_dropped != NULL)
		memset(expert_dropped, 0, (size_t)E * R * sizeof *expert_dropped);
	sim_traffic_clear(s->tr);
	return MOE_OK;
}

/* n assignments of expert e kept by its replica r: that GPU's load. */
static void keep(struct sim_step *s, int e, int r, double n, double *expert_tokens)
{
	s->load[s->slot[e * R + r]] += n;
	if (expert_tokens != NULL)
		expert_tokens[e * R + r] += n;
}

/* The rest of a layer once its loads and traffic are known (both paths):
 * per-GPU accounting, the forward (and backward) phases, the outputs. */
static enum moe_status layer_end(struct sim_step *s, double kept, double dropped,
				 struct sim_layer_out *fwd, struct sim_layer_out *bwd)
{
	const struct moe_model *m = s->m;
	int G = s->gpus;
	double hd = m->hidden, maxt = 0;
	size_t G2 = (size_t)G * (size_t)G;
	enum moe_status st;

	for (int g = 0; g < G; g++) {
		double tg = 0;
		for (int i = s->nslots[g]; i < s->nslots[g + 1]; i++)
			tg += s->load[i];
		s->tokens[g] += tg;
		maxt = fmax(maxt, tg);
	}
	{
		const double *U = s->o.dedup ? s->tr->gpu : s->tr->pairs;
		for (size_t i = 0; i < G2; i++) {
			int a = (int)(i / (size_t)G), b = (int)(i % (size_t)G);
			if (a == b || U[i] == 0)
				continue;
			s->sent[a] += U[i] * hd * m->dispatch_bytes;
			s->recv[b] += U[i] * hd * m->dispatch_bytes;
			s->sent[b] += U[i] * hd * m->combine_bytes;
			s->recv[a] += U[i] * hd * m->combine_bytes;
		}
	}
	if ((st = phase(s, hd * m->dispatch_bytes, hd * m->combine_bytes, 1, 1, fwd)) != MOE_OK)
		return st;
	fwd->tokens = kept;
	fwd->dropped = dropped;
	fwd->imbalance = kept > 0 ? maxt / (kept / G) : 0;
	if (bwd != NULL && s->plan->phase == MOE_PHASE_TRAINING) {
		if ((st = phase(s, hd * m->combine_bytes, hd * m->combine_bytes, 2, 2, bwd)) != MOE_OK)
			return st;
		bwd->tokens = kept;
		bwd->dropped = dropped;
		bwd->imbalance = fwd->imbalance;
	}
	return MOE_OK;
}

enum moe_status sim_step_layer(struct sim_step *s, const int *experts, int k,
			       double *expert_tokens, double *expert_dropped,
			       struct sim_layer_out *fwd, struct sim_layer_out *bwd)
{
	const struct moe_model *m = s->m;
	int G = s->gpus, E = m->experts, T = s->plan->tokens_per_gpu;
	double cap, kept = 0, dropped = 0;
	enum moe_status st;

	if ((st = layer_begin(s, k, expert_tokens, expert_dropped, fwd, bwd, &cap)) != MOE_OK)
		return st;
	if ((size_t)T * (size_t)k > s->dst_cap) {
		int *x = realloc(s->dst, (size_t)T * (size_t)k * sizeof *x);
		if (x == NULL)
			MOE_FAIL(MOE_ENOMEM, "step: out of memory for %d tokens", T);
		s->dst = x;
		s->dst_cap = (size_t)T * (size_t)k;
	}
	for (int g = 0; g < G; g++) {
		const int *ex = &experts[(size_t)g * (size_t)T * (size_t)k];
		/* each GPU's tokens in order: capacity goes first come first
		 * served, lowest GPU first */
		for (size_t i = 0; i < (size_t)T * (size_t)k; i++) {
			int e = ex[i], r;
			s->dst[i] = -1;
			if (e < 0)
				continue;
			if (e >= E)
				MOE_FAIL(MOE_EINVAL, "step: expert %d outside 0..%d of %s", e, E - 1,
					 m->name);
			if ((double)s->kexp[e] >= cap) {
				dropped++;
				if (expert_dropped != NULL)
					expert_dropped[e * R]++;
				continue;
			}
			s->kexp[e]++;
			r = sim_placement_replica(s->place, e, g, (long)(i / (size_t)k));
			s->krep[e * R + r]++;
			s->dst[i] = s->place->rep[e * R + r];
			kept++;
		}
		if ((st = sim_traffic_add_tokens(s->tr, g, s->dst, k, T)) != MOE_OK)
			return st;
	}
	for (int e = 0; e < E; e++)
		for (int r = 0; r < R; r++)
			if (s->krep[e * R + r] > 0)
				keep(s, e, r, (double)s->krep[e * R + r], expert_tokens);
	return layer_end(s, kept, dropped, fwd, bwd);
}

enum moe_status sim_step_layer_counts(struct sim_step *s, const double *counts, int k,
				      double *expert_tokens, double *expert_dropped,
				      struct sim_layer_out *fwd, struct sim_layer_out *bwd)
{
	int G = s->gpus, E = s->m->experts;
	double cap, kept = 0, dropped = 0;
	enum moe_status st;

	if ((st = layer_begin(s, k, expert_tokens, expert_dropped, fwd, bwd, &cap)) != MOE_OK)
		return st;
	/* source GPU order, as the token path: an expert's capacity goes to
	 * the lowest GPUs first, and what GPU g loses does not depend on how
	 * its tokens were ordered */
	for (int g = 0; g < G; g++)
		for (int e = 0; e < E; e++) {
			double c = counts[(size_t)g * (size_t)E + (size_t)e], n, part[R];
			if (!(c >= 0) || !isfinite(c))
				MOE_FAIL(MOE_EINVAL, "step: count of GPU %d, expert %d is %g: expected a "
					 "finite number >= 0", g, e, c);
			if (c == 0)
				continue;
			n = fmin(c, fmax(0, cap - s->cnt[e]));
			if (n < c) {
				dropped += c - n;
				if (expert_dropped != NULL)
					expert_dropped[e * R] += c - n;
			}
			if (n == 0)
				continue;
			s->cnt[e] += n;
			kept += n;
			sim_placement_split(s->place, e, g, n, part);
			for (int r = 0; r < s->place->nrep[e]; r++) {
				if (part[r] == 0)
					continue;
				keep(s, e, r, part[r], expert_tokens);
				/* one copy per assignment: nothing to de-duplicate */
				if ((st = sim_traffic_add(s->tr, g, s->place->rep[e * R + r], part[r])) != MOE_OK)
					return st;
			}
		}
	return layer_end(s, kept, dropped, fwd, bwd);
}
