#!/usr/bin/env bash
# Installs the system tools the interop tests and the NBD bench drive: qemu-img/qemu-io, the
# libnbd tools (nbdinfo, nbdcopy, nbdfuse), fio, FUSE 3, fuse2fs, e2fsprogs and nbdkit (the
# bench's baseline), and cmake for the C++ core tests. Idempotent and quiet: when every tool is on PATH it does nothing; otherwise
# it runs `apt-get update` once and installs the Debian packages, and fails loudly (non-zero exit,
# apt's output shown) when that does not work or a tool is still missing afterwards.
# Usage: bash scripts/install-tools.sh        (as root, or with sudo available)
set -euo pipefail

# tool on PATH -> Debian package that provides it
declare -A PACKAGE_OF=(
  [qemu-img]=qemu-utils
  [qemu-io]=qemu-utils
  [nbdinfo]=libnbd-bin
  [nbdcopy]=libnbd-bin
  [nbdfuse]=libnbd-bin
  [fio]=fio
  [fusermount3]=fuse3
  [fuse2fs]=fuse2fs
  [nbdkit]=nbdkit
  [mkfs.ext4]=e2fsprogs
  [e2fsck]=e2fsprogs
  [cmake]=cmake
)
PACKAGES=(qemu-utils libnbd-bin fio fuse3 fuse2fs nbdkit e2fsprogs cmake)

# sbin is not on every user's PATH, but mkfs.ext4 and e2fsck live there.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing_tools() {
  local tool
  for tool in "${!PACKAGE_OF[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || printf '%s\n' "$tool"
  done | sort
}

missing="$(missing_tools)"
if [[ -z "$missing" ]]; then
  exit 0
fi

echo "install-tools: missing: $(echo "$missing" | tr '\n' ' ')" >&2

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "install-tools: not root and no sudo: cannot install ${PACKAGES[*]}" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tools: apt-get not found; install these Debian packages by hand: ${PACKAGES[*]}" >&2
  exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update -qq >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-tools: apt-get update failed" >&2
  exit 1
fi
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-tools: apt-get install ${PACKAGES[*]} failed" >&2
  exit 1
fi

still="$(missing_tools)"
if [[ -n "$still" ]]; then
  echo "install-tools: still missing after install: $(echo "$still" | tr '\n' ' ')" >&2
  exit 1
fi
echo "install-tools: installed ${PACKAGES[*]}" >&2
