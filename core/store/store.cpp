// Backend-independent parts of core/store: key validation, default batches,
// and the URL dispatch.
#include "store/store.h"

#include "crypto/crypto.h"
#include "store/filestore.h"
#include "store/s3store.h"

namespace isr::store {

Credentials::~Credentials() {
    crypto::wipe(
        MutableByteView(reinterpret_cast<std::uint8_t*>(secretKey.data()), secretKey.capacity()));
}

namespace {
constexpr std::size_t kMaxKeySize = 1024;

bool keyChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '/';
}

Error badKey(std::string_view key, const std::string& why) {
    std::string shown;
    for (char c : key.substr(0, 80)) {
        if (keyChar(c))
            shown += c;
        else
            shown += "\\x" + toHex(ByteView(reinterpret_cast<const std::uint8_t*>(&c), 1));
    }
    return Error(Errc::InvalidArgument, "invalid store key \"" + shown + "\": " + why);
}
} // namespace

Status validateKey(std::string_view key) {
    if (key.empty())
        return badKey(key, "empty");
    if (key.size() > kMaxKeySize)
        return badKey(key, "longer than " + std::to_string(kMaxKeySize) + " bytes");
    for (char c : key)
        if (!keyChar(c))
            return badKey(key, "only ASCII letters, digits and \"._-/\" are allowed");
    if (key.front() == '/' || key.back() == '/')
        return badKey(key, "leading or trailing \"/\"");
    std::size_t start = 0;
    while (start <= key.size()) {
        std::size_t end = key.find('/', start);
        if (end == std::string_view::npos)
            end = key.size();
        std::string_view segment = key.substr(start, end - start);
        if (segment.empty())
            return badKey(key, "empty path segment");
        if (segment == "." || segment == "..")
            return badKey(key, "\".\" or \"..\" segment");
        start = end + 1;
    }
    return {};
}

Status validatePrefix(std::string_view prefix) {
    if (prefix.empty())
        return {};
    std::string_view trimmed = prefix;
    while (!trimmed.empty() && trimmed.back() == '/')
        trimmed.remove_suffix(1);
    if (trimmed.empty())
        return Error(Errc::InvalidArgument,
                     "list prefix \"" + std::string(prefix) + "\" is invalid");
    return validateKey(trimmed);
}

std::uint64_t maxObjectSize(std::string_view key) {
    if (key == "isr-store.json")
        return 64u << 10;
    std::vector<std::string_view> seg;
    for (std::size_t start = 0; start <= key.size();) {
        std::size_t end = key.find('/', start);
        if (end == std::string_view::npos)
            end = key.size();
        seg.push_back(key.substr(start, end - start));
        start = end + 1;
    }
    if (seg.size() < 3 || seg[0] != "users")
        return UINT64_MAX;
    if (seg.size() == 3 && seg[2] == "account")
        return 64u << 10;
    if (seg.size() == 5 && seg[2] == "chunks")
        return kMaxChunkObjectSize;
    if (seg.size() == 5 && seg[2] == "parcels" && seg[4] == "head")
        return 4u << 10;
    if (seg.size() == 5 && seg[2] == "parcels" && seg[4] == "lock")
        return 64u << 10;
    // A reference list is smaller than its sealed manifest (32 bytes a
    // chunk against 69): the same bound.
    if (seg.size() == 6 && seg[2] == "parcels" && (seg[4] == "versions" || seg[4] == "refs"))
        return 512ull << 20;
    return UINT64_MAX;
}

Status checkObjectSize(std::string_view key, std::uint64_t size) {
    const std::uint64_t limit = maxObjectSize(key);
    if (size <= limit)
        return {};
    return Error(Errc::Corrupt, "object " + std::string(key) + " is " + std::to_string(size) +
                                    " bytes, more than the " + std::to_string(limit) +
                                    " an object of its kind may have");
}

std::vector<Result<Bytes>> Store::getMany(const std::vector<std::string>& keys) {
    std::vector<Result<Bytes>> out;
    out.reserve(keys.size());
    for (const auto& key : keys)
        out.push_back(get(key));
    return out;
}

std::vector<Result<bool>> Store::existsMany(const std::vector<std::string>& keys) {
    std::vector<Result<bool>> out;
    out.reserve(keys.size());
    for (const auto& key : keys)
        out.push_back(exists(key));
    return out;
}

std::vector<Status> Store::putMany(const std::vector<PutItem>& items) {
    std::vector<Status> out;
    out.reserve(items.size());
    for (const auto& item : items)
        out.push_back(item.ifAbsent ? putIfAbsent(item.key, item.data) : put(item.key, item.data));
    return out;
}

Result<std::unique_ptr<Store>> openStore(const std::string& url,
                                         [[maybe_unused]] const StoreOptions& options) {
    auto upcast = [](auto result) -> Result<std::unique_ptr<Store>> {
        if (!result.ok())
            return std::move(result).error();
        return std::unique_ptr<Store>(std::move(result).value());
    };

    if (!url.empty() && url.front() == '/')
        return upcast(FileStore::open(url));

    const auto sep = url.find("://");
    if (sep == std::string::npos)
        return Error(Errc::InvalidArgument,
                     "store URL \"" + url + "\" is neither file://, s3:// nor an absolute path");
    const std::string scheme = url.substr(0, sep);
    const std::string rest = url.substr(sep + 3);

    if (scheme == "file") {
        // file:///abs/path or file://localhost/abs/path; no remote hosts.
        std::string path = rest;
        if (path.rfind("localhost/", 0) == 0)
            path = path.substr(9);
        if (path.empty() || path.front() != '/')
            return Error(Errc::InvalidArgument,
                         "file store URL \"" + url + "\" must be file:///absolute/path");
        return upcast(FileStore::open(path));
    }
    if (scheme == "s3" || scheme == "s3s")
        return openS3Store(url, options);
    return Error(Errc::InvalidArgument, "unknown store URL scheme \"" + scheme + "\"");
}

} // namespace isr::store
