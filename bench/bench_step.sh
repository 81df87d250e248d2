#!/bin/sh
# bench/bench_step.sh: how fast `moekit sim` replays a full DeepSeek-V3
# forward step from a router trace (58 MoE layers, EP 64 on 8 DGX H100
# nodes, 4096 tokens per GPU: 15.2 M tokens, 122 M token-expert pairs).
#
# Usage: bench/bench_step.sh [TRACE]
#   TRACE  a .moetrace of deepseek-v3 with 64 ranks; without it one is made
#          in $TMPDIR with `moekit trace gen --model deepseek-v3 --ranks 64
#          --tokens-per-rank 4096 --zipf 1.0 --seed 7` (760 MB, about 2
#          minutes) and removed at the end.
# Prints one row per mode (the flow network exact, with the default window
# --coalesce 1e-3, with --coalesce 1e-2, and --mode analytic): wall time, CPU time (all threads), peak resident
# memory, the simulated step time, and tokens simulated per wall second.
# Environment: MOEKIT (default ./moekit), PYTHON3 (default python3).
MOEKIT=${MOEKIT:-./moekit}
PY=${PYTHON3:-python3}
tmp=
trace=${1:-}
if [ -z "$trace" ]; then
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_step.XXXXXX") || exit 1
	trap 'rm -rf "$tmp"' EXIT
	trace=$tmp/ds.moetrace
	echo "# generating $trace" >&2
	"$MOEKIT" trace gen --model deepseek-v3 --ranks 64 --tokens-per-rank 4096 --zipf 1.0 \
		--seed 7 -q -o "$trace" || exit 1
fi
echo "# bench_step: moekit sim --model deepseek-v3 --cluster dgx-h100:8 --ep 64 --trace $trace"
printf "# %-16s %8s %8s %10s %12s %14s\n" mode wall_s cpu_s maxrss_MB step_s tokens/wall_s
for mode in "exact" "default 1e-3" "coalesce 1e-2" "analytic"; do
	case $mode in
	exact) extra="--coalesce 0" ;;
	default*) extra= ;;
	coalesce*) extra="--coalesce 1e-2" ;;
	analytic) extra="--mode analytic" ;;
	esac
	# shellcheck disable=SC2086 # $extra is two words or none
	"$PY" - "$mode" "$MOEKIT" sim --model deepseek-v3 --cluster dgx-h100:8 --ep 64 \
		--trace "$trace" --quiet --format json $extra <<'PY' || exit 1
import json, resource, subprocess, sys, time
mode, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
run = json.loads(out)["runs"][0]
tokens = 64 * 4096
print("%-18s %8.2f %8.2f %10.0f %12.6f %14.0f" % (mode, wall, ru.ru_utime + ru.ru_stime,
      ru.ru_maxrss / 1024, run["step_time_s"], tokens / wall))
PY
done
