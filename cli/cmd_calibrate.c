/* cli/cmd_calibrate.c: `moekit calibrate`: fit the compute efficiency curve
 * and the link latency and bandwidth to profile runs in the store, and
 * write them as a cluster file (study/calibrate.h). */
#include "config.h"
#include "cli/cli.h"
#include "moe/model.h"
#include "moe/units.h"
#include "store/store.h"
#include "study/calibrate.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "calibrate"

static const char usage_text[] =
	"Usage: moekit calibrate --db FILE -o CLUSTER_FILE [options]\n\n"
	"Fit the simulator's compute and link parameters to the profile runs in a\n"
	"store and write them as a cluster file for `moekit sim --cluster FILE`.\n\n"
	"Compute: from single-process `moekit profile` runs (the expert GEMM stages\n"
	"gate_up + activation + down at different tokens per expert), the roofline\n"
	"curve t(n) = 2 x 3 x d x f x (n + m_half) / (peak x eff_max) + 3 x launch\n"
	"per expert of n rows, with peak the SGEMM roof measured with the runs:\n"
	"gpu.efficiency = eff_max and gpu.m_half (rows at half of it).\n"
	"Links: from `moekit profile a2a` runs, t = latency + bytes / bandwidth with\n"
	"bytes = what each rank sends to the others: intra.bw and intra.latency\n"
	"(achieved, so intra.efficiency = 1).  Weighted least squares (GSL) on\n"
	"relative residuals; every value with its standard error, the RMS relative\n"
	"residual and R^2 (printed and written as comments in the file).  The file\n"
	"has one node of as many \"GPUs\" as the all-to-all had ranks, each one\n"
	"process of the profile runs' thread count.\n\n"
	"Options:\n"
	"  --db FILE           the store with the profile runs (read only)\n"
	"  -o, --output FILE   the cluster file to write (via a temporary name)\n"
	"  --runs ID,...       use only these runs (default: every done profile run)\n"
	"  --base PRESET       start the file from a cluster preset (`base = PRESET`):\n"
	"                      its NICs and fabric stay; without a2a runs its\n"
	"                      intra-node links stay too\n"
	"  --name NAME         the cluster's name (default: calibrated)\n"
	"  --launch TIME       per-launch overhead to subtract, e.g. 5us (default 0:\n"
	"                      a CPU stage's fixed cost stays in m_half)\n"
	"  --format FMT        table (default), csv or json\n"
	"  -h, --help          show this help\n\n"
	"Each fit needs at least 3 points with distinct x (3 profile runs at\n"
	"different tokens; 3 all-to-all sizes).  A fit whose m_half or latency\n"
	"comes out negative is redone with it at its bound 0 (through the origin),\n"
	"and says so.  With --base the file keeps the preset's layout (nodes, GPUs\n"
	"per node), memory, NICs and fabric, and replaces its GPU and intra-node\n"
	"figures by the fitted ones.\n\n"
	"Example:\n"
	"  for n in 64 256 1024; do moekit profile --model mixtral-8x7b --hidden 256 \\\n"
	"      --ffn 512 --experts 8 --tokens $n --threads 1 --db s.db; done\n"
	"  mpiexec -n 2 moekit profile a2a --max-bytes 4MiB --db s.db\n"
	"  moekit calibrate --db s.db -o here.ini && moekit presets show --cluster here.ini\n\n"
	"Exit status: 0 success, 1 a runtime failure (store, file, a fit the\n"
	"simulator cannot use), 2 a usage error (too few points included).\n";


static void row(struct cli_table *t, const char *fit, const char *param, double v, double se,
		const char *unit)
{
	char a[40], b[40];
	const char *cells[5] = {fit, param, a, b, unit};
	snprintf(a, sizeof a, "%.6g", v);
	snprintf(b, sizeof b, "%.3g", se);
	if (se < 0)
		cells[3] = NULL;
	cli_table_row(t, cells);
}

int cmd_calibrate(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"db", required_argument, NULL, 'd'},
		{"output", required_argument, NULL, 'o'},
		{"runs", required_argument, NULL, 'r'},
		{"base", required_argument, NULL, 'b'},
		{"name", required_argument, NULL, 'n'},
		{"launch", required_argument, NULL, 'l'},
		{"format", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dbp = NULL, *out = NULL, *name = "calibrated";
	struct study_calib_opts o = {0, 0, NULL};
	enum cli_format fmt = CLI_FORMAT_TABLE;
	int64_t *ids = NULL;
	size_t nids = 0;
	int c, rc;
	struct store *db = NULL;
	struct study_calib_data *d = NULL;
	struct study_calib cal;
	struct cli_table *t;
	enum moe_status st;
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'd': dbp = optarg; break;
		case 'o': out = optarg; break;
		case 'b': o.base = optarg; break;
		case 'n':
			if (!*optarg || strlen(optarg) >= MOE_NAME_MAX || strpbrk(optarg, ";#\n\r")) {
				free(ids);
				return cli_usage(CMD, "--name '%s': expected 1 to %d characters without ; # or "
						 "newlines", optarg, MOE_NAME_MAX - 1);
			}
			name = optarg;
			break;
		case 'r':
			free(ids);
			if (!cli_parse_runs(CMD, optarg, &ids, &nids))
				return 2;
			break;
		case 'l':
			if (moe_units_parse(optarg, MOE_UNIT_TIME, &o.launch_s) != MOE_OK || o.launch_s < 0 ||
			    o.launch_s > 1) {
				free(ids);
				return cli_usage(CMD, "--launch %s: expected a time from 0 to 1s such as 5us", optarg);
			}
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
	if (!dbp || !out) {
		free(ids);
		return cli_usage(CMD, "give --db FILE and -o CLUSTER_FILE");
	}
	if (o.base) {
		struct moe_cluster bc;
		if ((st = moe_cluster_load(o.base, &bc)) != MOE_OK) {
			free(ids);
			return cli_fail(CMD, st);
		}
	}
	o.mem_bytes = pages > 0 && psize > 0 ? (double)pages * (double)psize : 0;
	if ((st = store_open(dbp, STORE_READ, &db)) != MOE_OK ||
	    (st = study_calib_collect(db, ids, nids, &d)) != MOE_OK ||
	    (st = study_calib_run(d, &o, &cal)) != MOE_OK ||
	    (st = study_calib_write(out, name, &cal, d, &o)) != MOE_OK) {
		rc = cli_fail(CMD, st);
		goto done;
	}
	t = cli_table_new("parameters");
	cli_table_note(t, "moekit %s calibrate: fits to the profile runs of %s", PACKAGE_VERSION, dbp);
	{
		char buf[1024];
		size_t n = 0;
		buf[0] = '\0';
		for (int i = 0; i < d->nruns && n < sizeof buf - 24; i++)
			n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%lld", i ? "," : "",
					      (long long)d->runs[i]);
		cli_table_note(t, "runs: %s", buf);
	}
	cli_table_note(t, "compute: %d runs (%d threads each), peak = mean SGEMM roof %.2f GFLOP/s; "
		       "rms relative residual %.4f, max %.4f, R^2 %.5f", cal.compute.n, cal.threads,
		       cal.peak_flops / 1e9, cal.compute.rms_rel, cal.compute.max_rel, cal.compute.r2);
	if (cal.have_link)
		cli_table_note(t, "links: %d all-to-all sizes on %d ranks; rms relative residual %.4f, "
			       "max %.4f, R^2 %.5f", cal.link.n, cal.ranks, cal.link.rms_rel,
			       cal.link.max_rel, cal.link.r2);
	else
		cli_table_note(t, "links: none measured; kept from %s", o.base);
	if (cal.m_half_bound)
		cli_table_note(t, "m_half at its bound 0: the free fit gave %.4g rows (efficiency falling "
			       "with the rows); refitted through the origin", cal.m_half_free);
	if (cal.lat_bound)
		cli_table_note(t, "latency at its bound 0: the free fit gave %.4g s; refitted through the "
			       "origin", cal.lat_free);
	cli_table_note(t, "written: %s", out);
	cli_table_col(t, "fit", CLI_COL_STR);
	cli_table_col(t, "param", CLI_COL_STR);
	cli_table_col(t, "value", CLI_COL_NUM);
	cli_table_col(t, "std_err", CLI_COL_NUM);
	cli_table_col(t, "unit", CLI_COL_STR);
	row(t, "compute", "peak_flops", cal.peak_flops, -1, "FLOP/s");
	row(t, "compute", "eff_max", cal.eff_max, cal.eff_max_se, "1");
	row(t, "compute", "m_half", cal.m_half, cal.m_half_se, "rows");
	row(t, "compute", "launch", cal.launch_s, -1, "s");
	row(t, "compute", "rms_rel_residual", cal.compute.rms_rel, -1, "1");
	row(t, "compute", "r2", cal.compute.r2, -1, "1");
	if (cal.have_link) {
		row(t, "link", "latency", cal.lat_s, cal.lat_se, "s");
		row(t, "link", "bandwidth", cal.bw_Bps, cal.bw_se, "B/s");
		row(t, "link", "rms_rel_residual", cal.link.rms_rel, -1, "1");
		row(t, "link", "r2", cal.link.r2, -1, "1");
	}
	cli_table_print(t, fmt, stdout);
	cli_table_free(t);
	rc = cli_finish_stdout(CMD);
done:
	study_calib_data_free(d);
	store_close(db);
	free(ids);
	return rc;
}
