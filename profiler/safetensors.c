/* profiler/safetensors.c: the safetensors reader (see safetensors.h).
 *
 * Each file is mapped read-only and its header parsed with jansson into a
 * table of tensors sorted by name (binary search: a DeepSeek-V3 shard holds
 * thousands).  A sharded checkpoint keeps the index's weight_map, sorted by
 * name, and opens a shard only when a tensor in it is first asked for, so
 * profiling one layer of a 163-shard checkpoint touches one or two files.
 */
#include "config.h"
#include "profiler/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_file {
	char *path;                 /* as named in messages */
	void *map;                  /* mmap'ed image, NULL when borrowed or not open */
	size_t map_size;
	const unsigned char *image; /* the bytes (mapped or borrowed) */
	size_t size;
	struct prof_st_tensor *tensors; /* header order */
	size_t n;
	size_t *by_name;            /* indices into tensors sorted by name */
	int opened;
};

struct map_entry {
	char *name;
	size_t file;                /* index into files */
};

struct prof_st {
	struct st_file *files;
	size_t nfiles;
	struct map_entry *map;      /* sharded: weight_map sorted by name; else NULL */
	size_t nmap;
	char *where;                /* the path given to prof_st_open */
};

static const struct {
	const char *name;
	size_t size;
} dtypes[PROF_ST_DTYPE_COUNT] = {
	[PROF_ST_F32] = {"F32", 4},      [PROF_ST_F16] = {"F16", 2},
	[PROF_ST_BF16] = {"BF16", 2},    [PROF_ST_F64] = {"F64", 8},
	[PROF_ST_I64] = {"I64", 8},      [PROF_ST_I32] = {"I32", 4},
	[PROF_ST_I16] = {"I16", 2},      [PROF_ST_I8] = {"I8", 1},
	[PROF_ST_U8] = {"U8", 1},        [PROF_ST_BOOL] = {"BOOL", 1},
	[PROF_ST_F8_E4M3] = {"F8_E4M3", 1}, [PROF_ST_F8_E5M2] = {"F8_E5M2", 1},
	[PROF_ST_U16] = {"U16", 2},      [PROF_ST_U32] = {"U32", 4},
	[PROF_ST_U64] = {"U64", 8},
};

const char *prof_st_dtype_name(enum prof_st_dtype d)
{
	return (unsigned)d < PROF_ST_DTYPE_COUNT ? dtypes[d].name : NULL;
}

size_t prof_st_dtype_size(enum prof_st_dtype d)
{
	return (unsigned)d < PROF_ST_DTYPE_COUNT ? dtypes[d].size : 0;
}

float prof_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
	float f;

	if (exp == 0) {
		/* zero or subnormal: mant * 2^-24, exact in float */
		f = ldexpf((float)mant, -24);
		return sign ? -f : f;
	}
	if (exp == 31)
		bits = sign | 0x7f800000u | (mant << 13);
	else
		bits = sign | ((exp + 112u) << 23) | (mant << 13);
	memcpy(&f, &bits, sizeof f);
	return f;
}

float prof_bf16_to_f32(uint16_t b)
{
	uint32_t bits = (uint32_t)b << 16;
	float f;

	memcpy(&f, &bits, sizeof f);
	return f;
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void file_release(struct st_file *f)
{
	for (size_t i = 0; i < f->n; i++)
		free((char *)f->tensors[i].name);
	free(f->tensors);
	free(f->by_name);
	if (f->map)
		munmap(f->map, f->map_size);
	f->tensors = NULL;
	f->by_name = NULL;
	f->map = NULL;
	f->n = 0;
	f->opened = 0;
}

/* For qsort of indices by tensor name or by begin offset: the tensor table
 * is passed through a file-scope pointer only during the sort, which runs on
 * one thread at a time per reader; qsort_r is not C11. */
static _Thread_local const struct prof_st_tensor *sort_tab;

static int cmp_by_name(const void *a, const void *b)
{
	return strcmp(sort_tab[*(const size_t *)a].name, sort_tab[*(const size_t *)b].name);
}

static int cmp_by_begin(const void *a, const void *b)
{
	const struct prof_st_tensor *x = &sort_tab[*(const size_t *)a];
	const struct prof_st_tensor *y = &sort_tab[*(const size_t *)b];
	if (x->data != y->data)
		return x->data < y->data ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return 0;
}

static int parse_dtype(const char *s, enum prof_st_dtype *out)
{
	for (int d = 0; d < PROF_ST_DTYPE_COUNT; d++)
		if (strcmp(s, dtypes[d].name) == 0) {
			*out = (enum prof_st_dtype)d;
			return 1;
		}
	return 0;
}

/* Reads the non-negative integer j into *out; 0 when j is not one. */
static int json_u64(const json_t *j, uint64_t *out)
{
	json_int_t v;
	if (!json_is_integer(j))
		return 0;
	v = json_integer_value(j);
	if (v < 0)
		return 0;
	*out = (uint64_t)v;
	return 1;
}

/* Parses one tensor entry of the header. */
static enum moe_status parse_entry(const char *what, const char *key, json_t *v,
				   const unsigned char *data, uint64_t data_size,
				   struct prof_st_tensor *t)
{
	json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
	json_t *off = json_object_get(v, "data_offsets");
	uint64_t begin, end, count = 1, esize;

	if (!json_is_object(v))
		MOE_FAIL(MOE_EFORMAT, "%s: header: tensor '%s' is not an object", what, key);
	if (!json_is_string(dt))
		MOE_FAIL(MOE_EFORMAT, "%s: header: tensor '%s' has no dtype string", what, key);
	if (!parse_dtype(json_string_value(dt), &t->dtype))
		MOE_FAIL(MOE_EFORMAT, "%s: header: tensor '%s' has unknown dtype '%s'", what, key,
			 json_string_value(dt));
	if (!json_is_array(shape) || json_array_size(shape) > PROF_ST_MAX_DIMS)
		MOE_FAIL(MOE_EFORMAT, "%s: header: tensor '%s': shape must be an array of at most %d integers",
			 what, key, PROF_ST_MAX_DIMS);
	t->ndim = (int)json_array_size(shape);
	for (int i = 0; i < t->ndim; i++) {
		uint64_t d;
		if (!json_u64(json_array_get(shape, (size_t)i), &d) || d > (uint64_t)INT64_MAX)
			MOE_FAIL(MOE_EFORMAT, "%s: header: tensor '%s': shape[%d] is not a non-negative integer",
				 what, key, i);
		t->shape[i] = (int64_t)d;
		if (d != 0 && count > UINT64_MAX / d)
			MOE_FAIL(MOE_EFORMAT, "%s: header: tensor '%s': shape overflows", what, key);
		count *= d;
	}
	if (!json_is_array(off) || json_array_size(off) != 2 ||
	    !json_u64(json_array_get(off, 0), &begin) || !json_u64(json_array_get(off, 1), &end))
		MOE_FAIL(MOE_EFORMAT, "%s: header: tensor '%s': data_offsets must be [begin, end]", what, key);
	if (begin > end || end > data_size)
		MOE_FAIL(MOE_EFORMAT,
			 "%s: header: tensor '%s': data_offsets [%llu, %llu] outside the %llu data bytes",
			 what, key, (unsigned long long)begin, (unsigned long long)end,
			 (unsigned long long)data_size);
	esize = dtypes[t->dtype].size;
	if (count > UINT64_MAX / esize || count * esize != end - begin)
		MOE_FAIL(MOE_EFORMAT,
			 "%s: header: tensor '%s': %llu bytes at data_offsets, expected %llu elements x %llu bytes",
			 what, key, (unsigned long long)(end - begin), (unsigned long long)count,
			 (unsigned long long)esize);
	t->data = data + begin;
	t->nbytes = end - begin;
	return MOE_OK;
}

/* Parses the header of the image f->image[0..f->size) into f's table. */
static enum moe_status parse_file(struct st_file *f)
{
	const char *what = f->path;
	uint64_t hlen, data_size;
	json_error_t jerr;
	json_t *root = NULL, *v;
	const char *key;
	enum moe_status st = MOE_OK;
	size_t cap, *order = NULL;

	if (f->size < 8)
		MOE_FAIL(MOE_EFORMAT, "%s: %zu bytes, shorter than the 8-byte header length", what, f->size);
	hlen = le64(f->image);
	if (hlen > f->size - 8 || hlen > PROF_ST_MAX_HEADER)
		MOE_FAIL(MOE_EFORMAT, "%s: header length %llu exceeds the file (%zu bytes) or the %llu-byte limit",
			 what, (unsigned long long)hlen, f->size, (unsigned long long)PROF_ST_MAX_HEADER);
	data_size = f->size - 8 - hlen;
	root = json_loadb((const char *)f->image + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		MOE_FAIL(MOE_EFORMAT, "%s: header: JSON error at byte %d: %s", what, jerr.position, jerr.text);
	if (!json_is_object(root)) {
		json_decref(root);
		MOE_FAIL(MOE_EFORMAT, "%s: header: expected a JSON object", what);
	}
	cap = json_object_size(root);
	f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
	f->by_name = calloc(cap ? cap : 1, sizeof *f->by_name);
	order = calloc(cap ? cap : 1, sizeof *order);
	if (!f->tensors || !f->by_name || !order) {
		st = moe_error(MOE_ENOMEM, "%s: out of memory for %zu tensors", what, cap);
		goto out;
	}
	json_object_foreach(root, key, v) {
		struct prof_st_tensor *t = &f->tensors[f->n];
		if (strcmp(key, "__metadata__") == 0)
			continue;
		if ((st = parse_entry(what, key, v, f->image + 8 + hlen, data_size, t)) != MOE_OK)
			goto out;
		if (!(t->name = strdup(key))) {
			st = moe_error(MOE_ENOMEM, "%s: out of memory", what);
			goto out;
		}
		f->by_name[f->n] = f->n;
		order[f->n] = f->n;
		f->n++;
	}
	/* No two tensors may share bytes: sorted by begin, each must start at or
	 * after the previous end (empty tensors take no bytes). */
	sort_tab = f->tensors;
	qsort(order, f->n, sizeof *order, cmp_by_begin);
	for (size_t i = 1; i < f->n; i++) {
		const struct prof_st_tensor *a = &f->tensors[order[i - 1]], *b = &f->tensors[order[i]];
		if (a->nbytes && b->nbytes && b->data < a->data + a->nbytes) {
			st = moe_error(MOE_EFORMAT, "%s: header: tensors '%s' and '%s' overlap", what,
				       a->name, b->name);
			goto out;
		}
	}
	qsort(f->by_name, f->n, sizeof *f->by_name, cmp_by_name);
	f->opened = 1;
out:
	free(order);
	json_decref(root);
	if (st != MOE_OK)
		file_release(f);
	return st;
}

static enum moe_status map_file(struct st_file *f)
{
	struct stat sb;
	int fd = open(f->path, O_RDONLY);
	void *p;

	if (fd < 0)
		MOE_FAIL(errno == ENOENT ? MOE_ENOTFOUND : MOE_EIO, "%s: %s", f->path, strerror(errno));
	if (fstat(fd, &sb) != 0) {
		int e = errno;
		close(fd);
		MOE_FAIL(MOE_EIO, "%s: %s", f->path, strerror(e));
	}
	if (!S_ISREG(sb.st_mode)) {
		close(fd);
		MOE_FAIL(MOE_EIO, "%s: not a regular file", f->path);
	}
	if (sb.st_size < 8) {
		close(fd);
		MOE_FAIL(MOE_EFORMAT, "%s: %lld bytes, shorter than the 8-byte header length", f->path,
			 (long long)sb.st_size);
	}
	p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		MOE_FAIL(MOE_EIO, "%s: mmap: %s", f->path, strerror(errno));
	f->map = p;
	f->map_size = (size_t)sb.st_size;
	f->image = p;
	f->size = (size_t)sb.st_size;
	return parse_file(f);
}

void prof_st_close(struct prof_st *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->nfiles; i++) {
		file_release(&st->files[i]);
		free(st->files[i].path);
	}
	for (size_t i = 0; i < st->nmap; i++)
		free(st->map[i].name);
	free(st->map);
	free(st->files);
	free(st->where);
	free(st);
}

static struct prof_st *st_alloc(const char *where, size_t nfiles)
{
	struct prof_st *st = calloc(1, sizeof *st);
	if (!st)
		return NULL;
	st->files = calloc(nfiles ? nfiles : 1, sizeof *st->files);
	st->where = strdup(where);
	if (!st->files || !st->where) {
		prof_st_close(st);
		return NULL;
	}
	st->nfiles = nfiles;
	return st;
}

enum moe_status prof_st_open_mem(const void *buf, size_t n, const char *what, struct prof_st **out)
{
	struct prof_st *st = st_alloc(what, 1);
	enum moe_status rc;

	*out = NULL;
	if (!st || !(st->files[0].path = strdup(what))) {
		prof_st_close(st);
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", what);
	}
	st->files[0].image = buf;
	st->files[0].size = n;
	if ((rc = parse_file(&st->files[0])) != MOE_OK) {
		prof_st_close(st);
		return rc;
	}
	*out = st;
	return MOE_OK;
}

static int cmp_map(const void *a, const void *b)
{
	return strcmp(((const struct map_entry *)a)->name, ((const struct map_entry *)b)->name);
}

/* Opens a folder's model.safetensors.index.json: the weight_map, its
 * distinct shard names (each a plain file name in the folder). */
static enum moe_status open_index(const char *dir, const char *index_path, struct prof_st **out)
{
	json_error_t jerr;
	json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr), *wm, *v;
	struct prof_st *st = NULL;
	const char *key;
	size_t n, nshards = 0;
	const char **shards = NULL;
	enum moe_status rc = MOE_OK;

	if (!root)
		MOE_FAIL(MOE_EFORMAT, "%s:%d: %s", index_path, jerr.line, jerr.text);
	wm = json_object_get(root, "weight_map");
	if (!json_is_object(wm)) {
		json_decref(root);
		MOE_FAIL(MOE_EFORMAT, "%s: expected an object \"weight_map\"", index_path);
	}
	n = json_object_size(wm);
	shards = calloc(n ? n : 1, sizeof *shards);
	st = st_alloc(dir, n);
	if (!shards || !st || !(st->map = calloc(n ? n : 1, sizeof *st->map))) {
		rc = moe_error(MOE_ENOMEM, "%s: out of memory", index_path);
		goto out;
	}
	json_object_foreach(wm, key, v) {
		const char *shard = json_string_value(v);
		size_t s;
		if (!shard || !*shard || strchr(shard, '/') || strcmp(shard, "..") == 0 ||
		    strcmp(shard, ".") == 0) {
			rc = moe_error(MOE_EFORMAT, "%s: weight_map[\"%s\"]: expected a file name in the folder",
				       index_path, key);
			goto out;
		}
		for (s = 0; s < nshards; s++)
			if (strcmp(shards[s], shard) == 0)
				break;
		if (s == nshards) {
			size_t len = strlen(dir) + strlen(shard) + 2;
			shards[nshards] = shard;
			if (!(st->files[nshards].path = malloc(len))) {
				rc = moe_error(MOE_ENOMEM, "%s: out of memory", index_path);
				goto out;
			}
			snprintf(st->files[nshards].path, len, "%s/%s", dir, shard);
			nshards++;
		}
		if (!(st->map[st->nmap].name = strdup(key))) {
			rc = moe_error(MOE_ENOMEM, "%s: out of memory", index_path);
			goto out;
		}
		st->map[st->nmap++].file = s;
	}
	st->nfiles = nshards;
	qsort(st->map, st->nmap, sizeof *st->map, cmp_map);
out:
	free(shards);
	json_decref(root);
	if (rc != MOE_OK) {
		prof_st_close(st);
		return rc;
	}
	*out = st;
	return MOE_OK;
}

enum moe_status prof_st_open(const char *path, struct prof_st **out)
{
	struct stat sb;
	struct prof_st *st;
	enum moe_status rc;
	char buf[4096];
	const char *file = path;

	*out = NULL;
	if (stat(path, &sb) != 0)
		MOE_FAIL(errno == ENOENT ? MOE_ENOTFOUND : MOE_EIO, "%s: %s", path, strerror(errno));
	if (S_ISDIR(sb.st_mode)) {
		snprintf(buf, sizeof buf, "%s/model.safetensors.index.json", path);
		if (access(buf, F_OK) == 0)
			return open_index(path, buf, out);
		snprintf(buf, sizeof buf, "%s/model.safetensors", path);
		if (access(buf, F_OK) != 0)
			MOE_FAIL(MOE_ENOTFOUND,
				 "%s: no model.safetensors.index.json or model.safetensors in the folder", path);
		file = buf;
	}
	if (!(st = st_alloc(path, 1)) || !(st->files[0].path = strdup(file))) {
		prof_st_close(st);
		MOE_FAIL(MOE_ENOMEM, "%s: out of memory", path);
	}
	if ((rc = map_file(&st->files[0])) != MOE_OK) {
		prof_st_close(st);
		return rc;
	}
	*out = st;
	return MOE_OK;
}

static size_t common_prefix(const char *a, const char *b)
{
	size_t i = 0;
	while (a[i] && a[i] == b[i])
		i++;
	return i;
}

/* The not-found message: which name, where, how many names there are, and
 * up to five with the longest common prefix (they tell the user whether the
 * layer, the expert count or the naming scheme is what differs). */
static enum moe_status not_found(const struct prof_st *st, const char *name)
{
	char list[700];
	size_t total = st->map ? st->nmap : 0, best = 0, shown = 0, len = 0;

	if (!st->map)
		for (size_t f = 0; f < st->nfiles; f++)
			total += st->files[f].n;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t f = 0; f < (st->map ? 1 : st->nfiles); f++) {
			size_t n = st->map ? st->nmap : st->files[f].n;
			for (size_t i = 0; i < n; i++) {
				const char *cand = st->map ? st->map[i].name
					: st->files[f].tensors[st->files[f].by_name[i]].name;
				size_t c = common_prefix(cand, name);
				if (pass == 0) {
					if (c > best)
						best = c;
				} else if (c == best && shown < 5) {
					int w = snprintf(list + len, sizeof list - len, "%s%s",
							 shown ? ", " : "", cand);
					if (w < 0 || (size_t)w >= sizeof list - len)
						goto done;
					len += (size_t)w;
					shown++;
				}
			}
		}
	}
done:
	list[len < sizeof list ? len : sizeof list - 1] = '\0';
	MOE_FAIL(MOE_ENOTFOUND, "%s: no tensor '%s' (%zu tensors; nearest: %s)", st->where, name,
		 total, shown ? list : "none");
}

static const struct prof_st_tensor *file_find(const struct st_file *f, const char *name)
{
	size_t lo = 0, hi = f->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(f->tensors[f->by_name[mid]].name, name);
		if (c == 0)
			return &f->tensors[f->by_name[mid]];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static const struct map_entry *map_find(const struct prof_st *st, const char *name)
{
	struct map_entry key = {(char *)name, 0};
	return st->map ? bsearch(&key, st->map, st->nmap, sizeof key, cmp_map) : NULL;
}

int prof_st_has(const struct prof_st *st, const char *name)
{
	if (st->map)
		return map_find(st, name) != NULL;
	return file_find(&st->files[0], name) != NULL;
}

enum moe_status prof_st_find(struct prof_st *st, const char *name, const struct prof_st_tensor **out)
{
	const struct prof_st_tensor *t;
	struct st_file *f = &st->files[0];
	enum moe_status rc;

	*out = NULL;
	if (st->map) {
		const struct map_entry *e = map_find(st, name);
		if (!e)
			return not_found(st, name);
		f = &st->files[e->file];
		if (!f->opened && (rc = map_file(f)) != MOE_OK)
			return rc;
		if (!(t = file_find(f, name)))
			MOE_FAIL(MOE_EFORMAT, "%s: no tensor '%s', which the index places in this shard",
				 f->path, name);
	} else if (!(t = file_find(f, name))) {
		return not_found(st, name);
	}
	*out = t;
	return MOE_OK;
}

enum moe_status prof_st_load_f32(struct prof_st *st, const char *name, int ndim,
				 const int64_t *shape, float *dst)
{
	const struct prof_st_tensor *t;
	enum moe_status rc;
	uint64_t count = 1;
	int same;

	if ((rc = prof_st_find(st, name, &t)) != MOE_OK)
		return rc;
	same = t->ndim == ndim;
	for (int i = 0; same && i < ndim; i++)
		same = t->shape[i] == shape[i];
	if (!same) {
		char got[160], want[160];
		size_t a = 0, b = 0;
		got[0] = want[0] = '\0';
		for (int i = 0; i < t->ndim && a < sizeof got - 24; i++)
			a += (size_t)snprintf(got + a, sizeof got - a, "%s%lld", i ? ", " : "",
					      (long long)t->shape[i]);
		for (int i = 0; i < ndim && b < sizeof want - 24; i++)
			b += (size_t)snprintf(want + b, sizeof want - b, "%s%lld", i ? ", " : "",
					      (long long)shape[i]);
		MOE_FAIL(MOE_EFORMAT, "%s: tensor '%s' has shape [%s], the model expects [%s]",
			 st->where, name, got, want);
	}
	for (int i = 0; i < ndim; i++)
		count *= (uint64_t)shape[i];
	switch (t->dtype) {
	case PROF_ST_F32:
		/* The data need not be 4-byte aligned: copy, never cast.  (Assumes a
		 * little-endian host, as the file is; F16/BF16 decode bytes.) */
		memcpy(dst, t->data, count * 4);
		break;
	case PROF_ST_F16:
		for (uint64_t i = 0; i < count; i++)
			dst[i] = prof_f16_to_f32((uint16_t)(t->data[2 * i] | (t->data[2 * i + 1] << 8)));
		break;
	case PROF_ST_BF16:
		for (uint64_t i = 0; i < count; i++)
			dst[i] = prof_bf16_to_f32((uint16_t)(t->data[2 * i] | (t->data[2 * i + 1] << 8)));
		break;
	default:
		MOE_FAIL(MOE_EUNSUPPORTED, "%s: tensor '%s' has dtype %s; moekit loads F32, F16 and BF16",
			 st->where, name, dtypes[t->dtype].name);
	}
	return MOE_OK;
}

size_t prof_st_count(const struct prof_st *st)
{
	size_t n = 0;
	for (size_t f = 0; f < st->nfiles; f++)
		n += st->files[f].n;
	return n;
}

const struct prof_st_tensor *prof_st_at(const struct prof_st *st, size_t i)
{
	for (size_t f = 0; f < st->nfiles; f++) {
		if (i < st->files[f].n)
			return &st->files[f].tensors[i];
		i -= st->files[f].n;
	}
	return NULL;
}
