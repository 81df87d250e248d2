/* reports/figures.c: one writer per figure.  Each looks at the runs, writes
 * its data file (.dat: whitespace separated, a commented header naming the
 * columns and units) and its gnuplot script (.gp, from the templates under
 * reports/templates/), or says why the runs do not have what it draws.
 *
 * Data files hold the store's numbers (seconds, bytes) written with %.15g,
 * which reproduces the 15 significant digits SQLite hands out as text;
 * scripts scale them for the axes.  Rows that are derived rather than
 * stored (idle gaps, a sample's end time, sums over replicas) are named as
 * such in the header. */
#include "config.h"
#include "reports/report.h"
#include "reports/report_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define G "%.15g"

/* ---- plumbing ---- */

struct kv {
	const char *k[32];
	char *v[32];
	size_t n;
};

static void kv_set(struct kv *kv, const char *k, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void kv_set(struct kv *kv, const char *k, const char *fmt, ...)
{
	va_list ap;
	char *v = NULL;
	int len;

	if (kv->n == 32)
		return;
	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (len >= 0 && (v = malloc((size_t)len + 1)) != NULL) {
		va_start(ap, fmt);
		vsnprintf(v, (size_t)len + 1, fmt, ap);
		va_end(ap);
	}
	kv->k[kv->n] = k;
	kv->v[kv->n++] = v ? v : strdup("");
}

static void kv_release(struct kv *kv)
{
	for (size_t i = 0; i < kv->n; i++)
		free(kv->v[i]);
	kv->n = 0;
}

static char *xstrdup(const char *s)
{
	return strdup(s ? s : "");
}

static enum moe_status push(char ***arr, size_t *n, const char *s)
{
	char **p = realloc(*arr, (*n + 1) * sizeof **arr);
	if (p == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	*arr = p;
	if ((p[*n] = xstrdup(s)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	(*n)++;
	return MOE_OK;
}

static enum moe_status skip(struct fig_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static enum moe_status skip(struct fig_ctx *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	return push(&c->skipped, &c->nskipped, line);
}

static enum moe_status note(struct fig_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static enum moe_status note(struct fig_ctx *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	return push(&c->notes, &c->nnotes, line);
}

/* The formats as the scripts' "formats" string. */
static void formats_str(unsigned f, char *buf, size_t n)
{
	snprintf(buf, n, "%s%s%s", f & REPORT_PNG ? "png " : "", f & REPORT_SVG ? "svg " : "",
		 f & REPORT_PDF ? "pdf " : "");
	if (buf[0])
		buf[strlen(buf) - 1] = '\0';
}

/* A time unit for values up to max_s: the unit's name and seconds-to-unit
 * factor. */
static const char *time_unit(double max_s, double *scale)
{
	if (!(max_s >= 1.0)) {
		if (max_s > 0 && max_s < 1e-3) {
			*scale = 1e6;
			return "µs";
		}
		*scale = 1e3;
		return "ms";
	}
	*scale = 1;
	return "s";
}

/* Writes name.dat (dat) and name.gp from template tmpl with the extra keys;
 * records the figure with its caption. */
static enum moe_status emit(struct fig_ctx *c, const char *name, const char *tmpl,
			    const char *title, const char *caption, struct sbuf *dat, struct kv *kv)
{
	char *common = NULL, *body = NULL, fmts[32], esc[2048], datname[256];
	struct sbuf gp = {0}, com = {0};
	enum moe_status st;

	snprintf(datname, sizeof datname, "%s.dat", name);
	if (dat->oom)
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", datname);
	if ((st = report_file_put(c->dir, datname, dat->s ? dat->s : "", dat->len)) != MOE_OK)
		return st;
	if ((st = report_template_load("common.gp", &common)) != MOE_OK ||
	    (st = report_template_load(tmpl, &body)) != MOE_OK) {
		free(common);
		return st;
	}
	formats_str(c->formats, fmts, sizeof fmts);
	{
		const char *keys[] = {"NAME", "DESC", "TEMPLATE", "DATA", "FORMATS"};
		const char *vals[] = {name, caption, tmpl, datname, fmts};
		report_template_fill(&com, common, keys, vals, 5);
	}
	kv_set(kv, "COMMON", "%s", com.s ? com.s : "");
	kv_set(kv, "NAME", "%s", name);
	kv_set(kv, "DATA", "%s", datname);
	kv_set(kv, "TITLE", "%s", report_gp_escape(title, esc, sizeof esc));
	report_template_fill(&gp, body, kv->k, (const char *const *)kv->v, kv->n);
	free(common);
	free(body);
	sbuf_release(&com);
	if (gp.oom) {
		sbuf_release(&gp);
		MOE_FAIL(MOE_ENOMEM, "%s.gp: out of memory", name);
	}
	{
		char gpname[256];
		snprintf(gpname, sizeof gpname, "%s.gp", name);
		st = report_file_put(c->dir, gpname, gp.s, gp.len);
	}
	sbuf_release(&gp);
	if (st == MOE_OK && (st = push(&c->figs, &c->nfigs, name)) == MOE_OK)
		st = push(&c->titles, &c->ntitles, caption);
	return st;
}

/* "sim, mixtral-8x7b on dgx-h100" */
static const char *run_desc(const struct rrun *r, char *buf, size_t n)
{
	snprintf(buf, n, "%s%s%s%s%s", r->kind ? r->kind : "?", r->model ? ", " : "",
		 r->model ? r->model : "", r->cluster ? " on " : "", r->cluster ? r->cluster : "");
	return buf;
}

static int same_model(struct rrun *const *rs, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		const char *a = rs[0]->model ? rs[0]->model : "", *b = rs[i]->model ? rs[i]->model : "";
		if (strcmp(a, b) != 0)
			return 0;
	}
	return 1;
}

/* ---- per-layer time breakdown ---- */

static const int parts[] = {RL_DISPATCH, RL_COMPUTE, RL_COMBINE, RL_OTHER, RL_EXPOSED};
static const char *const part_names[] = {"dispatch (all-to-all, not hidden)", "expert compute",
					 "combine (all-to-all, not hidden)", "other compute",
					 "wait (idle)"};
/* What each stacked part plots, from the columns of breakdown.dat (4
 * dispatch, 5 compute, 6 combine, 7 other, 8 exposed, 9 total).  The store's
 * exposed_s is the communication not hidden behind compute (all of dispatch
 * and combine without overlap), so the bars show dispatch and combine scaled
 * to their exposed share, and the wait is what remains of the layer's time:
 * the parts then add up to total_s instead of counting the exposed
 * communication twice. */
#define EXPOSED_SHARE "((valid(8) && $4+$6 > 0 && $8 < $4+$6) ? $8/($4+$6) : 1)"
static const char *const part_using[] = {
	"($4*" EXPOSED_SHARE "*SCALE)",
	"($5*SCALE)",
	"($6*" EXPOSED_SHARE "*SCALE)",
	"($7*SCALE)",
	("((valid(9) && $9 - $5 - $7 - (valid(8) ? $8 : $4+$6) > 0 ? "
	 "$9 - $5 - $7 - (valid(8) ? $8 : $4+$6) : 0)*SCALE)"),
};

static enum moe_status fig_breakdown(struct fig_ctx *c)
{
	struct rrun *rs[256];
	size_t n = 0, maxrows = 0, total_rows = 0;
	struct sbuf dat = {0}, plot = {0};
	struct kv kv = {0};
	double maxt = 0, scale;
	const char *unit;
	char title[1024], esc[512], buf[512];
	int multiphase = 0;
	enum moe_status st;

	for (size_t i = 0; i < c->nruns && n < 256; i++) {
		int finite = 0;
		for (size_t j = 0; j < c->runs[i].nlayers; j++)
			for (size_t p = 0; p < 5; p++)
				finite |= isfinite(c->runs[i].layers[j].v[parts[p]]);
		/* gnuplot refuses a plot with no valid point at all. */
		if (finite)
			rs[n++] = &c->runs[i];
	}
	if (n == 0)
		return skip(c, "per-layer time breakdown: no run has layer rows with times");
	sbuf_add(&dat, "# breakdown.dat: per-layer time breakdown (moekit report)\n"
		 "# one block per run (gnuplot index 0, 1, ...), blocks separated by two blank "
		 "lines; rows in the order the run stored them\n"
		 "# columns: run layer phase dispatch_s compute_s combine_s other_s exposed_s "
		 "total_s\n"
		 "# units:   -   -     -     s          s         s         s       s         s\n");
	for (size_t i = 0; i < n; i++) {
		const struct rrun *r = rs[i];
		if (i > 0)
			sbuf_add(&dat, "\n\n");
		sbuf_add(&dat, "# run %lld: %s\n", (long long)r->id, run_desc(r, buf, sizeof buf));
		for (size_t j = 0; j < r->nlayers; j++) {
			const struct rlayer *l = &r->layers[j];
			double sum = 0;
			sbuf_add(&dat, "%lld %d %s", (long long)r->id, l->layer,
				 report_dat_str(l->phase, esc, sizeof esc));
			for (size_t p = 0; p < 5; p++) {
				sbuf_add(&dat, " " G, l->v[parts[p]]);
				sum += isfinite(l->v[parts[p]]) ? l->v[parts[p]] : 0;
			}
			sbuf_add(&dat, " " G "\n", l->v[RL_TOTAL]);
			if (sum > maxt)
				maxt = sum;
			if (j > 0 && strcmp(l->phase ? l->phase : "", r->layers[0].phase ?
					    r->layers[0].phase : "") != 0)
				multiphase = 1;
		}
		if (r->nlayers > maxrows)
			maxrows = r->nlayers;
		total_rows += r->nlayers;
	}
	unit = time_unit(maxt, &scale);
	/* Tic labels: the layer number (and phase when a run has several); at
	 * most about 24 labels per run, so they never overlap. */
	{
		size_t every = maxrows > 24 ? (maxrows + 23) / 24 : 1;
		char lbl[256];
		if (multiphase)
			snprintf(lbl, sizeof lbl, "(int($0) %% %zu == 0 ? sprintf(\"%%d %%s\", $2, "
				 "strcol(3)) : \"\")", every);
		else
			snprintf(lbl, sizeof lbl, "(int($0) %% %zu == 0 ? sprintf(\"%%d\", $2) : "
				 "\"\")", every);
		for (size_t i = 0; i < n; i++) {
			char rt[512];
			const struct rrun *r = rs[i];
			/* Short group titles: long labels would run into each other;
			 * the labels are in the index page's run list. */
			snprintf(rt, sizeof rt, "run %lld\n(%s)", (long long)r->id, r->kind ? r->kind : "?");
			sbuf_add(&plot, "%snewhistogram \"%s\" lt 1, \\\n         ", i ? ", \\\n    " : "",
				 report_gp_escape(rt, esc, sizeof esc));
			for (size_t p = 0; p < 5; p++) {
				sbuf_add(&plot, "%s\"breakdown.dat\" index %zu using %s%s%s "
					 "%s%s%s", p ? ", \\\n         " : "", i, part_using[p],
					 p == 0 ? ":xtic" : "", p == 0 ? lbl : "",
					 i == 0 ? "title \"" : "notitle", i == 0 ? part_names[p] : "",
					 i == 0 ? "\"" : "");
			}
		}
		kv_set(&kv, "XTICS", "%s", multiphase || total_rows > 40 ?
		       "rotate by -60 left font \",9\"" : "norotate");
	}
	kv_set(&kv, "PLOT", "%s", plot.s ? plot.s : "");
	kv_set(&kv, "SCALE", "%g", scale);
	kv_set(&kv, "UNIT", "%s", unit);
	kv_set(&kv, "XLABEL", "%s", multiphase ? "layer and phase, grouped by run"
					       : "layer, grouped by run");
	kv_set(&kv, "W", "%d", total_rows > 60 ? 1600 : 1200);
	kv_set(&kv, "H", "%d", 680);
	{
		struct sbuf models = {0};
		for (size_t i = 0; i < n; i++) {
			int dup = 0;
			for (size_t j = 0; j < i; j++)
				dup |= strcmp(rs[j]->model ? rs[j]->model : "?",
					      rs[i]->model ? rs[i]->model : "?") == 0;
			if (!dup)
				sbuf_add(&models, "%s%s", models.len ? ", " : "",
					 rs[i]->model ? rs[i]->model : "?");
		}
		snprintf(title, sizeof title, "Where each MoE layer's time goes (a bar per layer, a "
			 "group per run): %zu run%s of %s", n, n > 1 ? "s" : "",
			 models.s ? models.s : "?");
		sbuf_release(&models);
	}
	st = emit(c, "breakdown", "breakdown.gp", title,
		  "Per-layer time breakdown (dispatch, expert compute, combine, other compute, "
		  "exposed wait), stacked, one group per run", &dat, &kv);
	kv_release(&kv);
	sbuf_release(&dat);
	sbuf_release(&plot);
	return st;
}

/* The x range of a time figure: the window when one was given. */
static void set_xrange(struct kv *kv, const struct fig_ctx *c, double scale)
{
	if (c->window_s[1] > c->window_s[0])
		kv_set(kv, "XRANGE", "set xrange [%.17g : %.17g]", c->window_s[0] * scale,
		       c->window_s[1] * scale);
	else
		kv_set(kv, "XRANGE", "set xrange [0:*]\nset autoscale xfixmax");
}

/* ", from 1 ms to 1.5 ms" when a window was given, else "". */
static const char *window_note(const struct fig_ctx *c, char *buf, size_t n)
{
	double scale;
	const char *unit;

	if (!(c->window_s[1] > c->window_s[0]))
		return "";
	unit = time_unit(c->window_s[1] - c->window_s[0], &scale);
	snprintf(buf, n, ", from %g to %g %s", c->window_s[0] * scale, c->window_s[1] * scale,
		 unit);
	return buf;
}

/* ---- timeline (Gantt) ---- */

int report_track_cmp(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	int gx = strncmp(x, "gpu", 3) == 0, gy = strncmp(y, "gpu", 3) == 0;

	if (gx != gy)
		return gy - gx;
	if (gx) {
		long nx = strtol(x + 3 + strspn(x + 3, " _:"), NULL, 10);
		long ny = strtol(y + 3 + strspn(y + 3, " _:"), NULL, 10);
		if (nx != ny)
			return nx < ny ? -1 : 1;
	}
	return strcmp(x, y);
}

static int str_index(char *const *arr, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(arr[i], s) == 0)
			return (int)i;
	return -1;
}

struct ival { double a, b; };

static int ival_cmp(const void *x, const void *y)
{
	const struct ival *p = x, *q = y;
	return p->a < q->a ? -1 : p->a > q->a;
}

static const char *cat_color(const char *cat, int *other)
{
	static const char *const cycle[] = {"#CCBB44", "#66CCEE", "#AA3377", "#000000"};

	if (strcmp(cat, "compute") == 0) return "#4477AA";
	if (strcmp(cat, "dispatch") == 0) return "#EE6677";
	if (strcmp(cat, "combine") == 0) return "#228833";
	if (strcmp(cat, "idle") == 0) return "#DDDDDD";
	return cycle[(*other)++ % 4];
}

#define MAX_TRACKS 64

static enum moe_status fig_timeline_run(struct fig_ctx *c, struct rrun *r)
{
	char *tracks[MAX_TRACKS], *cats[32], name[64], buf[512], esc[512], esc2[512];
	size_t ntracks = 0, ncats = 0, dropped_tracks = 0;
	double t0 = INFINITY, t1 = -INFINITY, scale;
	struct sbuf dat = {0}, plot = {0}, ytics = {0};
	struct kv kv = {0};
	const char *unit;
	char **all = malloc(r->nspans * sizeof *all);
	size_t nall = 0;
	enum moe_status st = MOE_OK;
	int other = 0;

	if (all == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nspans; i++) {
		const struct rspan *s = &r->spans[i];
		if (!isfinite(s->start_s) || !(s->dur_s >= 0))
			continue; /* written to the data file, never drawn */
		if (str_index(all, nall, s->track ? s->track : "") < 0)
			all[nall++] = s->track ? s->track : "";
		if (s->start_s < t0) t0 = s->start_s;
		if (s->start_s + s->dur_s > t1) t1 = s->start_s + s->dur_s;
	}
	if (nall == 0) {
		free(all);
		return skip(c, "timeline of run %lld: no span has a start and a duration",
			    (long long)r->id);
	}
	qsort(all, nall, sizeof *all, report_track_cmp);
	for (size_t i = 0; i < nall; i++) {
		if (ntracks < MAX_TRACKS)
			tracks[ntracks++] = all[i];
		else
			dropped_tracks++;
	}
	unit = time_unit(c->window_s[1] > c->window_s[0] ? c->window_s[1] - c->window_s[0] : t1,
			 &scale);
	sbuf_add(&dat, "# timeline_run%lld.dat: spans of run %lld (%s), one row per span\n"
		 "# track_index: the row in the figure; derived = 1 for idle gaps between a GPU "
		 "track's spans (not stored), 0 for stored spans\n"
		 "# columns: track_index track cat name start_s dur_s derived\n"
		 "# units:   -           -     -   -    s       s     -\n",
		 (long long)r->id, (long long)r->id, run_desc(r, buf, sizeof buf));
	for (size_t i = 0; i < r->nspans; i++) {
		const struct rspan *s = &r->spans[i];
		int ti = str_index(tracks, ntracks, s->track ? s->track : "");
		const char *cat = s->cat && s->cat[0] ? s->cat : "other";
		if (ti < 0)
			continue;
		sbuf_add(&dat, "%d %s %s %s " G " " G " 0\n", ti,
			 report_dat_str(s->track, esc, sizeof esc),
			 report_dat_str(cat, esc2, sizeof esc2),
			 report_dat_str(s->name, buf, sizeof buf), s->start_s, s->dur_s);
		if (str_index(cats, ncats, cat) < 0 && ncats < 31)
			cats[ncats++] = (char *)cat;
	}
	/* Idle: the gaps in each GPU track between the run's first start and
	 * last end, where no span of the track is active. */
	{
		struct ival *iv = malloc((r->nspans ? r->nspans : 1) * sizeof *iv);
		int any_idle = 0;
		if (iv == NULL) {
			free(all);
			sbuf_release(&dat);
			MOE_FAIL(MOE_ENOMEM, "out of memory");
		}
		for (size_t ti = 0; ti < ntracks; ti++) {
			size_t m = 0;
			double cur = t0;
			if (strncmp(tracks[ti], "gpu", 3) != 0)
				continue;
			for (size_t i = 0; i < r->nspans; i++)
				if (r->spans[i].track && strcmp(r->spans[i].track, tracks[ti]) == 0 &&
				    isfinite(r->spans[i].start_s) && r->spans[i].dur_s >= 0)
					iv[m++] = (struct ival){r->spans[i].start_s,
								r->spans[i].start_s + r->spans[i].dur_s};
			qsort(iv, m, sizeof *iv, ival_cmp);
			for (size_t i = 0; i <= m; i++) {
				double a = i < m ? iv[i].a : t1;
				/* Gaps shorter than a millionth of the run are rounding. */
				if (a - cur > 1e-6 * (t1 - t0)) {
					sbuf_add(&dat, "%zu %s \"idle\" \"idle\" " G " " G " 1\n", ti,
						 report_dat_str(tracks[ti], esc, sizeof esc), cur, a - cur);
					any_idle = 1;
				}
				if (i < m && iv[i].b > cur)
					cur = iv[i].b;
			}
		}
		free(iv);
		if (any_idle && ncats < 32)
			cats[ncats++] = "idle";
	}
	sbuf_add(&ytics, "set ytics (");
	for (size_t i = 0; i < ntracks; i++)
		sbuf_add(&ytics, "%s\"%s\" %zu", i ? ", " : "",
			 report_gp_escape(tracks[i], esc, sizeof esc), i);
	sbuf_add(&ytics, ")%s", ntracks > 24 ? " font \",8\"" : "");
	snprintf(name, sizeof name, "timeline_run%lld", (long long)r->id);
	for (size_t k = 0; k < ncats; k++) {
		char ce[256];
		report_gp_escape(cats[k], ce, sizeof ce);
		sbuf_add(&plot, "%s\"%s.dat\" using (strcol(3) eq \"%s\" ? ($5 + $6/2)*SCALE : NaN):1:"
			 "($6/2*SCALE):(0.38) with boxxyerror fc rgb \"%s\" title \"%s\"",
			 k ? ", \\\n         " : "", name, ce, cat_color(cats[k], &other), ce);
	}
	kv_set(&kv, "PLOT", "%s", plot.s ? plot.s : "");
	kv_set(&kv, "YTICS", "%s", ytics.s ? ytics.s : "");
	kv_set(&kv, "NTRACKS", "%zu", ntracks);
	set_xrange(&kv, c, scale);
	kv_set(&kv, "SCALE", "%g", scale);
	kv_set(&kv, "UNIT", "%s", unit);
	kv_set(&kv, "W", "%d", 1200);
	kv_set(&kv, "H", "%zu", 160 + (ntracks < 4 ? 4 : ntracks) * (ntracks > 24 ? 16 : 28));
	{
		char title[1024], cap[1024];
		snprintf(title, sizeof title, "Timeline of %s (%s): what each track does%s",
			 rrun_title(r, esc, sizeof esc), run_desc(r, buf, sizeof buf),
			 window_note(c, esc2, sizeof esc2));
		snprintf(cap, sizeof cap, "Timeline of run %lld per GPU and link (compute, dispatch, "
			 "combine, idle)%s", (long long)r->id,
			 dropped_tracks ? "; only the first 64 tracks" : "");
		st = emit(c, name, "timeline.gp", title, cap, &dat, &kv);
	}
	if (st == MOE_OK && dropped_tracks)
		st = note(c, "timeline of run %lld: %zu tracks beyond the first %d left out of the "
			  "figure (all are in export-timeline)", (long long)r->id, dropped_tracks,
			  MAX_TRACKS);
	kv_release(&kv);
	sbuf_release(&dat);
	sbuf_release(&plot);
	sbuf_release(&ytics);
	free(all);
	return st;
}

static enum moe_status fig_timeline(struct fig_ctx *c)
{
	int any = 0;

	for (size_t i = 0; i < c->nruns; i++)
		if (c->runs[i].nspans > 0) {
			enum moe_status st = fig_timeline_run(c, &c->runs[i]);
			if (st != MOE_OK)
				return st;
			any = 1;
		}
	return any ? MOE_OK : skip(c, "timeline: no run has spans");
}

/* ---- link utilization heat map ---- */

static int kind_rank(const char *k)
{
	static const char *const order[] = {"nvlink", "pcie", "nic", "switch"};

	for (int i = 0; i < 4; i++)
		if (k && strcmp(k, order[i]) == 0)
			return i;
	return 4;
}

struct lref { int link; const struct rlink *l; };

/* qsort has no user pointer in C11; reports are single-threaded. */
static const struct rsample *sort_samples;
static const size_t *sort_rows;

/* Samples by their link's row in the figure, then by time, then store order. */
static int sample_cmp(const void *a, const void *b)
{
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	const struct rsample *x = &sort_samples[i], *y = &sort_samples[j];

	if (sort_rows[i] != sort_rows[j])
		return sort_rows[i] < sort_rows[j] ? -1 : 1;
	if (x->t_s != y->t_s)
		return x->t_s < y->t_s ? -1 : 1;
	return (i > j) - (i < j);
}

/* Links by kind (nvlink, pcie, nic, switch, other), then by id. */
static int lref_cmp(const void *a, const void *b)
{
	const struct lref *x = a, *y = b;
	int kx = kind_rank(x->l ? x->l->kind : NULL), ky = kind_rank(y->l ? y->l->kind : NULL);

	if (kx != ky)
		return kx - ky;
	return (x->link > y->link) - (x->link < y->link);
}

struct linkrow { int link; size_t row; };

static int linkrow_cmp(const void *a, const void *b)
{
	const struct linkrow *x = a, *y = b;
	return (x->link > y->link) - (x->link < y->link);
}

static enum moe_status fig_links_run(struct fig_ctx *c, struct rrun *r)
{
	struct lref *lr = NULL;
	size_t nl = 0, valid = 0;
	double tmax = -INFINITY, scale;
	struct sbuf dat = {0}, ytics = {0};
	struct kv kv = {0};
	char name[64], buf[512], esc[512], esc2[512];
	const struct rmetric *step = rrun_metric(r, "step_time_s");
	const char *unit;
	enum moe_status st;

	if ((lr = calloc(r->nsamples, sizeof *lr)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	for (size_t i = 0; i < r->nsamples; i++) {
		size_t j;
		for (j = 0; j < nl && lr[j].link != r->samples[i].link; j++)
			;
		if (j == nl) {
			lr[nl].link = r->samples[i].link;
			for (size_t k = 0; k < r->nlinks; k++)
				if (r->links[k].link == lr[nl].link)
					lr[nl].l = &r->links[k];
			nl++;
		}
		if (r->samples[i].t_s > tmax)
			tmax = r->samples[i].t_s;
		valid += isfinite(r->samples[i].t_s) && isfinite(r->samples[i].utilization);
	}
	if (valid == 0) {
		free(lr);
		return skip(c, "link utilization of run %lld: no sample has a time and a value",
			    (long long)r->id);
	}
	/* The last sample of a link lasts to the end of the run: the step time
	 * when stored, the last span's end, or the last sample of any link. */
	if (step && step->value > tmax)
		tmax = step->value;
	for (size_t i = 0; i < r->nspans; i++)
		if (r->spans[i].start_s + r->spans[i].dur_s > tmax)
			tmax = r->spans[i].start_s + r->spans[i].dur_s;
	qsort(lr, nl, sizeof *lr, lref_cmp);
	unit = time_unit(c->window_s[1] > c->window_s[0] ? c->window_s[1] - c->window_s[0] : tmax,
			 &scale);
	sbuf_add(&dat, "# links_run%lld.dat: link utilization over time of run %lld (%s)\n"
		 "# one row per stored sample (link, t_s, utilization); the link holds that "
		 "utilization from t_s to t_end_s (derived: the link's next sample, or the end of "
		 "the run)\n"
		 "# link_index: the row in the figure (links ordered by kind: nvlink, pcie, nic, "
		 "switch, other)\n"
		 "# columns: link_index link name kind t_s t_end_s utilization\n"
		 "# units:   -          -    -    -    s   s       fraction\n",
		 (long long)r->id, (long long)r->id, run_desc(r, buf, sizeof buf));
	/* Samples in (row, time) order: each one's end is the next one's start. */
	{
		size_t *ord = malloc((r->nsamples ? r->nsamples : 1) * sizeof *ord);
		if (ord == NULL) {
			free(lr);
			sbuf_release(&dat);
			MOE_FAIL(MOE_ENOMEM, "out of memory");
		}
		size_t *rows = malloc((r->nsamples ? r->nsamples : 1) * sizeof *rows);
		struct linkrow *map = malloc((nl ? nl : 1) * sizeof *map);
		if (rows == NULL || map == NULL) {
			free(ord);
			free(rows);
			free(map);
			free(lr);
			sbuf_release(&dat);
			MOE_FAIL(MOE_ENOMEM, "out of memory");
		}
		/* Each sample's row in the figure, by binary search on link ids. */
		for (size_t i = 0; i < nl; i++)
			map[i] = (struct linkrow){lr[i].link, i};
		qsort(map, nl, sizeof *map, linkrow_cmp);
		for (size_t i = 0; i < r->nsamples; i++) {
			struct linkrow key = {r->samples[i].link, 0}, *hit;
			hit = bsearch(&key, map, nl, sizeof *map, linkrow_cmp);
			rows[i] = hit ? hit->row : 0; /* every sample's link is in lr */
			ord[i] = i;
		}
		sort_samples = r->samples;
		sort_rows = rows;
		qsort(ord, r->nsamples, sizeof *ord, sample_cmp);
		for (size_t k = 0; k < r->nsamples; k++) {
			const struct rsample *s = &r->samples[ord[k]];
			double end = tmax;
			size_t li = rows[ord[k]];
			if (k + 1 < r->nsamples && r->samples[ord[k + 1]].link == s->link)
				end = r->samples[ord[k + 1]].t_s;
			sbuf_add(&dat, "%zu %d %s %s " G " " G " " G "\n", li, s->link,
				 report_dat_str(lr[li].l ? lr[li].l->name : "", esc, sizeof esc),
				 report_dat_str(lr[li].l ? lr[li].l->kind : "", esc2, sizeof esc2),
				 s->t_s, end, s->utilization);
		}
		free(ord);
		free(rows);
		free(map);
	}
	{
		size_t every = nl > 40 ? (nl + 39) / 40 : 1;
		int first = 1;
		sbuf_add(&ytics, "set ytics (");
		for (size_t i = 0; i < nl; i += every) {
			char lbl[512];
			if (lr[i].l)
				snprintf(lbl, sizeof lbl, "%s (%s)", lr[i].l->name ? lr[i].l->name : "?",
					 lr[i].l->kind ? lr[i].l->kind : "?");
			else
				snprintf(lbl, sizeof lbl, "link %d", lr[i].link);
			sbuf_add(&ytics, "%s\"%s\" %zu", first ? "" : ", ",
				 report_gp_escape(lbl, esc, sizeof esc), i);
			first = 0;
		}
		sbuf_add(&ytics, ")%s", nl > 20 ? " font \",8\"" : "");
	}
	snprintf(name, sizeof name, "links_run%lld", (long long)r->id);
	kv_set(&kv, "PLOT", "\"%s.dat\" using (($5 + $6)/2*SCALE):1:(($6 - $5)/2*SCALE):(0.5):7 "
	       "with boxxyerror fc palette", name);
	kv_set(&kv, "YTICS", "%s", ytics.s ? ytics.s : "");
	kv_set(&kv, "NLINKS", "%zu", nl);
	set_xrange(&kv, c, scale);
	kv_set(&kv, "SCALE", "%g", scale);
	kv_set(&kv, "UNIT", "%s", unit);
	kv_set(&kv, "W", "%d", 1200);
	kv_set(&kv, "H", "%zu", 180 + (nl < 6 ? 6 : nl > 60 ? 60 : nl) * 22);
	{
		char title[1024], cap[256];
		snprintf(title, sizeof title, "Link utilization over time, %s (%s)%s",
			 rrun_title(r, esc, sizeof esc), run_desc(r, buf, sizeof buf),
			 window_note(c, esc2, sizeof esc2));
		snprintf(cap, sizeof cap, "Link utilization over time of run %lld, links grouped by "
			 "kind (NVLink, PCIe, NIC, switch)", (long long)r->id);
		st = emit(c, name, "links.gp", title, cap, &dat, &kv);
	}
	kv_release(&kv);
	sbuf_release(&dat);
	sbuf_release(&ytics);
	free(lr);
	return st;
}

static enum moe_status fig_links(struct fig_ctx *c)
{
	int any = 0;

	for (size_t i = 0; i < c->nruns; i++)
		if (c->runs[i].nsamples > 0) {
			enum moe_status st = fig_links_run(c, &c->runs[i]);
			if (st != MOE_OK)
				return st;
			any = 1;
		}
	return any ? MOE_OK : skip(c, "link utilization: no run has link samples");
}

/* ---- expert load heat map and tokens per GPU ---- */

static int expert_cmp(const void *a, const void *b)
{
	const struct rexpert *x = a, *y = b;

	if (x->layer != y->layer)
		return x->layer < y->layer ? -1 : 1;
	return (x->expert > y->expert) - (x->expert < y->expert);
}

static enum moe_status fig_experts_run(struct fig_ctx *c, struct rrun *r)
{
	struct rexpert *e = malloc(r->nexperts * sizeof *e);
	struct sbuf dat = {0};
	struct kv kv = {0};
	int lmin = 0, lmax = 0, emax = 0;
	char name[64], buf[512], esc[512];
	enum moe_status st;

	if (e == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	memcpy(e, r->experts, r->nexperts * sizeof *e);
	{
		int finite = 0;
		for (size_t i = 0; i < r->nexperts; i++)
			finite |= isfinite(e[i].tokens);
		if (!finite) {
			free(e);
			return skip(c, "expert load of run %lld: no expert row has tokens",
				    (long long)r->id);
		}
	}
	qsort(e, r->nexperts, sizeof *e, expert_cmp);
	lmin = e[0].layer;
	lmax = e[r->nexperts - 1].layer;
	sbuf_add(&dat, "# experts_run%lld.dat: expert load of run %lld (%s)\n"
		 "# one row per (layer, expert): tokens and dropped summed over the expert's "
		 "replicas (replicas: how many rows the store holds for it)\n"
		 "# columns: layer expert tokens dropped replicas\n"
		 "# units:   -     -      tokens tokens -\n",
		 (long long)r->id, (long long)r->id, run_desc(r, buf, sizeof buf));
	for (size_t i = 0; i < r->nexperts;) {
		size_t j = i;
		double tok = 0, drop = 0;
		while (j < r->nexperts && e[j].layer == e[i].layer && e[j].expert == e[i].expert) {
			tok += e[j].tokens;
			drop += e[j].dropped;
			j++;
		}
		if (e[i].expert > emax)
			emax = e[i].expert;
		sbuf_add(&dat, "%d %d " G " " G " %zu\n", e[i].layer, e[i].expert, tok, drop, j - i);
		i = j;
	}
	free(e);
	snprintf(name, sizeof name, "experts_run%lld", (long long)r->id);
	kv_set(&kv, "PLOT", "\"%s.dat\" using 2:1:(0.5):(0.5):3 with boxxyerror fc palette", name);
	kv_set(&kv, "NEXPERTS", "%d", emax + 1);
	kv_set(&kv, "YMIN", "%d", lmin);
	kv_set(&kv, "YMAX", "%d", lmax);
	kv_set(&kv, "XSTEP", "%d", emax + 1 > 32 ? (emax + 1 + 15) / 16 : 1);
	kv_set(&kv, "YSTEP", "%d", lmax - lmin + 1 > 32 ? (lmax - lmin + 1 + 15) / 16 : 1);
	kv_set(&kv, "W", "%d", 1100);
	kv_set(&kv, "H", "%d", 300 + (lmax - lmin + 1 > 40 ? 560 : (lmax - lmin + 1) * 14));
	{
		char title[1024], cap[256];
		snprintf(title, sizeof title, "Expert load, %s (%s): tokens per expert and layer",
			 rrun_title(r, esc, sizeof esc), run_desc(r, buf, sizeof buf));
		snprintf(cap, sizeof cap, "Expert load of run %lld (layer x expert, tokens received)",
			 (long long)r->id);
		st = emit(c, name, "experts.gp", title, cap, &dat, &kv);
	}
	kv_release(&kv);
	sbuf_release(&dat);
	return st;
}

static enum moe_status fig_experts(struct fig_ctx *c)
{
	int any = 0;

	for (size_t i = 0; i < c->nruns; i++)
		if (c->runs[i].nexperts > 0) {
			enum moe_status st = fig_experts_run(c, &c->runs[i]);
			if (st != MOE_OK)
				return st;
			any = 1;
		}
	return any ? MOE_OK : skip(c, "expert load: no run has expert rows");
}

static enum moe_status fig_gpus(struct fig_ctx *c)
{
	struct rrun *rs[64];
	size_t n = 0;
	int maxgpu = 0;
	struct sbuf dat = {0}, plot = {0};
	struct kv kv = {0};
	char buf[512], esc[512];
	enum moe_status st;
	double bw;

	for (size_t i = 0; i < c->nruns && n < 64; i++) {
		int finite = 0;
		for (size_t j = 0; j < c->runs[i].ngpus; j++)
			finite |= isfinite(c->runs[i].gpus[j].tokens);
		if (finite)
			rs[n++] = &c->runs[i];
	}
	if (n == 0)
		return skip(c, "tokens per GPU: no run has GPU rows with tokens");
	bw = 0.8 / (double)n;
	sbuf_add(&dat, "# gpus.dat: per-GPU results (moekit report)\n"
		 "# one block per run (gnuplot index 0, 1, ...), blocks separated by two blank lines\n"
		 "# columns: run gpu node tokens busy_s idle_s compute_s bytes_sent bytes_received\n"
		 "# units:   -   -   -    tokens s      s      s         bytes      bytes\n");
	for (size_t i = 0; i < n; i++) {
		const struct rrun *r = rs[i];
		char rt[512];
		if (i > 0)
			sbuf_add(&dat, "\n\n");
		sbuf_add(&dat, "# run %lld: %s\n", (long long)r->id, run_desc(r, buf, sizeof buf));
		for (size_t j = 0; j < r->ngpus; j++) {
			const struct rgpu *g = &r->gpus[j];
			sbuf_add(&dat, "%lld %d %d " G " " G " " G " " G " " G " " G "\n",
				 (long long)r->id, g->gpu, g->node, g->tokens, g->busy_s, g->idle_s,
				 g->compute_s, g->sent, g->received);
			if (g->gpu > maxgpu)
				maxgpu = g->gpu;
		}
		snprintf(rt, sizeof rt, "%s (%s)", rrun_title(r, esc, sizeof esc),
			 run_desc(r, buf, sizeof buf));
		sbuf_add(&plot, "%s\"gpus.dat\" index %zu using ($2 + %g):4 with boxes lt %zu title \"%s\"",
			 i ? ", \\\n         " : "", i, ((double)i - (double)(n - 1) / 2) * bw, i % 8 + 1,
			 report_gp_escape(rt, esc, sizeof esc));
	}
	kv_set(&kv, "PLOT", "%s", plot.s ? plot.s : "");
	kv_set(&kv, "BOXW", "%g", bw);
	kv_set(&kv, "BMARGIN", "%zu", 5 + n);
	kv_set(&kv, "NGPUS", "%d", maxgpu + 1);
	kv_set(&kv, "XSTEP", "%d", maxgpu + 1 > 32 ? (maxgpu + 1 + 15) / 16 : 1);
	kv_set(&kv, "W", "%d", 1200);
	kv_set(&kv, "H", "%d", 560);
	st = emit(c, "gpus", "gpus.gp", same_model(rs, n) && rs[0]->model ?
		  "Tokens each GPU's experts received" : "Tokens each GPU's experts received "
		  "(runs of different models)",
		  "Tokens per GPU, one bar per GPU and run", &dat, &kv);
	kv_release(&kv);
	sbuf_release(&dat);
	sbuf_release(&plot);
	return st;
}

/* ---- routing comparison ---- */

static const char *last_key(const char *dotted)
{
	const char *d = strrchr(dotted, '.');
	return d ? d + 1 : dotted;
}

/* Inputs that choose how tokens are routed: runs that differ only in these
 * are a routing comparison. */
static int is_routing_key(const char *k)
{
	static const char *const keys[] = {"top_k", "topk", "k", "policy", "router", "routing",
					   "route", "capacity_factor", "capacity", NULL};

	for (int i = 0; keys[i]; i++)
		if (strcmp(k, keys[i]) == 0)
			return 1;
	return 0;
}

/* Inputs that do not change what was computed (where output went). */
static int is_ignored_key(const char *k)
{
	static const char *const keys[] = {"label", "db", "out", "output", "quiet", "format",
					   "progress", NULL};

	for (int i = 0; keys[i]; i++)
		if (strcmp(k, keys[i]) == 0)
			return 1;
	return 0;
}

/* A copy of v without the keys pick() says no to, at every depth. */
static json_t *strip(json_t *v, int (*drop)(const char *))
{
	if (json_is_object(v)) {
		json_t *o = json_object(), *x;
		const char *k;
		json_object_foreach(v, k, x)
			if (!drop(k))
				json_object_set_new(o, k, strip(x, drop));
		return o;
	}
	return json_deep_copy(v);
}

static int drop_routing(const char *k)
{
	return is_routing_key(k) || is_ignored_key(k);
}

/* The inputs that are not routing, as canonical text, plus the model. */
static char *context_sig(const struct rrun *r, int (*drop)(const char *))
{
	json_t *s = strip(r->inputs, drop);
	char *t = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
	struct sbuf b = {0};

	json_decref(s);
	sbuf_add(&b, "%s|%s|%s", r->kind ? r->kind : "", r->model ? r->model : "", t ? t : "");
	free(t);
	return b.s;
}

struct leaf_acc { struct sbuf *b; int (*want)(const char *); };

static void routing_leaf(void *user, const char *key, const char *text, json_t *v)
{
	struct leaf_acc *a = user;

	(void)v;
	if (a->want(last_key(key)))
		sbuf_add(a->b, "%s%s=%s", a->b->len ? " " : "", last_key(key), text ? text : "null");
}

static int want_routing(const char *k)
{
	return is_routing_key(k);
}

/* Whether the space-separated list sig holds the word tok. */
static int has_token(const char *sig, const char *tok)
{
	size_t n = strlen(tok);

	for (const char *q = sig ? sig : ""; *q;) {
		size_t len = strcspn(q, " ");
		if (len == n && strncmp(q, tok, n) == 0)
			return 1;
		q += len + (q[len] == ' ');
	}
	return 0;
}

static enum moe_status fig_routing(struct fig_ctx *c)
{
	char **ctx = calloc(c->nruns ? c->nruns : 1, sizeof *ctx);
	char **rsig = calloc(c->nruns ? c->nruns : 1, sizeof *rsig);
	int *done = calloc(c->nruns ? c->nruns : 1, sizeof *done);
	enum moe_status st = MOE_OK;
	int groups = 0;

	if (ctx == NULL || rsig == NULL || done == NULL) {
		free(ctx);
		free(rsig);
		free(done);
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < c->nruns; i++) {
		struct sbuf b = {0};
		struct leaf_acc a = {&b, want_routing};
		ctx[i] = context_sig(&c->runs[i], drop_routing);
		report_json_leaves(c->runs[i].inputs, routing_leaf, &a);
		rsig[i] = b.s ? b.s : strdup("");
	}
	for (size_t i = 0; i < c->nruns && st == MOE_OK; i++) {
		size_t members[256], m = 0;
		int differ = 0;
		if (done[i] || c->runs[i].nlayers == 0 || !c->runs[i].kind ||
		    strcmp(c->runs[i].kind, "sim") != 0)
			continue;
		for (size_t j = i; j < c->nruns && m < 256; j++)
			if (!done[j] && c->runs[j].nlayers > 0 && ctx[i] && ctx[j] &&
			    strcmp(ctx[i], ctx[j]) == 0) {
				members[m++] = j;
				done[j] = 1;
				differ |= strcmp(rsig[i] ? rsig[i] : "", rsig[j] ? rsig[j] : "") != 0;
			}
		if (m < 2 || !differ)
			continue;
		{
			struct sbuf dat = {0};
			struct kv kv = {0};
			char name[64], title[1024], esc[512], lbl[512];
			double maxt = 0, scale;
			const char *unit;
			int fin[4] = {0, 0, 0, 0};
			snprintf(name, sizeof name, groups ? "routing_%d" : "routing", groups + 1);
			sbuf_add(&dat, "# %s.dat: runs of %s that differ only in routing (top-k, policy, "
				 "capacity)\n"
				 "# layers_total_s: sum over layers of total_s; bytes_moved: sum of "
				 "dispatch_bytes + combine_bytes; imbalance: the largest over layers; "
				 "dropped: sum over layers\n"
				 "# columns: run label layers_total_s bytes_moved imbalance dropped "
				 "step_time_s\n"
				 "# units:   -   -     s              bytes       ratio     tokens  s\n",
				 name, c->runs[i].model ? c->runs[i].model : "an unnamed model");
			for (size_t k = 0; k < m; k++) {
				const struct rrun *r = &c->runs[members[k]];
				const struct rmetric *step = rrun_metric(r, "step_time_s");
				double imb = -INFINITY, tot = rrun_layer_sum(r, RL_TOTAL);
				for (size_t l = 0; l < r->nlayers; l++)
					if (r->layers[l].v[RL_IMBALANCE] > imb)
						imb = r->layers[l].v[RL_IMBALANCE];
				snprintf(lbl, sizeof lbl, "run %lld: %s", (long long)r->id,
					 rsig[members[k]] && rsig[members[k]][0] ? rsig[members[k]]
										  : "(default routing)");
				sbuf_add(&dat, "%lld %s " G " " G " " G " " G " " G "\n", (long long)r->id,
					 report_dat_str(lbl, esc, sizeof esc), tot,
					 rrun_layer_sum(r, RL_DBYTES) + rrun_layer_sum(r, RL_CBYTES),
					 isfinite(imb) ? imb : NAN, rrun_layer_sum(r, RL_DROPPED),
					 step ? step->value : NAN);
				if (tot > maxt)
					maxt = tot;
				fin[0] |= isfinite(tot);
				fin[1] |= isfinite(rrun_layer_sum(r, RL_DBYTES) +
						   rrun_layer_sum(r, RL_CBYTES));
				fin[2] |= isfinite(imb);
				fin[3] |= isfinite(rrun_layer_sum(r, RL_DROPPED));
			}
			for (int k = 0; k < 4; k++) {
				static const char *const yr[] = {"YR1", "YR2", "YR3", "YR4"};
				kv_set(&kv, yr[k], "%s", fin[k] ? "set yrange [0:*]" : "set yrange [0:1]");
			}
			unit = time_unit(maxt, &scale);
			/* Tic labels: the run, then one routing input per line. */
			{
				struct sbuf xt = {0};
				sbuf_add(&xt, "set xtics (");
				for (size_t k = 0; k < m; k++) {
					const char *sig = rsig[members[k]] ? rsig[members[k]] : "";
					char e2[512];
					sbuf_add(&xt, "%s\"run %lld", k ? ", " : "",
						 (long long)c->runs[members[k]].id);
					for (const char *q = sig; *q;) {
						size_t len = strcspn(q, " ");
						char part[256];
						int common = 1;
						snprintf(part, sizeof part, "%.*s", (int)len, q);
						/* What all runs of the group share is left
						 * out: the labels show what differs. */
						for (size_t o = 0; o < m; o++)
							common &= has_token(rsig[members[o]], part);
						if (!common)
							sbuf_add(&xt, "\\n%s",
								 report_gp_escape(part, e2, sizeof e2));
						q += len + (q[len] == ' ');
					}
					sbuf_add(&xt, "\" %zu", k);
				}
				sbuf_add(&xt, ") font \",9\"");
				kv_set(&kv, "XTICS", "%s", xt.s ? xt.s : "");
				sbuf_release(&xt);
			}
			kv_set(&kv, "SCALE", "%g", scale);
			kv_set(&kv, "UNIT", "%s", unit);
			kv_set(&kv, "NRUNS", "%zu", m);
			kv_set(&kv, "W", "%d", 1400);
			kv_set(&kv, "H", "%d", 560);
			snprintf(title, sizeof title, "Routing compared: %s, same inputs but top-k or "
				 "policy", c->runs[i].model ? c->runs[i].model : "one model");
			st = emit(c, name, "routing.gp", title, "Routing comparison: time, bytes moved, "
				  "imbalance and dropped tokens of runs that differ only in top-k or "
				  "policy", &dat, &kv);
			kv_release(&kv);
			sbuf_release(&dat);
			groups++;
		}
	}
	for (size_t i = 0; i < c->nruns; i++) {
		free(ctx[i]);
		free(rsig[i]);
	}
	free(ctx);
	free(rsig);
	free(done);
	if (st == MOE_OK && groups == 0)
		st = skip(c, "routing comparison: no two sim runs of one model differ only in "
			  "top-k or policy (inputs keys top_k, policy, router, capacity_factor)");
	return st;
}

/* ---- scaling ---- */

struct xfind { const char *const *names; double v; int found; };

static void x_leaf(void *user, const char *key, const char *text, json_t *v)
{
	struct xfind *f = user;

	(void)text;
	if (f->found || !json_is_number(v))
		return;
	for (int i = 0; f->names[i]; i++)
		if (strcmp(last_key(key), f->names[i]) == 0) {
			f->v = json_number_value(v);
			f->found = 1;
			return;
		}
}

static const char *const ep_keys[] = {"ep", "ep_size", "expert_parallel", "ep_degree", NULL};
static const char *const node_keys[] = {"nodes", "num_nodes", "n_nodes", NULL};

/* Nodes a run used, from its GPU rows (distinct node numbers). */
static double nodes_from_gpus(const struct rrun *r)
{
	int seen[1024] = {0}, n = 0;

	for (size_t i = 0; i < r->ngpus; i++) {
		int nd = r->gpus[i].node;
		if (nd >= 0 && nd < 1024 && !seen[nd]) {
			seen[nd] = 1;
			n++;
		}
	}
	return n ? n : NAN;
}

/* Inputs that set the scale of a run: dropped when telling series apart. */
static int drop_scaling(const char *k)
{
	for (int i = 0; ep_keys[i]; i++)
		if (strcmp(k, ep_keys[i]) == 0)
			return 1;
	for (int i = 0; node_keys[i]; i++)
		if (strcmp(k, node_keys[i]) == 0)
			return 1;
	return is_ignored_key(k) || strcmp(k, "cluster") == 0 || strcmp(k, "gpus") == 0;
}

struct xpt { double x; size_t run; };

static int xpt_cmp(const void *a, const void *b)
{
	const struct xpt *p = a, *q = b;

	if (p->x != q->x)
		return p->x < q->x ? -1 : 1;
	return (p->run > q->run) - (p->run < q->run);
}

static enum moe_status fig_scaling(struct fig_ctx *c)
{
	int *done = calloc(c->nruns ? c->nruns : 1, sizeof *done);
	struct xpt *pt = malloc((c->nruns ? c->nruns : 1) * sizeof *pt);
	enum moe_status st = MOE_OK;
	int figs = 0;

	if (done == NULL || pt == NULL) {
		free(done);
		free(pt);
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < c->nruns && st == MOE_OK; i++) {
		const char *model = c->runs[i].model ? c->runs[i].model : "";
		const char *xname = NULL, *xlabel = NULL;
		size_t m = 0, members[1024];
		if (done[i] || !c->runs[i].kind || strcmp(c->runs[i].kind, "sim") != 0 ||
		    c->runs[i].nlayers == 0)
			continue;
		for (size_t j = i; j < c->nruns && m < 1024; j++)
			if (!done[j] && c->runs[j].kind && strcmp(c->runs[j].kind, "sim") == 0 &&
			    c->runs[j].nlayers > 0 &&
			    strcmp(model, c->runs[j].model ? c->runs[j].model : "") == 0) {
				members[m++] = j;
				done[j] = 1;
			}
		/* The x axis: expert-parallel size when the runs vary it, else the
		 * node count (inputs, or the GPU rows). */
		for (int pass = 0; pass < 3 && xname == NULL; pass++) {
			size_t distinct = 0, valid = 0;
			for (size_t k = 0; k < m; k++) {
				const struct rrun *r = &c->runs[members[k]];
				struct xfind f = {pass == 0 ? ep_keys : node_keys, NAN, 0};
				if (pass < 2)
					report_json_leaves(r->inputs, x_leaf, &f);
				else
					f.v = nodes_from_gpus(r), f.found = isfinite(f.v);
				pt[k] = (struct xpt){f.found ? f.v : NAN, members[k]};
				valid += f.found;
			}
			if (valid != m)
				continue;
			qsort(pt, m, sizeof *pt, xpt_cmp);
			for (size_t k = 0; k < m; k++)
				distinct += k == 0 || pt[k].x != pt[k - 1].x;
			if (distinct >= 2) {
				xname = pass == 0 ? "expert-parallel size" : "nodes";
				xlabel = pass == 0 ? "expert-parallel size (GPUs holding the experts)"
						   : "nodes";
			}
		}
		if (xname == NULL)
			continue;
		{
			int finite = 0;
			for (size_t k = 0; k < m; k++) {
				const struct rrun *r = &c->runs[pt[k].run];
				const struct rmetric *step = rrun_metric(r, "step_time_s");
				finite |= isfinite(step ? step->value : rrun_layer_sum(r, RL_TOTAL)) ||
					  isfinite(rrun_layer_sum(r, RL_DISPATCH) +
						   rrun_layer_sum(r, RL_COMBINE));
			}
			if (!finite)
				continue;
		}
		{
			struct sbuf dat = {0};
			struct kv kv = {0};
			char name[64], title[1024];
			double maxt = 0, scale;
			const char *unit;
			snprintf(name, sizeof name, figs ? "scaling_%d" : "scaling", figs + 1);
			sbuf_add(&dat, "# %s.dat: scaling of %s against %s, one row per run, sorted by x; "
				 "one block (gnuplot index) per series of runs that agree on all other "
				 "inputs\n"
				 "# all_to_all_s: sum over layers of dispatch_s + combine_s; step_time_s: "
				 "the run's step_time_s metric, or the sum over layers of total_s when it "
				 "has none (step_from_metric = 0)\n"
				 "# columns: x run all_to_all_s step_time_s step_from_metric\n"
				 "# units:   -  -   s            s           -\n", name,
				 model[0] ? model : "an unnamed model", xname);
			/* One series per set of runs that agree on everything but
			 * the x axis (so top-1 and top-2 are never joined by a line). */
			{
				char **sig = calloc(m, sizeof *sig);
				int *ser = calloc(m, sizeof *ser), nser = 0;
				struct sbuf plot = {0};
				if (sig == NULL || ser == NULL) {
					free(sig);
					free(ser);
					sbuf_release(&dat);
					st = moe_error(MOE_ENOMEM, "out of memory");
					break;
				}
				for (size_t k = 0; k < m; k++) {
					sig[k] = context_sig(&c->runs[pt[k].run], drop_scaling);
					ser[k] = -1;
					for (size_t q = 0; q < k; q++)
						if (sig[q] && sig[k] && strcmp(sig[q], sig[k]) == 0) {
							ser[k] = ser[q];
							break;
						}
					if (ser[k] < 0)
						ser[k] = nser++;
				}
				for (int si = 0; si < nser; si++) {
					struct sbuf runs = {0};
					if (si > 0)
						sbuf_add(&dat, "\n\n");
					for (size_t k = 0; k < m; k++) {
						const struct rrun *r = &c->runs[pt[k].run];
						const struct rmetric *step = rrun_metric(r, "step_time_s");
						double a2a = rrun_layer_sum(r, RL_DISPATCH) +
							     rrun_layer_sum(r, RL_COMBINE);
						double t = step ? step->value : rrun_layer_sum(r, RL_TOTAL);
						if (ser[k] != si)
							continue;
						sbuf_add(&dat, G " %lld " G " " G " %d\n", pt[k].x,
							 (long long)r->id, a2a, t, step != NULL);
						sbuf_add(&runs, "%s%lld", runs.len ? ", " : "", (long long)r->id);
						if (t > maxt) maxt = t;
						if (a2a > maxt) maxt = a2a;
					}
					sbuf_add(&plot, "%s\"%s.dat\" index %d using 1:($4*SCALE) with "
						 "linespoints lt %d pt 7 title \"step time (run%s %s)\", \\\n"
						 "         \"%s.dat\" index %d using 1:($3*SCALE) with "
						 "linespoints lt %d dt 2 pt 5 title \"all-to-all, dispatch + "
						 "combine (run%s %s)\"", si ? ", \\\n         " : "", name, si,
						 si % 6 + 1, strchr(runs.s ? runs.s : "", ',') ? "s" : "",
						 runs.s ? runs.s : "", name, si, si % 6 + 1,
						 strchr(runs.s ? runs.s : "", ',') ? "s" : "",
						 runs.s ? runs.s : "");
					sbuf_release(&runs);
				}
				unit = time_unit(maxt, &scale);
				kv_set(&kv, "PLOT", "%s", plot.s ? plot.s : "");
				sbuf_release(&plot);
				for (size_t k = 0; k < m; k++)
					free(sig[k]);
				free(sig);
				free(ser);
			}
			kv_set(&kv, "SCALE", "%g", scale);
			kv_set(&kv, "UNIT", "%s", unit);
			kv_set(&kv, "XNAME", "%s", xname);
			kv_set(&kv, "XLABEL", "%s", xlabel);
			kv_set(&kv, "XLOG", "%s", pt[m - 1].x / (pt[0].x > 0 ? pt[0].x : 1) >= 8 &&
			       pt[0].x > 0 ? "set logscale x 2" : "set xtics");
			kv_set(&kv, "W", "%d", 1100);
			kv_set(&kv, "H", "%d", 600);
			snprintf(title, sizeof title, "Scaling of %s: step and all-to-all time against %s",
				 model[0] ? model : "one model", xname);
			st = emit(c, name, "scaling.gp", title, "Scaling: all-to-all and step time "
				  "against nodes or expert-parallel size", &dat, &kv);
			kv_release(&kv);
			sbuf_release(&dat);
			figs++;
		}
	}
	free(done);
	free(pt);
	if (st == MOE_OK && figs == 0)
		st = skip(c, "scaling: no two sim runs of one model differ in expert-parallel size "
			  "or node count");
	return st;
}

/* ---- simulated against measured ---- */

struct eq_count { const json_t *other; int n; };

struct key_find { const char *name; json_t *found; };

static void key_leaf(void *user, const char *key, const char *text, json_t *v)
{
	struct key_find *f = user;

	(void)text;
	if (f->found == NULL && strcmp(last_key(key), f->name) == 0)
		f->found = v;
}

static void eq_leaf(void *user, const char *key, const char *text, json_t *v)
{
	struct eq_count *e = user;
	json_t *o = (json_t *)e->other;
	const char *p = key;
	char part[256];

	(void)text;
	/* Walk the dotted key in the other run's inputs. */
	while (o && *p) {
		size_t len = strcspn(p, ".");
		snprintf(part, sizeof part, "%.*s", (int)len, p);
		o = json_is_object(o) ? json_object_get(o, part) : NULL;
		p += len + (p[len] == '.');
	}
	/* Not at the same path: the same name anywhere ("top_k" of a profile
	 * run against "routing.top_k" of a simulation). */
	if (o == NULL) {
		struct key_find f = {last_key(key), NULL};
		report_json_leaves((json_t *)e->other, key_leaf, &f);
		o = f.found;
	}
	if (o && json_equal(o, v) && !is_ignored_key(last_key(key)))
		e->n++;
}

static int is_time_metric(const struct rmetric *m)
{
	size_t n = strlen(m->name);

	if (m->unit)
		return strcmp(m->unit, "s") == 0;
	return n > 2 && strcmp(m->name + n - 2, "_s") == 0;
}

static enum moe_status fig_simmeas(struct fig_ctx *c)
{
	struct sbuf dat = {0}, plot = {0};
	struct kv kv = {0};
	size_t pairs = 0, points = 0;
	double lo = INFINITY, hi = 0, scale;
	const char *unit;
	char esc[512], buf[256];
	enum moe_status st;

	sbuf_add(&dat, "# simmeas.dat: simulated against measured, one block per (profile run, "
		 "sim run) pair of one model (the sim run sharing the most inputs)\n"
		 "# quantity: a time metric both runs stored, or \"layer L phase\" for total_s of a "
		 "layer both stored (or, for a profile run without layers, its metric total_s "
		 "against the layer named by its inputs' \"layer\"); error_pct = 100 * (simulated - measured) / measured\n"
		 "# columns: profile_run sim_run quantity measured_s simulated_s error_pct\n"
		 "# units:   -           -       -        s          s           %%\n");
	for (size_t i = 0; i < c->nruns; i++) {
		const struct rrun *p = &c->runs[i], *s = NULL;
		int best = -1;
		size_t before = points;
		if (!p->kind || strcmp(p->kind, "profile") != 0)
			continue;
		for (size_t j = 0; j < c->nruns; j++) {
			const struct rrun *q = &c->runs[j];
			struct eq_count e = {q->inputs, 0};
			if (!q->kind || strcmp(q->kind, "sim") != 0 ||
			    strcmp(p->model ? p->model : "", q->model ? q->model : "") != 0)
				continue;
			report_json_leaves(p->inputs, eq_leaf, &e);
			if (e.n >= best) {
				best = e.n;
				s = q;
			}
		}
		if (s == NULL)
			continue;
		struct sbuf blk = {0};
		for (size_t k = 0; k < p->nmetrics; k++) {
			const struct rmetric *mp = &p->metrics[k], *ms = rrun_metric(s, mp->name);
			if (ms == NULL || !is_time_metric(mp) || !is_time_metric(ms) ||
			    !(mp->value > 0) || !(ms->value > 0))
				continue;
			sbuf_add(&blk, "%lld %lld %s " G " " G " %.6g\n", (long long)p->id,
				 (long long)s->id, report_dat_str(mp->name, esc, sizeof esc), mp->value,
				 ms->value, 100 * (ms->value - mp->value) / mp->value);
			points++;
			if (mp->value < lo) lo = mp->value;
			if (ms->value < lo) lo = ms->value;
			if (mp->value > hi) hi = mp->value;
			if (ms->value > hi) hi = ms->value;
		}
		for (size_t a = 0; a < p->nlayers; a++)
			for (size_t b = 0; b < s->nlayers; b++) {
				const struct rlayer *la = &p->layers[a], *lb = &s->layers[b];
				double mv = la->v[RL_TOTAL], sv = lb->v[RL_TOTAL];
				if (la->layer != lb->layer ||
				    strcmp(la->phase ? la->phase : "", lb->phase ? lb->phase : "") != 0 ||
				    !(mv > 0) || !(sv > 0))
					continue;
				snprintf(buf, sizeof buf, "layer %d %s", la->layer,
					 la->phase ? la->phase : "");
				sbuf_add(&blk, "%lld %lld %s " G " " G " %.6g\n", (long long)p->id,
					 (long long)s->id, report_dat_str(buf, esc, sizeof esc), mv, sv,
					 100 * (sv - mv) / mv);
				points++;
				if (mv < lo) lo = mv;
				if (sv < lo) lo = sv;
				if (mv > hi) hi = mv;
				if (sv > hi) hi = sv;
				break;
			}
		/* The profiler measures one layer's forward (metric total_s, the
		 * layer in its inputs) and stores no layer rows: set it beside
		 * the simulated time of that layer. */
		{
			const struct rmetric *tot = rrun_metric(p, "total_s");
			json_t *lj = json_object_get(p->inputs, "layer");
			if (p->nlayers == 0 && tot && tot->value > 0 && json_is_integer(lj)) {
				int L = (int)json_integer_value(lj);
				const struct rlayer *lrow = NULL;
				for (size_t b = 0; b < s->nlayers; b++)
					if (s->layers[b].layer == L &&
					    (lrow == NULL || (s->layers[b].phase &&
							      strcmp(s->layers[b].phase, "forward") == 0 &&
							      !(lrow->phase &&
								strcmp(lrow->phase, "forward") == 0))))
						lrow = &s->layers[b];
				if (lrow && lrow->v[RL_TOTAL] > 0) {
					double mv = tot->value, sv = lrow->v[RL_TOTAL];
					snprintf(buf, sizeof buf, "layer %d %s", L,
						 lrow->phase ? lrow->phase : "");
					sbuf_add(&blk, "%lld %lld %s " G " " G " %.6g\n", (long long)p->id,
						 (long long)s->id, report_dat_str(buf, esc, sizeof esc), mv,
						 sv, 100 * (sv - mv) / mv);
					points++;
					if (mv < lo) lo = mv;
					if (sv < lo) lo = sv;
					if (mv > hi) hi = mv;
					if (sv > hi) hi = sv;
				}
			}
		}
		if (points == before) {
			/* The pair shares nothing comparable. */
			sbuf_release(&blk);
			continue;
		}
		sbuf_add(&dat, "%s# run %lld (profile) against run %lld (sim), %s\n",
			 pairs ? "\n\n" : "", (long long)p->id, (long long)s->id,
			 p->model ? p->model : "");
		if (blk.s)
			sbuf_addn(&dat, blk.s, blk.len);
		dat.oom |= blk.oom;
		sbuf_release(&blk);
		{
			char t[256];
			snprintf(t, sizeof t, "run %lld measured, run %lld simulated", (long long)p->id,
				 (long long)s->id);
			sbuf_add(&plot, "%s\"simmeas.dat\" index %zu using ($4*SCALE):($5*SCALE) with "
				 "points lt %zu title \"%s\"", pairs ? ", \\\n         " : "", pairs,
				 pairs % 6 + 1, report_gp_escape(t, esc, sizeof esc));
		}
		pairs++;
	}
	if (pairs == 0) {
		sbuf_release(&dat);
		sbuf_release(&plot);
		return skip(c, "simulated against measured: no profile run has a sim run of the "
			    "same model with a time metric or layer time in common");
	}
	/* Label each point with its error when there are few enough to read. */
	if (points <= 40)
		/* Alternate rows above and below their point, so neighbours
		 * do not print over each other. */
		for (int k = 0; k < 2; k++)
			sbuf_add(&plot, ", \\\n         \"simmeas.dat\" using ($4*SCALE):"
				 "(lab%d = lab%d + 1, lab%d %% 2 == %d ? $5*SCALE : NaN):"
				 "(sprintf(\"%%s %%+.1f%%%%\", strcol(3), $6)) with labels left "
				 "offset 1,%s font \",9\" notitle", k, k, k, k, k ? "-0.9" : "0.9");
	unit = time_unit(hi, &scale);
	kv_set(&kv, "PLOT", "%s", plot.s ? plot.s : "");
	kv_set(&kv, "SCALE", "%g", scale);
	kv_set(&kv, "UNIT", "%s", unit);
	if (hi / lo > 30) {
		kv_set(&kv, "AXES", "set logscale xy");
		kv_set(&kv, "LO", "%g", lo * scale / 2);
		kv_set(&kv, "HI", "%g", hi * scale * 2);
	} else {
		kv_set(&kv, "AXES", "unset logscale");
		kv_set(&kv, "LO", "0");
		kv_set(&kv, "HI", "%g", hi * scale * 1.25);
	}
	kv_set(&kv, "W", "%d", 900);
	kv_set(&kv, "H", "%d", 760);
	st = emit(c, "simmeas", "simmeas.gp", "Simulated against measured: profile runs and the "
		  "simulation of the same plan", "Simulated against measured (profile runs beside the "
		  "sim run of the same plan), with y = x and each point's error", &dat, &kv);
	kv_release(&kv);
	sbuf_release(&dat);
	sbuf_release(&plot);
	return st;
}

/* ---- GFLOP/s against tokens per expert ---- */

struct gpt { size_t run; const struct rstage *st; double tpe; int series; };

static int gpt_cmp(const void *a, const void *b)
{
	const struct gpt *x = a, *y = b;

	if (x->series != y->series)
		return x->series - y->series;
	if (x->tpe != y->tpe)
		return x->tpe < y->tpe ? -1 : 1;
	return (x->run > y->run) - (x->run < y->run);
}

/* Tokens per expert of a profile run: tokens x top_k / experts when the
 * inputs name both (the profiler's do), else NAN. */
static double tokens_per_expert(const struct rrun *r, double tokens)
{
	static const char *const k_names[] = {"top_k", "topk", NULL};
	static const char *const e_names[] = {"experts", "num_experts", "n_experts", NULL};
	struct xfind k = {k_names, NAN, 0}, e = {e_names, NAN, 0};

	report_json_leaves(r->inputs, x_leaf, &k);
	report_json_leaves(r->inputs, x_leaf, &e);
	if (!k.found || !e.found || !(e.v > 0) || !(k.v > 0))
		return NAN;
	return tokens * k.v / e.v;
}

/* One line per stage name (per model, when the runs hold several), one
 * point per run: profile runs at several token counts draw the curve. */
static enum moe_status fig_gflops(struct fig_ctx *c, struct rrun *const *rs, size_t n)
{
	struct gpt *pt = NULL;
	char *series[64];
	size_t np = 0, cap = 0, nser = 0;
	int all_tpe = 1, multi_model = !same_model(rs, n);
	struct sbuf dat = {0}, plot = {0};
	struct kv kv = {0};
	double tmin = INFINITY, tmax = 0;
	char esc[512], key[512];
	enum moe_status st = MOE_OK;

	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < rs[i]->nstages; j++) {
			const struct rstage *s = &rs[i]->stages[j];
			int si;
			if (!(s->gflops > 0) || !(s->tokens > 0))
				continue;
			snprintf(key, sizeof key, "%s%s%s%s", s->stage ? s->stage : "?",
				 multi_model ? " (" : "", multi_model && rs[i]->model ? rs[i]->model : "",
				 multi_model ? ")" : "");
			si = str_index(series, nser, key);
			if (si < 0) {
				if (nser == 64 || (series[nser] = strdup(key)) == NULL)
					continue;
				si = (int)nser++;
			}
			if (np == cap) {
				struct gpt *q = realloc(pt, (cap = cap ? 2 * cap : 32) * sizeof *q);
				if (q == NULL) {
					st = moe_error(MOE_ENOMEM, "out of memory");
					goto out;
				}
				pt = q;
			}
			pt[np] = (struct gpt){i, s, tokens_per_expert(rs[i], s->tokens), si};
			all_tpe &= isfinite(pt[np].tpe);
			np++;
		}
	if (np == 0) {
		st = skip(c, "GFLOP/s against tokens per expert: no stage row has gflops > 0 and "
			  "tokens");
		goto out;
	}
	/* Without top_k and experts in every run's inputs, x is plain tokens. */
	for (size_t k = 0; k < np; k++) {
		if (!all_tpe)
			pt[k].tpe = pt[k].st->tokens;
		if (pt[k].tpe > 0 && pt[k].tpe < tmin) tmin = pt[k].tpe;
		if (pt[k].tpe > tmax) tmax = pt[k].tpe;
	}
	qsort(pt, np, sizeof *pt, gpt_cmp);
	sbuf_add(&dat, "# gflops.dat: throughput of profiled stages against tokens per expert\n"
		 "# one block (gnuplot index) per stage name, one row per run and stage with "
		 "gflops > 0, sorted by tokens_per_expert; tokens_per_expert = tokens x top_k / "
		 "experts from the run's inputs%s\n"
		 "# columns: run stage tokens tokens_per_expert gflops median_s\n"
		 "# units:   -   -     tokens tokens            GFLOP/s s\n",
		 all_tpe ? "" : " (not in every run's inputs: here it is tokens)");
	for (size_t k = 0; k < np; k++) {
		const struct rrun *r = rs[pt[k].run];
		if (k == 0 || pt[k].series != pt[k - 1].series) {
			if (k)
				sbuf_add(&dat, "\n\n");
			sbuf_add(&dat, "# %s\n", series[pt[k].series]);
			sbuf_add(&plot, "%s\"gflops.dat\" index %d using 4:5 with linespoints lt %d "
				 "title \"%s\"", k ? ", \\\n         " : "", pt[k].series,
				 pt[k].series % 8 + 1,
				 report_gp_escape(series[pt[k].series], esc, sizeof esc));
		}
		sbuf_add(&dat, "%lld %s " G " " G " " G " " G "\n", (long long)r->id,
			 report_dat_str(pt[k].st->stage, esc, sizeof esc), pt[k].st->tokens, pt[k].tpe,
			 pt[k].st->gflops, pt[k].st->median_s);
	}
	kv_set(&kv, "PLOT", "%s", plot.s ? plot.s : "");
	kv_set(&kv, "XLABEL", "%s", all_tpe ? "tokens per expert (tokens x top-k / experts)"
					    : "tokens in the forward pass");
	kv_set(&kv, "XLOG", "%s", tmin > 0 && tmax / tmin >= 8 ? "set logscale x 2"
							    : "set xrange [0:*]");
	kv_set(&kv, "BMARGIN", "%zu", 5 + (nser + 3) / 4);
	kv_set(&kv, "W", "%d", 1000);
	kv_set(&kv, "H", "%d", 600);
	{
		char title[512];
		snprintf(title, sizeof title, "Profiled throughput against tokens per expert: %zu "
			 "stage row%s of %zu run%s", np, np == 1 ? "" : "s", n, n == 1 ? "" : "s");
		st = emit(c, "gflops", "gflops.gp", title, "Profiler GFLOP/s against tokens per "
			  "expert, a line per stage", &dat, &kv);
	}
out:
	for (size_t k = 0; k < nser; k++)
		free(series[k]);
	free(pt);
	kv_release(&kv);
	sbuf_release(&dat);
	sbuf_release(&plot);
	return st;
}

/* ---- profiler stages ---- */

static enum moe_status fig_stages(struct fig_ctx *c)
{
	struct rrun *rs[32];
	char *labels[256];
	size_t n = 0, nl = 0;
	struct sbuf dat = {0}, plot = {0}, xt = {0};
	struct kv kv = {0};
	double maxt = 0, mint = INFINITY, scale, bw;
	const char *unit;
	char esc[512], buf[512];
	enum moe_status st = MOE_OK;

	for (size_t i = 0; i < c->nruns && n < 32; i++) {
		int finite = 0;
		for (size_t j = 0; j < c->runs[i].nstages; j++)
			finite |= isfinite(c->runs[i].stages[j].median_s);
		if (finite)
			rs[n++] = &c->runs[i];
	}
	if (n == 0)
		return skip(c, "profiler stages: no run has stage rows") == MOE_OK
			       ? skip(c, "GFLOP/s against tokens per expert: no run has stage rows")
			       : MOE_ENOMEM;
	bw = 0.8 / (double)n;
	sbuf_add(&dat, "# stages.dat: profiler stage times (moekit report)\n"
		 "# one block per run (gnuplot index 0, 1, ...), blocks separated by two blank "
		 "lines; x: the stage's position on the x axis (-1: the stage \"total\", the whole "
		 "forward, not drawn as a part)\n"
		 "# columns: run x stage reps median_s p10_s p90_s min_s gflops tokens\n"
		 "# units:   -   - -     -    s        s     s     s     GFLOP/s tokens\n");
	for (size_t i = 0; i < n; i++) {
		const struct rrun *r = rs[i];
		char rt[512];
		double total = NAN;
		if (i > 0)
			sbuf_add(&dat, "\n\n");
		sbuf_add(&dat, "# run %lld: %s\n", (long long)r->id, run_desc(r, buf, sizeof buf));
		for (size_t j = 0; j < r->nstages; j++) {
			const struct rstage *s = &r->stages[j];
			int dup = 0, x;
			char lbl[256];
			for (size_t k = 0; k < r->nstages; k++)
				dup |= k != j && strcmp(r->stages[k].stage ? r->stages[k].stage : "",
							s->stage ? s->stage : "") == 0;
			if (dup && s->has_tokens)
				snprintf(lbl, sizeof lbl, "%s (%.0f tok)", s->stage ? s->stage : "",
					 s->tokens);
			else
				snprintf(lbl, sizeof lbl, "%s", s->stage ? s->stage : "");
			/* The whole forward is not a part of it: kept in the data (x
			 * -1), left out of the bars, named in the key. */
			if (strcmp(lbl, "total") == 0) {
				x = -1;
				total = s->median_s;
			} else {
				x = str_index(labels, nl, lbl);
			}
			if (x < 0 && strcmp(lbl, "total") != 0 && nl < 256) {
				labels[nl] = strdup(lbl);
				if (labels[nl] == NULL) {
					st = MOE_ENOMEM;
					break;
				}
				x = (int)nl++;
			}
			sbuf_add(&dat, "%lld %d %s %d " G " " G " " G " " G " " G " " G "\n",
				 (long long)r->id, x, report_dat_str(s->stage, esc, sizeof esc), s->reps,
				 s->median_s, s->p10_s, s->p90_s, s->min_s, s->gflops, s->tokens);
			if (s->p90_s > maxt) maxt = s->p90_s;
			if (s->median_s > maxt) maxt = s->median_s;
			if (x >= 0 && s->median_s > 0 && s->median_s < mint) mint = s->median_s;
		}
		{
			char tot[64] = "";
			if (isfinite(total))
				snprintf(tot, sizeof tot, ", total %.4g ms", total * 1e3);
			snprintf(rt, sizeof rt, "%s (%s%s)", rrun_title(r, esc, sizeof esc),
				 run_desc(r, buf, sizeof buf), tot);
		}
		sbuf_add(&plot, "%s\"stages.dat\" index %zu using ($2 >= 0 ? $2 + %g : NaN):($5*SCALE) "
			 "with boxes lt %zu "
			 "title \"%s\", \\\n         \"stages.dat\" index %zu using ($2 >= 0 ? $2 + %g : NaN):"
			 "($6*SCALE):"
			 "(0):(($7 - $6)*SCALE) with vectors heads size screen 0.006,90 "
			 "lc rgb \"#222222\" lw 1.5 notitle",
			 i ? ", \\\n         " : "", i, ((double)i - (double)(n - 1) / 2) * bw, i % 6 + 1,
			 report_gp_escape(rt, esc, sizeof esc), i,
			 ((double)i - (double)(n - 1) / 2) * bw);
	}
	if (st == MOE_OK) {
		sbuf_add(&xt, "set xtics (");
		for (size_t k = 0; k < nl; k++)
			sbuf_add(&xt, "%s\"%s\" %zu", k ? ", " : "",
				 report_gp_escape(labels[k], esc, sizeof esc), k);
		{
			size_t longest = 0;
			for (size_t k = 0; k < nl; k++)
				longest = strlen(labels[k]) > longest ? strlen(labels[k]) : longest;
			/* Rotate when the labels would not fit side by side. */
			sbuf_add(&xt, ")%s", nl * (longest + 1) > 90 ? " rotate by -30 left" : "");
		}
		unit = time_unit(maxt, &scale);
		kv_set(&kv, "PLOT", "%s", plot.s ? plot.s : "");
		kv_set(&kv, "XTICS", "%s", xt.s ? xt.s : "");
		kv_set(&kv, "BOXW", "%g", bw);
		kv_set(&kv, "BMARGIN", "%zu", 8 + n);
		if (isfinite(mint) && maxt / mint > 100)
			kv_set(&kv, "YSCALE", "set logscale y\nset yrange [%g:*]", mint * scale / 2);
		else
			kv_set(&kv, "YSCALE", "set yrange [0:*]");
		kv_set(&kv, "NSTAGES", "%zu", nl);
		kv_set(&kv, "SCALE", "%g", scale);
		kv_set(&kv, "UNIT", "%s", unit);
		kv_set(&kv, "W", "%d", 1100);
		kv_set(&kv, "H", "%d", 600);
		st = emit(c, "stages", "stages.gp", "Profiler stage breakdown: median time per stage",
			  "Profiler stage breakdown (median, p10 to p90)", &dat, &kv);
	} else {
		st = moe_error(MOE_ENOMEM, "out of memory");
	}
	for (size_t k = 0; k < nl; k++)
		free(labels[k]);
	kv_release(&kv);
	sbuf_release(&dat);
	sbuf_release(&plot);
	sbuf_release(&xt);
	if (st != MOE_OK)
		return st;

	return fig_gflops(c, rs, n);
}

enum moe_status report_figures_write(struct fig_ctx *c)
{
	enum moe_status (*const figs[])(struct fig_ctx *) = {
		fig_breakdown, fig_timeline, fig_links, fig_experts, fig_gpus,
		fig_routing, fig_scaling, fig_simmeas, fig_stages,
	};
	/* Runs of different models are never mixed in a comparison figure
	 * (routing, scaling, simulated against measured group by model); say
	 * so when the selection holds several. */
	for (size_t i = 1; i < c->nruns; i++)
		if (strcmp(c->runs[i].model ? c->runs[i].model : "",
			   c->runs[0].model ? c->runs[0].model : "") != 0) {
			enum moe_status st = note(c, "the runs are of different models (%s, %s): "
						  "comparison figures compare runs of one model only",
						  c->runs[0].model ? c->runs[0].model : "none",
						  c->runs[i].model ? c->runs[i].model : "none");
			if (st != MOE_OK)
				return st;
			break;
		}
	for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++) {
		enum moe_status st = figs[i](c);
		if (st != MOE_OK)
			return st;
	}
	return MOE_OK;
}
