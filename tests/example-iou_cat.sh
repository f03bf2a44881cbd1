#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# example-iou_cat: checks examples/iou_cat against GNU cat byte for byte
# (cmp) on every kind of input and output its copy paths distinguish --
# regular files, "-" for stdin, pipes on either side, sockets on either
# side (a UNIX socket path served by socat, stdin from socat SYSTEM),
# /dev/zero bounded by -c, O_NONBLOCK descriptors, an O_APPEND output --
# and its failure modes: a missing file among others, a directory, the
# output as input, closed stdin/stdout, a reader that goes away (EPIPE),
# usage errors, and SIGTERM/SIGINT while copying.  One line per check;
# exits 1 if any failed.
#
# Environment (set by CTest): IOU_BUILD_DIR, the build tree;
# IOU_TEST_WRAPPER, a command to run iou_cat under (e.g. valgrind), in
# which case the 100 MB cases are skipped.

# Check snippets are single-quoted on purpose: same() evaluates them.
# shellcheck disable=SC2016
set -euo pipefail

# CTest runs the script in <build>/examples, which also locates the binary
# when IOU_BUILD_DIR is not passed.
if [[ -n ${IOU_BUILD_DIR:-} ]]; then
	bin=$IOU_BUILD_DIR/examples/iou_cat
else
	bin=$PWD/iou_cat
fi
if [[ ! -x $bin ]]; then
	echo "iou_cat not found at $bin: set IOU_BUILD_DIR to the build tree" >&2
	exit 1
fi
read -ra wrap <<<"${IOU_TEST_WRAPPER:-}"
for tool in cmp socat perl; do
	if ! command -v "$tool" >/dev/null; then
		echo "$tool is not installed (scripts/setup.sh installs it)" >&2
		exit 1
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iou-cat-test.XXXXXX")
peers=()
cleanup() {
	for pid in "${peers[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp"

# Results go to fd 3, the script's stdout, even from checks whose output
# is redirected.
exec 3>&1
failed=0
ok() { echo "ok   - $1" >&3; }
not_ok() {
	echo "FAIL - $1${2:+ ($2)}" >&3
	failed=$((failed + 1))
}

# A command that fails outside a check ends the script (set -e): say where.
set -E
trap 'echo "FAIL - line $LINENO: \"$BASH_COMMAND\" exited $? outside a check" >&3' ERR

# iou_cat under the wrapper, if any.
run() { "${wrap[@]}" "$bin" "$@"; }

# check NAME CMD...: one line saying whether CMD succeeded.
check() {
	local name=$1
	shift
	if "$@"; then ok "$name"; else not_ok "$name"; fi
}

# expect_rc NAME WANT CMD...: run CMD (stderr kept in $tmp/err), check its status.
expect_rc() {
	local name=$1 want=$2 rc=0
	shift 2
	"$@" 2>"$tmp/err" || rc=$?
	if [[ $rc == "$want" ]]; then
		ok "$name"
	else
		not_ok "$name" "exit $rc, want $want: $(head -c 300 "$tmp/err")"
	fi
}

# same NAME WANT SNIPPET: SNIPPET (shell code, stdout to $tmp/out, stderr
# to $tmp/err) must succeed and its output must equal file WANT.
same() {
	local name=$1 want=$2 rc=0
	eval "$3" >"$tmp/out" 2>"$tmp/err" || rc=$?
	if ((rc != 0)); then
		not_ok "$name" "exit $rc: $(head -c 300 "$tmp/err")"
	elif ! cmp "$tmp/out" "$want" >"$tmp/cmp" 2>&1; then
		not_ok "$name" "$(cat "$tmp/cmp")"
	else
		ok "$name"
	fi
}

# Inputs: text, binary with every byte value, random data, an empty file.
printf 'first line\nsecond line\n' >a
perl -e 'print map { chr } 0 .. 255 for 1 .. 64' >bin
head -c 300000 /dev/urandom >b
: >empty
cat a bin b empty a >want
cat a b bin >want2
cat a b a >aba
cat a b >ab
head -c 1000000 /dev/zero >zeros

same "several files to a file" want 'run a bin b empty a'
same "several files to a pipe" want 'run a bin b empty a | cat'
same "'-' in the middle reading a pipe" want2 'cat b | run a - bin'
same "'-' in the middle reading a file" want2 'run a - bin <b'
same "no argument: stdin pipe to a file" b 'cat b | run'
same "stdin pipe to a pipe" b 'cat b | run - | cat'
same "an empty file gives empty output" empty 'run empty'
same "binary data (every byte value)" bin 'run bin'
same "-c 1000000 /dev/zero: 1000000 zero bytes" zeros 'run -c 1000000 /dev/zero'
same "--bytes=1000000 /dev/zero into a pipe: exact" zeros 'run --bytes=1000000 /dev/zero | cat'
head -c 300100 aba >want3
same "-c ends in the middle of the second file" want3 'run -c 300100 a b a'
head -c 1024 b >want4
same "-c 1K through a pipe" want4 'run -c 1K b | cat'
same "O_APPEND output (>>)" ab 'cp a appended && run b >>appended && cat appended'
same "O_NONBLOCK stdin and stdout pipes" aba '
	perl -MFcntl -e "fcntl(STDIN, F_SETFL, O_NONBLOCK) && fcntl(STDOUT, F_SETFL, O_NONBLOCK)
		or die; exec @ARGV" -- "${wrap[@]}" "$bin" a - a < <(sleep 0.3; cat b) |
		(sleep 0.3; cat)'

expect_rc "missing file among others: exit 1" 1 run a missing b >out
check "missing file: stderr names it" grep -q "^iou_cat: missing: No such file or directory$" err
check "missing file: the others are still copied" cmp out ab

expect_rc "a directory: exit 1" 1 run a . a >out
check "a directory: stderr names it" grep -q "^iou_cat: \.: Is a directory$" err

cp a same
# shellcheck disable=SC2094 # reading and appending to one file is the point
expect_rc "input file is output file: exit 1" 1 run b same >>same
check "input file is output file: said so" grep -q "same: input file is output file" err

expect_rc "stdout closed: exit 1" 1 run a >&-
check "stdout closed: said so" grep -q "^iou_cat: standard output: Bad file descriptor$" err
expect_rc "stdin closed, '-' among files: exit 1" 1 run a - a <&- >out
check "stdin closed: the files are still copied" cmp out <(cat a a)

rc=0
run /dev/zero 2>err | head -c 10 >/dev/null || rc=$?
check "reader goes away: exit 1" test "$rc" = 1
check "reader goes away: one line, EPIPE" \
	test "$(cat err)" = "iou_cat: write error: Broken pipe"

expect_rc "bad option: exit 2" 2 run --no-such-option
check "bad option: one line on stderr" test "$(wc -l <err)" = 1
expect_rc "bad byte count: exit 2" 2 run -c 12X /dev/zero
expect_rc "--help: exit 0" 0 run --help >out
check "--help prints the usage to stdout" grep -q "^Usage: iou_cat" out
expect_rc "--version: exit 0" 0 run --version >out

# A UNIX stream socket path as a FILE: socat serves b once and closes.
socat -u FILE:b UNIX-LISTEN:"$tmp/sock" &
peers+=($!)
# The path appears at bind(2); listen(2) follows within microseconds.
for _ in $(seq 100); do [[ -S $tmp/sock ]] && break; sleep 0.05; done
sleep 0.2
same "UNIX socket path served by socat" aba 'run a "$tmp/sock" a'

# Sockets as stdin and stdout: socat's SYSTEM address gives the command a
# socketpair; iou_cat's status comes back through a file.
export IOU_CAT_RUN="${IOU_TEST_WRAPPER:-} $bin"
same "stdin is a socket (socat SYSTEM)" aba '
	socat -u FILE:b SYSTEM:"\$IOU_CAT_RUN a - a >sockout; echo \$? >sockrc" &&
		test "$(cat sockrc)" = 0 && cat sockout'
same "stdout is a socket (socat SYSTEM)" aba '
	socat -u SYSTEM:"\$IOU_CAT_RUN a b a; echo \$? >sockrc" CREATE:sockout &&
		test "$(cat sockrc)" = 0 && cat sockout'

# killed SIG: iou_cat copies /dev/zero into a FIFO whose reader marks the
# first byte; once output flows, SIG is sent.  Prints the raw wait status
# as "exit=N signal=N core=N" (bash alone cannot tell exit(143) from death
# by SIGTERM).
killed() {
	rm -f fifo started
	mkfifo fifo
	{ head -c 1 >/dev/null && touch started && cat >/dev/null; } <fifo &
	peers+=($!)
	perl -e '
		my ($sig, @cmd) = @ARGV;
		my $pid = fork // die;
		if (!$pid) { open(STDOUT, ">", "fifo") or die; exec @cmd; die "exec: $!" }
		for (1 .. 600) { last if -e "started"; select(undef, undef, undef, 0.05) }
		kill $sig, $pid;
		my $t0 = time;
		local $SIG{ALRM} = sub { kill "KILL", $pid };
		alarm 10;
		waitpid($pid, 0);
		printf "exit=%d signal=%d core=%d\n", $? >> 8, $? & 127, ($? & 128) ? 1 : 0;
	' "$1" "${wrap[@]}" "$bin" /dev/zero
}
killed TERM >status
check "SIGTERM while copying /dev/zero into a pipe: exit 143" \
	test "$(cat status)" = "exit=143 signal=0 core=0"
killed INT >status
check "SIGINT while copying /dev/zero into a pipe: exit 130" \
	test "$(cat status)" = "exit=130 signal=0 core=0"

# Big inputs: many splices and chunks, the paths the benchmarks take.
if [[ -z ${IOU_TEST_WRAPPER:-} ]]; then
	head -c 100M /dev/urandom >big
	cat a big a >abiga
	same "100 MB random file to a file" abiga 'run a big a'
	same "100 MB random file through a pipe" abiga 'run a big a | cat'
	same "100 MB from a pipe to a file" abiga 'cat big | run a - a'
	same "100 MB from a pipe to a pipe" abiga 'cat big | run a - a | cat'
	same "100 MB file to /dev/null" empty 'run big >/dev/null'
else
	echo "skip - 100 MB cases under $IOU_TEST_WRAPPER"
fi

if ((failed)); then
	echo "$failed check(s) failed"
	exit 1
fi
echo "all checks passed"
