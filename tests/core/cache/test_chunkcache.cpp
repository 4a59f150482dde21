// Tests for core/cache: put/get, LRU eviction, corruption, reconcile on open,
// concurrency, and schema versioning.
#include "cache/cache.h"
#include "chunk/chunk.h"
#include "crypto/crypto.h"
#include "testsupport.h"

#include <QTest>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sqlite3.h>
#include <sys/stat.h>
#include <thread>

using namespace isr;
using namespace isr::cache;
using chunk::ChunkName;

namespace {
struct Obj {
    ChunkName name;
    Bytes data;
};
Obj makeObj(std::size_t size) {
    Obj o;
    o.data = crypto::randomBytes(size);
    o.name = chunk::nameOf(o.data);
    return o;
}
std::string fileOf(const std::string& dir, const ChunkName& name) {
    const std::string hex = chunk::nameHex(name);
    return dir + "/chunks/" + hex.substr(0, 2) + "/" + hex;
}
bool fileExists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}
std::unique_ptr<ChunkCache> openOrFail(const std::string& dir, std::uint64_t cap) {
    auto c = ChunkCache::open(dir, cap);
    if (!c.ok())
        qFatal("ChunkCache::open: %s", c.error().describe().c_str());
    return std::move(c).value();
}
void writeFile(const std::string& path, ByteView data) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
}
} // namespace

class TestChunkCache : public QObject {
    Q_OBJECT
private slots:
    void putGetRemove() {
        test::TempDir dir;
        auto cache = openOrFail(dir.path() + "/c", 1 << 20);
        Obj a = makeObj(1000);
        QCOMPARE(cache->get(a.name).error().code, Errc::NotFound);
        QVERIFY(!cache->contains(a.name));
        QVERIFY(cache->put(a.name, a.data).ok());
        QVERIFY(cache->put(a.name, a.data).ok()); // idempotent
        QVERIFY(cache->contains(a.name));
        auto got = cache->get(a.name);
        QVERIFY(got.ok());
        QVERIFY(*got == a.data);
        QVERIFY(fileExists(fileOf(dir.path() + "/c", a.name)));
        CacheStats s = cache->stats();
        QCOMPARE(s.chunks, std::uint64_t(1));
        QCOMPARE(s.bytes, std::uint64_t(1000));
        QCOMPARE(s.capBytes, std::uint64_t(1 << 20));
        QCOMPARE(s.hits, std::uint64_t(1));
        QCOMPARE(s.misses, std::uint64_t(1));
        QVERIFY(cache->remove(a.name).ok());
        QVERIFY(cache->remove(a.name).ok());
        QVERIFY(!cache->contains(a.name));
        QVERIFY(!fileExists(fileOf(dir.path() + "/c", a.name)));
        QCOMPARE(cache->stats().bytes, std::uint64_t(0));
        // Nothing left behind in tmp/.
        QVERIFY(std::filesystem::is_empty(dir.path() + "/c/tmp"));
    }

    void putRefusesWrongName() {
        test::TempDir dir;
        auto cache = openOrFail(dir.path(), 1 << 20);
        Obj a = makeObj(100);
        ChunkName wrong = a.name;
        wrong[0] ^= 1;
        auto st = cache->put(wrong, a.data);
        QCOMPARE(st.error().code, Errc::Corrupt);
        QVERIFY(!cache->contains(wrong));
        QCOMPARE(cache->stats().chunks, std::uint64_t(0));
    }

    void chunkLargerThanCapIsNoSpace() {
        test::TempDir dir;
        auto cache = openOrFail(dir.path(), 1000);
        Obj big = makeObj(1001);
        QCOMPARE(cache->put(big.name, big.data).error().code, Errc::NoSpace);
        Obj fits = makeObj(1000);
        QVERIFY(cache->put(fits.name, fits.data).ok());
    }

    void lruEvictionOrder() {
        test::TempDir dir;
        auto cache = openOrFail(dir.path(), 3500);
        Obj a = makeObj(1000), b = makeObj(1000), c = makeObj(1000), d = makeObj(1000),
            e = makeObj(1000);
        QVERIFY(cache->put(a.name, a.data).ok());
        QVERIFY(cache->put(b.name, b.data).ok());
        QVERIFY(cache->put(c.name, c.data).ok());
        QVERIFY(cache->get(a.name).ok()); // a is now the most recent: b is oldest
        QVERIFY(cache->put(d.name, d.data).ok());
        QVERIFY(fileExists(fileOf(dir.path(), a.name)));
        QVERIFY(!fileExists(fileOf(dir.path(), b.name)));
        QVERIFY(fileExists(fileOf(dir.path(), c.name)));
        QVERIFY(fileExists(fileOf(dir.path(), d.name)));
        QVERIFY(cache->contains(c.name)); // contains() refreshes too: a is oldest now
        QVERIFY(cache->put(e.name, e.data).ok());
        QVERIFY(!fileExists(fileOf(dir.path(), a.name)));
        QVERIFY(fileExists(fileOf(dir.path(), c.name)));
        QVERIFY(cache->contains(e.name));
        CacheStats s = cache->stats();
        QCOMPARE(s.evictions, std::uint64_t(2));
        QCOMPARE(s.chunks, std::uint64_t(3));
        QCOMPARE(s.bytes, std::uint64_t(3000));

        // Shrinking the cap evicts the oldest at once (c, then d).
        QVERIFY(cache->setCapacity(1500).ok());
        QVERIFY(!fileExists(fileOf(dir.path(), c.name)));
        QVERIFY(!fileExists(fileOf(dir.path(), d.name)));
        QVERIFY(cache->contains(e.name));
        QCOMPARE(cache->stats().bytes, std::uint64_t(1000));
        QCOMPARE(cache->stats().evictions, std::uint64_t(4));

        // LRU order survives a reopen.
        QVERIFY(cache->setCapacity(3000).ok());
        QVERIFY(cache->put(a.name, a.data).ok());
        QVERIFY(cache->put(b.name, b.data).ok()); // order now: e, a, b
        cache.reset();
        cache = openOrFail(dir.path(), 2000); // evicts e
        QVERIFY(!cache->contains(e.name));
        QVERIFY(cache->contains(a.name));
        QVERIFY(cache->contains(b.name));
    }

    void hitsWriteNothingAndTheirOrderSurvivesClose() {
        // A cache hit moves the chunk up the LRU order in memory only (no
        // SQLite write per read: issue #17); the order reaches the index in
        // batches, at every put and at close.
        test::TempDir dir;
        auto cache = openOrFail(dir.path(), 3500);
        Obj a = makeObj(1000), b = makeObj(1000), c = makeObj(1000);
        QVERIFY(cache->put(a.name, a.data).ok());
        QVERIFY(cache->put(b.name, b.data).ok());
        QVERIFY(cache->put(c.name, c.data).ok());
        const std::string wal = dir.path() + "/index.sqlite-wal";
        auto walSize = [&] {
            std::error_code ec;
            auto n = std::filesystem::file_size(wal, ec);
            return ec ? std::uintmax_t(0) : n;
        };
        const auto before = walSize();
        for (int i = 0; i < 200; ++i)
            QVERIFY(cache->get(i % 2 ? a.name : c.name).ok());
        QCOMPARE(walSize(), before);
        QVERIFY(cache->get(a.name).ok()); // order now: b, c, a
        cache.reset();
        cache = openOrFail(dir.path(), 2000); // evicts b, the least recently used
        QVERIFY(!cache->contains(b.name));
        QVERIFY(cache->contains(c.name));
        QVERIFY(cache->contains(a.name));
    }

    void corruptFileIsDetectedOnGet() {
        test::TempDir dir;
        auto cache = openOrFail(dir.path(), 1 << 20);
        Obj a = makeObj(4096);
        QVERIFY(cache->put(a.name, a.data).ok());
        Bytes damaged = a.data;
        damaged[100] ^= 0x40;
        writeFile(fileOf(dir.path(), a.name), damaged);
        auto got = cache->get(a.name);
        QCOMPARE(got.error().code, Errc::NotFound);
        QVERIFY(!fileExists(fileOf(dir.path(), a.name)));
        QVERIFY(!cache->contains(a.name));
        QCOMPARE(cache->stats().chunks, std::uint64_t(0));
        QCOMPARE(cache->stats().bytes, std::uint64_t(0));
        QCOMPARE(cache->stats().misses, std::uint64_t(1));
        // A refetch can put it back.
        QVERIFY(cache->put(a.name, a.data).ok());
        QVERIFY(*cache->get(a.name) == a.data);
    }

    void reconcileAfterDeletedFilesAndStrays() {
        test::TempDir dir;
        Obj a = makeObj(1000), b = makeObj(2000), stray = makeObj(3000), bad = makeObj(500);
        {
            auto cache = openOrFail(dir.path(), 1 << 20);
            QVERIFY(cache->put(a.name, a.data).ok());
            QVERIFY(cache->put(b.name, b.data).ok());
        }
        // Lose a file, add a valid stray, a stray whose content does not match
        // its name, junk names, and a leftover temp file.
        QVERIFY(::unlink(fileOf(dir.path(), a.name).c_str()) == 0);
        writeFile(fileOf(dir.path(), stray.name), stray.data);
        Bytes wrong = bad.data;
        wrong[0] ^= 1;
        writeFile(fileOf(dir.path(), bad.name), wrong);
        writeFile(dir.path() + "/chunks/zz/not-a-chunk", asBytes("x"));
        writeFile(dir.path() + "/chunks/" + chunk::nameHex(a.name).substr(0, 2) + "/junk",
                  asBytes("x"));
        writeFile(dir.path() + "/tmp/half-written", asBytes("partial"));

        auto cache = openOrFail(dir.path(), 1 << 20);
        QVERIFY(!cache->contains(a.name));
        QVERIFY(cache->contains(b.name));
        QVERIFY(cache->contains(stray.name));
        QVERIFY(*cache->get(stray.name) == stray.data);
        QVERIFY(!cache->contains(bad.name));
        QVERIFY(!fileExists(fileOf(dir.path(), bad.name)));
        QVERIFY(!fileExists(dir.path() + "/chunks/zz/not-a-chunk"));
        QVERIFY(std::filesystem::is_empty(dir.path() + "/tmp"));
        CacheStats s = cache->stats();
        QCOMPARE(s.chunks, std::uint64_t(2));
        QCOMPARE(s.bytes, std::uint64_t(5000));
    }

    void reconcileAfterDeletedIndex() {
        test::TempDir dir;
        std::vector<Obj> objs;
        {
            auto cache = openOrFail(dir.path(), 1 << 20);
            for (int i = 0; i < 10; ++i) {
                objs.push_back(makeObj(100 + std::size_t(i)));
                QVERIFY(cache->put(objs.back().name, objs.back().data).ok());
            }
        }
        for (const char* f : {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"})
            std::filesystem::remove(dir.path() + "/" + f);
        auto cache = openOrFail(dir.path(), 1 << 20);
        QCOMPARE(cache->stats().chunks, std::uint64_t(10));
        for (const auto& o : objs)
            QVERIFY(*cache->get(o.name) == o.data);
    }

    void garbageIndexIsRebuilt() {
        test::TempDir dir;
        Obj a = makeObj(100);
        {
            auto cache = openOrFail(dir.path(), 1 << 20);
            QVERIFY(cache->put(a.name, a.data).ok());
        }
        for (const char* f : {"index.sqlite-wal", "index.sqlite-shm"})
            std::filesystem::remove(dir.path() + "/" + f);
        writeFile(dir.path() + "/index.sqlite", Bytes(8192, 0xAB));
        auto cache = openOrFail(dir.path(), 1 << 20);
        QVERIFY(*cache->get(a.name) == a.data);
    }

    void newerSchemaIsRefused() {
        test::TempDir dir;
        { auto cache = openOrFail(dir.path(), 1 << 20); }
        sqlite3* db = nullptr;
        QCOMPARE(sqlite3_open((dir.path() + "/index.sqlite").c_str(), &db), SQLITE_OK);
        QCOMPARE(sqlite3_exec(db, "PRAGMA user_version = 999", nullptr, nullptr, nullptr),
                 SQLITE_OK);
        sqlite3_close(db);
        auto again = ChunkCache::open(dir.path(), 1 << 20);
        QVERIFY(!again.ok());
        QCOMPARE(again.error().code, Errc::Unsupported);
        QVERIFY(again.error().message.find("999") != std::string::npos);
    }

    void secondOpenIsLocked() {
        test::TempDir dir;
        auto cache = openOrFail(dir.path(), 1 << 20);
        auto second = ChunkCache::open(dir.path(), 1 << 20);
        QCOMPARE(second.error().code, Errc::Locked);
        cache.reset();
        QVERIFY(ChunkCache::open(dir.path(), 1 << 20).ok());
    }

    void concurrentPutGet() {
        test::TempDir dir;
        constexpr int kThreads = 8;
        constexpr int kObjects = 64;
        std::vector<Obj> objs;
        for (int i = 0; i < kObjects; ++i)
            objs.push_back(makeObj(4096 + std::size_t(i)));
        // Room for about half of them, so eviction runs under contention.
        auto cache = openOrFail(dir.path(), 32 * 4200);
        std::atomic<int> wrongData{0}, errors{0}, hits{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                for (int round = 0; round < 200; ++round) {
                    const Obj& o = objs[std::size_t((round * 7 + t * 13) % kObjects)];
                    auto got = cache->get(o.name);
                    if (got.ok()) {
                        hits.fetch_add(1);
                        if (*got != o.data)
                            wrongData.fetch_add(1);
                    } else if (got.error().code != Errc::NotFound) {
                        errors.fetch_add(1);
                    } else if (!cache->put(o.name, o.data).ok()) {
                        errors.fetch_add(1);
                    }
                }
            });
        for (auto& th : threads)
            th.join();
        QCOMPARE(wrongData.load(), 0);
        QCOMPARE(errors.load(), 0);
        CacheStats s = cache->stats();
        QVERIFY(s.bytes <= s.capBytes);
        QVERIFY(s.evictions > 0);
        QCOMPARE(s.hits + s.misses, std::uint64_t(kThreads * 200));
        QCOMPARE(s.hits, std::uint64_t(hits.load()));
        // Counters agree with the disk.
        std::uint64_t onDisk = 0, files = 0;
        for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path() + "/chunks"))
            if (e.is_regular_file()) {
                onDisk += e.file_size();
                ++files;
            }
        QCOMPARE(onDisk, s.bytes);
        QCOMPARE(files, s.chunks);
        QVERIFY(std::filesystem::is_empty(dir.path() + "/tmp"));
        // And with the index after a reopen.
        cache.reset();
        cache = openOrFail(dir.path(), 32 * 4200);
        QCOMPARE(cache->stats().bytes, s.bytes);
        QCOMPARE(cache->stats().chunks, s.chunks);
    }
};

QTEST_GUILESS_MAIN(TestChunkCache)
#include "test_chunkcache.moc"
