#pragma once
// A deliberately small, blocking NBD client over a raw UNIX socket, for
// feeding the server bad input that real clients never send. Not a library:
// it trusts nothing and returns false/empty on any surprise.

#include "disk/nbd_protocol.h"
#include "util/bytes.h"

#include <cstdint>
#include <optional>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace isr::test {
namespace nbd = isr::disk::nbd;

struct OptionReply {
    std::uint32_t option = 0;
    std::uint32_t type = 0;
    Bytes data;
};

struct SimpleReply {
    std::uint32_t error = 0;
    std::uint64_t handle = 0;
};

class RawNbdClient {
public:
    explicit RawNbdClient(const std::string& socketPath) {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        socketPath.copy(address.sun_path, sizeof address.sun_path - 1);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
            ::close(fd_);
            fd_ = -1;
        }
        timeval tv{20, 0}; // a hung server fails the test instead of hanging it
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~RawNbdClient() { close(); }
    RawNbdClient(const RawNbdClient&) = delete;
    RawNbdClient& operator=(const RawNbdClient&) = delete;

    bool connected() const { return fd_ >= 0; }
    void close() {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }

    bool sendBytes(ByteView data) {
        std::size_t done = 0;
        while (done < data.size()) {
            ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
            if (n <= 0)
                return false;
            done += std::size_t(n);
        }
        return true;
    }
    std::optional<Bytes> recvBytes(std::size_t size) {
        Bytes out(size);
        std::size_t done = 0;
        while (done < size) {
            ssize_t n = ::recv(fd_, out.data() + done, size - done, 0);
            if (n <= 0)
                return std::nullopt;
            done += std::size_t(n);
        }
        return out;
    }
    // True if the server closed the connection (EOF) rather than sending.
    bool seesEof() {
        std::uint8_t byte;
        return ::recv(fd_, &byte, 1, 0) == 0;
    }

    // Reads the greeting and answers with clientFlags. False if the greeting is wrong.
    bool greet(std::uint32_t clientFlags = nbd::kClientFlagFixedNewstyle |
                                           nbd::kClientFlagNoZeroes) {
        auto hello = recvBytes(18);
        if (!hello || getBe64(hello->data()) != nbd::kInitMagic ||
            getBe64(hello->data() + 8) != nbd::kOptMagic)
            return false;
        std::uint8_t flags[4];
        putBe32(flags, clientFlags);
        return sendBytes(flags);
    }
    bool sendOption(std::uint32_t option, ByteView data = {},
                    std::uint64_t magic = nbd::kOptMagic) {
        Bytes out(16 + data.size());
        putBe64(out.data(), magic);
        putBe32(out.data() + 8, option);
        putBe32(out.data() + 12, std::uint32_t(data.size()));
        std::copy(data.begin(), data.end(), out.begin() + 16);
        return sendBytes(out);
    }
    std::optional<OptionReply> readOptionReply() {
        auto header = recvBytes(20);
        if (!header || getBe64(header->data()) != nbd::kOptReplyMagic)
            return std::nullopt;
        OptionReply reply;
        reply.option = getBe32(header->data() + 8);
        reply.type = getBe32(header->data() + 12);
        auto data = recvBytes(getBe32(header->data() + 16));
        if (!data)
            return std::nullopt;
        reply.data = std::move(*data);
        return reply;
    }
    // Greets, sends NBD_OPT_GO for the default export and reads replies up to
    // the ACK. Returns the export size (0 on failure).
    std::uint64_t go() {
        if (!greet())
            return 0;
        if (!sendOption(nbd::kOptGo, nbd::encodeInfoRequest({"", {}})))
            return 0;
        std::uint64_t size = 0;
        for (;;) {
            auto reply = readOptionReply();
            if (!reply)
                return 0;
            if (reply->type == nbd::kRepAck)
                return size;
            if (reply->type != nbd::kRepInfo)
                return 0;
            if (getBe16(reply->data.data()) == nbd::kInfoExport)
                size = getBe64(reply->data.data() + 2);
        }
    }

    bool sendRequest(std::uint16_t type, std::uint64_t handle, std::uint64_t offset,
                     std::uint32_t length, std::uint16_t flags = 0, ByteView payload = {}) {
        Bytes out = nbd::encodeRequest({flags, type, handle, offset, length});
        out.insert(out.end(), payload.begin(), payload.end());
        return sendBytes(out);
    }
    std::optional<SimpleReply> readReply() {
        auto header = recvBytes(nbd::kSimpleReplySize);
        if (!header || getBe32(header->data()) != nbd::kSimpleReplyMagic)
            return std::nullopt;
        return SimpleReply{getBe32(header->data() + 4), getBe64(header->data() + 8)};
    }
    // READ round trip; nullopt on an error reply or a broken stream.
    std::optional<Bytes> read(std::uint64_t offset, std::uint32_t length,
                              std::uint32_t* error = nullptr) {
        if (!sendRequest(nbd::kCmdRead, 7, offset, length))
            return std::nullopt;
        auto reply = readReply();
        if (!reply || reply->handle != 7)
            return std::nullopt;
        if (error)
            *error = reply->error;
        if (reply->error != 0)
            return std::nullopt;
        return recvBytes(length);
    }
    // WRITE round trip; returns the NBD error, or -1 if the stream broke.
    long write(std::uint64_t offset, ByteView data, std::uint16_t flags = 0) {
        if (!sendRequest(nbd::kCmdWrite, 8, offset, std::uint32_t(data.size()), flags, data))
            return -1;
        auto reply = readReply();
        if (!reply || reply->handle != 8)
            return -1;
        return reply->error;
    }
    // Any payload-less command; returns the NBD error, or -1.
    long command(std::uint16_t type, std::uint64_t offset, std::uint32_t length,
                 std::uint16_t flags = 0) {
        if (!sendRequest(type, 9, offset, length, flags))
            return -1;
        auto reply = readReply();
        if (!reply || reply->handle != 9)
            return -1;
        return reply->error;
    }

private:
    int fd_ = -1;
};

} // namespace isr::test
