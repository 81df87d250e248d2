/* cli/cmd_trace_gen.c: `moekit trace gen`: write a synthetic router trace
 * (traces/gen.h), or with --fit, fit the generator's Zipf exponent to real
 * per-expert counts. */
#include "config.h"
#include "cli/cli.h"
#include "moe/model.h"
#include "moe/route.h"
#include "traces/gen.h"

#include <getopt.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_rng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_trace_gen(int argc, char **argv);

static const char usage_text[] =
	"Usage: moekit trace gen --model PRESET|FILE [options] -o OUT.moetrace\n"
	"       moekit trace gen --fit COUNTS.csv [--format table|csv|json]\n\n"
	"Write a synthetic router trace shaped by a model: its MoE layers, experts and\n"
	"top-k, routed by the model's own policy (docs/routing.md) without a capacity\n"
	"limit unless --capacity-factor is given.  Every token draws router logits\n"
	"log(pi) + Gumbel noise from an expert popularity pi, so its first choice is\n"
	"expert i with probability pi_i and its other choices follow pi among the\n"
	"experts left (traces/gen.h has the model).  All randomness comes from one\n"
	"GSL generator (MT19937) seeded with --seed: the same options give the same\n"
	"bytes.\n\n"
	"Shape:\n"
	"  --model NAME|FILE      model preset or file (layers, experts, top-k, router)\n"
	"  --layers N             override the MoE layers\n"
	"  --experts N            override the routed experts\n"
	"  --top-k N              override the experts per token\n"
	"  --ranks N              source ranks (default 1)\n"
	"  --tokens-per-rank N    tokens per rank per step and layer (default 1024)\n"
	"  --steps N              steps (default 1)\n"
	"  --seed N               random seed (default 1)\n"
	"Routing skew:\n"
	"  --zipf S               Zipf exponent of expert popularity (default 0: uniform);\n"
	"                         the hot experts differ per layer\n"
	"  --loads FILE           instead of --zipf: reproduce measured per-expert loads:\n"
	"                         CSV lines whose last three fields are layer,expert,count\n"
	"                         (a header line is skipped), e.g. grep '^olmoe-1b-7b,arxiv,'\n"
	"                         expert_counts.csv; generated layer l takes the file's\n"
	"                         (l mod n)-th layer; the popularity giving those loads\n"
	"                         under the model's top-k is found by simulation\n"
	"  --drift C              hot experts drift: each step pi ~ Dirichlet(C pi + 0.01);\n"
	"                         smaller C drifts faster (default 0: no drift)\n"
	"  --rank-skew S          0..1: each source rank mixes a fraction S of a\n"
	"                         rank-specific permutation into pi (default 0)\n"
	"  --layer-corr P         0..1: probability that a token's first expert at a\n"
	"                         layer is fixed by its first expert at the layer before\n"
	"                         (a per-layer permutation; default 0)\n"
	"  --layer-matrix FILE    with --layer-corr: draw that expert from measured joint\n"
	"                         counts instead: CSV lines whose last three fields are\n"
	"                         expert_a,expert_b,count (a header line is skipped), e.g.\n"
	"                         grep '^olmoe-1b-7b,arxiv,0,7,' crosslayer_counts.csv\n"
	"  --capacity-factor C    route with this capacity factor (tokens dropped)\n"
	"Output:\n"
	"  -o, --output FILE      the trace (written to FILE.tmp.PID, then renamed)\n"
	"  --logits               store the router logits, so `trace reroute` can work\n"
	"  --counts               write a count-level trace (per rank and expert)\n"
	"  --zstd LEVEL           compress chunks with zstd (1..19)\n"
	"  -q, --quiet            no progress bar\n"
	"Fitting:\n"
	"  --fit FILE             read per-expert counts (CSV: model,domain,layer,expert,\n"
	"                         count, as in the OLMoE routing analysis) and print per\n"
	"                         (model, domain, layer) the max/mean load, the Zipf\n"
	"                         exponent of the sorted loads (least squares on log-log)\n"
	"                         with R^2, and the --zipf that reproduces it under the\n"
	"                         model's top-k (the model is the preset of that name, or\n"
	"                         --top-k)\n"
	"  --format FMT           table (default), csv or json\n"
	"  -h, --help             show this help\n\n"
	"Example:\n"
	"  moekit trace gen --model olmoe-1b-7b --ranks 8 --tokens-per-rank 512 \\\n"
	"      --steps 4 --zipf 1.2 --drift 200 --layer-corr 0.3 --logits -o t.moetrace\n";

#define CMD "trace gen"

/* ---- --fit ---- */

struct fit_group {
	char model[64], domain[64];
	long layer;
	uint64_t load[65536];
	uint32_t experts;
};

static int fit_flush(struct fit_group *g, long top_k_opt, gsl_rng *rng, struct cli_table *t)
{
	struct moe_model m;
	double s = 0, r2 = 0, s_pop = 0, sum = 0, mx = 0;
	long k = top_k_opt;
	char c[8][64];
	const char *cells[8];
	enum moe_status st;

	if (!g->experts)
		return 0;
	if (k <= 0) {
		if (moe_model_load(g->model, &m) != MOE_OK) {
			fprintf(stderr, "moekit " CMD ": --fit: no preset named '%s' to give its "
				"top-k: pass --top-k\n", g->model);
			return 1;
		}
		k = m.top_k;
	}
	for (uint32_t i = 0; i < g->experts; i++) {
		sum += (double)g->load[i];
		mx = (double)g->load[i] > mx ? (double)g->load[i] : mx;
	}
	if ((st = trace_gen_fit_zipf(g->load, g->experts, &s, &r2)) != MOE_OK)
		return cli_fail(CMD, st);
	st = trace_gen_zipf_for_loads(g->experts, (uint32_t)k, s, 20000, rng, &s_pop);
	if (st != MOE_OK && st != MOE_ERANGE)
		return cli_fail(CMD, st);
	snprintf(c[0], 64, "%s", g->model);
	snprintf(c[1], 64, "%s", g->domain);
	snprintf(c[2], 64, "%ld", g->layer);
	snprintf(c[3], 64, "%u", g->experts);
	snprintf(c[4], 64, "%ld", k);
	snprintf(c[5], 64, "%.3f", sum > 0 ? mx / (sum / g->experts) : 0);
	snprintf(c[6], 64, "%.3f", s);
	snprintf(c[7], 64, "%.3f", r2);
	for (int i = 0; i < 8; i++)
		cells[i] = c[i];
	{
		char pop[64];
		const char *row[9];

		if (st == MOE_ERANGE)
			snprintf(pop, sizeof pop, "beyond top-%ld", k);
		else
			snprintf(pop, sizeof pop, "%.3f", s_pop);
		memcpy(row, cells, sizeof cells);
		row[8] = pop;
		cli_table_row(t, row);
	}
	return 0;
}

static int fit(const char *path, long top_k, enum cli_format fmt)
{
	FILE *f = fopen(path, "r");
	char line[512];
	struct fit_group *g = calloc(1, sizeof *g);
	struct cli_table *t = cli_table_new("fits");
	gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
	long lineno = 0;
	int rc = 0;
	static const char *cols[9] = {"model", "domain", "layer", "experts", "top_k",
				      "max_over_mean", "zipf_loads", "r2", "zipf_popularity"};

	if (!f || !g || !t || !rng) {
		fprintf(stderr, "moekit " CMD ": %s: %s\n", path, f ? "out of memory" : "cannot open");
		rc = 1;
		goto out;
	}
	gsl_rng_set(rng, 1);
	for (int i = 0; i < 9; i++)
		cli_table_col(t, cols[i], i < 2 ? CLI_COL_STR : CLI_COL_NUM);
	cli_table_note(t, "moekit trace gen --fit %s", path);
	cli_table_note(t, "zipf_loads: -slope of log(load) on log(rank) over sorted loads");
	cli_table_note(t, "zipf_popularity: the --zipf giving that load exponent (simulated, seed 1)");
	while (fgets(line, sizeof line, f)) {
		char model[64], domain[64];
		long layer, expert;
		unsigned long long count;

		lineno++;
		if (lineno == 1 && strncmp(line, "model,", 6) == 0)
			continue;
		if (sscanf(line, "%63[^,],%63[^,],%ld,%ld,%llu", model, domain, &layer, &expert,
			   &count) != 5 || layer < 0 || expert < 0 || expert >= 65536) {
			fprintf(stderr, "moekit " CMD ": %s:%ld: expected model,domain,layer,expert,"
				"count with 0 <= expert < 65536\n", path, lineno);
			rc = 1;
			goto out;
		}
		if (g->experts && (strcmp(model, g->model) || strcmp(domain, g->domain) ||
				   layer != g->layer)) {
			if ((rc = fit_flush(g, top_k, rng, t)) != 0)
				goto out;
			memset(g, 0, sizeof *g);
		}
		snprintf(g->model, sizeof g->model, "%s", model);
		snprintf(g->domain, sizeof g->domain, "%s", domain);
		g->layer = layer;
		g->load[expert] += count;
		if ((uint32_t)expert + 1 > g->experts)
			g->experts = (uint32_t)expert + 1;
	}
	if (ferror(f)) {
		fprintf(stderr, "moekit " CMD ": %s: read error\n", path);
		rc = 1;
		goto out;
	}
	if ((rc = fit_flush(g, top_k, rng, t)) != 0)
		goto out;
	cli_table_print(t, fmt, stdout);
	rc = cli_finish_stdout(CMD);
out:
	if (f)
		fclose(f);
	free(g);
	cli_table_free(t);
	gsl_rng_free(rng);
	return rc;
}

/* ---- CSV files whose last three fields matter ---- */

/* Parses the last three comma-separated fields of line as two integers and
 * a number.  Returns 1 on success. */
static int last3(const char *line, long *a, long *b, double *c)
{
	const char *p = line + strlen(line);
	int commas = 0;

	while (p > line && commas < 3)
		if (*--p == ',' && ++commas == 3)
			p++;
	if (commas < 2)
		return 0;
	if (commas < 3)
		p = line;
	return sscanf(p, "%ld,%ld,%lf", a, b, c) == 3;
}

/* ---- --layer-matrix ---- */

/* Reads FILE (last three fields of each line: expert_a,expert_b,count) into
 * a new [E x E] matrix; prints the error and returns NULL on failure. */
static double *read_matrix(const char *path, uint32_t experts)
{
	FILE *f = fopen(path, "r");
	double *m;
	char line[1024];
	long lineno = 0, used = 0;

	if (!f) {
		fprintf(stderr, "moekit " CMD ": --layer-matrix %s: cannot open\n", path);
		return NULL;
	}
	m = calloc((size_t)experts * experts, sizeof *m);
	if (!m) {
		fclose(f);
		fprintf(stderr, "moekit " CMD ": out of memory\n");
		return NULL;
	}
	while (fgets(line, sizeof line, f)) {
		long a, b;
		double c;

		lineno++;
		if (!last3(line, &a, &b, &c)) {
			if (lineno == 1)
				continue; /* a header */
			goto bad;
		}
		if (a < 0 || b < 0 || a >= (long)experts || b >= (long)experts || !(c >= 0))
			goto bad;
		m[(size_t)a * experts + (size_t)b] += c;
		used++;
	}
	fclose(f);
	if (!used) {
		fprintf(stderr, "moekit " CMD ": --layer-matrix %s: no expert_a,expert_b,count lines\n",
			path);
		free(m);
		return NULL;
	}
	return m;
bad:
	fprintf(stderr, "moekit " CMD ": %s:%ld: expected expert_a,expert_b,count with experts "
		"below %u and a count >= 0 as the last three fields\n", path, lineno, experts);
	fclose(f);
	free(m);
	return NULL;
}

/* ---- --loads ---- */

/* Reads measured loads (last three fields layer,expert,count), turns each
 * layer's loads into the popularity that reproduces them under top-k
 * (trace_gen_popularity_for_loads) and returns a new [layers x E] matrix:
 * generated layer l takes the (l mod n)-th of the n layers in the file, in
 * ascending order.  Prints the error and returns NULL on failure. */
static double *read_loads(const char *path, uint32_t layers, uint32_t experts, uint32_t k,
			  unsigned long seed)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	long lineno = 0, ids[256];
	int nl = 0;
	double *loads = NULL, *pop = NULL;
	gsl_rng *rng = NULL;
	enum moe_status st;

	if (!f) {
		fprintf(stderr, "moekit " CMD ": --loads %s: cannot open\n", path);
		return NULL;
	}
	loads = calloc((size_t)256 * experts, sizeof *loads);
	pop = calloc((size_t)layers * experts, sizeof *pop);
	rng = gsl_rng_alloc(gsl_rng_mt19937);
	if (!loads || !pop || !rng)
		goto nomem;
	while (fgets(line, sizeof line, f)) {
		long layer, e;
		double c;
		int x;

		lineno++;
		if (!last3(line, &layer, &e, &c)) {
			if (lineno == 1)
				continue;
			goto bad;
		}
		if (layer < 0 || e < 0 || e >= (long)experts || !(c >= 0))
			goto bad;
		for (x = 0; x < nl && ids[x] != layer; x++)
			;
		if (x == nl) {
			if (nl == 256) {
				fprintf(stderr, "moekit " CMD ": %s:%ld: more than 256 layers\n", path,
					lineno);
				goto fail;
			}
			ids[nl++] = layer;
		}
		loads[(size_t)x * experts + (size_t)e] += c;
	}
	if (nl == 0) {
		fprintf(stderr, "moekit " CMD ": --loads %s: no layer,expert,count lines\n", path);
		goto fail;
	}
	gsl_rng_set(rng, seed);
	for (uint32_t l = 0; l < layers; l++) {
		int x = 0;

		/* the (l mod nl)-th smallest layer id of the file */
		for (int want = (int)(l % (uint32_t)nl), i = 0; i < nl; i++) {
			int smaller = 0;

			for (int j = 0; j < nl; j++)
				smaller += ids[j] < ids[i];
			if (smaller == want)
				x = i;
		}
		st = trace_gen_popularity_for_loads(experts, k, loads + (size_t)x * experts, 20000,
						    rng, pop + (size_t)l * experts);
		if (st != MOE_OK) {
			fprintf(stderr, "moekit " CMD ": --loads %s: layer %ld: %s\n", path, ids[x],
				moe_errmsg());
			goto fail;
		}
	}
	fclose(f);
	free(loads);
	gsl_rng_free(rng);
	return pop;
bad:
	fprintf(stderr, "moekit " CMD ": %s:%ld: expected layer,expert,count with experts below "
		"%u and a count >= 0 as the last three fields\n", path, lineno, experts);
	goto fail;
nomem:
	fprintf(stderr, "moekit " CMD ": out of memory\n");
fail:
	fclose(f);
	free(loads);
	free(pop);
	gsl_rng_free(rng);
	return NULL;
}

/* ---- bar ---- */

static void progress_cb(void *user, unsigned long long done, unsigned long long total,
			const char *what)
{
	cli_bar_update(user, done, total, what);
}

int cmd_trace_gen(int argc, char **argv)
{
	enum { O_LAYERS = 256, O_EXPERTS, O_TOPK, O_RANKS, O_TPR, O_STEPS, O_SEED, O_ZIPF,
	       O_DRIFT, O_SKEW, O_CORR, O_CF, O_LOGITS, O_COUNTS, O_ZSTD, O_FIT, O_FORMAT,
	       O_MODEL, O_MATRIX, O_LOADS };
	static const struct option opts[] = {
		{"model", required_argument, NULL, O_MODEL},
		{"layers", required_argument, NULL, O_LAYERS},
		{"experts", required_argument, NULL, O_EXPERTS},
		{"top-k", required_argument, NULL, O_TOPK},
		{"ranks", required_argument, NULL, O_RANKS},
		{"tokens-per-rank", required_argument, NULL, O_TPR},
		{"steps", required_argument, NULL, O_STEPS},
		{"seed", required_argument, NULL, O_SEED},
		{"zipf", required_argument, NULL, O_ZIPF},
		{"drift", required_argument, NULL, O_DRIFT},
		{"rank-skew", required_argument, NULL, O_SKEW},
		{"layer-corr", required_argument, NULL, O_CORR},
		{"layer-matrix", required_argument, NULL, O_MATRIX},
		{"loads", required_argument, NULL, O_LOADS},
		{"capacity-factor", required_argument, NULL, O_CF},
		{"logits", no_argument, NULL, O_LOGITS},
		{"counts", no_argument, NULL, O_COUNTS},
		{"zstd", required_argument, NULL, O_ZSTD},
		{"fit", required_argument, NULL, O_FIT},
		{"format", required_argument, NULL, O_FORMAT},
		{"output", required_argument, NULL, 'o'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct trace_gen_opts go;
	struct moe_model m;
	struct moe_route_policy pol;
	const char *model = NULL, *out = NULL, *fit_path = NULL, *matrix_path = NULL,
		   *loads_path = NULL;
	double *matrix = NULL, *pop = NULL;
	long layers = 0, experts = 0, top_k = 0, v, seed = 1, zstd = 0;
	double cf = -1;
	enum cli_format fmt = CLI_FORMAT_TABLE;
	int quiet = 0, o, rc;
	struct cli_bar bar;
	struct moe_progress prog = {progress_cb, &bar};
	enum moe_status st;
	gsl_rng *rng;

	trace_gen_opts_init(&go);
	optind = 0; /* glibc and musl: restart getopt (the dispatcher may have used it) */
	while ((o = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
		switch (o) {
		case O_MODEL: model = optarg; break;
		case O_LAYERS:
			if (!cli_parse_long(CMD, "--layers", optarg, 1, TRACE_MAX_LAYERS, &layers))
				return 2;
			break;
		case O_EXPERTS:
			if (!cli_parse_long(CMD, "--experts", optarg, 1, 65536, &experts))
				return 2;
			break;
		case O_TOPK:
			if (!cli_parse_long(CMD, "--top-k", optarg, 1, 1024, &top_k))
				return 2;
			break;
		case O_RANKS:
			if (!cli_parse_long(CMD, "--ranks", optarg, 1, 65536, &v))
				return 2;
			go.ranks = (uint32_t)v;
			break;
		case O_TPR:
			if (!cli_parse_long(CMD, "--tokens-per-rank", optarg, 1, 1L << 24, &v))
				return 2;
			go.tokens_per_rank = (uint32_t)v;
			break;
		case O_STEPS:
			if (!cli_parse_long(CMD, "--steps", optarg, 1, 1000000000L, &v))
				return 2;
			go.steps = (uint64_t)v;
			break;
		case O_SEED:
			if (!cli_parse_long(CMD, "--seed", optarg, 0, 4294967295L, &seed))
				return 2;
			break;
		case O_ZIPF:
			if (!cli_parse_double(CMD, "--zipf", optarg, 0, 100, &go.zipf_s))
				return 2;
			break;
		case O_DRIFT:
			if (!cli_parse_double(CMD, "--drift", optarg, 0, 1e12, &go.drift))
				return 2;
			break;
		case O_SKEW:
			if (!cli_parse_double(CMD, "--rank-skew", optarg, 0, 1, &go.rank_skew))
				return 2;
			break;
		case O_CORR:
			if (!cli_parse_double(CMD, "--layer-corr", optarg, 0, 1, &go.layer_corr))
				return 2;
			break;
		case O_MATRIX: matrix_path = optarg; break;
		case O_LOADS: loads_path = optarg; break;
		case O_CF:
			if (!cli_parse_double(CMD, "--capacity-factor", optarg, 0, 1000, &cf))
				return 2;
			break;
		case O_LOGITS: go.logits = 1; break;
		case O_COUNTS: go.counts = 1; break;
		case O_ZSTD:
			if (!cli_parse_long(CMD, "--zstd", optarg, 1, 19, &zstd))
				return 2;
			break;
		case O_FIT: fit_path = optarg; break;
		case O_FORMAT:
			if (!cli_parse_format(CMD, optarg, &fmt))
				return 2;
			break;
		case 'o': out = optarg; break;
		case 'q': quiet = 1; break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_stdout(CMD);
		default:
			return cli_bad_option(CMD, argc, argv);
		}
	}
	if (optind < argc)
		return cli_usage(CMD, "unexpected argument '%s'", argv[optind]);
	gsl_set_error_handler_off();
	if (fit_path)
		return fit(fit_path, top_k, fmt);
	if (!out)
		return cli_usage(CMD, "missing -o OUT");
	if (!model)
		return cli_usage(CMD, "missing --model PRESET|FILE");
	if (go.counts && go.logits)
		return cli_usage(CMD, "--counts and --logits exclude each other");
	if ((st = moe_model_load(model, &m)) != MOE_OK)
		return cli_fail(CMD, st);
	if ((st = moe_route_policy_from_model(&m, &pol)) != MOE_OK)
		return cli_fail(CMD, st);
	go.layers = (uint32_t)(layers ? layers : m.moe_layers);
	go.experts = (uint32_t)(experts ? experts : m.experts);
	go.top_k = (uint32_t)(top_k ? top_k : m.top_k);
	if (go.top_k > go.experts)
		return cli_usage(CMD, "--top-k %u is above the %u experts", go.top_k, go.experts);
	pol.experts = (int)go.experts;
	pol.k = (int)go.top_k;
	if (pol.groups > 1 && (go.experts % (uint32_t)pol.groups != 0 ||
			       go.top_k > (uint32_t)pol.groups_per_token * (go.experts / (uint32_t)pol.groups)))
		pol.groups = pol.groups_per_token = 1; /* the overridden shape has no groups */
	pol.capacity_factor = cf > 0 ? cf : 0;
	if ((st = moe_route_policy_validate(&pol)) != MOE_OK)
		return cli_fail(CMD, st);
	go.policy = &pol;
	go.zstd_level = (int)zstd;
	if (loads_path && go.zipf_s > 0)
		return cli_usage(CMD, "--loads and --zipf exclude each other");
	if (matrix_path && go.layer_corr <= 0)
		return cli_usage(CMD, "--layer-matrix needs --layer-corr P > 0");
	if (loads_path) {
		if (!(pop = read_loads(loads_path, go.layers, go.experts, go.top_k,
				       (unsigned long)seed)))
			return 1;
		go.popularity = pop;
	}
	if (matrix_path) {
		if (!(matrix = read_matrix(matrix_path, go.experts))) {
			free(pop);
			return 1;
		}
		go.layer_matrix = matrix;
	}
	snprintf(go.model, sizeof go.model, "%s", m.name);
	rng = gsl_rng_alloc(gsl_rng_mt19937);
	if (!rng) {
		free(matrix);
		free(pop);
		fprintf(stderr, "moekit " CMD ": out of memory\n");
		return 1;
	}
	gsl_rng_set(rng, (unsigned long)seed);
	cli_bar_init(&bar, quiet);
	st = trace_gen_write(&go, rng, out, &prog);
	cli_bar_done(&bar);
	gsl_rng_free(rng);
	free(matrix);
	free(pop);
	if (st != MOE_OK)
		return cli_fail(CMD, st);
	rc = 0;
	return rc;
}
