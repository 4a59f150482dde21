// Fuzzes the kiosk configuration parser (session::parseKioskConfig) and the
// size syntax it shares with isrctl (isr::parseSize, util/size.h).
// Invariants:
//  - errors are InvalidArgument or Unsupported, never a crash;
//  - parse ok => every key it reports set appears in the text, and repeating
//    any of them on a new line is refused (every key at most once);
//  - parse ok => a comment line and a blank line appended change nothing;
//  - parseSize ok => the text is digits with an optional unit (B, K, k, M,
//    G, T, KiB, MiB, GiB, TiB) and the value is exactly digits * 1024^n
//    without overflow.
#include "fuzz_check.h"
#include "session/kioskconfig.h"
#include "util/size.h"

#include <charconv>
#include <utility>

using namespace isr;

namespace {

void fuzzSize(std::string_view text) {
    auto size = parseSize(text);
    if (!size.ok()) {
        FUZZ_CHECK(size.error().code == Errc::InvalidArgument);
        return;
    }
    std::string_view digits = text;
    unsigned shift = 0;
    for (auto [unit, unitShift] : {std::pair<std::string_view, unsigned>{"KiB", 10},
                                   {"MiB", 20},
                                   {"GiB", 30},
                                   {"TiB", 40},
                                   {"B", 0},
                                   {"K", 10},
                                   {"k", 10},
                                   {"M", 20},
                                   {"G", 30},
                                   {"T", 40}}) {
        if (digits.ends_with(unit)) {
            digits.remove_suffix(unit.size());
            shift = unitShift;
            break;
        }
    }
    FUZZ_CHECK(!digits.empty());
    unsigned __int128 value = 0;
    for (char c : digits) {
        FUZZ_CHECK(c >= '0' && c <= '9');
        value = value * 10 + unsigned(c - '0');
        FUZZ_CHECK(value <= ~std::uint64_t(0));
    }
    value <<= shift;
    FUZZ_CHECK(value == *size);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    if (size > 0 && size <= 32)
        fuzzSize(text);

    auto file = session::parseKioskConfig(text, "fuzz.conf");
    if (!file.ok()) {
        FUZZ_CHECK(file.error().code == Errc::InvalidArgument ||
                   file.error().code == Errc::Unsupported);
        return 0;
    }
    for (const std::string& key : file->keys) {
        FUZZ_CHECK(text.find(key) != std::string_view::npos);
        const std::string repeated = std::string(text) + "\n" + key + " = x\n";
        FUZZ_CHECK(!session::parseKioskConfig(repeated, "fuzz.conf").ok());
    }
    const std::string commented = std::string(text) + "\n# comment\n\n";
    auto again = session::parseKioskConfig(commented, "fuzz.conf");
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->keys == file->keys);
    return 0;
}
