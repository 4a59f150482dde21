#pragma once
// The VM a session runs for a parcel: libvirt's domain spec from the
// parcel's manifest and the kiosk's boot profile, with the disk and serial
// sockets in the session directory; and the kiosk's hypervisor settings.

#include "parcel/parcel.h"
#include "session/session.h"
#include "util/result.h"
#include "vm/vm.h"

#include <string>

namespace isr::session {

// A stable per-parcel VM identity: libvirt checks the UUID of a restored
// image against the domain XML, so every kiosk derives the same one from
// user and parcel.
std::string parcelUuid(const std::string& user, const std::string& parcel);

// The firmware a parcel's spec asks for (DirectKernel for "demo-guest").
vm::Firmware parcelFirmware(const parcel::VmSpec& vm);

// Can this kiosk run the parcel's boot profile? "demo-guest", or
// "firmware" with its firmware (seabios / ovmf) and, for a TPM, swtpm
// installed. Unsupported otherwise; *missingPackage names the Debian
// package when one is missing. firmwareRoot: "" = /, tests point elsewhere.
Status bootProfileAvailable(const parcel::VmSpec& vm, std::string* missingPackage,
                            const std::string& firmwareRoot = "");

// guestDir: the "demo-guest" boot profile (vmlinuz, initrd.img).
// serialConsole: ttyS0 on <sessionDir>/serial.sock.
// Boot profile "firmware": the disk boots through SeaBIOS/OVMF; the UEFI
// variable store is <sessionDir>/nvram.fd (session/firmware_state.h puts it
// there), the guest agent's socket <sessionDir>/agent.sock.
vm::VmSpec sessionVmSpec(const std::string& user, const std::string& parcel,
                         const parcel::VmSpec& vm, const std::string& guestDir,
                         const std::string& sessionDir, bool serialConsole,
                         const DesktopOptions& desktop = {});

// The hypervisor a kiosk runs its sessions' VMs on: libvirt's root in the
// state directory, the boot profiles in guestDir; accelerator "" (the best
// available), "kvm" or "tcg" (InvalidArgument otherwise).
Result<vm::HostConfig> kioskHostConfig(const std::string& stateDir, const std::string& guestDir,
                                       const std::string& accelerator);

} // namespace isr::session
