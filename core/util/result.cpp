#include "util/result.h"

namespace isr {

const char* errcName(Errc code) {
    switch (code) {
    case Errc::NotFound: return "not found";
    case Errc::AlreadyExists: return "already exists";
    case Errc::Conflict: return "conflict";
    case Errc::AccessDenied: return "access denied";
    case Errc::AuthFailed: return "authentication failed";
    case Errc::Corrupt: return "corrupt";
    case Errc::Transient: return "temporarily unavailable";
    case Errc::Io: return "I/O error";
    case Errc::NoSpace: return "no space left";
    case Errc::InvalidArgument: return "invalid argument";
    case Errc::Locked: return "locked";
    case Errc::Unsupported: return "unsupported";
    case Errc::Cancelled: return "cancelled";
    case Errc::Internal: return "internal error";
    }
    return "unknown error";
}

std::string Error::describe() const {
    std::string out = errcName(code);
    if (!message.empty()) {
        out += ": ";
        out += message;
    }
    return out;
}

Error Error::context(std::string_view what) const& {
    Error copy = *this;
    return std::move(copy).context(what);
}

Error Error::context(std::string_view what) && {
    std::string prefixed(what);
    if (!message.empty()) {
        prefixed += ": ";
        prefixed += message;
    }
    message = std::move(prefixed);
    return std::move(*this);
}

} // namespace isr
