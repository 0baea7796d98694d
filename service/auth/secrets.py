"""API token secrets and password hashes: what is stored is never what is shown."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "vgl_"  # noqa: S105 - a prefix, not a secret
_hasher = PasswordHasher()


@dataclass(frozen=True)
class NewToken:
    """A freshly made token: ``secret`` is shown once, only ``sha256`` is stored."""

    secret: str
    prefix: str
    sha256: str


def new_token() -> NewToken:
    """Return a new random API token (256 bits of entropy)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return NewToken(secret=secret, prefix=secret[:12], sha256=token_sha256(secret))


def token_sha256(secret: str) -> str:
    """Return the SHA-256 hex digest under which a token is stored.

    A fast hash is right here: tokens are random, so there is nothing to guess.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    """Return an argon2id hash of a password."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Return whether a password matches its stored argon2 hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
