// S3 protocol helpers (see s3_protocol.h): URL canonicalisation and the
// parsing of response bodies with libxml2.
#include "store/s3_protocol.h"

#include "crypto/crypto.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <memory>
#include <mutex>
#include <new>

namespace isr::store::s3 {

namespace {
bool unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

bool bucketChar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
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

// ---- XML through libxml2 ------------------------------------------------
//
// Parser options: no XML_PARSE_NOENT (entities are not substituted), no
// XML_PARSE_DTDLOAD/DTDATTR/DTDVALID (no external DTD is fetched or read),
// XML_PARSE_NONET (no network access, should anything still try), no
// XML_PARSE_HUGE (libxml2's own limits on depth, name and text sizes stay
// on), errors and warnings not printed (the caller gets them as Corrupt).
// On top of that a document with a DOCTYPE is refused outright: S3 never
// sends one, and without a DTD there are no entities beyond the five
// predefined ones and character references, which libxml2 decodes.
constexpr int kXmlOptions =
    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA;

struct XmlDocDeleter {
    void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct XmlCtxtDeleter {
    void operator()(xmlParserCtxt* c) const { xmlFreeParserCtxt(c); }
};
using XmlDoc = std::unique_ptr<xmlDoc, XmlDocDeleter>;

std::string_view nameOf(const xmlNode* node) {
    return node->name ? std::string_view(reinterpret_cast<const char*>(node->name))
                      : std::string_view();
}

// Parses a whole document; Corrupt (prefixed by `what`) if it is larger
// than maxSize, not well-formed, or has a DOCTYPE.
Result<XmlDoc> parseXml(std::string_view xml, std::size_t maxSize, const std::string& what) {
    if (xml.size() > maxSize)
        return Error(Errc::Corrupt,
                     what + ": response larger than " + std::to_string(maxSize) + " bytes");
    if (xml.find("<!DOCTYPE") != std::string_view::npos)
        return Error(Errc::Corrupt, what + ": DOCTYPE not allowed");
    // xmlInitParser must run once before threads parse concurrently.
    static std::once_flag once;
    std::call_once(once, [] { xmlInitParser(); });
    std::unique_ptr<xmlParserCtxt, XmlCtxtDeleter> ctxt(xmlNewParserCtxt());
    if (!ctxt)
        throw std::bad_alloc();
    XmlDoc doc(
        xmlCtxtReadMemory(ctxt.get(), xml.data(), int(xml.size()), nullptr, nullptr, kXmlOptions));
    if (!doc || !ctxt->wellFormed || !ctxt->nsWellFormed) {
        std::string why = "not well-formed XML";
        if (const xmlError* e = xmlCtxtGetLastError(ctxt.get()); e && e->message) {
            why = e->message;
            while (!why.empty() && (why.back() == '\n' || why.back() == ' '))
                why.pop_back();
            why += " (line " + std::to_string(e->line) + ")";
        }
        return Error(Errc::Corrupt, what + ": " + why);
    }
    if (doc->intSubset || doc->extSubset)
        return Error(Errc::Corrupt, what + ": DOCTYPE not allowed");
    if (!xmlDocGetRootElement(doc.get()))
        return Error(Errc::Corrupt, what + ": no root element");
    return doc;
}

// The text of an element that holds only text ("" for <X/>); Corrupt if it
// has child elements.
Result<std::string> textOf(const xmlNode* element, const std::string& what) {
    std::string out;
    for (const xmlNode* c = element->children; c; c = c->next) {
        if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
            if (c->content)
                out += reinterpret_cast<const char*>(c->content);
        } else if (c->type == XML_ELEMENT_NODE) {
            return Error(Errc::Corrupt, what + ": <" + std::string(nameOf(element)) +
                                            "> holds elements, not text");
        } // comments and processing instructions say nothing
    }
    return out;
}

// The only child element named `name` of `parent`: nullptr if there is none,
// Corrupt if there are two (an ambiguous answer is a damaged one).
Result<const xmlNode*> onlyChild(const xmlNode* parent, std::string_view name,
                                 const std::string& what) {
    const xmlNode* found = nullptr;
    for (const xmlNode* c = parent->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || nameOf(c) != name)
            continue;
        if (found)
            return Error(Errc::Corrupt, what + ": two <" + std::string(name) + "> in <" +
                                            std::string(nameOf(parent)) + ">");
        found = c;
    }
    return found;
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

std::string baseUrl(const Endpoint& endpoint, bool pathStyle) {
    std::string base = endpoint.tls ? "https://" : "http://";
    if (!pathStyle)
        base += endpoint.bucket + ".";
    base += endpoint.host;
    if (endpoint.port)
        base += ":" + std::to_string(endpoint.port);
    return base;
}

std::string requestUrl(const Endpoint& endpoint, bool pathStyle, std::string_view objectKey,
                       const std::vector<std::pair<std::string, std::string>>& query) {
    std::string path = "/";
    if (pathStyle) {
        path += uriEncode(endpoint.bucket, false);
        if (!objectKey.empty())
            path += "/";
    }
    path += uriEncode(objectKey, true);
    std::string u = baseUrl(endpoint, pathStyle) + path;
    if (!query.empty())
        u += "?" + canonicalQuery(query);
    return u;
}

std::string payloadHash(ByteView body) {
    return toHex(crypto::sha256(body));
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
    const std::string what = "S3 listing";
    ISR_TRY_ASSIGN(XmlDoc doc, parseXml(xml, kMaxListResponse, what));
    const xmlNode* root = xmlDocGetRootElement(doc.get());
    if (nameOf(root) != "ListBucketResult")
        return Error(Errc::Corrupt, what + ": not a ListBucketResult");
    ListPage page;
    for (const xmlNode* c = root->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || nameOf(c) != "Contents")
            continue;
        if (page.objects.size() == kMaxKeysPerPage)
            return Error(Errc::Corrupt, what + ": more than " + std::to_string(kMaxKeysPerPage) +
                                            " objects in one page");
        ISR_TRY_ASSIGN(const xmlNode* key, onlyChild(c, "Key", what));
        ISR_TRY_ASSIGN(const xmlNode* size, onlyChild(c, "Size", what));
        if (!key || !size)
            return Error(Errc::Corrupt, what + ": <Contents> without <Key> or <Size>");
        ObjectInfo info;
        ISR_TRY_ASSIGN(info.key, textOf(key, what));
        if (info.key.empty())
            return Error(Errc::Corrupt, what + ": empty <Key>");
        ISR_TRY_ASSIGN(std::string sizeText, textOf(size, what));
        ISR_TRY_ASSIGN(info.size, parseU64(sizeText, "Size"));
        ISR_TRY_ASSIGN(const xmlNode* modified, onlyChild(c, "LastModified", what));
        if (modified) {
            ISR_TRY_ASSIGN(std::string timeText, textOf(modified, what));
            ISR_TRY_ASSIGN(info.modified, parseIsoTime(timeText));
        }
        page.objects.push_back(std::move(info));
    }
    ISR_TRY_ASSIGN(const xmlNode* truncated, onlyChild(root, "IsTruncated", what));
    if (!truncated)
        return Error(Errc::Corrupt, what + ": no <IsTruncated>");
    ISR_TRY_ASSIGN(std::string flag, textOf(truncated, what));
    if (flag == "true")
        page.truncated = true;
    else if (flag != "false")
        return Error(Errc::Corrupt, what + ": bad <IsTruncated>");
    if (page.truncated) {
        ISR_TRY_ASSIGN(const xmlNode* token, onlyChild(root, "NextContinuationToken", what));
        if (!token)
            return Error(Errc::Corrupt, what + ": truncated without <NextContinuationToken>");
        ISR_TRY_ASSIGN(page.nextToken, textOf(token, what));
        if (page.nextToken.empty())
            return Error(Errc::Corrupt, what + ": empty <NextContinuationToken>");
    }
    return page;
}

std::string errorCode(std::string_view xml) {
    if (xml.empty())
        return {};
    auto doc = parseXml(xml, kMaxErrorBody, "S3 error");
    if (!doc.ok())
        return {};
    const xmlNode* root = xmlDocGetRootElement(doc->get());
    if (nameOf(root) != "Error")
        return {};
    auto code = onlyChild(root, "Code", "S3 error");
    if (!code.ok() || !*code)
        return {};
    auto text = textOf(*code, "S3 error");
    return text.ok() ? *text : std::string();
}

bool retryableAnswer(long status, bool isPut, std::string_view body) {
    if (status >= 500)
        return true; // includes 503 SlowDown
    // A conditional PUT racing another one on the same key (AWS:
    // ConditionalRequestConflict). Retrying settles which one won.
    if (status == 409 && isPut)
        return true;
    // S3 answers 400 RequestTimeout when our upload went idle (a stall on
    // our side of the connection): a network failure in a 4xx's clothing.
    if (status == 400 && errorCode(body) == "RequestTimeout")
        return true;
    return false;
}

} // namespace isr::store::s3
