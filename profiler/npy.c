/* profiler/npy.c: float32 .npy reading and writing (see npy.h). */
#include "config.h"
#include "profiler/npy.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Finds 'key': in the header dict and returns the text after the colon. */
static const char *dict_value(const char *hdr, const char *key)
{
	char pat[64];
	const char *p;
	snprintf(pat, sizeof pat, "'%s':", key);
	if (!(p = strstr(hdr, pat)))
		return NULL;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	return p;
}

enum moe_status prof_npy_read(const char *path, float **data, size_t *rows, size_t *cols)
{
	FILE *fp = fopen(path, "rb");
	unsigned char pre[12];
	char *hdr = NULL;
	const char *v;
	size_t hlen, dims[2] = {1, 1}, nd = 0, esize, count;
	enum moe_status st = MOE_OK;
	void *raw = NULL;
	float *out = NULL;

	*data = NULL;
	if (!fp)
		MOE_FAIL(errno == ENOENT ? MOE_ENOTFOUND : MOE_EIO, "%s: %s", path, strerror(errno));
	if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
		st = moe_error(MOE_EFORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", path);
		goto out;
	}
	if (pre[6] == 1) {
		hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
	} else if (pre[6] == 2 || pre[6] == 3) {
		if (fread(pre + 10, 1, 2, fp) != 2) {
			st = moe_error(MOE_EFORMAT, "%s: truncated header", path);
			goto out;
		}
		hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
	} else {
		st = moe_error(MOE_EFORMAT, "%s: .npy version %d.%d, expected 1.0 to 3.0", path, pre[6], pre[7]);
		goto out;
	}
	if (hlen > 65536 || !(hdr = calloc(1, hlen + 1)) || fread(hdr, 1, hlen, fp) != hlen) {
		st = moe_error(MOE_EFORMAT, "%s: header of %zu bytes unreadable", path, hlen);
		goto out;
	}
	if (!(v = dict_value(hdr, "descr")) || (strncmp(v, "'<f4'", 5) != 0 && strncmp(v, "'<f8'", 5) != 0)) {
		st = moe_error(MOE_EFORMAT, "%s: dtype must be '<f4' or '<f8' (float32 or float64)", path);
		goto out;
	}
	esize = v[3] == '4' ? 4 : 8;
	if (!(v = dict_value(hdr, "fortran_order")) || strncmp(v, "False", 5) != 0) {
		st = moe_error(MOE_EFORMAT, "%s: fortran_order must be False (C order)", path);
		goto out;
	}
	if (!(v = dict_value(hdr, "shape")) || *v != '(') {
		st = moe_error(MOE_EFORMAT, "%s: header has no shape tuple", path);
		goto out;
	}
	for (v++;;) {
		char *end;
		unsigned long long d;
		while (*v == ' ' || *v == ',')
			v++;
		if (*v == ')')
			break;
		errno = 0;
		d = strtoull(v, &end, 10);
		if (end == v || errno || nd == 2 || d > ((size_t)1 << 40)) {
			st = moe_error(MOE_EFORMAT, "%s: shape must be 1-D or 2-D non-negative integers", path);
			goto out;
		}
		dims[nd++] = (size_t)d;
		v = end;
	}
	if (nd == 1) {
		dims[1] = dims[0];
		dims[0] = 1;
	}
	count = dims[0] * dims[1];
	if (count == 0) {
		st = moe_error(MOE_EFORMAT, "%s: empty array", path);
		goto out;
	}
	raw = malloc(count * esize);
	out = malloc(count * sizeof(float));
	if (!raw || !out) {
		st = moe_error(MOE_ENOMEM, "%s: out of memory for %zu elements", path, count);
		goto out;
	}
	if (fread(raw, esize, count, fp) != count) {
		st = moe_error(MOE_EFORMAT, "%s: data shorter than the shape (%zu x %zu)", path, dims[0], dims[1]);
		goto out;
	}
	if (esize == 4) {
		memcpy(out, raw, count * 4);
	} else {
		for (size_t i = 0; i < count; i++) {
			double d;
			memcpy(&d, (unsigned char *)raw + 8 * i, 8);
			out[i] = (float)d;
		}
	}
	*data = out;
	out = NULL;
	*rows = dims[0];
	*cols = dims[1];
out:
	free(out);
	free(raw);
	free(hdr);
	fclose(fp);
	return st;
}

enum moe_status prof_npy_write(const char *path, const float *data, size_t rows, size_t cols)
{
	char hdr[128];
	unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
	FILE *fp;
	int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }",
			 rows, cols);
	size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64;
	size_t hlen = (size_t)n + pad + 1;
	int ok;

	if (!(fp = fopen(path, "wb")))
		MOE_FAIL(MOE_EIO, "%s: %s", path, strerror(errno));
	pre[8] = (unsigned char)(hlen & 0xff);
	pre[9] = (unsigned char)(hlen >> 8);
	ok = fwrite(pre, 1, 10, fp) == 10 && fwrite(hdr, 1, (size_t)n, fp) == (size_t)n;
	for (size_t i = 0; ok && i < pad; i++)
		ok = fputc(' ', fp) != EOF;
	ok = ok && fputc('\n', fp) != EOF && fwrite(data, sizeof(float), rows * cols, fp) == rows * cols;
	if (fclose(fp) != 0 || !ok) {
		remove(path);
		MOE_FAIL(MOE_EIO, "%s: write failed", path);
	}
	return MOE_OK;
}
