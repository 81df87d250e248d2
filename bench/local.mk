# bench/: benchmarks that print figures; built by `make bench`, never timed in
# `make check`.  A part adds its program to EXTRA_PROGRAMS and BENCHMARKS.
EXTRA_DIST += bench/bench_step.sh
bench: $(BENCHMARKS)
.PHONY: bench
