// Fuzzes the NBD wire parsers a hostile client reaches (core/disk/nbd_protocol.h).
// Modes (first byte % 3):
//  0 parseRequest on the rest: ok <=> exactly 28 bytes with the request
//    magic, and encodeRequest(parse(x)) == x;
//  1 a parsed request checked against fuzzed export limits (checkRequest):
//    an executable request is in bounds without overflow, of a known type and
//    flags, aligned to the minimum, not a write to a read-only export, and
//    within maxPayload for data commands; a WRITE always says how many
//    payload bytes follow (or disconnects if that exceeds maxPayload);
//  2 parseInfoRequest: ok => the name is at most 4096 bytes and
//    encodeInfoRequest(parse(x)) == x; errors are InvalidArgument.
#include "disk/nbd_protocol.h"
#include "fuzz_check.h"

namespace {

using namespace isr;
using namespace isr::disk;

void fuzzParse(ByteView data) {
    auto request = nbd::parseRequest(data);
    const bool wellFramed =
        data.size() == nbd::kRequestHeaderSize && getBe32(data.data()) == nbd::kRequestMagic;
    FUZZ_CHECK(request.ok() == wellFramed);
    if (!request.ok()) {
        FUZZ_CHECK(request.error().code == Errc::Corrupt);
        return;
    }
    Bytes encoded = nbd::encodeRequest(*request);
    FUZZ_CHECK(std::equal(encoded.begin(), encoded.end(), data.begin(), data.end()));
}

void fuzzCheck(fuzz::FieldReader& in) {
    nbd::ExportLimits limits;
    limits.size = in.u64();
    if (in.u8() & 1) // mostly small exports, so offsets land inside them
        limits.size %= std::uint64_t(1) << 24;
    limits.maxPayload = in.u32();
    limits.minimum = std::uint32_t(1) << (in.u8() % 13); // 1..4096, as the server advertises
    limits.readOnly = in.u8() & 1;
    Bytes header(nbd::kRequestHeaderSize);
    in.bytes(header.data(), header.size());
    putBe32(header.data(), nbd::kRequestMagic);
    auto parsed = nbd::parseRequest(header);
    FUZZ_CHECK(parsed.ok());
    const nbd::Request& r = *parsed;
    nbd::Verdict v = nbd::checkRequest(r, limits);

    if (r.type == nbd::kCmdWrite) {
        if (r.length > limits.maxPayload)
            FUZZ_CHECK(v.disconnect);
        else
            FUZZ_CHECK(!v.disconnect && v.payloadSize == r.length);
    } else {
        FUZZ_CHECK(v.payloadSize == 0 && !v.disconnect);
    }
    if (v.disconnect || v.error != 0)
        return;

    // Executable: everything the I/O loop relies on must hold.
    switch (r.type) {
    case nbd::kCmdRead:
    case nbd::kCmdWrite:
    case nbd::kCmdTrim:
    case nbd::kCmdWriteZeroes:
        FUZZ_CHECK(r.offset <= limits.size && r.length <= limits.size - r.offset);
        FUZZ_CHECK(r.offset + r.length <= limits.size); // no wrap-around
        if (r.type != nbd::kCmdRead)
            FUZZ_CHECK(!limits.readOnly);
        if (r.type == nbd::kCmdRead || r.type == nbd::kCmdWrite)
            FUZZ_CHECK(r.length <= limits.maxPayload);
        FUZZ_CHECK(r.offset % limits.minimum == 0 && r.length % limits.minimum == 0);
        break;
    case nbd::kCmdFlush:
    case nbd::kCmdDisc:
        break;
    default:
        FUZZ_CHECK(!"unknown command accepted");
    }
    std::uint16_t known = nbd::kCmdFlagFua;
    if (r.type == nbd::kCmdWriteZeroes)
        known |= nbd::kCmdFlagNoHole;
    FUZZ_CHECK((r.flags & ~known) == 0);
}

void fuzzInfo(ByteView data) {
    auto info = nbd::parseInfoRequest(data);
    if (!info.ok()) {
        FUZZ_CHECK(info.error().code == Errc::InvalidArgument);
        return;
    }
    FUZZ_CHECK(info->exportName.size() <= nbd::kMaxStringLength);
    Bytes encoded = nbd::encodeInfoRequest(*info);
    FUZZ_CHECK(std::equal(encoded.begin(), encoded.end(), data.begin(), data.end()));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0)
        return 0;
    ByteView rest(data + 1, size - 1);
    switch (data[0] % 3) {
    case 0:
        fuzzParse(rest);
        break;
    case 1: {
        fuzz::FieldReader in(rest.data(), rest.size());
        fuzzCheck(in);
        break;
    }
    case 2:
        fuzzInfo(rest);
        break;
    }
    return 0;
}
