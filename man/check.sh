#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Checks ioucontext's manual pages (man/*.3, man/*.7):
#
#  1. render: every page renders without any warning through
#     `man --warnings -l` (and through `groff -man -ww -z` where groff is
#     installed).  Alias pages (".so man3/<family>.3") are rendered from a
#     staging tree with man3/ and man7/ directories, where their .so request
#     resolves as it does once installed; an alias must hold exactly that one
#     line, and its name must be listed in the NAME section of its target.
#
#  2. coverage: every public function declared in include/ioucontext/*.h
#     (a line at column 0: return type, name, '(') has a page
#     man/<function>.3, and the page it resolves to lists the function in its
#     NAME section and declares it in its SYNOPSIS.
#
# Usage: man/check.sh [REPO_ROOT]    (default: the directory above man/)
#
# Prints one "FAIL ..." line per problem, then "render: N passed, N failed",
# "coverage: N passed, N failed" and a last line "N passed, N failed".
# Exit status: 0 if everything passed, 1 if anything failed, 2 on a usage or
# environment error.

set -u

usage() {
	echo "usage: $0 [REPO_ROOT]" >&2
	exit 2
}

[ $# -le 1 ] || usage
case "${1:-}" in -h | --help) usage ;; esac

if [ $# -eq 1 ]; then
	root=$1
else
	root=$(cd "$(dirname "$0")/.." && pwd) || exit 2
fi
mandir=$root/man
incdir=$root/include/ioucontext
if [ ! -d "$mandir" ] || [ ! -d "$incdir" ]; then
	echo "$0: $root has no man/ or include/ioucontext/" >&2
	exit 2
fi
if ! command -v man >/dev/null 2>&1; then
	echo "$0: man(1) is not installed" >&2
	exit 2
fi
have_groff=0
command -v groff >/dev/null 2>&1 && have_groff=1

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/man3" "$tmp/man7" || exit 2

shopt -s nullglob
pages3=("$mandir"/*.3)
pages7=("$mandir"/*.7)
if [ ${#pages3[@]} -eq 0 ]; then
	echo "$0: no pages in $mandir" >&2
	exit 2
fi
cp -- "${pages3[@]}" "$tmp/man3/" || exit 2
[ ${#pages7[@]} -eq 0 ] || cp -- "${pages7[@]}" "$tmp/man7/" || exit 2

render_pass=0 render_fail=0
cover_pass=0 cover_fail=0

# The target family page of alias page $1 (a path), or "" if $1 is no alias.
alias_target() {
	local first
	first=$(head -n 1 -- "$1")
	case "$first" in
	.so\ man3/*.3)
		first=${first#.so man3/}
		printf '%s\n' "${first%.3}"
		;;
	esac
}

# Lines of section $2 (NAME, SYNOPSIS, ...) of page $1.
section() {
	awk -v want="$2" '
		/^\.SH / { sub(/^\.SH +/, ""); gsub(/"/, ""); inside = ($0 == want); next }
		inside { print }
	' "$1"
}

# Whether the NAME section of page $1 lists the name $2.
name_lists() {
	section "$1" NAME | sed 's/\\-.*//' | tr ',' '\n' | tr -d ' ' | grep -qxF -- "$2"
}

# 1. render
for page in "$tmp"/man3/*.3 "$tmp"/man7/*.7; do
	rel=${page#"$tmp"/}
	problems=""
	target=$(alias_target "$page")
	if [ -n "$target" ]; then
		if [ "$(wc -l <"$page")" -ne 1 ]; then
			problems+="alias page has more than the .so line; "
		fi
		if [ ! -f "$tmp/man3/$target.3" ]; then
			problems+="target man3/$target.3 does not exist; "
		elif [ -n "$(alias_target "$tmp/man3/$target.3")" ]; then
			problems+="target man3/$target.3 is itself an alias; "
		elif ! name_lists "$tmp/man3/$target.3" "$(basename "$page" .3)"; then
			problems+="NAME of man3/$target.3 does not list $(basename "$page" .3); "
		fi
	elif grep -q '^\.so' "$page"; then
		problems+="malformed .so request; "
	fi

	out=$(cd "$tmp" && LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
		man --warnings -E UTF-8 -l "$rel" 2>"$tmp/err")
	status=$?
	if [ $status -ne 0 ]; then
		problems+="man exited with status $status; "
	fi
	if [ -s "$tmp/err" ]; then
		problems+="man: $(tr '\n' ' ' <"$tmp/err"); "
	fi
	if [ -z "$out" ]; then
		problems+="renders nothing; "
	fi
	if [ $have_groff -eq 1 ]; then
		(cd "$tmp" && groff -man -ww -z "$rel") >"$tmp/err" 2>&1
		if [ -s "$tmp/err" ]; then
			problems+="groff: $(tr '\n' ' ' <"$tmp/err"); "
		fi
	fi

	if [ -z "$problems" ]; then
		render_pass=$((render_pass + 1))
	else
		render_fail=$((render_fail + 1))
		echo "FAIL render man/${rel#*/}: ${problems%; }"
	fi
done

# 2. coverage
functions=$(grep -hE '^[A-Za-z_][A-Za-z0-9_ ]*[ *]+[A-Za-z_][A-Za-z0-9_]*\(' "$incdir"/*.h |
	grep -Ev '^(typedef|extern|#)' |
	sed -E 's/^.*[ *]([A-Za-z_][A-Za-z0-9_]*)\(.*/\1/' | sort -u)
if [ -z "$functions" ]; then
	echo "FAIL coverage: no function prototypes found in $incdir/*.h"
	cover_fail=$((cover_fail + 1))
fi
for fn in $functions; do
	page=$mandir/$fn.3
	problems=""
	if [ ! -f "$page" ]; then
		problems="no page man/$fn.3"
	else
		family=$page
		target=$(alias_target "$page")
		[ -z "$target" ] || family=$mandir/$target.3
		if [ ! -f "$family" ]; then
			problems="man/$fn.3 points to missing man/$target.3"
		elif ! name_lists "$family" "$fn"; then
			problems="NAME of man/$(basename "$family") does not list $fn"
		elif ! section "$family" SYNOPSIS | grep -qF -- "$fn("; then
			problems="SYNOPSIS of man/$(basename "$family") does not declare $fn()"
		fi
	fi
	if [ -z "$problems" ]; then
		cover_pass=$((cover_pass + 1))
	else
		cover_fail=$((cover_fail + 1))
		echo "FAIL coverage $fn: $problems"
	fi
done

echo "render: $render_pass passed, $render_fail failed"
echo "coverage: $cover_pass passed, $cover_fail failed"
echo "$((render_pass + cover_pass)) passed, $((render_fail + cover_fail)) failed"
[ $((render_fail + cover_fail)) -eq 0 ]
