#!/usr/bin/env bash
# Pack the current Docker TLS settings into a volume, so a drover container can manage a
# remote engine over TLS without the Docker socket.
#
#   DOCKER_HOST=tcp://engine.example:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=~/.docker/prod \
#     deploy/tls-bundle.sh [--volume NAME] [--image IMAGE] [--uid UID] [--local HOST]
#
# Reads DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (default ~/.docker: ca.pem,
# cert.pem, key.pem) as the docker CLI does, and copies the three files into volume NAME
# (default drover-tls) on the engine where drover will run (--local, default
# unix:///var/run/docker.sock), owned by UID (default 65532, the image's user), key mode
# 0400, together with docker.env holding the variables drover needs. Then prints the
# `docker run` line that starts drover from it. Nothing but the docker CLI and tar is
# needed; IMAGE (default drover:local) is only used to create a stopped helper container.
set -euo pipefail

volume=drover-tls
image=drover:local
uid=65532
local_host=unix:///var/run/docker.sock
while [ $# -gt 0 ]; do
  case $1 in
    --volume) volume=${2:?}; shift 2 ;;
    --image) image=${2:?}; shift 2 ;;
    --uid) uid=${2:?}; shift 2 ;;
    --local) local_host=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tls-bundle.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "tls-bundle.sh: $*" >&2; exit 1; }
host=${DOCKER_HOST:-}
case $host in
  tcp://*|https://*) ;;
  "") die "DOCKER_HOST is not set: point it at the remote engine (tcp://HOST:2376)" ;;
  *) die "DOCKER_HOST=$host is not a TCP address; a TLS bundle is for remote engines" ;;
esac
[ -n "${DOCKER_TLS_VERIFY:-}" ] || die "DOCKER_TLS_VERIFY is not set: drover only talks TLS to remote engines here"
certs=${DOCKER_CERT_PATH:-${HOME:-}/.docker}
for f in ca.pem cert.pem key.pem; do
  [ -r "$certs/$f" ] || die "$certs/$f is missing or unreadable (DOCKER_CERT_PATH=$certs)"
done

local_docker() {
  env -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT DOCKER_HOST="$local_host" docker "$@"
}

stage=$(mktemp -d)
helper=
cleanup() {
  rm -rf "$stage"
  [ -z "$helper" ] || local_docker rm -f "$helper" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cp "$certs/ca.pem" "$certs/cert.pem" "$certs/key.pem" "$stage/"
cat >"$stage/docker.env" <<ENV
DOCKER_HOST=$host
DOCKER_TLS_VERIFY=1
DOCKER_CERT_PATH=/certs
ENV
chmod 0444 "$stage/ca.pem" "$stage/cert.pem" "$stage/docker.env"
chmod 0400 "$stage/key.pem"

local_docker volume create "$volume" >/dev/null
# A created (never started) container gives docker cp a way into the volume.
helper=$(local_docker container create -v "$volume:/certs" "$image" version)
# From a tar stream, the engine keeps the owners written in it (no `cp -a`: that looks the
# image's numeric user up in the host's user database and fails).
tar -C "$stage" --owner="$uid" --group="$uid" --numeric-owner -cf - . |
  local_docker cp - "$helper:/certs"

cat <<EOF2
Volume $volume on $local_host holds ca.pem, cert.pem and key.pem (owner $uid) for $host,
and docker.env recording the settings. Start drover from it, with the project's config
directory (compose.yml, scale.yml) mounted at /config:

  docker run -d --name drover --restart unless-stopped --read-only \\
    -e DOCKER_HOST=$host -e DOCKER_TLS_VERIFY=1 -e DOCKER_CERT_PATH=/certs \\
    -v $volume:/certs:ro -v "\$PWD/app:/config:ro" \\
    $image run -p app
EOF2
