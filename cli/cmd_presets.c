/* cli/cmd_presets.c: `moekit presets list|show`: the bundled model and
 * cluster presets and their resolved values. */
#include "config.h"
#include "cli/cli.h"
#include "moe/model.h"
#include "moe/preset.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
	"Usage: moekit presets list [--format table|csv|json]\n"
	"       moekit presets show NAME[:NODES]|FILE [--format table|csv|json]\n\n"
	"List the bundled model and cluster presets, or show one with every field\n"
	"resolved and its unit.  NAME is looked up among the models first, then the\n"
	"clusters; --model or --cluster picks one kind when a name is ambiguous or a\n"
	"FILE is given.  Cluster presets take a node count: dgx-h100:4 is four nodes.\n\n"
	"Options:\n"
	"  --model            NAME or FILE is a model\n"
	"  --cluster          NAME or FILE is a cluster\n"
	"  --format FMT       table (default), csv or json\n"
	"  -h, --help         show this help\n\n"
	"Presets live in DATADIR/presets/{models,clusters}/NAME.ini; set MOEKIT_DATADIR\n"
	"to use another folder.  A file of your own may start with `base = NAME` and\n"
	"override any field (see README.md, \"Configuration files\").\n";

struct show_ctx {
	struct cli_table *t;
};

static void add_field(void *user, const char *section, const char *key, const char *value,
		      const char *help)
{
	struct show_ctx *ctx = user;
	char name[128];
	const char *cells[3];

	snprintf(name, sizeof name, "%s.%s", section, key);
	cells[0] = name;
	cells[1] = value;
	cells[2] = help;
	cli_table_row(ctx->t, cells);
}

static int list(enum cli_format fmt)
{
	struct cli_table *t = cli_table_new("presets");
	const char *kinds[] = {"model", "cluster"};
	enum moe_status st;
	int rc = 0;

	cli_table_col(t, "kind", CLI_COL_STR);
	cli_table_col(t, "name", CLI_COL_STR);
	cli_table_col(t, "summary", CLI_COL_STR);
	for (int k = 0; k < 2; k++) {
		char **names = NULL;
		if ((st = moe_preset_names(k == 0 ? MOE_PRESET_MODEL : MOE_PRESET_CLUSTER, &names)) != MOE_OK) {
			rc = cli_fail("presets", st);
			goto out;
		}
		for (char **p = names; *p; p++) {
			char summary[256];
			const char *cells[3] = {kinds[k], *p, summary};
			if (k == 0) {
				struct moe_model m;
				if ((st = moe_model_load(*p, &m)) != MOE_OK) {
					moe_preset_names_free(names);
					rc = cli_fail("presets", st);
					goto out;
				}
				snprintf(summary, sizeof summary, "%d layers (%d MoE), d=%d, %d experts top-%d%s",
					 m.layers, m.moe_layers, m.hidden, m.experts, m.top_k,
					 m.shared_experts ? " + shared" : "");
			} else {
				struct moe_cluster c;
				if ((st = moe_cluster_load(*p, &c)) != MOE_OK) {
					moe_preset_names_free(names);
					rc = cli_fail("presets", st);
					goto out;
				}
				summary[0] = '\0';
				for (int i = 0; i < moe_cluster_kinds(&c); i++) {
					struct moe_node_group g;
					size_t l = strlen(summary);
					moe_cluster_kind(&c, i, &g);
					/* node groups: "2 nodes of 8 x H100-SXM, ...; 2 nodes of ..." */
					if (c.ngroups > 0)
						snprintf(summary + l, sizeof summary - l, "%s%d nodes of ",
							 i ? "; " : "", g.nodes);
					l = strlen(summary);
					snprintf(summary + l, sizeof summary - l, "%d x %s%s, %s, %d NICs",
						 c.gpus_per_node, g.gpu, c.ngroups ? "" : " per node",
						 moe_intra_name(g.intra), g.nics);
				}
			}
			cli_table_row(t, cells);
		}
		moe_preset_names_free(names);
	}
	cli_table_print(t, fmt, stdout);
	rc = cli_finish_stdout("presets");
out:
	cli_table_free(t);
	return rc;
}

static int show(const char *name, int kind, enum cli_format fmt)
{
	struct show_ctx ctx;
	struct moe_model m;
	struct moe_cluster c;
	enum moe_status st = MOE_ENOTFOUND;
	int rc;

	/* kind: 0 either, 1 model, 2 cluster */
	if (kind != 2 && strchr(name, ':') == NULL) {
		st = moe_model_load(name, &m);
		if (st == MOE_OK)
			kind = 1;
		else if (kind == 1 || st != MOE_ENOTFOUND)
			return cli_fail("presets", st);
	}
	if (kind != 1) {
		if ((st = moe_cluster_load(name, &c)) != MOE_OK) {
			if (st == MOE_ENOTFOUND && kind == 0) {
				char **mn = NULL, **cn = NULL, list[2048] = "";
				moe_preset_names(MOE_PRESET_MODEL, &mn);
				moe_preset_names(MOE_PRESET_CLUSTER, &cn);
				for (int k = 0; k < 2; k++)
					for (char **p = k ? cn : mn; p && *p; p++) {
						if (list[0]) strncat(list, ", ", sizeof list - strlen(list) - 1);
						strncat(list, *p, sizeof list - strlen(list) - 1);
					}
				moe_preset_names_free(mn);
				moe_preset_names_free(cn);
				moe_error(MOE_ENOTFOUND, "unknown preset '%s': expected one of %s", name, list);
			}
			return cli_fail("presets", st);
		}
		kind = 2;
	}
	ctx.t = cli_table_new("fields");
	cli_table_col(ctx.t, "field", CLI_COL_STR);
	cli_table_col(ctx.t, "value", CLI_COL_STR);
	cli_table_col(ctx.t, "meaning", CLI_COL_STR);
	if (kind == 1) {
		cli_table_note(ctx.t, "model preset %s", name);
		moe_model_each_field(&m, add_field, &ctx);
	} else {
		cli_table_note(ctx.t, "cluster preset %s: %d nodes, %d GPUs", name, c.nodes,
			       moe_cluster_gpus(&c));
		if (c.ngroups > 0)
			cli_table_note(ctx.t, "%d node groups, each below; gpu.*, intra.* and nic.* "
				       "show the first group's", c.ngroups);
		moe_cluster_each_field(&c, add_field, &ctx);
	}
	cli_table_print(ctx.t, fmt, stdout);
	cli_table_free(ctx.t);
	rc = cli_finish_stdout("presets");
	return rc;
}

int cmd_presets(int argc, char **argv)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'f'},
		{"model", no_argument, NULL, 'm'},
		{"cluster", no_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	enum cli_format fmt = CLI_FORMAT_TABLE;
	int kind = 0, o;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'f':
			if (!cli_parse_format("presets", optarg, &fmt))
				return 2;
			break;
		case 'm': kind = 1; break;
		case 'c': kind = 2; break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_stdout("presets");
		default:
			return cli_bad_option("presets", argc, argv);
		}
	}
	if (optind >= argc)
		return cli_usage("presets", "missing action: expected list or show");
	if (strcmp(argv[optind], "list") == 0) {
		if (optind + 1 != argc)
			return cli_usage("presets", "list: unexpected argument '%s'", argv[optind + 1]);
		return list(fmt);
	}
	if (strcmp(argv[optind], "show") == 0) {
		if (optind + 2 != argc)
			return cli_usage("presets", "show: expected one NAME");
		return show(argv[optind + 1], kind, fmt);
	}
	return cli_usage("presets", "unknown action '%s': expected list or show", argv[optind]);
}
