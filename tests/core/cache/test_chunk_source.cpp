// Tests for cache::ChunkSource over a real FileStore and a real ChunkCache:
// one download per chunk name however many readers ask, a download that
// does not match its name is never cached, a full cache does not fail a
// read, and demand reads are visible to background work.
#include "cache/cache.h"
#include "cache/chunk_source.h"
#include "chunk/chunk.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "testsupport.h"

#include <QTest>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

using namespace isr;
using namespace isr::cache;
using chunk::ChunkName;

namespace {

std::string keyOf(const ChunkName& name) {
    std::string hex = chunk::nameHex(name);
    return "users/alice/chunks/" + hex.substr(0, 2) + "/" + hex;
}

// Holds every store fetch until released, so a test can line readers up
// behind one download.
class Gate {
public:
    void wait() {
        std::unique_lock lock(mutex_);
        waiting_++;
        cv_.notify_all();
        cv_.wait(lock, [&] { return open_; });
    }
    void open() {
        std::lock_guard lock(mutex_);
        open_ = true;
        cv_.notify_all();
    }
    bool waitForWaiters(int n) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return waiting_ >= n; });
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    int waiting_ = 0;
    bool open_ = false;
};

template <typename Pred> bool eventually(Pred pred) {
    for (int i = 0; i < 3000; ++i) {
        if (pred())
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
}

} // namespace

class TestChunkSource : public QObject {
    Q_OBJECT

    std::unique_ptr<test::TempDir> dir_;
    std::unique_ptr<store::Store> store_;
    std::atomic<int> storeCalls_{0};
    Gate* gate_ = nullptr; // when set, store fetches wait on it
    int serial_ = 0;

    FetchCiphertext fetcher() {
        return [this](const ChunkName& name) -> Result<Bytes> {
            storeCalls_++;
            if (gate_)
                gate_->wait();
            return store_->get(keyOf(name));
        };
    }

    std::unique_ptr<ChunkCache> openCache(std::uint64_t cap = 1ull << 30) {
        auto cache = ChunkCache::open(dir_->file("cache" + std::to_string(++serial_)), cap);
        if (!cache.ok())
            qFatal("%s", cache.error().describe().c_str());
        return std::move(*cache);
    }

    // A chunk in the store under its own name.
    ChunkName stored(std::size_t size = 64 * 1024) {
        Bytes ciphertext = crypto::randomBytes(size);
        ChunkName name = chunk::nameOf(ciphertext);
        if (!store_->put(keyOf(name), ciphertext).ok())
            qFatal("store put");
        return name;
    }

private slots:
    void initTestCase() {
        QVERIFY(crypto::initialize().ok());
        dir_ = std::make_unique<test::TempDir>();
        std::filesystem::create_directories(dir_->file("store"));
        auto store = store::openStore("file://" + dir_->file("store"));
        QVERIFY2(store.ok(), store.ok() ? "" : store.error().describe().c_str());
        store_ = std::move(*store);
    }

    void init() {
        storeCalls_ = 0;
        gate_ = nullptr;
    }

    void cacheFirstThenStore() {
        auto cache = openCache();
        ChunkSource source(cache.get(), fetcher());
        ChunkName name = stored();
        auto first = source.read(name);
        QVERIFY(first.ok());
        QCOMPARE(first->origin, Origin::Store);
        QVERIFY(first->cached.ok());
        QVERIFY(chunk::nameOf(first->ciphertext) == name);
        QVERIFY(cache->contains(name)); // the download filled the cache
        auto second = source.read(name);
        QVERIFY(second.ok());
        QCOMPARE(second->origin, Origin::Cache);
        QVERIFY(second->ciphertext == first->ciphertext);
        QCOMPARE(storeCalls_.load(), 1);
        ChunkSourceStats stats = source.stats();
        QCOMPARE(stats.cacheHits, 1u);
        QCOMPARE(stats.storeFetches, 1u);
        QCOMPARE(stats.bytesFetched, std::uint64_t(first->ciphertext.size()));
        // A missing chunk is the store's NotFound, and nothing is cached.
        ChunkName missing = chunk::nameOf(crypto::randomBytes(100));
        QCOMPARE(source.get(missing).error().code, Errc::NotFound);
        QVERIFY(!cache->contains(missing));
    }

    void withoutACacheEveryReadGoesToTheStore() {
        ChunkSource source(nullptr, fetcher());
        ChunkName name = stored();
        QVERIFY(source.get(name).ok());
        QVERIFY(source.get(name).ok());
        QCOMPARE(storeCalls_.load(), 2);
        QVERIFY(!source.isCached(name));
        QCOMPARE(source.prefetch(name).error().code, Errc::InvalidArgument);
    }

    void concurrentReadsShareOneDownload() {
        auto cache = openCache();
        ChunkSource source(cache.get(), fetcher());
        ChunkName name = stored();
        Gate gate;
        gate_ = &gate;
        constexpr int kReaders = 8;
        std::vector<Result<Fetched>> results(kReaders, Error(Errc::Internal, "not run"));
        std::vector<std::thread> readers;
        for (int i = 0; i < kReaders; ++i)
            readers.emplace_back([&, i] { results[std::size_t(i)] = source.read(name); });
        // Every reader is either the one downloading or has joined it.
        QVERIFY(gate.waitForWaiters(1));
        QVERIFY(eventually([&] { return source.stats().sharedDownloads == kReaders - 1; }));
        QCOMPARE(source.demandWaiting(), kReaders);
        gate.open();
        for (auto& t : readers)
            t.join();
        gate_ = nullptr;
        QCOMPARE(storeCalls_.load(), 1);
        int owners = 0;
        for (const auto& r : results) {
            QVERIFY(r.ok());
            QVERIFY(chunk::nameOf(r->ciphertext) == name);
            QVERIFY(r->cached.ok());
            owners += r->origin == Origin::Store;
        }
        QCOMPARE(owners, 1);
        ChunkSourceStats stats = source.stats();
        QCOMPARE(stats.storeFetches, 1u);
        QCOMPARE(stats.sharedDownloads, std::uint64_t(kReaders - 1));
        QCOMPARE(source.demandWaiting(), 0);
    }

    void demandJoinsAPrefetchInFlight() {
        // The hoard's download and a demand read of the same chunk: one
        // download; the demand read counts as waiting while it is joined.
        auto cache = openCache();
        ChunkSource source(cache.get(), fetcher());
        ChunkName name = stored();
        Gate gate;
        gate_ = &gate;
        Result<Fetched> background = Error(Errc::Internal, "not run");
        std::thread hoard([&] { background = source.prefetch(name); });
        QVERIFY(gate.waitForWaiters(1));
        QCOMPARE(source.demandWaiting(), 0); // background work is not demand
        Result<Fetched> demand = Error(Errc::Internal, "not run");
        std::thread reader([&] { demand = source.read(name); });
        QVERIFY(eventually([&] { return source.stats().sharedDownloads == 1; }));
        QCOMPARE(source.demandWaiting(), 1);
        gate.open();
        hoard.join();
        reader.join();
        gate_ = nullptr;
        QVERIFY(background.ok() && demand.ok());
        QCOMPARE(background->origin, Origin::Store);
        QCOMPARE(demand->origin, Origin::Shared);
        QCOMPARE(storeCalls_.load(), 1);
        QVERIFY(cache->contains(name));
        // Prefetching what the cache has does nothing.
        auto again = source.prefetch(name);
        QVERIFY(again.ok());
        QCOMPARE(again->origin, Origin::Cache);
        QCOMPARE(storeCalls_.load(), 1);
    }

    void corruptDownloadIsNeverCached() {
        // The store answers for `name` with bytes that hash to something else.
        auto cache = openCache();
        ChunkSource source(cache.get(), fetcher());
        ChunkName name = chunk::nameOf(crypto::randomBytes(100));
        QVERIFY(store_->put(keyOf(name), crypto::randomBytes(4096)).ok());
        auto read = source.read(name);
        QVERIFY(!read.ok());
        QCOMPARE(read.error().code, Errc::Corrupt);
        QVERIFY(!cache->contains(name));
        QCOMPARE(cache->stats().chunks, 0u);
        QCOMPARE(source.stats().corrupt, 1u);
        auto prefetched = source.prefetch(name);
        QCOMPARE(prefetched.error().code, Errc::Corrupt);
        QVERIFY(!cache->contains(name));
        QCOMPARE(source.stats().corrupt, 2u);
    }

    void fullCacheDoesNotFailTheRead() {
        // A cache smaller than one chunk cannot keep anything: NoSpace.
        auto cache = openCache(1000);
        ChunkSource source(cache.get(), fetcher());
        ChunkName name = stored(8192);
        auto read = source.read(name);
        QVERIFY(read.ok());
        QCOMPARE(read->origin, Origin::Store);
        QVERIFY(chunk::nameOf(read->ciphertext) == name);
        QVERIFY(!read->cached.ok());
        QCOMPARE(read->cached.error().code, Errc::NoSpace);
        QVERIFY(!cache->contains(name));
        // The hoard learns the same from prefetch.
        auto prefetched = source.prefetch(name);
        QVERIFY(prefetched.ok());
        QCOMPARE(prefetched->cached.error().code, Errc::NoSpace);
        QCOMPARE(source.stats().cacheFailures, 2u);
    }

    void demandWaitingIsSignalled() {
        auto cache = openCache();
        ChunkSource source(cache.get(), fetcher());
        ChunkName name = stored();
        QCOMPARE(source.demandWaiting(), 0);
        QVERIFY(source.waitForNoDemand(std::chrono::milliseconds(0)));
        Gate gate;
        gate_ = &gate;
        std::atomic<bool> readOk{false};
        std::thread reader([&] { readOk = source.get(name).ok(); });
        QVERIFY(gate.waitForWaiters(1));
        QCOMPARE(source.demandWaiting(), 1);
        QVERIFY(!source.waitForNoDemand(std::chrono::milliseconds(50)));
        // A waiter is woken when the demand read ends, not at its timeout.
        std::atomic<bool> woken{false};
        std::thread waiter([&] { woken = source.waitForNoDemand(std::chrono::minutes(5)); });
        gate.open();
        reader.join();
        waiter.join();
        gate_ = nullptr;
        QVERIFY(readOk);
        QVERIFY(woken);
        QCOMPARE(source.demandWaiting(), 0);
        // A cache hit never waits for the store, so it never counts.
        QVERIFY(source.get(name).ok());
        QCOMPARE(source.demandWaiting(), 0);
        QCOMPARE(storeCalls_.load(), 1);
    }
};

QTEST_GUILESS_MAIN(TestChunkSource)
#include "test_chunk_source.moc"
