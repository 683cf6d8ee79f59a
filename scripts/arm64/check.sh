#!/usr/bin/env bash
# `make arm64-check`: the device side on an arm64 Debian bookworm userland (the base of Raspberry Pi OS
# 64-bit) through qemu-user: build/cache the rootfs, make the artifacts and x86 references on this host,
# copy the checkout in, run scripts/arm64/device_check.py there. Emulated: correctness and packaging, not speed.
#   ARM64_CACHE  cache folder (default /var/cache/edge_sdk-arm64: rootfs/, work/, report.json)
#   PY           the host python with the [convert,zoo] extras (default .venv/bin/python)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${ARM64_CACHE:-/var/cache/edge_sdk-arm64}
ROOTFS=$CACHE/rootfs
PY=${PY:-$REPO/.venv/bin/python}
now() { date +%s; }
t0=$(now)

"$REPO/scripts/arm64/rootfs.sh" "$ROOTFS"
t1=$(now)

(cd "$REPO" && nice -n 10 "$PY" scripts/arm64/host_prep.py --work "$CACHE/work")
t2=$(now)

# the checkout as it is now (tracked + untracked files git does not ignore), and the host's work folder
rm -rf "$ROOTFS/src" "$ROOTFS/check"
mkdir -p "$ROOTFS/src"
(cd "$REPO" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$ROOTFS/src"
cp -a "$CACHE/work" "$ROOTFS/check"
rc=0
"$REPO/scripts/arm64/chroot.sh" "$ROOTFS" /usr/bin/env PYTHONPATH=/src \
  /opt/edge-venv/bin/python /src/scripts/arm64/device_check.py --work /check --src /src --json /check/report.json \
  || rc=$?
t3=$(now)
cp "$ROOTFS/check/report.json" "$CACHE/report.json" 2>/dev/null || true
echo
echo "wall time: rootfs $((t1 - t0)) s, host prep $((t2 - t1)) s, arm64 device check $((t3 - t2)) s, total $((t3 - t0)) s"
echo "qemu: $(qemu-aarch64-static --version | head -1); rootfs: $ROOTFS; report: $CACHE/report.json"
exit $rc
