#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The whole test suite: installs dependencies (scripts/setup.sh), then runs
# each pass -- a CMake preset configured with -Werror, built, and its CTest
# suite run, possibly with environment variables set -- carrying on past
# failures.  Ends with one line per pass and, last, the totals "N passed,
# N failed" (test counts from CTest; a pass that fails to configure or build
# counts as one failure).  Exits non-zero if anything failed.
#
# The passes, in order:
#   default            RelWithDebInfo build, every test
#   asan               ASan+UBSan build, every test
#   valgrind           every test under valgrind memcheck
#   tsan               ThreadSanitizer build, every test
#   no-defer-taskrun   the default build's tests again with IOU_RING_FLAGS=none:
#                      rings without SINGLE_ISSUER/DEFER_TASKRUN/COOP_TASKRUN
#   no-multishot       the default build's tests again with IOU_MULTISHOT=0:
#                      the single-shot fallbacks of multishot accept/receive
#   asan-fallbacks     the asan build's tests with both of those switches
#   fuzz               clang libFuzzer harnesses, IOU_FUZZ_SECONDS (60) each
#
#   IOU_PASSES="default asan ..."   passes to run (default: all of the above)
#   IOU_PRESETS=...                 the same (older name)
#   IOU_JOBS=2                      build and test parallelism
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

bash scripts/setup.sh || exit 1

# name -> "preset [VAR=value ...] [ctest option ...]"
declare -A pass_def=(
	[default]="default"
	[asan]="asan"
	[valgrind]="valgrind"
	[tsan]="tsan"
	[no-defer-taskrun]="default IOU_RING_FLAGS=none -LE ^(install|docs)$"
	[no-multishot]="default IOU_MULTISHOT=0 -LE ^(install|docs)$"
	[asan-fallbacks]="asan IOU_RING_FLAGS=none IOU_MULTISHOT=0 -LE ^(install|docs)$"
	[fuzz]="fuzz"
)
all_passes="default asan valgrind tsan no-defer-taskrun no-multishot asan-fallbacks fuzz"
read -ra passes <<<"${IOU_PASSES:-${IOU_PRESETS:-$all_passes}}"
jobs=${IOU_JOBS:-2}
export CTEST_PARALLEL_LEVEL=$jobs

logdir=$(mktemp -d "${TMPDIR:-/tmp}/iou-test.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

total_passed=0
total_failed=0
status=0
summary=()

declare -A built=()
for name in "${passes[@]}"; do
	if [[ -z ${pass_def[$name]+set} ]]; then
		summary+=("$name: no such pass (one of: $all_passes)")
		total_failed=$((total_failed + 1))
		status=1
		continue
	fi
	read -ra def <<<"${pass_def[$name]}"
	p=${def[0]}
	env_set=()
	ctest_args=()
	for word in "${def[@]:1}"; do
		if [[ $word == -* || ${#ctest_args[@]} -gt 0 ]]; then
			ctest_args+=("$word")
		else
			env_set+=("$word")
		fi
	done
	echo
	echo "=== pass $name (preset $p${env_set[*]:+, ${env_set[*]}})"
	if [[ -n ${built[$p]+set} ]]; then
		: # configured and built by an earlier pass
	elif ! cmake --preset "$p" -DIOU_WERROR=ON; then
		summary+=("$name: configure FAILED")
		total_failed=$((total_failed + 1))
		status=1
		continue
	fi
	if [[ -z ${built[$p]+set} ]] && ! cmake --build --preset "$p" -j "$jobs"; then
		summary+=("$name: build FAILED")
		total_failed=$((total_failed + 1))
		status=1
		continue
	fi
	built[$p]=1
	log=$logdir/$name.log
	start=$SECONDS
	env "${env_set[@]}" ctest --preset "$p" -j "$jobs" "${ctest_args[@]}" 2>&1 | tee "$log"
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
	took="$(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s"
	if ((rc != 0 || failed != 0)); then
		status=1
		summary+=("$name: $passed passed, $failed failed (ctest exit $rc; $took)")
	else
		summary+=("$name: $passed passed, $failed failed ($took)")
	fi
done

echo
echo "=== summary"
for s in "${summary[@]}"; do
	echo "$s"
done
echo "$total_passed passed, $total_failed failed"
exit "$status"
