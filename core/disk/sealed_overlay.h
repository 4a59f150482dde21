#pragma once
// SealedOverlay: the session's copy-on-write store for a ParcelDisk's dirty
// chunks, sealed so that nothing of the user's disk is readable on the
// kiosk's disk.
//
// One sparse file `overlay-<random>.sealed` in the given directory; slot `i`
// sits at `i * slotSize()` (chunk size + nonce + MAC, rounded up to 4 KiB)
// and holds crypto::seal(key, plaintext, AD = "isr-overlay-v1" || be64(i))
// with a fresh random nonce per write. The key is random and lives only in
// memory (an mlocked crypto::Secret): the overlay dies with the process, and
// the file is deleted when the SealedOverlay is destroyed. The slot index in
// the AD stops a slot's content from being replayed into another slot.
//
// Thread safety: no state changes after create(); pread/pwrite/fallocate on
// distinct slots may run concurrently. The caller serialises access to ONE
// slot (ParcelDisk holds the chunk's stripe lock).

#include "crypto/crypto.h"
#include "util/bytes.h"
#include "util/posix.h"
#include "util/result.h"

#include <cstdint>
#include <memory>
#include <string>

namespace isr::disk {

class SealedOverlay {
public:
    // Creates the file in `directory` (which must exist), sized for
    // `slotCount` slots of up to `maxPlaintext` bytes each.
    static Result<std::unique_ptr<SealedOverlay>>
    create(const std::string& directory, std::uint64_t slotCount, std::uint32_t maxPlaintext);
    ~SealedOverlay(); // closes and deletes the file
    SealedOverlay(const SealedOverlay&) = delete;
    SealedOverlay& operator=(const SealedOverlay&) = delete;

    // Seals `plain` (at most maxPlaintext bytes) into slot `index`.
    // NoSpace when the kiosk's disk is full.
    Status write(std::uint64_t index, ByteView plain);
    // Opens slot `index`, which holds `length` bytes of plaintext. Corrupt if
    // the slot fails verification (never wrong data).
    Result<Bytes> read(std::uint64_t index, std::uint32_t length);
    // Gives slot `index`'s space back (hole punch). Best effort: a stale
    // slot is never read once the caller marks the chunk zero.
    void discard(std::uint64_t index);
    // fdatasync: every write that returned is durable.
    Status flush();

    const std::string& path() const { return path_; }
    std::uint64_t slotSize() const { return slotSize_; }

private:
    SealedOverlay(std::string path, UniqueFd fd, std::uint64_t slotSize);
    Bytes associatedData(std::uint64_t index) const;

    std::string path_;
    UniqueFd fd_;
    std::uint64_t slotSize_;
    crypto::Secret key_;
};

} // namespace isr::disk
