#!/usr/bin/env bash
# Build the lab images from Debian packages: no container registry is
# reachable, so `docker pull` can never work here.
#
#   hamq-lab/base:bookworm  root filesystem from mmdebstrap, `docker import`ed
#   hamq-lab/node:bookworm  FROM the base: systemd as PID 1 (lab/docker/Dockerfile)
#
# Each image carries the hash of its build inputs as a label; an image is
# rebuilt only when it is missing or its inputs changed.  --force rebuilds.
# Prints "changed" on the last line when something was built, "ok" otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
base_tag="${HAMQ_LAB_BASE_IMAGE:-hamq-lab/base:bookworm}"
node_tag="${HAMQ_LAB_IMAGE:-hamq-lab/node:bookworm}"
suite=bookworm
packages="python3,python3-venv,python3-apt,sudo,procps,iproute2,ca-certificates,systemd,systemd-sysv,dbus"
label=org.hamq.lab.inputs
force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { printf '%s build_images: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Reuse the Debian mirror this machine's apt already uses (the only one known
# to be reachable); fall back to deb.debian.org.
find_mirror() {
    local uri
    uri="$(grep -rhoE '^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
              /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
           | grep -oE 'https?://[^[:space:]]+/debian/?' | head -n1 || true)"
    echo "${uri:-http://deb.debian.org/debian}"
}

image_label() {  # tag -> label value, empty when the image is missing
    docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null || true
}

command -v docker >/dev/null || { echo "build_images: the docker CLI is missing. Fix: apt-get install docker.io" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "build_images: no Docker daemon answers. Fix: start dockerd (systemctl start docker, or dockerd &)" >&2; exit 2; }

mirror="$(find_mirror)"
# Everything that shapes the root filesystem; its hash decides on a rebuild.
mmdebstrap_args=(
    --quiet --variant=minbase
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr   # without it perl comes in (+50 MB)
    --include="$packages"
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-include=/usr/share/locale/locale.alias'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --customize-hook='mkdir -p "$1/usr/share/man/man1"'   # some postinst scripts expect it
    --customize-hook='rm -f "$1/etc/machine-id" && touch "$1/etc/machine-id"'  # systemd makes one per container
)
base_hash="$(printf '%s\n' "$suite" "$mirror" "${mmdebstrap_args[@]}" | sha256sum | cut -c1-16)"
node_hash="$(printf '%s\n%s\n' "$base_hash" "$(sha256sum "$here/docker/Dockerfile" | cut -d' ' -f1)" | sha256sum | cut -c1-16)"
changed=0

if [[ $force == 1 || "$(image_label "$base_tag")" != "$base_hash" ]]; then
    command -v mmdebstrap >/dev/null || { echo "build_images: mmdebstrap is missing. Fix: apt-get install mmdebstrap" >&2; exit 2; }
    log "building $base_tag from $mirror ($suite) with mmdebstrap"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    started=$SECONDS
    mmdebstrap "${mmdebstrap_args[@]}" \
        "$suite" "$work/rootfs.tar" "$mirror" >"$work/mmdebstrap.log" 2>&1 \
        || { tail -n 40 "$work/mmdebstrap.log" >&2; echo "build_images: mmdebstrap failed (log above). Fix: check that $mirror is reachable" >&2; exit 1; }
    docker import --change "LABEL $label=$base_hash" --change 'CMD ["/sbin/init"]' \
        "$work/rootfs.tar" "$base_tag" >/dev/null
    rm -rf "$work"; trap - EXIT
    log "built $base_tag in $((SECONDS - started)) s"
    changed=1
else
    log "$base_tag is up to date ($base_hash)"
fi

if [[ $force == 1 || $changed == 1 || "$(image_label "$node_tag")" != "$node_hash" ]]; then
    log "building $node_tag"
    started=$SECONDS
    # Legacy builder without --pull: FROM resolves to the local tag.
    DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE=$base_tag" --label "$label=$node_hash" \
        -t "$node_tag" "$here/docker" >/dev/null 2>"${TMPDIR:-/tmp}/hamq-lab-build.$$.log" \
        || { cat "${TMPDIR:-/tmp}/hamq-lab-build.$$.log" >&2; rm -f "${TMPDIR:-/tmp}/hamq-lab-build.$$.log"; exit 1; }
    rm -f "${TMPDIR:-/tmp}/hamq-lab-build.$$.log"
    log "built $node_tag in $((SECONDS - started)) s"
    changed=1
else
    log "$node_tag is up to date ($node_hash)"
fi

[[ $changed == 1 ]] && echo changed || echo ok
