// What a lazy Suspend & Leave would send at other RAM chunk sizes (issue #17:
// the desktop's lazy Suspend & Leave sent 0.38x the whole image's bytes
// against a goal of 0.3x, with ~1,600 of its 128 KiB RAM chunks changed).
//
// Reads two versions of a lazy-memory parcel (manifest format 2) from a
// store, decodes both RAM tables whole and, for block sizes from 4 KiB to
// the parcel's chunk size, counts the blocks of the newer version that
// differ from the older one and encodes them as chunks (the session's codec:
// zstd level 1, the user's convergence secret) to sum the bytes a Suspend &
// Leave would upload, deduplicated by chunk name as uploadChunks does. It
// also prints what the newer version's RAM table would weigh in the manifest
// and how many objects its RAM would be (each a GET on a cold kiosk).
// Figures at the parcel's own chunk size are the reference: they equal what
// the session sent. Not a CTest: it needs a parcel two real sessions made.
//
//   bench_ram_granularity STORE_URL USER PARCEL FROM TO   (password on stdin)
#include "chunk/chunk.h"
#include "parcel/parcel.h"
#include "store/store.h"
#include "util/bytes.h"

#include <cstdio>
#include <cstring>
#include <iostream>
#include <set>
#include <string>
#include <vector>

using namespace isr;

namespace {

struct Tally {
    std::uint32_t block = 0;
    std::uint64_t changed = 0;        // blocks whose bytes differ
    std::uint64_t changedToZero = 0;  // of those, now all zero (never stored)
    std::uint64_t uploads = 0;        // distinct new chunks
    std::uint64_t uploadBytes = 0;    // their ciphertext
    std::uint64_t stored = 0;         // non-zero blocks of the newer version
    std::uint64_t storedBytes = 0;    // their ciphertext (a cold kiosk's RAM)
    std::set<chunk::ChunkName> sent;
};

Result<Bytes> plaintextOf(parcel::Parcels& parcels, const std::optional<chunk::ChunkRef>& ref,
                          std::size_t length) {
    if (!ref)
        return Bytes(length, 0);
    ISR_TRY_ASSIGN(auto plain, parcels.readChunk(*ref));
    plain.resize(length, 0);
    return plain;
}

int run(int argc, char** argv) {
    if (argc != 6) {
        std::cerr << "usage: bench_ram_granularity STORE_URL USER PARCEL FROM TO "
                     "(password on stdin)\n";
        return 2;
    }
    std::string password;
    std::getline(std::cin, password);
    auto st = store::openStore(argv[1]);
    if (!st.ok()) {
        std::cerr << st.error().describe() << "\n";
        return 1;
    }
    auto secrets = parcel::signIn(**st, argv[2], password);
    if (!secrets.ok()) {
        std::cerr << secrets.error().describe() << "\n";
        return 1;
    }
    parcel::Parcels parcels(**st, std::move(*secrets));
    const std::string name = argv[3];
    auto older = parcels.manifest(name, std::stoull(argv[4]));
    auto newer = parcels.manifest(name, std::stoull(argv[5]));
    if (!older.ok() || !newer.ok()) {
        std::cerr << (older.ok() ? newer.error() : older.error()).describe() << "\n";
        return 1;
    }
    if (!older->lazyMemory() || !newer->lazyMemory() || older->ram.size() != newer->ram.size()) {
        std::cerr << "both versions must hold the same RAM as a chunk table (lazy memory)\n";
        return 1;
    }
    const std::uint32_t chunkSize = newer->chunkSize;
    std::vector<Tally> tallies;
    for (std::uint32_t b = 4096; b <= chunkSize; b *= 2) {
        Tally t;
        t.block = b;
        tallies.push_back(std::move(t));
    }
    const ByteView secret = parcels.secrets().convergence.view();
    std::uint64_t changedChunks = 0;
    for (std::size_t i = 0; i < newer->ram.size(); ++i) {
        const auto& a = older->ram[i];
        const auto& b = newer->ram[i];
        const bool same = (!a && !b) || (a && b && a->name == b->name);
        if (!b && same)
            continue; // zero in both: nothing stored, nothing sent
        const std::size_t length =
            std::size_t(std::min<std::uint64_t>(chunkSize, newer->ramSize() - i * chunkSize));
        auto now = plaintextOf(parcels, b, length);
        if (!now.ok()) {
            std::cerr << "RAM chunk " << i << ": " << now.error().describe() << "\n";
            return 1;
        }
        Bytes before;
        if (!same) {
            ++changedChunks;
            auto was = plaintextOf(parcels, a, length);
            if (!was.ok()) {
                std::cerr << "RAM chunk " << i << ": " << was.error().describe() << "\n";
                return 1;
            }
            before = std::move(*was);
        }
        for (auto& t : tallies) {
            for (std::size_t off = 0; off < length; off += t.block) {
                const std::size_t n = std::min<std::size_t>(t.block, length - off);
                const ByteView block{now->data() + off, n};
                const bool zero = isAllZero(block);
                const bool changed =
                    !same && std::memcmp(before.data() + off, block.data(), n) != 0;
                if (zero) {
                    t.changedToZero += changed ? 1 : 0;
                    t.changed += changed ? 1 : 0;
                    continue;
                }
                auto encoded = chunk::encode(secret, block);
                ++t.stored;
                t.storedBytes += encoded.ciphertext.size();
                if (!changed)
                    continue;
                ++t.changed;
                if (t.sent.insert(encoded.ref.name).second) {
                    ++t.uploads;
                    t.uploadBytes += encoded.ciphertext.size();
                }
            }
        }
    }
    std::printf("parcel %s, versions %s -> %s: %zu RAM chunks of %u KiB, %llu changed\n",
                name.c_str(), argv[4], argv[5], newer->ram.size(), chunkSize / 1024,
                static_cast<unsigned long long>(changedChunks));
    std::printf("%9s | %9s | %9s | %9s | %10s | %6s | %9s | %10s | %11s\n", "block", "changed",
                "to zero", "uploads", "MB up", "ratio", "stored", "stored MB", "table MB");
    const Tally& ref = tallies.back();
    for (const auto& t : tallies) {
        // The manifest's RAM table: 1 byte a zero block, 69 a stored one.
        const std::uint64_t blocks = (newer->ramSize() + t.block - 1) / t.block;
        const double table = double(blocks - t.stored) + double(t.stored) * 69.0;
        std::printf("%6u KiB | %9llu | %9llu | %9llu | %10.1f | %5.2fx | %9llu | %10.1f | %11.2f\n",
                    t.block / 1024, static_cast<unsigned long long>(t.changed),
                    static_cast<unsigned long long>(t.changedToZero),
                    static_cast<unsigned long long>(t.uploads), double(t.uploadBytes) / 1e6,
                    ref.uploadBytes ? double(t.uploadBytes) / double(ref.uploadBytes) : 0.0,
                    static_cast<unsigned long long>(t.stored), double(t.storedBytes) / 1e6,
                    table / 1e6);
    }
    std::printf("ratio: MB up against the parcel's own chunk size (what the session sent)\n");
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    return run(argc, argv);
}
