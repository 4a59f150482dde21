#pragma once
// CacheIndex: the chunk cache's SQLite index, <dir>/index.sqlite — one row
// per cached chunk (name, size, last_used), its schema migrations and its
// prepared statements. The files under chunks/ are ChunkCache's; the index
// only says what they are and in which order to evict them.
//
// - Migrations are keyed on PRAGMA user_version, one transaction each; an
//   index newer than the code is refused (Unsupported).
// - WAL, synchronous=NORMAL: a power loss may lose the last transactions,
//   which ChunkCache's reconcile on open repairs.
// - An index that is not a database (or is damaged) is deleted and made
//   anew, empty: it is only a cache of what is on disk.
//
// Not thread-safe: ChunkCache calls every method under its own mutex.

#include "chunk/chunk.h"
#include "util/result.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace isr::cache {

class CacheIndex {
public:
    struct Row {
        chunk::ChunkName name{};
        std::uint64_t size = 0;
        std::uint64_t lastUsed = 0;
    };

    static Result<std::unique_ptr<CacheIndex>> open(const std::string& directory);
    ~CacheIndex();
    CacheIndex(const CacheIndex&) = delete;
    CacheIndex& operator=(const CacheIndex&) = delete;

    // The chunk's size, or nullopt if it has no row.
    std::optional<std::uint64_t> lookup(const chunk::ChunkName& name);
    Status touch(const chunk::ChunkName& name, std::uint64_t lastUsed);
    Status insert(const chunk::ChunkName& name, std::uint64_t size, std::uint64_t lastUsed);
    Status erase(const chunk::ChunkName& name);
    // The least recently used row, or nullopt if there is none.
    Result<std::optional<Row>> oldest();
    // Every well-formed row; malformed ones (a name that is not 32 bytes)
    // are skipped here and removed by eraseMalformed().
    Result<std::vector<Row>> all();
    Status eraseMalformed();

    // One write transaction at a time (BEGIN IMMEDIATE ... COMMIT/ROLLBACK).
    Status begin();
    Status commit();
    void rollback();

private:
    struct Statements;
    CacheIndex(std::string path, sqlite3* db);
    Status openDatabase();
    Status migrate();
    Status prepareStatements();
    Status exec(const char* sql);

    std::string path_;
    sqlite3* db_ = nullptr;
    std::unique_ptr<Statements> stmts_;
};

} // namespace isr::cache
