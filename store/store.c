/* store/store.c: the SQLite results store (see store.h and docs/schema.md). */
#include "config.h"
#include "store/store.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct store {
	sqlite3 *db;
	char *path;
	int64_t open_run; /* the run whose transaction is open, or 0 */
};

/* Schema version 1.  Every later version adds a migration below and never
 * edits this text, so an old file and a new one end up identical. */
static const char schema_v1[] =
	"CREATE TABLE runs ("
	" id INTEGER PRIMARY KEY,"
	" kind TEXT NOT NULL CHECK (kind IN ('sim','profile')),"
	" status TEXT NOT NULL CHECK (status IN ('running','done','failed')),"
	" label TEXT, model TEXT, cluster TEXT, seed INTEGER,"
	" inputs TEXT NOT NULL CHECK (json_valid(inputs)),"
	" summary TEXT CHECK (summary IS NULL OR json_valid(summary)),"
	" error TEXT, moekit_version TEXT NOT NULL, sqlite_version TEXT NOT NULL,"
	" started_at TEXT NOT NULL, finished_at TEXT);"
	"CREATE TABLE layers (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" layer INTEGER NOT NULL, phase TEXT NOT NULL,"
	" dispatch_s REAL, compute_s REAL, combine_s REAL, other_s REAL, exposed_s REAL,"
	" total_s REAL, dispatch_bytes REAL, combine_bytes REAL, network_bytes REAL,"
	" tokens REAL, dropped REAL, imbalance REAL, PRIMARY KEY (run_id, layer, phase));"
	"CREATE TABLE gpus (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" gpu INTEGER NOT NULL, node INTEGER, busy_s REAL, idle_s REAL, compute_s REAL,"
	" tokens REAL, bytes_sent REAL, bytes_received REAL, PRIMARY KEY (run_id, gpu));"
	"CREATE TABLE links (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" link INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT, bw_Bps REAL, bytes REAL,"
	" busy_s REAL, utilization REAL, PRIMARY KEY (run_id, link));"
	"CREATE TABLE link_samples (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" link INTEGER NOT NULL, t_s REAL NOT NULL, utilization REAL);"
	"CREATE INDEX link_samples_run ON link_samples(run_id, link, t_s);"
	"CREATE TABLE experts (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" layer INTEGER NOT NULL, expert INTEGER NOT NULL, gpu INTEGER, tokens REAL, dropped REAL,"
	" PRIMARY KEY (run_id, layer, expert, gpu));"
	"CREATE TABLE stages (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" stage TEXT NOT NULL, reps INTEGER, median_s REAL, p10_s REAL, p90_s REAL, min_s REAL,"
	" gflops REAL, tokens REAL, PRIMARY KEY (run_id, stage));"
	"CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" name TEXT NOT NULL, value REAL, unit TEXT, PRIMARY KEY (run_id, name));"
	"CREATE TABLE spans (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	" track TEXT NOT NULL, name TEXT NOT NULL, cat TEXT, start_s REAL NOT NULL,"
	" dur_s REAL NOT NULL);"
	"CREATE INDEX spans_run ON spans(run_id, track, start_s);"
	"CREATE VIEW done_runs AS SELECT * FROM runs WHERE status = 'done';"
	"CREATE VIEW run_totals AS SELECT r.id AS run_id, r.kind, r.label, r.model, r.cluster,"
	" (SELECT value FROM metrics m WHERE m.run_id = r.id AND m.name = 'step_time_s') AS step_time_s,"
	" (SELECT value FROM metrics m WHERE m.run_id = r.id AND m.name = 'tokens_per_s') AS tokens_per_s,"
	" (SELECT sum(dispatch_s) FROM layers l WHERE l.run_id = r.id) AS dispatch_s,"
	" (SELECT sum(compute_s) FROM layers l WHERE l.run_id = r.id) AS compute_s,"
	" (SELECT sum(combine_s) FROM layers l WHERE l.run_id = r.id) AS combine_s,"
	" (SELECT sum(network_bytes) FROM layers l WHERE l.run_id = r.id) AS network_bytes,"
	" (SELECT sum(dropped) FROM layers l WHERE l.run_id = r.id) AS dropped"
	" FROM runs r WHERE r.status = 'done';";

struct migration {
	int to_version;
	const char *sql;
};

static const struct migration migrations[] = {
	{1, schema_v1},
};

const char *const store_tables[] = {
	"layers", "gpus", "links", "link_samples", "experts", "stages", "metrics", "spans", NULL,
};

const char *store_sqlite_version(void)
{
	return sqlite3_libversion();
}

static enum moe_status db_error(struct store *s, const char *what)
{
	return moe_error(MOE_ESTORE, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static enum moe_status exec(struct store *s, const char *sql, const char *what)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		enum moe_status st = moe_error(MOE_ESTORE, "%s: %s: %s", s->path, what,
					       msg ? msg : sqlite3_errmsg(s->db));
		sqlite3_free(msg);
		return st;
	}
	return MOE_OK;
}

static enum moe_status read_version(struct store *s, int *version)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return moe_error(MOE_ESTORE, "%s: not a moekit results store: %s", s->path,
				 sqlite3_errmsg(s->db));
	rc = sqlite3_step(st);
	*version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return moe_error(MOE_ESTORE, "%s: not a moekit results store: %s", s->path,
				 sqlite3_errmsg(s->db));
	return MOE_OK;
}

static enum moe_status migrate(struct store *s, int from)
{
	char sql[64];

	for (size_t i = 0; i < sizeof migrations / sizeof migrations[0]; i++) {
		if (migrations[i].to_version <= from)
			continue;
		if (exec(s, "BEGIN IMMEDIATE", "starting the migration") != MOE_OK)
			return MOE_ESTORE;
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", migrations[i].to_version);
		if (exec(s, migrations[i].sql, "creating the schema") != MOE_OK ||
		    exec(s, sql, "recording the schema version") != MOE_OK ||
		    exec(s, "COMMIT", "committing the migration") != MOE_OK) {
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return MOE_ESTORE;
		}
	}
	return MOE_OK;
}

enum moe_status store_open(const char *path, enum store_mode mode, struct store **out)
{
	struct store *s;
	struct stat sb;
	int flags, version = 0;
	enum moe_status st;

	*out = NULL;
	if (path == NULL || *path == '\0')
		MOE_FAIL(MOE_EINVAL, "--db: empty file name");
	if (mode == STORE_READ && stat(path, &sb) != 0)
		MOE_FAIL(MOE_ENOTFOUND, "%s: no such results store", path);
	s = calloc(1, sizeof *s);
	if (s == NULL || (s->path = strdup(path)) == NULL) {
		free(s);
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", path);
	}
	flags = mode == STORE_READ ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
		st = moe_error(MOE_EIO, "%s: cannot open the results store: %s", path,
			       s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto err;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, 5000);
	/* Read the version before anything writes: a newer file stays as it is. */
	if ((st = read_version(s, &version)) != MOE_OK)
		goto err;
	if (version > STORE_SCHEMA_VERSION) {
		st = moe_error(MOE_EVERSION,
			       "%s: schema version %d is newer than this moekit knows (%d): "
			       "use a newer moekit", path, version, STORE_SCHEMA_VERSION);
		goto err;
	}
	if (mode == STORE_READ) {
		if (version < STORE_SCHEMA_VERSION) {
			st = moe_error(MOE_EFORMAT, "%s: not a moekit results store (schema version %d)",
				       path, version);
			goto err;
		}
	} else {
		if (version == 0 && stat(path, &sb) == 0 && sb.st_size > 0) {
			/* A database someone else made: do not mix our tables into it. */
			sqlite3_stmt *q;
			int ntab = 0;
			if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_master", -1, &q,
					       NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
				ntab = sqlite3_column_int(q, 0);
			sqlite3_finalize(q);
			if (ntab > 0) {
				st = moe_error(MOE_EFORMAT, "%s: an SQLite database that is not a "
					       "moekit results store", path);
				goto err;
			}
		}
		if ((st = exec(s, "PRAGMA journal_mode = WAL", "setting WAL mode")) != MOE_OK)
			goto err;
		if ((st = migrate(s, version)) != MOE_OK)
			goto err;
	}
	if ((st = exec(s, "PRAGMA foreign_keys = ON", "enabling foreign keys")) != MOE_OK)
		goto err;
	*out = s;
	return MOE_OK;
err:
	sqlite3_close(s->db);
	free(s->path);
	free(s);
	return st;
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (s->open_run)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(s->db);
	free(s->path);
	free(s);
}

/* Prepares sql, binds the arguments described by types ('i' int64,
 * 'd' double, 't' text or NULL), steps once and finalizes. */
static enum moe_status run_sql(struct store *s, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int rc, i = 1;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(s, "preparing a statement");
	va_start(ap, types);
	for (const char *t = types; *t; t++, i++) {
		if (*t == 'i') {
			sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
		} else if (*t == 'd') {
			sqlite3_bind_double(st, i, va_arg(ap, double));
		} else {
			const char *v = va_arg(ap, const char *);
			if (v) sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
			else sqlite3_bind_null(st, i);
		}
	}
	va_end(ap);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return db_error(s, "writing");
	return MOE_OK;
}

enum moe_status store_run_begin(struct store *s, const struct store_run_meta *m, int64_t *id)
{
	enum moe_status st;

	if (s->open_run)
		MOE_FAIL(MOE_EINVAL, "%s: run %lld is still open", s->path, (long long)s->open_run);
	if (m->kind == NULL || (strcmp(m->kind, "sim") != 0 && strcmp(m->kind, "profile") != 0))
		MOE_FAIL(MOE_EINVAL, "run kind: expected sim or profile");
	st = run_sql(s,
		     "INSERT INTO runs (kind, status, label, model, cluster, seed, inputs, "
		     "moekit_version, sqlite_version, started_at) VALUES (?, 'running', ?, ?, ?, ?, "
		     "coalesce(?, '{}'), ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
		     "ttttittt", m->kind, m->label, m->model, m->cluster, (int64_t)m->seed,
		     m->inputs_json, PACKAGE_VERSION, sqlite3_libversion());
	if (st != MOE_OK) {
		if (m->inputs_json && sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_CHECK)
			MOE_FAIL(MOE_EINVAL, "%s: run inputs are not valid JSON", s->path);
		return st;
	}
	*id = sqlite3_last_insert_rowid(s->db);
	if ((st = exec(s, "BEGIN IMMEDIATE", "starting the run's transaction")) != MOE_OK)
		return st;
	s->open_run = *id;
	return MOE_OK;
}

static enum moe_status check_open(struct store *s, int64_t id)
{
	if (s->open_run == 0 || s->open_run != id)
		MOE_FAIL(MOE_EINVAL, "%s: run %lld is not open for writing", s->path, (long long)id);
	return MOE_OK;
}

enum moe_status store_run_done(struct store *s, int64_t id, const char *summary_json)
{
	enum moe_status st;

	if ((st = check_open(s, id)) != MOE_OK)
		return st;
	st = run_sql(s, "UPDATE runs SET status = 'done', summary = ?, "
		     "finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
		     "ti", summary_json, id);
	if (st == MOE_OK)
		st = exec(s, "COMMIT", "committing the run");
	if (st != MOE_OK)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	s->open_run = 0;
	return st;
}

enum moe_status store_run_fail(struct store *s, int64_t id, const char *message)
{
	if (s->open_run == id) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		s->open_run = 0;
	}
	return run_sql(s, "UPDATE runs SET status = 'failed', error = ?, "
		       "finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
		       "ti", message, id);
}

enum moe_status store_run_abort(struct store *s, int64_t id, enum moe_status st)
{
	struct moe_failure f;

	moe_failure_keep(&f, st);
	store_run_fail(s, id, f.msg);
	return moe_failure_raise(&f);
}

#define CHECK_OPEN(s, id) do { \
	enum moe_status st_ = check_open((s), (id)); \
	if (st_ != MOE_OK) return st_; \
} while (0)

enum moe_status store_layer_add(struct store *s, int64_t id, const struct store_layer_row *r)
{
	CHECK_OPEN(s, id);
	return run_sql(s, "INSERT INTO layers VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
		       "iitdddddddddddd", id, (int64_t)r->layer, r->phase, r->dispatch_s,
		       r->compute_s, r->combine_s, r->other_s, r->exposed_s, r->total_s,
		       r->dispatch_bytes, r->combine_bytes, r->network_bytes, r->tokens,
		       r->dropped, r->imbalance);
}

enum moe_status store_gpu_add(struct store *s, int64_t id, const struct store_gpu_row *r)
{
	CHECK_OPEN(s, id);
	return run_sql(s, "INSERT INTO gpus VALUES (?,?,?,?,?,?,?,?,?)", "iiidddddd", id,
		       (int64_t)r->gpu, (int64_t)r->node, r->busy_s, r->idle_s, r->compute_s,
		       r->tokens, r->bytes_sent, r->bytes_received);
}

enum moe_status store_link_add(struct store *s, int64_t id, const struct store_link_row *r)
{
	CHECK_OPEN(s, id);
	return run_sql(s, "INSERT INTO links VALUES (?,?,?,?,?,?,?,?)", "iittdddd", id,
		       (int64_t)r->link, r->name, r->kind, r->bw_Bps, r->bytes, r->busy_s,
		       r->utilization);
}

enum moe_status store_link_sample_add(struct store *s, int64_t id, int link, double t_s,
				      double utilization)
{
	CHECK_OPEN(s, id);
	return run_sql(s, "INSERT INTO link_samples VALUES (?,?,?,?)", "iidd", id, (int64_t)link,
		       t_s, utilization);
}

enum moe_status store_expert_add(struct store *s, int64_t id, const struct store_expert_row *r)
{
	CHECK_OPEN(s, id);
	return run_sql(s, "INSERT INTO experts VALUES (?,?,?,?,?,?)", "iiiidd", id,
		       (int64_t)r->layer, (int64_t)r->expert, (int64_t)r->gpu, r->tokens, r->dropped);
}

enum moe_status store_stage_add(struct store *s, int64_t id, const struct store_stage_row *r)
{
	CHECK_OPEN(s, id);
	return run_sql(s, "INSERT INTO stages VALUES (?,?,?,?,?,?,?,?,?)", "itidddddd", id,
		       r->stage, (int64_t)r->reps, r->median_s, r->p10_s, r->p90_s, r->min_s,
		       r->gflops, r->tokens);
}

enum moe_status store_span_add(struct store *s, int64_t id, const struct store_span_row *r)
{
	CHECK_OPEN(s, id);
	return run_sql(s, "INSERT INTO spans VALUES (?,?,?,?,?,?)", "itttdd", id, r->track,
		       r->name, r->cat, r->start_s, r->dur_s);
}

enum moe_status store_metric_add(struct store *s, int64_t id, const char *name, double value,
				 const char *unit)
{
	CHECK_OPEN(s, id);
	return run_sql(s, "INSERT INTO metrics VALUES (?,?,?,?)", "itdt", id, name, value, unit);
}

/* ---- reading ---- */

/* Runs sql (with id bound to its one parameter when bind_id) and calls fn
 * per row, leaving out the first skip columns. */
static enum moe_status query_each(struct store *s, const char *sql, int64_t id, int bind_id,
				  int skip, store_row_fn fn, void *user, int *nrows)
{
	sqlite3_stmt *st;
	int rc, n;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(s, "reading");
	if (bind_id)
		sqlite3_bind_int64(st, 1, id);
	n = sqlite3_column_count(st);
	{
		const char *names[n > 0 ? n : 1];
		const char *vals[n > 0 ? n : 1];
		int isnum[n > 0 ? n : 1];

		for (int i = 0; i < n; i++)
			names[i] = sqlite3_column_name(st, i);
		*nrows = 0;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			for (int i = 0; i < n; i++) {
				int t = sqlite3_column_type(st, i);
				vals[i] = (const char *)sqlite3_column_text(st, i);
				isnum[i] = t == SQLITE_INTEGER || t == SQLITE_FLOAT;
			}
			(*nrows)++;
			if (fn(user, n - skip, names + skip, vals + skip, isnum + skip) != 0) {
				rc = SQLITE_DONE;
				break;
			}
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_error(s, "reading");
	return MOE_OK;
}

enum moe_status store_runs_each(struct store *s, store_row_fn fn, void *user)
{
	int n;

	return query_each(s, "SELECT id, kind, status, label, model, cluster, seed, started_at, "
			  "finished_at FROM runs ORDER BY id", 0, 0, 0, fn, user, &n);
}

enum moe_status store_run_each(struct store *s, int64_t id, store_row_fn fn, void *user)
{
	enum moe_status st;
	int n;

	st = query_each(s, "SELECT id, kind, status, label, model, cluster, seed, inputs, summary, "
			"error, moekit_version, sqlite_version, started_at, finished_at "
			"FROM runs WHERE id = ?", id, 1, 0, fn, user, &n);
	if (st == MOE_OK && n == 0)
		MOE_FAIL(MOE_ENOTFOUND, "%s: no run %lld", s->path, (long long)id);
	return st;
}

enum moe_status store_rows_each(struct store *s, int64_t id, const char *table,
				store_row_fn fn, void *user)
{
	char sql[256];
	int n, known = 0;

	for (int i = 0; store_tables[i]; i++)
		known |= strcmp(store_tables[i], table) == 0;
	if (!known)
		MOE_FAIL(MOE_EINVAL, "unknown table '%s'", table);
	/* rowid order is insertion order, which is the order the run wrote. */
	snprintf(sql, sizeof sql, "SELECT * FROM %s WHERE run_id = ? ORDER BY rowid", table);
	return query_each(s, sql, id, 1, 1, fn, user, &n);
}

/* ---- combining stores ---- */

enum moe_status store_count_done(struct store *s, const char *label, int *n)
{
	sqlite3_stmt *q;
	int rc;

	if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM runs WHERE status = 'done' AND label = ?",
			       -1, &q, NULL) != SQLITE_OK)
		return db_error(s, "reading");
	sqlite3_bind_text(q, 1, label, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(q);
	*n = rc == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0;
	sqlite3_finalize(q);
	if (rc != SQLITE_ROW)
		return db_error(s, "reading");
	return MOE_OK;
}

/* "c1, c2, ..." of table in schema db, leaving out run_id (or, for runs,
 * id), into buf. */
static enum moe_status column_list(struct store *s, const char *db, const char *table,
				   char *buf, size_t n)
{
	char sql[128];
	sqlite3_stmt *q;
	size_t used = 0;

	snprintf(sql, sizeof sql, "PRAGMA %s.table_info(%s)", db, table);
	if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
		return db_error(s, "reading the schema");
	buf[0] = '\0';
	while (sqlite3_step(q) == SQLITE_ROW) {
		const char *c = (const char *)sqlite3_column_text(q, 1);
		if (strcmp(c, "run_id") == 0 || strcmp(c, "id") == 0)
			continue;
		used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", c);
		if (used >= n) {
			sqlite3_finalize(q);
			return moe_error(MOE_ESTORE, "%s: table %s has too many columns", s->path, table);
		}
	}
	sqlite3_finalize(q);
	return MOE_OK;
}

static enum moe_status import_runs(struct store *s, const char *label, int *copied)
{
	char cols[1024], sql[2600];
	sqlite3_stmt *q;
	enum moe_status st;
	int rc;

	if ((st = column_list(s, "main", "runs", cols, sizeof cols)) != MOE_OK)
		return st;
	if (sqlite3_prepare_v2(s->db, "SELECT id FROM src.runs WHERE status = 'done' ORDER BY id",
			       -1, &q, NULL) != SQLITE_OK)
		return db_error(s, "reading the source store");
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		int64_t old = sqlite3_column_int64(q, 0), new_id;
		snprintf(sql, sizeof sql, "INSERT INTO main.runs (%s) SELECT %s FROM src.runs WHERE id = ?",
			 cols, cols);
		if ((st = run_sql(s, sql, "i", old)) != MOE_OK)
			break;
		new_id = sqlite3_last_insert_rowid(s->db);
		if (label != NULL &&
		    (st = run_sql(s, "UPDATE main.runs SET label = ? WHERE id = ?", "ti", label,
				  new_id)) != MOE_OK)
			break;
		for (int i = 0; store_tables[i]; i++) {
			char tcols[1024];
			if ((st = column_list(s, "main", store_tables[i], tcols, sizeof tcols)) != MOE_OK)
				break;
			snprintf(sql, sizeof sql, "INSERT INTO main.%s (run_id, %s) SELECT ?, %s "
				 "FROM src.%s WHERE run_id = ? ORDER BY rowid", store_tables[i], tcols,
				 tcols, store_tables[i]);
			if ((st = run_sql(s, sql, "ii", new_id, old)) != MOE_OK)
				break;
		}
		if (st != MOE_OK)
			break;
		if (copied)
			(*copied)++;
	}
	sqlite3_finalize(q);
	if (st == MOE_OK && rc != SQLITE_DONE)
		st = db_error(s, "reading the source store");
	return st;
}

enum moe_status store_import(struct store *s, const char *src_path, const char *label,
			     int *copied)
{
	struct stat sb;
	sqlite3_stmt *q;
	int version = -1;
	enum moe_status st;

	if (copied)
		*copied = 0;
	if (s->open_run)
		MOE_FAIL(MOE_EINVAL, "%s: run %lld is still open", s->path, (long long)s->open_run);
	if (stat(src_path, &sb) != 0)
		MOE_FAIL(MOE_ENOTFOUND, "%s: no such results store", src_path);
	if ((st = run_sql(s, "ATTACH DATABASE ? AS src", "t", src_path)) != MOE_OK)
		return st;
	if (sqlite3_prepare_v2(s->db, "PRAGMA src.user_version", -1, &q, NULL) == SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW)
		version = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	if (version != STORE_SCHEMA_VERSION) {
		st = moe_error(MOE_EVERSION, "%s: schema version %d, expected %d", src_path, version,
			       STORE_SCHEMA_VERSION);
	} else if ((st = exec(s, "BEGIN IMMEDIATE", "starting the import")) == MOE_OK) {
		st = import_runs(s, label, copied);
		if (st == MOE_OK)
			st = exec(s, "COMMIT", "committing the import");
		if (st != MOE_OK) {
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			if (copied)
				*copied = 0;
		}
	}
	sqlite3_exec(s->db, "DETACH DATABASE src", NULL, NULL, NULL);
	return st;
}
