#!/usr/bin/env bash
# Checks of the hamq.cluster collection, as CI runs them:
#   lint    ansible-lint, production profile (.ansible-lint)
#   sanity  ansible-test sanity on the plugins, offline (SANITY_ARGS="--test pylint" narrows it)
#   build   ansible-galaxy collection build, and the tarball keeps the module_utils links working
#   units   the module and filter unit tests (plain pytest)
#   scenarios  a bare `molecule list` from the repo root (MOLECULE_GLOB unset) finds every
#           Docker scenario through extensions/molecule, without the "should migrate" warning
# Usage: tests/ansible_checks.sh [--link] [lint|sanity|build|units|scenarios ...]   (default: all)
# --link only creates .ansible/collections/ansible_collections/hamq/cluster -> the checkout,
# so that `ansible-playbook site.yml` resolves hamq.cluster.* from a checkout (ansible.cfg).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
export PATH="$VENV/bin:$PATH"
PY="$VENV/bin/python"

step() { printf '\n== %s\n' "$*"; }

link() {
    mkdir -p "$ROOT/.ansible/collections/ansible_collections/hamq"
    ln -sfn ../../../.. "$ROOT/.ansible/collections/ansible_collections/hamq/cluster"
}

lint() {
    step "ansible-lint (production profile)"
    (cd "$ROOT" && ansible-lint)
}

# ansible-test wants the collection at .../ansible_collections/hamq/cluster and resolves
# symlinks in the working directory, so it runs on a copy of the working tree's files.
sanity() {
    step "ansible-test sanity (plugins)"
    # Offline: ansible-test would download a pip bootstrap script; Python's own
    # ensurepip does the same job (see docs/collection.md).
    local pip_version cache
    pip_version=$("$PY" - <<'PYEOF'
import re, ansible_test, os
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PYEOF
)
    cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
    if [ ! -s "$cache" ]; then
        mkdir -p "$(dirname "$cache")"
        printf 'import ensurepip\nensurepip.bootstrap(upgrade=True, default_pip=True)\n' > "$cache"
    fi
    local work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    mkdir -p "$work/ansible_collections/hamq/cluster"
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -I{} sh -c 'test -e "{}" -o -L "{}" && printf "%s\0" "{}"' \
        | tar --null -T - -cf -) | tar -xf - -C "$work/ansible_collections/hamq/cluster"
    (cd "$work/ansible_collections/hamq/cluster" && git init -q && git add -A \
        && ansible-test sanity --venv --python 3.11 --color no ${SANITY_ARGS:-} \
            plugins/ tests/unit/plugins/)
}

build() {
    step "ansible-galaxy collection build"
    local out tarball
    out=$(mktemp -d)
    trap 'rm -rf "$out"' RETURN
    (cd "$ROOT" && ansible-galaxy collection build --force --output-path "$out" .)
    tarball=$(ls "$out"/hamq-cluster-*.tar.gz)
    # The module reaches hamq's lock code through module_utils links into src/;
    # installed from the tarball, they must still resolve.
    mkdir -p "$out/install"
    ANSIBLE_COLLECTIONS_PATH="$out/install" ansible-galaxy collection install --offline --no-deps --force \
        -p "$out/install" "$tarball" >/dev/null
    local installed="$out/install/ansible_collections/hamq/cluster"
    for f in hamq_lockfile.py hamq_storage_safety.py; do
        if [ ! -s "$installed/plugins/module_utils/$f" ]; then
            echo "build: plugins/module_utils/$f does not resolve in the installed collection" >&2
            return 1
        fi
    done
    PYTHONPATH="$out/install" "$PY" -c \
        'import ansible_collections.hamq.cluster.plugins.module_utils.hamq_lockfile as m; assert m.F_OFD_SETLK'
    echo "built $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB); module_utils links resolve when installed"
}

units() {
    step "unit tests of the module and the filter"
    (cd "$ROOT" && "$VENV/bin/pytest" -q -p no:cacheprovider tests/unit/plugins)
}

scenarios() {
    step "bare molecule list from the repo root"
    local out expected found
    out=$(cd "$ROOT" && env -u MOLECULE_GLOB "$VENV/bin/molecule" list -f plain 2>&1) || { echo "$out"; return 1; }
    if grep -q "should migrate" <<<"$out"; then
        echo "$out"
        echo "molecule printed its migration warning. Fix: make venv (installs lab/venv/hamq_molecule_glob.pth)" >&2
        return 1
    fi
    expected=$(cd "$ROOT/extensions/molecule" && ls -d */molecule.yml | cut -d/ -f1 | sort)
    found=$(awk 'NF >= 4 {print $4}' <<<"$out" | sort -u)
    for name in $expected; do
        grep -qx "$name" <<<"$found" || { echo "$out"; echo "scenario $name not found by a bare molecule list" >&2; return 1; }
    done
    echo "found: $(echo $expected)"
}

if [ "${1:-}" = "--link" ]; then
    link
    shift
    [ $# -eq 0 ] && exit 0
fi
link
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(lint sanity build units scenarios)
for s in "${steps[@]}"; do
    case "$s" in
        lint|sanity|build|units|scenarios) "$s" ;;
        *) echo "unknown step '$s'. Fix: use lint, sanity, build, units or scenarios" >&2; exit 2 ;;
    esac
done
echo "ansible checks passed: ${steps[*]}"
