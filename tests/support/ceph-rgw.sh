#!/usr/bin/env bash
# ceph-rgw.sh: a throw-away one-node Ceph 16 cluster with radosgw on loopback,
# for tests that need a real S3 endpoint (SigV4, conditional PUTs, listing).
#
#   ceph-rgw.sh start [DIR]   bring it up (idempotent: reuses a running one)
#   ceph-rgw.sh env [DIR]     print shell exports for tests (ISR_TEST_S3_*)
#   ceph-rgw.sh stop [DIR]    kill every daemon and remove DIR
#   ceph-rgw.sh status [DIR]  exit 0 if radosgw answers
#   ceph-rgw.sh rgw-kill [DIR]   SIGKILL radosgw only (fault tests)
#   ceph-rgw.sh rgw-start [DIR]  start radosgw again on the same port
#
# DIR defaults to $ISR_CEPH_DIR, else ${TMPDIR:-/tmp}/isr-ceph-$UID.
# One ceph-mon, one ceph-osd on memstore (RAM only, nothing survives stop),
# pool size 1, auth none, no systemd; radosgw (beast) on 127.0.0.1:<free port>.
# Two S3 users ("isr-test" and "isr-test2") with keys generated at start, and
# one bucket owned by the first. With openssl, radosgw also serves HTTPS on a
# second port with a self-signed certificate for 127.0.0.1 (its PEM is
# ISR_TEST_S3_CA_BUNDLE). Logs stay in DIR/log for debugging.
#
# Exit codes: 0 ok, 77 Ceph binaries missing, 1 anything else.
set -euo pipefail

cmd=${1:-}
dir=${2:-${ISR_CEPH_DIR:-${TMPDIR:-/tmp}/isr-ceph-$(id -u)}}
bucket=isr-test
# radosgw's listen address (the benchmarks run Ceph in a network namespace
# and reach radosgw over a shaped link) and the in-memory OSD's size.
rgw_addr=${ISR_CEPH_RGW_ADDR:-127.0.0.1}
memstore_bytes=${ISR_CEPH_MEMSTORE_BYTES:-1073741824}
# beast's tcp_nodelay (see start_rgw); 0 reproduces a radosgw deployed
# without it, for the latency benchmark.
rgw_nodelay=${ISR_CEPH_RGW_TCP_NODELAY:-1}
user1=isr-test
user2=isr-test2

die() {
    echo "ceph-rgw: $*" >&2
    exit 1
}

need_binaries() {
    local p
    for p in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool; do
        if ! command -v "$p" >/dev/null 2>&1; then
            echo "ceph-rgw: $p not installed (apt-get install ceph-mon ceph-osd radosgw ceph-common)" >&2
            exit 77
        fi
    done
}

conf() { echo "$dir/ceph.conf"; }
cephc() { ceph --conf "$(conf)" --connect-timeout 20 "$@"; }

free_port() {
    # Ask the kernel for a free ephemeral port on loopback.
    python3 - <<'EOF' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

pid_alive() {
    local f=$1
    [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

rgw_up() {
    [[ -f $dir/rgw.port ]] || return 1
    curl -s -o /dev/null --max-time 2 "http://$rgw_addr:$(cat "$dir/rgw.port")/" 2>/dev/null
}

wait_for() {
    # wait_for <seconds> <what> <command...>
    local limit=$1 what=$2
    shift 2
    local i
    for ((i = 0; i < limit * 10; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "ceph-rgw: timed out waiting for $what; logs in $dir/log" >&2
    tail -n 30 "$dir"/log/*.log >&2 2>/dev/null || true
    return 1
}

start_rgw() {
    local port frontends
    port=$(cat "$dir/rgw.port")
    # tcp_nodelay=1: beast writes a response's headers and its body with two
    # send()s and, without it, explicitly turns Nagle on; the body then waits
    # for the client's delayed ACK of the headers (40 ms on Linux) on every
    # request of a reused connection: 22 GETs a second instead of ~650.
    frontends="beast endpoint=$rgw_addr:$port"
    [[ $rgw_nodelay == 0 ]] || frontends+=" tcp_nodelay=1"
    if [[ -f $dir/rgw.tlsport ]]; then
        frontends+=" ssl_endpoint=127.0.0.1:$(cat "$dir/rgw.tlsport")"
        frontends+=" ssl_certificate=$dir/tls/cert.pem ssl_private_key=$dir/tls/key.pem"
    fi
    radosgw --conf "$(conf)" -n client.rgw.a --pid-file "$dir/run/rgw.pid" \
        --rgw-frontends "$frontends" >>"$dir/log/rgw.out" 2>&1 ||
        die "radosgw failed to start: $(cat "$dir/log/rgw.out")"
    wait_for 60 "radosgw on $rgw_addr:$port" rgw_up
}

do_start() {
    need_binaries
    if pid_alive "$dir/run/mon.pid" && pid_alive "$dir/run/osd.pid" && pid_alive "$dir/run/rgw.pid" && rgw_up &&
        [[ -f $dir/keys.env ]]; then
        echo "ceph-rgw: already running on port $(cat "$dir/rgw.port") in $dir" >&2
        cat "$dir/rgw.port"
        return 0
    fi
    # Half-started or stale: start over from nothing (memstore keeps no data anyway).
    do_stop_quiet
    mkdir -p "$dir"/{mon,osd,run,log,rgw}
    local fsid port monport
    fsid=$(cat /proc/sys/kernel/random/uuid)
    port=$(free_port)
    monport=$(free_port)
    while [[ $monport == "$port" ]]; do monport=$(free_port); done
    echo "$port" >"$dir/rgw.port"
    # A self-signed certificate for 127.0.0.1, for the TLS tests (optional).
    if command -v openssl >/dev/null 2>&1; then
        mkdir -p "$dir/tls"
        if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
            -addext "subjectAltName=IP:127.0.0.1" -keyout "$dir/tls/key.pem" \
            -out "$dir/tls/cert.pem" >"$dir/log/openssl.out" 2>&1; then
            local tlsport
            tlsport=$(free_port)
            while [[ $tlsport == "$port" || $tlsport == "$monport" ]]; do tlsport=$(free_port); done
            echo "$tlsport" >"$dir/rgw.tlsport"
        fi
    fi

    cat >"$(conf)" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$monport
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 1
mon data avail crit = 0
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 1
osd pool default pgp num = 1
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$type.pid
log to stderr = false
err to stderr = true
ms bind ipv6 = false
# With auth none no session key exists, so "secure" mode cannot work; daemons
# such as radosgw default to secure-only towards the mon.
ms mon client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms client mode = crc
ms cluster mode = crc
ms service mode = crc
client mount timeout = 30
ms bind ipv4 = true

[mon]
mon data = $dir/mon
mon cluster log file = $dir/log/cluster.log
# radosgw creates its pools one by one at start-up (and two more with the
# first bucket); each is a map change. The default 1 s batching makes that
# the bulk of the start-up time.
paxos propose interval = 0.05
paxos min wait = 0.01

[osd]
osd data = $dir/osd
osd objectstore = memstore
memstore device bytes = $memstore_bytes
osd journal size = 0
osd max object name len = 460
osd max object namespace len = 64
osd op num shards = 1
osd op num threads per shard = 2
osd memory target = 536870912
bluestore cache autotune = false

[client]
keyring = $dir/keyring

[client.rgw.a]
rgw frontends = beast endpoint=$rgw_addr:$port
rgw data = $dir/rgw
rgw dns name = localhost
rgw thread pool size = 64
rgw enable usage log = false
rgw enable ops log = false
EOF
    # Auth is off, but the tools still want a keyring file to exist.
    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$monport]" "$dir/monmap" >/dev/null
    ceph-mon --conf "$(conf)" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" \
        >"$dir/log/mkfs-mon.out" 2>&1 || die "ceph-mon --mkfs failed: $(cat "$dir/log/mkfs-mon.out")"
    ceph-mon --conf "$(conf)" -i a --pid-file "$dir/run/mon.pid" >"$dir/log/mon.out" 2>&1 ||
        die "ceph-mon failed to start: $(cat "$dir/log/mon.out")"
    wait_for 30 "ceph-mon" cephc mon stat

    local osdid
    osdid=$(cephc osd create) || die "ceph osd create failed"
    [[ $osdid == 0 ]] || die "unexpected osd id $osdid"
    ceph-osd --conf "$(conf)" -i 0 --mkfs >"$dir/log/mkfs-osd.out" 2>&1 ||
        die "ceph-osd --mkfs failed: $(cat "$dir/log/mkfs-osd.out")"
    ceph-osd --conf "$(conf)" -i 0 --pid-file "$dir/run/osd.pid" >"$dir/log/osd.out" 2>&1 ||
        die "ceph-osd failed to start: $(cat "$dir/log/osd.out")"
    wait_for 30 "osd.0 up" bash -c "ceph --conf '$(conf)' osd dump 2>/dev/null | grep -q '^osd.0 up'"

    start_rgw

    # Fixed-for-this-cluster keys: generated once per start, kept in keys.env.
    local ak1 sk1 ak2 sk2
    ak1=$(head -c 10 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
    sk1=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
    ak2=$(head -c 10 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
    sk2=$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
    radosgw-admin --conf "$(conf)" -n client.rgw.a user create --uid="$user1" --display-name="isr test" \
        --access-key="$ak1" --secret-key="$sk1" >"$dir/log/user1.out" 2>&1 ||
        die "radosgw-admin user create failed: $(cat "$dir/log/user1.out")"
    radosgw-admin --conf "$(conf)" -n client.rgw.a user create --uid="$user2" --display-name="isr test 2" \
        --access-key="$ak2" --secret-key="$sk2" >"$dir/log/user2.out" 2>&1 ||
        die "radosgw-admin user create failed: $(cat "$dir/log/user2.out")"
    cat >"$dir/keys.env.tmp" <<EOF
export ISR_TEST_S3_ENDPOINT=http://$rgw_addr:$port
export ISR_TEST_S3_BUCKET=$bucket
export ISR_TEST_S3_REGION=us-east-1
export ISR_TEST_S3_ACCESS_KEY=$ak1
export ISR_TEST_S3_SECRET_KEY=$sk1
export ISR_TEST_S3_ACCESS_KEY2=$ak2
export ISR_TEST_S3_SECRET_KEY2=$sk2
export ISR_TEST_S3_CEPH_DIR=$dir
EOF
    if [[ -f $dir/rgw.tlsport ]]; then
        echo "export ISR_TEST_S3_TLS_ENDPOINT=https://127.0.0.1:$(cat "$dir/rgw.tlsport")" >>"$dir/keys.env.tmp"
        echo "export ISR_TEST_S3_CA_BUNDLE=$dir/tls/cert.pem" >>"$dir/keys.env.tmp"
    fi
    # The bucket, created by user 1 with a plain signed PUT (curl does SigV4).
    local code
    code=$(curl -s -o "$dir/log/mkbucket.out" -w '%{http_code}' -X PUT \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ak1:$sk1" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "http://$rgw_addr:$port/$bucket")
    [[ $code == 200 ]] || die "create bucket: HTTP $code: $(cat "$dir/log/mkbucket.out")"
    mv "$dir/keys.env.tmp" "$dir/keys.env"
    echo "ceph-rgw: radosgw up on $rgw_addr:$port in $dir" >&2
    echo "$port"
}

kill_pidfile() {
    local f=$1 sig=${2:-TERM}
    if [[ -f $f ]]; then
        local pid
        pid=$(cat "$f" 2>/dev/null)
        # Only our own daemons: the pid file lives in our directory and the
        # process must still be a ceph daemon using our config.
        if [[ -n $pid ]] && grep -q -- "$dir" "/proc/$pid/cmdline" 2>/dev/null; then
            kill -CONT "$pid" 2>/dev/null || true
            kill "-$sig" "$pid" 2>/dev/null || true
        fi
    fi
}

do_stop_quiet() {
    [[ -d $dir ]] || return 0
    local f
    for f in rgw osd mon; do kill_pidfile "$dir/run/$f.pid" TERM; done
    local i
    for ((i = 0; i < 50; i++)); do
        local alive=0
        for f in rgw osd mon; do
            if grep -q -- "$dir" "/proc/$(cat "$dir/run/$f.pid" 2>/dev/null)/cmdline" 2>/dev/null; then
                alive=1
            fi
        done
        ((alive)) || break
        sleep 0.1
    done
    for f in rgw osd mon; do kill_pidfile "$dir/run/$f.pid" KILL; done
    rm -rf "${dir:?}"/{mon,osd,run,rgw,tls,keyring,monmap,ceph.conf,keys.env,keys.env.tmp,rgw.port,rgw.tlsport}
}

do_stop() {
    do_stop_quiet
    rm -rf "${dir:?}"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
env)
    [[ -f $dir/keys.env ]] || die "not running in $dir (run: $0 start)"
    cat "$dir/keys.env"
    ;;
status) rgw_up ;;
rgw-kill)
    kill_pidfile "$dir/run/rgw.pid" KILL
    for ((i = 0; i < 50; i++)); do rgw_up || break; sleep 0.1; done
    ;;
rgw-start)
    [[ -f $dir/ceph.conf ]] || die "no cluster in $dir"
    pid_alive "$dir/run/rgw.pid" && rgw_up || start_rgw
    ;;
*)
    echo "usage: $0 start|stop|env|status|rgw-kill|rgw-start [DIR]" >&2
    exit 2
    ;;
esac
