/* tests/testutil.c: the scratch directory of the Check runners (see
 * tests/testutil.h). */
#define _XOPEN_SOURCE 700 /* nftw */
#include "config.h"
#include "tests/testutil.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char test_dir[256];

int test_tmpdir_make(const char *prefix)
{
	const char *tmp = getenv("TMPDIR");
	int n = snprintf(test_dir, sizeof test_dir, "%s/%sXXXXXX", tmp && *tmp ? tmp : "/tmp",
			 prefix);

	if (n < 0 || (size_t)n >= sizeof test_dir) {
		test_dir[0] = '\0';
		errno = ENAMETOOLONG;
		return -1;
	}
	if (!mkdtemp(test_dir)) {
		test_dir[0] = '\0';
		return -1;
	}
	return 0;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int test_tmpdir_remove(void)
{
	/* depth first: a folder's entries go before the folder */
	return nftw(test_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *test_path(const char *name)
{
	static char buf[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s/%s", test_dir, name);
	return buf[i];
}

const char *test_write_file(const char *name, const char *text)
{
	const char *path = test_path(name);
	FILE *f = fopen(path, "w");
	int ok;

	if (f == NULL)
		ck_abort_msg("cannot write %s: %s", path, strerror(errno));
	ok = fputs(text, f) >= 0;
	ok &= fclose(f) == 0;
	if (!ok)
		ck_abort_msg("cannot write %s", path);
	return path;
}

void test_fixture_setup(void)
{
	if (test_tmpdir_make("moekit-check-") != 0)
		ck_abort_msg("cannot make a scratch directory: %s", strerror(errno));
}

void test_fixture_teardown(void)
{
	if (test_tmpdir_remove() != 0)
		ck_abort_msg("cannot remove %s: %s", test_dir, strerror(errno));
}
