#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Tests examples/iou_tls against real peers: openssl s_server (TLS 1.3 with
# an ECDSA certificate, TLS 1.2 with RSA, over IPv4 and IPv6) with 1 MB of
# random data each way at once, both verified with cmp; ALPN; a client
# certificate; the server ending first; and the failures, each exit 1 with
# one line naming the reason: an untrusted CA, the system CAs, a wrong host
# name (certificate and --servername), expired and not-yet-valid
# certificates, a server that speaks plaintext, one that closes
# mid-handshake, one that never answers (--timeout), a refused connection,
# a server that dies mid-session (truncation), a client certificate the
# server wants but does not get, and a closed standard output.  SIGTERM and
# SIGINT stop it with 128+N, mid-session and mid-handshake.  Usage errors
# exit 2 with one line.  iou_tls runs under $IOU_TEST_WRAPPER (e.g.
# valgrind) when that is set, with smaller data and scaled waits.
set -euo pipefail

# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/tls-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tls-lib.sh"

size=$((1024 * 1024))
$valgrind && size=$((256 * 1024))
head -c "$size" /dev/urandom >"$tmp/up"
head -c "$size" /dev/urandom >"$tmp/down"

# client NAME ARGS...: iou_tls (under the wrapper) with stdin from
# $tmp/NAME.in (empty if absent); output in $tmp/NAME.out, .err; status $rc.
client() {
	local name=$1
	shift
	[[ -e $tmp/$name.in ]] || : >"$tmp/$name.in"
	rc=0
	"${wrap[@]}" "$tls_client" "$@" <"$tmp/$name.in" >"$tmp/$name.out" 2>"$tmp/$name.err" ||
		rc=$?
}

# expect_failure NAME PATTERN ARGS...: iou_tls must exit 1 with one line on
# stderr that matches PATTERN.
expect_failure() {
	local name=$1 pattern=$2
	shift 2
	client "$name" "$@"
	((rc == 1)) || fail "$name: exit status $rc, not 1: $(cat "$tmp/$name.err")"
	one_line "$tmp/$name.err" || fail "$name: not one line: $(cat "$tmp/$name.err")"
	grep -qE -- "$pattern" "$tmp/$name.err" || fail "$name: '$(cat "$tmp/$name.err")'"
	ok "$name: exit 1, $(cat "$tmp/$name.err")"
}

# ---- usage errors -------------------------------------------------------------
usage_case() {
	local rc=0
	"${wrap[@]}" "$tls_client" "$@" </dev/null >"$tmp/usage.out" 2>"$tmp/usage.err" || rc=$?
	((rc == 2)) || fail "'$*' exited with $rc, not 2: $(cat "$tmp/usage.err")"
	one_line "$tmp/usage.err" || fail "'$*': not one line: $(cat "$tmp/usage.err")"
	[[ ! -s $tmp/usage.out ]] || fail "'$*' wrote to stdout"
	ok "usage error '$*' exits 2: $(cat "$tmp/usage.err")"
}
usage_case
usage_case localhost extra
usage_case --bogus localhost
usage_case -x localhost
usage_case localhost:0
usage_case localhost:65536
usage_case localhost:https
usage_case localhost:
usage_case '[::1'
usage_case '[::1]x'
usage_case '[]:443'
usage_case :443
usage_case --timeout -1 localhost
usage_case --timeout abc localhost
usage_case --timeout 1e9 localhost
usage_case localhost --timeout
usage_case --alpn '' localhost
usage_case --alpn h2,,http/1.1 localhost
usage_case --alpn "$(printf 'x%.0s' $(seq 1 300))" localhost
usage_case --cert "$certs/client.pem" localhost
usage_case --servername '' localhost
usage_case --servername 192.0.2.1 localhost
usage_case 127.0.0.1:443
usage_case '[::1]:443'
"${wrap[@]}" "$tls_client" --help >"$tmp/help.out" 2>&1 || fail "--help exited with $?"
grep -q '^Usage: iou_tls' "$tmp/help.out" || fail "--help shows no usage line"
ok "--help exits 0 and shows the usage"

expect_failure cafile-missing 'nonexistent\.pem: No such file' \
	--cafile "$tmp/nonexistent.pem" localhost
expect_failure cafile-empty 'no usable CA certificate|no certificate' \
	--cafile "$certs/server-ec.key" localhost

# ---- s_server peers -------------------------------------------------------------
# A peer of our own on a free port: openssl s_server, which writes what it
# receives to its stdout and sends its stdin.  $ss_args are its arguments
# besides -accept; $ss_in its stdin.  -nbio: with blocking sockets s_server
# can block in a read after a handshake record and stop sending its stdin.
ss_name=ss
ss_in=/dev/null
ss_addr=127.0.0.1
launch_ss() {
	local addr=$ss_addr
	[[ $addr == *:* ]] && addr="[$addr]"
	openssl s_server -accept "$addr:$port" -naccept 1 -quiet -nbio "${ss_args[@]}" \
		<"$ss_in" >"$tmp/$ss_name.recv" 2>"$tmp/$ss_name.peer.err" &
	peer=$!
}

# feed FIFO FILE WAIT-FILE: write FILE into a new fifo FIFO, then hold it
# open until WAIT-FILE holds $size bytes (what the other side sent has all
# arrived), so that this side's end of input comes last.  Sets $feeder.
feed() {
	rm -f "$1"
	mkfifo "$1"
	{
		cat "$2"
		wait_size "$3" "$size" 60 || true
	} >"$1" &
	feeder=$!
	pids+=("$feeder")
}

# both_ways NAME CERT CLIENT-ARGS... -- S_SERVER-ARGS...: $size random bytes
# each way at once between iou_tls and s_server, compared with cmp; the
# client must end with status 0.
both_ways() {
	local name=$1 cert=$2 cargs=() target server_feeder
	shift 2
	while [[ $1 != -- ]]; do
		cargs+=("$1")
		shift
	done
	shift
	ss_name=$name
	ss_args=(-cert "$certs/$cert.pem" -key "$certs/$cert.key" "$@")
	: >"$tmp/$name.out"
	: >"$tmp/$name.recv"
	# s_server may lose its port at start; each try needs a fresh feeder.
	launch_fed() {
		feed "$tmp/$ss_name.in" "$tmp/down" "$tmp/$ss_name.recv"
		ss_in=$tmp/$ss_name.in
		launch_ss
	}
	on_free_port "$name" launch_fed
	server_feeder=$feeder
	target=("localhost:$port")
	[[ $ss_addr == *:* ]] && target=(--servername localhost "[$ss_addr]:$port")
	feed "$tmp/$name.cin" "$tmp/up" "$tmp/$name.out"
	"${wrap[@]}" "$tls_client" -v --cafile "$certs/ca.pem" "${cargs[@]}" "${target[@]}" \
		<"$tmp/$name.cin" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	cpid=$!
	pids+=("$cpid")
	wait_exit "$cpid" 60
	kill "$feeder" 2>/dev/null || true
	((rc == 0)) || fail "$name: iou_tls exited with $rc"
	wait_exit "$peer" 10
	kill "$server_feeder" 2>/dev/null || true
	((rc == 0)) || fail "$name: s_server exited with $rc"
	cmp -s "$tmp/up" "$tmp/$name.recv" ||
		fail "$name: s_server got $(stat -c %s "$tmp/$name.recv") bytes, not the $size sent"
	cmp -s "$tmp/down" "$tmp/$name.out" ||
		fail "$name: iou_tls got $(stat -c %s "$tmp/$name.out") bytes, not the $size sent"
}

both_ways tls13 server-ec -- -tls1_3
grep -q 'TLSv1.3, cipher TLS13_' "$tmp/tls13.err" || fail "tls13: $(cat "$tmp/tls13.err")"
grep -q 'server CN=localhost,O=ioucontext test' "$tmp/tls13.err" ||
	fail "tls13: no peer subject: $(cat "$tmp/tls13.err")"
ok "TLS 1.3 (ECDSA): $size random bytes each way at once match (cmp), exit 0; $(tail -n 1 "$tmp/tls13.err")"

both_ways tls12 server-rsa -- -tls1_2
grep -q 'TLSv1.2, cipher TLS_ECDHE_RSA_' "$tmp/tls12.err" || fail "tls12: $(cat "$tmp/tls12.err")"
ok "TLS 1.2 (RSA): $size random bytes each way at once match (cmp), exit 0; $(tail -n 1 "$tmp/tls12.err")"

both_ways chain server-chain -- -key "$certs/server-rsa.key"
ok "a certificate chain (leaf + CA) from the server: $size bytes each way match"

if $have6; then
	ss_addr=::1
	both_ways six server-ec -- -tls1_3
	ss_addr=127.0.0.1
	ok "IPv6 [::1]:PORT with --servername: $size bytes each way match"
else
	echo "# skipping IPv6: no ::1"
fi

# ALPN: s_server picks from its own list; iou_tls reports it with -v.
both_ways alpn server-ec --alpn spdy/1,h2 --alpn http/1.1 -- -alpn h2,http/1.1
grep -q 'ALPN h2,' "$tmp/alpn.err" || fail "alpn: $(cat "$tmp/alpn.err")"
ok "ALPN: offered spdy/1,h2,http/1.1 to a server that speaks h2,http/1.1: negotiated h2"

# A server that wants a client certificate from our CA.
both_ways client-cert server-ec --cert "$certs/client.pem" --key "$certs/client.key" -- \
	-Verify 1 -CAfile "$certs/ca.pem"
ok "client certificate accepted by s_server -Verify: $size bytes each way match"

# The server sends its data and closes first (close_notify) while our stdin
# stays open: iou_tls must not wait for its input and must exit 0.
ss_name=first
ss_in=$tmp/down
ss_args=(-cert "$certs/server-ec.pem" -key "$certs/server-ec.key")
on_free_port first launch_ss
rm -f "$tmp/hold"
mkfifo "$tmp/hold"
sleep 300 >"$tmp/hold" &
holder=$!
pids+=("$holder")
"${wrap[@]}" "$tls_client" --cafile "$certs/ca.pem" "localhost:$port" <"$tmp/hold" \
	>"$tmp/first.out" 2>"$tmp/first.err" &
cpid=$!
pids+=("$cpid")
wait_exit "$cpid" 20
((rc == 0)) || fail "server first: exit $rc: $(cat "$tmp/first.err")"
cmp -s "$tmp/down" "$tmp/first.out" || fail "server first: output differs"
[[ ! -s $tmp/first.err ]] || fail "server first: stderr: $(cat "$tmp/first.err")"
kill "$holder"
wait_exit "$peer" 10
ok "server closes first (close_notify) while stdin is still open: all $size bytes, exit 0"

# ---- certificate failures -------------------------------------------------------
# serve_cert NAME CERT [s_server args...]: s_server with that certificate.
serve_cert() {
	ss_name=$1
	ss_in=/dev/null
	ss_args=(-cert "$certs/$2.pem" -key "$certs/$2.key" "${@:3}")
	on_free_port "$1" launch_ss
}
end_peer() {
	kill "$peer" 2>/dev/null || true
	wait "$peer" 2>/dev/null || true
}

serve_cert untrusted untrusted
expect_failure untrusted-ca 'Certificate issuer unknown.*UnknownIssuer' \
	--cafile "$certs/ca.pem" "localhost:$port"
end_peer

serve_cert system-cas server-ec
expect_failure system-cas 'UnknownIssuer' "localhost:$port"
end_peer

serve_cert wrongname wrongname
expect_failure wrong-name-cert 'not valid for the server name.*CertNotValidForName' \
	--cafile "$certs/ca.pem" "localhost:$port"
end_peer

serve_cert servername server-ec
expect_failure wrong-servername 'CertNotValidForName' \
	--cafile "$certs/ca.pem" --servername other.localhost "localhost:$port"
end_peer

serve_cert expired expired
expect_failure expired 'Certificate expired.*CertExpired' --cafile "$certs/ca.pem" "localhost:$port"
end_peer

serve_cert notyet notyet
expect_failure not-yet-valid 'CertNotValidYet' --cafile "$certs/ca.pem" "localhost:$port"
end_peer

# No ALPN protocol in common: OpenSSL 3's s_server refuses the handshake.
serve_cert alpn-none server-ec -alpn h2
expect_failure alpn-none 'No application protocol \(ALPN\) in common' --alpn spdy/1 \
	--cafile "$certs/ca.pem" "localhost:$port"
end_peer

# The server requires a client certificate; we have none.  In TLS 1.3 the
# server's refusal (an alert) arrives after our side of the handshake.
serve_cert needs-cert server-ec -Verify 1 -CAfile "$certs/ca.pem"
echo hello >"$tmp/needs-cert.in"
expect_failure needs-cert 'alert|CertificateRequired|HandshakeFailure' \
	--cafile "$certs/ca.pem" "localhost:$port"
end_peer

# ---- peers that are not (good) TLS servers ------------------------------------------
# socat_peer NAME SYSTEM-COMMAND: a TCP listener that runs the command for
# its one connection.
socat_cmd=
launch_socat() {
	socat -T 30 "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" SYSTEM:"$socat_cmd" \
		2>"$tmp/$ss_name.peer.err" &
	peer=$!
}
socat_peer() {
	ss_name=$1
	socat_cmd=$2
	on_free_port "$1" launch_socat
}

socat_peer plaintext "printf 'HTTP/1.0 200 OK\\\\r\\\\nContent-Length: 0\\\\r\\\\n\\\\r\\\\n'; sleep 5"
expect_failure plaintext 'TLS protocol error' --cafile "$certs/ca.pem" "localhost:$port"
end_peer

socat_peer mid-handshake "head -c 20 >/dev/null"
expect_failure mid-handshake 'truncated|reset' --cafile "$certs/ca.pem" "localhost:$port"
end_peer

socat_peer silent "sleep 30"
t0=$(now_ms)
expect_failure silent 'handshake timed out after 1 s' --timeout 1 --cafile "$certs/ca.pem" \
	"localhost:$port"
elapsed=$(($(now_ms) - t0))
((elapsed >= 900)) || fail "silent: gave up after $elapsed ms, before the 1 s timeout"
ok "silent server: --timeout 1 ended the handshake after $elapsed ms"
end_peer

port=$(random_port)
expect_failure refused 'cannot connect: 127\.0\.0\.1:[0-9]+: Connection refused' \
	--cafile "$certs/ca.pem" "localhost:$port"

# A server that dies mid-session: the kernel closes its socket without a
# close_notify, which must be reported as truncation, not as a clean end.
ss_name=dies
ss_in=$tmp/hold
rm -f "$tmp/hold"
mkfifo "$tmp/hold"
sleep 300 >"$tmp/hold" &
holder=$!
pids+=("$holder")
ss_args=(-cert "$certs/server-ec.pem" -key "$certs/server-ec.key")
on_free_port dies launch_ss
rm -f "$tmp/hold2"
mkfifo "$tmp/hold2"
sleep 300 >"$tmp/hold2" &
holder2=$!
pids+=("$holder2")
"${wrap[@]}" "$tls_client" -v --cafile "$certs/ca.pem" "localhost:$port" <"$tmp/hold2" \
	>"$tmp/dies.out" 2>"$tmp/dies.err" &
cpid=$!
pids+=("$cpid")
wait_grep 'TLSv1' "$tmp/dies.err" 20 || fail "dies: no session: $(cat "$tmp/dies.err")"
kill -KILL "$peer"
wait_exit "$cpid" 10
((rc == 1)) || fail "dies: exit $rc: $(cat "$tmp/dies.err")"
grep -q 'without close_notify (truncated)' "$tmp/dies.err" || fail "dies: $(cat "$tmp/dies.err")"
(($(grep -vc '^iou_tls: \(connected\|TLSv\)' "$tmp/dies.err") == 1)) ||
	fail "dies: more than one failure line: $(cat "$tmp/dies.err")"
ok "server killed mid-session: exit 1, $(tail -n 1 "$tmp/dies.err")"
kill "$holder" "$holder2" 2>/dev/null || true

# Standard output closed by its reader: one line, exit 1.
ss_name=epipe
ss_in=$tmp/down
ss_args=(-cert "$certs/server-ec.pem" -key "$certs/server-ec.key")
on_free_port epipe launch_ss
rm -f "$tmp/hold"
mkfifo "$tmp/hold"
sleep 300 >"$tmp/hold" &
holder=$!
pids+=("$holder")
{
	rc=0
	"${wrap[@]}" "$tls_client" --cafile "$certs/ca.pem" "localhost:$port" <"$tmp/hold" \
		2>"$tmp/epipe.err" || rc=$?
	echo "$rc" >"$tmp/epipe.rc"
} | head -c 10 >/dev/null
rc=$(cat "$tmp/epipe.rc")
((rc == 1)) || fail "epipe: exit $rc: $(cat "$tmp/epipe.err")"
one_line "$tmp/epipe.err" && grep -q 'standard output: Broken pipe' "$tmp/epipe.err" ||
	fail "epipe: $(cat "$tmp/epipe.err")"
ok "reader of stdout gone: exit 1, $(cat "$tmp/epipe.err")"
kill "$holder" 2>/dev/null || true
end_peer

# ---- signals ------------------------------------------------------------------------
# Mid-session: close_notify goes out, then exit 128+N.
for sig in TERM INT; do
	ss_name=sig-$sig
	rm -f "$tmp/hold"
	mkfifo "$tmp/hold"
	sleep 300 >"$tmp/hold" &
	holder=$!
	pids+=("$holder")
	ss_in=$tmp/hold
	ss_args=(-cert "$certs/server-ec.pem" -key "$certs/server-ec.key")
	on_free_port "sig-$sig" launch_ss
	rm -f "$tmp/hold2"
	mkfifo "$tmp/hold2"
	sleep 300 >"$tmp/hold2" &
	holder2=$!
	pids+=("$holder2")
	"${intr[@]}" "${wrap[@]}" "$tls_client" -v --cafile "$certs/ca.pem" "localhost:$port" \
		<"$tmp/hold2" >"$tmp/sig.out" 2>"$tmp/sig-$sig.client.err" &
	cpid=$!
	pids+=("$cpid")
	wait_grep 'TLSv1' "$tmp/sig-$sig.client.err" 20 || fail "SIG$sig: no session"
	if [[ $sig == INT && ${#intr[@]} == 0 ]]; then
		echo "# skipping SIGINT: env --default-signal is missing"
		kill -TERM "$cpid"
		wait "$cpid" || true
	else
		t0=$(now_ms)
		kill -"$sig" "$cpid"
		wait_exit "$cpid" 5
		want=$((128 + $(kill -l "$sig")))
		((rc == want)) || fail "SIG$sig: exit $rc, not $want: $(cat "$tmp/sig-$sig.client.err")"
		# s_server -naccept 1 ends once the session is over.
		wait_exit "$peer" 5
		ok "SIG$sig mid-session: exit $want after $(($(now_ms) - t0)) ms; the server saw the session end"
	fi
	kill "$holder" "$holder2" 2>/dev/null || true
done

# Mid-handshake (a server that never answers, no --timeout).
socat_peer sig-hs "sleep 30"
"${wrap[@]}" "$tls_client" --timeout 0 --cafile "$certs/ca.pem" "localhost:$port" </dev/null \
	>/dev/null 2>"$tmp/sig-hs.client.err" &
cpid=$!
pids+=("$cpid")
sleep $((1 * scale))
kill -TERM "$cpid"
wait_exit "$cpid" 5
((rc == 143)) || fail "SIGTERM mid-handshake: exit $rc: $(cat "$tmp/sig-hs.client.err")"
[[ ! -s $tmp/sig-hs.client.err ]] || fail "SIGTERM mid-handshake: $(cat "$tmp/sig-hs.client.err")"
ok "SIGTERM mid-handshake: exit 143, nothing on stderr"
end_peer

echo "# $checks checks passed"
