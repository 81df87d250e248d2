/* profiler/ep.c: expert parallelism over MPI and the all-to-all
 * microbenchmark (see ep.h).  MPI errors are returned (MPI_ERRORS_RETURN on
 * the communicator) and wrapped as MOE_ERUNTIME with MPI's message. */
#include "config.h"
#include "profiler/ep.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct prof_ep {
	MPI_Comm comm;
	int rank, ranks;
	struct prof_layer_cfg cfg;  /* the whole layer */
	int el;                     /* experts per rank */
	size_t n, first, count;     /* batch, this rank's tokens */
	float *router, *bias;
	struct moe_route_policy pol;
	struct moe_route_workspace *rws;
	struct prof_forward *fexp;  /* the rank's experts, pre-routed rows */
	struct prof_forward *fsh;   /* shared experts as one expert, or NULL */
	float *logits, *gates, *send_x, *recv_x, *recv_y, *back_y, *ysh;
	int32_t *ids, *send_e, *recv_e, *zeros;
	size_t *slot_pos;           /* [count x k] row of each slot in send_x, SIZE_MAX unused */
	int *scount, *sdispl, *rcount, *rdispl, *scount_f, *sdispl_f, *rcount_f, *rdispl_f;
	size_t *cursor;
	double flops_local, sent_bytes, rows_local;
};

static const char *const ep_names[PROF_EP_STAGE_COUNT] = {
	"router", "routing", "permute", "dispatch", "experts", "combine_a2a", "combine", "total"};

const char *prof_ep_stage_name(enum prof_ep_stage s)
{
	return (unsigned)s < PROF_EP_STAGE_COUNT ? ep_names[s] : NULL;
}

static double now_s(void)
{
	return MPI_Wtime();
}

static enum moe_status mpi_fail(int rc, const char *what)
{
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;
	MPI_Error_string(rc, msg, &len);
	MOE_FAIL(MOE_ERUNTIME, "MPI %s: %s", what, msg);
}

#define MPI_TRY(call, what)                              \
	do {                                             \
		int mpi_rc_ = (call);                    \
		if (mpi_rc_ != MPI_SUCCESS)              \
			return mpi_fail(mpi_rc_, (what)); \
	} while (0)

void prof_ep_free(struct prof_ep *ep)
{
	if (!ep)
		return;
	prof_forward_free(ep->fexp);
	prof_forward_free(ep->fsh);
	moe_route_workspace_free(ep->rws);
	free(ep->router); free(ep->bias); free(ep->logits); free(ep->gates);
	free(ep->send_x); free(ep->recv_x); free(ep->recv_y); free(ep->back_y); free(ep->ysh);
	free(ep->ids); free(ep->send_e); free(ep->recv_e); free(ep->zeros); free(ep->slot_pos);
	free(ep->scount); free(ep->sdispl); free(ep->rcount); free(ep->rdispl);
	free(ep->scount_f); free(ep->sdispl_f); free(ep->rcount_f); free(ep->rdispl_f);
	free(ep->cursor);
	free(ep);
}

void prof_ep_tokens(const struct prof_ep *ep, size_t *first, size_t *count)
{
	*first = ep->first;
	*count = ep->count;
}

enum moe_status prof_ep_new(const struct prof_weights *w, MPI_Comm comm, int threads, size_t n,
			    struct prof_ep **out)
{
	const struct prof_layer_cfg *c = &w->cfg;
	struct prof_ep *ep;
	struct prof_weights sub;
	enum moe_status st;
	size_t H = (size_t)c->hidden, E = (size_t)c->experts, k = (size_t)c->top_k, R;
	size_t cap_rows, nl;

	*out = NULL;
	if (!(ep = calloc(1, sizeof *ep)))
		MOE_FAIL(MOE_ENOMEM, "out of memory");
	ep->comm = comm;
	MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
	MPI_Comm_rank(comm, &ep->rank);
	MPI_Comm_size(comm, &ep->ranks);
	R = (size_t)ep->ranks;
	ep->cfg = *c;
	if (E % R != 0) {
		prof_ep_free(ep);
		MOE_FAIL(MOE_EINVAL, "--ep %zu: the ranks must divide the %zu experts", R, E);
	}
	if (n < R) {
		prof_ep_free(ep);
		MOE_FAIL(MOE_EINVAL, "--tokens %zu: fewer tokens than the %zu ranks", n, R);
	}
	if (n * k * H > (size_t)INT_MAX) {
		prof_ep_free(ep);
		MOE_FAIL(MOE_EINVAL, "--tokens %zu: n x k x hidden exceeds MPI's int counts", n);
	}
	ep->el = (int)(E / R);
	ep->n = n;
	ep->first = n * (size_t)ep->rank / R;
	ep->count = n * (size_t)(ep->rank + 1) / R - ep->first;
	nl = ep->count;
	/* A rank may receive every slot of the batch. */
	cap_rows = n * k;

	/* The rank's experts as a layer of el experts fed pre-routed rows. */
	memset(&sub, 0, sizeof sub);
	sub.cfg = *c;
	sub.cfg.experts = ep->el;
	sub.cfg.top_k = 1;
	sub.cfg.shared_ffn = 0;
	sub.cfg.shared_gate = 0;
	sub.cfg.has_bias = 0;
	sub.cfg.groups = sub.cfg.groups_per_token = 1;
	sub.cfg.capacity_factor = 0;
	sub.cfg.kind = MOE_ROUTE_SOFTMAX_TOPK;
	sub.router = w->router; /* copied by prof_forward_new; unused */
	sub.gate = w->gate + (size_t)ep->rank * (size_t)ep->el;
	sub.up = w->up + (size_t)ep->rank * (size_t)ep->el;
	sub.down = w->down + (size_t)ep->rank * (size_t)ep->el;
	if ((st = prof_forward_new(&sub, threads, cap_rows, &ep->fexp)) != MOE_OK)
		goto fail;
	if (c->shared_ffn > 0) {
		float *g = w->s_gate, *u = w->s_up, *d = w->s_down;
		sub.cfg.experts = 1;
		sub.cfg.ffn = c->shared_ffn;
		sub.gate = &g;
		sub.up = &u;
		sub.down = &d;
		if ((st = prof_forward_new(&sub, threads, nl, &ep->fsh)) != MOE_OK)
			goto fail;
	}
	ep->router = malloc(E * H * sizeof(float));
	if (!ep->router)
		goto nomem;
	memcpy(ep->router, w->router, E * H * sizeof(float));
	if (w->bias) {
		if (!(ep->bias = malloc(E * sizeof(float))))
			goto nomem;
		memcpy(ep->bias, w->bias, E * sizeof(float));
	}
	prof_layer_cfg_policy(c, ep->bias, &ep->pol);
	if ((st = moe_route_workspace_alloc(&ep->pol, nl, &ep->rws)) != MOE_OK)
		goto fail;
	ep->logits = malloc(nl * E * sizeof(float));
	ep->gates = malloc(nl * k * sizeof(float));
	ep->ids = malloc(nl * k * sizeof(int32_t));
	ep->slot_pos = malloc(nl * k * sizeof(size_t));
	ep->send_x = malloc(nl * k * H * sizeof(float));
	ep->send_e = malloc(nl * k * sizeof(int32_t));
	ep->back_y = malloc(nl * k * H * sizeof(float));
	ep->recv_x = malloc(cap_rows * H * sizeof(float));
	ep->recv_y = malloc(cap_rows * H * sizeof(float));
	ep->recv_e = malloc(cap_rows * sizeof(int32_t));
	ep->zeros = calloc(nl, sizeof(int32_t));
	ep->ysh = malloc(nl * H * sizeof(float));
	ep->scount = calloc(R, sizeof(int)); ep->sdispl = calloc(R, sizeof(int));
	ep->rcount = calloc(R, sizeof(int)); ep->rdispl = calloc(R, sizeof(int));
	ep->scount_f = calloc(R, sizeof(int)); ep->sdispl_f = calloc(R, sizeof(int));
	ep->rcount_f = calloc(R, sizeof(int)); ep->rdispl_f = calloc(R, sizeof(int));
	ep->cursor = calloc(R, sizeof(size_t));
	if (!ep->logits || !ep->gates || !ep->ids || !ep->slot_pos || !ep->send_x || !ep->send_e ||
	    !ep->back_y || !ep->recv_x || !ep->recv_y || !ep->recv_e || !ep->zeros || !ep->ysh ||
	    !ep->scount || !ep->sdispl || !ep->rcount || !ep->rdispl || !ep->scount_f ||
	    !ep->sdispl_f || !ep->rcount_f || !ep->rdispl_f || !ep->cursor)
		goto nomem;
	*out = ep;
	return MOE_OK;
nomem:
	st = moe_error(MOE_ENOMEM, "rank %d: out of memory for the expert-parallel buffers", ep->rank);
fail:
	prof_ep_free(ep);
	return st;
}

enum moe_status prof_ep_run(struct prof_ep *ep, const float *x, float *y, double *stage_s)
{
	double t[PROF_EP_STAGE_COUNT] = {0}, t0 = now_s(), tp;
	const struct prof_layer_cfg *c = &ep->cfg;
	size_t H = (size_t)c->hidden, E = (size_t)c->experts, k = (size_t)c->top_k, nl = ep->count;
	size_t R = (size_t)ep->ranks, nsend = 0, nrecv = 0;
	struct moe_route_out ro = {ep->ids, ep->gates, NULL, NULL, 0, 0};
	enum moe_status st;

	/* router and routing on the rank's own tokens */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nl, (int)E, (int)H, 1.0f, x,
		    (int)H, ep->router, (int)H, 0.0f, ep->logits, (int)E);
	tp = now_s();
	t[PROF_EP_ROUTER] = tp - t0;
	if ((st = moe_route_batch(&ep->pol, ep->rws, ep->logits, nl, &ro)) != MOE_OK)
		return st;
	t[PROF_EP_ROUTING] = now_s() - tp;
	tp = now_s();

	/* permute: slots by destination rank (counting sort), rows copied */
	memset(ep->scount, 0, R * sizeof(int));
	for (size_t i = 0; i < nl * k; i++)
		if (ep->ids[i] != MOE_ROUTE_NONE)
			ep->scount[(size_t)ep->ids[i] / (size_t)ep->el]++;
	for (size_t r = 0, acc = 0; r < R; r++) {
		ep->sdispl[r] = (int)acc;
		ep->cursor[r] = acc;
		acc += (size_t)ep->scount[r];
	}
	for (size_t i = 0; i < nl; i++)
		for (size_t j = 0; j < k; j++) {
			int32_t e = ep->ids[i * k + j];
			if (e == MOE_ROUTE_NONE) {
				ep->slot_pos[i * k + j] = SIZE_MAX;
				continue;
			}
			size_t p = ep->cursor[(size_t)e / (size_t)ep->el]++;
			ep->slot_pos[i * k + j] = p;
			ep->send_e[p] = e % ep->el;
			memcpy(ep->send_x + p * H, x + i * H, H * sizeof(float));
			nsend++;
		}
	/* Each exchange starts after a barrier, so that dispatch and combine_a2a
	 * time the exchange alone; waiting for the slowest rank counts in the
	 * stage before it (as the simulator separates compute and transfer). */
	MPI_TRY(MPI_Barrier(ep->comm), "barrier");
	t[PROF_EP_PERMUTE] = now_s() - tp;
	tp = now_s();

	/* dispatch */
	MPI_TRY(MPI_Alltoall(ep->scount, 1, MPI_INT, ep->rcount, 1, MPI_INT, ep->comm), "alltoall");
	for (size_t r = 0, acc = 0; r < R; r++) {
		ep->rdispl[r] = (int)acc;
		acc += (size_t)ep->rcount[r];
		nrecv = acc;
		ep->scount_f[r] = ep->scount[r] * (int)H;
		ep->sdispl_f[r] = ep->sdispl[r] * (int)H;
		ep->rcount_f[r] = ep->rcount[r] * (int)H;
		ep->rdispl_f[r] = ep->rdispl[r] * (int)H;
	}
	MPI_TRY(MPI_Alltoallv(ep->send_x, ep->scount_f, ep->sdispl_f, MPI_FLOAT, ep->recv_x,
			      ep->rcount_f, ep->rdispl_f, MPI_FLOAT, ep->comm), "alltoallv (dispatch)");
	MPI_TRY(MPI_Alltoallv(ep->send_e, ep->scount, ep->sdispl, MPI_INT32_T, ep->recv_e,
			      ep->rcount, ep->rdispl, MPI_INT32_T, ep->comm), "alltoallv (expert ids)");
	t[PROF_EP_DISPATCH] = now_s() - tp;
	tp = now_s();

	/* the rank's experts, then the shared experts on its own tokens */
	if (nrecv > 0 && (st = prof_forward_experts(ep->fexp, ep->recv_x, ep->recv_e, nrecv,
						    ep->recv_y, NULL)) != MOE_OK)
		return st;
	ep->flops_local = nrecv > 0 ? prof_forward_flops(ep->fexp, PROF_STAGE_TOTAL) : 0;
	if (ep->fsh) {
		if ((st = prof_forward_experts(ep->fsh, x, ep->zeros, nl, ep->ysh, NULL)) != MOE_OK)
			return st;
		ep->flops_local += prof_forward_flops(ep->fsh, PROF_STAGE_TOTAL);
	}
	MPI_TRY(MPI_Barrier(ep->comm), "barrier");
	t[PROF_EP_EXPERTS] = now_s() - tp;
	tp = now_s();

	/* combine: outputs back to where their tokens live */
	MPI_TRY(MPI_Alltoallv(ep->recv_y, ep->rcount_f, ep->rdispl_f, MPI_FLOAT, ep->back_y,
			      ep->scount_f, ep->sdispl_f, MPI_FLOAT, ep->comm), "alltoallv (combine)");
	t[PROF_EP_COMBINE_A2A] = now_s() - tp;
	tp = now_s();
	for (size_t i = 0; i < nl; i++) {
		float *out = y + i * H;
		memset(out, 0, H * sizeof(float));
		for (size_t j = 0; j < k; j++) {
			size_t p = ep->slot_pos[i * k + j];
			float g = ep->gates[i * k + j];
			if (p == SIZE_MAX)
				continue;
			for (size_t h = 0; h < H; h++)
				out[h] += g * ep->back_y[p * H + h];
		}
		if (ep->fsh)
			for (size_t h = 0; h < H; h++)
				out[h] += ep->ysh[i * H + h];
	}
	t[PROF_EP_COMBINE] = now_s() - tp;
	t[PROF_EP_TOTAL] = now_s() - t0;
	ep->flops_local += 2.0 * (double)nl * (double)H * (double)E;
	ep->sent_bytes = (double)(nsend - (size_t)ep->scount[ep->rank]) * (double)H * sizeof(float);
	ep->rows_local = (double)nsend;
	if (stage_s)
		memcpy(stage_s, t, sizeof t);
	return MOE_OK;
}

enum moe_status prof_ep_profile(struct prof_ep *ep, const float *x, float *y, int warmup, int reps,
				struct prof_ep_result *r)
{
	double st[PROF_EP_STAGE_COUNT], *t, sums[3], tot[3];
	enum moe_status rc = MOE_OK;

	memset(r, 0, sizeof *r);
	if (reps < 1 || warmup < 0)
		MOE_FAIL(MOE_EINVAL, "--reps %d --warmup %d: expected reps >= 1, warmup >= 0", reps, warmup);
	if (!(t = malloc(sizeof(double) * PROF_EP_STAGE_COUNT * (size_t)reps)))
		MOE_FAIL(MOE_ENOMEM, "out of memory for %d reps", reps);
	r->reps = reps;
	r->warmup = warmup;
	r->ranks = ep->ranks;
	for (int i = 0; i < warmup + reps; i++) {
		/* start together, so that one rank's lateness is not counted as
		 * another's dispatch time */
		MPI_Barrier(ep->comm);
		if ((rc = prof_ep_run(ep, x, y, st)) != MOE_OK)
			goto out;
		if (MPI_Allreduce(MPI_IN_PLACE, st, PROF_EP_STAGE_COUNT, MPI_DOUBLE, MPI_MAX, ep->comm) !=
		    MPI_SUCCESS) {
			rc = moe_error(MOE_ERUNTIME, "MPI allreduce of stage times failed");
			goto out;
		}
		if (i >= warmup)
			for (int s = 0; s < PROF_EP_STAGE_COUNT; s++)
				t[(size_t)s * (size_t)reps + (size_t)(i - warmup)] = st[s];
	}
	for (int s = 0; s < PROF_EP_STAGE_COUNT; s++)
		prof_stat_of(t + (size_t)s * (size_t)reps, (size_t)reps, &r->stage[s]);
	sums[0] = ep->flops_local;
	sums[1] = ep->sent_bytes;
	sums[2] = ep->rows_local;
	MPI_Allreduce(sums, tot, 3, MPI_DOUBLE, MPI_SUM, ep->comm);
	r->flops = tot[0];
	r->dispatch_bytes = tot[1];
	r->routed_rows = tot[2];
	r->gflops = r->flops / r->stage[PROF_EP_TOTAL].median_s / 1e9;
out:
	free(t);
	return rc;
}

enum moe_status prof_a2a_run(MPI_Comm comm, size_t bytes, int warmup, int iters, double *time_s)
{
	int rank, ranks;
	float *sb, *rb;
	size_t per, n;
	double t0, t, bad = 0;

	MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
	MPI_Comm_rank(comm, &rank);
	MPI_Comm_size(comm, &ranks);
	per = bytes / sizeof(float) / (size_t)ranks;
	if (per == 0)
		per = 1;
	if (per > (size_t)INT_MAX)
		MOE_FAIL(MOE_EINVAL, "a2a: %zu bytes per peer exceed MPI's int counts", per * sizeof(float));
	n = per * (size_t)ranks;
	sb = malloc(n * sizeof(float));
	rb = malloc(n * sizeof(float));
	if (!sb || !rb) {
		free(sb);
		free(rb);
		MOE_FAIL(MOE_ENOMEM, "a2a: out of memory for %zu bytes", 2 * n * sizeof(float));
	}
	/* element i of the block for peer p: rank * 1000 + p + (i % 7) */
	for (size_t p = 0; p < (size_t)ranks; p++)
		for (size_t i = 0; i < per; i++)
			sb[p * per + i] = (float)(rank * 1000 + (int)p + (int)(i % 7));
	for (int i = 0; i < warmup; i++)
		if (MPI_Alltoall(sb, (int)per, MPI_FLOAT, rb, (int)per, MPI_FLOAT, comm) != MPI_SUCCESS)
			goto mpi_err;
	MPI_Barrier(comm);
	t0 = MPI_Wtime();
	for (int i = 0; i < iters; i++)
		if (MPI_Alltoall(sb, (int)per, MPI_FLOAT, rb, (int)per, MPI_FLOAT, comm) != MPI_SUCCESS)
			goto mpi_err;
	t = (MPI_Wtime() - t0) / (iters > 0 ? iters : 1);
	for (size_t p = 0; p < (size_t)ranks; p++)
		for (size_t i = 0; i < per; i++)
			if (rb[p * per + i] != (float)((int)p * 1000 + rank + (int)(i % 7)))
				bad = 1;
	free(sb);
	free(rb);
	MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
	MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_DOUBLE, MPI_MAX, comm);
	if (bad > 0)
		MOE_FAIL(MOE_ERUNTIME, "a2a: %zu bytes: data received differs from what was sent", bytes);
	*time_s = t;
	return MOE_OK;
mpi_err:
	free(sb);
	free(rb);
	MOE_FAIL(MOE_ERUNTIME, "a2a: MPI_Alltoall failed at %zu bytes", bytes);
}
