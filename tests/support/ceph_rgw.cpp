#include "ceph_rgw.h"

#include "testsupport.h"

#include <QStringList>
#include <QtGlobal>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

namespace isr::test {

namespace {
const std::string kScript = std::string(ISR_SOURCE_DIR) + "/tests/support/ceph-rgw.sh";

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

// Stops the cluster this process started when the process exits normally.
struct OwnedCluster {
    std::string dir;
    ~OwnedCluster() {
        // Plain system(): QCoreApplication is gone by the time statics die.
        if (!dir.empty() && !std::getenv("ISR_KEEP_TEST_DIRS"))
            (void)std::system(
                ("bash '" + kScript + "' stop '" + dir + "' >/dev/null 2>&1").c_str());
    }
};
OwnedCluster owned;

void runScript(const char* cmd) {
    const auto r = runProcess("bash", QStringList{QString::fromStdString(kScript), cmd,
                                                  QString::fromStdString(cephRgw().cephDir)});
    if (r.exitCode != 0)
        throw std::runtime_error(std::string("ceph-rgw.sh ") + cmd + " failed: " + r.err);
}

S3TestEnv fromEnvironment(const std::map<std::string, std::string>& vars) {
    auto get = [&](const std::string& k) {
        auto it = vars.find(k);
        return it == vars.end() ? std::string() : it->second;
    };
    S3TestEnv e;
    e.endpoint = get("ISR_TEST_S3_ENDPOINT");
    e.bucket = get("ISR_TEST_S3_BUCKET");
    e.region = get("ISR_TEST_S3_REGION");
    if (e.region.empty())
        e.region = "us-east-1";
    e.user1 = {get("ISR_TEST_S3_ACCESS_KEY"), get("ISR_TEST_S3_SECRET_KEY")};
    e.user2 = {get("ISR_TEST_S3_ACCESS_KEY2"), get("ISR_TEST_S3_SECRET_KEY2")};
    e.cephDir = get("ISR_TEST_S3_CEPH_DIR");
    e.caBundle = get("ISR_TEST_S3_CA_BUNDLE");
    const std::string tls = get("ISR_TEST_S3_TLS_ENDPOINT");
    if (tls.rfind("https://", 0) == 0)
        e.tlsHostPort = tls.substr(8);
    const auto scheme = e.endpoint.find("://");
    e.hostPort = scheme == std::string::npos ? e.endpoint : e.endpoint.substr(scheme + 3);
    while (!e.hostPort.empty() && e.hostPort.back() == '/')
        e.hostPort.pop_back();
    return e;
}

std::map<std::string, std::string> parseExports(const std::string& text) {
    std::map<std::string, std::string> vars;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind("export ", 0) == 0)
            line.erase(0, 7);
        const auto eq = line.find('=');
        if (eq != std::string::npos)
            vars[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return vars;
}

void requireCeph() {
    for (const char* p : {"ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool"})
        if (!haveProgram(p))
            skipAll(std::string("Ceph not installed (") + p +
                    " missing): apt-get install ceph-mon ceph-osd radosgw ceph-common");
}

S3TestEnv startOrReuse() {
    if (!env("ISR_TEST_S3_ENDPOINT").empty()) {
        std::map<std::string, std::string> vars;
        for (const char* k :
             {"ISR_TEST_S3_ENDPOINT", "ISR_TEST_S3_BUCKET", "ISR_TEST_S3_REGION",
              "ISR_TEST_S3_ACCESS_KEY", "ISR_TEST_S3_SECRET_KEY", "ISR_TEST_S3_ACCESS_KEY2",
              "ISR_TEST_S3_SECRET_KEY2", "ISR_TEST_S3_CEPH_DIR", "ISR_TEST_S3_TLS_ENDPOINT",
              "ISR_TEST_S3_CA_BUNDLE"})
            vars[k] = env(k);
        return fromEnvironment(vars);
    }
    requireCeph();
    std::string tmp = env("TMPDIR");
    if (tmp.empty())
        tmp = "/tmp";
    const std::string dir = tmp + "/isr-ceph-test-" + std::to_string(::getpid());
    owned.dir = dir;
    auto r = runProcess(
        "bash", QStringList{QString::fromStdString(kScript), "start", QString::fromStdString(dir)},
        {}, 180000);
    if (r.exitCode == kSkipExitCode)
        skipAll("ceph-rgw.sh: " + r.err);
    if (r.exitCode != 0)
        qFatal("ceph-rgw.sh start failed (%d): %s", r.exitCode, r.err.c_str());
    r = runProcess(
        "bash", QStringList{QString::fromStdString(kScript), "env", QString::fromStdString(dir)});
    if (r.exitCode != 0)
        qFatal("ceph-rgw.sh env failed: %s", r.err.c_str());
    return fromEnvironment(parseExports(r.out));
}
} // namespace

std::string S3TestEnv::url(const std::string& prefix) const {
    std::string u = "s3://" + hostPort + "/" + bucket;
    if (!prefix.empty())
        u += "/" + prefix;
    return u;
}

store::StoreOptions S3TestEnv::options() const {
    store::StoreOptions o;
    o.readCredentials = user1;
    o.region = region;
    return o;
}

const S3TestEnv& cephRgw() {
    static const S3TestEnv instance = startOrReuse();
    return instance;
}

bool canControlRadosgw() {
    return !cephRgw().cephDir.empty();
}

int radosgwPid() {
    std::ifstream in(cephRgw().cephDir + "/run/rgw.pid");
    int pid = 0;
    in >> pid;
    if (pid <= 0)
        throw std::runtime_error("no radosgw pid in " + cephRgw().cephDir);
    return pid;
}

void stopRadosgw() {
    ::kill(radosgwPid(), SIGSTOP);
}
void resumeRadosgw() {
    ::kill(radosgwPid(), SIGCONT);
}
void killRadosgw() {
    runScript("rgw-kill");
}
void restartRadosgw() {
    runScript("rgw-start");
}

// ---- RgwCluster ----------------------------------------------------------------

Status RgwCluster::run(const std::string& command, int timeoutMs) {
    QStringList args;
    QString program = "env";
    for (std::size_t i = 0; i < prefix_.size(); ++i) {
        if (i == 0)
            program = QString::fromStdString(prefix_[i]);
        else
            args << QString::fromStdString(prefix_[i]);
    }
    if (!prefix_.empty())
        args << "env";
    args << QString::fromStdString("ISR_CEPH_RGW_ADDR=" + listenAddr_) << "bash"
         << QString::fromStdString(kScript) << QString::fromStdString(command)
         << QString::fromStdString(dir_);
    auto r = runProcess(program, args, {}, timeoutMs);
    if (r.exitCode == kSkipExitCode)
        skipAll("ceph-rgw.sh: " + r.err);
    if (r.exitCode != 0)
        return Error(Errc::Io, "ceph-rgw.sh " + command + " failed (" + std::to_string(r.exitCode) +
                                   "): " + r.err);
    if (command == "env")
        env_ = fromEnvironment(parseExports(r.out));
    return {};
}

Result<std::unique_ptr<RgwCluster>> RgwCluster::start(const std::string& dir,
                                                      std::vector<std::string> prefix,
                                                      const std::string& listenAddr) {
    requireCeph();
    std::unique_ptr<RgwCluster> c(new RgwCluster);
    c->dir_ = dir;
    c->prefix_ = std::move(prefix);
    c->listenAddr_ = listenAddr;
    ISR_TRY_STATUS(c->run("start", 180000));
    ISR_TRY_STATUS(c->run("env"));
    return c;
}

RgwCluster::~RgwCluster() {
    if (!dir_.empty() && !std::getenv("ISR_KEEP_TEST_DIRS"))
        (void)run("stop");
}

int RgwCluster::radosgwPid() const {
    std::ifstream in(dir_ + "/run/rgw.pid");
    int pid = 0;
    in >> pid;
    return pid;
}

void RgwCluster::stopRadosgw() {
    if (int pid = radosgwPid(); pid > 0)
        ::kill(pid, SIGSTOP);
}

void RgwCluster::resumeRadosgw() {
    if (int pid = radosgwPid(); pid > 0)
        ::kill(pid, SIGCONT);
}

Status RgwCluster::killRadosgw() {
    return run("rgw-kill");
}

Status RgwCluster::restartRadosgw() {
    return run("rgw-start");
}

} // namespace isr::test
