"""Failed page logins, counted per client address and per username: past a limit, further
tries are refused for a while before any password is checked.

Without it a script could try passwords against the login form as fast as the server checks
them (and each check is an argon2id hash: CPU an attacker spends of ours). Counts live in this
process (with ``--workers N``, each process counts its own) and are forgotten on restart.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

MAX_FAILURES_PER_ADDRESS = 10
MAX_FAILURES_PER_USERNAME = 10
WINDOW_S = 15 * 60.0
_PRUNE_AT = 10_000  # keys kept before those with no recent failure are dropped


class LoginThrottle:
    def __init__(
        self,
        *,
        per_address: int = MAX_FAILURES_PER_ADDRESS,
        per_username: int = MAX_FAILURES_PER_USERNAME,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {"address": per_address, "username": per_username}
        self._window_s = window_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, address: str, username: str) -> int:
        """Seconds until this address may try this username again; 0: it may now."""
        now = self._clock()
        with self._lock:
            waits = [
                self._window_s - (now - failures[0])
                for key in self._keys(address, username)
                if len(failures := self._recent(key, now)) >= self._limits[key[0]]
            ]
        return max(1, round(max(waits))) if waits else 0

    def failed(self, address: str, username: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) >= _PRUNE_AT:
                for key in list(self._failures):
                    if not self._recent(key, now):
                        del self._failures[key]
            for key in self._keys(address, username):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, username: str) -> None:
        """Forget the username's failures (not the address's: one right password among many
        tries does not clear them)."""
        with self._lock:
            self._failures.pop(("username", _normal(username)), None)

    def _keys(self, address: str, username: str) -> tuple[tuple[str, str], ...]:
        return (("address", address), ("username", _normal(username)))

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        """The key's failures within the window (older ones dropped); empty when none."""
        failures = self._failures.get(key, deque())
        while failures and now - failures[0] >= self._window_s:
            failures.popleft()
        return failures


def _normal(username: str) -> str:
    return username.strip().lower()
