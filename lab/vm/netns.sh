#!/usr/bin/env bash
# The VM lab's private network: a network namespace with one bridge and no
# link to the outside.  The VMs' taps join the bridge; the controller side
# (Ansible, checks, clients) runs inside the namespace with `ip netns exec`.
#
#   lab/vm/netns.sh up      create namespace + bridge (idempotent)
#   lab/vm/netns.sh down    stop every lab VM, delete the namespace
#   lab/vm/netns.sh inside  exit 0 if this process runs inside the namespace
set -euo pipefail
NETNS=${HAMQ_VM_NETNS:-hamq-lab}
BRIDGE=${HAMQ_VM_BRIDGE:-hamqbr0}
# Private addresses that exist only inside the namespace.
NET_PREFIX=${HAMQ_VM_NET:-10.231.7}
here=$(cd "$(dirname "$0")" && pwd)

in_ns() { ip netns exec "$NETNS" "$@"; }

case "${1:-}" in
    up)
        ip netns list | grep -qw "^$NETNS" || ip netns add "$NETNS"
        in_ns ip link set lo up
        in_ns ip link show "$BRIDGE" >/dev/null 2>&1 || in_ns ip link add "$BRIDGE" type bridge
        in_ns ip addr replace "$NET_PREFIX.1/24" dev "$BRIDGE"
        in_ns ip link set "$BRIDGE" up
        ;;
    down)
        # Every VM of the lab runs inside the namespace: stop them by pid first.
        if ip netns list | grep -qw "^$NETNS"; then
            for pid in $(ip netns pids "$NETNS" 2>/dev/null); do
                if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == qemu-system-* ]]; then
                    kill -9 "$pid" 2>/dev/null || true
                fi
            done
            ip netns del "$NETNS"
        fi
        ;;
    inside)
        [[ "$(ip netns identify $$ 2>/dev/null)" == "$NETNS" ]]
        ;;
    *)
        echo "usage: $0 up|down|inside" >&2
        exit 2
        ;;
esac
