/* cli/cli.h: what the subcommands of the moekit command share.
 *
 * The command is a table of subcommands (main.c); each lives in its own
 * file cli/cmd_NAME.c and has the signature of cli_cmd_fn.  A subcommand
 * returns the process exit status: 0 success, 1 a runtime failure, 2 a
 * usage or configuration error.  Errors are one line on stderr naming the
 * file, field or option and what was expected.
 */
#ifndef MOEKIT_CLI_CLI_H
#define MOEKIT_CLI_CLI_H

#include <stdint.h>
#include <stdio.h>
#include "moe/error.h"
#include "moe/progress.h"

typedef int (*cli_cmd_fn)(int argc, char **argv);

struct cli_cmd {
	const char *name;
	cli_cmd_fn run;
	const char *summary;
};

enum cli_format { CLI_FORMAT_TABLE, CLI_FORMAT_CSV, CLI_FORMAT_JSON };

/* Parses --format's argument; on failure prints the error and returns 0. */
int cli_parse_format(const char *cmd, const char *arg, enum cli_format *out);

/* Prints "moekit CMD: MESSAGE" and "Try 'moekit CMD --help'." on stderr and
 * returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the library's last error as "moekit CMD: MESSAGE" and returns the
 * exit code for st. */
int cli_fail(const char *cmd, enum moe_status st);

/* Flushes stdout and returns 0, or prints an error and returns 1 when
 * writing failed (a full disk, a closed pipe). */
int cli_finish_stdout(const char *cmd);

/* getopt_long's error for the last option, turned into our exit code. */
int cli_bad_option(const char *cmd, int argc, char **argv);

/* Parses a non-negative integer option argument; on failure prints the
 * error naming the option and returns 0. */
int cli_parse_long(const char *cmd, const char *opt, const char *arg, long min, long max,
		   long *out);
int cli_parse_double(const char *cmd, const char *opt, const char *arg, double min, double max,
		     double *out);

/* Parses a --runs list ("1,3,5-8": positive ids, ranges inclusive) into
 * *ids (malloc'd, the caller frees) and *n.  On failure prints the error
 * naming cmd and returns 0. */
int cli_parse_runs(const char *cmd, const char *arg, int64_t **ids, size_t *n);

/* A progress bar on stderr: enabled only when stderr is a terminal and
 * quiet is 0; redraws at most 5 times a second. */
struct cli_bar {
	int enabled;
	double last_draw_s;
	double start_s;
};
/* Monotonic wall-clock time, seconds (for timings and the progress bar). */
double cli_now_s(void);

void cli_bar_init(struct cli_bar *bar, int quiet);
void cli_bar_done(struct cli_bar *bar);
/* A moe_progress_fn; user is a struct cli_bar. */
void cli_bar_update(void *user, unsigned long long done, unsigned long long total,
		    const char *what);

/* Tabular output in three formats.  Table: a '#' preamble, a header with
 * units, aligned rows.  CSV: a header row then rows (RFC 4180 quoting).
 * JSON: one object {"<key>": [ {col: value, ...}, ... ]} with numeric
 * columns as numbers. */
struct cli_table;
enum cli_col_type { CLI_COL_STR, CLI_COL_NUM };
struct cli_table *cli_table_new(const char *json_key);
void cli_table_free(struct cli_table *t);
void cli_table_col(struct cli_table *t, const char *name, enum cli_col_type type);
/* Adds a row: one string per column (copied).  NULL prints as empty/null. */
void cli_table_row(struct cli_table *t, const char *const *cells);
/* A preamble line for the table format ("# model: mixtral-8x7b"); copied. */
void cli_table_note(struct cli_table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_table_print(const struct cli_table *t, enum cli_format fmt, FILE *out);

/* The subcommands. */
int cmd_help(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_presets(int argc, char **argv);
int cmd_db(int argc, char **argv);
/* Commands of parts built later or optionally (weak in main.c). */
int cmd_trace(int argc, char **argv);
int cmd_sim(int argc, char **argv);
int cmd_net(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_export_timeline(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_validate(int argc, char **argv);

/* The table itself, for `moekit help`. */
extern const struct cli_cmd cli_commands[];

#endif
