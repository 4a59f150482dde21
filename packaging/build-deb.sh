#!/bin/bash
# Builds the isr Debian package: configures (preset $ISR_PRESET, default
# "default"), builds what the package installs, runs `cpack -G DEB` in the
# build directory and prints the path of the .deb on the last line.
# Needs dpkg-dev (dpkg-shlibdeps computes the library dependencies).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
preset=${ISR_PRESET:-default}
jobs=${ISR_JOBS:-2}
build=$src/build/$preset

cd "$src"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j"$jobs" --target isrctl isr-kiosk isr-vmhost isr_qemu_nohugepage
rm -f "$build"/isr_*.deb
(cd "$build" && cpack -G DEB) >&2
deb=$(ls "$build"/isr_*.deb)
dpkg-deb --info "$deb" >&2
echo "$deb"
