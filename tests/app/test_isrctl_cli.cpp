// isrctl as a user meets it: --help, --version, unknown commands, and the
// rule that passwords never come from argv.
#include <QTest>

#include "testsupport.h"
#include "util/version.h"

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
};

QTEST_GUILESS_MAIN(TestIsrctlCli)
#include "test_isrctl_cli.moc"
