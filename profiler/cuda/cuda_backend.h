/* profiler/cuda/cuda_backend.h: the MoE layer's forward pass on an NVIDIA GPU
 * (BF16 or FP16 weights and activations, FP32 accumulation), timed per stage
 * with CUDA events, and the GPU all-to-all (NCCL) of one node.  Plain C: the
 * CUDA code lives in the .cu files of profiler/cuda/ behind this header, so C callers
 * (cli/cmd_profile.c, tests, benchmarks) compile without CUDA headers.  Built
 * only when configure finds nvcc (HAVE_CUDA in config.h).
 *
 *     struct prof_cuda_opts o = PROF_CUDA_OPTS_INIT;   // device 0, BF16, grouped GEMM
 *     struct prof_cuda *g;
 *     struct prof_result r;                             // profiler/harness.h
 *     if (prof_cuda_new(w, &o, n, &g) != MOE_OK)        // MOE_ENOTFOUND: no CUDA device
 *             fprintf(stderr, "moekit: %s\n", moe_errmsg());
 *     prof_cuda_profile(g, x, n, y, 2, 10, &r);         // r.stage[PROF_STAGE_TOTAL].median_s
 *     prof_cuda_free(g);
 *
 * The forward, for n tokens x [n x H] (FP32 on the host, converted to the
 * device type on the GPU before the timed region):
 *
 *     router      logits [n x E] FP32 = x . router^T    cublasGemmEx, BF16 in, FP32 out and compute
 *     routing     ids, gates [n x k] from the FP32 logits: one thread per token
 *                 running moe/route.h's policy with the same float operations
 *                 (its exp polynomial, its summation order), so the choices are
 *                 those of moe_route_batch on the same logits; capacity (drop)
 *                 as a sequential pass in rank-then-token order
 *     permute     counting sort of the slots by expert on the GPU (per-chunk
 *                 histograms, exclusive scan, stable scatter: rows of an expert
 *                 in token order, as on the CPU), then a row gather of x; the
 *                 per-expert counts are copied to the host (one synchronization:
 *                 the GEMM shapes depend on them)
 *     gate_up     [rows_e x 2F] = x_e . [gate_e; up_e]^T  (gate and up concatenated
 *                 at upload: one GEMM), all experts in one cublasGemmGroupedBatchedEx
 *                 (or a loop of cublasGemmEx), the shared expert as one more group
 *     activation  h = SiLU(gate) * up, one fused kernel, FP32 math, device type out
 *     down        [rows_e x H] = h_e . down_e^T, grouped as gate_up
 *     combine     y[t] = sum_j g[t,j] y_{ids[t,j]}[t] + s(t) shared(x[t]) in FP32,
 *                 slots in slot order: a gather, not atomics, so results are
 *                 bit-for-bit reproducible run to run
 *
 * Stage times are CUDA event intervals on the one stream (total: first event to
 * last, host synchronization included); the statistics are the CPU harness's
 * (profiler/harness.h: median, p10, p90, min), and the stages are enum
 * prof_stage of profiler/forward.h, so the CLI and the store treat both
 * back ends alike.
 *
 * Errors: CUDA, cuBLAS and NCCL failures become MOE_ERUNTIME with the call and
 * the library's error string ("cuda: cudaMalloc(&d, 4096): out of memory");
 * no device (or no driver) is MOE_ENOTFOUND "no CUDA device (...)".
 *
 * Thread safety: a struct prof_cuda serves one thread at a time and makes its
 * device current on that thread in every call.
 */
#ifndef MOEKIT_PROFILER_CUDA_BACKEND_H
#define MOEKIT_PROFILER_CUDA_BACKEND_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <gsl/gsl_rng.h>

/* The project's C headers declare no C linkage of their own; the system
 * headers they include are included above, outside the block, since C++
 * library headers must not be read with C linkage. */
#ifdef __cplusplus
extern "C" {
#endif

#include "moe/error.h"
#include "profiler/forward.h"
#include "profiler/harness.h"
#include "profiler/weights.h"

/* ------------------------------------------------------------ devices */

struct prof_cuda_device {
	int index;              /* CUDA device ordinal */
	char name[256];         /* "NVIDIA H100 80GB HBM3" */
	int cc_major, cc_minor; /* compute capability (9.0 for H100) */
	int sm_count;           /* streaming multiprocessors */
	double mem_bytes;       /* global memory, bytes */
	double sm_clock_hz;     /* peak SM clock, Hz (0 when the driver does not say) */
	double mem_clock_hz;    /* peak memory clock, Hz (0 when unknown) */
	int mem_bus_bits;       /* memory bus width, bits (0 when unknown) */
	int driver_version;     /* CUDA driver API version: 13000 = 13.0 */
	int runtime_version;    /* CUDA runtime version */
	int cublas_version;     /* cuBLAS: 130100 = 13.1.0 */
	int nccl_version;       /* NCCL: 22809 = 2.28.9 */
};

/* Number of CUDA devices.  Returns MOE_OK with *count >= 1; MOE_ENOTFOUND
 * "no CUDA device (...)" when there is none or no usable driver (the reason
 * from cudaGetDeviceCount in parentheses), *count then 0. */
enum moe_status prof_cuda_device_count(int *count);

/* Facts of device `device`.  Returns MOE_OK; MOE_ENOTFOUND when there is no
 * device; MOE_EINVAL when device is out of range; MOE_ERUNTIME for a CUDA
 * error. */
enum moe_status prof_cuda_device_query(int device, struct prof_cuda_device *out);

/* --------------------------------------------------- the forward pass */

enum prof_cuda_dtype {
	PROF_CUDA_BF16,   /* bfloat16 weights and activations (default) */
	PROF_CUDA_FP16    /* IEEE half */
};

enum prof_cuda_gemm {
	PROF_CUDA_GEMM_AUTO,    /* grouped; a loop when cuBLAS refuses the grouped call or
				 * hidden, ffn or shared ffn is not a multiple of 8 (the
				 * grouped GEMM's 16-byte alignment) */
	PROF_CUDA_GEMM_GROUPED, /* cublasGemmGroupedBatchedEx, one call per GEMM stage */
	PROF_CUDA_GEMM_LOOP     /* one cublasGemmEx per expert */
};

struct prof_cuda_opts {
	int device;                  /* CUDA device ordinal */
	enum prof_cuda_dtype dtype;
	enum prof_cuda_gemm gemm;
	/* the routing policy, NULL = prof_layer_cfg_policy(&w->cfg, w->bias);
	 * when given (borrowed for prof_cuda_new only; its bias is copied) its
	 * experts and k must be the cfg's: how top-p or a capacity limit not in
	 * a prof_layer_cfg are run */
	const struct moe_route_policy *policy;
};
#define PROF_CUDA_OPTS_INIT {0, PROF_CUDA_BF16, PROF_CUDA_GEMM_AUTO, NULL}

struct prof_cuda;

/* Uploads w to device o->device (gate and up concatenated per expert into
 * [2F x H], every matrix converted to o->dtype on the device through an FP32
 * staging buffer) and allocates every buffer for batches of up to max_tokens
 * tokens.  w is borrowed for the call only.  The routing policy is
 * o->policy or prof_layer_cfg_policy(&w->cfg, w->bias): every kind of
 * moe/route.h, groups (up to 64; group_topn or the group size <= 32),
 * capacity with MOE_ROUTE_DROP.  Returns MOE_OK with *out
 * owned by the caller (free with prof_cuda_free); MOE_ENOTFOUND when there is
 * no CUDA device; MOE_EINVAL for a bad cfg, device ordinal or max_tokens;
 * MOE_EUNSUPPORTED for a policy the GPU kernel lacks (noise, node limits,
 * rerouting), and for PROF_CUDA_GEMM_GROUPED when hidden, ffn or shared ffn
 * is not a multiple of 8; MOE_ERUNTIME for a CUDA or cuBLAS error (out of
 * device memory included, naming the bytes). */
enum moe_status prof_cuda_new(const struct prof_weights *w, const struct prof_cuda_opts *o,
			      size_t max_tokens, struct prof_cuda **out);

/* Frees every device and host buffer; NULL is a no-op. */
void prof_cuda_free(struct prof_cuda *g);

/* Runs the layer on n tokens: x [n x H] FP32 (borrowed), y [n x H] FP32
 * (out, the caller's), stage_s [PROF_STAGE_COUNT] (out, seconds from CUDA
 * events; may be NULL).  Blocks until the GPU is done.  Returns MOE_OK;
 * MOE_EINVAL when n is 0 or above max_tokens; MOE_EFORMAT naming the token
 * and expert of the first NaN or infinite logit; MOE_ERUNTIME for a CUDA or
 * cuBLAS error. */
enum moe_status prof_cuda_run(struct prof_cuda *g, const float *x, size_t n, float *y,
			      double *stage_s);

/* warmup untimed runs, then reps timed ones; r as the CPU harness fills it
 * (stage statistics, flops, gflops, routed rows, dropped; peak_rss_bytes is
 * the device memory this layer holds).  Returns MOE_OK; MOE_EINVAL when
 * reps < 1 or warmup < 0; the errors of prof_cuda_run; MOE_ENOMEM. */
enum moe_status prof_cuda_profile(struct prof_cuda *g, const float *x, size_t n, float *y,
				  int warmup, int reps, struct prof_result *r);

/* The last run's routing, copied to the host: ids and gates [n x k], logits
 * [n x E] (FP32, as the router GEMM wrote them), slots per expert [E];
 * borrowed, valid until the next run. */
const int32_t *prof_cuda_ids(const struct prof_cuda *g);
const float *prof_cuda_gates(const struct prof_cuda *g);
const float *prof_cuda_logits(const struct prof_cuda *g);
const uint64_t *prof_cuda_load(const struct prof_cuda *g);
uint64_t prof_cuda_dropped(const struct prof_cuda *g);

/* FLOPs of the last run as prof_forward_flops counts them (rows actually
 * routed; ROUTER, GATE_UP, DOWN, TOTAL; 0 for the other stages). */
double prof_cuda_flops(const struct prof_cuda *g, enum prof_stage stage);

/* The layer configuration; the device facts; which expert GEMM path ran
 * ("grouped" or "loop"); device bytes held by the layer. */
const struct prof_layer_cfg *prof_cuda_cfg(const struct prof_cuda *g);
const struct prof_cuda_device *prof_cuda_dev(const struct prof_cuda *g);
const char *prof_cuda_gemm_name(const struct prof_cuda *g);
double prof_cuda_bytes(const struct prof_cuda *g);

/* The routing kernel's code run on the host, one token after another: ids
 * and weights [n x k], load [E] (may be NULL) and *n_dropped (may be NULL)
 * as moe_route_batch gives them, for a policy prof_cuda_new accepts (its
 * bias is used as given).  For tests without a GPU: it checks the port of
 * moe/route.c that the device runs (same source, compiled for the host).
 * Needs no device.  Returns MOE_OK; MOE_EINVAL for an invalid policy;
 * MOE_EUNSUPPORTED as prof_cuda_new; MOE_EFORMAT naming the token and expert
 * of a NaN or infinite logit; MOE_ENOMEM. */
enum moe_status prof_cuda_route_host(const struct moe_route_policy *p, const float *logits,
				     size_t n, int32_t *ids, float *weights, uint64_t *load,
				     uint64_t *n_dropped);

/* Rounds v[0..n) in place to the nearest value of dtype (round to nearest
 * even, as the device conversion does), so a CPU reference can run on the
 * values the GPU sees.  Host only; needs no device. */
void prof_cuda_round(float *v, size_t n, enum prof_cuda_dtype dtype);

/* "bf16", "fp16"; NULL when out of range.  _parse returns 1 and sets *out, or
 * 0 when the name is unknown. */
const char *prof_cuda_dtype_name(enum prof_cuda_dtype d);
int prof_cuda_dtype_parse(const char *s, enum prof_cuda_dtype *out);

/* ------------------------------------------- all-to-all on one node (NCCL) */

/* One process, one host thread per GPU, communicators from ncclCommInitAll
 * over devices 0..gpus-1.  A dispatch moves bytes[i * gpus + j] bytes from
 * GPU i to GPU j (the diagonal stays local: copied, not sent) as one NCCL
 * group of ncclSend/ncclRecv per GPU; the combine moves the same amounts
 * back (j to i).  Each is timed with CUDA events on every GPU over `iters`
 * calls after `warmup`; the time of one call is the maximum over GPUs of the
 * mean.  The data received is checked (every float carries its source,
 * destination and index).
 *
 * Bandwidth, as nccl-tests defines it for alltoall (doc/PERFORMANCE.md
 * there), for a uniform exchange where every GPU sends S bytes in total (S/R
 * to each GPU, itself included) in time t:
 *
 *     algbw = S / t          busbw = algbw * (R - 1) / R
 *
 * Example: R = 8, S = 1 GiB, t = 3.5 ms: algbw = 306.8 GB/s, busbw = 268.4 GB/s.
 *
 * Across nodes under MPI (ncclCommInitRank with an id from MPI_Bcast) is not
 * built: this build's MPI path (profiler/ep.h) is CPU-only. */
struct prof_cuda_a2a_result {
	int gpus;
	double dispatch_s;      /* one dispatch call, max over GPUs of the mean */
	double combine_s;       /* one combine call */
	double bytes_max;       /* largest number of bytes one GPU sends (diagonal excluded) */
};

/* bytes [gpus x gpus] (borrowed; each a multiple of 4).  gpus 1..device
 * count.  Returns MOE_OK; MOE_ENOTFOUND when there is no CUDA device;
 * MOE_EINVAL for gpus out of range, a size not a multiple of 4, iters < 1 or
 * warmup < 0; MOE_ENOMEM; MOE_ERUNTIME for a CUDA or NCCL error or wrong data
 * received (naming the GPU pair and index). */
enum moe_status prof_cuda_a2a_exchange(int gpus, const size_t *bytes, int warmup, int iters,
				       struct prof_cuda_a2a_result *r);

/* The dispatch traffic of one routed MoE layer under expert parallelism over
 * `gpus` GPUs, the placement of profiler/ep.h: GPU r holds tokens
 * [r n / gpus, (r + 1) n / gpus) and experts [r E / gpus, (r + 1) E / gpus).
 * bytes[i * gpus + j] (out, [gpus x gpus]) = row_bytes times the slots of
 * GPU i's tokens routed to GPU j's experts (one row per slot, no
 * de-duplication of a token's experts on one GPU; unused slots,
 * MOE_ROUTE_NONE, send nothing; the diagonal stays local).  ids [n x k]
 * borrowed.  Host only.  Worked example: n = 4, k = 2, E = 4, 2 GPUs, ids
 * [0 2 | 1 3 | 2 3 | 0 -1], row_bytes 8: bytes = [16 16; 8 16].  Returns
 * MOE_OK; MOE_EINVAL when gpus < 1 or does not divide E, or n or k < 1;
 * MOE_ERANGE naming the slot whose expert id is out of range. */
enum moe_status prof_cuda_a2a_layer_bytes(const int32_t *ids, size_t n, int k, int experts,
					  int gpus, size_t row_bytes, size_t *bytes);

/* The uniform microbenchmark step: every GPU sends `bytes` in total, rounded
 * down to a multiple of 4 * gpus (at least 4 per pair), bytes / gpus to
 * each.  *time_s: the dispatch time of one call; *sent_bytes: the size used.
 * Errors as prof_cuda_a2a_exchange. */
enum moe_status prof_cuda_a2a_run(int gpus, size_t bytes, int warmup, int iters, double *time_s,
				  double *sent_bytes);

#ifdef __cplusplus
}
#endif

#endif
