#pragma once
// A firmware-booted parcel's state outside its disk and memory image: the
// UEFI variable store (NVRAM: boot entries, Secure Boot keys) and the
// emulated TPM's state (swtpm: its endorsement seed, NV indexes, PCR
// policy). Both travel with the parcel as one sealed chunk each, referenced
// from the manifest (parcel/FORMAT.md, "nvram" and "tpm_state").
//
// Lifecycle within one session:
//   restore()   before the VM starts: writes <sessionDir>/nvram.fd from the
//               manifest's chunk (a new parcel: the OVMF template) and fills
//               libvirt's swtpm state directory from the manifest's archive
//               (a new parcel: empty, libvirt's swtpm_setup manufactures the TPM).
//   collect()   after the VM was saved (QEMU and swtpm have stopped): reads
//               both back, seals them and uploads what the store lacks
//               (convergent chunks: unchanged state is the same reference,
//               nothing is sent).
//   applyTo()   puts the references into the next manifest.
//   wipe()      removes the TPM state directory (it is outside the session
//               directory, in libvirt's root) — the NVRAM file goes with the
//               session directory.
//
// A chunk that fails verification is Corrupt: the session fails before the
// VM starts and nothing is changed. Not thread-safe: the session's
// controlling thread uses it.

#include "disk/block_device.h"
#include "parcel/parcel.h"
#include "util/result.h"
#include "vm/vm.h"

#include <optional>
#include <string>

namespace isr::session {

class FirmwareState {
public:
    // firmware/tpm from the parcel's spec (sessionVmSpec); tpmStateDir from
    // Hypervisor::tpmStateDir(uuid); firmwareRoot "" = the kiosk's /usr/share.
    void configure(vm::Firmware firmware, bool tpm, std::string sessionDir, std::string tpmStateDir,
                   std::string firmwareRoot = "");

    std::string nvramPath() const { return sessionDir_ + "/nvram.fd"; }
    bool active() const { return uefi() || tpm_; }

    // Before the VM starts. Corrupt if a referenced chunk does not verify,
    // NotFound naming the package if the firmware is not installed.
    Status restore(const parcel::Manifest& base, parcel::Parcels& parcels);
    // After the save. Idempotent: a retried suspend does not read again.
    Status collect(parcel::Parcels& parcels);
    // The references collect() produced (nothing for a parcel without them).
    void applyTo(parcel::Manifest& next) const;
    // Forgets the session and deletes the TPM state directory. Idempotent.
    void wipe();

    // The TPM state directory as one blob and back (regular files of
    // <dir>/tpm2 only, names checked; exposed for tests).
    static Result<Bytes> packTpmState(const std::string& dir);
    static Status unpackTpmState(ByteView archive, const std::string& dir);

private:
    bool uefi() const {
        return firmware_ == vm::Firmware::Uefi || firmware_ == vm::Firmware::UefiSecure;
    }
    vm::Firmware firmware_ = vm::Firmware::DirectKernel;
    bool tpm_ = false;
    std::string sessionDir_;
    std::string tpmStateDir_;
    std::string firmwareRoot_;
    bool collected_ = false;
    std::optional<chunk::ChunkRef> nvram_;
    std::optional<chunk::ChunkRef> tpmState_;
};

// Does the disk look bootable by this firmware? BIOS needs the MBR boot
// signature 0x55AA; UEFI a GPT (header "EFI PART" in LBA 1) with an EFI
// system partition among its entries, or an MBR (a FAT partition on it may
// hold \EFI\BOOT\BOOTX64.EFI). A blank or unpartitioned disk, or a GPT
// without an EFI system partition (a data disk, a disk installed for BIOS),
// fails with NotFound "no boot loader": a clear cause instead of OVMF
// falling through to network boot and its boot menu for ever (seen
// 2026-12-04), or SeaBIOS's "No bootable device", on a screen nobody can
// read in time. What it cannot see: an EFI system partition without a
// loader, or a loader that fails (OVMF then does the same); see README.
Status checkDiskBootable(disk::BlockDevice& disk, vm::Firmware firmware);

} // namespace isr::session
