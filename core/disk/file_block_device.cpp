#include "disk/file_block_device.h"

#include "util/posix.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

namespace isr::disk {

namespace {
Error ioError(const std::string& what, const std::string& path) {
    int err = errno;
    return Error(err == ENOSPC ? Errc::NoSpace : Errc::Io,
                 what + " " + path + ": " + std::strerror(err));
}
} // namespace

Result<std::unique_ptr<FileBlockDevice>> FileBlockDevice::open(const std::string& path,
                                                               bool readOnly) {
    int fd = ::open(path.c_str(), (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? Error(Errc::NotFound, "no such file: " + path)
                               : ioError("open", path);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        Error e = ioError("fstat", path);
        ::close(fd);
        return e;
    }
    return std::unique_ptr<FileBlockDevice>(
        new FileBlockDevice(fd, std::uint64_t(st.st_size), readOnly, path));
}

Result<std::unique_ptr<FileBlockDevice>> FileBlockDevice::create(const std::string& path,
                                                                 std::uint64_t size) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ioError("create", path);
    if (::ftruncate(fd, off_t(size)) != 0) {
        Error e = ioError("ftruncate", path);
        ::close(fd);
        return e;
    }
    return std::unique_ptr<FileBlockDevice>(new FileBlockDevice(fd, size, false, path));
}

FileBlockDevice::~FileBlockDevice() {
    ::close(fd_);
}

Status FileBlockDevice::read(std::uint64_t offset, MutableByteView out) {
    ISR_TRY_ASSIGN(std::size_t done, preadAll(fd_, out, offset, "pread " + path_));
    // The file shrank under us: the tail reads as zeroes.
    std::memset(out.data() + done, 0, out.size() - done);
    return {};
}

Status FileBlockDevice::write(std::uint64_t offset, ByteView data, bool fua) {
    ISR_TRY_STATUS(pwriteAll(fd_, data, offset, "pwrite " + path_));
    return fua ? flush() : Status{};
}

Status FileBlockDevice::flush() {
    if (::fdatasync(fd_) != 0)
        return ioError("fdatasync", path_);
    return {};
}

Status FileBlockDevice::trim(std::uint64_t offset, std::uint64_t length) {
    return writeZeroes(offset, length);
}

Status FileBlockDevice::writeZeroes(std::uint64_t offset, std::uint64_t length) {
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(offset),
                    off_t(length)) == 0)
        return {};
    // File systems without hole punching: write the zeroes.
    Bytes zeroes(std::min<std::uint64_t>(length, 1u << 20), 0);
    while (length > 0) {
        std::size_t n = std::size_t(std::min<std::uint64_t>(length, zeroes.size()));
        ISR_TRY_STATUS(write(offset, ByteView(zeroes.data(), n), false));
        offset += n;
        length -= n;
    }
    return {};
}

} // namespace isr::disk
