/* sim/a2a.c: traffic matrices and the dispatch/combine algorithms, built as
 * a small graph of transfers and barriers and run on the network model.
 * See a2a.h. */
#include "config.h"
#include "sim/a2a.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum moe_status sim_traffic_new(int gpus, int gpn, struct sim_traffic **out)
{
	struct sim_traffic *tr;

	if (gpus < 1 || gpn < 1 || gpus % gpn != 0 || gpus > 65536)
		MOE_FAIL(MOE_EINVAL, "traffic: %d GPUs in nodes of %d: expected 1..65536 GPUs, whole nodes",
			 gpus, gpn);
	if ((tr = calloc(1, sizeof *tr)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "traffic: out of memory");
	tr->gpus = gpus;
	tr->gpus_per_node = gpn;
	tr->nodes = gpus / gpn;
	tr->pairs = calloc((size_t)gpus * gpus, sizeof(double));
	tr->gpu = calloc((size_t)gpus * gpus, sizeof(double));
	tr->node = calloc((size_t)gpus * tr->nodes, sizeof(double));
	tr->node_of = malloc((size_t)gpus * sizeof(int));
	tr->gseen = calloc((size_t)gpus, sizeof(unsigned));
	tr->nseen = calloc((size_t)tr->nodes, sizeof(unsigned));
	tr->kp = calloc((size_t)gpus, sizeof(int64_t));
	tr->kg = calloc((size_t)gpus, sizeof(int64_t));
	tr->kn = calloc((size_t)tr->nodes, sizeof(int64_t));
	if (tr->pairs == NULL || tr->gpu == NULL || tr->node == NULL || tr->node_of == NULL ||
	    tr->gseen == NULL || tr->nseen == NULL || tr->kp == NULL || tr->kg == NULL ||
	    tr->kn == NULL) {
		sim_traffic_free(tr);
		MOE_FAIL(MOE_ENOMEM, "traffic: out of memory for %d GPUs", gpus);
	}
	for (int g = 0; g < gpus; g++)
		tr->node_of[g] = g / gpn;
	*out = tr;
	return MOE_OK;
}

void sim_traffic_free(struct sim_traffic *tr)
{
	if (tr == NULL)
		return;
	free(tr->pairs);
	free(tr->gpu);
	free(tr->node);
	free(tr->node_of);
	free(tr->gseen);
	free(tr->nseen);
	free(tr->kp);
	free(tr->kg);
	free(tr->kn);
	free(tr);
}

void sim_traffic_clear(struct sim_traffic *tr)
{
	size_t g = (size_t)tr->gpus;

	memset(tr->pairs, 0, g * g * sizeof(double));
	memset(tr->gpu, 0, g * g * sizeof(double));
	memset(tr->node, 0, g * (size_t)tr->nodes * sizeof(double));
}

/* A new token's stamp for the per-GPU and per-node seen marks (cleared
 * when the counter wraps). */
static inline unsigned next_stamp(struct sim_traffic *tr)
{
	unsigned st = ++tr->stamp;

	if (st == 0) {
		memset(tr->gseen, 0, (size_t)tr->gpus * sizeof(unsigned));
		memset(tr->nseen, 0, (size_t)tr->nodes * sizeof(unsigned));
		st = tr->stamp = 1;
	}
	return st;
}

/* Adds count copies of one token from GPU src whose experts live on
 * dst[0..k-1] (checked by the caller). */
static inline void tally(struct sim_traffic *tr, int src, const int *dst, int k, double count)
{
	size_t G = (size_t)tr->gpus;
	double *prow = tr->pairs + (size_t)src * G, *grow = tr->gpu + (size_t)src * G;
	double *nrow = tr->node + (size_t)src * (size_t)tr->nodes;
	unsigned st = next_stamp(tr);

	for (int i = 0; i < k; i++) {
		int g = dst[i], ni = tr->node_of[g];

		prow[g] += count;
		if (tr->gseen[g] != st) {
			tr->gseen[g] = st;
			grow[g] += count;
		}
		if (tr->nseen[ni] != st) {
			tr->nseen[ni] = st;
			nrow[ni] += count;
		}
	}
}

static enum moe_status check_source(const struct sim_traffic *tr, int src, int k)
{
	if (k < 1 || k > 1024)
		MOE_FAIL(MOE_EINVAL, "traffic: a token with %d experts: expected 1..1024", k);
	if (src < 0 || src >= tr->gpus)
		MOE_FAIL(MOE_EINVAL, "traffic: source GPU %d outside 0..%d", src, tr->gpus - 1);
	return MOE_OK;
}

enum moe_status sim_traffic_add_token(struct sim_traffic *tr, int src, const int *dst, int k,
				      double count)
{
	if (check_source(tr, src, k) != MOE_OK)
		return MOE_EINVAL;
	for (int i = 0; i < k; i++)
		if (dst[i] < 0 || dst[i] >= tr->gpus)
			MOE_FAIL(MOE_EINVAL, "traffic: destination GPU %d outside 0..%d", dst[i],
				 tr->gpus - 1);
	tally(tr, src, dst, k, count);
	return MOE_OK;
}

enum moe_status sim_traffic_add_tokens(struct sim_traffic *tr, int src, const int *dst, int k,
				       long ntok)
{
	size_t G = (size_t)tr->gpus, N = (size_t)tr->nodes;
	double *prow, *grow, *nrow;
	int bad = -1;

	if (check_source(tr, src, k) != MOE_OK)
		return MOE_EINVAL;
	for (long t = 0; t < ntok && bad < 0; t++, dst += k) {
		unsigned st = next_stamp(tr);
		for (int i = 0; i < k; i++) {
			int g = dst[i], ni;
			if (g < 0)
				continue;
			if (g >= tr->gpus) {
				bad = g;
				break;
			}
			ni = tr->node_of[g];
			tr->kp[g]++;
			if (tr->gseen[g] != st) {
				tr->gseen[g] = st;
				tr->kg[g]++;
			}
			if (tr->nseen[ni] != st) {
				tr->nseen[ni] = st;
				tr->kn[ni]++;
			}
		}
	}
	/* the counts go into the rows only when every token was good */
	prow = tr->pairs + (size_t)src * G;
	grow = tr->gpu + (size_t)src * G;
	nrow = tr->node + (size_t)src * N;
	for (size_t g = 0; g < G; g++) {
		if (bad < 0) {
			prow[g] += (double)tr->kp[g];
			grow[g] += (double)tr->kg[g];
		}
		tr->kp[g] = tr->kg[g] = 0;
	}
	for (size_t x = 0; x < N; x++) {
		if (bad < 0)
			nrow[x] += (double)tr->kn[x];
		tr->kn[x] = 0;
	}
	if (bad >= 0)
		MOE_FAIL(MOE_EINVAL, "traffic: destination GPU %d outside 0..%d", bad, tr->gpus - 1);
	return MOE_OK;
}

enum moe_status sim_traffic_add(struct sim_traffic *tr, int src, int dst, double count)
{
	size_t G = (size_t)tr->gpus;

	if (src < 0 || src >= tr->gpus || dst < 0 || dst >= tr->gpus)
		MOE_FAIL(MOE_EINVAL, "traffic: GPU pair %d -> %d outside 0..%d", src, dst, tr->gpus - 1);
	if (!(count >= 0) || !isfinite(count))
		MOE_FAIL(MOE_EINVAL, "traffic: %d -> %d: count %g must be finite and >= 0", src, dst,
			 count);
	tr->pairs[src * G + (size_t)dst] += count;
	tr->gpu[src * G + (size_t)dst] += count;
	tr->node[src * (size_t)tr->nodes + (size_t)(dst / tr->gpus_per_node)] += count;
	return MOE_OK;
}

int sim_a2a_algo_parse(const char *s, enum sim_a2a_algo *out)
{
	static const char *const names[] = {"direct", "hierarchical", "nvlink-forward"};

	for (int i = 0; i < 3; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum sim_a2a_algo)i;
			return 1;
		}
	return 0;
}

const char *sim_a2a_algo_name(enum sim_a2a_algo a)
{
	static const char *const names[] = {"direct", "hierarchical", "nvlink-forward"};

	return (unsigned)a < 3 ? names[a] : NULL;
}

/* ---- the graph of transfers ---- */

struct task {
	int src, dst;
	double units;
	int in_b, out_b;     /* barrier waited on, barrier fed; -1 none */
};

struct plan {
	struct task *t;
	int n, cap;
	int nbar;
	int *wait;           /* per barrier: transfers still to end */
	int *soff, *succ;    /* per barrier: its waiting transfers (CSR) */
	const struct sim_topo *topo;
	double bpt;
	double *finish;
	enum moe_status err;
};

static int task_add(struct plan *p, int src, int dst, double units, int in_b, int out_b)
{
	if (!(units > 0) || src == dst)
		return 0;
	if (p->n == p->cap) {
		int cap = p->cap ? p->cap * 2 : 1024;
		struct task *x = realloc(p->t, (size_t)cap * sizeof *x);
		if (x == NULL)
			return -1;
		p->t = x;
		p->cap = cap;
	}
	p->t[p->n].src = src;
	p->t[p->n].dst = dst;
	p->t[p->n].units = units;
	p->t[p->n].in_b = in_b;
	p->t[p->n].out_b = out_b;
	p->n++;
	return 0;
}

static int build(struct plan *p, const struct sim_traffic *tr, const struct sim_a2a_opts *o)
{
	int G = tr->gpus, gpn = tr->gpus_per_node, nodes = tr->nodes;
	const double *U = o->dedup ? tr->gpu : tr->pairs;

#define UG(s, d) U[(size_t)(s) * G + (size_t)(d)]
	/* tokens from s needing node N */
	for (int s = 0; s < G; s++)
		for (int d = 0; d < G; d++) {
			if (s / gpn == d / gpn || o->algo == SIM_A2A_DIRECT) {
				if (task_add(p, s, d, UG(s, d), -1, -1) != 0)
					return -1;
			}
		}
	if (o->algo == SIM_A2A_DIRECT)
		return 0;
	if (o->algo == SIM_A2A_HIERARCHICAL) {
		p->nbar = 2 * nodes * nodes;
		for (int M = 0; M < nodes; M++)
			for (int N = 0; N < nodes; N++) {
				int pm = M * gpn + N % gpn, pn = N * gpn + N % gpn;
				int b1 = 2 * (M * nodes + N), b2 = b1 + 1;
				double total = 0;
				if (M == N)
					continue;
				for (int s = M * gpn; s < (M + 1) * gpn; s++) {
					double u = 0;
					if (o->dedup)
						u = tr->node[(size_t)s * nodes + (size_t)N];
					else
						for (int d = N * gpn; d < (N + 1) * gpn; d++)
							u += UG(s, d);
					total += u;
					if (task_add(p, s, pm, u, -1, b1) != 0)
						return -1;
				}
				if (task_add(p, pm, pn, total, b1, b2) != 0)
					return -1;
				for (int d = N * gpn; d < (N + 1) * gpn; d++) {
					double u = 0;
					for (int s = M * gpn; s < (M + 1) * gpn; s++)
						u += UG(s, d);
					if (task_add(p, pn, d, u, b2, -1) != 0)
						return -1;
				}
			}
		return 0;
	}
	/* nvlink-forward */
	p->nbar = G * nodes;
	for (int s = 0; s < G; s++)
		for (int N = 0; N < nodes; N++) {
			int r = N * gpn + s % gpn, b = s * nodes + N;
			double u = 0;
			if (N == s / gpn)
				continue;
			if (o->dedup)
				u = tr->node[(size_t)s * nodes + (size_t)N];
			else
				for (int d = N * gpn; d < (N + 1) * gpn; d++)
					u += UG(s, d);
			if (task_add(p, s, r, u, -1, b) != 0)
				return -1;
			for (int d = N * gpn; d < (N + 1) * gpn; d++)
				if (task_add(p, r, d, UG(s, d), b, -1) != 0)
					return -1;
		}
#undef UG
	return 0;
}

static void start_task(struct plan *p, struct sim_net *net, int i, double t_s)
{
	struct sim_path path;
	struct task *k = &p->t[i];
	enum moe_status st;

	sim_topo_route(p->topo, k->src, k->dst, &path);
	st = sim_net_add(net, &path, k->units * p->bpt, t_s, i, NULL);
	if (st != MOE_OK && p->err == MOE_OK)
		p->err = st;
}

static void task_done(void *user, struct sim_net *net, int flow, int64_t tag, double t_s)
{
	struct plan *p = user;
	struct task *k = &p->t[tag];
	int b = k->out_b;

	(void)flow;
	if (p->finish != NULL && b < 0 && t_s > p->finish[k->dst])
		p->finish[k->dst] = t_s;
	if (b >= 0 && --p->wait[b] == 0)
		for (int j = p->soff[b]; j < p->soff[b + 1]; j++)
			start_task(p, net, p->succ[j], t_s);
}

enum moe_status sim_a2a_run(struct sim_net *net, const struct sim_topo *t,
			    const struct sim_traffic *tr, const struct sim_a2a_opts *o,
			    double *gpu_finish_s, struct sim_a2a_result *res)
{
	struct plan p;
	enum moe_status st = MOE_OK;
	double best = -1;

	if (tr->gpus != t->gpus || tr->gpus_per_node != t->gpus_per_node)
		MOE_FAIL(MOE_EINVAL, "all-to-all: traffic of %d GPUs (%d per node) on a cluster of %d (%d per node)",
			 tr->gpus, tr->gpus_per_node, t->gpus, t->gpus_per_node);
	if (!(o->bytes_per_token >= 0) || !isfinite(o->bytes_per_token))
		MOE_FAIL(MOE_EINVAL, "all-to-all: bytes per token %g must be >= 0", o->bytes_per_token);
	memset(&p, 0, sizeof p);
	memset(res, 0, sizeof *res);
	p.topo = t;
	p.bpt = o->bytes_per_token;
	p.finish = gpu_finish_s;
	if (gpu_finish_s != NULL)
		for (int g = 0; g < t->gpus; g++)
			gpu_finish_s[g] = 0;
	if (build(&p, tr, o) != 0) {
		st = moe_error(MOE_ENOMEM, "all-to-all: out of memory for %d transfers", p.n);
		goto out;
	}
	if (o->combine)
		for (int i = 0; i < p.n; i++) {
			struct task *k = &p.t[i];
			int x = k->src, b = k->in_b;
			k->src = k->dst;
			k->dst = x;
			k->in_b = k->out_b;
			k->out_b = b;
		}
	p.wait = calloc((size_t)p.nbar + 1, sizeof(int));
	p.soff = calloc((size_t)p.nbar + 2, sizeof(int));
	p.succ = malloc(((size_t)p.n + 1) * sizeof(int));
	if (p.wait == NULL || p.soff == NULL || p.succ == NULL) {
		st = moe_error(MOE_ENOMEM, "all-to-all: out of memory for %d transfers", p.n);
		goto out;
	}
	for (int i = 0; i < p.n; i++) {
		if (p.t[i].out_b >= 0)
			p.wait[p.t[i].out_b]++;
		if (p.t[i].in_b >= 0)
			p.soff[p.t[i].in_b + 1]++;
	}
	for (int b = 0; b < p.nbar; b++)
		p.soff[b + 1] += p.soff[b];
	{
		int *cur = malloc(((size_t)p.nbar + 1) * sizeof(int));
		if (cur == NULL) {
			st = moe_error(MOE_ENOMEM, "all-to-all: out of memory");
			goto out;
		}
		memcpy(cur, p.soff, (size_t)p.nbar * sizeof(int));
		for (int i = 0; i < p.n; i++)
			if (p.t[i].in_b >= 0)
				p.succ[cur[p.t[i].in_b]++] = i;
		free(cur);
	}
	sim_net_reset(net);
	for (int i = 0; i < p.n; i++) {
		struct task *k = &p.t[i];
		double bytes = k->units * p.bpt;
		res->bytes += bytes;
		if (k->src / t->gpus_per_node != k->dst / t->gpus_per_node)
			res->network_bytes += bytes;
		else
			res->intra_bytes += bytes;
		if (k->in_b < 0 || p.wait[k->in_b] == 0)
			start_task(&p, net, i, 0);
	}
	if (p.err != MOE_OK) {
		st = p.err;
		goto out;
	}
	if ((st = sim_net_run(net, task_done, &p)) != MOE_OK)
		goto out;
	if (p.err != MOE_OK) {
		st = p.err;
		goto out;
	}
	res->flows = (uint64_t)p.n;
	res->completion_s = sim_net_now(net);
	res->bottleneck_link = -1;
	for (int l = 0; l < t->nlinks; l++) {
		double x = sim_net_link_bytes(net, l) / t->links[l].bw_Bps;
		if (x > best && sim_net_link_bytes(net, l) > 0) {
			best = x;
			res->bottleneck_link = l;
		}
	}
	if (res->bottleneck_link >= 0) {
		res->bottleneck_bytes = sim_net_link_bytes(net, res->bottleneck_link);
		res->bottleneck_util = res->completion_s > 0 ? best / res->completion_s : 0;
	}
out:
	free(p.t);
	free(p.wait);
	free(p.soff);
	free(p.succ);
	return st;
}

enum moe_status sim_a2a_bound(const struct sim_topo *t, const struct sim_traffic *tr,
			      const struct sim_a2a_opts *o, double *gpu_finish_s, double *link_bytes,
			      struct sim_a2a_result *res)
{
	struct plan p;
	double *lb = link_bytes, lat[3] = {0, 0, 0}, best = -1;
	enum moe_status st = MOE_OK;

	if (tr->gpus != t->gpus || tr->gpus_per_node != t->gpus_per_node)
		MOE_FAIL(MOE_EINVAL, "all-to-all: traffic of %d GPUs (%d per node) on a cluster of %d (%d per node)",
			 tr->gpus, tr->gpus_per_node, t->gpus, t->gpus_per_node);
	if (!(o->bytes_per_token >= 0) || !isfinite(o->bytes_per_token))
		MOE_FAIL(MOE_EINVAL, "all-to-all: bytes per token %g must be >= 0", o->bytes_per_token);
	memset(&p, 0, sizeof p);
	memset(res, 0, sizeof *res);
	if (lb == NULL && (lb = malloc((size_t)t->nlinks * sizeof *lb)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "all-to-all: out of memory");
	for (int l = 0; l < t->nlinks; l++)
		lb[l] = 0;
	if (build(&p, tr, o) != 0) {
		st = moe_error(MOE_ENOMEM, "all-to-all: out of memory for %d transfers", p.n);
		goto out;
	}
	for (int i = 0; i < p.n; i++) {
		struct task *k = &p.t[i];
		struct sim_path path;
		double bytes = k->units * o->bytes_per_token;
		/* stage: 0 first (waits on nothing), 2 last (feeds nothing), 1
		 * middle; combine runs every transfer backwards */
		int in_b = o->combine ? k->out_b : k->in_b, out_b = o->combine ? k->in_b : k->out_b;
		int stage = in_b < 0 ? 0 : out_b < 0 ? 2 : 1;
		sim_topo_route(t, o->combine ? k->dst : k->src, o->combine ? k->src : k->dst, &path);
		for (int j = 0; j < path.n; j++)
			lb[path.link[j]] += bytes;
		if (path.lat_s > lat[stage])
			lat[stage] = path.lat_s;
		res->bytes += bytes;
		if (k->src / t->gpus_per_node != k->dst / t->gpus_per_node)
			res->network_bytes += bytes;
		else
			res->intra_bytes += bytes;
	}
	res->flows = (uint64_t)p.n;
	res->bottleneck_link = -1;
	for (int l = 0; l < t->nlinks; l++) {
		double x = lb[l] / t->links[l].bw_Bps;
		if (lb[l] > 0 && x > best) {
			best = x;
			res->bottleneck_link = l;
		}
	}
	if (res->bottleneck_link >= 0) {
		res->completion_s = best + lat[0] + lat[1] + lat[2];
		res->bottleneck_bytes = lb[res->bottleneck_link];
		res->bottleneck_util = best / res->completion_s;
	}
	if (gpu_finish_s != NULL)
		for (int g = 0; g < t->gpus; g++)
			gpu_finish_s[g] = 0;
	if (gpu_finish_s != NULL)
		for (int i = 0; i < p.n; i++)
			if ((o->combine ? p.t[i].in_b : p.t[i].out_b) < 0)
				gpu_finish_s[o->combine ? p.t[i].src : p.t[i].dst] = res->completion_s;
out:
	if (lb != link_bytes)
		free(lb);
	free(p.t);
	return st;
}
