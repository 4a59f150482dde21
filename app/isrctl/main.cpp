// isrctl: the admin and scripting CLI. All logic lives in isr_core and in the
// cmd_*.cpp command groups; this file only hands over.
#include "cli.h"
#include "util/hardening.h"

#include <cstdio>

int main(int argc, char** argv) {
    // isrctl holds passwords, account keys and decrypted chunks (session
    // resume, disk serve, parcel export): no core file may keep them.
    if (auto st = isr::hardening::disableCoreDumps(); !st.ok())
        std::fprintf(stderr, "isrctl: warning: %s\n", st.error().describe().c_str());
    return isr::cli::runMain(argc, argv);
}
