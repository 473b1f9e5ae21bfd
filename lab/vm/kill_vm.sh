#!/usr/bin/env bash
# Hard-stop a lab VM: kill -9 of its qemu process, as a power cut would.
#
#   lab/vm/kill_vm.sh NAME STATE_DIR [--keep-disk]
#
# Prints the wall-clock time of the kill (seconds since the epoch, with
# fractions) so a caller can measure a takeover from that instant.  Removes the
# VM's tap and, unless --keep-disk, its overlay.
set -euo pipefail
name=$1 state=$2 keep=${3:-}
NETNS=${HAMQ_VM_NETNS:-hamq-lab}
pidfile=$state/$name.pid
if [[ -f $pidfile ]]; then
    pid=$(cat "$pidfile")
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == qemu-system-* ]]; then
        date +%s.%N
        kill -9 "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
    rm -f "$pidfile"
fi
ip netns exec "$NETNS" ip link del "hq-${name:0:12}" 2>/dev/null || true
[[ $keep == --keep-disk ]] || rm -f "$state/$name.qcow2"
