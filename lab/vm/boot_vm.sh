#!/usr/bin/env bash
# Boot one lab VM under qemu TCG inside the lab's network namespace.
#
#   lab/vm/boot_vm.sh NAME ADDRESS/PREFIX STATE_DIR [SHARED_RAW]
#
# The VM gets a fresh qcow2 overlay on the cached base image (so every run
# starts clean), its hostname and address on the kernel command line, a tap
# on the namespace's bridge, and, with SHARED_RAW, that raw file as a second
# disk shared with other VMs (/dev/disk/by-id/virtio-labshared, for GFS2).
# qemu daemonizes; its pid is in STATE_DIR/NAME.pid, the console in NAME.console.
#
# A reboot inside the guest resets the VM with the same overlay, kernel and
# command line (the gfs2 scenario reboots a node), so there is no -no-reboot.
#
# Why TCG: KVM hangs on this host (broken nested virtualisation).  nice 10
# keeps the emulation from starving other work on a small machine.
set -euo pipefail
name=$1 address=$2 state=$3 shared=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
cache=${HAMQ_VM_CACHE:-$here/../../.lab/vm}
NETNS=${HAMQ_VM_NETNS:-hamq-lab}
BRIDGE=${HAMQ_VM_BRIDGE:-hamqbr0}
MEMORY=${HAMQ_VM_MEMORY:-1024}

for f in base.raw vmlinuz initrd.img; do
    [[ -f $cache/$f ]] || { echo "boot_vm: $cache/$f is missing. Fix: run lab/vm/build_image.sh" >&2; exit 2; }
done
command -v qemu-system-x86_64 >/dev/null || {
    echo "boot_vm: qemu-system-x86_64 is missing. Fix: run lab/vm/prerequisites.sh" >&2; exit 2; }
ip netns list | grep -qw "^$NETNS" || { echo "boot_vm: no namespace $NETNS. Fix: lab/vm/netns.sh up" >&2; exit 2; }
mkdir -p "$state"
state=$(cd "$state" && pwd)
cache=$(cd "$cache" && pwd)

if [[ -f $state/$name.pid ]] && kill -0 "$(cat "$state/$name.pid")" 2>/dev/null; then
    echo "boot_vm: $name is already running (pid $(cat "$state/$name.pid"))"
    exit 0
fi

# Tap names are limited to 15 characters.
tap="hq-${name:0:12}"
ip netns exec "$NETNS" ip link del "$tap" 2>/dev/null || true
ip netns exec "$NETNS" ip tuntap add dev "$tap" mode tap
ip netns exec "$NETNS" ip link set "$tap" master "$BRIDGE" up

# A MAC from the address's last two octets keeps every VM on the bridge distinct.
IFS=./ read -r _ _ o3 o4 _ <<<"$address"
mac=$(printf '52:54:00:a7:%02x:%02x' "$o3" "$o4")

rm -f "$state/$name.qcow2"
qemu-img create -q -f qcow2 -F raw -b "$cache/base.raw" "$state/$name.qcow2"

extra=()
if [[ -n $shared ]]; then
    # file.locking=off + share-rw=on: two qemu processes open one raw file,
    # cache=none: no host page cache between the two guests' writes.
    extra+=(-drive "file=$shared,format=raw,if=none,id=sd,file.locking=off,cache=none"
            -device "virtio-blk-pci,drive=sd,share-rw=on,serial=labshared")
fi

: >"$state/$name.console"
ip netns exec "$NETNS" nice -n 10 qemu-system-x86_64 \
    -name "$name" -accel tcg,tb-size=256 -cpu max -smp 1 -m "$MEMORY" \
    -nodefaults -display none \
    -serial "file:$state/$name.console" \
    -kernel "$cache/vmlinuz" -initrd "$cache/initrd.img" \
    -append "root=LABEL=labroot ro console=ttyS0 net.ifnames=0 modprobe.blacklist=floppy quiet lab.hostname=$name lab.ip=$address" \
    -drive "file=$state/$name.qcow2,format=qcow2,if=virtio,cache=unsafe" \
    -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" \
    -device "virtio-net-pci,netdev=n0,mac=$mac" \
    -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0 \
    "${extra[@]}" \
    -daemonize -pidfile "$state/$name.pid"
echo "boot_vm: $name ($address) pid $(cat "$state/$name.pid")"
