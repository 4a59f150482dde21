// isrctl debug fault-points: the named fault points (util/fault.h) a test
// can arm with ISR_FAULT=<point>[:kill|:fail][@N].
#include "cli.h"
#include "util/fault.h"

#include <cstdio>

namespace isr::cli {
namespace {

int faultPoints(const std::vector<std::string>& argv) {
    auto args = Args::parse(argv, {"json"});
    if (!args.ok())
        return fail(args.error().message, kExitUsage);
    if (int rc = checkUsage(*args, 0, 0, {}, "debug fault-points"))
        return rc;
    if (args->flag("json")) {
        json::Array points;
        for (const auto& p : fault::kFaultPoints)
            points.push_back(json::Object{{"name", p.name}, {"where", p.where}});
        printJson(points);
        return kExitOk;
    }
    for (const auto& p : fault::kFaultPoints)
        std::printf("%-34s %s\n", p.name, p.where);
    return kExitOk;
}

CommandRegistration regFaultPoints({
    .name = "debug fault-points",
    .args = "",
    .summary = "list the fault points ISR_FAULT arms (for tests)",
    .run = faultPoints,
    .options = {{"--json", "print them as JSON"}},
    .details = "A test arms one with ISR_FAULT=<point>[:kill|:fail][@N] in the environment of the "
               "isr process it starts (see core/util/README.md).",
});

} // namespace
} // namespace isr::cli
