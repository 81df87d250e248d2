/* moe/ini.h: reading INI files (presets, cluster and model files, sweep
 * specifications) with libinih, with the line number of every key so that
 * errors can say "file:line: section.key: message".
 */
#ifndef MOEKIT_MOE_INI_H
#define MOEKIT_MOE_INI_H

#include "moe/error.h"

/* Called for every key in file order with its section ("" before the first
 * section header), key, value (comments and surrounding spaces removed)
 * and 1-based line.  Returns MOE_OK, or a status whose message it has
 * recorded with moe_error: the first such error stops the calls. */
typedef enum moe_status (*moe_ini_fn)(void *user, const char *section, const char *key,
				      const char *value, int line);

/* Parses the INI file at path, calling fn for every key.  Returns MOE_OK;
 * MOE_EIO when the file cannot be read; the first error fn returned; or
 * MOE_ECONFIG "path:line: syntax error ..." for a line that is neither a
 * section, a key = value, a comment nor blank - whichever comes first in
 * the file.  Lines are at most 200 characters (libinih's limit). */
enum moe_status moe_ini_parse(const char *path, moe_ini_fn fn, void *user);

#endif
