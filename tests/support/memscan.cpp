#include "memscan.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

namespace isr::test {

std::vector<MemoryHit> findUpperCasedMarker(std::string_view prefix, const std::string& seed) {
    std::vector<MemoryHit> hits;
    std::ifstream maps("/proc/self/maps");
    int mem = ::open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    if (mem < 0)
        throw std::runtime_error(std::string("open /proc/self/mem: ") + std::strerror(errno));
    static std::vector<std::uint8_t> buffer(1 << 20);
    const auto bufLo = reinterpret_cast<std::uintptr_t>(buffer.data());
    const auto bufHi = bufLo + buffer.size();
    const std::size_t needle = prefix.size() + seed.size();
    std::string line;
    while (std::getline(maps, line)) {
        std::istringstream in(line);
        std::string range, perms;
        in >> range >> perms;
        if (perms.empty() || perms[0] != 'r' || line.find("[vvar]") != std::string::npos ||
            line.find("[vsyscall]") != std::string::npos)
            continue;
        const auto dash = range.find('-');
        std::uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
        std::uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
        // Overlapping blocks so a marker across a block edge is found.
        for (std::uintptr_t at = lo; at < hi; at += buffer.size() - needle) {
            const std::size_t want = std::min<std::uintptr_t>(buffer.size(), hi - at);
            if (at < bufHi && at + want > bufLo)
                continue; // the scan buffer itself
            ssize_t got = ::pread(mem, buffer.data(), want, off_t(at));
            if (got <= 0)
                break; // unreadable (guard pages, I/O mappings)
            const std::uint8_t* p = buffer.data();
            const std::uint8_t* end = p + got;
            while (p + needle <= end) {
                auto* f = static_cast<const std::uint8_t*>(
                    ::memmem(p, std::size_t(end - p), prefix.data(), prefix.size()));
                if (!f || f + needle > end)
                    break;
                bool match = true;
                for (std::size_t k = 0; k < seed.size() && match; ++k)
                    match = f[prefix.size() + k] == std::toupper(std::uint8_t(seed[k]));
                if (match)
                    hits.push_back(MemoryHit{at + std::uintptr_t(f - buffer.data()), line});
                p = f + 1;
            }
            std::memset(buffer.data(), 0, buffer.size());
            if (std::size_t(got) < want)
                break;
        }
    }
    ::close(mem);
    return hits;
}

std::string describeHits(const std::vector<MemoryHit>& hits, const std::string& what) {
    std::ostringstream out;
    out << hits.size() << " copies of " << what;
    for (std::size_t i = 0; i < hits.size() && i < 8; ++i)
        out << "\n  0x" << std::hex << hits[i].address << std::dec << " in " << hits[i].mapping;
    return out.str();
}

} // namespace isr::test
