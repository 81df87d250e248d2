/* tests/check_store.c: the results store: round trip, crash safety,
 * migrations, refusal of newer schemas and unwritable paths. */
#include "config.h"
#include "store/store.h"
#include "tests/testutil.h"

#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dbpath[300];

static void setup(void)
{
	ck_assert_int_eq(test_tmpdir_make("moekit-store-"), 0);
	snprintf(dbpath, sizeof dbpath, "%s", test_path("study.db"));
}

static void teardown(void)
{
	ck_assert_int_eq(test_tmpdir_remove(), 0);
}

struct rows {
	int n;
	char first[16][128];
	char col[16][64];
	int ncol;
};

static int grab(void *user, int n, const char *const *names, const char *const *values,
		const int *is_num)
{
	struct rows *r = user;

	(void)is_num;
	if (r->n < 16)
		snprintf(r->first[r->n], sizeof r->first[0], "%s", values[0] ? values[0] : "NULL");
	r->ncol = n;
	for (int i = 0; i < n && i < 16; i++)
		snprintf(r->col[i], sizeof r->col[0], "%s", values[i] ? values[i] : "NULL");
	r->n++;
	return 0;
}

static int64_t write_run(struct store *s, int finish)
{
	int64_t id;
	struct store_run_meta meta = {"sim", "test run", "mixtral-8x7b", "dgx-h100:2",
				      "{\"top_k\": 2}", 7};
	struct store_layer_row l = {0, "forward", 1e-3, 2e-3, 1.5e-3, 0, 0, 4.5e-3, 1e6, 1e6, 5e5,
				    4096, 3, 1.25};
	struct store_gpu_row g = {5, 0, 1.0, 0.5, 0.7, 100, 2e6, 2e6};
	struct store_stage_row sg = {"experts", 10, 1e-3, 0.9e-3, 1.2e-3, 0.8e-3, 150.5, 1024};

	ck_assert_int_eq(store_run_begin(s, &meta, &id), MOE_OK);
	ck_assert_int_eq(store_layer_add(s, id, &l), MOE_OK);
	l.layer = 1;
	l.dispatch_s = 2e-3;
	ck_assert_int_eq(store_layer_add(s, id, &l), MOE_OK);
	ck_assert_int_eq(store_gpu_add(s, id, &g), MOE_OK);
	ck_assert_int_eq(store_stage_add(s, id, &sg), MOE_OK);
	ck_assert_int_eq(store_metric_add(s, id, "step_time_s", 0.25, "s"), MOE_OK);
	if (finish)
		ck_assert_int_eq(store_run_done(s, id, "{\"ok\": true}"), MOE_OK);
	return id;
}

START_TEST(round_trip)
{
	struct store *s;
	struct rows r = {0};
	int64_t id;

	ck_assert_int_eq(store_open(dbpath, STORE_WRITE, &s), MOE_OK);
	id = write_run(s, 1);
	ck_assert_int_eq(id, 1);
	store_close(s);

	ck_assert_int_eq(store_open(dbpath, STORE_READ, &s), MOE_OK);
	ck_assert_int_eq(store_runs_each(s, grab, &r), MOE_OK);
	ck_assert_int_eq(r.n, 1);
	ck_assert_str_eq(r.col[1], "sim");
	ck_assert_str_eq(r.col[2], "done");
	ck_assert_str_eq(r.col[4], "mixtral-8x7b");
	ck_assert_str_eq(r.col[6], "7");
	memset(&r, 0, sizeof r);
	ck_assert_int_eq(store_rows_each(s, id, "layers", grab, &r), MOE_OK);
	ck_assert_int_eq(r.n, 2);
	ck_assert_str_eq(r.first[0], "0");
	ck_assert_str_eq(r.first[1], "1");
	ck_assert_str_eq(r.col[2], "0.002"); /* dispatch_s of layer 1 */
	ck_assert_int_eq(r.ncol, 14);        /* run_id left out */
	memset(&r, 0, sizeof r);
	ck_assert_int_eq(store_rows_each(s, id, "stages", grab, &r), MOE_OK);
	ck_assert_str_eq(r.col[0], "experts");
	ck_assert_str_eq(r.col[6], "150.5");
	memset(&r, 0, sizeof r);
	ck_assert_int_eq(store_run_each(s, id, grab, &r), MOE_OK);
	ck_assert_str_eq(r.col[7], "{\"top_k\": 2}");
	ck_assert_int_eq(store_run_each(s, 99, grab, &r), MOE_ENOTFOUND);
	ck_assert_int_eq(store_rows_each(s, id, "runs; DROP TABLE runs", grab, &r), MOE_EINVAL);
	store_close(s);
	store_close(NULL);
}
END_TEST

START_TEST(crash_leaves_running)
{
	struct store *s;
	struct rows r = {0};
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The child writes half a run and dies without finishing it. */
		if (store_open(dbpath, STORE_WRITE, &s) != MOE_OK)
			_exit(3);
		write_run(s, 0);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(store_open(dbpath, STORE_WRITE, &s), MOE_OK);
	ck_assert_int_eq(store_runs_each(s, grab, &r), MOE_OK);
	ck_assert_int_eq(r.n, 1);
	ck_assert_str_eq(r.col[2], "running"); /* never done */
	memset(&r, 0, sizeof r);
	ck_assert_int_eq(store_rows_each(s, 1, "layers", grab, &r), MOE_OK);
	ck_assert_int_eq(r.n, 0); /* and none of its rows */
	/* A later run in the same store is unaffected. */
	ck_assert_int_eq(write_run(s, 1), 2);
	store_close(s);
}
END_TEST

START_TEST(failed_run)
{
	struct store *s;
	struct rows r = {0};
	int64_t id;

	ck_assert_int_eq(store_open(dbpath, STORE_WRITE, &s), MOE_OK);
	id = write_run(s, 0);
	ck_assert_int_eq(store_run_fail(s, id, "boom"), MOE_OK);
	ck_assert_int_eq(store_run_each(s, id, grab, &r), MOE_OK);
	ck_assert_str_eq(r.col[2], "failed");
	ck_assert_str_eq(r.col[9], "boom");
	memset(&r, 0, sizeof r);
	ck_assert_int_eq(store_rows_each(s, id, "layers", grab, &r), MOE_OK);
	ck_assert_int_eq(r.n, 0);
	/* adding rows to a run that is not open is refused */
	ck_assert_int_eq(store_metric_add(s, id, "x", 1, NULL), MOE_EINVAL);
	/* abort: the run gets the thread's error, which stays the error even
	 * when recording it fails (a store opened read-only refuses it) */
	id = write_run(s, 0);
	moe_error(MOE_EIO, "trace.bin: read failed");
	ck_assert_int_eq(store_run_abort(s, id, MOE_EIO), MOE_EIO);
	ck_assert_str_eq(moe_errmsg(), "trace.bin: read failed");
	memset(&r, 0, sizeof r);
	ck_assert_int_eq(store_run_each(s, id, grab, &r), MOE_OK);
	ck_assert_str_eq(r.col[2], "failed");
	ck_assert_str_eq(r.col[9], "trace.bin: read failed");
	store_close(s);
	ck_assert_int_eq(store_open(dbpath, STORE_READ, &s), MOE_OK);
	ck_assert_int_ne(store_run_fail(s, id, "x"), MOE_OK);
	moe_error(MOE_ENOMEM, "out of memory for 12 flows");
	ck_assert_int_eq(store_run_abort(s, id, MOE_ENOMEM), MOE_ENOMEM);
	ck_assert_str_eq(moe_errmsg(), "out of memory for 12 flows");
	store_close(s);
}
END_TEST

START_TEST(bad_inputs)
{
	struct store *s;
	int64_t id;
	struct store_run_meta bad_kind = {"guess", NULL, NULL, NULL, NULL, 0};
	struct store_run_meta bad_json = {"sim", NULL, NULL, NULL, "{not json", 0};

	ck_assert_int_eq(store_open(dbpath, STORE_WRITE, &s), MOE_OK);
	ck_assert_int_eq(store_run_begin(s, &bad_kind, &id), MOE_EINVAL);
	ck_assert_int_eq(store_run_begin(s, &bad_json, &id), MOE_EINVAL);
	store_close(s);
}
END_TEST

START_TEST(migrate_empty_file)
{
	struct store *s;
	FILE *f = fopen(dbpath, "w");
	struct rows r = {0};

	ck_assert_ptr_nonnull(f);
	fclose(f); /* a zero-byte file is an empty database */
	ck_assert_int_eq(store_open(dbpath, STORE_WRITE, &s), MOE_OK);
	ck_assert_int_eq(store_runs_each(s, grab, &r), MOE_OK);
	ck_assert_int_eq(r.n, 0);
	store_close(s);
	/* reading a file that does not exist creates nothing */
	snprintf(dbpath, sizeof dbpath, "%s/none.db", test_dir);
	ck_assert_int_eq(store_open(dbpath, STORE_READ, &s), MOE_ENOTFOUND);
	ck_assert_int_ne(access(dbpath, F_OK), 0);
}
END_TEST

static char *slurp(const char *path, long *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;

	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	*len = ftell(f);
	rewind(f);
	buf = malloc((size_t)*len + 1);
	ck_assert_int_eq((long)fread(buf, 1, (size_t)*len, f), *len);
	fclose(f);
	return buf;
}

START_TEST(refuse_newer_schema)
{
	sqlite3 *db;
	struct store *s;
	char *before, *after;
	long n1, n2;

	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE future(x); PRAGMA user_version = 9;", NULL,
				      NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	before = slurp(dbpath, &n1);
	ck_assert_int_eq(store_open(dbpath, STORE_WRITE, &s), MOE_EVERSION);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "schema version 9 is newer"));
	ck_assert_int_eq(store_open(dbpath, STORE_READ, &s), MOE_EVERSION);
	after = slurp(dbpath, &n2);
	ck_assert_int_eq(n1, n2);
	ck_assert(memcmp(before, after, (size_t)n1) == 0);
	free(before);
	free(after);
	{
		char wal[320];
		snprintf(wal, sizeof wal, "%s-wal", dbpath);
		ck_assert_int_ne(access(wal, F_OK), 0);
	}
}
END_TEST

START_TEST(refuse_foreign_files)
{
	struct store *s;
	sqlite3 *db;
	FILE *f = fopen(dbpath, "w");

	fputs("this is not a database, just text that is long enough to have a header\n", f);
	fclose(f);
	ck_assert_int_eq(store_open(dbpath, STORE_WRITE, &s), MOE_ESTORE);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), dbpath));
	/* someone else's SQLite database is left alone */
	unlink(dbpath);
	ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE theirs(x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	ck_assert_int_eq(store_open(dbpath, STORE_WRITE, &s), MOE_EFORMAT);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "not a moekit results store"));
}
END_TEST

START_TEST(unwritable_path)
{
	struct store *s;

	ck_assert_int_eq(store_open("/nonexistent-dir/study.db", STORE_WRITE, &s), MOE_EIO);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "/nonexistent-dir/study.db"));
	ck_assert_ptr_null(s);
	ck_assert_int_eq(store_open("", STORE_WRITE, &s), MOE_EINVAL);
}
END_TEST

START_TEST(import_runs)
{
	struct store *src, *dst;
	struct rows r = {0};
	char srcpath[320];
	int copied = -1, n = -1;

	snprintf(srcpath, sizeof srcpath, "%s/point.db", test_dir);
	ck_assert_int_eq(store_open(srcpath, STORE_WRITE, &src), MOE_OK);
	write_run(src, 1);
	write_run(src, 0); /* left running: must not be copied */
	store_close(src);
	ck_assert_int_eq(store_open(dbpath, STORE_WRITE, &dst), MOE_OK);
	write_run(dst, 1); /* an existing run keeps id 1 */
	ck_assert_int_eq(store_import(dst, srcpath, "sweep x point 1", &copied), MOE_OK);
	ck_assert_int_eq(copied, 1);
	ck_assert_int_eq(store_count_done(dst, "sweep x point 1", &n), MOE_OK);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(store_count_done(dst, "sweep x point 2", &n), MOE_OK);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(store_run_each(dst, 2, grab, &r), MOE_OK);
	ck_assert_str_eq(r.col[2], "done");
	ck_assert_str_eq(r.col[3], "sweep x point 1");
	ck_assert_str_eq(r.col[7], "{\"top_k\": 2}");
	memset(&r, 0, sizeof r);
	ck_assert_int_eq(store_rows_each(dst, 2, "layers", grab, &r), MOE_OK);
	ck_assert_int_eq(r.n, 2);
	ck_assert_str_eq(r.first[1], "1");
	ck_assert_str_eq(r.col[2], "0.002");
	memset(&r, 0, sizeof r);
	ck_assert_int_eq(store_rows_each(dst, 2, "metrics", grab, &r), MOE_OK);
	ck_assert_int_eq(r.n, 1);
	ck_assert_int_eq(store_import(dst, "/nonexistent.db", NULL, &copied), MOE_ENOTFOUND);
	store_close(dst);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("store");
	TCase *tc = tcase_create("core"), *te = tcase_create("errors");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(te, setup, teardown);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, crash_leaves_running);
	tcase_add_test(tc, failed_run);
	tcase_add_test(tc, migrate_empty_file);
	tcase_add_test(tc, import_runs);
	tcase_add_test(te, bad_inputs);
	tcase_add_test(te, refuse_newer_schema);
	tcase_add_test(te, refuse_foreign_files);
	tcase_add_test(te, unwritable_path);
	suite_add_tcase(su, tc);
	suite_add_tcase(su, te);
	sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
