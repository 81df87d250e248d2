/* study/validate.c: simulate the plan of each profile run on a calibrated
 * cluster and set predicted beside measured stage times.  See validate.h. */
#include "config.h"
#include "study/validate.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe/model.h"
#include "sim/place.h"
#include "sim/step.h"
#include "sim/topo.h"
#include "store/store.h"
#include "study/calibrate.h"

static const char *const stage_names[STUDY_VALID_STAGES] = {"experts", "dispatch", "combine", "total"};
/* the stage rows of the stored simulation: the profiler's names */
static const char *const stored_names[STUDY_VALID_STAGES] = {"experts", "dispatch", "combine_a2a", "total"};

const char *study_valid_stage_name(enum study_valid_stage s)
{
	return (unsigned)s < STUDY_VALID_STAGES ? stage_names[s] : NULL;
}

/* Why run p cannot be simulated on cluster c, or NULL when it can. */
static const char *unfit(const struct study_calib_prun *p, const struct moe_cluster *c, char *buf,
			 size_t n)
{
	if (p->a2a)
		return "an all-to-all benchmark";
	if (p->hidden <= 0 || p->ffn <= 0 || p->experts <= 0 || p->top_k <= 0 || p->tokens < 1)
		return "no layer shape in its inputs (hidden, ffn, experts, top_k, tokens)";
	if (p->top_k > p->experts)
		return "top_k exceeds the experts";
	if (study_calib_prun_stage(p, "total") < 0)
		return "no total stage";
	if (p->ep > moe_cluster_gpus(c)) {
		snprintf(buf, n, "%d expert-parallel ranks, the cluster has %d GPUs", p->ep,
			 moe_cluster_gpus(c));
		return buf;
	}
	if (p->experts % p->ep != 0) {
		snprintf(buf, n, "%d ranks do not divide %d experts", p->ep, p->experts);
		return buf;
	}
	if (p->ep > c->gpus_per_node && p->ep % c->gpus_per_node != 0) {
		snprintf(buf, n, "%d ranks are not whole nodes of %d GPUs", p->ep, c->gpus_per_node);
		return buf;
	}
	if (p->tokens < p->ep) {
		snprintf(buf, n, "%.0f tokens for %d ranks", p->tokens, p->ep);
		return buf;
	}
	return NULL;
}

/* The single-process run that routed exactly as p (same shape, tokens,
 * seed and model): its expert loads.  Index into runs, or -1. */
static int loads_source(const struct study_calib_prun *runs, int nruns, const struct study_calib_prun *p)
{
	if (p->nloads == p->experts && p->nloads > 0)
		return (int)(p - runs);
	for (int i = 0; i < nruns; i++) {
		const struct study_calib_prun *q = &runs[i];
		if (q->nloads == p->experts && q->hidden == p->hidden && q->ffn == p->ffn &&
		    q->experts == p->experts && q->top_k == p->top_k && q->tokens == p->tokens &&
		    q->seed == p->seed && q->shared_ffn == p->shared_ffn &&
		    strcmp(q->model, p->model) == 0 && strcmp(q->model_type, p->model_type) == 0)
			return i;
	}
	return -1;
}

static void model_of(const struct study_calib_prun *p, struct moe_model *m)
{
	memset(m, 0, sizeof *m);
	snprintf(m->name, sizeof m->name, "profile-run-%lld", (long long)p->id);
	m->layers = m->moe_layers = 1;
	m->hidden = p->hidden;
	m->expert_ffn = p->ffn;
	m->experts = p->experts;
	m->top_k = p->top_k;
	m->shared_experts = p->shared_ffn > 0;
	m->shared_ffn = p->shared_ffn;
	m->router = MOE_ROUTER_SOFTMAX_TOPK;
	m->routed_scaling = 1;
	m->groups = m->groups_per_token = 1;
	m->activation = MOE_ACT_SWIGLU;
	m->act_bytes = m->dispatch_bytes = m->combine_bytes = 4; /* FP32 */
	m->weight_bytes = 4;
}

/* Each of n tokens draws k distinct experts (sequential sampling without
 * repeats from tab). */
static void draw(gsl_rng *rng, const gsl_ran_discrete_t *tab, int E, long n, int k, int *out)
{
	for (long t = 0; t < n; t++) {
		int *x = &out[t * k];
		for (int j = 0; j < k; j++) {
			int e = -1;
			for (int tries = 0; tries < 64 && e < 0; tries++) {
				int c = (int)gsl_ran_discrete(rng, tab), dup = 0;
				for (int i = 0; i < j; i++)
					dup |= x[i] == c;
				if (!dup)
					e = c;
			}
			for (int c = 0; c < E && e < 0; c++) { /* too concentrated: first free */
				int dup = 0;
				for (int i = 0; i < j; i++)
					dup |= x[i] == c;
				if (!dup)
					e = c;
			}
			x[j] = e;
		}
	}
}

static enum moe_status simulate(const struct study_calib_prun *p, const struct study_calib_prun *src,
				const struct moe_cluster *c0, struct sim_layer_out *f)
{
	struct moe_model m;
	struct moe_cluster c = *c0;
	struct moe_plan plan;
	struct sim_topo *t = NULL;
	struct sim_placement *pl = NULL;
	struct sim_step *st = NULL;
	struct sim_step_opts so = {SIM_A2A_DIRECT, 0, SIM_STEP_EVENTS, 0, 0};
	gsl_rng *rng = NULL;
	gsl_ran_discrete_t *tab = NULL;
	double *pop = NULL;
	int *routes = NULL, T = (int)(p->tokens / p->ep);
	enum moe_status s;

	model_of(p, &m);
	/* the expert-parallel group alone: one node of ep GPUs, or whole nodes
	 * (unfit() refused the rest), as moekit sim narrows it */
	moe_cluster_narrow(&c, p->ep);
	memset(&plan, 0, sizeof plan);
	plan.ep = p->ep;
	plan.dp = plan.tp = 1;
	plan.tokens_per_gpu = T;
	plan.micro_batches = 1;
	plan.placement = MOE_PLACE_CONTIGUOUS;
	plan.phase = MOE_PHASE_FORWARD;
	if ((s = moe_plan_validate(&plan, &m, &c)) != MOE_OK)
		return s;
	pop = malloc((size_t)p->experts * sizeof *pop);
	routes = malloc((size_t)p->ep * (size_t)T * (size_t)p->top_k * sizeof *routes);
	rng = gsl_rng_alloc(gsl_rng_mt19937);
	if (!pop || !routes || !rng) {
		s = moe_error(MOE_ENOMEM, "out of memory for %d x %d tokens", p->ep, T);
		goto out;
	}
	for (int e = 0; e < p->experts; e++)
		pop[e] = src ? src->loads[e] + 1e-9 : 1.0;
	if (!(tab = gsl_ran_discrete_preproc((size_t)p->experts, pop))) {
		s = moe_error(MOE_ENOMEM, "out of memory");
		goto out;
	}
	gsl_rng_set(rng, (unsigned long)p->seed);
	draw(rng, tab, p->experts, (long)p->ep * T, p->top_k, routes);
	if ((s = sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t)) != MOE_OK ||
	    (s = sim_placement_new(MOE_PLACE_CONTIGUOUS, p->experts, p->ep, c.gpus_per_node, 1, NULL, 0,
				   &pl)) != MOE_OK ||
	    (s = sim_step_new(&m, &c, &plan, t, pl, &so, &st)) != MOE_OK)
		goto out;
	s = sim_step_layer(st, routes, p->top_k, NULL, NULL, f, NULL);
out:
	sim_step_free(st);
	sim_placement_free(pl);
	sim_topo_free(t);
	gsl_ran_discrete_free(tab);
	gsl_rng_free(rng);
	free(routes);
	free(pop);
	return s;
}

static void measured(const struct study_calib_prun *p, double *ms)
{
	if (p->ep > 1) {
		ms[STUDY_VALID_EXPERTS] = study_calib_prun_stage(p, "experts");
		ms[STUDY_VALID_DISPATCH] = study_calib_prun_stage(p, "dispatch");
		ms[STUDY_VALID_COMBINE] = study_calib_prun_stage(p, "combine_a2a");
	} else {
		double gu = study_calib_prun_stage(p, "gate_up"), ac = study_calib_prun_stage(p, "activation"),
		       dn = study_calib_prun_stage(p, "down");
		ms[STUDY_VALID_EXPERTS] = gu >= 0 && ac >= 0 && dn >= 0 ? gu + ac + dn : -1;
		ms[STUDY_VALID_DISPATCH] = ms[STUDY_VALID_COMBINE] = -1;
	}
	ms[STUDY_VALID_TOTAL] = study_calib_prun_stage(p, "total");
}

static enum moe_status store_one(struct store *db, const char *cluster, const struct study_calib_prun *p,
				 struct study_valid_row *r, const struct sim_layer_out *f)
{
	char label[64], *inputs, *summary;
	json_t *j = json_object(), *sj = json_object();
	struct store_run_meta meta;
	struct store_layer_row lr = {0, "forward", f->dispatch_s, f->compute_s, f->combine_s, f->other_s,
				     f->exposed_s, f->total_s, f->dispatch_bytes, f->combine_bytes,
				     f->network_bytes, f->tokens, f->dropped, f->imbalance};
	enum moe_status s;
	int64_t id;

	snprintf(label, sizeof label, "validate of run %lld", (long long)p->id);
	json_object_set_new(j, "validate_of", json_integer(p->id));
	json_object_set_new(j, "cluster", json_string(cluster));
	json_object_set_new(j, "hidden", json_integer(p->hidden));
	json_object_set_new(j, "ffn", json_integer(p->ffn));
	json_object_set_new(j, "experts", json_integer(p->experts));
	json_object_set_new(j, "top_k", json_integer(p->top_k));
	json_object_set_new(j, "shared_ffn", json_integer(p->shared_ffn));
	json_object_set_new(j, "tokens", json_real(p->tokens));
	json_object_set_new(j, "ep", json_integer(p->ep));
	json_object_set_new(j, "tokens_per_gpu", json_integer((json_int_t)(p->tokens / p->ep)));
	json_object_set_new(j, "placement", json_string("contiguous"));
	json_object_set_new(j, "algo", json_string("direct"));
	json_object_set_new(j, "dtype", json_string("fp32"));
	json_object_set_new(j, "loads_from", r->loads_from ? json_integer(r->loads_from) : json_null());
	for (int i = 0; i < STUDY_VALID_STAGES; i++) {
		char k[64];
		snprintf(k, sizeof k, "measured_%s_s", stage_names[i]);
		json_object_set_new(sj, k, r->measured_s[i] >= 0 ? json_real(r->measured_s[i]) : json_null());
		snprintf(k, sizeof k, "predicted_%s_s", stage_names[i]);
		json_object_set_new(sj, k, json_real(r->predicted_s[i]));
	}
	inputs = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	summary = json_dumps(sj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	json_decref(sj);
	if (!inputs || !summary) {
		free(inputs);
		free(summary);
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	}
	meta = (struct store_run_meta){"sim", label, p->model[0] ? p->model : NULL, cluster, inputs,
				       p->seed};
	if ((s = store_run_begin(db, &meta, &id)) != MOE_OK)
		goto out;
	s = store_layer_add(db, id, &lr);
	for (int i = 0; i < STUDY_VALID_STAGES && s == MOE_OK; i++) {
		struct store_stage_row sr = {stored_names[i], 1, r->predicted_s[i], r->predicted_s[i],
					     r->predicted_s[i], r->predicted_s[i], 0, p->tokens};
		char k[64];
		s = store_stage_add(db, id, &sr);
		snprintf(k, sizeof k, "predicted_%s_s", stage_names[i]);
		if (s == MOE_OK)
			s = store_metric_add(db, id, k, r->predicted_s[i], "s");
		if (s == MOE_OK && r->measured_s[i] >= 0) {
			snprintf(k, sizeof k, "measured_%s_s", stage_names[i]);
			s = store_metric_add(db, id, k, r->measured_s[i], "s");
			snprintf(k, sizeof k, "relerr_%s", stage_names[i]);
			if (s == MOE_OK && r->measured_s[i] > 0)
				s = store_metric_add(db, id, k, r->predicted_s[i] / r->measured_s[i] - 1, "1");
		}
	}
	if (s == MOE_OK && r->measured_dispatch_bytes >= 0 &&
	    (s = store_metric_add(db, id, "measured_dispatch_bytes", r->measured_dispatch_bytes, "B")) == MOE_OK)
		s = store_metric_add(db, id, "predicted_dispatch_bytes", r->predicted_dispatch_bytes, "B");
	if (s == MOE_OK && (s = store_run_done(db, id, summary)) == MOE_OK)
		r->sim_run = id;
	else if (s != MOE_OK) {
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", moe_errmsg());
		store_run_fail(db, id, msg);
		s = moe_error(s, "%s", msg);
	}
out:
	free(inputs);
	free(summary);
	return s;
}

enum moe_status study_valid_run(struct store *db, const char *cluster_name, const int64_t *ids,
				int nids, int store, struct study_valid_row **rows_out, int *n_out)
{
	struct moe_cluster c;
	struct study_calib_prun *runs = NULL;
	struct study_valid_row *rows = NULL;
	struct sim_layer_out *outs = NULL;
	int *pidx = NULL;
	int64_t *all = NULL;
	int nall = 0, nruns = 0, nrows = 0, listed = nids > 0;
	enum moe_status s;
	char why[160];

	if ((s = moe_cluster_load(cluster_name, &c)) != MOE_OK)
		return s;
	/* every profile run: the ones to validate and the sources of loads */
	if ((s = study_calib_prun_ids(db, &all, &nall)) != MOE_OK)
		return s;
	if (listed)
		for (int i = 0; i < nids; i++) {
			int found = 0;
			for (int j = 0; j < nall && !found; j++)
				found = all[j] == ids[i];
			if (!found) {
				struct study_calib_prun p;
				/* names what the run is, or that it does not exist */
				if ((s = study_calib_prun_read(db, ids[i], &p)) == MOE_OK) {
					study_calib_prun_release(&p);
					s = moe_error(MOE_EINVAL, "run %lld is not a done profile run",
						      (long long)ids[i]);
				}
				free(all);
				return s;
			}
		}
	runs = calloc(nall > 0 ? (size_t)nall : 1, sizeof *runs);
	rows = calloc(nall > 0 ? (size_t)nall : 1, sizeof *rows);
	outs = calloc(nall > 0 ? (size_t)nall : 1, sizeof *outs);
	pidx = calloc(nall > 0 ? (size_t)nall : 1, sizeof *pidx);
	if (!runs || !rows || !outs || !pidx) {
		s = moe_error(MOE_ENOMEM, "out of memory");
		goto out;
	}
	for (; nruns < nall; nruns++)
		if ((s = study_calib_prun_read(db, all[nruns], &runs[nruns])) != MOE_OK)
			goto out;
	for (int i = 0; i < nruns; i++) {
		const struct study_calib_prun *p = &runs[i];
		struct study_valid_row *r = &rows[nrows];
		struct sim_layer_out f;
		const char *no;
		int want = !listed, src;
		for (int j = 0; listed && j < nids; j++)
			want |= ids[j] == p->id;
		if (!want)
			continue;
		if ((no = unfit(p, &c, why, sizeof why)) != NULL) {
			if (listed) {
				s = moe_error(MOE_EINVAL, "run %lld has no plan to simulate on %s: %s",
					      (long long)p->id, cluster_name, no);
				goto out;
			}
			continue;
		}
		src = loads_source(runs, nruns, p);
		memset(r, 0, sizeof *r);
		r->run = p->id;
		r->ep = p->ep;
		r->hidden = p->hidden;
		r->ffn = p->ffn;
		r->experts = p->experts;
		r->top_k = p->top_k;
		r->tokens = p->tokens;
		r->loads_from = src >= 0 ? runs[src].id : 0;
		if ((s = simulate(p, src >= 0 ? &runs[src] : NULL, &c, &f)) != MOE_OK) {
			char msg[1024];
			snprintf(msg, sizeof msg, "%s", moe_errmsg());
			s = moe_error(s, "run %lld: %s", (long long)p->id, msg);
			goto out;
		}
		measured(p, r->measured_s);
		r->predicted_s[STUDY_VALID_EXPERTS] = f.compute_s;
		r->predicted_s[STUDY_VALID_DISPATCH] = f.dispatch_s;
		r->predicted_s[STUDY_VALID_COMBINE] = f.combine_s;
		r->predicted_s[STUDY_VALID_TOTAL] = f.total_s;
		r->measured_dispatch_bytes = p->ep > 1 ? p->dispatch_bytes : -1;
		r->predicted_dispatch_bytes = f.dispatch_bytes;
		/* stored after the loop: everything is simulated first, so
		 * that a run that fails to simulate leaves nothing written */
		outs[nrows] = f;
		pidx[nrows] = i;
		nrows++;
	}
	if (nrows == 0) {
		s = moe_error(MOE_ENOTFOUND, "no profile run in the store has a plan to simulate on %s "
			      "(a forward layer with hidden, ffn, experts, top_k and tokens, ep dividing the "
			      "experts and at most the cluster's GPUs): run moekit profile --db first",
			      cluster_name);
		goto out;
	}
	if (store) {
		for (int i = 0; i < nrows; i++)
			if ((s = store_one(db, cluster_name, &runs[pidx[i]], &rows[i], &outs[i])) != MOE_OK)
				goto out;
	}
	*rows_out = rows;
	*n_out = nrows;
	rows = NULL;
	s = MOE_OK;
out:
	for (int i = 0; i < nruns; i++)
		study_calib_prun_release(&runs[i]);
	free(runs);
	free(rows);
	free(outs);
	free(pidx);
	free(all);
	return s;
}
