"""The Lua limiter against Redis (the real one in CI, fakeredis with Lua locally)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

import pytest

from esi_views import ratelimit
from esi_views.ratelimit import MIN_GRACE_US, acquire, parse_rate
from esi_views.redis_scripts import LuaScript
from tests.ratelimit import recording

TEN = parse_rate("10/s")


def score(client, key, member):
    value = client.zscore(key, member)
    return None if value is None else int(value)


def test_first_call_is_admitted_then_a_burst_gets_consecutive_slots(redis_client, key_prefix):
    key = key_prefix + "b"
    start = time.monotonic()
    assert acquire(redis_client, key, "t0", TEN) == 0.0
    waits = []
    for i in range(1, 6):
        waits.append((acquire(redis_client, key, f"t{i}", TEN), time.monotonic() - start))
    # Each waits one interval more than the one before, less the time the calls took
    # (measured, not assumed: a loaded machine may take long between two calls).
    for i, (wait, elapsed) in enumerate(waits, start=1):
        assert i * 0.1 - elapsed - 0.001 <= wait <= i * 0.1
    slots = [score(redis_client, key, f"t{i}") for i in range(1, 6)]
    assert [b - a for a, b in itertools.pairwise(slots)] == [TEN.interval_us] * 4
    assert score(redis_client, key, "~next") == slots[-1] + TEN.interval_us


def test_a_reservation_is_kept_when_back_early_and_admitted_on_time(redis_client, key_prefix):
    key = key_prefix + "b"
    # A slow rate: coming back "early" must stay early even if the sleep overruns on a
    # loaded machine.
    rate = parse_rate("1/s")
    assert acquire(redis_client, key, "a", rate) == 0.0
    first_wait = acquire(redis_client, key, "b", rate)
    slot = score(redis_client, key, "b")
    time.sleep(0.05)  # short: an overrun of most of the second still leaves b early
    # Back too early (think: a countdown rounded down): not admitted, same slot.
    early = acquire(redis_client, key, "b", rate)
    assert 0 < early < first_wait
    assert score(redis_client, key, "b") == slot
    # A newcomer does not take the slot b holds.
    assert acquire(redis_client, key, "c", rate) > early
    time.sleep(early)
    assert acquire(redis_client, key, "b", rate) == 0.0
    assert score(redis_client, key, "b") is None  # the reservation is used up
    assert score(redis_client, key, "~last") >= slot


def test_a_late_arrival_never_shortens_the_spacing(redis_client, key_prefix):
    key = key_prefix + "b"
    rate = parse_rate("4/s")  # 250 ms: room for a loaded machine between two calls
    assert acquire(redis_client, key, "a", rate) == 0.0
    acquire(redis_client, key, "b", rate)  # slot +250 ms
    acquire(redis_client, key, "c", rate)  # slot +500 ms
    time.sleep(0.55)
    # c comes on time, b comes late: b's slot has passed, but c just ran.
    started = time.monotonic()
    assert acquire(redis_client, key, "c", rate) == 0.0
    wait = acquire(redis_client, key, "b", rate)
    assert 0.25 - (time.monotonic() - started) <= wait <= 0.25  # the rest of c's interval
    assert score(redis_client, key, "b") is not None  # b keeps its place
    time.sleep(wait)
    assert acquire(redis_client, key, "b", rate) == 0.0


def test_keys_expire_and_stale_reservations_are_purged(redis_client, key_prefix):
    key = key_prefix + "b"
    assert acquire(redis_client, key, "a", TEN) == 0.0
    ttl_ms = redis_client.pttl(key)
    assert 0 < ttl_ms <= (TEN.interval_us + MIN_GRACE_US) // 1000
    # A task that reserved a slot long ago and never came back.
    seconds, micros = redis_client.time()
    redis_client.zadd(key, {"ghost": seconds * 1_000_000 + micros - MIN_GRACE_US - 10_000_000})
    acquire(redis_client, key, "b", TEN)  # throttled: this path purges
    assert score(redis_client, key, "ghost") is None
    # A day-long interval keeps its bookkeeping for at least that long.
    day = parse_rate("1/d")
    assert acquire(redis_client, key_prefix + "day", "a", day) == 0.0
    assert redis_client.pttl(key_prefix + "day") >= 86_400_000


def test_one_round_trip_per_check_and_script_reload(redis_client, key_prefix, monkeypatch):
    # A copy of the script only this test knows (its own SHA): on a shared Redis another
    # process may load the real one again right after the flush, and skip our reload.
    unique = f"{ratelimit._LUA}\n-- {uuid.uuid4().hex}"
    monkeypatch.setattr(
        ratelimit,
        "_SCRIPT",
        LuaScript(
            unique,
            name="rate_limited_task (test copy)",
            error=ratelimit.RateLimiterUnavailableError,
        ),
    )
    key = key_prefix + "b"
    acquire(redis_client, key, "warm", TEN)  # the script is loaded by now
    calls = []
    original = redis_client.execute_command

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    redis_client.execute_command = counting
    try:
        acquire(redis_client, key, "x", TEN)
        assert calls == ["EVALSHA"]
        redis_client.script_flush()  # e.g. Redis restarted: EVALSHA fails once, then reloads
        calls.clear()
        assert acquire(redis_client, key, "y", TEN) > 0
        assert calls == ["EVALSHA", "SCRIPT LOAD", "EVALSHA"]
    finally:
        redis_client.execute_command = original


@pytest.mark.parametrize("text", ["10/s", "50/s"])
def test_exact_under_contention(redis_client, key_prefix, text, monkeypatch):
    """Four threads hammer one bucket: never two admissions closer than the interval.

    Checked on the limiter's own admission times (Redis TIME, recorded by the script), not
    on when the threads got to look: on a loaded machine a thread may be descheduled for
    longer than an interval between its admission and any read it makes afterwards.
    """
    monkeypatch.setattr(ratelimit, "_SCRIPT", recording.recording_script())
    rate = parse_rate(text)
    key = key_prefix + "hammer"
    # About a second's worth of admissions, shared out: a quota per thread, not a wall-clock
    # deadline, so a thread that starts late on a loaded machine still takes part.
    quota = max(3, int(1.0 / rate.interval_seconds) // 4)
    per_thread = [0] * 4
    errors: list[BaseException] = []

    def hammer(number):
        token = uuid.uuid4().hex
        try:
            while per_thread[number] < quota:
                wait = acquire(redis_client, key, token, rate)
                if wait == 0.0:
                    per_thread[number] += 1
                    token = uuid.uuid4().hex
                else:  # as a caller would: back when the reserved slot comes
                    time.sleep(wait)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)  # a hang guard only
    assert errors == []
    # Nobody starves: every thread got its whole quota (a reservation is kept for its owner).
    assert not any(thread.is_alive() for thread in threads)
    assert per_thread == [quota] * 4
    times = recording.admitted(redis_client, key)
    assert len(times) == 4 * quota  # each admission recorded once, by the script
    assert min(recording.gaps_us(times)) >= rate.interval_us
    # Hence never more than the rate in any second of Redis time.
    allowed = int(1.0 / rate.interval_seconds) + 1
    assert all(sum(t <= s < t + 1_000_000 for s in times) <= allowed for t in times)


def test_module_uses_redis_time_not_the_local_clock(redis_client, key_prefix, monkeypatch):
    # A worker whose clock is an hour off changes nothing: the script never sees it.
    monkeypatch.setattr(time, "time", lambda: 0.0)
    key = key_prefix + "b"
    assert ratelimit.acquire(redis_client, key, "a", TEN) == 0.0
    assert 0 < ratelimit.acquire(redis_client, key, "b", TEN) <= 0.1
