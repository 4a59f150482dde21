// VmSpec -> libvirt domain XML, and the checks that keep a spec sane.
#include "vm/vm.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <sstream>

namespace isr::vm {
namespace {

// sockaddr_un.sun_path is 108 bytes including the terminating NUL.
constexpr std::size_t kMaxSocketPath = 107;

std::string xmlEscape(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    for (char c : in) {
        switch (c) {
        case '&':
            out += "&amp;";
            break;
        case '<':
            out += "&lt;";
            break;
        case '>':
            out += "&gt;";
            break;
        case '\'':
            out += "&apos;";
            break;
        case '"':
            out += "&quot;";
            break;
        default:
            out += c;
        }
    }
    return out;
}

bool isHex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool validUuid(std::string_view u) {
    if (u.size() != 36)
        return false;
    for (std::size_t i = 0; i < u.size(); ++i) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? u[i] != '-' : !isHex(u[i]))
            return false;
    }
    return true;
}

bool validName(std::string_view n, std::size_t maxLen) {
    if (n.empty() || n.size() > maxLen)
        return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-' || c == '.';
    });
}

// Absolute, lexically normal (no ".", "..", "//", trailing "/"), printable.
bool cleanAbsolutePath(const std::string& p) {
    if (p.empty() || p[0] != '/' || p.size() > 4096)
        return false;
    if (std::any_of(p.begin(), p.end(),
                    [](char c) { return (unsigned char)c < 0x20 || c == 0x7f; }))
        return false;
    std::filesystem::path path(p);
    return path.lexically_normal().string() == p && p.find("//") == std::string::npos &&
           (p.size() == 1 || p.back() != '/');
}

bool isUnder(const std::string& path, const std::string& dir) {
    std::string d = std::filesystem::path(dir).lexically_normal().string();
    while (d.size() > 1 && d.back() == '/')
        d.pop_back();
    return path.size() > d.size() + 1 && path.compare(0, d.size(), d) == 0 && path[d.size()] == '/';
}

Error invalid(std::string msg) {
    return Error(Errc::InvalidArgument, "VM spec: " + std::move(msg));
}

// A stable MAC for the VM's NIC: libvirt's ABI check on restore compares it,
// so it must come from the spec, not from chance. 52:54:00 is QEMU's prefix.
std::string macFromUuid(const std::string& uuid) {
    std::string hex;
    for (char c : uuid)
        if (c != '-')
            hex += char(std::tolower((unsigned char)c));
    char buf[32];
    std::snprintf(buf, sizeof buf, "52:54:00:%c%c:%c%c:%c%c", hex[0], hex[1], hex[2], hex[3],
                  hex[4], hex[5]);
    return buf;
}

// Lazy memory (VmSpec::ramFile): guest RAM as a shared file mapping, so the
// file is the RAM and a migration with x-ignore-shared leaves it out.
// libvirt then names the backend pc.ram, the RAM block id anonymous RAM has
// too: a normal save of either kind restores into the other. The path is
// libvirt's own (<root>/lib/qemu/ram/<id>-<name>/pc.ram); vm.cpp puts a
// link to spec.ramFile there and checks QEMU mapped that file. Never
// <allocation mode='immediate'/> (prealloc reads and writes all of RAM)
// nor <discard/> (QEMU would punch the RAM out of the file at exit).
std::string memoryBackingXml(const VmSpec& spec) {
    if (spec.ramFile.empty())
        return "";
    return "  <memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>\n";
}

// The VM generation ID device (VmSpec::genid). Without a value libvirt
// draws a fresh ID when it parses the XML: boot, and the -incoming start of
// restoreLazy, whose XML is ours. A restore() must name the ID the image was
// saved with (libvirt 9.0's ABI check compares it: "Target domain genid ...
// does not match source"); libvirt then starts QEMU with a new one anyway
// (qemuSaveImageStartVM passes VIR_QEMU_PROCESS_START_GEN_VMID), and QEMU's
// vmgenid post_load writes it into guest memory and raises the ACPI
// notification. Both templates emit it only when asked, so the XML of a VM
// without it is byte-for-byte what it was.
std::string genidXml(const VmSpec& spec) {
    if (!spec.genid)
        return "";
    if (spec.savedGenid.empty())
        return "  <genid/>\n";
    return "  <genid>" + xmlEscape(spec.savedGenid) + "</genid>\n";
}

} // namespace

std::string newUuid() {
    std::random_device rd;
    unsigned char b[16];
    for (auto& x : b)
        x = static_cast<unsigned char>(rd());
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    char out[37];
    std::snprintf(out, sizeof out,
                  "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                  b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                  b[14], b[15]);
    return out;
}

Status validateSpec(const VmSpec& spec, const HostConfig& config) {
    if (!validName(spec.name, 64))
        return invalid("name must be 1-64 characters of A-Z a-z 0-9 _ . -");
    if (!validUuid(spec.uuid))
        return invalid("uuid '" + spec.uuid + "' is not a UUID");
    if (!spec.savedGenid.empty() && (!spec.genid || !validUuid(spec.savedGenid)))
        return invalid("saved VM generation ID '" + spec.savedGenid +
                       "' is not a UUID, or the VM has no generation ID device");
    if (spec.memoryMiB < 64)
        return invalid("memory " + std::to_string(spec.memoryMiB) + " MiB is below 64 MiB");
    if (spec.memoryMiB > config.maxMemoryMiB)
        return invalid("memory " + std::to_string(spec.memoryMiB) + " MiB exceeds this kiosk's " +
                       std::to_string(config.maxMemoryMiB) + " MiB");
    if (spec.vcpus == 0)
        return invalid("0 vCPUs");
    if (spec.vcpus > config.maxVcpus)
        return invalid(std::to_string(spec.vcpus) + " vCPUs exceed this kiosk's " +
                       std::to_string(config.maxVcpus));
    // Only machine types that pin a QEMU version: a save file records the
    // machine, and an unversioned alias ("q35") may mean something else on
    // the next kiosk.
    if (!validName(spec.machine, 32) ||
        !(spec.machine.rfind("pc-q35-", 0) == 0 || spec.machine.rfind("pc-i440fx-", 0) == 0))
        return invalid("machine '" + spec.machine + "' is not a versioned pc-q35-/pc-i440fx- type");
    if (!validName(spec.cpuModel, 32) || spec.cpuModel == "host")
        return invalid("CPU model '" + spec.cpuModel + "' is not a named portable model");
    if (spec.cmdline.size() > 1024 ||
        std::any_of(spec.cmdline.begin(), spec.cmdline.end(),
                    [](char c) { return (unsigned char)c < 0x20 || c == 0x7f; }))
        return invalid("kernel command line too long or has control characters");

    if (config.stateDir.empty() || !cleanAbsolutePath(config.stateDir))
        return invalid("kiosk state directory '" + config.stateDir +
                       "' is not a clean absolute path");
    auto bootAllowed = [&](const std::string& p) {
        if (isUnder(p, config.stateDir))
            return true;
        return std::any_of(config.bootDirs.begin(), config.bootDirs.end(),
                           [&](const std::string& d) { return isUnder(p, d); });
    };
    auto checkBootFile = [&](const std::string& what, const std::string& p) -> Status {
        if (!cleanAbsolutePath(p))
            return invalid(what + " '" + p + "' is not a clean absolute path");
        if (!bootAllowed(p))
            return invalid(what + " '" + p + "' is outside the state and boot directories");
        return {};
    };
    if (spec.firmware == Firmware::DirectKernel) {
        ISR_TRY_STATUS(checkBootFile("kernel", spec.kernelPath));
        if (!spec.initrdPath.empty())
            ISR_TRY_STATUS(checkBootFile("initrd", spec.initrdPath));
        // The demo guest's hardware is fixed: firmware-only devices are refused.
        if (spec.tpm || !spec.nvramPath.empty() || !spec.loaderPath.empty() ||
            !spec.agentSocketPath.empty())
            return invalid("TPM, NVRAM, loader and agent socket need firmware boot");
    } else {
        if (!spec.kernelPath.empty() || !spec.initrdPath.empty())
            return invalid("firmware boot takes no kernel or initrd");
        bool uefi = spec.firmware == Firmware::Uefi || spec.firmware == Firmware::UefiSecure;
        if (uefi) {
            // The loader comes from the kiosk's firmware package, the
            // variable store from the session directory.
            if (!cleanAbsolutePath(spec.loaderPath) ||
                !(isUnder(spec.loaderPath, "/usr/share/OVMF") ||
                  isUnder(spec.loaderPath, "/usr/share/qemu") ||
                  isUnder(spec.loaderPath, config.stateDir)))
                return invalid("UEFI loader '" + spec.loaderPath +
                               "' is not firmware of this kiosk");
            if (!cleanAbsolutePath(spec.nvramPath) || !isUnder(spec.nvramPath, config.stateDir))
                return invalid("NVRAM '" + spec.nvramPath +
                               "' is outside the kiosk state directory");
        } else if (!spec.loaderPath.empty() || !spec.nvramPath.empty()) {
            return invalid("BIOS boot takes no loader or NVRAM");
        }
        if (spec.firmware == Firmware::UefiSecure && spec.machine.rfind("pc-q35-", 0) != 0)
            return invalid("Secure Boot needs a q35 machine (SMM)");
        if (spec.displayWidth > 8192 || spec.displayHeight > 8192 ||
            (spec.displayWidth == 0) != (spec.displayHeight == 0) ||
            (spec.displayWidth != 0 && (spec.displayWidth < 320 || spec.displayHeight < 200)))
            return invalid("display size " + std::to_string(spec.displayWidth) + "x" +
                           std::to_string(spec.displayHeight) + " is out of range");
        if (spec.audio != "none" && spec.audio != "pulseaudio" && spec.audio != "alsa")
            return invalid("audio backend '" + spec.audio + "' is not none, pulseaudio or alsa");
    }
    auto checkSocket = [&](const std::string& what, const std::string& p) -> Status {
        if (!cleanAbsolutePath(p))
            return invalid(what + " '" + p + "' is not a clean absolute path");
        if (!isUnder(p, config.stateDir))
            return invalid(what + " '" + p + "' is outside the kiosk state directory");
        if (p.size() > kMaxSocketPath)
            return invalid(what + " '" + p + "' is longer than a UNIX socket path may be");
        return {};
    };
    if (!spec.ramFile.empty() && !cleanAbsolutePath(spec.ramFile))
        return invalid("RAM file '" + spec.ramFile + "' is not a clean absolute path");
    ISR_TRY_STATUS(checkSocket("disk socket", spec.diskSocketPath));
    if (!spec.agentSocketPath.empty()) {
        ISR_TRY_STATUS(checkSocket("agent socket", spec.agentSocketPath));
        if (spec.agentSocketPath == spec.diskSocketPath ||
            spec.agentSocketPath == spec.serialSocketPath)
            return invalid("agent socket shares a path with another socket");
    }
    if (!spec.serialSocketPath.empty()) {
        ISR_TRY_STATUS(checkSocket("serial socket", spec.serialSocketPath));
        if (spec.serialSocketPath == spec.diskSocketPath)
            return invalid("serial and disk sockets are the same path");
    }
    return {};
}

namespace {

// The <domain> start tag, with libvirt's QEMU namespace when the domain
// passes QEMU something libvirt has no XML for (qemuPassthroughXml).
std::string domainStartTag(Accelerator accel, const std::string& passthrough) {
    std::string tag =
        std::string("<domain type='") + (accel == Accelerator::Kvm ? "kvm" : "qemu") + "'";
    if (!passthrough.empty())
        tag += " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'";
    return tag + ">\n";
}

// What libvirt has no XML for: QEMU's environment, the RAM preload library
// (HostConfig::ramPreload), for file-backed RAM only (anonymous RAM has no
// FUSE faults to shrink); and `-incoming defer` for restoreIncoming
// (libvirt's own restore issues migrate-incoming right after launch, before
// x-ignore-shared could be set). Neither is part of libvirt's ABI check: a
// save restores with or without them. libvirt marks such a domain
// "tainted: custom-argv" in its log.
// And, for QemuPassthrough::quickCpuReadback, a QEMU capability libvirt
// is told to forget (<qemu:capabilities>, in libvirt's domain schema): it
// changes how libvirt reads the CPU back, not QEMU's command line
// (compared: the same); libvirt marks the domain "tainted:
// custom-hypervisor-feature".
std::string qemuPassthroughXml(const VmSpec& spec, const QemuPassthrough& qemu) {
    std::string inner;
    if (qemu.incomingDefer)
        inner += "<qemu:arg value='-incoming'/><qemu:arg value='defer'/>";
    if (!spec.ramFile.empty() && !qemu.ramPreload.empty())
        inner += "<qemu:env name='LD_PRELOAD' value='" + xmlEscape(qemu.ramPreload) + "'/>";
    std::string xml;
    if (!inner.empty())
        xml += "  <qemu:commandline>" + inner + "</qemu:commandline>\n";
    if (qemu.quickCpuReadback)
        xml += "  <qemu:capabilities><qemu:del capability='cpu-unavailable-features'/>"
               "</qemu:capabilities>\n";
    return xml;
}

// The firmware profile: the parcel's own disk booted by SeaBIOS or OVMF, and
// the devices a desktop needs. The demo guest's XML (below) is untouched:
// its saved memory images must keep restoring, and a restore checks that
// the virtual hardware is the same.
std::string buildFirmwareDomainXml(const VmSpec& spec, Accelerator accel,
                                   const std::string& passthrough) {
    const bool uefi = spec.firmware == Firmware::Uefi || spec.firmware == Firmware::UefiSecure;
    const bool secure = spec.firmware == Firmware::UefiSecure;
    const bool q35 = spec.machine.rfind("pc-q35-", 0) == 0;
    std::ostringstream x;
    x << domainStartTag(accel, passthrough) << "  <name>" << xmlEscape(spec.name) << "</name>\n"
      << "  <uuid>" << xmlEscape(spec.uuid) << "</uuid>\n"
      << genidXml(spec) << "  <memory unit='MiB'>" << spec.memoryMiB << "</memory>\n"
      << "  <currentMemory unit='MiB'>" << spec.memoryMiB << "</currentMemory>\n"
      << memoryBackingXml(spec) << "  <vcpu placement='static'>" << spec.vcpus << "</vcpu>\n"
      << "  <os>\n"
      << "    <type arch='x86_64' machine='" << xmlEscape(spec.machine) << "'>hvm</type>\n";
    if (uefi) {
        // Explicit files, no firmware auto-selection: the loader is the
        // kiosk's (Debian's ovmf), the variable store the parcel's own.
        x << "    <loader readonly='yes' secure='" << (secure ? "yes" : "no") << "' type='pflash'>"
          << xmlEscape(spec.loaderPath) << "</loader>\n"
          << "    <nvram>" << xmlEscape(spec.nvramPath) << "</nvram>\n";
    }
    x << "  </os>\n"
      << "  <features><acpi/>";
    if (secure)
        x << "<smm state='on'/>"; // OVMF's Secure Boot build protects its variables with SMM
    x << "</features>\n"
      << "  <cpu mode='custom' match='exact' check='none'>\n"
      << "    <model fallback='forbid'>" << xmlEscape(spec.cpuModel) << "</model>\n"
      << "  </cpu>\n"
      // The guest keeps UTC in its RTC (Linux); the guest agent sets the
      // system clock after a restore (syncGuestTime).
      << "  <clock offset='utc'/>\n"
      << "  <on_poweroff>destroy</on_poweroff>\n"
      << "  <on_reboot>restart</on_reboot>\n"
      << "  <on_crash>destroy</on_crash>\n"
      << "  <devices>\n"
      << "    <disk type='network' device='disk'>\n"
      << "      <driver name='qemu' type='raw' discard='unmap' error_policy='stop'/>\n"
      << "      <source protocol='nbd'>\n"
      << "        <host transport='unix' socket='" << xmlEscape(spec.diskSocketPath) << "'/>\n"
      << "      </source>\n"
      << "      <target dev='vda' bus='virtio'/>\n"
      // The only boot device: no PXE, no CD-ROM.
      << "      <boot order='1'/>\n"
      << "    </disk>\n"
      << "    <interface type='user'>\n"
      << "      <mac address='" << macFromUuid(spec.uuid) << "'/>\n"
      << "      <model type='virtio'/>\n"
      << "      <rom enabled='no'/>\n"
      << "    </interface>\n"
      << "    <input type='tablet' bus='usb'><address type='usb' bus='0' port='1'/></input>\n"
      << "    <input type='keyboard' bus='ps2'/>\n"
      << "    <input type='mouse' bus='ps2'/>\n"
      // VNC only through openGraphicsFd(); QEMU's VNC server speaks the
      // extended key event, so keys arrive as scancodes, layout-free.
      << "    <graphics type='vnc'><listen type='none'/></graphics>\n"
      // virtio-vga: VGA for SeaBIOS and OVMF's GOP, then virtio-gpu with
      // EDID; the resolution is the preferred mode the guest sees.
      << "    <video><model type='virtio' heads='1' primary='yes'>";
    if (spec.displayWidth != 0)
        x << "<resolution x='" << spec.displayWidth << "' y='" << spec.displayHeight << "'/>";
    x << "</model></video>\n";
    if (!spec.serialSocketPath.empty()) {
        x << "    <serial type='unix'>\n"
          << "      <source mode='bind' path='" << xmlEscape(spec.serialSocketPath) << "'/>\n"
          << "      <target port='0'/>\n"
          << "    </serial>\n";
    }
    x << "    <channel type='unix'>\n";
    if (!spec.agentSocketPath.empty())
        x << "      <source mode='bind' path='" << xmlEscape(spec.agentSocketPath) << "'/>\n";
    x << "      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
      << "    </channel>\n"
      // ich9 HDA on q35 (ich6 on i440fx); its output goes to the kiosk's
      // audio, or nowhere ('none': silent, not an error).
      << "    <sound model='" << (q35 ? "ich9" : "ich6") << "'><audio id='1'/></sound>\n"
      << "    <audio id='1' type='" << xmlEscape(spec.audio) << "'/>\n"
      << "    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\n";
    if (spec.tpm) {
        // libvirt runs swtpm; persistent_state keeps its state directory
        // when the transient domain stops (saved), so the session can read
        // it back (session/firmware_state.h).
        x << "    <tpm model='" << (q35 ? "tpm-crb" : "tpm-tis") << "'>\n"
          << "      <backend type='emulator' version='2.0' persistent_state='yes'/>\n"
          << "    </tpm>\n";
    }
    x << "    <memballoon model='virtio' freePageReporting='on'/>\n"
      << "  </devices>\n"
      << passthrough << "</domain>\n";
    return x.str();
}

} // namespace

const char* firmwareName(Firmware firmware) {
    switch (firmware) {
    case Firmware::DirectKernel:
        return "direct-kernel";
    case Firmware::Bios:
        return "bios";
    case Firmware::Uefi:
        return "uefi";
    case Firmware::UefiSecure:
        return "uefi-secure";
    }
    return "?";
}

FirmwareFiles firmwareFiles(Firmware firmware, const std::string& root) {
    switch (firmware) {
    case Firmware::DirectKernel:
        return {};
    case Firmware::Bios:
        // QEMU loads SeaBIOS itself (bios-256k.bin, a symlink into seabios).
        return {root + "/usr/share/seabios/bios-256k.bin", "", "seabios"};
    case Firmware::Uefi:
        return {root + "/usr/share/OVMF/OVMF_CODE_4M.fd", root + "/usr/share/OVMF/OVMF_VARS_4M.fd",
                "ovmf"};
    case Firmware::UefiSecure:
        // Secure Boot build with Microsoft's keys enrolled in the template
        // (Windows 11, distributions with a signed shim).
        return {root + "/usr/share/OVMF/OVMF_CODE_4M.ms.fd",
                root + "/usr/share/OVMF/OVMF_VARS_4M.ms.fd", "ovmf"};
    }
    return {};
}

Status checkFirmwareInstalled(Firmware firmware, const std::string& root) {
    FirmwareFiles f = firmwareFiles(firmware, root);
    for (const std::string& p : {f.code, f.varsTemplate}) {
        if (p.empty())
            continue;
        std::error_code ec;
        if (!std::filesystem::exists(p, ec))
            return Error(Errc::NotFound, std::string(firmwareName(firmware)) + " firmware file " +
                                             p + " is missing: install the Debian package '" +
                                             f.package + "'");
    }
    return {};
}

std::string buildDomainXml(const VmSpec& spec, Accelerator accel, const std::string& dacLabel,
                           const QemuPassthrough& qemu) {
    const std::string passthrough = qemuPassthroughXml(spec, qemu);
    if (spec.firmware != Firmware::DirectKernel)
        return buildFirmwareDomainXml(spec, accel, passthrough);
    std::ostringstream x;
    x << domainStartTag(accel, passthrough) << "  <name>" << xmlEscape(spec.name) << "</name>\n"
      << "  <uuid>" << xmlEscape(spec.uuid) << "</uuid>\n"
      << genidXml(spec) << "  <memory unit='MiB'>" << spec.memoryMiB << "</memory>\n"
      << "  <currentMemory unit='MiB'>" << spec.memoryMiB << "</currentMemory>\n"
      << memoryBackingXml(spec) << "  <vcpu placement='static'>" << spec.vcpus << "</vcpu>\n"
      << "  <os>\n"
      << "    <type arch='x86_64' machine='" << xmlEscape(spec.machine) << "'>hvm</type>\n"
      << "    <kernel>" << xmlEscape(spec.kernelPath) << "</kernel>\n";
    if (!spec.initrdPath.empty())
        x << "    <initrd>" << xmlEscape(spec.initrdPath) << "</initrd>\n";
    x << "    <cmdline>" << xmlEscape(spec.cmdline) << "</cmdline>\n"
      << "  </os>\n"
      << "  <features><acpi/></features>\n"
      // A named model, never host-passthrough: the memory image must restore
      // on a kiosk with a different CPU.
      << "  <cpu mode='custom' match='exact' check='none'>\n"
      << "    <model fallback='forbid'>" << xmlEscape(spec.cpuModel) << "</model>\n"
      << "  </cpu>\n"
      << "  <clock offset='utc'/>\n"
      << "  <on_poweroff>destroy</on_poweroff>\n"
      << "  <on_reboot>restart</on_reboot>\n"
      << "  <on_crash>destroy</on_crash>\n"
      << "  <devices>\n"
      // The disk is our NBD server; a failed request pauses the VM (the
      // session can fix the cause and resume) instead of corrupting the guest.
      << "    <disk type='network' device='disk'>\n"
      << "      <driver name='qemu' type='raw' discard='unmap' error_policy='stop'/>\n"
      << "      <source protocol='nbd'>\n"
      << "        <host transport='unix' socket='" << xmlEscape(spec.diskSocketPath) << "'/>\n"
      << "      </source>\n"
      << "      <target dev='vda' bus='virtio'/>\n"
      << "    </disk>\n"
      // User-mode networking only: the guest reaches out, nothing reaches in.
      << "    <interface type='user'>\n"
      << "      <mac address='" << macFromUuid(spec.uuid) << "'/>\n"
      << "      <model type='virtio'/>\n"
      // No iPXE option ROM: we boot the kernel directly, and under TCG the
      // ROM costs seconds of every boot.
      << "      <rom enabled='no'/>\n"
      << "    </interface>\n"
      // libvirt assigns USB ports only when a domain starts, so a restore's
      // fresh XML would lack the port the saved one has and fail the ABI
      // check: pin it.
      << "    <input type='tablet' bus='usb'><address type='usb' bus='0' port='1'/></input>\n"
      << "    <input type='keyboard' bus='ps2'/>\n"
      << "    <input type='mouse' bus='ps2'/>\n"
      << "    <graphics type='vnc'><listen type='none'/></graphics>\n"
      << "    <video><model type='vga' vram='16384' heads='1' primary='yes'/></video>\n";
    if (!spec.serialSocketPath.empty()) {
        x << "    <serial type='unix'>\n"
          << "      <source mode='bind' path='" << xmlEscape(spec.serialSocketPath) << "'/>\n"
          << "      <target port='0'/>\n"
          << "    </serial>\n";
    }
    // The guest agent's channel: with qemu-guest-agent in the guest,
    // syncGuestTime() works after a restore. libvirt picks the socket path
    // under its own root.
    x << "    <channel type='unix'>\n"
      << "      <target type='virtio' name='org.qemu.guest_agent.0'/>\n"
      << "    </channel>\n";
    // Free page reporting hands pages the guest freed back to the host, so
    // they are not in the save file.
    x << "    <memballoon model='virtio' freePageReporting='on'/>\n"
      << "  </devices>\n";
    // As root, QEMU runs as isr-qemu (qemu.conf). The kernel and initrd are
    // shared, root-owned and world-readable: with relabelling on, libvirt
    // would chown them to QEMU's uid while the VM runs (writable by it). No
    // relabelling: QEMU reads them as "other", its sockets come to it as
    // file descriptors libvirt opened, and the NBD socket is granted by
    // group (confinement.h). Not part of libvirt's ABI check: saved images
    // restore across this change.
    if (!dacLabel.empty())
        x << "  <seclabel type='static' model='dac' relabel='no'><label>" << xmlEscape(dacLabel)
          << "</label></seclabel>\n";
    x << passthrough << "</domain>\n";
    return x.str();
}

// Layout of libvirt 9.0's qemu_saveimage.h (host byte order; libvirt itself
// byte-swaps a header whose version looks swapped, so do we).
namespace {
constexpr std::size_t kMagic = 16;
Error notASaveImage(const std::string& why) {
    return Error(Errc::Corrupt, "not a libvirt save image: " + why);
}
} // namespace

Result<std::uint64_t> saveImageHeaderSize(ByteView head) {
    constexpr std::size_t kMaxXml = 16u << 20; // libvirt's own cap is 10 MiB
    if (head.size() < kSaveImageHeader)
        return notASaveImage("shorter than its header");
    const std::string_view magic(reinterpret_cast<const char*>(head.data()), kMagic);
    if (magic == "LibvirtQemudPart")
        return notASaveImage("an unfinished save (\"LibvirtQemudPart\")");
    if (magic != "LibvirtQemudSave")
        return notASaveImage("bad magic");
    std::uint32_t version = 0, dataLen = 0;
    std::memcpy(&version, head.data() + kMagic, 4);
    std::memcpy(&dataLen, head.data() + kMagic + 4, 4);
    if (version > 0xffff) {
        version = __builtin_bswap32(version);
        dataLen = __builtin_bswap32(dataLen);
    }
    if (version < 1 || version > 2)
        return notASaveImage("header version " + std::to_string(version));
    if (dataLen == 0 || dataLen > kMaxXml)
        return notASaveImage("XML length " + std::to_string(dataLen));
    return kSaveImageHeader + std::uint64_t(dataLen);
}

Result<std::optional<SavedDomain>> savedDomain(ByteView head) {
    constexpr std::size_t kHeader = kSaveImageHeader;
    if (head.size() < kHeader)
        return std::optional<SavedDomain>();
    ISR_TRY_ASSIGN(const std::uint64_t headerSize, saveImageHeaderSize(head));
    if (head.size() < headerSize)
        return std::optional<SavedDomain>();
    auto u32 = [&](std::size_t at) {
        std::uint32_t v = 0;
        std::memcpy(&v, head.data() + at, 4);
        return v;
    };
    const std::size_t dataLen = std::size_t(headerSize - kHeader);
    const std::string_view data(reinterpret_cast<const char*>(head.data()) + kHeader, dataLen);
    const std::string_view xml = data.substr(0, data.find('\0'));
    // libvirt writes <name> as the domain element's first child, then
    // <uuid>, then <genid> when the domain has one (virDomainDefFormat).
    const std::size_t domain = xml.find("<domain");
    const std::size_t open = domain == std::string_view::npos ? domain : xml.find("<name>", domain);
    const std::size_t close = open == std::string_view::npos ? open : xml.find("</name>", open + 6);
    if (close == std::string_view::npos)
        return notASaveImage("no domain name in its XML");
    SavedDomain saved;
    saved.name = std::string(xml.substr(open + 6, close - open - 6));
    std::uint32_t format = u32(kMagic + 12);
    if (u32(kMagic) > 0xffff) // a byte-swapped header (saveImageHeaderSize)
        format = __builtin_bswap32(format);
    saved.raw = format == 0;
    if (!validName(saved.name, 64))
        return notASaveImage("domain name is not 1-64 characters of A-Z a-z 0-9 _ . -");
    const std::size_t uuidEnd = xml.find("</uuid>", close);
    if (uuidEnd != std::string_view::npos) {
        std::string_view rest = xml.substr(uuidEnd + 7);
        rest.remove_prefix(std::min(rest.find_first_not_of(" \t\r\n"), rest.size()));
        constexpr std::string_view kOpen = "<genid>", kClose = "</genid>";
        if (rest.substr(0, kOpen.size()) == kOpen) {
            const std::size_t end = rest.find(kClose);
            saved.genid = std::string(rest.substr(kOpen.size(), end - kOpen.size()));
            if (end == std::string_view::npos || !validUuid(saved.genid))
                return notASaveImage("its VM generation ID is not a UUID");
        }
    }
    return std::optional<SavedDomain>(std::move(saved));
}

} // namespace isr::vm
