// Issue #16, item 8: after Suspend & Leave, the kiosk process -- which lives
// on, waiting for the next person -- holds no plaintext of the user's disk or
// memory. The kiosk here is a Session in this process (as isr-kiosk holds
// one) with the demo guest: the guest writes a marker into its disk (/home)
// and its memory (/run), the session is saved and left, and every readable
// mapping of this process is searched for the marker through /proc/self/mem.
//
// The marker never exists in clear in this process except where the kiosk
// put it: the guest builds it from a seed (ISRHEAP + the seed's hex letters
// upper-cased by the guest's `tr`), so the test holds only the lower-case
// seed and compares upper-cased bytes on the fly; the serial console only
// carries the command, never the result.
#include "memscan.h"
#include "session/session.h"
#include "testsupport.h"
#include "vmguest.h"

#include <QTest>
#include <cctype>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace isr;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view kPrefix = "ISRHEAP";

// Hex with at least one letter, so the upper-cased marker differs from the
// seed this test holds.
std::string makeSeed() {
    for (;;) {
        std::string s = toHex(crypto::randomBytes(8));
        if (s.find_first_of("abcdef") != std::string::npos)
            return s;
    }
}

std::vector<test::MemoryHit> scanSelf(const std::string& seed) {
    return test::findUpperCasedMarker(kPrefix, seed);
}

std::string describe(const std::vector<test::MemoryHit>& hits) {
    return test::describeHits(hits, "the marker in the kiosk's memory");
}

} // namespace

class TestKioskHeap : public QObject {
    Q_OBJECT
    std::unique_ptr<test::TempDir> dir_;
    test::GuestImage guest_;
    std::string storeDir_;

private slots:
    void initTestCase() {
        test::requirePrograms({"qemu-system-x86_64"});
        guest_ = test::requireGuest();
        dir_ = std::make_unique<test::TempDir>();
        storeDir_ = dir_->file("store");
        auto made = test::createGuestParcel(storeDir_, guest_, "alice", "pw", "desk", 128);
        QVERIFY2(made.ok(), made.ok() ? "" : made.error().describe().c_str());
    }

    void noPlaintextLeftInTheKiosk() {
        session::KioskConfig config;
        config.kioskId = "kiosk-heap";
        config.stateDir = dir_->file("kiosk");
        config.storeUrl = "file://" + storeDir_;
        config.guestDir = guest_.dir;
        config.cacheCapBytes = 1ull << 30;
        config.serialConsole = true;
        config.allowUnencryptedSwap = true; // not what this test is about
        auto created = session::Session::create(config, {});
        QVERIFY2(created.ok(), created.ok() ? "" : created.error().describe().c_str());
        auto& kiosk = **created;

        const std::string seed = makeSeed();
        QVERIFY(scanSelf(seed).empty()); // the method: nothing before the guest ran

        QVERIFY2(kiosk.resume("alice", "pw", "desk").ok(),
                 kiosk.failure() ? kiosk.failure()->detail.c_str() : "resume");
        {
            auto c = test::SerialConsole::connect(kiosk.serialSocketPath(), 60s);
            QVERIFY2(c.ok(), c.ok() ? "" : c.error().describe().c_str());
            auto shell = (*c)->waitForShell(180s);
            QVERIFY2(shell.ok(), shell.ok() ? "" : shell.error().describe().c_str());
            // ~100 KiB of marker lines in the disk and in guest RAM.
            auto wrote = (*c)->run("M=ISRHEAP$(echo " + seed +
                                       " | tr a-f A-F); i=0; while [ $i -lt 2500 ]; do "
                                       "echo \"$M line $i\"; i=$((i+1)); done > /home/heapmark "
                                       "&& cp /home/heapmark /run/heapmark && sync",
                                   120s);
            QVERIFY2(wrote.ok() && wrote->exitStatus == 0, "the guest could not write the marker");
        }
        // The method can fail: while the VM runs, the marker is in this
        // process (the disk's plaintext cache of the chunks just written).
        const auto during = scanSelf(seed);
        qInfo("while the VM runs: %zu copies of the marker in the kiosk's memory", during.size());
        QVERIFY2(!during.empty(), "the scan does not see the disk's plaintext cache");
        QVERIFY2(kiosk.suspendAndLeave().ok(),
                 kiosk.failure() ? kiosk.failure()->detail.c_str() : "suspend");
        QCOMPARE(kiosk.stage(), session::Stage::SignedOut);

        const auto hits = scanSelf(seed);
        QVERIFY2(hits.empty(), describe(hits).c_str());
    }
};

QTEST_GUILESS_MAIN(TestKioskHeap)
#include "test_kiosk_heap.moc"
