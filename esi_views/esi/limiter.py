"""One shared token budget per ESI bucket, and ESI's global error limit, kept in Redis.

A bucket (rate-limit group x ``<client id>:<character id>``, or x ``public``) is a
sorted set of reservations, ``<id>|<cost>`` scored with when it was made (ms, Redis
time), plus a small hash (learned limit and window, a 429 block, the 429 backoff
count). ESI's window floats: tokens come back one window after they were spent, which
is exactly "sum the members younger than one window". Both keys carry the same hash
tag, so every script touches one hash slot (Redis Cluster ready).

- ``reserve``: one script, one round trip: refuse (with the wait) while the bucket is
  blocked or the cost would pass ``limit - headroom``; otherwise add the reservation.
- ``settle``: after the answer, replace the reserved cost with what the status really
  cost (stamped with the answer's time, so tokens come back no sooner than at ESI),
  learn the limit, align with ESI's own ``X-Ratelimit-Used`` when ESI has counted more
  than we did (another client on the same bucket), and block the bucket on a 429.

The error limit is one hash in its own slot. Every process keeps a copy for at most
``ERROR_STATE_TTL`` seconds, so checking it costs no round trip per call; any answer
that moves it (an error, a 420, a low remain) writes it through.
"""

from __future__ import annotations

import collections
import hashlib
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..conf import esi_settings
from ..redis_scripts import LuaScript, get_redis, slot_keys

ERROR_STATE_TTL = 1.0

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.call('HMGET', KEYS[2], 'limit', 'window', 'blocked')
local limit = tonumber(m[1]) or tonumber(ARGV[3])
local window = tonumber(m[2]) or tonumber(ARGV[4])
local blocked = tonumber(m[3]) or 0
if blocked > now then return {0, blocked - now, limit, window} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], '|(%d+)$')) end
local cost = tonumber(ARGV[2])
local cap = limit - math.max(tonumber(ARGV[6]), math.ceil(limit * tonumber(ARGV[5])))
if used + cost <= cap or used == 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[1] .. '|' .. cost)
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return {1, 0, limit, window}
end
local need, freed = used + cost - cap, 0
for i = 1, #entries, 2 do
  freed = freed + tonumber(string.match(entries[i], '|(%d+)$'))
  if freed >= need then return {0, tonumber(entries[i + 1]) + window - now + 1, limit, window} end
end
return {0, window, limit, window}
"""

_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, reserved, actual = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'limit', ARGV[4], 'window', ARGV[5]) end
local window = tonumber(redis.call('HGET', KEYS[2], 'window')) or tonumber(ARGV[10])
-- The settled cost is stamped with the answer's time, not the reservation's: ESI starts
-- the window when the request reaches it, which is after we reserved, so counting from
-- the reservation would hand tokens back before ESI does (a 429 under in-flight delay).
if reserved > 0 then redis.call('ZREM', KEYS[1], id .. '|' .. reserved) end
if actual > 0 then redis.call('ZADD', KEYS[1], now, id .. '|' .. actual) end
if ARGV[6] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1)
  local ours = 0
  for i = 1, #entries do ours = ours + tonumber(string.match(entries[i], '|(%d+)$')) end
  local theirs = tonumber(ARGV[6])
  if theirs > ours then
    redis.call('ZADD', KEYS[1], now, 'sync:' .. id .. '|' .. (theirs - ours))
  end
end
local blocked = tonumber(redis.call('HGET', KEYS[2], 'blocked')) or 0
if ARGV[7] ~= '' then
  blocked = math.max(blocked, now + tonumber(ARGV[7]))
  redis.call('HSET', KEYS[2], 'blocked', blocked)
elseif ARGV[8] == '1' then
  local n = redis.call('HINCRBY', KEYS[2], 'backoff', 1)
  local delay = math.min(tonumber(ARGV[9]), 1000 * 2 ^ (n - 1))
  blocked = math.max(blocked, now + math.floor(delay * (0.5 + tonumber(ARGV[11]) / 2)))
  redis.call('HSET', KEYS[2], 'blocked', blocked)
else
  redis.call('HDEL', KEYS[2], 'backoff')
end
redis.call('PEXPIRE', KEYS[1], window + 1000)
redis.call('PEXPIRE', KEYS[2], 86400000)
return math.max(0, blocked - now)
"""

_ERRORS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == 'update' then
  local reset_at = now + tonumber(ARGV[3])
  if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'remain', ARGV[2], 'reset_at', reset_at) end
  if ARGV[4] == '1' then
    local b = tonumber(redis.call('HGET', KEYS[1], 'blocked')) or 0
    redis.call('HSET', KEYS[1], 'blocked', math.max(b, reset_at))
  end
  redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[3]), 1000) + 60000)
end
local m = redis.call('HMGET', KEYS[1], 'remain', 'reset_at', 'blocked')
return {m[1] or '', m[2] or '0', m[3] or '0', now}
"""


@dataclass(frozen=True)
class Reservation:
    """What ``reserve`` answered: ``wait`` 0.0 means admitted under ``member``."""

    key: str
    member: str
    cost: int
    wait: float
    limit: int
    window: float


_SCRIPTS = {
    "reserve": LuaScript(_RESERVE, name="esi-reserve"),
    "settle": LuaScript(_SETTLE, name="esi-settle"),
    "errors": LuaScript(_ERRORS, name="esi-errors"),
}
# Script runs (Redis round trips) in this process, by script name: benchmarks and tests.
round_trips: collections.Counter[str] = collections.Counter()


def _run(name: str, keys: list[str], args: list[Any]) -> Any:
    """One round trip; raises ``RedisUnavailableError`` when Redis cannot run it."""
    round_trips[name] += 1
    return _SCRIPTS[name](get_redis(), keys=keys, args=args)


def _tag_part(value: str) -> str:
    # Hash tags cannot hold braces; group names are checked, routes may have them.
    if "{" in value or "}" in value:
        return hashlib.sha256(value.encode()).hexdigest()[:24]
    return value


def bucket_keys(group: str, user: str) -> list[str]:
    return slot_keys(
        esi_settings.LIMITER_KEY_PREFIX, f"{_tag_part(group)}:{_tag_part(user)}", "z", "m"
    )


def reserve(
    group: str,
    user: str,
    cost: int,
    limit: int,
    window: float,
    headroom: float | None = None,
    min_headroom: int | None = None,
) -> Reservation:
    """Reserve ``cost`` tokens in the bucket now, or learn how long to wait (one round trip)."""
    keys = bucket_keys(group, user)
    member = uuid.uuid4().hex
    fraction = esi_settings.HEADROOM if headroom is None else headroom
    floor = esi_settings.MIN_HEADROOM if min_headroom is None else min_headroom
    admitted, wait_ms, known_limit, known_window = _run(
        "reserve", keys, [member, cost, limit, int(window * 1000), fraction, floor]
    )
    return Reservation(
        keys[0],
        member,
        cost,
        0.0 if admitted else int(wait_ms) / 1000,
        int(known_limit),
        int(known_window) / 1000,
    )


def settle(
    group: str,
    user: str,
    member: str,
    reserved: int,
    actual: int,
    *,
    limit: int | None = None,
    window: float | None = None,
    used: int | None = None,
    retry_after: float | None = None,
    backoff: bool = False,
    default_window: float = 900.0,
) -> float:
    """Record what the call really cost; returns how long the bucket is now blocked (s)."""
    jitter_ms = random.uniform(0, 1000 * float(esi_settings.RETRY_JITTER))  # noqa: S311
    args = [
        member,
        reserved,
        actual,
        "" if limit is None or window is None else limit,
        "" if limit is None or window is None else int(window * 1000),
        "" if used is None else used,
        "" if retry_after is None else int(retry_after * 1000 + jitter_ms),
        "1" if backoff else "0",
        int(float(esi_settings.BACKOFF_MAX) * 1000),
        int(default_window * 1000),
        random.random(),  # noqa: S311 - spreads the shared backoff's wake-ups
    ]
    return int(_run("settle", bucket_keys(group, user), args)) / 1000


@dataclass(frozen=True)
class ErrorState:
    remain: int | None
    reset_in: float  # seconds until the error window resets
    blocked_for: float  # seconds until a 420 block ends
    read_at: float  # time.monotonic() of the read

    def aged(self) -> ErrorState:
        """The same state, its countdowns moved on by the time since it was read."""
        elapsed = time.monotonic() - self.read_at
        return ErrorState(
            self.remain,
            max(0.0, self.reset_in - elapsed),
            max(0.0, self.blocked_for - elapsed),
            self.read_at,
        )


_error_lock = threading.Lock()
_error_state: ErrorState | None = None


def _error_call(args: list[Any]) -> ErrorState:
    global _error_state
    key = slot_keys(esi_settings.LIMITER_KEY_PREFIX, "errors", "state")[0]
    remain, reset_at, blocked, now = _run("errors", [key], args)
    remain = int(remain) if remain not in (b"", "") else None
    state = ErrorState(
        remain,
        max(0, int(reset_at) - int(now)) / 1000,
        max(0, int(blocked) - int(now)) / 1000,
        time.monotonic(),
    )
    with _error_lock:
        _error_state = state
    return state


def error_state() -> ErrorState:
    """The shared error-limit state, from this process's copy when under a second old."""
    state = _error_state
    if state is None or time.monotonic() - state.read_at > ERROR_STATE_TTL:
        state = _error_call(["read"])
    return state.aged()


def record_errors(remain: int | None, reset: float | None, *, limited: bool) -> ErrorState:
    """Write what ESI said about the error limit (a 420 blocks everyone until the reset)."""
    reset = 60.0 if reset is None else reset  # ESI's error window is one minute
    return _error_call(
        ["update", "" if remain is None else remain, int(reset * 1000), "1" if limited else "0"]
    )


def forget_local_state() -> None:
    """Drop this process's copy of the error state (tests)."""
    global _error_state
    with _error_lock:
        _error_state = None
