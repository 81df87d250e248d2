# profiler/cuda/: the CUDA back end (issue 7), built when configure finds nvcc.
#
# nvcc is not a compiler automake knows: the .cu files are compiled by the
# explicit rules below into one static archive, profiler/cuda/libmoecuda.a,
# which moekit, tests/cuda_gpu and bench/bench_cuda link with $(CUDA_LIBS).
# Host warnings go through -Xcompiler; the build never depends on nvcc's own
# warning flags.  `make check-cuda` runs the GPU test (exit 77: no device).
PROF_CUDA_SRCS = profiler/cuda/forward.cu profiler/cuda/a2a.cu
PROF_CUDA_HDRS = profiler/cuda/cuda_backend.h profiler/cuda/cuda_int.h
EXTRA_DIST += $(PROF_CUDA_SRCS) $(PROF_CUDA_HDRS) docs/cuda.md tests/check_cuda.c \
	tests/cuda_nodevice.sh tests/cuda_route_host.sh tests/cuda_cli.sh bench/bench_cuda.c

if HAVE_CUDA
PROF_CUDA_OBJS = profiler/cuda/forward.o profiler/cuda/a2a.o
# What the .cu files include from the project (rebuild when they change).
PROF_CUDA_DEPS = $(PROF_CUDA_HDRS) moe/error.h moe/model.h moe/route.h profiler/forward.h \
	profiler/harness.h profiler/weights.h config.h
# -ffp-contract=off: the host copy of the routing code must round every
# float operation as moe/route.c does (no FMA), see forward.cu.
PROF_CUDA_FLAGS = $(NVCCFLAGS) -Xcompiler -fPIC -Xcompiler -Wall,-Wextra,-ffp-contract=off \
	-I$(top_srcdir) -I$(top_builddir) $(CUDA_CFLAGS) $(GSL_CFLAGS)

profiler/cuda/forward.o: profiler/cuda/forward.cu $(PROF_CUDA_DEPS)
	@$(MKDIR_P) profiler/cuda
	$(AM_V_GEN)$(NVCC) $(PROF_CUDA_FLAGS) -c -o $@ $(srcdir)/profiler/cuda/forward.cu
profiler/cuda/a2a.o: profiler/cuda/a2a.cu $(PROF_CUDA_DEPS)
	@$(MKDIR_P) profiler/cuda
	$(AM_V_GEN)$(NVCC) $(PROF_CUDA_FLAGS) -c -o $@ $(srcdir)/profiler/cuda/a2a.cu
profiler/cuda/libmoecuda.a: $(PROF_CUDA_OBJS)
	$(AM_V_GEN)rm -f $@ && $(AR) cr $@ $(PROF_CUDA_OBJS) && $(RANLIB) $@
CLEANFILES += profiler/cuda/libmoecuda.a $(PROF_CUDA_OBJS)

PROF_CUDA_LIBS = profiler/cuda/libmoecuda.a $(CUDA_LIBS) -lstdc++ -lpthread
moekit_LDADD += $(PROF_CUDA_LIBS)
nobase_moekitinclude_HEADERS += profiler/cuda/cuda_backend.h

# The GPU test program, tests/cuda_gpu (from tests/check_cuda.c; not named
# check_* since it is no Check runner: tools/valgrind-check.sh runs those):
# built by `make check-cuda`, and by make check, where only its no-device
# path runs, through tests/cuda_nodevice.sh (which skips on a machine with a
# GPU: make check-cuda is the test there).
check_PROGRAMS += tests/cuda_gpu
tests_cuda_gpu_SOURCES = tests/check_cuda.c
tests_cuda_gpu_CFLAGS = $(AM_CFLAGS) -pthread
tests_cuda_gpu_LDADD = $(PROF_CUDA_LIBS) profiler/libprofiler.la moe/libmoe.la \
	$(JANSSON_LIBS) $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lpthread -lm
TESTS += tests/cuda_nodevice.sh tests/cuda_route_host.sh tests/cuda_cli.sh

check-cuda: tests/cuda_gpu$(EXEEXT)
	tests/cuda_gpu$(EXEEXT)

EXTRA_PROGRAMS += bench/bench_cuda
BENCHMARKS += bench/bench_cuda
bench_bench_cuda_SOURCES = bench/bench_cuda.c
bench_bench_cuda_LDADD = $(PROF_CUDA_LIBS) profiler/libprofiler.la moe/libmoe.la \
	$(JANSSON_LIBS) $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lpthread -lm
else
check-cuda:
	@echo "check-cuda: this build has no CUDA (configure --with-cuda)"; exit 1
endif
.PHONY: check-cuda
