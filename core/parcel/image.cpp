// Disk image import and export.
#include "parcel/parcel.h"
#include "util/posix.h"
#include "util/log.h"
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



struct ImageInfo {
    std::string format;
    std::uint64_t virtualSize = 0;
};

Result<ImageInfo> probeImage(const std::string& path) {
    ISR_TRY_ASSIGN(std::string out,
                   runProgramChecked({"qemu-img", "info", "--output=json", "--", path}));
    auto doc = json::parse(out);
    if (!doc.ok())
        return Error(Errc::Io, "qemu-img info printed something unexpected");
    ISR_TRY_ASSIGN(std::string format, doc->getString("format"));
    ISR_TRY_ASSIGN(std::int64_t size, doc->getInt("virtual-size"));
    if (size <= 0)
        return Error(Errc::InvalidArgument, path + " is an empty image");
    return ImageInfo{format, std::uint64_t(size)};
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

Result<ImportStats> importImage(Parcels& parcels, const std::string& parcel,
                                const std::string& imagePath, const ImportOptions& options,
                                const ProgressFn& progress) {
    ISR_TRY_STATUS(validateName("parcel name", parcel));
    ISR_TRY_ASSIGN(ImageInfo info, probeImage(imagePath));

    // Non-raw images become a sparse raw scratch file first; qemu-img writes
    // holes for zero runs (-S), so all-zero chunks cost neither disk nor time.
    std::string rawPath = imagePath;
    std::string scratch;
    if (info.format != "raw") {
        std::string dir = options.scratchDir.empty()
                              ? std::filesystem::temp_directory_path().string()
                              : options.scratchDir;
        scratch = dir + "/isr-import-" + toHex(crypto::randomBytes(8)) + ".raw";
        ISR_TRY_STATUS(runProgramChecked(
            {"qemu-img", "convert", "-O", "raw", "-S", "4k", "--", imagePath, scratch}));
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
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
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
