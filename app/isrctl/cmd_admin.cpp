// isrctl store / user / gc / fsck: administering a parcel store.
#include "cli.h"
#include "parcel/rekey.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace isr::cli {
namespace {

const std::vector<std::string> kFlags = {"json", "password-stdin", "dry-run"};

Result<crypto::KdfParams> kdfByName(const std::string& name) {
    if (name == "moderate")
        return crypto::KdfParams::moderate();
    if (name == "interactive")
        return crypto::KdfParams::interactive();
    if (name == "minimal") { // for tests only: weak against offline guessing
        if (!crypto::weakKdfAllowedForTests())
            return Error(Errc::InvalidArgument,
                         "--kdf minimal is below this isr's floor (interactive) and only for "
                         "the test suite (" +
                             std::string(crypto::kInsecureTestKdfEnv) + "=1)");
        return crypto::KdfParams::minimal();
    }
    return Error(Errc::InvalidArgument,
                 "unknown --kdf '" + name + "' (moderate, interactive or minimal)");
}

int storeInit(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 1, 1, {"kdf", "store-credentials"}, "store init"))
        return rc;
    std::string url = args->positional()[0];
    auto kdf = kdfByName(args->optionOr("kdf", "moderate"));
    if (!kdf.ok())
        return fail(kdf.error().message, kExitUsage);
    // A local store's directory is created here, and only here: opening a
    // store anywhere else never creates anything.
    std::string path = url.rfind("file://", 0) == 0 ? url.substr(7) : url;
    if (!path.empty() && path[0] == '/') {
        std::error_code ec;
        std::filesystem::create_directories(path, ec);
        if (ec)
            return fail("cannot create " + path + ": " + ec.message());
    }
    store::StoreOptions options;
    if (auto st = applyStoreCredentials(*args, options); !st.ok())
        return fail(st.error().message, kExitUsage);
    auto s = store::openStore(url, options);
    if (!s.ok())
        return fail(s.error());
    auto st = parcel::initStore(**s, *kdf);
    if (!st.ok())
        return fail(st.error());
    std::printf("initialised isr store at %s\n", (*s)->url().c_str());
    return kExitOk;
}

// --s3-access-key KEY --s3-secret-key-file FILE: a user's own S3 write
// credentials (the secret from a file: never on the command line).
Result<store::Credentials> s3KeysFromArgs(const Args& args) {
    store::Credentials s3;
    auto access = args.option("s3-access-key");
    auto file = args.option("s3-secret-key-file");
    if (!access || access->empty())
        return Error(Errc::InvalidArgument, "--s3-secret-key-file needs --s3-access-key");
    if (!file)
        return Error(Errc::InvalidArgument, "--s3-access-key needs --s3-secret-key-file");
    s3.accessKey = *access;
    std::FILE* f = std::fopen(file->c_str(), "r");
    if (!f)
        return Error(Errc::Io, "cannot read " + *file);
    char buf[256] = {};
    if (std::fgets(buf, sizeof buf, f))
        s3.secretKey = buf;
    std::fclose(f);
    while (!s3.secretKey.empty() && (s3.secretKey.back() == '\n' || s3.secretKey.back() == '\r'))
        s3.secretKey.pop_back();
    if (s3.secretKey.empty())
        return Error(Errc::InvalidArgument, *file + " holds no secret key");
    return s3;
}

int userAdd(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc =
            checkUsage(*args, 1, 1, {"store", "s3-access-key", "s3-secret-key-file"}, "user add"))
        return rc;
    const std::string& user = args->positional()[0];
    if (auto v = parcel::validateName("user name", user); !v.ok())
        return fail(v.error().message, kExitUsage);
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    auto password = readPassword("New password for " + user + ": ", args->flag("password-stdin"));
    if (!password.ok())
        return fail(password.error().message, kExitUsage);
    if (!args->flag("password-stdin")) {
        auto again = readPassword("Repeat the password: ", false);
        if (!again.ok() || *again != *password)
            return fail("the passwords do not match", kExitUsage);
    }
    store::Credentials s3;
    if (auto access = args->option("s3-access-key")) {
        auto read = s3KeysFromArgs(*args);
        if (!read.ok())
            return fail(read.error().message,
                        read.error().code == Errc::InvalidArgument ? kExitUsage : kExitFailed);
        s3 = std::move(*read);
    }
    auto st = parcel::createAccount(**s, user, *password, s3);
    if (!st.ok())
        return fail(st.error());
    std::printf("created user %s\n", user.c_str());
    return kExitOk;
}

// The parcels a key rotation or rekey skipped, for --json: the holder as
// the lock names it (the kiosk when its sealed id opened, else "holder
// <hex>"; core/parcel FORMAT.md "Lock").
json::Array lockedJson(const std::vector<std::pair<std::string, parcel::LockInfo>>& locked) {
    json::Array out;
    for (const auto& [parcel, holder] : locked)
        out.emplace_back(json::Object{{"parcel", parcel},
                                      {"kiosk", holder.holderLabel()},
                                      {"since", holder.since},
                                      {"heartbeat", holder.heartbeat}});
    return out;
}

int userPasswd(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, {"json", "password-stdin", "finish"});
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 1, 1, {"store", "s3-access-key", "s3-secret-key-file"},
                            "user passwd"))
        return rc;
    const std::string& user = args->positional()[0];
    const bool finish = args->flag("finish");
    parcel::PasswordChangeOptions options;
    if (args->option("s3-access-key") || args->option("s3-secret-key-file")) {
        if (finish)
            return fail("--finish changes no password and no keys", kExitUsage);
        auto s3 = s3KeysFromArgs(*args);
        if (!s3.ok())
            return fail(s3.error().message,
                        s3.error().code == Errc::InvalidArgument ? kExitUsage : kExitFailed);
        options.s3 = std::move(*s3);
    }
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    bool piped = args->flag("password-stdin");
    Result<parcel::RotationReport> report = Error(Errc::Internal, "unset");
    if (finish) {
        auto password = readPassword("Password for " + user + ": ", piped);
        if (!password.ok())
            return fail(password.error().message, kExitUsage);
        report = parcel::finishKeyRotation(**s, user, *password, terminalProgress());
    } else {
        // With --password-stdin: the old password on the first line, the new on the second.
        auto oldPassword = readPassword("Current password for " + user + ": ", piped);
        if (!oldPassword.ok())
            return fail(oldPassword.error().message, kExitUsage);
        auto newPassword = readPassword("New password: ", piped);
        if (!newPassword.ok())
            return fail(newPassword.error().message, kExitUsage);
        if (!piped) {
            auto again = readPassword("Repeat the new password: ", false);
            if (!again.ok() || *again != *newPassword)
                return fail("the passwords do not match", kExitUsage);
        }
        report = parcel::changePassword(**s, user, *oldPassword, *newPassword, options,
                                        terminalProgress());
    }
    if (!report.ok())
        return fail(report.error());
    if (args->flag("json")) {
        json::Array locked = lockedJson(report->locked);
        json::Array unreadable;
        for (const auto& key : report->unreadable)
            unreadable.emplace_back(key);
        printJson(json::Object{{"user", user},
                               {"password_changed", !finish},
                               {"finished", report->finished},
                               {"parcels", report->parcels},
                               {"versions_resealed", report->versionsResealed},
                               {"versions_already_new", report->versionsAlreadyNew},
                               {"locked", std::move(locked)},
                               {"unreadable", std::move(unreadable)}});
    } else {
        if (!finish)
            std::printf("changed the password of %s and replaced its master key\n", user.c_str());
        std::printf("re-sealed %llu version(s) under the new master key (%llu already were)\n",
                    (unsigned long long)report->versionsResealed,
                    (unsigned long long)report->versionsAlreadyNew);
        for (const auto& [parcel, holder] : report->locked)
            std::printf("parcel %s is open at kiosk %s (since %lld): its versions stay readable "
                        "with the old key until the rotation is finished\n",
                        parcel.c_str(), holder.holderLabel().c_str(), (long long)holder.since);
        for (const auto& key : report->unreadable)
            std::printf("%s opens with no key of the account (damaged?): left alone; see "
                        "'isrctl fsck --user %s'\n",
                        key.c_str(), user.c_str());
        if (report->finished)
            std::printf("key rotation finished: no old master key is left in the account\n");
        else
            std::printf("key rotation NOT finished: the old master key stays in the account; "
                        "run 'isrctl user passwd --finish %s' when those parcels are closed\n",
                        user.c_str());
    }
    return kExitOk;
}

// isrctl user rekey: a new convergence secret (and master key); every
// version re-encrypted under it (core/parcel/rekey.h). Runs the user's gc
// at the end (unless --no-gc): the point of a rekey is that the store stops
// holding chunks under the old secret, and once it is finished nothing
// references them.
int userRekey(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, {"json", "password-stdin", "finish", "no-gc"});
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 1, 1, {"store", "grace"}, "user rekey"))
        return rc;
    const std::string& user = args->positional()[0];
    const bool finish = args->flag("finish");
    parcel::RekeyOptions options;
    if (!args->flag("no-gc")) {
        auto grace = parseDuration(args->optionOr("grace", "24h"));
        if (!grace.ok())
            return fail(grace.error().message, kExitUsage);
        options.collectGarbageGrace = *grace;
    }
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    auto password = readPassword("Password for " + user + ": ", args->flag("password-stdin"));
    if (!password.ok())
        return fail(password.error().message, kExitUsage);
    auto report = finish ? parcel::finishRekey(**s, user, *password, options, terminalProgress())
                         : parcel::rekeyUser(**s, user, *password, options, terminalProgress());
    endProgress();
    if (!report.ok())
        return fail(report.error());
    if (args->flag("json")) {
        json::Array locked = lockedJson(report->locked);
        json::Object out{{"user", user},
                         {"started", report->started},
                         {"finished", report->finished},
                         {"parcels", report->parcels},
                         {"versions_rewritten", report->versionsRewritten},
                         {"versions_already_new", report->versionsAlreadyNew},
                         {"chunks_encoded", report->chunksEncoded},
                         {"chunks_uploaded", report->chunksUploaded},
                         {"bytes_uploaded", report->bytesUploaded},
                         {"memory_bytes", report->memoryBytes},
                         {"locked", std::move(locked)}};
        if (report->gc)
            out["gc"] = json::Object{{"removed", report->gc->removed},
                                     {"removed_bytes", report->gc->removedBytes},
                                     {"kept_young", report->gc->keptYoung}};
        if (!report->gcError.empty())
            out["gc_error"] = report->gcError;
        printJson(std::move(out));
        return kExitOk;
    }
    if (report->started)
        std::printf("gave %s a new convergence secret and master key\n", user.c_str());
    std::printf(
        "re-encrypted %llu version(s) under the new secret (%llu already were); "
        "%llu chunk(s) encoded, %llu uploaded (%s)\n",
        (unsigned long long)report->versionsRewritten,
        (unsigned long long)report->versionsAlreadyNew, (unsigned long long)report->chunksEncoded,
        (unsigned long long)report->chunksUploaded, formatBytes(report->bytesUploaded).c_str());
    for (const auto& [parcel, holder] : report->locked)
        std::printf("parcel %s is open at kiosk %s (since %lld): left under the old secret "
                    "until the rekey is finished\n",
                    parcel.c_str(), holder.holderLabel().c_str(), (long long)holder.since);
    if (!report->finished) {
        std::printf("rekey NOT finished: the old secret stays in the account; run 'isrctl user "
                    "rekey --finish %s' when those parcels are closed\n",
                    user.c_str());
        return kExitOk;
    }
    if (finish && !report->started && report->versionsRewritten == 0 &&
        report->versionsAlreadyNew == 0)
        std::printf("no rekey of %s was unfinished: nothing to do\n", user.c_str());
    else
        std::printf("rekey finished: no old secret or master key is left in the account\n");
    if (report->gc)
        std::printf("gc removed %llu unreferenced chunk(s) (%s); %llu younger than the grace "
                    "period stay until a later gc\n",
                    (unsigned long long)report->gc->removed,
                    formatBytes(report->gc->removedBytes).c_str(),
                    (unsigned long long)report->gc->keptYoung);
    else if (!report->gcError.empty())
        std::printf("gc did not run (%s): run 'isrctl gc --user %s' to remove the old chunks\n",
                    report->gcError.c_str(), user.c_str());
    else
        std::printf("the old chunks are unreferenced: 'isrctl gc --user %s' removes them\n",
                    user.c_str());
    return kExitOk;
}

int fsck(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 0, 0, {"store", "user"}, "fsck"))
        return rc;
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    auto report = parcel::fsckStore(**s, terminalProgress());
    endProgress();
    if (!report.ok())
        return fail(report.error());
    parcel::FsckReport total = *report;
    if (auto user = args->option("user")) {
        auto secrets = signInFromArgs(**s, *user, *args);
        if (!secrets.ok())
            return fail(secrets.error());
        parcel::Parcels parcels(**s, std::move(*secrets));
        auto deep = parcel::fsckUser(parcels, terminalProgress());
        endProgress();
        if (!deep.ok())
            return fail(deep.error());
        total.manifestsChecked += deep->manifestsChecked;
        total.chunksChecked += deep->chunksChecked;
        total.problems.insert(total.problems.end(), deep->problems.begin(), deep->problems.end());
    }
    if (args->flag("json")) {
        json::Array problems(total.problems.begin(), total.problems.end());
        printJson(json::Object{{"clean", total.clean()},
                               {"objects", total.objectsChecked},
                               {"manifests", total.manifestsChecked},
                               {"chunks", total.chunksChecked},
                               {"problems", std::move(problems)}});
    } else {
        for (const auto& p : total.problems)
            std::printf("DAMAGED: %s\n", p.c_str());
        std::printf("%s: %llu objects, %llu manifests, %llu chunk checks, %zu problems\n",
                    total.clean() ? "clean" : "DAMAGE FOUND",
                    (unsigned long long)total.objectsChecked,
                    (unsigned long long)total.manifestsChecked,
                    (unsigned long long)total.chunksChecked, total.problems.size());
    }
    return total.clean() ? kExitOk : kExitDamage;
}

json::Array pruneJson(const std::vector<parcel::PruneReport>& pruned) {
    json::Array versions;
    for (const auto& p : pruned) {
        json::Array removed(p.removed.begin(), p.removed.end());
        versions.push_back(json::Object{
            {"parcel", p.parcel}, {"removed", removed}, {"kept", std::uint64_t(p.kept.size())}});
    }
    return versions;
}

void printPruned(const std::vector<parcel::PruneReport>& pruned, bool dryRun,
                 const std::string& lead) {
    for (const auto& p : pruned)
        if (!p.removed.empty())
            std::printf("%s%s %s: %zu version%s (%llu..%llu), keeping %zu\n", lead.c_str(),
                        dryRun ? "would prune" : "pruned", p.parcel.c_str(), p.removed.size(),
                        p.removed.size() == 1 ? "" : "s", (unsigned long long)p.removed.front(),
                        (unsigned long long)p.removed.back(), p.kept.size());
}

// gc --all: every user, without passwords, from the reference lists.
int gcAll(store::Store& store, std::int64_t grace, const parcel::Retention& retention, bool dryRun,
          bool asJson) {
    auto userJson = [&](const parcel::UserGcReport& r) {
        using Skipped = parcel::UserGcReport::Skipped;
        const char* status = r.skipped == Skipped::No       ? "collected"
                             : r.skipped == Skipped::Locked ? "skipped_locked"
                                                            : "skipped_references";
        return json::Object{{"user", r.user},
                            {"status", status},
                            {"reason", r.reason},
                            {"versions_removed", r.gc.versionsRemoved},
                            {"version_bytes", r.gc.versionBytes},
                            {"removed", r.gc.removed},
                            {"removed_bytes", r.gc.removedBytes},
                            {"kept_young", r.gc.keptYoung},
                            {"referenced", r.gc.referenced},
                            {"versions", pruneJson(r.pruned)}};
    };
    auto onUser = [&](const parcel::UserGcReport& r) {
        if (asJson)
            return;
        using Skipped = parcel::UserGcReport::Skipped;
        if (r.skipped == Skipped::Locked) {
            std::printf("%s: skipped, open at a kiosk: %s\n", r.user.c_str(), r.reason.c_str());
        } else if (r.skipped == Skipped::References) {
            std::printf("%s: SKIPPED, nothing removed: %s; run 'isrctl gc --user %s' once\n",
                        r.user.c_str(), r.reason.c_str(), r.user.c_str());
        } else {
            printPruned(r.pruned, dryRun, r.user + ": ");
            std::printf("%s: %s %llu version%s (%s) and %llu unreferenced chunks (%s); kept %llu "
                        "younger than the grace period\n",
                        r.user.c_str(), dryRun ? "would remove" : "removed",
                        (unsigned long long)r.gc.versionsRemoved,
                        r.gc.versionsRemoved == 1 ? "" : "s",
                        formatBytes(r.gc.versionBytes).c_str(), (unsigned long long)r.gc.removed,
                        formatBytes(r.gc.removedBytes).c_str(), (unsigned long long)r.gc.keptYoung);
        }
        std::fflush(stdout);
    };
    auto report = parcel::collectGarbageAll(store, grace, dryRun, retention, onUser);
    if (!report.ok())
        return fail(report.error().describe() +
                    " -- gc stopped here; it removes only pruned versions and unreferenced "
                    "chunks, so what is left is consistent: run it again");
    const auto& t = report->total;
    const std::uint64_t collected =
        report->users.size() - report->skippedLocked - report->skippedReferences;
    if (asJson) {
        json::Array users;
        for (const auto& r : report->users)
            users.push_back(userJson(r));
        printJson(json::Object{
            {"dry_run", dryRun},
            {"users", std::move(users)},
            {"total", json::Object{{"users_collected", collected},
                                   {"users_skipped_locked", report->skippedLocked},
                                   {"users_skipped_references", report->skippedReferences},
                                   {"versions_removed", t.versionsRemoved},
                                   {"version_bytes", t.versionBytes},
                                   {"removed", t.removed},
                                   {"removed_bytes", t.removedBytes},
                                   {"kept_young", t.keptYoung}}}});
    } else {
        std::printf("total: %s %llu versions and %llu chunks, %s, of %llu user%s; %llu skipped "
                    "(open at a kiosk), %llu skipped (no usable reference list)\n",
                    dryRun ? "would remove" : "removed", (unsigned long long)t.versionsRemoved,
                    (unsigned long long)t.removed,
                    formatBytes(t.versionBytes + t.removedBytes).c_str(),
                    (unsigned long long)collected, collected == 1 ? "" : "s",
                    (unsigned long long)report->skippedLocked,
                    (unsigned long long)report->skippedReferences);
    }
    // A user open at a kiosk is everyday life on a fleet (the next run gets
    // it); a user without usable lists needs the operator: exit 4.
    return report->skippedReferences > 0 ? kExitSkipped : kExitOk;
}

int gc(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, {"json", "password-stdin", "dry-run", "all"});
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc =
            checkUsage(*args, 0, 0, {"store", "user", "grace", "keep-last", "keep-within"}, "gc"))
        return rc;
    parcel::Retention retention;
    if (auto keep = args->option("keep-last")) {
        char* end = nullptr;
        unsigned long long n = std::strtoull(keep->c_str(), &end, 10);
        // 0 would ask to keep no version at all, which the newest always
        // escapes: refused as the mistake it almost certainly is.
        if (keep->empty() || *end || (*keep)[0] == '-' || n == 0)
            return fail("--keep-last needs a whole number of versions, at least 1", kExitUsage);
        retention.keepLast = n;
    }
    if (auto within = args->option("keep-within")) {
        auto d = parseDuration(*within);
        if (!d.ok())
            return fail(d.error().message, kExitUsage);
        if (*d <= 0)
            return fail("--keep-within needs a duration greater than 0", kExitUsage);
        retention.keepWithin = *d;
    }
    auto user = args->option("user");
    const bool all = args->flag("all");
    if (user && all)
        return fail("gc takes --user USER or --all, not both", kExitUsage);
    if (!user && !all)
        return fail("gc needs --user USER (with the user's password) or --all (every user, "
                    "no password: from the reference lists)",
                    kExitUsage);
    auto grace = parseDuration(args->optionOr("grace", "24h"));
    if (!grace.ok())
        return fail(grace.error().message, kExitUsage);
    const bool dryRun = args->flag("dry-run");
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    if (all)
        return gcAll(**s, *grace, retention, dryRun, args->flag("json"));
    auto secrets = signInFromArgs(**s, *user, *args);
    if (!secrets.ok())
        return fail(secrets.error());
    parcel::Parcels parcels(**s, std::move(*secrets));
    std::vector<parcel::PruneReport> pruned;
    auto report = parcel::collectGarbage(parcels, *grace, dryRun, retention, &pruned);
    if (!report.ok())
        return fail(report.error());
    if (args->flag("json")) {
        printJson(json::Object{{"referenced", report->referenced},
                               {"removed", report->removed},
                               {"removed_bytes", report->removedBytes},
                               {"kept_young", report->keptYoung},
                               {"versions_removed", report->versionsRemoved},
                               {"version_bytes", report->versionBytes},
                               {"refs_written", report->refsWritten},
                               {"versions", pruneJson(pruned)},
                               {"dry_run", dryRun}});
    } else {
        printPruned(pruned, dryRun, "");
        std::printf("%s %llu unreferenced chunks (%s); kept %llu younger than the grace period; "
                    "%llu referenced\n",
                    dryRun ? "would remove" : "removed", (unsigned long long)report->removed,
                    formatBytes(report->removedBytes).c_str(),
                    (unsigned long long)report->keptYoung, (unsigned long long)report->referenced);
        if (report->refsWritten > 0)
            std::printf("%s %llu missing or outdated reference list%s (what gc --all reads)\n",
                        dryRun ? "would write" : "wrote", (unsigned long long)report->refsWritten,
                        report->refsWritten == 1 ? "" : "s");
    }
    return kExitOk;
}

CommandRegistration regInit({
    .name = "store init",
    .args = "URL",
    .summary = "create a new parcel store",
    .run = storeInit,
    .options = {{"--kdf moderate|interactive|minimal",
                 "password hashing cost for its accounts (default moderate; minimal only for "
                 "tests and demos)"},
                {"--store-credentials FILE", "the bucket owner's S3 keys"}},
    .details =
        "URL is file:///dir (or /dir, created if missing) or s3://host[:port]/bucket[/prefix] "
        "(s3s:// for HTTPS).",
});
CommandRegistration regUserAdd({
    .name = "user add",
    .args = "USER",
    .summary = "create a user account (prompts for the password)",
    .run = userAdd,
    .options = {{"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--password-stdin",
                 "read the password as one line from stdin instead of prompting"},
                {"--s3-access-key KEY", "the user's own S3 write key, kept sealed in the account"},
                {"--s3-secret-key-file FILE", "the file holding that key's secret"}},
});
CommandRegistration regUserPasswd({
    .name = "user passwd",
    .args = "USER",
    .summary = "change a user's password and rotate the master key",
    .run = userPasswd,
    .options = {{"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--password-stdin", "read the old password from stdin's first line, the new "
                                     "one from its second (with --finish: the password)"},
                {"--finish", "only finish an interrupted or partial key rotation (prompts for "
                             "the current password)"},
                {"--s3-access-key KEY", "replace the user's own S3 write key sealed in the "
                                        "account (make the new RGW key first, revoke the old "
                                        "one after)"},
                {"--s3-secret-key-file FILE", "the file holding the new key's secret"},
                {"--json", "print the report as JSON"}},
    .details =
        "A new random master key replaces the old one: every version of every parcel is "
        "re-sealed under it, and the account drops the old key when none is left under it, so "
        "the old password with an old copy of the account opens nothing the store holds. A "
        "parcel open at a kiosk is skipped (the kiosk saves under the key it signed in with): "
        "run --finish after it is closed. A kill leaves everything readable with the new "
        "password; --finish completes it. Chunks are not re-encrypted (the convergence secret "
        "stays).",
});
CommandRegistration regUserRekey({
    .name = "user rekey",
    .args = "USER",
    .summary = "re-encrypt a user's chunks under a new secret",
    .run = userRekey,
    .options = {{"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--password-stdin",
                 "read the password as one line from stdin instead of prompting"},
                {"--finish", "only continue an interrupted or partial rekey"},
                {"--grace DURATION", "the gc at the end keeps unreferenced chunks younger than "
                                     "this (default 24h)"},
                {"--no-gc", "do not run gc at the end (the old chunks stay until a later gc)"},
                {"--json", "print the report as JSON"}},
    .details =
        "A new random convergence secret and master key replace the old ones. Every version of "
        "every parcel is rewritten in place (same number, time and kiosk) so that it "
        "references only chunks encrypted under the new secret; memory images are re-chunked "
        "with the new secret. Each parcel is locked while it is converted; a parcel open at a "
        "kiosk is skipped (run --finish after it is closed). A kill leaves every version "
        "readable; running rekey again (or --finish) continues. When finished the account "
        "drops the old secret and gc removes the old chunks. The password does not change.",
});
CommandRegistration regFsck({
    .name = "fsck",
    .args = "",
    .summary = "check the store (exit 3 on damage)",
    .run = fsck,
    .options = {{"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--user USER", "also sign in as USER and open and decode all of USER's data"},
                {"--password-stdin",
                 "read the password as one line from stdin instead of prompting"},
                {"--json", "print the report as JSON"}},
});
CommandRegistration regGc({
    .name = "gc",
    .args = "--user USER | --all",
    .summary = "remove old versions and unreferenced chunks",
    .run = gc,
    .options = {{"--user USER", "one user, with the password (opens the manifests; also "
                                "writes missing reference lists)"},
                {"--all", "every user, no password: from the reference lists; a user open at a "
                          "kiosk or without usable lists is skipped and reported"},
                {"--grace DURATION", "keep unreferenced chunks younger than this (default 24h)"},
                {"--keep-last N", "also remove versions older than the newest N"},
                {"--keep-within DURATION",
                 "also remove versions saved longer ago than this (e.g. 30d); with --keep-last, "
                 "a version either rule keeps stays"},
                {"--dry-run", "count what would go, remove nothing"},
                {"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--password-stdin",
                 "read the password as one line from stdin instead of prompting"},
                {"--json", "print the report as JSON"}},
    .details =
        "--all exits 4 when a user was skipped for a missing or damaged reference list "
        "(nothing of that user is removed; 'gc --user USER' once writes the lists); a user "
        "skipped because a parcel is open at a kiosk does not change the exit status. A store "
        "error stops gc with exit 1: only pruned versions and unreferenced chunks are ever "
        "removed, so a rerun finishes the job.",
});

} // namespace
} // namespace isr::cli
