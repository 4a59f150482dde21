#pragma once
// A real, initialised parcel store for tests, on the backend named by
// ISR_TEST_STORE_BACKEND: "file" (default) is a FileStore in a fresh temp
// directory; "s3" is an S3Store on the test radosgw (skips with a reason if
// Ceph is not available). Accounts use the minimal KDF so tests stay fast.

#include "parcel/parcel.h"
#include "store/store.h"
#include "testsupport.h"

#include <memory>
#include <string>

namespace isr::test {

class TestStore {
public:
    static std::unique_ptr<TestStore> fromEnvironment();
    virtual ~TestStore() = default;
    store::Store& store() { return *store_; }
    const std::string& url() const { return url_; }
    // A second, empty location on the same backend (not initialised).
    virtual std::unique_ptr<store::Store> emptyLocation() = 0;

    // A new account on this store, and a session signed in to an account.
    // Set-up steps: a failure throws std::runtime_error (the test fails).
    void createUser(const std::string& user, const std::string& password);
    parcel::Parcels signedIn(const std::string& user, const std::string& password);

protected:
    std::unique_ptr<store::Store> store_;
    std::string url_;
};

} // namespace isr::test
