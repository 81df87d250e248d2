/* profiler/cuda/a2a.cu: all-to-all between the GPUs of one node with NCCL
 * (profiler/cuda/cuda_backend.h: prof_cuda_a2a_exchange, prof_cuda_a2a_run):
 * one process, one host thread per GPU, communicators from ncclCommInitAll;
 * dispatch and combine as NCCL groups of ncclSend/ncclRecv, timed with CUDA
 * events, the data received checked. */
#include <cuda_runtime.h>
#include <nccl.h>
#include <pthread.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "profiler/cuda/cuda_int.h"

static enum moe_status nccl_check(ncclResult_t r, const char *call, const char *file, int line)
{
	if (r == ncclSuccess)
		return MOE_OK;
	return moe_error(MOE_ERUNTIME, "nccl: %s: %s (%d) at %s:%d", call, ncclGetErrorString(r),
			 (int)r, file, line);
}
#define NCCL_OK(call) nccl_check((call), #call, __FILE__, __LINE__)
#define CUDA_OK(call) PROF_CUDA_OK(call)

/* The value GPU `src` sends to GPU `dst` (of R) at float index i of that
 * pair's block: an integer below 2^24, so exact in FP32; distinct for every
 * pair up to R = 64 and for neighbouring indices. */
__host__ __device__ inline float tag(int src, int dst, int R, size_t i)
{
	return (float)((((size_t)src * (size_t)R + (size_t)dst) % 4096) * 4096 + i % 4096);
}

__global__ void k_fill(float *buf, int src, int gpus, const size_t *cnt, const size_t *off)
{
	for (int dst = 0; dst < gpus; dst++)
		for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < cnt[dst];
		     i += (size_t)gridDim.x * blockDim.x)
			buf[off[dst] + i] = tag(src, dst, gpus, i);
}

/* Counts the wrong values received from each source: bad[src] (first index
 * kept in first[src]). */
__global__ void k_check(const float *buf, int dst, int gpus, const size_t *cnt, const size_t *off,
			unsigned long long *bad, unsigned long long *first)
{
	for (int src = 0; src < gpus; src++)
		for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < cnt[src];
		     i += (size_t)gridDim.x * blockDim.x)
			if (buf[off[src] + i] != tag(src, dst, gpus, i)) {
				atomicAdd(&bad[src], 1ULL);
				atomicMin(&first[src], (unsigned long long)i);
			}
}

struct a2a_shared {
	int gpus, warmup, iters;
	const size_t *bytes;       /* [gpus x gpus] */
	ncclComm_t *comms;
	pthread_barrier_t bar;
	int failed;                /* set by a GPU's thread that failed a phase */
	pthread_mutex_t mu;        /* the start gate: */
	pthread_cond_t cv;
	int go;                    /* 0 wait, 1 run, -1 give up (a thread did not start) */
	double *disp_s, *comb_s;   /* [gpus]: mean time of one call */
};

/* End of a phase, on every GPU's thread: whether every thread succeeded so
 * far.  All threads call it the same number of times until the first phase
 * that failed somewhere, and then all leave, so none waits forever at the
 * barrier.  (A failure inside an NCCL exchange, after the peers entered it,
 * is not covered: NCCL waits for the missing peer.) */
static int phase_ok(struct a2a_shared *sh, enum moe_status st)
{
	if (st != MOE_OK)
		__atomic_store_n(&sh->failed, 1, __ATOMIC_SEQ_CST);
	pthread_barrier_wait(&sh->bar);
	return !__atomic_load_n(&sh->failed, __ATOMIC_SEQ_CST);
}

struct a2a_thread {
	struct a2a_shared *sh;
	int rank;
	enum moe_status st;
	char msg[1024];
};

/* One exchange: send sc[j] floats at so[j] to every j, receive rc[j] at ro[j]
 * from every j; the diagonal is a device copy. */
static enum moe_status exchange(int me, int gpus, ncclComm_t comm, cudaStream_t s, float *sb,
				float *rb, const size_t *sc, const size_t *so, const size_t *rc,
				const size_t *ro)
{
	enum moe_status st;

	if (sc[me] && (st = CUDA_OK(cudaMemcpyAsync(rb + ro[me], sb + so[me], sc[me] * sizeof(float),
						    cudaMemcpyDeviceToDevice, s))) != MOE_OK)
		return st;
	if ((st = NCCL_OK(ncclGroupStart())) != MOE_OK)
		return st;
	for (int j = 0; j < gpus && st == MOE_OK; j++) {
		if (j == me)
			continue;
		if (sc[j])
			st = NCCL_OK(ncclSend(sb + so[j], sc[j], ncclFloat, j, comm, s));
		if (st == MOE_OK && rc[j])
			st = NCCL_OK(ncclRecv(rb + ro[j], rc[j], ncclFloat, j, comm, s));
	}
	/* the group is closed whatever happened inside it */
	{
		enum moe_status st2 = NCCL_OK(ncclGroupEnd());
		return st != MOE_OK ? st : st2;
	}
}

/* One direction, on every GPU's thread: sh->warmup untimed exchanges, the
 * end of a phase (phase_ok), then sh->iters exchanges between events e0 and
 * e1; *mean_s (out) the mean time of one.  Returns 0 when some GPU failed
 * before the timed calls (the caller leaves without another phase_ok), else
 * 1 with *st the timed calls' status.  *st must be MOE_OK on entry. */
static int timed_exchange(struct a2a_shared *sh, int me, cudaStream_t s, cudaEvent_t e0,
			  cudaEvent_t e1, float *sb, float *rb, const size_t *sc, const size_t *so,
			  const size_t *rc, const size_t *ro, double *mean_s, enum moe_status *st)
{
	float ms;

	for (int i = 0; i < sh->warmup && *st == MOE_OK; i++)
		*st = exchange(me, sh->gpus, sh->comms[me], s, sb, rb, sc, so, rc, ro);
	if (*st == MOE_OK)
		*st = CUDA_OK(cudaStreamSynchronize(s));
	if (!phase_ok(sh, *st))
		return 0;
	cudaEventRecord(e0, s);
	for (int i = 0; i < sh->iters && *st == MOE_OK; i++)
		*st = exchange(me, sh->gpus, sh->comms[me], s, sb, rb, sc, so, rc, ro);
	cudaEventRecord(e1, s);
	if (*st == MOE_OK)
		*st = CUDA_OK(cudaEventSynchronize(e1));
	if (*st == MOE_OK && (*st = CUDA_OK(cudaEventElapsedTime(&ms, e0, e1))) == MOE_OK)
		*mean_s = ms * 1e-3 / sh->iters;
	return 1;
}

/* What arrived in rb on GPU me: every block tagged with its source, this GPU
 * and its index (k_fill).  cnt and off are the receive counts and offsets on
 * the device, bad [2 gpus] device scratch.  Returns MOE_OK, or MOE_ERUNTIME
 * naming the first source that sent a wrong value (or a CUDA error). */
static enum moe_status check_received(int me, int gpus, cudaStream_t s, const float *rb,
				      const size_t *cnt, const size_t *off, unsigned long long *bad)
{
	unsigned long long h_bad[2 * 256];
	enum moe_status st;

	cudaMemsetAsync(bad, 0, (size_t)gpus * sizeof(unsigned long long), s);
	cudaMemsetAsync(bad + gpus, 0xff, (size_t)gpus * sizeof(unsigned long long), s);
	k_check<<<1024, 256, 0, s>>>(rb, me, gpus, cnt, off, bad, bad + gpus);
	if ((st = CUDA_OK(cudaMemcpyAsync(h_bad, bad, 2 * (size_t)gpus * sizeof(unsigned long long),
					  cudaMemcpyDeviceToHost, s))) != MOE_OK ||
	    (st = CUDA_OK(cudaStreamSynchronize(s))) != MOE_OK)
		return st;
	for (int j = 0; j < gpus; j++)
		if (h_bad[j])
			return moe_error(MOE_ERUNTIME, "a2a: GPU %d received %llu wrong values from GPU %d (first at float %llu)",
					 me, h_bad[j], j, h_bad[gpus + j]);
	return MOE_OK;
}

static enum moe_status a2a_rank(struct a2a_thread *t)
{
	struct a2a_shared *sh = t->sh;
	const int R = sh->gpus, me = t->rank;
	size_t *h = NULL, *sc = NULL, *so = NULL, *rc = NULL, *ro = NULL, stot = 0, rtot = 0;
	size_t *d_meta = NULL;
	float *sb = NULL, *rb = NULL;
	unsigned long long *d_bad = NULL;
	cudaStream_t s = NULL;
	cudaEvent_t e0 = NULL, e1 = NULL;
	enum moe_status st;

	/* every path goes through phase_ok (label out), so no other GPU's
	 * thread waits for this one at a barrier */
	if ((st = CUDA_OK(cudaSetDevice(me))) != MOE_OK)
		goto out;
	if (!(h = (size_t *)calloc(4 * (size_t)R, sizeof(size_t)))) {
		st = moe_error(MOE_ENOMEM, "a2a: out of memory");
		goto out;
	}
	sc = h;
	so = h + R;
	rc = h + 2 * R;
	ro = h + 3 * R;
	for (int j = 0; j < R; j++) {
		sc[j] = sh->bytes[(size_t)me * R + j] / sizeof(float);
		rc[j] = sh->bytes[(size_t)j * R + me] / sizeof(float);
		so[j] = stot;
		ro[j] = rtot;
		stot += sc[j];
		rtot += rc[j];
	}
	if ((st = CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking))) != MOE_OK ||
	    (st = CUDA_OK(cudaEventCreate(&e0))) != MOE_OK ||
	    (st = CUDA_OK(cudaEventCreate(&e1))) != MOE_OK ||
	    (st = CUDA_OK(cudaMalloc((void **)&sb, (stot > rtot ? stot : rtot) * sizeof(float) + 4))) != MOE_OK ||
	    (st = CUDA_OK(cudaMalloc((void **)&rb, (stot > rtot ? stot : rtot) * sizeof(float) + 4))) != MOE_OK ||
	    (st = CUDA_OK(cudaMalloc((void **)&d_meta, 4 * (size_t)R * sizeof(size_t)))) != MOE_OK ||
	    (st = CUDA_OK(cudaMalloc((void **)&d_bad, 2 * (size_t)R * sizeof(unsigned long long)))) != MOE_OK)
		goto out;
	if ((st = CUDA_OK(cudaMemcpy(d_meta, h, 4 * (size_t)R * sizeof(size_t), cudaMemcpyHostToDevice))) != MOE_OK)
		goto out;
	k_fill<<<1024, 256, 0, s>>>(sb, me, R, d_meta, d_meta + R);
	st = CUDA_OK(cudaStreamSynchronize(s));
out:
	if (!phase_ok(sh, st))
		goto done;

	/* dispatch, its data checked, then the combine: the same blocks back
	 * (what j sent to me goes back to j) */
	if (!timed_exchange(sh, me, s, e0, e1, sb, rb, sc, so, rc, ro, &sh->disp_s[me], &st))
		goto done;
	if (st == MOE_OK)
		st = check_received(me, R, s, rb, d_meta + 2 * R, d_meta + 3 * R, d_bad);
	if (!phase_ok(sh, st))
		goto done;
	timed_exchange(sh, me, s, e0, e1, rb, sb, rc, ro, sc, so, &sh->comb_s[me], &st);
done:
	if (s)
		cudaStreamSynchronize(s);
	cudaFree(sb);
	cudaFree(rb);
	cudaFree(d_meta);
	cudaFree(d_bad);
	if (e0)
		cudaEventDestroy(e0);
	if (e1)
		cudaEventDestroy(e1);
	if (s)
		cudaStreamDestroy(s);
	free(h);
	return st;
}

static void *a2a_main(void *arg)
{
	struct a2a_thread *t = (struct a2a_thread *)arg;
	struct a2a_shared *sh = t->sh;
	int go;

	/* wait until every thread has started (or one could not) */
	pthread_mutex_lock(&sh->mu);
	while (sh->go == 0)
		pthread_cond_wait(&sh->cv, &sh->mu);
	go = sh->go;
	pthread_mutex_unlock(&sh->mu);
	if (go < 0)
		return NULL;
	t->st = a2a_rank(t);
	if (t->st != MOE_OK)
		snprintf(t->msg, sizeof t->msg, "%s", moe_errmsg());
	return NULL;
}

enum moe_status prof_cuda_a2a_exchange(int gpus, const size_t *bytes, int warmup, int iters,
				       struct prof_cuda_a2a_result *r)
{
	struct a2a_shared sh;
	struct a2a_thread *th = NULL;
	pthread_t *tid = NULL;
	int *devs = NULL, count, started = 0;
	enum moe_status st;

	memset(r, 0, sizeof *r);
	if ((st = prof_cuda_device_count(&count)) != MOE_OK)
		return st;
	if (gpus < 1 || gpus > count || gpus > 256)
		MOE_FAIL(MOE_EINVAL, "a2a: %d GPUs: expected 1 to %d (the devices of this node)", gpus,
			 count < 256 ? count : 256);
	if (iters < 1 || warmup < 0)
		MOE_FAIL(MOE_EINVAL, "a2a: iters %d, warmup %d: expected iters >= 1, warmup >= 0", iters,
			 warmup);
	for (int i = 0; i < gpus; i++) {
		double sent = 0;
		for (int j = 0; j < gpus; j++) {
			size_t b = bytes[(size_t)i * gpus + j];
			if (b % sizeof(float))
				MOE_FAIL(MOE_EINVAL, "a2a: %zu bytes from GPU %d to GPU %d: expected a multiple of 4",
					 b, i, j);
			if (j != i)
				sent += (double)b;
		}
		r->bytes_max = sent > r->bytes_max ? sent : r->bytes_max;
	}
	memset(&sh, 0, sizeof sh);
	sh.gpus = gpus;
	sh.warmup = warmup;
	sh.iters = iters;
	sh.bytes = bytes;
	sh.comms = (ncclComm_t *)calloc((size_t)gpus, sizeof(ncclComm_t));
	sh.disp_s = (double *)calloc((size_t)gpus, sizeof(double));
	sh.comb_s = (double *)calloc((size_t)gpus, sizeof(double));
	th = (struct a2a_thread *)calloc((size_t)gpus, sizeof *th);
	tid = (pthread_t *)calloc((size_t)gpus, sizeof *tid);
	devs = (int *)calloc((size_t)gpus, sizeof(int));
	if (!sh.comms || !sh.disp_s || !sh.comb_s || !th || !tid || !devs) {
		st = moe_error(MOE_ENOMEM, "a2a: out of memory for %d GPUs", gpus);
		goto out;
	}
	for (int i = 0; i < gpus; i++)
		devs[i] = i;
	if ((st = NCCL_OK(ncclCommInitAll(sh.comms, gpus, devs))) != MOE_OK)
		goto out;
	pthread_barrier_init(&sh.bar, NULL, (unsigned)gpus);
	pthread_mutex_init(&sh.mu, NULL);
	pthread_cond_init(&sh.cv, NULL);
	for (int i = 0; i < gpus; i++) {
		th[i].sh = &sh;
		th[i].rank = i;
		if (pthread_create(&tid[i], NULL, a2a_main, &th[i]) != 0) {
			st = moe_error(MOE_ERUNTIME, "a2a: cannot start the thread of GPU %d", i);
			break;
		}
		started++;
	}
	/* open the gate: all threads run, or (one missing) all give up at once */
	pthread_mutex_lock(&sh.mu);
	sh.go = started == gpus ? 1 : -1;
	pthread_cond_broadcast(&sh.cv);
	pthread_mutex_unlock(&sh.mu);
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	pthread_barrier_destroy(&sh.bar);
	pthread_mutex_destroy(&sh.mu);
	pthread_cond_destroy(&sh.cv);
	if (st == MOE_OK)
		for (int i = 0; i < gpus; i++)
			if (th[i].st != MOE_OK) {
				st = moe_error(th[i].st, "%s", th[i].msg);
				break;
			}
	if (st == MOE_OK)
		for (int i = 0; i < gpus; i++) {
			r->dispatch_s = sh.disp_s[i] > r->dispatch_s ? sh.disp_s[i] : r->dispatch_s;
			r->combine_s = sh.comb_s[i] > r->combine_s ? sh.comb_s[i] : r->combine_s;
		}
	r->gpus = gpus;
out:
	if (sh.comms)
		for (int i = 0; i < gpus; i++)
			if (sh.comms[i])
				ncclCommDestroy(sh.comms[i]);
	free(sh.comms);
	free(sh.disp_s);
	free(sh.comb_s);
	free(th);
	free(tid);
	free(devs);
	return st;
}

enum moe_status prof_cuda_a2a_run(int gpus, size_t bytes, int warmup, int iters, double *time_s,
				  double *sent_bytes)
{
	struct prof_cuda_a2a_result r;
	size_t per, *m;
	enum moe_status st;

	*time_s = 0;
	*sent_bytes = 0;
	if (gpus < 1 || gpus > 256)
		MOE_FAIL(MOE_EINVAL, "a2a: %d GPUs: expected 1 to 256", gpus);
	per = bytes / sizeof(float) / (size_t)gpus;
	per = per ? per : 1;
	if (!(m = (size_t *)malloc((size_t)gpus * (size_t)gpus * sizeof(size_t))))
		MOE_FAIL(MOE_ENOMEM, "a2a: out of memory");
	for (size_t i = 0; i < (size_t)gpus * (size_t)gpus; i++)
		m[i] = per * sizeof(float);
	st = prof_cuda_a2a_exchange(gpus, m, warmup, iters, &r);
	free(m);
	if (st == MOE_OK) {
		*time_s = r.dispatch_s;
		*sent_bytes = (double)(per * sizeof(float) * (size_t)gpus);
	}
	return st;
}

enum moe_status prof_cuda_a2a_layer_bytes(const int32_t *ids, size_t n, int k, int experts,
					  int gpus, size_t row_bytes, size_t *bytes)
{
	size_t per_gpu;

	if (gpus < 1 || experts < 1 || experts % gpus)
		MOE_FAIL(MOE_EINVAL, "a2a: %d GPUs for %d experts: expected a divisor of the experts",
			 gpus, experts);
	if (n < 1 || k < 1)
		MOE_FAIL(MOE_EINVAL, "a2a: %zu tokens of %d slots: expected at least 1 of each", n, k);
	per_gpu = (size_t)(experts / gpus);
	memset(bytes, 0, (size_t)gpus * (size_t)gpus * sizeof *bytes);
	for (int r = 0; r < gpus; r++) {
		/* profiler/ep.c's split: GPU r owns [r n / R, (r + 1) n / R) */
		size_t t0 = n * (size_t)r / (size_t)gpus, t1 = n * (size_t)(r + 1) / (size_t)gpus;
		for (size_t t = t0; t < t1; t++)
			for (int j = 0; j < k; j++) {
				int32_t e = ids[t * (size_t)k + (size_t)j];
				if (e == MOE_ROUTE_NONE)
					continue;
				if (e < 0 || e >= experts)
					MOE_FAIL(MOE_ERANGE, "a2a: token %zu slot %d: expert %d, expected 0 to %d",
						 t, j, (int)e, experts - 1);
				bytes[(size_t)r * (size_t)gpus + (size_t)e / per_gpu] += row_bytes;
			}
	}
	return MOE_OK;
}
