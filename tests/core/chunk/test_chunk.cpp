// Tests for core/chunk: round trips, convergence, and every way decode must
// refuse a chunk.
#include "chunk/chunk.h"
#include "crypto/crypto.h"

#include <QTest>
#include <cstring>

using namespace isr;
using namespace isr::chunk;

namespace {
Bytes compressible(std::size_t n) {
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i)
        b[i] = std::uint8_t("isr chunk text "[i % 15]);
    return b;
}
void expectCorrupt(const Result<Bytes>& r, const char* what) {
    QVERIFY2(!r.ok(), what);
    QVERIFY2(r.error().code == Errc::Corrupt, what);
}
} // namespace

class TestChunk : public QObject {
    Q_OBJECT
    Bytes secret_ = crypto::randomBytes(32);

private slots:
    void roundTrip_data() {
        QTest::addColumn<QByteArray>("kind");
        QTest::addColumn<int>("size");
        QTest::addColumn<int>("tag");
        QTest::newRow("compressible 128K") << QByteArray("text") << (128 << 10) << 2;
        QTest::newRow("random 128K") << QByteArray("random") << (128 << 10) << 1;
        QTest::newRow("zero 128K") << QByteArray("zero") << (128 << 10) << 2;
        QTest::newRow("empty") << QByteArray("random") << 0 << 1;
        QTest::newRow("one byte") << QByteArray("random") << 1 << 1;
        QTest::newRow("max compressible") << QByteArray("text") << int(kMaxChunkSize) << 2;
        QTest::newRow("max random") << QByteArray("random") << int(kMaxChunkSize) << 1;
    }
    void roundTrip() {
        QFETCH(QByteArray, kind);
        QFETCH(int, size);
        QFETCH(int, tag);
        Bytes pt = kind == "text"   ? compressible(std::size_t(size))
                   : kind == "zero" ? Bytes(std::size_t(size), 0)
                                    : crypto::randomBytes(std::size_t(size));
        EncodedChunk enc = encode(secret_, pt);
        QCOMPARE(enc.ref.length, std::uint32_t(size));
        QCOMPARE(int(enc.ciphertext.at(0)), tag);
        QVERIFY(enc.ref.name == nameOf(enc.ciphertext));
        if (tag == 1)
            QCOMPARE(enc.ciphertext.size(), pt.size() + 1 + crypto::kMacSize);
        else
            QVERIFY(enc.ciphertext.size() < pt.size());
        auto back = decode(enc.ref, enc.ciphertext);
        QVERIFY2(back.ok(), back.ok() ? "" : back.error().describe().c_str());
        QVERIFY(*back == pt);
    }

    void convergence() {
        Bytes pt = compressible(4096);
        EncodedChunk a = encode(secret_, pt);
        EncodedChunk b = encode(secret_, pt);
        QVERIFY(a.ref.name == b.ref.name);
        QVERIFY(a.ref.key == b.ref.key);
        QVERIFY(a.ciphertext == b.ciphertext);
        EncodedChunk c = encode(crypto::randomBytes(32), pt);
        QVERIFY(c.ref.name != a.ref.name);
        QVERIFY(c.ref.key != a.ref.key);
        Bytes other = pt;
        other[100] ^= 1;
        QVERIFY(encode(secret_, other).ref.name != a.ref.name);
        // The key is the keyed hash of the body, never the plain hash.
        QVERIFY(a.ref.key != crypto::hash(pt));
    }

    void decodeRefusesTampering() {
        for (Bytes pt : {compressible(10000), crypto::randomBytes(10000)}) {
            EncodedChunk enc = encode(secret_, pt);
            Bytes flippedCt = enc.ciphertext;
            flippedCt[flippedCt.size() / 2] ^= 0x80;
            expectCorrupt(decode(enc.ref, flippedCt), "flipped byte, stale name");
            // Even with a name that matches the tampered bytes, the MAC refuses.
            ChunkRef renamed = enc.ref;
            renamed.name = nameOf(flippedCt);
            expectCorrupt(decode(renamed, flippedCt), "flipped byte, matching name");

            ChunkRef wrongName = enc.ref;
            wrongName.name[0] ^= 1;
            auto r = decode(wrongName, enc.ciphertext);
            expectCorrupt(r, "wrong name");
            QVERIFY(r.error().message.find("expected " + nameHex(wrongName.name)) !=
                    std::string::npos);
            QVERIFY(r.error().message.find("actual " + nameHex(enc.ref.name)) != std::string::npos);

            ChunkRef wrongKey = enc.ref;
            wrongKey.key[5] ^= 1;
            expectCorrupt(decode(wrongKey, enc.ciphertext), "wrong key");

            ChunkRef wrongLength = enc.ref;
            wrongLength.length += 1;
            auto wl = decode(wrongLength, enc.ciphertext);
            expectCorrupt(wl, "length too big");
            QVERIFY(wl.error().message.find("expected 10001") != std::string::npos);
            wrongLength.length = enc.ref.length - 1;
            expectCorrupt(decode(wrongLength, enc.ciphertext), "length too small");
            wrongLength.length = kMaxChunkSize + 1;
            expectCorrupt(decode(wrongLength, enc.ciphertext), "length over max");

            ByteView truncated = ByteView(enc.ciphertext).first(enc.ciphertext.size() - 1);
            ChunkRef truncRef = enc.ref;
            truncRef.name = nameOf(truncated);
            expectCorrupt(decode(truncRef, truncated), "truncated");
            expectCorrupt(decode(enc.ref, truncated), "truncated, stale name");

            ChunkRef emptyRef = enc.ref;
            emptyRef.name = nameOf({});
            expectCorrupt(decode(emptyRef, {}), "empty");
            expectCorrupt(decode(enc.ref, {}), "empty, stale name");

            // A changed tag is caught by the AD even when the name is updated.
            Bytes retagged = enc.ciphertext;
            retagged[0] = retagged[0] == 1 ? 2 : 1;
            ChunkRef retagRef = enc.ref;
            retagRef.name = nameOf(retagged);
            expectCorrupt(decode(retagRef, retagged), "swapped tag");
            retagged[0] = 7;
            retagRef.name = nameOf(retagged);
            auto badTag = decode(retagRef, retagged);
            expectCorrupt(badTag, "unknown tag");
            QVERIFY(badTag.error().message.find("tag") != std::string::npos);
        }
    }

    void nameHexRoundTrip() {
        ChunkName n = nameOf(asBytes("x"));
        std::string h = nameHex(n);
        QCOMPARE(h.size(), std::size_t(64));
        auto back = nameFromHex(h);
        QVERIFY(back.ok());
        QVERIFY(*back == n);
        QCOMPARE(nameFromHex(h.substr(1)).error().code, Errc::InvalidArgument);
        QCOMPARE(nameFromHex(std::string(64, 'g')).error().code, Errc::InvalidArgument);
        QCOMPARE(nameFromHex("").error().code, Errc::InvalidArgument);
    }
};

QTEST_GUILESS_MAIN(TestChunk)
#include "test_chunk.moc"
