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
// libcurl 7.88 signs the path and query string exactly as given, so S3Store
// canonicalises them itself (s3_protocol.h, private to core/store) and sends
// x-amz-content-sha256 with the payload's real SHA-256. The transfers run
// through the curl batch engine (curl_batch.h, also private).
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

#include <memory>
#include <string>

namespace isr::store {

// Opens an S3 store; makes no request (the bucket is not probed: a user's
// credentials may not be allowed to HEAD it). InvalidArgument for a bad URL.
Result<std::unique_ptr<Store>> openS3Store(const std::string& url, const StoreOptions& options);

} // namespace isr::store
