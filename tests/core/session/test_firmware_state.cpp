// A firmware parcel's NVRAM and TPM state without a VM: the manifest fields
// and their bounds, the TPM archive, sealing and restoring through a real
// store (a damaged object is Corrupt), the boot-loader check on a real disk
// file and the boot profile check naming the missing Debian package.
#include "disk/file_block_device.h"
#include "parcel/parcel.h"
#include "session/firmware_state.h"
#include "session/vm_spec.h"
#include "teststore.h"
#include "testsupport.h"

#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <cstring>
#include <filesystem>
#include <fstream>

using namespace isr;
using namespace isr::session;
namespace fs = std::filesystem;

namespace {

parcel::Manifest firmwareManifest() {
    parcel::Manifest m;
    m.version = 2;
    m.parent = 1;
    m.kiosk = "kiosk-a";
    m.chunkSize = 4096;
    m.diskSize = 4096 * 4;
    m.disk.resize(m.chunkCount());
    m.vm.boot = "firmware";
    m.vm.firmware = "uefi";
    m.vm.tpm = true;
    return m;
}

chunk::ChunkRef someRef(std::uint8_t fill, std::uint32_t length) {
    chunk::ChunkRef r;
    r.name.fill(fill);
    r.key.fill(std::uint8_t(fill + 1));
    r.length = length;
    return r;
}

void writeFile(const std::string& path, const std::string& content) {
    std::ofstream(path, std::ios::binary) << content;
}

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// The header JSON of an encoded manifest, edited, put back (for refusals).
Bytes withHeader(const Bytes& encoded, const std::string& from, const std::string& to) {
    std::uint32_t len = getBe32(encoded.data() + 8);
    std::string h(reinterpret_cast<const char*>(encoded.data() + 12), len);
    auto at = h.find(from);
    if (at == std::string::npos)
        qFatal("'%s' not in header %s", from.c_str(), h.c_str());
    h.replace(at, from.size(), to);
    Bytes out(encoded.size() - len + h.size());
    std::memcpy(out.data(), encoded.data(), 8);
    putBe32(out.data() + 8, std::uint32_t(h.size()));
    std::memcpy(out.data() + 12, h.data(), h.size());
    std::memcpy(out.data() + 12 + h.size(), encoded.data() + 12 + len, encoded.size() - 12 - len);
    return out;
}

} // namespace

class TestFirmwareState : public QObject {
    Q_OBJECT
private slots:
    void specAndManifestRoundTrip() {
        parcel::Manifest m = firmwareManifest();
        m.nvram = someRef(3, 540672);
        m.tpmState = someRef(9, 20000);
        auto back = parcel::decodeManifest(parcel::encodeManifest(m));
        QVERIFY2(back.ok(), back.ok() ? "" : back.error().describe().c_str());
        QCOMPARE(back->vm.firmware, std::string("uefi"));
        QVERIFY(back->vm.tpm);
        QVERIFY(back->nvram && back->nvram->name == m.nvram->name &&
                back->nvram->key == m.nvram->key && back->nvram->length == 540672);
        QVERIFY(back->tpmState && back->tpmState->name == m.tpmState->name);
        // A parcel without such state carries no such fields.
        parcel::Manifest plain = firmwareManifest();
        auto p = parcel::decodeManifest(parcel::encodeManifest(plain));
        QVERIFY(p.ok());
        QVERIFY(!p->nvram && !p->tpmState);
    }

    // A demo-guest spec encodes exactly as before firmware keys existed, and
    // old firmware specs without the keys read as BIOS without TPM.
    void oldSpecsReadAsBefore() {
        parcel::VmSpec demo;
        demo.boot = "demo-guest";
        QCOMPARE(QString::fromStdString(demo.toJson().dump()),
                 QStringLiteral("{\"boot\":\"demo-guest\",\"cpu\":\"qemu64\",\"machine\":"
                                "\"pc-q35-7.2\",\"memory_mib\":1024,\"vcpus\":1}"));
        auto old = json::parse(R"({"boot":"firmware","cpu":"qemu64","machine":"pc-q35-7.2",)"
                               R"("memory_mib":1024,"vcpus":1})");
        QVERIFY(old.ok());
        auto spec = parcel::VmSpec::fromJson(*old);
        QVERIFY(spec.ok());
        QCOMPARE(spec->firmware, std::string("bios"));
        QVERIFY(!spec->tpm);
    }

    void badSpecsAndRefsAreRefused_data() {
        QTest::addColumn<QString>("from");
        QTest::addColumn<QString>("to");
        QTest::newRow("unknown firmware") << "\"firmware\":\"uefi\""
                                          << "\"firmware\":\"coreboot\"";
        QTest::newRow("firmware path") << "\"firmware\":\"uefi\""
                                       << "\"firmware\":\"/usr/share/OVMF/x.fd\"";
        QTest::newRow("tpm not a bool") << "\"tpm\":true"
                                        << "\"tpm\":\"yes\"";
        QTest::newRow("tpm on the demo guest") << "\"boot\":\"firmware\""
                                               << "\"boot\":\"demo-guest\"";
        QTest::newRow("unknown vm key") << "\"tpm\":true"
                                        << "\"tpm\":true,\"tpm_device\":\"/dev/tpm0\"";
        QTest::newRow("nvram zero length") << "\"length\":540672"
                                           << "\"length\":0";
        QTest::newRow("nvram huge") << "\"length\":540672"
                                    << "\"length\":99999999999";
        QTest::newRow("nvram short name") << "\"name\":\"0303"
                                          << "\"name\":\"03";
        QTest::newRow("nvram not hex") << "\"name\":\"0303"
                                       << "\"name\":\"zz03";
        QTest::newRow("nvram extra field") << "\"length\":540672"
                                           << "\"length\":540672,\"path\":\"/x\"";
        QTest::newRow("nvram for bios") << "\"firmware\":\"uefi\""
                                        << "\"firmware\":\"bios\"";
        QTest::newRow("tpm state without tpm") << "\"tpm\":true"
                                               << "\"tpm\":false";
        QTest::newRow("nvram not an object") << "\"nvram\":{"
                                             << "\"nvram\":[{";
    }
    void badSpecsAndRefsAreRefused() {
        QFETCH(QString, from);
        QFETCH(QString, to);
        parcel::Manifest m = firmwareManifest();
        m.nvram = someRef(3, 540672);
        m.tpmState = someRef(9, 20000);
        Bytes bad = withHeader(parcel::encodeManifest(m), from.toStdString(), to.toStdString());
        auto r = parcel::decodeManifest(bad);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Corrupt);
    }

    void tpmArchiveRoundTripAndRefusals() {
        QTemporaryDir tmp;
        std::string a = tmp.filePath("a").toStdString(), b = tmp.filePath("b").toStdString();
        fs::create_directories(a + "/tpm2");
        writeFile(a + "/tpm2/tpm2-00.permall", std::string(3000, 'p'));
        writeFile(a + "/tpm2/.lock", "");
        auto packed = FirmwareState::packTpmState(a);
        QVERIFY(packed.ok());
        QVERIFY(FirmwareState::unpackTpmState(*packed, b).ok());
        QCOMPARE(readFile(b + "/tpm2/tpm2-00.permall"), std::string(3000, 'p'));
        QVERIFY(!fs::exists(b + "/tpm2/.lock"));
        // Same state, same bytes (so the same convergent chunk).
        QVERIFY(*FirmwareState::packTpmState(b) == *packed);
        // An empty state directory packs to an empty archive.
        auto empty = FirmwareState::packTpmState(tmp.filePath("none").toStdString());
        QVERIFY(empty.ok());
        Bytes evil = *packed;
        evil.push_back(0);
        QCOMPARE(FirmwareState::unpackTpmState(evil, b).error().code, Errc::Corrupt);
        Bytes traversal = *packed;
        // name "tpm2-00.permall" -> "../2-00.permall" (same length)
        std::memcpy(traversal.data() + 12, "../", 3);
        QCOMPARE(FirmwareState::unpackTpmState(traversal, b).error().code, Errc::Corrupt);
        Bytes truncated(packed->begin(), packed->begin() + 20);
        QCOMPARE(FirmwareState::unpackTpmState(truncated, b).error().code, Errc::Corrupt);
    }

    // Through a real store: a new parcel's NVRAM is the OVMF template; the
    // state the VM changed is sealed, dedups when unchanged, restores at the
    // next kiosk, and a damaged object is Corrupt with nothing changed.
    void nvramAndTpmTravelThroughTheStore() {
        if (!vm::checkFirmwareInstalled(vm::Firmware::Uefi).ok())
            QSKIP("ovmf is not installed");
        auto ts = test::TestStore::fromEnvironment();
        ts->createUser("fw", "pw");
        auto parcels = ts->signedIn("fw", "pw");
        QTemporaryDir tmp;
        std::string kioskA = tmp.filePath("a").toStdString();
        std::string kioskB = tmp.filePath("b").toStdString();
        fs::create_directories(kioskA);
        fs::create_directories(kioskB);
        parcel::Manifest base = firmwareManifest();

        FirmwareState a;
        a.configure(vm::Firmware::Uefi, true, kioskA, kioskA + "/swtpm");
        QVERIFY(a.restore(base, parcels).ok());
        std::string tmpl = readFile("/usr/share/OVMF/OVMF_VARS_4M.fd");
        QCOMPARE(readFile(a.nvramPath()), tmpl);
        // What the firmware and swtpm would have written while running.
        std::string vars = tmpl;
        vars[1000] ^= 0x5a;
        writeFile(a.nvramPath(), vars);
        fs::create_directories(kioskA + "/swtpm/tpm2");
        writeFile(kioskA + "/swtpm/tpm2/tpm2-00.permall", "seed");
        QVERIFY(a.collect(parcels).ok());
        parcel::Manifest next = base;
        a.applyTo(next);
        QVERIFY(next.nvram && next.tpmState);
        a.wipe();
        QVERIFY(!fs::exists(kioskA + "/swtpm"));

        FirmwareState b;
        b.configure(vm::Firmware::Uefi, true, kioskB, kioskB + "/swtpm");
        QVERIFY(b.restore(next, parcels).ok());
        QCOMPARE(readFile(b.nvramPath()), vars);
        QCOMPARE(readFile(kioskB + "/swtpm/tpm2/tpm2-00.permall"), std::string("seed"));
        // Unchanged: the same references.
        QVERIFY(b.collect(parcels).ok());
        parcel::Manifest again = next;
        b.applyTo(again);
        QVERIFY(again.nvram->name == next.nvram->name);
        QVERIFY(again.tpmState->name == next.tpmState->name);

        // Damage the NVRAM object in the store.
        std::string key = parcel::chunkKey("fw", next.nvram->name);
        auto data = ts->store().get(key);
        QVERIFY(data.ok());
        (*data)[data->size() / 2] ^= 1;
        QVERIFY(ts->store().put(key, *data).ok());
        FirmwareState c;
        c.configure(vm::Firmware::Uefi, true, kioskB, kioskB + "/swtpm");
        auto st = c.restore(next, parcels);
        QVERIFY(!st.ok());
        QCOMPARE(st.error().code, Errc::Corrupt);
    }

    void bootLoaderCheckReadsTheDisk() {
        QTemporaryDir tmp;
        std::string path = tmp.filePath("disk.img").toStdString();
        auto disk = disk::FileBlockDevice::create(path, 1 << 20);
        QVERIFY(disk.ok());
        auto blank = checkDiskBootable(**disk, vm::Firmware::Bios);
        QVERIFY(!blank.ok());
        QVERIFY(blank.error().message.find("no boot loader") != std::string::npos);
        QVERIFY(!checkDiskBootable(**disk, vm::Firmware::Uefi).ok());
        QVERIFY(checkDiskBootable(**disk, vm::Firmware::DirectKernel).ok());
        // A GPT signature over a header that describes no table (entry
        // size 0): a user's image, not a crash or a pass.
        std::uint8_t gpt[8] = {'E', 'F', 'I', ' ', 'P', 'A', 'R', 'T'};
        QVERIFY((*disk)->write(512, ByteView(gpt, 8), false).ok());
        QVERIFY(!checkDiskBootable(**disk, vm::Firmware::Uefi).ok());
        QVERIFY(!checkDiskBootable(**disk, vm::Firmware::Bios).ok());
        std::uint8_t sig[2] = {0x55, 0xaa};
        QVERIFY((*disk)->write(510, ByteView(sig, 2), false).ok());
        QVERIFY(checkDiskBootable(**disk, vm::Firmware::Bios).ok());
        disk->reset();

        // Real GPTs (sgdisk): one data partition is no EFI system
        // partition (OVMF would fall through to network boot for ever);
        // typed EF00 it is.
        if (QStandardPaths::findExecutable("sgdisk").isEmpty())
            QSKIP("sgdisk is not installed (packaging/install-deps.sh installs gdisk)");
        auto partitioned = [&](const char* type) {
            const std::string img = tmp.filePath(type).toStdString();
            auto made = disk::FileBlockDevice::create(img, 1 << 20);
            made->reset();
            auto r = isr::test::runProcess(
                "sgdisk",
                {"-o", "-n", "1:40:1000", "-t", QString("1:") + type, QString::fromStdString(img)});
            if (r.exitCode != 0)
                qFatal("sgdisk: %s", (r.out + r.err).c_str());
            auto opened = disk::FileBlockDevice::open(img);
            if (!opened.ok())
                qFatal("%s", opened.error().describe().c_str());
            return std::move(*opened);
        };
        auto data = partitioned("8300");
        auto refused = checkDiskBootable(*data, vm::Firmware::Uefi);
        QVERIFY(!refused.ok());
        QVERIFY2(refused.error().message.find("no EFI system partition") != std::string::npos,
                 refused.error().message.c_str());
        QVERIFY(!checkDiskBootable(*data, vm::Firmware::UefiSecure).ok());
        auto esp = partitioned("EF00");
        QVERIFY(checkDiskBootable(*esp, vm::Firmware::Uefi).ok());
        QVERIFY(checkDiskBootable(*esp, vm::Firmware::UefiSecure).ok());
    }

    void missingFirmwareNamesThePackage() {
        parcel::VmSpec spec;
        spec.boot = "firmware";
        spec.firmware = "uefi-secure";
        std::string package;
        auto st = bootProfileAvailable(spec, &package, "/nonexistent-root");
        QVERIFY(!st.ok());
        QCOMPARE(st.error().code, Errc::Unsupported);
        QCOMPARE(package, std::string("ovmf"));
        spec.firmware = "bios";
        QVERIFY(!bootProfileAvailable(spec, &package, "/nonexistent-root").ok());
        QCOMPARE(package, std::string("seabios"));
        spec.boot = "demo-guest";
        QVERIFY(bootProfileAvailable(spec, &package, "/nonexistent-root").ok());
        spec.boot = "network";
        QVERIFY(!bootProfileAvailable(spec, &package).ok());
    }
};

QTEST_GUILESS_MAIN(TestFirmwareState)
#include "test_firmware_state.moc"
