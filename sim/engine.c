/* sim/engine.c: the event queue (a binary heap whose array is the event
 * pool) and the time tolerance.  See engine.h. */
#include "config.h"
#include "sim/engine.h"

#include <math.h>
#include <stdlib.h>

struct sim_queue {
	struct sim_event *heap;
	size_t n, cap;
	uint64_t seq;
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

int sim_queue_pop(struct sim_queue *q, struct sim_event *out)
{
	struct sim_event last;
	size_t i = 0, n;

	if (q->n == 0)
		return 0;
	*out = q->heap[0];
	n = --q->n;
	if (n == 0)
		return 1;
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
	return 1;
}

int sim_queue_peek(const struct sim_queue *q, struct sim_event *out)
{
	if (q->n == 0)
		return 0;
	*out = q->heap[0];
	return 1;
}

size_t sim_queue_len(const struct sim_queue *q)
{
	return q->n;
}

uint64_t sim_queue_pushed(const struct sim_queue *q)
{
	return q->seq;
}

void sim_queue_clear(struct sim_queue *q)
{
	q->n = 0;
}
