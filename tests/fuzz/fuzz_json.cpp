// Fuzzes the strict JSON parser (json::parse), which reads every clear-text
// store object (isr-store.json, account, head, lock) and the manifest header.
// Invariants:
//  - parse ok => dump() parses again, and dumping that gives the same text
//    (the writer's output is canonical and always readable by the parser);
//  - errors are Corrupt only.
#include "fuzz_check.h"
#include "util/json.h"

using namespace isr;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto value = json::parse(std::string_view(reinterpret_cast<const char*>(data), size));
    if (!value.ok()) {
        FUZZ_CHECK(value.error().code == Errc::Corrupt);
        return 0;
    }
    const std::string text = value->dump();
    auto again = json::parse(text);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->dump() == text);
    return 0;
}
