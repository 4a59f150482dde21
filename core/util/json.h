#pragma once
// A small JSON value with a strict parser and a deterministic writer, for
// the clear-text store objects (isr-store.json, account, lock, head) and the
// VM spec inside manifests. Not a general-purpose library: no comments, no
// trailing commas, nesting depth and input size are bounded, object keys are
// kept sorted (std::map) so output is canonical.
//
// Both directions go through nlohmann-json (json.cpp): its parser is well
// kept and fuzzed, and the data comes from an untrusted store. This header
// stays free of nlohmann, so callers see only Value, parse() and dump().
//
// parse() refuses (Corrupt): input over kMaxInput (checked first), nesting
// deeper than kMaxDepth (checked as each value arrives), invalid UTF-8,
// duplicate object keys, integers outside int64, non-finite numbers, and
// anything RFC 8259 does not allow (leading zeros, "1.", trailing data).
//
// dump() is compact with sorted keys. For everything isr stores (objects,
// arrays, int64, strings without \b or \f, booleans, null) it is byte for
// byte what the earlier hand-written writer produced, which matters because
// accounts carry a checksum over their dump and locks are compared as bytes.
// It differs in two places no store object uses: \b and \f are written as
// short escapes (was \u0008, \u000c), and doubles in their shortest form
// that reads back exactly (0.1, 1e+100; was %.17g), integral ones with a
// ".0" (5.0, -0.0) so they stay doubles. Strings that are not UTF-8 (only
// possible in a Value built by code) are written with U+FFFD.

#include "util/result.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace isr::json {

class Value;
using Array = std::vector<Value>;
using Object = std::map<std::string, Value>;

class Value {
public:
    Value() : v_(nullptr) {}
    Value(std::nullptr_t) : v_(nullptr) {}
    Value(bool b) : v_(b) {}
    Value(int i) : v_(std::int64_t(i)) {}
    Value(std::int64_t i) : v_(i) {}
    Value(std::uint64_t i) : v_(std::int64_t(i)) {}
    Value(double d) : v_(d) {}
    Value(const char* s) : v_(std::string(s)) {}
    Value(std::string s) : v_(std::move(s)) {}
    Value(Array a) : v_(std::make_shared<Array>(std::move(a))) {}
    Value(Object o) : v_(std::make_shared<Object>(std::move(o))) {}

    bool isNull() const { return v_.index() == 0; }
    bool isBool() const { return v_.index() == 1; }
    bool isInt() const { return v_.index() == 2; }
    bool isNumber() const { return v_.index() == 2 || v_.index() == 3; }
    bool isString() const { return v_.index() == 4; }
    bool isArray() const { return v_.index() == 5; }
    bool isObject() const { return v_.index() == 6; }

    bool asBool() const { return std::get<1>(v_); }
    std::int64_t asInt() const { return std::get<2>(v_); }
    double asDouble() const { return isInt() ? double(asInt()) : std::get<3>(v_); }
    const std::string& asString() const { return std::get<4>(v_); }
    const Array& asArray() const { return *std::get<5>(v_); }
    const Object& asObject() const { return *std::get<6>(v_); }

    // Object member or nullptr when absent / not an object.
    const Value* find(const std::string& key) const;

    // Typed accessors for required members; error names the key.
    Result<std::string> getString(const std::string& key) const;
    Result<std::int64_t> getInt(const std::string& key) const;
    Result<bool> getBool(const std::string& key) const;

    std::string dump() const;

private:
    std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, std::shared_ptr<Array>,
                 std::shared_ptr<Object>>
        v_;
};

inline constexpr std::size_t kMaxInput = 1u << 20; // 1 MiB
inline constexpr int kMaxDepth = 32;

// Corrupt on any syntax error, trailing data, excessive depth or size.
Result<Value> parse(std::string_view text);

} // namespace isr::json
