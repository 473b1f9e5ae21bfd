#!/usr/bin/env bash
# The machine prerequisites of `make lab`, `make test` and .ci/run, in one place:
# Python 3.11 with venv, make, mmdebstrap (lab images), Docker (engine and a
# daemon that answers).  Installs only what is missing (apt, Debian bookworm),
# so a second run costs a few `command -v` calls and one `docker info`.
#
#   .ci/prerequisites.sh            install what is missing, start dockerd if none answers
#   .ci/prerequisites.sh --check    only report what is missing (exit 1 if anything is)
#   . .ci/prerequisites.sh --lib    define the functions (find_python, ...) and return
#
# Not root and something missing: it says which packages and how to get them,
# and exits 1 (it never asks for a password).
set -euo pipefail

prereq_log() { printf '== prerequisites: %s\n' "$*"; }

# The pinned requirements are for 3.11; the interpreter must also have venv and ensurepip.
find_python() {
    local candidate
    for candidate in python3.11 /usr/bin/python3.11 /usr/local/bin/python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
           && "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"; return 0
        fi
    done
    return 1
}

# Debian packages for what is missing, one a line.
missing_packages() {
    find_python >/dev/null || printf '%s\n' python3 python3-venv
    command -v make >/dev/null || echo make
    command -v mmdebstrap >/dev/null || echo mmdebstrap
    command -v docker >/dev/null || echo docker.io
    # A docker CLI without the engine (e.g. a client-only install) still needs dockerd
    # unless some daemon already answers.
    if command -v docker >/dev/null && ! command -v dockerd >/dev/null \
       && ! docker info >/dev/null 2>&1; then
        echo docker.io
    fi
    return 0
}

prereq_apt_updated=0
apt_install() {
    if [[ $(id -u) != 0 ]]; then
        echo "prerequisites: missing $*; installing them needs root." >&2
        echo "Fix: sudo apt-get install --no-install-recommends $* (then run the command again), or run it as root." >&2
        return 1
    fi
    if ! command -v apt-get >/dev/null; then
        echo "prerequisites: missing $* and this is not a Debian-like system (no apt-get)." >&2
        echo "Fix: install them with the system's package manager (Debian bookworm is what the lab is tested on)." >&2
        return 1
    fi
    if [[ $prereq_apt_updated == 0 ]]; then apt-get update -qq; prereq_apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

install_prerequisites() {
    local missing
    mapfile -t missing < <(missing_packages | sort -u)
    if (( ${#missing[@]} )); then
        prereq_log "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    local python
    python="$(find_python)" || {
        echo "prerequisites: no Python 3.11 with venv after installing. Fix: install python3.11 and python3.11-venv" >&2
        return 1
    }
    prereq_log "Python $python ($("$python" --version 2>&1)), make, mmdebstrap, docker: present"
}

# A Docker daemon that answers: systemd's docker.service if there is systemd,
# else dockerd in the background with its log in .lab/dockerd.log.
ensure_docker() {
    if docker info >/dev/null 2>&1; then
        prereq_log "Docker daemon answers: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
        return 0
    fi
    if [[ $(id -u) != 0 ]]; then
        echo "prerequisites: no Docker daemon answers and starting one needs root." >&2
        echo "Fix: sudo systemctl start docker (and add yourself to group docker), or run as root." >&2
        return 1
    fi
    command -v dockerd >/dev/null || apt_install docker.io
    prereq_log "starting dockerd"
    mkdir -p .lab
    if command -v systemctl >/dev/null && systemctl start docker 2>/dev/null; then :; else
        nohup dockerd >.lab/dockerd.log 2>&1 &
    fi
    local _
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && { prereq_log "Docker daemon is up"; return 0; }
        sleep 1
    done
    echo "prerequisites: dockerd did not answer within 60 s. Fix: read .lab/dockerd.log" >&2
    tail -n 30 .lab/dockerd.log >&2 || true
    return 1
}

if [[ "${1:-}" == --lib ]]; then
    return 0 2>/dev/null || { echo "prerequisites: --lib is for sourcing: . .ci/prerequisites.sh --lib" >&2; exit 2; }
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "${1:-}" in
    --check)
        mapfile -t missing < <(missing_packages | sort -u)
        if (( ${#missing[@]} )); then echo "missing: ${missing[*]}"; exit 1; fi
        docker info >/dev/null 2>&1 || { echo "no Docker daemon answers"; exit 1; }
        echo "nothing missing" ;;
    "")
        install_prerequisites
        ensure_docker ;;
    *)
        echo "usage: .ci/prerequisites.sh [--check]" >&2; exit 2 ;;
esac
