#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The demo: installs dependencies, builds the default preset, then runs the
# tour of the library, step by step, printing what each step shows.  As the
# example programs arrive (iou_cat, iou_port7, ...) this script runs them
# against each other and against real peers on loopback.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default

echo
echo "### tour: the reactor and its fibers (examples/tour.c)"
./build/examples/tour
