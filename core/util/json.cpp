#include "util/json.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace isr::json {

const Value* Value::find(const std::string& key) const {
    if (!isObject())
        return nullptr;
    auto& o = asObject();
    auto it = o.find(key);
    return it == o.end() ? nullptr : &it->second;
}

Result<std::string> Value::getString(const std::string& key) const {
    const Value* v = find(key);
    if (!v || !v->isString())
        return Error(Errc::Corrupt, "missing or non-string field '" + key + "'");
    return v->asString();
}

Result<std::int64_t> Value::getInt(const std::string& key) const {
    const Value* v = find(key);
    if (!v || !v->isInt())
        return Error(Errc::Corrupt, "missing or non-integer field '" + key + "'");
    return v->asInt();
}

Result<bool> Value::getBool(const std::string& key) const {
    const Value* v = find(key);
    if (!v || !v->isBool())
        return Error(Errc::Corrupt, "missing or non-boolean field '" + key + "'");
    return v->asBool();
}

static void dumpString(std::string& out, const std::string& s) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += char(c);
            }
        }
    }
    out += '"';
}

static void dumpValue(std::string& out, const Value& v) {
    if (v.isNull()) {
        out += "null";
    } else if (v.isBool()) {
        out += v.asBool() ? "true" : "false";
    } else if (v.isInt()) {
        out += std::to_string(v.asInt());
    } else if (v.isNumber()) {
        // JSON has no infinity or NaN (the parser refuses them); write null.
        if (!std::isfinite(v.asDouble())) {
            out += "null";
            return;
        }
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.17g", v.asDouble());
        out += buf;
        // "%g" writes integral doubles (5.0, -0.0) without a point; the
        // parser would read them back as integers, changing the value's type
        // (found by tests/fuzz/fuzz_json).
        if (std::string_view(buf).find_first_of(".eE") == std::string_view::npos)
            out += ".0";
    } else if (v.isString()) {
        dumpString(out, v.asString());
    } else if (v.isArray()) {
        out += '[';
        bool first = true;
        for (const auto& e : v.asArray()) {
            if (!first)
                out += ',';
            first = false;
            dumpValue(out, e);
        }
        out += ']';
    } else {
        out += '{';
        bool first = true;
        for (const auto& [k, e] : v.asObject()) {
            if (!first)
                out += ',';
            first = false;
            dumpString(out, k);
            out += ':';
            dumpValue(out, e);
        }
        out += '}';
    }
}

std::string Value::dump() const {
    std::string out;
    dumpValue(out, *this);
    return out;
}

namespace {

class Parser {
public:
    explicit Parser(std::string_view s) : s_(s) {}

    Result<Value> document() {
        auto v = value(0);
        if (!v.ok())
            return v;
        skipSpace();
        if (pos_ != s_.size())
            return fail("trailing data");
        return v;
    }

private:
    std::string_view s_;
    std::size_t pos_ = 0;

    Error fail(const std::string& what) const {
        return Error(Errc::Corrupt, "JSON: " + what + " at offset " + std::to_string(pos_));
    }
    void skipSpace() {
        while (pos_ < s_.size() &&
               (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            ++pos_;
    }
    bool consume(std::string_view word) {
        if (s_.substr(pos_, word.size()) == word) {
            pos_ += word.size();
            return true;
        }
        return false;
    }

    Result<Value> value(int depth) {
        if (depth > kMaxDepth)
            return fail("nesting too deep");
        skipSpace();
        if (pos_ >= s_.size())
            return fail("unexpected end");
        char c = s_[pos_];
        if (c == '{')
            return object(depth);
        if (c == '[')
            return array(depth);
        if (c == '"') {
            auto str = string();
            if (!str.ok())
                return std::move(str).error();
            return Value(std::move(*str));
        }
        if (consume("true"))
            return Value(true);
        if (consume("false"))
            return Value(false);
        if (consume("null"))
            return Value(nullptr);
        if (c == '-' || (c >= '0' && c <= '9'))
            return number();
        return fail("unexpected character");
    }

    Result<Value> object(int depth) {
        ++pos_; // '{'
        Object obj;
        skipSpace();
        if (pos_ < s_.size() && s_[pos_] == '}') {
            ++pos_;
            return Value(std::move(obj));
        }
        for (;;) {
            skipSpace();
            if (pos_ >= s_.size() || s_[pos_] != '"')
                return fail("expected object key");
            auto key = string();
            if (!key.ok())
                return std::move(key).error();
            skipSpace();
            if (pos_ >= s_.size() || s_[pos_] != ':')
                return fail("expected ':'");
            ++pos_;
            auto v = value(depth + 1);
            if (!v.ok())
                return v;
            if (!obj.emplace(std::move(*key), std::move(*v)).second)
                return fail("duplicate object key");
            skipSpace();
            if (pos_ < s_.size() && s_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (pos_ < s_.size() && s_[pos_] == '}') {
                ++pos_;
                return Value(std::move(obj));
            }
            return fail("expected ',' or '}'");
        }
    }

    Result<Value> array(int depth) {
        ++pos_; // '['
        Array arr;
        skipSpace();
        if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            return Value(std::move(arr));
        }
        for (;;) {
            auto v = value(depth + 1);
            if (!v.ok())
                return v;
            arr.push_back(std::move(*v));
            skipSpace();
            if (pos_ < s_.size() && s_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (pos_ < s_.size() && s_[pos_] == ']') {
                ++pos_;
                return Value(std::move(arr));
            }
            return fail("expected ',' or ']'");
        }
    }

    static void appendUtf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xc0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out += char(0xe0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3f));
            out += char(0x80 | (cp & 0x3f));
        } else {
            out += char(0xf0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3f));
            out += char(0x80 | ((cp >> 6) & 0x3f));
            out += char(0x80 | (cp & 0x3f));
        }
    }

    Result<std::uint32_t> hex4() {
        if (pos_ + 4 > s_.size())
            return fail("truncated \\u escape");
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i) {
            char c = s_[pos_++];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= std::uint32_t(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= std::uint32_t(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= std::uint32_t(c - 'A' + 10);
            else
                return fail("bad \\u escape");
        }
        return v;
    }

    Result<std::string> string() {
        ++pos_; // '"'
        std::string out;
        while (pos_ < s_.size()) {
            unsigned char c = static_cast<unsigned char>(s_[pos_++]);
            if (c == '"')
                return out;
            if (c < 0x20)
                return fail("control character in string");
            if (c != '\\') {
                out += char(c);
                continue;
            }
            if (pos_ >= s_.size())
                break;
            char e = s_[pos_++];
            switch (e) {
            case '"':
                out += '"';
                break;
            case '\\':
                out += '\\';
                break;
            case '/':
                out += '/';
                break;
            case 'b':
                out += '\b';
                break;
            case 'f':
                out += '\f';
                break;
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 't':
                out += '\t';
                break;
            case 'u': {
                auto cp = hex4();
                if (!cp.ok())
                    return std::move(cp).error();
                std::uint32_t code = *cp;
                if (code >= 0xd800 && code <= 0xdbff) {
                    if (!consume("\\u"))
                        return fail("lone high surrogate");
                    auto lo = hex4();
                    if (!lo.ok())
                        return std::move(lo).error();
                    if (*lo < 0xdc00 || *lo > 0xdfff)
                        return fail("bad low surrogate");
                    code = 0x10000 + ((code - 0xd800) << 10) + (*lo - 0xdc00);
                } else if (code >= 0xdc00 && code <= 0xdfff) {
                    return fail("lone low surrogate");
                }
                appendUtf8(out, code);
                break;
            }
            default:
                return fail("bad escape");
            }
        }
        return fail("unterminated string");
    }

    Result<Value> number() {
        std::size_t start = pos_;
        if (s_[pos_] == '-')
            ++pos_;
        bool isFloat = false;
        while (pos_ < s_.size()) {
            char c = s_[pos_];
            if (c >= '0' && c <= '9') {
                ++pos_;
            } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
                isFloat = true;
                ++pos_;
            } else {
                break;
            }
        }
        std::string text(s_.substr(start, pos_ - start));
        if (text == "-" || text.empty())
            return fail("bad number");
        errno = 0;
        char* end = nullptr;
        if (!isFloat) {
            long long v = std::strtoll(text.c_str(), &end, 10);
            if (errno == ERANGE || *end != '\0')
                return fail("integer out of range");
            return Value(std::int64_t(v));
        }
        double d = std::strtod(text.c_str(), &end);
        if (*end != '\0' || !std::isfinite(d))
            return fail("bad number");
        return Value(d);
    }
};

} // namespace

Result<Value> parse(std::string_view text) {
    if (text.size() > kMaxInput)
        return Error(Errc::Corrupt, "JSON document too large");
    return Parser(text).document();
}

} // namespace isr::json
