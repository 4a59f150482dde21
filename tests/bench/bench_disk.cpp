// The virtual disk next to qemu-nbd, same clients, same run: sequential 1 MiB
// reads/writes (qemu-img bench, queue depth 8) and random 4 KiB reads/writes
// (qemu-io, one at a time) against
//   - qemu-nbd serving a raw file (the reference),
//   - ParcelDisk with every chunk in the cache (hoard finished; the hoard
//     also decoded every chunk into the disk's sector form),
//   - ParcelDisk with no cache: every chunk comes from a FileStore on local
//     disk (so this measures fetch + verify + decode, not a network).
// Prints MB/s and the ratio to qemu-nbd. No timed assertions.
#include "cache/cache.h"
#include "chunk/chunk.h"
#include "disk/nbd_server.h"
#include "disk/parcel_disk.h"
#include "store/store.h"
#include "testsupport.h"

#include <QProcess>
#include <QTest>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace isr::disk;

namespace {

constexpr std::uint32_t kChunk = 128 * 1024;
constexpr std::uint64_t kDiskSize = 128ull << 20;
constexpr int kSeqOps = 128;   // x 1 MiB
constexpr int kRandOps = 2000; // x 4 KiB

std::string chunkKey(const chunk::ChunkName& name) {
    std::string hex = chunk::nameHex(name);
    return "chunks/" + hex.substr(0, 2) + "/" + hex;
}

Bytes makeDisk() {
    Bytes data(kDiskSize);
    std::mt19937_64 rng(7);
    for (std::uint64_t c = 0; c < kDiskSize / kChunk; ++c) {
        std::uint8_t* p = data.data() + c * kChunk;
        if (c % 8 == 7)
            continue; // some all-zero chunks, as on a real disk
        if (c % 2 == 0) {
            for (std::uint32_t i = 0; i < kChunk; ++i)
                p[i] = std::uint8_t("isr kiosk parcel disk\n"[i % 22] ^ (rng() % 16 == 0));
        } else {
            crypto::randomFill({p, kChunk});
        }
    }
    return data;
}

bool waitForSocket(const std::string& path) {
    for (int i = 0; i < 200; ++i) {
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        path.copy(a.sun_path, sizeof a.sun_path - 1);
        bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(fd);
        if (ok)
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
}

// Seconds taken by the program, or -1 on failure.
double timed(const QString& program, const QStringList& args) {
    auto start = std::chrono::steady_clock::now();
    auto r = isr::test::runProcess(program, args, {}, 600000);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r.exitCode != 0 || r.out.find("error") != std::string::npos) {
        std::fprintf(stderr, "%s failed: %s %s\n", program.toUtf8().constData(), r.out.c_str(),
                     r.err.c_str());
        return -1;
    }
    return s;
}

struct Workload {
    const char* name;
    double bytes;
    std::function<double(const std::string& uri)> run;
};

QStringList randomOps(const char* op, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    QStringList args;
    for (int i = 0; i < kRandOps; ++i) {
        std::uint64_t offset = (rng() % (kDiskSize / 4096)) * 4096;
        args << "-c" << QStringLiteral("%1 %2 4096").arg(op).arg(offset);
    }
    return args;
}

std::vector<Workload> workloads() {
    auto bench = [](bool write) {
        return [write](const std::string& uri) {
            QStringList args = {"bench", "-f", "raw", "-c", QString::number(kSeqOps), "-d", "8",
                                "-s",    "1M", "-S",  "1M"};
            if (write)
                args << "-w";
            args << QString::fromStdString(uri);
            return timed("qemu-img", args);
        };
    };
    auto io = [](const char* op, std::uint64_t seed) {
        return [op, seed](const std::string& uri) {
            QStringList args = {"-f", "raw", QString::fromStdString(uri)};
            args << randomOps(op, seed);
            return timed("qemu-io", args);
        };
    };
    return {
        {"seq read 1 MiB", double(kSeqOps) * (1 << 20), bench(false)},
        {"rand read 4 KiB", double(kRandOps) * 4096, io("read", 1)},
        {"seq write 1 MiB", double(kSeqOps) * (1 << 20), bench(true)},
        {"rand write 4 KiB", double(kRandOps) * 4096, io("write", 2)},
    };
}

} // namespace

class BenchDisk : public QObject {
    Q_OBJECT
private slots:
    void againstQemuNbd() {
        isr::test::requirePrograms({"qemu-img", "qemu-io", "qemu-nbd"});
        QVERIFY(crypto::initialize().ok());
        isr::test::TempDir dir;
        const Bytes disk = makeDisk();
        const auto work = workloads();
        std::vector<std::vector<double>> seconds; // [target][workload]
        std::vector<std::string> names;

        // Reference: qemu-nbd on a raw file with the same bytes.
        {
            std::string raw = dir.file("ref.raw");
            std::ofstream(raw, std::ios::binary)
                .write(reinterpret_cast<const char*>(disk.data()), std::streamsize(disk.size()));
            std::string sock = dir.file("ref.sock");
            QProcess nbd;
            nbd.start("qemu-nbd", {"-t", "-f", "raw", "-k", QString::fromStdString(sock),
                                   QString::fromStdString(raw)});
            QVERIFY(nbd.waitForStarted());
            QVERIFY(waitForSocket(sock));
            std::vector<double> row;
            for (const auto& w : work)
                row.push_back(w.run("nbd+unix:///?socket=" + sock));
            nbd.terminate();
            nbd.waitForFinished();
            names.push_back("qemu-nbd raw file");
            seconds.push_back(row);
        }

        // The parcel: chunks in a FileStore.
        std::filesystem::create_directories(dir.file("store"));
        auto store = store::openStore("file://" + dir.file("store"));
        QVERIFY(store.ok());
        crypto::Secret secret = crypto::Secret::random(32);
        ChunkTable table(kDiskSize / kChunk);
        for (std::uint64_t c = 0; c < table.size(); ++c) {
            ByteView plain = ByteView(disk).subspan(c * kChunk, kChunk);
            if (isAllZero(plain))
                continue;
            auto encoded = chunk::encode(secret.view(), plain);
            QVERIFY((*store)->put(chunkKey(encoded.ref.name), encoded.ciphertext).ok());
            table[c] = encoded.ref;
        }
        store::Store* storePtr = store->get();
        auto runParcel = [&](const std::string& name, bool cached) {
            std::unique_ptr<cache::ChunkCache> cache;
            if (cached) {
                auto opened = cache::ChunkCache::open(dir.file("cache"), 1ull << 30);
                QVERIFY(opened.ok());
                cache = std::move(*opened);
            }
            std::string overlay = dir.file("overlay-" + std::to_string(cached));
            std::filesystem::create_directories(overlay);
            ParcelDiskConfig config;
            config.diskSize = kDiskSize;
            config.chunkSize = kChunk;
            config.baseTable = table;
            config.fetch = [storePtr](const chunk::ChunkName& n) {
                return storePtr->get(chunkKey(n));
            };
            config.cache = cache.get();
            config.convergenceSecret = secret.clone();
            config.overlayDirectory = overlay;
            auto parcel = ParcelDisk::open(std::move(config));
            QVERIFY(parcel.ok());
            double hoardSeconds = 0;
            if (cached) {
                auto hoardStart = std::chrono::steady_clock::now();
                QVERIFY((*parcel)->waitForHoard(std::chrono::minutes(5)));
                hoardSeconds =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - hoardStart)
                        .count();
            }
            NbdServerOptions options;
            options.socketPath = dir.file("parcel.sock");
            auto server = NbdServer::start(**parcel, options);
            QVERIFY(server.ok());
            std::vector<double> row;
            for (const auto& w : work)
                row.push_back(w.run((*server)->uri()));
            (*server)->stop();
            const ParcelDiskStats st = (*parcel)->stats();
            std::printf("  %s: demand fetches %llu, cache hits %llu, overlay chunks %llu, "
                        "sector-form reads %llu, chunks in the sector form %llu; hoard (fetch + "
                        "decode into the sector form) %.1f s\n",
                        name.c_str(), (unsigned long long)st.demandFetches,
                        (unsigned long long)st.cacheHits, (unsigned long long)st.overlayChunks,
                        (unsigned long long)st.sectorReads, (unsigned long long)st.sectorChunks,
                        hoardSeconds);
            names.push_back(name);
            seconds.push_back(row);
        };
        runParcel("ParcelDisk cached", true);
        runParcel("ParcelDisk store-only", false);

        std::printf("\nbench_disk: %llu MiB disk, %u KiB chunks; MB/s (ratio to qemu-nbd)\n",
                    (unsigned long long)(kDiskSize >> 20), kChunk / 1024);
        std::printf("%-18s", "workload");
        for (const auto& n : names)
            std::printf(" | %-24s", n.c_str());
        std::printf("\n");
        for (std::size_t w = 0; w < work.size(); ++w) {
            std::printf("%-18s", work[w].name);
            for (std::size_t t = 0; t < names.size(); ++t) {
                double s = seconds[t][w];
                if (s <= 0) {
                    std::printf(" | %-24s", "failed");
                    continue;
                }
                double mbs = work[w].bytes / 1e6 / s;
                double ref = seconds[0][w] > 0 ? seconds[0][w] / s : 0;
                char cell[64];
                std::snprintf(cell, sizeof cell, "%8.1f (%.2fx)", mbs, ref);
                std::printf(" | %-24s", cell);
            }
            std::printf("\n");
        }
        std::fflush(stdout);
        for (const auto& row : seconds)
            for (double s : row)
                QVERIFY(s > 0); // every workload ran (a figure, not a speed assertion)
    }
};

QTEST_GUILESS_MAIN(BenchDisk)
#include "bench_disk.moc"
