# SPDX-License-Identifier: MIT
#
# Builds the in-tree rustls shim (rust/iou-rustls) with cargo, offline, from
# Debian's packaged crates, and presents it to CMake as a library.
#
#   include(cmake/IouRustls.cmake)
#   iou_rustls_shim()
#
# defines
#
#   iou::rustls        IMPORTED STATIC library (GLOBAL): libiou_rustls.a, its
#                      header directory (iou_rustls.h), and the system
#                      libraries Rust's std needs.
#   iou-rustls-build   the custom target that runs cargo.  iou::rustls
#                      depends on it already; a target that links
#                      iou::rustls may also say so itself (harmless, and
#                      needed with generators or CMake versions that do not
#                      follow dependencies of imported targets):
#                        add_dependencies(<target> iou-rustls-build)
#
# and, in the caller's scope,
#
#   IOU_RUSTLS_LIBRARY      full path of libiou_rustls.a (e.g. to install it
#                           or to list it in a .pc file's Libs.private)
#   IOU_RUSTLS_NATIVE_LIBS  the system libraries it needs, as a ;-list
#
# Cache variable IOU_CARGO: the cargo to use.  Found as `cargo` in
# ~/.cargo/bin (rustup), then PATH (Debian's package "cargo"); set it to
# choose, e.g. -DIOU_CARGO=/usr/bin/cargo.  The rustc next to that cargo
# is used with it (RUSTC), so that a Debian cargo never picks up a rustup
# rustc through PATH or the reverse.
#
# How the build works: at build time the crate (Cargo.toml, .cargo/,
# src/) is copied to ${PROJECT_BINARY_DIR}/rust/iou-rustls (the build
# directory of the project that calls iou_rustls_shim()) and cargo builds
# it there, `--release --offline`, with CARGO_TARGET_DIR inside that
# directory.  The copy keeps the source tree clean, and gives each build
# directory a Cargo.lock of its own, written by the cargo that builds it:
# no lockfile is kept in the source tree because one written by a new
# cargo (format 4) cannot be read by Debian's cargo 0.66.  The lockfile is
# removed before each build for the same reason (switching IOU_CARGO in one
# build directory); resolution is offline against a registry holding one
# version of each crate, so it always comes out the same.  Edits to the
# crate's files (globbed, CONFIGURE_DEPENDS) re-run cargo.
#
# The Rust code is never built with the C flags: CFLAGS, CXXFLAGS and every
# RUSTFLAGS variable are removed from cargo's environment, so sanitizer or
# coverage flags meant for C reach neither rustc nor the C parts of ring.
# A sanitized C program links the uninstrumented shim without trouble.

# The system libraries of Rust's std on x86_64-linux-gnu, as
#   cargo rustc --release -- --print native-static-libs
# reports them with rustc 1.63 (Debian 12) and 1.95 (rustup) alike.
set(IOU_RUSTLS_NATIVE_LIBS_DEFAULT gcc_s util rt pthread m dl c)

# The crate, next to this file's directory (so that it is found whatever
# project includes this file).
get_filename_component(IOU_RUSTLS_CRATE_DIR "${CMAKE_CURRENT_LIST_DIR}/../rust/iou-rustls" ABSOLUTE)

function(iou_rustls_shim)
	if(TARGET iou::rustls)
		return()
	endif()

	set(crate_src "${IOU_RUSTLS_CRATE_DIR}")
	set(crate_dst "${PROJECT_BINARY_DIR}/rust/iou-rustls")
	set(target_dir "${crate_dst}/target")
	set(library "${target_dir}/release/${CMAKE_STATIC_LIBRARY_PREFIX}iou_rustls${CMAKE_STATIC_LIBRARY_SUFFIX}")
	set(stamp "${crate_dst}/cargo-build.stamp")

	find_program(IOU_CARGO cargo HINTS "$ENV{HOME}/.cargo/bin"
		DOC "cargo that builds the rustls shim of libioucontext-tls")
	if(NOT IOU_CARGO OR NOT EXISTS "${IOU_CARGO}")
		message(FATAL_ERROR
			"cargo not found (IOU_CARGO=${IOU_CARGO}): libioucontext-tls needs it "
			"to build its rustls shim.\n"
			"Run scripts/setup.sh (it installs Debian's cargo and the rustls crates), "
			"or point -DIOU_CARGO=/path/to/cargo at one, "
			"or configure with -DIOU_BUILD_TLS=OFF to build without TLS.")
	endif()
	# Not cached: it follows IOU_CARGO when that is changed.
	get_filename_component(cargo_dir "${IOU_CARGO}" DIRECTORY)
	if(EXISTS "${cargo_dir}/rustc")
		set(rustc_env "RUSTC=${cargo_dir}/rustc")
	else()
		set(rustc_env "")
	endif()
	if(NOT EXISTS "/usr/share/cargo/registry/rustls-0.20.8")
		message(WARNING "/usr/share/cargo/registry has no rustls 0.20.8: "
			"the rustls shim will not build offline (install librust-rustls-dev "
			"and librust-rustls-pemfile-dev, or run scripts/setup.sh)")
	endif()

	file(GLOB_RECURSE crate_sources CONFIGURE_DEPENDS
		"${crate_src}/src/*.rs")
	set(crate_files
		"${crate_src}/Cargo.toml"
		"${crate_src}/.cargo/config.toml"
		${crate_sources})

	add_custom_command(
		OUTPUT "${stamp}"
		BYPRODUCTS "${library}"
		COMMAND "${CMAKE_COMMAND}" -E rm -rf "${crate_dst}/src"
		COMMAND "${CMAKE_COMMAND}" -E copy_directory "${crate_src}/src" "${crate_dst}/src"
		COMMAND "${CMAKE_COMMAND}" -E copy_if_different
			"${crate_src}/Cargo.toml" "${crate_dst}/Cargo.toml"
		COMMAND "${CMAKE_COMMAND}" -E make_directory "${crate_dst}/.cargo"
		COMMAND "${CMAKE_COMMAND}" -E copy_if_different
			"${crate_src}/.cargo/config.toml" "${crate_dst}/.cargo/config.toml"
		COMMAND "${CMAKE_COMMAND}" -E rm -f "${crate_dst}/Cargo.lock"
		COMMAND "${CMAKE_COMMAND}" -E env
			--unset=CFLAGS --unset=CXXFLAGS --unset=CPPFLAGS --unset=LDFLAGS
			--unset=RUSTFLAGS --unset=CARGO_ENCODED_RUSTFLAGS
			--unset=CARGO_BUILD_RUSTFLAGS --unset=CARGO_BUILD_TARGET
			--unset=CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS
			--unset=CARGO_PROFILE_RELEASE_PANIC
			"CARGO_TARGET_DIR=${target_dir}" ${rustc_env}
			"${IOU_CARGO}" build --release --offline --quiet
			--manifest-path "${crate_dst}/Cargo.toml"
		COMMAND "${CMAKE_COMMAND}" -E touch "${stamp}"
		WORKING_DIRECTORY "${crate_dst}"
		DEPENDS ${crate_files}
		COMMENT "Building the rustls shim (cargo build --release --offline)"
		VERBATIM)
	add_custom_target(iou-rustls-build DEPENDS "${stamp}")

	# The custom command runs in it.
	file(MAKE_DIRECTORY "${crate_dst}")

	add_library(iou::rustls STATIC IMPORTED GLOBAL)
	set_target_properties(iou::rustls PROPERTIES
		IMPORTED_LOCATION "${library}"
		INTERFACE_INCLUDE_DIRECTORIES "${crate_src}"
		INTERFACE_LINK_LIBRARIES "${IOU_RUSTLS_NATIVE_LIBS_DEFAULT}")
	add_dependencies(iou::rustls iou-rustls-build)

	set(IOU_RUSTLS_LIBRARY "${library}" PARENT_SCOPE)
	set(IOU_RUSTLS_NATIVE_LIBS "${IOU_RUSTLS_NATIVE_LIBS_DEFAULT}" PARENT_SCOPE)
endfunction()
