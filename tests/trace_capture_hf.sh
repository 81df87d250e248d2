#!/bin/sh
# traces/capture_hf.py on a tiny randomly initialized Mixtral built in the
# test (no download): its router logits import into a trace whose routing
# equals the experts the model itself selected.  Skipped (77) without a
# python3 that has torch and transformers.
set -u
: "${MOEKIT:?}" "${srcdir:=.}"
py=
for p in ${PYTHON3:-} python3 /usr/bin/python3; do
	if "$p" -c 'import torch, transformers, numpy' >/dev/null 2>&1; then py=$p; break; fi
done
[ -n "$py" ] || { echo "no python3 with torch and transformers: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
head -c 4000 "$srcdir/README.md" >"$tmp/text.txt"

"$py" "$srcdir/traces/capture_hf.py" --tiny-mixtral --text "$tmp/text.txt" --seq-len 200 \
	--max-tokens 1200 --selected "$tmp/selected.npz" -o "$tmp/router.npz" ||
	{ echo "FAIL: capture"; exit 1; }
"$MOEKIT" trace import "$tmp/router.npz" --top-k 2 --ranks 4 -o "$tmp/t.moetrace" ||
	{ echo "FAIL: import"; exit 1; }
"$MOEKIT" trace info "$tmp/t.moetrace" --format json >"$tmp/info.json" || fail=1
for layer in 0 1 2; do
	"$MOEKIT" trace export "$tmp/t.moetrace" --array ids --layer $layer -o "$tmp/ids$layer.npy" ||
		{ echo "FAIL: export layer $layer"; fail=1; }
done
"$py" - "$tmp" <<'PY' || fail=1
import json, sys
import numpy as np
tmp = sys.argv[1]
sel = np.load(tmp + "/selected.npz")
info = json.load(open(tmp + "/info.json"))
ok = True
for layer in range(3):
    ours = np.load("%s/ids%d.npy" % (tmp, layer)).reshape(-1, 2)
    theirs = sel["ids_layer_%d" % layer]
    if ours.shape != (1200, 2) or not (ours == theirs).all():
        print("FAIL: layer %d: moekit's top-2 differs from the model's" % layer)
        ok = False
    else:
        print("ok: layer %d: 1200 tokens routed as the model routed them" % layer)
sys.exit(0 if ok else 1)
PY
exit $fail
