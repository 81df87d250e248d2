#!/bin/sh
# End-to-end tests of `moekit sim`: the json shape scripts rely on, top-1
# moving fewer bytes than top-2 on the same draws, determinism, a skewed
# pattern making the GPU of the hottest expert the busiest, the store, the
# analytic mode next to the event model, the default coalescing window next
# to the exact model, replaying token- and count-level
# traces, and usage errors (exit 2).
set -u
: "${MOEKIT:?}" "${PYTHON3:=python3}"
. "${srcdir:-.}/tests/lib.sh"

base="--model olmoe-1b-7b --cluster dgx-h100:2 --ep 16 --tokens-per-gpu 256 --layers 3 --quiet"
check "top-1 and top-2" 0 "$MOEKIT" sim $base --top-k 2,1 --format json
cp "$tmp/out" "$tmp/k12.json"
py "json shape" '
r = j["runs"]
assert [x["top_k"] for x in r] == [1, 2], r
for x in r:
    for key in ("run_id", "top_k", "step_time_s", "tokens_per_s", "layers", "bottleneck",
                "busiest_gpu", "idlest_gpu", "imbalance", "dropped"):
        assert key in x, key
    assert x["run_id"] is None
    assert len(x["layers"]) == 3
    for l in x["layers"]:
        for key in ("layer", "phase", "dispatch_s", "compute_s", "combine_s", "exposed_s", "total_s"):
            assert key in l, key
    assert x["bottleneck"]["utilization"] > 0
    assert abs(x["tokens"] + x["dropped"] - 3 * 16 * 256 * x["top_k"]) < 1e-9
'
py "top-1 moves fewer bytes than top-2" '
r = j["runs"]
assert r[0]["network_bytes"] < r[1]["network_bytes"], r
assert r[0]["step_time_s"] < r[1]["step_time_s"]
'
check "same inputs, same output" 0 "$MOEKIT" sim $base --top-k 2,1 --format json
cmp -s "$tmp/out" "$tmp/k12.json" || { echo "FAIL: output differs between runs"; fail=1; }

check "zipf pattern" 0 "$MOEKIT" sim $base --pattern zipf:1.5 --placement contiguous --format json
py "skew: busiest GPU well above the idlest, imbalance > 1.5" '
x = j["runs"][0]
assert x["busiest_gpu"]["busy_s"] > 1.5 * x["idlest_gpu"]["busy_s"], x
assert x["imbalance"] > 1.5, x["imbalance"]
'
cp "$tmp/out" "$tmp/zipf.json"
py "default window 1e-3 in the json" 'assert j["coalesce"] == 1e-3 and j["mode"] == "events", (j["coalesce"], j["mode"])'
# the default window against the exact model on the same draws: the step
# and every layer within the window (measured: 6e-5 on layer 2, 0 on the
# others)
check "zipf pattern, exact" 0 "$MOEKIT" sim $base --pattern zipf:1.5 --placement contiguous --coalesce 0 --format json
"$PYTHON3" -c '
import json, sys
d = json.load(open(sys.argv[1])); e = json.load(open(sys.argv[2]))
assert e["coalesce"] == 0
a, b = d["runs"][0], e["runs"][0]
assert abs(a["step_time_s"] - b["step_time_s"]) <= 1e-3 * b["step_time_s"], (a["step_time_s"], b["step_time_s"])
for x, y in zip(a["layers"], b["layers"]):
    for k in ("dispatch_s", "combine_s", "total_s"):
        assert abs(x[k] - y[k]) <= 1e-3 * y[k], (k, x[k], y[k])
' "$tmp/zipf.json" "$tmp/out" && echo "ok: default window within 1e-3 of exact" || { echo "FAIL: default window against exact"; fail=1; }
check "balanced placement with replicas" 0 "$MOEKIT" sim $base --pattern zipf:1.5 --placement balanced --redundant-experts 8 --format json
cp "$tmp/out" "$tmp/bal.json"
"$MOEKIT" sim $base --pattern zipf:1.5 --placement contiguous --format json > "$tmp/out"
"$PYTHON3" -c '
import json, sys
b = json.load(open(sys.argv[1]))["runs"][0]; c = json.load(open(sys.argv[2]))["runs"][0]
assert b["imbalance"] < c["imbalance"], (b["imbalance"], c["imbalance"])
' "$tmp/bal.json" "$tmp/out" && echo "ok: balanced placement lowers imbalance" || { echo "FAIL: balanced imbalance"; fail=1; }

"$MOEKIT" sim $base --format json > "$tmp/direct.json"
for a in hierarchical nvlink-forward; do
	check "algorithm $a" 0 "$MOEKIT" sim $base --algorithm $a --format json
	"$PYTHON3" -c '
import json, sys
x = json.load(open(sys.argv[1]))["runs"][0]; d = json.load(open(sys.argv[2]))["runs"][0]
assert x["network_bytes"] < d["network_bytes"], (x["network_bytes"], d["network_bytes"])
' "$tmp/out" "$tmp/direct.json" && echo "ok: $a moves fewer network bytes than direct" ||
		{ echo "FAIL: $a network bytes"; fail=1; }
done

check "analytic mode" 0 "$MOEKIT" sim $base --mode analytic --format json
cp "$tmp/out" "$tmp/an.json"
"$MOEKIT" sim $base --format json > "$tmp/out"
"$PYTHON3" -c '
import json, sys
a = json.load(open(sys.argv[1]))["runs"][0]; e = json.load(open(sys.argv[2]))["runs"][0]
rel = abs(a["step_time_s"] - e["step_time_s"]) / e["step_time_s"]
assert rel < 0.2, rel
print("ok: analytic within %.3f%% of events" % (100 * rel))
' "$tmp/an.json" "$tmp/out" || { echo "FAIL: analytic vs events"; fail=1; }

check "training with overlapped micro-batches" 0 "$MOEKIT" sim $base --phase training --overlap --format json
py "forward and backward rows" '
ph = [l["phase"] for l in j["runs"][0]["layers"]]
assert ph == ["forward", "backward"] * 3, ph
'
check "decode" 0 "$MOEKIT" sim $base --phase decode --tokens-per-gpu 8 --format json
check "table output" 0 "$MOEKIT" sim $base --top-k 1,2
grep -q "^# comparison" "$tmp/out" || { echo "FAIL: no comparison table"; fail=1; }
grep -q "^# bottleneck link" "$tmp/out" || { echo "FAIL: no bottleneck line"; fail=1; }

check "csv: one table for every k" 0 "$MOEKIT" sim $base --top-k 1,2 --format csv
[ "$(grep -c '^top_k,layer,phase' "$tmp/out")" -eq 1 ] && [ "$(wc -l < "$tmp/out")" -eq 7 ] ||
	{ echo "FAIL: csv shape"; cat "$tmp/out"; fail=1; }
check "store the run" 0 "$MOEKIT" sim $base --top-k 1,2 --db "$tmp/s.db" --format json
py "run ids" 'assert [x["run_id"] for x in j["runs"]] == [1, 2], j["runs"]'
check "db export" 0 "$MOEKIT" db export 2 --db "$tmp/s.db" --format json
py "stored rows" '
assert j["run"]["status"] == "done", j["run"]
assert len(j["layers"]) == 3 and len(j["gpus"]) == 16, (len(j["layers"]), len(j["gpus"]))
assert len(j["experts"]) == 3 * 64 and len(j["links"]) > 0 and len(j["link_samples"]) > 0
assert len(j["spans"]) == 9
m = {r["name"]: r["value"] for r in j["metrics"]}
assert m["step_time_s"] > 0 and m["tokens_per_s"] > 0, m
assert sum(r["tokens"] for r in j["experts"]) == 3 * 16 * 256 * 2
'

# replaying traces (written by moekit trace gen)
tr="$tmp/o.moetrace"
check "generate a trace" 0 "$MOEKIT" trace gen --model olmoe-1b-7b --layers 3 --ranks 16 \
	--tokens-per-rank 256 --zipf 1.2 --logits --seed 3 -o "$tr" -q
check "replay with top-1 and top-2" 0 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100:2 \
	--ep 16 --trace "$tr" --layers 3 --top-k 1,2 --quiet --db "$tmp/t.db" --format json
py "trace: top-1 moves fewer bytes, tokens conserved" '
r = j["runs"]
assert r[0]["network_bytes"] < r[1]["network_bytes"]
for x in r:
    assert x["tokens"] + x["dropped"] == 3 * 16 * 256 * x["top_k"], x["tokens"]
'
check "db export of the top-2 replay" 0 "$MOEKIT" db export 2 --db "$tmp/t.db" --format json
py "skewed trace: the GPU with the most expert tokens is the busiest" '
g = max(j["gpus"], key=lambda r: r["tokens"])
b = max(j["gpus"], key=lambda r: r["busy_s"])
assert g["gpu"] == b["gpu"], (g, b)
assert g["tokens"] > 1.3 * sum(r["tokens"] for r in j["gpus"]) / len(j["gpus"])
'
check "trace ranks differ from EP" 2 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100:2 --ep 8 --trace "$tr" --layers 3
grep -q "16 source ranks" "$tmp/err" || { echo "FAIL: ranks message"; fail=1; }
check "trace experts differ from the model" 2 "$MOEKIT" sim --model mixtral-8x7b --cluster dgx-h100:2 --ep 8 --trace "$tr" --layers 3
check "trace layers differ from the model" 2 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100:2 --ep 16 --trace "$tr"
check "no trace file" 1 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100:2 --ep 16 --trace "$tmp/none.moetrace"
# a damaged chunk is found before any work, whichever half of the layers
# (read on two threads) holds it; with two, the earlier layer's is named
damage() { # damage IN OUT LAYER...: flip a payload byte of each layer's first chunk
	"$PYTHON3" - "$@" <<'PY'
import struct, sys
src, dst, layers = sys.argv[1], sys.argv[2], {int(x) for x in sys.argv[3:]}
b = bytearray(open(src, "rb").read())
index = struct.unpack_from("<Q", b, len(b) - 40)[0]
seen = set()
for i in range(struct.unpack_from("<Q", b, index + 8)[0]):
    step, layer, kind, off, n = struct.unpack_from("<QIIQQ", b, index + 16 + 32 * i)
    if layer in layers and layer not in seen:
        seen.add(layer)
        b[off + 56 + 3] ^= 0xFF
open(dst, "wb").write(b)
PY
}
damage "$tr" "$tmp/d2.moetrace" 2
check "damaged layer 2" 1 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100:2 --ep 16 --trace "$tmp/d2.moetrace" --layers 3 --quiet --db "$tmp/d.db"
err_has "damaged layer 2: named" "layer 2).*crc mismatch"
[ ! -e "$tmp/d.db" ] || ! "$MOEKIT" db list --db "$tmp/d.db" | grep -q "sim" \
	&& echo "ok: nothing stored" || { echo "FAIL: a run was stored"; fail=1; }
damage "$tr" "$tmp/d02.moetrace" 0 2
check "damaged layers 0 and 2" 1 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100:2 --ep 16 --trace "$tmp/d02.moetrace" --layers 3 --quiet
err_has "damaged layers 0 and 2: the first named" "layer 0).*crc mismatch"
check "trace without logits" 0 "$MOEKIT" trace gen --model olmoe-1b-7b --layers 3 --ranks 16 --tokens-per-rank 64 -o "$tmp/nl.moetrace" -q
check "top-k above the trace's without logits" 2 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100:2 --ep 16 --trace "$tmp/nl.moetrace" --layers 3 --top-k 9
check "top-k below the trace's without logits" 0 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100:2 --ep 16 --trace "$tmp/nl.moetrace" --layers 3 --top-k 2

# count-level traces: the same seed gives the token trace's counts
# (trace gen routes the same tokens, then only counts them)
cgen="trace gen --model olmoe-1b-7b --layers 3 --ranks 16 --tokens-per-rank 64 --zipf 1.2 --seed 5 -q"
check "count-level trace" 0 "$MOEKIT" $cgen --counts -o "$tmp/c.moetrace"
check "its token-level twin" 0 "$MOEKIT" $cgen -o "$tmp/ct.moetrace"
csim="sim --model olmoe-1b-7b --cluster dgx-h100:2 --ep 16 --layers 3 --quiet --format json"
check "replay counts" 0 "$MOEKIT" $csim --trace "$tmp/c.moetrace" --db "$tmp/c.db"
cp "$tmp/out" "$tmp/c.json"
py "counts: json keys, trace summary, conservation" '
x = j["runs"][0]
for key in ("run_id", "top_k", "step_time_s", "tokens_per_s", "network_bytes", "tokens",
            "dropped", "imbalance", "layers", "bottleneck", "busiest_gpu", "idlest_gpu"):
    assert key in x, key
assert x["top_k"] == 8 and x["run_id"] == 1, x
assert x["tokens"] + x["dropped"] == 3 * 16 * 64 * 8, (x["tokens"], x["dropped"])
t = j["trace"]
assert t == {"file": t["file"], "level": "counts", "step": 0, "top_k": 8, "layers_used": [0, 1, 2],
             "layer_map": [0, 1, 2], "dedup": False}, t
assert [l["trace_layer"] for l in x["layers"]] == [0, 1, 2]
for l in x["layers"]:
    for key in ("layer", "trace_layer", "phase", "dispatch_s", "compute_s", "combine_s",
                "exposed_s", "total_s", "dispatch_bytes", "combine_bytes", "network_bytes"):
        assert key in l, key
'
check "db export of the count replay" 0 "$MOEKIT" db export 1 --db "$tmp/c.db" --format json
py "counts: stored inputs and expert rows" '
i = j["run"]["inputs"]
i = json.loads(i) if isinstance(i, str) else i
assert i["trace_level"] == "counts" and i["trace_layers"] == [0, 1, 2] and i["top_k"] == 8, i
assert i["tokens_per_gpu"] == 64, i
assert sum(r["tokens"] + r["dropped"] for r in j["experts"]) == 3 * 16 * 64 * 8
'
"$MOEKIT" $csim --trace "$tmp/ct.moetrace" >"$tmp/ct.json"
"$MOEKIT" $csim --trace "$tmp/ct.moetrace" --no-dedup >"$tmp/ctn.json"
"$PYTHON3" -c '
import json, sys
c, t, n = (json.load(open(f))["runs"][0] for f in sys.argv[1:4])
# no de-duplication possible: never fewer bytes than the tokens de-duplicated
assert c["network_bytes"] > t["network_bytes"], (c["network_bytes"], t["network_bytes"])
for a, b in zip(c["layers"], t["layers"]):
    assert a["dispatch_bytes"] >= b["dispatch_bytes"], (a, b)
# and exactly the tokens without de-duplication
assert c["network_bytes"] == n["network_bytes"] and c["step_time_s"] == n["step_time_s"], (c, n)
assert c["tokens"] == n["tokens"] and c["dropped"] == n["dropped"]
for a, b in zip(c["layers"], n["layers"]):
    assert a["dispatch_bytes"] == b["dispatch_bytes"] and a["compute_s"] == b["compute_s"], (a, b)
' "$tmp/c.json" "$tmp/ct.json" "$tmp/ctn.json" && echo "ok: counts = tokens without de-dup, >= tokens with it" ||
	{ echo "FAIL: counts against tokens"; fail=1; }

# a count dump recording layers 0 and 2 only (of Mixtral's 32), by hand:
# layer 0: rank r sends 10 to expert r (its own GPU) and 6 to r+1; layer 2:
# 8 each to r+4 and r+5 (mod 8).  Contiguous on 8 GPUs: expert e on GPU e.
{
	echo step,layer,rank,expert,tokens
	for r in 0 1 2 3 4 5 6 7; do
		echo "0,0,$r,$r,10"; echo "0,0,$r,$(( (r + 1) % 8 )),6"
	done
	for r in 0 1 2 3 4 5 6 7; do
		echo "0,2,$r,$(( (r + 4) % 8 )),8"; echo "0,2,$r,$(( (r + 5) % 8 )),8"
	done
} >"$tmp/part.csv"
check "import a partial count dump" 0 "$MOEKIT" trace import "$tmp/part.csv" --model mixtral-8x7b --ranks 8 -o "$tmp/part.moetrace"
check "replay it on 4 layers" 0 "$MOEKIT" sim --model mixtral-8x7b --cluster dgx-h100 --ep 8 --trace "$tmp/part.moetrace" --layers 4 --quiet --format json
py "partial: layer map and hand-checked bytes" '
t = j["trace"]
assert t["layers_used"] == [0, 2] and t["layer_map"] == [0, 0, 2, 2] and t["top_k"] == 2, t
L = j["runs"][0]["layers"]
assert [l["trace_layer"] for l in L] == [0, 0, 2, 2]
# hidden 4096 x 2 bytes a copy; layer 0 moves 6 per rank, layer 2 16
assert [l["dispatch_bytes"] for l in L] == [8 * 6 * 8192.0] * 2 + [8 * 16 * 8192.0] * 2, L
assert [l["tokens"] for l in L] == [128] * 4 and j["runs"][0]["dropped"] == 0
assert all(l["network_bytes"] == 0 for l in L)
'
check "table: the layer map" 0 "$MOEKIT" sim --model mixtral-8x7b --cluster dgx-h100 --ep 8 --trace "$tmp/part.moetrace" --layers 4 --quiet
grep -q "^# trace layers replayed (model layers <- trace layer): 0-1 <- 0, 2-3 <- 2$" "$tmp/out" ||
	{ echo "FAIL: layer map line"; cat "$tmp/out"; fail=1; }
check "counts: the trace's own --top-k" 0 "$MOEKIT" $csim --trace "$tmp/c.moetrace" --top-k 8
check "counts: --top-k 1,2" 2 "$MOEKIT" $csim --trace "$tmp/c.moetrace" --top-k 1,2
grep -q "^moekit sim: --top-k 1,2: the count-level trace .*c.moetrace holds top-8 counts" "$tmp/err" ||
	{ echo "FAIL: top-k message"; cat "$tmp/err"; fail=1; }
check "counts: --top-k 4" 2 "$MOEKIT" $csim --trace "$tmp/c.moetrace" --top-k 4
check "counts: ranks differ from EP" 2 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100 --ep 8 --trace "$tmp/c.moetrace" --layers 3
grep -q "16 source ranks, but the EP group has 8 GPUs" "$tmp/err" || { echo "FAIL: counts ranks message"; fail=1; }
check "counts: experts differ from the model" 2 "$MOEKIT" sim --model mixtral-8x7b --cluster dgx-h100 --ep 8 --trace "$tmp/c.moetrace" --layers 3
grep -q "64 experts, but model mixtral-8x7b has 8" "$tmp/err" || { echo "FAIL: counts experts message"; fail=1; }
check "counts: layers differ from the model" 2 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100:2 --ep 16 --trace "$tmp/c.moetrace"
check "counts: no such step" 2 "$MOEKIT" $csim --trace "$tmp/c.moetrace" --step 3

check "EP larger than the cluster" 2 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100 --ep 16
grep -q -- "--ep" "$tmp/err" || { echo "FAIL: --ep not named"; fail=1; }
check "EP not whole nodes" 2 "$MOEKIT" sim --model olmoe-1b-7b --cluster dgx-h100:2 --ep 12
check "bad pattern" 2 "$MOEKIT" sim $base --pattern zipf:x
check "bad top-k" 2 "$MOEKIT" sim $base --top-k 0
check "top-k above experts" 2 "$MOEKIT" sim $base --top-k 65
check "bad mode" 2 "$MOEKIT" sim $base --mode fast
check "slow GPU outside" 2 "$MOEKIT" sim $base --slow-gpu 16=2
check "unknown link" 2 "$MOEKIT" sim $base --slow-link n5.nic0.up=2
check "missing model" 2 "$MOEKIT" sim --cluster dgx-h100
check "unknown model" 1 "$MOEKIT" sim --model nosuch --cluster dgx-h100
check "--help" 0 "$MOEKIT" sim --help
exit $fail
