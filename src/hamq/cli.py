"""The ``hamq`` command: one entry point, one module per subcommand.

Subcommands import their implementation lazily so that ``hamq produce`` does
not pay for loading the broker, and a broken optional part cannot stop the
others from working.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

#: subcommand -> (module, function, help). Each function takes the parsed args
#: and returns a process exit code; each module also provides add_arguments(parser, name).
SUBCOMMANDS = {
    "run": ("hamq.server", "main_run", "run a broker in the foreground"),
    "check-config": ("hamq.config.loader", "main_check", "validate a broker.xml file"),
    "lock-info": ("hamq.ha.lock_info", "main", "show who holds the shared-store lock, as JSON"),
    "produce": ("hamq.client.cli", "main_produce", "send messages through a failover URL"),
    "consume": ("hamq.client.cli", "main_consume", "receive messages through a failover URL"),
    "hash-password": ("hamq.security.passwords", "main", "print a salted password hash for broker.xml"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hamq", description=__doc__.splitlines()[0])
    from hamq import __version__

    parser.add_argument("--version", action="version", version=f"hamq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, func_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # pragma: no cover - only on a broken install
            p.set_defaults(_broken=f"{name} is unavailable: {exc}")
            continue
        module.add_arguments(p, name)
        p.set_defaults(_func=getattr(module, func_name))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_broken", None):
        print(f"hamq: {args._broken}", file=sys.stderr)
        return 2
    return int(args._func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
