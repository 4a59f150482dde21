#include "session/vm_spec.h"

#include "crypto/crypto.h"

#include <unistd.h>

namespace isr::session {

std::string parcelUuid(const std::string& user, const std::string& parcel) {
    auto h = crypto::hash(asBytes("isr-vm-uuid:" + user + "/" + parcel));
    h[6] = std::uint8_t((h[6] & 0x0f) | 0x50); // version 5-style (name-based)
    h[8] = std::uint8_t((h[8] & 0x3f) | 0x80);
    std::string hex = toHex(ByteView(h.data(), 16));
    return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
           hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

vm::Firmware parcelFirmware(const parcel::VmSpec& vm) {
    if (vm.boot != "firmware")
        return vm::Firmware::DirectKernel;
    if (vm.firmware == "uefi")
        return vm::Firmware::Uefi;
    if (vm.firmware == "uefi-secure")
        return vm::Firmware::UefiSecure;
    return vm::Firmware::Bios;
}

Status bootProfileAvailable(const parcel::VmSpec& vm, std::string* missingPackage,
                            const std::string& firmwareRoot) {
    if (vm.boot == "demo-guest")
        return {};
    if (vm.boot != "firmware")
        return Error(Errc::Unsupported,
                     "boot profile '" + vm.boot + "' is not available on this kiosk");
    vm::Firmware fw = parcelFirmware(vm);
    if (auto st = vm::checkFirmwareInstalled(fw, firmwareRoot); !st.ok()) {
        if (missingPackage)
            *missingPackage = vm::firmwareFiles(fw).package;
        return Error(Errc::Unsupported, st.error().message);
    }
    if (vm.tpm) {
        for (const char* tool : {"/usr/bin/swtpm", "/usr/bin/swtpm_setup"}) {
            if (::access((firmwareRoot + tool).c_str(), X_OK) != 0) {
                if (missingPackage)
                    *missingPackage = std::string(tool).find("setup") != std::string::npos
                                          ? "swtpm-tools"
                                          : "swtpm";
                return Error(Errc::Unsupported, std::string("the parcel has a TPM and ") + tool +
                                                    " is missing on this kiosk");
            }
        }
    }
    return {};
}

vm::VmSpec sessionVmSpec(const std::string& user, const std::string& parcel,
                         const parcel::VmSpec& vm, const std::string& guestDir,
                         const std::string& sessionDir, bool serialConsole,
                         const DesktopOptions& desktop) {
    vm::VmSpec spec;
    // Anonymous: the domain name is in QEMU's command line (`ps`), libvirt's
    // paths and logs, so it names neither user nor parcel (issue #16 item
    // 12). A whole memory image restores under the name it was saved with
    // (libvirt 9.0 refuses another): the session takes that one from the
    // image (vm::savedDomain), so a parcel saved under the old
    // isr-<user>-<parcel> keeps it until its VM next boots.
    spec.name = "isr-" + toHex(crypto::randomBytes(6));
    spec.uuid = parcelUuid(user, parcel);
    spec.memoryMiB = vm.memoryMiB;
    spec.vcpus = vm.vcpus;
    spec.machine = vm.machine;
    spec.cpuModel = vm.cpu;
    spec.firmware = parcelFirmware(vm);
    spec.genid = vm.genid; // what the saved image has; a boot sets it (session.cpp)
    if (spec.firmware == vm::Firmware::DirectKernel) {
        spec.kernelPath = guestDir + "/vmlinuz";
        spec.initrdPath = guestDir + "/initrd.img";
    } else {
        if (spec.firmware == vm::Firmware::Uefi || spec.firmware == vm::Firmware::UefiSecure) {
            spec.loaderPath = vm::firmwareFiles(spec.firmware).code;
            spec.nvramPath = sessionDir + "/nvram.fd";
        }
        spec.tpm = vm.tpm;
        spec.displayWidth = desktop.screenWidth;
        spec.displayHeight = desktop.screenHeight;
        spec.audio = desktop.audio;
        spec.agentSocketPath = sessionDir + "/agent.sock";
    }
    spec.diskSocketPath = sessionDir + "/disk.sock";
    if (serialConsole)
        spec.serialSocketPath = sessionDir + "/serial.sock";
    return spec;
}

Result<vm::HostConfig> kioskHostConfig(const std::string& stateDir, const std::string& guestDir,
                                       const std::string& accelerator) {
    vm::HostConfig hc;
    hc.stateDir = stateDir;
    hc.ramPreload = vm::defaultRamPreload();
    if (!guestDir.empty())
        hc.bootDirs.push_back(guestDir);
    if (accelerator == "kvm")
        hc.accelerator = vm::Accelerator::Kvm;
    else if (accelerator == "tcg")
        hc.accelerator = vm::Accelerator::Tcg;
    else if (!accelerator.empty())
        return Error(Errc::InvalidArgument, "accelerator must be kvm or tcg");
    return hc;
}

} // namespace isr::session
