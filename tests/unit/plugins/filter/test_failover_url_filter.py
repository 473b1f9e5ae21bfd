"""The failover_url filter builds the URL hamq's failover client and ActiveMQ clients read."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hamq.cluster.plugins.filter.failover_url import FilterModule, failover_url


def test_plain_names_get_the_default_port():
    assert failover_url(["b1", "b2"]) == "failover:(tcp://b1:61613,tcp://b2:61613)"


def test_hostvars_give_address_and_port_in_order_of_preference():
    hostvars = {
        "b1": {"ansible_host": "10.0.0.1"},
        "b2": {"ansible_host": "10.0.0.2", "broker_advertised_host": "mq2.example.com", "broker_stomp_port": 61614},
        "b3": {},
    }
    url = failover_url(["b1", "b2", "b3"], hostvars)
    assert url == "failover:(tcp://10.0.0.1:61613,tcp://mq2.example.com:61614,tcp://b3:61613)"


def test_options_are_appended_in_order_and_booleans_are_lowercase():
    url = failover_url(["h"], options={"randomize": False, "maxReconnectDelay": 250})
    assert url == "failover:(tcp://h:61613)?randomize=false&maxReconnectDelay=250"


def test_option_values_are_url_quoted():
    assert failover_url(["h"], options={"nested.sslCaFile": "/etc/a b.pem"}).endswith(
        "?nested.sslCaFile=%2Fetc%2Fa%20b.pem"
    )


def test_dict_entries_ssl_scheme_and_ipv6_literals():
    url = failover_url([{"host": "::1", "port": 61617}, {"host": "h2"}], port=61617, scheme="ssl")
    assert url == "failover:(ssl://[::1]:61617,ssl://h2:61617)"


def test_empty_hostvar_values_fall_back_to_the_next_source():
    hostvars = {"b1": {"broker_advertised_host": "", "ansible_host": "10.0.0.9"}}
    assert failover_url(["b1"], hostvars) == "failover:(tcp://10.0.0.9:61613)"


@pytest.mark.parametrize(
    "brokers, kwargs, problem",
    [
        ([], {}, "empty broker list"),
        ("b1,b2", {}, "expects a list"),
        (["b1"], {"port": 70000}, "has port 70000"),
        (["b1"], {"port": "x"}, "set broker_stomp_port"),
        ([{"port": 1}], {}, "without a host"),
        (["b1"], {"scheme": "tcp://x"}, "not a plain scheme"),
        (["b1"], {"options": ["a"]}, "options must be a dict"),
    ],
)
def test_bad_input_is_refused_with_the_fix(brokers, kwargs, problem):
    with pytest.raises(AnsibleFilterError) as err:
        failover_url(brokers, **kwargs)
    assert problem in str(err.value)
    assert "Fix" in str(err.value) or "must be" in str(err.value)


def test_the_hamq_client_parses_what_the_filter_builds():
    url_module = pytest.importorskip("hamq.client.url")
    url = failover_url(["b1", "b2"], options={"randomize": False, "maxReconnectDelay": 250})
    parsed = url_module.parse_url(url)
    assert [(b.host, b.port) for b in parsed.brokers] == [("b1", 61613), ("b2", 61613)]
    assert parsed.options.randomize is False
    assert parsed.options.max_reconnect_delay == 250


def test_filter_is_registered_under_its_name():
    assert FilterModule().filters()["failover_url"] is failover_url
