// isrctl session resume|suspend|status and isrctl demo init: the headless
// kiosk. `session resume` runs one session in the foreground until SIGTERM
// or SIGINT (what `session suspend` sends), then suspends and leaves; or
// until the VM ends on its own (status.json says why, exit status 1).
// Progress goes to the terminal and to <kiosk dir>/status.json, which
// `session status` reads; nothing listens on any socket.
#include "cli.h"
#include "failuretext.h"
#include "session/kioskconfig.h"
#include "session/session.h"
#include "session_status.h"
#include "util/process.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace isr::cli {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kFlags = {"json",   "password-stdin", "take-over",
                                         "serial", "no-suspend",     "desktop"};

std::string defaultDataDir() {
    if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x)
        return std::string(x) + "/isr";
    if (const char* h = std::getenv("HOME"); h && *h)
        return std::string(h) + "/.local/share/isr";
    return "/var/lib/isr";
}

std::string absolute(const std::string& p) {
    return fs::absolute(p).lexically_normal().string();
}

// Writes status.json atomically (temp + rename) for `session status`.
class StatusFile {
public:
    explicit StatusFile(std::string path) : path_(std::move(path)) {}
    void update(const std::function<void(json::Object&)>& change) {
        std::lock_guard lock(mutex_);
        change(doc_);
        std::string tmp = path_ + ".tmp";
        {
            std::ofstream f(tmp, std::ios::trunc);
            f << json::Value(doc_).dump() << "\n";
        }
        std::rename(tmp.c_str(), path_.c_str());
    }

private:
    std::string path_;
    std::mutex mutex_;
    json::Object doc_;
};

json::Value timelineJson(const std::vector<session::TimelineEntry>& t) {
    json::Array rows;
    for (const auto& e : t)
        rows.push_back(json::Object{{"stage", session::stageName(e.stage)},
                                    {"seconds", e.seconds},
                                    {"bytes_down", e.bytesDown},
                                    {"bytes_up", e.bytesUp}});
    return rows;
}

int resume(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 2, 2,
                            {"store", "kiosk-dir", "guest-dir", "accel", "cache-size", "kiosk-id",
                             "trickle-quiet", "heartbeat", "config"},
                            "session resume"))
        return rc;
    const std::string user = args->positional()[0], parcelName = args->positional()[1];
    // The configuration as isr-kiosk resolves it: --config FILE or
    // $ISR_KIOSK_CONFIG (a kiosk.conf, see isr-kiosk(1)), with the options
    // below over it. Unlike the kiosk, isrctl reads /etc/isr/kiosk.conf only
    // when told to: a script on a kiosk machine must not pick up its settings.
    session::KioskConfigLocation where;
    where.explicitPath = args->option("config");
    where.defaultPath.clear();
    session::KioskOverrides overrides;
    overrides.storeUrl = args->option("store");
    overrides.stateDir = args->option("kiosk-dir");
    overrides.guestDir = args->option("guest-dir");
    overrides.defaultStateDir = defaultDataDir() + "/kiosk";
    overrides.defaultGuestDir = defaultDataDir() + "/demo/guest";
    overrides.accelerator = args->option("accel");
    overrides.kioskId = args->option("kiosk-id");
    if (auto c = args->option("cache-size")) {
        auto bytes = parseSize(*c);
        if (!bytes.ok())
            return fail(bytes.error().message, kExitUsage);
        overrides.cacheCapBytes = *bytes;
    }
    auto resolved = session::resolveKioskConfig(where, overrides);
    if (!resolved.ok())
        return fail(resolved.error().message, kExitUsage);
    session::KioskConfig config = std::move(resolved->session);
    if (config.storeUrl.empty())
        return fail("no store given: use --store URL or set ISR_STORE", kExitUsage);
    if (auto st = applyStoreCredentials(*args, config.storeOptions); !st.ok())
        return fail(st.error().message, kExitUsage);
    config.serialConsole = args->flag("serial");
    if (auto q = args->option("trickle-quiet")) {
        auto secs = parseDuration(*q);
        if (!secs.ok())
            return fail(secs.error().message, kExitUsage);
        config.trickleQuiet = std::chrono::seconds(*secs);
    }
    if (auto h = args->option("heartbeat")) {
        auto secs = parseDuration(*h);
        if (!secs.ok() || *secs <= 0)
            return fail("--heartbeat needs a positive duration", kExitUsage);
        config.heartbeatInterval = std::chrono::seconds(*secs);
    }
    auto password = readPassword("Password for " + user + ": ", args->flag("password-stdin"));
    if (!password.ok())
        return fail(password.error().message, kExitUsage);

    // SIGTERM/SIGINT mean "Suspend & Leave". Block them before any thread
    // starts so only sigwait() below sees them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    std::error_code ec;
    fs::create_directories(config.stateDir, ec);
    ::unlink((config.stateDir + "/status.json").c_str()); // a previous run's outcome
    StatusFile status(config.stateDir + "/status.json");
    {
        std::ofstream pid(config.stateDir + "/session.pid", std::ios::trunc);
        pid << ::getpid() << "\n";
    }
    bool tty = isatty(STDERR_FILENO);
    session::Listener listener;
    listener.stageChanged = [&](session::Stage s) {
        std::fprintf(stderr, "%sstage: %s\n", tty ? "\r\033[K" : "", session::stageName(s));
        status.update([&](json::Object& o) {
            o["stage"] = session::stageName(s);
            o["pid"] = std::int64_t(::getpid());
        });
    };
    std::atomic<std::int64_t> lastReport{0};
    listener.progress = [&](const session::Progress& p) {
        auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
        if (p.done != p.total && now - lastReport < 250)
            return;
        lastReport = now;
        if (tty)
            std::fprintf(stderr, "\r\033[K%s %s / %s (%s/s)", p.what.c_str(),
                         formatBytes(p.done).c_str(), formatBytes(p.total).c_str(),
                         formatBytes(std::uint64_t(p.bytesPerSecond)).c_str());
        status.update([&](json::Object& o) {
            o["progress"] = json::Object{
                {"what", p.what}, {"done", p.done}, {"total", p.total}, {"rate", p.bytesPerSecond}};
        });
    };
    listener.failed = [&](const session::Failure& f) {
        // The kiosk's own sentences (ui/text), in English; the technical
        // detail after them for the operator.
        const std::string text = ui::text::failure(f, QLocale::c()).toStdString();
        const std::string& detail = f.detail;
        std::fprintf(stderr, "%s%s failed (%s): %s\n", tty ? "\r\033[K" : "",
                     session::stageName(f.stage), session::errorKindName(f.kind), text.c_str());
        if (!detail.empty())
            std::fprintf(stderr, "  detail: %s\n", detail.c_str());
        status.update([&](json::Object& o) {
            o["error"] = json::Object{{"stage", session::stageName(f.stage)},
                                      {"kind", session::errorKindName(f.kind)},
                                      {"cause", session::failureCauseName(f.cause)},
                                      {"message", text},
                                      {"detail", detail}};
        });
        // The VM ended while Running (it stopped, its OS never came up, the
        // parcel was taken over): nothing is left to suspend, so the command
        // ends as if told to leave instead of waiting for a signal. Only
        // the watcher's thread reports Running failures, while the main
        // thread sits in sigwait() below.
        if (f.stage == session::Stage::Running)
            ::kill(::getpid(), SIGTERM);
    };

    auto created = session::Session::create(config, listener);
    if (!created.ok())
        return fail(created.error());
    auto& sess = **created;
    auto finish = [&](int rc) {
        status.update([&](json::Object& o) {
            o["timeline"] = timelineJson(sess.timeline());
            o["committed_version"] = sess.committedVersion();
            o["exit"] = rc;
        });
        std::printf("%s", session::formatTimeline(sess.timeline()).c_str());
        std::fflush(stdout);
        ::unlink((config.stateDir + "/session.pid").c_str());
        return rc;
    };
    auto resumed = sess.resume(user, *password, parcelName, args->flag("take-over"));
    if (!resumed.ok()) {
        (void)sess.abandon();
        return finish(kExitFailed);
    }
    status.update([&](json::Object& o) {
        o["user"] = user;
        o["parcel"] = parcelName;
        o["base_version"] = sess.baseVersion();
        o["base_created"] = sess.baseSave().created;
        o["base_kiosk"] = sess.baseSave().kiosk;
        o["accelerator"] = sess.accelerator();
        o["session_dir"] = sess.sessionDirectory();
        o["scratch_dir"] = sess.scratchDirectory();
        o["serial_socket"] = sess.serialSocketPath();
        o["timeline"] = timelineJson(sess.timeline());
    });
    // "Saved Tuesday 14:02 at kiosk gate-23": what the kiosk's progress page says.
    const std::string savedAt = ui::text::resumingFrom(sess.baseSave(), QLocale::c()).toStdString();
    std::fprintf(stderr,
                 "running %s/%s (version %llu%s%s, %s); send SIGTERM or run 'isrctl session "
                 "suspend' to suspend and leave\n",
                 user.c_str(), parcelName.c_str(), (unsigned long long)sess.baseVersion(),
                 savedAt.empty() ? "" : ", ", savedAt.c_str(), sess.accelerator().c_str());

    // Report the hoard while waiting for the signal, and say on the terminal
    // when it is held back (disk full, store unreachable) and when it goes on.
    std::atomic<bool> stopHoardReport{false};
    std::thread hoardReporter([&] {
        auto shownProblem = session::ErrorKind::None;
        while (!stopHoardReport) {
            auto h = sess.hoard();
            auto booted = sess.firstBootSign();
            status.update([&](json::Object& o) {
                o["hoard"] = hoardStatusJson(h);
                // A firmware parcel's first boot: what showed its OS runs.
                if (booted)
                    o["os_started"] = json::Object{
                        {"sign", booted->sign}, {"after_ms", std::int64_t(booted->after.count())}};
            });
            if (h.problem != shownProblem) {
                if (h.problem != session::ErrorKind::None)
                    std::fprintf(stderr, "%shoard held back: %s (%s)\n", tty ? "\r\033[K" : "",
                                 hoardProblemSentence(session::errorKindName(h.problem)).c_str(),
                                 h.problemMessage.c_str());
                else
                    std::fprintf(stderr, "%shoard going again\n", tty ? "\r\033[K" : "");
                shownProblem = h.problem;
            }
            for (int i = 0; i < 10 && !stopHoardReport; ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    });
    int sig = 0;
    sigwait(&signals, &sig);
    stopHoardReport = true;
    hoardReporter.join();
    if (args->flag("no-suspend")) {
        (void)sess.abandon();
        return finish(kExitOk);
    }
    auto suspended = sess.suspendAndLeave();
    // A failed suspend keeps its state; retry a few times (the store may be
    // back), then give up loudly: the last committed version stays intact.
    // A VM that died cannot be saved however often we try.
    // Only a failed suspend that kept its state is worth another try: any
    // other failure (a dead VM, a take-over by another kiosk) left nothing
    // to save, and retry() would resume the parcel again.
    auto retryable = [&] {
        auto f = sess.failure();
        return !f ||
               (f->stage == session::Stage::Suspending && f->kind != session::ErrorKind::VmFailed &&
                f->cause != session::FailureCause::LockTakenOver);
    };
    for (int attempt = 0; !suspended.ok() && retryable() && attempt < 3; ++attempt) {
        std::this_thread::sleep_for(std::chrono::seconds(2 << attempt));
        suspended = sess.retry(*password);
    }
    if (!suspended.ok()) {
        (void)sess.abandon();
        return finish(kExitFailed);
    }
    return finish(kExitOk);
}

Result<json::Value> readStatus(const std::string& dir) {
    std::ifstream f(dir + "/status.json");
    if (!f)
        return Error(Errc::NotFound, "no session status in " + dir);
    std::stringstream ss;
    ss << f.rdbuf();
    return json::parse(ss.str());
}

int suspend(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 0, 0, {"kiosk-dir", "timeout"}, "session suspend"))
        return rc;
    std::string dir = absolute(args->optionOr("kiosk-dir", defaultDataDir() + "/kiosk"));
    std::ifstream pidFile(dir + "/session.pid");
    long pid = 0;
    if (!(pidFile >> pid) || pid <= 0)
        return fail("no session is running in " + dir);
    if (::kill(pid_t(pid), SIGTERM) != 0)
        return fail("cannot signal session " + std::to_string(pid) + ": " + std::strerror(errno));
    auto timeout = parseDuration(args->optionOr("timeout", "30m"));
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(timeout.ok() ? *timeout : 1800);
    // Done when the session wrote its exit status (its process may linger as
    // a zombie of whoever started it) or when the process is gone.
    auto finished = [&] {
        auto st = readStatus(dir);
        return st.ok() && st->find("exit") != nullptr;
    };
    while (!finished() && ::kill(pid_t(pid), 0) == 0) {
        if (std::chrono::steady_clock::now() > deadline)
            return fail("the session did not finish in time");
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    auto st = readStatus(dir);
    if (!st.ok())
        return fail(st.error());
    if (args->flag("json"))
        printJson(*st);
    auto exitCode = st->getInt("exit");
    auto committed = st->getInt("committed_version");
    if (!exitCode.ok() || *exitCode != 0)
        return fail("suspend failed; see " + dir + "/status.json");
    if (!args->flag("json"))
        std::printf("suspended: committed version %lld\n",
                    (long long)(committed.ok() ? *committed : 0));
    return kExitOk;
}

int statusCmd(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 0, 0, {"kiosk-dir"}, "session status"))
        return rc;
    std::string dir = absolute(args->optionOr("kiosk-dir", defaultDataDir() + "/kiosk"));
    auto st = readStatus(dir);
    if (!st.ok())
        return fail(st.error());
    if (args->flag("json")) {
        printJson(*st);
        return kExitOk;
    }
    auto stage = st->getString("stage");
    std::printf("stage: %s\n", stage.ok() ? stage->c_str() : "?");
    if (const auto* p = st->find("progress"))
        std::printf("progress: %s %lld / %lld\n", p->getString("what").valueOr("").c_str(),
                    (long long)p->getInt("done").valueOr(0),
                    (long long)p->getInt("total").valueOr(0));
    if (const auto* h = st->find("hoard"))
        std::printf("%s", formatHoardStatus(*h).c_str());
    if (const auto* e = st->find("error"))
        std::printf("error: %s\n", e->getString("message").valueOr("").c_str());
    return kExitOk;
}

std::string findGuestBuilder() {
    if (const char* env = std::getenv("ISR_GUEST_BUILDER"))
        return env;
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    for (const fs::path& candidate : {exe.parent_path() / "../share/isr/guest/build-guest.sh",
                                      fs::path(ISR_SOURCE_GUEST_BUILDER)})
        if (fs::exists(candidate, ec))
            return candidate.lexically_normal().string();
    return {};
}

// The reference desktop's builder sits next to the demo guest's: installed
// under share/isr/guest-desktop, in a build tree at resources/guest-desktop.
std::string findDesktopBuilder() {
    if (const char* env = std::getenv("ISR_DESKTOP_BUILDER"))
        return env;
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    for (const fs::path& candidate :
         {exe.parent_path() / "../share/isr/guest-desktop/build-desktop.sh",
          fs::path(ISR_SOURCE_GUEST_BUILDER).parent_path().parent_path() /
              "guest-desktop/build-desktop.sh"})
        if (fs::exists(candidate, ec))
            return candidate.lexically_normal().string();
    return {};
}

int demoInit(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 0, 0, {"data-dir", "memory", "guest-dir", "desktop-dir"},
                            "demo init"))
        return rc;
    // --desktop: the reference desktop (resources/guest-desktop) as parcel
    // "desktop" of the same user, booting its own disk through UEFI.
    const bool desktop = args->flag("desktop");
    const std::string parcelName = desktop ? "desktop" : "demo";
    std::string dir = absolute(args->optionOr("data-dir", defaultDataDir() + "/demo"));
    // build-guest.sh and build-desktop.sh skip work when their inputs are
    // unchanged, so pointing --guest-dir/--desktop-dir at a shared cache makes
    // repeated demo setups cheap.
    std::string guestDir = absolute(args->optionOr("guest-dir", dir + "/guest"));
    std::string desktopDir = absolute(args->optionOr("desktop-dir", dir + "/desktop"));
    std::string image;
    if (desktop) {
        std::string builder = findDesktopBuilder();
        if (builder.empty())
            return fail("cannot find build-desktop.sh (set ISR_DESKTOP_BUILDER)");
        std::fprintf(stderr,
                     "building the reference desktop in %s (the first time takes minutes) ...\n",
                     desktopDir.c_str());
        auto built = runProgramChecked({"sh", builder, desktopDir});
        if (!built.ok())
            return fail(built.error());
        image = desktopDir + "/desktop.img";
    } else {
        std::string builder = findGuestBuilder();
        if (builder.empty())
            return fail("cannot find build-guest.sh (set ISR_GUEST_BUILDER)");
        std::fprintf(stderr, "building the demo guest in %s ...\n", guestDir.c_str());
        auto built = runProgramChecked({"bash", builder, guestDir});
        if (!built.ok())
            return fail(built.error());
        image = guestDir + "/home.ext4";
    }
    std::string storeDir = dir + "/store";
    std::string url = "file://" + storeDir;
    std::error_code ec;
    fs::create_directories(storeDir, ec);
    auto s = store::openStore(url);
    if (!s.ok())
        return fail(s.error());
    if (!parcel::checkStore(**s).ok()) {
        // Interactive limits: the demo password is printed on the screen anyway.
        if (auto st = parcel::initStore(**s, crypto::KdfParams::interactive()); !st.ok())
            return fail(st.error());
    }
    if (auto st = parcel::createAccount(**s, "demo", "demo");
        !st.ok() && st.error().code != Errc::AlreadyExists)
        return fail(st.error());
    auto secrets = parcel::signIn(**s, "demo", "demo");
    if (!secrets.ok())
        return fail(secrets.error());
    parcel::Parcels parcels(**s, std::move(*secrets));
    if (parcels.latest(parcelName).ok()) {
        std::printf("demo already set up: store %s, user demo, password demo, parcel %s\n",
                    url.c_str(), parcelName.c_str());
        return kExitOk;
    }
    parcel::ImportOptions options;
    if (desktop) {
        // 2 GiB: what the reference desktop is measured with (README).
        options.vm.boot = "firmware";
        options.vm.firmware = "uefi";
        options.vm.tpm = true;
        options.vm.memoryMiB = 2048;
    } else {
        options.vm.boot = "demo-guest";
        options.vm.memoryMiB = 256;
    }
    if (auto m = args->option("memory")) {
        auto bytes = parseSize(*m);
        if (!bytes.ok())
            return fail(bytes.error().message, kExitUsage);
        options.vm.memoryMiB = std::uint32_t(*bytes >> 20);
    }
    options.kiosk = "demo-init";
    auto stats = parcel::importImage(parcels, parcelName, image, options, terminalProgress());
    endProgress();
    if (!stats.ok())
        return fail(stats.error());
    std::printf("demo ready: store %s, user demo, password demo, parcel %s (%s in %s)\n",
                url.c_str(), parcelName.c_str(), desktop ? "desktop" : "guest",
                desktop ? desktopDir.c_str() : guestDir.c_str());
    return kExitOk;
}

CommandRegistration regResume({
    .name = "session resume",
    .args = "USER PARCEL",
    .summary = "resume a parcel headless until SIGTERM or VM end",
    .run = resume,
    .options =
        {{"--config FILE", "a kiosk.conf (see isr-kiosk(1)) to start from; options override it"},
         {"--store URL", "the parcel store (default $ISR_STORE)"},
         {"--kiosk-dir DIR", "the kiosk directory (default ~/.local/share/isr/kiosk)"},
         {"--guest-dir DIR", "the demo guest's kernel (default ~/.local/share/isr/demo/guest)"},
         {"--accel kvm|tcg", "the accelerator (default: KVM when it works)"},
         {"--cache-size SIZE", "the chunk cache's cap (default 8G)"},
         {"--kiosk-id ID", "this kiosk's name in the parcel's lock and in the versions it saves "
                           "(default: the host name)"},
         {"--take-over", "take the parcel's lock from another kiosk"},
         {"--serial", "put the guest's serial console on a socket in the session directory"},
         {"--trickle-quiet DURATION",
          "upload a dirty chunk once unwritten this long (default 15s)"},
         {"--heartbeat DURATION", "how often to refresh the parcel's lock (default 60s)"},
         {"--no-suspend", "at the signal leave without saving (for tests)"},
         {"--password-stdin", "read the password as one line from stdin instead of prompting"}},
    .details =
        "SIGTERM or SIGINT (what isrctl session suspend sends) suspends and leaves. Progress "
        "goes to the terminal and to KIOSK-DIR/status.json, which isrctl session status "
        "reads.",
});
CommandRegistration regSuspend({
    .name = "session suspend",
    .args = "",
    .summary = "suspend and leave the session in a kiosk directory",
    .run = suspend,
    .options = {{"--kiosk-dir DIR", "the kiosk directory (default ~/.local/share/isr/kiosk)"},
                {"--timeout DURATION", "how long to wait for it (default 30m)"},
                {"--json", "print the session's final status as JSON"}},
});
CommandRegistration regStatus({
    .name = "session status",
    .args = "",
    .summary = "show the session in a kiosk directory",
    .run = statusCmd,
    .options = {{"--kiosk-dir DIR", "the kiosk directory (default ~/.local/share/isr/kiosk)"},
                {"--json", "print the status as JSON"}},
    .details = "Its stage and progress, the background hoard and, while the hoard is held back, "
               "why (the kiosk's disk nearly full, the store unreachable), and the error if the "
               "session failed.",
});
CommandRegistration regDemo({
    .name = "demo init",
    .args = "",
    .summary = "build the demo guest, store, user and parcel",
    .run = demoInit,
    .options = {{"--data-dir DIR", "where the demo goes (default ~/.local/share/isr/demo)"},
                {"--guest-dir DIR", "where the guest is built (default DATA-DIR/guest)"},
                {"--desktop", "make parcel \"desktop\": the reference Debian desktop (UEFI, TPM)"},
                {"--desktop-dir DIR", "where the desktop is built (default DATA-DIR/desktop)"},
                {"--memory SIZE", "the parcel's memory (default 256M; 2G with --desktop)"}},
    .details = "The store is a local one in DATA-DIR/store, with user demo (password demo) and "
               "parcel demo, or with --desktop parcel desktop. Building the desktop needs root "
               "and Debian's archive (mmdebstrap); it is cached like the demo guest.",
});

} // namespace
} // namespace isr::cli
