/* tests/check_calib.c: calibration (study/calibrate.h) and validation
 * (study/validate.h): exact fits on hand-derived points, recovery of known
 * parameters from noisy synthetic measurements within 3 standard errors,
 * the too-few-points errors, the written cluster file loaded back, and
 * validation against a store of synthetic profile runs. */
#include "config.h"

#include <check.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moe/model.h"
#include "store/store.h"
#include "study/calibrate.h"
#include "study/validate.h"

/* The worked example of calibrate.h: d 256, f 512, SwiGLU, peak 50 GFLOP/s,
 * 8 experts, eff_max 0.8, m_half 32. */
#define D 256
#define F 512
#define E 8
#define PEAK 50e9
#define EFF 0.8
#define MHALF 32.0
#define LAT 5e-6
#define BW 5e9

static double gemm_s(double rows_per_expert)
{
	double w = 2.0 * 3 * D * F / PEAK;
	return E * w * (rows_per_expert + MHALF) / EFF;
}

static struct study_calib_data *synth(int ncpt, int nlpt, double noise, unsigned long seed)
{
	struct study_calib_data *d = calloc(1, sizeof *d);
	gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);

	gsl_rng_set(r, seed);
	d->cpt = calloc((size_t)ncpt + 1, sizeof *d->cpt);
	d->lpt = calloc((size_t)nlpt + 1, sizeof *d->lpt);
	d->runs = calloc(1, sizeof *d->runs);
	d->runs[0] = 1;
	d->nruns = 1;
	for (int i = 0; i < ncpt; i++) {
		double n = 8.0 * (1 << i); /* 8, 16, ... rows per expert */
		d->cpt[i] = (struct study_calib_cpt){i + 1, D, F, 3, 0, E, 1, n * E / 2, n * E,
						     gemm_s(n) * (1 + noise * gsl_ran_gaussian(r, 1)), PEAK};
	}
	for (int i = 0; i < nlpt; i++) {
		double size = 1024.0 * (1 << i);  /* each rank's total; half leaves it */
		d->lpt[i] = (struct study_calib_lpt){100, 2, size,
						     (LAT + size / 2 / BW) * (1 + noise * gsl_ran_gaussian(r, 1))};
	}
	d->ncpt = ncpt;
	d->nlpt = nlpt;
	gsl_rng_free(r);
	return d;
}

START_TEST(fit_exact_line)
{
	/* y = 2 + 3x on 4 points: exact, zero residuals */
	double x[] = {1, 2, 4, 8}, y[] = {5, 8, 14, 26};
	struct study_calib_fit f;

	ck_assert_int_eq(study_calib_fit_line(x, y, 4, "t", &f), MOE_OK);
	ck_assert_double_eq_tol(f.c0, 2, 1e-12);
	ck_assert_double_eq_tol(f.c1, 3, 1e-12);
	ck_assert_double_eq_tol(f.rms_rel, 0, 1e-12);
	ck_assert_double_eq_tol(f.r2, 1, 1e-12);
	ck_assert_int_eq(f.distinct, 4);
}
END_TEST

START_TEST(fit_weighted_residuals)
{
	/* y = x with one point 10% high: relative weights and residuals.
	 * Reference: the closed-form weighted normal equations (w = 1/y^2)
	 * evaluated independently in Python: c0 = -0.0053177346450404344,
	 * c1 = 1.0243729504564385, with chisq/(n-2) scaling cov11 =
	 * 0.003447551122240518, cov00 = 0.009557783210196673.  Also the
	 * weighted residuals sum to zero at the optimum. */
	double x[] = {1, 2, 3, 4}, y[] = {1, 2.2, 3, 4}, sw = 0;
	struct study_calib_fit f;

	ck_assert_int_eq(study_calib_fit_line(x, y, 4, "t", &f), MOE_OK);
	for (int i = 0; i < 4; i++)
		sw += (y[i] - f.c0 - f.c1 * x[i]) / (y[i] * y[i]);
	ck_assert_double_eq_tol(sw, 0, 1e-12);
	ck_assert(f.rms_rel > 0.01 && f.rms_rel < 0.1);
	ck_assert(f.r2 > 0.9 && f.r2 < 1);
	ck_assert_double_eq_tol(f.c0, -0.0053177346450404344, 1e-12);
	ck_assert_double_eq_tol(f.c1, 1.0243729504564385, 1e-12);
	ck_assert_double_eq_tol(f.cov11, 0.003447551122240518, 1e-12);
	ck_assert_double_eq_tol(f.cov00, 0.009557783210196673, 1e-12);
}
END_TEST

START_TEST(fit_too_few)
{
	double x[] = {1, 1, 2, 2}, y[] = {1, 1.1, 2, 2.1};
	struct study_calib_fit f;

	ck_assert_int_eq(study_calib_fit_line(x, y, 4, "compute fit", &f), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "needs at least 3 points with distinct x"));
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "found 2"));
	y[0] = 0;
	x[0] = 0;
	ck_assert_int_eq(study_calib_fit_line(x, y, 4, "compute fit", &f), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "not positive"));
}
END_TEST

START_TEST(calib_worked_example)
{
	/* exact points: the header's example comes back exactly */
	struct study_calib_data *d = synth(8, 8, 0, 1);
	struct study_calib_opts o = {0, 1e9, NULL};
	struct study_calib c;

	ck_assert_int_eq(study_calib_run(d, &o, &c), MOE_OK);
	ck_assert_double_eq_tol(c.eff_max, EFF, 1e-9);
	ck_assert_double_eq_tol(c.m_half, MHALF, 1e-7);
	ck_assert_double_eq_tol(c.peak_flops, PEAK, 1);
	ck_assert_double_eq_tol(c.lat_s, LAT, 1e-15);
	ck_assert_double_eq_tol(c.bw_Bps / BW, 1, 1e-9);
	ck_assert_double_eq_tol(c.compute.rms_rel, 0, 1e-9);
	ck_assert_int_eq(c.ranks, 2);
	/* the header's numbers: 15.10 ms at 64 rows per expert */
	ck_assert_double_eq_tol(gemm_s(64), 15.099e-3, 0.01e-3);
	study_calib_data_free(d);
}
END_TEST

START_TEST(calib_recovers_with_noise)
{
	/* 2% and 3% Gaussian noise, several seeds: the truth lies within 3
	 * standard errors of the fit, and the errors are not absurdly wide */
	for (unsigned long seed = 1; seed <= 5; seed++) {
		struct study_calib_data *d = synth(8, 10, 0.02 + 0.01 * (seed % 2), seed);
		struct study_calib_opts o = {0, 1e9, NULL};
		struct study_calib c;

		ck_assert_int_eq(study_calib_run(d, &o, &c), MOE_OK);
		ck_assert(c.eff_max_se > 0 && c.m_half_se > 0 && c.lat_se > 0 && c.bw_se > 0);
		ck_assert_msg(fabs(c.eff_max - EFF) <= 3 * c.eff_max_se, "seed %lu: eff %g +- %g", seed,
			      c.eff_max, c.eff_max_se);
		ck_assert_msg(fabs(c.m_half - MHALF) <= 3 * c.m_half_se, "seed %lu: m_half %g +- %g", seed,
			      c.m_half, c.m_half_se);
		ck_assert_msg(fabs(c.lat_s - LAT) <= 3 * c.lat_se, "seed %lu: lat %g +- %g", seed, c.lat_s,
			      c.lat_se);
		ck_assert_msg(fabs(c.bw_Bps - BW) <= 3 * c.bw_se, "seed %lu: bw %g +- %g", seed, c.bw_Bps,
			      c.bw_se);
		ck_assert(c.eff_max_se < 0.1 * EFF && c.bw_se < 0.1 * BW);
		ck_assert(c.compute.rms_rel > 0.005 && c.compute.rms_rel < 0.06);
		study_calib_data_free(d);
	}
}
END_TEST

START_TEST(calib_too_few)
{
	struct study_calib_opts o = {0, 1e9, NULL};
	struct study_calib c;
	struct study_calib_data *d = synth(2, 8, 0, 1);

	ck_assert_int_eq(study_calib_run(d, &o, &c), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "compute fit: needs at least 3"));
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "found 2"));
	study_calib_data_free(d);
	d = synth(5, 2, 0, 1);
	ck_assert_int_eq(study_calib_run(d, &o, &c), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "link fit: needs at least 3 all-to-all sizes"));
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "found 2"));
	/* without links but with a base preset: compute only */
	o.base = "dgx-h100";
	ck_assert_int_eq(study_calib_run(d, &o, &c), MOE_EINVAL); /* 2 link points are not 0 */
	d->nlpt = 0;
	ck_assert_int_eq(study_calib_run(d, &o, &c), MOE_OK);
	ck_assert_int_eq(c.have_link, 0);
	/* compute runs of different thread counts */
	d->cpt[1].threads = 2;
	ck_assert_int_eq(study_calib_run(d, &o, &c), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "threads"));
	study_calib_data_free(d);
}
END_TEST

START_TEST(calib_bound)
{
	/* efficiency that rises as the rows fall: a free fit would put m_half
	 * at -4 rows; the fit is redone through the origin, whose slope is
	 * sum(w x y) / sum(w x^2) with w = 1/y^2 (computed here by hand) */
	struct study_calib_data *d = synth(6, 6, 0, 3);
	struct study_calib_opts o = {0, 1e9, NULL};
	struct study_calib c;
	double sxy = 0, sxx = 0, B = E * 2.0 * 3 * D * F / PEAK;

	for (int i = 0; i < d->ncpt; i++) {
		double n = d->cpt[i].rows / E, y;
		d->cpt[i].gemm_s = B * (n - 4) / EFF;
		y = d->cpt[i].gemm_s / B;
		sxy += n * y / (y * y);
		sxx += n * n / (y * y);
	}
	ck_assert_int_eq(study_calib_run(d, &o, &c), MOE_OK);
	ck_assert_int_eq(c.m_half_bound, 1);
	ck_assert_double_eq_tol(c.m_half_free, -4, 1e-9);
	ck_assert_double_eq(c.m_half, 0);
	ck_assert_double_eq_tol(c.eff_max, sxx / sxy, 1e-12);
	ck_assert(c.eff_max_se > 0);
	ck_assert(c.compute.rms_rel > 0.01);
	ck_assert_int_eq(c.lat_bound, 0);
	study_calib_data_free(d);
}
END_TEST

static char tmpdir[] = "/tmp/check_calib.XXXXXX";

static void setup(void)
{
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
	strcpy(tmpdir, "/tmp/check_calib.XXXXXX");
}

START_TEST(calib_file_loads)
{
	struct study_calib_data *d = synth(6, 8, 0.02, 7);
	struct study_calib_opts o = {0, 8e9, NULL};
	struct study_calib c;
	struct moe_cluster cl;
	char path[512], spec[600];

	ck_assert_int_eq(study_calib_run(d, &o, &c), MOE_OK);
	snprintf(path, sizeof path, "%s/here.ini", tmpdir);
	ck_assert_int_eq(study_calib_write(path, "here", &c, d, &o), MOE_OK);
	ck_assert_int_eq(moe_cluster_load(path, &cl), MOE_OK);
	ck_assert_str_eq(cl.name, "here");
	ck_assert_int_eq(cl.nodes, 1);
	ck_assert_int_eq(cl.gpus_per_node, 2);
	ck_assert_double_eq_tol(cl.flops_bf16 / c.peak_flops, 1, 1e-8);
	ck_assert_double_eq_tol(cl.compute_efficiency / c.eff_max, 1, 1e-8);
	ck_assert_double_eq_tol(cl.m_half / c.m_half, 1, 1e-8);
	ck_assert_double_eq_tol(cl.intra_Bps / c.bw_Bps, 1, 1e-8);
	ck_assert_double_eq_tol(cl.intra_lat_s / c.lat_s, 1, 1e-8);
	ck_assert_double_eq(cl.intra_efficiency, 1);
	ck_assert_double_eq(cl.hbm_bytes, 8e9);
	ck_assert_int_eq(cl.nics, 0);
	/* with a base preset: the preset's layout, NICs and fabric stay */
	o.base = "dgx-h100";
	ck_assert_int_eq(study_calib_write(path, "here", &c, d, &o), MOE_OK);
	snprintf(spec, sizeof spec, "%s:4", path);
	ck_assert_int_eq(moe_cluster_load(spec, &cl), MOE_OK);
	ck_assert_int_eq(cl.nodes, 4);
	ck_assert_int_eq(cl.gpus_per_node, 8);
	ck_assert_int_eq(cl.nics, 8);
	ck_assert_double_eq_tol(cl.compute_efficiency / c.eff_max, 1, 1e-8);
	ck_assert_double_eq_tol(cl.intra_Bps / c.bw_Bps, 1, 1e-8);
	/* eff_max above 1 (the kernel beats the SGEMM probe) folds into the peak */
	c.eff_max = 1.25;
	o.base = NULL;
	ck_assert_int_eq(study_calib_write(path, "here", &c, d, &o), MOE_OK);
	ck_assert_int_eq(moe_cluster_load(path, &cl), MOE_OK);
	ck_assert_double_eq(cl.compute_efficiency, 1);
	ck_assert_double_eq_tol(cl.flops_bf16 / (1.25 * c.peak_flops), 1, 1e-8);
	/* an unwritable path: an error and no file */
	snprintf(path, sizeof path, "%s/no/such/dir/x.ini", tmpdir);
	ck_assert_int_eq(study_calib_write(path, "here", &c, d, &o), MOE_EIO);
	ck_assert_int_ne(access(path, F_OK), 0);
	study_calib_data_free(d);
}
END_TEST

/* A store of synthetic profile runs: single-process forward runs at 8..256
 * rows per expert (exact worked-example times, even loads), one all-to-all
 * run, one 2-rank expert-parallel run. */
static void add_fwd(struct store *s, double n, double roof_gflops)
{
	int64_t id;
	char in[512];
	double g = gemm_s(n);
	struct store_run_meta meta = {"profile", NULL, "mixtral-8x7b", NULL, in, 1};

	snprintf(in, sizeof in, "{\"model_type\":\"mixtral\",\"hidden\":%d,\"ffn\":%d,\"experts\":%d,"
		 "\"top_k\":2,\"shared_ffn\":0,\"tokens\":%.0f,\"threads\":1}", D, F, E, n * E / 2);
	ck_assert_int_eq(store_run_begin(s, &meta, &id), MOE_OK);
	{
		struct store_stage_row r[] = {{"gate_up", 3, g * 0.6, 0, 0, 0, 0, 0},
					      {"activation", 3, g * 0.1, 0, 0, 0, 0, 0},
					      {"down", 3, g * 0.3, 0, 0, 0, 0, 0},
					      {"total", 3, g * 1.2, 0, 0, 0, 0, 0}};
		for (int i = 0; i < 4; i++)
			ck_assert_int_eq(store_stage_add(s, id, &r[i]), MOE_OK);
	}
	for (int e = 0; e < E; e++) {
		struct store_expert_row er = {0, e, 0, n, 0};
		ck_assert_int_eq(store_expert_add(s, id, &er), MOE_OK);
	}
	ck_assert_int_eq(store_metric_add(s, id, "sgemm_roof_gflops", roof_gflops, "GFLOP/s"), MOE_OK);
	ck_assert_int_eq(store_run_done(s, id, NULL), MOE_OK);
}

static int count_runs(struct store *s)
{
	int n = 0;
	ck_assert_int_eq(store_count_done(s, "validate of run 1", &n), MOE_OK);
	return n;
}

START_TEST(store_calibrate_validate)
{
	char db[512], ini[512];
	struct store *s;
	struct study_calib_data *d;
	struct study_calib_opts o = {0, 1e9, NULL};
	struct study_calib c;
	struct study_valid_row *rows = NULL;
	int64_t id, only[] = {1}, a2a_only[] = {7};
	int n = 0;

	snprintf(db, sizeof db, "%s/s.db", tmpdir);
	snprintf(ini, sizeof ini, "%s/c.ini", tmpdir);
	ck_assert_int_eq(store_open(db, STORE_WRITE, &s), MOE_OK);
	/* validating an empty store: nothing matches, nothing written */
	ck_assert_int_eq(study_valid_run(s, "dgx-h100", NULL, 0, 1, &rows, &n), MOE_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "no profile run in the store has a plan"));
	for (int i = 0; i < 6; i++)        /* runs 1..6: 8 .. 256 rows per expert */
		add_fwd(s, 8.0 * (1 << i), PEAK / 1e9);
	{
		struct store_run_meta meta = {"profile", "a2a", NULL, NULL,
					      "{\"benchmark\":\"alltoall\",\"ranks\":2}", 0};
		ck_assert_int_eq(store_run_begin(s, &meta, &id), MOE_OK); /* run 7 */
		for (int i = 0; i < 6; i++) {
			char nm[64];
			double size = 1024.0 * (1 << (2 * i));
			struct store_stage_row r = {nm, 5, LAT + size / 2 / BW, 0, 0, 0, 0, 0};
			snprintf(nm, sizeof nm, "alltoall %.0fB", size);
			ck_assert_int_eq(store_stage_add(s, id, &r), MOE_OK);
		}
		ck_assert_int_eq(store_run_done(s, id, NULL), MOE_OK);
	}
	{
		/* run 8: 2 ranks, 256 tokens, top-2, same shape */
		struct store_run_meta meta = {"profile", NULL, "mixtral-8x7b", NULL, NULL, 1};
		char in[512];
		struct store_stage_row r[] = {{"experts", 3, 2e-3, 0, 0, 0, 0, 0},
					      {"dispatch", 3, 1e-4, 0, 0, 0, 0, 0},
					      {"combine_a2a", 3, 1e-4, 0, 0, 0, 0, 0},
					      {"total", 3, 3e-3, 0, 0, 0, 0, 0}};
		snprintf(in, sizeof in, "{\"model_type\":\"mixtral\",\"hidden\":%d,\"ffn\":%d,\"experts\":%d,"
			 "\"top_k\":2,\"shared_ffn\":0,\"tokens\":256,\"threads\":1,\"ep\":2}", D, F, E);
		meta.inputs_json = in;
		ck_assert_int_eq(store_run_begin(s, &meta, &id), MOE_OK);
		for (int i = 0; i < 4; i++)
			ck_assert_int_eq(store_stage_add(s, id, &r[i]), MOE_OK);
		ck_assert_int_eq(store_metric_add(s, id, "dispatch_bytes", 262144, "B"), MOE_OK);
		ck_assert_int_eq(store_run_done(s, id, NULL), MOE_OK);
	}
	/* calibration from the store: the runs' exact times give the truth */
	ck_assert_int_eq(study_calib_collect(s, NULL, 0, &d), MOE_OK);
	ck_assert_int_eq(d->ncpt, 6);
	ck_assert_int_eq(d->nlpt, 6);
	ck_assert_int_eq(d->nruns, 7);
	ck_assert_int_eq(study_calib_run(d, &o, &c), MOE_OK);
	ck_assert_double_eq_tol(c.eff_max, EFF, 1e-9);
	ck_assert_double_eq_tol(c.m_half, MHALF, 1e-6);
	ck_assert_double_eq_tol(c.bw_Bps / BW, 1, 1e-9);
	ck_assert_int_eq(study_calib_write(ini, "t", &c, d, &o), MOE_OK);
	study_calib_data_free(d);
	/* only the a2a run: the compute fit has no points */
	ck_assert_int_eq(study_calib_collect(s, a2a_only, 1, &d), MOE_OK);
	ck_assert_int_eq(study_calib_run(d, &o, &c), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "found 0"));
	study_calib_data_free(d);

	/* validate run 1 alone: ep 1, all 8 experts busy: the simulated expert
	 * time is the fitted curve, sum_e w (n_e + m_half) / eff_max, whatever
	 * the split of the 64 rows, = the measured gate_up+activation+down */
	ck_assert_int_eq(study_valid_run(s, ini, only, 1, 1, &rows, &n), MOE_OK);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(rows[0].run, 1);
	ck_assert_int_eq(rows[0].loads_from, 1);
	ck_assert_double_eq_tol(rows[0].measured_s[STUDY_VALID_EXPERTS], gemm_s(8), 1e-12);
	ck_assert_double_eq_tol(rows[0].predicted_s[STUDY_VALID_EXPERTS] / gemm_s(8), 1, 1e-6);
	ck_assert_double_eq(rows[0].measured_s[STUDY_VALID_DISPATCH], -1);
	ck_assert(rows[0].predicted_s[STUDY_VALID_TOTAL] >= rows[0].predicted_s[STUDY_VALID_EXPERTS]);
	ck_assert(rows[0].sim_run > 8);
	ck_assert_int_eq(count_runs(s), 1);
	free(rows);
	rows = NULL;
	/* every run: 6 forward runs and the EP run (loads from run 4: same
	 * shape, tokens 256 and seed) */
	ck_assert_int_eq(study_valid_run(s, ini, NULL, 0, 0, &rows, &n), MOE_OK);
	ck_assert_int_eq(n, 7);
	ck_assert_int_eq(rows[6].run, 8);
	ck_assert_int_eq(rows[6].ep, 2);
	ck_assert_int_eq(rows[6].loads_from, 4);
	ck_assert(rows[6].predicted_s[STUDY_VALID_DISPATCH] > LAT);
	ck_assert(rows[6].predicted_s[STUDY_VALID_COMBINE] > LAT);
	/* dispatch: each GPU sends 128 tokens x 2 copies, about half of them
	 * (128 rows of 256 floats, 1 KiB each) to the other GPU, at BW, after
	 * the latency */
	ck_assert_double_eq_tol(rows[6].predicted_s[STUDY_VALID_DISPATCH], LAT + 128 * 1024.0 / BW,
				0.2 * 128 * 1024.0 / BW);
	ck_assert_int_eq(rows[6].sim_run, 0); /* not stored */
	/* the traffic: 512 assignments, about half to the other GPU, 1 KiB each */
	ck_assert_double_eq(rows[6].measured_dispatch_bytes, 262144);
	ck_assert_double_eq_tol(rows[6].predicted_dispatch_bytes, 262144, 0.15 * 262144);
	ck_assert_double_eq(rows[0].measured_dispatch_bytes, -1);
	free(rows);
	rows = NULL;
	/* a listed run that cannot be simulated: the a2a benchmark */
	ck_assert_int_eq(study_valid_run(s, ini, a2a_only, 1, 1, &rows, &n), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "run 7 has no plan to simulate"));
	/* a one-GPU cluster: the EP run is skipped, the rest run; named, it is
	 * refused with the reason */
	{
		char one[600];
		FILE *f;
		int64_t ep_only[] = {8};
		snprintf(one, sizeof one, "%s/one.ini", tmpdir);
		ck_assert_ptr_nonnull(f = fopen(one, "w"));
		fputs("[cluster]\nname = one\ngpus_per_node = 1\n[gpu]\ntype = x\nflops_bf16 = 1e11\n"
		      "hbm = 1e9\nhbm_bw = 1e12\n[intra]\nkind = nvswitch\nbw = 1e9\n[nic]\ncount = 0\n", f);
		ck_assert_int_eq(fclose(f), 0);
		ck_assert_int_eq(study_valid_run(s, one, NULL, 0, 0, &rows, &n), MOE_OK);
		ck_assert_int_eq(n, 6);
		free(rows);
		rows = NULL;
		ck_assert_int_eq(study_valid_run(s, one, ep_only, 1, 0, &rows, &n), MOE_EINVAL);
		ck_assert_ptr_nonnull(strstr(moe_errmsg(), "run 8 has no plan to simulate"));
		ck_assert_ptr_nonnull(strstr(moe_errmsg(), "2 expert-parallel ranks, the cluster has 1 GPUs"));
	}
	/* a run that does not exist */
	{
		int64_t none[] = {99};
		ck_assert_int_eq(study_valid_run(s, ini, none, 1, 0, &rows, &n), MOE_ENOTFOUND);
	}
	store_close(s);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("calib");
	TCase *core = tcase_create("core"), *errors = tcase_create("errors"), *io = tcase_create("store");

	tcase_add_test(core, fit_exact_line);
	tcase_add_test(core, fit_weighted_residuals);
	tcase_add_test(core, calib_worked_example);
	tcase_add_test(core, calib_recovers_with_noise);
	tcase_add_test(core, calib_bound);
	tcase_add_test(errors, fit_too_few);
	tcase_add_test(errors, calib_too_few);
	tcase_add_checked_fixture(io, setup, teardown);
	tcase_add_test(io, calib_file_loads);
	tcase_add_test(io, store_calibrate_validate);
	tcase_set_timeout(io, 60);
	suite_add_tcase(s, core);
	suite_add_tcase(s, errors);
	suite_add_tcase(s, io);
	return s;
}

int main(void)
{
	SRunner *r = srunner_create(suite());
	int failed;

	srunner_run_all(r, CK_NORMAL);
	failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
