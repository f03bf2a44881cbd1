# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034,SC2154 # shares variables with lib.sh and its users
#
# Sourced by tests/example-iou_tls.sh and tests/example-iou_tlsd.sh after
# tests/lib.sh: the build tree, the wrapper, time scaling, free ports for
# peers that cannot pick their own (openssl s_server, socat), waiting for
# files and processes, and the test certificates (tests/fixtures/tls, made
# by its make-certs.sh).

# CTest runs the scripts in <build>/examples, which locates the build tree
# when IOU_BUILD_DIR is not passed.
build=${IOU_BUILD_DIR:-$(cd .. && pwd)}
src=${IOU_TEST_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
tls_client="$build/examples/iou_tls"
tls_server="$build/examples/iou_tlsd"
certs="$src/tests/fixtures/tls"
for b in "$tls_client" "$tls_server"; do
	[[ -x $b ]] || {
		echo "$b not found: set IOU_BUILD_DIR to the build tree" >&2
		exit 1
	}
done
[[ -r $certs/ca.pem && -r $certs/server-ec.pem ]] || {
	echo "no test certificates in $certs (tests/fixtures/tls/make-certs.sh makes them)" >&2
	exit 1
}
for tool in openssl socat; do
	command -v "$tool" >/dev/null || {
		echo "# $tool is not installed (scripts/setup.sh installs it)"
		exit 77
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

have6=false
if grep -qs '^0\{31\}1 ' /proc/net/if_inet6; then
	have6=true
fi

# in_use PORT: is TCP PORT bound by anything, IPv4 or IPv6?
in_use() {
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# listening PORT: does something listen on TCP PORT (any address)?
listening() {
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h && $4 == "0A" { f = 1 }
		END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# random_port: a port in 20000..59999 that nothing uses right now.  Another
# process may still take it before our peer binds it: callers retry.
random_port() {
	local p
	while :; do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		in_use "$p" || break
	done
	echo "$p"
}

# on_free_port NAME LAUNCHER: call LAUNCHER (a function that starts a
# background peer on $port, and sets $peer to its pid) with random free
# ports until the peer listens; a peer that exits before (it lost the port
# to someone else) is retried.  $tmp/NAME.peer.err is the peer's stderr.
on_free_port() {
	local name=$1 launcher=$2 try deadline
	for try in $(seq 1 20); do
		port=$(random_port)
		"$launcher"
		pids+=("$peer")
		deadline=$((SECONDS + 10 * scale))
		while ! listening "$port"; do
			kill -0 "$peer" 2>/dev/null || break
			((SECONDS < deadline)) || fail "$name: not listening on port $port"
			sleep 0.02
		done
		if kill -0 "$peer" 2>/dev/null; then
			return 0
		fi
		wait "$peer" 2>/dev/null || true
		grep -qiE 'in use|bind' "$tmp/$name.peer.err" 2>/dev/null ||
			fail "$name exited at start: $(head -c 300 "$tmp/$name.peer.err")"
	done
	fail "$name: no free port found"
}

# wait_size FILE BYTES [SECONDS]: until FILE holds BYTES bytes (or time is up).
wait_size() {
	local deadline=$((SECONDS + ${3:-30} * scale))
	while (($(stat -c %s "$1" 2>/dev/null || echo 0) < $2)); do
		((SECONDS < deadline)) || return 1
		sleep 0.02
	done
}

# wait_exit PID SECONDS: wait for background PID, at most SECONDS (scaled);
# sets $rc to its status, or fails the test if it is still running.
wait_exit() {
	local deadline=$((SECONDS + $2 * scale))
	while kill -0 "$1" 2>/dev/null; do
		((SECONDS < deadline)) || fail "process $1 still running after $2 s (x$scale)"
		sleep 0.02
	done
	rc=0
	wait "$1" || rc=$?
}

# one_line FILE: FILE holds exactly one line.
one_line() {
	[[ -s $1 ]] && (($(wc -l <"$1") == 1))
}

# The signal a test may send with kill -INT: background jobs of a script
# start with SIGINT ignored, which env can undo.
intr=()
if env --default-signal=INT true 2>/dev/null; then
	intr=(env --default-signal=INT)
fi
