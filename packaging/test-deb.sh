#!/bin/bash
# Installs the isr .deb (as root, with apt-get so the dependencies come too),
# checks that every file the units and the man pages name is installed where
# they say, that the installed binaries run (the VM host as root, stopped by
# SIGTERM as its unit stops it), then purges the package.
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

# An upgrade from the layout before the VM host, as far as it goes without
# systemd: the old postinst's isr-kiosk (in kvm) owning /var/lib/isr and a
# file in it. postinst must hand them to root and take isr-kiosk out of kvm.
# Only on a machine with neither (purge at the end removes both).
old_layout=no
if ! getent passwd isr-kiosk >/dev/null && [ ! -e /var/lib/isr ]; then
    addgroup --system --quiet isr-kiosk
    adduser --system --quiet --ingroup isr-kiosk --home /var/lib/isr --no-create-home \
        --shell /usr/sbin/nologin isr-kiosk
    if getent group kvm >/dev/null; then adduser --quiet isr-kiosk kvm >/dev/null; fi
    install -d -o isr-kiosk -g isr-kiosk -m 0750 /var/lib/isr /var/lib/isr/cache
    install -o isr-kiosk -g isr-kiosk -m 0600 /dev/null /var/lib/isr/cache/old-chunk
    old_layout=yes
else
    echo "skip: upgrade from the old /var/lib/isr layout: user isr-kiosk or /var/lib/isr" \
        "already exists here"
fi

(cd "$(dirname "$deb")" && DEBIAN_FRONTEND=noninteractive apt-get install -y "./$(basename "$deb")")
if [ "$old_layout" = yes ]; then
    check "postinst hands the old layout's files to root" \
        test "$(stat -c %U:%G /var/lib/isr/cache /var/lib/isr/cache/old-chunk | sort -u)" = root:root
fi

files=$(dpkg -L isr)
listed() { grep -qx "$1" <<<"$files" && [ -e "$1" ]; }
for f in /usr/bin/isrctl /usr/bin/isr-kiosk /usr/share/isr/guest/build-guest.sh \
    /usr/share/isr/guest-desktop/build-desktop.sh /usr/share/isr/bootdisk/assemble-disk.sh \
    /usr/lib/isr/isr-vmhost \
    /usr/share/man/man1/isrctl.1 /usr/share/man/man1/isr-kiosk.1 /usr/share/man/man8/isr-vmhost.8 \
    /usr/share/doc/isr/kiosk.conf.example /usr/share/doc/isr/examples/isr-kiosk-alerts.yml \
    /etc/isr/kiosk.conf \
    /lib/systemd/system/isr-kiosk.service /lib/systemd/system/isr-vmhost.service \
    /usr/lib/isr/isr-kiosk-stop \
    /usr/lib/systemd/logind.conf.d/isr-kiosk.conf /usr/lib/sysctl.d/90-isr-kiosk.conf; do
    check "installed by the package: $f" listed "$f"
done
# Every absolute path the units execute (not the socket the shell is
# given, /run/isr/...), and every file the man pages name.
unit=/lib/systemd/system/isr-kiosk.service
hostunit=/lib/systemd/system/isr-vmhost.service
for u in "$unit" "$hostunit"; do
    for exe in $(sed -n 's/^Exec\(Start\|Stop\)=//p' "$u" | tr ' ' '\n' | grep '^/' | grep -v '^/run/'); do
        check "$(basename "$u")'s $exe exists and is executable" test -x "$exe"
    done
done
for page in /usr/share/man/man1/isrctl.1 /usr/share/man/man1/isr-kiosk.1 \
    /usr/share/man/man8/isr-vmhost.8; do
    for f in $(grep -o '^\.I /[^ ]*' "$page" | sed 's/^\.I //; s/\\-/-/g'); do
        case "$f" in
        /var/lib/isr) check "$page names $f (made by postinst)" test -d "$f" ;;
        *) check "$page names $f" listed "$f" ;;
        esac
    done
done
check "grep finds the unit's settings" \
    grep -q '^ExecStart=/usr/bin/cage -- /usr/bin/isr-kiosk --vm-host /run/isr/vmhost.sock$' "$unit"
check "the unit hands the stop to isr-kiosk" \
    grep -q '^ExecStop=/usr/lib/isr/isr-kiosk-stop \$MAINPID [0-9]*$' "$unit"
check "the unit waits for the save" grep -q '^TimeoutStopSec=120$' "$unit"
# Issue #16 items 3 and 4: the shell starts no VM, the root host does.
check "the kiosk unit needs the VM host and stops before it" \
    bash -c "grep -qx Requires=isr-vmhost.service $unit && grep -qx After=isr-vmhost.service $unit"
check "the kiosk unit does not put the shell in kvm" \
    bash -c "grep '^SupplementaryGroups=' $unit | grep -qv -w kvm"
check "the kiosk unit has no state directory" bash -c "! grep -q '^StateDirectory=' $unit"
check "the host unit runs isr-vmhost as root" \
    bash -c "grep -qx ExecStart=/usr/lib/isr/isr-vmhost $hostunit && ! grep -q '^User=' $hostunit"
check "the host unit signals the host only, and waits for the save" \
    bash -c "grep -qx KillMode=mixed $hostunit && grep -qx TimeoutStopSec=120 $hostunit"
check "the host unit's /run/isr and /var/lib/isr are 0711" \
    bash -c "grep -qx RuntimeDirectoryMode=0711 $hostunit && grep -qx StateDirectoryMode=0711 $hostunit"
check "logind waits for the save" \
    grep -q '^InhibitDelayMaxSec=100$' /usr/lib/systemd/logind.conf.d/isr-kiosk.conf
# Issue #16 item 12: SysRq off, no start limit that leaves tty1 empty, no
# quit chord unless staff configure one.
check "the package turns SysRq off" grep -qx 'kernel.sysrq = 0' /usr/lib/sysctl.d/90-isr-kiosk.conf
for u in "$unit" "$hostunit"; do
    check "$(basename "$u") has no start limit (in [Unit])" \
        bash -c "sed -n '/^\[Unit\]/,/^\[Service\]/p' $u | grep -qx StartLimitIntervalSec=0"
done
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
check "isr-vmhost --help from /usr/lib/isr" /usr/lib/isr/isr-vmhost --help
# The installed host as its unit runs it (root), on a private socket and
# state directory with a store that does not exist (nothing is opened
# before a sign-in): the socket is the shell's group's only, and SIGTERM
# at the sign-in state ends it at once, dying of the signal (143 to a
# shell), as systemd's stop (KillMode=mixed) expects.
vmhost_socket_and_stop() {
    local dir pid waited=0 rc=0
    dir=$(mktemp -d /tmp/test-deb.vmhost.XXXXXX)
    chmod 0711 "$dir"
    install -d -m 0711 "$dir/state"
    /usr/lib/isr/isr-vmhost --socket "$dir/vmhost.sock" --store file:///nonexistent \
        --state-dir "$dir/state" >"$dir/log" 2>&1 &
    pid=$!
    while [ ! -S "$dir/vmhost.sock" ] && kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 100 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if [ ! -S "$dir/vmhost.sock" ]; then
        echo "no socket at $dir/vmhost.sock after $((waited / 10)) s"
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        cat "$dir/log"
        rm -rf "$dir"
        return 1
    fi
    local owner
    owner=$(stat -c '%U:%G %a' "$dir/vmhost.sock")
    echo "socket: $owner"
    [ "$owner" = "root:isr-kiosk 660" ] || rc=1
    kill -TERM "$pid"
    waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 100 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "still running 10 s after SIGTERM"
        kill -KILL "$pid"
        rc=1
    fi
    local status=0
    wait "$pid" || status=$?
    echo "exit status $status after about $((waited / 10)) s"
    [ "$status" = 143 ] || rc=1
    [ "$rc" = 0 ] || cat "$dir/log"
    rm -rf "$dir"
    return "$rc"
}
check "isr-vmhost as root: socket root:isr-kiosk 0660, SIGTERM ends it (143) within 10 s" \
    vmhost_socket_and_stop
check "isr-kiosk reads the shipped /etc/isr/kiosk.conf" \
    env QT_QPA_PLATFORM=offscreen /usr/bin/isr-kiosk --version
check "man -w isrctl" man -w isrctl
check "man -w isr-kiosk" man -w isr-kiosk
check "man -w isr-vmhost" man -w 8 isr-vmhost
check "user isr-kiosk exists" getent passwd isr-kiosk
check "user isr-qemu exists (QEMU's account for a root kiosk)" getent passwd isr-qemu
# The VM host's (root), 0711: QEMU (isr-qemu) passes through, nobody lists.
check "/var/lib/isr is owned by root, mode 711" \
    test "$(stat -c '%U %a' /var/lib/isr)" = "root 711"
check "user isr-kiosk is not in kvm (the shell starts no VM)" \
    bash -c "! id -nG isr-kiosk | tr ' ' '\n' | grep -qx kvm"
check "/etc/isr/kiosk.conf is a conffile" grep -qx /etc/isr/kiosk.conf \
    /var/lib/dpkg/info/isr.conffiles
if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verify $unit" systemd-analyze verify "$unit"
    check "systemd-analyze verify $hostunit" systemd-analyze verify "$hostunit"
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
