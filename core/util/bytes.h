#pragma once
// Byte buffers and views used across the core, plus hex and file helpers.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace isr {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;
using MutableByteView = std::span<std::uint8_t>;

inline ByteView asBytes(std::string_view s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::string_view asString(ByteView b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline Bytes toBytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

std::string toHex(ByteView data);
// Lower- or upper-case hex; fails on odd length or a non-hex character.
Result<Bytes> fromHex(std::string_view hex);

// Little helpers for fixed-width big-endian integers (network order, as the
// NBD protocol and our own binary formats use).
inline void putBe16(std::uint8_t* p, std::uint16_t v) {
    p[0] = std::uint8_t(v >> 8);
    p[1] = std::uint8_t(v);
}
inline void putBe32(std::uint8_t* p, std::uint32_t v) {
    for (int i = 3; i >= 0; --i, v >>= 8)
        p[i] = std::uint8_t(v);
}
inline void putBe64(std::uint8_t* p, std::uint64_t v) {
    for (int i = 7; i >= 0; --i, v >>= 8)
        p[i] = std::uint8_t(v);
}
inline std::uint16_t getBe16(const std::uint8_t* p) { return std::uint16_t((p[0] << 8) | p[1]); }
inline std::uint32_t getBe32(const std::uint8_t* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
           std::uint32_t(p[3]);
}
inline std::uint64_t getBe64(const std::uint8_t* p) {
    return (std::uint64_t(getBe32(p)) << 32) | getBe32(p + 4);
}

bool isAllZero(ByteView data);

} // namespace isr
