"""``rate_limited_task`` and its ``SpacingLimiter``: one limit for all workers, fair in bursts.

Each check is one Lua script run in Redis (one round trip). Time comes from Redis
``TIME`` so workers with skewed clocks agree. A bucket is one sorted set:

- ``~last``: when the last task was admitted (microseconds),
- ``~next``: the first time nobody has claimed yet,
- every other member: a task id, scored with the slot it reserved.

A task arriving with no reservation runs if the bucket is free, otherwise it reserves
the next free slot and is retried for then. Returning at or after its slot it runs,
unless someone ran less than one interval ago (a late arrival took the gap): then it
keeps its slot and waits the remainder. Nothing is ever admitted within one interval of
the previous admission, so the spacing holds whatever the arrival pattern.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import sha1
from typing import Any, TypeVar

from .conf import esi_settings
from .exceptions import (
    InvalidRateError,
    RateLimiterUnavailableError,
    RateLimitUsageError,
    RedisUnavailableError,
)
from .redis_scripts import LuaScript, get_redis

__all__ = [
    "InvalidRateError",
    "Rate",
    "RateLimitUsageError",
    "RateLimiterUnavailableError",
    "SpacingLimiter",
    "acquire",
    "bucket_key",
    "get_redis",
    "parse_rate",
    "rate_limited_task",
]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
# Reservations and bookkeeping older than this are purged (a task that never came back).
# Never below one interval, or a still-relevant "~last" could be purged.
MIN_GRACE_US = 300 * 1_000_000

# Names of every function decorated in this process (read by the system check).
registered_tasks: set[str] = set()


@dataclass(frozen=True)
class Rate:
    count: int
    window_seconds: int

    @property
    def interval_us(self) -> int:
        # Rounded up: a spacing a microsecond too long is harmless, too short is not.
        return -(-self.window_seconds * 1_000_000 // self.count)

    @property
    def interval_seconds(self) -> float:
        return self.interval_us / 1_000_000


def parse_rate(rate: str) -> Rate:
    """``"10/s"``, ``"100/m"``, ``"1/15m"``, ``"500/h"``, ``"2/d"`` -> :class:`Rate`."""
    match = _RATE_RE.match(rate) if isinstance(rate, str) else None
    if not match:
        raise InvalidRateError(
            f"Invalid rate {rate!r}: expected 'N/window' such as '10/s', '100/m' or '1/15m' "
            "(N a positive integer, window an optional number followed by s, m, h or d)."
        )
    count, multiplier, unit = int(match[1]), int(match[2] or 1), match[3]
    if count < 1 or multiplier < 1:
        raise InvalidRateError(f"Invalid rate {rate!r}: the count and window must be above 0.")
    return Rate(count, multiplier * UNIT_SECONDS[unit])


def _canonical(value: Any) -> Any:
    """A JSON value that is the same in every process for equal arguments."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, set | frozenset):  # iteration order varies with hash seeding
        items = [_canonical(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, dict):
        return {str(name): _canonical(item) for name, item in value.items()}
    # repr() would embed an address (a new bucket per object): refuse instead.
    raise RateLimitUsageError(
        f"rate_limited_task keys must name arguments with JSON-like values (str, int, "
        f"float, bool, None, lists, sets, dicts), not {type(value).__name__}."
    )


def bucket_key(task_name: str, values: dict[str, Any] | None = None) -> str:
    """The Redis key of a bucket: one per task, or per combination of ``keys`` values."""
    key = f"{esi_settings.RATE_LIMIT_KEY_PREFIX}{task_name}"
    if values:
        # JSON with sorted names: 1 and "1" differ, the order of ``keys`` does not.
        part = json.dumps(_canonical(values), sort_keys=True, separators=(",", ":"))
        if len(part) > 200:  # keep keys short whatever the arguments are
            part = "sha1:" + sha1(part.encode(), usedforsecurity=False).hexdigest()
        key = f"{key}:{part}"
    return key


_LUA = """
local function num(v) if v then return tonumber(v) end return nil end
local interval, grace = tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('ZMSCORE', KEYS[1], ARGV[1], '~last', '~next')
local slot, last, nxt = num(s[1]), num(s[2]), num(s[3]) or 0
local free_after_last = last and (last + interval) or 0
local admit, wait
if slot then
  admit = now >= slot and now >= free_after_last
  if not admit then wait = math.max(slot, free_after_last) - now end
else
  local free = math.max(nxt, free_after_last)
  admit = now >= free
  if not admit then
    wait = free - now
    nxt = free + interval
    redis.call('ZADD', KEYS[1], free, ARGV[1], nxt, '~next')
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - grace)
  end
end
if admit then
  nxt = math.max(nxt, now + interval)
  redis.call('ZADD', KEYS[1], now, '~last', nxt, '~next')
  if slot then redis.call('ZREM', KEYS[1], ARGV[1]) end
  wait = 0
end
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(nxt, now) - now + grace) / 1000))
return {admit and 1 or 0, wait, now}
"""

_SCRIPT = LuaScript(_LUA, name="rate_limited_task", error=RateLimiterUnavailableError)


_failures = 0  # consecutive Redis failures in this process, for the backoff


class SpacingLimiter:
    """At most ``rate`` admissions to bucket ``key``, evenly spaced, across all workers.

    The object ``rate_limited_task`` builds per call (as DRF builds a throttle per
    request); usable on its own wherever something must be spaced out::

        limiter = SpacingLimiter("10/s", "myapp:geocoder")
        wait = limiter.acquire(job_id)    # 0.0: go now; else come back in `wait` s

    ``acquire`` is one Lua script run (one round trip), timed by Redis. Override
    ``get_client()`` to coordinate elsewhere than :func:`get_redis`.
    """

    #: The Lua script; None: this module's ``_SCRIPT`` (read at each call).
    script: LuaScript | None = None
    #: When the last ``acquire`` admitted (Redis time, seconds since the epoch).
    admitted_at: float | None = None

    def __init__(self, rate: str | Rate, key: str, *, client: Any = None) -> None:
        self.rate = rate if isinstance(rate, Rate) else parse_rate(rate)
        self.key = key
        self.client = client

    def __repr__(self) -> str:
        return f"<SpacingLimiter {self.key!r} every {self.rate.interval_seconds:g} s>"

    def get_client(self) -> Any:
        return self.client if self.client is not None else get_redis()

    def acquire(self, token: str) -> float:
        """Admit ``token`` now (0.0) or reserve it the next free slot and return the wait.

        Ask again with the same token after the wait: the slot stays reserved for it.
        Raises :class:`RateLimiterUnavailableError` when Redis cannot run the script.
        """
        global _failures
        grace_us = max(MIN_GRACE_US, 2 * self.rate.interval_us)
        try:
            admitted, wait_us, now_us = (self.script or _SCRIPT)(
                self.get_client(),
                keys=[self.key],
                args=[token, self.rate.interval_us, grace_us],
            )
        except RedisUnavailableError as exc:
            _failures += 1
            if isinstance(exc, RateLimiterUnavailableError):
                raise
            raise RateLimiterUnavailableError(str(exc)) from exc  # e.g. no client at all
        _failures = 0
        if admitted:
            self.admitted_at = int(now_us) / 1_000_000
            return 0.0
        return max(int(wait_us), 1) / 1_000_000

    def wait(self, token: str, max_sleep: float = math.inf) -> float:
        """Sleep through waits up to ``max_sleep``; return 0.0 once admitted, else the wait.

        A retry through the broker costs far more than a short sleep, and ETAs are only
        precise to some milliseconds: a task back a little early, or just behind a late
        neighbour, would otherwise take one more retry and start later still.
        """
        while True:
            wait = self.acquire(token)
            if wait == 0.0 or wait > max_sleep:
                return wait
            time.sleep(wait)


def acquire(client: Any, key: str, token: str, rate: Rate) -> float:
    """``SpacingLimiter(rate, key, client=client).acquire(token)``, as a function."""
    return SpacingLimiter(rate, key, client=client).acquire(token)


def _redis_backoff() -> float:
    # Exponential with jitter, so workers do not all come back at the same moment.
    cap = float(esi_settings.RATE_LIMIT_BACKOFF_MAX)
    return min(cap, 2.0 ** min(_failures, 16)) * random.uniform(0.5, 1.0)  # noqa: S311


def rate_limited_task(
    rate: str,
    keys: Sequence[str] | None = None,
    *,
    limiter_class: type[SpacingLimiter] = SpacingLimiter,
) -> Callable[[F], F]:
    """Run the decorated bound Celery task at most ``rate`` times, across all workers.

    Apply it below ``@app.task(bind=True)``. ``keys`` names arguments of the task: each
    combination of their values gets its own bucket. Over the limit the task is retried
    when its reserved turn comes, without using up ``max_retries``. The decorator is a
    thin adapter: ``limiter_class(rate, bucket_key(...))`` decides.
    """
    parsed = parse_rate(rate)
    key_names = [keys] if isinstance(keys, str) else list(keys or [])

    def decorator(func: F) -> F:
        signature = inspect.signature(func)
        params = list(signature.parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if not params or params[0].kind not in positional or params[0].name != "self":
            raise RateLimitUsageError(
                f"{func.__qualname__}: rate_limited_task needs a bound task; its first "
                "parameter must be 'self' and it must sit below @app.task(bind=True)."
            )
        names = {p.name for p in params[1:] if p.kind is not inspect.Parameter.VAR_POSITIONAL}
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        unknown = [k for k in key_names if k not in names and not takes_kwargs]
        if unknown:
            raise RateLimitUsageError(
                f"{func.__qualname__}: keys {unknown} are not parameters of the task."
            )
        registered_tasks.add(f"{func.__module__}.{func.__qualname__}")

        def key_values(task: Any, args: tuple, kwargs: dict) -> dict[str, Any] | None:
            if not key_names:
                return None
            bound = signature.bind(task, *args, **kwargs)
            bound.apply_defaults()
            extra: dict[str, Any] = next(
                (bound.arguments[p.name] for p in params if p.kind is p.VAR_KEYWORD), {}
            )
            return {k: bound.arguments.get(k, extra.get(k)) for k in key_names}

        @functools.wraps(func)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            request = getattr(self, "request", None)
            if request is None or not callable(getattr(self, "retry", None)):
                raise RateLimitUsageError(
                    f"{func.__qualname__} was called with {type(self).__name__} as self: "
                    "rate_limited_task only works on bound tasks, @app.task(bind=True)."
                )
            limiter = limiter_class(parsed, bucket_key(self.name, key_values(self, args, kwargs)))
            # The task id names the reservation: it survives retries.
            token = request.id or uuid.uuid4().hex
            if request.is_eager or request.called_directly:
                # No queue to come back through: sleep until the reserved slot instead.
                try:
                    limiter.wait(token)
                except RedisUnavailableError as exc:
                    raise RateLimiterUnavailableError(
                        f"Cannot check the rate limit of {self.name}: {exc}"
                    ) from exc
                request.rate_limit_admitted_at = limiter.admitted_at
                return func(self, *args, **kwargs)
            try:
                wait = limiter.wait(token, float(esi_settings.RATE_LIMIT_MAX_SLEEP))
            except RedisUnavailableError as exc:
                # Never run unchecked, never drop: come back later (without using a retry).
                wait = _redis_backoff()
                logger.warning(
                    "Rate limiter Redis unavailable for %s (%s); retrying in %.1f s.",
                    self.name,
                    exc,
                    wait,
                )
            if wait == 0.0:
                # Redis's time of admission, for tasks that want to log or measure it.
                request.rate_limit_admitted_at = limiter.admitted_at
                return func(self, *args, **kwargs)
            # Throttling is not a failure: give back the retry that retry() will count.
            request.retries -= 1
            raise self.retry(countdown=min(wait, float(esi_settings.RATE_LIMIT_MAX_COUNTDOWN)))

        wrapper.rate = parsed  # type: ignore[attr-defined]
        wrapper.rate_limit_keys = tuple(key_names)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
