#!/bin/sh
# traces/examples/make-examples.sh: rebuilds the example traces of this folder
# from data/expert_counts.csv (real routing statistics, see README.md) and a
# seeded NumPy draw.  Run from the top of the source tree after building:
#     sh traces/examples/make-examples.sh
# MOEKIT (default ./moekit) and PYTHON3 (default python3) may be overridden.
set -eu
MOEKIT=${MOEKIT:-./moekit}
PYTHON3=${PYTHON3:-python3}
dir=traces/examples
tmp=${TMPDIR:-/tmp}/moekit-examples.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

# Count level: each expert's count at layers 0, 7 and 15 of the arxiv domain,
# split evenly over 8 source ranks (rank r gets floor(c(r+1)/8) - floor(cr/8),
# so the ranks differ by at most one token and the total is exact).  The
# source data has no per-rank information: the split assumes data-parallel
# ranks that draw their tokens from the same corpus.
split() { # model domain ranks
	awk -F, -v m="$1" -v d="$2" -v R="$3" '
		$1 == m && $2 == d {
			for (r = 0; r < R; r++) {
				t = int($5 * (r + 1) / R) - int($5 * r / R)
				print "0," $3 "," r "," $4 "," t
			}
		}' "$dir/data/expert_counts.csv" | sort -t, -k2,2n -k3,3n -k4,4n |
		sed "1i step,layer,rank,expert,tokens"
}
split olmoe-1b-7b arxiv 8 >"$tmp/olmoe-arxiv.csv"
split mixtral-8x7b arxiv 8 >"$tmp/mixtral-arxiv.csv"
"$MOEKIT" trace import "$tmp/olmoe-arxiv.csv" --model olmoe-1b-7b --ranks 8 \
	-o "$dir/olmoe-arxiv.moetrace"
"$MOEKIT" trace import "$tmp/mixtral-arxiv.csv" --model mixtral-8x7b --ranks 8 \
	-o "$dir/mixtral-arxiv.moetrace"

# Token level with logits: 2 layers x 256 tokens of Mixtral-shaped (8
# experts) router logits, N(0, 1) plus a per-expert offset log(p_e) where p_e
# is the expert's share at layer 0 of the arxiv data above (so popularity
# follows the real skew), seed 42; routed by Mixtral's router (softmax, top-2,
# renormalized) over 4 source ranks.
"$PYTHON3" - "$dir/data/expert_counts.csv" "$tmp/tokens.npz" <<'PY'
import csv, sys
import numpy as np
counts = np.zeros(8)
with open(sys.argv[1]) as f:
    for row in csv.DictReader(f):
        if row["model"] == "mixtral-8x7b" and row["domain"] == "arxiv" and row["layer"] == "0":
            counts[int(row["expert"])] = float(row["count"])
rng = np.random.default_rng(42)
x = rng.standard_normal((2, 256, 8)) + np.log(counts / counts.sum())
np.savez(sys.argv[2], logits=x.astype(np.float32))
PY
"$MOEKIT" trace import "$tmp/tokens.npz" --model mixtral-8x7b --ranks 4 --zstd 3 \
	-o "$dir/mixtral-tokens.moetrace"
