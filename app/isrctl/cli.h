#pragma once
// The isrctl command table and a small argument parser.
//
// A command group registers itself from its own cmd_<group>.cpp through a
// static CommandRegistration, so adding a command never touches main.cpp.
// Passwords never come from argv: use readPassword(), which prompts on a TTY
// or reads one line from stdin with --password-stdin.

#include "parcel/parcel.h"
#include "store/store.h"
#include "util/json.h"
#include "util/result.h"
#include "util/size.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace isr::cli {

// Exit codes: 0 ok, 1 operation failed, 2 usage error, 3 damage found (fsck),
// 4 some user skipped (gc --all).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitDamage = 3;
// gc --all: some user was skipped for want of a usable reference list.
inline constexpr int kExitSkipped = 4;

class Args {
public:
    // Parses "--name value", "--name=value" and bare "--flag" (declared in
    // `flags`). Everything else is positional. "--" ends option parsing.
    static Result<Args> parse(const std::vector<std::string>& argv,
                              const std::vector<std::string>& flags);

    const std::vector<std::string>& positional() const { return positional_; }
    bool flag(const std::string& name) const;
    std::optional<std::string> option(const std::string& name) const;
    std::string optionOr(const std::string& name, const std::string& fallback) const;
    // Names of options given that are not in `known`; for "unknown option" errors.
    std::vector<std::string> unknownOptions(const std::vector<std::string>& known) const;

private:
    std::vector<std::string> positional_;
    std::map<std::string, std::string> options_;
    std::vector<std::string> flagsSet_;
};

// One option of a command, for `isrctl help COMMAND`.
struct CommandOption {
    std::string spelling; // "--kiosk-dir DIR", "--accel kvm|tcg", "--json"
    std::string help;     // one line, lower case, no full stop
};

struct Command {
    std::string name;    // "user add", "parcel import", "fsck"
    std::string args;    // positional arguments and required options: "USER PARCEL"
    std::string summary; // for --help: lower case, no full stop, at most ~50 characters
    std::function<int(const std::vector<std::string>& args)> run;
    // Optional options (a required one is written in `args` and may be
    // described here too). `isrctl --help` shows "[options]" for them;
    // `isrctl help COMMAND` lists them.
    std::vector<CommandOption> options = {};
    // More prose for `isrctl help COMMAND`, after the summary.
    std::string details = {};
};

std::vector<Command>& commandTable();

// The command `words` names, longest match first ("parcel import" wins over a
// hypothetical "parcel"); how many words the name took goes to `nameWords`.
const Command* findCommand(const std::vector<std::string>& words, std::size_t& nameWords);

// `isrctl --help`: one line per command (name, short usage, summary), every
// line at most kHelpColumns wide.
void printHelp();
// `isrctl help COMMAND` / `isrctl COMMAND --help`: the full usage and every option.
void printCommandHelp(const Command& command);
inline constexpr std::size_t kHelpColumns = 100;

struct CommandRegistration {
    explicit CommandRegistration(Command c) { commandTable().push_back(std::move(c)); }
};

// Reads a password: with passwordStdin, one line from stdin; otherwise a
// prompt on the controlling terminal with echo off. Fails if neither works.
Result<std::string> readPassword(const std::string& prompt, bool passwordStdin);

// Prints "isrctl: <message>" to stderr and returns kExitFailed (or `code`).
int fail(const std::string& message, int code = kExitFailed);
int fail(const Error& error);

int runMain(int argc, char** argv);

// ---- shared by the command groups ----

// Options every store-using command accepts.
inline const std::vector<std::string> kStoreOptions = {"store"};

// --store-credentials FILE or $ISR_STORE_CREDENTIALS (two lines: access key,
// secret key -- the format of kiosk.conf's store_read_credentials) into
// options.readCredentials; nothing if neither is given.
Status applyStoreCredentials(const Args& args, store::StoreOptions& options);
// --store URL or $ISR_STORE (with the credentials above); verifies it is an
// isr store.
Result<std::unique_ptr<store::Store>> openStoreFromArgs(const Args& args, bool mustBeStore = true);
// Prompts for (or reads with --password-stdin) USER's password and signs in.
Result<parcel::UserSecrets> signInFromArgs(store::Store& store, const std::string& user,
                                           const Args& args);
// Sizes ("8G", "512MiB", "1048576") are isr::parseSize (util/size.h), the
// syntax kiosk.conf uses too.
// "24h", "30m", "90s", "2d", "3600" -> seconds.
Result<std::int64_t> parseDuration(const std::string& text);
using ::isr::formatBytes; // util/size.h

// A progress line on stderr, redrawn in place, only when stderr is a TTY.
parcel::ProgressFn terminalProgress();
void endProgress();

void printJson(const json::Value& value);

// Checks positional count and unknown options; prints usage errors.
// Returns kExitOk if fine, else the exit code to return.
int checkUsage(const Args& args, std::size_t minPositional, std::size_t maxPositional,
               const std::vector<std::string>& knownOptions, const std::string& command);

} // namespace isr::cli
