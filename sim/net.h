/* sim/net.h: the flow-level network.  A flow moves a number of bytes over
 * a path of directed links (sim/topo.h); flows that are active at the same
 * time share every link max-min fairly.
 *
 * Max-min fairness.  A rate allocation is max-min fair when no flow's rate
 * can grow without shrinking the rate of a flow that has an equal or
 * smaller rate.  Progressive filling computes it: raise every flow's rate
 * together; when a link fills up, freeze the flows that cross it at the
 * current rate; go on with the others until every flow is frozen.
 * Equivalently: repeatedly take the link with the smallest fair share
 * (remaining capacity / unfrozen flows on it), give that share to its
 * unfrozen flows and subtract it from the other links they cross.
 *
 * Worked example.  Links A (10 GB/s) and B (4 GB/s); flow 1 crosses A only,
 * flow 2 crosses A and B, flow 3 crosses B only.  Shares: A 10/2 = 5,
 * B 4/2 = 2.  B is the bottleneck: flows 2 and 3 get 2 GB/s.  A has 10 - 2
 * = 8 left for its one unfrozen flow: flow 1 gets 8 GB/s.  Flow 1 is not
 * held back to 5 because flow 2 cannot use more than B allows.
 *
 * Time.  A flow added with start time t0 over a path of latency lat begins
 * moving bytes at t0 + lat (latency is paid once, before the first byte;
 * pipelining inside the flow is not modelled) and ends when its bytes are
 * delivered: alone on links of bandwidth bw it takes lat + bytes / min(bw).
 * n equal flows sharing one link end together at lat + n * bytes / bw.
 *
 * What is recomputed.  Rates change only when the set of active flows
 * changes (a flow starts or ends).  A max-min allocation is the unique
 * feasible one where every flow has a bottleneck: a saturated link on
 * which no flow has a higher rate.  After a change the model runs one
 * progressive filling in which flows keep their old rates ("held") until
 * the filling shows theirs may change: the flows that started take part
 * from the beginning; when a link fills up at level s, held flows on it
 * faster than s take part; when the level reaches the old share of a link
 * where held flows are bottlenecked and that link still has room (a flow
 * on it ended, or flows taking part could rise above that share there),
 * they take part.
 * The result is the exact max-min allocation (the argument is in net.c;
 * sim_net_set_full re-solves every flow of the connected component
 * instead, the reference the tests compare with).  A change costs about
 * the flows whose rates can change and the links they cross.
 *
 * Links whose sharing follows from others' (sim_topo_dominated: the
 * uplinks of a leaf that is not oversubscribed, which carry what the
 * leaf's NICs carry) are left out of the solves: the max-min rates are the
 * same without them, and a flow of an all-to-all across leaves crosses two
 * of them besides its two NICs.  Their rates are still kept, for the
 * accounting.
 *
 * Rates live on links.  Flows bottlenecked at the same link have the same
 * rate, its share, so each link keeps a virtual clock (the bytes one of its
 * flows has received) and its flows ordered by the clock reading at which
 * they finish; a change of share costs one update of the link, not one per
 * flow.  Flows whose projected ends lie within the time tolerance of
 * sim/engine.h are ended in one event.
 *
 * Accounting.  Per link: bytes delivered (the bytes of every flow that
 * crossed it), the integral of its rate over time (the same number computed
 * the other way: a conservation check), and the time it carried traffic.
 *
 * A struct sim_net is used by one thread at a time.  It borrows the
 * topology, which must outlive it and not change while it runs.
 */
#ifndef MOEKIT_SIM_NET_H
#define MOEKIT_SIM_NET_H

#include <stddef.h>
#include <stdint.h>
#include "moe/error.h"
#include "sim/topo.h"

struct sim_net;

/* Called once per flow when its last byte arrives (t_s, seconds).  May add
 * flows starting at t_s or later (this is how multi-stage collectives chain
 * their stages).  Must not free or reset the network. */
typedef void (*sim_net_done_fn)(void *user, struct sim_net *net, int flow, int64_t tag, double t_s);

/* Called after each rate recomputation with the links whose rates were
 * recomputed (borrowed); read rates with sim_net_link_rate. */
typedef void (*sim_net_rates_fn)(void *user, const struct sim_net *net, double t_s,
				 const int *links, int nlinks);

struct sim_net_stats {
	uint64_t events;        /* instants processed (starts and ends batched) */
	uint64_t recomputes;    /* max-min recomputations */
	uint64_t flows_started, flows_done;
	uint64_t flow_visits;   /* flows re-solved by recomputations (their cost) */
	uint64_t scanned;       /* held flows read looking for ones too fast */
	uint64_t rate_changes;  /* flows whose rate changed */
};

/* Creates an empty network on topology t (borrowed) with room for
 * reserve_flows flows before its arrays grow.  Returns MOE_OK and *out
 * (free with sim_net_free) or MOE_ENOMEM. */
enum moe_status sim_net_new(const struct sim_topo *t, size_t reserve_flows, struct sim_net **out);

/* Frees n; NULL is a no-op. */
void sim_net_free(struct sim_net *n);

/* Forgets every flow, sets the clock to 0 and clears link accounting and
 * statistics; keeps the memory. */
void sim_net_reset(struct sim_net *n);

/* Adds a flow of bytes (>= 0) over path p (copied) that becomes ready at
 * start_s (seconds, >= the current time) and starts moving after
 * p->lat_s.  tag is handed back at completion.  Flows over an empty path
 * (a GPU to itself) or of zero bytes end at start_s + lat.  Returns MOE_OK
 * and the flow's index in *flow (may be NULL); MOE_EINVAL for negative or
 * non-finite bytes, a start in the past, or a path naming an unknown link;
 * MOE_ENOMEM. */
enum moe_status sim_net_add(struct sim_net *n, const struct sim_path *p, double bytes,
			    double start_s, int64_t tag, int *flow);

/* Runs until every flow has ended, calling done (may be NULL) for each.
 * Returns MOE_OK, or the first error of a sim_net_add made by the callback
 * (the run stops), or MOE_ENOMEM. */
enum moe_status sim_net_run(struct sim_net *n, sim_net_done_fn done, void *user);

/* With full non-zero, every change re-solves the whole connected component
 * of the links it touched instead of only the flows whose bottleneck it
 * may have moved (same result, slower: a reference for tests). */
void sim_net_set_full(struct sim_net *n, int full);

/* Widens the window in which flow starts and ends count as one event from
 * the time tolerance (SIM_TIME_EPS_REL, the default) to rel x t: the flows
 * due to end within rel x t after the next due time t end together, and
 * the flows due to start by then start with them.  The event's time is the
 * rate-weighted mean of the ending flows' own ends (t when none ends):
 * the capacity that those due before it hold too long is, to first order,
 * what those due after it give up too early, so the other flows' bytes,
 * the links' rate integrals and the completion time stay right to first
 * order.  The window's flows are recorded as ending at the event's time
 * (and flows chained from them start then), so a single flow's time can
 * move by about the window.  Fewer events for traffic with many distinct
 * flow sizes (routed tokens, Zipf skew).  Without a window (the default)
 * flows due within the tolerance end at the earliest of them, each
 * recorded at its own end. */
void sim_net_set_coalesce(struct sim_net *n, double rel);

/* The window `moekit sim` and `moekit net` use unless told otherwise
 * (--coalesce 0 is exact).  Measured against exact (docs/sim.md): a GPU's
 * finish within about 1e-3, completion and layer times within 6e-5 and
 * mostly far less. */
#define SIM_NET_COALESCE_DEFAULT 1e-3

/* Installs a hook called after every recomputation (NULL removes it). */
void sim_net_set_rates_hook(struct sim_net *n, sim_net_rates_fn fn, void *user);

/* The clock: the time of the last event processed, seconds. */
double sim_net_now(const struct sim_net *n);

/* Per flow: when it ended (seconds; NaN while it runs), its bytes. */
double sim_net_flow_end(const struct sim_net *n, int flow);
double sim_net_flow_bytes(const struct sim_net *n, int flow);
/* Its current rate, bytes per second (0 before it starts and after). */
double sim_net_flow_rate(const struct sim_net *n, int flow);
int sim_net_flows(const struct sim_net *n);

/* Per link: bytes of the flows that crossed it and have ended; the
 * integral of its rate over time (bytes); time it carried any flow
 * (seconds); its current total rate (bytes per second). */
double sim_net_link_bytes(const struct sim_net *n, int link);
double sim_net_link_rate_integral(const struct sim_net *n, int link);
double sim_net_link_busy(const struct sim_net *n, int link);
double sim_net_link_rate(const struct sim_net *n, int link);

/* Counters since creation or the last reset (borrowed). */
const struct sim_net_stats *sim_net_stats(const struct sim_net *n);

#endif
