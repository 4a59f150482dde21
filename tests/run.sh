#!/usr/bin/env bash
# The one test command (the README and .ci/run both call exactly this):
# installs dependencies, configures and builds the default preset, and runs
# every test except benchmarks. Extra arguments go to ctest (e.g. -L unit).
#
# The S3 tests share one throw-away Ceph cluster (radosgw on loopback, RAM
# only) started here, instead of one per test process.
set -euo pipefail
cd "$(dirname "$0")/.."

bash packaging/install-deps.sh
cmake --preset default
cmake --build --preset default

ceph_dir=$(mktemp -d "${TMPDIR:-/tmp}/isr-ceph-run.XXXXXX")
cleanup() { bash tests/support/ceph-rgw.sh stop "$ceph_dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
if bash tests/support/ceph-rgw.sh start "$ceph_dir" >/dev/null; then
  eval "$(bash tests/support/ceph-rgw.sh env "$ceph_dir")"
else
  echo "tests/run.sh: no Ceph cluster; the S3 tests start their own or skip with a reason"
fi

ctest --preset default "$@"
