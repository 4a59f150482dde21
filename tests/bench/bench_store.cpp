// Store throughput: 1,000 chunks of 128 KiB written with putMany and read
// back with getMany, at 1, 8 and 32 transfers in flight, S3Store on the test
// radosgw next to FileStore on a local temp directory, in the same process.
// Prints MB/s (10^6 bytes) and requests/s; asserts only correctness.
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
};

QTEST_GUILESS_MAIN(BenchStore)
#include "bench_store.moc"
