# tests/: end-to-end command tests (the Check runners are declared by each
# part's local.mk beside its sources).
TESTS += tests/cli.sh
EXTRA_DIST += tests/cli.sh tests/lib.sh
# tests/lib.sh: helpers a shell test sources (check, err_has, py, $tmp).
# tests/testutil.c and .h (a scratch directory) are shared by several Check
# runners: each lists them in its own _SOURCES.
