# profiler/cuda/: the CUDA back end (issue 7), built when configure finds nvcc.
