// bench_fleet: a fleet of kiosks against one store (issue #18). N simulated
// kiosks, one thread each, run the store side of back-to-back sessions
// against one store -- FileStore on a local directory and S3Store on the test
// radosgw -- for N = 1, 10, 50 and 200 users, and report sessions per minute,
// p50/p99 resume-side and Suspend & Leave-side store time, bytes, requests,
// retries and errors, next to N = 1 of the same store (ratios: the machine is
// shared and noisy). Afterwards every user's parcel is checked (fsck with the
// user's keys, the newest version is the last one committed, no lock left
// behind) and every lock hold is checked against every other hold of the
// same parcel: the bench fails on lost data, overlapping holds or any error,
// never on time. See tests/bench/README.md ("The fleet benchmark").
//
//   bench_fleet [--quick] [--users 1,10,50,200] [--stores file,s3]
//               [--seconds 60] [--scale 16] [--cold 0.5] [--contend 0.1]
//               [--think-ms 0] [--heartbeat-ms 1000] [--out DIR]
//
// A session is what core/session/session.cpp does against the store, through
// the same core calls, minus the VM: open the store, sign in
// (parcel::signIn), list the user's parcels, take the lock (LockLease), read
// the newest manifest and check its chain (Parcels::latest, manifest,
// verifyChain), heartbeat while held, stream the memory image through
// RestoreStream into a FIFO (a reader drains it where QEMU would load it),
// fetch the disk's hot set (ChunkSource::prefetch, the hoard's call, 4
// threads), then Suspend & Leave: upload the new memory chunks as
// MemoryImageUpload does (put-if-absent, unasked), the new disk chunks as
// uploadDiskAndCommit does (asking first), confirm the lock, commit the next
// version, release the lock. Each kiosk has its own chunk cache (tmpfs); a
// "cold" session starts with it empty (a kiosk the user never used), a
// "warm" one with the previous version in it (the user's own kiosk).
//
// Decisions (written down here because they shape the figures):
//  - Threads, not processes: one thread per kiosk plus the session's own
//    (RestoreStream's 16 fetchers, 4 hoard threads, the heartbeat). The
//    client's CPU is measured (this process's CPU time against radosgw's
//    and the OSD's) so a client-bound run shows as one.
//  - Sign-in uses the minimal test KDF. Argon2id at the store default
//    (moderate: 3 passes, 256 MiB) is the kiosk's own CPU and memory, not
//    the store's, and 200 of them at once would measure this machine's RAM;
//    it is timed once on its own and printed.
//  - The VM's work is left out: no save, no restore, no chunking of a save
//    file. New chunks are encoded before the Suspend & Leave clock starts
//    (the kiosk's CPU); what is timed is store traffic and the client code
//    that drives it.
//  - Sizes are the walk-up benchmark's parcel (results-2026-11-26, state.json
//    and README.md) divided by --scale: see Shape.
//  - No think time by default: every kiosk starts its next session as soon
//    as the last one ended, the storm of a shift change. A real session
//    lasts hours, so N kiosks here stand for many more people per hour.

#include "cache/cache.h"
#include "cache/chunk_source.h"
#include "ceph_rgw.h"
#include "chunk/chunk.h"
#include "crypto/crypto.h"
#include "parcel/lock_lease.h"
#include "parcel/parcel.h"
#include "session/restore_stream.h"
#include "store/counting_store.h"
#include "store/store.h"
#include "testsupport.h"
#include "util/log.h"
#include "util/posix.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace isr;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kParcel = "desk";
constexpr std::uint32_t kChunkSize = 128 * 1024;

double since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// ---- the walk-up parcel, scaled ---------------------------------------------

// The walk-up benchmark's measured state (tests/bench/results-2026-11-26,
// state.json): 1 GiB guest with 96 MiB filled, 48 MiB written to the disk, a
// tenth of both rewritten between suspends.
constexpr double kWalkupMemoryChunks = 4099;
constexpr double kWalkupMemoryImageBytes = 259608851;    // plaintext of the image
constexpr double kWalkupMemoryCipherBytes = 93997358;    // = a cold resume's download
constexpr double kWalkupMemoryNewCipherBytes = 13256850; // not in the previous version
constexpr double kWalkupDiskChunks = 529;                // non-zero: the hot set
constexpr double kWalkupDiskCipherBytes = 27981325;
constexpr double kWalkupDiskSize = 218103808;
constexpr double kWalkupDiskChangedShare = 0.1; // "rewrites a tenth of every file"

// One user's parcel and one session's change, the walk-up's divided by scale.
// Chunk contents are random bytes followed by zeros; the random share of each
// chunk is uniform in [0, 2 x the walk-up's ciphertext/plaintext ratio], so
// counts, plaintext sizes and ciphertext sizes all match the walk-up's on
// average (zstd keeps random bytes and squeezes the zeros away).
struct Shape {
    unsigned memoryChunks = 0; // the memory image's recipe
    unsigned memoryNew = 0;    // replaced by each Suspend & Leave
    std::uint32_t memoryMinBytes = 16 << 10;
    std::uint32_t memoryMaxBytes = 0; // plaintext length uniform in [min, max]
    double memoryRandomMax = 0;
    unsigned diskChunks = 0; // the disk's table (the rest of the disk is zeros)
    unsigned hotChunks = 0;  // non-zero chunks, all in the working set
    unsigned diskNew = 0;    // hot chunks rewritten by each session
    double diskRandomMax = 0;

    static Shape scaled(double scale) {
        Shape s;
        s.memoryChunks = std::max(8u, unsigned(std::lround(kWalkupMemoryChunks / scale)));
        s.memoryNew =
            std::max(1u, unsigned(std::lround(s.memoryChunks * kWalkupMemoryNewCipherBytes /
                                              kWalkupMemoryCipherBytes)));
        const double avg = kWalkupMemoryImageBytes / kWalkupMemoryChunks;
        s.memoryMaxBytes = std::uint32_t(2 * avg) - s.memoryMinBytes;
        s.memoryRandomMax = 2 * kWalkupMemoryCipherBytes / kWalkupMemoryImageBytes;
        s.hotChunks = std::max(2u, unsigned(std::lround(kWalkupDiskChunks / scale)));
        s.diskChunks =
            std::max(s.hotChunks, unsigned(std::lround(kWalkupDiskSize / kChunkSize / scale)));
        s.diskNew = std::max(1u, unsigned(std::lround(s.hotChunks * kWalkupDiskChangedShare)));
        s.diskRandomMax = 2 * kWalkupDiskCipherBytes / (kWalkupDiskChunks * kChunkSize);
        return s;
    }
};

chunk::EncodedChunk makeChunk(ByteView secret, std::size_t length, double randomShare) {
    Bytes plain(length, 0);
    const std::size_t random = std::min(length, std::size_t(double(length) * randomShare));
    crypto::randomFill(MutableByteView(plain.data(), random));
    return chunk::encode(secret, plain);
}

chunk::EncodedChunk memoryChunk(const Shape& s, ByteView secret, std::mt19937_64& rng) {
    std::uniform_int_distribution<std::uint32_t> len(s.memoryMinBytes, s.memoryMaxBytes);
    std::uniform_real_distribution<double> share(0, s.memoryRandomMax);
    return makeChunk(secret, len(rng), share(rng));
}

chunk::EncodedChunk diskChunk(const Shape& s, ByteView secret, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> share(0, s.diskRandomMax);
    return makeChunk(secret, kChunkSize, share(rng));
}

// ---- counting requests, retries and warnings -----------------------------------

// A Store decorator that counts the requests a session makes: one per call,
// one per item of a batch (CountingStore counts bytes only). Retries are the
// S3 engine's own and counted from its log (RetryLog).
class RequestCounter final : public store::Store {
public:
    explicit RequestCounter(std::unique_ptr<store::Store> inner) : inner_(std::move(inner)) {}
    std::uint64_t requests() const { return requests_.load(); }

    std::string url() const override { return inner_->url(); }
    Result<Bytes> get(const std::string& key) override {
        count(1);
        return inner_->get(key);
    }
    Result<Bytes> getRange(const std::string& key, std::uint64_t offset,
                           std::uint64_t length) override {
        count(1);
        return inner_->getRange(key, offset, length);
    }
    Status put(const std::string& key, ByteView data) override {
        count(1);
        return inner_->put(key, data);
    }
    Status putIfAbsent(const std::string& key, ByteView data) override {
        count(1);
        return inner_->putIfAbsent(key, data);
    }
    Status remove(const std::string& key) override {
        count(1);
        return inner_->remove(key);
    }
    Result<store::TaggedObject> getTagged(const std::string& key) override {
        count(1);
        return inner_->getTagged(key);
    }
    Result<std::string> putIfMatch(const std::string& key, ByteView data,
                                   const std::string& expectedTag) override {
        count(1);
        return inner_->putIfMatch(key, data, expectedTag);
    }
    Result<std::vector<store::ObjectInfo>> list(const std::string& prefix) override {
        count(1);
        return inner_->list(prefix);
    }
    Result<bool> exists(const std::string& key) override {
        count(1);
        return inner_->exists(key);
    }
    std::vector<Result<Bytes>> getMany(const std::vector<std::string>& keys) override {
        count(keys.size());
        return inner_->getMany(keys);
    }
    std::vector<Status> putMany(const std::vector<store::PutItem>& items) override {
        count(items.size());
        return inner_->putMany(items);
    }
    std::vector<Result<bool>> existsMany(const std::vector<std::string>& keys) override {
        count(keys.size());
        return inner_->existsMany(keys);
    }
    void setWriteCredentials(const store::Credentials& c) override {
        inner_->setWriteCredentials(c);
    }

private:
    void count(std::size_t n) { requests_ += n; }
    std::unique_ptr<store::Store> inner_;
    std::atomic<std::uint64_t> requests_{0};
};

// The log sink: counts the S3 engine's retries ("...; retry k/n in ms", from
// core/store/curl_batch.cpp) and every other warning, keeping a few of each
// for the report, so a run of thousands of sessions does not flood stderr.
class RetryLog {
public:
    void install() {
        log::setSink([this](log::Level level, std::string_view category, std::string_view msg) {
            std::lock_guard lock(mutex_);
            if (category == "store" && msg.find("; retry ") != std::string_view::npos) {
                ++retries_;
                if (retrySamples_.size() < 5)
                    retrySamples_.emplace_back(msg);
                return;
            }
            if (level <= log::Level::Warn) {
                ++warnings_;
                if (warningSamples_.size() < 10)
                    warningSamples_.push_back(std::string(category) + ": " + std::string(msg));
            }
        });
    }
    std::uint64_t retries() const {
        std::lock_guard lock(mutex_);
        return retries_;
    }
    std::uint64_t warnings() const {
        std::lock_guard lock(mutex_);
        return warnings_;
    }
    std::vector<std::string> takeSamples() {
        std::lock_guard lock(mutex_);
        std::vector<std::string> out = retrySamples_;
        out.insert(out.end(), warningSamples_.begin(), warningSamples_.end());
        retrySamples_.clear();
        warningSamples_.clear();
        return out;
    }

private:
    mutable std::mutex mutex_;
    std::uint64_t retries_ = 0, warnings_ = 0;
    std::vector<std::string> retrySamples_, warningSamples_;
};

RetryLog retryLog;

// ---- CPU of this process, the Ceph daemons and the machine ------------------------

struct CpuSample {
    Clock::time_point at;
    std::map<std::string, double> seconds;    // process name -> CPU seconds so far
    double machineBusy = 0, machineTotal = 0; // /proc/stat jiffies
};

double processCpuSeconds(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');
    if (close == std::string::npos)
        return 0;
    std::istringstream fields(text.substr(close + 2));
    std::string f;
    // After "pid (comm) ": state is field 3; utime and stime are 14 and 15.
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i) {
        if (i == 14)
            utime = std::strtoull(f.c_str(), nullptr, 10);
        if (i == 15)
            stime = std::strtoull(f.c_str(), nullptr, 10);
    }
    return double(utime + stime) / double(::sysconf(_SC_CLK_TCK));
}

long processRssKiB(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("VmRSS:", 0) == 0)
            return std::strtol(line.c_str() + 6, nullptr, 10);
    return 0;
}

int pidFromFile(const std::string& path) {
    std::ifstream in(path);
    int pid = 0;
    in >> pid;
    return pid;
}

// The processes whose CPU a run reports: this one, and radosgw, ceph-osd
// and ceph-mon when the cluster is ours (their pid files are in cephDir).
std::map<std::string, int> watchedProcesses(const std::string& cephDir) {
    std::map<std::string, int> pids{{"bench", int(::getpid())}};
    const std::string& dir = cephDir;
    if (!dir.empty())
        for (const char* d : {"rgw", "osd", "mon"})
            if (int pid = pidFromFile(dir + "/run/" + d + ".pid"); pid > 0)
                pids[d] = pid;
    return pids;
}

CpuSample sampleCpu(const std::map<std::string, int>& pids) {
    CpuSample s;
    s.at = Clock::now();
    for (const auto& [name, pid] : pids)
        s.seconds[name] = processCpuSeconds(pid);
    std::ifstream in("/proc/stat");
    std::string cpu;
    in >> cpu;
    unsigned long long v[10] = {};
    for (auto& x : v)
        in >> x;
    const double idle = double(v[3] + v[4]);
    double total = 0;
    for (int i = 0; i < 8; ++i) // user..steal; guest is inside user
        total += double(v[i]);
    s.machineBusy = total - idle;
    s.machineTotal = total;
    return s;
}

// Samples once a second while a run goes: the mean and the busiest second
// of each process (in cores) and of the whole machine (busy share).
class CpuMonitor {
public:
    explicit CpuMonitor(std::map<std::string, int> pids) : pids_(std::move(pids)) {
        first_ = last_ = sampleCpu(pids_);
        thread_ = std::thread([this] { run(); });
    }
    ~CpuMonitor() { stop(); }
    void stop() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        if (thread_.joinable())
            thread_.join();
    }
    struct Usage {
        double meanCores = 0, peakCores = 0;
    };
    // Call after stop().
    std::map<std::string, Usage> usage() const {
        std::map<std::string, Usage> out;
        const double wall = std::chrono::duration<double>(last_.at - first_.at).count();
        for (const auto& [name, secs] : last_.seconds) {
            Usage u;
            u.meanCores = wall > 0 ? (secs - first_.seconds.at(name)) / wall : 0;
            auto it = peak_.find(name);
            u.peakCores = it == peak_.end() ? u.meanCores : it->second;
            out[name] = u;
        }
        Usage m;
        const double total = last_.machineTotal - first_.machineTotal;
        m.meanCores = total > 0 ? (last_.machineBusy - first_.machineBusy) / total : 0;
        m.peakCores = peakMachine_;
        out["machine busy share"] = m;
        return out;
    }
    double loadAverage1() const { return load1_; }

private:
    void run() {
        std::unique_lock lock(mutex_);
        while (!wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) {
            CpuSample now = sampleCpu(pids_);
            const double dt = std::chrono::duration<double>(now.at - last_.at).count();
            for (const auto& [name, secs] : now.seconds)
                peak_[name] = std::max(peak_[name], (secs - last_.seconds[name]) / dt);
            const double total = now.machineTotal - last_.machineTotal;
            if (total > 0)
                peakMachine_ =
                    std::max(peakMachine_, (now.machineBusy - last_.machineBusy) / total);
            last_ = std::move(now);
        }
        last_ = sampleCpu(pids_);
        std::ifstream in("/proc/loadavg");
        in >> load1_;
    }
    std::map<std::string, int> pids_;
    CpuSample first_, last_;
    std::map<std::string, double> peak_;
    double peakMachine_ = 0, load1_ = 0;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::thread thread_;
};

// ---- configuration ---------------------------------------------------------------

struct Config {
    std::vector<unsigned> users{1, 10, 50, 200};
    std::vector<std::string> stores{"file", "s3"};
    double seconds = 60;
    double scale = 16;
    double coldShare = 0.5;
    double contendShare = 0.1; // extra kiosks, each on a user another kiosk serves
    int thinkMs = 0;
    int heartbeatMs = 1000;
    std::string out;
    bool quick = false;
};

std::vector<unsigned> parseList(const std::string& text) {
    std::vector<unsigned> out;
    std::istringstream in(text);
    for (std::string item; std::getline(in, item, ',');)
        out.push_back(unsigned(std::strtoul(item.c_str(), nullptr, 10)));
    return out;
}

std::vector<std::string> parseWords(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string item; std::getline(in, item, ',');)
        out.push_back(item);
    return out;
}

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "bench_fleet: %s\nusage: bench_fleet [--quick] [--users 1,10,50,200] "
                 "[--stores file,s3] [--seconds 60] [--scale 16] [--cold 0.5] [--contend 0.1] "
                 "[--think-ms 0] [--heartbeat-ms 1000] [--out DIR]\n",
                 why);
    std::exit(2);
}

Config parseArgs(int argc, char** argv) {
    Config c;
    // --quick first, so that explicit options override its defaults.
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--quick") {
            c.quick = true;
            c.users = {1, 4};
            c.seconds = 6;
            c.scale = 128;
        }
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--quick")
            continue;
        if (i + 1 >= argc)
            usage(("missing value for " + a).c_str());
        const std::string v = argv[++i];
        if (a == "--users")
            c.users = parseList(v);
        else if (a == "--stores")
            c.stores = parseWords(v);
        else if (a == "--seconds")
            c.seconds = std::atof(v.c_str());
        else if (a == "--scale")
            c.scale = std::atof(v.c_str());
        else if (a == "--cold")
            c.coldShare = std::atof(v.c_str());
        else if (a == "--contend")
            c.contendShare = std::atof(v.c_str());
        else if (a == "--think-ms")
            c.thinkMs = std::atoi(v.c_str());
        else if (a == "--heartbeat-ms")
            c.heartbeatMs = std::atoi(v.c_str());
        else if (a == "--out")
            c.out = v;
        else
            usage(("unknown option " + a).c_str());
    }
    if (c.users.empty() || c.seconds <= 0 || c.scale < 1 || c.heartbeatMs <= 0)
        usage("bad option value");
    for (const auto& s : c.stores)
        if (s != "file" && s != "s3")
            usage("--stores takes file and/or s3");
    return c;
}

// ---- one store: its users and what was committed -------------------------------

std::string userName(unsigned i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "u%03u", i);
    return buf;
}
std::string passwordOf(unsigned i) {
    return "pw-" + std::to_string(i);
}

// One lock hold as its holder saw it: from the moment acquire() returned
// held to the moment release() was called. The real hold is at least this
// long, so two recorded holds of one parcel that overlap mean two kiosks
// held it at once.
struct Hold {
    unsigned kiosk = 0;
    std::string session;
    double from = 0, to = 0; // seconds on the bench's steady clock
};

struct UserState {
    std::mutex mutex;
    std::uint64_t committed = 0; // the newest version a kiosk committed
    crypto::Hash digest{};       // its manifest's digest
    std::uint64_t commits = 0;
    std::vector<Hold> holds;
};

struct FleetStore {
    std::string kind; // "file" | "s3"
    std::string url;
    store::StoreOptions options;
    std::string cephDir; // the cluster's directory when it is ours (its daemons' CPU)
    std::vector<std::unique_ptr<UserState>> users;
};

Clock::time_point benchEpoch = Clock::now();
double clockSeconds() {
    return std::chrono::duration<double>(Clock::now() - benchEpoch).count();
}

// Account, parcel (version 1) and its first saved state (version 2): the
// walk-up's parcel at this scale.
Status setUpUser(FleetStore& fleet, const Shape& shape, unsigned index) {
    ISR_TRY_ASSIGN(auto st, store::openStore(fleet.url, fleet.options));
    const std::string user = userName(index);
    ISR_TRY_STATUS(parcel::createAccount(*st, user, passwordOf(index)));
    ISR_TRY_ASSIGN(auto secrets, parcel::signIn(*st, user, passwordOf(index)));
    parcel::Parcels parcels(*st, std::move(secrets));
    parcel::VmSpec vm;
    ISR_TRY_STATUS(parcels.create(kParcel, vm, std::uint64_t(shape.diskChunks) * kChunkSize,
                                  kChunkSize, "setup"));
    ISR_TRY_ASSIGN(parcel::Manifest m, parcels.manifest(kParcel, 1));
    std::mt19937_64 rng(index * 7919 + 1);
    const ByteView secret = parcels.secrets().convergence.view();
    std::vector<chunk::EncodedChunk> chunks;
    for (unsigned i = 0; i < shape.memoryChunks; ++i) {
        chunks.push_back(memoryChunk(shape, secret, rng));
        m.memory.push_back(chunks.back().ref);
    }
    for (unsigned i = 0; i < shape.hotChunks; ++i) {
        chunks.push_back(diskChunk(shape, secret, rng));
        m.disk[i] = chunks.back().ref;
        m.workingSet.push_back(i);
    }
    m.parent = m.version; // the next version of what was read (binds its digest)
    m.created = 0;
    m.kiosk = "setup";
    ISR_TRY_ASSIGN(std::uint64_t n, parcels.commit(kParcel, m, chunks));
    UserState& u = *fleet.users[index];
    std::lock_guard lock(u.mutex);
    u.committed = n;
    u.digest = *m.digest;
    return {};
}

Status setUpStore(FleetStore& fleet, const Shape& shape, unsigned users) {
    ISR_TRY_ASSIGN(auto st, store::openStore(fleet.url, fleet.options));
    ISR_TRY_STATUS(parcel::initStore(*st, crypto::KdfParams::minimal()));
    fleet.users.clear();
    for (unsigned i = 0; i < users; ++i)
        fleet.users.push_back(std::make_unique<UserState>());
    std::atomic<unsigned> next{0};
    std::mutex errorMutex;
    std::optional<Error> error;
    std::vector<std::thread> workers;
    for (int t = 0; t < 4; ++t)
        workers.emplace_back([&] {
            for (unsigned i; (i = next++) < users;) {
                if (auto s = setUpUser(fleet, shape, i); !s.ok()) {
                    std::lock_guard lock(errorMutex);
                    error = s.error().context("setting up " + userName(i));
                }
            }
        });
    for (auto& w : workers)
        w.join();
    if (error)
        return *error;
    return {};
}

// ---- one session --------------------------------------------------------------

struct SessionRecord {
    unsigned kiosk = 0, user = 0;
    bool cold = false;
    double start = 0;                            // on the bench clock
    double signIn = 0, checkOut = 0, memory = 0; // store time per step, seconds
    double hotSet = 0, upload = 0, commit = 0;
    double resume = 0; // sign-in .. memory image streamed (what the first frame waits for)
    double leave = 0;  // Suspend & Leave: uploads .. unlocked
    std::uint64_t down = 0, up = 0, requests = 0, version = 0;
};

struct RunResult {
    std::string store;
    unsigned users = 0, kiosks = 0;
    double wall = 0;
    std::vector<SessionRecord> sessions;
    std::uint64_t refused = 0, refusedRequests = 0, retries = 0, warnings = 0;
    std::vector<std::string> errors;   // sessions that failed
    std::vector<std::string> problems; // lost data, overlapping holds (after the run)
    std::vector<std::string> logSamples;
    std::map<std::string, CpuMonitor::Usage> cpu;
    std::map<std::string, long> rssKiB;
    double loadAverage = 0, checkSeconds = 0;
    std::uint64_t chunksChecked = 0, manifestsChecked = 0;
};

enum class Outcome { Done, Refused, Failed };

class Kiosk {
public:
    Kiosk(unsigned index, unsigned user, FleetStore& store, const Shape& shape,
          const Config& config, const std::string& dir)
        : index_(index), user_(user), store_(store), shape_(shape), config_(config),
          cacheDir_(dir + "/cache"), scratchDir_(dir + "/scratch"), rng_(index * 104729 + 17),
          drainBuffer_(1 << 20) {
        fs::create_directories(scratchDir_);
    }

    // Sessions until the deadline; every record, refusal and error goes to
    // `result` under `mutex`.
    void run(Clock::time_point deadline, RunResult& result, std::mutex& mutex) {
        while (Clock::now() < deadline) {
            SessionRecord rec;
            std::string error;
            std::uint64_t requests = 0;
            const Outcome outcome = session(rec, error, requests);
            {
                std::lock_guard lock(mutex);
                if (outcome == Outcome::Done) {
                    result.sessions.push_back(rec);
                } else if (outcome == Outcome::Refused) {
                    result.refused++;
                    result.refusedRequests += requests;
                } else {
                    result.errors.push_back("kiosk " + std::to_string(index_) + ", " +
                                            userName(user_) + ": " + error);
                }
            }
            if (outcome != Outcome::Done) {
                // The person at a kiosk told "open elsewhere" tries again a
                // little later; a failed session backs off a little more.
                std::uniform_int_distribution<int> ms(outcome == Outcome::Refused ? 50 : 500,
                                                      outcome == Outcome::Refused ? 250 : 1000);
                std::this_thread::sleep_for(std::chrono::milliseconds(ms(rng_)));
            }
        }
    }

private:
    Status freshCache() {
        cache_.reset();
        std::error_code ec;
        fs::remove_all(cacheDir_, ec);
        // Room for the parcel and a few versions' changes; LRU evicts the rest.
        const std::uint64_t cap = 64ull << 20;
        ISR_TRY_ASSIGN(cache_, cache::ChunkCache::open(cacheDir_, cap));
        return {};
    }

    // Reads the FIFO to its end, as QEMU's restore would.
    Status drain(const std::string& fifo, std::uint64_t& bytes) {
        UniqueFd fd(::open(fifo.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid())
            return Error(Errc::Io, "open " + fifo + ": " + std::strerror(errno));
        for (;;) {
            const ssize_t n = ::read(fd.get(), drainBuffer_.data(), drainBuffer_.size());
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return Error(Errc::Io, "read " + fifo + ": " + std::strerror(errno));
            if (n == 0)
                return {};
            bytes += std::uint64_t(n);
        }
    }

    Outcome session(SessionRecord& rec, std::string& error, std::uint64_t& requestsOut) {
        rec.kiosk = index_;
        rec.user = user_;
        rec.cold = sessions_ == 0 ||
                   std::uniform_real_distribution<double>(0, 1)(rng_) < config_.coldShare;
        auto failed = [&](const std::string& step, const Error& e) {
            error = step + ": " + e.describe();
            return Outcome::Failed;
        };
        if (rec.cold || !cache_)
            if (auto st = freshCache(); !st.ok())
                return failed("kiosk cache", st.error());
        UserState& state = *store_.users[user_];
        const std::string kioskId = "kiosk-" + std::to_string(index_);

        // ---- resume: sign-in .. memory image streamed
        std::atomic<std::uint64_t> down{0}, up{0};
        rec.start = clockSeconds();
        const auto t0 = Clock::now();
        auto opened = store::openStore(store_.url, store_.options);
        if (!opened.ok())
            return failed("open store", opened.error());
        auto counter = std::make_unique<RequestCounter>(std::move(*opened));
        const RequestCounter& requests = *counter;
        store::CountingStore st(std::move(counter), down, up);
        auto secrets = parcel::signIn(st, userName(user_), passwordOf(user_));
        if (!secrets.ok())
            return failed("sign-in", secrets.error());
        parcel::Parcels parcels(st, std::move(*secrets));
        auto names = parcels.list();
        if (!names.ok())
            return failed("list", names.error());
        if (*names != std::vector<std::string>{kParcel})
            return failed("list", Error(Errc::Corrupt, "the user's parcels are not {desk}"));
        rec.signIn = since(t0);

        auto t1 = Clock::now();
        std::atomic<bool> lost{false}; // set by the heartbeat (outlives the lease)
        parcel::LockLease lease(parcels, kParcel, kioskId);
        auto attempt = lease.acquire(false);
        if (!attempt.ok())
            return failed("lock", attempt.error());
        if (!attempt->acquired) {
            requestsOut = requests.requests();
            return Outcome::Refused;
        }
        Hold hold;
        hold.kiosk = index_;
        hold.session = attempt->lock.session;
        hold.from = clockSeconds();
        // From here on every way out releases the lock and records the hold.
        auto leave = [&](Outcome outcome) {
            lease.stopHeartbeat();
            hold.to = clockSeconds();
            {
                std::lock_guard lock(state.mutex);
                state.holds.push_back(hold);
            }
            if (auto r = lease.release(); !r.ok() && outcome == Outcome::Done) {
                error = "unlock: " + r.error().describe();
                return Outcome::Failed;
            }
            return outcome;
        };
        auto latest = parcels.latest(kParcel);
        if (!latest.ok())
            return leave(failed("latest", latest.error()));
        auto read = parcels.manifest(kParcel, *latest);
        if (!read.ok())
            return leave(failed("manifest", read.error()));
        const parcel::Manifest base = std::move(*read);
        // Nothing lost between sessions: holding the lock, the store's newest
        // version is the one the last holder committed.
        std::uint64_t lastCommitted = 0;
        bool same = false;
        {
            std::lock_guard lock(state.mutex);
            lastCommitted = state.committed;
            same = base.version == state.committed && base.digest == state.digest;
        }
        if (!same)
            return leave(
                failed("checkout", Error(Errc::Corrupt, "the store serves version " +
                                                            std::to_string(base.version) +
                                                            ", the last commit was version " +
                                                            std::to_string(lastCommitted))));
        if (auto chain = parcels.verifyChain(kParcel, base, base.version - 1, 8); !chain.ok())
            return leave(failed("chain", chain.error()));
        lease.startHeartbeat(std::chrono::milliseconds(config_.heartbeatMs),
                             [&lost](const std::string&) { lost = true; });
        rec.checkOut = since(t1);

        auto t2 = Clock::now();
        cache::ChunkSource source(cache_.get(), [&parcels](const chunk::ChunkName& name) {
            return parcels.fetchChunk(name);
        });
        const std::string fifo = scratchDir_ + "/restore.fifo";
        auto stream = session::RestoreStream::start(
            base.memory, fifo, [&source](const chunk::ChunkName& n) { return source.get(n); }, {});
        if (!stream.ok())
            return leave(failed("restore stream", stream.error()));
        // The streamer is a thread of its own; this one reads, like QEMU.
        std::uint64_t drained = 0;
        Status drainStatus = drain(fifo, drained);
        Status streamed = (*stream)->finish(drainStatus.ok());
        if (!streamed.ok())
            return leave(failed("memory image", streamed.error()));
        if (!drainStatus.ok())
            return leave(failed("memory image", drainStatus.error()));
        std::uint64_t imageBytes = 0;
        for (const auto& r : base.memory)
            imageBytes += r.length;
        if (drained != imageBytes)
            return leave(
                failed("memory image",
                       Error(Errc::Corrupt, "read " + std::to_string(drained) + " bytes of a " +
                                                std::to_string(imageBytes) + "-byte image")));
        rec.memory = since(t2);
        rec.resume = since(t0);

        // The hoard's first job: the working set, 4 threads (KioskConfig's
        // hoardThreads), into the kiosk cache.
        auto t3 = Clock::now();
        {
            std::atomic<std::size_t> next{0};
            std::mutex errorMutex;
            std::optional<Error> hotError;
            std::vector<std::thread> hoard;
            for (int i = 0; i < 4; ++i)
                hoard.emplace_back([&] {
                    for (std::size_t k; (k = next++) < base.workingSet.size();) {
                        const auto& entry = base.disk[base.workingSet[k]];
                        if (!entry)
                            continue;
                        if (auto r = source.prefetch(entry->name); !r.ok()) {
                            std::lock_guard lock(errorMutex);
                            hotError = r.error();
                        }
                    }
                });
            for (auto& t : hoard)
                t.join();
            if (hotError)
                return leave(failed("hot set", *hotError));
        }
        rec.hotSet = since(t3);

        if (config_.thinkMs > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(config_.thinkMs));

        // ---- Suspend & Leave. The VM's save and the chunking of its image
        // are the kiosk's CPU: the new chunks are made before the clock.
        const ByteView secret = parcels.secrets().convergence.view();
        parcel::Manifest next = base;
        std::vector<chunk::EncodedChunk> memoryNew, diskNew;
        {
            std::vector<unsigned> order(next.memory.size());
            for (unsigned i = 0; i < order.size(); ++i)
                order[i] = i;
            std::shuffle(order.begin(), order.end(), rng_);
            for (unsigned i = 0; i < shape_.memoryNew && i < order.size(); ++i) {
                memoryNew.push_back(memoryChunk(shape_, secret, rng_));
                next.memory[order[i]] = memoryNew.back().ref;
            }
            std::vector<std::uint64_t> hot = base.workingSet;
            std::shuffle(hot.begin(), hot.end(), rng_);
            for (unsigned i = 0; i < shape_.diskNew && i < hot.size(); ++i) {
                diskNew.push_back(diskChunk(shape_, secret, rng_));
                next.disk[hot[i]] = diskNew.back().ref;
            }
        }
        auto t4 = Clock::now();
        {
            // As MemoryImageUpload: the base image's chunks are known
            // present, the rest goes with put-if-absent unasked.
            std::set<chunk::ChunkName> known;
            for (const auto& r : base.memory)
                known.insert(r.name);
            parcel::Parcels::UploadOptions options;
            options.askStore = false;
            options.knownPresent = &known;
            if (auto r = parcels.uploadChunks(memoryNew, options); !r.ok())
                return leave(failed("memory upload", r.error()));
            // As uploadDiskAndCommit: the disk's new chunks, asking first.
            if (auto r = parcels.uploadChunks(diskNew); !r.ok())
                return leave(failed("disk upload", r.error()));
        }
        rec.upload = since(t4);
        auto t5 = Clock::now();
        next.parent = base.version;
        next.created = 0;
        next.kiosk = kioskId;
        lease.stopHeartbeat();
        if (lost)
            return leave(failed("heartbeat", Error(Errc::Locked, "the lock was taken over")));
        if (auto held = lease.confirm(); !held.ok())
            return leave(failed("confirm lock", held.error()));
        auto n = parcels.commit(kParcel, next, {});
        if (!n.ok())
            return leave(failed("commit", n.error()));
        {
            std::lock_guard lock(state.mutex);
            state.committed = *n;
            state.digest = *next.digest;
            state.commits++;
        }
        const Outcome done = leave(Outcome::Done);
        if (done != Outcome::Done)
            return done;
        rec.commit = since(t5);
        rec.leave = since(t4);
        rec.version = *n;
        rec.down = down;
        rec.up = up;
        rec.requests = requests.requests();
        sessions_++;
        return Outcome::Done;
    }

    const unsigned index_, user_;
    FleetStore& store_;
    const Shape& shape_;
    const Config& config_;
    const std::string cacheDir_, scratchDir_;
    std::mt19937_64 rng_;
    Bytes drainBuffer_;
    std::unique_ptr<cache::ChunkCache> cache_;
    unsigned sessions_ = 0;
};

// ---- after a run: nothing lost, no two holds at once -----------------------------

void checkUsers(FleetStore& fleet, unsigned users, RunResult& result) {
    const auto started = Clock::now();
    std::atomic<unsigned> next{0};
    std::mutex mutex;
    std::vector<std::thread> workers;
    for (int t = 0; t < 8; ++t)
        workers.emplace_back([&] {
            for (unsigned i; (i = next++) < users;) {
                std::vector<std::string> problems;
                auto problem = [&](const std::string& what) {
                    problems.push_back(userName(i) + ": " + what);
                };
                UserState& u = *fleet.users[i];
                auto st = store::openStore(fleet.url, fleet.options);
                if (!st.ok()) {
                    problem(st.error().describe());
                } else if (auto secrets = parcel::signIn(**st, userName(i), passwordOf(i));
                           !secrets.ok()) {
                    problem("sign-in: " + secrets.error().describe());
                } else {
                    parcel::Parcels parcels(**st, std::move(*secrets));
                    auto fsck = parcel::fsckUser(parcels);
                    if (!fsck.ok()) {
                        problem("fsck: " + fsck.error().describe());
                    } else {
                        for (const auto& p : fsck->problems)
                            problem("fsck: " + p);
                        std::lock_guard lock(mutex);
                        result.chunksChecked += fsck->chunksChecked;
                        result.manifestsChecked += fsck->manifestsChecked;
                    }
                    auto latest = parcels.latest(kParcel);
                    if (!latest.ok() || *latest != u.committed) {
                        problem(
                            "newest version " +
                            (latest.ok() ? std::to_string(*latest) : latest.error().describe()) +
                            ", last committed " + std::to_string(u.committed));
                    } else if (auto m = parcels.manifest(kParcel, *latest);
                               !m.ok() || m->digest != u.digest) {
                        problem("version " + std::to_string(*latest) +
                                " is not the manifest its kiosk committed");
                    }
                    auto lock = parcels.readLock(kParcel);
                    if (!lock.ok() || lock->has_value())
                        problem("the lock was left held (or unreadable) after the run");
                }
                // Holds of one parcel, by start: each must end before the
                // next begins.
                std::vector<Hold> holds = u.holds;
                std::sort(holds.begin(), holds.end(),
                          [](const Hold& a, const Hold& b) { return a.from < b.from; });
                for (std::size_t k = 1; k < holds.size(); ++k)
                    if (holds[k].from < holds[k - 1].to) {
                        char line[256];
                        std::snprintf(line, sizeof line,
                                      "kiosks %u and %u held the lock at once (%.3f..%.3f and "
                                      "%.3f..%.3f)",
                                      holds[k - 1].kiosk, holds[k].kiosk, holds[k - 1].from,
                                      holds[k - 1].to, holds[k].from, holds[k].to);
                        problem(line);
                    }
                std::lock_guard lock(mutex);
                result.problems.insert(result.problems.end(), problems.begin(), problems.end());
            }
        });
    for (auto& w : workers)
        w.join();
    result.checkSeconds = since(started);
}

// ---- one (store, N) run ----------------------------------------------------------

RunResult runFleet(FleetStore& fleet, const Shape& shape, const Config& config, unsigned users,
                   const std::string& workDir) {
    RunResult result;
    result.store = fleet.kind;
    result.users = users;
    // A few users get a second kiosk: the same person at two kiosks, or two
    // people sharing an account; their lock is contended.
    // At least one from N = 2 on (when asked for at all), so every run but
    // the N = 1 baseline exercises the lock.
    const unsigned contenders =
        users < 2 ? 0u : unsigned(std::ceil(users * config.contendShare - 1e-9));
    result.kiosks = users + contenders;
    for (unsigned i = 0; i < users; ++i)
        fleet.users[i]->holds.clear();
    const std::string runDir = workDir + "/" + fleet.kind + "-" + std::to_string(users);
    std::vector<std::unique_ptr<Kiosk>> kiosks;
    for (unsigned k = 0; k < result.kiosks; ++k)
        kiosks.push_back(std::make_unique<Kiosk>(k, k < users ? k : k - users, fleet, shape, config,
                                                 runDir + "/k" + std::to_string(k)));
    const std::uint64_t retries0 = retryLog.retries(), warnings0 = retryLog.warnings();
    retryLog.takeSamples();
    std::mutex mutex;
    CpuMonitor monitor(watchedProcesses(fleet.cephDir));
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::milliseconds(long(config.seconds * 1000));
    std::vector<std::thread> threads;
    for (auto& k : kiosks)
        threads.emplace_back([&, kiosk = k.get()] { kiosk->run(deadline, result, mutex); });
    for (auto& t : threads)
        t.join();
    result.wall = since(start);
    monitor.stop();
    result.cpu = monitor.usage();
    result.loadAverage = monitor.loadAverage1();
    for (const auto& [name, pid] : watchedProcesses(fleet.cephDir))
        result.rssKiB[name] = processRssKiB(pid);
    result.retries = retryLog.retries() - retries0;
    result.warnings = retryLog.warnings() - warnings0;
    result.logSamples = retryLog.takeSamples();
    kiosks.clear();
    std::error_code ec;
    fs::remove_all(runDir, ec);
    checkUsers(fleet, users, result);
    return result;
}

// ---- figures ---------------------------------------------------------------------

double percentile(std::vector<double> v, double p) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    const double rank = p / 100.0 * double(v.size() - 1);
    const std::size_t lo = std::size_t(std::floor(rank));
    const std::size_t hi = std::min(v.size() - 1, lo + 1);
    return v[lo] + (v[hi] - v[lo]) * (rank - double(lo));
}

template <typename F> std::vector<double> column(const RunResult& r, F f, int cold = -1) {
    std::vector<double> out;
    for (const auto& s : r.sessions)
        if (cold < 0 || int(s.cold) == cold)
            out.push_back(f(s));
    return out;
}

struct Summary {
    double perMinute = 0;
    double resumeP50 = 0, resumeP99 = 0, coldP50 = 0, warmP50 = 0, hotP50 = 0;
    double leaveP50 = 0, leaveP99 = 0;
    double signInP50 = 0, checkOutP50 = 0, memoryP50 = 0, uploadP50 = 0, commitP50 = 0;
    double downMB = 0, upMB = 0, requests = 0; // per session, mean
    double storeMBps = 0;                      // bytes both ways, whole run
};

Summary summarize(const RunResult& r) {
    Summary s;
    const std::size_t n = r.sessions.size();
    s.perMinute = r.wall > 0 ? double(n) * 60 / r.wall : 0;
    auto p = [&](auto f, double q, int cold = -1) { return percentile(column(r, f, cold), q); };
    s.resumeP50 = p([](const SessionRecord& x) { return x.resume; }, 50);
    s.resumeP99 = p([](const SessionRecord& x) { return x.resume; }, 99);
    s.coldP50 = p([](const SessionRecord& x) { return x.resume; }, 50, 1);
    s.warmP50 = p([](const SessionRecord& x) { return x.resume; }, 50, 0);
    s.hotP50 = p([](const SessionRecord& x) { return x.hotSet; }, 50);
    s.leaveP50 = p([](const SessionRecord& x) { return x.leave; }, 50);
    s.leaveP99 = p([](const SessionRecord& x) { return x.leave; }, 99);
    s.signInP50 = p([](const SessionRecord& x) { return x.signIn; }, 50);
    s.checkOutP50 = p([](const SessionRecord& x) { return x.checkOut; }, 50);
    s.memoryP50 = p([](const SessionRecord& x) { return x.memory; }, 50);
    s.uploadP50 = p([](const SessionRecord& x) { return x.upload; }, 50);
    s.commitP50 = p([](const SessionRecord& x) { return x.commit; }, 50);
    double down = 0, up = 0, req = 0;
    for (const auto& x : r.sessions) {
        down += double(x.down);
        up += double(x.up);
        req += double(x.requests);
    }
    if (n > 0) {
        s.downMB = down / double(n) / 1e6;
        s.upMB = up / double(n) / 1e6;
        s.requests = req / double(n);
    }
    s.storeMBps = r.wall > 0 ? (down + up) / 1e6 / r.wall : 0;
    return s;
}

double ratio(double a, double b) {
    return b > 0 ? a / b : 0;
}

std::string tables(const std::vector<RunResult>& runs) {
    std::ostringstream out;
    char line[512];
    std::map<std::string, Summary> baseline; // per store: its N = 1 run (or its first)
    for (const auto& r : runs)
        if (!baseline.count(r.store))
            baseline[r.store] = summarize(r);
    out << "Throughput and store time (seconds; x = ratio to the same store's first row):\n";
    std::snprintf(line, sizeof line,
                  "%-5s %4s %6s %8s %9s %6s | %7s %7s %6s %7s %7s %7s | %7s %7s %6s\n", "store",
                  "N", "kiosks", "sessions", "sess/min", "x", "res p50", "res p99", "x p50",
                  "cold 50", "warm 50", "hot 50", "S&L p50", "S&L p99", "x p50");
    out << line;
    for (const auto& r : runs) {
        const Summary s = summarize(r), &b = baseline[r.store];
        std::snprintf(line, sizeof line,
                      "%-5s %4u %6u %8zu %9.1f %6.2f | %7.3f %7.3f %6.2f %7.3f %7.3f %7.3f | "
                      "%7.3f %7.3f %6.2f\n",
                      r.store.c_str(), r.users, r.kiosks, r.sessions.size(), s.perMinute,
                      ratio(s.perMinute, b.perMinute), s.resumeP50, s.resumeP99,
                      ratio(s.resumeP50, b.resumeP50), s.coldP50, s.warmP50, s.hotP50, s.leaveP50,
                      s.leaveP99, ratio(s.leaveP50, b.leaveP50));
        out << line;
    }
    out << "\nSteps (p50 seconds), traffic per session (mean), retries, errors, locks:\n";
    std::snprintf(line, sizeof line,
                  "%-5s %4s | %7s %7s %7s %7s %7s | %7s %7s %6s %7s | %7s %7s %6s %7s %8s\n",
                  "store", "N", "sign-in", "chkout", "memory", "upload", "commit", "MB down",
                  "MB up", "req", "MB/s", "retries", "errors", "lost", "refused", "overlaps");
    out << line;
    for (const auto& r : runs) {
        const Summary s = summarize(r);
        std::size_t overlaps = 0, lost = 0;
        for (const auto& p : r.problems)
            (p.find("at once") != std::string::npos ? overlaps : lost)++;
        std::snprintf(line, sizeof line,
                      "%-5s %4u | %7.3f %7.3f %7.3f %7.3f %7.3f | %7.2f %7.2f %6.0f %7.1f | "
                      "%7llu %7zu %6zu %7llu %8zu\n",
                      r.store.c_str(), r.users, s.signInP50, s.checkOutP50, s.memoryP50,
                      s.uploadP50, s.commitP50, s.downMB, s.upMB, s.requests, s.storeMBps,
                      (unsigned long long)r.retries, r.errors.size(), lost,
                      (unsigned long long)r.refused, overlaps);
        out << line;
    }
    out << "\nCPU (cores of the machine, mean / busiest second) and memory:\n";
    std::snprintf(line, sizeof line, "%-5s %4s | %-11s %-11s %-11s %-11s | %-11s | %5s %7s %8s\n",
                  "store", "N", "bench", "radosgw", "ceph-osd", "ceph-mon", "machine busy", "load1",
                  "rgw MiB", "bench MiB");
    out << line;
    for (const auto& r : runs) {
        auto cell = [&](const std::string& name) {
            auto it = r.cpu.find(name);
            if (it == r.cpu.end())
                return std::string("-");
            char c[32];
            std::snprintf(c, sizeof c, "%.2f/%.2f", it->second.meanCores, it->second.peakCores);
            return std::string(c);
        };
        auto rss = [&](const std::string& name) {
            auto it = r.rssKiB.find(name);
            return it == r.rssKiB.end() ? 0.0 : double(it->second) / 1024;
        };
        auto busy = r.cpu.count("machine busy share") ? r.cpu.at("machine busy share")
                                                      : CpuMonitor::Usage{};
        char m[32];
        std::snprintf(m, sizeof m, "%3.0f%%/%3.0f%%", busy.meanCores * 100, busy.peakCores * 100);
        std::snprintf(
            line, sizeof line, "%-5s %4u | %-11s %-11s %-11s %-11s | %-11s | %5.1f %7.0f %8.0f\n",
            r.store.c_str(), r.users, cell("bench").c_str(), cell("rgw").c_str(),
            cell("osd").c_str(), cell("mon").c_str(), m, r.loadAverage, rss("rgw"), rss("bench"));
        out << line;
    }
    return out.str();
}

std::string jsonString(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\')
            out += '\\', out += c;
        else if (std::uint8_t(c) < 0x20)
            out += ' ';
        else
            out += c;
    }
    return out + "\"";
}

std::string resultsJson(const Config& c, const Shape& shape, double argonSeconds,
                        const std::vector<RunResult>& runs) {
    std::ostringstream o;
    o.precision(6);
    o << "{\n\"config\": {\"seconds\": " << c.seconds << ", \"scale\": " << c.scale
      << ", \"cold_share\": " << c.coldShare << ", \"contend_share\": " << c.contendShare
      << ", \"think_ms\": " << c.thinkMs << ", \"heartbeat_ms\": " << c.heartbeatMs
      << ", \"cores\": " << std::thread::hardware_concurrency() << "},\n";
    o << "\"shape\": {\"memory_chunks\": " << shape.memoryChunks
      << ", \"memory_new\": " << shape.memoryNew << ", \"disk_chunks\": " << shape.diskChunks
      << ", \"hot_chunks\": " << shape.hotChunks << ", \"disk_new\": " << shape.diskNew << "},\n";
    o << "\"argon2id_moderate_seconds\": " << argonSeconds << ",\n\"runs\": [\n";
    for (std::size_t i = 0; i < runs.size(); ++i) {
        const RunResult& r = runs[i];
        const Summary s = summarize(r);
        o << "{\"store\": " << jsonString(r.store) << ", \"users\": " << r.users
          << ", \"kiosks\": " << r.kiosks << ", \"wall\": " << r.wall
          << ", \"sessions_per_minute\": " << s.perMinute << ", \"resume_p50\": " << s.resumeP50
          << ", \"resume_p99\": " << s.resumeP99 << ", \"leave_p50\": " << s.leaveP50
          << ", \"leave_p99\": " << s.leaveP99 << ", \"refused\": " << r.refused
          << ", \"refused_requests\": " << r.refusedRequests << ", \"retries\": " << r.retries
          << ", \"warnings\": " << r.warnings << ", \"load1\": " << r.loadAverage
          << ", \"check_seconds\": " << r.checkSeconds
          << ", \"manifests_checked\": " << r.manifestsChecked
          << ", \"chunks_checked\": " << r.chunksChecked << ",\n \"cpu\": {";
        bool first = true;
        for (const auto& [name, u] : r.cpu) {
            o << (first ? "" : ", ") << jsonString(name) << ": [" << u.meanCores << ", "
              << u.peakCores << "]";
            first = false;
        }
        o << "},\n \"errors\": [";
        for (std::size_t k = 0; k < r.errors.size(); ++k)
            o << (k ? ", " : "") << jsonString(r.errors[k]);
        o << "],\n \"problems\": [";
        for (std::size_t k = 0; k < r.problems.size(); ++k)
            o << (k ? ", " : "") << jsonString(r.problems[k]);
        o << "],\n \"log_samples\": [";
        for (std::size_t k = 0; k < r.logSamples.size(); ++k)
            o << (k ? ", " : "") << jsonString(r.logSamples[k]);
        o << "],\n \"sessions\": [\n";
        for (std::size_t k = 0; k < r.sessions.size(); ++k) {
            const SessionRecord& x = r.sessions[k];
            o << "  [" << x.kiosk << "," << x.user << "," << int(x.cold) << "," << x.start << ","
              << x.signIn << "," << x.checkOut << "," << x.memory << "," << x.hotSet << ","
              << x.upload << "," << x.commit << "," << x.resume << "," << x.leave << "," << x.down
              << "," << x.up << "," << x.requests << "," << x.version << "]"
              << (k + 1 < r.sessions.size() ? ",\n" : "\n");
        }
        o << " ]}" << (i + 1 < runs.size() ? ",\n" : "\n");
    }
    o << "],\n\"session_fields\": [\"kiosk\", \"user\", \"cold\", \"start\", \"sign_in\", "
         "\"check_out\", \"memory\", \"hot_set\", \"upload\", \"commit\", \"resume\", \"leave\", "
         "\"bytes_down\", \"bytes_up\", \"requests\", \"version\"]\n}\n";
    return o.str();
}

} // namespace

int main(int argc, char** argv) {
    const Config config = parseArgs(argc, argv);
    // The weak test KDF for the accounts (see the decisions above); the
    // test suite's environment sets the same.
    ::setenv(crypto::kInsecureTestKdfEnv, "1", 0);
    const Shape shape = Shape::scaled(config.scale);
    const unsigned maxUsers = *std::max_element(config.users.begin(), config.users.end());
    retryLog.install();

    std::printf(
        "bench_fleet: users %s; %.0f s a run; scale 1/%.0f of the walk-up parcel: memory "
        "%u chunks (%u new a session), disk %u chunks of 128 KiB, %u hot (%u rewritten a "
        "session); cold share %.2f; +%.0f%% contending kiosks; heartbeat %d ms; think %d "
        "ms\n",
        [&] {
            std::string s;
            for (auto u : config.users)
                s += (s.empty() ? "" : ",") + std::to_string(u);
            return s;
        }()
            .c_str(),
        config.seconds, config.scale, shape.memoryChunks, shape.memoryNew, shape.diskChunks,
        shape.hotChunks, shape.diskNew, config.coldShare, config.contendShare * 100,
        config.heartbeatMs, config.thinkMs);

    // Argon2id at the store default, once: what each sign-in would add on
    // the kiosk's own CPU (not in the figures).
    double argonSeconds = 0;
    {
        const auto t = Clock::now();
        auto key = crypto::deriveKey("a password", crypto::KdfParams::moderate());
        argonSeconds = key.ok() ? since(t) : -1;
        std::printf("Argon2id at the store default (moderate: 3 passes, 256 MiB), once: %.2f s "
                    "(kiosk CPU; excluded from the sign-in figures)\n",
                    argonSeconds);
    }

    test::ShmDir work("isr-bench-fleet");
    test::TempDir fileRoot; // FileStore: a local directory on disk ($TMPDIR)
    std::vector<RunResult> runs;
    for (const auto& kind : config.stores) {
        FleetStore fleet;
        fleet.kind = kind;
        if (kind == "file") {
            const std::string root = fileRoot.file("store");
            fs::create_directories(root);
            fleet.url = "file://" + root;
        } else {
            // Room in the RAM-only OSD for every user's parcel and the
            // versions the runs add (a cluster this process starts).
            ::setenv("ISR_CEPH_MEMSTORE_BYTES", config.quick ? "2147483648" : "8589934592", 0);
            const auto& rgw = test::cephRgw();
            fleet.url = rgw.url("fleet-" + std::to_string(::getpid()));
            fleet.options = rgw.options();
            fleet.cephDir = rgw.cephDir;
        }
        const auto t = Clock::now();
        if (auto st = setUpStore(fleet, shape, maxUsers); !st.ok()) {
            std::fprintf(stderr, "bench_fleet: set-up of the %s store failed: %s\n", kind.c_str(),
                         st.error().describe().c_str());
            return 1;
        }
        std::printf("\n%s store %s: %u users set up in %.1f s\n", kind.c_str(), fleet.url.c_str(),
                    maxUsers, since(t));
        std::fflush(stdout);
        for (unsigned users : config.users) {
            RunResult r = runFleet(fleet, shape, config, users, work.path);
            const Summary s = summarize(r);
            std::printf("  N=%u (%u kiosks): %zu sessions in %.1f s, %.1f/min; resume p50 %.3f s "
                        "p99 %.3f s; S&L p50 %.3f s p99 %.3f s; %zu errors, %zu problems, %llu "
                        "refused, %llu retries; checked in %.1f s\n",
                        users, r.kiosks, r.sessions.size(), r.wall, s.perMinute, s.resumeP50,
                        s.resumeP99, s.leaveP50, s.leaveP99, r.errors.size(), r.problems.size(),
                        (unsigned long long)r.refused, (unsigned long long)r.retries,
                        r.checkSeconds);
            for (std::size_t k = 0; k < r.errors.size() && k < 5; ++k)
                std::printf("    error: %s\n", r.errors[k].c_str());
            for (std::size_t k = 0; k < r.problems.size() && k < 5; ++k)
                std::printf("    PROBLEM: %s\n", r.problems[k].c_str());
            for (const auto& l : r.logSamples)
                std::printf("    log: %s\n", l.c_str());
            std::fflush(stdout);
            runs.push_back(std::move(r));
        }
    }

    const std::string table = tables(runs);
    std::printf("\n%s", table.c_str());
    if (!config.out.empty()) {
        fs::create_directories(config.out);
        std::ofstream(config.out + "/results.json")
            << resultsJson(config, shape, argonSeconds, runs);
        std::ofstream(config.out + "/table.txt") << table;
        std::printf("\nwrote %s/results.json and table.txt\n", config.out.c_str());
    }
    std::size_t errors = 0, problems = 0, sessions = 0;
    for (const auto& r : runs) {
        errors += r.errors.size();
        problems += r.problems.size();
        sessions += r.sessions.size();
    }
    if (errors || problems || sessions == 0) {
        std::printf("\nFAILED: %zu session errors, %zu problems after the runs (lost data, "
                    "overlapping locks), %zu sessions\n",
                    errors, problems, sessions);
        std::fflush(stdout);
        return 1;
    }
    std::printf("\nOK: %zu sessions, every user's parcel checked clean, no lock held twice\n",
                sessions);
    // Now: removing the file store's tens of thousands of files takes
    // minutes on a disk that discards on unlink.
    std::fflush(stdout);
    return 0;
}
