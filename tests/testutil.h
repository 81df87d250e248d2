/* tests/testutil.h: what several Check runners share: one scratch directory
 * for the files a test writes, made before the tests and removed after.
 *
 *	ck_assert_int_eq(test_tmpdir_make("moekit-store-"), 0);
 *	... store_open(test_path("study.db"), ...) ...
 *	ck_assert_int_eq(test_tmpdir_remove(), 0);
 *
 * Not thread safe (one directory per process, static buffers). */
#ifndef MOEKIT_TESTS_TESTUTIL_H
#define MOEKIT_TESTS_TESTUTIL_H

/* The scratch directory's path; "" before test_tmpdir_make. */
extern char test_dir[256];

/* Makes a new directory $TMPDIR/<prefix>XXXXXX ($TMPDIR unset: /tmp) and
 * keeps its path in test_dir.  Returns 0, or -1 with errno set (ENAMETOOLONG
 * when the path does not fit). */
int test_tmpdir_make(const char *prefix);

/* Removes test_dir and everything under it (symbolic links themselves,
 * not what they point to).  Returns 0, or -1 with errno set. */
int test_tmpdir_remove(void);

/* "<test_dir>/<name>", in one of four static buffers used in turn: the
 * result stays valid over the next three calls. */
const char *test_path(const char *name);

/* Writes text to test_path(name) and returns that path (valid as
 * test_path's result is); fails the test when it cannot. */
const char *test_write_file(const char *name, const char *text);

/* Check fixtures: a fresh scratch directory per test ("moekit-check-"),
 * removed after it; they fail the test when that cannot be done. */
void test_fixture_setup(void);
void test_fixture_teardown(void);

#endif
