#!/bin/sh
# The main job on the bundled example (README's first command): a router
# trace shaped after real OLMoE-1B-7B routing (expert loads measured on arXiv
# text, traces/examples/data/, from allenai/OLMoE, Apache-2.0), simulated on
# two DGX H100 nodes with expert parallelism over all 16 GPUs, with top-1,
# top-2 and OLMoE's own top-8 re-routed from the same router logits; the
# runs are stored and drawn.
#
#     sh tools/example.sh [OUTDIR]          (default: example/)
#
# Run from the build tree after `make`.
set -eu
out=${1:-example}
here=$(cd "$(dirname "$0")/.." && pwd)
moekit=${MOEKIT:-./moekit}
mkdir -p "$out"
rm -f "$out/example.db" "$out/example.db-wal" "$out/example.db-shm"

echo "== 1. a token-level trace with router logits, loads as measured for OLMoE on arXiv"
grep '^olmoe-1b-7b,arxiv,' "$here/traces/examples/data/expert_counts.csv" >"$out/olmoe-arxiv-loads.csv"
$moekit trace gen --model olmoe-1b-7b --loads "$out/olmoe-arxiv-loads.csv" --ranks 16 \
	--tokens-per-rank 512 --logits --seed 1 -o "$out/olmoe-arxiv.moetrace"
$moekit trace stats "$out/olmoe-arxiv.moetrace" --capacity-factor 1.25 --ep 16 --table summary

echo "== 2. simulate it on 2 x DGX H100 (EP 16) with top-1, top-2 and top-8"
$moekit sim --model olmoe-1b-7b --cluster dgx-h100:2 --ep 16 --trace "$out/olmoe-arxiv.moetrace" \
	--top-k 1,2,8 --db "$out/example.db" --format table >"$out/sim.txt"
grep -E '^# (moekit sim|step time|bottleneck|busiest)' "$out/sim.txt"
sed -n '/^# comparison/,$p' "$out/sim.txt"
echo "(per-layer rows: $out/sim.txt)"

echo "== 3. the runs in the store, and the report"
$moekit db list --db "$out/example.db"
$moekit report --db "$out/example.db" --out "$out/report" --quiet
echo "open $out/report/index.html"
