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

struct Hit {
    std::uintptr_t address = 0;
    std::string mapping; // the maps line
};

// Every place in this process's readable memory that holds kPrefix followed
// by `seed` upper-cased. The scan buffer is skipped and zeroed after each
// block, so it never reports itself.
std::vector<Hit> scanSelf(const std::string& seed) {
    std::vector<Hit> hits;
    std::ifstream maps("/proc/self/maps");
    int mem = ::open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    if (mem < 0)
        qFatal("open /proc/self/mem: %s", std::strerror(errno));
    static std::vector<std::uint8_t> buffer(1 << 20);
    const auto bufLo = reinterpret_cast<std::uintptr_t>(buffer.data());
    const auto bufHi = bufLo + buffer.size();
    const std::size_t needle = kPrefix.size() + seed.size();
    std::string line;
    while (std::getline(maps, line)) {
        std::istringstream in(line);
        std::string range, perms;
        in >> range >> perms;
        if (perms.empty() || perms[0] != 'r' || line.find("[vvar]") != std::string::npos ||
            line.find("[vsyscall]") != std::string::npos)
            continue;
        const auto dash = range.find('-');
        std::uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
        std::uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
        // Overlapping blocks so a marker across a block edge is found.
        for (std::uintptr_t at = lo; at < hi; at += buffer.size() - needle) {
            const std::size_t want = std::min<std::uintptr_t>(buffer.size(), hi - at);
            if (at < bufHi && at + want > bufLo)
                continue; // the scan buffer itself
            ssize_t got = ::pread(mem, buffer.data(), want, off_t(at));
            if (got <= 0)
                break; // unreadable (guard pages, I/O mappings)
            const std::uint8_t* p = buffer.data();
            const std::uint8_t* end = p + got;
            while (p + needle <= end) {
                auto* f = static_cast<const std::uint8_t*>(
                    ::memmem(p, std::size_t(end - p), kPrefix.data(), kPrefix.size()));
                if (!f || f + needle > end)
                    break;
                bool match = true;
                for (std::size_t k = 0; k < seed.size() && match; ++k)
                    match = f[kPrefix.size() + k] == std::toupper(std::uint8_t(seed[k]));
                if (match)
                    hits.push_back(Hit{at + std::uintptr_t(f - buffer.data()), line});
                p = f + 1;
            }
            std::memset(buffer.data(), 0, buffer.size());
            if (std::size_t(got) < want)
                break;
        }
    }
    ::close(mem);
    return hits;
}

std::string describe(const std::vector<Hit>& hits) {
    std::ostringstream out;
    out << hits.size() << " copies of the marker in the kiosk's memory";
    for (std::size_t i = 0; i < hits.size() && i < 8; ++i)
        out << "\n  0x" << std::hex << hits[i].address << std::dec << " in " << hits[i].mapping;
    return out.str();
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
