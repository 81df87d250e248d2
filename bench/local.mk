# bench/: benchmarks that print figures; built by `make bench`, never timed in `make check`.
bench: $(BENCH_PROGRAMS)
.PHONY: bench
