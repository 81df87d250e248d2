#!/bin/sh
# End-to-end tests of `moekit net`: a closed form read back from json,
# a degraded link, exit codes and one-line errors for bad matrices.
set -u
: "${MOEKIT:?}" "${PYTHON3:=python3}" "${srcdir:=.}"
. "${srcdir:-.}/tests/lib.sh"
data="$srcdir/tests/data/sim"

json_eq() { # json_eq NAME EXPR WANT REL: Python expression over j (the json) = WANT within REL
	if ! "$PYTHON3" - "$tmp/out" "$2" "$3" "$4" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
got = eval(sys.argv[2]); want = float(eval(sys.argv[3])); rel = float(sys.argv[4])
if abs(got - want) > rel * abs(want):
    print("got %r want %r" % (got, want)); sys.exit(1)
PY
	then echo "FAIL: $1"; fail=1; else echo "ok: $1"; fi
}

m="$data/two-into-one.txt"
check "two flows into one NIC" 0 "$MOEKIT" net --cluster dgx-h100:2 --format json "$m"
json_eq "completion = lat + 2B/bw" 'j["completion_s"]' '5.5e-6 + 128e6/45e9' 1e-9
json_eq "bottleneck utilization" 'j["bottleneck"]["utilization"]' '(128e6/45e9) / (5.5e-6 + 128e6/45e9)' 1e-9
json_eq "GPU 3 finish (NVSwitch 360 GB/s)" 'j["gpus"][3]["finish_s"]' '3e-6 + 1e6/360e9' 1e-9
json_eq "network bytes" 'j["network_bytes"]' 128e6 0
json_eq "gpus listed" 'len(j["gpus"])' 16 0
grep -q '"link": "n1.nic0.down"' "$tmp/out" || { echo "FAIL: bottleneck link name"; fail=1; }

check "a link at half speed" 0 "$MOEKIT" net --cluster dgx-h100:2 --slow-link n1.nic0.down=2 --format json "$m"
json_eq "slowed completion" 'j["completion_s"]' '5.5e-6 + 128e6/22.5e9' 1e-9

# five flows into one NIC, four of nearly one size: coalesced, the four end
# in one window at its rate-weighted mean, and the long one still ends when
# the NIC has carried every byte (the closed form), in fewer events
printf '0 8 100MB\n1 8 100.1MB\n2 8 100.2MB\n3 8 100.3MB\n4 8 1000MB\n' > "$tmp/near.txt"
check "near-equal flows, exact" 0 "$MOEKIT" net --cluster dgx-h100:2 --coalesce 0 --format json "$tmp/near.txt"
json_eq "exact: last = lat + all bytes / bw" 'j["completion_s"]' '5.5e-6 + 1400.6e6/45e9' 1e-10
exact_events=$("$PYTHON3" -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"])' "$tmp/out")
check "near-equal flows, coalesced" 0 "$MOEKIT" net --cluster dgx-h100:2 --coalesce 1e-2 --format json "$tmp/near.txt"
json_eq "coalesced: the same closed form" 'j["completion_s"]' '5.5e-6 + 1400.6e6/45e9' 1e-10
json_eq "coalesced: fewer events" 'j["events"] < '"$exact_events" 1 0
json_eq "coalesce in the json" 'j["coalesce"]' 1e-2 0
check "default window" 0 "$MOEKIT" net --cluster dgx-h100:2 --format json "$tmp/near.txt"
json_eq "default window 1e-3" 'j["coalesce"]' 1e-3 0
check "--coalesce out of range" 2 "$MOEKIT" net --cluster dgx-h100:2 --coalesce 0.5 "$m"
err_has "--coalesce out of range" "coalesce"

check "table output" 0 "$MOEKIT" net --cluster dgx-h100:2 "$m"
grep -q "^# bottleneck: n1.nic0.down" "$tmp/out" || { echo "FAIL: table bottleneck line"; fail=1; }
check "csv output" 0 "$MOEKIT" net --cluster dgx-h100:2 --format csv "$m"
head -1 "$tmp/out" | grep -q "^gpu,node,finish_s" || { echo "FAIL: csv header"; fail=1; }
check "stdin matrix" 0 sh -c "echo '0 1 1MB' | \"$MOEKIT\" net --cluster dgx-h100 --format json -"
check "--help" 0 "$MOEKIT" net --help

printf '0 1 100\n0 16 100\n' > "$tmp/outside.txt"
check "GPU outside the cluster" 2 "$MOEKIT" net --cluster dgx-h100:2 "$tmp/outside.txt"
err_has "GPU outside the cluster" "outside.txt:2: GPU 16 is outside"
printf '# negative\n\n3 1 -5\n' > "$tmp/neg.txt"
check "negative bytes" 2 "$MOEKIT" net --cluster dgx-h100:2 "$tmp/neg.txt"
err_has "negative bytes" "neg.txt:3: bytes -5 is negative"
printf '0 1\n' > "$tmp/short.txt"
check "missing field" 2 "$MOEKIT" net --cluster dgx-h100:2 "$tmp/short.txt"
err_has "missing field" "short.txt:1: expected .SRC DST BYTES., got 2 fields"
printf '0 x 5\n' > "$tmp/rank.txt"
check "malformed rank" 2 "$MOEKIT" net --cluster dgx-h100:2 "$tmp/rank.txt"
err_has "malformed rank" "rank.txt:1: destination 'x'"
printf '0 1 5parsecs\n' > "$tmp/unit.txt"
check "malformed bytes" 2 "$MOEKIT" net --cluster dgx-h100:2 "$tmp/unit.txt"
err_has "malformed bytes" "unit.txt:1: bytes '5parsecs'"
check "missing file" 1 "$MOEKIT" net --cluster dgx-h100:2 "$tmp/nope.txt"
err_has "missing file" "nope.txt: cannot open"
check "missing --cluster" 2 "$MOEKIT" net "$m"
check "unknown cluster" 1 "$MOEKIT" net --cluster nosuch "$m"
check "unknown algorithm" 2 "$MOEKIT" net --cluster dgx-h100:2 --algorithm ring "$m"
check "unknown multipath" 2 "$MOEKIT" net --cluster dgx-h100:2 --multipath magic "$m"
check "unknown link" 2 "$MOEKIT" net --cluster dgx-h100:2 --slow-link n9.nic0.up=2 "$m"
check "bad slowdown" 2 "$MOEKIT" net --cluster dgx-h100:2 --slow-link n1.nic0.up=0 "$m"
check "two matrices" 2 "$MOEKIT" net --cluster dgx-h100:2 "$m" "$m"

# every algorithm moves the same bytes into GPUs; forwarding is not slower
for a in direct hierarchical nvlink-forward; do
	check "algorithm $a" 0 "$MOEKIT" net --cluster dgx-h100:2 --algorithm $a --multipath ecmp --format json "$m"
done
exit $fail
