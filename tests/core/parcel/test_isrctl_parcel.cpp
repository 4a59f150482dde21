// isrctl's store, user and parcel commands end to end on a file:// store:
// what an administrator types, with passwords on stdin, never argv.
#include "testsupport.h"
#include "util/json.h"

#include <QProcess>
#include <QTest>
#include <fstream>
#include <random>

using isr::test::runProcess;

class TestIsrctlParcel : public QObject {
    Q_OBJECT
    QString isrctl_;
    std::unique_ptr<isr::test::TempDir> dir_;
    QString store_;

    isr::test::ProcessResult run(QStringList args, const QByteArray& stdinData = {}) {
        args << "--store" << store_;
        return runProcess(isrctl_, args, stdinData);
    }

private slots:
    void initTestCase() {
        isrctl_ = qEnvironmentVariable("ISRCTL");
        QVERIFY(!isrctl_.isEmpty());
        isr::test::requirePrograms({"qemu-img", "cmp"});
        dir_ = std::make_unique<isr::test::TempDir>();
        store_ = QString::fromStdString("file://" + dir_->file("store"));
    }
    void storeInit() {
        auto r = runProcess(isrctl_, {"store", "init", store_, "--kdf", "minimal"});
        QCOMPARE(r.exitCode, 0);
        auto again = runProcess(isrctl_, {"store", "init", store_, "--kdf", "minimal"});
        QCOMPARE(again.exitCode, 1);
        QVERIFY(again.err.find("already") != std::string::npos);
    }
    void notAStore() {
        QString other = QString::fromStdString("file://" + dir_->path());
        auto r = runProcess(
            isrctl_, {"parcel", "list", "alice", "--store", other, "--password-stdin"}, "pw\n");
        QCOMPARE(r.exitCode, 1);
        QVERIFY(r.err.find("not an isr store") != std::string::npos);
    }
    void userAdd() {
        QCOMPARE(run({"user", "add", "alice", "--password-stdin"}, "secret\n").exitCode, 0);
        auto dup = run({"user", "add", "alice", "--password-stdin"}, "other\n");
        QCOMPARE(dup.exitCode, 1);
        auto bad = run({"user", "add", "../evil", "--password-stdin"}, "x\n");
        QCOMPARE(bad.exitCode, 2);
        // No TTY and no --password-stdin: refuses rather than hanging or taking argv.
        auto noPw = run({"user", "add", "bob"});
        QCOMPARE(noPw.exitCode, 2);
        QVERIFY(noPw.err.find("--password-stdin") != std::string::npos);
    }
    void importExportVersions() {
        std::string image = dir_->file("disk.raw");
        {
            std::ofstream f(image, std::ios::binary);
            std::mt19937 rng(3);
            f.seekp(1 << 20);
            for (int i = 0; i < (2 << 20); ++i)
                f.put(char(rng()));
            f.seekp((16 << 20) - 1);
            f.put(0);
        }
        auto imp = run({"parcel", "import", "alice", "desk", QString::fromStdString(image),
                        "--password-stdin", "--json"},
                       "secret\n");
        QCOMPARE(imp.exitCode, 0);
        auto doc = isr::json::parse(imp.out);
        QVERIFY(doc.ok());
        QCOMPARE(doc->getInt("version").value(), std::int64_t(1));
        QCOMPARE(doc->getInt("new_chunks").value(), std::int64_t(16));
        auto wrong = run({"parcel", "import", "alice", "desk", QString::fromStdString(image),
                          "--password-stdin"},
                         "nope\n");
        QCOMPARE(wrong.exitCode, 1);
        QVERIFY(wrong.err.find("wrong user name or password") != std::string::npos);
        QCOMPARE(run({"parcel", "import", "alice", "desk", QString::fromStdString(image),
                      "--password-stdin"},
                     "secret\n")
                     .exitCode,
                 0);
        auto out = QString::fromStdString(dir_->file("out.raw"));
        QCOMPARE(
            run({"parcel", "export", "alice", "desk", out, "--version", "1", "--password-stdin"},
                "secret\n")
                .exitCode,
            0);
        QCOMPARE(runProcess("cmp", {QString::fromStdString(image), out}).exitCode, 0);
        auto versions =
            run({"parcel", "versions", "alice", "desk", "--json", "--password-stdin"}, "secret\n");
        QCOMPARE(versions.exitCode, 0);
        auto list = isr::json::parse(versions.out);
        QVERIFY(list.ok() && list->isArray());
        QCOMPARE(list->asArray().size(), std::size_t(2));
        QCOMPARE(run({"parcel", "rollback", "alice", "desk", "1", "--password-stdin"}, "secret\n")
                     .exitCode,
                 0);
        auto parcels = run({"parcel", "list", "alice", "--json", "--password-stdin"}, "secret\n");
        QCOMPARE(parcels.exitCode, 0);
        auto pl = isr::json::parse(parcels.out);
        QVERIFY(pl.ok());
        QCOMPARE(pl->asArray().at(0).getInt("latest").value(), std::int64_t(3));
    }
    void createParcel() {
        auto r = run({"parcel", "create", "alice", "fresh", "--disk-size", "64M", "--memory",
                      "256M", "--boot", "demo-guest", "--password-stdin"},
                     "secret\n");
        QCOMPARE(r.exitCode, 0);
        auto bad =
            run({"parcel", "create", "alice", "huge", "--memory", "100000G", "--password-stdin"},
                "secret\n");
        QCOMPARE(bad.exitCode, 2);
    }
    void passwd() {
        auto changed = run({"user", "passwd", "alice", "--password-stdin"}, "secret\nnew-secret\n");
        QCOMPARE(changed.exitCode, 0);
        QVERIFY2(changed.out.find("key rotation finished") != std::string::npos,
                 changed.out.c_str());
        QCOMPARE(run({"parcel", "list", "alice", "--password-stdin"}, "secret\n").exitCode, 1);
        QCOMPARE(run({"parcel", "list", "alice", "--password-stdin"}, "new-secret\n").exitCode, 0);
        // Half new S3 keys are a usage error; nothing changes.
        auto half = run({"user", "passwd", "alice", "--password-stdin", "--s3-access-key", "K"},
                        "new-secret\nx\n");
        QCOMPARE(half.exitCode, 2);
        QCOMPARE(run({"parcel", "list", "alice", "--password-stdin"}, "new-secret\n").exitCode, 0);
    }
    // Killed half-way through re-sealing: the new password works at once,
    // and --finish completes the rotation (issue #16 item 7).
    void passwdKilledThenFinished() {
        auto killed = runProcess("env",
                                 {"ISR_FAULT=parcel.rotate.reseal:kill@2", isrctl_, "user",
                                  "passwd", "alice", "--password-stdin", "--store", store_},
                                 "new-secret\ntmp-secret\n");
        QVERIFY(killed.exitCode != 0);
        QVERIFY2(killed.err.find("isr-fault: fired parcel.rotate.reseal kill hit 2") !=
                     std::string::npos,
                 killed.err.c_str());
        QCOMPARE(run({"parcel", "list", "alice", "--password-stdin"}, "new-secret\n").exitCode, 1);
        QCOMPARE(run({"fsck", "--user", "alice", "--password-stdin"}, "tmp-secret\n").exitCode, 0);
        auto finished = run({"user", "passwd", "alice", "--finish", "--password-stdin", "--json"},
                            "tmp-secret\n");
        QCOMPARE(finished.exitCode, 0);
        auto doc = isr::json::parse(finished.out);
        QVERIFY2(doc.ok(), finished.out.c_str());
        QCOMPARE(doc->getBool("finished").value(), true);
        QVERIFY(doc->getInt("versions_resealed").value() > 0);
        QCOMPARE(run({"user", "passwd", "alice", "--password-stdin"}, "tmp-secret\nnew-secret\n")
                     .exitCode,
                 0);
    }
    // user rekey (issue #16 item 7): killed after its first rewritten
    // version, the parcel still exports byte-identical; running it again
    // finishes, and its gc removes the chunks under the old secret.
    void rekeyKilledThenFinished() {
        auto before = QString::fromStdString(dir_->file("before-rekey.raw"));
        QCOMPARE(
            run({"parcel", "export", "alice", "desk", before, "--password-stdin"}, "new-secret\n")
                .exitCode,
            0);
        auto killed = runProcess("env",
                                 {"ISR_FAULT=parcel.rekey.version:kill@1", isrctl_, "user", "rekey",
                                  "alice", "--password-stdin", "--store", store_},
                                 "new-secret\n");
        QVERIFY(killed.exitCode != 0);
        QVERIFY2(killed.err.find("isr-fault: fired parcel.rekey.version kill hit 1") !=
                     std::string::npos,
                 killed.err.c_str());
        auto wrong = run({"user", "rekey", "alice", "--password-stdin"}, "nope\n");
        QCOMPARE(wrong.exitCode, 1);
        auto finished =
            run({"user", "rekey", "alice", "--password-stdin", "--json", "--grace", "0"},
                "new-secret\n");
        QCOMPARE(finished.exitCode, 0);
        auto doc = isr::json::parse(finished.out);
        QVERIFY2(doc.ok(), finished.out.c_str());
        QCOMPARE(doc->getBool("started").value(), false); // continued the killed one
        QCOMPARE(doc->getBool("finished").value(), true);
        QVERIFY(doc->getInt("versions_rewritten").value() > 0);
        QVERIFY(doc->find("gc") && doc->find("gc")->getInt("removed").value() > 0);
        auto after = QString::fromStdString(dir_->file("after-rekey.raw"));
        QCOMPARE(
            run({"parcel", "export", "alice", "desk", after, "--password-stdin"}, "new-secret\n")
                .exitCode,
            0);
        QCOMPARE(runProcess("cmp", {before, after}).exitCode, 0);
        QCOMPARE(run({"fsck", "--user", "alice", "--password-stdin"}, "new-secret\n").exitCode, 0);
    }
    void fsckAndGc() {
        auto clean = run({"fsck", "--user", "alice", "--password-stdin", "--json"}, "new-secret\n");
        QCOMPARE(clean.exitCode, 0);
        auto gc = run({"gc", "--user", "alice", "--grace", "0", "--password-stdin", "--json"},
                      "new-secret\n");
        QCOMPARE(gc.exitCode, 0);
        auto doc = isr::json::parse(gc.out);
        QVERIFY(doc.ok());
        QCOMPARE(doc->getInt("removed").value(), std::int64_t(0)); // everything is referenced
        // Damage one chunk file: fsck exits 3 and names it.
        QProcess find;
        find.start("find",
                   {QString::fromStdString(dir_->file("store/users/alice/chunks")), "-type", "f"});
        find.waitForFinished();
        QString victim = QString::fromUtf8(find.readAllStandardOutput()).split('\n').first();
        QVERIFY(!victim.isEmpty());
        {
            std::fstream f(victim.toStdString(), std::ios::binary | std::ios::in | std::ios::out);
            f.seekp(50);
            f.put('X');
        }
        auto damaged = run({"fsck"});
        QCOMPARE(damaged.exitCode, 3);
        QVERIFY(damaged.out.find(victim.section('/', -1).toStdString()) != std::string::npos);
    }
};

QTEST_GUILESS_MAIN(TestIsrctlParcel)
#include "test_isrctl_parcel.moc"
