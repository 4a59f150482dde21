// S3Store: see s3store.h for the URL form, the credentials model and the
// retry policy. This file has three parts: the canonicalisation and XML
// helpers (namespace s3), the transfer engine (a batch of requests run through
// one curl multi handle with retries), and the Store methods on top of it.
#include "store/s3store.h"

#include "util/log.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstring>
#include <ctime>
#include <curl/curl.h>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <sodium.h>
#include <thread>

namespace isr::store {

namespace s3 {

namespace {
bool unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

bool bucketChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

// Finds <name>...</name> (or <name/>) at or after `from`. Returns the content
// range; npos if absent.
struct Element {
    std::size_t contentBegin = std::string_view::npos;
    std::size_t contentEnd = 0;
    std::size_t after = 0;
};
Element findElement(std::string_view xml, std::string_view name, std::size_t from = 0,
                    std::size_t limit = std::string_view::npos) {
    Element none;
    if (limit == std::string_view::npos)
        limit = xml.size();
    const std::string open = "<" + std::string(name);
    std::size_t pos = from;
    while (true) {
        pos = xml.find(open, pos);
        if (pos == std::string_view::npos || pos >= limit)
            return none;
        const std::size_t tagEnd = pos + open.size();
        if (tagEnd >= xml.size())
            return none;
        const char next = xml[tagEnd];
        if (next == '>' || next == ' ' || next == '/')
            break;
        pos = tagEnd; // a longer name with this prefix (<KeyCount> for <Key>)
    }
    const std::size_t gt = xml.find('>', pos);
    if (gt == std::string_view::npos || gt >= limit)
        return none;
    if (xml[gt - 1] == '/') // <Name/>
        return Element{gt + 1, gt + 1, gt + 1};
    const std::string close = "</" + std::string(name) + ">";
    const std::size_t end = xml.find(close, gt + 1);
    if (end == std::string_view::npos || end + close.size() > limit)
        return none;
    return Element{gt + 1, end, end + close.size()};
}

void appendUtf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

Result<std::uint64_t> parseU64(std::string_view text, std::string_view what) {
    if (text.empty() || text.size() > 20)
        return Error(Errc::Corrupt, "S3 listing: bad " + std::string(what));
    std::uint64_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9')
            return Error(Errc::Corrupt, "S3 listing: bad " + std::string(what));
        const std::uint64_t next = v * 10 + std::uint64_t(c - '0');
        if (next / 10 != v)
            return Error(Errc::Corrupt, "S3 listing: " + std::string(what) + " overflows");
        v = next;
    }
    return v;
}
} // namespace

Result<Endpoint> parseUrl(std::string_view url) {
    auto bad = [&](const std::string& why) {
        return Error(Errc::InvalidArgument, "S3 store URL \"" + std::string(url) + "\": " + why);
    };
    Endpoint ep;
    std::string_view rest;
    if (url.rfind("s3://", 0) == 0) {
        rest = url.substr(5);
    } else if (url.rfind("s3s://", 0) == 0) {
        ep.tls = true;
        rest = url.substr(6);
    } else {
        return bad("expected s3://host[:port]/bucket[/prefix] or s3s://...");
    }
    if (rest.find_first_of("?#") != std::string_view::npos)
        return bad("no query or fragment allowed");
    const std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos)
        return bad("no bucket");
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = rest.substr(slash + 1);
    if (authority.find('@') != std::string_view::npos)
        return bad("credentials do not belong in the URL (use StoreOptions)");
    if (authority.empty())
        return bad("no host");
    std::string_view portText;
    if (authority.front() == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos)
            return bad("unterminated IPv6 literal");
        ep.host = std::string(authority.substr(0, close + 1));
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':')
                return bad("junk after IPv6 literal");
            portText = after.substr(1);
        }
    } else {
        const std::size_t colon = authority.rfind(':');
        if (colon != std::string_view::npos) {
            ep.host = std::string(authority.substr(0, colon));
            portText = authority.substr(colon + 1);
        } else {
            ep.host = std::string(authority);
        }
        for (char c : ep.host)
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-'))
                return bad("bad host name");
    }
    if (ep.host.empty())
        return bad("no host");
    if (!portText.empty() || authority.back() == ':') {
        if (portText.empty() || portText.size() > 5)
            return bad("bad port");
        int port = 0;
        for (char c : portText) {
            if (c < '0' || c > '9')
                return bad("bad port");
            port = port * 10 + (c - '0');
        }
        if (port < 1 || port > 65535)
            return bad("port out of range");
        ep.port = port;
    }
    const std::size_t bucketEnd = path.find('/');
    std::string_view bucket = path.substr(0, bucketEnd);
    if (bucket.empty())
        return bad("no bucket");
    if (bucket.size() > 255 || !std::all_of(bucket.begin(), bucket.end(), bucketChar))
        return bad("bad bucket name");
    ep.bucket = std::string(bucket);
    if (bucketEnd != std::string_view::npos) {
        std::string prefix(path.substr(bucketEnd + 1));
        while (!prefix.empty() && prefix.back() == '/')
            prefix.pop_back();
        if (!prefix.empty()) {
            auto valid = validateKey(prefix);
            if (!valid.ok())
                return bad("bad prefix: " + valid.error().message);
        }
        ep.prefix = std::move(prefix);
    }
    return ep;
}

std::string uriEncode(std::string_view text, bool keepSlash) {
    static const char* hexDigits = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (unsigned char c : text) {
        if (unreserved(c) || (keepSlash && c == '/')) {
            out += char(c);
        } else {
            out += '%';
            out += hexDigits[c >> 4];
            out += hexDigits[c & 15];
        }
    }
    return out;
}

std::string canonicalQuery(std::vector<std::pair<std::string, std::string>> params) {
    for (auto& [name, value] : params) {
        name = uriEncode(name, false);
        value = uriEncode(value, false);
    }
    std::sort(params.begin(), params.end());
    std::string out;
    for (const auto& [name, value] : params) {
        if (!out.empty())
            out += '&';
        out += name;
        out += '=';
        out += value;
    }
    return out;
}

Result<std::string> xmlDecode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '&') {
            out += text[i];
            continue;
        }
        const std::size_t semi = text.find(';', i);
        if (semi == std::string_view::npos || semi - i > 12)
            return Error(Errc::Corrupt, "XML: unterminated entity");
        std::string_view entity = text.substr(i + 1, semi - i - 1);
        if (entity == "amp")
            out += '&';
        else if (entity == "lt")
            out += '<';
        else if (entity == "gt")
            out += '>';
        else if (entity == "quot")
            out += '"';
        else if (entity == "apos")
            out += '\'';
        else if (entity.size() >= 2 && entity[0] == '#') {
            const bool hexForm = entity[1] == 'x' || entity[1] == 'X';
            std::string_view digits = entity.substr(hexForm ? 2 : 1);
            if (digits.empty())
                return Error(Errc::Corrupt, "XML: empty character reference");
            std::uint32_t cp = 0;
            for (char c : digits) {
                int d;
                if (c >= '0' && c <= '9')
                    d = c - '0';
                else if (hexForm && c >= 'a' && c <= 'f')
                    d = c - 'a' + 10;
                else if (hexForm && c >= 'A' && c <= 'F')
                    d = c - 'A' + 10;
                else
                    return Error(Errc::Corrupt, "XML: bad character reference");
                cp = cp * (hexForm ? 16 : 10) + std::uint32_t(d);
                if (cp > 0x10FFFF)
                    return Error(Errc::Corrupt, "XML: character reference out of range");
            }
            if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
                return Error(Errc::Corrupt, "XML: invalid character reference");
            appendUtf8(out, cp);
        } else {
            return Error(Errc::Corrupt, "XML: unknown entity &" + std::string(entity) + ";");
        }
        i = semi;
    }
    return out;
}

Result<std::int64_t> parseIsoTime(std::string_view text) {
    // YYYY-MM-DDTHH:MM:SS[.fff]Z
    int year, mon, day, hour, min, sec;
    char tail = 0;
    const std::string s(text);
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &year, &mon, &day, &hour, &min, &sec,
                    &tail) < 6 ||
        (tail != 0 && tail != '.' && tail != 'Z') || mon < 1 || mon > 12 || day < 1 || day > 31 ||
        hour > 23 || min > 59 || sec > 60)
        return Error(Errc::Corrupt, "S3 listing: bad time \"" + s + "\"");
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    return std::int64_t(timegm(&tm));
}

Result<ListPage> parseListObjectsV2(std::string_view xml) {
    const std::size_t root = xml.find("<ListBucketResult");
    if (root == std::string_view::npos)
        return Error(Errc::Corrupt, "S3 listing: not a ListBucketResult");
    if (xml.find("</ListBucketResult>", root) == std::string_view::npos)
        return Error(Errc::Corrupt, "S3 listing: truncated document");
    ListPage page;
    // Element text never holds a raw '<' (it is escaped), so searching for a
    // tag can never match inside a key.
    std::size_t pos = root;
    while (true) {
        Element contents = findElement(xml, "Contents", pos);
        if (contents.contentBegin == std::string_view::npos) {
            if (xml.find("<Contents>", pos) != std::string_view::npos)
                return Error(Errc::Corrupt, "S3 listing: unterminated <Contents>");
            break;
        }
        ObjectInfo info;
        Element key = findElement(xml, "Key", contents.contentBegin, contents.contentEnd);
        Element size = findElement(xml, "Size", contents.contentBegin, contents.contentEnd);
        if (key.contentBegin == std::string_view::npos ||
            size.contentBegin == std::string_view::npos)
            return Error(Errc::Corrupt, "S3 listing: <Contents> without <Key> or <Size>");
        ISR_TRY_ASSIGN(info.key,
                       xmlDecode(xml.substr(key.contentBegin, key.contentEnd - key.contentBegin)));
        if (info.key.empty())
            return Error(Errc::Corrupt, "S3 listing: empty <Key>");
        ISR_TRY_ASSIGN(
            info.size,
            parseU64(xml.substr(size.contentBegin, size.contentEnd - size.contentBegin), "Size"));
        Element modified =
            findElement(xml, "LastModified", contents.contentBegin, contents.contentEnd);
        if (modified.contentBegin != std::string_view::npos) {
            ISR_TRY_ASSIGN(info.modified,
                           parseIsoTime(xml.substr(modified.contentBegin,
                                                   modified.contentEnd - modified.contentBegin)));
        }
        page.objects.push_back(std::move(info));
        pos = contents.after;
    }
    Element truncated = findElement(xml, "IsTruncated", root);
    if (truncated.contentBegin == std::string_view::npos)
        return Error(Errc::Corrupt, "S3 listing: no <IsTruncated>");
    std::string_view flag =
        xml.substr(truncated.contentBegin, truncated.contentEnd - truncated.contentBegin);
    if (flag == "true")
        page.truncated = true;
    else if (flag != "false")
        return Error(Errc::Corrupt, "S3 listing: bad <IsTruncated>");
    if (page.truncated) {
        Element token = findElement(xml, "NextContinuationToken", root);
        if (token.contentBegin == std::string_view::npos)
            return Error(Errc::Corrupt, "S3 listing: truncated without <NextContinuationToken>");
        ISR_TRY_ASSIGN(
            page.nextToken,
            xmlDecode(xml.substr(token.contentBegin, token.contentEnd - token.contentBegin)));
        if (page.nextToken.empty())
            return Error(Errc::Corrupt, "S3 listing: empty <NextContinuationToken>");
    }
    return page;
}

std::string errorCode(std::string_view xml) {
    Element code = findElement(xml, "Code");
    if (code.contentBegin == std::string_view::npos)
        return {};
    auto decoded = xmlDecode(xml.substr(code.contentBegin, code.contentEnd - code.contentBegin));
    return decoded.ok() ? *decoded : std::string();
}

} // namespace s3

namespace {

constexpr const char* kLog = "store";
// SHA-256 of the empty payload (GET, HEAD, DELETE).
constexpr const char* kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

void initCurlOnce() {
    static std::once_flag once;
    std::call_once(once, [] {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        if (sodium_init() < 0) {
            ISR_LOG_ERROR(kLog) << "sodium_init failed";
        }
    });
}

std::string sha256Hex(ByteView data) {
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, data.data(), data.size());
    return toHex(ByteView(digest, sizeof digest));
}

// One connection cache, DNS cache and TLS session cache for every transfer
// of a store, across threads.
class SharedCache {
public:
    SharedCache() {
        share_ = curl_share_init();
        curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &SharedCache::lock);
        curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &SharedCache::unlock);
        curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
        curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
        curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }
    ~SharedCache() { curl_share_cleanup(share_); }
    SharedCache(const SharedCache&) = delete;
    SharedCache& operator=(const SharedCache&) = delete;
    CURLSH* handle() const { return share_; }

private:
    static void lock(CURL*, curl_lock_data data, curl_lock_access, void* self) {
        static_cast<SharedCache*>(self)->mutexes_[index(data)].lock();
    }
    static void unlock(CURL*, curl_lock_data data, void* self) {
        static_cast<SharedCache*>(self)->mutexes_[index(data)].unlock();
    }
    static std::size_t index(curl_lock_data data) {
        const auto i = static_cast<std::size_t>(data);
        return i < kLocks ? i : 0;
    }
    static constexpr std::size_t kLocks = CURL_LOCK_DATA_LAST;
    CURLSH* share_ = nullptr;
    std::mutex mutexes_[kLocks];
};

struct CurlEasyDeleter {
    void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
struct CurlMultiDeleter {
    void operator()(CURLM* h) const { curl_multi_cleanup(h); }
};
struct SlistDeleter {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using EasyHandle = std::unique_ptr<CURL, CurlEasyDeleter>;
using MultiHandle = std::unique_ptr<CURLM, CurlMultiDeleter>;
using HeaderList = std::unique_ptr<curl_slist, SlistDeleter>;

enum class Method { Get, Head, Put, Delete };

struct Request {
    Method method = Method::Get;
    std::string objectKey; // full key in the bucket; empty: the bucket itself
    std::vector<std::pair<std::string, std::string>> query;
    ByteView body;
    std::optional<std::pair<std::uint64_t, std::optional<std::uint64_t>>> range; // first, last
    bool ifNoneMatch = false;
};

struct Response {
    long status = 0;
    CURLcode curlCode = CURLE_OK;
    std::string curlError;
    Bytes body;
    std::int64_t contentLength = -1; // HEAD only
    int attempts = 0;
};

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

bool retryableCurlCode(CURLcode code) {
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

bool retryable(const Request& req, const Response& resp) {
    if (resp.curlCode != CURLE_OK)
        return retryableCurlCode(resp.curlCode);
    if (resp.status >= 500)
        return true; // includes 503 SlowDown
    // A conditional PUT racing another one on the same key (AWS:
    // ConditionalRequestConflict). Retrying settles which one won.
    if (resp.status == 409 && req.method == Method::Put)
        return true;
    // S3 answers 400 RequestTimeout when our upload went idle (a stall on
    // our side of the connection): a network failure in a 4xx's clothing.
    if (resp.status == 400 && s3::errorCode(asString(resp.body)) == "RequestTimeout")
        return true;
    return false;
}

class S3Store final : public Store {
public:
    S3Store(s3::Endpoint endpoint, StoreOptions options)
        : endpoint_(std::move(endpoint)), options_(std::move(options)) {
        if (options_.useTls)
            endpoint_.tls = true;
        options_.maxInFlight = std::max(1, options_.maxInFlight);
        options_.maxRetries = std::max(0, options_.maxRetries);
        std::string base = endpoint_.tls ? "https://" : "http://";
        if (!options_.pathStyle)
            base += endpoint_.bucket + ".";
        base += endpoint_.host;
        if (endpoint_.port)
            base += ":" + std::to_string(endpoint_.port);
        baseUrl_ = base;
        signSpec_ = "aws:amz:" + options_.region + ":s3";
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
        Request req;
        req.objectKey = fullKey(key);
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
        Request req;
        req.objectKey = fullKey(key);
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
        Request req;
        req.method = Method::Delete;
        req.objectKey = fullKey(key);
        Response resp = runOne(req);
        if (resp.curlCode == CURLE_OK && resp.status == 404 &&
            s3::errorCode(asString(resp.body)) != "NoSuchBucket")
            return {};
        return check(req, resp, "remove " + key);
    }

    Result<bool> exists(const std::string& key) override {
        ISR_TRY_STATUS(validateKey(key));
        Request req;
        req.method = Method::Head;
        req.objectKey = fullKey(key);
        Response resp = runOne(req);
        if (resp.curlCode == CURLE_OK && resp.status == 404)
            return false;
        ISR_TRY_STATUS(check(req, resp, "exists " + key));
        return true;
    }

    Result<std::vector<ObjectInfo>> list(const std::string& prefix) override {
        ISR_TRY_STATUS(validatePrefix(prefix));
        const std::string storePrefix = endpoint_.prefix.empty() ? "" : endpoint_.prefix + "/";
        const std::string fullPrefix = storePrefix + prefix;
        std::vector<ObjectInfo> out;
        std::string token;
        for (int page = 0;; ++page) {
            Request req;
            req.query = {{"list-type", "2"}};
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
        std::vector<Request> reqs;
        std::vector<std::size_t> slotOf;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            auto valid = validateKey(keys[i]);
            if (!valid.ok()) {
                out[i] = valid.error();
                continue;
            }
            Request req;
            req.objectKey = fullKey(keys[i]);
            reqs.push_back(std::move(req));
            slotOf.push_back(i);
        }
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
        std::lock_guard lock(credentialsMutex_);
        writeCredentials_ = credentials;
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

    Credentials credentials() const {
        std::lock_guard lock(credentialsMutex_);
        if (writeCredentials_)
            return *writeCredentials_;
        return options_.readCredentials;
    }

    Status putMany1(const PutView& view) {
        std::vector<PutView> views{view};
        return std::move(putViews(views).front());
    }

    std::vector<Status> putViews(const std::vector<PutView>& views) {
        std::vector<Status> out(views.size());
        std::vector<Request> reqs;
        std::vector<std::size_t> slotOf;
        for (std::size_t i = 0; i < views.size(); ++i) {
            auto valid = validateKey(views[i].key);
            if (!valid.ok()) {
                out[i] = valid;
                continue;
            }
            Request req;
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
        Request head;
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
    Status check(const Request& req, const Response& resp, const std::string& what) const {
        const std::string tries =
            resp.attempts > 1 ? " (after " + std::to_string(resp.attempts) + " attempts)" : "";
        if (resp.curlCode != CURLE_OK) {
            const std::string msg = what + ": " + curl_easy_strerror(resp.curlCode) +
                                    (resp.curlError.empty() ? "" : " (" + resp.curlError + ")") +
                                    tries;
            if (retryableCurlCode(resp.curlCode))
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
        if (retryable(req, resp))
            return Error(Errc::Transient, msg);
        return Error(Errc::InvalidArgument, msg);
    }

    Response runOne(const Request& req) {
        std::vector<Request> reqs{req};
        return std::move(runBatch(reqs).front());
    }

    // --- the transfer engine -------------------------------------------------

    struct Transfer {
        const Request* req = nullptr;
        Response* resp = nullptr;
        EasyHandle easy;
        HeaderList headers;
        std::size_t uploaded = 0;
        char errorBuffer[CURL_ERROR_SIZE] = {};
        // Stall detection (see onProgress).
        std::chrono::steady_clock::time_point lastProgress;
        curl_off_t lastDown = -1, lastUp = -1;
        long stallMs = 0;
        bool stalled = false;
    };

    // curl's own LOW_SPEED check averages the rate over the last ~5 s, so a
    // transfer that was moving fast before the server froze is only caught
    // 5 s late. Here "stalled" means no byte moved either way for stallMs.
    static int onProgress(void* self, curl_off_t, curl_off_t downNow, curl_off_t,
                          curl_off_t upNow) {
        auto* t = static_cast<Transfer*>(self);
        const auto now = std::chrono::steady_clock::now();
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

    static std::size_t onWrite(char* data, std::size_t size, std::size_t n, void* self) {
        auto* t = static_cast<Transfer*>(self);
        t->resp->body.insert(t->resp->body.end(), data, data + size * n);
        return size * n;
    }

    static std::size_t onRead(char* buffer, std::size_t size, std::size_t n, void* self) {
        auto* t = static_cast<Transfer*>(self);
        const ByteView body = t->req->body;
        const std::size_t count = std::min(size * n, body.size() - t->uploaded);
        std::memcpy(buffer, body.data() + t->uploaded, count);
        t->uploaded += count;
        return count;
    }

    static int onSeek(void* self, curl_off_t offset, int origin) {
        auto* t = static_cast<Transfer*>(self);
        if (origin != SEEK_SET || offset < 0 || std::size_t(offset) > t->req->body.size())
            return CURL_SEEKFUNC_FAIL;
        t->uploaded = std::size_t(offset);
        return CURL_SEEKFUNC_OK;
    }

    std::string requestUrl(const Request& req) const {
        std::string path = "/";
        if (options_.pathStyle) {
            path += s3::uriEncode(endpoint_.bucket, false);
            if (!req.objectKey.empty())
                path += "/";
        }
        path += s3::uriEncode(req.objectKey, true);
        std::string u = baseUrl_ + path;
        if (!req.query.empty())
            u += "?" + s3::canonicalQuery(req.query);
        return u;
    }

    void setup(Transfer& t, const Credentials& creds) {
        initCurlOnce();
        t.easy.reset(curl_easy_init());
        CURL* h = t.easy.get();
        t.resp->body.clear();
        t.uploaded = 0;
        t.errorBuffer[0] = 0;
        t.lastProgress = std::chrono::steady_clock::now();
        t.lastDown = t.lastUp = -1;
        t.stallMs = std::max(1, options_.stallTimeoutMs);
        t.stalled = false;
        const std::string url = requestUrl(*t.req);
        curl_easy_setopt(h, CURLOPT_URL, url.c_str());
        curl_easy_setopt(h, CURLOPT_SHARE, shared_.handle());
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
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &S3Store::onProgress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &S3Store::onWrite);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
        if (endpoint_.tls) {
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, options_.verifyTls ? 1L : 0L);
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, options_.verifyTls ? 2L : 0L);
            if (!options_.caBundle.empty())
                curl_easy_setopt(h, CURLOPT_CAINFO, options_.caBundle.c_str());
        }

        std::vector<std::string> headers;
        switch (t.req->method) {
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
            curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(t.req->body.size()));
            curl_easy_setopt(h, CURLOPT_READFUNCTION, &S3Store::onRead);
            curl_easy_setopt(h, CURLOPT_READDATA, &t);
            curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, &S3Store::onSeek);
            curl_easy_setopt(h, CURLOPT_SEEKDATA, &t);
            headers.push_back("Content-Type: application/octet-stream");
            break;
        }
        if (!creds.accessKey.empty()) {
            // curl 7.88 neither adds x-amz-content-sha256 nor hashes an
            // upload it streams; it signs the value of this header instead.
            headers.push_back("x-amz-content-sha256: " + (t.req->method == Method::Put
                                                              ? sha256Hex(t.req->body)
                                                              : std::string(kEmptySha256)));
            curl_easy_setopt(h, CURLOPT_AWS_SIGV4, signSpec_.c_str());
            curl_easy_setopt(h, CURLOPT_USERNAME, creds.accessKey.c_str());
            curl_easy_setopt(h, CURLOPT_PASSWORD, creds.secretKey.c_str());
        }
        if (t.req->range) {
            std::string range = "Range: bytes=" + std::to_string(t.req->range->first) + "-";
            if (t.req->range->second)
                range += std::to_string(*t.req->range->second);
            headers.push_back(std::move(range));
        }
        if (t.req->ifNoneMatch)
            headers.push_back("If-None-Match: *");
        curl_slist* list = nullptr;
        for (const auto& line : headers)
            list = curl_slist_append(list, line.c_str());
        t.headers.reset(list);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    }

    std::chrono::milliseconds backoff(int attempt) {
        // Full jitter over an exponentially growing window (100 ms, 200 ms,
        // ... capped at 5 s): many clients retrying after one hiccup spread out.
        const long window = std::min<long>(5000, 100L << std::min(attempt, 10));
        thread_local std::mt19937 rng{std::random_device{}()};
        std::uniform_int_distribution<long> pick(window / 2, window);
        return std::chrono::milliseconds(pick(rng));
    }

    std::vector<Response> runBatch(const std::vector<Request>& reqs) {
        using Clock = std::chrono::steady_clock;
        std::vector<Response> resps(reqs.size());
        if (reqs.empty())
            return resps;
        initCurlOnce();
        const Credentials creds = credentials();
        MultiHandle multi(curl_multi_init());
        std::vector<std::unique_ptr<Transfer>> transfers(reqs.size());
        std::deque<std::size_t> ready;
        for (std::size_t i = 0; i < reqs.size(); ++i)
            ready.push_back(i);
        std::vector<std::pair<Clock::time_point, std::size_t>> delayed;
        std::size_t inFlight = 0, done = 0;
        // Once one request has used up its retries on a network failure the
        // store is unreachable: what is still queued fails at once, and what
        // is in flight is not retried again. Otherwise every request would
        // spend a whole retry budget of its own, maxInFlight at a time, and
        // a batch of hundreds (a memory image) would take many minutes to
        // report a dead link.
        bool unreachable = false;

        auto start = [&](std::size_t i) {
            if (!transfers[i]) {
                transfers[i] = std::make_unique<Transfer>();
                transfers[i]->req = &reqs[i];
                transfers[i]->resp = &resps[i];
            }
            Transfer& t = *transfers[i];
            setup(t, creds);
            resps[i].attempts++;
            curl_easy_setopt(t.easy.get(), CURLOPT_PRIVATE, reinterpret_cast<void*>(i));
            curl_multi_add_handle(multi.get(), t.easy.get());
            ++inFlight;
        };

        while (done < reqs.size()) {
            const auto now = Clock::now();
            for (auto it = delayed.begin(); it != delayed.end();) {
                if (it->first <= now) {
                    // A retry goes before requests not yet tried: a dead link
                    // then exhausts one request's retries first (and fails
                    // the batch, see `unreachable`) instead of trying every
                    // request of the batch once before any gives up.
                    ready.push_front(it->second);
                    it = delayed.erase(it);
                } else {
                    ++it;
                }
            }
            while (inFlight < std::size_t(options_.maxInFlight) && !ready.empty()) {
                start(ready.front());
                ready.pop_front();
            }
            int running = 0;
            curl_multi_perform(multi.get(), &running);
            int queued = 0;
            while (CURLMsg* msg = curl_multi_info_read(multi.get(), &queued)) {
                if (msg->msg != CURLMSG_DONE)
                    continue;
                CURL* easy = msg->easy_handle;
                const CURLcode code = msg->data.result;
                void* priv = nullptr;
                curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
                const auto i = reinterpret_cast<std::size_t>(priv);
                Response& resp = resps[i];
                resp.curlCode = code;
                resp.curlError = transfers[i]->errorBuffer;
                if (code == CURLE_ABORTED_BY_CALLBACK && transfers[i]->stalled) {
                    resp.curlCode = CURLE_OPERATION_TIMEDOUT;
                    resp.curlError =
                        "no data moved for " + std::to_string(transfers[i]->stallMs) + " ms";
                }
                resp.status = 0;
                curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &resp.status);
                if (reqs[i].method == Method::Head && code == CURLE_OK) {
                    curl_off_t length = -1;
                    curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
                    resp.contentLength = length;
                }
                curl_multi_remove_handle(multi.get(), easy);
                transfers[i]->easy.reset();
                transfers[i]->headers.reset();
                --inFlight;
                if (!unreachable && retryable(reqs[i], resp) &&
                    resp.attempts <= options_.maxRetries) {
                    const auto wait = backoff(resp.attempts - 1);
                    ISR_LOG_WARN(kLog)
                        << methodName(reqs[i].method) << " " << reqs[i].objectKey << ": "
                        << (resp.curlCode != CURLE_OK
                                ? std::string(curl_easy_strerror(resp.curlCode))
                                : "HTTP " + std::to_string(resp.status))
                        << "; retry " << resp.attempts << "/" << options_.maxRetries << " in "
                        << wait.count() << " ms";
                    delayed.emplace_back(Clock::now() + wait, i);
                } else {
                    ++done;
                    if (!unreachable && resp.curlCode != CURLE_OK &&
                        retryableCurlCode(resp.curlCode)) {
                        unreachable = true;
                        std::vector<std::size_t> waiting(ready.begin(), ready.end());
                        for (const auto& d : delayed)
                            waiting.push_back(d.second);
                        ready.clear();
                        delayed.clear();
                        for (std::size_t j : waiting) {
                            resps[j].curlCode = resp.curlCode;
                            resps[j].curlError = "gave up: the store is unreachable (" +
                                                 std::string(curl_easy_strerror(resp.curlCode)) +
                                                 " after " + std::to_string(resp.attempts) +
                                                 " attempts on " + reqs[i].objectKey + ")";
                            ++done;
                        }
                    }
                }
            }
            if (done == reqs.size())
                break;
            int timeoutMs = 1000;
            if (!delayed.empty()) {
                auto next = std::min_element(delayed.begin(), delayed.end())->first;
                const auto wait =
                    std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
                timeoutMs = int(std::clamp<long>(long(wait.count()), 0, 1000));
            }
            if (inFlight > 0)
                curl_multi_poll(multi.get(), nullptr, 0, timeoutMs, nullptr);
            else if (timeoutMs > 0 && ready.empty())
                std::this_thread::sleep_for(std::chrono::milliseconds(timeoutMs));
        }
        return resps;
    }

    s3::Endpoint endpoint_;
    StoreOptions options_;
    std::string baseUrl_;
    std::string signSpec_;
    SharedCache shared_;
    mutable std::mutex credentialsMutex_;
    std::optional<Credentials> writeCredentials_;
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
    initCurlOnce();
    return std::unique_ptr<Store>(new S3Store(std::move(endpoint), options));
}

} // namespace isr::store
