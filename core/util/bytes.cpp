#include "util/bytes.h"

#include <cstring>

namespace isr {

std::string toHex(ByteView data) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(data.size() * 2, '\0');
    for (std::size_t i = 0; i < data.size(); ++i) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 0x0f];
    }
    return out;
}

static int hexValue(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

Result<Bytes> fromHex(std::string_view hex) {
    if (hex.size() % 2 != 0)
        return Error(Errc::InvalidArgument, "hex string has odd length");
    Bytes out(hex.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        int hi = hexValue(hex[2 * i]);
        int lo = hexValue(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return Error(Errc::InvalidArgument, "not a hex digit");
        out[i] = std::uint8_t((hi << 4) | lo);
    }
    return out;
}

bool isAllZero(ByteView data) {
    // Compare word-at-a-time after the first 16 bytes: memcmp against itself
    // shifted is the fastest portable way to test a buffer for zeros.
    if (data.empty())
        return true;
    std::size_t head = data.size() < 16 ? data.size() : 16;
    for (std::size_t i = 0; i < head; ++i)
        if (data[i] != 0)
            return false;
    return data.size() <= 16 || std::memcmp(data.data(), data.data() + 16, data.size() - 16) == 0;
}

} // namespace isr
