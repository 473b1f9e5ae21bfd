#!/usr/bin/env bash
# Build the VM lab's Debian bookworm disk image, or reuse the cached one.
#
#   lab/vm/build_image.sh [CACHE_DIR]      (default: .lab/vm)
#
# Why a real kernel: this host's kernel has no nfs, nfsd, gfs2 or dlm and cannot
# load modules, so only a VM can show an NFSv4 lease freeing a dead host's lock
# or dlm's cluster-wide locks.  The image is built with mmdebstrap (Debian's
# archive only, no registry) and written straight into an ext4 file with
# `mkfs.ext4 -d`, so no loop device is needed.  The VMs boot its kernel and
# initrd directly (lab/vm/boot_vm.sh).
#
# Cache: the image is rebuilt only when a build input changes (this script,
# the package list, the guest files under lab/vm/guest/ or the ssh key); the
# hash of those inputs is stored next to the image.
#
# Packages are preinstalled (a TCG-emulated VM spends minutes on apt), but the
# roles still declare them; the services they configure (nfs-server, corosync,
# dlm) are disabled here so that only the roles turn them on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${HAMQ_VM_CACHE:-$here/../../.lab/vm}}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

packages=(systemd-sysv udev dbus openssh-server python3 python3-venv python3-apt
          nfs-kernel-server nfs-common linux-image-amd64 initramfs-tools zstd
          corosync dlm-controld gfs2-utils iproute2 procps kmod util-linux nftables)

need() {
    command -v "$1" >/dev/null || {
        echo "build_image: '$1' is missing. Fix: run lab/vm/prerequisites.sh (apt-get install $2)" >&2
        exit 2
    }
}
need mmdebstrap mmdebstrap
need mkfs.ext4 e2fsprogs
need ssh-keygen openssh-client
[[ $(id -u) == 0 ]] || { echo "build_image: mmdebstrap --mode=root needs root. Fix: run as root" >&2; exit 2; }

# The lab's ssh key: made once, baked into the image (so it is a build input).
[[ -f $cache/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C hamq-vm-lab -f "$cache/id_ed25519"

inputs=$( { cat "$0"; printf '%s\n' "${packages[@]}"; find "$here/guest" -type f | sort | xargs cat;
            cat "$cache/id_ed25519.pub"; } | sha256sum | cut -d' ' -f1)
if [[ -f $cache/base.raw && -f $cache/vmlinuz && -f $cache/initrd.img \
      && "$(cat "$cache/inputs.sha256" 2>/dev/null)" == "$inputs" ]]; then
    echo "build_image: cached image is current ($cache/base.raw)"
    exit 0
fi

start=$(date +%s)
root=$(mktemp -d "$cache/rootfs.XXXXXX")
trap 'rm -rf "$root" "$cache/base.raw.tmp"' EXIT
rm -f "$cache/inputs.sha256"

echo "build_image: mmdebstrap bookworm into $root"
mmdebstrap --mode=root --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook="cp -a '$here/guest/.' \"\$1/\"" \
    --customize-hook="mkdir -p \"\$1/root/.ssh\" && install -m 0600 '$cache/id_ed25519.pub' \"\$1/root/.ssh/authorized_keys\"" \
    --customize-hook='chroot "$1" systemctl enable lab-identity.service' \
    --customize-hook='chroot "$1" systemctl disable nfs-server.service corosync.service dlm.service nftables.service e2scrub_reap.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true' \
    --customize-hook='chroot "$1" systemctl mask systemd-timesyncd.service 2>/dev/null || true' \
    --customize-hook='echo "LABEL=labroot / ext4 rw,errors=remount-ro 0 1" > "$1/etc/fstab"' \
    --customize-hook='echo lab > "$1/etc/hostname"; : > "$1/etc/machine-id"' \
    bookworm "$root"

cp -L "$root/vmlinuz" "$cache/vmlinuz.tmp" && mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
cp -L "$root/initrd.img" "$cache/initrd.img.tmp" && mv "$cache/initrd.img.tmp" "$cache/initrd.img"

echo "build_image: mkfs.ext4 -d (no loop device)"
rm -f "$cache/base.raw.tmp"
mkfs.ext4 -q -L labroot -d "$root" "$cache/base.raw.tmp" 3G
mv "$cache/base.raw.tmp" "$cache/base.raw"
echo "$inputs" >"$cache/inputs.sha256"
echo "build_image: built in $(( $(date +%s) - start )) s, $(du -sh --apparent-size "$root" | cut -f1) of files"
