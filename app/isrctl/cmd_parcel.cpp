// isrctl parcel ...: create, import, export, list, versions, rollback.
#include "cli.h"

#include <cstdio>
#include <ctime>

namespace isr::cli {
namespace {

const std::vector<std::string> kFlags = {"json", "password-stdin", "tpm"};

// Parses args, checks usage, opens the store and signs USER in.
struct Context {
    Args args;
    std::unique_ptr<store::Store> store;
    std::unique_ptr<parcel::Parcels> parcels;
};

Result<Context> prepare(const std::vector<std::string>& argv, std::size_t minPos,
                        std::size_t maxPos, std::vector<std::string> known,
                        const std::string& command, int& rc) {
    rc = kExitOk;
    auto args = Args::parse(argv, kFlags);
    if (!args.ok()) {
        rc = kExitUsage;
        return std::move(args).error();
    }
    known.push_back("store");
    rc = checkUsage(*args, minPos, maxPos, known, command);
    if (rc != kExitOk)
        return Error(Errc::InvalidArgument, "");
    const std::string& user = args->positional()[0];
    if (auto v = parcel::validateName("user name", user); !v.ok()) {
        rc = kExitUsage;
        return v.error();
    }
    if (args->positional().size() > 1 && command != "parcel list") {
        if (auto v = parcel::validateName("parcel name", args->positional()[1]); !v.ok()) {
            rc = kExitUsage;
            return v.error();
        }
    }
    Context ctx{std::move(*args), nullptr, nullptr};
    ISR_TRY_ASSIGN(ctx.store, openStoreFromArgs(ctx.args));
    ISR_TRY_ASSIGN(auto secrets, signInFromArgs(*ctx.store, user, ctx.args));
    ctx.parcels = std::make_unique<parcel::Parcels>(*ctx.store, std::move(secrets));
    return ctx;
}

// Runs prepare() and turns its failure into an exit code.
#define ISR_PREPARE(ctx, argv, minPos, maxPos, known, command)                                     \
    int prepareRc_ = 0;                                                                            \
    auto prepared_ = prepare(argv, minPos, maxPos, known, command, prepareRc_);                    \
    if (!prepared_.ok()) {                                                                         \
        if (prepareRc_ == kExitOk)                                                                 \
            return fail(prepared_.error());                                                        \
        if (!prepared_.error().message.empty())                                                    \
            fail(prepared_.error().message, prepareRc_);                                           \
        return prepareRc_;                                                                         \
    }                                                                                              \
    Context& ctx = *prepared_

Result<parcel::VmSpec> vmSpecFromArgs(const Args& args) {
    parcel::VmSpec vm;
    if (auto mem = args.option("memory")) {
        ISR_TRY_ASSIGN(std::uint64_t bytes, parseSize(*mem));
        vm.memoryMiB = std::uint32_t(bytes >> 20);
    }
    if (auto cpus = args.option("vcpus"))
        vm.vcpus = std::uint32_t(std::atoi(cpus->c_str()));
    if (auto boot = args.option("boot"))
        vm.boot = *boot;
    if (auto cpu = args.option("cpu"))
        vm.cpu = *cpu;
    // A firmware or a TPM only make sense for a disk that boots itself.
    if (auto fw = args.option("firmware")) {
        vm.firmware = *fw;
        vm.boot = "firmware";
    }
    if (args.flag("tpm")) {
        vm.tpm = true;
        vm.boot = "firmware";
    }
    ISR_TRY_STATUS(vm.validate());
    return vm;
}

Result<std::uint32_t> chunkSizeFromArgs(const Args& args) {
    ISR_TRY_ASSIGN(std::uint64_t size, parseSize(args.optionOr("chunk-size", "128K")));
    if (size > (16u << 20))
        return Error(Errc::InvalidArgument, "chunk size at most 16M");
    return std::uint32_t(size);
}

int create(const std::vector<std::string>& argv) {
    ISR_PREPARE(ctx, argv, 2, 2,
                (std::vector<std::string>{"disk-size", "memory", "vcpus", "boot", "cpu",
                                          "chunk-size", "firmware", "from-image"}),
                "parcel create");
    auto diskSize = parseSize(ctx.args.optionOr("disk-size", "8G"));
    auto vm = vmSpecFromArgs(ctx.args);
    auto chunkSize = chunkSizeFromArgs(ctx.args);
    for (const Error* e :
         {diskSize.ok() ? nullptr : &diskSize.error(), vm.ok() ? nullptr : &vm.error(),
          chunkSize.ok() ? nullptr : &chunkSize.error()})
        if (e)
            return fail(e->message, kExitUsage);
    if (auto image = ctx.args.option("from-image")) {
        // A new parcel whose first version is the image: a computer for the
        // user in one command. The image is read by parcel::importImage (the
        // one place that checks its format and refuses backing files).
        if (ctx.args.option("disk-size"))
            return fail("--disk-size and --from-image exclude each other: the image sets the size",
                        kExitUsage);
        const std::string& name = ctx.args.positional()[1];
        auto existing = ctx.parcels->latest(name);
        if (existing.ok())
            return fail("parcel " + name +
                            " already exists (use `parcel import` for a new version)",
                        kExitUsage);
        if (existing.error().code != Errc::NotFound)
            return fail(existing.error());
        parcel::ImportOptions options;
        options.vm = *vm;
        options.chunkSize = *chunkSize;
        auto stats = parcel::importImage(*ctx.parcels, name, *image, options, terminalProgress());
        endProgress();
        if (!stats.ok())
            return fail(stats.error());
        std::printf("created parcel %s/%s from %s: %u MiB memory, %u vCPUs, boot %s%s%s, "
                    "version %llu (%s uploaded)\n",
                    ctx.args.positional()[0].c_str(), name.c_str(), image->c_str(), vm->memoryMiB,
                    vm->vcpus, vm->boot.c_str(),
                    vm->boot == "firmware" ? (" " + vm->firmware).c_str() : "",
                    vm->tpm ? " with TPM" : "", (unsigned long long)stats->version,
                    formatBytes(stats->newBytes).c_str());
        return kExitOk;
    }
    auto m = ctx.parcels->create(ctx.args.positional()[1], *vm, *diskSize, *chunkSize, "isrctl");
    if (!m.ok())
        return fail(m.error());
    std::printf("created parcel %s/%s: %s disk, %u MiB memory, version %llu\n",
                ctx.args.positional()[0].c_str(), ctx.args.positional()[1].c_str(),
                formatBytes(m->diskSize).c_str(), m->vm.memoryMiB, (unsigned long long)m->version);
    return kExitOk;
}

int import(const std::vector<std::string>& argv) {
    ISR_PREPARE(
        ctx, argv, 3, 3,
        (std::vector<std::string>{"memory", "vcpus", "boot", "cpu", "chunk-size", "firmware"}),
        "parcel import");
    parcel::ImportOptions options;
    auto vm = vmSpecFromArgs(ctx.args);
    auto chunkSize = chunkSizeFromArgs(ctx.args);
    if (!vm.ok())
        return fail(vm.error().message, kExitUsage);
    if (!chunkSize.ok())
        return fail(chunkSize.error().message, kExitUsage);
    options.vm = *vm;
    options.chunkSize = *chunkSize;
    auto stats = parcel::importImage(*ctx.parcels, ctx.args.positional()[1],
                                     ctx.args.positional()[2], options, terminalProgress());
    endProgress();
    if (!stats.ok())
        return fail(stats.error());
    if (ctx.args.flag("json")) {
        printJson(json::Object{{"version", stats->version},
                               {"chunks", stats->chunks},
                               {"zero_chunks", stats->zeroChunks},
                               {"new_chunks", stats->newChunks},
                               {"new_bytes", stats->newBytes}});
    } else {
        std::printf(
            "imported as version %llu: %llu chunks, %llu all-zero, %llu new (%s uploaded)\n",
            (unsigned long long)stats->version, (unsigned long long)stats->chunks,
            (unsigned long long)stats->zeroChunks, (unsigned long long)stats->newChunks,
            formatBytes(stats->newBytes).c_str());
    }
    return kExitOk;
}

int exportCmd(const std::vector<std::string>& argv) {
    ISR_PREPARE(ctx, argv, 3, 3, (std::vector<std::string>{"version"}), "parcel export");
    const std::string& parcelName = ctx.args.positional()[1];
    std::uint64_t n = 0;
    if (auto v = ctx.args.option("version")) {
        n = std::strtoull(v->c_str(), nullptr, 10);
        if (n == 0)
            return fail("--version must be a positive number", kExitUsage);
    } else {
        auto latest = ctx.parcels->latest(parcelName);
        if (!latest.ok())
            return fail(latest.error());
        n = *latest;
    }
    auto st = parcel::exportImage(*ctx.parcels, parcelName, n, ctx.args.positional()[2],
                                  terminalProgress());
    endProgress();
    if (!st.ok())
        return fail(st.error());
    std::printf("exported version %llu to %s\n", (unsigned long long)n,
                ctx.args.positional()[2].c_str());
    return kExitOk;
}

int list(const std::vector<std::string>& argv) {
    ISR_PREPARE(ctx, argv, 1, 1, {}, "parcel list");
    auto names = ctx.parcels->list();
    if (!names.ok())
        return fail(names.error());
    json::Array out;
    for (const auto& name : *names) {
        auto latest = ctx.parcels->latest(name);
        auto lock = ctx.parcels->readLock(name);
        json::Object row{{"parcel", name}, {"latest", latest.ok() ? *latest : 0}};
        if (lock.ok() && *lock)
            row["locked_by"] = (*lock)->holderLabel();
        if (!ctx.args.flag("json"))
            std::printf("%-24s version %-6llu %s\n", name.c_str(),
                        (unsigned long long)(latest.ok() ? *latest : 0),
                        lock.ok() && *lock ? ("checked out at " + (*lock)->holderLabel()).c_str()
                                           : "");
        out.push_back(std::move(row));
    }
    if (ctx.args.flag("json"))
        printJson(std::move(out));
    return kExitOk;
}

int versions(const std::vector<std::string>& argv) {
    ISR_PREPARE(ctx, argv, 2, 2, {}, "parcel versions");
    const std::string& parcelName = ctx.args.positional()[1];
    auto all = ctx.parcels->versions(parcelName);
    if (!all.ok())
        return fail(all.error());
    json::Array out;
    // The chain (FORMAT.md): does each version's parent_digest match the
    // parent listed just before it? "-" when it cannot say (no digest: the
    // first version, or one older than the chain; parent pruned or damaged).
    std::optional<parcel::Manifest> previous;
    for (auto n : *all) {
        auto m = ctx.parcels->manifest(parcelName, n);
        if (!m.ok()) {
            std::printf("%-6llu DAMAGED: %s\n", (unsigned long long)n,
                        m.error().describe().c_str());
            out.push_back(json::Object{{"version", n}, {"error", m.error().describe()}});
            previous.reset();
            continue;
        }
        json::Value bound; // null: cannot say
        if (m->parentDigest && previous && previous->version == m->parent)
            bound = *m->parentDigest == previous->digest ||
                    // the parent rewritten by an unfinished rekey (FORMAT.md)
                    (previous->rekeyedFrom && *m->parentDigest == *previous->rekeyedFrom);
        const char* chain = bound.isNull() ? "-" : bound.asBool() ? "ok" : "MISMATCH";
        std::uint64_t stored = 0;
        for (const auto& e : m->disk)
            stored += e ? 1 : 0;
        char when[32];
        std::time_t t = m->created;
        std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", std::gmtime(&t));
        if (!ctx.args.flag("json"))
            std::printf("%-6llu %s UTC  parent %-5llu chain %-8s %-12s disk %s (%llu chunks "
                        "stored)%s\n",
                        (unsigned long long)n, when, (unsigned long long)m->parent, chain,
                        m->kiosk.c_str(), formatBytes(m->diskSize).c_str(),
                        (unsigned long long)stored,
                        m->memory.empty() ? "" : ", suspended memory image");
        out.push_back(json::Object{{"version", n},
                                   {"parent", m->parent},
                                   {"parent_bound", bound},
                                   {"created", m->created},
                                   {"kiosk", m->kiosk},
                                   {"disk_size", m->diskSize},
                                   {"stored_chunks", stored},
                                   {"memory_chunks", std::uint64_t(m->memory.size())}});
        previous = std::move(*m);
    }
    if (ctx.args.flag("json"))
        printJson(std::move(out));
    return kExitOk;
}

int rollback(const std::vector<std::string>& argv) {
    ISR_PREPARE(ctx, argv, 3, 3, {}, "parcel rollback");
    std::uint64_t n = std::strtoull(ctx.args.positional()[2].c_str(), nullptr, 10);
    if (n == 0)
        return fail("the version must be a positive number", kExitUsage);
    auto made = ctx.parcels->rollback(ctx.args.positional()[1], n, "isrctl");
    if (!made.ok())
        return fail(made.error());
    std::printf("version %llu is now a copy of version %llu\n", (unsigned long long)*made,
                (unsigned long long)n);
    return kExitOk;
}

CommandRegistration regCreate({
    .name = "parcel create",
    .args = "USER PARCEL",
    .summary = "create a parcel, empty or from a disk image",
    .run = create,
    .options = {{"--from-image IMAGE",
                 "the parcel's disk: a raw or qcow2 image with an operating system"},
                {"--disk-size SIZE", "virtual disk size of an empty parcel (default 8G)"},
                {"--memory SIZE", "guest memory (default 1G)"},
                {"--vcpus N", "virtual CPUs (default 1)"},
                {"--boot firmware|demo-guest", "boot profile (default firmware)"},
                {"--firmware bios|uefi|uefi-secure",
                 "firmware of a firmware-booted parcel (default bios)"},
                {"--tpm", "an emulated TPM 2.0 whose state travels with the parcel"},
                {"--cpu MODEL", "CPU model both TCG and KVM provide (default qemu64)"},
                {"--chunk-size SIZE", "disk chunk size, at most 16M (default 128K)"},
                {"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--password-stdin",
                 "read the password as one line from stdin instead of prompting"}},
});
CommandRegistration regImport({
    .name = "parcel import",
    .args = "USER PARCEL IMAGE",
    .summary = "import a raw/qcow2 image as the next version",
    .run = import,
    .options = {{"--memory SIZE", "guest memory (default 1G)"},
                {"--vcpus N", "virtual CPUs (default 1)"},
                {"--boot firmware|demo-guest", "boot profile (default firmware)"},
                {"--firmware bios|uefi|uefi-secure",
                 "firmware of a firmware-booted parcel (default bios)"},
                {"--tpm", "an emulated TPM 2.0 whose state travels with the parcel"},
                {"--cpu MODEL", "CPU model both TCG and KVM provide (default qemu64)"},
                {"--chunk-size SIZE", "disk chunk size, at most 16M (default 128K)"},
                {"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--password-stdin",
                 "read the password as one line from stdin instead of prompting"},
                {"--json", "print the import's figures as JSON"}},
});
CommandRegistration regExport({
    .name = "parcel export",
    .args = "USER PARCEL OUT.raw",
    .summary = "write a version's disk to a sparse raw file",
    .run = exportCmd,
    .options = {{"--version N", "the version to write (default: the latest)"},
                {"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--password-stdin",
                 "read the password as one line from stdin instead of prompting"}},
});
CommandRegistration regList({
    .name = "parcel list",
    .args = "USER",
    .summary = "list a user's parcels",
    .run = list,
    .options = {{"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--password-stdin",
                 "read the password as one line from stdin instead of prompting"},
                {"--json", "print the list as JSON"}},
});
CommandRegistration regVersions({
    .name = "parcel versions",
    .args = "USER PARCEL",
    .summary = "list a parcel's versions",
    .run = versions,
    .options = {{"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--password-stdin",
                 "read the password as one line from stdin instead of prompting"},
                {"--json", "print the list as JSON"}},
});
CommandRegistration regRollback({
    .name = "parcel rollback",
    .args = "USER PARCEL N",
    .summary = "make a new version equal to version N",
    .run = rollback,
    .options = {{"--store URL", "the parcel store (default $ISR_STORE)"},
                {"--password-stdin",
                 "read the password as one line from stdin instead of prompting"}},
});

} // namespace
} // namespace isr::cli
