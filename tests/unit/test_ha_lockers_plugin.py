"""Third-party lockers are found through the ``hamq.lockers`` entry-point group by element name."""

import asyncio
import importlib
import sys
import textwrap

import pytest

from hamq.config.model import LockerConfig
from hamq.ha.lockers import LockerError, available_lockers, load_locker

PLUGIN = textwrap.dedent(
    '''
    from hamq.ha.lockers import Locker, MasterLease


    class TokenLease(MasterLease):
        def __init__(self, epoch):
            self.epoch = epoch
            self.record = {"epoch": epoch}

        def check_fence(self):
            pass

        async def keep_alive(self, on_lost):
            pass

        def release(self):
            pass


    class TokenLocker(Locker):
        """A locker that always wins with the epoch from its 'epoch' attribute."""

        name = "token-locker"

        async def acquire(self, on_waiting=None):
            return TokenLease(int(self.config.attributes["epoch"]))

        def holder(self):
            return {"nodeName": self.identity["nodeName"]}
    '''
)


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    (tmp_path / "hamq_token_locker.py").write_text(PLUGIN)
    dist = tmp_path / "hamq_token_locker-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hamq-token-locker\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[hamq.lockers]\ntoken = hamq_token_locker:TokenLocker\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("hamq_token_locker", None)


def test_installed_locker_is_selected_by_element_name(plugin_on_path, tmp_path):
    assert {"shared-file", "token"} <= set(available_lockers())
    cfg = LockerConfig(type="token-locker", attributes={"epoch": "41"})
    locker = load_locker(cfg, tmp_path, {"nodeName": "b1"})
    assert type(locker).__name__ == "TokenLocker" and locker.holder() == {"nodeName": "b1"}
    assert asyncio.run(locker.acquire()).epoch == 41


def test_unknown_name_lists_the_plugin_too(plugin_on_path, tmp_path):
    with pytest.raises(LockerError) as err:
        load_locker(LockerConfig(type="zookeeper-locker"), tmp_path, {})
    assert "shared-file" in str(err.value) and "token" in str(err.value)
