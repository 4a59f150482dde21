#pragma once
// The isrctl command table and a small argument parser.
//
// A command group registers itself from its own cmd_<group>.cpp through a
// static CommandRegistration, so adding a command never touches main.cpp.
// Passwords never come from argv: use readPassword(), which prompts on a TTY
// or reads one line from stdin with --password-stdin.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace isr::cli {

// Exit codes: 0 ok, 1 operation failed, 2 usage error, 3 damage found (fsck).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitDamage = 3;

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

struct Command {
    std::string name;     // "user add", "parcel import", "fsck"
    std::string usage;    // "USER [--password-stdin]"
    std::string summary;  // one line for --help
    std::function<int(const std::vector<std::string>& args)> run;
};

std::vector<Command>& commandTable();

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

} // namespace isr::cli
