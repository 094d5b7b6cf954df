"""What we learned about each route's rate-limit group, remembered per process and shared
through Django's cache (so one process's first call teaches the others).

A route with no known group is *unknown*: its calls are probed one at a time per caller
(see client). A route that answered without ``X-Ratelimit-*`` headers is *unlimited*
(only the error limit applies) until ``UNLIMITED_TTL`` passes and it is probed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass

from django.core.cache import caches

from ..conf import esi_settings
from ..ratelimit import parse_rate

UNLIMITED_TTL = 3600.0
KNOWN_TTL = 86400


@dataclass(frozen=True)
class GroupInfo:
    group: str | None  # None: not limited
    limit: int
    window: float
    learned_at: float


_lock = threading.Lock()
_known: dict[tuple[str, str], GroupInfo] = {}


def default_rate() -> tuple[int, float]:
    rate = parse_rate(esi_settings.DEFAULT_RATE_LIMIT)
    return rate.count, float(rate.window_seconds)


def _cache_key(method: str, template: str) -> str:
    digest = hashlib.sha256(f"{method} {template}".encode()).hexdigest()[:32]
    return f"esi_views:esi:group:{digest}"


def lookup(method: str, template: str) -> GroupInfo | None:
    info = _known.get((method, template))
    if info is None:
        try:
            cached = caches[esi_settings.API_CACHE_ALIAS].get(_cache_key(method, template))
        except Exception:
            cached = None
        if isinstance(cached, GroupInfo):
            info = cached
            with _lock:
                _known[(method, template)] = info
    if info is not None and info.group is None and time.time() - info.learned_at > UNLIMITED_TTL:
        return None
    return info


def learn(
    method: str, template: str, group: str | None, limit: int | None, window: float | None
) -> GroupInfo:
    old = _known.get((method, template))
    if group is not None and (limit is None or window is None):
        # Limited, but the limit is unreadable: keep what we knew, else the default.
        if old is not None and old.group == group:
            limit, window = old.limit, old.window
        else:
            limit, window = default_rate()
    info = GroupInfo(group, limit or 0, window or 0.0, time.time())
    if old is None or (old.group, old.limit, old.window) != (info.group, info.limit, info.window):
        with contextlib.suppress(Exception):  # sharing is an optimisation only
            caches[esi_settings.API_CACHE_ALIAS].set(_cache_key(method, template), info, KNOWN_TTL)
    with _lock:
        _known[(method, template)] = info
    return info


def forget() -> None:
    """Forget everything learned in this process (tests)."""
    with _lock:
        _known.clear()


def unlearn(method: str, template: str) -> None:
    """Treat the route as unknown again (it answered 429 without naming its group)."""
    with _lock:
        _known.pop((method, template), None)
    with contextlib.suppress(Exception):
        caches[esi_settings.API_CACHE_ALIAS].delete(_cache_key(method, template))
