// Fuzzes the content-defined chunker (memimg::Chunker, StreamingChunker)
// with fuzzed parameters, gear key, data and buffer splits.
// Invariants:
//  - create ok <=> params.validate() ok;
//  - cutPoints: strictly increasing, the last equals data.size(), every
//    chunk within [min, max] except the last (which is within [1, max]);
//  - nextCut(data) is the first cut point;
//  - cut points are local: cutting from any cut point on gives the same
//    remaining cut points (what makes shifted data dedup);
//  - StreamingChunker fed the data in fuzzed pieces emits exactly the
//    one-shot chunks, as views of the same bytes.
#include "fuzz_check.h"
#include "memimg/memimg.h"

#include <cstring>

namespace {

using namespace isr;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::FieldReader in(data, size);
    memimg::ChunkerParams params;
    const std::uint8_t mode = in.u8();
    if (mode & 0x80) {
        // Any parameters: only the create/validate agreement is checked.
        params.minSize = in.u32();
        params.avgSize = in.u32();
        params.maxSize = in.u32();
    } else {
        // Valid-ish small parameters, so short inputs give many chunks.
        params.avgSize = 1u << (8 + in.u8() % 5); // 256..4096
        params.minSize = 64 + in.u16() % params.avgSize;
        params.maxSize = params.avgSize + 1 + in.u16() % (4 * params.avgSize);
    }
    std::uint8_t key[8];
    in.bytes(key, sizeof key);
    std::uint32_t splitSeed = in.u32();
    ByteView bytes = in.rest();

    auto chunker = memimg::Chunker::create(ByteView(key, sizeof key), params);
    FUZZ_CHECK(chunker.ok() == params.validate().ok());
    if (!chunker.ok()) {
        FUZZ_CHECK(chunker.error().code == Errc::InvalidArgument);
        return 0;
    }

    const std::vector<std::size_t> cuts = chunker->cutPoints(bytes);
    FUZZ_CHECK(bytes.empty() == cuts.empty());
    std::size_t prev = 0;
    for (std::size_t i = 0; i < cuts.size(); ++i) {
        FUZZ_CHECK(cuts[i] > prev);
        const std::size_t length = cuts[i] - prev;
        FUZZ_CHECK(length <= params.maxSize);
        if (i + 1 < cuts.size())
            FUZZ_CHECK(length >= params.minSize);
        prev = cuts[i];
    }
    if (!cuts.empty()) {
        FUZZ_CHECK(cuts.back() == bytes.size());
        FUZZ_CHECK(chunker->nextCut(bytes) == cuts.front());
    }

    // Locality: restarting at a cut point gives the remaining cuts.
    if (cuts.size() > 1) {
        const std::size_t from = cuts[splitSeed % (cuts.size() - 1)];
        const std::vector<std::size_t> tail = chunker->cutPoints(bytes.subspan(from));
        auto it = std::find(cuts.begin(), cuts.end(), from);
        FUZZ_CHECK(std::size_t(cuts.end() - it - 1) == tail.size());
        for (std::size_t i = 0; i < tail.size(); ++i)
            FUZZ_CHECK(tail[i] + from == *(it + 1 + std::ptrdiff_t(i)));
    }

    // Streaming in pieces of pseudo-random sizes (0 .. ~2*max) equals one-shot.
    memimg::StreamingChunker streaming(*chunker);
    std::size_t next = 0, emitted = 0, consumed = 0;
    bool ok = true;
    auto onChunk = [&](ByteView chunk) -> Status {
        if (next >= cuts.size()) {
            ok = false;
            return {};
        }
        const std::size_t start = next == 0 ? 0 : cuts[next - 1];
        if (chunk.size() != cuts[next] - start ||
            std::memcmp(chunk.data(), bytes.data() + start, chunk.size()) != 0)
            ok = false;
        ++next;
        emitted += chunk.size();
        return {};
    };
    std::uint32_t state = splitSeed | 1;
    while (consumed < bytes.size()) {
        state = state * 1103515245u + 12345u;
        std::size_t piece = (state >> 8) % (2 * params.maxSize + 2);
        if ((state >> 4) % 4 == 0)
            piece %= 64; // many tiny pieces too
        piece = std::min(piece, bytes.size() - consumed);
        FUZZ_CHECK(streaming.feed(bytes.subspan(consumed, piece), onChunk).ok());
        consumed += piece;
    }
    FUZZ_CHECK(streaming.finish(onChunk).ok());
    FUZZ_CHECK(ok);
    FUZZ_CHECK(next == cuts.size());
    FUZZ_CHECK(emitted == bytes.size());
    return 0;
}
