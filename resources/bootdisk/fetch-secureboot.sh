#!/bin/sh
# Fetches Debian's signed Secure Boot chain for assemble-disk.sh --secure-boot
# without installing it: shim-signed (shim, signed by Microsoft's third-party
# UEFI CA) and grub-efi-amd64-signed (GRUB, signed by Debian), downloaded with
# `apt-get download` and unpacked with `dpkg-deb -x` into OUTDIR. Installing
# them would run their postinst against this machine's own boot loader.
#
# usage: fetch-secureboot.sh OUTDIR
# Prints two lines for the assembler's environment:
#   ISR_SHIM=OUTDIR/usr/lib/shim/shimx64.efi.signed
#   ISR_SIGNED_GRUB=OUTDIR/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed
#
# Cached: when both files are there nothing is downloaded (a point release's
# newer shim is picked up by removing OUTDIR). Needs apt's package lists
# (apt-get update) and Debian's archive; any user may run it (apt-get
# download writes to the current directory, here a temporary one).
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUTDIR=$1
SHIM=usr/lib/shim/shimx64.efi.signed
GRUB=usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
exec 9>"$OUTDIR/.lock"
flock 9
if [ ! -f "$OUTDIR/$SHIM" ] || [ ! -f "$OUTDIR/$GRUB" ]; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    # As root, apt's sandbox user _apt must be able to write the directory.
    chmod 0777 "$WORK"
    (cd "$WORK" && apt-get download -q shim-signed grub-efi-amd64-signed >&2) ||
        { echo "fetch-secureboot: apt-get download failed (no archive?)" >&2; exit 1; }
    for deb in "$WORK"/*.deb; do
        dpkg-deb -x "$deb" "$WORK/root"
    done
    for f in "$SHIM" "$GRUB"; do
        [ -f "$WORK/root/$f" ] || { echo "fetch-secureboot: no $f in the packages" >&2; exit 1; }
        mkdir -p "$OUTDIR/$(dirname "$f")"
        cp "$WORK/root/$f" "$OUTDIR/$f.tmp"
        mv "$OUTDIR/$f.tmp" "$OUTDIR/$f"
    done
fi
echo "ISR_SHIM=$OUTDIR/$SHIM"
echo "ISR_SIGNED_GRUB=$OUTDIR/$GRUB"
