/* moe/spec.c: loading model and cluster specs from INI files (libinih)
 * through a table of typed fields, with presets, `base =` inheritance,
 * range checks, consistency rules and file:line error messages. */
#include "config.h"
#include "moe/ini.h"
#include "moe/model.h"
#include "moe/preset.h"
#include "moe/units.h"

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum ftype { F_INT, F_DBL, F_QTY, F_STR, F_ENUM, F_BOOL };

struct field {
	const char *section, *key;
	enum ftype type;
	size_t off, size;
	enum moe_unit unit;
	double min, max;
	const char *const *names; /* F_ENUM: NULL-terminated */
	int required;
	const char *help;
};

static const char *const router_names[] = {"softmax-topk", "topk-softmax", "sigmoid-bias", NULL};
static const char *const act_names[] = {"swiglu", "gelu", "relu", NULL};
static const char *const intra_names[] = {"nvswitch", "nvlink-mesh", "pcie", NULL};
static const char *const fabric_names[] = {"nonblocking", "fat-tree", "rail", NULL};
static const char *const placement_names[] = {"contiguous", "round-robin", "balanced", NULL};
static const char *const phase_names[] = {"forward", "training", "prefill", "decode", NULL};

#define M(member) offsetof(struct moe_model, member), sizeof(((struct moe_model *)0)->member)
#define C(member) offsetof(struct moe_cluster, member), sizeof(((struct moe_cluster *)0)->member)
#define BIG 1e9
#define REQ 1

static const struct field model_fields[] = {
	{"model", "name", F_STR, M(name), 0, 0, 0, NULL, REQ, "preset name"},
	{"model", "source", F_STR, M(source), 0, 0, 0, NULL, 0, "where the numbers come from"},
	{"model", "layers", F_INT, M(layers), 0, 1, 100000, NULL, REQ, "transformer blocks"},
	{"model", "moe_layers", F_INT, M(moe_layers), 0, 1, 100000, NULL, REQ, "blocks with an MoE FFN"},
	{"model", "hidden", F_INT, M(hidden), 0, 1, BIG, NULL, REQ, "model width (elements)"},
	{"model", "vocab", F_INT, M(vocab), 0, 0, BIG, NULL, 0, "vocabulary size"},
	{"attention", "heads", F_INT, M(heads), 0, 0, 100000, NULL, 0, "query heads"},
	{"attention", "kv_heads", F_INT, M(kv_heads), 0, 0, 100000, NULL, 0, "key/value heads"},
	{"attention", "head_dim", F_INT, M(head_dim), 0, 0, 100000, NULL, 0, "elements per head"},
	{"moe", "experts", F_INT, M(experts), 0, 1, 1000000, NULL, REQ, "routed experts per layer"},
	{"moe", "top_k", F_INT, M(top_k), 0, 1, 1024, NULL, REQ, "routed experts per token"},
	{"moe", "expert_ffn", F_INT, M(expert_ffn), 0, 1, BIG, NULL, REQ, "routed expert FFN size (elements)"},
	{"moe", "shared_experts", F_INT, M(shared_experts), 0, 0, 1024, NULL, 0, "always-on experts"},
	{"moe", "shared_ffn", F_INT, M(shared_ffn), 0, 0, BIG, NULL, 0, "shared expert FFN size (elements)"},
	{"moe", "dense_ffn", F_INT, M(dense_ffn), 0, 0, BIG, NULL, 0, "FFN size of dense blocks (elements)"},
	{"moe", "activation", F_ENUM, M(activation), 0, 0, 0, act_names, 0, "expert activation"},
	{"router", "kind", F_ENUM, M(router), 0, 0, 0, router_names, 0, "gating function"},
	{"router", "norm_topk", F_BOOL, M(norm_topk), 0, 0, 1, NULL, 0, "renormalize the k weights"},
	{"router", "routed_scaling", F_DBL, M(routed_scaling), 0, 0, 1000, NULL, 0, "routed weight multiplier"},
	{"router", "groups", F_INT, M(groups), 0, 1, 1000000, NULL, 0, "expert groups"},
	{"router", "groups_per_token", F_INT, M(groups_per_token), 0, 1, 1000000, NULL, 0, "groups a token may use"},
	{"router", "capacity_factor", F_DBL, M(capacity_factor), 0, 0, 1000, NULL, 0, "expert capacity factor (0 none)"},
	{"dtype", "act_bytes", F_INT, M(act_bytes), 0, 1, 8, NULL, 0, "bytes per activation element"},
	{"dtype", "weight_bytes", F_DBL, M(weight_bytes), 0, 0.0625, 8, NULL, 0, "bytes per weight element"},
	{"dtype", "dispatch_bytes", F_INT, M(dispatch_bytes), 0, 1, 8, NULL, 0, "bytes per element in dispatch"},
	{"dtype", "combine_bytes", F_INT, M(combine_bytes), 0, 1, 8, NULL, 0, "bytes per element in combine"},
};

static const struct field cluster_fields[] = {
	{"cluster", "name", F_STR, C(name), 0, 0, 0, NULL, REQ, "preset name"},
	{"cluster", "source", F_STR, C(source), 0, 0, 0, NULL, 0, "where the numbers come from"},
	{"cluster", "nodes", F_INT, C(nodes), 0, 1, 1000000, NULL, 0, "nodes (NAME:N overrides)"},
	{"cluster", "gpus_per_node", F_INT, C(gpus_per_node), 0, 1, 4096, NULL, REQ, "GPUs per node"},
	{"gpu", "type", F_STR, C(gpu), 0, 0, 0, NULL, REQ, "GPU model"},
	{"gpu", "flops_bf16", F_QTY, C(flops_bf16), MOE_UNIT_FLOPS, 1, 1e20, NULL, REQ, "dense BF16 peak"},
	{"gpu", "flops_fp8", F_QTY, C(flops_fp8), MOE_UNIT_FLOPS, 0, 1e20, NULL, 0, "dense FP8 peak"},
	{"gpu", "hbm", F_QTY, C(hbm_bytes), MOE_UNIT_BYTES, 1, 1e16, NULL, REQ, "memory size"},
	{"gpu", "hbm_bw", F_QTY, C(hbm_Bps), MOE_UNIT_RATE, 1, 1e16, NULL, REQ, "memory bandwidth"},
	{"gpu", "launch", F_QTY, C(launch_s), MOE_UNIT_TIME, 0, 1, NULL, 0, "kernel launch overhead"},
	{"gpu", "efficiency", F_DBL, C(compute_efficiency), 0, 0.01, 1, NULL, 0, "fraction of peak for large GEMMs"},
	{"gpu", "m_half", F_DBL, C(m_half), 0, 0, 1e9, NULL, 0, "GEMM rows reaching half that fraction"},
	{"intra", "kind", F_ENUM, C(intra), 0, 0, 0, intra_names, REQ, "fabric inside a node"},
	{"intra", "bw", F_QTY, C(intra_Bps), MOE_UNIT_RATE, 1, 1e16, NULL, REQ, "per GPU, each direction"},
	{"intra", "latency", F_QTY, C(intra_lat_s), MOE_UNIT_TIME, 0, 1, NULL, 0, "per transfer"},
	{"intra", "efficiency", F_DBL, C(intra_efficiency), 0, 0.01, 1, NULL, 0, "fraction of nominal reached"},
	{"nic", "count", F_INT, C(nics), 0, 0, 4096, NULL, REQ, "NICs per node"},
	{"nic", "bw", F_QTY, C(nic_Bps), MOE_UNIT_RATE, 1, 1e16, NULL, 0, "per NIC, each direction"},
	{"nic", "latency", F_QTY, C(nic_lat_s), MOE_UNIT_TIME, 0, 1, NULL, 0, "per transfer"},
	{"nic", "efficiency", F_DBL, C(nic_efficiency), 0, 0.01, 1, NULL, 0, "fraction of nominal reached"},
	{"fabric", "kind", F_ENUM, C(fabric), 0, 0, 0, fabric_names, 0, "network between nodes"},
	{"fabric", "oversubscription", F_DBL, C(oversubscription), 0, 1, 1000, NULL, 0, "leaf down:up ratio"},
	{"fabric", "switch_latency", F_QTY, C(switch_lat_s), MOE_UNIT_TIME, 0, 1, NULL, 0, "per switch hop"},
	{"fabric", "nodes_per_leaf", F_INT, C(nodes_per_leaf), 0, 1, 1000000, NULL, 0, "nodes under one leaf"},
};

#define NF(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define MAX_FIELDS 64
#define MAX_DEPTH 4

enum moe_preset_kind;

/* A [group NAME] section as read: its own values at the cluster's field
 * offsets (only the [gpu], [intra] and [nic] fields), and where each was
 * set; merged over the cluster's sections once the whole file is read. */
struct lgroup {
	char name[MOE_NAME_MAX];
	int line, file;             /* its first key, for messages */
	int nodes, nodes_line, nodes_file;
	struct moe_cluster over;
	int lines[MAX_FIELDS];
	int file_of[MAX_FIELDS];
};

struct load {
	const char *path;
	enum moe_preset_kind kind;
	const struct field *fields;
	int nfields;
	void *obj;
	int lines[MAX_FIELDS];      /* where each field was last set, 0 if never */
	int file_of[MAX_FIELDS];    /* ...and in which of paths[] */
	char paths[MAX_DEPTH + 1][4096]; /* the file and the bases it names */
	int npaths;
	int cur;                    /* index of path in paths[] */
	int line;                   /* the line of the key being handled */
	int keys_seen;
	int depth;
	enum moe_status st;
	const char *pre;            /* before "section.key" in messages: "" or "group NAME: " */
	struct lgroup *groups;      /* clusters: MOE_NODE_GROUPS_MAX, owned; NULL for models */
	int ngroups;
	int vgroup;                 /* 1 + the group being validated, 0 none */
};

static enum moe_status load_file(struct load *ld, const char *path);

/* ---- where presets are ---- */

static int is_dir(const char *p)
{
	struct stat sb;

	return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static enum moe_status data_dir(char *buf, size_t n)
{
	const char *env = getenv("MOEKIT_DATADIR");
	char probe[4096];

	if (env && *env) {
		snprintf(probe, sizeof probe, "%s/presets", env);
		if (!is_dir(probe))
			MOE_FAIL(MOE_ENOTFOUND, "MOEKIT_DATADIR=%s: no presets folder there", env);
		snprintf(buf, n, "%s", env);
		return MOE_OK;
	}
	snprintf(probe, sizeof probe, "%s/presets", MOEKIT_PKGDATADIR);
	if (is_dir(probe)) {
		snprintf(buf, n, "%s", MOEKIT_PKGDATADIR);
		return MOE_OK;
	}
	snprintf(probe, sizeof probe, "%s/presets", MOEKIT_SRCDIR);
	if (is_dir(probe)) {
		snprintf(buf, n, "%s", MOEKIT_SRCDIR);
		return MOE_OK;
	}
	MOE_FAIL(MOE_ENOTFOUND, "no data directory: neither %s nor %s has presets (set MOEKIT_DATADIR)",
		 MOEKIT_PKGDATADIR, MOEKIT_SRCDIR);
}

enum moe_status moe_data_path(const char *rel, char *buf, size_t n)
{
	char dir[4096];
	struct stat sb;
	enum moe_status st = data_dir(dir, sizeof dir);

	if (st != MOE_OK)
		return st;
	snprintf(buf, n, "%s/%s", dir, rel);
	if (stat(buf, &sb) != 0)
		MOE_FAIL(MOE_ENOTFOUND, "%s: not found", buf);
	return MOE_OK;
}

enum moe_status moe_preset_dir(enum moe_preset_kind kind, char *buf, size_t n)
{
	char dir[4096];
	enum moe_status st = data_dir(dir, sizeof dir);

	if (st != MOE_OK)
		return st;
	snprintf(buf, n, "%s/presets/%s", dir, kind == MOE_PRESET_MODEL ? "models" : "clusters");
	return MOE_OK;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void moe_preset_names_free(char **names)
{
	if (names == NULL)
		return;
	for (char **p = names; *p; p++)
		free(*p);
	free(names);
}

enum moe_status moe_preset_names(enum moe_preset_kind kind, char ***out)
{
	char dir[4096];
	DIR *d;
	struct dirent *e;
	char **names = NULL;
	size_t n = 0;
	enum moe_status st = moe_preset_dir(kind, dir, sizeof dir);

	*out = NULL;
	if (st != MOE_OK)
		return st;
	if ((d = opendir(dir)) == NULL)
		MOE_FAIL(MOE_ENOTFOUND, "%s: %s", dir, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		char **nn;
		if (l <= 4 || strcmp(e->d_name + l - 4, ".ini") != 0)
			continue;
		nn = realloc(names, sizeof(char *) * (n + 2));
		if (nn == NULL || (nn[n] = strndup(e->d_name, l - 4)) == NULL) {
			closedir(d);
			names = nn ? nn : names;
			if (names) names[n] = NULL;
			moe_preset_names_free(names);
			MOE_FAIL(MOE_ENOMEM, "out of memory listing presets");
		}
		names = nn;
		names[++n] = NULL;
	}
	closedir(d);
	if (n == 0) {
		free(names);
		MOE_FAIL(MOE_ENOTFOUND, "%s: no presets", dir);
	}
	qsort(names, n, sizeof(char *), cmp_str);
	*out = names;
	return MOE_OK;
}

static int looks_like_path(const char *s)
{
	size_t l = strlen(s);

	return strchr(s, '/') != NULL || (l > 4 && strcmp(s + l - 4, ".ini") == 0);
}

/* Resolves a preset name or a path to a file path. */
static enum moe_status resolve(enum moe_preset_kind kind, const char *name, char *buf, size_t n)
{
	char dir[4096];
	struct stat sb;
	enum moe_status st;

	if (looks_like_path(name)) {
		snprintf(buf, n, "%s", name);
		return MOE_OK;
	}
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			MOE_FAIL(MOE_EINVAL, "'%s' is not a preset name", name);
	if ((st = moe_preset_dir(kind, dir, sizeof dir)) != MOE_OK)
		return st;
	if ((size_t)snprintf(buf, n, "%s/%.200s.ini", dir, name) >= n)
		MOE_FAIL(MOE_EINVAL, "'%s': path too long", name);
	if (stat(buf, &sb) != 0) {
		char **names = NULL, list[1024] = "";
		if (moe_preset_names(kind, &names) == MOE_OK) {
			for (char **p = names; *p; p++) {
				strncat(list, *p, sizeof list - strlen(list) - 1);
				if (p[1]) strncat(list, ", ", sizeof list - strlen(list) - 1);
			}
		}
		moe_preset_names_free(names);
		MOE_FAIL(MOE_ENOTFOUND, "unknown %s preset '%s': expected one of %s",
			 kind == MOE_PRESET_MODEL ? "model" : "cluster", name, list);
	}
	return MOE_OK;
}

/* ---- parsing ---- */

static int parse_int(const char *s, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	while (isspace((unsigned char)*end))
		end++;
	return end != s && *end == '\0' && errno != ERANGE;
}

static enum moe_status set_field(struct load *ld, const struct field *f, const char *value)
{
	char *dst = (char *)ld->obj + f->off;
	double d;
	long l;
	char *end;
	char nm[MOE_NAME_MAX + 64];

	snprintf(nm, sizeof nm, "%s%s.%s", ld->pre ? ld->pre : "", f->section, f->key);
	switch (f->type) {
	case F_STR:
		if (strlen(value) >= f->size)
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s: longer than %zu characters", ld->path,
				 ld->line, nm, f->size - 1);
		memcpy(dst, value, strlen(value) + 1);
		return MOE_OK;
	case F_BOOL:
		if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0)
			*(int *)dst = 1;
		else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "no") == 0)
			*(int *)dst = 0;
		else
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s: '%s': expected true or false", ld->path,
				 ld->line, nm, value);
		return MOE_OK;
	case F_ENUM:
		for (int i = 0; f->names[i]; i++)
			if (strcmp(f->names[i], value) == 0) {
				*(int *)dst = i;
				return MOE_OK;
			}
		{
			char list[256] = "";
			for (int i = 0; f->names[i]; i++) {
				strncat(list, f->names[i], sizeof list - strlen(list) - 1);
				if (f->names[i + 1]) strncat(list, ", ", sizeof list - strlen(list) - 1);
			}
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s: '%s': expected one of %s", ld->path, ld->line,
				 nm, value, list);
		}
	case F_INT:
		if (!parse_int(value, &l))
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s: '%s': expected an integer", ld->path,
				 ld->line, nm, value);
		if ((double)l < f->min || (double)l > f->max)
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s: %ld is out of range: expected %.0f to %.0f",
				 ld->path, ld->line, nm, l, f->min, f->max);
		*(int *)dst = (int)l;
		return MOE_OK;
	case F_DBL:
		errno = 0;
		d = strtod(value, &end);
		while (isspace((unsigned char)*end))
			end++;
		if (end == value || *end != '\0' || errno == ERANGE || d != d)
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s: '%s': expected a number", ld->path,
				 ld->line, nm, value);
		goto range;
	case F_QTY:
		if (moe_units_parse(value, f->unit, &d) != MOE_OK) {
			char why[512];
			snprintf(why, sizeof why, "%s", moe_errmsg());
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s: %s", ld->path, ld->line, nm,
				 why);
		}
		goto range;
	}
	return MOE_OK;
range:
	if (d < f->min || d > f->max)
		MOE_FAIL(MOE_ECONFIG, "%s:%d: %s: %g is out of range: expected %g to %g", ld->path,
			 ld->line, nm, d, f->min, f->max);
	*(double *)dst = d;
	return MOE_OK;
}

static int handle(struct load *ld, const char *section, const char *name, const char *value);

/* The sections a node group may override; the others describe the whole
 * cluster. */
static int node_section(const char *section)
{
	return strcmp(section, "gpu") == 0 || strcmp(section, "intra") == 0 ||
	       strcmp(section, "nic") == 0;
}

/* "group NAME" (or "group" alone, an error below) as a section name. */
static int group_section(const char *section)
{
	return strncmp(section, "group", 5) == 0 && (section[5] == '\0' || section[5] == ' ');
}

/* A key of a [group NAME] section: `nodes`, or SECTION.KEY for a field of
 * [gpu], [intra] or [nic].  Records its error in ld->st. */
static void handle_group(struct load *ld, const char *section, const char *name, const char *value)
{
	const char *gname = section + 5, *dot = strchr(name, '.');
	struct lgroup *g = NULL;
	char sec[32], pre[MOE_NAME_MAX + 16];
	size_t len;

	while (*gname == ' ')
		gname++;
	len = strlen(gname);
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)gname[i]) && gname[i] != '-' && gname[i] != '_' &&
		    gname[i] != '.')
			len = 0;
	if (len == 0 || len >= MOE_NAME_MAX) {
		ld->st = moe_error(MOE_ECONFIG, "%s:%d: [%s]: expected [group NAME], NAME of at most %d "
				   "letters, digits, '-', '_' or '.'", ld->path, ld->line, section,
				   MOE_NAME_MAX - 1);
		return;
	}
	for (int i = 0; i < ld->ngroups; i++)
		if (strcmp(ld->groups[i].name, gname) == 0)
			g = &ld->groups[i];
	if (g == NULL) {
		if (ld->ngroups == MOE_NODE_GROUPS_MAX) {
			ld->st = moe_error(MOE_ECONFIG, "%s:%d: group %s: more than %d node groups",
					   ld->path, ld->line, gname, MOE_NODE_GROUPS_MAX);
			return;
		}
		g = &ld->groups[ld->ngroups++];
		memset(g, 0, sizeof *g);
		memcpy(g->name, gname, len + 1);
		g->line = ld->line;
		g->file = ld->cur;
	}
	if (strcmp(name, "nodes") == 0) {
		long l;
		if (!parse_int(value, &l) || l < 1 || l > 1000000) {
			ld->st = moe_error(MOE_ECONFIG, "%s:%d: group %s: nodes: '%s': expected an integer "
					   "from 1 to 1000000", ld->path, ld->line, gname, value);
			return;
		}
		g->nodes = (int)l;
		g->nodes_line = ld->line;
		g->nodes_file = ld->cur;
		return;
	}
	if (dot != NULL && (size_t)(dot - name) < sizeof sec) {
		memcpy(sec, name, (size_t)(dot - name));
		sec[dot - name] = '\0';
		for (int i = 0; i < ld->nfields; i++) {
			const struct field *f = &ld->fields[i];
			void *obj = ld->obj;
			if (strcmp(f->section, sec) != 0 || strcmp(f->key, dot + 1) != 0)
				continue;
			if (!node_section(sec)) {
				ld->st = moe_error(MOE_ECONFIG, "%s:%d: group %s: %s: is the same for the whole "
						   "cluster: set it in [%s], not in a group", ld->path,
						   ld->line, gname, name, sec);
				return;
			}
			snprintf(pre, sizeof pre, "group %s: ", gname);
			ld->pre = pre;
			ld->obj = &g->over;
			ld->st = set_field(ld, f, value);
			ld->obj = obj;
			ld->pre = "";
			g->lines[i] = ld->line;
			g->file_of[i] = ld->cur;
			return;
		}
	}
	ld->st = moe_error(MOE_ECONFIG, "%s:%d: group %s: %s: unknown key: expected nodes or a gpu.*, "
			   "intra.* or nic.* field", ld->path, ld->line, gname, name);
}

/* moe_ini_parse's callback: handle() records its error in ld->st. */
static enum moe_status handler(void *user, const char *section, const char *name,
			       const char *value, int line)
{
	struct load *ld = user;

	ld->line = line;
	ld->st = MOE_OK;
	handle(ld, section, name, value);
	return ld->st;
}

static int handle(struct load *ld, const char *section, const char *name, const char *value)
{
	if (strcmp(name, "base") == 0) {
		char path[4096];
		if (ld->keys_seen > 0) {
			ld->st = moe_error(MOE_ECONFIG, "%s:%d: %s.base: must be the first key of the file",
					   ld->path, ld->line, section);
			return 1;
		}
		if (ld->depth >= MAX_DEPTH) {
			ld->st = moe_error(MOE_ECONFIG, "%s:%d: %s.base: presets nest deeper than %d",
					   ld->path, ld->line, section, MAX_DEPTH);
			return 1;
		}
		if ((ld->st = resolve(ld->kind, value, path, sizeof path)) != MOE_OK) {
			char why[1024];
			snprintf(why, sizeof why, "%s", moe_errmsg());
			ld->st = moe_error(ld->st == MOE_ENOTFOUND ? MOE_ECONFIG : ld->st, "%s:%d: %s.base: %s",
					   ld->path, ld->line, section, why);
			return 1;
		}
		{
			/* Load the base with this same state, then carry on here. */
			const char *saved_path = ld->path;
			int saved_line = ld->line, saved_cur = ld->cur;
			ld->depth++;
			ld->st = load_file(ld, path);
			ld->depth--;
			ld->path = saved_path;
			ld->line = saved_line;
			ld->cur = saved_cur;
			ld->keys_seen = 1;
		}
		return 1;
	}
	ld->keys_seen++;
	if (ld->groups != NULL && group_section(section)) {
		handle_group(ld, section, name, value);
		return 1;
	}
	for (int i = 0; i < ld->nfields; i++) {
		const struct field *f = &ld->fields[i];
		if (strcmp(f->section, section) == 0 && strcmp(f->key, name) == 0) {
			ld->st = set_field(ld, f, value);
			ld->lines[i] = ld->line;
			ld->file_of[i] = ld->cur;
			return 1;
		}
	}
	ld->st = moe_error(MOE_ECONFIG, "%s:%d: %s%s%s: unknown key", ld->path, ld->line, section,
			   *section ? "." : "", name);
	return 1;
}

static enum moe_status load_file(struct load *ld, const char *path)
{
	if (ld->npaths > MAX_DEPTH)
		MOE_FAIL(MOE_ECONFIG, "%s: presets nest deeper than %d", path, MAX_DEPTH);
	ld->cur = ld->npaths++;
	snprintf(ld->paths[ld->cur], sizeof ld->paths[ld->cur], "%s", path);
	ld->path = ld->paths[ld->cur];
	ld->keys_seen = 0;
	return moe_ini_parse(path, handler, ld);
}

/* ---- validation ---- */

static int field_index(const struct load *ld, const char *section, const char *key)
{
	for (int i = 0; i < ld->nfields; i++)
		if (strcmp(ld->fields[i].section, section) == 0 && strcmp(ld->fields[i].key, key) == 0)
			return i;
	return -1;
}

/* "file:line: section.key" for a field, pointing at where it was set.
 * While a node group is validated (ld->vgroup), "file:line: group NAME:
 * section.key", with "(from [section])" when the group inherits it. */
static const char *where(const struct load *ld, const char *section, const char *key,
			 char *buf, size_t n)
{
	int i = field_index(ld, section, key);
	const struct lgroup *g = ld->vgroup > 0 ? &ld->groups[ld->vgroup - 1] : NULL;

	if (g != NULL && i >= 0 && g->lines[i] > 0)
		snprintf(buf, n, "%s:%d: group %s: %s.%s", ld->paths[g->file_of[i]], g->lines[i],
			 g->name, section, key);
	else if (g != NULL && i >= 0 && ld->lines[i] > 0)
		snprintf(buf, n, "%s:%d: group %s: %s.%s (from [%s])", ld->paths[ld->file_of[i]],
			 ld->lines[i], g->name, section, key, section);
	else if (g != NULL)
		snprintf(buf, n, "%s: group %s: %s.%s", ld->path, g->name, section, key);
	else if (i >= 0 && ld->lines[i] > 0)
		snprintf(buf, n, "%s:%d: %s.%s", ld->paths[ld->file_of[i]], ld->lines[i], section, key);
	else
		snprintf(buf, n, "%s: %s.%s", ld->path, section, key);
	return buf;
}

/* Required fields set.  With node groups, a [gpu], [intra] or [nic] field
 * may instead be set in every group (each group checked by itself). */
static enum moe_status check_required(const struct load *ld)
{
	const struct lgroup *g = ld->vgroup > 0 ? &ld->groups[ld->vgroup - 1] : NULL;

	for (int i = 0; i < ld->nfields; i++) {
		const struct field *f = &ld->fields[i];
		int node = ld->ngroups > 0 && node_section(f->section);
		if (!f->required || ld->lines[i] > 0 || node != (g != NULL))
			continue;
		if (g == NULL)
			MOE_FAIL(MOE_ECONFIG, "%s: %s.%s: missing: expected %s", ld->path, f->section,
				 f->key, f->help);
		if (g->lines[i] == 0)
			MOE_FAIL(MOE_ECONFIG, "%s:%d: group %s: %s.%s: missing: expected %s, in the group "
				 "or in [%s]", ld->paths[g->file], g->line, g->name, f->section, f->key,
				 f->help, f->section);
	}
	return MOE_OK;
}

static enum moe_status validate_model(const struct load *ld, const struct moe_model *m)
{
	char w[4200];

	if (m->moe_layers > m->layers)
		MOE_FAIL(MOE_ECONFIG, "%s: %d is above model.layers (%d)",
			 where(ld, "model", "moe_layers", w, sizeof w), m->moe_layers, m->layers);
	if (m->top_k > m->experts)
		MOE_FAIL(MOE_ECONFIG, "%s: %d is above the number of experts (%d)",
			 where(ld, "moe", "top_k", w, sizeof w), m->top_k, m->experts);
	if (m->experts % m->groups != 0)
		MOE_FAIL(MOE_ECONFIG, "%s: %d does not divide the %d experts",
			 where(ld, "router", "groups", w, sizeof w), m->groups, m->experts);
	if (m->groups_per_token > m->groups)
		MOE_FAIL(MOE_ECONFIG, "%s: %d is above router.groups (%d)",
			 where(ld, "router", "groups_per_token", w, sizeof w), m->groups_per_token,
			 m->groups);
	if (m->top_k > m->groups_per_token * (m->experts / m->groups))
		MOE_FAIL(MOE_ECONFIG, "%s: %d experts cannot be picked from %d groups of %d",
			 where(ld, "moe", "top_k", w, sizeof w), m->top_k, m->groups_per_token,
			 m->experts / m->groups);
	if (m->shared_experts > 0 && m->shared_ffn == 0)
		MOE_FAIL(MOE_ECONFIG, "%s: missing: %d shared experts need their FFN size",
			 where(ld, "moe", "shared_ffn", w, sizeof w), m->shared_experts);
	if (m->moe_layers < m->layers && m->dense_ffn == 0)
		MOE_FAIL(MOE_ECONFIG, "%s: missing: %d dense blocks need their FFN size",
			 where(ld, "moe", "dense_ffn", w, sizeof w), m->layers - m->moe_layers);
	if (m->heads > 0 && (m->kv_heads == 0 || m->head_dim == 0 || m->heads % m->kv_heads != 0))
		MOE_FAIL(MOE_ECONFIG, "%s: %d must be set and divide attention.heads (%d), with head_dim",
			 where(ld, "attention", "kv_heads", w, sizeof w), m->kv_heads, m->heads);
	return MOE_OK;
}

static enum moe_status validate_cluster(const struct load *ld, const struct moe_cluster *c)
{
	char w[4200];

	if (c->nics > 0 && (c->nics > c->gpus_per_node || c->gpus_per_node % c->nics != 0))
		MOE_FAIL(MOE_ECONFIG, "%s: %d NICs do not fit %d GPUs per node: expected a divisor of %d",
			 where(ld, "nic", "count", w, sizeof w), c->nics, c->gpus_per_node,
			 c->gpus_per_node);
	if (c->nics > 0 && c->nic_Bps <= 0)
		MOE_FAIL(MOE_ECONFIG, "%s: missing: NICs need a bandwidth",
			 where(ld, "nic", "bw", w, sizeof w));
	if (c->nodes > 1 && c->nics == 0)
		MOE_FAIL(MOE_ECONFIG, "%s: %d nodes need at least one NIC each",
			 where(ld, "nic", "count", w, sizeof w), c->nodes);
	if (c->fabric != MOE_FABRIC_FAT_TREE && c->oversubscription > 1)
		MOE_FAIL(MOE_ECONFIG, "%s: %g applies only to fabric.kind = fat-tree",
			 where(ld, "fabric", "oversubscription", w, sizeof w), c->oversubscription);
	return MOE_OK;
}

/* The fields a node group has of its own, named as in struct moe_cluster:
 * one list for copying both ways. */
#define NODE_KIND_FIELDS \
	X(flops_bf16) \
	X(flops_fp8) \
	X(hbm_bytes) \
	X(hbm_Bps) \
	X(launch_s) \
	X(compute_efficiency) \
	X(m_half) \
	X(intra) \
	X(intra_Bps) \
	X(intra_lat_s) \
	X(intra_efficiency) \
	X(nics) \
	X(nic_Bps) \
	X(nic_lat_s) \
	X(nic_efficiency)

/* A group's figures from the cluster fields of the same names, and back. */
static void kind_from(struct moe_node_group *g, const struct moe_cluster *c)
{
	memcpy(g->gpu, c->gpu, sizeof g->gpu);
#define X(f) g->f = c->f;
	NODE_KIND_FIELDS
#undef X
}

static void kind_to(struct moe_cluster *c, const struct moe_node_group *g)
{
	memcpy(c->gpu, g->gpu, sizeof c->gpu);
#define X(f) c->f = g->f;
	NODE_KIND_FIELDS
#undef X
}

/* Resolves the node groups read into c->groups: each group's overrides
 * over the cluster's [gpu], [intra] and [nic] fields, checked as a
 * cluster of its own; the node counts adding up (to cluster.nodes when the
 * file itself sets it, and to the :NODES of spec, if any, which cannot
 * rescale groups); the same NIC count everywhere on a rail fabric.  Then
 * the cluster's own node fields take the first group's figures. */
static enum moe_status finish_groups(struct load *ld, struct moe_cluster *c, const char *spec,
				     long colon_nodes)
{
	struct moe_cluster *merged;
	char w[4200], list[1024] = "";
	long sum = 0;
	int ni = field_index(ld, "cluster", "nodes");
	enum moe_status st = MOE_OK;

	for (int i = 0; i < ld->ngroups; i++) {
		const struct lgroup *g = &ld->groups[i];
		char part[MOE_NAME_MAX + 32];
		if (g->nodes == 0)
			MOE_FAIL(MOE_ECONFIG, "%s:%d: group %s: nodes: missing: expected the group's node "
				 "count", ld->paths[g->file], g->line, g->name);
		sum += g->nodes;
		snprintf(part, sizeof part, "%s%s %d", i ? " + " : "", g->name, g->nodes);
		strncat(list, part, sizeof list - strlen(list) - 1);
	}
	if (sum > 1000000)
		MOE_FAIL(MOE_ECONFIG, "%s: node groups: %s = %ld nodes: expected at most 1000000",
			 ld->path, list, sum);
	/* a base preset's `nodes = 1  ; use NAME:N` is not about the groups */
	if (ld->lines[ni] > 0 && ld->file_of[ni] == 0 && c->nodes != sum)
		MOE_FAIL(MOE_ECONFIG, "%s: %d is not the sum of the node groups (%s = %ld): expected %ld "
			 "or no cluster.nodes", where(ld, "cluster", "nodes", w, sizeof w), c->nodes, list,
			 sum, sum);
	if (colon_nodes > 0 && colon_nodes != sum)
		MOE_FAIL(MOE_EINVAL, "cluster '%s': ':%ld' cannot rescale node groups (%s = %ld nodes): "
			 "expected :%ld, or a file with `base =` that sets each group's nodes", spec,
			 colon_nodes, list, sum, sum);
	c->nodes = (int)sum;
	if ((merged = malloc(sizeof *merged)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	for (int i = 0; i < ld->ngroups && st == MOE_OK; i++) {
		const struct lgroup *g = &ld->groups[i];
		*merged = *c;
		for (int j = 0; j < ld->nfields; j++)
			if (g->lines[j] > 0)
				memcpy((char *)merged + ld->fields[j].off, (const char *)&g->over +
				       ld->fields[j].off, ld->fields[j].size);
		ld->vgroup = i + 1;
		if ((st = check_required(ld)) != MOE_OK || (st = validate_cluster(ld, merged)) != MOE_OK)
			break;
		kind_from(&c->groups[i], merged);
		memcpy(c->groups[i].name, g->name, sizeof c->groups[i].name);
		c->groups[i].nodes = g->nodes;
		if (c->fabric == MOE_FABRIC_RAIL && merged->nics != c->groups[0].nics)
			st = moe_error(MOE_ECONFIG, "%s: %d, but group %s has %d: a rail fabric needs the "
				       "same NIC count on every node (one rail per NIC)",
				       where(ld, "nic", "count", w, sizeof w), merged->nics,
				       ld->groups[0].name, c->groups[0].nics);
	}
	ld->vgroup = 0;
	free(merged);
	if (st != MOE_OK)
		return st;
	c->ngroups = ld->ngroups;
	kind_to(c, &c->groups[0]);
	return MOE_OK;
}

static void model_defaults(struct moe_model *m)
{
	memset(m, 0, sizeof *m);
	m->router = MOE_ROUTER_SOFTMAX_TOPK;
	m->norm_topk = 1;
	m->routed_scaling = 1;
	m->groups = 1;
	m->groups_per_token = 1;
	m->activation = MOE_ACT_SWIGLU;
	m->act_bytes = m->dispatch_bytes = m->combine_bytes = 2;
	m->weight_bytes = 2;
}

static void cluster_defaults(struct moe_cluster *c)
{
	memset(c, 0, sizeof *c);
	c->nodes = 1;
	c->compute_efficiency = 0.7;
	c->m_half = 128;
	c->launch_s = 5e-6;
	c->intra_efficiency = 0.8;
	c->nic_efficiency = 0.8;
	c->fabric = MOE_FABRIC_NONBLOCKING;
	c->oversubscription = 1;
	c->nodes_per_leaf = 32;
}

enum moe_status moe_model_load(const char *name, struct moe_model *m)
{
	struct load *ld;
	char path[4096];
	struct moe_model tmp;
	enum moe_status st;

	if ((st = resolve(MOE_PRESET_MODEL, name, path, sizeof path)) != MOE_OK)
		return st;
	if ((ld = calloc(1, sizeof *ld)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	model_defaults(&tmp);
	ld->kind = MOE_PRESET_MODEL;
	ld->fields = model_fields;
	ld->nfields = NF(model_fields);
	ld->obj = &tmp;
	if ((st = load_file(ld, path)) == MOE_OK) {
		ld->path = ld->paths[0];
		if ((st = check_required(ld)) == MOE_OK)
			st = validate_model(ld, &tmp);
	}
	free(ld);
	if (st == MOE_OK)
		*m = tmp;
	return st;
}

enum moe_status moe_cluster_load(const char *spec, struct moe_cluster *c)
{
	struct load *ld;
	char name[4096], path[4096];
	const char *colon = strrchr(spec, ':');
	long nodes = 0;
	struct moe_cluster tmp;
	enum moe_status st;

	snprintf(name, sizeof name, "%s", spec);
	if (colon != NULL) {
		if (!parse_int(colon + 1, &nodes) || nodes < 1 || nodes > 1000000)
			MOE_FAIL(MOE_EINVAL, "cluster '%s': '%s' after ':' is not a node count from 1 to "
				 "1000000", spec, colon + 1);
		name[colon - spec] = '\0';
	}
	if ((st = resolve(MOE_PRESET_CLUSTER, name, path, sizeof path)) != MOE_OK)
		return st;
	if ((ld = calloc(1, sizeof *ld)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	cluster_defaults(&tmp);
	ld->kind = MOE_PRESET_CLUSTER;
	ld->fields = cluster_fields;
	ld->nfields = NF(cluster_fields);
	ld->obj = &tmp;
	ld->pre = "";
	if ((ld->groups = calloc(MOE_NODE_GROUPS_MAX, sizeof *ld->groups)) == NULL) {
		free(ld);
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	}
	if ((st = load_file(ld, path)) == MOE_OK) {
		ld->path = ld->paths[0];
		if (ld->ngroups > 0) {
			if ((st = check_required(ld)) == MOE_OK)
				st = finish_groups(ld, &tmp, spec, nodes);
		} else {
			if (nodes > 0)
				tmp.nodes = (int)nodes;
			if ((st = check_required(ld)) == MOE_OK)
				st = validate_cluster(ld, &tmp);
		}
	}
	free(ld->groups);
	free(ld);
	if (st == MOE_OK)
		*c = tmp;
	return st;
}

/* ---- node groups ---- */

int moe_cluster_kinds(const struct moe_cluster *c)
{
	return c->ngroups > 0 ? c->ngroups : 1;
}

int moe_cluster_kind_of(const struct moe_cluster *c, int node)
{
	int first = 0;

	assert(node >= 0);
	if (c->ngroups == 0)
		return 0;
	for (int i = 0; i < c->ngroups; i++) {
		first += c->groups[i].nodes;
		if (node < first)
			return i;
	}
	assert(!"node past the node groups");
	return c->ngroups - 1;
}

void moe_cluster_kind(const struct moe_cluster *c, int i, struct moe_node_group *out)
{
	assert(i >= 0 && i < moe_cluster_kinds(c));
	if (c->ngroups > 0) {
		*out = c->groups[i];
		return;
	}
	memset(out, 0, sizeof *out);
	kind_from(out, c);
	out->nodes = c->nodes;
}

void moe_cluster_narrow(struct moe_cluster *c, int gpus)
{
	int left;

	assert(gpus >= 1);
	if (gpus <= c->gpus_per_node) {
		/* one node: its GPUs talk over the node's fabric only */
		c->nodes = 1;
		c->gpus_per_node = gpus;
		c->nics = 0;
		for (int i = 0; i < c->ngroups; i++)
			c->groups[i].nics = 0;
	} else {
		c->nodes = gpus / c->gpus_per_node;
	}
	left = c->nodes;
	for (int i = 0; i < c->ngroups; i++) {
		if (left <= c->groups[i].nodes) {
			c->groups[i].nodes = left;
			c->ngroups = i + 1;
			break;
		}
		left -= c->groups[i].nodes;
	}
}

/* ---- plans ---- */

void moe_plan_default(struct moe_plan *p, const struct moe_model *m, const struct moe_cluster *c)
{
	int g = moe_cluster_gpus(c);

	memset(p, 0, sizeof *p);
	p->ep = g < m->experts ? g : m->experts;
	while (p->ep > 1 && m->experts % p->ep != 0)
		p->ep--;
	p->dp = 1;
	p->tp = 1;
	p->tokens_per_gpu = 4096;
	p->micro_batches = 1;
	p->placement = MOE_PLACE_CONTIGUOUS;
	p->phase = MOE_PHASE_FORWARD;
}

enum moe_status moe_plan_validate(const struct moe_plan *p, const struct moe_model *m,
				  const struct moe_cluster *c)
{
	int g = moe_cluster_gpus(c);

	if (p->ep < 1 || p->ep > g)
		MOE_FAIL(MOE_EINVAL, "--ep: %d is outside 1..%d, the GPUs of cluster %s", p->ep, g,
			 c->name);
	if (m->experts % p->ep != 0)
		MOE_FAIL(MOE_EINVAL, "--ep: %d does not divide the %d experts of %s", p->ep, m->experts,
			 m->name);
	if (p->tokens_per_gpu < 1)
		MOE_FAIL(MOE_EINVAL, "--tokens-per-gpu: expected at least 1, got %d", p->tokens_per_gpu);
	if (p->micro_batches < 1)
		MOE_FAIL(MOE_EINVAL, "--micro-batches: expected at least 1, got %d", p->micro_batches);
	return MOE_OK;
}

/* ---- names ---- */

static const char *name_of(const char *const *names, int n, int v)
{
	return v >= 0 && v < n ? names[v] : NULL;
}

const char *moe_router_name(enum moe_router r) { return name_of(router_names, 3, (int)r); }
const char *moe_intra_name(enum moe_intra_kind k) { return name_of(intra_names, 3, (int)k); }
const char *moe_fabric_name(enum moe_fabric_kind k) { return name_of(fabric_names, 3, (int)k); }
const char *moe_placement_name(enum moe_placement p) { return name_of(placement_names, 3, (int)p); }
const char *moe_phase_name(enum moe_phase p) { return name_of(phase_names, 4, (int)p); }

static int parse_name(const char *const *names, const char *s, int *out)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(names[i], s) == 0) {
			*out = i;
			return 1;
		}
	return 0;
}

int moe_placement_parse(const char *s, enum moe_placement *out)
{
	int v;

	if (!parse_name(placement_names, s, &v))
		return 0;
	*out = (enum moe_placement)v;
	return 1;
}

int moe_phase_parse(const char *s, enum moe_phase *out)
{
	int v;

	if (!parse_name(phase_names, s, &v))
		return 0;
	*out = (enum moe_phase)v;
	return 1;
}

/* ---- display ---- */

static void format_field(const struct field *f, const void *obj, char *buf, size_t n)
{
	const char *src = (const char *)obj + f->off;

	switch (f->type) {
	case F_STR: snprintf(buf, n, "%s", src); break;
	case F_INT: snprintf(buf, n, "%d", *(const int *)src); break;
	case F_BOOL: snprintf(buf, n, "%s", *(const int *)src ? "true" : "false"); break;
	case F_ENUM: snprintf(buf, n, "%s", f->names[*(const int *)src]); break;
	case F_DBL: snprintf(buf, n, "%g", *(const double *)src); break;
	case F_QTY: moe_units_format(*(const double *)src, f->unit, buf, n); break;
	}
}

static void each_field(const struct field *fields, int n, const void *obj, moe_field_fn fn,
		       void *user)
{
	char buf[MOE_TEXT_MAX + 32];

	for (int i = 0; i < n; i++) {
		format_field(&fields[i], obj, buf, sizeof buf);
		fn(user, fields[i].section, fields[i].key, buf, fields[i].help);
	}
}

void moe_model_each_field(const struct moe_model *m, moe_field_fn fn, void *user)
{
	each_field(model_fields, NF(model_fields), m, fn, user);
}

void moe_cluster_each_field(const struct moe_cluster *c, moe_field_fn fn, void *user)
{
	struct moe_cluster *k;

	each_field(cluster_fields, NF(cluster_fields), c, fn, user);
	if (c->ngroups == 0 || (k = malloc(sizeof *k)) == NULL)
		return;
	/* each group's resolved figures, through the cluster's field table */
	for (int i = 0; i < c->ngroups; i++) {
		char sec[MOE_NAME_MAX + 8], n[32], buf[MOE_TEXT_MAX + 32];
		*k = *c;
		kind_to(k, &c->groups[i]);
		snprintf(sec, sizeof sec, "group %s", c->groups[i].name);
		snprintf(n, sizeof n, "%d", c->groups[i].nodes);
		fn(user, sec, "nodes", n, "nodes in the group");
		for (int j = 0; j < NF(cluster_fields); j++) {
			const struct field *f = &cluster_fields[j];
			char key[64];
			if (!node_section(f->section))
				continue;
			format_field(f, k, buf, sizeof buf);
			snprintf(key, sizeof key, "%s.%s", f->section, f->key);
			fn(user, sec, key, buf, f->help);
		}
	}
	free(k);
}
