// chunkImage (save file -> chunks -> upload) and streamImage (chunks ->
// verified plaintext -> FIFO), see memimg.h.
#include "crypto/crypto.h"
#include "memimg/memimg.h"
#include "memimg/orderedpool.h"
#include "util/fault.h"
#include "util/log.h"
#include "util/posix.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <future>
#include <pthread.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <utility>

namespace isr::memimg {

namespace {

constexpr const char* kLog = "memimg";
constexpr std::size_t kReadSize = 4u << 20;
constexpr std::uint64_t kProgressEvery = 8u << 20;

bool cancelled(const std::atomic<bool>* flag) {
    return flag && flag->load(std::memory_order_relaxed);
}

class RateMeter {
public:
    explicit RateMeter(const ProgressFn& fn, std::uint64_t total) : fn_(fn), total_(total) {}
    void update(std::uint64_t done, bool force = false) {
        if (!fn_ || (!force && done - lastReported_ < kProgressEvery))
            return;
        lastReported_ = done;
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        fn_(Progress{done, total_, s > 0 ? double(done) / s : 0});
    }

private:
    const ProgressFn& fn_;
    std::uint64_t total_;
    std::uint64_t lastReported_ = 0;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

} // namespace

// ---- chunkImage ------------------------------------------------------------------

Result<ChunkImageResult> chunkImage(int fd, ByteView convergenceSecret, const Chunker& chunker,
                                    const UploadFn& upload, const ChunkImageOptions& options,
                                    const ProgressFn& progress) {
    struct stat st {};
    std::uint64_t total = 0;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        const off_t here = ::lseek(fd, 0, SEEK_CUR);
        total = std::uint64_t(st.st_size) - (here > 0 ? std::uint64_t(here) : 0);
    }

    ChunkImageResult result;
    RateMeter meter(progress, total);
    // Secret bytes are copied once so the pool's tasks never outlive them
    // (the pool is declared later, so it is gone before the wipe).
    Bytes secret(convergenceSecret.begin(), convergenceSecret.end());
    crypto::WipeOnExit wipeSecret(secret);
    const int level = options.zstdLevel;

    // Upload runs on a helper thread: one batch uploads while the next fills.
    std::vector<chunk::EncodedChunk> batch;
    std::size_t batchBytes = 0;
    std::future<Result<Uploaded>> inFlight;
    auto collectUpload = [&]() -> Status {
        if (!inFlight.valid())
            return {};
        Result<Uploaded> up = inFlight.get();
        if (!up.ok())
            return std::move(up).error().context("uploading memory image chunks");
        result.newChunks += up->chunks;
        result.bytesUploaded += up->bytes;
        return {};
    };
    auto startUpload = [&]() -> Status {
        ISR_TRY_STATUS(collectUpload());
        if (batch.empty())
            return {};
        inFlight =
            std::async(std::launch::async, [&upload, b = std::move(batch)]() { return upload(b); });
        batch = {};
        batchBytes = 0;
        return {};
    };
    // On an early return the pending upload must finish before `batch` and
    // friends go away; the future's destructor waits for it.
    struct WaitUpload {
        std::future<Result<Uploaded>>& f;
        ~WaitUpload() {
            if (f.valid())
                f.wait();
        }
    } waitUpload{inFlight};

    detail::OrderedPool<chunk::EncodedChunk> pool(options.encodeThreads,
                                                  std::size_t(options.encodeThreads) * 4);
    auto takeOne = [&]() -> Status {
        chunk::EncodedChunk enc = pool.takeNext();
        result.recipe.push_back(enc.ref);
        batchBytes += enc.ciphertext.size();
        batch.push_back(std::move(enc));
        if (batchBytes >= options.batchBytes)
            return startUpload();
        return {};
    };
    auto onChunk = [&](ByteView plain) -> Status {
        while (pool.full())
            ISR_TRY_STATUS(takeOne());
        pool.submit([&secret, level, p = Bytes(plain.begin(), plain.end())]() mutable {
            chunk::EncodedChunk encoded = chunk::encode(secret, p, level);
            crypto::wipe(p); // guest memory, not left in the kiosk's heap
            return encoded;
        });
        ++result.chunks;
        return {};
    };

    StreamingChunker streaming(chunker);
    Bytes buf(kReadSize);
    crypto::WipeOnExit wipeBuf(buf);
    for (;;) {
        if (cancelled(options.cancel))
            return Error(Errc::Cancelled, "chunking the memory image was cancelled");
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errnoError(errno, "reading the memory image");
        }
        if (n == 0)
            break;
        result.bytesIn += std::uint64_t(n);
        ISR_TRY_STATUS(streaming.feed(ByteView(buf.data(), std::size_t(n)), onChunk));
        meter.update(result.bytesIn);
    }
    ISR_TRY_STATUS(streaming.finish(onChunk));
    while (!pool.empty())
        ISR_TRY_STATUS(takeOne());
    ISR_TRY_STATUS(startUpload());
    ISR_TRY_STATUS(collectUpload());
    meter.update(result.bytesIn, true);
    ISR_LOG_INFO(kLog) << "chunked " << result.bytesIn << " bytes into " << result.chunks
                       << " chunks, " << result.newChunks << " new (" << result.bytesUploaded
                       << " bytes uploaded)";
    return result;
}

Result<ChunkImageResult> chunkImage(const std::string& path, ByteView convergenceSecret,
                                    const Chunker& chunker, const UploadFn& upload,
                                    const ChunkImageOptions& options, const ProgressFn& progress) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0)
        return errnoError(errno, "opening memory image " + path);
    return chunkImage(fd.get(), convergenceSecret, chunker, upload, options, progress);
}

// ---- streamImage ------------------------------------------------------------------

namespace {

// Blocks SIGPIPE in this thread while alive, so a write to a pipe whose reader
// left fails with EPIPE instead of killing the kiosk; SIGPIPEs raised
// meanwhile (they are thread-directed) are consumed before unblocking.
class SigpipeGuard {
public:
    SigpipeGuard() {
        sigemptyset(&pipeSet_);
        sigaddset(&pipeSet_, SIGPIPE);
        sigset_t pending;
        sigpending(&pending);
        wasPending_ = sigismember(&pending, SIGPIPE) == 1;
        pthread_sigmask(SIG_BLOCK, &pipeSet_, &old_);
    }
    ~SigpipeGuard() {
        if (!wasPending_) {
            const timespec zero{0, 0};
            while (sigtimedwait(&pipeSet_, nullptr, &zero) == SIGPIPE) {
            }
        }
        pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    SigpipeGuard(const SigpipeGuard&) = delete;
    SigpipeGuard& operator=(const SigpipeGuard&) = delete;

private:
    sigset_t pipeSet_;
    sigset_t old_;
    bool wasPending_ = false;
};

Status writeAll(int fd, ByteView data) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EPIPE)
                return Error(Errc::Io, "writing the memory image: the reader closed the pipe");
            return errnoError(errno, "writing the memory image");
        }
        data = data.subspan(std::size_t(n));
    }
    return {};
}

// Opens a FIFO for writing without blocking forever: a non-blocking open
// fails with ENXIO until a reader has it open.
Result<int> openFifo(const std::string& path, int timeoutMs, const std::atomic<bool>* cancel) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
    for (;;) {
        const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
            const int flags = ::fcntl(fd, F_GETFL);
            if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
                const int err = errno;
                ::close(fd);
                return errnoError(err, "configuring FIFO " + path);
            }
            return fd;
        }
        if (errno != ENXIO && errno != EINTR)
            return errnoError(errno, "opening FIFO " + path);
        if (cancelled(cancel))
            return Error(Errc::Cancelled, "waiting for the reader of " + path + " was cancelled");
        if (std::chrono::steady_clock::now() >= deadline)
            return Error(Errc::Io, "no reader opened FIFO " + path + " within " +
                                       std::to_string(timeoutMs) + " ms");
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

} // namespace

Result<StreamStats> streamImage(const std::vector<chunk::ChunkRef>& recipe, const FetchFn& fetch,
                                const std::string& outputPath, const StreamOptions& options,
                                const ProgressFn& progress) {
    std::uint64_t total = 0;
    for (const auto& ref : recipe)
        total += ref.length;

    const std::size_t count = recipe.size();
    // Decoded plaintext of chunk i, or its error with the chunk named.
    auto fetchAndDecode = [&recipe, &fetch, count](std::size_t i) -> Result<Bytes> {
        const chunk::ChunkRef& ref = recipe[i];
        const std::string what = "memory image chunk " + std::to_string(i + 1) + "/" +
                                 std::to_string(count) + " " + chunk::nameHex(ref.name);
        Result<Bytes> ciphertext = fetch(ref.name);
        if (!ciphertext.ok())
            return std::move(ciphertext).error().context(what);
        Result<Bytes> plain = chunk::decode(ref, *ciphertext);
        if (!plain.ok())
            return std::move(plain).error().context(what);
        return plain;
    };

    // Start fetching before the reader shows up: libvirt's start-up and the
    // first round trips overlap.
    detail::OrderedPool<Result<Bytes>> pool(options.threads,
                                            std::max<std::size_t>(options.chunksAhead, 1));
    std::size_t submitted = 0;
    auto refill = [&] {
        while (submitted < count && !pool.full()) {
            const std::size_t i = submitted++;
            pool.submit([&fetchAndDecode, i] { return fetchAndDecode(i); });
        }
    };
    refill();

    struct stat st {};
    const bool isFifo = ::stat(outputPath.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
    UniqueFd out;
    if (isFifo) {
        ISR_TRY_ASSIGN(int fd, openFifo(outputPath, options.fifoOpenTimeoutMs, options.cancel));
        out = UniqueFd(fd);
    } else {
        out = UniqueFd(::open(outputPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        if (out.get() < 0)
            return errnoError(errno, "creating " + outputPath);
    }
    // Close the output first on failure so a FIFO reader sees EOF while the
    // pool winds down; remove an incomplete regular file.
    auto fail = [&](Error error) -> Error {
        out.reset();
        if (!isFifo)
            ::unlink(outputPath.c_str());
        ISR_LOG_WARN(kLog) << "streaming the memory image failed: " << error.describe();
        return error;
    };

    SigpipeGuard sigpipe;
    RateMeter meter(progress, total);
    StreamStats stats;
    for (std::size_t i = 0; i < count; ++i) {
        if (cancelled(options.cancel))
            return fail(Error(Errc::Cancelled, "streaming the memory image was cancelled"));
        Result<Bytes> plain = pool.takeNext();
        refill();
        if (!plain.ok())
            return fail(std::move(plain).error());
        if (Status st = ISR_FAULT_POINT("memimg.stream.chunk"); !st.ok())
            return fail(std::move(st).error());
        Status written = writeAll(out.get(), *plain);
        if (!written.ok())
            return fail(std::move(written).error());
        stats.bytes += plain->size();
        ++stats.chunks;
        crypto::wipe(*plain); // in the FIFO now; not left in the kiosk's heap
        meter.update(stats.bytes);
    }
    if (!isFifo && ::fsync(out.get()) != 0)
        return fail(errnoError(errno, "syncing " + outputPath));
    if (::close(out.release()) != 0)
        return fail(errnoError(errno, "closing " + outputPath));
    meter.update(stats.bytes, true);
    return stats;
}

} // namespace isr::memimg
