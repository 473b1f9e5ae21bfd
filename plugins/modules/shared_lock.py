#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2026, hamq maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: shared_lock
short_description: Inspect, probe, hold and release the exclusive lock of a hamq shared store
version_added: "1.0.0"
description:
  - Uses the very lock and storage-safety code of the hamq broker (OFD locks on
    C(<directory>/lock), the epoch file and the mountinfo rules), so what this module
    reports is what the brokers see.
  - C(info) reports whether the lock is held right now, the holder's metadata and the epoch,
    without ever taking the lock.
  - C(probe) checks the filesystem that holds O(path) (type and mount options from
    C(/proc/self/mountinfo)) and refuses the unsafe ones (NFS below 4, C(nolock),
    C(local_lock) other than C(none), OCFS2, GFS2 with C(localflocks)). It then tries the
    lock once without waiting. With a second host it proves cross-host exclusion - hold the
    lock on host A, then probe on host B with O(expect_available=false).
  - C(hold) takes the lock and keeps it in a small background process until C(release) or
    O(hold_seconds), for maintenance windows (no broker can become master meanwhile) and
    for the cross-host probe. C(release) ends that process.
options:
  path:
    description:
      - The directory that holds the lock file, usually the kahaDB directory of a broker group
        or the shared mount point.
    type: path
    required: true
  action:
    description: What to do.
    type: str
    choices: [info, probe, hold, release]
    default: info
  lock_file:
    description:
      - Name of the lock file inside O(path). C(lock) is the brokers' own master lock; use
        another name (for example C(.hamq-probe)) to test the storage without touching it.
    type: str
    default: lock
  expect_available:
    description:
      - For O(action=probe). V(true) fails unless the lock could be taken, V(false) fails if it
        could (that is, if another host's hold did not exclude us). Unset only reports.
    type: bool
  timeout:
    description: For O(action=hold), seconds to wait for the lock; V(0) tries once.
    type: float
    default: 0
  hold_seconds:
    description:
      - For O(action=hold), release the lock by itself after this many seconds, so that a
        forgotten hold cannot keep a broker group without a master forever.
    type: int
    default: 3600
  state_dir:
    description: Host-local directory where a hold records its holder process.
    type: path
    default: /run/hamq-shared-lock
  allow_unsafe_storage:
    description:
      - For O(action=probe), report refused storage as a warning instead of failing. Only for
        tests where two masters are acceptable.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: C(hold) and C(release) only report what they would change.
  diff_mode:
    description: Will return details on what has changed when in diff mode.
    support: none
notes:
  - Linux only (OFD locks, C(/proc/self/mountinfo)).
  - A hold lives in a background process on the target; it ends with C(release), after
    O(hold_seconds), or when the host goes down - exactly like a broker's lock.
author:
  - hamq maintainers (@hamq)
"""

EXAMPLES = r"""
- name: Who is master of the orders group?
  hamq.cluster.shared_lock:
    path: /srv/hamq/orders/kahadb
  register: lock

- name: Check that the shared mount is safe for master/slave
  hamq.cluster.shared_lock:
    path: /srv/hamq
    action: probe
    lock_file: .hamq-probe

- name: Prove cross-host exclusion - hold on the first host
  hamq.cluster.shared_lock:
    path: /srv/hamq
    action: hold
    lock_file: .hamq-probe
    hold_seconds: 120
  run_once: true

- name: The other hosts must not get the lock
  hamq.cluster.shared_lock:
    path: /srv/hamq
    action: probe
    lock_file: .hamq-probe
    expect_available: false
  when: inventory_hostname != ansible_play_hosts[0]

- name: Keep every broker of the group a slave during maintenance
  hamq.cluster.shared_lock:
    path: /srv/hamq/orders/kahadb
    action: hold
    timeout: 60

- name: End the maintenance window
  hamq.cluster.shared_lock:
    path: /srv/hamq/orders/kahadb
    action: release
"""

RETURN = r"""
lock_path:
  description: The lock file.
  returned: always
  type: str
  sample: /srv/hamq/orders/kahadb/lock
held:
  description: Whether any process (on any host sharing the storage) holds the lock right now.
  returned: always
  type: bool
  sample: true
holder:
  description: The holder record the current or last master wrote (nodeName, brokerName, host, pid, epoch, acquiredAt).
  returned: always
  type: dict
  sample: {"nodeName": "broker1", "brokerName": "orders", "host": "broker1", "pid": 812, "epoch": 7,
           "acquiredAt": "2026-11-25T03:00:00Z"}
epoch:
  description: The durable epoch (fencing token); 0 before the first master, null if unreadable.
  returned: always
  type: int
  sample: 7
storage:
  description: The filesystem that holds O(path) and hamq's verdict on it.
  returned: when action is probe
  type: dict
  sample: {"path": "/srv/hamq", "mount_point": "/srv/hamq", "fstype": "nfs4", "source": "nfs1:/srv/nfs/hamq",
           "options": {"vers": "4.2", "local_lock": "none"}, "verdict": "ok", "reasons": ["..."]}
lock_available:
  description: Whether the probe could take the lock (it released it at once). Null when check mode skipped the try.
  returned: when action is probe
  type: bool
  sample: false
holder_pid:
  description: The background process that holds the lock for this host.
  returned: when action is hold or release and a hold exists
  type: int
  sample: 4242
"""

# Ansible modules import after their DOCUMENTATION strings, hence the noqa marks.
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

LOCK_IMPORT_ERROR = None
try:
    from ansible_collections.hamq.cluster.plugins.module_utils import hamq_lockfile as lockfile
    from ansible_collections.hamq.cluster.plugins.module_utils import hamq_storage_safety as storage_safety
except ImportError:
    LOCK_IMPORT_ERROR = traceback.format_exc()


def _state_file(state_dir, lock_path):
    digest = hashlib.sha1(os.path.realpath(lock_path).encode("utf-8")).hexdigest()[:16]
    return os.path.join(state_dir, "hold-%s.json" % digest)


def _proc_start_time(pid):
    """Start time of ``pid`` in clock ticks (field 22 of /proc/PID/stat), or None; guards against pid reuse."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (IOError, OSError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def read_hold(state_dir, lock_path):
    """The live hold of this host on ``lock_path`` as a dict, or None (a stale record is removed)."""
    path = _state_file(state_dir, lock_path)
    try:
        with open(path) as f:
            record = json.load(f)
    except (IOError, OSError, ValueError):
        return None
    pid = record.get("pid")
    if isinstance(pid, int) and _proc_start_time(pid) == record.get("start_time"):
        return record
    try:
        os.unlink(path)
    except OSError:
        pass
    return None


def _hold_in_child(lock_path, state_dir, timeout, hold_seconds, report_fd):
    """Runs in the detached grandchild: take the lock, report, keep it until SIGTERM or the deadline."""
    deadline = time.time() + max(timeout, 0)
    fd = None
    try:
        while True:
            fd = lockfile.try_lock(lock_path)
            if fd is not None or time.time() >= deadline:
                break
            time.sleep(0.05)
    except Exception as exc:  # report any failure to the module, never hang it
        os.write(report_fd, ("error %s" % exc).encode("utf-8"))
        os._exit(1)
    if fd is None:
        os.write(report_fd, b"busy")
        os._exit(1)
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir, 0o700)
    record = {
        "pid": os.getpid(),
        "start_time": _proc_start_time(os.getpid()),
        "lock_path": lock_path,
        "since": time.time(),
        "until": time.time() + hold_seconds,
    }
    state_path = _state_file(state_dir, lock_path)
    with open(state_path + ".tmp", "w") as f:
        json.dump(record, f)
    os.rename(state_path + ".tmp", state_path)
    os.write(report_fd, b"held")
    os.close(report_fd)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        end = time.time() + hold_seconds
        while time.time() < end:
            time.sleep(min(1.0, max(end - time.time(), 0.01)))
    except SystemExit:
        pass
    finally:
        try:
            os.unlink(state_path)
        except OSError:
            pass
        lockfile.unlock(fd)
    os._exit(0)


def start_hold(lock_path, state_dir, timeout, hold_seconds):
    """Fork a detached holder process; returns (ok, detail). The holder outlives the module run."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: detach from the module's session, then fork the real holder
        try:
            os.close(read_fd)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            os.chdir("/")
            devnull = os.open(os.devnull, os.O_RDWR)
            for std in (0, 1, 2):
                os.dup2(devnull, std)
            _hold_in_child(lock_path, state_dir, timeout, hold_seconds, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    os.waitpid(pid, 0)
    chunks = []
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    answer = b"".join(chunks).decode("utf-8", "replace")
    return answer == "held", answer


def stop_hold(record, wait=10.0):
    """SIGTERM the holder and wait until it is gone (its lock goes with it)."""
    pid = record["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    end = time.time() + wait
    while time.time() < end and _proc_start_time(pid) == record.get("start_time"):
        time.sleep(0.02)


def lock_facts(path, lock_path):
    try:
        epoch = lockfile.read_epoch(path)
    except (OSError, IOError, ValueError):
        epoch = None
    holder = lockfile.read_holder(path) if os.path.basename(lock_path) == lockfile.LOCK_NAME else None
    return {
        "lock_path": lock_path,
        "held": lockfile.is_locked(lock_path),
        "holder": holder,
        "epoch": epoch,
    }


def run_probe(module, path, lock_path, result):
    verdict = storage_safety.check_storage(path)
    result["storage"] = verdict.to_dict()
    if verdict.refused:
        text = "; ".join(verdict.reasons)
        if not module.params["allow_unsafe_storage"]:
            module.fail_json(msg="REFUSED storage for hamq master/slave: %s" % text, **result)
        module.warn("UNSAFE storage allowed by allow_unsafe_storage: %s" % text)
    elif verdict.verdict == storage_safety.WARN:
        for reason in verdict.reasons:
            module.warn(reason)
    elif verdict.mount is not None and verdict.mount.fstype in storage_safety.LOCAL_FSTYPES:
        module.warn("%s - not highly available" % "; ".join(verdict.reasons))

    if module.check_mode and not os.path.exists(lock_path):
        result["lock_available"] = None  # trying would create the file
    else:
        result["lock_available"] = lockfile.probe_exclusive(lock_path)
    expect = module.params["expect_available"]
    if expect is not None and result["lock_available"] is not None and result["lock_available"] != expect:
        if expect:
            module.fail_json(
                msg="the lock %s could not be taken: another process or host holds it. Fix: release "
                "the other holder (shared_lock action=release, or stop the broker) and probe again"
                % lock_path, **result)
        module.fail_json(
            msg="the lock %s was free although another host was expected to hold it: locks on this "
            "storage are NOT exclusive across hosts, so every broker could become master. Fix: use "
            "NFSv4 without nolock/local_lock, or GFS2 without localflocks" % lock_path, **result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            action=dict(type="str", default="info", choices=["info", "probe", "hold", "release"]),
            lock_file=dict(type="str", default="lock"),
            expect_available=dict(type="bool"),
            timeout=dict(type="float", default=0),
            hold_seconds=dict(type="int", default=3600),
            state_dir=dict(type="path", default="/run/hamq-shared-lock"),
            allow_unsafe_storage=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    if LOCK_IMPORT_ERROR:
        module.fail_json(msg="cannot import hamq's lock code from module_utils", exception=LOCK_IMPORT_ERROR)

    path = module.params["path"]
    action = module.params["action"]
    lock_file = module.params["lock_file"]
    if not lock_file or "/" in lock_file or lock_file in (".", ".."):
        module.fail_json(msg="lock_file %r is not a plain file name. Fix: give a name such as 'lock' "
                         "or '.hamq-probe'; the directory goes into path" % lock_file)
    if not os.path.isdir(path):
        module.fail_json(msg="%s is not a directory. Fix: mount the shared storage or create the store "
                         "directory first, then point path at it" % path)
    if module.params["hold_seconds"] <= 0:
        module.fail_json(msg="hold_seconds must be > 0. Fix: give the longest maintenance window in seconds")
    lock_path = os.path.join(path, lock_file)
    state_dir = module.params["state_dir"]
    changed = False

    try:
        if action == "probe":
            result = lock_facts(path, lock_path)
            run_probe(module, path, lock_path, result)
        elif action == "hold":
            hold = read_hold(state_dir, lock_path)
            if hold is None:
                changed = True
                if not module.check_mode:
                    ok, detail = start_hold(lock_path, state_dir, module.params["timeout"],
                                            module.params["hold_seconds"])
                    if not ok:
                        reason = ("another process or host holds it" if detail == "busy"
                                  else detail or "the holder process died")
                        module.fail_json(
                            msg="cannot hold %s: %s. Fix: stop the current holder (or raise timeout to "
                            "wait for it)" % (lock_path, reason), **lock_facts(path, lock_path))
                    hold = read_hold(state_dir, lock_path)
            result = lock_facts(path, lock_path)
            if hold is not None:
                result["holder_pid"] = hold["pid"]
        elif action == "release":
            hold = read_hold(state_dir, lock_path)
            if hold is not None:
                changed = True
                if not module.check_mode:
                    stop_hold(hold)
            result = lock_facts(path, lock_path)
            if hold is not None:
                result["holder_pid"] = hold["pid"]
        else:
            result = lock_facts(path, lock_path)
    except (OSError, IOError, lockfile.LockFileError) as exc:
        module.fail_json(msg="cannot use the lock %s: %s" % (lock_path, exc), exception=traceback.format_exc())

    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
