#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# TLS echo servers side by side: iou_tlsd (one thread, one reactor) against
# socat OPENSSL-LISTEN:PORT,fork,...,verify=0 PIPE (OpenSSL, a process per
# connection: the echo server a user might reach for), in the same run, with
# the same certificate and key and the same load client, bench/bench-tls (a
# plain OpenSSL client, independent of ioucontext).  Both servers are
# pinned to one CPU and the client to another (taskset), and the runs
# alternate between the servers.
#
#   handshakes/s  full handshakes (no resumption, certificate and host name
#                 verified by the client), close_notify both ways, with
#                 BENCH_TLS_HS_CONNS client threads at once
#   echo MB/s     16 KiB writes, up to 256 KiB in flight per connection,
#                 every echoed byte checked; 1 and 16 connections
#
# for an ECDSA P-256 and an RSA 2048 certificate (tests/fixtures/tls), best
# of BENCH_TLS_REPS runs of BENCH_TLS_SECONDS each.  Raw output goes to
# stderr, a markdown table to stdout.  Targets: iou_tlsd ≥ 1.5× socat's
# handshakes per second and ≥ 1.0× its throughput.  Asserts nothing.
#
#   bench/bench-tls.sh [BUILD_DIR]        (default: build)
#   BENCH_TLS_SECONDS=3 BENCH_TLS_REPS=3 BENCH_TLS_HS_CONNS=8
#   BENCH_TLS_CONNS="1 16" BENCH_TLS_CERTS="ec rsa"
#   BENCH_TLS_SERVER_CPU=0 BENCH_TLS_CLIENT_CPU=1
set -euo pipefail

build=${1:-build}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
certs=$here/../tests/fixtures/tls
secs=${BENCH_TLS_SECONDS:-3}
reps=${BENCH_TLS_REPS:-3}
hs_conns=${BENCH_TLS_HS_CONNS:-8}
echo_conns=${BENCH_TLS_CONNS:-1 16}
cert_kinds=${BENCH_TLS_CERTS:-ec rsa}
scpu=${BENCH_TLS_SERVER_CPU:-0}
ccpu=${BENCH_TLS_CLIENT_CPU:-1}
server=$build/examples/iou_tlsd
client=$build/bench/bench-tls

for f in "$server" "$client"; do
	if [[ ! -x $f ]]; then
		echo "bench-tls.sh: no $f (build first: cmake --preset default && cmake --build build;" \
			"bench-tls needs libssl-dev, iou_tlsd libioucontext-tls)" >&2
		exit 2
	fi
done
for tool in socat taskset; do
	command -v "$tool" >/dev/null || {
		echo "bench-tls.sh: needs $tool" >&2
		exit 2
	}
done
cache=$build/CMakeCache.txt
if [[ -f $cache ]] && grep -qE '^(IOU_SANITIZE:[^=]*=.+|CMAKE_BUILD_TYPE:[^=]*=Debug)$' "$cache"; then
	echo "bench-tls.sh: WARNING: sanitizer or Debug build; numbers are not representative" >&2
fi
# Command prefixes that pin (taskset execs the program: $! stays its pid).
pin=true
on_server_cpu=(taskset -c "$scpu")
on_client_cpu=(taskset -c "$ccpu")
if ! taskset -c "$scpu" true 2>/dev/null || ! taskset -c "$ccpu" true 2>/dev/null; then
	echo "bench-tls.sh: WARNING: cannot pin to CPUs $scpu and $ccpu; running unpinned" >&2
	pin=false
	on_server_cpu=()
	on_client_cpu=()
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/iou-bench-tls.XXXXXX")
spid=
opid=
cleanup() {
	for p in $spid $opid; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT

listening() {
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h && $4 == "0A" { f = 1 }
		END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# start_servers CERT KEY: iou_tlsd and socat, both pinned to $scpu; sets
# $spid/$sport (iou_tlsd) and $opid/$oport (socat).
start_servers() {
	local cert=$1 key=$2 i
	"${on_server_cpu[@]}" "$server" --cert "$cert" --key "$key" -a 127.0.0.1 -p 0 -q \
		>"$dir/iou.out" 2>"$dir/iou.err" &
	spid=$!
	for ((i = 0; i < 200; i++)); do
		grep -q listening "$dir/iou.out" && break
		sleep 0.05
	done
	sport=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$dir/iou.out")
	[[ -n $sport ]] || {
		echo "bench-tls.sh: iou_tlsd did not start: $(cat "$dir/iou.err")" >&2
		exit 1
	}
	for ((i = 0; i < 20; i++)); do
		oport=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		"${on_server_cpu[@]}" socat "OPENSSL-LISTEN:$oport,bind=127.0.0.1,fork,reuseaddr,cert=$cert,key=$key,verify=0" \
			PIPE 2>"$dir/socat.err" &
		opid=$!
		for ((j = 0; j < 100; j++)); do
			listening "$oport" && return 0
			kill -0 "$opid" 2>/dev/null || break
			sleep 0.05
		done
		wait "$opid" 2>/dev/null || true
	done
	echo "bench-tls.sh: socat did not start: $(cat "$dir/socat.err")" >&2
	exit 1
}

stop_servers() {
	kill "$spid" "$opid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	wait "$opid" 2>/dev/null || true
	spid='' opid=''
}

# run LABEL PORT PID ARGS...: one client run; prints its lines to stderr and
# appends them to $dir/results.
run() {
	local label=$1 port=$2 pid=$3 out
	shift 3
	out=$("${on_client_cpu[@]}" "$client" --port "$port" --cafile "$certs/ca.pem" --servername localhost \
		--seconds "$secs" --server-pid "$pid" --label "$label" "$@")
	echo "$out" >&2
	echo "$out" >>"$dir/results"
}

# best LABEL METRIC: the largest value reported for LABEL_METRIC.
best() {
	awk -v k="$1_$2" '$1 == "tls" && $2 == k && $3 > m { m = $3 } END { printf "%.1f", m }' \
		"$dir/results"
}
# mean LABEL METRIC: the mean of the values reported for LABEL_METRIC.
mean() {
	awk -v k="$1_$2" '$1 == "tls" && $2 == k { s += $3; n++ }
		END { if (n) printf "%.0f", s / n; else printf "?" }' "$dir/results"
}
# cost LABEL METRIC SCALE: server CPU per unit of work, averaged over the
# runs: CPU seconds per unit × SCALE (µs per handshake, µs per echoed MB).
cost() {
	awk -v k="$1_$2" -v c="$1_server_cpu_pct" -v f="$3" '
		$1 == "tls" && $2 == k { v[n1++] = $3 }
		$1 == "tls" && $2 == c { u[n2++] = $3 }
		END {
			for (i = 0; i < n1 && i < n2; i++)
				if (v[i] > 0) { s += u[i] / 100 / v[i] * f; n++ }
			if (n) printf "%.0f", s / n; else printf "?"
		}' "$dir/results"
}
failures_of() {
	awk -v k="$1_failures" '$1 == "tls" && $2 == k { s += $3 } END { printf "%d", s }' \
		"$dir/results"
}

rows=()
for kind in $cert_kinds; do
	case $kind in
	ec) cert=$certs/server-ec.pem key=$certs/server-ec.key name="ECDSA P-256" ;;
	rsa) cert=$certs/server-rsa.pem key=$certs/server-rsa.key name="RSA 2048" ;;
	*)
		echo "bench-tls.sh: unknown certificate kind '$kind' (ec, rsa)" >&2
		exit 2
		;;
	esac
	start_servers "$cert" "$key"
	echo "# $name: iou_tlsd pid $spid port $sport, socat pid $opid port $oport" >&2
	tests=("hs handshake $hs_conns")
	for n in $echo_conns; do
		tests+=("echo$n echo $n")
	done
	for t in "${tests[@]}"; do
		read -r id mode conns <<<"$t"
		: >"$dir/results"
		for ((r = 0; r < reps; r++)); do
			run "iou_$id" "$sport" "$spid" --mode "$mode" --conns "$conns"
			run "socat_$id" "$oport" "$opid" --mode "$mode" --conns "$conns"
		done
		if [[ $mode == handshake ]]; then
			metric=handshakes_per_s what="full handshakes/s ($conns client threads)" target=1.5
			unit="µs/handshake" factor=1000000
		else
			metric=echo_mb_per_s what="echo MB/s, 16 KiB writes, $conns conn$([[ $conns == 1 ]] || echo s)"
			target=1.0 unit="µs/MB" factor=1000000
		fi
		iou=$(best "iou_$id" "$metric")
		soc=$(best "socat_$id" "$metric")
		ratio=$(awk -v a="$iou" -v b="$soc" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
		met=$(awk -v r="$ratio" -v t="$target" 'BEGIN { print (r >= t ? "yes" : "no") }')
		fails="$(failures_of "iou_$id")/$(failures_of "socat_$id")"
		rows+=("| $name | $what | $iou | $soc | $ratio | ≥ $target× | $met | $(mean "iou_$id" server_cpu_pct) / $(mean "socat_$id" server_cpu_pct) / $(mean "iou_$id" client_cpu_pct) | $(cost "iou_$id" "$metric" "$factor") / $(cost "socat_$id" "$metric" "$factor") $unit | $fails |")
	done
	stop_servers
done

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
suite=$(awk '/^# .*TLS/ { print $NF; exit }' <<<"$(cat "$dir"/results 2>/dev/null)")
echo "Machine: $(nproc) CPUs (${cpu_model:-unknown CPU}), Linux $(uname -r);" \
	"$(socat -V 2>/dev/null | awk '/socat version/ { print "socat " $3; exit }'), $(openssl version | awk '{ print "OpenSSL " $2 }');" \
	"servers on CPU $scpu, client (bench-tls, OpenSSL) on CPU $ccpu$($pin || echo ' (unpinned: taskset failed)');" \
	"best of $reps × $secs s, alternating; TLS 1.3${suite:+, $suite}."
echo
echo "| certificate | benchmark | iou_tlsd | socat | ratio | target | met? | CPU % (iou_tlsd / socat / client) | server CPU per unit (iou_tlsd / socat) | failures (iou/socat) |"
echo "| --- | --- | ---: | ---: | ---: | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
