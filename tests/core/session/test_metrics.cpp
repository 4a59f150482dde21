// The kiosk's metrics file: valid Prometheus text format (checked line by
// line against the exposition format's grammar, and by promtool when it is
// installed), written atomically, and moving when sessions happen.
#include "session/kiosk_status.h"
#include "session/metrics.h"
#include "testsupport.h"

#include <QProcess>
#include <QRegularExpression>
#include <QStandardPaths>
#include <QTest>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

using isr::session::ErrorKind;
using isr::session::KioskMetrics;
using isr::session::Stage;

namespace {

std::string readFile(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// Parses the text format; returns "" if valid, else what is wrong. Fills
// `samples` with "name{labels}" -> value.
std::string checkExposition(const std::string& text, std::map<std::string, double>& samples) {
    static const QRegularExpression help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$)");
    static const QRegularExpression type(
        R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
    static const QRegularExpression sample(
        R"re(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*)?\})? (\S+)$)re");
    std::map<std::string, std::string> types;
    std::set<std::string> helped;
    if (text.empty() || text.back() != '\n')
        return "must end with a newline";
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        const QString l = QString::fromStdString(line);
        if (auto m = help.match(l); m.hasMatch()) {
            if (!helped.insert(m.captured(1).toStdString()).second)
                return "second HELP for " + line;
            continue;
        }
        if (auto m = type.match(l); m.hasMatch()) {
            if (!types.emplace(m.captured(1).toStdString(), m.captured(2).toStdString()).second)
                return "second TYPE for " + line;
            continue;
        }
        auto m = sample.match(l);
        if (!m.hasMatch())
            return "not a sample: " + line;
        std::string name = m.captured(1).toStdString();
        std::string family = name;
        for (const char* suffix : {"_bucket", "_sum", "_count"})
            if (!types.count(family) && family.size() > std::strlen(suffix) &&
                family.compare(family.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
                family.resize(family.size() - std::strlen(suffix));
        if (!types.count(family))
            return "sample before its TYPE: " + line;
        bool ok = false;
        double v = m.captured(5).toDouble(&ok);
        if (!ok && m.captured(5) != "+Inf")
            return "bad value: " + line;
        std::string series = name + m.captured(2).toStdString();
        if (!samples.emplace(series, v).second)
            return "duplicate series: " + line;
    }
    // Histograms: cumulative buckets, +Inf equal to _count.
    for (const auto& [family, t] : types) {
        if (t != "histogram")
            continue;
        double previous = -1;
        bool sawInf = false;
        std::istringstream again(text);
        while (std::getline(again, line)) {
            if (line.rfind(family + "_bucket{", 0) != 0)
                continue;
            double v = samples.at(line.substr(0, line.rfind(' ')));
            if (v < previous)
                return "buckets not cumulative in " + family;
            previous = v;
            if (line.find("le=\"+Inf\"") != std::string::npos) {
                sawInf = true;
                if (v != samples.at(family + "_count"))
                    return "+Inf bucket differs from _count in " + family;
            }
        }
        if (!sawInf)
            return "no +Inf bucket in " + family;
    }
    return "";
}

} // namespace

class TestMetrics : public QObject {
    Q_OBJECT
private slots:
    void fileIsValidAndMoves() {
        isr::test::TempDir dir;
        const std::string path = dir.file("isr-kiosk.prom");
        KioskMetrics metrics(path);
        // Written at start, all zeros.
        std::map<std::string, double> s;
        {
            auto why = checkExposition(readFile(path), s);
            QVERIFY2(why.empty(), why.c_str());
        }
        QCOMPARE(s.at("isr_resume_seconds_count"), 0.0);
        QCOMPARE(s.at("isr_session_active"), 0.0);

        metrics.sessionActive(true);
        metrics.resumed(7.5, 1000);
        metrics.resumed(42, 2000);
        metrics.suspended(3.25, 500);
        metrics.failed(Stage::Fetching, ErrorKind::StoreUnreachable);
        metrics.failed(Stage::Fetching, ErrorKind::StoreUnreachable);
        metrics.failed(Stage::Suspending, ErrorKind::NoSpace);
        metrics.cache(10 << 20, 8ull << 30, 90, 10);
        isr::session::HoardStatus hoard;
        hoard.bytesDone = 5;
        hoard.bytesTotal = 9;
        hoard.problem = ErrorKind::StoreUnreachable;
        metrics.hoard(hoard);

        s.clear();
        const std::string text = readFile(path);
        {
            auto why = checkExposition(text, s);
            QVERIFY2(why.empty(), why.c_str());
        }
        QCOMPARE(text, metrics.render());
        QCOMPARE(s.at("isr_resume_seconds_count"), 2.0);
        QCOMPARE(s.at("isr_resume_seconds_sum"), 49.5);
        QCOMPARE(s.at("isr_resume_seconds_bucket{le=\"5\"}"), 0.0);
        QCOMPARE(s.at("isr_resume_seconds_bucket{le=\"10\"}"), 1.0);
        QCOMPARE(s.at("isr_resume_seconds_bucket{le=\"60\"}"), 2.0);
        QCOMPARE(s.at("isr_suspend_seconds_count"), 1.0);
        QCOMPARE(s.at("isr_store_bytes_total{direction=\"down\"}"), 3000.0);
        QCOMPARE(s.at("isr_store_bytes_total{direction=\"up\"}"), 500.0);
        QCOMPARE(s.at("isr_session_failures_total{stage=\"fetching\",kind=\"store_unreachable\"}"),
                 2.0);
        QCOMPARE(s.at("isr_cache_requests_total{result=\"hit\"}"), 90.0);
        QCOMPARE(s.at("isr_hoard_problem"), 1.0);
        QCOMPARE(s.at("isr_session_active"), 1.0);
        // No user or parcel name can be in it: there is no such label.
        QVERIFY(text.find("user") == std::string::npos);
        // Atomic replacement: no temporary file is left behind.
        QVERIFY(!std::filesystem::exists(path + ".tmp"));

        // promtool, when installed, agrees.
        if (!QStandardPaths::findExecutable("promtool").isEmpty()) {
            QProcess p;
            p.start("promtool", {"check", "metrics"});
            p.write(QByteArray::fromStdString(text));
            p.closeWriteChannel();
            QVERIFY(p.waitForFinished(30000));
            QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
        } else {
            qInfo("promtool not installed: checked against the format's grammar only");
        }
    }

    // `isr-kiosk --status` reads what the running kiosk wrote: the figures
    // a person needs, and exit status 1 only for what staff must fix.
    void statusReadsTheMetricsFile() {
        using isr::session::kioskStatus;
        isr::test::TempDir dir;
        const std::string noSwap = dir.file("swaps-none");
        const std::string badSwap = dir.file("swaps-plain");
        {
            std::ofstream(noSwap) << "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
            std::ofstream(badSwap)
                << "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
                << "/dev/nonexistent-sda3                   partition\t1000\t0\t-2\n";
        }
        auto file = isr::session::parseKioskConfig("kiosk_id = gate-23\n", "kiosk.conf");
        QVERIFY(file.ok());
        file->session.stateDir = dir.path();
        file->session.storeUrl = "s3s://rgw.example.org/isr";
        const std::string sys = dir.path(); // no dm-* below: nothing is encrypted
        QCOMPARE(isr::session::metricsPathFor(file->session), dir.path() + "/metrics.prom");

        // Before the kiosk ever ran: healthy, nothing to show yet.
        auto before = kioskStatus(*file, std::time(nullptr), noSwap, sys);
        QVERIFY2(before.healthy, before.text.c_str());
        QVERIFY2(before.text.find("not written yet") != std::string::npos, before.text.c_str());
        QVERIFY(before.text.find("gate-23") != std::string::npos);

        {
            KioskMetrics metrics(isr::session::metricsPathFor(file->session));
            metrics.sessionActive(true);
            metrics.resumed(7.5, 3 << 20);
            metrics.resumed(42, 1 << 20);
            metrics.suspended(3.25, 1 << 20);
            metrics.failed(Stage::Fetching, ErrorKind::StoreUnreachable);
            metrics.cache(10 << 20, 8ull << 30, 90, 10);
        }
        auto running = kioskStatus(*file, std::time(nullptr) + 30, noSwap, sys);
        QVERIFY2(running.healthy, running.text.c_str());
        for (const char* want :
             {"a computer is running here", "resumes        2, mean 24.8 s, 1 within 10 s",
              "suspends       1, mean 3.2 s", "failures       1 (fetching/store_unreachable 1)",
              "4.0 MiB down, 1.0 MiB up", "10.0 MiB of 8.0 GiB, 90 % of 100 reads were hits",
              "written 3", "kiosk started  3"})
            QVERIFY2(running.text.find(want) != std::string::npos,
                     (std::string(want) + " not in:\n" + running.text).c_str());

        // Unencrypted swap: sessions would be refused, so the kiosk is not healthy.
        auto swap = kioskStatus(*file, std::time(nullptr), badSwap, sys);
        QVERIFY(!swap.healthy);
        QVERIFY2(swap.text.find("REFUSED") != std::string::npos, swap.text.c_str());

        // A plain-HTTP store the kiosk would refuse to use is reported as such.
        auto plainHttp = *file;
        plainHttp.session.storeUrl = "s3://rgw.example.org/isr";
        auto http = kioskStatus(plainHttp, std::time(nullptr), noSwap, sys);
        QVERIFY(!http.healthy);
        QVERIFY2(http.text.find("REFUSED: the store s3://") != std::string::npos, http.text.c_str());

        // A damaged metrics file is named, not guessed at.
        std::ofstream(isr::session::metricsPathFor(file->session)) << "isr_session_active one\n";
        auto damaged = kioskStatus(*file, std::time(nullptr), noSwap, sys);
        QVERIFY(!damaged.healthy);
        QVERIFY2(damaged.text.find("is not a number") != std::string::npos, damaged.text.c_str());
    }

    void metricsTextParser() {
        auto ok = isr::session::parseMetricsText(
            "# HELP a b\n# TYPE a gauge\na 1\nb{x=\"1\",y=\"z\"} 2.5\n\nc +Inf\n");
        QVERIFY(ok.ok());
        QCOMPARE(ok->at("a"), 1.0);
        QCOMPARE(ok->at("b{x=\"1\",y=\"z\"}"), 2.5);
        QVERIFY(std::isinf(ok->at("c")));
        QVERIFY(!isr::session::parseMetricsText("a\n").ok());
        QVERIFY(!isr::session::parseMetricsText("a 1x\n").ok());
        QVERIFY(!isr::session::parseMetricsText("a \n").ok());
    }

    // A folder it cannot write to: the kiosk carries on (metrics are for the
    // operators), nothing throws.
    void unwritableFolderIsNotFatal() {
        KioskMetrics metrics("/proc/isr-no-such-dir/isr.prom");
        metrics.resumed(1, 1);
        QVERIFY(metrics.render().find("isr_resume_seconds_count 1") != std::string::npos);
    }
};

QTEST_GUILESS_MAIN(TestMetrics)
#include "test_metrics.moc"
