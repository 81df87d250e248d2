#!/bin/sh
# tests/cuda_route_host.sh: the CUDA routing kernel's code, compiled for the
# host, must route exactly as moe/route.h does (ids, loads, drops, and gate
# weights bit for bit) on every policy the GPU runs.  Needs no GPU.
exec ./tests/cuda_gpu --host-route
