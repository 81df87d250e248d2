/* reports/data.c: reads runs and their rows from the results store into
 * memory (struct rrun) through the store's row callbacks, so the figure
 * writers work on plain arrays. */
#include "config.h"
#include "reports/report_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const report_layer_cols[RL_N] = {
	"dispatch_s", "compute_s", "combine_s", "other_s", "exposed_s", "total_s",
	"dispatch_bytes", "combine_bytes", "network_bytes", "tokens", "dropped", "imbalance",
};

/* Column lookup within one row callback. */
struct row {
	int n;
	const char *const *names, *const *vals;
};

static const char *str_of(const struct row *r, const char *col)
{
	for (int i = 0; i < r->n; i++)
		if (strcmp(r->names[i], col) == 0)
			return r->vals[i];
	return NULL;
}

static double num_of(const struct row *r, const char *col)
{
	const char *v = str_of(r, col);
	return v ? strtod(v, NULL) : NAN;
}

static char *dup_of(const struct row *r, const char *col, int *oom)
{
	const char *v = str_of(r, col);
	char *d;

	if (v == NULL)
		return NULL;
	if ((d = strdup(v)) == NULL)
		*oom = 1;
	return d;
}

/* Grows an array by one element; returns the new slot or NULL. */
static void *grow(void **arr, size_t *n, size_t *cap, size_t size)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		void *p = realloc(*arr, c * size);
		if (p == NULL)
			return NULL;
		*arr = p;
		*cap = c;
	}
	memset((char *)*arr + *n * size, 0, size);
	return (char *)*arr + (*n)++ * size;
}

struct loader {
	struct rrun *r;
	size_t cap;
	int oom;
};

#define SLOT(L, field, count) \
	grow((void **)&(L)->r->field, &(L)->r->count, &(L)->cap, sizeof *(L)->r->field)

static int run_row(void *user, int n, const char *const *names, const char *const *values,
		   const int *is_num)
{
	struct loader *L = user;
	struct row row = {n, names, values};
	struct rrun *r = L->r;

	(void)is_num;
	r->kind = dup_of(&row, "kind", &L->oom);
	r->status = dup_of(&row, "status", &L->oom);
	r->label = dup_of(&row, "label", &L->oom);
	r->model = dup_of(&row, "model", &L->oom);
	r->cluster = dup_of(&row, "cluster", &L->oom);
	r->inputs_text = dup_of(&row, "inputs", &L->oom);
	r->started_at = dup_of(&row, "started_at", &L->oom);
	r->seed = dup_of(&row, "seed", &L->oom);
	return L->oom;
}

static int layer_row(void *user, int n, const char *const *names, const char *const *values,
		     const int *is_num)
{
	struct loader *L = user;
	struct row row = {n, names, values};
	struct rlayer *x = SLOT(L, layers, nlayers);

	(void)is_num;
	if (x == NULL)
		return L->oom = 1;
	x->layer = (int)num_of(&row, "layer");
	x->phase = dup_of(&row, "phase", &L->oom);
	for (int c = 0; c < RL_N; c++)
		x->v[c] = num_of(&row, report_layer_cols[c]);
	return L->oom;
}

static int gpu_row(void *user, int n, const char *const *names, const char *const *values,
		   const int *is_num)
{
	struct loader *L = user;
	struct row row = {n, names, values};
	struct rgpu *x = SLOT(L, gpus, ngpus);

	(void)is_num;
	if (x == NULL)
		return L->oom = 1;
	x->gpu = (int)num_of(&row, "gpu");
	x->node = (int)num_of(&row, "node");
	x->busy_s = num_of(&row, "busy_s");
	x->idle_s = num_of(&row, "idle_s");
	x->compute_s = num_of(&row, "compute_s");
	x->tokens = num_of(&row, "tokens");
	x->sent = num_of(&row, "bytes_sent");
	x->received = num_of(&row, "bytes_received");
	return 0;
}

static int link_row(void *user, int n, const char *const *names, const char *const *values,
		    const int *is_num)
{
	struct loader *L = user;
	struct row row = {n, names, values};
	struct rlink *x = SLOT(L, links, nlinks);

	(void)is_num;
	if (x == NULL)
		return L->oom = 1;
	x->link = (int)num_of(&row, "link");
	x->name = dup_of(&row, "name", &L->oom);
	x->kind = dup_of(&row, "kind", &L->oom);
	x->bw_Bps = num_of(&row, "bw_Bps");
	x->bytes = num_of(&row, "bytes");
	x->busy_s = num_of(&row, "busy_s");
	x->utilization = num_of(&row, "utilization");
	return L->oom;
}

static int sample_row(void *user, int n, const char *const *names, const char *const *values,
		      const int *is_num)
{
	struct loader *L = user;
	struct row row = {n, names, values};
	struct rsample *x = SLOT(L, samples, nsamples);

	(void)is_num;
	if (x == NULL)
		return L->oom = 1;
	x->link = (int)num_of(&row, "link");
	x->t_s = num_of(&row, "t_s");
	x->utilization = num_of(&row, "utilization");
	return 0;
}

static int expert_row(void *user, int n, const char *const *names, const char *const *values,
		      const int *is_num)
{
	struct loader *L = user;
	struct row row = {n, names, values};
	struct rexpert *x = SLOT(L, experts, nexperts);

	(void)is_num;
	if (x == NULL)
		return L->oom = 1;
	x->layer = (int)num_of(&row, "layer");
	x->expert = (int)num_of(&row, "expert");
	x->gpu = (int)num_of(&row, "gpu");
	x->tokens = num_of(&row, "tokens");
	x->dropped = num_of(&row, "dropped");
	return 0;
}

static int stage_row(void *user, int n, const char *const *names, const char *const *values,
		     const int *is_num)
{
	struct loader *L = user;
	struct row row = {n, names, values};
	struct rstage *x = SLOT(L, stages, nstages);

	(void)is_num;
	if (x == NULL)
		return L->oom = 1;
	x->stage = dup_of(&row, "stage", &L->oom);
	x->reps = (int)num_of(&row, "reps");
	x->median_s = num_of(&row, "median_s");
	x->p10_s = num_of(&row, "p10_s");
	x->p90_s = num_of(&row, "p90_s");
	x->min_s = num_of(&row, "min_s");
	x->gflops = num_of(&row, "gflops");
	x->tokens = num_of(&row, "tokens");
	x->has_gflops = str_of(&row, "gflops") != NULL;
	x->has_tokens = str_of(&row, "tokens") != NULL;
	return L->oom;
}

static int metric_row(void *user, int n, const char *const *names, const char *const *values,
		      const int *is_num)
{
	struct loader *L = user;
	struct row row = {n, names, values};
	struct rmetric *x = SLOT(L, metrics, nmetrics);

	(void)is_num;
	if (x == NULL)
		return L->oom = 1;
	x->name = dup_of(&row, "name", &L->oom);
	x->unit = dup_of(&row, "unit", &L->oom);
	x->value = num_of(&row, "value");
	if (x->name == NULL && !L->oom)
		x->name = strdup("");
	return L->oom;
}

static int span_row(void *user, int n, const char *const *names, const char *const *values,
		    const int *is_num)
{
	struct loader *L = user;
	struct row row = {n, names, values};
	struct rspan *x = SLOT(L, spans, nspans);

	(void)is_num;
	if (x == NULL)
		return L->oom = 1;
	x->track = dup_of(&row, "track", &L->oom);
	x->name = dup_of(&row, "name", &L->oom);
	x->cat = dup_of(&row, "cat", &L->oom);
	x->start_s = num_of(&row, "start_s");
	x->dur_s = num_of(&row, "dur_s");
	return L->oom;
}

enum moe_status rrun_load(struct store *db, int64_t id, struct rrun *r)
{
	static const struct {
		const char *table;
		store_row_fn fn;
	} tables[] = {
		{"layers", layer_row}, {"gpus", gpu_row}, {"links", link_row},
		{"link_samples", sample_row}, {"experts", expert_row}, {"stages", stage_row},
		{"metrics", metric_row}, {"spans", span_row},
	};
	struct loader L = {r, 0, 0};
	enum moe_status st;

	memset(r, 0, sizeof *r);
	r->id = id;
	if ((st = store_run_each(db, id, run_row, &L)) != MOE_OK)
		return st;
	if (L.oom)
		MOE_FAIL(MOE_ENOMEM, "reading run %lld: out of memory", (long long)id);
	for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
		L.cap = 0;
		if ((st = store_rows_each(db, id, tables[i].table, tables[i].fn, &L)) != MOE_OK)
			return st;
		if (L.oom)
			MOE_FAIL(MOE_ENOMEM, "reading run %lld: out of memory", (long long)id);
	}
	if (r->inputs_text != NULL) {
		json_error_t e;
		r->inputs = json_loads(r->inputs_text, 0, &e);
	}
	/* The store only accepts objects; anything else is treated as empty. */
	if (r->inputs == NULL || !json_is_object(r->inputs)) {
		json_decref(r->inputs);
		r->inputs = json_object();
	}
	return MOE_OK;
}

void rrun_release(struct rrun *r)
{
	if (r == NULL)
		return;
	free(r->kind);
	free(r->status);
	free(r->label);
	free(r->model);
	free(r->cluster);
	free(r->inputs_text);
	free(r->started_at);
	free(r->seed);
	json_decref(r->inputs);
	for (size_t i = 0; i < r->nlayers; i++)
		free(r->layers[i].phase);
	free(r->layers);
	free(r->gpus);
	for (size_t i = 0; i < r->nlinks; i++) {
		free(r->links[i].name);
		free(r->links[i].kind);
	}
	free(r->links);
	free(r->samples);
	free(r->experts);
	for (size_t i = 0; i < r->nstages; i++)
		free(r->stages[i].stage);
	free(r->stages);
	for (size_t i = 0; i < r->nmetrics; i++) {
		free(r->metrics[i].name);
		free(r->metrics[i].unit);
	}
	free(r->metrics);
	for (size_t i = 0; i < r->nspans; i++) {
		free(r->spans[i].track);
		free(r->spans[i].name);
		free(r->spans[i].cat);
	}
	free(r->spans);
	memset(r, 0, sizeof *r);
}

struct idlist {
	int64_t *ids;
	size_t n, cap;
	int oom;
};

static int done_row(void *user, int n, const char *const *names, const char *const *values,
		    const int *is_num)
{
	struct idlist *l = user;
	struct row row = {n, names, values};
	const char *status = str_of(&row, "status");
	int64_t *slot;

	(void)is_num;
	if (status == NULL || strcmp(status, "done") != 0)
		return 0;
	if ((slot = grow((void **)&l->ids, &l->n, &l->cap, sizeof *l->ids)) == NULL)
		return l->oom = 1;
	*slot = strtoll(str_of(&row, "id"), NULL, 10);
	return 0;
}

enum moe_status rrun_load_set(struct store *db, const int64_t *ids, size_t n,
			      struct rrun **runs, size_t *nruns)
{
	struct idlist all = {0};
	enum moe_status st;
	struct rrun *rs;

	*runs = NULL;
	*nruns = 0;
	if (n == 0) {
		if ((st = store_runs_each(db, done_row, &all)) != MOE_OK) {
			free(all.ids);
			return st;
		}
		if (all.oom) {
			free(all.ids);
			MOE_FAIL(MOE_ENOMEM, "listing runs: out of memory");
		}
		if (all.n == 0)
			MOE_FAIL(MOE_ENOTFOUND, "the store holds no done runs: nothing to draw");
		ids = all.ids;
		n = all.n;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < i; j++)
			if (ids[i] == ids[j]) {
				free(all.ids);
				MOE_FAIL(MOE_EINVAL, "run %lld is listed twice", (long long)ids[i]);
			}
	if ((rs = calloc(n, sizeof *rs)) == NULL) {
		free(all.ids);
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		st = rrun_load(db, ids[i], &rs[i]);
		if (st == MOE_OK && (rs[i].status == NULL || strcmp(rs[i].status, "done") != 0))
			st = moe_error(MOE_EINVAL, "run %lld is '%s', not done: it has no results",
				       (long long)ids[i], rs[i].status ? rs[i].status : "?");
		if (st != MOE_OK) {
			rrun_free_set(rs, i + 1);
			free(all.ids);
			return st;
		}
	}
	free(all.ids);
	*runs = rs;
	*nruns = n;
	return MOE_OK;
}

void rrun_free_set(struct rrun *runs, size_t n)
{
	for (size_t i = 0; runs && i < n; i++)
		rrun_release(&runs[i]);
	free(runs);
}

const struct rmetric *rrun_metric(const struct rrun *r, const char *name)
{
	for (size_t i = 0; i < r->nmetrics; i++)
		if (strcmp(r->metrics[i].name, name) == 0)
			return &r->metrics[i];
	return NULL;
}

double rrun_layer_sum(const struct rrun *r, int c)
{
	double s = 0;
	int any = 0;

	/* As SQL's sum(): missing values (NULL, read as NAN) are left out; no
	 * value at all gives NAN. */
	for (size_t i = 0; i < r->nlayers; i++)
		if (isfinite(r->layers[i].v[c])) {
			s += r->layers[i].v[c];
			any = 1;
		}
	return any ? s : NAN;
}

const char *rrun_title(const struct rrun *r, char *buf, size_t n)
{
	if (r->label && r->label[0])
		snprintf(buf, n, "run %lld: %s", (long long)r->id, r->label);
	else
		snprintf(buf, n, "run %lld", (long long)r->id);
	return buf;
}
