"""The fault shim's spec, seen from the test, and the power-cut model built on its io log.

A :class:`FaultSpec` belongs to one broker process.  Its rules and io log are
written to a JSON file that ``tests/faults/shim/sitecustomize.py`` reads when
the broker starts with :meth:`FaultSpec.env` in its environment; nothing in
the broker's configuration knows about it.

Example: pause the master right before the journal write of its next batch::

    spec = FaultSpec(tmp_path, "a")
    pause = spec.rule("pause-write", ops=["pwrite", "write"], path="*/kahadb/db-*.log",
                      data_prefix=BATCH_MAGIC, action="pause", armed=False)
    a = group.start("a", env=spec.env())
    pause.arm()                         # count from now on
    ...
    pause.wait()                        # the shim wrote its event line and stopped the process

Power cut: with :meth:`FaultSpec.record_io` every broker that shares the same
io-log directory logs an undo record before each write or truncation of a
matching file and a sync record after each successful fsync.
:func:`power_cut` (all brokers dead) puts every such file back to what its
last fsync made durable: the page-cache model, where writes that no fsync of
that file followed are lost.
"""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from support.brokers import process_state

SHIM_DIR = Path(__file__).resolve().parent.parent / "shim"
#: The first bytes of every journal batch (hamq.store.codec.BATCH_MAGIC), to count batch writes only.
BATCH_MAGIC = "HQB1"
JOURNAL_GLOB = "*/db-*.log"

_RECORD_HEAD = struct.Struct("<I")


class Rule:
    """One rule of a spec; :meth:`arm` starts its counting when it was created with ``armed=False``."""

    def __init__(self, spec: "FaultSpec", body: dict):
        self.spec = spec
        self.body = body
        self.name = body["name"]
        self.arm_file: Optional[Path] = Path(body["arm_file"]) if body.get("arm_file") else None
        #: events seen when the rule was last armed: wait() waits for newer ones
        self._seen = 0

    def arm(self) -> None:
        """Start counting (again); a later :meth:`wait` waits for an event after this moment."""
        if self.arm_file is None:
            raise ValueError(f"rule {self.name!r} was created armed; pass armed=False to arm it later")
        self._seen = len(self.events())
        self.arm_file.touch()

    def disarm(self) -> None:
        if self.arm_file is not None and self.arm_file.exists():
            self.arm_file.unlink()

    def events(self) -> List[dict]:
        return [e for e in self.spec.events() if e["rule"] == self.name]

    def fired(self) -> bool:
        return bool(self.events())

    def wait(self, timeout: float = 60.0, count: int = 1) -> dict:
        """Block until the rule acted ``count`` times since it was armed; returns that event.

        For a pause it also waits until the process is stopped.
        """
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()[self._seen:]
            if len(events) >= count:
                event = events[count - 1]
                if event["action"] == "pause":
                    _wait_stopped(event["pid"], deadline)
                return event
            if time.monotonic() > deadline:
                raise AssertionError(f"fault rule {self.name!r} did not fire {count} time(s) within {timeout} s")
            time.sleep(0.005)


def _wait_stopped(pid: int, deadline: float) -> None:
    while process_state(pid) not in ("T", "t"):
        if time.monotonic() > deadline or process_state(pid) is None:
            raise AssertionError(f"process {pid} did not stop after the shim's SIGSTOP")
        time.sleep(0.002)


class FaultSpec:
    """The shim spec of one broker process (its rules, its event file, the shared io log)."""

    def __init__(self, directory: Path, name: str):
        self.directory = Path(directory) / f"faults-{name}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.events_path = self.directory / "events.jsonl"
        self.spec_path = self.directory / "spec.json"
        self.rules: List[Rule] = []
        self.iolog: Optional[dict] = None

    def rule(self, name: str, ops: Sequence[str], path: str, action: str, *, nth: int = 1, times: int = 1,
             when: str = "before", data_prefix: Optional[str] = None, errno: str = "EIO", seconds: float = 0.0,
             armed: bool = True) -> Rule:
        """Add a rule (see the shim's docstring); ``armed=False`` counts only after :meth:`Rule.arm`."""
        if action not in ("pause", "fail", "delay", "kill"):
            raise ValueError(f"unknown action {action!r}; use pause, fail, delay or kill")
        if when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', not {when!r}")
        body = {"name": name, "ops": list(ops), "path": path, "action": action, "nth": nth, "times": times,
                "when": when, "errno": errno, "seconds": seconds}
        if data_prefix is not None:
            body["data_prefix"] = data_prefix
        if not armed:
            body["arm_file"] = str(self.directory / f"arm-{name}")
        rule = Rule(self, body)
        self.rules.append(rule)
        return rule

    def record_io(self, iolog_dir: Path, paths: Iterable[str] = (JOURNAL_GLOB,)) -> "FaultSpec":
        """Log undo and sync records of matching files into ``iolog_dir`` (share it across a group)."""
        self.iolog = {"dir": str(iolog_dir), "paths": list(paths)}
        return self

    def env(self) -> Dict[str, str]:
        """Environment for the broker process: the shim on PYTHONPATH, HAMQ_FAULTS naming this spec."""
        body = {"events": str(self.events_path), "rules": [r.body for r in self.rules]}
        if self.iolog:
            body["iolog"] = self.iolog
        self.spec_path.write_text(json.dumps(body, indent=1))
        path = os.environ.get("PYTHONPATH")
        return {"HAMQ_FAULTS": str(self.spec_path),
                "PYTHONPATH": str(SHIM_DIR) + (os.pathsep + path if path else "")}

    def events(self) -> List[dict]:
        try:
            text = self.events_path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written right now
        return out


# ---------------------------------------------------------------------------- power cut
@dataclass
class IoRecord:
    kind: str  # undo | sync | rename
    t: int
    pid: int
    header: dict
    old: bytes = b""

    @property
    def key(self) -> Tuple[int, int, str]:
        """One file: device, inode and the name it had when it was written (inode numbers get reused)."""
        return self.header["dev"], self.header["ino"], os.path.basename(self.header["path"])


def read_iolog(directory: Path) -> List[IoRecord]:
    """Every record of every process in ``directory``, in time order (a torn last record is ignored)."""
    records: List[IoRecord] = []
    for log in sorted(Path(directory).glob("io-*.log")):
        data = log.read_bytes()
        pos = 0
        while pos + _RECORD_HEAD.size <= len(data):
            (n,) = _RECORD_HEAD.unpack_from(data, pos)
            start = pos + _RECORD_HEAD.size
            if start + n > len(data):
                break
            try:
                header = json.loads(data[start:start + n])
            except ValueError:
                break
            old_len = header.get("old", 0)
            end = start + n + old_len
            if end > len(data):
                break
            records.append(IoRecord(header["kind"], header["t"], header["pid"], header, data[start + n:end]))
            pos = end
    records.sort(key=lambda r: r.t)  # CLOCK_MONOTONIC is one clock for all processes of the host
    return records


@dataclass
class PowerCutReport:
    files: Dict[str, int] = field(default_factory=dict)  # path -> bytes put back
    skipped: List[str] = field(default_factory=list)  # files gone (deleted) or inode reused

    @property
    def reverted_bytes(self) -> int:
        return sum(self.files.values())


def _locate(header: dict, search_root: Path) -> Optional[Path]:
    """Where the file written as ``header['path']`` is now (it may have been moved to quarantine/)."""
    dev, ino, path = header["dev"], header["ino"], Path(header["path"])
    try:
        st = path.stat()
        if (st.st_dev, st.st_ino) == (dev, ino):
            return path
    except OSError:
        pass
    for candidate in Path(search_root).rglob("*"):
        try:
            st = candidate.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (dev, ino) and candidate.name.startswith(path.name):
            return candidate
    return None


def power_cut(iolog_dir: Path, search_root: Path) -> PowerCutReport:
    """Put every logged file back to its last fsynced state. Every broker writing them must be dead."""
    records = read_iolog(iolog_dir)
    last_sync: Dict[Tuple[int, int, str], int] = {}
    for r in records:
        if r.kind == "sync":
            last_sync[r.key] = max(last_sync.get(r.key, 0), r.t)
    undo: Dict[Tuple[int, int, str], List[IoRecord]] = {}
    for r in records:
        if r.kind == "undo" and r.t > last_sync.get(r.key, -1):
            undo.setdefault(r.key, []).append(r)
    report = PowerCutReport()
    for _key, entries in undo.items():
        where = _locate(entries[0].header, search_root)
        if where is None:
            report.skipped.append(entries[0].header["path"])
            continue
        fd = os.open(where, os.O_RDWR)
        try:
            put_back = 0
            for r in reversed(entries):
                if r.old:
                    os.pwrite(fd, r.old, r.header["offset"])
                if os.fstat(fd).st_size != r.header["size"]:
                    os.ftruncate(fd, r.header["size"])
                put_back += r.header["length"]
            os.fsync(fd)
        finally:
            os.close(fd)
        report.files[str(where)] = report.files.get(str(where), 0) + put_back
    return report


def writes_after_seals(iolog_dir: Path, kahadb: Path) -> Dict[int, List[dict]]:
    """Batch writes into a segment past its seal, made after the seal was written: {pid: [write records]}.

    The seal of segment N is the header of segment N+1; the io log tells when that
    header was written and by whom, and which later writes landed in N beyond the
    sealed length.  Only writes whose data starts with the batch magic count (not fill).
    """
    from faultlab.journal import segments

    records = read_iolog(iolog_dir)
    created: Dict[str, Tuple[int, int]] = {}  # segment file name -> (time, pid) its header was written
    for r in records:
        if r.kind == "undo" and r.header["offset"] == 0 and r.header.get("head", "").startswith(_SEGMENT_HEX):
            created.setdefault(os.path.basename(r.header["path"]), (r.t, r.pid))
    seals: Dict[str, Tuple[int, int, int]] = {}
    found = segments(kahadb)
    for (n, path, _h), (_m, following, nxt) in zip(found, found[1:]):
        if nxt is not None and nxt.prev_segment == n and following.name in created:
            seals[path.name] = (nxt.sealed_length,) + created[following.name]
    out: Dict[int, List[dict]] = {}
    for r in records:
        if r.kind != "undo" or not r.header.get("head", "").startswith(_BATCH_HEX):
            continue
        seal = seals.get(os.path.basename(r.header["path"]))
        if seal is None:
            continue
        length, sealed_at, sealer = seal
        if r.t > sealed_at and r.pid != sealer and r.header["offset"] + r.header["length"] > length:
            out.setdefault(r.pid, []).append(r.header)
    return out


_BATCH_HEX = BATCH_MAGIC.encode().hex()
_SEGMENT_HEX = b"HAMQSEG1".hex()
