@COMMON@
# Profiler stage breakdown: median time of each stage, with the 10th to
# 90th percentile as an error bar; one colour per profile run.
SCALE = @SCALE@
set title "@TITLE@"
set ylabel "time per call (@UNIT@, median; bar: p10 to p90)"
set style fill solid 0.9 border rgb "#333333"
set boxwidth @BOXW@
set xrange [-0.6 : @NSTAGES@ - 0.4]
# Log scale when the stages span more than two decades.
@YSCALE@
@XTICS@
set key below left Left reverse
# Room under the x axis for the tic labels, the axis label and one key line per run.
set bmargin @BMARGIN@
do for [fmt in formats] {
    eval term(fmt, @W@, @H@)
    set output "@NAME@." . fmt
    plot @PLOT@
    set output
}
