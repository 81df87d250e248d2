/* tests/fuzz/fuzz_trace_reader.c: libFuzzer target for the .moetrace reader:
 * open, read every chunk (sum loads), seek to a few (step, layer)s, read on.
 * Any input must give MOE_OK or an error status, never a crash or a leak. */
#include "config.h"
#include "traces/trace.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace_reader *r;
	const struct trace_chunk *c;
	const char *p = fuzz_write_input(data, size, ".moetrace");

	if (trace_reader_open(p, &r) == MOE_OK) {
		const struct trace_header *h = trace_reader_header(r);
		uint64_t *load = calloc(h->experts, sizeof *load);
		for (int pass = 0; pass < 2 && load != NULL; pass++) {
			while (trace_reader_next(r, &c) == MOE_OK && c != NULL)
				trace_chunk_loads(c, load);
			for (uint32_t l = 0; l < 3; l++)
				if (trace_reader_seek(r, 0, l) == MOE_OK &&
				    trace_reader_next(r, &c) == MOE_OK && c != NULL)
					trace_chunk_loads(c, load);
			trace_reader_rewind(r);
		}
		free(load);
		trace_reader_close(r);
	}
	fuzz_cleanup();
	return 0;
}
