/* tests/check_sim.c: the simulator: event queue, task graph, topology, flow-level
 * network (closed forms, conservation, max-min fairness against a simple
 * independent solver), collectives, placement, compute and step models. */
#include "config.h"
#include "moe/error.h"
#include "moe/model.h"
#include "sim/a2a.h"
#include "sim/compute.h"
#include "sim/engine.h"
#include "sim/place.h"
#include "sim/step.h"
#include "sim/net.h"
#include "sim/topo.h"

#include <check.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- engine ---- */

START_TEST(queue_orders_by_time_then_insertion)
{
	struct sim_queue *q;
	struct sim_event ev;
	/* times pushed out of order, with ties at 1.0 and 3.0 */
	const double t[] = {3.0, 1.0, 2.0, 1.0, 0.5, 3.0, 1.0};
	const int64_t want[] = {4, 1, 3, 6, 2, 0, 5};

	ck_assert_int_eq(sim_queue_new(2, &q), MOE_OK); /* forces growth */
	for (int i = 0; i < 7; i++)
		ck_assert_int_eq(sim_queue_push(q, t[i], 7, i), MOE_OK);
	ck_assert_uint_eq(sim_queue_len(q), 7);
	ck_assert(sim_queue_peek(q, &ev));
	ck_assert_int_eq(ev.data, 4);
	for (int i = 0; i < 7; i++) {
		ck_assert(sim_queue_pop(q, &ev));
		ck_assert_int_eq(ev.data, want[i]);
		ck_assert_int_eq(ev.kind, 7);
	}
	ck_assert(!sim_queue_pop(q, &ev));
	ck_assert_uint_eq(sim_queue_pushed(q), 7);
	ck_assert_int_eq(sim_queue_push(q, NAN, 0, 0), MOE_EINVAL);
	ck_assert_int_eq(sim_queue_push(q, INFINITY, 0, 0), MOE_EINVAL);
	ck_assert_uint_eq(sim_queue_len(q), 0);
	sim_queue_free(q);
	sim_queue_free(NULL);
}
END_TEST

START_TEST(queue_random_against_sort)
{
	struct sim_queue *q;
	struct sim_event ev;
	enum { N = 5000 };
	static double t[N];
	double last_t = -1;
	uint64_t last_seq = 0;
	unsigned s = 12345;

	ck_assert_int_eq(sim_queue_new(0, &q), MOE_OK);
	for (int i = 0; i < N; i++) {
		s = s * 1103515245u + 12345u;
		t[i] = (double)((s >> 16) % 97); /* many ties */
		ck_assert_int_eq(sim_queue_push(q, t[i], 0, i), MOE_OK);
	}
	for (int i = 0; i < N; i++) {
		ck_assert(sim_queue_pop(q, &ev));
		ck_assert_double_eq(ev.t_s, t[ev.data]);
		ck_assert(ev.t_s >= last_t);
		if (ev.t_s == last_t)
			ck_assert(ev.seq > last_seq);
		last_t = ev.t_s;
		last_seq = ev.seq;
	}
	sim_queue_free(q);
}
END_TEST

/* Pushes and pops interleaved, times from a few repeated values (the
 * queue's runs) and random ones (its heap), against a linear scan for the
 * least (time, sequence). */
START_TEST(queue_interleaved_against_scan)
{
	struct sim_queue *q;
	struct sim_event ev;
	enum { N = 4000 };
	static double t[N];
	static int live[N];
	int nl = 0, pushed = 0;
	unsigned s = 777;
	double now = 0;

	ck_assert_int_eq(sim_queue_new(0, &q), MOE_OK);
	while (pushed < N || nl > 0) {
		s = s * 1103515245u + 12345u;
		if (pushed < N && ((s >> 16) % 3 != 0 || nl == 0)) {
			/* never before the last pop: a simulation only schedules ahead */
			s = s * 1103515245u + 12345u;
			if ((s >> 16) % 2)
				t[pushed] = now + (double)((s >> 17) % 6); /* a few times, often */
			else
				t[pushed] = now + (double)((s >> 17) % 1000) / 37.0;
			ck_assert_int_eq(sim_queue_push(q, t[pushed], 1, pushed), MOE_OK);
			live[nl++] = pushed++;
		} else {
			int best = 0;
			for (int i = 1; i < nl; i++)
				if (t[live[i]] < t[live[best]] ||
				    (t[live[i]] == t[live[best]] && live[i] < live[best]))
					best = i;
			ck_assert_uint_eq(sim_queue_len(q), (unsigned)nl);
			ck_assert(sim_queue_peek(q, &ev));
			ck_assert_int_eq(ev.data, live[best]);
			/* not due just before its time (the network and the task
			 * graph pop with pop_until: their tests cover the rest) */
			ck_assert(!sim_queue_pop_until(q, nextafter(t[live[best]], -INFINITY), &ev));
			ck_assert_uint_eq(sim_queue_len(q), (unsigned)nl);
			ck_assert(sim_queue_pop(q, &ev));
			ck_assert_int_eq(ev.data, live[best]);
			now = ev.t_s;
			live[best] = live[--nl];
		}
	}
	ck_assert(!sim_queue_pop(q, &ev));
	sim_queue_clear(q);
	ck_assert_uint_eq(sim_queue_len(q), 0);
	sim_queue_free(q);
}
END_TEST

START_TEST(time_tolerance)
{
	ck_assert(sim_time_same(1e-3, 1e-3 * (1 + 1e-12)));
	ck_assert(!sim_time_same(1e-3, 1e-3 * (1 + 1e-9)));
	ck_assert(sim_time_same(0, 1e-16));
	ck_assert(!sim_time_same(0, 1e-12));
}
END_TEST

/* ---- tasks ---- */

/* Asserts task i of g ran from s to e (exact: the engine adds durations to
 * starts that are ends of other tasks, and these are small integers). */
static void assert_task(const struct sim_tasks *g, int i, double s, double e)
{
	ck_assert_msg(sim_tasks_start(g, i) == s && sim_tasks_end(g, i) == e,
		      "task %d ran %g-%g, expected %g-%g", i, sim_tasks_start(g, i),
		      sim_tasks_end(g, i), s, e);
}

/* The two-micro-batch schedule as sim/step.c builds it: tasks other A,
 * other B, experts A, experts B (compute), dispatch A, dispatch B,
 * combine A, combine B (comms). */
static void overlap_graph(struct sim_tasks *g, double o, double d, double e, double c)
{
	int comp, comm;
	const double dur[8] = {o, o, e, e, d, d, c, c};

	sim_tasks_clear(g);
	ck_assert_int_eq(sim_tasks_resource(g, 1, &comp), MOE_OK);
	ck_assert_int_eq(sim_tasks_resource(g, 1, &comm), MOE_OK);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(sim_tasks_add(g, i < 4 ? comp : comm, dur[i], NULL), MOE_OK);
	for (int b = 0; b < 2; b++) {
		ck_assert_int_eq(sim_tasks_after(g, 4 + b, 0 + b), MOE_OK);
		ck_assert_int_eq(sim_tasks_after(g, 2 + b, 4 + b), MOE_OK);
		ck_assert_int_eq(sim_tasks_after(g, 6 + b, 2 + b), MOE_OK);
	}
}

/* The hand-written max/plus formula sim/step.c used before the engine had
 * tasks: the reference the task graph must equal to the bit. */
static double overlap_formula(double o, double d, double e, double c)
{
	double oa = o, ob = 2 * o;
	double da = oa + d, db = fmax(da, ob) + d;
	double ea = fmax(ob, da) + e, eb = fmax(ea, db) + e;
	double ca = fmax(db, ea) + c, cb = fmax(ca, eb) + c;

	return fmax(cb, eb);
}

START_TEST(tasks_two_streams_worked_example)
{
	struct sim_tasks *g;
	double t;
	int cs, ns, oa, da;

	/* engine.h's worked example: o = 1, d = 3, e = 2, c = 3 */
	ck_assert_int_eq(sim_tasks_new(0, &g), MOE_OK);
	overlap_graph(g, 1, 3, 2, 3);
	ck_assert(isnan(sim_tasks_start(g, 0)));    /* not run yet */
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_OK);
	ck_assert_double_eq(t, 13);
	assert_task(g, 0, 0, 1);    /* other A */
	assert_task(g, 1, 1, 2);    /* other B */
	assert_task(g, 2, 4, 6);    /* experts A: waits for its tokens */
	assert_task(g, 3, 7, 9);    /* experts B */
	assert_task(g, 4, 1, 4);    /* dispatch A */
	assert_task(g, 5, 4, 7);    /* dispatch B */
	assert_task(g, 6, 7, 10);   /* combine A: ready at 6, stream busy to 7 */
	assert_task(g, 7, 10, 13);  /* combine B */
	ck_assert_double_eq(t, overlap_formula(1, 3, 2, 3));
	/* the header's code snippet */
	sim_tasks_clear(g);
	ck_assert_int_eq(sim_tasks_count(g), 0);
	ck_assert_int_eq(sim_tasks_resource(g, 1, &cs), MOE_OK);
	ck_assert_int_eq(sim_tasks_resource(g, 1, &ns), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, cs, 1.0, &oa), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, ns, 3.0, &da), MOE_OK);
	ck_assert_int_eq(sim_tasks_after(g, da, oa), MOE_OK);
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_OK);
	ck_assert_double_eq(t, 4);
	assert_task(g, da, 1, 4);
	sim_tasks_free(g);
	sim_tasks_free(NULL);
}
END_TEST

START_TEST(tasks_overlap_equals_max_plus)
{
	struct sim_tasks *g;
	unsigned s = 4242;
	double v[4], t;

	/* random durations over six decades, a quarter of them 0: the engine's
	 * makespan is the old formula's to the last bit */
	ck_assert_int_eq(sim_tasks_new(8, &g), MOE_OK);
	for (int it = 0; it < 2000; it++) {
		for (int j = 0; j < 4; j++) {
			s = s * 1103515245u + 12345u;
			v[j] = (s >> 16) % 4 == 0 ? 0 :
			       pow(10, -6.0 + 6.0 * ((s >> 8) % 65536) / 65536.0) * (1 + (s % 7) / 3.0);
		}
		overlap_graph(g, v[0], v[1], v[2], v[3]);
		ck_assert_int_eq(sim_tasks_run(g, &t), MOE_OK);
		ck_assert_msg(t == overlap_formula(v[0], v[1], v[2], v[3]),
			      "o %a d %a e %a c %a: %a", v[0], v[1], v[2], v[3], t);
	}
	sim_tasks_free(g);
}
END_TEST

START_TEST(tasks_diamond)
{
	struct sim_tasks *g;
	double t;
	int r1, r2, a, b, c, d;

	/* a -> b, a -> c, b and c -> d; a 2, b 3, c 5, d 1 */
	ck_assert_int_eq(sim_tasks_new(0, &g), MOE_OK);
	for (int shared = 0; shared < 3; shared++) {
		sim_tasks_clear(g);
		ck_assert_int_eq(sim_tasks_resource(g, shared == 2 ? 2 : 1, &r1), MOE_OK);
		ck_assert_int_eq(sim_tasks_resource(g, 1, &r2), MOE_OK);
		ck_assert_int_eq(sim_tasks_add(g, SIM_TASK_NO_RESOURCE, 2, &a), MOE_OK);
		ck_assert_int_eq(sim_tasks_add(g, r1, 3, &b), MOE_OK);
		ck_assert_int_eq(sim_tasks_add(g, shared ? r1 : r2, 5, &c), MOE_OK);
		ck_assert_int_eq(sim_tasks_add(g, SIM_TASK_NO_RESOURCE, 1, &d), MOE_OK);
		ck_assert_int_eq(sim_tasks_after(g, d, c), MOE_OK);
		ck_assert_int_eq(sim_tasks_after(g, b, a), MOE_OK);
		ck_assert_int_eq(sim_tasks_after(g, c, a), MOE_OK);
		ck_assert_int_eq(sim_tasks_after(g, d, b), MOE_OK);
		ck_assert_int_eq(sim_tasks_run(g, &t), MOE_OK);
		assert_task(g, a, 0, 2);
		assert_task(g, b, 2, 5);
		if (shared == 1) {
			/* b and c on one stream: b (added first) then c */
			assert_task(g, c, 5, 10);
			assert_task(g, d, 10, 11);
			ck_assert_double_eq(t, 11);
		} else {
			/* separate streams, or one of capacity 2: in parallel */
			assert_task(g, c, 2, 7);
			assert_task(g, d, 7, 8);
			ck_assert_double_eq(t, 8);
		}
	}
	sim_tasks_free(g);
}
END_TEST

START_TEST(tasks_fifo_by_order_added)
{
	struct sim_tasks *g;
	double t;
	int r;

	ck_assert_int_eq(sim_tasks_new(0, &g), MOE_OK);
	ck_assert_int_eq(sim_tasks_resource(g, 1, &r), MOE_OK);
	/* 0 (2 s) waits for 3 (1 s); 1 (2 s) and 2 (1 s) are ready at once:
	 * 1 runs first; at 2 both 0 (ready since 1) and 2 (since 0) wait, and
	 * 0, added first, goes first */
	ck_assert_int_eq(sim_tasks_add(g, r, 2, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, r, 2, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, r, 1, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, SIM_TASK_NO_RESOURCE, 1, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_after(g, 0, 3), MOE_OK);
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_OK);
	assert_task(g, 1, 0, 2);
	assert_task(g, 3, 0, 1);
	assert_task(g, 0, 2, 4);
	assert_task(g, 2, 4, 5);
	ck_assert_double_eq(t, 5);

	/* two ends at one instant: 0 ends first (started first) and readies
	 * 3, then 1 readies 2; every end at 1 is processed before the stream
	 * chooses, so 2 (added before 3) runs first */
	sim_tasks_clear(g);
	ck_assert_int_eq(sim_tasks_resource(g, 1, &r), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, SIM_TASK_NO_RESOURCE, 1, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, SIM_TASK_NO_RESOURCE, 1, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, r, 1, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, r, 1, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_after(g, 3, 0), MOE_OK);
	ck_assert_int_eq(sim_tasks_after(g, 2, 1), MOE_OK);
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_OK);
	assert_task(g, 2, 1, 2);
	assert_task(g, 3, 2, 3);

	/* zero durations end in a later round of the same instant: 0 (0 s)
	 * and 1 (0 s, no resource) start at 0; 2 waits for 1, 3 is ready at
	 * once; when 0 and 1 end (still at 0), 2 and 3 both wait: 2 first */
	sim_tasks_clear(g);
	ck_assert_int_eq(sim_tasks_resource(g, 1, &r), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, r, 0, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, SIM_TASK_NO_RESOURCE, 0, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, r, 1, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, r, 1, NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_after(g, 2, 1), MOE_OK);
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_OK);
	assert_task(g, 0, 0, 0);
	assert_task(g, 1, 0, 0);
	assert_task(g, 2, 0, 1);
	assert_task(g, 3, 1, 2);
	ck_assert_double_eq(t, 2);
	sim_tasks_free(g);
}
END_TEST

START_TEST(tasks_capacity_two)
{
	struct sim_tasks *g;
	const double dur[5] = {3, 1, 2, 2, 1};
	double t;
	int r;

	/* five ready tasks, two slots: 0 and 1 at 0; 2 when 1 ends at 1; at
	 * 3 both 0 and 2 end and 3 and 4 take the two slots */
	ck_assert_int_eq(sim_tasks_new(0, &g), MOE_OK);
	ck_assert_int_eq(sim_tasks_resource(g, 2, &r), MOE_OK);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(sim_tasks_add(g, r, dur[i], NULL), MOE_OK);
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_OK);
	assert_task(g, 0, 0, 3);
	assert_task(g, 1, 0, 1);
	assert_task(g, 2, 1, 3);
	assert_task(g, 3, 3, 5);
	assert_task(g, 4, 3, 4);
	ck_assert_double_eq(t, 5);
	sim_tasks_free(g);
}
END_TEST

struct dur_log {
	int calls, task;
	double start_s;
	enum moe_status fail;
	double give;
};

static enum moe_status dur_cb(void *arg, int task, double start_s, double *dur_s)
{
	struct dur_log *l = arg;

	l->calls++;
	l->task = task;
	l->start_s = start_s;
	if (l->fail != MOE_OK)
		return moe_error(l->fail, "link down");
	*dur_s = l->give;
	return MOE_OK;
}

START_TEST(tasks_duration_from_callback)
{
	struct sim_tasks *g;
	struct dur_log l = {0, -1, 0, MOE_OK, 0.25};
	double t;
	int r, a, b;

	/* b's duration is known only when it starts, after a on the stream */
	ck_assert_int_eq(sim_tasks_new(0, &g), MOE_OK);
	ck_assert_int_eq(sim_tasks_resource(g, 1, &r), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, r, 1.5, &a), MOE_OK);
	ck_assert_int_eq(sim_tasks_add_fn(g, r, dur_cb, &l, &b), MOE_OK);
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_OK);
	ck_assert_int_eq(l.calls, 1);
	ck_assert_int_eq(l.task, b);
	ck_assert_double_eq(l.start_s, 1.5);
	assert_task(g, b, 1.5, 1.75);
	ck_assert_double_eq(t, 1.75);
	/* a callback's error stops the run and comes back with its message */
	l.fail = MOE_ERUNTIME;
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_ERUNTIME);
	ck_assert_str_eq(moe_errmsg(), "link down");
	/* so does a bad duration */
	l.fail = MOE_OK;
	l.give = -1;
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_EINVAL);
	ck_assert_str_eq(moe_errmsg(), "task graph: task 1 has duration -1 s: expected a finite "
			 "number >= 0");
	l.give = NAN;
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_EINVAL);
	/* the graph is unchanged: a fixed duration makes it run again */
	ck_assert_int_eq(sim_tasks_set_duration(g, b, 2), MOE_OK);
	l.calls = 0;
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_OK);
	ck_assert_int_eq(l.calls, 0);
	ck_assert_double_eq(t, 3.5);
	sim_tasks_free(g);
}
END_TEST

START_TEST(tasks_errors)
{
	struct sim_tasks *g;
	double t = -1;
	int r, id = -7;

	ck_assert_int_eq(sim_tasks_new(0, &g), MOE_OK);
	ck_assert_int_eq(sim_tasks_resource(g, 0, &r), MOE_EINVAL);
	ck_assert_str_eq(moe_errmsg(), "task graph: resource capacity 0: expected at least 1");
	ck_assert_int_eq(sim_tasks_resource(g, 1, &r), MOE_OK);
	ck_assert_int_eq(sim_tasks_add(g, 1, 1, &id), MOE_EINVAL);
	ck_assert_str_eq(moe_errmsg(), "task graph: task 0: resource 1 does not exist (1 resources)");
	ck_assert_int_eq(sim_tasks_add(g, -2, 1, &id), MOE_EINVAL);
	ck_assert_int_eq(sim_tasks_add(g, r, -1e-9, &id), MOE_EINVAL);
	ck_assert_str_eq(moe_errmsg(), "task graph: task 0 has duration -1e-09 s: expected a "
			 "finite number >= 0");
	ck_assert_int_eq(sim_tasks_add(g, r, NAN, &id), MOE_EINVAL);
	ck_assert_int_eq(sim_tasks_add(g, r, INFINITY, &id), MOE_EINVAL);
	ck_assert_int_eq(sim_tasks_add_fn(g, r, NULL, NULL, &id), MOE_EINVAL);
	ck_assert_int_eq(id, -7);                   /* untouched on error */
	ck_assert_int_eq(sim_tasks_count(g), 0);    /* graph unchanged */
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(sim_tasks_add(g, i % 2 ? r : SIM_TASK_NO_RESOURCE, 1, &id), MOE_OK);
	ck_assert_int_eq(id, 4);
	ck_assert_int_eq(sim_tasks_set_duration(g, 5, 1), MOE_EINVAL);
	ck_assert_str_eq(moe_errmsg(), "task graph: task 5 does not exist (5 tasks)");
	ck_assert_int_eq(sim_tasks_set_duration(g, -1, 1), MOE_EINVAL);
	ck_assert_int_eq(sim_tasks_set_duration(g, 2, -3), MOE_EINVAL);
	ck_assert_int_eq(sim_tasks_after(g, 5, 0), MOE_EINVAL);
	ck_assert_str_eq(moe_errmsg(), "task graph: edge from task 0 to task 5: expected tasks 0..4");
	ck_assert_int_eq(sim_tasks_after(g, 0, -1), MOE_EINVAL);
	ck_assert_int_eq(sim_tasks_after(g, 3, 3), MOE_EINVAL);
	ck_assert_str_eq(moe_errmsg(), "task graph: task 3 cannot wait for itself");
	ck_assert(isnan(sim_tasks_start(g, 99)) && isnan(sim_tasks_end(g, -1)));
	ck_assert(isnan(sim_tasks_end(g, 0)));      /* never run */
	/* 0 -> 1 -> 2 -> 3 -> 1: 1, 2 and 3 wait for each other; 4 is free */
	ck_assert_int_eq(sim_tasks_after(g, 1, 0), MOE_OK);
	ck_assert_int_eq(sim_tasks_after(g, 2, 1), MOE_OK);
	ck_assert_int_eq(sim_tasks_after(g, 3, 2), MOE_OK);
	ck_assert_int_eq(sim_tasks_after(g, 1, 3), MOE_OK);
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_EINVAL);
	ck_assert_str_eq(moe_errmsg(), "task graph: a cycle: task 1 waits for task 3 waits for "
			 "task 2 waits for task 1");
	ck_assert_double_eq(t, -1);                 /* untouched on error */
	/* a long cycle is cut after 8 tasks */
	sim_tasks_clear(g);
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(sim_tasks_add(g, SIM_TASK_NO_RESOURCE, 1, NULL), MOE_OK);
		if (i > 0)
			ck_assert_int_eq(sim_tasks_after(g, i, i - 1), MOE_OK);
	}
	ck_assert_int_eq(sim_tasks_after(g, 0, 19), MOE_OK);
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_EINVAL);
	ck_assert_msg(strstr(moe_errmsg(), "task graph: a cycle: task ") == moe_errmsg() &&
		      strstr(moe_errmsg(), " ...") != NULL, "%s", moe_errmsg());
	/* an empty graph runs, in no time */
	sim_tasks_clear(g);
	ck_assert_int_eq(sim_tasks_run(g, &t), MOE_OK);
	ck_assert_double_eq(t, 0);
	sim_tasks_free(g);
}
END_TEST

/* A random graph: n tasks on nr resources (caps 1, 1, 2, ...) or none,
 * integer durations 1..5 (sums exact), edges between random labels
 * following a random permutation, so ids are not in topological order. */
struct rand_dag {
	int n, nr, cap[4], res[80];
	double dur[80];
	char adj[80][80];  /* adj[p][s]: s waits for p */
};

static void rand_dag(struct rand_dag *d, unsigned *s)
{
	int perm[80];

#define NEXT() (*s = *s * 1103515245u + 12345u, (*s >> 16) & 0x7fff)
	d->n = 20 + NEXT() % 61;
	d->nr = 1 + NEXT() % 4;
	for (int r = 0; r < d->nr; r++)
		d->cap[r] = r < 2 ? 1 : 2;
	for (int i = 0; i < d->n; i++) {
		int j = NEXT() % (i + 1);
		perm[i] = perm[j];
		perm[j] = i;
		d->res[i] = (int)(NEXT() % (d->nr + 1)) - 1;   /* -1: none */
		d->dur[i] = 1 + NEXT() % 5;
	}
	memset(d->adj, 0, sizeof d->adj);
	for (int a = 0; a < d->n; a++)
		for (int b = a + 1; b < d->n; b++)
			if (NEXT() % 8 == 0)
				d->adj[perm[a]][perm[b]] = 1;
#undef NEXT
}

/* The independent reference: advance time to the next end, end every task
 * due then, and start, in increasing id, each task whose predecessors all
 * ended and whose resource has room.  O(n^2) per instant. */
static double list_schedule(const struct rand_dag *d, double *start, double *end)
{
	int busy[5] = {0}, ended[80] = {0}, started[80] = {0}, left = d->n;
	double now = 0, mk = 0;

	while (left > 0) {
		double next = INFINITY;
		for (int i = 0; i < d->n; i++) {
			int ok = !started[i], r = d->res[i];
			for (int p = 0; p < d->n && ok; p++)
				if (d->adj[p][i] && !ended[p])
					ok = 0;
			if (ok && r >= 0 && busy[r] >= d->cap[r])
				ok = 0;
			if (!ok)
				continue;
			started[i] = 1;
			start[i] = now;
			end[i] = now + d->dur[i];
			if (r >= 0)
				busy[r]++;
		}
		for (int i = 0; i < d->n; i++)
			if (started[i] && !ended[i])
				next = fmin(next, end[i]);
		ck_assert(isfinite(next));
		now = next;
		for (int i = 0; i < d->n; i++)
			if (started[i] && !ended[i] && end[i] == now) {
				ended[i] = 1;
				left--;
				if (d->res[i] >= 0)
					busy[d->res[i]]--;
				mk = fmax(mk, end[i]);
			}
	}
	return mk;
}

static void build_dag(struct sim_tasks *g, const struct rand_dag *d)
{
	sim_tasks_clear(g);
	for (int r = 0; r < d->nr; r++)
		ck_assert_int_eq(sim_tasks_resource(g, d->cap[r], NULL), MOE_OK);
	for (int i = 0; i < d->n; i++)
		ck_assert_int_eq(sim_tasks_add(g, d->res[i], d->dur[i], NULL), MOE_OK);
	for (int p = 0; p < d->n; p++)
		for (int s = 0; s < d->n; s++)
			if (d->adj[p][s])
				ck_assert_int_eq(sim_tasks_after(g, s, p), MOE_OK);
}

START_TEST(tasks_random_dag_against_list_scheduler)
{
	static struct rand_dag d;
	struct sim_tasks *g;
	double start[80], end[80], mk, t;
	unsigned s = 777;

	ck_assert_int_eq(sim_tasks_new(0, &g), MOE_OK);
	for (int it = 0; it < 300; it++) {
		rand_dag(&d, &s);
		build_dag(g, &d);
		ck_assert_msg(sim_tasks_run(g, &t) == MOE_OK, "%s", moe_errmsg());
		mk = list_schedule(&d, start, end);
		ck_assert_double_eq(t, mk);
		for (int i = 0; i < d.n; i++)
			assert_task(g, i, start[i], end[i]);
	}
	sim_tasks_free(g);
}
END_TEST

START_TEST(tasks_deterministic_and_reusable)
{
	static struct rand_dag d;
	struct sim_tasks *g, *h;
	double a[80], b[80], ta, tb;
	unsigned s = 99;

	/* the same graph twice, in one object (cleared and rebuilt) and in a
	 * fresh one, with durations that are not round: identical bits */
	ck_assert_int_eq(sim_tasks_new(0, &g), MOE_OK);
	ck_assert_int_eq(sim_tasks_new(500, &h), MOE_OK);
	rand_dag(&d, &s);
	for (int i = 0; i < d.n; i++)
		d.dur[i] = d.dur[i] / 3 + 1e-7 * i;
	build_dag(g, &d);
	ck_assert_int_eq(sim_tasks_run(g, &ta), MOE_OK);
	for (int i = 0; i < d.n; i++)
		a[i] = sim_tasks_end(g, i);
	build_dag(g, &d);
	build_dag(h, &d);
	ck_assert_int_eq(sim_tasks_run(h, &tb), MOE_OK);
	ck_assert_double_eq(ta, tb);
	ck_assert_int_eq(sim_tasks_run(g, &tb), MOE_OK);
	ck_assert_double_eq(ta, tb);
	for (int i = 0; i < d.n; i++) {
		b[i] = sim_tasks_end(g, i);
		ck_assert(a[i] == b[i] && b[i] == sim_tasks_end(h, i));
	}
	/* new durations on the same graph: doubling every duration doubles
	 * every time (exactly: a power of two) */
	for (int i = 0; i < d.n; i++)
		ck_assert_int_eq(sim_tasks_set_duration(g, i, 2 * d.dur[i]), MOE_OK);
	ck_assert_int_eq(sim_tasks_run(g, &tb), MOE_OK);
	ck_assert_double_eq(tb, 2 * ta);
	for (int i = 0; i < d.n; i++)
		ck_assert(sim_tasks_end(g, i) == 2 * a[i]);
	sim_tasks_free(g);
	sim_tasks_free(h);
}
END_TEST


/* ---- helpers ---- */

/* A cluster without presets: G GPUs per node on NVSwitch, one NIC per
 * GPU, numbers chosen so the closed forms are not round. */
static struct moe_cluster cluster(int nodes, int G, int nics, enum moe_intra_kind intra,
				  enum moe_fabric_kind fabric)
{
	struct moe_cluster c;

	memset(&c, 0, sizeof c);
	snprintf(c.name, sizeof c.name, "test");
	c.nodes = nodes;
	c.gpus_per_node = G;
	c.flops_bf16 = 989e12;
	c.hbm_bytes = 80e9;
	c.hbm_Bps = 3.35e12;
	c.launch_s = 5e-6;
	c.compute_efficiency = 0.7;
	c.intra = intra;
	c.intra_Bps = 450e9;
	c.intra_lat_s = 3e-6;
	c.intra_efficiency = 0.8;
	c.nics = nics;
	c.nic_Bps = 50e9;
	c.nic_lat_s = 5e-6;
	c.nic_efficiency = 0.9;
	c.fabric = fabric;
	c.oversubscription = 1;
	c.switch_lat_s = 0.5e-6;
	c.nodes_per_leaf = 2;
	return c;
}

static void assert_rel(double got, double want, double rel)
{
	ck_assert_msg(fabs(got - want) <= rel * fabs(want), "got %.17g, want %.17g (rel %.3g)", got,
		      want, fabs(got - want) / fabs(want));
}

/* ---- topology ---- */

START_TEST(topo_routes_rail)
{
	struct moe_cluster c = cluster(4, 8, 8, MOE_INTRA_NVSWITCH, MOE_FABRIC_RAIL);
	struct sim_topo *t;
	struct sim_path p;

	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_OK);
	/* 2 x 32 GPU ports, 2 x 32 NIC ports, 2 groups x 8 rails leaves x 2 uplinks x 2 */
	ck_assert_int_eq(t->leaves, 16);
	ck_assert_int_eq(t->uplinks, 2);
	ck_assert_int_eq(t->nlinks, 64 + 64 + 64);
	/* inside a node */
	ck_assert_int_eq(sim_topo_route(t, 1, 6, &p), MOE_OK);
	ck_assert_int_eq(p.n, 2);
	ck_assert_str_eq(t->links[p.link[0]].name, "n0.g1.nvl.up");
	ck_assert_str_eq(t->links[p.link[1]].name, "n0.g6.nvl.down");
	ck_assert_double_eq_tol(p.lat_s, 3e-6, 1e-18);
	ck_assert_double_eq_tol(t->links[p.link[0]].bw_Bps, 360e9, 1e-3);
	/* same rail, same group of 2 nodes: one leaf */
	ck_assert_int_eq(sim_topo_route(t, 3, 11, &p), MOE_OK);
	ck_assert_int_eq(p.n, 2);
	ck_assert_str_eq(t->links[p.link[0]].name, "n0.nic3.up");
	ck_assert_str_eq(t->links[p.link[1]].name, "n1.nic3.down");
	ck_assert_double_eq_tol(p.lat_s, 5.5e-6, 1e-18);
	ck_assert_double_eq_tol(t->links[p.link[0]].bw_Bps, 45e9, 1e-3);
	/* cross rail: through a spine, 3 switch hops */
	ck_assert_int_eq(sim_topo_route(t, 3, 12, &p), MOE_OK);
	ck_assert_int_eq(p.n, 4);
	ck_assert_str_eq(t->links[p.link[3]].name, "n1.nic4.down");
	ck_assert_int_eq(t->links[p.link[1]].kind, SIM_LINK_SWITCH);
	ck_assert_double_eq_tol(p.lat_s, 6.5e-6, 1e-18);
	/* same rail, other group */
	ck_assert_int_eq(sim_topo_route(t, 3, 27, &p), MOE_OK);
	ck_assert_int_eq(p.n, 4);
	ck_assert_int_eq(sim_topo_route(t, 5, 5, &p), MOE_OK);
	ck_assert_int_eq(p.n, 0);
	ck_assert_int_eq(sim_topo_route(t, 5, 32, &p), MOE_EINVAL);
	ck_assert_int_eq(sim_topo_route(t, -1, 3, &p), MOE_EINVAL);
	ck_assert_int_eq(sim_topo_link_find(t, "n1.nic3.down"), 64 + 2 * 11 + 1);
	ck_assert_int_eq(sim_topo_link_find(t, "nope"), -1);
	sim_topo_free(t);
	sim_topo_free(NULL);
}
END_TEST

START_TEST(topo_fat_tree_oversubscription_and_spray)
{
	struct moe_cluster c = cluster(8, 4, 2, MOE_INTRA_PCIE, MOE_FABRIC_FAT_TREE);
	struct sim_topo *t;
	struct sim_path p;
	double up = 0;

	c.nodes_per_leaf = 4;
	c.oversubscription = 2;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_OK);
	ck_assert_int_eq(t->leaves, 2);
	ck_assert_int_eq(t->uplinks, 4); /* 4 nodes x 2 NICs / 2 */
	for (int s = 0; s < t->uplinks; s++)
		up += t->links[t->base_leaf + 2 * s].bw_Bps;
	assert_rel(up, 4 * 2 * 45e9 / 2, 1e-12);
	/* PCIe: GPU 0 and 3 are under different switches (NIC 0 and NIC 1) */
	ck_assert_int_eq(sim_topo_route(t, 0, 3, &p), MOE_OK);
	ck_assert_int_eq(p.n, 4);
	ck_assert_str_eq(t->links[p.link[1]].name, "n0.psw0.up");
	ck_assert_str_eq(t->links[p.link[2]].name, "n0.psw1.down");
	ck_assert_int_eq(sim_topo_route(t, 0, 1, &p), MOE_OK);
	ck_assert_int_eq(p.n, 2);
	/* across leaves: gpu pcie, nic, leaf up, leaf down, nic, gpu pcie */
	ck_assert_int_eq(sim_topo_route(t, 0, 31, &p), MOE_OK);
	ck_assert_int_eq(p.n, 6);
	ck_assert_str_eq(t->links[p.link[1]].name, "n0.nic0.up");
	ck_assert_str_eq(t->links[p.link[4]].name, "n7.nic1.down");
	sim_topo_free(t);
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_SPRAY, &t), MOE_OK);
	ck_assert_int_eq(t->uplinks, 1);
	assert_rel(t->links[t->base_leaf].bw_Bps, 4 * 2 * 45e9 / 2, 1e-12);
	sim_topo_free(t);
}
END_TEST

START_TEST(topo_errors_and_slowdowns)
{
	struct moe_cluster c = cluster(2, 8, 8, MOE_INTRA_NVLINK_MESH, MOE_FABRIC_NONBLOCKING);
	struct sim_topo *t;
	struct sim_path p;

	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_OK);
	ck_assert_int_eq(sim_topo_route(t, 2, 5, &p), MOE_OK);
	ck_assert_int_eq(p.n, 1);
	ck_assert_str_eq(t->links[p.link[0]].name, "n0.g2.nvl.g5");
	assert_rel(t->links[p.link[0]].bw_Bps, 360e9 / 7, 1e-12);
	ck_assert_int_eq(sim_topo_slow_link(t, p.link[0], 4), MOE_OK);
	assert_rel(t->links[p.link[0]].bw_Bps, 90e9 / 7, 1e-12);
	ck_assert_int_eq(sim_topo_slow_link(t, t->nlinks, 2), MOE_EINVAL);
	ck_assert_int_eq(sim_topo_slow_link(t, 0, 0), MOE_EINVAL);
	ck_assert_int_eq(sim_topo_slow_gpu(t, 3, 1.5), MOE_OK);
	ck_assert_double_eq(t->gpu_slowdown[3], 1.5);
	ck_assert_int_eq(sim_topo_slow_gpu(t, 16, 1.5), MOE_EINVAL);
	sim_topo_free(t);
	c.intra_Bps = 0;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "intra.bw"));
	c = cluster(2, 8, 8, MOE_INTRA_NVSWITCH, MOE_FABRIC_NONBLOCKING);
	c.nic_Bps = -1;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_EINVAL);
	ck_assert_ptr_nonnull(strstr(moe_errmsg(), "nic.bw"));
	c = cluster(2, 8, 0, MOE_INTRA_NVSWITCH, MOE_FABRIC_NONBLOCKING);
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_EINVAL);
}
END_TEST

/* ---- network: closed forms ---- */

START_TEST(net_one_flow)
{
	struct moe_cluster c = cluster(2, 8, 8, MOE_INTRA_NVSWITCH, MOE_FABRIC_RAIL);
	struct sim_topo *t;
	struct sim_net *n;
	struct sim_path p;
	int f;
	double B = 123456789.0;

	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_OK);
	ck_assert_int_eq(sim_net_new(t, 0, &n), MOE_OK);
	sim_topo_route(t, 2, 10, &p);
	ck_assert_int_eq(sim_net_add(n, &p, B, 1e-3, 7, &f), MOE_OK);
	ck_assert_int_eq(sim_net_run(n, NULL, NULL), MOE_OK);
	assert_rel(sim_net_flow_end(n, f), 1e-3 + 5.5e-6 + B / 45e9, 1e-9);
	assert_rel(sim_net_link_bytes(n, p.link[0]), B, 1e-15);
	assert_rel(sim_net_link_rate_integral(n, p.link[1]), B, 1e-9);
	assert_rel(sim_net_link_busy(n, p.link[1]), B / 45e9, 1e-9);
	/* errors */
	ck_assert_int_eq(sim_net_add(n, &p, -1, 1, 0, NULL), MOE_EINVAL);
	ck_assert_int_eq(sim_net_add(n, &p, NAN, 1, 0, NULL), MOE_EINVAL);
	ck_assert_int_eq(sim_net_add(n, &p, 1, 0, 0, NULL), MOE_EINVAL); /* in the past */
	p.link[0] = t->nlinks;
	ck_assert_int_eq(sim_net_add(n, &p, 1, 1, 0, NULL), MOE_EINVAL);
	sim_net_free(n);
	sim_net_free(NULL);
	sim_topo_free(t);
}
END_TEST

START_TEST(net_n_flows_one_link)
{
	struct moe_cluster c = cluster(1, 8, 8, MOE_INTRA_NVSWITCH, MOE_FABRIC_RAIL);
	struct sim_topo *t;
	struct sim_net *n;
	struct sim_path p;
	double B = 98765432.1;

	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_OK);
	ck_assert_int_eq(sim_net_new(t, 0, &n), MOE_OK);
	/* 7 GPUs send to GPU 0: its down port (360 GB/s) is shared 7 ways */
	for (int s = 1; s < 8; s++) {
		sim_topo_route(t, s, 0, &p);
		ck_assert_int_eq(sim_net_add(n, &p, B, 0, s, NULL), MOE_OK);
	}
	ck_assert_int_eq(sim_net_run(n, NULL, NULL), MOE_OK);
	for (int f = 0; f < 7; f++)
		assert_rel(sim_net_flow_end(n, f), 3e-6 + 7 * B / 360e9, 1e-9);
	assert_rel(sim_net_now(n), 3e-6 + 7 * B / 360e9, 1e-9);
	ck_assert_uint_eq(sim_net_stats(n)->events, 2); /* one start, one end */
	sim_net_free(n);
	sim_topo_free(t);
}
END_TEST

/* Every GPU sends B to every other GPU of 4 nodes x 4 GPUs.  Intra-node
 * flows use only NVSwitch ports (3 per port), network flows only NICs (12
 * per NIC), so each class ends at lat + count x B / bw. */
static void uniform_all_to_all(enum moe_fabric_kind fabric, enum sim_multipath mp)
{
	struct moe_cluster c = cluster(4, 4, 4, MOE_INTRA_NVSWITCH, fabric);
	struct sim_topo *t;
	struct sim_net *n;
	struct sim_path p;
	double B = 7654321.0, inter_lat;
	int f = 0;

	/* same-leaf and cross-leaf routes differ by two switch hops; with
	 * latencies that differ the flows would not start together */
	if (fabric != MOE_FABRIC_NONBLOCKING)
		c.switch_lat_s = 0;
	ck_assert_int_eq(sim_topo_new(&c, mp, &t), MOE_OK);
	ck_assert_int_eq(sim_net_new(t, 0, &n), MOE_OK);
	for (int s = 0; s < 16; s++)
		for (int d = 0; d < 16; d++)
			if (s != d) {
				sim_topo_route(t, s, d, &p);
				ck_assert_int_eq(sim_net_add(n, &p, B, 0, 0, NULL), MOE_OK);
			}
	ck_assert_int_eq(sim_net_run(n, NULL, NULL), MOE_OK);
	for (int s = 0; s < 16; s++)
		for (int d = 0; d < 16; d++) {
			if (s == d)
				continue;
			if (s / 4 == d / 4) {
				assert_rel(sim_net_flow_end(n, f), 3e-6 + 3 * B / 360e9, 1e-9);
			} else {
				sim_topo_route(t, s, d, &p);
				inter_lat = p.lat_s;
				assert_rel(sim_net_flow_end(n, f), inter_lat + 12 * B / 45e9, 1e-9);
			}
			f++;
		}
	sim_net_free(n);
	sim_topo_free(t);
}

START_TEST(net_uniform_all_to_all)
{
	uniform_all_to_all(MOE_FABRIC_NONBLOCKING, SIM_MULTIPATH_ECMP);
	/* a non-oversubscribed fat tree with spraying is as good as non-blocking */
	uniform_all_to_all(MOE_FABRIC_FAT_TREE, SIM_MULTIPATH_SPRAY);
}
END_TEST

/* ---- network: fairness against an independent solver ---- */

/* Textbook progressive filling, written for clarity: raise every unfrozen
 * flow by the largest common increment, freeze the flows of links that
 * filled up, repeat.  O(rounds x flows x links). */
static void simple_maxmin(int nl, const double *cap, int nf, const int (*path)[SIM_PATH_MAX],
			  const int *plen, const int *active, double *rate)
{
	int frozen[64];
	double used[16];

	for (int f = 0; f < nf; f++) {
		rate[f] = 0;
		frozen[f] = !active[f];
	}
	for (;;) {
		double inc = INFINITY;
		int any = 0;
		for (int l = 0; l < nl; l++) {
			int cnt = 0;
			used[l] = 0;
			for (int f = 0; f < nf; f++)
				for (int k = 0; k < plen[f]; k++)
					if (path[f][k] == l && active[f]) {
						used[l] += rate[f];
						cnt += !frozen[f];
					}
			if (cnt > 0 && (cap[l] - used[l]) / cnt < inc)
				inc = (cap[l] - used[l]) / cnt;
		}
		for (int f = 0; f < nf; f++)
			if (!frozen[f]) {
				rate[f] += inc;
				any = 1;
			}
		if (!any)
			break;
		for (int l = 0; l < nl; l++) {
			double u = 0;
			for (int f = 0; f < nf; f++)
				for (int k = 0; k < plen[f]; k++)
					if (path[f][k] == l && active[f])
						u += rate[f];
			if (u >= cap[l] * (1 - 1e-12))
				for (int f = 0; f < nf; f++)
					for (int k = 0; k < plen[f]; k++)
						if (path[f][k] == l)
							frozen[f] = 1;
		}
	}
}

START_TEST(net_maxmin_random_against_simple_solver)
{
	/* _i: 0 the incremental solver, 1 the full-component reference */
	unsigned s = 2024 + 17 * (unsigned)_i;
	for (int trial = 0; trial < 300; trial++) {
		struct sim_link links[16];
		struct sim_topo t;
		struct sim_net *n;
		struct sim_path p;
		int nl = 2 + trial % 6, nf = 1 + (trial * 7) % 20;
		int path[64][SIM_PATH_MAX], plen[64], active[64];
		double cap[16], bytes[64], rate[64], rem[64], end[64], start[64], now = 0;
		int left;

		memset(&t, 0, sizeof t);
		memset(links, 0, sizeof links);
		for (int l = 0; l < nl; l++) {
			s = s * 1103515245u + 12345u;
			cap[l] = links[l].bw_Bps = 1e9 * (1 + (s >> 16) % 1000) / 7.0;
		}
		t.nlinks = nl;
		t.links = links;
		ck_assert_int_eq(sim_net_new(&t, 4, &n), MOE_OK); /* forces growth */
		sim_net_set_full(n, _i);
		for (int f = 0; f < nf; f++) {
			s = s * 1103515245u + 12345u;
			p.n = 1 + (int)((s >> 16) % 3);
			p.lat_s = 0;
			for (int k = 0; k < p.n; k++) {
				int l;
				s = s * 1103515245u + 12345u;
				l = (int)((s >> 16) % (unsigned)nl);
				/* distinct links on a path */
				for (int j = 0; j < k; j++)
					if (p.link[j] == l) {
						l = -1;
						break;
					}
				if (l < 0) {
					p.n = k;
					break;
				}
				p.link[k] = l;
			}
			if (p.n == 0) {
				p.n = 1;
				p.link[0] = f % nl;
			}
			s = s * 1103515245u + 12345u;
			bytes[f] = 1e6 * (1 + (s >> 16) % 5000);
			if (trial % 3 == 0) /* equal sizes: many flows end together */
				bytes[f] = 1e6 * (1 + f % 3);
			plen[f] = p.n;
			memcpy(path[f], p.link, sizeof p.link);
			/* every other trial staggers the starts: flows joining while
			 * others run at their old rates */
			s = s * 1103515245u + 12345u;
			start[f] = trial % 2 ? 1e-3 * (double)((s >> 16) % 64) : 0;
			ck_assert_int_eq(sim_net_add(n, &p, bytes[f], start[f], f, NULL), MOE_OK);
		}
		ck_assert_int_eq(sim_net_run(n, NULL, NULL), MOE_OK);
		/* the reference: a plain fluid simulation with the simple solver */
		for (int f = 0; f < nf; f++) {
			active[f] = start[f] == 0;
			rem[f] = bytes[f];
		}
		left = nf;
		while (left > 0) {
			double dt = INFINITY;
			int any = 0;
			for (int f = 0; f < nf; f++)
				any |= active[f];
			if (any)
				simple_maxmin(nl, cap, nf, (const int (*)[SIM_PATH_MAX])path, plen,
					      active, rate);
			for (int f = 0; f < nf; f++) {
				if (active[f] && rem[f] / rate[f] < dt)
					dt = rem[f] / rate[f];
				if (!active[f] && rem[f] > 0 && start[f] - now < dt)
					dt = start[f] - now;
			}
			now += dt;
			for (int f = 0; f < nf; f++) {
				if (!active[f])
					continue;
				rem[f] -= rate[f] * dt;
				if (rem[f] <= 1e-9 * bytes[f]) {
					active[f] = 0;
					rem[f] = 0;
					end[f] = now;
					left--;
				}
			}
			for (int f = 0; f < nf; f++)
				if (!active[f] && rem[f] > 0 && start[f] <= now * (1 + 1e-12))
					active[f] = 1;
		}
		for (int f = 0; f < nf; f++)
			assert_rel(sim_net_flow_end(n, f), end[f], 1e-9);
		/* conservation: per link, bytes of its flows = integral of its rate */
		for (int l = 0; l < nl; l++) {
			double b = 0;
			for (int f = 0; f < nf; f++)
				for (int k = 0; k < plen[f]; k++)
					if (path[f][k] == l)
						b += bytes[f];
			assert_rel(sim_net_link_bytes(n, l) + 1, b + 1, 1e-12);
			assert_rel(sim_net_link_rate_integral(n, l) + 1, b + 1, 1e-9);
		}
		sim_net_free(n);
	}
}
END_TEST

START_TEST(net_worked_example)
{
	/* the example of net.h: A 10 GB/s, B 4 GB/s; flows A, A+B, B */
	struct sim_link links[2];
	struct sim_topo t;
	struct sim_net *n;
	struct sim_path p = {0};

	memset(&t, 0, sizeof t);
	memset(links, 0, sizeof links);
	links[0].bw_Bps = 10e9;
	links[1].bw_Bps = 4e9;
	t.nlinks = 2;
	t.links = links;
	ck_assert_int_eq(sim_net_new(&t, 0, &n), MOE_OK);
	p.n = 1; p.link[0] = 0;
	sim_net_add(n, &p, 80e9, 0, 1, NULL);
	p.n = 2; p.link[0] = 0; p.link[1] = 1;
	sim_net_add(n, &p, 2e9, 0, 2, NULL);
	p.n = 1; p.link[0] = 1;
	sim_net_add(n, &p, 4e9, 0, 3, NULL);
	ck_assert_int_eq(sim_net_run(n, NULL, NULL), MOE_OK);
	/* flow 2 (2 GB at 2 GB/s) ends at 1 s; flow 3 then runs at 4 GB/s:
	 * 2 GB left, ends at 1.5 s; flow 1: 8 GB by 1 s, then 10 GB/s: 8 s */
	assert_rel(sim_net_flow_end(n, 1), 1.0, 1e-12);
	assert_rel(sim_net_flow_end(n, 2), 1.5, 1e-12);
	assert_rel(sim_net_flow_end(n, 0), 8.2, 1e-12);
	sim_net_free(n);
}
END_TEST

struct chain {
	const struct sim_topo *t;
	int calls;
	double last;
};

static void chain_done(void *user, struct sim_net *net, int flow, int64_t tag, double t_s)
{
	struct chain *ch = user;
	struct sim_path p;

	(void)flow;
	ch->calls++;
	ch->last = t_s;
	if (tag < 3) {
		sim_topo_route(ch->t, 0, 1, &p);
		ck_assert_int_eq(sim_net_add(net, &p, 1e9, t_s, tag + 1, NULL), MOE_OK);
	}
}

START_TEST(net_callbacks_chain_flows_deterministically)
{
	struct moe_cluster c = cluster(1, 2, 1, MOE_INTRA_NVSWITCH, MOE_FABRIC_NONBLOCKING);
	struct sim_topo *t;
	struct sim_net *n;
	struct sim_path p;
	struct chain ch = {0};

	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_OK);
	ch.t = t;
	ck_assert_int_eq(sim_net_new(t, 0, &n), MOE_OK);
	sim_topo_route(t, 0, 1, &p);
	sim_net_add(n, &p, 1e9, 0, 0, NULL);
	ck_assert_int_eq(sim_net_run(n, chain_done, &ch), MOE_OK);
	ck_assert_int_eq(ch.calls, 4);
	assert_rel(ch.last, 4 * (3e-6 + 1e9 / 360e9), 1e-12);
	sim_net_reset(n);
	ck_assert_double_eq(sim_net_now(n), 0);
	ck_assert_int_eq(sim_net_flows(n), 0);
	sim_net_free(n);
	sim_topo_free(t);
}
END_TEST


/* ---- collectives ---- */

struct a2a_env {
	struct moe_cluster c;
	struct sim_topo *t;
	struct sim_net *n;
	struct sim_traffic *tr;
};

static void a2a_env_init(struct a2a_env *e, int nodes, int G)
{
	e->c = cluster(nodes, G, G, MOE_INTRA_NVSWITCH, MOE_FABRIC_RAIL);
	e->c.nodes_per_leaf = 32;
	ck_assert_int_eq(sim_topo_new(&e->c, SIM_MULTIPATH_SPRAY, &e->t), MOE_OK);
	ck_assert_int_eq(sim_net_new(e->t, 0, &e->n), MOE_OK);
	ck_assert_int_eq(sim_traffic_new(nodes * G, G, &e->tr), MOE_OK);
}

static void a2a_env_free(struct a2a_env *e)
{
	sim_traffic_free(e->tr);
	sim_net_free(e->n);
	sim_topo_free(e->t);
}

START_TEST(a2a_dedup_counts)
{
	struct a2a_env e;
	int dst[4] = {4, 5, 5, 1};
	double pairs = 0, gpu = 0, node = 0;

	a2a_env_init(&e, 2, 4);
	ck_assert_int_eq(sim_traffic_add_token(e.tr, 0, dst, 4, 10), MOE_OK);
	for (int i = 0; i < 64; i++)
		pairs += e.tr->pairs[i], gpu += e.tr->gpu[i];
	for (int i = 0; i < 16; i++)
		node += e.tr->node[i];
	ck_assert_double_eq(pairs, 40); /* tokens x k: conserved */
	ck_assert_double_eq(gpu, 30);   /* GPUs 4, 5, 1 */
	ck_assert_double_eq(node, 20);  /* nodes 1 and 0 */
	ck_assert_double_eq(e.tr->pairs[5], 20);
	ck_assert_double_eq(e.tr->gpu[5], 10);
	ck_assert_double_eq(e.tr->node[1], 10);
	dst[0] = 8;
	ck_assert_int_eq(sim_traffic_add_token(e.tr, 0, dst, 4, 1), MOE_EINVAL);
	ck_assert_int_eq(sim_traffic_add_token(e.tr, 9, dst, 1, 1), MOE_EINVAL);
	ck_assert_int_eq(sim_traffic_add_token(e.tr, 0, dst, 0, 1), MOE_EINVAL);
	ck_assert_int_eq(sim_traffic_add(e.tr, 0, 8, 1), MOE_EINVAL);
	ck_assert_int_eq(sim_traffic_add(e.tr, 0, 1, -1), MOE_EINVAL);
	sim_traffic_clear(e.tr);
	ck_assert_double_eq(e.tr->pairs[5], 0);
	a2a_env_free(&e);
}
END_TEST

/* A GPU's tokens added in one call, dropped slots -1, give exactly what
 * adding each token on its own with its kept slots gives; a bad slot is
 * refused with nothing added. */
/* A network reset after an all-to-all gives the next one the bits a fresh
 * network gives it: nothing of the last run's links carries over (the
 * combine of a layer runs on its own network beside the dispatch). */
START_TEST(a2a_reset_network_equals_fresh)
{
	struct a2a_env a, b;
	struct sim_a2a_opts od = {SIM_A2A_DIRECT, 1, 0, 7168}, oc = {SIM_A2A_DIRECT, 1, 1, 14336};
	struct sim_a2a_result r1, r2, r3;
	double f1[8], f2[8], f3[8];
	unsigned x = 777;

	a2a_env_init(&a, 2, 4);
	a2a_env_init(&b, 2, 4);
	for (int s = 0; s < 8; s++)
		for (int d = 0; d < 8; d++) {
			x = x * 1103515245u + 12345u;
			ck_assert_int_eq(sim_traffic_add(a.tr, s, d, 1 + (x >> 16) % 1000), MOE_OK);
		}
	ck_assert_int_eq(sim_a2a_run(a.n, a.t, a.tr, &od, f1, &r1), MOE_OK);
	ck_assert_int_eq(sim_a2a_run(a.n, a.t, a.tr, &oc, f2, &r2), MOE_OK);
	ck_assert_int_eq(sim_a2a_run(b.n, b.t, a.tr, &oc, f3, &r3), MOE_OK);
	ck_assert_mem_eq(&r2.completion_s, &r3.completion_s, sizeof(double));
	ck_assert_mem_eq(f2, f3, sizeof f2);
	for (int l = 0; l < a.t->nlinks; l++) {
		double ba = sim_net_link_busy(a.n, l), bb = sim_net_link_busy(b.n, l);
		ck_assert_mem_eq(&ba, &bb, sizeof ba);
	}
	a2a_env_free(&a);
	a2a_env_free(&b);
}
END_TEST

START_TEST(a2a_batch_tokens_equal_one_by_one)
{
	struct a2a_env a, b;
	int dst[50 * 3], kept[3];
	unsigned x = 12345;

	a2a_env_init(&a, 2, 4);
	a2a_env_init(&b, 2, 4);
	for (int s = 0; s < 8; s++) {
		for (int i = 0; i < 50 * 3; i++) {
			x = x * 1103515245u + 12345u;
			dst[i] = (int)(x >> 16) % 9 - 1; /* -1 (dropped) .. 7 */
		}
		ck_assert_int_eq(sim_traffic_add_tokens(a.tr, s, dst, 3, 50), MOE_OK);
		for (int t = 0; t < 50; t++) {
			int n = 0;
			for (int j = 0; j < 3; j++)
				if (dst[t * 3 + j] >= 0)
					kept[n++] = dst[t * 3 + j];
			if (n > 0)
				ck_assert_int_eq(sim_traffic_add_token(b.tr, s, kept, n, 1), MOE_OK);
		}
	}
	ck_assert_mem_eq(a.tr->pairs, b.tr->pairs, 64 * sizeof(double));
	ck_assert_mem_eq(a.tr->gpu, b.tr->gpu, 64 * sizeof(double));
	ck_assert_mem_eq(a.tr->node, b.tr->node, 16 * sizeof(double));
	ck_assert_double_ne(a.tr->pairs[1], 0);
	dst[149] = 8;
	memcpy(b.tr->pairs, a.tr->pairs, 64 * sizeof(double));
	ck_assert_int_eq(sim_traffic_add_tokens(a.tr, 0, dst, 3, 50), MOE_EINVAL);
	ck_assert_mem_eq(a.tr->pairs, b.tr->pairs, 64 * sizeof(double));
	ck_assert_int_eq(sim_traffic_add_tokens(a.tr, 8, dst, 3, 1), MOE_EINVAL);
	ck_assert_int_eq(sim_traffic_add_tokens(a.tr, 0, dst, 0, 1), MOE_EINVAL);
	a2a_env_free(&a);
	a2a_env_free(&b);
}
END_TEST

/* Every token of node 0 wants two experts of node 1 (GPUs 4+i and 5+i mod
 * 4): direct sends two network copies, hierarchical and forwarding one. */
START_TEST(a2a_two_stage_send_fewer_network_bytes)
{
	struct a2a_env e;
	struct sim_a2a_opts o = {SIM_A2A_DIRECT, 1, 0, 7168};
	struct sim_a2a_result rd, rh, rf, rn;
	double fin[8];

	a2a_env_init(&e, 2, 4);
	for (int s = 0; s < 4; s++) {
		int dst[2] = {4 + s, 4 + (s + 1) % 4};
		ck_assert_int_eq(sim_traffic_add_token(e.tr, s, dst, 2, 1000), MOE_OK);
	}
	ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, fin, &rd), MOE_OK);
	o.algo = SIM_A2A_HIERARCHICAL;
	ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, fin, &rh), MOE_OK);
	o.algo = SIM_A2A_NVLINK_FORWARD;
	ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, fin, &rf), MOE_OK);
	ck_assert_double_eq(rd.network_bytes, 4 * 2000 * 7168.0);
	ck_assert_double_eq(rh.network_bytes, 4 * 1000 * 7168.0);
	ck_assert_double_eq(rf.network_bytes, 4 * 1000 * 7168.0);
	ck_assert(rf.intra_bytes > 0);
	/* forwarding: one network flow per source (its own rail), then NVLink:
	 * lat_n + 1000 B/nic, then lat_i + 1000 B/nvl for the other expert */
	assert_rel(rf.completion_s, 5.5e-6 + 1000 * 7168.0 / 45e9 + 3e-6 + 1000 * 7168.0 / 360e9,
		   1e-9);
	/* direct: each source's NIC carries 2000 tokens, busy from the start
	 * of its same-rail flow (the cross-rail one starts 1 us later) */
	assert_rel(rd.completion_s, 5.5e-6 + 2000 * 7168.0 / 45e9, 1e-9);
	ck_assert(rf.completion_s < rd.completion_s);
	/* without de-duplication forwarding sends both copies over the network */
	o.dedup = 0;
	ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, fin, &rn), MOE_OK);
	ck_assert_double_eq(rn.network_bytes, rd.network_bytes);
	/* combine moves the same bytes backwards */
	o.dedup = 1;
	o.combine = 1;
	o.bytes_per_token = 2 * 7168;
	ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, fin, &rn), MOE_OK);
	ck_assert_double_eq(rn.network_bytes, 2 * rf.network_bytes);
	ck_assert_double_eq(rn.intra_bytes, 2 * rf.intra_bytes);
	a2a_env_free(&e);
}
END_TEST

START_TEST(a2a_uniform_closed_form_and_determinism)
{
	struct a2a_env e;
	struct sim_a2a_opts o = {SIM_A2A_DIRECT, 1, 0, 4096};
	struct sim_a2a_result r;
	double fin[16], fin2[16];

	a2a_env_init(&e, 4, 4);
	e.c.switch_lat_s = 0;
	sim_topo_free(e.t);
	sim_net_free(e.n);
	ck_assert_int_eq(sim_topo_new(&e.c, SIM_MULTIPATH_SPRAY, &e.t), MOE_OK);
	ck_assert_int_eq(sim_net_new(e.t, 0, &e.n), MOE_OK);
	for (int s = 0; s < 16; s++)
		for (int d = 0; d < 16; d++)
			ck_assert_int_eq(sim_traffic_add(e.tr, s, d, 333), MOE_OK);
	ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, fin, &r), MOE_OK);
	assert_rel(r.completion_s, 5e-6 + 12 * 333 * 4096.0 / 45e9, 1e-9);
	ck_assert_uint_eq(r.flows, 240);
	ck_assert_double_eq(r.network_bytes, 16 * 12 * 333 * 4096.0);
	ck_assert_double_eq(r.intra_bytes, 16 * 3 * 333 * 4096.0);
	ck_assert_int_eq(e.t->links[r.bottleneck_link].kind, SIM_LINK_NIC);
	assert_rel(r.bottleneck_util, (12 * 333 * 4096.0 / 45e9) / r.completion_s, 1e-12);
	for (int g = 0; g < 16; g++)
		assert_rel(fin[g], r.completion_s, 1e-9);
	ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, fin2, &r), MOE_OK);
	ck_assert_mem_eq(fin, fin2, sizeof fin);
	a2a_env_free(&e);
}
END_TEST

START_TEST(net_coalesce_trades_events_for_bounded_error)
{
	struct a2a_env e;
	struct sim_a2a_opts o = {SIM_A2A_DIRECT, 1, 0, 4096};
	struct sim_a2a_result exact, coarse;
	uint64_t ev_exact;

	a2a_env_init(&e, 4, 4);
	for (int s = 0; s < 16; s++)
		for (int d = 0; d < 16; d++)
			ck_assert_int_eq(sim_traffic_add(e.tr, s, d, 100 + 37 * ((s * 7 + d * 13) % 11)), MOE_OK);
	ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, NULL, &exact), MOE_OK);
	ev_exact = sim_net_stats(e.n)->events;
	sim_net_set_coalesce(e.n, 1e-2);
	ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, NULL, &coarse), MOE_OK);
	ck_assert_uint_lt(sim_net_stats(e.n)->events, ev_exact);
	assert_rel(coarse.completion_s, exact.completion_s, 2e-2);
	ck_assert_double_eq(coarse.network_bytes, exact.network_bytes);
	a2a_env_free(&e);
}
END_TEST

/* Flows ending in one coalesced window end together at the rate-weighted
 * mean of their own ends.  On one link every flow has the same rate, so
 * the bytes the early ones carry too long are exactly those the late ones
 * carry too little: a long flow sharing the link ends when the link has
 * carried every byte, as without coalescing (closed form), and the link's
 * rate integral equals its bytes.  Ending the window's flows at its start
 * (the old rule) gave the long flow their missing bytes: 4e-4 early. */
struct tie_watch {
	const struct sim_net *n;
	int solves;
	uint64_t visits[2];  /* flows re-solved by the first two solves */
	double rate[7 * 65];
};

static void tie_rates(void *user, const struct sim_net *net, double t_s, const int *links, int nlinks)
{
	struct tie_watch *w = user;
	uint64_t before = 0;

	(void)t_s; (void)links; (void)nlinks;
	for (int i = 0; i < w->solves && i < 2; i++)
		before += w->visits[i];
	if (w->solves < 2)
		w->visits[w->solves] = sim_net_stats(net)->flow_visits - before;
	if (w->solves == 1)
		for (int f = 0; f < sim_net_flows(net); f++)
			w->rate[f] = sim_net_flow_rate(net, f);
	w->solves++;
}

START_TEST(net_ties_do_not_ripple)
{
	/* A chain of N + 1 links of 450 GB/s (an H100's NVLink), seven flows
	 * on each: pair flow i crosses links i and i + 1, singles fill the
	 * rest.  Every flow runs at 450/7 GB/s, every link is full: ties
	 * everywhere, and sums of sevenths do not all round back to a seventh
	 * (with these figures the old rule re-solved the whole chain, 390
	 * flows).
	 * When a single on link 0 ends, only link 0's other singles can rise
	 * (pair flow 0 is held by link 1).  A flow re-solved at a link whose
	 * share is unchanged but for rounding must not make that link's flows
	 * join in turn, or the change ripples down the whole chain. */
	enum { N = 64, K = 7 };
	const double bw = 450e9, s7 = bw / K;
	struct sim_link links[N + 1];
	struct sim_topo t;
	struct sim_net *n;
	struct sim_path p = {0};
	struct tie_watch w = {0};
	int nf = 0, first_single = -1;

	memset(&t, 0, sizeof t);
	memset(links, 0, sizeof links);
	for (int l = 0; l <= N; l++)
		links[l].bw_Bps = bw;
	t.nlinks = N + 1;
	t.links = links;
	ck_assert_int_eq(sim_net_new(&t, 0, &n), MOE_OK);
	w.n = n;
	sim_net_set_rates_hook(n, tie_rates, &w);
	for (int i = 0; i < N; i++) {
		p.n = 2; p.link[0] = i; p.link[1] = i + 1;
		ck_assert_int_eq(sim_net_add(n, &p, 1e9, 0, nf, NULL), MOE_OK);
		nf++;
	}
	first_single = nf;
	for (int l = 0; l <= N; l++) {
		int singles = l == 0 || l == N ? K - 1 : K - 2;
		for (int k = 0; k < singles; k++) {
			/* the first single is short: 0.1 GB */
			p.n = 1; p.link[0] = l;
			ck_assert_int_eq(sim_net_add(n, &p, nf == first_single ? 1e8 : 1e9, 0, nf, NULL),
					 MOE_OK);
			nf++;
		}
	}
	ck_assert_int_le(nf, (int)(sizeof w.rate / sizeof w.rate[0]));
	ck_assert_int_eq(sim_net_run(n, NULL, NULL), MOE_OK);
	ck_assert_int_ge(w.solves, 2);
	ck_assert_uint_eq(w.visits[0], (uint64_t)nf);
	/* the end of the short single: its link's other flows and no more */
	ck_assert_uint_le(w.visits[1], K - 1);
	/* link 0's five other singles share what pair flow 0 leaves */
	for (int f = first_single + 1; f < first_single + K - 1; f++)
		assert_rel(w.rate[f], (bw - s7) / (K - 2), 1e-12);
	for (int f = 0; f < nf; f++)
		if (f < first_single || f >= first_single + K - 1)
			assert_rel(w.rate[f], s7, 1e-12);
	ck_assert_double_eq(w.rate[first_single], 0);
	assert_rel(sim_net_flow_end(n, first_single), 1e8 / s7, 1e-12);
	sim_net_free(n);
}
END_TEST

START_TEST(net_dominated_links_left_out)
{
	struct moe_cluster c = cluster(4, 4, 4, MOE_INTRA_NVSWITCH, MOE_FABRIC_RAIL);
	struct sim_topo *t, bare;
	struct sim_net *n[2];
	unsigned char dom[512];
	int ndom = 0, nf = 0;
	unsigned s = 77;

	/* 2 leaf groups x 4 rails: 8 leaves, their NICs' bandwidth each */
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_SPRAY, &t), MOE_OK);
	ck_assert_int_eq(t->leaves, 8);
	ck_assert_int_le(t->nlinks, (int)sizeof dom);
	sim_topo_dominated(t, dom);
	for (int l = 0; l < t->nlinks; l++) {
		ndom += dom[l];
		ck_assert_int_eq(dom[l], l >= t->base_leaf);
	}
	ck_assert_int_eq(ndom, 16);
	/* a degraded uplink is a bottleneck again; the others stay left out */
	ck_assert_int_eq(sim_topo_slow_link(t, t->base_leaf + 2, 2), MOE_OK);
	sim_topo_dominated(t, dom);
	ck_assert_int_eq(dom[t->base_leaf + 2], 0);
	ck_assert_int_eq(dom[t->base_leaf + 3], 1);
	sim_topo_free(t);
	/* oversubscribed (2:1) or hashed over several uplinks: none */
	c.fabric = MOE_FABRIC_FAT_TREE;
	c.oversubscription = 2;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_SPRAY, &t), MOE_OK);
	sim_topo_dominated(t, dom);
	for (int l = 0; l < t->nlinks; l++)
		ck_assert_int_eq(dom[l], 0);
	sim_topo_free(t);
	c.oversubscription = 1;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_OK);
	ck_assert_int_gt(t->uplinks, 1);
	sim_topo_dominated(t, dom);
	for (int l = 0; l < t->nlinks; l++)
		ck_assert_int_eq(dom[l], 0);
	sim_topo_free(t);

	/* the same flows on the rail fabric with the uplinks left out and on
	 * a copy without leaves (every link solved): the same ends and the
	 * same rate integrals, which equal the links' bytes.  One uplink is
	 * degraded (a bottleneck, solved in both). */
	c.fabric = MOE_FABRIC_RAIL;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_SPRAY, &t), MOE_OK);
	ck_assert_int_eq(sim_topo_slow_link(t, t->base_leaf + 5, 3), MOE_OK);
	bare = *t;
	bare.leaves = 0;
	ck_assert_int_eq(sim_net_new(t, 0, &n[0]), MOE_OK);
	ck_assert_int_eq(sim_net_new(&bare, 0, &n[1]), MOE_OK);
	for (int a = 0; a < t->gpus; a++)
		for (int b = 0; b < t->gpus; b++) {
			struct sim_path p;
			double bytes, start;
			if (a == b)
				continue;
			s = s * 1103515245u + 12345u;
			bytes = 1e6 * (1 + (s >> 16) % 997) * (b % 5 == 0 ? 8 : 1);
			s = s * 1103515245u + 12345u;
			start = (a + b) % 3 == 0 ? 1e-5 * ((s >> 16) % 50) : 0;
			ck_assert_int_eq(sim_topo_route(t, a, b, &p), MOE_OK);
			for (int i = 0; i < 2; i++)
				ck_assert_int_eq(sim_net_add(n[i], &p, bytes, start, nf, NULL), MOE_OK);
			nf++;
		}
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(sim_net_run(n[i], NULL, NULL), MOE_OK);
	for (int f = 0; f < nf; f++)
		assert_rel(sim_net_flow_end(n[0], f), sim_net_flow_end(n[1], f), 1e-12);
	for (int l = 0; l < t->nlinks; l++) {
		assert_rel(sim_net_link_bytes(n[0], l), sim_net_link_bytes(n[1], l), 1e-12);
		assert_rel(sim_net_link_rate_integral(n[0], l) + 1,
			   sim_net_link_rate_integral(n[1], l) + 1, 1e-9);
		assert_rel(sim_net_link_rate_integral(n[0], l) + 1, sim_net_link_bytes(n[0], l) + 1,
			   1e-9);
		assert_rel(sim_net_link_busy(n[0], l) + 1e-12, sim_net_link_busy(n[1], l) + 1e-12, 1e-9);
	}
	sim_net_free(n[0]);
	sim_net_free(n[1]);
	sim_topo_free(t);
}
END_TEST

START_TEST(net_coalesce_window_ends_at_mean)
{
	struct moe_cluster c = cluster(1, 8, 8, MOE_INTRA_NVSWITCH, MOE_FABRIC_RAIL);
	struct sim_topo *t;
	struct sim_net *n;
	struct sim_path p;
	const double sizes[] = {1000e3, 1001e3, 1002e3, 1003e3, 10000e3};
	double total = 0, lat;
	int last;

	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &t), MOE_OK);
	ck_assert_int_eq(sim_net_new(t, 0, &n), MOE_OK);
	sim_topo_route(t, 1, 0, &p);
	lat = p.lat_s;
	for (int rep = 0; rep < 2; rep++) {
		sim_net_reset(n);
		sim_net_set_coalesce(n, rep == 0 ? 0 : 1e-2);
		total = 0;
		for (int i = 0; i < 5; i++) {
			ck_assert_int_eq(sim_net_add(n, &p, sizes[i], 0, i, &last), MOE_OK);
			total += sizes[i];
		}
		ck_assert_int_eq(sim_net_run(n, NULL, NULL), MOE_OK);
		/* exact: each flow's own processor-sharing end */
		if (rep == 0)
			assert_rel(sim_net_flow_end(n, 0), lat + 5 * sizes[0] / 360e9, 1e-12);
		else {
			ck_assert_uint_eq(sim_net_stats(n)->events, 3); /* start, the four, the long one */
			/* the four end together at the mean of their own ends */
			for (int i = 0; i < 4; i++)
				assert_rel(sim_net_flow_end(n, i), lat + 5 * 1001.5e3 / 360e9, 1e-12);
		}
		assert_rel(sim_net_flow_end(n, last), lat + total / 360e9, 1e-12);
		for (int k = 0; k < p.n; k++)
			assert_rel(sim_net_link_rate_integral(n, p.link[k]), total, 1e-12);
	}
	/* a start before the window's first time is still refused */
	ck_assert_int_eq(sim_net_add(n, &p, 1, sim_net_now(n) * 0.5, 0, NULL), MOE_EINVAL);
	sim_net_free(n);
	sim_topo_free(t);
}
END_TEST

/* Staged algorithms chain a transfer from the end of another; with
 * coalescing that end can precede the window's time, and the chained
 * transfer must still be accepted.  Same bytes, times within the window. */
START_TEST(a2a_coalesce_staged_algorithms)
{
	struct a2a_env e;
	struct sim_a2a_opts o = {SIM_A2A_HIERARCHICAL, 1, 0, 4096};
	struct sim_a2a_result exact, coarse;

	a2a_env_init(&e, 4, 4);
	for (int s = 0; s < 16; s++)
		for (int d = 0; d < 16; d++)
			ck_assert_int_eq(sim_traffic_add(e.tr, s, d, 100 + 37 * ((s * 7 + d * 13) % 11)), MOE_OK);
	for (int a = 0; a < 2; a++) {
		o.algo = a == 0 ? SIM_A2A_HIERARCHICAL : SIM_A2A_NVLINK_FORWARD;
		sim_net_set_coalesce(e.n, 0);
		ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, NULL, &exact), MOE_OK);
		sim_net_set_coalesce(e.n, 5e-2);
		ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, NULL, &coarse), MOE_OK);
		ck_assert_double_eq(coarse.network_bytes, exact.network_bytes);
		assert_rel(coarse.completion_s, exact.completion_s, 5e-2);
	}
	a2a_env_free(&e);
}
END_TEST

/* Spraying balances the spine uplinks; ECMP's hash puts unequal numbers of
 * flows on them, so the same all-to-all through an oversubscribed fat tree
 * ends later (collisions), never earlier. */
START_TEST(a2a_ecmp_collisions_cost_time)
{
	struct moe_cluster c = cluster(8, 4, 4, MOE_INTRA_NVSWITCH, MOE_FABRIC_FAT_TREE);
	struct sim_topo *te, *ts;
	struct sim_net *ne, *ns;
	struct sim_traffic *tr;
	struct sim_a2a_opts o = {SIM_A2A_DIRECT, 1, 0, 4096};
	struct sim_a2a_result re, rs;

	c.nodes_per_leaf = 2;
	c.oversubscription = 2;
	c.switch_lat_s = 0;
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_ECMP, &te), MOE_OK);
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_SPRAY, &ts), MOE_OK);
	ck_assert_int_eq(te->uplinks, 4);
	ck_assert_int_eq(sim_net_new(te, 0, &ne), MOE_OK);
	ck_assert_int_eq(sim_net_new(ts, 0, &ns), MOE_OK);
	ck_assert_int_eq(sim_traffic_new(32, 4, &tr), MOE_OK);
	for (int s = 0; s < 32; s++)
		for (int d = 0; d < 32; d++)
			sim_traffic_add(tr, s, d, 500);
	ck_assert_int_eq(sim_a2a_run(ne, te, tr, &o, NULL, &re), MOE_OK);
	ck_assert_int_eq(sim_a2a_run(ns, ts, tr, &o, NULL, &rs), MOE_OK);
	ck_assert_double_eq(re.network_bytes, rs.network_bytes);
	/* spray: the 8 GPUs of a leaf send to the 24 outside it through
	 * uplinks of 2 nodes x 4 NICs x 45 GB/s / 2, the bottleneck throughout */
	assert_rel(rs.completion_s, 5e-6 + 8.0 * 24 * 500 * 4096 / (2 * 4 * 45e9 / 2), 1e-9);
	ck_assert(re.completion_s > rs.completion_s * (1 + 1e-6));
	ck_assert_int_eq(te->links[re.bottleneck_link].kind, SIM_LINK_SWITCH);
	sim_traffic_free(tr);
	sim_net_free(ne);
	sim_net_free(ns);
	sim_topo_free(te);
	sim_topo_free(ts);
}
END_TEST

START_TEST(a2a_routed_traffic_conserves_bytes)
{
	/* 128 GPUs of dgx-h100 whose sources draw their tokens from Zipf
	 * weights (bench_net --gpus 128 --traffic zipf-sampled --seed 6):
	 * every flow its own size, 9,218 events, ties everywhere early on.
	 * Exact, each link's rate integral must equal its flows' bytes to
	 * rounding.  When a link froze at a share within the solver's
	 * tolerance of its old one while flows bottlenecked there were held,
	 * their rate (the link's share) moved unseen by their other links:
	 * 1.4e-9 here. */
	struct moe_cluster c;
	struct sim_topo *t;
	struct sim_traffic *tr;
	struct sim_net *n;
	struct sim_a2a_opts o = {SIM_A2A_DIRECT, 1, 0, 7168};
	struct sim_a2a_result r;
	double w[128], worst = 0;
	size_t perm[128];
	unsigned cnt[128];
	gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);

	ck_assert_int_eq(moe_cluster_load("dgx-h100:16", &c), MOE_OK);
	ck_assert_int_eq(sim_topo_new(&c, SIM_MULTIPATH_SPRAY, &t), MOE_OK);
	ck_assert_int_eq(t->gpus, 128);
	ck_assert_int_eq(sim_traffic_new(t->gpus, t->gpus_per_node, &tr), MOE_OK);
	ck_assert_int_eq(sim_net_new(t, 0, &n), MOE_OK);
	gsl_rng_set(rng, 6);
	for (int d = 0; d < 128; d++)
		perm[d] = (size_t)d;
	gsl_ran_shuffle(rng, perm, 128, sizeof *perm);
	for (int d = 0; d < 128; d++)
		w[d] = 1.0 / (1.0 + (double)perm[d]);
	for (int s = 0; s < 128; s++) {
		gsl_ran_multinomial(rng, 128, 4096 * 8, w, cnt);
		for (int d = 0; d < 128; d++)
			ck_assert_int_eq(sim_traffic_add(tr, s, d, cnt[d]), MOE_OK);
	}
	ck_assert_int_eq(sim_a2a_run(n, t, tr, &o, NULL, &r), MOE_OK);
	ck_assert_uint_gt(sim_net_stats(n)->events, 5000);
	for (int l = 0; l < t->nlinks; l++) {
		double b = sim_net_link_bytes(n, l);
		if (b > 0 && fabs(sim_net_link_rate_integral(n, l) - b) / b > worst)
			worst = fabs(sim_net_link_rate_integral(n, l) - b) / b;
	}
	ck_assert_msg(worst < 1e-10, "rate integral against bytes: %.2e", worst);
	gsl_rng_free(rng);
	sim_net_free(n);
	sim_traffic_free(tr);
	sim_topo_free(t);
}
END_TEST

START_TEST(a2a_hot_gpu_is_slowest)
{
	struct a2a_env e;
	struct sim_a2a_opts o = {SIM_A2A_DIRECT, 1, 0, 4096};
	struct sim_a2a_result r;
	double fin[16];
	int slowest = 0;

	a2a_env_init(&e, 4, 4);
	for (int s = 0; s < 16; s++)
		for (int d = 0; d < 16; d++)
			ck_assert_int_eq(sim_traffic_add(e.tr, s, d, d == 9 ? 3000 : 300), MOE_OK);
	for (int a = 0; a < 3; a++) {
		o.algo = (enum sim_a2a_algo)a;
		ck_assert_int_eq(sim_a2a_run(e.n, e.t, e.tr, &o, fin, &r), MOE_OK);
		slowest = 0;
		for (int g = 1; g < 16; g++)
			if (fin[g] > fin[slowest])
				slowest = g;
		ck_assert_msg(slowest == 9 || (a == SIM_A2A_HIERARCHICAL && fin[9] >= fin[slowest] * (1 - 1e-12)),
			      "%s: slowest GPU %d (%g s), GPU 9 %g s", sim_a2a_algo_name(o.algo),
			      slowest, fin[slowest], fin[9]);
		assert_rel(fin[9], r.completion_s, 1e-12);
	}
	a2a_env_free(&e);
}
END_TEST


/* ---- placement, compute, step ---- */

START_TEST(place_kinds)
{
	struct sim_placement *p;
	double loads[16];
	double rank_load[4] = {0}, contig[4] = {0};

	ck_assert_int_eq(sim_placement_new(MOE_PLACE_CONTIGUOUS, 16, 4, 2, 1, NULL, 0, &p), MOE_OK);
	ck_assert_int_eq(sim_placement_rank(p, 0, 3, 0), 0);
	ck_assert_int_eq(sim_placement_rank(p, 5, 3, 0), 1);
	ck_assert_int_eq(sim_placement_rank(p, 15, 0, 0), 3);
	sim_placement_free(p);
	ck_assert_int_eq(sim_placement_new(MOE_PLACE_ROUND_ROBIN, 16, 4, 2, 1, NULL, 0, &p), MOE_OK);
	ck_assert_int_eq(sim_placement_rank(p, 5, 3, 0), 1);
	ck_assert_int_eq(sim_placement_rank(p, 7, 3, 0), 3);
	sim_placement_free(p);
	/* balanced: experts 0..3 are hot; contiguous puts them all on rank 0 */
	for (int e = 0; e < 16; e++) {
		loads[e] = e < 4 ? 100 : 10;
		contig[e / 4] += loads[e];
	}
	ck_assert_int_eq(sim_placement_new(MOE_PLACE_BALANCED, 16, 4, 2, 1, loads, 2, &p), MOE_OK);
	for (int e = 0; e < 16; e++) {
		ck_assert_int_eq(p->nrep[e], e < 2 ? 2 : 1);
		for (int r = 0; r < p->nrep[e]; r++)
			rank_load[p->rep[e * SIM_PLACE_MAX_REPLICAS + r]] += loads[e] / p->nrep[e];
		if (p->nrep[e] == 2)
			ck_assert_int_ne(p->rep[e * 2], p->rep[e * 2 + 1]);
	}
	for (int r = 0; r < 4; r++)
		ck_assert(rank_load[r] <= 160 + 1e-9); /* total 520 over 4 ranks: 130 ideal */
	ck_assert_double_eq(contig[0], 400);
	/* a replicated expert prefers the replica in the token's node */
	for (int src = 0; src < 4; src++) {
		int r0 = p->rep[0], r1 = p->rep[1], r = sim_placement_rank(p, 0, src, src);
		ck_assert(r == r0 || r == r1);
		if (r0 / 2 == src / 2 || r1 / 2 == src / 2)
			ck_assert_int_eq(r / 2, src / 2);
	}
	sim_placement_free(p);
	/* node-limited: 2 groups of 8 experts on 2 nodes of 2 ranks */
	ck_assert_int_eq(sim_placement_new(MOE_PLACE_BALANCED, 16, 4, 2, 2, loads, 2, &p), MOE_OK);
	for (int e = 0; e < 16; e++)
		for (int r = 0; r < p->nrep[e]; r++)
			ck_assert_int_eq(p->rep[e * 2 + r] / 2, e / 8);
	sim_placement_free(p);
	/* node-limited with one GPU per node: a group's GPU cannot hold a
	 * second copy of its own expert, so the hot experts keep one replica
	 * (the greedy used to put both on the same GPU) */
	ck_assert_int_eq(sim_placement_new(MOE_PLACE_BALANCED, 16, 2, 1, 2, loads, 2, &p), MOE_OK);
	for (int e = 0; e < 16; e++) {
		ck_assert_int_eq(p->nrep[e], 1);
		ck_assert_int_eq(p->rep[e * 2], e / 8);
		ck_assert_int_eq(sim_placement_replica(p, e, 1 - e / 8, 3), 0);
	}
	sim_placement_free(p);
	ck_assert_int_eq(sim_placement_new(MOE_PLACE_CONTIGUOUS, 10, 4, 2, 1, NULL, 0, &p), MOE_EINVAL);
	ck_assert_int_eq(sim_placement_new(MOE_PLACE_BALANCED, 16, 4, 2, 1, NULL, 0, &p), MOE_EINVAL);
	ck_assert_int_eq(sim_placement_new(MOE_PLACE_BALANCED, 16, 4, 2, 1, loads, 17, &p), MOE_EINVAL);
	sim_placement_free(NULL);
}
END_TEST

START_TEST(place_split_follows_rank)
{
	struct sim_placement *p;
	double loads[8] = {900, 800, 10, 10, 10, 10, 10, 10}, part[SIM_PLACE_MAX_REPLICAS];

	/* one GPU per node: a source holds a replica or deals round both */
	ck_assert_int_eq(sim_placement_new(MOE_PLACE_BALANCED, 8, 4, 1, 1, loads, 2, &p), MOE_OK);
	for (int e = 0; e < 8; e++)
		for (int src = 0; src < 4; src++)
			for (int n = 0; n <= 7; n++) {
				double want[SIM_PLACE_MAX_REPLICAS] = {0};
				for (long tok = 0; tok < n; tok++) {
					int r = sim_placement_replica(p, e, src, tok);
					ck_assert_int_eq(p->rep[e * SIM_PLACE_MAX_REPLICAS + r],
							 sim_placement_rank(p, e, src, tok));
					want[r]++;
				}
				sim_placement_split(p, e, src, n, part);
				for (int r = 0; r < SIM_PLACE_MAX_REPLICAS; r++)
					ck_assert_double_eq(part[r], want[r]);
			}
	/* expert 0 from a rank without it: 7 = 4 + 3; 7.5 = 4 + 3.5 */
	for (int src = 0; src < 4; src++)
		if (p->rep[0] != src && p->rep[1] != src) {
			sim_placement_split(p, 0, src, 7.5, part);
			ck_assert_double_eq(part[0], 4);
			ck_assert_double_eq(part[1], 3.5);
		}
	sim_placement_free(p);
}
END_TEST

START_TEST(compute_roofline_worked_example)
{
	struct moe_model m;
	struct moe_cluster c = cluster(1, 8, 8, MOE_INTRA_NVSWITCH, MOE_FABRIC_RAIL);
	struct sim_compute k;
	double loads[2] = {512, 0};

	ck_assert_int_eq(moe_model_load("mixtral-8x7b", &m), MOE_OK);
	sim_compute_init(&k, &c, &m);
	ck_assert_double_eq(k.peak_flops, 989e12);
	assert_rel(sim_compute_eff(&k, 512), 0.56, 1e-12);
	assert_rel(sim_compute_ffn_s(&k, &m, m.expert_ffn, 512),
		   2.0 * 3 * 512 * 4096 * 14336 / (989e12 * 0.56), 1e-12);
	/* one token: bound by reading the weights (352 MB at 3.35 TB/s) */
	assert_rel(sim_compute_ffn_s(&k, &m, m.expert_ffn, 1),
		   (3.0 * 4096 * 14336 * 2 + (2 * 4096 + 3 * 14336) * 2) / 3.35e12, 1e-12);
	ck_assert_double_eq(sim_compute_ffn_s(&k, &m, m.expert_ffn, 0), 0);
	/* two experts, one idle: one expert plus 3 launches, slowed 2x */
	assert_rel(sim_compute_experts_s(&k, &m, loads, 2, 2),
		   2 * sim_compute_ffn_s(&k, &m, m.expert_ffn, 512) + 3 * 5e-6, 1e-12);
	ck_assert(sim_compute_other_s(&k, &m, 512, 0, 1) > 0);
}
END_TEST

struct step_env {
	struct moe_model m;
	struct moe_cluster c;
	struct moe_plan p;
	struct sim_topo *t;
	struct sim_placement *pl;
	struct sim_step *s;
	int *ex;
};

/* Mixtral (8 experts, top-2) on nodes x G GPUs (EP = all of them), T
 * tokens per GPU, direct all-to-all; placement pl (taken; NULL:
 * contiguous). */
static void step_env_shape(struct step_env *e, enum sim_step_mode mode, double cf, int dedup,
			   int nodes, int G, int T, struct sim_placement *pl)
{
	struct sim_step_opts o = {SIM_A2A_DIRECT, dedup, mode, cf, 0};

	ck_assert_int_eq(moe_model_load("mixtral-8x7b", &e->m), MOE_OK);
	e->c = cluster(nodes, G, G, MOE_INTRA_NVSWITCH, MOE_FABRIC_NONBLOCKING);
	moe_plan_default(&e->p, &e->m, &e->c);
	e->p.tokens_per_gpu = T;
	ck_assert_int_eq(e->p.ep, nodes * G);
	ck_assert_int_eq(sim_topo_new(&e->c, SIM_MULTIPATH_SPRAY, &e->t), MOE_OK);
	if (pl == NULL)
		ck_assert_int_eq(sim_placement_new(MOE_PLACE_CONTIGUOUS, 8, nodes * G, G, 1, NULL, 0, &pl),
				 MOE_OK);
	e->pl = pl;
	ck_assert_int_eq(sim_step_new(&e->m, &e->c, &e->p, e->t, e->pl, &o, &e->s), MOE_OK);
	e->ex = malloc((size_t)nodes * G * T * 2 * sizeof *e->ex);
}

static void step_env_init(struct step_env *e, enum sim_step_mode mode, double cf)
{
	step_env_shape(e, mode, cf, 1, 2, 4, 64, NULL);
}

static void step_env_free(struct step_env *e)
{
	free(e->ex);
	sim_step_free(e->s);
	sim_placement_free(e->pl);
	sim_topo_free(e->t);
}

START_TEST(step_hot_gpu_and_tokens)
{
	struct step_env e;
	struct sim_layer_out f;
	double et[16], ed[16];
	int hot = 0;

	step_env_init(&e, SIM_STEP_EVENTS, 0);
	/* every token's first expert is 5 (GPU 5), second spread round-robin */
	for (int i = 0; i < 8 * 64; i++) {
		e.ex[2 * i] = 5;
		e.ex[2 * i + 1] = i % 8 == 5 ? 6 : i % 8;
	}
	ck_assert_msg(sim_step_layer(e.s, e.ex, 2, et, ed, &f, NULL) == MOE_OK, "%s", moe_errmsg());
	ck_assert_double_eq(f.tokens, 8 * 64 * 2);   /* conserved: none dropped */
	ck_assert_double_eq(f.dropped, 0);
	ck_assert_double_eq(et[5 * 2], 8 * 64);
	for (int g = 1; g < 8; g++)
		if (e.s->busy_s[g] > e.s->busy_s[hot])
			hot = g;
	ck_assert_int_eq(hot, 5);
	ck_assert(f.imbalance > 3);
	ck_assert(f.total_s > f.dispatch_s + f.compute_s);
	assert_rel(f.total_s, e.s->elapsed_s, 1e-15);
	step_env_free(&e);
	/* the same with a capacity factor of 1: expert 5 takes 128 of 512 */
	step_env_init(&e, SIM_STEP_EVENTS, 1.0);
	for (int i = 0; i < 8 * 64; i++) {
		e.ex[2 * i] = 5;
		e.ex[2 * i + 1] = i % 8 == 5 ? 6 : i % 8;
	}
	ck_assert_int_eq(sim_step_layer(e.s, e.ex, 2, et, ed, &f, NULL), MOE_OK);
	ck_assert_double_eq(et[10], 128);
	ck_assert_double_eq(ed[10], 512 - 128);
	ck_assert_double_eq(f.tokens + f.dropped, 8 * 64 * 2);
	e.ex[3] = 8;
	ck_assert_int_eq(sim_step_layer(e.s, e.ex, 2, et, ed, &f, NULL), MOE_EINVAL);
	step_env_free(&e);
}
END_TEST

START_TEST(step_analytic_matches_events_when_uniform)
{
	struct step_env a, b;
	struct sim_layer_out fa, fb;

	step_env_init(&a, SIM_STEP_EVENTS, 0);
	step_env_init(&b, SIM_STEP_ANALYTIC, 0);
	/* perfectly uniform: token i of GPU g picks experts (g + i) and (g + i + 4) mod 8 */
	for (int g = 0; g < 8; g++)
		for (int i = 0; i < 64; i++) {
			a.ex[2 * (g * 64 + i)] = (g + i) % 8;
			a.ex[2 * (g * 64 + i) + 1] = (g + i + 4) % 8;
		}
	memcpy(b.ex, a.ex, 8 * 64 * 2 * sizeof *a.ex);
	ck_assert_int_eq(sim_step_layer(a.s, a.ex, 2, NULL, NULL, &fa, NULL), MOE_OK);
	ck_assert_int_eq(sim_step_layer(b.s, b.ex, 2, NULL, NULL, &fb, NULL), MOE_OK);
	assert_rel(fb.compute_s, fa.compute_s, 1e-12);
	/* analytic: bottleneck bytes / bw + latency; events: NIC flows start
	 * after 5.5 us but NVSwitch ones after 3 us, both bounded the same way */
	assert_rel(fb.dispatch_s, fa.dispatch_s, 1e-6);
	assert_rel(fb.total_s, fa.total_s, 1e-6);
	ck_assert_double_eq(fa.network_bytes, fb.network_bytes);
	step_env_free(&a);
	step_env_free(&b);
}
END_TEST

START_TEST(step_overlap_is_the_task_graph)
{
	struct step_env e;
	struct sim_layer_out f, b;

	/* two overlapped micro-batches, training: forward and backward layer
	 * times are the two-stream schedule of their halves, to the bit */
	step_env_init(&e, SIM_STEP_EVENTS, 0);
	e.p.micro_batches = 2;
	e.p.overlap = 1;
	e.p.phase = MOE_PHASE_TRAINING;
	for (int i = 0; i < 8 * 64; i++) {
		e.ex[2 * i] = (i * 5) % 8;
		e.ex[2 * i + 1] = i % 3 == 0 ? 7 : (i * 5 + 1) % 8;
	}
	ck_assert_msg(sim_step_layer(e.s, e.ex, 2, NULL, NULL, &f, &b) == MOE_OK, "%s", moe_errmsg());
	ck_assert(f.dispatch_s > 0 && f.compute_s > 0 && f.other_s > 0);
	ck_assert_double_eq(f.total_s, overlap_formula(f.other_s / 2, f.dispatch_s / 2,
						       f.compute_s / 2, f.combine_s / 2));
	ck_assert_double_eq(b.total_s, overlap_formula(b.other_s / 2, b.dispatch_s / 2,
						       b.compute_s / 2, b.combine_s / 2));
	/* overlap hides something, but never more than the shorter stream */
	ck_assert(f.total_s < f.other_s + f.dispatch_s + f.compute_s + f.combine_s);
	ck_assert(f.total_s >= fmax(f.other_s + f.compute_s, f.dispatch_s + f.combine_s));
	assert_rel(e.s->elapsed_s, f.total_s + b.total_s, 1e-15);
	step_env_free(&e);
}
END_TEST

/* counts[g][e] of a routing ex (G x T x k ids) */
static void count_routes(const int *ex, int G, int T, int k, int E, double *counts)
{
	memset(counts, 0, (size_t)G * E * sizeof *counts);
	for (int g = 0; g < G; g++)
		for (int i = 0; i < T * k; i++)
			counts[g * E + ex[g * T * k + i]]++;
}

/* The token and the count path on the same routing and a fresh step each
 * must agree exactly: same traffic matrices, loads, drops and times. */
static void assert_same_layer(const struct sim_layer_out *a, const struct sim_layer_out *b)
{
	ck_assert_double_eq(a->dispatch_bytes, b->dispatch_bytes);
	ck_assert_double_eq(a->combine_bytes, b->combine_bytes);
	ck_assert_double_eq(a->network_bytes, b->network_bytes);
	ck_assert_double_eq(a->dispatch_s, b->dispatch_s);
	ck_assert_double_eq(a->compute_s, b->compute_s);
	ck_assert_double_eq(a->combine_s, b->combine_s);
	ck_assert_double_eq(a->total_s, b->total_s);
	ck_assert_double_eq(a->tokens, b->tokens);
	ck_assert_double_eq(a->dropped, b->dropped);
	ck_assert_double_eq(a->imbalance, b->imbalance);
}

START_TEST(step_counts_equal_tokens_without_shared_gpus)
{
	struct step_env a, b;
	struct sim_layer_out fa, fb;
	double counts[8 * 8], eta[16], etb[16], eda[16], edb[16], sum = 0;

	/* one expert per GPU (2 nodes x 4): a token's two experts are always
	 * on two GPUs, so de-duplication saves nothing.  Token i of GPU g:
	 * experts g+1 and g+2 (i even) or g+3 (i odd), mod 8: never on g */
	step_env_init(&a, SIM_STEP_EVENTS, 0);
	step_env_init(&b, SIM_STEP_EVENTS, 0);
	for (int g = 0; g < 8; g++)
		for (int i = 0; i < 64; i++) {
			a.ex[2 * (g * 64 + i)] = (g + 1) % 8;
			a.ex[2 * (g * 64 + i) + 1] = (g + 2 + i % 2) % 8;
		}
	count_routes(a.ex, 8, 64, 2, 8, counts);
	ck_assert_int_eq(sim_step_layer(a.s, a.ex, 2, eta, eda, &fa, NULL), MOE_OK);
	ck_assert_msg(sim_step_layer_counts(b.s, counts, 2, etb, edb, &fb, NULL) == MOE_OK, "%s",
		      moe_errmsg());
	assert_same_layer(&fa, &fb);
	/* by hand: 8 x 64 x 2 = 1024 copies of 4096 x 2 bytes each way */
	ck_assert_double_eq(fb.dispatch_bytes, 1024.0 * 4096 * 2);
	ck_assert_double_eq(fb.combine_bytes, 1024.0 * 4096 * 2);
	/* across the two nodes: g+1 from g = 3, 7 (128 copies); g+2 from
	 * g = 2, 3, 6, 7 (4 x 32); g+3 from g = 1, 2, 3, 5, 6, 7 (6 x 32):
	 * 448 copies, dispatch and combine */
	ck_assert_double_eq(fb.network_bytes, 2 * 448.0 * 4096 * 2);
	ck_assert_double_eq(fb.tokens, 1024);
	ck_assert_double_eq(fb.imbalance, 1); /* 128 per expert */
	for (int i = 0; i < 16; i++) {
		ck_assert_double_eq(eta[i], etb[i]);
		ck_assert_double_eq(edb[i], 0);
		sum += etb[i];
	}
	ck_assert_double_eq(etb[3 * 2], 128);
	ck_assert_double_eq(sum, 1024);
	for (int g = 0; g < 8; g++) {
		ck_assert_double_eq(a.s->sent[g], b.s->sent[g]);
		ck_assert_double_eq(a.s->busy_s[g], b.s->busy_s[g]);
	}
	step_env_free(&a);
	step_env_free(&b);
}
END_TEST

START_TEST(step_counts_capacity_first_come_by_gpu)
{
	struct step_env a, b;
	struct sim_layer_out fa, fb, ba, bb;
	double counts[8 * 8], eta[16], etb[16], eda[16], edb[16], sum = 0;

	/* every token's first expert is 5; capacity 1 x 8 x 64 x 2 / 8 = 128:
	 * expert 5 keeps GPUs 0 and 1's 64 each and drops the other 384 */
	step_env_init(&a, SIM_STEP_EVENTS, 1.0);
	step_env_init(&b, SIM_STEP_EVENTS, 1.0);
	a.p.phase = b.p.phase = MOE_PHASE_TRAINING;
	for (int i = 0; i < 8 * 64; i++) {
		/* the second expert, by token order, must not matter to counts */
		a.ex[2 * i] = i % 3 == 0 ? 5 : i % 8 == 5 ? 6 : i % 8;
		a.ex[2 * i + 1] = i % 3 == 0 ? (i % 8 == 5 ? 6 : i % 8) : 5;
	}
	count_routes(a.ex, 8, 64, 2, 8, counts);
	for (int i = 0; i < 64; i++)
		sum += counts[i];
	ck_assert_double_eq(sum, 8 * 64 * 2);
	ck_assert_int_eq(sim_step_layer(a.s, a.ex, 2, eta, eda, &fa, &ba), MOE_OK);
	ck_assert_int_eq(sim_step_layer_counts(b.s, counts, 2, etb, edb, &fb, &bb), MOE_OK);
	assert_same_layer(&fa, &fb);
	assert_same_layer(&ba, &bb);
	ck_assert_double_eq(etb[5 * 2], 128);
	ck_assert_double_eq(edb[5 * 2], 512 - 128);
	ck_assert_double_eq(fb.dropped, 384);
	/* conservation: every count is kept or dropped */
	ck_assert_double_eq(fb.tokens + fb.dropped, sum);
	for (int i = 0; i < 16; i++) {
		ck_assert_double_eq(eta[i], etb[i]);
		ck_assert_double_eq(eda[i], edb[i]);
	}
	/* GPU 5 (expert 5) receives only what it kept: GPUs 0 and 1's 128
	 * copies (dropped ones move no bytes), plus in the combine the results
	 * of its own 64 tokens' other experts (all on other GPUs) */
	ck_assert_double_eq(b.s->recv[5], (128 + 64) * 4096.0 * 2);
	step_env_free(&a);
	step_env_free(&b);
}
END_TEST

START_TEST(step_counts_overstate_shared_gpus)
{
	struct step_env a, b, c;
	struct sim_layer_out fa, fb, fc;
	double counts[4 * 8];

	/* 4 GPUs of one node, experts 2h and 2h+1 on GPU h.  Token i of GPU g
	 * (4 tokens): i even: experts 2h, 2h+1 with h = g+1 mod 4 (one GPU:
	 * one copy de-duplicated); i odd: 2h and 2(g+2 mod 4) (two GPUs) */
	step_env_shape(&a, SIM_STEP_EVENTS, 0, 1, 1, 4, 4, NULL);
	step_env_shape(&b, SIM_STEP_EVENTS, 0, 1, 1, 4, 4, NULL);
	step_env_shape(&c, SIM_STEP_EVENTS, 0, 0, 1, 4, 4, NULL);
	for (int g = 0; g < 4; g++)
		for (int i = 0; i < 4; i++) {
			int h = (g + 1) % 4, *x = &a.ex[2 * (g * 4 + i)];
			x[0] = 2 * h;
			x[1] = i % 2 == 0 ? 2 * h + 1 : 2 * ((g + 2) % 4);
		}
	memcpy(c.ex, a.ex, 4 * 4 * 2 * sizeof *a.ex);
	count_routes(a.ex, 4, 4, 2, 8, counts);
	ck_assert_int_eq(sim_step_layer(a.s, a.ex, 2, NULL, NULL, &fa, NULL), MOE_OK);
	ck_assert_int_eq(sim_step_layer_counts(b.s, counts, 2, NULL, NULL, &fb, NULL), MOE_OK);
	ck_assert_int_eq(sim_step_layer(c.s, c.ex, 2, NULL, NULL, &fc, NULL), MOE_OK);
	/* per GPU: tokens 6 copies (2 + 2 x 2), counts 8 assignments */
	ck_assert_double_eq(fa.dispatch_bytes, 4 * 6 * 4096.0 * 2);
	ck_assert_double_eq(fb.dispatch_bytes, 4 * 8 * 4096.0 * 2);
	ck_assert(fb.dispatch_bytes > fa.dispatch_bytes);
	ck_assert(fb.dispatch_s > fa.dispatch_s);
	/* the count path equals the token path without de-duplication */
	ck_assert_double_eq(fb.dispatch_bytes, fc.dispatch_bytes);
	ck_assert_double_eq(fb.dispatch_s, fc.dispatch_s);
	ck_assert_double_eq(fb.total_s, fc.total_s);
	/* the experts compute the same assignments either way */
	ck_assert_double_eq(fb.compute_s, fa.compute_s);
	ck_assert_double_eq(fb.tokens, fa.tokens);
	ck_assert_double_eq(fb.tokens, 32);
	step_env_free(&a);
	step_env_free(&b);
	step_env_free(&c);
}
END_TEST

START_TEST(step_counts_replicas)
{
	struct sim_placement *pa, *pb;
	struct step_env a, b;
	struct sim_layer_out fa, fb;
	double loads[8] = {10, 10, 10, 10, 10, 1000, 10, 10}, counts[8 * 8], eta[16], etb[16];

	/* balanced: expert 5 gets a second replica (slots: 2 per GPU).  Every
	 * token's first expert is 5, so a GPU without a replica in its node
	 * deals tokens 0..63 round the two, as the count path splits 64; the
	 * second expert is never 5 and has one replica.  No de-duplication,
	 * so the traffic matches even where both experts share a GPU. */
	ck_assert_int_eq(sim_placement_new(MOE_PLACE_BALANCED, 8, 8, 4, 1, loads, 1, &pa), MOE_OK);
	ck_assert_int_eq(sim_placement_new(MOE_PLACE_BALANCED, 8, 8, 4, 1, loads, 1, &pb), MOE_OK);
	ck_assert_int_eq(pa->nrep[5], 2);
	step_env_shape(&a, SIM_STEP_EVENTS, 0, 0, 2, 4, 64, pa);
	step_env_shape(&b, SIM_STEP_EVENTS, 0, 0, 2, 4, 64, pb);
	for (int i = 0; i < 8 * 64; i++) {
		a.ex[2 * i] = 5;
		a.ex[2 * i + 1] = i % 8 == 5 ? 6 : i % 8;
	}
	count_routes(a.ex, 8, 64, 2, 8, counts);
	ck_assert_int_eq(sim_step_layer(a.s, a.ex, 2, eta, NULL, &fa, NULL), MOE_OK);
	ck_assert_int_eq(sim_step_layer_counts(b.s, counts, 2, etb, NULL, &fb, NULL), MOE_OK);
	assert_same_layer(&fa, &fb);
	for (int i = 0; i < 16; i++)
		ck_assert_double_eq(eta[i], etb[i]);
	ck_assert_double_eq(etb[10] + etb[11], 8 * 64);
	ck_assert(etb[10] > 0 && etb[11] > 0);
	step_env_free(&a);
	step_env_free(&b);
}
END_TEST

START_TEST(step_counts_errors)
{
	struct step_env e;
	struct sim_layer_out f;
	double counts[8 * 8] = {0};

	step_env_init(&e, SIM_STEP_ANALYTIC, 0);
	ck_assert_int_eq(sim_step_layer_counts(e.s, counts, 0, NULL, NULL, &f, NULL), MOE_EINVAL);
	ck_assert_int_eq(sim_step_layer_counts(e.s, counts, 2, NULL, NULL, &f, NULL), MOE_OK);
	ck_assert_double_eq(f.tokens, 0);
	ck_assert_double_eq(f.dispatch_bytes, 0);
	counts[3 * 8 + 6] = -1;
	ck_assert_int_eq(sim_step_layer_counts(e.s, counts, 2, NULL, NULL, &f, NULL), MOE_EINVAL);
	ck_assert_msg(strstr(moe_errmsg(), "GPU 3, expert 6") != NULL, "%s", moe_errmsg());
	counts[3 * 8 + 6] = NAN;
	ck_assert_int_eq(sim_step_layer_counts(e.s, counts, 2, NULL, NULL, &f, NULL), MOE_EINVAL);
	counts[3 * 8 + 6] = INFINITY;
	ck_assert_int_eq(sim_step_layer_counts(e.s, counts, 2, NULL, NULL, &f, NULL), MOE_EINVAL);
	step_env_free(&e);
}
END_TEST

static Suite *sim_suite(void)
{
	Suite *s = suite_create("sim");
	TCase *core = tcase_create("core");
	TCase *errors = tcase_create("errors");

	tcase_add_test(core, queue_orders_by_time_then_insertion);
	tcase_add_test(core, queue_random_against_sort);
	tcase_add_test(core, queue_interleaved_against_scan);
	tcase_add_test(core, time_tolerance);
	tcase_add_test(core, tasks_two_streams_worked_example);
	tcase_add_test(core, tasks_overlap_equals_max_plus);
	tcase_add_test(core, tasks_diamond);
	tcase_add_test(core, tasks_fifo_by_order_added);
	tcase_add_test(core, tasks_capacity_two);
	tcase_add_test(core, tasks_duration_from_callback);
	tcase_add_test(core, tasks_random_dag_against_list_scheduler);
	tcase_add_test(core, tasks_deterministic_and_reusable);
	tcase_add_test(core, topo_routes_rail);
	tcase_add_test(core, topo_fat_tree_oversubscription_and_spray);
	tcase_add_test(core, net_one_flow);
	tcase_add_test(core, net_n_flows_one_link);
	tcase_add_test(core, net_uniform_all_to_all);
	tcase_add_loop_test(core, net_maxmin_random_against_simple_solver, 0, 2);
	tcase_add_test(core, net_worked_example);
	tcase_add_test(core, net_callbacks_chain_flows_deterministically);
	tcase_add_test(core, a2a_dedup_counts);
	tcase_add_test(core, a2a_batch_tokens_equal_one_by_one);
	tcase_add_test(core, a2a_reset_network_equals_fresh);
	tcase_add_test(core, a2a_two_stage_send_fewer_network_bytes);
	tcase_add_test(core, a2a_uniform_closed_form_and_determinism);
	tcase_add_test(core, a2a_hot_gpu_is_slowest);
	tcase_add_test(core, a2a_routed_traffic_conserves_bytes);
	tcase_add_test(core, net_coalesce_trades_events_for_bounded_error);
	tcase_add_test(core, net_coalesce_window_ends_at_mean);
	tcase_add_test(core, net_ties_do_not_ripple);
	tcase_add_test(core, net_dominated_links_left_out);
	tcase_add_test(core, a2a_coalesce_staged_algorithms);
	tcase_add_test(core, a2a_ecmp_collisions_cost_time);
	tcase_add_test(core, place_kinds);
	tcase_add_test(core, place_split_follows_rank);
	tcase_add_test(core, compute_roofline_worked_example);
	tcase_add_test(core, step_hot_gpu_and_tokens);
	tcase_add_test(core, step_analytic_matches_events_when_uniform);
	tcase_add_test(core, step_overlap_is_the_task_graph);
	tcase_add_test(core, step_counts_equal_tokens_without_shared_gpus);
	tcase_add_test(core, step_counts_capacity_first_come_by_gpu);
	tcase_add_test(core, step_counts_overstate_shared_gpus);
	tcase_add_test(core, step_counts_replicas);
	suite_add_tcase(s, core);
	tcase_add_test(errors, topo_errors_and_slowdowns);
	tcase_add_test(errors, step_counts_errors);
	tcase_add_test(errors, tasks_errors);
	suite_add_tcase(s, errors);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sim_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
