#pragma once
// One syntax for a size in bytes, shared by kiosk.conf and isrctl.

#include "util/result.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace isr {

// "8G" -> 8 << 30. Decimal digits (nothing before them: no sign, no blank),
// then an optional binary unit, nothing after it:
//   none or B            bytes
//   K, k or KiB          x 1024
//   M or MiB             x 1024^2
//   G or GiB             x 1024^3
//   T or TiB             x 1024^4
// This is the union of what kiosk.conf (K/M/G/T) and isrctl
// (also B, k, KiB, MiB, GiB, TiB) each accepted before. No decimal (SI)
// units and no fractions: "8GB", "8g" and "1.5G" are refused rather than
// guessed at. A value that does not fit in 64 bits is an error, never
// wrapped. Errors are InvalidArgument naming the text.
Result<std::uint64_t> parseSize(std::string_view text);

// For people: "0 B", "512 B", "1.5 KiB" ... "2.0 TiB" (binary units, one
// decimal above bytes). Used by isrctl and `isr-kiosk --status`.
std::string formatBytes(std::uint64_t bytes);

} // namespace isr
