#pragma once
// S3Store: a Store on an S3 bucket (Ceph RGW, MinIO, AWS S3), over libcurl.
//
// URL: s3://host[:port]/bucket[/prefix]  (plain HTTP unless StoreOptions::useTls)
//      s3s://host[:port]/bucket[/prefix] (HTTPS; certificates verified unless
//                                         StoreOptions::verifyTls is false)
// A store key "a/b" is the object "<prefix>/a/b" in the bucket. Path-style
// addressing (http://host/bucket/key) by default, virtual-host style
// (http://bucket.host/key) with StoreOptions::pathStyle = false.
//
// Requests are signed with SigV4 (CURLOPT_AWS_SIGV4, "aws:amz:<region>:s3").
// libcurl 7.88 signs the path and query string exactly as given, so this file
// canonicalises them itself (the helpers in namespace s3 below) and sends
// x-amz-content-sha256 with the payload's real SHA-256.
//
// Credentials: requests use the write credentials once setWriteCredentials()
// was called (a signed-in user's own keys, limited to users/<user>/), and the
// StoreOptions::readCredentials before that (the kiosk's read-only keys).
// Reads switch too, because a per-user policy grants its holder read access
// to its own prefix, while a kiosk's read-only keys may be limited to the
// account objects. Empty access key: anonymous, unsigned requests.
//
// Retries: 5xx (including 503 SlowDown), 409 on PUT, and network errors
// (connect failure, reset, stall longer than stallTimeoutMs) are retried up to
// maxRetries times with exponential backoff and full jitter; no other 4xx is
// retried. In a batch, once one request has exhausted its retries on a
// network failure, the requests still queued or waiting to be retried fail at
// once (Transient, "gave up: the store is unreachable") instead of each
// waiting out its own retries. Errors: 404 NotFound
// (DELETE: success), 403 AccessDenied, 412 AlreadyExists, 409 Conflict, 416
// InvalidArgument, exhausted retries Transient, unparsable responses Corrupt.
//
// Thread safety: every method may be called from many threads at once. Each
// call runs its own curl multi handle; all share one connection cache
// (CURLSH, locked), so connections are reused across calls and threads.

#include "store/store.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace isr::store {

// Opens an S3 store; makes no request (the bucket is not probed: a user's
// credentials may not be allowed to HEAD it). InvalidArgument for a bad URL.
Result<std::unique_ptr<Store>> openS3Store(const std::string& url, const StoreOptions& options);

// Internals exposed for unit tests.
namespace s3 {

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

// XML text -> string: &amp; &lt; &gt; &quot; &apos; and numeric references.
Result<std::string> xmlDecode(std::string_view text);
// "2026-11-25T22:57:25.824Z" -> unix seconds.
Result<std::int64_t> parseIsoTime(std::string_view text);

struct ListPage {
    std::vector<ObjectInfo> objects; // keys as in the bucket (with the store prefix)
    bool truncated = false;
    std::string nextToken;
};
// One ListObjectsV2 response body. Corrupt if it is not one.
Result<ListPage> parseListObjectsV2(std::string_view xml);
// The <Code> of an S3 error body, empty if there is none.
std::string errorCode(std::string_view xml);

} // namespace s3
} // namespace isr::store
