// isrctl for an operator with many users: user list/remove, parcel
// remove/status/unlock, store stats. These need no user's password (they
// read only what the store shows in clear: parcel/inventory.h), except
// `parcel status --sign-in`, which opens the latest manifest for when and
// where it was saved.
#include "cli.h"
#include "parcel/inventory.h"

#include <cstdio>
#include <ctime>
#include <iostream>
#include <unistd.h>

namespace isr::cli {
namespace {

const std::vector<std::string> kFlags = {"json", "yes", "force", "sign-in", "password-stdin"};

json::Value lockJson(const std::optional<parcel::LockInfo>& lock, std::int64_t now) {
    if (!lock)
        return nullptr;
    // The kiosk id only when it could be read: a format 2 lock seals it
    // under the user's keys (--sign-in); the session token always.
    json::Object o{{"holder", lock->session.substr(0, 12)},
                   {"kiosk", lock->kiosk.empty() ? json::Value(nullptr) : json::Value(lock->kiosk)},
                   {"since", lock->since},
                   {"heartbeat", lock->heartbeat},
                   {"heartbeat_age_seconds", now - lock->heartbeat},
                   {"stale", lock->stale(now)}};
    return o;
}

json::Value versionsJson(const std::vector<std::uint64_t>& versions) {
    return json::Array(versions.begin(), versions.end());
}

std::string age(std::int64_t seconds) {
    if (seconds < 120)
        return std::to_string(seconds) + " s";
    if (seconds < 7200)
        return std::to_string(seconds / 60) + " min";
    if (seconds < 2 * 86400)
        return std::to_string(seconds / 3600) + " h";
    return std::to_string(seconds / 86400) + " d";
}

std::string lockText(const std::optional<parcel::LockInfo>& lock, std::int64_t now) {
    if (!lock)
        return "not open anywhere";
    return "open at " + lock->holderLabel() + " for " + age(now - lock->since) + ", heartbeat " +
           age(now - lock->heartbeat) + " ago" + (lock->stale(now) ? " (stale)" : "");
}

// Destructive commands: --yes, or on a terminal the name typed back.
// kExitOk when confirmed, else the exit code (the reason is printed).
int confirm(const Args& args, const std::string& what, const std::string& name) {
    if (args.flag("yes"))
        return kExitOk;
    if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO))
        return fail("refusing to remove " + what + " without --yes (stdin is not a terminal)",
                    kExitUsage);
    std::fprintf(stderr,
                 "This removes %s and cannot be undone. Type '%s' to confirm: ", what.c_str(),
                 name.c_str());
    std::string line;
    if (!std::getline(std::cin, line) || line != name)
        return fail("not confirmed; nothing removed");
    return kExitOk;
}

int userList(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 0, 0, {"store"}, "user list"))
        return rc;
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    auto users = parcel::listUsers(**s);
    if (!users.ok())
        return fail(users.error());
    const std::int64_t now = std::time(nullptr);
    json::Array rows;
    for (const auto& user : *users) {
        auto inv = parcel::userInventory(**s, user);
        if (!inv.ok())
            return fail(inv.error());
        std::uint64_t open = 0;
        for (const auto& p : inv->parcels)
            open += p.lock && !p.lock->stale(now);
        if (args->flag("json")) {
            rows.push_back(json::Object{{"user", user},
                                        {"parcels", std::uint64_t(inv->parcels.size())},
                                        {"open", open},
                                        {"bytes", inv->totalBytes()}});
        } else {
            std::printf("%-24s %3zu parcel%s %10s%s\n", user.c_str(), inv->parcels.size(),
                        inv->parcels.size() == 1 ? " " : "s",
                        formatBytes(inv->totalBytes()).c_str(), open ? "  (open)" : "");
        }
    }
    if (args->flag("json"))
        printJson(json::Object{{"users", rows}});
    return kExitOk;
}

int userRemove(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 1, 1, {"store"}, "user remove"))
        return rc;
    const std::string user = args->positional()[0];
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    auto inv = parcel::userInventory(**s, user);
    if (!inv.ok())
        return fail(inv.error());
    if (int rc = confirm(*args,
                         "user '" + user + "' with " + std::to_string(inv->parcels.size()) +
                             " parcel(s) and " + formatBytes(inv->totalBytes()),
                         user))
        return rc;
    auto r = parcel::removeUser(**s, user, args->flag("force"));
    if (!r.ok())
        return fail(r.error());
    if (args->flag("json"))
        printJson(json::Object{{"user", user}, {"objects", r->objects}, {"bytes", r->bytes}});
    else
        std::printf("removed user %s: %llu objects, %s\n", user.c_str(),
                    (unsigned long long)r->objects, formatBytes(r->bytes).c_str());
    return kExitOk;
}

int parcelRemove(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 2, 2, {"store"}, "parcel remove"))
        return rc;
    const std::string user = args->positional()[0], name = args->positional()[1];
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    auto p = parcel::parcelInventory(**s, user, name);
    if (!p.ok())
        return fail(p.error());
    if (int rc = confirm(*args,
                         "parcel '" + name + "' of user '" + user + "' (" +
                             std::to_string(p->versions.size()) + " versions)",
                         name))
        return rc;
    auto r = parcel::removeParcel(**s, user, name, args->flag("force"));
    if (!r.ok())
        return fail(r.error());
    if (args->flag("json"))
        printJson(json::Object{
            {"user", user}, {"parcel", name}, {"objects", r->objects}, {"bytes", r->bytes}});
    else
        std::printf("removed parcel %s of %s: %llu objects (its chunks go at the next "
                    "gc --user %s)\n",
                    name.c_str(), user.c_str(), (unsigned long long)r->objects, user.c_str());
    return kExitOk;
}

int parcelStatus(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 2, 2, {"store"}, "parcel status"))
        return rc;
    const std::string user = args->positional()[0], name = args->positional()[1];
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    auto p = parcel::parcelInventory(**s, user, name);
    if (!p.ok())
        return fail(p.error());
    auto u = parcel::userInventory(**s, user);
    if (!u.ok())
        return fail(u.error());
    const std::int64_t now = std::time(nullptr);
    // With the password: when and where the latest version was saved, and
    // the hot set the next resume fetches first.
    std::optional<parcel::Manifest> latest;
    if (args->flag("sign-in") && !p->versions.empty()) {
        auto secrets = signInFromArgs(**s, user, *args);
        if (!secrets.ok())
            return fail(secrets.error());
        parcel::Parcels parcels(**s, std::move(*secrets));
        auto m = parcels.manifest(name, p->versions.back());
        if (!m.ok())
            return fail(m.error());
        latest = std::move(*m);
        // With the user's keys the lock says which kiosk holds it.
        auto lock = parcels.readLock(name);
        if (!lock.ok())
            return fail(lock.error());
        p->lock = std::move(*lock);
    }
    if (args->flag("json")) {
        json::Object o{{"user", user},
                       {"parcel", name},
                       {"versions", versionsJson(p->versions)},
                       {"latest", p->versions.empty() ? json::Value(nullptr)
                                                      : json::Value(p->versions.back())},
                       {"manifest_bytes", p->manifestBytes},
                       {"user_chunks", u->chunks},
                       {"user_chunk_bytes", u->chunkBytes},
                       {"lock", lockJson(p->lock, now)}};
        if (latest) {
            o["saved"] = latest->created;
            o["saved_at"] = latest->kiosk;
            o["hot_set_chunks"] = std::uint64_t(latest->workingSet.size());
            o["memory_chunks"] = std::uint64_t(latest->memory.size());
            o["disk_bytes"] = latest->diskSize;
        }
        printJson(o);
        return kExitOk;
    }
    std::printf("parcel %s of %s\n", name.c_str(), user.c_str());
    if (p->versions.empty())
        std::printf("  versions: none\n");
    else
        std::printf("  versions: %zu (%llu..%llu), latest %llu\n", p->versions.size(),
                    (unsigned long long)p->versions.front(), (unsigned long long)p->versions.back(),
                    (unsigned long long)p->versions.back());
    if (latest) {
        char when[64] = "?";
        std::time_t t = latest->created;
        std::tm tm{};
        if (localtime_r(&t, &tm))
            std::strftime(when, sizeof when, "%Y-%m-%d %H:%M %Z", &tm);
        std::printf("  saved: %s at %s (%s ago)\n", when, latest->kiosk.c_str(),
                    age(now - latest->created).c_str());
        std::printf("  disk: %s, hot set %zu chunks, memory image %zu chunks\n",
                    formatBytes(latest->diskSize).c_str(), latest->workingSet.size(),
                    latest->memory.size());
    }
    std::printf("  lock: %s\n", lockText(p->lock, now).c_str());
    std::printf("  in the store: manifests %s; the user's chunks %s (%llu, shared by %zu "
                "parcel%s)\n",
                formatBytes(p->manifestBytes).c_str(), formatBytes(u->chunkBytes).c_str(),
                (unsigned long long)u->chunks, u->parcels.size(),
                u->parcels.size() == 1 ? "" : "s");
    return kExitOk;
}

int parcelUnlock(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 2, 2, {"store"}, "parcel unlock"))
        return rc;
    const std::string user = args->positional()[0], name = args->positional()[1];
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    const std::int64_t now = std::time(nullptr);
    auto released = parcel::releaseLock(**s, user, name, args->flag("force"));
    if (!released.ok()) {
        if (released.error().code == Errc::Locked)
            return fail(released.error().message +
                        "; that kiosk is probably still running this computer: releasing the "
                        "lock stops it without saving. Use --force if you are sure.");
        return fail(released.error());
    }
    if (args->flag("json")) {
        printJson(json::Object{{"user", user},
                               {"parcel", name},
                               {"released", released->has_value()},
                               {"lock", lockJson(*released, now)}});
    } else if (!*released) {
        std::printf("parcel %s of %s was not locked\n", name.c_str(), user.c_str());
    } else {
        std::printf("released the lock of %s/%s (was %s)\n", user.c_str(), name.c_str(),
                    lockText(*released, now).c_str());
    }
    return kExitOk;
}

int storeStats(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, kFlags);
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 0, 0, {"store"}, "store stats"))
        return rc;
    auto s = openStoreFromArgs(*args);
    if (!s.ok())
        return fail(s.error());
    auto st = parcel::storeStats(**s);
    if (!st.ok())
        return fail(st.error());
    if (args->flag("json")) {
        printJson(json::Object{{"users", st->users},
                               {"parcels", st->parcels},
                               {"versions", st->versions},
                               {"chunks", st->chunks},
                               {"chunk_bytes", st->chunkBytes},
                               {"bytes", st->totalBytes},
                               {"locked_parcels", st->lockedParcels}});
        return kExitOk;
    }
    std::printf("users %llu, parcels %llu, versions %llu, locked %llu\n",
                (unsigned long long)st->users, (unsigned long long)st->parcels,
                (unsigned long long)st->versions, (unsigned long long)st->lockedParcels);
    std::printf("chunks %llu (%s); all objects %s\n", (unsigned long long)st->chunks,
                formatBytes(st->chunkBytes).c_str(), formatBytes(st->totalBytes).c_str());
    return kExitOk;
}

const CommandOption kStoreOpt{"--store URL", "the parcel store (default $ISR_STORE)"};
const CommandOption kJsonOpt{"--json", "print the result as JSON"};

CommandRegistration regUserList({
    .name = "user list",
    .args = "",
    .summary = "list users with their parcels and sizes",
    .run = userList,
    .options = {kStoreOpt, kJsonOpt},
});
CommandRegistration regUserRemove({
    .name = "user remove",
    .args = "USER",
    .summary = "remove a user, their parcels and chunks",
    .run = userRemove,
    .options = {kStoreOpt,
                {"--yes", "do not ask for confirmation (required when stdin is not a terminal)"},
                {"--force", "even if a parcel is open at a kiosk (its heartbeat is fresh)"},
                kJsonOpt},
    .details = "The account goes last, so an interrupted removal can be run again.",
});
CommandRegistration regParcelRemove({
    .name = "parcel remove",
    .args = "USER PARCEL",
    .summary = "remove a parcel's versions and lock",
    .run = parcelRemove,
    .options = {kStoreOpt,
                {"--yes", "do not ask for confirmation (required when stdin is not a terminal)"},
                {"--force", "even if the parcel is open at a kiosk (its heartbeat is fresh)"},
                kJsonOpt},
    .details = "Its chunks stay until the next `gc --user USER` (other parcels may share them).",
});
CommandRegistration regParcelStatus({
    .name = "parcel status",
    .args = "USER PARCEL",
    .summary = "versions, lock holder, bytes in the store",
    .run = parcelStatus,
    .options = {kStoreOpt,
                {"--sign-in", "ask for the user's password to show when and where the latest "
                              "version was saved and its hot set"},
                {"--password-stdin", "with --sign-in: read the password from stdin"},
                kJsonOpt},
});
CommandRegistration regParcelUnlock({
    .name = "parcel unlock",
    .args = "USER PARCEL",
    .summary = "release a stale lock",
    .run = parcelUnlock,
    .options = {kStoreOpt,
                {"--force", "even if the heartbeat is fresh (the kiosk holding it stops without "
                            "saving)"},
                kJsonOpt},
});
CommandRegistration regStoreStats({
    .name = "store stats",
    .args = "",
    .summary = "users, parcels, versions, chunks and bytes",
    .run = storeStats,
    .options = {kStoreOpt, kJsonOpt},
});

} // namespace
} // namespace isr::cli
