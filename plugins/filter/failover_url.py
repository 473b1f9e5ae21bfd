# -*- coding: utf-8 -*-

# Copyright: (c) 2026, hamq maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: failover_url
short_description: Build a failover:(tcp://h1:61613,...)?options URL for a hamq broker group
version_added: "1.0.0"
description:
  - Turns a list of brokers (inventory host names, usually C(groups['brokers'])) into the
    ActiveMQ-style failover URL that hamq's failover client and other STOMP clients understand.
  - Each broker's address is the first defined of the O(host_vars) in its hostvars, else its name;
    its port is its O(port_var), else O(port).
options:
  _input:
    description: Broker host names, or dicts with C(host) and optional C(port).
    type: list
    elements: raw
    required: true
  hostvars:
    description: The C(hostvars) magic variable, to look up each broker's address and port.
    type: dict
  port:
    description: Port for brokers that do not define O(port_var).
    type: int
    default: 61613
  port_var:
    description: Host variable holding a broker's STOMP port.
    type: str
    default: broker_stomp_port
  host_vars:
    description: Host variables tried in order for a broker's address.
    type: list
    elements: str
    default: [broker_advertised_host, ansible_host]
  scheme:
    description: Scheme of each inner URI (C(tcp), or C(ssl) for TLS connectors).
    type: str
    default: tcp
  options:
    description: Query options appended after C(?), such as C(randomize=false); booleans become C(true)/C(false).
    type: dict
    default: {}
author:
  - hamq maintainers (@hamq)
"""

EXAMPLES = r"""
- name: URL of the brokers group, with options
  ansible.builtin.debug:
    msg: "{{ groups['brokers'] | hamq.cluster.failover_url(hostvars, options={'randomize': false}) }}"
  # failover:(tcp://broker1:61613,tcp://broker2:61613,tcp://broker3:61613)?randomize=false

- name: Without inventory
  ansible.builtin.debug:
    msg: "{{ ['h1', {'host': 'h2', 'port': 61614}] | hamq.cluster.failover_url }}"
  # failover:(tcp://h1:61613,tcp://h2:61614)
"""

RETURN = r"""
_value:
  description: The failover URL.
  type: str
"""

from urllib.parse import quote  # noqa: E402

from ansible.errors import AnsibleFilterError  # noqa: E402


def _lookup(hostvars, name, var):
    if not hostvars or not var:
        return None
    try:
        host = hostvars[name]
    except (KeyError, TypeError):
        return None
    try:
        value = host[var]
    except (KeyError, TypeError):
        return None
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _address(host):
    """Bracket IPv6 literals so the port stays unambiguous."""
    host = str(host).strip()
    if ":" in host and not host.startswith("["):
        return "[%s]" % host
    return host


def _option_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return quote(str(value), safe="")


def failover_url(brokers, hostvars=None, port=61613, port_var="broker_stomp_port",
                 host_vars=("broker_advertised_host", "ansible_host"), scheme="tcp", options=None):
    """failover:(scheme://host:port,...)?k=v for the brokers, in the order given."""
    if isinstance(brokers, str) or brokers is None:
        raise AnsibleFilterError(
            "failover_url expects a list of brokers, got %r. Fix: pass a list such as "
            "groups['brokers']" % (brokers,))
    if isinstance(host_vars, str):
        host_vars = [host_vars]
    if not scheme or not str(scheme).isalnum():
        raise AnsibleFilterError("failover_url scheme %r is not a plain scheme. Fix: use tcp or ssl" % (scheme,))
    uris = []
    for broker in brokers:
        if isinstance(broker, dict):
            name = broker.get("host")
            broker_port = broker.get("port")
        else:
            name, broker_port = broker, None
        if name is None or not str(name).strip():
            raise AnsibleFilterError(
                "failover_url got a broker without a host: %r. Fix: give host names or "
                "dicts with a 'host' key" % (broker,))
        address = None
        for var in host_vars or ():
            address = _lookup(hostvars, name, var)
            if address is not None:
                break
        if broker_port is None:
            broker_port = _lookup(hostvars, name, port_var)
        if broker_port is None:
            broker_port = port
        try:
            broker_port = int(broker_port)
        except (TypeError, ValueError):
            broker_port = -1
        if not 0 < broker_port < 65536:
            raise AnsibleFilterError(
                "failover_url: broker %s has port %r. Fix: set %s (or the port argument) to 1-65535"
                % (name, broker_port, port_var))
        uris.append("%s://%s:%d" % (scheme, _address(address if address is not None else name), broker_port))
    if not uris:
        raise AnsibleFilterError(
            "failover_url got an empty broker list. Fix: check the inventory group you pass in "
            "(e.g. groups['brokers'])")
    url = "failover:(%s)" % ",".join(uris)
    if options:
        if not isinstance(options, dict):
            raise AnsibleFilterError("failover_url options must be a dict, got %r" % (options,))
        url += "?" + "&".join("%s=%s" % (quote(str(k), safe=""), _option_value(v)) for k, v in options.items())
    return url


class FilterModule(object):
    """hamq.cluster filters."""

    def filters(self):
        return {"failover_url": failover_url}
