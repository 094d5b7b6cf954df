"""Our settings, read lazily from ``django.conf.settings`` with documented defaults.

``esi_settings.SSO_TOKEN_URL`` reads ``ESI_SSO_TOKEN_URL``; values are cached and the
cache is dropped on Django's ``setting_changed`` signal, so ``override_settings`` works.
Every name here is listed under "Settings" in the package documentation.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.signals import setting_changed

PREFIX = "ESI_"
EVE_SSO_BASE_URL = "https://login.eveonline.com"

DEFAULTS: dict[str, Any] = {
    "SSO_CLIENT_ID": "",
    "SSO_CLIENT_SECRET": "",
    "SSO_CALLBACK_URL": "",
    "USER_CONTACT_EMAIL": "",
    # One base URL moves every endpoint (how the fake SSO takes over); each
    # endpoint can still be set on its own.
    "SSO_BASE_URL": EVE_SSO_BASE_URL,
    "SSO_AUTHORIZE_URL": None,
    "SSO_TOKEN_URL": None,
    "SSO_REVOKE_URL": None,
    "SSO_JWKS_URL": None,
    "SSO_ISSUERS": None,
    # (connect, read) seconds for every request to the SSO.
    "SSO_TIMEOUT": (5.0, 15.0),
    "SSO_MAX_RETRIES": 3,
    "SSO_BACKOFF_FACTOR": 0.25,
    # A Retry-After longer than this is not waited for in-process: the call fails
    # as transient and carries the server's Retry-After for the caller to honour.
    "SSO_MAX_RETRY_AFTER": 10.0,
    "JWT_LEEWAY": 5,
    "JWKS_CACHE_ALIAS": "default",
    # Tokens expiring within this many seconds count as expired (refreshed before use).
    "TOKEN_REFRESH_MARGIN": 30,
    # Calls to the SSO token endpoint in flight at once across ALL processes (a lease-based
    # semaphore in Redis; per process without Redis). None: no cap. The SSO fails above ~5.
    "SSO_MAX_CONCURRENCY": 4,
    # Longest wait (seconds) for a slot; then the call fails as transient (token kept).
    "SSO_CONCURRENCY_TIMEOUT": 10.0,
    # Seconds after which a holder's slot frees itself (a crashed worker). None: the
    # longest call SSO_TIMEOUT, SSO_MAX_RETRIES and SSO_MAX_RETRY_AFTER allow, plus 5 s.
    "SSO_CONCURRENCY_LEASE": None,
    # Parallel SSO calls when many tokens need refreshing at once.
    "REFRESH_CONCURRENCY": 8,
    "ALWAYS_CREATE_TOKEN": False,
    # esi_views.auth.EveSSOBackend: a character linked to no account creates one.
    "LOGIN_CREATE_USERS": True,
    # Scopes esi_views:login asks for when its link names none (log in, "add a character").
    "LOGIN_SCOPES": (),
    # Scopes offered by the characters page's "grant more scopes"; None: every known Scope.
    "GRANTABLE_SCOPES": None,
    # How long an SSO flow (or a token selection) may take, start to hand-back, in seconds.
    "CALLBACK_MAX_AGE": 300,
    # Largest POST (urlencoded bytes) kept with a flow so the view is re-entered by POST.
    "REENTRY_MAX_BYTES": 16384,
    # Open flows one session may hold (tabs in parallel); starting one more drops the oldest.
    "MAX_FLOWS_PER_SESSION": 10,
    # Character portraits on the selection page; the fake SSO serves its own.
    "CHARACTER_PORTRAIT_URL": "https://images.evetech.net/characters/{character_id}/portrait?size={size}",
    "JWKS_DEFAULT_TTL": 300,
    "JWKS_REFETCH_INTERVAL": 60,
    # The Redis every limiter coordinates on (rate_limited_task, ESI buckets, the SSO cap):
    # a dotted path to a callable returning a client (e.g. a RedisCluster) wins, then a
    # Redis URL of its own, else the Redis cache of this alias.
    "RATE_LIMIT_REDIS_CLIENT": "",
    "RATE_LIMIT_REDIS_URL": "",
    "RATE_LIMIT_CACHE_ALIAS": "default",
    "RATE_LIMIT_KEY_PREFIX": "esi_views:ratelimit:",
    # Longest countdown given to one retry. Redis/SQS brokers redeliver messages held
    # longer than their visibility timeout (1 h by default), so a longer wait is split.
    "RATE_LIMIT_MAX_COUNTDOWN": 1800,
    # Waits up to this many seconds are slept through in the worker instead of retried:
    # cheaper than a broker round trip, and exact where ETAs are not.
    "RATE_LIMIT_MAX_SLEEP": 0.25,
    # Upper bound (seconds) of the backoff while the limiter's Redis is unreachable.
    "RATE_LIMIT_BACKOFF_MAX": 60,
    # Cleanup (esi_views.cleanup / esi_views.tasks / manage.py esi_cleanup).
    # Tokens without a user (single-use, anonymous login) younger than this many
    # seconds belong to an SSO flow that may still be running: cleanup never touches them.
    "SINGLE_USE_TOKEN_MAX_AGE": 3600,
    # Tokens handed to one refresh_tokens() call (one transaction, one row-lock set).
    "CLEANUP_BATCH_SIZE": 100,
    # Stop calling the SSO after this many transient failures with no answer between.
    "CLEANUP_MAX_TRANSIENT_FAILURES": 5,
    # A Retry-After up to this many seconds is slept through; a longer one stops the run.
    "CLEANUP_MAX_WAIT": 30,
    # Django cache holding the subset task's run counter (must be shared by all workers).
    "CLEANUP_CACHE_ALIAS": "default",
    # Calling ESI (esi_views.esi).
    "API_URL": "https://esi.evetech.net",
    # Which API behaviour ESI gives us (X-Compatibility-Date); pinned, move it on purpose.
    "COMPATIBILITY_DATE": "2025-11-06",
    # (connect, read) seconds for every request to ESI.
    "API_TIMEOUT": (5.0, 30.0),
    # Names the application in the User-Agent CCP asks for, e.g. "MyCorpTool/1.2".
    "APP_NAME": "",
    # Django cache for ETag/Expires answers (per-process caches work, shared ones share).
    "API_CACHE_ALIAS": "default",
    "LIMITER_KEY_PREFIX": "esi_views:esi:",
    # Share of each bucket never planned (rounded up), and at least this many tokens.
    "HEADROOM": 0.05,
    "MIN_HEADROOM": 2,
    # Outside deferring tasks, a call waits for its bucket up to this many seconds, then raises.
    "MAX_WAIT": 5.0,
    # Random seconds (0..this) added to a 429's Retry-After, so workers do not return together.
    "RETRY_JITTER": 1.0,
    # Longest shared backoff after 429s without Retry-After (seconds; doubles from 1 s).
    "BACKOFF_MAX": 60.0,
    # Below this many errors left in ESI's error window, only calls expected to succeed go.
    "ERROR_LIMIT_THRESHOLD": 10,
    # get_all() fetches at most this many pages.
    "MAX_PAGES": 100,
    # The bucket size assumed for a limited group whose X-Ratelimit-Limit is unreadable.
    "DEFAULT_RATE_LIMIT": "150/15m",
}

_ENDPOINT_PATHS = {
    "SSO_AUTHORIZE_URL": "/v2/oauth/authorize",
    "SSO_TOKEN_URL": "/v2/oauth/token",
    "SSO_REVOKE_URL": "/v2/oauth/revoke",
    "SSO_JWKS_URL": "/oauth/jwks",
}


class EsiSettings:
    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Unknown esi_views setting {PREFIX}{name}")
        if name not in self._cache:
            self._cache[name] = self._resolve(name)
        return self._cache[name]

    def _resolve(self, name: str) -> Any:
        value = getattr(settings, PREFIX + name, DEFAULTS[name])
        if value is None and name in _ENDPOINT_PATHS:
            return self.SSO_BASE_URL.rstrip("/") + _ENDPOINT_PATHS[name]
        if value is None and name == "SSO_ISSUERS":
            # EVE writes its issuer both with and without the scheme.
            base = self.SSO_BASE_URL.rstrip("/")
            return frozenset({base, urlsplit(base).netloc})
        if name == "SSO_ISSUERS":
            return frozenset(value)
        return value

    def reload(self) -> None:
        self._cache.clear()


esi_settings = EsiSettings()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(PREFIX):
        esi_settings.reload()


setting_changed.connect(_on_setting_changed)
