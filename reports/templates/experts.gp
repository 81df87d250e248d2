@COMMON@
# Expert load: one cell per (layer, expert), coloured by the tokens the
# expert received in that layer (summed over its replicas).
set title "@TITLE@"
set xlabel "expert"
set ylabel "layer"
set xrange [-0.5 : @NEXPERTS@ - 0.5]
set yrange [@YMAX@ + 0.5 : @YMIN@ - 0.5]
set xtics @XSTEP@ out
set ytics @YSTEP@ out
set grid noytics noxtics
set cbrange [0:*]
set cblabel "tokens received"
set palette defined (0 "#ffffff", 0.2 "#c6dbef", 0.5 "#4292c6", 0.8 "#08519c", 1 "#08306b")
set style fill solid 1.0 noborder
unset key
do for [fmt in formats] {
    eval term(fmt, @W@, @H@)
    set output "@NAME@." . fmt
    plot @PLOT@
    set output
}
