// NbdServer against real NBD clients (qemu-img, qemu-io, nbdinfo) and a raw
// socket client that sends what real clients never do. The backend is a
// FileBlockDevice, so every check can also look at the file's bytes.
#include "disk/file_block_device.h"
#include "disk/nbd_protocol.h"
#include "disk/nbd_server.h"
#include "nbd_test_client.h"
#include "testsupport.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTest>
#include <fstream>
#include <map>
#include <sys/stat.h>
#include <thread>

using namespace isr;
using namespace isr::disk;
using isr::test::RawNbdClient;

namespace {

constexpr std::uint64_t kDiskSize = (4u << 20) + 3 * 4096;

std::uint8_t patternByte(std::uint64_t i) {
    return std::uint8_t((i * 131 + (i >> 12)) & 0xff);
}

Bytes readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

QStringList qargs(std::initializer_list<std::string> args) {
    QStringList out;
    for (const auto& a : args)
        out << QString::fromStdString(a);
    return out;
}

} // namespace

class TestNbdServer : public QObject {
    Q_OBJECT

    std::unique_ptr<isr::test::TempDir> dir_;
    std::string imagePath_;
    std::unique_ptr<FileBlockDevice> device_;
    std::unique_ptr<NbdServer> server_;
    Bytes expected_; // what the image must contain

    std::string socketPath() const { return dir_->file("nbd.sock"); }
    void checkImage() {
        Bytes actual = readFile(imagePath_);
        QCOMPARE(actual.size(), expected_.size());
        QVERIFY(actual == expected_);
    }

private slots:
    void initTestCase() {
        isr::test::requirePrograms({"qemu-img", "qemu-io", "nbdinfo"});
        dir_ = std::make_unique<isr::test::TempDir>();
        imagePath_ = dir_->file("disk.raw");
        expected_.resize(kDiskSize);
        for (std::uint64_t i = 0; i < kDiskSize; ++i)
            expected_[i] = patternByte(i);
        std::ofstream(imagePath_, std::ios::binary)
            .write(reinterpret_cast<const char*>(expected_.data()), std::streamsize(kDiskSize));
        auto device = FileBlockDevice::open(imagePath_);
        QVERIFY(device.ok());
        device_ = std::move(*device);
        NbdServerOptions options;
        options.socketPath = socketPath();
        options.socketMode = 0660;
        auto server = NbdServer::start(*device_, options);
        QVERIFY2(server.ok(), server.ok() ? "" : server.error().describe().c_str());
        server_ = std::move(*server);
    }
    void cleanupTestCase() {
        if (server_)
            server_->stop();
    }
    // After every test the server must still be up and serving.
    void cleanup() {
        RawNbdClient client(socketPath());
        QVERIFY(client.connected());
        QCOMPARE(client.go(), kDiskSize);
        auto head = client.read(0, 512);
        QVERIFY(head.has_value());
        QVERIFY(std::equal(head->begin(), head->end(), expected_.begin()));
    }

    void socketHasRequestedMode() {
        struct stat st {};
        QCOMPARE(::lstat(socketPath().c_str(), &st), 0);
        QVERIFY(S_ISSOCK(st.st_mode));
        QCOMPARE(st.st_mode & 0777, 0660u);
    }

    void socketGroupIsApplied() {
        isr::test::TempDir dir;
        auto device = FileBlockDevice::create(dir.file("g.raw"), 4096);
        QVERIFY(device.ok());
        NbdServerOptions options;
        options.socketPath = dir.file("g.sock");
        options.socketMode = 0666;
        gid_t group = ::getgid() == 0 ? 1 : ::getgid(); // root may pick any group
        options.socketGroup = group;
        auto server = NbdServer::start(**device, options);
        QVERIFY2(server.ok(), server.ok() ? "" : server.error().describe().c_str());
        struct stat st {};
        QCOMPARE(::lstat(options.socketPath.c_str(), &st), 0);
        QCOMPARE(st.st_gid, group);
        QCOMPARE(st.st_mode & 0777, 0666u);
    }

    void qemuImgConvertCopiesEveryByte() {
        std::string out = dir_->file("copy.raw");
        auto r = isr::test::runProcess(
            "qemu-img", qargs({"convert", "-f", "raw", "-O", "raw", server_->uri(), out}));
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        QVERIFY(readFile(out) == expected_);
    }

    void qemuIoWritesAtOddOffsets() {
        auto r = isr::test::runProcess("qemu-io", qargs({"-f",
                                                         "raw",
                                                         server_->uri(),
                                                         "-c",
                                                         "write -P 0xab 1000 3000",
                                                         "-c",
                                                         "read -P 0xab 1000 3000",
                                                         "-c",
                                                         "write -P 0x5c 1048575 70001",
                                                         "-c",
                                                         "read -P 0x5c 1048575 70001",
                                                         "-c",
                                                         "write -z 2000000 5000",
                                                         "-c",
                                                         "read -P 0 2000000 5000",
                                                         "-c",
                                                         "discard 3000000 8192",
                                                         "-c",
                                                         "read -P 0 3000000 8192",
                                                         "-c",
                                                         "flush"}));
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        QVERIFY2(r.out.find("Pattern verification failed") == std::string::npos, r.out.c_str());
        QVERIFY2(r.out.find("error") == std::string::npos, r.out.c_str());
        std::fill_n(expected_.begin() + 1000, 3000, 0xab);
        std::fill_n(expected_.begin() + 1048575, 70001, 0x5c);
        std::fill_n(expected_.begin() + 2000000, 5000, 0);
        std::fill_n(expected_.begin() + 3000000, 8192, 0);
        checkImage();
    }

    void qemuIoWriteWithFua() {
        auto r = isr::test::runProcess(
            "qemu-io", qargs({"-f", "raw", server_->uri(), "-c", "write -f -P 0x11 7 513", "-c",
                              "read -P 0x11 7 513"}));
        QVERIFY2(r.exitCode == 0 && r.out.find("Pattern verification failed") == std::string::npos,
                 (r.out + r.err).c_str());
        std::fill_n(expected_.begin() + 7, 513, 0x11);
        checkImage();
    }

    void nbdinfoShowsSizeAndBlockSizes() {
        auto r = isr::test::runProcess("nbdinfo", qargs({"--json", server_->uri()}));
        QVERIFY2(r.exitCode == 0, r.err.c_str());
        auto doc = QJsonDocument::fromJson(QByteArray::fromStdString(r.out));
        QVERIFY2(doc.isObject(), r.out.c_str());
        auto exports = doc.object().value("exports").toArray();
        QCOMPARE(exports.size(), 1);
        auto e = exports.at(0).toObject();
        QCOMPARE(e.value("export-size").toInteger(), qint64(kDiskSize));
        QCOMPARE(e.value("block_size_minimum").toInteger(), 1);
        QCOMPARE(e.value("block_size_preferred").toInteger(), 4096);
        QCOMPARE(e.value("block_size_maximum").toInteger(), 32 << 20);
        QCOMPARE(e.value("can_flush").toBool(), true);
        QCOMPARE(e.value("can_fua").toBool(), true);
        QCOMPARE(e.value("can_trim").toBool(), true);
        QCOMPARE(e.value("can_zero").toBool(), true);
        QCOMPARE(e.value("is_read_only").toBool(), false);
        QCOMPARE(e.value("description").toString(), QStringLiteral("isr virtual disk"));
    }

    void badOptionMagicDisconnects() {
        RawNbdClient client(socketPath());
        QVERIFY(client.greet());
        QVERIFY(client.sendOption(nbd::kOptGo, nbd::encodeInfoRequest({"", {}}), 0x1234));
        QVERIFY(client.seesEof());
    }

    void unknownClientFlagsDisconnect() {
        RawNbdClient client(socketPath());
        QVERIFY(client.greet(0x80));
        QVERIFY(client.seesEof());
    }

    void unknownOptionsAreUnsupported() {
        RawNbdClient client(socketPath());
        QVERIFY(client.greet());
        for (std::uint32_t option :
             {nbd::kOptStructuredReply, nbd::kOptStartTls, 9u, 10u, 11u, 4242u}) {
            QVERIFY(client.sendOption(option, asBytes("ignored payload")));
            auto reply = client.readOptionReply();
            QVERIFY(reply.has_value());
            QCOMPARE(reply->option, option);
            QCOMPARE(reply->type, nbd::kRepErrUnsup);
        }
        // Malformed GO and an unknown export name get typed errors, not a hang-up.
        QVERIFY(client.sendOption(nbd::kOptGo, Bytes(3)));
        QCOMPARE(client.readOptionReply()->type, nbd::kRepErrInvalid);
        QVERIFY(client.sendOption(nbd::kOptInfo, nbd::encodeInfoRequest({"nope", {}})));
        QCOMPARE(client.readOptionReply()->type, nbd::kRepErrUnknown);
        // LIST names the export.
        QVERIFY(client.sendOption(nbd::kOptList));
        auto server = client.readOptionReply();
        QCOMPARE(server->type, nbd::kRepServer);
        QCOMPARE(getBe32(server->data.data()), 3u);
        QCOMPARE(asString(ByteView(server->data).subspan(4)), std::string_view("isr"));
        QCOMPARE(client.readOptionReply()->type, nbd::kRepAck);
        // INFO with NAME requested, then ACK, and the session is still in haggling.
        QVERIFY(
            client.sendOption(nbd::kOptInfo, nbd::encodeInfoRequest({"isr", {nbd::kInfoName}})));
        std::map<std::uint16_t, Bytes> infos;
        for (;;) {
            auto reply = client.readOptionReply();
            QVERIFY(reply.has_value());
            if (reply->type == nbd::kRepAck)
                break;
            QCOMPARE(reply->type, nbd::kRepInfo);
            infos[getBe16(reply->data.data())] = reply->data;
        }
        QVERIFY(infos.count(nbd::kInfoExport));
        QCOMPARE(getBe64(infos[nbd::kInfoExport].data() + 2), kDiskSize);
        QVERIFY(infos.count(nbd::kInfoBlockSize));
        QCOMPARE(asString(ByteView(infos[nbd::kInfoName]).subspan(2)), std::string_view("isr"));
        QVERIFY(client.sendOption(nbd::kOptAbort));
        QCOMPARE(client.readOptionReply()->type, nbd::kRepAck);
        QVERIFY(client.seesEof());
    }

    void exportNameHonoursNoZeroes() {
        for (bool noZeroes : {true, false}) {
            RawNbdClient client(socketPath());
            QVERIFY(client.greet(nbd::kClientFlagFixedNewstyle |
                                 (noZeroes ? nbd::kClientFlagNoZeroes : 0)));
            QVERIFY(client.sendOption(nbd::kOptExportName, asBytes("isr")));
            auto reply = client.recvBytes(noZeroes ? 10 : 134);
            QVERIFY(reply.has_value());
            QCOMPARE(getBe64(reply->data()), kDiskSize);
            QVERIFY(getBe16(reply->data() + 8) & nbd::kFlagSendFlush);
            QVERIFY(isAllZero(ByteView(*reply).subspan(10)));
            // The very next bytes are a reply to our first request, so the
            // zero padding was exactly right.
            auto data = client.read(100, 10);
            QVERIFY(data.has_value());
            QVERIFY(std::equal(data->begin(), data->end(), expected_.begin() + 100));
        }
        RawNbdClient client(socketPath());
        QVERIFY(client.greet());
        QVERIFY(client.sendOption(nbd::kOptExportName, asBytes("other")));
        QVERIFY(client.seesEof());
    }

    void badRequestsGetErrorsAndChangeNothing() {
        RawNbdClient client(socketPath());
        QCOMPARE(client.go(), kDiskSize);
        std::uint32_t error = 0;
        QVERIFY(!client.read(kDiskSize - 10, 11, &error));
        QCOMPARE(error, nbd::kEINVAL);
        QVERIFY(!client.read(~0ull - 5, 10, &error));
        QCOMPARE(error, nbd::kEINVAL);
        QVERIFY(!client.read(0, 64u << 20, &error)); // over the advertised maximum
        QCOMPARE(error, nbd::kEINVAL);
        // Past-end write: EINVAL, and its payload is consumed (the next reply
        // parses), and nothing is written.
        Bytes junk(5000, 0xee);
        QCOMPARE(client.write(kDiskSize - 100, junk), long(nbd::kEINVAL));
        QCOMPARE(client.command(77, 0, 10), long(nbd::kEINVAL));
        QCOMPARE(client.command(nbd::kCmdTrim, kDiskSize, 1), long(nbd::kEINVAL));
        QCOMPARE(client.command(nbd::kCmdWriteZeroes, kDiskSize - 1, 2), long(nbd::kEINVAL));
        QCOMPARE(client.write(0, junk, 0x100 /* unknown flag */), long(nbd::kEINVAL));
        // Zero-length requests succeed and do nothing.
        auto empty = client.read(kDiskSize, 0);
        QVERIFY(empty.has_value() && empty->empty());
        QCOMPARE(client.write(12345, {}), 0l);
        QCOMPARE(client.command(nbd::kCmdTrim, 0, 0), 0l);
        QCOMPARE(client.command(nbd::kCmdFlush, 0, 0), 0l);
        auto last = client.read(kDiskSize - 10, 10);
        QVERIFY(last.has_value());
        QVERIFY(std::equal(last->begin(), last->end(), expected_.end() - 10));
        QVERIFY(client.sendRequest(nbd::kCmdDisc, 1, 0, 0));
        QVERIFY(client.seesEof());
        checkImage();
    }

    void hugeWriteDisconnects() {
        RawNbdClient client(socketPath());
        QCOMPARE(client.go(), kDiskSize);
        QVERIFY(client.sendRequest(nbd::kCmdWrite, 1, 0, 0xffffffffu));
        QVERIFY(client.seesEof());
        checkImage();
    }

    void badRequestMagicDisconnects() {
        RawNbdClient client(socketPath());
        QCOMPARE(client.go(), kDiskSize);
        Bytes header = nbd::encodeRequest({0, nbd::kCmdRead, 1, 0, 512});
        header[3] ^= 0xff;
        QVERIFY(client.sendBytes(header));
        QVERIFY(client.seesEof());
    }

    void clientVanishingMidRequest() {
        {
            RawNbdClient client(socketPath());
            QCOMPARE(client.go(), kDiskSize);
            Bytes half(512 * 1024, 0x77);
            QVERIFY(client.sendRequest(nbd::kCmdWrite, 1, 0, 1u << 20, 0, half));
        } // closed with half the payload sent
        {
            RawNbdClient client(socketPath());
            QVERIFY(client.greet());
            QVERIFY(client.sendOption(nbd::kOptGo, Bytes{0, 0})); // cut inside an option
        }
        {
            RawNbdClient client(socketPath());
            QCOMPARE(client.go(), kDiskSize);
            QVERIFY(client.sendBytes(ByteView(nbd::encodeRequest({0, nbd::kCmdRead, 1, 0, 16}))
                                         .first(20))); // cut inside a header
        }
        {
            // Many reads queued, then gone without reading replies.
            RawNbdClient client(socketPath());
            QCOMPARE(client.go(), kDiskSize);
            for (int i = 0; i < 64; ++i)
                QVERIFY(client.sendRequest(nbd::kCmdRead, i, 0, 1u << 20));
        }
        checkImage(); // cleanup() then proves the server still serves
    }

    void pipelinedRequests() {
        RawNbdClient client(socketPath());
        QCOMPARE(client.go(), kDiskSize);
        // 100 writes of distinct blocks, each followed by reads of other
        // blocks, all sent before any reply is read; replies may come back in
        // any order and are matched by handle.
        constexpr int kCount = 100;
        constexpr std::uint32_t kBlock = 4096 + 17;
        std::map<std::uint64_t, std::pair<std::uint16_t, std::uint64_t>>
            sent; // handle -> (type, offset)
        std::thread sender([&] {
            for (int i = 0; i < kCount; ++i) {
                std::uint64_t offset = std::uint64_t(i) * kBlock;
                Bytes data(kBlock, std::uint8_t(i));
                client.sendRequest(nbd::kCmdWrite, 2 * i, offset, kBlock, 0, data);
                client.sendRequest(nbd::kCmdRead, 2 * i + 1, 3u << 20, 4096);
            }
        });
        for (int i = 0; i < kCount; ++i) {
            sent[2 * i] = {nbd::kCmdWrite, std::uint64_t(i) * kBlock};
            sent[2 * i + 1] = {nbd::kCmdRead, 3u << 20};
        }
        for (int i = 0; i < 2 * kCount; ++i) {
            auto reply = client.readReply();
            QVERIFY(reply.has_value());
            QCOMPARE(reply->error, 0u);
            auto it = sent.find(reply->handle);
            QVERIFY(it != sent.end());
            if (it->second.first == nbd::kCmdRead) {
                auto data = client.recvBytes(4096);
                QVERIFY(data.has_value());
                QVERIFY(std::equal(data->begin(), data->end(), expected_.begin() + (3u << 20)));
            }
            sent.erase(it);
        }
        sender.join();
        QVERIFY(sent.empty());
        QCOMPARE(client.command(nbd::kCmdFlush, 0, 0), 0l);
        for (int i = 0; i < kCount; ++i)
            std::fill_n(expected_.begin() + std::uint64_t(i) * kBlock, kBlock, std::uint8_t(i));
        checkImage();
    }

    void stopClosesOpenConnections() {
        isr::test::TempDir dir;
        auto device = FileBlockDevice::create(dir.file("small.raw"), 1 << 20);
        QVERIFY(device.ok());
        NbdServerOptions options;
        options.socketPath = dir.file("s.sock");
        auto server = NbdServer::start(**device, options);
        QVERIFY(server.ok());
        RawNbdClient idle(options.socketPath);
        QCOMPARE(idle.go(), std::uint64_t(1 << 20));
        RawNbdClient haggling(options.socketPath);
        QVERIFY(haggling.greet());
        QTRY_COMPARE((*server)->activeConnections(), 2);
        (*server)->stop();
        QVERIFY(idle.seesEof());
        QVERIFY(haggling.seesEof());
        QCOMPARE((*server)->activeConnections(), 0);
        struct stat st {};
        QVERIFY(::lstat(options.socketPath.c_str(), &st) != 0); // socket file removed
        RawNbdClient late(options.socketPath);
        QVERIFY(!late.connected());
    }

    void refusesToReplaceARegularFile() {
        isr::test::TempDir dir;
        std::ofstream(dir.file("not-a-socket")) << "precious";
        auto device = FileBlockDevice::create(dir.file("d.raw"), 4096);
        NbdServerOptions options;
        options.socketPath = dir.file("not-a-socket");
        auto server = NbdServer::start(**device, options);
        QVERIFY(!server.ok());
        QCOMPARE(server.error().code, Errc::AlreadyExists);
        QCOMPARE(readFile(dir.file("not-a-socket")).size(), std::size_t(8));
    }
};

QTEST_GUILESS_MAIN(TestNbdServer)
#include "test_nbd_server.moc"
