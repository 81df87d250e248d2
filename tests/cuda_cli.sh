#!/bin/sh
# tests/cuda_cli.sh: `moekit profile --device cuda` and `moekit profile a2a
# --device cuda` end to end.  Usage errors exit 2 everywhere; without a GPU
# (the CI machine) the layer and the a2a benchmark say "no CUDA device" and
# exit 1; with a GPU a small layer runs (table and json, stored stages and
# expert loads) and the NCCL sweep prints its rows.  Skips (77) while the
# command has no --device option.
MOEKIT=${MOEKIT:-./moekit}
work=$(mktemp -d "${TMPDIR:-/tmp}/cuda_cli.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }

"$MOEKIT" profile --help 2>/dev/null | grep -q -- '--device' || {
	echo "moekit profile has no --device option yet: skipped"; exit 77; }

# expect CODE NEEDLE ARGS...: exit status and the first stderr line
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
small="--model mixtral-8x7b --hidden 64 --ffn 48 --experts 4 --tokens 32 --reps 3 --warmup 1 -q"

expect 2 "--device gpu" $small --device gpu
expect 2 "--device cuda:N" $small --device cuda:x
expect 2 "--dtype fp8" $small --device cuda --dtype fp8
expect 2 "--ep with --device cuda" $small --device cuda --ep 2
expect 2 "--capture" $small --device cuda --capture "$work/t.moetrace"

if ./tests/cuda_gpu >/dev/null 2>&1; [ $? -eq 77 ]; then
	expect 1 "no CUDA device" $small --device cuda
	expect 1 "no CUDA device" $small --device cuda:0 --dtype fp16
	expect 1 "no CUDA device" a2a --device cuda --max-bytes 64KiB
	[ ! -e "$work/x.db" ] || bad "a store file appeared"
else
	"$MOEKIT" profile $small --device cuda --db "$work/x.db" >"$work/out" 2>"$work/err" &&
		grep -q 'CUDA' "$work/out" && grep -q '^total' "$work/out" &&
		ok "a layer on the GPU" || bad "GPU layer: $(cat "$work/err")"
	"$MOEKIT" profile $small --device cuda --dtype fp16 --format json >"$work/j" 2>"$work/err" &&
		grep -q '"dtype": "fp16"' "$work/j" && ok "json, fp16" || bad "json: $(cat "$work/err")"
	"$MOEKIT" db export 1 --db "$work/x.db" --table stages --format csv | grep -q '^combine,' &&
		ok "stages stored" || bad "stored stages"
	[ "$("$MOEKIT" db export 1 --db "$work/x.db" --table experts --format csv | wc -l)" -eq 5 ] &&
		ok "expert loads stored" || bad "stored expert loads"
	"$MOEKIT" profile a2a --device cuda --max-bytes 256KiB --iters 3 --warmup 1 >"$work/a" 2>"$work/err" &&
		grep -q 'busbw' "$work/a" && ok "NCCL sweep" || bad "a2a: $(cat "$work/err")"
fi
exit $fail
