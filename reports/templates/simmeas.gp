@COMMON@
# Simulated against measured: each point one quantity (a metric or one
# layer's time) that a profile run measured and the simulation of the same
# plan predicted.  On the line y = x the model is exact; the dashed lines are
# +-20 %.  Labels give each point's error, (simulated - measured) / measured.
SCALE = @SCALE@
set title "@TITLE@"
set xlabel "measured (@UNIT@)"
set ylabel "simulated (@UNIT@)"
# Log axes when the values span more than a decade and a half.
@AXES@
set xrange [@LO@ : @HI@]
set yrange [@LO@ : @HI@]
set format "%g"
set size ratio -1
set grid xtics ytics lc rgb "#e0e0e0"
set key inside left top vertical Left reverse box opaque
do for [fmt in formats] {
    eval term(fmt, @W@, @H@)
    set output "@NAME@." . fmt
    # Point labels alternate above and below (counters over all rows).
    lab0 = 0; lab1 = 0
    plot x title "y = x (exact)" lt 8 lw 1, \
         1.2*x title "+-20 %" lt 7 dt 2 lw 1, 0.8*x notitle lt 7 dt 2 lw 1, \
         @PLOT@
    set output
}
