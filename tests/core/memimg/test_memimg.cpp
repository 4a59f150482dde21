// core/memimg: the content-defined chunker (bounds, determinism, streaming
// equals one-shot, dedup under insertion, per-user gear tables), the
// chunkImage -> store -> streamImage round trip through a real FileStore and
// ChunkCache into a regular file and a real FIFO, and the failure paths
// (corrupt chunk, vanished reader, no reader, cancel), plus scratch space.
#include "cache/cache.h"
#include "memimg/memimg.h"
#include "parcel/parcel.h"
#include "teststore.h"
#include "testsupport.h"

#include <QTest>
#include <algorithm>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <linux/magic.h>
#include <random>
#include <set>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <thread>
#include <unistd.h>

using namespace isr;
using namespace isr::memimg;

namespace {
constexpr const char* kPassword = "correct horse";

Bytes randomData(std::size_t n, std::uint64_t seed) {
    Bytes b(n);
    std::mt19937_64 rng(seed);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const std::uint64_t v = rng();
        std::memcpy(b.data() + i, &v, 8);
    }
    for (; i < n; ++i)
        b[i] = std::uint8_t(rng());
    return b;
}

// Something shaped like a guest's RAM: zero pages, text-like pages, random
// pages, in runs.
Bytes imageLike(std::size_t n, std::uint64_t seed) {
    Bytes b(n, 0);
    std::mt19937_64 rng(seed);
    std::size_t pos = 0;
    while (pos < n) {
        const std::size_t run = std::min<std::size_t>(n - pos, 4096 * (1 + rng() % 64));
        switch (rng() % 3) {
        case 0:
            break; // zeros
        case 1:
            for (std::size_t i = 0; i < run; ++i)
                b[pos + i] = std::uint8_t("guest kernel text page "[(i + pos) % 23]);
            break;
        default:
            for (std::size_t i = 0; i < run; ++i)
                b[pos + i] = std::uint8_t(rng());
        }
        pos += run;
    }
    return b;
}

Chunker makeChunker(ByteView key, const ChunkerParams& params = {}) {
    auto c = Chunker::create(key, params);
    if (!c.ok())
        qFatal("Chunker::create: %s", c.error().describe().c_str());
    return std::move(*c);
}

std::vector<std::size_t> streamedCuts(const Chunker& chunker, ByteView data,
                                      const std::vector<std::size_t>& pieces) {
    StreamingChunker s(chunker);
    std::vector<std::size_t> cuts;
    std::size_t total = 0;
    auto on = [&](ByteView c) -> Status {
        total += c.size();
        cuts.push_back(total);
        return {};
    };
    std::size_t pos = 0;
    for (std::size_t len : pieces) {
        len = std::min(len, data.size() - pos);
        if (!s.feed(data.subspan(pos, len), on).ok())
            qFatal("feed failed");
        pos += len;
    }
    if (!s.feed(data.subspan(pos), on).ok() || !s.finish(on).ok())
        qFatal("feed failed");
    return cuts;
}

std::vector<crypto::Hash> chunkHashes(ByteView data, const std::vector<std::size_t>& cuts,
                                      std::vector<std::size_t>* sizes = nullptr) {
    std::vector<crypto::Hash> out;
    std::size_t prev = 0;
    for (std::size_t c : cuts) {
        out.push_back(crypto::hash(data.subspan(prev, c - prev)));
        if (sizes)
            sizes->push_back(c - prev);
        prev = c;
    }
    return out;
}

void writeFile(const std::string& path, ByteView data) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
    if (!f)
        qFatal("cannot write %s", path.c_str());
}

Bytes readFile(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Reads a FIFO to EOF on its own thread.
class FifoReader {
public:
    // stopAfter: close after this many bytes (0: read to EOF).
    explicit FifoReader(std::string path, std::size_t stopAfter = 0)
        : thread_([this, path = std::move(path), stopAfter] {
              const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
              if (fd < 0)
                  return;
              Bytes buf(1 << 16);
              for (;;) {
                  const ssize_t n = ::read(fd, buf.data(), buf.size());
                  if (n <= 0)
                      break;
                  data_.insert(data_.end(), buf.begin(), buf.begin() + n);
                  if (stopAfter && data_.size() >= stopAfter)
                      break;
              }
              sawEof_ = true;
              ::close(fd);
          }) {}
    ~FifoReader() {
        if (thread_.joinable())
            thread_.join();
    }
    const Bytes& join() {
        thread_.join();
        return data_;
    }
    bool sawEof() const { return sawEof_; }

private:
    Bytes data_;
    bool sawEof_ = false;
    std::thread thread_;
};

std::string describe(const Status& s) {
    return s.ok() ? "" : s.error().describe();
}
template <typename T> std::string describe(const Result<T>& r) {
    return r.ok() ? "" : r.error().describe();
}
} // namespace

class TestMemimg : public QObject {
    Q_OBJECT
    Bytes key_ = crypto::randomBytes(32);
    std::unique_ptr<test::TestStore> ts_;
    std::unique_ptr<parcel::Parcels> parcels_;
    test::TempDir dir_;

    UploadFn uploader() {
        return [this](const std::vector<chunk::EncodedChunk>& batch) -> Result<Uploaded> {
            ISR_TRY_ASSIGN(auto s, parcels_->uploadChunks(batch));
            return Uploaded{s.chunks, s.bytes};
        };
    }
    // Cache first, then the store, filling the cache (what the session does).
    FetchFn fetcher(cache::ChunkCache& cache) {
        return [this, &cache](const chunk::ChunkName& name) -> Result<Bytes> {
            auto hit = cache.get(name);
            if (hit.ok())
                return hit;
            ISR_TRY_ASSIGN(Bytes ct, parcels_->fetchChunk(name));
            ISR_TRY_STATUS(cache.put(name, ct));
            return ct;
        };
    }
    ByteView convergence() const { return parcels_->secrets().convergence.view(); }
    Chunker userChunker() const { return makeChunker(convergence()); }

    // The save file in a fresh memory-backed scratch directory.
    std::string scratchImage(ByteView data, std::string* scratch) {
        auto dir = createScratchDir();
        if (!dir.ok())
            qFatal("createScratchDir: %s", dir.error().describe().c_str());
        *scratch = *dir;
        writeFile(*dir + "/save.img", data);
        return *dir + "/save.img";
    }

private slots:
    void initTestCase() {
        ts_ = test::TestStore::fromEnvironment();
        auto st = parcel::createAccount(ts_->store(), "mem", kPassword);
        QVERIFY2(st.ok(), describe(st).c_str());
        auto secrets = parcel::signIn(ts_->store(), "mem", kPassword);
        QVERIFY2(secrets.ok(), describe(secrets).c_str());
        parcels_ = std::make_unique<parcel::Parcels>(ts_->store(), std::move(*secrets));
    }

    // ---- chunker ---------------------------------------------------------------

    void gearTableIsDeterministicAndKeyed() {
        QVERIFY(deriveGearTable(key_) == deriveGearTable(Bytes(key_)));
        Bytes other = key_;
        other[0] ^= 1;
        const GearTable a = deriveGearTable(key_), b = deriveGearTable(other);
        QVERIFY(a != b);
        // Not a degenerate table: all 256 words distinct.
        std::set<std::uint64_t> distinct(a.begin(), a.end());
        QCOMPARE(distinct.size(), std::size_t(256));
    }

    void paramsAreValidated() {
        const std::vector<ChunkerParams> bad = {
            {16, 64 << 10, 256 << 10},                      // min too small
            {64 << 10, 64 << 10, 256 << 10},                // min == avg
            {16 << 10, 60000, 256 << 10},                   // avg not a power of two
            {16 << 10, 64 << 10, 64 << 10},                 // avg == max
            {16 << 10, 64 << 10, chunk::kMaxChunkSize + 1}, // max above codec limit
        };
        for (const auto& p : bad) {
            auto c = Chunker::create(key_, p);
            QVERIFY(!c.ok());
            QCOMPARE(c.error().code, Errc::InvalidArgument);
        }
        QVERIFY(Chunker::create(key_, ChunkerParams{}).ok());
    }

    void deterministicAcrossInstances() {
        const Bytes data = randomData(8u << 20, 1);
        const auto a = makeChunker(key_).cutPoints(data);
        const auto b = makeChunker(Bytes(key_)).cutPoints(data);
        QVERIFY(a == b);
        QVERIFY(a.size() > 50);
        QCOMPARE(a.back(), data.size());
        QVERIFY(makeChunker(key_).cutPoints({}).empty());
    }

    void sizeBounds_data() {
        QTest::addColumn<QByteArray>("kind");
        QTest::newRow("random") << QByteArray("random");
        QTest::newRow("zeros") << QByteArray("zeros");
        QTest::newRow("image-like") << QByteArray("image");
        QTest::newRow("short") << QByteArray("short");
    }
    void sizeBounds() {
        QFETCH(QByteArray, kind);
        const Bytes data = kind == "random"  ? randomData(32u << 20, 2)
                           : kind == "zeros" ? Bytes(16u << 20, 0)
                           : kind == "short" ? randomData(10000, 3)
                                             : imageLike(32u << 20, 4);
        const Chunker chunker = makeChunker(key_);
        const auto cuts = chunker.cutPoints(data);
        std::size_t prev = 0;
        for (std::size_t i = 0; i < cuts.size(); ++i) {
            const std::size_t len = cuts[i] - prev;
            QVERIFY(len > 0);
            QVERIFY2(len <= chunker.params().maxSize, qPrintable(QString::number(len)));
            if (i + 1 < cuts.size())
                QVERIFY2(len >= chunker.params().minSize, qPrintable(QString::number(len)));
            prev = cuts[i];
        }
        QCOMPARE(prev, data.size());
    }

    void averageNearTarget() {
        const Bytes data = randomData(64u << 20, 5);
        const auto cuts = makeChunker(key_).cutPoints(data);
        const double avg = double(data.size()) / double(cuts.size());
        qInfo("average chunk %.0f bytes over %zu chunks", avg, cuts.size());
        QVERIFY2(avg > 0.85 * 65536 && avg < 1.15 * 65536, qPrintable(QString::number(avg)));
    }

    void streamingEqualsOneShot() {
        const Bytes data = imageLike(3u << 20, 6);
        const Chunker chunker = makeChunker(key_);
        const auto expected = chunker.cutPoints(data);
        std::mt19937_64 rng(7);
        for (int round = 0; round < 30; ++round) {
            std::vector<std::size_t> pieces;
            // Mix of scales: single bytes, odd small sizes, around min/max, big.
            const std::size_t scale = std::size_t(1) << (rng() % 22);
            for (std::size_t sum = 0; sum < data.size();) {
                const std::size_t len = 1 + rng() % scale;
                pieces.push_back(len);
                sum += len;
            }
            QVERIFY2(streamedCuts(chunker, data, pieces) == expected,
                     qPrintable(QString("round %1 scale %2").arg(round).arg(scale)));
        }
        // One byte at a time over a shorter buffer.
        const Bytes small(data.begin(), data.begin() + (1 << 20));
        QVERIFY(streamedCuts(chunker, small, std::vector<std::size_t>(small.size(), 1)) ==
                chunker.cutPoints(small));
    }

    void streamingStopsOnCallbackError() {
        const Bytes data = randomData(2u << 20, 8);
        const Chunker chunker = makeChunker(key_);
        StreamingChunker s(chunker);
        int calls = 0;
        Status st = s.feed(data, [&](ByteView) -> Status {
            ++calls;
            return Error(Errc::Cancelled, "stop");
        });
        QVERIFY(!st.ok());
        QCOMPARE(st.error().code, Errc::Cancelled);
        QCOMPARE(calls, 1);
    }

    void insertionDedups() {
        const Bytes original = randomData(32u << 20, 9);
        Bytes modified = original;
        const Bytes insert = randomData(1000, 10);
        modified.insert(modified.begin() + std::ptrdiff_t(original.size() / 2), insert.begin(),
                        insert.end());
        const Chunker chunker = makeChunker(key_);
        const auto before = chunkHashes(original, chunker.cutPoints(original));
        std::vector<std::size_t> sizes;
        const auto after = chunkHashes(modified, chunker.cutPoints(modified), &sizes);
        const std::set<crypto::Hash> known(before.begin(), before.end());
        std::size_t shared = 0;
        for (std::size_t i = 0; i < after.size(); ++i)
            if (known.count(after[i]))
                shared += sizes[i];
        const double ratio = double(shared) / double(modified.size());
        qInfo("shared %.4f of the modified image's bytes", ratio);
        QVERIFY2(ratio >= 0.95, qPrintable(QString::number(ratio)));
    }

    void differentKeyDifferentCuts() {
        const Bytes data = randomData(8u << 20, 11);
        Bytes other = key_;
        other[5] ^= 0x80;
        const auto a = makeChunker(key_).cutPoints(data);
        const auto b = makeChunker(other).cutPoints(data);
        const std::set<std::size_t> sa(a.begin(), a.end());
        std::size_t common = 0;
        for (std::size_t c : b)
            common += sa.count(c);
        // Only the end of the data is certain to coincide.
        QVERIFY2(common < b.size() / 10, qPrintable(QString::number(common)));
    }

    // ---- chunkImage / streamImage ---------------------------------------------------

    void roundTripFileAndFifo() {
        const Bytes image = imageLike(24u << 20, 12);
        std::string scratch;
        const std::string savePath = scratchImage(image, &scratch);
        const Chunker chunker = userChunker();

        std::vector<Progress> seen;
        auto chunked = chunkImage(savePath, convergence(), chunker, uploader(), {},
                                  [&](const Progress& p) { seen.push_back(p); });
        QVERIFY2(chunked.ok(), describe(chunked).c_str());
        QCOMPARE(chunked->bytesIn, std::uint64_t(image.size()));
        QCOMPARE(chunked->chunks, std::uint64_t(chunked->recipe.size()));
        QVERIFY(chunked->newChunks > 0 && chunked->newChunks <= chunked->chunks);
        QVERIFY(!seen.empty());
        QCOMPARE(seen.back().done, std::uint64_t(image.size()));
        QCOMPARE(seen.back().total, std::uint64_t(image.size()));
        // The recipe is the chunker's cut of the image, in order.
        const auto cuts = chunker.cutPoints(image);
        QCOMPARE(chunked->recipe.size(), cuts.size());
        std::size_t prev = 0;
        for (std::size_t i = 0; i < cuts.size(); ++i) {
            QCOMPARE(std::size_t(chunked->recipe[i].length), cuts[i] - prev);
            prev = cuts[i];
        }

        auto cache = cache::ChunkCache::open(dir_.file("cache-rt"), 1ull << 30);
        QVERIFY2(cache.ok(), describe(cache).c_str());
        // Into a regular file (cold cache: everything comes from the store).
        const std::string outFile = scratch + "/restored.img";
        auto streamed = streamImage(chunked->recipe, fetcher(**cache), outFile);
        QVERIFY2(streamed.ok(), describe(streamed).c_str());
        QCOMPARE(streamed->bytes, std::uint64_t(image.size()));
        QVERIFY(readFile(outFile) == image);
        QVERIFY((*cache)->stats().chunks > 0);

        // Into a FIFO read by another thread (warm cache).
        const std::string fifo = scratch + "/restore.fifo";
        QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
        FifoReader reader(fifo);
        StreamOptions opts;
        opts.threads = 3;
        opts.chunksAhead = 5;
        std::vector<Progress> streamProgress;
        streamed = streamImage(chunked->recipe, fetcher(**cache), fifo, opts,
                               [&](const Progress& p) { streamProgress.push_back(p); });
        QVERIFY2(streamed.ok(), describe(streamed).c_str());
        QVERIFY(reader.join() == image);
        QVERIFY(reader.sawEof());
        QCOMPARE(streamProgress.back().done, std::uint64_t(image.size()));
        QVERIFY((*cache)->stats().hits >= chunked->recipe.size());

        QVERIFY(wipeScratchDir(scratch).ok());
        QVERIFY(!std::filesystem::exists(scratch));
    }

    void modifiedImageUploadsFewChunks() {
        Bytes image = imageLike(24u << 20, 13);
        // A fixed chunker key, so the cut points (and the count below) are the
        // same on every run. With the user's random key the count varies: 200
        // runs gave 4 new chunks 148 times, 5-10 51 times and 13 once (18 once
        // in CI). The tail is the 3000-byte insertion landing in a long run of
        // zero or periodic pages: such runs have no content-defined cut, the
        // chunker cuts them at maxSize, and those forced cuts shift until the
        // next random page. Real QEMU images hardly have such runs (zero pages
        // are a flag in the migration stream), so the bound stays tight here.
        const Chunker chunker = makeChunker(Bytes(32, 0x5c));
        std::string scratch;
        std::string path = scratchImage(image, &scratch);
        auto first = chunkImage(path, convergence(), chunker, uploader());
        QVERIFY2(first.ok(), describe(first).c_str());
        QVERIFY(first->newChunks > 0);

        // The guest changed a few pages and something moved by 3000 bytes.
        for (std::size_t off : {1u << 20, 9u << 20, 17u << 20})
            for (std::size_t i = 0; i < 4096; ++i)
                image[off + i] ^= 0x5a;
        const Bytes moved = randomData(3000, 14);
        image.insert(image.begin() + (12 << 20), moved.begin(), moved.end());
        writeFile(path, image);

        ChunkImageOptions opts;
        opts.batchBytes = 1u << 20; // many batches, to exercise the double buffering
        auto second = chunkImage(path, convergence(), chunker, uploader(), opts);
        QVERIFY2(second.ok(), describe(second).c_str());
        qInfo("second save: %llu of %llu chunks new", (unsigned long long)second->newChunks,
              (unsigned long long)second->chunks);
        QVERIFY(second->newChunks >= 1);
        QVERIFY2(second->newChunks <= 10, qPrintable(QString::number(second->newChunks)));

        // And it restores to the modified image.
        auto cache = cache::ChunkCache::open(dir_.file("cache-mod"), 1ull << 30);
        QVERIFY(cache.ok());
        auto streamed = streamImage(second->recipe, fetcher(**cache), scratch + "/out");
        QVERIFY2(streamed.ok(), describe(streamed).c_str());
        QVERIFY(readFile(scratch + "/out") == image);
        QVERIFY(wipeScratchDir(scratch).ok());
    }

    void chunkImageFromPipeAndBadPath() {
        // A pipe works too (no size known up front).
        const Bytes image = imageLike(3u << 20, 15);
        int fds[2];
        QCOMPARE(::pipe(fds), 0);
        std::thread writer([&] {
            std::size_t pos = 0;
            while (pos < image.size()) {
                const ssize_t n = ::write(fds[1], image.data() + pos,
                                          std::min<std::size_t>(image.size() - pos, 12345));
                if (n <= 0)
                    break;
                pos += std::size_t(n);
            }
            ::close(fds[1]);
        });
        const Chunker chunker = userChunker();
        auto r = chunkImage(fds[0], convergence(), chunker, uploader());
        writer.join();
        ::close(fds[0]);
        QVERIFY2(r.ok(), describe(r).c_str());
        QCOMPARE(r->bytesIn, std::uint64_t(image.size()));
        QCOMPARE(r->recipe.size(), chunker.cutPoints(image).size());

        auto missing = chunkImage(dir_.file("no-such-image"), convergence(), chunker, uploader());
        QVERIFY(!missing.ok());
        QCOMPARE(missing.error().code, Errc::NotFound);
    }

    void uploadFailureIsReported() {
        const Bytes image = imageLike(2u << 20, 16);
        std::string scratch;
        const std::string path = scratchImage(image, &scratch);
        auto failing = [](const std::vector<chunk::EncodedChunk>&) -> Result<Uploaded> {
            return Error(Errc::Transient, "store unreachable");
        };
        auto r = chunkImage(path, convergence(), userChunker(), failing);
        QVERIFY(!r.ok());
        QCOMPARE(r.error().code, Errc::Transient);
        QVERIFY(wipeScratchDir(scratch).ok());
    }

    void corruptChunkFailsAndReaderSeesEof() {
        const Bytes image = imageLike(8u << 20, 17);
        std::string scratch;
        const std::string path = scratchImage(image, &scratch);
        auto chunked = chunkImage(path, convergence(), userChunker(), uploader());
        QVERIFY2(chunked.ok(), describe(chunked).c_str());
        QVERIFY(chunked->recipe.size() > 10);

        // Flip a byte of a chunk in the middle, in the store itself.
        const chunk::ChunkRef bad = chunked->recipe[chunked->recipe.size() / 2];
        const std::string key = parcel::chunkKey(parcels_->user(), bad.name);
        auto ct = ts_->store().get(key);
        QVERIFY(ct.ok());
        Bytes tampered = *ct;
        tampered[tampered.size() / 2] ^= 1;
        QVERIFY(ts_->store().put(key, tampered).ok());

        auto cache = cache::ChunkCache::open(dir_.file("cache-corrupt"), 1ull << 30);
        QVERIFY(cache.ok());
        // Straight from the store: the cache refuses a chunk whose hash is wrong.
        FetchFn fromStore = [this](const chunk::ChunkName& name) {
            return parcels_->fetchChunk(name);
        };
        const std::string fifo = scratch + "/corrupt.fifo";
        QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
        FifoReader reader(fifo);
        auto streamed = streamImage(chunked->recipe, fromStore, fifo);
        QVERIFY(!streamed.ok());
        QCOMPARE(streamed.error().code, Errc::Corrupt);
        QVERIFY2(streamed.error().message.find(chunk::nameHex(bad.name)) != std::string::npos,
                 streamed.error().message.c_str());
        const Bytes got = reader.join(); // returns: the reader saw EOF, no hang
        QVERIFY(reader.sawEof());
        QVERIFY(got.size() < image.size());
        QVERIFY(std::equal(got.begin(), got.end(), image.begin()));

        // Into a regular file: the same error and no half image left behind.
        auto toFile = streamImage(chunked->recipe, fetcher(**cache), scratch + "/partial.img");
        QVERIFY(!toFile.ok());
        QCOMPARE(toFile.error().code, Errc::Corrupt);
        QVERIFY(!std::filesystem::exists(scratch + "/partial.img"));

        QVERIFY(ts_->store().put(key, *ct).ok()); // repair for later tests
        QVERIFY(wipeScratchDir(scratch).ok());
    }

    void vanishedReaderIsAnError() {
        const Bytes image = randomData(6u << 20, 18);
        std::string scratch;
        const std::string path = scratchImage(image, &scratch);
        auto chunked = chunkImage(path, convergence(), userChunker(), uploader());
        QVERIFY(chunked.ok());
        auto cache = cache::ChunkCache::open(dir_.file("cache-pipe"), 1ull << 30);
        QVERIFY(cache.ok());

        const std::string fifo = scratch + "/gone.fifo";
        QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
        FifoReader reader(fifo, 100000); // reads a little, then closes
        auto streamed = streamImage(chunked->recipe, fetcher(**cache), fifo);
        reader.join();
        // Still alive (no SIGPIPE death), with a clear error.
        QVERIFY(!streamed.ok());
        QCOMPARE(streamed.error().code, Errc::Io);
        QVERIFY2(streamed.error().message.find("reader closed") != std::string::npos,
                 streamed.error().message.c_str());
        sigset_t pending;
        sigpending(&pending);
        QVERIFY(!sigismember(&pending, SIGPIPE));
        QVERIFY(wipeScratchDir(scratch).ok());
    }

    void noReaderTimesOutAndCancel() {
        const Bytes image = randomData(1u << 20, 19);
        std::string scratch;
        const std::string path = scratchImage(image, &scratch);
        auto chunked = chunkImage(path, convergence(), userChunker(), uploader());
        QVERIFY(chunked.ok());
        auto cache = cache::ChunkCache::open(dir_.file("cache-timeout"), 1ull << 30);
        QVERIFY(cache.ok());
        const std::string fifo = scratch + "/lonely.fifo";
        QCOMPARE(::mkfifo(fifo.c_str(), 0600), 0);
        StreamOptions opts;
        opts.fifoOpenTimeoutMs = 200;
        auto streamed = streamImage(chunked->recipe, fetcher(**cache), fifo, opts);
        QVERIFY(!streamed.ok());
        QCOMPARE(streamed.error().code, Errc::Io);

        std::atomic<bool> cancel{true};
        opts.cancel = &cancel;
        opts.fifoOpenTimeoutMs = 60000;
        streamed = streamImage(chunked->recipe, fetcher(**cache), fifo, opts);
        QVERIFY(!streamed.ok());
        QCOMPARE(streamed.error().code, Errc::Cancelled);
        streamed = streamImage(chunked->recipe, fetcher(**cache), scratch + "/x", opts);
        QVERIFY(!streamed.ok());
        QCOMPARE(streamed.error().code, Errc::Cancelled);

        ChunkImageOptions copts;
        copts.cancel = &cancel;
        auto c = chunkImage(path, convergence(), userChunker(), uploader(), copts);
        QVERIFY(!c.ok());
        QCOMPARE(c.error().code, Errc::Cancelled);
        QVERIFY(wipeScratchDir(scratch).ok());
    }

    // ---- scratch ----------------------------------------------------------------------

    void scratchDirIsPrivateAndMemoryBacked() {
        auto dir = createScratchDir();
        QVERIFY2(dir.ok(), describe(dir).c_str());
        struct stat st {};
        QCOMPARE(::stat(dir->c_str(), &st), 0);
        QCOMPARE(int(st.st_mode & 0777), 0700);
        struct statfs fs {};
        QCOMPARE(::statfs(dir->c_str(), &fs), 0);
        QVERIFY(fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);

        // A tree with a file, a subdirectory and a symlink pointing outside.
        const std::string outside = dir_.file("precious");
        writeFile(outside, asBytes("keep me"));
        writeFile(*dir + "/save.img", randomData(3u << 20, 20));
        std::filesystem::create_directories(*dir + "/sub");
        writeFile(*dir + "/sub/part", asBytes("x"));
        std::filesystem::create_symlink(outside, *dir + "/link");
        QVERIFY(wipeScratchDir(*dir).ok());
        QVERIFY(!std::filesystem::exists(*dir));
        QVERIFY(readFile(outside) == toBytes("keep me")); // not followed
        QVERIFY(wipeScratchDir(*dir).ok());               // idempotent
    }

    void scratchRefusesDiskUnlessAllowed() {
        struct statfs fs {};
        QCOMPARE(::statfs(dir_.path().c_str(), &fs), 0);
        if (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC)
            QSKIP("the test temp directory is itself tmpfs; no disk directory to refuse");
        ScratchOptions opts;
        opts.parent = dir_.path();
        auto refused = createScratchDir(opts);
        QVERIFY(!refused.ok());
        QCOMPARE(refused.error().code, Errc::Unsupported);
        opts.allowDisk = true;
        auto allowed = createScratchDir(opts);
        QVERIFY2(allowed.ok(), describe(allowed).c_str());
        QVERIFY(wipeScratchDir(*allowed).ok());
        opts.parent = dir_.file("missing");
        QCOMPARE(createScratchDir(opts).error().code, Errc::NotFound);
    }
};

QTEST_GUILESS_MAIN(TestMemimg)
#include "test_memimg.moc"
