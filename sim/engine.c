/* sim/engine.c: the event queue (a binary heap whose array is the event
 * pool), the time tolerance, and the task graph scheduled on the queue.
 * See engine.h. */
#include "config.h"
#include "sim/engine.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Beside the heap, a few runs: FIFO arrays of events that share one
 * exact time.  Models push many events at a handful of times (every flow
 * of an all-to-all becomes ready at one of a few latencies); in a run such
 * an event costs O(1) to push and pop instead of O(log n) in a heap of
 * millions.  The order out is the same: (time, sequence) across heap and
 * runs, and a run's events are in sequence order by construction. */
#define QRUNS 4

struct qrun {
	double t;
	struct sim_event *ev;
	size_t head, n, cap;   /* events head..n-1 wait; empty when head == n */
};

struct sim_queue {
	struct sim_event *heap;
	size_t n, cap;
	uint64_t seq;
	struct qrun run[QRUNS];
};

int sim_time_same(double a, double b)
{
	double m = fmax(fabs(a), fabs(b));

	return fabs(a - b) <= SIM_TIME_EPS_REL * m + SIM_TIME_EPS_ABS;
}

enum moe_status sim_queue_new(size_t reserve, struct sim_queue **out)
{
	struct sim_queue *q = calloc(1, sizeof *q);

	if (q == NULL)
		MOE_FAIL(MOE_ENOMEM, "event queue: out of memory");
	q->cap = reserve < 16 ? 16 : reserve;
	if ((q->heap = malloc(q->cap * sizeof *q->heap)) == NULL) {
		free(q);
		MOE_FAIL(MOE_ENOMEM, "event queue: out of memory for %zu events", reserve);
	}
	*out = q;
	return MOE_OK;
}

void sim_queue_free(struct sim_queue *q)
{
	if (q == NULL)
		return;
	for (int r = 0; r < QRUNS; r++)
		free(q->run[r].ev);
	free(q->heap);
	free(q);
}

/* a comes before b: earlier time, or the same double and pushed first.
 * Exact comparison is right here: the heap needs a strict total order, and
 * the tolerance is applied by the models that batch events. */
static inline int before(const struct sim_event *a, const struct sim_event *b)
{
	if (a->t_s < b->t_s)
		return 1;
	if (a->t_s > b->t_s)
		return 0;
	return a->seq < b->seq;
}

enum moe_status sim_queue_push(struct sim_queue *q, double t_s, int kind, int64_t data)
{
	struct sim_event ev;
	size_t i;

	if (!isfinite(t_s))
		MOE_FAIL(MOE_EINVAL, "event queue: time %g is not finite", t_s);
	{
		struct qrun *free_run = NULL;
		for (int r = 0; r < QRUNS; r++) {
			struct qrun *u = &q->run[r];
			if (u->head == u->n) {
				if (free_run == NULL)
					free_run = u;
			} else if (u->t == t_s) {
				free_run = u;
				break;
			}
		}
		if (free_run != NULL) {
			struct qrun *u = free_run;
			if (u->head == u->n) {
				u->head = u->n = 0;
				u->t = t_s;
			}
			if (u->n == u->cap) {
				size_t cap = u->cap ? 2 * u->cap : 64;
				struct sim_event *x = realloc(u->ev, cap * sizeof *x);
				if (x == NULL)
					MOE_FAIL(MOE_ENOMEM, "event queue: out of memory for %zu events",
						 cap);
				u->ev = x;
				u->cap = cap;
			}
			u->ev[u->n].t_s = t_s;
			u->ev[u->n].seq = q->seq++;
			u->ev[u->n].kind = kind;
			u->ev[u->n].data = data;
			u->n++;
			return MOE_OK;
		}
	}
	if (q->n == q->cap) {
		size_t cap = q->cap * 2;
		struct sim_event *h = realloc(q->heap, cap * sizeof *h);
		if (h == NULL)
			MOE_FAIL(MOE_ENOMEM, "event queue: out of memory for %zu events", cap);
		q->heap = h;
		q->cap = cap;
	}
	ev.t_s = t_s;
	ev.seq = q->seq++;
	ev.kind = kind;
	ev.data = data;
	i = q->n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!before(&ev, &q->heap[p]))
			break;
		q->heap[i] = q->heap[p];
		i = p;
	}
	q->heap[i] = ev;
	return MOE_OK;
}

/* The run whose first event comes before every other run's and the
 * heap's top, or NULL when the heap's top comes first (or all is empty). */
static struct qrun *first_run(const struct sim_queue *q)
{
	const struct sim_event *best = q->n > 0 ? &q->heap[0] : NULL;
	struct qrun *br = NULL;

	for (int r = 0; r < QRUNS; r++) {
		const struct qrun *u = &q->run[r];
		if (u->head < u->n && (best == NULL || before(&u->ev[u->head], best))) {
			best = &u->ev[u->head];
			br = (struct qrun *)u;
		}
	}
	return br;
}

/* Removes the earliest event, which is run u's head (or, u NULL, the
 * heap's top; the heap is not empty), into *out. */
static void pop_first(struct sim_queue *q, struct qrun *u, struct sim_event *out)
{
	struct sim_event last;
	size_t i = 0, n;

	if (u != NULL) {
		*out = u->ev[u->head++];
		return;
	}
	*out = q->heap[0];
	n = --q->n;
	if (n == 0)
		return;
	last = q->heap[n];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && before(&q->heap[c + 1], &q->heap[c]))
			c++;
		if (!before(&q->heap[c], &last))
			break;
		q->heap[i] = q->heap[c];
		i = c;
	}
	q->heap[i] = last;
}

int sim_queue_pop(struct sim_queue *q, struct sim_event *out)
{
	struct qrun *u = first_run(q);

	if (u == NULL && q->n == 0)
		return 0;
	pop_first(q, u, out);
	return 1;
}

int sim_queue_pop_until(struct sim_queue *q, double t_s, struct sim_event *out)
{
	struct qrun *u = first_run(q);

	if (u == NULL && (q->n == 0 || q->heap[0].t_s > t_s))
		return 0;
	if (u != NULL && u->ev[u->head].t_s > t_s)
		return 0;
	pop_first(q, u, out);
	return 1;
}

int sim_queue_peek(const struct sim_queue *q, struct sim_event *out)
{
	const struct qrun *u = first_run(q);

	if (u != NULL) {
		*out = u->ev[u->head];
		return 1;
	}
	if (q->n == 0)
		return 0;
	*out = q->heap[0];
	return 1;
}

size_t sim_queue_len(const struct sim_queue *q)
{
	size_t n = q->n;

	for (int r = 0; r < QRUNS; r++)
		n += q->run[r].n - q->run[r].head;
	return n;
}

uint64_t sim_queue_pushed(const struct sim_queue *q)
{
	return q->seq;
}

void sim_queue_clear(struct sim_queue *q)
{
	q->n = 0;
	for (int r = 0; r < QRUNS; r++)
		q->run[r].head = q->run[r].n = 0;
}

/* ---- tasks ---- */

struct task {
	double dur_s, start_s, end_s;
	enum moe_status (*dur)(void *arg, int task, double start_s, double *dur_s);
	void *arg;
	int res;      /* as given: a resource id or SIM_TASK_NO_RESOURCE */
	int pending;  /* predecessors not yet ended (during a run) */
};

struct resource {
	int cap, busy;
	int hoff, hlen;  /* its ready heap: ready[hoff .. hoff+hlen) */
	int dirty;       /* on the dirty list */
};

struct edge {
	int pred, succ;
};

struct sim_tasks {
	struct task *t;
	size_t n, cap;
	struct edge *e;
	size_t ne, ecap;
	struct resource *r;  /* nres + 1: the last has no limit */
	size_t nres, rcap;
	/* run scratch, grown by doubling and kept */
	int *succ_off, *succ, *ready, *dirty;
	size_t off_cap, succ_cap, ready_cap, dirty_cap;
	int ndirty;
	struct sim_queue *q;
};

/* Grows *p (of *cap elements of size bytes) to hold at least need, by
 * doubling.  Returns 0, or -1 with *p unchanged. */
static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	size_t c = *cap ? *cap : 8;
	void *np;

	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	if ((np = realloc(*p, c * size)) == NULL)
		return -1;
	*p = np;
	*cap = c;
	return 0;
}

enum moe_status sim_tasks_new(size_t reserve, struct sim_tasks **out)
{
	struct sim_tasks *g = calloc(1, sizeof *g);

	if (g == NULL)
		MOE_FAIL(MOE_ENOMEM, "task graph: out of memory");
	if (grow((void **)&g->t, &g->cap, reserve, sizeof *g->t) != 0 ||
	    grow((void **)&g->r, &g->rcap, 1, sizeof *g->r) != 0 ||
	    sim_queue_new(reserve, &g->q) != MOE_OK) {
		sim_tasks_free(g);
		MOE_FAIL(MOE_ENOMEM, "task graph: out of memory for %zu tasks", reserve);
	}
	*out = g;
	return MOE_OK;
}

void sim_tasks_free(struct sim_tasks *g)
{
	if (g == NULL)
		return;
	free(g->t);
	free(g->e);
	free(g->r);
	free(g->succ_off);
	free(g->succ);
	free(g->ready);
	free(g->dirty);
	sim_queue_free(g->q);
	free(g);
}

void sim_tasks_clear(struct sim_tasks *g)
{
	g->n = 0;
	g->ne = 0;
	g->nres = 0;
}

int sim_tasks_count(const struct sim_tasks *g)
{
	return (int)g->n;
}

enum moe_status sim_tasks_resource(struct sim_tasks *g, int capacity, int *id)
{
	if (capacity < 1)
		MOE_FAIL(MOE_EINVAL, "task graph: resource capacity %d: expected at least 1", capacity);
	if (g->nres >= INT_MAX - 1)
		MOE_FAIL(MOE_ERANGE, "task graph: too many resources");
	/* one spare slot for the unlimited pseudo-resource */
	if (grow((void **)&g->r, &g->rcap, g->nres + 2, sizeof *g->r) != 0)
		MOE_FAIL(MOE_ENOMEM, "task graph: out of memory for %zu resources", g->nres + 2);
	memset(&g->r[g->nres], 0, sizeof *g->r);
	g->r[g->nres].cap = capacity;
	if (id != NULL)
		*id = (int)g->nres;
	g->nres++;
	return MOE_OK;
}

static enum moe_status check_dur(int task, double dur_s)
{
	if (!isfinite(dur_s) || !(dur_s >= 0))
		MOE_FAIL(MOE_EINVAL, "task graph: task %d has duration %g s: expected a finite "
			 "number >= 0", task, dur_s);
	return MOE_OK;
}

static enum moe_status add(struct sim_tasks *g, int resource, double dur_s,
			   enum moe_status (*dur)(void *, int, double, double *), void *arg,
			   int *id)
{
	struct task *t;

	if (resource != SIM_TASK_NO_RESOURCE && (resource < 0 || (size_t)resource >= g->nres))
		MOE_FAIL(MOE_EINVAL, "task graph: task %zu: resource %d does not exist (%zu "
			 "resources)", g->n, resource, g->nres);
	if (dur == NULL && check_dur((int)g->n, dur_s) != MOE_OK)
		return MOE_EINVAL;
	if (g->n >= INT_MAX - 1)
		MOE_FAIL(MOE_ERANGE, "task graph: too many tasks");
	if (grow((void **)&g->t, &g->cap, g->n + 1, sizeof *g->t) != 0)
		MOE_FAIL(MOE_ENOMEM, "task graph: out of memory for %zu tasks", g->n + 1);
	t = &g->t[g->n];
	t->dur_s = dur == NULL ? dur_s : 0;
	t->start_s = t->end_s = NAN;
	t->dur = dur;
	t->arg = arg;
	t->res = resource;
	t->pending = 0;
	if (id != NULL)
		*id = (int)g->n;
	g->n++;
	return MOE_OK;
}

enum moe_status sim_tasks_add(struct sim_tasks *g, int resource, double dur_s, int *id)
{
	return add(g, resource, dur_s, NULL, NULL, id);
}

enum moe_status sim_tasks_add_fn(struct sim_tasks *g, int resource,
				 enum moe_status (*dur)(void *arg, int task, double start_s,
							double *dur_s),
				 void *arg, int *id)
{
	if (dur == NULL)
		MOE_FAIL(MOE_EINVAL, "task graph: task %zu: no duration callback", g->n);
	return add(g, resource, 0, dur, arg, id);
}

enum moe_status sim_tasks_set_duration(struct sim_tasks *g, int task, double dur_s)
{
	if (task < 0 || (size_t)task >= g->n)
		MOE_FAIL(MOE_EINVAL, "task graph: task %d does not exist (%zu tasks)", task, g->n);
	if (check_dur(task, dur_s) != MOE_OK)
		return MOE_EINVAL;
	g->t[task].dur_s = dur_s;
	g->t[task].dur = NULL;
	g->t[task].arg = NULL;
	return MOE_OK;
}

enum moe_status sim_tasks_after(struct sim_tasks *g, int task, int pred)
{
	if (task < 0 || (size_t)task >= g->n || pred < 0 || (size_t)pred >= g->n)
		MOE_FAIL(MOE_EINVAL, "task graph: edge from task %d to task %d: expected tasks "
			 "0..%zu", pred, task, g->n - 1);
	if (task == pred)
		MOE_FAIL(MOE_EINVAL, "task graph: task %d cannot wait for itself", task);
	if (grow((void **)&g->e, &g->ecap, g->ne + 1, sizeof *g->e) != 0)
		MOE_FAIL(MOE_ENOMEM, "task graph: out of memory for %zu edges", g->ne + 1);
	g->e[g->ne].pred = pred;
	g->e[g->ne].succ = task;
	g->ne++;
	return MOE_OK;
}

double sim_tasks_start(const struct sim_tasks *g, int task)
{
	return task >= 0 && (size_t)task < g->n ? g->t[task].start_s : NAN;
}

double sim_tasks_end(const struct sim_tasks *g, int task)
{
	return task >= 0 && (size_t)task < g->n ? g->t[task].end_s : NAN;
}

/* Task i's resource index: a task that holds none uses the unlimited
 * pseudo-resource after the real ones. */
static inline int rix(const struct sim_tasks *g, int i)
{
	return g->t[i].res < 0 ? (int)g->nres : g->t[i].res;
}

/* A resource's ready tasks are a min-heap of task ids: the task added
 * first goes first (engine.h). */
static void ready_push(struct sim_tasks *g, int i)
{
	struct resource *r = &g->r[rix(g, i)];
	int *h = g->ready + r->hoff, k = r->hlen++;

	while (k > 0 && h[(k - 1) / 2] > i) {
		h[k] = h[(k - 1) / 2];
		k = (k - 1) / 2;
	}
	h[k] = i;
	if (!r->dirty) {
		r->dirty = 1;
		g->dirty[g->ndirty++] = rix(g, i);
	}
}

static int ready_pop(struct resource *r, int *ready)
{
	int *h = ready + r->hoff, top = h[0], last, k = 0, n;

	n = --r->hlen;
	if (n == 0)
		return top;
	last = h[n];
	for (;;) {
		int c = 2 * k + 1;
		if (c >= n)
			break;
		if (c + 1 < n && h[c + 1] < h[c])
			c++;
		if (h[c] > last)
			break;
		h[k] = h[c];
		k = c;
	}
	h[k] = last;
	return top;
}

static enum moe_status start(struct sim_tasks *g, int i, double now)
{
	struct task *t = &g->t[i];
	double d = t->dur_s;
	enum moe_status st;

	if (t->dur != NULL) {
		if ((st = t->dur(t->arg, i, now, &d)) != MOE_OK)
			return st;
		if ((st = check_dur(i, d)) != MOE_OK)
			return st;
	}
	t->start_s = now;
	t->end_s = now + d;
	g->r[rix(g, i)].busy++;
	return sim_queue_push(g->q, t->end_s, 0, i);
}

/* Gives every resource that freed or got a ready task since the last call
 * its ready tasks, first added first, while it has room. */
static enum moe_status dispatch(struct sim_tasks *g, double now)
{
	enum moe_status st;

	for (int j = 0; j < g->ndirty; j++) {
		struct resource *r = &g->r[g->dirty[j]];
		r->dirty = 0;
		while (r->busy < r->cap && r->hlen > 0)
			if ((st = start(g, ready_pop(r, g->ready), now)) != MOE_OK)
				return st;
	}
	g->ndirty = 0;
	return MOE_OK;
}

static void finish(struct sim_tasks *g, int i)
{
	struct resource *r = &g->r[rix(g, i)];

	r->busy--;
	if (!r->dirty) {
		r->dirty = 1;
		g->dirty[g->ndirty++] = rix(g, i);
	}
	for (int k = g->succ_off[i]; k < g->succ_off[i + 1]; k++)
		if (--g->t[g->succ[k]].pending == 0)
			ready_push(g, g->succ[k]);
}

/* A predecessor of task i that never started (i itself if none). */
static int waits_for(const struct sim_tasks *g, int i)
{
	for (size_t k = 0; k < g->ne; k++)
		if (g->e[k].succ == i && isnan(g->t[g->e[k].pred].start_s))
			return g->e[k].pred;
	return i;
}

/* The tasks that never started after a run: every one waits for another
 * that never started, so walking predecessors from one of them must enter
 * a cycle within n steps.  Names up to 8 tasks of it.  Scans the edges at
 * each step: O(tasks x edges), on this error path only. */
static enum moe_status cycle_error(struct sim_tasks *g)
{
	char buf[320];
	size_t len = 0, n = g->n;
	int cur = -1, first;

	for (size_t i = 0; i < n && cur < 0; i++)
		if (isnan(g->t[i].start_s))
			cur = (int)i;
	for (size_t step = 0; step <= n; step++)
		cur = waits_for(g, cur);
	first = cur;
	for (int m = 0; m < 8; m++) {
		/* at most 8 x 26 + 20 characters: buf cannot overflow */
		len += (size_t)snprintf(buf + len, sizeof buf - len, "task %d waits for ", cur);
		if ((cur = waits_for(g, cur)) == first)
			break;
	}
	snprintf(buf + len, sizeof buf - len, cur == first ? "task %d" : "task %d ...", cur);
	MOE_FAIL(MOE_EINVAL, "task graph: a cycle: %s", buf);
}

enum moe_status sim_tasks_run(struct sim_tasks *g, double *makespan_s)
{
	size_t n = g->n, nr = g->nres + 1, done = 0;
	struct sim_event ev;
	enum moe_status st;
	double now = 0, mk = 0;
	int *off;

	if (grow((void **)&g->succ_off, &g->off_cap, n + 2, sizeof *g->succ_off) != 0 ||
	    grow((void **)&g->succ, &g->succ_cap, g->ne + 1, sizeof *g->succ) != 0 ||
	    grow((void **)&g->ready, &g->ready_cap, n + 1, sizeof *g->ready) != 0 ||
	    grow((void **)&g->dirty, &g->dirty_cap, nr, sizeof *g->dirty) != 0)
		MOE_FAIL(MOE_ENOMEM, "task graph: out of memory for %zu tasks", n);
	/* the unlimited pseudo-resource of the tasks that hold none (its slot
	 * was reserved by sim_tasks_resource / sim_tasks_new) */
	memset(&g->r[nr - 1], 0, sizeof *g->r);
	g->r[nr - 1].cap = INT_MAX;
	for (size_t j = 0; j < nr; j++) {
		g->r[j].busy = g->r[j].hlen = g->r[j].hoff = 0;
		g->r[j].dirty = 0;
	}
	g->ndirty = 0;
	/* each resource's ready heap gets a segment as long as its tasks */
	for (size_t i = 0; i < n; i++) {
		g->t[i].start_s = g->t[i].end_s = NAN;
		g->t[i].pending = 0;
		g->r[rix(g, (int)i)].hoff++;
	}
	for (size_t j = 0, sum = 0; j < nr; j++) {
		int c = g->r[j].hoff;
		g->r[j].hoff = (int)sum;
		sum += (size_t)c;
	}
	/* successors in compressed rows, in the order the edges were added:
	 * count into off[p + 2], sum, then fill advancing off[p + 1] */
	off = g->succ_off;
	memset(off, 0, (n + 2) * sizeof *off);
	for (size_t k = 0; k < g->ne; k++) {
		off[g->e[k].pred + 2]++;
		g->t[g->e[k].succ].pending++;
	}
	for (size_t i = 2; i < n + 2; i++)
		off[i] += off[i - 1];
	for (size_t k = 0; k < g->ne; k++)
		g->succ[off[g->e[k].pred + 1]++] = g->e[k].succ;
	sim_queue_clear(g->q);
	for (size_t i = 0; i < n; i++)
		if (g->t[i].pending == 0)
			ready_push(g, (int)i);
	st = dispatch(g, now);
	while (st == MOE_OK && sim_queue_pop(g->q, &ev)) {
		now = ev.t_s;
		finish(g, (int)ev.data);
		done++;
		/* every end due at this instant (the same double) before any
		 * start, so that tasks made ready together compete by id */
		while (sim_queue_pop_until(g->q, now, &ev)) {
			finish(g, (int)ev.data);
			done++;
		}
		st = dispatch(g, now);
	}
	if (st != MOE_OK)
		return st;
	if (done < n)
		return cycle_error(g);
	for (size_t i = 0; i < n; i++)
		mk = fmax(mk, g->t[i].end_s);
	if (makespan_s != NULL)
		*makespan_s = mk;
	return MOE_OK;
}
