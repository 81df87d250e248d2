/* profiler/npy.h: NumPy .npy files of float32 matrices, for the hidden
 * states that `moekit profile --input` reads and `--output` writes, so a
 * user can hold moekit's forward pass against their own framework's.
 *
 * Format (numpy.lib.format, versions 1.0 to 3.0): the magic "\x93NUMPY",
 * major and minor version bytes, a little-endian header length (2 bytes in
 * 1.0, 4 in 2.0 and 3.0), then a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (512, 1024), }
 * padded with spaces to a multiple of 64 bytes and ended by '\n'; then the
 * data in C order.  Read: '<f4' or '<f8' (converted to float32), C order,
 * 1-D (one row) or 2-D.  Written: version 1.0, '<f4', 2-D.
 */
#ifndef MOEKIT_PROFILER_NPY_H
#define MOEKIT_PROFILER_NPY_H

#include <stddef.h>
#include "moe/error.h"

/* Reads path into *data (float32, rows x cols, caller frees with free()).
 * Returns MOE_OK; MOE_ENOTFOUND / MOE_EIO when it cannot be read;
 * MOE_EFORMAT naming the file and what is wrong (magic, header, dtype other
 * than <f4 or <f8, Fortran order, more than 2 dimensions, a size that
 * disagrees with the shape); MOE_ENOMEM. */
enum moe_status prof_npy_read(const char *path, float **data, size_t *rows, size_t *cols);

/* Writes rows x cols float32 (borrowed) to path.  MOE_OK or MOE_EIO. */
enum moe_status prof_npy_write(const char *path, const float *data, size_t rows, size_t cols);

#endif
