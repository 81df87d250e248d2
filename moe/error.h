/* moe/error.h: the library's one status type and its last-error message.
 *
 * Every fallible function in libmoekit returns an enum moe_status (MOE_OK is
 * zero) and hands its outputs back through pointer arguments placed last.
 * On failure it records a one-line message (which file, line, field or
 * option, and what was expected) that the caller reads with moe_errmsg().
 * Library code never prints or exits; the CLI maps a status to an exit code
 * with moe_status_exit_code().
 *
 *     struct moe_model m;
 *     if (moe_model_load("mixtral-8x7b", &m) != MOE_OK)
 *             fprintf(stderr, "moekit: %s\n", moe_errmsg());
 *
 * The message is thread-local: each thread sees the error of its own last
 * failed call.
 */
#ifndef MOEKIT_MOE_ERROR_H
#define MOEKIT_MOE_ERROR_H

#include <stdarg.h>

enum moe_status {
	MOE_OK = 0,
	MOE_EINVAL,      /* invalid argument or option value (a usage error) */
	MOE_ECONFIG,     /* malformed or inconsistent configuration file */
	MOE_ENOTFOUND,   /* a named preset, run, file or tensor does not exist */
	MOE_EIO,         /* reading or writing a file failed */
	MOE_EFORMAT,     /* a data file is malformed (bad magic, CRC, shape) */
	MOE_EVERSION,    /* a file or database is newer than this build knows */
	MOE_ERANGE,      /* a value is out of range or overflows */
	MOE_ENOMEM,      /* an allocation failed */
	MOE_ESTORE,      /* the results store (SQLite) reported an error */
	MOE_EUNSUPPORTED,/* a feature this build or input does not support */
	MOE_ERUNTIME,    /* an external program or device failed */
	MOE_STATUS_COUNT
};

/* Returns a short static description of a status ("invalid argument"). */
const char *moe_strerror(enum moe_status st);

/* Returns the message of the calling thread's last recorded error, or ""
 * when none was recorded.  The string is borrowed and valid until the next
 * failing call on this thread. */
const char *moe_errmsg(void);

/* Records a printf-style message as the calling thread's last error and
 * returns st unchanged.  This is the one place every error passes through:
 * break on it in a debugger.  A message longer than 1023 bytes is cut. */
enum moe_status moe_error(enum moe_status st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
enum moe_status moe_verror(enum moe_status st, const char *fmt, va_list ap);

/* A status and its message carried from the thread that failed to the one
 * that reports it (the message is thread-local). */
struct moe_failure {
	enum moe_status st;
	char msg[1024];
};

/* Keeps st in f, with the calling thread's message when st is not MOE_OK;
 * returns st. */
enum moe_status moe_failure_keep(struct moe_failure *f, enum moe_status st);

/* Records f's status and message as the calling thread's last error (none
 * when it is MOE_OK); returns its status. */
enum moe_status moe_failure_raise(const struct moe_failure *f);

/* Clears the calling thread's last error. */
void moe_error_clear(void);

/* Maps a status to the command's exit code: 0 for MOE_OK, 2 for usage and
 * configuration errors (MOE_EINVAL, MOE_ECONFIG), 1 for everything else. */
int moe_status_exit_code(enum moe_status st);

/* Records the error and returns it from the enclosing function: the only
 * macro in libmoekit allowed to hide a return. */
#define MOE_FAIL(st, ...) return moe_error((st), __VA_ARGS__)

#endif
