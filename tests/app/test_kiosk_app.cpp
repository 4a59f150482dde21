// isr-kiosk as a process: --version and --help work, and it starts and stays
// up on the offscreen platform until asked to quit. A stop signal at the
// sign-in page ends it at once, and it dies of that signal (status 128+n to
// a shell), as without a handler; the stages with a VM are in
// tests/e2e/kiosk-sigterm.sh.
#include "testsupport.h"
#include "util/version.h"

#include <QElapsedTimer>
#include <QFile>
#include <QProcess>
#include <QTest>
#include <csignal>

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
    // Staff over ssh: --status needs no display (the xcb platform with no
    // DISPLAY would abort a GUI start), reads kiosk.conf and the metrics file
    // the kiosk keeps in its state directory, and says 1 when something must
    // be fixed (here: no store configured).
    void statusNeedsNoDisplay() {
        isr::test::TempDir dir;
        const QString conf = QString::fromStdString(dir.file("kiosk.conf"));
        auto write = [&](const std::string& text) {
            QFile f(conf);
            QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
            f.write(text.c_str());
        };
        write("state_dir = " + dir.path() + "\nallow_unencrypted_swap = yes\nkiosk_id = gate-23\n");
        auto run = [&](const QStringList& args) {
            QProcess proc;
            QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
            env.insert("QT_QPA_PLATFORM", "xcb");
            env.remove("DISPLAY");
            env.remove("WAYLAND_DISPLAY");
            env.remove("ISR_STORE");
            proc.setProcessEnvironment(env);
            proc.start(kiosk_, args);
            proc.waitForFinished(30000);
            return std::make_pair(proc.exitCode(), QString::fromLocal8Bit(proc.readAll() +
                                                                          proc.readAllStandardError()));
        };
        auto [noStore, noStoreText] = run({"--config", conf, "--status"});
        QCOMPARE(noStore, 1);
        QVERIFY2(noStoreText.contains("NOT SET"), qPrintable(noStoreText));

        auto [ok, text] = run({"--config", conf, "--status", "--store", "file:///srv/isr"});
        QVERIFY2(ok == 0, qPrintable(text));
        QVERIFY2(text.contains("gate-23") && text.contains("file:///srv/isr") &&
                     text.contains(QString::fromStdString(dir.path() + "/metrics.prom")) &&
                     text.contains("not written yet"),
                 qPrintable(text));
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
    void stopSignalAtSignInEndsAtOnce_data() {
        QTest::addColumn<int>("signo");
        QTest::addColumn<bool>("fake");
        QTest::newRow("SIGTERM, fake backend") << int(SIGTERM) << true;
        QTest::newRow("SIGTERM, real session") << int(SIGTERM) << false;
        QTest::newRow("SIGINT, real session") << int(SIGINT) << false;
        QTest::newRow("SIGHUP, real session") << int(SIGHUP) << false;
    }
    void stopSignalAtSignInEndsAtOnce() {
        QFETCH(int, signo);
        QFETCH(bool, fake);
        isr::test::TempDir dir;
        QStringList args{"--no-virtual-keyboard"};
        if (fake)
            args << "--fake-backend";
        else
            args << "--store" << QString::fromStdString("file://" + dir.file("store"))
                 << "--state-dir" << QString::fromStdString(dir.file("kiosk"));
        QProcess proc;
        proc.setProcessChannelMode(QProcess::MergedChannels);
        proc.start(kiosk_, args);
        QVERIFY(proc.waitForStarted());
        QVERIFY2(!proc.waitForFinished(3000), proc.readAll().constData());
        QElapsedTimer stopping;
        stopping.start();
        QCOMPARE(::kill(pid_t(proc.processId()), signo), 0);
        QVERIFY(proc.waitForFinished(10000));
        const qint64 ms = stopping.elapsed();
        const QByteArray output = proc.readAll();
        QCOMPARE(proc.exitStatus(), QProcess::CrashExit); // died of the signal
        QCOMPARE(proc.exitCode(), signo);
        QVERIFY2(ms < 5000, qPrintable(QStringLiteral("took %1 ms").arg(ms)));
        QVERIFY2(output.contains("stopping"), output.constData());
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
