"""Server keys' format (docs/agents.md, "Server keys"): ``bsk_<8 characters>_<43 characters>``; and the secret
Brook signs its calls to a tenant's agent with.

The part before the second underscore is the key's ``prefix``: stored in clear, shown in lists, unique, and how a
presented key is looked up. The whole key is 256 random bits, so it is stored as a plain SHA-256 hash (a slow
password hash guards guessable secrets; this one cannot be guessed) and compared in constant time. Pure code: no
database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

SCHEME = "bsk"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
PREFIX_LENGTH = len(SCHEME) + 1 + 8  # "bsk_" + 8
KEY_LENGTH = PREFIX_LENGTH + 1 + 43  # + "_" + 32 bytes, URL-safe base64


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key as made: ``key`` is shown once; ``prefix`` and ``secret_hash`` are what is stored."""

    key: str
    prefix: str
    secret_hash: str


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> NewKey:
    prefix = f"{SCHEME}_" + "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(key=key, prefix=prefix, secret_hash=key_hash(key))


def key_prefix(presented: str) -> str | None:
    """The prefix of something shaped like a server key, else None (nothing worth a database lookup)."""
    if len(presented) != KEY_LENGTH or not presented.startswith(f"{SCHEME}_") or presented[PREFIX_LENGTH] != "_":
        return None
    prefix = presented[:PREFIX_LENGTH]
    if not all(c in _PREFIX_ALPHABET for c in prefix[len(SCHEME) + 1 :]):
        return None
    return prefix


def key_matches(presented: str, secret_hash: str) -> bool:
    return hmac.compare_digest(key_hash(presented), secret_hash)


def new_signing_secret() -> str:
    """A secret Brook signs its requests to a tenant's agent with, in Standard Webhooks' format: ``whsec_`` and
    24 random bytes in base64 (https://www.standardwebhooks.com/)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
