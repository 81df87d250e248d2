/* tests/check_reports.c: Check tests of reports/ (report_write, the
 * timeline export, the comparison) on stores written here with the store
 * writer API: sim-like and profile-like runs with hand-chosen numbers.
 *
 * `check_reports --make-store FILE` writes that store and exits, so the
 * end-to-end script tests/report_cli.sh draws the same runs through the
 * command line.
 *
 * The store (runs in this order):
 *   1 sim  mixtral-8x7b on dgx-h100, ep 8, top-2 softmax    (label top-2)
 *   2 sim  mixtral-8x7b on dgx-h100, ep 8, top-1 softmax    (label top-1)
 *   3 sim  mixtral-8x7b on dgx-h100, ep 16 (2 nodes), top-2 (label ep16)
 *   4 profile mixtral-8x7b, 4096 tokens: stages, expert loads, total_s
 *   5 sim  olmoe-1b-7b, a label full of gnuplot specials
 *   6 failed run
 *   7 running run (never finished)
 *   8, 9 profile runs as 4 with 1024 and 256 tokens
 */
#include "config.h"
#include "reports/report.h"
#include "store/store.h"

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Inside a test, a Check assertion; in --make-store mode (no test
 * running, where Check cannot report) a message and exit 1. */
static int making_store;
#define OK(x) ok_check((x), #x, __LINE__)
static void ok_check(enum moe_status st, const char *what, int line)
{
	if (making_store) {
		if (st != MOE_OK) {
			fprintf(stderr, "check_reports:%d: %s: %s\n", line, what, moe_errmsg());
			exit(1);
		}
		return;
	}
	ck_assert_msg(st == MOE_OK, "line %d: %s returned %d: %s", line, what, (int)st,
		      moe_errmsg());
}

static char tmpdir[256];

/* ---- the store ---- */

static void add_sim(struct store *db, int64_t id, int top_k, int ep, double scale)
{
	int gpus = ep, nodes = ep / 8;
	double step = 0;

	/* Four MoE layers, forward; times grow with the layer so rows differ. */
	for (int l = 0; l < 4; l++) {
		struct store_layer_row r = {
			.layer = l, .phase = "forward",
			.dispatch_s = scale * (0.00125 + 0.0001 * l) * top_k / 2,
			.compute_s = scale * (0.0021 + 0.00005 * l),
			.combine_s = scale * (0.00115 + 0.0001 * l) * top_k / 2,
			.other_s = 0.0004,
			.exposed_s = scale * 0.0003 * top_k,
			.dispatch_bytes = 117440512.0 * top_k,
			.combine_bytes = 117440512.0 * top_k,
			.network_bytes = nodes > 1 ? 58720256.0 * top_k : 0,
			.tokens = 32768.0 * top_k,
			.dropped = top_k == 1 ? 0 : 96 + 8 * l,
			.imbalance = 1.125 + 0.0625 * l + (top_k == 1 ? 0.25 : 0),
		};
		r.total_s = r.dispatch_s + r.compute_s + r.combine_s + r.other_s + r.exposed_s;
		step += r.total_s;
		OK(store_layer_add(db, id, &r));
	}
	for (int g = 0; g < gpus; g++) {
		struct store_gpu_row r = {
			.gpu = g, .node = g / 8, .busy_s = 0.0095 - 0.0001 * g, .idle_s = 0.0005 + 0.0001 * g,
			.compute_s = 0.0084, .tokens = 8192.0 * top_k + 256 * (g % 4),
			.bytes_sent = 29360128.0 * top_k, .bytes_received = 29360128.0 * top_k + 4096 * g,
		};
		OK(store_gpu_add(db, id, &r));
	}
	for (int k = 0; k < gpus + 2; k++) {
		char name[32];
		struct store_link_row r = {.link = k, .bw_Bps = k < gpus ? 450e9 : 50e9,
					   .bytes = 1.5e8 + 1e6 * k, .busy_s = 0.004,
					   .utilization = 0.3 + 0.05 * (k % 5)};
		if (k < gpus) {
			snprintf(name, sizeof name, "gpu%d_nvlink", k);
			r.kind = "nvlink";
		} else {
			snprintf(name, sizeof name, "nic%d.up", k - gpus);
			r.kind = "nic";
		}
		r.name = name;
		OK(store_link_add(db, id, &r));
		/* A step function: up during dispatch and combine. */
		for (int s = 0; s < 6; s++)
			OK(store_link_sample_add(db, id, k, 0.002 * s,
						 s % 3 == 0 ? 0.0 : 0.25 + 0.125 * ((k + s) % 6)));
	}
	for (int l = 0; l < 4; l++)
		for (int e = 0; e < 8; e++) {
			struct store_expert_row r = {.layer = l, .expert = e, .gpu = e % gpus,
						     .tokens = 4096.0 * top_k + 512 * ((e + l) % 4) - 768,
						     .dropped = e == 3 && top_k == 2 ? 24 + 2 * l : 0};
			OK(store_expert_add(db, id, &r));
			if (e == 0 && ep == 16) {
				/* A redundant replica of expert 0 on GPU 8. */
				r.gpu = 8;
				r.tokens = 1000;
				OK(store_expert_add(db, id, &r));
			}
		}
	for (int g = 0; g < gpus; g++) {
		char track[16];
		double t = 0.0001 * (g % 3), d = 0.0021 * scale * top_k / 2, c = 0.0042;
		snprintf(track, sizeof track, "gpu %d", g);
		OK(store_span_add(db, id, &(struct store_span_row){track, "dispatch layer 0",
							      "dispatch", t, d}));
		OK(store_span_add(db, id, &(struct store_span_row){track, "experts layer 0",
							      "compute", t + d + 0.0002, c}));
		OK(store_span_add(db, id, &(struct store_span_row){track, "combine layer 0",
							      "combine", t + d + c + 0.0004, d}));
	}
	OK(store_span_add(db, id, &(struct store_span_row){"link nic0.up", "flow 0->8", "transfer",
						      0.0001, 0.0019}));
	OK(store_metric_add(db, id, "step_time_s", step, "s"));
	OK(store_metric_add(db, id, "tokens_per_s", 32768.0 * gpus / step, "tokens/s"));
	OK(store_metric_add(db, id, "layer_time_s", step / 4, "s"));
}

static int64_t begin(struct store *db, const char *kind, const char *label, const char *model,
		     const char *inputs)
{
	int64_t id;
	struct store_run_meta m = {.kind = kind, .label = label, .model = model,
				   .cluster = strcmp(kind, "sim") == 0 ? "dgx-h100" : NULL,
				   .inputs_json = inputs, .seed = 42};
	OK(store_run_begin(db, &m, &id));
	return id;
}

/* A profile run as `moekit profile` writes it: the stages of one layer's
 * forward (the whole of it as "total"), GFLOP/s on the GEMM stages, the
 * expert loads of layer 0, metrics; no layer rows.  scale multiplies the
 * times of the 4096-token run. */
static void add_profile(struct store *db, int tokens, double scale)
{
	static const struct {
		const char *stage;
		double median_s, gflops_4096;
	} st[] = {
		{"router", 0.00031, 866}, {"routing", 0.00022, 0}, {"permute", 0.00018, 0},
		{"gate_up", 0.0072, 2100.5}, {"activation", 0.0006, 0}, {"down", 0.0037, 2044.25},
		{"combine", 0.00027, 0}, {"total", 0.0125, 1850},
	};
	char inputs[512], label[64];
	int64_t id;

	snprintf(inputs, sizeof inputs,
		 "{\"model\":\"mixtral-8x7b\",\"layer\":0,\"hidden\":4096,\"ffn\":14336,"
		 "\"experts\":8,\"top_k\":2,\"router\":\"softmax_topk\",\"tokens\":%d,"
		 "\"threads\":16,\"reps\":20}", tokens);
	snprintf(label, sizeof label, "cpu %d tokens", tokens);
	id = begin(db, "profile", label, "mixtral-8x7b", inputs);
	for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
		struct store_stage_row r = {st[i].stage, 20, st[i].median_s * scale,
					    st[i].median_s * scale * 0.96, st[i].median_s * scale * 1.08,
					    st[i].median_s * scale * 0.94,
					    /* smaller GEMMs run slower */
					    st[i].gflops_4096 * (scale > 0.5 ? 1 : scale > 0.2 ? 0.8 : 0.55),
					    tokens};
		OK(store_stage_add(db, id, &r));
	}
	for (int e = 0; e < 8; e++)
		OK(store_expert_add(db, id, &(struct store_expert_row){0, e, 0,
			tokens / 4.0 + (e % 3 - 1) * tokens / 64.0, 0}));
	OK(store_metric_add(db, id, "gflops", 1850 * (scale > 0.5 ? 1 : scale > 0.2 ? 0.8 : 0.55),
			    "GFLOP/s"));
	OK(store_metric_add(db, id, "total_s", 0.0125 * scale, "s"));
	OK(store_metric_add(db, id, "dropped", 0, "1"));
	OK(store_run_done(db, id, NULL));
}

static void make_store(const char *path)
{
	struct store *db;
	int64_t id;

	remove(path);
	OK(store_open(path, STORE_WRITE, &db));
	id = begin(db, "sim", "top-2", "mixtral-8x7b",
		   "{\"model\":\"mixtral-8x7b\",\"cluster\":\"dgx-h100\",\"label\":\"top-2\","
		   "\"plan\":{\"ep\":8,\"tokens_per_gpu\":4096},"
		   "\"routing\":{\"top_k\":2,\"policy\":\"softmax_topk\"}}");
	add_sim(db, id, 2, 8, 1.0);
	OK(store_run_done(db, id, "{\"step_time_s\":0.0}"));
	id = begin(db, "sim", "top-1", "mixtral-8x7b",
		   "{\"model\":\"mixtral-8x7b\",\"cluster\":\"dgx-h100\",\"label\":\"top-1\","
		   "\"plan\":{\"ep\":8,\"tokens_per_gpu\":4096},"
		   "\"routing\":{\"top_k\":1,\"policy\":\"softmax_topk\"}}");
	add_sim(db, id, 1, 8, 1.0);
	OK(store_run_done(db, id, NULL));
	id = begin(db, "sim", "ep16", "mixtral-8x7b",
		   "{\"model\":\"mixtral-8x7b\",\"cluster\":\"dgx-h100\",\"label\":\"ep16\","
		   "\"plan\":{\"ep\":16,\"tokens_per_gpu\":4096},"
		   "\"routing\":{\"top_k\":2,\"policy\":\"softmax_topk\"}}");
	add_sim(db, id, 2, 16, 1.25);
	OK(store_run_done(db, id, NULL));

	add_profile(db, 4096, 1.0);
	id = begin(db, "sim", "say \"top_2\" \\ 50% {x}^2 @NAME@", "olmoe-1b-7b",
		   "{\"model\":\"olmoe-1b-7b\",\"plan\":{\"ep\":8},\"routing\":{\"top_k\":8}}");
	add_sim(db, id, 8, 8, 0.5);
	OK(store_run_done(db, id, NULL));

	id = begin(db, "sim", "broken", "mixtral-8x7b", NULL);
	OK(store_run_fail(db, id, "out of memory"));
	store_close(db);

	OK(store_open(path, STORE_WRITE, &db));
	id = begin(db, "sim", "crashed", "mixtral-8x7b", NULL);
	store_close(db); /* left 'running' */

	OK(store_open(path, STORE_WRITE, &db));
	add_profile(db, 1024, 0.3);
	add_profile(db, 256, 0.1);
	store_close(db);
}

static char dbpath[512];

static void setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/check_reports.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof dbpath, "%s/study.db", tmpdir);
	make_store(dbpath);
}

static void teardown(void)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static int exists(const char *dir, const char *name)
{
	char p[1024];
	struct stat sb;
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return stat(p, &sb) == 0 && sb.st_size > 0;
}

static struct store *open_ro(void)
{
	struct store *db;
	OK(store_open(dbpath, STORE_READ, &db));
	return db;
}

/* ---- core ---- */

START_TEST(test_escape)
{
	char b[64];

	ck_assert_str_eq(report_gp_escape("top_2 a^b {c} @x", b, sizeof b), "top_2 a^b {c} @x");
	ck_assert_str_eq(report_gp_escape("say \"hi\" \\ ok", b, sizeof b), "say \\\"hi\\\" \\\\ ok");
	ck_assert_str_eq(report_gp_escape("a\nb\tc", b, sizeof b), "a b c");
	/* Never cut an escape in half. */
	ck_assert_str_eq(report_gp_escape("ab\"", b, 4), "ab");
}
END_TEST

START_TEST(test_formats)
{
	unsigned f;

	OK(report_formats_parse("png", &f));
	ck_assert_uint_eq(f, REPORT_PNG);
	OK(report_formats_parse("svg,pdf,png", &f));
	ck_assert_uint_eq(f, REPORT_PNG | REPORT_SVG | REPORT_PDF);
	ck_assert_int_eq(report_formats_parse("png,gif", &f), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "'gif'"));
	ck_assert_int_eq(report_formats_parse("", &f), MOE_EINVAL);
	ck_assert_int_eq(report_formats_parse("pngx", &f), MOE_EINVAL);
}
END_TEST

START_TEST(test_window)
{
	double w[2] = {0, 0};

	OK(report_window_parse("0.0015:0.004", w));
	ck_assert_double_eq(w[0], 0.0015);
	ck_assert_double_eq(w[1], 0.004);
	OK(report_window_parse("0:1e-3", w));
	ck_assert_double_eq(w[1], 0.001);
	ck_assert_int_eq(report_window_parse("2:1", w), MOE_EINVAL);
	ck_assert_int_eq(report_window_parse("1:1", w), MOE_EINVAL);
	ck_assert_int_eq(report_window_parse("-1:1", w), MOE_EINVAL);
	ck_assert_int_eq(report_window_parse("1", w), MOE_EINVAL);
	ck_assert_int_eq(report_window_parse("1:2x", w), MOE_EINVAL);
	ck_assert_int_eq(report_window_parse(":2", w), MOE_EINVAL);
	ck_assert_int_eq(report_window_parse("0:inf", w), MOE_EINVAL);
	/* A failed parse leaves the window as it was. */
	ck_assert_double_eq(w[1], 0.001);
}
END_TEST

static const char *const expected_figs[] = {
	"breakdown", "timeline_run1", "timeline_run2", "timeline_run3", "timeline_run5",
	"links_run1", "links_run2", "links_run3", "links_run5", "experts_run1", "experts_run2",
	"experts_run3", "experts_run4", "experts_run5", "experts_run8", "experts_run9", "gpus",
	"routing", "scaling", "simmeas", "stages", "gflops", NULL,
};

START_TEST(test_report_no_gnuplot)
{
	struct store *db = open_ro();
	char out[512];
	struct report_options o = {.formats = REPORT_PNG, .gnuplot = "/nonexistent/gnuplot"};
	struct report_result r;
	FILE *f;

	snprintf(out, sizeof out, "%s/out", tmpdir);
	o.out_dir = out;
	/* A page from an earlier report must not survive a report without figures. */
	mkdir(out, 0777);
	{
		char p[600];
		snprintf(p, sizeof p, "%s/index.html", out);
		f = fopen(p, "w");
		fputs("<html>old</html>", f);
		fclose(f);
	}
	OK(report_write(db, NULL, 0, &o, &r));
	ck_assert_int_eq(r.gnuplot_missing, 1);
	for (int i = 0; expected_figs[i]; i++) {
		char n[128];
		snprintf(n, sizeof n, "%s.gp", expected_figs[i]);
		ck_assert_msg(exists(out, n), "%s not written", n);
		snprintf(n, sizeof n, "%s.dat", expected_figs[i]);
		ck_assert_msg(exists(out, n), "%s not written", n);
	}
	ck_assert_uint_eq(r.nfigures, 22);
	ck_assert_uint_eq(r.nskipped, 0);
	ck_assert_int_eq(exists(out, "index.html"), 0);
	ck_assert_int_eq(exists(out, "breakdown.png"), 0);
	ck_assert_int_eq(exists(out, "summary.md"), 1);
	/* Runs of two models: the note says comparisons stay within a model. */
	ck_assert_uint_eq(r.nnotes, 1);
	ck_assert_ptr_nonnull(strstr(r.notes[0], "olmoe-1b-7b"));
	report_result_release(&r);
	store_close(db);
}
END_TEST

START_TEST(test_report_subset_skips)
{
	struct store *db = open_ro();
	char out[512];
	int64_t ids[] = {4};
	struct report_options o = {.formats = REPORT_PNG, .gnuplot = "/nonexistent/gnuplot"};
	struct report_result r;
	int found_routing = 0, found_timeline = 0;

	snprintf(out, sizeof out, "%s/prof", tmpdir);
	o.out_dir = out;
	OK(report_write(db, ids, 1, &o, &r));
	/* A profile run alone: expert loads, stages, gflops; the rest skipped
	 * with why. */
	ck_assert_uint_eq(r.nfigures, 3);
	ck_assert_str_eq(r.figures[0], "experts_run4");
	ck_assert_str_eq(r.figures[1], "stages");
	ck_assert_str_eq(r.figures[2], "gflops");
	for (size_t i = 0; i < r.nskipped; i++) {
		found_routing |= strncmp(r.skipped[i], "routing comparison:", 19) == 0;
		found_timeline |= strcmp(r.skipped[i], "timeline: no run has spans") == 0;
	}
	ck_assert(found_routing && found_timeline);
	ck_assert_uint_eq(r.nskipped, 7);
	report_result_release(&r);
	store_close(db);
}
END_TEST

START_TEST(test_report_gnuplot)
{
	struct store *db = open_ro();
	char out[512], gp[] = "/usr/bin/gnuplot";
	struct report_options o = {.formats = REPORT_PNG | REPORT_SVG | REPORT_PDF};
	struct report_result r;
	static const char *const ext[] = {"png", "svg", "pdf"};

	if (access(gp, X_OK) != 0 && system("command -v gnuplot >/dev/null 2>&1") != 0)
		return; /* the shell test covers this with the real gnuplot in CI */
	snprintf(out, sizeof out, "%s/all", tmpdir);
	o.out_dir = out;
	OK(report_write(db, NULL, 0, &o, &r));
	ck_assert_int_eq(r.gnuplot_missing, 0);
	for (int i = 0; expected_figs[i]; i++)
		for (int k = 0; k < 3; k++) {
			char n[128];
			snprintf(n, sizeof n, "%s.%s", expected_figs[i], ext[k]);
			ck_assert_msg(exists(out, n), "%s not rendered", n);
		}
	ck_assert(exists(out, "index.html"));
	report_result_release(&r);
	store_close(db);
}
END_TEST

START_TEST(test_report_gnuplot_fails)
{
	struct store *db = open_ro();
	char out[512], p[600];
	struct report_options o = {.formats = REPORT_PNG, .gnuplot = "/bin/false"};
	struct report_result r;
	FILE *f;

	snprintf(out, sizeof out, "%s/fail", tmpdir);
	o.out_dir = out;
	mkdir(out, 0777);
	snprintf(p, sizeof p, "%s/index.html", out);
	f = fopen(p, "w");
	fputs("<html>old</html>", f);
	fclose(f);
	ck_assert_int_eq(report_write(db, NULL, 0, &o, &r), MOE_ERUNTIME);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "breakdown.gp"));
	ck_assert_int_eq(exists(out, "index.html"), 0);
	report_result_release(&r);
	store_close(db);
}
END_TEST

/* Missing values (NAN is stored as NULL), empty tracks and zero-length
 * spans: figures with nothing to draw are skipped with a reason, the rest
 * render; gnuplot never sees a plot without a valid point. */
START_TEST(test_report_missing_values)
{
	struct store *db;
	char path[600], out[600];
	struct report_options o = {.out_dir = out, .formats = REPORT_PNG | REPORT_SVG};
	struct report_result r;
	int64_t id;
	int skipped_gpus = 0;

	snprintf(path, sizeof path, "%s/odd.db", tmpdir);
	snprintf(out, sizeof out, "%s/odd", tmpdir);
	OK(store_open(path, STORE_WRITE, &db));
	id = begin(db, "sim", NULL, "m_1", "{\"a\":{\"b\":null},\"plan\":{\"ep\":[1,2]}}");
	OK(store_layer_add(db, id, &(struct store_layer_row){.layer = 0, .phase = "p",
		.dispatch_s = NAN, .compute_s = 0.001, .combine_s = NAN, .other_s = NAN,
		.exposed_s = NAN, .total_s = NAN, .imbalance = NAN}));
	OK(store_span_add(db, id, &(struct store_span_row){"", "", "", 0, 0}));
	OK(store_span_add(db, id, &(struct store_span_row){"gpu 0", "x", "compute", 1, -1}));
	OK(store_link_sample_add(db, id, 7, 0, 0.5)); /* a link without a links row */
	OK(store_expert_add(db, id, &(struct store_expert_row){0, 0, 0, 0, 0}));
	OK(store_gpu_add(db, id, &(struct store_gpu_row){.gpu = 0, .node = -3, .tokens = NAN}));
	OK(store_stage_add(db, id, &(struct store_stage_row){"x\"y", 1, NAN, NAN, NAN, NAN, NAN, NAN}));
	OK(store_metric_add(db, id, "step_time_s", NAN, NULL));
	OK(store_run_done(db, id, NULL));
	store_close(db);

	OK(store_open(path, STORE_READ, &db));
	if (system("command -v gnuplot >/dev/null 2>&1") != 0)
		o.gnuplot = "/nonexistent/gnuplot";
	OK(report_write(db, NULL, 0, &o, &r));
	ck_assert_uint_eq(r.nfigures, 4);
	ck_assert_str_eq(r.figures[0], "breakdown");
	ck_assert_str_eq(r.figures[1], "timeline_run1");
	ck_assert_str_eq(r.figures[2], "links_run1");
	ck_assert_str_eq(r.figures[3], "experts_run1");
	for (size_t i = 0; i < r.nskipped; i++)
		skipped_gpus |= strcmp(r.skipped[i], "tokens per GPU: no run has GPU rows with tokens") == 0;
	ck_assert(skipped_gpus);
	if (!r.gnuplot_missing)
		ck_assert(exists(out, "index.html") && exists(out, "timeline_run1.svg"));
	report_result_release(&r);
	store_close(db);
}
END_TEST

/* ---- compare ---- */

static const struct report_cmp_row *find_row(const struct report_cmp *c, const char *name)
{
	for (size_t i = 0; i < c->nrows; i++)
		if (strcmp(c->rows[i].name, name) == 0)
			return &c->rows[i];
	return NULL;
}

START_TEST(test_compare)
{
	struct store *db = open_ro();
	struct report_cmp c;
	int64_t ids[] = {1, 2, 3};
	const struct report_cmp_row *r;
	double a, rel;

	OK(report_cmp_build(db, ids, 3, &c));
	ck_assert_uint_eq(c.nruns, 3);
	ck_assert_str_eq(c.labels[1], "run 2: top-1");
	/* Parameters that differ: label, plan.ep, routing.top_k; not model or
	 * plan.tokens_per_gpu, which agree. */
	ck_assert_ptr_nonnull(r = find_row(&c, "routing.top_k"));
	ck_assert_str_eq(r->kind, "param");
	ck_assert_str_eq(r->text[0], "2");
	ck_assert_str_eq(r->text[1], "1");
	ck_assert(report_cmp_delta(r, 1, &a, &rel));
	ck_assert_double_eq_tol(a, -1, 1e-12);
	ck_assert_double_eq_tol(rel, -0.5, 1e-12);
	ck_assert_ptr_nonnull(r = find_row(&c, "plan.ep"));
	ck_assert(report_cmp_delta(r, 2, &a, &rel));
	ck_assert_double_eq_tol(a, 8, 1e-12);
	ck_assert_double_eq_tol(rel, 1.0, 1e-12);
	ck_assert_ptr_null(find_row(&c, "plan.tokens_per_gpu"));
	ck_assert_ptr_null(find_row(&c, "model"));
	ck_assert_ptr_nonnull(r = find_row(&c, "label"));
	ck_assert_int_eq(r->numeric, 0);
	ck_assert_int_eq(report_cmp_delta(r, 1, &a, &rel), 0);

	/* Layer sums, by hand from add_sim: dispatch of run 1 (top-2) is
	 * sum (0.00125 + 0.0001 l) = 0.0056; run 2 (top-1) half of it. */
	ck_assert_ptr_nonnull(r = find_row(&c, "sum dispatch_s"));
	ck_assert_str_eq(r->unit, "s");
	ck_assert_double_eq_tol(r->value[0], 0.0056, 1e-15);
	ck_assert_double_eq_tol(r->value[1], 0.0028, 1e-15);
	ck_assert_double_eq_tol(r->value[2], 0.007, 1e-15);
	ck_assert(report_cmp_delta(r, 1, &a, &rel));
	ck_assert_double_eq_tol(a, -0.0028, 1e-15);
	ck_assert_double_eq_tol(rel, -0.5, 1e-12);
	/* step_time_s of run 1: dispatch 0.0056 + compute 0.0087 + combine 0.0052
	 * + other 0.0016 + exposed 0.0024 = 0.0235; run 2: 0.0028 + 0.0087 +
	 * 0.0026 + 0.0016 + 0.0012 = 0.0169. */
	ck_assert_ptr_nonnull(r = find_row(&c, "step_time_s"));
	ck_assert_str_eq(r->kind, "metric");
	ck_assert_double_eq_tol(r->value[0], 0.0235, 1e-14);
	ck_assert_double_eq_tol(r->value[1], 0.0169, 1e-14);
	ck_assert(report_cmp_delta(r, 1, &a, &rel));
	ck_assert_double_eq_tol(a, -0.0066, 1e-14);
	ck_assert_double_eq_tol(rel, -0.0066 / 0.0235, 1e-12);
	/* Imbalance is the largest over layers: 1.125 + 3 * 0.0625 (+ 0.25 top-1). */
	ck_assert_ptr_nonnull(r = find_row(&c, "max imbalance"));
	ck_assert_double_eq_tol(r->value[0], 1.3125, 1e-15);
	ck_assert_double_eq_tol(r->value[1], 1.5625, 1e-15);
	/* Dropped: 96 + 104 + 112 + 120 = 432 for top-2, 0 for top-1: the
	 * relative difference of run 2 against 432 is -100 %. */
	ck_assert_ptr_nonnull(r = find_row(&c, "sum dropped"));
	ck_assert_double_eq_tol(r->value[0], 432, 1e-12);
	ck_assert(report_cmp_delta(r, 1, &a, &rel));
	ck_assert_double_eq_tol(rel, -1.0, 1e-15);
	report_cmp_release(&c);

	/* Against a zero: no relative difference. */
	{
		int64_t rev[] = {2, 1};
		OK(report_cmp_build(db, rev, 2, &c));
		ck_assert_ptr_nonnull(r = find_row(&c, "sum dropped"));
		ck_assert(report_cmp_delta(r, 1, &a, &rel));
		ck_assert_double_eq_tol(a, 432, 1e-12);
		ck_assert(isnan(rel));
		report_cmp_release(&c);
	}
	store_close(db);
}
END_TEST

/* ---- timeline ---- */

START_TEST(test_timeline)
{
	struct store *db = open_ro();
	char path[600];
	size_t nev = 0, nx = 0, meta = 0, counters = 0;
	json_t *root, *ev, *e;
	json_error_t err;
	size_t i;
	double end_max = 0;

	snprintf(path, sizeof path, "%s/t.json", tmpdir);
	OK(report_timeline_write(db, 3, path, &nev));
	/* Run 3: 16 GPUs x 3 spans + 1 link span. */
	ck_assert_uint_eq(nev, 49);
	ck_assert_ptr_nonnull(root = json_load_file(path, 0, &err));
	ev = json_object_get(root, "traceEvents");
	json_array_foreach(ev, i, e) {
		const char *ph = json_string_value(json_object_get(e, "ph"));
		if (strcmp(ph, "X") == 0) {
			double ts = json_number_value(json_object_get(e, "ts"));
			double dur = json_number_value(json_object_get(e, "dur"));
			ck_assert(ts >= 0 && dur >= 0);
			if (ts + dur > end_max)
				end_max = ts + dur;
			ck_assert_int_ge(json_integer_value(json_object_get(e, "tid")), 1);
			ck_assert_int_le(json_integer_value(json_object_get(e, "tid")), 17);
			nx++;
		} else if (strcmp(ph, "M") == 0) {
			meta++;
		} else if (strcmp(ph, "C") == 0) {
			counters++;
		}
	}
	ck_assert_uint_eq(nx, 49);
	/* process name + 17 tracks x (name, sort index). */
	ck_assert_uint_eq(meta, 35);
	/* 18 links x 6 samples. */
	ck_assert_uint_eq(counters, 108);
	/* The latest span: gpu 2 (start 0.0002) dispatch 0.002625 + 0.0002 +
	 * compute 0.0042 + 0.0004 ... + combine 0.002625 = 0.01005 s. */
	ck_assert_double_eq_tol(end_max, 10050, 1e-6);
	json_decref(root);

	/* A profile run: its stages back to back on one track, without
	 * "total", which is all of them. */
	OK(report_timeline_write(db, 4, path, &nev));
	ck_assert_uint_eq(nev, 7);
	ck_assert_ptr_nonnull(root = json_load_file(path, 0, &err));
	{
		double t = 0;
		json_array_foreach(json_object_get(root, "traceEvents"), i, e) {
			if (strcmp(json_string_value(json_object_get(e, "ph")), "X") != 0)
				continue;
			ck_assert_double_eq_tol(json_number_value(json_object_get(e, "ts")), t, 1e-9);
			t += json_number_value(json_object_get(e, "dur"));
		}
		/* 0.31 + 0.22 + 0.18 + 7.2 + 0.6 + 3.7 + 0.27 ms */
		ck_assert_double_eq_tol(t, 12480, 1e-6);
	}
	json_decref(root);

	ck_assert_int_eq(report_timeline_write(db, 99, path, NULL), MOE_ENOTFOUND);
	ck_assert_int_eq(report_timeline_write(db, 6, path, NULL), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "'failed'"));
	ck_assert_int_eq(report_timeline_write(db, 7, path, NULL), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "'running'"));
	{
		char bad[700];
		snprintf(bad, sizeof bad, "%s/no/such/dir/t.json", tmpdir);
		ck_assert_int_eq(report_timeline_write(db, 1, bad, NULL), MOE_EIO);
	}
	store_close(db);
}
END_TEST

/* ---- errors ---- */

START_TEST(test_errors)
{
	struct store *db = open_ro();
	char out[512], empty[512];
	struct report_options o = {.formats = REPORT_PNG, .gnuplot = "/nonexistent/gnuplot"};
	struct report_result r;
	struct report_cmp c;
	int64_t unknown[] = {1, 42}, failed[] = {6}, running[] = {7}, twice[] = {1, 2, 1};
	int64_t models[] = {1, 5};

	snprintf(out, sizeof out, "%s/err", tmpdir);
	o.out_dir = out;
	ck_assert_int_eq(report_write(db, unknown, 2, &o, &r), MOE_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "no run 42"));
	report_result_release(&r);
	ck_assert_int_eq(report_write(db, failed, 1, &o, &r), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "run 6 is 'failed'"));
	report_result_release(&r);
	ck_assert_int_eq(report_write(db, running, 1, &o, &r), MOE_EINVAL);
	report_result_release(&r);
	ck_assert_int_eq(report_write(db, twice, 3, &o, &r), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "run 1 is listed twice"));
	report_result_release(&r);
	o.out_dir = "";
	ck_assert_int_eq(report_write(db, NULL, 0, &o, &r), MOE_EINVAL);
	report_result_release(&r);
	o.out_dir = "/nonexistent/dir/out";
	ck_assert_int_eq(report_write(db, NULL, 0, &o, &r), MOE_EIO);
	report_result_release(&r);

	ck_assert_int_eq(report_cmp_build(db, models, 2, &c), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "different models"));
	ck_assert_int_eq(report_cmp_build(db, models, 1, &c), MOE_EINVAL);
	ck_assert_int_eq(report_cmp_build(db, unknown, 2, &c), MOE_ENOTFOUND);
	store_close(db);

	/* An empty store. */
	snprintf(empty, sizeof empty, "%s/empty.db", tmpdir);
	OK(store_open(empty, STORE_WRITE, &db));
	o.out_dir = out;
	ck_assert_int_eq(report_write(db, NULL, 0, &o, &r), MOE_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "no done runs"));
	report_result_release(&r);
	store_close(db);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("reports");
	TCase *core = tcase_create("core"), *errors = tcase_create("errors");

	tcase_add_checked_fixture(core, setup, teardown);
	tcase_add_checked_fixture(errors, setup, teardown);
	tcase_set_timeout(core, 120);
	tcase_set_timeout(errors, 120);
	tcase_add_test(core, test_escape);
	tcase_add_test(core, test_formats);
	tcase_add_test(core, test_window);
	tcase_add_test(core, test_report_no_gnuplot);
	tcase_add_test(core, test_report_subset_skips);
	tcase_add_test(core, test_report_gnuplot);
	tcase_add_test(core, test_compare);
	tcase_add_test(core, test_timeline);
	tcase_add_test(errors, test_errors);
	tcase_add_test(errors, test_report_gnuplot_fails);
	tcase_add_test(errors, test_report_missing_values);
	suite_add_tcase(s, core);
	suite_add_tcase(s, errors);
	return s;
}

int main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	if (argc == 3 && strcmp(argv[1], "--make-store") == 0) {
		making_store = 1;
		make_store(argv[2]);
		return 0;
	}
	sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
