#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Tests examples/iou_timers as a user runs it: the shape of its output with
# --count (a header, then one line per firing in the timer's column, the
# timestamps of each column increasing, never earlier than the periods
# allow), usage errors (exit 2 with one line on stderr), a runtime error
# (exit 1 with one line), and a clean stop on SIGTERM and SIGINT without
# --count (exit 0).  The program runs under $IOU_TEST_WRAPPER (e.g.
# valgrind) when that is set; waits are scaled for it.
set -euo pipefail

# CTest runs the script in <build>/examples, which locates the build tree
# when IOU_BUILD_DIR is not passed.
build=${IOU_BUILD_DIR:-$(cd .. && pwd)}
bin="$build/examples/iou_timers"
[[ -x $bin ]] || {
	echo "iou_timers not found at $bin: set IOU_BUILD_DIR to the build tree" >&2
	exit 1
}
read -ra wrap <<<"${IOU_TEST_WRAPPER:-}"
scale=1
if [[ ${IOU_TEST_WRAPPER:-} == *valgrind* ]]; then
	scale=10
elif [[ -n ${IOU_SANITIZE:-} ]]; then
	scale=3
fi

# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

fail() {
	echo "not ok - $*"
	for f in "$tmp"/*; do
		[[ -s $f ]] && { echo "--- $f"; head -n 40 "$f"; }
	done
	exit 1
}

# Wait until $1 has at least $2 lines, for at most $3 seconds.  The file may
# not exist yet: a background job's redirection happens in the forked child.
wait_lines() {
	local deadline=$((SECONDS + $3)) n
	for (( ; ; )); do
		n=$(wc -l <"$1" 2>/dev/null) || n=0
		((n >= $2)) && return 0
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}

# ---- output shape -----------------------------------------------------------
start=$(date +%s%N)
"${wrap[@]}" "$bin" --count 3 0.05 0.12 >"$tmp/count.out" 2>"$tmp/count.err" ||
	fail "--count 3 0.05 0.12 exited with status $?"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
[[ ! -s $tmp/count.err ]] || fail "--count run wrote to stderr"
ok "--count 3 0.05 0.12 exits 0 with nothing on stderr"

header=$(head -n 1 "$tmp/count.out")
[[ $header =~ ^\ +every\ 0\.05s\ +every\ 0\.12s$ ]] || fail "header is '$header'"
ok "header names both periods"

# Every other line: a timestamp ending at column 16 * (timer + 1), maybe
# followed by " xN" when a late read covered N expirations.
awk -v W=16 '
NR == 1 { next }
{
	line = $0; n = 1
	if (match(line, / x[0-9]+$/)) { n = substr(line, RSTART + 2) + 0; line = substr(line, 1, RSTART - 1) }
	if (line !~ /^ *[0-9]+\.[0-9][0-9][0-9][0-9][0-9][0-9]$/) { print "bad line: " $0; bad = 1; exit }
	if (length(line) % W != 0) { print "not in a column: " $0; bad = 1; exit }
	col = length(line) / W - 1
	if (substr(line, 1, col * W) ~ /[^ ]/) { print "not indented: " $0; bad = 1; exit }
	t = $1 + 0
	if (col in last && t <= last[col]) { print "time goes back in column " col ": " $0; bad = 1; exit }
	if (!(col in fired)) ncols++
	last[col] = t; fired[col] += n; lines++
	if (n > 1) overruns++
}
END {
	if (bad) exit 1
	if (fired[0] != 3 || fired[1] != 3 || ncols != 2) {
		printf "firings per column: %d and %d\n", fired[0], fired[1]; exit 1
	}
	if (!overruns && lines != 6) { print lines " firing lines"; exit 1 }
}' "$tmp/count.out" >"$tmp/shape.err" || fail "output shape: $(cat "$tmp/shape.err")"
ok "$(($(wc -l <"$tmp/count.out") - 1)) firing lines, 3 per column, right-aligned in their columns, increasing"

# Three periods of 0.12 s must have passed before the last firing.
((elapsed_ms >= 360)) || fail "done after $elapsed_ms ms, before 3 x 0.12 s"
ok "ran for $elapsed_ms ms, not less than 3 periods of the slower timer"

# ---- usage and runtime errors ---------------------------------------------------
usage_case() {
	local rc=0
	"${wrap[@]}" "$bin" "$@" >"$tmp/usage.out" 2>"$tmp/usage.err" || rc=$?
	((rc == 2)) || fail "'$*' exited with $rc, not 2"
	[[ ! -s $tmp/usage.out ]] || fail "'$*' wrote to stdout"
	(($(wc -l <"$tmp/usage.err") == 1)) || fail "'$*' did not write one line: $(cat "$tmp/usage.err")"
	ok "usage error '${*:-(no arguments)}' exits 2: $(cat "$tmp/usage.err")"
}
usage_case
usage_case 0
usage_case -1
usage_case -0.5
usage_case abc
usage_case 0.5s
usage_case nan
usage_case inf
usage_case 1e300
usage_case 0.1 --count 0
usage_case --count -3 0.1
usage_case --count x 0.1
usage_case --bogus 0.1

"${wrap[@]}" "$bin" --help >"$tmp/help.out" 2>&1 || fail "--help exited with $?"
grep -q '^usage: iou_timers' "$tmp/help.out" || fail "--help shows no usage line"
ok "--help exits 0 and shows the usage"

rc=0
"${wrap[@]}" "$bin" --count 1 0.01 >/dev/full 2>"$tmp/full.err" || rc=$?
((rc == 1)) || fail "with stdout on /dev/full: exit $rc, not 1"
(($(wc -l <"$tmp/full.err") == 1)) || fail "with stdout on /dev/full: $(cat "$tmp/full.err")"
ok "runtime error (stdout on /dev/full) exits 1: $(cat "$tmp/full.err")"

# ---- clean stop on a signal -------------------------------------------------
stop_case() {
	local sig=$1 rc=0 pid t0
	shift
	"$@" "${wrap[@]}" "$bin" 0.05 0.2 >"$tmp/$sig.out" 2>"$tmp/$sig.err" &
	pid=$!
	pids+=("$pid")
	# The header and a few firings: the signal mask is surely in place.
	wait_lines "$tmp/$sig.out" 4 $((10 * scale)) || fail "no firings before SIG$sig"
	t0=$SECONDS
	kill -"$sig" "$pid"
	wait "$pid" || rc=$?
	((rc == 0)) || fail "SIG$sig: exit status $rc"
	((SECONDS - t0 <= 2 * scale)) || fail "SIG$sig: took $((SECONDS - t0)) s to stop"
	[[ ! -s $tmp/$sig.err ]] || fail "SIG$sig: stderr: $(cat "$tmp/$sig.err")"
	ok "runs until SIG$sig, then exits 0 ($(($(wc -l <"$tmp/$sig.out") - 1)) firings)"
}
stop_case TERM
# A background job of a script starts with SIGINT ignored; give it back.
if env --default-signal=INT true 2>/dev/null; then
	stop_case INT env --default-signal=INT
else
	echo "# skipping SIGINT: env has no --default-signal"
fi

echo "# $checks checks passed"
