#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Echo servers side by side: examples/iou_port7 (one thread: fibers) against
# three peers written in bench/ -- echo-epoll (non-blocking sockets and
# epoll), echo-libuv (libuv's loop) and echo-uring (raw liburing: multishot
# accept, a provided buffer ring, multishot receive, no fibers) -- all single
# threaded, all loaded by the same client, bench/echo-load (plain epoll, not
# ioucontext, every echoed byte checked), in the same run.  Each measurement
# starts a fresh server (so each finds the same state), pinned with taskset,
# and the servers take turns, in a rotating order, REPS times per case
# (TARGET_REPS times for the cross-CPU cases at 100 to 10,000 connections,
# whose targets against raw liburing leave a few per cent, about the noise of
# one run on a virtual machine); the median of the repetitions is reported,
# with the spread.  Server CPU time comes from
# /proc/PID/task/*/schedstat over the measured window, so that CPU per
# request is reported beside throughput.
#
# Cases (client on CPU 1 and server on CPU 0 unless said otherwise):
#   tcp64-c{1,100,1000,10000}   64-byte ping-pong (depth 1)
#   same-c{1,100}               the same with client and server both on CPU 0
#   tcp16k-c100                 16 KiB messages, 100 connections (MB/s)
#   udp64-c100                  64-byte datagrams, 100 flows
#   idle-c10000                 server memory per idle connection (KiB)
#
#   bench/bench-echo.sh [BUILD_DIR [OUT_DIR]]   (default: build, bench/report)
#   ECHO_SECS=5 ECHO_WARMUP=1 ECHO_REPS=3        window, warm-up, repetitions
#   ECHO_TARGET_REPS=11  repetitions of tcp64-c100, tcp64-c1000, tcp64-c10000
#   ECHO_CASES="..."  ECHO_SERVERS="iou_port7 uring epoll libuv"
#
# Writes OUT_DIR/echo.tsv (every run), OUT_DIR/echo.md (the tables, also
# printed on stdout) and OUT_DIR/echo.png (requests/s and p99 against the
# connection count; needs gnuplot).  Asserts nothing: it measures.
set -euo pipefail

build=${1:-build}
out=${2:-bench/report}
secs=${ECHO_SECS:-5}
warmup=${ECHO_WARMUP:-1}
reps=${ECHO_REPS:-3}
target_reps=${ECHO_TARGET_REPS:-11}
read -ra servers <<<"${ECHO_SERVERS:-iou_port7 uring epoll libuv}"
read -ra cases <<<"${ECHO_CASES:-tcp64-c1 tcp64-c100 tcp64-c1000 tcp64-c10000 same-c1 same-c100 tcp16k-c100 udp64-c100 idle-c10000}"

die() {
	echo "bench-echo.sh: $*" >&2
	exit 1
}

[[ -d $build ]] || die "no build directory '$build' (build first, see bench/README.md)"
load=$build/bench/echo-load
[[ -x $load ]] || die "no $load (build first)"
cache=$build/CMakeCache.txt
if [[ -f $cache ]] && grep -q '^IOU_SANITIZE:.*=.\+' "$cache"; then
	echo "bench-echo.sh: WARNING: sanitizer build; numbers are not representative" >&2
fi

server_bin() {
	case $1 in
	iou_port7) echo "$build/examples/iou_port7" ;;
	*) echo "$build/bench/echo-$1" ;;
	esac
}
for s in "${servers[@]}"; do
	[[ -x $(server_bin "$s") ]] || die "no $(server_bin "$s") (is libuv1-dev installed? see bench/README.md)"
done

ncpu=$(nproc)
if ((ncpu < 2)); then
	echo "bench-echo.sh: WARNING: one CPU; the cross-CPU cases share it" >&2
fi
server_cpu=0
client_cpu=$((ncpu > 1 ? 1 : 0))

mkdir -p "$out"
tsv=$out/echo.tsv
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-echo.XXXXXX")
spid=
cleanup() {
	[[ -z $spid ]] || kill "$spid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# Start server $1 pinned to CPU $2; sets spid and sport.
start_server() {
	local bin args=(-a 127.0.0.1 -p 0) deadline=$((SECONDS + 10))

	bin=$(server_bin "$1")
	[[ $1 == iou_port7 ]] && args+=(-t 1)
	taskset -c "$2" "$bin" "${args[@]}" >"$tmp/server.out" 2>"$tmp/server.err" &
	spid=$!
	# Until the whole line is there: a reader can catch it half written.
	sport=
	until [[ -n $sport ]]; do
		kill -0 "$spid" 2>/dev/null || die "$1 did not start: $(cat "$tmp/server.err")"
		((SECONDS < deadline)) || die "$1 did not start within 10 s"
		sleep 0.02
		[[ -s $tmp/server.out && -z $(tail -c 1 "$tmp/server.out") ]] || continue
		sport=$(sed -n 's/.*listening on .* port \([0-9]\+\).*/\1/p' "$tmp/server.out" | head -n 1)
	done
}

stop_server() {
	kill "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	spid=
}

# The load-client arguments and CPUs of case $1: sets largs, scpu, ccpu.
case_setup() {
	scpu=$server_cpu
	ccpu=$client_cpu
	case $1 in
	tcp64-c*) largs=(-c "${1#tcp64-c}" -s 64) ;;
	same-c*)
		largs=(-c "${1#same-c}" -s 64)
		ccpu=$server_cpu
		;;
	tcp16k-c*) largs=(-c "${1#tcp16k-c}" -s 16384) ;;
	udp64-c*) largs=(-u -c "${1#udp64-c}" -s 64) ;;
	idle-c*) largs=(-c "${1#idle-c}" --idle 2) ;;
	*) die "unknown case '$1'" ;;
	esac
	[[ $1 == idle-* ]] || largs+=(-t "$secs" -w "$warmup")
}

# One measurement: case $1, server $2, repetition $3; appends to the TSV.
measure() {
	local line rc=0

	case_setup "$1"
	start_server "$2" "$scpu"
	taskset -c "$ccpu" "$load" -a 127.0.0.1 -p "$sport" -P "$spid" "${largs[@]}" \
		>"$tmp/load.out" 2>"$tmp/load.err" || rc=$?
	stop_server
	line=$(grep '^result ' "$tmp/load.out" | tail -n 1 || true)
	if [[ -z $line ]]; then
		echo "bench-echo.sh: $1 $2: no result (exit $rc): $(tail -n 1 "$tmp/load.err")" >&2
		line="result failed=1"
	elif ((rc != 0)); then
		echo "bench-echo.sh: $1 $2: echo-load exit $rc: $line" >&2
	fi
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${line#result }" >>"$tsv"
	echo "$1 $2 #$3: ${line#result }" >&2
}

printf 'case\tserver\trep\tresult\n' >"$tsv"
# Where and how: the report quotes it.
{
	echo "- Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "- Kernel: $(uname -sr); $(sed -n 's/^PRETTY_NAME=//p' /etc/os-release | tr -d '"')"
	echo "- Run: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --short HEAD 2>/dev/null || echo unknown), ${secs} s windows after ${warmup} s of warm-up, ${target_reps} repetitions at 100 to 10,000 connections (client and server apart) and ${reps} for the other cases"
	echo "- Rerun: \`cmake --preset default && cmake --build --preset default && bench/bench-report.sh build bench/report\` (everything; \`bench/bench-echo.sh build bench/report\` for the echo matrix alone)"
} >"$out/echo-env.md"
case_reps() {
	case $1 in
	tcp64-c100 | tcp64-c1000 | tcp64-c10000) echo "$target_reps" ;;
	*) echo "$reps" ;;
	esac
}
for c in "${cases[@]}"; do
	nrep=$(case_reps "$c")
	for ((rep = 1; rep <= nrep; rep++)); do
		# Rotate the order so that no server always runs first, keeping
		# the servers of each pair (1st and 2nd: iou_port7 and uring by
		# default) next to each other, so that the paired ratios of the
		# report compare runs made seconds apart: with four servers the
		# orders are 0123, 1032, 2301, 3210, then again.
		n=${#servers[@]}
		r0=$((rep - 1))
		for ((k = 0; k < n; k++)); do
			if ((n % 2 == 0)); then
				i=$((((k ^ (r0 & 1)) + 2 * (r0 / 2)) % n))
			else
				i=$(((k + r0) % n))
			fi
			measure "$c" "${servers[$i]}" "$rep"
		done
	done
done

bash "$(dirname "${BASH_SOURCE[0]}")/echo-report.sh" "$tsv" "$out"
