#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The whole benchmark report in one command: the core benchmarks
# (run-core.sh: switch, spawn, sleepers, operations, channels, messages),
# iou_cat against GNU cat (bench-cat.sh), DNS lookups against getaddrinfo
# (bench-dns.sh; needs root for its private namespaces, skipped otherwise),
# iou_tlsd against socat (bench-tls.sh), each writing its markdown table to
# OUT_DIR/{core,cat,dns,tls}.md, and last the echo matrix (bench-echo.sh),
# whose report OUT_DIR/echo.md then carries those tables too.  Each script
# measures its peers in the same run; a part that cannot run is named in
# its file instead of a table, and the others go on.
#
#   bench/bench-report.sh [BUILD_DIR [OUT_DIR]]   (default: build, bench/report)
#
# The environment variables of each script apply (ECHO_SECS, BENCH_CAT_RUNS,
# ...); BENCH_PARTS="core cat dns tls echo" picks the parts.  About 25
# minutes on 2 CPUs with the defaults; run it on a quiet machine.
set -uo pipefail

here=$(dirname "${BASH_SOURCE[0]}")
build=${1:-build}
out=${2:-bench/report}
read -ra parts <<<"${BENCH_PARTS:-core cat dns tls echo}"

[[ -d $build ]] || {
	echo "bench-report.sh: no build directory '$build' (build first, see bench/README.md)" >&2
	exit 2
}
mkdir -p "$out"

# Run one table-printing script; its table (stdout) goes to OUT/NAME.md.
table() {
	local name=$1 script=$2
	local tmp=$out/$name.md.tmp

	echo "=== $name ($script)" >&2
	if bash "$here/$script" "$build" >"$tmp"; then
		mv "$tmp" "$out/$name.md"
	else
		echo "bench-report.sh: $script failed (exit $?); see its output above" >&2
		{
			echo "Not measured in this run: \`bench/$script\` failed (exit status shown on"
			echo "the console of the run)."
		} >"$out/$name.md"
		rm -f "$tmp"
	fi
}

for p in "${parts[@]}"; do
	case $p in
	core) table core run-core.sh ;;
	cat) table cat bench-cat.sh ;;
	dns)
		if ((EUID == 0)); then
			table dns bench-dns.sh
		else
			echo "Not measured in this run: \`bench/bench-dns.sh\` needs root." >"$out/dns.md"
		fi
		;;
	tls) table tls bench-tls.sh ;;
	echo) ;;
	*)
		echo "bench-report.sh: unknown part '$p' (core cat dns tls echo)" >&2
		exit 2
		;;
	esac
done
for p in "${parts[@]}"; do
	[[ $p != echo ]] || exec bash "$here/bench-echo.sh" "$build" "$out"
done
