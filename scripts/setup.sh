#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Install the Debian packages ioucontext needs to build and test.
# Idempotent: does nothing when everything is installed already.  Needs root
# to install; otherwise prints what is missing and exits 1.
set -euo pipefail

# Everything the build, the tests and the benchmarks need, in one place.
PACKAGES=(
	build-essential
	gcc
	g++
	cmake
	ninja-build
	pkg-config
	liburing-dev
	valgrind
	strace
	libboost-context-dev
	socat
	openssl
	libssl-dev
	libc-ares-dev
	dnsmasq-base
	librust-rustls-dev
	librust-rustls-pemfile-dev
	libuv1-dev
	gnuplot-nox
	man-db
	groff-base
	clang-14
	libclang-rt-14-dev
	llvm-14
)

# libioucontext-tls builds its Rust shim with cargo: any cargo on PATH (or
# in ~/.cargo/bin) will do; Debian's own when there is none.
if ! command -v cargo >/dev/null 2>&1 && [[ ! -x ${HOME:-/root}/.cargo/bin/cargo ]]; then
	PACKAGES+=(cargo)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	if [[ $status != "install ok installed" ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "setup: all ${#PACKAGES[@]} packages present"
	exit 0
fi

if ((EUID != 0)); then
	echo "setup: missing packages: ${missing[*]}" >&2
	echo "setup: as root, run: apt-get install --no-install-recommends ${missing[*]}" >&2
	exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
