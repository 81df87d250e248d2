# moe/: errors, units, configuration (model, cluster, plan), presets, routing.
noinst_LTLIBRARIES += moe/libmoe.la
moe_libmoe_la_SOURCES = \
	moe/error.c moe/units.c moe/ini.c moe/spec.c moe/route.c
moe_libmoe_la_LIBADD = $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lm
nobase_moekitinclude_HEADERS += \
	moe/error.h moe/units.h moe/ini.h moe/model.h moe/preset.h moe/progress.h moe/route.h
libmoekit_la_LIBADD += moe/libmoe.la

if HAVE_CHECK
check_PROGRAMS += tests/check_moe
TESTS += tests/check_moe
tests_check_moe_SOURCES = tests/check_moe.c tests/testutil.c tests/testutil.h
tests_check_moe_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_moe_LDADD = moe/libmoe.la $(CHECK_LIBS) $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lm
endif

if HAVE_CHECK
check_PROGRAMS += tests/check_route
TESTS += tests/check_route tests/route_ref.sh
EXTRA_DIST += tests/route_ref.sh tests/route_ref.py docs/routing.md
tests_check_route_SOURCES = tests/check_route.c
tests_check_route_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_route_LDADD = moe/libmoe.la $(CHECK_LIBS) $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lm
endif

EXTRA_PROGRAMS += bench/bench_route
BENCHMARKS += bench/bench_route
bench_bench_route_SOURCES = bench/bench_route.c
bench_bench_route_LDADD = moe/libmoe.la $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lm
