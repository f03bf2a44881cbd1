#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Turns the runs bench-echo.sh recorded (TSV: case, server, repetition and
# echo-load's key=value result) into markdown tables of medians, the ratios
# the echo issue sets targets for, and a plot of requests/s and p99 latency
# against the connection count (gnuplot, PNG).  Kept apart from the
# measuring script so that a report can be rebuilt from a saved TSV.
#
#   bench/echo-report.sh TSV OUT_DIR    writes OUT_DIR/echo.md, OUT_DIR/echo.png
#
# The tables of the other benchmarks that bench-report.sh leaves in OUT_DIR
# (core.md, cat.md, dns.md, tls.md) are appended to echo.md, after
# OUT_DIR/echo-notes.md if it exists (the analysis of the run, written by
# hand: profiles and the causes of missed targets).
set -euo pipefail

tsv=${1:?usage: echo-report.sh TSV OUT_DIR}
out=${2:?usage: echo-report.sh TSV OUT_DIR}
md=$out/echo.md
dat=$out/echo-plot.dat

# Median, minimum and maximum of every key per (case, server), one line
# "case server key median min max" each.
awk -F'\t' '
NR > 1 {
	n = split($4, kv, " ")
	for (i = 1; i <= n; i++) {
		split(kv[i], p, "=")
		k = $1 SUBSEP $2 SUBSEP p[1]
		cnt[k]++
		v[k, cnt[k]] = p[2]
	}
}
END {
	for (k in cnt) {
		m = cnt[k]
		for (i = 1; i <= m; i++) a[i] = v[k, i] + 0
		for (i = 2; i <= m; i++) {	# insertion sort: a handful of values
			x = a[i]
			for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]
			a[j + 1] = x
		}
		med = m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
		split(k, f, SUBSEP)
		printf "%s %s %s %s %s %s\n", f[1], f[2], f[3], med, a[1], a[m]
	}
}' "$tsv" >"$out/echo-medians.txt"

reps=$(awk -F'\t' 'NR > 1 { print $3 }' "$tsv" | sort -n | tail -n 1)
servers=$(awk -F'\t' 'NR > 1 && !seen[$2]++ { printf "%s ", $2 }' "$tsv")
cases=$(awk -F'\t' 'NR > 1 && !seen[$1]++ { printf "%s ", $1 }' "$tsv")

{
	[[ ! -f $out/echo-env.md ]] || { cat "$out/echo-env.md"; echo; }
	echo "Medians of the runs of each cell (${reps:-?} at most; bench-echo.sh says how many per case),"
	echo "with the lowest and highest run beside throughput and CPU; a fresh server for every run."
	echo "\"CPU/req\" is the server's CPU time in the measured window (schedstat) per echoed"
	echo "request; p50/p99/p999 are round-trip times of single messages seen by the client."
	echo
	awk -v cases="$cases" -v servers="$servers" '
	{ m[$1, $2, $3] = $4; lo[$1, $2, $3] = $5; hi[$1, $2, $3] = $6 }
	function title(c) {
		if (c ~ /^tcp64-c/) return "64-byte ping-pong, " substr(c, 8) " connection(s), client CPU 1, server CPU 0"
		if (c ~ /^same-c/) return "64-byte ping-pong, " substr(c, 7) " connection(s), client and server on CPU 0"
		if (c ~ /^tcp16k-c/) return "16 KiB messages, " substr(c, 9) " connections"
		if (c ~ /^udp64-c/) return "UDP 64-byte datagrams, " substr(c, 8) " flows"
		if (c ~ /^idle-c/) return "memory per idle connection, " substr(c, 7) " connections"
		return c
	}
	function num(x, d) { return (x == "") ? "—" : sprintf("%." d "f", x) }
	function range(c, s, k, d) {
		if (lo[c, s, k] == "") return "—"
		return (d < 0) ? thousands(lo[c, s, k]) "–" thousands(hi[c, s, k]) \
			: num(lo[c, s, k], d) "–" num(hi[c, s, k], d)
	}
	function thousands(x,   s, r) {
		if (x == "") return "—"
		s = sprintf("%.0f", x); r = ""
		while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
		return s r
	}
	END {
		nc = split(cases, C, " "); ns = split(servers, S, " ")
		for (i = 1; i <= nc; i++) {
			c = C[i]
			print "### " title(c)
			print ""
			if (c ~ /^idle/) {
				print "| server | RSS before (KiB) | RSS with the idle connections (KiB) | KiB per connection |"
				print "| --- | ---: | ---: | ---: |"
				for (j = 1; j <= ns; j++) {
					s = S[j]
					print "| " s " | " thousands(m[c, s, "rss_before_kb"]) " | " thousands(m[c, s, "rss_idle_kb"]) " | " num(m[c, s, "kib_per_conn"], 2) " |"
				}
			} else {
				tp = (c ~ /16k/) ? "MB/s" : "requests/s"
				print "| server | " tp " | (min–max) | p50 µs | p99 µs | p999 µs | CPU/req µs | (min–max) | errors | lost |"
				print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
				for (j = 1; j <= ns; j++) {
					s = S[j]
					if (c ~ /16k/) {
						t = num(m[c, s, "mbps"], 0); tr = range(c, s, "mbps", 0)
					} else {
						t = thousands(m[c, s, "rps"]); tr = range(c, s, "rps", -1)
					}
					print "| " s " | " t " | " tr " | " num(m[c, s, "p50_us"], 1) " | " num(m[c, s, "p99_us"], 1) " | " num(m[c, s, "p999_us"], 1) " | " num(m[c, s, "server_cpu_us_per_req"], 3) " | " range(c, s, "server_cpu_us_per_req", 3) " | " num(m[c, s, "errors"] + m[c, s, "verify_errors"], 0) " | " num(m[c, s, "lost"], 0) " |"
				}
			}
			print ""
		}
	}' "$out/echo-medians.txt"

	echo "### Targets (iou_port7 against the peers, same run)"
	echo
	echo "Each ratio is paired: iou_port7's run divided by the peer's run of the same"
	echo "repetition (the servers take turns, so a pair is measured seconds apart and"
	echo "shares the machine's state).  \"measured\" is the median of these ratios and"
	echo "\"spread\" their lowest and highest, so that a slow spell of the virtual machine"
	echo "shows as spread instead of moving the verdict."
	echo
	echo "| target | measured | spread (pairs) | met? |"
	echo "| --- | ---: | ---: | --- |"
	awk -F'\t' '
	FNR == NR { split($0, f, " "); m[f[1], f[2], f[3]] = f[4]; next }
	FNR > 1 {
		n = split($4, kv, " ")
		for (i = 1; i <= n; i++) {
			split(kv[i], p, "=")
			v[$1, $2, $3, p[1]] = p[2]
		}
		if ($3 + 0 > reps[$1]) reps[$1] = $3 + 0
	}
	# Ratios of server s to peer q in key k over the repetitions of case c:
	# sets med, lo, hi and returns how many pairs there were.
	function paired(c, s, q, k,   r, n, i, j, x, a, b) {
		n = 0
		for (r = 1; r <= reps[c]; r++) {
			a = v[c, s, r, k]; b = v[c, q, r, k]
			if (a == "" || b == "" || b + 0 == 0) continue
			x[++n] = a / b
		}
		for (i = 2; i <= n; i++) {
			a = x[i]
			for (j = i - 1; j >= 1 && x[j] > a; j--) x[j + 1] = x[j]
			x[j + 1] = a
		}
		if (n) {
			med = n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
			lo = x[1]; hi = x[n]
		}
		return n
	}
	function row(what, c, q, k, op, lim,   n, ok) {
		n = paired(c, "iou_port7", q, k)
		if (!n) { print "| " what " | not measured | — | — |"; return }
		ok = (op == ">=") ? med >= lim : med <= lim
		printf "| %s | %.3f× | %.3f–%.3f (%d) | %s |\n", what, med, lo, hi, n, ok ? "yes" : "**no**"
	}
	END {
		split("100 1000 10000", N, " ")
		for (i = 1; i <= 3; i++) {
			c = "tcp64-c" N[i]
			row("requests/s ≥ 0.97× uring, " N[i] " connections", c, "uring", "rps", ">=", 0.97)
			row("CPU/request ≤ 1.05× uring, " N[i] " connections", c, "uring", "server_cpu_us_per_req", "<=", 1.05)
		}
		split("1 100", M, " ")
		for (i = 1; i <= 2; i++) {
			c = "same-c" M[i]
			row("same CPU, " M[i] " connection(s): requests/s ≥ 0.95× uring", c, "uring", "rps", ">=", 0.95)
			row("same CPU, " M[i] " connection(s): requests/s ≥ 1.05× epoll", c, "epoll", "rps", ">=", 1.05)
			row("same CPU, " M[i] " connection(s): requests/s ≥ 1.05× libuv", c, "libuv", "rps", ">=", 1.05)
		}
		row("p99 at 10,000 connections ≤ 0.6× epoll", "tcp64-c10000", "epoll", "p99_us", "<=", 0.6)
		k = m["idle-c10000", "iou_port7", "kib_per_conn"]
		if (k == "")
			print "| memory per idle connection ≤ 16 KiB | not measured | — | — |"
		else
			printf "| memory per idle connection ≤ 16 KiB | %.2f KiB | (median) | %s |\n", k, k <= 16 ? "yes" : "**no**"
	}' "$out/echo-medians.txt" "$tsv"
} >"$md"

# The plot: the cross-CPU 64-byte cases, one line per server.
awk -v servers="$servers" '
{ m[$1, $2, $3] = $4; if ($1 ~ /^tcp64-c/) conns[substr($1, 8) + 0] = 1 }
END {
	ns = split(servers, S, " ")
	printf "# conns"
	for (j = 1; j <= ns; j++) printf " %s_rps %s_p99", S[j], S[j]
	print ""
	n = 0
	for (c in conns) L[++n] = c + 0
	for (i = 2; i <= n; i++) { x = L[i]; for (j = i - 1; j >= 1 && L[j] > x; j--) L[j + 1] = L[j]; L[j + 1] = x }
	for (i = 1; i <= n; i++) {
		printf "%d", L[i]
		for (j = 1; j <= ns; j++) {
			r = m["tcp64-c" L[i], S[j], "rps"]; p = m["tcp64-c" L[i], S[j], "p99_us"]
			printf " %s %s", r == "" ? "NaN" : r, p == "" ? "NaN" : p
		}
		print ""
	}
}' "$out/echo-medians.txt" >"$dat"

# Hand-written analysis of the run (profiles, causes), kept beside the data.
if [[ -f $out/echo-notes.md ]]; then
	{
		echo
		cat "$out/echo-notes.md"
	} >>"$md"
fi

# The other benchmarks' tables, when bench-report.sh made them in OUT_DIR.
others=()
for part in core:"Core: switch, spawn, sleepers, operations, channels, messages (run-core.sh)" \
	cat:"iou_cat against GNU cat (bench-cat.sh)" \
	dns:"DNS lookups against getaddrinfo (bench-dns.sh)" \
	tls:"iou_tlsd against socat (bench-tls.sh)"; do
	[[ ! -f $out/${part%%:*}.md ]] || others+=("$part")
done
if ((${#others[@]})); then
	{
		echo
		echo "## The other benchmarks, same machine (bench/bench-report.sh)"
		for part in "${others[@]}"; do
			echo
			echo "### ${part#*:}"
			echo
			cat "$out/${part%%:*}.md"
		done
	} >>"$md"
fi

if command -v gnuplot >/dev/null && (($(wc -l <"$dat") > 1)); then
	ns=$(wc -w <<<"$servers")
	gnuplot <<EOF
set terminal pngcairo size 1200,500 noenhanced font ",10"
set output "$out/echo.png"
set multiplot layout 1,2 title "64-byte TCP echo, server CPU 0, client CPU 1 (median of $reps)"
set logscale x
set xlabel "connections"
set grid
set key top left
set format y "%.0f"
set ylabel "requests/s"
plot for [i=1:$ns] "$dat" using 1:(column(2*i)) with linespoints title word("$servers", i)
set logscale y
set key top left
set ylabel "p99 round trip (µs)"
plot for [i=1:$ns] "$dat" using 1:(column(2*i+1)) with linespoints title word("$servers", i)
unset multiplot
EOF
else
	echo "echo-report.sh: gnuplot not found (or no cross-CPU cases), no plot" >&2
fi

cat "$md"
