/* cli/cmd_sweep.c: `moekit sweep SPEC`: run every point of a study as a
 * simulation and gather the runs in one store.
 *
 * Each point runs as `moekit sim ... --db TMP` in a child process (so a
 * point that fails or crashes cannot take the sweep down, and points run in
 * parallel with --jobs), and its finished runs are then copied into the
 * study's store under the point's label in one transaction.  A point whose
 * label is already done in the store is skipped, so a killed sweep resumes
 * where it stopped and loses only the points in flight.  Under MPI
 * (`mpirun -np N moekit sweep ...`) points are dealt out over the ranks;
 * each rank runs its points the same way and sends the finished point's
 * store file to rank 0, which alone writes the study's store.
 */
#include "config.h"
#include "cli/cli.h"
#include "store/store.h"
#include "study/sweep.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef HAVE_MPI
#include <mpi.h>
#endif

static const char usage_text[] =
	"Usage: moekit sweep SPEC [--db FILE] [--jobs N] [--mode events|analytic] [--quiet]\n"
	"       mpirun -np N moekit sweep SPEC [--db FILE] ...\n\n"
	"Run a study: every point of SPEC as one `moekit sim`, all stored in one results\n"
	"store with the label \"sweep NAME: POINT\".\n\n"
	"SPEC is an INI file:\n\n"
	"  [sweep]\n"
	"  name = h100-scaling\n"
	"  [fixed]                  ; `moekit sim` options every point gets\n"
	"  model = mixtral-8x7b\n"
	"  [axes]                   ; options that vary: values separated by commas\n"
	"  cluster = dgx-h100:1, dgx-h100:2, dgx-h100:4\n"
	"  top-k = 1, 2\n\n"
	"The points are the cross product of the axes (first axis slowest), or the\n"
	"points listed in a [points] section (`point = cluster=dgx-h100:1 top-k=2`).\n"
	"Axis and fixed names are long options of `moekit sim`: model, cluster, ep,\n"
	"tokens-per-gpu, placement, redundant-experts, algorithm, multipath, trace,\n"
	"step, pattern, seed, top-k, capacity-factor, phase, micro-batches, context,\n"
	"layers, mode, coalesce, slow-gpu, slow-link, and the flags overlap and\n"
	"no-dedup (values true or false).\n\n"
	"A sweep is resumable: points already done in the store are skipped, and a\n"
	"killed sweep loses at most the points that were running.  Each point runs\n"
	"in its own process; a point that fails is reported and the sweep goes on\n"
	"(exit status 1 at the end).\n\n"
	"Options:\n"
	"  --db FILE          results store (default: moekit.db)\n"
	"  -j, --jobs N       points run at once on this machine (default: 1)\n"
	"  --mode MODE        events (default) or analytic, passed to every point\n"
	"  --dry-run          list the points and whether they are done; run nothing\n"
	"  -q, --quiet        no progress bar\n"
	"  -h, --help         show this help\n\n"
	"Under MPI the points are dealt out over the ranks (point i to rank i mod N)\n"
	"and rank 0 alone writes the store.\n";

struct job {
	pid_t pid;
	int point;
	char db[256];
};

static int run_child(const struct study_sweep *sw, int i, const char *tmpdb, const char *mode,
		     pid_t *pid)
{
	const char *extra[] = {"--db", tmpdb, "--quiet", "--format", "json", NULL, NULL, NULL};
	char **argv;
	int argc;

	if (mode != NULL) {
		extra[5] = "--mode";
		extra[6] = mode;
	}
	if (study_sweep_argv(sw, i, extra, &argv, &argc) != MOE_OK)
		return -1;
	unlink(tmpdb);
	*pid = fork();
	if (*pid == 0) {
		/* argv[0] is the program's name, then the "sim" of the point. */
		char **full = calloc((size_t)argc + 2, sizeof(char *));
		/* The child's output is the point's json: not the sweep's. */
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			close(fd);
		}
		if (full == NULL)
			_exit(127);
		full[0] = "moekit";
		memcpy(full + 1, argv, sizeof(char *) * ((size_t)argc + 1));
		execv("/proc/self/exe", full);
		fprintf(stderr, "moekit sweep: cannot run moekit: %s\n", strerror(errno));
		_exit(127);
	}
	study_argv_free(argv);
	return *pid < 0 ? -1 : 0;
}

/* Waits for one child of jobs[0..n) and returns its index and exit status. */
static int wait_one(struct job *jobs, int n, int *status)
{
	pid_t pid;
	int ws;

	for (;;) {
		pid = waitpid(-1, &ws, 0);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0)
			return -1;
		for (int j = 0; j < n; j++)
			if (jobs[j].pid == pid) {
				*status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
				return j;
			}
	}
}

/* Runs the points todo[0..ntodo) on this machine with `jobs` at once and
 * hands each finished one to done_fn(point, tmpdb, status). */
typedef int (*point_done_fn)(void *user, int point, const char *tmpdb, int status);

static int run_points(const struct study_sweep *sw, const int *todo, int ntodo, int njobs,
		      const char *mode, const char *tmpdir, point_done_fn done_fn, void *user)
{
	struct job *jobs = calloc((size_t)njobs, sizeof *jobs);
	int next = 0, running = 0, failed = 0;

	if (jobs == NULL)
		return -1;
	while (next < ntodo || running > 0) {
		while (running < njobs && next < ntodo) {
			struct job *jb = &jobs[running];
			jb->point = todo[next++];
			snprintf(jb->db, sizeof jb->db, "%s/point-%d.db", tmpdir, jb->point);
			if (run_child(sw, jb->point, jb->db, mode, &jb->pid) != 0) {
				fprintf(stderr, "moekit sweep: cannot start point %d: %s\n", jb->point,
					strerror(errno));
				failed++;
				continue;
			}
			running++;
		}
		if (running > 0) {
			int status, j = wait_one(jobs, running, &status);
			struct job finished;
			if (j < 0)
				break;
			finished = jobs[j];
			jobs[j] = jobs[--running];
			if (done_fn(user, finished.point, finished.db, status) != 0)
				failed++;
			unlink(finished.db);
			{
				char side[300];
				snprintf(side, sizeof side, "%s-wal", finished.db);
				unlink(side);
				snprintf(side, sizeof side, "%s-shm", finished.db);
				unlink(side);
			}
		}
	}
	free(jobs);
	return failed;
}

struct gather {
	struct store *db;
	const struct study_sweep *sw;
	struct cli_bar bar;
	unsigned long long done, total;
	unsigned long long kill_after; /* MOEKIT_SWEEP_KILL_AFTER, tests only */
};

/* Copies a finished point's runs into the study's store. */
static int gather_point(void *user, int point, const char *tmpdb, int status)
{
	struct gather *g = user;
	char label[1024];
	int copied = 0;
	enum moe_status st;

	study_sweep_label(g->sw, point, label, sizeof label);
	if (status != 0) {
		fprintf(stderr, "moekit sweep: point %d (%s) failed with exit status %d\n", point,
			g->sw->points[point].key, status);
		return 1;
	}
	st = store_import(g->db, tmpdb, label, &copied);
	if (st != MOE_OK || copied == 0) {
		fprintf(stderr, "moekit sweep: point %d (%s): %s\n", point, g->sw->points[point].key,
			st != MOE_OK ? moe_errmsg() : "the simulation stored no finished run");
		return 1;
	}
	g->done++;
	cli_bar_update(&g->bar, g->done, g->total, "points");
	/* Fault injection for the resume test: die as `kill -9` would. */
	if (g->kill_after > 0 && g->done >= g->kill_after)
		raise(SIGKILL);
	return 0;
}

static int make_tmpdir(char *buf, size_t n)
{
	const char *base = getenv("TMPDIR");

	snprintf(buf, n, "%s/moekit-sweep-XXXXXX", base && *base ? base : "/tmp");
	return mkdtemp(buf) != NULL ? 0 : -1;
}

#ifdef HAVE_MPI
static int under_mpi(void)
{
	return getenv("PMI_SIZE") != NULL || getenv("OMPI_COMM_WORLD_SIZE") != NULL ||
	       getenv("PMIX_RANK") != NULL;
}

/* A worker rank sends each finished point's store to rank 0 as (point,
 * status, length) then the bytes. */
static int send_point(void *user, int point, const char *tmpdb, int status)
{
	long long hdr[3] = {point, status, 0};
	char *bytes = NULL;
	FILE *f;

	(void)user;
	if (status == 0 && (f = fopen(tmpdb, "rb")) != NULL) {
		fseek(f, 0, SEEK_END);
		hdr[2] = ftell(f);
		rewind(f);
		bytes = malloc(hdr[2] > 0 ? (size_t)hdr[2] : 1);
		if (bytes == NULL || fread(bytes, 1, (size_t)hdr[2], f) != (size_t)hdr[2]) {
			hdr[1] = 125;
			hdr[2] = 0;
		}
		fclose(f);
	}
	MPI_Send(hdr, 3, MPI_LONG_LONG, 0, 1, MPI_COMM_WORLD);
	if (hdr[2] > 0)
		MPI_Send(bytes, (int)hdr[2], MPI_BYTE, 0, 2, MPI_COMM_WORLD);
	free(bytes);
	return status != 0;
}
#endif

int cmd_sweep(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"jobs", required_argument, NULL, 'j'},
		{"mode", required_argument, NULL, 'm'},
		{"dry-run", no_argument, NULL, 'n'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = "moekit.db", *mode = NULL;
	long njobs = 1;
	int quiet = 0, dry = 0, o, rc = 0, ntodo = 0, *todo = NULL, failed = 0;
	int rank = 0, nranks = 1;
	char tmpdir[256] = "";
	struct study_sweep *sw = NULL;
	struct gather g;
	enum moe_status st;

	memset(&g, 0, sizeof g);
	while ((o = getopt_long(argc, argv, "j:qh", opts, NULL)) != -1) {
		switch (o) {
		case 'd': path = optarg; break;
		case 'j':
			if (!cli_parse_long("sweep", "--jobs", optarg, 1, 256, &njobs))
				return 2;
			break;
		case 'm':
			if (strcmp(optarg, "events") != 0 && strcmp(optarg, "analytic") != 0)
				return cli_usage("sweep", "--mode: '%s': expected events or analytic", optarg);
			mode = optarg;
			break;
		case 'n': dry = 1; break;
		case 'q': quiet = 1; break;
		case 'h':
			fputs(usage_text, stdout);
			return cli_finish_stdout("sweep");
		default:
			return cli_bad_option("sweep", argc, argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage("sweep", "expected one SPEC file");
	if ((st = study_sweep_load(argv[optind], &sw)) != MOE_OK)
		return cli_fail("sweep", st);
#ifdef HAVE_MPI
	if (under_mpi()) {
		MPI_Init(NULL, NULL);
		MPI_Comm_rank(MPI_COMM_WORLD, &rank);
		MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	}
#endif
	/* Rank 0 opens the store and decides which points are still to do. */
	todo = calloc((size_t)sw->npoints, sizeof *todo);
	if (todo == NULL) {
		rc = cli_fail("sweep", moe_error(MOE_ENOMEM, "out of memory"));
		goto out;
	}
	if (rank == 0) {
		if ((st = store_open(path, dry ? STORE_READ : STORE_WRITE, &g.db)) != MOE_OK &&
		    !(dry && st == MOE_ENOTFOUND)) {
			rc = cli_fail("sweep", st);
			ntodo = -1;
		} else {
			for (int i = 0; i < sw->npoints; i++) {
				char label[1024];
				int n = 0;
				if (g.db != NULL &&
				    store_count_done(g.db, study_sweep_label(sw, i, label, sizeof label),
						     &n) != MOE_OK) {
					rc = cli_fail("sweep", MOE_ESTORE);
					ntodo = -1;
					break;
				}
				if (dry)
					printf("%s  %s\n", n > 0 ? "done" : "todo", sw->points[i].key);
				if (n == 0)
					todo[ntodo++] = i;
			}
		}
	}
#ifdef HAVE_MPI
	if (nranks > 1) {
		MPI_Bcast(&ntodo, 1, MPI_INT, 0, MPI_COMM_WORLD);
		if (ntodo > 0)
			MPI_Bcast(todo, ntodo, MPI_INT, 0, MPI_COMM_WORLD);
	}
#endif
	if (ntodo < 0) {
		rc = rc ? rc : 1;
		goto out;
	}
	if (dry) {
		rc = cli_finish_stdout("sweep");
		goto out;
	}
	if (make_tmpdir(tmpdir, sizeof tmpdir) != 0) {
		rc = cli_fail("sweep", moe_error(MOE_EIO, "cannot make a temporary folder: %s",
						 strerror(errno)));
		goto out;
	}
	{
		/* This rank's share: every nranks-th point still to do. */
		int mine = 0;
		for (int i = 0; i < ntodo; i++)
			if (i % nranks == rank)
				todo[mine++] = todo[i];
		if (rank == 0) {
			const char *ka = getenv("MOEKIT_SWEEP_KILL_AFTER");
			g.sw = sw;
			g.total = (unsigned long long)ntodo;
			g.kill_after = ka ? strtoull(ka, NULL, 10) : 0;
			cli_bar_init(&g.bar, quiet);
			failed = run_points(sw, todo, mine, (int)njobs, mode, tmpdir, gather_point, &g);
#ifdef HAVE_MPI
			/* Then what the other ranks send. */
			for (int k = mine; k < ntodo && nranks > 1; k++) {
				long long hdr[3];
				MPI_Status ms;
				char tmp[300];
				MPI_Recv(hdr, 3, MPI_LONG_LONG, MPI_ANY_SOURCE, 1, MPI_COMM_WORLD, &ms);
				snprintf(tmp, sizeof tmp, "%s/recv-%lld.db", tmpdir, hdr[0]);
				if (hdr[2] > 0) {
					char *bytes = malloc((size_t)hdr[2]);
					FILE *f;
					MPI_Recv(bytes, (int)hdr[2], MPI_BYTE, ms.MPI_SOURCE, 2,
						 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
					f = fopen(tmp, "wb");
					if (f == NULL || bytes == NULL ||
					    fwrite(bytes, 1, (size_t)hdr[2], f) != (size_t)hdr[2])
						hdr[1] = 125;
					if (f) fclose(f);
					free(bytes);
				}
				failed += gather_point(&g, (int)hdr[0], tmp, (int)hdr[1]);
				unlink(tmp);
			}
#endif
			cli_bar_done(&g.bar);
		}
#ifdef HAVE_MPI
		else {
			failed = run_points(sw, todo, mine, (int)njobs, mode, tmpdir, send_point, NULL);
		}
		if (nranks > 1) {
			int all = 0;
			MPI_Reduce(&failed, &all, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
			if (rank == 0)
				failed = all;
		}
#endif
		if (failed < 0) {
			rc = cli_fail("sweep", moe_error(MOE_ENOMEM, "out of memory"));
		} else if (rank == 0) {
			fprintf(stderr, "moekit sweep: %s: %d points, %d run now, %d already done, "
				"%d failed\n", sw->name, sw->npoints, ntodo - failed,
				sw->npoints - ntodo, failed);
			rc = failed ? 1 : 0;
		}
	}
out:
	if (tmpdir[0])
		rmdir(tmpdir);
	store_close(g.db);
	free(todo);
	study_sweep_free(sw);
#ifdef HAVE_MPI
	if (nranks > 1 || under_mpi())
		MPI_Finalize();
#endif
	return rc;
}
