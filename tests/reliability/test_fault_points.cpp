// The fault point registry and ISR_FAULT parsing: every ISR_FAULT_POINT in
// the sources is registered and every registered point is used (and
// documented in core/util/README.md); a bad spec is refused with a reason;
// fail mode returns the injected error on exactly the N-th hit; kill mode
// kills the process with SIGKILL and says so on stderr first.
#include "testsupport.h"
#include "util/fault.h"

#include <QCoreApplication>
#include <QProcess>
#include <QTest>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sys/wait.h>
#include <unistd.h>

using namespace isr;
namespace fs = std::filesystem;

class TestFaultPoints : public QObject {
    Q_OBJECT

    static std::string readFile(const fs::path& p) {
        std::ifstream f(p);
        return std::string((std::istreambuf_iterator<char>(f)), {});
    }

private slots:
    void registryMatchesSources() {
        std::set<std::string> used;
        std::regex call("ISR_FAULT_POINT\\(\"([^\"]+)\"\\)");
        for (const auto& e : fs::recursive_directory_iterator(fs::path(ISR_SOURCE_DIR) / "core")) {
            auto ext = e.path().extension();
            if (ext != ".cpp" && ext != ".h")
                continue;
            std::string text = readFile(e.path());
            for (std::sregex_iterator it(text.begin(), text.end(), call), end; it != end; ++it)
                used.insert((*it)[1]);
        }
        std::set<std::string> registered;
        for (const auto& p : fault::kFaultPoints) {
            QVERIFY2(registered.insert(p.name).second, p.name); // no duplicates
            QVERIFY2(used.count(p.name),
                     (std::string("registered but never used: ") + p.name).c_str());
        }
        for (const auto& u : used)
            QVERIFY2(registered.count(u), ("used but not registered: " + u).c_str());
        QVERIFY(registered.size() >= 20);
        std::string readme = readFile(fs::path(ISR_SOURCE_DIR) / "core/util/README.md");
        for (const auto& p : registered)
            QVERIFY2(readme.find("`" + p + "`") != std::string::npos,
                     ("not documented in core/util/README.md: " + p).c_str());
    }

    void parsesSpecs() {
        auto one = fault::parseSpec("parcel.commit.after-version");
        QVERIFY(one.ok());
        QCOMPARE(one->size(), std::size_t(1));
        QCOMPARE((*one)[0].mode, fault::Mode::Kill);
        QCOMPARE((*one)[0].onHit, std::uint64_t(1));
        auto two = fault::parseSpec("parcel.upload.batch:fail@3,session.save.before:kill");
        QVERIFY(two.ok());
        QCOMPARE(two->size(), std::size_t(2));
        QCOMPARE((*two)[0].mode, fault::Mode::Fail);
        QCOMPARE((*two)[0].onHit, std::uint64_t(3));
        QCOMPARE((*two)[1].point, std::string("session.save.before"));
        QVERIFY(fault::parseSpec("").ok());
        for (const char* bad :
             {"no.such.point", "parcel.upload.batch:explode", "parcel.upload.batch@0",
              "parcel.upload.batch@x", "parcel.upload.batch@3x",
              "parcel.upload.batch,parcel.upload.batch"}) {
            auto r = fault::parseSpec(bad);
            QVERIFY2(!r.ok(), bad);
            QCOMPARE(r.error().code, Errc::InvalidArgument);
        }
    }

    void failFiresOnTheNthHit() {
        QVERIFY(fault::arm("parcel.upload.batch:fail@3").ok());
        QVERIFY(ISR_FAULT_POINT("parcel.upload.batch").ok());
        QVERIFY(ISR_FAULT_POINT("parcel.commit.after-head").ok()); // not armed
        QVERIFY(ISR_FAULT_POINT("parcel.upload.batch").ok());
        auto third = ISR_FAULT_POINT("parcel.upload.batch");
        QVERIFY(!third.ok());
        QCOMPARE(third.error().code, Errc::Io);
        QVERIFY(third.error().message.find("parcel.upload.batch") != std::string::npos);
        QVERIFY(ISR_FAULT_POINT("parcel.upload.batch").ok()); // only once
        QCOMPARE(fault::hits("parcel.upload.batch"), std::uint64_t(4));
        QVERIFY(fault::arm("").ok());
        QVERIFY(ISR_FAULT_POINT("parcel.upload.batch").ok());
        QVERIFY(!fault::arm("bogus").ok());
    }

    void killKillsTheProcess() {
        int pipeFds[2];
        QCOMPARE(::pipe(pipeFds), 0);
        pid_t child = ::fork();
        QVERIFY(child >= 0);
        if (child == 0) {
            ::dup2(pipeFds[1], STDERR_FILENO);
            ::close(pipeFds[0]);
            if (!fault::arm("session.wipe.before:kill@2").ok())
                ::_exit(3);
            (void)ISR_FAULT_POINT("session.wipe.before");
            (void)ISR_FAULT_POINT("session.wipe.before"); // dies here
            ::_exit(0);
        }
        ::close(pipeFds[1]);
        std::string err;
        char buf[256];
        ssize_t n;
        while ((n = ::read(pipeFds[0], buf, sizeof buf)) > 0)
            err.append(buf, std::size_t(n));
        ::close(pipeFds[0]);
        int status = 0;
        QCOMPARE(::waitpid(child, &status, 0), child);
        QVERIFY2(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, err.c_str());
        QVERIFY2(err.find("isr-fault: fired session.wipe.before kill hit 2") != std::string::npos,
                 err.c_str());
    }

    void badEnvironmentStopsTheProcess() {
        // An ISR_FAULT that does not parse must not run unarmed.
        QProcess p;
        auto env = QProcessEnvironment::systemEnvironment();
        env.insert("ISR_FAULT", "no.such.point");
        p.setProcessEnvironment(env);
        p.start(QCoreApplication::applicationFilePath(), {"childReadsEnvironment"});
        QVERIFY(p.waitForFinished(30000));
        QCOMPARE(p.exitCode(), 70);
        QVERIFY(p.readAllStandardError().contains("unknown fault point"));
    }
};

int main(int argc, char** argv) {
    // Child mode for badEnvironmentStopsTheProcess: reach one point.
    if (argc == 2 && std::string(argv[1]) == "childReadsEnvironment") {
        (void)ISR_FAULT_POINT("session.signin.before");
        return 0;
    }
    QCoreApplication app(argc, argv);
    TestFaultPoints t;
    return QTest::qExec(&t, argc, argv);
}
#include "test_fault_points.moc"
