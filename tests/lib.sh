# SPDX-License-Identifier: MIT
#
# Sourced by the example and fault tests: a scratch directory and the
# background processes listed in $pids are cleaned up at exit (killed by
# process id), ok() prints one numbered TAP-style line per passed check and
# fail() the "not ok" line; and small helpers they all use.

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iou-test.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

checks=0
ok() {
	checks=$((checks + 1))
	echo "ok $checks - $*"
}

# fail MESSAGE: the "not ok" line, the end of every log the test keeps in
# $tmp (clients' *.err and *.out, servers' *.log, *.diff), and exit 1.
fail() {
	echo "not ok - $*"
	for f in "$tmp"/*.err "$tmp"/*.out "$tmp"/*.log "$tmp"/*.diff; do
		[[ -s $f ]] && { echo "--- $f"; tail -n 20 "$f"; }
	done
	exit 1
}

# Milliseconds on the monotonic clock (bash's own clock is wall time).
now_ms() {
	local up
	read -r up _ </proc/uptime
	echo $((${up/./} * 10))
}

# nfds PID: how many descriptors PID holds.
nfds() {
	find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

# settled_fds PID: PID's descriptor count once it has held still for half a
# second (a server opens some just after its ready line: the accept loop
# keeps a spare descriptor, opened when it first runs).
settled_fds() {
	local n m
	n=$(nfds "$1")
	for _ in $(seq 100); do
		sleep 0.5
		m=$(nfds "$1")
		((m == n)) && break
		n=$m
	done
	echo "$n"
}

# wait_grep PATTERN FILE [SECONDS]: until FILE has a line matching PATTERN
# (SECONDS, default 10, times $scale); 1 if it never does.
wait_grep() {
	local deadline=$((SECONDS + ${3:-10} * ${scale:-1}))
	until grep -qE -- "$1" "$2" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.02
	done
}
