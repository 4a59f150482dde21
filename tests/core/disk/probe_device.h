#pragma once
// A BlockDevice decorator for the FUSE tests and measurements: forwards to a
// device, records every read (offset, length, duration), and can fail reads
// (a store that vanished).

#include "disk/block_device.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <vector>

namespace isr::test {

// Forwards to a device and records every read (offset, length, duration).
class ProbeDevice : public disk::BlockDevice {
public:
    explicit ProbeDevice(disk::BlockDevice& inner) : inner_(inner) {}
    struct Read {
        std::uint64_t offset, length;
        std::chrono::nanoseconds took;
    };
    std::uint64_t size() const override { return inner_.size(); }
    Status read(std::uint64_t offset, MutableByteView out) override {
        if (failReads)
            return Error(Errc::Io, "reads fail (test)");
        auto begin = std::chrono::steady_clock::now();
        Status status = inner_.read(offset, out);
        std::lock_guard lock(mutex_);
        reads_.push_back({offset, out.size(), std::chrono::steady_clock::now() - begin});
        return status;
    }
    Status write(std::uint64_t offset, ByteView data, bool fua) override {
        return inner_.write(offset, data, fua);
    }
    Status flush() override { return inner_.flush(); }
    Status trim(std::uint64_t offset, std::uint64_t length) override {
        return inner_.trim(offset, length);
    }
    Status writeZeroes(std::uint64_t offset, std::uint64_t length) override {
        return inner_.writeZeroes(offset, length);
    }
    std::atomic<bool> failReads{false}; // as a store that vanished
    std::vector<Read> reads() {
        std::lock_guard lock(mutex_);
        return reads_;
    }

private:
    disk::BlockDevice& inner_;
    std::mutex mutex_;
    std::vector<Read> reads_;
};

} // namespace isr::test
