/* moe/preset.h: where presets live, which exist, and walking a loaded
 * spec's fields for display.
 *
 * Presets are INI files under DATADIR/presets/models and
 * DATADIR/presets/clusters.  DATADIR is, in order: $MOEKIT_DATADIR; the
 * installed $(pkgdatadir); the source tree the program was built from (so
 * an uninstalled build finds its presets).
 */
#ifndef MOEKIT_MOE_PRESET_H
#define MOEKIT_MOE_PRESET_H

#include <stddef.h>
#include "moe/error.h"
#include "moe/model.h"

enum moe_preset_kind { MOE_PRESET_MODEL, MOE_PRESET_CLUSTER };

/* Writes the directory that holds presets of kind into buf (size n).
 * Returns MOE_OK or MOE_ENOTFOUND when no data directory exists. */
enum moe_status moe_preset_dir(enum moe_preset_kind kind, char *buf, size_t n);

/* Finds a file in the data directory by its relative path ("reports/x.gp")
 * and writes its full path into buf.  MOE_ENOTFOUND when absent. */
enum moe_status moe_data_path(const char *rel, char *buf, size_t n);

/* Lists the preset names of kind, sorted.  *names is a NULL-terminated
 * array owned by the caller: free with moe_preset_names_free.  Returns
 * MOE_OK, MOE_ENOTFOUND or MOE_ENOMEM. */
enum moe_status moe_preset_names(enum moe_preset_kind kind, char ***names);
void moe_preset_names_free(char **names);

/* Calls fn for every field of a loaded spec, in file order, with its
 * section, key, the value formatted with units, and a one-line description
 * of the field.  Borrowed strings, valid during the call. */
typedef void (*moe_field_fn)(void *user, const char *section, const char *key,
			     const char *value, const char *help);
void moe_model_each_field(const struct moe_model *m, moe_field_fn fn, void *user);
void moe_cluster_each_field(const struct moe_cluster *c, moe_field_fn fn, void *user);

#endif
