#pragma once
// POSIX helpers shared by the modules that touch files: one owned file
// descriptor type and one errno -> typed error mapping, so every module
// reports ENOENT as NotFound and ENOSPC as NoSpace the same way.

#include "util/bytes.h"
#include "util/result.h"

#include <cstdint>
#include <string>
#include <utility>

namespace isr {

// errno -> Errc: ENOENT NotFound; ENOSPC/EDQUOT NoSpace; EACCES/EPERM/EROFS
// AccessDenied; EEXIST AlreadyExists; anything else Io. The message is "<what>: <strerror>".
Error errnoError(int err, const std::string& what);

// Reads up to out.size() bytes at `offset`, retrying on EINTR and after
// short reads, until the buffer is full or the file ends. Returns how many
// bytes were read: fewer than out.size() only at end of file (what that means
// — zeroes, a truncated object, corruption — is the caller's call). Errors
// go through errnoError(errno, what).
Result<std::size_t> preadAll(int fd, MutableByteView out, std::uint64_t offset,
                             const std::string& what);
// Writes all of `data` at `offset`, retrying on EINTR and after short writes.
// ENOSPC/EDQUOT are NoSpace (errnoError); a write that makes no progress is Io.
Status pwriteAll(int fd, ByteView data, std::uint64_t offset, const std::string& what);

// An owned file descriptor, closed on destruction. Move-only.
class UniqueFd {
public:
    explicit UniqueFd(int fd = -1) : fd_(fd) {}
    ~UniqueFd() { reset(); }
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other)
            reset(std::exchange(other.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1);
    // Closes now and returns close(2)'s result (its error matters after writes).
    int close();

private:
    int fd_;
};

} // namespace isr
