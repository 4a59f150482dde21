#!/bin/sh
# Builds the isr test/demo guest from installed Debian packages:
#   OUTDIR/vmlinuz     the kernel from linux-image-amd64
#   OUTDIR/initrd.img  busybox-static + the virtio/ext4 modules + our init
#   OUTDIR/home.ext4   an ext4 data disk (mke2fs -d, no loop mount)
#
# usage: build-guest.sh OUTDIR [--disk-size 64M] [--kernel-version VER]
#
# The output is cached: OUTDIR/inputs.sha256 records a checksum of every input
# (this script, the kernel, the modules we pack, busybox, the options). When it
# matches, nothing is rebuilt. A lock on OUTDIR/.lock serialises concurrent
# builders (parallel tests). Tests must copy home.ext4 before writing to it.
#
# The guest (see the init below) mounts /dev/vda on /home, shows a shell on
# tty1 (VGA) and on ttyS0 (serial, for tests), and runs a counter: once a
# second it writes "<n> <boot_id>" to /run/counter and draws "isr counter <n>"
# in the top-right corner of tty1. A restored VM continues the same count with
# the same boot_id, which proves it is the same running system.
set -eu

usage() {
    echo "usage: $0 OUTDIR [--disk-size 64M] [--kernel-version VER]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
OUTDIR=$1
shift
DISK_SIZE=64M
KVER=
while [ $# -gt 0 ]; do
    case $1 in
    --disk-size) [ $# -ge 2 ] || usage; DISK_SIZE=$2; shift 2 ;;
    --kernel-version) [ $# -ge 2 ] || usage; KVER=$2; shift 2 ;;
    *) usage ;;
    esac
done

die() {
    echo "build-guest: $*" >&2
    exit 1
}

for tool in cpio mke2fs sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/sbin:/usr/sbin
    command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool"
done

# Pick the newest installed kernel that has both an image and modules.
if [ -z "$KVER" ]; then
    for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sed 's,^/boot/vmlinuz-,,' | sort -V -r); do
        if [ -f "/lib/modules/$k/modules.dep" ]; then
            KVER=$k
            break
        fi
    done
fi
[ -n "$KVER" ] || die "no kernel found (install linux-image-amd64)"
KERNEL=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER
[ -r "$KERNEL" ] || die "kernel image $KERNEL is not readable"
[ -f "$MODDIR/modules.dep" ] || die "$MODDIR/modules.dep missing"
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "missing $BUSYBOX (install busybox-static)"
# The initramfs has no C library: busybox must be the static build.
if command -v file >/dev/null 2>&1; then
    file -L "$BUSYBOX" | grep -q 'statically linked' ||
        die "$BUSYBOX is dynamically linked (install busybox-static)"
fi

# Modules the guest needs; their dependencies are resolved from modules.dep.
# crc32c_generic: ext4's metadata checksums ask the crypto API for "crc32c";
# with no modprobe in the initramfs it must already be loaded (the
# SSE4.2 crc32c-intel would not load on CPU models without SSE4.2).
WANTED="virtio_pci virtio_blk virtio_balloon virtio_net crc32c_generic ext4"

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

# Resolve a module name to its path relative to $MODDIR (via modules.dep).
module_path() {
    awk -F: -v n="$1" '
        { p = $1; b = p; sub(/.*\//, "", b); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", b);
          gsub(/-/, "_", b); if (b == n) { print p; exit } }' "$MODDIR/modules.dep"
}
module_deps() {
    awk -F: -v p="$1" '$1 == p { print $2; exit }' "$MODDIR/modules.dep"
}
# Emit the load order (dependencies first, each once).
ORDER=
add_module() {
    case " $ORDER " in *" $1 "*) return ;; esac
    # modules.dep lists all transitive deps, deepest last: load in reverse.
    deps=$(module_deps "$1")
    rev=
    for d in $deps; do rev="$d $rev"; done
    for d in $rev; do
        case " $ORDER " in *" $d "*) ;; *) ORDER="$ORDER $d" ;; esac
    done
    ORDER="$ORDER $1"
}
for m in $WANTED; do
    p=$(module_path "$m")
    [ -n "$p" ] || die "module $m not found in $MODDIR/modules.dep"
    add_module "$p"
done

# Checksum of every input decides whether the cached output is current.
SELF=$(readlink -f "$0")
inputs_sum() {
    {
        echo "disk-size=$DISK_SIZE kver=$KVER modules=$ORDER"
        sha256sum "$SELF" "$KERNEL" "$BUSYBOX"
        for p in $ORDER; do sha256sum "$MODDIR/$p"; done
    } | sha256sum | cut -d' ' -f1
}
SUM=$(inputs_sum)

exec 9>"$OUTDIR/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if [ -f "$OUTDIR/inputs.sha256" ] && [ "$(cat "$OUTDIR/inputs.sha256")" = "$SUM" ] &&
    [ -f "$OUTDIR/vmlinuz" ] && [ -f "$OUTDIR/initrd.img" ] && [ -f "$OUTDIR/home.ext4" ]; then
    echo "build-guest: up to date in $OUTDIR"
    exit 0
fi
rm -f "$OUTDIR/inputs.sha256"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/isr-guest-XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

ROOT=$WORK/initrd
mkdir -p "$ROOT/bin" "$ROOT/sbin" "$ROOT/etc" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" \
    "$ROOT/run" "$ROOT/home" "$ROOT/tmp" "$ROOT/root" "$ROOT/lib/modules"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$ROOT/bin/$applet"
done
ln -s ../bin/busybox "$ROOT/sbin/init"

# The kernel runs /init. The archive holds no device nodes (building it needs
# no root), so /init mounts devtmpfs first to get /dev/console, then hands over
# to busybox init, which reads /etc/inittab.
cat >"$ROOT/init" <<'EOF'
#!/bin/sh
/bin/mount -t devtmpfs devtmpfs /dev
exec 0<>/dev/console 1>&0 2>&0
exec /sbin/init
EOF
chmod 755 "$ROOT/init"

# Modules, decompressed on the host if the kernel ships them compressed
# (the initramfs has no decompressing insmod).
: >"$ROOT/etc/modules.order"
for p in $ORDER; do
    base=$(basename "$p")
    case $base in
    *.ko.xz) out=${base%.xz}; xz -dc "$MODDIR/$p" >"$ROOT/lib/modules/$out" ;;
    *.ko.zst) out=${base%.zst}; zstd -qdc "$MODDIR/$p" >"$ROOT/lib/modules/$out" ;;
    *.ko.gz) out=${base%.gz}; gzip -dc "$MODDIR/$p" >"$ROOT/lib/modules/$out" ;;
    *) out=$base; cp "$MODDIR/$p" "$ROOT/lib/modules/$out" ;;
    esac
    echo "$out" >>"$ROOT/etc/modules.order"
done

cat >"$ROOT/etc/inittab" <<'EOF'
::sysinit:/etc/rc
::once:/etc/counter
tty1::respawn:-/bin/sh
ttyS0::respawn:-/bin/sh
::ctrlaltdel:/bin/reboot
EOF

cat >"$ROOT/etc/rc" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
hostname isr-guest
# A clean VGA console: the firmware's messages are of no use to the user.
printf '\033[H\033[2J' >/dev/tty1
while read -r m; do
    insmod "/lib/modules/$m" 2>/dev/null || echo "rc: insmod $m failed" >/dev/console
done </etc/modules.order
# virtio_blk probes asynchronously; wait briefly for the disk.
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -b /dev/vda ]; then
    mount -t ext4 -o discard /dev/vda /home || echo "rc: mounting /dev/vda failed" >/dev/console
else
    echo "rc: no /dev/vda" >/dev/console
fi
echo "isr guest ready" >/run/ready
EOF

cat >"$ROOT/etc/counter" <<'EOF'
#!/bin/sh
# Runs for the life of the guest: the number only grows, so a restored
# guest shows a value at least as high as when it was saved.
boot_id=$(cat /proc/sys/kernel/random/boot_id)
n=0
while :; do
    n=$((n + 1))
    echo "$n $boot_id" >/run/counter.tmp && mv /run/counter.tmp /run/counter
    # save cursor, draw at row 1 column 60, restore cursor
    printf '\0337\033[1;60H isr counter %-8d\0338' "$n" >/dev/tty1
    # No guest agent here: after a restore the clock is behind by the time
    # the VM spent saved; QEMU's RTC follows the host, so re-read it.
    [ $((n % 10)) -eq 0 ] && hwclock -s -u 2>/dev/null
    sleep 1
done
EOF

cat >"$ROOT/etc/profile" <<'EOF'
export PATH=/bin:/sbin
export HOME=/root
export PS1='isr-guest:\w# '
EOF
cat >"$ROOT/etc/motd" <<'EOF'
isr demo guest. /home is the parcel disk; /run/counter ticks once a second.
EOF
echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOT/etc/passwd"
echo 'root:x:0:' >"$ROOT/etc/group"
chmod 755 "$ROOT/etc/rc" "$ROOT/etc/counter"

(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 >"$WORK/initrd.img"

# The home disk: a small ext4 with a readme, made without mounting anything.
HOMEDIR=$WORK/home
mkdir -p "$HOMEDIR"
echo "Welcome to the isr demo guest." >"$HOMEDIR/README"
rm -f "$WORK/home.ext4"
mke2fs -q -F -t ext4 -L isr-home -d "$HOMEDIR" "$WORK/home.ext4" "$DISK_SIZE" >/dev/null ||
    die "mke2fs failed"

cp "$KERNEL" "$WORK/vmlinuz"
for f in vmlinuz initrd.img home.ext4; do
    mv -f "$WORK/$f" "$OUTDIR/$f"
done
echo "$SUM" >"$OUTDIR/inputs.sha256"
echo "build-guest: built kernel $KVER, $(wc -w <"$ROOT/etc/modules.order") modules, disk $DISK_SIZE in $OUTDIR"
