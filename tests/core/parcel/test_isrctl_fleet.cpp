// isrctl for an operator with many users, end to end on a file:// store:
// user list/remove, parcel status/remove/unlock, store stats, gc retention,
// gc --all without passwords (reference lists; FORMAT.md "Reference list").
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
    // Takes the parcel's lock as a kiosk would (fresh heartbeat); with
    // checkIn, the kiosk's whole visit: lock, then check in (the lock object
    // stays, saying "released").
    void lockAsKiosk(const std::string& user, const std::string& parcelName,
                     const std::string& kiosk = "gate-7", bool checkIn = false) {
        auto s = isr::store::openStore(store_.toStdString());
        QVERIFY(s.ok());
        auto secrets = parcel::signIn(**s, user, "pw");
        QVERIFY(secrets.ok());
        parcel::Parcels parcels(**s, std::move(*secrets));
        auto attempt = parcels.lock(parcelName, kiosk, false);
        QVERIFY(attempt.ok() && attempt->acquired);
        if (checkIn)
            QVERIFY(parcels.unlock(parcelName, attempt->lock).ok());
    }

    std::string storeDir() const { return dir_->file("store"); }
    // A 1 MiB raw image whose first 256 KiB (two 128 KiB chunks) come from
    // `seed`: every seed makes chunks no other seed shares.
    QString seededImage(unsigned seed) {
        std::string path = dir_->file("seed-" + std::to_string(seed) + ".raw");
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        std::mt19937 rng(seed);
        for (int i = 0; i < (256 << 10); ++i)
            f.put(char(rng()));
        f.seekp((1 << 20) - 1);
        f.put(0);
        return QString::fromStdString(path);
    }
    void importImage(const char* user, const char* parcelName, const QString& image,
                     const char* password = "pw\n") {
        auto r = run({"parcel", "import", user, parcelName, image, "--password-stdin"}, password);
        QVERIFY2(r.exitCode == 0, r.err.c_str());
    }
    int countFiles(const std::string& relative) {
        std::filesystem::path root = storeDir() + "/" + relative;
        if (!std::filesystem::exists(root))
            return 0;
        int n = 0;
        for (const auto& e : std::filesystem::recursive_directory_iterator(root))
            n += e.is_regular_file();
        return n;
    }
    bool storeHas(const std::string& relative) {
        return std::filesystem::is_regular_file(storeDir() + "/" + relative);
    }
    // Makes every chunk in the store two days old: past the default grace
    // period, so gc may sweep what nothing references (no sleeping).
    void ageChunks() {
        auto old = std::filesystem::file_time_type::clock::now() - std::chrono::hours(48);
        for (const auto& e : std::filesystem::recursive_directory_iterator(storeDir() + "/users"))
            if (e.is_regular_file() && e.path().string().find("/chunks/") != std::string::npos)
                std::filesystem::last_write_time(e.path(), old);
    }
    const isr::json::Value& userEntry(const isr::json::Value& report, const std::string& user) {
        for (const auto& u : report.asObject().at("users").asArray())
            if (u.getString("user").value() == user)
                return u;
        qFatal("no user %s in the gc report", user.c_str());
    }
    std::string userStatus(const isr::json::Value& report, const std::string& user) {
        return userEntry(report, user).getString("status").value();
    }
    std::int64_t userCount(const isr::json::Value& report, const std::string& user,
                           const char* key) {
        return userEntry(report, user).getInt(key).value();
    }
    // fsck --user exits 0 (clean) for this user.
    void fsckClean(const char* user, const char* password = "pw\n") {
        auto fsck = run({"fsck", "--user", user, "--password-stdin"}, password);
        QVERIFY2(fsck.exitCode == 0, (fsck.out + fsck.err).c_str());
    }
    std::string readAll(const std::string& path) {
        std::ifstream f(path, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(f), {});
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
        // The store sees which parcel is open, not where (issue #16 item
        // 12): the lock object holds no kiosk id, and without the user's
        // keys status shows an opaque holder token and the heartbeat's age.
        {
            std::ifstream in(storeDir() + "/users/alice/parcels/desk/lock", std::ios::binary);
            const std::string bytes((std::istreambuf_iterator<char>(in)), {});
            QVERIFY(!bytes.empty());
            QVERIFY2(bytes.find("gate-7") == std::string::npos, bytes.c_str());
        }
        auto held = json(run({"parcel", "status", "alice", "desk", "--json"}));
        const auto& lock = held.asObject().at("lock");
        QVERIFY(lock.asObject().at("kiosk").isNull());
        const std::string token = lock.getString("holder").value();
        QCOMPARE(token.size(), std::size_t(12));
        QVERIFY(lock.getInt("heartbeat_age_seconds").value() < 60);
        auto heldText = run({"parcel", "status", "alice", "desk"});
        QVERIFY2(heldText.out.find("open at holder " + token) != std::string::npos,
                 heldText.out.c_str());
        QVERIFY(heldText.out.find("gate-7") == std::string::npos);
        // With the password: when and where the latest version was saved,
        // and which kiosk holds the lock.
        auto signedIn = json(
            run({"parcel", "status", "alice", "desk", "--json", "--sign-in", "--password-stdin"},
                "pw\n"));
        QCOMPARE(signedIn.asObject().at("lock").getString("kiosk").value(), std::string("gate-7"));
        QCOMPARE(signedIn.asObject().at("lock").getString("holder").value(), token);
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
        QVERIFY2(unlock.err.find("open at holder ") != std::string::npos, unlock.err.c_str());
        QVERIFY(unlock.err.find("gate-7") == std::string::npos);
        QVERIFY(unlock.err.find("--force") != std::string::npos);
        auto removeParcel = run({"parcel", "remove", "alice", "desk", "--yes"});
        QCOMPARE(removeParcel.exitCode, 1);
        auto removeUser = run({"user", "remove", "alice", "--yes"});
        QCOMPARE(removeUser.exitCode, 1);
        auto gc = run({"gc", "--user", "alice", "--keep-last", "1", "--password-stdin"}, "pw\n");
        QCOMPARE(gc.exitCode, 1);
        auto still = json(run({"parcel", "status", "alice", "desk", "--json"}));
        QCOMPARE(still.asObject().at("lock").getString("holder").value().size(), std::size_t(12));
        QCOMPARE(int(still.asObject().at("versions").asArray().size()), 2);
        auto held = json(run({"store", "stats", "--json"}));
        QCOMPARE(held.getInt("locked_parcels").value(), std::int64_t(1));
        auto forced = json(run({"parcel", "unlock", "alice", "desk", "--force", "--json"}));
        QVERIFY(forced.asObject().at("released").asBool());
        // A checked-in parcel's lock object stays, saying "released": not a
        // locked parcel.
        lockAsKiosk("alice", "desk", "gate-8", /*checkIn=*/true);
        QVERIFY(std::filesystem::exists(storeDir() + "/users/alice/parcels/desk/lock"));
        auto free = json(run({"store", "stats", "--json"}));
        QCOMPARE(free.getInt("locked_parcels").value(), std::int64_t(0));
        auto again = json(run({"parcel", "unlock", "alice", "desk", "--json"}));
        QVERIFY(!again.asObject().at("released").asBool());
    }

    // A lock written before format 2 (the kiosk id in clear, no "format")
    // still reads: it names its kiosk without any keys, counts as held, and
    // is released the same way.
    void oldFormatLockStillReads() {
        const std::string path = storeDir() + "/users/alice/parcels/desk/lock";
        const auto now = std::time(nullptr);
        std::filesystem::remove(path);
        {
            std::ofstream out(path);
            out << "{\"kiosk\":\"gate-old\",\"session\":\"00112233445566778899aabbccddeeff\","
                   "\"since\":"
                << now << ",\"heartbeat\":" << now << "}\n";
        }
        auto status = json(run({"parcel", "status", "alice", "desk", "--json"}));
        const auto& lock = status.asObject().at("lock");
        QCOMPARE(lock.getString("kiosk").value(), std::string("gate-old"));
        QCOMPARE(lock.getString("holder").value(), std::string("001122334455"));
        auto refused = run({"parcel", "unlock", "alice", "desk"});
        QCOMPARE(refused.exitCode, 1);
        QVERIFY2(refused.err.find("gate-old") != std::string::npos, refused.err.c_str());
        auto forced = json(run({"parcel", "unlock", "alice", "desk", "--force", "--json"}));
        QVERIFY(forced.asObject().at("released").asBool());
        QVERIFY(!std::filesystem::exists(path));
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

    void gcUsage() {
        auto both = run({"gc", "--all", "--user", "alice"});
        QCOMPARE(both.exitCode, 2);
        QVERIFY2(both.err.find("not both") != std::string::npos, both.err.c_str());
        auto neither = run({"gc"});
        QCOMPARE(neither.exitCode, 2);
        QVERIFY(neither.err.find("--all") != std::string::npos);
        QCOMPARE(run({"gc", "--all", "--keep-last", "0"}).exitCode, 2);
        QCOMPARE(run({"gc", "--all", "--keep-within", "soon"}).exitCode, 2);
    }

    // dave: three versions, each with chunks of its own; erin: open at a
    // kiosk. gc --all --keep-last 1 without any password prunes dave and
    // skips erin; the dry run counted exactly that first.
    void gcAllWithoutPasswords() {
        for (const char* user : {"dave", "erin"})
            QCOMPARE(run({"user", "add", user, "--password-stdin"}, "pw\n").exitCode, 0);
        for (unsigned seed : {101u, 102u, 103u})
            importImage("dave", "desk", seededImage(seed));
        importImage("erin", "desk", seededImage(201));
        lockAsKiosk("erin", "desk");
        ageChunks();
        QVERIFY(storeHas("users/dave/parcels/desk/refs/1")); // written by the commit
        const int daveChunks = countFiles("users/dave/chunks");
        const int erinFiles = countFiles("users/erin");
        QCOMPARE(daveChunks, 6);

        auto dryRun = run({"gc", "--all", "--keep-last", "1", "--dry-run", "--json"});
        QVERIFY2(dryRun.exitCode == 0, (dryRun.out + dryRun.err).c_str());
        auto dry = json(dryRun);
        QVERIFY(dry.asObject().at("dry_run").asBool());
        QCOMPARE(userStatus(dry, "dave"), std::string("collected"));
        QCOMPARE(userCount(dry, "dave", "versions_removed"), std::int64_t(2));
        QCOMPARE(userCount(dry, "dave", "removed"), std::int64_t(4));
        QCOMPARE(userStatus(dry, "erin"), std::string("skipped_locked"));
        // Without keys the lock names an opaque holder, not the kiosk.
        QVERIFY(userEntry(dry, "erin").getString("reason").value().find("at holder ") !=
                std::string::npos);
        QVERIFY(userEntry(dry, "erin").getString("reason").value().find("gate-7") ==
                std::string::npos);
        QCOMPARE(countFiles("users/dave/chunks"), daveChunks);
        QVERIFY(storeHas("users/dave/parcels/desk/versions/1"));

        auto realRun = run({"gc", "--all", "--keep-last", "1", "--json"});
        QVERIFY2(realRun.exitCode == 0, (realRun.out + realRun.err).c_str());
        auto real = json(realRun);
        for (const char* key : {"versions_removed", "version_bytes", "removed", "removed_bytes"})
            QCOMPARE(userCount(real, "dave", key), userCount(dry, "dave", key));
        const auto& total = real.asObject().at("total");
        QCOMPARE(total.getInt("users_skipped_locked").value(), std::int64_t(1));
        QCOMPARE(total.getInt("users_skipped_references").value(), std::int64_t(0));
        for (const char* gone : {"versions/1", "versions/2", "refs/1", "refs/2"})
            QVERIFY2(!storeHas(std::string("users/dave/parcels/desk/") + gone), gone);
        QVERIFY(storeHas("users/dave/parcels/desk/versions/3"));
        QVERIFY(storeHas("users/dave/parcels/desk/refs/3"));
        QCOMPARE(countFiles("users/dave/chunks"), 2); // the newest version's own
        QCOMPARE(countFiles("users/erin"), erinFiles);
        fsckClean("dave");
        // The kept newest still decodes, to the image it was made from.
        std::string out = dir_->file("dave3.raw");
        auto exported = run(
            {"parcel", "export", "dave", "desk", QString::fromStdString(out), "--password-stdin"},
            "pw\n");
        QVERIFY2(exported.exitCode == 0, exported.err.c_str());
        QCOMPARE(readAll(out), readAll(seededImage(103).toStdString()));
        // Text output names both users.
        auto text = run({"gc", "--all", "--dry-run"});
        QCOMPARE(text.exitCode, 0);
        QVERIFY2(text.out.find("erin: skipped") != std::string::npos, text.out.c_str());
        QVERIFY(text.out.find("total:") != std::string::npos);
    }

    // A version without its list (committed before lists existed: here the
    // object is deleted) or with a damaged one: gc --all skips that user,
    // removing nothing, exits 4; gc --user writes the list; then it proceeds.
    void gcAllSkipsMissingOrDamagedReferenceLists() {
        importImage("dave", "desk", seededImage(104)); // version 4
        ageChunks();
        const std::string refs4 = storeDir() + "/users/dave/parcels/desk/refs/4";
        QVERIFY(std::filesystem::remove(refs4));
        auto skipped = run({"gc", "--all", "--keep-last", "1", "--json"});
        QCOMPARE(skipped.exitCode, 4);
        auto report = json(skipped);
        QCOMPARE(userStatus(report, "dave"), std::string("skipped_references"));
        QVERIFY(userEntry(report, "dave").getString("reason").value().find("no reference list") !=
                std::string::npos);
        QCOMPARE(userCount(report, "dave", "versions_removed"), std::int64_t(0));
        QVERIFY(storeHas("users/dave/parcels/desk/versions/3"));
        QCOMPARE(countFiles("users/dave/chunks"), 4);
        auto text = run({"gc", "--all", "--keep-last", "1"});
        QCOMPARE(text.exitCode, 4);
        QVERIFY2(text.out.find("gc --user dave") != std::string::npos, text.out.c_str());

        // Backfill: not on a dry run; then the list is back.
        auto dry =
            json(run({"gc", "--user", "dave", "--dry-run", "--json", "--password-stdin"}, "pw\n"));
        QCOMPARE(dry.getInt("refs_written").value(), std::int64_t(1));
        QVERIFY(!std::filesystem::exists(refs4));
        auto backfill = json(run({"gc", "--user", "dave", "--json", "--password-stdin"}, "pw\n"));
        QCOMPARE(backfill.getInt("refs_written").value(), std::int64_t(1));
        QVERIFY(std::filesystem::exists(refs4));
        fsckClean("dave");

        // A damaged list: fsck (no password) reports it; gc --all skips.
        std::string bytes = readAll(refs4);
        bytes[bytes.size() / 2] ^= 0x20;
        std::ofstream(refs4, std::ios::binary | std::ios::trunc) << bytes;
        auto fsck = run({"fsck"});
        QCOMPARE(fsck.exitCode, 3);
        QVERIFY2(fsck.out.find("parcels/desk/refs/4") != std::string::npos, fsck.out.c_str());
        auto damaged = json(run({"gc", "--all", "--keep-last", "1", "--json"}));
        QCOMPARE(userStatus(damaged, "dave"), std::string("skipped_references"));
        QVERIFY(userEntry(damaged, "dave").getString("reason").value().find("damaged") !=
                std::string::npos);
        QVERIFY(storeHas("users/dave/parcels/desk/versions/3"));
        auto deep = run({"fsck", "--user", "dave", "--password-stdin"}, "pw\n");
        QCOMPARE(deep.exitCode, 3);
        QCOMPARE(json(run({"gc", "--user", "dave", "--json", "--password-stdin"}, "pw\n"))
                     .getInt("refs_written")
                     .value(),
                 std::int64_t(1));
        QCOMPARE(run({"fsck"}).exitCode, 0);

        // Repaired: the run goes through (erin is still open: exit 0 all the same).
        auto done = run({"gc", "--all", "--keep-last", "1", "--json"});
        QVERIFY2(done.exitCode == 0, (done.out + done.err).c_str());
        QCOMPARE(userCount(json(done), "dave", "versions_removed"), std::int64_t(1));
        QVERIFY(!storeHas("users/dave/parcels/desk/versions/3"));
        QCOMPARE(countFiles("users/dave/chunks"), 2);
        fsckClean("dave");
    }

    // The store fails mid-run (a fault point in fail mode: the remove that
    // would come next fails like a dead S3) and isrctl is killed mid-prune:
    // gc stops with a clear error, nothing a kept version references is
    // gone (fsck --user clean), and a rerun finishes.
    void gcAllStoreFailsMidRun() {
        for (unsigned seed : {105u, 106u, 107u})
            importImage("dave", "desk", seededImage(seed)); // versions 5..7
        ageChunks();
        qputenv("ISR_FAULT", "parcel.gc.sweep:fail@2");
        auto failed = run({"gc", "--all", "--keep-last", "1"});
        qunsetenv("ISR_FAULT");
        QCOMPARE(failed.exitCode, 1);
        QVERIFY2(failed.err.find("injected fault at parcel.gc.sweep") != std::string::npos,
                 failed.err.c_str());
        QVERIFY(failed.err.find("run it again") != std::string::npos);
        QVERIFY(!storeHas("users/dave/parcels/desk/versions/6"));
        QVERIFY(countFiles("users/dave/chunks") > 2); // the sweep stopped after one chunk
        fsckClean("dave");

        importImage("dave", "desk", seededImage(108)); // version 8
        importImage("dave", "desk", seededImage(109)); // version 9
        ageChunks();
        qputenv("ISR_FAULT", "parcel.gc.prune:kill@2");
        auto killed = run({"gc", "--all", "--keep-last", "1"});
        qunsetenv("ISR_FAULT");
        QCOMPARE(killed.exitCode, -1);
        QVERIFY(killed.err.find("isr-fault: fired parcel.gc.prune") != std::string::npos);
        QVERIFY(!storeHas("users/dave/parcels/desk/versions/7"));
        QVERIFY(storeHas("users/dave/parcels/desk/versions/8"));
        fsckClean("dave");

        auto rerun = run({"gc", "--all", "--keep-last", "1", "--json"});
        QVERIFY2(rerun.exitCode == 0, (rerun.out + rerun.err).c_str());
        QCOMPARE(userCount(json(rerun), "dave", "versions_removed"), std::int64_t(1));
        QCOMPARE(countFiles("users/dave/parcels/desk/versions"), 1);
        QCOMPARE(countFiles("users/dave/parcels/desk/refs"), 1);
        QCOMPARE(countFiles("users/dave/chunks"), 2);
        fsckClean("dave");
    }

    // A password change re-seals every manifest under a new master: same
    // plaintext, same sealed length, so the lists stay valid.
    void gcAllAfterPasswordChange() {
        importImage("dave", "desk", seededImage(110)); // version 10
        auto passwd = run({"user", "passwd", "dave", "--password-stdin"}, "pw\nnew-pw\n");
        QVERIFY2(passwd.exitCode == 0, passwd.err.c_str());
        ageChunks();
        auto after = run({"gc", "--all", "--keep-last", "1", "--json"});
        QVERIFY2(after.exitCode == 0, (after.out + after.err).c_str());
        QCOMPARE(userStatus(json(after), "dave"), std::string("collected"));
        QCOMPARE(userCount(json(after), "dave", "versions_removed"), std::int64_t(1));
        fsckClean("dave", "new-pw\n");
        QCOMPARE(run({"fsck"}).exitCode, 0);
    }
};

QTEST_GUILESS_MAIN(TestIsrctlFleet)
#include "test_isrctl_fleet.moc"
