/* moe/ini.c: libinih with line numbers (see ini.h). */
#include "config.h"
#include "moe/ini.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <string.h>

struct ini_ctx {
	FILE *f;
	int line;          /* the line the reader is on */
	int at_line_start;
	moe_ini_fn fn;
	void *user;
	enum moe_status st;
	int err_line;      /* where st was set */
};

/* fgets that counts lines: libinih reads through it, and calls the handler
 * for a key right after reading the key's line. */
static char *reader(char *str, int num, void *stream)
{
	struct ini_ctx *c = stream;
	char *r;

	if (c->at_line_start)
		c->line++;
	r = fgets(str, num, c->f);
	c->at_line_start = r != NULL && strchr(r, '\n') != NULL;
	return r;
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
	struct ini_ctx *c = user;

	if (c->st != MOE_OK)
		return 1; /* keep the first error's message */
	c->st = c->fn(c->user, section, key, value, c->line);
	if (c->st != MOE_OK)
		c->err_line = c->line;
	return 1;
}

enum moe_status moe_ini_parse(const char *path, moe_ini_fn fn, void *user)
{
	struct ini_ctx c = {NULL, 0, 1, fn, user, MOE_OK, 0};
	int r;

	c.f = fopen(path, "r");
	if (c.f == NULL)
		MOE_FAIL(MOE_EIO, "%s: cannot read: %s", path, strerror(errno));
	r = ini_parse_stream(reader, &c, handler, &c);
	fclose(c.f);
	/* libinih goes on after a syntax error; report whichever came first. */
	if (c.st != MOE_OK && (r <= 0 || c.err_line <= r))
		return c.st;
	if (r > 0)
		MOE_FAIL(MOE_ECONFIG, "%s:%d: syntax error: expected [section] or key = value", path, r);
	if (r < 0)
		MOE_FAIL(MOE_EIO, "%s: cannot read", path);
	return MOE_OK;
}
