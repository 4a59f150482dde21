// isrctl as a user meets it: --help, --version, unknown commands, and the
// rule that passwords never come from argv.
#include "session_status.h"
#include "testsupport.h"
#include "util/version.h"

#include <QElapsedTimer>
#include <QFile>
#include <QProcess>
#include <QTest>
#include <QThread>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using isr::test::runProcess;

class TestIsrctlCli : public QObject {
    Q_OBJECT
    QString isrctl_;
private slots:
    void initTestCase() {
        isrctl_ = qEnvironmentVariable("ISRCTL");
        QVERIFY2(!isrctl_.isEmpty(), "ISRCTL must point at the built isrctl");
    }
    void version() {
        auto r = runProcess(isrctl_, {"--version"});
        QCOMPARE(r.exitCode, 0);
        QCOMPARE(QString::fromStdString(r.out).trimmed(),
                 QStringLiteral("isrctl ") + QString::fromLatin1(isr::kVersion));
    }
    void help() {
        auto r = runProcess(isrctl_, {"--help"});
        QCOMPARE(r.exitCode, 0);
        QVERIFY(r.out.find("Usage: isrctl") != std::string::npos);
        QVERIFY(r.out.find("--password-stdin") != std::string::npos);
    }
    // One line a command, none wider than 100 columns (the usage abbreviated
    // to "[options]"), like other Debian tools.
    void helpFitsOneLineACommand() {
        auto r = runProcess(isrctl_, {"--help"});
        QCOMPARE(r.exitCode, 0);
        const QStringList lines = QString::fromStdString(r.out).split('\n');
        for (const QString& line : lines)
            QVERIFY2(line.size() <= 100, qPrintable(line));
        const int commands = int(lines.indexOf(QStringLiteral("Commands:")));
        QVERIFY(commands > 0);
        QStringList rows;
        for (int i = commands + 1; i < lines.size(); ++i)
            if (!lines[i].isEmpty())
                rows << lines[i];
        QVERIFY2(rows.size() >= 15, qPrintable(rows.join('\n')));
        for (const QString& row : rows)
            QVERIFY2(row.startsWith(QStringLiteral("  ")) && row[2] != ' ', qPrintable(row));
        auto resume = rows.filter(QStringLiteral("  session resume "));
        QCOMPARE(resume.size(), 1);
        QVERIFY2(resume[0].startsWith(QStringLiteral("  session resume USER PARCEL [options] ")),
                 qPrintable(resume[0]));
        QVERIFY(resume[0].contains(QStringLiteral("resume a parcel headless")));
        QVERIFY(!r.out.empty() && r.out.find("--trickle-quiet") == std::string::npos);
        // "help" alone is --help.
        auto alone = runProcess(isrctl_, {"help"});
        QCOMPARE(alone.exitCode, 0);
        QCOMPARE(alone.out, r.out);
    }
    // `help COMMAND` and `COMMAND --help`: the same full usage and every option.
    void commandHelp() {
        auto a = runProcess(isrctl_, {"help", "session", "resume"});
        QCOMPARE(a.exitCode, 0);
        auto b = runProcess(isrctl_, {"session", "resume", "--help"});
        QCOMPARE(b.exitCode, 0);
        QCOMPARE(a.out, b.out);
        const QString out = QString::fromStdString(a.out);
        QVERIFY2(out.startsWith(QStringLiteral("Usage: isrctl session resume USER PARCEL [")),
                 a.out.c_str());
        for (const char* option :
             {"--config FILE", "--kiosk-dir DIR", "--take-over", "--trickle-quiet DURATION",
              "--heartbeat DURATION", "--cache-size SIZE", "--no-suspend", "--password-stdin"}) {
            // In the synopsis and in the option list.
            QVERIFY2(out.count(QString::fromLatin1(option)) >= 2, option);
        }
        QVERIFY(out.contains(QStringLiteral("\nOptions:\n")));
        for (const QString& line : out.split('\n'))
            QVERIFY2(line.size() <= 100, qPrintable(line));
        // A required option stays in the synopsis as it is and is described.
        auto gc = runProcess(isrctl_, {"gc", "--help"});
        QCOMPARE(gc.exitCode, 0);
        QVERIFY2(gc.out.rfind("Usage: isrctl gc --user USER | --all [", 0) == 0, gc.out.c_str());
        QVERIFY(gc.out.find("[--user") == std::string::npos);
        QVERIFY(gc.out.find("[--all") == std::string::npos);
        QVERIFY(gc.out.find("  --user USER ") != std::string::npos);
        QVERIFY(gc.out.find("  --all ") != std::string::npos);
    }
    void helpForUnknownCommand() {
        auto r = runProcess(isrctl_, {"help", "frobnicate"});
        QCOMPARE(r.exitCode, 2);
        QVERIFY2(r.err.find("unknown command 'frobnicate'") != std::string::npos, r.err.c_str());
        QVERIFY(r.out.empty());
        r = runProcess(isrctl_, {"help", "parcel", "frob"});
        QCOMPARE(r.exitCode, 2);
        QVERIFY2(r.err.find("unknown command 'parcel frob'") != std::string::npos, r.err.c_str());
        r = runProcess(isrctl_, {"help", "fsck", "now"});
        QCOMPARE(r.exitCode, 2);
        // A group without its subcommand names them.
        r = runProcess(isrctl_, {"session"});
        QCOMPARE(r.exitCode, 2);
        QVERIFY2(r.err.find("'session' needs a subcommand") != std::string::npos &&
                     r.err.find("resume") != std::string::npos,
                 r.err.c_str());
    }
    void noArgumentsIsUsageError() {
        auto r = runProcess(isrctl_, {});
        QCOMPARE(r.exitCode, 2);
    }
    void unknownCommand() {
        auto r = runProcess(isrctl_, {"frobnicate"});
        QCOMPARE(r.exitCode, 2);
        QVERIFY(r.err.find("unknown command 'frobnicate'") != std::string::npos);
    }
    // The hoard's problem (HoardStatus::problem) reaches `session status`:
    // what `session resume` writes into status.json, printed as text and JSON.
    void statusShowsTheHoardProblem() {
        isr::session::HoardStatus h;
        h.chunksDone = 12;
        h.chunksTotal = 640;
        h.problem = isr::session::ErrorKind::NoSpace;
        h.problemMessage = "hoard paused, the kiosk's disk is (nearly) full: 3 MiB free";
        const std::string line = isr::cli::formatHoardStatus(isr::cli::hoardStatusJson(h));
        QVERIFY2(line.find("hoard: 12 / 640 chunks\n") == 0, line.c_str());
        QVERIFY2(line.find("hoard held back: The kiosk's disk is nearly full; your computer keeps "
                           "running.\n") != std::string::npos,
                 line.c_str());
        QVERIFY2(line.find("3 MiB free") != std::string::npos, line.c_str());

        isr::session::HoardStatus unreachable = h;
        unreachable.problem = isr::session::ErrorKind::StoreUnreachable;
        QVERIFY(isr::cli::formatHoardStatus(isr::cli::hoardStatusJson(unreachable))
                    .find("hoard held back: The store cannot be reached right now; your "
                          "computer keeps running") != std::string::npos);
        isr::session::HoardStatus fine = h;
        fine.problem = isr::session::ErrorKind::None;
        const auto fineJson = isr::cli::hoardStatusJson(fine);
        QVERIFY(fineJson.find("problem") == fineJson.end());
        QCOMPARE(isr::cli::formatHoardStatus(fineJson), std::string("hoard: 12 / 640 chunks\n"));

        // Through the command, from a status file like the one `session resume` writes.
        isr::test::TempDir dir;
        {
            std::ofstream out(dir.file("status.json"));
            out << isr::json::Value(isr::json::Object{{"stage", "Running"},
                                                      {"hoard", isr::cli::hoardStatusJson(h)}})
                       .dump()
                << "\n";
        }
        auto text = runProcess(
            isrctl_, {"session", "status", "--kiosk-dir", QString::fromStdString(dir.path())});
        QCOMPARE(text.exitCode, 0);
        QVERIFY2(text.out.find("stage: Running\n") != std::string::npos, text.out.c_str());
        QVERIFY2(text.out.find("hoard held back: The kiosk's disk is nearly full; your computer "
                               "keeps running") != std::string::npos,
                 text.out.c_str());
        auto json = runProcess(isrctl_, {"session", "status", "--json", "--kiosk-dir",
                                         QString::fromStdString(dir.path())});
        QCOMPARE(json.exitCode, 0);
        auto doc = isr::json::parse(json.out);
        QVERIFY2(doc.ok(), json.out.c_str());
        const auto* hoard = doc->find("hoard");
        QVERIFY(hoard);
        QCOMPARE(hoard->getString("problem").valueOr(""), std::string("no space"));
        QCOMPARE(hoard->getString("problem_message").valueOr(""), h.problemMessage);
        QCOMPARE(hoard->getInt("chunks_total").valueOr(0), std::int64_t(640));
    }
    // Issue #16 item 8: a running isrctl (waiting for a password here) is not
    // dumpable and has no core limit. The kernel shows it from outside: the
    // /proc/PID files of a non-dumpable process belong to root, not to the
    // process's user. As root, isrctl runs as nobody (setpriv) so that the
    // two differ.
    void runningIsrctlIsNotDumpable() {
        isr::test::TempDir dir;
        const std::string store = dir.file("store");
        QVERIFY(::mkdir(store.c_str(), 0700) == 0);
        QStringList prefix;
        uid_t runAs = ::geteuid();
        if (runAs == 0) {
            runAs = 65534;
            QVERIFY(::chown(store.c_str(), runAs, runAs) == 0);
            QVERIFY(::chmod(dir.path().c_str(), 0755) == 0);
            prefix = {"--reuid=65534", "--regid=65534", "--clear-groups", "--", isrctl_};
        }
        const QString program = prefix.isEmpty() ? isrctl_ : QStringLiteral("setpriv");
        auto init =
            runProcess(program, prefix + QStringList{"store", "init", QString::fromStdString(store),
                                                     "--kdf", "minimal"});
        if (init.exitCode != 0 && !prefix.isEmpty() &&
            init.err.find("Permission denied") != std::string::npos)
            QSKIP("nobody cannot run the built isrctl here");
        QVERIFY2(init.exitCode == 0, init.err.c_str());
        QProcess p;
        p.start(program, prefix + QStringList{"user", "add", "u", "--store",
                                              QString::fromStdString(store), "--password-stdin"});
        QVERIFY(p.waitForStarted(10000));
        const std::string proc = "/proc/" + std::to_string(p.processId());
        // Wait for isrctl (after setpriv's exec) to run as its user and sit
        // at the password prompt.
        QElapsedTimer timer;
        timer.start();
        bool blocked = false;
        while (timer.elapsed() < 20000 && !blocked) {
            std::ifstream status(proc + "/status");
            std::string line, name, state, uid;
            while (std::getline(status, line)) {
                if (line.rfind("Name:", 0) == 0)
                    name = line;
                if (line.rfind("State:", 0) == 0)
                    state = line;
                if (line.rfind("Uid:", 0) == 0)
                    uid = line;
            }
            blocked = name.find("isrctl") != std::string::npos &&
                      state.find("S (sleeping)") != std::string::npos &&
                      uid.find(std::to_string(runAs)) != std::string::npos;
            if (!blocked)
                QThread::msleep(50);
        }
        QVERIFY2(blocked, "isrctl did not reach the password prompt");
        QThread::msleep(200);
        struct stat st {};
        QVERIFY(::stat((proc + "/status").c_str(), &st) == 0);
        QVERIFY2(st.st_uid == 0, "the running isrctl is dumpable");
        std::ifstream limits(proc + "/limits");
        std::string line, core;
        while (std::getline(limits, line))
            if (line.rfind("Max core file size", 0) == 0)
                core = line;
        QVERIFY2(core.find(" 0 ") != std::string::npos &&
                     core.find("unlimited") == std::string::npos,
                 core.c_str());
        p.write("pw\n");
        p.closeWriteChannel();
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitCode(), 0);
    }

    // Store credentials come from a file (never argv), and a bad file is an
    // error that names it, before anything touches the store.
    void storeCredentialsFile() {
        isr::test::TempDir dir;
        std::string store = dir.file("store");
        auto init = runProcess(
            isrctl_, {"store", "init", QString::fromStdString(store), "--kdf", "minimal"});
        QCOMPARE(init.exitCode, 0);
        std::string missing = dir.file("no-such-file");
        auto r = runProcess(isrctl_, {"fsck", "--store", QString::fromStdString(store),
                                      "--store-credentials", QString::fromStdString(missing)});
        QVERIFY(r.exitCode != 0);
        QVERIFY2(r.err.find(missing) != std::string::npos, r.err.c_str());
        std::string oneLine = dir.file("one-line");
        QVERIFY(QFile(QString::fromStdString(oneLine)).open(QIODevice::WriteOnly));
        qputenv("ISR_STORE_CREDENTIALS", QByteArray::fromStdString(oneLine));
        r = runProcess(isrctl_, {"fsck", "--store", QString::fromStdString(store)});
        qunsetenv("ISR_STORE_CREDENTIALS");
        QVERIFY(r.exitCode != 0);
        QVERIFY2(r.err.find("access key on line 1") != std::string::npos, r.err.c_str());
        // A FileStore ignores S3 keys: a good file changes nothing there.
        std::string good = dir.file("keys");
        QFile f(QString::fromStdString(good));
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("AKIAEXAMPLE\nsecret\n");
        f.close();
        r = runProcess(isrctl_, {"fsck", "--store", QString::fromStdString(store),
                                 "--store-credentials", QString::fromStdString(good)});
        QCOMPARE(r.exitCode, 0);
    }
};

QTEST_GUILESS_MAIN(TestIsrctlCli)
#include "test_isrctl_cli.moc"
