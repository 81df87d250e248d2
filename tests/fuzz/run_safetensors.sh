#!/bin/sh
# tests/fuzz/run_safetensors.sh: builds the safetensors fuzz target with clang
# (libFuzzer, AddressSanitizer, UndefinedBehaviorSanitizer) straight from the
# sources and runs it for a bounded time on a copy of the seed corpus.
#   FUZZ_SECONDS (default 60)   how long to fuzz
#   CC (default clang)          a compiler with -fsanitize=fuzzer
# Run from the build tree (it needs config.h); exits 77 when the compiler
# cannot build a fuzzer, 1 when the fuzzer finds a crash (left in $work).
set -e
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILDDIR:-$(pwd)}
[ -f "$build/config.h" ] || build=$top
CC=${CC:-clang}
secs=${FUZZ_SECONDS:-60}
work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz_safetensors.XXXXXX")
cflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$build -I$top"
cflags="$cflags $(pkg-config --cflags jansson)"
if ! $CC $cflags -o "$work/fuzz_safetensors" "$top/tests/fuzz/fuzz_safetensors.c" \
	"$top/profiler/safetensors.c" "$top/moe/error.c" $(pkg-config --libs jansson) -lm 2>"$work/cc.log"; then
	cat "$work/cc.log" >&2
	echo "run_safetensors: $CC cannot build a libFuzzer target: skipped" >&2
	rm -rf "$work"
	exit 77
fi
mkdir "$work/corpus"
cp "$top"/tests/data/profiler/fuzz_seeds/* "$work/corpus/"
cd "$work"
if ./fuzz_safetensors -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=1024 \
	-print_final_stats=1 corpus >fuzz.log 2>&1; then
	tail -n 12 fuzz.log
	rm -rf "$work"
	exit 0
fi
tail -n 40 fuzz.log >&2
echo "run_safetensors: crash input and log left in $work" >&2
exit 1
