// Fuzzes the manifest decoder (parcel::decodeManifest) and the VM spec
// parser inside it (VmSpec::fromJson).
// Invariants:
//  - decode ok => the manifest is self-consistent (counts, lengths, working
//    set strictly increasing and in range, a lazy RAM table of the VM's size
//    with a device state and a hot set of distinct indexes, VM spec valid);
//  - decode ok => encode(decode(x)) decodes to an equal manifest and encodes
//    to the same bytes again (the encoding is canonical after one round);
//  - VmSpec::fromJson ok => validate() ok and fromJson(toJson()) is equal.
#include "fuzz_check.h"
#include "parcel/parcel.h"

#include <algorithm>
#include <vector>

namespace {

using namespace isr;

bool sameRef(const chunk::ChunkRef& a, const chunk::ChunkRef& b) {
    return a.name == b.name && a.key == b.key && a.length == b.length;
}

bool sameSpec(const parcel::VmSpec& a, const parcel::VmSpec& b) {
    return a.memoryMiB == b.memoryMiB && a.vcpus == b.vcpus && a.machine == b.machine &&
           a.cpu == b.cpu && a.boot == b.boot;
}

bool sameManifest(const parcel::Manifest& a, const parcel::Manifest& b) {
    if (a.version != b.version || a.parent != b.parent || a.created != b.created ||
        a.kiosk != b.kiosk || a.diskSize != b.diskSize || a.chunkSize != b.chunkSize ||
        !sameSpec(a.vm, b.vm) || a.disk.size() != b.disk.size() ||
        a.memory.size() != b.memory.size() || a.workingSet != b.workingSet ||
        a.ram.size() != b.ram.size() || a.ramChunk() != b.ramChunk() ||
        a.ramHotSet != b.ramHotSet)
        return false;
    for (const auto* table : {&a.disk, &a.ram}) {
        const auto& other = table == &a.disk ? b.disk : b.ram;
        for (std::size_t i = 0; i < table->size(); ++i) {
            if ((*table)[i].has_value() != other[i].has_value())
                return false;
            if ((*table)[i] && !sameRef(*(*table)[i], *other[i]))
                return false;
        }
    }
    for (std::size_t i = 0; i < a.memory.size(); ++i)
        if (!sameRef(a.memory[i], b.memory[i]))
            return false;
    return true;
}

void checkConsistent(const parcel::Manifest& m) {
    FUZZ_CHECK(m.version >= 1 && m.parent < m.version);
    FUZZ_CHECK(m.chunkSize >= 4096 && m.chunkSize <= chunk::kMaxChunkSize);
    FUZZ_CHECK((m.chunkSize & (m.chunkSize - 1)) == 0);
    FUZZ_CHECK(m.diskSize > 0 && m.diskSize % 512 == 0);
    FUZZ_CHECK(m.disk.size() == m.chunkCount());
    for (std::size_t i = 0; i < m.disk.size(); ++i) {
        if (!m.disk[i])
            continue;
        std::uint64_t end =
            std::min<std::uint64_t>(m.diskSize, (i + 1) * std::uint64_t(m.chunkSize));
        FUZZ_CHECK(m.disk[i]->length == end - i * std::uint64_t(m.chunkSize));
    }
    for (const auto& ref : m.memory)
        FUZZ_CHECK(ref.length > 0 && ref.length <= chunk::kMaxChunkSize);
    for (std::size_t i = 0; i < m.workingSet.size(); ++i) {
        FUZZ_CHECK(m.workingSet[i] < m.disk.size());
        FUZZ_CHECK(i == 0 || m.workingSet[i] > m.workingSet[i - 1]);
    }
    // Lazy memory: a RAM table of the VM's size with its device state, a hot
    // set of distinct indexes inside it.
    if (!m.ram.empty()) {
        FUZZ_CHECK(m.ram.size() == m.ramChunkCount());
        FUZZ_CHECK(!m.memory.empty());
        // Its own chunk size (format 3) is never the disk's: that is format 2.
        FUZZ_CHECK(m.ramChunkSize != m.chunkSize);
        const std::uint64_t size = m.ramChunk();
        FUZZ_CHECK(size >= 4096 && size <= chunk::kMaxChunkSize && (size & (size - 1)) == 0);
        for (std::size_t i = 0; i < m.ram.size(); ++i) {
            if (!m.ram[i])
                continue;
            std::uint64_t end = std::min<std::uint64_t>(m.ramSize(), (i + 1) * size);
            FUZZ_CHECK(m.ram[i]->length == end - i * size);
        }
    }
    FUZZ_CHECK(m.ramHotSet.size() <= m.ram.size());
    std::vector<bool> seen(m.ram.size());
    for (auto idx : m.ramHotSet) {
        FUZZ_CHECK(idx < m.ram.size() && !seen[idx]);
        seen[idx] = true;
    }
    FUZZ_CHECK(m.vm.validate().ok());
}

void fuzzVmSpec(ByteView data) {
    auto value = json::parse(asString(data));
    if (!value.ok())
        return;
    auto spec = parcel::VmSpec::fromJson(*value);
    if (!spec.ok())
        return;
    FUZZ_CHECK(spec->validate().ok());
    auto again = parcel::VmSpec::fromJson(spec->toJson());
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(sameSpec(*spec, *again));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    ByteView input(data, size);
    // A VM spec alone is JSON text; a manifest starts with "ISRM".
    if (size > 0 && data[0] == '{')
        fuzzVmSpec(input);

    auto manifest = parcel::decodeManifest(input);
    if (!manifest.ok()) {
        FUZZ_CHECK(manifest.error().code == Errc::Corrupt ||
                   manifest.error().code == Errc::Unsupported);
        return 0;
    }
    checkConsistent(*manifest);
    Bytes encoded = parcel::encodeManifest(*manifest);
    auto again = parcel::decodeManifest(encoded);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(sameManifest(*manifest, *again));
    FUZZ_CHECK(parcel::encodeManifest(*again) == encoded);
    return 0;
}
