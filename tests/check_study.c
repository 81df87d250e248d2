/* tests/check_study.c: sweep specifications. */
#include "config.h"
#include "study/sweep.h"
#include "tests/testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char path[320];

static void setup(void)
{
	ck_assert_int_eq(test_tmpdir_make("moekit-study-"), 0);
	snprintf(path, sizeof path, "%s", test_path("spec.ini"));
}

static void teardown(void)
{
	ck_assert_int_eq(test_tmpdir_remove(), 0);
}

static void write_spec(const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

START_TEST(cross_product)
{
	struct study_sweep *s;
	char label[256], **argv;
	int argc;
	const char *extra[] = {"--db", "x.db", NULL};

	write_spec("[sweep]\nname = scaling\n[fixed]\nmodel = mixtral-8x7b\n[axes]\n"
		   "cluster = dgx-h100:1, dgx-h100:2 ,dgx-h100:4\ntop-k = 1,2\n");
	ck_assert_int_eq(study_sweep_load(path, &s), MOE_OK);
	ck_assert_int_eq(s->npoints, 6);
	/* first axis slowest */
	ck_assert_str_eq(s->points[0].key, "cluster=dgx-h100:1 top-k=1");
	ck_assert_str_eq(s->points[1].key, "cluster=dgx-h100:1 top-k=2");
	ck_assert_str_eq(s->points[2].key, "cluster=dgx-h100:2 top-k=1");
	ck_assert_str_eq(s->points[5].key, "cluster=dgx-h100:4 top-k=2");
	ck_assert_str_eq(study_sweep_label(s, 3, label, sizeof label),
			 "sweep scaling: cluster=dgx-h100:2 top-k=2");
	ck_assert_int_eq(study_sweep_argv(s, 4, extra, &argv, &argc), MOE_OK);
	ck_assert_int_eq(argc, 9);
	ck_assert_str_eq(argv[0], "sim");
	ck_assert_str_eq(argv[1], "--model");
	ck_assert_str_eq(argv[2], "mixtral-8x7b");
	ck_assert_str_eq(argv[3], "--cluster");
	ck_assert_str_eq(argv[4], "dgx-h100:4");
	ck_assert_str_eq(argv[5], "--top-k");
	ck_assert_str_eq(argv[6], "1");
	ck_assert_str_eq(argv[7], "--db");
	ck_assert_ptr_null(argv[9]);
	study_argv_free(argv);
	study_sweep_free(s);
	study_sweep_free(NULL);

	/* a flag option passes no value, and is left out when false */
	write_spec("[sweep]\nname = f\n[axes]\noverlap = true, false\n");
	ck_assert_int_eq(study_sweep_load(path, &s), MOE_OK);
	ck_assert_int_eq(study_sweep_argv(s, 0, NULL, &argv, &argc), MOE_OK);
	ck_assert_int_eq(argc, 2);
	ck_assert_str_eq(argv[1], "--overlap");
	study_argv_free(argv);
	ck_assert_int_eq(study_sweep_argv(s, 1, NULL, &argv, &argc), MOE_OK);
	ck_assert_int_eq(argc, 1);
	study_argv_free(argv);
	study_sweep_free(s);
}
END_TEST

START_TEST(listed_points)
{
	struct study_sweep *s;

	write_spec("[sweep]\nname = pick\n[points]\npoint = cluster=dgx-h100:1 top-k=1\n"
		   "point = top-k=2  cluster=dgx-h100:4\n");
	ck_assert_int_eq(study_sweep_load(path, &s), MOE_OK);
	ck_assert_int_eq(s->npoints, 2);
	ck_assert_str_eq(s->points[0].key, "cluster=dgx-h100:1 top-k=1");
	ck_assert_str_eq(s->points[1].key, "top-k=2 cluster=dgx-h100:4");
	study_sweep_free(s);
}
END_TEST

static void fails(const char *text, const char *needle)
{
	struct study_sweep *s = (void *)1;

	write_spec(text);
	ck_assert_int_eq(study_sweep_load(path, &s), MOE_ECONFIG);
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(moe_errmsg(), needle) != NULL, "'%s' not in '%s'", needle, moe_errmsg());
}

START_TEST(bad_specs)
{
	struct study_sweep *s;

	fails("[sweep]\nname = x\n[axes]\nbogus = 1, 2\n", "spec.ini:4: axes.bogus: unknown option: "
	      "expected one of model, cluster");
	fails("[sweep]\nname = x\n", "axes: empty product");
	fails("[sweep]\nname = x\n[axes]\ntop-k = 1,,2\n", "spec.ini:4: axes.top-k: empty value");
	fails("[axes]\ntop-k = 1\n", "sweep.name: missing");
	fails("[sweep]\nname = x\n[axes]\ntop-k = 1\n[points]\npoint = top-k=1\n", "either [axes] or");
	fails("[sweep]\nname = x\n[points]\npoint = top-k\n", ":4: points.point: 'top-k': expected "
	      "option=value");
	fails("[sweep]\nname = x\n[points]\npoint = top-k=1 top-k=2\n", "top-k given twice");
	fails("[sweep]\nname = x\n[fixed]\ntop-k = 1\n[axes]\ntop-k = 1,2\n", "fixed.top-k: also an axis");
	fails("[sweep]\nname = x\n[stuff]\na = 1\n", "spec.ini:4: stuff.a: unknown section");
	fails("[sweep]\nname = a:b\n[axes]\ntop-k = 1\n", "may not contain ':'");
	fails("[sweep\nname = x\n", "spec.ini:1: syntax error");
	fails("[sweep]\nname = x\n[axes]\noverlap = true, maybe\n", "spec.ini:4: axes.overlap: 'maybe'");
	ck_assert_int_eq(study_sweep_load("/nonexistent/spec.ini", &s), MOE_EIO);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("study");
	TCase *tc = tcase_create("core"), *te = tcase_create("errors");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(te, setup, teardown);
	tcase_add_test(tc, cross_product);
	tcase_add_test(tc, listed_points);
	tcase_add_test(te, bad_specs);
	suite_add_tcase(su, tc);
	suite_add_tcase(su, te);
	sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
