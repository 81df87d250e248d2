/* cli/cmd_trace.c: `moekit trace SUBCOMMAND`: import, export and info here;
 * gen, reroute, rescale and stats live in their own files and are weak here,
 * so the command lists only the subcommands built in. */
#include "config.h"
#include "cli/cli.h"
#include "moe/model.h"
#include "traces/io.h"
#include "traces/trace.h"

#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Declared weak in cli/main.c; defined here. */
int cmd_trace(int argc, char **argv);

#define WEAK __attribute__((weak))
int cmd_trace_gen(int argc, char **argv) WEAK;
int cmd_trace_reroute(int argc, char **argv) WEAK;
int cmd_trace_rescale(int argc, char **argv) WEAK;
int cmd_trace_stats(int argc, char **argv) WEAK;

static int trace_import_cmd(int argc, char **argv);
static int trace_export_cmd(int argc, char **argv);
static int trace_info_cmd(int argc, char **argv);

static const struct cli_cmd subs[] = {
	{"import", trace_import_cmd, "convert .npy/.npz/JSONL/CSV router dumps into a .moetrace"},
	{"export", trace_export_cmd, "write a .moetrace as JSONL, CSV or .npy"},
	{"info", trace_info_cmd, "print a trace's header and per (step, layer) summary"},
	{"gen", cmd_trace_gen, "generate a synthetic trace (seeded)"},
	{"reroute", cmd_trace_reroute, "re-derive routes from stored logits under another policy"},
	{"rescale", cmd_trace_rescale, "turn a trace of R source ranks into one of N"},
	{"stats", cmd_trace_stats, "per-layer load statistics of a trace"},
	{NULL, NULL, NULL},
};

static void usage(FILE *out)
{
	fputs("Usage: moekit trace SUBCOMMAND [OPTIONS]\n"
	      "       moekit trace SUBCOMMAND --help\n\n"
	      "Router traces: which experts each token was sent to, per step and layer, in\n"
	      "the .moetrace format (docs/trace-format.md).\n\n"
	      "Subcommands:\n", out);
	for (const struct cli_cmd *c = subs; c->name; c++)
		if (c->run != NULL)
			fprintf(out, "  %-10s %s\n", c->name, c->summary);
	fputs("\nExit status: 0 success, 1 bad data or a failure, 2 a usage error.\n", out);
}

int cmd_trace(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return cli_finish_stdout("trace");
	}
	for (const struct cli_cmd *c = subs; c->name; c++)
		if (c->run != NULL && strcmp(c->name, argv[1]) == 0) {
			optind = 1;
			return c->run(argc - 1, argv + 1);
		}
	return cli_usage("trace", "unknown subcommand '%s'", argv[1]);
}

/* ---------------------------------------------------------------- import */

static const char import_usage[] =
	"Usage: moekit trace import IN -o OUT.moetrace [OPTIONS]\n\n"
	"Convert a router dump into a .moetrace.  The input format comes from IN's\n"
	"name (.npy, .npz, .jsonl, .csv) or --from:\n"
	"  .npy    router logits [tokens, experts] (one layer) or [layers, tokens, experts];\n"
	"          or top-k ids (int32/int64, [tokens, k] or [layers, tokens, k], -1 = none)\n"
	"          with their gate weights in another .npy given by --weights\n"
	"  .npz    logits arrays layer_0, layer_1, ... (or step_S_layer_L), or one stacked\n"
	"          `logits` [layers, tokens, experts]; or top-k routes ids_layer_N (int32 or\n"
	"          int64, [tokens, k], -1 = none) with weights_layer_N, or stacked ids and\n"
	"          weights [layers, tokens, k].  Other members are ignored.\n"
	"  .jsonl  one token per line {\"step\", \"layer\", \"token\", \"rank\", \"experts\": [...],\n"
	"          \"weights\": [...], \"logits\": [...]} (weights, logits optional); or count\n"
	"          lines {\"step\", \"layer\", \"rank\", \"expert\", \"tokens\"}\n"
	"  .csv    header step,layer,token,rank,expert_0..expert_{k-1}[,weight_0..]; or a\n"
	"          count dump with header step,layer,rank,expert,tokens (rows of one cell add)\n"
	"Floats may be float32 ('<f4'), float16 ('<f2') or bfloat16 saved as uint16 ('<u2',\n"
	"say --dtype bf16).  Logits are routed with the model's router (--model), or with\n"
	"softmax then top-k and renormalized weights (--top-k), without capacity limit.\n"
	"JSONL and CSV lines must be sorted by step, then layer.\n\n"
	"Options:\n"
	"  -o, --output FILE    the trace to write (required; written whole or not at all)\n"
	"  --from FMT           npy, npz, jsonl or csv (default: from IN's name)\n"
	"  --dtype T            f32, f16 or bf16: how 16-bit floats are stored\n"
	"  --model NAME|FILE    model preset: checks experts and layers, gives top-k and router\n"
	"  --top-k K            experts per token when routing logits\n"
	"  --experts E          experts per layer (needed for ids without a model)\n"
	"  --weights FILE       .npy of gate weights for a .npy of top-k ids\n"
	"  --ranks R            source ranks; NumPy tokens are split over them in contiguous\n"
	"                       blocks (default 1; JSONL/CSV: largest rank + 1)\n"
	"  --layers L           layers in the trace (default: from the data or the model)\n"
	"  --no-logits          do not keep the logits in the trace (ids and weights only)\n"
	"  --zstd LEVEL         compress chunks with zstd at LEVEL (1-19; default none)\n"
	"  --chunk-tokens N     tokens per chunk (default: about 1 MiB per chunk)\n"
	"  -h, --help           show this help\n";

int trace_import_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'},
		{"from", required_argument, NULL, 'F'},
		{"dtype", required_argument, NULL, 'd'},
		{"model", required_argument, NULL, 'm'},
		{"top-k", required_argument, NULL, 'k'},
		{"experts", required_argument, NULL, 'E'},
		{"ranks", required_argument, NULL, 'R'},
		{"layers", required_argument, NULL, 'L'},
		{"no-logits", no_argument, NULL, 'N'},
		{"weights", required_argument, NULL, 'W'},
		{"zstd", required_argument, NULL, 'z'},
		{"chunk-tokens", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *cmd = "trace import", *out = NULL, *model_name = NULL;
	struct trace_import_opts o;
	struct moe_model model;
	enum moe_status st;
	long v;
	int c;

	trace_import_opts_init(&o);
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'F':
			if (!trace_format_parse(optarg, &o.format) || o.format == TRACE_FMT_MOETRACE)
				return cli_usage(cmd, "--from: unknown format '%s': expected npy, npz, jsonl "
						 "or csv", optarg);
			break;
		case 'd':
			if (!trace_dtype_parse(optarg, &o.dtype))
				return cli_usage(cmd, "--dtype: unknown type '%s': expected f32, f16 or bf16",
						 optarg);
			break;
		case 'm': model_name = optarg; break;
		case 'k':
			if (!cli_parse_long(cmd, "--top-k", optarg, 1, TRACE_MAX_TOP_K, &v)) return 2;
			o.top_k = (uint32_t)v;
			break;
		case 'E':
			if (!cli_parse_long(cmd, "--experts", optarg, 1, TRACE_MAX_EXPERTS, &v)) return 2;
			o.experts = (uint32_t)v;
			break;
		case 'R':
			if (!cli_parse_long(cmd, "--ranks", optarg, 1, TRACE_MAX_RANKS, &v)) return 2;
			o.ranks = (uint32_t)v;
			break;
		case 'L':
			if (!cli_parse_long(cmd, "--layers", optarg, 1, TRACE_MAX_LAYERS, &v)) return 2;
			o.layers = (uint32_t)v;
			break;
		case 'N': o.keep_logits = 0; break;
		case 'W': o.weights = optarg; break;
		case 'z':
			if (!cli_parse_long(cmd, "--zstd", optarg, 1, 19, &v)) return 2;
			o.zstd_level = (int)v;
			break;
		case 'c':
			if (!cli_parse_long(cmd, "--chunk-tokens", optarg, 1, 1L << 24, &v)) return 2;
			o.chunk_tokens = (size_t)v;
			break;
		case 'h':
			fputs(import_usage, stdout);
			return cli_finish_stdout(cmd);
		default:
			return cli_bad_option(cmd, argc, argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage(cmd, optind >= argc ? "missing input file" : "expected one input file");
	if (out == NULL)
		return cli_usage(cmd, "missing -o OUT.moetrace");
	if (model_name != NULL) {
		if ((st = moe_model_load(model_name, &model)) != MOE_OK)
			return cli_fail(cmd, st);
		o.model = &model;
	}
	if ((st = trace_import(argv[optind], out, &o)) != MOE_OK)
		return cli_fail(cmd, st);
	return 0;
}

/* ---------------------------------------------------------------- export */

static const char export_usage[] =
	"Usage: moekit trace export IN.moetrace -o OUT [OPTIONS]\n\n"
	"Write a trace as JSONL, CSV or .npy (format from OUT's name or --to).\n"
	"  jsonl  one token per line: {\"step\",\"layer\",\"token\",\"rank\",\"experts\":[..],\n"
	"         \"weights\":[..],\"logits\":[..]} (token = index within its step and layer;\n"
	"         expert -1 = none); count traces: {\"step\",\"layer\",\"rank\",\"expert\",\"tokens\"}\n"
	"  csv    step,layer,token,rank,expert_0..,weight_0..; count traces:\n"
	"         step,layer,rank,expert,tokens (zero cells left out)\n"
	"  npy    one array (--array): [groups, tokens, X] when every selected (step, layer)\n"
	"         has the same token count, [tokens, X] for one, else [all tokens, X]; counts\n"
	"         [groups, ranks, experts] int64\n"
	"Floats are written with 9 significant digits: importing the export gives the same\n"
	"trace.  OUT \"-\" writes JSONL or CSV to standard output.\n\n"
	"Options:\n"
	"  -o, --output FILE    where to write (required)\n"
	"  --to FMT             jsonl, csv or npy (default: from OUT's name)\n"
	"  --array A            npy: ids, weights, logits, ranks or counts (default: logits if\n"
	"                       present, counts for a count trace, else ids)\n"
	"  --step S             only step S\n"
	"  --layer L            only layer L\n"
	"  -h, --help           show this help\n";

int trace_export_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'},
		{"to", required_argument, NULL, 'T'},
		{"array", required_argument, NULL, 'a'},
		{"step", required_argument, NULL, 's'},
		{"layer", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *cmd = "trace export", *out = NULL;
	struct trace_export_opts o;
	enum moe_status st;
	long v;
	int c;

	trace_export_opts_init(&o);
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'T':
			if (!trace_format_parse(optarg, &o.format) ||
			    (o.format != TRACE_FMT_JSONL && o.format != TRACE_FMT_CSV &&
			     o.format != TRACE_FMT_NPY))
				return cli_usage(cmd, "--to: unknown format '%s': expected jsonl, csv or npy",
						 optarg);
			break;
		case 'a':
			if (!trace_npy_array_parse(optarg, &o.array))
				return cli_usage(cmd, "--array: unknown array '%s': expected ids, weights, "
						 "logits, ranks or counts", optarg);
			break;
		case 's':
			if (!cli_parse_long(cmd, "--step", optarg, 0, INT64_MAX / 2 > LONG_MAX ? LONG_MAX
								   : (long)(INT64_MAX / 2), &v))
				return 2;
			o.step = v;
			break;
		case 'l':
			if (!cli_parse_long(cmd, "--layer", optarg, 0, TRACE_MAX_LAYERS - 1, &v)) return 2;
			o.layer = v;
			break;
		case 'h':
			fputs(export_usage, stdout);
			return cli_finish_stdout(cmd);
		default:
			return cli_bad_option(cmd, argc, argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage(cmd, optind >= argc ? "missing input trace" : "expected one input trace");
	if (out == NULL)
		return cli_usage(cmd, "missing -o OUT");
	if (o.format == TRACE_FMT_AUTO && strcmp(out, "-") != 0 &&
	    trace_format_guess(out) != TRACE_FMT_JSONL && trace_format_guess(out) != TRACE_FMT_CSV &&
	    trace_format_guess(out) != TRACE_FMT_NPY)
		return cli_usage(cmd, "-o %s: name it .jsonl, .csv or .npy, or give --to", out);
	if (o.format == TRACE_FMT_AUTO && strcmp(out, "-") == 0)
		return cli_usage(cmd, "-o -: give --to jsonl or --to csv");
	if ((st = trace_export(argv[optind], out, &o)) != MOE_OK)
		return cli_fail(cmd, st);
	return 0;
}

/* ------------------------------------------------------------------ info */

static const char info_usage[] =
	"Usage: moekit trace info FILE.moetrace [--chunks] [--format table|csv|json]\n\n"
	"Print the trace's header (layers, experts, top-k, source ranks, steps, what it\n"
	"holds) and one row per (step, layer): its chunks, tokens (or summed counts),\n"
	"bytes stored and raw, and its expert loads (largest, mean, max/mean imbalance;\n"
	"a slot holding no expert is not counted).  Every chunk is read, so info also\n"
	"checks the whole file (CRCs, ids, ranks).\n\n"
	"With --chunks, one row per chunk instead: where it starts (byte offset), its\n"
	"codec, tokens and bytes.\n\n"
	"Options:\n"
	"  --chunks       one row per chunk rather than per (step, layer)\n"
	"  --format FMT   table (default), csv (rows only) or json ({\"file\", \"header\",\n"
	"                 \"layers\": [rows]}, or \"chunks\" with --chunks)\n"
	"  -h, --help     show this help\n";

struct info_row {
	uint64_t step;
	uint32_t layer;
	uint64_t chunks, tokens, stored, raw;
};

static void info_emit(struct cli_table *t, json_t *arr, const struct info_row *g,
		      const uint64_t *load, uint32_t E)
{
	uint64_t maxl = 0, sum = 0;
	double mean, imb;
	char b[8][40];
	const char *cells[9];

	for (uint32_t e = 0; e < E; e++) {
		sum += load[e];
		if (load[e] > maxl)
			maxl = load[e];
	}
	mean = (double)sum / E;
	imb = mean > 0 ? (double)maxl / mean : 0;
	if (arr != NULL) {
		json_array_append_new(arr, json_pack("{sI sI sI sI sI sI sI sf sf}", "step",
						     (json_int_t)g->step, "layer", (json_int_t)g->layer,
						     "chunks", (json_int_t)g->chunks, "tokens",
						     (json_int_t)g->tokens, "stored_bytes",
						     (json_int_t)g->stored, "raw_bytes", (json_int_t)g->raw,
						     "max_load", (json_int_t)maxl, "mean_load", mean,
						     "imbalance", imb));
		return;
	}
	snprintf(b[0], 40, "%" PRIu64, g->step);
	snprintf(b[1], 40, "%u", g->layer);
	snprintf(b[2], 40, "%" PRIu64, g->chunks);
	snprintf(b[3], 40, "%" PRIu64, g->tokens);
	snprintf(b[4], 40, "%" PRIu64, g->stored);
	snprintf(b[5], 40, "%" PRIu64, g->raw);
	snprintf(b[6], 40, "%" PRIu64, maxl);
	snprintf(b[7], 40, "%.2f", mean);
	for (int i = 0; i < 8; i++)
		cells[i] = b[i];
	{
		static char ib[40];
		snprintf(ib, sizeof ib, "%.3f", imb);
		cells[8] = ib;
	}
	cli_table_row(t, cells);
}

int trace_info_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'f'},
		{"chunks", no_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const char *const ccols[] = {"step", "layer", "offset", "codec", "tokens",
					    "stored_bytes", "raw_bytes"};
	static const char *const cols[] = {"step", "layer", "chunks", "tokens", "stored_bytes",
					   "raw_bytes", "max_load", "mean_load", "imbalance"};
	const char *cmd = "trace info";
	enum cli_format fmt = CLI_FORMAT_TABLE;
	struct trace_reader *r = NULL;
	const struct trace_header *h;
	const struct trace_chunk *c;
	struct cli_table *t = NULL;
	json_t *root = NULL, *arr = NULL;
	struct info_row g = {0};
	uint64_t *load = NULL;
	enum moe_status st;
	int o, rc = 0, have = 0, per_chunk = 0;
	char flags[64];

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'f':
			if (!cli_parse_format(cmd, optarg, &fmt))
				return 2;
			break;
		case 'C': per_chunk = 1; break;
		case 'h':
			fputs(info_usage, stdout);
			return cli_finish_stdout(cmd);
		default:
			return cli_bad_option(cmd, argc, argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage(cmd, optind >= argc ? "missing trace file" : "expected one trace file");
	if ((st = trace_reader_open(argv[optind], &r)) != MOE_OK)
		return cli_fail(cmd, st);
	h = trace_reader_header(r);
	snprintf(flags, sizeof flags, "%s%s%s%s", (h->flags & TRACE_F_COUNTS) ? "counts" : "tokens",
		 (h->flags & TRACE_F_WEIGHTS) ? "+weights" : "", (h->flags & TRACE_F_LOGITS) ? "+logits" : "",
		 "");
	load = calloc(h->experts, sizeof *load);
	if (load == NULL) {
		trace_reader_close(r);
		return cli_fail(cmd, moe_error(MOE_ENOMEM, "out of memory"));
	}
	if (fmt == CLI_FORMAT_JSON) {
		root = json_pack("{ss s{si ss si si si si sI sI sI ss}}", "file", argv[optind], "header",
				 "version", (int)h->version, "content", flags, "layers", (int)h->layers,
				 "experts", (int)h->experts, "top_k", (int)h->top_k, "ranks",
				 (int)h->ranks, "steps", (json_int_t)h->steps, "chunks",
				 (json_int_t)trace_reader_chunks(r), "tokens",
				 (json_int_t)trace_reader_tokens(r), "model", h->model);
		arr = json_array();
		json_object_set_new(root, per_chunk ? "chunks" : "layers", arr);
	} else {
		t = cli_table_new(per_chunk ? "chunks" : "layers");
		if (per_chunk)
			for (int i = 0; i < 7; i++)
				cli_table_col(t, ccols[i], i < 2 || i == 3 ? CLI_COL_STR : CLI_COL_NUM);
		else
			for (int i = 0; i < 9; i++)
				cli_table_col(t, cols[i], i < 2 ? CLI_COL_STR : CLI_COL_NUM);
		cli_table_note(t, "trace %s: format version %u", argv[optind], h->version);
		cli_table_note(t, "content %s, model %s", flags, h->model[0] ? h->model : "(none)");
		cli_table_note(t, "layers %u, experts %u, top-k %u, source ranks %u, steps %" PRIu64,
			       h->layers, h->experts, h->top_k, h->ranks, h->steps);
		cli_table_note(t, "chunks %" PRIu64 ", %s %" PRIu64, trace_reader_chunks(r),
			       (h->flags & TRACE_F_COUNTS) ? "summed counts" : "token records",
			       trace_reader_tokens(r));
		if (!per_chunk)
			cli_table_note(t, "loads: routed slots per expert (none slots left out); "
				       "imbalance = max / mean");
	}
	for (;;) {
		if ((st = trace_reader_next(r, &c)) != MOE_OK) {
			rc = cli_fail(cmd, st);
			goto out;
		}
		if (have && (c == NULL || c->step != g.step || c->layer != g.layer)) {
			info_emit(t, arr, &g, load, h->experts);
			memset(load, 0, h->experts * sizeof *load);
			have = 0;
		}
		if (c == NULL)
			break;
		if (per_chunk) {
			uint64_t v[7] = {c->step, c->layer, c->offset, c->codec,
					 c->kind == TRACE_CHUNK_COUNTS ? 0 : c->n, c->stored_bytes,
					 c->raw_bytes};
			const char *codec = c->codec ? "zstd" : "raw";
			if (arr != NULL) {
				json_array_append_new(arr, json_pack("{sI sI sI ss sI sI sI}", "step",
					(json_int_t)v[0], "layer", (json_int_t)v[1], "offset",
					(json_int_t)v[2], "codec", codec, "tokens", (json_int_t)v[4],
					"stored_bytes", (json_int_t)v[5], "raw_bytes", (json_int_t)v[6]));
			} else {
				char b[7][32];
				const char *cells[7];
				for (int i = 0; i < 7; i++) {
					snprintf(b[i], sizeof b[i], "%" PRIu64, v[i]);
					cells[i] = i == 3 ? codec : b[i];
				}
				cli_table_row(t, cells);
			}
			continue;
		}
		if (!have) {
			memset(&g, 0, sizeof g);
			g.step = c->step;
			g.layer = c->layer;
			have = 1;
		}
		g.chunks++;
		g.stored += c->stored_bytes;
		g.raw += c->raw_bytes;
		if (c->kind == TRACE_CHUNK_COUNTS) {
			uint64_t before = 0, after = 0;
			for (uint32_t e = 0; e < h->experts; e++) before += load[e];
			trace_chunk_loads(c, load);
			for (uint32_t e = 0; e < h->experts; e++) after += load[e];
			g.tokens += after - before;
		} else {
			g.tokens += c->n;
			trace_chunk_loads(c, load);
		}
	}
	if (fmt == CLI_FORMAT_JSON) {
		char *s = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		if (s != NULL) {
			fputs(s, stdout);
			fputc('\n', stdout);
			free(s);
		}
	} else {
		cli_table_print(t, fmt, stdout);
	}
	rc = cli_finish_stdout(cmd);
out:
	free(load);
	json_decref(root);
	cli_table_free(t);
	trace_reader_close(r);
	return rc;
}
