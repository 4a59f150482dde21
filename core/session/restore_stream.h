#pragma once
// RestoreStream: feeds a saved memory image into a FIFO that the hypervisor
// restores from, so download, verification and loading overlap.
//
//   auto stream = RestoreStream::start(recipe, scratch + "/restore.fifo", fetch, options);
//   auto vm = hypervisor->restore(stream->path(), spec);   // reads the FIFO
//   Status fed = stream->finish(vm.ok());                  // joins, removes the FIFO
//
// It owns the FIFO (made by start(), removed by finish() or the destructor)
// and the streamer thread that runs memimg::streamImage into it. It knows
// nothing of caches or stores: chunks come from the fetch function it is
// given (called from several pool threads at once; it must be thread-safe).
//
// Cancelling: cancel(), or options.cancelled returning true at a progress
// report, makes the streamer stop at its next chunk; it then closes the FIFO
// so the reader sees EOF. A reader that failed before opening the FIFO would
// leave the streamer waiting for it: finish(false) opens the read end once to
// unblock it.
//
// Threads: start(), finish() and the destructor from one owning thread;
// cancel() from any thread. Callbacks run on the streamer thread.

#include "chunk/chunk.h"
#include "util/bytes.h"
#include "util/result.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace isr::session {

class RestoreStream {
public:
    using Fetch = std::function<Result<Bytes>(const chunk::ChunkName&)>;

    struct Options {
        // Bytes of the image written so far, and its total.
        std::function<void(std::uint64_t done, std::uint64_t total)> progress;
        // Asked at each progress report: true stops the stream (e.g. the
        // person pressed Cancel).
        std::function<bool()> cancelled;
        // Enough requests in flight to fill a link with tens of ms of round
        // trip (64 KiB chunks: 4 in flight cap 20 ms at ~13 MB/s).
        unsigned threads = 16;
        std::size_t chunksAhead = 64;
    };

    // Makes the FIFO at fifoPath (replacing a leftover) and starts the
    // streamer, which waits for a reader to open it. Io if mkfifo fails.
    static Result<std::unique_ptr<RestoreStream>>
    start(std::vector<chunk::ChunkRef> recipe, std::string fifoPath, Fetch fetch, Options options);
    // Cancels, unblocks and joins a streamer still running, removes the FIFO.
    ~RestoreStream();
    RestoreStream(const RestoreStream&) = delete;
    RestoreStream& operator=(const RestoreStream&) = delete;

    const std::string& path() const { return fifoPath_; }
    std::uint64_t totalBytes() const { return total_; }

    void cancel() { cancel_ = true; }

    // After the reader is done with the FIFO. readerOk false (the restore
    // failed): the streamer is cancelled and unblocked. Joins the streamer,
    // removes the FIFO and returns how the streaming went (the first chunk
    // that could not be fetched or verified, or Io if the reader went away).
    Status finish(bool readerOk);

private:
    RestoreStream(std::vector<chunk::ChunkRef> recipe, std::string fifoPath, Fetch fetch,
                  Options options);
    void run();
    void unblockWriter();

    const std::vector<chunk::ChunkRef> recipe_;
    const std::string fifoPath_;
    const Fetch fetch_;
    const Options options_;
    std::uint64_t total_ = 0;

    std::atomic<bool> cancel_{false};
    Status streamed_; // written by the streamer thread, read after join
    std::thread streamer_;
    bool finished_ = false;
};

} // namespace isr::session
