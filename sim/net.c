/* sim/net.c: flows, max-min rates by an incremental progressive filling,
 * and the run loop.  See net.h for the model.
 *
 * Data layout: what solving and ending a flow read sits in one 64-byte
 * record per flow (struct flow_hot; ids are never reused before a reset);
 * what a solve reads and writes of a link, likewise one 64-byte record
 * per link (struct link_hot); the rest is structure-of-arrays.  Per
 * link: the flows that crossed it (ended ones dropped lazily), and the
 * flows bottlenecked there in a heap
 * by the reading of the link's virtual clock at which each ends.  Three
 * heaps besides: the engine's queue (flow starts), the links by the time
 * their first flow ends, and a filling's links by share.
 */
#include "config.h"
#include "sim/net.h"
#include "sim/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { EV_START = 1 };
enum { F_PENDING = 0, F_ACTIVE = 1, F_DONE = 2 };

/* The fields of a flow that solving and ending it touch, packed into one
 * 64-byte line (the array is 64-byte aligned) so that visiting a flow
 * costs one cache miss, not one per array. */
struct flow_hot {
	_Alignas(64) double bytes;
	double t_end;         /* when it ended; NaN while it runs */
	int path[SIM_PATH_MAX - 1];
	int plen;
	int bott;             /* bottleneck link (its share is the rate); -1 none */
	unsigned char state;  /* F_PENDING, F_ACTIVE, F_DONE */
	/* from its start: path[0..slen) are the links solves share, the
	 * rest are dominated (n->dom), kept for the accounting only */
	unsigned char slen;
};

_Static_assert(sizeof(struct flow_hot) == 64, "a flow's record is one cache line");

/* An entry of an indexed heap: a key and whose it is (a flow or a link). */
struct ih_ent {
	double key;
	int id;
};


/* What a solve reads and writes of a link, in one 64-byte line (the array
 * is 64-byte aligned): a flow joining or freezing touches every link of
 * its path, and with one array per field that was a cache line per field
 * per link (the arrays of a few thousand links do not fit in L1). */
struct link_hot {
	_Alignas(64) double rnew; /* the solve's rate on it: held and frozen flows */
	double bw;            /* bandwidth, bytes per second (copied from the topology) */
	double share;         /* rate of the flows bottlenecked there */
	double lnew;          /* its share after the solve; -1 if it did not freeze */
	int *av;              /* A's flows on it (their index in alist) */
	int ln;               /* A's flows on it not frozen yet */
	int avn, avcap;
	int avdone;           /* its first avdone entries of av are frozen */
	unsigned mark;        /* epoch of its last touch or first use in a solve */
	unsigned dmark;       /* epoch in which it went on the dirty list */
};

_Static_assert(sizeof(struct link_hot) == 64, "a link's solve state is one cache line");

struct sim_net {
	const struct sim_topo *topo;
	int L;
	/* flows */
	int nf, capf;
	struct flow_hot *h;   /* what a recomputation reads, one cache line a flow */
	int64_t *tag;
	/* links */
	/* per link: the flows that crossed it since it was last idle, ended
	 * ones included until a scan drops them or the link goes idle (so an
	 * ending flow costs no search and no writes in these lists); lact
	 * counts the active ones */
	int **lf, *lfn, *lfcap, *lact;
	double *lbytes, *lint, *lbusy, *lrate, *lt;
	struct link_hot *lk;  /* per link: what a solve touches */
	/* per link: its sharing follows from other links' (sim_topo_dominated):
	 * solves leave it out and only keep its rate for the accounting */
	unsigned char *dom;
	/* scratch for a recomputation */
	int *comp_links;
	int *ended;           /* flows ended in the current event */
	int *started, nstarted; /* flows started in the current event */
	int *alist, na;       /* A: the flows being re-solved */
	/* A as one bit a flow, so that a scan of a link's flows skips A's
	 * without reading their records (cleared after each solve) */
	uint64_t *abits;
	int *bpos;            /* position of a flow in its bottleneck's heap */
	unsigned epA, epL, epD;
	int ncl;              /* links of the current solve (comp_links) */
	int *dirty, ndirty;   /* links whose share dropped since the last flush */
	/* per flow of A, by its index in alist: what the filling and the
	 * commit read of it, copied when it joins, so that they touch the
	 * flow's own record (somewhere in a large array) once, not three times */
	struct aflow {
		double old, nrate;    /* rate before the solve; after */
		int path[SIM_PATH_MAX - 1];
		int obott, nbott;     /* bottleneck before; after */
		unsigned char plen;   /* the links solves share (slen) ... */
		unsigned char alen;   /* ... of all its links */
		unsigned char frozen;
	} *af;
	/* per link: no flow on it that is bottlenecked elsewhere is faster
	 * (an upper bound; those bottlenecked there run at its share) */
	double *lmaxo;
	int full;             /* recompute whole components (reference mode) */
	double coalesce;      /* relative window in which ends are one event */
	/* per link: flows bottlenecked there, their rate, scratch */
	struct ih_ent **bl;   /* per link: its bottlenecked flows by virtual end */
	int *bln, *blcap;
	double *blmax;        /* per link: no key in its heap is larger (a bound) */
	unsigned *mmark;      /* link whose bottlenecked flows joined A */
	/* the filling's heap: a link's fill (id = link) and check (id = L +
	 * link) entries, each in it at most once (position in shpos) */
	struct ih_ent *sh;
	int shn, *shpos;
	int *touched, ntouched, captouched;
	unsigned epoch;
	/* end heap over active flows */
	/* per link: the virtual clock of its bottlenecked flows (bytes each has
	 * received at its share, vclk at time vt), and a heap of the links by
	 * the time their first bottlenecked flow ends */
	double *vclk, *vt;
	struct ih_ent *lq;
	int *lqpos, lqn;
	struct sim_queue *q;
	double now;
	struct sim_net_stats st;
	sim_net_rates_fn rates_fn;
	void *rates_user;
};

/* ---- indexed heaps (key, then id), keys inline ----
 * Two uses: per link the flows bottlenecked there by virtual end (pos:
 * bpos, by flow), and the links by the time their first flow ends (pos:
 * lqpos, by link).  Keys inline: comparing reads the heap only, not a
 * record in a large array (a cache miss per comparison made the old end
 * heap a sixth of a skewed all-to-all's time). */

static inline int ih_less(const struct ih_ent *a, const struct ih_ent *b)
{
	return a->key < b->key || (a->key == b->key && a->id < b->id);
}

static void ih_up(struct ih_ent *h, int *pos, int i)
{
	struct ih_ent e = h[i];

	while (i > 0) {
		int p = (i - 1) / 2;
		if (!ih_less(&e, &h[p]))
			break;
		h[i] = h[p];
		pos[h[i].id] = i;
		i = p;
	}
	h[i] = e;
	pos[e.id] = i;
}

static void ih_down(struct ih_ent *h, int n, int *pos, int i)
{
	struct ih_ent e = h[i];

	for (;;) {
		int c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && ih_less(&h[c + 1], &h[c]))
			c++;
		if (!ih_less(&h[c], &e))
			break;
		h[i] = h[c];
		pos[h[i].id] = i;
		i = c;
	}
	h[i] = e;
	pos[e.id] = i;
}

/* Sets entry i's key and restores the order. */
static void ih_rekey(struct ih_ent *h, int n, int *pos, int i, double key)
{
	int up = key < h[i].key;

	h[i].key = key;
	if (up)
		ih_up(h, pos, i);
	else
		ih_down(h, n, pos, i);
}

/* Removes entry i of a heap of *n entries. */
static void ih_remove(struct ih_ent *h, int *n, int *pos, int i)
{
	struct ih_ent last = h[--*n];

	pos[h[i].id] = -1;
	if (i == *n)
		return;
	h[i] = last;
	pos[last.id] = i;
	ih_up(h, pos, i);
	ih_down(h, *n, pos, pos[last.id]);
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

	if (grow1(n->tag, sizeof *n->tag, cap, &x) != 0)
		return -1;
	n->tag = x;
	if (grow1(n->started, sizeof *n->started, cap, &x) != 0)
		return -1;
	n->started = x;
	if (grow1(n->alist, sizeof *n->alist, cap, &x) != 0)
		return -1;
	n->alist = x;
	if (grow1(n->bpos, sizeof *n->bpos, cap, &x) != 0)
		return -1;
	n->bpos = x;
	if (grow1(n->af, sizeof *n->af, cap, &x) != 0)
		return -1;
	n->af = x;
	if (grow1(n->ended, sizeof *n->ended, cap, &x) != 0)
		return -1;
	n->ended = x;
	{
		size_t ow = ((size_t)n->capf + 63) / 64, nw = ((size_t)cap + 63) / 64;
		uint64_t *b = realloc(n->abits, nw * sizeof *b);
		if (b == NULL)
			return -1;
		memset(b + ow, 0, (nw - ow) * sizeof *b);
		n->abits = b;
	}
	n->capf = cap;
	return 0;
}

/* Takes the topology's bandwidths and dominated links, at the start of a
 * run in which no flow has started yet (the solver's state depends on
 * both, and flows sort their paths by n->dom when they start). */
static void sync_topo(struct sim_net *n)
{
	for (int l = 0; l < n->L; l++)
		n->lk[l].bw = n->topo->links[l].bw_Bps;
	sim_topo_dominated(n->topo, n->dom);
}

enum moe_status sim_net_new(const struct sim_topo *t, size_t reserve, struct sim_net **out)
{
	struct sim_net *n = calloc(1, sizeof *n);
	int L = t->nlinks;
	void *lk;

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
	n->lact = calloc((size_t)L + 1, sizeof *n->lact);
	n->lfcap = calloc((size_t)L + 1, sizeof *n->lfcap);
	n->lbytes = calloc((size_t)L + 1, sizeof(double));
	n->lint = calloc((size_t)L + 1, sizeof(double));
	n->lbusy = calloc((size_t)L + 1, sizeof(double));
	n->lrate = calloc((size_t)L + 1, sizeof(double));
	n->lt = calloc((size_t)L + 1, sizeof(double));
	n->dom = calloc((size_t)L + 1, 1);
	if (posix_memalign(&lk, 64, ((size_t)L + 1) * sizeof *n->lk) == 0) {
		memset(lk, 0, ((size_t)L + 1) * sizeof *n->lk);
		n->lk = lk;
	}
	n->comp_links = calloc((size_t)L + 1, sizeof(int));
	n->bl = calloc((size_t)L + 1, sizeof *n->bl);
	n->bln = calloc((size_t)L + 1, sizeof(int));
	n->blmax = calloc((size_t)L + 1, sizeof(double));
	n->blcap = calloc((size_t)L + 1, sizeof(int));
	n->dirty = calloc((size_t)L + 1, sizeof(int));
	n->lmaxo = calloc((size_t)L + 1, sizeof(double));
	n->vclk = calloc((size_t)L + 1, sizeof(double));
	n->vt = calloc((size_t)L + 1, sizeof(double));
	n->lq = calloc((size_t)L + 1, sizeof *n->lq);
	n->lqpos = malloc(((size_t)L + 1) * sizeof(int));
	for (int l = 0; n->lqpos != NULL && l <= L; l++)
		n->lqpos[l] = -1;
	n->mmark = calloc((size_t)L + 1, sizeof(unsigned));
	n->sh = malloc((2 * (size_t)L + 2) * sizeof *n->sh);
	n->shpos = malloc((2 * (size_t)L + 2) * sizeof(int));
	for (int i = 0; n->shpos != NULL && i < 2 * L + 2; i++)
		n->shpos[i] = -1;
	n->captouched = 1024;
	n->touched = malloc((size_t)n->captouched * sizeof(int));
	if (n->lf == NULL || n->lfn == NULL || n->lact == NULL || n->lfcap == NULL || n->lbytes == NULL ||
	    n->lint == NULL || n->lbusy == NULL || n->lrate == NULL || n->lt == NULL ||
	    n->lk == NULL || n->dom == NULL ||
	    n->comp_links == NULL || n->sh == NULL || n->shpos == NULL || n->touched == NULL || n->bl == NULL ||
	    n->bln == NULL || n->blmax == NULL || n->blcap == NULL || n->dirty == NULL || n->lmaxo == NULL || n->vclk == NULL || n->vt == NULL || n->lq == NULL ||
	    n->lqpos == NULL || n->mmark == NULL ||
	   
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
	for (int l = 0; l < n->L && n->lk; l++)
		free(n->lk[l].av);
	free(n->lk);
	free(n->dom);
	free(n->bl); free(n->bln); free(n->blmax); free(n->blcap);
	free(n->dirty); free(n->lmaxo); free(n->vclk); free(n->vt); free(n->lq); free(n->lqpos); free(n->mmark);
	free(n->lf); free(n->lfn); free(n->lact); free(n->lfcap); free(n->lbytes); free(n->lint);
	free(n->lbusy); free(n->lrate); free(n->lt);
	free(n->comp_links); free(n->sh); free(n->shpos); free(n->touched);
	free(n->h);
	free(n->tag);
	free(n->started); free(n->alist); 
	free(n->bpos); free(n->abits); free(n->af);
	free(n->ended);
	sim_queue_free(n->q);
	free(n);
}

void sim_net_reset(struct sim_net *n)
{
	if (n->abits != NULL)
		memset(n->abits, 0, ((size_t)n->capf + 63) / 64 * sizeof *n->abits);
	n->nf = 0;
	n->lqn = 0;
	n->now = 0;
	sim_queue_clear(n->q);
	for (int l = 0; l < n->L; l++) {
		n->lfn[l] = n->lact[l] = 0;
		n->bln[l] = 0;
		n->lqpos[l] = -1;
		n->vclk[l] = n->vt[l] = 0;
		n->lmaxo[l] = n->lbytes[l] = n->lint[l] = n->lbusy[l] = n->lrate[l] = n->lt[l] = 0;
		/* a share left from the last run would move the links' virtual
		 * clocks, and the next run's rounding with them */
		n->lk[l].share = 0;
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
	n->h[f].bytes = bytes;
	n->h[f].t_end = NAN;
	n->tag[f] = tag;
	n->h[f].state = F_PENDING;
	n->h[f].plen = p->n;
	n->h[f].slen = (unsigned char)p->n;
	memcpy(n->h[f].path, p->link, (size_t)p->n * sizeof(int));
	n->h[f].bott = -1;
	if (flow != NULL)
		*flow = f;
	return MOE_OK;
}

/* ---- the run ---- */

static int touch(struct sim_net *n, int link)
{
	if (n->lk[link].mark == n->epoch)
		return 0;
	n->lk[link].mark = n->epoch;
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

static int link_add_flow(struct sim_net *n, int l, int f)
{
	if (n->lfn[l] == n->lfcap[l]) {
		int cap = n->lfcap[l] ? n->lfcap[l] * 2 : 8;
		int *x = realloc(n->lf[l], (size_t)cap * sizeof *x);
		if (x == NULL)
			return -1;
		n->lf[l] = x;
		n->lfcap[l] = cap;
	}
	n->lf[l][n->lfn[l]++] = f;
	n->lact[l]++;
	return 0;
}

/* A starting flow's path with the links solves share first (slen of
 * them) and the dominated ones after; all of them shared if none is. */
static void split_path(const struct sim_net *n, struct flow_hot *h)
{
	int p[SIM_PATH_MAX - 1], s = 0, d = h->plen;

	for (int k = 0; k < h->plen; k++) {
		int l = h->path[k];
		if (n->dom[l])
			p[--d] = l;
		else
			p[s++] = l;
	}
	if (s == 0) {
		h->slen = (unsigned char)h->plen;
		return;
	}
	memcpy(h->path, p, (size_t)h->plen * sizeof *p);
	h->slen = (unsigned char)s;
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

/* The rate of flow f: its bottleneck's share (0 before its first solve). */
static inline double rate_of(const struct sim_net *n, int f)
{
	int b = n->h[f].bott;

	return b >= 0 ? n->lk[b].share : 0;
}

/* Link l's virtual clock now. */
static inline double vclock(const struct sim_net *n, int l)
{
	return n->vclk[l] + n->lk[l].share * (n->now - n->vt[l]);
}

/* Puts link l in the link heap at the end time of its first bottlenecked
 * flow, or takes it out when it has none. */
static inline double link_next_end(const struct sim_net *n, int l)
{
	if (n->bln[l] == 0 || !(n->lk[l].share > 0))
		return INFINITY;
	return n->vt[l] + (n->bl[l][0].key - n->vclk[l]) / n->lk[l].share;
}

static void lq_update(struct sim_net *n, int l)
{
	double t = link_next_end(n, l);
	int i = n->lqpos[l];

	if (t == INFINITY) {
		if (i >= 0)
			ih_remove(n->lq, &n->lqn, n->lqpos, i);
		return;
	}
	if (i < 0) {
		i = n->lqn++;
		n->lq[i].key = t;
		n->lq[i].id = l;
		ih_up(n->lq, n->lqpos, i);
		return;
	}
	ih_rekey(n->lq, n->lqn, n->lqpos, i, t);
}

/* Flow f becomes bottlenecked at link l with rem bytes to go: it ends
 * when l's virtual clock has advanced by rem. */
static int bl_add(struct sim_net *n, int l, int f, double rem)
{
	int i;

	if (n->bln[l] == n->blcap[l]) {
		int cap = n->blcap[l] ? n->blcap[l] * 2 : 8;
		struct ih_ent *x = realloc(n->bl[l], (size_t)cap * sizeof *x);
		if (x == NULL)
			return -1;
		n->bl[l] = x;
		n->blcap[l] = cap;
	}
	i = n->bln[l]++;
	n->bl[l][i].key = vclock(n, l) + rem;
	if (i == 0 || n->bl[l][i].key > n->blmax[l])
		n->blmax[l] = n->bl[l][i].key;
	n->bl[l][i].id = f;
	ih_up(n->bl[l], n->bpos, i);
	n->h[f].bott = l;
	return 0;
}

/* Takes flow f off its bottleneck; returns the bytes it has left. */
static double bl_remove(struct sim_net *n, int f)
{
	int l = n->h[f].bott;
	double rem;

	if (l < 0)
		return n->h[f].bytes;
	rem = n->bl[l][n->bpos[f]].key - vclock(n, l);
	ih_remove(n->bl[l], &n->bln[l], n->bpos, n->bpos[f]);
	n->h[f].bott = -1;
	return rem > 0 ? rem : 0;
}

#define TOL 1e-9

/* How far ahead loops over flows scattered in memory prefetch their
 * records: the misses then overlap instead of coming one after another. */
#define PF 8


/* Puts entry id in the filling's heap at key, or moves it there. */
static void sh_set(struct sim_net *n, int id, double key)
{
	int i = n->shpos[id];

	if (i >= 0) {
		ih_rekey(n->sh, n->shn, n->shpos, i, key);
		return;
	}
	i = n->shn++;
	n->sh[i].key = key;
	n->sh[i].id = id;
	ih_up(n->sh, n->shpos, i);
}

/* First use of link m in this solve: the rate on it is what the held flows
 * carry; nothing in A yet.  Its list of A's flows gets room for every
 * active flow on it, so that joins append without checking.  Returns 0 or
 * -1 (out of memory). */
static int solve_link(struct sim_net *n, int m)
{
	struct link_hot *x = &n->lk[m];

	if (x->mark == n->epL)
		return 0;
	if (x->avcap < n->lact[m]) {
		int cap = x->avcap ? x->avcap : 8;
		int *p;
		while (cap < n->lact[m])
			cap *= 2;
		p = realloc(x->av, (size_t)cap * sizeof *p);
		if (p == NULL)
			return -1;
		x->av = p;
		x->avcap = cap;
	}
	x->mark = n->epL;
	n->comp_links[n->ncl++] = m;
	x->rnew = n->lrate[m];
	x->ln = 0;
	x->lnew = -1;
	x->avn = 0;
	x->avdone = 0;
	if (n->bln[m] > 0)
		sh_set(n, n->L + m, x->share);
	return 0;
}

static inline double solve_share(const struct sim_net *n, int m)
{
	double c = n->lk[m].bw - n->lk[m].rnew;

	return c > 0 ? c / n->lk[m].ln : 0;
}

/* Makes sure link m's fill entry is no later than its share (a share that
 * grew is found when the entry comes out, and it goes back in then). */
static inline void fill_push(struct sim_net *n, int m)
{
	double x = solve_share(n, m);
	int i = n->shpos[m];

	if (i < 0 || x < n->sh[i].key)
		sh_set(n, m, x);
}

/* Moves up the fill entries of the links that joins made cheaper to fill,
 * once per link after a batch of joins, not once per join. */
static void flush(struct sim_net *n)
{
	for (int i = 0; i < n->ndirty; i++)
		fill_push(n, n->dirty[i]);
	n->ndirty = 0;
	n->epD = ++n->epoch;
}

/* Takes flow f out of the held flows into A (unfrozen): its old rate
 * leaves every link of its path, which it now competes for.  The hottest
 * loop of a solve: what it reads of n is loaded once (its stores through
 * int pointers would otherwise make the compiler reload it per link). */
static int join(struct sim_net *n, int f)
{
	uint64_t *word = &n->abits[f >> 6];
	const uint64_t bit = (uint64_t)1 << (f & 63);
	const struct flow_hot *h = &n->h[f];
	struct link_hot *lk = n->lk;
	const unsigned epL = n->epL, epD = n->epD;
	int *dirty = n->dirty;
	int nd = n->ndirty, idx, b, plen;
	struct aflow *a;
	double r;

	if ((*word & bit) || h->state != F_ACTIVE)
		return 0;
	*word |= bit;
	b = h->bott;
	r = b >= 0 ? lk[b].share : 0;
	plen = h->slen;
	idx = n->na++;
	a = &n->af[idx];
	a->old = r;
	a->obott = b;
	a->plen = (unsigned char)plen;
	a->alen = (unsigned char)h->plen;
	a->frozen = 0;
	memcpy(a->path, h->path, sizeof a->path);
	n->alist[idx] = f;
	n->st.flow_visits++;
	for (int k = 0; k < plen; k++) {
		int m = h->path[k];
		struct link_hot *x = &lk[m];
		if (x->mark != epL && solve_link(n, m) != 0)
			return -1;
		x->av[x->avn++] = idx;
		x->rnew -= r;
		x->ln++;
		if (x->dmark != epD) {
			x->dmark = epD;
			dirty[nd++] = m;
		}
	}
	n->ndirty = nd;
	return 0;
}

/* Every held flow bottlenecked at link m joins A: m can give them more (or
 * must give them less) than their old share. */
static int release(struct sim_net *n, int m)
{
	if (n->mmark[m] == n->epA)
		return 0;
	n->mmark[m] = n->epA;
	for (int j = 0; j < n->bln[m]; j++) {
		if (j + PF < n->bln[m])
			__builtin_prefetch(&n->h[n->bl[m][j + PF].id]);
		if (join(n, n->bl[m][j].id) != 0)
			return -1;
	}
	return 0;
}

/* Adds every active flow of the connected component of the touched links
 * to A (the "full" mode, and the reference for the incremental one). */
static int seed_component(struct sim_net *n)
{
	int head = 0;

	for (int i = 0; i < n->ntouched; i++)
		if (solve_link(n, n->touched[i]) != 0)
			return -1;
	while (head < n->ncl) {
		int l = n->comp_links[head++];
		for (int i = 0; i < n->lfn[l]; i++)
			if (join(n, n->lf[l][i]) != 0)
				return -1;
	}
	return 0;
}

/* New max-min rates after the flows of this event started and ended.
 *
 * A max-min allocation is the unique feasible one in which every flow has
 * a bottleneck: a saturated link on which no flow has a higher rate.  The
 * solve is progressive filling in which most flows are held at their old
 * rates and join A, the flows being filled, only when the filling shows
 * that their rate may change:
 *  - A starts as the flows that started;
 *  - when a link freezes at level s, held flows on it with a rate above s
 *    join first (they would exceed a saturated link's share; in the old
 *    allocation they could not cross a link frozen earlier, whose share was
 *    lower, so joining never reopens a frozen link);
 *  - at the old share of a link where held flows are bottlenecked (ended
 *    flows' links, links A crosses), they join if the link has room: with
 *    no flow of A on it, spare capacity; with flows of A still rising on
 *    it, a fill share above the old one.  Otherwise the link freezes at its
 *    old share (within TOL) with them held: the flows of A there cannot
 *    rise above it, and releasing the held ones anyway would make a tie
 *    that rounding puts one ulp above the share ripple through every link
 *    tied at that level (a uniform all-to-all is all ties).  A link that
 *    freezes with flows still held there freezes at its old share (within
 *    TOL of the level; further off, they join first), so that their rate
 *    does not move behind their other links' backs.
 * When the heap is empty every flow of A has a bottleneck (its link froze
 * full with no higher rate on it) and every held flow keeps one: its link
 * was confirmed full at its level, and nothing joining later frees
 * capacity there (a flow joining for being faster than the level cannot
 * cross it, having been no faster than its share in the old max-min
 * allocation; a released flow only rises from its old share).  So the
 * allocation is the exact max-min one (ties within TOL).  The cost is that
 * of the flows whose rates can change and the links they cross, not the
 * network's.  Full mode joins the whole component at once. */
static int recompute(struct sim_net *n)
{
	int ndom = 0;

	n->epA = ++n->epoch;
	n->epL = ++n->epoch;
	n->epD = ++n->epoch;
	n->na = 0;
	n->ncl = 0;
	n->ndirty = 0;
	n->st.recomputes++;
	if (n->full) {
		if (seed_component(n) != 0)
			return -1;
	} else {
		for (int i = 0; i < n->ntouched; i++)
			if (solve_link(n, n->touched[i]) != 0)
				return -1;
		for (int i = 0; i < n->nstarted; i++) {
			if (i + PF < n->nstarted)
				__builtin_prefetch(&n->h[n->started[i + PF]]);
			if (join(n, n->started[i]) != 0)
				return -1;
		}
	}
	flush(n);
	for (;;) {
		struct ih_ent e;
		int l;
		double bw, share;

		/* the links a check or a freeze made cheaper to fill get their
		 * entries before the next pop */
		if (n->ndirty > 0)
			flush(n);
		if (n->shn == 0)
			break;
		e = n->sh[0];
		ih_remove(n->sh, &n->shn, n->shpos, 0);
		l = e.id < n->L ? e.id : e.id - n->L;
		bw = n->lk[l].bw;
		if (e.id >= n->L) {
			if ((n->lk[l].ln > 0 ? solve_share(n, l) > n->lk[l].share * (1 + TOL)
					     : bw - n->lk[l].rnew > TOL * bw) &&
			    release(n, l) != 0)
				return -1;
			continue;
		}
		if (n->lk[l].ln == 0)
			continue;
		share = solve_share(n, l);
		if (share > e.key * (1 + TOL) + 1e-300) {
			/* the share grew since the entry was pushed */
			fill_push(n, l);
			continue;
		}
		/* held flows faster than this level cannot stay: the link is
		 * about to be full and they would not be the slowest on it */
		{
			int joined = n->na;
			double bound;
			/* the flows bottlenecked at l ran at its old share: all
			 * join when that is above the level (their list, no scan),
			 * or below it (flows of A leaving for other links made
			 * room after l's check) */
			if (n->bln[l] > 0 &&
			    (n->lk[l].share > share * (1 + TOL) || share > n->lk[l].share * (1 + TOL)) &&
			    release(n, l) != 0)
				return -1;
			/* the others are no faster than lmaxo, nor than l's old
			 * share when flows were bottlenecked there (the old
			 * allocation was max-min): only then look at them */
			bound = n->lmaxo[l];
			if (n->bln[l] > 0 && n->lk[l].share < bound)
				bound = n->lk[l].share;
			if (bound > share * (1 + TOL)) {
				double mx = 0;
				int kept = 0;
				n->st.scanned += (uint64_t)n->lfn[l];
				for (int i = 0; i < n->lfn[l]; i++) {
					int g = n->lf[l][i];
					double rg;
					if (n->abits[g >> 6] >> (g & 63) & 1) {
						n->lf[l][kept++] = g; /* in A: active */
						continue;
					}
					if (i + PF < n->lfn[l])
						__builtin_prefetch(&n->h[n->lf[l][i + PF]]);
					if (n->h[g].state == F_DONE)
						continue; /* dropped from the list */
					n->lf[l][kept++] = g;
					rg = rate_of(n, g);
					if (rg > share * (1 + TOL)) {
						if (join(n, g) != 0)
							return -1;
					} else if (rg > mx && n->h[g].bott != l) {
						mx = rg;
					}
				}
				/* the held flows left; A's are accounted at commit */
				n->lmaxo[l] = mx;
				n->lfn[l] = kept;
			}
			if (n->na > joined)
				continue; /* l is dirty: pushed again at its new share */
		}
		/* flows still held at l keep its old share, and the flows of A
		 * freeze at it too (within TOL of the level): the held flows'
		 * rate is the link's share, and moving it here would move their
		 * rates unseen by their other links (whose rate integrals would
		 * then drift from their bytes by up to TOL) */
		if (n->bln[l] > 0 && n->mmark[l] != n->epA)
			share = n->lk[l].share;
		n->lk[l].lnew = share;
		/* a link can freeze again when flows join later; those before
		 * avdone froze then and stay frozen */
		for (int i = n->lk[l].avdone; i < n->lk[l].avn; i++) {
			struct aflow *a = &n->af[n->lk[l].av[i]];
			if (i + PF < n->lk[l].avn)
				__builtin_prefetch(&n->af[n->lk[l].av[i + PF]]);
			if (a->frozen)
				continue;
			a->frozen = 1;
			a->nrate = share;
			a->nbott = l;
			for (int k = 0; k < a->plen; k++) {
				int m = a->path[k];
				n->lk[m].rnew += share;
				/* a link left with nothing to fill leaves the heap
				 * now (most do: their flows froze at another link),
				 * which is cheaper than popping it at the top */
				if (--n->lk[m].ln == 0 && n->shpos[m] >= 0)
					ih_remove(n->sh, &n->shn, n->shpos, n->shpos[m]);
			}
		}
		n->lk[l].avdone = n->lk[l].avn;
	}
	/* commit: the clocks of the links involved move to now at their old
	 * shares; flows whose bottleneck changed move to the new one's heap
	 * with the bytes they have left; then the new shares.  A flow that
	 * keeps its bottleneck costs nothing here beyond this loop: its rate
	 * is its link's share. */
	for (int i = 0; i < n->ncl; i++) {
		int m = n->comp_links[i];
		settle_link(n, m);
		n->vclk[m] = vclock(n, m);
		n->vt[m] = n->now;
	}
	for (int i = 0; i < n->na; i++) {
		const struct aflow *a = &n->af[i];
		double r = a->nrate;
		n->abits[n->alist[i] >> 6] = 0;
		if (i + PF < n->na && n->af[i + PF].obott != n->af[i + PF].nbott) {
			__builtin_prefetch(&n->h[n->alist[i + PF]]);
			__builtin_prefetch(&n->bpos[n->alist[i + PF]]);
		}
		/* every flow of A, risen or not: a scan at a freeze lowered the
		 * bound of its links to the held flows' rates */
		for (int k = 0; k < a->plen; k++) {
			int m = a->path[k];
			if (m != a->nbott && r > n->lmaxo[m])
				n->lmaxo[m] = r;
		}
		/* links left out of the solve: their rate moves by the flow's */
		for (int k = a->plen; k < a->alen; k++) {
			int m = a->path[k];
			if (n->lk[m].mark != n->epL) {
				n->lk[m].mark = n->epL;
				settle_link(n, m);
				n->comp_links[n->ncl + ndom++] = m;
			}
			n->lrate[m] += r - a->old;
		}
		if (fabs(r - a->old) > 1e-13 * r)
			n->st.rate_changes++;
		if (a->obott != a->nbott) {
			int f = n->alist[i];
			if (bl_add(n, a->nbott, f, bl_remove(n, f)) != 0)
				return -1;
		}
	}
	for (int i = 0; i < n->ncl; i++) {
		int m = n->comp_links[i];
		n->lrate[m] = n->lact[m] > 0 && n->lk[m].rnew > 0 ? n->lk[m].rnew : 0;
		if (n->lk[m].lnew >= 0)
			n->lk[m].share = n->lk[m].lnew;
		lq_update(n, m);
	}
	for (int i = n->ncl; i < n->ncl + ndom; i++) {
		int m = n->comp_links[i];
		if (!(n->lact[m] > 0 && n->lrate[m] > 0))
			n->lrate[m] = 0;
	}
	if (n->rates_fn != NULL)
		n->rates_fn(n->rates_user, n, n->now, n->comp_links, n->ncl + ndom);
	return 0;
}

/* Flow f ends at t; the caller updates its bottleneck's place in the link
 * heap, and with detach 0 empties that link's heap itself. */
static void end_flow(struct sim_net *n, int f, double t, int detach)
{
	double r = rate_of(n, f);

	n->h[f].state = F_DONE;
	n->h[f].t_end = t;
	if (detach)
		bl_remove(n, f);
	else
		n->h[f].bott = -1;
	for (int k = 0; k < n->h[f].plen; k++) {
		int l = n->h[f].path[k];
		settle_link(n, l);
		n->lbytes[l] += n->h[f].bytes;
		if (--n->lact[l] == 0)
			n->lfn[l] = 0; /* idle: every entry has ended */
		n->lrate[l] = n->lact[l] > 0 ? n->lrate[l] - r : 0;
	}
	n->st.flows_done++;
}

/* Adds rate and rate x end time over link l's bottlenecked flows that end
 * by the reading kmax of its virtual clock: heap entry i and the entries
 * below it (a heap's subtree holds no smaller key, so it stops early). */
static void due_link(const struct sim_net *n, int l, int i, double kmax, double *sw, double *swt)
{
	const struct ih_ent *h = n->bl[l];

	while (i < n->bln[l] && h[i].key <= kmax) {
		*sw += n->lk[l].share;
		*swt += n->lk[l].share * (n->vt[l] + (h[i].key - n->vclk[l]) / n->lk[l].share);
		due_link(n, l, 2 * i + 1, kmax, sw, swt);
		i = 2 * i + 2;
	}
}

/* The same over every link with a flow due by lim (link heap entry i and
 * below). */
static void due_links(const struct sim_net *n, int i, double lim, double *sw, double *swt)
{
	while (i < n->lqn && n->lq[i].key <= lim) {
		int l = n->lq[i].id;
		due_link(n, l, 0, n->vclk[l] + (lim - n->vt[l]) * n->lk[l].share, sw, swt);
		due_links(n, 2 * i + 1, lim, sw, swt);
		i = 2 * i + 2;
	}
}

enum moe_status sim_net_run(struct sim_net *n, sim_net_done_fn done, void *user)
{
	struct sim_event ev;
	/* coalescing: flows due in a window end at the event's time, not at
	 * their own (which can precede it; a flow chained from one must not
	 * start in the past) */
	const int co = n->coalesce > SIM_TIME_EPS_REL;

	/* the topology may have been slowed down since the network was made */
	if (n->st.flows_started == 0)
		sync_topo(n);
	for (;;) {
		double tq = sim_queue_peek(n->q, &ev) ? ev.t_s : INFINITY;
		double tf = n->lqn > 0 ? n->lq[0].key : INFINITY;
		double t = tq < tf ? tq : tf;
		double lim;
		int nended = 0;

		if (t == INFINITY)
			break;
		lim = t + n->coalesce * fabs(t) + SIM_TIME_EPS_ABS;
		n->now = t;
		/* a coalesced window's flows end together at the rate-weighted
		 * mean of their own ends: the capacity those due before it keep
		 * too long is, to first order, what those due after it give up
		 * too early, so the other flows' bytes and times stay right (at
		 * t, the window's start, they would all run early).  On one link
		 * of equal shares the mean is when the link drains. */
		if (co && tf <= lim) {
			double sw = 0, swt = 0;
			due_links(n, 0, lim, &sw, &swt);
			if (sw > 0 && swt / sw > t)
				n->now = swt / sw < lim ? swt / sw : lim;
		}
		n->epoch++;
		n->ntouched = 0;
		n->nstarted = 0;
		n->st.events++;
		/* settle the links the ending flows leave before their rates drop */
		/* a link's flows due in the window end together, the link's
		 * place in the link heap updated once (flows into a hot GPU,
		 * bottlenecked at its link, end at one instant) */
		while (n->lqn > 0 && n->lq[0].key <= lim) {
			int l = n->lq[0].id;
			double te = n->lq[0].key;
			if (n->vt[l] + (n->blmax[l] - n->vclk[l]) / n->lk[l].share <= lim) {
				/* all of them are due (typically: equal flows into one
				 * GPU): in the heap's array order, without sifting */
				int cnt = n->bln[l];
				for (int j = 0; j < cnt; j++) {
					int f = n->bl[l][j].id;
					if (j + PF < cnt)
						__builtin_prefetch(&n->h[n->bl[l][j + PF].id]);
					te = n->vt[l] + (n->bl[l][j].key - n->vclk[l]) / n->lk[l].share;
					for (int k = 0; k < n->h[f].slen; k++) {
						if (touch(n, n->h[f].path[k]) != 0)
							MOE_FAIL(MOE_ENOMEM, "network: out of memory");
					}
					n->ended[nended++] = f;
					end_flow(n, f, co ? n->now : te, 0);
				}
				n->bln[l] = 0;
				lq_update(n, l);
				continue;
			}
			do {
				int f = n->bl[l][0].id;
				/* the next to end is one of the root's children */
				if (n->bln[l] > 2) {
					__builtin_prefetch(&n->h[n->bl[l][1].id]);
					__builtin_prefetch(&n->h[n->bl[l][2].id]);
				}
				for (int k = 0; k < n->h[f].slen; k++) {
					if (touch(n, n->h[f].path[k]) != 0)
						MOE_FAIL(MOE_ENOMEM, "network: out of memory");
				}
				n->ended[nended++] = f;
				end_flow(n, f, co ? n->now : te, 1);
			} while ((te = link_next_end(n, l)) <= lim);
			lq_update(n, l);
		}
		while (sim_queue_pop_until(n->q, lim, &ev)) {
			int f = (int)ev.data;
			n->st.flows_started++;
			if (n->h[f].plen == 0 || n->h[f].bytes <= 0) {
				n->h[f].state = F_DONE;
				n->h[f].t_end = co ? n->now : ev.t_s;
				n->st.flows_done++;
				n->ended[nended++] = f;
				continue;
			}
			n->h[f].state = F_ACTIVE;
			n->started[n->nstarted++] = f;
			split_path(n, &n->h[f]);
			for (int k = 0; k < n->h[f].plen; k++) {
				int l = n->h[f].path[k];
				settle_link(n, l);
				if (link_add_flow(n, l, f) != 0 || (k < n->h[f].slen && touch(n, l) != 0))
					MOE_FAIL(MOE_ENOMEM, "network: out of memory");
			}
		}
		if (n->ntouched > 0 && recompute(n) != 0)
			MOE_FAIL(MOE_ENOMEM, "network: out of memory");
		/* n->ended is re-read each time: a callback adding flows may move it */
		for (int i = 0; i < nended; i++) {
			int f = n->ended[i];
			if (i + PF < nended)
				__builtin_prefetch(&n->tag[n->ended[i + PF]]);
			if (done != NULL)
				done(user, n, f, n->tag[f], n->h[f].t_end);
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
	return f >= 0 && f < n->nf && n->h[f].state == F_DONE ? n->h[f].t_end : NAN;
}

double sim_net_flow_bytes(const struct sim_net *n, int f)
{
	return f >= 0 && f < n->nf ? n->h[f].bytes : NAN;
}

double sim_net_flow_rate(const struct sim_net *n, int f)
{
	return f >= 0 && f < n->nf && n->h[f].state == F_ACTIVE ? rate_of(n, f) : 0;
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
