#include "cli.h"

#include <chrono>
#include <memory>

#include "session/kioskconfig.h"
#include "util/version.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <termios.h>
#include <unistd.h>

namespace isr::cli {

Result<Args> Args::parse(const std::vector<std::string>& argv,
                         const std::vector<std::string>& flags) {
    Args args;
    bool optionsDone = false;
    for (std::size_t i = 0; i < argv.size(); ++i) {
        const std::string& a = argv[i];
        if (optionsDone || a.size() < 3 || a.rfind("--", 0) != 0) {
            if (a == "--") {
                optionsDone = true;
                continue;
            }
            args.positional_.push_back(a);
            continue;
        }
        std::string name = a.substr(2);
        auto eq = name.find('=');
        if (eq != std::string::npos) {
            args.options_[name.substr(0, eq)] = name.substr(eq + 1);
            continue;
        }
        if (std::find(flags.begin(), flags.end(), name) != flags.end()) {
            args.flagsSet_.push_back(name);
            continue;
        }
        if (i + 1 >= argv.size())
            return Error(Errc::InvalidArgument, "option --" + name + " needs a value");
        args.options_[name] = argv[++i];
    }
    return args;
}

bool Args::flag(const std::string& name) const {
    return std::find(flagsSet_.begin(), flagsSet_.end(), name) != flagsSet_.end();
}

std::optional<std::string> Args::option(const std::string& name) const {
    auto it = options_.find(name);
    if (it == options_.end())
        return std::nullopt;
    return it->second;
}

std::string Args::optionOr(const std::string& name, const std::string& fallback) const {
    return option(name).value_or(fallback);
}

std::vector<std::string> Args::unknownOptions(const std::vector<std::string>& known) const {
    std::vector<std::string> unknown;
    for (const auto& [name, value] : options_)
        if (std::find(known.begin(), known.end(), name) == known.end())
            unknown.push_back(name);
    return unknown;
}

std::vector<Command>& commandTable() {
    static std::vector<Command> table;
    return table;
}

Result<std::string> readPassword(const std::string& prompt, bool passwordStdin) {
    std::string line;
    if (passwordStdin) {
        if (!std::getline(std::cin, line))
            return Error(Errc::InvalidArgument, "--password-stdin given but stdin is empty");
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        return line;
    }
    if (!isatty(STDIN_FILENO))
        return Error(Errc::InvalidArgument,
                     "no terminal to prompt for a password; use --password-stdin");
    std::fprintf(stderr, "%s", prompt.c_str());
    std::fflush(stderr);
    termios old{};
    tcgetattr(STDIN_FILENO, &old);
    termios quiet = old;
    quiet.c_lflag &= ~tcflag_t(ECHO);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    bool got = bool(std::getline(std::cin, line));
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    std::fprintf(stderr, "\n");
    if (!got)
        return Error(Errc::InvalidArgument, "no password entered");
    return line;
}

int fail(const std::string& message, int code) {
    std::fprintf(stderr, "isrctl: %s\n", message.c_str());
    return code;
}

int fail(const Error& error) {
    return fail(error.describe(), kExitFailed);
}

namespace {

// Appends `text` to `out` word by word; `column` is the width of out's last
// line. A word that would pass kHelpColumns starts a new line indented by
// `indent` spaces (a single word wider than that is left whole).
void appendWrapped(std::string& out, std::size_t& column, std::string_view text,
                   std::size_t indent) {
    bool first = true;
    while (!text.empty()) {
        auto sp = text.find(' ');
        std::string_view word = text.substr(0, sp);
        text = sp == std::string_view::npos ? std::string_view{} : text.substr(sp + 1);
        if (word.empty())
            continue;
        std::size_t need = word.size() + (first ? 0 : 1);
        if (!first && column + need > kHelpColumns) {
            out += "\n" + std::string(indent, ' ');
            column = indent;
            need = word.size();
        } else if (!first) {
            out += ' ';
        }
        out += word;
        column += need;
        first = false;
    }
}

// "  term      text wrapped at `textColumn`": the term, then the text from
// textColumn (on the next line when the term leaves no two-space gap).
void appendEntry(std::string& out, const std::string& term, std::string_view text,
                 std::size_t textColumn) {
    out += term;
    std::size_t column = term.size();
    if (column + 2 > textColumn) {
        out += "\n";
        column = 0;
    }
    out += std::string(textColumn - column, ' ');
    column = textColumn;
    appendWrapped(out, column, text, textColumn);
    out += "\n";
}

// Optional options are those not already spelled out in the arguments.
bool isOptional(const Command& c, const CommandOption& o) {
    return c.args.find(o.spelling) == std::string::npos;
}

// "parcel create USER PARCEL [options]": the line `isrctl --help` shows.
std::string shortUsage(const Command& c) {
    std::string head = c.name;
    if (!c.args.empty())
        head += " " + c.args;
    if (std::any_of(c.options.begin(), c.options.end(),
                    [&](const CommandOption& o) { return isOptional(c, o); }))
        head += " [options]";
    return head;
}

std::vector<std::string> splitWords(const std::string& name) {
    std::vector<std::string> words;
    std::size_t start = 0;
    while (start <= name.size()) {
        auto sp = name.find(' ', start);
        words.push_back(name.substr(start, sp - start));
        if (sp == std::string::npos)
            break;
        start = sp + 1;
    }
    return words;
}

} // namespace

const Command* findCommand(const std::vector<std::string>& words, std::size_t& nameWords) {
    const Command* best = nullptr;
    nameWords = 0;
    for (const auto& c : commandTable()) {
        auto name = splitWords(c.name);
        if (name.size() > words.size() || name.size() <= nameWords)
            continue;
        if (std::equal(name.begin(), name.end(), words.begin())) {
            best = &c;
            nameWords = name.size();
        }
    }
    return best;
}

void printHelp() {
    std::printf("isrctl %s - administer and script isr (Internet Suspend/Resume)\n\n", kVersion);
    std::printf(
        "Usage: isrctl [--help] [--version] COMMAND [ARGS...]\n"
        "       isrctl help COMMAND    (or COMMAND --help) the full usage of a command\n\n");
    std::printf("Global options (also read from the environment):\n");
    std::printf("  --store URL     parcel store (file:///path or s3://host/bucket); ISR_STORE\n");
    std::printf("  --store-credentials FILE\n"
                "                  S3 keys to sign with until a user signs in (access key on\n"
                "                  line 1, secret on line 2; the admin's keys for fsck and gc);\n"
                "                  ISR_STORE_CREDENTIALS\n");
    std::printf("  --json          machine-readable output where supported\n\n");
    std::printf("Passwords are never taken on the command line: isrctl prompts, or reads\n"
                "one line from stdin with --password-stdin.\n\n");
    auto table = commandTable();
    std::sort(table.begin(), table.end(),
              [](const Command& a, const Command& b) { return a.name < b.name; });
    if (table.empty()) {
        std::printf("No commands are available in this build.\n");
        return;
    }
    // The summaries start in one column, after the widest short usage up to
    // kMaxHead; a wider one puts its summary on the next line.
    constexpr std::size_t kMaxHead = 46;
    std::size_t width = 0;
    for (const auto& c : table)
        width = std::max(width, std::min(shortUsage(c).size(), kMaxHead));
    const std::size_t summaryColumn = 2 + width + 2;
    std::string out = "Commands:\n";
    for (const auto& c : table) {
        appendEntry(out, "  " + shortUsage(c), c.summary, summaryColumn);
    }
    std::fputs(out.c_str(), stdout);
}

void printCommandHelp(const Command& c) {
    std::string out = "Usage: isrctl " + c.name;
    std::size_t column = out.size();
    const std::size_t indent = std::string("Usage: isrctl ").size() + c.name.size() + 1;
    std::string synopsis = c.args;
    for (const auto& o : c.options)
        if (isOptional(c, o))
            synopsis += (synopsis.empty() ? "[" : " [") + o.spelling + "]";
    // Keep each "[--option VALUE]" on one line: wrap on the spaces between them.
    std::vector<std::string> pieces;
    {
        std::string piece;
        int depth = 0;
        for (char ch : synopsis) {
            if (ch == ' ' && depth == 0) {
                if (!piece.empty())
                    pieces.push_back(std::move(piece));
                piece.clear();
                continue;
            }
            depth += ch == '[' ? 1 : ch == ']' ? -1 : 0;
            piece += ch;
        }
        if (!piece.empty())
            pieces.push_back(std::move(piece));
    }
    for (const auto& p : pieces) {
        if (column + 1 + p.size() > kHelpColumns && column > indent) {
            out += "\n" + std::string(indent, ' ');
            column = indent;
        } else {
            out += ' ';
            ++column;
        }
        out += p;
        column += p.size();
    }
    out += "\n\n";
    column = 0;
    std::string summary = c.summary;
    if (!summary.empty())
        summary[0] = char(std::toupper(static_cast<unsigned char>(summary[0])));
    appendWrapped(out, column, summary + ".", 0);
    if (!c.details.empty()) {
        out += " ";
        ++column;
        appendWrapped(out, column, c.details, 0);
    }
    out += "\n";
    if (!c.options.empty()) {
        out += "\nOptions:\n";
        std::size_t width = 0;
        for (const auto& o : c.options)
            width = std::max(width, std::min<std::size_t>(o.spelling.size(), 28));
        const std::size_t helpColumn = 2 + width + 2;
        for (const auto& o : c.options) {
            appendEntry(out, "  " + o.spelling, o.help, helpColumn);
        }
    }
    std::fputs(out.c_str(), stdout);
}

int runMain(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "--help" || args[0] == "-h" ||
        (args[0] == "help" && args.size() == 1)) {
        printHelp();
        return args.empty() ? kExitUsage : kExitOk;
    }
    if (args[0] == "--version" || args[0] == "-V") {
        std::printf("isrctl %s\n", kVersion);
        return kExitOk;
    }
    const bool helpFor = args[0] == "help";
    std::vector<std::string> words(args.begin() + (helpFor ? 1 : 0), args.end());
    std::size_t nameWords = 0;
    const Command* command = findCommand(words, nameWords);
    if (command && helpFor && nameWords != words.size())
        return fail("'isrctl help' takes one command, e.g. isrctl help " + command->name,
                    kExitUsage);
    if (!command) {
        if (words.empty()) // "isrctl help" alone is handled above
            return fail("unknown command (see isrctl --help)", kExitUsage);
        // "isrctl session" or "isrctl session frob": name the commands of that group.
        const std::string& group = words.front();
        std::string members;
        for (const auto& c : commandTable())
            if (c.name.rfind(group + " ", 0) == 0)
                members += (members.empty() ? "" : ", ") + c.name.substr(group.size() + 1);
        if (members.empty())
            return fail("unknown command '" + group + "' (see isrctl --help)", kExitUsage);
        if (words.size() == 1)
            return fail("'" + group + "' needs a subcommand: " + members + " (see isrctl --help)",
                        kExitUsage);
        return fail("unknown command '" + group + " " + words[1] + "'; '" + group +
                        "' has: " + members,
                    kExitUsage);
    }
    std::vector<std::string> rest(words.begin() + std::ptrdiff_t(nameWords), words.end());
    if (helpFor || std::find(rest.begin(), rest.end(), "--help") != rest.end() ||
        std::find(rest.begin(), rest.end(), "-h") != rest.end()) {
        printCommandHelp(*command);
        return kExitOk;
    }
    return command->run(rest);
}

Status applyStoreCredentials(const Args& args, store::StoreOptions& options) {
    std::string path = args.optionOr("store-credentials", "");
    if (path.empty())
        if (const char* env = std::getenv("ISR_STORE_CREDENTIALS"))
            path = env;
    if (path.empty())
        return {};
    auto creds = session::readCredentialsFile(path);
    if (!creds.ok())
        return Error(creds.error().code, "--store-credentials: " + creds.error().message);
    options.readCredentials = std::move(creds).value();
    return {};
}

Result<std::unique_ptr<store::Store>> openStoreFromArgs(const Args& args, bool mustBeStore) {
    std::string url = args.optionOr("store", "");
    if (url.empty()) {
        if (const char* env = std::getenv("ISR_STORE"))
            url = env;
    }
    if (url.empty())
        return Error(Errc::InvalidArgument, "no store given: use --store URL or set ISR_STORE");
    store::StoreOptions options;
    ISR_TRY_STATUS(applyStoreCredentials(args, options));
    ISR_TRY_ASSIGN(auto s, store::openStore(url, options));
    if (mustBeStore)
        ISR_TRY_STATUS(parcel::checkStore(*s));
    return s;
}

Result<parcel::UserSecrets> signInFromArgs(store::Store& store, const std::string& user,
                                           const Args& args) {
    ISR_TRY_ASSIGN(std::string password,
                   readPassword("Password for " + user + ": ", args.flag("password-stdin")));
    auto secrets = parcel::signIn(store, user, password);
    // The typed password is not needed past here: zero it before the heap
    // reuses it (issue #16 item 8; copies made while reading may remain).
    crypto::wipe(
        MutableByteView(reinterpret_cast<std::uint8_t*>(password.data()), password.size()));
    return secrets;
}

Result<std::int64_t> parseDuration(const std::string& text) {
    std::size_t pos = 0;
    long long v = 0;
    try {
        v = std::stoll(text, &pos);
    } catch (...) {
        return Error(Errc::InvalidArgument, "bad duration '" + text + "'");
    }
    std::string unit = text.substr(pos);
    long long mult = unit == "" || unit == "s" ? 1
                     : unit == "m"             ? 60
                     : unit == "h"             ? 3600
                     : unit == "d"             ? 86400
                                               : -1;
    if (mult < 0 || v < 0)
        return Error(Errc::InvalidArgument, "bad duration '" + text + "' (use s, m, h, d)");
    return std::int64_t(v * mult);
}

static bool gProgressShown = false;

parcel::ProgressFn terminalProgress() {
    if (!isatty(STDERR_FILENO))
        return {};
    // Rate and time left from the stage's start; redrawn at most 10 times a
    // second (a chunk a call would otherwise flood the terminal).
    struct State {
        std::string stage;
        std::chrono::steady_clock::time_point start, lastDraw;
    };
    auto state = std::make_shared<State>();
    return [state](std::string_view stage, std::uint64_t done, std::uint64_t total) {
        const auto now = std::chrono::steady_clock::now();
        if (state->stage != stage) {
            state->stage = std::string(stage);
            state->start = now;
            state->lastDraw = {};
        } else if (done < total && now - state->lastDraw < std::chrono::milliseconds(100)) {
            return;
        }
        state->lastDraw = now;
        int pct = total ? int(done * 100 / total) : 100;
        const double seconds = std::chrono::duration<double>(now - state->start).count();
        std::string rate, left;
        if (seconds > 0.5 && done > 0) {
            const double perSecond = double(done) / seconds;
            // Byte stages say so by their totals; chunk counts stay plain.
            rate = total > (1u << 20) ? formatBytes(std::uint64_t(perSecond)) + "/s"
                                      : std::to_string(std::uint64_t(perSecond)) + "/s";
            if (total > done)
                left = std::to_string(std::uint64_t((total - done) / perSecond + 0.5)) + " s left";
        }
        std::fprintf(stderr, "\r%-8.*s %3d%% (%llu/%llu) %s %s   ", int(stage.size()), stage.data(),
                     pct, (unsigned long long)done, (unsigned long long)total, rate.c_str(),
                     left.c_str());
        std::fflush(stderr);
        gProgressShown = true;
    };
}

void endProgress() {
    if (gProgressShown)
        std::fprintf(stderr, "\n");
    gProgressShown = false;
}

void printJson(const json::Value& value) {
    std::printf("%s\n", value.dump().c_str());
}

int checkUsage(const Args& args, std::size_t minPositional, std::size_t maxPositional,
               const std::vector<std::string>& knownOptions, const std::string& command) {
    // Where a command takes a store it also takes that store's credentials.
    std::vector<std::string> known = knownOptions;
    if (std::find(known.begin(), known.end(), "store") != known.end())
        known.push_back("store-credentials");
    auto unknown = args.unknownOptions(known);
    if (!unknown.empty())
        return fail("unknown option --" + unknown.front() + " for '" + command + "'", kExitUsage);
    auto n = args.positional().size();
    if (n < minPositional || n > maxPositional)
        return fail("wrong number of arguments for '" + command + "' (see isrctl " + command +
                        " --help)",
                    kExitUsage);
    return kExitOk;
}

} // namespace isr::cli
