# traces/gen.mk: the routing helper's fragment of the traces/ build (generators,
# re-routing, rescaling, statistics and their commands).  Included at the end of
# traces/local.mk so that the two parts never edit the same file.
traces_libtraces_la_SOURCES += traces/gen.c traces/stats.c traces/reroute.c traces/rescale.c
nobase_moekitinclude_HEADERS += traces/gen.h traces/stats.h traces/reroute.h traces/rescale.h
moekit_SOURCES += cli/cmd_trace_gen.c cli/cmd_trace_stats.c cli/cmd_trace_reroute.c \
	cli/cmd_trace_rescale.c

if HAVE_CHECK
check_PROGRAMS += tests/check_tracegen
TESTS += tests/check_tracegen
tests_check_tracegen_SOURCES = tests/check_tracegen.c tests/testutil.c tests/testutil.h
tests_check_tracegen_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_tracegen_LDADD = traces/libtraces.la moe/libmoe.la $(CHECK_LIBS) $(ZLIB_LIBS) \
	$(ZSTD_LIBS) $(LIBZIP_LIBS) $(JANSSON_LIBS) $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lm
endif

TESTS += tests/tracegen_e2e.sh
EXTRA_DIST += tests/tracegen_e2e.sh
