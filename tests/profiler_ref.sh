#!/bin/sh
# tests/profiler_ref.sh: `moekit profile` on hand-written Hugging Face
# checkpoints (Mixtral top-2 and top-1, OLMoE, DeepSeek-V3 style with groups,
# bias and a shared expert, sharded) against the NumPy reference in
# tests/profiler_ref.py, to 1e-4 relative.  Skips (77) without NumPy.
PY=${PYTHON3:-python3}
if ! "$PY" -c 'import numpy' 2>/dev/null; then
	echo "profiler_ref: $PY has no numpy: skipped"
	exit 77
fi
MOEKIT=${MOEKIT:-./moekit}
work=$(mktemp -d "${TMPDIR:-/tmp}/profiler_ref.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
"$PY" "${srcdir:-.}/tests/profiler_ref.py" "$MOEKIT" "$work" ref
