#!/bin/sh
# Runs every Check runner under valgrind (memcheck) in one process
# (CK_FORK=no, so valgrind sees the tests themselves); fails on any error or
# definite leak.  Run from the build directory after `make check`.
set -u
status=0
for t in tests/check_*; do
	case "$t" in *.c|*.o|*.log|*.trs) continue ;; esac
	[ -x "$t" ] || continue
	echo "== valgrind $t"
	if ! CK_FORK=no valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite "$t" >"$t.valgrind.log" 2>&1; then
		echo "FAIL: $t under valgrind"; tail -30 "$t.valgrind.log"; status=1
	fi
done
exit $status
