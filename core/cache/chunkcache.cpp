// ChunkCache: chunk files fanned out by name, indexed by a CacheIndex
// (SQLite, cache_index.h); see cache.h for layout and invariants.
#include "cache/cache.h"
#include "cache/cache_index.h"
#include "util/log.h"
#include "util/posix.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <optional>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace isr::cache {

namespace {

constexpr const char* kLog = "cache";

bool isHexName(std::string_view s) {
    if (s.size() != 2 * sizeof(chunk::ChunkName))
        return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    return true;
}

Status makeDir(const std::string& path) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
        return errnoError(errno, "create " + path);
    return {};
}

Status makeDirs(const std::string& path) {
    for (std::size_t pos = 1; (pos = path.find('/', pos)) != std::string::npos; ++pos)
        ISR_TRY_STATUS(makeDir(path.substr(0, pos)));
    return makeDir(path);
}

Result<Bytes> readFile(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        return errnoError(errno, "open " + path);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return errnoError(errno, "stat " + path);
    Bytes out(std::size_t(st.st_size));
    ISR_TRY_ASSIGN(std::size_t done, preadAll(fd.get(), out, 0, "read " + path));
    out.resize(done);
    return out;
}

std::vector<std::string> listDir(const std::string& path) {
    std::vector<std::string> names;
    DIR* dir = ::opendir(path.c_str());
    if (!dir)
        return names;
    while (struct dirent* e = ::readdir(dir)) {
        std::string n = e->d_name;
        if (n != "." && n != "..")
            names.push_back(std::move(n));
    }
    ::closedir(dir);
    return names;
}

class SqliteChunkCache final : public ChunkCache {
public:
    SqliteChunkCache(std::string dir, std::uint64_t cap, UniqueFd lock)
        : dir_(std::move(dir)), lockFd_(std::move(lock)), cap_(cap) {}
    ~SqliteChunkCache() override {
        std::lock_guard lock(mu_);
        if (index_)
            flushTouchesLocked();
    }

    Status init();

    Result<Bytes> get(const chunk::ChunkName& name) override;
    Status put(const chunk::ChunkName& name, ByteView ciphertext) override;
    bool contains(const chunk::ChunkName& name) override;
    Status remove(const chunk::ChunkName& name) override;
    Status setCapacity(std::uint64_t capBytes) override;
    CacheStats stats() override;

private:
    std::string chunkPath(const chunk::ChunkName& name) const {
        const std::string hex = chunk::nameHex(name);
        return dir_ + "/chunks/" + hex.substr(0, 2) + "/" + hex;
    }
    Status reconcile();

    // --- Everything below requires mu_ to be held. ---
    std::optional<std::uint64_t> lookupLocked(const chunk::ChunkName& name) {
        return index_->lookup(name);
    }
    // A use of a chunk (get, contains, put of a present one) moves it to
    // the front of the LRU order in memory only; the order reaches SQLite
    // in batches (kTouchBatch uses, every put/eviction, close), so a cache
    // hit costs no SQLite write (issue #17: no per-chunk SQLite round trip
    // on the hot path). A crash loses only the LRU order of the uses since
    // the last batch: those chunks are evicted a little earlier than they
    // should be; nothing is lost or wrong.
    static constexpr std::size_t kTouchBatch = 512;
    Status touchLocked(const chunk::ChunkName& name) {
        pendingTouches_[name] = ++clock_;
        if (pendingTouches_.size() >= kTouchBatch)
            flushTouchesLocked();
        return {};
    }
    // Writes the pending uses inside the caller's transaction; the caller
    // clears pendingTouches_ after COMMIT (a rollback keeps them pending).
    Status applyTouchesLocked() {
        for (const auto& [name, lastUsed] : pendingTouches_)
            ISR_TRY_STATUS(index_->touch(name, lastUsed));
        return {};
    }
    // Writes the pending uses in a transaction of their own. On failure
    // they are dropped (only LRU order) with a warning.
    void flushTouchesLocked() {
        if (pendingTouches_.empty())
            return;
        Status st = index_->begin();
        if (st.ok()) {
            st = applyTouchesLocked();
            if (st.ok())
                st = index_->commit();
            else
                index_->rollback();
        }
        if (!st.ok()) {
            ISR_LOG_WARN(kLog) << "cache: LRU order of " << pendingTouches_.size()
                               << " recent uses not saved: " << st.error().describe();
        }
        pendingTouches_.clear();
    }
    struct Victim {
        chunk::ChunkName name;
        std::uint64_t size;
    };
    // Deletes the rows of least-recently-used chunks until bytes_ + incoming
    // <= cap_, inside the caller's transaction. The caller unlinks the files
    // (finishEvictionLocked) only after COMMIT, so a rollback loses nothing.
    Result<std::vector<Victim>> evictLocked(std::uint64_t incoming);
    void finishEvictionLocked(const std::vector<Victim>& victims);
    // Runs evictLocked in its own transaction and finishes it.
    Status evictNowLocked();
    void dropLocked(const chunk::ChunkName& name, std::uint64_t size);

    const std::string dir_;
    UniqueFd lockFd_; // flock'ed: one ChunkCache per directory across processes
    std::atomic<std::uint64_t> tmpCounter_{0};

    std::mutex mu_; // guards index_ and every field below
    std::unique_ptr<CacheIndex> index_;
    std::uint64_t cap_;
    std::uint64_t clock_ = 0;
    std::uint64_t bytes_ = 0;
    std::uint64_t chunks_ = 0;
    std::uint64_t hits_ = 0, misses_ = 0, evictions_ = 0;
    std::map<chunk::ChunkName, std::uint64_t>
        pendingTouches_; // name -> last_used, not yet in SQLite
};

Status SqliteChunkCache::init() {
    ISR_TRY_STATUS(makeDir(dir_ + "/chunks"));
    ISR_TRY_STATUS(makeDir(dir_ + "/tmp"));
    // Nobody else has the lock, so anything in tmp/ is from a crashed writer.
    for (const auto& n : listDir(dir_ + "/tmp"))
        ::unlink((dir_ + "/tmp/" + n).c_str());

    ISR_TRY_ASSIGN(index_, CacheIndex::open(dir_));
    ISR_TRY_STATUS(reconcile());
    std::lock_guard lock(mu_);
    return evictNowLocked();
}

Status SqliteChunkCache::reconcile() {
    std::lock_guard lock(mu_);
    // Rows as the index has them.
    std::map<chunk::ChunkName, std::pair<std::uint64_t, std::uint64_t>> rows; // size, last_used
    {
        // Malformed rows are skipped here and dropped below.
        ISR_TRY_ASSIGN(auto all, index_->all());
        for (const auto& row : all)
            rows[row.name] = {row.size, row.lastUsed};
    }

    // Files as the disk has them. Files the index knows with the right size
    // are trusted (get() verifies each on use); anything else is hashed.
    std::map<chunk::ChunkName, std::pair<std::uint64_t, std::uint64_t>> keep;
    std::uint64_t adopted = 0, deleted = 0;
    const std::string chunksDir = dir_ + "/chunks";
    for (const auto& fan : listDir(chunksDir)) {
        const std::string fanPath = chunksDir + "/" + fan;
        struct stat fst {};
        if (::lstat(fanPath.c_str(), &fst) != 0)
            continue;
        if (!S_ISDIR(fst.st_mode) || fan.size() != 2) {
            ::unlink(fanPath.c_str());
            ++deleted;
            continue;
        }
        for (const auto& file : listDir(fanPath)) {
            const std::string path = fanPath + "/" + file;
            struct stat st {};
            if (::lstat(path.c_str(), &st) != 0)
                continue;
            auto parsed = isHexName(file) && file.compare(0, 2, fan) == 0
                              ? chunk::nameFromHex(file)
                              : Result<chunk::ChunkName>(Error(Errc::InvalidArgument, "bad"));
            if (!S_ISREG(st.st_mode) || !parsed.ok()) {
                ISR_LOG_WARN(kLog) << "removing stray entry " << path;
                ::unlink(path.c_str());
                ++deleted;
                continue;
            }
            const std::uint64_t size = std::uint64_t(st.st_size);
            auto row = rows.find(*parsed);
            if (row != rows.end() && row->second.first == size) {
                keep[*parsed] = row->second;
                continue;
            }
            auto data = readFile(path);
            if (!data.ok() || chunk::nameOf(*data) != *parsed) {
                ISR_LOG_WARN(kLog) << "removing " << path << ": content does not match its name";
                ::unlink(path.c_str());
                ++deleted;
                continue;
            }
            // Adopted files count as least recently used.
            keep[*parsed] = {size, 0};
            ++adopted;
        }
    }

    // Rewrite the index to match, in one transaction.
    ISR_TRY_STATUS(index_->begin());
    auto body = [&]() -> Status {
        std::uint64_t dropped = 0;
        for (const auto& [name, info] : rows)
            if (!keep.count(name)) {
                ISR_TRY_STATUS(index_->erase(name));
                ++dropped;
            }
        if (dropped) {
            ISR_LOG_INFO(kLog) << "dropped " << dropped << " index rows without a file";
        }
        ISR_TRY_STATUS(index_->eraseMalformed());
        for (const auto& [name, info] : keep) {
            auto row = rows.find(name);
            if (row == rows.end() || row->second != info)
                ISR_TRY_STATUS(index_->insert(name, info.first, info.second));
            bytes_ += info.first;
            clock_ = std::max(clock_, info.second);
        }
        chunks_ = keep.size();
        return {};
    }();
    if (!body.ok()) {
        index_->rollback();
        return body;
    }
    ISR_TRY_STATUS(index_->commit());
    if (adopted || deleted) {
        ISR_LOG_INFO(kLog) << "reconciled " << dir_ << ": adopted " << adopted << ", deleted "
                           << deleted;
    }
    return {};
}

void SqliteChunkCache::dropLocked(const chunk::ChunkName& name, std::uint64_t size) {
    pendingTouches_.erase(name);
    ::unlink(chunkPath(name).c_str());
    bytes_ -= std::min(bytes_, size);
    chunks_ -= chunks_ ? 1 : 0;
}

Result<std::vector<SqliteChunkCache::Victim>>
SqliteChunkCache::evictLocked(std::uint64_t incoming) {
    std::vector<Victim> victims;
    std::uint64_t bytes = bytes_;
    std::uint64_t chunks = chunks_;
    while (bytes + incoming > cap_ && chunks > 0) {
        ISR_TRY_ASSIGN(auto oldest, index_->oldest());
        if (!oldest)
            break;
        Victim v{oldest->name, oldest->size};
        ISR_TRY_STATUS(index_->erase(v.name));
        bytes -= std::min(bytes, v.size);
        --chunks;
        victims.push_back(v);
    }
    return victims;
}

void SqliteChunkCache::finishEvictionLocked(const std::vector<Victim>& victims) {
    for (const auto& v : victims) {
        dropLocked(v.name, v.size);
        ++evictions_;
    }
}

Status SqliteChunkCache::evictNowLocked() {
    ISR_TRY_STATUS(index_->begin());
    // The pending uses first, so the eviction sees the true LRU order.
    Status touched = applyTouchesLocked();
    if (!touched.ok()) {
        index_->rollback();
        return touched;
    }
    auto victims = evictLocked(0);
    if (!victims.ok()) {
        index_->rollback();
        return std::move(victims).error();
    }
    ISR_TRY_STATUS(index_->commit());
    pendingTouches_.clear();
    finishEvictionLocked(*victims);
    return {};
}

Result<Bytes> SqliteChunkCache::get(const chunk::ChunkName& name) {
    {
        std::lock_guard lock(mu_);
        if (!lookupLocked(name)) {
            ++misses_;
            return Error(Errc::NotFound, "chunk " + chunk::nameHex(name) + " not cached");
        }
        ISR_TRY_STATUS(touchLocked(name));
    }
    // Read and verify outside the lock.
    const std::string path = chunkPath(name);
    auto data = readFile(path);
    const bool good = data.ok() && chunk::nameOf(*data) == name;
    if (!good) {
        if (data.ok()) {
            ISR_LOG_WARN(kLog) << "cached chunk " << chunk::nameHex(name)
                               << " failed its hash check; removed";
        } else if (data.error().code != Errc::NotFound) {
            ISR_LOG_WARN(kLog) << "cannot read cached chunk: " << data.error().describe();
        }
        std::lock_guard lock(mu_);
        ++misses_;
        // Evicted meanwhile (row gone) or lost/damaged: either way drop it.
        if (auto size = lookupLocked(name)) {
            ISR_TRY_STATUS(index_->erase(name));
            dropLocked(name, *size);
        }
        return Error(Errc::NotFound, "chunk " + chunk::nameHex(name) + " not cached");
    }
    std::lock_guard lock(mu_);
    ++hits_;
    return data;
}

Status SqliteChunkCache::put(const chunk::ChunkName& name, ByteView ciphertext) {
    const chunk::ChunkName actual = chunk::nameOf(ciphertext);
    if (actual != name)
        return Error(Errc::Corrupt, "cache put: name mismatch: expected " + chunk::nameHex(name) +
                                        ", actual " + chunk::nameHex(actual));
    {
        std::lock_guard lock(mu_);
        if (ciphertext.size() > cap_)
            return Error(Errc::NoSpace, "chunk of " + std::to_string(ciphertext.size()) +
                                            " bytes exceeds the cache capacity of " +
                                            std::to_string(cap_));
        if (lookupLocked(name))
            return touchLocked(name);
    }

    // Write and fsync a temp file outside the lock.
    const std::string hex = chunk::nameHex(name);
    const std::string tmp = dir_ + "/tmp/" + hex + "." + std::to_string(tmpCounter_.fetch_add(1));
    {
        UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        if (!fd.valid())
            return errnoError(errno, "create " + tmp);
        if (auto written = pwriteAll(fd.get(), ciphertext, 0, "write " + tmp); !written.ok()) {
            ::unlink(tmp.c_str());
            return written;
        }
        if (::fsync(fd.get()) != 0) {
            const int err = errno;
            ::unlink(tmp.c_str());
            return errnoError(err, "fsync " + tmp);
        }
    }

    std::lock_guard lock(mu_);
    if (lookupLocked(name)) { // another thread won the race
        ::unlink(tmp.c_str());
        return touchLocked(name);
    }
    if (ciphertext.size() > cap_) { // capacity shrank meanwhile
        ::unlink(tmp.c_str());
        return Error(Errc::NoSpace, "chunk exceeds the cache capacity");
    }
    std::vector<Victim> victims;
    auto st = [&]() -> Status {
        ISR_TRY_STATUS(index_->begin());
        auto inner = [&]() -> Status {
            ISR_TRY_STATUS(applyTouchesLocked()); // the true LRU order first
            ISR_TRY_ASSIGN(victims, evictLocked(ciphertext.size()));
            ISR_TRY_STATUS(index_->insert(name, ciphertext.size(), ++clock_));
            ISR_TRY_STATUS(makeDir(dir_ + "/chunks/" + hex.substr(0, 2)));
            // No directory fsync: a rename lost in a crash is just a miss,
            // and reconcile() drops the row.
            if (::rename(tmp.c_str(), chunkPath(name).c_str()) != 0)
                return errnoError(errno, "rename into " + chunkPath(name));
            return {};
        }();
        if (!inner.ok()) {
            index_->rollback();
            return inner;
        }
        return index_->commit();
    }();
    if (!st.ok()) {
        // Rolled back: the victims' rows and files are both still there.
        ::unlink(tmp.c_str());
        ISR_LOG_WARN(kLog) << "put failed: " << st.error().describe();
        return st;
    }
    pendingTouches_.clear();
    finishEvictionLocked(victims);
    bytes_ += ciphertext.size();
    ++chunks_;
    return {};
}

bool SqliteChunkCache::contains(const chunk::ChunkName& name) {
    std::lock_guard lock(mu_);
    if (!lookupLocked(name))
        return false;
    (void)touchLocked(name);
    return true;
}

Status SqliteChunkCache::remove(const chunk::ChunkName& name) {
    std::lock_guard lock(mu_);
    auto size = lookupLocked(name);
    if (!size)
        return {};
    ISR_TRY_STATUS(index_->erase(name));
    dropLocked(name, *size);
    return {};
}

Status SqliteChunkCache::setCapacity(std::uint64_t capBytes) {
    std::lock_guard lock(mu_);
    cap_ = capBytes;
    return evictNowLocked();
}

CacheStats SqliteChunkCache::stats() {
    std::lock_guard lock(mu_);
    return {bytes_, chunks_, cap_, hits_, misses_, evictions_};
}

} // namespace

Result<std::unique_ptr<ChunkCache>> ChunkCache::open(const std::string& directory,
                                                     std::uint64_t capBytes) {
    if (directory.empty() || directory.front() != '/')
        return Error(Errc::InvalidArgument,
                     "cache directory \"" + directory + "\" is not absolute");
    std::string dir = directory;
    while (dir.size() > 1 && dir.back() == '/')
        dir.pop_back();
    ISR_TRY_STATUS(makeDirs(dir));
    // One ChunkCache per directory: reconcile and the tmp/ sweep assume no
    // other writer.
    const std::string lockPath = dir + "/lock";
    UniqueFd lock(::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!lock.valid())
        return errnoError(errno, "open " + lockPath);
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return Error(Errc::Locked, "cache " + dir + " is in use by another process");
        return errnoError(errno, "lock " + lockPath);
    }
    auto cache = std::make_unique<SqliteChunkCache>(dir, capBytes, std::move(lock));
    ISR_TRY_STATUS(cache->init());
    return std::unique_ptr<ChunkCache>(std::move(cache));
}

} // namespace isr::cache
