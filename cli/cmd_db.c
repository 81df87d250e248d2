/* cli/cmd_db.c: `moekit db list|show|export`: read a results store. */
#include "config.h"
#include "cli/cli.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"Usage: moekit db list [--db FILE] [--format table|csv|json]\n"
	"       moekit db show RUN [--db FILE] [--format table|csv|json]\n"
	"       moekit db export RUN [--db FILE] [--format csv|json] [--table NAME]\n\n"
	"Read a results store: list its runs, show one run's inputs, summary and\n"
	"metrics, or export every row a run stored.\n\n"
	"  list     one row per run: id, kind (sim or profile), status (running, done,\n"
	"           failed), label, model, cluster, seed, start and finish times\n"
	"  show     the run's fields and its metrics with units\n"
	"  export   json: one object with the run and all its tables; csv: one table\n"
	"           (--table: layers, gpus, links, link_samples, experts, stages,\n"
	"           metrics, spans; default layers)\n\n"
	"Options:\n"
	"  --db FILE          results store (default: moekit.db)\n"
	"  --format FMT       table (default for list and show), csv or json\n"
	"  --table NAME       the table export writes as csv\n"
	"  -h, --help         show this help\n\n"
	"A run that is not 'done' (still running, or crashed) is listed with its\n"
	"status; its rows were never committed.  docs/schema.md describes every\n"
	"table, so the store can be queried with the sqlite3 shell as well.\n";

/* Collects query rows into a cli_table (columns from the first row). */
struct collect {
	struct cli_table *t;
	int have_cols;
};

static int collect_row(void *user, int n, const char *const *names, const char *const *values,
		       const int *is_num)
{
	struct collect *c = user;

	if (!c->have_cols) {
		for (int i = 0; i < n; i++)
			cli_table_col(c->t, names[i], is_num[i] ? CLI_COL_NUM : CLI_COL_STR);
		c->have_cols = 1;
	}
	cli_table_row(c->t, values);
	return 0;
}

/* Collects rows into a JSON array of objects (numbers stay numbers). */
static int json_row(void *user, int n, const char *const *names, const char *const *values,
		    const int *is_num)
{
	json_t *arr = user, *o = json_object();

	for (int i = 0; i < n; i++) {
		json_t *v;
		if (values[i] == NULL)
			v = json_null();
		else if (is_num[i])
			v = strpbrk(values[i], ".eE") ? json_real(strtod(values[i], NULL))
						       : json_integer(strtoll(values[i], NULL, 10));
		else if (strcmp(names[i], "inputs") == 0 || strcmp(names[i], "summary") == 0)
			v = json_loads(values[i], 0, NULL);
		else
			v = json_string(values[i]);
		json_object_set_new(o, names[i], v ? v : json_null());
	}
	json_array_append_new(arr, o);
	return 0;
}

static int parse_run(const char *arg, int64_t *id)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(arg, &end, 10);
	if (end == arg || *end != '\0' || v < 1 || errno == ERANGE)
		return cli_usage("db", "RUN: '%s' is not a run id (a positive integer)", arg), 0;
	*id = v;
	return 1;
}

static int do_list(struct store *db, enum cli_format fmt, const char *path)
{
	struct collect c = {cli_table_new("runs"), 0};
	enum moe_status st = store_runs_each(db, collect_row, &c);
	int rc;

	if (st != MOE_OK) {
		cli_table_free(c.t);
		return cli_fail("db", st);
	}
	if (!c.have_cols) {
		/* An empty store still has a header, so scripts see the columns. */
		const char *cols[] = {"id", "kind", "status", "label", "model", "cluster", "seed",
				      "started_at", "finished_at"};
		for (int i = 0; i < 9; i++)
			cli_table_col(c.t, cols[i], i == 0 || i == 6 ? CLI_COL_NUM : CLI_COL_STR);
	}
	cli_table_note(c.t, "moekit %s, store %s", PACKAGE_VERSION, path);
	cli_table_print(c.t, fmt, stdout);
	cli_table_free(c.t);
	rc = cli_finish_stdout("db");
	return rc;
}

struct kv {
	struct cli_table *t;
};

static int kv_row(void *user, int n, const char *const *names, const char *const *values,
		  const int *is_num)
{
	struct kv *kv = user;

	(void)is_num;
	for (int i = 0; i < n; i++) {
		const char *cells[2] = {names[i], values[i]};
		cli_table_row(kv->t, cells);
	}
	return 0;
}

static int metric_row(void *user, int n, const char *const *names, const char *const *values,
		      const int *is_num)
{
	struct kv *kv = user;
	char name[256];
	const char *cells[2] = {name, values[1]};

	(void)n;
	(void)names;
	(void)is_num;
	snprintf(name, sizeof name, "%s%s%s%s", values[0], values[2] ? " (" : "",
		 values[2] ? values[2] : "", values[2] ? ")" : "");
	cli_table_row(kv->t, cells);
	return 0;
}

static int do_show(struct store *db, int64_t id, enum cli_format fmt)
{
	enum moe_status st;

	if (fmt == CLI_FORMAT_JSON) {
		json_t *runs = json_array(), *metrics = json_array(), *root;
		if ((st = store_run_each(db, id, json_row, runs)) != MOE_OK ||
		    (st = store_rows_each(db, id, "metrics", json_row, metrics)) != MOE_OK) {
			json_decref(runs);
			json_decref(metrics);
			return cli_fail("db", st);
		}
		root = json_incref(json_array_get(runs, 0));
		json_decref(runs);
		json_object_set_new(root, "metrics", metrics);
		json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		json_decref(root);
		return cli_finish_stdout("db");
	}
	{
		struct kv kv = {cli_table_new("fields")};
		cli_table_col(kv.t, "field", CLI_COL_STR);
		cli_table_col(kv.t, "value", CLI_COL_STR);
		if ((st = store_run_each(db, id, kv_row, &kv)) != MOE_OK ||
		    (st = store_rows_each(db, id, "metrics", metric_row, &kv)) != MOE_OK) {
			cli_table_free(kv.t);
			return cli_fail("db", st);
		}
		cli_table_note(kv.t, "run %lld", (long long)id);
		cli_table_print(kv.t, fmt, stdout);
		cli_table_free(kv.t);
	}
	return cli_finish_stdout("db");
}

static int do_export(struct store *db, int64_t id, enum cli_format fmt, const char *table)
{
	enum moe_status st;

	if (fmt == CLI_FORMAT_JSON) {
		json_t *runs = json_array(), *root;
		if ((st = store_run_each(db, id, json_row, runs)) != MOE_OK) {
			json_decref(runs);
			return cli_fail("db", st);
		}
		root = json_object();
		json_object_set(root, "run", json_array_get(runs, 0));
		json_decref(runs);
		for (int i = 0; store_tables[i]; i++) {
			json_t *rows = json_array();
			if ((st = store_rows_each(db, id, store_tables[i], json_row, rows)) != MOE_OK) {
				json_decref(rows);
				json_decref(root);
				return cli_fail("db", st);
			}
			json_object_set_new(root, store_tables[i], rows);
		}
		json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		json_decref(root);
		return cli_finish_stdout("db");
	}
	{
		struct collect c = {cli_table_new(table), 0};
		struct kv probe = {cli_table_new("x")};
		/* The run must exist even when the table has no rows for it. */
		st = store_run_each(db, id, kv_row, &probe);
		cli_table_free(probe.t);
		if (st == MOE_OK)
			st = store_rows_each(db, id, table, collect_row, &c);
		if (st != MOE_OK) {
			cli_table_free(c.t);
			if (st == MOE_EINVAL)
				return cli_usage("db", "--table: unknown table '%s'", table);
			return cli_fail("db", st);
		}
		cli_table_print(c.t, fmt, stdout);
		cli_table_free(c.t);
	}
	return cli_finish_stdout("db");
}

int cmd_db(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"format", required_argument, NULL, 'f'},
		{"table", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = "moekit.db", *table = "layers", *action;
	enum cli_format fmt = CLI_FORMAT_TABLE;
	int have_fmt = 0, o, rc;
	int64_t id = 0;
	struct store *db;
	enum moe_status st;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'd': path = optarg; break;
		case 'f':
			if (!cli_parse_format("db", optarg, &fmt))
				return 2;
			have_fmt = 1;
			break;
		case 't': table = optarg; break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_stdout("db");
		default:
			return cli_bad_option("db", argc, argv);
		}
	}
	if (optind >= argc)
		return cli_usage("db", "missing action: expected list, show or export");
	action = argv[optind];
	if (strcmp(action, "list") == 0) {
		if (optind + 1 != argc)
			return cli_usage("db", "list: unexpected argument '%s'", argv[optind + 1]);
	} else if (strcmp(action, "show") == 0 || strcmp(action, "export") == 0) {
		if (optind + 2 != argc)
			return cli_usage("db", "%s: expected one RUN id", action);
		if (!parse_run(argv[optind + 1], &id))
			return 2;
		if (strcmp(action, "export") == 0) {
			if (!have_fmt)
				fmt = CLI_FORMAT_JSON;
			if (fmt == CLI_FORMAT_TABLE)
				return cli_usage("db", "--format: export writes csv or json");
		}
	} else {
		return cli_usage("db", "unknown action '%s': expected list, show or export", action);
	}
	if ((st = store_open(path, STORE_READ, &db)) != MOE_OK)
		return cli_fail("db", st);
	if (strcmp(action, "list") == 0)
		rc = do_list(db, fmt, path);
	else if (strcmp(action, "show") == 0)
		rc = do_show(db, id, fmt);
	else
		rc = do_export(db, id, fmt, table);
	store_close(db);
	return rc;
}
