/* sim/topo.c: building the link graph of a cluster and computing routes.
 * See topo.h for the model.  Link indices are laid out by family so a route
 * is arithmetic, not a search:
 *
 *   base_intra  nvswitch/pcie: 2 per GPU (up, down); mesh: G-1 per GPU
 *   base_sw     pcie only: 2 per PCIe switch (up to root, down from root)
 *   base_nic    2 per NIC (up, down)
 *   base_leaf   2 per leaf uplink (leaf -> spine, spine -> leaf)
 *
 * node by node inside each family, each node's first link of a family in
 * its struct sim_node (nodes of different groups hold different numbers of
 * links; in a homogeneous cluster node n's are at base + n x per-node).
 */
#include "config.h"
#include "sim/topo.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int pcie_switches(const struct sim_node *nd)
{
	return nd->nics > 0 ? nd->nics : 1;
}

int sim_topo_nic_of(const struct sim_topo *t, int gpu)
{
	int local = gpu % t->gpus_per_node, nics = t->node[gpu / t->gpus_per_node].nics;

	return nics > 0 ? (int)((long)local * nics / t->gpus_per_node) : -1;
}

static int leaf_of(const struct sim_topo *t, int node, int nic, int npl)
{
	if (t->fabric == MOE_FABRIC_RAIL)
		return (node / npl) * t->nics + nic;
	if (t->fabric == MOE_FABRIC_FAT_TREE)
		return node / npl;
	return 0;
}

void sim_topo_dominated(const struct sim_topo *t, unsigned char *dom)
{
	double *sum;

	memset(dom, 0, (size_t)t->nlinks);
	/* with several uplinks a leaf's flows are hashed over them: one
	 * uplink carries a share of its NICs' traffic, not a bound of it */
	if (t->leaves < 1 || t->uplinks != 1)
		return;
	if ((sum = calloc(2 * (size_t)t->leaves, sizeof *sum)) == NULL)
		return; /* nothing marked: the solve just does more work */
	for (int n = 0; n < t->nodes; n++)
		for (int i = 0; i < t->node[n].nics; i++) {
			int lf = leaf_of(t, n, i, t->nodes_per_leaf), l = t->node[n].nic_base + 2 * i;
			sum[2 * lf] += t->links[l].bw_Bps;
			sum[2 * lf + 1] += t->links[l + 1].bw_Bps;
		}
	for (int lf = 0; lf < t->leaves; lf++)
		for (int d = 0; d < 2; d++) {
			int l = t->base_leaf + 2 * lf + d;
			dom[l] = sum[2 * lf + d] <= t->links[l].bw_Bps;
		}
	free(sum);
}

static void set_link(struct sim_topo *t, int i, double bw, double lat, enum sim_link_kind k,
		     int network, const char *fmt, int a, int b, int c)
{
	struct sim_link *l = &t->links[i];

	l->bw_Bps = bw;
	l->lat_s = lat;
	l->kind = k;
	l->network = network;
	/* names are short for any cluster the checks above admit; a longer one
	 * would only be cut */
	if (snprintf(l->name, sizeof l->name, fmt, a, b, c) >= (int)sizeof l->name)
		l->name[sizeof l->name - 1] = '\0';
}

/* Checks one kind of node; pre names its group in messages ("" or
 * "group NAME: "). */
static enum moe_status check_kind(const struct moe_cluster *c, const struct moe_node_group *k,
				  const char *pre)
{
	double intra_bw = k->intra_Bps * k->intra_efficiency;
	double nic_bw = k->nic_Bps * k->nic_efficiency;

	if (!(intra_bw > 0) || !isfinite(intra_bw))
		MOE_FAIL(MOE_EINVAL, "cluster %s: %sintra.bw x intra.efficiency must be positive, got %g",
			 c->name, pre, intra_bw);
	if (k->nics > 0 && (!(nic_bw > 0) || !isfinite(nic_bw)))
		MOE_FAIL(MOE_EINVAL, "cluster %s: %snic.bw x nic.efficiency must be positive, got %g",
			 c->name, pre, nic_bw);
	if (c->nodes > 1 && k->nics < 1)
		MOE_FAIL(MOE_EINVAL, "cluster %s: %s%d nodes need at least one NIC each", c->name, pre,
			 c->nodes);
	if (k->nics > 0 && c->gpus_per_node % k->nics != 0)
		MOE_FAIL(MOE_EINVAL, "cluster %s: %snic.count %d does not divide %d GPUs per node",
			 c->name, pre, k->nics, c->gpus_per_node);
	return MOE_OK;
}

/* What leaf lf's uplinks carry together, bytes per second: over its
 * nodes_per_leaf slots (the empty ones of a last, partial leaf counted as
 * its last node), the NIC ports plugged into it times their bandwidth,
 * divided by the oversubscription (fat tree).  Summed by runs of equal
 * nodes so that a leaf of one kind gets ports x bandwidth exactly. */
static double leaf_capacity(const struct sim_topo *t, int lf, double oversub)
{
	int npl = t->nodes_per_leaf, rail = t->fabric == MOE_FABRIC_RAIL;
	int first = (rail ? lf / t->nics : lf) * npl;
	double total = 0;
	int run = 0;
	const struct sim_node *prev = NULL;

	for (int j = 0; j <= npl; j++) {
		const struct sim_node *nd = NULL;
		if (j < npl)
			nd = &t->node[first + j < t->nodes ? first + j : t->nodes - 1];
		if (prev != NULL && (nd == NULL || nd->nics != prev->nics || nd->nic_Bps != prev->nic_Bps)) {
			total += rail ? (double)run * prev->nic_Bps
				      : (double)run * prev->nics * prev->nic_Bps;
			run = 0;
		}
		prev = nd;
		run++;
	}
	return total / (rail ? 1 : oversub);
}

enum moe_status sim_topo_new(const struct moe_cluster *c, enum sim_multipath mp,
			     struct sim_topo **out)
{
	struct sim_topo *t;
	int G = c->gpus_per_node, N = c->nodes, npl, lgroups, K = moe_cluster_kinds(c);
	long nl, have = 0;
	struct moe_node_group kinds[MOE_NODE_GROUPS_MAX];
	char pre[MOE_NAME_MAX + 16];
	enum moe_status st;

	if (N < 1 || G < 1)
		MOE_FAIL(MOE_EINVAL, "cluster %s: nodes and gpus_per_node must be at least 1", c->name);
	if (c->ngroups < 0 || c->ngroups > MOE_NODE_GROUPS_MAX)
		MOE_FAIL(MOE_EINVAL, "cluster %s: %d node groups: expected 0 to %d", c->name, c->ngroups,
			 MOE_NODE_GROUPS_MAX);
	for (int k = 0; k < K; k++) {
		moe_cluster_kind(c, k, &kinds[k]);
		snprintf(pre, sizeof pre, "%s%.*s%s", c->ngroups ? "group " : "", MOE_NAME_MAX - 1,
			 kinds[k].name, c->ngroups ? ": " : "");
		if ((st = check_kind(c, &kinds[k], pre)) != MOE_OK)
			return st;
		if (c->fabric == MOE_FABRIC_RAIL && kinds[k].nics != kinds[0].nics)
			MOE_FAIL(MOE_EINVAL, "cluster %s: %snic.count %d, but %d in group %s: a rail fabric "
				 "needs the same NIC count on every node", c->name, pre, kinds[k].nics,
				 kinds[0].nics, kinds[0].name);
		have += kinds[k].nodes;
	}
	if (c->ngroups > 0 && have < N)
		MOE_FAIL(MOE_EINVAL, "cluster %s: %d nodes, but its node groups hold %ld", c->name, N, have);
	if ((long)N * G > 1000000)
		MOE_FAIL(MOE_EINVAL, "cluster %s: %ld GPUs is more than the simulator's 1000000",
			 c->name, (long)N * G);
	if (c->fabric != MOE_FABRIC_NONBLOCKING && (c->nodes_per_leaf < 1 || !(c->oversubscription >= 1)))
		MOE_FAIL(MOE_EINVAL, "cluster %s: fabric.nodes_per_leaf must be >= 1 and "
			 "fabric.oversubscription >= 1", c->name);
	if ((t = calloc(1, sizeof *t)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "topology: out of memory");
	t->nodes = N;
	t->gpus_per_node = G;
	t->gpus = N * G;
	t->fabric = c->fabric;
	t->multipath = mp;
	t->switch_lat_s = c->switch_lat_s;
	if ((t->node = calloc((size_t)N, sizeof *t->node)) == NULL) {
		free(t);
		MOE_FAIL(MOE_ENOMEM, "topology: out of memory for %d nodes", N);
	}
	/* the nodes, and their links laid out family by family (see above) */
	nl = 0;
	t->nics = 0;
	for (int n = 0; n < N; n++) {
		struct sim_node *nd = &t->node[n];
		const struct moe_node_group *k = &kinds[moe_cluster_kind_of(c, n)];
		nd->kind = moe_cluster_kind_of(c, n);
		nd->intra = k->intra;
		nd->nics = k->nics;
		nd->intra_Bps = k->intra_Bps * k->intra_efficiency;
		nd->nic_Bps = k->nic_Bps * k->nic_efficiency;
		nd->intra_lat_s = k->intra_lat_s;
		nd->nic_lat_s = k->nic_lat_s;
		nd->intra_base = (int)nl;
		nl += k->intra == MOE_INTRA_NVLINK_MESH ? (long)G * (G - 1) : 2L * G;
		if (nl > INT_MAX / 2)
			break;
		if (k->nics > t->nics)
			t->nics = k->nics;
	}
	t->base_intra = 0;
	t->base_sw = (int)(nl < INT_MAX / 2 ? nl : 0);
	for (int n = 0; n < N && nl <= INT_MAX / 2; n++)
		if (t->node[n].intra == MOE_INTRA_PCIE) {
			t->node[n].sw_base = (int)nl;
			nl += 2L * pcie_switches(&t->node[n]);
		}
	t->base_nic = (int)(nl < INT_MAX / 2 ? nl : 0);
	for (int n = 0; n < N && nl <= INT_MAX / 2; n++) {
		t->node[n].nic_base = (int)nl;
		nl += 2L * t->node[n].nics;
	}
	npl = c->fabric == MOE_FABRIC_NONBLOCKING ? N : c->nodes_per_leaf;
	t->nodes_per_leaf = npl;
	lgroups = (N + npl - 1) / npl;
	t->leaves = c->fabric == MOE_FABRIC_RAIL ? lgroups * (t->nics > 0 ? t->nics : 1)
		  : c->fabric == MOE_FABRIC_FAT_TREE ? lgroups : 1;
	t->uplinks = 0;
	if (t->leaves > 1 && t->nics > 0) {
		double ports = c->fabric == MOE_FABRIC_RAIL ? npl : (double)npl * t->nics;
		double u = floor(ports / c->oversubscription + 0.5);
		t->uplinks = mp == SIM_MULTIPATH_SPRAY ? 1 : (u < 1 ? 1 : (int)u);
	}
	t->base_leaf = (int)(nl < INT_MAX / 2 ? nl : 0);
	nl += 2L * t->leaves * t->uplinks;
	if (nl > INT_MAX / 2) {
		sim_topo_free(t);
		MOE_FAIL(MOE_EINVAL, "cluster %s: %ld links or more is too many", c->name, nl);
	}
	t->nlinks = (int)nl;
	t->links = calloc((size_t)(nl > 0 ? nl : 1), sizeof *t->links);
	t->gpu_slowdown = malloc((size_t)t->gpus * sizeof *t->gpu_slowdown);
	if (t->links == NULL || t->gpu_slowdown == NULL) {
		sim_topo_free(t);
		MOE_FAIL(MOE_ENOMEM, "topology: out of memory for %ld links", nl);
	}
	for (int g = 0; g < t->gpus; g++)
		t->gpu_slowdown[g] = 1;
	for (int n = 0; n < N; n++) {
		const struct sim_node *nd = &t->node[n];
		for (int a = 0; a < G; a++) {
			int i = nd->intra_base;
			if (nd->intra == MOE_INTRA_NVLINK_MESH) {
				for (int b = 0; b < G; b++)
					if (b != a)
						set_link(t, i + a * (G - 1) + (b < a ? b : b - 1),
							 nd->intra_Bps / (G - 1), nd->intra_lat_s,
							 SIM_LINK_NVLINK, 0, "n%d.g%d.nvl.g%d", n, a, b);
			} else {
				enum sim_link_kind k = nd->intra == MOE_INTRA_PCIE ? SIM_LINK_PCIE
										   : SIM_LINK_NVLINK;
				const char *fu = k == SIM_LINK_PCIE ? "n%d.g%d.pcie.up%.0d"
								    : "n%d.g%d.nvl.up%.0d";
				const char *fd = k == SIM_LINK_PCIE ? "n%d.g%d.pcie.down%.0d"
								    : "n%d.g%d.nvl.down%.0d";
				set_link(t, i + 2 * a, nd->intra_Bps, nd->intra_lat_s, k, 0, fu, n, a, 0);
				set_link(t, i + 2 * a + 1, nd->intra_Bps, 0, k, 0, fd, n, a, 0);
			}
		}
		if (nd->intra == MOE_INTRA_PCIE)
			for (int s = 0; s < pcie_switches(nd); s++) {
				int i = nd->sw_base + 2 * s;
				set_link(t, i, nd->intra_Bps, 0, SIM_LINK_PCIE, 0, "n%d.psw%d.up%.0d", n, s, 0);
				set_link(t, i + 1, nd->intra_Bps, 0, SIM_LINK_PCIE, 0, "n%d.psw%d.down%.0d", n,
					 s, 0);
			}
		for (int i = 0; i < nd->nics; i++) {
			int l = nd->nic_base + 2 * i;
			set_link(t, l, nd->nic_Bps, nd->nic_lat_s + c->switch_lat_s, SIM_LINK_NIC, 1,
				 "n%d.nic%d.up%.0d", n, i, 0);
			set_link(t, l + 1, nd->nic_Bps, 0, SIM_LINK_NIC, 1, "n%d.nic%d.down%.0d", n, i, 0);
		}
	}
	for (int lf = 0; lf < t->leaves && t->uplinks > 0; lf++) {
		double total = leaf_capacity(t, lf, c->oversubscription);
		for (int s = 0; s < t->uplinks; s++) {
			int l = t->base_leaf + 2 * (lf * t->uplinks + s);
			set_link(t, l, total / t->uplinks, c->switch_lat_s, SIM_LINK_SWITCH, 1,
				 "leaf%d.up%d%.0d", lf, s, 0);
			set_link(t, l + 1, total / t->uplinks, c->switch_lat_s, SIM_LINK_SWITCH, 1,
				 "leaf%d.down%d%.0d", lf, s, 0);
		}
	}
	*out = t;
	return MOE_OK;
}

void sim_topo_free(struct sim_topo *t)
{
	if (t == NULL)
		return;
	free(t->links);
	free(t->gpu_slowdown);
	free(t->node);
	free(t);
}

/* A fixed mix of the endpoints (splitmix64's finalizer): deterministic,
 * and spreading consecutive ranks over the spines the way a switch's hash
 * of addresses does, collisions included. */
static unsigned ecmp_hash(int src, int dst)
{
	uint64_t z = ((uint64_t)(unsigned)src << 32 | (unsigned)dst) + 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (unsigned)(z ^ (z >> 31));
}

enum moe_status sim_topo_route(const struct sim_topo *t, int src, int dst, struct sim_path *p)
{
	int G = t->gpus_per_node;
	int ns, nd, ls, ld;
	const struct sim_node *S, *D;

	if (src < 0 || src >= t->gpus || dst < 0 || dst >= t->gpus)
		MOE_FAIL(MOE_EINVAL, "route %d -> %d: GPU outside 0..%d", src, dst, t->gpus - 1);
	p->n = 0;
	p->lat_s = 0;
	if (src == dst)
		return MOE_OK;
	ns = src / G;
	nd = dst / G;
	ls = src % G;
	ld = dst % G;
	S = &t->node[ns];
	D = &t->node[nd];
	if (ns == nd) {
		p->lat_s = S->intra_lat_s;
		if (S->intra == MOE_INTRA_NVLINK_MESH) {
			p->link[p->n++] = S->intra_base + ls * (G - 1) + (ld < ls ? ld : ld - 1);
		} else if (S->intra == MOE_INTRA_PCIE) {
			int nsw = pcie_switches(S);
			int a = ls * nsw / G, b = ld * nsw / G;
			p->link[p->n++] = S->intra_base + 2 * ls;
			if (a != b) {
				p->link[p->n++] = S->sw_base + 2 * a;
				p->link[p->n++] = S->sw_base + 2 * b + 1;
			}
			p->link[p->n++] = S->intra_base + 2 * ld + 1;
		} else {
			p->link[p->n++] = S->intra_base + 2 * ls;
			p->link[p->n++] = S->intra_base + 2 * ld + 1;
		}
		return MOE_OK;
	}
	{
		int is = sim_topo_nic_of(t, src), id = sim_topo_nic_of(t, dst);
		int lfs = leaf_of(t, ns, is, t->nodes_per_leaf);
		int lfd = leaf_of(t, nd, id, t->nodes_per_leaf);
		int hops = 1;

		if (S->intra == MOE_INTRA_PCIE)
			p->link[p->n++] = S->intra_base + 2 * ls;
		p->link[p->n++] = S->nic_base + 2 * is;
		if (lfs != lfd) {
			int s = t->uplinks > 1 ? (int)(ecmp_hash(src, dst) % (unsigned)t->uplinks) : 0;
			p->link[p->n++] = t->base_leaf + 2 * (lfs * t->uplinks + s);
			p->link[p->n++] = t->base_leaf + 2 * (lfd * t->uplinks + s) + 1;
			hops = 3;
		}
		p->link[p->n++] = D->nic_base + 2 * id + 1;
		if (D->intra == MOE_INTRA_PCIE)
			p->link[p->n++] = D->intra_base + 2 * ld + 1;
		/* the slower end's latency (one value when the nodes agree) */
		p->lat_s = (S->nic_lat_s > D->nic_lat_s ? S->nic_lat_s : D->nic_lat_s) +
			   hops * t->switch_lat_s;
	}
	return MOE_OK;
}

int sim_topo_link_find(const struct sim_topo *t, const char *name)
{
	for (int i = 0; i < t->nlinks; i++)
		if (strcmp(t->links[i].name, name) == 0)
			return i;
	return -1;
}

enum moe_status sim_topo_slow_link(struct sim_topo *t, int link, double factor)
{
	if (link < 0 || link >= t->nlinks)
		MOE_FAIL(MOE_EINVAL, "slow link: index %d outside 0..%d", link, t->nlinks - 1);
	if (!(factor > 0) || !isfinite(factor))
		MOE_FAIL(MOE_EINVAL, "slow link %s: factor %g must be positive", t->links[link].name,
			 factor);
	t->links[link].bw_Bps /= factor;
	return MOE_OK;
}

enum moe_status sim_topo_slow_gpu(struct sim_topo *t, int gpu, double factor)
{
	if (gpu < 0 || gpu >= t->gpus)
		MOE_FAIL(MOE_EINVAL, "slow GPU: %d outside 0..%d", gpu, t->gpus - 1);
	if (!(factor > 0) || !isfinite(factor))
		MOE_FAIL(MOE_EINVAL, "slow GPU %d: factor %g must be positive", gpu, factor);
	t->gpu_slowdown[gpu] *= factor;
	return MOE_OK;
}

const char *sim_link_kind_name(enum sim_link_kind k)
{
	static const char *const names[] = {"nvlink", "pcie", "nic", "switch"};

	return (unsigned)k < 4 ? names[k] : "?";
}
