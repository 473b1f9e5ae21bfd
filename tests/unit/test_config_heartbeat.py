"""The heart-beat grace option travels from the connector URI to the engine."""

import pytest

from hamq.config.loader import ConfigError, load_config
from hamq.core.engine import Broker


def _config(tmp_path, option):
    kaha = tmp_path / "kahadb"
    kaha.mkdir()
    path = tmp_path / "broker.xml"
    path.write_text(
        f'<broker brokerName="g" nodeName="n1" dataDirectory="{tmp_path}">\n'
        f'  <persistenceAdapter><kahaDB directory="{kaha}"/></persistenceAdapter>\n'
        "  <transportConnectors>\n"
        f'    <transportConnector name="stomp" uri="stomp://127.0.0.1:0?hbGracePeriodMultiplier={option}"/>\n'
        "  </transportConnectors>\n"
        "</broker>\n"
    )
    return path


def test_grace_multiplier_reaches_the_engine(tmp_path):
    cfg = load_config(_config(tmp_path, "2.5"))
    assert cfg.connectors[0].options["hbGracePeriodMultiplier"] == "2.5"
    assert Broker(cfg).heartbeat_grace == 2.5


@pytest.mark.parametrize("bad", ["0.5", "abc", "1000"])
def test_bad_grace_multiplier_is_refused_with_a_fix(tmp_path, bad):
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, bad))
    text = str(info.value)
    assert "hbGracePeriodMultiplier" in text and ":4:" in text and "Fix:" in text
