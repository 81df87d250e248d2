/* bench/bench_trace.c: .moetrace write and read throughput on one core.
 *
 *   bench/bench_trace [--entries N] [--path FILE] [--zstd LEVEL] [--keep]
 *
 * Writes a token-level trace of N routing entries (default 64 M: OLMoE's
 * shape, 16 layers x 64 experts x top-8, 8 source ranks, gate weights, no
 * logits) to FILE (default /tmp/bench_trace.moetrace), then reads it back
 * three ways from the page cache: raw (every chunk read, CRC-checked and
 * unpacked, nothing computed), loads (plus per-layer expert loads through
 * trace_chunk_loads), and again with zstd at LEVEL (default 3).  Prints
 * nccl-tests style: a '#' preamble, a header with units, one row per case,
 * and the peak resident set size (getrusage), which stays flat as N grows
 * because the reader and writer hold one chunk at a time.
 *
 * The ids are pseudo-random (a fixed LCG, skewed towards low experts) so
 * zstd sees realistic, not degenerate, data; one 64 Ki-token batch is
 * generated once per layer and reused so that generation is not timed. */
#include "config.h"
#include "traces/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define L 16
#define E 64
#define K 8
#define R 8
#define BATCH 65536

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long peak_rss_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_trace: %s: %s\n", what, moe_errmsg());
	exit(1);
}

struct batch {
	uint32_t ranks[BATCH];
	int32_t ids[BATCH * K];
	float w[BATCH * K];
};

static void make_batch(struct batch *b, uint32_t seed)
{
	uint32_t s = seed * 2654435761u + 1;

	for (uint32_t t = 0; t < BATCH; t++) {
		uint64_t used = 0;
		float sum = 0;
		b->ranks[t] = t * R / BATCH;
		for (int j = 0; j < K; j++) {
			uint32_t e;
			do {
				s = s * 1664525u + 1013904223u;
				/* min of two uniforms: a skew towards low ids */
				uint32_t a = (s >> 10) % E, c = (s >> 20) % E;
				e = a < c ? a : c;
			} while (used >> e & 1);
			used |= 1ull << e;
			b->ids[t * K + j] = (int32_t)e;
			b->w[t * K + j] = (float)((s >> 8) & 0xFFFF) / 65536.0f + 0.01f;
			sum += b->w[t * K + j];
		}
		for (int j = 0; j < K; j++)
			b->w[t * K + j] /= sum;
	}
}

/* Writes the trace; returns seconds. */
static double write_trace(const char *path, uint64_t tokens_per_layer, int zstd,
			  struct batch *const *bs)
{
	struct trace_header h;
	struct trace_writer *w;
	struct trace_writer_opts o = {zstd, 0};
	double t0;

	trace_header_init(&h, L, E, K, R);
	snprintf(h.model, sizeof h.model, "olmoe-1b-7b");
	t0 = now_s();
	if (trace_writer_open(path, &h, &o, &w) != MOE_OK)
		die("open for writing");
	for (uint32_t l = 0; l < L; l++) {
		uint64_t done = 0;
		while (done < tokens_per_layer) {
			size_t n = tokens_per_layer - done < BATCH ? (size_t)(tokens_per_layer - done) : BATCH;
			const struct batch *b = bs[l % 4];
			if (trace_writer_add_tokens(w, 0, l, n, b->ranks, b->ids, b->w, NULL) != MOE_OK)
				die("add_tokens");
			done += n;
		}
	}
	if (trace_writer_close(w) != MOE_OK)
		die("close");
	return now_s() - t0;
}

/* Reads every chunk; with loads, sums per-layer expert loads.  Returns
 * seconds; *entries gets the routing entries seen. */
static double read_trace(const char *path, int loads, uint64_t *entries, uint64_t *check)
{
	struct trace_reader *r;
	const struct trace_chunk *c;
	static uint64_t load[L][E];
	double t0 = now_s();

	memset(load, 0, sizeof load);
	*entries = 0;
	if (trace_reader_open(path, &r) != MOE_OK)
		die("open for reading");
	for (;;) {
		if (trace_reader_next(r, &c) != MOE_OK)
			die("next");
		if (c == NULL)
			break;
		*entries += (uint64_t)c->n * c->k;
		if (loads)
			trace_chunk_loads(c, load[c->layer]);
	}
	trace_reader_close(r);
	*check = 0;
	for (int l = 0; l < L; l++)
		for (int e = 0; e < E; e++)
			*check += load[l][e];
	return now_s() - t0;
}

static long long fsize(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
}

int main(int argc, char **argv)
{
	uint64_t entries = 64ull << 20, tokens_per_layer, seen, check;
	const char *path = "/tmp/bench_trace.moetrace";
	int zstd = 3, keep = 0;
	struct batch *bs[4];
	char host[256] = "?";

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--entries") == 0 && i + 1 < argc)
			entries = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--path") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strcmp(argv[i], "--zstd") == 0 && i + 1 < argc)
			zstd = atoi(argv[++i]);
		else if (strcmp(argv[i], "--keep") == 0)
			keep = 1;
		else {
			fprintf(stderr, "usage: bench_trace [--entries N] [--path FILE] [--zstd LEVEL] "
				"[--keep]\n");
			return 2;
		}
	}
	tokens_per_layer = entries / K / L;
	if (tokens_per_layer < 1)
		tokens_per_layer = 1;
	entries = tokens_per_layer * K * L;
	for (int i = 0; i < 4; i++) {
		bs[i] = malloc(sizeof *bs[i]);
		if (bs[i] == NULL)
			return 1;
		make_batch(bs[i], (uint32_t)i + 1);
	}
	gethostname(host, sizeof host);
	printf("# bench_trace: .moetrace throughput, one core, page cache\n");
	printf("# host %s, file %s\n", host, path);
	printf("# shape: %d layers x %llu tokens x top-%d of %d experts, %d ranks, gate weights, "
	       "no logits\n", L, (unsigned long long)tokens_per_layer, K, E, R);
	printf("# routing entries: %llu (%.1f M)\n", (unsigned long long)entries, entries / 1e6);
	printf("# raw read: every chunk read, CRC-checked, unpacked; loads: plus per-layer "
	       "expert loads\n");
	printf("# %-10s %-8s %12s %10s %10s %12s %10s\n", "case", "codec", "file_bytes", "time_s",
	       "GB/s", "Mentries/s", "rss_MiB");
	for (int pass = 0; pass < 2; pass++) {
		int z = pass ? zstd : 0;
		const char *codec = z ? "zstd" : "raw";
		char cname[16];
		double t;
		long long fb;

		if (pass == 1 && zstd == 0)
			break;
		if (z)
			snprintf(cname, sizeof cname, "zstd-%d", z);
		else
			snprintf(cname, sizeof cname, "raw");
		codec = cname;
		t = write_trace(path, tokens_per_layer, z, bs);
		fb = fsize(path);
		printf("  %-10s %-8s %12lld %10.3f %10.3f %12.1f %10.1f\n", "write", codec, fb, t,
		       fb / t / 1e9, entries / t / 1e6, peak_rss_kib() / 1024.0);
		/* one warm-up read so the file is in the page cache */
		read_trace(path, 0, &seen, &check);
		t = read_trace(path, 0, &seen, &check);
		printf("  %-10s %-8s %12lld %10.3f %10.3f %12.1f %10.1f\n", "read", codec, fb, t,
		       fb / t / 1e9, seen / t / 1e6, peak_rss_kib() / 1024.0);
		t = read_trace(path, 1, &seen, &check);
		if (check != entries) {
			fprintf(stderr, "bench_trace: loads sum to %llu, expected %llu\n",
				(unsigned long long)check, (unsigned long long)entries);
			return 1;
		}
		printf("  %-10s %-8s %12lld %10.3f %10.3f %12.1f %10.1f\n", "loads", codec, fb, t,
		       fb / t / 1e9, seen / t / 1e6, peak_rss_kib() / 1024.0);
	}
	printf("# peak RSS %.1f MiB (getrusage ru_maxrss)\n", peak_rss_kib() / 1024.0);
	if (!keep)
		unlink(path);
	for (int i = 0; i < 4; i++)
		free(bs[i]);
	return 0;
}
