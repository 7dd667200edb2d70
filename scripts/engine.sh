#!/usr/bin/env bash
# Make sure a local Docker Engine answers and the offline test image exists.
# Installs Debian's docker.io and busybox-static when missing, starts dockerd
# when nothing answers on the socket, and builds drover-test/busybox:latest
# from the static busybox (no registry needed). Idempotent.
set -euo pipefail

SOCK=${DROVER_TEST_SOCKET:-/var/run/docker.sock}
LOG_DIR=${DROVER_ENGINE_LOG_DIR:-/tmp/drover-engine}
IMAGE=drover-test/busybox:latest
mkdir -p "$LOG_DIR"

say() { echo "engine.sh: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

answers() { docker -H "unix://$SOCK" version >/dev/null 2>&1; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

start_dockerd() {
  say "starting dockerd on $SOCK"
  as_root rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
  local dockerd=/usr/sbin/dockerd
  [ -x "$dockerd" ] || dockerd=$(command -v dockerd)
  as_root setsid nohup "$dockerd" -H "unix://$SOCK" >"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    answers && return 0
    sleep 0.5
  done
  say "dockerd did not answer within 60 s; its log:"
  tail -n 30 "$LOG_DIR/dockerd.log" >&2
  exit 1
}

build_image() {
  local host=$1
  if docker -H "$host" image inspect "$IMAGE" >/dev/null 2>&1; then return 0; fi
  say "building $IMAGE on $host"
  local root
  root=$(mktemp -d)
  mkdir -p "$root/bin"
  cp /bin/busybox "$root/bin/"
  for a in sh sleep nc httpd true false kill cat echo ls ps id env wget; do
    ln -s busybox "$root/bin/$a"
  done
  tar -C "$root" -c . | docker -H "$host" import -c 'CMD ["/bin/sleep","86400"]' - "$IMAGE" >/dev/null
  rm -rf "$root"
}

install_packages
answers || start_dockerd
build_image "unix://$SOCK"
say "engine ready at unix://$SOCK"
