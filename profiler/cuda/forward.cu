/* profiler/cuda/forward.cu: the MoE layer's forward pass on one NVIDIA GPU
 * (profiler/cuda/cuda_backend.h has the stages and the contracts): device
 * facts, upload with conversion to BF16/FP16, the routing kernel that
 * reproduces moe/route.h bit for bit, the counting-sort permutation, the
 * expert GEMMs through cuBLAS (grouped, or a loop), the fused SwiGLU, the
 * deterministic combine, and the CUDA-event timing harness. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "profiler/cuda/cuda_int.h"

/* ------------------------------------------------------------ errors */

enum moe_status prof_cuda_check(cudaError_t e, const char *call, const char *file, int line)
{
	if (e == cudaSuccess)
		return MOE_OK;
	return moe_error(MOE_ERUNTIME, "cuda: %s: %s (%s) at %s:%d", call, cudaGetErrorString(e),
			 cudaGetErrorName(e), file, line);
}

static const char *blas_msg(cublasStatus_t s)
{
	switch (s) {
	case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
	case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
	case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
	case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
	case CUBLAS_STATUS_MAPPING_ERROR: return "mapping error";
	case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
	case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
	case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
	case CUBLAS_STATUS_LICENSE_ERROR: return "license error";
	default: return "unknown status";
	}
}

static enum moe_status blas_check(cublasStatus_t s, const char *call, const char *file, int line)
{
	if (s == CUBLAS_STATUS_SUCCESS)
		return MOE_OK;
	return moe_error(s == CUBLAS_STATUS_NOT_SUPPORTED ? MOE_EUNSUPPORTED : MOE_ERUNTIME,
			 "cublas: %s: %s (status %d) at %s:%d", call, blas_msg(s), (int)s, file, line);
}
#define BLAS_OK(call) blas_check((call), #call, __FILE__, __LINE__)
#define CUDA_OK(call) PROF_CUDA_OK(call)

/* ------------------------------------------------------------ devices */

enum moe_status prof_cuda_device_count(int *count)
{
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);

	*count = 0;
	if (e != cudaSuccess) {
		/* clear the sticky-free error so later calls start clean */
		(void)cudaGetLastError();
		return moe_error(MOE_ENOTFOUND, "no CUDA device (cudaGetDeviceCount: %s)",
				 cudaGetErrorString(e));
	}
	if (n < 1)
		return moe_error(MOE_ENOTFOUND, "no CUDA device (cudaGetDeviceCount found none)");
	*count = n;
	return MOE_OK;
}

enum moe_status prof_cuda_device_query(int device, struct prof_cuda_device *out)
{
	int n, v;
	enum moe_status st;
	cudaDeviceProp prop;

	memset(out, 0, sizeof *out);
	if ((st = prof_cuda_device_count(&n)) != MOE_OK)
		return st;
	if (device < 0 || device >= n)
		MOE_FAIL(MOE_EINVAL, "cuda device %d: expected 0 to %d", device, n - 1);
	if ((st = CUDA_OK(cudaGetDeviceProperties(&prop, device))) != MOE_OK)
		return st;
	out->index = device;
	snprintf(out->name, sizeof out->name, "%s", prop.name);
	out->cc_major = prop.major;
	out->cc_minor = prop.minor;
	out->sm_count = prop.multiProcessorCount;
	out->mem_bytes = (double)prop.totalGlobalMem;
	/* attributes the driver may not report: left 0 when it does not */
	if (cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, device) == cudaSuccess)
		out->sm_clock_hz = v * 1e3;
	if (cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, device) == cudaSuccess)
		out->mem_clock_hz = v * 1e3;
	if (cudaDeviceGetAttribute(&v, cudaDevAttrGlobalMemoryBusWidth, device) == cudaSuccess)
		out->mem_bus_bits = v;
	(void)cudaGetLastError();
	if ((st = CUDA_OK(cudaDriverGetVersion(&out->driver_version))) != MOE_OK)
		return st;
	if ((st = CUDA_OK(cudaRuntimeGetVersion(&out->runtime_version))) != MOE_OK)
		return st;
	{
		size_t ver = 0;
		/* the version of the cuBLAS library loaded, not the header's */
		if (cublasGetProperty(MAJOR_VERSION, &v) == CUBLAS_STATUS_SUCCESS) {
			ver = (size_t)v * 10000;
			if (cublasGetProperty(MINOR_VERSION, &v) == CUBLAS_STATUS_SUCCESS)
				ver += (size_t)v * 100;
			if (cublasGetProperty(PATCH_LEVEL, &v) == CUBLAS_STATUS_SUCCESS)
				ver += (size_t)v;
			out->cublas_version = (int)ver;
		}
	}
	if (ncclGetVersion(&v) == ncclSuccess)
		out->nccl_version = v;
	return MOE_OK;
}

/* ------------------------------------------------------- conversions */

template <typename T> __host__ __device__ inline T to_t(float v);
template <> __host__ __device__ inline __nv_bfloat16 to_t<__nv_bfloat16>(float v)
{
	return __float2bfloat16_rn(v);
}
template <> __host__ __device__ inline __half to_t<__half>(float v)
{
	return __float2half_rn(v);
}
__host__ __device__ inline float from_t(__nv_bfloat16 v)
{
	return __bfloat162float(v);
}
__host__ __device__ inline float from_t(__half v)
{
	return __half2float(v);
}

void prof_cuda_round(float *v, size_t n, enum prof_cuda_dtype dtype)
{
	for (size_t i = 0; i < n; i++)
		v[i] = dtype == PROF_CUDA_FP16 ? from_t(to_t<__half>(v[i]))
					       : from_t(to_t<__nv_bfloat16>(v[i]));
}

const char *prof_cuda_dtype_name(enum prof_cuda_dtype d)
{
	switch (d) {
	case PROF_CUDA_BF16: return "bf16";
	case PROF_CUDA_FP16: return "fp16";
	}
	return NULL;
}

int prof_cuda_dtype_parse(const char *s, enum prof_cuda_dtype *out)
{
	if (strcmp(s, "bf16") == 0)
		*out = PROF_CUDA_BF16;
	else if (strcmp(s, "fp16") == 0)
		*out = PROF_CUDA_FP16;
	else
		return 0;
	return 1;
}

template <typename T>
__global__ void k_convert(const float *__restrict__ in, T *__restrict__ out, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		out[i] = to_t<T>(in[i]);
}

/* Blocks of `block` threads covering n items (at least 1; at most the x
 * dimension's limit, 2^31 - 1, which max_tokens keeps every grid under). */
static unsigned grid_for(size_t n, unsigned block)
{
	size_t g = (n + block - 1) / block;
	return (unsigned)(g < 1 ? 1 : g > 0x7fffffffu ? 0x7fffffffu : g);
}

/* --------------------------------------------------------- routing */

/* The policy as the kernel reads it (moe_route_policy minus what the GPU
 * path refuses: noise, node limits, rerouting). */
struct route_params {
	int kind, experts, k, norm, groups, gpt, topn;
	double scaling, top_p;
	const float *bias;
};

#define MAX_GROUPS 64
#define MAX_TOPN 32

/* The routing code below runs on the device (k_route) and on the host
 * (prof_cuda_route_host, so that its agreement with moe/route.c is tested
 * without a GPU).  Every float operation is rounded on its own, as the CPU
 * build (x86-64 without -mfma) computes moe/route.c: on the device through
 * the _rn intrinsics (nvcc would otherwise contract a * b + c into an FMA),
 * on the host with -ffp-contract=off (profiler/cuda/local.mk). */
#ifdef __CUDA_ARCH__
#define R_ADD(a, b) __fadd_rn((a), (b))
#define R_SUB(a, b) __fsub_rn((a), (b))
#define R_MUL(a, b) __fmul_rn((a), (b))
#define R_DIV(a, b) __fdiv_rn((a), (b))
#else
#define R_ADD(a, b) ((float)(a) + (float)(b))
#define R_SUB(a, b) ((float)(a) - (float)(b))
#define R_MUL(a, b) ((float)(a) * (float)(b))
#define R_DIV(a, b) ((float)(a) / (float)(b))
#endif

__host__ __device__ inline uint32_t f2u(float f)
{
#ifdef __CUDA_ARCH__
	return __float_as_uint(f);
#else
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
#endif
}

__host__ __device__ inline float u2f(uint32_t u)
{
#ifdef __CUDA_ARCH__
	return __uint_as_float(u);
#else
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
#endif
}

/* moe/route.c's exp_poly with the same float operations in the same order,
 * so the CPU and the GPU get the same bits. */
#define EXP_LO (-87.0f)
#define EXP_HI 88.0f
#define EXP_MAGIC 12582912.0f
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO (-2.12194440e-4f)

__host__ __device__ inline float exp_poly(float x)
{
	float t, n, r, q, sc;
	uint32_t tb, eb;
	const uint32_t mb = 0x4b400000u; /* bits of EXP_MAGIC */

	x = x > EXP_HI ? EXP_HI : x;
	x = x < EXP_LO ? EXP_LO : x;
	t = R_ADD(R_MUL(x, EXP_LOG2E), EXP_MAGIC);
	n = R_SUB(t, EXP_MAGIC);
	tb = f2u(t);
	r = R_SUB(x, R_MUL(n, EXP_LN2_HI));
	r = R_SUB(r, R_MUL(n, EXP_LN2_LO));
	q = 1.0f / 720;
	q = R_ADD(R_MUL(q, r), 1.0f / 120);
	q = R_ADD(R_MUL(q, r), 1.0f / 24);
	q = R_ADD(R_MUL(q, r), 1.0f / 6);
	q = R_ADD(R_MUL(q, r), 0.5f);
	q = R_ADD(R_MUL(q, r), 1.0f);
	q = R_ADD(R_MUL(q, r), 1.0f);
	eb = (uint32_t)((int32_t)(tb - mb) + 127) << 23;
	sc = u2f(eb);
	return R_MUL(q, sc);
}

/* exp_shift's sum: four float lanes over the first 4 floor(n/4) values, the
 * lanes added in double, the tail in double (route.c's vector path).  get(i)
 * gives the i-th value after exp. */
template <typename G> __host__ __device__ inline double lane_sum(int n, G get)
{
	float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
	double z;
	int i = 0;

	for (; i + 4 <= n; i += 4) {
		a0 = R_ADD(a0, get(i));
		a1 = R_ADD(a1, get(i + 1));
		a2 = R_ADD(a2, get(i + 2));
		a3 = R_ADD(a3, get(i + 3));
	}
	z = (double)a0 + (double)a1 + (double)a2 + (double)a3;
	for (; i < n; i++)
		z += (double)get(i);
	return z;
}

__host__ __device__ inline float sigmoid_f(float x)
{
	return R_DIV(1.0f, R_ADD(1.0f, exp_poly(R_SUB(0.0f, x))));
}

/* route_token of moe/route.c for one token: logits l [E], scratch key [E],
 * out id and wt [k].  Returns -1, or the first expert whose logit is NaN or
 * infinite (the slots are then none). */
__host__ __device__ static int route_token(const route_params &p, const float *l, float *key,
					   int32_t *id, float *wt)
{
	const int e = p.experts, k = p.k;
	const int limits = p.groups > 1;
	const int softmax_kind = p.kind == MOE_ROUTE_SOFTMAX_TOPK || p.kind == MOE_ROUTE_TOP_P;
	int c = 0, m;
	double den = 1;
	float shift;

	for (int i = 0; i < e; i++)
		if (!isfinite(l[i])) {
			for (int j = 0; j < k; j++) {
				id[j] = MOE_ROUTE_NONE;
				wt[j] = 0;
			}
			return i;
		}
	/* 1. keys */
	if (softmax_kind && (p.bias || limits)) {
		float mx = l[0], inv;
		double z;
		for (int i = 1; i < e; i++)
			mx = l[i] > mx ? l[i] : mx;
		for (int i = 0; i < e; i++)
			key[i] = exp_poly(R_SUB(l[i], mx));
		z = lane_sum(e, [&](int i) { return key[i]; });
		inv = (float)(1 / z);
		for (int i = 0; i < e; i++)
			key[i] = R_MUL(key[i], inv);
		if (p.bias)
			for (int i = 0; i < e; i++)
				key[i] = R_ADD(key[i], p.bias[i]);
	} else if (p.kind == MOE_ROUTE_SIGMOID_BIAS) {
		for (int i = 0; i < e; i++)
			key[i] = R_ADD(sigmoid_f(l[i]), p.bias ? p.bias[i] : 0.0f);
	} else if (p.bias) {
		for (int i = 0; i < e; i++)
			key[i] = R_ADD(l[i], p.bias[i]);
	} else {
		for (int i = 0; i < e; i++)
			key[i] = l[i];
	}
	/* 2. group limit (limit_sets of route.c, contiguous groups) */
	if (limits) {
		const int G = p.groups, block = e / G;
		float score[MAX_GROUPS];
		int keep[MAX_GROUPS];
		for (int s = 0; s < G; s++) {
			const float *x = key + (size_t)s * block;
			if (p.topn <= 2) {
				float b1 = -INFINITY, b2 = -INFINITY;
				for (int j = 0; j < block; j++) {
					const float v = x[j], lo = v < b1 ? v : b1;
					b1 = v > b1 ? v : b1;
					b2 = lo > b2 ? lo : b2;
				}
				score[s] = p.topn == 1 || b2 == -INFINITY ? b1 : R_ADD(b1, b2);
			} else {
				float bv[MAX_TOPN];
				int cnt = 0;
				double sum = 0;
				for (int j = 0; j < block; j++) {
					const float v = x[j];
					int q;
					if (v == -INFINITY)
						continue;
					if (cnt == p.topn) {
						if (!(v > bv[p.topn - 1]))
							continue;
						q = p.topn - 1;
					} else {
						q = cnt++;
					}
					while (q > 0 && v > bv[q - 1]) {
						bv[q] = bv[q - 1];
						q--;
					}
					bv[q] = v;
				}
				for (int j = 0; j < cnt; j++)
					sum += bv[j];
				score[s] = cnt ? (float)sum : -INFINITY;
			}
			keep[s] = 0;
		}
		for (int kept = 0; kept < p.gpt; kept++) {
			int b = -1;
			for (int s = 0; s < G; s++)
				if (!keep[s] && (b < 0 || score[s] > score[b]))
					b = s;
			if (b < 0)
				break;
			keep[b] = 1;
		}
		for (int s = 0; s < G; s++)
			if (!keep[s])
				for (int j = 0; j < block; j++)
					key[(size_t)s * block + j] = -INFINITY;
	}
	/* 3. top-k: repeated arg-max (equal keys: the lower id), taken keys
	 * struck out; excluded experts (-inf) are never offered */
	for (c = 0; c < k; c++) {
		int b = -1;
		for (int i = 0; i < e; i++)
			if (key[i] != -INFINITY && (b < 0 || key[i] > key[b]))
				b = i;
		if (b < 0)
			break;
		id[c] = b;
		key[b] = -INFINITY;
	}
	m = c;
	/* 4. weights from the unnoised, unbiased scores */
	switch (p.kind) {
	case MOE_ROUTE_SOFTMAX_TOPK:
	case MOE_ROUTE_TOPK_SOFTMAX:
		if (p.norm || p.kind == MOE_ROUTE_TOPK_SOFTMAX) {
			shift = l[id[0]];
			for (int j = 1; j < m; j++)
				shift = l[id[j]] > shift ? l[id[j]] : shift;
			for (int j = 0; j < m; j++)
				wt[j] = exp_poly(R_SUB(l[id[j]], shift));
			den = lane_sum(m, [&](int j) { return wt[j]; });
		} else {
			shift = l[0];
			for (int i = 1; i < e; i++)
				shift = l[i] > shift ? l[i] : shift;
			den = lane_sum(e, [&](int i) { return exp_poly(R_SUB(l[i], shift)); });
			for (int j = 0; j < m; j++)
				wt[j] = exp_poly(R_SUB(l[id[j]], shift));
		}
		break;
	case MOE_ROUTE_TOP_P: {
		double z, cum = 0, kept = 0;
		shift = l[0];
		for (int i = 1; i < e; i++)
			shift = l[i] > shift ? l[i] : shift;
		z = lane_sum(e, [&](int i) { return exp_poly(R_SUB(l[i], shift)); });
		for (int j = 0; j < c; j++) {
			cum += (double)exp_poly(R_SUB(l[id[j]], shift)) / z;
			if (cum >= p.top_p) {
				m = j + 1;
				break;
			}
		}
		for (int j = 0; j < m; j++) {
			wt[j] = exp_poly(R_SUB(l[id[j]], shift));
			kept += wt[j];
		}
		den = p.norm ? kept : z;
		break;
	}
	case MOE_ROUTE_SIGMOID_BIAS:
	default:
		for (int j = 0; j < m; j++)
			wt[j] = sigmoid_f(l[id[j]]);
		den = 1;
		if (p.norm) {
			den = 0;
			for (int j = 0; j < m; j++)
				den += wt[j];
		}
		break;
	}
	{
		const float inv = (float)(p.scaling / den);
		for (int j = 0; j < m; j++)
			wt[j] = R_MUL(wt[j], inv);
	}
	for (int j = m; j < k; j++) {
		id[j] = MOE_ROUTE_NONE;
		wt[j] = 0;
	}
	return -1;
}

/* One thread per token; *bad: the least token * E + expert with a NaN or
 * infinite logit (ULLONG_MAX when none). */
__global__ void k_route(route_params p, const float *__restrict__ logits, float *__restrict__ keys,
			int32_t *__restrict__ ids, float *__restrict__ wts, size_t n,
			unsigned long long *bad)
{
	const size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	int b;

	if (t >= n)
		return;
	b = route_token(p, logits + t * (size_t)p.experts, keys + t * (size_t)p.experts,
			ids + t * (size_t)p.k, wts + t * (size_t)p.k);
	if (b >= 0)
		atomicMin(bad, (unsigned long long)(t * (size_t)p.experts + (size_t)b));
}

/* Capacity with MOE_ROUTE_DROP: route.c's admission, rank by rank and
 * tokens in order, on one thread (the order is the definition).  cnt [E]
 * scratch; *dropped out. */
__host__ __device__ static void capacity_pass(int32_t *ids, float *wts, size_t n, int k, int E,
					      unsigned long long cap, unsigned long long *cnt,
					      unsigned long long *dropped)
{
	unsigned long long d = 0;

	for (int i = 0; i < E; i++)
		cnt[i] = 0;
	for (int r = 0; r < k; r++)
		for (size_t t = 0; t < n; t++) {
			int32_t *id = ids + t * (size_t)k + r;
			if (*id == MOE_ROUTE_NONE)
				continue;
			if (cnt[*id] < cap) {
				cnt[*id]++;
				continue;
			}
			*id = MOE_ROUTE_NONE;
			wts[t * (size_t)k + r] = 0;
			d++;
		}
	*dropped = d;
}

__global__ void k_capacity(int32_t *ids, float *wts, size_t n, int k, int E, unsigned long long cap,
			   unsigned long long *cnt, unsigned long long *dropped)
{
	capacity_pass(ids, wts, n, k, E, cap, cnt, dropped);
}

/* ------------------------------------------------------- permutation */

#define CHUNK 256
#define MAX_EXPERTS 8192 /* the per-chunk histogram lives in 32 KiB of shared memory */

/* Histogram of each chunk of CHUNK slots: cc[chunk * E + e]. */
__global__ void k_hist(const int32_t *__restrict__ ids, size_t slots, int E, int *__restrict__ cc)
{
	extern __shared__ int sh[];
	const size_t s = blockIdx.x * (size_t)CHUNK + threadIdx.x;

	for (int e = threadIdx.x; e < E; e += blockDim.x)
		sh[e] = 0;
	__syncthreads();
	if (s < slots && ids[s] != MOE_ROUTE_NONE)
		atomicAdd(&sh[ids[s]], 1); /* a count: the order of additions does not matter */
	__syncthreads();
	for (int e = threadIdx.x; e < E; e += blockDim.x)
		cc[(size_t)blockIdx.x * E + e] = sh[e];
}

/* Exclusive scan: per expert its total and each chunk's start within the
 * expert, then the experts' starts; cc becomes the absolute start of each
 * (chunk, expert) run.  info[0..E) = rows per expert, info[E] = all rows. */
__global__ void k_scan(int *cc, int chunks, int E, int *info, int *start)
{
	for (int e = threadIdx.x; e < E; e += blockDim.x) {
		int run = 0;
		for (int c = 0; c < chunks; c++) {
			int v = cc[(size_t)c * E + e];
			cc[(size_t)c * E + e] = run;
			run += v;
		}
		info[e] = run;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		int acc = 0;
		for (int e = 0; e < E; e++) {
			start[e] = acc;
			acc += info[e];
		}
		info[E] = acc;
	}
	__syncthreads();
	for (int e = threadIdx.x; e < E; e += blockDim.x)
		for (int c = 0; c < chunks; c++)
			cc[(size_t)c * E + e] += start[e];
}

/* Stable scatter: a slot's row is its (chunk, expert) start plus the number
 * of earlier slots of the chunk with the same expert, so rows of one expert
 * are in slot (token) order, as the CPU's counting sort puts them. */
__global__ void k_scatter(const int32_t *__restrict__ ids, size_t slots, int k, int E,
			  const int *__restrict__ cc, int *__restrict__ row_tok,
			  int *__restrict__ slot_row)
{
	__shared__ int32_t sh[CHUNK];
	const size_t s = blockIdx.x * (size_t)CHUNK + threadIdx.x;
	const int i = threadIdx.x;

	sh[i] = s < slots ? ids[s] : MOE_ROUTE_NONE;
	__syncthreads();
	if (s >= slots)
		return;
	if (sh[i] == MOE_ROUTE_NONE) {
		slot_row[s] = -1;
		return;
	}
	{
		int rank = 0, r;
		for (int j = 0; j < i; j++)
			rank += sh[j] == sh[i];
		r = cc[(size_t)blockIdx.x * E + sh[i]] + rank;
		row_tok[r] = (int)(s / (size_t)k);
		slot_row[s] = r;
	}
}

/* xp[r] = x[row_tok[r]], rows of H elements of 2 bytes. */
__global__ void k_gather(const unsigned short *__restrict__ x, const int *__restrict__ row_tok,
			 int rows, int H, unsigned short *__restrict__ xp)
{
	for (int r = blockIdx.x; r < rows; r += gridDim.x) {
		const unsigned short *src = x + (size_t)row_tok[r] * H;
		unsigned short *dst = xp + (size_t)r * H;
		if ((H & 7) == 0) {
			const uint4 *s4 = (const uint4 *)src;
			uint4 *d4 = (uint4 *)dst;
			for (int c = threadIdx.x; c < H / 8; c += blockDim.x)
				d4[c] = s4[c];
		} else {
			for (int c = threadIdx.x; c < H; c += blockDim.x)
				dst[c] = src[c];
		}
	}
}

/* --------------------------------------------- activation and combine */

/* h[r, c] = SiLU(g) * u with g = a[r, c], u = a[r, F + c] (gate rows first
 * in the concatenated weight), in FP32. */
template <typename T>
__global__ void k_swiglu(const T *__restrict__ a, size_t rows, int F, T *__restrict__ h)
{
	const size_t total = rows * (size_t)F;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
	     i += (size_t)gridDim.x * blockDim.x) {
		const size_t r = i / (size_t)F, c = i % (size_t)F;
		const float g = from_t(a[r * 2 * (size_t)F + c]);
		const float u = from_t(a[r * 2 * (size_t)F + F + c]);
		h[i] = to_t<T>(g / (1.0f + expf(-g)) * u);
	}
}

/* Qwen2-MoE's shared-expert gate: s[t] = sigmoid(x[t] . w), one warp per
 * token, FP32. */
__global__ void k_shared_gate(const float *__restrict__ x, const float *__restrict__ w, size_t n,
			      int H, float *__restrict__ s)
{
	const size_t t = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32;
	const int lane = threadIdx.x % 32;
	float d = 0;

	if (t >= n)
		return;
	for (int c = lane; c < H; c += 32)
		d += x[t * (size_t)H + c] * w[c];
	for (int o = 16; o > 0; o /= 2)
		d += __shfl_down_sync(0xffffffffu, d, o);
	if (lane == 0)
		s[t] = 1.0f / (1.0f + expf(-d));
}

/* y[t, c] = sum_j g[t, j] yr[slot_row[t, j], c] (slot order) + s[t] ys[t, c]:
 * each output element summed by one thread in a fixed order. */
template <typename T>
__global__ void k_combine(const T *__restrict__ yr, const int *__restrict__ slot_row,
			  const float *__restrict__ gates, int k, int H, const T *__restrict__ ys,
			  const float *__restrict__ sg, float *__restrict__ y)
{
	const size_t t = blockIdx.x;
	const int *sr = slot_row + t * (size_t)k;
	const float *g = gates + t * (size_t)k;

	for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < H; c += gridDim.y * blockDim.x) {
		float acc = 0;
		for (int j = 0; j < k; j++)
			if (sr[j] >= 0)
				acc += g[j] * from_t(yr[(size_t)sr[j] * H + c]);
		if (ys)
			acc += (sg ? sg[t] : 1.0f) * from_t(ys[t * (size_t)H + c]);
		y[t * (size_t)H + c] = acc;
	}
}

/* --------------------------------------------------------- the layer */

struct prof_cuda {
	struct prof_layer_cfg cfg;
	struct prof_cuda_device dev;
	struct moe_route_policy pol;
	route_params rp;
	enum prof_cuda_dtype dtype;
	cudaDataType_t dt;
	int gemm;                 /* PROF_CUDA_GEMM_GROUPED or _LOOP once decided */
	int gemm_auto;            /* AUTO: may still fall back to the loop */
	size_t max_n, n;
	int H, F, E, k, Fs, chunks_max;
	double bytes;
	cudaStream_t stream;
	cublasHandle_t blas;
	cudaEvent_t ev[PROF_STAGE_COUNT + 1];
	cudaEvent_t ev_info;
	/* weights, device type */
	void *router, *w13, *w2, *s13, *s2;
	float *bias, *s_router;
	/* activations */
	float *x32, *logits, *keys, *gates, *y, *sgate;
	void *x, *xp, *h13, *hact, *yrows, *sh13, *shact, *sy;
	int32_t *ids;
	int *cc, *info, *start, *row_tok, *slot_row;
	unsigned long long *bad, *cnt, *dropped;
	const void **parr;        /* device: 6 * (E + 1) pointers */
	/* host, pinned */
	int *h_info;              /* [E + 1] */
	unsigned long long *h_bad, *h_dropped;
	const void **h_parr;
	int *gdims;               /* [6 (E + 1)]: m, n, k of both GEMM stages per group */
	/* host copies of the last run */
	int32_t *ids_h;
	float *gates_h, *logits_h;
	uint64_t *load_h;
	uint64_t n_dropped;
	double flops[PROF_STAGE_COUNT];
};

static enum moe_status dalloc(struct prof_cuda *g, void **p, size_t bytes, const char *what)
{
	cudaError_t e;

	*p = NULL;
	if (bytes == 0)
		return MOE_OK;
	e = cudaMalloc(p, bytes);
	if (e != cudaSuccess) {
		*p = NULL;
		(void)cudaGetLastError();
		return moe_error(MOE_ERUNTIME, "cuda: cudaMalloc of %zu bytes for %s: %s (%.0f bytes held)",
				 bytes, what, cudaGetErrorString(e), g->bytes);
	}
	g->bytes += (double)bytes;
	return MOE_OK;
}

/* Copies an FP32 host matrix of `count` floats into dst (device type) at
 * element offset off, through the FP32 staging buffer. */
static enum moe_status upload(struct prof_cuda *g, float *stage, const float *src, size_t count,
			      void *dst, size_t off)
{
	enum moe_status st;

	if ((st = CUDA_OK(cudaMemcpyAsync(stage, src, count * sizeof(float), cudaMemcpyHostToDevice,
					  g->stream))) != MOE_OK)
		return st;
	if (g->dtype == PROF_CUDA_FP16)
		k_convert<<<grid_for(count, 256), 256, 0, g->stream>>>(stage, (__half *)dst + off, count);
	else
		k_convert<<<grid_for(count, 256), 256, 0, g->stream>>>(stage, (__nv_bfloat16 *)dst + off,
								       count);
	if ((st = CUDA_OK(cudaGetLastError())) != MOE_OK)
		return st;
	/* the staging buffer is reused by the next call */
	return CUDA_OK(cudaStreamSynchronize(g->stream));
}

void prof_cuda_free(struct prof_cuda *g)
{
	if (!g)
		return;
	cudaSetDevice(g->dev.index);
	if (g->stream)
		cudaStreamSynchronize(g->stream);
	void *dev[] = {g->router, g->w13, g->w2, g->s13, g->s2, g->bias, g->s_router, g->x32,
		       g->logits, g->keys, g->gates, g->y, g->sgate, g->x, g->xp, g->h13, g->hact,
		       g->yrows, g->sh13, g->shact, g->sy, g->ids, g->cc, g->info, g->start,
		       g->row_tok, g->slot_row, g->bad, g->cnt, g->dropped, (void *)g->parr};
	for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
		if (dev[i])
			cudaFree(dev[i]);
	if (g->h_info)
		cudaFreeHost(g->h_info);
	if (g->h_bad)
		cudaFreeHost(g->h_bad);
	if (g->h_dropped)
		cudaFreeHost(g->h_dropped);
	if (g->h_parr)
		cudaFreeHost((void *)g->h_parr);
	for (int i = 0; i <= PROF_STAGE_COUNT; i++)
		if (g->ev[i])
			cudaEventDestroy(g->ev[i]);
	if (g->ev_info)
		cudaEventDestroy(g->ev_info);
	if (g->blas)
		cublasDestroy(g->blas);
	if (g->stream)
		cudaStreamDestroy(g->stream);
	(void)cudaGetLastError();
	free(g->ids_h);
	free(g->gates_h);
	free(g->logits_h);
	free(g->load_h);
	free(g->gdims);
	free(g);
}

/* The kernel's view of a policy (bias pointer left to the caller).
 * Returns MOE_OK; MOE_EINVAL as moe_route_policy_validate; MOE_EUNSUPPORTED
 * for what the kernel lacks. */
static enum moe_status params_of(const struct moe_route_policy *p, route_params *rp)
{
	enum moe_status st;

	if ((st = moe_route_policy_validate(p)) != MOE_OK)
		return st;
	if (p->noise_std > 0 || p->node_of ||
	    (p->capacity_factor > 0 && p->overflow == MOE_ROUTE_REROUTE))
		MOE_FAIL(MOE_EUNSUPPORTED, "cuda: routing noise, node limits and rerouting run on the CPU only");
	if (p->experts > MAX_EXPERTS)
		MOE_FAIL(MOE_EUNSUPPORTED, "cuda: %d experts: the permutation kernel takes up to %d",
			 p->experts, MAX_EXPERTS);
	if (p->groups > MAX_GROUPS ||
	    (p->groups > 1 && p->group_topn > MAX_TOPN && p->experts / p->groups > MAX_TOPN))
		MOE_FAIL(MOE_EUNSUPPORTED, "cuda: groups %d, group_topn %d: the kernel takes up to %d groups and %d keys per group",
			 p->groups, p->group_topn, MAX_GROUPS, MAX_TOPN);
	memset(rp, 0, sizeof *rp);
	rp->kind = p->kind;
	rp->experts = p->experts;
	rp->k = p->k;
	rp->norm = p->norm;
	rp->groups = p->groups;
	rp->gpt = p->groups_per_token;
	/* route.c's effective_topn: at least 1, at most E */
	rp->topn = p->group_topn < 1 ? 1 : p->group_topn;
	rp->topn = rp->topn > p->experts ? p->experts : rp->topn;
	rp->scaling = p->scaling;
	rp->top_p = p->top_p;
	return MOE_OK;
}

enum moe_status prof_cuda_route_host(const struct moe_route_policy *p, const float *logits,
				     size_t n, int32_t *ids, float *weights, uint64_t *load,
				     uint64_t *n_dropped)
{
	route_params rp;
	enum moe_status st;
	float *key;
	unsigned long long *cnt, dropped = 0;
	const size_t E = (size_t)p->experts, k = (size_t)p->k;

	if ((st = params_of(p, &rp)) != MOE_OK)
		return st;
	rp.bias = p->bias;
	key = (float *)malloc(E * sizeof(float));
	cnt = (unsigned long long *)calloc(E, sizeof *cnt);
	if (!key || !cnt) {
		free(key);
		free(cnt);
		MOE_FAIL(MOE_ENOMEM, "cuda: out of memory for %zu experts", E);
	}
	for (size_t t = 0; t < n; t++) {
		int b = route_token(rp, logits + t * E, key, ids + t * k, weights + t * k);
		if (b >= 0) {
			free(key);
			free(cnt);
			MOE_FAIL(MOE_EFORMAT, "routing: token %zu, expert %d: logit is NaN or infinite, expected a finite value",
				 t, b);
		}
	}
	if (p->capacity_factor > 0) {
		capacity_pass(ids, weights, n, (int)k, (int)E,
			      (unsigned long long)moe_route_capacity(p, n), cnt, &dropped);
	} else {
		for (size_t s = 0; s < n * k; s++)
			if (ids[s] != MOE_ROUTE_NONE)
				cnt[ids[s]]++;
	}
	if (load)
		for (size_t e = 0; e < E; e++)
			load[e] = cnt[e];
	if (n_dropped)
		*n_dropped = dropped;
	free(key);
	free(cnt);
	return MOE_OK;
}

enum moe_status prof_cuda_new(const struct prof_weights *w, const struct prof_cuda_opts *o,
			      size_t max_tokens, struct prof_cuda **out)
{
	struct prof_cuda *g;
	enum moe_status st;
	float *stage = NULL;
	size_t H, F, E, k, Fs, n, es, stage_n;

	*out = NULL;
	if ((st = prof_layer_cfg_check(&w->cfg)) != MOE_OK)
		return st;
	if (max_tokens < 1 || max_tokens > (size_t)INT_MAX / 64)
		MOE_FAIL(MOE_EINVAL, "cuda: max tokens %zu: expected 1 to %d", max_tokens, INT_MAX / 64);
	if (o->dtype != PROF_CUDA_BF16 && o->dtype != PROF_CUDA_FP16)
		MOE_FAIL(MOE_EINVAL, "cuda: dtype %d: expected bf16 or fp16", (int)o->dtype);
	if (!(g = (struct prof_cuda *)calloc(1, sizeof *g)))
		MOE_FAIL(MOE_ENOMEM, "cuda: out of memory");
	if ((st = prof_cuda_device_query(o->device, &g->dev)) != MOE_OK) {
		free(g);
		return st;
	}
	g->cfg = w->cfg;
	if (o->policy) {
		g->pol = *o->policy;
		if (g->pol.experts != g->cfg.experts || g->pol.k != g->cfg.top_k) {
			st = moe_error(MOE_EINVAL, "cuda: routing policy for %d experts, top-%d: the layer has %d, top-%d",
				       g->pol.experts, g->pol.k, g->cfg.experts, g->cfg.top_k);
			goto fail;
		}
	} else {
		prof_layer_cfg_policy(&g->cfg, w->bias, &g->pol);
	}
	if ((st = params_of(&g->pol, &g->rp)) != MOE_OK)
		goto fail;
	g->dtype = o->dtype;
	g->dt = o->dtype == PROF_CUDA_FP16 ? CUDA_R_16F : CUDA_R_16BF;
	g->gemm = o->gemm == PROF_CUDA_GEMM_LOOP ? PROF_CUDA_GEMM_LOOP : PROF_CUDA_GEMM_GROUPED;
	g->gemm_auto = o->gemm == PROF_CUDA_GEMM_AUTO;
	g->max_n = n = max_tokens;
	g->H = (int)(H = (size_t)g->cfg.hidden);
	g->F = (int)(F = (size_t)g->cfg.ffn);
	g->E = (int)(E = (size_t)g->cfg.experts);
	g->k = (int)(k = (size_t)g->cfg.top_k);
	g->Fs = (int)(Fs = (size_t)g->cfg.shared_ffn);
	g->chunks_max = (int)((n * k + CHUNK - 1) / CHUNK);
	/* the grouped GEMM wants every matrix 16-byte aligned (cuBLAS: when
	 * k * 2 bytes is a multiple of 16 the pointers must be too); the rows of
	 * an expert start at off * H or off * F elements, so H, F (and Fs) must
	 * be multiples of 8: otherwise the loop of cublasGemmEx */
	if (H % 8 || F % 8 || Fs % 8) {
		if (o->gemm == PROF_CUDA_GEMM_GROUPED) {
			st = moe_error(MOE_EUNSUPPORTED, "cuda: grouped GEMMs need hidden, ffn and shared ffn multiples of 8 (%zu, %zu, %zu): use the loop",
				       H, F, Fs);
			goto fail;
		}
		g->gemm = PROF_CUDA_GEMM_LOOP;
		g->gemm_auto = 0;
	}
	es = 2; /* bytes of BF16 and FP16 */

	if ((st = CUDA_OK(cudaSetDevice(o->device))) != MOE_OK)
		goto fail;
	if ((st = CUDA_OK(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking))) != MOE_OK)
		goto fail;
	for (int i = 0; i <= PROF_STAGE_COUNT; i++)
		if ((st = CUDA_OK(cudaEventCreate(&g->ev[i]))) != MOE_OK)
			goto fail;
	if ((st = CUDA_OK(cudaEventCreateWithFlags(&g->ev_info, cudaEventDisableTiming))) != MOE_OK)
		goto fail;
	if ((st = BLAS_OK(cublasCreate(&g->blas))) != MOE_OK)
		goto fail;
	if ((st = BLAS_OK(cublasSetStream(g->blas, g->stream))) != MOE_OK)
		goto fail;

	/* weights */
	if ((st = dalloc(g, &g->router, E * H * es, "the router")) != MOE_OK ||
	    (st = dalloc(g, &g->w13, E * 2 * F * H * es, "gate and up")) != MOE_OK ||
	    (st = dalloc(g, &g->w2, E * H * F * es, "down")) != MOE_OK ||
	    (st = dalloc(g, &g->s13, 2 * Fs * H * es, "shared gate and up")) != MOE_OK ||
	    (st = dalloc(g, &g->s2, H * Fs * es, "shared down")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->bias, g->pol.bias ? E * sizeof(float) : 0, "bias")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->s_router, w->s_router && Fs ? H * sizeof(float) : 0,
			 "shared gate")) != MOE_OK)
		goto fail;
	stage_n = F * H > E * H ? F * H : E * H;
	stage_n = Fs * H > stage_n ? Fs * H : stage_n;
	if ((st = CUDA_OK(cudaMalloc((void **)&stage, stage_n * sizeof(float)))) != MOE_OK)
		goto fail;
	if ((st = upload(g, stage, w->router, E * H, g->router, 0)) != MOE_OK)
		goto fail;
	for (size_t e = 0; e < E; e++) {
		if ((st = upload(g, stage, w->gate[e], F * H, g->w13, e * 2 * F * H)) != MOE_OK ||
		    (st = upload(g, stage, w->up[e], F * H, g->w13, e * 2 * F * H + F * H)) != MOE_OK ||
		    (st = upload(g, stage, w->down[e], H * F, g->w2, e * H * F)) != MOE_OK)
			goto fail;
	}
	if (Fs) {
		if ((st = upload(g, stage, w->s_gate, Fs * H, g->s13, 0)) != MOE_OK ||
		    (st = upload(g, stage, w->s_up, Fs * H, g->s13, Fs * H)) != MOE_OK ||
		    (st = upload(g, stage, w->s_down, H * Fs, g->s2, 0)) != MOE_OK)
			goto fail;
	}
	cudaFree(stage);
	stage = NULL;
	if (g->pol.bias &&
	    (st = CUDA_OK(cudaMemcpy(g->bias, g->pol.bias, E * sizeof(float), cudaMemcpyHostToDevice))) != MOE_OK)
		goto fail;
	if (g->s_router &&
	    (st = CUDA_OK(cudaMemcpy(g->s_router, w->s_router, H * sizeof(float), cudaMemcpyHostToDevice))) != MOE_OK)
		goto fail;
	g->rp.bias = g->bias; /* the device copy (params_of left it NULL) */
	g->pol.bias = NULL; /* borrowed from the caller: not kept */
	g->pol.rng = NULL;

	/* activations for up to n tokens, n k routed rows */
	if ((st = dalloc(g, (void **)&g->x32, n * H * sizeof(float), "input")) != MOE_OK ||
	    (st = dalloc(g, &g->x, n * H * es, "input")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->logits, n * E * sizeof(float), "logits")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->keys, n * E * sizeof(float), "keys")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->ids, n * k * sizeof(int32_t), "ids")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->gates, n * k * sizeof(float), "gates")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->cc, (size_t)g->chunks_max * E * sizeof(int), "counts")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->info, (E + 1) * sizeof(int), "counts")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->start, E * sizeof(int), "counts")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->row_tok, n * k * sizeof(int), "rows")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->slot_row, n * k * sizeof(int), "rows")) != MOE_OK ||
	    (st = dalloc(g, &g->xp, n * k * H * es, "permuted rows")) != MOE_OK ||
	    (st = dalloc(g, &g->h13, n * k * 2 * F * es, "gate/up output")) != MOE_OK ||
	    (st = dalloc(g, &g->hact, n * k * F * es, "activation")) != MOE_OK ||
	    (st = dalloc(g, &g->yrows, n * k * H * es, "expert output")) != MOE_OK ||
	    (st = dalloc(g, &g->sh13, n * 2 * Fs * es, "shared gate/up")) != MOE_OK ||
	    (st = dalloc(g, &g->shact, n * Fs * es, "shared activation")) != MOE_OK ||
	    (st = dalloc(g, &g->sy, Fs ? n * H * es : 0, "shared output")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->sgate, g->s_router ? n * sizeof(float) : 0, "shared gate")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->y, n * H * sizeof(float), "output")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->bad, sizeof(unsigned long long), "flags")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->cnt, E * sizeof(unsigned long long), "capacity")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->dropped, sizeof(unsigned long long), "capacity")) != MOE_OK ||
	    (st = dalloc(g, (void **)&g->parr, 6 * (E + 1) * sizeof(void *), "pointers")) != MOE_OK)
		goto fail;
	if ((st = CUDA_OK(cudaMallocHost((void **)&g->h_info, (E + 1) * sizeof(int)))) != MOE_OK ||
	    (st = CUDA_OK(cudaMallocHost((void **)&g->h_bad, sizeof(unsigned long long)))) != MOE_OK ||
	    (st = CUDA_OK(cudaMallocHost((void **)&g->h_dropped, sizeof(unsigned long long)))) != MOE_OK ||
	    (st = CUDA_OK(cudaMallocHost((void **)&g->h_parr, 6 * (E + 1) * sizeof(void *)))) != MOE_OK)
		goto fail;
	g->ids_h = (int32_t *)malloc(n * k * sizeof(int32_t));
	g->gates_h = (float *)malloc(n * k * sizeof(float));
	g->logits_h = (float *)malloc(n * E * sizeof(float));
	g->load_h = (uint64_t *)calloc(E, sizeof(uint64_t));
	g->gdims = (int *)malloc(6 * (E + 1) * sizeof(int));
	if (!g->ids_h || !g->gates_h || !g->logits_h || !g->load_h || !g->gdims) {
		st = moe_error(MOE_ENOMEM, "cuda: out of host memory for %zu tokens", n);
		goto fail;
	}
	*out = g;
	return MOE_OK;
fail:
	if (stage)
		cudaFree(stage);
	prof_cuda_free(g);
	return st;
}

/* One GEMM stage over the groups: C_g = A_g^T B_g (column-major views of the
 * row-major matrices), m_g x n_g, reduction kk_g; A, B, C pointer lists in
 * h_parr at [base, base + G), [base + G, ...), [base + 2G, ...) and on the
 * device at the same offsets in parr. */
static enum moe_status gemm_stage(struct prof_cuda *g, int G, const int *m, const int *nn,
				  const int *kk, size_t base)
{
	const float one = 1.0f, zero = 0.0f;
	enum moe_status st = MOE_OK;

	if (G == 0)
		return MOE_OK;
	if (g->gemm == PROF_CUDA_GEMM_GROUPED) {
		cublasOperation_t ta[2 * MAX_GROUPS], tb[2 * MAX_GROUPS];
		int gs[2 * MAX_GROUPS];
		float al[2 * MAX_GROUPS], be[2 * MAX_GROUPS];
		/* large E: the host arrays in chunks of the fixed arrays above */
		for (int g0 = 0; g0 < G && st == MOE_OK; g0 += 2 * MAX_GROUPS) {
			int cnt = G - g0 < 2 * MAX_GROUPS ? G - g0 : 2 * MAX_GROUPS;
			for (int i = 0; i < cnt; i++) {
				ta[i] = CUBLAS_OP_T;
				tb[i] = CUBLAS_OP_N;
				gs[i] = 1;
				al[i] = one;
				be[i] = zero;
			}
			st = BLAS_OK(cublasGemmGroupedBatchedEx(
				g->blas, ta, tb, m + g0, nn + g0, kk + g0, al, g->parr + base + g0, g->dt,
				kk + g0, g->parr + base + G + g0, g->dt, kk + g0, be,
				(void *const *)(g->parr + base + 2 * G + g0), g->dt, m + g0, cnt, gs,
				CUBLAS_COMPUTE_32F));
		}
		if (st == MOE_EUNSUPPORTED && g->gemm_auto) {
			/* this cuBLAS or GPU has no grouped GEMM for the type: loop from now on */
			moe_error_clear();
			g->gemm = PROF_CUDA_GEMM_LOOP;
			g->gemm_auto = 0;
		} else {
			if (st == MOE_OK)
				g->gemm_auto = 0; /* it works: keep it */
			return st;
		}
	}
	for (int i = 0; i < G && st == MOE_OK; i++)
		st = BLAS_OK(cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, m[i], nn[i], kk[i], &one,
					  g->h_parr[base + i], g->dt, kk[i], g->h_parr[base + G + i], g->dt,
					  kk[i], &zero, (void *)g->h_parr[base + 2 * G + i], g->dt, m[i],
					  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return st;
}

template <typename T> static void launch_swiglu(struct prof_cuda *g, const void *a, size_t rows,
						int F, void *h)
{
	size_t tot = rows * (size_t)F;
	if (tot)
		k_swiglu<T><<<grid_for(tot, 256), 256, 0, g->stream>>>((const T *)a, rows, F, (T *)h);
}

template <typename T> static void launch_combine(struct prof_cuda *g, size_t n)
{
	dim3 grid((unsigned)n, (unsigned)((g->H + 255) / 256 < 8 ? (g->H + 255) / 256 : 8));
	k_combine<T><<<grid, 256, 0, g->stream>>>((const T *)g->yrows, g->slot_row, g->gates, g->k,
						  g->H, g->Fs ? (const T *)g->sy : NULL,
						  g->s_router ? g->sgate : NULL, g->y);
}

enum moe_status prof_cuda_run(struct prof_cuda *g, const float *x, size_t n, float *y,
			      double *stage_s)
{
	const size_t H = (size_t)g->H, E = (size_t)g->E, k = (size_t)g->k, F = (size_t)g->F;
	const size_t Fs = (size_t)g->Fs, es = 2, slots = n * k;
	const int chunks = (int)((slots + CHUNK - 1) / CHUNK);
	const float one = 1.0f, zero = 0.0f;
	const int fp16 = g->dtype == PROF_CUDA_FP16;
	const int Gmax = (int)E + 1;
	int *m_a = g->gdims, *n_a = m_a + Gmax, *k_a = n_a + Gmax;
	int *m_b = k_a + Gmax, *n_b = m_b + Gmax, *k_b = n_b + Gmax;
	int G = 0, rows;
	enum moe_status st;

	if (n < 1 || n > g->max_n)
		MOE_FAIL(MOE_EINVAL, "cuda: %zu tokens, expected 1..%zu", n, g->max_n);
	if ((st = CUDA_OK(cudaSetDevice(g->dev.index))) != MOE_OK)
		return st;
	g->n = n;
	/* the input, converted on the device: not part of the timed layer */
	if ((st = CUDA_OK(cudaMemcpyAsync(g->x32, x, n * H * sizeof(float), cudaMemcpyHostToDevice,
					  g->stream))) != MOE_OK)
		return st;
	if (fp16)
		k_convert<<<grid_for(n * H, 256), 256, 0, g->stream>>>(g->x32, (__half *)g->x, n * H);
	else
		k_convert<<<grid_for(n * H, 256), 256, 0, g->stream>>>(g->x32, (__nv_bfloat16 *)g->x,
								       n * H);
	/* all bits set: ULLONG_MAX, "no bad logit" */
	if ((st = CUDA_OK(cudaMemsetAsync(g->bad, 0xff, sizeof(unsigned long long), g->stream))) != MOE_OK)
		return st;

	/* router: logits^T [E x n] (column-major) = router [E x H] . x^T */
	cudaEventRecord(g->ev[PROF_STAGE_ROUTER], g->stream);
	if ((st = BLAS_OK(cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)E, (int)n, (int)H, &one,
				       g->router, g->dt, (int)H, g->x, g->dt, (int)H, &zero, g->logits,
				       CUDA_R_32F, (int)E, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT))) != MOE_OK)
		return st;

	/* routing */
	cudaEventRecord(g->ev[PROF_STAGE_ROUTING], g->stream);
	k_route<<<grid_for(n, 128), 128, 0, g->stream>>>(g->rp, g->logits, g->keys, g->ids, g->gates,
							  n, g->bad);
	if (g->pol.capacity_factor > 0) {
		size_t cap = moe_route_capacity(&g->pol, n);
		k_capacity<<<1, 1, 0, g->stream>>>(g->ids, g->gates, n, (int)k, (int)E,
						   (unsigned long long)cap, g->cnt, g->dropped);
	} else {
		cudaMemsetAsync(g->dropped, 0, sizeof(unsigned long long), g->stream);
	}

	/* permute: histogram, scan, counts to the host, scatter, gather */
	cudaEventRecord(g->ev[PROF_STAGE_PERMUTE], g->stream);
	k_hist<<<chunks, CHUNK, E * sizeof(int), g->stream>>>(g->ids, slots, (int)E, g->cc);
	k_scan<<<1, 256, 0, g->stream>>>(g->cc, chunks, (int)E, g->info, g->start);
	cudaMemcpyAsync(g->h_info, g->info, (E + 1) * sizeof(int), cudaMemcpyDeviceToHost, g->stream);
	cudaMemcpyAsync(g->h_bad, g->bad, sizeof(unsigned long long), cudaMemcpyDeviceToHost, g->stream);
	cudaMemcpyAsync(g->h_dropped, g->dropped, sizeof(unsigned long long), cudaMemcpyDeviceToHost,
			g->stream);
	cudaEventRecord(g->ev_info, g->stream);
	k_scatter<<<chunks, CHUNK, 0, g->stream>>>(g->ids, slots, (int)k, (int)E, g->cc, g->row_tok,
						   g->slot_row);
	if ((st = CUDA_OK(cudaGetLastError())) != MOE_OK)
		return st;
	if ((st = CUDA_OK(cudaEventSynchronize(g->ev_info))) != MOE_OK)
		return st;
	if (*g->h_bad != ULLONG_MAX) {
		size_t t = (size_t)(*g->h_bad / E), e = (size_t)(*g->h_bad % E);
		cudaStreamSynchronize(g->stream);
		MOE_FAIL(MOE_EFORMAT, "routing: token %zu, expert %zu: logit %s, expected a finite value",
			 t, e, "is NaN or infinite");
	}
	rows = g->h_info[E];
	if (rows > 0)
		k_gather<<<grid_for((size_t)rows, 1), 128, 0, g->stream>>>(
			(const unsigned short *)g->x, g->row_tok, rows, (int)H, (unsigned short *)g->xp);

	/* the groups: experts with rows, then the shared expert */
	{
		size_t off = 0;
		/* first pass: count the groups, so the pointer lists can be laid out */
		for (size_t e = 0; e < E; e++)
			G += g->h_info[e] > 0;
		G += Fs ? 1 : 0;
		int i = 0;
		for (size_t e = 0; e < E; e++) {
			int r = g->h_info[e];
			g->load_h[e] = (uint64_t)r;
			if (r == 0)
				continue;
			m_a[i] = (int)(2 * F); n_a[i] = r; k_a[i] = (int)H;
			m_b[i] = (int)H; n_b[i] = r; k_b[i] = (int)F;
			g->h_parr[i] = (char *)g->w13 + e * 2 * F * H * es;
			g->h_parr[G + i] = (char *)g->xp + off * H * es;
			g->h_parr[2 * G + i] = (char *)g->h13 + off * 2 * F * es;
			g->h_parr[3 * G + i] = (char *)g->w2 + e * H * F * es;
			g->h_parr[4 * G + i] = (char *)g->hact + off * F * es;
			g->h_parr[5 * G + i] = (char *)g->yrows + off * H * es;
			off += (size_t)r;
			i++;
		}
		if (Fs) {
			m_a[i] = (int)(2 * Fs); n_a[i] = (int)n; k_a[i] = (int)H;
			m_b[i] = (int)H; n_b[i] = (int)n; k_b[i] = (int)Fs;
			g->h_parr[i] = g->s13;
			g->h_parr[G + i] = g->x;
			g->h_parr[2 * G + i] = g->sh13;
			g->h_parr[3 * G + i] = g->s2;
			g->h_parr[4 * G + i] = g->shact;
			g->h_parr[5 * G + i] = g->sy;
		}
		g->n_dropped = (uint64_t)*g->h_dropped;
		/* the pointer lists for the grouped calls */
		st = CUDA_OK(cudaMemcpyAsync((void *)g->parr, (const void *)g->h_parr,
					     6 * (size_t)G * sizeof(void *), cudaMemcpyHostToDevice,
					     g->stream));
	}
	if (st == MOE_OK) {
		cudaEventRecord(g->ev[PROF_STAGE_GATE_UP], g->stream);
		st = gemm_stage(g, G, m_a, n_a, k_a, 0);
	}
	if (st == MOE_OK) {
		cudaEventRecord(g->ev[PROF_STAGE_ACTIVATION], g->stream);
		if (fp16) {
			launch_swiglu<__half>(g, g->h13, (size_t)rows, (int)F, g->hact);
			if (Fs)
				launch_swiglu<__half>(g, g->sh13, n, (int)Fs, g->shact);
		} else {
			launch_swiglu<__nv_bfloat16>(g, g->h13, (size_t)rows, (int)F, g->hact);
			if (Fs)
				launch_swiglu<__nv_bfloat16>(g, g->sh13, n, (int)Fs, g->shact);
		}
		cudaEventRecord(g->ev[PROF_STAGE_DOWN], g->stream);
		st = gemm_stage(g, G, m_b, n_b, k_b, 3 * (size_t)G);
	}
	if (st != MOE_OK)
		return st;

	/* combine */
	cudaEventRecord(g->ev[PROF_STAGE_COMBINE], g->stream);
	if (g->s_router)
		k_shared_gate<<<grid_for(n, 8), 256, 0, g->stream>>>(g->x32, g->s_router, n, (int)H,
								      g->sgate);
	if (fp16)
		launch_combine<__half>(g, n);
	else
		launch_combine<__nv_bfloat16>(g, n);
	cudaEventRecord(g->ev[PROF_STAGE_COUNT], g->stream);
	if ((st = CUDA_OK(cudaGetLastError())) != MOE_OK)
		return st;

	/* results to the host, outside the timed region */
	if ((st = CUDA_OK(cudaMemcpyAsync(y, g->y, n * H * sizeof(float), cudaMemcpyDeviceToHost,
					  g->stream))) != MOE_OK ||
	    (st = CUDA_OK(cudaMemcpyAsync(g->ids_h, g->ids, slots * sizeof(int32_t),
					  cudaMemcpyDeviceToHost, g->stream))) != MOE_OK ||
	    (st = CUDA_OK(cudaMemcpyAsync(g->gates_h, g->gates, slots * sizeof(float),
					  cudaMemcpyDeviceToHost, g->stream))) != MOE_OK ||
	    (st = CUDA_OK(cudaMemcpyAsync(g->logits_h, g->logits, n * E * sizeof(float),
					  cudaMemcpyDeviceToHost, g->stream))) != MOE_OK)
		return st;
	if ((st = CUDA_OK(cudaStreamSynchronize(g->stream))) != MOE_OK)
		return st;
	if (stage_s) {
		/* stage s runs from its event to the next stage's (ROUTER..COMBINE
		 * in order, ev[COUNT] the end) */
		for (int s = 0; s < PROF_STAGE_TOTAL; s++) {
			float ms = 0;
			int next = s + 1 == PROF_STAGE_TOTAL ? PROF_STAGE_COUNT : s + 1;
			if ((st = CUDA_OK(cudaEventElapsedTime(&ms, g->ev[s], g->ev[next]))) != MOE_OK)
				return st;
			stage_s[s] = ms * 1e-3;
		}
		{
			float ms = 0;
			if ((st = CUDA_OK(cudaEventElapsedTime(&ms, g->ev[PROF_STAGE_ROUTER],
							       g->ev[PROF_STAGE_COUNT]))) != MOE_OK)
				return st;
			stage_s[PROF_STAGE_TOTAL] = ms * 1e-3;
		}
	}
	/* FLOPs on the rows routed, as prof_forward_flops counts them */
	memset(g->flops, 0, sizeof g->flops);
	g->flops[PROF_STAGE_ROUTER] = 2.0 * (double)n * (double)H * (double)E;
	g->flops[PROF_STAGE_GATE_UP] = 4.0 * (double)rows * (double)H * (double)F +
				       4.0 * (double)(Fs ? n : 0) * (double)H * (double)Fs;
	g->flops[PROF_STAGE_DOWN] = g->flops[PROF_STAGE_GATE_UP] / 2;
	g->flops[PROF_STAGE_TOTAL] = g->flops[PROF_STAGE_ROUTER] + g->flops[PROF_STAGE_GATE_UP] +
				     g->flops[PROF_STAGE_DOWN];
	return MOE_OK;
}

enum moe_status prof_cuda_profile(struct prof_cuda *g, const float *x, size_t n, float *y,
				  int warmup, int reps, struct prof_result *r)
{
	double *t, *col;
	enum moe_status st = MOE_OK;

	if (reps < 1 || warmup < 0)
		MOE_FAIL(MOE_EINVAL, "cuda: reps %d, warmup %d: expected reps >= 1, warmup >= 0", reps,
			 warmup);
	memset(r, 0, sizeof *r);
	t = (double *)malloc((size_t)reps * PROF_STAGE_COUNT * sizeof(double));
	col = (double *)malloc((size_t)reps * sizeof(double));
	if (!t || !col) {
		free(t);
		free(col);
		MOE_FAIL(MOE_ENOMEM, "cuda: out of memory for %d repetitions", reps);
	}
	for (int i = 0; i < warmup && st == MOE_OK; i++)
		st = prof_cuda_run(g, x, n, y, NULL);
	for (int i = 0; i < reps && st == MOE_OK; i++)
		st = prof_cuda_run(g, x, n, y, t + (size_t)i * PROF_STAGE_COUNT);
	if (st == MOE_OK) {
		r->reps = reps;
		r->warmup = warmup;
		for (int s = 0; s < PROF_STAGE_COUNT; s++) {
			for (int i = 0; i < reps; i++)
				col[i] = t[(size_t)i * PROF_STAGE_COUNT + s];
			prof_stat_of(col, (size_t)reps, &r->stage[s]);
			r->flops[s] = g->flops[s];
		}
		r->gflops = r->stage[PROF_STAGE_TOTAL].median_s > 0
				    ? g->flops[PROF_STAGE_TOTAL] / r->stage[PROF_STAGE_TOTAL].median_s / 1e9
				    : 0;
		for (int e = 0; e < g->E; e++)
			r->routed_rows += (double)g->load_h[e];
		r->dropped = (double)g->n_dropped;
		r->peak_rss_bytes = g->bytes;
	}
	free(t);
	free(col);
	return st;
}

const int32_t *prof_cuda_ids(const struct prof_cuda *g) { return g->ids_h; }
const float *prof_cuda_gates(const struct prof_cuda *g) { return g->gates_h; }
const float *prof_cuda_logits(const struct prof_cuda *g) { return g->logits_h; }
const uint64_t *prof_cuda_load(const struct prof_cuda *g) { return g->load_h; }
uint64_t prof_cuda_dropped(const struct prof_cuda *g) { return g->n_dropped; }
const struct prof_layer_cfg *prof_cuda_cfg(const struct prof_cuda *g) { return &g->cfg; }
const struct prof_cuda_device *prof_cuda_dev(const struct prof_cuda *g) { return &g->dev; }
double prof_cuda_bytes(const struct prof_cuda *g) { return g->bytes; }

double prof_cuda_flops(const struct prof_cuda *g, enum prof_stage stage)
{
	return stage >= 0 && stage < PROF_STAGE_COUNT ? g->flops[stage] : 0;
}

const char *prof_cuda_gemm_name(const struct prof_cuda *g)
{
	return g->gemm == PROF_CUDA_GEMM_LOOP ? "loop" : "grouped";
}
