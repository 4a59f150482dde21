#pragma once
// Searching this process's own memory for a secret or a marker (issue #16
// item 8: what a kiosk process keeps after a session). The needle is never
// held in clear by the test: it is `prefix` followed by `seed` upper-cased,
// and the test holds only the lower-case seed, comparing upper-cased bytes
// on the fly. Every readable mapping is read through /proc/self/mem; the
// scan buffer is skipped and zeroed after each block, so it never reports
// itself.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace isr::test {

struct MemoryHit {
    std::uintptr_t address = 0;
    std::string mapping; // the /proc/self/maps line
};

std::vector<MemoryHit> findUpperCasedMarker(std::string_view prefix, const std::string& seed);
// "<n> copies of <what>" and the first few addresses with their mappings.
std::string describeHits(const std::vector<MemoryHit>& hits, const std::string& what);

} // namespace isr::test
