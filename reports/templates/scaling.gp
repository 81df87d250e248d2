@COMMON@
# Scaling: all-to-all time (dispatch + combine, summed over layers) and step
# time against @XNAME@, one point per run.  Times stored in seconds.
SCALE = @SCALE@
set title "@TITLE@"
set xlabel "@XLABEL@"
set ylabel "time (@UNIT@)"
@XLOG@
set yrange [0:*]
set key outside right top vertical Left reverse
set grid xtics ytics lc rgb "#e0e0e0"
do for [fmt in formats] {
    eval term(fmt, @W@, @H@)
    set output "@NAME@." . fmt
    plot @PLOT@
    set output
}
