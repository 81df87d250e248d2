#!/bin/sh
# tests/profiler_errors.sh: every checkpoint error `moekit profile` documents
# (a header that lies: offsets past the end, overlapping tensors, a length
# past the file, an unknown or unconvertible dtype, a shape the model does
# not expect; a missing tensor with the nearest names; another
# architecture; a dense layer; an index that leaves the folder; a bad
# --input), provoked end to end: one line on stderr, the documented exit
# status, never a crash.  Files are written by tests/profiler_ref.py.
PY=${PYTHON3:-python3}
if ! "$PY" -c 'import numpy' 2>/dev/null; then
	echo "profiler_errors: $PY has no numpy: skipped"
	exit 77
fi
MOEKIT=${MOEKIT:-./moekit}
work=$(mktemp -d "${TMPDIR:-/tmp}/profiler_errors.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
"$PY" "${srcdir:-.}/tests/profiler_ref.py" "$MOEKIT" "$work" errors
