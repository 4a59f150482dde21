// Emits the kiosk's structured log events through the real code paths, for
// journal.sh: a StageTracker walks one resume and Suspend & Leave and one
// refused sign-in (the events a kiosk writes), then a plain multi-line
// warning and an event with a field name journald would refuse.
#include "session/stage_tracker.h"
#include "util/log.h"

#include <thread>

using namespace isr;
using namespace isr::session;

int main() {
    StageTracker tracker{Listener{}};
    tracker.bytesDown() += 0;
    tracker.enter(Stage::Authenticating);
    tracker.setSubject("u-0123456789abcdef", "p-fedcba9876543210");
    for (Stage s : {Stage::CheckingOut, Stage::Fetching, Stage::Restoring}) {
        tracker.enter(s);
        tracker.bytesDown() += 1000;
    }
    tracker.enter(Stage::Running);
    tracker.enter(Stage::Suspending);
    tracker.bytesUp() += 700;
    tracker.enter(Stage::Wiping);
    tracker.enter(Stage::SignedOut);

    tracker.enter(Stage::Authenticating);
    Failure f;
    f.stage = Stage::Authenticating;
    f.kind = ErrorKind::StoreUnreachable;
    f.cause = FailureCause::StoreUnreachable;
    f.detail = "users/x/account: Couldn't connect to server";
    tracker.fail(f);

    ISR_LOG_WARN("store") << "first line\nsecond line";
    log::event(log::Level::Warn, "test", "bad field dropped",
               {{"not a name", "x"}, {"ISR_KEPT", "yes"}});
    return 0;
}
