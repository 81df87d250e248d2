/* cli/cmd_sim.c: `moekit sim`: simulate MoE layers and a step of a model on
 * a modeled cluster, from a synthetic routing pattern or a token- or
 * count-level trace, print the summary and store the run (sim/step.h over
 * sim/a2a.h and sim/net.h). */
#include "config.h"
#include "cli/cli.h"
#include "moe/model.h"
#include "moe/units.h"
#include "sim/a2a.h"
#include "sim/compute.h"
#include "sim/place.h"
#include "sim/step.h"
#include "sim/topo.h"
#include "moe/route.h"
#include "store/store.h"
#include "traces/trace.h"

#include <getopt.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"Usage: moekit sim --model NAME|FILE --cluster NAME[:NODES]|FILE [OPTIONS]\n\n"
	"Simulate every MoE layer of one step of a model on a modeled cluster: the\n"
	"dispatch all-to-all, the experts' compute, the combine all-to-all and the\n"
	"rest of the layer, with flows sharing links max-min fairly (docs/sim.md).\n"
	"Prints the step time and tokens per second; per layer dispatch, compute,\n"
	"combine and exposed communication; the bottleneck link; the busiest and\n"
	"idlest GPU; imbalance and dropped tokens.\n\n"
	"Routing: a synthetic pattern.  Each token picks its experts one after the\n"
	"other without repeats, expert e with probability proportional to its\n"
	"popularity: uniform (all equal) or zipf:S (the expert of popularity rank r,\n"
	"ranks a seeded permutation, has weight 1 / (r+1)^S).  Top-k lists re-route\n"
	"the same draws: top-1 keeps each token's first expert, top-2 its first two.\n"
	"With --trace, a k below the trace's keeps each token's first k stored\n"
	"experts; when the trace holds logits any k re-routes them with the model's\n"
	"routing policy (moe/route.h), so top-1 and top-2 see the same logits.\n"
	"A count-level trace (per rank and expert counts only) cannot be re-routed:\n"
	"it runs at its own k (--top-k, if given, must be that k).\n\n"
	"Options:\n"
	"  --model SPEC          model preset or INI file (required)\n"
	"  --cluster SPEC        cluster preset, preset:NODES or INI file (required)\n"
	"  --ep N                expert-parallel group size (default: all GPUs, at most\n"
	"                        the experts); other GPUs run identical groups\n"
	"  --tokens-per-gpu N    tokens per GPU per step (default 4096)\n"
	"  --placement KIND      contiguous (default), round-robin or balanced\n"
	"  --redundant-experts N extra replicas of the hottest experts (balanced)\n"
	"  --algorithm ALGO      direct (default), hierarchical or nvlink-forward\n"
	"  --multipath MODE      spray (default) or ecmp (hash collisions on spines)\n"
	"  --no-dedup            send one copy per expert, not per GPU or node\n"
	"  --trace FILE          replay a .moetrace (moekit trace): its source ranks\n"
	"                        must be the EP group's GPUs and its experts the\n"
	"                        model's; tokens per GPU come from it.  A count-level\n"
	"                        trace replays its counts at its own top-k, without\n"
	"                        de-duplication; layers it did not record replay the\n"
	"                        closest recorded layer below (or the first)\n"
	"  --step N              the trace's step to replay (default 0)\n"
	"  --pattern P           without --trace: uniform (default) or zipf:S\n"
	"  --seed N              random seed (default 1)\n"
	"  --top-k LIST          comma-separated k values, one run each (default the\n"
	"                        model's top_k), then a side-by-side comparison\n"
	"  --capacity-factor C   expert capacity C x tokens x k / experts (default the\n"
	"                        model's; 0 = none); excess assignments are dropped\n"
	"  --phase PHASE         forward (default), training, prefill or decode\n"
	"  --micro-batches N     with --overlap: 2 overlaps one micro-batch's compute\n"
	"  --overlap             with the other's all-to-all\n"
	"  --context N           cached tokens per sequence for decode (default 4096)\n"
	"  --layers N            simulate only the first N MoE layers\n"
	"  --mode MODE           events (default: the flow network) or analytic (the\n"
	"                        bottleneck-link bound per all-to-all, no events)\n"
	"  --coalesce REL        flows due to end within REL x t of the next end finish\n"
	"                        with it, at the rate-weighted mean of their own ends\n"
	"                        (fewer events; a GPU's time moves by about REL, layer and\n"
	"                        step times much less; default 1e-3; 0: exact)\n"
	"  --slow-gpu G=F        GPU G of the EP group computes F times slower\n"
	"  --slow-link NAME=F    link NAME has 1/F of its bandwidth (moekit net names)\n"
	"  --db FILE             store the run in FILE (see docs/schema.md)\n"
	"  --label TEXT          a label for the stored run\n"
	"  --format FMT          table (default), csv or json\n"
	"  --quiet               no progress bar\n"
	"  -h, --help            show this help\n\n"
	"JSON: {\"runs\": [{\"run_id\", \"top_k\", \"step_time_s\", \"tokens_per_s\",\n"
	"\"layers\": [{\"layer\", \"phase\", \"dispatch_s\", \"compute_s\", \"combine_s\",\n"
	"\"other_s\", \"exposed_s\", \"total_s\", \"network_bytes\", \"tokens\", \"dropped\",\n"
	"\"imbalance\"}], \"bottleneck\": {\"link\", \"utilization\"}, \"busiest_gpu\",\n"
	"\"idlest_gpu\", \"imbalance\", \"dropped\", ...}]}; run_id is null without --db.\n"
	"With --trace also \"trace\": {\"file\", \"level\" (tokens or counts), \"step\",\n"
	"\"top_k\", \"layers_used\", \"layer_map\" (the trace layer of each simulated\n"
	"layer), \"dedup\"} and per layer \"trace_layer\".\n\n"
	"Threads: every layer of a --trace is read and checked before any work (the\n"
	"later half on a second thread), and during the run the next layer is read\n"
	"while the current one is simulated; a layer's combine all-to-all is simulated\n"
	"beside its dispatch (EP groups of up to 1024 GPUs).  The results do not\n"
	"depend on it.\n\n"
	"Exit status: 0 done; 1 a runtime failure; 2 a usage or configuration error\n"
	"(an EP size larger than the cluster, an unknown preset, a bad value).\n\n"
	"Example:\n"
	"  moekit sim --model deepseek-v3 --cluster dgx-h100:8 --ep 64 \\\n"
	"             --pattern zipf:1.0 --top-k 4,8 --db study.db\n";

#define MAX_K 32
#define MAX_SLOW 64

struct opts {
	const char *model, *cluster, *db, *label, *trace;
	const char *k_arg;        /* --top-k as given, for messages */
	long step;
	long ep, tokens, redundant, seed, layers, micro, context;
	int overlap, dedup, have_cf, nk, ks[MAX_K], quiet;
	double cf, zipf, coalesce;
	enum moe_placement placement;
	enum moe_phase phase;
	int have_placement, have_phase;
	enum sim_a2a_algo algo;
	enum sim_multipath mp;
	enum sim_step_mode mode;
	enum cli_format fmt;
	int nsg, nsl;
	long sg[MAX_SLOW];
	double sgf[MAX_SLOW], slf[MAX_SLOW];
	const char *sl[MAX_SLOW];
};

/* Draws each token's kmax experts: sequential sampling without repeats
 * (Plackett-Luce), so the first k of a token are its top-k for every k. */
static void draw_routes(gsl_rng *rng, const gsl_ran_discrete_t *tab, int E, long n, int kmax,
			int *out)
{
	for (long t = 0; t < n; t++) {
		int *x = &out[t * kmax];
		for (int j = 0; j < kmax; j++) {
			int e = -1;
			for (int tries = 0; tries < 64 && e < 0; tries++) {
				int c = (int)gsl_ran_discrete(rng, tab), dup = 0;
				for (int i = 0; i < j; i++)
					dup |= x[i] == c;
				if (!dup)
					e = c;
			}
			if (e < 0) /* popularity too concentrated: the first free id */
				for (int c = 0; c < E && e < 0; c++) {
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

static int parse_kv(const char *opt, char *arg, const char **name, double *f)
{
	char *eq = strchr(arg, '='), *end;

	if (eq == NULL)
		return cli_usage("sim", "%s: '%s': expected NAME=FACTOR", opt, arg), 0;
	*eq = '\0';
	*name = arg;
	*f = strtod(eq + 1, &end);
	if (*end != '\0' || !(*f > 0) || !isfinite(*f))
		return cli_usage("sim", "%s: factor '%s': expected a positive number", opt, eq + 1), 0;
	return 1;
}

struct runres {
	int k;
	int64_t run_id;
	double step_s, tokens_per_s, dropped, tokens, imbalance, net_bytes;
	double bn_util;
	int bn_link, busiest, idlest;
	double busiest_s, idlest_s;
	json_t *layers;
};

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static const char *phase_of(enum moe_phase ph)
{
	return ph == MOE_PHASE_DECODE ? "decode" : ph == MOE_PHASE_PREFILL ? "prefill" : "forward";
}

static json_t *int_array(const int *v, int n)
{
	json_t *a = json_array();

	for (int i = 0; i < n; i++)
		json_array_append_new(a, json_integer(v[i]));
	return a;
}

/* tlayer: the trace layer replayed, -1 without a trace (no key then). */
static void layer_json(json_t *arr, int layer, int tlayer, const char *phase,
		       const struct sim_layer_out *r)
{
	json_t *o = json_object();

	json_object_set_new(o, "layer", json_integer(layer));
	if (tlayer >= 0)
		json_object_set_new(o, "trace_layer", json_integer(tlayer));
	json_object_set_new(o, "phase", json_string(phase));
	json_object_set_new(o, "dispatch_s", json_real(r->dispatch_s));
	json_object_set_new(o, "compute_s", json_real(r->compute_s));
	json_object_set_new(o, "combine_s", json_real(r->combine_s));
	json_object_set_new(o, "other_s", json_real(r->other_s));
	json_object_set_new(o, "exposed_s", json_real(r->exposed_s));
	json_object_set_new(o, "total_s", json_real(r->total_s));
	json_object_set_new(o, "dispatch_bytes", json_real(r->dispatch_bytes));
	json_object_set_new(o, "combine_bytes", json_real(r->combine_bytes));
	json_object_set_new(o, "network_bytes", json_real(r->network_bytes));
	json_object_set_new(o, "tokens", json_real(r->tokens));
	json_object_set_new(o, "dropped", json_real(r->dropped));
	json_object_set_new(o, "imbalance", json_real(r->imbalance));
	json_array_append_new(arr, o);
}

static enum moe_status store_layer(struct store *db, int64_t id, int layer, const char *phase,
				   const struct sim_layer_out *r)
{
	struct store_layer_row row = {
		layer, phase, r->dispatch_s, r->compute_s, r->combine_s, r->other_s, r->exposed_s,
		r->total_s, r->dispatch_bytes, r->combine_bytes, r->network_bytes, r->tokens,
		r->dropped, r->imbalance,
	};

	return store_layer_add(db, id, &row);
}

struct ctx {
	const struct opts *o;
	const struct moe_model *m;
	const struct moe_cluster *c;      /* the EP group's cluster */
	int cluster_gpus;                 /* all GPUs (every EP group) */
	struct moe_plan *plan;
	struct sim_topo *t;
	const double *pop;                /* expert popularity, sums to 1 */
	struct store *db;
	json_t *inputs;                   /* the run's inputs; top_k set per run */
	int kmax, nlayers;
	struct cli_bar *bar;
	/* --trace */
	struct trace_reader *tr;
	const struct trace_header *th;
	size_t maxchunk;
	double *trace_loads;              /* experts: the first replayed layer's loads */
	int counts;                       /* the trace is count level */
	int *tmap;                        /* nlayers: the trace layer each layer replays */
	int *tused, ntused;               /* the trace layers replayed, ascending */
};

/* Fills rk (gpus x T x k, -1 where a rank has fewer tokens) with layer
 * `layer` of the trace's step: the stored ids' first k slots, or when the
 * trace carries logits and k differs from its top-k, the model's routing
 * policy with k experts applied to those logits (moe/route.h). */
static enum moe_status trace_layer(struct ctx *x, int layer, int k, int *rk,
				   const struct moe_route_policy *pol, struct moe_route_workspace *ws,
				   int32_t *ids, float *wts, int *fill)
{
	const struct trace_chunk *ch;
	int G = x->t->gpus, T = x->plan->tokens_per_gpu, tk = (int)x->th->top_k;
	int reroute = ws != NULL;
	enum moe_status st;

	for (size_t i = 0; i < (size_t)G * (size_t)T * (size_t)k; i++)
		rk[i] = -1;
	memset(fill, 0, (size_t)G * sizeof *fill);
	if ((st = trace_reader_seek(x->tr, (uint64_t)x->o->step, (uint32_t)layer)) != MOE_OK)
		return st == MOE_ENOTFOUND ? moe_error(MOE_EINVAL, "--trace %s: no layer %d in step %ld",
						       x->o->trace, layer, x->o->step) : st;
	for (;;) {
		if ((st = trace_reader_next(x->tr, &ch)) != MOE_OK)
			return st;
		if (ch == NULL || ch->step != (uint64_t)x->o->step || ch->layer != (uint32_t)layer)
			break;
		if (reroute) {
			struct moe_route_out out = {ids, wts, NULL, NULL, 0, 0};
			if ((st = moe_route_batch(pol, ws, ch->logits, ch->n, &out)) != MOE_OK)
				return st;
		}
		for (size_t i = 0; i < ch->n; i++) {
			int r = ch->ranks != NULL ? (int)ch->ranks[i] : 0, slot = fill[r]++;
			int *dst = &rk[((size_t)r * (size_t)T + (size_t)slot) * (size_t)k];
			if (slot >= T)
				return moe_error(MOE_EINVAL, "--trace %s: rank %d has more than %d tokens in layer %d",
						 x->o->trace, r, T, layer);
			for (int j = 0; j < k; j++)
				dst[j] = reroute ? ids[i * (size_t)k + (size_t)j] : ch->ids[i * (size_t)tk + (size_t)j];
		}
	}
	return MOE_OK;
}

/* Fills cnt (gpus x experts) with trace layer `layer` of the step's count
 * matrix; the layer was found when the trace was opened. */
static enum moe_status trace_counts_layer(struct ctx *x, int layer, double *cnt)
{
	const struct trace_chunk *ch;
	size_t n = (size_t)x->th->ranks * (size_t)x->th->experts;
	enum moe_status st;

	if ((st = trace_reader_seek(x->tr, (uint64_t)x->o->step, (uint32_t)layer)) != MOE_OK ||
	    (st = trace_reader_next(x->tr, &ch)) != MOE_OK)
		return st;
	if (ch == NULL || ch->counts == NULL)
		return moe_error(MOE_EFORMAT, "--trace %s: no count chunk for layer %d of step %ld",
				 x->o->trace, layer, x->o->step);
	for (size_t i = 0; i < n; i++)
		cnt[i] = (double)ch->counts[i];
	return MOE_OK;
}

/* One layer of the trace read into a buffer, on a thread of its own while
 * the previous layer is simulated: reading and checking a trace is about a
 * third of a replay's work, and it depends on nothing the simulation does. */
struct loader {
	struct ctx *x;
	int layer, k;
	int *rk;                          /* token level: the layer's routes */
	double *cnts;                     /* count level: its count matrix */
	const struct moe_route_policy *pol;
	struct moe_route_workspace *ws;
	int32_t *ids;
	float *wts;
	int *fill;
	struct moe_failure err;           /* kept here: it runs on a thread */
};

static void *load_layer(void *arg)
{
	struct loader *ld = arg;
	struct ctx *x = ld->x;

	moe_failure_keep(&ld->err, x->counts ? trace_counts_layer(x, x->tmap[ld->layer], ld->cnts)
					     : trace_layer(x, ld->layer, ld->k, ld->rk, ld->pol, ld->ws,
							   ld->ids, ld->wts, ld->fill));
	return NULL;
}

static int simulate(struct ctx *x, int k, struct runres *rr)
{
	const struct opts *o = x->o;
	const struct moe_model *m = x->m;
	int G = x->t->gpus, E = m->experts, T = x->plan->tokens_per_gpu, L = x->t->nlinks;
	struct sim_placement *pl = NULL;
	struct sim_step *st = NULL;
	struct sim_step_opts so = {o->algo, o->dedup, o->mode, 0, 0};
	double *loads = NULL, *et = NULL, *ed = NULL, *before = NULL, *cnts = NULL, *cbuf[2] = {0};
	int *routes = NULL, *rk = NULL, *rbuf[2] = {0};
	struct loader ld;
	pthread_t loader;
	int loading = 0;
	gsl_rng *rng = NULL;
	gsl_ran_discrete_t *tab = NULL;
	enum moe_status s = MOE_OK;
	int64_t id = 0;
	int rc = 0, running = 0, *fill = NULL;
	struct moe_route_policy pol;
	struct moe_route_workspace *ws = NULL;
	int32_t *rids = NULL;
	float *rw = NULL;
	double t_layer = 0, dense_s = 0;

	memset(rr, 0, sizeof *rr);
	rr->k = k;
	rr->layers = json_array();
	so.capacity_factor = o->have_cf ? o->cf : m->capacity_factor;
	so.context = x->plan->phase == MOE_PHASE_DECODE ? (double)o->context : 0;
	loads = malloc((size_t)E * sizeof *loads);
	et = malloc((size_t)E * SIM_PLACE_MAX_REPLICAS * sizeof *et);
	ed = malloc((size_t)E * SIM_PLACE_MAX_REPLICAS * sizeof *ed);
	before = malloc(((size_t)L + 1) * sizeof *before);
	/* two of each: the loader fills one while the other is simulated */
	if (x->counts) {
		/* one layer's count matrix instead of per-token routes */
		cnts = cbuf[0] = malloc((size_t)G * (size_t)E * sizeof *cnts);
		cbuf[1] = malloc((size_t)G * (size_t)E * sizeof *cnts);
		if (cbuf[1] == NULL)
			cnts = NULL;
	} else {
		routes = malloc((size_t)G * (size_t)T * (size_t)(x->tr ? 1 : x->kmax) * sizeof *routes);
		rk = rbuf[0] = malloc((size_t)G * (size_t)T * (size_t)k * sizeof *rk);
		if (x->tr != NULL && (rbuf[1] = malloc((size_t)G * (size_t)T * (size_t)k * sizeof *rk)) == NULL)
			rk = NULL;
	}
	rng = gsl_rng_alloc(gsl_rng_mt19937);
	if (loads == NULL || et == NULL || ed == NULL || before == NULL || rng == NULL ||
	    (x->counts ? cnts == NULL : routes == NULL || rk == NULL)) {
		s = moe_error(MOE_ENOMEM, "out of memory for %d GPUs x %d tokens", G, T);
		goto fail;
	}
	if (x->tr != NULL) {
		for (int e = 0; e < E; e++)
			loads[e] = x->trace_loads[e] * k / x->th->top_k;
		fill = calloc((size_t)G, sizeof *fill);
		if (fill == NULL) {
			s = moe_error(MOE_ENOMEM, "out of memory");
			goto fail;
		}
		if (k != (int)x->th->top_k && (x->th->flags & TRACE_F_LOGITS)) {
			/* re-route the stored logits with k experts; capacity is
			 * the simulator's (--capacity-factor), not the policy's */
			if ((s = moe_route_policy_from_model(m, &pol)) != MOE_OK)
				goto fail;
			pol.k = k;
			pol.capacity_factor = 0;
			if ((s = moe_route_workspace_alloc(&pol, x->maxchunk, &ws)) != MOE_OK)
				goto fail;
			rids = malloc(x->maxchunk * (size_t)k * sizeof *rids);
			rw = malloc(x->maxchunk * (size_t)k * sizeof *rw);
			if (rids == NULL || rw == NULL) {
				s = moe_error(MOE_ENOMEM, "out of memory");
				goto fail;
			}
		}
	} else {
		for (int e = 0; e < E; e++)
			loads[e] = x->pop[e] * (double)G * T * k;
		if ((tab = gsl_ran_discrete_preproc((size_t)E, x->pop)) == NULL) {
			s = moe_error(MOE_ENOMEM, "out of memory");
			goto fail;
		}
	}
	if ((s = sim_placement_new(x->plan->placement, E, G, x->t->gpus_per_node, m->groups, loads,
				   (int)o->redundant, &pl)) != MOE_OK)
		goto fail;
	if ((s = sim_step_new(m, x->c, x->plan, x->t, pl, &so, &st)) != MOE_OK)
		goto fail;
	sim_step_set_coalesce(st, o->coalesce);
	memset(&ld, 0, sizeof ld);
	ld.x = x;
	ld.k = k;
	ld.cnts = cbuf[0];
	ld.rk = rbuf[0];
	ld.pol = &pol;
	ld.ws = ws;
	ld.ids = rids;
	ld.wts = rw;
	ld.fill = fill;
	if (x->db != NULL) {
		char label[256];
		struct store_run_meta meta;
		snprintf(label, sizeof label, "%s%stop-%d", o->label ? o->label : "",
			 o->label ? " " : "", k);
		char *inputs_txt = NULL;
		/* Runs of one --top-k list differ in top_k alone: say so in their
		 * inputs, so that compare and report pair them. */
		if (x->inputs != NULL) {
			json_object_set_new(x->inputs, "top_k", json_integer(k));
			inputs_txt = json_dumps(x->inputs, JSON_COMPACT | JSON_PRESERVE_ORDER);
		}
		meta.kind = "sim";
		meta.label = label;
		meta.model = o->model;
		meta.cluster = o->cluster;
		meta.inputs_json = inputs_txt;
		meta.seed = (uint64_t)o->seed;
		s = store_run_begin(x->db, &meta, &id);
		free(inputs_txt);
		if (s != MOE_OK)
			goto fail;
		running = 1;
		rr->run_id = id;
	}
	for (int layer = 0; layer < x->nlayers; layer++) {
		struct sim_layer_out f, b;
		int training = x->plan->phase == MOE_PHASE_TRAINING, tl;
		char what[64];

		if (x->tr != NULL) {
			/* this layer: loaded by the thread started last time (or
			 * here, for the first layer or when no thread could start);
			 * then the next one's thread starts */
			if (loading) {
				pthread_join(loader, NULL);
				loading = 0;
			} else {
				ld.layer = layer;
				load_layer(&ld);
			}
			if ((s = moe_failure_raise(&ld.err)) != MOE_OK)
				goto fail;
			cnts = cbuf[layer & 1];
			rk = rbuf[layer & 1];
			if (layer + 1 < x->nlayers) {
				ld.layer = layer + 1;
				ld.cnts = cbuf[(layer + 1) & 1];
				ld.rk = rbuf[(layer + 1) & 1];
				loading = pthread_create(&loader, NULL, load_layer, &ld) == 0;
			}
		} else {
			/* the same draws for every k: a seed per layer */
			gsl_rng_set(rng, (unsigned long)o->seed * 1000003UL + (unsigned long)layer);
			draw_routes(rng, tab, E, (long)G * T, x->kmax, routes);
			for (long i = 0; i < (long)G * T; i++)
				memcpy(&rk[i * k], &routes[i * x->kmax], (size_t)k * sizeof *rk);
		}
		for (int l = 0; l < L; l++)
			before[l] = st->link_bytes[l];
		if (x->counts)
			s = sim_step_layer_counts(st, cnts, k, et, ed, &f, training ? &b : NULL);
		else
			s = sim_step_layer(st, rk, k, et, ed, &f, training ? &b : NULL);
		if (s != MOE_OK)
			goto fail;
		tl = x->tmap != NULL ? x->tmap[layer] : -1;
		layer_json(rr->layers, layer, tl, phase_of(x->plan->phase), &f);
		if (training)
			layer_json(rr->layers, layer, tl, "backward", &b);
		rr->dropped += f.dropped;
		rr->tokens += f.tokens;
		rr->net_bytes += f.network_bytes + (training ? b.network_bytes : 0);
		if (x->db != NULL) {
			double tot = f.total_s + (training ? b.total_s : 0);
			if ((s = store_layer(x->db, id, layer, phase_of(x->plan->phase), &f)) != MOE_OK ||
			    (training && (s = store_layer(x->db, id, layer, "backward", &b)) != MOE_OK))
				goto fail;
			for (int l = 0; l < L && tot > 0; l++) {
				double d = st->link_bytes[l] - before[l];
				if (d > 0 && (s = store_link_sample_add(x->db, id, l, t_layer,
						d / (x->t->links[l].bw_Bps * tot))) != MOE_OK)
					goto fail;
			}
			for (int e = 0; e < E; e++)
				for (int r = 0; r < pl->nrep[e]; r++) {
					struct store_expert_row er = {layer, e, pl->rep[e * SIM_PLACE_MAX_REPLICAS + r],
						et[e * SIM_PLACE_MAX_REPLICAS + r], ed[e * SIM_PLACE_MAX_REPLICAS + r]};
					if ((s = store_expert_add(x->db, id, &er)) != MOE_OK)
						goto fail;
				}
			{
				char nm[64];
				struct store_span_row sp;
				snprintf(nm, sizeof nm, "layer %d", layer);
				sp.track = "network";
				sp.name = nm;
				sp.cat = "dispatch";
				sp.start_s = t_layer + f.other_s;
				sp.dur_s = f.dispatch_s;
				if ((s = store_span_add(x->db, id, &sp)) != MOE_OK)
					goto fail;
				sp.cat = "combine";
				sp.start_s = t_layer + f.total_s - f.combine_s;
				sp.dur_s = f.combine_s;
				if ((s = store_span_add(x->db, id, &sp)) != MOE_OK)
					goto fail;
				sp.track = "compute";
				sp.cat = "experts";
				sp.start_s = t_layer + f.other_s + f.dispatch_s;
				sp.dur_s = f.compute_s;
				if ((s = store_span_add(x->db, id, &sp)) != MOE_OK)
					goto fail;
			}
			t_layer += tot;
		}
		snprintf(what, sizeof what, "top-%d layer %d/%d", k, layer + 1, x->nlayers);
		cli_bar_update(x->bar, (unsigned long long)layer + 1, (unsigned long long)x->nlayers, what);
	}
	/* dense blocks: attention and the dense FFN, not simulated layer by layer */
	{
		struct moe_model dm = *m;
		struct sim_compute kc;
		int mb = x->plan->micro_batches >= 2 && x->plan->overlap ? 2 : 1;
		dm.shared_experts = 0;
		dm.experts = 0;
		/* every GPU runs them; the slowest node group's GPU sets the time */
		for (int kd = 0; kd < moe_cluster_kinds(x->c); kd++) {
			double d = 0;
			sim_compute_init_kind(&kc, x->c, kd, m);
			for (int i = 0; i < mb; i++)
				d += sim_compute_other_s(&kc, &dm, (double)T / mb, so.context, 1) +
				     sim_compute_ffn_s(&kc, &dm, m->dense_ffn, (double)T / mb);
			dense_s = fmax(dense_s, d);
		}
		dense_s *= (m->layers - m->moe_layers) * (x->plan->phase == MOE_PHASE_TRAINING ? 3 : 1);
	}
	rr->step_s = st->elapsed_s + dense_s;
	rr->tokens_per_s = rr->step_s > 0 ? (double)x->cluster_gpus * T / rr->step_s : 0;
	rr->busiest = rr->idlest = 0;
	{
		double maxt = 0, sumt = 0;
		for (int g = 0; g < G; g++) {
			if (st->busy_s[g] > st->busy_s[rr->busiest])
				rr->busiest = g;
			if (st->busy_s[g] < st->busy_s[rr->idlest])
				rr->idlest = g;
			maxt = fmax(maxt, st->tokens[g]);
			sumt += st->tokens[g];
		}
		rr->busiest_s = st->busy_s[rr->busiest];
		rr->idlest_s = st->busy_s[rr->idlest];
		rr->imbalance = sumt > 0 ? maxt / (sumt / G) : 0;
	}
	rr->bn_link = -1;
	for (int l = 0; l < L; l++) {
		double u = st->link_bytes[l] / x->t->links[l].bw_Bps;
		if (st->link_bytes[l] > 0 && (rr->bn_link < 0 || u > rr->bn_util)) {
			rr->bn_link = l;
			rr->bn_util = u;
		}
	}
	if (rr->bn_link >= 0)
		rr->bn_util = st->elapsed_s > 0 ? rr->bn_util / st->elapsed_s : 0;
	if (x->db != NULL) {
		json_t *sum = json_object();
		char *txt;
		for (int g = 0; g < G; g++) {
			struct store_gpu_row gr = {g, g / x->t->gpus_per_node, st->busy_s[g],
				fmax(0, rr->step_s - st->busy_s[g]), st->compute_s[g], st->tokens[g],
				st->sent[g], st->recv[g]};
			if ((s = store_gpu_add(x->db, id, &gr)) != MOE_OK)
				goto fail;
		}
		for (int l = 0; l < L; l++) {
			struct store_link_row lr;
			if (st->link_bytes[l] <= 0)
				continue;
			lr.link = l;
			lr.name = x->t->links[l].name;
			lr.kind = sim_link_kind_name(x->t->links[l].kind);
			lr.bw_Bps = x->t->links[l].bw_Bps;
			lr.bytes = st->link_bytes[l];
			lr.busy_s = st->link_busy_s[l];
			lr.utilization = st->elapsed_s > 0 ? st->link_bytes[l] / (lr.bw_Bps * st->elapsed_s) : 0;
			if ((s = store_link_add(x->db, id, &lr)) != MOE_OK)
				goto fail;
		}
		if ((s = store_metric_add(x->db, id, "step_time_s", rr->step_s, "s")) != MOE_OK ||
		    (s = store_metric_add(x->db, id, "tokens_per_s", rr->tokens_per_s, "1/s")) != MOE_OK ||
		    (s = store_metric_add(x->db, id, "network_bytes", rr->net_bytes, "B")) != MOE_OK ||
		    (s = store_metric_add(x->db, id, "dropped", rr->dropped, "tokens")) != MOE_OK ||
		    (s = store_metric_add(x->db, id, "imbalance", rr->imbalance, "max/mean")) != MOE_OK)
			goto fail;
		json_object_set_new(sum, "top_k", json_integer(k));
		json_object_set_new(sum, "step_time_s", json_real(rr->step_s));
		json_object_set_new(sum, "tokens_per_s", json_real(rr->tokens_per_s));
		json_object_set_new(sum, "dropped", json_real(rr->dropped));
		json_object_set_new(sum, "imbalance", json_real(rr->imbalance));
		txt = json_dumps(sum, JSON_COMPACT);
		json_decref(sum);
		s = store_run_done(x->db, id, txt);
		free(txt);
		running = 0;
		if (s != MOE_OK)
			goto fail;
	}
	goto out;
fail:
	if (running)
		s = store_run_abort(x->db, id, s);
	rc = cli_fail("sim", s);
out:
	if (loading)
		pthread_join(loader, NULL);
	if (tab != NULL)
		gsl_ran_discrete_free(tab);
	if (rng != NULL)
		gsl_rng_free(rng);
	free(loads); free(et); free(ed); free(before); free(routes); free(rbuf[0]); free(rbuf[1]);
	free(fill); free(cbuf[0]); free(cbuf[1]);
	free(rids); free(rw);
	moe_route_workspace_free(ws);
	sim_step_free(st);
	sim_placement_free(pl);
	return rc;
}

/* "0-6 <- 0, 7-14 <- 7, 15 <- 15": runs of layers replaying one trace
 * layer (truncated with "..." to fit n bytes). */
static void layer_map_text(const struct ctx *x, char *buf, size_t n)
{
	size_t len = 0;

	buf[0] = '\0';
	for (int a = 0, b; a < x->nlayers; a = b + 1) {
		char one[48];
		for (b = a; b + 1 < x->nlayers && x->tmap[b + 1] == x->tmap[a]; b++)
			;
		if (a == b)
			snprintf(one, sizeof one, "%s%d <- %d", a ? ", " : "", a, x->tmap[a]);
		else
			snprintf(one, sizeof one, "%s%d-%d <- %d", a ? ", " : "", a, b, x->tmap[a]);
		if (len + strlen(one) + 4 >= n) {
			snprintf(buf + len, n - len, "...");
			return;
		}
		len += (size_t)snprintf(buf + len, n - len, "%s", one);
	}
}

static void print_table(const struct ctx *x, const struct runres *rr, int nr)
{
	const struct opts *o = x->o;

	/* csv: one table of every run's layers (the top_k column tells them
	 * apart); table: a table per run with its summary */
	struct cli_table *t = NULL;

	for (int r = 0; r < nr; r++) {
		size_t nl = json_array_size(rr[r].layers);
		char b1[32];
		int fresh = t == NULL;

		if (fresh)
			t = cli_table_new("layers");

		cli_table_note(t, "moekit sim: model %s, cluster %s, EP %d (%d nodes x %d GPUs), top-%d",
			       o->model, o->cluster, x->t->gpus, x->t->nodes, x->t->gpus_per_node, rr[r].k);
		cli_table_note(t, "%ld tokens/GPU, %s, %s, %s placement, %s, %s %s, seed %ld, mode %s",
			       (long)x->plan->tokens_per_gpu, moe_phase_name(x->plan->phase),
			       sim_a2a_algo_name(o->algo), moe_placement_name(x->plan->placement),
			       o->mp == SIM_MULTIPATH_ECMP ? "ecmp" : "spray",
			       o->trace ? "trace" : "pattern",
			       o->trace ? o->trace : o->zipf > 0 ? "zipf" : "uniform", o->seed,
			       o->mode == SIM_STEP_ANALYTIC ? "analytic" : "events");
		if (x->counts) {
			char map[512];
			layer_map_text(x, map, sizeof map);
			cli_table_note(t, "count-level trace: no token identities, so no de-duplication "
				       "(bytes count every assignment: an upper bound)");
			cli_table_note(t, "trace layers replayed (model layers <- trace layer): %s", map);
		}
		if (fresh) {
			cli_table_col(t, "top_k", CLI_COL_NUM);
			cli_table_col(t, "layer", CLI_COL_NUM);
			cli_table_col(t, "phase", CLI_COL_STR);
			cli_table_col(t, "dispatch_s", CLI_COL_NUM);
			cli_table_col(t, "compute_s", CLI_COL_NUM);
			cli_table_col(t, "combine_s", CLI_COL_NUM);
			cli_table_col(t, "other_s", CLI_COL_NUM);
			cli_table_col(t, "exposed_s", CLI_COL_NUM);
			cli_table_col(t, "total_s", CLI_COL_NUM);
			cli_table_col(t, "network_B", CLI_COL_NUM);
			cli_table_col(t, "dropped", CLI_COL_NUM);
			cli_table_col(t, "imbalance", CLI_COL_NUM);
		}
		for (size_t i = 0; i < nl; i++) {
			json_t *l = json_array_get(rr[r].layers, i);
			const char *keys[] = {"layer", "phase", "dispatch_s", "compute_s", "combine_s",
					      "other_s", "exposed_s", "total_s", "network_bytes",
					      "dropped", "imbalance"};
			char cells[12][40];
			const char *cp[12];
			snprintf(cells[11], sizeof cells[11], "%d", rr[r].k);
			cp[0] = cells[11];
			for (int c = 0; c < 11; c++) {
				json_t *v = json_object_get(l, keys[c]);
				if (json_is_string(v))
					snprintf(cells[c], sizeof cells[c], "%s", json_string_value(v));
				else if (json_is_integer(v))
					snprintf(cells[c], sizeof cells[c], "%lld", (long long)json_integer_value(v));
				else
					snprintf(cells[c], sizeof cells[c], "%.6g", json_number_value(v));
				cp[c + 1] = cells[c];
			}
			cli_table_row(t, cp);
		}
		if (o->fmt != CLI_FORMAT_CSV || r == nr - 1) {
			cli_table_print(t, o->fmt, stdout);
			cli_table_free(t);
			t = NULL;
		}
		if (o->fmt == CLI_FORMAT_TABLE) {
			printf("# step time %.6g s, %.6g tokens/s", rr[r].step_s, rr[r].tokens_per_s);
			if (rr[r].run_id > 0)
				printf(" (run %lld)", (long long)rr[r].run_id);
			printf("\n");
			if (rr[r].bn_link >= 0)
				printf("# bottleneck link %s (%s, %s): utilization %.1f%% of the MoE layers' time\n",
				       x->t->links[rr[r].bn_link].name,
				       sim_link_kind_name(x->t->links[rr[r].bn_link].kind),
				       moe_units_format(x->t->links[rr[r].bn_link].bw_Bps, MOE_UNIT_RATE, b1,
							sizeof b1),
				       100 * rr[r].bn_util);
			printf("# busiest GPU %d (%.6g s busy), idlest GPU %d (%.6g s); imbalance %.3f "
			       "(max/mean tokens); dropped %.0f of %.0f assignments\n",
			       rr[r].busiest, rr[r].busiest_s, rr[r].idlest, rr[r].idlest_s,
			       rr[r].imbalance, rr[r].dropped, rr[r].dropped + rr[r].tokens);
		}
	}
	if (nr > 1 && o->fmt == CLI_FORMAT_TABLE) {
		printf("#\n# comparison\n# %5s %12s %14s %16s %10s %10s\n", "top_k", "step_s",
		       "tokens/s", "network_B", "imbalance", "dropped");
		for (int r = 0; r < nr; r++)
			printf("  %5d %12.6g %14.6g %16.6g %10.3f %10.0f\n", rr[r].k, rr[r].step_s,
			       rr[r].tokens_per_s, rr[r].net_bytes, rr[r].imbalance, rr[r].dropped);
	}
}

static void print_json(const struct ctx *x, const struct runres *rr, int nr)
{
	json_t *root = json_object(), *runs = json_array();

	for (int r = 0; r < nr; r++) {
		json_t *o = json_object(), *bn = json_object(), *gb = json_object(), *gi = json_object();
		json_object_set_new(o, "run_id", rr[r].run_id > 0 ? json_integer(rr[r].run_id) : json_null());
		json_object_set_new(o, "top_k", json_integer(rr[r].k));
		json_object_set_new(o, "step_time_s", json_real(rr[r].step_s));
		json_object_set_new(o, "tokens_per_s", json_real(rr[r].tokens_per_s));
		json_object_set_new(o, "network_bytes", json_real(rr[r].net_bytes));
		json_object_set_new(o, "tokens", json_real(rr[r].tokens));
		json_object_set_new(o, "dropped", json_real(rr[r].dropped));
		json_object_set_new(o, "imbalance", json_real(rr[r].imbalance));
		json_object_set_new(o, "layers", json_incref(rr[r].layers));
		if (rr[r].bn_link >= 0) {
			json_object_set_new(bn, "link", json_string(x->t->links[rr[r].bn_link].name));
			json_object_set_new(bn, "kind", json_string(sim_link_kind_name(x->t->links[rr[r].bn_link].kind)));
			json_object_set_new(bn, "utilization", json_real(rr[r].bn_util));
			json_object_set_new(o, "bottleneck", bn);
		} else {
			json_decref(bn);
			json_object_set_new(o, "bottleneck", json_null());
		}
		json_object_set_new(gb, "gpu", json_integer(rr[r].busiest));
		json_object_set_new(gb, "busy_s", json_real(rr[r].busiest_s));
		json_object_set_new(gi, "gpu", json_integer(rr[r].idlest));
		json_object_set_new(gi, "busy_s", json_real(rr[r].idlest_s));
		json_object_set_new(o, "busiest_gpu", gb);
		json_object_set_new(o, "idlest_gpu", gi);
		json_array_append_new(runs, o);
	}
	json_object_set_new(root, "runs", runs);
	json_object_set_new(root, "mode", json_string(x->o->mode == SIM_STEP_ANALYTIC ? "analytic" : "events"));
	json_object_set_new(root, "coalesce", json_real(x->o->coalesce));
	if (x->tr != NULL) {
		json_t *t = json_object();
		json_object_set_new(t, "file", json_string(x->o->trace));
		json_object_set_new(t, "level", json_string(x->counts ? "counts" : "tokens"));
		json_object_set_new(t, "step", json_integer(x->o->step));
		json_object_set_new(t, "top_k", json_integer((json_int_t)x->th->top_k));
		json_object_set_new(t, "layers_used", int_array(x->tused, x->ntused));
		json_object_set_new(t, "layer_map", int_array(x->tmap, x->nlayers));
		json_object_set_new(t, "dedup", json_boolean(x->o->dedup && !x->counts));
		json_object_set_new(root, "trace", t);
	}
	json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
	fputc('\n', stdout);
	json_decref(root);
}

/* One part of the scan of a token trace's layers [from, to) for the step:
 * the most tokens any rank sends in a layer, the largest chunk, and (for
 * layer 0) the per-expert loads. */
struct tscan {
	const struct opts *o;
	const struct trace_header *h;
	struct trace_reader *tr;          /* this part's own reader */
	int from, to, experts;
	double *loads;                    /* experts, or NULL: layer 0 is not here */
	long most;                        /* tokens of the fullest rank */
	size_t maxchunk;
	struct moe_failure err;           /* kept here: it may run on a thread */
};

static void *tscan_run(void *arg)
{
	struct tscan *sc = arg;
	const struct trace_chunk *ch;
	enum moe_status st = MOE_OK;
	long *cnt = calloc((size_t)sc->h->ranks, sizeof *cnt);
	uint64_t *ld = calloc((size_t)sc->experts, sizeof *ld);

	if (cnt == NULL || ld == NULL)
		st = moe_error(MOE_ENOMEM, "out of memory");
	for (int l = sc->from; l < sc->to && st == MOE_OK; l++) {
		memset(cnt, 0, (size_t)sc->h->ranks * sizeof *cnt);
		if ((st = trace_reader_seek(sc->tr, (uint64_t)sc->o->step, (uint32_t)l)) != MOE_OK) {
			if (st == MOE_ENOTFOUND)
				st = moe_error(MOE_EINVAL, "--trace %s: no layer %d in step %ld",
					       sc->o->trace, l, sc->o->step);
			break;
		}
		while ((st = trace_reader_next(sc->tr, &ch)) == MOE_OK && ch != NULL &&
		       ch->step == (uint64_t)sc->o->step && ch->layer == (uint32_t)l) {
			if (ch->n > sc->maxchunk)
				sc->maxchunk = ch->n;
			for (size_t i = 0; i < ch->n; i++) {
				uint32_t r = ch->ranks != NULL ? ch->ranks[i] : 0;
				if (++cnt[r] > sc->most)
					sc->most = cnt[r];
			}
			if (l == 0 && sc->loads != NULL) {
				memset(ld, 0, (size_t)sc->experts * sizeof *ld);
				trace_chunk_loads(ch, ld);
				for (int e = 0; e < sc->experts; e++)
					sc->loads[e] += (double)ld[e];
			}
		}
	}
	free(cnt);
	free(ld);
	moe_failure_keep(&sc->err, st);
	return NULL;
}

/* Token-level --trace (after the checks every trace gets): the top-k
 * values it can give, the tokens per GPU (the most any rank has in a
 * simulated layer), the largest chunk, the placement's loads (layer 0) and
 * the identity layer map, read from every simulated layer of the step, which
 * checks them all before any work.  The later half of the layers is read on
 * a second thread with its own reader.  Returns 0, or the exit status after
 * printing the error (the first layer's in layer order). */
static int token_trace_open(struct ctx *x, struct opts *o, const struct moe_model *m,
			    struct moe_plan *plan, int nl)
{
	const struct trace_header *h = x->th;
	struct tscan sc[2];
	pthread_t th;
	int threaded = 0;

	for (int i = 0; i < o->nk; i++)
		if (o->ks[i] > (int)h->top_k && !(h->flags & TRACE_F_LOGITS))
			return cli_usage("sim", "--top-k %d: the trace %s holds %u experts per token "
					 "and no logits to re-route", o->ks[i], o->trace, h->top_k);
	x->trace_loads = calloc((size_t)m->experts, sizeof *x->trace_loads);
	if (x->trace_loads == NULL)
		return cli_fail("sim", moe_error(MOE_ENOMEM, "out of memory"));
	memset(sc, 0, sizeof sc);
	for (int i = 0; i < 2; i++) {
		sc[i].o = o;
		sc[i].h = h;
		sc[i].experts = m->experts;
	}
	sc[0].tr = x->tr;
	sc[0].loads = x->trace_loads;
	sc[0].to = sc[1].from = nl >= 2 ? nl / 2 : nl;
	sc[1].to = nl;
	if (sc[1].from < sc[1].to && trace_reader_open(o->trace, &sc[1].tr) == MOE_OK)
		threaded = pthread_create(&th, NULL, tscan_run, &sc[1]) == 0;
	if (!threaded) {
		/* one reader for everything */
		sc[0].to = nl;
		sc[1].to = sc[1].from;
	}
	tscan_run(&sc[0]);
	if (threaded)
		pthread_join(th, NULL);
	trace_reader_close(sc[1].tr);
	for (int i = 0; i < 2; i++)
		if (sc[i].err.st != MOE_OK)
			return cli_fail("sim", moe_failure_raise(&sc[i].err));
	x->maxchunk = sc[0].maxchunk > sc[1].maxchunk ? sc[0].maxchunk : sc[1].maxchunk;
	plan->tokens_per_gpu = (int)(sc[0].most > sc[1].most ? sc[0].most : sc[1].most);
	if (plan->tokens_per_gpu < 1)
		return cli_fail("sim", moe_error(MOE_EINVAL, "--trace %s: step %ld has no tokens",
						 o->trace, o->step));
	/* layer l replays the trace's layer l */
	x->tmap = malloc((size_t)nl * sizeof *x->tmap);
	x->tused = malloc((size_t)nl * sizeof *x->tused);
	if (x->tmap == NULL || x->tused == NULL)
		return cli_fail("sim", moe_error(MOE_ENOMEM, "out of memory"));
	for (int l = 0; l < nl; l++)
		x->tmap[l] = x->tused[l] = l;
	x->ntused = nl;
	return 0;
}

/* Count-level --trace (after the checks every trace gets): the k, the
 * layers the step recorded among 0..nl-1 and the map from each simulated
 * layer to one of them, the tokens per GPU and the placement's loads.
 * Returns 0, or the exit status after printing the error. */
static int count_trace_open(struct ctx *x, struct opts *o, const struct moe_model *m,
			    struct moe_plan *plan, int given_k, int nl)
{
	const struct trace_header *h = x->th;
	const struct trace_chunk *ch;
	int E = m->experts, k = (int)h->top_k;
	double maxrow = 0, T;
	enum moe_status st;

	/* no token identities and no logits: the counts are of the trace's k */
	if (given_k && (o->nk > 1 || o->ks[0] != k))
		return cli_usage("sim", "--top-k %s: the count-level trace %s holds top-%d counts and "
				 "nothing to re-route; give --top-k %d or leave it out", o->k_arg,
				 o->trace, k, k);
	o->ks[0] = k;
	o->nk = 1;
	x->counts = 1;
	x->tmap = malloc((size_t)nl * sizeof *x->tmap);
	x->tused = malloc((size_t)nl * sizeof *x->tused);
	x->trace_loads = calloc((size_t)E, sizeof *x->trace_loads);
	if (x->tmap == NULL || x->tused == NULL || x->trace_loads == NULL)
		return cli_fail("sim", moe_error(MOE_ENOMEM, "out of memory"));
	for (int l = 0; l < nl; l++) {
		x->tmap[l] = -1;
		st = trace_reader_seek(x->tr, (uint64_t)o->step, (uint32_t)l);
		if (st == MOE_ENOTFOUND)
			continue;
		if (st != MOE_OK || (st = trace_reader_next(x->tr, &ch)) != MOE_OK)
			return cli_fail("sim", st);
		if (ch == NULL || ch->counts == NULL)
			return cli_fail("sim", moe_error(MOE_EFORMAT, "--trace %s: layer %d of step %ld "
							 "has no count chunk", o->trace, l, o->step));
		x->tmap[l] = l;
		x->tused[x->ntused++] = l;
		for (uint32_t r = 0; r < h->ranks; r++) {
			double row = 0;
			for (int e = 0; e < E; e++) {
				double c = (double)ch->counts[(size_t)r * (size_t)E + (size_t)e];
				row += c;
				if (x->ntused == 1) /* placement from the first layer replayed */
					x->trace_loads[e] += c;
			}
			maxrow = fmax(maxrow, row);
		}
	}
	if (x->ntused == 0)
		return cli_fail("sim", moe_error(MOE_EINVAL, "--trace %s: step %ld has no count chunk "
						 "in layers 0..%d", o->trace, o->step, nl - 1));
	/* a layer the trace did not record replays the closest recorded one
	 * below it (layers before the first recorded one: the first) */
	for (int l = 0, cur = x->tused[0]; l < nl; l++) {
		if (x->tmap[l] >= 0)
			cur = l;
		x->tmap[l] = cur;
	}
	/* a GPU's tokens: its assignments / k (exact when every token used
	 * its k experts); the busiest GPU of any recorded layer sets them */
	T = ceil(maxrow / k);
	if (T < 1)
		return cli_fail("sim", moe_error(MOE_EINVAL, "--trace %s: step %ld has no tokens",
						 o->trace, o->step));
	if (T > 1 << 30)
		return cli_fail("sim", moe_error(MOE_EINVAL, "--trace %s: %.0f tokens on one rank in step "
						 "%ld: at most 2^30 supported", o->trace, T, o->step));
	plan->tokens_per_gpu = (int)T;
	return 0;
}

int cmd_sim(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"model", required_argument, NULL, 'M'}, {"cluster", required_argument, NULL, 'C'},
		{"ep", required_argument, NULL, 'e'}, {"tokens-per-gpu", required_argument, NULL, 'T'},
		{"placement", required_argument, NULL, 'P'},
		{"redundant-experts", required_argument, NULL, 'R'},
		{"algorithm", required_argument, NULL, 'a'}, {"multipath", required_argument, NULL, 'm'},
		{"no-dedup", no_argument, NULL, 'D'}, {"pattern", required_argument, NULL, 'p'},
		{"seed", required_argument, NULL, 's'}, {"top-k", required_argument, NULL, 'k'},
		{"capacity-factor", required_argument, NULL, 'c'}, {"phase", required_argument, NULL, 'H'},
		{"micro-batches", required_argument, NULL, 'b'}, {"overlap", no_argument, NULL, 'O'},
		{"context", required_argument, NULL, 'x'}, {"layers", required_argument, NULL, 'L'},
		{"mode", required_argument, NULL, 'o'}, {"slow-gpu", required_argument, NULL, 'g'},
		{"slow-link", required_argument, NULL, 'l'}, {"db", required_argument, NULL, 'd'},
		{"label", required_argument, NULL, 'B'}, {"format", required_argument, NULL, 'f'},
		{"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'},
		{"trace", required_argument, NULL, 'r'}, {"step", required_argument, NULL, 'S'},
		{"coalesce", required_argument, NULL, 'Q'},
		{NULL, 0, NULL, 0},
	};
	struct opts o;
	struct moe_model m;
	struct moe_cluster full, c;
	struct moe_plan plan;
	struct sim_topo *t = NULL;
	struct store *db = NULL;
	struct runres rr[MAX_K];
	struct ctx x;
	struct cli_bar bar;
	double *pop = NULL, t0;
	json_t *inputs = NULL;
	enum moe_status st;
	int rc = 0, opt, nr = 0, given_k;

	memset(&o, 0, sizeof o);
	memset(rr, 0, sizeof rr);
	o.ep = -1; o.tokens = -1; o.seed = 1; o.layers = -1; o.micro = -1; o.context = 4096;
	o.dedup = 1; o.algo = SIM_A2A_DIRECT; o.mp = SIM_MULTIPATH_SPRAY; o.mode = SIM_STEP_EVENTS;
	o.fmt = CLI_FORMAT_TABLE;
	o.coalesce = SIM_NET_COALESCE_DEFAULT;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		long v;
		switch (opt) {
		case 'M': o.model = optarg; break;
		case 'C': o.cluster = optarg; break;
		case 'e': if (!cli_parse_long("sim", "--ep", optarg, 1, 1000000, &o.ep)) return 2; break;
		case 'T': if (!cli_parse_long("sim", "--tokens-per-gpu", optarg, 1, 1 << 24, &o.tokens)) return 2; break;
		case 'P':
			if (!moe_placement_parse(optarg, &o.placement))
				return cli_usage("sim", "--placement: unknown '%s': expected contiguous, "
						 "round-robin or balanced", optarg);
			o.have_placement = 1;
			break;
		case 'R': if (!cli_parse_long("sim", "--redundant-experts", optarg, 0, 1 << 20, &o.redundant)) return 2; break;
		case 'a':
			if (!sim_a2a_algo_parse(optarg, &o.algo))
				return cli_usage("sim", "--algorithm: unknown '%s': expected direct, "
						 "hierarchical or nvlink-forward", optarg);
			break;
		case 'm':
			if (strcmp(optarg, "ecmp") == 0) o.mp = SIM_MULTIPATH_ECMP;
			else if (strcmp(optarg, "spray") == 0) o.mp = SIM_MULTIPATH_SPRAY;
			else return cli_usage("sim", "--multipath: unknown '%s': expected ecmp or spray", optarg);
			break;
		case 'D': o.dedup = 0; break;
		case 'p':
			if (strcmp(optarg, "uniform") == 0) {
				o.zipf = 0;
			} else if (strncmp(optarg, "zipf:", 5) == 0) {
				char *end;
				o.zipf = strtod(optarg + 5, &end);
				if (*end != '\0' || !(o.zipf > 0) || o.zipf > 10)
					return cli_usage("sim", "--pattern: '%s': expected zipf:S with S in (0, 10]", optarg);
			} else {
				return cli_usage("sim", "--pattern: unknown '%s': expected uniform or zipf:S", optarg);
			}
			break;
		case 's': if (!cli_parse_long("sim", "--seed", optarg, 0, 2147483647L, &o.seed)) return 2; break;
		case 'k': {
			char buf[256], *save = NULL;
			snprintf(buf, sizeof buf, "%s", optarg);
			o.k_arg = optarg;
			o.nk = 0;
			for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				if (o.nk == MAX_K)
					return cli_usage("sim", "--top-k: at most %d values", MAX_K);
				if (!cli_parse_long("sim", "--top-k", tok, 1, 1024, &v))
					return 2;
				o.ks[o.nk++] = (int)v;
			}
			if (o.nk == 0)
				return cli_usage("sim", "--top-k: expected a list such as 1,2");
			break;
		}
		case 'c': if (!cli_parse_double("sim", "--capacity-factor", optarg, 0, 1e6, &o.cf)) return 2; o.have_cf = 1; break;
		case 'H':
			if (!moe_phase_parse(optarg, &o.phase))
				return cli_usage("sim", "--phase: unknown '%s': expected forward, training, "
						 "prefill or decode", optarg);
			o.have_phase = 1;
			break;
		case 'b': if (!cli_parse_long("sim", "--micro-batches", optarg, 1, 2, &o.micro)) return 2; break;
		case 'O': o.overlap = 1; break;
		case 'x': if (!cli_parse_long("sim", "--context", optarg, 1, 1L << 30, &o.context)) return 2; break;
		case 'L': if (!cli_parse_long("sim", "--layers", optarg, 1, 100000, &o.layers)) return 2; break;
		case 'o':
			if (strcmp(optarg, "events") == 0) o.mode = SIM_STEP_EVENTS;
			else if (strcmp(optarg, "analytic") == 0) o.mode = SIM_STEP_ANALYTIC;
			else return cli_usage("sim", "--mode: unknown '%s': expected events or analytic", optarg);
			break;
		case 'g': {
			const char *name;
			char *end;
			if (o.nsg == MAX_SLOW)
				return cli_usage("sim", "--slow-gpu: at most %d", MAX_SLOW);
			if (!parse_kv("--slow-gpu", optarg, &name, &o.sgf[o.nsg]))
				return 2;
			o.sg[o.nsg] = strtol(name, &end, 10);
			if (*end != '\0' || *name == '\0' || o.sg[o.nsg] < 0)
				return cli_usage("sim", "--slow-gpu: '%s' is not a GPU rank", name);
			o.nsg++;
			break;
		}
		case 'l':
			if (o.nsl == MAX_SLOW)
				return cli_usage("sim", "--slow-link: at most %d", MAX_SLOW);
			if (!parse_kv("--slow-link", optarg, &o.sl[o.nsl], &o.slf[o.nsl]))
				return 2;
			o.nsl++;
			break;
		case 'd': o.db = optarg; break;
		case 'r': o.trace = optarg; break;
		case 'Q': if (!cli_parse_double("sim", "--coalesce", optarg, 0, 0.1, &o.coalesce)) return 2; break;
		case 'S': if (!cli_parse_long("sim", "--step", optarg, 0, 1L << 40, &o.step)) return 2; break;
		case 'B': o.label = optarg; break;
		case 'f': if (!cli_parse_format("sim", optarg, &o.fmt)) return 2; break;
		case 'q': o.quiet = 1; break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_stdout("sim");
		default:
			return cli_bad_option("sim", argc, argv);
		}
	}
	if (optind < argc)
		return cli_usage("sim", "unexpected argument '%s'", argv[optind]);
	if (o.model == NULL)
		return cli_usage("sim", "missing --model");
	if (o.cluster == NULL)
		return cli_usage("sim", "missing --cluster");
	if ((st = moe_model_load(o.model, &m)) != MOE_OK || (st = moe_cluster_load(o.cluster, &full)) != MOE_OK)
		return cli_fail("sim", st);
	moe_plan_default(&plan, &m, &full);
	if (o.ep > 0) plan.ep = (int)o.ep;
	if (o.tokens > 0) plan.tokens_per_gpu = (int)o.tokens;
	if (o.have_placement) plan.placement = o.placement;
	if (o.have_phase) plan.phase = o.phase;
	if (o.micro > 0) plan.micro_batches = (int)o.micro;
	plan.overlap = o.overlap;
	plan.redundant_experts = (int)o.redundant;
	if (o.overlap && plan.micro_batches < 2)
		plan.micro_batches = 2;
	if ((st = moe_plan_validate(&plan, &m, &full)) != MOE_OK)
		return cli_fail("sim", st);
	if (plan.ep > full.gpus_per_node && plan.ep % full.gpus_per_node != 0)
		return cli_usage("sim", "--ep: %d is neither at most %d nor a multiple of the %d GPUs "
				 "per node of %s", plan.ep, full.gpus_per_node, full.gpus_per_node, o.cluster);
	if (plan.placement == MOE_PLACE_BALANCED && o.redundant > m.experts)
		return cli_usage("sim", "--redundant-experts: %ld is more than the %d experts", o.redundant,
				 m.experts);
	given_k = o.nk > 0;
	if (o.nk == 0) {
		o.ks[0] = m.top_k;
		o.nk = 1;
	}
	for (int i = 0; i < o.nk; i++)
		if (o.ks[i] > m.experts)
			return cli_usage("sim", "--top-k: %d is more than the %d experts of %s", o.ks[i],
					 m.experts, m.name);
	qsort(o.ks, (size_t)o.nk, sizeof o.ks[0], cmp_int);
	memset(&x, 0, sizeof x);
	if (o.trace != NULL) {
		const struct trace_header *h;
		int nl;
		if ((st = trace_reader_open(o.trace, &x.tr)) != MOE_OK)
			return cli_fail("sim", st);
		h = x.th = trace_reader_header(x.tr);
		if ((int)h->experts != m.experts) {
			rc = cli_usage("sim", "--trace %s: %u experts, but model %s has %d", o.trace,
				       h->experts, m.name, m.experts);
			goto out;
		}
		if ((int)h->ranks != plan.ep) {
			rc = cli_usage("sim", "--trace %s: %u source ranks, but the EP group has %d GPUs "
				       "(use --ep %u or moekit trace rescale)", o.trace, h->ranks, plan.ep,
				       h->ranks);
			goto out;
		}
		nl = (int)h->layers < m.moe_layers ? (int)h->layers : m.moe_layers;
		if ((int)h->layers != m.moe_layers && !(o.layers > 0 && o.layers <= (long)h->layers)) {
			rc = cli_usage("sim", "--trace %s: %u MoE layers, but model %s has %d (give --layers "
				       "N <= %u to simulate part of it)", o.trace, h->layers, m.name,
				       m.moe_layers, h->layers);
			goto out;
		}
		if (o.layers > 0 && o.layers < nl)
			nl = (int)o.layers;
		rc = h->flags & TRACE_F_COUNTS ? count_trace_open(&x, &o, &m, &plan, given_k, nl)
					       : token_trace_open(&x, &o, &m, &plan, nl);
		if (rc != 0)
			goto out;
		o.layers = nl;
	}
	/* the EP group is the simulated cluster; other groups run alongside */
	c = full;
	moe_cluster_narrow(&c, plan.ep);
	if (full.ngroups > c.ngroups)
		/* the groups left out are not simulated: say so, the step time is
		 * that of the first groups' nodes */
		fprintf(stderr, "moekit sim: note: the EP group of %d GPUs is the first %d of %d node "
			"groups (from '%s'); the others are not simulated (give --ep %d to include "
			"them)\n", plan.ep, c.ngroups > 0 ? c.ngroups : 1, full.ngroups,
			full.groups[0].name, moe_cluster_gpus(&full));
	if ((st = sim_topo_new(&c, o.mp, &t)) != MOE_OK)
		return cli_fail("sim", st);
	for (int i = 0; i < o.nsg; i++)
		if (sim_topo_slow_gpu(t, (int)(o.sg[i] < t->gpus ? o.sg[i] : -1), o.sgf[i]) != MOE_OK) {
			rc = cli_usage("sim", "--slow-gpu: GPU %ld is outside the EP group 0..%d", o.sg[i],
				       t->gpus - 1);
			goto out;
		}
	for (int i = 0; i < o.nsl; i++) {
		int l = sim_topo_link_find(t, o.sl[i]);
		if (l < 0) {
			rc = cli_usage("sim", "--slow-link: no link '%s' in the EP group (see moekit net)",
				       o.sl[i]);
			goto out;
		}
		sim_topo_slow_link(t, l, o.slf[i]);
	}
	/* expert popularity */
	if ((pop = malloc((size_t)m.experts * sizeof *pop)) == NULL) {
		rc = cli_fail("sim", moe_error(MOE_ENOMEM, "out of memory"));
		goto out;
	}
	{
		gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
		size_t *perm = malloc((size_t)m.experts * sizeof *perm);
		double sum = 0;
		if (rng == NULL || perm == NULL) {
			free(perm);
			if (rng) gsl_rng_free(rng);
			rc = cli_fail("sim", moe_error(MOE_ENOMEM, "out of memory"));
			goto out;
		}
		gsl_rng_set(rng, (unsigned long)o.seed);
		for (int e = 0; e < m.experts; e++)
			perm[e] = (size_t)e;
		gsl_ran_shuffle(rng, perm, (size_t)m.experts, sizeof *perm);
		for (int e = 0; e < m.experts; e++) {
			pop[e] = o.zipf > 0 ? pow(1.0 + (double)perm[e], -o.zipf) : 1.0;
			sum += pop[e];
		}
		for (int e = 0; e < m.experts; e++)
			pop[e] /= sum;
		free(perm);
		gsl_rng_free(rng);
	}
	/* what defines the run, for the store */
	inputs = json_pack("{s:s, s:s, s:i, s:i, s:s, s:i, s:s, s:s, s:b, s:s, s:f, s:i, s:f, s:s, s:i, s:b, s:i, s:s}",
			   "model", o.model, "cluster", o.cluster, "ep", plan.ep,
			   "tokens_per_gpu", plan.tokens_per_gpu,
			   "placement", moe_placement_name(plan.placement),
			   "redundant_experts", (int)o.redundant, "algorithm", sim_a2a_algo_name(o.algo),
			   "multipath", o.mp == SIM_MULTIPATH_ECMP ? "ecmp" : "spray", "dedup", o.dedup,
			   "pattern", o.zipf > 0 ? "zipf" : "uniform", "zipf_s", o.zipf, "seed", (int)o.seed,
			   "capacity_factor", o.have_cf ? o.cf : m.capacity_factor,
			   "phase", moe_phase_name(plan.phase), "micro_batches", plan.micro_batches,
			   "overlap", plan.overlap, "layers", (int)(o.layers > 0 ? o.layers : m.moe_layers),
			   "mode", o.mode == SIM_STEP_ANALYTIC ? "analytic" : "events");
	if (inputs != NULL)
		json_object_set_new(inputs, "coalesce", json_real(o.coalesce));
	if (inputs != NULL && o.trace != NULL) {
		json_object_set_new(inputs, "pattern", json_string("trace"));
		json_object_set_new(inputs, "trace", json_string(o.trace));
		json_object_set_new(inputs, "step", json_integer(o.step));
		json_object_set_new(inputs, "tokens_per_gpu", json_integer(plan.tokens_per_gpu));
		if (x.counts) {
			json_object_set_new(inputs, "trace_level", json_string("counts"));
			json_object_set_new(inputs, "trace_layers", int_array(x.tused, x.ntused));
		}
	}
	if (o.db != NULL && (st = store_open(o.db, STORE_WRITE, &db)) != MOE_OK) {
		rc = cli_fail("sim", st);
		goto out;
	}
	x.o = &o;
	x.m = &m;
	x.c = &c;
	x.cluster_gpus = moe_cluster_gpus(&full) / plan.ep * plan.ep;
	x.plan = &plan;
	x.t = t;
	x.pop = pop;
	x.db = db;
	x.inputs = inputs;
	x.kmax = o.ks[o.nk - 1];
	x.nlayers = (int)(o.layers > 0 && o.layers < m.moe_layers ? o.layers : m.moe_layers);
	x.bar = &bar;
	cli_bar_init(&bar, o.quiet);
	t0 = cli_now_s();
	for (int i = 0; i < o.nk; i++) {
		if ((rc = simulate(&x, o.ks[i], &rr[i])) != 0) {
			nr = i + 1;
			cli_bar_done(&bar);
			goto out;
		}
		nr = i + 1;
	}
	cli_bar_done(&bar);
	/* a long run: say what buys speed (skewed traffic on large groups
	 * ends flows at many nearby times, each an event) */
	if (!o.quiet && o.mode == SIM_STEP_EVENTS && o.coalesce < 1e-2 && cli_now_s() - t0 > 30)
		fprintf(stderr, "moekit sim: note: the flow model took %.0f s; --coalesce 1e-2 (a "
			"GPU's times move by about 1 %%, step times far less) or --mode analytic is "
			"faster (docs/sim.md)\n", cli_now_s() - t0);
	if (o.fmt == CLI_FORMAT_JSON)
		print_json(&x, rr, nr);
	else
		print_table(&x, rr, nr);
	rc = cli_finish_stdout("sim");
out:
	for (int i = 0; i < nr; i++)
		json_decref(rr[i].layers);
	json_decref(inputs);
	free(pop);
	store_close(db);
	sim_topo_free(t);
	trace_reader_close(x.tr);
	free(x.trace_loads);
	free(x.tmap);
	free(x.tused);
	return rc;
}
