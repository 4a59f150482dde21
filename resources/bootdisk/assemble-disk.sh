#!/bin/sh
# Assembles a bootable raw disk image without root: no loop devices, no
# mounts. The ESP is made in a file of its own (mkfs.vfat, mtools) and copied
# in; the ext4 partitions are written straight into the image at their offset
# (mke2fs -E offset=) and SYSLINUX is installed with syslinux --offset, so
# this runs as any user and in CI containers.
#
# usage: assemble-disk.sh OUT.img --kernel VMLINUZ --initrd INITRD
#            [--cmdline "ARGS"] [--size SIZE] [--esp-size SIZE]
#            [--root-partition DIR|TARBALL] [--root-size SIZE]
#            [--extra-partition SIZE] [--label NAME] [--secure-boot]
#
# Layout (GPT; sizes accept K, M, G suffixes, binary):
#   1  ESP  FAT32, also /boot for BIOS ("legacy BIOS bootable" attribute set)
#        /vmlinuz /initrd.img
#        /syslinux/ldlinux.{sys,c32} syslinux.cfg   BIOS: gptmbr.bin -> SYSLINUX
#        /EFI/BOOT/BOOTX64.EFI                     UEFI: systemd-boot
#        /loader/loader.conf /loader/entries/isr.conf
#      with --secure-boot, UEFI instead chains Debian's Microsoft-signed shim
#      -> Debian-signed GRUB (/EFI/BOOT/grubx64.efi, /EFI/debian/grub.cfg)
#      -> the Debian-signed kernel; boots under OVMF_*.ms.fd with Secure Boot.
#   2  root ext4 (label isr-root), only with --root-partition: the directory
#      or tarball's content (mke2fs -d). Unless --cmdline names root=, the
#      command line gets root=PARTUUID=<this partition> rw.
#   3  extra ext4 (label isr-extra), only with --extra-partition: empty.
# --size: the whole disk (sparse); the root partition takes what the others
# leave. Without --size the disk is just large enough (root: content + 25% +
# 64M, or --root-size).
#
# The same kernel command line is used by both loaders. Output is written to
# OUT.img.tmp and renamed, so a half-written image never has the final name.
set -eu

usage() {
    sed -n '6,10p' "$0" | sed 's/^# //' >&2
    exit 2
}
die() {
    echo "assemble-disk: $*" >&2
    exit 1
}

[ $# -ge 1 ] || usage
OUT=$1
shift
KERNEL= INITRD= CMDLINE= SIZE= ESP_SIZE=128M ROOT_SRC= ROOT_SIZE= EXTRA_SIZE=
LABEL=isr SECURE_BOOT=0
while [ $# -gt 0 ]; do
    case $1 in
    --kernel) [ $# -ge 2 ] || usage; KERNEL=$2; shift 2 ;;
    --initrd) [ $# -ge 2 ] || usage; INITRD=$2; shift 2 ;;
    --cmdline) [ $# -ge 2 ] || usage; CMDLINE=$2; shift 2 ;;
    --size) [ $# -ge 2 ] || usage; SIZE=$2; shift 2 ;;
    --esp-size) [ $# -ge 2 ] || usage; ESP_SIZE=$2; shift 2 ;;
    --root-partition) [ $# -ge 2 ] || usage; ROOT_SRC=$2; shift 2 ;;
    --root-size) [ $# -ge 2 ] || usage; ROOT_SIZE=$2; shift 2 ;;
    --extra-partition) [ $# -ge 2 ] || usage; EXTRA_SIZE=$2; shift 2 ;;
    --label) [ $# -ge 2 ] || usage; LABEL=$2; shift 2 ;;
    --secure-boot) SECURE_BOOT=1; shift ;;
    *) usage ;;
    esac
done
[ -n "$KERNEL" ] && [ -r "$KERNEL" ] || die "--kernel FILE is required and must be readable"
[ -n "$INITRD" ] && [ -r "$INITRD" ] || die "--initrd FILE is required and must be readable"

PATH=$PATH:/sbin:/usr/sbin
for tool in sgdisk mkfs.vfat mcopy mmd mke2fs syslinux; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "missing tool $tool (Debian: gdisk dosfstools mtools e2fsprogs syslinux)"
done
SYSLINUX_MBR=/usr/lib/syslinux/mbr/gptmbr.bin
SYSTEMD_BOOT=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
# Overridable to use files unpacked from the .debs (apt-get download + dpkg-deb -x).
SHIM=${ISR_SHIM:-/usr/lib/shim/shimx64.efi.signed}
SIGNED_GRUB=${ISR_SIGNED_GRUB:-/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed}
[ -r "$SYSLINUX_MBR" ] || die "missing $SYSLINUX_MBR (install syslinux-common)"
if [ "$SECURE_BOOT" = 1 ]; then
    [ -r "$SHIM" ] || die "missing $SHIM (install shim-signed)"
    [ -r "$SIGNED_GRUB" ] || die "missing $SIGNED_GRUB (install grub-efi-amd64-signed)"
else
    [ -r "$SYSTEMD_BOOT" ] || die "missing $SYSTEMD_BOOT (install systemd-boot-efi)"
fi

# SIZE (with K/M/G suffix) -> MiB, rounded up; partitions are MiB-aligned.
to_mib() {
    awk -v s="$1" 'BEGIN {
        n = s + 0; u = toupper(substr(s, length(s)));
        if (u == "K") b = n * 1024; else if (u == "M") b = n * 1048576;
        else if (u == "G") b = n * 1073741824; else if (u == "T") b = n * 1099511627776;
        else b = n;
        m = int(b / 1048576); if (m * 1048576 < b) m++; print m }'
}

ESP_MIB=$(to_mib "$ESP_SIZE")
EXTRA_MIB=0
[ -z "$EXTRA_SIZE" ] || EXTRA_MIB=$(to_mib "$EXTRA_SIZE")
ROOT_MIB=0
if [ -n "$ROOT_SRC" ]; then
    [ -e "$ROOT_SRC" ] || die "root source $ROOT_SRC does not exist"
    if [ -n "$ROOT_SIZE" ]; then
        ROOT_MIB=$(to_mib "$ROOT_SIZE")
    elif [ -z "$SIZE" ]; then
        if [ -d "$ROOT_SRC" ]; then
            kib=$(du -sk "$ROOT_SRC" | cut -f1)
        else
            kib=$(($(tar -tvf "$ROOT_SRC" | awk '{ s += $3 } END { printf "%d", s / 1024 }') + 0))
        fi
        ROOT_MIB=$((kib * 5 / 4 / 1024 + 64))
    fi
fi
# 1 MiB before the first partition (protective MBR + GPT), 1 MiB after the
# last (backup GPT).
if [ -n "$SIZE" ]; then
    TOTAL_MIB=$(to_mib "$SIZE")
    if [ -n "$ROOT_SRC" ] && [ -z "$ROOT_SIZE" ]; then
        ROOT_MIB=$((TOTAL_MIB - 2 - ESP_MIB - EXTRA_MIB))
    fi
else
    TOTAL_MIB=$((2 + ESP_MIB + ROOT_MIB + EXTRA_MIB))
fi
[ $((2 + ESP_MIB + ROOT_MIB + EXTRA_MIB)) -le "$TOTAL_MIB" ] ||
    die "partitions ($ESP_MIB + $ROOT_MIB + $EXTRA_MIB MiB) do not fit in $TOTAL_MIB MiB"
[ -z "$ROOT_SRC" ] || [ "$ROOT_MIB" -ge 16 ] || die "root partition too small ($ROOT_MIB MiB)"

# The kernel and initrd must fit on the ESP with room for the loaders.
need_kib=$(($(du -kL "$KERNEL" | cut -f1) + $(du -kL "$INITRD" | cut -f1) + 8192))
[ $((need_kib / 1024)) -lt "$ESP_MIB" ] || die "kernel + initrd need more than --esp-size $ESP_SIZE"

TMP=$OUT.tmp
WORK=$(mktemp -d "${TMPDIR:-/tmp}/isr-bootdisk-XXXXXX")
trap 'rm -rf "$WORK" "$TMP"' EXIT INT TERM
rm -f "$TMP"
truncate -s "${TOTAL_MIB}M" "$TMP"

# Partition table. Sector numbers: 2048 sectors of 512 bytes = 1 MiB.
ESP_START=2048
ESP_END=$((ESP_START + ESP_MIB * 2048 - 1))
set -- -o -n "1:$ESP_START:$ESP_END" -t 1:EF00 -c "1:$LABEL-esp" -A 1:set:2
NEXT=$((ESP_END + 1))
if [ -n "$ROOT_SRC" ]; then
    ROOT_START=$NEXT
    ROOT_END=$((ROOT_START + ROOT_MIB * 2048 - 1))
    set -- "$@" -n "2:$ROOT_START:$ROOT_END" -t 2:8304 -c "2:$LABEL-root"
    NEXT=$((ROOT_END + 1))
fi
if [ "$EXTRA_MIB" -gt 0 ]; then
    EXTRA_START=$NEXT
    EXTRA_END=$((EXTRA_START + EXTRA_MIB * 2048 - 1))
    set -- "$@" -n "3:$EXTRA_START:$EXTRA_END" -t 3:8300 -c "3:$LABEL-extra"
fi
sgdisk "$@" "$TMP" >/dev/null || die "sgdisk failed"
# gptmbr.bin finds the partition with the legacy-BIOS-bootable attribute
# (set above) and runs its boot sector: SYSLINUX's.
dd if="$SYSLINUX_MBR" of="$TMP" bs=440 count=1 conv=notrunc status=none

if [ -n "$ROOT_SRC" ]; then
    ROOT_PARTUUID=$(sgdisk -i 2 "$TMP" | sed -n 's/^Partition unique GUID: //p' | tr 'A-Z' 'a-z')
    case " $CMDLINE " in
    *" root="*) ;;
    *) CMDLINE="root=PARTUUID=$ROOT_PARTUUID rw${CMDLINE:+ $CMDLINE}" ;;
    esac
fi

# --- ESP -------------------------------------------------------------------
# Built as its own file and copied in: mkfs.vfat --offset would size the FAT
# from the whole image file. -h: the FAT's "hidden sectors" = its offset.
ESP_OFF=$((ESP_START * 512))
ESP=$WORK/esp.img
truncate -s "${ESP_MIB}M" "$ESP"
mkfs.vfat -F 32 -h "$ESP_START" -n "$(echo "$LABEL" | cut -c1-11 | tr 'a-z' 'A-Z')" "$ESP" \
    >/dev/null || die "mkfs.vfat failed"
IMG=$ESP
export MTOOLS_SKIP_CHECK=1
mmd -i "$IMG" ::/syslinux ::/EFI ::/EFI/BOOT
mcopy -i "$IMG" "$KERNEL" ::/vmlinuz
mcopy -i "$IMG" "$INITRD" ::/initrd.img

cat >"$WORK/syslinux.cfg" <<EOF
DEFAULT $LABEL
PROMPT 0
TIMEOUT 0
LABEL $LABEL
    LINUX /vmlinuz
    INITRD /initrd.img
    APPEND $CMDLINE
EOF
mcopy -i "$IMG" "$WORK/syslinux.cfg" ::/syslinux/syslinux.cfg

if [ "$SECURE_BOOT" = 1 ]; then
    # shim (signed by Microsoft's UEFI CA) loads grubx64.efi from its own
    # directory and verifies it against Debian's key; Debian's signed GRUB
    # reads $prefix/grub.cfg with prefix /EFI/debian and verifies the kernel
    # through shim; $root is already the ESP it was loaded from. Its embedded
    # config falls back to $cmdpath/grub.cfg, so a copy goes there too.
    # No fbx64.efi: shim would run the fallback instead.
    mmd -i "$IMG" ::/EFI/debian
    mcopy -i "$IMG" "$SHIM" ::/EFI/BOOT/BOOTX64.EFI
    mcopy -i "$IMG" "$SIGNED_GRUB" ::/EFI/BOOT/grubx64.efi
    cat >"$WORK/grub.cfg" <<EOF
set timeout=0
set default=0
menuentry "$LABEL" {
    linux /vmlinuz $CMDLINE
    initrd /initrd.img
}
EOF
    mcopy -i "$IMG" "$WORK/grub.cfg" ::/EFI/debian/grub.cfg
    mcopy -i "$IMG" "$WORK/grub.cfg" ::/EFI/BOOT/grub.cfg
else
    # systemd-boot: one entry, no menu (timeout 0), same command line.
    mmd -i "$IMG" ::/loader ::/loader/entries
    mcopy -i "$IMG" "$SYSTEMD_BOOT" ::/EFI/BOOT/BOOTX64.EFI
    printf 'default %s.conf\ntimeout 0\nconsole-mode keep\neditor no\n' "$LABEL" >"$WORK/loader.conf"
    printf 'title %s\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$LABEL" "$CMDLINE" \
        >"$WORK/entry.conf"
    mcopy -i "$IMG" "$WORK/loader.conf" ::/loader/loader.conf
    mcopy -i "$IMG" "$WORK/entry.conf" "::/loader/entries/$LABEL.conf"
fi

dd if="$ESP" of="$TMP" bs=1M seek="$ESP_OFF" oflag=seek_bytes conv=notrunc,sparse status=none
rm -f "$ESP"
# Writes ldlinux.sys/.c32 into /syslinux and SYSLINUX's FAT boot sector.
syslinux --offset "$ESP_OFF" --install --directory /syslinux "$TMP" || die "syslinux failed"

# --- ext4 partitions, written in place (-E offset) ------------------------
mkext4() {
    mke2fs -q -F -t ext4 "$@"
}
if [ -n "$ROOT_SRC" ]; then
    if [ ! -d "$ROOT_SRC" ]; then
        # mke2fs -d takes tarballs only from e2fsprogs 1.47.1 on (Debian 12
        # has 1.47.0): unpack first. Owners are kept when run as root; as
        # another user every file becomes that user's.
        mkdir "$WORK/root"
        tar -C "$WORK/root" --numeric-owner -xpf "$ROOT_SRC" || die "cannot unpack $ROOT_SRC"
        ROOT_SRC=$WORK/root
    fi
    mkext4 -L isr-root -d "$ROOT_SRC" -E "offset=$((ROOT_START * 512))" \
        "$TMP" $((ROOT_MIB * 1024))k || die "mke2fs (root) failed"
fi
if [ "$EXTRA_MIB" -gt 0 ]; then
    mkext4 -L isr-extra -E "offset=$((EXTRA_START * 512))" \
        "$TMP" $((EXTRA_MIB * 1024))k || die "mke2fs (extra) failed"
fi

sgdisk -v "$TMP" >/dev/null || die "the partition table does not verify"
mv -f "$TMP" "$OUT"
trap 'rm -rf "$WORK"' EXIT INT TERM
echo "assemble-disk: $OUT: ${TOTAL_MIB} MiB, ESP ${ESP_MIB} MiB${ROOT_SRC:+, root ${ROOT_MIB} MiB}${EXTRA_SIZE:+, extra ${EXTRA_MIB} MiB}; cmdline: $CMDLINE"
