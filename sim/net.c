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

struct lheap_ent {
	double key;
	int link;
};

struct sim_net {
	const struct sim_topo *topo;
	int L;
	/* flows */
	int nf, capf;
	double *bytes, *rem, *rate, *t_last, *t_end, *lat;
	int64_t *tag;
	unsigned char *state, *plen;
	int (*path)[SIM_PATH_MAX];
	int (*pos)[SIM_PATH_MAX];
	int *hpos;            /* position in the end heap, -1 if absent */
	unsigned *fmark;      /* epoch marks for the component search */
	/* links */
	int **lf, *lfn, *lfcap;
	double *lbytes, *lint, *lbusy, *lrate, *lt, *cap, *rnew;
	int *ln;
	unsigned *lmark;
	/* scratch for a recomputation */
	int *comp_links, *comp_flows, ncl, ncf;
	int *ended;           /* flows ended in the current event */
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

	if (grow1(n->bytes, sizeof *n->bytes, cap, &x) != 0)
		return -1;
	n->bytes = x;
	if (grow1(n->rem, sizeof *n->rem, cap, &x) != 0)
		return -1;
	n->rem = x;
	if (grow1(n->rate, sizeof *n->rate, cap, &x) != 0)
		return -1;
	n->rate = x;
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
	if (grow1(n->plen, sizeof *n->plen, cap, &x) != 0)
		return -1;
	n->plen = x;
	if (grow1(n->path, sizeof *n->path, cap, &x) != 0)
		return -1;
	n->path = x;
	if (grow1(n->pos, sizeof *n->pos, cap, &x) != 0)
		return -1;
	n->pos = x;
	if (grow1(n->hpos, sizeof *n->hpos, cap, &x) != 0)
		return -1;
	n->hpos = x;
	if (grow1(n->fmark, sizeof *n->fmark, cap, &x) != 0)
		return -1;
	n->fmark = x;
	if (grow1(n->eh, sizeof *n->eh, cap, &x) != 0)
		return -1;
	n->eh = x;
	if (grow1(n->comp_flows, sizeof *n->comp_flows, cap, &x) != 0)
		return -1;
	n->comp_flows = x;
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
	n->lhcap = 2 * L + 16;
	n->lh = malloc((size_t)n->lhcap * sizeof *n->lh);
	n->captouched = 1024;
	n->touched = malloc((size_t)n->captouched * sizeof(int));
	if (n->lf == NULL || n->lfn == NULL || n->lfcap == NULL || n->lbytes == NULL ||
	    n->lint == NULL || n->lbusy == NULL || n->lrate == NULL || n->lt == NULL ||
	    n->cap == NULL || n->rnew == NULL || n->ln == NULL || n->lmark == NULL ||
	    n->comp_links == NULL || n->lh == NULL || n->touched == NULL ||
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
	free(n->lf); free(n->lfn); free(n->lfcap); free(n->lbytes); free(n->lint);
	free(n->lbusy); free(n->lrate); free(n->lt); free(n->cap); free(n->rnew); free(n->ln);
	free(n->lmark); free(n->comp_links); free(n->lh); free(n->touched);
	free(n->bytes); free(n->rem); free(n->rate); free(n->t_last); free(n->t_end);
	free(n->lat); free(n->tag); free(n->state); free(n->plen); free(n->path); free(n->pos);
	free(n->hpos); free(n->fmark); free(n->eh); free(n->comp_flows);
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
		n->lbytes[l] = n->lint[l] = n->lbusy[l] = n->lrate[l] = n->lt[l] = 0;
	}
	memset(&n->st, 0, sizeof n->st);
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
	if (p->n < 0 || p->n > SIM_PATH_MAX || !(p->lat_s >= 0))
		MOE_FAIL(MOE_EINVAL, "flow: path of %d links (at most %d), latency %g", p->n,
			 SIM_PATH_MAX, p->lat_s);
	for (int i = 0; i < p->n; i++)
		if (p->link[i] < 0 || p->link[i] >= n->L)
			MOE_FAIL(MOE_EINVAL, "flow: path names link %d outside 0..%d", p->link[i],
				 n->L - 1);
	if (start_s < n->now)
		start_s = n->now;
	if (n->nf == INT32_MAX / 2)
		MOE_FAIL(MOE_ENOMEM, "network: too many flows");
	if (n->nf == n->capf && grow_flows(n, n->capf * 2) != 0)
		MOE_FAIL(MOE_ENOMEM, "network: out of memory for %d flows", n->capf * 2);
	f = n->nf;
	if (sim_queue_push(n->q, start_s + p->lat_s, EV_START, f) != MOE_OK)
		MOE_FAIL(MOE_ENOMEM, "network: out of memory for events");
	n->nf++;
	n->bytes[f] = bytes;
	n->rem[f] = bytes;
	n->rate[f] = 0;
	n->t_last[f] = start_s + p->lat_s;
	n->t_end[f] = NAN;
	n->lat[f] = p->lat_s;
	n->tag[f] = tag;
	n->state[f] = F_PENDING;
	n->plen[f] = (unsigned char)p->n;
	memcpy(n->path[f], p->link, (size_t)p->n * sizeof(int));
	n->hpos[f] = -1;
	n->fmark[f] = 0;
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
	n->lf[l][n->lfn[l]++] = f;
	return 0;
}

static void link_remove_flow(struct sim_net *n, int l, int f, int k)
{
	int i = n->pos[f][k], last = n->lf[l][--n->lfn[l]];

	if (last != f) {
		/* find which path position of `last` is link l */
		n->lf[l][i] = last;
		for (int j = 0; j < n->plen[last]; j++)
			if (n->path[last][j] == l && n->pos[last][j] == n->lfn[l]) {
				n->pos[last][j] = i;
				break;
			}
	}
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

/* Max-min rates for the component of the touched links.  Exact progressive
 * filling; see net.h. */
static int recompute(struct sim_net *n)
{
	int head = 0;

	n->ncl = 0;
	n->ncf = 0;
	n->epoch++;
	/* component search: links -> their active flows -> those flows' links */
	for (int i = 0; i < n->ntouched; i++) {
		int l = n->touched[i];
		n->lmark[l] = n->epoch;
		n->comp_links[n->ncl++] = l;
	}
	while (head < n->ncl) {
		int l = n->comp_links[head++];
		for (int i = 0; i < n->lfn[l]; i++) {
			int f = n->lf[l][i];
			if (n->fmark[f] == n->epoch)
				continue;
			n->fmark[f] = n->epoch;
			n->comp_flows[n->ncf++] = f;
			for (int k = 0; k < n->plen[f]; k++) {
				int m = n->path[f][k];
				if (n->lmark[m] != n->epoch) {
					n->lmark[m] = n->epoch;
					n->comp_links[n->ncl++] = m;
				}
			}
		}
	}
	n->st.recomputes++;
	n->st.flow_visits += (uint64_t)n->ncf;
	/* progressive filling */
	n->lhn = 0;
	for (int i = 0; i < n->ncl; i++) {
		int l = n->comp_links[i];
		settle_link(n, l);
		n->cap[l] = n->topo->links[l].bw_Bps;
		n->ln[l] = n->lfn[l];
		n->rnew[l] = 0;
		if (n->ln[l] > 0 && lh_push(n, n->cap[l] / n->ln[l], l) != 0)
			return -1;
	}
	n->epoch++; /* now marks frozen flows */
	while (n->lhn > 0) {
		struct lheap_ent e = lh_pop(n);
		int l = e.link;
		double share;

		if (n->ln[l] == 0)
			continue;
		share = n->cap[l] > 0 ? n->cap[l] / n->ln[l] : 0;
		if (share > e.key) {
			/* other links' flows froze since this entry was pushed */
			if (lh_push(n, share, l) != 0)
				return -1;
			continue;
		}
		for (int i = 0; i < n->lfn[l]; i++) {
			int f = n->lf[l][i];
			double old;
			if (n->fmark[f] == n->epoch)
				continue;
			n->fmark[f] = n->epoch;
			for (int k = 0; k < n->plen[f]; k++) {
				int m = n->path[f][k];
				n->cap[m] -= share;
				n->ln[m]--;
				n->rnew[m] += share;
			}
			old = n->rate[f];
			if (fabs(share - old) > 1e-13 * share) {
				if (n->now > n->t_last[f])
					n->rem[f] -= old * (n->now - n->t_last[f]);
				if (n->rem[f] < 0)
					n->rem[f] = 0;
				n->t_last[f] = n->now;
				n->rate[f] = share;
				n->t_end[f] = n->now + n->rem[f] / share;
				eh_update(n, f);
				n->st.rate_changes++;
			}
		}
	}
	for (int i = 0; i < n->ncl; i++)
		n->lrate[n->comp_links[i]] = n->rnew[n->comp_links[i]];
	if (n->rates_fn != NULL)
		n->rates_fn(n->rates_user, n, n->now, n->comp_links, n->ncl);
	return 0;
}

static void end_flow(struct sim_net *n, int f, double t)
{
	n->state[f] = F_DONE;
	n->t_end[f] = t;
	n->rem[f] = 0;
	for (int k = 0; k < n->plen[f]; k++) {
		int l = n->path[f][k];
		n->lbytes[l] += n->bytes[f];
		link_remove_flow(n, l, f, k);
	}
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
		lim = t + SIM_TIME_EPS_REL * fabs(t) + SIM_TIME_EPS_ABS;
		n->now = t;
		n->epoch++;
		n->ntouched = 0;
		n->st.events++;
		/* settle the links the ending flows leave before their rates drop */
		while (n->ehn > 0 && n->t_end[n->eh[0]] <= lim) {
			int f = n->eh[0];
			eh_remove(n, f);
			for (int k = 0; k < n->plen[f]; k++) {
				settle_link(n, n->path[f][k]);
				if (touch(n, n->path[f][k]) != 0)
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
			if (n->plen[f] == 0 || n->bytes[f] <= 0) {
				n->state[f] = F_DONE;
				n->t_end[f] = ev.t_s;
				n->st.flows_done++;
				n->ended[nended++] = f;
				continue;
			}
			n->state[f] = F_ACTIVE;
			n->t_last[f] = n->now;
			n->rate[f] = 0;
			for (int k = 0; k < n->plen[f]; k++) {
				int l = n->path[f][k];
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
	return f >= 0 && f < n->nf && n->state[f] == F_ACTIVE ? n->rate[f] : 0;
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
