/* cli/cmd_trace_stats.c: `moekit trace stats FILE`: load-balance statistics
 * of a router trace (traces/stats.h) as tables, CSV or one JSON document. */
#include "config.h"
#include "cli/cli.h"
#include "moe/model.h"
#include "traces/stats.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_trace_stats(int argc, char **argv);

#define CMD "trace stats"

static const char usage_text[] =
	"Usage: moekit trace stats FILE [options]\n\n"
	"Describe how a router trace balances its experts, per MoE layer over all\n"
	"steps: tokens and routed slots; max/mean expert load (over the whole trace,\n"
	"and per step averaged); coefficient of variation and entropy of the loads;\n"
	"the slots a capacity factor would drop; where the trace holds router logits,\n"
	"the Switch load-balancing loss E*sum(f_i*P_i) and the router z-loss\n"
	"mean(logsumexp^2); the most frequent expert pairs chosen by one token; and\n"
	"with --ep, the tokens each source rank sends to each expert-parallel rank.\n"
	"The exact definitions are in traces/stats.h and README.md.\n\n"
	"Options:\n"
	"  --capacity-factor C  count the slots dropped at capacity ceil(C*n*k/E), each\n"
	"                       source rank's tokens of a step and layer being a batch\n"
	"                       of n tokens (as `trace reroute` routes them)\n"
	"  --ep N               expert-parallel ranks (must divide the experts)\n"
	"  --placement P        contiguous (default) or round-robin experts over EP ranks\n"
	"  --pairs N            expert pairs listed per layer (default 10, 0 = none)\n"
	"  --loads              also list the tokens of every expert\n"
	"  --table T            for csv: summary (default), loads, pairs or ep\n"
	"  --format FMT         table (default: every table), csv (one table) or json\n"
	"                       (one document with everything)\n"
	"  -h, --help           show this help\n\n"
	"Example:\n"
	"  moekit trace stats t.moetrace --capacity-factor 1.25 --ep 8\n";

enum which { T_SUMMARY, T_LOADS, T_PAIRS, T_EP };

static struct cli_table *summary_table(const struct trace_stats *s, const char *path)
{
	struct cli_table *t = cli_table_new("layers");
	static const char *cols[] = {"layer", "steps", "tokens", "slots", "max_over_mean",
				     "step_max_over_mean", "cv", "entropy_bits", "entropy_norm",
				     "dropped", "aux_loss", "z_loss"};
	const struct trace_header *h = &s->header;

	for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
		cli_table_col(t, cols[i], CLI_COL_NUM);
	cli_table_note(t, "moekit trace stats %s", path);
	cli_table_note(t, "%s trace: %u layers, %u experts, top-%u, %u source ranks, %llu steps%s%s",
		       (h->flags & TRACE_F_COUNTS) ? "count-level" : "token-level", h->layers,
		       h->experts, h->top_k, h->ranks, (unsigned long long)h->steps,
		       h->model[0] ? ", model " : "", h->model);
	if (s->opts.capacity_factor > 0)
		cli_table_note(t, "dropped: slots over capacity at capacity factor %g",
			       s->opts.capacity_factor);
	for (uint32_t l = 0; l < s->layers; l++) {
		const struct trace_layer_stats *ls = &s->layer[l];
		char c[12][32];
		const char *cells[12];

		snprintf(c[0], 32, "%u", ls->layer);
		snprintf(c[1], 32, "%llu", (unsigned long long)ls->steps);
		snprintf(c[2], 32, "%llu", (unsigned long long)ls->tokens);
		snprintf(c[3], 32, "%llu", (unsigned long long)ls->slots);
		snprintf(c[4], 32, "%.4f", ls->max_over_mean);
		snprintf(c[5], 32, "%.4f", ls->step_max_over_mean);
		snprintf(c[6], 32, "%.4f", ls->cv);
		snprintf(c[7], 32, "%.4f", ls->entropy_bits);
		snprintf(c[8], 32, "%.4f", ls->entropy_norm);
		snprintf(c[9], 32, "%llu", (unsigned long long)ls->dropped);
		snprintf(c[10], 32, "%.6g", ls->aux_loss);
		snprintf(c[11], 32, "%.6g", ls->z_loss);
		for (int i = 0; i < 12; i++)
			cells[i] = c[i];
		if (s->opts.capacity_factor <= 0)
			cells[9] = NULL;
		if (!ls->has_logits)
			cells[10] = cells[11] = NULL;
		cli_table_row(t, cells);
	}
	return t;
}

static struct cli_table *loads_table(const struct trace_stats *s)
{
	struct cli_table *t = cli_table_new("loads");

	cli_table_col(t, "layer", CLI_COL_NUM);
	cli_table_col(t, "expert", CLI_COL_NUM);
	cli_table_col(t, "slots", CLI_COL_NUM);
	cli_table_col(t, "share", CLI_COL_NUM);
	for (uint32_t l = 0; l < s->layers; l++)
		for (uint32_t e = 0; e < s->header.experts; e++) {
			const struct trace_layer_stats *ls = &s->layer[l];
			char c[4][32];
			const char *cells[4] = {c[0], c[1], c[2], c[3]};

			snprintf(c[0], 32, "%u", l);
			snprintf(c[1], 32, "%u", e);
			snprintf(c[2], 32, "%llu", (unsigned long long)ls->load[e]);
			snprintf(c[3], 32, "%.6f", ls->slots ? (double)ls->load[e] / ls->slots : 0);
			cli_table_row(t, cells);
		}
	return t;
}

static struct cli_table *pairs_table(const struct trace_stats *s)
{
	struct cli_table *t = cli_table_new("pairs");

	cli_table_col(t, "layer", CLI_COL_NUM);
	cli_table_col(t, "rank", CLI_COL_NUM);
	cli_table_col(t, "expert_a", CLI_COL_NUM);
	cli_table_col(t, "expert_b", CLI_COL_NUM);
	cli_table_col(t, "tokens", CLI_COL_NUM);
	cli_table_col(t, "share", CLI_COL_NUM);
	cli_table_note(t, "expert pairs chosen together by one token (share of the layer's tokens)");
	for (uint32_t l = 0; l < s->layers; l++)
		for (uint32_t i = 0; i < s->layer[l].npairs; i++) {
			const struct trace_stats_pair *p = &s->layer[l].pairs[i];
			char c[6][32];
			const char *cells[6] = {c[0], c[1], c[2], c[3], c[4], c[5]};

			snprintf(c[0], 32, "%u", l);
			snprintf(c[1], 32, "%u", i + 1);
			snprintf(c[2], 32, "%u", p->a);
			snprintf(c[3], 32, "%u", p->b);
			snprintf(c[4], 32, "%llu", (unsigned long long)p->count);
			snprintf(c[5], 32, "%.6f",
				 s->layer[l].tokens ? (double)p->count / s->layer[l].tokens : 0);
			cli_table_row(t, cells);
		}
	return t;
}

static struct cli_table *ep_table(const struct trace_stats *s)
{
	struct cli_table *t = cli_table_new("ep");
	const uint32_t ep = s->opts.ep;

	cli_table_col(t, "layer", CLI_COL_NUM);
	cli_table_col(t, "src_rank", CLI_COL_NUM);
	cli_table_col(t, "ep_rank", CLI_COL_NUM);
	cli_table_col(t, "tokens", CLI_COL_NUM);
	cli_table_note(t, "tokens each source rank sends to each of %u EP ranks (%s placement%s)",
		       ep, moe_placement_name(s->opts.placement),
		       (s->header.flags & TRACE_F_COUNTS) ? "; count-level: slots, not de-duplicated"
							  : "; one copy per distinct EP rank");
	for (uint32_t l = 0; l < s->layers; l++)
		for (uint32_t r = 0; r < s->header.ranks; r++)
			for (uint32_t g = 0; g < ep; g++) {
				char c[4][32];
				const char *cells[4] = {c[0], c[1], c[2], c[3]};

				snprintf(c[0], 32, "%u", l);
				snprintf(c[1], 32, "%u", r);
				snprintf(c[2], 32, "%u", g);
				snprintf(c[3], 32, "%llu",
					 (unsigned long long)s->layer[l].ep_tokens[(size_t)r * ep + g]);
				cli_table_row(t, cells);
			}
	return t;
}

static int print_json(const struct trace_stats *s, const char *path)
{
	json_t *root = json_object(), *layers = json_array();
	const struct trace_header *h = &s->header;
	int rc;

	json_object_set_new(root, "file", json_string(path));
	json_object_set_new(root, "kind", json_string((h->flags & TRACE_F_COUNTS) ? "counts"
										  : "tokens"));
	json_object_set_new(root, "model", json_string(h->model));
	json_object_set_new(root, "experts", json_integer(h->experts));
	json_object_set_new(root, "top_k", json_integer(h->top_k));
	json_object_set_new(root, "ranks", json_integer(h->ranks));
	json_object_set_new(root, "steps", json_integer((json_int_t)h->steps));
	if (s->opts.capacity_factor > 0)
		json_object_set_new(root, "capacity_factor", json_real(s->opts.capacity_factor));
	if (s->opts.ep) {
		json_object_set_new(root, "ep", json_integer(s->opts.ep));
		json_object_set_new(root, "placement",
				    json_string(moe_placement_name(s->opts.placement)));
	}
	for (uint32_t l = 0; l < s->layers; l++) {
		const struct trace_layer_stats *ls = &s->layer[l];
		json_t *o = json_object(), *load = json_array(), *pairs = json_array();

		json_object_set_new(o, "layer", json_integer(l));
		json_object_set_new(o, "steps", json_integer((json_int_t)ls->steps));
		json_object_set_new(o, "tokens", json_integer((json_int_t)ls->tokens));
		json_object_set_new(o, "slots", json_integer((json_int_t)ls->slots));
		json_object_set_new(o, "max_over_mean", json_real(ls->max_over_mean));
		json_object_set_new(o, "step_max_over_mean", json_real(ls->step_max_over_mean));
		json_object_set_new(o, "cv", json_real(ls->cv));
		json_object_set_new(o, "entropy_bits", json_real(ls->entropy_bits));
		json_object_set_new(o, "entropy_norm", json_real(ls->entropy_norm));
		if (s->opts.capacity_factor > 0)
			json_object_set_new(o, "dropped", json_integer((json_int_t)ls->dropped));
		if (ls->has_logits) {
			json_object_set_new(o, "aux_loss", json_real(ls->aux_loss));
			json_object_set_new(o, "z_loss", json_real(ls->z_loss));
		}
		for (uint32_t e = 0; e < h->experts; e++)
			json_array_append_new(load, json_integer((json_int_t)ls->load[e]));
		json_object_set_new(o, "load", load);
		for (uint32_t i = 0; i < ls->npairs; i++)
			json_array_append_new(pairs, json_pack("[iiI]", (int)ls->pairs[i].a,
							       (int)ls->pairs[i].b,
							       (json_int_t)ls->pairs[i].count));
		json_object_set_new(o, "pairs", pairs);
		if (s->opts.ep) {
			json_t *m = json_array();

			for (uint32_t r = 0; r < h->ranks; r++) {
				json_t *row = json_array();

				for (uint32_t g = 0; g < s->opts.ep; g++)
					json_array_append_new(
						row, json_integer((json_int_t)ls->ep_tokens[(size_t)r *
											   s->opts.ep + g]));
				json_array_append_new(m, row);
			}
			json_object_set_new(o, "ep_tokens", m);
		}
		json_array_append_new(layers, o);
	}
	json_object_set_new(root, "layers", layers);
	rc = json_dumpf(root, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
	json_decref(root);
	if (rc != 0) {
		fprintf(stderr, "moekit " CMD ": cannot write the JSON document\n");
		return 1;
	}
	putchar('\n');
	return cli_finish_stdout(CMD);
}

int cmd_trace_stats(int argc, char **argv)
{
	enum { O_CF = 256, O_EP, O_PLACEMENT, O_PAIRS, O_LOADS, O_TABLE, O_FORMAT };
	static const struct option opts[] = {
		{"capacity-factor", required_argument, NULL, O_CF},
		{"ep", required_argument, NULL, O_EP},
		{"placement", required_argument, NULL, O_PLACEMENT},
		{"pairs", required_argument, NULL, O_PAIRS},
		{"loads", no_argument, NULL, O_LOADS},
		{"table", required_argument, NULL, O_TABLE},
		{"format", required_argument, NULL, O_FORMAT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct trace_stats_opts so;
	struct trace_stats *s = NULL;
	enum cli_format fmt = CLI_FORMAT_TABLE;
	enum which which = T_SUMMARY;
	int loads = 0, o, rc = 0, table_given = 0;
	long v;
	enum moe_status st;
	const char *path;

	trace_stats_opts_init(&so);
	optind = 0; /* glibc and musl: restart getopt (the dispatcher may have used it) */
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_CF:
			if (!cli_parse_double(CMD, "--capacity-factor", optarg, 0, 1000,
					      &so.capacity_factor))
				return 2;
			break;
		case O_EP:
			if (!cli_parse_long(CMD, "--ep", optarg, 1, 1 << 20, &v))
				return 2;
			so.ep = (uint32_t)v;
			break;
		case O_PLACEMENT:
			if (!moe_placement_parse(optarg, &so.placement) ||
			    so.placement == MOE_PLACE_BALANCED)
				return cli_usage(CMD, "--placement '%s': expected contiguous or "
						 "round-robin", optarg);
			break;
		case O_PAIRS:
			if (!cli_parse_long(CMD, "--pairs", optarg, 0, 1000000, &v))
				return 2;
			so.top_pairs = (uint32_t)v;
			break;
		case O_LOADS: loads = 1; break;
		case O_TABLE:
			table_given = 1;
			if (strcmp(optarg, "summary") == 0)
				which = T_SUMMARY;
			else if (strcmp(optarg, "loads") == 0)
				which = T_LOADS;
			else if (strcmp(optarg, "pairs") == 0)
				which = T_PAIRS;
			else if (strcmp(optarg, "ep") == 0)
				which = T_EP;
			else
				return cli_usage(CMD, "--table '%s': expected summary, loads, pairs "
						 "or ep", optarg);
			break;
		case O_FORMAT:
			if (!cli_parse_format(CMD, optarg, &fmt))
				return 2;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_stdout(CMD);
		default:
			return cli_bad_option(CMD, argc, argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage(CMD, optind >= argc ? "missing FILE" : "expected one FILE");
	path = argv[optind];
	if (which == T_EP && !so.ep)
		return cli_usage(CMD, "--table ep needs --ep N");
	if ((st = trace_stats_compute(path, &so, &s)) != MOE_OK)
		return cli_fail(CMD, st);
	if (fmt == CLI_FORMAT_JSON) {
		rc = print_json(s, path);
	} else if (fmt == CLI_FORMAT_CSV || table_given) {
		struct cli_table *t = which == T_LOADS ? loads_table(s)
				      : which == T_PAIRS ? pairs_table(s)
				      : which == T_EP    ? ep_table(s)
							 : summary_table(s, path);

		cli_table_print(t, fmt, stdout);
		cli_table_free(t);
		rc = cli_finish_stdout(CMD);
	} else {
		struct cli_table *t = summary_table(s, path);
		int any_pairs = 0;

		cli_table_print(t, fmt, stdout);
		cli_table_free(t);
		for (uint32_t l = 0; l < s->layers; l++)
			any_pairs |= s->layer[l].npairs > 0;
		if (any_pairs) {
			putchar('\n');
			t = pairs_table(s);
			cli_table_print(t, fmt, stdout);
			cli_table_free(t);
		}
		if (so.ep) {
			putchar('\n');
			t = ep_table(s);
			cli_table_print(t, fmt, stdout);
			cli_table_free(t);
		}
		if (loads) {
			putchar('\n');
			t = loads_table(s);
			cli_table_print(t, fmt, stdout);
			cli_table_free(t);
		}
		rc = cli_finish_stdout(CMD);
	}
	trace_stats_free(s);
	return rc;
}
