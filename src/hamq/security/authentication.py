"""Who is connecting: CONNECT ``login``/``passcode`` checked against salted hashes.

Mirrors ActiveMQ's ``simpleAuthenticationPlugin``. Every answer to a bad
login is the same ("login failed") so an attacker cannot probe for user
names, and an unknown user costs as much hashing as a known one. A client
address that keeps failing is made to wait, doubling each time, so guessing
passwords over the network is slow; see :class:`LoginThrottle`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections import OrderedDict
from typing import Dict, FrozenSet, Optional, Tuple

from hamq.security.model import ANONYMOUS_GROUP, ANONYMOUS_USER, AuthenticationConfig
from hamq.security.passwords import DEFAULT_ITERATIONS, SCHEME, PasswordHash, _b64


class AccessDenied(Exception):
    """Refused by security; ``problem`` and ``fix`` become an ERROR frame."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


class Principal:
    """An authenticated user and its groups."""

    __slots__ = ("username", "groups")

    def __init__(self, username: str, groups):
        self.username = username
        self.groups: FrozenSet[str] = frozenset(groups)

    def __repr__(self) -> str:
        return f"Principal({self.username!r}, {sorted(self.groups)!r})"


class LoginThrottle:
    """Per-address failed-login counter with exponential back-off.

    After ``max_failures`` failures in a row an address must wait ``base_delay_s``,
    then twice that after each further failure, up to ``max_delay_s``. While it
    waits even a correct password is refused, so the wait cannot be used to
    test guesses. A success clears the address. At most ``max_addresses`` are
    remembered (oldest forgotten first) so a scan from many addresses cannot
    grow memory without bound.
    """

    def __init__(self, max_failures: int = 5, base_delay_s: float = 1.0, max_delay_s: float = 60.0,
                 max_addresses: int = 10_000):
        self.max_failures = max_failures
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_addresses = max_addresses
        #: address -> (consecutive failures, blocked until)
        self._state: "OrderedDict[str, Tuple[int, float]]" = OrderedDict()

    def wait_time(self, address: str, now: float) -> float:
        """Seconds ``address`` must still wait before its next login attempt (0 = go ahead)."""
        state = self._state.get(address)
        if state is None:
            return 0.0
        failures, until = state
        if now >= until + self.max_delay_s:
            del self._state[address]  # quiet for long enough: forget it
            return 0.0
        return max(0.0, until - now)

    def failure(self, address: str, now: float) -> None:
        failures, _until = self._state.pop(address, (0, 0.0))
        failures += 1
        until = now
        if failures >= self.max_failures:
            until = now + min(self.max_delay_s, self.base_delay_s * 2 ** (failures - self.max_failures))
        self._state[address] = (failures, until)
        while len(self._state) > self.max_addresses:
            self._state.popitem(last=False)

    def success(self, address: str) -> None:
        self._state.pop(address, None)

    def __len__(self) -> int:
        return len(self._state)


def peer_address(peer) -> str:
    """The unit that login throttling counts by: the IPv4 address, or the IPv6 /64.

    One IPv6 host usually owns a whole /64, so counting single IPv6 addresses
    would let it try a new address for every guess.
    """
    if isinstance(peer, (tuple, list)) and peer:
        host = str(peer[0])
        if ":" in host:
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                return host
            if ip.version == 6 and ip.ipv4_mapped is None:
                return str(ipaddress.ip_network(f"{ip}/64", strict=False))
            if ip.version == 6:
                return str(ip.ipv4_mapped)
        return host
    return str(peer or "local")


class Authenticator:
    """Checks CONNECT credentials; ``config`` None means no plugin (anonymous allowed)."""

    def __init__(self, config: Optional[AuthenticationConfig]):
        self.config = config
        self.enabled = config is not None
        self.anonymous_allowed = config is None or config.anonymous_access_allowed
        self.anonymous = Principal(config.anonymous_user if config else ANONYMOUS_USER,
                                   [config.anonymous_group if config else ANONYMOUS_GROUP])
        self._hashes: Dict[str, PasswordHash] = {}
        self._groups: Dict[str, Tuple[str, ...]] = {}
        if config is not None:
            for name, user in config.users.items():
                self._hashes[name] = PasswordHash(user.password)
                self._groups[name] = user.groups
            self.throttle = LoginThrottle(config.max_login_failures, 1.0, config.max_login_delay_s)
        else:
            self.throttle = LoginThrottle()
        # Unknown users are checked against a random hash of the same cost as the real ones,
        # so they take the same time (no real hash is computed to build it).
        iterations = max((h.iterations for h in self._hashes.values()), default=DEFAULT_ITERATIONS)
        self._dummy = PasswordHash(f"{SCHEME}${iterations}${_b64(os.urandom(16))}${_b64(os.urandom(32))}")
        # Successful logins are remembered as keyed digests (never the password), so a
        # reconnect storm after a failover does not pay the full hash cost per client.
        self._cache_key = os.urandom(32)
        self._verified: Dict[str, bytes] = {}

    def authenticate(self, peer, login: Optional[str], passcode: Optional[str], now: float) -> Principal:
        """The principal for these credentials, or :class:`AccessDenied`."""
        if not self.enabled:
            return self.anonymous
        if login is None and passcode is None:
            if self.anonymous_allowed:
                return self.anonymous
            raise AccessDenied("this broker requires a login: the CONNECT frame has no login and passcode headers",
                               "send login:<user> and passcode:<password> with CONNECT")
        address = peer_address(peer)
        wait = self.throttle.wait_time(address, now)
        if wait > 0:
            raise AccessDenied(f"too many failed logins from {address}; the next attempt is accepted in "
                               f"{wait:.0f} s", "wait, then connect with the right login and passcode")
        if self._check(login or "", passcode or ""):
            self.throttle.success(address)
            return Principal(login, self._groups.get(login, ()))
        self.throttle.failure(address, now)
        raise AccessDenied("login failed: unknown user or wrong password",
                           "check the login and passcode headers of CONNECT")

    def _check(self, login: str, passcode: str) -> bool:
        stored = self._hashes.get(login)
        secret = passcode.encode("utf-8", "surrogatepass")
        keyed = hmac.new(self._cache_key, login.encode("utf-8", "surrogatepass") + b"\0" + secret,
                         hashlib.sha256).digest()
        remembered = self._verified.get(login)
        if stored is not None and remembered is not None and hmac.compare_digest(keyed, remembered):
            return True
        ok = (stored or self._dummy).verify(passcode) and stored is not None
        if ok:
            self._verified[login] = keyed
        return ok
