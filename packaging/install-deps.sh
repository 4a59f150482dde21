#!/usr/bin/env bash
# Installs every Debian 12 package isr needs to build, run and test.
# Idempotent: re-running only installs what is missing. Needs root (or sudo).
#
# Groups are listed separately so a later issue can see at a glance why a
# package is here; keep one package per line so diffs stay readable.
set -euo pipefail

build=(
  build-essential
  cmake
  ninja-build
  pkg-config
  clang-format
  git
  ccache
  dpkg-dev   # dpkg-shlibdeps for `cpack -G DEB` (packaging/build-deb.sh)
)
# tests/fuzz/run.sh: the `fuzz` preset builds with clang and links libFuzzer,
# whose runtime (libclang_rt.fuzzer*.a) Debian 12 ships in libclang-rt-14-dev.
fuzz=(
  clang
  libclang-rt-14-dev
)
libs=(
  libsodium-dev
  libcurl4-openssl-dev
  libxml2-dev          # core/store: S3 response bodies (s3_protocol.cpp)
  nlohmann-json3-dev   # core/util: JSON (json.cpp; header-only)
  libsqlite3-dev
  libzstd-dev
  libvirt-dev
  libvncserver-dev
  libfuse3-dev         # core/disk: guest RAM served lazily over FUSE (issue #17)
)
qt=(
  qt6-base-dev
  qt6-declarative-dev
  qt6-declarative-dev-tools
  qt6-virtualkeyboard-dev
  qt6-wayland
  qt6-qpa-plugins
  libgl-dev
  qml6-module-qtqml
  qml6-module-qtqml-workerscript
  qml6-module-qtquick
  qml6-module-qtquick-controls
  qml6-module-qtquick-templates
  qml6-module-qtquick-layouts
  qml6-module-qtquick-window
  qml6-module-qtquick-virtualkeyboard
  qt6-virtualkeyboard-plugin
  qml6-module-qt-labs-folderlistmodel
  qml6-module-qttest
)
vm=(
  qemu-system-x86
  qemu-utils
  libvirt-daemon
  libvirt-daemon-driver-qemu
  libvirt-clients
  # Firmware-booted parcels (core/vm, session/firmware_state): SeaBIOS and
  # OVMF (UEFI, Secure Boot), swtpm for a parcel's TPM 2.0 (libvirt runs
  # swtpm_setup from swtpm-tools to manufacture a new TPM).
  seabios
  ovmf
  swtpm
  swtpm-tools
  fuse3      # fusermount3: the kiosk mounts the guest's RAM file (issue #17)
  nftables   # core/vm/egress: the guest network filter (root); tests/reliability: packet loss
)
# The demo/test guest is built from these at run time (kernel + busybox
# initramfs, ext4 home disk made with mke2fs -d, no loop mounts).
guest=(
  linux-image-amd64
  busybox-static
  e2fsprogs
  cpio
  xz-utils
  zstd
)
# resources/bootdisk/assemble-disk.sh: bootable GPT disks without root
# (SYSLINUX for SeaBIOS, systemd-boot for OVMF); resources/guest-desktop:
# the reference desktop's root file system (mmdebstrap). OVMF is in vm above.
bootdisk=(
  gdisk               # sgdisk
  dosfstools          # mkfs.vfat
  mtools              # mcopy/mmd into the ESP image, used by syslinux too
  syslinux            # syslinux --offset on the image file
  syslinux-common     # gptmbr.bin, ldlinux.c32
  systemd-boot-efi    # systemd-bootx64.efi as /EFI/BOOT/BOOTX64.EFI
  mmdebstrap
)
test_tools=(
  xvfb
  xauth
  imagemagick
  xdotool
  libnbd-bin
  ceph-mon
  ceph-osd
  ceph-common
  radosgw
  iproute2
  procps
  cage       # packaging/test-deb.sh: the .deb depends on it (kiosk compositor)
  man-db     # packaging/test-deb.sh: man -w
)

# tests/bench/walkup.sh: the chart (gnuplot's pngcairo terminal).
bench=(
  gnuplot-nox
)

all=("${build[@]}" "${fuzz[@]}" "${libs[@]}" "${qt[@]}" "${vm[@]}" "${guest[@]}" "${bootdisk[@]}" "${test_tools[@]}" "${bench[@]}")

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

missing=()
for p in "${all[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# libvirt's QEMU driver, when its process runs as root (the embedded driver
# in tests and CI), looks up its built-in default user "libvirt-qemu" before
# it reads qemu.conf, and refuses to start without it. libvirt-daemon-system
# would create it but also brings the system daemons, which isr does not use;
# create just the account (as that package's postinst does). QEMU itself then
# runs as isr-qemu, the account core/vm names in its qemu.conf (never root;
# its own, so an escaped QEMU shares a uid with no other service); in group
# kvm for /dev/kvm.
ensure_qemu_user() {
  if ! getent group libvirt-qemu >/dev/null; then
    $SUDO groupadd --system libvirt-qemu
  fi
  if ! getent passwd libvirt-qemu >/dev/null; then
    $SUDO useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt \
      --no-create-home --shell /usr/sbin/nologin --comment "Libvirt Qemu" libvirt-qemu
  fi
  if ! getent group isr-qemu >/dev/null; then
    $SUDO groupadd --system isr-qemu
  fi
  if ! getent passwd isr-qemu >/dev/null; then
    $SUDO useradd --system --gid isr-qemu --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin --comment "isr QEMU" isr-qemu
  fi
  if getent group kvm >/dev/null; then
    $SUDO usermod -a -G kvm isr-qemu
  fi
}

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#all[@]} packages already installed"
  ensure_qemu_user
  exit 0
fi

echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
ensure_qemu_user
