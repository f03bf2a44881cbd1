# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034,SC2154 # shares variables with lib.sh and its users
#
# Sourced by the fault tests (tests/fault-iou_port7.sh, fault-iou_tlsd.sh,
# fault-rings.sh) after tests/lib.sh: the build tree and the programs, the
# wrapper and the build's instrumentation, how to scale loads (count) and
# waits ($scale) for it, starting and stopping a server by pid, and reading
# a server's descriptors and resident memory from /proc.

# CTest runs the scripts in <build>/examples or <build>/tests, which
# locates the build tree when IOU_BUILD_DIR is not passed.
build=${IOU_BUILD_DIR:-$(cd .. && pwd)}
src=${IOU_TEST_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
port7="$build/examples/iou_port7"
tlsd="$build/examples/iou_tlsd"
churn="$build/tests/churn-client"
echo_client="$build/tests/echo-client"
fault_lib="$build/tests/fault-lib"
certs="$src/tests/fixtures/tls"

read -ra wrap <<<"${IOU_TEST_WRAPPER:-}"
valgrind=false
tsan=false
asan=false
scale=1
load_div=1
if [[ ${IOU_TEST_WRAPPER:-} == *valgrind* ]]; then
	valgrind=true
	scale=10
	load_div=50
elif [[ ${IOU_SANITIZE:-} == *thread* ]]; then
	tsan=true
	scale=5
	load_div=10
elif [[ ${IOU_SANITIZE:-} == *address* ]]; then
	asan=true
	scale=3
fi
# The server's memory is its own only without instrumentation.
native=true
if $valgrind || $tsan || $asan; then
	native=false
fi

# need PROGRAM...: each must have been built, or the test cannot run.
need() {
	local b
	for b in "$@"; do
		[[ -x $b ]] || {
			echo "$b not found: set IOU_BUILD_DIR to the build tree" >&2
			exit 1
		}
	done
}

# count N: the load N for this build: N natively and under ASan, a tenth
# under TSan, a fiftieth under valgrind (which runs the server ~50x slower).
count() {
	local n=$(($1 / load_div))
	((n > 0)) || n=1
	echo "$n"
}

# rss PID: resident memory in KiB.
rss() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# await_fds PID N: until PID holds N descriptors (10 s, scaled); 1 if not.
await_fds() {
	local deadline=$((SECONDS + 10 * scale))
	while (($(nfds "$1") != $2)); do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}

# start_server NAME KIND [prefix command...] -- [server args...]: start
# iou_port7 (KIND port7) or iou_tlsd (KIND tlsd) on 127.0.0.1 and a port of
# its choosing, under the wrapper, in the background; wait for its ready
# line; set $pid and $port.  Its stdout is $tmp/NAME.out, stderr
# $tmp/NAME.log.
start_server() {
	local name=$1 kind=$2 deadline bin
	shift 2
	local pre=()
	while [[ $1 != -- ]]; do
		pre+=("$1")
		shift
	done
	shift
	bin=$port7
	[[ $kind == tlsd ]] && bin=$tlsd
	"${pre[@]}" "${wrap[@]}" "$bin" -a 127.0.0.1 -p 0 "$@" >"$tmp/$name.out" \
		2>"$tmp/$name.log" &
	pid=$!
	pids+=("$pid")
	deadline=$((SECONDS + 15 * scale))
	until grep -q 'listening' "$tmp/$name.out" 2>/dev/null; do
		kill -0 "$pid" 2>/dev/null || fail "$name: exited before it was ready: $(cat "$tmp/$name.log")"
		((SECONDS < deadline)) || fail "$name: no ready line"
		sleep 0.05
	done
	port=$(sed -n 's/^iou_[a-z0-9]*: listening on .* port \([0-9][0-9]*\) (.*)$/\1/p' \
		"$tmp/$name.out")
	[[ -n $port ]] || fail "$name: unexpected ready line: $(cat "$tmp/$name.out")"
}

# baseline_fds KIND: set $baseline to the server's descriptors at rest,
# once its accept loop runs (it keeps a spare descriptor, opened when it
# starts): one probe cycle first, then the count must hold still for half a
# second.
baseline_fds() {
	local tls_args=()
	[[ $1 == tlsd ]] && tls_args=(--tls --cafile "$certs/ca.pem")
	"$churn" -p "$port" "${tls_args[@]}" -n 1 -c 1 --timeout $((30 * scale)) \
		>"$tmp/probe.cout" 2>&1 || fail "probe: $(cat "$tmp/probe.cout")"
	baseline=$(settled_fds "$pid")
}

# stop_server NAME: SIGTERM must end the server within 5 s (scaled), status 0.
stop_server() {
	local deadline=$((SECONDS + 5 * scale)) rc=0
	kill -TERM "$pid"
	while kill -0 "$pid" 2>/dev/null; do
		((SECONDS < deadline)) || fail "$1: still running 5 s (x$scale) after SIGTERM"
		sleep 0.05
	done
	wait "$pid" || rc=$?
	((rc == 0)) || fail "$1: exit status $rc after SIGTERM: $(tail -n 5 "$tmp/$1.log")"
	ok "$1: SIGTERM stops it with status 0"
}

# alive NAME: the server is still running.
alive() {
	kill -0 "$pid" 2>/dev/null || fail "$1: the server died: $(tail -n 5 "$tmp/$1.log")"
}

# run_bg NAME COMMAND...: COMMAND in the background, stdout $tmp/NAME.cout,
# stderr $tmp/NAME.err; its pid is $bg.
run_bg() {
	local name=$1
	shift
	"$@" >"$tmp/$name.cout" 2>"$tmp/$name.err" &
	bg=$!
	pids+=("$bg")
}

# finish NAME PID: wait for background PID, which must exit 0.
finish() {
	local rc=0
	wait "$2" || rc=$?
	((rc == 0)) || fail "$1: exit $rc: $(cat "$tmp/$1.cout" "$tmp/$1.err" 2>/dev/null | head -n 12)"
}

# await_line NAME PID PATTERN: until $tmp/NAME.cout has PATTERN (the
# background client PID must not end before).
await_line() {
	local deadline=$((SECONDS + 60 * scale))
	until grep -qE -- "$3" "$tmp/$1.cout" 2>/dev/null; do
		kill -0 "$2" 2>/dev/null || {
			finish "$1" "$2"
			fail "$1: ended without '$3'"
		}
		((SECONDS < deadline)) || fail "$1: no '$3' in 60 s (x$scale)"
		sleep 0.05
	done
}

# checker NAME CMD...: CMD runs back to back until $tmp/NAME.stop appears
# (stop_checker NAME); each run must pass.  Its pid is $checker;
# $tmp/NAME.runs counts the runs.
checker() {
	local name=$1
	shift
	rm -f "$tmp/$name.stop"
	(
		n=0
		until [[ -e $tmp/$name.stop ]]; do
			"$@" >"$tmp/$name.last" 2>&1 || {
				cat "$tmp/$name.last"
				exit 1
			}
			n=$((n + 1))
			echo "$n" >"$tmp/$name.runs"
		done
	) >"$tmp/$name.cout" 2>"$tmp/$name.err" &
	checker=$!
	pids+=("$checker")
}
stop_checker() {
	touch "$tmp/$1.stop"
	finish "$1" "$checker"
}

# after_churn BASELINE RSS_WARM CYCLES: the server $pid is back to BASELINE
# descriptors and, natively, its resident memory within 2 MiB of RSS_WARM
# (KiB, after a warm-up that reached the peaks the churn never exceeds:
# pooled stacks, ring buffers and allocator caches are sized by those).
after_churn() {
	local rss_after
	await_fds "$pid" "$1" || fail "after the churn: $(nfds "$pid") descriptors, $1 before"
	rss_after=$(rss "$pid")
	if $native; then
		((rss_after <= $2 + 2048)) ||
			fail "RSS grew from $2 to $rss_after KiB over $3 cycles (bound: +2048)"
		ok "descriptors back to $1; RSS $rss_after KiB after $3 cycles, $2 after the warm-up (bound +2048)"
	else
		ok "descriptors back to $1; RSS $rss_after KiB ($2 after the warm-up; not bounded under instrumentation)"
	fi
}

# refusals NAME WHAT PATTERN CMD...: CMD, a client holding more connections
# than the server can take, must pass (its output in $tmp/NAME.cout); then
# the server's log, $tmp/NAME.log, must show a refusal matching PATTERN.
refusals() {
	local name=$1 what=$2 pattern=$3
	shift 3
	"$@" >"$tmp/$name.cout" 2>"$tmp/$name.err" ||
		fail "$what: $(cat "$tmp/$name.cout" "$tmp/$name.err")"
	ok "$what: $(tail -n 1 "$tmp/$name.cout")"
	wait_grep "$pattern" "$tmp/$name.log" || fail "no refusal logged: $(cat "$tmp/$name.log")"
	ok "logged: $(head -n 1 "$tmp/$name.log")"
}

# One summary line of each script: what the run cost.
started_ms=$(now_ms)
summary() {
	echo "# $checks checks passed in $((($(now_ms) - started_ms) / 1000)) s"
}
