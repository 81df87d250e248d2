#!/bin/sh
# End-to-end tests of `moekit trace import|export|info`: NumPy, JSONL and CSV
# round trips checked against NumPy, the bundled examples, exit codes (2 usage,
# 1 data), one-line errors, json that parses, no partial output left behind.
set -u
: "${MOEKIT:?}" "${PYTHON3:=python3}" "${srcdir:=.}"
. "${srcdir:-.}/tests/lib.sh"

one_line() { # the error is one line (plus the usage hint) and says $2
	n=$(grep -vc "^Try 'moekit" "$tmp/err")
	if [ "$n" -ne 1 ]; then echo "FAIL: $1: $n error lines"; cat "$tmp/err"; fail=1; fi
	if ! grep -q -e "$2" "$tmp/err"; then echo "FAIL: $1: '$2' not in: $(cat "$tmp/err")"; fail=1; fi
}

no_output() { # nothing under the final name, no temporary left
	if [ -e "$1" ] || ls "$tmp" | grep -q '\.tmp\.'; then
		echo "FAIL: partial output left: $(ls "$tmp")"; fail=1
	fi
}

# --help of the command and of every subcommand it lists
check "trace --help" 0 "$MOEKIT" trace --help
subs=$(sed -n 's/^  \([a-z]*\)  .*/\1/p' "$tmp/out")
for s in $subs; do
	check "trace $s --help" 0 "$MOEKIT" trace "$s" --help
	grep -q "^Usage: moekit trace $s" "$tmp/out" || { echo "FAIL: trace $s --help text"; fail=1; }
done
for s in import export info; do
	echo "$subs" | grep -qw "$s" || { echo "FAIL: trace --help does not list $s"; fail=1; }
done
check "trace without subcommand" 2 "$MOEKIT" trace
check "unknown subcommand" 2 "$MOEKIT" trace frob
one_line "unknown subcommand" "unknown subcommand 'frob'"

# The bundled examples read and describe themselves.
ex="$srcdir/traces/examples"
check "info olmoe example" 0 "$MOEKIT" trace info "$ex/olmoe-arxiv.moetrace"
grep -q "experts 64, top-k 8, source ranks 8" "$tmp/out" || { echo "FAIL: olmoe header"; cat "$tmp/out"; fail=1; }
# layer 0: expert 0 took 204013 of 8 x 208896 slots (the real data's figure)
grep -Eq "^0 +0 +1 +1671168 .* 204013 " "$tmp/out" || { echo "FAIL: olmoe layer 0 row"; cat "$tmp/out"; fail=1; }
check "info json" 0 "$MOEKIT" trace info "$ex/mixtral-tokens.moetrace" --format json
"$PYTHON3" - "$tmp/out" <<'PY' || { echo "FAIL: info json content"; fail=1; }
import json, sys
d = json.load(open(sys.argv[1]))
h = d["header"]
assert (h["experts"], h["top_k"], h["ranks"], h["tokens"]) == (8, 2, 4, 512), h
assert h["content"] == "tokens+weights+logits" and h["model"] == "mixtral-8x7b", h
assert [r["tokens"] for r in d["layers"]] == [256, 256]
assert all(abs(r["mean_load"] - 64) < 1e-9 for r in d["layers"])
PY
check "info csv" 0 "$MOEKIT" trace info "$ex/mixtral-arxiv.moetrace" --format csv
[ "$(head -1 "$tmp/out")" = "step,layer,chunks,tokens,stored_bytes,raw_bytes,max_load,mean_load,imbalance" ] ||
	{ echo "FAIL: info csv header"; fail=1; }
[ "$(wc -l <"$tmp/out")" -eq 4 ] || { echo "FAIL: info csv rows"; fail=1; }

check "info --chunks" 0 "$MOEKIT" trace info "$ex/mixtral-arxiv.moetrace" --chunks --format csv
# count chunks of 8 ranks x 8 experts x 8 bytes: 128 + (56 + 512) per chunk
[ "$(sed -n 3p "$tmp/out")" = "0,7,696,raw,0,512,512" ] || { echo "FAIL: info --chunks row"; cat "$tmp/out"; fail=1; }

# NumPy: logits in f32, f16 and bf16, routed and checked against NumPy.
if "$PYTHON3" -c 'import numpy' 2>/dev/null; then
	"$PYTHON3" - "$tmp" <<'PY'
import numpy as np, sys
d = sys.argv[1]
rng = np.random.default_rng(7)
x = rng.standard_normal((3, 50, 8)).astype(np.float32)
np.save(d + "/f32.npy", x)
np.save(d + "/f16.npy", x.astype(np.float16))
np.save(d + "/bf16.npy", (x.view(np.uint32) >> 16).astype(np.uint16))
np.savez(d + "/layers.npz", **{"layer_%d" % l: x[l] for l in range(3)})
np.save(d + "/fortran.npy", np.asfortranarray(x[0]))
np.save(d + "/f64.npy", x.astype(np.float64))
y = x.copy(); y[1, 7, 3] = np.nan
np.save(d + "/nan.npy", y)
PY
	for t in f32 f16 bf16; do
		opt=""
		[ $t = bf16 ] && opt="--dtype bf16"
		check "import $t" 0 "$MOEKIT" trace import "$tmp/$t.npy" --top-k 2 --ranks 2 $opt -o "$tmp/$t.moetrace"
		check "export $t logits" 0 "$MOEKIT" trace export "$tmp/$t.moetrace" -o "$tmp/$t-lg.npy"
		check "export $t ids" 0 "$MOEKIT" trace export "$tmp/$t.moetrace" --array ids -o "$tmp/$t-ids.npy"
		check "export $t weights" 0 "$MOEKIT" trace export "$tmp/$t.moetrace" --array weights -o "$tmp/$t-w.npy"
		"$PYTHON3" - "$tmp" $t <<'PY' || { echo "FAIL: $t against NumPy"; fail=1; }
import numpy as np, sys
d, t = sys.argv[1], sys.argv[2]
x = np.load(d + "/f32.npy")
ref = {"f32": x, "f16": x.astype(np.float16).astype(np.float32),
       "bf16": ((x.view(np.uint32) >> 16) << 16).view(np.float32)}[t]
lg = np.load(d + "/%s-lg.npy" % t)
assert lg.dtype == np.float32 and lg.shape == (3, 50, 8), lg.shape
assert np.array_equal(lg, ref)
p = np.exp(ref - ref.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
ids = np.load(d + "/%s-ids.npy" % t)
top = np.argsort(-p, axis=-1, kind="stable")[..., :2]
assert np.array_equal(ids, top), (ids[0, :3], top[0, :3])
w = np.take_along_axis(p, top, -1); w /= w.sum(-1, keepdims=True)
assert np.allclose(np.load(d + "/%s-w.npy" % t), w, rtol=1e-5, atol=1e-6)
PY
	done
	check "import npz" 0 "$MOEKIT" trace import "$tmp/layers.npz" --top-k 2 --ranks 2 -o "$tmp/npz.moetrace"
	check "export npz trace" 0 "$MOEKIT" trace export "$tmp/npz.moetrace" -o "$tmp/npz.jsonl"
	check "export f32 trace" 0 "$MOEKIT" trace export "$tmp/f32.moetrace" -o "$tmp/f32.jsonl"
	cmp -s "$tmp/npz.jsonl" "$tmp/f32.jsonl" || { echo "FAIL: npz and npy imports differ"; fail=1; }
	# JSONL and CSV round trips: export, import, export again: identical
	check "import jsonl" 0 "$MOEKIT" trace import "$tmp/f32.jsonl" -o "$tmp/j.moetrace"
	check "re-export jsonl" 0 "$MOEKIT" trace export "$tmp/j.moetrace" -o "$tmp/j.jsonl"
	cmp -s "$tmp/f32.jsonl" "$tmp/j.jsonl" || { echo "FAIL: jsonl round trip"; fail=1; }
	check "export csv" 0 "$MOEKIT" trace export "$tmp/f32.moetrace" -o "$tmp/f32.csv"
	check "import csv" 0 "$MOEKIT" trace import "$tmp/f32.csv" --experts 8 --zstd 5 -o "$tmp/c.moetrace"
	check "re-export csv" 0 "$MOEKIT" trace export "$tmp/c.moetrace" --to csv -o -
	cmp -s "$tmp/f32.csv" "$tmp/out" || { echo "FAIL: csv round trip"; fail=1; }
	"$PYTHON3" -c 'import json,sys
for l in open(sys.argv[1]): json.loads(l)' "$tmp/f32.jsonl" || { echo "FAIL: jsonl export does not parse"; fail=1; }

	# Top-k ids and weights as two .npy files: exported back unchanged.
	"$PYTHON3" - "$tmp" <<'PY'
import numpy as np, sys
d = sys.argv[1]
ids = np.array([[[0, 3], [1, -1], [2, 1]], [[3, 2], [0, 1], [1, 0]]], dtype=np.int64)
w = np.array([[[.5, .5], [1, 0], [.7, .3]], [[.5, .5], [.9, .1], [.7, .3]]], dtype=np.float32)
np.save(d + "/ids.npy", ids); np.save(d + "/w.npy", w)
PY
	check "import npy ids + weights" 0 "$MOEKIT" trace import "$tmp/ids.npy" --weights "$tmp/w.npy" --experts 4 -o "$tmp/ids.moetrace"
	check "export ids" 0 "$MOEKIT" trace export "$tmp/ids.moetrace" --array ids -o "$tmp/ids2.npy"
	check "export weights" 0 "$MOEKIT" trace export "$tmp/ids.moetrace" --array weights -o "$tmp/w2.npy"
	"$PYTHON3" -c 'import numpy as np, sys; d = sys.argv[1]
assert np.array_equal(np.load(d + "/ids.npy"), np.load(d + "/ids2.npy"))
assert np.array_equal(np.load(d + "/w.npy"), np.load(d + "/w2.npy"))' "$tmp" || { echo "FAIL: npy ids round trip"; fail=1; }
	check "ids without experts" 2 "$MOEKIT" trace import "$tmp/ids.npy" -o "$tmp/bad.moetrace"
	one_line "ids without experts" "give --experts or --model"
	check "ids beyond experts" 1 "$MOEKIT" trace import "$tmp/ids.npy" --experts 3 -o "$tmp/bad.moetrace"
	one_line "ids beyond experts" "expert id 3: expected 0 to 2"
	no_output "$tmp/bad.moetrace"

	# Data errors: exit 1, one line, nothing left.
	check "fortran order" 1 "$MOEKIT" trace import "$tmp/fortran.npy" --top-k 2 -o "$tmp/bad.moetrace"
	one_line "fortran order" "Fortran order"
	no_output "$tmp/bad.moetrace"
	check "float64" 1 "$MOEKIT" trace import "$tmp/f64.npy" --top-k 2 -o "$tmp/bad.moetrace"
	one_line "float64" "dtype '<f8' is not supported"
	check "nan logits" 1 "$MOEKIT" trace import "$tmp/nan.npy" --top-k 2 -o "$tmp/bad.moetrace"
	one_line "nan logits" "logits (step 0, layer 1): row 7, column 3: value nan"
	no_output "$tmp/bad.moetrace"
	check "model disagrees" 1 "$MOEKIT" trace import "$tmp/f32.npy" --model olmoe-1b-7b -o "$tmp/bad.moetrace"
	one_line "model disagrees" "the model olmoe-1b-7b has 64"
	no_output "$tmp/bad.moetrace"
	# Usage errors: exit 2.
	check "bf16 without --dtype" 2 "$MOEKIT" trace import "$tmp/bf16.npy" --top-k 2 -o "$tmp/bad.moetrace"
	one_line "bf16 without --dtype" "dtype bf16"
	check "logits without top-k" 2 "$MOEKIT" trace import "$tmp/f32.npy" -o "$tmp/bad.moetrace"
	one_line "logits without top-k" "give --top-k"
	no_output "$tmp/bad.moetrace"
else
	echo "skip: NumPy cases (no numpy for $PYTHON3)"
fi

# Count dumps as CSV.
printf 'step,layer,rank,expert,tokens\n0,0,0,1,5\n0,0,1,3,7\n0,1,1,0,2\n' >"$tmp/counts.csv"
check "import counts csv" 0 "$MOEKIT" trace import "$tmp/counts.csv" --experts 4 --top-k 2 -o "$tmp/counts.moetrace"
check "export counts csv" 0 "$MOEKIT" trace export "$tmp/counts.moetrace" --to csv -o -
cmp -s "$tmp/counts.csv" "$tmp/out" || { echo "FAIL: counts csv round trip"; cat "$tmp/out"; fail=1; }

# Damaged traces: exit 1 with the chunk named.
cp "$ex/mixtral-arxiv.moetrace" "$tmp/crc.moetrace"
# flip one payload byte of the second chunk (layer 7): header 128, chunk 56 + 512
printf '\377' | dd of="$tmp/crc.moetrace" bs=1 seek=$((128 + 568 + 56 + 3)) conv=notrunc 2>/dev/null
check "crc mismatch" 1 "$MOEKIT" trace info "$tmp/crc.moetrace"
one_line "crc mismatch" "chunk (step 0, layer 7) at byte 696: crc mismatch"
check "export of a damaged trace" 1 "$MOEKIT" trace export "$tmp/crc.moetrace" -o "$tmp/crc.jsonl"
one_line "export of a damaged trace" "layer 7) at byte 696: crc mismatch"
no_output "$tmp/crc.jsonl"
head -c 1000 "$ex/mixtral-arxiv.moetrace" >"$tmp/short.moetrace"
check "truncated" 1 "$MOEKIT" trace info "$tmp/short.moetrace"
one_line "truncated" "truncated"
printf 'NOTATRACE-------' >"$tmp/magic.moetrace"
check "wrong magic" 1 "$MOEKIT" trace info "$tmp/magic.moetrace"
one_line "wrong magic" "wrong magic"
check "missing file" 1 "$MOEKIT" trace info "$tmp/none.moetrace"
check "export to stdout needs --to" 2 "$MOEKIT" trace export "$ex/mixtral-arxiv.moetrace" -o -
check "export unknown name" 2 "$MOEKIT" trace export "$ex/mixtral-arxiv.moetrace" -o "$tmp/x.txt"
check "export weights of counts" 2 "$MOEKIT" trace export "$ex/mixtral-arxiv.moetrace" --array weights -o "$tmp/x.npy"
no_output "$tmp/x.npy"
check "import without -o" 2 "$MOEKIT" trace import "$tmp/counts.csv"
check "bad --zstd" 2 "$MOEKIT" trace import "$tmp/counts.csv" --zstd 99 -o "$tmp/x.moetrace"
check "bad --format" 2 "$MOEKIT" trace info "$ex/mixtral-arxiv.moetrace" --format xml

exit $fail
