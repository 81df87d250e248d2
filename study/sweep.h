/* study/sweep.h: sweep specifications - the options a study varies, and the
 * points (one simulation each) they expand to.
 *
 * A SPEC is an INI file (libinih):
 *
 *     [sweep]
 *     name = h100-scaling           ; labels the runs: "sweep h100-scaling: <point>"
 *     [fixed]                       ; options every point gets
 *     model = mixtral-8x7b
 *     tokens-per-gpu = 4096
 *     [axes]                        ; each a `moekit sim` option, values comma-separated
 *     cluster = dgx-h100:1, dgx-h100:2, dgx-h100:4
 *     top-k = 1, 2
 *
 * The points are the cross product of the axes, the first axis varying
 * slowest.  A [points] section instead lists a subset, one point per key
 * named `point`, as `axis=value` pairs separated by spaces:
 *
 *     [points]
 *     point = cluster=dgx-h100:1 top-k=1
 *     point = cluster=dgx-h100:4 top-k=2
 *
 * Each point has a canonical text ("cluster=dgx-h100:2 top-k=1", axes in
 * the order of [axes], or of their first appearance in [points]) that labels
 * its run in the store, so a resumed sweep skips the points already done.
 */
#ifndef MOEKIT_STUDY_SWEEP_H
#define MOEKIT_STUDY_SWEEP_H

#include <stddef.h>
#include "moe/error.h"

/* The options an axis or [fixed] may name (those of `moekit sim`). */
extern const char *const study_sweep_options[];

struct study_option {
	char *name;   /* long option without dashes: "top-k" */
	char *value;
};

struct study_point {
	int n;                       /* options that vary */
	struct study_option *opts;   /* [n] */
	char *key;                   /* canonical text */
};

struct study_sweep {
	char *name;
	int nfixed;
	struct study_option *fixed;  /* [nfixed] */
	int npoints;
	struct study_point *points;  /* [npoints] */
};

/* Parses the SPEC at path.  Returns MOE_OK with *out owned by the caller
 * (free with study_sweep_free); MOE_EIO when it cannot be read; MOE_ECONFIG
 * as "file:line: section.key: message" for an unknown section or option
 * (the message lists the known ones), an empty value list, a point naming
 * an option that is not an axis, a missing name, or an empty product;
 * MOE_ENOMEM. */
enum moe_status study_sweep_load(const char *path, struct study_sweep **out);

/* Frees a sweep; NULL is a no-op. */
void study_sweep_free(struct study_sweep *s);

/* The label of point i's run: "sweep NAME: KEY", written into buf (size n).
 * Returns buf. */
char *study_sweep_label(const struct study_sweep *s, int i, char *buf, size_t n);

/* Builds the argv of `moekit sim` for point i: "sim", then every fixed and
 * point option as "--name" "value", then the extra arguments (NULL-
 * terminated, borrowed).  *argv is a NULL-terminated array of copies owned
 * by the caller (free with study_argv_free).  Returns MOE_OK or MOE_ENOMEM. */
enum moe_status study_sweep_argv(const struct study_sweep *s, int i, const char *const *extra,
				 char ***argv, int *argc);
void study_argv_free(char **argv);

#endif
