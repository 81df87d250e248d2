/* reports/compare.c: the comparison behind `moekit compare`: the input
 * parameters in which runs differ (their runs.inputs JSON, flattened to
 * dotted keys) and their results (metrics and sums over layers), with
 * differences against the first run. */
#include "config.h"
#include "reports/report.h"
#include "reports/report_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A run's inputs flattened: dotted key -> JSON value (borrowed). */
struct leaf { char *key, *text; json_t *v; };
struct leaves { struct leaf *a; size_t n, cap; int oom; };

static void collect_leaf(void *user, const char *key, const char *text, json_t *v)
{
	struct leaves *l = user;

	if (l->oom)
		return;
	if (l->n == l->cap) {
		size_t c = l->cap ? l->cap * 2 : 32;
		struct leaf *p = realloc(l->a, c * sizeof *p);
		if (p == NULL) {
			l->oom = 1;
			return;
		}
		l->a = p;
		l->cap = c;
	}
	l->a[l->n].key = strdup(key);
	l->a[l->n].text = strdup(text ? text : "null");
	l->a[l->n].v = v;
	if (l->a[l->n].key == NULL || l->a[l->n].text == NULL) {
		free(l->a[l->n].key);
		free(l->a[l->n].text);
		l->oom = 1;
		return;
	}
	l->n++;
}

static const struct leaf *leaf_find(const struct leaves *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->a[i].key, key) == 0)
			return &l->a[i];
	return NULL;
}

static void leaves_release(struct leaves *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->a[i].key);
		free(l->a[i].text);
	}
	free(l->a);
}

static struct report_cmp_row *row_add(struct report_cmp *c, const char *kind, const char *name,
				      const char *unit)
{
	struct report_cmp_row *p = realloc(c->rows, (c->nrows + 1) * sizeof *p), *r;

	if (p == NULL)
		return NULL;
	c->rows = p;
	r = &p[c->nrows];
	memset(r, 0, sizeof *r);
	r->kind = strdup(kind);
	r->name = strdup(name);
	r->unit = strdup(unit ? unit : "");
	r->text = calloc(c->nruns, sizeof *r->text);
	r->value = malloc(c->nruns * sizeof *r->value);
	c->nrows++;
	if (!r->kind || !r->name || !r->unit || !r->text || !r->value)
		return NULL;
	r->numeric = 1;
	for (size_t i = 0; i < c->nruns; i++)
		r->value[i] = NAN;
	return r;
}

static int row_set(struct report_cmp_row *r, size_t i, const char *text, double v, int is_num)
{
	if (text == NULL)
		return 1;
	if ((r->text[i] = strdup(text)) == NULL)
		return 0;
	r->value[i] = is_num ? v : NAN;
	if (!is_num)
		r->numeric = 0;
	return 1;
}

static const char *const layer_units[RL_N] = {"s", "s", "s", "s", "s", "s", "B", "B", "B",
					      "tokens", "tokens", "ratio"};

enum moe_status report_cmp_build(struct store *db, const int64_t *ids, size_t n,
				 struct report_cmp *out)
{
	struct rrun *runs = NULL;
	struct leaves *lv = NULL;
	size_t nruns = 0;
	enum moe_status st;
	int oom = 0;

	memset(out, 0, sizeof *out);
	if (n < 2)
		MOE_FAIL(MOE_EINVAL, "compare needs at least two runs");
	if ((st = rrun_load_set(db, ids, n, &runs, &nruns)) != MOE_OK)
		return st;
	for (size_t i = 1; i < nruns; i++)
		if (strcmp(runs[i].model ? runs[i].model : "", runs[0].model ? runs[0].model : "")) {
			st = moe_error(MOE_EINVAL, "runs %lld (%s) and %lld (%s) are of different "
				       "models: compare runs of one model",
				       (long long)runs[0].id, runs[0].model ? runs[0].model : "no model",
				       (long long)runs[i].id, runs[i].model ? runs[i].model : "no model");
			rrun_free_set(runs, nruns);
			return st;
		}
	out->nruns = nruns;
	out->ids = malloc(nruns * sizeof *out->ids);
	out->labels = calloc(nruns, sizeof *out->labels);
	lv = calloc(nruns, sizeof *lv);
	if (!out->ids || !out->labels || !lv) {
		oom = 1;
		goto done;
	}
	for (size_t i = 0; i < nruns; i++) {
		char t[512];
		out->ids[i] = runs[i].id;
		out->labels[i] = strdup(rrun_title(&runs[i], t, sizeof t));
		oom |= out->labels[i] == NULL;
		report_json_leaves(runs[i].inputs, collect_leaf, &lv[i]);
		oom |= lv[i].oom;
	}
	if (oom)
		goto done;

	/* Run fields that may differ: kind, cluster, seed. */
	{
		const char *names[] = {"kind", "cluster", "seed"};
		for (int f = 0; f < 3 && !oom; f++) {
			int differ = 0;
			const char *v0 = f == 0 ? runs[0].kind : f == 1 ? runs[0].cluster : runs[0].seed;
			for (size_t i = 1; i < nruns; i++) {
				const char *v = f == 0 ? runs[i].kind : f == 1 ? runs[i].cluster
									     : runs[i].seed;
				differ |= strcmp(v ? v : "", v0 ? v0 : "") != 0;
			}
			if (differ) {
				struct report_cmp_row *r = row_add(out, "run", names[f], "");
				for (size_t i = 0; r && i < nruns; i++) {
					const char *v = f == 0 ? runs[i].kind : f == 1 ? runs[i].cluster
										     : runs[i].seed;
					if (!row_set(r, i, v, v ? strtod(v, NULL) : NAN, f == 2))
						r = NULL;
				}
				oom |= r == NULL;
			}
		}
	}
	/* Parameters: every key any run has, in sorted order of first run then
	 * the keys only later runs have. */
	for (size_t i = 0; i < nruns && !oom; i++)
		for (size_t k = 0; k < lv[i].n && !oom; k++) {
			const char *key = lv[i].a[k].key;
			int seen = 0, differ = 0;
			for (size_t j = 0; j < i && !seen; j++)
				seen = leaf_find(&lv[j], key) != NULL;
			if (seen)
				continue;
			for (size_t j = 0; j < nruns; j++) {
				const struct leaf *a = leaf_find(&lv[j], key), *b = leaf_find(&lv[0], key);
				differ |= (a == NULL) != (b == NULL) || (a && b && !json_equal(a->v, b->v));
			}
			if (!differ)
				continue;
			{
				struct report_cmp_row *r = row_add(out, "param", key, "");
				for (size_t j = 0; r && j < nruns; j++) {
					const struct leaf *a = leaf_find(&lv[j], key);
					if (!row_set(r, j, a ? a->text : NULL,
						     a && json_is_number(a->v) ? json_number_value(a->v)
									       : NAN,
						     a && json_is_number(a->v)))
						r = NULL;
				}
				oom |= r == NULL;
			}
		}
	/* Metrics, in the order runs stored them. */
	for (size_t i = 0; i < nruns && !oom; i++)
		for (size_t k = 0; k < runs[i].nmetrics && !oom; k++) {
			const struct rmetric *m = &runs[i].metrics[k];
			int seen = 0;
			struct report_cmp_row *r;
			for (size_t j = 0; j < i && !seen; j++)
				seen = rrun_metric(&runs[j], m->name) != NULL;
			/* A run that stored a metric twice shows its first value. */
			for (size_t q = 0; q < k && !seen; q++)
				seen = strcmp(runs[i].metrics[q].name, m->name) == 0;
			if (seen)
				continue;
			r = row_add(out, "metric", m->name, m->unit);
			for (size_t j = 0; r && j < nruns; j++) {
				const struct rmetric *x = rrun_metric(&runs[j], m->name);
				char t[64];
				/* A NULL in the store (read as NAN) is a missing value. */
				int have = x && isfinite(x->value);
				if (have)
					snprintf(t, sizeof t, "%.15g", x->value);
				if (!row_set(r, j, have ? t : NULL, have ? x->value : NAN, 1))
					r = NULL;
			}
			oom |= r == NULL;
		}
	/* Sums over layers (the largest imbalance). */
	{
		int any = 0;
		for (size_t i = 0; i < nruns; i++)
			any |= runs[i].nlayers > 0;
		for (int col = 0; any && col < RL_N && !oom; col++) {
			char name[64];
			struct report_cmp_row *r;
			snprintf(name, sizeof name, "%s %s", col == RL_IMBALANCE ? "max" : "sum",
				 report_layer_cols[col]);
			r = row_add(out, "layers", name, layer_units[col]);
			for (size_t j = 0; r && j < nruns; j++) {
				double v = -INFINITY;
				char t[64];
				if (runs[j].nlayers == 0)
					continue;
				if (col == RL_IMBALANCE) {
					for (size_t l = 0; l < runs[j].nlayers; l++) {
						double x = runs[j].layers[l].v[col];
						v = x > v ? x : v; /* NAN compares false: left out */
					}
				} else {
					v = rrun_layer_sum(&runs[j], col);
				}
				snprintf(t, sizeof t, "%.15g", v);
				if (!row_set(r, j, isfinite(v) ? t : NULL, v, 1))
					r = NULL;
			}
			oom |= r == NULL;
		}
	}
done:
	for (size_t i = 0; lv && i < nruns; i++)
		leaves_release(&lv[i]);
	free(lv);
	rrun_free_set(runs, nruns);
	if (oom) {
		report_cmp_release(out);
		MOE_FAIL(MOE_ENOMEM, "compare: out of memory");
	}
	return MOE_OK;
}

void report_cmp_release(struct report_cmp *c)
{
	if (c == NULL)
		return;
	for (size_t r = 0; r < c->nrows; r++) {
		for (size_t i = 0; c->rows[r].text && i < c->nruns; i++)
			free(c->rows[r].text[i]);
		free(c->rows[r].text);
		free(c->rows[r].value);
		free(c->rows[r].kind);
		free(c->rows[r].name);
		free(c->rows[r].unit);
	}
	free(c->rows);
	for (size_t i = 0; c->labels && i < c->nruns; i++)
		free(c->labels[i]);
	free(c->labels);
	free(c->ids);
	memset(c, 0, sizeof *c);
}

int report_cmp_delta(const struct report_cmp_row *r, size_t i, double *abs_d, double *rel_d)
{
	double v0 = r->value[0], v = r->value[i];

	*abs_d = NAN;
	*rel_d = NAN;
	if (!isfinite(v0) || !isfinite(v))
		return 0;
	*abs_d = v - v0;
	*rel_d = v0 != 0 ? (v - v0) / fabs(v0) : NAN;
	return 1;
}
