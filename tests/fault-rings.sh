#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Ring creation refused: every example is run with io_uring_setup failing
# (a seccomp filter installed by tests/fault-lib --errno, which the example
# inherits), once with EPERM (as in a container that forbids io_uring) and
# once with ENOMEM.  Each must print exactly one line on stderr, naming the
# program, the step and the reason, write nothing on stdout (the tour
# excepted: it prints its first heading before it makes a reactor), and
# exit 1; no example gets as far as touching the network.
set -euo pipefail

# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/fault-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/fault-common.sh"
need "$fault_lib"

ex="$build/examples"
printf 'some bytes\n' >"$tmp/input"
# name|command...: what each example is asked to do.
runs=(
	"iou_cat|$ex/iou_cat $tmp/input"
	"iou_timers|$ex/iou_timers --count 1 0.1"
	"iou_dns|$ex/iou_dns localhost"
	"iou_tls|$ex/iou_tls --cafile $certs/ca.pem localhost:9"
	"iou_tlsd|$ex/iou_tlsd --cert $certs/server-ec.pem --key $certs/server-ec.key -a 127.0.0.1 -p 0"
	"iou_port7|$ex/iou_port7 -a 127.0.0.1 -p 0"
	"tour|$ex/tour"
)
declare -A reason=([EPERM]='Operation not permitted' [ENOMEM]='Cannot allocate memory')
tried=0
for run in "${runs[@]}"; do
	name=${run%%|*}
	read -ra cmd <<<"${run#*|}"
	if [[ ! -x ${cmd[0]} ]]; then
		echo "# $name is not built here"
		continue
	fi
	for e in EPERM ENOMEM; do
		rc=0
		"$fault_lib" --errno "$e" -- "${wrap[@]}" "${cmd[@]}" </dev/null >"$tmp/out" \
			2>"$tmp/err" || rc=$?
		if ((rc == 77)); then
			echo "# no seccomp filter here: $(cat "$tmp/err")"
			exit 77
		fi
		((rc == 1)) || fail "$name, io_uring_setup refused with $e: exit $rc: $(cat "$tmp/err")"
		one=$(wc -l <"$tmp/err")
		((one == 1)) || fail "$name, $e: $one lines on stderr: $(cat "$tmp/err")"
		grep -q "^$name: .*${reason[$e]}" "$tmp/err" ||
			fail "$name, $e: the line does not name the program and reason: $(cat "$tmp/err")"
		# (The tour prints its first heading before it makes a reactor.)
		[[ ! -s $tmp/out || $name == tour ]] ||
			fail "$name, $e: wrote to stdout: $(head -c 200 "$tmp/out")"
		ok "$name, io_uring_setup refused with $e: exit 1, $(cat "$tmp/err")"
		tried=$((tried + 1))
	done
done
((tried > 0)) || fail "no example was built"
summary
