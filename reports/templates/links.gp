@COMMON@
# Link utilization over time: one row per link (grouped by kind), each
# sample drawn from its time to the next sample of that link.
SCALE = @SCALE@
set title "@TITLE@"
set xlabel "time since the start of the run (@UNIT@)"
set ylabel "link (kind)"
@YTICS@
set yrange [@NLINKS@ - 0.5 : -0.5]
# The whole run, or the window given to moekit report --window.
@XRANGE@
set grid noytics noxtics
set cbrange [0:1]
set cblabel "utilization (fraction of the link's bandwidth)"
set palette defined (0 "#ffffff", 0.25 "#fee391", 0.5 "#fe9929", 0.75 "#cc4c02", 1 "#662506")
set style fill solid 1.0 noborder
unset key
do for [fmt in formats] {
    eval term(fmt, @W@, @H@)
    set output "@NAME@." . fmt
    plot @PLOT@
    set output
}
