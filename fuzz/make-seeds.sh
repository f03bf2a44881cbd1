#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2059,SC2086 # flag bytes go in printf formats; $rsa etc. are word lists
#
# Regenerate the seed inputs of the network harnesses from real peers on
# 127.0.0.1, recorded by socat relays (-r/-R dump each direction):
#
#   tls-server    what clients send: openssl s_client (TLS 1.2 and 1.3, ALPN,
#                 a client certificate) and our own iou_tls; and whole
#                 sessions of s_client with the harness itself (data, a
#                 KeyUpdate, close_notify), which replay to the end
#   tls-client    what servers send to our iou_tls: openssl s_server with
#                 TLS 1.3, TLS 1.2 (certificates in clear), RSA and EC keys,
#                 a certificate request, a HelloRetryRequest, ALPN, and
#                 certificates that fail (unknown issuer, expired, wrong name);
#                 and whole sessions of s_server -www with the harness itself
#   dns-response  dnsmasq's answers to our iou_dns: A, AAAA, CNAME chain,
#                 PTR (v4, v6), NXDOMAIN, and a truncated one (too many A
#                 records for UDP)
#
# Each seed is the harness's flags byte followed by the recorded bytes
# (see the harness's header comment for the flags).  Files are named
# seed-<what>; existing seeds of the same name are replaced, others kept.
#
#   fuzz/make-seeds.sh [BUILD_DIR]     (default: build; needs its examples
#                                       and fuzz-replay-tls-* programs)
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$src/build}
certs=$src/tests/fixtures/tls
out=$src/fuzz/corpus
iou_tls=$build/examples/iou_tls
iou_dns=$build/examples/iou_dns
dnsmasq=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
for b in "$iou_tls" "$iou_dns" "$dnsmasq"; do
	[[ -x $b ]] || { echo "make-seeds: $b not found" >&2; exit 1; }
done
for tool in openssl socat; do
	command -v "$tool" >/dev/null || { echo "make-seeds: $tool not installed" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iou-seeds.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# A free TCP and UDP port of 127.0.0.1 (another process may still take it).
free_port() {
	local p hex
	while :; do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		hex=$(printf ':%04X' "$p")
		awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
			/proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null || break
	done
	echo "$p"
}

# wait_port PROTO PORT: until something is bound to it (at most 5 s).
wait_port() {
	local hex i
	hex=$(printf ':%04X' "$2")
	for i in $(seq 1 250); do
		awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
			/proc/net/"$1" /proc/net/"$1"6 2>/dev/null && return 0
		sleep 0.02
	done
	echo "make-seeds: nothing bound to $1 port $2" >&2
	return 1
}

# seed DIR NAME FLAGS FILE: write FLAGS (a byte, in hex) then FILE as DIR/seed-NAME.
seed() {
	mkdir -p "$out/$1"
	{ printf "\\x$3"; cat "$4"; } >"$out/$1/seed-$2"
	echo "seed $1/seed-$2: $(stat -c %s "$out/$1/seed-$2") bytes"
}

# tls NAME 'SERVER ARGS' CLIENT...: run openssl s_server with SERVER ARGS
# for one connection, relay CLIENT's connection to it through socat, and
# leave the client's bytes in $tmp/NAME.c2s and the server's in NAME.s2c.
# CLIENT is a command line in which PORT stands for the relay's port.
tls() {
	local name=$1 sargs=$2 sport rport
	shift 2
	rm -f "$tmp/$name".* # socat appends to its dumps
	sport=$(free_port)
	openssl s_server -accept "127.0.0.1:$sport" -naccept 1 -rev -quiet $sargs \
		</dev/null >"$tmp/$name.server.out" 2>&1 &
	pids+=($!)
	wait_port tcp "$sport"
	rport=$(free_port)
	socat -r "$tmp/$name.c2s" -R "$tmp/$name.s2c" \
		"TCP4-LISTEN:$rport,bind=127.0.0.1,reuseaddr" "TCP4:127.0.0.1:$sport" &
	pids+=($!)
	wait_port tcp "$rport"
	local cmd=("${@//PORT/$rport}")
	printf 'hello, fuzz\n' | timeout 10 "${cmd[@]}" >"$tmp/$name.client.out" 2>&1 || true
	sleep 0.2
	[[ -s $tmp/$name.c2s && -s $tmp/$name.s2c ]] || {
		echo "make-seeds: $name recorded nothing" >&2
		cat "$tmp/$name.server.out" "$tmp/$name.client.out" >&2
		exit 1
	}
}

rsa="-cert $certs/server-rsa.pem -key $certs/server-rsa.key"
ec="-cert $certs/server-ec.pem -key $certs/server-ec.key"
ours=("$iou_tls" --cafile "$certs/ca.pem" --timeout 5 localhost:PORT)
theirs=(openssl s_client -connect 127.0.0.1:PORT -servername localhost -CAfile "$certs/ca.pem"
	-quiet -no_ign_eof)

# --- what servers send (tls-client: flags = config << 6 | chunk) ---------------
tls s13-rsa "$rsa -tls1_3" "${ours[@]}"
seed tls-client tls13-rsa 00 "$tmp/s13-rsa.s2c"
seed tls-server iou_tls-hello 00 "$tmp/s13-rsa.c2s"
tls s12-rsa "$rsa -tls1_2" "${ours[@]}"
seed tls-client tls12-rsa 00 "$tmp/s12-rsa.s2c"
seed tls-client tls12-rsa-pieces 05 "$tmp/s12-rsa.s2c"
tls s12-ec "$ec -tls1_2" "${ours[@]}"
seed tls-client tls12-ec 00 "$tmp/s12-ec.s2c"
tls s12-chain "-cert $certs/server-chain.pem -key $certs/server-rsa.key -tls1_2" "${ours[@]}"
seed tls-client tls12-chain 00 "$tmp/s12-chain.s2c"
tls s13-hrr "$ec -tls1_3 -groups P-384" "${ours[@]}"
seed tls-client tls13-hrr 00 "$tmp/s13-hrr.s2c"
tls s13-alpn "$ec -tls1_3 -alpn h2" "$iou_tls" --cafile "$certs/ca.pem" --alpn h2,http/1.1 \
	--timeout 5 localhost:PORT
seed tls-client tls13-alpn 40 "$tmp/s13-alpn.s2c"
tls s12-certreq "$rsa -tls1_2 -Verify 1 -CAfile $certs/ca.pem" "$iou_tls" --cafile \
	"$certs/ca.pem" --cert "$certs/client.pem" --key "$certs/client.key" --timeout 5 localhost:PORT
seed tls-client tls12-certreq 80 "$tmp/s12-certreq.s2c"
tls s13-certreq "$rsa -tls1_3 -Verify 1 -CAfile $certs/ca.pem" "$iou_tls" --cafile \
	"$certs/ca.pem" --cert "$certs/client.pem" --key "$certs/client.key" --timeout 5 localhost:PORT
seed tls-client tls13-certreq 80 "$tmp/s13-certreq.s2c"
for bad in untrusted expired wrongname; do
	tls "s12-$bad" "-cert $certs/$bad.pem -key $certs/$bad.key -tls1_2" "${ours[@]}"
	seed tls-client "tls12-$bad" 00 "$tmp/s12-$bad.s2c"
done
seed tls-client tls12-untrusted-insecure c0 "$tmp/s12-untrusted.s2c"

# --- what clients send (tls-server: flags = config << 6 | entry << 4 | chunk) --
tls c13 "$rsa -tls1_3" "${theirs[@]}" -tls1_3
seed tls-server openssl-tls13 00 "$tmp/c13.c2s"
seed tls-server openssl-tls13-read 10 "$tmp/c13.c2s"
tls c12 "$rsa -tls1_2" "${theirs[@]}" -tls1_2
seed tls-server openssl-tls12 00 "$tmp/c12.c2s"
seed tls-server openssl-tls12-pieces 03 "$tmp/c12.c2s"
tls c12-ec "$ec -tls1_2" "${theirs[@]}" -tls1_2 -alpn h2
seed tls-server openssl-tls12-ec-alpn 40 "$tmp/c12-ec.c2s"
tls c13-cert "$rsa -tls1_3 -Verify 1 -CAfile $certs/ca.pem" "${theirs[@]}" -tls1_3 \
	-cert "$certs/client.pem" -key "$certs/client.key"
seed tls-server openssl-tls13-cert 80 "$tmp/c13-cert.c2s"
tls c12-cert "$rsa -tls1_2 -Verify 1 -CAfile $certs/ca.pem" "${theirs[@]}" -tls1_2 \
	-cert "$certs/client.pem" -key "$certs/client.key"
seed tls-server openssl-tls12-cert 80 "$tmp/c12-cert.c2s"

# --- whole sessions, replayed to the end (detrand.h) ------------------------------
# The harness itself is one side (IOU_FUZZ_TLS_RECORD: its replay program
# runs the same code as for an input, over TCP), openssl the other.  Its
# random values being fixed, the recorded peer's bytes complete the
# handshake again when the harness replays them with the same
# configuration (flags bits 6-7); the other flags may differ.
replay_server=$build/fuzz/fuzz-replay-tls-server
replay_client=$build/fuzz/fuzz-replay-tls-client
for b in "$replay_server" "$replay_client"; do
	[[ -x $b ]] || { echo "make-seeds: $b not found (build $build first)" >&2; exit 1; }
done

# rec_server NAME FLAGS S_CLIENT_ARG...: our server, openssl s_client sending
# two lines with a KeyUpdate between them (TLS 1.3; with TLS 1.2, set
# MID=x: no command); the client's bytes in NAME.c2s.
rec_server() {
	local name=$1 flags=$2 sport rport
	shift 2
	rm -f "$tmp/$name".* # socat appends to its dumps
	printf "\x$flags" >"$tmp/$name.flags"
	sport=$(free_port)
	IOU_FUZZ_TLS_RECORD=$sport timeout 20 "$replay_server" "$tmp/$name.flags" \
		>"$tmp/$name.server.out" 2>&1 &
	pids+=($!)
	wait_port tcp "$sport"
	rport=$(free_port)
	socat -r "$tmp/$name.c2s" -R "$tmp/$name.s2c" \
		"TCP4-LISTEN:$rport,bind=127.0.0.1,reuseaddr" "TCP4:127.0.0.1:$sport" &
	pids+=($!)
	wait_port tcp "$rport"
	{ printf 'hello, fuzz\n'; sleep 0.3; printf '%s\n' "${MID:-K}"; sleep 0.3; printf 'after a key update\n'; sleep 0.3; } |
		timeout 10 openssl s_client -connect "127.0.0.1:$rport" -servername localhost \
			-CAfile "$certs/ca.pem" -quiet -no_ign_eof "$@" >"$tmp/$name.client.out" 2>&1 || true
	sleep 0.3
	grep -q 'after a key update' "$tmp/$name.client.out" || {
		echo "make-seeds: $name: no echo" >&2
		cat "$tmp/$name.server.out" "$tmp/$name.client.out" >&2
		exit 1
	}
}

# rec_client NAME FLAGS S_SERVER_ARG...: our client (flags: writes a
# request first) against openssl s_server -www; the server's bytes in NAME.s2c.
rec_client() {
	local name=$1 flags=$2 sport rport
	shift 2
	rm -f "$tmp/$name".* # socat appends to its dumps
	printf "\x$flags" >"$tmp/$name.flags"
	sport=$(free_port)
	openssl s_server -accept "127.0.0.1:$sport" -naccept 1 -www -quiet "$@" \
		</dev/null >"$tmp/$name.server.out" 2>&1 &
	pids+=($!)
	wait_port tcp "$sport"
	rport=$(free_port)
	socat -r "$tmp/$name.c2s" -R "$tmp/$name.s2c" \
		"TCP4-LISTEN:$rport,bind=127.0.0.1,reuseaddr" "TCP4:127.0.0.1:$sport" &
	pids+=($!)
	wait_port tcp "$rport"
	IOU_FUZZ_TLS_RECORD=$rport timeout 20 "$replay_client" "$tmp/$name.flags" \
		>"$tmp/$name.client.out" 2>&1 || {
		echo "make-seeds: $name: our client failed" >&2
		cat "$tmp/$name.server.out" "$tmp/$name.client.out" >&2
		exit 1
	}
	sleep 0.2
}

rec_server r13 00 -tls1_3
seed tls-server session-tls13 00 "$tmp/r13.c2s"
seed tls-server session-tls13-read-pieces 13 "$tmp/r13.c2s"
seed tls-server session-tls13-write-close 2c "$tmp/r13.c2s"
MID=x rec_server r12 00 -tls1_2
seed tls-server session-tls12 00 "$tmp/r12.c2s"
seed tls-server session-tls12-flush-bytes 31 "$tmp/r12.c2s"
MID=x rec_server r12-alpn 40 -tls1_2 -alpn h2
seed tls-server session-tls12-ec-alpn 40 "$tmp/r12-alpn.c2s"
rec_server r13-cert 80 -tls1_3 -cert "$certs/client.pem" -key "$certs/client.key"
seed tls-server session-tls13-client-cert 80 "$tmp/r13-cert.c2s"

rec_client rc-c13 20 $rsa -tls1_3
seed tls-client session-tls13 20 "$tmp/rc-c13.s2c"
seed tls-client session-tls13-pieces 24 "$tmp/rc-c13.s2c"
rec_client rc-c12 20 $rsa -tls1_2
seed tls-client session-tls12 20 "$tmp/rc-c12.s2c"
seed tls-client session-tls12-close 2e "$tmp/rc-c12.s2c"
rec_client rc-c13-alpn 60 $ec -tls1_3 -alpn h2
seed tls-client session-tls13-ec-alpn 60 "$tmp/rc-c13-alpn.s2c"
rec_client rc-c12-cert a0 $rsa -tls1_2 -Verify 1 -CAfile "$certs/ca.pem"
seed tls-client session-tls12-client-cert a0 "$tmp/rc-c12-cert.s2c"
rec_client rc-c13-insecure e0 -cert "$certs/untrusted.pem" -key "$certs/untrusted.key" -tls1_3
seed tls-client session-tls13-insecure e0 "$tmp/rc-c13-insecure.s2c"

# --- what a DNS server answers (dns-response: flags = lookup | follow-up) ---------
# Every record is for the name the harness looks up, host.example, or for
# the addresses it looks up in reverse (192.0.2.1, 2001:db8::1).
ptr6=1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa
chmod 711 "$tmp"
# dns NAME 'DNSMASQ ARGS' IOU_DNS ARGS...: one query of iou_dns to a dnsmasq
# with those records, through a socat relay; the answer in $tmp/NAME.ans.
dns() {
	local name=$1 dargs=$2 dport rport
	shift 2
	rm -f "$tmp/$name".* # socat appends to its dumps
	dport=$(free_port)
	"$dnsmasq" -k --port="$dport" --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
		--no-hosts --conf-file=/dev/null --pid-file= --log-facility=- --local=/example/ \
		$dargs >"$tmp/$name.dnsmasq.log" 2>&1 &
	pids+=($!)
	wait_port udp "$dport"
	rport=$(free_port)
	socat -T 2 -R "$tmp/$name.ans" "UDP4-LISTEN:$rport,bind=127.0.0.1,reuseaddr" \
		"UDP4:127.0.0.1:$dport" &
	pids+=($!)
	wait_port udp "$rport"
	timeout 10 "$iou_dns" -s "127.0.0.1:$rport" -t 3 "$@" >"$tmp/$name.out" 2>&1 || true
	sleep 0.2
	[[ -s $tmp/$name.ans ]] || {
		echo "make-seeds: $name recorded nothing" >&2
		cat "$tmp/$name.dnsmasq.log" "$tmp/$name.out" >&2
		exit 1
	}
}
dns a "--host-record=host.example,192.0.2.1,2001:db8::1" -4 host.example
seed dns-response a 00 "$tmp/a.ans"
seed dns-response a-any 02 "$tmp/a.ans"
dns aaaa "--host-record=host.example,192.0.2.1,2001:db8::1" -6 host.example
seed dns-response aaaa 01 "$tmp/aaaa.ans"
seed dns-response aaaa-service 07 "$tmp/aaaa.ans"
dns cname "--cname=host.example,mid.example --cname=mid.example,target.example
	--host-record=target.example,192.0.2.3,2001:db8::3" -4 host.example
seed dns-response cname-canon 03 "$tmp/cname.ans"
dns nx "--host-record=other.example,192.0.2.9" -4 host.example
seed dns-response nxdomain 10 "$tmp/nx.ans"
big=""
for i in $(seq 1 60); do
	big+=" --host-record=host.example,198.18.0.$i"
done
dns big "$big" -4 host.example
seed dns-response truncated-tcp 60 "$tmp/big.ans"
dns ptr4 "--ptr-record=1.2.0.192.in-addr.arpa,host.example" 192.0.2.1
seed dns-response ptr4 05 "$tmp/ptr4.ans"
dns ptr6 "--ptr-record=$ptr6,host.example" 2001:db8::1
seed dns-response ptr6 06 "$tmp/ptr6.ans"
# The A answer with its question left out (flag 0x08: the harness puts the
# query's own in): a 12-byte header, then the question's 18 bytes skipped.
{ head -c 12 "$tmp/a.ans"; tail -c +31 "$tmp/a.ans"; } >"$tmp/a.noq"
seed dns-response a-question 08 "$tmp/a.noq"
