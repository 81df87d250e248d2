/* moe/error.c: status strings and the thread-local last-error message. */
#include "config.h"
#include "moe/error.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char last_msg[1024];

static const char *const status_names[MOE_STATUS_COUNT] = {
	[MOE_OK] = "success",
	[MOE_EINVAL] = "invalid argument",
	[MOE_ECONFIG] = "invalid configuration",
	[MOE_ENOTFOUND] = "not found",
	[MOE_EIO] = "input/output error",
	[MOE_EFORMAT] = "malformed data",
	[MOE_EVERSION] = "unsupported version",
	[MOE_ERANGE] = "value out of range",
	[MOE_ENOMEM] = "out of memory",
	[MOE_ESTORE] = "results store error",
	[MOE_EUNSUPPORTED] = "not supported",
	[MOE_ERUNTIME] = "runtime failure",
};

const char *moe_strerror(enum moe_status st)
{
	if ((unsigned)st >= MOE_STATUS_COUNT)
		return "unknown status";
	return status_names[st];
}

const char *moe_errmsg(void)
{
	return last_msg;
}

enum moe_status moe_verror(enum moe_status st, const char *fmt, va_list ap)
{
	/* Format aside first: callers may pass moe_errmsg() as an argument. */
	char buf[sizeof last_msg];

	vsnprintf(buf, sizeof buf, fmt, ap);
	memcpy(last_msg, buf, sizeof buf);
	return st;
}

enum moe_status moe_error(enum moe_status st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	moe_verror(st, fmt, ap);
	va_end(ap);
	return st;
}

enum moe_status moe_failure_keep(struct moe_failure *f, enum moe_status st)
{
	f->st = st;
	f->msg[0] = '\0';
	if (st != MOE_OK)
		snprintf(f->msg, sizeof f->msg, "%s", last_msg);
	return st;
}

enum moe_status moe_failure_raise(const struct moe_failure *f)
{
	return f->st == MOE_OK ? MOE_OK : moe_error(f->st, "%s", f->msg);
}

void moe_error_clear(void)
{
	last_msg[0] = '\0';
}

int moe_status_exit_code(enum moe_status st)
{
	if (st == MOE_OK)
		return 0;
	if (st == MOE_EINVAL || st == MOE_ECONFIG)
		return 2;
	return 1;
}
