/* tests/fuzz/fuzz_safetensors.c: libFuzzer target for the safetensors header
 * parser (profiler/safetensors.c): any byte string is parsed as a whole
 * file; when it is accepted, every tensor is looked up and, when loadable
 * and small, converted, and a missing name is looked up (the nearest-names
 * message).  Nothing may crash, leak or read outside the input.
 * Build and run: tests/fuzz/run_safetensors.sh. */
#include "config.h"
#include "profiler/safetensors.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct prof_st *st;
	if (prof_st_open_mem(data, size, "fuzz", &st) != MOE_OK)
		return 0;
	for (size_t i = 0; i < prof_st_count(st); i++) {
		const struct prof_st_tensor *t = prof_st_at(st, i), *found;
		uint64_t count = 1;
		if (prof_st_find(st, t->name, &found) != MOE_OK || found != t)
			abort();
		for (int d = 0; d < t->ndim; d++)
			count *= (uint64_t)t->shape[d];
		if (count <= (1u << 16)) {
			float *buf = malloc(count ? count * sizeof(float) : 1);
			if (buf) {
				prof_st_load_f32(st, t->name, t->ndim, t->shape, buf);
				free(buf);
			}
		}
	}
	{
		const struct prof_st_tensor *t;
		if (prof_st_find(st, "model.layers.0.mlp.gate.weight", &t) != MOE_OK && t != NULL)
			abort();
	}
	prof_st_close(st);
	return 0;
}
