# profiler/: see DESIGN.md.  Filled by its issue; adds to the lists of the top Makefile.am.
include profiler/cuda/local.mk
