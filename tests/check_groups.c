/* tests/check_groups.c: node groups in a cluster ([group NAME] sections):
 * loading and inheritance, the per-node topology and routes with
 * hand-checked times, each GPU computing with its own group's figures, a
 * cluster without groups building exactly the topology it always did, and
 * every error the groups add. */
#include "config.h"
#include "tests/testutil.h"
#include "moe/error.h"
#include "moe/model.h"
#include "sim/compute.h"
#include "sim/net.h"
#include "sim/place.h"
#include "sim/step.h"
#include "sim/topo.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- files ---- */


static void assert_rel(double got, double want, double rel)
{
	ck_assert_msg(fabs(got - want) <= rel * fabs(want), "got %.17g, want %.17g (rel %.3g)", got,
		      want, fabs(got - want) / fabs(want));
}

/* A cluster of one fast node (4 GPUs of 800 TFLOP/s on NVSwitch, 4 NICs
 * of 50 GB/s, 4 us) and two slow ones (200 TFLOP/s on PCIe, one NIC of
 * 12.5 GB/s, 7 us); efficiencies 1 on links so that the figures are the
 * nominal ones.  Line numbers are used by the error tests: [group fast] is
 * line 23, [group slow] line 25. */
static const char cluster_head[] =
	"[cluster]\n"                      /* 1 */
	"name = two-kinds\n"               /* 2 */
	"gpus_per_node = 4\n"              /* 3 */
	"[gpu]\n"                          /* 4 */
	"type = fast\n"                    /* 5 */
	"flops_bf16 = 800TFLOP/s\n"        /* 6 */
	"hbm = 80GB\n"                     /* 7 */
	"hbm_bw = 3TB/s\n"                 /* 8 */
	"efficiency = 0.75\n"              /* 9 */
	"[intra]\n"                        /* 10 */
	"kind = nvswitch\n"                /* 11 */
	"bw = 400GB/s\n"                   /* 12 */
	"latency = 2us\n"                  /* 13 */
	"efficiency = 1\n"                 /* 14 */
	"[nic]\n"                          /* 15 */
	"count = 4\n"                      /* 16 */
	"bw = 400Gb/s\n"                   /* 17 */
	"latency = 4us\n"                  /* 18 */
	"efficiency = 1\n"                 /* 19 */
	"[fabric]\n"                       /* 20 */
	"kind = nonblocking\n"             /* 21 */
	"switch_latency = 1us\n";          /* 22 */

static const char groups_text[] =
	"[group fast]\n"                   /* 23 */
	"nodes = 1\n"                      /* 24 */
	"[group slow]\n"                   /* 25 */
	"nodes = 2\n"                      /* 26 */
	"gpu.type = slow\n"                /* 27 */
	"gpu.flops_bf16 = 200TFLOP/s\n"    /* 28 */
	"gpu.hbm_bw = 1.5TB/s\n"           /* 29 */
	"intra.kind = pcie\n"              /* 30 */
	"intra.bw = 32GB/s\n"              /* 31 */
	"intra.latency = 6us\n"            /* 32 */
	"nic.count = 1\n"                  /* 33 */
	"nic.bw = 100Gb/s\n"               /* 34 */
	"nic.latency = 7us\n";             /* 35 */

/* Writes the two-kinds cluster, with extra appended, as name; its path. */
static const char *two_kinds(const char *name, const char *extra)
{
	static char text[4096];

	snprintf(text, sizeof text, "%s%s%s", cluster_head, groups_text, extra);
	return test_write_file(name, text);
}

/* Loads text (written as c.ini) and expects st with want in the message. */
static void cluster_fails(const char *text, enum moe_status st, const char *want)
{
	struct moe_cluster c;
	const char *p = test_write_file("c.ini", text);

	ck_assert_int_eq(moe_cluster_load(p, &c), st);
	ck_assert_msg(strstr(moe_errmsg(), want) != NULL, "'%s' not in '%s'", want, moe_errmsg());
	ck_assert_msg(strchr(moe_errmsg(), '\n') == NULL, "not one line: '%s'", moe_errmsg());
}

/* ---- spec ---- */

START_TEST(groups_load_and_inherit)
{
	struct moe_cluster c;
	struct moe_node_group g;
	char spec[600];
	const char *p = two_kinds("two.ini", "");

	ck_assert_int_eq(moe_cluster_load(p, &c), MOE_OK);
	ck_assert_int_eq(c.nodes, 3);
	ck_assert_int_eq(moe_cluster_gpus(&c), 12);
	ck_assert_int_eq(c.ngroups, 2);
	ck_assert_int_eq(moe_cluster_kinds(&c), 2);
	ck_assert_str_eq(c.groups[0].name, "fast");
	ck_assert_int_eq(c.groups[0].nodes, 1);
	ck_assert_str_eq(c.groups[1].name, "slow");
	ck_assert_int_eq(c.groups[1].nodes, 2);
	/* the slow group's own figures */
	ck_assert_str_eq(c.groups[1].gpu, "slow");
	ck_assert_double_eq(c.groups[1].flops_bf16, 200e12);
	ck_assert_double_eq(c.groups[1].hbm_Bps, 1.5e12);
	ck_assert_int_eq(c.groups[1].intra, MOE_INTRA_PCIE);
	ck_assert_double_eq(c.groups[1].intra_Bps, 32e9);
	ck_assert_double_eq(c.groups[1].intra_lat_s, 6e-6);
	ck_assert_int_eq(c.groups[1].nics, 1);
	ck_assert_double_eq(c.groups[1].nic_Bps, 12.5e9);
	ck_assert_double_eq(c.groups[1].nic_lat_s, 7e-6);
	/* ...and what it inherits from [gpu], [intra], [nic] and the defaults */
	ck_assert_double_eq(c.groups[1].hbm_bytes, 80e9);
	ck_assert_double_eq(c.groups[1].compute_efficiency, 0.75);
	ck_assert_double_eq(c.groups[1].intra_efficiency, 1);
	ck_assert_double_eq(c.groups[1].launch_s, 5e-6);
	/* the fast group is the sections themselves; the cluster's own fields
	 * hold the first group's figures */
	ck_assert_str_eq(c.groups[0].gpu, "fast");
	ck_assert_double_eq(c.groups[0].flops_bf16, 800e12);
	ck_assert_int_eq(c.groups[0].nics, 4);
	ck_assert_double_eq(c.groups[0].nic_Bps, 50e9);
	ck_assert_double_eq(c.flops_bf16, 800e12);
	ck_assert_int_eq(c.nics, 4);
	ck_assert_int_eq(c.intra, MOE_INTRA_NVSWITCH);
	/* nodes in order: node 0 fast, nodes 1 and 2 slow */
	ck_assert_int_eq(moe_cluster_kind_of(&c, 0), 0);
	ck_assert_int_eq(moe_cluster_kind_of(&c, 1), 1);
	ck_assert_int_eq(moe_cluster_kind_of(&c, 2), 1);
	moe_cluster_kind(&c, 1, &g);
	ck_assert_str_eq(g.name, "slow");
	ck_assert_double_eq(g.flops_bf16, 200e12);
	/* the sum as :NODES is accepted */
	snprintf(spec, sizeof spec, "%s:3", p);
	ck_assert_int_eq(moe_cluster_load(spec, &c), MOE_OK);
	ck_assert_int_eq(c.nodes, 3);

	/* a file on top: a group resized, a field changed for all, a group added */
	{
		char text[1200];
		snprintf(text, sizeof text, "base = %s\n[gpu]\nefficiency = 0.5\n[group slow]\n"
			 "nodes = 3\n[group extra]\nnodes = 1\nnic.count = 2\n", p);
		ck_assert_int_eq(moe_cluster_load(test_write_file("top.ini", text), &c), MOE_OK);
	}
	ck_assert_int_eq(c.ngroups, 3);
	ck_assert_int_eq(c.nodes, 5);
	ck_assert_int_eq(c.groups[1].nodes, 3);
	ck_assert_double_eq(c.groups[0].compute_efficiency, 0.5);
	ck_assert_double_eq(c.groups[1].compute_efficiency, 0.5);
	ck_assert_double_eq(c.groups[1].flops_bf16, 200e12); /* kept from the base's group */
	ck_assert_str_eq(c.groups[2].name, "extra");
	ck_assert_int_eq(c.groups[2].nics, 2);
	ck_assert_str_eq(c.groups[2].gpu, "fast");
	ck_assert_int_eq(moe_cluster_kind_of(&c, 4), 2);

	/* a preset without groups: one kind, the cluster's own fields */
	ck_assert_int_eq(moe_cluster_load("dgx-h100:3", &c), MOE_OK);
	ck_assert_int_eq(c.ngroups, 0);
	ck_assert_int_eq(moe_cluster_kinds(&c), 1);
	ck_assert_int_eq(moe_cluster_kind_of(&c, 2), 0);
	moe_cluster_kind(&c, 0, &g);
	ck_assert_str_eq(g.name, "");
	ck_assert_int_eq(g.nodes, 3);
	ck_assert_double_eq(g.flops_bf16, 989e12);
	ck_assert_int_eq(g.nics, 8);
}
END_TEST

START_TEST(groups_bundled_preset)
{
	struct moe_cluster c;

	ck_assert_int_eq(moe_cluster_load("mixed-h100-a100", &c), MOE_OK);
	ck_assert_int_eq(c.nodes, 4);
	ck_assert_int_eq(c.ngroups, 2);
	ck_assert_str_eq(c.groups[0].gpu, "H100-SXM");
	ck_assert_int_eq(c.groups[0].intra, MOE_INTRA_NVSWITCH);
	ck_assert_int_eq(c.groups[0].nics, 8);
	ck_assert_double_eq(c.groups[0].nic_Bps, 50e9);
	ck_assert_str_eq(c.groups[1].gpu, "A100-PCIE-80GB");
	ck_assert_double_eq(c.groups[1].flops_bf16, 312e12);
	ck_assert_double_eq(c.groups[1].flops_fp8, 0);
	ck_assert_int_eq(c.groups[1].intra, MOE_INTRA_PCIE);
	ck_assert_double_eq(c.groups[1].intra_Bps, 32e9);
	ck_assert_int_eq(c.groups[1].nics, 2);
	ck_assert_double_eq(c.groups[1].nic_Bps, 25e9);
	ck_assert_int_eq(c.fabric, MOE_FABRIC_FAT_TREE);
}
END_TEST

START_TEST(groups_narrow)
{
	struct moe_cluster c, n;

	ck_assert_int_eq(moe_cluster_load("mixed-h100-a100", &c), MOE_OK);
	/* three nodes: both H100 nodes and the first A100 node */
	n = c;
	moe_cluster_narrow(&n, 24);
	ck_assert_int_eq(n.nodes, 3);
	ck_assert_int_eq(n.ngroups, 2);
	ck_assert_int_eq(n.groups[0].nodes, 2);
	ck_assert_int_eq(n.groups[1].nodes, 1);
	/* one node's worth: an H100 node's GPUs, no NICs */
	n = c;
	moe_cluster_narrow(&n, 4);
	ck_assert_int_eq(n.nodes, 1);
	ck_assert_int_eq(n.gpus_per_node, 4);
	ck_assert_int_eq(n.ngroups, 1);
	ck_assert_int_eq(n.groups[0].nodes, 1);
	ck_assert_int_eq(n.groups[0].nics, 0);
	ck_assert_int_eq(n.nics, 0);
	/* all of it: unchanged */
	n = c;
	moe_cluster_narrow(&n, 32);
	ck_assert_int_eq(n.nodes, 4);
	ck_assert_int_eq(n.ngroups, 2);
	ck_assert_int_eq(n.groups[1].nodes, 2);
	/* a homogeneous cluster, as the simulator always narrowed it */
	ck_assert_int_eq(moe_cluster_load("dgx-h100:4", &c), MOE_OK);
	n = c;
	moe_cluster_narrow(&n, 16);
	ck_assert_int_eq(n.nodes, 2);
	ck_assert_int_eq(n.nics, 8);
	ck_assert_int_eq(n.ngroups, 0);
}
END_TEST

/* ---- topology and network: hand-checked ---- */

/* One flow of B bytes on its own; returns its end time. */
static double one_flow(const struct sim_topo *t, int src, int dst, double B, struct sim_path *p)
{
	struct sim_net *n;
	int f;
	double end;

	ck_assert_int_eq(sim_topo_route(t, src, dst, p), MOE_OK);
	ck_assert_int_eq(sim_net_new(t, 0, &n), MOE_OK);
	ck_assert_int_eq(sim_net_add(n, p, B, 0, 0, &f), MOE_OK);
	ck_assert_int_eq(sim_net_run(n, NULL, NULL), MOE_OK);
	end = sim_net_flow_end(n, f);
	sim_net_free(n);
	return end;
}

START_TEST(groups_topology_routes)
{
	struct moe_cluster c;
	struct sim_topo *t;
	struct sim_path p;
	double B = 123456789.0;

	ck_assert_int_eq(moe_cluster_load(two_kinds("two.ini", ""), &c), MOE_OK);
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_OK);
	ck_assert_int_eq(t->nodes, 3);
	ck_assert_int_eq(t->gpus, 12);
	ck_assert_int_eq(t->nics, 4);
	ck_assert_int_eq(t->node[0].kind, 0);
	ck_assert_int_eq(t->node[2].kind, 1);
	ck_assert_int_eq(t->node[1].intra, MOE_INTRA_PCIE);
	ck_assert_int_eq(t->node[1].nics, 1);
	/* links: 3 x 8 GPU ports; 2 PCIe switches x 2; NICs 4 + 1 + 1, x 2 */
	ck_assert_int_eq(t->base_sw, 24);
	ck_assert_int_eq(t->base_nic, 28);
	ck_assert_int_eq(t->nlinks, 40);
	ck_assert_int_eq(sim_topo_link_find(t, "n2.psw0.up"), 26);
	ck_assert_int_eq(sim_topo_link_find(t, "n1.nic0.down"), 37);
	ck_assert_int_eq(sim_topo_link_find(t, "n1.nic1.up"), -1);
	ck_assert_int_eq(sim_topo_nic_of(t, 3), 3);
	ck_assert_int_eq(sim_topo_nic_of(t, 7), 0);

	/* fast GPU 0 -> slow GPU 4: its NIC (50 GB/s), the slow node's NIC
	 * (12.5 GB/s) and PCIe port (32 GB/s); latency the slower NIC's 7 us
	 * plus one switch hop of 1 us */
	assert_rel(one_flow(t, 0, 4, B, &p), 8e-6 + B / 12.5e9, 1e-12);
	ck_assert_int_eq(p.n, 3);
	ck_assert_str_eq(t->links[p.link[0]].name, "n0.nic0.up");
	ck_assert_str_eq(t->links[p.link[1]].name, "n1.nic0.down");
	ck_assert_str_eq(t->links[p.link[2]].name, "n1.g0.pcie.down");
	ck_assert_double_eq(p.lat_s, 7e-6 + 1e-6);
	ck_assert_double_eq(t->links[p.link[0]].bw_Bps, 50e9);
	ck_assert_double_eq(t->links[p.link[1]].bw_Bps, 12.5e9);
	ck_assert_double_eq(t->links[p.link[2]].bw_Bps, 32e9);
	/* back: slow GPU 5 -> fast GPU 1 (NIC 1 of the fast node) */
	assert_rel(one_flow(t, 5, 1, B, &p), 8e-6 + B / 12.5e9, 1e-12);
	ck_assert_int_eq(p.n, 3);
	ck_assert_str_eq(t->links[p.link[0]].name, "n1.g1.pcie.up");
	ck_assert_str_eq(t->links[p.link[1]].name, "n1.nic0.up");
	ck_assert_str_eq(t->links[p.link[2]].name, "n0.nic1.down");
	/* slow to slow: PCIe, NIC, NIC, PCIe */
	assert_rel(one_flow(t, 4, 11, B, &p), 8e-6 + B / 12.5e9, 1e-12);
	ck_assert_int_eq(p.n, 4);
	ck_assert_str_eq(t->links[p.link[3]].name, "n2.g3.pcie.down");
	/* inside a slow node: one PCIe switch (one NIC), 6 us, 32 GB/s */
	assert_rel(one_flow(t, 4, 7, B, &p), 6e-6 + B / 32e9, 1e-12);
	ck_assert_int_eq(p.n, 2);
	ck_assert_str_eq(t->links[p.link[0]].name, "n1.g0.pcie.up");
	ck_assert_str_eq(t->links[p.link[1]].name, "n1.g3.pcie.down");
	/* inside the fast node: NVSwitch, 2 us, 400 GB/s */
	assert_rel(one_flow(t, 0, 3, B, &p), 2e-6 + B / 400e9, 1e-12);
	ck_assert_str_eq(t->links[p.link[0]].name, "n0.g0.nvl.up");
	sim_topo_free(t);
}
END_TEST

/* Leaves of a fat tree over mixed nodes: each carries its own nodes' NIC
 * capacity / oversubscription, over as many uplinks as the widest leaf. */
START_TEST(groups_fat_tree_leaves)
{
	struct moe_cluster c;
	struct sim_topo *t;

	ck_assert_int_eq(moe_cluster_load(two_kinds("ft.ini", "[fabric]\nkind = fat-tree\n"
						      "nodes_per_leaf = 2\noversubscription = 2\n"),
					  &c), MOE_OK);
	/* 3 nodes: leaf 0 = fast node 0 + slow node 1, leaf 1 = slow node 2
	 * and an empty slot that counts as node 2 (as before for a partial leaf) */
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_OK);
	ck_assert_int_eq(t->leaves, 2);
	ck_assert_int_eq(t->uplinks, 4); /* 2 nodes x 4 NICs / 2 */
	for (int s = 0; s < 4; s++) {
		assert_rel(t->links[t->base_leaf + 2 * s].bw_Bps, (4 * 50e9 + 12.5e9) / 2 / 4, 1e-15);
		assert_rel(t->links[t->base_leaf + 2 * (4 + s)].bw_Bps, 2 * 12.5e9 / 2 / 4, 1e-15);
	}
	sim_topo_free(t);
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_SPRAY, &t), MOE_OK);
	ck_assert_int_eq(t->uplinks, 1);
	assert_rel(t->links[t->base_leaf].bw_Bps, (4 * 50e9 + 12.5e9) / 2, 1e-15);
	{
		/* fast 0 -> slow 2 crosses the spine: 3 switch hops */
		struct sim_path p;
		ck_assert_int_eq(sim_topo_route(t, 1, 9, &p), MOE_OK);
		ck_assert_int_eq(p.n, 5);
		ck_assert_double_eq(p.lat_s, 7e-6 + 3 * 1e-6);
	}
	sim_topo_free(t);
}
END_TEST

/* ---- no groups: the topology as it always was ---- */

static void same_topology(const struct sim_topo *a, const struct sim_topo *b)
{
	struct sim_path pa, pb;

	ck_assert_int_eq(a->nlinks, b->nlinks);
	ck_assert_int_eq(a->base_sw, b->base_sw);
	ck_assert_int_eq(a->base_nic, b->base_nic);
	ck_assert_int_eq(a->base_leaf, b->base_leaf);
	ck_assert_int_eq(a->leaves, b->leaves);
	ck_assert_int_eq(a->uplinks, b->uplinks);
	for (int l = 0; l < a->nlinks; l++) {
		ck_assert_str_eq(a->links[l].name, b->links[l].name);
		ck_assert_double_eq(a->links[l].bw_Bps, b->links[l].bw_Bps);
		ck_assert_double_eq(a->links[l].lat_s, b->links[l].lat_s);
		ck_assert_int_eq(a->links[l].kind, b->links[l].kind);
		ck_assert_int_eq(a->links[l].network, b->links[l].network);
	}
	for (int s = 0; s < a->gpus; s++)
		for (int d = 0; d < a->gpus; d++) {
			ck_assert_int_eq(sim_topo_route(a, s, d, &pa), MOE_OK);
			ck_assert_int_eq(sim_topo_route(b, s, d, &pb), MOE_OK);
			ck_assert_int_eq(pa.n, pb.n);
			ck_assert_double_eq(pa.lat_s, pb.lat_s);
			for (int i = 0; i < pa.n; i++)
				ck_assert_int_eq(pa.link[i], pb.link[i]);
		}
}

/* The link layout of a homogeneous cluster, by the formulas the topology
 * has always used: node n's links at base + n x (links per node), leaf
 * uplinks of ports x NIC bandwidth / oversubscription / uplinks. */
static void legacy_layout(const struct moe_cluster *c, const struct sim_topo *t)
{
	int G = c->gpus_per_node, N = c->nodes, nsw = c->nics > 0 ? c->nics : 1;
	double nic_bw = c->nic_Bps * c->nic_efficiency, intra_bw = c->intra_Bps * c->intra_efficiency;

	for (int g = 0; g < N * G; g++) {
		char name[64];
		if (c->intra == MOE_INTRA_NVLINK_MESH) {
			snprintf(name, sizeof name, "n%d.g%d.nvl.g%d", g / G, g % G, (g % G + 1) % G);
			ck_assert_int_eq(sim_topo_link_find(t, name),
					 g * (G - 1) + ((g % G + 1) % G < g % G ? (g % G + 1) % G
									       : (g % G + 1) % G - 1));
			ck_assert_double_eq(t->links[g * (G - 1)].bw_Bps, intra_bw / (G - 1));
		} else {
			ck_assert_double_eq(t->links[2 * g].bw_Bps, intra_bw);
			ck_assert_double_eq(t->links[2 * g + 1].lat_s, 0);
		}
	}
	ck_assert_int_eq(t->base_sw, c->intra == MOE_INTRA_NVLINK_MESH ? N * G * (G - 1) : 2 * N * G);
	for (int n = 0; n < N; n++) {
		char name[64];
		if (c->intra == MOE_INTRA_PCIE)
			for (int s = 0; s < nsw; s++) {
				snprintf(name, sizeof name, "n%d.psw%d.down", n, s);
				ck_assert_int_eq(sim_topo_link_find(t, name), t->base_sw + 2 * (n * nsw + s) + 1);
			}
		for (int i = 0; i < c->nics; i++) {
			int l = t->base_nic + 2 * (n * c->nics + i);
			snprintf(name, sizeof name, "n%d.nic%d.up", n, i);
			ck_assert_str_eq(t->links[l].name, name);
			ck_assert_double_eq(t->links[l].bw_Bps, nic_bw);
			ck_assert_double_eq(t->links[l].lat_s, c->nic_lat_s + c->switch_lat_s);
		}
	}
	if (t->uplinks > 0) {
		int npl = c->nodes_per_leaf;
		double ports = c->fabric == MOE_FABRIC_RAIL ? npl : (double)npl * c->nics;
		double total = ports * nic_bw / (c->fabric == MOE_FABRIC_RAIL ? 1 : c->oversubscription);
		for (int l = t->base_leaf; l < t->nlinks; l++)
			ck_assert_double_eq(t->links[l].bw_Bps, total / t->uplinks);
	}
}

/* c (no groups) laid out as always, and built the same as s, with either
 * multipath choice. */
static void same_both_ways(const struct moe_cluster *c, const struct moe_cluster *s)
{
	for (int mp = 0; mp < 2; mp++) {
		struct sim_topo *a, *b;
		ck_assert_int_eq(sim_topo_new(c, (enum sim_multipath)mp, &a), MOE_OK);
		ck_assert_int_eq(sim_topo_new(s, (enum sim_multipath)mp, &b), MOE_OK);
		legacy_layout(c, a);
		same_topology(a, b);
		sim_topo_free(a);
		sim_topo_free(b);
	}
}

/* The same cluster with its nodes split into groups that repeat the
 * cluster's figures: 1 node, then the rest. */
static struct moe_cluster split(const struct moe_cluster *c)
{
	struct moe_cluster s = *c;

	s.ngroups = 2;
	for (int i = 0; i < 2; i++) {
		moe_cluster_kind(c, 0, &s.groups[i]);
		snprintf(s.groups[i].name, sizeof s.groups[i].name, "g%d", i);
	}
	s.groups[0].nodes = 1;
	s.groups[1].nodes = c->nodes - 1;
	return s;
}

START_TEST(groups_none_same_topology)
{
	static const char *const presets[] = {"dgx-h100:5", "dgx-a100:3", "pcie-l40s:5",
					      "hgx-h800:2", "mixed-h100-a100"};
	static const enum moe_intra_kind intra[] = {MOE_INTRA_NVSWITCH, MOE_INTRA_NVLINK_MESH,
						    MOE_INTRA_PCIE};
	static const enum moe_fabric_kind fabric[] = {MOE_FABRIC_NONBLOCKING, MOE_FABRIC_FAT_TREE,
						      MOE_FABRIC_RAIL};

	for (int i = 0; i < 5; i++) {
		struct moe_cluster c, s;
		ck_assert_int_eq(moe_cluster_load(presets[i], &c), MOE_OK);
		if (c.ngroups > 0) {
			/* a grouped cluster whose groups agree is its first group's */
			for (int g = 1; g < c.ngroups; g++) {
				struct moe_node_group keep = c.groups[g];
				c.groups[g] = c.groups[0];
				c.groups[g].nodes = keep.nodes;
			}
			s = c;
			c.ngroups = 0;
		} else {
			s = split(&c);
		}
		same_both_ways(&c, &s);
	}
	/* every intra kind on every fabric, with figures that are not round */
	for (int ik = 0; ik < 3; ik++)
		for (int fk = 0; fk < 3; fk++) {
			struct moe_cluster c, s;
			ck_assert_int_eq(moe_cluster_load("dgx-h100:7", &c), MOE_OK);
			c.gpus_per_node = 6;
			c.nics = 3;
			c.intra = intra[ik];
			c.fabric = fabric[fk];
			c.nodes_per_leaf = 3;
			c.oversubscription = fabric[fk] == MOE_FABRIC_FAT_TREE ? 1.7 : 1;
			c.nic_Bps = 48.3e9;
			c.nic_efficiency = 0.87;
			c.intra_efficiency = 0.73;
			s = split(&c);
			same_both_ways(&c, &s);
		}
}
END_TEST

/* ---- compute: each GPU its own group's ---- */

START_TEST(groups_compute_per_gpu)
{
	struct moe_model m;
	struct moe_cluster c;
	struct moe_plan plan;
	struct sim_topo *t;
	struct sim_placement *pl;
	struct sim_step *s;
	struct sim_compute kf, ks;
	struct sim_layer_out fwd;
	struct sim_step_opts o = {SIM_A2A_DIRECT, 1, SIM_STEP_ANALYTIC, 0, 0};
	enum { T = 512 };
	int *ex;
	double launches, ff;

	ck_assert_int_eq(moe_model_load("mixtral-8x7b", &m), MOE_OK);
	/* one fast and one slow node: 8 GPUs for 8 experts */
	{
		char text[1024];
		snprintf(text, sizeof text, "base = %s\n[group slow]\nnodes = 1\n", two_kinds("two.ini", ""));
		ck_assert_int_eq(moe_cluster_load(test_write_file("c8.ini", text), &c), MOE_OK);
	}
	ck_assert_int_eq(c.nodes, 2);
	/* the kinds' compute models: a compute-bound expert takes 800/200 = 4
	 * times longer on a slow GPU (eff 0.75 x 512 / 640 on both) */
	sim_compute_init_kind(&kf, &c, 0, &m);
	sim_compute_init_kind(&ks, &c, 1, &m);
	ck_assert_double_eq(kf.peak_flops, 800e12);
	ck_assert_double_eq(ks.peak_flops, 200e12);
	ck_assert_double_eq(ks.hbm_Bps, 1.5e12);
	ff = sim_compute_ffn_s(&kf, &m, m.expert_ffn, T);
	assert_rel(ff, 2.0 * 3 * T * 4096 * 14336 / (800e12 * 0.75 * T / (T + 128.0)), 1e-12);
	assert_rel(sim_compute_ffn_s(&ks, &m, m.expert_ffn, T) / ff, 4, 1e-12);

	/* in a step: every token of GPU g goes to expert g, which lives on GPU
	 * g, so each GPU runs one expert on 512 tokens */
	moe_plan_default(&plan, &m, &c);
	plan.tokens_per_gpu = T;
	ck_assert_int_eq(plan.ep, 8);
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_SPRAY, &t), MOE_OK);
	ck_assert_int_eq(sim_placement_new(MOE_PLACE_CONTIGUOUS, 8, 8, 4, 1, NULL, 0, &pl), MOE_OK);
	ck_assert_int_eq(sim_step_new(&m, &c, &plan, t, pl, &o, &s), MOE_OK);
	ex = malloc(8 * T * sizeof *ex);
	ck_assert_ptr_nonnull(ex);
	for (int g = 0; g < 8; g++)
		for (int i = 0; i < T; i++)
			ex[g * T + i] = g;
	ck_assert_int_eq(sim_step_layer(s, ex, 1, NULL, NULL, &fwd, NULL), MOE_OK);
	launches = 3 * 5e-6;
	for (int g = 0; g < 8; g++) {
		ck_assert_double_eq(s->tokens[g], T);
		assert_rel(s->compute_s[g], (g < 4 ? ff : 4 * ff) + launches, 1e-12);
	}
	assert_rel((s->compute_s[6] - launches) / (s->compute_s[1] - launches), 4, 1e-12);
	/* the layer waits for the slow GPUs' experts */
	assert_rel(fwd.compute_s, 4 * ff + launches, 1e-12);
	free(ex);
	sim_step_free(s);
	/* a topology of node groups needs the cluster it was built from */
	{
		struct moe_cluster one = c;
		one.ngroups = 0;
		ck_assert_int_eq(sim_step_new(&m, &one, &plan, t, pl, &o, &s), MOE_EINVAL);
		ck_assert_ptr_nonnull(strstr(moe_errmsg(), "node 1 is of node group 1"));
	}
	sim_placement_free(pl);
	sim_topo_free(t);
}
END_TEST

/* ---- errors ---- */

START_TEST(groups_errors)
{
	char buf[4096];
	struct moe_cluster c;

#define WITH(extra) (snprintf(buf, sizeof buf, "%s%s%s", cluster_head, groups_text, extra), buf)
	/* zero and negative bandwidths in a group: the group's line */
	snprintf(buf, sizeof buf, "%s[group slow]\nnodes = 1\nintra.bw = 0GB/s\n", cluster_head);
	cluster_fails(buf, MOE_ECONFIG, "c.ini:25: group slow: intra.bw: 0 is out of range");
	snprintf(buf, sizeof buf, "%s[group slow]\nnodes = 1\nnic.bw = -5GB/s\n", cluster_head);
	cluster_fails(buf, MOE_ECONFIG, "c.ini:25: group slow: nic.bw:");
	/* node counts that do not add up */
	snprintf(buf, sizeof buf, "%s[cluster]\nnodes = 5\n%s", cluster_head, groups_text);
	cluster_fails(buf, MOE_ECONFIG, "c.ini:24: cluster.nodes: 5 is not the sum of the node "
		      "groups (fast 1 + slow 2 = 3)");
	cluster_fails(WITH("[group late]\nnic.count = 2\n"), MOE_ECONFIG,
		      "c.ini:37: group late: nodes: missing: expected the group's node count");
	cluster_fails(WITH("[group late]\nnodes = 0\n"), MOE_ECONFIG,
		      "c.ini:37: group late: nodes: '0': expected an integer from 1 to 1000000");
	/* :NODES cannot rescale groups */
	{
		char spec[600];
		snprintf(spec, sizeof spec, "%s:6", two_kinds("two.ini", ""));
		ck_assert_int_eq(moe_cluster_load(spec, &c), MOE_EINVAL);
		ck_assert_ptr_nonnull(strstr(moe_errmsg(), ":6' cannot rescale node groups (fast 1 + "
					     "slow 2 = 3 nodes): expected :3"));
	}
	/* unknown fields, and cluster-wide ones */
	cluster_fails(WITH("gpu.flops_bf17 = 1TFLOP/s\n"), MOE_ECONFIG,
		      "c.ini:36: group slow: gpu.flops_bf17: unknown key");
	cluster_fails(WITH("bandwidth = 1GB/s\n"), MOE_ECONFIG,
		      "c.ini:36: group slow: bandwidth: unknown key: expected nodes or a gpu.*");
	cluster_fails(WITH("fabric.kind = rail\n"), MOE_ECONFIG,
		      "c.ini:36: group slow: fabric.kind: is the same for the whole cluster: set it "
		      "in [fabric]");
	cluster_fails(WITH("cluster.gpus_per_node = 8\n"), MOE_ECONFIG,
		      "c.ini:36: group slow: cluster.gpus_per_node: is the same for the whole cluster");
	/* values checked as for the sections */
	cluster_fails(WITH("intra.kind = infiniband\n"), MOE_ECONFIG,
		      "c.ini:36: group slow: intra.kind: 'infiniband': expected one of nvswitch");
	cluster_fails(WITH("nic.count = 3\n"), MOE_ECONFIG,
		      "c.ini:36: group slow: nic.count: 3 NICs do not fit 4 GPUs per node");
	cluster_fails(WITH("nic.count = 0\n"), MOE_ECONFIG,
		      "c.ini:36: group slow: nic.count: 3 nodes need at least one NIC each");
	/* an inherited field that does not fit a group says where it came from */
	snprintf(buf, sizeof buf, "%s%s[nic]\ncount = 3\n", cluster_head, groups_text);
	cluster_fails(buf, MOE_ECONFIG, "c.ini:37: group fast: nic.count (from [nic]): 3 NICs do "
		      "not fit 4 GPUs per node");
	/* a rail fabric needs one NIC count */
	cluster_fails(WITH("[fabric]\nkind = rail\n"), MOE_ECONFIG,
		      "c.ini:33: group slow: nic.count: 1, but group fast has 4: a rail fabric needs "
		      "the same NIC count on every node");
	/* names */
	snprintf(buf, sizeof buf, "%s[group]\nnodes = 1\n", cluster_head);
	cluster_fails(buf, MOE_ECONFIG, "c.ini:24: [group]: expected [group NAME]");
	snprintf(buf, sizeof buf, "%s[group a/b]\nnodes = 1\n", cluster_head);
	cluster_fails(buf, MOE_ECONFIG, "c.ini:24: [group a/b]: expected [group NAME]");
	/* too many groups */
	{
		size_t l = (size_t)snprintf(buf, sizeof buf, "%s", cluster_head);
		for (int i = 0; i <= MOE_NODE_GROUPS_MAX; i++)
			l += (size_t)snprintf(buf + l, sizeof buf - l, "[group g%d]\nnodes = 1\n", i);
		cluster_fails(buf, MOE_ECONFIG, "c.ini:56: group g16: more than 16 node groups");
	}
	/* a required field set neither in [gpu] nor in the group */
	cluster_fails("[cluster]\nname = x\ngpus_per_node = 2\n[intra]\nkind = pcie\nbw = 1GB/s\n"
		      "[nic]\ncount = 1\nbw = 1GB/s\n[group a]\nnodes = 1\ngpu.type = a\n"
		      "gpu.flops_bf16 = 1TFLOP/s\ngpu.hbm = 1GB\ngpu.hbm_bw = 1TB/s\n[group b]\n"
		      "nodes = 1\ngpu.type = b\ngpu.hbm = 1GB\ngpu.hbm_bw = 1TB/s\n",
		      MOE_ECONFIG, "c.ini:17: group b: gpu.flops_bf16: missing: expected dense BF16 "
		      "peak, in the group or in [gpu]");
	/* ...which is fine when every group has it */
	ck_assert_int_eq(moe_cluster_load(test_write_file("ok.ini",
		"[cluster]\nname = x\ngpus_per_node = 2\n[intra]\nkind = pcie\nbw = 1GB/s\n"
		"[nic]\ncount = 1\nbw = 1GB/s\n[group a]\nnodes = 1\ngpu.type = a\n"
		"gpu.flops_bf16 = 1TFLOP/s\ngpu.hbm = 1GB\ngpu.hbm_bw = 1TB/s\n[group b]\n"
		"nodes = 1\ngpu.type = b\ngpu.flops_bf16 = 2TFLOP/s\ngpu.hbm = 1GB\ngpu.hbm_bw = 1TB/s\n"),
		&c), MOE_OK);
	ck_assert_double_eq(c.groups[1].flops_bf16, 2e12);
	/* model files know no groups */
	{
		struct moe_model m;
		ck_assert_int_eq(moe_model_load(test_write_file("m.ini", "[group a]\nnodes = 1\n"), &m),
				 MOE_ECONFIG);
		ck_assert_ptr_nonnull(strstr(moe_errmsg(), "m.ini:2: group a.nodes: unknown key"));
	}
#undef WITH
}
END_TEST

/* Clusters built by a program are checked again by the topology. */
START_TEST(groups_topology_errors)
{
	struct moe_cluster c;
	struct sim_topo *t;

	ck_assert_int_eq(moe_cluster_load(two_kinds("two.ini", ""), &c), MOE_OK);
	c.nodes = 4;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "4 nodes, but its node groups hold 3"));
	/* fewer nodes than the groups hold: the first ones */
	c.nodes = 2;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_OK);
	ck_assert_int_eq(t->node[1].kind, 1);
	sim_topo_free(t);
	c.nodes = 3;
	c.groups[1].intra_Bps = 0;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "group slow: intra.bw x intra.efficiency must be "
				     "positive"));
	c.groups[1].intra_Bps = 32e9;
	c.groups[1].nic_efficiency = -1;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "group slow: nic.bw"));
	c.groups[1].nic_efficiency = 1;
	c.groups[1].nics = 3;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "group slow: nic.count 3 does not divide 4"));
	c.groups[1].nics = 0;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "group slow: 3 nodes need at least one NIC"));
	c.groups[1].nics = 1;
	c.fabric = MOE_FABRIC_RAIL;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "a rail fabric needs the same NIC count"));
	c.fabric = MOE_FABRIC_NONBLOCKING;
	c.ngroups = MOE_NODE_GROUPS_MAX + 1;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_EINVAL);
}
END_TEST

static Suite *groups_suite(void)
{
	Suite *s = suite_create("groups");
	TCase *tc = tcase_create("core");
	TCase *tr = tcase_create("regression");
	TCase *te = tcase_create("errors");

	tcase_add_checked_fixture(tc, test_fixture_setup, test_fixture_teardown);
	tcase_add_test(tc, groups_load_and_inherit);
	tcase_add_test(tc, groups_bundled_preset);
	tcase_add_test(tc, groups_narrow);
	tcase_add_test(tc, groups_topology_routes);
	tcase_add_test(tc, groups_fat_tree_leaves);
	tcase_add_test(tc, groups_compute_per_gpu);
	tcase_add_test(tr, groups_none_same_topology);
	tcase_set_timeout(tr, 60);
	tcase_add_checked_fixture(te, test_fixture_setup, test_fixture_teardown);
	tcase_add_test(te, groups_errors);
	tcase_add_test(te, groups_topology_errors);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, tr);
	suite_add_tcase(s, te);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(groups_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
