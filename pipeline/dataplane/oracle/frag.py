"""The fragment table (native/frag.c): a later fragment follows its first fragment's
decision, for 30 s; bounded."""

from __future__ import annotations

from .conntrack import CLOCK_END, SECOND

FRAGMENT_TIMEOUT = 30 * SECOND


class FragTable:
    def __init__(self, limit: int):
        self.limit = limit
        self.entries: dict = {}          # key -> (out port, expiry)

    def lookup(self, key, now: int):
        rec = self.entries.get(key)
        return rec[0] if rec is not None and rec[1] > now else None

    def record(self, key, out: int, now: int) -> bool:
        """False when the table is full of live entries."""
        live = {k: v for k, v in self.entries.items() if v[1] > now}
        if key not in live and len(live) >= self.limit:
            return False
        self.entries = live
        self.entries[key] = (out, min(now + FRAGMENT_TIMEOUT, CLOCK_END))
        return True
