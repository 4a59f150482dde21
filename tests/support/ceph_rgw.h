#pragma once
// A real radosgw for S3 tests (see ceph-rgw.sh next to this file).
//
// cephRgw() returns the S3 endpoint for this test process: the one named by
// ISR_TEST_S3_ENDPOINT/_BUCKET/_ACCESS_KEY/... if set (for example from
// `eval "$(tests/support/ceph-rgw.sh env)"`), otherwise a private one-node
// cluster that it starts on first use and stops when the process exits.
// skipAll()s with the reason if the Ceph binaries are not installed.

#include "store/store.h"
#include "util/result.h"

#include <memory>
#include <string>
#include <vector>

namespace isr::test {

struct S3TestEnv {
    std::string endpoint; // http://127.0.0.1:PORT
    std::string hostPort; // 127.0.0.1:PORT
    std::string bucket;
    std::string region;
    store::Credentials user1;
    store::Credentials user2;
    std::string cephDir;     // empty if the cluster is not ours to control
    std::string tlsHostPort; // HTTPS endpoint (self-signed), empty if none
    std::string caBundle;    // PEM of its certificate

    // "s3://127.0.0.1:PORT/<bucket>[/<prefix>]"
    std::string url(const std::string& prefix = {}) const;
    // StoreOptions with user1 as read credentials and the test region.
    store::StoreOptions options() const;
};

const S3TestEnv& cephRgw();

// Fault injection on the radosgw process; only when cephDir is known.
bool canControlRadosgw();
int radosgwPid();
void stopRadosgw();   // SIGSTOP: the socket stays open, nothing answers
void resumeRadosgw(); // SIGCONT
void killRadosgw();   // SIGKILL; connections are refused until restartRadosgw()
void restartRadosgw();

// A cluster of the caller's own in `dir`: not shared through ISR_TEST_S3_*,
// stopped by the destructor. Every ceph-rgw.sh command runs as
// `<prefix...> env ISR_CEPH_RGW_ADDR=<listenAddr> bash ceph-rgw.sh CMD dir`,
// so a prefix such as {"ip", "netns", "exec", "ns1"} runs the daemons in a
// network namespace with radosgw on that namespace's address (the network
// fault tests cut and degrade the link to it).
class RgwCluster {
public:
    // skipAll()s if Ceph is not installed; a failed start is an Error.
    static Result<std::unique_ptr<RgwCluster>>
    start(const std::string& dir, std::vector<std::string> prefix, const std::string& listenAddr);
    ~RgwCluster();
    RgwCluster(const RgwCluster&) = delete;
    RgwCluster& operator=(const RgwCluster&) = delete;

    const S3TestEnv& env() const { return env_; }
    int radosgwPid() const;
    void stopRadosgw();   // SIGSTOP
    void resumeRadosgw(); // SIGCONT
    Status killRadosgw(); // SIGKILL, waits until it no longer answers
    Status restartRadosgw();

private:
    RgwCluster() = default;
    Status run(const std::string& command, int timeoutMs = 120000);
    std::string dir_, listenAddr_;
    std::vector<std::string> prefix_;
    S3TestEnv env_;
};

} // namespace isr::test
