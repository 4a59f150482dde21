// The one renderer (ui/text/failuretext.h) over every FailureCause: each has
// its own non-empty words; the last saved version and a lock holder's "since"
// appear as local time (the test runs in a zone far from UTC), never as Unix
// seconds; the lock holder is named; a Generic cause falls back to the kind
// and stage; the hoard's problems have their quiet line.
#include "failuretext.h"

#include <QSet>
#include <QTest>
#include <cstdlib>
#include <ctime>

namespace session = isr::session;
namespace text = isr::ui::text;
using session::ErrorKind;
using session::FailureCause;
using session::Stage;

namespace {

constexpr int kCauses = int(FailureCause::StoreForked) + 1;

// Tuesday 2026-01-06 14:02 local time, and "now" two days later.
QDateTime saved() {
    return QDateTime(QDate(2026, 1, 6), QTime(14, 2), Qt::LocalTime);
}
QDateTime now() {
    return saved().addDays(2);
}

session::Failure withFacts(FailureCause cause) {
    session::Failure f;
    f.cause = cause;
    f.kind = ErrorKind::Internal;
    f.stage = Stage::Fetching;
    isr::parcel::LockInfo holder;
    holder.kiosk = "gate-23";
    holder.since = saved().addSecs(-3600).toSecsSinceEpoch(); // 13:02
    holder.heartbeat = holder.since;
    f.holder = holder;
    f.lastSave = session::SavedVersion{3, saved().toSecsSinceEpoch(), "gate-23"};
    f.where = "/var/lib/isr";
    f.freeBytes = 5ull << 20;
    f.bootProfile = "firmware";
    f.detail = "technical-detail-for-the-log";
    return f;
}

} // namespace

class TestFailureText : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        // Far from UTC, with a half-hour offset: a UTC rendering cannot pass.
        qputenv("TZ", "Asia/Kolkata");
        tzset();
        QVERIFY(saved().offsetFromUtc() == 5 * 3600 + 1800);
    }

    void everyCauseHasItsOwnWords() {
        const QLocale c = QLocale::c();
        QSet<QString> texts;
        for (int i = 0; i < kCauses; ++i) {
            const auto cause = FailureCause(i);
            const session::Failure f = withFacts(cause);
            const QString t = text::failure(f, c, now());
            const QString name = QString::fromLatin1(session::failureCauseName(cause));
            QVERIFY2(t.length() > 30, qPrintable(name + ": " + t));
            QVERIFY2(!t.contains("technical-detail"), qPrintable(name + ": " + t));
            // The saved version as a person knows it, in local time.
            QVERIFY2(t.contains("version 3, saved Tuesday 14:02 at gate-23"),
                     qPrintable(name + ": " + t));
            QVERIFY2(!t.contains(QString::number(f.lastSave->created)), qPrintable(t));
            QVERIFY2(!t.contains(QString::number(f.holder->since)), qPrintable(t));
            texts.insert(t);
        }
        QCOMPARE(texts.size(), kCauses);
    }

    void lockHolderIsNamedWithLocalTime() {
        session::Failure f = withFacts(FailureCause::LockedElsewhere);
        f.kind = ErrorKind::LockedElsewhere;
        f.stage = Stage::CheckingOut;
        f.lastSave.reset();
        const QString t = text::failure(f, QLocale::c(), now());
        QVERIFY2(t.contains("gate-23"), qPrintable(t));
        QVERIFY2(t.contains("Tuesday 13:02"), qPrintable(t));
        // Without the holder's facts it still says what to do.
        f.holder.reset();
        QVERIFY(text::failure(f, QLocale::c(), now()).contains("another kiosk"));
    }

    void kioskStorageSaysWhereAndHowMuch() {
        session::Failure f = withFacts(FailureCause::KioskStorage);
        const QString t = text::failure(f, QLocale::c(), now());
        QVERIFY2(t.contains("/var/lib/isr") && t.contains("5.0 MiB"), qPrintable(t));
        session::Failure boot = withFacts(FailureCause::BootProfileUnavailable);
        QVERIFY(text::failure(boot, QLocale::c(), now()).contains("firmware"));
    }

    void localTimes() {
        const QLocale c = QLocale::c();
        const qint64 t = saved().toSecsSinceEpoch();
        QCOMPARE(text::localTime(t, c, now()), QStringLiteral("Tuesday 14:02"));
        QCOMPARE(text::localTime(t, c, saved().addSecs(600)), QStringLiteral("today 14:02"));
        QCOMPARE(text::localTime(t, c, saved().addDays(30)),
                 QStringLiteral("6 January 2026 14:02"));
        QCOMPARE(text::savedVersion({7, 0, ""}, c, now()), QStringLiteral("version 7"));
        QCOMPARE(text::savedVersion({7, t, ""}, c, now()),
                 QStringLiteral("version 7, saved Tuesday 14:02"));
    }

    void genericFallsBackToKindAndStage() {
        for (int k = 0; k <= int(ErrorKind::Internal); ++k) {
            for (int s = 0; s <= int(Stage::Failed); ++s) {
                session::Failure f;
                f.kind = ErrorKind(k);
                f.stage = Stage(s);
                QVERIFY(!text::failure(f).isEmpty());
            }
        }
        session::Failure f;
        f.kind = ErrorKind::WrongCredentials;
        f.stage = Stage::Authenticating;
        QVERIFY(text::failure(f).contains("password"));
        f.kind = ErrorKind::StoreUnreachable;
        QVERIFY(text::failure(f).contains("cannot reach"));
        f.kind = ErrorKind::Internal;
        QVERIFY(text::failure(f).contains("cannot start sessions"));
        f.kind = ErrorKind::Corrupt;
        f.stage = Stage::Restoring;
        QVERIFY(text::failure(f).contains("administrator"));
        // The same words whether the core names the cause or only the kind.
        session::Failure named = f;
        named.kind = ErrorKind::StoreUnreachable;
        named.cause = FailureCause::StoreUnreachable;
        f.kind = ErrorKind::StoreUnreachable;
        QCOMPARE(text::failure(named), text::failure(f));
    }

    void hoardProblems() {
        session::HoardStatus h;
        QCOMPARE(text::hoardProblem(h), QString());
        h.problem = ErrorKind::NoSpace;
        h.problemMessage = "technical";
        const QString full = text::hoardProblem(h);
        QVERIFY2(full.contains("disk is nearly full") && full.contains("keeps running"),
                 qPrintable(full));
        h.problem = ErrorKind::StoreUnreachable;
        const QString away = text::hoardProblem(h);
        QVERIFY2(away.contains("store") && away.contains("keeps running"), qPrintable(away));
        QVERIFY(!away.contains("technical"));
        // Lazy memory, RAM not all here: the guest may freeze on a page that
        // is still in the store; all of it here: as before.
        h.memoryChunksTotal = 100;
        h.memoryChunksDone = 40;
        const QString frozen = text::hoardProblem(h);
        QVERIFY2(frozen.contains("stop responding") && frozen.contains("nothing is lost"),
                 qPrintable(frozen));
        h.memoryChunksDone = 100;
        QCOMPARE(text::hoardProblem(h), away);
    }
};

QTEST_GUILESS_MAIN(TestFailureText)
#include "test_failure_text.moc"
