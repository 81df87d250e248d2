# @NAME@.gp: @DESC@
# Written by `moekit report` from the templates reports/templates/common.gp
# and @TEMPLATE@.  Restyle freely, then render again with
#     gnuplot path/to/@NAME@.gp
# (the script moves to its own folder first, so it runs from anywhere).
# Data: @DATA@ (its header names every column and its unit).

# Formats to write: any of png svg pdf, separated by spaces.
formats = "@FORMATS@"

if (exists("ARG0") && strlen(ARG0) > 0) {
    _i = strlen(ARG0)
    while (_i > 0 && ARG0[_i:_i] ne "/") { _i = _i - 1 }
    if (_i > 0) { cd ARG0[1:_i] }
}

# The terminal of one format; w and h in pixels (pdf: 100 px per inch).
# noenhanced: run labels are printed as written, underscores and all.
term(fmt, w, h) = fmt eq "png" ? \
    sprintf("set terminal pngcairo size %d,%d font 'Sans,11' noenhanced", w, h) : \
    fmt eq "svg" ? \
    sprintf("set terminal svg size %d,%d font 'Sans,11' noenhanced background rgb 'white'", w, h) : \
    sprintf("set terminal pdfcairo size %gin,%gin font 'Sans,8' noenhanced", w / 100.0, h / 100.0)

# Colours that stay apart in grey-scale print and for colour-blind readers
# (Paul Tol's "bright" scheme), the same part always in the same colour.
set linetype 1 lc rgb "#4477AA" lw 2 pt 7 ps 1.2
set linetype 2 lc rgb "#EE6677" lw 2 pt 5 ps 1.2
set linetype 3 lc rgb "#228833" lw 2 pt 9 ps 1.4
set linetype 4 lc rgb "#CCBB44" lw 2 pt 11 ps 1.4
set linetype 5 lc rgb "#66CCEE" lw 2 pt 13 ps 1.4
set linetype 6 lc rgb "#AA3377" lw 2 pt 3 ps 1.2
set linetype 7 lc rgb "#BBBBBB" lw 2 pt 1 ps 1.2
set linetype 8 lc rgb "#000000" lw 2 pt 2 ps 1.2
set linetype cycle 8

set border 3 lw 1
set tics nomirror out
set grid ytics lc rgb "#e0e0e0" lt 1 lw 1
set key noenhanced
set datafile missing "NaN"
