@COMMON@
# Per-layer time breakdown: one stacked bar per layer (and phase), one
# group of bars per run.  Times are stored in seconds; SCALE converts them
# to the unit on the y axis.
SCALE = @SCALE@
set title "@TITLE@"
set ylabel "time per layer (@UNIT@)"
# No x label: gnuplot would set it on top of the group titles; the bars
# are labelled with their layer (@XLABEL@).
unset xlabel
set style data histograms
set style histogram rowstacked title offset 0,-1.2 font ",10"
set style fill solid 0.9 border rgb "#333333"
set boxwidth 0.8 relative
set key outside right top vertical Left reverse title "part of the layer"
set xtics @XTICS@
set bmargin 6
set yrange [0:*]
do for [fmt in formats] {
    eval term(fmt, @W@, @H@)
    set output "@NAME@." . fmt
    plot @PLOT@
    set output
}
