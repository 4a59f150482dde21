// Bad input from the store, as one table: every object a kiosk reads
// (store marker, account, manifest, chunk, head, lock) truncated, emptied,
// bit-flipped, swapped for another valid object of the same user, replayed
// from an older version, oversized, or validly sealed but hostile (what a
// compromised client holding the user's keys could write). For each case
// the kiosk's own read path must answer with the expected typed error (or,
// for the hints the design does not trust, the right answer anyway), and
// once the object is put back everything that was committed is still there
// (fsck with the user's keys clean, latest version and its chunks readable).
//
// The table goes to stdout; the test fails on the first case whose outcome
// differs. Runs on the backend ISR_TEST_STORE_BACKEND names (file | s3).
// test_parcel and test_manifest hold the finer-grained unit tests these
// cases summarise.
#include "parcel/parcel.h"
#include "teststore.h"
#include "testsupport.h"

#include <QTest>
#include <cstdio>
#include <functional>
#include <random>
#include <set>

using namespace isr;
using namespace isr::parcel;

namespace {
constexpr const char* kPassword = "correct horse";
constexpr const char* kParcel = "desk";

Bytes randomData(std::size_t n, unsigned seed) {
    Bytes b(n);
    std::mt19937 rng(seed);
    for (auto& x : b)
        x = std::uint8_t(rng());
    return b;
}

Bytes flipped(Bytes b, std::size_t pos) {
    b[pos % b.size()] ^= 0x40;
    return b;
}

Bytes truncated(const Bytes& b, std::size_t len) {
    return Bytes(b.begin(), b.begin() + std::ptrdiff_t(std::min(len, b.size())));
}

// The manifest's JSON header (VM spec and sizes) replaced by edit(header).
Bytes withHeader(const Manifest& m, const std::function<void(json::Object&)>& edit) {
    Bytes b = encodeManifest(m);
    std::uint32_t len = getBe32(b.data() + 8);
    auto header = json::parse(std::string_view(reinterpret_cast<const char*>(b.data() + 12), len));
    if (!header.ok())
        qFatal("manifest header: %s", header.error().describe().c_str());
    json::Object o = header->asObject();
    edit(o);
    std::string h = json::Value(o).dump();
    std::uint8_t hlen[4];
    putBe32(hlen, std::uint32_t(h.size()));
    Bytes out;
    out.reserve(b.size() + h.size());
    out.insert(out.end(), b.begin(), b.begin() + 8);
    out.insert(out.end(), hlen, hlen + 4);
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), b.begin() + 12 + len, b.end());
    return out;
}

Bytes text(std::string_view s) {
    return Bytes(s.begin(), s.end());
}
} // namespace

class TestBadInput : public QObject {
    Q_OBJECT
    std::unique_ptr<test::TestStore> ts_;
    store::Store* store_ = nullptr;
    int users_ = 0;

    // A user "alice-N" with parcel "desk" at version 3 (versions 2 and 3
    // each rewrite disk chunks 0, 1, 7), a second parcel "work", and a
    // second user "mallory-N" with the same layout: what swaps draw from.
    struct World {
        std::string alice, mallory;
        std::unique_ptr<Parcels> pa, pm;
        Manifest v2, v3;
    };

    Manifest commitDisk(Parcels& p, const std::string& parcel, Manifest m, unsigned seed) {
        m.parent = m.version;
        m.created = 0;
        std::vector<chunk::EncodedChunk> fresh;
        for (std::size_t i : {0u, 1u, 7u}) {
            auto enc = chunk::encode(p.secrets().convergence.view(),
                                     randomData(4096, seed * 1000 + unsigned(i)));
            m.disk[i] = enc.ref;
            fresh.push_back(enc);
        }
        auto n = p.commit(parcel, m, fresh);
        if (!n.ok())
            qFatal("commit: %s", n.error().describe().c_str());
        return m;
    }

    std::unique_ptr<Parcels> makeUser(const std::string& user, unsigned seed, Manifest* v2,
                                      Manifest* v3) {
        ts_->createUser(user, kPassword);
        auto p = std::make_unique<Parcels>(ts_->signedIn(user, kPassword));
        VmSpec vm;
        vm.memoryMiB = 256;
        for (const char* parcel : {kParcel, "work"}) {
            auto created = p->create(parcel, vm, 1 << 20, 4096, "kiosk-a");
            if (!created.ok())
                qFatal("create: %s", created.error().describe().c_str());
            Manifest a = commitDisk(*p, parcel, *created, seed);
            Manifest b = commitDisk(*p, parcel, a, seed + 1);
            if (std::string(parcel) == kParcel) {
                *v2 = a;
                *v3 = b;
            }
        }
        return p;
    }

    World world() {
        World w;
        int n = ++users_;
        w.alice = "alice-" + std::to_string(n);
        w.mallory = "mallory-" + std::to_string(n);
        Manifest ignored2, ignored3;
        w.pa = makeUser(w.alice, unsigned(n) * 10, &w.v2, &w.v3);
        w.pm = makeUser(w.mallory, unsigned(n) * 10 + 5, &ignored2, &ignored3);
        return w;
    }

    Bytes get(const std::string& key) {
        auto b = store_->get(key);
        if (!b.ok())
            qFatal("get %s: %s", key.c_str(), b.error().describe().c_str());
        return *b;
    }

    Bytes sealAs(World& w, std::uint64_t n, ByteView plaintext) {
        return crypto::seal(w.pa->secrets().master, plaintext,
                            asBytes(manifestAssociatedData(w.alice, kParcel, n)));
    }

    // ---- the kiosk's read paths, each as "what the kiosk concluded" ----
    static std::string outcome(const Status& st) {
        return st.ok() ? "accepted" : isr::errcName(st.error().code);
    }
    std::string probeSignIn(World& w) {
        auto s = signIn(*store_, w.alice, kPassword);
        return s.ok() ? "accepted" : isr::errcName(s.error().code);
    }
    std::string probeManifest(World& w) {
        auto m = w.pa->manifest(kParcel, 3);
        return m.ok() ? "accepted" : isr::errcName(m.error().code);
    }
    std::string probeChunk(World& w) {
        auto c = w.pa->readChunk(*w.v3.disk[1]);
        return c.ok() ? "accepted" : isr::errcName(c.error().code);
    }
    std::string probeLatest(World& w) {
        auto n = w.pa->latest(kParcel);
        return n.ok() ? "latest=" + std::to_string(*n) : isr::errcName(n.error().code);
    }
    std::string probeLock(World& w) {
        auto l = w.pa->lock(kParcel, "kiosk-b", false);
        if (!l.ok())
            return isr::errcName(l.error().code);
        return l->acquired ? "lock taken" : "still held";
    }

    struct Case {
        const char* object;
        const char* damage;
        std::function<std::string(World&)> key;                 // the object tampered with
        std::function<Bytes(World&, const Bytes&)> replacement; // its new content; empty fn: delete
        std::string (TestBadInput::*probe)(World&);
        std::set<std::string> expected;
        std::function<void(World&)> before = {}; // set-up the case needs (e.g. a lock)
    };

    std::vector<Case> cases() {
        auto account = [](World& w) { return accountKey(w.alice); };
        auto manifest3 = [](World& w) { return versionKey(w.alice, kParcel, 3); };
        auto chunk1 = [](World& w) { return chunkKey(w.alice, w.v3.disk[1]->name); };
        auto head = [](World& w) { return headKey(w.alice, kParcel); };
        auto lock = [](World& w) { return lockKey(w.alice, kParcel); };
        auto marker = [](World&) { return std::string("isr-store.json"); };
        auto content = [](Bytes b) { return [b](World&, const Bytes&) { return b; }; };
        auto takeLock = [](World& w) {
            auto l = w.pa->lock(kParcel, "kiosk-a", false);
            if (!l.ok() || !l->acquired)
                qFatal("could not take the lock for the case");
        };
        const std::set<std::string> signInRefused{"corrupt", "authentication failed"};
        const std::set<std::string> corrupt{"corrupt"};
        TestBadInput* self = this;
        return {
            Case{"account", "truncated to half", account,
                 [](World&, const Bytes& b) { return truncated(b, b.size() / 2); },
                 &TestBadInput::probeSignIn, signInRefused},
            // The account is JSON ending in "}\n": cutting only the newline
            // leaves the same document (sign-in rightly works); cut the brace.
            Case{"account", "closing brace cut", account,
                 [](World&, const Bytes& b) { return truncated(b, b.size() - 2); },
                 &TestBadInput::probeSignIn, signInRefused},
            Case{"account", "empty", account, content({}), &TestBadInput::probeSignIn,
                 signInRefused},
            Case{"account", "bit flip, byte 2", account,
                 [](World&, const Bytes& b) { return flipped(b, 2); }, &TestBadInput::probeSignIn,
                 signInRefused},
            Case{"account", "bit flip, middle", account,
                 [](World&, const Bytes& b) { return flipped(b, b.size() / 2); },
                 &TestBadInput::probeSignIn, signInRefused},
            Case{"account", "bit flip, near the end", account,
                 [](World&, const Bytes& b) { return flipped(b, b.size() - 3); },
                 &TestBadInput::probeSignIn, signInRefused},
            Case{"account", "swapped for another user's account", account,
                 [self](World& w, const Bytes&) { return self->get(accountKey(w.mallory)); },
                 &TestBadInput::probeSignIn, signInRefused},
            Case{"account", "KDF asks for 1 TiB (checksum recomputed)", account,
                 [](World&, const Bytes& b) {
                     auto doc = json::parse(asString(b));
                     json::Object o = doc->asObject();
                     json::Object kdf = o["kdf"].asObject();
                     kdf["mem"] = std::int64_t(1) << 40;
                     o["kdf"] = kdf;
                     o.erase("check");
                     o["check"] = toHex(crypto::hash(asBytes(json::Value(o).dump())));
                     return text(json::Value(o).dump());
                 },
                 &TestBadInput::probeSignIn, corrupt},
            Case{"account", "oversized (8 MiB of noise)", account, content(randomData(8 << 20, 1)),
                 &TestBadInput::probeSignIn, corrupt},

            Case{"manifest", "truncated to 10 bytes", manifest3,
                 [](World&, const Bytes& b) { return truncated(b, 10); },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest", "last byte cut", manifest3,
                 [](World&, const Bytes& b) { return truncated(b, b.size() - 1); },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest", "empty", manifest3, content({}), &TestBadInput::probeManifest,
                 corrupt},
            Case{"manifest", "bit flip, byte 0 (nonce)", manifest3,
                 [](World&, const Bytes& b) { return flipped(b, 0); }, &TestBadInput::probeManifest,
                 corrupt},
            Case{"manifest", "bit flip, middle", manifest3,
                 [](World&, const Bytes& b) { return flipped(b, b.size() / 2); },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest", "bit flip, last byte (tag)", manifest3,
                 [](World&, const Bytes& b) { return flipped(b, b.size() - 1); },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest", "replayed: version 2 stored as version 3", manifest3,
                 [self](World& w, const Bytes&) {
                     return self->get(versionKey(w.alice, kParcel, 2));
                 },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest", "swapped: the user's other parcel's version 3", manifest3,
                 [self](World& w, const Bytes&) {
                     return self->get(versionKey(w.alice, "work", 3));
                 },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest", "swapped: another user's version 3", manifest3,
                 [self](World& w, const Bytes&) {
                     return self->get(versionKey(w.mallory, kParcel, 3));
                 },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest", "oversized (64 MiB of noise)", manifest3,
                 content(randomData(64 << 20, 2)), &TestBadInput::probeManifest, corrupt},
            Case{"manifest (sealed)", "claims 2^60 disk chunks", manifest3,
                 [self](World& w, const Bytes&) {
                     Bytes b = encodeManifest(w.v3);
                     putBe64(b.data() + 12 + getBe32(b.data() + 8), 1ull << 60);
                     return self->sealAs(w, 3, b);
                 },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest (sealed)", "a chunk of 4 GiB", manifest3,
                 [self](World& w, const Bytes&) {
                     Manifest m = w.v3;
                     m.disk[1]->length = 0xffffffffu;
                     return self->sealAs(w, 3, encodeManifest(m));
                 },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest (sealed)", "VM spec asks for a host PCI device", manifest3,
                 [self](World& w, const Bytes&) {
                     return self->sealAs(w, 3, withHeader(w.v3, [](json::Object& h) {
                                             json::Object vm = h["vm"].asObject();
                                             vm["hostdev"] = "0000:00:02.0";
                                             h["vm"] = vm;
                                         }));
                 },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest (sealed)", "VM spec boots a host path", manifest3,
                 [self](World& w, const Bytes&) {
                     return self->sealAs(w, 3, withHeader(w.v3, [](json::Object& h) {
                                             json::Object vm = h["vm"].asObject();
                                             vm["boot"] = "/etc/shadow";
                                             h["vm"] = vm;
                                         }));
                 },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest (sealed)", "VM spec asks for 4,000,000 MiB", manifest3,
                 [self](World& w, const Bytes&) {
                     return self->sealAs(w, 3, withHeader(w.v3, [](json::Object& h) {
                                             json::Object vm = h["vm"].asObject();
                                             vm["memory_mib"] = std::int64_t(4000000);
                                             h["vm"] = vm;
                                         }));
                 },
                 &TestBadInput::probeManifest, corrupt},
            Case{"manifest (sealed)", "VM spec carries raw domain XML", manifest3,
                 [self](World& w, const Bytes&) {
                     return self->sealAs(w, 3, withHeader(w.v3, [](json::Object& h) {
                                             json::Object vm = h["vm"].asObject();
                                             vm["xml"] = "<domain type='kvm'/>";
                                             h["vm"] = vm;
                                         }));
                 },
                 &TestBadInput::probeManifest, corrupt},

            Case{"chunk", "last byte cut", chunk1,
                 [](World&, const Bytes& b) { return truncated(b, b.size() - 1); },
                 &TestBadInput::probeChunk, corrupt},
            Case{"chunk", "truncated to 10 bytes", chunk1,
                 [](World&, const Bytes& b) { return truncated(b, 10); }, &TestBadInput::probeChunk,
                 corrupt},
            Case{"chunk", "empty", chunk1, content({}), &TestBadInput::probeChunk, corrupt},
            Case{"chunk", "bit flip, byte 0", chunk1,
                 [](World&, const Bytes& b) { return flipped(b, 0); }, &TestBadInput::probeChunk,
                 corrupt},
            Case{"chunk", "bit flip, middle", chunk1,
                 [](World&, const Bytes& b) { return flipped(b, b.size() / 2); },
                 &TestBadInput::probeChunk, corrupt},
            Case{"chunk", "swapped: another chunk of the same user", chunk1,
                 [self](World& w, const Bytes&) {
                     return self->get(chunkKey(w.alice, w.v3.disk[7]->name));
                 },
                 &TestBadInput::probeChunk, corrupt},
            Case{"chunk", "replayed: the same disk block from version 2", chunk1,
                 [self](World& w, const Bytes&) {
                     return self->get(chunkKey(w.alice, w.v2.disk[1]->name));
                 },
                 &TestBadInput::probeChunk, corrupt},
            Case{"chunk", "oversized (64 MiB of noise)", chunk1, content(randomData(64 << 20, 3)),
                 &TestBadInput::probeChunk, corrupt},
            Case{"chunk", "deleted", chunk1, {}, &TestBadInput::probeChunk, {"not found"}},

            // head is a hint: versions/<n> are put-if-absent and probed.
            Case{"head",
                 "rolled back to version 1",
                 head,
                 content(text("1\n")),
                 &TestBadInput::probeLatest,
                 {"latest=3"}},
            Case{"head",
                 "garbage",
                 head,
                 content(text("garbage")),
                 &TestBadInput::probeLatest,
                 {"latest=3"}},
            Case{"head", "empty", head, content({}), &TestBadInput::probeLatest, {"latest=3"}},
            Case{"head",
                 "points past the end (2^64-1)",
                 head,
                 content(text("18446744073709551615\n")),
                 &TestBadInput::probeLatest,
                 {"latest=3"}},
            Case{"head", "deleted", head, {}, &TestBadInput::probeLatest, {"latest=3"}},

            Case{"lock",
                 "bit flip (held lock)",
                 lock,
                 [](World&, const Bytes& b) { return flipped(b, b.size() / 2); },
                 &TestBadInput::probeLock,
                 {"still held"},
                 takeLock},
            Case{"lock",
                 "empty (held lock)",
                 lock,
                 content({}),
                 &TestBadInput::probeLock,
                 {"still held"},
                 takeLock},

            Case{"store marker",
                 "a newer format",
                 marker,
                 content(text("{\"format\":99,\"created\":0}")),
                 nullptr,
                 {"unsupported"}},
            Case{"store marker",
                 "garbage",
                 marker,
                 content(text("{\"format\":")),
                 nullptr,
                 {"corrupt", "unsupported", "not found"}},
        };
    }

    // What was committed is all there: latest is 3 and fsck with the
    // user's keys (every manifest opened, every chunk decoded) is clean.
    QString lost(World& w) {
        auto signedInAgain = signIn(*store_, w.alice, kPassword);
        if (!signedInAgain.ok())
            return "sign-in failed: " + QString::fromStdString(signedInAgain.error().describe());
        Parcels p(*store_, std::move(*signedInAgain));
        auto n = p.latest(kParcel);
        if (!n.ok() || *n != 3)
            return "latest is not 3";
        auto fsck = fsckUser(p);
        if (!fsck.ok())
            return QString::fromStdString(fsck.error().describe());
        if (!fsck->clean())
            return QString::fromStdString(fsck->problems.front());
        return {};
    }

private slots:
    void initTestCase() {
        ts_ = test::TestStore::fromEnvironment();
        store_ = &ts_->store();
        QVERIFY(checkStore(*store_).ok());
    }

    void everyCaseGetsItsTypedAnswerAndLosesNothing() {
        auto all = cases();
        QVERIFY(all.size() >= 30);
        std::printf("\n| # | object | damage | kiosk's answer | expected | committed data |\n"
                    "|---:|---|---|---|---|---|\n");
        int failures = 0;
        for (std::size_t i = 0; i < all.size(); ++i) {
            Case& c = all[i];
            World w = world();
            if (c.before)
                c.before(w);
            std::string key = c.key(w);
            Bytes original = get(key);
            if (c.replacement)
                QVERIFY(store_->put(key, c.replacement(w, original)).ok());
            else
                QVERIFY(store_->remove(key).ok());

            std::string got = c.probe ? (this->*c.probe)(w) : outcome(checkStore(*store_));
            bool asExpected = c.expected.count(got) > 0;

            QVERIFY(store_->put(key, original).ok());
            QString gone = lost(w);
            std::string expected;
            for (const auto& e : c.expected)
                expected += (expected.empty() ? "" : " or ") + e;
            std::printf("| %zu | %s | %s | %s | %s | %s |\n", i + 1, c.object, c.damage,
                        got.c_str(), expected.c_str(),
                        gone.isEmpty() ? "intact" : qPrintable("LOST: " + gone));
            std::fflush(stdout);
            if (!asExpected || !gone.isEmpty())
                ++failures;
        }
        std::printf("\n%zu cases, %d not as expected\n", all.size(), failures);
        QCOMPARE(failures, 0);
    }
};

QTEST_GUILESS_MAIN(TestBadInput)
#include "test_bad_input.moc"
