#!/usr/bin/env bash
# Drives the real isr-kiosk (--fake-backend) under Xvfb with xdotool and takes
# a screenshot of each page with `import -window root`. The running page shows
# a real QEMU (SeaBIOS, no disk) through --fake-display.
#   tests/ui/kiosk-screenshots.sh <isr-kiosk binary> <output dir>
# Not a CTest test: it is for looking at the pages. Needs Xvfb, xdotool,
# imagemagick, qemu-system-x86_64.
set -euo pipefail
kiosk=${1:?isr-kiosk binary}
out=${2:?output dir}
mkdir -p "$out"
for p in Xvfb xdotool import qemu-system-x86_64; do
  command -v "$p" >/dev/null || { echo "SKIP: $p not installed"; exit 77; }
done
work=$(mktemp -d)
# As root QEMU runs as isr-qemu: it must pass through to the sockets inside.
chmod 711 "$work"
display=:97
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

Xvfb $display -screen 0 1280x800x24 -nolisten tcp &
pids+=($!)
qemu-system-x86_64 -nodefaults -vga std -display none -machine q35 -accel tcg -m 64 \
  -vnc "unix:$work/vnc.sock" &
pids+=($!)
for _ in $(seq 50); do [ -S "$work/vnc.sock" ] && break; sleep 0.2; done
export DISPLAY=$display

start_kiosk() {
  "$kiosk" --fake-backend --fake-display "$work/vnc.sock" --idle-timeout "${1:-600}" \
    --idle-warning "${2:-30}" &
  kiosk_pid=$!
  pids+=($kiosk_pid)
  sleep 3
}
stop_kiosk() { kill "$kiosk_pid"; wait "$kiosk_pid" 2>/dev/null || true; }
shot() { import -window root "$out/$1.png"; echo "$out/$1.png"; }
sign_in() {
  xdotool type --delay 30 "$1"; xdotool key Return
  xdotool type --delay 30 "$2"; xdotool key Return
}

# Happy path: sign-in, progress, running (with the bar), leaving.
start_kiosk 600 30
shot 01-sign-in
sign_in demo demo
sleep 1.6; shot 02-progress-fetching
sleep 4.5; shot 03-running
xdotool mousemove 640 12 click 1; sleep 0.5; shot 04-running-bar
xdotool mousemove 1200 40 click 1; sleep 0.7; shot 05-saving
sleep 2.6; shot 06-leave-now
stop_kiosk

# Wrong password, then the take-over dialog.
start_kiosk
sign_in demo nope
sleep 1.2; shot 07-wrong-password
stop_kiosk
start_kiosk
sign_in busy busy
sleep 1.8; shot 08-take-over
stop_kiosk

# Store unreachable while fetching: the error page.
start_kiosk
sign_in offline offline
sleep 2.2; shot 09-error
stop_kiosk

# The idle warning.
start_kiosk 12 10
sign_in demo demo
sleep 10; shot 10-idle-warning
stop_kiosk
