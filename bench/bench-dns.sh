#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# DNS lookups per second: bench-dns's ioucontext side (one reactor, 256
# fibers calling iou_dns_lookup) against its getaddrinfo(3) side (a pool of
# 64 threads), in the same run, against one dnsmasq that answers 1000 names
# (n0.bench.test. ... with distinct IPv4 addresses) from a hosts file.
#
# glibc's resolver only asks port 53 of the servers in /etc/resolv.conf, so
# the whole run happens in private network and mount namespaces (unshare -n
# -m; needs root): there, 127.0.0.1:53 is free whatever the machine runs,
# and a temporary resolv.conf ("nameserver 127.0.0.1") is bind-mounted over
# /etc/resolv.conf.  The machine's own file and network are not touched.
# The names are absolute (trailing dot), so no search domain is tried, and
# they are in no /etc/hosts; nsswitch stays as the machine has it ("files
# dns" reads /etc/hosts first, and so does c-ares, which re-reads the file on
# every lookup).  Both sides therefore read /etc/hosts and then send one A
# query per lookup to the same server.  BENCH_DNS_HOSTS_FILE=off
# bind-mounts an nsswitch.conf with "hosts: dns" as well, so that neither
# side reads /etc/hosts (c-ares follows that line too).  Raw output goes to
# stderr, a markdown table to stdout; the target is ioucontext ≥ 2× the
# thread pool.  Asserts nothing.
#
#   bench/bench-dns.sh [BUILD_DIR]      (default: build)
#   BENCH_DNS_NAMES=1000 BENCH_DNS_SECONDS=3 BENCH_DNS_REPS=3
#   BENCH_DNS_FIBERS=256 BENCH_DNS_THREADS=64 BENCH_DNS_HOSTS_FILE=on|off
#   BENCH_DNS_BIN=path/to/bench-dns     (default: BUILD_DIR/bench/bench-dns)
set -euo pipefail

build=${1:-build}
bin=${BENCH_DNS_BIN:-$build/bench/bench-dns}
n_names=${BENCH_DNS_NAMES:-1000}
secs=${BENCH_DNS_SECONDS:-3}
reps=${BENCH_DNS_REPS:-3}
fibers=${BENCH_DNS_FIBERS:-256}
threads=${BENCH_DNS_THREADS:-64}

if [[ ${BENCH_DNS_INSIDE:-} != 1 ]]; then
	if [[ ! -x $bin ]]; then
		echo "bench-dns.sh: no $bin (build first: cmake --preset default && cmake --build build)" >&2
		exit 2
	fi
	for tool in unshare dnsmasq ip mount; do
		if ! command -v "$tool" >/dev/null && [[ ! -x /usr/sbin/$tool ]]; then
			echo "bench-dns.sh: needs $tool" >&2
			exit 2
		fi
	done
	if ((EUID != 0)); then
		echo "bench-dns.sh: needs root (unshare -n -m, bind mount, dnsmasq on port 53)" >&2
		exit 2
	fi
	cache=$build/CMakeCache.txt
	debug='^(IOU_SANITIZE:[^=]*=.+|CMAKE_BUILD_TYPE:[^=]*=Debug)$'
	if [[ -f $cache ]] && grep -qE "$debug" "$cache"; then
		echo "bench-dns.sh: WARNING: sanitizer or Debug build; numbers are not representative" >&2
	fi
	# Again, in new namespaces (mount propagation private: unshare's default).
	BENCH_DNS_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
	export BENCH_DNS_INSIDE=1 BENCH_DNS_BIN PATH=$PATH:/usr/sbin:/sbin
	exec unshare -n -m -- bash "$0" "$(cd "$build" && pwd)"
fi

# ---- inside the namespaces ------------------------------------------------
ip link set lo up
dir=$(mktemp -d "${TMPDIR:-/tmp}/iou-bench-dns.XXXXXX")
chmod 755 "$dir" # dnsmasq reads its hosts file after dropping privileges
pid=
cleanup() {
	if [[ -n $pid ]]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

# n$i.bench.test -> 10.77.x.y, distinct for up to 65536 names.
for ((i = 0; i < n_names; i++)); do
	a=10.77.$((i / 256 % 256)).$((i % 256))
	echo "$a n$i.bench.test" >&3
	echo "n$i.bench.test. $a" >&4
done 3>"$dir/hosts" 4>"$dir/names"
chmod 644 "$dir/hosts" "$dir/names"
printf 'nameserver 127.0.0.1\noptions ndots:1 attempts:2 timeout:1\n' >"$dir/resolv.conf"
mount --bind "$dir/resolv.conf" /etc/resolv.conf
hosts_file=${BENCH_DNS_HOSTS_FILE:-on}
if [[ $hosts_file == off ]]; then
	printf 'hosts: dns\n' >"$dir/nsswitch.conf"
	chmod 644 "$dir/nsswitch.conf"
	mount --bind "$dir/nsswitch.conf" /etc/nsswitch.conf
fi

dnsmasq -k --conf-file=/dev/null --no-hosts --no-resolv --addn-hosts="$dir/hosts" \
	--local=/bench.test/ --cache-size=10000 --port=53 --listen-address=127.0.0.1 \
	--bind-interfaces --pid-file= --log-facility="$dir/dnsmasq.log" &
pid=$!

# Wait until the peer's path works end to end: nsswitch, resolv.conf, dnsmasq.
# (Not "getent ahosts": its AI_ADDRCONFIG sees no address but loopback here.)
for ((i = 0; ; i++)); do
	if getent hosts n0.bench.test. >/dev/null 2>&1; then
		break
	fi
	if ((i == 50)) || ! kill -0 "$pid" 2>/dev/null; then
		echo "bench-dns.sh: dnsmasq does not answer; its log:" >&2
		cat "$dir/dnsmasq.log" >&2 || true
		exit 1
	fi
	sleep 0.1
done

out=$("$bin" --server 127.0.0.1:53 --names "$dir/names" --seconds "$secs" \
	--fibers "$fibers" --threads "$threads" --reps "$reps" --mode both \
	--server-pid "$pid")
echo "$out" >&2

kill "$pid"
wait "$pid" 2>/dev/null || true
pid=

val() { awk -v k="$1" '$1 == "dns" && $2 == k { print $3 }' <<<"$out"; }
iou=$(val iou_lookups_per_s)
gai=$(val gai_lookups_per_s)
if [[ -z $iou || -z $gai ]]; then
	echo "bench-dns.sh: bench-dns printed no result" >&2
	exit 1
fi
ratio=$(awk -v a="$iou" -v b="$gai" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
met=$(awk -v a="$iou" -v b="$gai" 'BEGIN { print (b > 0 && a / b >= 2) ? "yes" : "no" }')
fmt() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
# Lookups per CPU-second of the client process, the server excluded.
per_cpu() { awk -v r="$1" -v c="$2" 'BEGIN { printf "%.0f", (c > 0 ? r / (c / 100) : 0) }'; }

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "Machine: $(nproc) CPUs (${cpu_model:-unknown CPU}), Linux $(uname -r);" \
	"dnsmasq $(dnsmasq --version | awk 'NR == 1 { print $3 }') on 127.0.0.1:53 (same machine, unpinned);" \
	"$n_names names, best of $reps × $secs s; nsswitch \"$(awk '/^hosts:/ { $1 = ""; sub(/^ +/, ""); print; exit }' /etc/nsswitch.conf)\"."
echo
echo "| benchmark | ioucontext | getaddrinfo x$threads threads | ratio | target (≥ 2×) | met? |"
echo "| --- | ---: | ---: | ---: | --- | --- |"
echo "| lookups/s ($fibers fibers, 1 reactor) | $(fmt "$iou") | $(fmt "$gai") | $ratio | ≥ 2× | $met |"
iou_cpu=$(val iou_cpu_pct)
gai_cpu=$(val gai_cpu_pct)
echo "| client CPU % (informative) | $(fmt "$iou_cpu") | $(fmt "$gai_cpu") | | | |"
echo "| lookups per client CPU-second (informative) | $(per_cpu "$iou" "$iou_cpu") |" \
	"$(per_cpu "$gai" "$gai_cpu") | $(awk -v a="$(per_cpu "$iou" "$iou_cpu")" \
		-v b="$(per_cpu "$gai" "$gai_cpu")" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }') | | |"
if [[ -n $(val iou_server_cpu_pct) ]]; then
	echo "| dnsmasq CPU % (informative) | $(fmt "$(val iou_server_cpu_pct)") |" \
		"$(fmt "$(val gai_server_cpu_pct)") | | | |"
fi
echo "| failures / wrong answers (all runs) | $(val iou_failures) / $(val iou_wrong) |" \
	"$(val gai_failures) / $(val gai_wrong) | | 0 | |"
