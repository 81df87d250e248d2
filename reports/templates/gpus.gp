@COMMON@
# Tokens each GPU's experts received, one bar per GPU and run.
set title "@TITLE@"
set xlabel "GPU"
set ylabel "tokens received (token-expert assignments)"
set style fill solid 0.9 border rgb "#333333"
set boxwidth @BOXW@
set xrange [-0.6 : @NGPUS@ - 0.4]
set yrange [0:*]
set xtics @XSTEP@
set key below left Left reverse
# Room under the x axis for the tic labels, the axis label and one key line per run.
set bmargin @BMARGIN@
do for [fmt in formats] {
    eval term(fmt, @W@, @H@)
    set output "@NAME@." . fmt
    plot @PLOT@
    set output
}
