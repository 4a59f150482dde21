// The session's transition table, as documented in session.h.
#include "session/session.h"

#include <QTest>

using namespace isr;
using namespace isr::session;

class TestSessionStates : public QObject {
    Q_OBJECT
private slots:
    void happyPathIsLegal() {
        const Stage path[] = {Stage::SignedOut,  Stage::Authenticating, Stage::CheckingOut,
                              Stage::Fetching,   Stage::Restoring,      Stage::Running,
                              Stage::Suspending, Stage::Wiping,         Stage::SignedOut};
        for (std::size_t i = 0; i + 1 < std::size(path); ++i)
            QVERIFY2(isLegalTransition(path[i], path[i + 1]), stageName(path[i]));
    }
    void shortcutsAreNot() {
        QVERIFY(!isLegalTransition(Stage::SignedOut, Stage::Running));
        QVERIFY(!isLegalTransition(Stage::Authenticating, Stage::Running));
        QVERIFY(!isLegalTransition(Stage::Running, Stage::SignedOut)); // must wipe first
        QVERIFY(!isLegalTransition(Stage::Suspending, Stage::SignedOut));
        QVERIFY(!isLegalTransition(Stage::Failed, Stage::Running));
    }
    void everyStageCanFailAndFailureHasWaysBack() {
        for (Stage s : {Stage::Authenticating, Stage::CheckingOut, Stage::Fetching,
                        Stage::Restoring, Stage::Running, Stage::Suspending, Stage::Wiping})
            QVERIFY2(isLegalTransition(s, Stage::Failed), stageName(s));
        // Take over / retry sign in again (issue #16): never straight to CheckingOut.
        QVERIFY(isLegalTransition(Stage::Failed, Stage::Authenticating));
        QVERIFY(!isLegalTransition(Stage::Failed, Stage::CheckingOut));
        QVERIFY(isLegalTransition(Stage::Failed, Stage::Suspending));  // retry a suspend
        QVERIFY(isLegalTransition(Stage::Failed, Stage::Wiping));      // abandon
    }
    void errorsAreClassified() {
        QCOMPARE(classify(Error(Errc::AuthFailed, "")), ErrorKind::WrongCredentials);
        QCOMPARE(classify(Error(Errc::Transient, "")), ErrorKind::StoreUnreachable);
        QCOMPARE(classify(Error(Errc::Locked, "")), ErrorKind::LockedElsewhere);
        QCOMPARE(classify(Error(Errc::Corrupt, "")), ErrorKind::Corrupt);
        QCOMPARE(classify(Error(Errc::NoSpace, "")), ErrorKind::NoSpace);
    }
};

QTEST_GUILESS_MAIN(TestSessionStates)
#include "test_session_states.moc"
