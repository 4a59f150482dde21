#pragma once
// S3 protocol helpers: pure functions, no I/O, no state. Private to
// core/store (S3Store and its tests; the fuzz target fuzz_s3xml): the
// module's public headers are store.h and s3store.h.
//
//  - the store URL (s3://host[:port]/bucket[/prefix]) and request URLs,
//    canonicalised the way SigV4 signs them (libcurl 7.88 signs the path and
//    query exactly as given, so they must already be canonical);
//  - the payload hash SigV4 signs (x-amz-content-sha256);
//  - the response bodies, which come from an untrusted server: a
//    ListObjectsV2 page and an error body's <Code>, parsed with libxml2
//    (see README.md for why libxml2 and how it is configured), and which
//    answers are worth retrying.

#include "store/store.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace isr::store::s3 {

// Bounds on what a server may send, checked before parsing (sizes) and while
// reading the parsed document (counts).
// A ListObjectsV2 page: we ask for at most kMaxKeysPerPage keys (max-keys,
// also S3's own cap); a page of that many 1 KiB keys, XML-escaped, with
// their metadata is well under 8 MiB.
inline constexpr std::size_t kMaxKeysPerPage = 1000;
inline constexpr std::size_t kMaxListResponse = 8u << 20;
// An error body is a few hundred bytes; a larger one is not parsed.
inline constexpr std::size_t kMaxErrorBody = 64u << 10;

struct Endpoint {
    bool tls = false;
    std::string host; // as in the URL; IPv6 literals keep their brackets
    int port = 0;     // 0: scheme default
    std::string bucket;
    std::string prefix; // no leading/trailing '/', may be empty
};
Result<Endpoint> parseUrl(std::string_view url);

// RFC 3986 percent-encoding as SigV4 wants it: everything but A-Z a-z 0-9
// "-._~" becomes %XX (upper-case hex); '/' is kept when keepSlash (paths).
std::string uriEncode(std::string_view text, bool keepSlash);
// The canonical query string: each name and value uriEncode()d, pairs sorted
// by encoded name then value, joined as n=v&n=v.
std::string canonicalQuery(std::vector<std::pair<std::string, std::string>> params);

// "http[s]://host[:port]" for path-style addressing, "http[s]://bucket.host[:port]"
// for virtual-host style.
std::string baseUrl(const Endpoint& endpoint, bool pathStyle);
// The full request URL for an object key of the bucket (empty: the bucket
// itself), path encoded and query canonicalised as SigV4 signs them.
std::string requestUrl(const Endpoint& endpoint, bool pathStyle, std::string_view objectKey,
                       const std::vector<std::pair<std::string, std::string>>& query);

// Lower-case hex SHA-256 of a request payload, for x-amz-content-sha256.
std::string payloadHash(ByteView body);

// "2026-11-25T22:57:25.824Z" -> unix seconds.
Result<std::int64_t> parseIsoTime(std::string_view text);

struct ListPage {
    std::vector<ObjectInfo> objects; // keys as in the bucket (with the store prefix)
    bool truncated = false;
    std::string nextToken;
};
// One ListObjectsV2 response body. Corrupt if it is not a well-formed
// document whose root is <ListBucketResult>, if it has a DOCTYPE, is larger
// than kMaxListResponse, lists more than kMaxKeysPerPage objects, or any
// <Contents> lacks a sane <Key> or <Size>.
Result<ListPage> parseListObjectsV2(std::string_view xml);
// The <Code> of an S3 error body (<Error><Code>...</Code>...</Error>);
// empty if there is none or the body is not such a document.
std::string errorCode(std::string_view xml);

// Whether a complete HTTP answer is worth retrying: 5xx (503 SlowDown
// included), 409 on a PUT (racing conditional writes), and 400
// RequestTimeout (S3's word for an upload that went idle: a network failure
// in a 4xx's clothing). Every other answer is final.
bool retryableAnswer(long status, bool isPut, std::string_view body);

} // namespace isr::store::s3
