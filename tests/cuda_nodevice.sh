#!/bin/sh
# tests/cuda_nodevice.sh: the CUDA test program on a machine without a GPU
# (the CI machine: nvcc and the libraries, no device) must say "no CUDA
# device" and exit 77, not crash.  Where a GPU is present this script skips:
# `make check-cuda` runs the GPU tests there.
prog=./tests/cuda_gpu
test -x "$prog" || { echo "no $prog"; exit 99; }
out=$("$prog" 2>&1)
rc=$?
case $rc in
77)
	if printf '%s\n' "$out" | grep -q 'no CUDA device'; then
		echo "no CUDA device: skipped cleanly (rc 77)"
		exit 0
	fi
	echo "FAIL: exit 77 without saying 'no CUDA device':"
	printf '%s\n' "$out"
	exit 1
	;;
0|1)
	if printf '%s\n' "$out" | grep -q '^# [0-9]* CUDA device'; then
		echo "a CUDA device is present: run make check-cuda"
		exit 77
	fi
	;;
esac
echo "FAIL: tests/cuda_gpu exited $rc:"
printf '%s\n' "$out"
exit 1
