#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Fault and load tests of examples/iou_port7, driven by tests/churn-client
# and tests/echo-client (neither built on ioucontext), all on 127.0.0.1:
#  - churn: 100,000 connect/echo/reset cycles with UDP datagrams checked
#    meanwhile and verifying echo clients running throughout; afterwards
#    the descriptor count is back to its baseline and resident memory
#    within 2 MiB of what it was after a warm-up of the same mix;
#  - 1,000 idle connections held while other clients are served, each still
#    echoing afterwards; descriptors back to the baseline;
#  - slow clients trickling a byte every 20 ms, served while others are;
#  - half-closed clients (shutdown(SHUT_WR) after sending): all echoed, then
#    closed; clients whose process is stopped (no FIN, no reset) do not
#    disturb others and still echo when they wake;
#  - at RLIMIT_NOFILE (prlimit --nofile=64): the connections that fit are
#    served throughout, the excess refused at once with a logged line, and
#    new clients served once descriptors are free;
#  - no memory for connection fibers (the IOU_FAULT_STACKS testing aid, and
#    natively a real RLIMIT_AS): refused with a logged line, the others
#    served, then recovery;
#  - a ring of one entry without setup flags, under churn.
# The server runs under $IOU_TEST_WRAPPER; loads are scaled down under
# valgrind and ThreadSanitizer, and memory is checked only natively.
set -euo pipefail

# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/fault-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/fault-common.sh"
need "$port7" "$churn" "$echo_client"

# A verifying echo check: 20 clients, 64 KiB each, some resets, UDP.
check_echo() {
	"$echo_client" --port "$port" --clients 20 --bytes 65536 --reset 2 --udp 10 \
		--timeout $((30 * scale)) >"$tmp/check.cout" 2>"$tmp/check.err" ||
		fail "$1: echo-client: $(cat "$tmp/check.cout" "$tmp/check.err")"
}

# The checker's client: 10 verifying echo clients, 64 KiB each, a reset, UDP.
light_check() {
	"$echo_client" --port "$port" --clients 10 --bytes 65536 --reset 1 --udp 5 \
		--timeout $((30 * scale))
}

# ---- churn ----------------------------------------------------------------------
start_server main port7 --
baseline_fds port7
rss0=$(rss "$pid")
cycles=$(count 100000)
warm=$(count 10000)

# The warm-up reaches the peaks the rest never exceeds: 500 clients at once
# (pooled stacks) with 64 KiB each (every buffer of the receive ring used).
n=$(count 500)
"$echo_client" --port "$port" --clients "$n" --bytes 65536 --reset $((n / 10)) --udp 50 \
	--timeout $((60 * scale)) >"$tmp/warm0.cout" 2>"$tmp/warm0.err" ||
	fail "warm-up: $(cat "$tmp/warm0.cout" "$tmp/warm0.err")"
checker warmcheck light_check
"$churn" -p "$port" -n "$warm" -c 8 --udp $((warm / 100)) >"$tmp/warm.cout" 2>"$tmp/warm.err" ||
	fail "warm-up churn: $(cat "$tmp/warm.cout" "$tmp/warm.err")"
stop_checker warmcheck
await_fds "$pid" "$baseline" || fail "after the warm-up: $(nfds "$pid") descriptors, $baseline before"
rss_warm=$(rss "$pid")
ok "warm-up: $(cat "$tmp/warm.cout"); RSS $rss0 -> $rss_warm KiB"

checker during light_check
t0=$(now_ms)
"$churn" -p "$port" -n "$cycles" -c 8 --udp $((cycles / 200)) >"$tmp/churn.cout" \
	2>"$tmp/churn.err" || fail "churn: $(cat "$tmp/churn.cout" "$tmp/churn.err")"
stop_checker during
ok "$(cat "$tmp/churn.cout")"
ok "meanwhile $(cat "$tmp/during.runs") echo-client runs (10 clients, 64 KiB, resets, UDP) all verified"
alive main
check_echo "after the churn"
ok "after the churn a verifying echo-client passes: $(cat "$tmp/check.cout")"
after_churn "$baseline" "$rss_warm" "$cycles"

# ---- idle connections ---------------------------------------------------------------
idle=$(count 1000)
((idle >= 50)) || idle=50
run_bg idle "$churn" -p "$port" --hold "$idle" --hold-time 2 -c 16 \
	--timeout $((30 * scale))
idle_pid=$bg
await_line idle "$idle_pid" '^holding:'
held=$(nfds "$pid")
((held == baseline + idle)) || fail "holding $idle: the server has $held descriptors, $baseline before"
t0=$(now_ms)
check_echo "next to $idle idle connections"
ok "$idle idle connections held ($held descriptors); meanwhile $(cat "$tmp/check.cout") in $(($(now_ms) - t0)) ms"
finish idle "$idle_pid"
ok "$(cat "$tmp/idle.cout")"
await_fds "$pid" "$baseline" || fail "after the idle ones: $(nfds "$pid") descriptors, $baseline before"
ok "descriptors back to the baseline of $baseline"

# ---- slow clients ---------------------------------------------------------------
run_bg trickle "$churn" -p "$port" -n 10 -c 10 -b 60 --trickle 20 --timeout $((30 * scale))
trickle_pid=$bg
sleep 0.2
t0=$(now_ms)
check_echo "next to trickling clients"
elapsed=$(($(now_ms) - t0))
kill -0 "$trickle_pid" 2>/dev/null || fail "the trickling clients ended before the check did"
ok "next to 10 clients sending a byte every 20 ms: $(cat "$tmp/check.cout") in $elapsed ms"
finish trickle "$trickle_pid"
ok "the trickling clients are served: $(cat "$tmp/trickle.cout")"

# ---- half-open ------------------------------------------------------------------
"$churn" -p "$port" -n "$(count 5000)" -c 8 -b 65536 --close half >"$tmp/half.cout" \
	2>"$tmp/half.err" || fail "half-close: $(cat "$tmp/half.cout" "$tmp/half.err")"
ok "shutdown(SHUT_WR) after sending: $(cat "$tmp/half.cout")"
# A client process that stops: its connections neither close nor reset.
run_bg frozen "$churn" -p "$port" --hold 50 --hold-time 1 -c 5 \
	--timeout $((30 * scale))
frozen_pid=$bg
await_line frozen "$frozen_pid" '^holding:'
kill -STOP "$frozen_pid"
check_echo "next to a stopped client"
((($(nfds "$pid")) == baseline + 50)) || fail "frozen: $(nfds "$pid") descriptors, expected $((baseline + 50))"
ok "50 connections of a stopped process stay open (no idle limit here), others served: $(cat "$tmp/check.cout")"
kill -CONT "$frozen_pid"
finish frozen "$frozen_pid"
ok "once it runs again its connections still echo: $(cat "$tmp/frozen.cout")"
await_fds "$pid" "$baseline" || fail "after half-open: $(nfds "$pid") descriptors, $baseline before"
ok "descriptors back to the baseline of $baseline"
stop_server main
[[ ! -s $tmp/main.log ]] || fail "main: wrote to stderr: $(head -n 3 "$tmp/main.log")"

# ---- at the descriptor limit ------------------------------------------------------
# (Under valgrind, which keeps a few descriptors, the server sees a lower limit.)
start_server nofile port7 prlimit --nofile=64:64 --
baseline_fds port7
refusals nofile "prlimit --nofile=64" \
	'iou_port7: worker 0: refusing connections: Too many open files \(descriptor limit [0-9]+\); [0-9]+ refused' \
	"$echo_client" --port "$port" --hold 100 --hold-time 2 --expect-refused --timeout $((10 * scale))
grep -v 'refusing connections' "$tmp/nofile.log" | grep -q . &&
	fail "unexpected lines: $(grep -v refusing "$tmp/nofile.log")"
"$churn" -p "$port" -n "$(count 5000)" -c 8 >"$tmp/nofile2.cout" 2>"$tmp/nofile2.err" ||
	fail "after the limit: $(cat "$tmp/nofile2.cout" "$tmp/nofile2.err")"
ok "descriptors free again: $(cat "$tmp/nofile2.cout")"
await_fds "$pid" "$baseline" || fail "limit: $(nfds "$pid") descriptors, $baseline before"
ok "descriptors back to the baseline of $baseline"
stop_server nofile

# ---- no memory for connection fibers ----------------------------------------------
# IOU_FAULT_STACKS=40: the server's own fibers take a few, so of 60 held
# connections some are served and the rest refused.
start_server nomem port7 env IOU_FAULT_STACKS=40 --
baseline_fds port7
refusals nomem "IOU_FAULT_STACKS=40" \
	'refusing connections: Cannot allocate memory \(no memory for a connection fiber\)' \
	"$echo_client" --port "$port" --hold 60 --hold-time 1 --expect-refused --timeout $((10 * scale))
"$churn" -p "$port" -n "$(count 5000)" -c 8 >"$tmp/nomem2.cout" 2>"$tmp/nomem2.err" ||
	fail "after the refusals: $(cat "$tmp/nomem2.cout" "$tmp/nomem2.err")"
ok "stacks back in the pool: $(cat "$tmp/nomem2.cout")"
await_fds "$pid" "$baseline" || fail "no stacks: $(nfds "$pid") descriptors, $baseline before"
stop_server nomem

if $native; then
	# A real address-space limit: what the server maps at rest plus 16 MiB.
	start_server probe port7 --
	check_echo "probe"
	vm=$(awk '/^VmSize:/ { print $2 }' "/proc/$pid/status")
	stop_server probe
	as=$(((vm + 16384) * 1024))
	start_server as port7 prlimit --as="$as" --
	baseline_fds port7
	refusals as "prlimit --as=$((as >> 20))M (VmSize at rest $((vm >> 10)) MiB + 16)" \
		'refusing connections: Cannot allocate memory' \
		"$echo_client" --port "$port" --hold 600 --hold-time 1 --expect-refused \
		--timeout $((10 * scale))
	check_echo "after RLIMIT_AS refusals"
	ok "then served again: $(cat "$tmp/check.cout")"
	await_fds "$pid" "$baseline" || fail "RLIMIT_AS: $(nfds "$pid") descriptors, $baseline before"
	stop_server as
else
	echo "# skipping RLIMIT_AS under instrumentation (its shadow memory needs the address space)"
fi

# ---- small rings, no setup flags ----------------------------------------------------
start_server tiny port7 env IOU_RING_ENTRIES=1 IOU_RING_FLAGS=none --
"$churn" -p "$port" -n "$(count 10000)" -c 8 --udp 20 >"$tmp/tiny.cout" 2>"$tmp/tiny.err" ||
	fail "one-entry ring: $(cat "$tmp/tiny.cout" "$tmp/tiny.err")"
check_echo "one-entry ring"
ok "IOU_RING_ENTRIES=1 IOU_RING_FLAGS=none: $(cat "$tmp/tiny.cout"); $(cat "$tmp/check.cout")"
stop_server tiny

summary
