#!/usr/bin/env bash
# The one test command (the README and .ci/run both call exactly this):
# installs dependencies, configures and builds the default preset, and runs
# every test except benchmarks. Extra arguments go to ctest (e.g. -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."

bash packaging/install-deps.sh
cmake --preset default
cmake --build --preset default
ctest --preset default "$@"
