/* cli/cmd_trace_rescale.c: `moekit trace rescale`: a trace recorded on R
 * source ranks turned into one for N ranks (traces/rescale.h). */
#include "config.h"
#include "cli/cli.h"
#include "traces/rescale.h"

#include <getopt.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_rng.h>
#include <stdio.h>
#include <stdlib.h>

int cmd_trace_rescale(int argc, char **argv);

#define CMD "trace rescale"

static const char usage_text[] =
	"Usage: moekit trace rescale IN --ranks N -o OUT [--seed S] [--zstd LEVEL]\n\n"
	"Turn a trace recorded on R source ranks into one for N ranks, at the same\n"
	"tokens per rank (weak scaling: record on 8 GPUs, plan for 512).  New rank r\n"
	"draws its tokens with replacement from recorded rank r mod R (N >= R), or\n"
	"from the recorded ranks it merges, r, r+N, r+2N, ... (N < R).  A drawn token\n"
	"keeps its whole path: the same recorded token is used at every layer of the\n"
	"step, so the correlation between layers is kept exactly, and each layer's\n"
	"expert loads in expectation.  A count-level trace is resampled per rank from\n"
	"a multinomial over the experts.  Assumed: a rank's token i is the same token\n"
	"at every layer of a step (a trace where layers disagree is refused), and\n"
	"new ranks see data like the recorded ones.  See README.md for details.\n\n"
	"Options:\n"
	"  --ranks N          source ranks of the output (required)\n"
	"  -o, --output FILE  the rescaled trace (FILE.tmp.PID, then renamed)\n"
	"  --seed S           seed of the resampling (default 1; MT19937)\n"
	"  --zstd LEVEL       compress chunks with zstd (1..19)\n"
	"  -h, --help         show this help\n\n"
	"Example:\n"
	"  moekit trace rescale t8.moetrace --ranks 512 -o t512.moetrace\n";

int cmd_trace_rescale(int argc, char **argv)
{
	enum { O_RANKS = 256, O_SEED, O_ZSTD };
	static const struct option opts[] = {
		{"ranks", required_argument, NULL, O_RANKS},
		{"seed", required_argument, NULL, O_SEED},
		{"zstd", required_argument, NULL, O_ZSTD},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct trace_rescale_opts ro = {0, 0};
	const char *out = NULL;
	long ranks = 0, seed = 1, zstd = 0;
	uint64_t tin = 0, tout = 0;
	gsl_rng *rng;
	enum moe_status st;
	int o;

	optind = 0; /* glibc and musl: restart getopt (the dispatcher may have used it) */
	while ((o = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (o) {
		case O_RANKS:
			if (!cli_parse_long(CMD, "--ranks", optarg, 1, TRACE_MAX_RANKS, &ranks))
				return 2;
			break;
		case O_SEED:
			if (!cli_parse_long(CMD, "--seed", optarg, 0, 4294967295L, &seed))
				return 2;
			break;
		case O_ZSTD:
			if (!cli_parse_long(CMD, "--zstd", optarg, 1, 19, &zstd))
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
	if (!ranks)
		return cli_usage(CMD, "missing --ranks N");
	if (!out)
		return cli_usage(CMD, "missing -o OUT");
	gsl_set_error_handler_off();
	rng = gsl_rng_alloc(gsl_rng_mt19937);
	if (!rng) {
		fprintf(stderr, "moekit " CMD ": out of memory\n");
		return 1;
	}
	gsl_rng_set(rng, (unsigned long)seed);
	ro.ranks = (uint32_t)ranks;
	ro.zstd_level = (int)zstd;
	st = trace_rescale(argv[optind], out, &ro, rng, &tin, &tout);
	gsl_rng_free(rng);
	if (st != MOE_OK)
		return cli_fail(CMD, st);
	printf("# moekit trace rescale %s --ranks %ld --seed %ld -o %s\n", argv[optind], ranks, seed,
	       out);
	printf("read %llu, wrote %llu (tokens; slots for a count-level trace)\n",
	       (unsigned long long)tin, (unsigned long long)tout);
	return cli_finish_stdout(CMD);
}
