/* reports/report_int.h: what the report modules share: a run read from the
 * store into memory (data.c), file helpers and templates (util.c), and the
 * figure writers (figures.c).  Private to reports/. */
#ifndef MOEKIT_REPORTS_REPORT_INT_H
#define MOEKIT_REPORTS_REPORT_INT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "moe/error.h"
#include "store/store.h"

/* Layer columns, in store order (docs/schema.md). */
enum { RL_DISPATCH, RL_COMPUTE, RL_COMBINE, RL_OTHER, RL_EXPOSED, RL_TOTAL, RL_DBYTES,
       RL_CBYTES, RL_NBYTES, RL_TOKENS, RL_DROPPED, RL_IMBALANCE, RL_N };
extern const char *const report_layer_cols[RL_N];

struct rlayer { int layer; char *phase; double v[RL_N]; };
struct rgpu { int gpu, node; double busy_s, idle_s, compute_s, tokens, sent, received; };
struct rlink { int link; char *name, *kind; double bw_Bps, bytes, busy_s, utilization; };
struct rsample { int link; double t_s, utilization; };
struct rexpert { int layer, expert, gpu; double tokens, dropped; };
struct rstage { char *stage; int reps; double median_s, p10_s, p90_s, min_s, gflops, tokens;
		int has_gflops, has_tokens; };
struct rmetric { char *name, *unit; double value; };
struct rspan { char *track, *name, *cat; double start_s, dur_s; };

/* A run and all its rows, read once. */
struct rrun {
	int64_t id;
	char *kind, *status, *label, *model, *cluster, *inputs_text, *started_at;
	char *seed;
	json_t *inputs;                    /* parsed inputs (an object), owned */
	struct rlayer *layers; size_t nlayers;
	struct rgpu *gpus; size_t ngpus;
	struct rlink *links; size_t nlinks;
	struct rsample *samples; size_t nsamples;
	struct rexpert *experts; size_t nexperts;
	struct rstage *stages; size_t nstages;
	struct rmetric *metrics; size_t nmetrics;
	struct rspan *spans; size_t nspans;
};

/* Reads run id with all its rows.  MOE_ENOTFOUND (no such run), MOE_ESTORE,
 * MOE_ENOMEM.  Release with rrun_release (also after a failure). */
enum moe_status rrun_load(struct store *db, int64_t id, struct rrun *r);
void rrun_release(struct rrun *r);

/* Reads the runs ids[0..n), or every done run when n is 0, into *runs
 * (*nruns of them).  Errors as report_write documents. */
enum moe_status rrun_load_set(struct store *db, const int64_t *ids, size_t n,
			      struct rrun **runs, size_t *nruns);
void rrun_free_set(struct rrun *runs, size_t n);

/* The metric named name, or NULL. */
const struct rmetric *rrun_metric(const struct rrun *r, const char *name);
/* Sum of layer column c over the run's layers, leaving out missing values
 * as SQL's sum() does; NAN when no layer has a value. */
double rrun_layer_sum(const struct rrun *r, int c);
/* "run 3" or "run 3: label", into buf. */
const char *rrun_title(const struct rrun *r, char *buf, size_t n);

/* ---- util.c ---- */

/* A growable string. */
struct sbuf { char *s; size_t len, cap; int oom; };
void sbuf_add(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_addn(struct sbuf *b, const char *s, size_t n);
void sbuf_release(struct sbuf *b);

/* Writes len bytes to dir/name through dir/.name.tmp and rename. */
enum moe_status report_file_put(const char *dir, const char *name, const char *data, size_t len);

/* Reads reports/templates/name (found with moe_data_path) into *out
 * (malloc'd, NUL-terminated).  MOE_ENOTFOUND, MOE_EIO. */
enum moe_status report_template_load(const char *name, char **out);

/* Replaces every @KEY@ in tmpl with the value of the matching key
 * (keys[i], vals[i]), appending to b.  An unknown @KEY@ is kept as is. */
void report_template_fill(struct sbuf *b, const char *tmpl, const char *const *keys,
			  const char *const *vals, size_t n);

/* Escapes s for HTML text into b. */
void report_html_escape(struct sbuf *b, const char *s);

/* A string for a data-file column: quoted, with inner double quotes made
 * single and control characters spaces, into buf. */
const char *report_dat_str(const char *s, char *buf, size_t n);

/* Finds gnuplot: the given path, or "gnuplot" on $PATH.  Returns 1 and
 * the path in buf when found. */
int report_gnuplot_find(const char *given, char *buf, size_t n);

/* Runs gnuplot on script (a path) with stderr appended to log (a path).
 * MOE_ERUNTIME with gnuplot's first error line when it fails. */
enum moe_status report_gnuplot_run(const char *gnuplot, const char *script, const char *log);

/* ---- figures.c ---- */

/* A figure's outcome, filled by each writer. */
struct fig_ctx {
	const char *dir;
	unsigned formats;
	double window_s[2];        /* as report_options */
	struct rrun *runs; size_t nruns;
	/* Written figures and skipped figures (one line each), appended. */
	char **figs; size_t nfigs;
	char **titles; size_t ntitles; /* one per figure: what it shows */
	char **skipped; size_t nskipped;
	char **notes; size_t nnotes;
};

/* Writes every figure the runs have data for; appends to the ctx lists.
 * MOE_EIO, MOE_ENOMEM, MOE_ENOTFOUND (a template). */
enum moe_status report_figures_write(struct fig_ctx *c);

/* qsort comparison of track names (const char * elements): "gpu N" by N
 * first, then the rest by name. */
int report_track_cmp(const void *a, const void *b);

/* Flattens a JSON object into dotted keys: calls fn(user, key, text) for
 * every leaf (arrays as their compact JSON). */
typedef void (*report_leaf_fn)(void *user, const char *key, const char *text, json_t *v);
void report_json_leaves(json_t *obj, report_leaf_fn fn, void *user);

#endif
