/* cli/main.c: the moekit command.  A table of subcommands, each in its own
 * file; this file only finds the subcommand and hands it argv. */
#include "config.h"
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

/* Commands of parts that are built later (or only with optional libraries)
 * are weak: a part adds its cli/cmd_NAME.c to moekit_SOURCES in its own
 * local.mk, and a command whose function is absent is left out of the
 * table.  So no part edits this file to add a command. */
#define WEAK __attribute__((weak))
int cmd_trace(int argc, char **argv) WEAK;
int cmd_sim(int argc, char **argv) WEAK;
int cmd_net(int argc, char **argv) WEAK;
int cmd_profile(int argc, char **argv) WEAK;
int cmd_report(int argc, char **argv) WEAK;
int cmd_compare(int argc, char **argv) WEAK;
int cmd_export_timeline(int argc, char **argv) WEAK;
int cmd_sweep(int argc, char **argv) WEAK;
int cmd_calibrate(int argc, char **argv) WEAK;
int cmd_validate(int argc, char **argv) WEAK;

const struct cli_cmd cli_commands[] = {
	{"help", cmd_help, "show the commands, or one command's help"},
	{"version", cmd_version, "print the version and the libraries built in"},
	{"presets", cmd_presets, "list and show model and cluster presets"},
	{"trace", cmd_trace, "import, generate, re-route and describe router traces"},
	{"sim", cmd_sim, "simulate MoE layers and steps on a modeled cluster"},
	{"net", cmd_net, "simulate one collective from a traffic matrix"},
	{"profile", cmd_profile, "measure the MoE forward pass and all-to-all on this machine"},
	{"report", cmd_report, "draw figures and an index page from a results store"},
	{"compare", cmd_compare, "compare runs side by side"},
	{"export-timeline", cmd_export_timeline, "write a run's timeline for Perfetto"},
	{"sweep", cmd_sweep, "run a study over many options"},
	{"calibrate", cmd_calibrate, "fit a cluster file to profile runs"},
	{"validate", cmd_validate, "hold simulations against measurements"},
	{"db", cmd_db, "list, show and export runs in a results store"},
	{NULL, NULL, NULL},
};

static const struct cli_cmd *find_cmd(const char *name)
{
	for (const struct cli_cmd *c = cli_commands; c->name; c++)
		if (c->run != NULL && strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static void usage(FILE *out)
{
	fputs("Usage: moekit COMMAND [OPTIONS]\n"
	      "       moekit COMMAND --help\n"
	      "       moekit --version\n\n"
	      "Predict and measure what a Mixture-of-Experts layer costs on a GPU cluster.\n\n"
	      "Commands:\n", out);
	for (const struct cli_cmd *c = cli_commands; c->name; c++)
		if (c->run != NULL)
			fprintf(out, "  %-16s %s\n", c->name, c->summary);
	fputs("\nExit status: 0 success, 1 a runtime failure, 2 a usage or configuration error.\n"
	      "See moekit(1) and README.md for the data formats and the results store.\n", out);
}

int cmd_help(int argc, char **argv)
{
	const struct cli_cmd *c;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return cli_finish_stdout("help");
	}
	c = find_cmd(argv[1]);
	if (c == NULL)
		return cli_usage("help", "unknown command '%s'", argv[1]);
	{
		char *sub[] = {argv[1], "--help", NULL};
		return c->run(2, sub);
	}
}

int main(int argc, char **argv)
{
	const struct cli_cmd *c;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return cli_finish_stdout("help");
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
		return cmd_version(1, argv + 1);
	c = find_cmd(argv[1]);
	if (c == NULL) {
		fprintf(stderr, "moekit: unknown command '%s'\nTry 'moekit help'.\n", argv[1]);
		return 2;
	}
	/* Each subcommand parses its own options from a fresh getopt state. */
	optind = 1;
	return c->run(argc - 1, argv + 1);
}
