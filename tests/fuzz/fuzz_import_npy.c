/* tests/fuzz/fuzz_import_npy.c: libFuzzer target for the .npy importer
 * (traces/io.c): any input imports or fails with a status; no crash, leak or
 * temporary file left.  The output, when written, is read back whole. */
#include "config.h"
#include "traces/io.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace_import_opts o;
	struct trace_reader *r;
	const struct trace_chunk *c;
	const char *p = fuzz_write_input(data, size, ".npy");

	trace_import_opts_init(&o);
	o.top_k = size & 4 ? 0 : 2; /* to route logits (0: refused, or from ids) */
	o.experts = size & 1 ? 0 : 16; /* both: shape from the data, and given */
	o.ranks = size & 2 ? 0 : 4;
	if (trace_import(p, fuzz_out, &o) == MOE_OK && trace_reader_open(fuzz_out, &r) == MOE_OK) {
		while (trace_reader_next(r, &c) == MOE_OK && c != NULL)
			;
		trace_reader_close(r);
	}
	fuzz_cleanup();
	return 0;
}
