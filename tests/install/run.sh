#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Install test: install the build tree into a temporary prefix and use it the
# way an outside project would -- pkg-config (shared and static), CMake's
# find_package(ioucontext) -- then check what the shared library exports.
# Run by CTest (label "install"), which sets IOU_BUILD_DIR and IOU_TEST_SRCDIR;
# IOU_SANITIZE and IOU_CC say how the library was built.
set -euo pipefail

: "${IOU_BUILD_DIR:?IOU_BUILD_DIR must name the build tree}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cc=${IOU_CC:-${CC:-cc}}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iou-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

fail() {
	echo "install test: FAIL: $*" >&2
	exit 1
}

step() {
	echo "== $*"
}

step "cmake --install into $prefix"
if ! cmake --install "$IOU_BUILD_DIR" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
	cat "$tmp/install.log" >&2
	fail "cmake --install failed"
fi

# GNUInstallDirs may choose lib, lib64 or lib/<multiarch>.
libdir=
for d in "$prefix"/lib "$prefix"/lib64 "$prefix"/lib/*-linux-*; do
	if [[ -e $d/libioucontext.so ]]; then
		libdir=$d
		break
	fi
done
[[ -n $libdir ]] || fail "libioucontext.so not installed under $prefix/lib*"
for f in libioucontext.a pkgconfig/ioucontext.pc cmake/ioucontext/ioucontextConfig.cmake \
	cmake/ioucontext/ioucontextConfigVersion.cmake; do
	[[ -e $libdir/$f ]] || fail "$libdir/$f not installed"
done
[[ -f $prefix/include/ioucontext/ioucontext.h ]] || fail "ioucontext.h not installed"
[[ -f $prefix/include/ioucontext/version.h ]] || fail "generated version.h not installed"
[[ ! -e $prefix/include/ioucontext/version.h.in ]] || fail "version.h.in installed"
# The manual, where man(1) finds it: a family page, an alias, the overview.
mandir=$prefix/share/man
for f in man3/iou_io.3 man3/iou_read.3 man3/reactor_run.3 man7/ioucontext.7; do
	[[ -f $mandir/$f ]] || fail "manual page $f not installed under $mandir"
done
if command -v man >/dev/null; then
	page=$(MANWIDTH=80 man --warnings -M "$mandir" 3 iou_read 2>"$tmp/man.err") ||
		fail "man -M $mandir 3 iou_read failed: $(cat "$tmp/man.err")"
	[[ ! -s $tmp/man.err ]] || fail "man iou_read warns: $(cat "$tmp/man.err")"
	grep -q 'iou_read' <<<"$page" || fail "the installed iou_read(3) does not mention iou_read"
fi
soname=$(readelf -d "$libdir/libioucontext.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == libioucontext.so.0 ]] || fail "SONAME is '$soname', expected libioucontext.so.0"

export PKG_CONFIG_PATH=$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
version=$(pkg-config --modversion ioucontext)
pc_prefix=$(pkg-config --variable=prefix ioucontext)
[[ $pc_prefix == "$prefix" ]] || fail "ioucontext.pc prefix is '$pc_prefix', expected '$prefix'"

# Compile as a strict C11 user would; match the library's sanitizers, whose
# runtimes must be linked into the executable.
strict=(-std=c11 -Wall -Wextra -Wpedantic -Werror)
san=()
if [[ -n ${IOU_SANITIZE:-} ]]; then
	san=(-fsanitize="$IOU_SANITIZE" -fno-omit-frame-pointer)
fi
read -ra cflags <<<"$(pkg-config --cflags ioucontext)"

step "each installed header compiles on its own (strict C11)"
for h in "$prefix"/include/ioucontext/*.h; do
	h=${h##*/}
	printf '#include <ioucontext/%s>\ntypedef int not_empty;\n' "$h" |
		"$cc" "${strict[@]}" "${cflags[@]}" -fsyntax-only -x c - ||
		fail "<ioucontext/$h> does not compile on its own"
done

check_output() { # program [env...]
	local prog=$1 out
	shift
	out=$(env "$@" "$prog") || fail "$prog exited with $?"
	[[ $out == "ioucontext $version" ]] || fail "$prog printed '$out', expected 'ioucontext $version'"
}

step "pkg-config, shared"
read -ra libs <<<"$(pkg-config --libs ioucontext)"
"$cc" "${strict[@]}" "${san[@]}" "${cflags[@]}" "$here/consumer.c" -o "$tmp/pc-shared" "${libs[@]}"
# Capture before matching: with pipefail, `ldd | grep -q` fails whenever grep
# exits early and ldd dies of SIGPIPE.
deps=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/pc-shared")
[[ $deps == *"$libdir/libioucontext.so.0"* ]] ||
	fail "pc-shared does not load the installed libioucontext.so.0"
check_output "$tmp/pc-shared" LD_LIBRARY_PATH="$libdir"

step "pkg-config --static, libioucontext.a"
read -ra slibs <<<"$(pkg-config --static --libs ioucontext)"
static_libs=()
for l in "${slibs[@]}"; do
	if [[ $l == -lioucontext ]]; then
		static_libs+=("$libdir/libioucontext.a")
	else
		static_libs+=("$l")
	fi
done
"$cc" "${strict[@]}" "${san[@]}" "${cflags[@]}" "$here/consumer.c" -o "$tmp/pc-static" \
	"${static_libs[@]}"
dyn=$(readelf -d "$tmp/pc-static")
if [[ $dyn == *NEEDED*libioucontext* ]]; then
	fail "pc-static needs libioucontext.so"
fi
check_output "$tmp/pc-static"

step "CMake find_package(ioucontext)"
mkdir -p "$tmp/cmake-src"
cp "$here/consumer.c" "$here/consumer-dns.c" "$here/consumer-tls.c" "$tmp/cmake-src/"
cat >"$tmp/cmake-src/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(consumer LANGUAGES C)
set(CMAKE_C_STANDARD 11)
set(CMAKE_C_EXTENSIONS OFF)
find_package(ioucontext 0.1 REQUIRED)
add_executable(consumer-shared consumer.c)
target_link_libraries(consumer-shared PRIVATE ioucontext::ioucontext)
add_executable(consumer-static consumer.c)
target_link_libraries(consumer-static PRIVATE ioucontext::ioucontext-static)
if(TARGET ioucontext::ioucontext-dns)
	add_executable(consumer-dns consumer-dns.c)
	target_link_libraries(consumer-dns PRIVATE ioucontext::ioucontext-dns)
	add_executable(consumer-dns-static consumer-dns.c)
	target_link_libraries(consumer-dns-static PRIVATE ioucontext::ioucontext-dns-static)
endif()
if(TARGET ioucontext::ioucontext-tls)
	add_executable(consumer-tls consumer-tls.c)
	target_link_libraries(consumer-tls PRIVATE ioucontext::ioucontext-tls)
endif()
CMAKE
gen=()
if command -v ninja >/dev/null; then
	gen=(-G Ninja)
fi
if ! cmake -S "$tmp/cmake-src" -B "$tmp/cmake-build" "${gen[@]}" \
	-DCMAKE_C_COMPILER="$cc" \
	-DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_C_FLAGS="${strict[*]} ${san[*]}" \
	-DCMAKE_EXE_LINKER_FLAGS="${san[*]}" >"$tmp/cmake.log" 2>&1 ||
	! cmake --build "$tmp/cmake-build" >>"$tmp/cmake.log" 2>&1; then
	cat "$tmp/cmake.log" >&2
	fail "CMake consumer did not configure or build"
fi
found=$(sed -n 's/^ioucontext_DIR:[A-Z]*=//p' "$tmp/cmake-build/CMakeCache.txt")
[[ $found == "$libdir/cmake/ioucontext" ]] || fail "find_package used '$found'"
check_output "$tmp/cmake-build/consumer-shared"
check_output "$tmp/cmake-build/consumer-static"
for dns in consumer-dns consumer-dns-static; do
	if [[ -e $libdir/libioucontext-dns.so ]]; then
		[[ -x $tmp/cmake-build/$dns ]] || fail "find_package did not build $dns"
		[[ $("$tmp/cmake-build/$dns") == "No such name" ]] || fail "$dns failed"
	fi
done

step "exported symbols"
nm -D --defined-only "$libdir/libioucontext.so" | awk '$2 != "A" { print $3 }' |
	sed 's/@.*//' | sort -u >"$tmp/exports"
grep -qx reactor_get "$tmp/exports" || fail "reactor_get is not exported"
public='^(reactor_|fiber_|iou_[a-z])'
# ThreadSanitizer builds also export C11 threads over pthreads (src/core/tsan.c).
if [[ ${IOU_SANITIZE:-} == *thread* ]]; then
	public='^(reactor_|fiber_|iou_[a-z]|thrd_(create|join|detach)$|mtx_|cnd_|call_once$)'
fi
if grep -Ev "$public" "$tmp/exports" >"$tmp/bad"; then
	echo "unexpected exports:" >&2
	cat "$tmp/bad" >&2
	fail "libioucontext.so exports names outside reactor_/fiber_/iou_"
fi
echo "$(wc -l <"$tmp/exports") symbols exported, all public"

if [[ -e $libdir/libioucontext-dns.so ]]; then
	step "libioucontext-dns: pkg-config ioucontext-dns, exports"
	[[ -e $libdir/pkgconfig/ioucontext-dns.pc ]] || fail "ioucontext-dns.pc not installed"
	[[ -f $prefix/include/ioucontext/dns.h ]] || fail "dns.h not installed"
	read -ra dlibs <<<"$(pkg-config --libs ioucontext-dns)"
	"$cc" "${strict[@]}" "${san[@]}" "${cflags[@]}" "$here/consumer-dns.c" \
		-o "$tmp/dns" "${dlibs[@]}"
	out=$(LD_LIBRARY_PATH=$libdir "$tmp/dns") || fail "dns consumer exited with $?"
	[[ $out == "No such name" ]] || fail "dns consumer printed '$out'"
	# The core alone never pulls c-ares in.
	deps=$(readelf -d "$libdir/libioucontext.so")
	[[ $deps != *libcares* ]] || fail "libioucontext.so needs libcares"
	nm -D --defined-only "$libdir/libioucontext-dns.so" | awk '$2 != "A" { print $3 }' |
		sed 's/@.*//' | sort -u >"$tmp/dns-exports"
	if grep -Ev '^iou_dns_' "$tmp/dns-exports" >"$tmp/bad"; then
		cat "$tmp/bad" >&2
		fail "libioucontext-dns.so exports names outside iou_dns_"
	fi
	echo "$(wc -l <"$tmp/dns-exports") DNS symbols exported, all iou_dns_*"
fi

if [[ -e $libdir/libioucontext-tls.so ]]; then
	step "libioucontext-tls: pkg-config ioucontext-tls, CMake, exports"
	ca=${IOU_TEST_SRCDIR:?}/tests/fixtures/tls/ca.pem
	[[ -e $libdir/pkgconfig/ioucontext-tls.pc ]] || fail "ioucontext-tls.pc not installed"
	[[ -f $prefix/include/ioucontext/tls.h ]] || fail "tls.h not installed"
	[[ ! -e $prefix/include/ioucontext/iou_rustls.h && ! -e $prefix/include/iou_rustls.h ]] ||
		fail "the shim's internal header was installed"
	read -ra tlibs <<<"$(pkg-config --libs ioucontext-tls)"
	"$cc" "${strict[@]}" "${san[@]}" "${cflags[@]}" "$here/consumer-tls.c" \
		-o "$tmp/tls" "${tlibs[@]}"
	out=$(LD_LIBRARY_PATH=$libdir "$tmp/tls" "$ca") || fail "tls consumer exited with $?"
	[[ $out == "Certificate expired" ]] || fail "tls consumer printed '$out'"
	[[ -x $tmp/cmake-build/consumer-tls ]] || fail "find_package did not build consumer-tls"
	out=$("$tmp/cmake-build/consumer-tls" "$ca") || fail "CMake tls consumer exited with $?"
	[[ $out == "Certificate expired" ]] || fail "CMake tls consumer printed '$out'"
	# Neither the core nor the DNS library pulls the Rust code in.
	deps=$(nm -D "$libdir/libioucontext.so")
	[[ $deps != *iour_* && $deps != *rust* ]] || fail "libioucontext.so contains Rust code"
	nm -D --defined-only "$libdir/libioucontext-tls.so" | awk '$2 != "A" { print $3 }' |
		sed 's/@.*//' | sort -u >"$tmp/tls-exports"
	if grep -Ev '^iou_tls_' "$tmp/tls-exports" >"$tmp/bad"; then
		cat "$tmp/bad" >&2
		fail "libioucontext-tls.so exports names outside iou_tls_ (the shim or Rust leaks)"
	fi
	echo "$(wc -l <"$tmp/tls-exports") TLS symbols exported, all iou_tls_*"
fi

echo "install test: OK (ioucontext $version)"
