#include "teststore.h"

#include "ceph_rgw.h"
#include "parcel/parcel.h"

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <unistd.h>

namespace isr::test {
namespace {

class FileTestStore : public TestStore {
public:
    FileTestStore() {
        std::filesystem::create_directories(dir_.file("store"));
        url_ = "file://" + dir_.file("store");
        auto s = store::openStore(url_);
        if (!s.ok())
            throw std::runtime_error(s.error().describe());
        store_ = std::move(*s);
        auto st = parcel::initStore(*store_, crypto::KdfParams::minimal());
        if (!st.ok())
            throw std::runtime_error(st.error().describe());
    }
    std::unique_ptr<store::Store> emptyLocation() override {
        std::string path = dir_.file("other" + std::to_string(++others_));
        std::filesystem::create_directories(path);
        return std::move(*store::openStore("file://" + path));
    }

private:
    TempDir dir_;
    int others_ = 0;
};

// An S3Store under a fresh prefix of the test radosgw's bucket (a fresh
// prefix is an empty store). Skips if Ceph is missing (see ceph_rgw.h).
class S3TestStore : public TestStore {
public:
    S3TestStore() {
        static std::atomic<int> counter{0};
        root_ = "teststore-" + std::to_string(::getpid()) + "-" +
                std::to_string(std::time(nullptr)) + "-" + std::to_string(counter++);
        url_ = cephRgw().url(root_ + "/store");
        store_ = open(url_);
        auto st = parcel::initStore(*store_, crypto::KdfParams::minimal());
        if (!st.ok())
            throw std::runtime_error(st.error().describe());
    }
    std::unique_ptr<store::Store> emptyLocation() override {
        return open(cephRgw().url(root_ + "/other" + std::to_string(++others_)));
    }

private:
    static std::unique_ptr<store::Store> open(const std::string& url) {
        auto s = store::openStore(url, cephRgw().options());
        if (!s.ok())
            throw std::runtime_error(s.error().describe());
        return std::move(*s);
    }
    std::string root_;
    int others_ = 0;
};

} // namespace

std::unique_ptr<TestStore> TestStore::fromEnvironment() {
    const char* backend = std::getenv("ISR_TEST_STORE_BACKEND");
    std::string name = backend ? backend : "file";
    if (name == "file")
        return std::make_unique<FileTestStore>();
    if (name == "s3")
        return std::make_unique<S3TestStore>();
    skipAll("store backend '" + name + "' is not available in this build");
}

void TestStore::createUser(const std::string& user, const std::string& password) {
    if (auto st = parcel::createAccount(*store_, user, password); !st.ok())
        throw std::runtime_error("createAccount " + user + ": " + st.error().describe());
}

parcel::Parcels TestStore::signedIn(const std::string& user, const std::string& password) {
    auto secrets = parcel::signIn(*store_, user, password);
    if (!secrets.ok())
        throw std::runtime_error("sign-in " + user + ": " + secrets.error().describe());
    return parcel::Parcels(*store_, std::move(*secrets));
}

} // namespace isr::test
