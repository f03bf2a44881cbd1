#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Tests examples/iou_dns against a real DNS server: a dnsmasq of our own on
# 127.0.0.1 (and ::1 when the host has it) on a free port, its records given
# on the command line and in a hosts file.  Checks A only, AAAA only, both
# (in a stable order), -4 and -6, a CNAME chain, PTR for IPv4 and IPv6, a
# name that does not exist among others (stderr, exit 1, the others still
# answered), a name with 60 addresses (an answer over 512 bytes, which
# dnsmasq truncates over UDP, so it must come over TCP), many arguments
# printed in argument order, standard input (blank lines, spaces, CRLF, no
# final newline, --workers 1, then 100,000 names in input order with the
# peak RSS independent of the input's length), output that streams while
# stdin stays open, SIGTERM and SIGINT, a server that never answers bounded
# by --timeout, a port where nothing listens, a write error, usage errors
# (exit 2, one line) and --help.  iou_dns runs under $IOU_TEST_WRAPPER
# (e.g. valgrind) when that is set, with smaller loads and scaled waits.
set -euo pipefail

# CTest runs the script in <build>/examples, which locates the build tree
# when IOU_BUILD_DIR is not passed.
build=${IOU_BUILD_DIR:-$(cd .. && pwd)}
bin="$build/examples/iou_dns"
[[ -x $bin ]] || {
	echo "$bin not found: set IOU_BUILD_DIR to the build tree" >&2
	exit 1
}
dnsmasq=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
[[ -x $dnsmasq ]] || {
	echo "# dnsmasq is not installed (scripts/setup.sh installs dnsmasq-base)"
	exit 77
}
read -ra wrap <<<"${IOU_TEST_WRAPPER:-}"
valgrind=false
sanitizer=false
scale=1
big=100000
if [[ ${IOU_TEST_WRAPPER:-} == *valgrind* ]]; then
	valgrind=true
	scale=10
	big=10000
elif [[ -n ${IOU_SANITIZE:-} ]]; then
	sanitizer=true
	scale=3
fi

# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# in_use PORT: is PORT bound by any UDP or TCP socket, IPv4 or IPv6?
in_use() {
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
		/proc/net/udp /proc/net/tcp /proc/net/udp6 /proc/net/tcp6 2>/dev/null
}

# udp_bound PORT: has something bound UDP PORT on 127.0.0.1?
udp_bound() {
	local want
	want=$(printf '0100007F:%04X' "$1")
	awk -v w="$want" 'FNR > 1 && $2 == w { f = 1 } END { exit !f }' /proc/net/udp
}

# ---- the server ----------------------------------------------------------------
have6=false
if grep -qs '^0\{31\}1 ' /proc/net/if_inet6; then
	have6=true
fi

# 60 addresses for one name (an answer of about 1 KB), and 1000 names for
# the standard input run, in an extra hosts file.
{
	for i in $(seq 1 60); do
		echo "198.18.0.$i big.test.iou"
	done
	for i in $(seq 0 999); do
		echo "10.7.$((i / 256)).$((i % 256)) n$i.test.iou"
	done
} >"$tmp/hosts"
# dnsmasq started as root reads its hosts file as nobody.
chmod 711 "$tmp"
chmod 644 "$tmp/hosts"

# PTR of 2001:db8::53, nibble by nibble.
ptr6=3.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa
listen=(--listen-address=127.0.0.1)
$have6 && listen+=(--listen-address=::1)

# start_dnsmasq: on a free port from a random base (retrying if another
# process takes it first); sets $port.
start_dnsmasq() {
	local try deadline
	for try in $(seq 1 20); do
		port=$((20000 + (RANDOM * 32768 + RANDOM + try) % 40000))
		in_use "$port" && continue
		"$dnsmasq" -k --port="$port" "${listen[@]}" --bind-interfaces --no-resolv \
			--no-hosts --conf-file=/dev/null --pid-file= --log-facility=- \
			--addn-hosts="$tmp/hosts" --local=/test.iou/ \
			--host-record=a-only.test.iou,192.0.2.1 \
			--host-record=aaaa-only.test.iou,2001:db8::1 \
			--host-record=both.test.iou,192.0.2.2,2001:db8::2 \
			--host-record=target.test.iou,192.0.2.3,2001:db8::3 \
			--cname=alias.test.iou,mid.test.iou --cname=mid.test.iou,target.test.iou \
			--ptr-record=1.100.51.198.in-addr.arpa,ptr4.test.iou \
			--ptr-record="$ptr6",ptr6.test.iou \
			>"$tmp/dnsmasq.log" 2>&1 &
		dpid=$!
		pids+=("$dpid")
		deadline=$((SECONDS + 10))
		while ! udp_bound "$port"; do
			kill -0 "$dpid" 2>/dev/null || break
			((SECONDS < deadline)) || fail "dnsmasq did not bind port $port"
			sleep 0.05
		done
		kill -0 "$dpid" 2>/dev/null && return 0
		wait "$dpid" || true # lost a race for the port: try another
	done
	fail "could not start dnsmasq"
}
start_dnsmasq
server=127.0.0.1:$port
ok "dnsmasq serves on port $port (pid $dpid)"

# A per-lookup limit well above what a local answer needs, even under valgrind.
limit=$((5 * scale))

# dns ARGS...: iou_dns against our server; stdout, stderr and the status
# land in $tmp/out, $tmp/err, $rc.
dns() {
	rc=0
	"${wrap[@]}" "$bin" --server "$server" --timeout "$limit" "$@" >"$tmp/out" 2>"$tmp/err" ||
		rc=$?
}

# expect WHAT RC: the last run's status is RC, its stdout is $tmp/want and
# its stderr is $tmp/want.err (empty if absent).
expect() {
	[[ -f $tmp/want.err ]] || : >"$tmp/want.err"
	((rc == $2)) || fail "$1: exit status $rc, not $2"
	diff "$tmp/want" "$tmp/out" >"$tmp/out.diff" || fail "$1: stdout differs"
	diff "$tmp/want.err" "$tmp/err" >"$tmp/err.diff" || fail "$1: stderr differs"
	rm -f "$tmp/want.err" "$tmp/out.diff" "$tmp/err.diff"
}

# ---- usage errors and --help -----------------------------------------------------
usage_case() {
	local rc=0
	"${wrap[@]}" "$bin" "$@" >"$tmp/usage.out" 2>"$tmp/usage.err" </dev/null || rc=$?
	((rc == 2)) || fail "'$*' exited with $rc, not 2"
	(($(wc -l <"$tmp/usage.err") == 1)) || fail "'$*': not one line: $(cat "$tmp/usage.err")"
	[[ ! -s $tmp/usage.out ]] || fail "'$*' wrote to stdout"
	ok "usage error '$*' exits 2: $(cat "$tmp/usage.err")"
}
usage_case --timeout abc x.test.iou
usage_case --timeout -1 x.test.iou
usage_case --timeout
usage_case --workers 0
usage_case --workers many
usage_case --server 300.1.2.3 x.test.iou
usage_case --server 127.0.0.1:70000 x.test.iou
usage_case --server '[::1' x.test.iou
usage_case --server 'dns.example' x.test.iou
usage_case -4 -6 x.test.iou
usage_case --bogus
usage_case -x
rc=0
"${wrap[@]}" "$bin" --help >"$tmp/help.out" 2>&1 || rc=$?
((rc == 0)) || fail "--help exited with $rc"
grep -q '^Usage: iou_dns' "$tmp/help.out" || fail "--help shows no usage line"
ok "--help exits 0 and shows the usage"

# ---- forward lookups -------------------------------------------------------------
dns a-only.test.iou
echo "a-only.test.iou has address 192.0.2.1" >"$tmp/want"
expect "A only" 0
ok "A only: $(cat "$tmp/out")"

dns aaaa-only.test.iou
echo "aaaa-only.test.iou has IPv6 address 2001:db8::1" >"$tmp/want"
expect "AAAA only" 0
ok "AAAA only: $(cat "$tmp/out")"

dns both.test.iou
sort "$tmp/out" >"$tmp/first"
printf '%s\n' "both.test.iou has IPv6 address 2001:db8::2" \
	"both.test.iou has address 192.0.2.2" | sort >"$tmp/want"
cmp -s "$tmp/want" "$tmp/first" || fail "A and AAAA: got $(cat "$tmp/out")"
cp "$tmp/out" "$tmp/first"
for i in 1 2 3 4; do
	dns both.test.iou
	cmp -s "$tmp/first" "$tmp/out" || fail "A and AAAA: run $i gave another order: $(cat "$tmp/out")"
done
ok "A and AAAA: both addresses, the same order in 5 runs"

dns -4 both.test.iou
echo "both.test.iou has address 192.0.2.2" >"$tmp/want"
expect "-4" 0
dns -6 both.test.iou
echo "both.test.iou has IPv6 address 2001:db8::2" >"$tmp/want"
expect "-6" 0
ok "-4 and -6 ask for one family each"

dns -6 a-only.test.iou
: >"$tmp/want"
((rc == 1)) || fail "-6 for a name with only A: exit status $rc"
grep -q '^Host a-only.test.iou not found: ' "$tmp/err" || fail "-6 for A only: $(cat "$tmp/err")"
ok "-6 for a name with only an A record: $(cat "$tmp/err")"

dns alias.test.iou
printf '%s\n' "alias.test.iou has address 192.0.2.3" \
	"alias.test.iou has IPv6 address 2001:db8::3" | sort >"$tmp/want"
sort "$tmp/out" >"$tmp/sorted"
if ((rc != 0)) || ! cmp -s "$tmp/want" "$tmp/sorted"; then
	fail "CNAME chain: $(cat "$tmp/out" "$tmp/err")"
fi
ok "CNAME chain alias -> mid -> target: the target's addresses"

# ---- reverse lookups -------------------------------------------------------------
dns 198.51.100.1
echo "198.51.100.1 domain name pointer ptr4.test.iou." >"$tmp/want"
expect "PTR IPv4" 0
ok "PTR IPv4: $(cat "$tmp/out")"

dns 2001:db8::53
echo "2001:db8::53 domain name pointer ptr6.test.iou." >"$tmp/want"
expect "PTR IPv6" 0
ok "PTR IPv6: $(cat "$tmp/out")"

dns 2001:0db8:0:0::2 192.0.2.2
printf '%s\n' "2001:0db8:0:0::2 domain name pointer both.test.iou." \
	"192.0.2.2 domain name pointer both.test.iou." >"$tmp/want"
expect "PTR of host records" 0
ok "PTR of host records, the address printed as given"

# ---- failures among successes --------------------------------------------------
dns a-only.test.iou nx.test.iou aaaa-only.test.iou
printf '%s\n' "a-only.test.iou has address 192.0.2.1" \
	"aaaa-only.test.iou has IPv6 address 2001:db8::1" >"$tmp/want"
echo "Host nx.test.iou not found: No such name" >"$tmp/want.err"
expect "NXDOMAIN" 1
ok "NXDOMAIN: '$(cat "$tmp/err")', exit 1, the other names answered"

# ---- a large answer: over 512 bytes, so TCP ------------------------------------
dns -4 big.test.iou
for i in $(seq 1 60); do
	echo "big.test.iou has address 198.18.0.$i"
done | sort >"$tmp/want"
sort "$tmp/out" >"$tmp/sorted"
((rc == 0)) || fail "60 addresses: exit status $rc: $(cat "$tmp/err")"
cmp -s "$tmp/want" "$tmp/sorted" || fail "60 addresses: got $(wc -l <"$tmp/out") lines"
ok "60 A records (answer > 512 bytes, via TCP): all 60 printed once"

# ---- argument order ------------------------------------------------------------
# The slow TCP answer first: everything after it must still wait its turn.
args=(big.test.iou)
: >"$tmp/want"
for i in $(seq 0 39); do
	k=$(((i * 37) % 1000))
	args+=("n$k.test.iou")
done
args+=(198.51.100.1 nx.test.iou 2001:db8::53 a-only.test.iou)
dns -4 "${args[@]}"
grep -c '^big.test.iou has address ' "$tmp/out" | grep -qx 60 || fail "order: big answer incomplete"
grep -v '^big.test.iou ' "$tmp/out" >"$tmp/rest"
mv "$tmp/rest" "$tmp/out"
for i in $(seq 0 39); do
	k=$(((i * 37) % 1000))
	echo "n$k.test.iou has address 10.7.$((k / 256)).$((k % 256))"
done >"$tmp/want"
printf '%s\n' "198.51.100.1 domain name pointer ptr4.test.iou." \
	"2001:db8::53 domain name pointer ptr6.test.iou." \
	"a-only.test.iou has address 192.0.2.1" >>"$tmp/want"
echo "Host nx.test.iou not found: No such name" >"$tmp/want.err"
expect "argument order" 1
ok "${#args[@]} arguments, forward and reverse, answered in argument order"

# ---- standard input ------------------------------------------------------------
printf '  a-only.test.iou \n\n\t\nboth.test.iou\r\n198.51.100.1\nnx.test.iou\naaaa-only.test.iou' \
	>"$tmp/in"
for w in 64 1; do
	rc=0
	"${wrap[@]}" "$bin" --server "$server" --timeout "$limit" -4 --workers "$w" \
		<"$tmp/in" >"$tmp/out" 2>"$tmp/err" || rc=$?
	printf '%s\n' "a-only.test.iou has address 192.0.2.1" \
		"both.test.iou has address 192.0.2.2" \
		"198.51.100.1 domain name pointer ptr4.test.iou." >"$tmp/want"
	printf '%s\n' "Host nx.test.iou not found: No such name" \
		"Host aaaa-only.test.iou not found: No data of the requested type" >"$tmp/want.err"
	expect "stdin, --workers $w" 1
done
ok "stdin: blank lines skipped, spaces and CR stripped, last line without newline, --workers 64 and 1"

# $big names, the 1000 names in a scrambled order over and over.
awk -v n="$big" 'BEGIN { for (i = 0; i < n; i++) printf "n%d.test.iou\n", (i * 7919) % 1000 }' \
	>"$tmp/big.in"
awk -v n="$big" 'BEGIN { for (i = 0; i < n; i++) { k = (i * 7919) % 1000
	printf "n%d.test.iou has address 10.7.%d.%d\n", k, int(k / 256), k % 256 } }' >"$tmp/big.want"
head -n 1000 "$tmp/big.in" >"$tmp/small.in"
timer=()
if [[ -x /usr/bin/time ]] && ! $valgrind && ! $sanitizer; then
	timer=(/usr/bin/time -f %M -o "$tmp/rss")
fi
rc=0
t0=$(now_ms)
"${timer[@]}" "${wrap[@]}" "$bin" --server "$server" --timeout "$limit" -4 \
	<"$tmp/big.in" >"$tmp/out" 2>"$tmp/err" || rc=$?
t1=$(now_ms)
((rc == 0)) || fail "$big names on stdin: exit status $rc: $(head -n 3 "$tmp/err")"
[[ ! -s $tmp/err ]] || fail "$big names on stdin: $(head -n 3 "$tmp/err")"
cmp -s "$tmp/big.want" "$tmp/out" ||
	fail "$big names on stdin: $(wc -l <"$tmp/out") lines, not the expected $big in order"
ok "$big names on stdin: $big lines in input order in $((t1 - t0)) ms"

if ((${#timer[@]})); then
	rss_big=$(tail -n 1 "$tmp/rss")
	"${timer[@]}" "$bin" --server "$server" --timeout "$limit" -4 <"$tmp/small.in" \
		>/dev/null 2>"$tmp/err" || fail "1000 names on stdin: $(cat "$tmp/err")"
	rss_small=$(tail -n 1 "$tmp/rss")
	# Holding 100,000 names would take megabytes; a window of 64 does not.
	((rss_big - rss_small < 2048)) ||
		fail "peak RSS $rss_big KB for $big names, $rss_small KB for 1000"
	ok "peak RSS $rss_big KB for $big names, $rss_small KB for 1000: bounded"
else
	echo "# skipping the RSS check (/usr/bin/time missing, or valgrind/sanitizers)"
fi

# ---- streaming, and signals ------------------------------------------------------
# wait_for FILE PATTERN SECONDS: until a line of FILE matches.
wait_for() {
	local deadline=$((SECONDS + $3))
	until grep -q "$2" "$1" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}

# A script's background job starts with SIGINT ignored; env gives it back.
intr=()
if env --default-signal=INT true 2>/dev/null; then
	intr=(env --default-signal=INT)
fi
for sig in TERM INT; do
	if [[ $sig == INT && ${#intr[@]} -eq 0 ]]; then
		echo "# skipping SIGINT: env has no --default-signal"
		continue
	fi
	mkfifo "$tmp/fifo"
	"${intr[@]}" "${wrap[@]}" "$bin" --server "$server" --timeout "$limit" <"$tmp/fifo" \
		>"$tmp/$sig.out" 2>"$tmp/$sig.err" &
	pid=$!
	pids+=("$pid")
	exec 5>"$tmp/fifo"
	echo a-only.test.iou >&5
	wait_for "$tmp/$sig.out" '^a-only.test.iou has address 192.0.2.1$' $((5 * scale)) ||
		fail "stdin held open: no answer to the first line yet"
	echo aaaa-only.test.iou >&5
	wait_for "$tmp/$sig.out" '^aaaa-only.test.iou has IPv6' $((5 * scale)) ||
		fail "stdin held open: no answer to the second line yet"
	t0=$(now_ms)
	kill -"$sig" "$pid"
	rc=0
	wait "$pid" || rc=$?
	t1=$(now_ms)
	exec 5>&-
	rm -f "$tmp/fifo"
	want=$((128 + $(kill -l "$sig")))
	((rc == want)) || fail "SIG$sig: exit status $rc, not $want"
	((t1 - t0 < 2000 * scale)) || fail "SIG$sig: took $((t1 - t0)) ms to stop"
	[[ ! -s $tmp/$sig.err ]] || fail "SIG$sig: stderr: $(cat "$tmp/$sig.err")"
	ok "answers stream while stdin stays open; SIG$sig stops it in $((t1 - t0)) ms, status $rc"
done

# ---- servers that do not answer ------------------------------------------------
# A port where nothing listens: refused at once, or timed out; never a hang.
for try in $(seq 1 20); do
	dead=$((20000 + (RANDOM * 32768 + RANDOM + try) % 40000))
	in_use "$dead" || break
done
rc=0
t0=$(now_ms)
"${wrap[@]}" "$bin" --server "127.0.0.1:$dead" --timeout 1 a-only.test.iou >"$tmp/out" \
	2>"$tmp/err" || rc=$?
t1=$(now_ms)
((rc == 1)) || fail "dead port: exit status $rc"
grep -q '^Host a-only.test.iou not found: ' "$tmp/err" || fail "dead port: $(cat "$tmp/err")"
((t1 - t0 < 3000 * scale)) || fail "dead port: took $((t1 - t0)) ms"
ok "a port where nothing listens: '$(cat "$tmp/err")' after $((t1 - t0)) ms"

# A server that swallows every query: only --timeout ends the lookup.
if command -v socat >/dev/null; then
	for try in $(seq 1 20); do
		sink=$((20000 + (RANDOM * 32768 + RANDOM + try) % 40000))
		in_use "$sink" || break
	done
	socat -u "UDP4-RECV:$sink,bind=127.0.0.1" /dev/null 2>/dev/null &
	spid=$!
	pids+=("$spid")
	deadline=$((SECONDS + 10))
	until udp_bound "$sink"; do
		((SECONDS < deadline)) || fail "socat did not bind UDP port $sink"
		sleep 0.05
	done
	rc=0
	t0=$(now_ms)
	"${wrap[@]}" "$bin" --server "127.0.0.1:$sink" --timeout 1 sink.test.iou >"$tmp/out" \
		2>"$tmp/err" || rc=$?
	t1=$(now_ms)
	((rc == 1)) || fail "silent server: exit status $rc"
	[[ $(cat "$tmp/err") == "Host sink.test.iou not found: No DNS server answered in time" ]] ||
		fail "silent server: $(cat "$tmp/err")"
	((t1 - t0 >= 900)) || fail "silent server: gave up after $((t1 - t0)) ms, before --timeout 1"
	((t1 - t0 < 1000 + 2000 * scale)) || fail "silent server: took $((t1 - t0)) ms"
	ok "a server that never answers, --timeout 1: '$(cat "$tmp/err")' after $((t1 - t0)) ms"

	# SIGTERM while the lookups wait: no waiting for c-ares to give up.
	"${wrap[@]}" "$bin" --server "127.0.0.1:$sink" --timeout 60 sink.test.iou 192.0.2.1 \
		>"$tmp/out" 2>"$tmp/err" &
	pid=$!
	pids+=("$pid")
	sleep $((1 * scale))
	kill -0 "$pid" 2>/dev/null || fail "silent server, --timeout 60: ended early: $(cat "$tmp/err")"
	t0=$(now_ms)
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	t1=$(now_ms)
	kill "$spid" 2>/dev/null || true
	((rc == 143)) || fail "SIGTERM during lookups: exit status $rc"
	((t1 - t0 < 1000 * scale)) || fail "SIGTERM during lookups: took $((t1 - t0)) ms to stop"
	[[ ! -s $tmp/out && ! -s $tmp/err ]] || fail "SIGTERM during lookups: $(cat "$tmp/out" "$tmp/err")"
	ok "SIGTERM while lookups wait for a silent server: status 143 after $((t1 - t0)) ms"
else
	echo "# skipping the silent server: socat is not installed"
fi

# ---- IPv6 server, several servers ---------------------------------------------------
if $have6; then
	rc=0
	"${wrap[@]}" "$bin" --server "[::1]:$port" --timeout "$limit" a-only.test.iou \
		>"$tmp/out" 2>"$tmp/err" || rc=$?
	echo "a-only.test.iou has address 192.0.2.1" >"$tmp/want"
	expect "server [::1]:$port" 0
	ok "--server [::1]:$port"
else
	echo "# skipping the IPv6 server: no ::1"
fi
# The first server is dead: the second one answers.
rc=0
"${wrap[@]}" "$bin" --server "127.0.0.1:$dead,$server" --timeout "$limit" a-only.test.iou \
	>"$tmp/out" 2>"$tmp/err" || rc=$?
echo "a-only.test.iou has address 192.0.2.1" >"$tmp/want"
expect "two servers" 0
ok "--server DEAD,LIVE: the live one answers"

# ---- output errors -----------------------------------------------------------------
if [[ -w /dev/full ]]; then
	rc=0
	"${wrap[@]}" "$bin" --server "$server" --timeout "$limit" a-only.test.iou \
		>/dev/full 2>"$tmp/err" || rc=$?
	((rc == 1)) || fail "stdout on /dev/full: exit status $rc"
	grep -q '^iou_dns: write error: ' "$tmp/err" || fail "/dev/full: $(cat "$tmp/err")"
	ok "stdout on /dev/full: exit 1, '$(cat "$tmp/err")'"
fi
rc=0
"${wrap[@]}" "$bin" --server "$server" --timeout "$limit" a-only.test.iou >&- 2>"$tmp/err" || rc=$?
((rc == 1)) || fail "closed stdout: exit status $rc"
grep -q '^iou_dns: write error: Bad file descriptor$' "$tmp/err" || fail "closed stdout: $(cat "$tmp/err")"
ok "closed stdout: exit 1, '$(cat "$tmp/err")'"
rc=0
"${wrap[@]}" "$bin" --server "$server" --timeout "$limit" <&- >"$tmp/out" 2>"$tmp/err" || rc=$?
((rc == 1)) || fail "closed stdin: exit status $rc"
grep -q '^iou_dns: standard input: Bad file descriptor$' "$tmp/err" || fail "closed stdin: $(cat "$tmp/err")"
ok "closed stdin: exit 1, '$(cat "$tmp/err")'"

kill "$dpid"
wait "$dpid" 2>/dev/null || true
echo "# $checks checks passed"
