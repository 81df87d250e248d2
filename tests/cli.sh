#!/bin/sh
# End-to-end tests of the moekit command: exit codes, --help of every
# command, one-line errors, json that parses, the store through the CLI.
set -u
: "${MOEKIT:?}" "${PYTHON3:=python3}"
. "${srcdir:-.}/tests/lib.sh"

json_ok() { # json_ok NAME FILE
	if "$PYTHON3" -c 'import json,sys; json.load(open(sys.argv[1]))' "$2" 2>/dev/null; then
		echo "ok: $1 parses"
	else
		echo "FAIL: $1: output is not JSON"; head -5 "$2"; fail=1
	fi
}

one_line() { # the error is exactly one line before the "Try" hint
	n=$(grep -vc "^Try 'moekit" "$tmp/err")
	if [ "$n" -ne 1 ]; then echo "FAIL: $1: $n error lines"; cat "$tmp/err"; fail=1; fi
	if ! grep -q -e "$2" "$tmp/err"; then echo "FAIL: $1: '$2' not in: $(cat "$tmp/err")"; fail=1; fi
}

check "no arguments is a usage error" 2 "$MOEKIT"
check "--help" 0 "$MOEKIT" --help
check "--version" 0 "$MOEKIT" --version
grep -q "^moekit [0-9]" "$tmp/out" || { echo "FAIL: --version output"; fail=1; }
check "unknown command" 2 "$MOEKIT" frobnicate
one_line "unknown command" "unknown command 'frobnicate'"

# Every command in `moekit help` has --help that exits 0 and prints Usage.
"$MOEKIT" help | sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p' >"$tmp/cmds"
[ -s "$tmp/cmds" ] || { echo "FAIL: help lists no commands"; fail=1; }
while read -r c; do
	check "$c --help" 0 "$MOEKIT" "$c" --help
	grep -q "^Usage: moekit" "$tmp/out" || { echo "FAIL: $c --help has no Usage line"; fail=1; }
	check "help $c" 0 "$MOEKIT" help "$c"
	check "$c --bogus-option" 2 "$MOEKIT" "$c" --bogus-option
done <"$tmp/cmds"

# presets
check "presets list" 0 "$MOEKIT" presets list
for p in switch-base-128 mixtral-8x7b mixtral-8x22b deepseek-v3 qwen3-235b-a22b olmoe-1b-7b \
	gpt-oss-120b dgx-h100 hgx-h800 dgx-a100 gb200-nvl72 pcie-l40s; do
	grep -q " $p " "$tmp/out" || { echo "FAIL: presets list lacks $p"; fail=1; }
done
check "presets list json" 0 "$MOEKIT" presets list --format json
json_ok "presets list json" "$tmp/out"
check "presets list csv" 0 "$MOEKIT" presets list --format csv
head -1 "$tmp/out" | grep -q '^kind,name,summary$' || { echo "FAIL: csv header"; fail=1; }
check "presets show cluster with nodes" 0 "$MOEKIT" presets show dgx-h100:4 --format json
json_ok "presets show json" "$tmp/out"
grep -q '"4"' "$tmp/out" || { echo "FAIL: dgx-h100:4 does not show 4 nodes"; fail=1; }
check "unknown preset" 1 "$MOEKIT" presets show nosuch
one_line "unknown preset" "unknown preset 'nosuch': expected one of .*mixtral-8x7b"
check "bad format" 2 "$MOEKIT" presets list --format xml
one_line "bad format" "--format: unknown format 'xml'"

# a user's file on top of a preset; a malformed one is exit 2 with file:line
printf 'base = dgx-h100\n[nic]\ncount = 4\nbw = 800Gb/s\n' >"$tmp/mine.ini"
check "user cluster file" 0 "$MOEKIT" presets show --cluster "$tmp/mine.ini:2"
grep -q "100 GB/s" "$tmp/out" || { echo "FAIL: override of nic.bw not shown"; fail=1; }
printf 'base = dgx-h100\n[nic]\ncount = 3\n' >"$tmp/bad.ini"
check "inconsistent config" 2 "$MOEKIT" presets show --cluster "$tmp/bad.ini"
one_line "inconsistent config" "bad.ini:3: nic.count: 3 NICs do not fit 8 GPUs"
printf '[model]\nname = x\nlayrs = 3\n' >"$tmp/badm.ini"
check "unknown key" 2 "$MOEKIT" presets show --model "$tmp/badm.ini"
one_line "unknown key" "badm.ini:3: model.layrs: unknown key"

# the store through the CLI
check "db list without a store" 1 "$MOEKIT" db list --db "$tmp/none.db"
one_line "db list without a store" "no such results store"
[ ! -e "$tmp/none.db" ] || { echo "FAIL: db list created a file"; fail=1; }
check "db show bad id" 2 "$MOEKIT" db show abc --db "$tmp/none.db"
check "db unknown action" 2 "$MOEKIT" db drop
if command -v sqlite3 >/dev/null 2>&1; then
	sqlite3 "$tmp/new.db" "CREATE TABLE t(x); PRAGMA user_version = 99;"
	cp "$tmp/new.db" "$tmp/new.copy"
	check "newer schema" 1 "$MOEKIT" db list --db "$tmp/new.db"
	one_line "newer schema" "schema version 99 is newer"
	cmp -s "$tmp/new.db" "$tmp/new.copy" || { echo "FAIL: newer store was modified"; fail=1; }
fi

exit $fail
