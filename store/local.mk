# store/: the SQLite results store, the only code that speaks SQL.
noinst_LTLIBRARIES += store/libstore.la
store_libstore_la_SOURCES = store/store.c
store_libstore_la_CFLAGS = $(AM_CFLAGS) $(SQLITE_CFLAGS)
# Convenience libraries never LIBADD each other (objects would be doubled in
# libmoekit.la); whatever links a part names the parts it needs.
store_libstore_la_LIBADD = $(SQLITE_LIBS)
nobase_moekitinclude_HEADERS += store/store.h
libmoekit_la_LIBADD += store/libstore.la

if HAVE_CHECK
check_PROGRAMS += tests/check_store
TESTS += tests/check_store
tests_check_store_SOURCES = tests/check_store.c tests/testutil.c tests/testutil.h
tests_check_store_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(SQLITE_CFLAGS)
tests_check_store_LDADD = store/libstore.la moe/libmoe.la $(CHECK_LIBS) $(SQLITE_LIBS)
endif
