// ChunkCache on SQLite + files; see cache.h for layout and invariants.
#include "util/posix.h"
#include "cache/cache.h"
#include "util/log.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <optional>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace isr::cache {

namespace {

constexpr const char* kLog = "cache";

// Schema migrations, applied in order; migration i takes the database from
// user_version i to i+1 in one transaction. Append only; never edit one that
// has shipped.
//
// last_used is a logical clock (a counter persisted through the rows), not
// wall time: LRU order must not depend on clock steps or timer resolution.
const char* const kMigrations[] = {
    R"sql(
    CREATE TABLE chunks (
        name      BLOB    PRIMARY KEY NOT NULL,
        size      INTEGER NOT NULL,
        last_used INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX chunks_by_last_used ON chunks(last_used);
    )sql",
};
constexpr int kSchemaVersion = int(std::size(kMigrations));



struct DbCloser {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

Error sqlError(sqlite3* db, const std::string& what) {
    const int rc = sqlite3_extended_errcode(db);
    const int primary = rc & 0xff;
    Errc code = Errc::Io;
    if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB)
        code = Errc::Corrupt;
    else if (primary == SQLITE_FULL)
        code = Errc::NoSpace;
    else if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        code = Errc::Locked;
    else if (primary == SQLITE_PERM || primary == SQLITE_READONLY || primary == SQLITE_AUTH)
        code = Errc::AccessDenied;
    return Error(code, what + ": " + sqlite3_errmsg(db));
}

Status exec(sqlite3* db, const char* sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
        Error e = sqlError(db, std::string("sqlite: ") + (msg ? msg : "?"));
        sqlite3_free(msg);
        return e;
    }
    return {};
}

Result<Stmt> prepare(sqlite3* db, const char* sql) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr) != SQLITE_OK)
        return sqlError(db, std::string("prepare ") + sql);
    return Stmt(raw);
}

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
    std::size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errnoError(errno, "read " + path);
        if (n == 0)
            break;
        done += std::size_t(n);
    }
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
    Status openDatabase();
    Status migrate();
    Status prepareStatements();
    Status reconcile();

    // --- Everything below requires mu_ to be held. ---
    std::optional<std::uint64_t> lookupLocked(const chunk::ChunkName& name);
    Status touchLocked(const chunk::ChunkName& name);
    Status deleteRowLocked(const chunk::ChunkName& name);
    Status insertRowLocked(const chunk::ChunkName& name, std::uint64_t size,
                           std::uint64_t lastUsed);
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

    std::mutex mu_; // guards db_, the statements and every field below
    Db db_;
    Stmt selectStmt_, touchStmt_, insertStmt_, deleteStmt_, oldestStmt_;
    std::uint64_t cap_;
    std::uint64_t clock_ = 0;
    std::uint64_t bytes_ = 0;
    std::uint64_t chunks_ = 0;
    std::uint64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

Status SqliteChunkCache::openDatabase() {
    const std::string path = dir_ + "/index.sqlite";
    sqlite3* raw = nullptr;
    const int rc =
        sqlite3_open_v2(path.c_str(), &raw,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    db_.reset(raw);
    if (rc != SQLITE_OK)
        return raw ? sqlError(raw, "open " + path) : Error(Errc::Io, "open " + path);
    sqlite3_extended_result_codes(db_.get(), 1);
    sqlite3_busy_timeout(db_.get(), 5000);
    // WAL: readers never block the writer. synchronous=NORMAL may lose the
    // last transactions on power loss, which reconcile() repairs on open.
    ISR_TRY_STATUS(exec(db_.get(), "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"));
    return {};
}

Status SqliteChunkCache::migrate() {
    Stmt version;
    { ISR_TRY_ASSIGN(version, prepare(db_.get(), "PRAGMA user_version")); }
    if (sqlite3_step(version.get()) != SQLITE_ROW)
        return sqlError(db_.get(), "read user_version");
    const int current = sqlite3_column_int(version.get(), 0);
    version.reset();
    if (current > kSchemaVersion)
        return Error(Errc::Unsupported, "cache index " + dir_ +
                                            "/index.sqlite has schema version " +
                                            std::to_string(current) + ", newer than this isr (" +
                                            std::to_string(kSchemaVersion) + ")");
    for (int v = current; v < kSchemaVersion; ++v) {
        ISR_TRY_STATUS(exec(db_.get(), "BEGIN IMMEDIATE"));
        std::string sql =
            std::string(kMigrations[v]) + "; PRAGMA user_version = " + std::to_string(v + 1) + ";";
        auto st = exec(db_.get(), sql.c_str());
        if (!st.ok()) {
            (void)exec(db_.get(), "ROLLBACK");
            return std::move(st).error().context("cache migration to version " +
                                                 std::to_string(v + 1));
        }
        ISR_TRY_STATUS(exec(db_.get(), "COMMIT"));
    }
    return {};
}

Status SqliteChunkCache::prepareStatements() {
    ISR_TRY_ASSIGN(selectStmt_, prepare(db_.get(), "SELECT size FROM chunks WHERE name = ?1"));
    ISR_TRY_ASSIGN(touchStmt_,
                   prepare(db_.get(), "UPDATE chunks SET last_used = ?2 WHERE name = ?1"));
    ISR_TRY_ASSIGN(insertStmt_,
                   prepare(db_.get(), "INSERT OR REPLACE INTO chunks(name, size, last_used) "
                                      "VALUES (?1, ?2, ?3)"));
    ISR_TRY_ASSIGN(deleteStmt_, prepare(db_.get(), "DELETE FROM chunks WHERE name = ?1"));
    ISR_TRY_ASSIGN(oldestStmt_,
                   prepare(db_.get(), "SELECT name, size FROM chunks ORDER BY last_used LIMIT 1"));
    return {};
}

Status SqliteChunkCache::init() {
    ISR_TRY_STATUS(makeDir(dir_ + "/chunks"));
    ISR_TRY_STATUS(makeDir(dir_ + "/tmp"));
    // Nobody else has the lock, so anything in tmp/ is from a crashed writer.
    for (const auto& n : listDir(dir_ + "/tmp"))
        ::unlink((dir_ + "/tmp/" + n).c_str());

    auto opened = openDatabase();
    if (opened.ok())
        opened = migrate();
    if (!opened.ok() && opened.error().code == Errc::Corrupt) {
        // The index is only a cache of what is on disk: rebuild it.
        ISR_LOG_WARN(kLog) << "index unusable (" << opened.error().describe() << "), rebuilding";
        db_.reset();
        for (const char* suffix : {"", "-wal", "-shm"})
            ::unlink((dir_ + "/index.sqlite" + suffix).c_str());
        opened = openDatabase();
        if (opened.ok())
            opened = migrate();
    }
    ISR_TRY_STATUS(opened);
    ISR_TRY_STATUS(prepareStatements());
    ISR_TRY_STATUS(reconcile());
    std::lock_guard lock(mu_);
    return evictNowLocked();
}

Status SqliteChunkCache::reconcile() {
    std::lock_guard lock(mu_);
    // Rows as the index has them.
    std::map<chunk::ChunkName, std::pair<std::uint64_t, std::uint64_t>> rows; // size, last_used
    {
        ISR_TRY_ASSIGN(Stmt all, prepare(db_.get(), "SELECT name, size, last_used FROM chunks"));
        int rc;
        while ((rc = sqlite3_step(all.get())) == SQLITE_ROW) {
            chunk::ChunkName name{};
            const void* blob = sqlite3_column_blob(all.get(), 0);
            if (blob && std::size_t(sqlite3_column_bytes(all.get(), 0)) == name.size())
                std::memcpy(name.data(), blob, name.size());
            else
                continue; // malformed row: dropped below by the rebuild
            rows[name] = {std::uint64_t(sqlite3_column_int64(all.get(), 1)),
                          std::uint64_t(sqlite3_column_int64(all.get(), 2))};
        }
        if (rc != SQLITE_DONE)
            return sqlError(db_.get(), "read cache index");
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
    ISR_TRY_STATUS(exec(db_.get(), "BEGIN IMMEDIATE"));
    auto body = [&]() -> Status {
        std::uint64_t dropped = 0;
        for (const auto& [name, info] : rows)
            if (!keep.count(name)) {
                ISR_TRY_STATUS(deleteRowLocked(name));
                ++dropped;
            }
        if (dropped) {
            ISR_LOG_INFO(kLog) << "dropped " << dropped << " index rows without a file";
        }
        ISR_TRY_STATUS(exec(db_.get(), "DELETE FROM chunks WHERE length(name) != 32"));
        for (const auto& [name, info] : keep) {
            auto row = rows.find(name);
            if (row == rows.end() || row->second != info)
                ISR_TRY_STATUS(insertRowLocked(name, info.first, info.second));
            bytes_ += info.first;
            clock_ = std::max(clock_, info.second);
        }
        chunks_ = keep.size();
        return {};
    }();
    if (!body.ok()) {
        (void)exec(db_.get(), "ROLLBACK");
        return body;
    }
    ISR_TRY_STATUS(exec(db_.get(), "COMMIT"));
    if (adopted || deleted) {
        ISR_LOG_INFO(kLog) << "reconciled " << dir_ << ": adopted " << adopted << ", deleted "
                           << deleted;
    }
    return {};
}

std::optional<std::uint64_t> SqliteChunkCache::lookupLocked(const chunk::ChunkName& name) {
    sqlite3_stmt* s = selectStmt_.get();
    sqlite3_reset(s);
    sqlite3_bind_blob(s, 1, name.data(), int(name.size()), SQLITE_STATIC);
    std::optional<std::uint64_t> out;
    if (sqlite3_step(s) == SQLITE_ROW)
        out = std::uint64_t(sqlite3_column_int64(s, 0));
    sqlite3_reset(s);
    return out;
}

Status SqliteChunkCache::touchLocked(const chunk::ChunkName& name) {
    sqlite3_stmt* s = touchStmt_.get();
    sqlite3_reset(s);
    sqlite3_bind_blob(s, 1, name.data(), int(name.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, sqlite3_int64(++clock_));
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sqlError(db_.get(), "update last_used");
    return {};
}

Status SqliteChunkCache::deleteRowLocked(const chunk::ChunkName& name) {
    sqlite3_stmt* s = deleteStmt_.get();
    sqlite3_reset(s);
    sqlite3_bind_blob(s, 1, name.data(), int(name.size()), SQLITE_STATIC);
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sqlError(db_.get(), "delete index row");
    return {};
}

Status SqliteChunkCache::insertRowLocked(const chunk::ChunkName& name, std::uint64_t size,
                                         std::uint64_t lastUsed) {
    sqlite3_stmt* s = insertStmt_.get();
    sqlite3_reset(s);
    sqlite3_bind_blob(s, 1, name.data(), int(name.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, sqlite3_int64(size));
    sqlite3_bind_int64(s, 3, sqlite3_int64(lastUsed));
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return sqlError(db_.get(), "insert index row");
    return {};
}

void SqliteChunkCache::dropLocked(const chunk::ChunkName& name, std::uint64_t size) {
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
        sqlite3_stmt* s = oldestStmt_.get();
        sqlite3_reset(s);
        if (sqlite3_step(s) != SQLITE_ROW) {
            sqlite3_reset(s);
            break;
        }
        Victim v{};
        if (std::size_t(sqlite3_column_bytes(s, 0)) == v.name.size())
            std::memcpy(v.name.data(), sqlite3_column_blob(s, 0), v.name.size());
        v.size = std::uint64_t(sqlite3_column_int64(s, 1));
        sqlite3_reset(s);
        ISR_TRY_STATUS(deleteRowLocked(v.name));
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
    ISR_TRY_STATUS(exec(db_.get(), "BEGIN IMMEDIATE"));
    auto victims = evictLocked(0);
    if (!victims.ok()) {
        (void)exec(db_.get(), "ROLLBACK");
        return std::move(victims).error();
    }
    ISR_TRY_STATUS(exec(db_.get(), "COMMIT"));
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
            ISR_TRY_STATUS(deleteRowLocked(name));
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
        std::size_t done = 0;
        while (done < ciphertext.size()) {
            ssize_t n = ::write(fd.get(), ciphertext.data() + done, ciphertext.size() - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                const int err = errno;
                ::unlink(tmp.c_str());
                return errnoError(err, "write " + tmp);
            }
            done += std::size_t(n);
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
        ISR_TRY_STATUS(exec(db_.get(), "BEGIN IMMEDIATE"));
        auto inner = [&]() -> Status {
            ISR_TRY_ASSIGN(victims, evictLocked(ciphertext.size()));
            ISR_TRY_STATUS(insertRowLocked(name, ciphertext.size(), ++clock_));
            ISR_TRY_STATUS(makeDir(dir_ + "/chunks/" + hex.substr(0, 2)));
            // No directory fsync: a rename lost in a crash is just a miss,
            // and reconcile() drops the row.
            if (::rename(tmp.c_str(), chunkPath(name).c_str()) != 0)
                return errnoError(errno, "rename into " + chunkPath(name));
            return {};
        }();
        if (!inner.ok()) {
            (void)exec(db_.get(), "ROLLBACK");
            return inner;
        }
        return exec(db_.get(), "COMMIT");
    }();
    if (!st.ok()) {
        // Rolled back: the victims' rows and files are both still there.
        ::unlink(tmp.c_str());
        ISR_LOG_WARN(kLog) << "put failed: " << st.error().describe();
        return st;
    }
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
    ISR_TRY_STATUS(deleteRowLocked(name));
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
