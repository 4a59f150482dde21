// Chunk codec throughput next to its ingredients on the same data: memcpy,
// plain zstd (level 1) compress/decompress, and chunk encode/decode (zstd +
// BLAKE2b x2 + XChaCha20-Poly1305). 128 KiB chunks, half compressible text-like
// data, half random, 256 MiB in total.
#include "chunk/chunk.h"
#include "crypto/crypto.h"

#include <QTest>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <zstd.h>

using namespace isr;

namespace {
constexpr std::size_t kChunkSize = 128 << 10;
constexpr std::size_t kTotal = 256u << 20;
constexpr std::size_t kChunks = kTotal / kChunkSize;

Bytes makeData() {
    Bytes data(kTotal);
    std::mt19937_64 rng(42);
    static const char* const words[] = {"kiosk ",  "parcel ", "suspend ", "resume ", "chunk ",
                                        "0x7f3a ", "store\n", "libvirt ", "qemu ",   "disk "};
    for (std::size_t c = 0; c < kChunks; ++c) {
        std::uint8_t* p = data.data() + c * kChunkSize;
        if (c % 2 == 0) { // compressible
            std::size_t i = 0;
            while (i < kChunkSize) {
                const char* w = words[rng() % 10];
                for (; *w && i < kChunkSize; ++w, ++i)
                    p[i] = std::uint8_t(*w);
                if (i < kChunkSize && rng() % 8 == 0)
                    p[i++] = std::uint8_t(rng());
            }
        } else {
            crypto::randomFill({p, kChunkSize});
        }
    }
    return data;
}

template <typename F> double mbPerSecond(F&& run) {
    const auto start = std::chrono::steady_clock::now();
    run();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return double(kTotal) / 1e6 / s; // MB = 10^6 bytes
}
} // namespace

class BenchChunk : public QObject {
    Q_OBJECT
private slots:
    void throughput() {
        const Bytes data = makeData();
        const Bytes secret = crypto::randomBytes(32);
        auto chunkAt = [&](std::size_t c) {
            return ByteView(data).subspan(c * kChunkSize, kChunkSize);
        };

        Bytes sink(kChunkSize);
        volatile std::uint8_t guard = 0;
        const double memcpyRate = mbPerSecond([&] {
            for (std::size_t c = 0; c < kChunks; ++c) {
                std::memcpy(sink.data(), chunkAt(c).data(), kChunkSize);
                guard = guard + sink[c % kChunkSize];
            }
        });

        ZSTD_CCtx* cctx = ZSTD_createCCtx();
        ZSTD_DCtx* dctx = ZSTD_createDCtx();
        std::vector<Bytes> compressed(kChunks);
        std::size_t compressedBytes = 0;
        const double zstdCompress = mbPerSecond([&] {
            for (std::size_t c = 0; c < kChunks; ++c) {
                compressed[c].resize(ZSTD_compressBound(kChunkSize));
                size_t n = ZSTD_compressCCtx(cctx, compressed[c].data(), compressed[c].size(),
                                             chunkAt(c).data(), kChunkSize, 1);
                QVERIFY(!ZSTD_isError(n));
                compressed[c].resize(n);
                compressedBytes += n;
            }
        });
        const double zstdDecompress = mbPerSecond([&] {
            for (std::size_t c = 0; c < kChunks; ++c) {
                size_t n = ZSTD_decompressDCtx(dctx, sink.data(), sink.size(), compressed[c].data(),
                                               compressed[c].size());
                QVERIFY(n == kChunkSize);
            }
        });
        ZSTD_freeCCtx(cctx);
        ZSTD_freeDCtx(dctx);
        compressed.clear();

        std::vector<chunk::EncodedChunk> encoded(kChunks);
        std::size_t encodedBytes = 0;
        const double encodeRate = mbPerSecond([&] {
            for (std::size_t c = 0; c < kChunks; ++c) {
                encoded[c] = chunk::encode(secret, chunkAt(c));
                encodedBytes += encoded[c].ciphertext.size();
            }
        });
        const double decodeRate = mbPerSecond([&] {
            for (std::size_t c = 0; c < kChunks; ++c) {
                auto plain = chunk::decode(encoded[c].ref, encoded[c].ciphertext);
                QVERIFY(plain.ok());
                QCOMPARE(plain->size(), kChunkSize);
            }
        });
        // Issue #16 item 8: what wiping each decrypted chunk before it is
        // freed (crypto::wipe, sodium_memzero) would cost on the read path.
        // Same run, the plain decode measured before and after.
        const double decodeWipeRate = mbPerSecond([&] {
            for (std::size_t c = 0; c < kChunks; ++c) {
                auto plain = chunk::decode(encoded[c].ref, encoded[c].ciphertext);
                QVERIFY(plain.ok());
                crypto::wipe(*plain);
            }
        });
        const double decodeAgainRate = mbPerSecond([&] {
            for (std::size_t c = 0; c < kChunks; ++c) {
                auto plain = chunk::decode(encoded[c].ref, encoded[c].ciphertext);
                QVERIFY(plain.ok());
            }
        });
        const double decodePlainRate = (decodeRate + decodeAgainRate) / 2;
        // Spot-check correctness outside the timed loops.
        for (std::size_t c : {std::size_t(0), std::size_t(1), kChunks - 1})
            QVERIFY(*chunk::decode(encoded[c].ref, encoded[c].ciphertext) ==
                    Bytes(chunkAt(c).begin(), chunkAt(c).end()));

        std::printf("\nchunk codec throughput: %zu x %zu KiB chunks (%zu MiB), half "
                    "compressible, half random\n",
                    kChunks, kChunkSize >> 10, kTotal >> 20);
        std::printf("  %-28s %12s %12s\n", "operation", "write MB/s", "read MB/s");
        std::printf("  %-28s %12.0f %12.0f\n", "memcpy (reference)", memcpyRate, memcpyRate);
        std::printf("  %-28s %12.0f %12.0f\n", "zstd -1 compress/decompress", zstdCompress,
                    zstdDecompress);
        std::printf("  %-28s %12.0f %12.0f\n", "chunk encode/decode", encodeRate, decodeRate);
        std::printf("  %-28s %12s %12.0f\n", "chunk decode + wipe", "", decodeWipeRate);
        std::printf("  wipe on free costs %.1f%% of decode throughput (decode %.0f MB/s, "
                    "with wipe %.0f MB/s)\n",
                    100.0 * (1.0 - decodeWipeRate / decodePlainRate), decodePlainRate,
                    decodeWipeRate);
        std::printf("  size ratio: zstd %.3f, chunk %.3f (of plaintext)\n",
                    double(compressedBytes) / double(kTotal),
                    double(encodedBytes) / double(kTotal));
        std::printf("  chunk vs zstd: encode %.0f%%, decode %.0f%%\n\n",
                    100.0 * encodeRate / zstdCompress, 100.0 * decodeRate / zstdDecompress);
    }
};

QTEST_GUILESS_MAIN(BenchChunk)
#include "bench_chunk.moc"
