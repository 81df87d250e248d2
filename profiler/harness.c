/* profiler/harness.c: warm-up and timed repetitions, order statistics,
 * machine facts and the SGEMM roof (see harness.h). */
#include "config.h"
#include "profiler/harness.h"

#include <cblas.h>
#include <math.h>
#include <gsl/gsl_sort.h>
#include <gsl/gsl_statistics_double.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifdef PROF_HAVE_OPENBLAS
void openblas_set_num_threads(int);
char *openblas_get_config(void);
char *openblas_get_corename(void);
#endif

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void prof_stat_of(double *v, size_t n, struct prof_stat *s)
{
	gsl_sort(v, 1, n);
	s->median_s = gsl_stats_median_from_sorted_data(v, 1, n);
	s->p10_s = gsl_stats_quantile_from_sorted_data(v, 1, n, 0.10);
	s->p90_s = gsl_stats_quantile_from_sorted_data(v, 1, n, 0.90);
	s->min_s = v[0];
	/* Interpolating between two equal times can land an ulp outside them:
	 * keep min <= p10 <= median <= p90 exact, as readers expect. */
	s->p10_s = fmin(fmax(s->p10_s, s->min_s), s->median_s);
	s->p90_s = fmax(s->p90_s, s->median_s);
}

static double cpu_now_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
	       (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static void cpu_model(char *buf, size_t n)
{
	FILE *fp = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(buf, n, "unknown");
	if (!fp)
		return;
	while (fgets(line, sizeof line, fp)) {
		char *c;
		if (strncmp(line, "model name", 10) != 0 || !(c = strchr(line, ':')))
			continue;
		c++;
		while (*c == ' ' || *c == '\t')
			c++;
		c[strcspn(c, "\n")] = '\0';
		snprintf(buf, n, "%s", c);
		break;
	}
	fclose(fp);
}

enum moe_status prof_machine_probe(int threads, int probe_gemm, struct prof_machine *m)
{
	double la[1];

	memset(m, 0, sizeof *m);
	cpu_model(m->cpu, sizeof m->cpu);
	m->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
	m->threads = threads;
	m->load_avg = getloadavg(la, 1) == 1 ? la[0] : -1;
#ifdef PROF_HAVE_OPENBLAS
	snprintf(m->blas, sizeof m->blas, "%s: %s (core %s)", MOEKIT_BLAS, openblas_get_config(),
		 openblas_get_corename());
#else
	snprintf(m->blas, sizeof m->blas, "%s", MOEKIT_BLAS);
#endif
	if (probe_gemm) {
		const int n = 2048;
		float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float));
		float *c = malloc((size_t)n * n * sizeof(float));
		double best = 1e30;
		if (!a || !b || !c) {
			free(a);
			free(b);
			free(c);
			MOE_FAIL(MOE_ENOMEM, "out of memory for the SGEMM probe");
		}
		for (size_t i = 0; i < (size_t)n * n; i++) {
			a[i] = (float)(i % 7) * 0.25f - 0.75f;
			b[i] = (float)(i % 5) * 0.5f - 1.0f;
		}
#ifdef PROF_HAVE_OPENBLAS
		openblas_set_num_threads(threads);
#endif
		for (int rep = 0; rep < 4; rep++) {
			double t0 = now_s(), t;
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n,
				    0.0f, c, n);
			t = now_s() - t0;
			if (rep > 0 && t < best)
				best = t;
		}
#ifdef PROF_HAVE_OPENBLAS
		openblas_set_num_threads(1);
#endif
		m->sgemm_n = n;
		m->sgemm_gflops = 2.0 * n * n * (double)n / best / 1e9;
		free(a);
		free(b);
		free(c);
	}
	return MOE_OK;
}

enum moe_status prof_harness_run(struct prof_forward *f, const float *x, size_t n, float *y,
				 int warmup, int reps, prof_forward_cb cb, void *user,
				 struct prof_result *r)
{
	double *t, st[PROF_STAGE_COUNT], cpu_sum = 0, wall_sum = 0;
	enum moe_status rc = MOE_OK;
	struct rusage ru;
	uint64_t step = 0;
	const struct prof_layer_cfg *c = prof_forward_cfg(f);

	memset(r, 0, sizeof *r);
	if (reps < 1 || warmup < 0)
		MOE_FAIL(MOE_EINVAL, "--reps %d --warmup %d: expected reps >= 1, warmup >= 0", reps, warmup);
	if (!(t = malloc(sizeof(double) * PROF_STAGE_COUNT * (size_t)reps)))
		MOE_FAIL(MOE_ENOMEM, "out of memory for %d reps", reps);
	r->reps = reps;
	r->warmup = warmup;
	for (int i = 0; i < warmup + reps; i++) {
		double c0 = cpu_now_s();
		if ((rc = prof_forward_run(f, x, n, y, st)) != MOE_OK)
			goto out;
		if (i >= warmup) {
			for (int s = 0; s < PROF_STAGE_COUNT; s++)
				t[(size_t)s * (size_t)reps + (size_t)(i - warmup)] = st[s];
			cpu_sum += cpu_now_s() - c0;
			wall_sum += st[PROF_STAGE_TOTAL];
		}
		if (cb && (rc = cb(user, step, n)) != MOE_OK)
			goto out;
		step++;
	}
	r->cpu_s = cpu_sum / reps;
	r->cores_used = wall_sum > 0 ? cpu_sum / wall_sum : 0;
	for (int s = 0; s < PROF_STAGE_COUNT; s++) {
		prof_stat_of(t + (size_t)s * (size_t)reps, (size_t)reps, &r->stage[s]);
		r->flops[s] = prof_forward_flops(f, (enum prof_stage)s);
	}
	r->gflops = r->flops[PROF_STAGE_TOTAL] / r->stage[PROF_STAGE_TOTAL].median_s / 1e9;
	for (int e = 0; e < c->experts; e++)
		r->routed_rows += (double)prof_forward_load(f)[e];
	r->dropped = (double)prof_forward_dropped(f);
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		r->peak_rss_bytes = (double)ru.ru_maxrss * 1024.0;
out:
	free(t);
	return rc;
}
