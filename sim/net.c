/* sim/net.c: flows, max-min rates by progressive filling over the
 * connected component of the links a change touched, and the run loop.
 * See net.h for the model.
 *
 * Data layout: flows are structure-of-arrays indexed by flow id (ids are
 * never reused before a reset); each flow keeps its path and, for each link
 * of the path, its position in that link's list of active flows, so that
 * removing a flow is O(path length) (swap with the last).  Two heaps: the
 * engine's queue holds flow starts; an indexed heap over active flows holds
 * projected end times, updated only for flows whose rate changed.
 */
#include "config.h"
#include "sim/net.h"
#include "sim/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { EV_START = 1 };
enum { F_PENDING = 0, F_ACTIVE = 1, F_DONE = 2 };

/* The fields of a flow that solving touches, packed into 64 bytes so that
 * visiting a flow costs one cache miss, not one per array (this halves the
 * time of a 512-GPU all-to-all). */
struct flow_hot {
	int path[SIM_PATH_MAX - 1];
	int plen;
	double rate, nrate;   /* bytes/s: current, and candidate while solving */
	int bott, nbott;      /* bottleneck link: current, candidate; -1 none */
	unsigned amark, fmark; /* epoch marks: in A, frozen (or in component) */
};

struct lheap_ent {
	double key;
	int link;
};

struct sim_net {
	const struct sim_topo *topo;
	int L;
	/* flows */
	int nf, capf;
	struct flow_hot *h;   /* what a recomputation reads, one cache line a flow */
	double *bytes, *rem, *t_last, *t_end, *lat;
	int64_t *tag;
	unsigned char *state;
	int (*pos)[SIM_PATH_MAX];
	int *hpos;            /* position in the end heap, -1 if absent */
	/* links */
	int **lf, *lfn, *lfcap;  /* active flows of a link: flow << 3 | path position */
	double *lbytes, *lint, *lbusy, *lrate, *lt, *cap, *rnew;
	int *ln;
	unsigned *lmark;
	/* scratch for a recomputation */
	int *comp_links;
	int *ended;           /* flows ended in the current event */
	int *started, nstarted; /* flows started in the current event */
	int *alist, na;       /* A: the flows being re-solved */
	int *bpos;            /* position of a flow in its bottleneck's list */
	unsigned epA, epF, epM;
	int full;             /* recompute whole components (reference mode) */
	double coalesce;      /* relative window in which ends are one event */
	/* per link: flows bottlenecked there, their rate, scratch */
	int **bl, *bln, *blcap;
	double *lshare, *aold, *amax, *omax, *lnew;
	int *abl, *aoff, *acur;  /* A flows bottlenecked on a link; A's flows per link */
	int *af, capaf;
	unsigned *mmark;
	struct lheap_ent *lh;
	int lhn, lhcap;
	int *touched, ntouched, captouched;
	unsigned epoch;
	/* end heap over active flows */
	int *eh, ehn;
	struct sim_queue *q;
	double now;
	struct sim_net_stats st;
	sim_net_rates_fn rates_fn;
	void *rates_user;
};

/* ---- the end heap (indexed, by end time then flow id) ---- */

static inline int eh_less(const struct sim_net *n, int a, int b)
{
	return n->t_end[a] < n->t_end[b] || (n->t_end[a] == n->t_end[b] && a < b);
}

static void eh_up(struct sim_net *n, int i)
{
	int f = n->eh[i];

	while (i > 0) {
		int p = (i - 1) / 2;
		if (!eh_less(n, f, n->eh[p]))
			break;
		n->eh[i] = n->eh[p];
		n->hpos[n->eh[i]] = i;
		i = p;
	}
	n->eh[i] = f;
	n->hpos[f] = i;
}

static void eh_down(struct sim_net *n, int i)
{
	int f = n->eh[i];

	for (;;) {
		int c = 2 * i + 1;
		if (c >= n->ehn)
			break;
		if (c + 1 < n->ehn && eh_less(n, n->eh[c + 1], n->eh[c]))
			c++;
		if (!eh_less(n, n->eh[c], f))
			break;
		n->eh[i] = n->eh[c];
		n->hpos[n->eh[i]] = i;
		i = c;
	}
	n->eh[i] = f;
	n->hpos[f] = i;
}

static void eh_update(struct sim_net *n, int f)
{
	int i = n->hpos[f];

	if (i < 0) {
		i = n->ehn++;
		n->eh[i] = f;
		n->hpos[f] = i;
		eh_up(n, i);
		return;
	}
	eh_up(n, i);
	eh_down(n, n->hpos[f]);
}

static void eh_remove(struct sim_net *n, int f)
{
	int i = n->hpos[f], last;

	if (i < 0)
		return;
	n->hpos[f] = -1;
	last = n->eh[--n->ehn];
	if (i == n->ehn)
		return;
	n->eh[i] = last;
	n->hpos[last] = i;
	eh_up(n, i);
	eh_down(n, n->hpos[last]);
}

/* ---- the link heap of a recomputation (lazy: keys only grow) ---- */

static inline int lh_less(const struct lheap_ent *a, const struct lheap_ent *b)
{
	return a->key < b->key || (a->key == b->key && a->link < b->link);
}

static int lh_push(struct sim_net *n, double key, int link)
{
	struct lheap_ent e = {key, link};
	int i;

	if (n->lhn == n->lhcap) {
		int cap = n->lhcap * 2;
		struct lheap_ent *h = realloc(n->lh, (size_t)cap * sizeof *h);
		if (h == NULL)
			return -1;
		n->lh = h;
		n->lhcap = cap;
	}
	i = n->lhn++;
	while (i > 0) {
		int p = (i - 1) / 2;
		if (!lh_less(&e, &n->lh[p]))
			break;
		n->lh[i] = n->lh[p];
		i = p;
	}
	n->lh[i] = e;
	return 0;
}

static struct lheap_ent lh_pop(struct sim_net *n)
{
	struct lheap_ent top = n->lh[0], last = n->lh[--n->lhn];
	int i = 0;

	for (;;) {
		int c = 2 * i + 1;
		if (c >= n->lhn)
			break;
		if (c + 1 < n->lhn && lh_less(&n->lh[c + 1], &n->lh[c]))
			c++;
		if (!lh_less(&n->lh[c], &last))
			break;
		n->lh[i] = n->lh[c];
		i = c;
	}
	if (n->lhn > 0)
		n->lh[i] = last;
	return top;
}

/* ---- construction ---- */

/* Reallocates one per-flow array to cap elements into *out; 0 or -1. */
static int grow1(void *old, size_t elem, int cap, void **out)
{
	void *x = realloc(old, (size_t)cap * elem);

	if (x == NULL)
		return -1;
	*out = x;
	return 0;
}

static int grow_flows(struct sim_net *n, int cap)
{
	void *x;

	if (posix_memalign(&x, 64, (size_t)cap * sizeof *n->h) != 0)
		return -1;
	if (n->h != NULL)
		memcpy(x, n->h, (size_t)n->capf * sizeof *n->h);
	free(n->h);
	n->h = x;

	if (grow1(n->bytes, sizeof *n->bytes, cap, &x) != 0)
		return -1;
	n->bytes = x;
	if (grow1(n->rem, sizeof *n->rem, cap, &x) != 0)
		return -1;
	n->rem = x;
	if (grow1(n->t_last, sizeof *n->t_last, cap, &x) != 0)
		return -1;
	n->t_last = x;
	if (grow1(n->t_end, sizeof *n->t_end, cap, &x) != 0)
		return -1;
	n->t_end = x;
	if (grow1(n->lat, sizeof *n->lat, cap, &x) != 0)
		return -1;
	n->lat = x;
	if (grow1(n->tag, sizeof *n->tag, cap, &x) != 0)
		return -1;
	n->tag = x;
	if (grow1(n->state, sizeof *n->state, cap, &x) != 0)
		return -1;
	n->state = x;
	if (grow1(n->pos, sizeof *n->pos, cap, &x) != 0)
		return -1;
	n->pos = x;
	if (grow1(n->hpos, sizeof *n->hpos, cap, &x) != 0)
		return -1;
	n->hpos = x;
	if (grow1(n->eh, sizeof *n->eh, cap, &x) != 0)
		return -1;
	n->eh = x;
	if (grow1(n->started, sizeof *n->started, cap, &x) != 0)
		return -1;
	n->started = x;
	if (grow1(n->alist, sizeof *n->alist, cap, &x) != 0)
		return -1;
	n->alist = x;
	if (grow1(n->bpos, sizeof *n->bpos, cap, &x) != 0)
		return -1;
	n->bpos = x;
	if (grow1(n->ended, sizeof *n->ended, cap, &x) != 0)
		return -1;
	n->ended = x;
	n->capf = cap;
	return 0;
}

enum moe_status sim_net_new(const struct sim_topo *t, size_t reserve, struct sim_net **out)
{
	struct sim_net *n = calloc(1, sizeof *n);
	int L = t->nlinks;

	if (n == NULL)
		MOE_FAIL(MOE_ENOMEM, "network: out of memory");
	n->topo = t;
	n->L = L;
	n->coalesce = SIM_TIME_EPS_REL;
	if (reserve < 64)
		reserve = 64;
	if (reserve > (size_t)INT32_MAX / 2)
		reserve = INT32_MAX / 2;
	n->lf = calloc((size_t)L + 1, sizeof *n->lf);
	n->lfn = calloc((size_t)L + 1, sizeof *n->lfn);
	n->lfcap = calloc((size_t)L + 1, sizeof *n->lfcap);
	n->lbytes = calloc((size_t)L + 1, sizeof(double));
	n->lint = calloc((size_t)L + 1, sizeof(double));
	n->lbusy = calloc((size_t)L + 1, sizeof(double));
	n->lrate = calloc((size_t)L + 1, sizeof(double));
	n->lt = calloc((size_t)L + 1, sizeof(double));
	n->cap = calloc((size_t)L + 1, sizeof(double));
	n->rnew = calloc((size_t)L + 1, sizeof(double));
	n->ln = calloc((size_t)L + 1, sizeof(int));
	n->lmark = calloc((size_t)L + 1, sizeof(unsigned));
	n->comp_links = calloc((size_t)L + 1, sizeof(int));
	n->bl = calloc((size_t)L + 1, sizeof *n->bl);
	n->bln = calloc((size_t)L + 1, sizeof(int));
	n->blcap = calloc((size_t)L + 1, sizeof(int));
	n->lshare = calloc((size_t)L + 1, sizeof(double));
	n->aold = calloc((size_t)L + 1, sizeof(double));
	n->amax = calloc((size_t)L + 1, sizeof(double));
	n->omax = calloc((size_t)L + 1, sizeof(double));
	n->lnew = calloc((size_t)L + 1, sizeof(double));
	n->mmark = calloc((size_t)L + 1, sizeof(unsigned));
	n->abl = calloc((size_t)L + 1, sizeof(int));
	n->aoff = calloc((size_t)L + 1, sizeof(int));
	n->acur = calloc((size_t)L + 1, sizeof(int));
	n->lhcap = 2 * L + 16;
	n->lh = malloc((size_t)n->lhcap * sizeof *n->lh);
	n->captouched = 1024;
	n->touched = malloc((size_t)n->captouched * sizeof(int));
	if (n->lf == NULL || n->lfn == NULL || n->lfcap == NULL || n->lbytes == NULL ||
	    n->lint == NULL || n->lbusy == NULL || n->lrate == NULL || n->lt == NULL ||
	    n->cap == NULL || n->rnew == NULL || n->ln == NULL || n->lmark == NULL ||
	    n->comp_links == NULL || n->lh == NULL || n->touched == NULL || n->bl == NULL ||
	    n->bln == NULL || n->blcap == NULL || n->lshare == NULL || n->aold == NULL ||
	    n->amax == NULL || n->omax == NULL || n->lnew == NULL || n->mmark == NULL ||
	    n->abl == NULL || n->aoff == NULL || n->acur == NULL ||
	    grow_flows(n, (int)reserve) != 0 || sim_queue_new(reserve, &n->q) != MOE_OK) {
		sim_net_free(n);
		MOE_FAIL(MOE_ENOMEM, "network: out of memory for %zu flows", reserve);
	}
	*out = n;
	return MOE_OK;
}

void sim_net_free(struct sim_net *n)
{
	if (n == NULL)
		return;
	for (int l = 0; l < n->L && n->lf; l++)
		free(n->lf[l]);
	for (int l = 0; l < n->L && n->bl; l++)
		free(n->bl[l]);
	free(n->bl); free(n->bln); free(n->blcap); free(n->lshare); free(n->aold); free(n->amax);
	free(n->omax); free(n->lnew); free(n->mmark); free(n->abl); free(n->aoff); free(n->acur);
	free(n->af);
	free(n->lf); free(n->lfn); free(n->lfcap); free(n->lbytes); free(n->lint);
	free(n->lbusy); free(n->lrate); free(n->lt); free(n->cap); free(n->rnew); free(n->ln);
	free(n->lmark); free(n->comp_links); free(n->lh); free(n->touched);
	free(n->h); free(n->bytes); free(n->rem); free(n->t_last); free(n->t_end);
	free(n->lat); free(n->tag); free(n->state); free(n->pos);
	free(n->hpos); free(n->eh); free(n->started); free(n->alist); 
	free(n->bpos);
	free(n->ended);
	sim_queue_free(n->q);
	free(n);
}

void sim_net_reset(struct sim_net *n)
{
	n->nf = 0;
	n->ehn = 0;
	n->now = 0;
	sim_queue_clear(n->q);
	for (int l = 0; l < n->L; l++) {
		n->lfn[l] = 0;
		n->bln[l] = 0;
		n->lbytes[l] = n->lint[l] = n->lbusy[l] = n->lrate[l] = n->lt[l] = 0;
	}
	memset(&n->st, 0, sizeof n->st);
}

void sim_net_set_coalesce(struct sim_net *n, double rel)
{
	n->coalesce = rel > SIM_TIME_EPS_REL ? rel : SIM_TIME_EPS_REL;
}

void sim_net_set_full(struct sim_net *n, int full)
{
	n->full = full != 0;
}

void sim_net_set_rates_hook(struct sim_net *n, sim_net_rates_fn fn, void *user)
{
	n->rates_fn = fn;
	n->rates_user = user;
}

enum moe_status sim_net_add(struct sim_net *n, const struct sim_path *p, double bytes,
			    double start_s, int64_t tag, int *flow)
{
	int f;

	if (!(bytes >= 0) || !isfinite(bytes))
		MOE_FAIL(MOE_EINVAL, "flow: bytes must be finite and >= 0, got %g", bytes);
	if (!isfinite(start_s) || (start_s < n->now && !sim_time_same(start_s, n->now)))
		MOE_FAIL(MOE_EINVAL, "flow: start %.9g s is before the current time %.9g s", start_s,
			 n->now);
	if (p->n < 0 || p->n > SIM_PATH_MAX - 1 || !(p->lat_s >= 0))
		MOE_FAIL(MOE_EINVAL, "flow: path of %d links (at most %d), latency %g", p->n,
			 SIM_PATH_MAX - 1, p->lat_s);
	for (int i = 0; i < p->n; i++)
		if (p->link[i] < 0 || p->link[i] >= n->L)
			MOE_FAIL(MOE_EINVAL, "flow: path names link %d outside 0..%d", p->link[i],
				 n->L - 1);
	if (start_s < n->now)
		start_s = n->now;
	if (n->nf == INT32_MAX / 8)
		MOE_FAIL(MOE_ENOMEM, "network: too many flows");
	if (n->nf == n->capf && grow_flows(n, n->capf * 2) != 0)
		MOE_FAIL(MOE_ENOMEM, "network: out of memory for %d flows", n->capf * 2);
	f = n->nf;
	if (sim_queue_push(n->q, start_s + p->lat_s, EV_START, f) != MOE_OK)
		MOE_FAIL(MOE_ENOMEM, "network: out of memory for events");
	n->nf++;
	n->bytes[f] = bytes;
	n->rem[f] = bytes;
	n->h[f].rate = 0;
	n->t_last[f] = start_s + p->lat_s;
	n->t_end[f] = NAN;
	n->lat[f] = p->lat_s;
	n->tag[f] = tag;
	n->state[f] = F_PENDING;
	n->h[f].plen = p->n;
	memcpy(n->h[f].path, p->link, (size_t)p->n * sizeof(int));
	n->hpos[f] = -1;
	n->h[f].fmark = 0;
	n->h[f].amark = 0;
	n->h[f].bott = -1;
	if (flow != NULL)
		*flow = f;
	return MOE_OK;
}

/* ---- the run ---- */

static int touch(struct sim_net *n, int link)
{
	if (n->lmark[link] == n->epoch)
		return 0;
	n->lmark[link] = n->epoch;
	if (n->ntouched == n->captouched) {
		int cap = n->captouched * 2;
		int *x = realloc(n->touched, (size_t)cap * sizeof *x);
		if (x == NULL)
			return -1;
		n->touched = x;
		n->captouched = cap;
	}
	n->touched[n->ntouched++] = link;
	return 0;
}

static int link_add_flow(struct sim_net *n, int l, int f, int k)
{
	if (n->lfn[l] == n->lfcap[l]) {
		int cap = n->lfcap[l] ? n->lfcap[l] * 2 : 8;
		int *x = realloc(n->lf[l], (size_t)cap * sizeof *x);
		if (x == NULL)
			return -1;
		n->lf[l] = x;
		n->lfcap[l] = cap;
	}
	n->pos[f][k] = n->lfn[l];
	n->lf[l][n->lfn[l]++] = f << 3 | k;
	return 0;
}

static void link_remove_flow(struct sim_net *n, int l, int f, int k)
{
	int i = n->pos[f][k], last = n->lf[l][--n->lfn[l]];

	/* entries carry the path position, so moving the last one needs no search */
	n->lf[l][i] = last;
	n->pos[last >> 3][last & 7] = i;
}

/* Brings link l's accounting up to the current time. */
static inline void settle_link(struct sim_net *n, int l)
{
	double dt = n->now - n->lt[l];

	if (dt > 0 && n->lrate[l] > 0) {
		n->lint[l] += n->lrate[l] * dt;
		n->lbusy[l] += dt;
	}
	n->lt[l] = n->now;
}

static int addA(struct sim_net *n, int f)
{
	if (n->h[f].amark == n->epA || n->state[f] != F_ACTIVE)
		return 0;
	n->h[f].amark = n->epA;
	n->alist[n->na++] = f;
	return 1;
}

static int bl_add(struct sim_net *n, int l, int f)
{
	if (n->bln[l] == n->blcap[l]) {
		int cap = n->blcap[l] ? n->blcap[l] * 2 : 8;
		int *x = realloc(n->bl[l], (size_t)cap * sizeof *x);
		if (x == NULL)
			return -1;
		n->bl[l] = x;
		n->blcap[l] = cap;
	}
	n->bpos[f] = n->bln[l];
	n->bl[l][n->bln[l]++] = f;
	n->h[f].bott = l;
	return 0;
}

static void bl_remove(struct sim_net *n, int f)
{
	int l = n->h[f].bott, i, last;

	if (l < 0)
		return;
	i = n->bpos[f];
	last = n->bl[l][--n->bln[l]];
	n->bl[l][i] = last;
	n->bpos[last] = i;
	n->h[f].bott = -1;
}

/* Adds every active flow of the connected component of the touched links
 * to A (the "full" mode, and the reference for the incremental one). */
static void seed_component(struct sim_net *n)
{
	int head = 0, ncl = 0;
	unsigned ep = ++n->epoch;

	for (int i = 0; i < n->ntouched; i++) {
		n->lmark[n->touched[i]] = ep;
		n->comp_links[ncl++] = n->touched[i];
	}
	while (head < ncl) {
		int l = n->comp_links[head++];
		for (int i = 0; i < n->lfn[l]; i++) {
			int f = n->lf[l][i] >> 3;
			if (!addA(n, f))
				continue;
			for (int k = 0; k < n->h[f].plen; k++) {
				int m = n->h[f].path[k];
				if (n->lmark[m] != ep) {
					n->lmark[m] = ep;
					n->comp_links[ncl++] = m;
				}
			}
		}
	}
}

#define TOL 1e-9

/* Adds to A every flow of link m; returns how many were added. */
static int grow_link(struct sim_net *n, int m)
{
	int added = 0;

	for (int i = 0; i < n->lfn[m]; i++)
		added += addA(n, n->lf[m][i] >> 3);
	return added;
}

/* New max-min rates after the flows of this event started and ended.
 *
 * A max-min allocation is the unique feasible one in which every flow has a
 * bottleneck: a saturated link on which no flow has a higher rate.  So:
 * take as A the flows that started and those whose bottleneck was a
 * touched link; solve max-min for A alone by progressive filling on the
 * capacity the other flows leave (their rates held); then check the
 * bottleneck condition wherever A's new rates could have broken it (the
 * links A crosses).  Where it fails, add the flows of that link to A and
 * solve again.  When the check passes the allocation is the exact max-min
 * one; at worst A grows to the connected component (the full recompute).
 * The cost is that of the flows whose rates can change, not of the
 * network. */
static int recompute(struct sim_net *n)
{
	n->epA = ++n->epoch;
	n->na = 0;
	n->st.recomputes++;
	if (n->full) {
		seed_component(n);
	} else {
		for (int i = 0; i < n->nstarted; i++)
			addA(n, n->started[i]);
		for (int i = 0; i < n->ntouched; i++) {
			int l = n->touched[i];
			for (int j = 0; j < n->bln[l]; j++)
				addA(n, n->bl[l][j]);
		}
	}
	for (int round = 0;; round++) {
		unsigned epL;
		int ncl = 0, grown = 0;

		if (n->na == 0)
			return 0;
		n->st.solves++;
		if (round == 16 && !n->full) {
			n->st.full_solves++;
			/* A keeps growing: take the whole component at once rather
			 * than paying for many partial solves */
			seed_component(n);
		}
		n->st.flow_visits += (uint64_t)n->na;
		if (n->na > n->nf / 8) {
			/* a large A: visit it in flow order, which walks the flow
			 * arrays sequentially (the hardware prefetches) instead of
			 * jumping between cache lines */
			int j = 0;
			for (int f = 0; f < n->nf; f++)
				if (n->h[f].amark == n->epA)
					n->alist[j++] = f;
			n->na = j;
		}
		/* the links A crosses: A's old rates, count, bottlenecked count */
		epL = ++n->epoch;
		for (int i = 0; i < n->na; i++) {
			int f = n->alist[i];
			for (int k = 0; k < n->h[f].plen; k++) {
				int m = n->h[f].path[k];
				if (n->lmark[m] != epL) {
					n->lmark[m] = epL;
					n->comp_links[ncl++] = m;
					n->aold[m] = 0;
					n->ln[m] = 0;
					n->abl[m] = 0;
					n->amax[m] = 0;
					n->lnew[m] = -1;
				}
				n->aold[m] += n->h[f].rate;
				n->ln[m]++;
			}
		}
		/* A's flows of each link, contiguous (so filling never scans the
		 * flows outside A) */
		{
			int off = 0;
			for (int i = 0; i < ncl; i++) {
				int m = n->comp_links[i];
				n->aoff[m] = off;
				n->acur[m] = off;
				off += n->ln[m];
			}
			if (off > n->capaf) {
				int *x = realloc(n->af, (size_t)off * 2 * sizeof *x);
				if (x == NULL)
					return -1;
				n->af = x;
				n->capaf = off * 2;
			}
		}
		for (int i = 0; i < n->na; i++) {
			int f = n->alist[i];
			if (n->h[f].bott >= 0)
				n->abl[n->h[f].bott]++;
			for (int k = 0; k < n->h[f].plen; k++) {
				int m = n->h[f].path[k];
				n->af[n->acur[m]++] = f;
			}
		}
		/* capacity the other flows leave */
		for (int i = 0; i < ncl; i++) {
			int m = n->comp_links[i];
			double bw = n->topo->links[m].bw_Bps;
			double other = n->ln[m] == n->lfn[m] ? 0 : n->lrate[m] - n->aold[m];
			if (other < 0)
				other = 0;
			n->rnew[m] = other;
			n->cap[m] = bw - other;
			if (n->cap[m] <= TOL * bw)
				grown += grow_link(n, m);
		}
		if (grown)
			continue;
		/* progressive filling of A */
		n->lhn = 0;
		for (int i = 0; i < ncl; i++) {
			int m = n->comp_links[i];
			if (lh_push(n, n->cap[m] / n->ln[m], m) != 0)
				return -1;
		}
		n->epF = ++n->epoch;
		while (n->lhn > 0) {
			struct lheap_ent e = lh_pop(n);
			int l = e.link;
			double share;

			if (n->ln[l] == 0)
				continue;
			share = n->cap[l] > 0 ? n->cap[l] / n->ln[l] : 0;
			if (share > e.key) {
				if (lh_push(n, share, l) != 0)
					return -1;
				continue;
			}
			n->lnew[l] = share;
			for (int i = n->aoff[l]; i < n->acur[l]; i++) {
				int f = n->af[i];
				if (n->h[f].fmark == n->epF)
					continue;
				n->h[f].fmark = n->epF;
				n->h[f].nrate = share;
				n->h[f].nbott = l;
				for (int k = 0; k < n->h[f].plen; k++) {
					int m = n->h[f].path[k];
					n->cap[m] -= share;
					n->ln[m]--;
					n->rnew[m] += share;
					if (share > n->amax[m])
						n->amax[m] = share;
				}
			}
		}
		/* check the flows outside A whose bottleneck A crosses */
		for (int i = 0; i < ncl; i++) {
			int m = n->comp_links[i];
			double bw = n->topo->links[m].bw_Bps;
			int outside = n->bln[m] > n->abl[m];
			if (outside && (n->cap[m] > TOL * bw || n->amax[m] > n->lshare[m] * (1 + TOL)))
				for (int j = 0; j < n->bln[m]; j++)
					grown += addA(n, n->bl[m][j]);
		}
		/* check A's new bottlenecks against the flows outside A on them */
		n->epM = ++n->epoch;
		for (int i = 0; i < n->na && !grown; i++) {
			int f = n->alist[i], m = n->h[f].nbott;
			if (n->mmark[m] != n->epM) {
				double mx = 0;
				n->mmark[m] = n->epM;
				if (n->acur[m] - n->aoff[m] == n->lfn[m]) {
					mx = 0; /* no flow outside A */
				} else if (n->bln[m] > n->abl[m]) {
					/* outside flows bottlenecked here had the largest
					 * rate on m (the old allocation was max-min) */
					mx = n->lshare[m];
				} else {
					for (int j = 0; j < n->lfn[m]; j++) {
						int g = n->lf[m][j] >> 3;
						if (n->h[g].amark != n->epA && n->h[g].rate > mx)
							mx = n->h[g].rate;
					}
				}
				n->omax[m] = mx;
			}
			if (n->omax[m] > n->h[f].nrate * (1 + TOL))
				grown += grow_link(n, m);
		}
		if (grown)
			continue;
		/* commit */
		for (int i = 0; i < n->na; i++) {
			int f = n->alist[i];
			double old = n->h[f].rate, r = n->h[f].nrate;
			if (n->h[f].bott != n->h[f].nbott) {
				bl_remove(n, f);
				if (bl_add(n, n->h[f].nbott, f) != 0)
					return -1;
			}
			if (fabs(r - old) > 1e-13 * r) {
				if (n->now > n->t_last[f])
					n->rem[f] -= old * (n->now - n->t_last[f]);
				if (n->rem[f] < 0)
					n->rem[f] = 0;
				n->t_last[f] = n->now;
				n->h[f].rate = r;
				n->t_end[f] = n->now + n->rem[f] / r;
				eh_update(n, f);
				n->st.rate_changes++;
			}
		}
		for (int i = 0; i < ncl; i++) {
			int m = n->comp_links[i];
			settle_link(n, m);
			n->lrate[m] = n->rnew[m];
			if (n->lnew[m] >= 0)
				n->lshare[m] = n->lnew[m];
		}
		if (n->rates_fn != NULL)
			n->rates_fn(n->rates_user, n, n->now, n->comp_links, ncl);
		return 0;
	}
}

static void end_flow(struct sim_net *n, int f, double t)
{
	n->state[f] = F_DONE;
	n->t_end[f] = t;
	n->rem[f] = 0;
	bl_remove(n, f);
	for (int k = 0; k < n->h[f].plen; k++) {
		int l = n->h[f].path[k];
		settle_link(n, l);
		n->lbytes[l] += n->bytes[f];
		link_remove_flow(n, l, f, k);
		n->lrate[l] = n->lfn[l] > 0 ? n->lrate[l] - n->h[f].rate : 0;
	}
	n->h[f].rate = 0;
	n->st.flows_done++;
}

enum moe_status sim_net_run(struct sim_net *n, sim_net_done_fn done, void *user)
{
	struct sim_event ev;

	for (;;) {
		double tq = sim_queue_peek(n->q, &ev) ? ev.t_s : INFINITY;
		double tf = n->ehn > 0 ? n->t_end[n->eh[0]] : INFINITY;
		double t = tq < tf ? tq : tf;
		double lim;
		int nended = 0;

		if (t == INFINITY)
			break;
		lim = t + n->coalesce * fabs(t) + SIM_TIME_EPS_ABS;
		n->now = t;
		n->epoch++;
		n->ntouched = 0;
		n->nstarted = 0;
		n->st.events++;
		/* settle the links the ending flows leave before their rates drop */
		while (n->ehn > 0 && n->t_end[n->eh[0]] <= lim) {
			int f = n->eh[0];
			eh_remove(n, f);
			for (int k = 0; k < n->h[f].plen; k++) {
				if (touch(n, n->h[f].path[k]) != 0)
					MOE_FAIL(MOE_ENOMEM, "network: out of memory");
			}
			n->ended[nended++] = f;
			end_flow(n, f, n->t_end[f]);
		}
		while (sim_queue_peek(n->q, &ev) && ev.t_s <= lim) {
			int f;
			sim_queue_pop(n->q, &ev);
			f = (int)ev.data;
			n->st.flows_started++;
			if (n->h[f].plen == 0 || n->bytes[f] <= 0) {
				n->state[f] = F_DONE;
				n->t_end[f] = ev.t_s;
				n->st.flows_done++;
				n->ended[nended++] = f;
				continue;
			}
			n->state[f] = F_ACTIVE;
			n->t_last[f] = n->now;
			n->h[f].rate = 0;
			n->started[n->nstarted++] = f;
			for (int k = 0; k < n->h[f].plen; k++) {
				int l = n->h[f].path[k];
				settle_link(n, l);
				if (link_add_flow(n, l, f, k) != 0 || touch(n, l) != 0)
					MOE_FAIL(MOE_ENOMEM, "network: out of memory");
			}
		}
		if (n->ntouched > 0 && recompute(n) != 0)
			MOE_FAIL(MOE_ENOMEM, "network: out of memory");
		/* n->ended is re-read each time: a callback adding flows may move it */
		for (int i = 0; i < nended; i++) {
			int f = n->ended[i];
			if (done != NULL)
				done(user, n, f, n->tag[f], n->t_end[f]);
		}
	}
	return MOE_OK;
}

double sim_net_now(const struct sim_net *n)
{
	return n->now;
}

double sim_net_flow_end(const struct sim_net *n, int f)
{
	return f >= 0 && f < n->nf && n->state[f] == F_DONE ? n->t_end[f] : NAN;
}

double sim_net_flow_bytes(const struct sim_net *n, int f)
{
	return f >= 0 && f < n->nf ? n->bytes[f] : NAN;
}

double sim_net_flow_rate(const struct sim_net *n, int f)
{
	return f >= 0 && f < n->nf && n->state[f] == F_ACTIVE ? n->h[f].rate : 0;
}

int sim_net_flows(const struct sim_net *n)
{
	return n->nf;
}

double sim_net_link_bytes(const struct sim_net *n, int l)
{
	return n->lbytes[l];
}

double sim_net_link_rate_integral(const struct sim_net *n, int l)
{
	return n->lint[l];
}

double sim_net_link_busy(const struct sim_net *n, int l)
{
	return n->lbusy[l];
}

double sim_net_link_rate(const struct sim_net *n, int l)
{
	return n->lrate[l];
}

const struct sim_net_stats *sim_net_stats(const struct sim_net *n)
{
	return &n->st;
}
