// Fuzzes S3Store's parsing of what an S3 server answers (s3_protocol.h):
// s3::parseListObjectsV2 and s3::errorCode, which read an untrusted
// server's XML through libxml2 with entities and DTDs off.
// Invariants:
//  - errors are Corrupt only;
//  - ok => at most kMaxKeysPerPage objects, each with a non-empty key; a
//    truncated page has a non-empty continuation token, a last page none;
//  - ok => the page written back as XML (every character escaped that XML
//    would otherwise change) parses to the same keys, sizes and token;
//  - errorCode() never fails, and retryableAnswer(400, ...) is true exactly
//    when the code is RequestTimeout.
#include "fuzz_check.h"
#include "store/s3_protocol.h"

#include <string>
#include <string_view>

using namespace isr;
using namespace isr::store;

namespace {
std::string escape(std::string_view text) {
    std::string out;
    for (unsigned char c : text) {
        if (c == '&')
            out += "&amp;";
        else if (c == '<')
            out += "&lt;";
        else if (c == '>')
            out += "&gt;";
        else if (c < 0x20) // \r would come back as \n, \t as itself: say it exactly
            out += "&#" + std::to_string(int(c)) + ";";
        else
            out += char(c);
    }
    return out;
}

std::string writePage(const s3::ListPage& page) {
    std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><IsTruncated>";
    xml += page.truncated ? "true" : "false";
    xml += "</IsTruncated>";
    if (page.truncated)
        xml += "<NextContinuationToken>" + escape(page.nextToken) + "</NextContinuationToken>";
    for (const auto& o : page.objects)
        xml += "<Contents><Key>" + escape(o.key) + "</Key><Size>" + std::to_string(o.size) +
               "</Size></Contents>";
    return xml + "</ListBucketResult>";
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    const std::string code = s3::errorCode(text);
    FUZZ_CHECK(s3::retryableAnswer(400, false, text) == (code == "RequestTimeout"));

    auto page = s3::parseListObjectsV2(text);
    if (!page.ok()) {
        FUZZ_CHECK(page.error().code == Errc::Corrupt);
        return 0;
    }
    FUZZ_CHECK(page->objects.size() <= s3::kMaxKeysPerPage);
    for (const auto& o : page->objects)
        FUZZ_CHECK(!o.key.empty());
    FUZZ_CHECK(page->truncated == !page->nextToken.empty());

    auto again = s3::parseListObjectsV2(writePage(*page));
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->truncated == page->truncated);
    FUZZ_CHECK(again->nextToken == page->nextToken);
    FUZZ_CHECK(again->objects.size() == page->objects.size());
    for (std::size_t i = 0; i < page->objects.size(); ++i) {
        FUZZ_CHECK(again->objects[i].key == page->objects[i].key);
        FUZZ_CHECK(again->objects[i].size == page->objects[i].size);
    }
    return 0;
}
