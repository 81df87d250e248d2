/* tests/check_traces.c: the .moetrace format and its importers/exporters:
 * exact round trips, seeking through the index, every documented bad input
 * (crafted here by corrupting files), and determinism. */
#include "config.h"
#include "traces/trace.h"
#include "traces/io.h"
#include "moe/model.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zip.h>

static char tmpdir[256];

static const char *tpath(const char *name)
{
	static char buf[256][512]; /* a ring: callers keep up to 255 paths */
	static int i;

	i = (i + 1) % 256;
	snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, name);
	return buf[i];
}

static int exists(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0;
}

/* No file of the directory is a writer's leftover temporary. */
static int no_tmp_left(void)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "ls %s | grep -q '\\.tmp\\.'", tmpdir);
	return system(cmd) != 0;
}

static long fsize(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static unsigned char *slurp(const char *p, long *n)
{
	FILE *f = fopen(p, "rb");
	unsigned char *b;
	*n = fsize(p);
	ck_assert_ptr_nonnull(f);
	b = malloc((size_t)*n + 1);
	ck_assert_int_eq(fread(b, 1, (size_t)*n, f), *n);
	b[*n] = 0;
	fclose(f);
	return b;
}

static void spit(const char *p, const void *b, long n)
{
	FILE *f = fopen(p, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fwrite(b, 1, (size_t)n, f), n);
	fclose(f);
}

/* A deterministic token-level trace: S steps x L layers x T tokens, E experts,
 * k slots, R ranks; some slots none. */
struct synth {
	uint32_t S, L, T, E, k, R;
	uint32_t flags;
};

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

static void synth_tokens(const struct synth *y, uint64_t s, uint32_t l, uint32_t *ranks,
			 int32_t *ids, float *w, float *lg)
{
	uint32_t seed = (uint32_t)(s * 1000 + l * 7 + 1);
	for (uint32_t t = 0; t < y->T; t++) {
		ranks[t] = t * y->R / y->T;
		for (uint32_t j = 0; j < y->k; j++) {
			uint32_t v = lcg(&seed);
			ids[t * y->k + j] = (v % 17 == 0) ? TRACE_EXPERT_NONE : (int32_t)((v + j) % y->E);
			w[t * y->k + j] = ids[t * y->k + j] < 0 ? 0.f : (float)(v % 1000) / 997.f;
		}
		for (uint32_t e = 0; e < y->E; e++)
			lg[(size_t)t * y->E + e] = (float)((int)(lcg(&seed) % 20001) - 10000) / 333.f;
	}
}

static void write_synth(const char *path, const struct synth *y, int zstd, size_t chunk_tokens)
{
	struct trace_header h;
	struct trace_writer *w;
	struct trace_writer_opts o = {zstd, chunk_tokens};
	uint32_t *ranks = malloc(y->T * 4);
	int32_t *ids = malloc(y->T * y->k * 4);
	float *wt = malloc(y->T * y->k * 4), *lg = malloc((size_t)y->T * y->E * 4);

	trace_header_init(&h, y->L, y->E, y->k, y->R);
	h.flags = y->flags;
	snprintf(h.model, sizeof h.model, "test-model");
	ck_assert_int_eq(trace_writer_open(path, &h, &o, &w), MOE_OK);
	for (uint64_t s = 0; s < y->S; s++)
		for (uint32_t l = 0; l < y->L; l++) {
			synth_tokens(y, s, l, ranks, ids, wt, lg);
			ck_assert_msg(trace_writer_add_tokens(w, s, l, y->T, ranks, ids, wt, lg) == MOE_OK,
				      "%s", moe_errmsg());
		}
	ck_assert_msg(trace_writer_close(w) == MOE_OK, "%s", moe_errmsg());
	free(ranks);
	free(ids);
	free(wt);
	free(lg);
}

/* Reads the trace back and compares every value with what was written. */
static void verify_synth(const char *path, const struct synth *y)
{
	struct trace_reader *r;
	const struct trace_chunk *c;
	uint32_t *ranks = malloc(y->T * 4);
	int32_t *ids = malloc(y->T * y->k * 4);
	float *wt = malloc(y->T * y->k * 4), *lg = malloc((size_t)y->T * y->E * 4);
	uint64_t s = 0;
	uint32_t l = 0, t = 0;

	ck_assert_msg(trace_reader_open(path, &r) == MOE_OK, "%s", moe_errmsg());
	ck_assert_uint_eq(trace_reader_header(r)->layers, y->L);
	ck_assert_uint_eq(trace_reader_header(r)->experts, y->E);
	ck_assert_uint_eq(trace_reader_header(r)->top_k, y->k);
	ck_assert_uint_eq(trace_reader_header(r)->ranks, y->R);
	ck_assert_uint_eq(trace_reader_header(r)->steps, y->S);
	ck_assert_uint_eq(trace_reader_header(r)->flags, y->flags);
	ck_assert_str_eq(trace_reader_header(r)->model, "test-model");
	ck_assert_uint_eq(trace_reader_tokens(r), (uint64_t)y->S * y->L * y->T);
	synth_tokens(y, 0, 0, ranks, ids, wt, lg);
	for (;;) {
		ck_assert_msg(trace_reader_next(r, &c) == MOE_OK, "%s", moe_errmsg());
		if (c == NULL)
			break;
		ck_assert_uint_eq(c->step, s);
		ck_assert_uint_eq(c->layer, l);
		for (size_t i = 0; i < c->n; i++, t++) {
			ck_assert_uint_eq(c->ranks[i], ranks[t]);
			ck_assert_mem_eq(c->ids + i * y->k, ids + t * y->k, y->k * 4);
			if (y->flags & TRACE_F_WEIGHTS)
				ck_assert_mem_eq(c->weights + i * y->k, wt + t * y->k, y->k * 4);
			else
				ck_assert_ptr_null(c->weights);
			if (y->flags & TRACE_F_LOGITS)
				ck_assert_mem_eq(c->logits + i * y->E, lg + (size_t)t * y->E, y->E * 4);
			else
				ck_assert_ptr_null(c->logits);
		}
		if (t == y->T) {
			t = 0;
			if (++l == y->L) {
				l = 0;
				s++;
			}
			synth_tokens(y, s, l, ranks, ids, wt, lg);
		}
	}
	ck_assert_uint_eq(s, y->S);
	trace_reader_close(r);
	free(ranks);
	free(ids);
	free(wt);
	free(lg);
}

START_TEST(test_roundtrip_tokens)
{
	/* _i: 0 raw, 1 zstd; x weights/logits; small chunks force splits. */
	static const uint32_t flags[] = {TRACE_F_WEIGHTS, TRACE_F_WEIGHTS | TRACE_F_LOGITS, 0,
					 TRACE_F_LOGITS};
	for (int f = 0; f < 4; f++) {
		struct synth y = {3, 4, 50, 9, 2, 3, flags[f]};
		const char *p = tpath("rt.moetrace");
		write_synth(p, &y, _i, f % 2 ? 7 : 0);
		verify_synth(p, &y);
		ck_assert(!exists(tpath("rt.moetrace.tmp")));
		ck_assert(no_tmp_left());
	}
}
END_TEST

START_TEST(test_roundtrip_wide)
{
	/* 32-bit ids and ranks: E > 65535, R > 65536. */
	struct synth y = {1, 2, 20, 70000, 3, 70000, TRACE_F_WEIGHTS};
	const char *p = tpath("wide.moetrace");
	write_synth(p, &y, _i, 6);
	verify_synth(p, &y);
}
END_TEST

START_TEST(test_roundtrip_counts)
{
	struct trace_header h;
	struct trace_writer *w;
	struct trace_reader *r;
	const struct trace_chunk *c;
	struct trace_writer_opts o = {_i ? 5 : 0, 0};
	uint64_t counts[3 * 5], load[5] = {0};
	const char *p = tpath("counts.moetrace");
	int nchunks = 0;

	unlink(p);
	trace_header_init(&h, 2, 5, 2, 3);
	h.flags = TRACE_F_COUNTS;
	ck_assert_int_eq(trace_writer_open(p, &h, &o, &w), MOE_OK);
	for (int s = 0; s < 2; s++)
		for (int l = 0; l < 2; l++) {
			for (int i = 0; i < 15; i++)
				counts[i] = (uint64_t)(i * 3 + s * 100 + l * 10);
			ck_assert_int_eq(trace_writer_add_counts(w, s, l, counts), MOE_OK);
		}
	/* A count chunk must not repeat or go back. */
	ck_assert_int_eq(trace_writer_add_counts(w, 1, 1, counts), MOE_EINVAL);
	trace_writer_abort(w);
	ck_assert(!exists(p));
	ck_assert(no_tmp_left());

	ck_assert_int_eq(trace_writer_open(p, &h, &o, &w), MOE_OK);
	for (int s = 0; s < 2; s++)
		for (int l = 0; l < 2; l++) {
			for (int i = 0; i < 15; i++)
				counts[i] = (uint64_t)(i * 3 + s * 100 + l * 10);
			ck_assert_int_eq(trace_writer_add_counts(w, s, l, counts), MOE_OK);
		}
	ck_assert_int_eq(trace_writer_close(w), MOE_OK);
	ck_assert_int_eq(trace_reader_open(p, &r), MOE_OK);
	ck_assert_uint_eq(trace_reader_header(r)->flags, TRACE_F_COUNTS);
	ck_assert_uint_eq(trace_reader_header(r)->steps, 2);
	/* tokens in the footer = all counts: sum_i (3i) * 4 + 15*(0+10+100+110) */
	ck_assert_uint_eq(trace_reader_tokens(r), 315 * 4 + 15 * 220);
	while (trace_reader_next(r, &c) == MOE_OK && c != NULL) {
		ck_assert_int_eq(c->kind, TRACE_CHUNK_COUNTS);
		for (int i = 0; i < 15; i++)
			ck_assert_uint_eq(c->counts[i], (uint64_t)(i * 3 + c->step * 100 + c->layer * 10));
		if (c->step == 0 && c->layer == 1)
			trace_chunk_loads(c, load);
		nchunks++;
	}
	ck_assert_int_eq(nchunks, 4);
	/* expert e over ranks r: sum_r (3(5r+e) + 10) = 3*(15+3e)... hand: e=0: 0+15+30 + 30 = 75 */
	ck_assert_uint_eq(load[0], 75);
	ck_assert_uint_eq(load[4], 3 * (4 + 9 + 14) + 30);
	trace_reader_close(r);
}
END_TEST

START_TEST(test_loads_example)
{
	/* The worked example of traces/trace.h. */
	struct trace_header h;
	struct trace_writer *w;
	struct trace_reader *r;
	const struct trace_chunk *c;
	uint32_t ranks[3] = {0, 0, 1};
	int32_t ids[6] = {1, 2, 0, 3, 2, TRACE_EXPERT_NONE};
	float wts[6] = {.7f, .3f, .6f, .4f, 1.f, 0.f};
	uint64_t load[4] = {0};
	const char *p = tpath("ex.moetrace");

	trace_header_init(&h, 2, 4, 2, 2);
	ck_assert_int_eq(trace_writer_open(p, &h, NULL, &w), MOE_OK);
	for (uint32_t l = 0; l < 2; l++)
		ck_assert_int_eq(trace_writer_add_tokens(w, 0, l, 3, ranks, ids, wts, NULL), MOE_OK);
	ck_assert_int_eq(trace_writer_close(w), MOE_OK);
	ck_assert_int_eq(trace_reader_open(p, &r), MOE_OK);
	ck_assert_int_eq(trace_reader_next(r, &c), MOE_OK);
	ck_assert_ptr_nonnull(c->ids16);
	trace_chunk_loads(c, load);
	ck_assert_uint_eq(load[0], 1);
	ck_assert_uint_eq(load[1], 1);
	ck_assert_uint_eq(load[2], 2);
	ck_assert_uint_eq(load[3], 1);
	ck_assert_int_eq(c->ids[5], TRACE_EXPERT_NONE);
	trace_reader_close(r);
}
END_TEST

START_TEST(test_loads_paths)
{
	/* trace_chunk_loads against a plain count over c->ids, for each of its
	 * paths: 16-bit ids with E <= 1024 (interleaved histograms), 16-bit with
	 * E > 1024, 32-bit ids; chunk sizes not a multiple of 4. */
	static const uint32_t Es[] = {1, 7, 1024, 1025, 70000};
	for (size_t x = 0; x < sizeof Es / sizeof Es[0]; x++) {
		struct synth y = {1, 2, 37, Es[x], 1, 3, 0};
		const char *p = tpath("lp.moetrace");
		struct trace_reader *r;
		const struct trace_chunk *c;
		uint64_t *a = calloc(Es[x], 8), *b = calloc(Es[x], 8);
		write_synth(p, &y, 0, 13);
		ck_assert_int_eq(trace_reader_open(p, &r), MOE_OK);
		while (trace_reader_next(r, &c) == MOE_OK && c != NULL) {
			trace_chunk_loads(c, a);
			for (size_t i = 0; i < c->n * c->k; i++)
				if (c->ids[i] >= 0)
					b[c->ids[i]]++;
		}
		trace_reader_close(r);
		ck_assert_mem_eq(a, b, Es[x] * 8);
		free(a);
		free(b);
	}
}
END_TEST

START_TEST(test_empty)
{
	/* A trace with no chunk is valid: the reader ends at once. */
	struct trace_header h;
	struct trace_writer *w;
	struct trace_reader *r;
	const struct trace_chunk *c;
	const char *p = tpath("empty.moetrace");

	trace_header_init(&h, 3, 4, 1, 1);
	ck_assert_int_eq(trace_writer_open(p, &h, NULL, &w), MOE_OK);
	ck_assert_int_eq(trace_writer_close(w), MOE_OK);
	ck_assert_int_eq(fsize(p), 128 + 16 + 40);
	ck_assert_int_eq(trace_reader_open(p, &r), MOE_OK);
	ck_assert_uint_eq(trace_reader_chunks(r), 0);
	ck_assert_uint_eq(trace_reader_header(r)->steps, 0);
	ck_assert_int_eq(trace_reader_next(r, &c), MOE_OK);
	ck_assert_ptr_null(c);
	ck_assert_int_eq(trace_reader_seek(r, 0, 0), MOE_ENOTFOUND);
	trace_reader_close(r);
	/* NULL is a no-op for every destructor */
	ck_assert_int_eq(trace_writer_close(NULL), MOE_OK);
	trace_writer_abort(NULL);
	trace_reader_close(NULL);
	ck_assert_int_eq(trace_reader_open(tpath("no-such.moetrace"), &r), MOE_ENOTFOUND);
	ck_assert_ptr_null(r);
}
END_TEST

START_TEST(test_seek)
{
	struct synth y = {5, 3, 40, 8, 2, 2, TRACE_F_WEIGHTS};
	const char *p = tpath("seek.moetrace");
	struct trace_reader *r;
	const struct trace_chunk *c;

	write_synth(p, &y, _i, 15); /* 3 chunks per (step, layer) */
	ck_assert_int_eq(trace_reader_open(p, &r), MOE_OK);
	ck_assert_uint_eq(trace_reader_chunks(r), 5 * 3 * 3);
	for (int s = 4; s >= 0; s--)
		for (int l = 2; l >= 0; l--) {
			uint32_t ranks[40];
			int32_t ids[80];
			float wt[80], lg[40 * 8];
			size_t t = 0;
			ck_assert_int_eq(trace_reader_seek(r, (uint64_t)s, (uint32_t)l), MOE_OK);
			synth_tokens(&y, (uint64_t)s, (uint32_t)l, ranks, ids, wt, lg);
			while (t < 40) {
				ck_assert_int_eq(trace_reader_next(r, &c), MOE_OK);
				ck_assert_ptr_nonnull(c);
				ck_assert_uint_eq(c->step, (uint64_t)s);
				ck_assert_uint_eq(c->layer, (uint32_t)l);
				ck_assert_mem_eq(c->ids, ids + 2 * t, c->n * 2 * 4);
				t += c->n;
			}
		}
	ck_assert_int_eq(trace_reader_seek(r, 5, 0), MOE_ENOTFOUND);
	ck_assert_int_eq(trace_reader_seek(r, 2, 3), MOE_ENOTFOUND);
	ck_assert_int_eq(trace_reader_rewind(r), MOE_OK);
	ck_assert_int_eq(trace_reader_next(r, &c), MOE_OK);
	ck_assert_uint_eq(c->step, 0);
	trace_reader_close(r);
}
END_TEST

START_TEST(test_deterministic)
{
	struct synth y = {2, 3, 33, 6, 2, 2, TRACE_F_WEIGHTS | TRACE_F_LOGITS};
	long n1, n2;
	unsigned char *a, *b;

	write_synth(tpath("d1.moetrace"), &y, 3, 10);
	write_synth(tpath("d2.moetrace"), &y, 3, 10);
	a = slurp(tpath("d1.moetrace"), &n1);
	b = slurp(tpath("d2.moetrace"), &n2);
	ck_assert_int_eq(n1, n2);
	ck_assert_mem_eq(a, b, (size_t)n1);
	free(a);
	free(b);
}
END_TEST

/* Opens and reads a whole trace; returns the first failing status. */
static enum moe_status read_all(const char *p)
{
	struct trace_reader *r;
	const struct trace_chunk *c;
	enum moe_status st = trace_reader_open(p, &r);

	if (st != MOE_OK)
		return st;
	while ((st = trace_reader_next(r, &c)) == MOE_OK && c != NULL)
		;
	if (st == MOE_OK)
		st = trace_reader_seek(r, 0, 1);
	trace_reader_close(r);
	return st;
}

START_TEST(test_bad_files)
{
	struct synth y = {2, 2, 20, 5, 2, 2, TRACE_F_WEIGHTS};
	const char *p = tpath("good.moetrace"), *q = tpath("bad.moetrace");
	long n;
	unsigned char *b;

	write_synth(p, &y, 0, 0);
	b = slurp(p, &n);
	ck_assert_int_eq(read_all(p), MOE_OK);

	/* Truncated: every shorter length fails cleanly. */
	for (long m = 0; m < n; m += (m < 300 ? 1 : 37)) {
		spit(q, b, m);
		ck_assert_int_eq(read_all(q), MOE_EFORMAT);
	}
	spit(q, b, n - 1);
	ck_assert_int_eq(read_all(q), MOE_EFORMAT);
	ck_assert_msg(strstr(moe_errmsg(), "bad.moetrace") != NULL, "%s", moe_errmsg());

	/* Wrong magic. */
	b[0] = 'X';
	spit(q, b, n);
	ck_assert_int_eq(read_all(q), MOE_EFORMAT);
	ck_assert_msg(strstr(moe_errmsg(), "wrong magic") != NULL, "%s", moe_errmsg());
	b[0] = 'M';

	/* Unknown version (header CRC fixed up so only the version is wrong). */
	{
		unsigned char h[128];
		memcpy(h, b, 128);
		h[8] = 9;
		uint32_t c = (uint32_t)crc32_z(0, h, 124);
		for (int i = 0; i < 4; i++)
			h[124 + i] = (unsigned char)(c >> (8 * i));
		unsigned char *b2 = malloc((size_t)n);
		memcpy(b2, b, (size_t)n);
		memcpy(b2, h, 128);
		spit(q, b2, n);
		free(b2);
		ck_assert_int_eq(read_all(q), MOE_EVERSION);
		ck_assert_msg(strstr(moe_errmsg(), "version 9") != NULL, "%s", moe_errmsg());
	}

	/* A flipped payload byte in the second chunk (step 0, layer 1). */
	{
		long second;
		struct trace_reader *r;
		const struct trace_chunk *c;
		ck_assert_int_eq(trace_reader_open(p, &r), MOE_OK);
		ck_assert_int_eq(trace_reader_next(r, &c), MOE_OK);
		ck_assert_int_eq(trace_reader_next(r, &c), MOE_OK);
		second = (long)c->offset + 56 + 10;
		trace_reader_close(r);
		b[second] ^= 0x40;
		spit(q, b, n);
		b[second] ^= 0x40;
		ck_assert_int_eq(read_all(q), MOE_EFORMAT);
		ck_assert_msg(strstr(moe_errmsg(), "chunk (step 0, layer 1)") != NULL &&
			      strstr(moe_errmsg(), "crc mismatch") != NULL, "%s", moe_errmsg());
	}

	/* Every single-byte corruption is detected (or harmless padding). */
	for (long i = 0; i < n; i++) {
		enum moe_status st;
		b[i] ^= 0x01;
		spit(q, b, n);
		b[i] ^= 0x01;
		st = read_all(q);
		ck_assert_msg(st == MOE_EFORMAT || st == MOE_EVERSION,
			      "byte %ld: status %d", i, st);
	}
	free(b);
}
END_TEST

START_TEST(test_bad_writes)
{
	struct trace_header h;
	struct trace_writer *w;
	const char *p = tpath("w.moetrace");
	int32_t ids[4] = {0, 1, 2, 5};
	float wt[4] = {1, 1, 1, 1}, lg[8];
	uint32_t ranks[2] = {0, 3};

	unlink(p);
	trace_header_init(&h, 2, 4, 2, 2);
	h.top_k = 5;
	ck_assert_int_eq(trace_writer_open(p, &h, NULL, &w), MOE_EFORMAT);
	ck_assert_msg(strstr(moe_errmsg(), "top_k 5") != NULL, "%s", moe_errmsg());
	h.top_k = 2;
	h.flags = TRACE_F_COUNTS | TRACE_F_WEIGHTS;
	ck_assert_int_eq(trace_writer_open(p, &h, NULL, &w), MOE_EFORMAT);
	h.flags = TRACE_F_WEIGHTS;

	/* expert id >= E */
	ck_assert_int_eq(trace_writer_open(p, &h, NULL, &w), MOE_OK);
	ck_assert_int_eq(trace_writer_add_tokens(w, 0, 0, 2, NULL, ids, wt, NULL), MOE_ERANGE);
	ck_assert_msg(strstr(moe_errmsg(), "token 1, slot 1: expert id 5") != NULL, "%s",
		      moe_errmsg());
	/* the writer stays failed; close reports it and leaves nothing */
	ids[3] = 3;
	ck_assert_int_eq(trace_writer_add_tokens(w, 0, 0, 2, NULL, ids, wt, NULL), MOE_ERANGE);
	ck_assert_int_eq(trace_writer_close(w), MOE_ERANGE);
	ck_assert(!exists(p));
	ck_assert(no_tmp_left());

	/* rank out of range, NaN weight, inf logit, order, layer range */
	ck_assert_int_eq(trace_writer_open(p, &h, NULL, &w), MOE_OK);
	ck_assert_int_eq(trace_writer_add_tokens(w, 0, 0, 2, ranks, ids, wt, NULL), MOE_ERANGE);
	trace_writer_abort(w);
	ck_assert_int_eq(trace_writer_open(p, &h, NULL, &w), MOE_OK);
	wt[2] = NAN;
	ck_assert_int_eq(trace_writer_add_tokens(w, 0, 0, 2, NULL, ids, wt, NULL), MOE_ERANGE);
	wt[2] = 1;
	trace_writer_abort(w);
	h.flags |= TRACE_F_LOGITS;
	for (int i = 0; i < 8; i++)
		lg[i] = (float)i;
	lg[6] = INFINITY;
	ck_assert_int_eq(trace_writer_open(p, &h, NULL, &w), MOE_OK);
	ck_assert_int_eq(trace_writer_add_tokens(w, 0, 0, 2, NULL, ids, wt, NULL), MOE_EINVAL);
	trace_writer_abort(w);
	ck_assert_int_eq(trace_writer_open(p, &h, NULL, &w), MOE_OK);
	ck_assert_int_eq(trace_writer_add_tokens(w, 0, 0, 2, NULL, ids, wt, lg), MOE_ERANGE);
	ck_assert_msg(strstr(moe_errmsg(), "token 1, expert 2: logit inf") != NULL, "%s",
		      moe_errmsg());
	trace_writer_abort(w);
	lg[6] = 0;
	ck_assert_int_eq(trace_writer_open(p, &h, NULL, &w), MOE_OK);
	ck_assert_int_eq(trace_writer_add_tokens(w, 1, 1, 2, NULL, ids, wt, lg), MOE_OK);
	ck_assert_int_eq(trace_writer_add_tokens(w, 1, 0, 2, NULL, ids, wt, lg), MOE_EINVAL);
	trace_writer_abort(w);
	ck_assert_int_eq(trace_writer_open(p, &h, NULL, &w), MOE_OK);
	ck_assert_int_eq(trace_writer_add_tokens(w, 0, 2, 2, NULL, ids, wt, lg), MOE_EINVAL);
	trace_writer_abort(w);
	ck_assert(!exists(p));
	ck_assert(no_tmp_left());
}
END_TEST



/* ------------------------------------------------------ import / export */

/* Writes a .npy by hand (independently of the exporter). */
static void write_npy(const char *path, const char *descr, const char *shape, int fortran,
		      const void *data, size_t bytes)
{
	char h[128];
	int n = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
			 fortran ? "True" : "False", shape);
	FILE *f = fopen(path, "wb");
	int total = 10 + n + 1, pad = (64 - total % 64) % 64;
	unsigned hl = (unsigned)(n + pad + 1);

	ck_assert_ptr_nonnull(f);
	fwrite("\x93NUMPY\x01\x00", 1, 8, f);
	fputc((int)(hl & 0xFF), f);
	fputc((int)(hl >> 8), f);
	fwrite(h, 1, (size_t)n, f);
	for (int i = 0; i < pad; i++)
		fputc(' ', f);
	fputc('\n', f);
	fwrite(data, 1, bytes, f);
	fclose(f);
}

/* Reads back every token of a trace with one (step, layer) group per layer. */
static void read_layer(const char *p, uint32_t layer, int32_t *ids, float *w, float *lg,
		       uint32_t *ranks, size_t *n)
{
	struct trace_reader *r;
	const struct trace_chunk *c;
	const struct trace_header *h;

	*n = 0;
	ck_assert_msg(trace_reader_open(p, &r) == MOE_OK, "%s", moe_errmsg());
	h = trace_reader_header(r);
	ck_assert_int_eq(trace_reader_seek(r, 0, layer), MOE_OK);
	while (trace_reader_next(r, &c) == MOE_OK && c != NULL && c->layer == layer) {
		if (ids) memcpy(ids + *n * h->top_k, c->ids, c->n * h->top_k * 4);
		if (w) memcpy(w + *n * h->top_k, c->weights, c->n * h->top_k * 4);
		if (lg) memcpy(lg + *n * h->experts, c->logits, c->n * h->experts * 4);
		if (ranks) memcpy(ranks + *n, c->ranks, c->n * 4);
		*n += c->n;
	}
	trace_reader_close(r);
}

START_TEST(test_npy_f32_route)
{
	/* 2 layers x 3 tokens x 4 experts; layer 0 token 0 is route.h's worked
	 * example: logits [1, 3, 2, 0], top-2 -> ids [1, 2], weights
	 * e^3/(e^3+e^2) = 0.7310586, 0.2689414. */
	float x[2][3][4] = {{{1, 3, 2, 0}, {0, 0, 5, -1}, {-2, 4, 4.5f, 1}},
			    {{9, 8, 7, 6}, {0.5f, 0.25f, 0.125f, 1}, {3, -3, 3.5f, 0}}};
	struct trace_import_opts o;
	const char *in = tpath("x.npy"), *out = tpath("x.moetrace");
	int32_t ids[6];
	float w[6], lg[12];
	uint32_t ranks[3];
	size_t n;

	write_npy(in, "<f4", "(2, 3, 4)", 0, x, sizeof x);
	trace_import_opts_init(&o);
	o.top_k = 2;
	o.ranks = 2;
	ck_assert_msg(trace_import(in, out, &o) == MOE_OK, "%s", moe_errmsg());
	read_layer(out, 0, ids, w, lg, ranks, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(ids[0], 1);
	ck_assert_int_eq(ids[1], 2);
	ck_assert_float_eq_tol(w[0], 0.7310586f, 1e-6f);
	ck_assert_float_eq_tol(w[1], 0.2689414f, 1e-6f);
	ck_assert_int_eq(ids[2], 2);
	ck_assert_int_eq(ids[3], 0); /* 0 and 1 tie at 0: the lower id ranks first */
	ck_assert_int_eq(ids[4], 2);
	ck_assert_int_eq(ids[5], 1);
	ck_assert_mem_eq(lg, x[0], sizeof x[0]);
	/* tokens 0..2 over 2 ranks: floor(t * 2 / 3) = 0, 0, 1 */
	ck_assert_uint_eq(ranks[0], 0);
	ck_assert_uint_eq(ranks[1], 0);
	ck_assert_uint_eq(ranks[2], 1);
	read_layer(out, 1, ids, w, lg, NULL, &n);
	ck_assert_int_eq(ids[0], 0);
	ck_assert_int_eq(ids[1], 1);
	ck_assert_mem_eq(lg, x[1], sizeof x[1]);

	/* No top-k: a usage error; nothing written. */
	unlink(out);
	o.top_k = 0;
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EINVAL);
	ck_assert(!exists(out));
}
END_TEST

START_TEST(test_npy_half)
{
	/* Exact values: f16 1.5 0x3E00, -2.25 0xC080, 65504 0x7BFF, 2^-24 0x0001
	 * (subnormal), 2^-14 0x0400, -0 0x8000; bf16 1.5 0x3FC0, -2.25 0xC010,
	 * 3.140625 0x4049. */
	uint16_t h16[2][3] = {{0x3E00, 0xC080, 0x7BFF}, {0x0001, 0x0400, 0x8000}};
	float want16[6] = {1.5f, -2.25f, 65504.f, 5.9604645e-8f, 6.1035156e-5f, -0.f};
	uint16_t b16[2][3] = {{0x3FC0, 0xC010, 0x4049}, {0x0000, 0x3F80, 0xBF80}};
	float want_b[6] = {1.5f, -2.25f, 3.140625f, 0.f, 1.f, -1.f};
	struct trace_import_opts o;
	const char *in = tpath("h.npy"), *out = tpath("h.moetrace");
	float lg[6];
	size_t n;

	trace_import_opts_init(&o);
	o.top_k = 1;
	write_npy(in, "<f2", "(2, 3)", 0, h16, sizeof h16);
	ck_assert_msg(trace_import(in, out, &o) == MOE_OK, "%s", moe_errmsg());
	read_layer(out, 0, NULL, NULL, lg, NULL, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_mem_eq(lg, want16, sizeof want16);

	write_npy(in, "<u2", "(2, 3)", 0, b16, sizeof b16);
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EINVAL); /* needs --dtype */
	ck_assert_msg(strstr(moe_errmsg(), "--dtype bf16") != NULL, "%s", moe_errmsg());
	o.dtype = TRACE_DTYPE_BF16;
	ck_assert_msg(trace_import(in, out, &o) == MOE_OK, "%s", moe_errmsg());
	read_layer(out, 0, NULL, NULL, lg, NULL, &n);
	ck_assert_mem_eq(lg, want_b, sizeof want_b);
	/* --dtype f16 on '<u2' reads IEEE halves: 0x3FC0 = 1.9375 */
	o.dtype = TRACE_DTYPE_F16;
	ck_assert_msg(trace_import(in, out, &o) == MOE_OK, "%s", moe_errmsg());
	read_layer(out, 0, NULL, NULL, lg, NULL, &n);
	ck_assert_float_eq(lg[0], 1.9375f);
	/* --dtype bf16 on a '<f2' array disagrees */
	o.dtype = TRACE_DTYPE_BF16;
	write_npy(in, "<f2", "(2, 3)", 0, h16, sizeof h16);
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EINVAL);
}
END_TEST

/* Builds an .npz (a zip of .npy members, stored) with libzip. */
static void write_npz(const char *path, int n, const char *const *names, const char *const *files)
{
	int err = 0;
	zip_t *z;

	unlink(path);
	z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
	ck_assert_ptr_nonnull(z);
	for (int i = 0; i < n; i++) {
		zip_source_t *s = zip_source_file(z, files[i], 0, -1);
		ck_assert_ptr_nonnull(s);
		ck_assert_int_ge(zip_file_add(z, names[i], s, ZIP_FL_OVERWRITE), 0);
	}
	ck_assert_int_eq(zip_close(z), 0);
}

START_TEST(test_npz)
{
	float a[3][4] = {{1, 3, 2, 0}, {0, 1, 0, 0}, {5, 0, 0, 6}};
	float b[3][4] = {{4, 3, 2, 1}, {0, 0, 0, 1}, {0, 7, 0, 6}};
	int64_t ids[3][2] = {{3, 1}, {0, -1}, {2, 3}};
	float w[3][2] = {{.75f, .25f}, {1, 0}, {.5f, .5f}};
	struct trace_import_opts o;
	const char *out = tpath("z.moetrace");
	const char *files[3] = {tpath("a.npy"), tpath("b.npy"), tpath("c.npy")};
	int32_t rid[6];
	float rw[6], lg[12];
	size_t n;

	write_npy(files[0], "<f4", "(3, 4)", 0, a, sizeof a);
	write_npy(files[1], "<f4", "(3, 4)", 0, b, sizeof b);
	/* Members in the wrong order and a foreign member: sorted and ignored. */
	{
		const char *names[3] = {"layer_1.npy", "layer_0.npy", "tokens.npy"};
		const char *f3[3] = {files[1], files[0], files[0]};
		write_npz(tpath("l.npz"), 3, names, f3);
	}
	trace_import_opts_init(&o);
	o.top_k = 2;
	o.zstd_level = 3;
	ck_assert_msg(trace_import(tpath("l.npz"), out, &o) == MOE_OK, "%s", moe_errmsg());
	read_layer(out, 0, rid, rw, lg, NULL, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_mem_eq(lg, a, sizeof a);
	ck_assert_int_eq(rid[4], 3);
	ck_assert_int_eq(rid[5], 0);
	read_layer(out, 1, rid, rw, lg, NULL, &n);
	ck_assert_mem_eq(lg, b, sizeof b);
	ck_assert_int_eq(rid[0], 0);

	/* Top-k ids and weights per layer. */
	write_npy(files[2], "<i8", "(3, 2)", 0, ids, sizeof ids);
	write_npy(files[1], "<f4", "(3, 2)", 0, w, sizeof w);
	{
		const char *names[2] = {"ids_layer_0.npy", "weights_layer_0.npy"};
		const char *f2[2] = {files[2], files[1]};
		write_npz(tpath("k.npz"), 2, names, f2);
	}
	o.top_k = 0;
	ck_assert_int_eq(trace_import(tpath("k.npz"), out, &o), MOE_EINVAL); /* no experts */
	o.experts = 4;
	ck_assert_msg(trace_import(tpath("k.npz"), out, &o) == MOE_OK, "%s", moe_errmsg());
	read_layer(out, 0, rid, rw, NULL, NULL, &n);
	ck_assert_int_eq(rid[0], 3);
	ck_assert_int_eq(rid[3], TRACE_EXPERT_NONE);
	ck_assert_mem_eq(rw, w, sizeof w);
	/* Stacked ids [layers, tokens, k] (int32) with weights, and per-step
	 * member names: step_1_layer_0 comes after layer_0 (step 0). */
	{
		int32_t sid[2][3][2] = {{{3, 1}, {0, -1}, {2, 3}}, {{1, 0}, {2, 1}, {0, 3}}};
		float sw[2][3][2] = {{{.75f, .25f}, {1, 0}, {.5f, .5f}}, {{.6f, .4f}, {.9f, .1f}, {.5f, .5f}}};
		const char *names[2] = {"ids.npy", "weights.npy"};
		const char *f2[2] = {files[2], files[1]};
		struct trace_reader *r;
		const struct trace_chunk *c;
		write_npy(files[2], "<i4", "(2, 3, 2)", 0, sid, sizeof sid);
		write_npy(files[1], "<f4", "(2, 3, 2)", 0, sw, sizeof sw);
		write_npz(tpath("ks.npz"), 2, names, f2);
		o.experts = 4;
		ck_assert_msg(trace_import(tpath("ks.npz"), out, &o) == MOE_OK, "%s", moe_errmsg());
		read_layer(out, 1, rid, rw, NULL, NULL, &n);
		ck_assert_uint_eq(n, 3);
		ck_assert_mem_eq(rid, sid[1], sizeof sid[1]);
		ck_assert_mem_eq(rw, sw[1], sizeof sw[1]);

		write_npy(files[0], "<f4", "(3, 4)", 0, a, sizeof a);
		write_npy(files[1], "<f4", "(3, 4)", 0, b, sizeof b);
		{
			const char *nm[2] = {"step_1_layer_0.npy", "layer_0.npy"};
			const char *ff[2] = {files[1], files[0]};
			write_npz(tpath("st.npz"), 2, nm, ff);
		}
		o.top_k = 1;
		o.experts = 0;
		ck_assert_msg(trace_import(tpath("st.npz"), out, &o) == MOE_OK, "%s", moe_errmsg());
		ck_assert_int_eq(trace_reader_open(out, &r), MOE_OK);
		ck_assert_uint_eq(trace_reader_header(r)->steps, 2);
		ck_assert_int_eq(trace_reader_seek(r, 1, 0), MOE_OK);
		ck_assert_int_eq(trace_reader_next(r, &c), MOE_OK);
		ck_assert_mem_eq(c->logits, b, sizeof b);
		ck_assert_int_eq(c->ids[0], 0); /* argmax of {4, 3, 2, 1} */
		trace_reader_close(r);
		/* layers whose token counts disagree are refused */
		{
			const char *nm[2] = {"layer_0.npy", "layer_1.npy"};
			const char *ff[2] = {files[0], files[2]};
			write_npy(files[2], "<f4", "(2, 4)", 0, a, 2 * sizeof a[0]);
			write_npz(tpath("tk.npz"), 2, nm, ff);
			unlink(out);
			ck_assert_int_eq(trace_import(tpath("tk.npz"), out, &o), MOE_EFORMAT);
			ck_assert_msg(strstr(moe_errmsg(), "layer_1.npy: 2 tokens: the other arrays have 3") !=
				      NULL, "%s", moe_errmsg());
			ck_assert(!exists(out));
			write_npy(files[2], "<i4", "(2, 3, 2)", 0, sid, sizeof sid);
		}
		/* logits and ids in one file are refused */
		{
			const char *nm[2] = {"layer_0.npy", "ids_layer_0.npy"};
			const char *ff[2] = {files[0], files[2]};
			write_npz(tpath("mix.npz"), 2, nm, ff);
		}
		unlink(out);
		ck_assert_int_eq(trace_import(tpath("mix.npz"), out, &o), MOE_EFORMAT);
		ck_assert(!exists(out));
		o.top_k = 0;
		write_npy(files[2], "<i8", "(3, 2)", 0, ids, sizeof ids);
	}
	/* an id >= experts */
	o.experts = 3;
	unlink(out);
	ck_assert_int_eq(trace_import(tpath("k.npz"), out, &o), MOE_EFORMAT);
	ck_assert_msg(strstr(moe_errmsg(), "expert id 3") != NULL, "%s", moe_errmsg());
	ck_assert(!exists(out));
	ck_assert(no_tmp_left());
}
END_TEST

START_TEST(test_npy_bad)
{
	float x[2][4] = {{1, 2, 3, 4}, {5, 6, 7, 8}};
	double d[2] = {1, 2};
	struct trace_import_opts o;
	const char *in = tpath("bad.npy"), *out = tpath("bad.moetrace");
	struct moe_model m;

	unlink(out);
	trace_import_opts_init(&o);
	o.top_k = 2;
	write_npy(in, "<f8", "(2,)", 0, d, sizeof d);
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EFORMAT);
	ck_assert_msg(strstr(moe_errmsg(), "dtype '<f8' is not supported") != NULL, "%s",
		      moe_errmsg());
	write_npy(in, ">f4", "(2, 4)", 0, x, sizeof x);
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EFORMAT);
	write_npy(in, "<f4", "(2, 4)", 1, x, sizeof x);
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EFORMAT);
	ck_assert_msg(strstr(moe_errmsg(), "Fortran order") != NULL, "%s", moe_errmsg());
	write_npy(in, "<f4", "(4,)", 0, x, 16);
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EFORMAT);
	/* truncated data */
	write_npy(in, "<f4", "(3, 4)", 0, x, sizeof x);
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EFORMAT);
	ck_assert_msg(strstr(moe_errmsg(), "truncated") != NULL, "%s", moe_errmsg());
	/* NaN and infinity */
	x[1][2] = NAN;
	write_npy(in, "<f4", "(2, 4)", 0, x, sizeof x);
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EFORMAT);
	ck_assert_msg(strstr(moe_errmsg(), "row 1, column 2") != NULL, "%s", moe_errmsg());
	x[1][2] = -INFINITY;
	write_npy(in, "<f4", "(2, 4)", 0, x, sizeof x);
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EFORMAT);
	x[1][2] = 7;
	/* shape against the model: olmoe has 64 experts */
	write_npy(in, "<f4", "(2, 4)", 0, x, sizeof x);
	ck_assert_int_eq(moe_model_load("olmoe-1b-7b", &m), MOE_OK);
	o.model = &m;
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EFORMAT);
	ck_assert_msg(strstr(moe_errmsg(), "4 experts: the model olmoe-1b-7b has 64") != NULL, "%s",
		      moe_errmsg());
	o.model = NULL;
	/* top-k above the experts */
	o.top_k = 5;
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EINVAL);
	/* not a .npy; missing file */
	spit(in, "hello world, not numpy", 22);
	o.top_k = 2;
	ck_assert_int_eq(trace_import(in, out, &o), MOE_EFORMAT);
	ck_assert_int_eq(trace_import(tpath("none.npy"), out, &o), MOE_ENOTFOUND);
	spit(tpath("bad.npz"), "PK\003\004garbage", 12);
	ck_assert_int_eq(trace_import(tpath("bad.npz"), out, &o), MOE_EFORMAT);
	ck_assert(!exists(out));
	ck_assert(no_tmp_left());
}
END_TEST

/* Exports in to fmt and imports it back; the two traces must hold the same
 * tokens (compared through a second export, byte for byte). */
static void text_roundtrip(const char *in, const char *ext, uint32_t experts)
{
	char a[64], b[64], t2[64];
	struct trace_export_opts eo;
	struct trace_import_opts io;
	long n1, n2;
	unsigned char *x, *y;

	snprintf(a, sizeof a, "rt1.%s", ext);
	snprintf(b, sizeof b, "rt2.%s", ext);
	snprintf(t2, sizeof t2, "rt-%s.moetrace", ext);
	trace_export_opts_init(&eo);
	trace_import_opts_init(&io);
	io.experts = experts;
	ck_assert_msg(trace_export(in, tpath(a), &eo) == MOE_OK, "%s", moe_errmsg());
	ck_assert_msg(trace_import(tpath(a), tpath(t2), &io) == MOE_OK, "%s", moe_errmsg());
	ck_assert_msg(trace_export(tpath(t2), tpath(b), &eo) == MOE_OK, "%s", moe_errmsg());
	x = slurp(tpath(a), &n1);
	y = slurp(tpath(b), &n2);
	ck_assert_int_eq(n1, n2);
	ck_assert_mem_eq(x, y, (size_t)n1);
	free(x);
	free(y);
}

START_TEST(test_text_roundtrip)
{
	/* Token level with and without logits, through JSONL and CSV; the
	 * re-imported trace must equal the original value by value. */
	struct synth y = {2, 3, 25, 6, 2, 3, TRACE_F_WEIGHTS | TRACE_F_LOGITS};
	struct synth y2 = {2, 3, 25, 6, 2, 3, TRACE_F_WEIGHTS};
	struct trace_import_opts io;
	struct trace_export_opts eo;

	write_synth(tpath("tl.moetrace"), &y, 0, 0);
	text_roundtrip(tpath("tl.moetrace"), "jsonl", 0);
	trace_import_opts_init(&io);
	trace_export_opts_init(&eo);
	ck_assert_int_eq(trace_export(tpath("tl.moetrace"), tpath("v.jsonl"), &eo), MOE_OK);
	ck_assert_int_eq(trace_import(tpath("v.jsonl"), tpath("v.moetrace"), &io), MOE_OK);
	{
		/* the model name is not carried by JSONL: compare the rest */
		struct synth yy = y;
		(void)yy;
		struct trace_reader *r;
		ck_assert_int_eq(trace_reader_open(tpath("v.moetrace"), &r), MOE_OK);
		ck_assert_uint_eq(trace_reader_header(r)->flags, y.flags);
		ck_assert_uint_eq(trace_reader_tokens(r), 2 * 3 * 25);
		trace_reader_close(r);
	}
	/* Awkward floats survive JSONL and CSV bit for bit: -0, the smallest
	 * subnormal, the largest float, a value needing all 9 digits. */
	{
		static const float v[4] = {-0.0f, 1.40129846e-45f, 3.40282347e38f, 0.1f + 1e-8f};
		float lg[4], w[4];
		int32_t ids[4] = {0, 1, 2, 3};
		struct trace_header h;
		struct trace_writer *w8;
		size_t n;
		const char *fmts[2] = {"f.jsonl", "f.csv"};
		trace_header_init(&h, 1, 4, 1, 1);
		h.flags = TRACE_F_WEIGHTS | TRACE_F_LOGITS;
		ck_assert_int_eq(trace_writer_open(tpath("f.moetrace"), &h, NULL, &w8), MOE_OK);
		for (int t = 0; t < 4; t++) {
			float row[4] = {v[t], v[(t + 1) % 4], v[(t + 2) % 4], v[(t + 3) % 4]};
			ck_assert_int_eq(trace_writer_add_tokens(w8, 0, 0, 1, NULL, ids + t, v + t, row),
					 MOE_OK);
		}
		ck_assert_int_eq(trace_writer_close(w8), MOE_OK);
		for (int f = 0; f < 2; f++) {
			trace_import_opts_init(&io);
			io.experts = 4;
			ck_assert_int_eq(trace_export(tpath("f.moetrace"), tpath(fmts[f]), &eo), MOE_OK);
			ck_assert_msg(trace_import(tpath(fmts[f]), tpath("f2.moetrace"), &io) == MOE_OK, "%s",
				      moe_errmsg());
			read_layer(tpath("f2.moetrace"), 0, NULL, w, NULL, NULL, &n);
			ck_assert_uint_eq(n, 4);
			ck_assert_mem_eq(w, v, sizeof v);
			if (f == 0) {
				float all[16];
				read_layer(tpath("f2.moetrace"), 0, NULL, NULL, all, NULL, &n);
				ck_assert_mem_eq(all, v, sizeof v);
				(void)lg;
			}
		}
	}
	write_synth(tpath("tw.moetrace"), &y2, 0, 0);
	text_roundtrip(tpath("tw.moetrace"), "jsonl", 6);
	text_roundtrip(tpath("tw.moetrace"), "csv", 6);
	/* npy export of logits equals what was written */
	{
		float *lg = malloc(25 * 6 * 4), wt[50];
		uint32_t rk[25];
		int32_t id[50];
		long n;
		unsigned char *b;
		eo.array = TRACE_NPY_LOGITS;
		eo.step = 1;
		eo.layer = 2;
		ck_assert_int_eq(trace_export(tpath("tl.moetrace"), tpath("lg.npy"), &eo), MOE_OK);
		b = slurp(tpath("lg.npy"), &n);
		synth_tokens(&y, 1, 2, rk, id, wt, lg);
		ck_assert_int_eq(n, 256 + 25 * 6 * 4);
		ck_assert(strstr((char *)b + 10, "'shape': (25, 6)") != NULL);
		ck_assert_mem_eq(b + 256, lg, 25 * 6 * 4);
		free(b);
		free(lg);
		/* and imports back to the same logits */
		trace_import_opts_init(&io);
		io.top_k = 2;
		ck_assert_int_eq(trace_import(tpath("lg.npy"), tpath("lg.moetrace"), &io), MOE_OK);
	}
}
END_TEST

START_TEST(test_counts_csv)
{
	const char *csv = "step,layer,rank,expert,tokens\n"
			  "0,0,0,1,5\n0,0,1,3,7\n0,0,1,3,1\n0,2,0,0,4\n1,0,1,2,9\n";
	struct trace_import_opts io;
	struct trace_export_opts eo;
	struct trace_reader *r;
	const struct trace_chunk *c;
	long n;
	unsigned char *b;

	spit(tpath("c.csv"), csv, (long)strlen(csv));
	trace_import_opts_init(&io);
	io.experts = 4;
	ck_assert_msg(trace_import(tpath("c.csv"), tpath("c.moetrace"), &io) == MOE_OK, "%s",
		      moe_errmsg());
	ck_assert_int_eq(trace_reader_open(tpath("c.moetrace"), &r), MOE_OK);
	ck_assert_uint_eq(trace_reader_header(r)->flags, TRACE_F_COUNTS);
	ck_assert_uint_eq(trace_reader_header(r)->ranks, 2);
	ck_assert_uint_eq(trace_reader_header(r)->layers, 3);
	ck_assert_uint_eq(trace_reader_chunks(r), 3);
	ck_assert_uint_eq(trace_reader_tokens(r), 26);
	ck_assert_int_eq(trace_reader_next(r, &c), MOE_OK);
	ck_assert_uint_eq(c->counts[1], 5);
	ck_assert_uint_eq(c->counts[4 + 3], 8); /* two rows of one cell add */
	trace_reader_close(r);
	/* export gives the same rows, the duplicate merged */
	trace_export_opts_init(&eo);
	ck_assert_int_eq(trace_export(tpath("c.moetrace"), tpath("c2.csv"), &eo), MOE_OK);
	b = slurp(tpath("c2.csv"), &n);
	b[n] = 0;
	ck_assert_str_eq((char *)b, "step,layer,rank,expert,tokens\n"
				    "0,0,0,1,5\n0,0,1,3,8\n0,2,0,0,4\n1,0,1,2,9\n");
	free(b);
	text_roundtrip(tpath("c.moetrace"), "jsonl", 4);
	text_roundtrip(tpath("c.moetrace"), "csv", 4);
	/* npy export of counts: [groups, ranks, experts] int64 */
	eo.array = TRACE_NPY_AUTO;
	ck_assert_int_eq(trace_export(tpath("c.moetrace"), tpath("c.npy"), &eo), MOE_OK);
	b = slurp(tpath("c.npy"), &n);
	ck_assert(strstr((char *)b + 10, "'descr': '<i8'") != NULL);
	ck_assert(strstr((char *)b + 10, "'shape': (3, 2, 4)") != NULL);
	ck_assert_int_eq(n, 256 + 3 * 2 * 4 * 8);
	free(b);
}
END_TEST

START_TEST(test_text_bad)
{
	static const struct {
		const char *name, *text, *msg;
		enum moe_status st;
	} cases[] = {
		{"u.jsonl", "{\"step\":0,\"layer\":1,\"experts\":[0]}\n{\"step\":0,\"layer\":0,"
			    "\"experts\":[1]}\n", "must be sorted", MOE_EFORMAT},
		{"k.jsonl", "{\"step\":0,\"layer\":0,\"experts\":[0,1]}\n{\"step\":0,\"layer\":0,"
			    "\"experts\":[1]}\n", ":2: 1 experts", MOE_EFORMAT},
		{"e.jsonl", "{\"step\":0,\"layer\":0,\"experts\":[0,-2]}\n", "experts[1]", MOE_EFORMAT},
		{"n.jsonl", "{\"step\":0,\"layer\":0,\"experts\":[0],\"weights\":[1e999]}\n", ":1:",
		 MOE_EFORMAT},
		{"s.jsonl", "not json\n", ":1: not a JSON object", MOE_EFORMAT},
		{"m.jsonl", "{\"layer\":0,\"experts\":[0]}\n", "\"step\" missing", MOE_EFORMAT},
		{"x.jsonl", "{\"step\":0,\"layer\":0,\"experts\":[9]}\n", "expert id 9", MOE_EFORMAT},
		{"h.csv", "a,b\n1,2\n", "header row", MOE_EFORMAT},
		{"f.csv", "step,layer,token,rank,expert_0\n0,0,0,0,1,2\n", ":2: 6 fields", MOE_EFORMAT},
		{"v.csv", "step,layer,token,rank,expert_0,weight_0\n0,0,0,0,1,nan\n", "weight_0 'nan'",
		 MOE_EFORMAT},
		{"w.csv", "step,layer,token,rank,expert_0,weight_0\n0,0,0,0,x,1\n", "expert_0 'x'",
		 MOE_EFORMAT},
		{"c.csv", "step,layer,rank,expert,tokens\n0,0,0,7,1\n", "expert id 7", MOE_EFORMAT},
		{"z.csv", "step,layer,rank,expert,tokens\n", "no records", MOE_EFORMAT},
	};
	struct trace_import_opts io;

	trace_import_opts_init(&io);
	io.experts = 4;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		enum moe_status st;
		spit(tpath(cases[i].name), cases[i].text, (long)strlen(cases[i].text));
		st = trace_import(tpath(cases[i].name), tpath("t.moetrace"), &io);
		ck_assert_msg(st == cases[i].st, "%s: status %d: %s", cases[i].name, st, moe_errmsg());
		ck_assert_msg(strstr(moe_errmsg(), cases[i].msg) != NULL, "%s: %s", cases[i].name,
			      moe_errmsg());
		ck_assert(!exists(tpath("t.moetrace")));
	}
	ck_assert(no_tmp_left());
	/* Regression (found by fuzz_import_csv): a column named like expert_<j>
	 * with j beyond the top-k limit, or trailing characters, is an unknown
	 * column (ignored), not an index into the column table. */
	{
		const char *t = "step,layer,token,rank,expert_1615,expert_0,expert_00x\n0,0,0,0,1,2,3\n";
		struct trace_reader *r;
		spit(tpath("hc.csv"), t, (long)strlen(t));
		ck_assert_msg(trace_import(tpath("hc.csv"), tpath("hc.moetrace"), &io) == MOE_OK, "%s",
			      moe_errmsg());
		ck_assert_int_eq(trace_reader_open(tpath("hc.moetrace"), &r), MOE_OK);
		ck_assert_uint_eq(trace_reader_header(r)->top_k, 1);
		trace_reader_close(r);
		t = "step,layer,token,rank,expert_0,expert_0\n0,0,0,0,1,2\n";
		spit(tpath("hd.csv"), t, (long)strlen(t));
		ck_assert_int_eq(trace_import(tpath("hd.csv"), tpath("hd.moetrace"), &io), MOE_EFORMAT);
		ck_assert_msg(strstr(moe_errmsg(), "column expert_0 twice") != NULL, "%s", moe_errmsg());
	}
}
END_TEST

static void add_io_tests(TCase *c, TCase *e)
{
	tcase_add_test(c, test_npy_f32_route);
	tcase_add_test(c, test_npy_half);
	tcase_add_test(c, test_npz);
	tcase_add_test(c, test_text_roundtrip);
	tcase_add_test(c, test_counts_csv);
	tcase_add_test(e, test_npy_bad);
	tcase_add_test(e, test_text_bad);
}

static Suite *suite(void)
{
	Suite *s = suite_create("traces");
	TCase *c = tcase_create("core"), *e = tcase_create("errors");

	tcase_set_timeout(c, 60);
	tcase_set_timeout(e, 120);
	tcase_add_loop_test(c, test_roundtrip_tokens, 0, 2);
	tcase_add_loop_test(c, test_roundtrip_wide, 0, 2);
	tcase_add_loop_test(c, test_roundtrip_counts, 0, 2);
	tcase_add_test(c, test_loads_example);
	tcase_add_loop_test(c, test_seek, 0, 2);
	tcase_add_test(c, test_deterministic);
	tcase_add_test(c, test_empty);
	tcase_add_test(c, test_loads_paths);
	tcase_add_test(e, test_bad_files);
	tcase_add_test(e, test_bad_writes);
	add_io_tests(c, e);
	suite_add_tcase(s, c);
	suite_add_tcase(s, e);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	snprintf(tmpdir, sizeof tmpdir, "%s/check_traces.XXXXXX", base);
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (failed == 0) {
		char cmd[600];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			return 1;
	}
	return failed ? 1 : 0;
}
