#!/usr/bin/env bash
# The reference desktop under the real kiosk in Xvfb, driven with xdotool like
# a person at the kiosk: kiosk A signs in to parcel "desktop" (`isrctl demo
# init --desktop`: UEFI, TPM, 2 GiB), the first use boots it to IceWM's
# desktop (checked by colour: many colours and the white xterm, not a
# console or a black frame), a line typed with xdotool goes through the
# kiosk's VNC display into the xterm, Suspend & Leave through the handle;
# kiosk B (another state directory) signs in: the same xterm with the same
# text (its region compared), Suspend & Leave again. The in-guest checks
# (uptime, clock, sound, NVRAM) are test_e2e_desktop's, over the serial
# console the kiosk does not open.
#   desktop-kiosk-xvfb.sh <isr-kiosk> <isrctl> <source dir> <outdir>
# Screenshots and the kiosk's log go to OUTDIR. Exit 77 (skip) with a reason
# when a prerequisite is missing.
set -euo pipefail
kiosk=${1:?isr-kiosk binary}
isrctl=${2:?isrctl binary}
src=${3:?source dir}
out=${4:?output dir}
for p in Xvfb xdotool import compare convert qemu-system-x86_64 swtpm; do
    command -v "$p" >/dev/null || { echo "SKIP: $p not installed (packaging/install-deps.sh)"; exit 77; }
done
[ -r /usr/share/OVMF/OVMF_CODE_4M.fd ] || { echo "SKIP: no OVMF (install ovmf)"; exit 77; }

desktop=${ISR_DESKTOP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/isr/desktop}
mkdir -p "$out"
rm -f "$out"/*.png
work=$(mktemp -d)
# As root QEMU runs as isr-qemu: it must pass through to the sockets inside.
chmod 711 "$work"
pids=()
kiosk_pid=
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    cp "$work/kiosk.log" "$out/kiosk.log" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
wait_for() { # seconds, command...
    local t=$1; shift
    for _ in $(seq $((t * 2))); do "$@" && return 0; sleep 0.5; done
    return 1
}

Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$work/display" 2>"$work/xvfb.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/display" ] && break; sleep 0.1; done
[ -s "$work/display" ] || fail "Xvfb did not start: $(cat "$work/xvfb.log")"
export DISPLAY=:$(head -n1 "$work/display")

t0=$(date +%s)
"$isrctl" demo init --desktop --data-dir "$work/demo" --desktop-dir "$desktop" >/dev/null
echo "demo init --desktop: $(($(date +%s) - t0)) s"
store=file://$work/demo/store
versions() {
    echo demo | "$isrctl" parcel versions demo desktop --json --password-stdin --store "$store" |
        grep -o '"version"' | wc -l
}

start_kiosk() { # state dir
    state=$1
    ISR_LOG=info "$kiosk" --demo --state-dir "$state" --store "$store" --parcel desktop \
        --no-virtual-keyboard --idle-timeout 7200 --lock-timeout 7200 >>"$work/kiosk.log" 2>&1 &
    kiosk_pid=$!
    pids+=($kiosk_pid)
    wait_for 120 painted || fail "the kiosk never painted its window"
    sleep 2
}
painted() {
    import -window root "$work/probe.png" 2>/dev/null &&
        [ "$(identify -format %k "$work/probe.png" 2>/dev/null)" -gt 1 ]
}
stop_kiosk() {
    local rc=0
    kill "$kiosk_pid" 2>/dev/null || true
    wait "$kiosk_pid" 2>/dev/null || rc=$?
    [ "$rc" = 143 ] || fail "the kiosk ended with status $rc before it was stopped"
}
shot() { import -window root "$out/$1.png"; echo "screenshot $out/$1.png"; }
sign_in() {
    xdotool type --delay 40 demo; xdotool key Return
    xdotool type --delay 40 demo; xdotool key Return
}
vm_running() { pgrep -f "qemu-system.*$state" >/dev/null 2>&1; }
sessions_gone() { [ -z "$(ls -A "$state/sessions" 2>/dev/null)" ]; }
# Fraction of the screen in a colour (fuzz absorbs the kiosk's scaling).
fraction() { # png colour
    convert "$1" -alpha off -fuzz 4% -fill black +opaque "$2" -fill white -opaque "$2" \
        -format '%[fx:mean]' info:
}
# The desktop, not a console or a black frame: many colours (IceWM's
# background and task bar), some of the screen the xterm's white.
is_desktop() {
    import -window root "$work/d.png" 2>/dev/null || return 1
    local colours white
    colours=$(identify -format %k "$work/d.png")
    white=$(fraction "$work/d.png" white)
    awk -v c="$colours" -v w="$white" 'BEGIN { exit !(c > 500 && w > 0.05) }'
}
# The xterm: the bounding box of the white pixels, as WxH+X+Y.
xterm_box() { convert "$1" -alpha off -fuzz 4% -fill black +opaque white -trim -format '%wx%h%O' info:; }
differ() { # png png geometry
    convert "$1" -crop "$3" +repage "$work/a.png"
    convert "$2" -crop "$3" +repage "$work/b.png"
    compare -metric AE -fuzz 2% "$work/a.png" "$work/b.png" null: 2>&1 || true
}

# ---- kiosk A: first use boots the desktop ----
start_kiosk "$work/ka"
sign_in
t0=$(date +%s)
wait_for 600 vm_running || fail "the VM did not start; kiosk log: $(tail -20 "$work/kiosk.log")"
shot a0-starting
wait_for 900 is_desktop || { shot a0-no-desktop; fail "no desktop on screen after 15 min"; }
echo "sign-in to desktop at kiosk A: $(($(date +%s) - t0)) s"
sleep 5
shot a1-desktop
box=$(xterm_box "$out/a1-desktop.png")
echo "xterm at $box"
read -r w h x y < <(echo "$box" | tr 'x+' '  ')
# IceWM gave the only window the focus; the kiosk's display has the
# keyboard once the pointer is over it.
xdotool mousemove 640 400
sleep 1
marker=isr-typed-$RANDOM$RANDOM
xdotool type --delay 80 "echo $marker"; xdotool key Return
sleep 5
shot a2-typed
n=$(differ "$out/a1-desktop.png" "$out/a2-typed.png" "$box")
echo "pixels typing changed in the xterm: $n"
[ "${n%%.*}" -gt 200 ] || fail "typing did not reach the xterm ($n pixels)"
t0=$(date +%s)
xdotool mousemove 640 12 click 1
sleep 1
xdotool key Return # the bar focuses "Suspend & Leave"
wait_for 1200 sessions_gone || fail "the session directory is still there after Suspend & Leave"
echo "Suspend & Leave at kiosk A: $(($(date +%s) - t0)) s"
[ "$(versions)" = 2 ] || fail "Suspend & Leave did not commit a version"
stop_kiosk

# ---- kiosk B: the same window, the same text ----
start_kiosk "$work/kb"
sign_in
t0=$(date +%s)
wait_for 900 vm_running || fail "the VM did not come back"
wait_for 900 is_desktop || { shot b0-no-desktop; fail "no desktop at kiosk B"; }
echo "sign-in to desktop at kiosk B: $(($(date +%s) - t0)) s"
sleep 5
shot b1-resumed
n=$(differ "$out/a2-typed.png" "$out/b1-resumed.png" "$box")
echo "pixels that differ in the xterm between A and B: $n of $((w * h))"
[ "${n%%.*}" -le $((w * h / 200)) ] || fail "the xterm at kiosk B is not the one left at A ($n pixels)"
xdotool mousemove 640 12 click 1
sleep 1
xdotool key Return
wait_for 1200 sessions_gone || fail "second Suspend & Leave did not finish"
[ "$(versions)" = 3 ] || fail "the second Suspend & Leave did not commit a version"
stop_kiosk
vm_running && fail "a VM is left running"
echo "PASS"
