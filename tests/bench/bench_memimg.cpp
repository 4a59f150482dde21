// Memory image throughput next to references measured in the same run on the
// same 256 MiB image-like buffer (zero, text-like and random runs):
//   CDC cut points vs BLAKE2b-256 of the buffer vs memcpy;
//   chunkImage (read + CDC + encode on 2 threads, upload into memory) and
//   streamImage (fetch from memory + decode + verify, 4 threads, into a FIFO
//   read by another thread) vs a plain read/write file copy.
// The save file and the copies live in a scratch directory under /dev/shm.
#include "memimg/memimg.h"
#include "testsupport.h"

#include <QTest>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <random>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace isr::memimg;

namespace {
constexpr std::size_t kTotal = 256u << 20;

Bytes imageLike(std::size_t n) {
    Bytes b(n, 0);
    std::mt19937_64 rng(42);
    std::size_t pos = 0;
    while (pos < n) {
        const std::size_t run = std::min<std::size_t>(n - pos, 4096 * (1 + rng() % 64));
        const auto kind = rng() % 3;
        if (kind == 1) {
            for (std::size_t i = 0; i < run; ++i)
                b[pos + i] = std::uint8_t("guest kernel text page "[(i + pos) % 23]);
        } else if (kind == 2) {
            crypto::randomFill({b.data() + pos, run});
        }
        pos += run;
    }
    return b;
}

template <typename F> double mbPerSecond(std::size_t bytes, F&& run) {
    const auto start = std::chrono::steady_clock::now();
    run();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return double(bytes) / 1e6 / s;
}

void copyFile(const std::string& from, const std::string& to) {
    const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
    const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    Bytes buf(4u << 20);
    for (;;) {
        const ssize_t n = ::read(in, buf.data(), buf.size());
        if (n <= 0)
            break;
        if (::write(out, buf.data(), std::size_t(n)) != n)
            qFatal("copy failed");
    }
    ::close(in);
    ::close(out);
}
} // namespace

class BenchMemimg : public QObject {
    Q_OBJECT
private slots:
    void throughput() {
        const Bytes data = imageLike(kTotal);
        const Bytes secret = crypto::randomBytes(32);
        auto chunker = Chunker::create(secret);
        QVERIFY(chunker.ok());

        Bytes sink(kTotal);
        const double memcpyRate =
            mbPerSecond(kTotal, [&] { std::memcpy(sink.data(), data.data(), kTotal); });
        crypto::Hash digest{};
        const double hashRate = mbPerSecond(kTotal, [&] { digest = crypto::hash(data); });
        std::vector<std::size_t> cuts;
        const double cdcRate = mbPerSecond(kTotal, [&] { cuts = chunker->cutPoints(data); });
        std::size_t streamedChunks = 0;
        const double streamingRate = mbPerSecond(kTotal, [&] {
            StreamingChunker s(*chunker);
            auto on = [&](ByteView) -> Status {
                ++streamedChunks;
                return {};
            };
            for (std::size_t pos = 0; pos < kTotal; pos += 4u << 20)
                (void)s.feed(ByteView(data).subspan(pos, 4u << 20), on);
            (void)s.finish(on);
        });
        QCOMPARE(streamedChunks, cuts.size());

        auto scratch = createScratchDir();
        if (!scratch.ok())
            test::skipAll("no memory-backed scratch: " + scratch.error().describe());
        const std::string save = *scratch + "/save.img";
        {
            const int fd = ::open(save.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            QVERIFY(::write(fd, data.data(), kTotal) == ssize_t(kTotal));
            ::close(fd);
        }
        const double copyRate = mbPerSecond(kTotal, [&] { copyFile(save, *scratch + "/copy"); });
        ::unlink((*scratch + "/copy").c_str());

        std::mutex mutex;
        std::map<chunk::ChunkName, Bytes> store;
        UploadFn upload = [&](const std::vector<chunk::EncodedChunk>& batch) -> Result<Uploaded> {
            std::lock_guard lock(mutex);
            Uploaded u;
            for (const auto& c : batch)
                if (store.emplace(c.ref.name, c.ciphertext).second) {
                    ++u.chunks;
                    u.bytes += c.ciphertext.size();
                }
            return u;
        };
        Result<ChunkImageResult> chunked = Error(Errc::Internal, "not run");
        const double chunkImageRate =
            mbPerSecond(kTotal, [&] { chunked = chunkImage(save, secret, *chunker, upload); });
        QVERIFY(chunked.ok());

        FetchFn fetch = [&](const chunk::ChunkName& name) -> Result<Bytes> {
            std::lock_guard lock(mutex);
            auto it = store.find(name);
            if (it == store.end())
                return Error(Errc::NotFound, "missing");
            return it->second;
        };
        const std::string fifo = *scratch + "/restore.fifo";
        QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
        std::uint64_t readBack = 0;
        Result<StreamStats> streamed = Error(Errc::Internal, "not run");
        const double streamRate = mbPerSecond(kTotal, [&] {
            std::thread reader([&] {
                const int fd = ::open(fifo.c_str(), O_RDONLY);
                Bytes buf(1 << 20);
                for (ssize_t n; (n = ::read(fd, buf.data(), buf.size())) > 0;)
                    readBack += std::uint64_t(n);
                ::close(fd);
            });
            streamed = streamImage(chunked->recipe, fetch, fifo);
            reader.join();
        });
        QVERIFY(streamed.ok());
        QCOMPARE(readBack, std::uint64_t(kTotal));
        QVERIFY(wipeScratchDir(*scratch).ok());

        std::printf("\nmemimg on %zu MiB image-like data (MB/s = 10^6 bytes/s), %zu chunks, "
                    "average %zu bytes\n",
                    kTotal >> 20, cuts.size(), kTotal / cuts.size());
        std::printf("  memcpy                 %8.0f MB/s\n", memcpyRate);
        std::printf("  BLAKE2b-256            %8.0f MB/s\n", hashRate);
        std::printf("  CDC cut points         %8.0f MB/s\n", cdcRate);
        std::printf("  CDC streaming (4 MiB)  %8.0f MB/s\n", streamingRate);
        std::printf("  file copy (/dev/shm)   %8.0f MB/s\n", copyRate);
        std::printf("  chunkImage             %8.0f MB/s  (%llu chunks, %llu MB ciphertext)\n",
                    chunkImageRate, (unsigned long long)chunked->chunks,
                    (unsigned long long)(chunked->bytesUploaded / 1000000));
        std::printf("  streamImage -> FIFO    %8.0f MB/s\n", streamRate);
        (void)digest;
    }
};

QTEST_GUILESS_MAIN(BenchMemimg)
#include "bench_memimg.moc"
