#!/bin/bash
# Installs the isr .deb (as root, with apt-get so the dependencies come too),
# checks that every file the unit and the man pages name is installed where
# they say, that the installed binaries run, then purges the package.
# Usage: packaging/test-deb.sh [path/to/isr_*.deb]   (default: build it)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ge 1 ]; then
    deb=$(realpath "$1")
else
    deb=$("$src/packaging/build-deb.sh" | tail -n 1)
fi
[ "$(id -u)" = 0 ] || { echo "test-deb.sh: must run as root" >&2; exit 1; }
if dpkg-query -W -f='${Status}' isr 2>/dev/null | grep -q "install ok installed"; then
    echo "test-deb.sh: package isr is already installed; refusing to touch it" >&2
    exit 1
fi

failures=0
check() { # description, command...
    local what=$1
    shift
    if "$@" >/tmp/test-deb.out 2>&1; then
        echo "ok: $what"
    else
        echo "FAIL: $what"
        sed 's/^/    /' /tmp/test-deb.out
        failures=$((failures + 1))
    fi
}

cleanup() { apt-get purge -y isr >/dev/null 2>&1 || true; }
trap cleanup EXIT

(cd "$(dirname "$deb")" && DEBIAN_FRONTEND=noninteractive apt-get install -y "./$(basename "$deb")")

files=$(dpkg -L isr)
listed() { grep -qx "$1" <<<"$files" && [ -e "$1" ]; }
for f in /usr/bin/isrctl /usr/bin/isr-kiosk /usr/share/isr/guest/build-guest.sh \
    /usr/share/isr/guest-desktop/build-desktop.sh /usr/share/isr/bootdisk/assemble-disk.sh \
    /usr/share/man/man1/isrctl.1 /usr/share/man/man1/isr-kiosk.1 \
    /usr/share/doc/isr/kiosk.conf.example /usr/share/doc/isr/examples/isr-kiosk-alerts.yml \
    /etc/isr/kiosk.conf \
    /lib/systemd/system/isr-kiosk.service /usr/lib/isr/isr-kiosk-stop \
    /usr/lib/systemd/logind.conf.d/isr-kiosk.conf /usr/lib/sysctl.d/90-isr-kiosk.conf; do
    check "installed by the package: $f" listed "$f"
done
# Every absolute path the unit executes, and every file the man pages name.
unit=/lib/systemd/system/isr-kiosk.service
for exe in $(sed -n 's/^Exec\(Start\|Stop\)=//p' "$unit" | tr ' ' '\n' | grep '^/'); do
    check "the unit's $exe exists and is executable" test -x "$exe"
done
for page in /usr/share/man/man1/isrctl.1 /usr/share/man/man1/isr-kiosk.1; do
    for f in $(grep -o '^\.I /[^ ]*' "$page" | sed 's/^\.I //; s/\\-/-/g'); do
        case "$f" in
        /var/lib/isr) check "$page names $f (made by postinst)" test -d "$f" ;;
        *) check "$page names $f" listed "$f" ;;
        esac
    done
done
check "grep finds the unit's settings" grep -q '^ExecStart=/usr/bin/cage -- /usr/bin/isr-kiosk$' "$unit"
check "the unit hands the stop to isr-kiosk" \
    grep -q '^ExecStop=/usr/lib/isr/isr-kiosk-stop \$MAINPID [0-9]*$' "$unit"
check "the unit waits for the save" grep -q '^TimeoutStopSec=120$' "$unit"
check "logind waits for the save" \
    grep -q '^InhibitDelayMaxSec=100$' /usr/lib/systemd/logind.conf.d/isr-kiosk.conf
# Issue #16 item 12: SysRq off, no start limit that leaves tty1 empty, no
# quit chord unless staff configure one.
check "the package turns SysRq off" grep -qx 'kernel.sysrq = 0' /usr/lib/sysctl.d/90-isr-kiosk.conf
check "the unit has no start limit (in [Unit])" \
    bash -c "sed -n '/^\[Unit\]/,/^\[Service\]/p' $unit | grep -qx StartLimitIntervalSec=0"
check "the shipped kiosk.conf has no quit chord" grep -qx 'escape_chord = none' /etc/isr/kiosk.conf
# The unit's ExecStop against the installed kiosk, with a shell standing in
# for cage as its parent: SIGTERM reaches isr-kiosk, which exits (at the
# sign-in page: at once), and the helper returns once it is gone.
stop_helper() {
    local parent
    env QT_QPA_PLATFORM=offscreen sh -c '/usr/bin/isr-kiosk --fake-backend --no-virtual-keyboard & wait' \
        >/tmp/test-deb.kiosk 2>&1 &
    parent=$!
    sleep 3
    /usr/lib/isr/isr-kiosk-stop "$parent" 20 || return 1
    wait "$parent" || true
    grep -q "stopping" /tmp/test-deb.kiosk && ! pgrep -x -P "$parent" isr-kiosk
}
check "isr-kiosk-stop stops the kiosk under its parent" stop_helper
# systemctl stop of the installed unit while a session runs needs systemd as
# PID 1 (and a seat for cage); elsewhere say why it is not exercised.
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    echo "skip: systemctl stop of isr-kiosk.service with a session running: not automated yet" \
        "(needs a seat for cage); do it by hand, see packaging/README.md"
else
    echo "skip: systemctl stop of isr-kiosk.service: systemd is not PID 1 here" \
        "(PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown))"
fi
check "isrctl --version from /usr/bin" /usr/bin/isrctl --version
check "isr-kiosk --help from /usr/bin" env QT_QPA_PLATFORM=offscreen /usr/bin/isr-kiosk --help
check "isr-kiosk reads the shipped /etc/isr/kiosk.conf" \
    env QT_QPA_PLATFORM=offscreen /usr/bin/isr-kiosk --version
check "man -w isrctl" man -w isrctl
check "man -w isr-kiosk" man -w isr-kiosk
check "user isr-kiosk exists" getent passwd isr-kiosk
check "user isr-qemu exists (QEMU's account for a root kiosk)" getent passwd isr-qemu
check "/var/lib/isr is owned by isr-kiosk" \
    test "$(stat -c %U:%G /var/lib/isr)" = isr-kiosk:isr-kiosk
check "/etc/isr/kiosk.conf is a conffile" grep -qx /etc/isr/kiosk.conf \
    /var/lib/dpkg/info/isr.conffiles
if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verify $unit" systemd-analyze verify "$unit"
else
    echo "skip: systemd-analyze is not installed"
fi

apt-get purge -y isr >/dev/null
trap - EXIT
check "purge removed the package" bash -c '! dpkg-query -W -f="\${Status}" isr 2>/dev/null | grep -q "ok installed"'
check "purge removed user isr-kiosk" bash -c '! getent passwd isr-kiosk'

if [ "$failures" -ne 0 ]; then
    echo "test-deb.sh: $failures check(s) failed" >&2
    exit 1
fi
echo "test-deb.sh: all checks passed ($deb)"
