"""broker.xml settings of producer flow control: the memory limit and the sendFailIfNoSpace opt-in."""

from __future__ import annotations

import pytest
from config_support import broker_xml
from test_engine_support import Harness

from hamq.config.loader import ConfigError, load_config, summary


def load(tmp_path, inner: str):
    return load_config(broker_xml(tmp_path, inner))


POLICY = ('  <destinationPolicy><policyMap><policyEntries>\n'
          '    <policyEntry {attrs}/>\n'
          '  </policyEntries></policyMap></destinationPolicy>\n')


def test_defaults_hold_producers_at_64_mib(tmp_path):
    cfg = load(tmp_path, "")
    assert cfg.memory_limit is None and cfg.send_fail_if_no_space is False
    h = Harness(memory_limit=cfg.memory_limit)
    assert h.broker.queue_memory_limit == 64 * 1024 * 1024 and not h.broker.send_fail_if_no_space


def test_policy_entry_sets_the_memory_limit(tmp_path):
    cfg = load(tmp_path, POLICY.format(attrs='queue=">" topic=">" producerFlowControl="true" memoryLimit="1 mb"'))
    assert cfg.memory_limit == 1024 * 1024
    assert "memory limit 1 MiB per destination, producers wait past it" in summary(cfg)
    assert Harness(memory_limit=cfg.memory_limit).broker.queue_memory_limit == 1024 * 1024


def test_send_fail_if_no_space_is_an_opt_in(tmp_path):
    cfg = load(tmp_path, '  <systemUsage><systemUsage sendFailIfNoSpace="true"/></systemUsage>\n')
    assert cfg.send_fail_if_no_space is True
    assert "sends past it refused" in summary(cfg)
    assert Harness(send_fail_if_no_space=True).broker.send_fail_if_no_space


@pytest.mark.parametrize("inner, problem, fix", [
    (POLICY.format(attrs='queue="orders.>" memoryLimit="1mb"'), "cannot match a pattern", 'queue=">"'),
    (POLICY.format(attrs='memoryLimit="1mb"'), "names no destinations", 'queue=">"'),
    (POLICY.format(attrs='queue=">" memoryLimit="lots"'), 'memoryLimit="lots" is not a size', "32mb"),
    (POLICY.format(attrs='queue=">" memoryLimit="1kb"'), "out of range", "65536"),
    (POLICY.format(attrs='queue=">" producerFlowControl="false"'), "no temporary store", "sendFailIfNoSpace"),
    (POLICY.format(attrs='queue=">" memoryLimt="1mb"'), 'unknown attribute "memoryLimt"', "memoryLimit"),
    ("  <destinationPolicy><policyMap/></destinationPolicy>\n", "has no <policyEntries>", "policyEntry"),
    ("  <systemUsage/>\n", "<systemUsage> is empty", "sendFailIfNoSpace"),
    ('  <systemUsage><systemUsage sendFailIfNoSpace="maybe"/></systemUsage>\n', "sendFailIfNoSpace", "true"),
])
def test_bad_settings_name_the_problem_and_the_fix(tmp_path, inner, problem, fix):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, inner)
    text = str(info.value)
    assert "broker.xml:" in text and problem in text and fix in text.split("Fix:", 1)[1]
