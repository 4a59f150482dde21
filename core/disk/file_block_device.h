#pragma once
// FileBlockDevice: a BlockDevice over a plain file (pread/pwrite). The
// reference backend for tests and benchmarks; never holds user data in a
// kiosk (ParcelDisk does that, encrypted).
//
// Thread safety: pread/pwrite on one fd are safe concurrently; no state.

#include "disk/block_device.h"

#include <memory>
#include <string>

namespace isr::disk {

class FileBlockDevice : public BlockDevice {
public:
    // Opens an existing file; its current size is the device size.
    static Result<std::unique_ptr<FileBlockDevice>> open(const std::string& path,
                                                         bool readOnly = false);
    // Creates (or truncates) a sparse file of `size` bytes.
    static Result<std::unique_ptr<FileBlockDevice>> create(const std::string& path,
                                                           std::uint64_t size);
    ~FileBlockDevice() override;

    std::uint64_t size() const override { return size_; }
    bool readOnly() const override { return readOnly_; }
    Status read(std::uint64_t offset, MutableByteView out) override;
    Status write(std::uint64_t offset, ByteView data, bool fua) override;
    Status flush() override;
    Status trim(std::uint64_t offset, std::uint64_t length) override;
    Status writeZeroes(std::uint64_t offset, std::uint64_t length) override;

private:
    FileBlockDevice(int fd, std::uint64_t size, bool readOnly, std::string path)
        : fd_(fd), size_(size), readOnly_(readOnly), path_(std::move(path)) {}
    int fd_;
    std::uint64_t size_;
    bool readOnly_;
    std::string path_;
};

} // namespace isr::disk
