/* reports/report.c: `moekit report` as a library call: reads the runs,
 * has figures.c write the data files and scripts, runs gnuplot on each
 * script, and writes summary.md and index.html (last, through a temporary
 * name, so a report that failed never leaves a complete-looking page). */
#include "config.h"
#include "reports/report.h"
#include "reports/report_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

void report_result_release(struct report_result *res)
{
	if (res == NULL)
		return;
	strv_free(res->figures, res->nfigures);
	strv_free(res->skipped, res->nskipped);
	strv_free(res->notes, res->nnotes);
	memset(res, 0, sizeof *res);
}

/* One summary row's cells, formatted for people. */
struct srow {
	char id[32], step[32], tps[32], ltime[32], a2a[32], bytes[32], dropped[32];
};

static void fmt_num(char *buf, size_t n, double v, double scale, const char *f)
{
	if (isfinite(v))
		snprintf(buf, n, f, v * scale);
	else
		snprintf(buf, n, "-");
}

static void summary_row(const struct rrun *r, struct srow *s)
{
	const struct rmetric *step = rrun_metric(r, "step_time_s");
	const struct rmetric *tps = rrun_metric(r, "tokens_per_s");

	snprintf(s->id, sizeof s->id, "%lld", (long long)r->id);
	fmt_num(s->step, sizeof s->step, step ? step->value : NAN, 1e3, "%.4g");
	fmt_num(s->tps, sizeof s->tps, tps ? tps->value : NAN, 1, "%.6g");
	fmt_num(s->ltime, sizeof s->ltime, r->nlayers ? rrun_layer_sum(r, RL_TOTAL) : NAN, 1e3,
		"%.4g");
	fmt_num(s->a2a, sizeof s->a2a, r->nlayers ? rrun_layer_sum(r, RL_DISPATCH) +
		rrun_layer_sum(r, RL_COMBINE) : NAN, 1e3, "%.4g");
	fmt_num(s->bytes, sizeof s->bytes, r->nlayers ? rrun_layer_sum(r, RL_DBYTES) +
		rrun_layer_sum(r, RL_CBYTES) : NAN, 1e-9, "%.4g");
	fmt_num(s->dropped, sizeof s->dropped, r->nlayers ? rrun_layer_sum(r, RL_DROPPED) : NAN, 1,
		"%.6g");
}

static const char *const sum_head[] = {
	"run", "kind", "label", "model", "cluster", "step time (ms)", "tokens/s",
	"layer time, sum (ms)", "all-to-all, sum (ms)", "bytes moved (GB)", "dropped tokens",
};

static void html_cell(struct sbuf *b, const char *s, int num)
{
	sbuf_add(b, "<td%s>", num ? " class=\"num\"" : "");
	report_html_escape(b, s ? s : "");
	sbuf_add(b, "</td>");
}

static void html_summary(struct sbuf *b, const struct rrun *runs, size_t n)
{
	sbuf_add(b, "<table>\n<tr>");
	for (size_t i = 0; i < 11; i++)
		sbuf_add(b, "<th>%s</th>", sum_head[i]);
	sbuf_add(b, "</tr>\n");
	for (size_t i = 0; i < n; i++) {
		struct srow s;
		summary_row(&runs[i], &s);
		sbuf_add(b, "<tr><td class=\"num\"><a href=\"#run%s\">%s</a></td>", s.id, s.id);
		html_cell(b, runs[i].kind, 0);
		html_cell(b, runs[i].label, 0);
		html_cell(b, runs[i].model, 0);
		html_cell(b, runs[i].cluster, 0);
		html_cell(b, s.step, 1);
		html_cell(b, s.tps, 1);
		html_cell(b, s.ltime, 1);
		html_cell(b, s.a2a, 1);
		html_cell(b, s.bytes, 1);
		html_cell(b, s.dropped, 1);
		sbuf_add(b, "</tr>\n");
	}
	sbuf_add(b, "</table>\n");
}

/* Markdown cells cannot hold '|' or newlines. */
static void md_cell(struct sbuf *b, const char *s)
{
	sbuf_add(b, " ");
	for (; s && *s; s++)
		sbuf_add(b, "%s", *s == '|' ? "\\|" : *s == '\n' ? " " : (char[2]){*s, 0});
	sbuf_add(b, " |");
}

static void md_summary(struct sbuf *b, const struct rrun *runs, size_t n)
{
	sbuf_add(b, "|");
	for (size_t i = 0; i < 11; i++)
		sbuf_add(b, " %s |", sum_head[i]);
	sbuf_add(b, "\n|");
	for (size_t i = 0; i < 11; i++)
		sbuf_add(b, i < 5 ? " --- |" : " ---: |");
	sbuf_add(b, "\n");
	for (size_t i = 0; i < n; i++) {
		struct srow s;
		summary_row(&runs[i], &s);
		sbuf_add(b, "|");
		md_cell(b, s.id);
		md_cell(b, runs[i].kind);
		md_cell(b, runs[i].label);
		md_cell(b, runs[i].model);
		md_cell(b, runs[i].cluster);
		md_cell(b, s.step);
		md_cell(b, s.tps);
		md_cell(b, s.ltime);
		md_cell(b, s.a2a);
		md_cell(b, s.bytes);
		md_cell(b, s.dropped);
		sbuf_add(b, "\n");
	}
}

static void param_leaf(void *user, const char *key, const char *text, json_t *v)
{
	struct sbuf *b = user;

	(void)v;
	sbuf_add(b, "<tr><td>");
	report_html_escape(b, key);
	sbuf_add(b, "</td><td>");
	report_html_escape(b, text ? text : "null");
	sbuf_add(b, "</td></tr>\n");
}

static void html_runs(struct sbuf *b, const struct rrun *runs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct rrun *r = &runs[i];
		char t[512];
		sbuf_add(b, "<h3 id=\"run%lld\">", (long long)r->id);
		report_html_escape(b, rrun_title(r, t, sizeof t));
		sbuf_add(b, "</h3>\n<table>\n");
		param_leaf(b, "kind", r->kind, NULL);
		param_leaf(b, "model", r->model ? r->model : "-", NULL);
		param_leaf(b, "cluster", r->cluster ? r->cluster : "-", NULL);
		param_leaf(b, "seed", r->seed ? r->seed : "-", NULL);
		param_leaf(b, "started", r->started_at ? r->started_at : "-", NULL);
		sbuf_add(b, "</table>\n");
		if (json_object_size(r->inputs) > 0) {
			sbuf_add(b, "<table>\n<tr><th>input (runs.inputs)</th><th>value</th></tr>\n");
			report_json_leaves(r->inputs, param_leaf, b);
			sbuf_add(b, "</table>\n");
		} else {
			sbuf_add(b, "<p>No inputs stored.</p>\n");
		}
		if (r->nmetrics > 0) {
			sbuf_add(b, "<table>\n<tr><th>metric</th><th>value</th><th>unit</th></tr>\n");
			for (size_t k = 0; k < r->nmetrics; k++) {
				char v[64];
				snprintf(v, sizeof v, "%.6g", r->metrics[k].value);
				sbuf_add(b, "<tr>");
				html_cell(b, r->metrics[k].name, 0);
				html_cell(b, v, 1);
				html_cell(b, r->metrics[k].unit, 0);
				sbuf_add(b, "</tr>\n");
			}
			sbuf_add(b, "</table>\n");
		}
	}
}

static void html_figures(struct sbuf *b, const struct fig_ctx *c, unsigned formats)
{
	static const char *const ext[] = {"png", "svg", "pdf"};

	if (c->nfigs == 0)
		sbuf_add(b, "<p>No figure: the runs hold no data any figure draws.</p>\n");
	for (size_t i = 0; i < c->nfigs; i++) {
		const char *name = c->figs[i];
		const char *img = formats & REPORT_PNG ? "png" : formats & REPORT_SVG ? "svg" : NULL;
		sbuf_add(b, "<figure id=\"%s\">\n", name);
		if (img) {
			sbuf_add(b, "<img src=\"%s.%s\" alt=\"", name, img);
			report_html_escape(b, c->titles[i]);
			sbuf_add(b, "\" loading=\"lazy\">\n");
		}
		sbuf_add(b, "<figcaption><strong>");
		report_html_escape(b, c->titles[i]);
		sbuf_add(b, "</strong><br>");
		for (int k = 0; k < 3; k++)
			if (formats & (1u << k))
				sbuf_add(b, "<a href=\"%s.%s\">%s</a>", name, ext[k], ext[k]);
		sbuf_add(b, "<a href=\"%s.dat\">data</a><a href=\"%s.gp\">gnuplot script</a>"
			 "</figcaption>\n</figure>\n", name, name);
	}
}

static enum moe_status write_pages(const struct report_options *o, unsigned formats,
				   const struct fig_ctx *c, int with_index)
{
	struct sbuf md = {0}, sum = {0}, figs = {0}, skipped = {0}, runs = {0}, nav = {0},
		    meta = {0}, page = {0};
	char *tmpl = NULL, *css = NULL;
	enum moe_status st;

	/* summary.md */
	sbuf_add(&md, "# moekit report\n\n%zu run%s, %zu figure%s.\n\n## Summary\n\n", c->nruns,
		 c->nruns == 1 ? "" : "s", c->nfigs, c->nfigs == 1 ? "" : "s");
	md_summary(&md, c->runs, c->nruns);
	sbuf_add(&md, "\n## Figures\n\n");
	for (size_t i = 0; i < c->nfigs; i++)
		sbuf_add(&md, "- `%s` (%s.dat, %s.gp): %s\n", c->figs[i], c->figs[i], c->figs[i],
			 c->titles[i]);
	if (c->nskipped) {
		sbuf_add(&md, "\n## Figures not drawn\n\n");
		for (size_t i = 0; i < c->nskipped; i++)
			sbuf_add(&md, "- %s\n", c->skipped[i]);
	}
	for (size_t i = 0; i < c->nnotes; i++)
		sbuf_add(&md, "%s- note: %s\n", i == 0 ? "\n## Notes\n\n" : "", c->notes[i]);
	if (md.oom)
		st = moe_error(MOE_ENOMEM, "summary.md: out of memory");
	else
		st = report_file_put(o->out_dir, "summary.md", md.s, md.len);
	sbuf_release(&md);
	if (st != MOE_OK || !with_index)
		return st;

	/* index.html, last. */
	if ((st = report_template_load("index.html", &tmpl)) != MOE_OK ||
	    (st = report_template_load("style.css", &css)) != MOE_OK) {
		free(tmpl);
		return st;
	}
	html_summary(&sum, c->runs, c->nruns);
	html_figures(&figs, c, formats);
	if (c->nskipped == 0 && c->nnotes == 0)
		sbuf_add(&skipped, "<p>None: every figure was drawn.</p>\n");
	else {
		sbuf_add(&skipped, "<ul>\n");
		for (size_t i = 0; i < c->nskipped; i++) {
			sbuf_add(&skipped, "<li>");
			report_html_escape(&skipped, c->skipped[i]);
			sbuf_add(&skipped, "</li>\n");
		}
		for (size_t i = 0; i < c->nnotes; i++) {
			sbuf_add(&skipped, "<li>note: ");
			report_html_escape(&skipped, c->notes[i]);
			sbuf_add(&skipped, "</li>\n");
		}
		sbuf_add(&skipped, "</ul>\n");
	}
	html_runs(&runs, c->runs, c->nruns);
	sbuf_add(&nav, "<a href=\"#summary\">Summary</a>");
	for (size_t i = 0; i < c->nfigs; i++)
		sbuf_add(&nav, "<a href=\"#%s\">%s</a>", c->figs[i], c->figs[i]);
	sbuf_add(&nav, "<a href=\"#skipped\">Not drawn</a><a href=\"#runs\">Runs</a>");
	sbuf_add(&meta, "%zu run%s:", c->nruns, c->nruns == 1 ? "" : "s");
	for (size_t i = 0; i < c->nruns; i++) {
		char t[512];
		sbuf_add(&meta, "%s ", i ? ";" : "");
		report_html_escape(&meta, rrun_title(&c->runs[i], t, sizeof t));
		sbuf_add(&meta, " (");
		report_html_escape(&meta, c->runs[i].kind);
		if (c->runs[i].model) {
			sbuf_add(&meta, ", ");
			report_html_escape(&meta, c->runs[i].model);
		}
		sbuf_add(&meta, ")");
	}
	{
		const char *keys[] = {"TITLE", "VERSION", "STYLE", "META", "NAV", "SUMMARY",
				      "FIGURES", "SKIPPED", "RUNS"};
		const char *vals[] = {"moekit report", PACKAGE_VERSION, css, meta.s ? meta.s : "",
				      nav.s ? nav.s : "", sum.s ? sum.s : "", figs.s ? figs.s : "",
				      skipped.s ? skipped.s : "", runs.s ? runs.s : ""};
		report_template_fill(&page, tmpl, keys, vals, 9);
	}
	if (page.oom || sum.oom || figs.oom || skipped.oom || runs.oom || nav.oom || meta.oom)
		st = moe_error(MOE_ENOMEM, "index.html: out of memory");
	else
		st = report_file_put(o->out_dir, "index.html", page.s, page.len);
	free(tmpl);
	free(css);
	sbuf_release(&sum);
	sbuf_release(&figs);
	sbuf_release(&skipped);
	sbuf_release(&runs);
	sbuf_release(&nav);
	sbuf_release(&meta);
	sbuf_release(&page);
	return st;
}

enum moe_status report_write(struct store *db, const int64_t *ids, size_t n,
			     const struct report_options *o, struct report_result *res)
{
	struct fig_ctx c = {0};
	unsigned formats = o->formats ? o->formats : REPORT_PNG;
	char path[4096];
	enum moe_status st;
	struct stat sb;

	memset(res, 0, sizeof *res);
	if (o->out_dir == NULL || o->out_dir[0] == '\0')
		MOE_FAIL(MOE_EINVAL, "--out: an output folder is required");
	if ((st = rrun_load_set(db, ids, n, &c.runs, &c.nruns)) != MOE_OK)
		return st;
	if (mkdir(o->out_dir, 0777) != 0 && errno != EEXIST) {
		st = moe_error(MOE_EIO, "%s: cannot create the folder: %s", o->out_dir,
			       strerror(errno));
		goto out;
	}
	if (stat(o->out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		st = moe_error(MOE_EIO, "%s: not a folder", o->out_dir);
		goto out;
	}
	/* An index from an earlier report would look complete if this one fails. */
	snprintf(path, sizeof path, "%s/index.html", o->out_dir);
	if (remove(path) != 0 && errno != ENOENT) {
		st = moe_error(MOE_EIO, "%s: cannot remove the old page: %s", path, strerror(errno));
		goto out;
	}
	c.dir = o->out_dir;
	c.formats = formats;
	c.window_s[0] = o->window_s[0];
	c.window_s[1] = o->window_s[1];
	if ((st = report_figures_write(&c)) != MOE_OK)
		goto out;
	if (!report_gnuplot_find(o->gnuplot, res->gnuplot_path, sizeof res->gnuplot_path)) {
		res->gnuplot_missing = 1;
	} else {
		char log[4096];
		snprintf(log, sizeof log, "%s/gnuplot.log", o->out_dir);
		remove(log);
		for (size_t i = 0; i < c.nfigs && st == MOE_OK; i++) {
			char script[4096];
			snprintf(script, sizeof script, "%s/%s.gp", o->out_dir, c.figs[i]);
			st = report_gnuplot_run(res->gnuplot_path, script, log);
		}
		if (st != MOE_OK)
			goto out;
	}
	st = write_pages(o, formats, &c, !res->gnuplot_missing);
out:
	res->figures = c.figs;
	res->nfigures = c.nfigs;
	res->skipped = c.skipped;
	res->nskipped = c.nskipped;
	res->notes = c.notes;
	res->nnotes = c.nnotes;
	strv_free(c.titles, c.ntitles);
	rrun_free_set(c.runs, c.nruns);
	return st;
}
