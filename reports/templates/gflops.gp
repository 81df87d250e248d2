@COMMON@
# Throughput of the profiled stages against the tokens each expert
# processed: one line per stage, one point per profile run.
set title "@TITLE@"
set xlabel "@XLABEL@"
set ylabel "throughput (GFLOP/s)"
@XLOG@
set yrange [0:*]
set grid xtics ytics lc rgb "#e0e0e0"
set key below left Left reverse maxrows 4
# Room under the x axis for the tic labels, the axis label and one key line per run.
set bmargin @BMARGIN@
do for [fmt in formats] {
    eval term(fmt, @W@, @H@)
    set output "@NAME@." . fmt
    plot @PLOT@
    set output
}
