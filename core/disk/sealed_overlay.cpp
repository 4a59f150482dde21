#include "disk/sealed_overlay.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string_view>
#include <unistd.h>

namespace isr::disk {

namespace {
constexpr std::string_view kOverlayAdTag = "isr-overlay-v1";
} // namespace

Result<std::unique_ptr<SealedOverlay>> SealedOverlay::create(const std::string& directory,
                                                             std::uint64_t slotCount,
                                                             std::uint32_t maxPlaintext) {
    ISR_TRY_STATUS(crypto::initialize());
    const std::uint64_t slotSize =
        (std::uint64_t(maxPlaintext) + crypto::kNonceSize + crypto::kMacSize + 4095) / 4096 * 4096;
    std::string path = directory + "/overlay-" + toHex(crypto::randomBytes(8)) + ".sealed";
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid())
        return errnoError(errno, "create overlay " + path);
    if (::ftruncate(fd.get(), off_t(slotSize * slotCount)) != 0) {
        Error e = errnoError(errno, "size overlay " + path);
        ::unlink(path.c_str());
        return e;
    }
    return std::unique_ptr<SealedOverlay>(
        new SealedOverlay(std::move(path), std::move(fd), slotSize));
}

SealedOverlay::SealedOverlay(std::string path, UniqueFd fd, std::uint64_t slotSize)
    : path_(std::move(path)), fd_(std::move(fd)), slotSize_(slotSize),
      key_(crypto::Secret::random(crypto::kKeySize)) {}

SealedOverlay::~SealedOverlay() {
    fd_.reset();
    ::unlink(path_.c_str());
}

Bytes SealedOverlay::associatedData(std::uint64_t index) const {
    Bytes ad(kOverlayAdTag.size() + 8);
    std::copy(kOverlayAdTag.begin(), kOverlayAdTag.end(), ad.begin());
    putBe64(ad.data() + kOverlayAdTag.size(), index);
    return ad;
}

Status SealedOverlay::write(std::uint64_t index, ByteView plain) {
    Bytes sealed = crypto::seal(key_, plain, associatedData(index));
    return pwriteAll(fd_.get(), sealed, index * slotSize_, "write overlay " + path_);
}

Result<Bytes> SealedOverlay::read(std::uint64_t index, std::uint32_t length) {
    Bytes sealed(std::size_t(length) + crypto::kNonceSize + crypto::kMacSize);
    ISR_TRY_ASSIGN(std::size_t got,
                   preadAll(fd_.get(), sealed, index * slotSize_, "read overlay " + path_));
    if (got != sealed.size()) // the file is sized for every slot: someone cut it
        return Error(Errc::Io, "read overlay " + path_ + ": slot " + std::to_string(index) +
                                   " past the end of the file");
    return crypto::open(key_, sealed, associatedData(index));
}

void SealedOverlay::discard(std::uint64_t index) {
    ::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(index * slotSize_),
                off_t(slotSize_));
}

Status SealedOverlay::flush() {
    if (::fdatasync(fd_.get()) != 0)
        return errnoError(errno, "fdatasync " + path_);
    return {};
}

} // namespace isr::disk
