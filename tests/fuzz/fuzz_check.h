#pragma once
// Shared by the fuzz targets: an invariant check that aborts (libFuzzer then
// saves the input as a crash) and a small reader that splits fuzz input into
// typed fields, so one input can drive parameters and data at once.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

// Not assert(): it must hold in release builds too (the fuzz preset is
// RelWithDebInfo, which defines NDEBUG).
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);      \
            std::abort();                                                                          \
        }                                                                                          \
    } while (0)

namespace isr::fuzz {

// Takes fixed-size fields from the front of the input; missing bytes read as 0.
class FieldReader {
public:
    FieldReader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

    std::uint8_t u8() { return std::uint8_t(take(1)); }
    std::uint16_t u16() { return std::uint16_t(take(2)); }
    std::uint32_t u32() { return std::uint32_t(take(4)); }
    std::uint64_t u64() { return take(8); }
    void bytes(std::uint8_t* out, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i)
            out[i] = u8();
    }
    // Everything not taken yet.
    std::span<const std::uint8_t> rest() const { return {data_ + pos_, size_ - pos_}; }

private:
    std::uint64_t take(std::size_t n) {
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) {
            v <<= 8;
            if (pos_ < size_)
                v |= data_[pos_++];
        }
        return v;
    }

    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

} // namespace isr::fuzz
