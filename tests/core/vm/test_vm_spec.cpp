// core/vm without a VM: spec validation and the generated domain XML.
#include "util/hardening.h"
#include "vm/libvirt_host.h"
#include "vm/vm.h"

#include <QTemporaryDir>
#include <QTest>
#include <cstdlib>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

using namespace isr;
using namespace isr::vm;

namespace {
HostConfig host() {
    HostConfig h;
    h.stateDir = "/var/lib/isr";
    h.bootDirs = {"/usr/share/isr/guest"};
    h.maxMemoryMiB = 8192;
    h.maxVcpus = 4;
    return h;
}

VmSpec goodSpec() {
    VmSpec s;
    s.name = "isr-alice-desktop";
    s.uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    s.memoryMiB = 1024;
    s.vcpus = 2;
    s.kernelPath = "/usr/share/isr/guest/vmlinuz";
    s.initrdPath = "/usr/share/isr/guest/initrd.img";
    s.diskSocketPath = "/var/lib/isr/sessions/1/disk.sock";
    s.serialSocketPath = "/var/lib/isr/sessions/1/serial.sock";
    return s;
}

VmSpec firmwareSpec(Firmware fw) {
    VmSpec s = goodSpec();
    s.kernelPath.clear();
    s.initrdPath.clear();
    s.firmware = fw;
    if (fw != Firmware::Bios) {
        s.loaderPath = firmwareFiles(fw).code;
        s.nvramPath = "/var/lib/isr/sessions/1/nvram.fd";
    }
    s.tpm = true;
    s.displayWidth = 1920;
    s.displayHeight = 1080;
    s.agentSocketPath = "/var/lib/isr/sessions/1/agent.sock";
    return s;
}

Errc rejectionOf(const VmSpec& s) {
    auto st = validateSpec(s, host());
    return st.ok() ? Errc::Internal : st.error().code;
}
} // namespace

class TestVmSpec : public QObject {
    Q_OBJECT
private slots:
    // Regression: a state directory under ~/.local/share made libvirt's
    // guest-agent socket path too long and every boot failed.
    void embeddedRootKeepsSocketPathsShort() {
        // Short: <stateDir>/libvirt. (A short path of our own: /tmp/<6 chars>.)
        char shortTempl[] = "/tmp/isXXXXXX";
        QVERIFY(::mkdtemp(shortTempl));
        const std::string shortDir = shortTempl;
        QCOMPARE(*vm::embeddedRootFor(shortDir), shortDir + "/libvirt");
        QTemporaryDir longTmp;
        const std::string longDir = longTmp.path().toStdString() + "/.local/share/isr/demo/kiosk-a";
        auto root = vm::embeddedRootFor(longDir);
        QVERIFY2(root.ok(), root.ok() ? "" : root.error().describe().c_str());
        // The budget: 6 digits of domain id (they count up for the life of
        // the VM host: a million VMs) and libvirt's 20 characters of name.
        auto agentPath = [](const std::string& r) {
            return r + "/lib/qemu/channel/target/domain-999999-isr-alice-desktop-ab/"
                       "org.qemu.guest_agent.0";
        };
        QVERIFY2(agentPath(*root).size() < 108, agentPath(*root).c_str());
        QVERIFY2(agentPath(shortDir + "/libvirt").size() < 108, shortDir.c_str());
        // 26 characters of <stateDir>/libvirt: one too many to keep inside.
        char edgeTempl[] = "/tmp/isr-edgXXXXXX";
        QVERIFY(::mkdtemp(edgeTempl));
        const std::string edge = edgeTempl;
        auto edgeRoot = vm::embeddedRootFor(edge);
        QVERIFY(edgeRoot.ok());
        QVERIFY(*edgeRoot != edge + "/libvirt");
        QVERIFY2(agentPath(*edgeRoot).size() < 108, edgeRoot->c_str());
        QCOMPARE(*vm::embeddedRootFor(longDir), *root); // stable
        auto other = vm::embeddedRootFor(longDir + "-b");
        QVERIFY(other.ok() && *other != *root); // per state dir
        QVERIFY(hardening::checkPrivateDirectory(*root).ok());
        std::filesystem::remove_all(*other);
        std::filesystem::remove_all(*root);
        std::filesystem::remove_all(shortDir);
        std::filesystem::remove_all(*edgeRoot);
        std::filesystem::remove_all(edge);
    }

    // Issue #16 item 11: a runtime directory someone else prepared is refused.
    void hostileRuntimeDirectoryIsRefused() {
        QTemporaryDir tmp;
        const std::string stateDir =
            tmp.path().toStdString() + "/a-state-directory-long-enough-for-the-runtime-root";
        auto expected = vm::embeddedRootFor(stateDir);
        QVERIFY(expected.ok());
        std::filesystem::remove_all(*expected);
        // World-writable, as anyone could have made it first.
        QVERIFY(::mkdir(expected->c_str(), 0777) == 0);
        QVERIFY(::chmod(expected->c_str(), 0777) == 0);
        auto r = vm::embeddedRootFor(stateDir);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::AccessDenied);
        QVERIFY(::rmdir(expected->c_str()) == 0);
        // A symlink to a directory of the attacker's.
        QTemporaryDir theirs;
        QVERIFY(::symlink(theirs.path().toUtf8().constData(), expected->c_str()) == 0);
        r = vm::embeddedRootFor(stateDir);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::AccessDenied);
        QVERIFY(::unlink(expected->c_str()) == 0);
        // Owned by someone else (as root: chown to nobody).
        if (::geteuid() == 0) {
            QVERIFY(::mkdir(expected->c_str(), 0700) == 0);
            QVERIFY(::chown(expected->c_str(), 65534, 65534) == 0);
            r = vm::embeddedRootFor(stateDir);
            QVERIFY(!r.ok());
            QCOMPARE(r.error().code, Errc::AccessDenied);
            QVERIFY(::rmdir(expected->c_str()) == 0);
        }
        // Once gone, a fresh private one is made.
        r = vm::embeddedRootFor(stateDir);
        QVERIFY(r.ok());
        QVERIFY(hardening::checkPrivateDirectory(*r).ok());
        std::filesystem::remove_all(*r);
    }

    void stopReasonFromTheDomainLog() {
        // The lines as libvirt 9.0 writes them to <root>/log/qemu/<name>.log.
        const std::string start = "2026-11-26 05:39:49.235+0000: starting up libvirt version: "
                                  "9.0.0, qemu version: 7.2\nLC_ALL=C ...\n";
        auto stop = [](const std::string& r) {
            return "2026-11-26 05:40:24.333+0000: shutting down, reason=" + r + "\n";
        };
        QCOMPARE(vm::stopReasonFromLog(start), vm::VmStopReason::Unknown);
        QCOMPARE(vm::stopReasonFromLog(start + stop("crashed")), vm::VmStopReason::Crashed);
        QCOMPARE(vm::stopReasonFromLog(start + stop("failed")), vm::VmStopReason::Crashed);
        QCOMPARE(vm::stopReasonFromLog(start + stop("shutdown")), vm::VmStopReason::GuestShutdown);
        QCOMPARE(vm::stopReasonFromLog(start + stop("destroyed")), vm::VmStopReason::Destroyed);
        QCOMPARE(vm::stopReasonFromLog(start + stop("saved")), vm::VmStopReason::Saved);
        QCOMPARE(vm::stopReasonFromLog(start + stop("daemon")), vm::VmStopReason::Other);
        // The last run counts: an earlier run's stop says nothing about
        // one that is still going (or ended without a line yet).
        QCOMPARE(vm::stopReasonFromLog(start + stop("saved") + start), vm::VmStopReason::Unknown);
        QCOMPARE(vm::stopReasonFromLog(start + stop("saved") + start + stop("shutdown")),
                 vm::VmStopReason::GuestShutdown);
        // No trailing newline, and garbage.
        QCOMPARE(vm::stopReasonFromLog("x: shutting down, reason=crashed"),
                 vm::VmStopReason::Crashed);
        QCOMPARE(vm::stopReasonFromLog(std::string("\0\xff shutting down, reason=", 25)),
                 vm::VmStopReason::Other);
    }

    void goodSpecPasses() {
        auto st = validateSpec(goodSpec(), host());
        QVERIFY2(st.ok(), st.ok() ? "" : st.error().describe().c_str());
    }

    void rejectsBadSpecs_data() {
        QTest::addColumn<int>("which");
        QTest::newRow("zero vcpus") << 0;
        QTest::newRow("too many vcpus") << 1;
        QTest::newRow("too much memory") << 2;
        QTest::newRow("too little memory") << 3;
        QTest::newRow("relative kernel") << 4;
        QTest::newRow("kernel outside boot dirs") << 5;
        QTest::newRow("kernel with ..") << 6;
        QTest::newRow("disk socket outside state dir") << 7;
        QTest::newRow("disk socket in a sibling dir with the same prefix") << 8;
        QTest::newRow("serial socket relative") << 9;
        QTest::newRow("socket path too long") << 10;
        QTest::newRow("bad name") << 11;
        QTest::newRow("bad uuid") << 12;
        QTest::newRow("unversioned machine") << 13;
        QTest::newRow("host CPU") << 14;
        QTest::newRow("control char in cmdline") << 15;
        QTest::newRow("xml injection in name") << 16;
        QTest::newRow("empty disk socket") << 17;
    }
    void rejectsBadSpecs() {
        QFETCH(int, which);
        VmSpec s = goodSpec();
        switch (which) {
        case 0:
            s.vcpus = 0;
            break;
        case 1:
            s.vcpus = 64;
            break;
        case 2:
            s.memoryMiB = 1u << 20;
            break;
        case 3:
            s.memoryMiB = 16;
            break;
        case 4:
            s.kernelPath = "guest/vmlinuz";
            break;
        case 5:
            s.kernelPath = "/etc/shadow";
            break;
        case 6:
            s.kernelPath = "/usr/share/isr/guest/../../../../etc/shadow";
            break;
        case 7:
            s.diskSocketPath = "/run/other/disk.sock";
            break;
        case 8:
            s.diskSocketPath = "/var/lib/isr-evil/disk.sock";
            break;
        case 9:
            s.serialSocketPath = "serial.sock";
            break;
        case 10:
            s.diskSocketPath = "/var/lib/isr/" + std::string(120, 'x') + ".sock";
            break;
        case 11:
            s.name = "has space";
            break;
        case 12:
            s.uuid = "not-a-uuid";
            break;
        case 13:
            s.machine = "q35";
            break;
        case 14:
            s.cpuModel = "host";
            break;
        case 15:
            s.cmdline = "quiet\ninit=/bin/sh";
            break;
        case 16:
            s.name = "x</name><devices>";
            break;
        case 17:
            s.diskSocketPath.clear();
            break;
        }
        QCOMPARE(rejectionOf(s), Errc::InvalidArgument);
    }

    void xmlDescribesTheBoxedMachine() {
        std::string xml = buildDomainXml(goodSpec(), Accelerator::Tcg);
        auto has = [&](const char* needle) { return xml.find(needle) != std::string::npos; };
        QVERIFY(has("<domain type='qemu'>"));
        QVERIFY(has("machine='pc-q35-7.2'"));
        QVERIFY(has("<model fallback='forbid'>qemu64</model>"));
        QVERIFY(has("<memory unit='MiB'>1024</memory>"));
        QVERIFY(has("<vcpu placement='static'>2</vcpu>"));
        QVERIFY(has("<source protocol='nbd'>"));
        QVERIFY(has("<host transport='unix' socket='/var/lib/isr/sessions/1/disk.sock'/>"));
        QVERIFY(has("discard='unmap' error_policy='stop'"));
        QVERIFY(has("<memballoon model='virtio' freePageReporting='on'/>"));
        QVERIFY(has("<interface type='user'>"));
        QVERIFY(has("<input type='tablet' bus='usb'>"));
        QVERIFY(has("<graphics type='vnc'><listen type='none'/></graphics>"));
        QVERIFY(has("<source mode='bind' path='/var/lib/isr/sessions/1/serial.sock'/>"));
        QVERIFY(has("<cmdline>console=tty0 console=ttyS0 quiet</cmdline>"));
        // Nothing from the host: no pass-through, no shared directories, no
        // bridged or TAP networking.
        QVERIFY(!has("hostdev"));
        QVERIFY(!has("filesystem"));
        QVERIFY(!has("type='bridge'"));
        QVERIFY(!has("type='network'>"));
        QVERIFY(buildDomainXml(goodSpec(), Accelerator::Kvm).find("<domain type='kvm'>") == 0);
    }

    // The override that spares libvirt ~400 QMP round trips per start is
    // in the XML of a boot and of QEMU's own incoming migration, never in
    // what libvirt's restore of a saved image gets, and in both profiles.
    void quickCpuReadbackOnlyWhereAsked() {
        const std::string del =
            "<qemu:capabilities><qemu:del capability='cpu-unavailable-features'/>";
        const std::string ns = "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'";
        for (const VmSpec& spec : {goodSpec(), firmwareSpec(Firmware::Uefi)}) {
            QemuPassthrough quick;
            quick.quickCpuReadback = true;
            const std::string on = buildDomainXml(spec, Accelerator::Tcg, "", quick);
            QVERIFY(on.find(del) != std::string::npos);
            QVERIFY(on.find(ns) != std::string::npos);
            QVERIFY(on.find(del) < on.find("</domain>"));
            const std::string off = buildDomainXml(spec, Accelerator::Tcg);
            QVERIFY(off.find("qemu:capabilities") == std::string::npos);
            QVERIFY(off.find(ns) == std::string::npos);
        }
    }

    void xmlEscapesAndIsStableAcrossKiosks() {
        VmSpec a = goodSpec();
        a.cmdline = "quiet isr.tag=<&'\">";
        std::string xml = buildDomainXml(a, Accelerator::Tcg);
        QVERIFY(xml.find("isr.tag=&lt;&amp;&apos;&quot;&gt;") != std::string::npos);
        // Same parcel at another kiosk: only the paths differ, so the NIC's
        // MAC (which libvirt's restore ABI check compares) is the same.
        VmSpec b = goodSpec();
        b.diskSocketPath = "/var/lib/isr/sessions/2/disk.sock";
        auto mac = [](const std::string& x) { return x.substr(x.find("<mac address="), 40); };
        QCOMPARE(mac(buildDomainXml(goodSpec(), Accelerator::Tcg)),
                 mac(buildDomainXml(b, Accelerator::Tcg)));
    }

    // The demo guest's XML must not change: its saved memory images restore
    // only onto the same virtual hardware. Pinned by the devices it has and
    // the ones it must not get.
    void demoGuestHardwareIsUnchanged() {
        std::string xml = buildDomainXml(goodSpec(), Accelerator::Tcg);
        auto has = [&](const char* needle) { return xml.find(needle) != std::string::npos; };
        QVERIFY(has("<video><model type='vga' vram='16384' heads='1' primary='yes'/></video>"));
        QVERIFY(has("<kernel>/usr/share/isr/guest/vmlinuz</kernel>"));
        QVERIFY(!has("<sound"));
        QVERIFY(!has("<rng"));
        QVERIFY(!has("<tpm"));
        QVERIFY(!has("<loader"));
        QVERIFY(!has("<audio"));
        QVERIFY(!has("<boot "));
    }

    // Lazy memory: a shared file mapping of the RAM (x-ignore-shared leaves
    // it out of the stream), never prealloc or discard; none without ramFile.
    void ramFileGivesSharedFileBackedRam() {
        VmSpec s = goodSpec();
        const std::string backing =
            "<memoryBacking><source type='file'/><access mode='shared'/></memoryBacking>";
        QVERIFY(buildDomainXml(s, Accelerator::Tcg).find("<memoryBacking") == std::string::npos);
        s.ramFile = "/dev/shm/isr-x/ram";
        QVERIFY(validateSpec(s, host()).ok());
        VmSpec uefi = firmwareSpec(Firmware::Uefi);
        uefi.ramFile = s.ramFile;
        for (const VmSpec& spec : {s, uefi}) {
            std::string xml = buildDomainXml(spec, Accelerator::Tcg);
            QVERIFY(xml.find(backing) != std::string::npos);
            QVERIFY(xml.find("<allocation") == std::string::npos);
            QVERIFY(xml.find("<discard") == std::string::npos);
        }
        s.ramFile = "dev/shm/ram";
        QCOMPARE(rejectionOf(s), Errc::InvalidArgument);
        s.ramFile = "/dev/shm/../etc/ram";
        QCOMPARE(rejectionOf(s), Errc::InvalidArgument);
    }

    // The RAM preload library (HostConfig::ramPreload) reaches QEMU's
    // environment through libvirt's QEMU namespace, for file-backed RAM
    // only; escaped like every other value.
    void ramPreloadIsQemusEnvironmentWithFileBackedRam() {
        const std::string lib = "/usr/lib/isr/lib'x.so";
        const std::string env = "<qemu:commandline><qemu:env name='LD_PRELOAD' "
                                "value='/usr/lib/isr/lib&apos;x.so'/></qemu:commandline>";
        const std::string ns = "<domain type='qemu' "
                               "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>";
        VmSpec s = goodSpec();
        VmSpec uefi = firmwareSpec(Firmware::Uefi);
        for (const VmSpec& spec : {s, uefi}) {
            const std::string xml = buildDomainXml(spec, Accelerator::Tcg, "", {lib});
            QVERIFY(xml.find("qemu:") == std::string::npos);
            QVERIFY(xml == buildDomainXml(spec, Accelerator::Tcg));
        }
        s.ramFile = uefi.ramFile = "/dev/shm/isr-x/ram";
        for (const VmSpec& spec : {s, uefi}) {
            const std::string xml = buildDomainXml(spec, Accelerator::Tcg, "", {lib});
            QVERIFY2(xml.rfind(ns, 0) == 0, xml.c_str());
            QVERIFY2(xml.find(env + "\n</domain>") != std::string::npos, xml.c_str());
            QVERIFY(buildDomainXml(spec, Accelerator::Tcg).find("qemu:") == std::string::npos);
            // A restore's -incoming defer shares the one element.
            const std::string both = buildDomainXml(spec, Accelerator::Tcg, "", {lib, true});
            QVERIFY2(both.find("<qemu:commandline><qemu:arg value='-incoming'/><qemu:arg "
                               "value='defer'/><qemu:env name='LD_PRELOAD'") != std::string::npos,
                     both.c_str());
            QCOMPARE(both.rfind(ns, 0), std::size_t(0));
        }
    }

    // The VM generation ID device (issue #16): `<genid/>` without a value
    // (libvirt draws a new one at each start and restore), in both
    // templates; none when not asked (saved images without it keep
    // restoring).
    void genidIsEmittedWithoutAValue() {
        for (VmSpec s : {goodSpec(), firmwareSpec(Firmware::Bios), firmwareSpec(Firmware::Uefi)}) {
            QVERIFY(buildDomainXml(s, Accelerator::Tcg).find("genid") == std::string::npos);
            s.genid = true;
            QVERIFY(validateSpec(s, host()).ok());
            std::string xml = buildDomainXml(s, Accelerator::Tcg);
            QVERIFY(xml.find("  <genid/>\n") != std::string::npos);
            QVERIFY(xml.find("<genid>") == std::string::npos);
            QVERIFY(xml.find("<genid/>") > xml.find("</uuid>"));
            QVERIFY(xml.find("<genid/>") < xml.find("<devices>"));
        }
    }

    void firmwareXmlHasTheDesktopDevices_data() {
        QTest::addColumn<int>("firmware");
        QTest::newRow("bios") << int(Firmware::Bios);
        QTest::newRow("uefi") << int(Firmware::Uefi);
        QTest::newRow("uefi-secure") << int(Firmware::UefiSecure);
    }
    void firmwareXmlHasTheDesktopDevices() {
        QFETCH(int, firmware);
        VmSpec s = firmwareSpec(Firmware(firmware));
        Status valid = validateSpec(s, host());
        QVERIFY2(valid.ok(), valid.ok() ? "" : valid.error().describe().c_str());
        std::string xml = buildDomainXml(s, Accelerator::Tcg);
        auto has = [&](const std::string& needle) { return xml.find(needle) != std::string::npos; };
        bool uefi = Firmware(firmware) != Firmware::Bios;
        bool secure = Firmware(firmware) == Firmware::UefiSecure;
        QVERIFY(!has("<kernel>"));
        QVERIFY(!has("<cmdline>"));
        QVERIFY(has("<boot order='1'/>")); // the parcel's own disk
        QCOMPARE(has("<loader readonly='yes' secure='" + std::string(secure ? "yes" : "no") +
                     "' type='pflash'>" + s.loaderPath + "</loader>"),
                 uefi);
        QCOMPARE(has("<nvram>/var/lib/isr/sessions/1/nvram.fd</nvram>"), uefi);
        QCOMPARE(has("<smm state='on'/>"), secure);
        QVERIFY(
            has("<model type='virtio' heads='1' primary='yes'><resolution x='1920' y='1080'/>"));
        QVERIFY(has("<input type='tablet' bus='usb'><address type='usb' bus='0' port='1'/>"));
        QVERIFY(has("<input type='keyboard' bus='ps2'/>"));
        QVERIFY(has("<interface type='user'>"));
        QVERIFY(has("<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"));
        QVERIFY(has("<memballoon model='virtio' freePageReporting='on'/>"));
        QVERIFY(has("<sound model='ich9'><audio id='1'/></sound>"));
        QVERIFY(has("<audio id='1' type='none'/>"));
        QVERIFY(has("<source mode='bind' path='/var/lib/isr/sessions/1/agent.sock'/>"));
        QVERIFY(has("name='org.qemu.guest_agent.0'"));
        QVERIFY(has("<tpm model='tpm-crb'>"));
        QVERIFY(has("<backend type='emulator' version='2.0' persistent_state='yes'/>"));
        QVERIFY(!has("hostdev"));
        QVERIFY(!has("filesystem"));
        s.tpm = false;
        s.audio = "pulseaudio";
        s.displayWidth = s.displayHeight = 0;
        xml = buildDomainXml(s, Accelerator::Tcg);
        QVERIFY(!has("<tpm"));
        QVERIFY(!has("<resolution"));
        QVERIFY(has("<audio id='1' type='pulseaudio'/>"));
    }

    void firmwareSpecRefusals_data() {
        QTest::addColumn<int>("which");
        QTest::newRow("kernel with firmware") << 0;
        QTest::newRow("loader from elsewhere") << 1;
        QTest::newRow("nvram outside state dir") << 2;
        QTest::newRow("secure boot on i440fx") << 3;
        QTest::newRow("bad audio backend") << 4;
        QTest::newRow("absurd display") << 5;
        QTest::newRow("tpm on the demo guest") << 6;
        QTest::newRow("agent socket outside state dir") << 7;
        QTest::newRow("nvram for bios") << 8;
        QTest::newRow("half a display size") << 9;
        QTest::newRow("xml injection in audio") << 10;
    }
    void firmwareSpecRefusals() {
        QFETCH(int, which);
        VmSpec s = firmwareSpec(Firmware::UefiSecure);
        switch (which) {
        case 0:
            s.kernelPath = "/usr/share/isr/guest/vmlinuz";
            break;
        case 1:
            s.loaderPath = "/home/evil/OVMF.fd";
            break;
        case 2:
            s.nvramPath = "/etc/nvram.fd";
            break;
        case 3:
            s.machine = "pc-i440fx-7.2";
            break;
        case 4:
            s.audio = "jack";
            break;
        case 5:
            s.displayWidth = 100000;
            break;
        case 6:
            s = goodSpec();
            s.tpm = true;
            break;
        case 7:
            s.agentSocketPath = "/tmp/agent.sock";
            break;
        case 8:
            s.firmware = Firmware::Bios;
            break;
        case 9:
            s.displayHeight = 0;
            break;
        case 10:
            s.audio = "none'/><hostdev";
            break;
        }
        QCOMPARE(rejectionOf(s), Errc::InvalidArgument);
    }

    void firmwareFilesNameTheirPackage() {
        QCOMPARE(firmwareFiles(Firmware::Uefi).package, std::string("ovmf"));
        QCOMPARE(firmwareFiles(Firmware::Bios).package, std::string("seabios"));
        QCOMPARE(firmwareFiles(Firmware::UefiSecure).code,
                 std::string("/usr/share/OVMF/OVMF_CODE_4M.ms.fd"));
        auto missing = checkFirmwareInstalled(Firmware::Uefi, "/nonexistent-root");
        QVERIFY(!missing.ok());
        QCOMPARE(missing.error().code, Errc::NotFound);
        QVERIFY(missing.error().message.find("'ovmf'") != std::string::npos);
    }

    void newUuidIsValidAndFresh() {
        std::string u1 = newUuid(), u2 = newUuid();
        QVERIFY(u1 != u2);
        VmSpec s = goodSpec();
        s.uuid = u1;
        QVERIFY(validateSpec(s, host()).ok());
    }

    // Lines as libvirt 9.0's file output writes them (taken from a kiosk's
    // stderr before the log was routed): the banner and the host-probe
    // errors go, a real error and a warning stay, continuation lines follow
    // their message.
    void libvirtLogKeepsWhatMatters() {
        LibvirtLogFilter f;
        const std::string p = "2026-12-02 22:42:08.386+0000: 17191: ";
        QVERIFY(!f.feed(p + "info : libvirt version: 9.0.0, package: 9.0.0-4+deb12u2 (Debian)"));
        QVERIFY(!f.feed(p + "info : hostname: vm"));
        QVERIFY(!f.feed(p + "error : virAccessManagerGetDefault:69 : internal error: No access "
                            "manager registered"));
        QVERIFY(!f.feed(p + "error : virCommandWait:2725 : internal error: Child process "
                            "(/usr/sbin/dmidecode -q -t 0,1,2,3,4,11,17) unexpected exit status "
                            "1: /dev/mem: No such file or directory"));
        QVERIFY(!f.feed("")); // the dmidecode message's continuation
        QVERIFY(!f.feed(p + "error : virHostCPUGetCPUID:1422 : Unable to open /dev/kvm: No such "
                            "file or directory"));
        QVERIFY(!f.feed(p + "error : qemuDomainLookupByName:1453 : Domain not found: no domain "
                            "with matching name 'isr-rf-desk'"));
        auto err = f.feed(p + "error : qemuMonitorIO:578 : internal error: End of file from "
                              "qemu monitor");
        QVERIFY(err.has_value());
        QCOMPARE(*err, std::string("qemuMonitorIO:578 : internal error: End of file from qemu "
                                   "monitor"));
        auto more = f.feed("second line of that message\r");
        QVERIFY(more.has_value());
        QCOMPARE(*more, std::string("second line of that message"));
        // Our own taints (QMP passthrough, -incoming defer, the capability
        // override) go; any other taint stays.
        QVERIFY(!f.feed(p + "warning : qemuDomainObjTaintMsg:6591 : Domain id=1 name='isr-a-b' "
                            "uuid=0f8f is tainted: custom-monitor"));
        QVERIFY(!f.feed(p + "warning : qemuDomainObjTaintMsg:6591 : Domain id=1 name='isr-a-b' "
                            "uuid=0f8f is tainted: custom-argv"));
        QVERIFY(!f.feed(p + "warning : qemuDomainObjTaintMsg:6603 : Domain id=1 name='isr-a-b' "
                            "uuid=0f8f is tainted: custom-hypervisor-feature"));
        auto warn = f.feed(p + "warning : qemuDomainObjTaintMsg:6591 : Domain id=1 name='isr-a-b' "
                               "uuid=0f8f is tainted: high-privileges");
        QVERIFY(warn.has_value());
        QVERIFY(warn->find("tainted: high-privileges") != std::string::npos);
        // Asking an agent the guest does not run (yet) is how we ask.
        QVERIFY(!f.feed(p + "warning : qemuDomainAgentAvailable:8468 : Guest agent is not "
                            "responding: QEMU guest agent is not connected"));
        QVERIFY(!f.feed(p + "info : hostname: vm"));
        QVERIFY(!f.feed("a continuation of a dropped line"));
    }

    // libvirt's save header (qemu_saveimage.h: magic, version, data_len,
    // was_running, format, cookieOffset, 14 unused; host byte order) and
    // the domain XML after it: the name a whole memory image restores
    // under, and the VM generation ID it was saved with.
    void savedDomainFromHeader() {
        auto image = [](const std::string& magic, const std::string& xml, bool swapped = false,
                        std::uint32_t format = 0) {
            Bytes b(magic.begin(), magic.end());
            auto put = [&](std::uint32_t v) {
                if (swapped)
                    v = __builtin_bswap32(v);
                const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
                b.insert(b.end(), p, p + 4);
            };
            put(2);                             // version
            put(std::uint32_t(xml.size() + 1)); // data_len: the XML and its NUL
            put(0);                             // was_running
            put(format);                        // 0 raw, else a compressor
            for (int i = 0; i < 15; ++i)
                put(0);
            b.insert(b.end(), xml.begin(), xml.end());
            b.push_back(0);
            const std::string qemu = "QEVM, then the guest's RAM";
            b.insert(b.end(), qemu.begin(), qemu.end());
            return b;
        };
        const std::string xml = "<domain type='qemu'>\n  <name>isr-alice-desk</name>\n"
                                "  <uuid>0f8fad5b-d9cb-469f-a165-70867728950e</uuid>\n"
                                "  <devices><disk><source name='x'/></disk></devices>\n"
                                "</domain>\n";
        Bytes whole = image("LibvirtQemudSave", xml);
        QCOMPARE(whole.size(), std::size_t(92 + xml.size() + 1 + 26)); // a 92-byte header
        auto saved = savedDomain(whole);
        QVERIFY(saved.ok() && saved->has_value());
        QCOMPARE((*saved)->name, std::string("isr-alice-desk"));
        QCOMPARE((*saved)->genid, std::string()); // no generation ID device
        // QEMU's stream begins after the XML (restoreIntoRamFile skips to it).
        QCOMPARE(*saveImageHeaderSize(whole), std::uint64_t(92 + xml.size() + 1));
        QVERIFY((*saved)->raw);
        auto swapped = savedDomain(image("LibvirtQemudSave", xml, true));
        QVERIFY(swapped.ok() && swapped->has_value());
        QCOMPARE((*swapped)->name, std::string("isr-alice-desk"));
        QCOMPARE(*saveImageHeaderSize(image("LibvirtQemudSave", xml, true)),
                 std::uint64_t(92 + xml.size() + 1));
        QVERIFY((*swapped)->raw);
        for (bool swap : {false, true}) {
            auto gz = savedDomain(image("LibvirtQemudSave", xml, swap, 1));
            QVERIFY(gz.ok() && gz->has_value());
            QVERIFY(!(*gz)->raw);
        }
        // Too short to tell: ask for more (inside the header, inside the XML).
        for (std::size_t n : {std::size_t(0), std::size_t(40), std::size_t(92), std::size_t(120)}) {
            auto partial = savedDomain(ByteView(whole.data(), n));
            QVERIFY(partial.ok());
            QVERIFY(!partial->has_value());
        }
        // The generation ID, as libvirt writes it: right after <uuid>.
        const std::string genid = "e30aafa7-64ed-4ba7-ba77-1425cd9a60fe";
        std::string withGenid = xml;
        withGenid.insert(withGenid.find("</uuid>") + 8, "  <genid>" + genid + "</genid>\n");
        auto g = savedDomain(image("LibvirtQemudSave", withGenid));
        QVERIFY(g.ok() && g->has_value());
        QCOMPARE((*g)->genid, genid);
        QCOMPARE((*g)->name, std::string("isr-alice-desk"));
        // Not a finished libvirt save image, or no usable name or ID.
        auto refused = [&](const Bytes& b) {
            auto r = savedDomain(b);
            return !r.ok() && r.error().code == Errc::Corrupt;
        };
        QVERIFY(refused(image("LibvirtQemudPart", xml)));
        QVERIFY(refused(image("QEVM-not-libvirt", xml)));
        QVERIFY(refused(image("LibvirtQemudSave", "<domain><uuid>x</uuid></domain>")));
        QVERIFY(refused(image("LibvirtQemudSave", "<domain><name>../etc</name></domain>")));
        QVERIFY(refused(image("LibvirtQemudSave", "<domain><name></name></domain>")));
        QVERIFY(refused(image("LibvirtQemudSave",
                              "<domain><name>a</name><uuid>u</uuid><genid>x'/></genid></domain>")));
        QVERIFY(refused(
            image("LibvirtQemudSave", "<domain><name>a</name><uuid>u</uuid><genid>" + genid)));
    }

    // The ID a restore must name: `<genid>value</genid>`, only with the
    // device, only a UUID.
    void savedGenidGoesIntoTheRestoreXml() {
        VmSpec s = goodSpec();
        s.genid = true;
        s.savedGenid = "e30aafa7-64ed-4ba7-ba77-1425cd9a60fe";
        QVERIFY(validateSpec(s, host()).ok());
        QVERIFY(buildDomainXml(s, Accelerator::Tcg)
                    .find("  <genid>e30aafa7-64ed-4ba7-ba77-1425cd9a60fe</genid>\n") !=
                std::string::npos);
        s.savedGenid = "e30aafa7-64ed-4ba7-ba77-1425cd9a60fe'/><hostdev";
        QCOMPARE(rejectionOf(s), Errc::InvalidArgument);
        s.savedGenid = "e30aafa7-64ed-4ba7-ba77-1425cd9a60fe";
        s.genid = false;
        QCOMPARE(rejectionOf(s), Errc::InvalidArgument);
    }
};

QTEST_GUILESS_MAIN(TestVmSpec)
#include "test_vm_spec.moc"
