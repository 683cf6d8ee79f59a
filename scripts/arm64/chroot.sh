#!/usr/bin/env bash
# Run a command in the arm64 rootfs with /proc and /dev mounted; unmounts on exit.
#   scripts/arm64/chroot.sh ROOTFS CMD [ARGS...]
# /sys is left out unless ARM64_MOUNT_SYS=1: with the x86 host's /sys/devices/system/cpu visible next to the
# host's /proc/cpuinfo, `import onnxruntime` (1.32, aarch64) segfaults in its cpuinfo library under
# qemu-user; without /sys it warns that cpuinfo failed to initialise and runs.
set -euo pipefail
ROOTFS=$1; shift
mounted=()
cleanup() { for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
mounts="proc dev dev/pts"
[ "${ARM64_MOUNT_SYS:-0}" = 1 ] && mounts="proc sys dev dev/pts"
for m in $mounts; do
  mkdir -p "$ROOTFS/$m"
  mountpoint -q "$ROOTFS/$m" && continue
  case $m in
    proc) mount -t proc proc "$ROOTFS/proc" ;;
    sys) mount --rbind /sys "$ROOTFS/sys" && mount --make-rslave "$ROOTFS/sys" ;;
    dev) mount --bind /dev "$ROOTFS/dev" ;;
    dev/pts) mount --bind /dev/pts "$ROOTFS/dev/pts" ;;
  esac
  mounted+=("$ROOTFS/$m")
done
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
nice -n 10 chroot "$ROOTFS" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/opt/edge-venv/bin:/usr/local/bin:/usr/bin:/bin "$@"
