/* sim/engine.h: the simulator's clock and its event queue.
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
 * The queue.  A binary min-heap of events ordered by (time, insertion
 * sequence): two events at exactly the same time come out in the order
 * they were pushed, so a run is deterministic.  Events are small values
 * (time, kind, one 64-bit datum) stored in the heap's own array, which is
 * the pool: it grows by doubling only when full (reserve it up front with
 * sim_queue_new's reserve) and never shrinks, so pushing and popping on the
 * hot path allocate nothing.
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

/* Events waiting. */
size_t sim_queue_len(const struct sim_queue *q);

/* Events pushed since the queue was created (for events-per-second). */
uint64_t sim_queue_pushed(const struct sim_queue *q);

/* Drops every event (keeps the pool). */
void sim_queue_clear(struct sim_queue *q);

#endif
