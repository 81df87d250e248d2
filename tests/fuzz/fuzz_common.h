/* tests/fuzz/fuzz_common.h: what the libFuzzer targets share: the input is
 * written to a private temporary file (the library reads paths), and any
 * output goes to another that is removed afterwards. */
#ifndef MOEKIT_TESTS_FUZZ_COMMON_H
#define MOEKIT_TESTS_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_in[256], fuzz_out[256];

/* Writes data to a file named with suffix (the importers pick the format
 * from it); returns the path. */
static const char *fuzz_write_input(const uint8_t *data, size_t size, const char *suffix)
{
	FILE *f;

	snprintf(fuzz_in, sizeof fuzz_in, "/tmp/moekit-fuzz-%ld-in%s", (long)getpid(), suffix);
	snprintf(fuzz_out, sizeof fuzz_out, "/tmp/moekit-fuzz-%ld-out.moetrace", (long)getpid());
	f = fopen(fuzz_in, "wb");
	if (f == NULL)
		abort();
	if (size > 0 && fwrite(data, 1, size, f) != size)
		abort();
	if (fclose(f) != 0)
		abort();
	return fuzz_in;
}

/* Removes the input and any output; a temporary left behind is a bug. */
static void fuzz_cleanup(void)
{
	char tmp[300];

	unlink(fuzz_in);
	unlink(fuzz_out);
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", fuzz_out, (long)getpid());
	if (access(tmp, F_OK) == 0)
		abort(); /* the writer left its temporary file */
}

#endif
