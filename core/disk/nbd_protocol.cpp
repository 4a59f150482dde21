#include "disk/nbd_protocol.h"

namespace isr::disk::nbd {

Result<Request> parseRequest(ByteView header) {
    if (header.size() != kRequestHeaderSize)
        return Error(Errc::Corrupt,
                     "NBD request header must be 28 bytes, got " + std::to_string(header.size()));
    const std::uint8_t* p = header.data();
    std::uint32_t magic = getBe32(p);
    if (magic != kRequestMagic)
        return Error(Errc::Corrupt, "bad NBD request magic 0x" + toHex(header.first(4)));
    Request r;
    r.flags = getBe16(p + 4);
    r.type = getBe16(p + 6);
    r.handle = getBe64(p + 8);
    r.offset = getBe64(p + 16);
    r.length = getBe32(p + 24);
    return r;
}

Bytes encodeRequest(const Request& request) {
    Bytes out(kRequestHeaderSize);
    putBe32(out.data(), kRequestMagic);
    putBe16(out.data() + 4, request.flags);
    putBe16(out.data() + 6, request.type);
    putBe64(out.data() + 8, request.handle);
    putBe64(out.data() + 16, request.offset);
    putBe32(out.data() + 24, request.length);
    return out;
}

namespace {
bool inBounds(const Request& r, std::uint64_t size) {
    return r.offset <= size && r.length <= size - r.offset;
}
} // namespace

Verdict checkRequest(const Request& request, const ExportLimits& limits) {
    Verdict v;
    const std::uint16_t knownFlags =
        request.type == kCmdWriteZeroes ? (kCmdFlagFua | kCmdFlagNoHole) : kCmdFlagFua;
    switch (request.type) {
    case kCmdRead:
        if (request.length > limits.maxPayload || !inBounds(request, limits.size))
            v.error = kEINVAL;
        break;
    case kCmdWrite:
        if (request.length > limits.maxPayload) {
            // Reading it just to throw it away would let a client make us
            // swallow up to 4 GiB; the spec allows dropping such a client.
            v.disconnect = true;
            return v;
        }
        v.payloadSize = request.length;
        if (!inBounds(request, limits.size))
            v.error = kEINVAL;
        else if (limits.readOnly)
            v.error = kEPERM;
        break;
    case kCmdTrim:
    case kCmdWriteZeroes:
        if (!inBounds(request, limits.size))
            v.error = kEINVAL;
        else if (limits.readOnly)
            v.error = kEPERM;
        break;
    case kCmdFlush:
    case kCmdDisc:
        break;
    default:
        v.error = kEINVAL;
        return v;
    }
    if (v.error == 0 && (request.flags & ~knownFlags) != 0)
        v.error = kEINVAL;
    if (v.error == 0 && limits.minimum > 1 && request.type != kCmdFlush &&
        (request.offset % limits.minimum != 0 || request.length % limits.minimum != 0))
        v.error = kEINVAL;
    return v;
}

Result<InfoRequest> parseInfoRequest(ByteView data) {
    if (data.size() < 4)
        return Error(Errc::InvalidArgument, "info request shorter than its name length");
    std::uint32_t nameLength = getBe32(data.data());
    if (nameLength > kMaxStringLength || data.size() - 4 < std::uint64_t(nameLength) + 2)
        return Error(Errc::InvalidArgument, "info request name length inconsistent");
    InfoRequest r;
    r.exportName.assign(reinterpret_cast<const char*>(data.data() + 4), nameLength);
    std::size_t pos = 4 + nameLength;
    std::uint16_t count = getBe16(data.data() + pos);
    pos += 2;
    if (data.size() - pos != std::size_t(count) * 2)
        return Error(Errc::InvalidArgument, "info request count inconsistent with length");
    for (std::uint16_t i = 0; i < count; ++i, pos += 2)
        r.infos.push_back(getBe16(data.data() + pos));
    return r;
}

Bytes encodeInfoRequest(const InfoRequest& request) {
    Bytes out(4 + request.exportName.size() + 2 + 2 * request.infos.size());
    putBe32(out.data(), std::uint32_t(request.exportName.size()));
    std::copy(request.exportName.begin(), request.exportName.end(), out.begin() + 4);
    std::size_t pos = 4 + request.exportName.size();
    putBe16(out.data() + pos, std::uint16_t(request.infos.size()));
    pos += 2;
    for (std::uint16_t info : request.infos) {
        putBe16(out.data() + pos, info);
        pos += 2;
    }
    return out;
}

std::uint32_t errorFor(Errc code) {
    switch (code) {
    case Errc::InvalidArgument:
        return kEINVAL;
    case Errc::NoSpace:
        return kENOSPC;
    case Errc::Unsupported:
        return kENOTSUP;
    case Errc::AccessDenied:
        return kEPERM;
    case Errc::Cancelled:
        return kESHUTDOWN;
    default:
        return kEIO;
    }
}

} // namespace isr::disk::nbd
