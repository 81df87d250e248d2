/* tests/check_sim.c: the simulator: event queue, topology, flow-level
 * network (closed forms, conservation, max-min fairness against a simple
 * independent solver), collectives, placement, compute and step models. */
#include "config.h"
#include "moe/error.h"
#include "moe/model.h"
#include "sim/engine.h"

#include <check.h>
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

START_TEST(time_tolerance)
{
	ck_assert(sim_time_same(1e-3, 1e-3 * (1 + 1e-12)));
	ck_assert(!sim_time_same(1e-3, 1e-3 * (1 + 1e-6)));
	ck_assert(sim_time_same(0, 1e-16));
	ck_assert(!sim_time_same(0, 1e-12));
}
END_TEST

static Suite *sim_suite(void)
{
	Suite *s = suite_create("sim");
	TCase *core = tcase_create("core");

	tcase_add_test(core, queue_orders_by_time_then_insertion);
	tcase_add_test(core, queue_random_against_sort);
	tcase_add_test(core, time_tolerance);
	suite_add_tcase(s, core);
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
