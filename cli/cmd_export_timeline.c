/* cli/cmd_export_timeline.c: `moekit export-timeline`: a run's timeline in
 * the Chrome trace event format for Perfetto and chrome://tracing. */
#include "config.h"
#include "cli/cli.h"
#include "reports/report.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_export_timeline(int argc, char **argv);

static const char usage_text[] =
	"Usage: moekit export-timeline RUN -o FILE.json [--db FILE]\n\n"
	"Write run RUN's timeline as a Chrome trace event file, which Perfetto\n"
	"(https://ui.perfetto.dev) and chrome://tracing open, so a simulation can be\n"
	"put beside a real PyTorch profiler trace.\n\n"
	"  - one process per run, one track (thread) per GPU and per link, named;\n"
	"  - every stored span as a complete event (\"ph\":\"X\"), times in\n"
	"    microseconds since the start of the run;\n"
	"  - a profile run without spans: its stages one after another on one\n"
	"    track, each as long as its median time;\n"
	"  - link utilization samples as counters (\"ph\":\"C\").\n\n"
	"Options:\n"
	"  -o, --output FILE  the JSON file to write (through a temporary name)\n"
	"  --db FILE          results store (default: moekit.db)\n"
	"  -h, --help         show this help\n\n"
	"Exit status: 0 success, 1 an unknown run or a write error, 2 a usage error\n"
	"(including a run that is not done or has nothing to draw).\n";

int cmd_export_timeline(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = "moekit.db", *outp = NULL;
	long long id;
	char *end;
	int o;
	size_t nev;
	struct store *db;
	enum moe_status st;

	while ((o = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (o) {
		case 'd': path = optarg; break;
		case 'o': outp = optarg; break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_stdout("export-timeline");
		default:
			return cli_bad_option("export-timeline", argc, argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage("export-timeline", "expected one RUN id");
	errno = 0;
	id = strtoll(argv[optind], &end, 10);
	if (end == argv[optind] || *end != '\0' || id < 1 || errno == ERANGE)
		return cli_usage("export-timeline", "RUN: '%s' is not a run id (a positive integer)",
				 argv[optind]);
	if (outp == NULL)
		return cli_usage("export-timeline", "-o FILE.json is required");
	if ((st = store_open(path, STORE_READ, &db)) != MOE_OK)
		return cli_fail("export-timeline", st);
	st = report_timeline_write(db, id, outp, &nev);
	store_close(db);
	if (st != MOE_OK)
		return cli_fail("export-timeline", st);
	fprintf(stderr, "moekit export-timeline: wrote %zu events of run %lld to %s\n", nev, id,
		outp);
	return 0;
}
