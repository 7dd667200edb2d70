#!/usr/bin/env bash
# Build drover as one static executable (no shared libraries, runs on an empty image):
# the host's target triple with the C runtime linked in (crt-static), release profile.
#
#   deploy/static-build.sh OUT      build and copy the binary to OUT
#
# The image build (Dockerfile) and the offline image build (deploy/build-image.sh) both use
# this script, so both images carry the same kind of binary. Needs a Rust toolchain and a
# C toolchain with static glibc (Debian: gcc, libc6-dev); missing Debian packages are
# installed when running as root.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:?usage: deploy/static-build.sh OUT}
say() { echo "static-build.sh: $*" >&2; }

if [ "$(cc -print-file-name=libc.a 2>/dev/null)" = libc.a ] && command -v apt-get >/dev/null &&
  [ "$(id -u)" -eq 0 ]; then
  say "installing libc6-dev (the static C library)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libc6-dev >/dev/null
fi

target=$(rustc -vV | sed -n 's/^host: //p')
# With an explicit --target, RUSTFLAGS apply to drover and its libraries only, not to
# build scripts and proc macros (which cannot be static).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" --bin drover
bin="${CARGO_TARGET_DIR:-target}/$target/release/drover"

# A static executable has no program interpreter (readelf comes with the C toolchain).
if command -v readelf >/dev/null && readelf -l "$bin" | grep -q 'program interpreter'; then
  say "$bin is dynamically linked; refusing to put it on an empty image"
  exit 1
fi
mkdir -p "$(dirname "$out")"
cp "$bin" "$out"
say "$out: $(du -h "$out" | cut -f1), static, $target"
