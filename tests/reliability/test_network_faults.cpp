// Network faults between a kiosk and its S3 store (issue 10), with the real
// parts: radosgw (one-node Ceph) runs in a network namespace of its own and
// is reached over a veth pair, so the test can cut the cable (the
// namespace's end goes down: the kiosk sees silence, not a refused
// connection), drop packets (nftables `numgen random`, both directions; this
// kernel has no netem), shape the link (tbf), and freeze or restart radosgw.
//
//   a. link down in the middle of a batch of PUTs and of GETs (S3Store):
//      a typed Transient error, no partial object, the same batch succeeds
//      once the link is back, fsck clean.
//   b. 15% packet loss both ways while a few MB go up and come back down:
//      everything completes and matches.
//   c. a resumed session (QEMU under TCG, the demo guest's counter running)
//      with its disk fully hoarded loses the link: the VM keeps running,
//      Suspend & Leave fails with StoreUnreachable after S3Store's retries
//      with backoff, nothing is committed or lost; link back, retry()
//      commits, the next resume continues the counter.
//   d. radosgw frozen (SIGSTOP) and radosgw killed and restarted in the
//      middle of a Suspend & Leave's upload.
//   e. lazy memory: a resume with most of the guest's RAM still in the
//      store loses the link: the guest's read of remote RAM waits, the
//      hoard reports the store unreachable; link back, the read gives the
//      right bytes and Suspend & Leave commits.
// Then fsck of the store and of the user is clean. A table goes to stdout.
//
// Needs root (ip netns, veth, nft, tc); skips with the reason otherwise.
// The S3 timeouts are shortened (3 s connect and stall instead of the
// kiosk's 10 s and 30 s) to keep the run short; the times in the table
// scale with them.
#include "ceph_rgw.h"
#include "chunk/chunk.h"
#include "crypto/crypto.h"
#include "failuretext.h"
#include "parcel/parcel.h"
#include "session/session.h"
#include "store/store.h"
#include "testsupport.h"
#include "util/log.h"
#include "vmguest.h"

#include <QElapsedTimer>
#include <QTest>
#include <QThread>
#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double secondsSince(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// "12.3 s"
std::string seconds(double v, int decimals = 1) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f s", decimals, v);
    return buf;
}

template <typename R> std::string describe(const R& r) {
    return r.ok() ? "ok" : r.error().describe();
}

// Counts log lines (S3Store logs every retry as a warning).
class LogCapture {
public:
    LogCapture() {
        log::setLevel(log::Level::Warn);
        log::setSink([this](log::Level, std::string_view cat, std::string_view msg) {
            std::lock_guard lock(mutex_);
            lines_.push_back(std::string(cat) + ": " + std::string(msg));
            // Kept on stderr too, with the time, for reading a failed run.
            std::fprintf(stderr, "[%7.2f] %s\n", secondsSince(start_), lines_.back().c_str());
        });
    }
    ~LogCapture() { log::setSink(nullptr); }
    std::size_t mark() {
        std::lock_guard lock(mutex_);
        return lines_.size();
    }
    // Lines since `from` that contain `needle`.
    int count(std::size_t from, const std::string& needle) {
        std::lock_guard lock(mutex_);
        int n = 0;
        for (std::size_t i = from; i < lines_.size(); ++i)
            n += lines_[i].find(needle) != std::string::npos;
        return n;
    }

private:
    std::mutex mutex_;
    std::vector<std::string> lines_;
    Clock::time_point start_ = Clock::now();
};

// A network namespace with a veth pair to ours. Torn down by the destructor.
class NetLab {
public:
    std::string ns, hostDev, nsDev, hostAddr, nsAddr;

    static std::unique_ptr<NetLab> create() {
        removeStale();
        auto lab = std::make_unique<NetLab>();
        const int id = int(::getpid());
        lab->ns = "isrnf" + std::to_string(id);
        lab->hostDev = "nfh" + std::to_string(id);
        lab->nsDev = "nfn" + std::to_string(id);
        const std::string net = "10.234." + std::to_string(id % 250) + ".";
        lab->hostAddr = net + "1";
        lab->nsAddr = net + "2";
        lab->created_ = true;
        return lab;
    }
    ~NetLab() {
        if (!created_)
            return;
        ip({"link", "del", hostDev.c_str()});
        ip({"netns", "del", ns.c_str()});
    }

    static test::ProcessResult ip(const QStringList& args) { return test::runProcess("ip", args); }

    // A run killed before its cleanup (a CTest timeout) leaves its namespace,
    // with Ceph still running inside, and its veth: remove those whose test
    // process is gone.
    static void removeStale() {
        std::istringstream list(ip({"netns", "list"}).out);
        for (std::string line; std::getline(list, line);) {
            const std::string name = line.substr(0, line.find(' '));
            if (name.rfind("isrnf", 0) != 0 || name.size() == 5 ||
                name.find_first_not_of("0123456789", 5) != std::string::npos)
                continue;
            const std::string pid = name.substr(5);
            if (::access(("/proc/" + pid).c_str(), F_OK) == 0)
                continue;
            std::istringstream pids(ip({"netns", "pids", name.c_str()}).out);
            for (int p = 0; pids >> p;)
                if (p > 1)
                    ::kill(p, SIGKILL);
            ip({"link", "del", ("nfh" + pid).c_str()});
            ip({"netns", "del", name.c_str()});
        }
    }
    test::ProcessResult inNs(const QStringList& command) {
        QStringList args{"netns", "exec", QString::fromStdString(ns)};
        args << command;
        return ip(args);
    }
    // Sets the namespace up; an error message, empty if it worked.
    std::string setUp() {
        const QString n = QString::fromStdString(ns), h = QString::fromStdString(hostDev),
                      d = QString::fromStdString(nsDev);
        for (const QStringList& a : std::vector<QStringList>{
                 {"netns", "add", n},
                 {"-n", n, "link", "set", "lo", "up"},
                 {"link", "add", h, "type", "veth", "peer", "name", d, "netns", n},
                 {"addr", "add", QString::fromStdString(hostAddr + "/30"), "dev", h},
                 {"link", "set", h, "up"},
                 {"-n", n, "addr", "add", QString::fromStdString(nsAddr + "/30"), "dev", d},
                 {"-n", n, "link", "set", d, "up"}}) {
            auto r = ip(a);
            if (r.exitCode != 0)
                return "ip " + a.join(' ').toStdString() + ": " + r.err;
        }
        return {};
    }
    // The far end of the cable goes down (and comes back): our side keeps its
    // route, so packets go nowhere and connections time out, as when a
    // kiosk's uplink dies. (Downing our side instead would send them to the
    // default route.)
    bool linkDown() {
        return ip({"-n", ns.c_str(), "link", "set", nsDev.c_str(), "down"}).exitCode == 0;
    }
    bool linkUp() {
        return ip({"-n", ns.c_str(), "link", "set", nsDev.c_str(), "up"}).exitCode == 0;
    }

    // Random loss of `percent` of the packets crossing the veth, both ways.
    std::string setLoss(int percent) {
        clearLoss();
        const std::string dev = nsDev, p = std::to_string(percent);
        const std::string script = "table inet isrloss {\n"
                                   " chain in { type filter hook input priority 0; iifname \"" +
                                   dev + "\" numgen random mod 100 < " + p +
                                   " drop; }\n"
                                   " chain out { type filter hook output priority 0; oifname \"" +
                                   dev + "\" numgen random mod 100 < " + p + " drop; }\n}\n";
        auto r = test::runProcess("ip", {"netns", "exec", ns.c_str(), "nft", "-f", "-"},
                                  QByteArray::fromStdString(script));
        return r.exitCode == 0 ? std::string() : "nft: " + r.err;
    }
    void clearLoss() { inNs({"nft", "delete", "table", "inet", "isrloss"}); }

    // tbf on both ends, so a batch of a few MB takes seconds and a fault can
    // land in its middle.
    bool shape(const char* rate) {
        bool ok = test::runProcess("tc", {"qdisc", "replace", "dev", hostDev.c_str(), "root", "tbf",
                                          "rate", rate, "burst", "64kb", "latency", "200ms"})
                      .exitCode == 0;
        ok = ok && inNs({"tc", "qdisc", "replace", "dev", nsDev.c_str(), "root", "tbf", "rate",
                         rate, "burst", "64kb", "latency", "200ms"})
                           .exitCode == 0;
        return ok;
    }
    void unshape() {
        test::runProcess("tc", {"qdisc", "del", "dev", hostDev.c_str(), "root"});
        inNs({"tc", "qdisc", "del", "dev", nsDev.c_str(), "root"});
    }

    // Bytes our end of the veth has sent / received.
    std::uint64_t counter(const char* which) const {
        std::ifstream f("/sys/class/net/" + hostDev + "/statistics/" + which);
        std::uint64_t v = 0;
        f >> v;
        return v;
    }
    std::uint64_t sent() const { return counter("tx_bytes"); }
    std::uint64_t received() const { return counter("rx_bytes"); }

private:
    bool created_ = false;
};

// Runs `fault` on a thread once `traffic()` has grown by `after` bytes (the
// transfer is under way), unless stop() comes first.
class FaultWhenBusy {
public:
    FaultWhenBusy(std::function<std::uint64_t()> traffic, std::uint64_t after,
                  std::function<void()> fault)
        : thread_([this, traffic = std::move(traffic), after, fault = std::move(fault)] {
              const std::uint64_t base = traffic();
              const auto deadline = Clock::now() + 600s;
              while (!stop_ && Clock::now() < deadline) {
                  if (traffic() - base >= after) {
                      firedAt = Clock::now();
                      fired = true;
                      fault();
                      return;
                  }
                  std::this_thread::sleep_for(5ms);
              }
          }) {}
    ~FaultWhenBusy() { stop(); }
    void stop() {
        stop_ = true;
        if (thread_.joinable())
            thread_.join();
    }
    std::atomic<bool> fired{false};
    Clock::time_point firedAt;

private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

struct Row {
    std::string fault, outcome, timeToError, dataChecked;
};

} // namespace

class TestNetworkFaults : public QObject {
    Q_OBJECT
    std::unique_ptr<test::TempDir> dir_;
    std::unique_ptr<LogCapture> logs_;
    std::unique_ptr<NetLab> lab_;
    std::unique_ptr<test::RgwCluster> rgw_;
    test::GuestImage guest_;
    std::string storeUrl_;
    std::unique_ptr<store::Store> admin_; // the test's own view of the store
    std::unique_ptr<parcel::Parcels> parcels_;
    std::vector<Row> rows_;
    std::string outageMessage_; // what the kiosk shows when the link is down

    // The kiosk's options, with short timeouts (see the top of the file).
    store::StoreOptions options() const {
        store::StoreOptions o = rgw_->env().options();
        o.connectTimeoutMs = 3000;
        o.stallTimeoutMs = 3000;
        return o;
    }

    std::unique_ptr<store::Store> openKioskStore(const store::StoreOptions& o) {
        auto s = store::openStore(storeUrl_, o);
        if (!s.ok())
            qFatal("open %s: %s", storeUrl_.c_str(), s.error().describe().c_str());
        return std::move(*s);
    }

    // Incompressible chunks, encoded as the kiosk would, so that fsck can
    // tell a torn object from a whole one (a chunk's name is its hash).
    std::vector<chunk::EncodedChunk> makeChunks(int count, std::size_t size) {
        std::vector<chunk::EncodedChunk> out;
        for (int i = 0; i < count; ++i) {
            Bytes plain = crypto::randomBytes(size);
            out.push_back(chunk::encode(parcels_->secrets().convergence.view(), plain));
        }
        return out;
    }
    std::vector<store::PutItem> putItems(const std::vector<chunk::EncodedChunk>& chunks) {
        std::vector<store::PutItem> items;
        for (const auto& c : chunks)
            items.push_back({parcel::chunkKey("alice", c.ref.name), c.ciphertext, true});
        return items;
    }
    static std::vector<std::string> keysOf(const std::vector<store::PutItem>& items) {
        std::vector<std::string> keys;
        for (const auto& i : items)
            keys.push_back(i.key);
        return keys;
    }

    std::string fsck() {
        auto shallow = parcel::fsckStore(*admin_);
        if (!shallow.ok())
            return "fsck failed: " + shallow.error().describe();
        auto deep = parcel::fsckUser(*parcels_);
        if (!deep.ok())
            return "fsck failed: " + deep.error().describe();
        std::string problems;
        for (const auto& p : shallow->problems)
            problems += p + "; ";
        for (const auto& p : deep->problems)
            problems += p + "; ";
        return problems.empty() ? "clean" : problems;
    }

    void printTable() {
        std::printf("\nNetwork faults (radosgw in a network namespace, S3 connect/stall "
                    "timeout 3 s, 5 retries)\n");
        std::printf("%-46s | %-58s | %-14s | %s\n", "fault", "outcome", "time to error",
                    "data checked");
        for (const auto& r : rows_)
            std::printf("%-46s | %-58s | %-14s | %s\n", r.fault.c_str(), r.outcome.c_str(),
                        r.timeToError.c_str(), r.dataChecked.c_str());
        if (!outageMessage_.empty())
            std::printf("Suspend & Leave with the link down reports: %s\n", outageMessage_.c_str());
        std::fflush(stdout);
    }

    // ---- the guest ----

    std::unique_ptr<test::SerialConsole> console(session::Session& sess) {
        auto c = test::SerialConsole::connect(sess.serialSocketPath(), 60s);
        if (!c.ok())
            return nullptr;
        if (!(*c)->waitForShell(300s).ok())
            return nullptr;
        return std::move(*c);
    }
    test::GuestCounter readGuest(test::SerialConsole& c) { return test::readCounter(c, 60s); }

    session::KioskConfig kioskConfig() {
        session::KioskConfig config;
        config.kioskId = "kiosk-net";
        config.stateDir = dir_->file("kiosk");
        config.storeUrl = storeUrl_;
        config.storeOptions = options();
        config.guestDir = guest_.dir;
        config.cacheCapBytes = 1ull << 30;
        config.serialConsole = true;
        config.accelerator = "tcg";
        // Heartbeats fail during the outage too; the VM must not care.
        config.heartbeatInterval = 2s;
        return config;
    }

private slots:
    void initTestCase() {
        if (::geteuid() != 0)
            test::skipAll("needs root (network namespace, veth pair, nftables, tc)");
        test::requirePrograms({"ip", "nft", "tc", "qemu-system-x86_64"});
        guest_ = test::requireGuest();
        dir_ = std::make_unique<test::TempDir>();
        logs_ = std::make_unique<LogCapture>();
        lab_ = NetLab::create();
        // skipAll() exits at once: tear the namespace down first.
        if (auto why = lab_->setUp(); !why.empty()) {
            lab_.reset();
            test::skipAll("cannot build a network namespace with a veth pair: " + why);
        }
        // This kernel may lack netem; the loss comes from nftables. Probe it.
        if (auto why = lab_->setLoss(1); !why.empty()) {
            lab_.reset();
            test::skipAll("nftables cannot drop packets at random here (" + why +
                          "); install nftables");
        }
        lab_->clearLoss();
        auto rgw = test::RgwCluster::start(dir_->file("ceph"), {"ip", "netns", "exec", lab_->ns},
                                           lab_->nsAddr);
        QVERIFY2(rgw.ok(), describe(rgw).c_str());
        rgw_ = std::move(*rgw);
        QVERIFY2(rgw_->env().hostPort.rfind(lab_->nsAddr + ":", 0) == 0,
                 rgw_->env().endpoint.c_str());

        storeUrl_ = rgw_->env().url("netfaults");
        admin_ = openKioskStore(rgw_->env().options());
        auto made = test::createGuestParcel(*admin_, guest_, "alice", "pw", "desk", 128);
        QVERIFY2(made.ok(), describe(made).c_str());
        auto secrets = parcel::signIn(*admin_, "alice", "pw");
        QVERIFY2(secrets.ok(), describe(secrets).c_str());
        parcels_ = std::make_unique<parcel::Parcels>(*admin_, std::move(*secrets));
    }

    void cleanupTestCase() {
        if (lab_) {
            lab_->linkUp();
            lab_->clearLoss();
            lab_->unshape();
        }
        if (rgw_)
            rgw_->resumeRadosgw();
        parcels_.reset();
        admin_.reset();
        rgw_.reset(); // stops Ceph inside the namespace
        lab_.reset(); // then the namespace and the veth pair
        if (!rows_.empty())
            printTable();
        logs_.reset();
    }

    // Each case starts on a clean link, whatever a failed one left.
    void init() {
        lab_->linkUp();
        lab_->clearLoss();
        lab_->unshape();
        rgw_->resumeRadosgw();
    }

    // a. The cable is cut while a batch is on the wire.
    void linkDownMidBatch() {
        store::StoreOptions o = options();
        o.maxRetries = 3;
        // Fewer in flight than the batch holds: the rest is queued when the
        // link dies and must fail at once, not each after its own retries.
        o.maxInFlight = 8;
        auto kiosk = openKioskStore(o);
        const auto chunks = makeChunks(32, 512 << 10); // 16 MiB
        const auto items = putItems(chunks);
        QVERIFY(lab_->shape("40mbit"));

        // -- PUTs --
        std::size_t mark = logs_->mark();
        std::vector<Status> put;
        {
            FaultWhenBusy cut([&] { return lab_->sent(); }, 2u << 20, [&] { lab_->linkDown(); });
            put = kiosk->putMany(items);
            cut.stop();
            QVERIFY2(cut.fired, "the batch finished before the link went down");
            const double tte = secondsSince(cut.firedAt);
            int failed = 0, landed = 0, gaveUp = 0;
            for (const auto& st : put) {
                if (st.ok()) {
                    ++landed;
                    continue;
                }
                ++failed;
                QVERIFY2(st.error().code == Errc::Transient, st.error().describe().c_str());
                gaveUp += st.error().message.find("gave up") != std::string::npos;
            }
            QVERIFY2(failed > 0, "no PUT failed with the link down");
            QVERIFY2(gaveUp > 0, "the queued PUTs each waited out their own retries");
            const int retries = logs_->count(mark, "; retry ");
            QVERIFY(lab_->linkUp());
            // Nothing torn: each object is whole or absent.
            int whole = 0, absent = 0;
            auto back = admin_->getMany(keysOf(items));
            for (std::size_t i = 0; i < items.size(); ++i) {
                if (!back[i].ok()) {
                    QCOMPARE(back[i].error().code, Errc::NotFound);
                    ++absent;
                } else {
                    QVERIFY2(*back[i] == items[i].data, items[i].key.c_str());
                    ++whole;
                }
            }
            QVERIFY(whole >= landed);
            auto again = kiosk->putMany(items);
            for (const auto& st : again)
                QVERIFY2(st.ok() || st.error().code == Errc::AlreadyExists, describe(st).c_str());
            rows_.push_back(
                {"a. link down mid-batch: 32 PUTs x 512 KiB",
                 std::to_string(failed) + " Transient (" + std::to_string(gaveUp) +
                     " gave up at once), " + std::to_string(landed) + " ok; " +
                     std::to_string(retries) + " retries; link up: batch ok",
                 seconds(tte),
                 std::to_string(whole) + " whole, " + std::to_string(absent) + " absent, 0 torn"});
        }

        // -- GETs --
        mark = logs_->mark();
        {
            FaultWhenBusy cut([&] { return lab_->received(); }, 2u << 20,
                              [&] { lab_->linkDown(); });
            auto got = kiosk->getMany(keysOf(items));
            cut.stop();
            QVERIFY2(cut.fired, "the batch finished before the link went down");
            const double tte = secondsSince(cut.firedAt);
            int failed = 0, ok = 0, gaveUp = 0;
            for (std::size_t i = 0; i < got.size(); ++i) {
                if (got[i].ok()) {
                    QVERIFY(*got[i] == items[i].data);
                    ++ok;
                } else {
                    QVERIFY2(got[i].error().code == Errc::Transient,
                             got[i].error().describe().c_str());
                    ++failed;
                    gaveUp += got[i].error().message.find("gave up") != std::string::npos;
                }
            }
            QVERIFY2(failed > 0, "no GET failed with the link down");
            QVERIFY2(gaveUp > 0, "the queued GETs each waited out their own retries");
            const int retries = logs_->count(mark, "; retry ");
            QVERIFY(lab_->linkUp());
            auto again = kiosk->getMany(keysOf(items));
            for (std::size_t i = 0; i < again.size(); ++i) {
                QVERIFY2(again[i].ok(), describe(again[i]).c_str());
                QVERIFY(*again[i] == items[i].data);
            }
            rows_.push_back({"a. link down mid-batch: 32 GETs x 512 KiB",
                             std::to_string(failed) + " Transient (" + std::to_string(gaveUp) +
                                 " gave up at once), " + std::to_string(ok) + " ok; " +
                                 std::to_string(retries) + " retries; link up: batch ok",
                             seconds(tte), "32/32 read back equal"});
        }
        lab_->unshape();
        const std::string f = fsck();
        QCOMPARE(f, std::string("clean"));
        rows_.back().dataChecked += "; fsck clean";
    }

    // b. Packets lost at random both ways while data goes up and down.
    void packetLoss() {
        store::StoreOptions o = options();
        o.stallTimeoutMs = 5000;
        auto kiosk = openKioskStore(o);
        const auto chunks = makeChunks(32, 128 << 10); // 4 MiB
        const auto items = putItems(chunks);
        QCOMPARE(lab_->setLoss(15), std::string());
        const std::size_t mark = logs_->mark();
        auto t0 = Clock::now();
        auto put = kiosk->putMany(items);
        const double upSecs = secondsSince(t0);
        for (const auto& st : put)
            QVERIFY2(st.ok() || st.error().code == Errc::AlreadyExists, describe(st).c_str());
        t0 = Clock::now();
        auto got = kiosk->getMany(keysOf(items));
        const double downSecs = secondsSince(t0);
        const int retries = logs_->count(mark, "; retry ");
        lab_->clearLoss();
        for (std::size_t i = 0; i < got.size(); ++i) {
            QVERIFY2(got[i].ok(), describe(got[i]).c_str());
            QVERIFY(*got[i] == items[i].data);
            auto decoded = chunk::decode(chunks[i].ref, *got[i]);
            QVERIFY2(decoded.ok(), describe(decoded).c_str());
        }
        rows_.push_back({"b. 15% packet loss both ways: 4 MiB up, 4 MiB down",
                         "all ok: up " + seconds(upSecs) + ", down " + seconds(downSecs) + "; " +
                             std::to_string(retries) + " S3 retries",
                         "-", "32/32 chunks decoded and equal"});
    }

    // c and d: the session.
    void sessionOutage() {
        session::Listener listener;
        // Bytes sent since the current Suspend & Leave began (0 outside one):
        // a fault "mid-upload" fires once a MiB of it has crossed the link.
        std::atomic<bool> suspending{false};
        std::atomic<std::uint64_t> sentAtSuspend{0};
        listener.stageChanged = [&](session::Stage s) {
            if (s == session::Stage::Suspending)
                sentAtSuspend = lab_->sent();
            suspending = s == session::Stage::Suspending;
        };
        auto suspendUpload = [&]() -> std::uint64_t {
            return suspending ? lab_->sent() - sentAtSuspend : 0;
        };
        auto created = session::Session::create(kioskConfig(), listener);
        QVERIFY2(created.ok(), describe(created).c_str());
        auto& sess = **created;

        // ---- first use boots; d1: radosgw frozen mid-upload of its suspend ----
        auto st = sess.resume("alice", "pw", "desk");
        QVERIFY2(st.ok(), describe(st).c_str());
        std::string bootId;
        long counter = -1;
        {
            auto c = console(sess);
            QVERIFY2(c, "no shell on the guest's serial console");
            auto g = readGuest(*c);
            QVERIFY2(g.counter >= 0, "no counter in the guest");
            bootId = g.bootId;
            counter = g.counter;
        }
        {
            const std::size_t mark = logs_->mark();
            FaultWhenBusy freeze(suspendUpload, 1u << 20, [&] {
                rgw_->stopRadosgw();
                std::this_thread::sleep_for(8s);
                rgw_->resumeRadosgw();
            });
            auto t0 = Clock::now();
            st = sess.suspendAndLeave();
            const double secs = secondsSince(t0);
            freeze.stop();
            rgw_->resumeRadosgw();
            QVERIFY2(freeze.fired, "the suspend's upload never got under way");
            const int retries = logs_->count(mark, "; retry ");
            std::string outcome, timeToError = "-";
            if (st.ok()) {
                outcome = "suspend ok after waiting; " + std::to_string(retries) + " retries";
            } else {
                QCOMPARE(sess.failure()->kind, session::ErrorKind::StoreUnreachable);
                outcome = "StoreUnreachable after " + std::to_string(retries) + " retries; ";
                timeToError = seconds(secs);
                st = sess.retry("pw");
                QVERIFY2(st.ok(), describe(st).c_str());
                outcome += "retry() ok";
            }
            QCOMPARE(sess.committedVersion(), std::uint64_t(2));
            rows_.push_back({"d. radosgw SIGSTOP 8 s mid-upload of a suspend", outcome, timeToError,
                             "v2 committed (suspend took " + seconds(secs) + ")"});
        }

        // ---- c: the resumed session, all hoarded, loses the link ----
        st = sess.resume("alice", "pw", "desk");
        QVERIFY2(st.ok(), describe(st).c_str());
        QCOMPARE(sess.baseVersion(), std::uint64_t(2));
        auto c = console(sess);
        QVERIFY2(c, "no shell after the restore");
        auto g = readGuest(*c);
        QCOMPARE(g.bootId, bootId);
        QVERIFY2(g.counter >= counter, "the counter went back");
        QElapsedTimer hoardWait;
        hoardWait.start();
        while (hoardWait.elapsed() < 300000) {
            auto h = sess.hoard();
            if (h.chunksTotal > 0 && h.chunksDone >= h.chunksTotal)
                break;
            QThread::msleep(200);
        }
        auto h = sess.hoard();
        QVERIFY2(h.chunksTotal > 0 && h.chunksDone >= h.chunksTotal, "the hoard did not finish");

        const std::size_t mark = logs_->mark();
        QVERIFY(lab_->linkDown());
        const auto downAt = Clock::now();
        const long before = readGuest(*c).counter;
        // The guest writes to its disk while the store is gone (overlay).
        auto w = c->run("echo outage > /home/outage && sync && cat /home/outage", 60s);
        QVERIFY2(w.ok() && w->exitStatus == 0 && w->text.find("outage") != std::string::npos,
                 "the guest could not use its disk during the outage");
        // The VM keeps running on cached data: its counter moves on.
        long during = before;
        QElapsedTimer moving;
        moving.start();
        while (during <= before + 3 && moving.elapsed() < 120000) {
            QThread::msleep(500);
            during = readGuest(*c).counter;
        }
        QVERIFY2(during > before + 3, "the guest's counter stopped while the store was away");
        QCOMPARE(sess.stage(), session::Stage::Running);
        c.reset();

        auto t0 = Clock::now();
        st = sess.suspendAndLeave();
        const double tte = secondsSince(t0);
        QVERIFY2(!st.ok(), "Suspend & Leave succeeded without a link");
        QCOMPARE(sess.stage(), session::Stage::Failed);
        auto failure = sess.failure();
        QVERIFY(failure.has_value());
        QCOMPARE(failure->stage, session::Stage::Suspending);
        QCOMPARE(failure->kind, session::ErrorKind::StoreUnreachable);
        // What the person reads: sending failed, try again when the store
        // can be reached (the renderer the kiosk and isrctl use).
        const std::string text = isr::ui::text::failure(*failure).toStdString();
        QVERIFY2(text.find("store can be reached") != std::string::npos ||
                     text.find("cannot reach") != std::string::npos,
                 text.c_str());
        // As facts: sending (memory, disk or the commit) failed; version 2 is safe.
        QVERIFY2(failure->cause == session::FailureCause::MemoryUpload ||
                     failure->cause == session::FailureCause::DiskUpload ||
                     failure->cause == session::FailureCause::Commit,
                 session::failureCauseName(failure->cause));
        QVERIFY(failure->lastSave.has_value());
        QCOMPARE(failure->lastSave->version, std::uint64_t(2));
        outageMessage_ = text;
        const int retries = logs_->count(mark, "; retry ");
        const int heartbeats = logs_->count(mark, "heartbeat:");
        const double outage = secondsSince(downAt);
        QVERIFY(lab_->linkUp());
        // Nothing was committed by the failed attempt.
        auto latest = parcels_->latest("desk");
        QVERIFY2(latest.ok(), describe(latest).c_str());
        QCOMPARE(*latest, std::uint64_t(2));
        st = sess.retry("pw");
        QVERIFY2(st.ok(), describe(st).c_str());
        QCOMPARE(sess.committedVersion(), std::uint64_t(3));
        rows_.push_back({"c. link down, session running, hoard complete",
                         "VM ran on (counter " + std::to_string(before) + "->" +
                             std::to_string(during) + ", disk write ok); suspend: StoreUnreachable",
                         seconds(tte), "nothing committed (latest v2)"});
        rows_.push_back({"c. ... link up after " + seconds(outage, 0) + ", retry()",
                         "v3 committed; " + std::to_string(retries) + " S3 retries, " +
                             std::to_string(heartbeats) + " failed heartbeats meanwhile",
                         "-", "next resume: see below"});

        // ---- d2: radosgw killed and restarted mid-upload ----
        st = sess.resume("alice", "pw", "desk");
        QVERIFY2(st.ok(), describe(st).c_str());
        QCOMPARE(sess.baseVersion(), std::uint64_t(3));
        c = console(sess);
        QVERIFY2(c, "no shell after the restore");
        g = readGuest(*c);
        QCOMPARE(g.bootId, bootId);
        QVERIFY2(g.counter >= during, "the counter went back");
        auto r = c->run("cat /home/outage", 60s);
        QVERIFY2(r.ok() && r->text.find("outage") != std::string::npos,
                 "the disk write made during the outage is lost");
        rows_.back().dataChecked = "v3 resumed: counter " + std::to_string(g.counter) +
                                   " >= " + std::to_string(during) +
                                   ", same boot, outage file there";
        // 24 MiB of fresh random data in guest RAM: an upload that lasts
        // seconds over the shaped link, so the kill lands in its middle.
        auto junk = c->run(
            "dd if=/dev/urandom of=/run/junk bs=1M count=24 2>/dev/null; md5sum /run/junk", 120s);
        QVERIFY2(junk.ok() && junk->exitStatus == 0, "cannot fill the guest's memory");
        const std::string junkSum = junk->text.substr(0, 32);
        counter = readGuest(*c).counter;
        c.reset();
        {
            const std::size_t mark2 = logs_->mark();
            QVERIFY(lab_->shape("40mbit"));
            std::atomic<double> downFor{0};
            FaultWhenBusy restart(suspendUpload, 1u << 20, [&] {
                const auto killedAt = Clock::now();
                if (auto k = rgw_->killRadosgw(); !k.ok())
                    qWarning("%s", k.error().describe().c_str());
                if (auto s = rgw_->restartRadosgw(); !s.ok())
                    qWarning("%s", s.error().describe().c_str());
                downFor = secondsSince(killedAt);
            });
            auto t1 = Clock::now();
            st = sess.suspendAndLeave();
            const double secs = secondsSince(t1);
            restart.stop();
            lab_->unshape();
            QVERIFY2(restart.fired, "the suspend's upload never got under way");
            const int retries2 = logs_->count(mark2, "; retry ");
            std::string outcome, timeToError = "-";
            if (st.ok()) {
                outcome = "suspend ok after waiting; " + std::to_string(retries2) + " retries";
            } else {
                QCOMPARE(sess.failure()->kind, session::ErrorKind::StoreUnreachable);
                outcome =
                    "StoreUnreachable after " + std::to_string(retries2) + " retries; retry() ok";
                timeToError = seconds(secs);
                st = sess.retry("pw");
                QVERIFY2(st.ok(), describe(st).c_str());
            }
            QCOMPARE(sess.committedVersion(), std::uint64_t(4));
            rows_.push_back({"d. radosgw killed mid-upload, back after " + seconds(downFor),
                             outcome, timeToError, "v4 committed"});
        }

        // ---- the last version resumes with everything ----
        st = sess.resume("alice", "pw", "desk");
        QVERIFY2(st.ok(), describe(st).c_str());
        QCOMPARE(sess.baseVersion(), std::uint64_t(4));
        c = console(sess);
        QVERIFY2(c, "no shell after the restore");
        g = readGuest(*c);
        QCOMPARE(g.bootId, bootId);
        QVERIFY2(g.counter >= counter, "the counter went back");
        junk = c->run("md5sum /run/junk", 60s);
        QVERIFY2(junk.ok() && junk->text.substr(0, 32) == junkSum,
                 "the guest's memory came back different");
        rows_.back().dataChecked += "; resumed: counter " + std::to_string(g.counter) +
                                    " >= " + std::to_string(counter) + ", 24 MiB RAM md5 equal";
        c.reset();
        QVERIFY(sess.abandon().ok());
        const std::string f = fsck();
        QCOMPARE(f, std::string("clean"));
        rows_.back().dataChecked += "; fsck clean";
    }

    // e. Lazy memory (issue #17) with the S3 link cut: a kiosk with
    //    lazy_memory saves the parcel lazily; at a kiosk with an empty cache
    //    the next resume runs with most of its RAM still in the store (the
    //    memory hoard throttled to 256 KiB/s). The link goes down: the
    //    guest's read of 16 MiB it wrote late waits (no SIGBUS), the hoard
    //    says the store is unreachable, the VM stays Running; link up: the
    //    read gives the bytes written, and Suspend & Leave commits.
    void lazySessionOutage() {
        session::KioskConfig config = kioskConfig();
        config.lazyMemory = true;
        config.hoardBandwidth = 256 * 1024;
        auto before = parcels_->latest("desk");
        QVERIFY2(before.ok(), describe(before).c_str());
        std::string sum;
        {
            auto created = session::Session::create(config, {});
            QVERIFY2(created.ok(), describe(created).c_str());
            auto& sess = **created;
            auto st = sess.resume("alice", "pw", "desk");
            QVERIFY2(st.ok(), describe(st).c_str());
            auto c = console(sess);
            QVERIFY2(c, "no shell after the restore");
            auto out = c->run("dd if=/dev/urandom of=/run/late bs=1M count=16 2>/dev/null; "
                              "md5sum /run/late",
                              120s);
            QVERIFY(out.ok() && out->exitStatus == 0);
            sum = out->text.substr(0, 32);
            c.reset();
            st = sess.suspendAndLeave();
            QVERIFY2(st.ok(), describe(st).c_str());
        }
        auto saved = parcels_->manifest("desk", *before + 1);
        QVERIFY2(saved.ok(), describe(saved).c_str());
        QVERIFY2(saved->lazyMemory(), "the lazy kiosk did not save the RAM as chunks");
        std::filesystem::remove_all(config.stateDir + "/cache");

        auto created = session::Session::create(config, {});
        QVERIFY2(created.ok(), describe(created).c_str());
        auto& sess = **created;
        auto st = sess.resume("alice", "pw", "desk");
        QVERIFY2(st.ok(), describe(st).c_str());
        const std::string serial = sess.serialSocketPath();
        QVERIFY(lab_->linkDown());
        const auto downAt = Clock::now();
        std::atomic<bool> done{false};
        std::string during;
        std::thread reader([&] {
            auto c = test::SerialConsole::connect(serial, 60s);
            if (!c.ok()) {
                during = "serial: " + c.error().describe();
            } else if (auto shell = (*c)->waitForShell(600s); !shell.ok()) {
                during = "shell: " + shell.error().describe();
            } else {
                auto out = (*c)->run("md5sum /run/late", 600s);
                during = out.ok() ? out->text : "md5sum: " + out.error().describe();
            }
            done = true;
        });
        struct Join {
            std::thread& t;
            NetLab& lab;
            ~Join() {
                lab.linkUp();
                if (t.joinable())
                    t.join();
            }
        } join{reader, *lab_};
        QTRY_VERIFY_WITH_TIMEOUT(sess.hoard().problem == session::ErrorKind::StoreUnreachable,
                                 120000);
        const auto h = sess.hoard();
        QVERIFY(h.memoryChunksDone < h.memoryChunksTotal);
        QThread::sleep(5);
        const bool doneDuring = done;
        QCOMPARE(sess.stage(), session::Stage::Running);
        const double outage = secondsSince(downAt);
        QVERIFY(lab_->linkUp());
        reader.join();
        QVERIFY2(!doneDuring, "the late blob was read while the link was down: not remote");
        // The guest's console may carry the kernel's complaints about a vCPU
        // that waited this long (RCU stall warnings) around the answer; the
        // bytes are checked again on a console of its own.
        if (during.find(sum) == std::string::npos)
            qWarning("the read during the outage answered: %s", during.c_str());
        QCOMPARE(sess.stage(), session::Stage::Running);
        {
            auto c = console(sess);
            QVERIFY2(c, "no shell after the outage");
            auto again = c->run("md5sum /run/late", 120s);
            QVERIFY2(again.ok() && again->text.find(sum) != std::string::npos,
                     again.ok() ? again->text.c_str() : again.error().describe().c_str());
        }
        const std::string line = "memory hoard " + std::to_string(h.memoryChunksDone) + " of " +
                                 std::to_string(h.memoryChunksTotal) + " chunks";
        st = sess.suspendAndLeave();
        QVERIFY2(st.ok(), describe(st).c_str());
        QCOMPARE(sess.committedVersion(), *before + 2);
        rows_.push_back(
            {"e. lazy memory, link down " + seconds(outage, 0) + " with RAM remote",
             "guest's read of 16 MiB waited; hoard: store unreachable (" + line + "); VM Running",
             "-", "link up: md5 equal; suspend committed v" + std::to_string(*before + 2)});
        QCOMPARE(fsck(), std::string("clean"));
    }
};

QTEST_GUILESS_MAIN(TestNetworkFaults)
#include "test_network_faults.moc"
