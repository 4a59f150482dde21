#!/usr/bin/env bash
# The headless demo: sign in -> resume -> Suspend & Leave -> resume at a
# second kiosk -> Suspend & Leave, through isrctl, printing each timeline.
# Usage: headless-demo.sh [ISRCTL] (default: the build tree's isrctl)
set -euo pipefail
cd "$(dirname "$0")/.."

isrctl=${1:-build/default/app/isrctl/isrctl}
default_data=${XDG_DATA_HOME:-$HOME/.local/share}/isr/demo
# As root QEMU runs as isr-qemu, which cannot pass through root's 0700 home.
if [ "$(id -u)" = 0 ] && [ -z "${XDG_DATA_HOME:-}" ]; then
  default_data=/var/lib/isr-demo/demo
fi
data=${ISR_DEMO_DIR:-$default_data}
store="file://$data/store"

"$isrctl" demo init --data-dir "$data"

run_kiosk() { # kiosk-dir kiosk-id seconds
  local dir=$1 id=$2 secs=$3
  echo "== resume at $id"
  echo demo | "$isrctl" session resume demo demo --store "$store" --kiosk-dir "$dir" \
      --guest-dir "$data/guest" --kiosk-id "$id" --password-stdin &
  local pid=$!
  for _ in $(seq 1 600); do
    if grep -q '"stage":"running"' "$dir/status.json" 2>/dev/null; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; return 1; fi
    sleep 0.5
  done
  echo "== $id is running; the guest works for $secs s"
  sleep "$secs"
  echo "== Suspend & Leave at $id"
  "$isrctl" session suspend --kiosk-dir "$dir"
  wait "$pid"
}

run_kiosk "$data/kiosk-a" kiosk-a 10
run_kiosk "$data/kiosk-b" kiosk-b 10
echo demo | "$isrctl" parcel versions demo demo --store "$store" --password-stdin
