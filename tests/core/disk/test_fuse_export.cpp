// FuseExport: a ParcelDisk (chunks in a real FileStore, a real ChunkCache)
// served as one file on a real FUSE mount, mapped MAP_SHARED by the test as
// QEMU maps guest RAM. Also measures fault service time and the read sizes
// the kernel asks for (printed, never asserted).
#include "cache/cache.h"
#include "chunk/chunk.h"
#include "disk/file_block_device.h"
#include "disk/fuse_export.h"
#include "disk/parcel_disk.h"
#include "probe_device.h"
#include "session/workspace.h"
#include "store/store.h"
#include "testsupport.h"

#include <QCoreApplication>
#include <QFile>
#include <QProcess>
#include <QProcessEnvironment>
#include <QTest>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <linux/falloc.h>
#include <map>
#include <mutex>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace isr::disk;
using isr::test::ProbeDevice;

namespace {

constexpr std::uint32_t kChunk = 128 * 1024;
constexpr std::uint64_t kChunks = 256;
using namespace std::chrono_literals;
constexpr std::uint64_t kDiskSize = kChunks * kChunk; // 32 MiB of "guest RAM"
constexpr std::uint64_t kPage = 4096;

std::string chunkKey(const chunk::ChunkName& name) {
    std::string hex = chunk::nameHex(name);
    return "users/alice/chunks/" + hex.substr(0, 2) + "/" + hex;
}

// The file opened and mapped MAP_SHARED, as QEMU maps share=on guest RAM.
struct Mapping {
    int fd = -1;
    std::uint8_t* data = nullptr;
    std::uint64_t size = 0;
    Mapping(const std::string& path, std::uint64_t length, bool writable = true) : size(length) {
        fd = ::open(path.c_str(), writable ? O_RDWR : O_RDONLY);
        if (fd < 0)
            return;
        void* p =
            ::mmap(nullptr, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
        data = p == MAP_FAILED ? nullptr : static_cast<std::uint8_t*>(p);
    }
    ~Mapping() {
        if (data)
            ::munmap(data, size);
        if (fd >= 0)
            ::close(fd);
    }
    bool ok() const { return data != nullptr; }
};

// Runs `body` in a forked child and returns its wait status. The child may
// only do async-signal-safe things (the parent has threads): touch memory,
// system calls, _exit.
int inChild(const std::function<int()>& body) {
    pid_t pid = ::fork();
    if (pid == 0) {
        // QTest's crash handler would run a debugger on the SIGBUS we expect.
        struct sigaction plain {};
        plain.sa_handler = SIG_DFL;
        ::sigaction(SIGBUS, &plain, nullptr);
        ::_exit(body());
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
}

bool diedOfSigbus(int status) {
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS;
}

// The VmFlags of the mapping that holds `address` (/proc/self/smaps; a
// neighbour with the same flags may have merged with it).
std::string vmFlagsAt(const void* address) {
    const auto at = reinterpret_cast<unsigned long>(address);
    std::ifstream smaps("/proc/self/smaps");
    bool inside = false;
    for (std::string line; std::getline(smaps, line);) {
        unsigned long start = 0, end = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &start, &end) == 2 &&
            line.find(':') > line.find(' '))
            inside = start <= at && at < end;
        else if (inside && line.rfind("VmFlags:", 0) == 0)
            return line + " ";
    }
    return {};
}

// Run (as a child of nohugepageLibraryDropsOnlyHugepage, the library
// preloaded or not): advises MADV_HUGEPAGE on one half of a mapping and
// MADV_NOHUGEPAGE on the other; exit code bit 0 = "hg" took effect, bit 1 =
// "nh" took effect.
[[noreturn]] void madviseProbe() {
    constexpr std::size_t kHalf = 2u << 20;
    auto* p = static_cast<std::uint8_t*>(
        ::mmap(nullptr, 2 * kHalf, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED || ::madvise(p, kHalf, MADV_HUGEPAGE) != 0 ||
        ::madvise(p + kHalf, kHalf, MADV_NOHUGEPAGE) != 0)
        std::exit(100);
    int code = 0;
    if (vmFlagsAt(p).find(" hg") != std::string::npos)
        code |= 1;
    if (vmFlagsAt(p + kHalf).find(" nh") != std::string::npos)
        code |= 2;
    std::exit(code);
}

// Run (as a child of deadMountOfAKilledKioskIsDetached): serves a small
// file-backed device on `mountDir`, says so on stdout and waits to be
// killed, as a kiosk that dies mid-session.
[[noreturn]] void serveUntilKilled(const std::string& mountDir) {
    auto device = FileBlockDevice::create(mountDir + ".img", 1 << 20);
    if (!device.ok())
        std::exit(100);
    auto exported = FuseExport::start(**device, {.mountDir = mountDir});
    if (!exported.ok())
        std::exit(101);
    std::printf("serving %s\n", (*exported)->filePath().c_str());
    std::fflush(stdout);
    for (;;)
        ::pause();
}

std::string readText(const std::string& path) {
    std::ifstream in(path);
    std::string text;
    std::getline(in, text);
    return text;
}

} // namespace

class TestFuseExport : public QObject {
    Q_OBJECT

    std::unique_ptr<isr::test::TempDir> dir_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<cache::ChunkCache> cache_;
    crypto::Secret secret_;
    ChunkTable baseTable_;
    Bytes baseBytes_;
    int serial_ = 0;

    std::string freshDir(const std::string& what) {
        std::string path = dir_->file(what + std::to_string(++serial_));
        std::filesystem::create_directories(path);
        return path;
    }

    std::unique_ptr<ParcelDisk> openDisk(const ChunkTable& table,
                                         cache::ChunkCache* cache = nullptr) {
        ParcelDiskConfig config;
        config.diskSize = kDiskSize;
        config.chunkSize = kChunk;
        config.baseTable = table;
        config.fetch = [this](const chunk::ChunkName& name) { return store_->get(chunkKey(name)); };
        config.cache = cache ? cache : cache_.get();
        config.convergenceSecret = secret_.clone();
        config.overlayDirectory = freshDir("overlay");
        config.startHoard = false;
        auto disk = ParcelDisk::open(std::move(config));
        if (!disk.ok())
            qFatal("%s", disk.error().describe().c_str());
        return std::move(*disk);
    }

    std::unique_ptr<FuseExport> serve(BlockDevice& device, FuseExportOptions options = {}) {
        options.mountDir = freshDir("mnt");
        auto exported = FuseExport::start(device, options);
        if (!exported.ok())
            qFatal("%s", exported.error().describe().c_str());
        return std::move(*exported);
    }

    Bytes deviceBytes(BlockDevice& device) {
        Bytes out(device.size());
        if (!device.read(0, out).ok())
            qFatal("device read failed");
        return out;
    }

private slots:
    void initTestCase() {
        if (std::getenv("ISR_MADVISE_PROBE"))
            madviseProbe();
        if (const char* m = std::getenv("ISR_FUSE_SERVE_UNTIL_KILLED"))
            serveUntilKilled(m);
        if (::access("/dev/fuse", R_OK | W_OK) != 0)
            isr::test::skipAll("/dev/fuse is missing or not usable (" +
                               std::string(std::strerror(errno)) + ")");
        isr::test::requirePrograms({"fusermount3"});
        QVERIFY(crypto::initialize().ok());
        dir_ = std::make_unique<isr::test::TempDir>();
        std::filesystem::create_directories(dir_->file("store"));
        auto store = store::openStore("file://" + dir_->file("store"));
        QVERIFY(store.ok());
        store_ = std::move(*store);
        auto cache = cache::ChunkCache::open(dir_->file("cache"), 1ull << 30);
        QVERIFY(cache.ok());
        cache_ = std::move(*cache);
        secret_ = crypto::Secret::random(32);

        // Guest-RAM-like content: a third random, the rest patterned, some
        // chunks all zero (not stored).
        baseBytes_.assign(kDiskSize, 0);
        baseTable_.resize(kChunks);
        Bytes random = crypto::randomBytes(kDiskSize / 3 + kChunk);
        for (std::uint64_t i = 0; i < kChunks; ++i) {
            std::uint64_t start = i * kChunk;
            if (i % 7 == 2)
                continue;
            for (std::uint64_t j = 0; j < kChunk; ++j)
                baseBytes_[start + j] =
                    i % 3 == 0 ? random[(i / 3) * kChunk + j] : std::uint8_t((start + j) / 13 ^ i);
            auto encoded =
                chunk::encode(secret_.view(), ByteView(baseBytes_).subspan(start, kChunk));
            QVERIFY(store_->put(chunkKey(encoded.ref.name), encoded.ciphertext).ok());
            baseTable_[i] = encoded.ref;
        }
        // Every chunk in the kiosk's cache, as after the hoard: the figures
        // below are FUSE's and the decode's, not the store's.
        auto disk = openDisk(baseTable_);
        disk->startHoard();
        QVERIFY(disk->waitForHoard(std::chrono::minutes(2)));
    }

    void refusesBadOptions() {
        auto disk = openDisk(baseTable_);
        QCOMPARE(FuseExport::start(*disk, {.mountDir = dir_->file("nope")}).error().code,
                 Errc::InvalidArgument);
        QCOMPARE(
            FuseExport::start(*disk, {.mountDir = freshDir("mnt"), .fileName = "a/b"}).error().code,
            Errc::InvalidArgument);
    }

    void servesTheDeviceAsOneFile() {
        auto disk = openDisk(baseTable_);
        ProbeDevice probe(*disk);
        auto exported = serve(probe);
        struct stat st {};
        QCOMPARE(::stat(exported->filePath().c_str(), &st), 0);
        QVERIFY(S_ISREG(st.st_mode));
        QCOMPARE(st.st_mode & 07777, 0600u);
        QCOMPARE(std::uint64_t(st.st_size), kDiskSize);
        std::vector<std::string> names;
        for (auto& entry : std::filesystem::directory_iterator(exported->mountDir()))
            names.push_back(entry.path().filename().string());
        QCOMPARE(names, std::vector<std::string>{"pc.ram"});

        Mapping map(exported->filePath(), kDiskSize, false);
        QVERIFY(map.ok());
        QVERIFY(std::memcmp(map.data, baseBytes_.data(), kDiskSize) == 0);
        auto stats = exported->stats();
        QVERIFY(stats.bytesRead >= kDiskSize);
        QCOMPARE(stats.errors, 0u);
        // Every page came from the device once: the mapping is the page cache.
        std::uint64_t deviceBytesRead = 0;
        for (auto& r : probe.reads())
            deviceBytesRead += r.length;
        QCOMPARE(deviceBytesRead, stats.bytesRead);
        QVERIFY(deviceBytesRead < 2 * kDiskSize);
    }

    void writesThroughTheMappingReachTheDevice() {
        auto disk = openDisk(baseTable_);
        auto exported = serve(*disk);
        Bytes expected = baseBytes_;
        {
            Mapping map(exported->filePath(), kDiskSize);
            QVERIFY(map.ok());
            auto fill = [&](std::uint64_t at, std::uint64_t n, std::uint8_t v) {
                std::memset(map.data + at, v, n);
                std::fill_n(expected.begin() + at, n, v);
            };
            fill(100, 3000, 0xab);              // partial page, partial chunk
            fill(kChunk - 2048, 4096, 0xcd);    // across a chunk boundary
            fill(2 * kChunk + 5000, 777, 0x17); // into an all-zero base chunk
            fill(40 * kChunk, kChunk, 0x42);    // one whole chunk
            fill(kDiskSize - 10, 10, 0x99);     // the last bytes
            QCOMPARE(::msync(map.data, kDiskSize, MS_SYNC), 0);
            QVERIFY(deviceBytes(*disk) == expected);

            // Dirtied again, then fsync of another descriptor (the kiosk's,
            // after pausing the VM) writes it back too.
            fill(7 * kChunk + 1, 1, 0x01);
            int fd = ::open(exported->filePath().c_str(), O_RDWR);
            QVERIFY(fd >= 0);
            QCOMPARE(::fsync(fd), 0);
            QVERIFY(deviceBytes(*disk) == expected);

            // write(2) goes through too (write-through, no writeback cache).
            Bytes small(5000, 0x5a);
            QCOMPARE(::pwrite(fd, small.data(), small.size(), 9 * kChunk + 3),
                     ssize_t(small.size()));
            std::copy(small.begin(), small.end(), expected.begin() + 9 * kChunk + 3);
            QVERIFY(deviceBytes(*disk) == expected);
            QVERIFY(std::memcmp(map.data, expected.data(), kDiskSize) == 0);
            ::close(fd);
        }
        auto stats = exported->stats();
        QVERIFY(stats.writes > 0);
        QVERIFY(stats.flushes > 0);
        QCOMPARE(stats.errors, 0u);
        QVERIFY(disk->stats().overlayChunks >= 6);
    }

    void punchedHolesReadAsZeroes() {
        auto disk = openDisk(baseTable_);
        auto exported = serve(*disk);
        Mapping map(exported->filePath(), kDiskSize);
        QVERIFY(map.ok());
        Bytes expected = baseBytes_;
        QVERIFY(std::memcmp(map.data, expected.data(), kDiskSize) == 0); // all cached now
        // What the balloon's free page reporting does: whole pages, 4 MiB
        // units, plus a range that cuts chunks in half.
        for (auto [at, n] :
             {std::pair<std::uint64_t, std::uint64_t>{4u << 20, 4u << 20}, {kChunk / 2, kChunk}}) {
            QCOMPARE(::fallocate(map.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(at),
                                 off_t(n)),
                     0);
            std::fill_n(expected.begin() + at, n, 0);
        }
        // FALLOC_FL_ZERO_RANGE too (not used by QEMU for RAM, cheap to have).
        QCOMPARE(::fallocate(map.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 20 * kChunk + 4096,
                             8192),
                 0);
        std::fill_n(expected.begin() + 20 * kChunk + 4096, 8192, 0);
        QVERIFY(deviceBytes(*disk) == expected);
        QVERIFY(std::memcmp(map.data, expected.data(), kDiskSize) == 0); // cache dropped, re-read
        QCOMPARE(exported->stats().trims, 3u);
        // Modes that would grow the file or that we do not serve.
        QCOMPARE(::fallocate(map.fd, 0, off_t(kDiskSize - 4096), 8192), -1);
        QCOMPARE(errno, EFBIG);
        QCOMPARE(::fallocate(map.fd, FALLOC_FL_COLLAPSE_RANGE, 0, 65536), -1);
        QCOMPARE(errno, EOPNOTSUPP);
        QCOMPARE(::fallocate(map.fd, 0, 0, 8192), 0); // already allocated
    }

    void refusesSizeChangesAndNewNames() {
        auto disk = openDisk(baseTable_);
        auto exported = serve(*disk);
        const std::string file = exported->filePath();
        const std::string mnt = exported->mountDir();
        QCOMPARE(::truncate(file.c_str(), off_t(kDiskSize)), 0);
        QCOMPARE(::truncate(file.c_str(), off_t(kDiskSize - 4096)), -1);
        QCOMPARE(errno, EINVAL);
        QCOMPARE(::truncate(file.c_str(), off_t(kDiskSize + 4096)), -1);
        QCOMPARE(errno, EINVAL);
        QCOMPARE(::open(file.c_str(), O_RDWR | O_TRUNC), -1);
        QCOMPARE(errno, EINVAL);
        int fd = ::open(file.c_str(), O_RDWR);
        QVERIFY(fd >= 0);
        char byte = 1;
        QCOMPARE(::pwrite(fd, &byte, 1, off_t(kDiskSize)), ssize_t(-1));
        QCOMPARE(errno, EFBIG);
        ::close(fd);
        QCOMPARE(::open((mnt + "/other").c_str(), O_RDWR | O_CREAT, 0600), -1);
        QCOMPARE(errno, EPERM);
        QCOMPARE(::mkdir((mnt + "/d").c_str(), 0700), -1);
        QCOMPARE(errno, EPERM);
        QCOMPARE(::unlink(file.c_str()), -1);
        QCOMPARE(errno, EPERM);
        QCOMPARE(::rename(file.c_str(), (mnt + "/x").c_str()), -1);
        QCOMPARE(errno, EPERM);
        QCOMPARE(::chmod(file.c_str(), 0666), -1);
        QCOMPARE(errno, EPERM);
        QVERIFY(deviceBytes(*disk) == baseBytes_); // nothing changed
    }

    void manyThreadsFaultAtOnce() {
        auto disk = openDisk(baseTable_);
        auto exported = serve(*disk, {.mountDir = {}, .threads = 4});
        Mapping map(exported->filePath(), kDiskSize, false);
        QVERIFY(map.ok());
        constexpr int kThreads = 8;
        const std::uint64_t pages = kDiskSize / kPage;
        std::atomic<std::uint64_t> wrong{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                // Every thread visits every page, each in its own order, so
                // the same pages are faulted by several threads at once.
                for (std::uint64_t i = 0; i < pages; ++i) {
                    std::uint64_t page = (i * 2654435761u + std::uint64_t(t) * 977) % pages;
                    if (std::memcmp(map.data + page * kPage, baseBytes_.data() + page * kPage,
                                    kPage) != 0)
                        wrong++;
                }
            });
        for (auto& thread : threads)
            thread.join();
        QCOMPARE(wrong.load(), 0u);
        QCOMPARE(exported->stats().errors, 0u);
    }

    void deviceErrorIsEioOrSigbusNeverData() {
        // Chunk 30's ciphertext is not in the store (nor the cache): the
        // ParcelDisk fails that read, as for a store that lost or mangled it.
        ChunkTable table = baseTable_;
        Bytes lost(kChunk, 0x3c);
        table[30] = chunk::encode(secret_.view(), lost).ref;
        auto disk = openDisk(table);
        auto exported = serve(*disk);
        const std::uint64_t badAt = 30 * kChunk + 100;
        int fd = ::open(exported->filePath().c_str(), O_RDONLY);
        QVERIFY(fd >= 0);
        char byte = 0;
        QCOMPARE(::pread(fd, &byte, 1, off_t(badAt)), ssize_t(-1));
        QCOMPARE(errno, EIO);
        QCOMPARE(::pread(fd, &byte, 1, off_t(31 * kChunk)), ssize_t(1));
        QCOMPARE(std::uint8_t(byte), baseBytes_[31 * kChunk]);
        ::close(fd);

        Mapping map(exported->filePath(), kDiskSize, false);
        QVERIFY(map.ok());
        volatile std::uint8_t* mem = map.data;
        // QEMU touching that page of guest RAM dies of SIGBUS (what the user
        // sees is in core/disk/README.md); a good page reads fine.
        int bad = inChild([&] { return int(mem[badAt]); });
        QVERIFY2(diedOfSigbus(bad), qPrintable(QString::number(bad)));
        int good =
            inChild([&] { return mem[31 * kChunk + 7] == baseBytes_[31 * kChunk + 7] ? 0 : 1; });
        QVERIFY(WIFEXITED(good) && WEXITSTATUS(good) == 0);
        QVERIFY(exported->stats().errors > 0);
    }

    // The store goes away (FileStore: its root is renamed, as an unmounted
    // share) while guest RAM is still in it. A read of such a page waits
    // for the store instead of failing (a failure is SIGBUS in QEMU, and
    // the session's work since the resume would die with it); the store
    // back, the read returns the right bytes. stop() ends a read that is
    // still waiting: it does not hang.
    void unreachableStoreWaitsThenServes() {
        auto cache = cache::ChunkCache::open(freshDir("cold-cache"), 1ull << 30);
        QVERIFY(cache.ok());
        auto disk = openDisk(baseTable_, cache->get());
        FuseExportOptions options;
        options.storeRetryFirst = 20ms;
        options.storeRetryMax = 100ms;
        auto exported = serve(*disk, options);
        const std::string root = dir_->file("store"), away = dir_->file("store-away");
        std::filesystem::rename(root, away);
        struct Restore {
            std::string from, to;
            ~Restore() {
                std::error_code ec;
                if (!std::filesystem::exists(to, ec))
                    std::filesystem::rename(from, to, ec);
            }
        } restore{away, root};

        // One byte read in a thread of its own: done = 1 read, -1 failed.
        std::atomic<int> done{0};
        std::uint8_t byte = 0;
        auto readByte = [&](std::uint64_t offset) {
            done = 0;
            return std::thread([&, offset] {
                int fd = ::open(exported->filePath().c_str(), O_RDONLY);
                done = fd >= 0 && ::pread(fd, &byte, 1, off_t(offset)) == 1 ? 1 : -1;
                if (fd >= 0)
                    ::close(fd);
            });
        };
        const std::uint64_t at = 40 * kChunk + 4321;
        std::thread reader = readByte(at);
        QTRY_VERIFY_WITH_TIMEOUT(exported->stats().waitingForStore == 1, 10000);
        QTRY_VERIFY_WITH_TIMEOUT(exported->stats().storeRetries >= 3, 10000);
        QCOMPARE(done.load(), 0); // still waiting, not failed
        std::filesystem::rename(away, root);
        reader.join();
        QCOMPARE(done.load(), 1);
        QCOMPARE(byte, baseBytes_[at]);
        QCOMPARE(exported->stats().waitingForStore, 0u);
        QCOMPARE(exported->stats().errors, 0u);

        // Gone again, and the session ends while a read waits.
        std::filesystem::rename(root, away);
        std::thread stuck = readByte(52 * kChunk + 17);
        QTRY_VERIFY_WITH_TIMEOUT(exported->stats().waitingForStore == 1, 10000);
        exported->stop();
        stuck.join();
        QCOMPARE(done.load(), -1);
    }

    void otherUsersCannotOpenIt() {
        if (::geteuid() != 0)
            QSKIP("needs root to act as another user");
        const uid_t nobody = 65534;
        auto disk = openDisk(baseTable_);
        // The fence is the mount: without allow_other the kernel refuses
        // every other user (root's children too), whatever the modes say.
        auto attempt = [&](const std::string& path) {
            const char* p = path.c_str();
            int status = inChild([&] {
                if (::setgid(nobody) != 0 || ::setuid(nobody) != 0)
                    return 100;
                int fd = ::open(p, O_RDONLY);
                if (fd < 0)
                    return errno;
                char byte;
                return ::pread(fd, &byte, 1, 0) == 1 ? 0 : 101;
            });
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        };
        {
            auto exported = serve(*disk);
            QCOMPARE(attempt(exported->filePath()), EACCES);
        }
        { // allow_other: the file's mode (0600, owner root) is the fence
            auto exported = serve(*disk, {.mountDir = {}, .allowOther = true});
            QCOMPARE(attempt(exported->filePath()), EACCES);
        }
        { // ... and a group QEMU's user is in opens it (isr-qemu's case)
            auto exported = serve(
                *disk, {.mountDir = {}, .allowOther = true, .fileMode = 0640, .fileGroup = nobody});
            QCOMPARE(attempt(exported->filePath()), 0);
        }
    }

    void stopWithTheFileStillMappedDoesNotHang() {
        auto disk = openDisk(baseTable_);
        auto exported = serve(*disk);
        Mapping map(exported->filePath(), kDiskSize);
        QVERIFY(map.ok());
        QVERIFY(std::memcmp(map.data, baseBytes_.data(), kDiskSize / 2) == 0);
        map.data[5] = 0x77; // dirty, never written back
        exported->stop();   // QEMU still has it mapped: must return
        struct stat st {};
        QCOMPARE(::stat(exported->filePath().c_str(), &st), -1); // detached
        QCOMPARE(map.data[5], std::uint8_t(0x77));               // cached pages stay
        volatile std::uint8_t* mem = map.data;
        int status = inChild([&] { return int(mem[kDiskSize - 1]); }); // never read
        QVERIFY2(diedOfSigbus(status), qPrintable(QString::number(status)));
        exported->stop(); // idempotent
    }

    // A kiosk killed while it served a lazy session's RAM leaves a dead
    // mount (ENOTCONN) in its session directory; the next session's start
    // (Workspace::wipeCrashed) detaches it and removes the directory.
    void deadMountOfAKilledKioskIsDetached() {
        const std::string stateDir = freshDir("state");
        const std::string mountDir = stateDir + "/sessions/0123456789ab/ram";
        std::filesystem::create_directories(mountDir);
        QProcess child;
        auto env = QProcessEnvironment::systemEnvironment();
        env.insert("ISR_FUSE_SERVE_UNTIL_KILLED", QString::fromStdString(mountDir));
        child.setProcessEnvironment(env);
        child.start(QCoreApplication::applicationFilePath(), {});
        QVERIFY(child.waitForStarted(10000));
        // Its QtTest banner comes first on stdout.
        QByteArray said;
        QTRY_VERIFY_WITH_TIMEOUT((said += child.readAllStandardOutput()).contains("serving ") ||
                                     child.state() == QProcess::NotRunning,
                                 30000);
        QVERIFY2(said.contains("serving "), said.constData());
        struct stat st {};
        QCOMPARE(::stat((mountDir + "/pc.ram").c_str(), &st), 0);
        QCOMPARE(st.st_size, off_t(1 << 20));
        child.kill(); // SIGKILL: no unmount
        QVERIFY(child.waitForFinished(10000));
        // Still mounted, and dead: the file cannot be read.
        auto mounted = [&] {
            std::ifstream mounts("/proc/self/mounts");
            for (std::string line; std::getline(mounts, line);)
                if (line.find(" " + mountDir + " ") != std::string::npos)
                    return true;
            return false;
        };
        QVERIFY(mounted());
        char byte = 0;
        int fd = ::open((mountDir + "/pc.ram").c_str(), O_RDONLY);
        QVERIFY(fd < 0 || ::pread(fd, &byte, 1, 0) < 0);
        if (fd >= 0)
            ::close(fd);
        // Not a mount point: nothing to do.
        QVERIFY(FuseExport::detachLeftover(stateDir).ok());
        QVERIFY(FuseExport::detachLeftover(stateDir + "/missing").ok());
        QVERIFY(mounted());

        session::Workspace::wipeCrashed(stateDir);
        QVERIFY(!mounted());
        QVERIFY2(!std::filesystem::exists(stateDir + "/sessions"),
                 "the crashed session's directory is still there");
    }

    // The guest dirtying its RAM: every page of a cold mapping written once
    // (each write fault reads the page first), then msync. FUSE marks its
    // mounts strictlimit with max_ratio 1%, so the writer is throttled once a
    // small share of the dirty limit is dirty on this mount (raising
    // /sys/class/bdi/<dev>/max_ratio to 50 changed nothing measurable here:
    // the time goes to reading each page before its first write).
    void measureDirtying() {
        auto disk = openDisk(baseTable_);
        auto exported = serve(*disk);
        struct stat st {};
        QCOMPARE(::stat(exported->filePath().c_str(), &st), 0);
        std::string bdi = "/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                          std::to_string(minor(st.st_dev));
        Mapping map(exported->filePath(), kDiskSize);
        QVERIFY(map.ok());
        auto begin = std::chrono::steady_clock::now();
        for (std::uint64_t at = 0; at < kDiskSize; at += kPage)
            std::memset(map.data + at, 0x5c, kPage);
        auto dirtied = std::chrono::steady_clock::now();
        auto during = exported->stats();
        QCOMPARE(::msync(map.data, kDiskSize, MS_SYNC), 0);
        auto synced = std::chrono::steady_clock::now();
        auto after = exported->stats();
        using Seconds = std::chrono::duration<double>;
        qInfo("dirtying %llu MiB: %.2f s (%llu writes, %.1f MiB written back meanwhile), msync "
              "%.2f s (%.1f MiB); bdi max_ratio %s, strict_limit %s",
              (unsigned long long)(kDiskSize >> 20), Seconds(dirtied - begin).count(),
              (unsigned long long)during.writes, double(during.bytesWritten) / (1 << 20),
              Seconds(synced - dirtied).count(),
              double(after.bytesWritten - during.bytesWritten) / (1 << 20),
              readText(bdi + "/max_ratio").c_str(), readText(bdi + "/strict_limit").c_str());
        Bytes expected(kDiskSize, 0x5c);
        QVERIFY(deviceBytes(*disk) == expected);
    }

    // packaging/qemu-nohugepage.c, preloaded into a process: MADV_HUGEPAGE
    // is dropped, other advice still reaches the kernel.
    void nohugepageLibraryDropsOnlyHugepage() {
        const QString library = ISR_BINARY_DIR "/packaging/libisr-qemu-nohugepage.so";
        if (!QFile::exists(library))
            QSKIP("libisr-qemu-nohugepage.so is not built");
#if defined(__SANITIZE_ADDRESS__)
        QSKIP("an ASan binary refuses a preloaded library ahead of its runtime");
#endif
        auto probe = [&](bool preload) {
            QProcess child;
            auto env = QProcessEnvironment::systemEnvironment();
            env.insert("ISR_MADVISE_PROBE", "1");
            if (preload)
                env.insert("LD_PRELOAD", library);
            child.setProcessEnvironment(env);
            child.start(QCoreApplication::applicationFilePath(),
                        {"refusesBadOptions"}); // initTestCase probes
            child.waitForFinished();
            return child.exitCode();
        };
        QCOMPARE(probe(false), 3); // both take effect without it
        QCOMPARE(probe(true), 2);  // only MADV_NOHUGEPAGE with it
    }

    // Figures for issue #17, printed (TCG and a loaded host make any bound
    // meaningless). Every touch is one byte every 512 KiB of a cold mapping;
    // the ParcelDisk's chunks are in the kiosk cache but not decoded yet.
    void measureFaultService() {
        utsname host{};
        ::uname(&host);
        qInfo("kernel %s, THP %s", host.release,
              readText("/sys/kernel/mm/transparent_hugepage/enabled").c_str());
        struct Mode {
            const char* name;
            int advice; // -1: none
            std::uint32_t readahead;
        };
        for (Mode mode : {Mode{"default (readahead 128K)", -1, 128 * 1024},
                          Mode{"readahead 0", -1, 0}, Mode{"MADV_RANDOM", MADV_RANDOM, 128 * 1024},
                          Mode{"MADV_HUGEPAGE (QEMU's)", MADV_HUGEPAGE, 128 * 1024}}) {
            auto disk = openDisk(baseTable_);
            ProbeDevice probe(*disk);
            auto exported = serve(probe, {.mountDir = {}, .maxReadahead = mode.readahead});
            Mapping map(exported->filePath(), kDiskSize, false);
            QVERIFY(map.ok());
            if (mode.advice >= 0)
                QCOMPARE(::madvise(map.data, kDiskSize, mode.advice), 0);
            std::vector<double> faultMicros;
            std::size_t readsBefore = 0;
            for (std::uint64_t at = 0; at < kDiskSize; at += 512u << 10) {
                auto begin = std::chrono::steady_clock::now();
                volatile std::uint8_t value = map.data[at];
                auto took = std::chrono::steady_clock::now() - begin;
                QCOMPARE(std::uint8_t(value), baseBytes_[at]);
                std::size_t readsNow = probe.reads().size();
                if (readsNow != readsBefore) // a fault that went to the device
                    faultMicros.push_back(std::chrono::duration<double, std::micro>(took).count());
                readsBefore = readsNow;
            }
            std::sort(faultMicros.begin(), faultMicros.end());
            auto pct = [&](double p) {
                return faultMicros.empty()
                           ? 0.0
                           : faultMicros[std::min(faultMicros.size() - 1,
                                                  std::size_t(p * double(faultMicros.size())))];
            };
            std::map<std::uint64_t, int> sizes;
            std::uint64_t bytes = 0;
            for (auto& r : probe.reads()) {
                sizes[r.length]++;
                bytes += r.length;
            }
            std::string sizeText;
            for (auto [size, count] : sizes)
                sizeText += std::to_string(count) + "x" + std::to_string(size / 1024) + "K ";
            qInfo("%-26s faults %3zu  p50 %7.0f us  p99 %7.0f us  read %6.1f MiB in %zu reads: %s",
                  mode.name, faultMicros.size(), pct(0.5), pct(0.99), double(bytes) / (1 << 20),
                  probe.reads().size(), sizeText.c_str());
        }
    }
};

QTEST_GUILESS_MAIN(TestFuseExport)
#include "test_fuse_export.moc"
