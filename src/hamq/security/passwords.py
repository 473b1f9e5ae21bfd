"""Salted password hashes in a self-describing text form, and ``hamq hash-password``.

A broker.xml is copied around (backups, Ansible, tickets), so it must never
hold a password an attacker could reuse: only ``pbkdf2-sha256$<iterations>$<salt>$<hash>``
(salt and hash in unpadded URL-safe base64) is accepted. The format carries its
own cost, so old hashes keep working when the default cost goes up.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import os
import sys
from typing import Optional

SCHEME = "pbkdf2-sha256"
#: Default cost. Verifying runs on the broker's event loop, so this is a
#: trade-off between offline cracking cost and how long one login stalls the
#: loop (about 0.15 s on a small VM); successful logins are cached.
DEFAULT_ITERATIONS = 100_000
MIN_ITERATIONS = 1_000
MAX_ITERATIONS = 10_000_000
SALT_BYTES = 16


class PasswordHashError(ValueError):
    """A stored password is not a hash this broker can verify."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS, salt: Optional[bytes] = None) -> str:
    """A new salted hash of ``password`` in the stored text form."""
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


class PasswordHash:
    """A parsed stored hash; :meth:`verify` compares in constant time."""

    __slots__ = ("iterations", "salt", "digest", "text")

    def __init__(self, text: str):
        parts = text.split("$")
        if len(parts) != 4 or parts[0] != SCHEME:
            raise PasswordHashError(f"it is not a {SCHEME}$<iterations>$<salt>$<hash> string")
        try:
            iterations = int(parts[1])
            salt = _unb64(parts[2])
            digest = _unb64(parts[3])
        except ValueError:
            raise PasswordHashError("its iterations, salt or hash part is malformed") from None
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise PasswordHashError(f"its iteration count {iterations} is outside {MIN_ITERATIONS}..{MAX_ITERATIONS}")
        if len(salt) < 8 or len(digest) != 32:
            raise PasswordHashError("its salt is shorter than 8 bytes or its hash is not 32 bytes")
        self.iterations = iterations
        self.salt = salt
        self.digest = digest
        self.text = text

    def verify(self, password: str) -> bool:
        candidate = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8", "surrogatepass"), self.salt,
                                        self.iterations)
        return hmac.compare_digest(candidate, self.digest)


def looks_like_hash(text: str) -> bool:
    try:
        PasswordHash(text)
    except PasswordHashError:
        return False
    return True


# ---------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.description = ("Print a salted hash for a broker.xml authenticationUser password or a users file. "
                          "The password is read from standard input (first line) or prompted for; "
                          "it is never taken from the command line, where other users could see it.")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help=f"PBKDF2 iterations (default {DEFAULT_ITERATIONS})")


def main(args: argparse.Namespace) -> int:
    if not MIN_ITERATIONS <= args.iterations <= MAX_ITERATIONS:
        print(f"hamq hash-password: --iterations {args.iterations} is out of range. "
              f"Fix: use a value between {MIN_ITERATIONS} and {MAX_ITERATIONS}", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        again = getpass.getpass("Again: ")
        if password != again:
            print("hamq hash-password: the two passwords differ. Fix: type the same password twice",
                  file=sys.stderr)
            return 1
    else:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
    if not password:
        print("hamq hash-password: the password is empty. Fix: give a non-empty password on standard input",
              file=sys.stderr)
        return 1
    print(hash_password(password, args.iterations))
    return 0
