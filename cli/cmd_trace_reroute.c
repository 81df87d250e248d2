/* cli/cmd_trace_reroute.c: `moekit trace reroute`: re-derive a trace's routes
 * from its stored router logits under another policy (traces/reroute.h). */
#include "config.h"
#include "cli/cli.h"
#include "moe/model.h"
#include "moe/route.h"
#include "traces/reroute.h"

#include <getopt.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_rng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_trace_reroute(int argc, char **argv);

#define CMD "trace reroute"

static const char usage_text[] =
	"Usage: moekit trace reroute IN --top-k K [options] -o OUT\n\n"
	"Re-derive the routes of a trace from the router logits it stores, under\n"
	"another routing policy, so that top-1 and top-2 (or a capacity factor, or\n"
	"DeepSeek-V3's bias balancing) are compared on the same tokens.  Each source\n"
	"rank's tokens of a step and layer are one routing batch (the n of the\n"
	"capacity ceil(C*n*k/E)).  Tokens keep their order, rank and logits; ids and\n"
	"weights are replaced.  A trace without logits (ids or counts only) is\n"
	"refused.  The policies are defined in docs/routing.md.\n\n"
	"Policy (the base is --model, else the trace's model preset when it names\n"
	"one, else softmax-topk with renormalized weights; options override it):\n"
	"  --model NAME|FILE        take the router of this model preset or file\n"
	"  --top-k K                experts per token (k_max for top-p)\n"
	"  --policy P               softmax-topk, topk-softmax, sigmoid-bias or top-p\n"
	"  --norm / --no-norm       renormalize the k weights, or not\n"
	"  --scaling S              multiply the weights (DeepSeek-V3: 2.5)\n"
	"  --groups G               expert groups (contiguous)\n"
	"  --groups-per-token N     groups a token may use\n"
	"  --nodes N                experts placed contiguously on N nodes ...\n"
	"  --max-nodes M            ... and a token uses at most M of them\n"
	"  --group-topn T           keys summed per group or node score (default 2)\n"
	"  --capacity-factor C      capacity per expert ceil(C*n*k/E) (0: none)\n"
	"  --overflow MODE          drop (default) or reroute (next-best expert with room)\n"
	"  --top-p P                for top-p: the probability to reach\n"
	"  --noise STD              Gaussian noise on the logits for selection\n"
	"  --seed N                 seed of the noise (default 1)\n"
	"  --balance-rate U         DeepSeek-V3 aux-loss-free balancing: per layer bias\n"
	"                           moved by U towards balance after every step\n"
	"Output:\n"
	"  -o, --output FILE        the re-routed trace (FILE.tmp.PID, then renamed)\n"
	"  --no-logits              do not copy the logits into the output\n"
	"  --zstd LEVEL             compress chunks with zstd (1..19)\n"
	"  --format FMT             the summary: table (default), csv or json\n"
	"  -h, --help               show this help\n\n"
	"Example:\n"
	"  moekit trace reroute t.moetrace --top-k 1 --capacity-factor 1.25 -o t1.moetrace\n";

int cmd_trace_reroute(int argc, char **argv)
{
	enum { O_MODEL = 256, O_TOPK, O_POLICY, O_NORM, O_NONORM, O_SCALING, O_GROUPS, O_GPT,
	       O_NODES, O_MAXNODES, O_TOPN, O_CF, O_OVERFLOW, O_TOPP, O_NOISE, O_SEED, O_BAL,
	       O_NOLOGITS, O_ZSTD, O_FORMAT };
	static const struct option opts[] = {
		{"model", required_argument, NULL, O_MODEL},
		{"top-k", required_argument, NULL, O_TOPK},
		{"policy", required_argument, NULL, O_POLICY},
		{"norm", no_argument, NULL, O_NORM},
		{"no-norm", no_argument, NULL, O_NONORM},
		{"scaling", required_argument, NULL, O_SCALING},
		{"groups", required_argument, NULL, O_GROUPS},
		{"groups-per-token", required_argument, NULL, O_GPT},
		{"nodes", required_argument, NULL, O_NODES},
		{"max-nodes", required_argument, NULL, O_MAXNODES},
		{"group-topn", required_argument, NULL, O_TOPN},
		{"capacity-factor", required_argument, NULL, O_CF},
		{"overflow", required_argument, NULL, O_OVERFLOW},
		{"top-p", required_argument, NULL, O_TOPP},
		{"noise", required_argument, NULL, O_NOISE},
		{"seed", required_argument, NULL, O_SEED},
		{"balance-rate", required_argument, NULL, O_BAL},
		{"no-logits", no_argument, NULL, O_NOLOGITS},
		{"zstd", required_argument, NULL, O_ZSTD},
		{"format", required_argument, NULL, O_FORMAT},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *model = NULL, *out = NULL, *in;
	long top_k = 0, groups = 0, gpt = 0, nodes = 0, max_nodes = 0, topn = 0, seed = 1, zstd = 0;
	int norm = -1, have_kind = 0, have_overflow = 0, o, rc = 1;
	double scaling = 0, cf = -1, top_p = 0, noise = 0;
	enum moe_route_kind kind = MOE_ROUTE_SOFTMAX_TOPK;
	enum moe_route_overflow overflow = MOE_ROUTE_DROP;
	enum cli_format fmt = CLI_FORMAT_TABLE;
	struct trace_reroute_opts ro;
	struct moe_route_policy pol;
	struct moe_model m;
	struct trace_reader *rd;
	struct trace_header h;
	struct trace_reroute_result res = {NULL, NULL, NULL};
	int *node_of = NULL;
	gsl_rng *rng = NULL;
	enum moe_status st;
	const char *base = "softmax-topk (default)";

	trace_reroute_opts_init(&ro);
	optind = 0; /* glibc and musl: restart getopt (the dispatcher may have used it) */
	while ((o = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (o) {
		case O_MODEL: model = optarg; break;
		case O_TOPK:
			if (!cli_parse_long(CMD, "--top-k", optarg, 1, 1024, &top_k))
				return 2;
			break;
		case O_POLICY:
			if (!moe_route_kind_parse(optarg, &kind))
				return cli_usage(CMD, "--policy '%s': expected softmax-topk, topk-softmax, "
						 "sigmoid-bias or top-p", optarg);
			have_kind = 1;
			break;
		case O_NORM: norm = 1; break;
		case O_NONORM: norm = 0; break;
		case O_SCALING:
			if (!cli_parse_double(CMD, "--scaling", optarg, 1e-9, 1e9, &scaling))
				return 2;
			break;
		case O_GROUPS:
			if (!cli_parse_long(CMD, "--groups", optarg, 1, 1 << 20, &groups))
				return 2;
			break;
		case O_GPT:
			if (!cli_parse_long(CMD, "--groups-per-token", optarg, 1, 1 << 20, &gpt))
				return 2;
			break;
		case O_NODES:
			if (!cli_parse_long(CMD, "--nodes", optarg, 1, 1 << 20, &nodes))
				return 2;
			break;
		case O_MAXNODES:
			if (!cli_parse_long(CMD, "--max-nodes", optarg, 1, 1 << 20, &max_nodes))
				return 2;
			break;
		case O_TOPN:
			if (!cli_parse_long(CMD, "--group-topn", optarg, 1, 1 << 20, &topn))
				return 2;
			break;
		case O_CF:
			if (!cli_parse_double(CMD, "--capacity-factor", optarg, 0, 1000, &cf))
				return 2;
			break;
		case O_OVERFLOW:
			if (!moe_route_overflow_parse(optarg, &overflow))
				return cli_usage(CMD, "--overflow '%s': expected drop or reroute", optarg);
			have_overflow = 1;
			break;
		case O_TOPP:
			if (!cli_parse_double(CMD, "--top-p", optarg, 1e-9, 1, &top_p))
				return 2;
			break;
		case O_NOISE:
			if (!cli_parse_double(CMD, "--noise", optarg, 0, 1e6, &noise))
				return 2;
			break;
		case O_SEED:
			if (!cli_parse_long(CMD, "--seed", optarg, 0, 4294967295L, &seed))
				return 2;
			break;
		case O_BAL:
			if (!cli_parse_double(CMD, "--balance-rate", optarg, 0, 1e6, &ro.balance_rate))
				return 2;
			break;
		case O_NOLOGITS: ro.keep_logits = 0; break;
		case O_ZSTD:
			if (!cli_parse_long(CMD, "--zstd", optarg, 1, 19, &zstd))
				return 2;
			ro.zstd_level = (int)zstd;
			break;
		case O_FORMAT:
			if (!cli_parse_format(CMD, optarg, &fmt))
				return 2;
			break;
		case 'o': out = optarg; break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_stdout(CMD);
		default:
			return cli_bad_option(CMD, argc, argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage(CMD, optind >= argc ? "missing IN" : "expected one IN");
	if (!out)
		return cli_usage(CMD, "missing -o OUT");
	if ((nodes > 0) != (max_nodes > 0))
		return cli_usage(CMD, "--nodes and --max-nodes go together");
	in = argv[optind];
	gsl_set_error_handler_off();
	/* the shape comes from the trace */
	if ((st = trace_reader_open(in, &rd)) != MOE_OK)
		return cli_fail(CMD, st);
	h = *trace_reader_header(rd);
	trace_reader_close(rd);
	if (model || h.model[0]) {
		st = moe_model_load(model ? model : h.model, &m);
		if (st == MOE_OK) {
			if ((uint32_t)m.experts != h.experts) {
				if (model)
					return cli_usage(CMD, "--model %s routes %d experts, the trace "
							 "has %u", model, m.experts, h.experts);
			} else if ((st = moe_route_policy_from_model(&m, &pol)) == MOE_OK) {
				base = m.name;
				goto have_base;
			}
		}
		if (model)
			return cli_fail(CMD, st);
	}
	moe_route_policy_init(&pol, (int)h.experts, (int)(h.top_k <= h.experts ? h.top_k : 1));
have_base:
	pol.capacity_factor = 0; /* a model's capacity applies only when asked */
	if (top_k)
		pol.k = (int)top_k;
	if (pol.k > (int)h.experts)
		return cli_usage(CMD, "--top-k %d is above the trace's %u experts", pol.k, h.experts);
	if (have_kind)
		pol.kind = kind;
	if (norm >= 0)
		pol.norm = norm;
	if (scaling > 0)
		pol.scaling = scaling;
	if (groups) {
		pol.groups = (int)groups;
		pol.groups_per_token = gpt ? (int)gpt : 1;
	} else if (gpt) {
		pol.groups_per_token = (int)gpt;
	}
	if (pol.groups > 1 && top_k && !groups &&
	    pol.k > pol.groups_per_token * (pol.experts / pol.groups))
		pol.groups = pol.groups_per_token = 1; /* the model's groups cannot serve this k */
	if (topn)
		pol.group_topn = (int)topn;
	if (nodes) {
		if (h.experts % (uint32_t)nodes != 0)
			return cli_usage(CMD, "--nodes %ld does not divide the %u experts", nodes,
					 h.experts);
		node_of = malloc(h.experts * sizeof *node_of);
		if (!node_of)
			goto nomem;
		for (uint32_t i = 0; i < h.experts; i++)
			node_of[i] = (int)(i / (h.experts / (uint32_t)nodes));
		pol.node_of = node_of;
		pol.nodes = (int)nodes;
		pol.max_nodes = (int)max_nodes;
	}
	if (cf >= 0)
		pol.capacity_factor = cf;
	if (have_overflow)
		pol.overflow = overflow;
	if (top_p > 0)
		pol.top_p = top_p;
	if (noise > 0) {
		rng = gsl_rng_alloc(gsl_rng_mt19937);
		if (!rng)
			goto nomem;
		gsl_rng_set(rng, (unsigned long)seed);
		pol.noise_std = noise;
		pol.rng = rng;
	}
	if ((st = moe_route_policy_validate(&pol)) != MOE_OK) {
		rc = cli_fail(CMD, st);
		goto out;
	}
	res.tokens = calloc(h.layers, sizeof *res.tokens);
	res.dropped = calloc(h.layers, sizeof *res.dropped);
	res.rerouted = calloc(h.layers, sizeof *res.rerouted);
	if (!res.tokens || !res.dropped || !res.rerouted)
		goto nomem;
	ro.policy = &pol;
	if ((st = trace_reroute(in, out, &ro, &res)) != MOE_OK) {
		rc = cli_fail(CMD, st);
		goto out;
	}
	{
		struct cli_table *t = cli_table_new("layers");
		static const char *cols[] = {"layer", "tokens", "dropped", "rerouted"};

		for (int i = 0; i < 4; i++)
			cli_table_col(t, cols[i], CLI_COL_NUM);
		cli_table_note(t, "moekit trace reroute %s -o %s", in, out);
		cli_table_note(t, "policy %s, k %d, norm %d, scaling %g (base: %s)",
			       moe_route_kind_name(pol.kind), pol.k, pol.norm, pol.scaling, base);
		if (pol.groups > 1)
			cli_table_note(t, "groups %d, %d per token", pol.groups, pol.groups_per_token);
		if (pol.node_of)
			cli_table_note(t, "nodes %d, at most %d per token", pol.nodes, pol.max_nodes);
		if (pol.capacity_factor > 0)
			cli_table_note(t, "capacity factor %g, overflow %s (per source rank batch)",
				       pol.capacity_factor, moe_route_overflow_name(pol.overflow));
		if (ro.balance_rate > 0)
			cli_table_note(t, "aux-loss-free balancing, rate %g", ro.balance_rate);
		if (pol.noise_std > 0)
			cli_table_note(t, "selection noise std %g, seed %ld", pol.noise_std, seed);
		for (uint32_t l = 0; l < h.layers; l++) {
			char c[4][32];
			const char *cells[4] = {c[0], c[1], c[2], c[3]};

			snprintf(c[0], 32, "%u", l);
			snprintf(c[1], 32, "%llu", (unsigned long long)res.tokens[l]);
			snprintf(c[2], 32, "%llu", (unsigned long long)res.dropped[l]);
			snprintf(c[3], 32, "%llu", (unsigned long long)res.rerouted[l]);
			cli_table_row(t, cells);
		}
		cli_table_print(t, fmt, stdout);
		cli_table_free(t);
	}
	rc = cli_finish_stdout(CMD);
	goto out;
nomem:
	fprintf(stderr, "moekit " CMD ": out of memory\n");
	rc = 1;
out:
	free(node_of);
	free(res.tokens);
	free(res.dropped);
	free(res.rerouted);
	gsl_rng_free(rng);
	return rc;
}
