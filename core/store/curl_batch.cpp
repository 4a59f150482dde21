// The curl batch engine; see curl_batch.h for the retry policy and the
// dead-link rule.
#include "store/curl_batch.h"

#include "util/log.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <new>
#include <random>
#include <sodium.h>
#include <stdexcept>
#include <thread>

namespace isr::store::curl {

namespace {
constexpr const char* kLog = "store";
} // namespace

// libcurl 7.88 copies CURLOPT_PASSWORD into its own heap several times --
// the handle's option (strdup), the transfer's state, each connection it
// opens (kept in the connection cache while the connection lives), and
// SigV4's "AWS4"+secret signing string -- and frees them with plain free(),
// unzeroed (lib/setopt.c, url.c, http_aws_sigv4.c). Through these callbacks
// every block libcurl frees is zeroed first, so a freed copy of the secret
// does not stay behind in the heap. The TLS library (OpenSSL) allocates on
// its own and clears its key material itself. Cost: one memset of each freed
// block (malloc_usable_size); at most the few KiB of headers and state per
// request, against a round trip to the store (README "Secrets in memory").
namespace {
void wipingFree(void* p) {
    if (!p)
        return;
    sodium_memzero(p, malloc_usable_size(p));
    std::free(p);
}
void* wipingMalloc(std::size_t n) {
    return std::malloc(n);
}
// Never realloc in place-or-move: a moved block would be freed unzeroed.
void* wipingRealloc(void* p, std::size_t n) {
    if (!p)
        return std::malloc(n);
    const std::size_t old = malloc_usable_size(p);
    if (n <= old && n > 0)
        return p;
    void* q = std::malloc(n ? n : 1);
    if (!q)
        return nullptr;
    std::memcpy(q, p, std::min(old, n));
    wipingFree(p);
    return q;
}
char* wipingStrdup(const char* str) {
    const std::size_t n = std::strlen(str) + 1;
    auto* p = static_cast<char*>(std::malloc(n));
    if (p)
        std::memcpy(p, str, n);
    return p;
}
void* wipingCalloc(std::size_t count, std::size_t size) {
    return std::calloc(count, size);
}
} // namespace

void initOnce() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (sodium_init() < 0)
            throw std::runtime_error("libsodium failed to initialise");
        curl_global_init_mem(CURL_GLOBAL_DEFAULT, wipingMalloc, wipingFree, wipingRealloc,
                             wipingStrdup, wipingCalloc);
    });
}

std::shared_ptr<const SigningKey> SigningKey::from(const Credentials& credentials) {
    if (credentials.accessKey.empty())
        return nullptr;
    auto key = std::make_shared<SigningKey>();
    key->accessKey = credentials.accessKey;
    key->secret = crypto::Secret(credentials.secretKey.size() + 1); // zero-filled: NUL-terminated
    std::memcpy(key->secret.data(), credentials.secretKey.data(), credentials.secretKey.size());
    return key;
}

const char* methodName(Method m) {
    switch (m) {
    case Method::Get:
        return "GET";
    case Method::Head:
        return "HEAD";
    case Method::Put:
        return "PUT";
    case Method::Delete:
        return "DELETE";
    }
    return "?";
}

bool networkFailure(CURLcode code) {
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
        return true;
    default:
        return false;
    }
}

// ---- CurlShare ----------------------------------------------------------

CurlShare::CurlShare() {
    initOnce();
    share_ = curl_share_init();
    if (!share_)
        throw std::bad_alloc();
    curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &CurlShare::lock);
    curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &CurlShare::unlock);
    curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

CurlShare::~CurlShare() {
    curl_share_cleanup(share_);
}

void CurlShare::lock(CURL*, curl_lock_data data, curl_lock_access, void* self) {
    static_cast<CurlShare*>(self)->mutexes_[index(data)].lock();
}

void CurlShare::unlock(CURL*, curl_lock_data data, void* self) {
    static_cast<CurlShare*>(self)->mutexes_[index(data)].unlock();
}

std::size_t CurlShare::index(curl_lock_data data) {
    const auto i = static_cast<std::size_t>(data);
    return i < kLocks ? i : 0;
}

// ---- CurlSharePool ------------------------------------------------------

CurlSharePool::Lease CurlSharePool::borrow() {
    {
        std::lock_guard lock(mutex_);
        if (!idle_.empty()) {
            auto share = std::move(idle_.back());
            idle_.pop_back();
            return Lease(*this, std::move(share));
        }
    }
    return Lease(*this, std::make_unique<CurlShare>());
}

CurlSharePool::Lease::~Lease() {
    std::lock_guard lock(pool_->mutex_);
    pool_->idle_.push_back(std::move(share_));
}

// ---- CurlBatch ----------------------------------------------------------

CurlBatch::CurlBatch(const BatchOptions& options, const CurlShare& share,
                     std::shared_ptr<const SigningKey> key, const std::vector<Request>& requests)
    : options_(options), share_(share), key_(std::move(key)), reqs_(requests),
      resps_(requests.size()), transfers_(requests.size()) {
    for (std::size_t i = 0; i < reqs_.size(); ++i)
        ready_.push_back(i);
}

// Members go in reverse order: the transfers (and with them any easy handle
// still attached, which only an exception can leave) before the multi handle.
CurlBatch::~CurlBatch() {
    if (multi_)
        for (auto& t : transfers_)
            if (t && t->easy)
                curl_multi_remove_handle(multi_.get(), t->easy.get());
}

// curl's own LOW_SPEED check averages the rate over the last ~5 s, so a
// transfer that was moving fast before the server froze is only caught 5 s
// late. Here "stalled" means no byte moved either way for stallMs.
int CurlBatch::onProgress(void* self, curl_off_t, curl_off_t downNow, curl_off_t,
                          curl_off_t upNow) {
    auto* t = static_cast<Transfer*>(self);
    const auto now = Clock::now();
    if (downNow != t->lastDown || upNow != t->lastUp) {
        t->lastDown = downNow;
        t->lastUp = upNow;
        t->lastProgress = now;
        return 0;
    }
    if (now - t->lastProgress > std::chrono::milliseconds(t->stallMs)) {
        t->stalled = true;
        return 1; // abort; reported as a timeout and retried
    }
    return 0;
}

std::size_t CurlBatch::onWrite(char* data, std::size_t size, std::size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    const std::size_t count = size * n;
    if (count > t->req->maxBody - std::min(t->req->maxBody, t->resp->body.size())) {
        t->resp->tooLarge = true;
        return 0; // CURLE_WRITE_ERROR: the transfer stops here
    }
    t->resp->body.insert(t->resp->body.end(), data, data + count);
    return count;
}

std::size_t CurlBatch::onRead(char* buffer, std::size_t size, std::size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    const ByteView body = t->req->body;
    const std::size_t count = std::min(size * n, body.size() - t->uploaded);
    std::memcpy(buffer, body.data() + t->uploaded, count);
    t->uploaded += count;
    return count;
}

int CurlBatch::onSeek(void* self, curl_off_t offset, int origin) {
    auto* t = static_cast<Transfer*>(self);
    if (origin != SEEK_SET || offset < 0 || std::size_t(offset) > t->req->body.size())
        return CURL_SEEKFUNC_FAIL;
    t->uploaded = std::size_t(offset);
    return CURL_SEEKFUNC_OK;
}

CurlBatch::EasyHandle CurlBatch::takeEasy() {
    if (pool_.empty()) {
        EasyHandle h(curl_easy_init());
        if (!h)
            throw std::bad_alloc();
        return h;
    }
    EasyHandle h = std::move(pool_.back());
    pool_.pop_back();
    // Back to defaults; what it shares (connections, DNS, TLS sessions)
    // lives in the CurlShare and is kept.
    curl_easy_reset(h.get());
    return h;
}

void CurlBatch::setup(Transfer& t) {
    t.easy = takeEasy();
    CURL* h = t.easy.get();
    t.resp->body.clear();
    t.resp->tooLarge = false;
    t.uploaded = 0;
    t.errorBuffer[0] = 0;
    t.lastProgress = Clock::now();
    t.lastDown = t.lastUp = -1;
    t.stallMs = std::max(1, options_.stallTimeoutMs);
    t.stalled = false;
    const Request& req = *t.req;
    curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(h, CURLOPT_SHARE, share_.handle());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t.errorBuffer);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, long(options_.connectTimeoutMs));
    // Backstop for onProgress: a transfer slower than one byte a second
    // (averaged by curl) for the stall time is dead too.
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                     long(std::max(1, (options_.stallTimeoutMs + 999) / 1000)));
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &CurlBatch::onProgress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &CurlBatch::onWrite);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    if (req.url.rfind("https://", 0) == 0) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, options_.verifyTls ? 1L : 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, options_.verifyTls ? 2L : 0L);
        if (!options_.caBundle.empty())
            curl_easy_setopt(h, CURLOPT_CAINFO, options_.caBundle.c_str());
    }
    switch (req.method) {
    case Method::Get:
        break;
    case Method::Head:
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        break;
    case Method::Delete:
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
        break;
    case Method::Put:
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(req.body.size()));
        curl_easy_setopt(h, CURLOPT_READFUNCTION, &CurlBatch::onRead);
        curl_easy_setopt(h, CURLOPT_READDATA, &t);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, &CurlBatch::onSeek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, &t);
        break;
    }
    if (key_) {
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, options_.awsSigV4.c_str());
        curl_easy_setopt(h, CURLOPT_USERNAME, key_->accessKey.c_str());
        curl_easy_setopt(h, CURLOPT_PASSWORD, key_->secretCString());
    }
    curl_slist* list = nullptr;
    for (const auto& line : req.headers) {
        curl_slist* longer = curl_slist_append(list, line.c_str());
        if (!longer) {
            curl_slist_free_all(list);
            throw std::bad_alloc();
        }
        list = longer;
    }
    t.headers.reset(list);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
}

std::chrono::milliseconds CurlBatch::backoff(int attempt) {
    // Full jitter over an exponentially growing window (100 ms, 200 ms, ...
    // capped at 5 s): many clients retrying after one hiccup spread out.
    const long window = std::min<long>(5000, 100L << std::min(attempt, 10));
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<long> pick(window / 2, window);
    return std::chrono::milliseconds(pick(rng));
}

bool CurlBatch::retryable(const Request& req, const Response& resp) const {
    if (resp.curlCode != CURLE_OK)
        return networkFailure(resp.curlCode);
    return options_.retryableAnswer && options_.retryableAnswer(req, resp);
}

void CurlBatch::start(std::size_t i) {
    if (!transfers_[i]) {
        transfers_[i] = std::make_unique<Transfer>();
        transfers_[i]->req = &reqs_[i];
        transfers_[i]->resp = &resps_[i];
    }
    Transfer& t = *transfers_[i];
    setup(t);
    resps_[i].attempts++;
    curl_easy_setopt(t.easy.get(), CURLOPT_PRIVATE, reinterpret_cast<void*>(i));
    curl_multi_add_handle(multi_.get(), t.easy.get());
    ++inFlight_;
}

void CurlBatch::finished(CURLMsg* msg) {
    CURL* easy = msg->easy_handle;
    const CURLcode code = msg->data.result;
    void* priv = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    const auto i = reinterpret_cast<std::size_t>(priv);
    Transfer& t = *transfers_[i];
    const Request& req = reqs_[i];
    Response& resp = resps_[i];
    resp.curlCode = code;
    resp.curlError = t.errorBuffer;
    if (code == CURLE_ABORTED_BY_CALLBACK && t.stalled) {
        resp.curlCode = CURLE_OPERATION_TIMEDOUT;
        resp.curlError = "no data moved for " + std::to_string(t.stallMs) + " ms";
    }
    if (code == CURLE_WRITE_ERROR && resp.tooLarge)
        resp.curlError = "response body larger than " + std::to_string(req.maxBody) + " bytes";
    resp.status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &resp.status);
    if (req.method == Method::Head && code == CURLE_OK) {
        curl_off_t length = -1;
        curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
        resp.contentLength = length;
    }
    resp.etag.clear();
    if (code == CURLE_OK) {
        // Conditional writes name an object by its ETag (S3Store::putIfMatch).
        struct curl_header* h = nullptr;
        if (curl_easy_header(easy, "ETag", 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h && h->value) {
            std::string v = h->value;
            if (v.size() >= 2 && v.front() == '"' && v.back() == '"')
                v = v.substr(1, v.size() - 2);
            resp.etag = std::move(v);
        }
    }
    curl_multi_remove_handle(multi_.get(), easy);
    // Drops the handle's copies of the options now (the password among
    // them, zeroed by wipingFree), not when it is next used.
    curl_easy_reset(easy);
    pool_.push_back(std::move(t.easy));
    t.headers.reset();
    --inFlight_;
    if (!unreachable_ && retryable(req, resp) && resp.attempts <= options_.maxRetries) {
        const auto wait = backoff(resp.attempts - 1);
        ISR_LOG_WARN(kLog) << methodName(req.method) << " " << req.what << ": "
                           << (resp.curlCode != CURLE_OK
                                   ? std::string(curl_easy_strerror(resp.curlCode))
                                   : "HTTP " + std::to_string(resp.status))
                           << "; retry " << resp.attempts << "/" << options_.maxRetries << " in "
                           << wait.count() << " ms";
        delayed_.emplace_back(Clock::now() + wait, i);
        return;
    }
    ++done_;
    if (!unreachable_ && resp.curlCode != CURLE_OK && networkFailure(resp.curlCode))
        giveUpOnTheRest(i);
}

// The dead-link rule: request `failed` used up its retries on a network
// failure, so everything not in flight fails now with the same cause.
void CurlBatch::giveUpOnTheRest(std::size_t failed) {
    unreachable_ = true;
    const Response& cause = resps_[failed];
    std::vector<std::size_t> waiting(ready_.begin(), ready_.end());
    for (const auto& d : delayed_)
        waiting.push_back(d.second);
    ready_.clear();
    delayed_.clear();
    for (std::size_t j : waiting) {
        resps_[j].curlCode = cause.curlCode;
        resps_[j].curlError = "gave up: the store is unreachable (" +
                              std::string(curl_easy_strerror(cause.curlCode)) + " after " +
                              std::to_string(cause.attempts) + " attempts on " +
                              reqs_[failed].what + ")";
        ++done_;
    }
}

std::vector<Response> CurlBatch::run() {
    if (reqs_.empty())
        return std::move(resps_);
    initOnce();
    multi_.reset(curl_multi_init());
    if (!multi_)
        throw std::bad_alloc();
    const auto maxInFlight = std::size_t(std::max(1, options_.maxInFlight));
    while (done_ < reqs_.size()) {
        const auto now = Clock::now();
        for (auto it = delayed_.begin(); it != delayed_.end();) {
            if (it->first <= now) {
                // A retry goes before requests not yet tried: a dead link
                // then exhausts one request's retries first (and fails the
                // batch, see giveUpOnTheRest) instead of trying every
                // request of the batch once before any gives up.
                ready_.push_front(it->second);
                it = delayed_.erase(it);
            } else {
                ++it;
            }
        }
        while (inFlight_ < maxInFlight && !ready_.empty()) {
            start(ready_.front());
            ready_.pop_front();
        }
        int running = 0;
        curl_multi_perform(multi_.get(), &running);
        int queued = 0;
        while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &queued)) {
            if (msg->msg == CURLMSG_DONE)
                finished(msg);
        }
        if (done_ == reqs_.size())
            break;
        int timeoutMs = 1000;
        if (!delayed_.empty()) {
            auto next = std::min_element(delayed_.begin(), delayed_.end())->first;
            const auto wait =
                std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
            timeoutMs = int(std::clamp<long>(long(wait.count()), 0, 1000));
        }
        if (inFlight_ > 0)
            curl_multi_poll(multi_.get(), nullptr, 0, timeoutMs, nullptr);
        else if (timeoutMs > 0 && ready_.empty())
            std::this_thread::sleep_for(std::chrono::milliseconds(timeoutMs));
    }
    return std::move(resps_);
}

} // namespace isr::store::curl
