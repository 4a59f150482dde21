#pragma once
// PlaintextLru: decoded chunks a ParcelDisk keeps in memory (never on disk),
// keyed by chunk index, least recently used out first. All-zero chunks are
// not kept (their chunk state says so); get() returns null for "not here".
//
// Invariant (kept by ParcelDisk): an entry is always the chunk's current
// content, because it is only changed under the chunk's stripe lock.
// Locking: one internal mutex, a leaf (taken under a stripe, never the
// other way round).

#include "crypto/crypto.h"
#include "util/bytes.h"

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace isr::disk {

// A chunk's plaintext, shared with readers that copy out of it. Where a
// chunk's content is passed around (ParcelDisk), null means "all zeroes".
using PlainPtr = std::shared_ptr<const Bytes>;

// A PlainPtr that wipes its bytes when the last reader lets go (issue #16
// item 8: a user's plaintext does not linger in the kiosk's heap for the
// next session). Every decoded or written chunk is made through this.
inline PlainPtr makePlain(Bytes&& bytes) {
    return PlainPtr(new Bytes(std::move(bytes)), [](const Bytes* b) {
        Bytes* owned = const_cast<Bytes*>(b);
        crypto::wipe(*owned);
        delete owned;
    });
}

class PlaintextLru {
public:
    explicit PlaintextLru(std::size_t capacity) : capacity_(capacity) {}

    // Null if absent.
    PlainPtr get(std::uint64_t index) {
        std::lock_guard lock(mutex_);
        auto it = map_.find(index);
        if (it == map_.end())
            return nullptr;
        order_.splice(order_.begin(), order_, it->second);
        return it->second->second;
    }

    void put(std::uint64_t index, PlainPtr plain) {
        if (capacity_ == 0)
            return;
        std::lock_guard lock(mutex_);
        auto it = map_.find(index);
        if (it != map_.end()) {
            it->second->second = std::move(plain);
            order_.splice(order_.begin(), order_, it->second);
            return;
        }
        order_.emplace_front(index, std::move(plain));
        map_[index] = order_.begin();
        if (order_.size() > capacity_) {
            map_.erase(order_.back().first);
            order_.pop_back();
        }
    }

    void erase(std::uint64_t index) {
        std::lock_guard lock(mutex_);
        auto it = map_.find(index);
        if (it != map_.end()) {
            order_.erase(it->second);
            map_.erase(it);
        }
    }

private:
    using Entry = std::pair<std::uint64_t, PlainPtr>;
    std::mutex mutex_;
    std::size_t capacity_;
    std::list<Entry> order_;
    std::unordered_map<std::uint64_t, std::list<Entry>::iterator> map_;
};

} // namespace isr::disk
