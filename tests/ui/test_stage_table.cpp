// One stage table: the UI's Stage/ErrorKind enums are core/session's, and
// SessionBackend::isLegalTransition is session::isLegalTransition. Every
// (from, to) pair is judged the same by both; the drift this replaced
// (Restoring/Running -> Wiping, Failed -> Fetching/Restoring) stays fixed; and
// the fake backend, driven through every flow it scripts, makes only legal
// transitions and covers the core's table but for the two it cannot make.
#include "fakesessionbackend.h"

#include <QMetaEnum>
#include <QSet>
#include <QTest>

using B = isr::ui::SessionBackend;
using isr::ui::FakeSessionBackend;
namespace session = isr::session;

namespace {

constexpr int kStages = int(session::Stage::Failed) + 1;

QString pairName(B::Stage from, B::Stage to) {
    return B::stageName(from) + " -> " + B::stageName(to);
}

// Records every stage change of a fake as a (from, to) pair.
struct Recorder {
    QSet<QPair<int, int>> seen;
    B::Stage last = B::SignedOut;
    explicit Recorder(FakeSessionBackend& fake) {
        QObject::connect(&fake, &B::stageChanged, &fake, [this](B::Stage to) {
            seen.insert({int(last), int(to)});
            last = to;
        });
    }
};

void stepUntil(FakeSessionBackend& fake, B::Stage stage) {
    for (int i = 0; i < 64 && fake.stage() != stage; ++i)
        fake.step();
    QCOMPARE(fake.stage(), stage);
}

} // namespace

class TestStageTable : public QObject {
    Q_OBJECT

private slots:
    void enumsAreTheCores() {
        QCOMPARE(QMetaEnum::fromType<B::Stage>().keyCount(), kStages);
        QCOMPARE(QMetaEnum::fromType<B::ErrorKind>().keyCount(),
                 int(session::ErrorKind::Internal) + 1);
        for (int s = 0; s < kStages; ++s) {
            QCOMPARE(int(B::toCore(B::Stage(s))), s);
            QCOMPARE(B::fromCore(session::Stage(s)), B::Stage(s));
        }
    }

    void everyPairIsJudgedTheSame() {
        int legal = 0;
        for (int from = 0; from < kStages; ++from) {
            for (int to = 0; to < kStages; ++to) {
                const bool ui = B::isLegalTransition(B::Stage(from), B::Stage(to));
                const bool core =
                    session::isLegalTransition(session::Stage(from), session::Stage(to));
                QVERIFY2(ui == core, qPrintable(pairName(B::Stage(from), B::Stage(to))));
                legal += core;
            }
        }
        QVERIFY(legal > kStages); // the table is not empty
    }

    void theDriftIsFixed() {
        QVERIFY(B::isLegalTransition(B::Restoring, B::Wiping)); // cancel while restoring
        QVERIFY(B::isLegalTransition(B::Running, B::Wiping));   // abandon()
        QVERIFY(!B::isLegalTransition(B::Failed, B::Fetching)); // retry() checks out again
        // Every way back from a failure signs in again (issue #16).
        QVERIFY(!B::isLegalTransition(B::Failed, B::CheckingOut));
        QVERIFY(!B::isLegalTransition(B::Failed, B::Restoring));
    }

    void fakeMakesOnlyLegalTransitionsAndCoversTheTable() {
        FakeSessionBackend fake;
        Recorder rec(fake);
        for (const char* user : {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"})
            fake.addUser(user, "pw");

        // Wrong password, then again: the whole happy path.
        fake.signIn("a", "nope");
        stepUntil(fake, B::Failed);
        fake.signIn("a", "pw");
        stepUntil(fake, B::Running);
        fake.suspendAndLeave();
        stepUntil(fake, B::SignedOut);
        // Cancel while authenticating, checking out, fetching.
        fake.signIn("b", "pw");
        fake.cancel();
        QCOMPARE(fake.stage(), B::SignedOut);
        fake.signIn("b", "pw");
        stepUntil(fake, B::CheckingOut);
        fake.cancel();
        stepUntil(fake, B::SignedOut);
        fake.signIn("b", "pw");
        stepUntil(fake, B::Fetching);
        fake.cancel();
        stepUntil(fake, B::SignedOut);
        // Store gone while checking out; back to sign-in.
        fake.failAt("c", B::CheckingOut, B::StoreUnreachable);
        fake.signIn("c", "pw");
        stepUntil(fake, B::Failed);
        fake.acknowledge();
        QCOMPARE(fake.stage(), B::SignedOut);
        // Open elsewhere: take over.
        fake.lockParcel("d", "kiosk-9", QDateTime::currentDateTime());
        fake.signIn("d", "pw");
        stepUntil(fake, B::Failed);
        fake.takeOver("wrong"); // the password is checked before the lock
        QCOMPARE(fake.stage(), B::Authenticating);
        stepUntil(fake, B::Failed);
        QCOMPARE(fake.errorKind(), B::WrongCredentials);
        fake.signIn("d", "pw");
        stepUntil(fake, B::Failed);
        QCOMPARE(fake.errorKind(), B::LockedElsewhere);
        fake.takeOver("pw");
        QCOMPARE(fake.stage(), B::Authenticating);
        fake.step();
        QCOMPARE(fake.stage(), B::CheckingOut);
        stepUntil(fake, B::Running);
        fake.suspendAndLeave();
        stepUntil(fake, B::SignedOut);
        // Fetching fails; retry signs in again, checks out and fetches.
        fake.failAt("e", B::Fetching, B::StoreUnreachable);
        fake.signIn("e", "pw");
        stepUntil(fake, B::Failed);
        fake.retry("pw");
        QCOMPARE(fake.stage(), B::Authenticating);
        stepUntil(fake, B::Fetching);
        stepUntil(fake, B::Running);
        fake.suspendAndLeave();
        stepUntil(fake, B::SignedOut);
        // Restoring fails; leave.
        fake.failAt("f", B::Restoring, B::VmFailed);
        fake.signIn("f", "pw");
        stepUntil(fake, B::Failed);
        fake.acknowledge();
        QCOMPARE(fake.stage(), B::Wiping);
        stepUntil(fake, B::SignedOut);
        // The VM ends while running; start again from the last save.
        fake.failAt("g", B::Running, B::VmFailed);
        fake.signIn("g", "pw");
        stepUntil(fake, B::Running);
        fake.step();
        QCOMPARE(fake.stage(), B::Failed);
        fake.retry("pw");
        QCOMPARE(fake.stage(), B::Authenticating);
        stepUntil(fake, B::Restoring);
        stepUntil(fake, B::Running);
        fake.suspendAndLeave();
        stepUntil(fake, B::SignedOut);
        // Suspend fails; retry finishes it.
        fake.failAt("h", B::Suspending, B::NoSpace);
        fake.signIn("h", "pw");
        stepUntil(fake, B::Running);
        fake.suspendAndLeave();
        stepUntil(fake, B::Failed);
        fake.retry("wrong"); // refused, nothing changes
        QCOMPARE(fake.stage(), B::Failed);
        fake.retry("pw");
        QCOMPARE(fake.stage(), B::Suspending);
        stepUntil(fake, B::SignedOut);
        // Wiping fails; retry wipes.
        fake.failAt("i", B::Wiping, B::Internal);
        fake.signIn("i", "pw");
        stepUntil(fake, B::Running);
        fake.suspendAndLeave();
        stepUntil(fake, B::Failed);
        fake.retry("");
        QCOMPARE(fake.stage(), B::Wiping);
        stepUntil(fake, B::SignedOut);
        // Sign-in fails for another reason than the password.
        fake.failAt("j", B::Authenticating, B::StoreUnreachable);
        fake.signIn("j", "pw");
        stepUntil(fake, B::Failed);
        fake.acknowledge();
        QCOMPARE(fake.stage(), B::SignedOut);

        QSet<QPair<int, int>> legal;
        for (int from = 0; from < kStages; ++from)
            for (int to = 0; to < kStages; ++to)
                if (session::isLegalTransition(session::Stage(from), session::Stage(to)))
                    legal.insert({from, to});
        for (const auto& [from, to] : std::as_const(rec.seen))
            QVERIFY2(legal.contains({from, to}),
                     qPrintable(pairName(B::Stage(from), B::Stage(to))));
        // What the fake cannot make: cancel while restoring and abandon()
        // while running (the kiosk offers neither: Restoring has no Cancel
        // button, Running leaves through Suspend & Leave).
        const QSet<QPair<int, int>> notScripted = {{int(B::Restoring), int(B::Wiping)},
                                                   {int(B::Running), int(B::Wiping)}};
        QSet<QPair<int, int>> missing = legal - rec.seen;
        for (const auto& [from, to] : std::as_const(missing))
            QVERIFY2(notScripted.contains({from, to}),
                     qPrintable("not driven: " + pairName(B::Stage(from), B::Stage(to))));
        QCOMPARE(missing, notScripted);
    }
};

QTEST_GUILESS_MAIN(TestStageTable)
#include "test_stage_table.moc"
