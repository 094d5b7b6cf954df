"""The SSO's signing keys (JWKS), cached in memory and in Django's cache.

Cached for as long as the SSO's Cache-Control allows (``ESI_JWKS_DEFAULT_TTL`` when it
says nothing). A token signed with a key id we do not know triggers a refetch, at
most once per ``ESI_JWKS_REFETCH_INTERVAL`` across all processes sharing the cache,
so a flood of forged kids cannot make us hammer the SSO; when the SSO says not to
cache at all, the last keys fetched keep serving between those refetches. A cache
that is down is logged and worked around, never a reason to fail a verification.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from typing import Any

import requests
from django.core.cache import caches
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from .conf import esi_settings
from .exceptions import SSOMalformedResponseError
from .http import RetryPolicy, get_session, json_answer, transport_error

logger = logging.getLogger(__name__)

Key = RSAKey | ECKey
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)

_lock = threading.Lock()
# url -> (keys by kid, monotonic expiry); spares a cache round trip per verification.
_memory: dict[str, tuple[dict[str, Key], float]] = {}
_last_fetch: dict[str, float] = {}


def _cache_key(url: str, suffix: str = "") -> str:
    return f"esi_views:jwks{suffix}:{hashlib.sha256(url.encode()).hexdigest()[:32]}"


def _ttl(response: requests.Response) -> int:
    header = response.headers.get("Cache-Control", "")
    if "no-store" in header.lower() or "no-cache" in header.lower():
        return 0
    match = _MAX_AGE.search(header)
    return int(match.group(1)) if match else int(esi_settings.JWKS_DEFAULT_TTL)


def _parse(document: Any) -> dict[str, Key]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise SSOMalformedResponseError("The EVE SSO's JWKS has no 'keys' list.")
    keys: dict[str, Key] = {}
    for data in document["keys"]:
        # Skip what we cannot use rather than fail on it (EVE says
        # "SkipUnresolvedJsonWebKeys": a new key type must not break old clients).
        if not isinstance(data, dict) or data.get("kty") not in ("RSA", "EC"):
            continue
        if not isinstance(data.get("kid"), str):
            continue
        try:
            key_class = RSAKey if data["kty"] == "RSA" else ECKey
            keys[data["kid"]] = key_class.import_key(data)
        except (JoseError, ValueError, TypeError):
            continue
    return keys


def _fetch(url: str) -> tuple[dict, int]:
    try:
        response = get_session(RetryPolicy.IDEMPOTENT).request("GET", url, withhold_token=True)
    except requests.RequestException as exc:
        raise transport_error(exc) from exc
    return json_answer(response, "JWKS"), _ttl(response)


def _shared_cache(method: str, *args: Any) -> Any:
    """Call the Django cache; if it is down, say so in the log and carry on without it."""
    try:
        return getattr(caches[esi_settings.JWKS_CACHE_ALIAS], method)(*args)
    except Exception:  # Redis down must not make every token unverifiable
        logger.warning(
            "JWKS cache %r unavailable for %s", esi_settings.JWKS_CACHE_ALIAS, method, exc_info=True
        )
        return None


def _refetch(url: str) -> dict[str, Key]:
    document, ttl = _fetch(url)
    keys = _parse(document)
    now = time.monotonic()
    with _lock:
        # Kept even when already stale (ttl 0): it serves while refetching is limited.
        _memory[url] = (keys, now + ttl)
        _last_fetch[url] = now
    if ttl > 0:
        _shared_cache("set", _cache_key(url), (document, ttl), ttl)
    # Any fetch counts as the once-a-minute refetch an unknown kid may cause.
    _shared_cache("set", _cache_key(url, "-refetch"), 1, int(esi_settings.JWKS_REFETCH_INTERVAL))
    return keys


def _current_keys(url: str) -> dict[str, Key]:
    with _lock:
        entry = _memory.get(url)
    if entry is not None and entry[1] > time.monotonic():
        return entry[0]
    cached = _shared_cache("get", _cache_key(url))
    if cached is not None:
        document, ttl = cached
        keys = _parse(document)
        with _lock:
            # The shared cache does not tell us the remaining lifetime; a shorter local
            # life keeps processes from outliving a rotation by much.
            _memory[url] = (keys, time.monotonic() + min(ttl, 60))
        return keys
    if entry is not None and not _may_refetch(url):
        return entry[0]  # stale, but the SSO said not to cache and we asked recently
    return _refetch(url)


def _may_refetch(url: str) -> bool:
    interval = int(esi_settings.JWKS_REFETCH_INTERVAL)
    # This process's own limit always applies (a DummyCache says yes to every add()),
    # the shared cache's on top spreads it over all processes.
    with _lock:
        last = _last_fetch.get(url)
    if last is not None and time.monotonic() - last < interval:
        return False
    added = _shared_cache("add", _cache_key(url, "-refetch"), 1, interval)
    return added is None or bool(added)


def get_signing_key(kid: str) -> Key | None:
    """The SSO's public key with this id, or None if the SSO does not (or no longer) publish it."""
    url = esi_settings.SSO_JWKS_URL
    keys = _current_keys(url)
    if kid not in keys and _may_refetch(url):
        keys = _refetch(url)
    return keys.get(kid)


def install_keys(document: dict[str, Any], ttl: float = 86400.0) -> None:
    """Serve these keys (a JWKS document) for the configured URL in this process, unfetched.

    For tests (``esi_views.testing.factories``): tokens signed with them verify without an
    SSO. Merged with keys already held; ``clear_jwks_cache()`` forgets them.
    """
    url = esi_settings.SSO_JWKS_URL
    now = time.monotonic()
    with _lock:
        held = _memory.get(url, ({}, 0.0))[0]
        _memory[url] = ({**held, **_parse(document)}, now + ttl)
        _last_fetch[url] = now


def clear_jwks_cache() -> None:
    """Forget cached keys (memory and Django cache) for the configured JWKS URL."""
    url = esi_settings.SSO_JWKS_URL
    with _lock:
        _memory.clear()
        _last_fetch.clear()
    _shared_cache("delete_many", [_cache_key(url), _cache_key(url, "-refetch")])
