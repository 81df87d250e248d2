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

# libFuzzer targets (built and run by tests/fuzz/run.sh with clang, not by make).
EXTRA_DIST += tests/fuzz/run.sh tests/fuzz/fuzz_common.h tests/fuzz/fuzz_trace_reader.c \
	tests/fuzz/fuzz_import_npy.c tests/fuzz/fuzz_import_npz.c tests/fuzz/fuzz_import_jsonl.c \
	tests/fuzz/fuzz_import_csv.c \
	tests/fuzz/corpus/import_csv/counts.csv \
	tests/fuzz/corpus/import_csv/noweights.csv \
	tests/fuzz/corpus/import_csv/tokens.csv \
	tests/fuzz/corpus/import_jsonl/counts.jsonl \
	tests/fuzz/corpus/import_jsonl/logits.jsonl \
	tests/fuzz/corpus/import_jsonl/tokens.jsonl \
	tests/fuzz/corpus/import_npy/f16.npy \
	tests/fuzz/corpus/import_npy/f32-2d.npy \
	tests/fuzz/corpus/import_npy/f32-3d.npy \
	tests/fuzz/corpus/import_npy/i8.npy \
	tests/fuzz/corpus/import_npy/u2.npy \
	tests/fuzz/corpus/import_npz/ids-stacked.npz \
	tests/fuzz/corpus/import_npz/ids.npz \
	tests/fuzz/corpus/import_npz/layers.npz \
	tests/fuzz/corpus/import_npz/stacked-deflate.npz \
	tests/fuzz/corpus/trace_reader/counts.moetrace \
	tests/fuzz/corpus/trace_reader/logits-zstd.moetrace \
	tests/fuzz/corpus/trace_reader/npy-chunks.moetrace \
	tests/fuzz/corpus/trace_reader/tokens.moetrace

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

# Router logits from a Hugging Face model (needs torch and transformers).
tracesscriptdir = $(pkgdatadir)/traces
dist_tracesscript_SCRIPTS = traces/capture_hf.py
TESTS += tests/trace_capture_hf.sh
EXTRA_DIST += tests/trace_capture_hf.sh
