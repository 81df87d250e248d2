#!/bin/sh
# moekit sweep: the same results on 1 job, 2 jobs and 2 MPI ranks; a sweep
# killed in the middle and resumed equals an uninterrupted one; bad specs.
. "${srcdir:-.}/tests/lib.sh"

cat >"$tmp/spec.ini" <<'SPEC'
[sweep]
name = t
[fixed]
model = mixtral-8x7b
tokens-per-gpu = 512
layers = 2
[axes]
cluster = dgx-h100:1, dgx-h100:2
top-k = 1, 2
pattern = uniform, zipf:1.2
SPEC

# Every done run of a store, keyed by label, without ids and times.
canon() {
	"$PYTHON3" - "$MOEKIT" "$1" <<'PY'
import json, subprocess, sys
moekit, db = sys.argv[1], sys.argv[2]
runs = json.loads(subprocess.check_output([moekit, "db", "list", "--db", db, "--format", "json"]))["runs"]
out = {}
for r in runs:
    if r["status"] != "done":
        continue
    e = json.loads(subprocess.check_output([moekit, "db", "export", str(r["id"]), "--db", db]))
    for k in ("id", "started_at", "finished_at"):
        e["run"].pop(k, None)
    out[r["label"]] = e
print(json.dumps(out, sort_keys=True))
PY
}

check "sweep, 1 job" 0 "$MOEKIT" sweep "$tmp/spec.ini" --db "$tmp/a.db" --quiet
canon "$tmp/a.db" >"$tmp/a.json"
n=$("$PYTHON3" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$tmp/a.json")
[ "$n" -eq 8 ] || { echo "FAIL: 8 points expected, $n stored"; fail=1; }

check "sweep, 2 jobs" 0 "$MOEKIT" sweep "$tmp/spec.ini" --db "$tmp/b.db" --jobs 2 --quiet
canon "$tmp/b.db" >"$tmp/b.json"
cmp -s "$tmp/a.json" "$tmp/b.json" && echo "ok: 2 jobs give the same results" ||
	{ echo "FAIL: 1 job and 2 jobs differ"; fail=1; }

check "resume stores nothing new" 0 "$MOEKIT" sweep "$tmp/spec.ini" --db "$tmp/b.db" --jobs 2
grep -q "0 run now, 8 already done" "$tmp/err" || { echo "FAIL: resume: $(cat "$tmp/err")"; fail=1; }

# Killed after 3 points (as kill -9 would), then resumed.
MOEKIT_SWEEP_KILL_AFTER=3 "$MOEKIT" sweep "$tmp/spec.ini" --db "$tmp/c.db" --quiet 2>/dev/null
rc=$?
[ "$rc" -ne 0 ] || { echo "FAIL: the killed sweep exited 0"; fail=1; }
done_now=$("$MOEKIT" db list --db "$tmp/c.db" --format csv | grep -c ',done,')
[ "$done_now" -eq 3 ] && echo "ok: killed after 3 points" || { echo "FAIL: $done_now done after the kill"; fail=1; }
check "resumed sweep" 0 "$MOEKIT" sweep "$tmp/spec.ini" --db "$tmp/c.db" --quiet
grep -q "5 run now, 3 already done" "$tmp/err" || { echo "FAIL: resumed: $(cat "$tmp/err")"; fail=1; }
canon "$tmp/c.db" >"$tmp/c.json"
cmp -s "$tmp/a.json" "$tmp/c.json" && echo "ok: killed and resumed equals uninterrupted" ||
	{ echo "FAIL: killed and resumed differs"; fail=1; }

# Under MPI, when built with it and a launcher is there.
if "$MOEKIT" version | grep -q "^mpi yes" && command -v mpiexec >/dev/null 2>&1; then
	if mpiexec -n 2 "$MOEKIT" sweep "$tmp/spec.ini" --db "$tmp/d.db" --quiet >"$tmp/out" 2>"$tmp/err"; then
		canon "$tmp/d.db" >"$tmp/d.json"
		cmp -s "$tmp/a.json" "$tmp/d.json" && echo "ok: 2 MPI ranks give the same results" ||
			{ echo "FAIL: 1 job and 2 MPI ranks differ"; fail=1; }
	else
		echo "FAIL: mpiexec -n 2 moekit sweep"; cat "$tmp/err"; fail=1
	fi
fi

# Bad specs and a failing point.
printf '[sweep]\nname = x\n[axes]\nwarp = 1, 2\n' >"$tmp/bad.ini"
check "unknown axis" 2 "$MOEKIT" sweep "$tmp/bad.ini" --db "$tmp/e.db"
grep -q "bad.ini:4: axes.warp: unknown option" "$tmp/err" || { echo "FAIL: message: $(cat "$tmp/err")"; fail=1; }
[ ! -e "$tmp/e.db" ] || { echo "FAIL: a bad spec created the store"; fail=1; }
printf '[sweep]\nname = x\n' >"$tmp/empty.ini"
check "empty product" 2 "$MOEKIT" sweep "$tmp/empty.ini" --db "$tmp/e.db"
printf '[sweep]\nname = y\n[fixed]\nmodel = mixtral-8x7b\nlayers = 1\n[axes]\ncluster = dgx-h100:1, no-such-cluster\n' >"$tmp/half.ini"
check "a failing point" 1 "$MOEKIT" sweep "$tmp/half.ini" --db "$tmp/f.db"
grep -q "1 run now, 0 already done, 1 failed" "$tmp/err" || { echo "FAIL: $(cat "$tmp/err")"; fail=1; }
exit $fail
