"""``hamq lock-info DIR``: who holds the shared-store lock, as JSON.

For operators and for Ansible: it never takes the lock (a non-blocking
``F_OFD_GETLK`` test), so running it next to a live master is harmless.
Exit code 0 whether or not the lock is held (read ``held``), 1 on a bad directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from hamq.ha import lockfile


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("directory", metavar="DIR", help="the kahaDB directory (the one holding the 'lock' file)")
    parser.add_argument("--compact", action="store_true", help="print the JSON on one line")


def main(args: argparse.Namespace) -> int:
    directory = args.directory
    if not os.path.isdir(directory):
        print(
            "hamq lock-info: %s is not a directory. Fix: pass the kahaDB directory of the broker group "
            "(the directory that holds the 'lock' file)" % directory,
            file=sys.stderr,
        )
        return 1
    try:
        state = lockfile.lock_state(directory)
    except OSError as exc:
        print("hamq lock-info: cannot inspect %s: %s" % (directory, exc), file=sys.stderr)
        return 1
    print(json.dumps(state, sort_keys=True, indent=None if args.compact else 2))
    return 0
