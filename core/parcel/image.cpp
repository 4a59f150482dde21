// Disk image import and export.
#include "parcel/parcel.h"
#include "util/log.h"
#include "util/posix.h"
#include "util/process.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace isr::parcel {

namespace {

// Image formats recognised by their first bytes. Only qcow2 and raw are
// imported; the others are named so that the refusal says what the file is.
struct Magic {
    std::size_t offset;
    std::string_view bytes;
    const char* format;
};
constexpr std::string_view kQcowMagic{"QFI\xfb", 4};
const Magic kOtherFormats[] = {
    {0, "KDMV", "vmdk"},
    {0, "COWD", "vmdk (version 3)"},
    {0, "# Disk DescriptorFile", "vmdk (descriptor)"},
    {0, "vhdxfile", "vhdx"},
    {0, "conectix", "vpc (vhd)"},
    {0, "<<< ", "vdi"},
    {0, {"QED\0", 4}, "qed"},
    {0, {"LUKS\xba\xbe", 6}, "luks"},
    {0, "WithoutFreeSpace", "parallels"},
    {0, "WithouFreSpacExt", "parallels"},
    {0, "cloop", "cloop"},
};

std::uint32_t bigEndian32(const std::uint8_t* p) {
    return std::uint32_t(p[0]) << 24 | std::uint32_t(p[1]) << 16 | std::uint32_t(p[2]) << 8 |
           std::uint32_t(p[3]);
}

// What `qemu-img info -f qcow2` says, checked for references to other files.
Result<ImportImageInfo> inspectQcow2(const std::string& path) {
    auto out = runProgramChecked({"qemu-img", "info", "-f", "qcow2", "--output=json", "--", path});
    if (!out.ok())
        return Error(
            Errc::InvalidArgument,
            path + " has a qcow2 header but is not a valid qcow2 image: " + out.error().message);
    auto doc = json::parse(*out);
    if (!doc.ok() || !doc->isObject())
        return Error(Errc::Io, "qemu-img info printed something unexpected");
    for (const char* field :
         {"backing-filename", "full-backing-filename", "backing-filename-format"})
        if (const json::Value* v = doc->find(field)) {
            return Error(Errc::InvalidArgument,
                         path + " is a qcow2 image with a backing file (" +
                             (v->isString() ? v->asString() : std::string("?")) +
                             "): refused, it would read another file of this host. "
                             "Flatten it first (qemu-img convert) on the machine it came from");
        }
    if (const json::Value* specific = doc->find("format-specific"))
        if (const json::Value* data = specific->find("data"))
            if (const json::Value* file = data->find("data-file")) {
                return Error(Errc::InvalidArgument,
                             path + " is a qcow2 image with an external data file (" +
                                 (file->isString() ? file->asString() : std::string("?")) +
                                 "): refused, it would read another file of this host");
            }
    ISR_TRY_ASSIGN(std::int64_t size, doc->getInt("virtual-size"));
    if (size <= 0)
        return Error(Errc::InvalidArgument, path + " is an empty image");
    return ImportImageInfo{"qcow2", std::uint64_t(size)};
}

// True if [offset, offset+length) of fd is entirely a hole (reads as zeros
// without us reading it). Conservative: false when unsure.
bool isHole(int fd, std::uint64_t offset, std::uint64_t length) {
    off_t data = ::lseek(fd, off_t(offset), SEEK_DATA);
    if (data < 0)
        return errno == ENXIO; // no data after offset at all
    return std::uint64_t(data) >= offset + length;
}

Status readFully(int fd, std::uint8_t* buf, std::size_t len, std::uint64_t offset) {
    ISR_TRY_ASSIGN(std::size_t done, preadAll(fd, {buf, len}, offset, "reading image"));
    std::memset(buf + done, 0, len - done); // short file: the rest reads as zeros
    return {};
}

} // namespace

Result<ImportImageInfo> inspectImportImage(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!fd.valid())
        return errnoError(errno, "opening " + path);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return errnoError(errno, "stat " + path);
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return Error(Errc::InvalidArgument, path + " is not a regular file");
    std::uint8_t head[512] = {};
    ISR_TRY_ASSIGN(std::size_t got, preadAll(fd.get(), {head, sizeof head}, 0, "reading " + path));
    const std::string_view start(reinterpret_cast<const char*>(head), got);
    if (start.substr(0, kQcowMagic.size()) == kQcowMagic) {
        const std::uint32_t version = got >= 8 ? bigEndian32(head + 4) : 0;
        if (version != 2 && version != 3)
            return Error(Errc::InvalidArgument, path + " is a qcow (version " +
                                                    std::to_string(version) +
                                                    ") image: only raw and qcow2 are imported");
        return inspectQcow2(path);
    }
    for (const Magic& m : kOtherFormats)
        if (start.substr(m.offset, m.bytes.size()) == m.bytes)
            return Error(Errc::InvalidArgument,
                         path + " looks like a " + m.format +
                             " image: only raw and qcow2 are imported (convert it to one of "
                             "them on the machine it came from)");
    // Raw: its bytes are the disk; it cannot name another file.
    std::uint64_t size = std::uint64_t(st.st_size);
    if (S_ISBLK(st.st_mode)) {
        off_t end = ::lseek(fd.get(), 0, SEEK_END);
        if (end < 0)
            return errnoError(errno, "size of " + path);
        size = std::uint64_t(end);
    }
    if (size == 0)
        return Error(Errc::InvalidArgument, path + " is an empty image");
    return ImportImageInfo{"raw", size};
}

Result<ImportStats> importImage(Parcels& parcels, const std::string& parcel,
                                const std::string& imagePath, const ImportOptions& options,
                                const ProgressFn& progress) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    ISR_TRY_ASSIGN(ImportImageInfo info, inspectImportImage(imagePath));

    // Non-raw images become a sparse raw scratch file first; qemu-img writes
    // holes for zero runs (-S), so all-zero chunks cost neither disk nor time.
    std::string rawPath = imagePath;
    std::string scratch;
    if (info.format != "raw") {
        std::string dir = options.scratchDir.empty()
                              ? std::filesystem::temp_directory_path().string()
                              : options.scratchDir;
        scratch = dir + "/isr-import-" + toHex(crypto::randomBytes(8)) + ".raw";
        // -f: the format inspectImportImage decided, never qemu-img's probe.
        ISR_TRY_STATUS(runProgramChecked({"qemu-img", "convert", "-f", info.format, "-O", "raw",
                                          "-S", "4k", "--", imagePath, scratch}));
        rawPath = scratch;
    }
    struct Cleanup {
        std::string path;
        ~Cleanup() {
            if (!path.empty())
                ::unlink(path.c_str());
        }
    } cleanup{scratch};

    UniqueFd fd(::open(rawPath.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0)
        return errnoError(errno, "opening " + rawPath);

    Manifest m;
    auto latest = parcels.latest(parcel);
    if (latest.ok()) {
        ISR_TRY_ASSIGN(Manifest parent, parcels.manifest(parcel, *latest));
        m.vm = parent.vm;
        m.chunkSize = parent.chunkSize;
        m.parent = *latest;
    } else if (latest.error().code == Errc::NotFound) {
        m.vm = options.vm;
        m.chunkSize = options.chunkSize;
        m.parent = 0;
    } else {
        return std::move(latest).error();
    }
    ISR_TRY_STATUS(m.vm.validate());
    m.kiosk = options.kiosk;
    m.created = std::time(nullptr);
    m.diskSize = (info.virtualSize + 511) / 512 * 512;
    m.disk.resize(m.chunkCount());

    ImportStats stats;
    stats.chunks = m.chunkCount();
    const ByteView secret = parcels.secrets().convergence.view();
    Bytes buf(m.chunkSize);
    std::vector<chunk::EncodedChunk> batch;
    std::uint64_t batchBytes = 0;
    auto flush = [&]() -> Status {
        if (batch.empty())
            return {};
        ISR_TRY_ASSIGN(auto fresh, parcels.uploadChunks(batch));
        stats.newChunks += fresh.chunks;
        stats.newBytes += fresh.bytes;
        batch.clear();
        batchBytes = 0;
        return {};
    };
    for (std::uint64_t i = 0; i < m.chunkCount(); ++i) {
        std::uint64_t offset = i * m.chunkSize;
        std::size_t len = std::size_t(std::min<std::uint64_t>(m.chunkSize, m.diskSize - offset));
        if (isHole(fd.get(), offset, len)) {
            ++stats.zeroChunks;
        } else {
            ISR_TRY_STATUS(readFully(fd.get(), buf.data(), len, offset));
            ByteView data(buf.data(), len);
            if (isAllZero(data)) {
                ++stats.zeroChunks;
            } else {
                auto encoded = chunk::encode(secret, data);
                m.disk[i] = encoded.ref;
                batchBytes += encoded.ciphertext.size();
                batch.push_back(std::move(encoded));
            }
        }
        if (batchBytes >= (32u << 20))
            ISR_TRY_STATUS(flush());
        if (progress && (i % 64 == 63 || i + 1 == m.chunkCount()))
            progress("import", (i + 1), m.chunkCount());
    }
    ISR_TRY_STATUS(flush());
    ISR_TRY_ASSIGN(stats.version, parcels.commit(parcel, m, {}));
    return stats;
}

Status exportImage(Parcels& parcels, const std::string& parcel, std::uint64_t n,
                   const std::string& outPath, const ProgressFn& progress) {
    ISR_TRY_ASSIGN(Manifest m, parcels.manifest(parcel, n));
    std::string tmp = outPath + ".part";
    // O_EXCL|O_NOFOLLOW: never write through a symlink someone planted at
    // OUT.part (the export may run as root in a shared directory). A
    // leftover regular file from an interrupted export is removed first.
    struct stat leftover {};
    if (::lstat(tmp.c_str(), &leftover) == 0) {
        if (!S_ISREG(leftover.st_mode))
            return Error(Errc::InvalidArgument,
                         tmp + " exists and is not a regular file (a symbolic link?): refused");
        if (::unlink(tmp.c_str()) != 0)
            return errnoError(errno, "removing the leftover " + tmp);
    }
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (fd.get() < 0)
        return errnoError(errno, "creating " + tmp);
    auto fail = [&](Error e) {
        ::unlink(tmp.c_str());
        return e;
    };
    if (::ftruncate(fd.get(), off_t(m.diskSize)) != 0)
        return fail(errnoError(errno, "sizing " + tmp));
    for (std::uint64_t i = 0; i < m.disk.size(); ++i) {
        if (m.disk[i]) {
            auto data = parcels.readChunk(*m.disk[i]);
            if (!data.ok())
                return fail(std::move(data).error());
            if (auto st = pwriteAll(fd.get(), *data, i * m.chunkSize, "writing " + tmp); !st.ok())
                return fail(std::move(st).error());
        }
        if (progress && (i % 64 == 63 || i + 1 == m.disk.size()))
            progress("export", i + 1, m.disk.size());
    }
    if (::fsync(fd.get()) != 0)
        return fail(errnoError(errno, "syncing " + tmp));
    if (::rename(tmp.c_str(), outPath.c_str()) != 0)
        return fail(errnoError(errno, "renaming to " + outPath));
    return {};
}

} // namespace isr::parcel
