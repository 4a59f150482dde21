#pragma once
// A small JSON value with a strict parser and a deterministic writer, for
// the clear-text store objects (isr-store.json, account, lock, head) and the
// VM spec inside manifests. Not a general-purpose library: no comments, no
// trailing commas, nesting depth and input size are bounded, object keys are
// kept sorted (std::map) so output is canonical.

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
