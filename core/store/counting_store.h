#pragma once
// CountingStore: a Store decorator that counts the bytes crossing to and from
// the store it wraps, for the session's timeline and the benchmarks (what
// must cross the network is the figure that matters). It adds nothing else:
// every call goes to the inner store unchanged.
//
// Counted: the payload of successful get/getRange/getMany (down) and
// put/putIfAbsent/putMany (up). Not counted: requests that fail, list,
// exists, remove, protocol overhead.
//
// Threads: as thread-safe as the inner store (the counters are atomics).

#include "store/store.h"

#include <atomic>
#include <cstdint>
#include <memory>

namespace isr::store {

class CountingStore : public Store {
public:
    // The counters outlive the store (the session owns them), so a timeline
    // can difference them across sign-ins.
    CountingStore(std::unique_ptr<Store> inner, std::atomic<std::uint64_t>& down,
                  std::atomic<std::uint64_t>& up);

    std::string url() const override;
    Result<Bytes> get(const std::string& key) override;
    Result<Bytes> getRange(const std::string& key, std::uint64_t offset,
                           std::uint64_t length) override;
    Status put(const std::string& key, ByteView data) override;
    Status putIfAbsent(const std::string& key, ByteView data) override;
    Status remove(const std::string& key) override;
    Result<TaggedObject> getTagged(const std::string& key) override;
    Result<std::string> putIfMatch(const std::string& key, ByteView data,
                                   const std::string& expectedTag) override;
    Result<std::vector<ObjectInfo>> list(const std::string& prefix) override;
    Result<bool> exists(const std::string& key) override;
    std::vector<Result<Bytes>> getMany(const std::vector<std::string>& keys) override;
    std::vector<Status> putMany(const std::vector<PutItem>& items) override;
    std::vector<Result<bool>> existsMany(const std::vector<std::string>& keys) override;
    void setWriteCredentials(const Credentials& credentials) override;

private:
    Result<Bytes> countDown(Result<Bytes> r);

    std::atomic<std::uint64_t>& down_;
    std::atomic<std::uint64_t>& up_;
    std::unique_ptr<Store> inner_;
};

} // namespace isr::store
