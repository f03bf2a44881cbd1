#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The demo: installs dependencies, builds the default preset, then runs the
# tour of the library and the example programs against each other and
# against real peers on loopback (GNU cat, socat), printing what each step
# shows.  Everything it starts it stops by process id; nothing outside
# 127.0.0.1 is contacted.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default

ex=./build/examples
tmp=$(mktemp -d "${TMPDIR:-/tmp}/iou-demo.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

step() {
	echo
	echo "### $*"
}

step "tour: the reactor and its fibers (examples/tour.c)"
$ex/tour

if [[ -x $ex/iou_cat ]]; then
	step "iou_cat: three inputs, one from a pipe, byte-exact with GNU cat"
	head -c 3000000 /dev/urandom >"$tmp/a"
	printf 'hello from a pipe\n' >"$tmp/b"
	printf 'tail\n' >"$tmp/c"
	cat "$tmp/b" | $ex/iou_cat "$tmp/a" - "$tmp/c" >"$tmp/out.iou"
	cat "$tmp/a" "$tmp/b" "$tmp/c" >"$tmp/out.cat"
	cmp "$tmp/out.iou" "$tmp/out.cat" && echo "identical: $(wc -c <"$tmp/out.iou") bytes"

	step "iou_cat: 256 MiB of /dev/zero through a pipe into iou_cat (splice both ways)"
	start=$(date +%s.%N)
	n=$($ex/iou_cat -c 256M /dev/zero | $ex/iou_cat | wc -c)
	end=$(date +%s.%N)
	awk -v n="$n" -v s="$start" -v e="$end" \
		'BEGIN { printf "%d bytes in %.3f s (%.0f MB/s, including wc)\n", n, e - s, n / (e - s) / 1e6 }'

	step "iou_cat: a missing file is named, the others are still copied, exit status 1"
	set +e
	$ex/iou_cat "$tmp/c" "$tmp/missing" "$tmp/c"
	echo "exit status $?"
	set -e
fi

if [[ -x $ex/iou_timers ]]; then
	step "iou_timers: two periodic timerfds, 0.1 s and 0.25 s, three firings each"
	$ex/iou_timers --count 3 0.1 0.25
fi

if [[ -x $ex/iou_port7 ]]; then
	step "iou_port7: RFC 862 echo on TCP and UDP, against socat"
	$ex/iou_port7 -a 127.0.0.1 -p 0 >"$tmp/port7.out" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		grep -q 'port' "$tmp/port7.out" 2>/dev/null && break
		sleep 0.05
	done
	cat "$tmp/port7.out"
	port=$(grep -o 'port [0-9]*' "$tmp/port7.out" | head -n 1 | cut -d' ' -f2)
	echo "TCP: $(printf 'echo over TCP' | socat -t 1 - TCP:127.0.0.1:"$port")"
	echo "UDP: $(printf 'echo over UDP' | socat -t 1 - UDP:127.0.0.1:"$port")"
	if [[ -x $ex/iou_cat ]]; then
		out=$($ex/iou_cat "$tmp/a" | socat -t 2 - TCP:127.0.0.1:"$port" | cmp - "$tmp/a" && echo same)
		echo "3 MB through iou_cat | socat | iou_port7 and back: ${out:-DIFFERENT}"
	fi
	kill -TERM "${pids[-1]}"
	wait "${pids[-1]}" && echo "iou_port7 stopped cleanly on SIGTERM (exit 0)"
fi

if [[ -x $ex/iou_dns ]] && command -v dnsmasq >/dev/null; then
	step "iou_dns: forward, CNAME, reverse and a missing name, against a local dnsmasq"
	dport=$((20000 + RANDOM % 20000))
	dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --pid-file= \
		--listen-address=127.0.0.1 --bind-interfaces --port="$dport" --local=/demo.test/ \
		--host-record=www.demo.test,192.0.2.10,2001:db8::10 --cname=alias.demo.test,www.demo.test \
		2>"$tmp/dnsmasq.err" &
	pids+=($!)
	for _ in $(seq 50); do
		$ex/iou_dns --server "127.0.0.1:$dport" --timeout 1 www.demo.test >/dev/null 2>&1 && break
		sleep 0.1
	done
	set +e
	$ex/iou_dns --server "127.0.0.1:$dport" --timeout 2 www.demo.test alias.demo.test \
		192.0.2.10 nosuch.demo.test
	echo "exit status $? (one name failed)"
	set -e
	seq 0 999 | sed 's/^/www.demo.test/; s/test[0-9]*$/test/' >"$tmp/names"
	start=$(date +%s.%N)
	n=$($ex/iou_dns --server "127.0.0.1:$dport" <"$tmp/names" | wc -l)
	end=$(date +%s.%N)
	awk -v n="$n" -v s="$start" -v e="$end" \
		'BEGIN { printf "1000 names from stdin, 64 fibers: %d answers in %.3f s\n", n, e - s }'
fi

step "demo complete"
