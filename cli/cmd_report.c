/* cli/cmd_report.c: `moekit report`: figures, data files, gnuplot scripts,
 * summary.md and index.html for runs of a results store (reports/). */
#include "config.h"
#include "cli/cli.h"
#include "reports/report.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_report(int argc, char **argv);

static const char usage_text[] =
	"Usage: moekit report [--db FILE] [--runs ID,...] --out DIR [--formats png,svg,pdf]\n"
	"                     [--window T0:T1]\n\n"
	"Draw the runs of a results store: for each figure the runs have data for,\n"
	"write a data file (DIR/NAME.dat: whitespace separated, a commented header\n"
	"naming every column and its unit) and a gnuplot script (DIR/NAME.gp, kept so\n"
	"you can restyle it), run gnuplot on it, then write DIR/summary.md and, last,\n"
	"DIR/index.html (the figures, a summary table and every run's parameters).\n\n"
	"Figures (each only when the runs hold its data; the others are listed as\n"
	"skipped, with the reason, on stderr and in index.html):\n"
	"  breakdown           per-layer time: dispatch, expert compute, combine, other\n"
	"                      compute, exposed wait; stacked bars, one group per run\n"
	"  timeline_runN       Gantt chart of run N's spans per GPU (and link), idle gaps\n"
	"  links_runN          link utilization over time, links grouped by kind\n"
	"  experts_runN        expert load heat map (layer x expert)\n"
	"  gpus                tokens per GPU, one bar per GPU and run\n"
	"  routing             sim runs of one model that differ only in top-k or policy:\n"
	"                      time, bytes moved, imbalance, dropped tokens\n"
	"  scaling             all-to-all and step time against expert-parallel size or\n"
	"                      nodes (sim runs of one model)\n"
	"  simmeas             simulated against measured: profile runs beside the sim\n"
	"                      run of the same model and plan, y = x, each point's error\n"
	"  stages, gflops      profiler stage times; GFLOP/s against tokens per expert\n\n"
	"Options:\n"
	"  --db FILE          results store (default: moekit.db)\n"
	"  --runs LIST        run ids, comma separated, ranges allowed (1,3,5-8);\n"
	"                     default: every run that is done\n"
	"  -o, --out DIR      output folder (created if missing; files are replaced)\n"
	"  --formats LIST     png, svg, pdf, comma separated (default: png)\n"
	"  --window T0:T1     draw the timelines and link heat maps from T0 to T1\n"
	"                     seconds after the start of each run (one step or one\n"
	"                     layer of a long run); default: the whole run\n"
	"  -q, --quiet        do not list the figures on stdout\n"
	"  -h, --help         show this help\n\n"
	"gnuplot is looked up on PATH.  Without it the data files and scripts are\n"
	"still written; render them later with `gnuplot DIR/NAME.gp` (a script finds\n"
	"its data from any directory); the command then exits 1 and writes no\n"
	"index.html.  Exit status: 0 success, 1 a runtime failure (gnuplot missing\n"
	"or failing, an unknown run, an empty store, a write error), 2 a usage error\n"
	"(including a run that is not done).\n";

int cmd_report(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"runs", required_argument, NULL, 'r'},
		{"out", required_argument, NULL, 'o'},
		{"formats", required_argument, NULL, 'f'},
		{"window", required_argument, NULL, 'w'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = "moekit.db", *out = NULL;
	struct report_options ro = {0};
	struct report_result res;
	int64_t *ids = NULL;
	size_t nids = 0;
	int o, quiet = 0, rc = 0;
	struct store *db;
	enum moe_status st;

	ro.formats = REPORT_PNG;
	while ((o = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
		switch (o) {
		case 'd': path = optarg; break;
		case 'r':
			free(ids);
			if (!cli_parse_runs("report", optarg, &ids, &nids))
				return 2;
			break;
		case 'o': out = optarg; break;
		case 'f':
			if (report_formats_parse(optarg, &ro.formats) != MOE_OK) {
				free(ids);
				return cli_usage("report", "%s", moe_errmsg());
			}
			break;
		case 'w':
			if (report_window_parse(optarg, ro.window_s) != MOE_OK) {
				free(ids);
				return cli_usage("report", "%s", moe_errmsg());
			}
			break;
		case 'q': quiet = 1; break;
		case 'h':
			free(ids);
			fputs(usage_text, stdout);
			return cli_finish_stdout("report");
		default:
			free(ids);
			return cli_bad_option("report", argc, argv);
		}
	}
	if (optind < argc) {
		free(ids);
		return cli_usage("report", "unexpected argument '%s'", argv[optind]);
	}
	if (out == NULL) {
		free(ids);
		return cli_usage("report", "--out DIR is required");
	}
	ro.out_dir = out;
	if ((st = store_open(path, STORE_READ, &db)) != MOE_OK) {
		free(ids);
		return cli_fail("report", st);
	}
	st = report_write(db, ids, nids, &ro, &res);
	store_close(db);
	free(ids);
	for (size_t i = 0; i < res.nskipped; i++)
		fprintf(stderr, "moekit report: skipped %s\n", res.skipped[i]);
	for (size_t i = 0; i < res.nnotes; i++)
		fprintf(stderr, "moekit report: note: %s\n", res.notes[i]);
	if (st != MOE_OK) {
		rc = cli_fail("report", st);
		if (res.nfigures > 0)
			fprintf(stderr, "moekit report: the data files and scripts in %s are kept; "
				"index.html was not written\n", out);
		report_result_release(&res);
		return rc;
	}
	if (res.gnuplot_missing) {
		fprintf(stderr, "moekit report: gnuplot not found on PATH: wrote %zu data files and "
			"scripts to %s but no figures and no index.html; install gnuplot and render "
			"them with: gnuplot %s/NAME.gp (one per figure)\n", res.nfigures, out, out);
		report_result_release(&res);
		return 1;
	}
	if (!quiet) {
		const char *ext = ro.formats & REPORT_PNG ? "png" : ro.formats & REPORT_SVG ? "svg"
											 : "pdf";
		for (size_t i = 0; i < res.nfigures; i++)
			printf("%s/%s.%s\n", out, res.figures[i], ext);
		printf("%s/index.html\n", out);
	}
	report_result_release(&res);
	return cli_finish_stdout("report");
}
