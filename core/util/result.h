#pragma once
// Typed results at module boundaries (std::expected-style; GCC 12 in C++20
// mode has no std::expected). Every fallible core function returns
// Result<T> or Status; exceptions are reserved for constructors that cannot
// otherwise fail cleanly.

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace isr {

// One enum of error kinds for the whole core, so that errors compose across
// layers (a store's NotFound stays NotFound through the cache and the parcel).
enum class Errc {
    NotFound,        // object/user/parcel does not exist (an HTTP 404 is this, not Io)
    AlreadyExists,   // put-if-absent lost, name taken
    Conflict,        // concurrent writer won a race; caller may retry at a higher level
    AccessDenied,    // credentials refused (HTTP 403), permission denied
    AuthFailed,      // wrong user name or password (deliberately one kind for both)
    Corrupt,         // data failed verification: MAC, hash, length, parse
    Transient,       // network or server hiccup that survived retries
    Io,              // local I/O failure
    NoSpace,         // disk or cache full
    InvalidArgument, // caller error: bad name, bad URL, out of range
    Locked,          // parcel is held by another kiosk/session
    Unsupported,     // not implemented by this backend/format version
    Cancelled,       // stopped on request
    Internal,        // a bug or an unexpected library failure
};

const char* errcName(Errc code);

struct Error {
    Errc code = Errc::Internal;
    std::string message;

    Error() = default;
    Error(Errc c, std::string msg) : code(c), message(std::move(msg)) {}

    // "<kind>: <message>", for logs and CLI output.
    std::string describe() const;
    // Prefix context, e.g. err.context("manifest users/a/...") -> "manifest ...: <msg>".
    Error context(std::string_view what) const&;
    Error context(std::string_view what) &&;
};

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : data_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : data_(std::in_place_index<1>, std::move(error)) {}

    bool ok() const { return data_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & {
        assert(ok());
        return std::get<0>(data_);
    }
    const T& value() const& {
        assert(ok());
        return std::get<0>(data_);
    }
    T&& value() && {
        assert(ok());
        return std::get<0>(std::move(data_));
    }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const& {
        assert(!ok());
        return std::get<1>(data_);
    }
    Error&& error() && {
        assert(!ok());
        return std::get<1>(std::move(data_));
    }

    T valueOr(T fallback) const& { return ok() ? value() : std::move(fallback); }

private:
    std::variant<T, Error> data_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)) {}

    bool ok() const { return !error_.has_value(); }
    explicit operator bool() const { return ok(); }
    const Error& error() const& {
        assert(!ok());
        return *error_;
    }
    Error&& error() && {
        assert(!ok());
        return std::move(*error_);
    }

private:
    std::optional<Error> error_;
};

using Status = Result<void>;

inline Error makeError(Errc code, std::string message) { return Error(code, std::move(message)); }

} // namespace isr

// Propagate an error from an expression returning Result<...>/Status.
#define ISR_TRY_STATUS(expr)                                                                       \
    do {                                                                                           \
        auto isr_try_result_ = (expr);                                                             \
        if (!isr_try_result_.ok())                                                                 \
            return std::move(isr_try_result_).error();                                             \
    } while (0)

#define ISR_CONCAT_INNER_(a, b) a##b
#define ISR_CONCAT_(a, b) ISR_CONCAT_INNER_(a, b)
// ISR_TRY_ASSIGN(auto x, expr): declare x from a Result's value or return its error.
#define ISR_TRY_ASSIGN(decl, expr) ISR_TRY_ASSIGN_IMPL_(ISR_CONCAT_(isr_try_, __LINE__), decl, expr)
#define ISR_TRY_ASSIGN_IMPL_(tmp, decl, expr)                                                      \
    auto tmp = (expr);                                                                             \
    if (!tmp.ok())                                                                                 \
        return std::move(tmp).error();                                                             \
    decl = std::move(tmp).value()
