// bench_walkup: the walk-up benchmark's steps, one process each (libvirt's
// embedded driver and the kiosk cache's lock want one Session per process).
// walkup.sh drives it; see tests/bench/README.md.
//
//   bench_walkup setup WORKDIR               store, account, two parcels (fresh disk)
//   bench_walkup round WORKDIR 1|2 [lazy]    resume, fill (1) or change a tenth (2), suspend
//   bench_walkup warm WORKDIR [lazy]         the warm cache: every chunk of the previous version
//   bench_walkup run WORKDIR POLICY LINK     one measured sign-in .. first frame .. Suspend & Leave
//   bench_walkup kdf WORKDIR                 Argon2id at the default and the bench's limits
//
// POLICY: copy-all | whole-image | isr-cold | isr-warm | lazy-cold | lazy-warm.
// The lazy policies (issue #17) use a second parcel, "walkup-lazy", made the
// same way by a kiosk with lazy_memory on, so its versions carry a RAM chunk
// table instead of a memory image (the rounds take `lazy`). The store is the
// radosgw of ISR_TEST_S3_* (walkup.sh starts it behind the shaped link).
// Sizes: ISR_BENCH_FILL_MIB (guest memory filled, half text half random,
// default 96) and ISR_BENCH_DISK_MIB (written to the parcel disk, default 48).
// ISR_BENCH_GUEST=desktop: the parcels are the reference desktop
// (resources/guest-desktop: UEFI, TPM, 2 GiB, as `isrctl demo init
// --desktop` makes it) from $ISR_DESKTOP_DIR/desktop.img (default
// ~/.cache/isr/desktop) instead of the demo guest with 1 GiB; its first
// boot (round 1) waits for the graphical session before the fill, and the
// working set goes to /dev/shm (RAM) and /var/tmp (disk).
#include "cache/cache.h"
#include "ceph_rgw.h"
#include "parcel/parcel.h"
#include "session/session.h"
#include "util/json.h"
#include "util/process.h"
#include "vmguest.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <rfb/rfbclient.h>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace isr;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

const char* kUser = "bench";
const char* kPassword = "bench";
const char* kParcel = "walkup";
const char* kLazyParcel = "walkup-lazy";

bool isLazyPolicy(const std::string& policy) {
    return policy == "lazy-cold" || policy == "lazy-warm";
}
// The files of one parcel's prepared state: "" or "-lazy".
std::string suffix(bool lazy) {
    return lazy ? "-lazy" : "";
}

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "bench_walkup: %s\n", what.c_str());
    std::exit(1);
}
template <typename T> T must(Result<T> r, const std::string& what) {
    if (!r.ok())
        die(what + ": " + r.error().describe());
    return std::move(r).value();
}
void must(Status st, const std::string& what) {
    if (!st.ok())
        die(what + ": " + st.error().describe());
}

unsigned envMiB(const char* name, unsigned fallback) {
    const char* v = std::getenv(name);
    return v && *v ? unsigned(std::strtoul(v, nullptr, 10)) : fallback;
}
unsigned fillMiB() {
    return envMiB("ISR_BENCH_FILL_MIB", 96);
}
unsigned diskMiB() {
    return envMiB("ISR_BENCH_DISK_MIB", 48);
}

bool desktopGuest() {
    const char* v = std::getenv("ISR_BENCH_GUEST");
    return v && std::string(v) == "desktop";
}
// Where the working set lives in the guest: RAM (tmpfs), the disk, and the
// text corpora the rounds copy.
struct GuestPaths {
    std::string ram, disk, seed;
};
GuestPaths guestPaths() {
    if (desktopGuest())
        return {"/dev/shm", "/var/tmp", "/var/tmp/seed"};
    return {"/tmp", "/home", "/home/seed"};
}

double since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string storeUrl() {
    return test::cephRgw().url("walkup");
}

// Counts what crosses the link for the harness's own transfers (the
// session counts its own in the timeline).
struct Link {
    std::unique_ptr<store::Store> store;
    std::uint64_t down = 0;
};

Link openLink() {
    Link l;
    l.store = must(store::openStore(storeUrl(), test::cephRgw().options()), "open store");
    return l;
}

json::Value readJson(const std::string& path) {
    std::ifstream f(path);
    if (!f)
        die("cannot read " + path);
    std::stringstream ss;
    ss << f.rdbuf();
    return must(json::parse(ss.str()), "parse " + path);
}
void writeJson(const std::string& path, const json::Value& v) {
    std::ofstream f(path, std::ios::trunc);
    f << v.dump() << "\n";
    if (!f)
        die("cannot write " + path);
}

session::KioskConfig kioskConfig(const std::string& stateDir, const test::GuestImage& guest,
                                 bool lazy = false) {
    session::KioskConfig c;
    c.lazyMemory = lazy;
    c.kioskId = "bench-kiosk";
    c.stateDir = stateDir;
    c.storeUrl = storeUrl();
    c.storeOptions = test::cephRgw().options();
    c.guestDir = guest.dir;
    c.serialConsole = true;
    c.cacheCapBytes = 8ull << 30;
    // The guest changes things between resume and suspend; trickle would
    // send them early and blur the Suspend & Leave figure.
    c.trickleQuiet = std::chrono::hours(1);
    if (desktopGuest()) {
        // A kiosk's screen, as test_e2e_desktop's.
        c.desktop.screenWidth = 1280;
        c.desktop.screenHeight = 800;
    }
    return c;
}

// The guest's serial shell. `firstBootMarker`: a firmware first boot, read
// without typing until the guest prints it (SerialConsole::waitForText).
std::unique_ptr<test::SerialConsole> console(session::Session& s,
                                             const char* firstBootMarker = nullptr) {
    auto c = must(test::SerialConsole::connect(s.serialSocketPath(), std::chrono::seconds(30)),
                  "serial console");
    if (firstBootMarker)
        must(c->waitForText(firstBootMarker, std::chrono::minutes(15)), "first boot");
    must(c->waitForShell(std::chrono::minutes(5)), "guest shell");
    return c;
}

void guestRun(test::SerialConsole& c, const std::string& cmd) {
    auto t = Clock::now();
    auto out = must(c.run(cmd, std::chrono::minutes(10)), "guest: " + cmd);
    if (out.exitStatus != 0)
        die("guest command failed (" + std::to_string(out.exitStatus) + "): " + cmd + "\n" +
            out.text);
    std::fprintf(stderr, "  guest %5.1fs: %s\n", since(t), cmd.substr(0, 100).c_str());
}

// The working set: half compressible text (decimal numbers, generated on
// the host because busybox seq under TCG makes well under 1 MB/s), half
// random (the guest's /dev/urandom), in guest RAM (tmpfs) and on the disk.
// The text comes from /home/seed, which setup puts on the parcel disk.
// The desktop's disk has no seed: its coreutils seq (not busybox's) makes
// the same corpora in the guest, before the fill.
void fillGuest(test::SerialConsole& c) {
    const auto g = guestPaths();
    const std::string m = std::to_string(fillMiB() / 2), d = std::to_string(diskMiB() / 2);
    if (desktopGuest()) {
        const std::uint64_t bytes = std::uint64_t(fillMiB() / 2 + diskMiB() / 2) << 20;
        guestRun(c, "mkdir -p " + g.seed + " && seq 1 9999999999 | head -c " +
                        std::to_string(bytes) + " >" + g.seed + "/text");
        for (int k : {2, 3})
            guestRun(c, "seq " + std::to_string(k) + "000000000 9999999999 | head -c " +
                            std::to_string(bytes / 10 + (1 << 20)) + " >" + g.seed + "/change" +
                            std::to_string(k));
    }
    guestRun(c, "dd if=/dev/urandom of=" + g.ram + "/rand bs=1M count=" + m + " 2>/dev/null");
    guestRun(c,
             "dd if=" + g.seed + "/text of=" + g.ram + "/text bs=1M count=" + m + " 2>/dev/null");
    guestRun(c, "dd if=/dev/urandom of=" + g.disk + "/rand bs=1M count=" + d + " 2>/dev/null");
    guestRun(c, "dd if=" + g.seed + "/text of=" + g.disk + "/text bs=1M skip=" + m + " count=" + d +
                    " 2>/dev/null && rm " + g.seed + "/text");
    // Keep the memory image to what was filled: the disk's page cache goes.
    guestRun(c, "sync && echo 3 >/proc/sys/vm/drop_caches");
}

// Round `k` (2 or 3) rewrites the k-th tenth of every file in place.
void changeTenth(test::SerialConsole& c, unsigned k) {
    const unsigned m = fillMiB() / 2, d = diskMiB() / 2;
    auto rewrite = [&](const std::string& file, unsigned mib, const std::string& from,
                       unsigned skipKiB) {
        unsigned tenthKiB = mib * 1024 / 10;
        unsigned offKiB = k * tenthKiB;
        guestRun(c, "dd if=" + from + " of=" + file + " bs=1k count=" + std::to_string(tenthKiB) +
                        " skip=" + std::to_string(skipKiB) + " seek=" + std::to_string(offKiB) +
                        " conv=notrunc 2>/dev/null");
    };
    const auto g = guestPaths();
    std::string seed = g.seed + "/change" + std::to_string(k);
    rewrite(g.ram + "/rand", m, "/dev/urandom", 0);
    rewrite(g.ram + "/text", m, seed, 0);
    rewrite(g.disk + "/rand", d, "/dev/urandom", 0);
    rewrite(g.disk + "/text", d, seed, m * 1024 / 10);
    guestRun(c, "sync && echo 3 >/proc/sys/vm/drop_caches");
}

std::uint64_t sumDown(const std::vector<session::TimelineEntry>& t) {
    std::uint64_t n = 0;
    for (const auto& e : t)
        n += e.bytesDown;
    return n;
}

json::Value timelineJson(const std::vector<session::TimelineEntry>& t) {
    json::Array rows;
    for (const auto& e : t)
        rows.push_back(json::Object{{"stage", session::stageName(e.stage)},
                                    {"seconds", e.seconds},
                                    {"bytes_down", e.bytesDown},
                                    {"bytes_up", e.bytesUp}});
    return rows;
}

// ---- the first frame of the VM's display, with LibVNCClient ----

std::atomic<bool> gotFrame{false};
void onUpdate(rfbClient*, int, int, int, int) {
    gotFrame = true;
}
void quiet(const char*, ...) {}

Status waitFirstFrame(int fd) {
    rfbClientLog = quiet;
    rfbClientErr = quiet;
    rfbClient* c = rfbGetClient(8, 3, 4);
    if (!c) {
        ::close(fd);
        return Error(Errc::Internal, "rfbGetClient");
    }
    gotFrame = false;
    c->GotFrameBufferUpdate = onUpdate;
    c->sock = fd;
    Status st;
    if (!InitialiseRFBConnection(c)) {
        st = Error(Errc::Io, "VNC handshake failed");
    } else {
        c->width = c->si.framebufferWidth;
        c->height = c->si.framebufferHeight;
        c->updateRect = {0, 0, c->width, c->height};
        if (!c->MallocFrameBuffer(c) || !SetFormatAndEncodings(c) ||
            !SendFramebufferUpdateRequest(c, 0, 0, c->width, c->height, FALSE))
            st = Error(Errc::Io, "VNC setup failed");
        auto deadline = Clock::now() + std::chrono::seconds(120);
        while (st.ok() && !gotFrame && Clock::now() < deadline) {
            int n = WaitForMessage(c, 100000);
            if (n < 0 || (n > 0 && !HandleRFBServerMessage(c)))
                st = Error(Errc::Io, "VNC connection lost");
        }
        if (st.ok() && !gotFrame)
            st = Error(Errc::Io, "no frame within 120 s");
    }
    rfbClientCleanup(c); // closes fd
    return st;
}

// ---- fetching ahead of the session (policies 1 and 2) ----

// Every chunk of `names` the cache lacks, 16 GETs in flight (as many as the
// session's own memory stream keeps), each stored in the cache as it lands.
std::uint64_t prefetch(Link& link, const std::vector<chunk::ChunkName>& names,
                       cache::ChunkCache& cache) {
    std::vector<chunk::ChunkName> want;
    std::set<chunk::ChunkName> seen;
    for (const auto& n : names)
        if (seen.insert(n).second && !cache.contains(n))
            want.push_back(n);
    std::atomic<std::size_t> next{0};
    std::atomic<std::uint64_t> bytes{0};
    std::mutex cacheMutex;
    std::vector<std::thread> pool;
    for (int t = 0; t < 16; ++t)
        pool.emplace_back([&] {
            for (std::size_t i; (i = next++) < want.size();) {
                auto key = parcel::chunkKey(kUser, want[i]);
                auto data = must(link.store->get(key), "fetch " + key);
                bytes += data.size();
                std::lock_guard lock(cacheMutex);
                must(cache.put(want[i], data), "cache put");
            }
        });
    for (auto& t : pool)
        t.join();
    link.down += bytes;
    return bytes;
}

// The memory image, or with lazy memory the device state and every stored
// RAM chunk.
std::vector<chunk::ChunkName> memoryNames(const parcel::Manifest& m) {
    std::vector<chunk::ChunkName> v;
    for (const auto& r : m.memory)
        v.push_back(r.name);
    for (const auto& r : m.ram)
        if (r)
            v.push_back(r->name);
    return v;
}
std::vector<chunk::ChunkName> diskNames(const parcel::Manifest& m) {
    std::vector<chunk::ChunkName> v;
    for (const auto& r : m.disk)
        if (r)
            v.push_back(r->name);
    return v;
}

// ---- steps ----

// The reference desktop's image, as walkup.sh (build-desktop.sh) left it.
std::string desktopImage() {
    std::string dir;
    if (const char* d = std::getenv("ISR_DESKTOP_DIR"); d && *d)
        dir = d;
    else if (const char* h = std::getenv("HOME"); h && *h)
        dir = std::string(h) + "/.cache/isr/desktop";
    std::string image = dir + "/desktop.img";
    if (dir.empty() || !fs::exists(image))
        die("no reference desktop image at " + image +
            " (resources/guest-desktop/build-desktop.sh; walkup.sh runs it)");
    return image;
}

// The demo guest's parcel disk: a fresh ext4 with the text corpora the
// rounds copy (one for round 1, one for each change).
std::string demoHomeDisk(const std::string& work) {
    std::string home = work + "/home.ext4";
    fs::remove(home);
    std::string seed = work + "/home-seed/seed";
    fs::create_directories(seed);
    const std::uint64_t m = fillMiB() / 2, d = diskMiB() / 2;
    auto text = [&](const std::string& file, std::uint64_t first, std::uint64_t bytes) {
        must(runProgramChecked({"sh", "-c",
                                "seq " + std::to_string(first) + " 9999999999 | head -c " +
                                    std::to_string(bytes) + " >" + seed + "/" + file}),
             "seed " + file);
    };
    text("text", 1, (m + d) << 20);
    text("change2", 2000000000, ((m + d) << 20) / 10 + (1 << 20));
    text("change3", 3000000000, ((m + d) << 20) / 10 + (1 << 20));
    // Room for the seeds, the working set and ext4's own.
    unsigned mib = unsigned(2 * (m + d) + 64);
    must(runProgramChecked({"mke2fs", "-q", "-F", "-t", "ext4", "-L", "isr-home", "-d",
                            work + "/home-seed", home, std::to_string(mib) + "M"}),
         "mke2fs");
    return home;
}

int setup(const std::string& work) {
    fs::create_directories(work);
    parcel::ImportOptions opts;
    std::string image;
    if (desktopGuest()) {
        // As `isrctl demo init --desktop` makes it (app/isrctl/cmd_session.cpp).
        image = desktopImage();
        opts.vm.boot = "firmware";
        opts.vm.firmware = "uefi";
        opts.vm.tpm = true;
        opts.vm.memoryMiB = 2048;
    } else {
        (void)test::requireGuest(); // built once, cached: the rounds boot it
        image = demoHomeDisk(work);
        opts.vm.boot = "demo-guest";
        opts.vm.memoryMiB = 1024;
    }
    opts.kiosk = "bench-setup";
    auto link = openLink();
    must(parcel::initStore(*link.store, crypto::KdfParams::minimal()), "init store");
    must(parcel::createAccount(*link.store, kUser, kPassword, test::cephRgw().user1), "account");
    parcel::Parcels parcels(*link.store,
                            must(parcel::signIn(*link.store, kUser, kPassword), "sign in"));
    for (const char* name : {kParcel, kLazyParcel}) {
        auto t = Clock::now();
        auto stats = must(parcel::importImage(parcels, name, image, opts), "import");
        std::printf("setup: parcel %s version %llu from %s (%llu MiB) in %.1fs\n", name,
                    (unsigned long long)stats.version, image.c_str(),
                    (unsigned long long)(fs::file_size(image) >> 20), since(t));
    }
    return 0;
}

int round(const std::string& work, unsigned k, bool lazy) {
    auto guest = test::requireGuest();
    std::string state = work + "/kiosk-prep";
    auto sess = must(session::Session::create(kioskConfig(state, guest, lazy), {}), "session");
    auto t = Clock::now();
    must(sess->resume(kUser, kPassword, lazy ? kLazyParcel : kParcel), "resume");
    std::fprintf(stderr, "round %u: running after %.1fs (%s)\n", k, since(t),
                 sess->accelerator().c_str());
    {
        // The desktop's first boot goes through OVMF and systemd-boot: no
        // key on the console until getty prompts, then the graphical
        // session (IceWM's startup writes the file once its xterm is mapped,
        // or gives up after 120 s: resources/guest-desktop/README.md).
        const bool desktopFirstBoot = desktopGuest() && k == 1;
        auto c = console(*sess, desktopFirstBoot ? "login:" : nullptr);
        if (desktopFirstBoot) {
            guestRun(*c, "i=0; while [ ! -e /tmp/isr-desktop-ready ] && [ $i -lt 300 ]; do "
                         "sleep 1; i=$((i+1)); done; ls /tmp/isr-desktop-ready");
            std::fprintf(stderr, "round 1: the desktop is up after %.1fs\n", since(t));
        }
        if (k == 1)
            fillGuest(*c);
        else
            changeTenth(*c, k);
    }
    t = Clock::now();
    must(sess->suspendAndLeave(), "suspend");
    std::fprintf(stderr, "round %u: committed version %llu in %.1fs\n%s", k,
                 (unsigned long long)sess->committedVersion(), since(t),
                 session::formatTimeline(sess->timeline()).c_str());
    return 0;
}

// The warm kiosk cache holds every chunk of the version before the measured
// one; also records the measured version and the sizes the floors need.
int warm(const std::string& work, bool lazy) {
    auto link = openLink();
    parcel::Parcels parcels(*link.store,
                            must(parcel::signIn(*link.store, kUser, kPassword), "sign in"));
    const char* name = lazy ? kLazyParcel : kParcel;
    auto n = must(parcels.latest(name), "latest");
    auto cur = must(parcels.manifest(name, n), "manifest");
    auto prev = must(parcels.manifest(name, cur.parent), "previous manifest");
    if (lazy != cur.lazyMemory())
        die(std::string("the measured version of ") + name + " is " +
            (cur.lazyMemory() ? "lazy" : "a whole memory image"));
    const std::string warmDir = work + "/warm-cache" + suffix(lazy);
    fs::remove_all(warmDir);
    {
        auto cache = must(cache::ChunkCache::open(warmDir, 8ull << 30), "cache");
        auto names = memoryNames(prev);
        auto d = diskNames(prev);
        names.insert(names.end(), d.begin(), d.end());
        prefetch(link, names, *cache);
    }
    // Ciphertext sizes of the measured version, and what of it is new.
    std::set<chunk::ChunkName> prevNames;
    for (const auto& x : memoryNames(prev))
        prevNames.insert(x);
    for (const auto& x : diskNames(prev))
        prevNames.insert(x);
    std::uint64_t memAll = 0, memNew = 0, diskAll = 0;
    std::set<chunk::ChunkName> seen;
    std::map<std::string, std::uint64_t> sizes;
    for (const auto& o : must(link.store->list(std::string("users/") + kUser + "/chunks/"), "list"))
        sizes[o.key] = o.size;
    auto sizeOf = [&](const chunk::ChunkName& name) {
        auto it = sizes.find(parcel::chunkKey(kUser, name));
        if (it == sizes.end())
            die("chunk missing from the store listing");
        return it->second;
    };
    std::uint64_t memPlain = 0;
    for (const auto& r : cur.memory) {
        memPlain += r.length;
        if (!seen.insert(r.name).second)
            continue;
        auto s = sizeOf(r.name);
        memAll += s;
        if (!prevNames.count(r.name))
            memNew += s;
    }
    // Lazy memory: the RAM table (its stored chunks), and the bytes the
    // issue's cold floor counts: the device state and the RAM hot set.
    std::uint64_t ramAll = 0, ramNew = 0, ramChunks = 0, hotSet = 0, deviceState = 0;
    for (const auto& r : cur.memory)
        deviceState += sizeOf(r.name);
    for (const auto& r : cur.ram) {
        if (!r || !seen.insert(r->name).second)
            continue;
        auto s = sizeOf(r->name);
        ramAll += s;
        ++ramChunks;
        if (!prevNames.count(r->name))
            ramNew += s;
    }
    {
        std::set<chunk::ChunkName> hot;
        for (auto i : cur.ramHotSet)
            if (i < cur.ram.size() && cur.ram[i] && hot.insert(cur.ram[i]->name).second)
                hotSet += sizeOf(cur.ram[i]->name);
    }
    std::uint64_t diskChunks = 0;
    for (const auto& r : cur.disk)
        if (r && seen.insert(r->name).second) {
            diskAll += sizeOf(r->name);
            ++diskChunks;
        }
    json::Object info{{"guest", desktopGuest() ? "desktop" : "demo"},
                      {"version", n},
                      {"previous", cur.parent},
                      {"memory_mib", std::uint64_t(cur.vm.memoryMiB)},
                      {"fill_mib", std::uint64_t(fillMiB())},
                      {"disk_write_mib", std::uint64_t(diskMiB())},
                      {"memory_image_bytes", memPlain},
                      {"memory_chunks", std::uint64_t(cur.memory.size())},
                      {"memory_cipher_bytes", memAll},
                      {"memory_new_cipher_bytes", memNew},
                      {"disk_cipher_bytes", diskAll},
                      {"disk_chunks", diskChunks},
                      {"disk_size", cur.diskSize},
                      {"lazy", lazy},
                      {"ram_cipher_bytes", ramAll},
                      {"ram_new_cipher_bytes", ramNew},
                      {"ram_stored_chunks", ramChunks},
                      {"ram_hot_set_chunks", std::uint64_t(cur.ramHotSet.size())},
                      {"ram_hot_set_cipher_bytes", hotSet},
                      {"device_state_cipher_bytes", lazy ? deviceState : 0}};
    writeJson(work + "/state" + suffix(lazy) + ".json", info);
    std::printf("%s\n", json::Value(info).dump().c_str());
    return 0;
}

int run(const std::string& work, const std::string& policy, const std::string& linkName) {
    if (policy != "copy-all" && policy != "whole-image" && policy != "isr-cold" &&
        policy != "isr-warm" && !isLazyPolicy(policy))
        die("unknown policy " + policy);
    const bool lazy = isLazyPolicy(policy);
    const char* parcelName = lazy ? kLazyParcel : kParcel;
    auto guest = test::requireGuest();
    auto state = readJson(work + "/state" + suffix(lazy) + ".json");
    auto version = std::uint64_t(must(state.getInt("version"), "state version"));
    std::string kiosk = work + "/kiosk-run";
    fs::remove_all(kiosk);
    fs::create_directories(kiosk);
    if (policy == "isr-warm" || policy == "lazy-warm")
        fs::copy(work + "/warm-cache" + suffix(lazy), kiosk + "/cache",
                 fs::copy_options::recursive);
    auto config = kioskConfig(kiosk, guest, lazy);
    config.memoryDedup = policy != "whole-image";

    // Sign-in is t0. Policies 1 and 2 fetch ahead into the kiosk cache
    // before the session starts (its cache lock is per process and per
    // directory); the session then finds those chunks locally.
    auto t0 = Clock::now();
    Link link = openLink();
    double prefetchSeconds = 0;
    if (policy == "copy-all" || policy == "whole-image") {
        parcel::Parcels parcels(*link.store,
                                must(parcel::signIn(*link.store, kUser, kPassword), "sign in"));
        auto n = must(parcels.latest(kParcel), "latest");
        auto m = must(parcels.manifest(kParcel, n), "manifest");
        auto names = memoryNames(m);
        if (policy == "copy-all") {
            auto d = diskNames(m);
            names.insert(names.end(), d.begin(), d.end());
        }
        auto cache = must(cache::ChunkCache::open(kiosk + "/cache", config.cacheCapBytes), "cache");
        prefetch(link, names, *cache);
        prefetchSeconds = since(t0);
    }
    // Opening the hypervisor is kiosk start-up, not part of a sign-in.
    auto tc = Clock::now();
    auto sess = must(session::Session::create(config, {}), "session");
    double createSeconds = since(tc);
    must(sess->resume(kUser, kPassword, parcelName), "resume");
    double runningSeconds = since(t0) - createSeconds;
    const auto running = Clock::now();
    auto resumeTimeline = sess->timeline();
    int fd = must(sess->openDisplay(), "open display");
    must(waitFirstFrame(fd), "first frame");
    double frameSeconds = since(t0) - createSeconds;
    std::uint64_t bytesBeforeFrame = link.down + sumDown(sess->timeline());
    std::fprintf(stderr, "%s/%s: first frame %.2fs, %llu bytes down\n", linkName.c_str(),
                 policy.c_str(), frameSeconds, (unsigned long long)bytesBeforeFrame);

    // The user works: a tenth of memory and disk changes.
    {
        auto c = console(*sess);
        changeTenth(*c, 3);
    }
    // The guest's first 30 s of page faults (lazy memory): wait for the
    // window to close if the work was quicker, then read it.
    session::MemoryFaults faults = sess->memoryFaults();
    if (faults.lazy) {
        auto end = running + session::kFaultWindow + std::chrono::seconds(1);
        if (Clock::now() < end)
            std::this_thread::sleep_until(end);
        faults = sess->memoryFaults();
    }
    const auto hoardAtLeave = sess->hoard();
    auto before = sess->timeline().size();
    auto ts = Clock::now();
    must(sess->suspendAndLeave(), "suspend");
    double suspendSeconds = since(ts);
    auto timeline = sess->timeline();
    std::uint64_t up = 0, downDuringSuspend = 0;
    for (std::size_t i = before; i < timeline.size(); ++i) {
        up += timeline[i].bytesUp;
        downDuringSuspend += timeline[i].bytesDown;
    }
    std::uint64_t committed = sess->committedVersion();
    sess.reset();

    // Identical state for the next run: the measured version again.
    {
        parcel::Parcels parcels(*link.store,
                                must(parcel::signIn(*link.store, kUser, kPassword), "sign in"));
        must(parcels.rollback(parcelName, version, "bench"), "rollback");
    }
    json::Object result{
        {"policy", policy},
        {"link", linkName},
        {"resume_seconds", frameSeconds},
        {"running_seconds", runningSeconds},
        {"prefetch_seconds", prefetchSeconds},
        {"resume_bytes_down", bytesBeforeFrame},
        {"suspend_seconds", suspendSeconds},
        {"suspend_bytes_up", up},
        {"suspend_bytes_down", downDuringSuspend},
        {"committed_version", committed},
        {"kiosk_start_seconds", createSeconds},
        {"memory_faults", json::Object{{"lazy", faults.lazy},
                                       {"local", faults.local},
                                       {"remote", faults.remote},
                                       {"local_p50_ms", faults.localP50Ms},
                                       {"local_p99_ms", faults.localP99Ms},
                                       {"remote_p50_ms", faults.remoteP50Ms},
                                       {"remote_p99_ms", faults.remoteP99Ms}}},
        {"memory_hoard_at_leave", json::Object{{"done", hoardAtLeave.memoryChunksDone},
                                               {"total", hoardAtLeave.memoryChunksTotal}}},
        {"resume_timeline", timelineJson(resumeTimeline)},
        {"timeline", timelineJson(timeline)}};
    fs::create_directories(work + "/runs");
    writeJson(work + "/runs/" + linkName + "-" + policy + ".json", result);
    std::printf("%s\n", json::Value(result).dump().c_str());
    return 0;
}

// Argon2id at the limits new accounts get by default (the store's
// isr-store.json defaults to KdfParams::moderate(); the kiosk enforces a
// floor) against the minimal limits the benchmark's account uses: the
// sign-in row the runs leave out. Best of three each.
int kdf(const std::string& work) {
    auto best = [](const crypto::KdfParams& p) {
        double b = 1e9;
        for (int i = 0; i < 3; ++i) {
            auto t = Clock::now();
            must(crypto::deriveKey(kPassword, p), "argon2id");
            b = std::min(b, since(t));
        }
        return b;
    };
    const auto def = crypto::KdfParams::moderate();
    double d = best(def), m = best(crypto::KdfParams::minimal());
    json::Object info{{"default_seconds", d},
                      {"minimal_seconds", m},
                      {"default_ops", std::uint64_t(def.opsLimit)},
                      {"default_mem_bytes", std::uint64_t(def.memLimit)}};
    fs::create_directories(work);
    writeJson(work + "/kdf.json", info);
    std::printf("%s\n", json::Value(info).dump().c_str());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    std::vector<std::string> a(argv + 1, argv + argc);
    if (a.size() == 2 && a[0] == "setup")
        return setup(a[1]);
    if ((a.size() == 3 || (a.size() == 4 && a[3] == "lazy")) && a[0] == "round")
        return round(a[1], unsigned(std::stoul(a[2])), a.size() == 4);
    if ((a.size() == 2 || (a.size() == 3 && a[2] == "lazy")) && a[0] == "warm")
        return warm(a[1], a.size() == 3);
    if (a.size() == 4 && a[0] == "run")
        return run(a[1], a[2], a[3]);
    if (a.size() == 2 && a[0] == "kdf")
        return kdf(a[1]);
    std::fprintf(stderr, "usage: bench_walkup setup|round N [lazy]|warm [lazy]|run|kdf WORKDIR "
                         "[POLICY LINK]\n");
    return 2;
}
