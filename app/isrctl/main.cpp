// isrctl: the admin and scripting CLI. All logic lives in isr_core and in the
// cmd_*.cpp command groups; this file only hands over.
#include "cli.h"

int main(int argc, char** argv) {
    return isr::cli::runMain(argc, argv);
}
