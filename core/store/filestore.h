#pragma once
// FileStore: a Store on a local or shared (NFS, CephFS) directory.
//
// An object with key "a/b/c" is the file <root>/a/b/c. Writes go to a unique
// temp file under <root>/tmp/ (never listed), are fsynced, then moved into
// place; the parent directory is fsynced so the new name survives a crash.
//
//  - put: rename(2) over the final name: atomic replace.
//  - putIfAbsent: link(2) the fsynced temp file to the final name, then unlink
//    the temp. link fails with EEXIST if the name exists, atomically, on local
//    file systems and on NFS (where O_CREAT|O_EXCL was not atomic before NFSv3
//    and is still emulated by some servers), so exactly one of many racing
//    writers on any number of hosts wins; the others get AlreadyExists.
//
//  - getTagged/putIfMatch: the tag is a digest of the content
//    (BLAKE2b-128, hex). A conditional write opens the object, takes an
//    exclusive flock(2) on that file, checks that the name still points at
//    the locked file (a writer that got there first replaced or removed it:
//    start over), compares the digest of what it reads, and only then
//    renames the new temp file over the name while still
//    holding the flock. Every conditional writer of a key serialises on the
//    file the name points to, and the check after locking means nobody acts
//    on a file that is no longer the object, so of two writers that read the
//    same tag exactly one succeeds. putIfAbsent (link) only succeeds while
//    the name is free, and a conditional writer needs the name taken: they
//    cannot both succeed. flock is per host on local file systems and is
//    mapped to NFS byte-range locks by Linux's NFS client (NFSv4 leases), so
//    this holds across the hosts of one NFS export too. An unconditional
//    put/remove of the same key is not part of the protocol (the parcel layer
//    uses only the conditional calls for its lock).
//
// The root must exist (NotFound otherwise); the store marker isr-store.json is
// the parcel layer's business. tmp/ is created on demand.
//
// Hostile contents: every file and directory below the root is opened with
// openat(O_NOFOLLOW) one component at a time from the root, so a symlink
// planted in the store (as an object or as a folder) is refused (Corrupt),
// never followed. Objects are created 0600 and folders 0700. Reads refuse an
// object larger than store::maxObjectSize(key) before reading it.
//
// Thread safety: no shared mutable state; every call is safe concurrently.

#include "store/store.h"
#include "util/posix.h"

#include <string>

namespace isr::store {

class FileStore final : public Store {
public:
    // root: absolute path of an existing directory.
    static Result<std::unique_ptr<FileStore>> open(const std::string& root);

    std::string url() const override;
    const std::string& root() const { return root_; }

    Result<Bytes> get(const std::string& key) override;
    Result<Bytes> getRange(const std::string& key, std::uint64_t offset,
                           std::uint64_t length) override;
    Status put(const std::string& key, ByteView data) override;
    Status putIfAbsent(const std::string& key, ByteView data) override;
    Status remove(const std::string& key) override;
    Result<std::vector<ObjectInfo>> list(const std::string& prefix) override;
    Result<bool> exists(const std::string& key) override;
    Result<TaggedObject> getTagged(const std::string& key) override;
    Result<std::string> putIfMatch(const std::string& key, ByteView data,
                                   const std::string& expectedTag) override;

    // Name of the directory (under the root) holding in-flight writes.
    static constexpr const char* kTmpDir = "tmp";

private:
    explicit FileStore(std::string root) : root_(std::move(root)) {}
    // Opens <root>/<relDir> ("" = the root) one component at a time with
    // openat(O_NOFOLLOW|O_DIRECTORY): a symlink anywhere below the root is
    // refused (Corrupt), never followed. create: missing directories are made
    // 0700 and their parent fsynced. NotFound if a component is missing.
    Result<UniqueFd> openDirBeneath(const std::string& relDir, bool create) const;
    // The object's file, opened O_NOFOLLOW|O_NONBLOCK beneath the root.
    Result<UniqueFd> openObject(const std::string& key, const std::string& what) const;
    // openObject + fstat + the size cap + read: the descriptor and what it held.
    Result<std::pair<UniqueFd, Bytes>> readHeld(const std::string& key) const;
    // Writes data to a fresh 0600 temp file in the tmp/ directory open at
    // tmpDirFd, fsynced; returns its name there.
    Result<std::string> writeTempIn(int tmpDirFd, ByteView data);

    std::string root_;
};

} // namespace isr::store
