dist_man_MANS = man/moekit.1
