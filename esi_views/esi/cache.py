"""ESI answers kept in Django's cache by ETag and Expires.

A GET answered 200 is stored under its URL, query and the character whose token made it
(one character's data is never served to another). Before ``Expires`` a repeat is
answered from here without a request; after it, the ETag is sent as ``If-None-Match``
and a 304 (1 token instead of 2) brings the stored body back to life.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches

from ..conf import esi_settings

logger = logging.getLogger("esi_views.esi")

# Kept after Expires so the ETag can still be revalidated.
REVALIDATE_FOR = 3600


@dataclass
class CachedAnswer:
    status: int
    body: bytes
    headers: dict[str, str]
    etag: str | None
    fresh_until: float  # time.time()

    @property
    def fresh(self) -> bool:
        return time.time() < self.fresh_until


def cache_key(url: str, params: Any, character_id: int | None) -> str:
    raw = repr((url, sorted((params or {}).items()), character_id, esi_settings.COMPATIBILITY_DATE))
    digest = hashlib.sha256(raw.encode()).hexdigest()
    return f"esi_views:esi:answer:{digest}"


def _cache():
    return caches[esi_settings.API_CACHE_ALIAS]


def get(key: str) -> CachedAnswer | None:
    try:
        value = _cache().get(key)
    except Exception as exc:  # a cache that is down costs tokens, not the call
        logger.warning("ESI answer cache unavailable (%s); calling ESI.", exc)
        return None
    return value if isinstance(value, CachedAnswer) else None


def put(key: str, answer: CachedAnswer) -> None:
    timeout = max(1, int(answer.fresh_until - time.time()) + (REVALIDATE_FOR if answer.etag else 0))
    try:
        _cache().set(key, answer, timeout)
    except Exception as exc:
        logger.warning("Could not cache an ESI answer (%s).", exc)
