#!/bin/sh
# tests/profiler_mpi.sh: expert parallelism over 2 MPI ranks equals one
# process (outputs within 1e-5 relative: the routing is the same and the sums
# run in the same order), for a Mixtral-like layer and a DeepSeek-V3-like one
# (groups, bias, a shared expert); rank count errors; the all-to-all
# microbenchmark's rows and stored run.  Skips (77) when moekit was built
# without MPI or no mpiexec and NumPy are at hand.
MOEKIT=${MOEKIT:-./moekit}
PY=${PYTHON3:-python3}
MPIEXEC=${MPIEXEC:-mpiexec}
if "$MOEKIT" profile a2a --help 2>&1 | grep -q "no MPI"; then
	echo "profiler_mpi: moekit built without MPI: skipped"
	exit 77
fi
if ! command -v "$MPIEXEC" >/dev/null || ! "$PY" -c 'import numpy' 2>/dev/null; then
	echo "profiler_mpi: no $MPIEXEC or no NumPy: skipped"
	exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/profiler_mpi.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
fail=0

compare() {
	"$PY" - "$1" "$2" <<'PY'
import sys, numpy as np
a, b = np.load(sys.argv[1]).astype(np.float64), np.load(sys.argv[2]).astype(np.float64)
assert a.shape == b.shape, (a.shape, b.shape)
rel = np.abs(a - b).max() / np.abs(a).max()
print("  max |single - ep| / max |single| = %.2e" % rel)
sys.exit(0 if rel <= 1e-5 else 1)
PY
}

for m in "mixtral-8x7b --hidden 96 --ffn 64 --experts 8" \
	 "deepseek-v3 --hidden 64 --ffn 32 --experts 32"; do
	args="--model $m --tokens 45 --no-probe --reps 2 --warmup 1 --threads 1 --seed 3"
	"$MOEKIT" profile $args --output "$work/one.npy" >/dev/null || { echo "FAIL: single $m"; fail=1; }
	timeout 300 "$MPIEXEC" -n 2 "$MOEKIT" profile $args --ep 2 --output "$work/ep.npy" \
		--db "$work/s.db" >"$work/ep.out" || { echo "FAIL: ep $m"; fail=1; }
	if compare "$work/one.npy" "$work/ep.npy"; then echo "ok: --ep 2 equals one process ($m)"; else
		echo "FAIL: --ep 2 differs ($m)"; fail=1; fi
	for s in dispatch experts combine_a2a total; do
		grep -q "^$s " "$work/ep.out" || { echo "FAIL: no stage $s"; fail=1; }
	done
done
"$MOEKIT" db export 2 --db "$work/s.db" --table metrics --format csv | grep -q "^dispatch_bytes," \
	&& echo "ok: stored ep run" || { echo "FAIL: stored ep run"; fail=1; }

timeout 60 "$MPIEXEC" -n 2 "$MOEKIT" profile --model mixtral-8x7b --hidden 64 --ffn 32 --ep 3 \
	--no-probe 2>"$work/err" >/dev/null
rc=$?
[ $rc -eq 2 ] && grep -q "3 but 2 ranks are running" "$work/err" && echo "ok: rank count" \
	|| { echo "FAIL: rank count: $rc $(cat "$work/err")"; fail=1; }

timeout 120 "$MPIEXEC" -n 2 "$MOEKIT" profile a2a --min-bytes 1KiB --max-bytes 64KiB --iters 3 \
	--warmup 1 --format csv --db "$work/s.db" >"$work/a2a.csv" || { echo "FAIL: a2a"; fail=1; }
# 1K..64K doubling: 7 sizes; busbw = algbw / 2 for 2 ranks
"$PY" - "$work/a2a.csv" <<'PY' && echo "ok: a2a rows" || { echo "FAIL: a2a rows: $(cat "$work/a2a.csv")"; fail=1; }
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [int(r["size_B"]) for r in rows] == [1024 << i for i in range(7)], rows
for r in rows:
    assert abs(float(r["busbw_GBps"]) - float(r["algbw_GBps"]) / 2) <= 0.0011, r
    assert abs(float(r["algbw_GBps"]) - int(r["size_B"]) / float(r["time_us"]) / 1e3) <= 0.002 * float(r["algbw_GBps"]) + 0.001, r
PY
"$MOEKIT" db list --db "$work/s.db" | grep -q "done  *a2a" && echo "ok: stored a2a run" || { echo "FAIL: stored a2a"; fail=1; }
# 4 B over 2 ranks rounds up to 8 B, as the next size does: one row and one
# stored stage for it, not a duplicate stage that the store refuses
timeout 60 "$MPIEXEC" -n 2 "$MOEKIT" profile a2a --min-bytes 4 --max-bytes 16 --iters 2 \
	--warmup 1 --format csv --db "$work/r.db" >"$work/r.csv" 2>"$work/err"
rc=$?
[ $rc -eq 0 ] && [ "$(cut -d, -f1 "$work/r.csv" | tr '\n' ' ')" = "size_B 8 16 " ] \
	&& echo "ok: a2a sizes that round together" \
	|| { echo "FAIL: a2a rounded sizes: $rc $(cat "$work/r.csv" "$work/err")"; fail=1; }
exit $fail
