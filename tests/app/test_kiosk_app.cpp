// isr-kiosk as a process: --version and --help work, and it starts and stays
// up on the offscreen platform until asked to quit.
#include <QProcess>
#include <QTest>

#include "testsupport.h"
#include "util/version.h"

class TestKioskApp : public QObject {
    Q_OBJECT
    QString kiosk_;
private slots:
    void initTestCase() {
        kiosk_ = qEnvironmentVariable("ISR_KIOSK");
        QVERIFY2(!kiosk_.isEmpty(), "ISR_KIOSK must point at the built isr-kiosk");
    }
    void version() {
        auto r = isr::test::runProcess(kiosk_, {"--version"});
        QCOMPARE(r.exitCode, 0);
        QVERIFY(r.out.find(isr::kVersion) != std::string::npos);
    }
    void startsAndKeepsRunning() {
        QProcess proc;
        proc.setProcessChannelMode(QProcess::MergedChannels);
        proc.start(kiosk_, {"--demo", "--fake-backend"});
        QVERIFY(proc.waitForStarted());
        // A QML load error exits at once with status 1; a healthy kiosk waits
        // for a user forever.
        QVERIFY2(!proc.waitForFinished(3000), proc.readAll().constData());
        QCOMPARE(proc.state(), QProcess::Running);
        proc.terminate();
        QVERIFY(proc.waitForFinished(10000));
    }
};

QTEST_GUILESS_MAIN(TestKioskApp)
#include "test_kiosk_app.moc"
