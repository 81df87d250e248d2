/* study/calibrate.c: least-squares fits of the compute curve and the link
 * latency/bandwidth to profile runs, and the cluster file they make.  The
 * mathematics is in calibrate.h. */
#include "config.h"
#include "study/calibrate.h"

#include <errno.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_fit.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

/* ------------------------------------------------------------ the fit */

enum moe_status study_calib_fit_line(const double *x, const double *y, size_t n, const char *what,
				     struct study_calib_fit *out)
{
	double *w = NULL, c0, c1, cov00, cov01, cov11, chisq, ybar = 0, wsum = 0, sst = 0, ssr = 0;
	double rel2 = 0, maxrel = 0;
	int distinct = 0, gst;
	gsl_error_handler_t *old;

	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < n; i++) {
		int seen = 0;
		if (!(y[i] > 0) || !isfinite(y[i]) || !isfinite(x[i]))
			MOE_FAIL(MOE_EINVAL, "%s: point %zu: time %g is not positive and finite", what,
				 i + 1, y[i]);
		for (size_t j = 0; j < i && !seen; j++)
			seen = x[j] == x[i];
		distinct += !seen;
	}
	if (distinct < 3)
		MOE_FAIL(MOE_EINVAL, "%s: needs at least 3 points with distinct x for a fit with "
			 "residuals, found %d (%zu measurements)", what, distinct, n);
	if (!(w = malloc(n * sizeof *w)))
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", what);
	for (size_t i = 0; i < n; i++)
		w[i] = 1 / (y[i] * y[i]);
	old = gsl_set_error_handler_off();
	gst = gsl_fit_wlinear(x, 1, w, 1, y, 1, n, &c0, &c1, &cov00, &cov01, &cov11, &chisq);
	gsl_set_error_handler(old);
	if (gst != GSL_SUCCESS) {
		free(w);
		MOE_FAIL(MOE_ERUNTIME, "%s: gsl_fit_wlinear: %s", what, gsl_strerror(gst));
	}
	/* the weights fix only the relative sizes of the errors: scale the
	 * covariance by the reduced chi-square (the scatter about the line) */
	{
		double s2 = n > 2 ? chisq / (double)(n - 2) : 0;
		cov00 *= s2;
		cov01 *= s2;
		cov11 *= s2;
	}
	for (size_t i = 0; i < n; i++) {
		ybar += w[i] * y[i];
		wsum += w[i];
	}
	ybar /= wsum;
	for (size_t i = 0; i < n; i++) {
		double f = c0 + c1 * x[i], r = (f - y[i]) / y[i];
		sst += w[i] * (y[i] - ybar) * (y[i] - ybar);
		ssr += w[i] * (y[i] - f) * (y[i] - f);
		rel2 += r * r;
		if (fabs(r) > maxrel)
			maxrel = fabs(r);
	}
	free(w);
	out->c0 = c0;
	out->c1 = c1;
	out->cov00 = cov00;
	out->cov01 = cov01;
	out->cov11 = cov11;
	out->rms_rel = sqrt(rel2 / (double)n);
	out->max_rel = maxrel;
	out->r2 = sst > 0 ? 1 - ssr / sst : 1;
	out->n = (int)n;
	out->distinct = distinct;
	return MOE_OK;
}

enum moe_status study_calib_fit_origin(const double *x, const double *y, size_t n, const char *what,
				       struct study_calib_fit *out)
{
	double *w = NULL, c1, cov11, chisq, wsum = 0, ybar = 0, sst = 0, ssr = 0, rel2 = 0, maxrel = 0;
	int gst;
	gsl_error_handler_t *old;
	struct study_calib_fit probe;
	enum moe_status st;

	/* the same checks and messages as the free fit */
	if ((st = study_calib_fit_line(x, y, n, what, &probe)) != MOE_OK)
		return st;
	memset(out, 0, sizeof *out);
	if (!(w = malloc(n * sizeof *w)))
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", what);
	for (size_t i = 0; i < n; i++)
		w[i] = 1 / (y[i] * y[i]);
	old = gsl_set_error_handler_off();
	gst = gsl_fit_wmul(x, 1, w, 1, y, 1, n, &c1, &cov11, &chisq);
	gsl_set_error_handler(old);
	if (gst != GSL_SUCCESS) {
		free(w);
		MOE_FAIL(MOE_ERUNTIME, "%s: gsl_fit_wmul: %s", what, gsl_strerror(gst));
	}
	for (size_t i = 0; i < n; i++) {
		ybar += w[i] * y[i];
		wsum += w[i];
	}
	ybar /= wsum;
	for (size_t i = 0; i < n; i++) {
		double f = c1 * x[i], r = (f - y[i]) / y[i];
		sst += w[i] * (y[i] - ybar) * (y[i] - ybar);
		ssr += w[i] * (y[i] - f) * (y[i] - f);
		rel2 += r * r;
		if (fabs(r) > maxrel)
			maxrel = fabs(r);
	}
	free(w);
	out->c1 = c1;
	out->cov11 = cov11 * (n > 1 ? chisq / (double)(n - 1) : 0);
	out->rms_rel = sqrt(rel2 / (double)n);
	out->max_rel = maxrel;
	out->r2 = sst > 0 ? 1 - ssr / sst : 1;
	out->n = (int)n;
	out->distinct = probe.distinct;
	return MOE_OK;
}

/* ------------------------------------------------------ reading runs */

struct run_cols {
	char kind[16], status[16], model[128];
	char *inputs, *summary;
	uint64_t seed;
	int found;
};

static int run_cb(void *user, int n, const char *const *names, const char *const *values,
		  const int *is_num)
{
	struct run_cols *r = user;
	(void)is_num;
	r->found = 1;
	for (int i = 0; i < n; i++) {
		const char *v = values[i] ? values[i] : "";
		if (strcmp(names[i], "kind") == 0)
			snprintf(r->kind, sizeof r->kind, "%s", v);
		else if (strcmp(names[i], "status") == 0)
			snprintf(r->status, sizeof r->status, "%s", v);
		else if (strcmp(names[i], "model") == 0)
			snprintf(r->model, sizeof r->model, "%s", v);
		else if (strcmp(names[i], "seed") == 0)
			r->seed = strtoull(v, NULL, 10);
		else if (strcmp(names[i], "inputs") == 0 && values[i] && !r->inputs)
			r->inputs = strdup(v);
		else if (strcmp(names[i], "summary") == 0 && values[i] && !r->summary)
			r->summary = strdup(v);
	}
	return 0;
}

static const char *col(int n, const char *const *names, const char *const *values, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return values[i];
	return NULL;
}

struct rows_ctx {
	struct study_calib_prun *p;
	int oom;
};

static int stage_cb(void *user, int n, const char *const *names, const char *const *values,
		    const int *is_num)
{
	struct study_calib_prun *p = ((struct rows_ctx *)user)->p;
	const char *s = col(n, names, values, "stage"), *m = col(n, names, values, "median_s");
	(void)is_num;
	if (s && m && p->nstages < STUDY_CALIB_STAGES_MAX) {
		snprintf(p->stage[p->nstages], sizeof p->stage[0], "%s", s);
		p->median_s[p->nstages++] = strtod(m, NULL);
	}
	return 0;
}

static int metric_cb(void *user, int n, const char *const *names, const char *const *values,
		     const int *is_num)
{
	struct study_calib_prun *p = ((struct rows_ctx *)user)->p;
	const char *nm = col(n, names, values, "name"), *v = col(n, names, values, "value");
	(void)is_num;
	if (nm && v && strcmp(nm, "sgemm_roof_gflops") == 0)
		p->roof_flops = strtod(v, NULL) * 1e9;
	else if (nm && v && strcmp(nm, "dispatch_bytes") == 0)
		p->dispatch_bytes = strtod(v, NULL);
	return 0;
}

static int expert_cb(void *user, int n, const char *const *names, const char *const *values,
		     const int *is_num)
{
	struct rows_ctx *c = user;
	struct study_calib_prun *p = c->p;
	const char *e = col(n, names, values, "expert"), *t = col(n, names, values, "tokens");
	long ei;
	(void)is_num;
	if (!e || !t)
		return 0;
	ei = strtol(e, NULL, 10);
	if (ei < 0 || ei >= p->experts || ei >= 1 << 20)
		return 0;
	if (!p->loads) {
		if (!(p->loads = calloc((size_t)p->experts, sizeof *p->loads))) {
			c->oom = 1;
			return 1;
		}
		p->nloads = p->experts;
	}
	p->loads[ei] += strtod(t, NULL);
	return 0;
}

static int jint(json_t *o, const char *key, int dflt)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? (int)json_integer_value(v) : json_is_real(v) ? (int)json_real_value(v) : dflt;
}

enum moe_status study_calib_prun_read(struct store *db, int64_t id, struct study_calib_prun *p)
{
	struct run_cols r;
	struct rows_ctx rc = {p, 0};
	json_t *in = NULL, *sum = NULL, *b;
	json_error_t jerr;
	enum moe_status st;

	memset(p, 0, sizeof *p);
	memset(&r, 0, sizeof r);
	p->id = id;
	p->dispatch_bytes = -1;
	if ((st = store_run_each(db, id, run_cb, &r)) != MOE_OK)
		goto out;
	if (!r.found) {
		st = moe_error(MOE_ENOTFOUND, "run %lld: no such run", (long long)id);
		goto out;
	}
	if (strcmp(r.kind, "profile") != 0 || strcmp(r.status, "done") != 0) {
		st = moe_error(MOE_EINVAL, "run %lld is a %s %s run, expected a done profile run",
			       (long long)id, r.status, r.kind);
		goto out;
	}
	p->seed = r.seed;
	snprintf(p->model, sizeof p->model, "%s", r.model);
	in = r.inputs ? json_loads(r.inputs, 0, &jerr) : NULL;
	if (!json_is_object(in)) {
		st = moe_error(MOE_EINVAL, "run %lld: inputs are not a JSON object", (long long)id);
		goto out;
	}
	b = json_object_get(in, "benchmark");
	p->a2a = json_is_string(b) && strcmp(json_string_value(b), "alltoall") == 0;
	p->ep = jint(in, "ep", 1);
	p->hidden = jint(in, "hidden", 0);
	p->ffn = jint(in, "ffn", 0);
	p->experts = jint(in, "experts", 0);
	p->top_k = jint(in, "top_k", 0);
	p->shared_ffn = jint(in, "shared_ffn", 0);
	p->threads = jint(in, "threads", 1);
	p->ranks = jint(in, "ranks", p->ep);
	p->tokens = jint(in, "tokens", 0);
	b = json_object_get(in, "model_type");
	snprintf(p->model_type, sizeof p->model_type, "%s", json_is_string(b) ? json_string_value(b) : "");
	if ((st = store_rows_each(db, id, "stages", stage_cb, &rc)) != MOE_OK ||
	    (st = store_rows_each(db, id, "metrics", metric_cb, &rc)) != MOE_OK)
		goto out;
	if (p->experts > 0 && (st = store_rows_each(db, id, "experts", expert_cb, &rc)) != MOE_OK)
		goto out;
	if (rc.oom) {
		st = moe_error(MOE_ENOMEM, "run %lld: out of memory", (long long)id);
		goto out;
	}
	if (p->roof_flops <= 0 && r.summary && (sum = json_loads(r.summary, 0, &jerr)) != NULL) {
		/* expert-parallel runs keep rank 0's roof in the summary */
		json_t *v = json_object_get(sum, "sgemm_roof_gflops_rank0");
		if (json_is_number(v))
			p->roof_flops = json_number_value(v) * 1e9;
	}
out:
	json_decref(in);
	json_decref(sum);
	free(r.inputs);
	free(r.summary);
	if (st != MOE_OK)
		study_calib_prun_release(p);
	return st;
}

void study_calib_prun_release(struct study_calib_prun *p)
{
	if (!p)
		return;
	free(p->loads);
	p->loads = NULL;
	p->nloads = 0;
}

double study_calib_prun_stage(const struct study_calib_prun *p, const char *name)
{
	for (int i = 0; i < p->nstages; i++)
		if (strcmp(p->stage[i], name) == 0)
			return p->median_s[i];
	return -1;
}

struct ids_ctx {
	int64_t *ids;
	int n, cap, oom;
};

static int ids_cb(void *user, int n, const char *const *names, const char *const *values,
		  const int *is_num)
{
	struct ids_ctx *c = user;
	const char *id = col(n, names, values, "id"), *k = col(n, names, values, "kind"),
		   *s = col(n, names, values, "status");
	(void)is_num;
	if (!id || !k || !s || strcmp(k, "profile") != 0 || strcmp(s, "done") != 0)
		return 0;
	if (c->n == c->cap) {
		int cap = c->cap ? 2 * c->cap : 16;
		int64_t *t = realloc(c->ids, (size_t)cap * sizeof *t);
		if (!t) {
			c->oom = 1;
			return 1;
		}
		c->ids = t;
		c->cap = cap;
	}
	c->ids[c->n++] = strtoll(id, NULL, 10);
	return 0;
}

enum moe_status study_calib_prun_ids(struct store *db, int64_t **ids, int *n)
{
	struct ids_ctx c = {NULL, 0, 0, 0};
	enum moe_status st = store_runs_each(db, ids_cb, &c);

	if (st == MOE_OK && c.oom)
		st = moe_error(MOE_ENOMEM, "out of memory listing runs");
	if (st != MOE_OK) {
		free(c.ids);
		return st;
	}
	*ids = c.ids;
	*n = c.n;
	return MOE_OK;
}

/* ------------------------------------------------------- collecting */

void study_calib_data_free(struct study_calib_data *d)
{
	if (!d)
		return;
	free(d->cpt);
	free(d->lpt);
	free(d->runs);
	free(d);
}

/* Makes room for one more element in *p (n used, *cap allocated), each of
 * size bytes; returns the (possibly moved) array, or NULL with *p intact. */
static void *grow(void *p, int n, int *cap, size_t size)
{
	void *t;
	int c;

	if (n < *cap)
		return p;
	c = *cap ? 2 * *cap : 16;
	if (!(t = realloc(p, (size_t)c * size)))
		return NULL;
	*cap = c;
	return t;
}

static enum moe_status add_run(struct study_calib_data *d, const struct study_calib_prun *p,
			       int *ccap, int *lcap)
{
	int used = 0;

	if (p->a2a) {
		for (int i = 0; i < p->nstages; i++) {
			double size;
			char *end;
			if (strncmp(p->stage[i], "alltoall ", 9) != 0)
				continue;
			size = strtod(p->stage[i] + 9, &end);
			if (strcmp(end, "B") != 0 || !(size > 0) || p->ranks < 2)
				continue;
			struct study_calib_lpt *l = grow(d->lpt, d->nlpt, lcap, sizeof *l);
			if (!l)
				return moe_error(MOE_ENOMEM, "out of memory");
			d->lpt = l;
			d->lpt[d->nlpt++] = (struct study_calib_lpt){p->id, p->ranks, size, p->median_s[i]};
			used = 1;
		}
	} else if (p->ep <= 1 && p->roof_flops > 0 && p->hidden > 0 && p->ffn > 0 && p->experts > 0) {
		double gu = study_calib_prun_stage(p, "gate_up"), ac = study_calib_prun_stage(p, "activation"),
		       dn = study_calib_prun_stage(p, "down"), rows = 0;
		int active = 0;
		if (gu < 0 || ac < 0 || dn < 0)
			return MOE_OK;
		if (p->nloads > 0) {
			for (int e = 0; e < p->nloads; e++) {
				rows += p->loads[e];
				active += p->loads[e] > 0;
			}
		} else { /* no loads stored: every expert active */
			rows = p->tokens * p->top_k;
			active = p->experts;
		}
		if (active == 0)
			return MOE_OK;
		struct study_calib_cpt *cp = grow(d->cpt, d->ncpt, ccap, sizeof *cp);
		if (!cp)
			return moe_error(MOE_ENOMEM, "out of memory");
		d->cpt = cp;
		d->cpt[d->ncpt++] = (struct study_calib_cpt){
			p->id, p->hidden, p->ffn, 3, p->shared_ffn, active, p->threads, p->tokens, rows,
			gu + ac + dn, p->roof_flops};
		used = 1;
	}
	if (used) {
		int64_t *t = realloc(d->runs, (size_t)(d->nruns + 1) * sizeof *t);
		if (!t)
			return moe_error(MOE_ENOMEM, "out of memory");
		d->runs = t;
		d->runs[d->nruns++] = p->id;
	}
	return MOE_OK;
}

enum moe_status study_calib_collect(struct store *db, const int64_t *ids, int nids,
				    struct study_calib_data **out)
{
	struct study_calib_data *d = calloc(1, sizeof *d);
	int64_t *all = NULL;
	int nall = 0, ccap = 0, lcap = 0;
	enum moe_status st = MOE_OK;

	if (!d)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	if (nids <= 0) {
		if ((st = study_calib_prun_ids(db, &all, &nall)) != MOE_OK)
			goto fail;
		ids = all;
		nids = nall;
	}
	for (int i = 0; i < nids && st == MOE_OK; i++) {
		struct study_calib_prun p;
		if ((st = study_calib_prun_read(db, ids[i], &p)) != MOE_OK)
			break;
		st = add_run(d, &p, &ccap, &lcap);
		study_calib_prun_release(&p);
	}
	free(all);
	if (st != MOE_OK)
		goto fail;
	*out = d;
	return MOE_OK;
fail:
	study_calib_data_free(d);
	return st;
}

/* ------------------------------------------------------- calibrating */

/* Seconds per row at 100% of peak of an FFN of width f (SwiGLU). */
static double row_s(int mats, int d, int f, double peak)
{
	return 2.0 * mats * (double)d * (double)f / peak;
}

static enum moe_status fit_compute(const struct study_calib_data *d, const struct study_calib_opts *o,
				   struct study_calib *c)
{
	double *x, *y, peak = 0, a, b;
	enum moe_status st;

	for (int i = 1; i < d->ncpt; i++)
		if (d->cpt[i].threads != d->cpt[0].threads)
			MOE_FAIL(MOE_EINVAL, "compute fit: runs %lld and %lld use %d and %d threads: a "
				 "\"GPU\" is one process of one thread count; pick runs with --runs",
				 (long long)d->cpt[0].run, (long long)d->cpt[i].run, d->cpt[0].threads,
				 d->cpt[i].threads);
	if (d->ncpt < 3)
		MOE_FAIL(MOE_EINVAL, "compute fit: needs at least 3 single-process profile runs with "
			 "distinct rows per expert and a measured SGEMM roof, found %d", d->ncpt);
	for (int i = 0; i < d->ncpt; i++)
		peak += d->cpt[i].roof_flops;
	peak /= d->ncpt;
	x = malloc((size_t)d->ncpt * sizeof *x);
	y = malloc((size_t)d->ncpt * sizeof *y);
	if (!x || !y) {
		free(x);
		free(y);
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	}
	for (int i = 0; i < d->ncpt; i++) {
		const struct study_calib_cpt *p = &d->cpt[i];
		double w = row_s(p->mats, p->hidden, p->ffn, peak), ws = 0;
		if (p->shared_ffn > 0)
			ws = row_s(p->mats, p->hidden, p->shared_ffn, peak);
		a = w * p->rows + ws * p->tokens;
		b = w * p->active + (p->shared_ffn > 0 ? ws : 0);
		x[i] = a / b;
		y[i] = (p->gemm_s - p->mats * o->launch_s) / b;
	}
	st = study_calib_fit_line(x, y, (size_t)d->ncpt, "compute fit", &c->compute);
	if (st == MOE_OK && c->compute.c0 < 0) {
		/* m_half < 0 is outside the curve's domain (efficiency that falls
		 * with the rows): the least-squares fit with m_half >= 0 has it at
		 * the bound, i.e. the line through the origin */
		c->m_half_free = c->compute.c1 > 0 ? c->compute.c0 / c->compute.c1 : 0;
		c->m_half_bound = 1;
		st = study_calib_fit_origin(x, y, (size_t)d->ncpt, "compute fit", &c->compute);
	}
	free(x);
	free(y);
	if (st != MOE_OK)
		return st;
	a = c->compute.c0;
	b = c->compute.c1;
	if (!(b > 0))
		MOE_FAIL(MOE_ERANGE, "compute fit: slope %g is not positive (time does not grow with the "
			 "rows): eff_max cannot be derived", b);
	c->peak_flops = peak;
	c->threads = d->cpt[0].threads;
	c->launch_s = o->launch_s;
	c->eff_max = 1 / b;
	c->eff_max_se = sqrt(c->compute.cov11) / (b * b);
	c->m_half = a / b;
	c->m_half_se = sqrt(fmax(0, c->compute.cov00 / (b * b) + a * a * c->compute.cov11 / (b * b * b * b) -
				    2 * a * c->compute.cov01 / (b * b * b)));
	if (!c->m_half_bound)
		c->m_half_free = c->m_half;
	c->have_compute = 1;
	return MOE_OK;
}

static enum moe_status fit_link(const struct study_calib_data *d, struct study_calib *c)
{
	double *x, *y;
	enum moe_status st;

	for (int i = 1; i < d->nlpt; i++)
		if (d->lpt[i].ranks != d->lpt[0].ranks)
			MOE_FAIL(MOE_EINVAL, "link fit: runs %lld and %lld use %d and %d ranks; pick runs "
				 "of one rank count with --runs", (long long)d->lpt[0].run,
				 (long long)d->lpt[i].run, d->lpt[0].ranks, d->lpt[i].ranks);
	if (d->nlpt < 3)
		MOE_FAIL(MOE_EINVAL, "link fit: needs at least 3 all-to-all sizes (moekit profile a2a), "
			 "found %d", d->nlpt);
	x = malloc((size_t)d->nlpt * sizeof *x);
	y = malloc((size_t)d->nlpt * sizeof *y);
	if (!x || !y) {
		free(x);
		free(y);
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	}
	for (int i = 0; i < d->nlpt; i++) {
		x[i] = d->lpt[i].size_B * (d->lpt[i].ranks - 1) / d->lpt[i].ranks;
		y[i] = d->lpt[i].time_s;
	}
	st = study_calib_fit_line(x, y, (size_t)d->nlpt, "link fit", &c->link);
	if (st == MOE_OK && c->link.c0 < 0) { /* latency at its bound 0, as above */
		c->lat_free = c->link.c0;
		c->lat_bound = 1;
		st = study_calib_fit_origin(x, y, (size_t)d->nlpt, "link fit", &c->link);
	}
	free(x);
	free(y);
	if (st != MOE_OK)
		return st;
	if (!(c->link.c1 > 0))
		MOE_FAIL(MOE_ERANGE, "link fit: slope %g is not positive (time does not grow with the "
			 "size): no bandwidth", c->link.c1);
	c->bw_Bps = 1 / c->link.c1;
	c->bw_se = sqrt(c->link.cov11) / (c->link.c1 * c->link.c1);
	c->lat_s = c->link.c0;
	c->lat_se = sqrt(c->link.cov00);
	if (!c->lat_bound)
		c->lat_free = c->lat_s;
	c->ranks = d->lpt[0].ranks;
	c->have_link = 1;
	return MOE_OK;
}

enum moe_status study_calib_run(const struct study_calib_data *d, const struct study_calib_opts *o,
				struct study_calib *out)
{
	enum moe_status st;

	memset(out, 0, sizeof *out);
	if ((st = fit_compute(d, o, out)) != MOE_OK)
		return st;
	if (d->nlpt == 0 && o->base)
		return MOE_OK;
	return fit_link(d, out);
}

/* ------------------------------------------------------------ writing */

static void runs_line(FILE *f, const struct study_calib_data *d)
{
	fputs("; runs used:", f);
	for (int i = 0; i < d->nruns; i++)
		fprintf(f, "%s%lld", i ? "," : " ", (long long)d->runs[i]);
	fputc('\n', f);
}

enum moe_status study_calib_write(const char *path, const char *name, const struct study_calib *c,
				  const struct study_calib_data *d, const struct study_calib_opts *o)
{
	char *tmp;
	size_t n = strlen(path) + 32;
	FILE *f;
	int ok, gpus = c->have_link ? c->ranks : 1;
	double peak = c->peak_flops, eff = c->eff_max;

	if (eff > 1) { /* the spec caps efficiency at 1: fold the excess into the peak */
		peak *= eff;
		eff = 1;
	}
	if (!(tmp = malloc(n)))
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
	if (!(f = fopen(tmp, "w"))) {
		int e = errno;
		free(tmp);
		MOE_FAIL(MOE_EIO, "%s: cannot write: %s", path, strerror(e));
	}
	if (o->base)
		fprintf(f, "base = %s\n", o->base);
	fprintf(f, "; Written by moekit %s calibrate: fitted to profile runs on this machine.\n",
		PACKAGE_VERSION);
	fputs("; One \"GPU\" is one process", f);
	fprintf(f, " of %d thread%s; the node holds the %d rank%s measured.\n", c->threads,
		c->threads == 1 ? "" : "s", gpus, gpus == 1 ? "" : "s");
	runs_line(f, d);
	fprintf(f, "; compute fit (%d runs): y = T/B = %.6g + %.6g x, rms relative residual %.4f, "
		"max %.4f, R^2 %.6f\n", c->compute.n, c->compute.c0, c->compute.c1, c->compute.rms_rel,
		c->compute.max_rel, c->compute.r2);
	fprintf(f, ";   eff_max = %.6g +- %.3g (relative to the SGEMM roof %.6g FLOP/s)\n", c->eff_max,
		c->eff_max_se, c->peak_flops);
	fprintf(f, ";   m_half  = %.6g +- %.3g rows\n", c->m_half, c->m_half_se);
	if (c->m_half_bound)
		fprintf(f, ";   m_half at its bound 0: the free fit gave %.6g rows (efficiency falling with "
			"the rows,\n;   which eff(m) cannot express); refitted through the origin\n",
			c->m_half_free);
	if (c->eff_max > 1)
		fprintf(f, ";   eff_max > 1 (the expert kernel beats the SGEMM probe): peak = roof x "
			"eff_max, efficiency 1\n");
	if (c->have_link) {
		fprintf(f, "; link fit (%d sizes, %d ranks): t = %.6g s + bytes x %.6g s/B, rms relative "
			"residual %.4f, max %.4f, R^2 %.6f\n", c->link.n, c->ranks, c->link.c0, c->link.c1,
			c->link.rms_rel, c->link.max_rel, c->link.r2);
		fprintf(f, ";   latency   = %.6g +- %.3g s\n", c->lat_s, c->lat_se);
		if (c->lat_bound)
			fprintf(f, ";   latency at its bound 0: the free fit gave %.6g s; refitted through "
				"the origin\n", c->lat_free);
		fprintf(f, ";   bandwidth = %.6g +- %.3g B/s (achieved per rank, each direction)\n",
			c->bw_Bps, c->bw_se);
	}
	fprintf(f, "[cluster]\nname = %s\nsource = moekit calibrate (fits in the comments above)\n",
		name);
	if (!o->base) /* with a base, its layout (nodes, GPUs, NICs) stays */
		fprintf(f, "nodes = 1\ngpus_per_node = %d\n", gpus);
	fprintf(f, "[gpu]\ntype = cpu-process-%dt\n", c->threads);
	fprintf(f, "flops_bf16 = %.9g      ; FLOP/s: the measured SGEMM roof%s\n", peak,
		eff != c->eff_max ? " x eff_max" : "");
	if (!o->base) {
		fprintf(f, "hbm = %.9g             ; bytes: this machine's memory (not fitted)\n",
			o->mem_bytes > 0 ? o->mem_bytes : 1e9);
		fputs("; not fitted: high enough that the memory roof never binds; the fitted\n"
		      "; m_half already holds the cost of streaming weights at few rows\n"
		      "hbm_bw = 1e15\n", f);
	}
	fprintf(f, "launch = %.9g          ; s (an input of the fit, not fitted)\n", c->launch_s);
	fprintf(f, "efficiency = %.9g      ; +- %.3g (fit)\n", eff, c->eff_max_se);
	/* the simulator takes m_half 0 for "unset" (its default, 128): a fit
	 * at the bound 0 is written as a thousandth of a row */
	fprintf(f, "m_half = %.9g          ; +- %.3g rows (fit)\n", c->m_half > 1e-3 ? c->m_half : 1e-3,
		c->m_half_se);
	if (c->have_link) {
		fputs("[intra]\n; shared memory between MPI ranks, modelled as a switch port per rank\n"
		      "kind = nvswitch\n", f);
		fprintf(f, "bw = %.9g      ; B/s +- %.3g (fit of achieved bandwidth)\n", c->bw_Bps, c->bw_se);
		fprintf(f, "latency = %.9g ; s +- %.3g (fit)\nefficiency = 1\n", c->lat_s, c->lat_se);
	}
	if (!o->base)
		fputs("[nic]\ncount = 0\n[fabric]\nkind = nonblocking\n", f);
	ok = !ferror(f);
	ok &= fclose(f) == 0;
	if (!ok || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		free(tmp);
		MOE_FAIL(MOE_EIO, "%s: cannot write: %s", path, strerror(e));
	}
	free(tmp);
	return MOE_OK;
}
