// Cancel while a resume is in progress (the kiosk's Cancel button on the
// progress page): the resume stops at its next step instead of running to
// the end, wipes what it set up, frees the lock and leaves the session
// SignedOut with the committed versions untouched. Real QEMU, real libvirt,
// a real memory image streamed from the store.
#include "parcel/parcel.h"
#include "session/session.h"
#include "testsupport.h"
#include "vmguest.h"

#include <QTest>
#include <algorithm>
#include <atomic>
#include <filesystem>

using namespace isr;
namespace fs = std::filesystem;

class TestSessionCancel : public QObject {
    Q_OBJECT
    std::unique_ptr<test::TempDir> dir_;
    test::GuestImage guest_;
    std::string storeDir_, stateDir_;

    // What the listener saw, and when to cancel.
    std::vector<session::Stage> stages_;
    session::Stage cancelAt_ = session::Stage::SignedOut; // SignedOut: never
    bool cancelMidImage_ = false;
    std::atomic<std::uint64_t> imageDoneAtCancel_{0}, imageTotal_{0};
    session::Session* session_ = nullptr;

    bool qemuRunning() {
        return test::runProcess("pgrep", {"-f", "guest=isr-alice-desk"}).exitCode == 0;
    }
    std::size_t sessionDirs() {
        std::error_code ec;
        auto it = fs::directory_iterator(stateDir_ + "/sessions", ec);
        return ec ? 0 : std::size_t(std::distance(it, fs::directory_iterator()));
    }
    // Another kiosk can lock the parcel without taking it over.
    bool lockIsFree() {
        auto s = store::openStore("file://" + storeDir_);
        auto secrets = parcel::signIn(**s, "alice", "pw");
        if (!secrets.ok())
            return false;
        parcel::Parcels parcels(**s, std::move(*secrets));
        auto attempt = parcels.lock("desk", "probe", false);
        if (!attempt.ok() || !attempt->acquired)
            return false;
        return parcels.unlock("desk", attempt->lock).ok();
    }
    std::uint64_t latest() {
        auto s = store::openStore("file://" + storeDir_);
        auto secrets = parcel::signIn(**s, "alice", "pw");
        parcel::Parcels parcels(**s, std::move(*secrets));
        auto v = parcels.latest("desk");
        return v.ok() ? *v : 0;
    }

private slots:
    void initTestCase() {
        test::requirePrograms({"qemu-system-x86_64", "pgrep"});
        guest_ = test::requireGuest();
        dir_ = std::make_unique<test::TempDir>();
        storeDir_ = dir_->file("store");
        stateDir_ = dir_->file("k");
        auto made = test::createGuestParcel(storeDir_, guest_, "alice", "pw", "desk", 256);
        QVERIFY2(made.ok(), made.ok() ? "" : made.error().describe().c_str());
    }

    void cancel() {
        session::Listener listener;
        // requestCancel() only sets a flag, so calling it from a callback is
        // allowed (unlike the other Session methods).
        listener.stageChanged = [this](session::Stage s) {
            stages_.push_back(s);
            if (s == cancelAt_)
                session_->requestCancel();
        };
        listener.progress = [this](const session::Progress& p) {
            if (cancelMidImage_ && p.what == "memory image" && p.done > 0 &&
                imageDoneAtCancel_ == 0) {
                imageDoneAtCancel_ = p.done;
                imageTotal_ = p.total;
                session_->requestCancel();
            }
        };
        session::KioskConfig config;
        config.kioskId = "kiosk-a";
        config.stateDir = stateDir_;
        config.storeUrl = "file://" + storeDir_;
        config.guestDir = guest_.dir;
        config.cacheCapBytes = 1ull << 30;
        auto created = session::Session::create(config, listener);
        QVERIFY2(created.ok(), created.ok() ? "" : created.error().describe().c_str());
        auto& sess = **created;
        session_ = &sess;

        // ---- cancelled while checking out: no VM, no lock, no local state ----
        cancelAt_ = session::Stage::CheckingOut;
        auto r = sess.resume("alice", "pw", "desk");
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Cancelled);
        QCOMPARE(sess.stage(), session::Stage::SignedOut);
        QVERIFY(!sess.failure().has_value());
        QVERIFY(std::find(stages_.begin(), stages_.end(), session::Stage::Fetching) ==
                stages_.end());
        QCOMPARE(stages_.back(), session::Stage::SignedOut);
        QVERIFY(!qemuRunning());
        QCOMPARE(sessionDirs(), std::size_t(0));
        QVERIFY2(lockIsFree(), "a cancelled checkout kept the lock");

        // ---- cancelled while signing in ----
        stages_.clear();
        cancelAt_ = session::Stage::Authenticating;
        r = sess.resume("alice", "pw", "desk");
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Cancelled);
        QCOMPARE(sess.stage(), session::Stage::SignedOut);
        QCOMPARE(stages_, (std::vector{session::Stage::Authenticating, session::Stage::SignedOut}));

        // ---- a first session boots and commits version 2 with a memory image ----
        cancelAt_ = session::Stage::SignedOut;
        r = sess.resume("alice", "pw", "desk");
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().describe().c_str());
        QTest::qWait(5000); // let the guest get somewhere
        r = sess.suspendAndLeave();
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().describe().c_str());
        QCOMPARE(latest(), std::uint64_t(2));

        // ---- cancelled in the middle of the memory image ----
        stages_.clear();
        cancelMidImage_ = true;
        r = sess.resume("alice", "pw", "desk");
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Cancelled);
        qInfo("cancelled after %llu of %llu bytes of the memory image",
              (unsigned long long)imageDoneAtCancel_.load(),
              (unsigned long long)imageTotal_.load());
        QVERIFY(imageDoneAtCancel_ > 0);
        QVERIFY(imageDoneAtCancel_ < imageTotal_);
        QCOMPARE(sess.stage(), session::Stage::SignedOut);
        QVERIFY(std::find(stages_.begin(), stages_.end(), session::Stage::Wiping) != stages_.end());
        QVERIFY(std::find(stages_.begin(), stages_.end(), session::Stage::Running) ==
                stages_.end());
        QVERIFY2(!qemuRunning(), "the half-restored VM is still there");
        QCOMPARE(sessionDirs(), std::size_t(0));
        QVERIFY2(lockIsFree(), "a cancelled resume kept the lock");
        QCOMPARE(latest(), std::uint64_t(2)); // nothing committed, nothing lost

        // ---- and the same version then resumes in full ----
        cancelMidImage_ = false;
        r = sess.resume("alice", "pw", "desk");
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().describe().c_str());
        QCOMPARE(sess.stage(), session::Stage::Running);
        QCOMPARE(sess.baseVersion(), std::uint64_t(2));
        QVERIFY(sess.abandon().ok());
        QVERIFY(!qemuRunning());
        session_ = nullptr;
    }
};

QTEST_GUILESS_MAIN(TestSessionCancel)
#include "test_session_cancel.moc"
