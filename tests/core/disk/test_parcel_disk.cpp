// ParcelDisk behind the real NBD server, driven by QEMU's own clients, with
// chunks in a real FileStore and a real ChunkCache.
#include "cache/cache.h"
#include "cache/chunk_source.h"
#include "chunk/chunk.h"
#include "disk/hoard.h"
#include "disk/nbd_server.h"
#include "disk/parcel_disk.h"
#include "nbd_test_client.h"
#include "store/store.h"
#include "testsupport.h"

#include <QTest>
#include <QThread>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sys/resource.h>
#include <thread>

using namespace isr;
using namespace isr::disk;
using isr::test::RawNbdClient;

namespace {

constexpr std::uint32_t kChunk = 128 * 1024;
constexpr std::uint64_t kChunks = 24;
constexpr std::uint64_t kDiskSize = (kChunks - 1) * kChunk + 5120; // short last chunk

std::string chunkKey(const chunk::ChunkName& name) {
    std::string hex = chunk::nameHex(name);
    return "users/alice/chunks/" + hex.substr(0, 2) + "/" + hex;
}

Bytes readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

QStringList qargs(std::initializer_list<std::string> args) {
    QStringList out;
    for (const auto& a : args)
        out << QString::fromStdString(a);
    return out;
}

bool contains(const Bytes& haystack, const Bytes& needle) {
    return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
           haystack.end();
}

// Every regular file under dir, concatenated per file.
std::vector<Bytes> allFiles(const std::string& dir) {
    std::vector<Bytes> out;
    for (auto& entry : std::filesystem::recursive_directory_iterator(dir))
        if (entry.is_regular_file())
            out.push_back(readFile(entry.path().string()));
    return out;
}

} // namespace

class TestParcelDisk : public QObject {
    Q_OBJECT

    std::unique_ptr<isr::test::TempDir> dir_;
    std::unique_ptr<store::Store> store_;
    crypto::Secret secret_;
    ChunkTable baseTable_;
    Bytes baseBytes_; // the disk the base table describes
    std::atomic<bool> storeOnline_{true};
    std::atomic<int> offlineAttempts_{0};
    std::mutex fetchLogMutex_;
    std::vector<chunk::ChunkName> fetchLog_;
    int serial_ = 0;
    std::string lastCacheDir_;

    FetchChunk fetcher() {
        return [this](const chunk::ChunkName& name) -> Result<Bytes> {
            if (!storeOnline_) {
                offlineAttempts_++;
                return Error(Errc::Transient, "store offline (test)");
            }
            {
                std::lock_guard lock(fetchLogMutex_);
                fetchLog_.push_back(name);
            }
            return store_->get(chunkKey(name));
        };
    }

    std::string freshDir(const std::string& what) {
        std::string path = dir_->file(what + std::to_string(++serial_));
        std::filesystem::create_directories(path);
        return path;
    }

    Result<std::unique_ptr<ParcelDisk>> openDisk(const ChunkTable& table, cache::ChunkCache* cache,
                                                 bool hoard,
                                                 std::vector<std::uint64_t> workingSet = {},
                                                 int hoardThreads = 2,
                                                 std::string overlayDir = {}) {
        ParcelDiskConfig config;
        config.diskSize = kDiskSize;
        config.chunkSize = kChunk;
        config.baseTable = table;
        config.fetch = fetcher();
        config.cache = cache;
        config.convergenceSecret = secret_.clone();
        config.overlayDirectory = overlayDir.empty() ? freshDir("overlay") : overlayDir;
        config.workingSet = std::move(workingSet);
        config.hoardThreads = hoardThreads;
        config.startHoard = hoard;
        return ParcelDisk::open(std::move(config));
    }

    // A disk whose reads go to the sector form whenever they can: no
    // plaintext LRU, so every read of a base chunk after its first is a
    // sector-form read.
    Result<std::unique_ptr<ParcelDisk>> openSectorDisk(const ChunkTable& table,
                                                       cache::ChunkCache* cache, bool hoard,
                                                       const std::string& overlayDir = {},
                                                       std::uint64_t freeSpaceReserve = 0) {
        ParcelDiskConfig config;
        config.diskSize = kDiskSize;
        config.chunkSize = kChunk;
        config.baseTable = table;
        config.fetch = fetcher();
        config.cache = cache;
        config.convergenceSecret = secret_.clone();
        config.overlayDirectory = overlayDir.empty() ? freshDir("overlay") : overlayDir;
        config.hoardThreads = 2;
        config.startHoard = hoard;
        config.plaintextCacheChunks = 0;
        config.hoardFreeSpaceReserve = freeSpaceReserve;
        return ParcelDisk::open(std::move(config));
    }

    // Reads [offset, offset + length) through the device and compares.
    static bool readsAs(BlockDevice& device, std::uint64_t offset, std::uint64_t length,
                        const Bytes& expected) {
        Bytes buffer(length);
        if (!device.read(offset, buffer).ok())
            return false;
        return std::equal(buffer.begin(), buffer.end(), expected.begin() + std::ptrdiff_t(offset));
    }

    std::unique_ptr<NbdServer> serve(BlockDevice& device) {
        NbdServerOptions options;
        options.socketPath = freshDir("sock") + "/disk.sock";
        auto server = NbdServer::start(device, options);
        if (!server.ok())
            qFatal("%s", server.error().describe().c_str());
        return std::move(*server);
    }

    isr::test::ProcessResult qemuIo(const std::string& uri, std::vector<std::string> commands) {
        QStringList args = qargs({"-f", "raw", uri});
        for (const auto& c : commands)
            args << "-c" << QString::fromStdString(c);
        return isr::test::runProcess("qemu-io", args);
    }

    // Whole disk through qemu-img convert.
    Bytes copyOut(const std::string& uri) {
        std::string out = freshDir("copy") + "/out.raw";
        auto r = isr::test::runProcess("qemu-img",
                                       qargs({"convert", "-f", "raw", "-O", "raw", uri, out}));
        if (r.exitCode != 0)
            qWarning("qemu-img convert: %s", r.err.c_str());
        return readFile(out);
    }

    std::unique_ptr<cache::ChunkCache> openCache(std::uint64_t cap = 1ull << 30) {
        lastCacheDir_ = freshDir("cache");
        auto cache = cache::ChunkCache::open(lastCacheDir_, cap);
        if (!cache.ok())
            qFatal("%s", cache.error().describe().c_str());
        return std::move(*cache);
    }

private slots:
    void initTestCase() {
        isr::test::requirePrograms({"qemu-img", "qemu-io"});
        QVERIFY(crypto::initialize().ok());
        dir_ = std::make_unique<isr::test::TempDir>();
        std::filesystem::create_directories(dir_->file("store"));
        auto store = store::openStore("file://" + dir_->file("store"));
        QVERIFY2(store.ok(), store.ok() ? "" : store.error().describe().c_str());
        store_ = std::move(*store);
        secret_ = crypto::Secret::random(32);

        // Chunks: some all-zero (not stored), two identical (dedup), the rest
        // distinct, some compressible, some not.
        baseBytes_.assign(kDiskSize, 0);
        baseTable_.resize(kChunks);
        Bytes random = crypto::randomBytes(kDiskSize);
        for (std::uint64_t i = 0; i < kChunks; ++i) {
            std::uint64_t start = i * kChunk;
            std::uint64_t len = std::min<std::uint64_t>(kChunk, kDiskSize - start);
            if (i == 2 || i == 9 || i == 10)
                continue; // zero chunks
            for (std::uint64_t j = 0; j < len; ++j) {
                std::uint64_t at = start + j;
                baseBytes_[at] = (i % 3 == 0) ? random[at] : std::uint8_t((at / 7) ^ i);
            }
            if (i == 12) // same content as chunk 4
                std::copy_n(baseBytes_.begin() + 4 * kChunk, kChunk, baseBytes_.begin() + start);
            auto encoded = chunk::encode(secret_.view(), ByteView(baseBytes_).subspan(start, len));
            QVERIFY(store_->put(chunkKey(encoded.ref.name), encoded.ciphertext).ok());
            baseTable_[i] = encoded.ref;
        }
        QVERIFY(baseTable_[4]->name == baseTable_[12]->name);
    }

    void rejectsInconsistentTables() {
        ChunkTable shortTable(baseTable_.begin(), baseTable_.end() - 1);
        QCOMPARE(openDisk(shortTable, nullptr, false).error().code, Errc::Corrupt);
        ChunkTable badLength = baseTable_;
        badLength[1]->length = 100;
        QCOMPARE(openDisk(badLength, nullptr, false).error().code, Errc::Corrupt);
        ParcelDiskConfig unaligned;
        unaligned.diskSize = 1000;
        unaligned.baseTable.resize(1);
        unaligned.fetch = fetcher();
        unaligned.convergenceSecret = secret_.clone();
        unaligned.overlayDirectory = freshDir("overlay");
        QCOMPARE(ParcelDisk::open(std::move(unaligned)).error().code, Errc::InvalidArgument);
    }

    void readThroughWithEmptyCacheBeforeHoard() {
        auto cache = openCache();
        auto disk = openDisk(baseTable_, cache.get(), /*hoard=*/false);
        QVERIFY(disk.ok());
        auto server = serve(**disk);
        RawNbdClient client(server->socketPath());
        QCOMPARE(client.go(), kDiskSize);
        auto first = client.read(0, 512);
        QVERIFY(first.has_value());
        QVERIFY(std::equal(first->begin(), first->end(), baseBytes_.begin()));
        QCOMPARE((*disk)->stats().demandFetches, 1u);
        QCOMPARE((*disk)->hoardProgress().chunksDone, 0u);
        QVERIFY(!(*disk)->hoardProgress().running);
        QVERIFY(cache->contains(baseTable_[0]->name)); // demand fetches fill the cache
        QVERIFY(copyOut(server->uri()) == baseBytes_);
        // 21 stored chunks, 20 distinct names: every one fetched at most once.
        QVERIFY((*disk)->stats().demandFetches <= 20);
        QCOMPARE(cache->stats().chunks, 20u);
        QCOMPARE((*disk)->stats().overlayChunks, 0u);
    }

    void oddWritesReadBackAndSurviveANewTable() {
        auto cache = openCache();
        auto disk = openDisk(baseTable_, cache.get(), false);
        QVERIFY(disk.ok());
        auto server = serve(**disk);
        Bytes expected = baseBytes_;
        auto r = qemuIo(server->uri(), {"write -P 0xab 1000 3000", "read -P 0xab 1000 3000",
                                        // across the chunk 0/1 boundary, partial on both
                                        "write -P 0xcd 131000 3000", "read -P 0xcd 131000 3000",
                                        // into a zero chunk (9), partially
                                        "write -P 0x17 1180000 777", "read -P 0x17 1180000 777",
                                        // exactly one whole chunk (5)
                                        "write -P 0x42 655360 131072", "read -P 0x42 655360 131072",
                                        // the short last chunk's tail
                                        "write -P 0x99 " + std::to_string(kDiskSize - 333) + " 333",
                                        "read -P 0x99 " + std::to_string(kDiskSize - 333) + " 333",
                                        // rewrite inside an already dirty chunk
                                        "write -P 0xee 1500 10", "read -P 0xee 1500 10", "flush"});
        QVERIFY2(r.exitCode == 0, (r.out + r.err).c_str());
        QVERIFY2(r.out.find("Pattern verification failed") == std::string::npos, r.out.c_str());
        QVERIFY2(r.out.find("error") == std::string::npos, r.out.c_str());
        std::fill_n(expected.begin() + 1000, 3000, 0xab);
        std::fill_n(expected.begin() + 131000, 3000, 0xcd);
        std::fill_n(expected.begin() + 1180000, 777, 0x17);
        std::fill_n(expected.begin() + 655360, 131072, 0x42);
        std::fill_n(expected.end() - 333, 333, 0x99);
        std::fill_n(expected.begin() + 1500, 10, 0xee);
        QVERIFY(copyOut(server->uri()) == expected);
        server->stop();

        auto final = (*disk)->finalChunkTable();
        QVERIFY(final.ok());
        // Chunks 0, 1, 5, 9, 23 changed; each is a new chunk to upload.
        QCOMPARE(final->newChunks.size(), std::size_t(5));
        for (std::uint64_t i : {2, 3, 4, 6, 10, 12}) { // untouched: same entries
            QCOMPARE(final->table[i].has_value(), baseTable_[i].has_value());
            if (baseTable_[i])
                QVERIFY(final->table[i]->name == baseTable_[i]->name);
        }
        for (std::uint64_t i : {0, 1, 5, 9, 23}) // changed: new names
            QVERIFY(final->table[i] &&
                    (!baseTable_[i] || final->table[i]->name != baseTable_[i]->name));
        QVERIFY(!final->workingSet.empty());
        for (std::uint64_t i : {0, 1, 5, 9, 23})
            QVERIFY(std::find(final->workingSet.begin(), final->workingSet.end(), i) !=
                    final->workingSet.end());
        for (const auto& encoded : final->newChunks)
            QVERIFY(store_->put(chunkKey(encoded.ref.name), encoded.ciphertext).ok());

        // A fresh disk on the new table, with a fresh cache, reads the writes.
        auto cache2 = openCache();
        auto disk2 = openDisk(final->table, cache2.get(), false);
        QVERIFY(disk2.ok());
        auto server2 = serve(**disk2);
        QVERIFY(copyOut(server2->uri()) == expected);
    }

    void corruptChunkIsAnIoErrorNotWrongData() {
        // A private copy of chunk 7's ciphertext under a table of its own.
        ChunkTable table = baseTable_;
        std::string key = chunkKey(table[7]->name);
        std::string path = dir_->file("store") + "/" + key;
        Bytes original = readFile(path);
        Bytes damaged = original;
        damaged[damaged.size() / 2] ^= 0x01;
        std::ofstream(path, std::ios::binary | std::ios::trunc)
            .write(reinterpret_cast<const char*>(damaged.data()), std::streamsize(damaged.size()));

        auto cache = openCache();
        auto disk = openDisk(table, cache.get(), false);
        QVERIFY(disk.ok());
        auto server = serve(**disk);
        auto bad = qemuIo(server->uri(), {"read 917504 4096"}); // chunk 7
        QVERIFY2(bad.out.find("Input/output error") != std::string::npos,
                 (bad.out + bad.err).c_str());
        auto good = qemuIo(server->uri(), {"read 786432 4096", "read 1048576 4096"}); // 6, 8
        QVERIFY2(good.exitCode == 0 && good.out.find("error") == std::string::npos,
                 (good.out + good.err).c_str());
        QVERIFY((*disk)->stats().corruptChunks >= 1);
        QVERIFY(!cache->contains(table[7]->name)); // never cached
        // A partial write to the corrupt chunk fails too (needs the base).
        auto write = qemuIo(server->uri(), {"write -P 1 917504 512"});
        QVERIFY2(write.out.find("Input/output error") != std::string::npos, write.out.c_str());
        std::ofstream(path, std::ios::binary | std::ios::trunc)
            .write(reinterpret_cast<const char*>(original.data()),
                   std::streamsize(original.size()));
        // Restored: the next read fetches again and succeeds.
        auto again = qemuIo(server->uri(), {"read 917504 4096"});
        QVERIFY2(again.out.find("error") == std::string::npos, again.out.c_str());
    }

    void overlayHoldsNoPlaintext() {
        std::string overlayDir = freshDir("overlay");
        auto cache = openCache();
        std::string cacheDir = lastCacheDir_;
        auto disk = openDisk(baseTable_, cache.get(), false, {}, 2, overlayDir);
        QVERIFY(disk.ok());
        auto server = serve(**disk);
        std::string markerText = "ISR-PLAINTEXT-MARKER-0123456789";
        Bytes marker(markerText.begin(), markerText.end());
        Bytes payload;
        while (payload.size() < 3 * kChunk)
            payload.insert(payload.end(), marker.begin(), marker.end());
        payload.resize(3 * kChunk);
        RawNbdClient client(server->socketPath());
        QCOMPARE(client.go(), kDiskSize);
        QCOMPARE(client.write(kChunk / 2, payload, nbd::kCmdFlagFua), 0l);
        QCOMPARE(client.command(nbd::kCmdFlush, 0, 0), 0l);
        auto back = client.read(kChunk / 2, std::uint32_t(payload.size()));
        QVERIFY(back && *back == payload);
        QVERIFY((*disk)->stats().overlayChunks >= 3);
        // The overlay and the sector form (which holds the base chunks read
        // around the write: chunk 0 and 3's reads were decoded).
        auto files = allFiles(overlayDir);
        QCOMPARE(files.size(), std::size_t(2));
        QVERIFY((*disk)->stats().sectorChunks >= 1);
        QVERIFY(!isAllZero(readFile((*disk)->overlayPath()))); // something was written...
        for (const auto& f : files)
            QVERIFY(!contains(f, marker)); // ...but not the plaintext
        // The base chunks' plaintext is not in the overlay or the cache either.
        Bytes baseSample(baseBytes_.begin() + 3 * kChunk + 100,
                         baseBytes_.begin() + 3 * kChunk + 164);
        for (const auto& f : files)
            QVERIFY(!contains(f, baseSample));
        for (const auto& f : allFiles(cacheDir))
            QVERIFY(!contains(f, marker));
        std::string overlayPath = (*disk)->overlayPath();
        std::string sectorPath = (*disk)->sectorCachePath();
        server->stop();
        disk->reset();
        QVERIFY(!std::filesystem::exists(overlayPath)); // gone with the session
        QVERIFY(!std::filesystem::exists(sectorPath));
    }

    void trimAndZeroesMakeZeroChunks() {
        auto disk = openDisk(baseTable_, nullptr, false);
        QVERIFY(disk.ok());
        auto server = serve(**disk);
        auto r = qemuIo(server->uri(),
                        {"discard 393216 262144",  // chunks 3 and 4, whole
                         "write -z 786432 131072", // chunk 6, whole
                         "write -z 1048576 1000",  // chunk 8, partial
                         "read -P 0 393216 262144", "read -P 0 786432 131072",
                         "read -P 0 1048576 1000"});
        QVERIFY2(r.exitCode == 0 &&
                     r.out.find("Pattern verification failed") == std::string::npos &&
                     r.out.find("error") == std::string::npos,
                 (r.out + r.err).c_str());
        auto final = (*disk)->finalChunkTable();
        QVERIFY(final.ok());
        QVERIFY(!final->table[3] && !final->table[4] && !final->table[6]);
        QVERIFY(final->table[8].has_value() && final->table[8]->name != baseTable_[8]->name);
        QVERIFY(final->table[12].has_value()); // same content as 4 but untouched
        QCOMPARE(final->newChunks.size(), std::size_t(1));
        QCOMPARE((*disk)->stats().overlayChunks, 1u);
    }

    void trickleUploadsQuietChunksAndReencodesRewrites() {
        auto disk = openDisk(baseTable_, nullptr, false);
        QVERIFY(disk.ok());
        Bytes a(kChunk, 0x61), b(kChunk, 0x62);
        QVERIFY((*disk)->write(0, a, false).ok());
        QVERIFY((*disk)->write(kChunk, b, false).ok());
        std::vector<chunk::EncodedChunk> uploaded;
        auto upload = [&](const chunk::EncodedChunk& c) -> Status {
            uploaded.push_back(c);
            return store_->put(chunkKey(c.ref.name), c.ciphertext);
        };
        auto none = (*disk)->trickleOnce(std::chrono::hours(1), upload);
        QCOMPARE(none.uploaded, 0u);
        QCOMPARE(none.pending, 2u);
        auto both = (*disk)->trickleOnce(std::chrono::milliseconds(0), upload);
        QCOMPARE(both.uploaded, 2u);
        QCOMPARE(uploaded.size(), std::size_t(2));
        auto again = (*disk)->trickleOnce(std::chrono::milliseconds(0), upload);
        QCOMPARE(again.uploaded, 0u); // already uploaded, unchanged
        auto final = (*disk)->finalChunkTable();
        QVERIFY(final.ok());
        QCOMPARE(final->newChunks.size(), std::size_t(0));
        QVERIFY(final->table[0]->name == uploaded[0].ref.name);
        // Re-dirty chunk 1: it is re-encoded, chunk 0 is not.
        QVERIFY((*disk)->write(kChunk + 10, Bytes(5, 0x63), false).ok());
        auto final2 = (*disk)->finalChunkTable();
        QCOMPARE(final2->newChunks.size(), std::size_t(1));
        auto one = (*disk)->trickleOnce(std::chrono::milliseconds(0), upload);
        QCOMPARE(one.uploaded, 1u);
        Bytes expected = b;
        std::fill_n(expected.begin() + 10, 5, 0x63);
        auto decoded = chunk::decode(uploaded.back().ref, uploaded.back().ciphertext);
        QVERIFY(decoded.ok() && *decoded == expected);
        QCOMPARE((*disk)->finalChunkTable()->newChunks.size(), std::size_t(0));
        // A failing upload leaves the chunk pending for the final table.
        QVERIFY((*disk)->write(5 * kChunk, Bytes(kChunk, 0x64), false).ok());
        auto failed = (*disk)->trickleOnce(std::chrono::milliseconds(0), [](const auto&) {
            return Status(Error(Errc::Transient, "network down (test)"));
        });
        QCOMPARE(failed.uploaded, 0u);
        QCOMPARE(failed.pending, 1u);
        QCOMPARE((*disk)->finalChunkTable()->newChunks.size(), std::size_t(1));
    }

    void hoardFillsTheCacheWorkingSetFirst() {
        auto cache = openCache();
        {
            std::lock_guard lock(fetchLogMutex_);
            fetchLog_.clear();
        }
        auto disk = openDisk(baseTable_, cache.get(), /*hoard=*/true, {17, 5, 5, 999}, 1);
        QVERIFY(disk.ok());
        QVERIFY((*disk)->waitForHoard(std::chrono::minutes(2)));
        HoardProgress p = (*disk)->hoardProgress();
        QVERIFY(p.finished);
        QCOMPARE(p.chunksTotal, 20u); // distinct stored chunks
        QCOMPARE(p.chunksDone, p.chunksTotal);
        QCOMPARE(p.bytesDone, p.bytesTotal);
        QVERIFY(p.bytesFetched > 0);
        QVERIFY(p.bytesPerSecond > 0);
        QCOMPARE(p.failures, 0u);
        QCOMPARE(cache->stats().chunks, 20u);
        {
            std::lock_guard lock(fetchLogMutex_);
            QVERIFY(fetchLog_.size() >= 2);
            QVERIFY(fetchLog_[0] == baseTable_[17]->name);
            QVERIFY(fetchLog_[1] == baseTable_[5]->name);
        }
        // With the store gone, the whole disk still reads: all from the cache.
        storeOnline_ = false;
        auto server = serve(**disk);
        QVERIFY(copyOut(server->uri()) == baseBytes_);
        storeOnline_ = true;
        QCOMPARE((*disk)->stats().demandFetches, 0u);

        // A second disk over the same, full cache has nothing to fetch.
        auto disk2 = openDisk(baseTable_, cache.get(), true);
        QVERIFY((*disk2)->waitForHoard(std::chrono::minutes(2)));
        QCOMPARE((*disk2)->hoardProgress().bytesFetched, 0u);
        QCOMPARE((*disk2)->hoardProgress().chunksDone, 20u);
    }

    void concurrentWritesIntoOneChunkAllLand() {
        // Pipelined 4 KiB writes into the same few chunks, run by several
        // server workers at once: every read-modify-write must see the others.
        auto cache = openCache();
        auto disk = openDisk(baseTable_, cache.get(), false);
        QVERIFY(disk.ok());
        auto server = serve(**disk);
        RawNbdClient client(server->socketPath());
        QCOMPARE(client.go(), kDiskSize);
        Bytes expected = baseBytes_;
        constexpr int kWrites = 96; // 3 chunks (6, 7, 8) of 32 x 4 KiB, interleaved
        for (int i = 0; i < kWrites; ++i) {
            std::uint64_t offset = 6 * kChunk + std::uint64_t((i % 3) * 32 + i / 3) * 4096 + 100;
            Bytes data(1000, std::uint8_t(i + 1));
            std::copy(data.begin(), data.end(), expected.begin() + offset);
            QVERIFY(client.sendRequest(nbd::kCmdWrite, i, offset, 1000, 0, data));
        }
        for (int i = 0; i < kWrites; ++i) {
            auto reply = client.readReply();
            QVERIFY(reply.has_value());
            QCOMPARE(reply->error, 0u);
        }
        auto back = client.read(6 * kChunk, 3 * kChunk);
        QVERIFY(back.has_value());
        QVERIFY(std::equal(back->begin(), back->end(), expected.begin() + 6 * kChunk));
        QVERIFY(copyOut(server->uri()) == expected);
    }

    void hoardPauseResumeAndFailures() {
        {
            auto cache = openCache();
            auto disk = openDisk(baseTable_, cache.get(), /*hoard=*/false);
            QVERIFY(disk.ok());
            (*disk)->pauseHoard();
            (*disk)->startHoard();
            QVERIFY(!(*disk)->hoardProgress().running);
            QCOMPARE((*disk)->hoardProgress().chunksDone, 0u); // paused before any fetch
            (*disk)->setHoardBandwidthLimit(64ull << 20);
            (*disk)->resumeHoard();
            QVERIFY((*disk)->waitForHoard(std::chrono::minutes(2)));
            QCOMPARE((*disk)->hoardProgress().chunksDone, 20u);
        }
        auto cache = openCache();
        storeOnline_ = false;
        offlineAttempts_ = 0;
        auto disk = openDisk(baseTable_, cache.get(), true);
        QVERIFY(disk.ok());
        // The store unreachable stalls the hoard (reported, retried with
        // backoff) instead of failing its way through every chunk.
        HoardProgress p;
        for (int i = 0; i < 1200 && !p.stalled; ++i) {
            p = (*disk)->hoardProgress();
            QThread::msleep(50);
        }
        QVERIFY(p.stalled);
        QCOMPARE(p.stalled->code, Errc::Transient);
        QVERIFY(!(*disk)->waitForHoard(std::chrono::seconds(3))); // cannot finish offline
        p = (*disk)->hoardProgress();
        QCOMPARE(p.chunksDone, 0u);
        QCOMPARE(p.failures, 0u); // stalled chunks are retried, not given up
        // One chunk per worker, then one probe per backoff (1 s, 2 s, ...),
        // not one attempt per chunk: the old behaviour made 20 at once.
        qInfo("store attempts in ~3 s offline: %d", offlineAttempts_.load());
        QVERIFY(offlineAttempts_.load() < 20);
        // A demand read with the store offline is an I/O error, not zeroes.
        Bytes buffer(4096);
        auto status = (*disk)->read(0, buffer);
        QVERIFY(!status.ok());
        storeOnline_ = true;
        QVERIFY((*disk)->read(0, buffer).ok());
        QVERIFY(std::equal(buffer.begin(), buffer.end(), baseBytes_.begin()));
        // Back online: the next probe gets through and the hoard finishes.
        QVERIFY((*disk)->waitForHoard(std::chrono::minutes(2)));
        p = (*disk)->hoardProgress();
        QCOMPARE(p.chunksDone, 20u);
        QVERIFY(!p.stalled);
        QVERIFY(p.finished);
    }

    void hoardStallsWhenTheCacheCannotStore() {
        // A cache that cannot keep a chunk (here: smaller than one) is
        // NoSpace: the hoard stalls and says so, and demand reads still work.
        auto cache = openCache(1000);
        auto disk = openDisk(baseTable_, cache.get(), true);
        QVERIFY(disk.ok());
        HoardProgress p;
        for (int i = 0; i < 1200 && !p.stalled; ++i) {
            p = (*disk)->hoardProgress();
            QThread::msleep(50);
        }
        QVERIFY(p.stalled);
        QCOMPARE(p.stalled->code, Errc::NoSpace);
        QCOMPARE(p.chunksDone, 0u);
        Bytes buffer(4096);
        QVERIFY((*disk)->read(0, buffer).ok());
        QVERIFY(std::equal(buffer.begin(), buffer.end(), baseBytes_.begin()));
    }

    void unchangedWritesLeaveChunksClean() {
        // Zeroing zeros and rewriting the same bytes dirty nothing (ext4's
        // lazy inode-table init does the former after every mount).
        auto cache = openCache();
        auto disk = openDisk(baseTable_, cache.get(), false);
        QVERIFY(disk.ok());
        Bytes same(baseBytes_.begin() + 3 * kChunk + 100, baseBytes_.begin() + 3 * kChunk + 5000);
        QVERIFY((*disk)->write(3 * kChunk + 100, same, false).ok());
        QVERIFY((*disk)->writeZeroes(9 * kChunk + 512, 4096).ok());          // chunk 9 is zero
        QVERIFY((*disk)->write(2 * kChunk + 10, Bytes(300, 0), false).ok()); // so is 2
        QCOMPARE((*disk)->stats().overlayChunks, 0u);
        Bytes changed = same;
        changed[0] ^= 0xff;
        QVERIFY((*disk)->write(3 * kChunk + 100, changed, false).ok());
        QCOMPARE((*disk)->stats().overlayChunks, 1u);
        Bytes back(changed.size());
        QVERIFY((*disk)->read(3 * kChunk + 100, back).ok());
        QVERIFY(back == changed);
    }

    void sectorFormServesEveryChunkShape() {
        // The hoard decodes every chunk into the sector form; reads of every
        // shape then come from it and equal the base plaintext.
        auto cache = openCache();
        auto disk = openSectorDisk(baseTable_, cache.get(), /*hoard=*/true);
        QVERIFY(disk.ok());
        QVERIFY((*disk)->waitForHoard(std::chrono::minutes(2)));
        // 21 stored chunks (4 and 12 share a name: one decode, two slots);
        // zero chunks (2, 9, 10) have no slot.
        QCOMPARE((*disk)->stats().sectorChunks, 21u);
        ParcelDisk& d = **disk;
        const std::uint64_t lastChunk = (kChunks - 1) * kChunk;
        struct Range {
            std::uint64_t offset, length;
        } ranges[] = {
            {0, 4096},                       // one aligned sector
            {3 * kChunk + 1000, 5000},       // unaligned, across a sector boundary
            {4 * kChunk, kChunk},            // a whole chunk
            {kChunk - 700, 1400},            // across chunks 0/1
            {2 * kChunk - 4096, 3 * 4096},   // into zero chunk 2
            {9 * kChunk + 17, 100},          // inside a zero chunk
            {12 * kChunk + 65536 + 3, 4093}, // the deduped twin
            {lastChunk, 5120},               // the short last chunk, whole
            {lastChunk + 4000, 1120},        // its partial last sector
            {kDiskSize - 1, 1},              // the last byte
            {0, kDiskSize},                  // everything
        };
        const std::uint64_t before = d.stats().sectorReads;
        for (const auto& r : ranges)
            QVERIFY2(readsAs(d, r.offset, r.length, baseBytes_),
                     (std::to_string(r.offset) + "+" + std::to_string(r.length)).c_str());
        QVERIFY(d.stats().sectorReads > before);
        QCOMPARE(d.stats().corruptChunks, 0u);
        QCOMPARE(d.stats().sectorCorrupt, 0u);
        // Chunks written after they were in the sector form: the overlay
        // wins, partial (read-modify-write from the sector form) and whole.
        Bytes expected = baseBytes_;
        Bytes partial(3000, 0x5a);
        QVERIFY(d.write(3 * kChunk + 2000, partial, false).ok());
        std::copy(partial.begin(), partial.end(), expected.begin() + 3 * kChunk + 2000);
        Bytes whole(kChunk, 0x6b);
        QVERIFY(d.write(4 * kChunk, whole, false).ok()); // 12 keeps the old content
        std::copy(whole.begin(), whole.end(), expected.begin() + 4 * kChunk);
        QVERIFY(d.writeZeroes(5 * kChunk, kChunk).ok());
        std::fill_n(expected.begin() + 5 * kChunk, kChunk, 0);
        for (std::uint64_t i : {3, 4, 5, 12})
            QVERIFY(readsAs(d, i * kChunk, kChunk, expected));
        QVERIFY(readsAs(d, 3 * kChunk + 1999, 3002, expected));
        QVERIFY(readsAs(d, 0, kDiskSize, expected));
    }

    void sectorFormHoldsNoPlaintext() {
        // A base chunk full of a marker: after the hoard put it in the
        // sector form, the file holds no trace of the marker or of the
        // other chunks' plaintext; it goes with the disk.
        std::string markerText = "ISR-SECTOR-PLAINTEXT-MARKER-42";
        Bytes base = baseBytes_;
        for (std::uint64_t j = 0; j < kChunk; ++j)
            base[6 * kChunk + j] = std::uint8_t(markerText[j % markerText.size()]);
        ChunkTable table = baseTable_;
        auto encoded = chunk::encode(secret_.view(), ByteView(base).subspan(6 * kChunk, kChunk));
        QVERIFY(store_->put(chunkKey(encoded.ref.name), encoded.ciphertext).ok());
        table[6] = encoded.ref;
        std::string overlayDir = freshDir("overlay");
        auto cache = openCache();
        auto disk = openSectorDisk(table, cache.get(), true, overlayDir);
        QVERIFY(disk.ok());
        QVERIFY((*disk)->waitForHoard(std::chrono::minutes(2)));
        QVERIFY(readsAs(**disk, 6 * kChunk, kChunk, base));
        QCOMPARE((*disk)->stats().sectorChunks, 21u);
        std::string path = (*disk)->sectorCachePath();
        QVERIFY(path.rfind(overlayDir, 0) == 0);
        Bytes file = readFile(path);
        QVERIFY(file.size() >= 21 * std::uint64_t(kChunk));
        Bytes marker(markerText.begin(), markerText.end());
        QVERIFY(!contains(file, marker));
        for (std::uint64_t i : {1, 3, 8, 23}) { // compressible and random chunks
            Bytes sample(base.begin() + i * kChunk + 64, base.begin() + i * kChunk + 128);
            QVERIFY(!contains(file, sample));
        }
        disk->reset();
        QVERIFY(!std::filesystem::exists(path));
    }

    void tamperedSectorFormIsNeverServed() {
        // Tags: a flipped byte in a sector (data or tag) is caught; the read
        // is served from the chunk cache instead, and the slot is refilled.
        auto cache = openCache();
        auto disk = openSectorDisk(baseTable_, cache.get(), true);
        QVERIFY(disk.ok());
        QVERIFY((*disk)->waitForHoard(std::chrono::minutes(2)));
        ParcelDisk& d = **disk;
        QVERIFY(readsAs(d, 7 * kChunk, kChunk, baseBytes_));
        {
            std::fstream f(d.sectorCachePath(), std::ios::in | std::ios::out | std::ios::binary);
            for (std::uint64_t at : {7 * std::uint64_t(kChunk) + 4096 + 10, // chunk 7, sector 1
                                     std::uint64_t(kChunks) * kChunk + (8 * 32 + 2) * 16 + 3}) {
                f.seekg(std::streamoff(at));
                char c = 0;
                f.read(&c, 1);
                c ^= 0x20;
                f.seekp(std::streamoff(at));
                f.write(&c, 1);
            }
        }
        QVERIFY(readsAs(d, 7 * kChunk + 4096, 4096, baseBytes_));    // data flipped
        QVERIFY(readsAs(d, 8 * kChunk + 2 * 4096, 100, baseBytes_)); // tag flipped
        QCOMPARE(d.stats().sectorCorrupt, 2u);
        QCOMPARE(d.stats().corruptChunks, 0u);
        // The fallback decode refilled both slots; reads come from them again.
        QCOMPARE(d.stats().sectorChunks, 21u);
        const std::uint64_t before = d.stats().sectorReads;
        QVERIFY(readsAs(d, 7 * kChunk, 2 * kChunk, baseBytes_));
        QVERIFY(d.stats().sectorReads >= before + 2);
        QCOMPARE(d.stats().sectorCorrupt, 2u);
    }

    void fullKioskDiskStillServesReads() {
        // The kiosk's disk cannot take the sector form (RLIMIT_FSIZE makes
        // every write past 64 KiB fail with EFBIG, as a full disk fails with
        // ENOSPC): reads still return the right bytes, decoded each time;
        // the failures are counted.
        auto cache = openCache();
        {
            auto warm = openDisk(baseTable_, cache.get(), true);
            QVERIFY(warm.ok());
            QVERIFY((*warm)->waitForHoard(std::chrono::minutes(2)));
        }
        auto disk = openSectorDisk(baseTable_, cache.get(), false);
        QVERIFY(disk.ok());
        ParcelDisk& d = **disk;
        {
            struct LimitFileSize {
                rlimit old{};
                void (*oldHandler)(int) = nullptr;
                LimitFileSize() {
                    oldHandler = std::signal(SIGXFSZ, SIG_IGN);
                    ::getrlimit(RLIMIT_FSIZE, &old);
                    rlimit small = old;
                    small.rlim_cur = 64 * 1024;
                    ::setrlimit(RLIMIT_FSIZE, &small);
                }
                ~LimitFileSize() {
                    ::setrlimit(RLIMIT_FSIZE, &old);
                    std::signal(SIGXFSZ, oldHandler);
                }
            } limit;
            QVERIFY(readsAs(d, 0, kDiskSize, baseBytes_));
            QVERIFY(readsAs(d, 3 * kChunk + 1000, 5000, baseBytes_)); // again: decoded again
            QVERIFY(readsAs(d, kDiskSize - 1000, 1000, baseBytes_));
        }
        QVERIFY(d.stats().sectorFillFailures >= 21);
        QCOMPARE(d.stats().sectorChunks, 0u);
        QCOMPARE(d.stats().sectorReads, 0u);
        // Room again: the next decode of a chunk fills its slot.
        QVERIFY(readsAs(d, 3 * kChunk, 4096, baseBytes_));
        QCOMPARE(d.stats().sectorChunks, 1u);
        QVERIFY(readsAs(d, 3 * kChunk + 8192, 4096, baseBytes_));
        QCOMPARE(d.stats().sectorReads, 1u);
    }

    void sectorFormLeavesTheReserveAlone() {
        // Below the free-space reserve (the guest's room) the sector form
        // steps back: nothing filled, counted, and reads are still right.
        auto cache = openCache();
        auto disk = openSectorDisk(baseTable_, cache.get(), true, {}, 1ull << 60);
        QVERIFY(disk.ok());
        QVERIFY(readsAs(**disk, 3 * kChunk + 512, 4096, baseBytes_));
        QVERIFY(readsAs(**disk, 0, kDiskSize, baseBytes_));
        QCOMPARE((*disk)->stats().sectorChunks, 0u);
        QVERIFY((*disk)->stats().sectorFillsSkipped >= 21);
        QCOMPARE((*disk)->stats().sectorFillFailures, 0u);
    }

    void hoardKeepsToOneDownloadWhileDemandIsRecent() {
        // Downloads wait at a gate and count how many run at once.
        std::mutex m;
        std::condition_variable cv;
        bool gateOpen = true;
        int running = 0, most = 0;
        auto fetch = [&](const chunk::ChunkName& name) -> Result<Bytes> {
            {
                std::unique_lock lock(m);
                most = std::max(most, ++running);
                cv.wait(lock, [&] { return gateOpen; });
                running--;
            }
            return store_->get(chunkKey(name));
        };
        auto runningNow = [&] {
            std::lock_guard lock(m);
            return running;
        };
        auto gate = [&](bool open) {
            std::lock_guard lock(m);
            gateOpen = open;
            if (!open)
                most = 0;
            cv.notify_all();
        };
        // Seven distinct stored chunks other than the demand read's.
        std::vector<chunk::ChunkRef> rest;
        for (std::size_t i = 1; i < baseTable_.size() && rest.size() < 7; ++i) {
            const auto& ref = baseTable_[i];
            if (ref && ref->name != baseTable_[0]->name &&
                std::none_of(rest.begin(), rest.end(),
                             [&](const chunk::ChunkRef& r) { return r.name == ref->name; }))
                rest.push_back(*ref);
        }
        QCOMPARE(rest.size(), std::size_t(7));
        HoardOptions options;
        options.threads = 4;
        options.demandBurst = std::chrono::hours(1); // the burst outlasts the test

        // A demand read (chunk 0): a burst has begun.
        auto cache = openCache();
        auto source = std::make_shared<cache::ChunkSource>(cache.get(), fetch);
        QVERIFY(source->get(baseTable_[0]->name).ok());
        gate(false);
        Hoard hoard(*source, rest, options);
        hoard.start();
        QTRY_COMPARE(runningNow(), 1);
        // Four workers, yet one download: the others wait for the slot.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        QCOMPARE(runningNow(), 1);
        gate(true);
        QVERIFY(hoard.wait(std::chrono::minutes(1)));
        QCOMPARE(hoard.progress().chunksDone, 7u);
        QCOMPARE(most, 1);
        QCOMPARE(source->prefetchesInFlight(), 0);

        // No demand read yet: the four workers download side by side.
        auto cache2 = openCache();
        auto source2 = std::make_shared<cache::ChunkSource>(cache2.get(), fetch);
        gate(false);
        Hoard side(*source2, rest, options);
        side.start();
        QTRY_COMPARE(runningNow(), 4);
        gate(true);
        QVERIFY(side.wait(std::chrono::minutes(1)));
        QCOMPARE(most, 4);
        QCOMPARE(source2->prefetchesInFlight(), 0);

        // Smaller chunks (the RAM's) keep as many bytes in flight during a
        // burst: three downloads here, not four, not one.
        auto cache3 = openCache();
        auto source3 = std::make_shared<cache::ChunkSource>(cache3.get(), fetch);
        QVERIFY(source3->get(baseTable_[0]->name).ok());
        gate(false);
        options.burstDownloads = 3;
        Hoard small(*source3, rest, options);
        small.start();
        QTRY_COMPARE(runningNow(), 3);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        QCOMPARE(runningNow(), 3);
        gate(true);
        QVERIFY(small.wait(std::chrono::minutes(1)));
        QCOMPARE(most, 3);
        QCOMPARE(source3->prefetchesInFlight(), 0);
    }

    // A read over several chunks the store must supply (a RAM fault's
    // readahead over small RAM chunks) asks for them all at once, not one
    // round trip after another; each is downloaded once, the bytes right.
    void readAcrossChunksFetchesThemAtOnce() {
        std::mutex m;
        std::condition_variable cv;
        bool gateOpen = false;
        int running = 0, most = 0, calls = 0;
        ParcelDiskConfig config;
        config.diskSize = kDiskSize;
        config.chunkSize = kChunk;
        config.baseTable = baseTable_;
        config.fetch = [&](const chunk::ChunkName& name) -> Result<Bytes> {
            {
                std::unique_lock lock(m);
                ++calls;
                most = std::max(most, ++running);
                cv.wait(lock, [&] { return gateOpen; });
                running--;
            }
            return store_->get(chunkKey(name));
        };
        auto cache = openCache();
        config.cache = cache.get();
        config.convergenceSecret = secret_.clone();
        config.overlayDirectory = freshDir("overlay");
        config.startHoard = false;
        auto disk = ParcelDisk::open(std::move(config));
        QVERIFY(disk.ok());
        // Chunks 3 to 7 (five stored, distinct), from inside 3 to inside 7.
        const std::uint64_t offset = 3 * kChunk + 4096, length = 4 * kChunk;
        Bytes out(length);
        Status st;
        std::thread reader([&] { st = (*disk)->read(offset, out); });
        // Opens the gate and joins the reader, also when a check fails.
        struct Release {
            std::function<void()> run;
            ~Release() { run(); }
        } release{[&] {
            {
                std::lock_guard lock(m);
                gateOpen = true;
                cv.notify_all();
            }
            if (reader.joinable())
                reader.join();
        }};
        QTRY_COMPARE([&] {
            std::lock_guard lock(m);
            return running;
        }(), 5);
        release.run();
        QVERIFY2(st.ok(), st.ok() ? "" : st.error().describe().c_str());
        QVERIFY(std::equal(out.begin(), out.end(), baseBytes_.begin() + std::ptrdiff_t(offset)));
        QCOMPARE(most, 5);
        QCOMPARE(calls, 5);
        // Now local: read again, no download.
        QVERIFY(readsAs(**disk, offset, length, baseBytes_));
        QCOMPARE(calls, 5);
    }

    void diskSharesTheSessionsChunkSource() {
        // The session hands one ChunkSource to the disk and to the memory
        // streamer: what one reader brought in, the other finds; a chunk is
        // downloaded once whoever asks.
        auto cache = openCache();
        auto source = std::make_shared<cache::ChunkSource>(cache.get(), fetcher());
        ParcelDiskConfig config;
        config.diskSize = kDiskSize;
        config.chunkSize = kChunk;
        config.baseTable = baseTable_;
        config.source = source;
        config.convergenceSecret = secret_.clone();
        config.overlayDirectory = freshDir("overlay");
        config.startHoard = false;
        auto disk = ParcelDisk::open(std::move(config));
        QVERIFY(disk.ok());
        QCOMPARE(&(*disk)->chunkSource(), source.get());
        // Another reader (the streamer) takes chunk 3 first.
        QVERIFY(source->get(baseTable_[3]->name).ok());
        Bytes buffer(4096);
        QVERIFY((*disk)->read(3 * kChunk, buffer).ok());
        QVERIFY(std::equal(buffer.begin(), buffer.end(), baseBytes_.begin() + 3 * kChunk));
        QCOMPARE((*disk)->stats().cacheHits, 1u);
        QCOMPARE((*disk)->stats().demandFetches, 0u);
        QVERIFY((*disk)->read(0, buffer).ok());
        QCOMPARE((*disk)->stats().demandFetches, 1u);
        QCOMPARE(source->stats().storeFetches, 2u);
        // The hoard goes through the same source: it fetches the other 18
        // distinct chunks only.
        (*disk)->startHoard();
        QVERIFY((*disk)->waitForHoard(std::chrono::minutes(2)));
        QCOMPARE((*disk)->hoardProgress().chunksDone, 20u);
        QCOMPARE(source->stats().storeFetches, 20u);
        QCOMPARE(source->demandWaiting(), 0);
        // The source outlives the disk when its owner keeps it.
        disk->reset();
        QVERIFY(source->get(baseTable_[5]->name).ok());
    }
};

QTEST_GUILESS_MAIN(TestParcelDisk)
#include "test_parcel_disk.moc"
