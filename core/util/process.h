#pragma once
// Running helper programs (qemu-img, mke2fs...) without a shell: argv is
// passed as is, so no quoting bugs and no injection.

#include "util/result.h"

#include <string>
#include <vector>

namespace isr {

struct ProcessOutput {
    int exitCode = -1;
    std::string out;
    std::string err;
};

// Runs argv[0] (searched on PATH) and waits. Fails only if it could not be
// started or was killed by a signal; a non-zero exit is reported in exitCode.
Result<ProcessOutput> runProgram(const std::vector<std::string>& argv);

// Like runProgram, but a non-zero exit is an error carrying its stderr.
Result<std::string> runProgramChecked(const std::vector<std::string>& argv);

} // namespace isr
