/* reports/util.c: what every report writer needs: a growable string, files
 * written through a temporary name and rename, templates, escaping for
 * gnuplot, HTML and data files, and finding and running gnuplot. */
#include "config.h"
#include "reports/report.h"
#include "reports/report_int.h"
#include "moe/preset.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

void sbuf_addn(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 256;
		char *p;
		while (c < b->len + n + 1)
			c *= 2;
		if ((p = realloc(b->s, c)) == NULL) {
			b->oom = 1;
			return;
		}
		b->s = p;
		b->cap = c;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void sbuf_add(struct sbuf *b, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof small) {
		sbuf_addn(b, small, (size_t)n);
		return;
	}
	{
		char *big = malloc((size_t)n + 1);
		if (big == NULL) {
			b->oom = 1;
			return;
		}
		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
		sbuf_addn(b, big, (size_t)n);
		free(big);
	}
}

void sbuf_release(struct sbuf *b)
{
	free(b->s);
	memset(b, 0, sizeof *b);
}

enum moe_status report_file_put(const char *dir, const char *name, const char *data, size_t len)
{
	char path[4096], tmp[4096];
	FILE *f;
	int bad;

	if (data == NULL)
		MOE_FAIL(MOE_ENOMEM, "%s/%s: out of memory", dir, name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
	if ((f = fopen(tmp, "w")) == NULL)
		MOE_FAIL(MOE_EIO, "%s: cannot write: %s", tmp, strerror(errno));
	bad = fwrite(data, 1, len, f) != len;
	bad |= fclose(f) != 0;
	if (bad || rename(tmp, path) != 0) {
		int e = errno;
		remove(tmp);
		MOE_FAIL(MOE_EIO, "%s: writing failed: %s", path, strerror(e));
	}
	return MOE_OK;
}

enum moe_status report_template_load(const char *name, char **out)
{
	char rel[512], path[4096];
	enum moe_status st;
	struct sbuf b = {0};
	char chunk[4096];
	size_t got;
	FILE *f;

	*out = NULL;
	snprintf(rel, sizeof rel, "reports/templates/%s", name);
	if ((st = moe_data_path(rel, path, sizeof path)) != MOE_OK)
		MOE_FAIL(st, "report template %s not found (set MOEKIT_DATADIR to the folder "
			 "that holds reports/templates)", rel);
	if ((f = fopen(path, "r")) == NULL)
		MOE_FAIL(MOE_EIO, "%s: cannot read: %s", path, strerror(errno));
	while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
		sbuf_addn(&b, chunk, got);
	if (ferror(f) || b.oom || b.s == NULL) {
		fclose(f);
		sbuf_release(&b);
		MOE_FAIL(MOE_EIO, "%s: reading failed (empty or unreadable)", path);
	}
	fclose(f);
	*out = b.s;
	return MOE_OK;
}

void report_template_fill(struct sbuf *b, const char *tmpl, const char *const *keys,
			  const char *const *vals, size_t n)
{
	const char *p = tmpl;

	while (*p) {
		const char *at = strchr(p, '@'), *end;
		size_t i;

		if (at == NULL) {
			sbuf_addn(b, p, strlen(p));
			return;
		}
		sbuf_addn(b, p, (size_t)(at - p));
		end = strchr(at + 1, '@');
		if (end == NULL) {
			sbuf_addn(b, at, strlen(at));
			return;
		}
		for (i = 0; i < n; i++)
			if (strlen(keys[i]) == (size_t)(end - at - 1) &&
			    strncmp(keys[i], at + 1, (size_t)(end - at - 1)) == 0)
				break;
		if (i < n) {
			sbuf_addn(b, vals[i], strlen(vals[i]));
			p = end + 1;
		} else {
			/* Not a key: keep the '@' and go on from the next one. */
			sbuf_addn(b, "@", 1);
			p = at + 1;
		}
	}
}

void report_html_escape(struct sbuf *b, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '&': sbuf_addn(b, "&amp;", 5); break;
		case '<': sbuf_addn(b, "&lt;", 4); break;
		case '>': sbuf_addn(b, "&gt;", 4); break;
		case '"': sbuf_addn(b, "&quot;", 6); break;
		default: sbuf_addn(b, s, 1);
		}
	}
}

char *report_gp_escape(const char *s, char *buf, size_t n)
{
	size_t j = 0;

	if (n == 0)
		return buf;
	for (; s && *s && j + 2 < n; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\\' || c == '"') {
			buf[j++] = '\\';
			buf[j++] = (char)c;
		} else {
			buf[j++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
		}
	}
	buf[j] = '\0';
	return buf;
}

const char *report_dat_str(const char *s, char *buf, size_t n)
{
	size_t j = 0;

	if (n < 3)
		return "\"\"";
	buf[j++] = '"';
	for (; s && *s && j + 2 < n; s++) {
		unsigned char c = (unsigned char)*s;
		buf[j++] = c == '"' ? '\'' : c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	buf[j++] = '"';
	buf[j] = '\0';
	return buf;
}

enum moe_status report_formats_parse(const char *list, unsigned *formats)
{
	const char *p = list;

	*formats = 0;
	while (*p) {
		size_t len = strcspn(p, ",");
		if (len == 3 && strncmp(p, "png", 3) == 0)
			*formats |= REPORT_PNG;
		else if (len == 3 && strncmp(p, "svg", 3) == 0)
			*formats |= REPORT_SVG;
		else if (len == 3 && strncmp(p, "pdf", 3) == 0)
			*formats |= REPORT_PDF;
		else
			MOE_FAIL(MOE_EINVAL, "--formats: unknown format '%.*s': expected png, svg "
				 "or pdf, separated by commas", (int)len, p);
		p += len;
		if (*p == ',')
			p++;
	}
	if (*formats == 0)
		MOE_FAIL(MOE_EINVAL, "--formats: empty: expected png, svg or pdf");
	return MOE_OK;
}

enum moe_status report_window_parse(const char *arg, double window[2])
{
	char *end;
	double a, b;

	errno = 0;
	a = strtod(arg, &end);
	if (end == arg || *end != ':' || errno == ERANGE)
		MOE_FAIL(MOE_EINVAL, "--window: '%s' is not START:END (seconds)", arg);
	b = strtod(end + 1, &end);
	if (*end != '\0' || errno == ERANGE || !(a >= 0) || !(b > a) || !isfinite(b))
		MOE_FAIL(MOE_EINVAL, "--window: '%s': expected 0 <= START < END, in seconds", arg);
	window[0] = a;
	window[1] = b;
	return MOE_OK;
}

int report_gnuplot_find(const char *given, char *buf, size_t n)
{
	const char *path, *p;

	if (given != NULL) {
		if (given[0] == '\0' || access(given, X_OK) != 0)
			return 0;
		snprintf(buf, n, "%s", given);
		return 1;
	}
	if ((path = getenv("PATH")) == NULL)
		return 0;
	for (p = path;; ) {
		size_t len = strcspn(p, ":");
		struct stat sb;
		/* An empty PATH entry means the current directory. */
		snprintf(buf, n, "%.*s%sgnuplot", (int)len, len ? p : ".", "/");
		if (stat(buf, &sb) == 0 && S_ISREG(sb.st_mode) && access(buf, X_OK) == 0)
			return 1;
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	buf[0] = '\0';
	return 0;
}

/* gnuplot's message for the failure: the last line of its output that is
 * not a warning (the error ends the script), else the last line. */
static void log_error_line(const char *log, long from, char *out, size_t n)
{
	FILE *f = fopen(log, "r");
	char line[1024];
	int have_error = 0;

	snprintf(out, n, "no message");
	if (f == NULL)
		return;
	fseek(f, from, SEEK_SET);
	while (fgets(line, sizeof line, f)) {
		int warning;
		line[strcspn(line, "\n")] = '\0';
		if (line[strspn(line, " ^")] == '\0')
			continue;
		warning = strstr(line, "warning:") != NULL;
		if (!warning || !have_error)
			snprintf(out, n, "%s", line + strspn(line, " "));
		have_error |= !warning;
	}
	fclose(f);
}

enum moe_status report_gnuplot_run(const char *gnuplot, const char *script, const char *log)
{
	posix_spawn_file_actions_t fa;
	char *argv[] = {(char *)gnuplot, (char *)script, NULL};
	struct stat sb;
	long from = stat(log, &sb) == 0 ? (long)sb.st_size : 0;
	pid_t pid;
	int rc, status;
	char why[512];

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	rc = posix_spawn(&pid, gnuplot, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		MOE_FAIL(MOE_ERUNTIME, "%s: cannot run %s: %s", script, gnuplot, strerror(rc));
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			MOE_FAIL(MOE_ERUNTIME, "%s: waiting for gnuplot: %s", script,
				 strerror(errno));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return MOE_OK;
	log_error_line(log, from, why, sizeof why);
	if (WIFSIGNALED(status))
		MOE_FAIL(MOE_ERUNTIME, "%s: gnuplot died of signal %d (%s)", script,
			 WTERMSIG(status), why);
	MOE_FAIL(MOE_ERUNTIME, "%s: gnuplot failed (exit %d): %s (see %s)", script,
		 WEXITSTATUS(status), why, log);
}

static void leaves(json_t *v, struct sbuf *key, report_leaf_fn fn, void *user)
{
	if (json_is_object(v)) {
		const char *k;
		json_t *x;
		size_t len = key->len;
		json_object_foreach(v, k, x) {
			if (len)
				sbuf_addn(key, ".", 1);
			sbuf_addn(key, k, strlen(k));
			if (!key->oom)
				leaves(x, key, fn, user);
			key->len = len;
			if (key->s)
				key->s[len] = '\0';
		}
		return;
	}
	{
		char *text = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		fn(user, key->s ? key->s : "", json_is_string(v) ? json_string_value(v) : text, v);
		free(text);
	}
}

void report_json_leaves(json_t *obj, report_leaf_fn fn, void *user)
{
	struct sbuf key = {0};

	/* Sorted keys, so the order does not depend on how the run wrote them. */
	if (!json_is_object(obj))
		return;
	{
		size_t n = json_object_size(obj), i = 0;
		const char **ks = malloc((n ? n : 1) * sizeof *ks);
		const char *k;
		json_t *x;
		if (ks == NULL)
			return;
		json_object_foreach(obj, k, x)
			ks[i++] = k;
		for (size_t a = 1; a < n; a++)
			for (size_t b = a; b > 0 && strcmp(ks[b - 1], ks[b]) > 0; b--) {
				const char *t = ks[b];
				ks[b] = ks[b - 1];
				ks[b - 1] = t;
			}
		for (i = 0; i < n; i++) {
			key.len = 0;
			sbuf_addn(&key, ks[i], strlen(ks[i]));
			if (!key.oom)
				leaves(json_object_get(obj, ks[i]), &key, fn, user);
		}
		free(ks);
	}
	sbuf_release(&key);
}
