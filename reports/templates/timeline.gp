@COMMON@
# Gantt chart: one row per track (GPU, then links), one box per span.
# start_s and dur_s are in seconds; SCALE converts to the x unit.
SCALE = @SCALE@
set title "@TITLE@"
set xlabel "time since the start of the run (@UNIT@)"
set ylabel "track"
@YTICS@
set yrange [@NTRACKS@ - 0.5 : -0.5]
# The whole run, or the window given to moekit report --window.
@XRANGE@
set grid xtics noytics lc rgb "#e0e0e0"
set key outside right top vertical Left reverse title "activity"
set style fill solid 0.9 noborder
do for [fmt in formats] {
    eval term(fmt, @W@, @H@)
    set output "@NAME@." . fmt
    plot @PLOT@
    set output
}
