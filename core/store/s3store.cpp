// S3Store: the Store methods over the S3 protocol helpers (s3_protocol.h:
// URLs, payload hashes, response parsing) and the curl batch engine
// (curl_batch.h: transfers, retries, the dead-link rule). See s3store.h for
// the URL form, the credentials model and the retry policy.
#include "store/s3store.h"

#include "store/curl_batch.h"
#include "store/s3_protocol.h"

#include <algorithm>
#include <limits>
#include <mutex>
#include <optional>
#include <utility>

namespace isr::store {

namespace {

using curl::Method;
using curl::Request;
using curl::Response;

// SHA-256 of the empty payload (GET, HEAD, DELETE).
constexpr const char* kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// One S3 call as the Store methods see it; runBatch() turns it into an HTTP
// request for the engine.
struct S3Request {
    Method method = Method::Get;
    std::string objectKey; // full key in the bucket; empty: the bucket itself
    std::vector<std::pair<std::string, std::string>> query;
    ByteView body;
    std::optional<std::pair<std::uint64_t, std::optional<std::uint64_t>>> range; // first, last
    bool ifNoneMatch = false;
    std::string ifMatch; // an unquoted ETag: Ceph 16 compares it unquoted
    std::size_t maxBody = std::numeric_limits<std::size_t>::max();
};

class S3Store final : public Store {
public:
    S3Store(s3::Endpoint endpoint, StoreOptions options)
        : endpoint_(std::move(endpoint)), options_(std::move(options)) {
        if (options_.useTls)
            endpoint_.tls = true;
        options_.maxInFlight = std::max(1, options_.maxInFlight);
        options_.maxRetries = std::max(0, options_.maxRetries);
        baseUrl_ = s3::baseUrl(endpoint_, options_.pathStyle);
        batch_.maxInFlight = options_.maxInFlight;
        batch_.maxRetries = options_.maxRetries;
        batch_.connectTimeoutMs = options_.connectTimeoutMs;
        batch_.stallTimeoutMs = options_.stallTimeoutMs;
        batch_.verifyTls = options_.verifyTls;
        batch_.caBundle = options_.caBundle;
        batch_.awsSigV4 = "aws:amz:" + options_.region + ":s3";
        readKey_ = curl::SigningKey::from(options_.readCredentials);
        std::string& readSecret = options_.readCredentials.secretKey;
        crypto::wipe(MutableByteView(reinterpret_cast<std::uint8_t*>(readSecret.data()),
                                     readSecret.capacity()));
        readSecret.clear();
        batch_.retryableAnswer = [](const Request& req, const Response& resp) {
            return s3::retryableAnswer(resp.status, req.method == Method::Put, asString(resp.body));
        };
    }

    std::string url() const override {
        std::string u = endpoint_.tls ? "s3s://" : "s3://";
        u += endpoint_.host;
        if (endpoint_.port)
            u += ":" + std::to_string(endpoint_.port);
        u += "/" + endpoint_.bucket;
        if (!endpoint_.prefix.empty())
            u += "/" + endpoint_.prefix;
        return u;
    }

    Result<Bytes> get(const std::string& key) override {
        ISR_TRY_STATUS(validateKey(key));
        S3Request req;
        req.objectKey = fullKey(key);
        req.maxBody = bodyLimit(key);
        Response resp = runOne(req);
        ISR_TRY_STATUS(check(req, resp, "get " + key));
        return std::move(resp.body);
    }

    Result<Bytes> getRange(const std::string& key, std::uint64_t offset,
                           std::uint64_t length) override {
        ISR_TRY_STATUS(validateKey(key));
        const std::string what = "get " + key;
        if (length == 0)
            return emptyRangeAt(key, offset, what);
        S3Request req;
        req.objectKey = fullKey(key);
        // A server that ignores Range sends the whole object: the limit of
        // its kind bounds that too.
        req.maxBody = bodyLimit(key);
        std::optional<std::uint64_t> last;
        if (length - 1 <= UINT64_MAX - offset - 1 && offset < UINT64_MAX)
            last = offset + length - 1;
        req.range = std::make_pair(offset, last);
        Response resp = runOne(req);
        // 416: the range starts at or past the end. At the end exactly is an
        // empty result (as for FileStore), past it is the caller's error.
        if (resp.curlCode == CURLE_OK && resp.status == 416)
            return emptyRangeAt(key, offset, what);
        ISR_TRY_STATUS(check(req, resp, what));
        if (resp.status == 200) {
            // The server ignored Range: cut the range out ourselves.
            Bytes& all = resp.body;
            if (offset > all.size())
                return Error(Errc::InvalidArgument, what + ": offset past the end");
            const std::uint64_t n = std::min<std::uint64_t>(length, all.size() - offset);
            return Bytes(all.begin() + std::ptrdiff_t(offset),
                         all.begin() + std::ptrdiff_t(offset + n));
        }
        if (resp.body.size() > length)
            return Error(Errc::Corrupt, what + ": server sent more than the range asked for");
        return std::move(resp.body);
    }

    Status put(const std::string& key, ByteView data) override {
        return putMany1(PutView{key, data, false});
    }

    Status putIfAbsent(const std::string& key, ByteView data) override {
        return putMany1(PutView{key, data, true});
    }

    Status remove(const std::string& key) override {
        ISR_TRY_STATUS(validateKey(key));
        S3Request req;
        req.method = Method::Delete;
        req.objectKey = fullKey(key);
        Response resp = runOne(req);
        if (resp.curlCode == CURLE_OK && resp.status == 404 &&
            s3::errorCode(asString(resp.body)) != "NoSuchBucket")
            return {};
        return check(req, resp, "remove " + key);
    }

    Result<TaggedObject> getTagged(const std::string& key) override {
        ISR_TRY_STATUS(validateKey(key));
        S3Request req;
        req.objectKey = fullKey(key);
        Response resp = runOne(req);
        ISR_TRY_STATUS(check(req, resp, "get " + key));
        if (resp.etag.empty())
            return Error(Errc::Corrupt, "get " + key + ": the answer has no ETag");
        return TaggedObject{std::move(resp.body), std::move(resp.etag)};
    }

    // PUT with If-Match: radosgw (Ceph 16, tried with curl) answers 412 to a
    // tag that does not match and to an object that is gone, and compares
    // the tag without its quotes (a quoted one never matches there).
    Result<std::string> putIfMatch(const std::string& key, ByteView data,
                                   const std::string& expectedTag) override {
        ISR_TRY_STATUS(validateKey(key));
        if (expectedTag.empty()) // matches no object
            return Error(Errc::Conflict, "put-if-match " + key + ": no tag to match");
        if (expectedTag.find_first_of("\"\r\n") != std::string::npos)
            return Error(Errc::InvalidArgument, "put-if-match " + key + ": bad tag");
        S3Request req;
        req.method = Method::Put;
        req.objectKey = fullKey(key);
        req.body = data;
        req.ifMatch = expectedTag;
        Response resp = runOne(req);
        const std::string what = "put-if-match " + key;
        if (resp.curlCode == CURLE_OK && (resp.status == 412 || resp.status == 404)) {
            // After a retry, 412 may mean our own earlier attempt landed
            // but its answer was lost. Same bytes there: it was us.
            if (resp.attempts > 1) {
                auto there = getTagged(key);
                if (there.ok() && there->data.size() == data.size() &&
                    std::equal(there->data.begin(), there->data.end(), data.begin()))
                    return std::move(there->tag);
            }
            return Error(Errc::Conflict, what + ": the object was changed or is gone");
        }
        ISR_TRY_STATUS(check(req, resp, what));
        if (!resp.etag.empty())
            return std::move(resp.etag);
        ISR_TRY_ASSIGN(TaggedObject now, getTagged(key));
        return std::move(now.tag);
    }

    Result<bool> exists(const std::string& key) override {
        ISR_TRY_STATUS(validateKey(key));
        S3Request req;
        req.method = Method::Head;
        req.objectKey = fullKey(key);
        Response resp = runOne(req);
        if (resp.curlCode == CURLE_OK && resp.status == 404)
            return false;
        ISR_TRY_STATUS(check(req, resp, "exists " + key));
        return true;
    }

    std::vector<Result<bool>> existsMany(const std::vector<std::string>& keys) override {
        std::vector<Result<bool>> out(keys.size(), Result<bool>(Error()));
        auto [reqs, slotOf] = requestsFor(keys, out, [&](const std::string& key) {
            S3Request req;
            req.method = Method::Head;
            req.objectKey = fullKey(key);
            return req;
        });
        std::vector<Response> resps = runBatch(reqs);
        for (std::size_t j = 0; j < reqs.size(); ++j) {
            const std::size_t i = slotOf[j];
            if (resps[j].curlCode == CURLE_OK && resps[j].status == 404) {
                out[i] = false;
                continue;
            }
            auto st = check(reqs[j], resps[j], "exists " + keys[i]);
            if (st.ok())
                out[i] = true;
            else
                out[i] = std::move(st).error();
        }
        return out;
    }

    Result<std::vector<ObjectInfo>> list(const std::string& prefix) override {
        ISR_TRY_STATUS(validatePrefix(prefix));
        const std::string storePrefix = endpoint_.prefix.empty() ? "" : endpoint_.prefix + "/";
        const std::string fullPrefix = storePrefix + prefix;
        std::vector<ObjectInfo> out;
        std::string token;
        for (int page = 0;; ++page) {
            S3Request req;
            req.query = {{"list-type", "2"}, {"max-keys", std::to_string(s3::kMaxKeysPerPage)}};
            req.maxBody = s3::kMaxListResponse;
            if (!fullPrefix.empty())
                req.query.emplace_back("prefix", fullPrefix);
            if (!token.empty())
                req.query.emplace_back("continuation-token", token);
            Response resp = runOne(req);
            ISR_TRY_STATUS(check(req, resp, "list " + prefix));
            ISR_TRY_ASSIGN(s3::ListPage listed, s3::parseListObjectsV2(asString(resp.body)));
            for (auto& info : listed.objects) {
                if (info.key.compare(0, fullPrefix.size(), fullPrefix) != 0)
                    return Error(Errc::Corrupt, "list " + prefix + ": server returned key \"" +
                                                    info.key + "\" outside the prefix");
                info.key.erase(0, storePrefix.size());
                out.push_back(std::move(info));
            }
            if (!listed.truncated)
                break;
            if (listed.nextToken == token)
                return Error(Errc::Corrupt, "list " + prefix + ": continuation token repeats");
            token = std::move(listed.nextToken);
        }
        std::sort(out.begin(), out.end(),
                  [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
        return out;
    }

    std::vector<Result<Bytes>> getMany(const std::vector<std::string>& keys) override {
        std::vector<Result<Bytes>> out(keys.size(), Result<Bytes>(Error()));
        auto [reqs, slotOf] = requestsFor(keys, out, [&](const std::string& key) {
            S3Request req;
            req.objectKey = fullKey(key);
            req.maxBody = bodyLimit(key);
            return req;
        });
        std::vector<Response> resps = runBatch(reqs);
        for (std::size_t j = 0; j < reqs.size(); ++j) {
            const std::size_t i = slotOf[j];
            auto st = check(reqs[j], resps[j], "get " + keys[i]);
            if (st.ok())
                out[i] = std::move(resps[j].body);
            else
                out[i] = std::move(st).error();
        }
        return out;
    }

    std::vector<Status> putMany(const std::vector<PutItem>& items) override {
        std::vector<PutView> views;
        views.reserve(items.size());
        for (const auto& item : items)
            views.push_back(PutView{item.key, item.data, item.ifAbsent});
        return putViews(views);
    }

    void setWriteCredentials(const Credentials& credentials) override {
        auto key = curl::SigningKey::from(credentials);
        std::lock_guard lock(credentialsMutex_);
        writeKey_ = std::move(key);
        haveWriteKey_ = true;
    }

private:
    struct PutView {
        const std::string& key;
        ByteView data;
        bool ifAbsent;
    };

    std::string fullKey(const std::string& key) const {
        return endpoint_.prefix.empty() ? key : endpoint_.prefix + "/" + key;
    }

    // The key of this moment, shared with the batches that sign with it
    // (no copy of the secret).
    std::shared_ptr<const curl::SigningKey> signingKey() const {
        std::lock_guard lock(credentialsMutex_);
        return haveWriteKey_ ? writeKey_ : readKey_;
    }

    // A batch's requests: one per valid key, made by `make`; an invalid
    // key's result is its error. Returns the requests and, for each, the
    // index of its key (its slot in `out`).
    template <class T, class Make>
    std::pair<std::vector<S3Request>, std::vector<std::size_t>>
    requestsFor(const std::vector<std::string>& keys, std::vector<Result<T>>& out, Make make) {
        std::vector<S3Request> reqs;
        std::vector<std::size_t> slotOf;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            auto valid = validateKey(keys[i]);
            if (!valid.ok()) {
                out[i] = valid.error();
                continue;
            }
            reqs.push_back(make(keys[i]));
            slotOf.push_back(i);
        }
        return {std::move(reqs), std::move(slotOf)};
    }

    Status putMany1(const PutView& view) {
        std::vector<PutView> views{view};
        return std::move(putViews(views).front());
    }

    std::vector<Status> putViews(const std::vector<PutView>& views) {
        std::vector<Status> out(views.size());
        std::vector<S3Request> reqs;
        std::vector<std::size_t> slotOf;
        for (std::size_t i = 0; i < views.size(); ++i) {
            auto valid = validateKey(views[i].key);
            if (!valid.ok()) {
                out[i] = valid;
                continue;
            }
            S3Request req;
            req.method = Method::Put;
            req.objectKey = fullKey(views[i].key);
            req.body = views[i].data;
            req.ifNoneMatch = views[i].ifAbsent;
            reqs.push_back(std::move(req));
            slotOf.push_back(i);
        }
        std::vector<Response> resps = runBatch(reqs);
        for (std::size_t j = 0; j < reqs.size(); ++j) {
            const std::size_t i = slotOf[j];
            const std::string what = "put " + views[i].key;
            Response& resp = resps[j];
            if (views[i].ifAbsent && resp.curlCode == CURLE_OK && resp.status == 412) {
                // After a retry, 412 may mean our own earlier attempt landed
                // but its answer was lost. Same bytes there: it was us.
                if (resp.attempts > 1 && sameContent(views[i].key, views[i].data)) {
                    out[i] = Status();
                    continue;
                }
                out[i] = Error(Errc::AlreadyExists, what + ": already exists");
                continue;
            }
            out[i] = check(reqs[j], resp, what);
        }
        return out;
    }

    bool sameContent(const std::string& key, ByteView data) {
        auto there = get(key);
        return there.ok() && there->size() == data.size() &&
               std::equal(there->begin(), there->end(), data.begin());
    }

    Result<Bytes> emptyRangeAt(const std::string& key, std::uint64_t offset,
                               const std::string& what) {
        S3Request head;
        head.method = Method::Head;
        head.objectKey = fullKey(key);
        Response resp = runOne(head);
        ISR_TRY_STATUS(check(head, resp, what));
        if (resp.contentLength < 0)
            return Error(Errc::Corrupt, what + ": HEAD response without Content-Length");
        const auto size = std::uint64_t(resp.contentLength);
        if (offset > size)
            return Error(Errc::InvalidArgument, what + ": offset " + std::to_string(offset) +
                                                    " past the end (" + std::to_string(size) + ")");
        return Bytes{};
    }

    // Maps a finished transfer to a Status. Retries are over by now.
    Status check(const S3Request& req, const Response& resp, const std::string& what) const {
        const std::string tries =
            resp.attempts > 1 ? " (after " + std::to_string(resp.attempts) + " attempts)" : "";
        if (resp.curlCode != CURLE_OK) {
            const std::string msg = what + ": " + curl_easy_strerror(resp.curlCode) +
                                    (resp.curlError.empty() ? "" : " (" + resp.curlError + ")") +
                                    tries;
            if (resp.tooLarge)
                return Error(Errc::Corrupt, what + ": the object is larger than the " +
                                                std::to_string(req.maxBody) +
                                                " bytes an object of its kind may have");
            if (curl::networkFailure(resp.curlCode))
                return Error(Errc::Transient, msg);
            if (resp.curlCode == CURLE_PEER_FAILED_VERIFICATION ||
                resp.curlCode == CURLE_SSL_CACERT_BADFILE)
                return Error(Errc::AccessDenied, msg + "; TLS certificate not trusted");
            return Error(Errc::Io, msg);
        }
        if (resp.status >= 200 && resp.status < 300)
            return {};
        const std::string code = s3::errorCode(asString(resp.body));
        const std::string msg = what + ": HTTP " + std::to_string(resp.status) +
                                (code.empty() ? "" : " " + code) + tries;
        switch (resp.status) {
        case 404:
            if (code == "NoSuchBucket")
                return Error(Errc::NotFound, what + ": bucket \"" + endpoint_.bucket +
                                                 "\" does not exist at " + baseUrl_);
            return Error(Errc::NotFound, msg);
        case 401:
        case 403:
            if (code == "AccessDenied" && (req.method == Method::Get || req.method == Method::Head))
                return Error(Errc::AccessDenied, msg + std::string(kDeniedOrMissing));
            return Error(Errc::AccessDenied, msg);
        case 412:
            return Error(Errc::AlreadyExists, msg);
        case 409:
            return Error(Errc::Conflict, msg);
        case 416:
            return Error(Errc::InvalidArgument, msg);
        default:
            break;
        }
        if (s3::retryableAnswer(resp.status, req.method == Method::Put, asString(resp.body)))
            return Error(Errc::Transient, msg);
        return Error(Errc::InvalidArgument, msg);
    }

    // store.h's one size table, as a body limit for the transfer engine.
    static std::size_t bodyLimit(const std::string& key) {
        return std::size_t(
            std::min<std::uint64_t>(maxObjectSize(key), std::numeric_limits<std::size_t>::max()));
    }

    Response runOne(const S3Request& req) {
        std::vector<S3Request> reqs{req};
        return std::move(runBatch(reqs).front());
    }

    // Builds the HTTP requests with the credentials of this moment (one set
    // for the whole batch) and runs them through the curl batch engine.
    std::vector<Response> runBatch(const std::vector<S3Request>& calls) {
        if (calls.empty())
            return {};
        const auto key = signingKey();
        std::vector<Request> reqs;
        reqs.reserve(calls.size());
        for (const S3Request& call : calls) {
            Request req;
            req.method = call.method;
            req.url = s3::requestUrl(endpoint_, options_.pathStyle, call.objectKey, call.query);
            req.what = call.objectKey;
            req.body = call.body;
            req.maxBody = call.maxBody;
            if (call.method == Method::Put)
                req.headers.push_back("Content-Type: application/octet-stream");
            if (key) {
                // curl 7.88 neither adds x-amz-content-sha256 nor hashes an
                // upload it streams; it signs the value of this header instead.
                req.headers.push_back("x-amz-content-sha256: " + (call.method == Method::Put
                                                                      ? s3::payloadHash(call.body)
                                                                      : std::string(kEmptySha256)));
            }
            if (call.range) {
                std::string range = "Range: bytes=" + std::to_string(call.range->first) + "-";
                if (call.range->second)
                    range += std::to_string(*call.range->second);
                req.headers.push_back(std::move(range));
            }
            if (call.ifNoneMatch)
                req.headers.push_back("If-None-Match: *");
            if (!call.ifMatch.empty())
                req.headers.push_back("If-Match: " + call.ifMatch);
            reqs.push_back(std::move(req));
        }
        // A share of its own for the run (CurlSharePool: curl's shared
        // connection cache is not thread-safe).
        auto lease = shares_.borrow();
        return curl::CurlBatch(batch_, lease.share(), key, reqs).run();
    }

    s3::Endpoint endpoint_;
    StoreOptions options_;
    std::string baseUrl_;
    curl::BatchOptions batch_;
    curl::CurlSharePool shares_;
    mutable std::mutex credentialsMutex_;
    // The secrets live here only, in locked memory: the read key from
    // StoreOptions (its string in options_ wiped by the constructor), the
    // user's write key.
    std::shared_ptr<const curl::SigningKey> readKey_;
    std::shared_ptr<const curl::SigningKey> writeKey_;
    bool haveWriteKey_ = false;
};

} // namespace

Result<std::unique_ptr<Store>> openS3Store(const std::string& url, const StoreOptions& options) {
    ISR_TRY_ASSIGN(s3::Endpoint endpoint, s3::parseUrl(url));
    if (options.region.empty() || options.region.find(':') != std::string::npos)
        return Error(Errc::InvalidArgument, "S3 region \"" + options.region + "\" is invalid");
    if (!options.pathStyle && endpoint.bucket.find('.') != std::string::npos && endpoint.tls)
        return Error(Errc::InvalidArgument,
                     "virtual-host addressing with a dotted bucket name breaks TLS "
                     "certificate checks; use path-style");
    return std::unique_ptr<Store>(new S3Store(std::move(endpoint), options));
}

} // namespace isr::store
