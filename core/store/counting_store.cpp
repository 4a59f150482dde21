#include "store/counting_store.h"

namespace isr::store {

CountingStore::CountingStore(std::unique_ptr<Store> inner, std::atomic<std::uint64_t>& down,
                             std::atomic<std::uint64_t>& up)
    : down_(down), up_(up), inner_(std::move(inner)) {}

std::string CountingStore::url() const {
    return inner_->url();
}

Result<Bytes> CountingStore::get(const std::string& key) {
    return countDown(inner_->get(key));
}

Result<Bytes> CountingStore::getRange(const std::string& key, std::uint64_t offset,
                                      std::uint64_t length) {
    return countDown(inner_->getRange(key, offset, length));
}

Status CountingStore::put(const std::string& key, ByteView data) {
    auto st = inner_->put(key, data);
    if (st.ok())
        up_ += data.size();
    return st;
}

Status CountingStore::putIfAbsent(const std::string& key, ByteView data) {
    auto st = inner_->putIfAbsent(key, data);
    if (st.ok())
        up_ += data.size();
    return st;
}

Status CountingStore::remove(const std::string& key) {
    return inner_->remove(key);
}

Result<TaggedObject> CountingStore::getTagged(const std::string& key) {
    auto r = inner_->getTagged(key);
    if (r.ok())
        down_ += r->data.size();
    return r;
}

Result<std::string> CountingStore::putIfMatch(const std::string& key, ByteView data,
                                              const std::string& expectedTag) {
    auto r = inner_->putIfMatch(key, data, expectedTag);
    if (r.ok())
        up_ += data.size();
    return r;
}

Result<std::vector<ObjectInfo>> CountingStore::list(const std::string& prefix) {
    return inner_->list(prefix);
}

Result<bool> CountingStore::exists(const std::string& key) {
    return inner_->exists(key);
}

std::vector<Result<Bytes>> CountingStore::getMany(const std::vector<std::string>& keys) {
    auto results = inner_->getMany(keys);
    for (auto& r : results)
        if (r.ok())
            down_ += r->size();
    return results;
}

std::vector<Status> CountingStore::putMany(const std::vector<PutItem>& items) {
    auto results = inner_->putMany(items);
    for (std::size_t i = 0; i < results.size(); ++i)
        if (results[i].ok())
            up_ += items[i].data.size();
    return results;
}

std::vector<Result<bool>> CountingStore::existsMany(const std::vector<std::string>& keys) {
    return inner_->existsMany(keys);
}

void CountingStore::setWriteCredentials(const Credentials& credentials) {
    inner_->setWriteCredentials(credentials);
}

Result<Bytes> CountingStore::countDown(Result<Bytes> r) {
    if (r.ok())
        down_ += r->size();
    return r;
}

} // namespace isr::store
