# traces/: the .moetrace format (streaming reader and writer), importers and
# exporters, and the `moekit trace` command.  Generators, re-routing,
# rescaling and statistics add themselves in traces/gen.mk (included last).
noinst_LTLIBRARIES += traces/libtraces.la
traces_libtraces_la_SOURCES = traces/trace.c traces/io.c
traces_libtraces_la_CFLAGS = $(AM_CFLAGS)
# Convenience libraries never LIBADD each other; programs name the parts.
traces_libtraces_la_LIBADD = $(ZLIB_LIBS) $(ZSTD_LIBS) $(LIBZIP_LIBS) $(JANSSON_LIBS) -lm
nobase_moekitinclude_HEADERS += traces/trace.h traces/io.h
libmoekit_la_LIBADD += traces/libtraces.la
EXTRA_DIST += docs/trace-format.md
moekit_SOURCES += cli/cmd_trace.c

if HAVE_CHECK
check_PROGRAMS += tests/check_traces
TESTS += tests/check_traces
tests_check_traces_SOURCES = tests/check_traces.c
tests_check_traces_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_traces_LDADD = traces/libtraces.la moe/libmoe.la $(CHECK_LIBS) $(ZLIB_LIBS) \
	$(ZSTD_LIBS) $(LIBZIP_LIBS) $(JANSSON_LIBS) $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lm
endif
TESTS += tests/trace_cli.sh
EXTRA_DIST += tests/trace_cli.sh

# Example traces, installed under $(pkgdatadir)/traces/examples.
nobase_dist_pkgdata_DATA += traces/examples/README.md traces/examples/make-examples.sh \
	traces/examples/olmoe-arxiv.moetrace traces/examples/mixtral-arxiv.moetrace \
	traces/examples/mixtral-tokens.moetrace traces/examples/data/expert_counts.csv

# bench/bench_trace: write/read throughput and memory (make bench; not a test).
EXTRA_PROGRAMS += bench/bench_trace
BENCHMARKS += bench/bench_trace
bench_bench_trace_SOURCES = bench/bench_trace.c
bench_bench_trace_LDADD = traces/libtraces.la moe/libmoe.la $(ZLIB_LIBS) $(ZSTD_LIBS) \
	$(LIBZIP_LIBS) $(JANSSON_LIBS) $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lm

include traces/gen.mk
