/* cli/cmd_compare.c: `moekit compare`: runs side by side: the parameters
 * that differ and the results, with differences against the first run. */
#include "config.h"
#include "cli/cli.h"
#include "reports/report.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_compare(int argc, char **argv);

static const char usage_text[] =
	"Usage: moekit compare [--db FILE] [--format table|csv|json] RUN RUN...\n\n"
	"Compare runs of one model side by side.  One row per quantity:\n"
	"  run      run fields that differ (kind, cluster, seed);\n"
	"  param    input parameters (runs.inputs, flattened to dotted keys such as\n"
	"           plan.ep) whose values differ between the runs;\n"
	"  metric   every metric any run stored (step_time_s, tokens_per_s, ...);\n"
	"  layers   sums over the run's layers of each time, byte and token column,\n"
	"           and the largest imbalance.\n"
	"Columns: the quantity, its unit, each run's value and, for the second run\n"
	"on, the absolute difference (run - first run) and the relative difference\n"
	"in percent (100 * (run - first run) / |first run|; empty when the first run's\n"
	"value is 0 or either is not a number).\n\n"
	"Options:\n"
	"  --db FILE          results store (default: moekit.db)\n"
	"  --format FMT       table (default), csv or json\n"
	"  -h, --help         show this help\n\n"
	"Exit status: 0 success, 1 an unknown run or a store error, 2 a usage error\n"
	"(fewer than two runs, a run listed twice or not done, runs of different\n"
	"models).\n";

static int parse_id(const char *arg, int64_t *id)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(arg, &end, 10);
	if (end == arg || *end != '\0' || v < 1 || errno == ERANGE)
		return cli_usage("compare", "RUN: '%s' is not a run id (a positive integer)", arg), 0;
	*id = v;
	return 1;
}

int cmd_compare(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"format", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = "moekit.db";
	enum cli_format fmt = CLI_FORMAT_TABLE;
	struct report_cmp cmp;
	struct cli_table *t;
	int64_t *ids;
	size_t n, ncols;
	int o;
	struct store *db;
	enum moe_status st;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'd': path = optarg; break;
		case 'f':
			if (!cli_parse_format("compare", optarg, &fmt))
				return 2;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_stdout("compare");
		default:
			return cli_bad_option("compare", argc, argv);
		}
	}
	n = (size_t)(argc - optind);
	if (n < 2)
		return cli_usage("compare", "expected at least two RUN ids");
	if ((ids = malloc(n * sizeof *ids)) == NULL)
		return cli_usage("compare", "out of memory");
	for (size_t i = 0; i < n; i++)
		if (!parse_id(argv[optind + (int)i], &ids[i])) {
			free(ids);
			return 2;
		}
	if ((st = store_open(path, STORE_READ, &db)) != MOE_OK) {
		free(ids);
		return cli_fail("compare", st);
	}
	st = report_cmp_build(db, ids, n, &cmp);
	store_close(db);
	free(ids);
	if (st != MOE_OK)
		return cli_fail("compare", st);

	t = cli_table_new("compare");
	cli_table_col(t, "kind", CLI_COL_STR);
	cli_table_col(t, "quantity", CLI_COL_STR);
	cli_table_col(t, "unit", CLI_COL_STR);
	for (size_t i = 0; i < cmp.nruns; i++) {
		char name[96];
		snprintf(name, sizeof name, "run %lld", (long long)cmp.ids[i]);
		cli_table_col(t, name, CLI_COL_NUM);
		if (i == 0)
			continue;
		snprintf(name, sizeof name, "run %lld abs diff", (long long)cmp.ids[i]);
		cli_table_col(t, name, CLI_COL_NUM);
		snprintf(name, sizeof name, "run %lld rel diff (%%)", (long long)cmp.ids[i]);
		cli_table_col(t, name, CLI_COL_NUM);
	}
	ncols = 3 + 3 * cmp.nruns - 2;
	{
		char (*buf)[40] = calloc(ncols, sizeof *buf);
		const char **cells = calloc(ncols, sizeof *cells);
		if (buf == NULL || cells == NULL) {
			free(buf);
			free(cells);
			cli_table_free(t);
			report_cmp_release(&cmp);
			return cli_usage("compare", "out of memory");
		}
		for (size_t r = 0; r < cmp.nrows; r++) {
			const struct report_cmp_row *row = &cmp.rows[r];
			size_t c = 0;
			cells[c++] = row->kind;
			cells[c++] = row->name;
			cells[c++] = row->unit;
			for (size_t i = 0; i < cmp.nruns; i++) {
				double a, rel;
				cells[c++] = row->text[i];
				if (i == 0)
					continue;
				if (row->numeric && report_cmp_delta(row, i, &a, &rel)) {
					snprintf(buf[c], sizeof buf[c], "%.10g", a);
					cells[c] = buf[c];
					c++;
					if (isfinite(rel)) {
						snprintf(buf[c], sizeof buf[c], "%.4g", 100 * rel);
						cells[c] = buf[c];
						c++;
					} else {
						cells[c++] = NULL;
					}
				} else {
					cells[c++] = NULL;
					cells[c++] = NULL;
				}
			}
			cli_table_row(t, cells);
		}
		free(buf);
		free(cells);
	}
	cli_table_note(t, "moekit %s compare, store %s", PACKAGE_VERSION, path);
	for (size_t i = 0; i < cmp.nruns; i++)
		cli_table_note(t, "%s", cmp.labels[i]);
	cli_table_note(t, "differences against run %lld: abs = run - run %lld, rel = 100 * "
		       "(run - run %lld) / |run %lld|", (long long)cmp.ids[0], (long long)cmp.ids[0],
		       (long long)cmp.ids[0], (long long)cmp.ids[0]);
	cli_table_print(t, fmt, stdout);
	cli_table_free(t);
	report_cmp_release(&cmp);
	return cli_finish_stdout("compare");
}
