#pragma once
// The transfer engine under S3Store: runs a batch of HTTP requests through
// one curl multi handle, at most maxInFlight at a time, with retries,
// backoff, stall detection and the dead-link rule. Private to core/store.
//
// It knows HTTP and curl, not S3: requests arrive with their URL and headers
// built (s3_protocol.h), the caller says which complete answers are worth
// retrying, and SigV4 signing is curl's (CURLOPT_AWS_SIGV4) with the
// credentials the batch is given.
//
// Thread safety: a CurlShare may be used by any number of batches on any
// number of threads at once (its lock callbacks serialise curl's access).
// A CurlBatch belongs to the thread that runs it.

#include "crypto/crypto.h"
#include "store/store.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <curl/curl.h>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace isr::store::curl {

// curl_global_init_mem, once per process, before the first handle, with
// allocation callbacks that zero every block libcurl frees (its copies of
// the S3 secret: README "Secrets in memory").
void initOnce();

// The S3 key pair a batch signs with: the secret in locked memory that is
// wiped when the last batch using it is done (crypto::Secret), never in a
// std::string of ours. Shared read-only by concurrent batches.
struct SigningKey {
    std::string accessKey;
    crypto::Secret secret; // the secret key and a terminating NUL
    // nullptr for empty credentials (anonymous, unsigned requests).
    static std::shared_ptr<const SigningKey> from(const Credentials& credentials);
    const char* secretCString() const { return reinterpret_cast<const char*>(secret.data()); }
};

enum class Method { Get, Head, Put, Delete };
const char* methodName(Method method);

struct Request {
    Method method = Method::Get;
    std::string url;                  // complete and canonical (see s3::requestUrl)
    std::string what;                 // names the request in logs (the object key)
    std::vector<std::string> headers; // "Name: value"
    ByteView body;                    // PUT only; must outlive the batch
    // A longer response body aborts the transfer (not retried):
    // Response::tooLarge.
    std::size_t maxBody = std::numeric_limits<std::size_t>::max();
};

struct Response {
    long status = 0;
    CURLcode curlCode = CURLE_OK;
    std::string curlError;
    Bytes body;
    std::int64_t contentLength = -1; // HEAD only
    std::string etag;                // the ETag header, quotes removed; "" if none
    int attempts = 0;
    bool tooLarge = false; // the body passed Request::maxBody
};

// A network failure (connect refused, reset, timeout, stall, empty reply,
// TLS handshake): worth retrying, and what the dead-link rule counts.
bool networkFailure(CURLcode code);

// One connection cache, DNS cache and TLS session cache shared by every
// transfer of a store, across threads, with a mutex per curl lock class.
class CurlShare {
public:
    CurlShare();
    ~CurlShare();
    CurlShare(const CurlShare&) = delete;
    CurlShare& operator=(const CurlShare&) = delete;
    CURLSH* handle() const { return share_; }

private:
    static void lock(CURL*, curl_lock_data data, curl_lock_access, void* self);
    static void unlock(CURL*, curl_lock_data data, void* self);
    static std::size_t index(curl_lock_data data);
    static constexpr std::size_t kLocks = CURL_LOCK_DATA_LAST;
    CURLSH* share_ = nullptr;
    std::mutex mutexes_[kLocks];
};

// Shares lent to one batch at a time. libcurl's shared connection cache is
// not safe for transfers on different threads at once (curl's known bug "A
// shared connection cache is not thread-safe", curl issue 4915; Debian 12
// ships 7.88): a kiosk reading its store from dozens of threads (hoards,
// RAM faults) aborted with a corrupted heap (2026-12-04). A batch borrows a
// share for its run, so no two threads use one at once, and connections
// still outlive the batch that opened them: the next batch to borrow that
// share reuses them. The pool grows to the most batches run at once.
class CurlSharePool {
public:
    class Lease {
    public:
        Lease(CurlSharePool& pool, std::unique_ptr<CurlShare> share)
            : pool_(&pool), share_(std::move(share)) {}
        ~Lease();
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        const CurlShare& share() const { return *share_; }

    private:
        CurlSharePool* pool_;
        std::unique_ptr<CurlShare> share_;
    };
    Lease borrow();

private:
    std::mutex mutex_;
    std::vector<std::unique_ptr<CurlShare>> idle_;
};

struct BatchOptions {
    int maxInFlight = 16;
    int maxRetries = 4;
    int connectTimeoutMs = 10000;
    // A transfer that moves no byte either way this long is aborted and
    // retried as a timeout.
    int stallTimeoutMs = 30000;
    bool verifyTls = true; // https only
    std::string caBundle;  // https only; empty: the system store
    std::string awsSigV4;  // CURLOPT_AWS_SIGV4, e.g. "aws:amz:us-east-1:s3"
    // Which complete HTTP answers are retried (network failures always are).
    std::function<bool(const Request&, const Response&)> retryableAnswer;
};

// One batch: owns the multi handle, a pool of easy handles (at most
// maxInFlight, reused across requests and retries with curl_easy_reset), the
// transfers in flight, the queue of requests not yet started and of retries
// waiting out their backoff, and the dead-link state.
//
// Retries: up to maxRetries per request, exponential backoff with jitter
// (window 100 ms * 2^attempt capped at 5 s, wait uniform in [window/2,
// window]); a retry that is due goes before requests not yet tried.
// Dead link: once one request has used up its retries on a network failure,
// the store counts as unreachable: requests still queued or waiting for a
// retry fail at once ("gave up: the store is unreachable ..."), and those in
// flight are not retried again. A dead link then costs one request's retry
// budget, not one per maxInFlight requests.
class CurlBatch {
public:
    // No key: anonymous, unsigned requests. `requests` must outlive run().
    CurlBatch(const BatchOptions& options, const CurlShare& share,
              std::shared_ptr<const SigningKey> key, const std::vector<Request>& requests);
    ~CurlBatch();
    CurlBatch(const CurlBatch&) = delete;
    CurlBatch& operator=(const CurlBatch&) = delete;

    // Runs every request to its final answer; one Response per Request, in
    // order. Call once.
    std::vector<Response> run();

private:
    using Clock = std::chrono::steady_clock;
    struct EasyDeleter {
        void operator()(CURL* h) const { curl_easy_cleanup(h); }
    };
    struct MultiDeleter {
        void operator()(CURLM* h) const { curl_multi_cleanup(h); }
    };
    struct SlistDeleter {
        void operator()(curl_slist* l) const { curl_slist_free_all(l); }
    };
    using EasyHandle = std::unique_ptr<CURL, EasyDeleter>;
    using HeaderList = std::unique_ptr<curl_slist, SlistDeleter>;

    // One attempt of one request on an easy handle from the pool.
    struct Transfer {
        const Request* req = nullptr;
        Response* resp = nullptr;
        EasyHandle easy;
        HeaderList headers;
        std::size_t uploaded = 0;
        char errorBuffer[CURL_ERROR_SIZE] = {};
        // Stall detection (see onProgress).
        Clock::time_point lastProgress;
        curl_off_t lastDown = -1, lastUp = -1;
        long stallMs = 0;
        bool stalled = false;
    };

    static int onProgress(void* self, curl_off_t, curl_off_t downNow, curl_off_t, curl_off_t upNow);
    static std::size_t onWrite(char* data, std::size_t size, std::size_t n, void* self);
    static std::size_t onRead(char* buffer, std::size_t size, std::size_t n, void* self);
    static int onSeek(void* self, curl_off_t offset, int origin);

    EasyHandle takeEasy();
    void setup(Transfer& t);
    void start(std::size_t i);
    void finished(CURLMsg* msg);
    void giveUpOnTheRest(std::size_t failed);
    bool retryable(const Request& req, const Response& resp) const;
    static std::chrono::milliseconds backoff(int attempt);

    const BatchOptions& options_;
    const CurlShare& share_;
    const std::shared_ptr<const SigningKey> key_;
    const std::vector<Request>& reqs_;
    std::vector<Response> resps_;
    std::unique_ptr<CURLM, MultiDeleter> multi_;
    std::vector<EasyHandle> pool_; // idle easy handles
    std::vector<std::unique_ptr<Transfer>> transfers_;
    std::deque<std::size_t> ready_; // to start, in order
    std::vector<std::pair<Clock::time_point, std::size_t>>
        delayed_; // retries and when they are due
    std::size_t inFlight_ = 0;
    std::size_t done_ = 0;
    bool unreachable_ = false;
};

} // namespace isr::store::curl
