// isrctl for an operator with many users, end to end on a file:// store:
// user list/remove, parcel status/remove/unlock, store stats, gc retention.
// Locks are taken the way a kiosk takes them (Parcels::lock), so the test
// follows the lock format wherever it goes.
#include "parcel/parcel.h"
#include "store/store.h"
#include "testsupport.h"
#include "util/json.h"

#include <QTest>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

using isr::test::runProcess;
namespace parcel = isr::parcel;

class TestIsrctlFleet : public QObject {
    Q_OBJECT
    QString isrctl_;
    std::unique_ptr<isr::test::TempDir> dir_;
    QString store_;
    QString image_;

    isr::test::ProcessResult run(QStringList args, const QByteArray& stdinData = {}) {
        args << "--store" << store_;
        return runProcess(isrctl_, args, stdinData);
    }
    isr::json::Value json(const isr::test::ProcessResult& r) {
        auto doc = isr::json::parse(r.out);
        if (!doc.ok())
            qFatal("not JSON: %s / %s", r.out.c_str(), r.err.c_str());
        return *doc;
    }
    void import(const char* user, const char* parcelName) {
        auto r = run({"parcel", "import", user, parcelName, image_, "--password-stdin"}, "pw\n");
        QVERIFY2(r.exitCode == 0, r.err.c_str());
    }
    // Takes the parcel's lock as a kiosk would (fresh heartbeat).
    void lockAsKiosk(const std::string& user, const std::string& parcelName) {
        auto s = isr::store::openStore(store_.toStdString());
        QVERIFY(s.ok());
        auto secrets = parcel::signIn(**s, user, "pw");
        QVERIFY(secrets.ok());
        parcel::Parcels parcels(**s, std::move(*secrets));
        auto attempt = parcels.lock(parcelName, "gate-7", false);
        QVERIFY(attempt.ok() && attempt->acquired);
    }

private slots:
    void initTestCase() {
        isrctl_ = qEnvironmentVariable("ISRCTL");
        QVERIFY(!isrctl_.isEmpty());
        dir_ = std::make_unique<isr::test::TempDir>();
        store_ = QString::fromStdString("file://" + dir_->file("store"));
        QCOMPARE(runProcess(isrctl_, {"store", "init", store_, "--kdf", "minimal"}).exitCode, 0);
        for (const char* user : {"alice", "bob", "carol"})
            QCOMPARE(run({"user", "add", user, "--password-stdin"}, "pw\n").exitCode, 0);
        image_ = QString::fromStdString(dir_->file("disk.raw"));
        std::ofstream f(image_.toStdString(), std::ios::binary);
        std::mt19937 rng(7);
        for (int i = 0; i < (1 << 20); ++i)
            f.put(char(rng()));
        f.seekp((4 << 20) - 1);
        f.put(0);
    }

    void listAndStats() {
        import("alice", "desk");
        import("alice", "desk");
        import("alice", "laptop");
        import("bob", "desk");
        auto list = json(run({"user", "list", "--json"}));
        const auto& users = list.asObject().at("users").asArray();
        QCOMPARE(int(users.size()), 3);
        QCOMPARE(users[0].getString("user").value(), std::string("alice"));
        QCOMPARE(users[0].getInt("parcels").value(), std::int64_t(2));
        QVERIFY(users[0].getInt("bytes").value() > (1 << 20)); // the random MiB, once (dedup)
        QCOMPARE(users[2].getString("user").value(), std::string("carol"));
        QCOMPARE(users[2].getInt("parcels").value(), std::int64_t(0));
        auto stats = json(run({"store", "stats", "--json"}));
        QCOMPARE(stats.getInt("users").value(), std::int64_t(3));
        QCOMPARE(stats.getInt("parcels").value(), std::int64_t(3));
        QCOMPARE(stats.getInt("versions").value(), std::int64_t(4));
        QVERIFY(stats.getInt("chunks").value() > 0);
        QCOMPARE(stats.getInt("locked_parcels").value(), std::int64_t(0));
        // Text output names every user; --json adds nothing else to stdout.
        auto text = run({"user", "list"});
        QCOMPARE(text.exitCode, 0);
        QVERIFY(text.out.find("alice") != std::string::npos);
    }

    void statusShowsTheLockHolder() {
        auto free = json(run({"parcel", "status", "alice", "desk", "--json"}));
        QCOMPARE(free.getInt("latest").value(), std::int64_t(2));
        QVERIFY(free.asObject().at("lock").isNull());
        lockAsKiosk("alice", "desk");
        auto held = json(run({"parcel", "status", "alice", "desk", "--json"}));
        const auto& lock = held.asObject().at("lock");
        QCOMPARE(lock.getString("kiosk").value(), std::string("gate-7"));
        QVERIFY(lock.getInt("heartbeat_age_seconds").value() < 60);
        // With the password: when and where the latest version was saved.
        auto signedIn = json(
            run({"parcel", "status", "alice", "desk", "--json", "--sign-in", "--password-stdin"},
                "pw\n"));
        QCOMPARE(signedIn.getString("saved_at").value(), std::string("isrctl"));
        QVERIFY(signedIn.getInt("saved").value() > 0);
        auto wrong =
            run({"parcel", "status", "alice", "desk", "--sign-in", "--password-stdin"}, "nope\n");
        QCOMPARE(wrong.exitCode, 1);
        auto unknown = run({"parcel", "status", "alice", "nosuch"});
        QCOMPARE(unknown.exitCode, 1);
        QVERIFY(unknown.err.find("does not exist") != std::string::npos);
    }

    // A fresh lock belongs to a live kiosk: unlock and remove refuse it
    // unless forced; the lock is still there afterwards.
    void lockedParcelsAreProtected() {
        auto unlock = run({"parcel", "unlock", "alice", "desk"});
        QCOMPARE(unlock.exitCode, 1);
        QVERIFY2(unlock.err.find("gate-7") != std::string::npos, unlock.err.c_str());
        QVERIFY(unlock.err.find("--force") != std::string::npos);
        auto removeParcel = run({"parcel", "remove", "alice", "desk", "--yes"});
        QCOMPARE(removeParcel.exitCode, 1);
        auto removeUser = run({"user", "remove", "alice", "--yes"});
        QCOMPARE(removeUser.exitCode, 1);
        auto gc = run({"gc", "--user", "alice", "--keep-last", "1", "--password-stdin"}, "pw\n");
        QCOMPARE(gc.exitCode, 1);
        auto still = json(run({"parcel", "status", "alice", "desk", "--json"}));
        QCOMPARE(still.asObject().at("lock").getString("kiosk").value(), std::string("gate-7"));
        QCOMPARE(int(still.asObject().at("versions").asArray().size()), 2);
        auto forced = json(run({"parcel", "unlock", "alice", "desk", "--force", "--json"}));
        QVERIFY(forced.asObject().at("released").asBool());
        auto again = json(run({"parcel", "unlock", "alice", "desk", "--json"}));
        QVERIFY(!again.asObject().at("released").asBool());
    }

    void retention() {
        for (int i = 0; i < 3; ++i)
            import("alice", "desk"); // versions 3..5
        auto badZero =
            run({"gc", "--user", "alice", "--keep-last", "0", "--password-stdin"}, "pw\n");
        QCOMPARE(badZero.exitCode, 2);
        auto badWithin =
            run({"gc", "--user", "alice", "--keep-within", "soon", "--password-stdin"}, "pw\n");
        QCOMPARE(badWithin.exitCode, 2);
        // Dry run: says what would go, removes nothing.
        auto dry = json(run({"gc", "--user", "alice", "--keep-last", "2", "--dry-run", "--json",
                             "--password-stdin"},
                            "pw\n"));
        QCOMPARE(dry.getInt("versions_removed").value(), std::int64_t(3));
        auto status = json(run({"parcel", "status", "alice", "desk", "--json"}));
        QCOMPARE(int(status.asObject().at("versions").asArray().size()), 5);
        // Everything is younger than 30 days: --keep-within keeps it all.
        auto within = json(
            run({"gc", "--user", "alice", "--keep-within", "30d", "--json", "--password-stdin"},
                "pw\n"));
        QCOMPARE(within.getInt("versions_removed").value(), std::int64_t(0));
        auto real = json(run(
            {"gc", "--user", "alice", "--keep-last", "2", "--json", "--password-stdin"}, "pw\n"));
        QCOMPARE(real.getInt("versions_removed").value(), std::int64_t(3));
        status = json(run({"parcel", "status", "alice", "desk", "--json"}));
        const auto& versions = status.asObject().at("versions").asArray();
        QCOMPARE(int(versions.size()), 2);
        QCOMPARE(versions[0].asInt(), std::int64_t(4));
        QCOMPARE(versions[1].asInt(), std::int64_t(5));
        // The other parcel kept its only version; what is left still reads.
        auto fsck = run({"fsck", "--user", "alice", "--password-stdin"}, "pw\n");
        QVERIFY2(fsck.exitCode == 0, (fsck.out + fsck.err).c_str());
        // --keep-within a second, two seconds later: only the newest stays.
        std::this_thread::sleep_for(std::chrono::milliseconds(2100));
        auto old =
            json(run({"gc", "--user", "alice", "--keep-within", "1s", "--json", "--password-stdin"},
                     "pw\n"));
        QCOMPARE(old.getInt("versions_removed").value(), std::int64_t(1));
        auto export5 = run({"parcel", "export", "alice", "desk",
                            QString::fromStdString(dir_->file("out.raw")), "--password-stdin"},
                           "pw\n");
        QVERIFY2(export5.exitCode == 0, export5.err.c_str());
    }

    void removeParcelAndUser() {
        auto noYes = run({"parcel", "remove", "alice", "laptop"});
        QCOMPARE(noYes.exitCode, 2); // stdin is not a terminal: --yes is required
        QVERIFY(noYes.err.find("--yes") != std::string::npos);
        QCOMPARE(run({"parcel", "remove", "alice", "laptop", "--yes"}).exitCode, 0);
        auto gone = run({"parcel", "status", "alice", "laptop"});
        QCOMPARE(gone.exitCode, 1);
        auto list = run({"parcel", "list", "alice", "--password-stdin", "--json"}, "pw\n");
        QCOMPARE(list.exitCode, 0);
        QVERIFY(list.out.find("laptop") == std::string::npos);
        QCOMPARE(run({"user", "remove", "bob", "--yes"}).exitCode, 0);
        auto signIn = run({"parcel", "list", "bob", "--password-stdin"}, "pw\n");
        QCOMPARE(signIn.exitCode, 1);
        auto unknown = run({"user", "remove", "bob", "--yes"});
        QCOMPARE(unknown.exitCode, 1);
        auto stats = json(run({"store", "stats", "--json"}));
        QCOMPARE(stats.getInt("users").value(), std::int64_t(2));
        QCOMPARE(stats.getInt("parcels").value(), std::int64_t(1));
        // No object of bob's is left behind (FileStore keeps empty folders).
        for (const auto& e :
             std::filesystem::recursive_directory_iterator(dir_->file("store/users/bob")))
            QVERIFY2(!e.is_regular_file(), e.path().c_str());
    }
};

QTEST_GUILESS_MAIN(TestIsrctlFleet)
#include "test_isrctl_fleet.moc"
