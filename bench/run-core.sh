#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Run the core benchmarks of an existing build and print their results as a
# markdown table next to the peers they are measured against and the targets
# of the foundation issue.  Builds nothing: the build directory ($1, default
# "build") must already hold bench/bench-switch, bench/bench-spawn,
# bench/bench-sleepers, bench/bench-ops, bench/bench-chan, bench/bench-msg and,
# when Boost.Context was found, bench/boost-switch.
# Each program is pinned to CPU 0 with taskset where that works, except
# bench-msg, which pins its two threads to CPUs 0 and 1 itself.  The raw
# output of every program goes to stderr as it runs, the table to stdout.  Counts can
# be changed with BENCH_SWITCH_N, BENCH_SPAWN_N, BENCH_OPS_N, BENCH_CHAN_N, BENCH_MSG_N,
# BENCH_MSG_RTT_N and BENCH_SLEEPERS_N (the
# sleepers run needs about 4 GiB of memory for its default 1,000,000).
set -euo pipefail

build=${1:-build}
switch_n=${BENCH_SWITCH_N:-10000000}
spawn_n=${BENCH_SPAWN_N:-1000000}
sleepers_n=${BENCH_SLEEPERS_N:-1000000}
ops_n=${BENCH_OPS_N:-2000000}
chan_n=${BENCH_CHAN_N:-2000000}
msg_n=${BENCH_MSG_N:-5000000}
msg_rtt_n=${BENCH_MSG_RTT_N:-20000}

if [[ ! -d $build ]]; then
	echo "run-core.sh: no build directory '$build' (build first, see bench/README.md)" >&2
	exit 2
fi

# Warn when the build cannot give meaningful numbers.
cache=$build/CMakeCache.txt
if [[ -f $cache ]]; then
	build_type=$(awk -F= '/^CMAKE_BUILD_TYPE:/ { print $2 }' "$cache")
	sanitize=$(awk -F= '/^IOU_SANITIZE:/ { print $2 }' "$cache")
	if [[ -n $sanitize ]]; then
		echo "run-core.sh: WARNING: sanitizer build ($sanitize); numbers are not representative" >&2
	fi
	if [[ $build_type == Debug || -z $build_type ]]; then
		echo "run-core.sh: WARNING: library built as '${build_type:-no build type}'; use Release or RelWithDebInfo" >&2
	fi
fi

pin=()
if command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null; then
	pin=(taskset -c 0)
fi

results=$(mktemp)
trap 'rm -f "$results"' EXIT

find_bench() {
	local dir
	for dir in "$build/bench" "$build"; do
		if [[ -x $dir/$1 ]]; then
			echo "$dir/$1"
			return 0
		fi
	done
	return 1
}

# run NAME ARGS...: run one program, keep its output, never stop the script.
# With nopin=1 in the environment, the program is not pinned by taskset.
run() {
	local name=$1 exe status=0 how=("${pin[@]}")
	shift
	[[ ${nopin:-0} == 1 ]] && how=()
	if ! exe=$(find_bench "$name"); then
		echo "# $name: not built" | tee -a "$results" >&2
		return 0
	fi
	echo "## ${how[*]:+${how[*]} }$exe $*" >&2
	"${how[@]}" "$exe" "$@" | tee -a "$results" >&2 || status=$?
	if ((status != 0)); then
		echo "# $name exited with status $status" | tee -a "$results" >&2
	fi
	return 0
}

run bench-switch "$switch_n"
run boost-switch "$switch_n"
run bench-spawn "$spawn_n"
run bench-sleepers "$sleepers_n"
run bench-ops "$ops_n"
run bench-chan "$chan_n"
nopin=1 run bench-msg "$msg_n" "$msg_rtt_n"
echo >&2

# val BENCH NAME: the value of the line "BENCH NAME VALUE", or empty.
val() {
	awk -v b="$1" -v n="$2" '$1 == b && $2 == n { v = $3 } END { if (v != "") print v }' "$results"
}

# ratio A B: A / B, or "—" when either is missing.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a == "" || b == "" || b + 0 == 0) print "—"; else printf "%.2f×\n", a / b }'
}

# met VALUE OP LIMIT: "yes", "no" or "—" (no value).
met() {
	awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
		if (v == "") { print "—"; exit }
		ok = (op == "<=") ? (v + 0 <= l + 0) : (v + 0 >= l + 0)
		print ok ? "yes" : "no" }'
}

or_dash() {
	echo "${1:-—}"
}

sw=$(val switch ioucontext)
boost=$(val switch boost_fcontext)
swap=$(val switch swapcontext)
sj=$(val switch sigsetjmp)
sjf=$(val switch sigsetjmp_fn)
sp_fiber=$(val spawn_join fiber)
sp_main=$(val spawn_join main)
sp_batch=$(val spawn_join batch1000)
reached=$(val sleepers reached)
kib=$(val sleepers kib_per_fiber)
valid=$(val sleepers valid)
ops_rs=$(val ops raw_serial_ns)
ops_is=$(val ops iou_serial_ns)
ops_rw=$(val ops raw_wide64_ns)
ops_iw=$(val ops iou_wide64_ns)
chan_pp=$(val chan pingpong)
chan_y=$(val chan yield)
mtx_u=$(val mutex uncontended)
mtx_c11=$(val mutex c11_mtx)
msg_ps=$(val msg post_stream_mps)
msg_xs=$(val msg xchan_stream_mps)
msg_cs=$(val msg condvar_stream_mps)
msg_es=$(val msg epoll_stream_mps)
msg_pr=$(val msg post_rtt_ns)
msg_xr=$(val msg xchan_rtt_ns)
msg_cr=$(val msg condvar_rtt_ns)
msg_er=$(val msg epoll_rtt_ns)

# mps VALUE: messages per second as millions, or empty.
mps() {
	awk -v v="$1" 'BEGIN { if (v != "") printf "%.1f M\n", v / 1e6 }'
}

sleep_met() {
	if [[ -n $valid && $valid != 1 ]]; then
		echo "invalid run"
	else
		met "$@"
	fi
}

echo "| benchmark | ioucontext | peer | ratio | target | met? |"
echo "| --- | ---: | ---: | ---: | --- | --- |"
echo "| switch vs Boost fcontext (ns) | $(or_dash "$sw") | $(or_dash "$boost") | $(ratio "$sw" "$boost") | ≤ 15 ns | $(met "$sw" "<=" 15) |"
echo "| switch vs glibc swapcontext (ns) | $(or_dash "$sw") | $(or_dash "$swap") | $(ratio "$sw" "$swap") | — | — |"
echo "| switch vs bare sigsetjmp/siglongjmp (ns) | $(or_dash "$sw") | $(or_dash "$sj") | $(ratio "$sw" "$sj") | — | — |"
echo "| switch vs sigsetjmp/siglongjmp in a function (ns) | $(or_dash "$sw") | $(or_dash "$sjf") | $(ratio "$sw" "$sjf") | — | — |"
echo "| spawn+join in a fiber, pooled (ns) | $(or_dash "$sp_fiber") | — | — | ≤ 200 ns | $(met "$sp_fiber" "<=" 200) |"
echo "| spawn+join from main, pooled (ns) | $(or_dash "$sp_main") | — | — | ≤ 200 ns | $(met "$sp_main" "<=" 200) |"
echo "| spawn 1000 then join 1000 (ns per fiber) | $(or_dash "$sp_batch") | — | — | ≤ 200 ns | $(met "$sp_batch" "<=" 200) |"
echo "| sleeping fibers reached | $(or_dash "$reached") | — | — | ≥ 1,000,000 | $(sleep_met "$reached" ">=" 1000000) |"
echo "| resident KiB per sleeping fiber | $(or_dash "$kib") | — | — | ≤ 8 KiB | $(sleep_met "$kib" "<=" 8) |"
echo "| nop round trip, one in flight, vs raw liburing (ns) | $(or_dash "$ops_is") | $(or_dash "$ops_rs") | $(ratio "$ops_is" "$ops_rs") | — | — |"
echo "| nop, 64 fibers vs raw batches of 64 (ns per op) | $(or_dash "$ops_iw") | $(or_dash "$ops_rw") | $(ratio "$ops_iw" "$ops_rw") | — | — |"
echo "| channel ping-pong vs fiber_yield switch (ns per message) | $(or_dash "$chan_pp") | $(or_dash "$chan_y") | $(ratio "$chan_pp" "$chan_y") | — | — |"
echo "| mutex lock+unlock, uncontended, vs C11 mtx_t (ns) | $(or_dash "$mtx_u") | $(or_dash "$mtx_c11") | $(ratio "$mtx_u" "$mtx_c11") | — | — |"
msg_target=$(awk -v c="$msg_cs" 'BEGIN { if (c != "") print 2 * c }')
echo "| messages/s between 2 reactors: reactor_post vs mutex+condvar queue | $(or_dash "$(mps "$msg_ps")") | $(or_dash "$(mps "$msg_cs")") | $(ratio "$msg_ps" "$msg_cs") | ≥ 2× | $(met "$msg_ps" ">=" "$msg_target") |"
echo "| messages/s: reactor_post vs eventfd+epoll queue | $(or_dash "$(mps "$msg_ps")") | $(or_dash "$(mps "$msg_es")") | $(ratio "$msg_ps" "$msg_es") | — | — |"
echo "| messages/s: fibers through iou_xchan vs mutex+condvar queue | $(or_dash "$(mps "$msg_xs")") | $(or_dash "$(mps "$msg_cs")") | $(ratio "$msg_xs" "$msg_cs") | — | — |"
echo "| round trip between 2 reactors: reactor_post vs condvar pair (ns) | $(or_dash "$msg_pr") | $(or_dash "$msg_cr") | $(ratio "$msg_pr" "$msg_cr") | — | — |"
echo "| round trip: reactor_post vs eventfd+epoll pair (ns) | $(or_dash "$msg_pr") | $(or_dash "$msg_er") | $(ratio "$msg_pr" "$msg_er") | — | — |"
echo "| round trip: fibers through iou_xchan vs condvar pair (ns) | $(or_dash "$msg_xr") | $(or_dash "$msg_cr") | $(ratio "$msg_xr" "$msg_cr") | — | — |"
