/* profiler/harness.h: the timing harness around the forward pass, and the
 * machine it runs on.
 *
 *     struct prof_machine m;
 *     struct prof_result r;
 *     prof_machine_probe(threads, &m);          // once: CPU, BLAS, SGEMM roof
 *     prof_harness_run(f, x, n, y, 2, 10, NULL, NULL, &r);
 *     // r.stage[PROF_STAGE_TOTAL].median_s, r.gflops, r.gflops / m.sgemm_gflops
 *
 * Per stage the median, 10th and 90th percentiles and minimum of the reps
 * (GSL's quantiles of the sorted times: linear interpolation between order
 * statistics).  GFLOP/s count the rows actually routed (prof_forward_flops)
 * over the median time.  The SGEMM roof is what this BLAS reaches on a
 * square 2048 x 2048 x 2048 single-precision product with the same number
 * of threads, best of 3 after a warm-up: the ceiling the layer's GEMMs could
 * reach on this machine.
 *
 * On a shared machine other processes take cores; cores_used (CPU time over
 * wall time of the timed forwards) says how many the run really had, and
 * flops / cpu_s is the throughput per busy core, which contention does not
 * hide.
 */
#ifndef MOEKIT_PROFILER_HARNESS_H
#define MOEKIT_PROFILER_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include "moe/error.h"
#include "profiler/forward.h"

struct prof_machine {
	char cpu[128];          /* /proc/cpuinfo "model name", or "unknown" */
	int cores;              /* online processors */
	int threads;            /* threads the probe and the run use */
	char blas[256];         /* "openblas: OpenBLAS 0.3.21 ... (Zen)" or "gslcblas" */
	double sgemm_gflops;    /* measured SGEMM roof, GFLOP/s; 0 when not probed */
	int sgemm_n;            /* its matrix size */
	double load_avg;        /* 1-minute load average at probe time, -1 if unknown */
};

struct prof_stat {
	double median_s, p10_s, p90_s, min_s;
};

struct prof_result {
	int reps, warmup;
	struct prof_stat stage[PROF_STAGE_COUNT];
	double flops[PROF_STAGE_COUNT];   /* per forward, as prof_forward_flops */
	double gflops;                    /* total FLOPs / median total time / 1e9 */
	double routed_rows;               /* slots routed (after capacity) */
	double dropped;                   /* slots dropped per forward */
	double peak_rss_bytes;            /* getrusage: the process's peak so far */
	double cpu_s;                     /* process CPU time (user + system) per timed
					   * forward, mean over the reps */
	double cores_used;                /* cpu_s / mean wall time: how many cores the
					   * run actually had; below the thread count on a
					   * shared machine, the figures are contended */
};

/* Fills m with the CPU, cores, BLAS and, when probe_gemm is non-zero, the
 * SGEMM roof measured with `threads` threads (about 1 s per thread count on
 * a 100 GFLOP/s machine).  Leaves OpenBLAS set to one thread after (the
 * forward pass owns the threads).  Returns MOE_OK or MOE_ENOMEM. */
enum moe_status prof_machine_probe(int threads, int probe_gemm, struct prof_machine *m);

/* Called after every forward (warm-ups included; step counts from 0). */
typedef enum moe_status (*prof_forward_cb)(void *user, uint64_t step, size_t n);

/* Runs warmup untimed forwards, then reps timed ones, on x [n x H] into y.
 * cb (may be NULL) runs after each, outside the timed region.  Returns
 * MOE_OK; MOE_EINVAL when reps < 1 or warmup < 0; the forward's or the
 * callback's error; MOE_ENOMEM. */
enum moe_status prof_harness_run(struct prof_forward *f, const float *x, size_t n, float *y,
				 int warmup, int reps, prof_forward_cb cb, void *user,
				 struct prof_result *r);

/* Median, p10, p90, min of v[0..n) (sorted in place).  n >= 1. */
void prof_stat_of(double *v, size_t n, struct prof_stat *s);

#endif
