/* cli/cmd_validate.c: `moekit validate`: simulate the plan of each profile
 * run on a (calibrated) cluster, store the simulations and print predicted
 * against measured per stage (study/validate.h). */
#include "config.h"
#include "cli/cli.h"
#include "store/store.h"
#include "study/validate.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "validate"

static const char usage_text[] =
	"Usage: moekit validate --db FILE --cluster CLUSTER [options]\n\n"
	"For every profile run in the store that has a plan the simulator can run\n"
	"(a forward MoE layer: hidden, ffn, experts, top-k, tokens, and --ep ranks\n"
	"dividing the experts), simulate the same plan on CLUSTER (a preset or a\n"
	"file, e.g. one `moekit calibrate` wrote), store each simulation as a run\n"
	"of kind sim labelled \"validate of run N\", and print predicted against\n"
	"measured per stage with the relative error (predicted / measured - 1):\n\n"
	"  experts    the expert GEMMs (ep > 1: the experts stage, the slowest\n"
	"             rank; one process: gate_up + activation + down)\n"
	"  dispatch   the all-to-all of the rows to their experts (ep > 1)\n"
	"  combine    the all-to-all back (the profiler's combine_a2a; ep > 1)\n"
	"  total      the layer (the simulator does not model the profiler's\n"
	"             routing, permute and weighted-sum stages)\n\n"
	"The simulated layer is FP32, SwiGLU, contiguous placement, direct\n"
	"all-to-all; routing drawn from the run's per-expert loads (or those of a\n"
	"single-process run of the same shape, tokens and seed), seeded.\n\n"
	"Options:\n"
	"  --db FILE           the store (profile runs in, simulations out)\n"
	"  --cluster CLUSTER   cluster preset or file\n"
	"  --runs ID,...       validate only these profile runs\n"
	"  --no-store          print only, store nothing\n"
	"  --format FMT        table (default), csv or json\n"
	"  -h, --help          show this help\n\n"
	"Example:\n"
	"  moekit calibrate --db s.db -o here.ini\n"
	"  moekit validate --db s.db --cluster here.ini\n\n"
	"Exit status: 0 success, 1 no matching run or a runtime failure (nothing is\n"
	"stored then), 2 a usage error or a listed run that cannot be simulated.\n";


int cmd_validate(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"db", required_argument, NULL, 'd'},
		{"cluster", required_argument, NULL, 'c'},
		{"runs", required_argument, NULL, 'r'},
		{"no-store", no_argument, NULL, 'N'},
		{"format", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dbp = NULL, *cluster = NULL;
	enum cli_format fmt = CLI_FORMAT_TABLE;
	int64_t *ids = NULL;
	size_t nids = 0;
	int c, rc, n = 0, dostore = 1;
	struct store *db = NULL;
	struct study_valid_row *rows = NULL;
	enum moe_status st;
	double sum_abs[STUDY_VALID_STAGES] = {0};
	int cnt[STUDY_VALID_STAGES] = {0};

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 'd': dbp = optarg; break;
		case 'c': cluster = optarg; break;
		case 'N': dostore = 0; break;
		case 'r':
			free(ids);
			if (!cli_parse_runs(CMD, optarg, &ids, &nids))
				return 2;
			break;
		case 'f':
			if (!cli_parse_format(CMD, optarg, &fmt)) {
				free(ids);
				return 2;
			}
			break;
		case 'h':
			free(ids);
			fputs(usage_text, stdout);
			return cli_finish_stdout(CMD);
		default:
			free(ids);
			return cli_bad_option(CMD, argc, argv);
		}
	}
	if (optind < argc) {
		free(ids);
		return cli_usage(CMD, "unexpected argument '%s'", argv[optind]);
	}
	if (!dbp || !cluster) {
		free(ids);
		return cli_usage(CMD, "give --db FILE and --cluster CLUSTER");
	}
	/* the file must exist: validating an empty new store is a mistake */
	if ((st = store_open(dbp, STORE_READ, &db)) == MOE_OK && dostore) {
		store_close(db);
		db = NULL;
		st = store_open(dbp, STORE_WRITE, &db);
	}
	if (st != MOE_OK || (st = study_valid_run(db, cluster, ids, nids, dostore, &rows, &n)) != MOE_OK) {
		rc = cli_fail(CMD, st);
		goto done;
	}
	{
		struct cli_table *t = cli_table_new("validation");
		const char *cols[] = {"run", "sim_run", "ep", "tokens", "stage", "measured_ms",
				      "predicted_ms", "rel_err_%"};
		cli_table_note(t, "moekit %s validate: profile runs of %s simulated on %s", PACKAGE_VERSION,
			       dbp, cluster);
		cli_table_note(t, "rel_err = predicted / measured - 1; total includes stages the simulator "
			       "does not model (routing, permute, weighted sum)");
		for (int i = 0; i < 8; i++)
			cli_table_col(t, cols[i], i == 4 ? CLI_COL_STR : CLI_COL_NUM);
		for (int i = 0; i < n; i++) {
			const struct study_valid_row *r = &rows[i];
			for (int s = 0; s < STUDY_VALID_STAGES; s++) {
				char v[7][40];
				const char *cells[8];
				double m = r->measured_s[s], p = r->predicted_s[s];
				if (m < 0)
					continue;
				snprintf(v[0], 40, "%lld", (long long)r->run);
				snprintf(v[1], 40, "%lld", (long long)r->sim_run);
				snprintf(v[2], 40, "%d", r->ep);
				snprintf(v[3], 40, "%.0f", r->tokens);
				snprintf(v[4], 40, "%.4f", m * 1e3);
				snprintf(v[5], 40, "%.4f", p * 1e3);
				snprintf(v[6], 40, "%.1f", m > 0 ? 100 * (p / m - 1) : 0);
				cells[0] = v[0];
				cells[1] = r->sim_run ? v[1] : NULL;
				cells[2] = v[2];
				cells[3] = v[3];
				cells[4] = study_valid_stage_name((enum study_valid_stage)s);
				cells[5] = v[4];
				cells[6] = v[5];
				cells[7] = m > 0 ? v[6] : NULL;
				cli_table_row(t, cells);
				if (m > 0) {
					sum_abs[s] += fabs(p / m - 1);
					cnt[s]++;
				}
			}
		}
		for (int i = 0; i < n; i++)
			if (rows[i].measured_dispatch_bytes > 0)
				cli_table_note(t, "run %lld: dispatch bytes to other ranks measured %.0f, simulated "
					       "%.0f (%+.1f%%)", (long long)rows[i].run,
					       rows[i].measured_dispatch_bytes, rows[i].predicted_dispatch_bytes,
					       100 * (rows[i].predicted_dispatch_bytes /
						      rows[i].measured_dispatch_bytes - 1));
		for (int s = 0; s < STUDY_VALID_STAGES; s++)
			if (cnt[s])
				cli_table_note(t, "%s: mean |rel_err| %.1f%% over %d runs",
					       study_valid_stage_name((enum study_valid_stage)s),
					       100 * sum_abs[s] / cnt[s], cnt[s]);
		cli_table_print(t, fmt, stdout);
		cli_table_free(t);
	}
	rc = cli_finish_stdout(CMD);
done:
	free(rows);
	store_close(db);
	free(ids);
	return rc;
}
