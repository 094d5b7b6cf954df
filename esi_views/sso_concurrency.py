"""At most ``ESI_SSO_MAX_CONCURRENCY`` calls to the SSO token endpoint at once, fleet-wide.

The EVE SSO answers 500s and resets connections above about five concurrent refreshes,
and one process of ours alone refreshes ``ESI_REFRESH_CONCURRENCY`` tokens at a time. So
every token-endpoint call (refresh, code exchange) first takes a slot of a semaphore in
Redis, shared by every thread and process:

- A slot is a lease: a member of a sorted set scored with its expiry (Redis time). A
  holder that crashes never releases, and its slot frees itself when the lease runs out.
  The lease covers the longest call the SSO client can make (timeouts, retries,
  ``Retry-After``), so it never runs out under a live call; ``ESI_SSO_CONCURRENCY_LEASE``
  shortens it.
- Waiters queue in arrival order (a second sorted set) and a slot goes to the head of
  the queue, so nobody is starved by luckier pollers. Waiters poll (one round trip
  every few tens of milliseconds); one that stops polling drops out of the queue.
- Nobody waits longer than ``ESI_SSO_CONCURRENCY_TIMEOUT``: then the call fails with
  ``SSOConcurrencyTimeoutError``, a transient error (the token is kept, retry later).

All keys carry one ``{hash tag}``, so the scripts run on a Redis Cluster too. Without a
Redis (e.g. a LocMem cache in a small site) or while Redis is unreachable, a semaphore
in this process stands in: the cap then holds per process only (system check W011).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from .conf import esi_settings
from .exceptions import RedisUnavailableError, SSOConcurrencyTimeoutError
from .redis_scripts import LuaScript, get_redis, redis_configured, slot_keys

__all__ = ["LocalSemaphore", "RedisSemaphore", "default_lease", "token_endpoint_slot"]

logger = logging.getLogger(__name__)

# KEYS: holders, queue, alive. ARGV: holder id, limit, lease us, waiter ttl us.
# Returns {1, 0, 0} when the slot is taken, else {0, place in line, us to first expiry}.
_ACQUIRE = LuaScript(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local id, limit = ARGV[1], tonumber(ARGV[2])
local lease, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)  -- expired leases: crashed holders
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 500)
if #gone > 0 then  -- waiters that stopped asking leave the line
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[3], unpack(gone))
end
local keep = math.ceil((lease + ttl) / 1000)
if not redis.call('ZSCORE', KEYS[2], id) then
  if redis.call('ZSCORE', KEYS[1], id) then  -- already ours (a reply lost on the way)
    redis.call('ZADD', KEYS[1], now + lease, id)
    return {1, 0, 0}
  end
  redis.call('ZADD', KEYS[2], now, id)
end
local free = limit - redis.call('ZCARD', KEYS[1])
local place = redis.call('ZRANK', KEYS[2], id)
if place < free then
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[1], now + lease, id)
  redis.call('PEXPIRE', KEYS[1], keep)
  redis.call('PEXPIRE', KEYS[2], keep)
  redis.call('PEXPIRE', KEYS[3], keep)
  return {1, 0, 0}
end
redis.call('ZADD', KEYS[3], now + ttl, id)
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
redis.call('PEXPIRE', KEYS[3], keep)
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local until_free = first[2] and math.max(0, tonumber(first[2]) - now) or 0
return {0, place - free + 1, until_free}
""",
    name="sso-semaphore-acquire",
)

# KEYS: holders, queue, alive. ARGV: holder id. Returns 1 if it still held a slot.
_RELEASE = LuaScript(
    """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
""",
    name="sso-semaphore-release",
)


def default_lease() -> float:
    """Seconds the longest token-endpoint call of our SSO client can take, plus a margin."""
    connect, read = (float(v) for v in esi_settings.SSO_TIMEOUT)
    retries = int(esi_settings.SSO_MAX_RETRIES)
    backoff = float(esi_settings.SSO_BACKOFF_FACTOR) * (2**retries)
    return (
        (connect + read) * (retries + 1)
        + float(esi_settings.SSO_MAX_RETRY_AFTER) * retries
        + backoff
        + 5.0
    )


class RedisSemaphore:
    """A fair, lease-based semaphore of ``limit`` slots in Redis (see the module docstring)."""

    poll_interval = 0.05  # seconds between a waiter's polls (jittered down to half)
    waiter_ttl = 5.0  # a waiter silent this long leaves the queue

    def __init__(
        self, name: str, limit: int, *, lease: float, client: Any = None, prefix: str | None = None
    ) -> None:
        if limit < 1:
            raise ValueError(f"A semaphore needs at least one slot, not {limit}.")
        self.name, self.limit, self.lease = name, int(limit), float(lease)
        self.client = client
        prefix = esi_settings.RATE_LIMIT_KEY_PREFIX if prefix is None else prefix
        self.keys = slot_keys(f"{prefix}semaphore:", name, "holders", "queue", "alive")

    def get_client(self) -> Any:
        return self.client if self.client is not None else get_redis()

    def try_acquire(self, holder: str) -> tuple[bool, int, float]:
        """One round trip: (taken, place in line, seconds until the first lease ends)."""
        taken, place, until_free = _ACQUIRE(
            self.get_client(),
            keys=self.keys,
            args=[holder, self.limit, int(self.lease * 1e6), int(self.waiter_ttl * 1e6)],
        )
        return bool(taken), int(place), int(until_free) / 1e6

    def release(self, holder: str) -> bool:
        """Give the slot back (or leave the queue). False when the lease had run out."""
        return bool(_RELEASE(self.get_client(), keys=self.keys, args=[holder]))

    def acquire(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` seconds for a slot; its holder id, or None if none came."""
        holder = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        try:
            while True:
                taken, _, _ = self.try_acquire(holder)
                if taken:
                    return holder
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.release(holder)  # out of the line, so nobody waits behind a ghost
                    return None
                time.sleep(min(remaining, self.poll_interval * random.uniform(0.5, 1.0)))  # noqa: S311
        except BaseException:
            # Interrupted (Redis down, KeyboardInterrupt): do not hold or queue for nothing.
            with suppress(RedisUnavailableError):  # else the lease or the waiter ttl clears it
                self.release(holder)
            raise

    def finish(self, holder: str) -> None:
        """``release`` after the work, saying so in the log when something was off."""
        try:
            if not self.release(holder):
                logger.warning(
                    "The lease on semaphore %s ran out before its holder finished "
                    "(ESI_SSO_CONCURRENCY_LEASE %.1f s is too short?).",
                    self.name,
                    self.lease,
                )
        except RedisUnavailableError as exc:
            logger.warning(
                "Could not release a slot of %s (%s); its lease frees it.", self.name, exc
            )

    @contextmanager
    def slot(self, timeout: float) -> Iterator[str | None]:
        """Hold a slot for the block; yields None (and holds nothing) on timeout."""
        holder = self.acquire(timeout)
        try:
            yield holder
        finally:
            if holder is not None:
                self.finish(holder)


class LocalSemaphore:
    """The stand-in without Redis: ``limit`` slots in this process only."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._semaphore = threading.BoundedSemaphore(self.limit)

    @contextmanager
    def slot(self, timeout: float) -> Iterator[bool | None]:
        if not self._semaphore.acquire(timeout=max(0.0, timeout)):
            yield None
            return
        try:
            yield True
        finally:
            self._semaphore.release()


_local_lock = threading.Lock()
_local: dict[int, LocalSemaphore] = {}


def local_semaphore(limit: int) -> LocalSemaphore:
    with _local_lock:
        if limit not in _local:
            _local[limit] = LocalSemaphore(limit)
        return _local[limit]


def _redis_semaphore(limit: int) -> RedisSemaphore:
    lease = esi_settings.SSO_CONCURRENCY_LEASE
    return RedisSemaphore(
        "sso-token", limit, lease=default_lease() if lease is None else float(lease)
    )


@contextmanager
def token_endpoint_slot() -> Iterator[None]:
    """Hold one of the ``ESI_SSO_MAX_CONCURRENCY`` token-endpoint slots for the block.

    Raises ``SSOConcurrencyTimeoutError`` (transient) when none frees up within
    ``ESI_SSO_CONCURRENCY_TIMEOUT`` seconds. ``ESI_SSO_MAX_CONCURRENCY = None``: no cap.
    """
    limit = esi_settings.SSO_MAX_CONCURRENCY
    if limit is None:
        yield
        return
    timeout = float(esi_settings.SSO_CONCURRENCY_TIMEOUT)
    semaphore: RedisSemaphore | LocalSemaphore
    if redis_configured():
        semaphore = _redis_semaphore(int(limit))
        try:
            holder = semaphore.acquire(timeout)
        except RedisUnavailableError as exc:
            logger.warning(
                "SSO concurrency cap: Redis unavailable (%s); capping this process only.", exc
            )
            semaphore = local_semaphore(int(limit))
        else:
            if holder is None:
                raise _timed_out(limit, timeout)
            try:
                yield
            finally:
                semaphore.finish(holder)
            return
    else:
        semaphore = local_semaphore(int(limit))
    with semaphore.slot(timeout) as held:
        if held is None:
            raise _timed_out(limit, timeout)
        yield


def _timed_out(limit: int, timeout: float) -> SSOConcurrencyTimeoutError:
    return SSOConcurrencyTimeoutError(
        f"All {limit} SSO token-endpoint slots stayed busy for {timeout:g} s "
        "(ESI_SSO_MAX_CONCURRENCY / ESI_SSO_CONCURRENCY_TIMEOUT); try again later."
    )
