#!/bin/sh
# End-to-end tests of node groups: `moekit net` and `moekit sim` on the
# bundled mixed-h100-a100 preset (2 DGX H100 nodes, 2 A100 PCIe nodes with
# 2 HDR NICs), hand-checked flow times read back from json, the slow group
# being the busiest, and one-line errors (exit 2) for bad groups.
set -u
. "${srcdir:-.}/tests/lib.sh"

c=mixed-h100-a100
# H100 GPU 0 -> A100 GPU 16: NDR NIC 45 GB/s, HDR NIC 22.5 GB/s, PCIe 25.6
# GB/s (effective); 5 us NIC latency and one 0.5 us switch hop
printf '0 16 1GB\n' > "$tmp/cross.txt"
check "H100 to A100 node" 0 "$MOEKIT" net --cluster $c --format json "$tmp/cross.txt"
py "bytes / the HDR NIC + latency" '
want = 5.5e-6 + 1e9 / 22.5e9
assert abs(j["completion_s"] - want) <= 1e-9 * want, j["completion_s"]
assert j["bottleneck"]["link"] == "n2.nic0.down", j["bottleneck"]
assert j["bottleneck"]["kind"] == "nic"
'
# inside an A100 node, GPU 0 to GPU 4: under different PCIe switches (one
# per NIC), 4 PCIe links of 25.6 GB/s, 5 us
printf '16 20 1GB\n' > "$tmp/pcie.txt"
check "inside an A100 node" 0 "$MOEKIT" net --cluster $c --format json "$tmp/pcie.txt"
py "bytes / PCIe + latency" '
want = 5e-6 + 1e9 / 25.6e9
assert abs(j["completion_s"] - want) <= 1e-9 * want, j["completion_s"]
assert j["bottleneck"]["kind"] == "pcie", j["bottleneck"]
'
# the same inside an H100 node: NVSwitch 360 GB/s, 3 us
printf '0 4 1GB\n' > "$tmp/nvl.txt"
check "inside an H100 node" 0 "$MOEKIT" net --cluster $c --format json "$tmp/nvl.txt"
py "bytes / NVSwitch + latency" '
want = 3e-6 + 1e9 / 360e9
assert abs(j["completion_s"] - want) <= 1e-9 * want, j["completion_s"]
'
check "links named per node" 0 "$MOEKIT" net --cluster $c --slow-link n3.nic1.up=2 --format json "$tmp/cross.txt"
check "no third NIC on an A100 node" 2 "$MOEKIT" net --cluster $c --slow-link n3.nic2.up=2 "$tmp/cross.txt"

base="--model olmoe-1b-7b --tokens-per-gpu 256 --layers 2 --quiet --format json"
check "sim on the mixed cluster" 0 "$MOEKIT" sim $base --cluster $c
cp "$tmp/out" "$tmp/mixed.json"
py "the A100 nodes are the busiest" '
r = j["runs"][0]
assert r["busiest_gpu"]["gpu"] >= 16, r["busiest_gpu"]
assert r["idlest_gpu"]["gpu"] < 16, r["idlest_gpu"]
assert r["bottleneck"]["link"].startswith(("n2.", "n3.")), r["bottleneck"]
'
check "sim on four H100 nodes" 0 "$MOEKIT" sim $base --cluster dgx-h100:4
"$PYTHON3" - "$tmp/mixed.json" "$tmp/out" <<'PY' || { echo "FAIL: mixed slower than all-H100"; fail=1; }
import json, sys
mixed = json.load(open(sys.argv[1]))["runs"][0]
h100 = json.load(open(sys.argv[2]))["runs"][0]
assert mixed["step_time_s"] > 1.5 * h100["step_time_s"], (mixed["step_time_s"], h100["step_time_s"])
PY
check "sim, EP group of the first 2 nodes" 0 "$MOEKIT" sim $base --cluster $c --ep 16
py "EP 16 is the H100 nodes only" '
r = j["runs"][0]
assert r["bottleneck"]["link"].startswith(("n0.", "n1.")), r["bottleneck"]
'
check "the groups' own node count" 0 "$MOEKIT" sim $base --cluster $c:4

check "NAME:NODES cannot rescale groups" 2 "$MOEKIT" sim $base --cluster $c:8
err_has "NAME:NODES cannot rescale groups" "':8' cannot rescale node groups (h100 2 + a100 2 = 4 nodes)"

check "presets show" 0 "$MOEKIT" presets show $c --format csv
grep -q '^group a100.nic.count,2,' "$tmp/out" || { echo "FAIL: presets show: group a100.nic.count"; fail=1; }
grep -q '^group h100.intra.kind,nvswitch,' "$tmp/out" || { echo "FAIL: presets show: group h100"; fail=1; }

# a file of one's own: more A100 nodes
printf 'base = %s\n[group a100]\nnodes = 6\n' $c > "$tmp/big.ini"
check "groups resized in a file" 0 "$MOEKIT" net --cluster "$tmp/big.ini" --format json "$tmp/cross.txt"
py "8 nodes" 'assert len(j["gpus"]) == 64, len(j["gpus"])'

printf 'base = %s\n[group a100]\nintra.bw = 0GB/s\n' $c > "$tmp/zero.ini"
check "zero bandwidth in a group" 2 "$MOEKIT" sim $base --cluster "$tmp/zero.ini"
err_has "zero bandwidth in a group" "zero.ini:3: group a100: intra.bw: 0 is out of range"
printf 'base = %s\n[cluster]\nnodes = 5\n' $c > "$tmp/sum.ini"
check "node counts that do not add up" 2 "$MOEKIT" net --cluster "$tmp/sum.ini" "$tmp/cross.txt"
err_has "node counts that do not add up" "sum.ini:3: cluster.nodes: 5 is not the sum of the node groups"
printf 'base = %s\n[group a100]\nnic.speed = 1GB/s\n' $c > "$tmp/key.ini"
check "unknown field in a group" 2 "$MOEKIT" presets show --cluster "$tmp/key.ini"
err_has "unknown field in a group" "key.ini:3: group a100: nic.speed: unknown key"
printf 'base = %s\n[group a100]\nfabric.kind = rail\n' $c > "$tmp/wide.ini"
check "cluster-wide field in a group" 2 "$MOEKIT" presets show --cluster "$tmp/wide.ini"
err_has "cluster-wide field in a group" "wide.ini:3: group a100: fabric.kind: is the same for the whole cluster"
# an EP group that covers only the first group's nodes says so (not silently H100-only)
check "ep narrower than the groups" 0 "$MOEKIT" sim --model olmoe-1b-7b --cluster $c --ep 16 \
	--tokens-per-gpu 64 --format json
err_has "ep narrower than the groups" "the first 1 of 2 node groups.*--ep 32"
check "ep covering the groups" 0 "$MOEKIT" sim --model olmoe-1b-7b --cluster $c --ep 32 \
	--tokens-per-gpu 64 --format json
if [ -s "$tmp/err" ]; then echo "FAIL: ep covering the groups: unexpected note"; fail=1; fi
exit $fail
