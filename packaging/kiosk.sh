#!/usr/bin/env bash
# The README's first command: set up, build, and start the kiosk.
# With a display ($DISPLAY or $WAYLAND_DISPLAY) the kiosk opens full screen
# on it; without one it runs under a private Xvfb and saves a screenshot of
# what it shows to build/kiosk-screenshot.png.
set -euo pipefail
cd "$(dirname "$0")/.."

bash packaging/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default

kiosk=build/default/app/kiosk/isr-kiosk
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  exec "$kiosk" --demo "$@"
fi

echo "kiosk.sh: no display found; running isr-kiosk under Xvfb for 10 seconds"
display=:$((90 + RANDOM % 9))
Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill $kiosk_pid $xvfb 2>/dev/null || true' EXIT
sleep 1
DISPLAY=$display "$kiosk" --demo "$@" &
kiosk_pid=$!
sleep 8
DISPLAY=$display import -window root build/kiosk-screenshot.png
echo "kiosk.sh: screenshot saved to build/kiosk-screenshot.png"
