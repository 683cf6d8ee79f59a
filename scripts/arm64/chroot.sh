#!/usr/bin/env bash
# Run a command in the arm64 rootfs with /proc, /dev and /sys mounted; unmounts on exit.
#   scripts/arm64/chroot.sh ROOTFS CMD [ARGS...]
set -euo pipefail
ROOTFS=$1; shift
mounted=()
cleanup() { for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
for m in proc sys dev dev/pts; do
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
