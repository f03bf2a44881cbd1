#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Tests examples/iou_port7 against real peers: socat for TCP and UDP round
# trips, a half-closed transfer and clients that never read, and
# tests/echo-client (a plain epoll client, independent of ioucontext) for
# hundreds of concurrent clients with random payloads, clients that reset
# mid-stream, and UDP datagrams of every size, over IPv4 and IPv6.  Checks
# that descriptors return to their baseline, that a second server on a busy
# port fails, that -t 2 serves too, that at a low descriptor limit the
# server keeps serving, refuses the excess without spinning and recovers,
# and that SIGTERM and SIGINT stop it promptly with status 0.  Usage errors
# exit 2 with one line.  The server runs under $IOU_TEST_WRAPPER (e.g.
# valgrind) when that is set; loads and waits are scaled for it.
set -euo pipefail

# CTest runs the script in <build>/examples, which locates the build tree
# when IOU_BUILD_DIR is not passed.
build=${IOU_BUILD_DIR:-$(cd .. && pwd)}
bin="$build/examples/iou_port7"
client="$build/tests/echo-client"
for b in "$bin" "$client"; do
	[[ -x $b ]] || {
		echo "$b not found: set IOU_BUILD_DIR to the build tree" >&2
		exit 1
	}
done
read -ra wrap <<<"${IOU_TEST_WRAPPER:-}"
valgrind=false
scale=1
if [[ ${IOU_TEST_WRAPPER:-} == *valgrind* ]]; then
	valgrind=true
	scale=10
elif [[ -n ${IOU_SANITIZE:-} ]]; then
	scale=3
fi
command -v socat >/dev/null || {
	echo "# socat is not installed"
	exit 77
}

# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# start_server NAME [prefix command...] -- [iou_port7 args...]: start the
# server in the background (under the wrapper), wait for its ready line,
# and set $pid and $port.
start_server() {
	local name=$1 deadline
	shift
	local pre=()
	while [[ $1 != -- ]]; do
		pre+=("$1")
		shift
	done
	shift
	"${pre[@]}" "${wrap[@]}" "$bin" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	pid=$!
	pids+=("$pid")
	deadline=$((SECONDS + 10 * scale))
	until grep -q 'listening' "$tmp/$name.out"; do
		kill -0 "$pid" 2>/dev/null || fail "$name: the server exited before it was ready"
		((SECONDS < deadline)) || fail "$name: no ready line"
		sleep 0.05
	done
	port=$(sed -n 's/^iou_port7: listening on .* port \([0-9][0-9]*\) (tcp+udp, .*)$/\1/p' \
		"$tmp/$name.out")
	[[ -n $port ]] || fail "$name: unexpected ready line: $(cat "$tmp/$name.out")"
}

# stop_server NAME [SIGNAL]: SIGTERM (or SIGNAL), which must end the server
# promptly with status 0.
stop_server() {
	local rc=0 t0=$SECONDS sig=${2:-TERM}
	kill -"$sig" "$pid"
	wait "$pid" || rc=$?
	((rc == 0)) || fail "$1: exit status $rc after SIG$sig"
	((SECONDS - t0 <= 3 * scale)) || fail "$1: took $((SECONDS - t0)) s to stop"
	# Refusals at the descriptor limit are said; nothing else may be.
	! grep -qv 'refusing connections' "$tmp/$1.err" || fail "$1: wrote to stderr"
	ok "$1: SIG$sig stops it in $((SECONDS - t0)) s with status 0, nothing else on stderr"
}

# Wait up to 5 s (scaled) until the server holds $1 descriptors again.
await_fds() {
	local deadline=$((SECONDS + 5 * scale))
	while (($(nfds "$pid") != $1)); do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# CPU time (user + system, in clock ticks) the process has used so far.
cpu_ticks() {
	sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# ---- usage errors -------------------------------------------------------------
usage_case() {
	local rc=0
	"${wrap[@]}" "$bin" "$@" >"$tmp/usage.out" 2>"$tmp/usage.err" || rc=$?
	((rc == 2)) || fail "'$*' exited with $rc, not 2"
	(($(wc -l <"$tmp/usage.err") == 1)) || fail "'$*': not one line: $(cat "$tmp/usage.err")"
	ok "usage error '$*' exits 2: $(cat "$tmp/usage.err")"
}
usage_case -p 65536
usage_case -p abc
usage_case -p -1
usage_case -t 0
usage_case -t many
usage_case -a not.an.address
usage_case -a 127.0.0.1 extra
usage_case --bogus
"${wrap[@]}" "$bin" --help >"$tmp/help.out" 2>&1 || fail "--help exited with $?"
grep -q '^usage: iou_port7' "$tmp/help.out" || fail "--help shows no usage line"
ok "--help exits 0 and shows the usage"

# ---- one thread: socat, many clients, descriptors -------------------------------
start_server one -- -a 127.0.0.1 -p 0
[[ $(cat "$tmp/one.out") == "iou_port7: listening on 127.0.0.1 port $port (tcp+udp, 1 thread)" ]] ||
	fail "ready line: $(cat "$tmp/one.out")"
ok "ready: $(cat "$tmp/one.out")"
baseline=$(settled_fds "$pid")

printf 'hello, port 7\n' >"$tmp/small"
socat -t $((2 * scale)) - "TCP:127.0.0.1:$port" <"$tmp/small" >"$tmp/tcp.echo"
cmp -s "$tmp/small" "$tmp/tcp.echo" || fail "TCP round trip: got '$(cat "$tmp/tcp.echo")'"
ok "socat TCP round trip"

# socat waits all of -t for replies after its input ends: keep it short.
printf 'a datagram\n' >"$tmp/dgram"
socat -t $((1 + scale / 5)) - "UDP:127.0.0.1:$port" <"$tmp/dgram" >"$tmp/udp.echo"
cmp -s "$tmp/dgram" "$tmp/udp.echo" || fail "UDP round trip: got '$(cat "$tmp/udp.echo")'"
ok "socat UDP round trip"

# socat shuts its sending side down at end of input and then reads until
# the server, having echoed everything, closes.
head -c $((4 * 1024 * 1024 / scale)) /dev/urandom >"$tmp/big"
socat -t $((10 * scale)) - "TCP:127.0.0.1:$port" <"$tmp/big" >"$tmp/big.echo"
cmp -s "$tmp/big" "$tmp/big.echo" ||
	fail "half-close: $(stat -c %s "$tmp/big.echo") of $(stat -c %s "$tmp/big") bytes back"
ok "half-close: all $(stat -c %s "$tmp/big") bytes echoed after socat shut its side down"

if $valgrind; then
	load=(--clients 100 --bytes 16384 --reset 10 --udp 20)
else
	load=(--clients 500 --bytes 65536 --reset 50 --udp 200)
fi
"$client" --port "$port" "${load[@]}" --timeout $((60 * scale)) >"$tmp/load.out" 2>"$tmp/load.err" ||
	fail "echo-client ${load[*]}"
ok "$(cat "$tmp/load.out")"

# Clients that send without ever reading (socat -u) fill both socket
# buffers, so their fibers block in send; the others must not notice, and
# when the clients die with unread data (a reset) the fibers must let go.
# Sixteen of them, each sending more than the server's whole ring of
# receive buffers: one that held ring buffers while blocked would starve
# everyone else (the server copies a stalled echo out of the ring).
stalled=()
for _ in $(seq 16); do
	head -c $((64 * 1024 * 1024)) /dev/zero | socat -u - "TCP:127.0.0.1:$port" 2>/dev/null &
	stalled+=($!)
	pids+=($!)
done
sleep 1
for s in "${stalled[@]}"; do
	kill -0 "$s" 2>/dev/null || fail "a never-reading client ended early"
done
"$client" --port "$port" --clients 20 --bytes 65536 --udp 5 --timeout $((30 * scale)) \
	>"$tmp/stalled.out" 2>"$tmp/stalled.err" || fail "echo-client next to stalled clients"
ok "next to 16 clients that never read: $(cat "$tmp/stalled.out")"
kill -TERM "${stalled[@]}"
wait "${stalled[@]}" || true

await_fds "$baseline" || fail "descriptors: $(nfds "$pid") after the clients left, $baseline before"
ok "descriptors back to the baseline of $baseline after clients closed, reset, or stalled and died"

rc=0
"${wrap[@]}" "$bin" -a 127.0.0.1 -p "$port" >"$tmp/busy.out" 2>"$tmp/busy.err" || rc=$?
((rc == 1)) || fail "second server on port $port: exit $rc, not 1"
if ! grep -q 'in use' "$tmp/busy.err" || (($(wc -l <"$tmp/busy.err") != 1)); then
	fail "second server: $(cat "$tmp/busy.err")"
fi
ok "a second server on the busy port exits 1: $(cat "$tmp/busy.err")"
stop_server one

# ---- IPv6 -----------------------------------------------------------------------
if grep -qs '^0\{31\}1 ' /proc/net/if_inet6; then
	# Also the SIGINT case; a script's background job starts with it ignored.
	intr=() sig=TERM
	if env --default-signal=INT true 2>/dev/null; then
		intr=(env --default-signal=INT) sig=INT
	fi
	start_server six "${intr[@]}" -- -a ::1 -p 0
	socat -t $((2 * scale)) - "TCP6:[::1]:$port" <"$tmp/small" >"$tmp/tcp6.echo"
	cmp -s "$tmp/small" "$tmp/tcp6.echo" || fail "TCP over IPv6: got '$(cat "$tmp/tcp6.echo")'"
	"$client" --host ::1 --port "$port" --clients 20 --bytes 20000 --reset 2 --udp 10 \
		--timeout $((60 * scale)) >"$tmp/six-load.out" 2>"$tmp/six-load.err" ||
		fail "echo-client over IPv6"
	ok "IPv6: socat round trip and $(cat "$tmp/six-load.out")"
	stop_server six "$sig"
else
	echo "# skipping IPv6: no ::1"
fi

# ---- two threads ----------------------------------------------------------------
# valgrind 3.19 holds its global lock while a thread blocks in io_uring_enter;
# under valgrind reactors wait in ppoll() instead, so two threads work there too.
start_server two -- -a 127.0.0.1 -p 0 -t 2
[[ $(cat "$tmp/two.out") == *"(tcp+udp, 2 threads)" ]] || fail "ready line: $(cat "$tmp/two.out")"
baseline=$(settled_fds "$pid")
two_load=(--clients 200 --bytes 65536 --reset 20 --udp 100)
$valgrind && two_load=("${load[@]}")
"$client" --port "$port" "${two_load[@]}" --timeout $((60 * scale)) \
	>"$tmp/two-load.out" 2>"$tmp/two-load.err" || fail "echo-client against -t 2"
ok "-t 2: $(cat "$tmp/two-load.out")"
await_fds "$baseline" || fail "-t 2 descriptors: $(nfds "$pid"), $baseline before"
ok "-t 2: descriptors back to the baseline of $baseline"
stop_server two

# ---- at the descriptor limit ------------------------------------------------------
start_server limit prlimit --nofile=64:64 -- -a 127.0.0.1 -p 0
baseline=$(settled_fds "$pid")
"$client" --port "$port" --hold 100 --hold-time 2 --expect-refused --timeout $((10 * scale)) \
	>"$tmp/hold.out" 2>"$tmp/hold.err" &
holder=$!
pids+=("$holder")
deadline=$((SECONDS + 30 * scale))
until grep -q '^holding:' "$tmp/hold.out"; do
	kill -0 "$holder" 2>/dev/null || fail "echo-client --hold ended early: $(cat "$tmp/hold.err")"
	((SECONDS < deadline)) || fail "echo-client --hold never got all its answers"
	sleep 0.05
done
# The server now sits at its limit with connections waiting: it must sleep.
t0=$(cpu_ticks "$pid")
sleep 1
used=$(($(cpu_ticks "$pid") - t0))
hz=$(getconf CLK_TCK)
((used * 4 < hz)) || fail "at the limit the server used $used of $hz ticks in 1 s idle"
ok "at the limit: $(head -n 1 "$tmp/hold.out"); $used of $hz CPU ticks used in 1 s idle"
rc=0
wait "$holder" || rc=$?
((rc == 0)) || fail "echo-client --hold: $(cat "$tmp/hold.out" "$tmp/hold.err")"
ok "at the limit: $(tail -n 1 "$tmp/hold.out")"
# (valgrind keeps a few descriptors: its programs see a lower limit.)
grep -qE 'refusing connections: Too many open files \(descriptor limit [0-9]+\)' "$tmp/limit.err" ||
	fail "at the limit: no refusal logged"
ok "at the limit: $(head -n 1 "$tmp/limit.err")"
"$client" --port "$port" --clients 20 --bytes 20000 --udp 5 --timeout $((30 * scale)) \
	>"$tmp/after.out" 2>"$tmp/after.err" || fail "echo-client after the limit"
ok "after the held connections closed, new clients are served: $(cat "$tmp/after.out")"
await_fds "$baseline" || fail "limit descriptors: $(nfds "$pid"), $baseline before"
ok "descriptors back to the baseline of $baseline"
stop_server limit

echo "# $checks checks passed"
