"""A small in-memory cache whose entries expire after a few seconds and whose size is bounded.

Every request of a logged-in person names a session, a token or an account id; asking the
database each time would add a query per request (and Gradio makes many). A few seconds of
memory bounds how long another process can lag behind a change (a disabled account, a revoked
token); in the process that made the change, the entry is dropped at once.

An expired entry is kept (until the size bound pushes it out) for `stale`: while PostgreSQL is
unreachable, a person seen a moment ago is still known, so their request gets the app's own
answer to the outage (a 503 saying to retry) rather than being turned away as a stranger.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")
_MISSING = object()


class ExpiringCache(Generic[V]):
    def __init__(self, ttl_sec: float, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_sec = ttl_sec
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def get(self, key: Hashable, default: object = _MISSING) -> V | object:
        """The value, or `default` (a marker by default: None is a value worth caching)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self.clock():
            return default
        return entry[1]

    def stale(self, key: Hashable, default: object = _MISSING) -> V | object:
        """The value even if it has expired, or `default` if there is none."""
        entry = self._entries.get(key)
        return default if entry is None else entry[1]

    def put(self, key: Hashable, value: V) -> V:
        self._entries[key] = (self.clock() + self.ttl_sec, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def pop(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    @staticmethod
    def missing(value: object) -> bool:
        return value is _MISSING
