# sim/: the simulator: event engine, topology, flow-level network,
# all-to-all collectives, expert placement, compute and step models.
noinst_LTLIBRARIES += sim/libsim.la
sim_libsim_la_SOURCES = \
	sim/engine.c sim/topo.c sim/net.c sim/a2a.c sim/place.c sim/compute.c sim/step.c
sim_libsim_la_LIBADD = $(GSL_LIBS) -lm
nobase_moekitinclude_HEADERS += \
	sim/engine.h sim/topo.h sim/net.h sim/a2a.h sim/place.h sim/compute.h sim/step.h
libmoekit_la_LIBADD += sim/libsim.la

if HAVE_CHECK
check_PROGRAMS += tests/check_sim
TESTS += tests/check_sim
tests_check_sim_SOURCES = tests/check_sim.c
tests_check_sim_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_sim_LDADD = sim/libsim.la moe/libmoe.la $(CHECK_LIBS) $(GSL_LIBS) $(INIH_LIBS) \
	$(BLAS_LIBS) -lm
# node groups: spec, topology, compute (tests/check_groups.c)
check_PROGRAMS += tests/check_groups
TESTS += tests/check_groups
tests_check_groups_SOURCES = tests/check_groups.c tests/testutil.c tests/testutil.h
tests_check_groups_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_groups_LDADD = sim/libsim.la moe/libmoe.la $(CHECK_LIBS) $(GSL_LIBS) $(INIH_LIBS) \
	$(BLAS_LIBS) -lm
endif

moekit_SOURCES += cli/cmd_net.c
TESTS += tests/sim_net.sh tests/sim_cli.sh tests/groups_cli.sh
EXTRA_DIST += tests/sim_net.sh tests/sim_cli.sh tests/groups_cli.sh tests/data/sim/two-into-one.txt \
	docs/sim.md

EXTRA_PROGRAMS += bench/bench_net
BENCHMARKS += bench/bench_net
bench_bench_net_SOURCES = bench/bench_net.c
bench_bench_net_LDADD = sim/libsim.la moe/libmoe.la $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lm
moekit_SOURCES += cli/cmd_sim.c
