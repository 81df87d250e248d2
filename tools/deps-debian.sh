#!/bin/sh
# Installs what moekit needs to build, test and draw on Debian 12 (bookworm)
# or Ubuntu 22.04+.  Run as root (or it uses sudo).
set -e
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
	build-essential autoconf automake libtool pkg-config \
	libgsl-dev libsqlite3-dev check libinih-dev libopenblas-dev \
	zlib1g-dev libzstd-dev libzip-dev libjansson-dev \
	gnuplot-nox sqlite3 python3 python3-numpy clang valgrind \
	mpich libmpich-dev >/dev/null
# libFuzzer's runtime (tests/fuzz/run.sh); only recommended by clang on Debian 12.
$SUDO apt-get install -y -qq --no-install-recommends libclang-rt-14-dev >/dev/null 2>&1 || true
