#include "util/posix.h"

#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace isr {

Error errnoError(int err, const std::string& what) {
    Errc code = Errc::Io;
    switch (err) {
    case ENOENT:
        code = Errc::NotFound;
        break;
    case ENOSPC:
    case EDQUOT:
        code = Errc::NoSpace;
        break;
    case EACCES:
    case EPERM:
    case EROFS:
        code = Errc::AccessDenied;
        break;
    case EEXIST:
        code = Errc::AlreadyExists;
        break;
    default:
        break;
    }
    return Error(code, what + ": " + std::strerror(err));
}

Result<std::size_t> preadAll(int fd, MutableByteView out, std::uint64_t offset,
                             const std::string& what) {
    std::size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::pread(fd, out.data() + done, out.size() - done, off_t(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errnoError(errno, what);
        }
        if (n == 0)
            break; // end of file
        done += std::size_t(n);
    }
    return done;
}

Status pwriteAll(int fd, ByteView data, std::uint64_t offset, const std::string& what) {
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, off_t(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errnoError(errno, what);
        }
        if (n == 0) // no progress and no errno: do not spin
            return Error(Errc::Io, what + ": wrote nothing");
        done += std::size_t(n);
    }
    return {};
}

void UniqueFd::reset(int fd) {
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = fd;
}

int UniqueFd::close() {
    int rc = fd_ >= 0 ? ::close(fd_) : 0;
    fd_ = -1;
    return rc;
}

} // namespace isr
