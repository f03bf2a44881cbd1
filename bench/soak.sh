#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Soak: examples/iou_port7 and examples/iou_tlsd side by side for a long
# time under load, on 127.0.0.1 only, with their resident memory and
# descriptor counts sampled into a CSV; at the end it says whether both
# stayed flat.  It is not a performance benchmark (nothing is timed; other
# work may run meanwhile) and not part of the test suite.
#
# Load, all of it verified byte for byte by clients not built on ioucontext:
#   iou_port7  bench/echo-load: 100 TCP connections, 4 KiB messages, 4 in
#              flight each, for the whole run, and 20 UDP flows beside them;
#              tests/churn-client in a loop: rounds of 20,000
#              connect/echo/reset cycles (8 workers, 1..4096 bytes).
#   iou_tlsd   tests/churn-client in two loops: rounds of 2,000 full TLS
#              handshakes with an echo and a reset (8 workers), and rounds
#              of 200 sessions echoing 1..64 KiB and ending with close_notify.
#
# Every SOAK_INTERVAL seconds one line per server goes to the CSV:
#   seconds,server,rss_kib,fds,rounds
# (rounds: churn rounds completed so far).  After the warm-up (SOAK_WARMUP
# seconds), the first minute's maxima are compared with the last minute's:
# flat means the last minute's RSS maximum is within SOAK_RSS_SLACK KiB
# (default 2048) of the first's, and its descriptor maximum within
# SOAK_FD_SLACK (default 32: churning connections come and go) of the
# first's.  When the load stops, each server must be back to its idle
# descriptor count, still echo correctly, and stop on SIGTERM with status 0.
#
#   bench/soak.sh [BUILD_DIR]            (default: build, a RelWithDebInfo tree)
#   SOAK_SECONDS=600 SOAK_INTERVAL=5 SOAK_WARMUP=60
#   SOAK_CSV=soak.csv                    where the samples go
#
# Exit status: 0 if both stayed flat and every load passed, 1 otherwise.
set -euo pipefail

build=${1:-build}
secs=${SOAK_SECONDS:-600}
interval=${SOAK_INTERVAL:-5}
warmup=${SOAK_WARMUP:-60}
csv=${SOAK_CSV:-soak.csv}
rss_slack=${SOAK_RSS_SLACK:-2048}
fd_slack=${SOAK_FD_SLACK:-32}
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
certs="$src/tests/fixtures/tls"
port7="$build/examples/iou_port7"
tlsd="$build/examples/iou_tlsd"
load="$build/bench/echo-load"
churn="$build/tests/churn-client"

die() {
	echo "soak: $*" >&2
	exit 1
}
for b in "$port7" "$tlsd" "$load" "$churn"; do
	[[ -x $b ]] || die "$b not found: build the tree first (cmake --build --preset default)"
done
((secs >= warmup + 120)) || die "SOAK_SECONDS ($secs) must leave two minutes after SOAK_WARMUP ($warmup)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iou-soak.XXXXXX")
pids=()
# shellcheck disable=SC2317 # run by the trap
cleanup() {
	for p in "${pids[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

nfds() {
	find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}
rss() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# start NAME BINARY ARGS...: a server on a port of its choosing; sets $pid, $port.
start() {
	local name=$1 bin=$2 deadline=$((SECONDS + 15))
	shift 2
	"$bin" -a 127.0.0.1 -p 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.log" &
	pid=$!
	pids+=("$pid")
	until grep -q listening "$tmp/$name.out" 2>/dev/null; do
		kill -0 "$pid" 2>/dev/null || die "$name exited: $(cat "$tmp/$name.log")"
		((SECONDS < deadline)) || die "$name: no ready line"
		sleep 0.05
	done
	port=$(sed -n 's/.* port \([0-9][0-9]*\) .*/\1/p' "$tmp/$name.out")
}

start port7 "$port7"
p7_pid=$pid p7_port=$port p7_idle=$(nfds "$pid")
start tlsd "$tlsd" --cert "$certs/server-ec.pem" --key "$certs/server-ec.key" -q
tl_pid=$pid tl_port=$port tl_idle=$(nfds "$pid")
echo "soak: iou_port7 pid $p7_pid port $p7_port, iou_tlsd pid $tl_pid port $tl_port, $secs s"

# loop NAME COMMAND...: COMMAND again and again until $tmp/stop exists;
# counts rounds in $tmp/NAME.rounds; a failed round ends the loop (status 1).
loop() {
	local name=$1 n=0
	shift
	echo 0 >"$tmp/$name.rounds"
	(
		until [[ -e $tmp/stop ]]; do
			"$@" >"$tmp/$name.last" 2>&1 || {
				echo "soak: $name round $((n + 1)) failed:" >&2
				cat "$tmp/$name.last" >&2
				exit 1
			}
			n=$((n + 1))
			echo "$n" >"$tmp/$name.rounds"
		done
	) &
	pids+=($!)
	loops+=($!)
}
loops=()
"$load" -p "$p7_port" -c 100 -s 4096 -d 4 -w 0 -t "$secs" >"$tmp/load-tcp.out" 2>&1 &
tcp_load=$!
pids+=("$tcp_load")
"$load" -p "$p7_port" -u -c 20 -s 512 -d 4 -w 0 -t "$secs" >"$tmp/load-udp.out" 2>&1 &
udp_load=$!
pids+=("$udp_load")
loop p7churn "$churn" -p "$p7_port" -n 20000 -c 8 -b 4096 --timeout 30
loop tlchurn "$churn" -p "$tl_port" --tls --cafile "$certs/ca.pem" -n 2000 -c 8 --timeout 30
loop tlecho "$churn" -p "$tl_port" --tls --cafile "$certs/ca.pem" -n 200 -c 2 -b 65536 \
	--close fin --timeout 30

echo "seconds,server,rss_kib,fds,rounds" >"$csv"
t0=$SECONDS
while ((SECONDS - t0 < secs)); do
	t=$((SECONDS - t0))
	for l in "${loops[@]}"; do
		kill -0 "$l" 2>/dev/null || die "a load loop failed at $t s (see above)"
	done
	kill -0 "$p7_pid" 2>/dev/null || die "iou_port7 died at $t s: $(tail -n 3 "$tmp/port7.log")"
	kill -0 "$tl_pid" 2>/dev/null || die "iou_tlsd died at $t s: $(tail -n 3 "$tmp/tlsd.log")"
	echo "$t,iou_port7,$(rss "$p7_pid"),$(nfds "$p7_pid"),$(cat "$tmp/p7churn.rounds")" >>"$csv"
	echo "$t,iou_tlsd,$(rss "$tl_pid"),$(nfds "$tl_pid"),$(($(cat "$tmp/tlchurn.rounds") + $(cat "$tmp/tlecho.rounds")))" >>"$csv"
	sleep "$interval"
done

touch "$tmp/stop"
status=0
for l in "${loops[@]}"; do
	wait "$l" || status=1
done
wait "$tcp_load" || {
	echo "soak: echo-load (TCP) failed: $(tail -n 3 "$tmp/load-tcp.out")" >&2
	status=1
}
wait "$udp_load" || {
	echo "soak: echo-load (UDP) failed: $(tail -n 3 "$tmp/load-udp.out")" >&2
	status=1
}
echo "soak: iou_port7 load: $(tail -n 1 "$tmp/load-tcp.out")"
echo "soak: iou_port7 UDP:  $(tail -n 1 "$tmp/load-udp.out")"
echo "soak: rounds: port7 churn $(cat "$tmp/p7churn.rounds") x 20000 cycles, tlsd churn" \
	"$(cat "$tmp/tlchurn.rounds") x 2000 handshakes, tlsd echo $(cat "$tmp/tlecho.rounds") x 200 sessions"

# verdict SERVER IDLE_FDS PID PORT: flat or not, back to idle, still echoing.
verdict() {
	local name=$1 idle=$2 spid=$3 first last deadline=$((SECONDS + 10))
	first=$(awk -F, -v s="$name" -v a="$warmup" -v b=$((warmup + 60)) \
		'$2 == s && $1 >= a && $1 < b { if ($3 > r) r = $3; if ($4 > f) f = $4 } END { print r + 0, f + 0 }' "$csv")
	last=$(awk -F, -v s="$name" -v a=$((secs - 60)) \
		'$2 == s && $1 >= a { if ($3 > r) r = $3; if ($4 > f) f = $4 } END { print r + 0, f + 0 }' "$csv")
	read -r r1 f1 <<<"$first"
	read -r r2 f2 <<<"$last"
	if ((r2 <= r1 + rss_slack && f2 <= f1 + fd_slack)); then
		echo "soak: $name flat: RSS max $r1 KiB in the first minute after warm-up, $r2 KiB in the last ($((r2 - r1)) KiB, bound +$rss_slack); descriptors max $f1 then $f2 (bound +$fd_slack)"
	else
		echo "soak: $name NOT flat: RSS max $r1 then $r2 KiB (bound +$rss_slack); descriptors max $f1 then $f2 (bound +$fd_slack)"
		status=1
	fi
	while (($(nfds "$spid") != idle)); do
		((SECONDS < deadline)) || {
			echo "soak: $name holds $(nfds "$spid") descriptors after the load, $idle at rest"
			status=1
			break
		}
		sleep 0.1
	done
	echo "soak: $name after the load: $(nfds "$spid") descriptors ($idle at rest), RSS $(rss "$spid") KiB"
}
verdict iou_port7 "$p7_idle" "$p7_pid"
verdict iou_tlsd "$tl_idle" "$tl_pid"

"$churn" -p "$p7_port" -n 1000 -c 4 -b 65536 --close fin >"$tmp/final.out" 2>&1 ||
	{
		echo "soak: iou_port7 final check failed: $(cat "$tmp/final.out")" >&2
		status=1
	}
"$churn" -p "$tl_port" --tls --cafile "$certs/ca.pem" -n 100 -c 4 -b 65536 --close fin \
	>"$tmp/final-tls.out" 2>&1 || {
	echo "soak: iou_tlsd final check failed: $(cat "$tmp/final-tls.out")" >&2
	status=1
}
for p in "$p7_pid" "$tl_pid"; do
	kill -TERM "$p"
	rc=0
	wait "$p" || rc=$?
	((rc == 0)) || {
		echo "soak: server $p exited with $rc after SIGTERM" >&2
		status=1
	}
done
echo "soak: samples in $csv; $([[ $status == 0 ]] && echo PASSED || echo FAILED)"
exit "$status"
