#!/usr/bin/env bash
# Make sure a private registry can be started: Debian's `docker-registry` (distribution
# 2.8) and `htpasswd` (apache2-utils) for its basic auth, plus openssl for a test CA. The
# tests start their own registries on loopback (tests/support/registry.rs). Prints the
# registry binary's path. Idempotent.
set -euo pipefail

say() { echo "registry.sh: $*" >&2; }

# Several test processes may call this at once: one installs, the others wait.
LOCK=${DROVER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/drover-tools}
mkdir -p "$LOCK"
exec 9>"$LOCK/.registry.lock"
flock 9

missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
  }
fi
# The package starts a system registry on :5000; the tests run their own.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
pkill -f '^/usr/bin/docker-registry serve /etc/docker/registry/config.yml' 2>/dev/null || true
command -v docker-registry
