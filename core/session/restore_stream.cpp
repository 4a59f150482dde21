#include "session/restore_stream.h"

#include "memimg/memimg.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace isr::session {

Result<std::unique_ptr<RestoreStream>> RestoreStream::start(std::vector<chunk::ChunkRef> recipe,
                                                            std::string fifoPath, Fetch fetch,
                                                            Options options) {
    ::unlink(fifoPath.c_str());
    if (::mkfifo(fifoPath.c_str(), 0600) != 0)
        return Error(Errc::Io, std::string("mkfifo: ") + std::strerror(errno));
    std::unique_ptr<RestoreStream> stream(new RestoreStream(std::move(recipe), std::move(fifoPath),
                                                            std::move(fetch), std::move(options)));
    stream->streamer_ = std::thread([s = stream.get()] { s->run(); });
    return stream;
}

RestoreStream::RestoreStream(std::vector<chunk::ChunkRef> recipe, std::string fifoPath, Fetch fetch,
                             Options options)
    : recipe_(std::move(recipe)), fifoPath_(std::move(fifoPath)), fetch_(std::move(fetch)),
      options_(std::move(options)) {
    for (const auto& r : recipe_)
        total_ += r.length;
}

RestoreStream::~RestoreStream() {
    if (!finished_)
        (void)finish(false); // the owner did not ask how it went: nobody reads it
}

void RestoreStream::run() {
    memimg::StreamOptions so;
    so.cancel = &cancel_;
    so.threads = options_.threads;
    so.chunksAhead = options_.chunksAhead;
    auto r = memimg::streamImage(recipe_, fetch_, fifoPath_, so, [this](const memimg::Progress& p) {
        if (options_.cancelled && options_.cancelled())
            cancel_ = true;
        if (options_.progress)
            options_.progress(p.done, total_);
    });
    if (!r.ok())
        streamed_ = std::move(r).error();
}

// A streamer still waiting in open() for a reader that will never come (the
// restore failed before libvirt opened the FIFO) gets one that closes at once.
void RestoreStream::unblockWriter() {
    int fd = ::open(fifoPath_.c_str(), O_RDONLY | O_NONBLOCK);
    if (fd >= 0)
        ::close(fd);
}

Status RestoreStream::finish(bool readerOk) {
    if (finished_)
        return streamed_;
    finished_ = true;
    if (!readerOk) {
        cancel_ = true;
        unblockWriter();
    }
    if (streamer_.joinable())
        streamer_.join();
    ::unlink(fifoPath_.c_str());
    return streamed_;
}

} // namespace isr::session
