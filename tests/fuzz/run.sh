#!/bin/sh
# tests/fuzz/run.sh: builds the libFuzzer targets of the trace reader and the
# importers with clang directly (not through automake: the sanitizers and
# -fsanitize=fuzzer need their own compiler and flags) and runs each for a
# bounded time from its seed corpus.
#
#     sh tests/fuzz/run.sh [SECONDS_PER_TARGET]      (default 20)
#
# Needs clang with libFuzzer (Debian: clang, libclang-rt-14-dev or newer),
# and the -dev packages of zlib, libzstd, libzip, jansson and GSL.  Builds in
# $FUZZ_BUILD (default $TMPDIR/moekit-fuzz-build).  Exit status 0 when every target ran
# its time without a crash, leak or sanitizer report; 1 otherwise (the
# crashing input is left in the build folder as crash-*); 77 when clang or its
# fuzzer runtime is missing.
set -eu
secs=${1:-20}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD:-${TMPDIR:-/tmp}/moekit-fuzz-build}
CLANG=${CLANG:-clang}
mkdir -p "$build"

if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "run.sh: $CLANG not found: skipped" >&2
	exit 77
fi
# The library needs nothing from config.h: an empty one keeps this build
# independent of ./configure.
: >"$build/config.h"
libs="-lzip -ljansson -lzstd -lz -lgsl -lgslcblas -lm"
cflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-DTRACE_MAX_CHUNK_BYTES=(64ull<<20) -I$build -I$top -I$here"
srcs="$top/traces/trace.c $top/traces/io.c $top/moe/error.c $top/moe/route.c"

echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' >"$build/probe.c"
if ! $CLANG -fsanitize=fuzzer "$build/probe.c" -o "$build/probe" 2>/dev/null; then
	echo "run.sh: $CLANG has no libFuzzer runtime (apt-get install libclang-rt-14-dev): skipped" >&2
	exit 77
fi

status=0
for t in trace_reader import_npy import_npz import_jsonl import_csv; do
	echo "== fuzz_$t: build"
	# shellcheck disable=SC2086
	$CLANG $cflags "$here/fuzz_$t.c" $srcs $libs -o "$build/fuzz_$t"
	mkdir -p "$build/corpus-$t"
	echo "== fuzz_$t: run ${secs}s"
	if ! (cd "$build" && ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
		"./fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 "corpus-$t" "$here/corpus/$t" \
		>"fuzz_$t.log" 2>&1); then
		echo "FAIL: fuzz_$t (see $build/fuzz_$t.log)"
		tail -40 "$build/fuzz_$t.log"
		status=1
	else
		grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$build/fuzz_$t.log" || true
	fi
done
exit $status
