#pragma once
// NBD wire constants and pure parsers (no sockets, no state), so that the
// server's I/O loop stays small and every parser can be fuzzed on its own.
// Values follow the NBD protocol specification (NetworkBlockDevice doc/proto.md).

#include "util/bytes.h"
#include "util/result.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace isr::disk::nbd {

// Handshake.
inline constexpr std::uint64_t kInitMagic = 0x4e42444d41474943ull; // "NBDMAGIC"
inline constexpr std::uint64_t kOptMagic = 0x49484156454f5054ull;  // "IHAVEOPT"
inline constexpr std::uint64_t kOptReplyMagic = 0x3e889045565a9ull;
inline constexpr std::uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr std::uint16_t kFlagNoZeroes = 1u << 1;
inline constexpr std::uint32_t kClientFlagFixedNewstyle = 1u << 0;
inline constexpr std::uint32_t kClientFlagNoZeroes = 1u << 1;

// Options.
inline constexpr std::uint32_t kOptExportName = 1;
inline constexpr std::uint32_t kOptAbort = 2;
inline constexpr std::uint32_t kOptList = 3;
inline constexpr std::uint32_t kOptStartTls = 5;
inline constexpr std::uint32_t kOptInfo = 6;
inline constexpr std::uint32_t kOptGo = 7;
inline constexpr std::uint32_t kOptStructuredReply = 8;

// Option replies.
inline constexpr std::uint32_t kRepAck = 1;
inline constexpr std::uint32_t kRepServer = 2;
inline constexpr std::uint32_t kRepInfo = 3;
inline constexpr std::uint32_t kRepErrUnsup = 0x80000001u;
inline constexpr std::uint32_t kRepErrPolicy = 0x80000002u;
inline constexpr std::uint32_t kRepErrInvalid = 0x80000003u;
inline constexpr std::uint32_t kRepErrUnknown = 0x80000006u;
inline constexpr std::uint32_t kRepErrShutdown = 0x80000007u;

// NBD_INFO_* items inside NBD_REP_INFO.
inline constexpr std::uint16_t kInfoExport = 0;
inline constexpr std::uint16_t kInfoName = 1;
inline constexpr std::uint16_t kInfoDescription = 2;
inline constexpr std::uint16_t kInfoBlockSize = 3;

// Transmission flags.
inline constexpr std::uint16_t kFlagHasFlags = 1u << 0;
inline constexpr std::uint16_t kFlagReadOnly = 1u << 1;
inline constexpr std::uint16_t kFlagSendFlush = 1u << 2;
inline constexpr std::uint16_t kFlagSendFua = 1u << 3;
inline constexpr std::uint16_t kFlagSendTrim = 1u << 5;
inline constexpr std::uint16_t kFlagSendWriteZeroes = 1u << 6;

// Transmission.
inline constexpr std::uint32_t kRequestMagic = 0x25609513u;
inline constexpr std::uint32_t kSimpleReplyMagic = 0x67446698u;
inline constexpr std::size_t kRequestHeaderSize = 28;
inline constexpr std::size_t kSimpleReplySize = 16;

inline constexpr std::uint16_t kCmdRead = 0;
inline constexpr std::uint16_t kCmdWrite = 1;
inline constexpr std::uint16_t kCmdDisc = 2;
inline constexpr std::uint16_t kCmdFlush = 3;
inline constexpr std::uint16_t kCmdTrim = 4;
inline constexpr std::uint16_t kCmdWriteZeroes = 6;

inline constexpr std::uint16_t kCmdFlagFua = 1u << 0;
inline constexpr std::uint16_t kCmdFlagNoHole = 1u << 1;

// Error values on the wire (fixed by the protocol, not the host's errno).
inline constexpr std::uint32_t kEPERM = 1;
inline constexpr std::uint32_t kEIO = 5;
inline constexpr std::uint32_t kENOMEM = 12;
inline constexpr std::uint32_t kEINVAL = 22;
inline constexpr std::uint32_t kENOSPC = 28;
inline constexpr std::uint32_t kEOVERFLOW = 75;
inline constexpr std::uint32_t kENOTSUP = 95;
inline constexpr std::uint32_t kESHUTDOWN = 108;

// Export names and option payloads: the spec caps strings at 4096 bytes; we
// refuse option payloads above this (a client sending more is hostile).
inline constexpr std::uint32_t kMaxOptionLength = 64 * 1024;
inline constexpr std::uint32_t kMaxStringLength = 4096;

struct Request {
    std::uint16_t flags = 0;
    std::uint16_t type = 0;
    std::uint64_t handle = 0;
    std::uint64_t offset = 0;
    std::uint32_t length = 0;
};

// Parses one 28-byte request header. Corrupt on a wrong size or bad magic
// (the server then disconnects: the stream can no longer be framed).
Result<Request> parseRequest(ByteView header);
// The inverse, for clients and tests.
Bytes encodeRequest(const Request& request);

// What the server must do with a well-framed request.
struct Verdict {
    std::uint32_t error = 0;       // 0: execute; else reply with this NBD error
    std::uint32_t payloadSize = 0; // bytes that follow the header (WRITE), to read even on error
    bool disconnect = false;       // the stream cannot be trusted: hard disconnect
};

struct ExportLimits {
    std::uint64_t size = 0;
    std::uint32_t maxPayload = 32u << 20; // largest READ/WRITE accepted
    std::uint32_t minimum = 1;            // offsets and lengths must be multiples
    bool readOnly = false;
};

// Pure check of a request against the export: bounds, flags, command.
// Zero-length requests are valid. A WRITE longer than maxPayload is a
// disconnect (we will not buffer it, and cannot skip it without reading it);
// a READ longer than maxPayload is EINVAL.
Verdict checkRequest(const Request& request, const ExportLimits& limits);

// NBD_OPT_INFO / NBD_OPT_GO payload: name length, name, count, info types.
struct InfoRequest {
    std::string exportName;
    std::vector<std::uint16_t> infos;
};
// InvalidArgument on any inconsistent length (reply NBD_REP_ERR_INVALID).
Result<InfoRequest> parseInfoRequest(ByteView data);
Bytes encodeInfoRequest(const InfoRequest& request);

// Maps a core error kind to the NBD error the guest sees.
std::uint32_t errorFor(Errc code);

} // namespace isr::disk::nbd
