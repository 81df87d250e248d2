/* moe/spec.c: loading model and cluster specs from INI files (libinih)
 * through a table of typed fields, with presets, `base =` inheritance,
 * range checks, consistency rules and file:line error messages. */
#include "config.h"
#include "moe/ini.h"
#include "moe/model.h"
#include "moe/preset.h"
#include "moe/units.h"

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

	switch (f->type) {
	case F_STR:
		if (strlen(value) >= f->size)
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s.%s: longer than %zu characters", ld->path,
				 ld->line, f->section, f->key, f->size - 1);
		memcpy(dst, value, strlen(value) + 1);
		return MOE_OK;
	case F_BOOL:
		if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0)
			*(int *)dst = 1;
		else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "no") == 0)
			*(int *)dst = 0;
		else
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s.%s: '%s': expected true or false", ld->path,
				 ld->line, f->section, f->key, value);
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
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s.%s: '%s': expected one of %s", ld->path, ld->line,
				 f->section, f->key, value, list);
		}
	case F_INT:
		if (!parse_int(value, &l))
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s.%s: '%s': expected an integer", ld->path,
				 ld->line, f->section, f->key, value);
		if ((double)l < f->min || (double)l > f->max)
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s.%s: %ld is out of range: expected %.0f to %.0f",
				 ld->path, ld->line, f->section, f->key, l, f->min, f->max);
		*(int *)dst = (int)l;
		return MOE_OK;
	case F_DBL:
		errno = 0;
		d = strtod(value, &end);
		while (isspace((unsigned char)*end))
			end++;
		if (end == value || *end != '\0' || errno == ERANGE || d != d)
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s.%s: '%s': expected a number", ld->path,
				 ld->line, f->section, f->key, value);
		goto range;
	case F_QTY:
		if (moe_units_parse(value, f->unit, &d) != MOE_OK) {
			char why[512];
			snprintf(why, sizeof why, "%s", moe_errmsg());
			MOE_FAIL(MOE_ECONFIG, "%s:%d: %s.%s: %s", ld->path, ld->line, f->section, f->key,
				 why);
		}
		goto range;
	}
	return MOE_OK;
range:
	if (d < f->min || d > f->max)
		MOE_FAIL(MOE_ECONFIG, "%s:%d: %s.%s: %g is out of range: expected %g to %g", ld->path,
			 ld->line, f->section, f->key, d, f->min, f->max);
	*(double *)dst = d;
	return MOE_OK;
}

static int handle(struct load *ld, const char *section, const char *name, const char *value);

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

/* "file:line: section.key: " for a field, pointing at where it was set. */
static const char *where(const struct load *ld, const char *section, const char *key,
			 char *buf, size_t n)
{
	int i = field_index(ld, section, key);

	if (i >= 0 && ld->lines[i] > 0)
		snprintf(buf, n, "%s:%d: %s.%s", ld->paths[ld->file_of[i]], ld->lines[i], section, key);
	else
		snprintf(buf, n, "%s: %s.%s", ld->path, section, key);
	return buf;
}

static enum moe_status check_required(const struct load *ld)
{
	for (int i = 0; i < ld->nfields; i++)
		if (ld->fields[i].required && ld->lines[i] == 0)
			MOE_FAIL(MOE_ECONFIG, "%s: %s.%s: missing: expected %s", ld->path,
				 ld->fields[i].section, ld->fields[i].key, ld->fields[i].help);
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
	if ((st = load_file(ld, path)) == MOE_OK) {
		ld->path = ld->paths[0];
		if (nodes > 0)
			tmp.nodes = (int)nodes;
		if ((st = check_required(ld)) == MOE_OK)
			st = validate_cluster(ld, &tmp);
	}
	free(ld);
	if (st == MOE_OK)
		*c = tmp;
	return st;
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

static void each_field(const struct field *fields, int n, const void *obj, moe_field_fn fn,
		       void *user)
{
	char buf[MOE_TEXT_MAX + 32];

	for (int i = 0; i < n; i++) {
		const struct field *f = &fields[i];
		const char *src = (const char *)obj + f->off;
		switch (f->type) {
		case F_STR: snprintf(buf, sizeof buf, "%s", src); break;
		case F_INT: snprintf(buf, sizeof buf, "%d", *(const int *)src); break;
		case F_BOOL: snprintf(buf, sizeof buf, "%s", *(const int *)src ? "true" : "false"); break;
		case F_ENUM: snprintf(buf, sizeof buf, "%s", f->names[*(const int *)src]); break;
		case F_DBL: snprintf(buf, sizeof buf, "%g", *(const double *)src); break;
		case F_QTY: moe_units_format(*(const double *)src, f->unit, buf, sizeof buf); break;
		}
		fn(user, f->section, f->key, buf, f->help);
	}
}

void moe_model_each_field(const struct moe_model *m, moe_field_fn fn, void *user)
{
	each_field(model_fields, NF(model_fields), m, fn, user);
}

void moe_cluster_each_field(const struct moe_cluster *c, moe_field_fn fn, void *user)
{
	each_field(cluster_fields, NF(cluster_fields), c, fn, user);
}
