#!/bin/sh
# tests/study_loop.sh: the measure -> calibrate -> simulate -> validate loop
# end to end on this machine: profile the CPU forward pass at 4 token
# counts (1 thread: one "GPU"), the expert-parallel layer on 2 MPI ranks and
# the MPI all-to-all; calibrate a cluster file from them; load it, simulate
# on it, validate every profile run against its simulation.  Checks that
# the fitted values are positive and finite, the file round-trips, every
# stage has a finite relative error, and the error paths (too few points,
# no matching run) write nothing.  The errors themselves depend on the
# machine and its load: they are printed, not bounded.  Skips (77) without
# MPI or mpiexec.
MOEKIT=${MOEKIT:-./moekit}
PY=${PYTHON3:-python3}
MPIEXEC=${MPIEXEC:-mpiexec}
if "$MOEKIT" profile a2a --help 2>&1 | grep -q "no MPI"; then
	echo "study_loop: moekit built without MPI: skipped"
	exit 77
fi
if ! command -v "$MPIEXEC" >/dev/null; then
	echo "study_loop: no $MPIEXEC: skipped"
	exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/study_loop.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
db=$work/s.db
fail=0
shape="--model mixtral-8x7b --hidden 256 --ffn 512 --experts 8 --threads 1 --seed 1 -q"

# 1. measure
for n in 32 128 512 2048; do
	"$MOEKIT" profile $shape --tokens $n --reps 5 --warmup 1 --db "$db" >/dev/null \
		|| { echo "FAIL: profile --tokens $n"; exit 1; }
done
timeout 120 "$MPIEXEC" -n 2 "$MOEKIT" profile $shape --ep 2 --tokens 512 --reps 5 --warmup 1 \
	--db "$db" >/dev/null || { echo "FAIL: profile --ep 2"; exit 1; }
timeout 120 "$MPIEXEC" -n 2 "$MOEKIT" profile a2a --min-bytes 1KiB --max-bytes 4MiB --iters 20 \
	--warmup 3 --db "$db" >/dev/null || { echo "FAIL: profile a2a"; exit 1; }
# runs 1-4 forward, 5 expert-parallel, 6 all-to-all

# 2. too few points: a clear error, exit 2, no file
"$MOEKIT" calibrate --db "$db" -o "$work/few.ini" --runs 1,2,6 2>"$work/err" >/dev/null
rc=$?
if [ $rc -eq 2 ] && grep -q "compute fit: needs at least 3 .*found 2" "$work/err" && [ ! -e "$work/few.ini" ]; then
	echo "ok: too few points: $(cat "$work/err")"
else
	echo "FAIL: too few points: rc $rc: $(cat "$work/err")"; fail=1
fi

# 3. calibrate
"$MOEKIT" calibrate --db "$db" -o "$work/here.ini" --name here >"$work/cal.txt" \
	|| { echo "FAIL: calibrate"; cat "$work/cal.txt"; exit 1; }
cat "$work/cal.txt"
"$MOEKIT" calibrate --db "$db" -o "$work/here2.ini" --name here --format csv >"$work/cal.csv" \
	|| { echo "FAIL: calibrate csv"; exit 1; }
cmp -s "$work/here.ini" "$work/here2.ini" && echo "ok: calibration is deterministic" \
	|| { echo "FAIL: two calibrations of one store differ"; fail=1; }
"$PY" - "$work/cal.csv" <<'PY' && echo "ok: fitted values positive and finite" || { echo "FAIL: fitted values"; fail=1; }
import csv, math, sys
rows = {(r["fit"], r["param"]): r for r in csv.DictReader(open(sys.argv[1]))}
for key in [("compute", "peak_flops"), ("compute", "eff_max"), ("link", "latency"), ("link", "bandwidth")]:
    v = float(rows[key]["value"])
    assert math.isfinite(v) and v > 0, (key, v)
for key in [("compute", "eff_max"), ("compute", "m_half"), ("link", "latency"), ("link", "bandwidth")]:
    se = float(rows[key]["std_err"])
    assert math.isfinite(se) and se >= 0, (key, se)
assert float(rows[("compute", "m_half")]["value"]) >= 0
for fit in ("compute", "link"):
    r2 = float(rows[(fit, "r2")]["value"])
    assert math.isfinite(r2) and r2 <= 1, (fit, r2)
PY
grep -q "^; runs used: 1,2,3,4,6$" "$work/here.ini" && grep -q "^; compute fit (4 runs)" "$work/here.ini" \
	&& grep -q "^;   eff_max = .* +- " "$work/here.ini" && echo "ok: fit comments in the file" \
	|| { echo "FAIL: comments"; cat "$work/here.ini"; fail=1; }

# 4. the file loads and simulates
"$MOEKIT" presets show --cluster "$work/here.ini" >"$work/show.txt" \
	&& grep -q "gpus_per_node  *2" "$work/show.txt" && grep -q "intra.efficiency  *1 " "$work/show.txt" \
	&& echo "ok: presets show --cluster" || { echo "FAIL: presets show"; cat "$work/show.txt"; fail=1; }
"$MOEKIT" sim --model mixtral-8x7b --cluster "$work/here.ini" --tokens-per-gpu 64 --quiet >/dev/null \
	&& echo "ok: sim --cluster" || { echo "FAIL: sim --cluster"; fail=1; }

# a preset's layout and network with this machine's compute and links
"$MOEKIT" calibrate --db "$db" -o "$work/based.ini" --base dgx-h100 --name based >/dev/null \
	&& head -1 "$work/based.ini" | grep -q "^base = dgx-h100$" \
	&& "$MOEKIT" presets show --cluster "$work/based.ini:2" >"$work/show2.txt" \
	&& grep -q "gpus_per_node  *8" "$work/show2.txt" && grep -q "nic.count  *8" "$work/show2.txt" \
	&& grep -q "gpu.type  *cpu-process-1t" "$work/show2.txt" \
	&& "$MOEKIT" sim --model mixtral-8x7b --cluster "$work/based.ini:2" --tokens-per-gpu 64 --quiet >/dev/null \
	&& echo "ok: calibrate --base" || { echo "FAIL: calibrate --base"; cat "$work/show2.txt"; fail=1; }

# 5. validate: every profile run (4 forward + 1 EP), stored as sim runs
"$MOEKIT" validate --db "$db" --cluster "$work/here.ini" >"$work/val.txt" \
	|| { echo "FAIL: validate"; cat "$work/val.txt"; exit 1; }
cat "$work/val.txt"
"$MOEKIT" validate --db "$db" --cluster "$work/here.ini" --no-store --format csv >"$work/val.csv" \
	|| { echo "FAIL: validate csv"; exit 1; }
"$PY" - "$work/val.csv" <<'PY' && echo "ok: relative errors for every stage" || { echo "FAIL: validate rows"; fail=1; }
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert {r["run"] for r in rows} == {"1", "2", "3", "4", "5"}, rows
ep = {r["stage"]: r for r in rows if r["run"] == "5"}
assert set(ep) == {"experts", "dispatch", "combine", "total"}, ep
for r in rows:
    for c in ("measured_ms", "predicted_ms", "rel_err_%"):
        assert math.isfinite(float(r[c])), r
    assert float(r["measured_ms"]) > 0 and float(r["predicted_ms"]) > 0, r
PY
n=$("$MOEKIT" db list --db "$db" | grep -c "validate of run")
[ "$n" -eq 5 ] && echo "ok: 5 simulations stored" || { echo "FAIL: $n simulations stored"; fail=1; }
"$MOEKIT" db export 11 --db "$db" --table metrics --format csv | grep -q "^relerr_dispatch," \
	&& echo "ok: stored relative errors" || { echo "FAIL: stored metrics of the EP validation"; fail=1; }
# on a cluster of node groups, runs narrower than a node (1 and 2 GPUs) are
# simulated on one node of the first group, as moekit sim does
"$MOEKIT" validate --db "$db" --cluster mixed-h100-a100 --no-store --format csv >"$work/mixed.csv" \
	2>"$work/err" && [ "$(grep -c "^5," "$work/mixed.csv")" -eq 4 ] \
	&& echo "ok: validate on node groups" || { echo "FAIL: validate on node groups: $(cat "$work/err")"; fail=1; }

# 6. no matching run: an error, nothing stored
"$MOEKIT" validate --db "$db" --cluster "$work/here.ini" --runs 6 2>"$work/err" >/dev/null
rc=$?
[ $rc -eq 2 ] && grep -q "run 6 has no plan to simulate" "$work/err" && echo "ok: a2a run refused" \
	|| { echo "FAIL: --runs 6: rc $rc $(cat "$work/err")"; fail=1; }
timeout 60 "$MPIEXEC" -n 2 "$MOEKIT" profile a2a --max-bytes 8KiB --iters 2 --db "$work/a.db" >/dev/null
"$MOEKIT" validate --db "$work/a.db" --cluster "$work/here.ini" 2>"$work/err" >/dev/null
rc=$?
n=$("$MOEKIT" db list --db "$work/a.db" | grep -c "validate of")
[ $rc -eq 1 ] && grep -q "no profile run in the store has a plan" "$work/err" && [ "$n" -eq 0 ] \
	&& echo "ok: no matching run" || { echo "FAIL: no matching run: rc $rc, $n stored: $(cat "$work/err")"; fail=1; }
exit $fail
