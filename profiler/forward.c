/* profiler/forward.c: the MoE forward pass (see forward.h).
 *
 * Layout of the packed operands (MR = 6 rows, NR = 16 columns, KC = 256):
 *
 *   weights B, per expert, K x N (K the reduction dimension: H for gate_up,
 *   F for down): for each K block kb (KC deep, the last one shorter), for each
 *   panel p of NR output columns, the kcb x NR block row-major.  Offset of
 *   (kb, p) = kb*KC*NP*NR + p*kcb*NR, so a panel is contiguous and the kernel
 *   streams it straight from memory, with no repacking per call (the cost a
 *   per-expert cblas_sgemm pays every time).  Gate_up panels hold 8 gate
 *   features then the same 8 up features.
 *
 *   activations A, per expert, rows padded to MR: for each K block kb, for
 *   each 6-row block ib, the kcb x MR block (k-major: the 6 values of one k
 *   are adjacent, what the kernel broadcasts).  Padding rows are zero, so
 *   their outputs are zero and never read.
 *
 * A tile is (expert, up to MC rows, up to NCP panels); its kernel loop is
 * kb outer, panel, row block inner: one B panel (16 KB) is used from L1 by
 * every row block, the A block (MC x KC, 192 KB) stays in L2 across panels,
 * and the C tile (MC x 128) sits in a per-thread scratch until its epilogue.
 */
#include "config.h"
#include "profiler/forward.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PROF_X86 1
#endif

#ifdef PROF_HAVE_OPENBLAS
void openblas_set_num_threads(int);
#endif

#define MR 6
#define NR 16
#define KC 256
#define MC 192   /* rows per tile: 32 row blocks */
#define NCP 8    /* panels per tile: 128 columns */

static const char *const stage_names[PROF_STAGE_COUNT] = {
	"router", "routing", "permute", "gate_up", "activation", "down", "combine", "total"};

const char *prof_stage_name(enum prof_stage s)
{
	return (unsigned)s < PROF_STAGE_COUNT ? stage_names[s] : NULL;
}

typedef void (*kern_fn)(int kc, const float *A, const float *B, float *C, size_t ldc, int acc);

/* One virtual expert: the routed ones, then the shared experts as one more
 * whose rows are all the tokens. */
struct vexp {
	int ffn;             /* F of this expert */
	int np1;             /* gate_up panels: ceil(F / 8) */
	float *w13;          /* packed gate_up, K = H */
	float *w2;           /* packed down, K = F, N = H */
	/* per run */
	size_t n;            /* rows */
	size_t nb;           /* row blocks: ceil(n / MR) */
	size_t row0;         /* first row in Y and row_tok */
	size_t a1, a2;       /* float offsets of its A1 and A2 regions */
};

struct tile {
	int x;               /* virtual expert */
	int ib0, ib1;        /* row blocks */
	int p0, p1;          /* panels */
};

struct pool;

struct prof_forward {
	struct prof_layer_cfg cfg;
	struct moe_route_policy pol;
	struct moe_route_workspace *rws;
	int threads;
	size_t max_n;
	int nx;              /* virtual experts: E + (shared ? 1 : 0) */
	struct vexp *vx;
	int np2;             /* down panels: ceil(H / NR) */
	float *router;       /* [E x H] */
	float *bias;         /* [E] or NULL */
	float *s_router;     /* [H] or NULL */
	/* per-run buffers */
	float *logits;       /* [max_n x E] */
	int32_t *ids;        /* [max_n x k] */
	float *gates;        /* [max_n x k] */
	uint64_t *load;      /* [E] */
	uint64_t n_dropped;
	size_t *slot_row;    /* [max_n x k] row in Y of each slot, SIZE_MAX when unused */
	uint32_t *row_tok;   /* [rows_cap] token of each row */
	size_t *cursor;      /* [nx] */
	float *a1, *a2, *yrows;
	size_t rows_cap;
	size_t n_rows;       /* rows of the current run */
	struct tile *tiles;
	size_t tiles_cap, ntiles1, ntiles2;
	float **scratch;     /* [threads] MC x NCP*NR */
	double *act_s;       /* [threads] epilogue seconds this phase */
	kern_fn kern;
	int avx2;
	const char *kname;
	double bytes;
	/* the current run, read by pool workers */
	const float *x;
	float *y;
	size_t n;
	atomic_size_t next;
	double flops[PROF_STAGE_COUNT];
	struct pool *pool;
	const struct prof_weights *src; /* during prof_forward_new only */
};

/* ------------------------------------------------------------ thread pool */

typedef void (*pool_fn)(struct prof_forward *f, int tid);

struct pool {
	int n;
	pthread_t *th;
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	unsigned long gen;
	int running;
	int stop;
	pool_fn fn;
	struct prof_forward *f;
	int started;
};

struct worker_arg {
	struct pool *p;
	int tid;
};

static void *worker(void *arg)
{
	struct pool *p = ((struct worker_arg *)arg)->p;
	int tid = ((struct worker_arg *)arg)->tid;
	unsigned long seen = 0;

	free(arg);
	for (;;) {
		pool_fn fn;
		pthread_mutex_lock(&p->mu);
		while (p->gen == seen && !p->stop)
			pthread_cond_wait(&p->go, &p->mu);
		if (p->stop) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		seen = p->gen;
		fn = p->fn;
		pthread_mutex_unlock(&p->mu);
		fn(p->f, tid);
		pthread_mutex_lock(&p->mu);
		if (--p->running == 0)
			pthread_cond_signal(&p->done);
		pthread_mutex_unlock(&p->mu);
	}
}

/* Runs fn on every thread (the caller as tid 0) and waits for all. */
static void pool_run(struct pool *p, pool_fn fn)
{
	if (p->n > 1) {
		pthread_mutex_lock(&p->mu);
		p->fn = fn;
		p->running = p->n - 1;
		p->gen++;
		pthread_cond_broadcast(&p->go);
		pthread_mutex_unlock(&p->mu);
	}
	fn(p->f, 0);
	if (p->n > 1) {
		pthread_mutex_lock(&p->mu);
		while (p->running > 0)
			pthread_cond_wait(&p->done, &p->mu);
		pthread_mutex_unlock(&p->mu);
	}
}

static void pool_free(struct pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->started; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
	free(p->th);
	free(p);
}

static enum moe_status pool_new(int n, struct prof_forward *f, struct pool **out)
{
	struct pool *p = calloc(1, sizeof *p);

	*out = NULL;
	if (!p || !(p->th = calloc((size_t)n, sizeof *p->th))) {
		free(p);
		MOE_FAIL(MOE_ENOMEM, "out of memory for %d threads", n);
	}
	p->n = n;
	p->f = f;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	for (int i = 1; i < n; i++) {
		struct worker_arg *a = malloc(sizeof *a);
		if (a) {
			a->p = p;
			a->tid = i;
		}
		if (!a || pthread_create(&p->th[p->started], NULL, worker, a) != 0) {
			free(a);
			pool_free(p);
			MOE_FAIL(MOE_ERUNTIME, "--threads %d: cannot start thread %d", n, i);
		}
		p->started++;
	}
	*out = p;
	return MOE_OK;
}

/* ------------------------------------------------------------ kernels */

/* C[MR x NR] (+)= A[kc x MR]^T-panel . B[kc x NR]-panel; portable C. */
static void kern_c(int kc, const float *restrict A, const float *restrict B, float *restrict C,
		   size_t ldc, int acc)
{
	float c[MR][NR];
	memset(c, 0, sizeof c);
	for (int k = 0; k < kc; k++, A += MR, B += NR)
		for (int i = 0; i < MR; i++)
			for (int j = 0; j < NR; j++)
				c[i][j] += A[i] * B[j];
	for (int i = 0; i < MR; i++)
		for (int j = 0; j < NR; j++)
			C[i * ldc + j] = acc ? C[i * ldc + j] + c[i][j] : c[i][j];
}

static float silu_mul(float g, float u)
{
	return g / (1.0f + expf(-g)) * u;
}

/* out[0..7] = silu(c[0..7]) * c[8..15]. */
static void act_c(const float *c, float *out)
{
	for (int j = 0; j < 8; j++)
		out[j] = silu_mul(c[j], c[8 + j]);
}

#ifdef PROF_X86
/* 12 accumulators (6 rows x 2 vectors), 2 B loads and 6 broadcasts per k:
 * the register budget of AVX2's 16 ymm registers. */
__attribute__((target("avx2,fma")))
static void kern_avx2(int kc, const float *restrict A, const float *restrict B, float *restrict C,
		      size_t ldc, int acc)
{
	__m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
	__m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
	__m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
	__m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
	__m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
	__m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();

	for (int k = 0; k < kc; k++) {
		__m256 b0 = _mm256_load_ps(B), b1 = _mm256_load_ps(B + 8), a;
		/* 4 KiB ahead: the first row block streams the panel from memory,
		 * and panels of one K block are adjacent, so this runs on into the
		 * next panel. */
		_mm_prefetch((const char *)(B + 64 * NR), _MM_HINT_T0);
		a = _mm256_broadcast_ss(A + 0);
		c00 = _mm256_fmadd_ps(a, b0, c00);
		c01 = _mm256_fmadd_ps(a, b1, c01);
		a = _mm256_broadcast_ss(A + 1);
		c10 = _mm256_fmadd_ps(a, b0, c10);
		c11 = _mm256_fmadd_ps(a, b1, c11);
		a = _mm256_broadcast_ss(A + 2);
		c20 = _mm256_fmadd_ps(a, b0, c20);
		c21 = _mm256_fmadd_ps(a, b1, c21);
		a = _mm256_broadcast_ss(A + 3);
		c30 = _mm256_fmadd_ps(a, b0, c30);
		c31 = _mm256_fmadd_ps(a, b1, c31);
		a = _mm256_broadcast_ss(A + 4);
		c40 = _mm256_fmadd_ps(a, b0, c40);
		c41 = _mm256_fmadd_ps(a, b1, c41);
		a = _mm256_broadcast_ss(A + 5);
		c50 = _mm256_fmadd_ps(a, b0, c50);
		c51 = _mm256_fmadd_ps(a, b1, c51);
		A += MR;
		B += NR;
	}
#define ST(row, v0, v1)                                                                   \
	do {                                                                              \
		float *cp = C + (row) * ldc;                                              \
		if (acc) {                                                                \
			v0 = _mm256_add_ps(_mm256_load_ps(cp), v0);                       \
			v1 = _mm256_add_ps(_mm256_load_ps(cp + 8), v1);                   \
		}                                                                         \
		_mm256_store_ps(cp, v0);                                                  \
		_mm256_store_ps(cp + 8, v1);                                              \
	} while (0)
	ST(0, c00, c01);
	ST(1, c10, c11);
	ST(2, c20, c21);
	ST(3, c30, c31);
	ST(4, c40, c41);
	ST(5, c50, c51);
#undef ST
}

/* exp(x) for x in [-88, 88] by 2^(x log2 e): the integer part into the
 * exponent, the fraction by a degree-6 polynomial (relative error < 2e-7,
 * the Cephes expf coefficients). */
__attribute__((target("avx2,fma")))
static __m256 exp256(__m256 x)
{
	const __m256 lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.3f);
	__m256 fx, z, y;
	__m256i n;

	x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
	fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
			     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
	z = _mm256_mul_ps(x, x);
	y = _mm256_set1_ps(1.9875691500e-4f);
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
	y = _mm256_fmadd_ps(y, z, x);
	y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
	n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(y, _mm256_castsi256_ps(n));
}

__attribute__((target("avx2,fma")))
static void act_avx2(const float *c, float *out)
{
	__m256 g = _mm256_load_ps(c), u = _mm256_load_ps(c + 8);
	__m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
	__m256 s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
	_mm256_storeu_ps(out, _mm256_mul_ps(s, u));
}
#endif

/* ------------------------------------------------------------ helpers */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 64-byte aligned (a cache line, an AVX-512 vector).  Buffers of 2 MiB or
 * more are 2 MiB aligned and advised as transparent huge pages: a forward
 * streams every expert's packed weights (1.6 GB for the OLMoE-like shape),
 * and with 4 KiB pages that is a TLB miss and a stalled hardware prefetch
 * every 4 KiB. */
static void *alloc64(size_t bytes, double *total)
{
	const size_t huge = (size_t)2 << 20;
	size_t align = bytes >= huge ? huge : 64;
	size_t n = (bytes + align - 1) / align * align;
	void *p = aligned_alloc(align, n ? n : 64);
#ifdef MADV_HUGEPAGE
	if (p && align == huge)
		madvise(p, n, MADV_HUGEPAGE); /* advice only: failure is harmless */
#endif
	*total += (double)n;
	return p;
}

static size_t cdiv(size_t a, size_t b)
{
	return (a + b - 1) / b;
}

/* Packs W (rows = output features N, cols = K, row-major as torch stores
 * it) into panels: dst (kb, p) holds, for k in the block, columns
 * p*NR .. p*NR+15 given by col_of(j) (the output feature of panel column j,
 * or -1 for zero padding). */
static void pack_down(float *dst, const float *w, int nout, int K)
{
	size_t np = cdiv((size_t)nout, NR);
	for (int kb = 0; kb * KC < K; kb++) {
		int kcb = K - kb * KC < KC ? K - kb * KC : KC;
		float *blk = dst + (size_t)kb * KC * np * NR;
		for (size_t p = 0; p < np; p++)
			for (int k = 0; k < kcb; k++)
				for (int j = 0; j < NR; j++) {
					size_t o = p * NR + (size_t)j;
					blk[(p * (size_t)kcb + (size_t)k) * NR + (size_t)j] =
						o < (size_t)nout ? w[o * (size_t)K + (size_t)kb * KC + (size_t)k] : 0.0f;
				}
	}
}

/* Gate and up [F x H] into gate_up panels: panel p columns 0..7 are gate
 * features 8p..8p+7, columns 8..15 the same up features. */
static void pack_gate_up(float *dst, const float *g, const float *u, int F, int H)
{
	size_t np = cdiv((size_t)F, 8);
	for (int kb = 0; kb * KC < H; kb++) {
		int kcb = H - kb * KC < KC ? H - kb * KC : KC;
		float *blk = dst + (size_t)kb * KC * np * NR;
		for (size_t p = 0; p < np; p++)
			for (int k = 0; k < kcb; k++)
				for (int j = 0; j < NR; j++) {
					size_t f = p * 8 + (size_t)(j & 7);
					const float *src = j < 8 ? g : u;
					blk[(p * (size_t)kcb + (size_t)k) * NR + (size_t)j] =
						f < (size_t)F ? src[f * (size_t)H + (size_t)kb * KC + (size_t)k] : 0.0f;
				}
	}
}

/* ------------------------------------------------------------ stages */

/* Router: each thread multiplies its contiguous share of the rows with a
 * single-threaded sgemm; the split depends only on the thread count. */
static void stage_router(struct prof_forward *f, int tid)
{
	size_t n = f->n, per = cdiv(n, (size_t)f->threads), r0 = per * (size_t)tid;
	size_t r1 = r0 + per < n ? r0 + per : n;
	int H = f->cfg.hidden, E = f->cfg.experts;

	if (r0 >= r1)
		return;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), E, H, 1.0f,
		    f->x + r0 * (size_t)H, H, f->router, H, 0.0f, f->logits + r0 * (size_t)E, E);
}

/* Gather: row blocks of every virtual expert into A1, dynamically shared. */
static void stage_gather(struct prof_forward *f, int tid)
{
	int H = f->cfg.hidden;
	(void)tid;
	for (;;) {
		size_t job = atomic_fetch_add(&f->next, 1), acc = 0;
		struct vexp *v = NULL;
		int x;
		for (x = 0; x < f->nx; x++) {
			if (job < acc + f->vx[x].nb) {
				v = &f->vx[x];
				break;
			}
			acc += f->vx[x].nb;
		}
		if (!v)
			return;
		size_t ib = job - acc;
		const float *src[MR];
		for (int i = 0; i < MR; i++) {
			size_t r = ib * MR + (size_t)i;
			src[i] = r < v->n ? f->x + (size_t)f->row_tok[v->row0 + r] * (size_t)H : NULL;
		}
		for (int kb = 0; kb * KC < H; kb++) {
			int kcb = H - kb * KC < KC ? H - kb * KC : KC;
			float *dst = f->a1 + v->a1 + (size_t)kb * KC * v->nb * MR + ib * (size_t)kcb * MR;
			for (int k = 0; k < kcb; k++)
				for (int i = 0; i < MR; i++)
					dst[k * MR + i] = src[i] ? src[i][kb * KC + k] : 0.0f;
		}
	}
}

/* Runs one GEMM tile: C scratch = A rows [ib0, ib1) x B panels [p0, p1). */
static void tile_gemm(struct prof_forward *f, const struct tile *t, const float *A, const float *B,
		      int K, size_t np, float *C)
{
	size_t nb = f->vx[t->x].nb, ldc = NCP * NR;
	for (int kb = 0; kb * KC < K; kb++) {
		int kcb = K - kb * KC < KC ? K - kb * KC : KC;
		const float *Akb = A + (size_t)kb * KC * nb * MR;
		const float *Bkb = B + (size_t)kb * KC * np * NR;
		for (int p = t->p0; p < t->p1; p++) {
			const float *Bp = Bkb + (size_t)p * kcb * NR;
			for (int ib = t->ib0; ib < t->ib1; ib++)
				f->kern(kcb, Akb + (size_t)ib * kcb * MR, Bp,
					C + (size_t)(ib - t->ib0) * MR * ldc + (size_t)(p - t->p0) * NR, ldc,
					kb > 0);
		}
	}
}

/* SiLU(gate) * up of a gate_up tile into the down GEMM's packed A panels.
 * Per (row block, panel) the 6 rows x 8 features land in 48 contiguous
 * floats (k-major, 6 rows per k), so they are computed into a small block
 * and copied out in that order: contiguous stores instead of a stride-6
 * scatter.  Padding rows (zero input) give zero.  Defined twice, once with
 * the AVX2 activation inlined (same target, so the compiler may inline). */
#define DEFINE_EPILOGUE(NAME, ACT, ATTR)                                                         \
	ATTR static void NAME(const float *C, size_t ldc, const struct tile *t, int F, size_t nb, \
			      float *a2)                                                          \
	{                                                                                         \
		for (int ib = t->ib0; ib < t->ib1; ib++)                                          \
			for (int p = t->p0; p < t->p1; p++) {                                     \
				float h[MR][8];                                                   \
				int f0 = p * 8, kb = f0 / KC, k0 = f0 % KC;                       \
				int nf = F - f0 < 8 ? F - f0 : 8;                                 \
				int kcb = F - kb * KC < KC ? F - kb * KC : KC;                    \
				float *dst = a2 + (size_t)kb * KC * nb * MR +                     \
					     (size_t)ib * kcb * MR + (size_t)k0 * MR;             \
				const float *cb = C + (size_t)(ib - t->ib0) * MR * ldc +          \
						  (size_t)(p - t->p0) * NR;                       \
				for (int i = 0; i < MR; i++)                                      \
					ACT(cb + (size_t)i * ldc, h[i]);                          \
				for (int j = 0; j < nf; j++)                                      \
					for (int i = 0; i < MR; i++)                              \
						dst[j * MR + i] = h[i][j];                        \
			}                                                                         \
	}

DEFINE_EPILOGUE(epilogue_c, act_c, )
#ifdef PROF_X86
DEFINE_EPILOGUE(epilogue_avx2, act_avx2, __attribute__((target("avx2,fma"))))
#endif

static void stage_gate_up(struct prof_forward *f, int tid)
{
	float *C = f->scratch[tid];
	size_t ldc = NCP * NR;
	int H = f->cfg.hidden;
	double act_s = 0;

	for (;;) {
		size_t job = atomic_fetch_add(&f->next, 1);
		if (job >= f->ntiles1)
			break;
		const struct tile *t = &f->tiles[job];
		struct vexp *v = &f->vx[t->x];
		tile_gemm(f, t, f->a1 + v->a1, v->w13, H, (size_t)v->np1, C);
		/* Epilogue: SiLU(gate) * up into A2's packed panels (K = F). */
		double t0 = now_s();
#ifdef PROF_X86
		if (f->avx2)
			epilogue_avx2(C, ldc, t, v->ffn, v->nb, f->a2 + v->a2);
		else
#endif
			epilogue_c(C, ldc, t, v->ffn, v->nb, f->a2 + v->a2);
		act_s += now_s() - t0;
	}
	f->act_s[tid] = act_s;
}

static void stage_down(struct prof_forward *f, int tid)
{
	float *C = f->scratch[tid];
	size_t ldc = NCP * NR;
	int H = f->cfg.hidden;

	for (;;) {
		size_t job = atomic_fetch_add(&f->next, 1);
		if (job >= f->ntiles2)
			break;
		const struct tile *t = &f->tiles[f->ntiles1 + job];
		struct vexp *v = &f->vx[t->x];
		tile_gemm(f, t, f->a2 + v->a2, v->w2, v->ffn, (size_t)f->np2, C);
		for (int ib = t->ib0; ib < t->ib1; ib++)
			for (int i = 0; i < MR; i++) {
				size_t r = (size_t)ib * MR + (size_t)i;
				if (r >= v->n)
					break;
				const float *crow = C + ((size_t)(ib - t->ib0) * MR + (size_t)i) * ldc;
				float *yr = f->yrows + (v->row0 + r) * (size_t)H;
				int c0 = t->p0 * NR, c1 = t->p1 * NR < H ? t->p1 * NR : H;
				memcpy(yr + c0, crow, (size_t)(c1 - c0) * sizeof(float));
			}
	}
}

/* Combine: each thread its share of tokens; slots summed in slot order, the
 * shared output last. */
static void stage_combine(struct prof_forward *f, int tid)
{
	size_t n = f->n, per = cdiv(n, (size_t)f->threads), t0 = per * (size_t)tid;
	size_t t1 = t0 + per < n ? t0 + per : n;
	int H = f->cfg.hidden, k = f->cfg.top_k;

	for (size_t t = t0; t < t1; t++) {
		float *out = f->y + t * (size_t)H;
		memset(out, 0, (size_t)H * sizeof(float));
		for (int j = 0; j < k; j++) {
			size_t r = f->slot_row[t * (size_t)k + (size_t)j];
			float g = f->gates[t * (size_t)k + (size_t)j];
			if (r == SIZE_MAX)
				continue;
			const float *yr = f->yrows + r * (size_t)H;
			for (int c = 0; c < H; c++)
				out[c] += g * yr[c];
		}
		if (f->nx > f->cfg.experts) {
			const struct vexp *v = &f->vx[f->cfg.experts];
			const float *yr = f->yrows + (v->row0 + t) * (size_t)H;
			float s = 1.0f;
			if (f->s_router) {
				const float *xt = f->x + t * (size_t)H;
				double d = 0;
				for (int c = 0; c < H; c++)
					d += (double)xt[c] * f->s_router[c];
				s = (float)(1.0 / (1.0 + exp(-d)));
			}
			for (int c = 0; c < H; c++)
				out[c] += s * yr[c];
		}
	}
}

/* ------------------------------------------------------------ public */

void prof_forward_free(struct prof_forward *f)
{
	if (!f)
		return;
	pool_free(f->pool);
	if (f->vx)
		for (int x = 0; x < f->nx; x++) {
			free(f->vx[x].w13);
			free(f->vx[x].w2);
		}
	if (f->scratch)
		for (int i = 0; i < f->threads; i++)
			free(f->scratch[i]);
	free(f->scratch);
	free(f->act_s);
	free(f->vx);
	free(f->router);
	free(f->bias);
	free(f->s_router);
	free(f->logits);
	free(f->ids);
	free(f->gates);
	free(f->load);
	free(f->slot_row);
	free(f->row_tok);
	free(f->cursor);
	free(f->a1);
	free(f->a2);
	free(f->yrows);
	free(f->tiles);
	moe_route_workspace_free(f->rws);
	free(f);
}

/* Packing at construction: job x packs virtual expert x. */
static void stage_pack(struct prof_forward *f, int tid)
{
	int H = f->cfg.hidden, E = f->cfg.experts;
	const struct prof_weights *pack_src = f->src;
	(void)tid;
	for (;;) {
		size_t x = atomic_fetch_add(&f->next, 1);
		if (x >= (size_t)f->nx)
			return;
		struct vexp *v = &f->vx[x];
		if ((int)x < E) {
			pack_gate_up(v->w13, pack_src->gate[x], pack_src->up[x], v->ffn, H);
			pack_down(v->w2, pack_src->down[x], H, v->ffn);
		} else {
			pack_gate_up(v->w13, pack_src->s_gate, pack_src->s_up, v->ffn, H);
			pack_down(v->w2, pack_src->s_down, H, v->ffn);
		}
	}
}

enum moe_status prof_forward_new(const struct prof_weights *w, int threads, size_t max_tokens,
				 struct prof_forward **out)
{
	const struct prof_layer_cfg *c = &w->cfg;
	struct prof_forward *f;
	enum moe_status st;
	size_t H = (size_t)c->hidden, E = (size_t)c->experts, k = (size_t)c->top_k, n = max_tokens;
	size_t a1 = 0, a2 = 0, chunks = 0;
	double b = 0;

	*out = NULL;
	if ((st = prof_layer_cfg_check(c)) != MOE_OK)
		return st;
	if (threads < 1 || threads > 1024)
		MOE_FAIL(MOE_EINVAL, "--threads %d: expected 1..1024", threads);
	if (max_tokens < 1 || max_tokens > ((size_t)1 << 26))
		MOE_FAIL(MOE_EINVAL, "--tokens %zu: expected 1..67108864", max_tokens);
	if (!(f = calloc(1, sizeof *f)))
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	f->cfg = *c;
	f->threads = threads;
	f->max_n = n;
	f->nx = c->experts + (c->shared_ffn > 0 ? 1 : 0);
	f->np2 = (int)cdiv(H, NR);
	f->kern = kern_c;
	f->kname = "portable 6x16";
#ifdef PROF_X86
	__builtin_cpu_init();
	/* MOEKIT_KERNEL=portable forces the C kernel (tests hold it against the
	 * reference on machines that have AVX2). */
	if (!(getenv("MOEKIT_KERNEL") && strcmp(getenv("MOEKIT_KERNEL"), "portable") == 0) &&
	    __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
		f->kern = kern_avx2;
		f->avx2 = 1;
		f->kname = "avx2-fma 6x16";
	}
#endif
	prof_layer_cfg_policy(c, NULL, &f->pol);
	if (w->bias) {
		if (!(f->bias = malloc(E * sizeof(float))))
			goto nomem;
		memcpy(f->bias, w->bias, E * sizeof(float));
		f->pol.bias = f->bias;
	}
	if ((st = moe_route_workspace_alloc(&f->pol, n, &f->rws)) != MOE_OK) {
		prof_forward_free(f);
		return st;
	}
	f->vx = calloc((size_t)f->nx, sizeof *f->vx);
	f->router = alloc64(E * H * sizeof(float), &b);
	if (!f->vx || !f->router)
		goto nomem;
	memcpy(f->router, w->router, E * H * sizeof(float));
	if (w->s_router && c->shared_ffn > 0) {
		if (!(f->s_router = malloc(H * sizeof(float))))
			goto nomem;
		memcpy(f->s_router, w->s_router, H * sizeof(float));
	}
	for (int x = 0; x < f->nx; x++) {
		struct vexp *v = &f->vx[x];
		v->ffn = x < c->experts ? c->ffn : c->shared_ffn;
		v->np1 = (int)cdiv((size_t)v->ffn, 8);
		v->w13 = alloc64((size_t)v->np1 * NR * H * sizeof(float), &b);
		v->w2 = alloc64((size_t)f->np2 * NR * (size_t)v->ffn * sizeof(float), &b);
		if (!v->w13 || !v->w2)
			goto nomem;
		size_t ch = cdiv((size_t)v->np1, NCP) + cdiv((size_t)f->np2, NCP);
		if (ch > chunks)
			chunks = ch;
	}
	/* Rows: n*k routed + n shared, each expert padded to MR. */
	f->rows_cap = n * k + (c->shared_ffn > 0 ? n : 0);
	a1 = (f->rows_cap + (size_t)f->nx * MR) * H;
	a2 = (n * k + E * MR) * (size_t)c->ffn + (c->shared_ffn > 0 ? (n + MR) * (size_t)c->shared_ffn : 0);
	f->logits = alloc64(n * E * sizeof(float), &b);
	f->ids = alloc64(n * k * sizeof(int32_t), &b);
	f->gates = alloc64(n * k * sizeof(float), &b);
	f->load = alloc64(E * sizeof(uint64_t), &b);
	f->slot_row = alloc64(n * k * sizeof(size_t), &b);
	f->row_tok = alloc64(f->rows_cap * sizeof(uint32_t), &b);
	f->cursor = alloc64((size_t)f->nx * sizeof(size_t), &b);
	f->a1 = alloc64(a1 * sizeof(float), &b);
	f->a2 = alloc64(a2 * sizeof(float), &b);
	f->yrows = alloc64(f->rows_cap * H * sizeof(float), &b);
	/* Tiles: expert x has ceil(nb_x / 32) row chunks <= nb_x / 32 + 1, and
	 * sum nb_x <= (rows + nx (MR - 1)) / MR; times the panel chunks of both
	 * GEMMs.  Sized once so that runs never allocate. */
	f->tiles_cap = ((f->rows_cap + (size_t)f->nx * MR) / MR / (MC / MR) + (size_t)f->nx + 1) * chunks;
	f->tiles = malloc(f->tiles_cap * sizeof *f->tiles);
	f->scratch = calloc((size_t)threads, sizeof *f->scratch);
	f->act_s = calloc((size_t)threads, sizeof *f->act_s);
	if (!f->logits || !f->ids || !f->gates || !f->load || !f->slot_row || !f->row_tok ||
	    !f->cursor || !f->a1 || !f->a2 || !f->yrows || !f->tiles || !f->scratch || !f->act_s)
		goto nomem;
	for (int i = 0; i < threads; i++)
		if (!(f->scratch[i] = alloc64((size_t)MC * NCP * NR * sizeof(float), &b)))
			goto nomem;
	f->bytes = b;
#ifdef PROF_HAVE_OPENBLAS
	/* Our pool owns the threads; OpenBLAS runs inside them, single-threaded. */
	openblas_set_num_threads(1);
#endif
	if ((st = pool_new(threads, f, &f->pool)) != MOE_OK) {
		prof_forward_free(f);
		return st;
	}
	f->src = w;
	atomic_store(&f->next, 0);
	pool_run(f->pool, stage_pack);
	f->src = NULL;
	*out = f;
	return MOE_OK;
nomem:
	prof_forward_free(f);
	MOE_FAIL(MOE_ENOMEM, "out of memory for the forward pass's %.3g GiB of packed weights and buffers",
		 (b + prof_layer_cfg_weight_bytes(c)) / 1073741824.0);
}

/* Adds the tiles of virtual expert x for one GEMM (np panels). */
static void add_tiles(struct prof_forward *f, int x, size_t np, size_t *nt)
{
	size_t nb = f->vx[x].nb;
	for (size_t ib = 0; ib < nb; ib += MC / MR)
		for (size_t p = 0; p < np; p += NCP) {
			struct tile *t = &f->tiles[(*nt)++];
			t->x = x;
			t->ib0 = (int)ib;
			t->ib1 = (int)(ib + MC / MR < nb ? ib + MC / MR : nb);
			t->p0 = (int)p;
			t->p1 = (int)(p + NCP < np ? p + NCP : np);
		}
}

/* Lays out the virtual experts' rows (row0, unpadded, for Y) and packed
 * panels (a1, a2, padded to MR rows) from their row counts ve->n, and sets
 * the counting sort's cursors. */
static void layout(struct prof_forward *f)
{
	size_t rows = 0, a1 = 0, a2 = 0, H = (size_t)f->cfg.hidden;
	for (int v = 0; v < f->nx; v++) {
		struct vexp *ve = &f->vx[v];
		ve->nb = cdiv(ve->n, MR);
		ve->row0 = rows;
		ve->a1 = a1;
		ve->a2 = a2;
		f->cursor[v] = rows;
		rows += ve->n;
		a1 += ve->nb * MR * H;
		a2 += ve->nb * MR * (size_t)ve->ffn;
	}
	f->n_rows = rows;
}

/* Gather, gate_up (+ activation), down: the stages after the counting sort
 * (row_tok filled); t gets PERMUTE's gather part added and the rest set;
 * tp is when the permute stage began. */
static void compute(struct prof_forward *f, double *t, double tp)
{
	size_t nt = 0;
	double act = 0;

	atomic_store(&f->next, 0);
	pool_run(f->pool, stage_gather);
	for (int v = 0; v < f->nx; v++)
		add_tiles(f, v, (size_t)f->vx[v].np1, &nt);
	f->ntiles1 = nt;
	for (int v = 0; v < f->nx; v++)
		add_tiles(f, v, (size_t)f->np2, &nt);
	f->ntiles2 = nt - f->ntiles1;
	t[PROF_STAGE_PERMUTE] = now_s() - tp;
	tp = now_s();

	atomic_store(&f->next, 0);
	pool_run(f->pool, stage_gate_up);
	for (int i = 0; i < f->threads; i++)
		act += f->act_s[i];
	act /= f->threads;
	t[PROF_STAGE_ACTIVATION] = act;
	t[PROF_STAGE_GATE_UP] = now_s() - tp - act;
	tp = now_s();

	atomic_store(&f->next, 0);
	pool_run(f->pool, stage_down);
	t[PROF_STAGE_DOWN] = now_s() - tp;
}

/* FLOPs of the last run on the rows actually routed (padding not counted). */
static void count_flops(struct prof_forward *f, size_t router_rows)
{
	double H = f->cfg.hidden;
	memset(f->flops, 0, sizeof f->flops);
	f->flops[PROF_STAGE_ROUTER] = 2.0 * (double)router_rows * H * f->cfg.experts;
	for (int v = 0; v < f->nx; v++) {
		f->flops[PROF_STAGE_GATE_UP] += 4.0 * (double)f->vx[v].n * H * f->vx[v].ffn;
		f->flops[PROF_STAGE_DOWN] += 2.0 * (double)f->vx[v].n * H * f->vx[v].ffn;
	}
	f->flops[PROF_STAGE_TOTAL] = f->flops[PROF_STAGE_ROUTER] + f->flops[PROF_STAGE_GATE_UP] +
				     f->flops[PROF_STAGE_DOWN];
}

enum moe_status prof_forward_run(struct prof_forward *f, const float *x, size_t n, float *y,
				 double *stage_s)
{
	double t[PROF_STAGE_COUNT] = {0}, tstart, tp;
	const struct prof_layer_cfg *c = &f->cfg;
	size_t k = (size_t)c->top_k, E = (size_t)c->experts;
	struct moe_route_out ro;
	enum moe_status st;

	if (n < 1 || n > f->max_n)
		MOE_FAIL(MOE_EINVAL, "forward: %zu tokens, expected 1..%zu", n, f->max_n);
	f->x = x;
	f->y = y;
	f->n = n;
	tstart = now_s();

	pool_run(f->pool, stage_router);
	tp = now_s();
	t[PROF_STAGE_ROUTER] = tp - tstart;

	ro.ids = f->ids;
	ro.weights = f->gates;
	ro.load = f->load;
	ro.dropped = NULL;
	ro.n_dropped = ro.n_rerouted = 0;
	if ((st = moe_route_batch(&f->pol, f->rws, f->logits, n, &ro)) != MOE_OK)
		return st;
	f->n_dropped = ro.n_dropped;
	t[PROF_STAGE_ROUTING] = now_s() - tp;
	tp = now_s();

	/* Counting sort of the slots by expert; the shared experts take every
	 * token in order. */
	for (int v = 0; v < f->nx; v++)
		f->vx[v].n = v < (int)E ? (size_t)f->load[v] : n;
	layout(f);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < k; j++) {
			int32_t e = f->ids[i * k + j];
			if (e == MOE_ROUTE_NONE) {
				f->slot_row[i * k + j] = SIZE_MAX;
				continue;
			}
			size_t r = f->cursor[e]++;
			f->row_tok[r] = (uint32_t)i;
			f->slot_row[i * k + j] = r;
		}
	if (f->nx > (int)E)
		for (size_t i = 0; i < n; i++)
			f->row_tok[f->vx[E].row0 + i] = (uint32_t)i;
	compute(f, t, tp);
	tp = now_s();

	pool_run(f->pool, stage_combine);
	t[PROF_STAGE_COMBINE] = now_s() - tp;
	t[PROF_STAGE_TOTAL] = now_s() - tstart;
	if (stage_s)
		memcpy(stage_s, t, sizeof t);
	count_flops(f, n);
	return MOE_OK;
}

/* Un-permute for prof_forward_experts: y[row_tok[r]] = yrows[r]. */
static void stage_unpermute(struct prof_forward *f, int tid)
{
	size_t n = f->n_rows, per = cdiv(n, (size_t)f->threads), r0 = per * (size_t)tid;
	size_t r1 = r0 + per < n ? r0 + per : n, H = (size_t)f->cfg.hidden;
	for (size_t r = r0; r < r1; r++)
		memcpy(f->y + (size_t)f->row_tok[r] * H, f->yrows + r * H, H * sizeof(float));
}

enum moe_status prof_forward_experts(struct prof_forward *f, const float *x,
				     const int32_t *expert, size_t n, float *y, double *stage_s)
{
	double t[PROF_STAGE_COUNT] = {0}, tstart = now_s(), tp;
	int E = f->cfg.experts;

	if (f->nx != E)
		MOE_FAIL(MOE_EINVAL, "forward: prof_forward_experts needs a layer without shared experts");
	if (n > f->rows_cap)
		MOE_FAIL(MOE_EINVAL, "forward: %zu rows, expected at most %zu", n, f->rows_cap);
	for (int v = 0; v < E; v++)
		f->vx[v].n = 0;
	for (size_t i = 0; i < n; i++) {
		if (expert[i] < 0 || expert[i] >= E)
			MOE_FAIL(MOE_ERANGE, "forward: row %zu: expert %d, expected 0..%d", i,
				 (int)expert[i], E - 1);
		f->vx[expert[i]].n++;
	}
	f->x = x;
	f->y = y;
	f->n = n;
	layout(f);
	for (size_t i = 0; i < n; i++)
		f->row_tok[f->cursor[expert[i]]++] = (uint32_t)i;
	for (int v = 0; v < E; v++)
		f->load[v] = f->vx[v].n;
	tp = now_s();
	compute(f, t, tp);
	tp = now_s();
	pool_run(f->pool, stage_unpermute);
	t[PROF_STAGE_COMBINE] = now_s() - tp;
	t[PROF_STAGE_TOTAL] = now_s() - tstart;
	if (stage_s)
		memcpy(stage_s, t, sizeof t);
	count_flops(f, 0);
	return MOE_OK;
}

const int32_t *prof_forward_ids(const struct prof_forward *f) { return f->ids; }
const float *prof_forward_gates(const struct prof_forward *f) { return f->gates; }
const float *prof_forward_logits(const struct prof_forward *f) { return f->logits; }
const uint64_t *prof_forward_load(const struct prof_forward *f) { return f->load; }
uint64_t prof_forward_dropped(const struct prof_forward *f) { return f->n_dropped; }
const struct prof_layer_cfg *prof_forward_cfg(const struct prof_forward *f) { return &f->cfg; }
const char *prof_forward_kernel(const struct prof_forward *f) { return f->kname; }
double prof_forward_bytes(const struct prof_forward *f) { return f->bytes; }

double prof_forward_flops(const struct prof_forward *f, enum prof_stage s)
{
	return (unsigned)s < PROF_STAGE_COUNT ? f->flops[s] : 0;
}
