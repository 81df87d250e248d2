#!/bin/sh
# End-to-end tests of `moekit report`, `moekit compare` and
# `moekit export-timeline` on a store written by `check_reports
# --make-store` (sim-like and profile-like runs with hand-chosen numbers):
# figures rendered by the real gnuplot and valid, data files equal to the
# store, timelines within their runs, compare's deltas, the behaviour
# without gnuplot, bad run ids.  The checks of content are in
# tests/data/reports/verify.py, which reads the store with Python's sqlite3.
set -u
: "${MOEKIT:?}" "${PYTHON3:=python3}" "${srcdir:=.}"
verify="$srcdir/tests/data/reports/verify.py"
mkstore="$(dirname "$MOEKIT")/tests/check_reports"
. "${srcdir:-.}/tests/lib.sh"

says() { # says NAME PATTERN: stderr holds PATTERN, the error is one line
	if ! grep -q -e "$2" "$tmp/err"; then
		echo "FAIL: $1: '$2' not in: $(cat "$tmp/err")"; fail=1
	fi
	n=$(grep -vc -e "^Try 'moekit" -e "skipped" -e "note:" "$tmp/err")
	if [ "$n" -ne 1 ]; then echo "FAIL: $1: $n message lines"; cat "$tmp/err"; fail=1; fi
}

ok_verify() { # ok_verify NAME ARGS...
	name=$1
	shift
	if "$PYTHON3" "$verify" "$@" >"$tmp/v" 2>&1; then
		echo "ok: $name"
	else
		echo "FAIL: $name"; sed 's/^/  | /' "$tmp/v"; fail=1
	fi
}

[ -x "$mkstore" ] || { echo "SKIP: $mkstore not built"; exit 77; }
"$mkstore" --make-store "$tmp/s.db" || { echo "FAIL: making the store"; exit 1; }
db="$tmp/s.db"

if command -v gnuplot >/dev/null 2>&1; then
	check "report, all formats" 0 "$MOEKIT" report --db "$db" --out "$tmp/all" \
		--formats png,svg,pdf
	grep -q "^$tmp/all/index.html$" "$tmp/out" || { echo "FAIL: index not listed"; fail=1; }
	grep -q "note: the runs are of different models" "$tmp/err" ||
		{ echo "FAIL: no note on the two models"; fail=1; }
	ok_verify "figures valid, data equal to the store" figures "$db" "$tmp/all" png,svg,pdf

	check "report of runs 1,2" 0 "$MOEKIT" report --db "$db" --runs 1,2 --out "$tmp/two"
	ok_verify "runs 1,2: figures and data" figures "$db" "$tmp/two" png 1,2
	[ -e "$tmp/two/routing.png" ] || { echo "FAIL: routing figure of top-1 vs top-2"; fail=1; }
	grep -q "skipped scaling: no two sim runs" "$tmp/err" ||
		{ echo "FAIL: the skipped scaling figure is not explained"; fail=1; }
	grep -q "Figures not drawn" "$tmp/two/index.html" &&
		grep -q "scaling: no two sim runs" "$tmp/two/index.html" ||
		{ echo "FAIL: index.html does not say what was skipped"; fail=1; }

	check "report with a window" 0 "$MOEKIT" report --db "$db" --runs 1 --out "$tmp/w" \
		--window 0.001:0.003
	grep -q '^set xrange \[1 : 3\]$' "$tmp/w/timeline_run1.gp" &&
		grep -q '^set xrange \[1 : 3\]$' "$tmp/w/links_run1.gp" ||
		{ echo "FAIL: --window: no x range 1 to 3 ms in the scripts"; fail=1; }
	ok_verify "window: data files still hold every row" figures "$db" "$tmp/w" png 1

	check "report of a range, svg" 0 "$MOEKIT" report --db "$db" --runs 3-4 --out "$tmp/r" \
		--formats svg -q
	[ -s "$tmp/out" ] && { echo "FAIL: --quiet printed"; fail=1; }
	ok_verify "runs 3-4: figures and data" figures "$db" "$tmp/r" svg 3,4
else
	echo "SKIP: gnuplot not installed: rendering checks left out"
fi

# No gnuplot on PATH: data and scripts, no index, exit 1, how to render.
# A PATH with every program but gnuplot (the libtool wrapper $MOEKIT needs
# the shell's tools).
mkdir "$tmp/bin"
IFS_save=$IFS
IFS=:
for d in $PATH; do
	IFS=$IFS_save
	[ -d "$d" ] || continue
	for f in "$d"/*; do
		b=${f##*/}
		[ "$b" = gnuplot ] || [ -e "$tmp/bin/$b" ] || ln -s "$f" "$tmp/bin/$b" 2>/dev/null
	done
done
IFS=$IFS_save
check "no gnuplot: exit 1" 1 env PATH="$tmp/bin" "$MOEKIT" report --db "$db" --out "$tmp/nog"
says "no gnuplot" "gnuplot not found on PATH.*gnuplot $tmp/nog/NAME.gp"
for f in breakdown timeline_run1 links_run1 experts_run1 gpus routing scaling simmeas stages \
	gflops; do
	[ -s "$tmp/nog/$f.gp" ] && [ -s "$tmp/nog/$f.dat" ] ||
		{ echo "FAIL: no gnuplot: $f.gp or $f.dat missing"; fail=1; }
done
[ -e "$tmp/nog/index.html" ] && { echo "FAIL: no gnuplot: index.html written"; fail=1; }
[ -e "$tmp/nog/breakdown.png" ] && { echo "FAIL: no gnuplot: a figure appeared"; fail=1; }
if command -v gnuplot >/dev/null 2>&1; then
	# Rendered later, from another directory, as the message says.
	(cd / && gnuplot "$tmp/nog/breakdown.gp") 2>"$tmp/err" &&
		[ -s "$tmp/nog/breakdown.png" ] ||
		{ echo "FAIL: rendering a kept script later"; cat "$tmp/err"; fail=1; }
fi

# Bad input.
check "unknown run" 1 "$MOEKIT" report --db "$db" --runs 1,42 --out "$tmp/x"
says "unknown run" "no run 42"
check "failed run" 2 "$MOEKIT" report --db "$db" --runs 6 --out "$tmp/x"
says "failed run" "run 6 is 'failed', not done"
check "running run" 2 "$MOEKIT" report --db "$db" --runs 7 --out "$tmp/x"
says "running run" "run 7 is 'running', not done"
check "run ids not numbers" 2 "$MOEKIT" report --db "$db" --runs 1,x --out "$tmp/x"
says "run ids not numbers" "--runs: '1,x' is not a list of run ids"
check "run id listed twice" 2 "$MOEKIT" report --db "$db" --runs 1,2,1 --out "$tmp/x"
says "run id listed twice" "run 1 is listed twice"
check "unknown format" 2 "$MOEKIT" report --db "$db" --out "$tmp/x" --formats png,gif
says "unknown format" "unknown format 'gif'"
check "bad window" 2 "$MOEKIT" report --db "$db" --out "$tmp/x" --window 0.003:0.001
says "bad window" "--window: '0.003:0.001': expected 0 <= START < END"
check "window not a range" 2 "$MOEKIT" report --db "$db" --out "$tmp/x" --window 5
says "window not a range" "--window: '5' is not START:END"
check "no --out" 2 "$MOEKIT" report --db "$db"
says "no --out" "--out DIR is required"
check "missing store" 1 "$MOEKIT" report --db "$tmp/none.db" --out "$tmp/x"
"$mkstore" --make-store "$tmp/e.db" && "$PYTHON3" -c '
import sqlite3, sys
db = sqlite3.connect(sys.argv[1]); db.execute("DELETE FROM runs"); db.commit()' "$tmp/e.db"
check "empty store" 1 "$MOEKIT" report --db "$tmp/e.db" --out "$tmp/x"
says "empty store" "holds no done runs"
check "report --help" 0 "$MOEKIT" report --help

# compare
check "compare json" 0 "$MOEKIT" compare --db "$db" --format json 1 2 3
cp "$tmp/out" "$tmp/c.json"
ok_verify "compare values and deltas" compare "$db" "$tmp/c.json" 1 2 3
check "compare table" 0 "$MOEKIT" compare --db "$db" 1 2
grep -q "^param  *routing.top_k  *2  *1  *-1  *-50" "$tmp/out" ||
	{ echo "FAIL: compare table: routing.top_k row"; cat "$tmp/out"; fail=1; }
grep -q "plan.ep" "$tmp/out" && { echo "FAIL: compare shows an equal parameter"; fail=1; }
check "compare csv" 0 "$MOEKIT" compare --db "$db" --format csv 2 1
"$PYTHON3" -c '
import csv, sys
rows = {r["quantity"]: r for r in csv.DictReader(open(sys.argv[1]))}
r = rows["sum dropped"]
assert float(r["run 2"]) == 0 and float(r["run 1"]) == 432, r
assert float(r["run 1 abs diff"]) == 432 and r["run 1 rel diff (%)"] == "", r
' "$tmp/out" && echo "ok: compare csv against a zero" ||
	{ echo "FAIL: compare csv"; cat "$tmp/out"; fail=1; }
check "compare different models" 2 "$MOEKIT" compare --db "$db" 1 5
says "compare different models" "runs 1 (mixtral-8x7b) and 5 (olmoe-1b-7b) are of different models"
check "compare one run" 2 "$MOEKIT" compare --db "$db" 1
says "compare one run" "expected at least two RUN ids"
check "compare unknown run" 1 "$MOEKIT" compare --db "$db" 1 42
says "compare unknown run" "no run 42"
check "compare bad id" 2 "$MOEKIT" compare --db "$db" 1 two
check "compare --help" 0 "$MOEKIT" compare --help

# export-timeline
for r in 1 3 5 4; do
	check "export-timeline run $r" 0 "$MOEKIT" export-timeline "$r" -o "$tmp/t$r.json" --db "$db"
	ok_verify "timeline of run $r within its span" timeline "$db" "$r" "$tmp/t$r.json"
done
ls "$tmp"/*.tmp >/dev/null 2>&1 && { echo "FAIL: a temporary file was left"; fail=1; }
check "export-timeline failed run" 2 "$MOEKIT" export-timeline 6 -o "$tmp/t.json" --db "$db"
says "export-timeline failed run" "run 6 is 'failed'"
check "export-timeline unknown run" 1 "$MOEKIT" export-timeline 42 -o "$tmp/t.json" --db "$db"
says "export-timeline unknown run" "no run 42"
check "export-timeline without -o" 2 "$MOEKIT" export-timeline 1 --db "$db"
says "export-timeline without -o" "-o FILE.json is required"
check "export-timeline unwritable" 1 "$MOEKIT" export-timeline 1 -o "$tmp/no/dir/t.json" \
	--db "$db"
check "export-timeline --help" 0 "$MOEKIT" export-timeline --help

exit $fail
