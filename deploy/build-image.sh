#!/usr/bin/env bash
# Build the drover runtime image without registry access: the same runtime stage as the
# root Dockerfile (deploy/Dockerfile.runtime), fed with a static binary built on this host
# (deploy/static-build.sh) instead of in the rust builder image.
#
#   deploy/build-image.sh [TAG] [--binary PATH]
#
# TAG defaults to drover:local. --binary uses an existing static binary instead of building
# one. The image is built on the engine the docker CLI points at (DOCKER_HOST).
set -euo pipefail
cd "$(dirname "$0")/.."

tag=drover:local
binary=
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) tag=$1; shift ;;
  esac
done

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
if [ -n "$binary" ]; then
  cp "$binary" "$ctx/drover"
else
  deploy/static-build.sh "$ctx/drover"
fi
# The legacy builder: no BuildKit or buildx needed, and nothing to pull for FROM scratch.
DOCKER_BUILDKIT=0 docker build -q -f deploy/Dockerfile.runtime -t "$tag" "$ctx" >/dev/null
echo "build-image.sh: $tag: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}')" >&2
