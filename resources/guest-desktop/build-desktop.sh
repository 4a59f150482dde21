#!/bin/sh
# Builds the isr reference desktop guest: Debian 12 with Xorg (modesetting),
# IceWM, xterm, mousepad, qemu-guest-agent, tpm2-tools, alsa-utils and
# efibootmgr, autologin into the graphical session, on a disk that boots by
# itself under SeaBIOS and OVMF (resources/bootdisk/assemble-disk.sh).
#
#   OUTDIR/desktop.img   raw GPT disk, sparse (default 4G apparent)
#
# usage: build-desktop.sh OUTDIR [--size 4G] [--mirror URL] [--security-mirror URL]
#
# Needs root (mmdebstrap's chroot mode; owners and device nodes in the root
# file system) and network access to Debian's archive only: the mirror is the
# one this machine's apt uses (/etc/apt/sources.list*), else deb.debian.org.
# The output is cached like resources/guest: OUTDIR/inputs.sha256 is a
# checksum of this script, the assembler, the package list and the options;
# when it matches, nothing is rebuilt. flock on OUTDIR/.lock serialises
# concurrent builders. The archive's content is not part of the checksum: a
# rebuild after a Debian point release may pick newer packages.
#
# In the guest: user "isr" (password "isr") is logged in on tty1, which runs
# startx -> IceWM with an xterm open (title "isr-term"); root is logged in on
# the serial console ttyS0 (for tests; a real deployment would not do that).
set -eu

usage() {
    echo "usage: $0 OUTDIR [--size 4G] [--mirror URL] [--security-mirror URL]" >&2
    exit 2
}
die() {
    echo "build-desktop: $*" >&2
    exit 1
}

[ $# -ge 1 ] || usage
OUTDIR=$1
shift
SIZE=4G
MIRROR=
SECMIRROR=
while [ $# -gt 0 ]; do
    case $1 in
    --size) [ $# -ge 2 ] || usage; SIZE=$2; shift 2 ;;
    --mirror) [ $# -ge 2 ] || usage; MIRROR=$2; shift 2 ;;
    --security-mirror) [ $# -ge 2 ] || usage; SECMIRROR=$2; shift 2 ;;
    *) usage ;;
    esac
done

PATH=$PATH:/sbin:/usr/sbin
command -v mmdebstrap >/dev/null 2>&1 || die "missing mmdebstrap (install mmdebstrap)"

SELF=$(readlink -f "$0")
HERE=$(dirname "$SELF")
ASSEMBLE=$HERE/../bootdisk/assemble-disk.sh
[ -r "$ASSEMBLE" ] || die "missing $ASSEMBLE"
ASSEMBLE=$(readlink -f "$ASSEMBLE")

# The host's mirrors: the first URI of a deb822 or one-line source whose
# suites name bookworm (resp. bookworm-security).
host_mirror() { # $1: suite
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v want="$1" '
            /^deb / { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { u = $i; s = $(i + 1); break }
                      if (s == want) { print u; exit } }
            /^URIs:/ { u = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == want && u != "") { print u; exit } }
            /^$/ { u = "" }' "$f"
    done | head -n 1
}
[ -n "$MIRROR" ] || MIRROR=$(host_mirror bookworm)
[ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
[ -n "$SECMIRROR" ] || SECMIRROR=$(host_mirror bookworm-security)
[ -n "$SECMIRROR" ] || SECMIRROR=http://deb.debian.org/debian-security

# Everything the desktop has; Recommends are off, so this is the whole list
# plus dependencies.
PACKAGES="systemd-sysv udev dbus libpam-systemd kmod procps iproute2 less nano
linux-image-amd64 initramfs-tools
xserver-xorg-core xserver-xorg-input-libinput xinit x11-xserver-utils
icewm xterm mousepad xfonts-base fonts-dejavu-core x11-utils
qemu-guest-agent tpm2-tools alsa-utils efibootmgr"
PACKAGES=$(echo $PACKAGES)

SUM=$({
    echo "size=$SIZE mirror=$MIRROR security=$SECMIRROR packages=$PACKAGES"
    sha256sum "$SELF" "$ASSEMBLE" | cut -d' ' -f1
} | sha256sum | cut -d' ' -f1)

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
exec 9>"$OUTDIR/.lock"
flock 9
if [ -f "$OUTDIR/inputs.sha256" ] && [ "$(cat "$OUTDIR/inputs.sha256")" = "$SUM" ] &&
    [ -f "$OUTDIR/desktop.img" ]; then
    echo "build-desktop: up to date in $OUTDIR"
    exit 0
fi
rm -f "$OUTDIR/inputs.sha256"
# Only building needs root (a cached image is used by anyone).
[ "$(id -u)" -eq 0 ] || die "building needs root (mmdebstrap's chroot mode keeps owners and device nodes)"

START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/isr-desktop-XXXXXX")
# Never delete through a mount mmdebstrap left behind (an interrupted run may
# leave /proc or /sys mounted in the tree).
cleanup() {
    if grep -q " $WORK/" /proc/mounts; then
        echo "build-desktop: $WORK still has mounts; not removing it" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
ROOT=$WORK/root

# Configuration written into the tree after the packages are installed
# (mmdebstrap --customize-hook runs with the tree as $1).
cat >"$WORK/customize.sh" <<'EOS'
#!/bin/sh
set -eu
R=$1
echo isr-desktop >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 isr-desktop\n' >"$R/etc/hosts"
printf 'LABEL=isr-root / ext4 rw,discard,errors=remount-ro 0 1\n' >"$R/etc/fstab"
# A fresh machine id on first boot (then kept on the parcel's disk).
: >"$R/etc/machine-id"
ln -sf /usr/share/zoneinfo/Etc/UTC "$R/etc/localtime"
echo Etc/UTC >"$R/etc/timezone"

chroot "$R" useradd -m -s /bin/bash -G audio,video,input,tty isr
echo 'isr:isr' | chroot "$R" chpasswd
echo 'root:isr' | chroot "$R" chpasswd

# tty1: autologin as isr; ttyS0: autologin as root for tests.
mkdir -p "$R/etc/systemd/system/getty@tty1.service.d" "$R/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$R/etc/systemd/system/getty@tty1.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin isr --noclear %I $TERM
EOF
cat >"$R/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM
EOF
# /run/ready: the serial shell is up (tests/support's waitForShell reads it).
echo 'f /run/ready 0644 root root - isr desktop' >"$R/etc/tmpfiles.d/isr-ready.conf"
cat >>"$R/root/.bashrc" <<'EOF'
# Tests drive this console: no colours, no pager, a fixed prompt.
export PAGER=cat SYSTEMD_PAGER= TERM=dumb
PS1='isr-desktop# '
EOF

# The graphical session: startx on tty1 after autologin.
cat >"$R/home/isr/.bash_profile" <<'EOF'
[ -f ~/.bashrc ] && . ~/.bashrc
if [ -z "${DISPLAY:-}" ] && [ "$(tty)" = /dev/tty1 ]; then
    exec startx -- -nolisten tcp vt1 >~/.xsession.log 2>&1
fi
EOF
cat >"$R/home/isr/.xinitrc" <<'EOF'
#!/bin/sh
# No screen blanking: a resumed desktop must show what it showed.
xset s off -dpms
exec icewm-session
EOF
mkdir -p "$R/home/isr/.icewm"
cat >"$R/home/isr/.icewm/preferences" <<'EOF'
DesktopBackgroundColor="rgb:1f/5f/7f"
DesktopBackgroundImage=""
TaskBarClockLeds=0
ShowSettingsMenu=0
EOF
cat >"$R/home/isr/.icewm/theme" <<'EOF'
Theme="default"
EOF
cat >"$R/home/isr/.icewm/startup" <<'EOF'
#!/bin/sh
# One window open from the start: tests type into it.
xterm -T isr-term -geometry 80x24+40+40 -bg white -fg black -fa Monospace -fs 11 &
# Tests wait for this file: the xterm's window is mapped.
for i in $(seq 120); do
    xwininfo -name isr-term 2>/dev/null | grep -q IsViewable && break
    sleep 1
done
echo "$(date +%s)" >/tmp/isr-desktop-ready
EOF
chmod 755 "$R/home/isr/.xinitrc" "$R/home/isr/.icewm/startup"
chroot "$R" chown -R isr:isr /home/isr

# DHCP on the user-mode network; no waiting for it at boot.
mkdir -p "$R/etc/systemd/network"
cat >"$R/etc/systemd/network/50-wired.network" <<'EOF'
[Match]
Name=en* eth*
[Network]
DHCP=yes
EOF
chroot "$R" systemctl enable systemd-networkd.service >/dev/null 2>&1
chroot "$R" systemctl mask systemd-networkd-wait-online.service apt-daily.timer \
    apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
# Boot-time: no fsck waits on the virtual disk beyond the default, quiet boot.
rm -rf "$R/var/cache/apt/"*.bin "$R/var/lib/apt/lists/"* "$R/usr/share/doc/"* "$R/usr/share/man/"*
EOS
chmod 755 "$WORK/customize.sh"

echo "build-desktop: mmdebstrap from $MIRROR"
mmdebstrap --mode=root --variant=minbase --format=directory \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --include="$(echo "$PACKAGES" | tr ' ' ',')" \
    --customize-hook="$WORK/customize.sh \"\$1\"" \
    bookworm "$ROOT" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
    "deb $SECMIRROR bookworm-security main" || die "mmdebstrap failed"

KERNEL=$(ls -1 "$ROOT"/boot/vmlinuz-* | sort -V | tail -n 1)
INITRD=$ROOT/boot/initrd.img-${KERNEL##*/vmlinuz-}
[ -r "$INITRD" ] || die "no initrd for $KERNEL"

sh "$ASSEMBLE" "$WORK/desktop.img" --kernel "$KERNEL" --initrd "$INITRD" --size "$SIZE" \
    --esp-size 256M --root-partition "$ROOT" --label isr \
    --cmdline "console=tty0 console=ttyS0,115200 quiet" || die "assembling the disk failed"

mv -f "$WORK/desktop.img" "$OUTDIR/desktop.img"
echo "$SUM" >"$OUTDIR/inputs.sha256"
END=$(date +%s)
echo "build-desktop: built $OUTDIR/desktop.img in $((END - START)) s:" \
    "$(du -h --apparent-size "$OUTDIR/desktop.img" | cut -f1) apparent," \
    "$(du -h "$OUTDIR/desktop.img" | cut -f1) allocated"
