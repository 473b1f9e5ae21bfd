#!/usr/bin/env bash
# Checks of the hamq.cluster collection, as CI runs them:
#   lint    ansible-lint, production profile (.ansible-lint)
#   sanity  ansible-test sanity on the plugins, offline (SANITY_ARGS="--test pylint" narrows it)
#   build   ansible-galaxy collection build + install into a temp dir, then from there (no checkout):
#           module_utils links resolve, every shipped playbook passes --syntax-check,
#           hamq.cluster.site / failover_drill / rolling_restart --syntax-check and --list-tasks,
#           the tarball holds no development link or lab playbook, one license, and every
#           collection the shipped content uses is a galaxy.yml dependency the pinned ansible meets;
#           real runs there: shared_lock probe, failover_url, the broker role's wheel build
#   clone   a copy of the working tree's files (as a fresh clone has them, no .ansible/, HOME
#           empty): ansible-playbook site.yml resolves hamq.cluster.* through ansible.cfg alone
#   argspecs  every role's argument validation accepts its own defaults and the documented
#           structured values (tests/argument_specs.yml on localhost, validation tasks only)
#   units   the module and filter unit tests (plain pytest)
#   scenarios  a bare `molecule list` from the repo root (MOLECULE_GLOB unset) finds every
#           Docker scenario through extensions/molecule, without the "should migrate" warning
# Usage: tests/ansible_checks.sh [--link] [lint|sanity|build|clone|argspecs|units|scenarios ...]   (default: all)
# --link only creates .ansible/collections/ansible_collections/hamq/cluster -> the checkout, which
# the molecule scenarios' ANSIBLE_COLLECTIONS_PATH names; ansible-playbook from a checkout does not
# need it (ansible.cfg: collections_path = ./collections, the committed link).
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

# The files a clone of the working tree would have (tracked and new, not ignored), links kept.
copy_tree() {
    mkdir -p "$1"
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -I{} sh -c 'test -e "{}" -o -L "{}" && printf "%s\0" "{}"' \
        | tar --null -T - -cf -) | tar -xf - -C "$1"
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
    copy_tree "$work/ansible_collections/hamq/cluster"
    # The copy is the collection already; the checkout's self link would be a second one.
    rm -rf "$work/ansible_collections/hamq/cluster/collections"
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
    echo "module_utils links resolve when installed"
    installed_checks "$tarball" "$out"
    echo "built $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB); installed, it works without a checkout"
}

# The installed collection on its own: no checkout, no ansible.cfg, only the install path.
installed_checks() {
    local tarball=$1 out=$2 listing
    listing=$(tar -tzf "$tarball")
    # Development-only content must stay out: the self link, the lab playbooks (they include
    # lab/tasks, which is not shipped) and the molecule scenarios (same).
    local bad
    bad=$(grep -E '^(collections|molecule|extensions|lab)(/|$)|^playbooks/lab(_destroy)?\.yml$' <<<"$listing" || true)
    if [ -n "$bad" ]; then
        echo "build: the tarball holds development-only files: $bad. Fix: add them to build_ignore in galaxy.yml" >&2
        return 1
    fi
    grep -qx LICENSE <<<"$listing" || { echo "build: no LICENSE in the tarball" >&2; return 1; }
    "$PY" - "$ROOT" "$out/install/ansible_collections/hamq/cluster" <<'PYEOF'
"""One license everywhere, and every collection the shipped content uses is a dependency."""
import json, pathlib, re, sys, tomllib
from ansible.utils.version import SemanticVersion
root, installed = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
info = json.loads((installed / "MANIFEST.json").read_text())["collection_info"]
spdx = tomllib.loads((root / "pyproject.toml").read_text())["project"]["license"]
problems = []
if info["license"] != [spdx]:
    problems.append(f"galaxy.yml license {info['license']} differs from pyproject.toml's {spdx!r}. Fix: one license in both")
if "GNU GENERAL PUBLIC LICENSE" not in (installed / "LICENSE").read_text()[:200] and spdx.startswith("GPL-3.0"):
    problems.append(f"LICENSE is not the text of {spdx}. Fix: put the license text in LICENSE")
for meta in sorted(installed.glob("roles/*/meta/main.yml")):
    m = re.search(r"^\s*license:\s*(\S+)", meta.read_text(), re.M)
    if m and m.group(1) != spdx:
        problems.append(f"{meta.relative_to(installed)} says license {m.group(1)}, not {spdx}")
used = set()
for path in installed.rglob("*.yml"):
    if "tests" in path.relative_to(installed).parts:
        continue
    used |= set(re.findall(r"\b([a-z_]+\.[a-z_]+)\.[a-z_]+\b\s*:", path.read_text()))
    used |= set(re.findall(r"\b((?:ansible\.posix|community\.[a-z_]+))\.[a-z_]+", path.read_text()))
used = {c for c in used if c.split(".")[0] in ("ansible", "community") and c not in ("ansible.builtin", "ansible.legacy")}
deps = info["dependencies"]
for name in sorted(used - set(deps)):
    problems.append(f"shipped content uses {name} but galaxy.yml does not list it. Fix: add it to dependencies")
import ansible_collections  # the collections of the pinned ansible package
base = pathlib.Path(ansible_collections.__path__[0])
for name, spec in deps.items():
    manifest = base.joinpath(*name.split("."), "MANIFEST.json")
    if not manifest.exists():
        problems.append(f"dependency {name} is not in the pinned ansible package")
        continue
    have = SemanticVersion(json.loads(manifest.read_text())["collection_info"]["version"])
    for clause in spec.split(","):
        op, ver = re.match(r"\s*(>=|<=|==|!=|<|>|)\s*(\S+)", clause).groups()
        v = SemanticVersion(ver)
        ok = {">=": have >= v, "<=": have <= v, ">": have > v, "<": have < v, "!=": have != v}.get(op, have == v)
        if not ok:
            problems.append(f"dependency {name} {spec!r}: the pinned ansible ships {have}. Fix: adjust the range")
if problems:
    sys.exit("build: " + "\n".join(problems))
print(f"license {spdx}; dependencies {deps} cover {sorted(used)} and the pinned ansible meets them")
PYEOF
    # A directory that is not a checkout, an empty ansible.cfg: only the install path helps.
    local run="$out/run"
    mkdir -p "$run/inventory"
    cat >"$run/inventory/hosts.yml" <<'YAML'
all:
  vars:
    hamq_storage_type: nfs4
    hamq_broker_name: orders
  children:
    nfs_servers:
      hosts:
        nfs1: {ansible_host: 192.0.2.10}
      vars:
        nfs_server_export_clients: [192.0.2.0/24]
    brokers:
      hosts:
        mq1: {ansible_host: 192.0.2.11}
        mq2: {ansible_host: 192.0.2.12}
      vars:
        shared_storage_nfs_server: 192.0.2.10
    clients:
      hosts:
        app1: {ansible_host: 192.0.2.20}
YAML
    : >"$run/ansible.cfg"
    local playbook
    for playbook in $(cd "$out/install/ansible_collections/hamq/cluster/playbooks" && ls ./*.yml | grep -v '\.meta\.yml$'); do
        playbook=$(basename "$playbook" .yml)
        (cd "$run" && ANSIBLE_CONFIG="$run/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$out/install" \
            ansible-playbook "hamq.cluster.$playbook" -i inventory --syntax-check) >"$run/syntax.log" 2>&1 \
            || { cat "$run/syntax.log"; echo "build: installed playbook hamq.cluster.$playbook fails --syntax-check" >&2; return 1; }
    done
    for playbook in site failover_drill rolling_restart; do
        (cd "$run" && ANSIBLE_CONFIG="$run/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$out/install" \
            ansible-playbook "hamq.cluster.$playbook" -i inventory --list-tasks) >"$run/$playbook.tasks" 2>&1 \
            || { cat "$run/$playbook.tasks"; echo "build: hamq.cluster.$playbook --list-tasks fails installed" >&2; return 1; }
    done
    # The roles' own tasks are listed, so the roles resolved inside the installed collection.
    grep -q "hamq.cluster.broker : " "$run/site.tasks" \
        || { cat "$run/site.tasks"; echo "build: site --list-tasks shows no broker role task" >&2; return 1; }
    echo "installed: every playbook passes --syntax-check; site, failover_drill, rolling_restart --list-tasks" \
         "($(grep -c ' : ' "$run/site.tasks") role tasks in site)"
    # Real runs on the controller from the installed collection: the module (through its
    # module_utils links) and the filter execute, and the broker role's wheel build finds the
    # bundled source and makes the same wheel as the checkout.
    mkdir -p "$run/share"
    (cd "$run" && ANSIBLE_CONFIG="$run/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$out/install" \
        ansible localhost -m hamq.cluster.shared_lock -a "path=$run/share action=probe" -o) >"$run/module.log" 2>&1 \
        && grep -q '"lock_available": true' "$run/module.log" \
        || { cat "$run/module.log"; echo "build: hamq.cluster.shared_lock does not run from the installed collection" >&2; return 1; }
    (cd "$run" && ANSIBLE_CONFIG="$run/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$out/install" \
        ansible -i inventory localhost -m ansible.builtin.debug \
        -a "msg={{ groups['brokers'] | hamq.cluster.failover_url(hostvars) }}" -o) >"$run/filter.log" 2>&1 \
        && grep -q 'failover:(tcp://192.0.2.11:61613,tcp://192.0.2.12:61613)' "$run/filter.log" \
        || { cat "$run/filter.log"; echo "build: hamq.cluster.failover_url does not run from the installed collection" >&2; return 1; }
    local installed="$out/install/ansible_collections/hamq/cluster" from_installed from_checkout
    from_installed=$("$PY" "$installed/roles/broker/files/build_wheel.py" --source "$installed" --dest "$run/wheel-installed") \
        || { echo "build: the broker role cannot build its wheel from the installed collection" >&2; return 1; }
    from_checkout=$("$PY" "$ROOT/roles/broker/files/build_wheel.py" --source "$ROOT" --dest "$run/wheel-checkout")
    "$PY" - "$from_installed" "$from_checkout" "$installed" <<'PYEOF'
"""The same wheel from both, and one version: galaxy.yml, pyproject.toml and hamq.__version__."""
import json, pathlib, re, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
installed = pathlib.Path(sys.argv[3])
if a["sha256"] != b["sha256"]:
    sys.exit(f"build: the installed collection's wheel {a['path']} differs from the checkout's {b['path']}: "
             "a file of src/ is missing from the tarball. Fix: check build_ignore in galaxy.yml")
galaxy = json.loads((installed / "MANIFEST.json").read_text())["collection_info"]["version"]
code = re.search(r'__version__ = "([^"]+)"', (installed / "src/hamq/__init__.py").read_text()).group(1)
wheel = re.search(r"hamq-([^-]+)-py3", a["path"]).group(1)
if not galaxy == code == wheel:
    sys.exit(f"build: versions disagree: galaxy.yml {galaxy}, hamq.__version__ {code}, wheel {wheel}. "
             "Fix: release them together")
print(f"installed: shared_lock and failover_url run; the broker wheel hamq-{wheel} is the checkout's (sha256 {a['sha256'][:12]})")
PYEOF
}

# A plain clone: nothing in .ansible/, an empty HOME, no ANSIBLE_* variables; ansible.cfg
# (collections_path = ./collections, the committed link) is all that finds hamq.cluster.
clone() {
    step "a plain clone resolves hamq.cluster.* (ansible.cfg + collections/ link)"
    local work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    copy_tree "$work/clone"
    mkdir -p "$work/home"
    local link="$work/clone/collections/ansible_collections/hamq/cluster"
    [ -L "$link" ] && [ "$(readlink "$link")" = ../../.. ] \
        || { echo "clone: collections/ansible_collections/hamq/cluster is not the link ../../.. . Fix: ln -sfn ../../.. $link" >&2; return 1; }
    [ ! -e "$work/clone/.ansible" ] || { echo "clone: the copy has .ansible/" >&2; return 1; }
    # What ansible.cfg alone gives (not the playbook-adjacent collections/ that site.yml
    # would find anyway): playbooks under playbooks/ and ansible-doc rely on it.
    (cd "$work/clone" && env -u ANSIBLE_COLLECTIONS_PATH -u ANSIBLE_CONFIG HOME="$work/home" \
        ansible-galaxy collection list hamq.cluster) >"$work/list.log" 2>&1 || true
    grep -q "^# $work/clone/collections/ansible_collections\$" "$work/list.log" \
        || { cat "$work/list.log"; echo "clone: ansible.cfg's collections_path does not find hamq.cluster in collections/. Fix: collections_path = ./collections:..." >&2; return 1; }
    (cd "$work/clone" && env -u ANSIBLE_COLLECTIONS_PATH -u ANSIBLE_CONFIG HOME="$work/home" \
        ansible-doc -t role hamq.cluster.broker) >"$work/doc.log" 2>&1 \
        || { cat "$work/doc.log"; echo "clone: ansible-doc -t role hamq.cluster.broker fails in a plain clone" >&2; return 1; }
    local p
    for p in site.yml playbooks/failover_drill.yml playbooks/rolling_restart.yml; do
        (cd "$work/clone" && env -u ANSIBLE_COLLECTIONS_PATH -u ANSIBLE_CONFIG -u ANSIBLE_INVENTORY HOME="$work/home" \
            ansible-playbook "$p" --syntax-check) >"$work/syntax.log" 2>&1 \
            || { cat "$work/syntax.log"; echo "clone: ansible-playbook $p --syntax-check fails in a plain clone" >&2; return 1; }
    done
    (cd "$work/clone" && env -u ANSIBLE_COLLECTIONS_PATH -u ANSIBLE_CONFIG -u ANSIBLE_INVENTORY HOME="$work/home" \
        ansible-playbook site.yml --list-tasks) >"$work/site.tasks" 2>&1 \
        || { cat "$work/site.tasks"; echo "clone: ansible-playbook site.yml --list-tasks fails in a plain clone" >&2; return 1; }
    grep -q "hamq.cluster.broker : " "$work/site.tasks" \
        || { cat "$work/site.tasks"; echo "clone: site.yml --list-tasks shows no broker role task" >&2; return 1; }
    echo "a plain clone finds hamq.cluster in collections/ (ansible-galaxy, ansible-doc) and runs" \
         "site.yml, failover_drill.yml, rolling_restart.yml (--syntax-check, --list-tasks)"
}

argspecs() {
    step "role argument specs accept the roles' defaults"
    local out
    out=$(cd "$ROOT" && ansible-playbook -i localhost, tests/argument_specs.yml --tags __none__ 2>&1) \
        || { echo "$out"; echo "argspecs: a role's argument validation fails on its own defaults" >&2; return 1; }
    local n
    n=$(grep -c "Validating arguments against arg spec" <<<"$out" || true)
    [ "$n" -ge 4 ] || { echo "$out"; echo "argspecs: expected 4 validation tasks, saw $n" >&2; return 1; }
    echo "$n roles validated"
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
[ ${#steps[@]} -eq 0 ] && steps=(lint sanity build clone argspecs units scenarios)
for s in "${steps[@]}"; do
    case "$s" in
        lint|sanity|build|clone|argspecs|units|scenarios) "$s" ;;
        *) echo "unknown step '$s'. Fix: use lint, sanity, build, clone, argspecs, units or scenarios" >&2; exit 2 ;;
    esac
done
echo "ansible checks passed: ${steps[*]}"
