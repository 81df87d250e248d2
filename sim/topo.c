/* sim/topo.c: building the link graph of a cluster and computing routes.
 * See topo.h for the model.  Link indices are laid out by family so a route
 * is arithmetic, not a search:
 *
 *   base_intra  nvswitch/pcie: 2 per GPU (up, down); mesh: G-1 per GPU
 *   base_sw     pcie only: 2 per PCIe switch (up to root, down from root)
 *   base_nic    2 per NIC (up, down)
 *   base_leaf   2 per leaf uplink (leaf -> spine, spine -> leaf)
 */
#include "config.h"
#include "sim/topo.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int pcie_switches(const struct sim_topo *t)
{
	return t->nics > 0 ? t->nics : 1;
}

int sim_topo_nic_of(const struct sim_topo *t, int gpu)
{
	int local = gpu % t->gpus_per_node;

	return t->nics > 0 ? (int)((long)local * t->nics / t->gpus_per_node) : -1;
}

static int leaf_of(const struct sim_topo *t, int node, int nic, int npl)
{
	if (t->fabric == MOE_FABRIC_RAIL)
		return (node / npl) * t->nics + nic;
	if (t->fabric == MOE_FABRIC_FAT_TREE)
		return node / npl;
	return 0;
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

enum moe_status sim_topo_new(const struct moe_cluster *c, enum sim_multipath mp,
			     struct sim_topo **out)
{
	struct sim_topo *t;
	int G = c->gpus_per_node, N = c->nodes, npl, groups;
	long nl;
	double intra_bw = c->intra_Bps * c->intra_efficiency;
	double nic_bw = c->nic_Bps * c->nic_efficiency;

	if (N < 1 || G < 1)
		MOE_FAIL(MOE_EINVAL, "cluster %s: nodes and gpus_per_node must be at least 1", c->name);
	if (!(intra_bw > 0) || !isfinite(intra_bw))
		MOE_FAIL(MOE_EINVAL, "cluster %s: intra.bw x intra.efficiency must be positive, got %g",
			 c->name, intra_bw);
	if (c->nics > 0 && (!(nic_bw > 0) || !isfinite(nic_bw)))
		MOE_FAIL(MOE_EINVAL, "cluster %s: nic.bw x nic.efficiency must be positive, got %g",
			 c->name, nic_bw);
	if (N > 1 && c->nics < 1)
		MOE_FAIL(MOE_EINVAL, "cluster %s: %d nodes need at least one NIC each", c->name, N);
	if (c->nics > 0 && G % c->nics != 0)
		MOE_FAIL(MOE_EINVAL, "cluster %s: nic.count %d does not divide %d GPUs per node",
			 c->name, c->nics, G);
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
	t->nics = c->nics;
	t->intra = c->intra;
	t->fabric = c->fabric;
	t->multipath = mp;
	t->intra_lat_s = c->intra_lat_s;
	t->nic_lat_s = c->nic_lat_s;
	t->switch_lat_s = c->switch_lat_s;
	npl = c->fabric == MOE_FABRIC_NONBLOCKING ? N : c->nodes_per_leaf;
	t->nodes_per_leaf = npl;
	groups = (N + npl - 1) / npl;
	t->leaves = c->fabric == MOE_FABRIC_RAIL ? groups * (c->nics > 0 ? c->nics : 1)
		  : c->fabric == MOE_FABRIC_FAT_TREE ? groups : 1;
	t->uplinks = 0;
	if (t->leaves > 1 && c->nics > 0) {
		double ports = c->fabric == MOE_FABRIC_RAIL ? npl : (double)npl * c->nics;
		double u = floor(ports / c->oversubscription + 0.5);
		t->uplinks = mp == SIM_MULTIPATH_SPRAY ? 1 : (u < 1 ? 1 : (int)u);
	}
	nl = 0;
	t->base_intra = 0;
	nl += c->intra == MOE_INTRA_NVLINK_MESH ? (long)t->gpus * (G - 1) : 2L * t->gpus;
	t->base_sw = (int)nl;
	if (c->intra == MOE_INTRA_PCIE)
		nl += 2L * N * pcie_switches(t);
	t->base_nic = (int)nl;
	nl += 2L * N * c->nics;
	t->base_leaf = (int)nl;
	nl += 2L * t->leaves * t->uplinks;
	if (nl > INT_MAX / 2) {
		free(t);
		MOE_FAIL(MOE_EINVAL, "cluster %s: %ld links is too many", c->name, nl);
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
	for (int n = 0; n < N; n++)
		for (int a = 0; a < G; a++) {
			int g = n * G + a;
			if (c->intra == MOE_INTRA_NVLINK_MESH) {
				for (int b = 0; b < G; b++)
					if (b != a)
						set_link(t, g * (G - 1) + (b < a ? b : b - 1),
							 intra_bw / (G - 1), c->intra_lat_s, SIM_LINK_NVLINK,
							 0, "n%d.g%d.nvl.g%d", n, a, b);
			} else {
				enum sim_link_kind k = c->intra == MOE_INTRA_PCIE ? SIM_LINK_PCIE
										   : SIM_LINK_NVLINK;
				const char *fu = k == SIM_LINK_PCIE ? "n%d.g%d.pcie.up%.0d"
								    : "n%d.g%d.nvl.up%.0d";
				const char *fd = k == SIM_LINK_PCIE ? "n%d.g%d.pcie.down%.0d"
								    : "n%d.g%d.nvl.down%.0d";
				set_link(t, 2 * g, intra_bw, c->intra_lat_s, k, 0, fu, n, a, 0);
				set_link(t, 2 * g + 1, intra_bw, 0, k, 0, fd, n, a, 0);
			}
		}
	if (c->intra == MOE_INTRA_PCIE)
		for (int n = 0; n < N; n++)
			for (int s = 0; s < pcie_switches(t); s++) {
				int i = t->base_sw + 2 * (n * pcie_switches(t) + s);
				set_link(t, i, intra_bw, 0, SIM_LINK_PCIE, 0, "n%d.psw%d.up%.0d", n, s, 0);
				set_link(t, i + 1, intra_bw, 0, SIM_LINK_PCIE, 0, "n%d.psw%d.down%.0d", n, s, 0);
			}
	for (int n = 0; n < N; n++)
		for (int i = 0; i < c->nics; i++) {
			int l = t->base_nic + 2 * (n * c->nics + i);
			set_link(t, l, nic_bw, c->nic_lat_s + c->switch_lat_s, SIM_LINK_NIC, 1,
				 "n%d.nic%d.up%.0d", n, i, 0);
			set_link(t, l + 1, nic_bw, 0, SIM_LINK_NIC, 1, "n%d.nic%d.down%.0d", n, i, 0);
		}
	if (t->uplinks > 0) {
		double ports = c->fabric == MOE_FABRIC_RAIL ? npl : (double)npl * c->nics;
		double total = ports * nic_bw / (c->fabric == MOE_FABRIC_RAIL ? 1 : c->oversubscription);
		for (int lf = 0; lf < t->leaves; lf++)
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
	if (ns == nd) {
		p->lat_s = t->intra_lat_s;
		if (t->intra == MOE_INTRA_NVLINK_MESH) {
			p->link[p->n++] = t->base_intra + src * (G - 1) + (ld < ls ? ld : ld - 1);
		} else if (t->intra == MOE_INTRA_PCIE) {
			int nsw = pcie_switches(t);
			int a = ls * nsw / G, b = ld * nsw / G;
			p->link[p->n++] = 2 * src;
			if (a != b) {
				p->link[p->n++] = t->base_sw + 2 * (ns * nsw + a);
				p->link[p->n++] = t->base_sw + 2 * (ns * nsw + b) + 1;
			}
			p->link[p->n++] = 2 * dst + 1;
		} else {
			p->link[p->n++] = 2 * src;
			p->link[p->n++] = 2 * dst + 1;
		}
		return MOE_OK;
	}
	{
		int is = sim_topo_nic_of(t, src), id = sim_topo_nic_of(t, dst);
		int lfs = leaf_of(t, ns, is, t->nodes_per_leaf);
		int lfd = leaf_of(t, nd, id, t->nodes_per_leaf);
		int hops = 1;

		if (t->intra == MOE_INTRA_PCIE)
			p->link[p->n++] = 2 * src;
		p->link[p->n++] = t->base_nic + 2 * (ns * t->nics + is);
		if (lfs != lfd) {
			int s = t->uplinks > 1 ? (int)(ecmp_hash(src, dst) % (unsigned)t->uplinks) : 0;
			p->link[p->n++] = t->base_leaf + 2 * (lfs * t->uplinks + s);
			p->link[p->n++] = t->base_leaf + 2 * (lfd * t->uplinks + s) + 1;
			hops = 3;
		}
		p->link[p->n++] = t->base_nic + 2 * (nd * t->nics + id) + 1;
		if (t->intra == MOE_INTRA_PCIE)
			p->link[p->n++] = 2 * dst + 1;
		p->lat_s = t->nic_lat_s + hops * t->switch_lat_s;
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
