#include "util/size.h"

#include <array>
#include <charconv>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>

namespace isr {

Result<std::uint64_t> parseSize(std::string_view text) {
    // The three-letter units before "B", so "8KiB" is not read as "8Ki" bytes.
    static constexpr std::array<std::pair<std::string_view, unsigned>, 10> kUnits{{
        {"KiB", 10},
        {"MiB", 20},
        {"GiB", 30},
        {"TiB", 40},
        {"B", 0},
        {"K", 10},
        {"k", 10},
        {"M", 20},
        {"G", 30},
        {"T", 40},
    }};
    auto notASize = [&] {
        return Error(Errc::InvalidArgument,
                     "'" + std::string(text) +
                         "' is not a size (digits with an optional K, M, G or T suffix, or "
                         "B, KiB, MiB, GiB, TiB)");
    };
    std::string_view digits = text;
    unsigned shift = 0;
    for (const auto& [unit, unitShift] : kUnits) {
        if (digits.size() > unit.size() && digits.ends_with(unit)) {
            digits.remove_suffix(unit.size());
            shift = unitShift;
            break;
        }
    }
    std::uint64_t value = 0;
    // from_chars takes neither a sign nor leading blanks, which is the point.
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || end != digits.data() + digits.size())
        return notASize();
    if (ec == std::errc::result_out_of_range ||
        (shift && value > (std::numeric_limits<std::uint64_t>::max() >> shift)))
        return Error(Errc::InvalidArgument, "'" + std::string(text) + "' is too large");
    if (ec != std::errc())
        return notASize();
    return value << shift;
}

std::string formatBytes(std::uint64_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = double(bytes);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

} // namespace isr
