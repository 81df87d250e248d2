# cli/: the moekit command: one file per subcommand, a table in main.c.
# Included first: parts add their cli/cmd_NAME.c with moekit_SOURCES +=.
bin_PROGRAMS += moekit
moekit_SOURCES = cli/main.c cli/cli.h cli/util.c cli/cmd_version.c cli/cmd_presets.c \
	cli/cmd_db.c
moekit_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)
moekit_LDADD = libmoekit.la $(MOEKIT_DEPLIBS)
