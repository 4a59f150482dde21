#pragma once
// BlockDevice: the byte-addressed device interface the NBD server serves and
// the disk backends implement (FileBlockDevice, ParcelDisk). It lives apart
// from the server so a backend does not depend on the protocol code.
//
// Threading: the NBD server calls every method from several threads at once,
// including for overlapping ranges, so an implementation MUST be thread-safe;
// it is never called after the server's stop() returned.

#include "util/bytes.h"
#include "util/result.h"

#include <cstdint>

namespace isr::disk {

struct BlockSizes {
    std::uint32_t minimum = 1;         // every offset/length is a multiple (power of 2, <= 64 KiB)
    std::uint32_t preferred = 4096;    // power of 2, >= max(512, minimum)
    std::uint32_t maximum = 32u << 20; // largest READ/WRITE payload accepted
};

// A byte-addressed device. Offsets and lengths passed in are always inside
// [0, size()) (the server checks bounds before calling). Errors are typed;
// the server maps them to NBD errors (InvalidArgument -> EINVAL,
// NoSpace -> ENOSPC, everything else -> EIO).
// Implementations must be thread-safe (see above).
class BlockDevice {
public:
    virtual ~BlockDevice() = default;
    virtual std::uint64_t size() const = 0;
    virtual BlockSizes blockSizes() const { return {}; }
    virtual bool readOnly() const { return false; }

    virtual Status read(std::uint64_t offset, MutableByteView out) = 0;
    // fua: the data must be durable before this returns.
    virtual Status write(std::uint64_t offset, ByteView data, bool fua) = 0;
    // Everything written before (whose write returned) becomes durable.
    virtual Status flush() = 0;
    // The range's content becomes unspecified (we always make it read as
    // zeroes, which the spec allows and which makes tests deterministic).
    virtual Status trim(std::uint64_t offset, std::uint64_t length) = 0;
    virtual Status writeZeroes(std::uint64_t offset, std::uint64_t length) = 0;
};

} // namespace isr::disk
