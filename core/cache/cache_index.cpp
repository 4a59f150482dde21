// The chunk cache's SQLite index; see cache_index.h.
#include "cache/cache_index.h"

#include "util/log.h"

#include <cstring>
#include <iterator>
#include <sqlite3.h>
#include <unistd.h>

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

struct StmtFinalizer {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
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

Result<Stmt> prepare(sqlite3* db, const char* sql) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr) != SQLITE_OK)
        return sqlError(db, std::string("prepare ") + sql);
    return Stmt(raw);
}

// Resets a statement on the way out, whatever path the caller takes.
struct Reset {
    sqlite3_stmt* s;
    ~Reset() { sqlite3_reset(s); }
};

void bindName(sqlite3_stmt* s, const chunk::ChunkName& name) {
    sqlite3_bind_blob(s, 1, name.data(), int(name.size()), SQLITE_STATIC);
}

} // namespace

struct CacheIndex::Statements {
    Stmt select, touch, insert, erase, oldest;
};

CacheIndex::CacheIndex(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}

CacheIndex::~CacheIndex() {
    stmts_.reset();
    if (db_)
        sqlite3_close_v2(db_);
}

Result<std::unique_ptr<CacheIndex>> CacheIndex::open(const std::string& directory) {
    std::unique_ptr<CacheIndex> index(new CacheIndex(directory + "/index.sqlite", nullptr));
    auto opened = index->openDatabase();
    if (opened.ok())
        opened = index->migrate();
    if (!opened.ok() && opened.error().code == Errc::Corrupt) {
        // The index is only a cache of what is on disk: rebuild it.
        ISR_LOG_WARN(kLog) << "index unusable (" << opened.error().describe() << "), rebuilding";
        sqlite3_close_v2(index->db_);
        index->db_ = nullptr;
        for (const char* suffix : {"", "-wal", "-shm"})
            ::unlink((index->path_ + suffix).c_str());
        opened = index->openDatabase();
        if (opened.ok())
            opened = index->migrate();
    }
    ISR_TRY_STATUS(opened);
    ISR_TRY_STATUS(index->prepareStatements());
    return index;
}

Status CacheIndex::exec(const char* sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
        Error e = sqlError(db_, std::string("sqlite: ") + (msg ? msg : "?"));
        sqlite3_free(msg);
        return e;
    }
    return {};
}

Status CacheIndex::openDatabase() {
    const int rc =
        sqlite3_open_v2(path_.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK)
        return db_ ? sqlError(db_, "open " + path_) : Error(Errc::Io, "open " + path_);
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 5000);
    // WAL: readers never block the writer. synchronous=NORMAL may lose the
    // last transactions on power loss, which reconcile() repairs on open.
    return exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
}

Status CacheIndex::migrate() {
    int current = 0;
    {
        ISR_TRY_ASSIGN(Stmt version, prepare(db_, "PRAGMA user_version"));
        if (sqlite3_step(version.get()) != SQLITE_ROW)
            return sqlError(db_, "read user_version");
        current = sqlite3_column_int(version.get(), 0);
    }
    if (current > kSchemaVersion)
        return Error(Errc::Unsupported, "cache index " + path_ + " has schema version " +
                                            std::to_string(current) + ", newer than this isr (" +
                                            std::to_string(kSchemaVersion) + ")");
    for (int v = current; v < kSchemaVersion; ++v) {
        ISR_TRY_STATUS(begin());
        std::string sql =
            std::string(kMigrations[v]) + "; PRAGMA user_version = " + std::to_string(v + 1) + ";";
        auto st = exec(sql.c_str());
        if (!st.ok()) {
            rollback();
            return std::move(st).error().context("cache migration to version " +
                                                 std::to_string(v + 1));
        }
        ISR_TRY_STATUS(commit());
    }
    return {};
}

Status CacheIndex::prepareStatements() {
    auto s = std::make_unique<Statements>();
    ISR_TRY_ASSIGN(s->select, prepare(db_, "SELECT size FROM chunks WHERE name = ?1"));
    ISR_TRY_ASSIGN(s->touch, prepare(db_, "UPDATE chunks SET last_used = ?2 WHERE name = ?1"));
    ISR_TRY_ASSIGN(s->insert, prepare(db_, "INSERT OR REPLACE INTO chunks(name, size, last_used) "
                                           "VALUES (?1, ?2, ?3)"));
    ISR_TRY_ASSIGN(s->erase, prepare(db_, "DELETE FROM chunks WHERE name = ?1"));
    ISR_TRY_ASSIGN(s->oldest,
                   prepare(db_, "SELECT name, size FROM chunks ORDER BY last_used LIMIT 1"));
    stmts_ = std::move(s);
    return {};
}

std::optional<std::uint64_t> CacheIndex::lookup(const chunk::ChunkName& name) {
    sqlite3_stmt* s = stmts_->select.get();
    Reset reset{s};
    sqlite3_reset(s);
    bindName(s, name);
    if (sqlite3_step(s) == SQLITE_ROW)
        return std::uint64_t(sqlite3_column_int64(s, 0));
    return std::nullopt;
}

Status CacheIndex::touch(const chunk::ChunkName& name, std::uint64_t lastUsed) {
    sqlite3_stmt* s = stmts_->touch.get();
    Reset reset{s};
    sqlite3_reset(s);
    bindName(s, name);
    sqlite3_bind_int64(s, 2, sqlite3_int64(lastUsed));
    if (sqlite3_step(s) != SQLITE_DONE)
        return sqlError(db_, "update last_used");
    return {};
}

Status CacheIndex::insert(const chunk::ChunkName& name, std::uint64_t size,
                          std::uint64_t lastUsed) {
    sqlite3_stmt* s = stmts_->insert.get();
    Reset reset{s};
    sqlite3_reset(s);
    bindName(s, name);
    sqlite3_bind_int64(s, 2, sqlite3_int64(size));
    sqlite3_bind_int64(s, 3, sqlite3_int64(lastUsed));
    if (sqlite3_step(s) != SQLITE_DONE)
        return sqlError(db_, "insert index row");
    return {};
}

Status CacheIndex::erase(const chunk::ChunkName& name) {
    sqlite3_stmt* s = stmts_->erase.get();
    Reset reset{s};
    sqlite3_reset(s);
    bindName(s, name);
    if (sqlite3_step(s) != SQLITE_DONE)
        return sqlError(db_, "delete index row");
    return {};
}

Result<std::optional<CacheIndex::Row>> CacheIndex::oldest() {
    sqlite3_stmt* s = stmts_->oldest.get();
    Reset reset{s};
    sqlite3_reset(s);
    if (sqlite3_step(s) != SQLITE_ROW)
        return std::optional<Row>();
    Row row;
    if (std::size_t(sqlite3_column_bytes(s, 0)) == row.name.size())
        std::memcpy(row.name.data(), sqlite3_column_blob(s, 0), row.name.size());
    row.size = std::uint64_t(sqlite3_column_int64(s, 1));
    return std::optional<Row>(row);
}

Result<std::vector<CacheIndex::Row>> CacheIndex::all() {
    ISR_TRY_ASSIGN(Stmt stmt, prepare(db_, "SELECT name, size, last_used FROM chunks"));
    std::vector<Row> rows;
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
        Row row;
        const void* blob = sqlite3_column_blob(stmt.get(), 0);
        if (!blob || std::size_t(sqlite3_column_bytes(stmt.get(), 0)) != row.name.size())
            continue; // malformed: eraseMalformed() removes it
        std::memcpy(row.name.data(), blob, row.name.size());
        row.size = std::uint64_t(sqlite3_column_int64(stmt.get(), 1));
        row.lastUsed = std::uint64_t(sqlite3_column_int64(stmt.get(), 2));
        rows.push_back(row);
    }
    if (rc != SQLITE_DONE)
        return sqlError(db_, "read cache index");
    return rows;
}

Status CacheIndex::eraseMalformed() {
    return exec("DELETE FROM chunks WHERE length(name) != 32");
}

Status CacheIndex::begin() {
    return exec("BEGIN IMMEDIATE");
}

Status CacheIndex::commit() {
    return exec("COMMIT");
}

void CacheIndex::rollback() {
    (void)exec("ROLLBACK");
}

} // namespace isr::cache
