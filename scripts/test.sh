#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The whole test suite: installs dependencies (scripts/setup.sh), then for
# each CMake preset configures with -Werror, builds and runs CTest, carrying
# on past failures.  Ends with one line per preset and, last, the totals
# "N passed, N failed" (test counts from CTest; a preset that fails to
# configure or build counts as one failure).  Exits non-zero if anything
# failed.
#
#   IOU_PRESETS="default asan valgrind tsan"   presets to run (this is the default)
#   IOU_JOBS=2                            build and test parallelism
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

bash scripts/setup.sh || exit 1

read -ra presets <<<"${IOU_PRESETS:-default asan valgrind tsan}"
jobs=${IOU_JOBS:-2}
export CTEST_PARALLEL_LEVEL=$jobs

logdir=$(mktemp -d "${TMPDIR:-/tmp}/iou-test.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

total_passed=0
total_failed=0
status=0
summary=()

for p in "${presets[@]}"; do
	echo
	echo "=== preset $p"
	if ! cmake --preset "$p" -DIOU_WERROR=ON; then
		summary+=("$p: configure FAILED")
		total_failed=$((total_failed + 1))
		status=1
		continue
	fi
	if ! cmake --build --preset "$p" -j "$jobs"; then
		summary+=("$p: build FAILED")
		total_failed=$((total_failed + 1))
		status=1
		continue
	fi
	log=$logdir/$p.log
	ctest --preset "$p" -j "$jobs" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	# "100% tests passed, 0 tests failed out of 7"
	line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
	if [[ -n $line ]]; then
		failed=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")
		total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
	elif grep -q 'No tests were found' "$log"; then
		failed=0
		total=0
	else
		# CTest did not get as far as a summary: count the preset as one failure.
		failed=1
		total=1
	fi
	passed=$((total - failed))
	total_passed=$((total_passed + passed))
	total_failed=$((total_failed + failed))
	if ((rc != 0 || failed != 0)); then
		status=1
		summary+=("$p: $passed passed, $failed failed (ctest exit $rc)")
	else
		summary+=("$p: $passed passed, $failed failed")
	fi
done

echo
echo "=== summary"
for s in "${summary[@]}"; do
	echo "$s"
done
echo "$total_passed passed, $total_failed failed"
exit "$status"
