#!/usr/bin/env bash
# The kiosk end to end under Xvfb: the real isr-kiosk (real session, demo
# parcel made by `isrctl demo init`), driven with xdotool like a person at the
# kiosk. The on-screen keyboard: tapping its keys signs in (wrong password).
# Wrong password -> the error on the sign-in page; demo/demo -> progress
# -> the guest's console; a command typed into it changes the screen; the
# "Suspend & Leave" handle -> saving -> "You can leave now"; a new version is
# committed; the store vanishes -> the error page, nothing lost; sign in
# again -> progress while the memory image streams in -> the guest comes
# back with the typed command on screen, suspend again.
# Screenshots (`import -window root`) go to OUTDIR.
# As root, with ISR_VMHOST naming isr-vmhost, it runs the packaged
# arrangement (issue #16, items 3 and 4): each "kiosk" is isr-vmhost as root
# (the sessions, QEMU as isr-qemu) plus the shell `isr-kiosk --vm-host` as the
# unprivileged user nobody; the test checks who runs what. Otherwise the
# kiosk runs its sessions in process, as `kiosk.sh` does.
#   kiosk-xvfb.sh <isr-kiosk> <isrctl> <source dir> <outdir>
# Exit 77 (skip) with a reason when Xvfb, xdotool or imagemagick is missing.
set -euo pipefail
kiosk=${1:?isr-kiosk binary}
isrctl=${2:?isrctl binary}
src=${3:?source dir}
out=${4:?output dir}
for p in Xvfb xdotool import compare convert qemu-system-x86_64; do
    command -v "$p" >/dev/null || { echo "SKIP: $p not installed (packaging/install-deps.sh)"; exit 77; }
done
[ -x /bin/busybox ] || { echo "SKIP: no /bin/busybox (busybox-static) for the demo guest"; exit 77; }

guest=${ISR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/isr/guest}
/bin/sh "$src/resources/guest/build-guest.sh" "$guest" >/dev/null

mkdir -p "$out"
rm -f "$out"/*.png
work=$(mktemp -d)
# As root QEMU runs as isr-qemu: it must pass through to the sockets inside.
chmod 711 "$work"
pids=()
kiosk_pid=
host_pid=
split=
if [ "$(id -u)" = 0 ] && [ -n "${ISR_VMHOST:-}" ]; then
    split=1
    # The shell's home (Qt's caches) and its copy of the configuration.
    mkdir -p "$work/shell-home"
    chown nobody:nogroup "$work/shell-home"
fi
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
sanitizer_report() { grep -E -A40 "ERROR: [A-Za-z]+Sanitizer|runtime error:" "$work/kiosk.log" 2>/dev/null | head -80; }
fail() {
    echo "FAIL: $*" >&2
    sanitizer_report >&2 || true
    exit 1
}

# A free display: Xvfb picks it and writes its number to fd 3.
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$work/display" 2>"$work/xvfb.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/display" ] && break; sleep 0.1; done
[ -s "$work/display" ] || fail "Xvfb did not start: $(cat "$work/xvfb.log")"
export DISPLAY=:$(head -n1 "$work/display")

"$isrctl" demo init --data-dir "$work/demo" --guest-dir "$guest" >/dev/null
store=file://$work/demo/store
state=$work/k

versions() {
    echo demo | "$isrctl" parcel versions demo demo --json --password-stdin --store "$store" |
        grep -o '"version"' | wc -l
}
# The on-screen keyboard is off unless a segment asks for it, so the flow
# does not depend on the host's input devices (its default, auto, shows it
# when no hardware keyboard is attached). ISR_LOG=info: the log names each
# stage as it begins (the mid-fetch screenshot waits for "stage: restoring").
# The operators' metrics file (issue #18): checked at the end.
printf 'metrics_file = %s\n' "$work/isr-kiosk.prom" >"$work/kiosk.conf"
start_kiosk() {
    if [ -n "$split" ]; then
        rm -f "$work/vmhost.sock"
        ISR_KIOSK_CONFIG="$work/kiosk.conf" ISR_LOG=info "$ISR_VMHOST" --socket "$work/vmhost.sock" \
            --client-user nobody --state-dir "$state" --store "$store" --guest-dir "$guest" \
            >>"$work/kiosk.log" 2>&1 &
        host_pid=$!
        pids+=($host_pid)
        wait_for 60 test -S "$work/vmhost.sock" || fail "isr-vmhost made no socket; log: $(tail -5 "$work/kiosk.log")"
        ISR_KIOSK_CONFIG="$work/kiosk.conf" ISR_LOG=info HOME="$work/shell-home" \
            setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
            "$kiosk" --vm-host "$work/vmhost.sock" "${@:---no-virtual-keyboard}" >>"$work/kiosk.log" 2>&1 &
    else
        ISR_KIOSK_CONFIG="$work/kiosk.conf" ISR_LOG=info "$kiosk" --demo --state-dir "$state" --store "$store" --guest-dir "$guest" \
            "${@:---no-virtual-keyboard}" >>"$work/kiosk.log" 2>&1 &
    fi
    kiosk_pid=$!
    pids+=($kiosk_pid)
    # Until the window has painted something (a loaded machine takes a while
    # to start Qt Quick; the screen is one colour until then), then a moment
    # for the on-screen keyboard's slide-in.
    wait_for 120 painted || fail "the kiosk never painted its window; log: $(tail -5 "$work/kiosk.log")"
    sleep 2
}
painted() {
    import -window root "$work/probe.png" 2>/dev/null &&
        [ "$(identify -format %k "$work/probe.png" 2>/dev/null)" -gt 1 ]
}
# SIGTERM (143) is the only way the kiosk may end here. Under ASan+UBSan (the
# asan-e2e preset) a report goes to its log and aborts it: either fails.
stop_kiosk() {
    local rc=0
    kill "$kiosk_pid" 2>/dev/null || true
    wait "$kiosk_pid" 2>/dev/null || rc=$?
    [ -z "$(sanitizer_report)" ] || fail "sanitizer report in the kiosk's log"
    [ "$rc" = 143 ] || fail "the kiosk ended with status $rc before it was stopped; log: $(tail -5 "$work/kiosk.log")"
    [ -z "$split" ] || stop_host
}
# The host after its shell (the units' order at a stop): it saves whatever
# is still open, then dies of the signal too.
stop_host() {
    local rc=0
    kill "$host_pid" 2>/dev/null || true
    wait "$host_pid" 2>/dev/null || rc=$?
    [ -z "$(sanitizer_report)" ] || fail "sanitizer report in the VM host's log"
    [ "$rc" = 143 ] || fail "isr-vmhost ended with status $rc before it was stopped; log: $(tail -5 "$work/kiosk.log")"
}
shot() { import -window root "$out/$1.png"; echo "screenshot $out/$1.png"; }
sign_in() {
    xdotool type --delay 40 "$1"; xdotool key Return
    xdotool type --delay 40 "$2"; xdotool key Return
}
# Pixels that differ between two screenshots below the top 100 rows (the
# kiosk's handle and the guest's ticking counter live there).
changed() {
    convert "$1" -crop 1280x700+0+100 +repage "$work/a.png"
    convert "$2" -crop 1280x700+0+100 +repage "$work/b.png"
    compare -metric AE "$work/a.png" "$work/b.png" null: 2>&1 || true
}
# The session's QEMU, a child of the kiosk (libvirt's embedded driver).
vm_running() { pgrep -P "$kiosk_pid" qemu-system >/dev/null 2>&1 || pgrep -f "qemu-system.*$state" >/dev/null 2>&1; }
wait_for() { # seconds, command...
    local t=$1; shift
    for _ in $(seq $((t * 2))); do "$@" && return 0; sleep 0.5; done
    return 1
}
sessions_gone() { [ -z "$(ls -A "$state/sessions" 2>/dev/null)" ]; }

# ---- the on-screen keyboard slides up under the focused user-name field ----
# and signing in works by tapping its keys: user "demo", a wrong password
# "dd"; the session's log shows the attempt, so the taps reached the fields.
# Key centres of Qt Virtual Keyboard's QWERTY layout on a 1280x800 screen.
tap() { xdotool mousemove "$1" "$2" click 1; sleep 0.3; }
key_d() { tap 384 550; }
key_e() { tap 321 452; }
key_m() { tap 1022 650; }
key_o() { tap 1085 452; }
key_enter() { tap 1181 747; }
start_kiosk --virtual-keyboard
shot 00-on-screen-keyboard
key_d; key_e; key_m; key_o; key_enter
key_d; key_d; key_enter
wait_for 60 grep -q "authenticating failed" "$work/kiosk.log" ||
    fail "signing in with the on-screen keyboard did nothing; kiosk log: $(tail -5 "$work/kiosk.log")"
sleep 1
shot 00b-on-screen-keyboard-wrong-password
stop_kiosk
: >"$work/kiosk.log"

# ---- wrong password: the sign-in page says so ----
start_kiosk
shot 01-sign-in
n=$(changed "$out/00-on-screen-keyboard.png" "$out/01-sign-in.png")
echo "pixels the on-screen keyboard changed: $n"
[ "${n%%.*}" -gt 20000 ] || fail "no on-screen keyboard with --virtual-keyboard ($n pixels)"

sign_in demo wrong-password
sleep 4
shot 02-wrong-password
stop_kiosk
[ "$(versions)" = 1 ] || fail "a version appeared without a session"

# ---- demo/demo: progress, then the guest's console ----
start_kiosk
sign_in demo demo
wait_for 120 test -d "$state/sessions" || fail "no session directory appeared"
shot 03-progress
wait_for 600 vm_running || fail "the VM did not start; kiosk log: $(tail -20 "$work/kiosk.log")"
sleep 45 # TCG boot of the guest to its shell on tty1
shot 04-running
# Focus is on the display: type a command into the guest's tty1.
xdotool mousemove 640 500 click 1
xdotool type --delay 60 "echo typed-through-the-kiosk"; xdotool key Return
sleep 3
shot 05-typed
n=$(changed "$out/04-running.png" "$out/05-typed.png")
echo "pixels changed by typing: $n"
[ "${n%%.*}" -gt 200 ] || fail "typing into the guest did not change its screen ($n pixels)"
# The packaged arrangement: the shell the person touches is nobody, the VM
# host root, the guest's QEMU isr-qemu (not the shell's user: a QEMU escape
# cannot read the next person's keys through the shell's input devices).
if [ -n "$split" ]; then
    qemu_pid=$(pgrep -f "qemu-system.*$state" | head -n1)
    who() { ps -o user= -p "$1" | tr -d ' '; }
    echo "processes: shell $(who "$kiosk_pid"), VM host $(who "$host_pid"), QEMU $(who "$qemu_pid")"
    [ "$(who "$kiosk_pid")" = nobody ] || fail "the shell runs as $(who "$kiosk_pid"), not nobody"
    [ "$(who "$host_pid")" = root ] || fail "the VM host runs as $(who "$host_pid")"
    [ "$(who "$qemu_pid")" = isr-qemu ] || fail "QEMU runs as $(who "$qemu_pid"), not isr-qemu"
    pgrep -P "$kiosk_pid" >/dev/null && fail "the shell has children: $(pgrep -a -P "$kiosk_pid")"
    # Item 4: the host loaded the guest network filter for isr-qemu's
    # sockets (what it refuses is test_guest_network's, from the guest).
    nft list table inet isr_guest_egress 2>/dev/null | grep -q 'skuid' ||
        fail "no guest network filter while the VM host runs the guest"
fi

# ---- Suspend & Leave through the handle at the top edge ----
xdotool mousemove 640 12 click 1
sleep 1
shot 06-bar
xdotool key Return # the bar focuses "Suspend & Leave"
sleep 2
shot 07-saving
wait_for 900 sessions_gone || fail "the session directory is still there after Suspend & Leave"
sleep 2
shot 08-leave-now
[ "$(versions)" = 2 ] || fail "Suspend & Leave did not commit a version ($(versions) versions)"

# ---- the store vanishes: an error page that says so, nothing lost ----
xdotool mousemove 640 400 click 1 # "Tap anywhere to sign in again"
sleep 2
mv "$work/demo/store" "$work/demo/store.away"
sign_in demo demo
wait_for 60 grep -q "authenticating failed" "$work/kiosk.log" ||
    fail "no failure with the store gone; kiosk log: $(tail -5 "$work/kiosk.log")"
sleep 2
shot 09-error-store-gone
mv "$work/demo/store.away" "$work/demo/store"
xdotool key Return # "Back to sign-in" has the focus (retrying needs the password again)
sleep 2
[ "$(versions)" = 2 ] || fail "the committed version is gone after the store outage"

# ---- sign in again: progress while the memory image streams in, then the same guest ----
lines=$(wc -l <"$work/kiosk.log")
sign_in demo demo
wait_for 300 sh -c "tail -n +$((lines + 1)) '$work/kiosk.log' | grep -q 'stage: restoring'" ||
    fail "the second resume never began restoring; kiosk log: $(tail -5 "$work/kiosk.log")"
sleep 1 # the first chunks' progress (bytes, rate, time left) reaches the page
shot 10-progress-mid-fetch
wait_for 600 vm_running || fail "the VM did not come back"
sleep 15
shot 11-running-again
if [ -n "$split" ]; then
    # The packaged unit's stop (isr-kiosk-stop sends SIGTERM to the shell):
    # the shell asks the host to save, waits for it and dies of the signal.
    mark=$(wc -l <"$work/kiosk.log")
    kill -TERM "$kiosk_pid"
    rc=0
    wait "$kiosk_pid" || rc=$?
    [ "$rc" = 143 ] || fail "the shell ended with status $rc after SIGTERM; log: $(tail -5 "$work/kiosk.log")"
    tail -n +"$((mark + 1))" "$work/kiosk.log" | grep -q "stage: suspending" ||
        fail "the shell's stop did not save the session"
else
    xdotool mousemove 640 12 click 1
    sleep 1
    xdotool key Return
fi
wait_for 900 sessions_gone || fail "second Suspend & Leave did not finish"
sleep 2
[ "$(versions)" = 3 ] || fail "the second Suspend & Leave did not commit a version"
# The metrics file moved with what this kiosk process did: two resumes, two
# saves, the failed sign-in while the store was away, nothing active now.
prom=$work/isr-kiosk.prom
grep -qx 'isr_resume_seconds_count 2' "$prom" || fail "metrics: resumes not counted: $(grep _count "$prom")"
grep -qx 'isr_suspend_seconds_count 2' "$prom" || fail "metrics: saves not counted: $(grep _count "$prom")"
grep -q '^isr_session_failures_total{stage="authenticating",kind="[a-z_]*"} 1$' "$prom" ||
    fail "metrics: the failure is not counted: $(grep failures "$prom")"
grep -qx 'isr_session_active 0' "$prom" || fail "metrics: a session is still counted as active"
if [ -n "$split" ]; then stop_host; else stop_kiosk; fi
vm_running && fail "a VM is left running"
echo "PASS"
