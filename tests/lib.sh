# tests/lib.sh: what the shell tests share, sourced after they set their
# description.  Gives $tmp (a scratch directory removed at exit), $fail
# (exit with it) and:
#   check NAME EXPECTED_RC CMD...  runs CMD, stdout to $tmp/out, stderr to
#                                  $tmp/err, and fails unless it exits RC;
#   err_has NAME TEXT              one error line (bar the usage hint) that
#                                  contains TEXT (a grep pattern);
#   py NAME SCRIPT                 runs python SCRIPT with j = json of $tmp/out.
set -u
: "${MOEKIT:?}" "${PYTHON3:=python3}"
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # check NAME EXPECTED_RC CMD...
	name=$1 want=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		echo "FAIL: $name: exit $rc, expected $want"; sed 's/^/  | /' "$tmp/err"; fail=1
	else
		echo "ok: $name"
	fi
}

err_has() { # err_has NAME TEXT: one error line, containing TEXT
	n=$(grep -vc "^Try 'moekit" "$tmp/err")
	if [ "$n" -ne 1 ]; then echo "FAIL: $1: $n error lines"; cat "$tmp/err"; fail=1; fi
	if ! grep -q -e "$2" "$tmp/err"; then echo "FAIL: $1: '$2' not in: $(cat "$tmp/err")"; fail=1; fi
}

py() { # py NAME SCRIPT: run SCRIPT with j = the json in $tmp/out; fails on exception
	if ! "$PYTHON3" - "$tmp/out" "$2" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
exec(sys.argv[2])
PY
	then echo "FAIL: $1"; fail=1; else echo "ok: $1"; fi
}

