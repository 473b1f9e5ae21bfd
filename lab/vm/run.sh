#!/usr/bin/env bash
# Run a VM-lab molecule scenario inside the lab's network namespace, and tear
# the namespace (and any VM left in it) down afterwards, whatever happened.
#
#   lab/vm/run.sh nfs4 [molecule command, default: test]
#   lab/vm/run.sh gfs2 converge
#
# The scenarios live at extensions/molecule/<name>/vm/ so that
# `molecule test --all` (MOLECULE_GLOB=extensions/molecule/*/molecule.yml)
# never picks them up: they take many minutes under emulation.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
scenario=${1:?usage: lab/vm/run.sh nfs4|gfs2 [molecule command]}
command=${2:-test}
[[ -f $repo/extensions/molecule/$scenario/vm/molecule.yml ]] || {
    echo "run.sh: no VM scenario '$scenario'. Fix: use nfs4 or gfs2" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "run.sh: the lab needs root (netns, taps). Fix: run as root" >&2; exit 2; }

export PATH=$repo/.venv/bin:$PATH
export VIRTUAL_ENV=$repo/.venv
export MOLECULE_GLOB='extensions/molecule/*/vm/molecule.yml'
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0} PY_COLORS=${PY_COLORS:-0}

"$here/prerequisites.sh"
"$here/build_image.sh"

cleanup() {
    # `molecule destroy` stops the VMs; this catches anything a failed run left.
    [[ $command == test || $command == destroy ]] && "$here/netns.sh" down
    return 0
}
trap cleanup EXIT
"$here/netns.sh" up
cd "$repo"
start=$(date +%s)
rc=0
ip netns exec "${HAMQ_VM_NETNS:-hamq-lab}" molecule "$command" -s "$scenario/vm" || rc=$?
echo "run.sh: molecule $command -s $scenario/vm: exit $rc after $(( $(date +%s) - start )) s"
exit $rc
