#!/usr/bin/env python3
# Copyright: hamq maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build hamq's pure-Python wheel on the controller, offline and byte-for-byte reproducible.

Why not ``pip wheel``: it needs the build backend named in pyproject.toml (not
always installed offline), writes build/ and *.egg-info into the source tree,
and stamps the current time into the zip, so every run would look like a new
wheel and the role would reinstall and restart the brokers each time. hamq is
stdlib-only with no compiled parts, so the wheel is just a zip of ``src/hamq``
plus metadata, which this script writes with fixed timestamps and sorted
entries. It prints JSON: ``{"path", "sha256", "changed"}``.
"""

from __future__ import absolute_import, division, print_function

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import tempfile
import zipfile

try:
    import tomllib
except ImportError:  # Python < 3.11 on the controller
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

_EPOCH = (1980, 1, 1, 0, 0, 0)


def _fail(message):
    sys.stderr.write("build_wheel: %s\n" % message)
    sys.exit(2)


def _record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _entry_points(project):
    sections = []
    scripts = project.get("scripts") or {}
    if scripts:
        sections.append(("console_scripts", scripts))
    for group, entries in sorted((project.get("entry-points") or {}).items()):
        sections.append((group, entries))
    lines = []
    for group, entries in sections:
        lines.append("[%s]" % group)
        lines.extend("%s = %s" % (name, target) for name, target in sorted(entries.items()))
        lines.append("")
    return "\n".join(lines)


def _metadata(project):
    lines = [
        "Metadata-Version: 2.1",
        "Name: %s" % project["name"],
        "Version: %s" % project["version"],
    ]
    if project.get("description"):
        lines.append("Summary: %s" % project["description"])
    if project.get("requires-python"):
        lines.append("Requires-Python: %s" % project["requires-python"])
    return "\n".join(lines) + "\n"


def build(source, dest_dir):
    """Write the wheel for the project at ``source`` into ``dest_dir``; return (path, sha256, changed)."""
    if tomllib is None:
        _fail("Python %s has no tomllib. Fix: run the controller on Python >= 3.11 or "
              "install tomli, or set broker_wheel to a prebuilt wheel." % sys.version.split()[0])
    pyproject = os.path.join(source, "pyproject.toml")
    if not os.path.isfile(pyproject):
        _fail("%s not found. Fix: point --source at the hamq checkout or the installed "
              "collection root (it contains pyproject.toml and src/)." % pyproject)
    with open(pyproject, "rb") as handle:
        project = tomllib.load(handle).get("project") or {}
    if project.get("dependencies"):
        _fail("hamq declares runtime dependencies %r, but the offline install has none to "
              "offer. Fix: keep hamq stdlib-only." % project["dependencies"])
    name = re.sub(r"[-_.]+", "_", project["name"]).lower()
    version = project["version"]
    package_dir = os.path.join(source, "src", name)
    if not os.path.isdir(package_dir):
        _fail("%s not found. Fix: the collection must ship src/%s." % (package_dir, name))

    files = []
    for root, dirs, names in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for filename in sorted(names):
            if filename.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(root, filename)
            arcname = os.path.relpath(full, os.path.join(source, "src")).replace(os.sep, "/")
            with open(full, "rb") as handle:
                files.append((arcname, handle.read()))

    dist_info = "%s-%s.dist-info" % (name, version)
    files.append((dist_info + "/METADATA", _metadata(project).encode("utf-8")))
    files.append((dist_info + "/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: hamq.cluster build_wheel\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n").encode("utf-8")))
    entry_points = _entry_points(project)
    if entry_points:
        files.append((dist_info + "/entry_points.txt", entry_points.encode("utf-8")))
    record = "".join("%s,%s,%d\n" % (arc, _record_hash(data), len(data)) for arc, data in files)
    record += "%s/RECORD,,\n" % dist_info
    files.append((dist_info + "/RECORD", record.encode("utf-8")))

    if not os.path.isdir(dest_dir):
        os.makedirs(dest_dir)
    target = os.path.join(dest_dir, "%s-%s-py3-none-any.whl" % (name, version))
    fd, tmp = tempfile.mkstemp(dir=dest_dir, suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as wheel:
            for arcname, data in files:
                info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                wheel.writestr(info, data)
        with open(tmp, "rb") as handle:
            new = handle.read()
        old = None
        if os.path.exists(target):
            with open(target, "rb") as handle:
                old = handle.read()
        changed = new != old
        if changed:
            os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target, hashlib.sha256(new).hexdigest(), changed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="directory holding pyproject.toml and src/")
    parser.add_argument("--dest", required=True, help="directory for the wheel")
    args = parser.parse_args()
    path, sha256, changed = build(os.path.abspath(args.source), os.path.abspath(args.dest))
    print(json.dumps({"path": path, "sha256": sha256, "changed": changed}))


if __name__ == "__main__":
    main()
