#include "teststore.h"

#include "parcel/parcel.h"

#include <cstdlib>
#include <filesystem>

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

} // namespace

std::unique_ptr<TestStore> TestStore::fromEnvironment() {
    const char* backend = std::getenv("ISR_TEST_STORE_BACKEND");
    std::string name = backend ? backend : "file";
    if (name == "file")
        return std::make_unique<FileTestStore>();
    skipAll("store backend '" + name + "' is not available in this build");
}

} // namespace isr::test
