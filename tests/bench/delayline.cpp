// isr_delayline: a fixed one-way delay between two TUN devices, one in this
// network namespace and one in another, for the walk-up benchmark.
//
//   isr_delayline TUN_HERE NETNS TUN_THERE DELAY_FILE
//
// The kernel this project is benchmarked on has no sch_netem (nor fq for
// EDT-based delay), only tbf. So the benchmark link is: host stack -> TUN_HERE
// (tbf: rate) -> this relay (delay) -> TUN_THERE in NETNS -> radosgw, and the
// same way back with tbf on TUN_THERE. Every IP packet is held DELAY_MS in each
// direction, in order, so the round trip gains 2 x DELAY_MS at packet level
// (TCP's own dynamics see it, unlike a delaying proxy). Both devices must exist
// already (`ip tuntap add dev NAME mode tun`); runs until SIGTERM/SIGINT.
// DELAY_FILE holds the one-way delay in milliseconds; SIGHUP re-reads it, so
// the link changes without closing the devices (which drops the carrier).
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <string>
#include <sys/ioctl.h>
#include <unistd.h>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t stopRequested = 0;
volatile std::sig_atomic_t reloadRequested = 0;
void onSignal(int) {
    stopRequested = 1;
}
void onHangup(int) {
    reloadRequested = 1;
}

std::chrono::microseconds readDelay(const char* path) {
    double ms = 0;
    if (FILE* f = std::fopen(path, "r")) {
        if (std::fscanf(f, "%lf", &ms) != 1)
            ms = 0;
        std::fclose(f);
    }
    std::fprintf(stderr, "isr_delayline: one-way delay %.1f ms\n", ms);
    return std::chrono::microseconds(long(ms * 1000));
}

int openTun(const std::string& name) {
    int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        std::perror("open /dev/net/tun");
        std::exit(1);
    }
    ifreq ifr{};
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name.c_str());
    if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
        std::fprintf(stderr, "isr_delayline: attach %s: %s\n", name.c_str(), std::strerror(errno));
        std::exit(1);
    }
    return fd;
}

struct Packet {
    Clock::time_point due;
    std::vector<unsigned char> data;
};

// One direction: packets read from `from` wait in `queue` until due.
struct Direction {
    int from = -1;
    int to = -1;
    std::deque<Packet> queue;
};

} // namespace

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s TUN_HERE NETNS TUN_THERE DELAY_FILE\n", argv[0]);
        return 2;
    }
    auto delay = readDelay(argv[4]);
    int here = openTun(argv[1]);
    std::string nsPath = std::string("/var/run/netns/") + argv[2];
    int ns = ::open(nsPath.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) {
        std::fprintf(stderr, "isr_delayline: enter %s: %s\n", nsPath.c_str(), std::strerror(errno));
        return 1;
    }
    ::close(ns);
    int there = openTun(argv[3]);
    std::signal(SIGTERM, onSignal);
    std::signal(SIGINT, onSignal);
    struct sigaction hup {};
    hup.sa_handler = onHangup; // no SA_RESTART: poll() returns at once
    sigaction(SIGHUP, &hup, nullptr);

    Direction dirs[2];
    dirs[0].from = here;
    dirs[0].to = there;
    dirs[1].from = there;
    dirs[1].to = here;
    std::vector<unsigned char> buf(65536);
    while (!stopRequested) {
        if (reloadRequested) {
            reloadRequested = 0;
            delay = readDelay(argv[4]);
        }
        auto now = Clock::now();
        int timeoutMs = 100;
        for (auto& d : dirs) {
            while (!d.queue.empty() && d.queue.front().due <= now) {
                const auto& p = d.queue.front().data;
                // A full device queue on the far side drops the packet, as a
                // real link would; TCP recovers.
                (void)!::write(d.to, p.data(), p.size());
                d.queue.pop_front();
            }
            if (!d.queue.empty()) {
                auto wait =
                    std::chrono::duration_cast<std::chrono::microseconds>(d.queue.front().due - now)
                        .count();
                timeoutMs = std::min<int>(timeoutMs, int((wait + 999) / 1000));
            }
        }
        pollfd fds[2] = {{here, POLLIN, 0}, {there, POLLIN, 0}};
        int n = ::poll(fds, 2, timeoutMs);
        if (n < 0 && errno != EINTR) {
            std::perror("poll");
            return 1;
        }
        now = Clock::now();
        for (int i = 0; i < 2; ++i) {
            if (!(fds[i].revents & POLLIN))
                continue;
            // Drain what is there; each read is one packet.
            for (int k = 0; k < 256; ++k) {
                ssize_t r = ::read(dirs[i].from, buf.data(), buf.size());
                if (r <= 0)
                    break;
                dirs[i].queue.push_back({now + delay, {buf.begin(), buf.begin() + r}});
            }
        }
    }
    return 0;
}
