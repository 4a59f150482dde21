// isrctl as a user meets it: --help, --version, unknown commands, and the
// rule that passwords never come from argv.
#include "testsupport.h"
#include "util/version.h"

#include <QFile>
#include <QTest>

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
    void noArgumentsIsUsageError() {
        auto r = runProcess(isrctl_, {});
        QCOMPARE(r.exitCode, 2);
    }
    void unknownCommand() {
        auto r = runProcess(isrctl_, {"frobnicate"});
        QCOMPARE(r.exitCode, 2);
        QVERIFY(r.err.find("unknown command 'frobnicate'") != std::string::npos);
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
