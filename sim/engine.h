/* sim/engine.h: the simulator's clock, its event queue, and a task graph
 * (tasks, resources and dependencies) scheduled on that queue.
 *
 * Time.  Simulated time is a double in seconds.  Doubles carry 15-16
 * significant digits, so two times that should be equal (the same bytes
 * over the same rate, reached along different sums) may differ in the last
 * bits.  Times are therefore never compared with ==: sim_time_same() holds
 * two times equal when they differ by at most
 *
 *     SIM_TIME_EPS_REL * max(|a|, |b|) + SIM_TIME_EPS_ABS
 *
 * (1e-12 relative, 1e-15 s absolute).  For a 10 ms all-to-all that is 10 fs,
 * far below anything the model claims to resolve, and it is what lets
 * flows that finish "together" be processed as one event (sim/net.h).
 *
 * The queue.  Events come out ordered by (time, insertion sequence): two
 * events at exactly the same time come out in the order they were pushed,
 * so a run is deterministic.  Events are small values (time, kind, one
 * 64-bit datum) held in a binary min-heap and, beside it, a few FIFO runs
 * of events that share one exact time (a model often pushes millions of
 * events at a handful of times: every flow of an all-to-all is ready after
 * one of a few latencies; in a run such an event costs O(1) instead of
 * O(log n)).  The arrays are the pool: they grow by doubling only when full
 * (reserve the heap up front with sim_queue_new's reserve) and never
 * shrink, so pushing and popping on the hot path allocate nothing.
 *
 *     struct sim_queue *q;
 *     struct sim_event ev;
 *     sim_queue_new(1024, &q);
 *     sim_queue_push(q, 2e-6, MY_ARRIVAL, flow_id);
 *     while (sim_queue_pop(q, &ev))
 *             handle(ev.t_s, ev.kind, ev.data);
 *     sim_queue_free(q);
 *
 * A queue is used by one thread at a time.
 *
 * Tasks.  Most of a layer is not flows but work that waits: a GPU's
 * experts wait for their tokens, the combine waits for the experts, and
 * two micro-batches take turns on one compute stream.  Writing each such
 * schedule as nested max/plus formulas works for one shape and has to be
 * re-derived for the next; a task graph states the shape and lets the
 * engine derive the times.  struct sim_tasks holds
 *
 *   resources  each with a capacity N >= 1 (a stream or a GPU: 1): at most
 *              N of its tasks run at once;
 *   tasks      each with a duration in seconds, fixed when added or asked
 *              of a callback when the task starts (so a network phase that
 *              sim/net simulates from that moment can be a task), and at
 *              most one resource it holds from its start to its end;
 *   edges      "task b starts after task a ends".
 *
 * The rule, list scheduling: a task starts at the first instant when all
 * its predecessors have ended and its resource has a free slot; when a
 * resource frees and several of its tasks are ready, the one added first
 * (lowest id) goes first, however long the others have waited.  A task
 * without a resource starts as soon as it is ready.  Events are task ends
 * on a sim_queue; at an instant every end already due is processed before
 * any task starts, and a task of duration 0 ends at that instant in a
 * later round (after the tasks started with it).  The engine does no
 * arithmetic of its own beyond end = start + duration, and a start is
 * exactly 0 or the end of some task, so the times are the ones a
 * max/plus formula of the same schedule gives, to the bit; "the same
 * instant" therefore means the same double, not sim_time_same().
 *
 * Worked example: two micro-batches A and B on a compute stream and a
 * communication stream (sim/step.h), other work o = 1, dispatch d = 3,
 * experts e = 2, combine c = 3 (units of time), added in the order
 * other A, other B, experts A, experts B, dispatch A, dispatch B,
 * combine A, combine B, with the edges other X -> dispatch X ->
 * experts X -> combine X:
 *
 *     compute  other A 0-1, other B 1-2, experts A 4-6, experts B 7-9
 *     comms    dispatch A 1-4, dispatch B 4-7, combine A 7-10,
 *              combine B 10-13
 *
 * experts A waits for its tokens (4), not for the stream (free at 2);
 * combine A is ready at 6 but the stream is busy with dispatch B until 7.
 * The makespan is 13, against 2 x (1 + 3 + 2 + 3) = 18 without overlap.
 *
 *     struct sim_tasks *g;
 *     int cs, ns, oa, da;
 *     double t;
 *     sim_tasks_new(16, &g);
 *     sim_tasks_resource(g, 1, &cs);
 *     sim_tasks_resource(g, 1, &ns);
 *     sim_tasks_add(g, cs, 1.0, &oa);
 *     sim_tasks_add(g, ns, 3.0, &da);
 *     sim_tasks_after(g, da, oa);
 *     sim_tasks_run(g, &t);             (t = 4; da started at 1)
 *     sim_tasks_free(g);
 *
 * Cost: a run is O((tasks + edges) log tasks); the graph's arrays and the
 * run's scratch grow by doubling and are kept, so building the same graph
 * again (sim_tasks_clear) or re-running it with new durations
 * (sim_tasks_set_duration) allocates nothing once warm, and nothing is
 * allocated per event.  A graph is used by one thread at a time.
 */
#ifndef MOEKIT_SIM_ENGINE_H
#define MOEKIT_SIM_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include "moe/error.h"

#define SIM_TIME_EPS_REL 1e-12
#define SIM_TIME_EPS_ABS 1e-15

/* 1 when times a and b (seconds) are equal within the tolerance above. */
int sim_time_same(double a, double b);

/* An event: when (seconds), what (a kind the model defines), and one datum
 * (an index, or an index and a version packed by the model). */
struct sim_event {
	double t_s;
	uint64_t seq;  /* insertion sequence: the tie-breaker */
	int kind;
	int64_t data;
};

struct sim_queue;

/* Creates an empty queue with room for reserve events before it grows.
 * Returns MOE_OK and the queue in *out (free with sim_queue_free), or
 * MOE_ENOMEM. */
enum moe_status sim_queue_new(size_t reserve, struct sim_queue **out);

/* Frees the queue; NULL is a no-op. */
void sim_queue_free(struct sim_queue *q);

/* Adds an event at t_s seconds.  Returns MOE_OK; MOE_EINVAL when t_s is
 * not finite; MOE_ENOMEM when the pool had to grow and could not (the
 * queue is unchanged).  O(log n). */
enum moe_status sim_queue_push(struct sim_queue *q, double t_s, int kind, int64_t data);

/* Removes the earliest event (ties: the first pushed) into *out and returns
 * 1, or returns 0 when the queue is empty.  O(log n). */
int sim_queue_pop(struct sim_queue *q, struct sim_event *out);

/* Copies the earliest event into *out without removing it; 0 when empty. */
int sim_queue_peek(const struct sim_queue *q, struct sim_event *out);

/* Removes the earliest event into *out and returns 1 when it is due at or
 * before t_s; returns 0 (the queue unchanged) otherwise or when empty.  One
 * lookup of the earliest event, where peek and pop would make two. */
int sim_queue_pop_until(struct sim_queue *q, double t_s, struct sim_event *out);

/* Events waiting. */
size_t sim_queue_len(const struct sim_queue *q);

/* Events pushed since the queue was created (for events-per-second). */
uint64_t sim_queue_pushed(const struct sim_queue *q);

/* Drops every event (keeps the pool). */
void sim_queue_clear(struct sim_queue *q);

/* ---- tasks, resources and dependencies (see the top of this file) ---- */

/* The resource of a task that holds none. */
#define SIM_TASK_NO_RESOURCE (-1)

struct sim_tasks;

/* Creates an empty graph with room for reserve tasks before it grows.
 * Returns MOE_OK and the graph in *out (free with sim_tasks_free), or
 * MOE_ENOMEM. */
enum moe_status sim_tasks_new(size_t reserve, struct sim_tasks **out);

/* Frees the graph; NULL is a no-op. */
void sim_tasks_free(struct sim_tasks *g);

/* Drops every task, edge and resource (keeps the memory); ids restart
 * at 0. */
void sim_tasks_clear(struct sim_tasks *g);

/* Adds a resource of which at most capacity tasks run at once.  Ids are
 * 0, 1, 2... in order of addition; *id (may be NULL) receives it.  Returns
 * MOE_OK; MOE_EINVAL for a capacity below 1; MOE_ERANGE past INT_MAX - 1
 * resources; MOE_ENOMEM (graph unchanged). */
enum moe_status sim_tasks_resource(struct sim_tasks *g, int capacity, int *id);

/* Adds a task of dur_s seconds that holds resource (an id from
 * sim_tasks_resource, or SIM_TASK_NO_RESOURCE) while it runs.  Task ids
 * are 0, 1, 2... in order of addition, which is also the order ready tasks
 * take a resource; *id (may be NULL) receives it.  Returns MOE_OK;
 * MOE_EINVAL for a duration that is negative or not finite, or a resource
 * that does not exist; MOE_ERANGE past INT_MAX - 1 tasks; MOE_ENOMEM
 * (graph unchanged). */
enum moe_status sim_tasks_add(struct sim_tasks *g, int resource, double dur_s, int *id);

/* As sim_tasks_add, but the duration is asked when the task starts:
 * dur(arg, task, start_s, &dur_s) must set dur_s (seconds, finite, >= 0)
 * and return MOE_OK, or return an error (with its message recorded) that
 * stops the run and is returned by sim_tasks_run.  arg is borrowed and
 * passed through. */
enum moe_status sim_tasks_add_fn(struct sim_tasks *g, int resource,
				 enum moe_status (*dur)(void *arg, int task, double start_s,
							double *dur_s),
				 void *arg, int *id);

/* Sets a task's duration to dur_s seconds for the next runs (a callback
 * task becomes a fixed one).  Returns MOE_OK; MOE_EINVAL for a task that
 * does not exist or a duration that is negative or not finite. */
enum moe_status sim_tasks_set_duration(struct sim_tasks *g, int task, double dur_s);

/* Makes task start only after pred has ended.  An edge added twice is
 * harmless.  Returns MOE_OK; MOE_EINVAL when either task does not exist
 * or task == pred (a longer cycle is found by sim_tasks_run); MOE_ENOMEM
 * (graph unchanged). */
enum moe_status sim_tasks_after(struct sim_tasks *g, int task, int pred);

/* Schedules every task from time 0 (the rule at the top of this file).
 * Returns MOE_OK and in *makespan_s (may be NULL) the last end (0 for an
 * empty graph); each task's times are then read with sim_tasks_start and
 * sim_tasks_end.  MOE_EINVAL when the edges hold a cycle (the message names
 * its tasks) or a duration callback gave a negative or non-finite
 * duration; a callback's own error; MOE_ENOMEM.  After an error the times
 * are undefined; the graph is unchanged and may be run again. */
enum moe_status sim_tasks_run(struct sim_tasks *g, double *makespan_s);

/* A task's start and end (seconds) in the last successful run; NAN before
 * any run, for an id that does not exist, or for a task added since. */
double sim_tasks_start(const struct sim_tasks *g, int task);
double sim_tasks_end(const struct sim_tasks *g, int task);

/* Tasks in the graph. */
int sim_tasks_count(const struct sim_tasks *g);

#endif
