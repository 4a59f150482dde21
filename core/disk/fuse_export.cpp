#include "disk/fuse_export.h"

#include "util/log.h"
#include "util/process.h"

#define FUSE_USE_VERSION 34
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/falloc.h>
#include <mutex>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace isr::disk {

namespace {

constexpr const char* kLog = "disk";
constexpr fuse_ino_t kFileIno = 2; // FUSE_ROOT_ID (1) is the directory
// The file never changes size or identity, and nothing but this mount
// changes its contents: the kernel may cache attributes and names for long.
constexpr double kAttrTimeout = 86400.0;

// libfuse reports its failures (mount errors above all) through fuse_log.
// Route them to our log, and keep the last one of this thread so start()
// can say why a mount failed.
thread_local std::string lastFuseMessage;

__attribute__((format(printf, 2, 0))) void fuseLogToOurs(enum fuse_log_level level,
                                                         const char* format, va_list args) {
    char text[512];
    std::vsnprintf(text, sizeof text, format, args);
    std::string line(text);
    while (!line.empty() && line.back() == '\n')
        line.pop_back();
    lastFuseMessage = line;
    if (level <= FUSE_LOG_ERR) {
        ISR_LOG_WARN(kLog) << "libfuse: " << line;
    } else {
        ISR_LOG_DEBUG(kLog) << "libfuse: " << line;
    }
}

int errnoFor(const Error& error) {
    switch (error.code) {
    case Errc::InvalidArgument:
        return EINVAL;
    case Errc::NoSpace:
        return ENOSPC;
    default:
        return EIO;
    }
}

} // namespace

struct FuseExport::Impl {
    BlockDevice& device;
    FuseExportOptions options;
    std::string filePath;
    std::uint64_t size = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    timespec startTime{};

    fuse_session* session = nullptr;
    int wakeFd = -1; // eventfd: stop() makes every loop thread return
    std::vector<std::thread> threads;
    std::atomic<bool> stopping{false};
    std::mutex stopMutex;
    bool stopped = false;
    // Wakes requests waiting for the store (withStoreWait) at stop().
    std::mutex waitMutex;
    std::condition_variable waitCv;

    std::atomic<std::uint64_t> reads{0}, bytesRead{0}, writes{0}, bytesWritten{0}, flushes{0},
        trims{0}, errors{0}, waitingForStore{0}, storeRetries{0};

    Impl(BlockDevice& d, FuseExportOptions o) : device(d), options(std::move(o)) {}

    struct stat attrOf(fuse_ino_t ino) const {
        struct stat st {};
        st.st_ino = ino;
        st.st_uid = uid;
        st.st_gid = gid;
        st.st_atim = st.st_mtim = st.st_ctim = startTime;
        if (ino == FUSE_ROOT_ID) {
            // Anyone the kernel lets through (allowOther) may look the file
            // up; the file's own mode decides who may open it.
            st.st_mode = S_IFDIR | 0711;
            st.st_nlink = 2;
        } else {
            st.st_mode = S_IFREG | (options.fileMode & 07777);
            st.st_nlink = 1;
            st.st_size = off_t(size);
            st.st_blksize = 4096;
            st.st_blocks = blkcnt_t((size + 511) / 512);
        }
        return st;
    }

    void replyError(fuse_req_t req, int err) {
        errors++;
        fuse_reply_err(req, err);
    }

    // Runs `op` until it does not fail with Transient, or stop() (options,
    // storeRetryFirst). `what` names the request for the log.
    template <typename Op> Status withStoreWait(const char* what, std::uint64_t offset, Op&& op) {
        Status status = op();
        if (status.ok() || status.error().code != Errc::Transient)
            return status;
        waitingForStore++;
        auto delay = options.storeRetryFirst;
        int tries = 0;
        ISR_LOG_WARN(kLog) << "guest RAM " << what << " at " << offset
                           << " waits for the store: " << status.error().describe();
        while (!status.ok() && status.error().code == Errc::Transient) {
            {
                std::unique_lock lock(waitMutex);
                if (waitCv.wait_for(lock, delay, [this] { return stopping.load(); }))
                    break;
            }
            delay = std::min(delay * 2, options.storeRetryMax);
            storeRetries++;
            ++tries;
            status = op();
        }
        waitingForStore--;
        if (status.ok()) {
            ISR_LOG_WARN(kLog) << "guest RAM " << what << " at " << offset
                               << " got the store back after " << tries << " retries";
        }
        return status;
    }

    void loop();
};

namespace {

FuseExport::Impl& implOf(fuse_req_t req) {
    return *static_cast<FuseExport::Impl*>(fuse_req_userdata(req));
}

void opInit(void* userdata, fuse_conn_info* conn) {
    auto& impl = *static_cast<FuseExport::Impl*>(userdata);
    // Guest RAM must go through the page cache and be mapped; a write-back
    // cache would hold writes of write(2) callers too, which nobody here
    // needs, and would let the kernel extend the file on its own.
    conn->want &= ~unsigned(FUSE_CAP_WRITEBACK_CACHE);
    // Contents change only through this mount, so the page cache is always
    // right. With auto_inval_data the kernel drops the whole file's cache
    // whenever the mtime it updated itself (on a write fault) differs from
    // ours on the next getattr: every cached page of guest RAM would be
    // read again.
    conn->want &= ~unsigned(FUSE_CAP_AUTO_INVAL_DATA);
    if (conn->max_readahead > impl.options.maxReadahead)
        conn->max_readahead = impl.options.maxReadahead;
}

void opLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    auto& impl = implOf(req);
    if (parent != FUSE_ROOT_ID || impl.options.fileName != name) {
        fuse_reply_err(req, ENOENT); // not an error of ours: not counted
        return;
    }
    fuse_entry_param entry{};
    entry.ino = kFileIno;
    entry.generation = 1;
    entry.attr = impl.attrOf(kFileIno);
    entry.attr_timeout = kAttrTimeout;
    entry.entry_timeout = kAttrTimeout;
    fuse_reply_entry(req, &entry);
}

void opGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    auto& impl = implOf(req);
    struct stat st = impl.attrOf(ino);
    fuse_reply_attr(req, &st, kAttrTimeout);
}

void opSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int toSet, fuse_file_info*) {
    auto& impl = implOf(req);
    if (ino != kFileIno && (toSet & FUSE_SET_ATTR_SIZE)) {
        impl.replyError(req, EISDIR);
        return;
    }
    // The file is the device: its size is fixed. Truncating to the size it
    // has is harmless (QEMU does not, but tools might); anything else would
    // change what guest physical addresses mean.
    if ((toSet & FUSE_SET_ATTR_SIZE) && std::uint64_t(attr->st_size) != impl.size) {
        impl.replyError(req, EINVAL);
        return;
    }
    // Mode and owner are the fence (options); the kernel has already checked
    // the caller may change them, but they are not the caller's to change.
    if (toSet & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        impl.replyError(req, EPERM);
        return;
    }
    // Times (touch) are accepted and ignored: nothing depends on them.
    struct stat st = impl.attrOf(ino);
    fuse_reply_attr(req, &st, kAttrTimeout);
}

void opRefuseEntry(fuse_req_t req) {
    implOf(req).replyError(req, EPERM);
}

void opMknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) {
    opRefuseEntry(req);
}
void opMkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) {
    opRefuseEntry(req);
}
void opUnlink(fuse_req_t req, fuse_ino_t, const char*) {
    opRefuseEntry(req);
}
void opSymlink(fuse_req_t req, const char*, fuse_ino_t, const char*) {
    opRefuseEntry(req);
}
void opRename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) {
    opRefuseEntry(req);
}
void opLink(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) {
    opRefuseEntry(req);
}
void opCreate(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) {
    opRefuseEntry(req);
}

void opOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    auto& impl = implOf(req);
    if (ino != kFileIno) {
        impl.replyError(req, EISDIR);
        return;
    }
    if (fi->flags & O_TRUNC) { // would be a size change (atomic_o_trunc)
        impl.replyError(req, EINVAL);
        return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY && impl.device.readOnly()) {
        impl.replyError(req, EROFS);
        return;
    }
    fi->direct_io = 0; // QEMU maps it
    // Without keep_cache every open (the kiosk's own, to fsync) would drop
    // the file's page cache, i.e. every page of guest RAM read so far.
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

void opRead(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
    auto& impl = implOf(req);
    if (off < 0) {
        impl.replyError(req, EINVAL);
        return;
    }
    std::uint64_t offset = std::uint64_t(off);
    if (offset >= impl.size || size == 0) {
        fuse_reply_buf(req, nullptr, 0); // end of file
        return;
    }
    std::uint64_t length = std::min<std::uint64_t>(size, impl.size - offset);
    // One buffer per loop thread, grown to the largest read (1 MiB at most:
    // libfuse's buffer bounds what the kernel asks for).
    thread_local Bytes buffer;
    if (buffer.size() < length)
        buffer.resize(length);
    Status status = impl.withStoreWait("read", offset, [&] {
        return impl.device.read(offset, MutableByteView(buffer.data(), length));
    });
    if (!status.ok()) {
        ISR_LOG_WARN(kLog) << "guest RAM read at " << offset << " (" << length
                           << " bytes) failed: " << status.error().describe();
        impl.replyError(req, errnoFor(status.error()));
        return;
    }
    impl.reads++;
    impl.bytesRead += length;
    fuse_reply_buf(req, reinterpret_cast<const char*>(buffer.data()), length);
}

void opWrite(fuse_req_t req, fuse_ino_t, const char* data, size_t size, off_t off,
             fuse_file_info*) {
    auto& impl = implOf(req);
    if (off < 0) {
        impl.replyError(req, EINVAL);
        return;
    }
    std::uint64_t offset = std::uint64_t(off);
    if (size == 0) {
        fuse_reply_write(req, 0);
        return;
    }
    // The file cannot grow: a write past the end is short, or EFBIG if
    // nothing of it is inside.
    if (offset >= impl.size) {
        impl.replyError(req, EFBIG);
        return;
    }
    std::uint64_t length = std::min<std::uint64_t>(size, impl.size - offset);
    Status status = impl.withStoreWait("write", offset, [&] {
        return impl.device.write(
            offset, ByteView(reinterpret_cast<const std::uint8_t*>(data), length), false);
    });
    if (!status.ok()) {
        ISR_LOG_WARN(kLog) << "guest RAM write at " << offset << " (" << length
                           << " bytes) failed: " << status.error().describe();
        impl.replyError(req, errnoFor(status.error()));
        return;
    }
    impl.writes++;
    impl.bytesWritten += length;
    fuse_reply_write(req, length);
}

void flushDevice(fuse_req_t req) {
    auto& impl = implOf(req);
    Status status = impl.withStoreWait("flush", 0, [&] { return impl.device.flush(); });
    if (!status.ok()) {
        ISR_LOG_WARN(kLog) << "guest RAM flush failed: " << status.error().describe();
        impl.replyError(req, errnoFor(status.error()));
        return;
    }
    impl.flushes++;
    fuse_reply_err(req, 0);
}

void opFlush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
    flushDevice(req);
}

void opFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
    flushDevice(req);
}

void opFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, fuse_file_info*) {
    auto& impl = implOf(req);
    if (ino != kFileIno || off < 0 || len <= 0) {
        impl.replyError(req, EINVAL);
        return;
    }
    std::uint64_t offset = std::uint64_t(off);
    std::uint64_t end = offset + std::uint64_t(len);
    if (end < offset) {
        impl.replyError(req, EINVAL);
        return;
    }
    bool keepSize = mode & FALLOC_FL_KEEP_SIZE;
    int action = mode & ~FALLOC_FL_KEEP_SIZE;
    if (action == 0) {
        // Plain allocation: every byte of the file already exists; growing
        // it is refused like any size change.
        if (end > impl.size && !keepSize)
            impl.replyError(req, EFBIG);
        else
            fuse_reply_err(req, 0);
        return;
    }
    if (action != FALLOC_FL_PUNCH_HOLE && action != FALLOC_FL_ZERO_RANGE) {
        impl.replyError(req, EOPNOTSUPP);
        return;
    }
    if (action == FALLOC_FL_ZERO_RANGE && end > impl.size && !keepSize) {
        impl.replyError(req, EFBIG);
        return;
    }
    end = std::min(end, impl.size);
    if (offset >= end) { // entirely past the end: nothing there to zero
        fuse_reply_err(req, 0);
        return;
    }
    // A punched hole reads as zeroes (the balloon's free page reporting uses
    // it for pages the guest freed). The kernel has written back and will
    // drop the range's cached pages around this call.
    Status status = impl.withStoreWait("trim", offset, [&] {
        return action == FALLOC_FL_PUNCH_HOLE ? impl.device.trim(offset, end - offset)
                                              : impl.device.writeZeroes(offset, end - offset);
    });
    if (!status.ok()) {
        ISR_LOG_WARN(kLog) << "guest RAM fallocate at " << offset
                           << " failed: " << status.error().describe();
        impl.replyError(req, errnoFor(status.error()));
        return;
    }
    impl.trims++;
    fuse_reply_err(req, 0);
}

void opOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    if (ino != FUSE_ROOT_ID) {
        implOf(req).replyError(req, ENOTDIR);
        return;
    }
    fuse_reply_open(req, fi);
}

void opReaddir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
    auto& impl = implOf(req);
    struct Entry {
        const char* name;
        fuse_ino_t ino;
    };
    const Entry entries[] = {
        {".", FUSE_ROOT_ID}, {"..", FUSE_ROOT_ID}, {impl.options.fileName.c_str(), kFileIno}};
    std::vector<char> buffer(size);
    std::size_t used = 0;
    for (off_t i = off; i < off_t(std::size(entries)); ++i) {
        struct stat st = impl.attrOf(entries[i].ino);
        std::size_t need =
            fuse_add_direntry(req, buffer.data() + used, size - used, entries[i].name, &st, i + 1);
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buffer.data(), used);
}

const fuse_lowlevel_ops kOps = [] {
    fuse_lowlevel_ops ops{};
    ops.init = opInit;
    ops.lookup = opLookup;
    ops.getattr = opGetattr;
    ops.setattr = opSetattr;
    ops.mknod = opMknod;
    ops.mkdir = opMkdir;
    ops.unlink = opUnlink;
    ops.rmdir = opUnlink;
    ops.symlink = opSymlink;
    ops.rename = opRename;
    ops.link = opLink;
    ops.create = opCreate;
    ops.open = opOpen;
    ops.read = opRead;
    ops.write = opWrite;
    ops.flush = opFlush;
    ops.fsync = opFsync;
    ops.fallocate = opFallocate;
    ops.opendir = opOpendir;
    ops.readdir = opReaddir;
    // Not set on purpose: write_buf (libfuse would then splice requests
    // instead of reading them into its buffer, which our loop relies on).
    return ops;
}();

} // namespace

// Why our own loop rather than fuse_session_loop_mt: stop() must return while
// QEMU may still map the file. Its loop threads sit in a blocking read() of
// the FUSE device, and a (lazy) unmount does not end that read while the file
// is mapped, so they could not be joined. Ours poll the device (non-blocking)
// and an eventfd, so stop() wakes them, joins them, and only then closes the
// device (which aborts the connection: the kernel fails what is pending).
void FuseExport::Impl::loop() {
    // A thread that serves the kernel's writeback must not itself wait for
    // writeback when it allocates memory (PR_SET_IO_FLUSHER, as block and
    // FUSE daemons do). Needs CAP_SYS_RESOURCE; without it we do without.
    if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) {
        ISR_LOG_DEBUG(kLog) << "PR_SET_IO_FLUSHER: " << std::strerror(errno);
    }
    fuse_buf buffer{}; // libfuse allocates .mem on the first receive
    pollfd fds[2] = {{fuse_session_fd(session), POLLIN, 0}, {wakeFd, POLLIN, 0}};
    while (!stopping.load()) {
        int ready = ::poll(fds, 2, -1);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            ISR_LOG_ERROR(kLog) << "FUSE loop poll: " << std::strerror(errno);
            break;
        }
        if (fds[1].revents)
            break;
        if (fds[0].revents & (POLLERR | POLLHUP)) // connection aborted
            break;
        if (!(fds[0].revents & POLLIN))
            continue;
        int received = fuse_session_receive_buf(session, &buffer);
        if (received == -EAGAIN || received == -EINTR)
            continue; // another thread took the request
        if (received <= 0) {
            // 0: unmounted or aborted from outside (libfuse marks the
            // session exited); < 0: the device failed.
            if (received < 0) {
                ISR_LOG_ERROR(kLog) << "FUSE device read: " << std::strerror(-received);
            }
            break;
        }
        fuse_session_process_buf(session, &buffer);
    }
    std::free(buffer.mem);
}

FuseExport::FuseExport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FuseExport::~FuseExport() {
    stop();
}

Result<std::unique_ptr<FuseExport>> FuseExport::start(BlockDevice& device,
                                                      FuseExportOptions options) {
    const std::string& name = options.fileName;
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
        return Error(Errc::InvalidArgument, "FUSE export: bad file name '" + name + "'");
    if (options.threads < 1)
        return Error(Errc::InvalidArgument, "FUSE export: threads must be at least 1");
    if (device.size() == 0)
        return Error(Errc::InvalidArgument, "FUSE export: the device is empty");
    struct stat st {};
    if (::stat(options.mountDir.c_str(), &st) != 0) {
        int err = errno;
        if (err == ENOTCONN)
            return Error(Errc::Io, "FUSE export: " + options.mountDir +
                                       " is a dead FUSE mount (a kiosk that crashed?); "
                                       "`fusermount3 -u -z` it first");
        return Error(Errc::InvalidArgument,
                     "FUSE export: mount dir " + options.mountDir + ": " + std::strerror(err));
    }
    if (!S_ISDIR(st.st_mode))
        return Error(Errc::InvalidArgument,
                     "FUSE export: mount dir " + options.mountDir + " is not a directory");

    static std::once_flag logOnce;
    std::call_once(logOnce, [] { fuse_set_log_func(fuseLogToOurs); });

    auto impl = std::make_unique<Impl>(device, std::move(options));
    impl->size = device.size();
    impl->uid = ::geteuid();
    impl->gid = impl->options.fileGroup >= 0 ? gid_t(impl->options.fileGroup) : ::getegid();
    ::clock_gettime(CLOCK_REALTIME, &impl->startTime);
    impl->filePath = impl->options.mountDir + "/" + impl->options.fileName;

    // The kernel enforces the mode and owner we report (default_permissions);
    // without it a FUSE file system checks nothing itself and we would have
    // to. fsname/subtype show as "isr" / "fuse.isr-ram" in the mount table.
    std::string mountOptions = "default_permissions,fsname=isr,subtype=isr-ram";
    if (impl->options.allowOther)
        mountOptions += ",allow_other";
    fuse_args args = FUSE_ARGS_INIT(0, nullptr);
    for (const char* arg : {"isr-fuse", "-o", mountOptions.c_str()})
        if (fuse_opt_add_arg(&args, arg) != 0) {
            fuse_opt_free_args(&args);
            return Error(Errc::Internal, "FUSE export: out of memory");
        }
    lastFuseMessage.clear();
    impl->session = fuse_session_new(&args, &kOps, sizeof kOps, impl.get());
    fuse_opt_free_args(&args);
    if (!impl->session)
        return Error(Errc::Internal, "FUSE export: fuse_session_new failed: " + lastFuseMessage);
    if (fuse_session_mount(impl->session, impl->options.mountDir.c_str()) != 0) {
        std::string why = lastFuseMessage;
        fuse_session_destroy(impl->session);
        impl->session = nullptr;
        return Error(Errc::Io, "FUSE export: cannot mount " + impl->options.mountDir +
                                   (why.empty() ? std::string(" (see stderr)") : ": " + why));
    }
    int fd = fuse_session_fd(impl->session);
    // Non-blocking so a loop thread that lost the race for a request goes
    // back to poll; close-on-exec so a child (qemu-img, QEMU itself) never
    // holds the connection open after we close it.
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    impl->wakeFd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (impl->wakeFd < 0) {
        int err = errno;
        fuse_session_unmount(impl->session);
        fuse_session_destroy(impl->session);
        impl->session = nullptr;
        return Error(Errc::Io, std::string("FUSE export: eventfd: ") + std::strerror(err));
    }
    Impl* raw = impl.get();
    for (int i = 0; i < raw->options.threads; ++i)
        raw->threads.emplace_back([raw] { raw->loop(); });
    ISR_LOG_INFO(kLog) << "serving " << raw->size << " bytes as " << raw->filePath << " ("
                       << raw->options.threads << " threads"
                       << (raw->options.allowOther ? ", allow_other" : "") << ")";
    return std::unique_ptr<FuseExport>(new FuseExport(std::move(impl)));
}

void FuseExport::stop() {
    Impl& impl = *impl_;
    std::lock_guard lock(impl.stopMutex);
    if (impl.stopped)
        return;
    impl.stopped = true;
    {
        std::lock_guard wake(impl.waitMutex);
        impl.stopping = true;
    }
    impl.waitCv.notify_all();
    std::uint64_t one = 1;
    if (::write(impl.wakeFd, &one, sizeof one) < 0) {
        ISR_LOG_ERROR(kLog) << "FUSE export: cannot wake the loop: " << std::strerror(errno);
    }
    for (auto& thread : impl.threads)
        thread.join();
    impl.threads.clear();
    // Closes the device first (aborting the connection: requests still
    // queued fail with an error instead of waiting for us), then detaches
    // the mount lazily (umount2(MNT_DETACH) as root, else `fusermount3 -u
    // -z`), so a process that still maps the file does not block it.
    fuse_session_unmount(impl.session);
    fuse_session_destroy(impl.session);
    impl.session = nullptr;
    ::close(impl.wakeFd);
    impl.wakeFd = -1;
    ISR_LOG_INFO(kLog) << "stopped serving " << impl.filePath;
}

Status FuseExport::detachLeftover(const std::string& mountDir) {
    // A mount point: its own device, or a connection that is gone.
    struct stat st {};
    struct stat parent {};
    const bool mounted =
        ::stat(mountDir.c_str(), &st) == 0
            ? ::stat((mountDir + "/..").c_str(), &parent) == 0 && st.st_dev != parent.st_dev
            : errno == ENOTCONN;
    if (!mounted)
        return {};
    if (::geteuid() == 0) {
        if (::umount2(mountDir.c_str(), MNT_DETACH) != 0)
            return Error(Errc::Io, "detaching the leftover FUSE mount " + mountDir + ": " +
                                       std::strerror(errno));
    } else {
        if (auto r = runProgramChecked({"fusermount3", "-u", "-z", mountDir}); !r.ok())
            return r.error();
    }
    ISR_LOG_WARN(kLog) << "detached " << mountDir
                       << ", a FUSE mount left by a process that died while serving";
    return {};
}

const std::string& FuseExport::mountDir() const {
    return impl_->options.mountDir;
}

const std::string& FuseExport::filePath() const {
    return impl_->filePath;
}

FuseExportStats FuseExport::stats() const {
    return {impl_->reads.load(),        impl_->bytesRead.load(),       impl_->writes.load(),
            impl_->bytesWritten.load(), impl_->flushes.load(),         impl_->trims.load(),
            impl_->errors.load(),       impl_->waitingForStore.load(), impl_->storeRetries.load()};
}

} // namespace isr::disk
