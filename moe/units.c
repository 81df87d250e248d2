/* moe/units.c: quantity parsing with unit suffixes (see units.h). */
#include "config.h"
#include "moe/units.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct suffix {
	const char *text;
	double scale;
};

/* Sizes: decimal and binary prefixes, bytes (B) and bits (b). */
static const struct suffix size_suffixes[] = {
	{"B", 1}, {"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15},
	{"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
	{"TiB", 1099511627776.0}, {"PiB", 1125899906842624.0},
	{"b", 0.125}, {"kb", 125}, {"Kb", 125}, {"Mb", 1.25e5}, {"Gb", 1.25e8}, {"Tb", 1.25e11},
	{"Pb", 1.25e14},
};

static const struct suffix time_suffixes[] = {
	{"s", 1}, {"ms", 1e-3}, {"us", 1e-6}, {"\xc2\xb5s", 1e-6}, {"ns", 1e-9},
};

static const struct suffix flops_suffixes[] = {
	{"FLOP/s", 1}, {"kFLOP/s", 1e3}, {"MFLOP/s", 1e6}, {"GFLOP/s", 1e9},
	{"TFLOP/s", 1e12}, {"PFLOP/s", 1e15},
	{"FLOPS", 1}, {"kFLOPS", 1e3}, {"MFLOPS", 1e6}, {"GFLOPS", 1e9},
	{"TFLOPS", 1e12}, {"PFLOPS", 1e15},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int lookup(const struct suffix *t, size_t n, const char *s, size_t len, double *scale)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(t[i].text) == len && memcmp(t[i].text, s, len) == 0) {
			*scale = t[i].scale;
			return 1;
		}
	return 0;
}

/* A rate is a size followed by "/s" or "ps". */
static int rate_scale(const char *u, size_t len, double *scale)
{
	if (len > 2 && (memcmp(u + len - 2, "/s", 2) == 0 || memcmp(u + len - 2, "ps", 2) == 0))
		return lookup(size_suffixes, NELEM(size_suffixes), u, len - 2, scale);
	return 0;
}

const char *moe_units_expected(enum moe_unit kind)
{
	switch (kind) {
	case MOE_UNIT_NONE: return "a number";
	case MOE_UNIT_BYTES: return "a size such as 80GB, 80GiB or 512MiB";
	case MOE_UNIT_RATE: return "a rate such as 450GB/s, 400Gb/s or 400Gbps";
	case MOE_UNIT_TIME: return "a time such as 2us, 1.5ms or 3ns";
	case MOE_UNIT_FLOPS: return "a compute rate such as 989TFLOP/s";
	}
	return "a quantity";
}

enum moe_status moe_units_parse(const char *s, enum moe_unit kind, double *out)
{
	char *end;
	double v, scale = 1;
	size_t len;

	if (s == NULL)
		MOE_FAIL(MOE_EINVAL, "missing value: expected %s", moe_units_expected(kind));
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0')
		MOE_FAIL(MOE_EINVAL, "empty value: expected %s", moe_units_expected(kind));
	errno = 0;
	v = strtod(s, &end);
	if (end == s)
		MOE_FAIL(MOE_EINVAL, "'%s' is not a number: expected %s", s, moe_units_expected(kind));
	if (isnan(v) || isinf(v) || (errno == ERANGE && fabs(v) > 1.0))
		MOE_FAIL(MOE_ERANGE, "'%s' is out of range: expected a finite number", s);
	if (*end == ' ')
		end++;
	len = strlen(end);
	while (len > 0 && isspace((unsigned char)end[len - 1]))
		len--;
	if (len > 0) {
		int ok = 0;
		switch (kind) {
		case MOE_UNIT_NONE: break;
		case MOE_UNIT_BYTES: ok = lookup(size_suffixes, NELEM(size_suffixes), end, len, &scale); break;
		case MOE_UNIT_RATE: ok = rate_scale(end, len, &scale); break;
		case MOE_UNIT_TIME: ok = lookup(time_suffixes, NELEM(time_suffixes), end, len, &scale); break;
		case MOE_UNIT_FLOPS: ok = lookup(flops_suffixes, NELEM(flops_suffixes), end, len, &scale); break;
		}
		if (!ok)
			MOE_FAIL(MOE_EINVAL, "'%s': unknown unit '%.*s': expected %s", s, (int)len, end,
				 moe_units_expected(kind));
	}
	v *= scale;
	if (isinf(v))
		MOE_FAIL(MOE_ERANGE, "'%s' overflows", s);
	*out = v;
	return MOE_OK;
}

char *moe_units_format(double v, enum moe_unit kind, char *buf, size_t n)
{
	static const char *const dec[] = {"", "k", "M", "G", "T", "P"};
	const char *unit = "";
	double a = fabs(v);
	int p = 0;

	switch (kind) {
	case MOE_UNIT_NONE:
		snprintf(buf, n, "%.10g", v);
		return buf;
	case MOE_UNIT_TIME:
		if (a == 0 || a >= 1) snprintf(buf, n, "%.6g s", v);
		else if (a >= 1e-3) snprintf(buf, n, "%.6g ms", v * 1e3);
		else if (a >= 1e-6) snprintf(buf, n, "%.6g us", v * 1e6);
		else snprintf(buf, n, "%.6g ns", v * 1e9);
		return buf;
	case MOE_UNIT_BYTES:
		/* Memory sizes are usually whole binary units; say so when exact. */
		if (a >= 1073741824.0 && fmod(a, 1073741824.0) == 0) {
			snprintf(buf, n, "%.10g GiB", v / 1073741824.0);
			return buf;
		}
		unit = "B";
		break;
	case MOE_UNIT_RATE: unit = "B/s"; break;
	case MOE_UNIT_FLOPS: unit = "FLOP/s"; break;
	}
	while (a >= 1000 && p < 5) {
		a /= 1000;
		v /= 1000;
		p++;
	}
	snprintf(buf, n, "%.6g %s%s", v, dec[p], unit);
	return buf;
}
