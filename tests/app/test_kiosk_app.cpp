// isr-kiosk as a process: --version and --help work, and it starts and stays
// up on the offscreen platform until asked to quit.
#include "testsupport.h"
#include "util/version.h"

#include <QFile>
#include <QProcess>
#include <QTest>

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
    // A bad configuration file stops the kiosk at start (exit 2) with a
    // message naming the file, line and key; the command line overrides a
    // good file's values but is still checked itself.
    void configFile() {
        isr::test::TempDir dir;
        const QString conf = QString::fromStdString(dir.file("kiosk.conf"));
        auto write = [&](const char* text) {
            QFile f(conf);
            QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
            f.write(text);
        };
        write("# comment\nidle_timeout = 10\nidle_warning = soon\n");
        auto bad = isr::test::runProcess(kiosk_, {"--config", conf, "--fake-backend"});
        QCOMPARE(bad.exitCode, 2);
        QVERIFY2(bad.err.find(":3: idle_warning:") != std::string::npos, bad.err.c_str());

        write("escape_chord = Ctrl+Q, Ctrl+W\n");
        auto chord = isr::test::runProcess(kiosk_, {"--config=" + conf, "--fake-backend"});
        QCOMPARE(chord.exitCode, 2);
        QVERIFY2(chord.err.find(":1: escape_chord:") != std::string::npos, chord.err.c_str());

        auto missing = isr::test::runProcess(kiosk_, {"--config", conf + ".absent", "--version"});
        QCOMPARE(missing.exitCode, 2);

        write("idle_timeout = 10\n");
        auto override = isr::test::runProcess(
            kiosk_, {"--config", conf, "--fake-backend", "--idle-timeout", "0"});
        QCOMPARE(override.exitCode, 2);
        QVERIFY2(override.err.find("--idle-timeout") != std::string::npos, override.err.c_str());

        auto good = isr::test::runProcess(kiosk_, {"--config", conf, "--version"});
        QCOMPARE(good.exitCode, 0);
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
    // Under X11 (the platform Qt picks itself, as on a real kiosk) our options
    // must survive: once they were reported unknown (exit 1) or lost (exit 2,
    // "run with --fake-backend"). Needs Xvfb.
    void optionsSurviveTheXcbPlatform() {
        if (!isr::test::haveProgram("Xvfb"))
            QSKIP("Xvfb not installed (run packaging/install-deps.sh)");
        const int displayNumber = 100 + int(QCoreApplication::applicationPid() % 800);
        const QString display = QStringLiteral(":%1").arg(displayNumber);
        QProcess xvfb;
        xvfb.start("Xvfb", {display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"});
        QVERIFY(xvfb.waitForStarted());
        QTRY_VERIFY_WITH_TIMEOUT(
            QFile::exists(QStringLiteral("/tmp/.X11-unix/X%1").arg(displayNumber)), 20000);
        for (const QStringList& args :
             {QStringList{"--fake-backend"}, QStringList{"--windowed", "--fake-backend"},
              QStringList{"--fake-backend", "--idle-timeout", "60"}}) {
            QProcess proc;
            QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
            env.remove("QT_QPA_PLATFORM");
            env.insert("DISPLAY", display);
            proc.setProcessEnvironment(env);
            proc.setProcessChannelMode(QProcess::MergedChannels);
            proc.start(kiosk_, args);
            QVERIFY(proc.waitForStarted());
            QVERIFY2(!proc.waitForFinished(2500),
                     qPrintable(args.join(' ') + ": " + QString::fromLocal8Bit(proc.readAll())));
            proc.terminate();
            QVERIFY(proc.waitForFinished(10000));
        }
        xvfb.terminate();
        xvfb.waitForFinished(10000);
    }
};

QTEST_GUILESS_MAIN(TestKioskApp)
#include "test_kiosk_app.moc"
