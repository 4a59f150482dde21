#!/usr/bin/env bash
# The example alert rules (packaging/prometheus) are valid and each fires on
# the series a kiosk writes, and only then: `promtool check rules` and
# `promtool test rules`.
#
# promtool ships only in Debian's `prometheus` package, whose installation
# would also set up (and on a systemd host start) a Prometheus server on the
# developer's machine; so unless promtool is already on PATH the package is
# downloaded and unpacked under the cache, never installed.
set -euo pipefail
src=${1:?usage: alert-rules.sh SOURCE_DIR}
rules=$src/packaging/prometheus

promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/isr/promtool
  promtool=$cache/usr/bin/promtool
  if [ ! -x "$promtool" ]; then
    mkdir -p "$cache"
    if ! (cd "$cache" && apt-get download prometheus >/dev/null 2>&1); then
      echo "SKIP: promtool not found and 'apt-get download prometheus' failed (no Debian archive?)"
      exit 77
    fi
    dpkg-deb -x "$cache"/prometheus_*.deb "$cache"
    rm -f "$cache"/prometheus_*.deb
  fi
fi

"$promtool" check rules "$rules/isr-kiosk-alerts.yml"
cd "$rules"
"$promtool" test rules isr-kiosk-alerts.test.yml
