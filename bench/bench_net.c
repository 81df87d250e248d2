/* bench/bench_net.c: how fast the flow-level network simulates a direct
 * all-to-all (one flow per GPU pair) on large clusters.
 *
 * Traffic: every GPU dispatches 4096 tokens x top-8 of 7168 bytes (DeepSeek-
 * V3's FP8 dispatch) to the others.  uniform: the same to every GPU.  zipf:
 * destination GPU d receives in proportion to 1 / rank(d)^1.0, ranks a
 * seeded random permutation (hot experts on a few GPUs), the same for every
 * source (expected counts, no sampling noise).  zipf-sampled: the same
 * weights, but each source draws its 32,768 token copies from them
 * (multinomial, seeded): whole-token counts that differ from source to
 * source, as routed tokens do, so nearly every flow ends at its own time.
 *
 * Usage: bench_net [--gpus N[,N...]] [--cluster NAME] [--multipath spray|ecmp]
 *                  [--coalesce REL]  (sim_net_set_coalesce; default exact)
 *                  [--against-exact]  (then runs the same traffic exact and
 *                  prints the coalesced run's relative errors: completion,
 *                  GPU finish times, largest and mean)
 *                  [--traffic uniform|zipf|zipf-sampled|both|all]
 *                  (default both: uniform and zipf)
 *                  [--repeat N]  (runs of each case; default 1)
 *                  [--seed N]  (which GPUs are hot, and the sampled draws;
 *                  default 42)
 * Prints one row per case: flows, events, simulated time, wall time of the
 * first run (which pays for first touching the network's memory, as a
 * program simulating one all-to-all does), the fastest of the later runs
 * on the same network (warm_min_s: memory already touched, as in a
 * multi-layer `moekit sim`; "-" with one run), events/s and flows/s of the
 * first run, the peak resident memory of the process, and the solver's
 * work: flows it re-solved (summed over events), flows whose rate changed,
 * and held flows it read looking for ones too fast.  Then a comment line:
 * the largest gap over the links between a link's rate integral and the
 * bytes of its flows (the model's conservation check: rounding when exact,
 * about the window with --coalesce).
 */
#include "config.h"
#include "moe/model.h"
#include "sim/a2a.h"
#include "sim/net.h"
#include "sim/topo.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double coalesce;
static int repeat = 1;
static int against_exact;
static unsigned long seed = 42;


enum { T_UNIFORM, T_ZIPF, T_SAMPLED };
static const char *const traffic_name[] = {"uniform", "zipf1.0", "zipf-smp"};

static int run(const char *cluster, int gpus, int traffic, enum sim_multipath mp)
{
	char spec[128];
	struct moe_cluster c;
	struct sim_topo *t = NULL;
	struct sim_net *n = NULL;
	struct sim_traffic *tr = NULL;
	struct sim_a2a_opts o = {SIM_A2A_DIRECT, 1, 0, 7168};
	struct sim_a2a_result r;
	const struct sim_net_stats *st;
	double *w, sum = 0, t0, wall, tokens = 4096.0 * 8, walls[64] = {0};
	double *fin, *fex;
	unsigned *cnt;
	int zipf = traffic != T_UNIFORM;
	char warm[32];
	size_t *perm;
	gsl_rng *rng;
	struct rusage ru;

	if (moe_cluster_load(cluster, &c) != MOE_OK) {
		fprintf(stderr, "bench_net: %s\n", moe_errmsg());
		return 1;
	}
	snprintf(spec, sizeof spec, "%s:%d", cluster, gpus / c.gpus_per_node);
	if (moe_cluster_load(spec, &c) != MOE_OK || sim_topo_new(&c, mp, &t) != MOE_OK ||
	    sim_traffic_new(t->gpus, t->gpus_per_node, &tr) != MOE_OK ||
	    sim_net_new(t, (size_t)gpus * gpus, &n) != MOE_OK) {
		fprintf(stderr, "bench_net: %s\n", moe_errmsg());
		return 1;
	}
	sim_net_set_coalesce(n, coalesce);
	w = malloc((size_t)gpus * sizeof *w);
	perm = malloc((size_t)gpus * sizeof *perm);
	rng = gsl_rng_alloc(gsl_rng_mt19937);
	gsl_rng_set(rng, seed);
	for (int d = 0; d < gpus; d++)
		perm[d] = (size_t)d;
	gsl_ran_shuffle(rng, perm, (size_t)gpus, sizeof *perm);
	for (int d = 0; d < gpus; d++) {
		w[d] = zipf ? 1.0 / (1.0 + (double)perm[d]) : 1.0;
		sum += w[d];
	}
	cnt = malloc((size_t)gpus * sizeof *cnt);
	for (int s = 0; s < gpus; s++) {
		if (traffic == T_SAMPLED)
			gsl_ran_multinomial(rng, (size_t)gpus, (unsigned)tokens, w, cnt);
		for (int d = 0; d < gpus; d++)
			sim_traffic_add(tr, s, d, traffic == T_SAMPLED ? cnt[d] : tokens * w[d] / sum);
	}
	free(cnt);
	fin = malloc((size_t)gpus * sizeof *fin);
	fex = malloc((size_t)gpus * sizeof *fex);
	for (int i = 0; i < repeat; i++) {
		t0 = now_s();
		if (sim_a2a_run(n, t, tr, &o, fin, &r) != MOE_OK) {
			fprintf(stderr, "bench_net: %s\n", moe_errmsg());
			return 1;
		}
		walls[i] = now_s() - t0;
	}
	wall = walls[0];
	warm[0] = '-';
	warm[1] = '\0';
	for (int i = 2; i < repeat; i++)
		if (walls[i] < walls[1])
			walls[1] = walls[i];
	if (repeat > 1)
		snprintf(warm, sizeof warm, "%.3f", walls[1]);
	st = sim_net_stats(n);
	getrusage(RUSAGE_SELF, &ru);
	printf("%-10s %6d %-8s %-6s %9llu %8llu %12.6f %9.3f %10s %12.0f %12.0f %8.0f %10llu %10llu %10llu\n",
	       cluster, gpus, traffic_name[traffic],
	       mp == SIM_MULTIPATH_ECMP ? "ecmp" : "spray", (unsigned long long)r.flows,
	       (unsigned long long)st->events, r.completion_s, wall, warm,
	       (double)st->events / wall, (double)r.flows / wall, ru.ru_maxrss / 1024.0,
	       (unsigned long long)st->flow_visits, (unsigned long long)st->rate_changes,
	       (unsigned long long)st->scanned);
	{
		/* bytes in = bytes out per link, as the model's own check: the
		 * integral of a link's rate against the bytes of its flows */
		double worst = 0;
		int wl = -1;
		for (int l = 0; l < t->nlinks; l++) {
			double by = sim_net_link_bytes(n, l);
			double e = by > 0 ? fabs(sim_net_link_rate_integral(n, l) - by) / by : 0;
			if (e > worst) {
				worst = e;
				wl = l;
			}
		}
		printf("#   conservation: max over links |rate integral - bytes| / bytes %.1e%s%s\n",
		       worst, wl >= 0 ? " on " : "", wl >= 0 ? t->links[wl].name : "");
	}
	fflush(stdout);
	if (against_exact) {
		/* the same traffic without coalescing: how far the run above is */
		struct sim_a2a_result rx;
		double mx = 0, mean = 0;

		sim_net_set_coalesce(n, 0);
		t0 = now_s();
		if (sim_a2a_run(n, t, tr, &o, fex, &rx) != MOE_OK) {
			fprintf(stderr, "bench_net: %s\n", moe_errmsg());
			return 1;
		}
		for (int g = 0; g < gpus; g++) {
			double e = fex[g] > 0 ? (fin[g] - fex[g]) / fex[g] : 0;
			mean += e / gpus;
			if (fabs(e) > mx)
				mx = fabs(e);
		}
		printf("#   against exact (%llu events, %.3f s): completion %+.2e, GPU finish "
		       "max |%.2e| mean %+.2e (relative)\n",
		       (unsigned long long)sim_net_stats(n)->events, now_s() - t0,
		       (r.completion_s - rx.completion_s) / rx.completion_s, mx, mean);
		fflush(stdout);
		sim_net_set_coalesce(n, coalesce);
	}
	free(fin);
	free(fex);
	gsl_rng_free(rng);
	free(w);
	free(perm);
	sim_traffic_free(tr);
	sim_net_free(n);
	sim_topo_free(t);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cluster = "dgx-h100", *gpus_list = "512,2048";
	enum sim_multipath mp = SIM_MULTIPATH_SPRAY;
	char buf[256], *save = NULL;
	int z0 = T_UNIFORM, z1 = T_ZIPF;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--gpus") == 0 && i + 1 < argc)
			gpus_list = argv[++i];
		else if (strcmp(argv[i], "--cluster") == 0 && i + 1 < argc)
			cluster = argv[++i];
		else if (strcmp(argv[i], "--coalesce") == 0 && i + 1 < argc)
			coalesce = atof(argv[++i]);
		else if (strcmp(argv[i], "--against-exact") == 0)
			against_exact = 1;
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			seed = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc &&
			 (repeat = atoi(argv[i + 1])) >= 1 && repeat <= 64)
			i++;
		else if (strcmp(argv[i], "--traffic") == 0 && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "uniform") == 0)
				z0 = z1 = T_UNIFORM;
			else if (strcmp(argv[i], "zipf") == 0)
				z0 = z1 = T_ZIPF;
			else if (strcmp(argv[i], "zipf-sampled") == 0)
				z0 = z1 = T_SAMPLED;
			else if (strcmp(argv[i], "all") == 0)
				z1 = T_SAMPLED;
			else if (strcmp(argv[i], "both") != 0)
				z0 = -1; /* usage */
		} else if (strcmp(argv[i], "--multipath") == 0 && i + 1 < argc)
			mp = strcmp(argv[++i], "ecmp") == 0 ? SIM_MULTIPATH_ECMP : SIM_MULTIPATH_SPRAY;
		else
			z0 = -1;
		if (z0 < 0) {
			fprintf(stderr, "usage: bench_net [--gpus N[,N...]] [--cluster NAME] "
					"[--multipath spray|ecmp] [--coalesce REL [--against-exact]] [--seed N]\n"
					"                 [--traffic uniform|zipf|zipf-sampled|both|all] [--repeat N (1..64)]\n");
			return 2;
		}
	}
	printf("# bench_net: direct all-to-all, 4096 tokens x top-8 x 7168 B per GPU, seed %lu, "
	       "coalesce %g, %d run%s a case\n", seed, coalesce, repeat, repeat > 1 ? "s" : "");
	printf("# %-8s %6s %-8s %-6s %9s %8s %12s %9s %10s %12s %12s %8s %10s %10s %10s\n",
	       "cluster", "gpus", "traffic", "paths", "flows", "events", "sim_s", "wall_s",
	       "warm_min_s", "events/s", "flows/s", "maxrss_MB", "solved", "rate_chg", "scanned");
	snprintf(buf, sizeof buf, "%s", gpus_list);
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		for (int z = z0; z <= z1; z++)
			if (run(cluster, atoi(tok), z, mp) != 0)
				return 1;
	return 0;
}
