// Tests for core/util: typed results, hex, zero detection, logging.
#include "util/bytes.h"
#include "util/hardening.h"
#include "util/json.h"
#include "util/log.h"
#include "util/periodic.h"
#include "util/result.h"

#include <QTemporaryDir>
#include <QTest>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>

using namespace isr;

namespace {
Result<int> parsePositive(int v) {
    if (v <= 0)
        return Error(Errc::InvalidArgument, "not positive");
    return v;
}
Result<int> doubled(int v) {
    ISR_TRY_ASSIGN(int x, parsePositive(v));
    return 2 * x;
}
Status check(int v) {
    ISR_TRY_STATUS(parsePositive(v));
    return {};
}

void writeText(const std::string& path, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream out(path);
    out << text;
}
} // namespace

class TestUtil : public QObject {
    Q_OBJECT
private slots:
    // Issue #16 item 8: the swap rule, on a fake /proc/swaps and /sys.
    void swapIsJudgedByWhatIsBelowIt() {
        QTemporaryDir tmp;
        const std::string root = tmp.path().toStdString();
        const std::string swaps = root + "/swaps", sys = root + "/sys";
        const std::string header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        // dm-0: LUKS; dm-1: LVM on dm-0; dm-2: plain LVM on a disk; zram0.
        writeText(sys + "/block/dm-0/dm/uuid", "CRYPT-LUKS2-0123-cryptswap\n");
        writeText(sys + "/block/dm-1/dm/uuid", "LVM-abcdef\n");
        std::filesystem::create_directories(sys + "/block/dm-1/slaves/dm-0");
        writeText(sys + "/block/dm-2/dm/uuid", "LVM-plain\n");
        std::filesystem::create_directories(sys + "/block/dm-2/slaves/vda3");

        auto judge = [&](const std::string& line) {
            writeText(swaps, header + line + "\n");
            auto areas = hardening::activeSwap(swaps, sys);
            if (!areas.ok() || areas->size() != 1)
                qFatal("activeSwap: %s", line.c_str());
            return (*areas)[0];
        };
        QVERIFY(judge("/dev/dm-0    partition\t1048572\t0\t-2").safe);
        QVERIFY(judge("/dev/dm-1    partition\t1048572\t0\t-2").safe);  // LVM on LUKS
        QVERIFY(!judge("/dev/dm-2   partition\t1048572\t0\t-2").safe);  // LVM, no crypt
        QVERIFY(!judge("/dev/vda3   partition\t1048572\t0\t-2").safe);  // a bare disk
        QVERIFY(judge("/dev/zram0   partition\t1048572\t0\t100").safe); // RAM
        auto file = judge("/swap\\040file  file\t1048572\t0\t-2");      // escaped blank
        QCOMPARE(file.path, std::string("/swap file"));
        QVERIFY(!file.safe);

        writeText(swaps, header);
        QVERIFY(hardening::checkSwapEncrypted(swaps, sys).ok()); // no swap at all
        writeText(swaps, header + "/dev/zram0 partition 1 0 100\n/dev/dm-2 partition 1 0 -2\n");
        auto st = hardening::checkSwapEncrypted(swaps, sys);
        QVERIFY(!st.ok());
        QCOMPARE(st.error().code, Errc::Unsupported);
        QVERIFY2(st.error().message.find("/dev/dm-2") != std::string::npos &&
                     st.error().message.find("zram0") == std::string::npos,
                 st.error().message.c_str());
        QVERIFY(!hardening::activeSwap(root + "/absent", sys).ok());
    }

    void coreDumpsOff() {
        QVERIFY(hardening::disableCoreDumps().ok());
        QCOMPARE(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
        struct rlimit lim {};
        QVERIFY(::getrlimit(RLIMIT_CORE, &lim) == 0);
        QCOMPARE(lim.rlim_cur, rlim_t(0));
        QCOMPARE(lim.rlim_max, rlim_t(0));
    }

    void privateDirectories() {
        QTemporaryDir tmp;
        const std::string root = tmp.path().toStdString();
        QVERIFY(hardening::ensurePrivateDirectory(root + "/mine").ok());
        struct stat st {};
        QVERIFY(::stat((root + "/mine").c_str(), &st) == 0);
        QCOMPARE(st.st_mode & 0777, mode_t(0700));
        QVERIFY(::mkdir((root + "/open").c_str(), 0700) == 0 &&
                ::chmod((root + "/open").c_str(), 0777) == 0);
        QCOMPARE(hardening::ensurePrivateDirectory(root + "/open").error().code,
                 Errc::AccessDenied);
        QVERIFY(::symlink((root + "/mine").c_str(), (root + "/link").c_str()) == 0);
        QCOMPARE(hardening::checkPrivateDirectory(root + "/link").error().code, Errc::AccessDenied);
        auto a = hardening::makePrivateTempDirectory(root, "isr-x-");
        auto b = hardening::makePrivateTempDirectory(root, "isr-x-");
        QVERIFY(a.ok() && b.ok() && *a != *b);
        QVERIFY(hardening::checkPrivateDirectory(*a).ok());
    }

    void resultCarriesValueOrError() {
        auto good = doubled(21);
        QVERIFY(good.ok());
        QCOMPARE(*good, 42);
        auto bad = doubled(-1);
        QVERIFY(!bad.ok());
        QCOMPARE(bad.error().code, Errc::InvalidArgument);
        QVERIFY(check(1).ok());
        QCOMPARE(check(0).error().code, Errc::InvalidArgument);
    }
    void errorContextPrefixes() {
        Error e(Errc::Corrupt, "MAC mismatch");
        Error c = e.context("chunk ab/abcd");
        QCOMPARE(QString::fromStdString(c.message), QStringLiteral("chunk ab/abcd: MAC mismatch"));
        QCOMPARE(QString::fromStdString(c.describe()),
                 QStringLiteral("corrupt: chunk ab/abcd: MAC mismatch"));
    }
    // Found by tests/fuzz/fuzz_json: "%.17g" wrote -0.0 as "-0" and 5.0 as
    // "5", which read back as integers.
    void jsonIntegralDoublesStayDoubles() {
        for (double d : {5.0, -0.0, 1e15, -3.0}) {
            const std::string text = json::Value(d).dump();
            auto back = json::parse(text);
            QVERIFY(back.ok());
            QVERIFY2(!back->isInt(), text.c_str());
            QCOMPARE(back->asDouble(), d);
            QCOMPARE(back->dump(), text);
        }
        QCOMPARE(json::Value(std::numeric_limits<double>::infinity()).dump(), std::string("null"));
    }

    // Accounts carry a checksum over their dump and locks are compared as
    // bytes: the canonical form (sorted keys, compact, these escapes) must
    // not change with the library underneath.
    void jsonCanonicalOutput() {
        auto v = json::parse(" { \"b\" : 1, \"a\" : {\"z\":[], \"B\":null, \"\\u00e9\":"
                             "\"x\\u0001\\t\\n\\r\\\"\\\\\\/\\u001f\\ud83d\\ude00\"},"
                             "\"n\":-9223372036854775808, \"m\":9223372036854775807, \"t\":true,"
                             "\"f\":false, \"s\":\"\"}\n");
        QVERIFY2(v.ok(), v.ok() ? "" : v.error().describe().c_str());
        QCOMPARE(v->dump(),
                 std::string("{\"a\":{\"B\":null,\"z\":[],\"\xc3\xa9\":\"x\\u0001\\t\\n\\r"
                             "\\\"\\\\/\\u001f\xf0\x9f\x98\x80\"},\"b\":1,\"f\":false,"
                             "\"m\":9223372036854775807,\"n\":-9223372036854775808,"
                             "\"s\":\"\",\"t\":true}"));
        json::Object built{{"user", "alice"},
                           {"kdf", json::Object{{"ops", std::int64_t(3)}, {"salt", "00ff"}}},
                           {"format", 1},
                           {"list", json::Array{1, "two", nullptr, true}}};
        QCOMPARE(json::Value(built).dump(),
                 std::string("{\"format\":1,\"kdf\":{\"ops\":3,\"salt\":\"00ff\"},"
                             "\"list\":[1,\"two\",null,true],\"user\":\"alice\"}"));
    }
    void jsonDepthBound() {
        // A value is as deep as the containers around it; kMaxDepth (32)
        // is the deepest allowed.
        auto nested = [](int containers, const std::string& inner) {
            return std::string(std::size_t(containers), '[') + inner +
                   std::string(std::size_t(containers), ']');
        };
        QVERIFY(json::parse(nested(json::kMaxDepth + 1, "")).ok());
        QVERIFY(json::parse(nested(json::kMaxDepth, "1")).ok());
        QCOMPARE(json::parse(nested(json::kMaxDepth + 2, "")).error().code, Errc::Corrupt);
        QCOMPARE(json::parse(nested(json::kMaxDepth + 1, "1")).error().code, Errc::Corrupt);
        // Far deeper than any stack would take: refused, not a crash.
        QCOMPARE(json::parse(nested(100000, "")).error().code, Errc::Corrupt);
    }
    void jsonRefuses_data() {
        QTest::addColumn<QByteArray>("text");
        QTest::newRow("empty") << QByteArray("");
        QTest::newRow("duplicate key") << QByteArray(R"({"a":1,"a":1})");
        QTest::newRow("int64 max + 1") << QByteArray("9223372036854775808");
        QTest::newRow("int64 min - 1") << QByteArray("-9223372036854775809");
        QTest::newRow("beyond uint64") << QByteArray("123456789012345678901234567890");
        QTest::newRow("float overflow") << QByteArray("1e999");
        QTest::newRow("NaN") << QByteArray("NaN");
        QTest::newRow("NUL after document") << QByteArray("{}\0{}", 5);
        QTest::newRow("invalid UTF-8") << QByteArray("[\"\xc3\x28\"]");
        QTest::newRow("lone surrogate") << QByteArray(R"(["\ud800"])");
        QTest::newRow("raw control character") << QByteArray("[\"a\x01\"]");
        QTest::newRow("trailing data") << QByteArray("{} x");
        QTest::newRow("two documents") << QByteArray("{}{}");
        QTest::newRow("trailing comma") << QByteArray("[1,]");
        QTest::newRow("comment") << QByteArray("/* c */ 1");
        QTest::newRow("single quotes") << QByteArray("{'a':1}");
        QTest::newRow("unterminated") << QByteArray(R"({"a":)");
        QTest::newRow("too large") << QByteArray(int(json::kMaxInput) + 1, ' ');
    }
    void jsonRefuses() {
        QFETCH(QByteArray, text);
        auto v = json::parse(std::string_view(text.constData(), std::size_t(text.size())));
        QVERIFY(!v.ok());
        QCOMPARE(v.error().code, Errc::Corrupt);
    }

    void hexRoundTrip() {
        Bytes data = {0x00, 0x01, 0xab, 0xff};
        QCOMPARE(QString::fromStdString(toHex(data)), QStringLiteral("0001abff"));
        auto back = fromHex("0001ABff");
        QVERIFY(back.ok());
        QVERIFY(*back == data);
        QVERIFY(!fromHex("abc").ok());
        QVERIFY(!fromHex("zz").ok());
    }
    void bigEndian() {
        std::uint8_t buf[8];
        putBe64(buf, 0x0102030405060708ull);
        QCOMPARE(buf[0], std::uint8_t(1));
        QCOMPARE(buf[7], std::uint8_t(8));
        QCOMPARE(getBe64(buf), 0x0102030405060708ull);
        putBe32(buf, 0xdeadbeef);
        QCOMPARE(getBe32(buf), 0xdeadbeefu);
        putBe16(buf, 0x25e5);
        QCOMPARE(getBe16(buf), std::uint16_t(0x25e5));
    }
    void zeroDetection() {
        Bytes z(131072, 0);
        QVERIFY(isAllZero(z));
        QVERIFY(isAllZero({}));
        for (std::size_t pos : {std::size_t(0), std::size_t(15), std::size_t(16), z.size() - 1}) {
            Bytes nz = z;
            nz[pos] = 1;
            QVERIFY2(!isAllZero(nz), qPrintable(QString::number(pos)));
        }
        Bytes small = {0, 0, 3};
        QVERIFY(!isAllZero(small));
    }
    void periodicThreadRunsStopsAndEndsItself() {
        using namespace std::chrono_literals;
        std::atomic<int> runs{0};
        PeriodicThread t;
        t.start(5ms, [&] { return ++runs < 3; }); // ends itself after the third run
        for (int i = 0; i < 400 && t.running(); ++i)
            std::this_thread::sleep_for(5ms);
        QVERIFY(!t.running());
        QCOMPARE(runs.load(), 3);

        // stop() does not wait out the interval, and no run follows it.
        runs = 0;
        t.start(1h, [&] { return ++runs > 0; });
        QVERIFY(t.running());
        auto before = std::chrono::steady_clock::now();
        t.stop();
        QVERIFY(std::chrono::steady_clock::now() - before < 30s); // not the hour
        QCOMPARE(runs.load(), 0);
        QVERIFY(!t.running());
        t.stop(); // idempotent
    }

    void logSinkReceivesLines() {
        std::string seen;
        log::setSink([&](log::Level, std::string_view cat, std::string_view msg) {
            seen = std::string(cat) + "|" + std::string(msg);
        });
        log::setLevel(log::Level::Info);
        ISR_LOG_INFO("test") << "value=" << 7;
        QCOMPARE(QString::fromStdString(seen), QStringLiteral("test|value=7"));
        seen.clear();
        ISR_LOG_DEBUG("test") << "hidden";
        QVERIFY(seen.empty());
        log::setSink(nullptr);
    }
};

QTEST_GUILESS_MAIN(TestUtil)
#include "test_util.moc"
