#!/usr/bin/env bash
# Install what the VM lab needs on a Debian bookworm host (root): qemu, the
# image tools.  qemu-utils is taken from bookworm itself so that it matches
# qemu-system-x86 even where a newer qemu-utils came from backports.
set -euo pipefail
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86 qemu-utils/bookworm)
command -v qemu-img >/dev/null || missing+=(qemu-utils/bookworm)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
command -v ssh >/dev/null || missing+=(openssh-client)
[[ ${#missing[@]} == 0 ]] && exit 0
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades \
    $(printf '%s\n' "${missing[@]}" | sort -u)
