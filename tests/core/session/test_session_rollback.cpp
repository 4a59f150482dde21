// Issue #16, item 5, as an attack on the real parts (Session, FileStore): a
// hostile store replays an older version of a parcel (hides the newest) or
// forks it (serves another version in place of one a kiosk saw), and the
// kiosk refuses before anything runs, with nothing lost or overwritten.
//
// No VM: the check happens at CheckingOut, before Fetching. A resume that
// passes is cancelled from the Listener's `resuming` announcement (what the
// kiosk's progress page shows: "Saved ... at kiosk gate-23"), so it stops
// before the VM with the lock released. The "store" is a FileStore
// directory the test edits as a hostile operator would.
#include "failuretext.h"
#include "parcel/parcel.h"
#include "parcel/rekey.h"
#include "session/seen_versions.h"
#include "session/session.h"
#include "store/store.h"
#include "testsupport.h"

#include <QTest>
#include <filesystem>
#include <sys/stat.h>

using namespace isr;
namespace fs = std::filesystem;

class TestSessionRollback : public QObject {
    Q_OBJECT
    std::unique_ptr<test::TempDir> dir_;
    std::string storeDir_, stateDir_;
    std::unique_ptr<session::Session> kiosk_;
    std::vector<session::SavedVersion> announced_;
    std::string password_ = "pw"; // alice's; passwordChangeKeepsWhatWasSeen changes it

    std::unique_ptr<store::Store> openStore() {
        auto s = store::openStore("file://" + storeDir_);
        if (!s.ok())
            qFatal("open store: %s", s.error().describe().c_str());
        return std::move(*s);
    }

    // A writer elsewhere (another kiosk, isrctl): one commit on top of
    // version `parent` as the store has it.
    std::uint64_t commitAt(std::uint64_t parent, const std::string& kiosk, std::uint8_t fill) {
        auto st = openStore();
        parcel::Parcels p(*st, *parcel::signIn(*st, "alice", password_));
        auto m = p.manifest("desk", parent);
        if (!m.ok())
            qFatal("manifest: %s", m.error().describe().c_str());
        parcel::Manifest next = *m;
        next.parent = parent;
        next.created = 0;
        next.kiosk = kiosk;
        Bytes data(4096, fill);
        auto enc = chunk::encode(p.secrets().convergence.view(), data);
        next.disk[0] = enc.ref;
        auto n = p.commit("desk", next, {enc});
        if (!n.ok())
            qFatal("commit: %s", n.error().describe().c_str());
        return *n;
    }

    std::string versionFile(std::uint64_t n) const {
        return storeDir_ + "/users/alice/parcels/desk/versions/" + std::to_string(n);
    }
    std::vector<std::uint64_t> versionsInStore() {
        auto st = openStore();
        parcel::Parcels p(*st, *parcel::signIn(*st, "alice", password_));
        return *p.versions("desk");
    }
    bool lockIsFree() {
        auto st = openStore();
        parcel::Parcels p(*st, *parcel::signIn(*st, "alice", password_));
        auto l = p.readLock("desk");
        return l.ok() && !l->has_value();
    }

    // A resume that passes the check (cancelled at the announcement).
    void resumePasses(std::uint64_t expectVersion) {
        announced_.clear();
        auto r = kiosk_->resume("alice", password_, "desk");
        QVERIFY(!r.ok());
        QVERIFY2(r.error().code == Errc::Cancelled, r.error().describe().c_str());
        QCOMPARE(kiosk_->stage(), session::Stage::SignedOut);
        QCOMPARE(announced_.size(), std::size_t(1));
        QCOMPARE(announced_[0].version, expectVersion);
        QVERIFY(lockIsFree());
    }

    // A resume refused with `cause`; nothing changed in the store.
    session::Failure resumeRefused(session::FailureCause cause) {
        announced_.clear();
        const auto before = versionsInStore();
        auto r = kiosk_->resume("alice", password_, "desk");
        if (r.ok())
            qFatal("the resume was not refused");
        auto f = kiosk_->failure();
        if (!f)
            qFatal("no failure: %s", r.error().describe().c_str());
        if (f->cause != cause)
            qFatal("cause %s, not %s: %s", session::failureCauseName(f->cause),
                   session::failureCauseName(cause), f->detail.c_str());
        if (kiosk_->stage() != session::Stage::Failed || f->stage != session::Stage::CheckingOut)
            qFatal("not failed at CheckingOut");
        if (!announced_.empty())
            qFatal("a refused version was announced");
        if (versionsInStore() != before || !lockIsFree())
            qFatal("a refused resume changed the store");
        (void)kiosk_->abandon();
        return *f;
    }

private slots:
    void initTestCase() {
        test::requirePrograms({"qemu-system-x86_64"}); // Session::create opens libvirt
        dir_ = std::make_unique<test::TempDir>();
        storeDir_ = dir_->file("store");
        stateDir_ = dir_->file("kiosk");
        fs::create_directories(storeDir_);
        auto st = openStore();
        QVERIFY(parcel::initStore(*st, crypto::KdfParams::minimal()).ok());
        QVERIFY(parcel::createAccount(*st, "alice", password_).ok());
        parcel::Parcels p(*st, *parcel::signIn(*st, "alice", password_));
        parcel::VmSpec vm;
        vm.boot = "demo-guest";
        vm.memoryMiB = 64;
        QVERIFY(p.create("desk", vm, 1 << 20, 4096, "gate-1").ok());
        QCOMPARE(commitAt(1, "gate-2", 1), std::uint64_t(2));
        QCOMPARE(commitAt(2, "gate-23", 2), std::uint64_t(3));

        session::Listener listener;
        // requestCancel() is the one Session call allowed from a callback.
        listener.resuming = [this](const session::SavedVersion& v) {
            announced_.push_back(v);
            kiosk_->requestCancel();
        };
        session::KioskConfig config;
        config.kioskId = "kiosk-k";
        config.stateDir = stateDir_;
        config.storeUrl = "file://" + storeDir_;
        config.allowUnencryptedSwap = true; // not what this test is about
        auto created = session::Session::create(config, listener);
        QVERIFY2(created.ok(), created.ok() ? "" : created.error().describe().c_str());
        kiosk_ = std::move(*created);
    }

    void cleanupTestCase() { kiosk_.reset(); }

    // The kiosk resumes version 3 and remembers it: announced with when and
    // where it was saved; the record names neither user nor parcel.
    void resumeAnnouncesAndRemembers() {
        resumePasses(3);
        QCOMPARE(announced_[0].kiosk, std::string("gate-23"));
        QVERIFY(announced_[0].created > 0);
        const QString text = ui::text::resumingFrom(announced_[0], QLocale::c());
        QVERIFY2(text.startsWith("Saved ") && text.endsWith(" at kiosk gate-23"), qPrintable(text));
        std::vector<fs::path> records;
        for (const auto& e : fs::directory_iterator(stateDir_ + "/seen"))
            records.push_back(e.path());
        QCOMPARE(records.size(), std::size_t(1));
        const std::string name = records[0].filename().string();
        QCOMPARE(name.size(), std::size_t(64));
        QVERIFY(name.find("alice") == std::string::npos && name.find("desk") == std::string::npos);
        struct stat sb {};
        QCOMPARE(::stat(records[0].c_str(), &sb), 0);
        QCOMPARE(sb.st_mode & 0777, 0600u);
        QCOMPARE(::stat((stateDir_ + "/seen").c_str(), &sb), 0);
        QCOMPARE(sb.st_mode & 0777, 0700u);
        auto st = openStore();
        auto secrets = *parcel::signIn(*st, "alice", password_);
        session::SeenVersions seen(stateDir_ + "/seen");
        QCOMPARE(seen.pathFor(secrets, "desk"), records[0].string());
        auto rec = seen.load(secrets, "desk");
        QVERIFY(rec);
        QCOMPARE(rec->version, std::uint64_t(3));
        QCOMPARE(rec->kiosk, std::string("gate-23"));
    }

    // The store hides version 3 (and points head at 2): an older copy than
    // this kiosk has seen. Refused, nothing written; back as it was, it
    // resumes again.
    void rollbackIsRefused() {
        const std::string v3 = versionFile(3), aside = dir_->file("v3");
        fs::rename(v3, aside);
        {
            auto st = openStore();
            QVERIFY(st->put("users/alice/parcels/desk/head", asBytes("2\n")).ok());
        }
        auto f = resumeRefused(session::FailureCause::StoreRolledBack);
        QCOMPARE(f.kind, session::ErrorKind::Corrupt);
        QVERIFY(f.served && f.seen);
        QCOMPARE(f.served->version, std::uint64_t(2));
        QCOMPARE(f.served->kiosk, std::string("gate-2"));
        QCOMPARE(f.seen->version, std::uint64_t(3));
        QCOMPARE(f.seen->kiosk, std::string("gate-23"));
        QVERIFY(!f.lastSave); // no "your last saved version is safe" about the older copy
        const QString text = ui::text::failure(f, QLocale::c());
        QVERIFY2(text.contains("older copy of your computer") && text.contains("gate-23") &&
                     text.contains("version 2") && text.contains("version 3"),
                 qPrintable(text));
        QVERIFY(f.detail.find("rolled back") != std::string::npos);

        // Replaying the old version's object under the newer name fails
        // its seal (bound to version 3): refused as damaged.
        fs::copy_file(versionFile(2), v3);
        resumeRefused(session::FailureCause::DamagedVersion);
        fs::remove(v3);

        fs::rename(aside, v3);
        resumePasses(3);
    }

    // The store serves another version 3 (another writer's, made while it
    // hid the one this kiosk saw): a different manifest for a version this
    // kiosk has seen. Then a version 4 on top of that fork: it does not
    // descend from the version 3 this kiosk saw.
    void forkIsRefused() {
        const std::string v3 = versionFile(3), aside = dir_->file("v3");
        fs::rename(v3, aside);
        QCOMPARE(commitAt(2, "gate-66", 66), std::uint64_t(3));
        auto f = resumeRefused(session::FailureCause::StoreForked);
        QCOMPARE(f.served->version, std::uint64_t(3));
        QCOMPARE(f.served->kiosk, std::string("gate-66"));
        QCOMPARE(f.seen->kiosk, std::string("gate-23"));
        QVERIFY2(ui::text::failure(f, QLocale::c()).contains("not the one this kiosk saw"),
                 qPrintable(ui::text::failure(f, QLocale::c())));

        QCOMPARE(commitAt(3, "gate-66", 67), std::uint64_t(4));
        f = resumeRefused(session::FailureCause::StoreForked);
        QCOMPARE(f.served->version, std::uint64_t(4));
        QVERIFY2(f.detail.find("does not descend") != std::string::npos, f.detail.c_str());

        // The honest history back: version 4 goes, the seen version 3 returns.
        fs::remove(versionFile(4));
        fs::remove(v3);
        fs::rename(aside, v3);
        {
            auto st = openStore();
            QVERIFY(st->put("users/alice/parcels/desk/head", asBytes("3\n")).ok());
        }
        resumePasses(3);
    }

    // Honest progress elsewhere (two versions by other kiosks) resumes, and
    // becomes what this kiosk has seen.
    void newerVersionsResume() {
        QCOMPARE(commitAt(3, "gate-5", 4), std::uint64_t(4));
        QCOMPARE(commitAt(4, "gate-5", 5), std::uint64_t(5));
        resumePasses(5);
        auto st = openStore();
        auto secrets = *parcel::signIn(*st, "alice", password_);
        auto rec = session::SeenVersions(stateDir_ + "/seen").load(secrets, "desk");
        QVERIFY(rec);
        QCOMPARE(rec->version, std::uint64_t(5));
        // And now version 4 as the newest is a rollback.
        fs::rename(versionFile(5), dir_->file("v5"));
        resumeRefused(session::FailureCause::StoreRolledBack);
        fs::rename(dir_->file("v5"), versionFile(5));
    }

    // Issue #16 item 7: a password change rotates the master key and
    // re-seals every version. The kiosk that saw version 5 still refuses
    // the store's rollback to version 4 (its record is keyed by what the
    // change keeps), and the re-sealed version 5 is the one it saw (the
    // plaintext, so the digest, is unchanged): no false "forked".
    void passwordChangeKeepsWhatWasSeen() {
        {
            auto st = openStore();
            auto changed = parcel::changePassword(*st, "alice", password_, "pw-2");
            QVERIFY2(changed.ok(), changed.ok() ? "" : changed.error().describe().c_str());
            QVERIFY(changed->finished && changed->versionsResealed >= 5);
        }
        password_ = "pw-2";
        fs::rename(versionFile(5), dir_->file("v5"));
        {
            auto st = openStore();
            QVERIFY(st->put("users/alice/parcels/desk/head", asBytes("4\n")).ok());
        }
        auto f = resumeRefused(session::FailureCause::StoreRolledBack);
        QCOMPARE(f.seen->version, std::uint64_t(5));
        fs::rename(dir_->file("v5"), versionFile(5));
        resumePasses(5);
    }

    // Issue #16 item 7, `isrctl user rekey` rewrites every version in place
    // under a new convergence secret. A kiosk that resumed version 5 while
    // a rekey was unfinished (the parcel was open elsewhere, so skipped)
    // recorded it under the new secret with its old digest; `--finish` then
    // rewrites version 5. That is the version it saw, not a fork: the
    // rewritten manifest names the digest it replaced (sealed, so the store
    // cannot make that up). A rollback is still refused afterwards.
    void rekeyRewritesWhatWasSeen() {
        parcel::LockInfo held;
        {
            auto st = openStore();
            parcel::Parcels p(*st, *parcel::signIn(*st, "alice", password_));
            auto attempt = p.lock("desk", "gate-9", false);
            QVERIFY(attempt.ok() && attempt->acquired);
            held = attempt->lock;
            auto started = parcel::rekeyUser(*st, "alice", password_);
            QVERIFY2(started.ok(), started.ok() ? "" : started.error().describe().c_str());
            QVERIFY(!started->finished);
            QCOMPARE(started->locked.size(), std::size_t(1));
            QVERIFY(p.unlock("desk", held).ok());
        }
        resumePasses(5); // recorded: version 5, under the new secret, old digest
        {
            auto st = openStore();
            auto finished = parcel::finishRekey(*st, "alice", password_);
            QVERIFY2(finished.ok(), finished.ok() ? "" : finished.error().describe().c_str());
            QVERIFY(finished->finished && finished->versionsRewritten >= 5);
        }
        resumePasses(5);
        fs::rename(versionFile(5), dir_->file("v5"));
        {
            auto st = openStore();
            QVERIFY(st->put("users/alice/parcels/desk/head", asBytes("4\n")).ok());
        }
        resumeRefused(session::FailureCause::StoreRolledBack);
        fs::rename(dir_->file("v5"), versionFile(5));
        resumePasses(5);
    }

    // A newest version made from the very version this kiosk saw is checked
    // by the digest it binds: the parent is not read again. Shown with a
    // store that put another, valid version 5 (a fork) under the version 6
    // made from the one this kiosk saw: read, it would be refused as a fork;
    // not read, version 6 -- the honest descendant of what this kiosk saw --
    // resumes. forkIsRefused's version 4 binds another version 3 and is
    // still read and refused.
    void seenParentIsNotReadAgain() {
        QCOMPARE(commitAt(5, "gate-7", 6), std::uint64_t(6));
        const std::string v5 = versionFile(5), v6 = versionFile(6);
        fs::rename(v6, dir_->file("v6"));
        fs::rename(v5, dir_->file("v5"));
        QCOMPARE(commitAt(4, "gate-66", 66), std::uint64_t(5));
        fs::rename(dir_->file("v6"), v6);
        {
            auto st = openStore();
            QVERIFY(st->put("users/alice/parcels/desk/head", asBytes("6\n")).ok());
        }
        resumePasses(6);
        fs::remove(v5);
        fs::rename(dir_->file("v5"), v5);
        resumePasses(6);
    }
};

QTEST_GUILESS_MAIN(TestSessionRollback)
#include "test_session_rollback.moc"
