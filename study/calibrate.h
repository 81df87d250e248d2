/* study/calibrate.h: fit the simulator's compute and link parameters to
 * measurements (profile runs in the store) by weighted least squares (GSL),
 * and write them as a cluster file that `moekit sim` loads.
 *
 * Compute.  sim/compute.h prices an expert FFN on n rows (tokens) as
 *
 *   t(n) = flops(n) / (peak x eff(n)),  flops(n) = 2 x mats x d x f x n,
 *   eff(n) = eff_max x n / (n + m_half)
 *
 * so t(n) = w x (n + m_half) / eff_max with w = 2 x mats x d x f / peak
 * (seconds per row at 100% of peak): affine in n.  A profile run times the
 * expert GEMMs of all its active experts together (stages gate_up +
 * activation + down); summing over the experts e with n_e > 0 (the routed
 * experts, and a shared expert that takes every token),
 *
 *   T = (A + m_half x B) / eff_max + mats x launch
 *   A = sum_e w_e n_e    (seconds: all routed rows at peak)
 *   B = sum_e w_e        (seconds per row: one row of every active expert)
 *
 * Dividing by B gives one straight line whatever the runs' shapes:
 *
 *   y = (T - mats x launch) / B = x / eff_max + m_half / eff_max,
 *   x = A / B (rows per expert, weighted by expert size)
 *
 * fitted as y = c0 + c1 x: eff_max = 1 / c1, m_half = c0 / c1.  peak is
 * the mean SGEMM roof measured with the runs (metric sgemm_roof_gflops), the
 * same peak for every run so that eff_max is relative to what the file
 * calls the GPU's peak.  launch is not fitted (a CPU has no kernel launch;
 * whatever a stage costs at zero rows is in m_half); it is an input,
 * default 0.
 *
 * Worked example: d 256, f 512, SwiGLU (mats 3), peak 50 GFLOP/s, 8 experts
 * all active: w = 2 x 3 x 256 x 512 / 50e9 = 15.73 us per row, B = 8 w =
 * 125.8 us.  Measured 15.10, 25.17, 45.30 ms at 64, 128, 256 rows per
 * expert give y = 120, 200, 360 against x = 64, 128, 256: c1 = 1.25, c0 =
 * 40, so eff_max = 0.8 and m_half = 32 rows (eff(64) = 0.8 x 64/96 =
 * 0.533; check: 8 x 15.73 us x 64 / 0.533 = 15.10 ms).
 *
 * Links.  An MPI all-to-all among R ranks in which each rank sends S bytes
 * in total moves S (R-1)/R bytes off each rank; the simulator prices that
 * as one transfer per link: t = latency + S (R-1)/R / bandwidth.  Fitted as
 * y = t, x = S (R-1)/R: latency = c0, bandwidth = 1 / c1 (the achieved,
 * "bus" bandwidth of nccl-tests, so the cluster file's efficiency is 1).
 *
 * Weights and errors.  Times span decades (a 1 KiB all-to-all against a
 * 64 MiB one), so every point is weighted by 1 / y^2: the fit minimizes
 * relative residuals (gsl_fit_wlinear).  The weights say nothing about the
 * absolute noise, so the covariance is scaled by the reduced chi-square
 * (chisq / (n - 2)): standard errors come from the scatter of the points
 * about the line, as gsl_fit_linear's do.  Derived parameters carry their
 * error by first-order propagation: se(1/c1) = se(c1) / c1^2 and
 * var(c0/c1) = var(c0)/c1^2 + c0^2 var(c1)/c1^4 - 2 c0 cov(c0,c1)/c1^3.
 * Residuals: the RMS of (y_fit - y) / y and R^2 = 1 - SS_res / SS_tot
 * (weighted).  A fit needs at least 3 points with distinct x (2 define the
 * line, the third gives a residual).
 *
 * Bounds.  m_half and latency cannot be negative.  When the free fit puts
 * the intercept below 0 (on a CPU the packed expert kernel can be as fast
 * per row at 32 rows as at 2048, or faster while the rows stay in cache),
 * the constrained least-squares solution has the intercept at its bound:
 * the line through the origin (gsl_fit_wmul, covariance scaled by
 * chisq / (n - 1)), and the free value is reported beside it.
 */
#ifndef MOEKIT_STUDY_CALIBRATE_H
#define MOEKIT_STUDY_CALIBRATE_H

#include <stddef.h>
#include <stdint.h>
#include "moe/error.h"

struct store;

/* A straight-line fit y = c0 + c1 x with relative weights. */
struct study_calib_fit {
	double c0, c1;               /* intercept, slope */
	double cov00, cov01, cov11;  /* covariance, scaled by the reduced chi-square */
	double rms_rel;              /* RMS of (fit - y) / y */
	double max_rel;              /* largest |fit - y| / y */
	double r2;                   /* weighted coefficient of determination */
	int n;                       /* points */
	int distinct;                /* distinct x values */
};

/* Fits y = c0 + c1 x to n points weighted by 1 / y^2 (see above).  what
 * names the fit in messages ("compute fit").  Returns MOE_OK and *out;
 * MOE_EINVAL when fewer than 3 distinct x are given ("compute fit: needs at
 * least 3 points with distinct x, found 2") or a y is not positive and
 * finite; MOE_ERUNTIME when GSL fails.  Pure and thread-safe. */
enum moe_status study_calib_fit_line(const double *x, const double *y, size_t n, const char *what,
				     struct study_calib_fit *out);

/* As study_calib_fit_line, for y = c1 x (c0, cov00, cov01 are 0). */
enum moe_status study_calib_fit_origin(const double *x, const double *y, size_t n, const char *what,
				       struct study_calib_fit *out);

/* One profile run as a compute measurement. */
struct study_calib_cpt {
	int64_t run;
	int hidden, ffn, mats;       /* d, f (routed expert), 3 for SwiGLU */
	int shared_ffn;              /* a shared expert's f taking every token, 0 none */
	int active;                  /* routed experts with at least one row */
	int threads;
	double tokens;               /* tokens of the forward (a shared expert's rows) */
	double rows;                 /* routed rows (token-expert assignments) */
	double gemm_s;               /* median gate_up + activation + down, seconds */
	double roof_flops;           /* SGEMM roof measured with the run, FLOP/s */
};

/* One all-to-all size as a link measurement. */
struct study_calib_lpt {
	int64_t run;
	int ranks;
	double size_B;               /* bytes each rank sends in total */
	double time_s;               /* mean time of one call */
};

/* The measurements a calibration uses; arrays owned (study_calib_data_free). */
struct study_calib_data {
	int ncpt, nlpt;
	struct study_calib_cpt *cpt;
	struct study_calib_lpt *lpt;
	int nruns;
	int64_t *runs;               /* every run used, ascending */
};

/* Reads the measurements from the store: with nids > 0 only the runs ids
 * (each must be a done profile run: MOE_ENOTFOUND / MOE_EINVAL naming it),
 * else every done profile run.  Single-process forward runs (stages gate_up,
 * activation, down; metric sgemm_roof_gflops; inputs hidden, ffn, tokens,
 * experts) become compute points; all-to-all runs (inputs benchmark
 * "alltoall") link points; expert-parallel runs (inputs ep > 1) and runs
 * without a roof are skipped.  Returns MOE_OK and *out (free with
 * study_calib_data_free); MOE_ESTORE; MOE_ENOMEM. */
enum moe_status study_calib_collect(struct store *db, const int64_t *ids, int nids,
				    struct study_calib_data **out);
void study_calib_data_free(struct study_calib_data *d);

/* Inputs of a calibration that are not measured. */
struct study_calib_opts {
	double launch_s;             /* per-launch overhead subtracted, seconds (default 0) */
	double mem_bytes;            /* memory size written as gpu.hbm, bytes */
	const char *base;            /* cluster preset the file starts from, or NULL */
};

/* What a calibration found. */
struct study_calib {
	int have_compute, have_link;
	struct study_calib_fit compute, link;
	double peak_flops;           /* mean SGEMM roof of the compute runs, FLOP/s */
	double eff_max, eff_max_se;  /* fraction of peak_flops */
	double m_half, m_half_se;    /* rows */
	int m_half_bound;            /* the free fit gave m_half < 0: refitted with 0 */
	double m_half_free;          /* the free fit's m_half */
	double launch_s;
	int threads;                 /* threads of the compute runs (one "GPU") */
	double lat_s, lat_se;        /* seconds */
	int lat_bound;               /* the free fit gave a negative latency: 0 */
	double lat_free;
	double bw_Bps, bw_se;        /* bytes per second, per rank each direction */
	int ranks;                   /* ranks of the all-to-all runs */
};

/* Fits d.  The compute fit is required; the link fit too unless o->base is
 * given (the preset's links are kept).  Returns MOE_OK and *out; MOE_EINVAL
 * for too few points (the message says which fit, how many points are
 * needed and how many were found), for compute runs of different thread
 * counts or all-to-all runs of different rank counts; MOE_ERANGE when the
 * slope is not positive (time that does not grow with rows or bytes: no
 * eff_max or bandwidth).  A negative m_half or latency is refitted at its
 * bound 0 (see Bounds above; m_half_bound, lat_bound say so). */
enum moe_status study_calib_run(const struct study_calib_data *d, const struct study_calib_opts *o,
				struct study_calib *out);

/* Writes the cluster file at path (to a temporary name, then renamed, so
 * a failure leaves no file): one node of max(ranks, 1) "GPUs", each one
 * process of `threads` threads: flops_bf16 = the roof (x eff_max when
 * eff_max exceeds 1, efficiency then 1), efficiency, m_half, launch, intra
 * bw and latency (efficiency 1), no NICs; comments give every fitted
 * value's standard error, the residuals and the runs.  With o->base the
 * file starts `base = PRESET` and keeps the preset's layout (nodes, GPUs
 * per node), memory, NICs and fabric.  name is the cluster's name.  Returns MOE_OK or MOE_EIO naming the path. */
enum moe_status study_calib_write(const char *path, const char *name, const struct study_calib *c,
				  const struct study_calib_data *d, const struct study_calib_opts *o);

/* ---- reading profile runs (shared with study/validate.c) ---- */

#define STUDY_CALIB_STAGES_MAX 80

/* A done profile run as read from the store. */
struct study_calib_prun {
	int64_t id;
	uint64_t seed;
	char model[128];             /* model preset or file, "" if none */
	int a2a;                     /* an all-to-all benchmark run */
	int ep;                      /* expert-parallel ranks (1: one process) */
	int hidden, ffn, experts, top_k, shared_ffn, threads, ranks;
	double tokens;
	char model_type[32];
	double roof_flops;           /* metric sgemm_roof_gflops x 1e9 (or the EP
				      * summary's rank-0 roof), 0 when not measured */
	double dispatch_bytes;       /* metric dispatch_bytes (EP runs), -1 when absent */
	int nstages;
	char stage[STUDY_CALIB_STAGES_MAX][40];
	double median_s[STUDY_CALIB_STAGES_MAX];
	int nloads;                  /* experts rows (tokens per expert), 0 if none */
	double *loads;               /* owned */
};

/* Reads run id.  Returns MOE_OK and *out (release with
 * study_calib_prun_release); MOE_ENOTFOUND when there is no run id;
 * MOE_EINVAL when it is not a done profile run ("run 7 is a sim run");
 * MOE_ESTORE; MOE_ENOMEM. */
enum moe_status study_calib_prun_read(struct store *db, int64_t id, struct study_calib_prun *out);
void study_calib_prun_release(struct study_calib_prun *p);

/* The median seconds of stage name, or -1 when the run has no such stage. */
double study_calib_prun_stage(const struct study_calib_prun *p, const char *name);

/* The ids of every done profile run, ascending, into *ids (owned by the
 * caller, free()) and *n.  MOE_OK, MOE_ESTORE or MOE_ENOMEM. */
enum moe_status study_calib_prun_ids(struct store *db, int64_t **ids, int *n);

#endif
