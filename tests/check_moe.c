/* tests/check_moe.c: units, configuration files, presets, plans. */
#include "config.h"
#include "tests/testutil.h"
#include "moe/error.h"
#include "moe/model.h"
#include "moe/preset.h"
#include "moe/units.h"

#include <check.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- units ---- */

static double parse_ok(const char *s, enum moe_unit k)
{
	double v = -1;

	ck_assert_msg(moe_units_parse(s, k, &v) == MOE_OK, "'%s': %s", s, moe_errmsg());
	return v;
}

START_TEST(units_every_suffix)
{
	ck_assert_double_eq(parse_ok("450GB/s", MOE_UNIT_RATE), 450e9);
	ck_assert_double_eq(parse_ok("400Gb/s", MOE_UNIT_RATE), 50e9);
	ck_assert_double_eq(parse_ok("400Gbps", MOE_UNIT_RATE), 50e9);
	ck_assert_double_eq(parse_ok("3.35TB/s", MOE_UNIT_RATE), 3.35e12);
	ck_assert_double_eq(parse_ok("32 GB/s", MOE_UNIT_RATE), 32e9);
	ck_assert_double_eq(parse_ok("1MiB/s", MOE_UNIT_RATE), 1048576.0);
	ck_assert_double_eq(parse_ok("80GiB", MOE_UNIT_BYTES), 80.0 * 1073741824.0);
	ck_assert_double_eq(parse_ok("80GB", MOE_UNIT_BYTES), 80e9);
	ck_assert_double_eq(parse_ok("1KiB", MOE_UNIT_BYTES), 1024);
	ck_assert_double_eq(parse_ok("2kB", MOE_UNIT_BYTES), 2000);
	ck_assert_double_eq(parse_ok("1TiB", MOE_UNIT_BYTES), 1099511627776.0);
	ck_assert_double_eq(parse_ok("8b", MOE_UNIT_BYTES), 1);
	ck_assert_double_eq(parse_ok("4096", MOE_UNIT_BYTES), 4096);
	ck_assert_double_eq_tol(parse_ok("2us", MOE_UNIT_TIME), 2e-6, 1e-20);
	ck_assert_double_eq_tol(parse_ok("1.5ms", MOE_UNIT_TIME), 1.5e-3, 1e-18);
	ck_assert_double_eq_tol(parse_ok("3ns", MOE_UNIT_TIME), 3e-9, 1e-22);
	ck_assert_double_eq_tol(parse_ok("2\xc2\xb5s", MOE_UNIT_TIME), 2e-6, 1e-20);
	ck_assert_double_eq(parse_ok("7s", MOE_UNIT_TIME), 7);
	ck_assert_double_eq(parse_ok("989TFLOP/s", MOE_UNIT_FLOPS), 989e12);
	ck_assert_double_eq(parse_ok("1.5PFLOPS", MOE_UNIT_FLOPS), 1.5e15);
	ck_assert_double_eq(parse_ok("989e12", MOE_UNIT_FLOPS), 989e12);
	ck_assert_double_eq(parse_ok("  12  ", MOE_UNIT_NONE), 12);
}
END_TEST

START_TEST(units_garbage_and_overflow)
{
	double v = 42;

	ck_assert_int_eq(moe_units_parse("", MOE_UNIT_BYTES, &v), MOE_EINVAL);
	ck_assert_int_eq(moe_units_parse("GB", MOE_UNIT_BYTES, &v), MOE_EINVAL);
	ck_assert_int_eq(moe_units_parse("12 parsecs", MOE_UNIT_TIME, &v), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "parsecs"));
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "2us"));
	/* a unit of the wrong kind */
	ck_assert_int_eq(moe_units_parse("450GB", MOE_UNIT_RATE, &v), MOE_EINVAL);
	ck_assert_int_eq(moe_units_parse("2us", MOE_UNIT_BYTES, &v), MOE_EINVAL);
	ck_assert_int_eq(moe_units_parse("5GB", MOE_UNIT_NONE, &v), MOE_EINVAL);
	ck_assert_int_eq(moe_units_parse("1e400", MOE_UNIT_BYTES, &v), MOE_ERANGE);
	ck_assert_int_eq(moe_units_parse("1e306PB", MOE_UNIT_BYTES, &v), MOE_ERANGE);
	ck_assert_int_eq(moe_units_parse("nan", MOE_UNIT_BYTES, &v), MOE_ERANGE);
	ck_assert_int_eq(moe_units_parse("inf", MOE_UNIT_TIME, &v), MOE_ERANGE);
	ck_assert_int_eq(moe_units_parse("450GB/s/s", MOE_UNIT_RATE, &v), MOE_EINVAL);
	ck_assert_int_eq(moe_units_parse("450 GB /s", MOE_UNIT_RATE, &v), MOE_EINVAL);
	ck_assert_int_eq(moe_units_parse(NULL, MOE_UNIT_RATE, &v), MOE_EINVAL);
	ck_assert_double_eq(v, 42); /* untouched on error */
}
END_TEST

START_TEST(units_format)
{
	char buf[64];

	ck_assert_str_eq(moe_units_format(450e9, MOE_UNIT_RATE, buf, sizeof buf), "450 GB/s");
	ck_assert_str_eq(moe_units_format(80.0 * 1073741824.0, MOE_UNIT_BYTES, buf, sizeof buf), "80 GiB");
	ck_assert_str_eq(moe_units_format(2e-6, MOE_UNIT_TIME, buf, sizeof buf), "2 us");
	ck_assert_str_eq(moe_units_format(989e12, MOE_UNIT_FLOPS, buf, sizeof buf), "989 TFLOP/s");
	/* what is formatted parses back to the same value */
	{
		double v;
		moe_units_format(3.35e12, MOE_UNIT_RATE, buf, sizeof buf);
		ck_assert_int_eq(moe_units_parse(buf, MOE_UNIT_RATE, &v), MOE_OK);
		ck_assert_double_eq_tol(v, 3.35e12, 1);
	}
}
END_TEST

/* ---- configuration files ---- */


static const char small_model[] =
	"[model]\nname = tiny\nlayers = 4\nmoe_layers = 4\nhidden = 64\n"
	"[moe]\nexperts = 8\ntop_k = 2\nexpert_ffn = 128\n";

/* Loads text as a model and expects failure with st and a message that
 * contains every one of the NULL-terminated needles. */
static void model_fails(const char *text, enum moe_status want, ...)
{
	struct moe_model m;
	const char *path = test_write_file("m.ini", text);
	enum moe_status st = moe_model_load(path, &m);
	va_list ap;
	const char *needle;

	ck_assert_msg(st == want, "status %d (want %d): %s", st, want, moe_errmsg());
	va_start(ap, want);
	while ((needle = va_arg(ap, const char *)) != NULL)
		ck_assert_msg(strstr(moe_errmsg(), needle) != NULL, "'%s' not in '%s'", needle,
			      moe_errmsg());
	va_end(ap);
}

START_TEST(config_small_model_loads)
{
	struct moe_model m;

	ck_assert_int_eq(moe_model_load(test_write_file("ok.ini", small_model), &m), MOE_OK);
	ck_assert_str_eq(m.name, "tiny");
	ck_assert_int_eq(m.experts, 8);
	ck_assert_int_eq(m.top_k, 2);
	ck_assert_int_eq(m.groups, 1);       /* default */
	ck_assert_int_eq(m.dispatch_bytes, 2); /* default */
	ck_assert_int_eq(m.router, MOE_ROUTER_SOFTMAX_TOPK);
}
END_TEST

START_TEST(config_rules)
{
	char buf[1024];

	/* unknown key, with file:line */
	snprintf(buf, sizeof buf, "%s[moe]\nexpert = 3\n", small_model);
	model_fails(buf, MOE_ECONFIG, "m.ini:11: moe.expert: unknown key", NULL);
	/* unknown section */
	snprintf(buf, sizeof buf, "%s[routing]\nkind = x\n", small_model);
	model_fails(buf, MOE_ECONFIG, ":11: routing.kind: unknown key", NULL);
	/* malformed integer */
	model_fails("[model]\nname = x\nlayers = four\n", MOE_ECONFIG,
		    "m.ini:3: model.layers: 'four': expected an integer", NULL);
	/* out of range */
	model_fails("[model]\nname = x\nlayers = 0\n", MOE_ECONFIG, ":3: model.layers: 0 is out of range",
		    NULL);
	/* enum */
	snprintf(buf, sizeof buf, "%s[router]\nkind = softmax\n", small_model);
	model_fails(buf, MOE_ECONFIG, ":11: router.kind: 'softmax': expected one of softmax-topk",
		    NULL);
	/* top-k above experts names the line of top_k */
	model_fails("[model]\nname = x\nlayers = 2\nmoe_layers = 2\nhidden = 8\n[moe]\nexperts = 8\n"
		    "top_k = 9\nexpert_ffn = 8\n", MOE_ECONFIG,
		    ":8: moe.top_k: 9 is above the number of experts (8)", NULL);
	/* groups must divide experts */
	snprintf(buf, sizeof buf, "%s[router]\ngroups = 3\n", small_model);
	model_fails(buf, MOE_ECONFIG, ":11: router.groups: 3 does not divide the 8 experts", NULL);
	/* groups per token above groups */
	snprintf(buf, sizeof buf, "%s[router]\ngroups = 4\ngroups_per_token = 5\n", small_model);
	model_fails(buf, MOE_ECONFIG, ":12: router.groups_per_token: 5 is above router.groups", NULL);
	/* k cannot be reached inside the allowed groups */
	snprintf(buf, sizeof buf, "%s[router]\ngroups = 8\ngroups_per_token = 1\n", small_model);
	model_fails(buf, MOE_ECONFIG, "moe.top_k: 2 experts cannot be picked", NULL);
	/* missing required field */
	model_fails("[model]\nname = x\nlayers = 2\nmoe_layers = 2\n[moe]\nexperts = 8\ntop_k = 1\n"
		    "expert_ffn = 8\n", MOE_ECONFIG, "model.hidden: missing", NULL);
	/* syntax error */
	model_fails("[model\nname = x\n", MOE_ECONFIG, "m.ini:1: syntax error", NULL);
	/* moe layers above layers */
	model_fails("[model]\nname = x\nlayers = 2\nmoe_layers = 3\nhidden = 8\n[moe]\nexperts = 8\n"
		    "top_k = 1\nexpert_ffn = 8\n", MOE_ECONFIG, ":4: model.moe_layers: 3 is above", NULL);
	/* dense blocks need dense_ffn */
	model_fails("[model]\nname = x\nlayers = 3\nmoe_layers = 2\nhidden = 8\n[moe]\nexperts = 8\n"
		    "top_k = 1\nexpert_ffn = 8\n", MOE_ECONFIG, "moe.dense_ffn: missing", NULL);
	/* missing file */
	{
		struct moe_model m;
		ck_assert_int_eq(moe_model_load("/nonexistent/x.ini", &m), MOE_EIO);
	}
}
END_TEST

START_TEST(config_cluster_rules)
{
	struct moe_cluster c;
	const char *p;

	/* a NIC count that does not fit the GPUs */
	p = test_write_file("c.ini", "base = dgx-h100\n[nic]\ncount = 3\n");
	ck_assert_int_eq(moe_cluster_load(p, &c), MOE_ECONFIG);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "c.ini:3: nic.count: 3 NICs do not fit 8 GPUs"));
	/* a unit of the wrong kind */
	p = test_write_file("c.ini", "base = dgx-h100\n[nic]\nbw = 400Gb\n");
	ck_assert_int_eq(moe_cluster_load(p, &c), MOE_ECONFIG);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "c.ini:3: nic.bw: '400Gb': unknown unit"));
	/* zero bandwidth is out of range */
	p = test_write_file("c.ini", "base = dgx-h100\n[intra]\nbw = 0GB/s\n");
	ck_assert_int_eq(moe_cluster_load(p, &c), MOE_ECONFIG);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "c.ini:3: intra.bw: 0 is out of range"));
	/* base must come first */
	p = test_write_file("c.ini", "[cluster]\nnodes = 2\nbase = dgx-h100\n");
	ck_assert_int_eq(moe_cluster_load(p, &c), MOE_ECONFIG);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "c.ini:3: cluster.base: must be the first key"));
	/* unknown base */
	p = test_write_file("c.ini", "base = dgx-h999\n");
	ck_assert_int_eq(moe_cluster_load(p, &c), MOE_ECONFIG);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "unknown cluster preset 'dgx-h999'"));
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "dgx-a100"));
	/* oversubscription on a fabric that has none */
	p = test_write_file("c.ini", "base = dgx-h100\n[fabric]\noversubscription = 2\n");
	ck_assert_int_eq(moe_cluster_load(p, &c), MOE_ECONFIG);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "fabric.oversubscription: 2 applies only"));
	/* an override on top of a preset, with a node count suffix */
	p = test_write_file("mine.ini", "base = dgx-h100\n[cluster]\nname = mine\n[nic]\ncount = 4\n"
		       "bw = 800Gb/s\n");
	ck_assert_int_eq(moe_cluster_load(p, &c), MOE_OK);
	{
		char spec[600];
		snprintf(spec, sizeof spec, "%s:16", p);
		ck_assert_int_eq(moe_cluster_load(spec, &c), MOE_OK);
	}
	ck_assert_str_eq(c.name, "mine");
	ck_assert_int_eq(c.nodes, 16);
	ck_assert_int_eq(c.nics, 4);
	ck_assert_double_eq(c.nic_Bps, 100e9);
	ck_assert_double_eq(c.intra_Bps, 450e9); /* from the preset */
	/* bad node count */
	ck_assert_int_eq(moe_cluster_load("dgx-h100:0", &c), MOE_EINVAL);
	ck_assert_int_eq(moe_cluster_load("dgx-h100:x", &c), MOE_EINVAL);
}
END_TEST

/* ---- presets ---- */

START_TEST(presets_all_load)
{
	static const char *const models[] = {"switch-base-128", "mixtral-8x7b", "mixtral-8x22b",
		"deepseek-v3", "qwen3-235b-a22b", "olmoe-1b-7b", "gpt-oss-120b", NULL};
	static const char *const clusters[] = {"dgx-h100", "hgx-h800", "dgx-a100", "gb200-nvl72",
		"pcie-l40s", NULL};
	char **names;
	int n = 0;

	for (int i = 0; models[i]; i++) {
		struct moe_model m;
		ck_assert_msg(moe_model_load(models[i], &m) == MOE_OK, "%s", moe_errmsg());
		ck_assert_str_eq(m.name, models[i]);
		ck_assert_msg(strlen(m.source) > 10, "%s cites no source", models[i]);
		ck_assert_int_le(m.top_k, m.experts);
	}
	for (int i = 0; clusters[i]; i++) {
		struct moe_cluster c;
		ck_assert_msg(moe_cluster_load(clusters[i], &c) == MOE_OK, "%s", moe_errmsg());
		ck_assert_str_eq(c.name, clusters[i]);
		ck_assert_msg(strlen(c.source) > 10, "%s cites no source", clusters[i]);
	}
	ck_assert_int_eq(moe_preset_names(MOE_PRESET_MODEL, &names), MOE_OK);
	for (char **p = names; *p; p++)
		n++;
	moe_preset_names_free(names);
	ck_assert_int_eq(n, 7);
}
END_TEST

START_TEST(presets_values)
{
	struct moe_model m;
	struct moe_cluster c;

	ck_assert_int_eq(moe_model_load("deepseek-v3", &m), MOE_OK);
	ck_assert_int_eq(m.experts, 256);
	ck_assert_int_eq(m.top_k, 8);
	ck_assert_int_eq(m.moe_layers, 58);
	ck_assert_int_eq(m.groups, 8);
	ck_assert_int_eq(m.groups_per_token, 4);
	ck_assert_int_eq(m.router, MOE_ROUTER_SIGMOID_BIAS);
	ck_assert_double_eq(m.routed_scaling, 2.5);
	ck_assert_int_eq(m.dispatch_bytes, 1);
	ck_assert_int_eq(m.combine_bytes, 2);
	ck_assert_int_eq(moe_cluster_load("dgx-h100:4", &c), MOE_OK);
	ck_assert_int_eq(moe_cluster_gpus(&c), 32);
	ck_assert_double_eq(c.nic_Bps, 50e9);
	ck_assert_double_eq(c.intra_Bps, 450e9);
	ck_assert_int_eq(c.fabric, MOE_FABRIC_RAIL);
}
END_TEST

START_TEST(presets_unknown)
{
	struct moe_model m;

	ck_assert_int_eq(moe_model_load("mixtral-9x9b", &m), MOE_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "unknown model preset 'mixtral-9x9b'"));
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "mixtral-8x7b"));
	ck_assert_int_eq(moe_model_load("../etc", &m), MOE_EIO);
}
END_TEST

START_TEST(plan_rules)
{
	struct moe_model m;
	struct moe_cluster c;
	struct moe_plan p;

	ck_assert_int_eq(moe_model_load("mixtral-8x7b", &m), MOE_OK);
	ck_assert_int_eq(moe_cluster_load("dgx-h100:2", &c), MOE_OK);
	moe_plan_default(&p, &m, &c);
	ck_assert_int_eq(p.ep, 8);
	ck_assert_int_eq(moe_plan_validate(&p, &m, &c), MOE_OK);
	p.ep = 3;
	ck_assert_int_eq(moe_plan_validate(&p, &m, &c), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "--ep: 3 does not divide the 8 experts"));
	p.ep = 32;
	ck_assert_int_eq(moe_plan_validate(&p, &m, &c), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "--ep: 32 is outside 1..16"));
	p.ep = 4;
	p.tokens_per_gpu = 0;
	ck_assert_int_eq(moe_plan_validate(&p, &m, &c), MOE_EINVAL);
}
END_TEST

START_TEST(errors_exit_codes)
{
	ck_assert_int_eq(moe_status_exit_code(MOE_OK), 0);
	ck_assert_int_eq(moe_status_exit_code(MOE_EINVAL), 2);
	ck_assert_int_eq(moe_status_exit_code(MOE_ECONFIG), 2);
	ck_assert_int_eq(moe_status_exit_code(MOE_EIO), 1);
	ck_assert_int_eq(moe_status_exit_code(MOE_EVERSION), 1);
	ck_assert_str_eq(moe_strerror(MOE_ENOMEM), "out of memory");
	ck_assert_str_eq(moe_strerror((enum moe_status)999), "unknown status");
	ck_assert_int_eq(moe_error(MOE_EIO, "x %d", 5), MOE_EIO);
	ck_assert_str_eq(moe_errmsg(), "x 5");
}
END_TEST

static Suite *core_suite(void)
{
	Suite *s = suite_create("moe");
	TCase *tc = tcase_create("core");
	TCase *te = tcase_create("errors");

	tcase_add_test(tc, units_every_suffix);
	tcase_add_test(tc, units_format);
	tcase_add_checked_fixture(tc, test_fixture_setup, test_fixture_teardown);
	tcase_add_test(tc, config_small_model_loads);
	tcase_add_test(tc, presets_all_load);
	tcase_add_test(tc, presets_values);
	tcase_add_test(tc, plan_rules);
	tcase_add_checked_fixture(te, test_fixture_setup, test_fixture_teardown);
	tcase_add_test(te, units_garbage_and_overflow);
	tcase_add_test(te, config_rules);
	tcase_add_test(te, config_cluster_rules);
	tcase_add_test(te, presets_unknown);
	tcase_add_test(te, errors_exit_codes);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, te);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(core_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
