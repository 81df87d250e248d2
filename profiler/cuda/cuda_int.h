/* profiler/cuda/cuda_int.h: what the CUDA back end's .cu files share: the
 * wrapping of CUDA, cuBLAS and NCCL errors into enum moe_status (the call as
 * written and the library's message), and the device-count check behind
 * "no CUDA device".  C++ (nvcc) only; never included from C. */
#ifndef MOEKIT_PROFILER_CUDA_INT_H
#define MOEKIT_PROFILER_CUDA_INT_H

#include <cuda_runtime.h>
#include "profiler/cuda/cuda_backend.h"

/* MOE_OK when e is cudaSuccess, else MOE_ERUNTIME "cuda: CALL: message
 * (cudaErrorName) at FILE:LINE" recorded as the last error. */
enum moe_status prof_cuda_check(cudaError_t e, const char *call, const char *file, int line);
#define PROF_CUDA_OK(call) prof_cuda_check((call), #call, __FILE__, __LINE__)

#endif
