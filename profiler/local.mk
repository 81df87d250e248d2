# profiler/: the MoE forward pass on the CPU (packed-weight GEMMs), safetensors
# and Hugging Face checkpoint loading, the timing harness, `moekit profile`.
noinst_LTLIBRARIES += profiler/libprofiler.la
profiler_libprofiler_la_SOURCES = \
	profiler/safetensors.c profiler/weights.c profiler/forward.c profiler/npy.c \
	profiler/harness.c
profiler_libprofiler_la_CPPFLAGS = $(AM_CPPFLAGS)
if HAVE_OPENBLAS
profiler_libprofiler_la_CPPFLAGS += -DPROF_HAVE_OPENBLAS
endif
# The GEMM kernel and packing loops are the hot path: -O3 whatever CFLAGS says.
profiler_libprofiler_la_CFLAGS = $(AM_CFLAGS) -O3 -pthread
profiler_libprofiler_la_LIBADD = $(JANSSON_LIBS) $(GSL_LIBS) $(BLAS_LIBS) -lpthread -lm
nobase_moekitinclude_HEADERS += \
	profiler/safetensors.h profiler/weights.h profiler/forward.h profiler/npy.h \
	profiler/harness.h
libmoekit_la_LIBADD += profiler/libprofiler.la
# Expert parallelism and the all-to-all benchmark, when configure found MPI.
if HAVE_MPI
profiler_libprofiler_la_SOURCES += profiler/ep.c
profiler_libprofiler_la_CPPFLAGS += $(MPI_CFLAGS)
profiler_libprofiler_la_LIBADD += $(MPI_LIBS)
nobase_moekitinclude_HEADERS += profiler/ep.h
moekit_CFLAGS += $(MPI_CFLAGS)
moekit_LDADD += $(MPI_LIBS)
if HAVE_CHECK
TESTS += tests/profiler_mpi.sh
endif
endif
EXTRA_DIST += tests/profiler_mpi.sh

if HAVE_CHECK
check_PROGRAMS += tests/check_profiler
TESTS += tests/check_profiler tests/profiler_ref.sh tests/profiler_errors.sh tests/profiler_cli.sh
EXTRA_DIST += tests/profiler_ref.sh tests/profiler_errors.sh tests/profiler_ref.py tests/profiler_cli.sh
tests_check_profiler_SOURCES = tests/check_profiler.c
tests_check_profiler_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_profiler_LDADD = profiler/libprofiler.la moe/libmoe.la $(CHECK_LIBS) $(JANSSON_LIBS) \
	$(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lpthread -lm
endif

EXTRA_PROGRAMS += bench/bench_forward
BENCHMARKS += bench/bench_forward
EXTRA_DIST += bench/torch_moe_block.py docs/profiler.md
bench_bench_forward_SOURCES = bench/bench_forward.c
bench_bench_forward_LDADD = profiler/libprofiler.la moe/libmoe.la $(JANSSON_LIBS) $(GSL_LIBS) \
	$(INIH_LIBS) $(BLAS_LIBS) -lpthread -lm

moekit_SOURCES += cli/cmd_profile.c

# The safetensors fuzz target: built and run by its script (clang, libFuzzer),
# never by make check.
EXTRA_DIST += tests/fuzz/fuzz_safetensors.c tests/fuzz/run_safetensors.sh \
	tests/data/profiler/fuzz_seeds/f32.safetensors \
	tests/data/profiler/fuzz_seeds/mixed.safetensors \
	tests/data/profiler/fuzz_seeds/overlap.safetensors \
	tests/data/profiler/fuzz_seeds/scalar.safetensors \
	tests/data/profiler/fuzz_seeds/short.bin
include profiler/cuda/local.mk
