/* tests/check_traces.c: the .moetrace format and its importers/exporters:
 * exact round trips, seeking through the index, every documented bad input
 * (crafted here by corrupting files), and determinism. */
#include "config.h"
#include "traces/trace.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[256];

static const char *tpath(const char *name)
{
	static char buf[4][512];
	static int i;

	i = (i + 1) % 4;
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
	tcase_add_test(e, test_bad_files);
	tcase_add_test(e, test_bad_writes);
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
