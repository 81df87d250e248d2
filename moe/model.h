/* moe/model.h: what an MoE model is, as far as cost is concerned; the
 * cluster it runs on; and the parallel plan that maps one onto the other.
 *
 * Both specs are loaded from INI files (presets/models/NAME.ini,
 * presets/clusters/NAME.ini, or a user's own file) by a table of fields
 * (moe/spec.c), so that every key is documented, typed, range-checked and
 * reported with file:line when wrong.  A user file may start from a preset
 * with `base = NAME` as its first key and override any field.
 *
 * Units: sizes in bytes, rates in bytes per second, times in seconds,
 * compute in FLOP/s.  Dimensions (hidden, ffn) are element counts.
 */
#ifndef MOEKIT_MOE_MODEL_H
#define MOEKIT_MOE_MODEL_H

#include <stddef.h>
#include "moe/error.h"

#define MOE_NAME_MAX 64
#define MOE_TEXT_MAX 512

enum moe_router {
	MOE_ROUTER_SOFTMAX_TOPK,  /* softmax over all experts, then top-k (Mixtral) */
	MOE_ROUTER_TOPK_SOFTMAX,  /* top-k logits, softmax over those k */
	MOE_ROUTER_SIGMOID_BIAS,  /* sigmoid scores, bias for selection only (DeepSeek-V3) */
};

enum moe_activation { MOE_ACT_SWIGLU, MOE_ACT_GELU, MOE_ACT_RELU };

struct moe_model {
	char name[MOE_NAME_MAX];
	char source[MOE_TEXT_MAX];  /* where the numbers come from */
	int layers;                 /* transformer blocks */
	int moe_layers;             /* blocks whose FFN is an MoE layer */
	int hidden;                 /* model width d */
	int expert_ffn;             /* one routed expert's intermediate size */
	int dense_ffn;              /* FFN size of the dense (non-MoE) blocks, 0 if none */
	int experts;                /* routed experts per MoE layer */
	int top_k;                  /* routed experts per token */
	int shared_experts;         /* always-on experts per MoE layer */
	int shared_ffn;             /* intermediate size of each shared expert */
	enum moe_router router;
	int norm_topk;              /* renormalize the k weights to sum to 1 */
	double routed_scaling;      /* multiplier on routed weights (DeepSeek-V3 2.5) */
	int groups;                 /* expert groups (1 = none) */
	int groups_per_token;       /* groups a token may pick from */
	double capacity_factor;     /* 0: no capacity limit */
	enum moe_activation activation;
	int heads, kv_heads, head_dim; /* attention, for the dense compute */
	int vocab;
	int act_bytes;              /* bytes per activation element in compute */
	double weight_bytes;        /* bytes per weight element (0.53125 for MXFP4) */
	int dispatch_bytes;         /* bytes per element sent in dispatch (1 for FP8) */
	int combine_bytes;          /* bytes per element sent in combine */
};

enum moe_intra_kind { MOE_INTRA_NVSWITCH, MOE_INTRA_NVLINK_MESH, MOE_INTRA_PCIE };
enum moe_fabric_kind { MOE_FABRIC_NONBLOCKING, MOE_FABRIC_FAT_TREE, MOE_FABRIC_RAIL };

#define MOE_NODE_GROUPS_MAX 16

/* A node group: consecutive nodes of one kind in a cluster whose nodes
 * differ (a `[group NAME]` section of a cluster file).  The figures mean
 * what the struct moe_cluster fields of the same names mean; a group's
 * file may override any [gpu], [intra] and [nic] field and inherits the
 * rest from those sections.  gpus_per_node and the fabric between nodes
 * stay cluster-wide. */
struct moe_node_group {
	char name[MOE_NAME_MAX];
	int nodes;                  /* nodes in the group, >= 1 */
	char gpu[MOE_NAME_MAX];
	double flops_bf16, flops_fp8, hbm_bytes, hbm_Bps, launch_s;
	double compute_efficiency, m_half;
	enum moe_intra_kind intra;
	double intra_Bps, intra_lat_s, intra_efficiency;
	int nics;
	double nic_Bps, nic_lat_s, nic_efficiency;
};

struct moe_cluster {
	char name[MOE_NAME_MAX];
	char source[MOE_TEXT_MAX];
	int nodes;
	int gpus_per_node;
	/* the GPU */
	char gpu[MOE_NAME_MAX];
	double flops_bf16;          /* dense BF16 peak, FLOP/s */
	double flops_fp8;           /* dense FP8 peak, FLOP/s (0 if none) */
	double hbm_bytes;           /* memory size, bytes */
	double hbm_Bps;             /* memory bandwidth, bytes/s */
	double launch_s;            /* per-kernel launch overhead, s */
	double compute_efficiency;  /* fraction of peak large GEMMs reach */
	double m_half;              /* GEMM rows at which half of that is reached */
	/* inside a node */
	enum moe_intra_kind intra;
	double intra_Bps;           /* per GPU, each direction, nominal */
	double intra_lat_s;
	double intra_efficiency;    /* fraction of nominal that all-to-all reaches */
	/* NICs */
	int nics;                   /* per node; each serves gpus_per_node/nics GPUs */
	double nic_Bps;             /* per NIC, each direction, nominal */
	double nic_lat_s;
	double nic_efficiency;
	/* between nodes */
	enum moe_fabric_kind fabric;
	double oversubscription;    /* fat tree: leaf down/up bandwidth ratio, >= 1 */
	double switch_lat_s;        /* per switch hop */
	int nodes_per_leaf;         /* fat tree: nodes under one leaf switch */
	/* node groups: none (0) for a homogeneous cluster, whose nodes all have
	 * the figures above.  With groups, node n belongs to the group whose
	 * consecutive range of nodes holds it (groups in file order, node-major
	 * GPU ranks); the fields above then hold the first group's figures,
	 * for code that knows one kind of node, and the groups' nodes add up to
	 * nodes (a program may lower nodes to simulate only the first ones). */
	int ngroups;
	struct moe_node_group groups[MOE_NODE_GROUPS_MAX];
};

enum moe_placement { MOE_PLACE_CONTIGUOUS, MOE_PLACE_ROUND_ROBIN, MOE_PLACE_BALANCED };
enum moe_phase { MOE_PHASE_FORWARD, MOE_PHASE_TRAINING, MOE_PHASE_PREFILL, MOE_PHASE_DECODE };

struct moe_plan {
	int ep;                     /* expert-parallel size (GPUs sharing one layer's experts) */
	int dp, tp;                 /* data and tensor parallel sizes */
	int tokens_per_gpu;         /* tokens entering each MoE layer per GPU per micro-batch */
	int micro_batches;
	int overlap;                /* overlap one micro-batch's all-to-all with another's compute */
	enum moe_placement placement;
	int redundant_experts;      /* extra replicas for MOE_PLACE_BALANCED */
	enum moe_phase phase;
};

/* Loads a model from a preset name ("mixtral-8x7b") or a file path (any
 * name containing '/' or ending in ".ini") into *m, then validates it.
 * Returns MOE_OK; MOE_ENOTFOUND for an unknown preset (the message lists
 * the presets that exist); MOE_EIO when the file cannot be read;
 * MOE_ECONFIG with "file:line: section.key: message" when a key is
 * unknown, a value malformed or out of range, or fields disagree. */
enum moe_status moe_model_load(const char *name_or_path, struct moe_model *m);

/* Loads a cluster: "NAME", "NAME:NODES" (a preset with the node count
 * given) or a file path, optionally also with ":NODES".  Errors as for
 * moe_model_load, and for a cluster with node groups ([group NAME]
 * sections): MOE_ECONFIG when a group lacks nodes or a required field,
 * overrides a cluster-wide field, or when cluster.nodes, set in the file
 * itself, is not the sum of the groups' nodes; MOE_EINVAL for a ":NODES"
 * other than that sum (groups are not rescaled). */
enum moe_status moe_cluster_load(const char *spec, struct moe_cluster *c);

/* Checks a plan against a model and cluster: ep at least 1, at most the
 * cluster's GPUs, dividing the routed experts; tokens per GPU positive.
 * Returns MOE_OK or MOE_EINVAL naming the option (--ep, --tokens-per-gpu). */
enum moe_status moe_plan_validate(const struct moe_plan *p, const struct moe_model *m,
				  const struct moe_cluster *c);

/* Fills a plan with defaults: ep = all GPUs (capped to divide experts),
 * 4096 tokens per GPU, one micro-batch, contiguous placement, forward. */
void moe_plan_default(struct moe_plan *p, const struct moe_model *m, const struct moe_cluster *c);

/* Total GPUs of a cluster. */
static inline int moe_cluster_gpus(const struct moe_cluster *c)
{
	return c->nodes * c->gpus_per_node;
}

/* Kinds of node in c: its node groups, or 1 for a homogeneous cluster. */
int moe_cluster_kinds(const struct moe_cluster *c);

/* The kind (0..moe_cluster_kinds(c)-1) of node `node` (0-based): the index
 * of its node group, 0 without groups.  A node past the groups (programmer
 * error) asserts. */
int moe_cluster_kind_of(const struct moe_cluster *c, int node);

/* Fills *out (caller's) with the figures of kind i of c: node group i, or
 * for a homogeneous cluster the cluster's own fields (name "", nodes =
 * c->nodes).  i outside 0..kinds-1 asserts. */
void moe_cluster_kind(const struct moe_cluster *c, int i, struct moe_node_group *out);

/* Narrows c to the GPUs 0..gpus-1, the one expert-parallel group the
 * simulator models: gpus <= gpus_per_node gives one node of gpus GPUs
 * without NICs; more gives gpus / gpus_per_node whole nodes.  Node groups
 * are cut to the nodes kept (the first groups, in order).  gpus >= 1. */
void moe_cluster_narrow(struct moe_cluster *c, int gpus);

/* Names for the enums, as written in files and options; NULL if out of range. */
const char *moe_router_name(enum moe_router r);
const char *moe_intra_name(enum moe_intra_kind k);
const char *moe_fabric_name(enum moe_fabric_kind k);
const char *moe_placement_name(enum moe_placement p);
const char *moe_phase_name(enum moe_phase p);
/* Parses a name into the enum value; returns 0 when unknown. */
int moe_placement_parse(const char *s, enum moe_placement *out);
int moe_phase_parse(const char *s, enum moe_phase *out);

#endif
