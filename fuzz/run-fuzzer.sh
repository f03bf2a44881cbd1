#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Fuzz one libFuzzer harness for a while, starting from its committed
# corpus and crash inputs, which stay untouched: new inputs go to a scratch
# copy that is removed at the end.  Run by CTest as fuzz-<harness> (the
# short run of the fuzz preset); by hand for the long run (fuzz/README.md).
# Fails on any crash, sanitizer report, leak or timeout; its input is then
# left in ARTIFACTS (and named in libFuzzer's report) to be committed under
# fuzz/regress/<harness>/ with the fix.
#
#   run-fuzzer.sh FUZZER CORPUS REGRESS SECONDS ARTIFACTS [libFuzzer flag...]
#
#   IOU_FUZZ_KEEP=DIR   keep the grown corpus in DIR instead of deleting it
set -uo pipefail

if (($# < 5)); then
	echo "usage: $0 FUZZER CORPUS REGRESS SECONDS ARTIFACTS [libFuzzer flag...]" >&2
	exit 2
fi
fuzzer=$1 corpus=$2 regress=$3 seconds=$4 artifacts=$5
shift 5

work=$(mktemp -d "${TMPDIR:-/tmp}/iou-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts" "$work/corpus" || exit 1
cp "$corpus"/* "$work/corpus/" 2>/dev/null
seeds=$(find "$work/corpus" -type f | wc -l)

# -close_fd_mask=3: the code under test prints usage errors and the like by
# the thousand; libFuzzer's own report and the sanitizers' still come out.
# -timeout: per input; every harness bounds its inputs well below it (10 s
# deadlines), so reaching it is a hang.
"$fuzzer" \
	-max_total_time="$seconds" \
	-timeout=30 \
	-rss_limit_mb=2048 \
	-close_fd_mask=3 \
	-print_final_stats=1 \
	-error_exitcode=1 \
	-timeout_exitcode=1 \
	-artifact_prefix="$artifacts/" \
	"$@" "$work/corpus" "$regress"
rc=$?

now=$(find "$work/corpus" -type f | wc -l)
echo "run-fuzzer: $(basename "$fuzzer"): ${seconds}s, corpus $seeds -> $now inputs, exit $rc"
if [[ -n ${IOU_FUZZ_KEEP:-} ]]; then
	mkdir -p "$IOU_FUZZ_KEEP" && cp "$work/corpus"/* "$IOU_FUZZ_KEEP/" 2>/dev/null
	echo "run-fuzzer: corpus kept in $IOU_FUZZ_KEEP"
fi
exit "$rc"
