// The VM host split's wire (issue #16, items 3 and 4): a SessionHost serving
// a backend in one end of a real UNIX socket, a RemoteSessionBackend showing
// it at the other, both in this process. The backend served is the scripted
// FakeSessionBackend: what is under test is the relay (every stage, failure
// fact, password answer and the display's file descriptor arrive as the
// backend said them), the peer check, and what happens when either side goes
// away. The real session behind the same host runs in test_e2e_kiosk_xvfb
// (isr-vmhost as root, the shell as another user).
#include "fakesessionbackend.h"
#include "remotesessionbackend.h"
#include "sessionhost.h"

#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest>
#include <cerrno>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace isr;
using namespace isr::ui;
using B = SessionBackend;

namespace {

// A UNIX stream server standing in for QEMU's VNC socket: the fake connects
// its display there; the test reads what arrives through the passed fd.
class DisplayServer {
public:
    explicit DisplayServer(const QString& path) : path_(path.toStdString()) {
        fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
        QVERIFY(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        QVERIFY(::listen(fd_.get(), 8) == 0);
    }
    // The next connection's server end.
    UniqueFd accept() { return UniqueFd(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC)); }

private:
    std::string path_;
    UniqueFd fd_;
};

struct Pair {
    QTemporaryDir dir;
    FakeSessionBackend fake;
    std::unique_ptr<SessionHost> host;
    std::unique_ptr<RemoteSessionBackend> shell;
    QList<bool> stopping; // the host's stop hook, as called
    QSize screen;

    QString socket() const { return dir.filePath(QStringLiteral("vmhost.sock")); }
    void startHost() {
        host = std::make_unique<SessionHost>(
            &fake, SessionHost::Hooks{[this](bool on) {
                                          stopping << on;
                                          // What SessionController does: save a running
                                          // session, abandon a failed one.
                                          if (on && fake.stage() == B::Running)
                                              fake.suspendAndLeave();
                                          else if (on && fake.stage() == B::Failed)
                                              fake.acknowledge();
                                      },
                                      [this](int w, int h) { screen = QSize(w, h); }});
        const Status listening = host->listen(socket().toStdString(), ::getuid(), ::getgid());
        QVERIFY2(listening.ok(), listening.ok() ? "" : listening.error().message.c_str());
    }
    void startShell() {
        shell = std::make_unique<RemoteSessionBackend>(socket(), QSize(1280, 800));
        QTRY_VERIFY(shell->isConnected());
    }
    // Host and shell up, user demo/demo, the scripted steps quick.
    void start() {
        fake.addUser(QStringLiteral("demo"), QStringLiteral("demo"));
        fake.setStepIntervalMs(20);
        startHost();
        startShell();
    }
    void signInToRunning() {
        shell->signIn(QStringLiteral("demo"), QStringLiteral("demo"));
        QTRY_COMPARE(fake.stage(), B::Running);
    }
};

} // namespace

class TestSessionHost : public QObject {
    Q_OBJECT

private slots:
    void signInRelaysEveryStageInOrder() {
        Pair p;
        p.fake.addUser(QStringLiteral("demo"), QStringLiteral("demo"));
        p.fake.setStepIntervalMs(20);
        p.startHost();
        p.startShell();
        QTRY_COMPARE(p.screen, QSize(1280, 800)); // the hello told the host the screen
        QList<B::Stage> host, shell;
        connect(&p.fake, &B::stageChanged, this, [&](B::Stage s) { host << s; });
        connect(p.shell.get(), &B::stageChanged, this, [&](B::Stage s) { shell << s; });
        p.shell->signIn(QStringLiteral("demo"), QStringLiteral("demo"));
        QTRY_COMPARE(p.shell->stage(), B::Running);
        QCOMPARE(shell, host); // every stage, none skipped, in the host's order
        QCOMPARE(p.shell->userName(), QStringLiteral("demo"));
        QVERIFY(!p.shell->resumingFrom().isEmpty());
        QCOMPARE(p.shell->resumingFrom(), p.fake.resumingFrom());
        QTRY_VERIFY(p.shell->hoardChunksTotal() > 0);
        QTRY_COMPARE(p.shell->hoardChunksCached(), p.fake.hoardChunksCached());
        p.shell->suspendAndLeave();
        QTRY_COMPARE(p.shell->stage(), B::SignedOut);
        QVERIFY(host.contains(B::Suspending) && shell.contains(B::Suspending));
        QVERIFY(p.stopping.isEmpty());
    }

    void failuresArriveWithTheirFacts() {
        Pair p;
        p.fake.addUser(QStringLiteral("demo"), QStringLiteral("demo"));
        p.fake.addUser(QStringLiteral("busy"), QStringLiteral("busy"));
        p.fake.lockParcel(QStringLiteral("busy"), QStringLiteral("kiosk-3 (library)"),
                          QDateTime::currentDateTime().addSecs(-3600));
        p.fake.setStepIntervalMs(20);
        p.startHost();
        p.startShell();
        // A wrong password: the same words on both sides.
        p.shell->signIn(QStringLiteral("demo"), QStringLiteral("wrong"));
        QTRY_COMPARE(p.shell->stage(), B::Failed);
        QCOMPARE(p.shell->errorKind(), B::WrongCredentials);
        QCOMPARE(p.shell->failedStage(), B::Authenticating);
        QCOMPARE(p.shell->errorMessage(), p.fake.errorMessage());
        QVERIFY(!p.shell->errorMessage().isEmpty());
        p.shell->acknowledge();
        QTRY_COMPARE(p.shell->stage(), B::SignedOut);
        QVERIFY(p.shell->errorMessage().isEmpty());
        // Open elsewhere: the holder and the time, then a take-over that
        // asks for the password (a wrong one fails again).
        p.shell->signIn(QStringLiteral("busy"), QStringLiteral("busy"));
        QTRY_COMPARE(p.shell->stage(), B::Failed);
        QCOMPARE(p.shell->errorKind(), B::LockedElsewhere);
        QCOMPARE(p.shell->lockHolder(), QStringLiteral("kiosk-3 (library)"));
        QCOMPARE(p.shell->lockSince().toSecsSinceEpoch(), p.fake.lockSince().toSecsSinceEpoch());
        QCOMPARE(p.shell->errorMessage(), p.fake.errorMessage());
        p.shell->takeOver(QStringLiteral("busy"));
        QTRY_COMPARE(p.shell->stage(), B::Running);
        // The lock screen's question and its answer.
        QSignalSpy checked(p.shell.get(), &B::passwordChecked);
        p.shell->checkPassword(QStringLiteral("nope"));
        QTRY_COMPARE(checked.count(), 1);
        QCOMPARE(checked.at(0).at(0).toBool(), false);
        p.shell->checkPassword(QStringLiteral("busy"));
        QTRY_COMPARE(checked.count(), 2);
        QCOMPARE(checked.at(1).at(0).toBool(), true);
        // The hoard held back: the running page's quiet line.
        p.fake.holdHoard(B::NoSpace);
        QTRY_COMPARE(p.shell->hoardProblemKind(), B::NoSpace);
        QCOMPARE(p.shell->hoardProblem(), p.fake.hoardProblem());
    }

    void theDisplayDescriptorCrossesTheSocket() {
        Pair p;
        DisplayServer vnc(p.dir.filePath(QStringLiteral("vnc.sock")));
        p.fake.setProperty("displaySocket", p.dir.filePath(QStringLiteral("vnc.sock")));
        p.fake.addUser(QStringLiteral("demo"), QStringLiteral("demo"));
        p.fake.setStepIntervalMs(20);
        p.startHost();
        p.startShell();
        p.shell->signIn(QStringLiteral("demo"), QStringLiteral("demo"));
        QTRY_COMPARE(p.shell->stage(), B::Running);
        // Opened ahead of Running by the backend: waiting in the shell's
        // source when Running arrived.
        QVERIFY(p.shell->display()->isAvailable());
        QVERIFY(p.shell->display()->hasPendingFd());
        UniqueFd ahead(p.shell->display()->takeFd());
        UniqueFd server = vnc.accept();
        QVERIFY(server.valid());
        QCOMPARE(::write(server.get(), "RFB 003.008\n", 12), ssize_t(12));
        char buf[16] = {};
        QCOMPARE(::read(ahead.get(), buf, sizeof buf), ssize_t(12));
        QCOMPARE(QByteArray(buf, 12), QByteArray("RFB 003.008\n"));
        // A display item asks again (after a drop): a fresh connection.
        QSignalSpy ready(p.shell->display(), &DisplaySource::ready);
        p.shell->display()->request();
        QTRY_COMPARE(ready.count(), 1);
        UniqueFd again(p.shell->display()->takeFd());
        QVERIFY(again.valid());
        UniqueFd server2 = vnc.accept();
        QCOMPARE(::write(server2.get(), "x", 1), ssize_t(1));
        QCOMPARE(::read(again.get(), buf, 1), ssize_t(1));
    }

    void aLostShellGetsTheSessionSaved() {
        Pair p;
        p.start();
        p.signInToRunning();
        QList<B::Stage> host;
        connect(&p.fake, &B::stageChanged, this, [&](B::Stage s) { host << s; });
        p.shell.reset(); // the shell crashed
        QTRY_COMPARE(p.fake.stage(), B::SignedOut);
        QVERIFY(host.contains(B::Suspending)); // saved, not dropped
        // Stopped for the save, then opened again for the next shell.
        QCOMPARE(p.stopping, (QList<bool>{true, false}));
        // A new shell sees the host as it is and can sign in.
        p.startShell();
        QTRY_COMPARE(p.shell->stage(), B::SignedOut);
        p.shell->signIn(QStringLiteral("demo"), QStringLiteral("demo"));
        QTRY_COMPARE(p.shell->stage(), B::Running);
    }

    void aStoppingHostKeepsSignInsClosed() {
        Pair p;
        p.start();
        p.signInToRunning();
        p.host->setHostStopping(); // a stop signal came first
        p.shell.reset();
        QTRY_COMPARE(p.fake.stage(), B::SignedOut);
        QCOMPARE(p.stopping, (QList<bool>{true})); // no "open again"
    }

    void theShellForwardsAKioskStop() {
        Pair p;
        p.startHost();
        p.startShell();
        p.shell->kioskStopping(true);
        QTRY_COMPARE(p.stopping, (QList<bool>{true}));
        p.shell->kioskStopping(false);
        QTRY_COMPARE(p.stopping, (QList<bool>{true, false}));
    }

    // systemctl restart isr-kiosk: the shell's stop closes sign-ins (the
    // host saves), the shell exits, a new one starts: it must be able to
    // sign in, though the host never got stopping(false).
    void aStoppedShellsSuccessorCanSignIn() {
        Pair p;
        p.start();
        p.signInToRunning();
        p.shell->kioskStopping(true); // the shell's SIGTERM
        QTRY_COMPARE(p.fake.stage(), B::SignedOut);
        QTRY_COMPARE(p.shell->stage(), B::SignedOut);
        p.shell.reset(); // it quits at SignedOut
        QTRY_COMPARE(p.stopping, (QList<bool>{true, false}));
        p.startShell();
        p.signInToRunning();
    }

    void noHostMeansAClearFailureAndALaterConnection() {
        Pair p;
        p.fake.addUser(QStringLiteral("demo"), QStringLiteral("demo"));
        p.fake.setStepIntervalMs(20);
        RemoteSessionBackend shell(p.socket(), QSize());
        QVERIFY(!shell.isConnected());
        shell.signIn(QStringLiteral("demo"), QStringLiteral("demo"));
        QCOMPARE(shell.stage(), B::Failed);
        QCOMPARE(shell.errorKind(), B::Internal);
        QVERIFY(shell.errorDetail().contains(QStringLiteral("isr-vmhost")));
        shell.acknowledge();
        QCOMPARE(shell.stage(), B::SignedOut);
        // A stop with no host: nothing to save, the shell may quit.
        shell.kioskStopping(true);
        QCOMPARE(shell.stage(), B::SignedOut);
        QVERIFY(shell.shuttingDown());
        shell.kioskStopping(false);
        // The host starts later: the shell finds it by itself.
        p.startHost();
        QTRY_VERIFY_WITH_TIMEOUT(shell.isConnected(), 5000);
        shell.signIn(QStringLiteral("demo"), QStringLiteral("demo"));
        QTRY_COMPARE(shell.stage(), B::Running);
        // The host goes away mid-session: the shell says so.
        p.host.reset();
        QTRY_COMPARE(shell.stage(), B::Failed);
        QCOMPARE(shell.errorKind(), B::Internal);
        QCOMPARE(shell.failedStage(), B::Running);
        QVERIFY(!shell.display()->isAvailable());
    }

    void theSocketAdmitsOnlyTheShellsUser() {
        if (::geteuid() != 0)
            QSKIP("needs root: a connection from another uid (setuid to nobody)");
        Pair p;
        p.startHost();
        // The socket file: root's, the shell's group, 0660.
        struct stat st {};
        QVERIFY(::stat(p.socket().toLocal8Bit().constData(), &st) == 0);
        QCOMPARE(st.st_mode & 07777, mode_t(0660));
        QCOMPARE(st.st_uid, uid_t(0));
        // Let nobody reach the socket's directory, then connect as nobody,
        // past the file mode (as a QEMU escape running as another user with
        // the shell's group would be): the host must hang up unheard.
        QVERIFY(::chmod(p.dir.path().toLocal8Bit().constData(), 0711) == 0);
        QVERIFY(::chmod(p.socket().toLocal8Bit().constData(), 0666) == 0);
        // Everything the child needs is made before the fork: after it, in
        // a copy of a threaded process, only system calls (no malloc).
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const QByteArray path = p.socket().toLocal8Bit();
        std::strncpy(addr.sun_path, path.constData(), sizeof addr.sun_path - 1);
        const pid_t child = ::fork();
        if (child == 0) {
            ::alarm(20);
            if (::setgid(65534) != 0 || ::setuid(65534) != 0)
                ::_exit(10);
            const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
            if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
                ::_exit(11);
            static const char hello[] = R"({"t":"signIn","user":"demo","password":"demo"})";
            (void)::send(fd, hello, sizeof hello - 1, MSG_NOSIGNAL);
            char buf[256];
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            // Hung up without a word: end of file, or a reset for the
            // packet it never read.
            ::_exit(n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : 12);
        }
        QSignalSpy stages(&p.fake, &B::stageChanged);
        int status = 0;
        // The host answers on this thread's event loop: keep it turning.
        // (QTRY_ evaluates its expression once more after success: reap into a flag.)
        bool reaped = false;
        QTRY_VERIFY_WITH_TIMEOUT(reaped = reaped || ::waitpid(child, &status, WNOHANG) == child,
                                 10000);
        QVERIFY(WIFEXITED(status));
        QCOMPARE(WEXITSTATUS(status), 0);
        QCOMPARE(p.host->refusedPeers(), 1);
        QCOMPARE(stages.count(), 0); // the sign-in never reached the backend
        QVERIFY(!p.host->hasShell());
    }

    void malformedMessagesEndTheConnection() {
        Pair p;
        p.startHost();
        auto fd = wire::connectTo(p.socket().toStdString());
        QVERIFY(fd.ok());
        QTRY_VERIFY(p.host->hasShell());
        const char junk[] = "not json";
        QCOMPARE(::send(fd->get(), junk, sizeof junk - 1, MSG_NOSIGNAL), ssize_t(sizeof junk - 1));
        QTRY_VERIFY(!p.host->hasShell());
        QCOMPARE(p.fake.stage(), B::SignedOut);
    }
};

QTEST_MAIN(TestSessionHost)
#include "test_session_host.moc"
