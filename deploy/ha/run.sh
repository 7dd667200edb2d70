#!/usr/bin/env bash
# Start this host's drover for the HA example: one drover container per host, all with the
# same compose.yml and every node's TLS bundle.
#
#   deploy/ha/run.sh APP_DIR TLS_DIR [IMAGE]
#
# APP_DIR holds compose.yml (this directory's, or yours) and is mounted read-only at
# /config; TLS_DIR holds one directory per node (node-a/, node-b/, node-c/, each with
# ca.pem, cert.pem, key.pem) and is mounted read-only at /tls. The files must be readable
# by uid 65532 (the image's user): e.g. `chown -R 65532 TLS_DIR && chmod -R go-rwx TLS_DIR`.
# The container uses the host's network (it dials every node's TCP address, and its
# /status listens on the host's 127.0.0.1:9477), restarts with the host's engine, and
# reaches no engine through a socket. IMAGE defaults to drover (deploy/build-image.sh).
#
# Then, on any host: docker exec drover /drover status
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,/^set -e/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }
app=$(cd "$1" && pwd)
tls=$(cd "$2" && pwd)
image=${3:-drover}
[ -r "$app/compose.yml" ] || { echo "run.sh: no compose.yml in $app" >&2; exit 1; }

docker rm -f drover >/dev/null 2>&1 || true
exec docker run -d --name drover --restart always --network host \
  --read-only --cap-drop ALL --security-opt no-new-privileges \
  -v "$app:/config:ro" -v "$tls:/tls:ro" -e DROVER_TLS_DIR=/tls \
  "$image" run -p app
