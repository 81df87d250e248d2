/* traces/io.c: importers (NumPy .npy/.npz, JSONL, CSV, count CSV) into
 * .moetrace and exporters back out (JSONL, CSV, .npy).  Every path streams a
 * batch of tokens at a time.  Formats and naming in docs/trace-format.md. */
#include "config.h"
#include "traces/io.h"
#include "moe/route.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>

/* Tokens converted and written per batch (bounded further by bytes). */
#define BATCH_BYTES (1u << 20)
/* .npy headers larger than this are refused (numpy writes < 1 KiB). */
#define NPY_HEADER_MAX 65536u

void trace_import_opts_init(struct trace_import_opts *o)
{
	memset(o, 0, sizeof *o);
	o->keep_logits = 1;
}

void trace_export_opts_init(struct trace_export_opts *o)
{
	memset(o, 0, sizeof *o);
	o->step = -1;
	o->layer = -1;
}

int trace_format_parse(const char *s, enum trace_format *out)
{
	static const char *const names[] = {"auto", "moetrace", "npy", "npz", "jsonl", "csv", NULL};
	for (int i = 0; names[i]; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum trace_format)i;
			return 1;
		}
	return 0;
}

int trace_dtype_parse(const char *s, enum trace_dtype *out)
{
	if (strcmp(s, "f32") == 0 || strcmp(s, "float32") == 0) *out = TRACE_DTYPE_F32;
	else if (strcmp(s, "f16") == 0 || strcmp(s, "float16") == 0) *out = TRACE_DTYPE_F16;
	else if (strcmp(s, "bf16") == 0 || strcmp(s, "bfloat16") == 0) *out = TRACE_DTYPE_BF16;
	else return 0;
	return 1;
}

int trace_npy_array_parse(const char *s, enum trace_npy_array *out)
{
	static const char *const names[] = {"auto", "ids", "weights", "logits", "ranks", "counts",
					    NULL};
	for (int i = 0; names[i]; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum trace_npy_array)i;
			return 1;
		}
	return 0;
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

enum trace_format trace_format_guess(const char *path)
{
	if (ends_with(path, ".moetrace")) return TRACE_FMT_MOETRACE;
	if (ends_with(path, ".npy")) return TRACE_FMT_NPY;
	if (ends_with(path, ".npz")) return TRACE_FMT_NPZ;
	if (ends_with(path, ".jsonl") || ends_with(path, ".ndjson")) return TRACE_FMT_JSONL;
	if (ends_with(path, ".csv")) return TRACE_FMT_CSV;
	return TRACE_FMT_AUTO;
}

/* ------------------------------------------------------- half precision */

static float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
	float f;

	if (exp == 0) {
		/* zero or subnormal: man * 2^-24, exact in float */
		f = ldexpf((float)man, -24);
		return sign ? -f : f;
	}
	if (exp == 31)
		bits = sign | 0x7F800000u | (man << 13);
	else
		bits = sign | ((exp + 112) << 23) | (man << 13);
	memcpy(&f, &bits, 4);
	return f;
}

static float bf16_to_f32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;

	memcpy(&f, &bits, 4);
	return f;
}

/* ------------------------------------------------------------ byte source */

/* A sequential byte source: a plain file or one member of a zip (.npz). */
struct bsrc {
	FILE *f;
	zip_file_t *zf;
	const char *what;   /* "x.npz:layer_0.npy", for messages */
};

static enum moe_status bread(struct bsrc *s, void *p, size_t n, const char *part)
{
	size_t got;

	if (s->f != NULL) {
		got = fread(p, 1, n, s->f);
		if (got != n && ferror(s->f))
			MOE_FAIL(MOE_EIO, "%s: reading failed: %s", s->what, strerror(errno));
	} else {
		zip_int64_t z = zip_fread(s->zf, p, n);
		if (z < 0)
			MOE_FAIL(MOE_EFORMAT, "%s: reading the zip member failed: %s", s->what,
				 zip_file_strerror(s->zf));
		got = (size_t)z;
	}
	if (got != n)
		MOE_FAIL(MOE_EFORMAT, "%s: truncated: %s ends early", s->what, part);
	return MOE_OK;
}

/* ------------------------------------------------------------ .npy header */

struct npy {
	char kind;          /* 'f' float, 'i' signed int, 'u' unsigned int */
	int size;           /* bytes per element */
	int ndim;
	uint64_t shape[3];
	uint64_t count;     /* elements */
};

/* Reads and parses a .npy header; leaves the source at the data. */
static enum moe_status npy_header(struct bsrc *s, struct npy *a)
{
	unsigned char pre[12];
	uint32_t hlen;
	char *h, *p, *q;
	enum moe_status st;

	memset(a, 0, sizeof *a);
	if ((st = bread(s, pre, 10, "the .npy preamble")) != MOE_OK)
		return st;
	if (memcmp(pre, "\x93NUMPY", 6) != 0)
		MOE_FAIL(MOE_EFORMAT, "%s: not a .npy array (wrong magic)", s->what);
	if (pre[6] == 1) {
		hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
	} else if (pre[6] == 2 || pre[6] == 3) {
		if ((st = bread(s, pre + 10, 2, "the .npy preamble")) != MOE_OK)
			return st;
		hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 |
		       (uint32_t)pre[11] << 24;
	} else {
		MOE_FAIL(MOE_EFORMAT, "%s: .npy version %u.%u: expected 1, 2 or 3", s->what, pre[6],
			 pre[7]);
	}
	if (hlen == 0 || hlen > NPY_HEADER_MAX)
		MOE_FAIL(MOE_EFORMAT, "%s: .npy header of %u bytes: expected 1 to %u", s->what, hlen,
			 NPY_HEADER_MAX);
	h = malloc(hlen + 1);
	if (h == NULL)
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", s->what);
	if ((st = bread(s, h, hlen, "the .npy header")) != MOE_OK) {
		free(h);
		return st;
	}
	h[hlen] = '\0';
	if (strlen(h) != hlen) {
		free(h);
		MOE_FAIL(MOE_EFORMAT, "%s: .npy header holds a NUL byte", s->what);
	}
	/* descr */
	p = strstr(h, "'descr'");
	if (p == NULL || (p = strchr(p + 7, '\'')) == NULL || (q = strchr(p + 1, '\'')) == NULL) {
		free(h);
		MOE_FAIL(MOE_EFORMAT, "%s: .npy header has no 'descr'", s->what);
	}
	p++;
	{
		size_t len = (size_t)(q - p);
		char d[16];
		if (len < 3 || len > 4) {
			free(h);
			MOE_FAIL(MOE_EFORMAT, "%s: .npy dtype of %zu characters: expected one of <f4 <f2 "
				 "<u2 <i4 <i8", s->what, len);
		}
		memcpy(d, p, len);
		d[len] = '\0';
		if ((d[0] != '<' && d[0] != '|' && d[0] != '=') || !strchr("fiu", d[1]) ||
		    !isdigit((unsigned char)d[2]) || (len == 4 && !isdigit((unsigned char)d[3]))) {
			free(h);
			MOE_FAIL(MOE_EFORMAT, "%s: .npy dtype '%s' is not supported: expected "
				 "little-endian <f4, <f2, <u2 (bf16), <i4 or <i8", s->what, d);
		}
		a->kind = d[1];
		a->size = atoi(d + 2);
		if (!((a->kind == 'f' && (a->size == 4 || a->size == 2)) ||
		      (a->kind == 'u' && a->size == 2) ||
		      (a->kind == 'i' && (a->size == 4 || a->size == 8)))) {
			free(h);
			MOE_FAIL(MOE_EFORMAT, "%s: .npy dtype '%s' is not supported: expected <f4, <f2, "
				 "<u2 (bf16), <i4 or <i8", s->what, d);
		}
	}
	/* fortran_order */
	p = strstr(h, "'fortran_order'");
	if (p == NULL) {
		free(h);
		MOE_FAIL(MOE_EFORMAT, "%s: .npy header has no 'fortran_order'", s->what);
	}
	p += 15;
	while (*p == ' ' || *p == ':')
		p++;
	if (strncmp(p, "False", 5) != 0) {
		free(h);
		MOE_FAIL(MOE_EFORMAT, "%s: .npy array in Fortran order is not supported: save it "
			 "C-contiguous (numpy.ascontiguousarray)", s->what);
	}
	/* shape */
	p = strstr(h, "'shape'");
	if (p == NULL || (p = strchr(p, '(')) == NULL || (q = strchr(p, ')')) == NULL) {
		free(h);
		MOE_FAIL(MOE_EFORMAT, "%s: .npy header has no 'shape'", s->what);
	}
	p++;
	a->count = 1;
	while (p < q) {
		char *end;
		unsigned long long v;
		while (p < q && (*p == ' ' || *p == ','))
			p++;
		if (p >= q)
			break;
		if (!isdigit((unsigned char)*p)) {
			free(h);
			MOE_FAIL(MOE_EFORMAT, "%s: .npy shape: expected integers", s->what);
		}
		errno = 0;
		v = strtoull(p, &end, 10);
		if (errno == ERANGE || end == p || v > (1ull << 40) || a->ndim == 3) {
			free(h);
			MOE_FAIL(MOE_EFORMAT, "%s: .npy shape: expected 1 to 3 dimensions below 2^40",
				 s->what);
		}
		a->shape[a->ndim++] = v;
		if (v != 0 && a->count > (1ull << 46) / v) {
			free(h);
			MOE_FAIL(MOE_EFORMAT, "%s: .npy shape too large", s->what);
		}
		a->count *= v;
		p = end;
	}
	free(h);
	if (a->ndim == 0)
		MOE_FAIL(MOE_EFORMAT, "%s: .npy array is a scalar: expected 1 to 3 dimensions", s->what);
	return MOE_OK;
}

static const char *npy_descr(const struct npy *a)
{
	static char d[8];
	snprintf(d, sizeof d, "<%c%d", a->kind, a->size);
	return d;
}

/* Reads n elements of a float array (f4, f2, u2 as f16/bf16) as float32,
 * checking that each is finite.  raw is scratch of n * size bytes. */
static enum moe_status read_floats(struct bsrc *s, const struct npy *a, enum trace_dtype dt,
				   void *raw, float *out, size_t n, uint64_t first_row, size_t cols,
				   const char *what)
{
	enum moe_status st;

	if ((st = bread(s, raw, n * (size_t)a->size, what)) != MOE_OK)
		return st;
	if (a->size == 4) {
		memcpy(out, raw, n * 4);
	} else {
		const uint16_t *h = raw;
		int bf = a->kind == 'u' && dt != TRACE_DTYPE_F16;
		for (size_t i = 0; i < n; i++)
			out[i] = bf ? bf16_to_f32(h[i]) : f16_to_f32(h[i]);
	}
	for (size_t i = 0; i < n; i++)
		if (!isfinite(out[i]))
			MOE_FAIL(MOE_EFORMAT, "%s: %s: row %" PRIu64 ", column %zu: value %g: expected a "
				 "finite number", s->what, what, first_row + i / cols, i % cols,
				 (double)out[i]);
	return MOE_OK;
}

/* Reads n ids (i4 or i8) as int32; -1 is "none", other negatives and ids
 * >= E are errors. */
static enum moe_status read_ids(struct bsrc *s, const struct npy *a, void *raw, int32_t *out,
				size_t n, uint64_t first_row, size_t cols, uint32_t E, const char *what)
{
	enum moe_status st;

	if ((st = bread(s, raw, n * (size_t)a->size, what)) != MOE_OK)
		return st;
	for (size_t i = 0; i < n; i++) {
		int64_t v;
		if (a->size == 8) {
			memcpy(&v, (char *)raw + 8 * i, 8);
		} else {
			int32_t w;
			memcpy(&w, (char *)raw + 4 * i, 4);
			v = w;
		}
		if (v < -1 || v >= (int64_t)E)
			MOE_FAIL(MOE_EFORMAT, "%s: %s: row %" PRIu64 ", slot %zu: expert id %" PRId64
				 ": expected 0 to %u or -1 (none)", s->what, what, first_row + i / cols,
				 i % cols, v, E - 1);
		out[i] = (int32_t)v;
	}
	return MOE_OK;
}

/* --------------------------------------------------------- NumPy import */

/* One (step, layer) group of NumPy input: where its rows come from. */
struct group {
	uint64_t step;
	uint32_t layer;
	int64_t logits;      /* zip index of the member, -1 none (npy: unused) */
	int64_t ids, weights;
	uint64_t sub;        /* for a 3-D array: which slab */
};

struct npimport {
	const char *in;
	const struct trace_import_opts *o;
	zip_t *zip;
	int is_npz;
	int by_logits;       /* 1: logits arrays, 0: ids (+ weights) */
	int stacked;         /* 3-D arrays [L, T, X] */
	struct group *g;
	size_t ng, gcap;
	uint64_t T;          /* tokens per group */
	uint32_t E, k, L, R;
	int has_weights;
	struct npy la, ia, wa;   /* array descriptions (the first of each kind) */
	enum trace_dtype dt;
	/* batch scratch */
	size_t B;
	void *raw;
	float *lg, *wt;
	int32_t *ids;
	uint32_t *ranks;
	struct moe_route_policy pol;
	struct moe_route_workspace *ws;
};

static enum moe_status open_member(struct npimport *m, int64_t idx, struct bsrc *s, char *what,
				   size_t wcap)
{
	const char *name = zip_get_name(m->zip, (zip_uint64_t)idx, 0);

	snprintf(what, wcap, "%s:%s", m->in, name ? name : "?");
	s->what = what;
	s->f = NULL;
	s->zf = zip_fopen_index(m->zip, (zip_uint64_t)idx, 0);
	if (s->zf == NULL)
		MOE_FAIL(MOE_EFORMAT, "%s: cannot open the zip member: %s", what,
			 zip_strerror(m->zip));
	return MOE_OK;
}

static void close_src(struct bsrc *s)
{
	if (s->zf != NULL)
		zip_fclose(s->zf);
	if (s->f != NULL)
		fclose(s->f);
	s->zf = NULL;
	s->f = NULL;
}

/* Parses "layer_<L>", "step_<S>_layer_<L>", with prefix "" / "ids_" /
 * "weights_" before "layer_"; returns the kind (0 logits, 1 ids, 2 weights)
 * or -1 when the name is not one of ours.  ".npy" suffix stripped first. */
static int parse_member(const char *name, uint64_t *step, uint32_t *layer)
{
	char buf[256];
	const char *p = buf;
	int kind = 0;
	char *end;
	unsigned long long v;

	if (strlen(name) >= sizeof buf)
		return -1;
	strcpy(buf, name);
	if (ends_with(buf, ".npy"))
		buf[strlen(buf) - 4] = '\0';
	*step = 0;
	if (strncmp(p, "step_", 5) == 0) {
		if (!isdigit((unsigned char)p[5]))
			return -1;
		errno = 0;
		v = strtoull(p + 5, &end, 10);
		if (errno || *end != '_')
			return -1;
		*step = v;
		p = end + 1;
	}
	if (strncmp(p, "ids_", 4) == 0) {
		kind = 1;
		p += 4;
	} else if (strncmp(p, "weights_", 8) == 0) {
		kind = 2;
		p += 8;
	}
	if (strncmp(p, "layer_", 6) != 0 || !isdigit((unsigned char)p[6]))
		return -1;
	errno = 0;
	v = strtoull(p + 6, &end, 10);
	if (errno || *end != '\0' || v >= TRACE_MAX_LAYERS)
		return -1;
	*layer = (uint32_t)v;
	return kind;
}

static int group_cmp(const void *a, const void *b)
{
	const struct group *x = a, *y = b;
	if (x->step != y->step)
		return x->step < y->step ? -1 : 1;
	return x->layer < y->layer ? -1 : x->layer > y->layer;
}

static struct group *group_get(struct npimport *m, uint64_t step, uint32_t layer)
{
	for (size_t i = 0; i < m->ng; i++)
		if (m->g[i].step == step && m->g[i].layer == layer)
			return &m->g[i];
	if (m->ng == m->gcap) {
		size_t cap = m->gcap ? 2 * m->gcap : 16;
		struct group *p = realloc(m->g, cap * sizeof *p);
		if (p == NULL)
			return NULL;
		m->g = p;
		m->gcap = cap;
	}
	m->g[m->ng] = (struct group){step, layer, -1, -1, -1, 0};
	return &m->g[m->ng++];
}

/* Checks one array's header against what the others said. */
static enum moe_status check_shape(struct npimport *m, const struct npy *a, const char *what,
				   int kind)
{
	int want_nd = m->stacked ? 3 : 2;
	uint64_t T = a->shape[want_nd - 2], X = a->shape[want_nd - 1];

	if (a->ndim != want_nd)
		MOE_FAIL(MOE_EFORMAT, "%s: %d dimensions: expected %s", what, a->ndim,
			 m->stacked ? "[layers, tokens, X]" : "[tokens, X]");
	if (kind == 0 && a->kind != 'f' && a->kind != 'u')
		MOE_FAIL(MOE_EFORMAT, "%s: dtype %s: logits must be <f4, <f2 or <u2 (bf16)", what,
			 npy_descr(a));
	if (kind == 1 && a->kind != 'i')
		MOE_FAIL(MOE_EFORMAT, "%s: dtype %s: ids must be <i4 or <i8", what, npy_descr(a));
	if (kind == 2 && a->kind != 'f' && a->kind != 'u')
		MOE_FAIL(MOE_EFORMAT, "%s: dtype %s: weights must be <f4, <f2 or <u2 (bf16)", what,
			 npy_descr(a));
	if ((kind == 0 || kind == 2) && a->kind == 'u' && m->dt != TRACE_DTYPE_BF16 &&
	    m->dt != TRACE_DTYPE_F16)
		MOE_FAIL(MOE_EINVAL, "%s: dtype <u2: say how the 16-bit floats are stored with "
			 "--dtype bf16 or --dtype f16", what);
	if ((kind == 0 || kind == 2) &&
	    ((a->size == 4 && (m->dt == TRACE_DTYPE_F16 || m->dt == TRACE_DTYPE_BF16)) ||
	     (a->kind == 'f' && a->size == 2 && m->dt != TRACE_DTYPE_AUTO && m->dt != TRACE_DTYPE_F16) ||
	     (a->size == 2 && m->dt == TRACE_DTYPE_F32)))
		MOE_FAIL(MOE_EINVAL, "%s: dtype %s disagrees with --dtype", what, npy_descr(a));
	if (T == 0 || X == 0)
		MOE_FAIL(MOE_EFORMAT, "%s: an empty axis in shape", what);
	if (m->T == 0)
		m->T = T;
	else if (T != m->T)
		MOE_FAIL(MOE_EFORMAT, "%s: %" PRIu64 " tokens: the other arrays have %" PRIu64, what, T,
			 m->T);
	if (kind == 0) {
		if (X > TRACE_MAX_EXPERTS)
			MOE_FAIL(MOE_EFORMAT, "%s: %" PRIu64 " experts: at most %u", what, X,
				 TRACE_MAX_EXPERTS);
		if (m->E == 0)
			m->E = (uint32_t)X;
		else if (X != m->E)
			MOE_FAIL(MOE_EFORMAT, "%s: last axis %" PRIu64 ": expected %u experts (%s)",
				 what, X, m->E, m->o->model ? "the model's" : "the other arrays'");
	} else {
		if (X > TRACE_MAX_TOP_K)
			MOE_FAIL(MOE_EFORMAT, "%s: %" PRIu64 " slots per token: at most %u", what, X,
				 TRACE_MAX_TOP_K);
		if (m->k == 0)
			m->k = (uint32_t)X;
		else if (X != m->k)
			MOE_FAIL(MOE_EFORMAT, "%s: last axis %" PRIu64 ": expected top-k %u", what, X,
				 m->k);
	}
	if (m->stacked) {
		if (a->shape[0] == 0 || a->shape[0] > TRACE_MAX_LAYERS)
			MOE_FAIL(MOE_EFORMAT, "%s: %" PRIu64 " layers: expected 1 to %u", what,
				 a->shape[0], TRACE_MAX_LAYERS);
		if (m->L == 0)
			m->L = (uint32_t)a->shape[0];
		else if (a->shape[0] != m->L)
			MOE_FAIL(MOE_EFORMAT, "%s: %" PRIu64 " layers: expected %u", what, a->shape[0],
				 m->L);
	}
	return MOE_OK;
}

/* Learns the groups and the shape of NumPy input, without reading data. */
static enum moe_status np_scan(struct npimport *m)
{
	enum moe_status st;
	struct bsrc s = {0};
	char what[600];

	if (!m->is_npz) {
		s.f = fopen(m->in, "rb");
		s.what = m->in;
		if (s.f == NULL)
			MOE_FAIL(errno == ENOENT ? MOE_ENOTFOUND : MOE_EIO, "%s: cannot open: %s", m->in,
				 strerror(errno));
		st = npy_header(&s, &m->la);
		close_src(&s);
		if (st != MOE_OK)
			return st;
		m->by_logits = !(m->la.kind == 'i');
		m->stacked = m->la.ndim == 3;
		m->L = m->stacked ? 0 : 1;
		if (!m->by_logits) {
			/* Top-k ids, with the gate weights in a second .npy (--weights). */
			m->ia = m->la;
			if ((st = check_shape(m, &m->ia, m->in, 1)) != MOE_OK)
				return st;
			if (m->o->weights != NULL) {
				s.f = fopen(m->o->weights, "rb");
				s.what = m->o->weights;
				if (s.f == NULL)
					MOE_FAIL(errno == ENOENT ? MOE_ENOTFOUND : MOE_EIO, "%s: cannot open: %s",
						 m->o->weights, strerror(errno));
				st = npy_header(&s, &m->wa);
				close_src(&s);
				if (st != MOE_OK || (st = check_shape(m, &m->wa, m->o->weights, 2)) != MOE_OK)
					return st;
				m->has_weights = 1;
			}
		} else {
			if (m->o->weights != NULL)
				MOE_FAIL(MOE_EINVAL, "%s: --weights goes with a .npy of top-k ids, not logits",
					 m->in);
			if ((st = check_shape(m, &m->la, m->in, 0)) != MOE_OK)
				return st;
		}
		for (uint32_t l = 0; l < m->L; l++) {
			struct group *g = group_get(m, 0, l);
			if (g == NULL)
				MOE_FAIL(MOE_ENOMEM, "%s: out of memory", m->in);
			g->sub = l;
			/* for a plain .npy: 0 = the input file, 1 = the weights file */
			g->logits = m->by_logits ? 0 : -1;
			g->ids = m->by_logits ? -1 : 0;
			g->weights = m->has_weights ? 1 : -1;
		}
		return MOE_OK;
	}
	{
		int err = 0;
		zip_int64_t n;
		int have[3] = {0, 0, 0}, have_stack[3] = {0, 0, 0};
		int64_t stack_idx[3] = {-1, -1, -1};

		m->zip = zip_open(m->in, ZIP_RDONLY, &err);
		if (m->zip == NULL) {
			zip_error_t ze;
			zip_error_init_with_code(&ze, err);
			st = moe_error(err == ZIP_ER_NOENT ? MOE_ENOTFOUND : MOE_EFORMAT,
				       "%s: cannot open as .npz (zip): %s", m->in, zip_error_strerror(&ze));
			zip_error_fini(&ze);
			return st;
		}
		n = zip_get_num_entries(m->zip, 0);
		for (zip_int64_t i = 0; i < n; i++) {
			const char *name = zip_get_name(m->zip, (zip_uint64_t)i, 0);
			uint64_t step;
			uint32_t layer;
			int kind;
			char base[256];
			if (name == NULL)
				continue;
			snprintf(base, sizeof base, "%s", name);
			if (ends_with(base, ".npy"))
				base[strlen(base) - 4] = '\0';
			if (strcmp(base, "logits") == 0 || strcmp(base, "router_logits") == 0 ||
			    strcmp(base, "ids") == 0 || strcmp(base, "weights") == 0) {
				kind = base[0] == 'i' ? 1 : base[0] == 'w' ? 2 : 0;
				if (have_stack[kind])
					MOE_FAIL(MOE_EFORMAT, "%s: two stacked %s arrays", m->in, base);
				have_stack[kind] = 1;
				stack_idx[kind] = i;
				continue;
			}
			kind = parse_member(name, &step, &layer);
			if (kind < 0)
				continue; /* not ours: ignored, as documented */
			{
				struct group *g = group_get(m, step, layer);
				if (g == NULL)
					MOE_FAIL(MOE_ENOMEM, "%s: out of memory", m->in);
				if ((kind == 0 ? g->logits : kind == 1 ? g->ids : g->weights) >= 0)
					MOE_FAIL(MOE_EFORMAT, "%s: two arrays for %s", m->in, name);
				if (kind == 0) g->logits = i;
				else if (kind == 1) g->ids = i;
				else g->weights = i;
				have[kind] = 1;
			}
		}
		if ((have[0] || have[1] || have[2]) && (have_stack[0] || have_stack[1] || have_stack[2]))
			MOE_FAIL(MOE_EFORMAT, "%s: both per-layer (layer_N) and stacked (logits, ids) "
				 "arrays: expected one layout", m->in);
		if ((have[0] || have_stack[0]) && (have[1] || have[2] || have_stack[1] || have_stack[2]))
			MOE_FAIL(MOE_EFORMAT, "%s: both logits and ids arrays: expected one of them",
				 m->in);
		if (!have[0] && !have[1] && !have_stack[0] && !have_stack[1])
			MOE_FAIL(MOE_EFORMAT, "%s: no router arrays: expected layer_N (logits), ids_layer_N "
				 "(+ weights_layer_N), or stacked logits / ids (+ weights)", m->in);
		m->by_logits = have[0] || have_stack[0];
		m->stacked = have_stack[0] || have_stack[1];
		if (m->stacked) {
			/* One group per layer, slabs of the stacked arrays. */
			for (int kind = 0; kind < 3; kind++) {
				struct npy *a = kind == 0 ? &m->la : kind == 1 ? &m->ia : &m->wa;
				if (stack_idx[kind] < 0)
					continue;
				if ((st = open_member(m, stack_idx[kind], &s, what, sizeof what)) != MOE_OK)
					return st;
				st = npy_header(&s, a);
				close_src(&s);
				if (st != MOE_OK || (st = check_shape(m, a, what, kind)) != MOE_OK)
					return st;
			}
			m->has_weights = stack_idx[2] >= 0;
			for (uint32_t l = 0; l < m->L; l++) {
				struct group *g = group_get(m, 0, l);
				if (g == NULL)
					MOE_FAIL(MOE_ENOMEM, "%s: out of memory", m->in);
				g->logits = stack_idx[0];
				g->ids = stack_idx[1];
				g->weights = stack_idx[2];
				g->sub = l;
			}
			return MOE_OK;
		}
		qsort(m->g, m->ng, sizeof *m->g, group_cmp);
		m->has_weights = have[2];
		for (size_t i = 0; i < m->ng; i++) {
			struct group *g = &m->g[i];
			if (!m->by_logits && g->ids < 0)
				MOE_FAIL(MOE_EFORMAT, "%s: step %" PRIu64 ", layer %u: weights without ids",
					 m->in, g->step, g->layer);
			if (!m->by_logits && m->has_weights && g->weights < 0)
				MOE_FAIL(MOE_EFORMAT, "%s: step %" PRIu64 ", layer %u: ids without weights "
					 "(other layers have them)", m->in, g->step, g->layer);
			for (int kind = 0; kind < 3; kind++) {
				int64_t idx = kind == 0 ? g->logits : kind == 1 ? g->ids : g->weights;
				struct npy a, *keep = kind == 0 ? &m->la : kind == 1 ? &m->ia : &m->wa;
				if (idx < 0)
					continue;
				if ((st = open_member(m, idx, &s, what, sizeof what)) != MOE_OK)
					return st;
				st = npy_header(&s, &a);
				close_src(&s);
				if (st != MOE_OK || (st = check_shape(m, &a, what, kind)) != MOE_OK)
					return st;
				if (i == 0)
					*keep = a;
				else if (a.kind != keep->kind || a.size != keep->size)
					MOE_FAIL(MOE_EFORMAT, "%s: dtype %s: the first layer's is %s", what,
						 npy_descr(&a), npy_descr(keep));
			}
			if (g->layer + 1 > m->L)
				m->L = g->layer + 1;
		}
		return MOE_OK;
	}
}

/* Opens the source(s) of group g and skips to its slab of a stacked array. */
static enum moe_status np_open_group(struct npimport *m, const struct group *g, int64_t idx,
				     const struct npy *a, size_t X, struct bsrc *s, char *what,
				     size_t wcap)
{
	enum moe_status st;
	struct npy h;
	uint64_t skip;

	if (m->is_npz) {
		if ((st = open_member(m, idx, s, what, wcap)) != MOE_OK)
			return st;
	} else {
		const char *path = idx == 1 ? m->o->weights : m->in;
		snprintf(what, wcap, "%s", path);
		s->what = what;
		s->zf = NULL;
		s->f = fopen(path, "rb");
		if (s->f == NULL)
			MOE_FAIL(MOE_EIO, "%s: cannot open: %s", path, strerror(errno));
	}
	if ((st = npy_header(s, &h)) != MOE_OK)
		return st;
	if (h.kind != a->kind || h.size != a->size || h.ndim != (m->stacked ? 3 : 2) ||
	    h.shape[h.ndim - 1] != X || h.shape[h.ndim - 2] != m->T)
		MOE_FAIL(MOE_EFORMAT, "%s: the array changed while it was imported", what);
	skip = g->sub * m->T * X * (uint64_t)a->size;
	if (skip > 0) {
		if (s->f != NULL) {
			if (fseeko(s->f, (off_t)skip, SEEK_CUR) != 0)
				MOE_FAIL(MOE_EIO, "%s: seek failed: %s", what, strerror(errno));
		} else {
			/* zip members stream only forward: read and discard */
			while (skip > 0) {
				size_t c = skip < BATCH_BYTES ? (size_t)skip : BATCH_BYTES;
				if ((st = bread(s, m->raw, c, "a stacked array")) != MOE_OK)
					return st;
				skip -= c;
			}
		}
	}
	return MOE_OK;
}

static enum moe_status np_import(struct npimport *m, const char *out)
{
	const struct trace_import_opts *o = m->o;
	struct trace_header h;
	struct trace_writer *w = NULL;
	struct trace_writer_opts wo = {o->zstd_level, o->chunk_tokens};
	enum moe_status st;
	size_t per;

	if ((st = np_scan(m)) != MOE_OK)
		return st;
	if (o->model != NULL) {
		if (m->by_logits && m->E != (uint32_t)o->model->experts)
			MOE_FAIL(MOE_EFORMAT, "%s: logits have %u experts: the model %s has %d", m->in,
				 m->E, o->model->name, o->model->experts);
		if (m->L > (uint32_t)o->model->moe_layers)
			MOE_FAIL(MOE_EFORMAT, "%s: %u layers: the model %s has %d MoE layers", m->in, m->L,
				 o->model->name, o->model->moe_layers);
		if (!m->by_logits && m->k != (uint32_t)o->model->top_k && o->top_k == 0)
			MOE_FAIL(MOE_EFORMAT, "%s: %u slots per token: the model %s has top-%d", m->in,
				 m->k, o->model->name, o->model->top_k);
	}
	if (o->layers) {
		if (m->L > o->layers)
			MOE_FAIL(MOE_EFORMAT, "%s: %u layers: --layers says %u", m->in, m->L, o->layers);
		m->L = o->layers;
	} else if (o->model != NULL && (uint32_t)o->model->moe_layers > m->L) {
		m->L = (uint32_t)o->model->moe_layers;
	}
	if (m->by_logits) {
		if (o->experts && o->experts != m->E)
			MOE_FAIL(MOE_EFORMAT, "%s: logits have %u experts: --experts says %u", m->in, m->E,
				 o->experts);
		m->k = o->top_k ? o->top_k : o->model ? (uint32_t)o->model->top_k : 0;
		if (m->k == 0)
			MOE_FAIL(MOE_EINVAL, "%s: router logits need a top-k to be routed: give --top-k "
				 "or --model", m->in);
		if (m->k > m->E)
			MOE_FAIL(MOE_EINVAL, "%s: top-k %u: the logits have only %u experts", m->in, m->k,
				 m->E);
		if (o->model) {
			if ((st = moe_route_policy_from_model(o->model, &m->pol)) != MOE_OK)
				return st;
			m->pol.k = (int)m->k;
		} else {
			moe_route_policy_init(&m->pol, (int)m->E, (int)m->k);
		}
		/* Imports keep the router's raw choice: capacity is a re-routing matter. */
		m->pol.capacity_factor = 0;
		m->has_weights = 1;
	} else {
		if (o->top_k && o->top_k != m->k)
			MOE_FAIL(MOE_EFORMAT, "%s: ids have %u slots per token: --top-k says %u", m->in,
				 m->k, o->top_k);
		m->E = o->experts ? o->experts : o->model ? (uint32_t)o->model->experts : 0;
		if (m->E == 0)
			MOE_FAIL(MOE_EINVAL, "%s: top-k ids do not tell the number of experts: give "
				 "--experts or --model", m->in);
		if (m->k > m->E)
			MOE_FAIL(MOE_EFORMAT, "%s: %u slots per token for %u experts", m->in, m->k, m->E);
	}
	m->R = o->ranks ? o->ranks : 1;
	if (m->T > SIZE_MAX / 2)
		MOE_FAIL(MOE_EFORMAT, "%s: too many tokens", m->in);
	trace_header_init(&h, m->L, m->E, m->k, m->R);
	h.flags = (m->has_weights ? TRACE_F_WEIGHTS : 0) |
		  (m->by_logits && o->keep_logits ? TRACE_F_LOGITS : 0);
	if (o->model)
		snprintf(h.model, sizeof h.model, "%s", o->model->name);
	if ((st = trace_header_check(&h, m->in)) != MOE_OK)
		return st;
	/* Batch: tokens per step bounded by bytes. */
	per = m->by_logits ? (size_t)m->E * 4 : (size_t)m->k * 8;
	m->B = BATCH_BYTES / per;
	if (m->B < 1)
		m->B = 1;
	m->raw = malloc(m->B * per > BATCH_BYTES ? m->B * per : BATCH_BYTES);
	m->lg = m->by_logits ? malloc(m->B * (size_t)m->E * 4) : NULL;
	m->wt = malloc(m->B * (size_t)m->k * 4);
	m->ids = malloc(m->B * (size_t)m->k * 4);
	m->ranks = malloc(m->B * 4);
	if (m->raw == NULL || (m->by_logits && m->lg == NULL) || m->wt == NULL || m->ids == NULL ||
	    m->ranks == NULL)
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", m->in);
	if (m->by_logits && (st = moe_route_workspace_alloc(&m->pol, m->B, &m->ws)) != MOE_OK)
		return st;
	if ((st = trace_writer_open(out, &h, &wo, &w)) != MOE_OK)
		return st;
	for (size_t gi = 0; gi < m->ng; gi++) {
		const struct group *g = &m->g[gi];
		struct bsrc a = {0}, b = {0};
		char wa[600], wb[600];
		uint64_t done = 0;

		if (m->by_logits)
			st = np_open_group(m, g, g->logits, &m->la, m->E, &a, wa, sizeof wa);
		else {
			st = np_open_group(m, g, g->ids, &m->ia, m->k, &a, wa, sizeof wa);
			if (st == MOE_OK && m->has_weights)
				st = np_open_group(m, g, g->weights, &m->wa, m->k, &b, wb, sizeof wb);
		}
		char lab[2][80];
		snprintf(lab[0], sizeof lab[0], "%s (step %" PRIu64 ", layer %u)",
			 m->by_logits ? "logits" : "ids", g->step, g->layer);
		snprintf(lab[1], sizeof lab[1], "weights (step %" PRIu64 ", layer %u)", g->step, g->layer);
		while (st == MOE_OK && done < m->T) {
			size_t n = m->T - done < m->B ? (size_t)(m->T - done) : m->B;
			for (size_t t = 0; t < n; t++)
				m->ranks[t] = (uint32_t)((done + t) * m->R / m->T);
			if (m->by_logits) {
				struct moe_route_out ro = {m->ids, m->wt, NULL, NULL, 0, 0};
				st = read_floats(&a, &m->la, m->o->dtype, m->raw, m->lg, n * m->E, done,
						 m->E, lab[0]);
				if (st == MOE_OK)
					st = moe_route_batch(&m->pol, m->ws, m->lg, n, &ro);
			} else {
				st = read_ids(&a, &m->ia, m->raw, m->ids, n * m->k, done, m->k, m->E, lab[0]);
				if (st == MOE_OK && m->has_weights)
					st = read_floats(&b, &m->wa, m->o->dtype, m->raw, m->wt, n * m->k, done,
							 m->k, lab[1]);
			}
			if (st == MOE_OK)
				st = trace_writer_add_tokens(w, g->step, g->layer, n, m->ranks, m->ids,
							     m->wt, m->lg);
			done += n;
		}
		close_src(&a);
		close_src(&b);
		if (st != MOE_OK) {
			trace_writer_abort(w);
			return st;
		}
	}
	return trace_writer_close(w);
}

/* --------------------------------------------------------- text import */

/* One record of JSONL or CSV input. */
struct rec {
	uint64_t step;
	uint32_t layer, rank;
	size_t nids, nw, nlg;
	int32_t *ids;
	float *w, *lg;
	size_t ids_cap, w_cap, lg_cap;
	/* count records */
	uint32_t expert;
	uint64_t tokens;
};

struct tsrc {
	const char *path;
	FILE *f;
	char *line;
	size_t cap;
	long lineno;
	int csv;
	int counts;          /* count records (rank, expert, tokens) */
	/* CSV columns: index of step, layer, rank, expert, tokens; expert_i, weight_i */
	int c_step, c_layer, c_rank, c_expert, c_tokens;
	int ncols;
	int *c_ids, *c_w;    /* [k] column of expert_j / weight_j, -1 absent */
	int k;
	char **cells;
	int cells_cap;
};

static int grow_arr(void **p, size_t *cap, size_t need, size_t elem)
{
	void *q;
	if (need <= *cap)
		return 1;
	need = need < 16 ? 16 : need * 2;
	q = realloc(*p, need * elem);
	if (q == NULL)
		return 0;
	*p = q;
	*cap = need;
	return 1;
}

/* Reads a line without its newline; returns 1, 0 at EOF, -1 on error. */
static int get_line(struct tsrc *s)
{
	ssize_t n = getline(&s->line, &s->cap, s->f);
	if (n < 0)
		return ferror(s->f) ? -1 : 0;
	s->lineno++;
	while (n > 0 && (s->line[n - 1] == '\n' || s->line[n - 1] == '\r'))
		s->line[--n] = '\0';
	return 1;
}

static int split_csv(struct tsrc *s)
{
	int n = 0;
	char *p = s->line;

	for (;;) {
		if (n == s->cells_cap) {
			int cap = s->cells_cap ? 2 * s->cells_cap : 32;
			char **c = realloc(s->cells, (size_t)cap * sizeof *c);
			if (c == NULL)
				return -1;
			s->cells = c;
			s->cells_cap = cap;
		}
		s->cells[n++] = p;
		p = strchr(p, ',');
		if (p == NULL)
			break;
		*p++ = '\0';
	}
	return n;
}

/* The j of a column named PREFIX<j> (decimal digits only, j < the top-k
 * limit), or -1. */
static int col_index(const char *c, const char *prefix)
{
	size_t n = strlen(prefix);
	long j = 0;

	if (strncmp(c, prefix, n) != 0 || c[n] == '\0' || strlen(c + n) > 6)
		return -1;
	for (const char *p = c + n; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		j = j * 10 + (*p - '0');
	}
	return j < (long)TRACE_MAX_TOP_K ? (int)j : -1;
}

static enum moe_status csv_header(struct tsrc *s)
{
	int n, maxj = -1;

	if (get_line(s) <= 0)
		MOE_FAIL(MOE_EFORMAT, "%s: empty: expected a header row", s->path);
	if ((n = split_csv(s)) < 0)
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", s->path);
	s->c_step = s->c_layer = s->c_rank = s->c_expert = s->c_tokens = -1;
	s->ncols = n;
	for (int i = 0; i < n; i++) {
		const char *c = s->cells[i];
		int *slot = strcmp(c, "step") == 0     ? &s->c_step
			    : strcmp(c, "layer") == 0  ? &s->c_layer
			    : strcmp(c, "rank") == 0   ? &s->c_rank
			    : strcmp(c, "expert") == 0 ? &s->c_expert
			    : strcmp(c, "tokens") == 0 ? &s->c_tokens
						       : NULL;
		if (slot != NULL) {
			if (*slot >= 0)
				MOE_FAIL(MOE_EFORMAT, "%s:1: header row: column %s twice", s->path, c);
			*slot = i;
		}
		if (col_index(c, "expert_") > maxj)
			maxj = col_index(c, "expert_");
	}
	if (s->c_step < 0 || s->c_layer < 0)
		MOE_FAIL(MOE_EFORMAT, "%s:1: header row: expected columns step, layer and either rank, "
			 "expert, tokens (counts) or token, rank, expert_0.., weight_0..", s->path);
	if (s->c_expert >= 0 && s->c_tokens >= 0) {
		s->counts = 1;
		if (s->c_rank < 0)
			MOE_FAIL(MOE_EFORMAT, "%s:1: header row: a count CSV needs a rank column", s->path);
		return MOE_OK;
	}
	if (maxj < 0)
		MOE_FAIL(MOE_EFORMAT, "%s:1: header row: no expert_0 column (token rows) and no "
			 "expert, tokens columns (count rows)", s->path);
	s->k = maxj + 1;
	s->c_ids = malloc((size_t)s->k * sizeof *s->c_ids);
	s->c_w = malloc((size_t)s->k * sizeof *s->c_w);
	if (s->c_ids == NULL || s->c_w == NULL)
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", s->path);
	for (int j = 0; j < s->k; j++)
		s->c_ids[j] = s->c_w[j] = -1;
	for (int i = 0; i < n; i++) {
		int j = col_index(s->cells[i], "expert_"), jw = col_index(s->cells[i], "weight_");
		if ((j >= 0 && s->c_ids[j] >= 0) || (jw >= 0 && jw < s->k && s->c_w[jw] >= 0))
			MOE_FAIL(MOE_EFORMAT, "%s:1: header row: column %s twice", s->path, s->cells[i]);
		if (j >= 0)
			s->c_ids[j] = i;
		else if (jw >= 0 && jw < s->k)
			s->c_w[jw] = i;
	}
	for (int j = 0; j < s->k; j++) {
		if (s->c_ids[j] < 0)
			MOE_FAIL(MOE_EFORMAT, "%s:1: header row: column expert_%d missing (expert_0 to "
				 "expert_%d expected)", s->path, j, s->k - 1);
		if ((s->c_w[j] < 0) != (s->c_w[0] < 0))
			MOE_FAIL(MOE_EFORMAT, "%s:1: header row: weight_%d missing (weight_0 to weight_%d "
				 "expected, or none)", s->path, j, s->k - 1);
	}
	return MOE_OK;
}

static enum moe_status tsrc_open(struct tsrc *s, const char *path, int csv)
{
	memset(s, 0, sizeof *s);
	s->path = path;
	s->csv = csv;
	s->f = fopen(path, "r");
	if (s->f == NULL)
		MOE_FAIL(errno == ENOENT ? MOE_ENOTFOUND : MOE_EIO, "%s: cannot open: %s", path,
			 strerror(errno));
	if (csv)
		return csv_header(s);
	return MOE_OK;
}

static void tsrc_close(struct tsrc *s)
{
	if (s->f)
		fclose(s->f);
	free(s->line);
	free(s->cells);
	free(s->c_ids);
	free(s->c_w);
}

static enum moe_status tsrc_rewind(struct tsrc *s)
{
	rewind(s->f);
	s->lineno = 0;
	if (s->csv && get_line(s) <= 0)
		MOE_FAIL(MOE_EIO, "%s: re-reading failed", s->path);
	return MOE_OK;
}

static enum moe_status parse_u64(const struct tsrc *s, const char *field, const char *v,
				 uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long x;

	while (*v == ' ')
		v++;
	errno = 0;
	if (!isdigit((unsigned char)*v) || (x = strtoull(v, &end, 10), errno == ERANGE) ||
	    (*end != '\0' && *end != ' ') || x > max)
		MOE_FAIL(MOE_EFORMAT, "%s:%ld: %s '%s': expected an integer from 0 to %" PRIu64,
			 s->path, s->lineno, field, v, max);
	*out = x;
	return MOE_OK;
}

static enum moe_status parse_f32(const struct tsrc *s, const char *field, const char *v,
				 float *out)
{
	char *end;
	double x;

	errno = 0;
	x = strtod(v, &end);
	if (end == v || (*end != '\0' && *end != ' ') || !isfinite(x) || fabs(x) > 3.4028235e38)
		MOE_FAIL(MOE_EFORMAT, "%s:%ld: %s '%s': expected a finite number", s->path, s->lineno,
			 field, v);
	*out = (float)x;
	return MOE_OK;
}

static enum moe_status json_u64(const struct tsrc *s, json_t *o, const char *key, int required,
				uint64_t max, uint64_t *out)
{
	json_t *v = json_object_get(o, key);
	if (v == NULL) {
		if (required)
			MOE_FAIL(MOE_EFORMAT, "%s:%ld: field \"%s\" missing", s->path, s->lineno, key);
		*out = 0;
		return MOE_OK;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		MOE_FAIL(MOE_EFORMAT, "%s:%ld: field \"%s\": expected an integer from 0 to %" PRIu64,
			 s->path, s->lineno, key, max);
	*out = (uint64_t)json_integer_value(v);
	return MOE_OK;
}

/* Reads the next record; *eof set at the end. */
static enum moe_status tsrc_next(struct tsrc *s, struct rec *r, int *eof)
{
	enum moe_status st;
	uint64_t v;
	int got;

	*eof = 0;
	do {
		got = get_line(s);
		if (got < 0)
			MOE_FAIL(MOE_EIO, "%s: reading failed: %s", s->path, strerror(errno));
		if (got == 0) {
			*eof = 1;
			return MOE_OK;
		}
	} while (s->line[0] == '\0');
	r->nids = r->nw = r->nlg = 0;
	if (s->csv) {
		int n = split_csv(s);
		if (n < 0)
			MOE_FAIL(MOE_ENOMEM, "%s: out of memory", s->path);
		if (n != s->ncols)
			MOE_FAIL(MOE_EFORMAT, "%s:%ld: %d fields: the header row has %d", s->path,
				 s->lineno, n, s->ncols);
		if ((st = parse_u64(s, "step", s->cells[s->c_step], UINT64_MAX / 2, &r->step)) != MOE_OK ||
		    (st = parse_u64(s, "layer", s->cells[s->c_layer], TRACE_MAX_LAYERS - 1, &v)) != MOE_OK)
			return st;
		r->layer = (uint32_t)v;
		r->rank = 0;
		if (s->c_rank >= 0) {
			if ((st = parse_u64(s, "rank", s->cells[s->c_rank], TRACE_MAX_RANKS - 1, &v)) != MOE_OK)
				return st;
			r->rank = (uint32_t)v;
		}
		if (s->counts) {
			if ((st = parse_u64(s, "expert", s->cells[s->c_expert], TRACE_MAX_EXPERTS - 1, &v)) !=
				    MOE_OK ||
			    (st = parse_u64(s, "tokens", s->cells[s->c_tokens], UINT64_MAX / 4, &r->tokens)) !=
				    MOE_OK)
				return st;
			r->expert = (uint32_t)v;
			return MOE_OK;
		}
		if (!grow_arr((void **)&r->ids, &r->ids_cap, (size_t)s->k, 4) ||
		    !grow_arr((void **)&r->w, &r->w_cap, (size_t)s->k, 4))
			MOE_FAIL(MOE_ENOMEM, "%s: out of memory", s->path);
		for (int j = 0; j < s->k; j++) {
			const char *c = s->cells[s->c_ids[j]];
			char field[32];
			snprintf(field, sizeof field, "expert_%d", j);
			if (strcmp(c, "-1") == 0) {
				r->ids[j] = TRACE_EXPERT_NONE;
			} else {
				if ((st = parse_u64(s, field, c, TRACE_MAX_EXPERTS - 1, &v)) != MOE_OK)
					return st;
				r->ids[j] = (int32_t)v;
			}
			if (s->c_w[j] >= 0) {
				snprintf(field, sizeof field, "weight_%d", j);
				if ((st = parse_f32(s, field, s->cells[s->c_w[j]], &r->w[j])) != MOE_OK)
					return st;
			}
		}
		r->nids = (size_t)s->k;
		r->nw = s->c_w[0] >= 0 ? (size_t)s->k : 0;
		return MOE_OK;
	}
	{
		json_error_t je;
		json_t *o = json_loads(s->line, JSON_REJECT_DUPLICATES, &je), *a;
		st = MOE_OK;
		if (o == NULL || !json_is_object(o)) {
			json_decref(o);
			MOE_FAIL(MOE_EFORMAT, "%s:%ld: not a JSON object%s%s", s->path, s->lineno,
				 o ? "" : ": ", o ? "" : je.text);
		}
		if ((st = json_u64(s, o, "step", 1, UINT64_MAX / 2, &r->step)) != MOE_OK ||
		    (st = json_u64(s, o, "layer", 1, TRACE_MAX_LAYERS - 1, &v)) != MOE_OK)
			goto jout;
		r->layer = (uint32_t)v;
		if ((st = json_u64(s, o, "rank", 0, TRACE_MAX_RANKS - 1, &v)) != MOE_OK)
			goto jout;
		r->rank = (uint32_t)v;
		if (json_object_get(o, "tokens") != NULL) {
			if (s->lineno == 1)
				s->counts = 1;
			if (!s->counts) {
				st = moe_error(MOE_EFORMAT, "%s:%ld: a count line among token lines", s->path,
					       s->lineno);
				goto jout;
			}
			if ((st = json_u64(s, o, "expert", 1, TRACE_MAX_EXPERTS - 1, &v)) != MOE_OK ||
			    (st = json_u64(s, o, "tokens", 1, UINT64_MAX / 4, &r->tokens)) != MOE_OK)
				goto jout;
			r->expert = (uint32_t)v;
			goto jout;
		}
		if (s->counts) {
			st = moe_error(MOE_EFORMAT, "%s:%ld: a token line among count lines", s->path,
				       s->lineno);
			goto jout;
		}
		a = json_object_get(o, "experts");
		if (!json_is_array(a) || json_array_size(a) == 0 ||
		    json_array_size(a) > TRACE_MAX_TOP_K) {
			st = moe_error(MOE_EFORMAT, "%s:%ld: field \"experts\": expected an array of 1 to "
				       "%u expert ids", s->path, s->lineno, TRACE_MAX_TOP_K);
			goto jout;
		}
		r->nids = json_array_size(a);
		if (!grow_arr((void **)&r->ids, &r->ids_cap, r->nids, 4)) {
			st = moe_error(MOE_ENOMEM, "%s: out of memory", s->path);
			goto jout;
		}
		for (size_t j = 0; j < r->nids; j++) {
			json_t *e = json_array_get(a, j);
			if (!json_is_integer(e) || json_integer_value(e) < -1 ||
			    json_integer_value(e) >= (json_int_t)TRACE_MAX_EXPERTS) {
				st = moe_error(MOE_EFORMAT, "%s:%ld: experts[%zu]: expected an expert id "
					       "(0 or more) or -1 (none)", s->path, s->lineno, j);
				goto jout;
			}
			r->ids[j] = (int32_t)json_integer_value(e);
		}
		for (int which = 0; which < 2; which++) {
			const char *key = which ? "logits" : "weights";
			size_t *cnt = which ? &r->nlg : &r->nw;
			float **arr = which ? &r->lg : &r->w;
			size_t *cap = which ? &r->lg_cap : &r->w_cap;
			a = json_object_get(o, key);
			if (a == NULL)
				continue;
			if (!json_is_array(a) || json_array_size(a) > TRACE_MAX_EXPERTS ||
			    (!which && json_array_size(a) != r->nids)) {
				st = moe_error(MOE_EFORMAT, "%s:%ld: field \"%s\": expected an array of %s",
					       s->path, s->lineno, key,
					       which ? "E numbers" : "one number per expert");
				goto jout;
			}
			*cnt = json_array_size(a);
			if (!grow_arr((void **)arr, cap, *cnt, 4)) {
				st = moe_error(MOE_ENOMEM, "%s: out of memory", s->path);
				goto jout;
			}
			for (size_t j = 0; j < *cnt; j++) {
				json_t *e = json_array_get(a, j);
				double x = json_is_number(e) ? json_number_value(e) : NAN;
				if (!isfinite(x) || fabs(x) > 3.4028235e38) {
					st = moe_error(MOE_EFORMAT, "%s:%ld: %s[%zu]: expected a finite number",
						       s->path, s->lineno, key, j);
					goto jout;
				}
				(*arr)[j] = (float)x;
			}
		}
	jout:
		json_decref(o);
		return st;
	}
}

static int rec_cmp(uint64_t s1, uint32_t l1, uint64_t s2, uint32_t l2)
{
	if (s1 != s2)
		return s1 < s2 ? -1 : 1;
	return l1 < l2 ? -1 : l1 > l2;
}

static enum moe_status text_import(const char *in, const char *out,
				   const struct trace_import_opts *o, int csv)
{
	struct tsrc s;
	struct rec r;
	struct trace_header h;
	struct trace_writer *w = NULL;
	struct trace_writer_opts wo = {o->zstd_level, o->chunk_tokens};
	enum moe_status st;
	int eof, first = 1, has_w = 0, has_lg = 0;
	uint64_t ps = 0, max_step = 0, nrec = 0;
	uint32_t pl = 0, max_layer = 0, max_rank = 0, max_id = 0, k = 0, E_lg = 0;
	int any_id = 0;
	size_t B = 0, nb = 0;
	uint32_t *ranks = NULL;
	int32_t *ids = NULL;
	float *wt = NULL, *lg = NULL;
	uint64_t *counts = NULL;
	uint32_t E, R, L;

	memset(&r, 0, sizeof r);
	if ((st = tsrc_open(&s, in, csv)) != MOE_OK)
		goto out;
	/* Pass 1: shape, consistency and order. */
	for (;;) {
		if ((st = tsrc_next(&s, &r, &eof)) != MOE_OK)
			goto out;
		if (eof)
			break;
		if (!first && rec_cmp(r.step, r.layer, ps, pl) < 0) {
			st = moe_error(MOE_EFORMAT, "%s:%ld: step %" PRIu64 ", layer %u after step %" PRIu64
				       ", layer %u: lines must be sorted by step, then layer", in,
				       s.lineno, r.step, r.layer, ps, pl);
			goto out;
		}
		if (!s.counts) {
			if (first) {
				k = (uint32_t)r.nids;
				has_w = r.nw > 0;
				has_lg = r.nlg > 0;
				E_lg = (uint32_t)r.nlg;
			}
			if (r.nids != k || (r.nw > 0) != has_w || r.nlg != E_lg) {
				st = moe_error(MOE_EFORMAT, "%s:%ld: %zu experts, %s weights, %zu logits: the "
					       "first line has %u, %s, %u", in, s.lineno, r.nids,
					       r.nw ? "with" : "no", r.nlg, k, has_w ? "with" : "no", E_lg);
				goto out;
			}
			for (size_t j = 0; j < r.nids; j++)
				if (r.ids[j] >= 0) {
					any_id = 1;
					if ((uint32_t)r.ids[j] > max_id)
						max_id = (uint32_t)r.ids[j];
				}
		} else {
			any_id = 1;
			if (r.expert > max_id)
				max_id = r.expert;
		}
		if (r.layer > max_layer) max_layer = r.layer;
		if (r.rank > max_rank) max_rank = r.rank;
		if (r.step > max_step) max_step = r.step;
		ps = r.step;
		pl = r.layer;
		first = 0;
		nrec++;
	}
	if (nrec == 0) {
		st = moe_error(MOE_EFORMAT, "%s: no records", in);
		goto out;
	}
	/* The header: options and model first, the data's extent otherwise. */
	E = o->experts ? o->experts : o->model ? (uint32_t)o->model->experts : E_lg ? E_lg : max_id + 1;
	if (E_lg && E_lg != E) {
		st = moe_error(MOE_EFORMAT, "%s: lines hold %u logits: expected %u experts%s", in, E_lg,
			       E, o->model ? " (the model's)" : "");
		goto out;
	}
	if (any_id && max_id >= E) {
		st = moe_error(MOE_EFORMAT, "%s: expert id %u: expected below %u experts%s", in, max_id,
			       E, o->model ? " (the model's)" : "");
		goto out;
	}
	L = o->layers ? o->layers : o->model ? (uint32_t)o->model->moe_layers : max_layer + 1;
	if (max_layer >= L) {
		st = moe_error(MOE_EFORMAT, "%s: layer %u: expected below %u layers%s", in, max_layer, L,
			       o->model && !o->layers ? " (the model's)" : "");
		goto out;
	}
	R = o->ranks ? o->ranks : max_rank + 1;
	if (max_rank >= R) {
		st = moe_error(MOE_EFORMAT, "%s: rank %u: expected below --ranks %u", in, max_rank, R);
		goto out;
	}
	if (!s.counts) {
		if (o->top_k && o->top_k != k) {
			st = moe_error(MOE_EFORMAT, "%s: %u experts per line: --top-k says %u", in, k,
				       o->top_k);
			goto out;
		}
		if (k > E) {
			st = moe_error(MOE_EFORMAT, "%s: %u experts per line but only %u experts", in, k, E);
			goto out;
		}
	}
	if (s.counts) {
		/* Counts do not show k; the options or the model do (else 1). */
		k = o->top_k ? o->top_k : o->model ? (uint32_t)o->model->top_k : 1;
		if (k > E) {
			st = moe_error(MOE_EINVAL, "%s: top-k %u for %u experts", in, k, E);
			goto out;
		}
	}
	trace_header_init(&h, L, E, k, R);
	h.flags = s.counts ? TRACE_F_COUNTS
			   : (has_w ? TRACE_F_WEIGHTS : 0) | (has_lg && o->keep_logits ? TRACE_F_LOGITS : 0);
	if (o->model)
		snprintf(h.model, sizeof h.model, "%s", o->model->name);
	if ((st = trace_header_check(&h, in)) != MOE_OK)
		goto out;
	if (s.counts) {
		counts = calloc((size_t)R * E, 8);
		if (counts == NULL) {
			st = moe_error(MOE_ENOMEM, "%s: out of memory", in);
			goto out;
		}
	} else {
		size_t per = (size_t)k * 8 + 4 + (has_lg ? (size_t)E * 4 : 0);
		B = BATCH_BYTES / per;
		if (B < 1)
			B = 1;
		ranks = malloc(B * 4);
		ids = malloc(B * k * 4);
		wt = malloc(B * k * 4);
		lg = has_lg ? malloc(B * (size_t)E * 4) : NULL;
		if (ranks == NULL || ids == NULL || wt == NULL || (has_lg && lg == NULL)) {
			st = moe_error(MOE_ENOMEM, "%s: out of memory", in);
			goto out;
		}
	}
	if ((st = trace_writer_open(out, &h, &wo, &w)) != MOE_OK)
		goto out;
	/* Pass 2: write. */
	if ((st = tsrc_rewind(&s)) != MOE_OK)
		goto out;
	first = 1;
	for (;;) {
		if ((st = tsrc_next(&s, &r, &eof)) != MOE_OK)
			goto out;
		if (!first && (eof || rec_cmp(r.step, r.layer, ps, pl) != 0)) {
			if (s.counts) {
				st = trace_writer_add_counts(w, ps, pl, counts);
				memset(counts, 0, (size_t)R * E * 8);
			} else if (nb > 0) {
				st = trace_writer_add_tokens(w, ps, pl, nb, ranks, ids, wt, lg);
				nb = 0;
			}
			if (st != MOE_OK)
				goto out;
		}
		if (eof)
			break;
		/* The file is read twice: refuse one that changed in between. */
		if (r.rank >= R || (s.counts && r.expert >= E) ||
		    (!s.counts && (r.nids != k || (r.nw > 0) != has_w || r.nlg != E_lg)) ||
		    (!first && rec_cmp(r.step, r.layer, ps, pl) < 0)) {
			st = moe_error(MOE_EFORMAT, "%s:%ld: the file changed while it was imported", in,
				       s.lineno);
			goto out;
		}
		if (s.counts) {
			/* Rows of the same cell add up. */
			counts[(size_t)r.rank * E + r.expert] += r.tokens;
		} else {
			if (nb == B) {
				if ((st = trace_writer_add_tokens(w, r.step, r.layer, nb, ranks, ids, wt, lg)) !=
				    MOE_OK)
					goto out;
				nb = 0;
			}
			ranks[nb] = r.rank;
			memcpy(ids + nb * k, r.ids, k * 4);
			if (has_w)
				memcpy(wt + nb * k, r.w, k * 4);
			if (has_lg)
				memcpy(lg + nb * E, r.lg, (size_t)E * 4);
			nb++;
		}
		ps = r.step;
		pl = r.layer;
		first = 0;
	}
	st = trace_writer_close(w);
	w = NULL;
out:
	trace_writer_abort(w);
	tsrc_close(&s);
	free(r.ids);
	free(r.w);
	free(r.lg);
	free(ranks);
	free(ids);
	free(wt);
	free(lg);
	free(counts);
	return st;
}

enum moe_status trace_import(const char *in, const char *out, const struct trace_import_opts *o)
{
	enum trace_format f = o->format == TRACE_FMT_AUTO ? trace_format_guess(in) : o->format;
	enum moe_status st;

	if (o->model != NULL && o->experts && o->experts != (uint32_t)o->model->experts)
		MOE_FAIL(MOE_EINVAL, "--experts %u disagrees with the model %s (%d experts)", o->experts,
			 o->model->name, o->model->experts);
	if (o->weights != NULL && f != TRACE_FMT_NPY)
		MOE_FAIL(MOE_EINVAL, "%s: --weights goes with a .npy of top-k ids", in);
	switch (f) {
	case TRACE_FMT_NPY:
	case TRACE_FMT_NPZ: {
		struct npimport m;
		memset(&m, 0, sizeof m);
		m.in = in;
		m.o = o;
		m.dt = o->dtype;
		m.is_npz = f == TRACE_FMT_NPZ;
		if (o->model)
			m.E = 0;
		st = np_import(&m, out);
		if (m.zip)
			zip_discard(m.zip);
		moe_route_workspace_free(m.ws);
		free(m.g);
		free(m.raw);
		free(m.lg);
		free(m.wt);
		free(m.ids);
		free(m.ranks);
		return st;
	}
	case TRACE_FMT_JSONL:
		return text_import(in, out, o, 0);
	case TRACE_FMT_CSV:
		return text_import(in, out, o, 1);
	case TRACE_FMT_MOETRACE:
		MOE_FAIL(MOE_EINVAL, "%s: already a .moetrace: nothing to import", in);
	default:
		MOE_FAIL(MOE_EINVAL, "%s: unknown input format: name it .npy, .npz, .jsonl or .csv, or "
			 "give --from", in);
	}
}

/* ---------------------------------------------------------------- export */

struct xout {
	const char *path;
	char *tmp;
	FILE *f;
};

static enum moe_status xout_open(struct xout *x, const char *path)
{
	x->path = path;
	x->tmp = NULL;
	if (strcmp(path, "-") == 0) {
		x->f = stdout;
		return MOE_OK;
	}
	x->tmp = malloc(strlen(path) + 32);
	if (x->tmp == NULL)
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", path);
	sprintf(x->tmp, "%s.tmp.%ld", path, (long)getpid());
	x->f = fopen(x->tmp, "wb");
	if (x->f == NULL) {
		int e = errno;
		free(x->tmp);
		x->tmp = NULL;
		MOE_FAIL(MOE_EIO, "%s: cannot create: %s", path, strerror(e));
	}
	return MOE_OK;
}

static void xout_abort(struct xout *x)
{
	if (x->f != NULL && x->f != stdout)
		fclose(x->f);
	if (x->tmp != NULL)
		unlink(x->tmp);
	free(x->tmp);
	x->f = NULL;
	x->tmp = NULL;
}

static enum moe_status xout_close(struct xout *x)
{
	if (x->f == stdout) {
		if (fflush(stdout) != 0 || ferror(stdout))
			MOE_FAIL(MOE_EIO, "writing standard output failed: %s", strerror(errno));
		return MOE_OK;
	}
	if (ferror(x->f) || fclose(x->f) != 0) {
		x->f = NULL;
		xout_abort(x);
		MOE_FAIL(MOE_EIO, "%s: writing failed: %s", x->path, strerror(errno));
	}
	x->f = NULL;
	if (rename(x->tmp, x->path) != 0) {
		int e = errno;
		xout_abort(x);
		MOE_FAIL(MOE_EIO, "%s: renaming the temporary file failed: %s", x->path, strerror(e));
	}
	free(x->tmp);
	x->tmp = NULL;
	return MOE_OK;
}

static int selected(const struct trace_export_opts *o, const struct trace_chunk *c)
{
	return (o->step < 0 || (uint64_t)o->step == c->step) &&
	       (o->layer < 0 || (uint64_t)o->layer == c->layer);
}

#define NPY_HDR 256

/* Prints a float for JSON with 9 significant digits (exact for float32).
 * Negative zero is written "-0.0": "-0" would parse as the integer 0. */
static void json_float(FILE *f, const char *sep, float v)
{
	if (v == 0 && signbit(v))
		fprintf(f, "%s-0.0", sep);
	else
		fprintf(f, "%s%.9g", sep, (double)v);
}

static void npy_write_header(FILE *f, const char *descr, const uint64_t *shape, int nd)
{
	char h[NPY_HDR];
	int n;

	memcpy(h, "\x93NUMPY\x01\x00", 8);
	h[8] = (char)((NPY_HDR - 10) & 0xFF);
	h[9] = (char)((NPY_HDR - 10) >> 8);
	n = snprintf(h + 10, NPY_HDR - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
	for (int i = 0; i < nd; i++)
		n += snprintf(h + 10 + n, (size_t)(NPY_HDR - 10 - n), "%" PRIu64 "%s", shape[i],
			      nd == 1 ? "," : i + 1 < nd ? ", " : "");
	n += snprintf(h + 10 + n, (size_t)(NPY_HDR - 10 - n), "), }");
	memset(h + 10 + n, ' ', (size_t)(NPY_HDR - 10 - n));
	h[NPY_HDR - 1] = '\n';
	fwrite(h, 1, NPY_HDR, f);
}

enum moe_status trace_export(const char *in, const char *out, const struct trace_export_opts *o)
{
	struct trace_reader *r = NULL;
	const struct trace_header *h;
	const struct trace_chunk *c;
	struct xout x = {0};
	enum trace_format f = o->format == TRACE_FMT_AUTO ? trace_format_guess(out) : o->format;
	enum trace_npy_array arr = o->array;
	enum moe_status st;
	uint64_t groups = 0, gtok = 0, T = 0, total = 0, ps = 0;
	uint32_t pl = 0;
	int same = 1, counts;
	size_t X = 0;

	if (f != TRACE_FMT_JSONL && f != TRACE_FMT_CSV && f != TRACE_FMT_NPY)
		MOE_FAIL(MOE_EINVAL, "%s: export format: expected jsonl, csv or npy (from the name or "
			 "--to)", out);
	if (f == TRACE_FMT_NPY && strcmp(out, "-") == 0)
		MOE_FAIL(MOE_EINVAL, "a .npy export needs a file, not standard output");
	if ((st = trace_reader_open(in, &r)) != MOE_OK)
		return st;
	h = trace_reader_header(r);
	counts = (h->flags & TRACE_F_COUNTS) != 0;
	if (f == TRACE_FMT_NPY) {
		if (arr == TRACE_NPY_AUTO)
			arr = counts ? TRACE_NPY_COUNTS : (h->flags & TRACE_F_LOGITS) ? TRACE_NPY_LOGITS
										 : TRACE_NPY_IDS;
		if ((arr == TRACE_NPY_COUNTS) != counts ||
		    (arr == TRACE_NPY_WEIGHTS && !(h->flags & TRACE_F_WEIGHTS)) ||
		    (arr == TRACE_NPY_LOGITS && !(h->flags & TRACE_F_LOGITS))) {
			trace_reader_close(r);
			MOE_FAIL(MOE_EINVAL, "%s: the trace holds no %s", in,
				 arr == TRACE_NPY_COUNTS ? "counts (it is token level)"
				 : arr == TRACE_NPY_WEIGHTS ? "gate weights"
				 : arr == TRACE_NPY_LOGITS ? "router logits" : "tokens (it is count level)");
		}
		X = arr == TRACE_NPY_LOGITS ? h->experts : arr == TRACE_NPY_RANKS ? 0 : h->top_k;
	}
	if ((st = xout_open(&x, out)) != MOE_OK)
		goto fail;
	if (f == TRACE_FMT_NPY)
		npy_write_header(x.f, "<f4", (uint64_t[]){0}, 1); /* placeholder, rewritten */
	else if (f == TRACE_FMT_CSV) {
		if (counts)
			fputs("step,layer,rank,expert,tokens\n", x.f);
		else {
			fputs("step,layer,token,rank", x.f);
			for (uint32_t j = 0; j < h->top_k; j++)
				fprintf(x.f, ",expert_%u", j);
			if (h->flags & TRACE_F_WEIGHTS)
				for (uint32_t j = 0; j < h->top_k; j++)
					fprintf(x.f, ",weight_%u", j);
			fputc('\n', x.f);
		}
	}
	for (;;) {
		if ((st = trace_reader_next(r, &c)) != MOE_OK)
			goto fail;
		if (c == NULL)
			break;
		if (!selected(o, c))
			continue;
		if (groups == 0 || c->step != ps || c->layer != pl) {
			if (groups > 0) {
				if (T == 0) T = gtok;
				else if (gtok != T) same = 0;
			}
			groups++;
			gtok = 0;
			ps = c->step;
			pl = c->layer;
		}
		if (counts) {
			if (f == TRACE_FMT_NPY) {
				fwrite(c->counts, 8, (size_t)h->ranks * h->experts, x.f);
			} else {
				for (uint32_t rk = 0; rk < h->ranks; rk++)
					for (uint32_t e = 0; e < h->experts; e++) {
						uint64_t v = c->counts[(size_t)rk * h->experts + e];
						if (v == 0)
							continue; /* sparse: zero cells are implied */
						if (f == TRACE_FMT_CSV)
							fprintf(x.f, "%" PRIu64 ",%u,%u,%u,%" PRIu64 "\n", c->step,
								c->layer, rk, e, v);
						else
							fprintf(x.f, "{\"step\":%" PRIu64 ",\"layer\":%u,\"rank\":%u,"
								"\"expert\":%u,\"tokens\":%" PRIu64 "}\n", c->step,
								c->layer, rk, e, v);
					}
			}
			gtok++;
			continue;
		}
		if (f == TRACE_FMT_NPY) {
			switch (arr) {
			case TRACE_NPY_IDS: fwrite(c->ids, 4, c->n * h->top_k, x.f); break;
			case TRACE_NPY_WEIGHTS: fwrite(c->weights, 4, c->n * h->top_k, x.f); break;
			case TRACE_NPY_LOGITS: fwrite(c->logits, 4, c->n * h->experts, x.f); break;
			default: fwrite(c->ranks, 4, c->n, x.f); break;
			}
		} else {
			for (size_t t = 0; t < c->n; t++) {
				const int32_t *id = c->ids + t * h->top_k;
				const float *wt = c->weights ? c->weights + t * h->top_k : NULL;
				if (f == TRACE_FMT_CSV) {
					fprintf(x.f, "%" PRIu64 ",%u,%" PRIu64 ",%u", c->step, c->layer, gtok + t,
						c->ranks[t]);
					for (uint32_t j = 0; j < h->top_k; j++)
						fprintf(x.f, ",%d", id[j]);
					if (wt)
						for (uint32_t j = 0; j < h->top_k; j++)
							fprintf(x.f, ",%.9g", (double)wt[j]);
					fputc('\n', x.f);
					continue;
				}
				fprintf(x.f, "{\"step\":%" PRIu64 ",\"layer\":%u,\"token\":%" PRIu64
					",\"rank\":%u,\"experts\":[", c->step, c->layer, gtok + t, c->ranks[t]);
				for (uint32_t j = 0; j < h->top_k; j++)
					fprintf(x.f, "%s%d", j ? "," : "", id[j]);
				fputc(']', x.f);
				if (wt) {
					fputs(",\"weights\":[", x.f);
					for (uint32_t j = 0; j < h->top_k; j++)
						json_float(x.f, j ? "," : "", wt[j]);
					fputc(']', x.f);
				}
				if (c->logits) {
					fputs(",\"logits\":[", x.f);
					for (uint32_t e = 0; e < h->experts; e++)
						json_float(x.f, e ? "," : "", c->logits[t * h->experts + e]);
					fputc(']', x.f);
				}
				fputs("}\n", x.f);
			}
		}
		gtok += c->n;
		total += c->n;
	}
	if (groups > 0) {
		if (T == 0) T = gtok;
		else if (gtok != T) same = 0;
	}
	if (f == TRACE_FMT_NPY) {
		uint64_t shape[3];
		int nd = 0;
		const char *descr = arr == TRACE_NPY_COUNTS ? "<i8"
				    : (arr == TRACE_NPY_IDS || arr == TRACE_NPY_RANKS) ? "<i4" : "<f4";
		if (groups == 0) {
			st = moe_error(MOE_ENOTFOUND, "%s: no chunk matches the selected step and layer", in);
			goto fail;
		}
		if (counts) {
			if (groups > 1)
				shape[nd++] = groups;
			shape[nd++] = h->ranks;
			shape[nd++] = h->experts;
		} else {
			if (groups > 1 && same) {
				shape[nd++] = groups;
				shape[nd++] = T;
			} else {
				shape[nd++] = groups == 1 ? T : total;
			}
			if (X)
				shape[nd++] = X;
		}
		if (fseek(x.f, 0, SEEK_SET) != 0) {
			st = moe_error(MOE_EIO, "%s: seek failed: %s", out, strerror(errno));
			goto fail;
		}
		npy_write_header(x.f, descr, shape, nd);
	}
	trace_reader_close(r);
	return xout_close(&x);
fail:
	trace_reader_close(r);
	xout_abort(&x);
	return st;
}
