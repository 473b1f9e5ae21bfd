"""Unsafe-storage refusals from fake mountinfo text (hamq.ha.storage_safety)."""

import logging

import pytest

from hamq.ha import storage_safety as ss

ROOT = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"


def _info(line):
    return ROOT + line + "\n"


def _nfs(fstype, opts):
    return _info("90 27 0:50 / /shared rw,relatime - %s srv:/export rw,%s" % (fstype, opts))


UNSAFE = {
    "nfs3": (_nfs("nfs", "vers=3,hard,proto=tcp,local_lock=none"), "NFSv3 server never times out"),
    "nfsvers3": (_nfs("nfs", "nfsvers=3,local_lock=none"), "never times out"),
    "nfs-no-version": (_nfs("nfs", "hard,local_lock=none"), "NFS version 2/3"),
    "nolock": (_nfs("nfs4", "vers=4.2,nolock,local_lock=none"), "nolock"),
    "local_lock=all": (_nfs("nfs4", "vers=4.1,local_lock=all"), "local_lock=all"),
    "local_lock=posix": (_nfs("nfs4", "vers=4.2,local_lock=posix"), "local_lock=posix"),
    "local_lock=flock": (_nfs("nfs4", "vers=4.2,local_lock=flock"), "local_lock=flock"),
    "ocfs2": (_info("91 27 8:16 / /shared rw - ocfs2 /dev/sdb rw,cluster_stack=o2cb"), "AMQ-4378"),
    "nfs-soft": (_nfs("nfs4", "vers=4.2,soft,proto=tcp,local_lock=none"), "mounted soft"),
    "nfs-softerr": (_nfs("nfs4", "vers=4.2,softerr,local_lock=none"), "mounted softerr"),
    "gfs2-lock_nolock": (_info("93 27 253:1 / /shared rw - gfs2 /dev/sdc rw,lockproto=lock_nolock"), "lock_nolock"),
    "gfs2-localflocks": (_info("92 27 253:1 / /shared rw - gfs2 /dev/sdc rw,localflocks"), "localflocks"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_storage_is_refused_with_reason_and_fix(case):
    text, why = UNSAFE[case]
    result = ss.check_storage("/shared/kahadb", text)
    assert result.verdict == ss.REFUSE
    joined = " ".join(result.reasons)
    assert why in joined and "Fix:" in joined
    with pytest.raises(ss.UnsafeStorageError) as err:
        ss.enforce("/shared/kahadb", mountinfo_text=text)
    assert why in str(err.value) and "allowUnsafeStorage" in str(err.value)


def test_nfs3_with_nolock_gives_both_reasons():
    result = ss.check_storage("/shared/x", _nfs("nfs", "vers=3,nolock,local_lock=all"))
    assert len(result.reasons) == 3


@pytest.mark.parametrize(
    "text, fstype",
    [
        (_nfs("nfs4", "vers=4.2,hard,local_lock=none"), "nfs4"),
        (_nfs("nfs", "vers=4.1,local_lock=none"), "nfs"),
        (_info("92 27 253:1 / /shared rw - gfs2 /dev/sdc rw,lockproto=lock_dlm"), "gfs2"),
        (ROOT, "ext4"),
    ],
)
def test_safe_storage_is_allowed_with_a_note(text, fstype):
    result = ss.check_storage("/shared/kahadb", text)
    assert result.verdict == ss.OK and result.mount.fstype == fstype
    assert result.reasons  # every verdict explains itself
    assert ss.enforce("/shared/kahadb", mountinfo_text=text).verdict == ss.OK


def test_local_filesystem_note_says_not_ha():
    result = ss.check_storage("/var/lib/hamq", ROOT)
    assert "not highly available" in result.reasons[0]


def test_unknown_filesystem_warns():
    result = ss.check_storage("/shared/x", _info("93 27 0:60 / /shared rw - fuse.sshfs host:/x rw"))
    assert result.verdict == ss.WARN and "not verified" in result.reasons[0]


def test_allow_unsafe_lifts_refusal_loudly(caplog):
    text = UNSAFE["nfs3"][0]
    with caplog.at_level(logging.WARNING, logger="hamq.ha"):
        result = ss.enforce("/shared/kahadb", allow_unsafe=True, mountinfo_text=text)
    assert result.refused
    assert any("UNSAFE STORAGE ALLOWED" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_longest_prefix_and_stacked_mounts():
    text = ROOT + (
        "90 27 0:50 / /shared rw - nfs4 srv:/a rw,vers=4.2,local_lock=none\n"
        "91 90 0:51 / /shared/sub rw - nfs srv:/b rw,vers=3,local_lock=none\n"
        "92 27 0:52 / /sharedother rw - ocfs2 /dev/x rw\n"
        "93 27 0:53 / /shared rw - nfs4 srv:/c rw,vers=4.1,local_lock=none\n"
    )
    mounts = ss.parse_mountinfo(text)
    assert ss.find_mount("/shared/sub/kahadb", mounts).source == "srv:/b"
    assert ss.find_mount("/shared/kahadb", mounts).source == "srv:/c"  # the later mount on top wins
    assert ss.find_mount("/sharedother", mounts).fstype == "ocfs2"
    assert ss.find_mount("/sharedx", mounts).fstype == "ext4"


def test_escaped_mount_point_and_optional_fields():
    text = ROOT + "94 27 0:54 / /mnt/my\\040share rw,relatime shared:5 master:2 - nfs srv:/x rw,vers=3\n"
    result = ss.check_storage("/mnt/my share/kahadb", text)
    assert result.mount.mount_point == "/mnt/my share" and result.refused


def test_malformed_lines_are_skipped():
    assert [m.fstype for m in ss.parse_mountinfo("garbage\n\n" + ROOT)] == ["ext4"]


def test_symlinked_path_is_resolved(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    text = ROOT + "95 27 0:55 / %s rw - nfs srv:/x rw,vers=3\n" % target
    assert ss.check_storage(str(tmp_path / "link" / "kahadb"), text).refused


def test_real_mountinfo_of_this_host(tmp_path):
    result = ss.check_storage(str(tmp_path))
    assert result.mount is not None and result.to_dict()["fstype"] == result.mount.fstype
