#!/bin/sh
# tests/route_ref.sh: moekit's routing policies (moe/route.c, through
# tests/check_route's dump mode) against the independent NumPy reference
# tests/route_ref.py on random logits: ids exact, weights to 1e-5.
# Skips (77) when python3 has no NumPy.
PY=${PYTHON3:-python3}
if ! "$PY" -c 'import numpy' 2>/dev/null; then
	echo "route_ref: $PY has no numpy: skipped"
	exit 77
fi
tool=./tests/check_route
if [ ! -x "$tool" ]; then
	echo "route_ref: $tool is not built" >&2
	exit 99
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/route_ref.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
"$PY" "${srcdir:-.}/tests/route_ref.py" "$tool" "$work"
