# SPDX-License-Identifier: MIT
# bench/plot_lazy.gp — draws the kosvmm-bench-lazy chart from the CSV the benchmark writes with --csv.
#
#   gnuplot bench/plot_lazy.gp                      # docs/lazy_bench.csv -> docs/lazy_bench.png
#   gnuplot -e "csv='run.csv'; png='run.png'" bench/plot_lazy.gp
#
# One row of panels per thread count. Left: time per touched page as a ratio to native 4 KiB demand
# paging of the same pattern and threads (bar = median over the rounds, whisker = the fastest and the
# slowest round's ratio), log scale, lower is better. Right: pages resident after the pass per page
# touched (1 = nothing committed that was not used), log scale. Rows whose status is not "ok" (uffd
# unavailable, or a uffd row that fell back to the kernel engine) are left out.
# Needs gnuplot 5.4 with the pngcairo terminal (Debian: gnuplot-nox), and sed, awk, sort, tr.

if (!exists("csv")) csv = 'docs/lazy_bench.csv'
if (!exists("png")) png = 'docs/lazy_bench.png'

set datafile separator ','
set datafile missing ''

# What the run was: the CSV's first '#' line, written by kosvmm-bench-lazy.
info = system(sprintf("sed -n 's/^# kosvmm-bench-lazy: //p' '%s' | head -n 1", csv))
tlist = system(sprintf("awk -F, '/^[a-z]/ && $3 ~ /^[0-9]+$/ {print $3}' '%s' | sort -un | tr '\n' ' '", csv))
nt = words(tlist)
if (nt == 0) { print sprintf("plot_lazy.gp: no data rows in %s", csv); exit status 1 }

# The access patterns, in the benchmark's order, and the methods drawn (native 4K is the 1x line).
pkeys = "seq_fwd_write seq_fwd_read seq_bwd_write stride16_write random_all_write sparse10_write sparse1_write"
np = words(pkeys)
pidx(s) = (s eq word(pkeys,1)) ? 0 : (s eq word(pkeys,2)) ? 1 : (s eq word(pkeys,3)) ? 2 : \
          (s eq word(pkeys,4)) ? 3 : (s eq word(pkeys,5)) ? 4 : (s eq word(pkeys,6)) ? 5 : \
          (s eq word(pkeys,7)) ? 6 : NaN
mkeys = "native4k native_thp populate_write eager_locked lazy_kernel uffd_default uffd_no_ra uffd_win1 uffd_win64 uffd_win512"
mnames = "'native 4K' 'native THP' 'POPULATE_WRITE+touch' 'KnVm COMMIT|LOCKED' 'lazy kernel' 'lazy uffd default' 'lazy uffd no-RA' 'lazy uffd win 1' 'lazy uffd win 64' 'lazy uffd win 512'"
mcolours = "#000000 #9e9e9e #f4a582 #d6604d #4d4d4d #1a9850 #91cf60 #2166ac #67a9cf #b2abd2"
nm = words(mkeys)
mname(k) = word(mnames, k)
bw = 0.8 / nm
xpos(k) = (k - (nm + 1) / 2.0) * bw

# One y range per column, whole decades, so that panels compare by eye.
ok(t) = strcol(21) eq 'ok' && column(3) == t && pidx(strcol(1)) == pidx(strcol(1))
stats csv using (strcol(21) eq 'ok' && pidx(strcol(1)) == pidx(strcol(1)) ? column(11) : NaN) nooutput
tlo = 10 ** floor(log10(STATS_min))
stats csv using (strcol(21) eq 'ok' && pidx(strcol(1)) == pidx(strcol(1)) ? column(12) : NaN) nooutput
thi = 10 ** ceil(log10(STATS_max))
stats csv using (strcol(21) eq 'ok' && pidx(strcol(1)) == pidx(strcol(1)) && column(19) > 0 ? column(19) : NaN) nooutput
mlo = 10 ** floor(log10(STATS_min)) ; mhi = 10 ** ceil(log10(STATS_max * 1.01))
if (mlo >= 1) mlo = 0.5

set terminal pngcairo size 2200, (360 * nt + 220) font 'DejaVu Sans,11' noenhanced
set output png
set multiplot layout nt, 2 columnsfirst margins 0.05, 0.99, 0.12, 0.91 spacing 0.05, 0.07 \
    title sprintf("kosvmm-bench-lazy: %s\nleft: time per touched page / native 4 KiB demand paging (median, whiskers: fastest..slowest round), lower is better; right: resident pages per touched page", info) font ',13'

set style fill solid 0.85 border -1
set boxwidth bw absolute
set logscale y
set grid ytics
set xrange [-0.5 : np - 0.5]
set xtics ('seq-fwd write' 0, 'seq-fwd read' 1, 'seq-bwd write' 2, 'stride-16 write' 3, 'random-all write' 4, \
           'sparse-10%% write' 5, 'sparse-1%% write' 6) nomirror
set key at screen 0.5, 0.035 center center horizontal maxrows 2 width 2 samplen 2

# Left column: time.
set yrange [tlo : thi]
set ylabel 'ratio to native 4K (log)'
set format y '%gx'
do for [i = 1 : nt] {
    T = int(word(tlist, i))
    set title sprintf('time, %d thread%s', T, T == 1 ? '' : 's')
    plot for [k = 1 : nm] csv using (ok(T) && strcol(4) eq word(mkeys, k) ? pidx(strcol(1)) + xpos(k) : NaN):10:11:12:(bw) \
            with boxerrorbars lc rgb word(mcolours, k) title mname(k), \
         1 with lines dt 2 lw 2 lc rgb 'black' title "1x = native 4K"
    unset key
}

# Right column: memory.
set yrange [mlo : mhi]
set ylabel 'resident / touched pages (log)'
set format y '%g'
do for [i = 1 : nt] {
    T = int(word(tlist, i))
    set title sprintf('memory, %d thread%s', T, T == 1 ? '' : 's')
    plot for [k = 1 : nm] csv using (ok(T) && strcol(4) eq word(mkeys, k) ? pidx(strcol(1)) + xpos(k) : NaN):19 \
            with boxes lc rgb word(mcolours, k) notitle, \
         1 with lines dt 2 lw 2 lc rgb 'black' notitle
}
unset multiplot
