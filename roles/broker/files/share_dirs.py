#!/usr/bin/env python3
# Copyright: hamq maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Create a broker group's directories on the shared mount as the broker user itself.

Why: NFS exports are often ``root_squash``, so root on a client is "nobody"
there and cannot create or chown anything; and NFS stores owners by number, so
a directory made by the right uid is right on every host. The role runs this
with ``runuser -u <broker user>`` (stdin, no file on the host), in order
parent first. It never changes an existing directory: one owned by someone
else is reported with its fix. Prints JSON:
``{"created", "uid", "gid", "error", "blocked", "fstype"}``; exit code 0.
"""

from __future__ import absolute_import, division, print_function

import errno
import json
import os
import stat
import sys


def _fstype(path):
    """Filesystem type of the mount that holds ``path`` (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    best, fstype = "", "unknown"
    try:
        with open("/proc/self/mountinfo") as handle:
            for line in handle:
                fields = line.split()
                mount_point = fields[4].replace("\\040", " ")
                sep = fields.index("-")
                inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best):
                    best, fstype = mount_point, fields[sep + 1]
    except (OSError, ValueError, IndexError):
        pass
    return fstype


def _owner(path):
    try:
        st = os.stat(path)
    except OSError as exc:
        return "unreadable (%s)" % exc.strerror
    return "uid %d gid %d mode %04o" % (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def main(argv):
    dry_run = "--dry-run" in argv
    directories = [a for a in argv if a != "--dry-run"]
    uid, gid = os.getuid(), os.getgid()
    result = {"created": [], "uid": uid, "gid": gid, "error": None, "blocked": None, "fstype": None}
    pending = []
    for directory in directories:
        # Missing parents first, like mkdir -p, each made (and so owned) by us.
        chain, probe = [], os.path.normpath(directory)
        while not os.path.lexists(probe) and probe not in ("/", ""):
            chain.insert(0, probe)
            probe = os.path.dirname(probe)
        pending.extend(d for d in chain + [os.path.normpath(directory)] if d not in pending)
    for directory in pending:
        if directory in result["created"]:
            continue
        try:
            st = os.stat(directory)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                result["error"] = (
                    "%s cannot be read as uid %d (%s). Fix: give uid %d:%d search access to its parents "
                    "(on the storage server for a root_squash NFS export)." % (directory, uid, exc.strerror, uid, gid))
                break
            if not dry_run:
                try:
                    os.mkdir(directory, 0o700)
                except OSError as mkexc:
                    parent = os.path.dirname(directory)
                    result["blocked"] = directory
                    result["fstype"] = _fstype(parent)
                    result["error"] = (
                        "%s cannot be created as uid %d (%s); its parent %s is %s. Fix: create %s owned by "
                        "%d:%d with mode 0700, or make %s writable for uid %d (on the storage server for a "
                        "root_squash NFS export: chown %d:%d <export>)." % (
                            directory, uid, mkexc.strerror, parent, _owner(parent), directory, uid, gid,
                            parent, uid, uid, gid))
                    break
            result["created"].append(directory)
            continue
        if not stat.S_ISDIR(st.st_mode):
            result["error"] = "%s exists and is not a directory. Fix: move it away." % directory
            break
        if st.st_uid != uid:
            result["error"] = (
                "%s is owned by uid %d, but the brokers run as uid %d: they could not write their store. "
                "Fix: chown -R %d:%d %s (on the storage server for a root_squash NFS export), or set "
                "broker_uid/broker_gid to the owner's ids on every host." % (
                    directory, st.st_uid, uid, uid, gid, directory))
            break
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
