// Manifest encoding and the VM spec: round trips and every way a manifest
// from the store can lie (truncation, oversized counts, bad entries, specs
// asking for things a kiosk must refuse).
#include "parcel/parcel.h"

#include <QTest>
#include <algorithm>
#include <cstring>
#include <functional>

using namespace isr;
using namespace isr::parcel;

namespace {
Manifest sample() {
    Manifest m;
    m.version = 3;
    m.parent = 2;
    m.created = 1700000000;
    m.kiosk = "kiosk-a";
    m.chunkSize = 4096;
    m.diskSize = 4096 * 10 + 512; // last chunk is short
    m.disk.resize(m.chunkCount());
    for (std::size_t i : {0u, 3u, 10u}) {
        chunk::ChunkRef r;
        r.name.fill(std::uint8_t(i + 1));
        r.key.fill(std::uint8_t(i + 100));
        r.length = i == 10 ? 512 : 4096;
        m.disk[i] = r;
    }
    chunk::ChunkRef mem;
    mem.name.fill(7);
    mem.length = 65536;
    m.memory = {mem, mem};
    m.workingSet = {0, 3, 10};
    return m;
}

// A version saved with lazy memory: 64 MiB of RAM as 4 KiB chunks, a few
// stored, the rest all-zero; `memory` is the device state.
Manifest lazySample() {
    Manifest m = sample();
    m.vm.memoryMiB = 64;
    m.ram.resize(m.ramChunkCount());
    for (std::size_t i : {0u, 5u, 16383u}) {
        chunk::ChunkRef r;
        r.name.fill(std::uint8_t(i % 251 + 30));
        r.key.fill(std::uint8_t(i % 251 + 60));
        r.length = 4096;
        m.ram[i] = r;
    }
    m.ramHotSet = {16383, 0, 5}; // first-touch order, not sorted
    return m;
}

void putU64At(Bytes& b, std::size_t pos, std::uint64_t v) {
    putBe64(b.data() + pos, v);
}

std::size_t diskCountOffset(const Bytes& b) {
    return 12 + getBe32(b.data() + 8);
}

// The encoded manifest with its header JSON edited (the length fixed up).
Bytes withHeader(const Bytes& encoded, const std::function<void(std::string&)>& edit) {
    const std::size_t len = getBe32(encoded.data() + 8);
    std::string header(reinterpret_cast<const char*>(encoded.data()) + 12, len);
    edit(header);
    const std::size_t rest = encoded.size() - 12 - len;
    Bytes out(12 + header.size() + rest);
    std::memcpy(out.data(), encoded.data(), 8);
    putBe32(out.data() + 8, std::uint32_t(header.size()));
    std::memcpy(out.data() + 12, header.data(), header.size());
    std::memcpy(out.data() + 12 + header.size(), encoded.data() + 12 + len, rest);
    return out;
}

crypto::Hash someDigest() {
    crypto::Hash h;
    for (std::size_t i = 0; i < h.size(); ++i)
        h[i] = std::uint8_t(i * 7 + 1);
    return h;
}
} // namespace

class TestManifest : public QObject {
    Q_OBJECT
private slots:
    void roundTrip() {
        Manifest m = sample();
        auto back = decodeManifest(encodeManifest(m));
        QVERIFY2(back.ok(), back.ok() ? "" : back.error().describe().c_str());
        QCOMPARE(back->version, m.version);
        QCOMPARE(back->parent, m.parent);
        QCOMPARE(back->kiosk, m.kiosk);
        QCOMPARE(back->diskSize, m.diskSize);
        QCOMPARE(back->disk.size(), m.disk.size());
        QVERIFY(back->disk[3].has_value());
        QVERIFY(!back->disk[4].has_value());
        QVERIFY(back->disk[10]->name == m.disk[10]->name);
        QCOMPARE(back->memory.size(), std::size_t(2));
        QCOMPARE(back->workingSet, m.workingSet);
        QCOMPARE(back->vm.memoryMiB, m.vm.memoryMiB);
    }
    // The chain (FORMAT.md): parent_digest round-trips; the digest is of
    // the plaintext exactly as read.
    void parentDigestRoundTrip() {
        Manifest m = sample();
        m.parentDigest = someDigest();
        const Bytes encoded = encodeManifest(m);
        QVERIFY(asString(encoded).find("\"parent_digest\":\"" +
                                       toHex(ByteView(someDigest().data(), 32)) + "\"") !=
                std::string::npos);
        auto back = decodeManifest(encoded);
        QVERIFY2(back.ok(), back.ok() ? "" : back.error().describe().c_str());
        QVERIFY(back->parentDigest == someDigest());
        QVERIFY(back->digest == crypto::hash(encoded));
        // Any other byte, any other digest.
        Manifest other = m;
        other.kiosk = "kiosk-b";
        QVERIFY(decodeManifest(encodeManifest(other))->digest != back->digest);
    }
    // Manifests written before the chain existed (no parent_digest) still
    // open; they bind nothing.
    void manifestWithoutParentDigestStillOpens() {
        Manifest m = sample();
        const Bytes encoded = encodeManifest(m);
        QVERIFY(asString(encoded).find("parent_digest") == std::string::npos);
        auto back = decodeManifest(encoded);
        QVERIFY(back.ok());
        QCOMPARE(back->parent, std::uint64_t(2));
        QVERIFY(!back->parentDigest);
        QVERIFY(back->digest == crypto::hash(encoded));
    }
    void badParentDigestRefused() {
        Manifest m = sample();
        m.parentDigest = someDigest();
        const Bytes encoded = encodeManifest(m);
        const std::string hex = toHex(ByteView(someDigest().data(), 32));
        auto edited = [&](const std::string& replacement) {
            return decodeManifest(withHeader(
                encoded, [&](std::string& h) { h.replace(h.find(hex), hex.size(), replacement); }));
        };
        QVERIFY(edited(hex).ok()); // the helper itself changes nothing
        QCOMPARE(edited(hex.substr(0, 62)).error().code, Errc::Corrupt);   // short
        QCOMPARE(edited(hex + "00").error().code, Errc::Corrupt);          // long
        QCOMPARE(edited("z" + hex.substr(1)).error().code, Errc::Corrupt); // not hex
        auto notString = decodeManifest(withHeader(encoded, [&](std::string& h) {
            h.replace(h.find("\"" + hex + "\""), hex.size() + 2, "7");
        }));
        QCOMPARE(notString.error().code, Errc::Corrupt);
        // A parent digest without a parent.
        Manifest orphan = sample();
        orphan.parent = 0;
        orphan.parentDigest = someDigest();
        QCOMPARE(decodeManifest(encodeManifest(orphan)).error().code, Errc::Corrupt);
    }
    void everyTruncationIsRefused() {
        Bytes full = encodeManifest(sample());
        for (std::size_t len = 0; len < full.size(); ++len) {
            auto r = decodeManifest(ByteView(full.data(), len));
            QVERIFY2(!r.ok(), qPrintable(QString("accepted a manifest cut to %1 bytes").arg(len)));
            QCOMPARE(r.error().code, Errc::Corrupt);
        }
    }
    void trailingBytesRefused() {
        Bytes full = encodeManifest(sample());
        full.push_back(0);
        QCOMPARE(decodeManifest(full).error().code, Errc::Corrupt);
    }
    void hugeChunkCountRefusedWithoutAllocating() {
        Bytes b = encodeManifest(sample());
        putU64At(b, diskCountOffset(b), 1ull << 60);
        auto r = decodeManifest(b);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Corrupt);
    }
    void hugeMemoryCountRefused() {
        Manifest m = sample();
        m.memory.clear();
        m.workingSet.clear();
        Bytes b = encodeManifest(m);
        // memory count sits 8 bytes (empty working set + itself) before the end
        putBe32(b.data() + b.size() - 8, 0xffffffffu);
        QCOMPARE(decodeManifest(b).error().code, Errc::Corrupt);
    }
    void wrongChunkLengthRefused() {
        Manifest m = sample();
        m.disk[3]->length = 0xffffffffu; // claims a 4 GiB chunk
        QCOMPARE(decodeManifest(encodeManifest(m)).error().code, Errc::Corrupt);
        m = sample();
        m.disk[3]->length = 4095;
        QCOMPARE(decodeManifest(encodeManifest(m)).error().code, Errc::Corrupt);
    }
    void badEntryKindRefused() {
        Bytes b = encodeManifest(sample());
        b[diskCountOffset(b) + 8 + 1 + 68] = 7; // entry 1 (after stored entry 0)
        QCOMPARE(decodeManifest(b).error().code, Errc::Corrupt);
    }
    void badWorkingSetRefused() {
        Manifest m = sample();
        m.workingSet = {3, 3};
        QCOMPARE(decodeManifest(encodeManifest(m)).error().code, Errc::Corrupt);
        m.workingSet = {11};
        QCOMPARE(decodeManifest(encodeManifest(m)).error().code, Errc::Corrupt);
    }
    // Lazy memory (format 2): the RAM table and its hot set round-trip, in
    // the hot set's own order; a manifest without RAM stays format 1.
    void lazyMemoryRoundTrip() {
        QCOMPARE(getBe32(encodeManifest(sample()).data() + 4), std::uint32_t(kFormatVersion));
        Manifest m = lazySample();
        const Bytes encoded = encodeManifest(m);
        QCOMPARE(getBe32(encoded.data() + 4), std::uint32_t(kManifestFormatLazyMemory));
        auto back = decodeManifest(encoded);
        QVERIFY2(back.ok(), back.ok() ? "" : back.error().describe().c_str());
        QVERIFY(back->lazyMemory());
        QCOMPARE(back->ram.size(), std::size_t(16384));
        for (std::size_t i = 0; i < back->ram.size(); ++i) {
            QCOMPARE(back->ram[i].has_value(), m.ram[i].has_value());
            if (m.ram[i])
                QVERIFY(back->ram[i]->name == m.ram[i]->name && back->ram[i]->key == m.ram[i]->key);
        }
        QCOMPARE(back->ramHotSet, m.ramHotSet);
        QCOMPARE(back->workingSet, m.workingSet);
        QCOMPARE(back->memory.size(), m.memory.size());
        // gc, fsck and the reference lists see the RAM's chunks.
        auto refs = referencedChunks(*back);
        for (std::size_t i : {0u, 5u, 16383u})
            QVERIFY(std::any_of(refs.begin(), refs.end(), [&](const chunk::ChunkRef& r) {
                return r.name == m.ram[i]->name;
            }));
        // Dropping the saved VM makes it a boot again, in format 1.
        Manifest dropped = *back;
        dropped.dropSavedMemory();
        QCOMPARE(getBe32(encodeManifest(dropped).data() + 4), std::uint32_t(kFormatVersion));
        QVERIFY(decodeManifest(encodeManifest(dropped))->memory.empty());
    }
    void lazyMemoryTruncationAndTrailingRefused() {
        Bytes full = encodeManifest(lazySample());
        for (std::size_t len = 0; len < full.size(); ++len) {
            auto r = decodeManifest(ByteView(full.data(), len));
            QVERIFY2(!r.ok(), qPrintable(QString("accepted a manifest cut to %1 bytes").arg(len)));
            QCOMPARE(r.error().code, Errc::Corrupt);
        }
        full.push_back(0);
        QCOMPARE(decodeManifest(full).error().code, Errc::Corrupt);
        // A format-1 manifest with a RAM table appended is not a lazy one.
        Bytes v1 = encodeManifest(lazySample());
        putBe32(v1.data() + 4, std::uint32_t(kFormatVersion));
        QCOMPARE(decodeManifest(v1).error().code, Errc::Corrupt);
        // Formats this kiosk does not know are Unsupported, not Corrupt.
        putBe32(v1.data() + 4, 4);
        QCOMPARE(decodeManifest(v1).error().code, Errc::Unsupported);
    }
    // Format 3: RAM chunks of their own size (32 KiB here, the disk's 4 KiB)
    // round-trip; a table at the RAM's size that says format 2 is refused, as
    // is the header key in the wrong format or with a size not allowed.
    void ramChunkSizeRoundTrip() {
        Manifest m = lazySample();
        m.ramChunkSize = 32768;
        m.ram.assign(m.ramChunkCount(), std::nullopt);
        QCOMPARE(m.ram.size(), std::size_t(2048));
        chunk::ChunkRef r;
        r.name.fill(9);
        r.key.fill(10);
        r.length = 32768;
        m.ram[2047] = r;
        m.ramHotSet = {2047, 3};
        const Bytes encoded = encodeManifest(m);
        QCOMPARE(getBe32(encoded.data() + 4), std::uint32_t(kManifestFormatRamChunkSize));
        auto back = decodeManifest(encoded);
        QVERIFY2(back.ok(), back.ok() ? "" : back.error().describe().c_str());
        QCOMPARE(back->ramChunk(), std::uint32_t(32768));
        QCOMPARE(back->chunkSize, std::uint32_t(4096));
        QCOMPARE(back->ram.size(), std::size_t(2048));
        QVERIFY(back->ram[2047] && back->ram[2047]->name == r.name);
        QCOMPARE(back->ramHotSet, m.ramHotSet);
        // Its RAM size equal to the disk's is format 2, without the key.
        Manifest same = lazySample();
        same.ramChunkSize = same.chunkSize;
        const Bytes two = encodeManifest(same);
        QCOMPARE(getBe32(two.data() + 4), std::uint32_t(kManifestFormatLazyMemory));
        QVERIFY(decodeManifest(two).ok());
        QCOMPARE(decodeManifest(two)->ramChunk(), same.chunkSize);
        // Dropping the saved VM forgets the RAM's size too.
        Manifest dropped = *back;
        dropped.dropSavedMemory();
        QCOMPARE(dropped.ramChunkSize, std::uint32_t(0));
        QCOMPARE(getBe32(encodeManifest(dropped).data() + 4), std::uint32_t(kFormatVersion));
        // The format and the key go together.
        Bytes lie = encoded;
        putBe32(lie.data() + 4, std::uint32_t(kManifestFormatLazyMemory));
        QCOMPARE(decodeManifest(lie).error().code, Errc::Corrupt);
        lie = withHeader(encoded, [](std::string& h) {
            const std::string key = "\"ram_chunk_size\":32768,";
            h.replace(h.find(key), key.size(), "");
        });
        QCOMPARE(decodeManifest(lie).error().code, Errc::Corrupt);
        lie = withHeader(two, [](std::string& h) { h.insert(1, "\"ram_chunk_size\":32768,"); });
        QCOMPARE(decodeManifest(lie).error().code, Errc::Corrupt);
        for (const char* bad : {"4096", "3000", "2048", "33554432", "-32768", "\"32768\""}) {
            lie = withHeader(encoded, [&](std::string& h) {
                h.replace(h.find("32768"), 5, bad);
            });
            QVERIFY2(!decodeManifest(lie).ok(), bad);
            QCOMPARE(decodeManifest(lie).error().code, Errc::Corrupt);
        }
        // A RAM chunk of the disk's length in a table of 32 KiB chunks.
        Manifest wrong = m;
        wrong.ram[5] = r;
        wrong.ram[5]->length = 4096;
        QCOMPARE(decodeManifest(encodeManifest(wrong)).error().code, Errc::Corrupt);
    }
    void lazyMemoryLiesRefused() {
        // A RAM table that does not fit the VM's memory.
        Manifest m = lazySample();
        m.vm.memoryMiB = 128;
        QCOMPARE(decodeManifest(encodeManifest(m)).error().code, Errc::Corrupt);
        // RAM without the device state that goes with it.
        m = lazySample();
        m.memory.clear();
        QCOMPARE(decodeManifest(encodeManifest(m)).error().code, Errc::Corrupt);
        // A RAM chunk of the wrong length.
        m = lazySample();
        m.ram[5]->length = 4095;
        QCOMPARE(decodeManifest(encodeManifest(m)).error().code, Errc::Corrupt);
        // Hot set: repeated, out of range, longer than the table.
        m = lazySample();
        m.ramHotSet = {5, 0, 5};
        QCOMPARE(decodeManifest(encodeManifest(m)).error().code, Errc::Corrupt);
        m.ramHotSet = {16384};
        QCOMPARE(decodeManifest(encodeManifest(m)).error().code, Errc::Corrupt);
        Bytes b = encodeManifest(lazySample());
        putBe32(b.data() + b.size() - 3 * 8 - 4, 0xffffffffu); // the hot set's count
        QCOMPARE(decodeManifest(b).error().code, Errc::Corrupt);
    }
    void badSizesRefused() {
        Manifest m = sample();
        m.chunkSize = 3000;
        m.disk.resize(m.chunkCount());
        QCOMPARE(decodeManifest(encodeManifest(m)).error().code, Errc::Corrupt);
        m = sample();
        m.parent = m.version; // a version cannot be its own parent
        QCOMPARE(decodeManifest(encodeManifest(m)).error().code, Errc::Corrupt);
    }
    void vmSpecRefusesWhatAKioskMustNotRun_data() {
        QTest::addColumn<QString>("json");
        QTest::newRow("host device")
            << "{\"memory_mib\":1024,\"vcpus\":1,\"machine\":\"pc-q35-7.2\",\"cpu\":\"qemu64\","
               "\"boot\":\"firmware\",\"hostdev\":\"0000:00:02.0\"}";
        QTest::newRow("host path") << "{\"memory_mib\":1024,\"vcpus\":1,\"machine\":\"pc-q35-7.2\","
                                      "\"cpu\":\"qemu64\",\"boot\":\"/etc/shadow\"}";
        QTest::newRow("domain xml")
            << "{\"memory_mib\":1024,\"vcpus\":1,\"machine\":\"pc-q35-7.2\",\"cpu\":\"qemu64\","
               "\"boot\":\"firmware\",\"xml\":\"<domain/>\"}";
        QTest::newRow("absurd memory") << "{\"memory_mib\":4000000,\"vcpus\":1,\"machine\":\"pc-"
                                          "q35-7.2\",\"cpu\":\"qemu64\",\"boot\":\"firmware\"}";
        QTest::newRow("no vcpus") << "{\"memory_mib\":1024,\"vcpus\":0,\"machine\":\"pc-q35-7.2\","
                                     "\"cpu\":\"qemu64\",\"boot\":\"firmware\"}";
        QTest::newRow("cpu passthrough")
            << "{\"memory_mib\":1024,\"vcpus\":1,\"machine\":\"pc-q35-7.2\",\"cpu\":\"host-"
               "passthrough\",\"boot\":\"firmware\"}";
        QTest::newRow("unknown machine")
            << "{\"memory_mib\":1024,\"vcpus\":1,\"machine\":\"microvm,x-option-roms=on\",\"cpu\":"
               "\"qemu64\",\"boot\":\"firmware\"}";
        QTest::newRow("missing field")
            << "{\"memory_mib\":1024,\"vcpus\":1,\"machine\":\"pc-q35-7.2\",\"cpu\":\"qemu64\"}";
    }
    void vmSpecRefusesWhatAKioskMustNotRun() {
        QFETCH(QString, json);
        auto doc = json::parse(json.toStdString());
        QVERIFY(doc.ok());
        auto spec = VmSpec::fromJson(*doc);
        QVERIFY(!spec.ok());
        QCOMPARE(spec.error().code, Errc::Corrupt);
    }
    void vmSpecRoundTrip() {
        VmSpec spec;
        spec.memoryMiB = 256;
        spec.boot = "demo-guest";
        auto back = VmSpec::fromJson(spec.toJson());
        QVERIFY(back.ok());
        QCOMPARE(back->memoryMiB, 256u);
        QCOMPARE(back->boot, std::string("demo-guest"));
        QVERIFY(!back->genid);
    }
    // The VM generation ID device (issue #16): written only when true, so a
    // spec without it is what older kiosks read; a non-boolean is corrupt.
    void vmSpecGenid() {
        VmSpec spec;
        spec.boot = "demo-guest";
        QVERIFY(!spec.toJson().find("genid"));
        spec.genid = true;
        const json::Value j = spec.toJson();
        QVERIFY(j.find("genid"));
        auto back = VmSpec::fromJson(j);
        QVERIFY(back.ok());
        QVERIFY(back->genid);
        const std::string head = "{\"memory_mib\":256,\"vcpus\":1,\"machine\":\"pc-q35-7.2\","
                                 "\"cpu\":\"qemu64\",\"boot\":\"firmware\",\"genid\":";
        auto explicitFalse = VmSpec::fromJson(*json::parse(head + "false}"));
        QVERIFY(explicitFalse.ok() && !explicitFalse->genid);
        auto notABool = VmSpec::fromJson(*json::parse(head + "\"yes\"}"));
        QVERIFY(!notABool.ok());
        // Through the sealed manifest too.
        Manifest m = sample();
        m.vm.genid = true;
        auto decoded = decodeManifest(encodeManifest(m));
        QVERIFY2(decoded.ok(), decoded.ok() ? "" : decoded.error().describe().c_str());
        QVERIFY(decoded->vm.genid);
    }
    void namesFollowTheAllowedSet_data() {
        QTest::addColumn<QByteArray>("name");
        QTest::addColumn<bool>("ok");
        QTest::newRow("plain") << QByteArray("alice") << true;
        QTest::newRow("digits dots") << QByteArray("a.b-c_9") << true;
        QTest::newRow("slash") << QByteArray("a/b") << false;
        QTest::newRow("dotdot") << QByteArray("a..b") << false;
        QTest::newRow("only dotdot") << QByteArray("..") << false;
        QTest::newRow("leading dot") << QByteArray(".hidden") << false;
        QTest::newRow("nul") << QByteArray("a\0b", 3) << false;
        QTest::newRow("non-ascii") << QByteArray("j\xc3\xb6rg") << false;
        QTest::newRow("upper") << QByteArray("Alice") << false;
        QTest::newRow("empty") << QByteArray("") << false;
        QTest::newRow("space") << QByteArray("a b") << false;
        QTest::newRow("too long") << QByteArray(65, 'a') << false;
        QTest::newRow("longest") << QByteArray(64, 'a') << true;
    }
    void namesFollowTheAllowedSet() {
        QFETCH(QByteArray, name);
        QFETCH(bool, ok);
        auto st =
            validateName("user name", std::string_view(name.constData(), std::size_t(name.size())));
        QCOMPARE(st.ok(), ok);
        if (!ok)
            QCOMPARE(st.error().code, Errc::InvalidArgument);
    }
    void jsonParserIsStrict() {
        for (const char* bad : {"", "{", "{\"a\":1,}", "[1 2]", "{\"a\":1}x", "\"\\x\"", "01x",
                                "{\"a\":1,\"a\":2}", "\"\\ud800\"", "nul"}) {
            QVERIFY2(!json::parse(bad).ok(), bad);
        }
        std::string deep(100, '[');
        deep += std::string(100, ']');
        QVERIFY(!json::parse(deep).ok());
        auto v = json::parse("{\"s\":\"a\\\"\\n\\u00e9\\ud83d\\ude00\",\"n\":-5,\"d\":1.5,\"b\":"
                             "true,\"z\":null,\"a\":[1,2]}");
        QVERIFY(v.ok());
        QCOMPARE(v->getString("s").value(), std::string("a\"\n\xc3\xa9\xf0\x9f\x98\x80"));
        QCOMPARE(v->getInt("n").value(), std::int64_t(-5));
        auto again = json::parse(v->dump());
        QVERIFY(again.ok());
        QCOMPARE(again->dump(), v->dump());
    }
};

QTEST_GUILESS_MAIN(TestManifest)
#include "test_manifest.moc"
