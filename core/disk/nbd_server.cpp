#include "disk/nbd_server.h"

#include "crypto/crypto.h"
#include "disk/nbd_protocol.h"
#include "util/log.h"

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <list>
#include <mutex>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace isr::disk {

namespace {

constexpr const char* kLog = "disk";

std::string errnoText(int err) {
    return std::strerror(err);
}

// Reads exactly out.size() bytes. False on EOF, error or shutdown.
bool readFull(int fd, std::uint8_t* out, std::size_t size) {
    while (size > 0) {
        ssize_t n = ::recv(fd, out, size, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        out += n;
        size -= std::size_t(n);
    }
    return true;
}

// MSG_NOSIGNAL: a client that vanished must not kill the kiosk with SIGPIPE.
bool sendFull(int fd, const std::uint8_t* data, std::size_t size) {
    while (size > 0) {
        ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        size -= std::size_t(n);
    }
    return true;
}

struct Job {
    nbd::Request request;
    Bytes payload;
    std::uint64_t cost = 0; // bytes charged against maxQueuedBytes
};

} // namespace

struct Counters {
    std::atomic<std::uint64_t> connections{0};
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::uint64_t> bytesRead{0};
    std::atomic<std::uint64_t> bytesWritten{0};
    std::atomic<int> active{0};
};

// One client connection: the reader thread owns the socket's receive side;
// workers share its send side under sendMutex. The fd is closed only by the
// owner (the server) after the reader thread has been joined.
class Connection {
public:
    Connection(int fd, BlockDevice& device, const NbdServerOptions& options, Counters& counters)
        : fd_(fd), device_(device), options_(options), counters_(counters) {
        BlockSizes sizes = device_.blockSizes();
        limits_.size = device_.size();
        limits_.maxPayload = sizes.maximum;
        limits_.minimum = sizes.minimum;
        limits_.readOnly = device_.readOnly();
        counters_.active++;
        thread_ = std::thread([this] { run(); });
    }
    ~Connection() {
        shutdownSocket();
        if (thread_.joinable())
            thread_.join();
        ::close(fd_);
        counters_.active--;
    }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Wakes the reader (recv returns 0) and makes further sends fail.
    void shutdownSocket() { ::shutdown(fd_, SHUT_RDWR); }
    bool finished() const { return finished_.load(); }

private:
    void run() {
        if (handshake())
            transmission();
        shutdownSocket();
        finished_ = true;
    }

    // ---- handshake -------------------------------------------------------

    bool sendOptionReply(std::uint32_t option, std::uint32_t type, ByteView data = {}) {
        Bytes out(20 + data.size());
        putBe64(out.data(), nbd::kOptReplyMagic);
        putBe32(out.data() + 8, option);
        putBe32(out.data() + 12, type);
        putBe32(out.data() + 16, std::uint32_t(data.size()));
        std::copy(data.begin(), data.end(), out.begin() + 20);
        return sendFull(fd_, out.data(), out.size());
    }

    bool nameMatches(const std::string& name) const {
        return name.empty() || name == options_.exportName;
    }

    std::uint16_t transmissionFlags() const {
        std::uint16_t flags = nbd::kFlagHasFlags | nbd::kFlagSendFlush | nbd::kFlagSendFua |
                              nbd::kFlagSendTrim | nbd::kFlagSendWriteZeroes;
        if (limits_.readOnly)
            flags |= nbd::kFlagReadOnly;
        return flags;
    }

    bool sendInfo(std::uint32_t option, std::uint16_t infoType, ByteView body) {
        Bytes data(2 + body.size());
        putBe16(data.data(), infoType);
        std::copy(body.begin(), body.end(), data.begin() + 2);
        return sendOptionReply(option, nbd::kRepInfo, data);
    }

    // Answers NBD_OPT_INFO / NBD_OPT_GO. True if the export was granted.
    bool answerInfo(std::uint32_t option, ByteView data, bool& ioOk) {
        auto request = nbd::parseInfoRequest(data);
        if (!request.ok()) {
            ioOk = sendOptionReply(option, nbd::kRepErrInvalid, asBytes(request.error().message));
            return false;
        }
        if (!nameMatches(request->exportName)) {
            ioOk = sendOptionReply(option, nbd::kRepErrUnknown, asBytes("no such export"));
            return false;
        }
        std::uint8_t exportInfo[10];
        putBe64(exportInfo, limits_.size);
        putBe16(exportInfo + 8, transmissionFlags());
        BlockSizes sizes = device_.blockSizes();
        std::uint8_t blockInfo[12];
        putBe32(blockInfo, sizes.minimum);
        putBe32(blockInfo + 4, sizes.preferred);
        putBe32(blockInfo + 8, sizes.maximum);
        // Block sizes are sent unasked too (the spec allows it): they tell a
        // client our payload limit before it hits it.
        ioOk = sendInfo(option, nbd::kInfoExport, exportInfo) &&
               sendInfo(option, nbd::kInfoBlockSize, blockInfo);
        for (std::uint16_t info : request->infos) {
            if (!ioOk)
                break;
            if (info == nbd::kInfoName)
                ioOk = sendInfo(option, nbd::kInfoName, asBytes(options_.exportName));
            else if (info == nbd::kInfoDescription && !options_.description.empty())
                ioOk = sendInfo(option, nbd::kInfoDescription, asBytes(options_.description));
        }
        ioOk = ioOk && sendOptionReply(option, nbd::kRepAck);
        return ioOk;
    }

    // Fixed newstyle negotiation. True when the client entered transmission.
    bool handshake() {
        std::uint8_t hello[18];
        putBe64(hello, nbd::kInitMagic);
        putBe64(hello + 8, nbd::kOptMagic);
        putBe16(hello + 16, nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes);
        if (!sendFull(fd_, hello, sizeof hello))
            return false;
        std::uint8_t clientFlagBytes[4];
        if (!readFull(fd_, clientFlagBytes, 4))
            return false;
        std::uint32_t clientFlags = getBe32(clientFlagBytes);
        if (clientFlags & ~(nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes)) {
            ISR_LOG_WARN(kLog) << "NBD client sent unknown flags " << clientFlags << "; dropping";
            return false;
        }
        const bool noZeroes = clientFlags & nbd::kClientFlagNoZeroes;

        for (;;) {
            std::uint8_t header[16];
            if (!readFull(fd_, header, sizeof header))
                return false;
            if (getBe64(header) != nbd::kOptMagic) {
                ISR_LOG_WARN(kLog) << "NBD client sent bad option magic; dropping";
                return false;
            }
            std::uint32_t option = getBe32(header + 8);
            std::uint32_t length = getBe32(header + 12);
            if (length > nbd::kMaxOptionLength) {
                ISR_LOG_WARN(kLog) << "NBD option " << option << " with " << length
                                   << " bytes of data; dropping client";
                return false;
            }
            Bytes data(length);
            if (!readFull(fd_, data.data(), data.size()))
                return false;

            bool ioOk = true;
            switch (option) {
            case nbd::kOptExportName: {
                std::string name(asString(data));
                if (!nameMatches(name)) // this option cannot carry an error
                    return false;
                Bytes reply(10 + (noZeroes ? 0 : 124), 0);
                putBe64(reply.data(), limits_.size);
                putBe16(reply.data() + 8, transmissionFlags());
                return sendFull(fd_, reply.data(), reply.size());
            }
            case nbd::kOptGo:
            case nbd::kOptInfo:
                if (answerInfo(option, data, ioOk) && option == nbd::kOptGo)
                    return true;
                break;
            case nbd::kOptList:
                if (length != 0) {
                    ioOk = sendOptionReply(option, nbd::kRepErrInvalid);
                } else {
                    Bytes server(4 + options_.exportName.size());
                    putBe32(server.data(), std::uint32_t(options_.exportName.size()));
                    std::copy(options_.exportName.begin(), options_.exportName.end(),
                              server.begin() + 4);
                    ioOk = sendOptionReply(option, nbd::kRepServer, server) &&
                           sendOptionReply(option, nbd::kRepAck);
                }
                break;
            case nbd::kOptAbort:
                sendOptionReply(option, nbd::kRepAck);
                return false;
            default:
                // STARTTLS, STRUCTURED_REPLY, meta contexts, extended headers,
                // anything newer: not supported. QEMU falls back to simple replies.
                ioOk = sendOptionReply(option, nbd::kRepErrUnsup);
                break;
            }
            if (!ioOk)
                return false;
        }
    }

    // ---- transmission ----------------------------------------------------

    bool sendReply(std::uint64_t handle, std::uint32_t error, ByteView data = {}) {
        std::uint8_t header[nbd::kSimpleReplySize];
        putBe32(header, nbd::kSimpleReplyMagic);
        putBe32(header + 4, error);
        putBe64(header + 8, handle);
        std::lock_guard lock(sendMutex_);
        if (!sendFull(fd_, header, sizeof header))
            return false;
        return error != 0 || data.empty() || sendFull(fd_, data.data(), data.size());
    }

    void transmission() {
        std::vector<std::thread> workers;
        int count = std::max(1, options_.workersPerConnection);
        for (int i = 0; i < count; ++i)
            workers.emplace_back([this] { workerLoop(); });

        std::uint8_t header[nbd::kRequestHeaderSize];
        while (readFull(fd_, header, sizeof header)) {
            auto request = nbd::parseRequest(header);
            if (!request.ok()) {
                ISR_LOG_WARN(kLog) << "NBD: " << request.error().message << "; dropping client";
                break;
            }
            nbd::Verdict verdict = nbd::checkRequest(*request, limits_);
            if (verdict.disconnect) {
                ISR_LOG_WARN(kLog) << "NBD: request type " << request->type << " length "
                                   << request->length << " exceeds limits; dropping client";
                break;
            }
            Job job;
            job.request = *request;
            if (verdict.payloadSize > 0) {
                job.payload.resize(verdict.payloadSize);
                if (!readFull(fd_, job.payload.data(), job.payload.size()))
                    break; // client vanished mid-request: nothing to answer
            }
            counters_.requests++;
            if (request->type == nbd::kCmdDisc)
                break; // soft disconnect: finish what is queued, then close
            if (verdict.error != 0) {
                counters_.errors++;
                ISR_LOG_WARN(kLog) << "NBD: refusing command " << request->type << " flags "
                                   << request->flags << " offset " << request->offset << " length "
                                   << request->length << " (error " << verdict.error << ")";
                if (!sendReply(request->handle, verdict.error))
                    break;
                continue;
            }
            job.cost = job.payload.size() + (request->type == nbd::kCmdRead ? request->length : 0);
            std::unique_lock lock(queueMutex_);
            spaceFreed_.wait(lock, [&] {
                return queuedBytes_ == 0 || queuedBytes_ + job.cost <= options_.maxQueuedBytes;
            });
            queuedBytes_ += job.cost;
            queue_.push_back(std::move(job));
            lock.unlock();
            jobReady_.notify_one();
        }

        {
            std::lock_guard lock(queueMutex_);
            readerDone_ = true;
        }
        jobReady_.notify_all();
        for (auto& worker : workers)
            worker.join();
    }

    void workerLoop() {
        for (;;) {
            std::unique_lock lock(queueMutex_);
            jobReady_.wait(lock, [&] { return readerDone_ || !queue_.empty(); });
            if (queue_.empty())
                return;
            Job job = std::move(queue_.front());
            queue_.pop_front();
            lock.unlock();

            execute(job);
            crypto::wipe(job.payload); // the guest's written data

            lock.lock();
            queuedBytes_ -= job.cost;
            lock.unlock();
            spaceFreed_.notify_all();
        }
    }

    void execute(const Job& job) {
        const nbd::Request& r = job.request;
        const bool fua = r.flags & nbd::kCmdFlagFua;
        Status status;
        Bytes readBuffer;
        switch (r.type) {
        case nbd::kCmdRead:
            readBuffer.resize(r.length);
            if (r.length > 0)
                status = device_.read(r.offset, readBuffer);
            if (status.ok())
                counters_.bytesRead += r.length;
            break;
        case nbd::kCmdWrite:
            if (r.length > 0)
                status = device_.write(r.offset, job.payload, fua);
            if (status.ok())
                counters_.bytesWritten += r.length;
            break;
        case nbd::kCmdFlush:
            status = device_.flush();
            break;
        case nbd::kCmdTrim:
            if (r.length > 0)
                status = device_.trim(r.offset, r.length);
            if (status.ok() && fua)
                status = device_.flush();
            break;
        case nbd::kCmdWriteZeroes:
            if (r.length > 0)
                status = device_.writeZeroes(r.offset, r.length);
            if (status.ok() && fua)
                status = device_.flush();
            break;
        default: // checkRequest() let only the commands above through
            status = Error(Errc::Internal, "unexpected NBD command");
            break;
        }
        std::uint32_t error = 0;
        if (!status.ok()) {
            error = nbd::errorFor(status.error().code);
            counters_.errors++;
            ISR_LOG_WARN(kLog) << "NBD command " << r.type << " offset " << r.offset << " length "
                               << r.length << " failed: " << status.error().describe();
        }
        sendReply(r.handle, error, readBuffer);
        // Plaintext the guest read: not left in the kiosk's heap for the
        // next session (issue #16 item 8).
        crypto::wipe(readBuffer);
    }

    int fd_;
    BlockDevice& device_;
    const NbdServerOptions& options_;
    Counters& counters_;
    nbd::ExportLimits limits_;
    std::thread thread_;
    std::atomic<bool> finished_{false};

    std::mutex sendMutex_;
    std::mutex queueMutex_;
    std::condition_variable jobReady_;
    std::condition_variable spaceFreed_;
    std::deque<Job> queue_;
    std::uint64_t queuedBytes_ = 0;
    bool readerDone_ = false;
};

struct NbdServer::Impl {
    BlockDevice& device;
    NbdServerOptions options;
    int listenFd = -1;
    int wakeFds[2] = {-1, -1};
    std::thread acceptThread;
    std::mutex mutex;  // guards connections, stopped
    Counters counters; // declared before connections: they use it until joined
    std::list<std::unique_ptr<Connection>> connections;
    bool stopped = false;

    Impl(BlockDevice& d, NbdServerOptions o) : device(d), options(std::move(o)) {}

    void reapFinished() {
        std::list<std::unique_ptr<Connection>> done;
        {
            std::lock_guard lock(mutex);
            for (auto it = connections.begin(); it != connections.end();) {
                if ((*it)->finished())
                    done.splice(done.end(), connections, it++);
                else
                    ++it;
            }
        }
        done.clear(); // joins outside the lock
    }

    void acceptLoop() {
        for (;;) {
            pollfd fds[2] = {{listenFd, POLLIN, 0}, {wakeFds[0], POLLIN, 0}};
            int n = ::poll(fds, 2, 1000);
            if (n < 0 && errno != EINTR) {
                ISR_LOG_ERROR(kLog) << "NBD poll failed: " << errnoText(errno);
                return;
            }
            if (fds[1].revents)
                return;
            reapFinished();
            if (n <= 0 || !(fds[0].revents & POLLIN))
                continue;
            int fd = ::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
                    ISR_LOG_WARN(kLog) << "NBD accept failed: " << errnoText(errno);
                }
                continue;
            }
            std::lock_guard lock(mutex);
            if (stopped) {
                ::close(fd);
                return;
            }
            counters.connections++;
            ISR_LOG_INFO(kLog) << "NBD client connected on " << options.socketPath;
            connections.push_back(std::make_unique<Connection>(fd, device, options, counters));
        }
    }
};

Result<std::unique_ptr<NbdServer>> NbdServer::start(BlockDevice& device, NbdServerOptions options) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (options.socketPath.empty() || options.socketPath.size() >= sizeof address.sun_path)
        return Error(Errc::InvalidArgument,
                     "NBD socket path empty or too long: " + options.socketPath);
    std::memcpy(address.sun_path, options.socketPath.c_str(), options.socketPath.size() + 1);

    struct stat st {};
    if (::lstat(options.socketPath.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return Error(Errc::AlreadyExists,
                         "NBD socket path exists and is not a socket: " + options.socketPath);
        ::unlink(options.socketPath.c_str());
    }

    auto impl = std::make_unique<Impl>(device, std::move(options));
    const std::string& path = impl->options.socketPath;
    impl->listenFd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (impl->listenFd < 0)
        return Error(Errc::Io, "socket(AF_UNIX): " + errnoText(errno));
    auto fail = [&](const std::string& what) {
        int err = errno;
        ::close(impl->listenFd);
        ::unlink(path.c_str());
        return Error(err == EACCES ? Errc::AccessDenied : Errc::Io,
                     what + " " + path + ": " + errnoText(err));
    };
    if (::bind(impl->listenFd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
        return fail("bind");
    // bind() applied our umask; set the mode QEMU's user needs explicitly.
    if (::chmod(path.c_str(), impl->options.socketMode) != 0)
        return fail("chmod");
    if (impl->options.socketGroup >= 0 &&
        ::chown(path.c_str(), uid_t(-1), gid_t(impl->options.socketGroup)) != 0)
        return fail("chown");
    if (::listen(impl->listenFd, 16) != 0)
        return fail("listen");
    if (::pipe2(impl->wakeFds, O_CLOEXEC) != 0)
        return fail("pipe");

    Impl* raw = impl.get();
    impl->acceptThread = std::thread([raw] { raw->acceptLoop(); });
    return std::unique_ptr<NbdServer>(new NbdServer(std::move(impl)));
}

NbdServer::NbdServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NbdServer::~NbdServer() {
    stop();
}

void NbdServer::stop() {
    std::list<std::unique_ptr<Connection>> connections;
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->stopped)
            return;
        impl_->stopped = true;
        connections.swap(impl_->connections);
    }
    char byte = 0;
    [[maybe_unused]] ssize_t ignored = ::write(impl_->wakeFds[1], &byte, 1);
    if (impl_->acceptThread.joinable())
        impl_->acceptThread.join();
    ::close(impl_->listenFd);
    ::close(impl_->wakeFds[0]);
    ::close(impl_->wakeFds[1]);
    ::unlink(impl_->options.socketPath.c_str());
    for (auto& connection : connections)
        connection->shutdownSocket();
    connections.clear(); // joins every connection's threads
}

const std::string& NbdServer::socketPath() const {
    return impl_->options.socketPath;
}

std::string NbdServer::uri() const {
    return "nbd+unix:///?socket=" + impl_->options.socketPath;
}

NbdServerStats NbdServer::stats() const {
    const Counters& c = impl_->counters;
    return {c.connections.load(), c.requests.load(), c.errors.load(), c.bytesRead.load(),
            c.bytesWritten.load()};
}

int NbdServer::activeConnections() const {
    return impl_->counters.active.load();
}

} // namespace isr::disk
