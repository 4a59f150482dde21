// The parcel layer against a real store backend (ISR_TEST_STORE_BACKEND:
// "file" for FileStore in a temp dir, "s3" for S3Store on a real radosgw).
// Accounts, versions, commit races, locks, rollback, import/export, gc, fsck,
// and every way the store's objects can be damaged.
#include "parcel/parcel.h"
#include "teststore.h"
#include "testsupport.h"

#include <QElapsedTimer>
#include <QTest>
#include <QThread>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace isr::parcel;

namespace {
constexpr const char* kPassword = "correct horse";

Bytes randomData(std::size_t n, unsigned seed) {
    Bytes b(n);
    std::mt19937 rng(seed);
    for (auto& x : b)
        x = std::uint8_t(rng());
    return b;
}

std::string describe(const Error& e) {
    return e.describe();
}

// Sets (value) or unsets (nullptr) an environment variable for a scope.
class EnvGuard {
public:
    EnvGuard(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name))
            old_ = old;
        if (value)
            ::setenv(name, value, 1);
        else
            ::unsetenv(name);
    }
    ~EnvGuard() {
        if (old_)
            ::setenv(name_, old_->c_str(), 1);
        else
            ::unsetenv(name_);
    }
    EnvGuard(const EnvGuard&) = delete;
    EnvGuard& operator=(const EnvGuard&) = delete;

private:
    const char* name_;
    std::optional<std::string> old_;
};
} // namespace

class TestParcel : public QObject {
    Q_OBJECT
    std::unique_ptr<test::TestStore> ts_;
    store::Store* store_ = nullptr;
    int userCounter_ = 0;

    std::string newUser() { return "u" + std::to_string(++userCounter_); }

    Parcels signedIn(const std::string& user) { return ts_->signedIn(user, kPassword); }

    std::string makeUser() {
        std::string user = newUser();
        ts_->createUser(user, kPassword);
        return user;
    }

    // A parcel with a 1 MiB disk of 4 KiB chunks holding some data.
    Manifest smallParcel(Parcels& p, const std::string& parcel,
                         std::vector<Bytes>* contents = nullptr) {
        VmSpec vm;
        auto created = p.create(parcel, vm, 1 << 20, 4096, "kiosk-a");
        if (!created.ok())
            qFatal("create: %s", created.error().describe().c_str());
        Manifest m = *created;
        m.parent = m.version;
        std::vector<chunk::EncodedChunk> fresh;
        for (std::size_t i : {0u, 1u, 7u, 255u}) {
            Bytes data = randomData(4096, unsigned(i));
            auto enc = chunk::encode(p.secrets().convergence.view(), data);
            m.disk[i] = enc.ref;
            fresh.push_back(enc);
            if (contents)
                contents->push_back(data);
        }
        auto n = p.commit(parcel, m, fresh);
        if (!n.ok())
            qFatal("commit: %s", n.error().describe().c_str());
        return m;
    }

    void flipByte(const std::string& key, std::size_t pos) {
        auto data = store_->get(key);
        QVERIFY(data.ok());
        QVERIFY(!data->empty());
        (*data)[pos % data->size()] ^= 0x40;
        QVERIFY(store_->put(key, *data).ok());
    }

private slots:
    void initTestCase() {
        ts_ = test::TestStore::fromEnvironment();
        store_ = &ts_->store();
        QVERIFY(checkStore(*store_).ok());
    }

    // ---- store marker ----
    void notAStoreIsRefusedWithAHint() {
        auto other = ts_->emptyLocation();
        auto st = checkStore(*other);
        QVERIFY(!st.ok());
        QCOMPARE(st.error().code, Errc::NotFound);
        QVERIFY(st.error().message.find("isrctl store init") != std::string::npos);
        QCOMPARE(createAccount(*other, "x", "pw").error().code, Errc::NotFound);
    }
    void initTwiceIsRefused() {
        QCOMPARE(initStore(*store_, crypto::KdfParams::minimal()).error().code,
                 Errc::AlreadyExists);
    }
    void newerStoreFormatIsRefused() {
        auto other = ts_->emptyLocation();
        QVERIFY(other->put("isr-store.json", asBytes("{\"format\":99,\"created\":0}")).ok());
        QCOMPARE(checkStore(*other).error().code, Errc::Unsupported);
    }

    // ---- accounts ----
    void signInWorksAndKeysAreStable() {
        std::string user = makeUser();
        auto a = signIn(*store_, user, kPassword);
        auto b = signIn(*store_, user, kPassword);
        QVERIFY(a.ok() && b.ok());
        QVERIFY(crypto::equalConstantTime(a->master.view(), b->master.view()));
        QVERIFY(!crypto::equalConstantTime(a->master.view(), a->convergence.view()));
    }
    void wrongPasswordAndUnknownUserLookTheSame() {
        std::string user = makeUser();
        auto wrong = signIn(*store_, user, "not it");
        auto unknown = signIn(*store_, "nobody-here", kPassword);
        auto invalid = signIn(*store_, "../etc", kPassword);
        QVERIFY(!wrong.ok() && !unknown.ok() && !invalid.ok());
        QCOMPARE(wrong.error().code, Errc::AuthFailed);
        QCOMPARE(unknown.error().code, Errc::AuthFailed);
        QCOMPARE(invalid.error().code, Errc::AuthFailed);
        QCOMPARE(wrong.error().message, unknown.error().message);
    }
    void duplicateUserRefused() {
        std::string user = makeUser();
        QCOMPARE(createAccount(*store_, user, "other").error().code, Errc::AlreadyExists);
        QVERIFY(signIn(*store_, user, kPassword).ok()); // the first account is untouched
    }
    void changePasswordKeepsData() {
        std::string user = makeUser();
        {
            Parcels p = signedIn(user);
            smallParcel(p, "keep");
        }
        QVERIFY(changePassword(*store_, user, kPassword, "new secret").ok());
        QCOMPARE(signIn(*store_, user, kPassword).error().code, Errc::AuthFailed);
        auto s = signIn(*store_, user, "new secret");
        QVERIFY(s.ok());
        Parcels p(*store_, std::move(*s));
        auto m = p.manifest("keep", 2);
        QVERIFY2(m.ok(), m.ok() ? "" : describe(m.error()).c_str());
        QVERIFY(p.readChunk(*m->disk[7]).ok());
        QCOMPARE(changePassword(*store_, user, "wrong", "x").error().code, Errc::AuthFailed);
    }
    void damagedAccountIsReported() {
        std::string user = makeUser();
        std::string key = accountKey(user);
        auto original = store_->get(key);
        QVERIFY(original.ok());
        // A flipped byte anywhere: never a successful sign-in.
        for (std::size_t pos : {std::size_t(2), original->size() / 2, original->size() - 3}) {
            QVERIFY(store_->put(key, *original).ok());
            flipByte(key, pos);
            auto r = signIn(*store_, user, kPassword);
            QVERIFY(!r.ok());
            QVERIFY2(r.error().code == Errc::Corrupt || r.error().code == Errc::AuthFailed,
                     describe(r.error()).c_str());
            if (r.error().code == Errc::Corrupt)
                QVERIFY(r.error().message.find(user) != std::string::npos);
        }
        QVERIFY(store_->put(key, Bytes{}).ok());
        QCOMPARE(signIn(*store_, user, kPassword).error().code, Errc::Corrupt);
        QVERIFY(store_->put(key, ByteView(original->data(), original->size() / 2)).ok());
        QCOMPARE(signIn(*store_, user, kPassword).error().code, Errc::Corrupt);
        QVERIFY(store_->put(key, *original).ok());
        QVERIFY(signIn(*store_, user, kPassword).ok());
    }
    void accountAskingForAbsurdKdfIsRefused() {
        std::string user = makeUser();
        std::string key = accountKey(user);
        auto doc = json::parse(asString(*store_->get(key)));
        QVERIFY(doc.ok());
        json::Object o = doc->asObject();
        json::Object kdf = o["kdf"].asObject();
        kdf["mem"] = std::int64_t(1) << 40; // 1 TiB: a denial of service on the kiosk
        o["kdf"] = kdf;
        // Recompute the clear checksum as an attacker could.
        o.erase("check");
        o["check"] = toHex(crypto::hash(asBytes(json::Value(o).dump())));
        QVERIFY(store_->put(key, asBytes(json::Value(o).dump())).ok());
        auto r = signIn(*store_, user, kPassword);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Corrupt);
    }

    // Issue #16 item 6: the store does not control the hashing strength.
    void hostileStoreDefaultsAreClampedToTheFloor() {
        // Without the test suite's weak-KDF option, as on a kiosk.
        EnvGuard strict(crypto::kInsecureTestKdfEnv, nullptr);
        auto other = ts_->emptyLocation();
        QVERIFY(other
                    ->put("isr-store.json",
                          asBytes(R"({"format":1,"created":0,"kdf":{"ops":1,"mem":8192}})"))
                    .ok());
        auto defaults = storeDefaultKdf(*other);
        QVERIFY2(defaults.ok(), defaults.ok() ? "" : defaults.error().describe().c_str());
        QVERIFY(defaults->opsLimit >= crypto::kKdfFloorOps);
        QVERIFY(defaults->memLimit >= crypto::kKdfFloorMem);
        QVERIFY(createAccount(*other, "victim", kPassword).ok());
        auto account = parseAccountObject(*other->get(accountKey("victim")));
        QVERIFY(account.ok());
        QVERIFY(account->kdf.opsLimit >= crypto::kKdfFloorOps);
        QVERIFY(account->kdf.memLimit >= crypto::kKdfFloorMem);
        // A store asking for more than the ceiling is brought down to it.
        QVERIFY(other
                    ->put("isr-store.json",
                          asBytes(R"({"format":1,"created":0,"kdf":{"ops":64,"mem":4294967296}})"))
                    .ok());
        defaults = storeDefaultKdf(*other);
        QVERIFY(defaults.ok());
        QCOMPARE(defaults->opsLimit, crypto::kKdfCeilingOps);
        QCOMPARE(defaults->memLimit, crypto::kKdfCeilingMem);
        // A new store cannot be made below the floor either.
        QCOMPARE(initStore(*ts_->emptyLocation(), crypto::KdfParams::minimal()).error().code,
                 Errc::InvalidArgument);
    }
    void accountAskingAboveTheCeilingIsRefusedQuickly() {
        std::string user = makeUser();
        std::string key = accountKey(user);
        auto account = parseAccountObject(*store_->get(key));
        QVERIFY(account.ok());
        account->kdf.opsLimit = 64;
        account->kdf.memLimit = 4ull << 30; // 64 passes x 4 GiB: minutes per sign-in
        QVERIFY(store_->put(key, asBytes(encodeAccountObject(*account))).ok());
        QElapsedTimer timer;
        timer.start();
        auto r = signIn(*store_, user, kPassword);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Corrupt);
        QVERIFY2(r.error().message.find("ceiling") != std::string::npos, r.error().message.c_str());
        QVERIFY2(timer.elapsed() < 2000, "refused only after the work");
    }
    void accountBelowTheFloorIsRefusedOutsideTests() {
        std::string user = makeUser(); // the suite's minimal limits
        EnvGuard strict(crypto::kInsecureTestKdfEnv, nullptr);
        auto r = signIn(*store_, user, kPassword);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Corrupt);
        QVERIFY2(r.error().message.find("floor") != std::string::npos, r.error().message.c_str());
    }

    // ---- versions and commit ----
    void createCommitAndRead() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        std::vector<Bytes> contents;
        smallParcel(p, "desk", &contents);
        QCOMPARE(*p.latest("desk"), std::uint64_t(2));
        QCOMPARE(p.versions("desk")->size(), std::size_t(2));
        auto m = p.manifest("desk", 2);
        QVERIFY(m.ok());
        QCOMPARE(*p.readChunk(*m->disk[7]), contents[2]);
        QVERIFY(!m->disk[2].has_value());
        QCOMPARE(*p.list(), std::vector<std::string>{"desk"});
        QCOMPARE(p.create("desk", VmSpec{}, 1 << 20, 4096, "k").error().code, Errc::AlreadyExists);
    }
    void concurrentCommitHasOneWinner() {
        std::string user = makeUser();
        Parcels a = signedIn(user);
        Parcels b = signedIn(user);
        Manifest base = smallParcel(a, "race");
        base.parent = 2;
        Manifest ma = base, mb = base;
        ma.kiosk = "kiosk-a";
        mb.kiosk = "kiosk-b";
        Result<std::uint64_t> ra = Error(), rb = Error();
        std::thread ta([&] { ra = a.commit("race", ma, {}); });
        std::thread tb([&] { rb = b.commit("race", mb, {}); });
        ta.join();
        tb.join();
        QVERIFY(ra.ok() != rb.ok());
        const Error& loser = ra.ok() ? rb.error() : ra.error();
        QCOMPARE(loser.code, Errc::Conflict);
        auto m3 = a.manifest("race", 3);
        QVERIFY(m3.ok());
        QCOMPARE(m3->kiosk, ra.ok() ? std::string("kiosk-a") : std::string("kiosk-b"));
        QVERIFY(a.manifest("race", 2).ok());
    }
    // A commit retried after its answer was lost (the version landed, the
    // reply did not) finds its own version and succeeds; a different
    // manifest for the same version is still a conflict.
    void retriedCommitIsIdempotent() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        Manifest base = smallParcel(p, "retry");
        base.parent = 2;
        base.kiosk = "kiosk-a";
        base.created = 0;
        Manifest first = base;
        auto n1 = p.commit("retry", first, {});
        QVERIFY(n1.ok());
        Manifest again = base; // created = 0 again: a later time stamp
        QThread::sleep(1);
        auto n2 = p.commit("retry", again, {});
        QVERIFY2(n2.ok(), n2.ok() ? "" : n2.error().describe().c_str());
        QCOMPARE(*n2, *n1);
        QCOMPARE(again.created, first.created);
        Manifest other = base;
        other.kiosk = "kiosk-b";
        auto n3 = p.commit("retry", other, {});
        QVERIFY(!n3.ok());
        QCOMPARE(n3.error().code, Errc::Conflict);
        QCOMPARE(*p.latest("retry"), std::uint64_t(3));
    }
    void headIsOnlyAHint() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        smallParcel(p, "hint");
        // Rolled back, damaged and missing heads all still find version 2.
        for (const char* head : {"1\n", "garbage", "99\n"}) {
            QVERIFY(store_->put(headKey(user, "hint"), asBytes(head)).ok());
            QCOMPARE(*p.latest("hint"), std::uint64_t(2));
        }
        QVERIFY(store_->remove(headKey(user, "hint")).ok());
        QCOMPARE(*p.latest("hint"), std::uint64_t(2));
    }
    void damagedManifestIsNamed() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        smallParcel(p, "dm");
        std::string key = versionKey(user, "dm", 2);
        auto original = *store_->get(key);
        flipByte(key, original.size() / 2);
        auto r = p.manifest("dm", 2);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Corrupt);
        QVERIFY(r.error().message.find(key) != std::string::npos);
        QVERIFY(store_->put(key, ByteView(original.data(), 10)).ok());
        QCOMPARE(p.manifest("dm", 2).error().code, Errc::Corrupt);
        QVERIFY(store_->put(key, Bytes{}).ok());
        QCOMPARE(p.manifest("dm", 2).error().code, Errc::Corrupt);
        QVERIFY(p.manifest("dm", 1).ok()); // the other version is untouched
    }
    void swappedManifestIsRefused() {
        // A valid manifest of the same user moved to another version or
        // parcel fails its associated data.
        std::string user = makeUser();
        Parcels p = signedIn(user);
        smallParcel(p, "one");
        smallParcel(p, "two");
        auto v1 = *store_->get(versionKey(user, "one", 1));
        QVERIFY(store_->put(versionKey(user, "one", 2), v1).ok());
        QCOMPARE(p.manifest("one", 2).error().code, Errc::Corrupt);
        auto other = *store_->get(versionKey(user, "two", 2));
        QVERIFY(store_->put(versionKey(user, "one", 2), other).ok());
        QCOMPARE(p.manifest("one", 2).error().code, Errc::Corrupt);
    }
    void otherUsersManifestIsRefused() {
        std::string alice = makeUser(), mallory = makeUser();
        Parcels pa = signedIn(alice);
        Parcels pm = signedIn(mallory);
        smallParcel(pa, "p");
        smallParcel(pm, "p");
        auto m = *store_->get(versionKey(mallory, "p", 2));
        QVERIFY(store_->put(versionKey(alice, "p", 2), m).ok());
        QCOMPARE(pa.manifest("p", 2).error().code, Errc::Corrupt);
    }
    void damagedChunkIsNamed() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        Manifest m = smallParcel(p, "dc");
        std::string key = chunkKey(user, m.disk[1]->name);
        auto original = *store_->get(key);
        flipByte(key, 40);
        auto r = p.readChunk(*m.disk[1]);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Corrupt);
        QVERIFY(r.error().message.find(chunk::nameHex(m.disk[1]->name)) != std::string::npos);
        QVERIFY(store_->put(key, Bytes{}).ok());
        QCOMPARE(p.readChunk(*m.disk[1]).error().code, Errc::Corrupt);
        QVERIFY(store_->put(key, ByteView(original.data(), original.size() - 1)).ok());
        QCOMPARE(p.readChunk(*m.disk[1]).error().code, Errc::Corrupt);
        // Another valid chunk of the same user under this name.
        auto otherChunk = *store_->get(chunkKey(user, m.disk[7]->name));
        QVERIFY(store_->put(key, otherChunk).ok());
        QCOMPARE(p.readChunk(*m.disk[1]).error().code, Errc::Corrupt);
        QVERIFY(store_->remove(key).ok());
        QCOMPARE(p.readChunk(*m.disk[1]).error().code, Errc::NotFound);
    }
    void rollbackMakesANewEqualVersion() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        Manifest v2 = smallParcel(p, "rb");
        Manifest m = v2;
        m.parent = 2;
        m.disk[7].reset();
        QCOMPARE(*p.commit("rb", m, {}), std::uint64_t(3));
        auto n = p.rollback("rb", 2, "kiosk-b");
        QVERIFY(n.ok());
        QCOMPARE(*n, std::uint64_t(4));
        auto m4 = p.manifest("rb", 4);
        QVERIFY(m4.ok());
        QCOMPARE(m4->parent, std::uint64_t(3));
        QVERIFY(m4->disk[7].has_value());
        QVERIFY(m4->disk[7]->name == v2.disk[7]->name);
        QCOMPARE(p.rollback("rb", 9, "k").error().code, Errc::NotFound);
    }
    // ---- the chain (FORMAT.md, "Chain") ----
    // Every version after the first binds its parent's manifest; a rollback
    // (a new version equal to an old one) binds the version it follows.
    void chainBindsEachParent() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        Manifest v2 = smallParcel(p, "chain");
        Manifest next = v2;
        next.parent = 2;
        next.disk[7].reset();
        QCOMPARE(*p.commit("chain", next, {}), std::uint64_t(3));
        QCOMPARE(*p.rollback("chain", 1, "kiosk-b"), std::uint64_t(4));
        std::vector<Manifest> m;
        for (std::uint64_t n = 1; n <= 4; ++n)
            m.push_back(*p.manifest("chain", n));
        QVERIFY(!m[0].parentDigest);
        for (std::size_t i = 1; i < m.size(); ++i) {
            QVERIFY(m[i].parentDigest);
            QVERIFY(m[i].parentDigest == m[i - 1].digest);
        }
        // The digest commit reports is the one a reader computes.
        QVERIFY(next.digest == m[2].digest);
        auto links = p.verifyChain("chain", m[3], 1, 8);
        QVERIFY2(links.ok(), links.ok() ? "" : links.error().describe().c_str());
        QCOMPARE(links->size(), std::size_t(4));
        QCOMPARE(links->back().version, std::uint64_t(1));
        QVERIFY(links->back().digest == *m[0].digest);
        // Bounded: one read checks only the parent.
        QCOMPARE(p.verifyChain("chain", m[3], 1, 1)->size(), std::size_t(2));
    }
    // A hostile store forks a parcel: it hides version 3 that one kiosk
    // wrote, lets another writer make a different version 3 and a version 4
    // on top, then serves the first version 3 again. Version 4 does not bind
    // it: Corrupt, naming the fork.
    void forkedChainIsRefused() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        Manifest v2 = smallParcel(p, "fork");
        Manifest a = v2;
        a.parent = 2;
        a.kiosk = "kiosk-a";
        QCOMPARE(*p.commit("fork", a, {}), std::uint64_t(3));
        const std::string key3 = versionKey(user, "fork", 3);
        const Bytes hidden = *store_->get(key3);
        QVERIFY(store_->remove(key3).ok());
        Manifest b = v2;
        b.parent = 2;
        b.kiosk = "kiosk-b";
        QCOMPARE(*p.commit("fork", b, {}), std::uint64_t(3));
        Manifest c = b;
        c.parent = 3;
        QCOMPARE(*p.commit("fork", c, {}), std::uint64_t(4));
        QVERIFY(p.verifyChain("fork", *p.manifest("fork", 4), 1, 8).ok());
        QVERIFY(store_->put(key3, hidden).ok()); // the store serves kiosk-a's version 3 again
        auto v3 = p.manifest("fork", 3);
        QVERIFY(v3.ok()); // authentic on its own
        QCOMPARE(v3->kiosk, std::string("kiosk-a"));
        auto links = p.verifyChain("fork", *p.manifest("fork", 4), 1, 8);
        QVERIFY(!links.ok());
        QCOMPARE(links.error().code, Errc::Corrupt);
        QVERIFY2(links.error().message.find("forked") != std::string::npos,
                 links.error().message.c_str());
    }
    // A chain that starts before parent_digest existed: the old manifests
    // still open, the walk stops at the first one without a digest, and the
    // next commit binds the old manifest by its plaintext's digest. A parent
    // pruned by gc or damaged ends the walk without an error.
    void chainOverOldManifestsAndGaps() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        Manifest v2 = smallParcel(p, "old");
        // Version 3 as an older isr wrote it: a parent number, no digest.
        Manifest legacy = v2;
        legacy.version = 3;
        legacy.parent = 2;
        legacy.parentDigest.reset();
        legacy.kiosk = "old-kiosk";
        QVERIFY(store_
                    ->putIfAbsent(versionKey(user, "old", 3),
                                  crypto::seal(p.secrets().master, encodeManifest(legacy),
                                               asBytes(manifestAssociatedData(user, "old", 3))))
                    .ok());
        auto m3 = p.manifest("old", 3);
        QVERIFY(m3.ok());
        QVERIFY(!m3->parentDigest);
        Manifest next = *m3;
        next.parent = 3;
        QCOMPARE(*p.commit("old", next, {}), std::uint64_t(4));
        auto m4 = *p.manifest("old", 4);
        QVERIFY(m4.parentDigest == m3->digest);
        auto links = p.verifyChain("old", m4, 1, 8);
        QVERIFY(links.ok());
        QCOMPARE(links->size(), std::size_t(2)); // 4 and 3; 3 binds nothing
        // Version 3 pruned, or garbled: the walk ends there, no error.
        const Bytes kept = *store_->get(versionKey(user, "old", 3));
        QVERIFY(store_->remove(versionKey(user, "old", 3)).ok());
        QCOMPARE(p.verifyChain("old", m4, 1, 8)->size(), std::size_t(1));
        QVERIFY(store_->put(versionKey(user, "old", 3), Bytes(kept.size(), 0x55)).ok());
        QCOMPARE(p.verifyChain("old", m4, 1, 8)->size(), std::size_t(1));
    }
    void dedupAcrossParcels() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        smallParcel(p, "first");
        Bytes data = randomData(4096, 7);
        auto enc = chunk::encode(p.secrets().convergence.view(), data);
        auto stats = p.uploadChunks({enc, enc});
        QVERIFY(stats.ok());
        QCOMPARE(stats->chunks, std::uint64_t(0)); // already there from "first"
    }

    void uploadOptions() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        auto key = p.secrets().convergence.view();
        auto a = chunk::encode(key, randomData(4096, 21));
        auto b = chunk::encode(key, randomData(4096, 22));
        auto c = chunk::encode(key, randomData(4096, 23));

        // Known present: skipped without a request, so a chunk the store in
        // fact lacks stays missing (the caller's promise is trusted).
        std::set<chunk::ChunkName> known{a.ref.name};
        Parcels::UploadOptions unasked;
        unasked.knownPresent = &known;
        unasked.askStore = false;
        auto sent = p.uploadChunks({a, b, b}, unasked);
        QVERIFY2(sent.ok(), sent.ok() ? "" : sent.error().describe().c_str());
        QCOMPARE(sent->chunks, std::uint64_t(1)); // b once
        QCOMPARE(sent->bytes, std::uint64_t(b.ciphertext.size()));
        QCOMPARE(p.fetchChunk(a.ref.name).error().code, Errc::NotFound);
        QVERIFY(p.fetchChunk(b.ref.name).ok());

        // Unasked put-if-absent of a chunk the store has: not an error, not
        // counted as sent.
        auto again = p.uploadChunks({b, c}, unasked);
        QVERIFY(again.ok());
        QCOMPARE(again->chunks, std::uint64_t(1)); // only c
        QVERIFY(p.fetchChunk(c.ref.name).ok());

        // No dedup: every chunk goes, repeats and present ones included.
        Parcels::UploadOptions whole;
        whole.askStore = false;
        whole.dedup = false;
        auto all = p.uploadChunks({b, b, c}, whole);
        QVERIFY(all.ok());
        QCOMPARE(all->chunks, std::uint64_t(3));
        QVERIFY(p.readChunk(b.ref).ok()); // overwritten with the same content
    }

    // ---- locks ----
    void lockLifecycle() {
        std::string user = makeUser();
        Parcels a = signedIn(user);
        Parcels b = signedIn(user);
        smallParcel(a, "lk");
        auto mine = a.lock("lk", "kiosk-a", false);
        QVERIFY(mine.ok() && mine->acquired);
        auto theirs = b.lock("lk", "kiosk-b", false);
        QVERIFY(theirs.ok());
        QVERIFY(!theirs->acquired);
        QCOMPARE(theirs->lock.kiosk, std::string("kiosk-a"));
        QVERIFY(theirs->lock.since > 0);
        QVERIFY(!theirs->lock.stale(theirs->lock.heartbeat + 10));
        // Explicit take-over.
        auto taken = b.lock("lk", "kiosk-b", true);
        QVERIFY(taken.ok() && taken->acquired);
        // The old holder notices at its next heartbeat and cannot release b's lock.
        QCOMPARE(a.heartbeat("lk", mine->lock).error().code, Errc::Locked);
        QVERIFY(a.unlock("lk", mine->lock).ok());
        QCOMPARE((*b.readLock("lk"))->kiosk, std::string("kiosk-b"));
        QVERIFY(b.heartbeat("lk", taken->lock).ok());
        QVERIFY(b.unlock("lk", taken->lock).ok());
        QVERIFY(!b.readLock("lk")->has_value());
        QVERIFY(a.lock("lk", "kiosk-a", false)->acquired);
    }
    void staleLockIsRecognised() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        smallParcel(p, "st");
        QVERIFY(store_
                    ->put(lockKey(user, "st"), asBytes("{\"kiosk\":\"crashed\",\"session\":\"00\","
                                                       "\"since\":1000,\"heartbeat\":1000}"))
                    .ok());
        auto attempt = p.lock("st", "kiosk-b", false);
        QVERIFY(attempt.ok());
        QVERIFY(!attempt->acquired);
        QVERIFY(attempt->lock.stale(std::time(nullptr)));
        QCOMPARE(attempt->lock.kiosk, std::string("crashed"));
    }
    void damagedLockStillBlocks() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        smallParcel(p, "dl");
        QVERIFY(store_->put(lockKey(user, "dl"), asBytes("\x01garbage")).ok());
        auto attempt = p.lock("dl", "kiosk-b", false);
        QVERIFY(attempt.ok());
        QVERIFY(!attempt->acquired);
        QVERIFY(p.lock("dl", "kiosk-b", true)->acquired);
    }

    // ---- gc and fsck ----
    void gcRemovesOnlyOldUnreferencedChunks() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        Manifest m = smallParcel(p, "gc");
        auto orphan = chunk::encode(p.secrets().convergence.view(), randomData(4096, 99));
        QVERIFY(p.uploadChunks({orphan}).ok());
        // Young orphans stay (a running session's trickled chunks look like this).
        auto young = collectGarbage(p, 3600, false);
        QVERIFY2(young.ok(), young.ok() ? "" : describe(young.error()).c_str());
        QCOMPARE(young->removed, std::uint64_t(0));
        QCOMPARE(young->keptYoung, std::uint64_t(1));
        // A live lock blocks gc altogether.
        auto l = p.lock("gc", "kiosk-a", false);
        QVERIFY(l.ok() && l->acquired);
        auto blocked = collectGarbage(p, 3600, false);
        QVERIFY(!blocked.ok());
        QCOMPARE(blocked.error().code, Errc::Locked);
        QVERIFY(p.unlock("gc", l->lock).ok());
        auto dry = collectGarbage(p, -1, true);
        QVERIFY2(dry.ok(), dry.ok() ? "" : describe(dry.error()).c_str());
        QCOMPARE(dry->removed, std::uint64_t(1));
        QVERIFY(*store_->exists(chunkKey(user, orphan.ref.name)));
        auto real = collectGarbage(p, -1, false);
        QVERIFY(real.ok());
        QCOMPARE(real->removed, std::uint64_t(1));
        QVERIFY(!*store_->exists(chunkKey(user, orphan.ref.name)));
        for (auto i : {0, 1, 7, 255})
            QVERIFY(p.readChunk(*m.disk[std::size_t(i)]).ok());
    }
    // ---- reference lists and keyless gc (FORMAT.md, "Reference list") ----
    void referenceListCodec() {
        ReferenceList list;
        list.version = 7;
        list.created = 1764700000;
        list.sealedLength = 4242;
        for (unsigned i = 0; i < 3; ++i) {
            chunk::ChunkName name{};
            name[0] = std::uint8_t(i + 1);
            list.chunks.push_back(name);
        }
        Bytes data = encodeReferenceList(list);
        QCOMPARE(data.size(), std::size_t(36 + 3 * 32 + 32));
        auto back = decodeReferenceList(data);
        QVERIFY(back.ok());
        QVERIFY(*back == list);
        // Truncated, one bit flipped anywhere, padded: refused as damage.
        for (std::size_t cut : {std::size_t(0), std::size_t(10), data.size() - 1})
            QCOMPARE(decodeReferenceList(ByteView(data).first(cut)).error().code, Errc::Corrupt);
        for (std::size_t pos = 0; pos < data.size(); ++pos) {
            Bytes bad = data;
            bad[pos] ^= 0x01;
            QVERIFY2(!decodeReferenceList(bad).ok(), std::to_string(pos).c_str());
        }
        Bytes padded = data;
        padded.push_back(0);
        QVERIFY(!decodeReferenceList(padded).ok());
        // Names out of order, with a valid checksum: still refused.
        ReferenceList unordered = list;
        std::swap(unordered.chunks[0], unordered.chunks[2]);
        QCOMPARE(decodeReferenceList(encodeReferenceList(unordered)).error().code, Errc::Corrupt);
        // A count that does not match the size, with a valid checksum.
        Bytes lying = data;
        lying[35] = 200;
        auto sum = crypto::hash(ByteView(lying).first(lying.size() - 32));
        std::copy(sum.begin(), sum.end(), lying.end() - 32);
        QCOMPARE(decodeReferenceList(lying).error().code, Errc::Corrupt);
    }

    // A commit writes refs/<n> for its own version; it says what the
    // manifest says, for the sealed object the store holds.
    void commitWritesReferenceList() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        Manifest m = smallParcel(p, "rl");
        auto raw = store_->get(refsKey(user, "rl", 2));
        QVERIFY(raw.ok());
        auto list = decodeReferenceList(*raw);
        QVERIFY(list.ok());
        auto stored = p.manifest("rl", 2);
        QVERIFY(stored.ok());
        auto sealed = store_->get(versionKey(user, "rl", 2));
        QVERIFY(sealed.ok());
        QVERIFY(*list == referenceListOf(*stored, sealed->size()));
        QCOMPARE(list->chunks.size(), std::size_t(4));
        QVERIFY(store_->exists(refsKey(user, "rl", 1)).value()); // even an all-zero version
        QVERIFY(decodeReferenceList(*store_->get(refsKey(user, "rl", 1)))->chunks.empty());
    }

    // A reference list that cannot be written does not fail the commit:
    // the version is committed; gc --all skips the user until gc --user
    // writes the list. (FileStore: a file where the refs/ folder would go.)
    void failedReferenceListWriteIsOnlyAWarning() {
        if (ts_->url().rfind("file://", 0) != 0)
            QSKIP("needs a FileStore to make the write fail");
        std::string user = makeUser();
        Parcels p = signedIn(user);
        QVERIFY(store_->put(parcelPrefix(user, "wf") + "refs", asBytes("in the way")).ok());
        auto created = p.create("wf", VmSpec{}, 1 << 20, 4096, "kiosk-a");
        QVERIFY2(created.ok(), created.ok() ? "" : describe(created.error()).c_str());
        QCOMPARE(p.latest("wf").value(), std::uint64_t(1));
        QVERIFY(!store_->exists(refsKey(user, "wf", 1)).value());
        auto skipped = collectGarbageKeyless(*store_, user, -1, false, Retention{});
        QVERIFY(skipped.ok());
        QCOMPARE(int(skipped->skipped), int(UserGcReport::Skipped::References));
        QVERIFY(store_->remove(parcelPrefix(user, "wf") + "refs").ok());
        auto backfill = collectGarbage(p, -1, false);
        QVERIFY(backfill.ok());
        QCOMPARE(backfill->refsWritten, std::uint64_t(1));
        auto done = collectGarbageKeyless(*store_, user, -1, false, Retention{});
        QVERIFY(done.ok());
        QCOMPARE(int(done->skipped), int(UserGcReport::Skipped::No));
    }

    // Keyless gc decides as gc with keys does (one core): same versions,
    // same chunks; a list whose version object changed is not believed.
    void keylessGcMatchesKeyedGc() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        Manifest m = smallParcel(p, "kg");             // versions 1, 2
        for (unsigned round = 0; round < 2; ++round) { // versions 3, 4: new chunk 0 each
            m.parent = m.version;
            auto enc = chunk::encode(p.secrets().convergence.view(), randomData(4096, 500 + round));
            m.disk[0] = enc.ref;
            QVERIFY(p.commit("kg", m, {enc}).ok());
        }
        Retention keepTwo{2, 0};
        std::vector<PruneReport> keyedPlan;
        auto keyed = collectGarbage(p, -1, true, keepTwo, &keyedPlan);
        QVERIFY(keyed.ok());
        auto keyless = collectGarbageKeyless(*store_, user, -1, true, keepTwo);
        QVERIFY2(keyless.ok(), keyless.ok() ? "" : describe(keyless.error()).c_str());
        QCOMPARE(int(keyless->skipped), int(UserGcReport::Skipped::No));
        QCOMPARE(keyless->gc.versionsRemoved, keyed->versionsRemoved);
        QCOMPARE(keyless->gc.removed, keyed->removed);
        QCOMPARE(keyless->gc.removedBytes, keyed->removedBytes);
        QCOMPARE(keyless->gc.versionBytes, keyed->versionBytes);
        QCOMPARE(keyless->gc.referenced, keyed->referenced);
        QCOMPARE(keyless->pruned.at(0).removed, (std::vector<std::uint64_t>{1, 2}));
        QCOMPARE(keyed->removed, std::uint64_t(1)); // version 3's chunk 0
        // A version object that is not the one the list was written for.
        auto sealed = *store_->get(versionKey(user, "kg", 4));
        sealed.push_back(0);
        QVERIFY(store_->put(versionKey(user, "kg", 4), sealed).ok());
        auto stale = collectGarbageKeyless(*store_, user, -1, false, keepTwo);
        QVERIFY(stale.ok());
        QCOMPARE(int(stale->skipped), int(UserGcReport::Skipped::References));
        QVERIFY2(stale->reason.find("another versions/4") != std::string::npos,
                 stale->reason.c_str());
        QVERIFY(store_->exists(versionKey(user, "kg", 1)).value()); // nothing removed
        sealed.pop_back();
        QVERIFY(store_->put(versionKey(user, "kg", 4), sealed).ok());
        // Real run; then a list left without its version (a gc killed
        // between the two removes) goes on the next run.
        auto real = collectGarbageKeyless(*store_, user, -1, false, keepTwo);
        QVERIFY(real.ok());
        QCOMPARE(real->gc.versionsRemoved, std::uint64_t(2));
        QVERIFY(!store_->exists(refsKey(user, "kg", 1)).value());
        QVERIFY(store_->put(refsKey(user, "kg", 2), *store_->get(refsKey(user, "kg", 3))).ok());
        auto again = collectGarbageKeyless(*store_, user, -1, false, keepTwo);
        QVERIFY(again.ok());
        QCOMPARE(again->gc.versionsRemoved, std::uint64_t(0));
        QVERIFY(!store_->exists(refsKey(user, "kg", 2)).value());
        QVERIFY(fsckUser(p)->clean());
        auto keylessFsck = fsckStore(*store_);
        QVERIFY(keylessFsck.ok());
        for (const auto& line : keylessFsck->problems) // other tests leave damage
            QVERIFY2(line.find("users/" + user + "/") == std::string::npos, line.c_str());
        // keepWithin needs the creation time: from the list, without keys.
        auto within = collectGarbageKeyless(*store_, user, -1, true, Retention{0, 3600});
        QVERIFY(within.ok());
        QCOMPARE(within->gc.versionsRemoved, std::uint64_t(0));
    }

    void fsckFindsDamage() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        Manifest m = smallParcel(p, "fs");
        auto clean = fsckUser(p);
        QVERIFY(clean.ok());
        QVERIFY(clean->clean());
        QCOMPARE(clean->manifestsChecked, std::uint64_t(2));
        std::string key = chunkKey(user, m.disk[255]->name);
        auto original = *store_->get(key);
        flipByte(key, 100);
        auto keyless = fsckStore(*store_);
        QVERIFY(keyless.ok());
        QVERIFY(!keyless->clean());
        QVERIFY(std::any_of(
            keyless->problems.begin(), keyless->problems.end(),
            [&](const std::string& line) { return line.find(key) != std::string::npos; }));
        QVERIFY(!fsckUser(p)->clean());
        QVERIFY(store_->put(key, original).ok());
        QVERIFY(store_->remove(key).ok());
        auto missing = fsckUser(p);
        QVERIFY(!missing->clean()); // a referenced chunk is gone
        QVERIFY(store_->put(key, original).ok());
        QVERIFY(fsckUser(p)->clean());
    }

    // ---- import / export ----
    void importExportRoundTripAndDedup() {
        test::TempDir dir;
        std::string user = makeUser();
        Parcels p = signedIn(user);
        // 64 MiB sparse image: 8 MiB random at 16 MiB, a 4 KiB island at 40 MiB.
        std::string image = dir.file("disk.raw");
        {
            std::ofstream f(image, std::ios::binary);
            f.seekp((64 << 20) - 1);
            f.put(0);
            f.seekp(16 << 20);
            Bytes r = randomData(8 << 20, 1);
            f.write(reinterpret_cast<const char*>(r.data()), std::streamsize(r.size()));
            f.seekp(40 << 20);
            f.write("island", 6);
        }
        ImportOptions opts;
        auto first = importImage(p, "img", image, opts);
        QVERIFY2(first.ok(), first.ok() ? "" : describe(first.error()).c_str());
        QCOMPARE(first->version, std::uint64_t(1));
        QCOMPARE(first->chunks, std::uint64_t(512));
        QCOMPARE(first->newChunks, std::uint64_t(65));
        QCOMPARE(first->zeroChunks, std::uint64_t(512 - 65));
        QVERIFY(first->newBytes > (8u << 20) && first->newBytes < (9u << 20));
        QVERIFY(exportImage(p, "img", 1, dir.file("out.raw")).ok());
        auto same = test::runProcess(
            "cmp", {QString::fromStdString(image), QString::fromStdString(dir.file("out.raw"))});
        QCOMPARE(same.exitCode, 0);
        // Same image again: nothing new.
        auto second = importImage(p, "img", image, opts);
        QVERIFY(second.ok());
        QCOMPARE(second->version, std::uint64_t(2));
        QCOMPARE(second->newChunks, std::uint64_t(0));
        // Touch 1 MiB (8 chunks): exactly those are new.
        {
            std::fstream f(image, std::ios::binary | std::ios::in | std::ios::out);
            f.seekp(20 << 20);
            Bytes r = randomData(1 << 20, 2);
            f.write(reinterpret_cast<const char*>(r.data()), std::streamsize(r.size()));
        }
        auto third = importImage(p, "img", image, opts);
        QVERIFY(third.ok());
        QCOMPARE(third->newChunks, std::uint64_t(8));
        QVERIFY(exportImage(p, "img", 3, dir.file("out3.raw")).ok());
        QCOMPARE(test::runProcess("cmp", {QString::fromStdString(image),
                                          QString::fromStdString(dir.file("out3.raw"))})
                     .exitCode,
                 0);
        // Version 1 still exports the old bytes.
        QVERIFY(exportImage(p, "img", 1, dir.file("out1.raw")).ok());
        QVERIFY(test::runProcess("cmp", {QString::fromStdString(image),
                                         QString::fromStdString(dir.file("out1.raw"))})
                    .exitCode != 0);
    }
    void importQcow2() {
        test::requirePrograms({"qemu-img"});
        test::TempDir dir;
        std::string user = makeUser();
        Parcels p = signedIn(user);
        std::string raw = dir.file("a.raw"), qcow = dir.file("a.qcow2");
        {
            std::ofstream f(raw, std::ios::binary);
            Bytes r = randomData(3 << 20, 5);
            f.seekp(1 << 20);
            f.write(reinterpret_cast<const char*>(r.data()), std::streamsize(r.size()));
            f.seekp((8 << 20) - 1);
            f.put(0);
        }
        QCOMPARE(
            test::runProcess("qemu-img", {"convert", "-O", "qcow2", QString::fromStdString(raw),
                                          QString::fromStdString(qcow)})
                .exitCode,
            0);
        auto st = importImage(p, "q", qcow, {});
        QVERIFY2(st.ok(), st.ok() ? "" : describe(st.error()).c_str());
        QCOMPARE(st->newChunks, std::uint64_t(24));
        QVERIFY(exportImage(p, "q", 1, dir.file("back.raw")).ok());
        QCOMPARE(test::runProcess("cmp", {QString::fromStdString(raw),
                                          QString::fromStdString(dir.file("back.raw"))})
                     .exitCode,
                 0);
    }
    // Issue #16 item 10: a user's image cannot make the import read other
    // files of the admin's host.
    void hostileImportImagesAreRefused() {
        test::requirePrograms({"qemu-img"});
        test::TempDir dir;
        std::string user = makeUser();
        Parcels p = signedIn(user);
        const std::string secret = dir.file("host-secret");
        {
            std::ofstream f(secret, std::ios::binary);
            f << "root:$y$j9T$hostsecret:19000:0:99999:7:::\n";
            f.seekp((1 << 20) - 1);
            f.put(0);
        }
        auto qemuImg = [](const QStringList& args) {
            auto r = test::runProcess("qemu-img", args);
            if (r.exitCode != 0)
                qFatal("qemu-img %s: %s", qPrintable(args.join(' ')), r.err.c_str());
        };
        auto refused = [&](const std::string& image, const char* says) {
            auto info = inspectImportImage(image);
            QVERIFY2(!info.ok(), image.c_str());
            QCOMPARE(info.error().code, Errc::InvalidArgument);
            QVERIFY2(info.error().message.find(says) != std::string::npos,
                     info.error().message.c_str());
            auto st = importImage(p, "hostile", image, {});
            QVERIFY(!st.ok());
            QCOMPARE(p.versions("hostile").error().code, Errc::NotFound);
        };
        // qcow2 with a backing file: the host's file would become the disk.
        const std::string backed = dir.file("backed.qcow2");
        qemuImg({"create", "-f", "qcow2", "-F", "raw", "-b", QString::fromStdString(secret),
                 QString::fromStdString(backed)});
        refused(backed, "backing file");
        for (const char* target : {"/etc/shadow", "/etc/passwd"}) {
            const std::string etc = dir.file(std::string("etc-") + (target + 5) + ".qcow2");
            qemuImg({"create", "-f", "qcow2", "-F", "raw", "-u", "-b", target,
                     QString::fromStdString(etc), "1M"});
            refused(etc, "backing file");
        }
        // qcow2 with an external data file.
        const std::string dataFile = dir.file("datafile.qcow2");
        qemuImg({"create", "-f", "qcow2", "-o",
                 QString::fromStdString("data_file=" + dir.file("data.raw")),
                 QString::fromStdString(dataFile), "1M"});
        refused(dataFile, "external data file");
        // A raw file that starts like a qcow2 header: qcow2 rules, and it is
        // not one.
        const std::string fakeQcow = dir.file("fake.raw");
        {
            std::ofstream f(fakeQcow, std::ios::binary);
            f.write("QFI\xfb\0\0\0\3", 8);
            f << std::string(4096, 'x');
        }
        refused(fakeQcow, "not a valid qcow2");
        // A VMDK whose extent is the host's file (descriptor and binary forms).
        const std::string vmdk = dir.file("extent.vmdk");
        {
            std::ofstream f(vmdk);
            f << "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
                 "createType=\"monolithicFlat\"\n\nRW 2048 FLAT \""
              << secret << "\" 0\n";
        }
        refused(vmdk, "vmdk");
        const std::string sparseVmdk = dir.file("sparse.vmdk");
        qemuImg({"create", "-f", "vmdk", QString::fromStdString(sparseVmdk), "1M"});
        refused(sparseVmdk, "vmdk");
        // What stays allowed: a plain qcow2 and raw.
        const std::string plain = dir.file("plain.qcow2");
        qemuImg({"create", "-f", "qcow2", QString::fromStdString(plain), "1M"});
        auto info = inspectImportImage(plain);
        QVERIFY2(info.ok(), info.ok() ? "" : describe(info.error()).c_str());
        QCOMPARE(info->format, std::string("qcow2"));
        QCOMPARE(info->virtualSize, std::uint64_t(1 << 20));
        info = inspectImportImage(secret);
        QVERIFY(info.ok() && info->format == "raw");
    }

    // Issue #16 item 12: on every backend, an object larger than its kind
    // may be is refused before its body is taken in (S3: the transfer stops).
    void oversizedObjectsAreRefusedOnEveryBackend() {
        std::string user = makeUser();
        const std::string head = headKey(user, "big");
        QVERIFY(store_->put(head, Bytes(8192, '7')).ok());
        auto r = store_->get(head);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Corrupt);
        auto many = store_->getMany({head});
        QCOMPARE(many.at(0).error().code, Errc::Corrupt);
        QVERIFY(store_->put(head, asBytes("1")).ok());
        QVERIFY(store_->get(head).ok());
        QVERIFY(store_->remove(head).ok());
    }

    // Issue #16 item 12: export does not write through a symlink at OUT.part.
    void exportRefusesASymlinkAtPart() {
        test::TempDir dir;
        std::string user = makeUser();
        Parcels p = signedIn(user);
        Manifest m = smallParcel(p, "exp");
        const std::string victim = dir.file("victim");
        {
            std::ofstream f(victim);
            f << "precious";
        }
        const std::string out = dir.file("out.raw");
        QVERIFY(::symlink(victim.c_str(), (out + ".part").c_str()) == 0);
        auto st = exportImage(p, "exp", m.version, out);
        QVERIFY(!st.ok());
        QCOMPARE(st.error().code, Errc::InvalidArgument);
        std::ifstream in(victim);
        std::string text;
        std::getline(in, text);
        QCOMPARE(text, std::string("precious"));
        QVERIFY(!std::filesystem::exists(out));
        // A leftover regular .part (an interrupted export) is replaced.
        QVERIFY(::unlink((out + ".part").c_str()) == 0);
        {
            std::ofstream f(out + ".part");
            f << "half";
        }
        QVERIFY(exportImage(p, "exp", m.version, out).ok());
        QVERIFY(!std::filesystem::exists(out + ".part"));
        struct stat sb {};
        QVERIFY(::stat(out.c_str(), &sb) == 0);
        QCOMPARE(std::uint64_t(sb.st_size), m.diskSize);
    }

    void importOfMissingFileFailsCleanly() {
        std::string user = makeUser();
        Parcels p = signedIn(user);
        auto st = importImage(p, "x", "/nonexistent/disk.raw", {});
        QVERIFY(!st.ok());
        QCOMPARE(p.versions("x").error().code, Errc::NotFound);
    }
};

QTEST_GUILESS_MAIN(TestParcel)
#include "test_parcel.moc"
