"""Short signed values (HMAC-SHA256 with the site's secret key), bound to a purpose so a
value signed for one form cannot be replayed in another."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret_key: str, purpose: str, value: str) -> str:
    """Return ``value.signature``; ``value`` must not contain a dot."""
    if "." in value:
        raise ValueError("a signed value cannot contain '.'")
    return f"{value}.{_mac(secret_key, purpose, value)}"


def unsign(secret_key: str, purpose: str, token: str) -> str | None:
    """Return the value of a token signed for this purpose, or None if it was not."""
    value, dot, mac = token.partition(".")
    if not dot or not hmac.compare_digest(mac, _mac(secret_key, purpose, value)):
        return None
    return value


def same_secret(expected: str, given: str) -> bool:
    """Return whether two secrets are equal, in time that does not depend on where they differ."""
    return hmac.compare_digest(expected.encode(), given.encode())


def _mac(secret_key: str, purpose: str, value: str) -> str:
    message = f"{purpose}\x00{value}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()[:32]
