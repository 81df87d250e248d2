/* moe/progress.h: how long-running library work reports its progress.
 *
 * The library never draws anything: a function that may run for long takes
 * a struct moe_progress (which may be NULL or have a NULL fn) and calls
 * moe_progress_report() as work completes.  The command decides whether to
 * draw a bar (only when stderr is a terminal and --quiet is not given).
 */
#ifndef MOEKIT_MOE_PROGRESS_H
#define MOEKIT_MOE_PROGRESS_H

/* done of total units finished; what names the work ("layer 3/58"), may be
 * NULL.  Called from the thread doing the work. */
typedef void (*moe_progress_fn)(void *user, unsigned long long done,
				unsigned long long total, const char *what);

struct moe_progress {
	moe_progress_fn fn;
	void *user;
};

static inline void moe_progress_report(const struct moe_progress *p, unsigned long long done,
				       unsigned long long total, const char *what)
{
	if (p != NULL && p->fn != NULL)
		p->fn(p->user, done, total, what);
}

#endif
