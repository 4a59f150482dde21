// Store throughput: 1,000 chunks of 128 KiB written with putMany and read
// back with getMany, at 1, 8 and 32 transfers in flight, S3Store on the test
// radosgw next to FileStore on a local temp directory, in the same process.
// Prints MB/s (10^6 bytes) and requests/s; asserts only correctness.
//
// Store latency: 200 small objects put, checked (exists = HEAD), read (get)
// and read in part (getRange) one call at a time, as fsck and the lock code
// do. Prints the mean time per call for both backends and their ratio.
#include "ceph_rgw.h"
#include "store/store.h"
#include "testsupport.h"

#include <QTest>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>
#include <unistd.h>

using namespace isr;
using namespace isr::store;

namespace {
constexpr std::size_t kChunks = 1000;
constexpr std::size_t kChunkSize = 128 << 10;

template <typename R> std::string describe(const R& r) {
    return r.ok() ? "ok" : r.error().describe();
}

std::vector<PutItem> makeItems() {
    std::vector<PutItem> items(kChunks);
    std::mt19937_64 rng(7);
    for (std::size_t i = 0; i < kChunks; ++i) {
        char name[128];
        std::snprintf(name, sizeof name, "users/bench/chunks/%02zx/%060zx", i % 256, i);
        items[i].key = name;
        items[i].data.resize(kChunkSize);
        for (std::size_t j = 0; j < kChunkSize; j += 8) {
            const std::uint64_t v = rng();
            std::memcpy(items[i].data.data() + j, &v, 8);
        }
    }
    return items;
}

template <typename F> double seconds(F&& run) {
    const auto start = std::chrono::steady_clock::now();
    run();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
} // namespace

class BenchStore : public QObject {
    Q_OBJECT
private slots:
    void throughput() {
        const auto& rgw = test::cephRgw();
        const std::vector<PutItem> items = makeItems();
        std::vector<std::string> keys;
        for (const auto& it : items)
            keys.push_back(it.key);
        test::TempDir dir;
        const std::string run =
            "bench-" + std::to_string(::getpid()) + "-" + std::to_string(std::time(nullptr));
        const double mb = double(kChunks * kChunkSize) / 1e6;

        std::printf("\n%zu chunks x %zu KiB (%.0f MB); radosgw %s (memstore)\n", kChunks,
                    kChunkSize >> 10, mb, rgw.endpoint.c_str());
        std::printf("%-10s %9s  %12s %12s  %12s %12s\n", "backend", "in flight", "put MB/s",
                    "put req/s", "get MB/s", "get req/s");
        int n = 0;
        for (int inFlight : {1, 8, 32}) {
            for (const char* backend : {"file", "s3"}) {
                StoreOptions o = rgw.options();
                o.maxInFlight = inFlight;
                std::string url;
                if (std::string(backend) == "file") {
                    const std::string root = dir.file("s" + std::to_string(n++));
                    std::filesystem::create_directories(root);
                    url = "file://" + root;
                } else {
                    url = rgw.url(run + "/s" + std::to_string(n++));
                }
                auto opened = openStore(url, o);
                QVERIFY2(opened.ok(), describe(opened).c_str());
                Store& store = **opened;

                std::vector<Status> puts;
                const double putSeconds = seconds([&] { puts = store.putMany(items); });
                for (const auto& st : puts)
                    QVERIFY2(st.ok(), describe(st).c_str());
                std::vector<Result<Bytes>> gets;
                const double getSeconds = seconds([&] { gets = store.getMany(keys); });
                for (std::size_t i = 0; i < kChunks; ++i) {
                    QVERIFY2(gets[i].ok(), describe(gets[i]).c_str());
                    QVERIFY(*gets[i] == items[i].data);
                }
                std::printf("%-10s %9d  %12.1f %12.0f  %12.1f %12.0f\n",
                            std::string(backend) == "file" ? "FileStore" : "S3Store", inFlight,
                            mb / putSeconds, double(kChunks) / putSeconds, mb / getSeconds,
                            double(kChunks) / getSeconds);
                std::fflush(stdout);
                gets.clear();
                // Free the memstore for the next round.
                for (const auto& k : keys)
                    QVERIFY(store.remove(k).ok());
            }
        }
        std::printf("(FileStore runs batches sequentially: in flight does not apply to it)\n");
    }

    void latency() {
        constexpr std::size_t kOps = 200;
        constexpr std::size_t kSmall = 4096;
        const auto& rgw = test::cephRgw();
        test::TempDir dir;
        const std::string run =
            "bench-lat-" + std::to_string(::getpid()) + "-" + std::to_string(std::time(nullptr));
        Bytes data(kSmall);
        std::mt19937_64 rng(11);
        for (auto& b : data)
            b = std::uint8_t(rng());
        std::vector<std::string> keys;
        for (std::size_t i = 0; i < kOps; ++i)
            keys.push_back("users/bench/lat/" + std::to_string(i));

        struct Figures {
            double put = 0, head = 0, get = 0, range = 0;
        };
        auto measure = [&](Store& store, Figures& f) {
            // One warm-up call so connection set-up is not in the figures.
            QVERIFY(store.put("users/bench/lat/warm", data).ok());
            f.put = seconds([&] {
                for (const auto& k : keys)
                    QVERIFY(store.put(k, data).ok());
            });
            f.head = seconds([&] {
                for (const auto& k : keys) {
                    auto e = store.exists(k);
                    QVERIFY(e.ok() && *e);
                }
            });
            f.get = seconds([&] {
                for (const auto& k : keys) {
                    auto g = store.get(k);
                    QVERIFY2(g.ok(), describe(g).c_str());
                    QVERIFY(*g == data);
                }
            });
            f.range = seconds([&] {
                for (const auto& k : keys) {
                    auto g = store.getRange(k, 100, 1000);
                    QVERIFY2(g.ok(), describe(g).c_str());
                    QCOMPARE(g->size(), std::size_t(1000));
                }
            });
            for (const auto& k : keys)
                QVERIFY(store.remove(k).ok());
            QVERIFY(store.remove("users/bench/lat/warm").ok());
        };

        Figures file, s3;
        {
            const std::string root = dir.file("lat");
            std::filesystem::create_directories(root);
            auto opened = openStore("file://" + root, rgw.options());
            QVERIFY2(opened.ok(), describe(opened).c_str());
            measure(**opened, file);
        }
        {
            auto opened = openStore(rgw.url(run), rgw.options());
            QVERIFY2(opened.ok(), describe(opened).c_str());
            measure(**opened, s3);
        }
        std::printf("\n%zu sequential calls of each kind on %zu-byte objects; radosgw %s\n", kOps,
                    kSmall, rgw.endpoint.c_str());
        std::printf("%-14s %14s %14s %10s %12s\n", "call", "FileStore ms", "S3Store ms", "ratio",
                    "S3 calls/s");
        auto row = [&](const char* name, double f, double s) {
            std::printf("%-14s %14.3f %14.3f %10.1f %12.0f\n", name, f * 1e3 / kOps, s * 1e3 / kOps,
                        s / f, double(kOps) / s);
        };
        row("put", file.put, s3.put);
        row("exists (HEAD)", file.head, s3.head);
        row("get", file.get, s3.get);
        row("getRange", file.range, s3.range);
        std::fflush(stdout);
    }
};

QTEST_GUILESS_MAIN(BenchStore)
#include "bench_store.moc"
