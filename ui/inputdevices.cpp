#include "inputdevices.h"

#include <cstdint>
#include <fstream>
#include <sstream>
#include <vector>

namespace isr::ui {

namespace {

constexpr unsigned kEvKey = 0x01;
constexpr unsigned kEvRep = 0x14;
// Linux input event codes of the three letter rows.
constexpr unsigned kLetterRows[][2] = {{16, 25}, {30, 38}, {44, 50}}; // KEY_Q..P, A..L, Z..M

// A bitmap as the kernel prints it: hex words, most significant first,
// separated by spaces; bit n of the whole map is bit n % 64 of word n / 64
// counted from the right (words are unsigned long, 64 bits on x86_64).
std::vector<std::uint64_t> parseBitmap(std::string_view text) {
    std::vector<std::uint64_t> words;
    std::istringstream in{std::string(text)};
    std::string word;
    while (in >> word) {
        std::uint64_t w = 0;
        try {
            w = std::stoull(word, nullptr, 16);
        } catch (...) {
            return {};
        }
        words.push_back(w);
    }
    return {words.rbegin(), words.rend()}; // least significant word first
}

bool bit(const std::vector<std::uint64_t>& map, unsigned n) {
    return n / 64 < map.size() && (map[n / 64] >> (n % 64) & 1u) != 0;
}

bool isKeyboard(const std::vector<std::uint64_t>& ev, const std::vector<std::uint64_t>& key) {
    if (!bit(ev, kEvKey) || !bit(ev, kEvRep))
        return false;
    for (const auto& row : kLetterRows)
        for (unsigned k = row[0]; k <= row[1]; ++k)
            if (!bit(key, k))
                return false;
    return true;
}

} // namespace

bool listsHardwareKeyboard(std::string_view text) {
    std::vector<std::uint64_t> ev, key;
    auto endOfDevice = [&] {
        bool yes = isKeyboard(ev, key);
        ev.clear();
        key.clear();
        return yes;
    };
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t nl = text.find('\n', pos);
        std::string_view line =
            text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        if (line.empty()) {
            if (endOfDevice())
                return true;
        } else if (line.substr(0, 6) == "B: EV=") {
            ev = parseBitmap(line.substr(6));
        } else if (line.substr(0, 7) == "B: KEY=") {
            key = parseBitmap(line.substr(7));
        }
        if (nl == std::string_view::npos)
            break;
        pos = nl + 1;
    }
    return endOfDevice();
}

bool hasHardwareKeyboard(const std::string& path) {
    std::ifstream in(path);
    if (!in)
        return false;
    std::stringstream text;
    text << in.rdbuf();
    return listsHardwareKeyboard(text.str());
}

} // namespace isr::ui
