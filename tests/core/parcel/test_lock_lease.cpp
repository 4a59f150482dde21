// parcel::LockLease against a real store (ISR_TEST_STORE_BACKEND, FileStore by
// default): acquire, a second kiosk sees the holder, take-over, the old
// holder's heartbeat notices (lost()), the heartbeat refreshes the lock, and
// release only ever deletes our own lock. Every lock write is conditional:
// races of many concurrent acquires (threads, each its own kiosk) have exactly
// one winner; the store's putIfMatch has exactly one winner per tag; a lost
// lease calls onLost and confirm() refuses.
#include "parcel/lock_lease.h"
#include "teststore.h"
#include "testsupport.h"
#include "util/json.h"

#include <QTest>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

using namespace isr;
using namespace isr::parcel;
using namespace std::chrono_literals;

namespace {
constexpr const char* kPassword = "pw";

// Polls `done` every 10 ms for up to `timeout`.
template <typename F> bool eventually(F done, std::chrono::milliseconds timeout = 5s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (done())
            return true;
        std::this_thread::sleep_for(10ms);
    }
    return done();
}
} // namespace

class TestLockLease : public QObject {
    Q_OBJECT
    std::unique_ptr<test::TestStore> ts_;
    int users_ = 0;

    std::string makeUserWithParcel(const std::string& parcel) {
        std::string user = "lease" + std::to_string(++users_);
        ts_->createUser(user, kPassword);
        auto p = ts_->signedIn(user, kPassword);
        auto created = p.create(parcel, VmSpec{}, 1 << 20, 4096, "kiosk-a");
        if (!created.ok())
            qFatal("create: %s", created.error().describe().c_str());
        return user;
    }

private slots:
    void initTestCase() { ts_ = test::TestStore::fromEnvironment(); }

    void acquireTakeOverLostRelease() {
        std::string user = makeUserWithParcel("desk");
        Parcels a = ts_->signedIn(user, kPassword);
        Parcels b = ts_->signedIn(user, kPassword);
        LockLease leaseA(a, "desk", "kiosk-a");
        LockLease leaseB(b, "desk", "kiosk-b");

        // ---- acquire ----
        QVERIFY(!leaseA.held());
        auto got = leaseA.acquire(false);
        QVERIFY2(got.ok(), got.ok() ? "" : got.error().describe().c_str());
        QVERIFY(got->acquired);
        QVERIFY(leaseA.held());
        QCOMPARE(leaseA.info().kiosk, std::string("kiosk-a"));
        QCOMPARE(leaseA.info().session, got->lock.session);
        // Held: acquiring again returns our own lock, never "held by another".
        auto again = leaseA.acquire(false);
        QVERIFY(again.ok() && again->acquired);
        QCOMPARE(again->lock.session, got->lock.session);

        // ---- a second kiosk sees the holder ----
        auto refused = leaseB.acquire(false);
        QVERIFY(refused.ok());
        QVERIFY(!refused->acquired);
        QVERIFY(!leaseB.held());
        QCOMPARE(refused->lock.kiosk, std::string("kiosk-a"));
        QCOMPARE(refused->lock.session, got->lock.session);

        // ---- take-over; the old holder's heartbeat notices ----
        leaseA.startHeartbeat(50ms);
        auto taken = leaseB.acquire(true);
        QVERIFY(taken.ok() && taken->acquired);
        QVERIFY(leaseB.held());
        QVERIFY2(eventually([&] { return leaseA.lost(); }), "the heartbeat did not notice");
        QVERIFY2(leaseA.lostDetail().find("kiosk-b") != std::string::npos,
                 leaseA.lostDetail().c_str());
        QVERIFY(!leaseB.lost());
        // The loss is only recorded: the lease still says held until released.
        QVERIFY(leaseA.held());

        // ---- release leaves another kiosk's lock alone ----
        QVERIFY(leaseA.release().ok());
        QVERIFY(!leaseA.held());
        auto holder = b.readLock("desk");
        QVERIFY(holder.ok() && holder->has_value());
        QCOMPARE((*holder)->kiosk, std::string("kiosk-b"));
        QCOMPARE((*holder)->session, taken->lock.session);
        QVERIFY(leaseA.release().ok()); // idempotent

        // ---- and deletes our own ----
        QVERIFY(leaseB.release().ok());
        QVERIFY(!leaseB.held());
        holder = b.readLock("desk");
        QVERIFY(holder.ok());
        QVERIFY(!holder->has_value());
        // Free again: a fresh acquire without take-over works, and clears lost().
        auto fresh = leaseA.acquire(false);
        QVERIFY(fresh.ok() && fresh->acquired);
        QVERIFY(!leaseA.lost());
        QVERIFY(leaseA.release().ok());
    }

    // The store sees an opaque holder, not the kiosk (issue #16 item 12):
    // the lock object's bytes hold no kiosk id; the user's keys read it
    // back (the take-over page); without them the reader gets the session
    // token only; a sealed holder moved to another parcel's lock opens for
    // no one.
    void lockObjectSealsTheKiosk() {
        std::string user = makeUserWithParcel("seal");
        Parcels a = ts_->signedIn(user, kPassword);
        QVERIFY(a.create("other", VmSpec{}, 1 << 20, 4096, "kiosk-a").ok());
        LockLease lease(a, "seal", "gate-23");
        LockLease other(a, "other", "gate-24");
        QVERIFY(lease.acquire(false).ok() && lease.held());
        QVERIFY(other.acquire(false).ok() && other.held());
        auto raw = ts_->store().get(lockKey(user, "seal"));
        QVERIFY(raw.ok());
        const std::string bytes(asString(*raw));
        QVERIFY2(bytes.find("gate-23") == std::string::npos, bytes.c_str());
        QVERIFY2(bytes.find(lease.info().session) != std::string::npos, bytes.c_str());

        Parcels b = ts_->signedIn(user, kPassword);
        auto withKeys = b.readLock("seal");
        QVERIFY(withKeys.ok() && withKeys->has_value());
        QCOMPARE((*withKeys)->kiosk, std::string("gate-23"));
        QCOMPARE((*withKeys)->holderLabel(), std::string("gate-23"));

        Parcels keyless(ts_->store(), UserSecrets{user, {}, {}, {}, {}, {}});
        auto without = keyless.readLock("seal");
        QVERIFY(without.ok() && without->has_value());
        QVERIFY((*without)->kiosk.empty());
        QCOMPARE((*without)->session, lease.info().session);
        QCOMPARE((*without)->holderLabel(), "holder " + lease.info().session.substr(0, 12));

        // The store moves gate-24's sealed holder into this lock: bound to
        // user, parcel and session, it opens for no one.
        auto otherRaw = ts_->store().get(lockKey(user, "other"));
        QVERIFY(otherRaw.ok());
        auto otherDoc = json::parse(asString(*otherRaw));
        QVERIFY(otherDoc.ok());
        const std::string ours = json::parse(bytes)->getString("holder").value();
        std::string swapped = bytes;
        swapped.replace(swapped.find(ours), ours.size(), otherDoc->getString("holder").value());
        QVERIFY(ts_->store().put(lockKey(user, "seal"), asBytes(swapped)).ok());
        auto moved = b.readLock("seal");
        QVERIFY(moved.ok() && moved->has_value());
        QVERIFY((*moved)->kiosk.empty());
        QCOMPARE((*moved)->session, lease.info().session);
        QVERIFY(other.release().ok());
    }

    void heartbeatRefreshesTheLock() {
        std::string user = makeUserWithParcel("hb");
        Parcels a = ts_->signedIn(user, kPassword);
        LockLease lease(a, "hb", "kiosk-a");
        auto got = lease.acquire(false);
        QVERIFY(got.ok() && got->acquired);
        // Make our own lock look long dead (same session: still ours).
        std::string body = "{\"kiosk\":\"kiosk-a\",\"session\":\"" + got->lock.session +
                           "\",\"since\":" + std::to_string(got->lock.since) +
                           ",\"heartbeat\":1}\n";
        QVERIFY(ts_->store().put(lockKey(user, "hb"), asBytes(body)).ok());
        auto stale = a.readLock("hb");
        QVERIFY(stale.ok() && stale->has_value());
        QCOMPARE((*stale)->heartbeat, std::int64_t(1));

        lease.startHeartbeat(50ms);
        QVERIFY2(eventually([&] {
                     auto l = a.readLock("hb");
                     return l.ok() && l->has_value() && (*l)->heartbeat > 1;
                 }),
                 "the heartbeat did not refresh the lock");
        QVERIFY(!lease.lost());
        QVERIFY(lease.info().heartbeat > 1);
        lease.stopHeartbeat();
        QVERIFY(lease.release().ok());
        auto gone = a.readLock("hb");
        QVERIFY(gone.ok() && !gone->has_value());
    }

    void destructorStopsTheHeartbeatAndKeepsTheLock() {
        std::string user = makeUserWithParcel("keep");
        Parcels a = ts_->signedIn(user, kPassword);
        std::string session;
        {
            LockLease lease(a, "keep", "kiosk-a");
            auto got = lease.acquire(false);
            QVERIFY(got.ok() && got->acquired);
            session = got->lock.session;
            lease.startHeartbeat(20ms);
            std::this_thread::sleep_for(100ms);
        } // joins the heartbeat; no store I/O
        auto l = a.readLock("keep");
        QVERIFY(l.ok() && l->has_value());
        QCOMPARE((*l)->session, session);
    }

    // ---- conditional writes: races ----

    // The store primitive itself: of many writers that read the same tag,
    // exactly one replaces the object; the others get Conflict and nothing
    // of theirs is written.
    void putIfMatchHasOneWinnerPerTag() {
        store::Store& st = ts_->store();
        const std::string key = "race/putifmatch";
        (void)st.put(key, asBytes("start"));
        auto first = st.getTagged(key);
        QVERIFY2(first.ok(), first.ok() ? "" : first.error().describe().c_str());
        QCOMPARE(asString(first->data), std::string("start"));
        constexpr int kWriters = 12;
        std::atomic<int> wins{0}, conflicts{0}, others{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < kWriters; ++i)
            threads.emplace_back([&, i] {
                auto r = st.putIfMatch(key, asBytes("writer-" + std::to_string(i)), first->tag);
                if (r.ok())
                    ++wins;
                else if (r.error().code == Errc::Conflict)
                    ++conflicts;
                else
                    ++others;
            });
        for (auto& t : threads)
            t.join();
        QCOMPARE(wins.load(), 1);
        QCOMPARE(conflicts.load(), kWriters - 1);
        QCOMPARE(others.load(), 0);
        // The winner's tag names what is there now; the old one no longer works.
        auto now = st.getTagged(key);
        QVERIFY(now.ok());
        QVERIFY(now->tag != first->tag);
        QCOMPARE(st.putIfMatch(key, asBytes("late"), first->tag).error().code, Errc::Conflict);
        auto next = st.putIfMatch(key, asBytes("next"), now->tag);
        QVERIFY(next.ok());
        auto after = st.getTagged(key);
        QVERIFY(after.ok());
        QCOMPARE(after->tag, *next);
        QCOMPARE(asString(after->data), std::string("next"));
        // A gone object is a conflict, never a create.
        QVERIFY(st.remove(key).ok());
        QCOMPARE(st.putIfMatch(key, asBytes("again"), *next).error().code, Errc::Conflict);
        QVERIFY(!*st.exists(key));
    }

    // Many kiosks acquire one free parcel at once: exactly one holds it;
    // then all of them take it over at once: at the end exactly one lease's
    // lock is in the store, and every other heartbeat finds it lost.
    void concurrentAcquiresHaveExactlyOneWinner() {
        std::string user = makeUserWithParcel("race");
        constexpr int kKiosks = 10;
        std::vector<std::unique_ptr<Parcels>> parcels;
        std::vector<std::unique_ptr<LockLease>> leases;
        for (int i = 0; i < kKiosks; ++i) {
            parcels.push_back(std::make_unique<Parcels>(ts_->signedIn(user, kPassword)));
            leases.push_back(
                std::make_unique<LockLease>(*parcels.back(), "race", "kiosk-" + std::to_string(i)));
        }
        auto race = [&](bool takeOver) {
            std::vector<int> acquired(kKiosks, 0);
            std::atomic<int> errors{0};
            std::atomic<bool> go{false};
            std::vector<std::thread> threads;
            for (int i = 0; i < kKiosks; ++i)
                threads.emplace_back([&, i] {
                    while (!go)
                        std::this_thread::yield();
                    auto r = leases[std::size_t(i)]->acquire(takeOver);
                    if (!r.ok())
                        ++errors;
                    else
                        acquired[std::size_t(i)] = r->acquired ? 1 : 0;
                });
            go = true;
            for (auto& t : threads)
                t.join();
            return std::make_pair(acquired, errors.load());
        };
        auto [first, firstErrors] = race(false);
        QCOMPARE(firstErrors, 0);
        int winners = 0;
        for (int a : first)
            winners += a;
        QCOMPARE(winners, 1);
        auto holder = parcels[0]->readLock("race");
        QVERIFY(holder.ok() && holder->has_value());
        int held = 0;
        for (auto& l : leases)
            if (l->held()) {
                ++held;
                QCOMPARE(l->info().session, (*holder)->session);
            }
        QCOMPARE(held, 1);

        // Everyone takes over at once (the holder gets its own lock back).
        auto [second, secondErrors] = race(true);
        QCOMPARE(secondErrors, 0);
        holder = parcels[0]->readLock("race");
        QVERIFY(holder.ok() && holder->has_value());
        int stillHolding = 0;
        for (auto& l : leases) {
            if (!l->held())
                continue;
            if (l->confirm().ok()) {
                ++stillHolding;
                QCOMPARE(l->info().session, (*holder)->session);
            } else {
                QVERIFY(l->lost());
            }
        }
        QCOMPARE(stillHolding, 1);
        for (auto& l : leases)
            QVERIFY(l->release().ok());
        holder = parcels[0]->readLock("race");
        QVERIFY(holder.ok() && !holder->has_value());
    }

    // A lease that loses its lock says so once through onLost; confirm()
    // (the commit's check) refuses from then on.
    void lostLeaseCallsOnLostAndConfirmRefuses() {
        std::string user = makeUserWithParcel("cb");
        Parcels a = ts_->signedIn(user, kPassword);
        Parcels b = ts_->signedIn(user, kPassword);
        LockLease leaseA(a, "cb", "kiosk-a");
        LockLease leaseB(b, "cb", "kiosk-b");
        QVERIFY(leaseA.acquire(false)->acquired);
        QVERIFY(leaseA.confirm().ok()); // ours: a conditional write succeeds
        std::atomic<int> calls{0};
        std::string detail;
        std::mutex detailMutex;
        leaseA.startHeartbeat(50ms, [&](const std::string& d) {
            std::lock_guard lk(detailMutex);
            detail = d;
            ++calls;
        });
        QVERIFY(leaseB.acquire(true)->acquired);
        QVERIFY2(eventually([&] { return calls.load() > 0; }), "onLost was not called");
        std::this_thread::sleep_for(200ms);
        QCOMPARE(calls.load(), 1);
        {
            std::lock_guard lk(detailMutex);
            QVERIFY2(detail.find("kiosk-b") != std::string::npos, detail.c_str());
        }
        leaseA.stopHeartbeat();
        auto refused = leaseA.confirm();
        QVERIFY(!refused.ok());
        QCOMPARE(refused.error().code, Errc::Locked);
        // B still holds it: A's confirm wrote nothing.
        QVERIFY(leaseB.confirm().ok());
        auto l = b.readLock("cb");
        QCOMPARE((*l)->kiosk, std::string("kiosk-b"));
        QVERIFY(leaseA.release().ok());
        QVERIFY(leaseB.release().ok());
    }
};

QTEST_GUILESS_MAIN(TestLockLease)
#include "test_lock_lease.moc"
