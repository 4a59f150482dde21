#!/usr/bin/env bash
# The README's first command: install what is needed, build, set up the
# embedded default (a local file:// store under your data directory with the
# demo user and the demo parcel, made by `isrctl demo init`) and run it.
#
#   kiosk.sh              the kiosk on your display (isr-kiosk --demo); with
#                         no display, the headless demo instead
#   kiosk.sh --headless   sign in -> resume -> Suspend & Leave -> resume at a
#                         second kiosk -> Suspend & Leave, through isrctl,
#                         printing each timeline
set -euo pipefail
cd "$(dirname "$0")/.."

bash packaging/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default

isrctl=build/default/app/isrctl/isrctl
kiosk=build/default/app/kiosk/isr-kiosk
data=${XDG_DATA_HOME:-$HOME/.local/share}/isr
# As root, QEMU runs as the account isr-qemu (core/vm/README.md,
# Confinement), which cannot pass through root's 0700 home: the demo's
# guest and state go where it may.
if [ "$(id -u)" = 0 ] && [ -z "${XDG_DATA_HOME:-}" ]; then
  data=/var/lib/isr-demo
fi

headless=no
[ "${1:-}" = "--headless" ] && headless=yes
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  if [ "$headless" = no ]; then
    echo "kiosk.sh: no display found; running the headless demo"
  fi
  headless=yes
fi

if [ "$headless" = yes ]; then
  ISR_DEMO_DIR="$data/demo" exec bash packaging/headless-demo.sh "$isrctl"
fi

"$isrctl" demo init --data-dir "$data/demo"
# The demo on a developer's own display gets a way out (a kiosk has none
# unless kiosk.conf names one): Ctrl+Alt+Shift+Q saves and quits.
exec "$kiosk" --demo --store "file://$data/demo/store" --state-dir "$data/kiosk" \
  --guest-dir "$data/demo/guest" --escape-chord Ctrl+Alt+Shift+Q
