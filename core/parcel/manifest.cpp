// VM spec and the manifest's binary encoding (FORMAT.md, "Manifest").
#include "parcel/parcel.h"

#include <algorithm>
#include <cstring>

namespace isr::parcel {

namespace {
constexpr std::uint32_t kMaxHeader = 64 * 1024;
constexpr std::uint64_t kMaxDiskSize = 16ull << 40; // 16 TiB
constexpr std::uint32_t kMaxMemoryChunks = 1u << 24;
constexpr std::size_t kRefSize = 32 + 32 + 4;

// The kiosk builds domain XML from these names only; anything else is refused.
const char* const kMachines[] = {"pc-q35-7.2", "q35", "pc-i440fx-7.2"};
const char* const kCpus[] = {"qemu64",   "max",         "Nehalem",
                             "Westmere", "SandyBridge", "Skylake-Client"};
const char* const kBootProfiles[] = {"firmware", "demo-guest"};
const char* const kFirmwares[] = {"bios", "uefi", "uefi-secure"};

template <std::size_t N> bool oneOf(const std::string& v, const char* const (&set)[N]) {
    return std::any_of(std::begin(set), std::end(set), [&](const char* s) { return v == s; });
}
} // namespace

Status VmSpec::validate() const {
    if (memoryMiB < 64 || memoryMiB > 64 * 1024)
        return Error(Errc::InvalidArgument,
                     "VM memory " + std::to_string(memoryMiB) + " MiB is outside 64 MiB..64 GiB");
    if (vcpus < 1 || vcpus > 64)
        return Error(Errc::InvalidArgument,
                     "VM vCPU count " + std::to_string(vcpus) + " is outside 1..64");
    if (!oneOf(machine, kMachines))
        return Error(Errc::InvalidArgument, "VM machine type '" + machine + "' is not allowed");
    if (!oneOf(cpu, kCpus))
        return Error(Errc::InvalidArgument, "VM CPU model '" + cpu + "' is not allowed");
    if (!oneOf(boot, kBootProfiles))
        return Error(Errc::InvalidArgument, "VM boot profile '" + boot + "' is not allowed");
    if (!oneOf(firmware, kFirmwares))
        return Error(Errc::InvalidArgument, "VM firmware '" + firmware + "' is not allowed");
    // The demo guest's virtual hardware is fixed (its saved memory images
    // must keep restoring): firmware and TPM belong to the firmware profile.
    if (boot != "firmware" && (firmware != "bios" || tpm))
        return Error(Errc::InvalidArgument,
                     "VM firmware and TPM are for boot profile 'firmware' only");
    if (firmware == "uefi-secure" && machine.rfind("pc-q35", 0) != 0 && machine != "q35")
        return Error(Errc::InvalidArgument, "UEFI Secure Boot needs a q35 machine (SMM)");
    return {};
}

json::Value VmSpec::toJson() const {
    json::Object o{{"memory_mib", std::int64_t(memoryMiB)},
                   {"vcpus", std::int64_t(vcpus)},
                   {"machine", machine},
                   {"cpu", cpu},
                   {"boot", boot}};
    // Written only for the firmware profile, so a demo-guest spec reads
    // exactly as before these keys existed.
    if (boot == "firmware") {
        o["firmware"] = firmware;
        o["tpm"] = tpm;
    }
    // Only when true: a spec without the device reads exactly as before the
    // key existed, so its manifest still opens on an older kiosk. One with
    // it cannot be restored there anyway (QEMU refuses a saved stream with
    // a device it was not given), and an older kiosk refuses the key before
    // it fetches anything (FORMAT.md).
    if (genid)
        o["genid"] = true;
    return o;
}

Result<VmSpec> VmSpec::fromJson(const json::Value& value) {
    if (!value.isObject())
        return Error(Errc::Corrupt, "VM spec is not an object");
    for (const auto& [key, v] : value.asObject()) {
        (void)v;
        if (key != "memory_mib" && key != "vcpus" && key != "machine" && key != "cpu" &&
            key != "boot" && key != "firmware" && key != "tpm" && key != "genid")
            return Error(Errc::Corrupt, "VM spec has an unknown field '" + key + "'");
    }
    VmSpec spec;
    ISR_TRY_ASSIGN(std::int64_t mem, value.getInt("memory_mib"));
    ISR_TRY_ASSIGN(std::int64_t cpus, value.getInt("vcpus"));
    if (mem < 0 || mem > 0xffffffff || cpus < 0 || cpus > 0xffffffff)
        return Error(Errc::Corrupt, "VM spec numbers out of range");
    spec.memoryMiB = std::uint32_t(mem);
    spec.vcpus = std::uint32_t(cpus);
    ISR_TRY_ASSIGN(spec.machine, value.getString("machine"));
    ISR_TRY_ASSIGN(spec.cpu, value.getString("cpu"));
    ISR_TRY_ASSIGN(spec.boot, value.getString("boot"));
    // Optional (absent in manifests written before firmware boot existed).
    if (value.find("firmware")) {
        ISR_TRY_ASSIGN(spec.firmware, value.getString("firmware"));
    }
    if (value.find("tpm")) {
        ISR_TRY_ASSIGN(spec.tpm, value.getBool("tpm"));
    }
    if (value.find("genid")) {
        ISR_TRY_ASSIGN(spec.genid, value.getBool("genid"));
    }
    auto valid = spec.validate();
    if (!valid.ok())
        return Error(Errc::Corrupt, "VM spec refused: " + valid.error().message);
    return spec;
}

std::string manifestAssociatedData(const std::string& user, const std::string& parcel,
                                   std::uint64_t n) {
    return "isr-manifest-v1:" + user + "/" + parcel + "/" + std::to_string(n);
}

namespace {

void appendBe32(Bytes& out, std::uint32_t v) {
    std::uint8_t b[4];
    putBe32(b, v);
    out.insert(out.end(), b, b + 4);
}
void appendBe64(Bytes& out, std::uint64_t v) {
    std::uint8_t b[8];
    putBe64(b, v);
    out.insert(out.end(), b, b + 8);
}
void appendRef(Bytes& out, const chunk::ChunkRef& r) {
    out.insert(out.end(), r.name.begin(), r.name.end());
    out.insert(out.end(), r.key.begin(), r.key.end());
    appendBe32(out, r.length);
}
// A fixed-size chunk table (disk, lazy RAM): u64 count, then per chunk a
// kind byte (0 all-zero, 1 stored) and a stored chunk's reference.
void appendTable(Bytes& out, const std::vector<std::optional<chunk::ChunkRef>>& table) {
    appendBe64(out, table.size());
    for (const auto& entry : table) {
        out.push_back(entry ? 1 : 0);
        if (entry)
            appendRef(out, *entry);
    }
}

class Reader {
public:
    explicit Reader(ByteView data) : data_(data) {}
    std::size_t remaining() const { return data_.size() - pos_; }
    bool take(std::size_t n, const std::uint8_t*& p) {
        if (remaining() < n)
            return false;
        p = data_.data() + pos_;
        pos_ += n;
        return true;
    }
    bool u8(std::uint8_t& v) {
        const std::uint8_t* p;
        if (!take(1, p))
            return false;
        v = *p;
        return true;
    }
    bool be32(std::uint32_t& v) {
        const std::uint8_t* p;
        if (!take(4, p))
            return false;
        v = getBe32(p);
        return true;
    }
    bool be64(std::uint64_t& v) {
        const std::uint8_t* p;
        if (!take(8, p))
            return false;
        v = getBe64(p);
        return true;
    }
    bool ref(chunk::ChunkRef& r) {
        const std::uint8_t* p;
        if (!take(kRefSize, p))
            return false;
        std::memcpy(r.name.data(), p, 32);
        std::memcpy(r.key.data(), p + 32, 32);
        r.length = getBe32(p + 64);
        return true;
    }

private:
    ByteView data_;
    std::size_t pos_ = 0;
};

Error corrupt(const std::string& what) {
    return Error(Errc::Corrupt, "manifest: " + what);
}

// A chunk reference in the header JSON: {"name":hex,"key":hex,"length":n}.
json::Value refToJson(const chunk::ChunkRef& r) {
    return json::Object{{"name", toHex(ByteView(r.name.data(), r.name.size()))},
                        {"key", toHex(ByteView(r.key.data(), r.key.size()))},
                        {"length", std::int64_t(r.length)}};
}

Result<chunk::ChunkRef> refFromJson(const json::Value& v, const std::string& what) {
    if (!v.isObject() || v.asObject().size() != 3)
        return corrupt(what + " is not a chunk reference");
    ISR_TRY_ASSIGN(std::string name, v.getString("name"));
    ISR_TRY_ASSIGN(std::string key, v.getString("key"));
    ISR_TRY_ASSIGN(std::int64_t length, v.getInt("length"));
    auto n = fromHex(name);
    auto k = fromHex(key);
    if (!n.ok() || !k.ok() || n->size() != 32 || k->size() != 32)
        return corrupt(what + " has a bad name or key");
    if (length <= 0 || length > std::int64_t(chunk::kMaxChunkSize))
        return corrupt(what + " length out of range");
    chunk::ChunkRef r;
    std::memcpy(r.name.data(), n->data(), 32);
    std::memcpy(r.key.data(), k->data(), 32);
    r.length = std::uint32_t(length);
    return r;
}

// FORMAT.md: a power of two from 4 KiB to the largest chunk.
bool allowedChunkSize(std::int64_t size) {
    return size >= 4096 && size <= std::int64_t(chunk::kMaxChunkSize) && (size & (size - 1)) == 0;
}

// Reads a fixed-size chunk table of `count` chunks over `size` bytes (the
// last chunk may be shorter); `what` names it in errors.
Result<std::vector<std::optional<chunk::ChunkRef>>>
readTable(Reader& r, const std::string& what, std::uint64_t size, std::uint32_t chunkSize) {
    std::uint64_t expectCount = (size + chunkSize - 1) / chunkSize;
    std::uint64_t count = 0;
    if (!r.be64(count))
        return corrupt("truncated " + what + " table");
    if (count != expectCount)
        return corrupt(what + " table has " + std::to_string(count) + " chunks, " + what +
                       " needs " + std::to_string(expectCount));
    if (count > r.remaining()) // every entry takes at least one byte
        return corrupt(what + " table longer than the manifest");
    std::vector<std::optional<chunk::ChunkRef>> table(count);
    for (std::uint64_t i = 0; i < count; ++i) {
        std::uint8_t kind = 0;
        if (!r.u8(kind))
            return corrupt("truncated " + what + " table");
        if (kind == 0)
            continue;
        if (kind != 1)
            return corrupt("bad " + what + " entry kind " + std::to_string(kind));
        chunk::ChunkRef ref;
        if (!r.ref(ref))
            return corrupt("truncated " + what + " table");
        bool lastChunk = i + 1 == count;
        std::uint64_t expect =
            lastChunk ? size - (count - 1) * std::uint64_t(chunkSize) : chunkSize;
        if (ref.length != expect)
            return corrupt(what + " chunk " + std::to_string(i) + " has length " +
                           std::to_string(ref.length) + ", expected " + std::to_string(expect));
        table[i] = ref;
    }
    return table;
}

} // namespace

Bytes encodeManifest(const Manifest& m) {
    json::Object fields{{"version", m.version},    {"parent", m.parent},
                        {"created", m.created},    {"kiosk", m.kiosk},
                        {"disk_size", m.diskSize}, {"chunk_size", std::int64_t(m.chunkSize)},
                        {"vm", m.vm.toJson()}};
    // Version 1 has no parent to bind (FORMAT.md, "Chain").
    if (m.parentDigest)
        fields.emplace("parent_digest",
                       toHex(ByteView(m.parentDigest->data(), m.parentDigest->size())));
    // Only in what rekey wrote (FORMAT.md, "Manifest"); older readers ignore
    // header keys they do not know.
    if (m.rekeyedFrom)
        fields.emplace("rekeyed_from",
                       toHex(ByteView(m.rekeyedFrom->data(), m.rekeyedFrom->size())));
    if (!m.rekeyedUnder.empty())
        fields.emplace("rekeyed_under", m.rekeyedUnder);
    // Present only when there is such state, so other manifests read as before.
    if (m.nvram)
        fields.emplace("nvram", refToJson(*m.nvram));
    if (m.tpmState)
        fields.emplace("tpm_state", refToJson(*m.tpmState));
    // Format 3 only: a RAM table whose chunks are not the disk's size.
    const bool ownRamChunks = m.lazyMemory() && m.ramChunk() != m.chunkSize;
    if (ownRamChunks)
        fields.emplace("ram_chunk_size", std::int64_t(m.ramChunkSize));
    json::Value header(std::move(fields));
    std::string h = header.dump();
    Bytes out;
    out.reserve(16 + h.size() + (m.disk.size() + m.ram.size()) * (1 + kRefSize) +
                m.memory.size() * kRefSize);
    out.insert(out.end(), {'I', 'S', 'R', 'M'});
    appendBe32(out, ownRamChunks      ? kManifestFormatRamChunkSize
                    : m.lazyMemory() ? kManifestFormatLazyMemory
                                     : kFormatVersion);
    appendBe32(out, std::uint32_t(h.size()));
    out.insert(out.end(), h.begin(), h.end());
    appendTable(out, m.disk);
    appendBe32(out, std::uint32_t(m.memory.size()));
    for (const auto& r : m.memory)
        appendRef(out, r);
    appendBe32(out, std::uint32_t(m.workingSet.size()));
    for (auto idx : m.workingSet)
        appendBe64(out, idx);
    if (m.lazyMemory()) {
        appendTable(out, m.ram);
        appendBe32(out, std::uint32_t(m.ramHotSet.size()));
        for (auto idx : m.ramHotSet)
            appendBe64(out, idx);
    }
    return out;
}

Result<Manifest> decodeManifest(ByteView plaintext) {
    Reader r(plaintext);
    const std::uint8_t* magic;
    if (!r.take(4, magic) || std::memcmp(magic, "ISRM", 4) != 0)
        return corrupt("bad magic");
    std::uint32_t format = 0, headerLen = 0;
    if (!r.be32(format))
        return corrupt("truncated");
    if (format != std::uint32_t(kFormatVersion) &&
        format != std::uint32_t(kManifestFormatLazyMemory) &&
        format != std::uint32_t(kManifestFormatRamChunkSize))
        return Error(Errc::Unsupported, "manifest format " + std::to_string(format));
    const bool lazy = format != std::uint32_t(kFormatVersion);
    const bool ownRamChunks = format == std::uint32_t(kManifestFormatRamChunkSize);
    if (!r.be32(headerLen) || headerLen > kMaxHeader || headerLen > r.remaining())
        return corrupt("bad header length");
    const std::uint8_t* hp;
    r.take(headerLen, hp);
    auto header = json::parse(std::string_view(reinterpret_cast<const char*>(hp), headerLen));
    if (!header.ok())
        return corrupt("header: " + header.error().message);

    Manifest m;
    ISR_TRY_ASSIGN(std::int64_t version, header->getInt("version"));
    ISR_TRY_ASSIGN(std::int64_t parent, header->getInt("parent"));
    ISR_TRY_ASSIGN(m.created, header->getInt("created"));
    ISR_TRY_ASSIGN(m.kiosk, header->getString("kiosk"));
    ISR_TRY_ASSIGN(std::int64_t diskSize, header->getInt("disk_size"));
    ISR_TRY_ASSIGN(std::int64_t chunkSize, header->getInt("chunk_size"));
    if (version < 1 || parent < 0 || parent >= version)
        return corrupt("bad version/parent numbers");
    m.version = std::uint64_t(version);
    m.parent = std::uint64_t(parent);
    // Optional: absent in version 1 and in manifests older than the chain.
    if (const json::Value* pd = header->find("parent_digest")) {
        if (!pd->isString())
            return corrupt("parent digest is not a string");
        auto digest = fromHex(pd->asString());
        if (!digest.ok() || digest->size() != crypto::kHashSize)
            return corrupt("bad parent digest");
        if (m.parent == 0)
            return corrupt("parent digest without a parent");
        crypto::Hash d;
        std::memcpy(d.data(), digest->data(), d.size());
        m.parentDigest = d;
    }
    // Both or neither: rekey writes them together.
    {
        const json::Value* from = header->find("rekeyed_from");
        const json::Value* under = header->find("rekeyed_under");
        if ((from == nullptr) != (under == nullptr))
            return corrupt("rekeyed_from without rekeyed_under or the other way round");
        if (from) {
            auto digest = from->isString() ? fromHex(from->asString())
                                           : Result<Bytes>(Error(Errc::Corrupt, "not a string"));
            if (!digest.ok() || digest->size() != crypto::kHashSize)
                return corrupt("bad rekeyed_from");
            crypto::Hash d;
            std::memcpy(d.data(), digest->data(), d.size());
            m.rekeyedFrom = d;
            if (!under->isString() || under->asString().size() != 32 ||
                !fromHex(under->asString()).ok())
                return corrupt("bad rekeyed_under");
            m.rekeyedUnder = under->asString();
        }
    }
    if (!allowedChunkSize(chunkSize))
        return corrupt("chunk size " + std::to_string(chunkSize) + " is not allowed");
    if (diskSize <= 0 || std::uint64_t(diskSize) > kMaxDiskSize || diskSize % 512 != 0)
        return corrupt("disk size " + std::to_string(diskSize) + " is not allowed");
    m.chunkSize = std::uint32_t(chunkSize);
    m.diskSize = std::uint64_t(diskSize);
    // In format 3 and only there, and then not the disk's (a writer would
    // have written format 2).
    if (const json::Value* rc = header->find("ram_chunk_size"); rc || ownRamChunks) {
        if (!rc || !ownRamChunks)
            return corrupt("ram_chunk_size belongs to format 3 and format 3 needs it");
        auto ramChunk = header->getInt("ram_chunk_size");
        if (!ramChunk.ok())
            return corrupt("ram_chunk_size: " + ramChunk.error().message);
        if (!allowedChunkSize(*ramChunk) || *ramChunk == chunkSize)
            return corrupt("RAM chunk size " + std::to_string(*ramChunk) + " is not allowed");
        m.ramChunkSize = std::uint32_t(*ramChunk);
    }
    const json::Value* vm = header->find("vm");
    if (!vm)
        return corrupt("no VM spec");
    ISR_TRY_ASSIGN(m.vm, VmSpec::fromJson(*vm));
    if (const json::Value* nv = header->find("nvram")) {
        if (!m.vm.uefi())
            return corrupt("NVRAM state for a parcel without UEFI firmware");
        ISR_TRY_ASSIGN(m.nvram, refFromJson(*nv, "nvram"));
    }
    if (const json::Value* tp = header->find("tpm_state")) {
        if (!m.vm.tpm)
            return corrupt("TPM state for a parcel without a TPM");
        ISR_TRY_ASSIGN(m.tpmState, refFromJson(*tp, "tpm_state"));
    }

    ISR_TRY_ASSIGN(m.disk, readTable(r, "disk", m.diskSize, m.chunkSize));
    const std::uint64_t diskCount = m.disk.size();
    std::uint32_t memCount = 0;
    if (!r.be32(memCount))
        return corrupt("truncated memory recipe");
    if (memCount > kMaxMemoryChunks || std::uint64_t(memCount) * kRefSize > r.remaining())
        return corrupt("memory recipe claims " + std::to_string(memCount) + " chunks");
    m.memory.resize(memCount);
    for (auto& ref : m.memory) {
        r.ref(ref);
        if (ref.length == 0 || ref.length > chunk::kMaxChunkSize)
            return corrupt("memory chunk length out of range");
    }
    std::uint32_t wsCount = 0;
    if (!r.be32(wsCount))
        return corrupt("truncated working set");
    if (wsCount > diskCount || std::uint64_t(wsCount) * 8 > r.remaining() ||
        (!lazy && std::uint64_t(wsCount) * 8 != r.remaining()))
        return corrupt("bad working set length");
    m.workingSet.resize(wsCount);
    for (std::uint32_t i = 0; i < wsCount; ++i) {
        r.be64(m.workingSet[i]);
        if (m.workingSet[i] >= diskCount || (i > 0 && m.workingSet[i] <= m.workingSet[i - 1]))
            return corrupt("working set is not increasing chunk indexes");
    }
    if (lazy) {
        // The device state that goes with the RAM must be there: RAM alone
        // cannot be resumed, and a format-2 manifest without RAM is never written.
        if (m.memory.empty())
            return corrupt("RAM table without a device state");
        ISR_TRY_ASSIGN(m.ram, readTable(r, "RAM", m.ramSize(), m.ramChunk()));
        std::uint32_t hotCount = 0;
        if (!r.be32(hotCount))
            return corrupt("truncated RAM hot set");
        if (hotCount > m.ram.size() || std::uint64_t(hotCount) * 8 != r.remaining())
            return corrupt("bad RAM hot set length");
        std::vector<bool> seen(m.ram.size());
        m.ramHotSet.resize(hotCount);
        for (auto& idx : m.ramHotSet) {
            r.be64(idx);
            if (idx >= m.ram.size() || seen[idx])
                return corrupt("RAM hot set has a bad or repeated chunk index");
            seen[idx] = true;
        }
    }
    m.digest = crypto::hash(plaintext);
    return m;
}

} // namespace isr::parcel
