#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Checks the code of every EXAMPLE or EXAMPLES section of ioucontext's
# manual pages (man/*.3, man/*.7) against the built headers and libraries:
# each .EX/.EE block is turned back from roff into C (\e, \-, \(aq, \(dq,
# \&; any other backslash is an error) and
#
#  - a complete program (a line starting "int main(") is compiled with
#    -Wall -Wextra -Werror, linked against the libraries it includes
#    (<ioucontext/dns.h>: libioucontext-dns, <ioucontext/tls.h>:
#    libioucontext-tls; skipped, with a line saying so, if the build has no
#    such library) and run: no arguments, a line of text on standard input,
#    under $IOU_TEST_WRAPPER, with a time limit; it must exit 0 and write
#    nothing to standard error.  Where unprivileged namespaces are
#    allowed it runs in a network namespace of its own (loopback only).
#    A program that must not run here -- it
#    contacts hosts beyond the loopback interface, or serves until killed --
#    is marked in the page, just before its .EX, by the roff comment
#        .\" example-no-run: REASON
#    and is then compiled and linked only.
#  - a fragment is compiled only (-c), after the common headers (libc,
#    <ioucontext/ioucontext.h>, dns.h, tls.h).  Without a marker it is
#    compiled as top-level code (functions; -Wno-unused-function, as the
#    fragment alone calls none).  Statements need the declarations they use,
#    given just before the .EX by one or more roff comments
#        .\" example-context: C DECLARATIONS
#    and are then compiled as the body of a function, after them.
#
# Usage: man/examples.sh [REPO_ROOT [BUILD_DIR]]
#   REPO_ROOT defaults to the directory above man/; BUILD_DIR to
#   $IOU_BUILD_DIR, else REPO_ROOT/build.  The compiler is $IOU_CC (else
#   $CC, else cc); $IOU_SANITIZE (e.g. address,undefined) adds the
#   sanitizers the build uses; $IOU_TEST_WRAPPER (e.g. valgrind ...) runs
#   the programs; $IOU_TEST_TIMEOUT_SCALE multiplies the 60 s time limit.
#
# Prints one "ok" or "FAIL" line per example (plus "skip" lines), then
# "N passed, N failed".  Exit status: 0 if every example passed, 1 if any
# failed, 2 on a usage or environment error.

set -u

usage() {
	echo "usage: $0 [REPO_ROOT [BUILD_DIR]]" >&2
	exit 2
}

[ $# -le 2 ] || usage
case "${1:-}" in -h | --help) usage ;; esac

if [ $# -ge 1 ]; then
	root=$1
else
	root=$(cd "$(dirname "$0")/.." && pwd) || exit 2
fi
build=${2:-${IOU_BUILD_DIR:-$root/build}}
mandir=$root/man
cc=${IOU_CC:-${CC:-cc}}
scale=${IOU_TEST_TIMEOUT_SCALE:-1}
read -ra wrapper <<<"${IOU_TEST_WRAPPER:-}"

if [ ! -d "$mandir" ] || [ ! -f "$root/include/ioucontext/ioucontext.h" ]; then
	echo "$0: $root has no man/ or include/ioucontext/" >&2
	exit 2
fi
if [ ! -f "$build/include/ioucontext/version.h" ] || [ ! -e "$build/libioucontext.so" ]; then
	echo "$0: $build is not a built ioucontext tree (no libioucontext.so or version.h)" >&2
	exit 2
fi
build=$(cd "$build" && pwd) || exit 2
if ! command -v "$cc" >/dev/null 2>&1; then
	echo "$0: no C compiler '$cc'" >&2
	exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iou-man-examples.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

cflags=(-std=gnu11 -Wall -Wextra -Werror -I"$root/include" -I"$build/include")
san=()
if [ -n "${IOU_SANITIZE:-}" ]; then
	san=(-fsanitize="$IOU_SANITIZE" -fno-omit-frame-pointer)
fi

# Programs run in a network namespace of their own where unprivileged
# namespaces are allowed: nothing but loopback is reachable, whatever a
# page forgot to mark.  Elsewhere the example-no-run markers alone guard.
isolate=()
if command -v unshare >/dev/null 2>&1 && unshare -rn true 2>/dev/null; then
	isolate=(unshare -rn sh -c 'ip link set lo up 2>/dev/null; exec "$@"' sh)
	echo "# programs run in their own network namespace (loopback only)"
else
	echo "# no unprivileged network namespace: programs run in the host's network"
fi

passed=0 failed=0

ok() {
	passed=$((passed + 1))
	echo "ok $*"
}

fail() {
	failed=$((failed + 1))
	echo "FAIL $*"
}

# Split the EXAMPLE(S) sections of page $1 into $tmp/<stem>.<k>.roff, with
# their markers in <stem>.<k>.context and <stem>.<k>.norun.  Prints the
# number of blocks.
split_page() {
	awk -v out="$tmp/$2" '
		/^\.SH / {
			s = $0; sub(/^\.SH +/, "", s); gsub(/"/, "", s)
			inside = (s == "EXAMPLE" || s == "EXAMPLES")
			ctx = ""; norun = ""
			next
		}
		!inside { next }
		/^\.\\" example-context: / {
			line = $0; sub(/^\.\\" example-context: /, "", line)
			ctx = ctx line "\n"
			next
		}
		/^\.\\" example-no-run: / {
			norun = $0; sub(/^\.\\" example-no-run: /, "", norun)
			next
		}
		/^\.EX/ {
			k++; code = 1
			f = out "." k
			printf "" > (f ".roff")
			if (ctx != "") printf "%s", ctx > (f ".context")
			if (norun != "") print norun > (f ".norun")
			ctx = ""; norun = ""
			next
		}
		/^\.EE/ { code = 0; close(f ".roff"); next }
		code { print > (f ".roff") }
		END { print k + 0 }
	' "$1"
}

# Roff to C on stdin; fails (status 1) on a backslash it does not know.
unroff() {
	local text
	text=$(cat)
	if printf '%s\n' "$text" | sed -e 's/\\e//g; s/\\-//g; s/\\(aq//g; s/\\(dq//g; s/\\&//g' |
		grep -q '\\'; then
		return 1
	fi
	printf '%s\n' "$text" | sed -e 's/\\-/-/g' -e "s/\\\\(aq/'/g" -e 's/\\(dq/"/g' \
		-e 's/\\&//g' -e 's/\\e/\\/g'
}

have_lib() {
	[ -e "$build/lib$1.so" ]
}

prelude() {
	cat <<'EOF'
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ioucontext/dns.h>
#include <ioucontext/ioucontext.h>
#include <ioucontext/tls.h>
EOF
}

check_block() {
	local page=$1 base=$2 name=$3
	local src=$base.c log=$base.log
	local limit=$((60 * scale)) rc libs=() what

	if ! unroff <"$base.roff" >"$base.code"; then
		fail "$name: a backslash that is not \\e, \\-, \\(aq, \\(dq or \\&: $(grep -n '\\' "$base.roff" | sed -e 's/\\e//g; s/\\-//g; s/\\(aq//g; s/\\(dq//g; s/\\&//g' | grep '\\' | head -n 1)"
		return
	fi
	if grep -q '^int main(' "$base.code"; then
		cp "$base.code" "$src"
		if grep -q '#include <ioucontext/tls.h>' "$src"; then
			have_lib ioucontext-tls || {
				echo "skip $name: the build has no libioucontext-tls"
				return
			}
			libs+=(-lioucontext-tls)
		fi
		if grep -q '#include <ioucontext/dns.h>' "$src"; then
			have_lib ioucontext-dns || {
				echo "skip $name: the build has no libioucontext-dns"
				return
			}
			libs+=(-lioucontext-dns)
		fi
		libs+=(-lioucontext)
		if ! "$cc" "${cflags[@]}" "${san[@]}" "$src" -o "$base.bin" -L"$build" \
			-Wl,-rpath,"$build" "${libs[@]}" >"$log" 2>&1; then
			fail "$name: program does not compile and link: $(head -c 2000 "$log")"
			return
		fi
		if [ -f "$base.norun" ]; then
			ok "$name: program compiles and links (not run: $(cat "$base.norun"))"
			return
		fi
		(cd "$tmp" && echo "hello, ioucontext" |
			timeout -k 5 "$limit" "${isolate[@]}" "${wrapper[@]}" "$base.bin" \
				>"$base.out" 2>"$base.err")
		rc=$?
		if [ $rc -ne 0 ]; then
			what="exits with status $rc"
			[ $rc -eq 124 ] && what="still runs after $limit s"
			fail "$name: program $what: $(head -c 2000 "$base.err")"
		elif [ -s "$base.err" ]; then
			fail "$name: program writes to stderr: $(head -c 2000 "$base.err")"
		else
			ok "$name: program compiles, links and runs ($(wc -l <"$base.out") lines of output)"
		fi
		return
	fi
	if [ -f "$base.norun" ]; then
		fail "$name: example-no-run on a fragment (only programs run)"
		return
	fi
	{
		prelude
		if [ -f "$base.context" ]; then
			echo "int iou_man_example(void);"
			echo "int iou_man_example(void)"
			echo "{"
			cat "$base.context"
			echo "#line 1 \"$name\""
			cat "$base.code"
			echo "return 0;"
			echo "}"
		else
			echo "#line 1 \"$name\""
			cat "$base.code"
		fi
	} >"$src"
	if ! "$cc" "${cflags[@]}" -Wno-unused-function -c "$src" -o "$base.o" >"$log" 2>&1; then
		fail "$name: fragment does not compile: $(head -c 2000 "$log")"
		return
	fi
	if [ -f "$base.context" ]; then
		ok "$name: fragment compiles (as statements)"
	else
		ok "$name: fragment compiles (as top-level code)"
	fi
}

shopt -s nullglob
pages=("$mandir"/*.3 "$mandir"/*.7)
[ ${#pages[@]} -gt 0 ] || {
	echo "$0: no pages in $mandir" >&2
	exit 2
}
for page in "${pages[@]}"; do
	stem=$(basename "$page")
	n=$(split_page "$page" "$stem") || exit 2
	for ((k = 1; k <= n; k++)); do
		check_block "$page" "$tmp/$stem.$k" "man/$stem example $k"
	done
done

echo "$passed passed, $failed failed"
if [ $((passed + failed)) -eq 0 ]; then
	echo "$0: no example found in $mandir" >&2
	exit 2
fi
[ $failed -eq 0 ]
