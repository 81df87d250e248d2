# study/: sweeps, calibration and validation (issue 8): studies built from
# many simulations and profiles.
noinst_LTLIBRARIES += study/libstudy.la
study_libstudy_la_SOURCES = study/sweep.c
nobase_moekitinclude_HEADERS += study/sweep.h
libmoekit_la_LIBADD += study/libstudy.la

if HAVE_CHECK
check_PROGRAMS += tests/check_study
TESTS += tests/check_study
tests_check_study_SOURCES = tests/check_study.c tests/testutil.c tests/testutil.h
tests_check_study_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_study_LDADD = study/libstudy.la moe/libmoe.la $(CHECK_LIBS) $(GSL_LIBS) \
	$(INIH_LIBS) $(BLAS_LIBS) -lm
endif

moekit_SOURCES += cli/cmd_sweep.c
if HAVE_MPI
moekit_CFLAGS += $(MPI_CFLAGS)
moekit_LDADD += $(MPI_LIBS)
endif

# calibration and validation (issue 8, items 2-4)
study_libstudy_la_SOURCES += study/calibrate.c study/validate.c
nobase_moekitinclude_HEADERS += study/calibrate.h study/validate.h
moekit_SOURCES += cli/cmd_calibrate.c cli/cmd_validate.c
if HAVE_CHECK
check_PROGRAMS += tests/check_calib
TESTS += tests/check_calib
tests_check_calib_SOURCES = tests/check_calib.c
tests_check_calib_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_calib_LDADD = study/libstudy.la sim/libsim.la store/libstore.la moe/libmoe.la \
	$(CHECK_LIBS) $(SQLITE_LIBS) $(JANSSON_LIBS) $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lm
endif
TESTS += tests/study_loop.sh
EXTRA_DIST += tests/study_loop.sh docs/studies.md

TESTS += tests/study_sweep.sh
EXTRA_DIST += tests/study_sweep.sh
