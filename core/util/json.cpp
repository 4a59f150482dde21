// json::Value over nlohmann-json (Debian's nlohmann-json3-dev, header-only).
//
// Parsing: nlohmann's SAX parser does the syntax (strict RFC 8259: UTF-8
// validated, escapes and surrogate pairs, no trailing data), and the Builder
// below turns its events into a Value while it enforces what nlohmann does
// not: the nesting depth (checked on every value as it arrives, so a deep
// document is refused before it is built), duplicate object keys (nlohmann
// keeps the last one; a store object that says two things is refused) and
// integers outside int64 (nlohmann would hand them over as doubles).
//
// Writing: the Value is converted to a nlohmann::json, whose object type is a
// std::map (sorted keys), and dumped compactly. See json.h for how this
// output compares with the hand-written writer it replaced.
#include "util/json.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

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

namespace {

using Json = nlohmann::json;
static_assert(std::is_same_v<Json::object_t::key_compare, std::less<>>,
              "canonical output needs nlohmann's sorted object type");

Json toJson(const Value& v) {
    if (v.isNull())
        return nullptr;
    if (v.isBool())
        return v.asBool();
    if (v.isInt())
        return v.asInt();
    if (v.isNumber())
        return v.asDouble(); // non-finite values are written as null
    if (v.isString())
        return v.asString();
    if (v.isArray()) {
        Json out = Json::array();
        for (const auto& e : v.asArray())
            out.push_back(toJson(e));
        return out;
    }
    Json out = Json::object();
    for (const auto& [k, e] : v.asObject())
        out.emplace(k, toJson(e));
    return out;
}

// Receives nlohmann's SAX events and builds the Value. Every handler returns
// false to stop the parse at the first problem; error() says which.
class Builder {
public:
    bool null() { return scalar(Value(nullptr)); }
    bool boolean(bool b) { return scalar(Value(b)); }
    bool number_integer(Json::number_integer_t i) { return scalar(Value(std::int64_t(i))); }
    bool number_unsigned(Json::number_unsigned_t u) {
        if (u > Json::number_unsigned_t(std::numeric_limits<std::int64_t>::max()))
            return fail("integer out of range");
        return scalar(Value(std::int64_t(u)));
    }
    bool number_float(Json::number_float_t d, const Json::string_t& literal) {
        // nlohmann reads an integer too large for 64 bits as a double; the
        // literal tells them apart. An integer field must never silently
        // become an approximate double.
        if (literal.find_first_of(".eE") == std::string::npos)
            return fail("integer out of range");
        if (!std::isfinite(d))
            return fail("bad number");
        return scalar(Value(double(d)));
    }
    bool string(Json::string_t& s) { return scalar(Value(std::move(s))); }
    bool binary(Json::binary_t&) { return fail("binary value"); } // never from JSON text
    bool start_object(std::size_t) {
        if (!enter())
            return false;
        frames_.push_back(Frame{true, {}, {}, {}});
        return true;
    }
    bool key(Json::string_t& k) {
        Frame& f = frames_.back();
        if (f.object.count(k) != 0)
            return fail("duplicate object key \"" + printable(k) + "\"");
        f.key = std::move(k);
        return true;
    }
    bool end_object() {
        Object o = std::move(frames_.back().object);
        frames_.pop_back();
        return place(Value(std::move(o)));
    }
    bool start_array(std::size_t) {
        if (!enter())
            return false;
        frames_.push_back(Frame{false, {}, {}, {}});
        return true;
    }
    bool end_array() {
        Array a = std::move(frames_.back().array);
        frames_.pop_back();
        return place(Value(std::move(a)));
    }
    bool parse_error(std::size_t position, const std::string&,
                     const nlohmann::detail::exception& e) {
        // e.what() is "[json.exception.parse_error.101] parse error at line
        // 1, column 5: syntax error while parsing value - ..."; keep the
        // human part.
        std::string what = e.what();
        if (const auto close = what.find("] "); close != std::string::npos)
            what.erase(0, close + 2);
        error_ = "JSON: " + what + " (offset " + std::to_string(position) + ")";
        return false;
    }

    const std::string& error() const { return error_; }
    Value take() { return std::move(root_); }

private:
    struct Frame {
        bool isObject;
        Object object;
        Array array;
        std::string key; // the member whose value comes next
    };

    bool fail(const std::string& what) {
        error_ = "JSON: " + what;
        return false;
    }
    static std::string printable(const std::string& s) {
        std::string out;
        for (char c : s.substr(0, 64))
            out += (c >= 0x20 && c < 0x7f) ? c : '?';
        return out;
    }
    // A value (scalar or container) at the current depth: as deep as the
    // containers around it. The same rule the hand-written parser had.
    bool enter() {
        if (frames_.size() > std::size_t(kMaxDepth))
            return fail("nesting deeper than " + std::to_string(kMaxDepth));
        return true;
    }
    bool scalar(Value v) {
        if (!enter())
            return false;
        return place(std::move(v));
    }
    bool place(Value v) {
        if (frames_.empty()) {
            root_ = std::move(v);
            return true;
        }
        Frame& f = frames_.back();
        if (f.isObject)
            f.object.emplace(std::move(f.key), std::move(v));
        else
            f.array.push_back(std::move(v));
        return true;
    }

    std::vector<Frame> frames_;
    Value root_;
    std::string error_;
};

} // namespace

std::string Value::dump() const {
    // replace: a string that is not UTF-8 (none comes from parse(), which
    // validates) is written with U+FFFD rather than throwing; the output is
    // always valid JSON.
    return toJson(*this).dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<Value> parse(std::string_view text) {
    if (text.size() > kMaxInput)
        return Error(Errc::Corrupt, "JSON document too large");
    // nlohmann's lexer takes a NUL byte for the end of the input and would
    // accept "{}\0anything". JSON has no place for a raw NUL (in strings it
    // must be escaped), so any NUL is an error.
    if (text.find('\0') != std::string_view::npos)
        return Error(Errc::Corrupt, "JSON: NUL byte at offset " + std::to_string(text.find('\0')));
    Builder builder;
    const bool ok = Json::sax_parse(text.begin(), text.end(), &builder, Json::input_format_t::json,
                                    /*strict=*/true, /*ignore_comments=*/false);
    if (!ok)
        return Error(Errc::Corrupt,
                     builder.error().empty() ? std::string("JSON: parse error") : builder.error());
    return builder.take();
}

} // namespace isr::json
