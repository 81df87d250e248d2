/* reports/report.h: figures, an index page, comparisons and timelines drawn
 * from the results store.
 *
 * The only part of moekit that runs gnuplot.  report_write reads the chosen
 * runs through store/store.h, writes one whitespace-separated data file
 * (".dat", a commented header naming columns and units) and one gnuplot
 * script (".gp", kept so a user can restyle and re-render it) per figure
 * into an output folder, runs gnuplot on each script, and writes
 * summary.md and, last, index.html.
 *
 *     struct report_options o = {.out_dir = "out", .formats = REPORT_PNG};
 *     struct report_result r;
 *     if (report_write(db, NULL, 0, &o, &r) != MOE_OK)
 *             fprintf(stderr, "%s\n", moe_errmsg());
 *     else if (r.gnuplot_missing)
 *             ... tell the user to run gnuplot on the scripts later ...
 *     report_result_release(&r);
 *
 * Numbers in the data files are the store's values as SQLite returns them
 * as text (15 significant digits), written with "%.15g", so a data file
 * holds the store's numbers and nothing rounded further.  Times are in
 * seconds and sizes in bytes in the data files; scripts scale for display
 * (ms, GB) and say the unit on the axis.
 *
 * Templates (gnuplot skeletons, the HTML page and its style sheet) are
 * files under reports/templates/, found with moe_data_path().
 *
 * Not thread safe: the last-error message is per thread, but a report
 * writes into one folder; use one report per folder at a time.
 */
#ifndef MOEKIT_REPORTS_REPORT_H
#define MOEKIT_REPORTS_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include "moe/error.h"
#include "store/store.h"

/* Output formats (bits of report_options.formats). */
#define REPORT_PNG 1u /* gnuplot pngcairo */
#define REPORT_SVG 2u /* gnuplot svg */
#define REPORT_PDF 4u /* gnuplot pdfcairo */

struct report_options {
	const char *out_dir; /* created when missing (its parent must exist) */
	unsigned formats;    /* REPORT_* bits; 0 means REPORT_PNG */
	/* gnuplot to run: NULL searches $PATH for "gnuplot"; a path is used as
	 * given.  Not found: the data and scripts are still written and
	 * report_result.gnuplot_missing is set. */
	const char *gnuplot;
	/* Time window of the timeline and link figures, seconds since the
	 * start of the run; window_s[1] <= window_s[0] means the whole run.
	 * The data files hold every row either way. */
	double window_s[2];
};

/* What report_write did.  Strings owned by the result: release with
 * report_result_release. */
struct report_result {
	size_t nfigures;     /* figures whose data and script were written */
	char **figures;      /* their base names ("breakdown"), nfigures */
	size_t nskipped;
	char **skipped;      /* "routing comparison: ..." one line per figure skipped, why */
	size_t nnotes;
	char **notes;        /* warnings that do not stop the report */
	int gnuplot_missing; /* 1 when gnuplot was not found: nothing rendered,
			      * index.html not written */
	char gnuplot_path[4096]; /* the gnuplot that rendered, when found */
};

/* Parses "START:END" (seconds, END > START >= 0) into window[2].
 * MOE_EINVAL naming what is wrong. */
enum moe_status report_window_parse(const char *arg, double window[2]);

/* Parses a comma-separated list of formats ("png,svg,pdf") into REPORT_*
 * bits.  MOE_EINVAL naming the unknown format. */
enum moe_status report_formats_parse(const char *list, unsigned *formats);

/* Writes the report of runs ids[0..n) (all done runs when n is 0) into
 * o->out_dir.  Returns MOE_OK with *res filled (also when gnuplot is
 * missing: res->gnuplot_missing); MOE_ENOTFOUND for an unknown run id or a
 * store with no done runs; MOE_EINVAL for a run that is not done, or a run
 * id listed twice; MOE_EIO when a file cannot be written; MOE_ERUNTIME when
 * gnuplot fails on a script (the message names the script and gnuplot's
 * first error line; index.html is then not written).  Any index.html left
 * from an earlier report is removed first, so a failed report never leaves
 * an index page that looks complete.  *res must be released in every case. */
enum moe_status report_write(struct store *db, const int64_t *ids, size_t n,
			     const struct report_options *o, struct report_result *res);

void report_result_release(struct report_result *res);

/* Writes run id's timeline to path in the Chrome trace event format (a JSON
 * object with "traceEvents"), which Perfetto and chrome://tracing open: one
 * thread (tid) per track (each GPU, each link), complete events ("ph":"X")
 * with microsecond timestamps, and process/thread name metadata.  A run
 * with no spans (a profile run) gets its stages as consecutive spans on one
 * track, each its median time long (a stage named "total", the profiler's
 * whole forward, is left out).  Link utilization samples become
 * counter events ("ph":"C").  Written to a temporary name and renamed.
 * Returns MOE_OK; MOE_ENOTFOUND for an unknown run; MOE_EINVAL when the run
 * is not done or has neither spans nor stages; MOE_EIO on a write error.
 * *nevents (may be NULL) receives the number of "X" events. */
enum moe_status report_timeline_write(struct store *db, int64_t id, const char *path,
				      size_t *nevents);

/* ---- comparison of runs (moekit compare) ---- */

/* One compared quantity: a parameter from the runs' inputs (dotted path
 * into the JSON, "plan.ep"), a metric, or a sum over the run's layers. */
struct report_cmp_row {
	char *kind;      /* "param", "metric" or "layers" */
	char *name;      /* "plan.ep", "step_time_s", "sum dispatch_s" */
	char *unit;      /* "s", "B", "" */
	char **text;     /* nruns values as text (NULL when the run lacks it) */
	double *value;   /* nruns values; NAN when missing or not a number */
	int numeric;     /* 1 when every present value is a number */
};

struct report_cmp {
	size_t nruns;
	int64_t *ids;
	char **labels;          /* "run 3" or "run 3 (label)" */
	size_t nrows;
	struct report_cmp_row *rows;
};

/* Builds the comparison of runs ids[0..n), n >= 2: the input parameters
 * whose values differ between the runs, then every metric and layer sum
 * (dispatch, compute, combine, other, exposed, total time; bytes; tokens;
 * dropped; the largest imbalance) any run has.  Differences are taken
 * against the first run by the caller (report_cmp_delta).  Returns MOE_OK;
 * MOE_ENOTFOUND for an unknown run; MOE_EINVAL for a run that is not done,
 * a run listed twice, or runs of different models (the message names both).
 * Release with report_cmp_release. */
enum moe_status report_cmp_build(struct store *db, const int64_t *ids, size_t n,
				 struct report_cmp *out);
void report_cmp_release(struct report_cmp *c);

/* Absolute (v - v0) and relative ((v - v0) / |v0|) difference of run i of
 * row r against run 0.  Returns 1 when both are defined (the relative one
 * only when v0 != 0: *rel is NAN otherwise), 0 when either value is
 * missing or not a number. */
int report_cmp_delta(const struct report_cmp_row *r, size_t i, double *abs_d, double *rel_d);

/* ---- helpers exported for tests ---- */

/* Escapes s for a double-quoted gnuplot string (backslash and double quote
 * escaped, control characters turned into spaces) into buf of size n
 * (truncated, always terminated).  Returns buf.  Scripts set
 * "noenhanced", so underscores, ^ and braces stay literal. */
char *report_gp_escape(const char *s, char *buf, size_t n);

#endif
