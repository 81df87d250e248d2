/* store/store.h: the results store, one SQLite file per study.
 *
 * The only code in moekit that speaks SQL.  A run (a simulation or a
 * profile) is a row in `runs` with kind, inputs (JSON), versions and a
 * status; its results are rows in child tables (layers, gpus, links,
 * link_samples, experts, stages, metrics, spans).  docs/schema.md documents
 * every column with its unit.
 *
 * Life of a run:
 *
 *     struct store *db;
 *     int64_t id;
 *     store_open("study.db", STORE_WRITE, &db);         // creates, migrates
 *     store_run_begin(db, &(struct store_run_meta){.kind = "sim", ...}, &id);
 *                                                       // committed: 'running'
 *     store_layer_add(db, id, &row); ...                // inside a transaction
 *     store_run_done(db, id, summary_json);             // rows + 'done' commit
 *                                                       // together
 *     store_close(db);
 *
 * store_run_begin commits the 'running' row and opens a transaction for the
 * run's rows; store_run_done sets 'done' and commits that transaction, so a
 * run is never seen as done with half its rows, and a process that dies in
 * between leaves the run 'running' with none of its rows.  store_run_fail
 * rolls the rows back and marks the run 'failed' with its message.
 *
 * Schema version: PRAGMA user_version (STORE_SCHEMA_VERSION).  An empty file
 * is migrated; a newer version is refused with MOE_EVERSION and the file is
 * not modified.  The database runs in WAL mode with a 5 s busy timeout.
 * A struct store is used by one thread at a time.
 */
#ifndef MOEKIT_STORE_STORE_H
#define MOEKIT_STORE_STORE_H

#include <stdint.h>
#include "moe/error.h"

#define STORE_SCHEMA_VERSION 1

struct store;

enum store_mode {
	STORE_READ,  /* the file must exist; nothing is written */
	STORE_WRITE, /* created when missing, migrated to the current schema */
};

/* Opens the store at path.  Returns MOE_OK and the handle in *out (free
 * with store_close); MOE_ENOTFOUND when mode is STORE_READ and the file
 * does not exist; MOE_EIO when it cannot be opened or created; MOE_EVERSION
 * when its schema is newer than this build (file untouched); MOE_ESTORE
 * when it is not an SQLite database or a migration failed (rolled back). */
enum moe_status store_open(const char *path, enum store_mode mode, struct store **out);

/* Closes the store; a run still open is left 'running'.  NULL is a no-op. */
void store_close(struct store *s);

/* The SQLite library's version string. */
const char *store_sqlite_version(void);

/* What identifies a run.  All strings borrowed for the call; inputs_json
 * must be a JSON object (the options and files that define the run). */
struct store_run_meta {
	const char *kind;        /* "sim" or "profile" */
	const char *label;       /* free text, may be NULL */
	const char *model;       /* model preset or file name, may be NULL */
	const char *cluster;     /* cluster preset or file name, may be NULL */
	const char *inputs_json; /* NULL means "{}" */
	uint64_t seed;
};

/* Inserts a run as 'running' and commits it, then opens the transaction
 * that will hold its rows.  Returns MOE_OK and the new id in *id;
 * MOE_EINVAL for a bad kind or inputs that are not a JSON object;
 * MOE_ESTORE on an SQLite error.  One run at a time per handle. */
enum moe_status store_run_begin(struct store *s, const struct store_run_meta *meta, int64_t *id);

/* Marks run id done with its summary (a JSON object, or NULL) and commits
 * it with all rows added since store_run_begin.  MOE_ESTORE on failure,
 * in which case the run stays 'running' and its rows are rolled back. */
enum moe_status store_run_done(struct store *s, int64_t id, const char *summary_json);

/* Rolls back the run's rows and marks it 'failed' with message. */
enum moe_status store_run_fail(struct store *s, int64_t id, const char *message);

/* store_run_fail for a run that failed with st: the message is the
 * calling thread's last error, which stays its last error (a failure to
 * record it does not replace it).  Returns st. */
enum moe_status store_run_abort(struct store *s, int64_t id, enum moe_status st);

/* ---- rows of a run (between store_run_begin and store_run_done) ----
 * Times in seconds, sizes in bytes, rates in bytes per second. */
struct store_layer_row {
	int layer;
	const char *phase;   /* "forward", "backward", "decode" ... */
	double dispatch_s, compute_s, combine_s, other_s, exposed_s, total_s;
	double dispatch_bytes, combine_bytes, network_bytes;
	double tokens, dropped, imbalance;
};
struct store_gpu_row {
	int gpu, node;
	double busy_s, idle_s, compute_s, tokens, bytes_sent, bytes_received;
};
struct store_link_row {
	int link;
	const char *name, *kind; /* kind: nvlink, pcie, nic, switch */
	double bw_Bps, bytes, busy_s, utilization;
};
struct store_expert_row {
	int layer, expert, gpu;
	double tokens, dropped;
};
struct store_stage_row {
	const char *stage;   /* router, routing, permute, experts, ... */
	int reps;
	double median_s, p10_s, p90_s, min_s, gflops, tokens;
};
struct store_span_row {
	const char *track;   /* "gpu 3", "link nic0.up" */
	const char *name, *cat;
	double start_s, dur_s;
};

/* Each returns MOE_OK or MOE_ESTORE (message from SQLite); MOE_EINVAL when
 * no run is open under id. */
enum moe_status store_layer_add(struct store *s, int64_t id, const struct store_layer_row *r);
enum moe_status store_gpu_add(struct store *s, int64_t id, const struct store_gpu_row *r);
enum moe_status store_link_add(struct store *s, int64_t id, const struct store_link_row *r);
enum moe_status store_link_sample_add(struct store *s, int64_t id, int link, double t_s,
				      double utilization);
enum moe_status store_expert_add(struct store *s, int64_t id, const struct store_expert_row *r);
enum moe_status store_stage_add(struct store *s, int64_t id, const struct store_stage_row *r);
enum moe_status store_span_add(struct store *s, int64_t id, const struct store_span_row *r);
/* A named scalar result with its unit ("step_time_s", 0.0123, "s"). */
enum moe_status store_metric_add(struct store *s, int64_t id, const char *name, double value,
				 const char *unit);

/* ---- reading ---- */

/* One row of a query result: n columns, names and text values (NULL for
 * SQL NULL); is_num[i] is 1 for integer and real columns.  All borrowed
 * for the duration of the callback.  Return non-zero to stop. */
typedef int (*store_row_fn)(void *user, int n, const char *const *names,
			    const char *const *values, const int *is_num);

/* Calls fn for every run, oldest first: id, kind, status, label, model,
 * cluster, seed, started_at, finished_at. */
enum moe_status store_runs_each(struct store *s, store_row_fn fn, void *user);

/* Calls fn once with every column of run id (inputs and summary as JSON
 * text).  MOE_ENOTFOUND when there is no such run. */
enum moe_status store_run_each(struct store *s, int64_t id, store_row_fn fn, void *user);

/* The child tables a run may have, in the order `db export` writes them. */
extern const char *const store_tables[];

/* Calls fn for every row of table (one of store_tables) belonging to run
 * id, without the run_id column.  MOE_EINVAL for an unknown table. */
enum moe_status store_rows_each(struct store *s, int64_t id, const char *table,
				store_row_fn fn, void *user);

/* ---- combining stores (sweeps) ---- */

/* Copies every 'done' run of the store file src_path, with all its rows,
 * into s under new ids, in the order of their ids; when label is not NULL it
 * replaces the copied runs' labels.  All in one transaction: either every
 * run is copied or none.  The source must have this build's schema version.
 * Returns MOE_OK with the number of runs copied in *copied (may be NULL);
 * MOE_ENOTFOUND when src_path does not exist; MOE_EVERSION for another
 * schema version; MOE_EINVAL when a run is open on s; MOE_ESTORE. */
enum moe_status store_import(struct store *s, const char *src_path, const char *label,
			     int *copied);

/* Counts the 'done' runs whose label is label into *n.  MOE_OK or
 * MOE_ESTORE. */
enum moe_status store_count_done(struct store *s, const char *label, int *n);

#endif
