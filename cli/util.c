/* cli/util.c: option parsing helpers, the progress bar and table output
 * shared by every subcommand. */
#include "config.h"
#include "cli/cli.h"

#include <errno.h>
#include <stdint.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_parse_format(const char *cmd, const char *arg, enum cli_format *out)
{
	if (strcmp(arg, "table") == 0) *out = CLI_FORMAT_TABLE;
	else if (strcmp(arg, "csv") == 0) *out = CLI_FORMAT_CSV;
	else if (strcmp(arg, "json") == 0) *out = CLI_FORMAT_JSON;
	else {
		cli_usage(cmd, "--format: unknown format '%s': expected table, csv or json", arg);
		return 0;
	}
	return 1;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "moekit %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'moekit %s --help'.\n", cmd);
	return 2;
}

int cli_fail(const char *cmd, enum moe_status st)
{
	const char *m = moe_errmsg();

	fprintf(stderr, "moekit %s: %s\n", cmd, m[0] ? m : moe_strerror(st));
	return moe_status_exit_code(st);
}

int cli_finish_stdout(const char *cmd)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "moekit %s: writing the output failed: %s\n", cmd, strerror(errno));
		return 1;
	}
	return 0;
}

int cli_bad_option(const char *cmd, int argc, char **argv)
{
	/* getopt_long has already said what was wrong. */
	(void)argc;
	(void)argv;
	fprintf(stderr, "Try 'moekit %s --help'.\n", cmd);
	return 2;
}

int cli_parse_long(const char *cmd, const char *opt, const char *arg, long min, long max,
		   long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (end == arg || *end != '\0' || errno == ERANGE || v < min || v > max) {
		cli_usage(cmd, "%s: '%s' is not an integer from %ld to %ld", opt, arg, min, max);
		return 0;
	}
	*out = v;
	return 1;
}

int cli_parse_double(const char *cmd, const char *opt, const char *arg, double min, double max,
		     double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (end == arg || *end != '\0' || !isfinite(v) || v < min || v > max) {
		cli_usage(cmd, "%s: '%s' is not a number from %g to %g", opt, arg, min, max);
		return 0;
	}
	*out = v;
	return 1;
}



int cli_parse_runs(const char *cmd, const char *arg, int64_t **ids, size_t *n)
{
	const char *p = arg;
	size_t cap = 16;

	*n = 0;
	if ((*ids = malloc(cap * sizeof **ids)) == NULL)
		return 0;
	while (*p) {
		char *end;
		long long a, b;
		errno = 0;
		a = strtoll(p, &end, 10);
		if (end == p || a < 1 || errno == ERANGE)
			goto bad;
		b = a;
		if (*end == '-') {
			p = end + 1;
			b = strtoll(p, &end, 10);
			if (end == p || b < a || errno == ERANGE || b - a > 100000)
				goto bad;
		}
		if (*end != ',' && *end != '\0')
			goto bad;
		for (long long v = a; v <= b; v++) {
			if (*n == cap) {
				int64_t *q = realloc(*ids, (cap *= 2) * sizeof **ids);
				if (q == NULL)
					goto bad;
				*ids = q;
			}
			(*ids)[(*n)++] = v;
		}
		p = *end == ',' ? end + 1 : end;
		if (*end == ',' && *p == '\0')
			goto bad;
	}
	if (*n > 0)
		return 1;
bad:
	free(*ids);
	*ids = NULL;
	cli_usage(cmd, "--runs: '%s' is not a list of run ids (positive integers, "
		  "comma separated, ranges as 3-7)", arg);
	return 0;
}

double cli_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_bar_init(struct cli_bar *bar, int quiet)
{
	bar->enabled = !quiet && isatty(STDERR_FILENO);
	bar->start_s = cli_now_s();
	bar->last_draw_s = 0;
}

void cli_bar_update(void *user, unsigned long long done, unsigned long long total,
		    const char *what)
{
	struct cli_bar *bar = user;
	double t, frac, left;
	int width = 30, fill;

	if (bar == NULL || !bar->enabled || total == 0)
		return;
	t = cli_now_s();
	if (done < total && t - bar->last_draw_s < 0.2)
		return;
	bar->last_draw_s = t;
	frac = (double)done / (double)total;
	fill = (int)(frac * width);
	left = frac > 0 ? (t - bar->start_s) * (1 - frac) / frac : 0;
	fprintf(stderr, "\r[%.*s%*s] %3.0f%% %llu/%llu %s, %.0f s left\033[K",
		fill, "##############################", width - fill, "", 100 * frac, done, total,
		what ? what : "", left);
	fflush(stderr);
}

void cli_bar_done(struct cli_bar *bar)
{
	if (bar->enabled) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
}

/* ---- tables ---- */

struct cli_table {
	char *json_key;
	int ncols;
	char **names;
	enum cli_col_type *types;
	int nrows, cap;
	char **cells; /* nrows * ncols */
	int nnotes;
	char **notes;
};

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (q == NULL) {
		/* The CLI has no way to continue without memory for its output. */
		fputs("moekit: out of memory\n", stderr);
		exit(1);
	}
	return q;
}

static char *xstrdup(const char *s)
{
	return s ? strcpy(xrealloc(NULL, strlen(s) + 1), s) : NULL;
}

struct cli_table *cli_table_new(const char *json_key)
{
	struct cli_table *t = xrealloc(NULL, sizeof *t);

	memset(t, 0, sizeof *t);
	t->json_key = xstrdup(json_key);
	return t;
}

void cli_table_free(struct cli_table *t)
{
	if (t == NULL)
		return;
	for (int i = 0; i < t->ncols; i++)
		free(t->names[i]);
	for (int i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	for (int i = 0; i < t->nnotes; i++)
		free(t->notes[i]);
	free(t->names);
	free(t->types);
	free(t->cells);
	free(t->notes);
	free(t->json_key);
	free(t);
}

void cli_table_col(struct cli_table *t, const char *name, enum cli_col_type type)
{
	t->names = xrealloc(t->names, sizeof(char *) * (size_t)(t->ncols + 1));
	t->types = xrealloc(t->types, sizeof(*t->types) * (size_t)(t->ncols + 1));
	t->names[t->ncols] = xstrdup(name);
	t->types[t->ncols] = type;
	t->ncols++;
}

void cli_table_row(struct cli_table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 16;
		t->cells = xrealloc(t->cells, sizeof(char *) * (size_t)t->cap * (size_t)t->ncols);
	}
	for (int c = 0; c < t->ncols; c++)
		t->cells[t->nrows * t->ncols + c] = xstrdup(cells[c]);
	t->nrows++;
}

void cli_table_note(struct cli_table *t, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	t->notes = xrealloc(t->notes, sizeof(char *) * (size_t)(t->nnotes + 1));
	t->notes[t->nnotes++] = xstrdup(buf);
}

static void csv_cell(FILE *out, const char *s)
{
	if (s == NULL)
		return;
	if (strpbrk(s, ",\"\n\r") == NULL) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static json_t *json_cell(const char *s, enum cli_col_type type)
{
	char *end;
	double v;

	if (s == NULL || *s == '\0')
		return json_null();
	if (type == CLI_COL_NUM) {
		v = strtod(s, &end);
		if (*end == '\0' && isfinite(v)) {
			/* Whole numbers stay integers so that ids compare as ids. */
			if (strpbrk(s, ".eE") == NULL && fabs(v) < 9e15)
				return json_integer((json_int_t)strtoll(s, NULL, 10));
			return json_real(v);
		}
	}
	return json_string(s);
}

void cli_table_print(const struct cli_table *t, enum cli_format fmt, FILE *out)
{
	if (fmt == CLI_FORMAT_JSON) {
		json_t *rows = json_array(), *root = json_object();

		for (int r = 0; r < t->nrows; r++) {
			json_t *o = json_object();
			for (int c = 0; c < t->ncols; c++)
				json_object_set_new(o, t->names[c],
						    json_cell(t->cells[r * t->ncols + c], t->types[c]));
			json_array_append_new(rows, o);
		}
		json_object_set_new(root, t->json_key ? t->json_key : "rows", rows);
		json_dumpf(root, out, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		fputc('\n', out);
		json_decref(root);
		return;
	}
	if (fmt == CLI_FORMAT_CSV) {
		for (int c = 0; c < t->ncols; c++) {
			if (c) fputc(',', out);
			csv_cell(out, t->names[c]);
		}
		fputc('\n', out);
		for (int r = 0; r < t->nrows; r++) {
			for (int c = 0; c < t->ncols; c++) {
				if (c) fputc(',', out);
				csv_cell(out, t->cells[r * t->ncols + c]);
			}
			fputc('\n', out);
		}
		return;
	}
	{
		int *w = xrealloc(NULL, sizeof(int) * (size_t)(t->ncols ? t->ncols : 1));

		for (int i = 0; i < t->nnotes; i++)
			fprintf(out, "# %s\n", t->notes[i]);
		for (int c = 0; c < t->ncols; c++) {
			w[c] = (int)strlen(t->names[c]);
			for (int r = 0; r < t->nrows; r++) {
				const char *s = t->cells[r * t->ncols + c];
				int l = s ? (int)strlen(s) : 0;
				if (l > w[c]) w[c] = l;
			}
		}
		for (int r = -1; r < t->nrows; r++) {
			for (int c = 0; c < t->ncols; c++) {
				const char *s = r < 0 ? t->names[c] : t->cells[r * t->ncols + c];
				int width = t->types[c] == CLI_COL_NUM ? w[c] : -w[c];
				/* no padding after the last column */
				if (c == t->ncols - 1 && width < 0)
					width = 0;
				fprintf(out, "%s%*s", c ? "  " : "", width, s ? s : "");
			}
			fputc('\n', out);
		}
		free(w);
	}
}
