"""The one place esi_views talks Lua to Redis: scripts, Redis time, the client, errors.

Every limiter of this package (``rate_limited_task``, the ESI bucket limiter, the SSO
concurrency cap) coordinates workers with small atomic Lua scripts. This module gives
them one way to do it, so all of them work the same on redis-py's ``Redis``, fakeredis
and ``redis.cluster.RedisCluster``.

Writing a script
----------------
1. Put the Lua in a module-level :class:`LuaScript`; nothing is sent to Redis until the
   first call::

       _TAKE = LuaScript('''
       local t = redis.call('TIME')                       -- time from Redis, never ours
       local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
       ...
       return {1, 0}
       ''', name="my-limiter")

2. Name every key the script touches in ``KEYS`` (never build key names inside the Lua),
   and make them all hash to ONE cluster slot: give keys that go together the same
   ``{hash tag}``: ``slot_keys("esi_views:sso:", "sso", "holders", "queue")`` returns
   ``["esi_views:sso:{sso}:holders", "esi_views:sso:{sso}:queue"]``. A script with one
   key is always fine. :class:`LuaScript` refuses (``ValueError``) keys in different
   slots on every client, so a cross-slot script fails in the fakeredis tests, not
   first in production on a cluster.

3. Call it with a client from :func:`get_redis`::

       admitted, wait_us = _TAKE(get_redis(), keys=[key], args=[token, interval_us])

   One call is one round trip (``EVALSHA``); if Redis lost its script cache (restart,
   ``SCRIPT FLUSH``, failover) the script is loaded again and the call repeated.
   Lua numbers are doubles: return integers (microseconds), not fractions. Read the
   clock inside the script with ``redis.call('TIME')`` (Redis 5+ replicates a script's
   effects, so this is safe); outside a script use :func:`redis_time`.

4. Expect :class:`esi_views.exceptions.RedisUnavailableError` (or the ``error`` class
   you gave the script) whenever Redis cannot run it: connection refused, timeout,
   cluster down, out of memory. The original redis-py error is its ``__cause__``.
   Decide per caller what "Redis is down" means (retry later, fail closed, ...).

Which Redis: :func:`get_redis` returns, in order, the client built by the callable named
in ``ESI_RATE_LIMIT_REDIS_CLIENT`` (the way to use a ``RedisCluster``), one client per
``ESI_RATE_LIMIT_REDIS_URL``, or the client behind the Redis cache
``ESI_RATE_LIMIT_CACHE_ALIAS`` (Django's ``RedisCache`` or django-redis).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .conf import esi_settings
from .exceptions import RedisUnavailableError

__all__ = [
    "LuaScript",
    "RedisUnavailableError",
    "get_redis",
    "is_redis_error",
    "key_slot",
    "redis_configured",
    "redis_errors",
    "redis_time",
    "redis_time_us",
    "slot_keys",
]

CLUSTER_SLOTS = 16384

_clients_lock = threading.Lock()
_url_clients: dict[str, Any] = {}
_factory_clients: dict[str, Any] = {}


def is_redis_error(exc: BaseException) -> bool:
    """True for anything redis-py raises when Redis (or a cluster) cannot do the work."""
    try:
        from redis.exceptions import RedisClusterException, RedisError
    except ImportError:  # pragma: no cover - without redis there is no client to fail
        return False
    # RedisClusterException is not a RedisError: it is what an unreachable cluster raises.
    return isinstance(exc, RedisError | RedisClusterException)


@contextmanager
def redis_errors(
    what: str, error: type[RedisUnavailableError] = RedisUnavailableError
) -> Iterator[None]:
    """Turn Redis failures inside the block into ``error`` (``what`` names the job)."""
    try:
        yield
    except Exception as exc:
        if is_redis_error(exc):
            raise error(f"{what}: Redis is unavailable ({type(exc).__name__}: {exc})") from exc
        raise


def key_slot(key: str | bytes) -> int:
    """The Redis Cluster slot of ``key`` (CRC16 of its ``{hash tag}`` if it has one)."""
    data = key.encode() if isinstance(key, str) else key
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:  # an empty tag "{}" does not count, as in Redis
            data = data[start + 1 : end]
    crc = 0
    for byte in data:  # CRC16-CCITT (XMODEM), as Redis Cluster specifies
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc % CLUSTER_SLOTS


def slot_keys(prefix: str, tag: str, *names: str) -> list[str]:
    """Keys ``f"{prefix}{{{tag}}}:{name}"``: one cluster slot for all of them.

    ``tag`` must not contain braces (it would end the hash tag early).
    """
    if "{" in tag or "}" in tag:
        raise ValueError(f"A hash tag cannot contain braces: {tag!r}")
    if "{" in prefix:
        # Redis uses the FIRST {...}: a brace in the prefix would become the tag.
        raise ValueError(f"A key prefix used with hash tags cannot contain '{{': {prefix!r}")
    return [f"{prefix}{{{tag}}}:{name}" for name in names]


class LuaScript:
    """A Lua script run with ``EVALSHA``, loaded again when Redis answers ``NOSCRIPT``.

    Holds no client: pass one per call, so one module-level script serves every client
    (a plain Redis, fakeredis, a cluster; several Redis URLs in one process).
    """

    def __init__(
        self, source: str, *, name: str, error: type[RedisUnavailableError] = RedisUnavailableError
    ) -> None:
        self.source = source
        self.name = name
        self.error = error
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __repr__(self) -> str:
        return f"<LuaScript {self.name} {self.sha[:8]}>"

    def __call__(self, client: Any, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
        if len({key_slot(key) for key in keys}) > 1:
            raise ValueError(
                f"Lua script {self.name}: keys {list(keys)} are in different cluster slots; "
                "give them one {hash tag} (see esi_views.redis_scripts.slot_keys)."
            )
        with redis_errors(f"Lua script {self.name}", self.error):
            return self._run(client, list(keys), list(args))

    def _run(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import NoScriptError

        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            pass
        # Redis lost the script (restart, SCRIPT FLUSH, failover). On a cluster SCRIPT
        # LOAD goes to every primary; if a node still misses it (topology changing under
        # us), EVAL sends the body itself.
        client.script_load(self.source)
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)


def redis_time_us(client: Any) -> int:
    """Redis's clock in microseconds (one round trip); raises RedisUnavailableError."""
    with redis_errors("Reading the Redis time"):
        seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def redis_time(client: Any) -> float:
    """Redis's clock in seconds since the epoch, shared by every worker."""
    return redis_time_us(client) / 1_000_000


def _client_from_factory(path: str) -> Any:
    client = _factory_clients.get(path)
    if client is None:
        with _clients_lock:
            client = _factory_clients.get(path)
            if client is None:
                factory = import_string(path)
                # A cluster client connects when built: an unreachable cluster is "down".
                with redis_errors(f"ESI_RATE_LIMIT_REDIS_CLIENT {path}"):
                    client = _factory_clients[path] = factory()
    return client


def _client_from_url(url: str) -> Any:
    client = _url_clients.get(url)
    if client is None:
        with _clients_lock:
            client = _url_clients.get(url)
            if client is None:
                import redis

                client = _url_clients[url] = redis.Redis.from_url(
                    url, socket_connect_timeout=5, socket_timeout=5, health_check_interval=30
                )
    return client


def get_redis() -> Any:
    """The Redis client every esi_views limiter coordinates on (see the module docstring).

    One client (and connection pool) per URL or factory per process. Raises
    ``ImproperlyConfigured`` when none is configured and the cache is not Redis.
    """
    factory = esi_settings.RATE_LIMIT_REDIS_CLIENT
    if factory:
        return _client_from_factory(factory)
    url = esi_settings.RATE_LIMIT_REDIS_URL
    if url:
        return _client_from_url(url)
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    alias = esi_settings.RATE_LIMIT_CACHE_ALIAS
    cache = caches[alias]
    if isinstance(cache, RedisCache):
        return cache._cache.get_client(write=True)
    client_factory = getattr(getattr(cache, "client", None), "get_client", None)
    if type(cache).__module__.startswith("django_redis") and client_factory:
        return client_factory()
    raise ImproperlyConfigured(
        f"esi_views needs Redis to coordinate workers, but the {alias!r} cache is "
        f"{type(cache).__module__}.{type(cache).__name__}. Set ESI_RATE_LIMIT_REDIS_URL "
        "(or ESI_RATE_LIMIT_REDIS_CLIENT) or use a Redis cache backend."
    )


def redis_configured() -> bool:
    """Whether a Redis is configured for :func:`get_redis` (reachable or not)."""
    try:
        get_redis()
    except ImproperlyConfigured:
        return False
    except RedisUnavailableError:
        return True  # configured, but down right now
    return True
