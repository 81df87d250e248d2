#!/bin/sh
# tests/tracegen_e2e.sh: `moekit trace gen|stats|reroute|rescale` end to end:
# same seed same bytes, statistics of a generated trace, top-1 against top-2
# re-routing of the same logits, rescaling, the Zipf fit, and the errors
# (a trace without logits refused with exit 1, usage errors exit 2, nothing
# left under the output name).
set -u
M=${MOEKIT:-./moekit}
work=$(mktemp -d "${TMPDIR:-/tmp}/tracegen_e2e.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# generation is deterministic
$M trace gen --model mixtral-8x7b --layers 2 --ranks 2 --tokens-per-rank 500 --steps 2 \
	--zipf 1 --layer-corr 0.5 --logits --seed 7 -q -o "$work/a.moetrace" || fail "gen a"
$M trace gen --model mixtral-8x7b --layers 2 --ranks 2 --tokens-per-rank 500 --steps 2 \
	--zipf 1 --layer-corr 0.5 --logits --seed 7 -q -o "$work/b.moetrace" || fail "gen b"
cmp -s "$work/a.moetrace" "$work/b.moetrace" || fail "same seed, different bytes"
$M trace gen --model mixtral-8x7b --layers 2 --ranks 2 --tokens-per-rank 500 --steps 2 \
	--zipf 1 --layer-corr 0.5 --logits --seed 8 -q -o "$work/c.moetrace" || fail "gen c"
cmp -s "$work/a.moetrace" "$work/c.moetrace" && fail "another seed, same bytes"

# stats: 2 layers x 2 steps x 2 ranks x 500 tokens, top-2
$M trace stats "$work/a.moetrace" --format csv > "$work/s.csv" || fail "stats"
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
	{ if ($col["tokens"] != 2000 || $col["slots"] != 4000) exit 1
	  if ($col["max_over_mean"] <= 1 || $col["aux_loss"] == "") exit 1 }
	END { if (NR != 3) exit 1 }' "$work/s.csv" || fail "stats values: $(cat "$work/s.csv")"
$M trace stats "$work/a.moetrace" --ep 4 --format json > "$work/s.json" || fail "stats json"
"${PYTHON3:-python3}" - "$work/s.json" <<'PY' || fail "stats json content"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["experts"] == 8 and d["top_k"] == 2 and len(d["layers"]) == 2
for l in d["layers"]:
    assert sum(l["load"]) == l["slots"] == 4000
    # every token reaches 1 or 2 EP ranks
    sent = sum(sum(r) for r in l["ep_tokens"])
    assert 2000 <= sent <= 4000, sent
PY

# top-1 vs top-2 on the same logits: top-1 keeps one slot per token
$M trace reroute "$work/a.moetrace" --top-k 1 -o "$work/r1.moetrace" > /dev/null || fail "reroute"
$M trace stats "$work/r1.moetrace" --format csv --table loads > "$work/l1.csv" || fail "stats r1"
awk -F, 'NR > 1 { s += $3 } END { if (s != 4000) exit 1 }' "$work/l1.csv" || fail "top-1 slots"
$M trace reroute "$work/a.moetrace" --top-k 2 --capacity-factor 1 --format csv \
	-o "$work/r2.moetrace" > "$work/r2.csv" || fail "reroute cf"
$M trace stats "$work/a.moetrace" --capacity-factor 1 --format csv > "$work/d.csv" || fail "stats cf"
want=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next } { s += $col["dropped"] } END { print s }' "$work/d.csv")
got=$(awk -F, 'NR > 1 { s += $3 } END { print s }' "$work/r2.csv")
[ "$want" = "$got" ] && [ "$got" -gt 0 ] || fail "dropped: reroute $got, stats $want"

# rescale 2 -> 8 ranks: four times the tokens
$M trace rescale "$work/a.moetrace" --ranks 8 -o "$work/r8.moetrace" > /dev/null || fail "rescale"
$M trace stats "$work/r8.moetrace" --format csv > "$work/s8.csv" || fail "stats r8"
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
	{ if ($col["tokens"] != 8000) exit 1 }' "$work/s8.csv" || fail "rescaled tokens"

# the Zipf fit recovers the exponent of exact power-law counts (top-1)
{
	echo "model,domain,layer,expert,count"
	for e in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
		awk -v e="$e" 'BEGIN { printf "toy,text,0,%d,%d\n", e, 1e6 * (e + 1) ^ -1.3 }'
	done
} > "$work/counts.csv"
$M trace gen --fit "$work/counts.csv" --top-k 1 --format csv > "$work/fit.csv" || fail "fit"
awk -F, 'NR == 2 { if ($7 < 1.29 || $7 > 1.31 || $9 < 1.2 || $9 > 1.4) exit 1 }' \
	"$work/fit.csv" || fail "fit values: $(cat "$work/fit.csv")"

# measured loads reproduced (max/mean within 5%)
{
	echo "layer,expert,count"
	for e in 0 1 2 3 4 5 6 7; do echo "3,$e,$(( (8 - e) * (8 - e) * 100 ))"; done
} > "$work/loads.csv"
$M trace gen --model mixtral-8x7b --layers 1 --tokens-per-rank 20000 --loads "$work/loads.csv" \
	-q -o "$work/ld.moetrace" || fail "gen --loads"
$M trace stats "$work/ld.moetrace" --format csv > "$work/ld.csv" || fail "stats ld"
# shares 6400/20400 of the slots on expert 0: max/mean = 8 * 6400 / 20400 = 2.51
awk -F, 'NR == 2 { if ($5 < 2.39 || $5 > 2.63) exit 1 }' "$work/ld.csv" || \
	fail "loads max/mean: $(cat "$work/ld.csv")"

# errors
$M trace gen --model mixtral-8x7b --loads "$work/loads.csv" --zipf 1 -o "$work/x.moetrace" \
	2> /dev/null
[ $? -eq 2 ] || fail "--loads with --zipf: exit status"
$M trace gen --model mixtral-8x7b --layers 1 -q -o "$work/nl.moetrace" || fail "gen nl"
$M trace reroute "$work/nl.moetrace" --top-k 1 -o "$work/x.moetrace" 2> "$work/err"
[ $? -eq 1 ] || fail "reroute without logits: exit status"
grep -q "no router logits" "$work/err" || fail "reroute message: $(cat "$work/err")"
ls "$work" | grep -q '^x\.moetrace' && fail "partial output left"
$M trace gen --model mixtral-8x7b --top-k 9 -o "$work/x.moetrace" 2> /dev/null
[ $? -eq 2 ] || fail "top-k above experts: exit status"
$M trace gen --model no-such-model -o "$work/x.moetrace" 2> /dev/null
[ $? -ne 0 ] || fail "unknown model accepted"
$M trace rescale "$work/a.moetrace" -o "$work/x.moetrace" 2> /dev/null
[ $? -eq 2 ] || fail "rescale without --ranks: exit status"
$M trace stats "$work/a.moetrace" --ep 3 2> "$work/err"
[ $? -eq 2 ] || fail "--ep 3 of 8 experts: exit status"
grep -q "does not divide" "$work/err" || fail "ep message"
$M trace reroute "$work/a.moetrace" --top-k 1 --policy nonsense -o "$work/x.moetrace" 2> /dev/null
[ $? -eq 2 ] || fail "unknown policy: exit status"
ls "$work" | grep -q '^x\.moetrace' && fail "partial output left"
printf 'expert_a,expert_b,count\n0,1,5\n1,0,5\n' > "$work/m.csv"
$M trace gen --model mixtral-8x7b --layers 2 --layer-corr 1 --layer-matrix "$work/m.csv" -q \
	-o "$work/m.moetrace" || fail "layer matrix"
printf 'expert_a,expert_b,count\n0,8,5\n' > "$work/mbad.csv"
$M trace gen --model mixtral-8x7b --layers 2 --layer-corr 1 --layer-matrix "$work/mbad.csv" \
	-o "$work/x.moetrace" 2> "$work/err"
[ $? -eq 1 ] || fail "bad layer matrix: exit status"
grep -q "mbad.csv:2:" "$work/err" || fail "layer matrix message: $(cat "$work/err")"
$M trace gen --model mixtral-8x7b --layer-matrix "$work/m.csv" -o "$work/x.moetrace" 2> /dev/null
[ $? -eq 2 ] || fail "--layer-matrix without --layer-corr: exit status"
ls "$work" | grep -q '^x\.moetrace' && fail "partial output left"
echo "tracegen_e2e: ok"
exit 0
