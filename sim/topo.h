/* sim/topo.h: the cluster as a graph of directed links, built from a
 * struct moe_cluster, and the routes flows take through it.
 *
 * What is modelled (every link is one direction, with a bandwidth and a
 * latency; bandwidth = nominal x efficiency from the cluster spec):
 *
 *   inside a node
 *     nvswitch   each GPU has one port up (GPU -> switch) and one down
 *                (switch -> GPU) of intra.bw; the switch itself does not
 *                block.  GPU a -> b: up(a), down(b).
 *     nvlink-mesh  one link per ordered GPU pair, intra.bw / (G-1) each (the
 *                GPU's links split evenly over its peers).  a -> b: mesh(a,b).
 *     pcie       GPUs sit under PCIe switches, one switch per NIC (or one per
 *                node without NICs); each GPU has a PCIe link up and down to
 *                its switch, each switch one up and one down to the root
 *                complex, all of intra.bw.  Same switch: gpu_up(a),
 *                gpu_down(b); else gpu_up(a), sw_up(A), sw_down(B), gpu_down(b).
 *
 *   NICs: node n has nic.count NICs; NIC i serves the GPUs i*G/nics ..
 *   (i+1)*G/nics - 1 (its rail).  Each NIC has an up link (into the fabric)
 *   and a down link.  On PCIe nodes a network transfer also crosses the GPU's
 *   PCIe link (GPU -> switch -> NIC); on NVSwitch/mesh nodes the GPU -> NIC
 *   PCIe hop (GPUDirect RDMA over a dedicated x16 link, faster than the NIC)
 *   is not modelled.
 *
 *   between nodes
 *     non-blocking  nic_up(a) -> nic_down(b): only the NICs limit.
 *     fat-tree   leaves of fabric.nodes_per_leaf nodes (all their NICs); a
 *                leaf has U = nodes_per_leaf x nics / oversubscription
 *                uplinks (rounded, at least 1), together carrying the
 *                downlink capacity / oversubscription, one to each of U
 *                spines, each direction.  Same leaf: nic_up, nic_down;
 *                else nic_up, leaf_up(A, s), leaf_down(B, s), nic_down.
 *     rail       one leaf per (rail, group of nodes_per_leaf nodes): NIC i
 *                of every node in the group plugs into leaf (group, i).
 *                Same rail and group: nic_up, nic_down (one switch hop);
 *                cross-rail or cross-group through a spine as in the fat
 *                tree (non-blocking: U = nodes_per_leaf uplinks of one NIC's
 *                bandwidth).  Sending cross-rail traffic to the same-rail
 *                GPU and forwarding over NVLink is a collective algorithm
 *                (sim/a2a.h), not a route.
 *
 * Equal-cost paths (the spine): with SIM_MULTIPATH_ECMP a flow takes spine
 * s = hash(src, dst) mod U, so two heavy flows may land on one uplink while
 * another idles, as on real RoCE/InfiniBand fabrics with static ECMP; with
 * SIM_MULTIPATH_SPRAY (adaptive routing, packet spraying) the U uplinks of
 * a leaf are one link of their summed bandwidth, i.e. perfectly balanced.
 *
 * Latency of a route: one transfer latency (intra.latency inside a node,
 * nic.latency between nodes) plus fabric.switch_latency per switch crossed
 * (1 for same-leaf, 3 through a spine).  The latency a link shows (lat_s) is
 * its share of that for display; routes add the pieces as said here.
 *
 * Node groups (struct moe_node_group): every node is built from its own
 * group's intra kind, bandwidth and latency and its own NIC count,
 * bandwidth and latency, and its routes are the ones above for its kind; a
 * PCIe node's network transfers cross its PCIe links whatever the other
 * end is.  Between two nodes the transfer latency is the larger of the two
 * nic.latency values (the slower end sets it).  A fat-tree leaf gets as many
 * uplinks as the leaf with the most NIC ports would (nodes_per_leaf x the
 * largest NIC count / oversubscription), carrying together the sum over
 * its nodes of NICs x NIC bandwidth / oversubscription; a rail leaf the sum
 * of its nodes' NIC bandwidths (both as before when the nodes agree; the
 * slots of a last, partial leaf count as its last node, also as before).
 * A rail fabric needs the same NIC count on every node.  Example: node 0 a
 * DGX H100 (8 NICs of 45 GB/s effective, latency 5 us), node 1 a PCIe node
 * of 8 GPUs (PCIe 25.6 GB/s effective, 2 NICs of 22.5 GB/s, 8 us), one leaf
 * with 0.5 us switches: 1 GB from GPU 0 to GPU 8 crosses n0.nic0.up,
 * n1.nic0.down and n1.g0.pcie.down and takes max(5, 8) us + 0.5 us +
 * 1e9 / min(45e9, 22.5e9, 25.6e9) s = 44.45 ms.
 *
 * Slowdowns: a link's bandwidth may be divided by a factor (a degraded
 * link), a GPU's compute by another (a straggler; read by sim/compute.h).
 */
#ifndef MOEKIT_SIM_TOPO_H
#define MOEKIT_SIM_TOPO_H

#include "moe/error.h"
#include "moe/model.h"

#define SIM_PATH_MAX 8
#define SIM_LINK_NAME_MAX 32

enum sim_link_kind { SIM_LINK_NVLINK, SIM_LINK_PCIE, SIM_LINK_NIC, SIM_LINK_SWITCH };
enum sim_multipath { SIM_MULTIPATH_ECMP, SIM_MULTIPATH_SPRAY };

struct sim_link {
	double bw_Bps;       /* effective bandwidth, bytes per second */
	double lat_s;        /* latency this link contributes, seconds (display) */
	enum sim_link_kind kind;
	int network;         /* 1 for links between nodes (NIC and switch links) */
	char name[SIM_LINK_NAME_MAX]; /* "n0.g3.nvl.up", "n2.nic1.down", "leaf0.up5" */
};

/* A route: the links a flow crosses, in order, and its latency. */
struct sim_path {
	int n;                       /* 0 for a GPU to itself; at most SIM_PATH_MAX - 1 */
	int link[SIM_PATH_MAX];
	double lat_s;
};

/* One node as built: its kind's figures and where its links are. */
struct sim_node {
	int kind;                  /* its node group (moe_cluster_kind_of), 0 without */
	enum moe_intra_kind intra;
	int nics;
	double intra_Bps, nic_Bps; /* effective: nominal x efficiency, bytes per second */
	double intra_lat_s, nic_lat_s;
	int intra_base;            /* its first GPU link (2 per GPU; G-1 per GPU on a mesh) */
	int sw_base;               /* PCIe nodes: its first PCIe switch link (2 per switch) */
	int nic_base;              /* its first NIC link (2 per NIC) */
};

struct sim_topo {
	int nodes, gpus_per_node, gpus;
	int nics;                  /* the most NICs of any node (the rails of a rail fabric) */
	struct sim_node *node;     /* nodes, owned */
	enum moe_fabric_kind fabric;
	enum sim_multipath multipath;
	int nodes_per_leaf;        /* nodes under one leaf (all of them when non-blocking) */
	int leaves, uplinks;       /* uplinks per leaf (1 when spraying; 0 with one leaf) */
	int nlinks;
	struct sim_link *links;    /* nlinks, owned */
	double *gpu_slowdown;      /* gpus, >= 1 (compute time multiplier) */
	double switch_lat_s;
	/* first index of each link family (internal layout, see topo.c) */
	int base_intra, base_sw, base_nic, base_leaf;
};

/* Marks in dom (t->nlinks entries, 1 or 0) the links whose sharing a
 * max-min solution can leave out: every flow through such a link also
 * crosses one of a set of links whose bandwidths add up to no more than its
 * own, so no allocation the others admit can overfill it, and the max-min
 * rates are the same with it or without it.  These are the uplinks of a
 * leaf that is not oversubscribed, one per leaf (spraying): what goes up
 * comes from the leaf's NICs, what comes down goes to them.  Reads the
 * links' current bandwidths (slowdowns included). */
void sim_topo_dominated(const struct sim_topo *t, unsigned char *dom);

/* Builds the topology of cluster c: its first c->nodes nodes, each of its
 * node group's kind.  Returns MOE_OK and *out (free with sim_topo_free);
 * MOE_EINVAL when a bandwidth or efficiency is zero or negative, NICs are
 * missing or do not divide the GPUs, the node groups hold fewer than
 * c->nodes nodes or differ in NIC count on a rail fabric, or the cluster is
 * too large for the link indices (message names the group and field);
 * MOE_ENOMEM. */
enum moe_status sim_topo_new(const struct moe_cluster *c, enum sim_multipath mp,
			     struct sim_topo **out);

/* Frees t; NULL is a no-op. */
void sim_topo_free(struct sim_topo *t);

/* Computes the route from GPU src to GPU dst (ranks node-major) into *out.
 * Returns MOE_OK or MOE_EINVAL for a rank outside 0..gpus-1.  Pure. */
enum moe_status sim_topo_route(const struct sim_topo *t, int src, int dst, struct sim_path *out);

/* Node of a GPU, and the NIC (0..nics-1 of its node) that serves it, -1
 * on a node without NICs. */
static inline int sim_topo_node(const struct sim_topo *t, int gpu)
{
	return gpu / t->gpus_per_node;
}
int sim_topo_nic_of(const struct sim_topo *t, int gpu);

/* Index of the link called name, or -1. */
int sim_topo_link_find(const struct sim_topo *t, const char *name);

/* Divides link's bandwidth by factor (>= 1 slows it down).  MOE_EINVAL for
 * a bad index or a factor not > 0. */
enum moe_status sim_topo_slow_link(struct sim_topo *t, int link, double factor);

/* Multiplies GPU gpu's compute times by factor.  MOE_EINVAL as above. */
enum moe_status sim_topo_slow_gpu(struct sim_topo *t, int gpu, double factor);

/* Name of a link kind: "nvlink", "pcie", "nic", "switch" (the store's). */
const char *sim_link_kind_name(enum sim_link_kind k);

#endif
