/* reports/timeline.c: a run's timeline in the Chrome trace event format
 * (https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU),
 * which Perfetto and chrome://tracing open.  One process per run, one
 * thread (track) per GPU and per link, complete events ("ph":"X") with
 * times in microseconds, counters ("ph":"C") for link utilization. */
#include "config.h"
#include "reports/report.h"
#include "reports/report_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static json_t *meta_event(const char *what, int64_t pid, int tid, const char *key, json_t *val)
{
	json_t *e = json_object(), *args = json_object();

	json_object_set_new(e, "name", json_string(what));
	json_object_set_new(e, "ph", json_string("M"));
	json_object_set_new(e, "pid", json_integer(pid));
	json_object_set_new(e, "tid", json_integer(tid));
	json_object_set_new(args, key, val);
	json_object_set_new(e, "args", args);
	return e;
}

static json_t *x_event(const char *name, const char *cat, int64_t pid, int tid, double start_s,
		       double dur_s)
{
	json_t *e = json_object();

	json_object_set_new(e, "name", json_string(name && name[0] ? name : "(unnamed)"));
	json_object_set_new(e, "cat", json_string(cat && cat[0] ? cat : "other"));
	json_object_set_new(e, "ph", json_string("X"));
	json_object_set_new(e, "ts", json_real(start_s * 1e6));
	json_object_set_new(e, "dur", json_real(dur_s * 1e6));
	json_object_set_new(e, "pid", json_integer(pid));
	json_object_set_new(e, "tid", json_integer(tid));
	return e;
}

enum moe_status report_timeline_write(struct store *db, int64_t id, const char *path,
				      size_t *nevents)
{
	struct rrun r;
	enum moe_status st;
	json_t *root = NULL, *ev;
	char **tracks = NULL, title[1024], tmp[4096];
	size_t ntracks = 0, nx = 0;
	int64_t pid = id;

	if (nevents)
		*nevents = 0;
	if ((st = rrun_load(db, id, &r)) != MOE_OK)
		goto out;
	if (r.status == NULL || strcmp(r.status, "done") != 0) {
		st = moe_error(MOE_EINVAL, "run %lld is '%s', not done: it has no timeline",
			       (long long)id, r.status ? r.status : "?");
		goto out;
	}
	if (r.nspans == 0 && r.nstages == 0) {
		st = moe_error(MOE_EINVAL, "run %lld has neither spans nor stages: nothing to put "
			       "on a timeline", (long long)id);
		goto out;
	}
	root = json_object();
	ev = json_array();
	json_object_set_new(root, "traceEvents", ev);
	json_object_set_new(root, "displayTimeUnit", json_string("ms"));
	snprintf(title, sizeof title, "moekit run %lld (%s%s%s%s%s)%s%s", (long long)id,
		 r.kind ? r.kind : "?", r.model ? ", " : "", r.model ? r.model : "",
		 r.cluster ? " on " : "", r.cluster ? r.cluster : "", r.label ? ": " : "",
		 r.label ? r.label : "");
	json_array_append_new(ev, meta_event("process_name", pid, 0, "name", json_string(title)));
	if (r.nspans > 0) {
		if ((tracks = malloc(r.nspans * sizeof *tracks)) == NULL) {
			st = moe_error(MOE_ENOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < r.nspans; i++) {
			const char *t = r.spans[i].track ? r.spans[i].track : "";
			size_t k;
			for (k = 0; k < ntracks && strcmp(tracks[k], t) != 0; k++)
				;
			if (k == ntracks)
				tracks[ntracks++] = (char *)t;
		}
		qsort(tracks, ntracks, sizeof *tracks, report_track_cmp);
		for (size_t k = 0; k < ntracks; k++) {
			json_array_append_new(ev, meta_event("thread_name", pid, (int)k + 1, "name",
							     json_string(tracks[k])));
			json_array_append_new(ev, meta_event("thread_sort_index", pid, (int)k + 1,
							     "sort_index", json_integer((int)k)));
		}
		for (size_t i = 0; i < r.nspans; i++) {
			const struct rspan *s = &r.spans[i];
			size_t k;
			for (k = 0; k < ntracks && strcmp(tracks[k], s->track ? s->track : "") != 0; k++)
				;
			json_array_append_new(ev, x_event(s->name, s->cat, pid, (int)k + 1, s->start_s,
							  s->dur_s));
			nx++;
		}
	} else {
		/* A profile run: its stages one after another, each its median
		 * long; "total" (the profiler's whole forward) is all of them and
		 * goes into the process name instead. */
		double t = 0;
		json_array_append_new(ev, meta_event("thread_name", pid, 1, "name",
						     json_string("profile stages (median times)")));
		for (size_t i = 0; i < r.nstages; i++) {
			const struct rstage *s = &r.stages[i];
			json_t *e, *args;
			if (s->stage && strcmp(s->stage, "total") == 0)
				continue;
			e = x_event(s->stage, "stage", pid, 1, t, s->median_s);
			args = json_object();
			json_object_set_new(args, "reps", json_integer(s->reps));
			json_object_set_new(args, "p10_s", json_real(s->p10_s));
			json_object_set_new(args, "p90_s", json_real(s->p90_s));
			if (s->has_gflops)
				json_object_set_new(args, "gflops", json_real(s->gflops));
			if (s->has_tokens)
				json_object_set_new(args, "tokens", json_real(s->tokens));
			json_object_set_new(e, "args", args);
			json_array_append_new(ev, e);
			t += s->median_s > 0 ? s->median_s : 0;
			nx++;
		}
	}
	/* Link utilization as counters, one counter track per link. */
	for (size_t i = 0; i < r.nsamples; i++) {
		const struct rsample *s = &r.samples[i];
		json_t *e = json_object(), *args = json_object();
		char name[512] = "";
		for (size_t k = 0; k < r.nlinks; k++)
			if (r.links[k].link == s->link)
				snprintf(name, sizeof name, "utilization %s (%s)",
					 r.links[k].name ? r.links[k].name : "?",
					 r.links[k].kind ? r.links[k].kind : "?");
		if (name[0] == '\0')
			snprintf(name, sizeof name, "utilization link %d", s->link);
		json_object_set_new(e, "name", json_string(name));
		json_object_set_new(e, "ph", json_string("C"));
		json_object_set_new(e, "ts", json_real(s->t_s * 1e6));
		json_object_set_new(e, "pid", json_integer(pid));
		json_object_set_new(args, "utilization", json_real(s->utilization));
		json_object_set_new(e, "args", args);
		json_array_append_new(ev, e);
	}
	{
		json_t *other = json_object();
		json_object_set_new(other, "run", json_integer(id));
		json_object_set_new(other, "kind", json_string(r.kind ? r.kind : ""));
		if (r.model)
			json_object_set_new(other, "model", json_string(r.model));
		if (r.cluster)
			json_object_set_new(other, "cluster", json_string(r.cluster));
		json_object_set_new(other, "generator", json_string("moekit " PACKAGE_VERSION));
		json_object_set_new(root, "otherData", other);
	}
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (json_dump_file(root, tmp, JSON_COMPACT) != 0) {
		remove(tmp);
		st = moe_error(MOE_EIO, "%s: cannot write the timeline", tmp);
		goto out;
	}
	if (rename(tmp, path) != 0) {
		st = moe_error(MOE_EIO, "%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
		remove(tmp);
		goto out;
	}
	if (nevents)
		*nevents = nx;
out:
	free(tracks);
	json_decref(root);
	rrun_release(&r);
	return st;
}
