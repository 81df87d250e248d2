@COMMON@
# Routing comparison: the same runs in four panels, one bar per run.
# Columns of the data file: see its header.  Times in seconds (shown in
# @UNIT@), bytes shown in GB (1e9 bytes).
SCALE = @SCALE@
set style fill solid 0.9 border rgb "#333333"
set boxwidth 0.6
# A panel whose values are all missing gets a fixed range (gnuplot
# refuses to autoscale nothing).
set xrange [-0.6 : @NRUNS@ - 0.4]
@XTICS@
set bmargin 7
unset key
do for [fmt in formats] {
    eval term(fmt, @W@, @H@)
    set output "@NAME@." . fmt
    set multiplot layout 1,4 title "@TITLE@" font ",12"
    set title "time (sum over layers)"
    set ylabel "@UNIT@"
    @YR1@
    plot "@DATA@" using 0:($3*SCALE):($0+1) with boxes lc variable
    set title "bytes moved (dispatch + combine)"
    set ylabel "GB"
    @YR2@
    plot "@DATA@" using 0:($4/1e9):($0+1) with boxes lc variable
    set title "imbalance (max/mean tokens per GPU)"
    set ylabel "ratio (worst layer)"
    @YR3@
    plot "@DATA@" using 0:5:($0+1) with boxes lc variable
    set title "dropped tokens"
    set ylabel "token-expert assignments"
    @YR4@
    plot "@DATA@" using 0:6:($0+1) with boxes lc variable
    unset multiplot
    set output
}
