# reports/: figures (gnuplot scripts written and run), the index page,
# compare tables and timelines, drawn from the results store.
noinst_LTLIBRARIES += reports/libreports.la
reports_libreports_la_SOURCES = \
	reports/data.c reports/util.c reports/figures.c reports/report.c \
	reports/timeline.c reports/compare.c reports/report_int.h
reports_libreports_la_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
reports_libreports_la_LIBADD = $(JANSSON_LIBS) -lm
nobase_moekitinclude_HEADERS += reports/report.h
libmoekit_la_LIBADD += reports/libreports.la

# Templates: gnuplot skeletons and the page, installed under
# $(pkgdatadir)/reports/templates and found with moe_data_path().
REPORT_TEMPLATES = \
	reports/templates/common.gp reports/templates/breakdown.gp \
	reports/templates/timeline.gp reports/templates/links.gp \
	reports/templates/experts.gp reports/templates/gpus.gp \
	reports/templates/routing.gp reports/templates/scaling.gp \
	reports/templates/simmeas.gp reports/templates/stages.gp \
	reports/templates/gflops.gp reports/templates/index.html \
	reports/templates/style.css
nobase_dist_pkgdata_DATA += $(REPORT_TEMPLATES)

moekit_SOURCES += cli/cmd_report.c cli/cmd_compare.c cli/cmd_export_timeline.c
EXTRA_DIST += docs/reports.md tests/report_cli.sh tests/data/reports/verify.py

if HAVE_CHECK
check_PROGRAMS += tests/check_reports
TESTS += tests/check_reports tests/report_cli.sh
tests_check_reports_SOURCES = tests/check_reports.c
tests_check_reports_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JANSSON_CFLAGS)
tests_check_reports_LDADD = reports/libreports.la store/libstore.la moe/libmoe.la \
	$(CHECK_LIBS) $(JANSSON_LIBS) $(SQLITE_LIBS) $(GSL_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lm
endif
