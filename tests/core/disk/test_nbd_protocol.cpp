// Unit tests for the pure NBD parsers (no sockets): framing, bounds, flags.
#include "disk/nbd_protocol.h"

#include <QTest>
#include <limits>

using namespace isr;
using namespace isr::disk;

class TestNbdProtocol : public QObject {
    Q_OBJECT
private slots:
    void requestRoundTrip() {
        nbd::Request r{nbd::kCmdFlagFua, nbd::kCmdWrite, 0x1122334455667788ull, 4096, 512};
        Bytes wire = nbd::encodeRequest(r);
        QCOMPARE(wire.size(), nbd::kRequestHeaderSize);
        auto back = nbd::parseRequest(wire);
        QVERIFY(back.ok());
        QCOMPARE(back->flags, r.flags);
        QCOMPARE(back->type, r.type);
        QCOMPARE(back->handle, r.handle);
        QCOMPARE(back->offset, r.offset);
        QCOMPARE(back->length, r.length);
    }
    void badMagicAndSizeAreCorrupt() {
        Bytes wire = nbd::encodeRequest({});
        wire[0] ^= 1;
        QCOMPARE(nbd::parseRequest(wire).error().code, Errc::Corrupt);
        QCOMPARE(nbd::parseRequest(ByteView(wire).first(27)).error().code, Errc::Corrupt);
        QCOMPARE(nbd::parseRequest(Bytes(29)).error().code, Errc::Corrupt);
    }
    void boundsAreCheckedWithoutOverflow() {
        nbd::ExportLimits limits{1 << 20, 1 << 16, 1, false};
        auto verdict = [&](std::uint16_t type, std::uint64_t offset, std::uint32_t length,
                           std::uint16_t flags = 0) {
            return nbd::checkRequest({flags, type, 1, offset, length}, limits);
        };
        QCOMPARE(verdict(nbd::kCmdRead, 0, 4096).error, 0u);
        QCOMPARE(verdict(nbd::kCmdRead, (1 << 20) - 1, 1).error, 0u);
        QCOMPARE(verdict(nbd::kCmdRead, 1 << 20, 0).error, 0u); // zero length at the end
        QCOMPARE(verdict(nbd::kCmdRead, (1 << 20) - 1, 2).error, nbd::kEINVAL);
        QCOMPARE(verdict(nbd::kCmdRead, std::numeric_limits<std::uint64_t>::max(), 2).error,
                 nbd::kEINVAL);
        QCOMPARE(verdict(nbd::kCmdRead, 0, (1 << 16) + 1).error, nbd::kEINVAL);
        // A past-end write is an error, but its payload must still be read.
        auto w = verdict(nbd::kCmdWrite, 1 << 20, 100);
        QCOMPARE(w.error, nbd::kEINVAL);
        QCOMPARE(w.payloadSize, 100u);
        QVERIFY(!w.disconnect);
        QVERIFY(verdict(nbd::kCmdWrite, 0, (1 << 16) + 1).disconnect);
        QCOMPARE(verdict(nbd::kCmdTrim, 0, 1 << 20).error, 0u);
        QCOMPARE(verdict(nbd::kCmdTrim, 1, 1 << 20).error, nbd::kEINVAL);
        QCOMPARE(verdict(nbd::kCmdWriteZeroes, 0, 10, nbd::kCmdFlagNoHole).error, 0u);
        QCOMPARE(verdict(nbd::kCmdWrite, 0, 10, nbd::kCmdFlagNoHole).error, nbd::kEINVAL);
        QCOMPARE(verdict(nbd::kCmdFlush, 0, 0).error, 0u);
        QCOMPARE(verdict(99, 0, 0).error, nbd::kEINVAL);
        QCOMPARE(verdict(5 /* CACHE, not offered */, 0, 10).error, nbd::kEINVAL);
        limits.readOnly = true;
        QCOMPARE(verdict(nbd::kCmdWrite, 0, 10).error, nbd::kEPERM);
        limits.readOnly = false;
        limits.minimum = 512;
        QCOMPARE(verdict(nbd::kCmdRead, 512, 1024).error, 0u);
        QCOMPARE(verdict(nbd::kCmdRead, 100, 512).error, nbd::kEINVAL);
    }
    void randomHeadersKeepTheInvariants() {
        // A cheap in-tree fuzz: whatever the header says, a request the
        // server would execute is inside the export and within the limits,
        // and only a WRITE ever asks for a payload.
        std::uint64_t state = 0x9e3779b97f4a7c15ull;
        auto next = [&] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            return state;
        };
        nbd::ExportLimits limits{(1ull << 30) + 512, 1u << 25, 1, false};
        int executed = 0;
        for (int i = 0; i < 200000; ++i) {
            Bytes header(nbd::kRequestHeaderSize);
            for (auto& b : header)
                b = std::uint8_t(next());
            if (i % 4 != 0)
                putBe32(header.data(), nbd::kRequestMagic);
            if (i % 3 == 0) // small types and offsets near the end are the interesting ones
                putBe16(header.data() + 6, std::uint16_t(next() % 10));
            if (i % 5 == 0)
                putBe64(header.data() + 16, limits.size - next() % 70000);
            if (i % 2 == 0)
                putBe16(header.data() + 4, std::uint16_t(next() % 4)); // FUA, NO_HOLE
            if (i % 7 < 3)
                putBe32(header.data() + 24, std::uint32_t(next() % 100000));
            auto request = nbd::parseRequest(header);
            if (getBe32(header.data()) != nbd::kRequestMagic) {
                QVERIFY(!request.ok());
                continue;
            }
            QVERIFY(request.ok());
            nbd::Verdict v = nbd::checkRequest(*request, limits);
            if (request->type != nbd::kCmdWrite)
                QCOMPARE(v.payloadSize, 0u);
            else if (!v.disconnect)
                QCOMPARE(v.payloadSize, request->length);
            if (v.disconnect || v.error != 0 || request->type == nbd::kCmdFlush ||
                request->type == nbd::kCmdDisc)
                continue;
            executed++;
            QVERIFY(request->offset <= limits.size);
            QVERIFY(request->length <= limits.size - request->offset);
            if (request->type == nbd::kCmdRead || request->type == nbd::kCmdWrite)
                QVERIFY(request->length <= limits.maxPayload);
        }
        QVERIFY2(executed > 100, "the generator must reach the executed branch");
    }

    void infoRequestParsing() {
        nbd::InfoRequest r{"isr", {nbd::kInfoName, nbd::kInfoBlockSize}};
        auto back = nbd::parseInfoRequest(nbd::encodeInfoRequest(r));
        QVERIFY(back.ok());
        QCOMPARE(QString::fromStdString(back->exportName), QStringLiteral("isr"));
        QCOMPARE(back->infos.size(), std::size_t(2));
        Bytes truncated = nbd::encodeInfoRequest(r);
        truncated.pop_back();
        QCOMPARE(nbd::parseInfoRequest(truncated).error().code, Errc::InvalidArgument);
        Bytes longName = nbd::encodeInfoRequest(r);
        putBe32(longName.data(), 0xffffffffu);
        QCOMPARE(nbd::parseInfoRequest(longName).error().code, Errc::InvalidArgument);
        QCOMPARE(nbd::parseInfoRequest(Bytes(3)).error().code, Errc::InvalidArgument);
    }
    void errorMapping() {
        QCOMPARE(nbd::errorFor(Errc::Corrupt), nbd::kEIO);
        QCOMPARE(nbd::errorFor(Errc::NoSpace), nbd::kENOSPC);
        QCOMPARE(nbd::errorFor(Errc::InvalidArgument), nbd::kEINVAL);
    }
};

QTEST_GUILESS_MAIN(TestNbdProtocol)
#include "test_nbd_protocol.moc"
