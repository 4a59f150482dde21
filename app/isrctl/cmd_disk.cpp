// isrctl disk serve: a parcel's disk over NBD on a UNIX socket, for
// inspection, tests and benchmarks. Writes go to an encrypted session
// overlay and are discarded at exit unless --commit makes them a new version.
#include "cache/cache.h"
#include "cli.h"
#include "disk/nbd_server.h"
#include "disk/parcel_disk.h"
#include "util/hardening.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <unistd.h>

namespace isr::cli {
namespace {

namespace fs = std::filesystem;

int serve(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, {"password-stdin", "commit", "no-hoard"});
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 2, 2, {"store", "socket", "version", "cache-dir", "cache-size"},
                            "disk serve"))
        return rc;
    const std::string user = args->positional()[0], parcelName = args->positional()[1];
    auto socket = args->option("socket");
    if (!socket || socket->empty() || (*socket)[0] != '/')
        return fail("--socket needs an absolute path", kExitUsage);
    auto cacheSize = parseSize(args->optionOr("cache-size", "4G"));
    if (!cacheSize.ok())
        return fail(cacheSize.error().message, kExitUsage);
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    auto secrets = signInFromArgs(**s, user, *args);
    if (!secrets.ok())
        return fail(secrets.error());
    parcel::Parcels parcels(**s, std::move(*secrets));
    std::uint64_t n = 0;
    if (auto v = args->option("version")) {
        n = std::strtoull(v->c_str(), nullptr, 10);
        if (n == 0)
            return fail("--version must be a positive number", kExitUsage);
    } else {
        auto latest = parcels.latest(parcelName);
        if (!latest.ok())
            return fail(latest.error());
        n = *latest;
    }
    auto manifest = parcels.manifest(parcelName, n);
    if (!manifest.ok())
        return fail(manifest.error());

    // The overlay and the cache sit next to the socket unless told otherwise;
    // both hold ciphertext only. mkdtemp: a fresh 0700 directory with an
    // unpredictable name, so nobody can prepare (or link) it beforehand.
    std::error_code ec;
    auto made =
        hardening::makePrivateTempDirectory(fs::path(*socket).parent_path().string(), "isr-disk-");
    if (!made.ok())
        return fail(made.error());
    fs::path work = *made;
    struct Cleanup {
        fs::path dir;
        ~Cleanup() {
            std::error_code e;
            fs::remove_all(dir, e);
        }
    } cleanup{work};
    std::string cacheDir = args->optionOr("cache-dir", (work / "cache").string());
    fs::create_directories(cacheDir, ec);
    auto cache = cache::ChunkCache::open(cacheDir, *cacheSize);
    if (!cache.ok())
        return fail(cache.error());

    disk::ParcelDiskConfig dc;
    dc.diskSize = manifest->diskSize;
    dc.chunkSize = manifest->chunkSize;
    dc.baseTable = manifest->disk;
    dc.fetch = [&](const chunk::ChunkName& name) { return parcels.fetchChunk(name); };
    dc.cache = cache->get();
    dc.convergenceSecret = parcels.secrets().convergence.clone();
    dc.overlayDirectory = work.string();
    dc.workingSet = manifest->workingSet;
    dc.startHoard = !args->flag("no-hoard");
    auto pdisk = disk::ParcelDisk::open(std::move(dc));
    if (!pdisk.ok())
        return fail(pdisk.error());

    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    disk::NbdServerOptions no;
    no.socketPath = *socket;
    auto server = disk::NbdServer::start(**pdisk, no);
    if (!server.ok())
        return fail(server.error());
    std::printf("serving %s/%s version %llu (%s) on %s\n", user.c_str(), parcelName.c_str(),
                (unsigned long long)n, formatBytes(manifest->diskSize).c_str(),
                (*server)->uri().c_str());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&signals, &sig);
    (*server)->stop();
    if (!args->flag("commit")) {
        std::printf("stopped; writes discarded\n");
        return kExitOk;
    }
    auto table = (*pdisk)->finalChunkTable();
    if (!table.ok())
        return fail(table.error());
    parcel::Manifest next = *manifest;
    next.parent = n;
    next.created = 0;
    next.kiosk = "isrctl-disk-serve";
    next.disk = std::move(table->table);
    // The memory image no longer matches the disk: the next resume boots.
    next.dropSavedMemory();
    next.workingSet = table->workingSet;
    std::sort(next.workingSet.begin(), next.workingSet.end());
    next.workingSet.erase(std::unique(next.workingSet.begin(), next.workingSet.end()),
                          next.workingSet.end());
    auto committed = parcels.commit(parcelName, next, table->newChunks);
    if (!committed.ok())
        return fail(committed.error());
    std::printf("committed version %llu (%zu new chunks)\n", (unsigned long long)*committed,
                table->newChunks.size());
    return kExitOk;
}

CommandRegistration regServe({
    .name = "disk serve",
    .args = "USER PARCEL --socket PATH",
    .summary = "serve a parcel's disk over NBD until SIGTERM",
    .run = serve,
    .options = {{"--socket PATH", "the UNIX socket to serve on (an absolute path)"},
                {"--version N", "the version to serve (default: the latest)"},
                {"--commit", "at SIGTERM keep the writes as a new version (default: discard)"},
                {"--no-hoard", "fetch only the chunks that are read"},
                {"--cache-dir DIR",
                 "the chunk cache (default: next to the socket, removed at exit)"},
                {"--cache-size SIZE", "the cache's cap (default 4G)"},
                {"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--password-stdin",
                 "read the password as one line from stdin instead of prompting"}},
});

} // namespace
} // namespace isr::cli
