// What a version references, and its clear reference list (FORMAT.md,
// "Reference list"): what lets an operator collect garbage without keys.
#include "parcel/parcel.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace isr::parcel {

namespace {
constexpr char kMagic[4] = {'I', 'S', 'R', 'R'};
constexpr std::uint32_t kFormat = 1;
// magic, format, n, created, sealed length, count
constexpr std::size_t kHeaderSize = 4 + 4 + 8 + 8 + 8 + 4;
constexpr std::size_t kNameSize = std::tuple_size_v<chunk::ChunkName>;
constexpr std::size_t kSumSize = crypto::kHashSize;
} // namespace

std::string refsKey(const std::string& user, const std::string& parcel, std::uint64_t n) {
    return parcelPrefix(user, parcel) + "refs/" + std::to_string(n);
}

std::vector<chunk::ChunkRef> referencedChunks(const Manifest& m) {
    std::vector<chunk::ChunkRef> out;
    out.reserve(m.disk.size() + m.ram.size() + m.memory.size() + 2);
    for (const auto* table : {&m.disk, &m.ram})
        for (const auto& e : *table)
            if (e)
                out.push_back(*e);
    out.insert(out.end(), m.memory.begin(), m.memory.end());
    for (const auto& r : {m.nvram, m.tpmState})
        if (r)
            out.push_back(*r);
    auto byName = [](const chunk::ChunkRef& a, const chunk::ChunkRef& b) {
        return a.name < b.name;
    };
    std::stable_sort(out.begin(), out.end(), byName);
    // One entry per name: the same content under one user is one chunk
    // (convergent encryption), so its refs agree on key and length.
    out.erase(std::unique(out.begin(), out.end(),
                          [](const auto& a, const auto& b) { return a.name == b.name; }),
              out.end());
    return out;
}

ReferenceList referenceListOf(const Manifest& m, std::uint64_t sealedLength) {
    ReferenceList list;
    list.version = m.version;
    list.created = m.created;
    list.sealedLength = sealedLength;
    for (const auto& ref : referencedChunks(m))
        list.chunks.push_back(ref.name);
    return list;
}

Bytes encodeReferenceList(const ReferenceList& list) {
    Bytes out(kHeaderSize + list.chunks.size() * kNameSize + kSumSize);
    std::uint8_t* p = out.data();
    std::memcpy(p, kMagic, 4);
    putBe32(p + 4, kFormat);
    putBe64(p + 8, list.version);
    putBe64(p + 16, std::uint64_t(list.created));
    putBe64(p + 24, list.sealedLength);
    putBe32(p + 32, std::uint32_t(list.chunks.size()));
    p += kHeaderSize;
    for (const auto& name : list.chunks) {
        std::memcpy(p, name.data(), kNameSize);
        p += kNameSize;
    }
    auto sum = crypto::hash(ByteView(out.data(), out.size() - kSumSize));
    std::memcpy(p, sum.data(), kSumSize);
    return out;
}

Result<ReferenceList> decodeReferenceList(ByteView data) {
    if (data.size() < kHeaderSize + kSumSize)
        return Error(Errc::Corrupt, "reference list is truncated");
    if (std::memcmp(data.data(), kMagic, 4) != 0)
        return Error(Errc::Corrupt, "not a reference list (bad magic)");
    // The checksum before anything else is believed: a damaged count or
    // name is reported as damage, not as a strange list.
    const std::size_t body = data.size() - kSumSize;
    auto sum = crypto::hash(data.first(body));
    if (std::memcmp(sum.data(), data.data() + body, kSumSize) != 0)
        return Error(Errc::Corrupt, "reference list fails its checksum (damaged or truncated)");
    const std::uint8_t* p = data.data();
    if (std::uint32_t format = getBe32(p + 4); format != kFormat)
        return Error(Errc::Unsupported,
                     "reference list format " + std::to_string(format) + " is not supported");
    ReferenceList list;
    list.version = getBe64(p + 8);
    std::uint64_t created = getBe64(p + 16);
    if (created > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
        return Error(Errc::Corrupt, "reference list has an impossible creation time");
    list.created = std::int64_t(created);
    list.sealedLength = getBe64(p + 24);
    const std::uint64_t count = getBe32(p + 32);
    if (list.version == 0)
        return Error(Errc::Corrupt, "reference list names version 0");
    // The count against the bytes there are, before allocating for it.
    if ((body - kHeaderSize) != count * kNameSize)
        return Error(Errc::Corrupt, "reference list's chunk count does not match its size");
    list.chunks.resize(count);
    p += kHeaderSize;
    for (std::uint64_t i = 0; i < count; ++i, p += kNameSize) {
        std::memcpy(list.chunks[i].data(), p, kNameSize);
        if (i > 0 && !(list.chunks[i - 1] < list.chunks[i]))
            return Error(Errc::Corrupt, "reference list's names are not strictly increasing");
    }
    return list;
}

} // namespace isr::parcel
