// Issue #16 item 7: a password change rotates the master key. On a
// FileStore with the minimal KDF (seconds):
//  - the attack: the old account object and the old password open no
//    manifest the store holds once the rotation is finished;
//  - a kill at each rotation fault point (a forked child, SIGKILL) leaves
//    everything readable with the new password, and finishing completes it;
//  - a parcel locked by a session is skipped, its later commit under the old
//    master stays readable, and finishing later re-seals it; a kiosk that
//    signed in before the change is refused at lock and, once the old
//    master is gone, at commit;
//  - chains and a kiosk's records of the versions it saw survive;
//  - new S3 credentials replace the sealed ones; the account's format.
#include "parcel/parcel.h"
#include "session/seen_versions.h"
#include "store/counting_store.h"
#include "teststore.h"
#include "testsupport.h"
#include "util/fault.h"
#include "util/json.h"

#include <QFile>
#include <QTest>
#include <atomic>
#include <functional>
#include <map>
#include <random>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>

using namespace isr;
using namespace isr::parcel;

namespace {
constexpr const char* kOld = "old password";
constexpr const char* kNew = "new password";

std::string why(const Error& e) {
    return e.describe();
}
// The test's store with a hook run once, after the rotation's first
// re-sealed version is written: what other writers do meanwhile.
struct Counters {
    std::atomic<std::uint64_t> down{0}, up{0};
};
class HookStore : private Counters, public store::CountingStore {
public:
    HookStore(std::unique_ptr<store::Store> inner, std::function<void()> hook)
        : CountingStore(std::move(inner), down, up), hook_(std::move(hook)) {}
    Result<std::string> putIfMatch(const std::string& key, ByteView data,
                                   const std::string& expectedTag) override {
        auto r = CountingStore::putIfMatch(key, data, expectedTag);
        if (hook_ && key.find("/versions/") != std::string::npos)
            std::exchange(hook_, {})();
        return r;
    }

private:
    std::function<void()> hook_;
};
} // namespace

class TestKeyRotation : public QObject {
    Q_OBJECT
    std::unique_ptr<test::TestStore> ts_;
    store::Store* store_ = nullptr;
    int users_ = 0;

    std::string makeUser() {
        std::string user = "rot" + std::to_string(++users_);
        ts_->createUser(user, kOld);
        return user;
    }

    // Versions 1..3 of `parcel` (create, then two commits with data).
    void threeVersions(Parcels& p, const std::string& parcel) {
        VmSpec vm;
        auto m = p.create(parcel, vm, 1 << 20, 4096, "kiosk-a");
        if (!m.ok())
            qFatal("create: %s", why(m.error()).c_str());
        for (unsigned i = 0; i < 2; ++i)
            commitOn(p, parcel, i + 1);
    }

    // One commit on top of the latest version, one chunk of data.
    std::uint64_t commitOn(Parcels& p, const std::string& parcel, unsigned seed) {
        auto latest = p.latest(parcel);
        if (!latest.ok())
            qFatal("latest: %s", why(latest.error()).c_str());
        auto m = p.manifest(parcel, *latest);
        if (!m.ok())
            qFatal("manifest: %s", why(m.error()).c_str());
        Manifest next = *m;
        next.parent = next.version;
        next.created = 0;
        Bytes data(4096);
        std::mt19937 rng(seed);
        for (auto& b : data)
            b = std::uint8_t(rng());
        auto enc = chunk::encode(p.secrets().convergence.view(), data);
        next.disk[seed % next.disk.size()] = enc.ref;
        auto n = p.commit(parcel, next, {enc});
        if (!n.ok())
            qFatal("commit: %s", why(n.error()).c_str());
        return *n;
    }

    // Every version of every parcel, by plaintext digest.
    std::map<std::string, crypto::Hash> digests(Parcels& p) {
        std::map<std::string, crypto::Hash> out;
        auto names = p.list();
        if (!names.ok())
            qFatal("list: %s", why(names.error()).c_str());
        for (const auto& name : *names) {
            const auto versions = p.versions(name);
            if (!versions.ok())
                qFatal("versions: %s", why(versions.error()).c_str());
            for (auto n : *versions) {
                auto m = p.manifest(name, n);
                if (!m.ok())
                    qFatal("%s", why(m.error()).c_str());
                out[name + "/" + std::to_string(n)] = *m->digest;
            }
        }
        return out;
    }

    // How many of the user's versions open under exactly this master.
    std::size_t openUnder(const std::string& user, const crypto::Secret& master) {
        UserSecrets only;
        only.user = user;
        only.master = master.clone();
        only.convergence = crypto::Secret::random(crypto::kKeySize);
        Parcels p(*store_, std::move(only));
        std::size_t opened = 0;
        const auto names = p.list();
        if (!names.ok())
            qFatal("list: %s", why(names.error()).c_str());
        for (const auto& name : *names) {
            const auto versions = p.versions(name);
            if (!versions.ok())
                qFatal("versions: %s", why(versions.error()).c_str());
            for (auto n : *versions)
                opened += p.manifest(name, n).ok() ? 1 : 0;
        }
        return opened;
    }

    Result<AccountObject> account(const std::string& user) {
        auto raw = store_->get(accountKey(user));
        if (!raw.ok())
            return std::move(raw).error();
        return parseAccountObject(*raw);
    }

    void fsckClean(const std::string& user, const char* password) {
        auto s = signIn(*store_, user, password);
        QVERIFY2(s.ok(), s.ok() ? "" : why(s.error()).c_str());
        Parcels p(*store_, std::move(*s));
        auto report = fsckUser(p);
        QVERIFY(report.ok());
        QVERIFY2(report->clean(), report->clean() ? "" : report->problems.front().c_str());
    }

private slots:
    void initTestCase() {
        ts_ = test::TestStore::fromEnvironment();
        store_ = &ts_->store();
    }

    // The rotation itself, and the attack: keep a copy of the account
    // object from before the change, put it back after, sign in with the
    // old password -- and no manifest the store holds opens.
    void oldAccountOpensNothing() {
        const std::string user = makeUser();
        std::map<std::string, crypto::Hash> before;
        crypto::Secret oldMaster;
        {
            Parcels p = ts_->signedIn(user, kOld);
            threeVersions(p, "desk");
            threeVersions(p, "lab");
            before = digests(p);
            oldMaster = p.secrets().master.clone();
        }
        QCOMPARE(before.size(), std::size_t(6));
        const Bytes oldAccount = *store_->get(accountKey(user));

        auto report = changePassword(*store_, user, kOld, kNew);
        QVERIFY2(report.ok(), report.ok() ? "" : why(report.error()).c_str());
        QVERIFY(report->finished);
        QCOMPARE(report->versionsResealed, std::uint64_t(6));
        QCOMPARE(report->parcels, std::uint64_t(2));
        QVERIFY(report->locked.empty() && report->unreadable.empty());

        QCOMPARE(signIn(*store_, user, kOld).error().code, Errc::AuthFailed);
        auto s = signIn(*store_, user, kNew);
        QVERIFY(s.ok());
        QVERIFY(!crypto::equalConstantTime(s->master.view(), oldMaster.view()));
        QVERIFY(s->previousMasters.empty());
        auto acc = account(user);
        QVERIFY(acc.ok());
        QCOMPARE(acc->masterId, masterId(s->master));
        QVERIFY(acc->previousMasterIds.empty());
        QVERIFY(asString(*store_->get(accountKey(user))).find("\"format\":1") != std::string::npos);
        {
            // Same plaintexts (so chains and kiosks' records hold), new seals.
            Parcels p(*store_, std::move(*s));
            QVERIFY(digests(p) == before);
            auto top = p.manifest("desk", 3);
            QVERIFY(top.ok());
            auto chain = p.verifyChain("desk", *top, 1, 8);
            QVERIFY2(chain.ok(), chain.ok() ? "" : why(chain.error()).c_str());
            QCOMPARE(chain->size(), std::size_t(3));
            QVERIFY(p.readChunk(*top->disk[2]).ok()); // chunks untouched
        }
        QCOMPARE(openUnder(user, oldMaster), std::size_t(0));

        // The old object put back (a store that kept a copy, or an attacker
        // with write access): the old password opens it -- and nothing else.
        const Bytes newAccount = *store_->get(accountKey(user));
        QVERIFY(store_->put(accountKey(user), oldAccount).ok());
        auto stale = signIn(*store_, user, kOld);
        QVERIFY(stale.ok());
        {
            Parcels p(*store_, std::move(*stale));
            for (const auto& name : {"desk", "lab"})
                for (std::uint64_t n = 1; n <= 3; ++n)
                    QCOMPARE(p.manifest(name, n).error().code, Errc::Corrupt);
        }
        QVERIFY(store_->put(accountKey(user), newAccount).ok());
        fsckClean(user, kNew);
    }

    // A kill (SIGKILL, no cleanup) at each rotation point: the new
    // password signs in and opens every version, the old one nothing;
    // finishing completes it and drops the previous masters.
    void killAtEachPoint_data() {
        QTest::addColumn<QString>("spec");
        QTest::addColumn<bool>("someLeft"); // versions still under the old master
        QTest::newRow("after-account") << "parcel.rotate.after-account" << true;
        QTest::newRow("first reseal") << "parcel.rotate.reseal@1" << true;
        QTest::newRow("fourth reseal") << "parcel.rotate.reseal@4" << true;
        QTest::newRow("before-finish") << "parcel.rotate.before-finish" << false;
        QTest::newRow("a version's file rename") << "store.file.before-rename@2" << true;
    }
    void killAtEachPoint() {
        QFETCH(QString, spec);
        QFETCH(bool, someLeft);
        if (ts_->url().rfind("file://", 0) != 0)
            QSKIP("forks a child: FileStore only");
        const std::string user = makeUser();
        std::map<std::string, crypto::Hash> before;
        crypto::Secret oldMaster;
        {
            Parcels p = ts_->signedIn(user, kOld);
            threeVersions(p, "desk");
            threeVersions(p, "lab");
            before = digests(p);
            oldMaster = p.secrets().master.clone();
        }
        const pid_t child = ::fork();
        QVERIFY(child >= 0);
        if (child == 0) {
            if (!fault::arm(spec.toStdString()).ok()) // kill is the default mode
                ::_exit(3);
            auto r = changePassword(*store_, user, kOld, kNew);
            ::_exit(r.ok() ? 0 : 4);
        }
        int status = 0;
        QCOMPARE(::waitpid(child, &status, 0), child);
        QVERIFY2(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                 qPrintable("child status " + QString::number(status)));

        QCOMPARE(signIn(*store_, user, kOld).error().code, Errc::AuthFailed);
        auto s = signIn(*store_, user, kNew);
        QVERIFY2(s.ok(), s.ok() ? "" : why(s.error()).c_str());
        QCOMPARE(s->previousMasters.size(), std::size_t(1));
        QVERIFY(crypto::equalConstantTime(s->previousMasters[0].view(), oldMaster.view()));
        QCOMPARE(account(user)->previousMasterIds.size(), std::size_t(1));
        {
            Parcels p(*store_, std::move(*s));
            QVERIFY(digests(p) == before); // every version opens, unchanged
        }
        QCOMPARE(openUnder(user, oldMaster) > 0, someLeft);
        fsckClean(user, kNew);

        auto finished = finishKeyRotation(*store_, user, kNew);
        QVERIFY2(finished.ok(), finished.ok() ? "" : why(finished.error()).c_str());
        QVERIFY(finished->finished);
        QCOMPARE(finished->versionsResealed + finished->versionsAlreadyNew, std::uint64_t(6));
        auto done = signIn(*store_, user, kNew);
        QVERIFY(done.ok());
        QVERIFY(done->previousMasters.empty());
        QVERIFY(account(user)->previousMasterIds.empty());
        QCOMPARE(openUnder(user, oldMaster), std::size_t(0));
        QCOMPARE(openUnder(user, done->master), std::size_t(6));
        fsckClean(user, kNew);
        // Nothing left: finishing again is a no-op.
        auto again = finishKeyRotation(*store_, user, kNew);
        QVERIFY(again.ok() && again->finished && again->versionsResealed == 0);
    }

    // A session holds one parcel's lock during the change. That parcel is
    // skipped; the session commits under the master it signed in with and
    // the version stays readable; a kiosk that signed in before the change
    // cannot lock another parcel; finishing after the session left
    // re-seals the rest, and then the old master can commit nothing.
    void lockedParcelIsSkippedThenFinished() {
        const std::string user = makeUser();
        {
            Parcels p = ts_->signedIn(user, kOld);
            threeVersions(p, "open");
            threeVersions(p, "idle");
        }
        Parcels kiosk = ts_->signedIn(user, kOld); // signed in before the change
        auto lock = kiosk.lock("open", "gate-7", false);
        QVERIFY(lock.ok() && lock->acquired);
        LockInfo mine = lock->lock;

        auto report = changePassword(*store_, user, kOld, kNew);
        QVERIFY2(report.ok(), report.ok() ? "" : why(report.error()).c_str());
        QVERIFY(!report->finished);
        QCOMPARE(report->locked.size(), std::size_t(1));
        QCOMPARE(report->locked[0].first, std::string("open"));
        QCOMPARE(report->locked[0].second.kiosk, std::string("gate-7"));
        QCOMPARE(report->versionsResealed, std::uint64_t(3)); // idle's
        QCOMPARE(account(user)->previousMasterIds.size(), std::size_t(1));
        // An older isr refuses the account while the rotation is unfinished.
        QVERIFY(asString(*store_->get(accountKey(user))).find("\"format\":2") != std::string::npos);

        // The session saves under its (old) master: allowed, and readable.
        QVERIFY(kiosk.confirmLock("open", mine).ok());
        QCOMPARE(commitOn(kiosk, "open", 9), std::uint64_t(4));
        // Another parcel, with the keys from before the change: sign in again.
        auto other = kiosk.lock("idle", "gate-7", false);
        QVERIFY(!other.ok());
        QCOMPARE(other.error().code, Errc::AuthFailed);
        QVERIFY(!kiosk.readLock("idle")->has_value()); // nothing left behind
        {
            Parcels now = ts_->signedIn(user, kNew);
            auto v4 = now.manifest("open", 4);
            QVERIFY2(v4.ok(), v4.ok() ? "" : why(v4.error()).c_str());
            QCOMPARE(v4->kiosk, std::string("kiosk-a"));
            // Still locked: finishing does what it can and says so.
            auto partial = finishKeyRotation(*store_, user, kNew);
            QVERIFY(partial.ok() && !partial->finished && partial->locked.size() == 1);
        }
        QVERIFY(kiosk.unlock("open", mine).ok());

        auto finished = finishKeyRotation(*store_, user, kNew);
        QVERIFY2(finished.ok(), finished.ok() ? "" : why(finished.error()).c_str());
        QVERIFY(finished->finished);
        QCOMPARE(finished->versionsResealed, std::uint64_t(4));
        QCOMPARE(openUnder(user, kiosk.secrets().master), std::size_t(0));
        QVERIFY(account(user)->previousMasterIds.empty());
        // The old keys now lock nothing and commit nothing.
        QCOMPARE(kiosk.lock("open", "gate-7", false).error().code, Errc::AuthFailed);
        Parcels now = ts_->signedIn(user, kNew);
        auto v4 = now.manifest("open", 4);
        QVERIFY(v4.ok());
        Manifest next = *v4;
        next.parent = 4;
        auto late = kiosk.commit("open", next, {});
        QVERIFY(!late.ok());
        QCOMPARE(late.error().code, Errc::AuthFailed);
        const auto versions = now.versions("open");
        QVERIFY(versions.ok() && versions->back() == 4);
        fsckClean(user, kNew);
    }

    // Writers during the rotation. A session that held `lab` since before
    // the change commits under the old master and releases the lock while
    // the rotation works on `desk`; a writer signed in before the change
    // creates a parcel. The rotation reads each lock before listing that
    // parcel's versions and lists the parcels again at the end, so both
    // new versions are re-sealed and it finishes with nothing under the old
    // master.
    void writersDuringRotation() {
        if (ts_->url().rfind("file://", 0) != 0)
            QSKIP("opens a second FileStore on the test store's directory");
        const std::string user = makeUser();
        Parcels early = ts_->signedIn(user, kOld);
        threeVersions(early, "desk");
        threeVersions(early, "lab");
        auto lock = early.lock("lab", "gate-3", false);
        QVERIFY(lock.ok() && lock->acquired);
        LockInfo mine = lock->lock;
        bool hookRan = false;
        auto inner = store::openStore(ts_->url());
        QVERIFY(inner.ok());
        HookStore hooked(std::move(*inner), [&] {
            hookRan = true;
            if (commitOn(early, "lab", 5) != 4 || !early.unlock("lab", mine).ok())
                qFatal("the session's save failed");
            VmSpec vm;
            auto late = early.create("late", vm, 1 << 20, 4096, "isrctl");
            if (!late.ok())
                qFatal("create: %s", why(late.error()).c_str());
        });
        auto report = changePassword(hooked, user, kOld, kNew);
        QVERIFY2(report.ok(), report.ok() ? "" : why(report.error()).c_str());
        QVERIFY(hookRan);
        QVERIFY(report->finished);
        QVERIFY(report->locked.empty());
        QCOMPARE(report->parcels, std::uint64_t(3));
        QCOMPARE(report->versionsResealed, std::uint64_t(8));
        auto s = signIn(*store_, user, kNew);
        QVERIFY(s.ok() && s->previousMasters.empty());
        QCOMPARE(openUnder(user, s->master), std::size_t(8));
        QCOMPARE(openUnder(user, early.secrets().master), std::size_t(0));
        fsckClean(user, kNew);
    }

    // A kiosk's record of the newest version it saw survives the change
    // (keyed by the convergence secret, which the change keeps), and a
    // record an older kiosk wrote under the master is still read -- and
    // moved to the new name at the next record.
    void seenVersionsSurviveRotation() {
        const std::string user = makeUser();
        test::TempDir dir;
        session::SeenVersions seen(dir.file("seen"));
        session::SeenVersion v3;
        {
            Parcels p = ts_->signedIn(user, kOld);
            threeVersions(p, "desk");
            auto m = p.manifest("desk", 3);
            v3 = {3, *m->digest, m->created, m->kiosk};
            QVERIFY(seen.recordLegacy(p.secrets().master, user, "desk", v3).ok());
            auto legacy = seen.load(p.secrets(), "desk");
            QVERIFY(legacy && legacy->version == 3 && legacy->digest == v3.digest);
        }
        QVERIFY(changePassword(*store_, user, kOld, kNew).ok());
        Parcels p = ts_->signedIn(user, kNew);
        // The legacy record was under the old master, which is gone: after
        // a finished rotation it is no longer found...
        QVERIFY(!seen.load(p.secrets(), "desk"));
        // ...which is why records are keyed by the convergence secret now.
        QVERIFY(seen.record(p.secrets(), "desk", v3).ok());
        QVERIFY(changePassword(*store_, user, kNew, "third password").ok());
        Parcels q = ts_->signedIn(user, "third password");
        auto kept = seen.load(q.secrets(), "desk");
        QVERIFY(kept);
        QCOMPARE(kept->version, std::uint64_t(3));
        QVERIFY(kept->digest == v3.digest);
        // And the manifest the kiosk saw is the same plaintext after the
        // rotation: no false "forked".
        QVERIFY(*q.manifest("desk", 3)->digest == v3.digest);

        // An old-name record under a previous master (rotation unfinished)
        // is read, and record() moves it.
        Parcels kiosk = ts_->signedIn(user, "third password");
        auto lock = kiosk.lock("desk", "gate-1", false);
        QVERIFY(lock.ok() && lock->acquired);
        QVERIFY(changePassword(*store_, user, "third password", "fourth").ok());
        Parcels r = ts_->signedIn(user, "fourth");
        QCOMPARE(r.secrets().previousMasters.size(), std::size_t(1));
        test::TempDir dir2;
        session::SeenVersions older(dir2.file("seen"));
        QVERIFY(older.recordLegacy(r.secrets().previousMasters[0], user, "desk", v3).ok());
        const std::string legacyPath =
            older.legacyPathFor(r.secrets().previousMasters[0], user, "desk");
        QVERIFY(QFile::exists(QString::fromStdString(legacyPath)));
        auto viaPrevious = older.load(r.secrets(), "desk");
        QVERIFY(viaPrevious && viaPrevious->version == 3);
        QVERIFY(older.record(r.secrets(), "desk", v3).ok());
        QVERIFY(!QFile::exists(QString::fromStdString(legacyPath)));
        QVERIFY(QFile::exists(QString::fromStdString(older.pathFor(r.secrets(), "desk"))));
        QVERIFY(kiosk.unlock("desk", lock->lock).ok());
        QVERIFY(finishKeyRotation(*store_, user, "fourth")->finished);
    }

    // New S3 write credentials replace the sealed ones; the old ones are
    // kept when none are given.
    void s3CredentialsAreReplaced() {
        const std::string user = "rot-s3";
        QVERIFY(createAccount(*store_, user, kOld, {"OLDACCESS", "oldsecret"}).ok());
        QVERIFY(changePassword(*store_, user, kOld, kNew).ok());
        QCOMPARE(signIn(*store_, user, kNew)->s3.accessKey, std::string("OLDACCESS"));
        PasswordChangeOptions options;
        options.s3 = store::Credentials{"NEWACCESS", "newsecret"};
        QVERIFY(changePassword(*store_, user, kNew, "x", options).ok());
        auto s = signIn(*store_, user, "x");
        QCOMPARE(s->s3.accessKey, std::string("NEWACCESS"));
        QCOMPARE(s->s3.secretKey, std::string("newsecret"));
        options.s3 = store::Credentials{"HALF", ""};
        QCOMPARE(changePassword(*store_, user, "x", "y", options).error().code,
                 Errc::InvalidArgument);
        QVERIFY(signIn(*store_, user, "x").ok()); // nothing changed
    }

    // The account object: format 2 exactly while previous masters are
    // named; clear names that do not match the sealed keys are refused.
    void accountFormat() {
        AccountObject a;
        a.user = "x";
        a.kdf = crypto::KdfParams::minimal();
        a.kdf.salt.assign(crypto::kSaltSize, 7);
        a.sealed = Bytes(40, 1);
        a.masterId = std::string(32, 'a');
        std::string one = encodeAccountObject(a);
        QVERIFY(one.find("\"format\":1") != std::string::npos);
        a.previousMasterIds = {std::string(32, 'b')};
        std::string two = encodeAccountObject(a);
        QVERIFY(two.find("\"format\":2") != std::string::npos);
        auto parsed = parseAccountObject(asBytes(two));
        QVERIFY(parsed.ok());
        QVERIFY(parsed->previousMasterIds == a.previousMasterIds);
        QCOMPARE(parsed->masterId, a.masterId);
        // format 2 without previous ids (checksum fixed up): corrupt.
        auto doc = json::parse(two);
        json::Object fields = doc->asObject();
        fields.erase("previous_master_ids");
        fields.erase("check");
        fields["check"] = toHex(crypto::hash(asBytes(json::Value(fields).dump())));
        QCOMPARE(parseAccountObject(asBytes(json::Value(fields).dump())).error().code,
                 Errc::Corrupt);

        // A store that edits the clear names: sign-in says corrupt.
        const std::string user = makeUser();
        auto acc = account(user);
        QVERIFY(acc.ok());
        AccountObject edited = *acc;
        edited.masterId = std::string(32, 'c');
        QVERIFY(store_->put(accountKey(user), asBytes(encodeAccountObject(edited))).ok());
        QCOMPARE(signIn(*store_, user, kOld).error().code, Errc::Corrupt);
        QVERIFY(store_->put(accountKey(user), asBytes(encodeAccountObject(*acc))).ok());
        QVERIFY(signIn(*store_, user, kOld).ok());
    }
};

QTEST_GUILESS_MAIN(TestKeyRotation)
#include "test_key_rotation.moc"
