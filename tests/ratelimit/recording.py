"""The limiter's own admission times, written to Redis by the limiter's script itself.

Timing a task body (``time.time()`` in the task) measures the limiter plus however long
the machine took to get from the script's answer to the task; on a loaded machine that
varies by more than any fixed tolerance. The script's ``now`` (Redis ``TIME``) is the
moment the limiter admitted the task, so spacing between those is exact: tests assert
``>= interval`` with no tolerance. The recording copy of the script is the product's
script with one line added before it answers.
"""

from __future__ import annotations

import itertools
from typing import Any

from esi_views import ratelimit
from esi_views.redis_scripts import LuaScript

_ANSWER = "return {admit and 1 or 0, wait, now}"
# %.0f: exact for microsecond timestamps in both Lua 5.1 (Redis) and 5.4 (fakeredis);
# tostring() would round to 14 digits in 5.1.
_RECORD = (
    "if admit then redis.call('RPUSH', KEYS[1] .. ':admitted', string.format('%.0f', now)) end"
)


def recording_script() -> LuaScript:
    if _ANSWER not in ratelimit._LUA:
        raise AssertionError("The limiter script changed: update tests/ratelimit/recording.py.")
    source = ratelimit._LUA.replace(_ANSWER, f"{_RECORD}\n{_ANSWER}")
    return LuaScript(
        source,
        name="rate_limited_task (recording admissions)",
        error=ratelimit.RateLimiterUnavailableError,
    )


def install() -> None:
    """Make this process's limiter record every admission (in Celery worker processes)."""
    ratelimit._SCRIPT = recording_script()


def admitted(client: Any, bucket: str) -> list[int]:
    """The Redis times (microseconds) at which the limiter admitted tasks to ``bucket``."""
    return sorted(int(raw) for raw in client.lrange(f"{bucket}:admitted", 0, -1))


def gaps_us(times: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(times)]
