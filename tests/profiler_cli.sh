#!/bin/sh
# tests/profiler_cli.sh: `moekit profile` end to end on random weights:
# usage errors (exit 2), the MPI-only features in a build without MPI
# (exit 1, one line, or with MPI the rank-count check), table/csv/json output, the stored run (stages, expert
# loads, metrics) read back with `moekit db`, and --capture read back with
# `moekit trace info`; --output is bit-identical across runs with one seed.
MOEKIT=${MOEKIT:-./moekit}
work=$(mktemp -d "${TMPDIR:-/tmp}/profiler_cli.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }

# expect CODE NEEDLE ARGS...: exit status and a one-line message with NEEDLE
expect() {
	code=$1; needle=$2; shift 2
	"$MOEKIT" profile "$@" >"$work/out" 2>"$work/err"
	rc=$?
	if [ "$rc" -eq "$code" ] && head -n 1 "$work/err" | grep -q -- "$needle"; then
		ok "profile $* -> $rc"
	else
		bad "profile $*: exit $rc (wanted $code), stderr: $(cat "$work/err")"
	fi
}
small="--model mixtral-8x7b --hidden 64 --ffn 48 --experts 4 --tokens 32 --no-probe --reps 3 --warmup 1 --threads 2"

expect 2 "give --model" --tokens 4
expect 2 "--threads" $small --threads 0
expect 2 "top-k: 5" $small --top-k 5
expect 2 "unexpected argument" $small extra
expect 2 "--format" $small --format xml
expect 1 "no such preset\|unknown\|not found\|no model" --model no-such-model --no-probe
if "$MOEKIT" profile a2a --help 2>&1 | grep -q "no MPI"; then
	expect 1 "no MPI" $small --ep 2
	expect 1 "no MPI" a2a
else
	# built with MPI, started without mpiexec: one rank
	expect 2 "2 but 1 ranks are running" $small --ep 2
	expect 2 "--min-bytes is larger" a2a --min-bytes 2KiB --max-bytes 1KiB
fi
expect 2 "no such file or folder" --weights "$work/nothing" --no-probe
expect 1 "not a .npy file" $small --input "$0"

"$MOEKIT" profile --help | grep -q "^Usage: moekit profile" && ok "--help" || bad "--help"

# table: preamble and the 8 stage rows
"$MOEKIT" profile $small >"$work/table" || bad "table run"
for s in router routing permute gate_up activation down combine total; do
	grep -q "^$s " "$work/table" || bad "table lacks stage $s"
done
grep -q "^# tokens 32, routed rows 64" "$work/table" && ok "routed rows = tokens x k" || bad "routed rows: $(cat "$work/table")"

# json parses and has 8 stages whose total median is the largest
if [ -n "$PYTHON3" ] || command -v python3 >/dev/null; then
	"$MOEKIT" profile $small --format json >"$work/j.json" || bad "json run"
	${PYTHON3:-python3} - "$work/j.json" <<'PY' && ok "json" || bad "json output"
import json, sys
d = json.load(open(sys.argv[1]))
st = {r["stage"]: r for r in d["stages"]}
assert len(st) == 8, st
assert st["total"]["median_s"] >= max(r["median_s"] for k, r in st.items() if k != "total")
assert d["inputs"]["top_k"] == 2 and d["inputs"]["hidden"] == 64
assert d["summary"]["routed_rows"] == 64 and d["summary"]["gflops"] > 0
assert 0 < d["summary"]["cores_used"] <= 2.5 and d["summary"]["cpu_s"] > 0
for r in st.values():
    assert r["min_s"] <= r["p10_s"] <= r["median_s"] <= r["p90_s"]
PY
fi

# csv: header and 8 rows
"$MOEKIT" profile $small --format csv >"$work/c.csv" || bad "csv run"
[ "$(wc -l <"$work/c.csv")" -eq 9 ] && head -n 1 "$work/c.csv" | grep -q "^stage,median_ms" && ok "csv" || bad "csv: $(cat "$work/c.csv")"

# store: a done profile run with 8 stages, 4 expert rows summing to 64, metrics
"$MOEKIT" profile $small --db "$work/s.db" --label unit >/dev/null || bad "db run"
"$MOEKIT" db list --db "$work/s.db" | grep -q "profile  *done  *unit" && ok "stored run" || bad "db list: $("$MOEKIT" db list --db "$work/s.db")"
n=$("$MOEKIT" db export 1 --db "$work/s.db" --table stages --format csv | wc -l)
[ "$n" -eq 9 ] && ok "8 stage rows" || bad "stage rows: $n"
"$MOEKIT" db export 1 --db "$work/s.db" --table experts --format csv >"$work/e.csv"
sum=$(awk -F, 'NR > 1 { s += $4 } END { print s }' "$work/e.csv")
[ "$sum" = 64 ] && ok "expert loads sum to 64" || bad "expert loads: $(cat "$work/e.csv")"
"$MOEKIT" db export 1 --db "$work/s.db" --table metrics --format csv | grep -q "^gflops," && ok "metrics" || bad "metrics"

# capture: warm-up + reps = 4 steps of 32 tokens
"$MOEKIT" profile $small --capture "$work/t.moetrace" >/dev/null || bad "capture run"
"$MOEKIT" trace info "$work/t.moetrace" >"$work/info" 2>&1
grep -q "layers 1, experts 4, top-k 2" "$work/info" && grep -q "token records 128" "$work/info" \
	&& ok "capture" || bad "capture: $(cat "$work/info")"

# --output: same seed, same bits (and a different seed differs)
"$MOEKIT" profile $small --output "$work/y1.npy" >/dev/null && \
"$MOEKIT" profile $small --output "$work/y2.npy" >/dev/null && \
"$MOEKIT" profile $small --seed 2 --output "$work/y3.npy" >/dev/null || bad "output runs"
cmp -s "$work/y1.npy" "$work/y2.npy" && ok "deterministic output" || bad "outputs differ across runs"
cmp -s "$work/y1.npy" "$work/y3.npy" && bad "seed has no effect" || ok "seed changes output"
exit $fail
