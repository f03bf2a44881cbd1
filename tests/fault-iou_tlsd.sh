#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Fault and load tests of examples/iou_tlsd, driven by tests/churn-client
# (OpenSSL, not built on ioucontext), all on 127.0.0.1:
#  - churn: 10,000 full handshakes each with a verified echo and a reset,
#    while verifying clients (64 KiB echoes ending with close_notify) run
#    throughout; afterwards descriptors are back to their baseline and
#    resident memory within 2 MiB of what it was after a warm-up;
#  - 1,000 idle TLS sessions held while other clients are served, each
#    still echoing afterwards;
#  - slow-loris handshakes (a ClientHello a byte every 50 ms), half a
#    ClientHello then silence, and silent connections: each dropped at
#    --handshake-timeout (and not before), with a logged line, while other
#    clients are served;
#  - clients that never read their echo: dropped after --idle-timeout,
#    others served; clients that half-close (shutdown(SHUT_WR) without
#    close_notify) get their whole echo and then the end; sessions of a
#    stopped process (no FIN, no reset) are reclaimed at --idle-timeout;
#  - at RLIMIT_NOFILE (prlimit --nofile=64) and without stacks for
#    connection fibers (IOU_FAULT_STACKS): the excess refused with a logged
#    line, the sessions that fit served throughout, then recovery.
# The server runs under $IOU_TEST_WRAPPER; loads are scaled down under
# valgrind and ThreadSanitizer, and memory is checked only natively.
set -euo pipefail

# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/fault-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/fault-common.sh"
need "$tlsd" "$churn"
[[ -r $certs/ca.pem && -r $certs/server-ec.pem ]] || {
	echo "no test certificates in $certs (tests/fixtures/tls/make-certs.sh makes them)" >&2
	exit 1
}
ec=(--cert "$certs/server-ec.pem" --key "$certs/server-ec.key")
tls=(--tls --cafile "$certs/ca.pem")

# tls_check NAME [N]: N (default 20) verifying clients, 1..64 KiB each, ending
# with close_notify, must all pass.
tls_check() {
	"$churn" -p "$port" "${tls[@]}" -n "${2:-20}" -c 4 -b 65536 --close fin \
		--timeout $((30 * scale)) >"$tmp/check.cout" 2>"$tmp/check.err" ||
		fail "$1: $(cat "$tmp/check.cout" "$tmp/check.err")"
}

# The checker's clients: 10 verifying sessions of 64 KiB ending with close_notify.
light_check() {
	"$churn" -p "$port" "${tls[@]}" -n 10 -c 2 -b 65536 --close fin \
		--timeout $((30 * scale))
}

# ---- churn ----------------------------------------------------------------------
start_server main tlsd -- "${ec[@]}" -q --handshake-timeout $((5 * scale))
baseline_fds tlsd
rss0=$(rss "$pid")
cycles=$(count 10000)
# The warm-up sets the memory baseline, which only a native run checks.
warm=$(count 2000)
$native || warm=$(count 200)

checker warmcheck light_check
"$churn" -p "$port" "${tls[@]}" -n "$warm" -c 8 --timeout $((30 * scale)) \
	>"$tmp/warm.cout" 2>"$tmp/warm.err" || fail "warm-up: $(cat "$tmp/warm.cout" "$tmp/warm.err")"
stop_checker warmcheck
await_fds "$pid" "$baseline" || fail "after the warm-up: $(nfds "$pid") descriptors, $baseline before"
rss_warm=$(rss "$pid")
ok "warm-up: $(cat "$tmp/warm.cout"); RSS $rss0 -> $rss_warm KiB"

checker during light_check
"$churn" -p "$port" "${tls[@]}" -n "$cycles" -c 8 --timeout $((30 * scale)) \
	>"$tmp/churn.cout" 2>"$tmp/churn.err" || fail "churn: $(cat "$tmp/churn.cout" "$tmp/churn.err")"
stop_checker during
ok "$(cat "$tmp/churn.cout")"
ok "meanwhile $(cat "$tmp/during.runs") runs of 10 verifying clients (1..64 KiB, close_notify) all passed"
alive main
tls_check "after the churn"
ok "after the churn: $(cat "$tmp/check.cout")"
after_churn "$baseline" "$rss_warm" "$cycles"

# ---- idle sessions ----------------------------------------------------------------
idle=$(count 1000)
((idle >= 20)) || idle=20
run_bg idle "$churn" -p "$port" "${tls[@]}" --hold "$idle" --hold-time 2 -c 8 \
	--timeout $((60 * scale))
idle_pid=$bg
await_line idle "$idle_pid" '^holding:'
held=$(nfds "$pid")
((held == baseline + idle)) || fail "holding $idle: the server has $held descriptors, $baseline before"
t0=$(now_ms)
tls_check "next to $idle idle sessions"
ok "$idle idle TLS sessions held ($held descriptors); meanwhile $(cat "$tmp/check.cout") in $(($(now_ms) - t0)) ms"
finish idle "$idle_pid"
ok "$(tail -n 1 "$tmp/idle.cout")"
await_fds "$pid" "$baseline" || fail "after the idle ones: $(nfds "$pid") descriptors, $baseline before"
ok "descriptors back to the baseline of $baseline"
stop_server main

# ---- slow-loris and stalled handshakes ------------------------------------------------
# Timeouts of 2 s; 6 s where the server runs many times slower, so that
# the other clients' handshakes and echoes still fit.
ht=2
if $valgrind || $tsan; then
	ht=6
fi
start_server loris tlsd -- "${ec[@]}" --handshake-timeout "$ht" --idle-timeout "$ht"
baseline_fds tlsd
# A ClientHello takes ~250 bytes: at one byte per 25 ms for each second of
# the timeout, 6 timeouts.
run_bg trickle "$churn" -p "$port" "${tls[@]}" -n 10 -c 10 --trickle $((25 * ht)) --expect-drop \
	--timeout $((30 * scale))
declare -A stallers=([trickle]=$bg)
trickle_pid=$bg
run_bg half "$churn" -p "$port" "${tls[@]}" -n 10 -c 10 --stall 40 --timeout $((30 * scale))
stallers[half]=$bg
run_bg silent "$churn" -p "$port" "${tls[@]}" -n 10 -c 10 --stall 0 --timeout $((30 * scale))
stallers[silent]=$bg
sleep 0.3
t0=$(now_ms)
tls_check "next to slow handshakes"
elapsed=$(($(now_ms) - t0))
kill -0 "$trickle_pid" 2>/dev/null || fail "the slow-loris clients ended before the check did"
ok "next to 30 stalling handshakes: $(cat "$tmp/check.cout") in $elapsed ms"
for c in trickle half silent; do
	finish "$c" "${stallers[$c]}"
	# Dropped at the handshake timeout: never before it.
	lo=$(sed -n 's/.* after \([0-9.]*\)\.\..*/\1/p' "$tmp/$c.cout")
	if [[ -z $lo ]] || ! awk -v lo="$lo" -v ht="$ht" 'BEGIN { exit !(lo >= ht - 0.05) }'; then
		fail "$c: dropped before the $ht s handshake timeout: $(cat "$tmp/$c.cout")"
	fi
	ok "$(cat "$tmp/$c.cout")"
done
(($(grep -c "handshake timed out after $ht s" "$tmp/loris.log") == 30)) ||
	fail "handshake timeouts logged: $(grep -c 'timed out' "$tmp/loris.log") of 30"
ok "30 lines logged: $(grep -m 1 'handshake timed out' "$tmp/loris.log")"
await_fds "$pid" "$baseline" || fail "after slow-loris: $(nfds "$pid") descriptors, $baseline before"
ok "descriptors back to the baseline of $baseline"

# ---- never reading, half-closing, vanishing ------------------------------------------
run_bg noread "$churn" -p "$port" "${tls[@]}" -n 10 -c 10 --no-read --timeout $((30 * scale))
noread_pid=$bg
sleep 0.3
tls_check "next to clients that never read"
ok "next to 10 clients that never read: $(cat "$tmp/check.cout")"
finish noread "$noread_pid"
lo=$(sed -n 's/.* after \([0-9.]*\)\.\..*/\1/p' "$tmp/noread.cout")
awk -v lo="$lo" -v t="$ht" 'BEGIN { exit !(lo >= t - 0.05) }' ||
	fail "never-reading clients dropped before the $ht s idle timeout: $(cat "$tmp/noread.cout")"
ok "$(cat "$tmp/noread.cout")"
wait_grep "not reading its echo for $ht s: closing" "$tmp/loris.log" ||
	fail "nothing logged for the never-reading clients"
ok "logged: $(grep -m 1 'not reading its echo' "$tmp/loris.log")"

"$churn" -p "$port" "${tls[@]}" -n "$(count 500)" -c 8 -b 65536 --close half \
	--timeout $((30 * scale)) >"$tmp/halfclose.cout" 2>"$tmp/halfclose.err" ||
	fail "half-close: $(cat "$tmp/halfclose.cout" "$tmp/halfclose.err")"
ok "shutdown(SHUT_WR) after sending, no close_notify: $(cat "$tmp/halfclose.cout")"

# Sessions of a stopped process: no FIN, no reset, no reading; the idle
# timeout reclaims them while the process sleeps.
# (Its hold time passes while it is stopped: awake, it checks at once.)
run_bg frozen "$churn" -p "$port" "${tls[@]}" --hold 20 --hold-time 1 --expect-drop \
	-c 4 --timeout $((30 * scale))
frozen_pid=$bg
await_line frozen "$frozen_pid" '^holding:'
kill -STOP "$frozen_pid"
t0=$(now_ms)
await_fds "$pid" "$baseline" || fail "stopped client: $(nfds "$pid") descriptors, $baseline expected"
ok "20 sessions of a stopped process reclaimed by the idle timeout within $(($(now_ms) - t0)) ms"
kill -CONT "$frozen_pid"
finish frozen "$frozen_pid"
ok "$(tail -n 1 "$tmp/frozen.cout")"
tls_check "after the stopped client"
ok "then: $(cat "$tmp/check.cout")"
stop_server loris

# ---- at the descriptor limit, and without stacks -----------------------------------------
# (Under valgrind, which keeps a few descriptors, the server sees a lower limit.)
start_server nofile tlsd prlimit --nofile=64:64 -- "${ec[@]}" -q
baseline_fds tlsd
refusals nofile "prlimit --nofile=64" \
	'iou_tlsd: worker 0: refusing connections: Too many open files \(descriptor limit [0-9]+\)' \
	"$churn" -p "$port" "${tls[@]}" --hold 100 --allow-refused --hold-time 2 -c 4 \
	--timeout $((30 * scale))
tls_check "after the limit" 200
ok "descriptors free again: $(cat "$tmp/check.cout")"
await_fds "$pid" "$baseline" || fail "limit: $(nfds "$pid") descriptors, $baseline before"
stop_server nofile

start_server nomem tlsd env IOU_FAULT_STACKS=30 -- "${ec[@]}" -q
baseline_fds tlsd
refusals nomem "IOU_FAULT_STACKS=30" \
	'refusing connections: Cannot allocate memory \(no memory for a connection fiber\)' \
	"$churn" -p "$port" "${tls[@]}" --hold 50 --allow-refused --hold-time 1 -c 4 \
	--timeout $((30 * scale))
tls_check "after the refusals" 200
ok "stacks back in the pool: $(cat "$tmp/check.cout")"
await_fds "$pid" "$baseline" || fail "no stacks: $(nfds "$pid") descriptors, $baseline before"
stop_server nomem

summary
