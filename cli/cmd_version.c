/* cli/cmd_version.c: `moekit version`: the version and what was built in. */
#include "config.h"
#include "cli/cli.h"
#include "store/store.h"

#include <gsl/gsl_version.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

int cmd_version(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		puts("Usage: moekit version\n"
		     "       moekit --version\n\n"
		     "Print moekit's version and the versions of the libraries it was built with.");
		return cli_finish_stdout("version");
	}
	if (argc > 1)
		return cli_usage("version", "unexpected argument '%s'", argv[1]);
	printf("moekit %s\n", PACKAGE_VERSION);
	printf("sqlite %s, gsl %s, jansson %s, blas %s\n", store_sqlite_version(), GSL_VERSION,
	       JANSSON_VERSION, MOEKIT_BLAS);
	printf("mpi %s, cuda %s\n",
#ifdef HAVE_MPI
	       "yes",
#else
	       "no",
#endif
#ifdef HAVE_CUDA
	       "yes"
#else
	       "no"
#endif
	       );
	return cli_finish_stdout("version");
}
