/* study/sweep.c: sweep specifications (see sweep.h). */
#include "config.h"
#include "study/sweep.h"
#include "moe/ini.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const study_sweep_options[] = {
	"model", "cluster", "ep", "tokens-per-gpu", "placement", "redundant-experts", "algorithm",
	"multipath", "trace", "step", "pattern", "seed", "top-k", "capacity-factor", "phase",
	"micro-batches", "context", "layers", "mode", "coalesce", "slow-gpu", "slow-link",
	"overlap", "no-dedup", NULL,
};

/* Options of `moekit sim` that take no argument: a value of true/yes/1
 * passes the flag, false/no/0 leaves it out. */
static const char *const flag_options[] = {"overlap", "no-dedup", NULL};

static int is_flag(const char *name)
{
	for (int i = 0; flag_options[i]; i++)
		if (strcmp(flag_options[i], name) == 0)
			return 1;
	return 0;
}

static int flag_value(const char *v, int *on)
{
	if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "1") == 0)
		*on = 1;
	else if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0 || strcmp(v, "0") == 0)
		*on = 0;
	else
		return 0;
	return 1;
}

#define MAX_AXES 32

struct axis {
	char *name;
	int nvalues;
	char **values;
};

struct parse {
	const char *path;
	struct study_sweep *s;
	struct axis axes[MAX_AXES];
	int naxes;
	int have_points;  /* a [points] section was given */
	int axes_line;
};

static int known_option(const char *name)
{
	for (int i = 0; study_sweep_options[i]; i++)
		if (strcmp(study_sweep_options[i], name) == 0)
			return 1;
	return 0;
}

static enum moe_status unknown_option(const struct parse *p, int line, const char *section,
				      const char *key)
{
	char list[512] = "";

	for (int i = 0; study_sweep_options[i]; i++) {
		if (i) strncat(list, ", ", sizeof list - strlen(list) - 1);
		strncat(list, study_sweep_options[i], sizeof list - strlen(list) - 1);
	}
	MOE_FAIL(MOE_ECONFIG, "%s:%d: %s.%s: unknown option: expected one of %s", p->path, line,
		 section, key, list);
}

static char *trim_dup(const char *b, const char *e)
{
	while (b < e && (*b == ' ' || *b == '\t'))
		b++;
	while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	return strndup(b, (size_t)(e - b));
}

static enum moe_status add_option(struct study_option **opts, int *n, const char *name,
				  const char *value)
{
	struct study_option *o;
	int on;

	if (is_flag(name) && !flag_value(value, &on))
		MOE_FAIL(MOE_ECONFIG, "%s: '%s' is not true or false", name, value);
	o = realloc(*opts, sizeof **opts * (size_t)(*n + 1));

	if (o == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	*opts = o;
	o[*n].name = strdup(name);
	o[*n].value = strdup(value);
	(*n)++;
	if (o[*n - 1].name == NULL || o[*n - 1].value == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	return MOE_OK;
}

static struct axis *find_axis(struct parse *p, const char *name)
{
	for (int i = 0; i < p->naxes; i++)
		if (strcmp(p->axes[i].name, name) == 0)
			return &p->axes[i];
	return NULL;
}

static enum moe_status add_axis(struct parse *p, int line, const char *key, const char *value)
{
	struct axis *a;
	const char *b = value;

	if (find_axis(p, key) != NULL)
		MOE_FAIL(MOE_ECONFIG, "%s:%d: axes.%s: given twice", p->path, line, key);
	if (p->naxes == MAX_AXES)
		MOE_FAIL(MOE_ECONFIG, "%s:%d: axes.%s: more than %d axes", p->path, line, key, MAX_AXES);
	a = &p->axes[p->naxes++];
	memset(a, 0, sizeof *a);
	if ((a->name = strdup(key)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	for (;;) {
		const char *e = strchr(b, ',');
		char *v = trim_dup(b, e ? e : b + strlen(b)), **vv;
		if (v == NULL)
			MOE_FAIL(MOE_ENOMEM, "out of memory");
		if (*v == '\0') {
			free(v);
			MOE_FAIL(MOE_ECONFIG, "%s:%d: axes.%s: empty value in '%s': expected values "
				 "separated by commas", p->path, line, key, value);
		}
		vv = realloc(a->values, sizeof(char *) * (size_t)(a->nvalues + 1));
		if (vv == NULL) {
			free(v);
			MOE_FAIL(MOE_ENOMEM, "out of memory");
		}
		a->values = vv;
		a->values[a->nvalues++] = v;
		if (e == NULL)
			break;
		b = e + 1;
	}
	return MOE_OK;
}

static enum moe_status set_key(struct study_point *pt)
{
	size_t len = 1;
	char *k;

	for (int i = 0; i < pt->n; i++)
		len += strlen(pt->opts[i].name) + strlen(pt->opts[i].value) + 2;
	if ((k = malloc(len)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	k[0] = '\0';
	for (int i = 0; i < pt->n; i++) {
		if (i) strcat(k, " ");
		strcat(k, pt->opts[i].name);
		strcat(k, "=");
		strcat(k, pt->opts[i].value);
	}
	pt->key = k;
	return MOE_OK;
}

static enum moe_status new_point(struct study_sweep *s, struct study_point **out)
{
	struct study_point *pts = realloc(s->points, sizeof *pts * (size_t)(s->npoints + 1));

	if (pts == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	s->points = pts;
	*out = &pts[s->npoints++];
	memset(*out, 0, sizeof **out);
	return MOE_OK;
}

/* A [points] line: "axis=value axis=value ...", in the axes' order. */
static enum moe_status add_listed_point(struct parse *p, int line, const char *value)
{
	struct study_point *pt;
	char *copy = strdup(value), *save = NULL;
	enum moe_status st;

	if (copy == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	if ((st = new_point(p->s, &pt)) != MOE_OK)
		goto out;
	for (char *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		char *eq = strchr(tok, '=');
		if (eq == NULL || eq == tok || eq[1] == '\0') {
			st = moe_error(MOE_ECONFIG, "%s:%d: points.point: '%s': expected option=value",
				       p->path, line, tok);
			goto out;
		}
		*eq = '\0';
		if (!known_option(tok)) {
			st = unknown_option(p, line, "points", tok);
			goto out;
		}
		{
			int on;
			if (is_flag(tok) && !flag_value(eq + 1, &on)) {
				st = moe_error(MOE_ECONFIG, "%s:%d: points.point: %s: '%s': expected true "
					       "or false", p->path, line, tok, eq + 1);
				goto out;
			}
		}
		for (int i = 0; i < pt->n; i++)
			if (strcmp(pt->opts[i].name, tok) == 0) {
				st = moe_error(MOE_ECONFIG, "%s:%d: points.point: %s given twice",
					       p->path, line, tok);
				goto out;
			}
		if ((st = add_option(&pt->opts, &pt->n, tok, eq + 1)) != MOE_OK)
			goto out;
	}
	if (pt->n == 0)
		st = moe_error(MOE_ECONFIG, "%s:%d: points.point: empty: expected option=value pairs",
			       p->path, line);
	else
		st = set_key(pt);
out:
	free(copy);
	return st;
}

static enum moe_status handler(void *user, const char *section, const char *key,
			       const char *value, int line)
{
	struct parse *p = user;

	if (strcmp(section, "sweep") == 0) {
		if (strcmp(key, "name") != 0)
			MOE_FAIL(MOE_ECONFIG, "%s:%d: sweep.%s: unknown key: expected name", p->path,
				 line, key);
		for (const char *c = value; *c; c++)
			if (*c == ':' || *c == '\n')
				MOE_FAIL(MOE_ECONFIG, "%s:%d: sweep.name: '%s' may not contain ':'",
					 p->path, line, value);
		free(p->s->name);
		if (*value == '\0' || (p->s->name = strdup(value)) == NULL)
			MOE_FAIL(MOE_ECONFIG, "%s:%d: sweep.name: expected a name", p->path, line);
		return MOE_OK;
	}
	if (strcmp(section, "fixed") == 0 || strcmp(section, "axes") == 0) {
		if (!known_option(key))
			return unknown_option(p, line, section, key);
		if (*section == 'f') {
			int on;
			if (is_flag(key) && !flag_value(value, &on))
				MOE_FAIL(MOE_ECONFIG, "%s:%d: fixed.%s: '%s': expected true or false",
					 p->path, line, key, value);
			return add_option(&p->s->fixed, &p->s->nfixed, key, value);
		}
		p->axes_line = p->axes_line ? p->axes_line : line;
		{
			enum moe_status st = add_axis(p, line, key, value);
			const struct axis *a = &p->axes[p->naxes - 1];
			int on;
			for (int v = 0; st == MOE_OK && is_flag(key) && v < a->nvalues; v++)
				if (!flag_value(a->values[v], &on))
					st = moe_error(MOE_ECONFIG, "%s:%d: axes.%s: '%s': expected true "
						       "or false", p->path, line, key, a->values[v]);
			return st;
		}
	}
	if (strcmp(section, "points") == 0) {
		if (strcmp(key, "point") != 0)
			MOE_FAIL(MOE_ECONFIG, "%s:%d: points.%s: unknown key: expected point", p->path,
				 line, key);
		p->have_points = 1;
		return add_listed_point(p, line, value);
	}
	MOE_FAIL(MOE_ECONFIG, "%s:%d: %s%s%s: unknown section: expected [sweep], [fixed], [axes] "
		 "or [points]", p->path, line, section, *section ? "." : "", key);
}

/* The cross product, first axis slowest. */
static enum moe_status expand(struct parse *p)
{
	long total = 1;
	int idx[MAX_AXES] = {0};
	enum moe_status st;

	for (int a = 0; a < p->naxes; a++) {
		total *= p->axes[a].nvalues;
		if (total > 1000000)
			MOE_FAIL(MOE_ECONFIG, "%s: axes: more than 1,000,000 points", p->path);
	}
	for (long n = 0; n < total; n++) {
		struct study_point *pt;
		if ((st = new_point(p->s, &pt)) != MOE_OK)
			return st;
		for (int a = 0; a < p->naxes; a++)
			if ((st = add_option(&pt->opts, &pt->n, p->axes[a].name,
					     p->axes[a].values[idx[a]])) != MOE_OK)
				return st;
		if ((st = set_key(pt)) != MOE_OK)
			return st;
		for (int a = p->naxes - 1; a >= 0; a--) {
			if (++idx[a] < p->axes[a].nvalues)
				break;
			idx[a] = 0;
		}
	}
	return MOE_OK;
}

static void free_axes(struct parse *p)
{
	for (int a = 0; a < p->naxes; a++) {
		for (int v = 0; v < p->axes[a].nvalues; v++)
			free(p->axes[a].values[v]);
		free(p->axes[a].values);
		free(p->axes[a].name);
	}
}

enum moe_status study_sweep_load(const char *path, struct study_sweep **out)
{
	struct parse p;
	enum moe_status st;

	*out = NULL;
	memset(&p, 0, sizeof p);
	p.path = path;
	if ((p.s = calloc(1, sizeof *p.s)) == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	st = moe_ini_parse(path, handler, &p);
	if (st == MOE_OK && p.s->name == NULL)
		st = moe_error(MOE_ECONFIG, "%s: sweep.name: missing: expected a name for the study",
			       path);
	if (st == MOE_OK && p.have_points && p.naxes > 0)
		st = moe_error(MOE_ECONFIG, "%s:%d: axes: give either [axes] or [points], not both",
			       path, p.axes_line);
	if (st == MOE_OK && !p.have_points) {
		if (p.naxes == 0)
			st = moe_error(MOE_ECONFIG, "%s: axes: empty product: expected at least one "
				       "axis in [axes] or one point in [points]", path);
		else
			st = expand(&p);
	}
	if (st == MOE_OK) {
		/* A varying option may not also be fixed. */
		for (int i = 0; i < p.s->nfixed && st == MOE_OK; i++)
			for (int j = 0; j < p.s->points[0].n; j++)
				if (strcmp(p.s->fixed[i].name, p.s->points[0].opts[j].name) == 0) {
					st = moe_error(MOE_ECONFIG, "%s: fixed.%s: also an axis", path,
						       p.s->fixed[i].name);
					break;
				}
	}
	free_axes(&p);
	if (st != MOE_OK) {
		study_sweep_free(p.s);
		return st;
	}
	*out = p.s;
	return MOE_OK;
}

static void free_options(struct study_option *o, int n)
{
	for (int i = 0; i < n; i++) {
		free(o[i].name);
		free(o[i].value);
	}
	free(o);
}

void study_sweep_free(struct study_sweep *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < s->npoints; i++) {
		free_options(s->points[i].opts, s->points[i].n);
		free(s->points[i].key);
	}
	free(s->points);
	free_options(s->fixed, s->nfixed);
	free(s->name);
	free(s);
}

char *study_sweep_label(const struct study_sweep *s, int i, char *buf, size_t n)
{
	snprintf(buf, n, "sweep %s: %s", s->name, s->points[i].key);
	return buf;
}

enum moe_status study_sweep_argv(const struct study_sweep *s, int i, const char *const *extra,
				 char ***argv, int *argc)
{
	const struct study_point *pt = &s->points[i];
	int nextra = 0, n = 0, ok = 1;
	char **v;

	while (extra && extra[nextra])
		nextra++;
	v = calloc((size_t)(1 + 2 * (s->nfixed + pt->n) + nextra + 1), sizeof(char *));
	if (v == NULL)
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	/* Every string is a copy, so study_argv_free frees them all. */
	ok &= (v[n++] = strdup("sim")) != NULL;
	for (int k = 0; k < s->nfixed + pt->n && ok; k++) {
		const struct study_option *o = k < s->nfixed ? &s->fixed[k] : &pt->opts[k - s->nfixed];
		int on = 1;
		char *flag;
		if (is_flag(o->name) && (flag_value(o->value, &on), !on))
			continue;
		flag = malloc(strlen(o->name) + 3);
		if (flag != NULL)
			sprintf(flag, "--%s", o->name);
		ok &= (v[n++] = flag) != NULL;
		if (!is_flag(o->name))
			ok &= (v[n++] = strdup(o->value)) != NULL;
	}
	for (int k = 0; k < nextra && ok; k++)
		ok &= (v[n++] = strdup(extra[k])) != NULL;
	if (!ok) {
		for (int k = 0; k < n; k++)
			free(v[k]);
		free(v);
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	}
	v[n] = NULL;
	*argv = v;
	*argc = n;
	return MOE_OK;
}

void study_argv_free(char **argv)
{
	if (argv == NULL)
		return;
	for (char **p = argv; *p; p++)
		free(*p);
	free(argv);
}
