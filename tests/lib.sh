# SPDX-License-Identifier: MIT
#
# Sourced by the example tests: a scratch directory and the background
# processes listed in $pids are cleaned up at exit (killed by process id),
# and ok() prints one numbered TAP-style line per passed check.

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
