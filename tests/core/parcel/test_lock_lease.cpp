// parcel::LockLease against a real store (ISR_TEST_STORE_BACKEND, FileStore by
// default): acquire, a second kiosk sees the holder, take-over, the old
// holder's heartbeat notices (lost()), the heartbeat refreshes the lock, and
// release only ever deletes our own lock.
#include "parcel/lock_lease.h"
#include "teststore.h"
#include "testsupport.h"

#include <QTest>
#include <chrono>
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
};

QTEST_GUILESS_MAIN(TestLockLease)
#include "test_lock_lease.moc"
