// isrctl disk serve: real NBD clients (qemu-img, qemu-io) read a parcel's
// disk, write to it, and with --commit the writes become a new version.
#include "testsupport.h"

#include <QDir>
#include <QFile>
#include <QProcess>
#include <QTest>
#include <csignal>
#include <fstream>
#include <random>
#include <sys/stat.h>

using isr::test::runProcess;

class TestIsrctlDisk : public QObject {
    Q_OBJECT
    QString isrctl_;
    std::unique_ptr<isr::test::TempDir> dir_;
    QString store_, image_;

    QString path(const char* name) { return QString::fromStdString(dir_->file(name)); }

    // Starts `disk serve` and waits until the socket answers.
    std::unique_ptr<QProcess> serve(const QString& socket, QStringList extra = {}) {
        auto p = std::make_unique<QProcess>();
        p->start(isrctl_, QStringList{"disk", "serve", "alice", "desk", "--socket", socket,
                                      "--store", store_, "--password-stdin"} +
                              extra);
        p->waitForStarted();
        p->write("pw\n");
        p->waitForBytesWritten();
        p->closeWriteChannel();
        for (int i = 0; i < 100 && !QFile::exists(socket); ++i)
            p->waitForFinished(100);
        return p;
    }
    void stop(QProcess& p) {
        ::kill(pid_t(p.processId()), SIGTERM);
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitCode(), 0);
    }

private slots:
    void initTestCase() {
        isrctl_ = qEnvironmentVariable("ISRCTL");
        QVERIFY(!isrctl_.isEmpty());
        isr::test::requirePrograms({"qemu-img", "qemu-io", "cmp"});
        dir_ = std::make_unique<isr::test::TempDir>();
        store_ = "file://" + path("store");
        QCOMPARE(runProcess(isrctl_, {"store", "init", store_, "--kdf", "minimal"}).exitCode, 0);
        QCOMPARE(runProcess(isrctl_,
                            {"user", "add", "alice", "--store", store_, "--password-stdin"}, "pw\n")
                     .exitCode,
                 0);
        image_ = path("disk.raw");
        std::ofstream f(image_.toStdString(), std::ios::binary);
        std::mt19937 rng(11);
        f.seekp(1 << 20);
        for (int i = 0; i < (1 << 20); ++i)
            f.put(char(rng()));
        f.seekp((8 << 20) - 1);
        f.put(0);
        f.close();
        QCOMPARE(runProcess(isrctl_,
                            {"parcel", "import", "alice", "desk", image_, "--store", store_,
                             "--password-stdin"},
                            "pw\n")
                     .exitCode,
                 0);
    }
    void readsTheParcelsBytes() {
        QString socket = path("a.sock");
        auto p = serve(socket, {"--no-hoard"});
        QVERIFY(QFile::exists(socket));
        QString uri = "nbd+unix:///?socket=" + socket;
        auto info = runProcess("qemu-img", {"info", uri});
        QCOMPARE(info.exitCode, 0);
        QVERIFY(info.out.find("8 MiB") != std::string::npos);
        QCOMPARE(runProcess("qemu-img", {"convert", "-f", "raw", "-O", "raw", uri, path("out.raw")})
                     .exitCode,
                 0);
        QCOMPARE(runProcess("cmp", {image_, path("out.raw")}).exitCode, 0);
        // Writes without --commit are discarded.
        QCOMPARE(
            runProcess("qemu-io", {"-f", "raw", uri, "-c", "write -P 0x5a 4097 10000"}).exitCode,
            0);
        stop(*p);
        auto versions = runProcess(isrctl_,
                                   {"parcel", "versions", "alice", "desk", "--json", "--store",
                                    store_, "--password-stdin"},
                                   "pw\n");
        QVERIFY(versions.out.find("\"version\":2") == std::string::npos);
    }
    // Issue #16 item 12: the work folder next to the socket is a fresh
    // mkdtemp directory (0700, unpredictable name), not isr-disk-<pid>.
    void workFolderIsPrivateAndUnpredictable() {
        const QString sockDir = path("serve-here");
        QVERIFY(QDir().mkpath(sockDir));
        QString socket = sockDir + "/w.sock";
        auto p = serve(socket, {"--no-hoard"});
        const QStringList work = QDir(sockDir).entryList({"isr-disk-*"}, QDir::Dirs);
        QCOMPARE(work.size(), 1);
        QVERIFY2(work[0] != "isr-disk-" + QString::number(p->processId()), qPrintable(work[0]));
        struct stat st {};
        QVERIFY(::stat((sockDir + "/" + work[0]).toUtf8().constData(), &st) == 0);
        QCOMPARE(st.st_mode & 0777, mode_t(0700));
        stop(*p);
        QVERIFY(QDir(sockDir).entryList({"isr-disk-*"}, QDir::Dirs).isEmpty()); // removed at exit
    }
    void commitKeepsWrites() {
        QString socket = path("b.sock");
        auto p = serve(socket, {"--commit"});
        QString uri = "nbd+unix:///?socket=" + socket;
        QCOMPARE(
            runProcess("qemu-io", {"-f", "raw", uri, "-c", "write -P 0x5a 4097 10000"}).exitCode,
            0);
        stop(*p);
        QCOMPARE(runProcess(isrctl_,
                            {"parcel", "export", "alice", "desk", path("v2.raw"), "--store", store_,
                             "--password-stdin"},
                            "pw\n")
                     .exitCode,
                 0);
        auto check =
            runProcess("qemu-io", {"-f", "raw", path("v2.raw"), "-c", "read -P 0x5a 4097 10000"});
        QCOMPARE(check.exitCode, 0);
        QVERIFY2(check.out.find("Pattern verification failed") == std::string::npos,
                 check.out.c_str());
        // Version 1 is untouched.
        QCOMPARE(runProcess(isrctl_,
                            {"parcel", "export", "alice", "desk", path("v1.raw"), "--version", "1",
                             "--store", store_, "--password-stdin"},
                            "pw\n")
                     .exitCode,
                 0);
        QCOMPARE(runProcess("cmp", {image_, path("v1.raw")}).exitCode, 0);
    }
    void wrongPasswordServesNothing() {
        QProcess p;
        p.start(isrctl_, {"disk", "serve", "alice", "desk", "--socket", path("c.sock"), "--store",
                          store_, "--password-stdin"});
        p.waitForStarted();
        p.write("nope\n");
        p.closeWriteChannel();
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitCode(), 1);
        QVERIFY(!QFile::exists(path("c.sock")));
    }
};

QTEST_GUILESS_MAIN(TestIsrctlDisk)
#include "test_isrctl_disk.moc"
