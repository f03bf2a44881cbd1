#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Tests examples/iou_tlsd against real peers: openssl s_client (TLS 1.3 and
# 1.2, ECDSA and RSA certificates, ALPN) and iou_tls with 1 MB of random
# data echoed and compared with cmp; 200 concurrent iou_tls clients, each
# with its own random data; abusive clients (garbage, plaintext, a reset
# mid-handshake, silent and half-ClientHello stalls), each dropped with a
# logged one-line reason while other clients are served at once, and the
# descriptor count back to its baseline afterwards; --max-conns,
# --idle-timeout (also for a client that never reads its echo), client
# certificates (--client-ca), IPv6, -t 2; SIGTERM and SIGINT with live
# sessions (close_notify to each, exit 0; a session blocked in a send is cut
# off after the grace period); a busy port,
# bad certificates and keys (exit 1) and usage errors (exit 2), each with one
# line.  iou_tlsd runs under $IOU_TEST_WRAPPER (e.g. valgrind) when that is
# set, with smaller loads and scaled waits; the clients never do.
set -euo pipefail

# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/tls-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tls-lib.sh"

size=$((1024 * 1024))
nclients=200
$valgrind && nclients=50
head -c "$size" /dev/urandom >"$tmp/data"

ec=(--cert "$certs/server-ec.pem" --key "$certs/server-ec.key")

# start_server NAME [prefix command...] -- [iou_tlsd args...]: start the
# server on 127.0.0.1 (unless -a is given) on a port of its choosing,
# under the wrapper; wait for its ready line; set $pid and $port.
start_server() {
	local name=$1 deadline
	shift
	local pre=()
	while [[ $1 != -- ]]; do
		pre+=("$1")
		shift
	done
	shift
	"${pre[@]}" "${wrap[@]}" "$tls_server" -p 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.log" &
	pid=$!
	pids+=("$pid")
	deadline=$((SECONDS + 15 * scale))
	until grep -q 'listening' "$tmp/$name.out"; do
		kill -0 "$pid" 2>/dev/null || fail "$name: exited before it was ready: $(cat "$tmp/$name.log")"
		((SECONDS < deadline)) || fail "$name: no ready line"
		sleep 0.05
	done
	port=$(sed -n 's/^iou_tlsd: listening on .* port \([0-9][0-9]*\) (tls, .*)$/\1/p' \
		"$tmp/$name.out")
	[[ -n $port ]] || fail "$name: unexpected ready line: $(cat "$tmp/$name.out")"
	(($(wc -l <"$tmp/$name.out") == 1)) || fail "$name: more than the ready line on stdout"
}

# stop_server NAME [SIGNAL]: SIGTERM (or SIGNAL) must end it promptly, 0.
stop_server() {
	local t0 sig=${2:-TERM}
	t0=$(now_ms)
	kill -"$sig" "$pid"
	wait_exit "$pid" 5
	((rc == 0)) || fail "$1: exit status $rc after SIG$sig: $(tail -n 5 "$tmp/$1.log")"
	ok "$1: SIG$sig stops it in $(($(now_ms) - t0)) ms with status 0"
}

# await_fds N: until the server holds N descriptors again (5 s, scaled).
await_fds() {
	local deadline=$((SECONDS + 5 * scale))
	while (($(nfds "$pid") != $1)); do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# hold NAME: a fifo $tmp/NAME that stays open for writing, by a process
# whose pid is $holder (so that a reader never sees end of input).
hold() {
	rm -f "$tmp/$1"
	mkfifo "$tmp/$1"
	sleep 300 >"$tmp/$1" &
	holder=$!
	pids+=("$holder")
}

# session NAME ARGS...: an iou_tls client in the background whose stdin
# stays open; its pid is $cpid once the handshake is done (-v line seen).
session() {
	local name=$1
	shift
	hold "$name.in"
	"$tls_client" -v --cafile "$certs/ca.pem" "$@" <"$tmp/$name.in" >"$tmp/$name.cout" \
		2>"$tmp/$name.err" &
	cpid=$!
	pids+=("$cpid")
	wait_grep 'TLSv1' "$tmp/$name.err" 10 || fail "$name: no session: $(cat "$tmp/$name.err")"
}

# echo_check NAME ARGS...: iou_tls sends $tmp/data and must get it all back,
# then end cleanly (close_notify both ways: status 0, nothing on stderr).
echo_check() {
	local name=$1
	shift
	rc=0
	"$tls_client" --cafile "$certs/ca.pem" "$@" <"$tmp/data" >"$tmp/$name.cout" \
		2>"$tmp/$name.err" || rc=$?
	((rc == 0)) || fail "$name: iou_tls exited with $rc: $(cat "$tmp/$name.err")"
	cmp -s "$tmp/data" "$tmp/$name.cout" ||
		fail "$name: $(stat -c %s "$tmp/$name.cout") of $size bytes came back intact"
	[[ ! -s $tmp/$name.err ]] || fail "$name: stderr: $(cat "$tmp/$name.err")"
}

# s_client_echo NAME ARGS...: openssl s_client sends $tmp/data; its input
# stays open until the whole echo is back, then its end of input makes it
# close.  The echo must match.
s_client_echo() {
	local name=$1 feeder
	shift
	: >"$tmp/$name.cout"
	rm -f "$tmp/$name.in"
	mkfifo "$tmp/$name.in"
	{
		cat "$tmp/data"
		wait_size "$tmp/$name.cout" "$size" 60 || true
	} >"$tmp/$name.in" &
	feeder=$!
	pids+=("$feeder")
	openssl s_client -connect "127.0.0.1:$port" -servername localhost \
		-CAfile "$certs/ca.pem" -verify_return_error -quiet -no_ign_eof -nocommands "$@" \
		<"$tmp/$name.in" >"$tmp/$name.cout" 2>"$tmp/$name.err" &
	cpid=$!
	pids+=("$cpid")
	wait_exit "$cpid" 60
	kill "$feeder" 2>/dev/null || true
	((rc == 0)) || fail "$name: s_client exited with $rc: $(tail -n 3 "$tmp/$name.err")"
	cmp -s "$tmp/data" "$tmp/$name.cout" ||
		fail "$name: $(stat -c %s "$tmp/$name.cout") of $size bytes came back intact"
}

# ---- usage and configuration errors -------------------------------------------
usage_case() {
	local rc=0
	"${wrap[@]}" "$tls_server" "$@" </dev/null >"$tmp/usage.out" 2>"$tmp/usage.err" || rc=$?
	((rc == 2)) || fail "'$*' exited with $rc, not 2: $(cat "$tmp/usage.err")"
	one_line "$tmp/usage.err" || fail "'$*': not one line: $(cat "$tmp/usage.err")"
	[[ ! -s $tmp/usage.out ]] || fail "'$*' wrote to stdout"
	ok "usage error '$*' exits 2: $(cat "$tmp/usage.err")"
}
usage_case
usage_case --cert "$certs/server-ec.pem"
usage_case --key "$certs/server-ec.key"
usage_case "${ec[@]}" -p 65536
usage_case "${ec[@]}" -p abc
usage_case "${ec[@]}" -p -1
usage_case "${ec[@]}" -t 0
usage_case "${ec[@]}" -t 257
usage_case "${ec[@]}" --handshake-timeout -1
usage_case "${ec[@]}" --idle-timeout soon
usage_case "${ec[@]}" --max-conns 0
usage_case "${ec[@]}" --max-conns 1x
usage_case "${ec[@]}" --alpn ''
usage_case "${ec[@]}" --alpn h2,
usage_case "${ec[@]}" -a not.an.address
usage_case "${ec[@]}" -a 127.0.0.1 extra
usage_case "${ec[@]}" --bogus
usage_case "${ec[@]}" -q -v
usage_case "${ec[@]}" --port
"${wrap[@]}" "$tls_server" --help >"$tmp/help.out" 2>&1 || fail "--help exited with $?"
grep -q '^usage: iou_tlsd' "$tmp/help.out" || fail "--help shows no usage line"
ok "--help exits 0 and shows the usage"

config_case() {
	local pattern=$1 rc=0
	shift
	"${wrap[@]}" "$tls_server" -a 127.0.0.1 -p 0 "$@" </dev/null >"$tmp/config.out" \
		2>"$tmp/config.err" || rc=$?
	((rc == 1)) || fail "'$*' exited with $rc, not 1: $(cat "$tmp/config.err")"
	one_line "$tmp/config.err" && grep -qE -- "$pattern" "$tmp/config.err" ||
		fail "'$*': $(cat "$tmp/config.err")"
	ok "bad configuration exits 1: $(cat "$tmp/config.err")"
}
config_case 'missing\.pem: No such file' --cert "$tmp/missing.pem" --key "$certs/server-ec.key"
config_case 'does not match' --cert "$certs/server-ec.pem" --key "$certs/server-rsa.key"
config_case 'no private key' --cert "$certs/server-ec.pem" --key "$certs/ca.pem"
config_case 'certificate' --cert "$certs/server-ec.key" --key "$certs/server-ec.key"

# ---- the main server: s_client and iou_tls echoes ------------------------------
start_server main -- "${ec[@]}" -a 127.0.0.1 --handshake-timeout "$((2 * scale))"
[[ $(cat "$tmp/main.out") == "iou_tlsd: listening on 127.0.0.1 port $port (tls, 1 thread)" ]] ||
	fail "ready line: $(cat "$tmp/main.out")"
ok "ready: $(cat "$tmp/main.out")"
main_pid=$pid
baseline=$(settled_fds "$pid")

s_client_echo s13 -tls1_3
ok "s_client (TLS 1.3) → iou_tlsd: $size random bytes echoed intact"
s_client_echo s12 -tls1_2
ok "s_client (TLS 1.2) → iou_tlsd: $size random bytes echoed intact"
echo_check iou "localhost:$port"
ok "iou_tls → iou_tlsd: $size random bytes echoed intact, both close_notify, exit 0"

# ---- stalled clients must not delay others ----------------------------------------
# Two clients that connect and say nothing, one that sends the first bytes
# of a ClientHello (a record header announcing 512 bytes) and stops.
hold silent1
socat -u "OPEN:$tmp/silent1" "TCP:127.0.0.1:$port" 2>/dev/null &
pids+=($!)
hold silent2
socat -u "OPEN:$tmp/silent2" "TCP:127.0.0.1:$port" 2>/dev/null &
pids+=($!)
rm -f "$tmp/half"
mkfifo "$tmp/half"
{
	printf '\026\003\001\002\000\001\000\001\374\003\003'
	exec sleep 300
} >"$tmp/half" &
pids+=($!)
socat -u "OPEN:$tmp/half" "TCP:127.0.0.1:$port" 2>/dev/null &
pids+=($!)
sleep 0.3
t0=$(now_ms)
for i in 1 2 3; do
	echo_check "beside-stall-$i" "localhost:$port"
done
elapsed=$(($(now_ms) - t0))
((elapsed < 2000 * scale)) || fail "three clients next to stalled ones took $elapsed ms"
ok "three clients served in $elapsed ms while three others stall mid-handshake"
wait_grep 'handshake timed out' "$tmp/main.log" 10 || fail "no handshake timeout logged"
deadline=$((SECONDS + 10 * scale))
while (($(grep -c 'handshake timed out after' "$tmp/main.log") < 3)); do
	((SECONDS < deadline)) || fail "stalled clients: $(grep -c 'timed out' "$tmp/main.log") timeouts logged"
	sleep 0.1
done
ok "stalled clients dropped: $(grep -m 1 'handshake timed out' "$tmp/main.log")"

# ---- abusive clients ----------------------------------------------------------------
head -c 4096 /dev/urandom >"$tmp/garbage"
# The first byte is not a TLS record type, whatever the rest.
printf '\377' | dd of="$tmp/garbage" bs=1 count=1 conv=notrunc 2>/dev/null
socat -t $((2 * scale)) - "TCP:127.0.0.1:$port" <"$tmp/garbage" >/dev/null 2>&1 || true
printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' |
	socat -t $((2 * scale)) - "TCP:127.0.0.1:$port" >/dev/null 2>&1 || true
# A reset mid-handshake: half a ClientHello, then a close with SO_LINGER 0.
rm -f "$tmp/rst"
mkfifo "$tmp/rst"
{
	printf '\026\003\001\002\000\001\000\001\374\003\003'
	exec sleep 300
} >"$tmp/rst" &
rst_feeder=$!
pids+=("$rst_feeder")
socat -u "OPEN:$tmp/rst" "TCP:127.0.0.1:$port,linger=0" 2>/dev/null &
rst=$!
pids+=("$rst")
sleep 0.3
kill -KILL "$rst"
wait "$rst" 2>/dev/null || true
kill "$rst_feeder"
# A client killed mid-session: its kernel closes the connection without
# close_notify (a truncation, or a reset if data was still unread).
hold rst2
openssl s_client -connect "127.0.0.1:$port" -servername localhost -CAfile "$certs/ca.pem" \
	-quiet <"$tmp/rst2" >/dev/null 2>&1 &
rst2=$!
pids+=("$rst2")
sleep 0.5
kill -KILL "$rst2"
wait "$rst2" 2>/dev/null || true
wait_grep 'TLS protocol error' "$tmp/main.log" 10 || fail "garbage: nothing logged"
wait_grep 'reset by peer' "$tmp/main.log" 10 || fail "reset: nothing logged"
for what in 'handshake failed: TLS protocol error' 'reset by peer|truncated'; do
	grep -qE "$what" "$tmp/main.log" || fail "nothing logged for '$what'"
done
ok "garbage and plaintext dropped: $(grep -m 1 'TLS protocol error' "$tmp/main.log")"
ok "reset mid-handshake dropped: $(grep -m 1 'reset by peer' "$tmp/main.log")"
# Every line of the log so far is one of the expected reasons.
if grep -vE 'handshake timed out|handshake failed|receiving: |sending: ' "$tmp/main.log" |
	grep -q .; then
	fail "unexpected log lines: $(grep -vE 'handshake|receiving|sending' "$tmp/main.log")"
fi
# Let the stallers go too, then the descriptors must all be back.
for p in "${pids[@]}"; do
	[[ $p == "$main_pid" ]] || kill "$p" 2>/dev/null || true
done
await_fds "$baseline" || fail "descriptors: $(nfds "$pid") after the abusive clients, $baseline before"
ok "descriptors back to the baseline of $baseline after garbage, plaintext, resets and stalls"

# ---- many clients at once -----------------------------------------------------------
# Each client has its own random data; all run at once.
for i in $(seq 1 "$nclients"); do
	head -c $((16384 + i * 97)) /dev/urandom >"$tmp/m$i"
done
cpids=()
t0=$(now_ms)
for i in $(seq 1 "$nclients"); do
	"$tls_client" --cafile "$certs/ca.pem" --timeout $((30 * scale)) "localhost:$port" \
		<"$tmp/m$i" >"$tmp/m$i.echo" 2>"$tmp/m$i.cerr" &
	cpids+=($!)
done
bad=0
for i in $(seq 1 "$nclients"); do
	if ! wait "${cpids[$((i - 1))]}" || ! cmp -s "$tmp/m$i" "$tmp/m$i.echo"; then
		bad=$((bad + 1))
		echo "# client $i: $(cat "$tmp/m$i.cerr")"
	fi
done
((bad == 0)) || fail "$bad of $nclients concurrent clients failed"
ok "$nclients concurrent iou_tls clients, distinct random data, all echoed intact in $(($(now_ms) - t0)) ms"
await_fds "$baseline" || fail "descriptors: $(nfds "$pid") after $nclients clients, $baseline before"
ok "descriptors back to the baseline of $baseline"

# ---- SIGTERM with live sessions -------------------------------------------------------
# Each client gets close_notify, answers it and exits 0.  A client that
# sends without ever reading its echo (socat -u) blocks its session in a
# send: the stop cuts it off after its grace period (2 s).  (socat connects
# to "localhost", not 127.0.0.1: given an IP address it sends it as SNI,
# which RFC 6066 forbids and rustls 0.20 rejects as a corrupt message.)
live=()
for i in 1 2 3; do
	session "live$i" "localhost:$port"
	live+=("$cpid")
done
socat -u OPEN:/dev/zero "OPENSSL:localhost:$port,verify=0" 2>/dev/null &
writer=$!
pids+=("$writer")
sleep 1
kill -0 "$writer" 2>/dev/null || fail "the never-reading client ended early"
stop_server main
for i in 1 2 3; do
	wait_exit "${live[$((i - 1))]}" 5
	((rc == 0)) || fail "live client $i: exit $rc after the server stopped: $(cat "$tmp/live$i.err")"
done
ok "the 3 live clients got close_notify at the stop and exited 0"

# ---- RSA certificate (PKCS#1 key), TLS 1.2 ------------------------------------------
start_server rsa -- --cert "$certs/server-rsa.pem" --key "$certs/rsa-pkcs1.key" -a 127.0.0.1
s_client_echo rsa12 -tls1_2
ok "RSA certificate with a PKCS#1 key, s_client TLS 1.2: $size bytes echoed intact"
echo_check rsa-iou "localhost:$port"
ok "RSA certificate, iou_tls: $size bytes echoed intact"
stop_server rsa INT

# ---- ALPN ---------------------------------------------------------------------------
start_server alpn -- "${ec[@]}" -a 127.0.0.1 --alpn h2 --alpn http/1.1 -v
session alpn1 --alpn http/1.1,h2 "localhost:$port"
grep -q 'ALPN h2,' "$tmp/alpn1.err" || fail "alpn: $(cat "$tmp/alpn1.err")"
wait_grep 'ALPN h2' "$tmp/alpn.log" || fail "alpn: the server logged no ALPN"
kill "$holder"
wait_exit "$cpid" 5
((rc == 0)) || fail "alpn client: exit $rc"
ok "ALPN: client offers http/1.1,h2, server prefers h2: both report h2"
openssl s_client -connect "127.0.0.1:$port" -servername localhost -CAfile "$certs/ca.pem" \
	-alpn http/1.1 </dev/null >"$tmp/alpn2.cout" 2>&1 || true
grep -q 'ALPN protocol: http/1.1' "$tmp/alpn2.cout" || fail "s_client -alpn: $(grep -i alpn "$tmp/alpn2.cout")"
ok "ALPN: s_client offers http/1.1: $(grep 'ALPN protocol' "$tmp/alpn2.cout")"
rc=0
"$tls_client" --cafile "$certs/ca.pem" --alpn spdy/3 "localhost:$port" </dev/null \
	>/dev/null 2>"$tmp/alpn3.err" || rc=$?
((rc == 1)) && one_line "$tmp/alpn3.err" || fail "alpn mismatch: exit $rc: $(cat "$tmp/alpn3.err")"
wait_grep 'No application protocol' "$tmp/alpn.log" || fail "alpn mismatch: nothing logged"
ok "ALPN: nothing in common: client exit 1 ($(cat "$tmp/alpn3.err")), server logged $(grep -m 1 -o 'handshake failed: No application.*' "$tmp/alpn.log")"
stop_server alpn

# ---- limits: --max-conns and --idle-timeout -----------------------------------------------
start_server limits -- "${ec[@]}" -a 127.0.0.1 --max-conns 3 --idle-timeout $((3 * scale))
baseline=$(settled_fds "$pid")
held=()
for i in 1 2 3; do
	session "held$i" "localhost:$port"
	held+=("$cpid")
done
rc=0
t0=$(now_ms)
"$tls_client" --cafile "$certs/ca.pem" "localhost:$port" </dev/null >/dev/null \
	2>"$tmp/fourth.err" || rc=$?
((rc == 1)) || fail "fourth client: exit $rc: $(cat "$tmp/fourth.err")"
((($(now_ms) - t0) < 2000 * scale)) || fail "fourth client: refused only after $(($(now_ms) - t0)) ms"
wait_grep 'refused: 3 connections open \(--max-conns\)' "$tmp/limits.log" ||
	fail "no refusal logged: $(cat "$tmp/limits.log")"
ok "--max-conns 3: a fourth client is refused at once ($(cat "$tmp/fourth.err")); logged"
# Idle for the whole --idle-timeout: the server says goodbye and the
# clients end cleanly.
for i in 1 2 3; do
	wait_exit "${held[$((i - 1))]}" 10
	((rc == 0)) || fail "held client $i: exit $rc at the idle timeout: $(cat "$tmp/held$i.err")"
done
wait_grep "idle for $((3 * scale)) s: closing" "$tmp/limits.log" ||
	fail "no idle timeout logged: $(cat "$tmp/limits.log")"
ok "--idle-timeout: $(grep -m 1 'idle for' "$tmp/limits.log"); the clients ended cleanly (exit 0)"
echo_check after-limit "localhost:$port"
ok "after the idle sessions ended, a new client is served"
# A client that never reads its echo gets the same bound on each send.
socat -u OPEN:/dev/zero "OPENSSL:localhost:$port,verify=0" 2>/dev/null &
writer=$!
pids+=("$writer")
wait_grep "not reading its echo for $((3 * scale)) s: closing" "$tmp/limits.log" 15 ||
	fail "no stalled-reader timeout logged: $(tail -n 3 "$tmp/limits.log")"
wait_exit "$writer" 5
ok "a client that never reads: $(grep -m 1 'not reading' "$tmp/limits.log")"
await_fds "$baseline" || fail "limits descriptors: $(nfds "$pid"), $baseline before"
ok "descriptors back to the baseline of $baseline"
stop_server limits

# ---- client certificates ------------------------------------------------------------------
start_server mtls -- "${ec[@]}" -a 127.0.0.1 --client-ca "$certs/ca.pem" -v
echo_check mtls-ok --cert "$certs/client.pem" --key "$certs/client.key" "localhost:$port"
wait_grep 'client certificate CN=ioucontext test client' "$tmp/mtls.log" ||
	fail "mtls: $(cat "$tmp/mtls.log")"
ok "--client-ca: a client with a certificate from the CA is served and named in the log"
rc=0
echo hello | "$tls_client" --cafile "$certs/ca.pem" "localhost:$port" >/dev/null \
	2>"$tmp/mtls-no.err" || rc=$?
((rc == 1)) && one_line "$tmp/mtls-no.err" || fail "mtls without a certificate: exit $rc: $(cat "$tmp/mtls-no.err")"
wait_grep 'handshake failed: .*(certificate|Certificate)' "$tmp/mtls.log" ||
	fail "mtls: nothing logged: $(cat "$tmp/mtls.log")"
ok "--client-ca: a client without a certificate is refused ($(cat "$tmp/mtls-no.err"))"
stop_server mtls

# ---- a busy port, IPv6, two threads ---------------------------------------------------------
start_server busy -- "${ec[@]}" -a 127.0.0.1
rc=0
"${wrap[@]}" "$tls_server" "${ec[@]}" -a 127.0.0.1 -p "$port" >"$tmp/busy2.out" 2>"$tmp/busy2.err" ||
	rc=$?
((rc == 1)) && one_line "$tmp/busy2.err" && grep -q 'in use' "$tmp/busy2.err" ||
	fail "second server on a busy port: exit $rc: $(cat "$tmp/busy2.err")"
ok "a second server on the busy port exits 1: $(cat "$tmp/busy2.err")"
stop_server busy

if $have6; then
	start_server six -- "${ec[@]}" -a ::1
	echo_check six --servername localhost "[::1]:$port"
	ok "IPv6: iou_tls to [::1]:$port, $size bytes echoed intact"
	stop_server six
else
	echo "# skipping IPv6: no ::1"
fi

# valgrind 3.19 holds its global lock while a thread blocks in io_uring_enter,
# so two threads that each wait in their ring stall one another for good:
# under valgrind this one server runs without the wrapper.
two_wrap=("${wrap[@]}")
$valgrind && wrap=()
start_server two -- "${ec[@]}" -a 127.0.0.1 -t 2
wrap=("${two_wrap[@]}")
[[ $(cat "$tmp/two.out") == *"(tls, 2 threads)" ]] || fail "ready line: $(cat "$tmp/two.out")"
cpids=()
for i in $(seq 1 50); do
	"$tls_client" --cafile "$certs/ca.pem" "localhost:$port" <"$tmp/m$i" \
		>"$tmp/t$i.echo" 2>"$tmp/t$i.cerr" &
	cpids+=($!)
done
for i in $(seq 1 50); do
	wait "${cpids[$((i - 1))]}" && cmp -s "$tmp/m$i" "$tmp/t$i.echo" ||
		fail "-t 2: client $i: $(cat "$tmp/t$i.cerr")"
done
ok "-t 2$($valgrind && echo ' (not under valgrind)'): 50 concurrent clients echoed intact"
stop_server two

echo "# $checks checks passed"
