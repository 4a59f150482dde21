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
