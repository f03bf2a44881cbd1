#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# GNU cat against examples/iou_cat in the same run, on a cached file of
# random data (1 GiB by default, made in $TMPDIR or /tmp and read once so
# it sits in the page cache): (a) file -> /dev/null; (b) file -> pipe ->
# `dd of=/dev/null bs=1M`, the same reader for both, which asks for 1 MiB
# per read so that the reader is not what is measured; (c) file -> pipe ->
# a splice reader (iou_cat >/dev/null, which moves pipe pages to /dev/null
# without copying), the cheapest reader there is.  Each case runs
# BENCH_CAT_RUNS times (default 3), cat and iou_cat alternating, and the
# best time counts.  Raw times go to stderr, a markdown table (MB/s, MB =
# 10^6 bytes, and the ratio iou_cat/cat) to stdout.  Asserts nothing.
#
#   bench/bench-cat.sh [BUILD_DIR]      (default: build)
#   BENCH_CAT_MB=1024 BENCH_CAT_RUNS=3  file size in MiB, runs per case
set -euo pipefail

build=${1:-build}
mib=${BENCH_CAT_MB:-1024}
runs=${BENCH_CAT_RUNS:-3}
iou=$build/examples/iou_cat
gnu=$(command -v cat)

if [[ ! -x $iou ]]; then
	echo "bench-cat.sh: no $iou (build first: cmake --preset default && cmake --build build)" >&2
	exit 2
fi
iou=$(cd "$(dirname "$iou")" && pwd)/iou_cat
cache=$build/CMakeCache.txt
debug='^(IOU_SANITIZE:[^=]*=.+|CMAKE_BUILD_TYPE:[^=]*=Debug)$'
if [[ -f $cache ]] && grep -qE "$debug" "$cache"; then
	echo "bench-cat.sh: WARNING: sanitizer or Debug build; numbers are not representative" >&2
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/iou-bench-cat.XXXXXX")
trap 'rm -rf "$dir"' EXIT
file=$dir/data
bytes=$((mib * 1024 * 1024))
echo "# making a $mib MiB file in $dir" >&2
head -c "$bytes" /dev/urandom >"$file"
"$gnu" "$file" >/dev/null # into the page cache

# A sanity check, so that a broken iou_cat cannot post a fast time.
got=$("$iou" "$file" | wc -c)
if ((got != bytes)); then
	echo "bench-cat.sh: iou_cat copied $got bytes of $bytes" >&2
	exit 1
fi

to_null() { "$1" "$file" >/dev/null; }
to_dd() { "$1" "$file" | dd of=/dev/null bs=1M status=none; }
to_splice() { "$1" "$file" | "$iou" >/dev/null; }

# measure CASE: run CASE with each tool $runs times, alternating; keep the
# best wall time in ns as best[CASE/cat] and best[CASE/iou_cat].
declare -A best
measure() {
	local case=$1 tool key t0 t1 ns i
	for ((i = 1; i <= runs; i++)); do
		for tool in "$gnu" "$iou"; do
			key=$case/$(basename "$tool")
			t0=$(date +%s%N)
			"$case" "$tool"
			t1=$(date +%s%N)
			ns=$((t1 - t0))
			echo "# $key run $i: $((ns / 1000000)) ms" >&2
			if [[ -z ${best[$key]:-} ]] || ((ns < ${best[$key]})); then
				best[$key]=$ns
			fi
		done
	done
}

mbps() { awk -v b="$bytes" -v ns="$1" 'BEGIN { printf "%.0f", b / ns * 1000 }'; }
ratio() { awk -v c="$1" -v i="$2" 'BEGIN { printf "%.2f", c / i }'; }
met() { awk -v c="$1" -v i="$2" 'BEGIN { print (c / i >= 1.0) ? "yes" : "no" }'; }

row() {
	local label=$2 c=${best[$1/cat]} i=${best[$1/iou_cat]}
	echo "| $label | $(mbps "$c") | $(mbps "$i") | $(ratio "$c" "$i") | ≥ 1.0 | $(met "$c" "$i") |"
}

measure to_null
measure to_dd
measure to_splice

echo "| $mib MiB cached file | GNU cat MB/s | iou_cat MB/s | ratio iou_cat/cat | target | met? |"
echo "| --- | ---: | ---: | ---: | --- | --- |"
row to_null "(a) → /dev/null"
row to_dd "(b) → pipe → dd bs=1M"
row to_splice "(c) → pipe → splice reader (informative)"
