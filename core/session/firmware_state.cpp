// The parcel's NVRAM and TPM state: restored before the VM starts, sealed
// and sent after the save. See firmware_state.h.
#include "session/firmware_state.h"

#include "chunk/chunk.h"
#include "util/log.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace isr::session {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLog = "session";
// An OVMF 4M variable store is 540 KiB; anything above this is not one.
constexpr std::uint64_t kMaxNvramBytes = 8ull << 20;
// swtpm's state (tpm2-00.permall and a few small files) is tens of KiB.
constexpr std::uint64_t kMaxTpmBytes = 4ull << 20;
constexpr std::size_t kMaxTpmFiles = 32;

Result<Bytes> readWholeFile(const std::string& path, std::uint64_t maxBytes) {
    std::error_code ec;
    auto size = fs::file_size(path, ec);
    if (ec)
        return Error(ec == std::errc::no_such_file_or_directory ? Errc::NotFound : Errc::Io,
                     "reading " + path + ": " + ec.message());
    if (size > maxBytes)
        return Error(Errc::InvalidArgument, path + " is larger than " + std::to_string(maxBytes));
    std::ifstream in(path, std::ios::binary);
    Bytes data(size);
    if (!in.read(reinterpret_cast<char*>(data.data()), std::streamsize(size)))
        return Error(Errc::Io, "reading " + path + ": " + std::strerror(errno));
    return data;
}

Status writeWholeFile(const std::string& path, ByteView data) {
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
        if (!out.flush())
            return Error(errno == ENOSPC ? Errc::NoSpace : Errc::Io,
                         "writing " + tmp + ": " + std::strerror(errno));
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec)
        return Error(Errc::Io, "renaming " + tmp + ": " + ec.message());
    return {};
}

bool safeFileName(const std::string& n) {
    if (n.empty() || n.size() > 64 || n == "." || n == "..")
        return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-' || c == '.';
    });
}

void appendBe32(Bytes& out, std::uint32_t v) {
    std::uint8_t b[4];
    putBe32(b, v);
    out.insert(out.end(), b, b + 4);
}

} // namespace

// ---- archive: "ISRT" u32 count, then per file u32 name length, name,
// ---- u32 data length, data. Sorted by name, so equal state packs equally.

Result<Bytes> FirmwareState::packTpmState(const std::string& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    fs::path sub = fs::path(dir) / "tpm2";
    if (fs::exists(sub, ec)) {
        for (const auto& e : fs::directory_iterator(sub, ec)) {
            // swtpm's lock file and anything that is not a plain file stay.
            std::string n = e.path().filename().string();
            if (!e.is_regular_file() || n == ".lock")
                continue;
            if (!safeFileName(n))
                return Error(Errc::InvalidArgument, "unexpected file in TPM state: " + n);
            names.push_back(n);
        }
        if (ec)
            return Error(Errc::Io, "listing " + sub.string() + ": " + ec.message());
    }
    if (names.size() > kMaxTpmFiles)
        return Error(Errc::InvalidArgument, "too many files in " + sub.string());
    std::sort(names.begin(), names.end());
    Bytes out{'I', 'S', 'R', 'T'};
    appendBe32(out, std::uint32_t(names.size()));
    for (const auto& n : names) {
        ISR_TRY_ASSIGN(Bytes data, readWholeFile((sub / n).string(), kMaxTpmBytes));
        appendBe32(out, std::uint32_t(n.size()));
        out.insert(out.end(), n.begin(), n.end());
        appendBe32(out, std::uint32_t(data.size()));
        out.insert(out.end(), data.begin(), data.end());
        if (out.size() > kMaxTpmBytes)
            return Error(Errc::InvalidArgument,
                         "TPM state larger than " + std::to_string(kMaxTpmBytes) + " bytes");
    }
    return out;
}

Status FirmwareState::unpackTpmState(ByteView a, const std::string& dir) {
    auto corrupt = [](const std::string& what) {
        return Error(Errc::Corrupt, "TPM state archive: " + what);
    };
    std::size_t pos = 0;
    auto be32 = [&](std::uint32_t& v) {
        if (a.size() - pos < 4)
            return false;
        v = getBe32(a.data() + pos);
        pos += 4;
        return true;
    };
    if (a.size() < 8 || std::memcmp(a.data(), "ISRT", 4) != 0)
        return corrupt("bad magic");
    pos = 4;
    std::uint32_t count = 0;
    be32(count);
    if (count > kMaxTpmFiles)
        return corrupt("too many files");
    std::vector<std::pair<std::string, ByteView>> files;
    for (std::uint32_t i = 0; i < count; ++i) {
        std::uint32_t nameLen = 0, dataLen = 0;
        if (!be32(nameLen) || nameLen > 64 || a.size() - pos < nameLen)
            return corrupt("truncated");
        std::string name(reinterpret_cast<const char*>(a.data() + pos), nameLen);
        pos += nameLen;
        if (!safeFileName(name) || name == ".lock")
            return corrupt("bad file name");
        if (!be32(dataLen) || a.size() - pos < dataLen)
            return corrupt("truncated");
        files.emplace_back(name, ByteView(a.data() + pos, dataLen));
        pos += dataLen;
    }
    if (pos != a.size())
        return corrupt("trailing bytes");
    std::error_code ec;
    fs::path sub = fs::path(dir) / "tpm2";
    fs::create_directories(sub, ec);
    if (ec)
        return Error(Errc::Io, "creating " + sub.string() + ": " + ec.message());
    fs::permissions(dir, fs::perms::owner_all, ec);
    fs::permissions(sub, fs::perms::owner_all, ec);
    for (const auto& [name, data] : files) {
        ISR_TRY_STATUS(writeWholeFile((sub / name).string(), data));
        // The TPM's secrets: swtpm's own mode (0600).
        fs::permissions(sub / name, fs::perms::owner_read | fs::perms::owner_write, ec);
    }
    return {};
}

// ---- the session's use --------------------------------------------------------

void FirmwareState::configure(vm::Firmware firmware, bool tpm, std::string sessionDir,
                              std::string tpmStateDir, std::string firmwareRoot) {
    firmware_ = firmware;
    tpm_ = tpm;
    sessionDir_ = std::move(sessionDir);
    tpmStateDir_ = std::move(tpmStateDir);
    firmwareRoot_ = std::move(firmwareRoot);
    collected_ = false;
    nvram_.reset();
    tpmState_.reset();
}

Status FirmwareState::restore(const parcel::Manifest& base, parcel::Parcels& parcels) {
    if (firmware_ != vm::Firmware::DirectKernel)
        ISR_TRY_STATUS(vm::checkFirmwareInstalled(firmware_, firmwareRoot_));
    if (uefi()) {
        Bytes vars;
        if (base.nvram) {
            // readChunk verifies name, MAC and length: a damaged object is Corrupt.
            ISR_TRY_ASSIGN(vars, parcels.readChunk(*base.nvram));
        } else {
            ISR_TRY_ASSIGN(vars,
                           readWholeFile(vm::firmwareFiles(firmware_, firmwareRoot_).varsTemplate,
                                         kMaxNvramBytes));
        }
        ISR_TRY_STATUS(writeWholeFile(nvramPath(), vars));
        ISR_LOG_DEBUG(kLog) << "NVRAM " << (base.nvram ? "restored" : "from the template") << " ("
                            << vars.size() << " bytes)";
    }
    if (tpm_) {
        // Whatever a previous session left is not this parcel's state.
        std::error_code ec;
        fs::remove_all(tpmStateDir_, ec);
        if (base.tpmState) {
            ISR_TRY_ASSIGN(Bytes archive, parcels.readChunk(*base.tpmState));
            ISR_TRY_STATUS(unpackTpmState(archive, tpmStateDir_));
        }
    }
    return {};
}

Status FirmwareState::collect(parcel::Parcels& parcels) {
    if (collected_ || !active())
        return {};
    std::vector<chunk::EncodedChunk> chunks;
    const auto& secret = parcels.secrets().convergence;
    std::optional<chunk::ChunkRef> nvram, tpmState;
    if (uefi()) {
        ISR_TRY_ASSIGN(Bytes vars, readWholeFile(nvramPath(), kMaxNvramBytes));
        chunks.push_back(chunk::encode(secret.view(), vars));
        nvram = chunks.back().ref;
    }
    if (tpm_) {
        ISR_TRY_ASSIGN(Bytes archive, packTpmState(tpmStateDir_));
        chunks.push_back(chunk::encode(secret.view(), archive));
        tpmState = chunks.back().ref;
    }
    // Asks the store first: unchanged state is a chunk it already has.
    ISR_TRY_STATUS(parcels.uploadChunks(chunks));
    nvram_ = nvram;
    tpmState_ = tpmState;
    collected_ = true;
    return {};
}

void FirmwareState::applyTo(parcel::Manifest& next) const {
    if (!collected_)
        return;
    next.nvram = nvram_;
    next.tpmState = tpmState_;
}

void FirmwareState::wipe() {
    if (tpm_ && !tpmStateDir_.empty()) {
        std::error_code ec;
        fs::remove_all(tpmStateDir_, ec);
        if (ec) {
            ISR_LOG_WARN(kLog) << "removing the TPM state " << tpmStateDir_ << ": " << ec.message();
        }
    }
    collected_ = false;
    nvram_.reset();
    tpmState_.reset();
}

namespace {

std::uint64_t littleEndian(const std::uint8_t* p, int bytes) {
    std::uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i)
        v = (v << 8) | p[i];
    return v;
}

// Whether the GPT whose header `header` (LBA 1, 512-byte sectors, as QEMU's
// disks have) describes lists an EFI system partition. Bounds come from the
// disk, never from the header alone: the image is the user's.
Result<bool> gptHasEsp(disk::BlockDevice& disk, const std::uint8_t* header) {
    // C12A7328-F81F-11D2-BA4B-00A0C93EC93B as stored (mixed endian).
    static constexpr std::uint8_t kEsp[16] = {0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11,
                                              0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b};
    const std::uint64_t entriesLba = littleEndian(header + 72, 8);
    const std::uint64_t count = littleEndian(header + 80, 4);
    const std::uint64_t entrySize = littleEndian(header + 84, 4);
    // The UEFI specification: entries of 128 * 2^n bytes; 128 entries is
    // what every partitioning tool writes, 1 MiB of table is far beyond it.
    if (entrySize < 128 || entrySize % 128 != 0 || count == 0 || count * entrySize > (1u << 20) ||
        entriesLba < 2 || entriesLba > disk.size() / 512 ||
        count * entrySize > disk.size() - entriesLba * 512)
        return false;
    Bytes table(count * entrySize);
    ISR_TRY_STATUS(disk.read(entriesLba * 512, MutableByteView(table.data(), table.size())));
    for (std::uint64_t i = 0; i < count; ++i)
        if (std::memcmp(table.data() + i * entrySize, kEsp, sizeof kEsp) == 0)
            return true;
    return false;
}

} // namespace

Status checkDiskBootable(disk::BlockDevice& disk, vm::Firmware firmware) {
    if (firmware == vm::Firmware::DirectKernel)
        return {};
    if (disk.size() < 1024)
        return Error(Errc::NotFound, "the disk is too small to hold a boot loader");
    Bytes head(1024);
    ISR_TRY_STATUS(disk.read(0, MutableByteView(head.data(), head.size())));
    bool mbr = head[510] == 0x55 && head[511] == 0xaa;
    bool gpt = std::memcmp(head.data() + 512, "EFI PART", 8) == 0;
    if (firmware == vm::Firmware::Bios) {
        if (mbr)
            return {};
        return Error(Errc::NotFound,
                     "the disk has no boot loader for BIOS (no MBR boot signature)");
    }
    if (gpt) {
        ISR_TRY_ASSIGN(bool esp, gptHasEsp(disk, head.data() + 512));
        if (esp)
            return {};
        return Error(Errc::NotFound, std::string("the disk has no boot loader for ") +
                                         vm::firmwareName(firmware) +
                                         " (its GPT has no EFI system partition)");
    }
    if (mbr)
        return {};
    return Error(Errc::NotFound, std::string("the disk has no boot loader for ") +
                                     vm::firmwareName(firmware) +
                                     " (no MBR boot signature and no GPT)");
}

} // namespace isr::session
