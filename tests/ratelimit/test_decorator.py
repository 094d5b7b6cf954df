"""The decorator on real Celery tasks: buckets, retries, Redis outages, eager mode, setup."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from celery import Celery
from celery.exceptions import Retry
from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from esi_views import ratelimit
from esi_views.checks import check_rate_limit_redis
from esi_views.decorators import rate_limited_task
from esi_views.ratelimit import RateLimiterUnavailableError, SpacingLimiter, get_redis
from tests.ratelimit.recording import admitted, gaps_us, recording_script


@pytest.fixture
def app(settings, key_prefix):
    settings.ESI_RATE_LIMIT_KEY_PREFIX = key_prefix
    if settings.REDIS_URL:  # limit on the real Redis in CI (the cache points there too)
        settings.ESI_RATE_LIMIT_REDIS_URL = settings.REDIS_URL
    # A broker that needs no server: retry() publishes into memory.
    return Celery("rl-tests", broker="memory://", set_as_current=False)


@pytest.fixture
def calls():
    return []


@pytest.fixture
def tasks(app, calls):
    @app.task(bind=True, name="t.once_a_minute", max_retries=0, shared=False)
    @rate_limited_task("1/m")
    def once_a_minute(self, n):
        calls.append(("once", n))
        return n

    @app.task(bind=True, name="t.per_corp", shared=False)
    @rate_limited_task("1/m", keys=["corp_id"])
    def per_corp(self, corp_id, character_id=None, region="forge"):
        calls.append(("corp", corp_id, character_id))
        return corp_id

    @app.task(bind=True, name="t.fast", shared=False)
    @rate_limited_task("10/s")
    def fast(self, n):
        # When the limiter admitted it (Redis time): exact, however busy the machine is.
        calls.append(("fast", n, self.request.rate_limit_admitted_at))
        return n

    return once_a_minute, per_corp, fast


def run_in_worker(task, *args, retries=0, task_id=None, **kwargs):
    """Run the task body as a worker would (not eager, not called directly)."""
    task.push_request(
        id=task_id or uuid.uuid4().hex,
        retries=retries,
        is_eager=False,
        called_directly=False,
        args=args,
        kwargs=kwargs,
        delivery_info={},
    )
    try:
        return task.run(*args, **kwargs)
    finally:
        task.pop_request()


def test_throttled_task_is_retried_without_using_max_retries(tasks, calls):
    once_a_minute, per_corp, _ = tasks
    assert run_in_worker(once_a_minute, 1) == 1
    for _ in range(3):  # max_retries=0, the same task throttled three times
        with pytest.raises(Retry) as info:
            run_in_worker(once_a_minute, 2, task_id="same-task")
        assert info.value.sig.options["retries"] == 0  # the count did not move
        assert 0 < info.value.when <= 60
    # A task that spent all its own retries (default max_retries=3) is still throttled.
    run_in_worker(per_corp, 7)
    with pytest.raises(Retry) as info:
        run_in_worker(per_corp, 7, retries=3)
    assert info.value.sig.options["retries"] == 3
    assert calls == [("once", 1), ("corp", 7, None)]


def test_long_waits_are_split_below_the_broker_visibility_timeout(tasks, settings):
    once_a_minute, _, _ = tasks
    settings.ESI_RATE_LIMIT_MAX_COUNTDOWN = 5
    run_in_worker(once_a_minute, 1)
    with pytest.raises(Retry) as info:
        run_in_worker(once_a_minute, 2)
    assert info.value.when == 5


@pytest.fixture
def admissions(monkeypatch, key_prefix):
    """The limiter's own admission times for a task's bucket (exact, whatever the load)."""
    monkeypatch.setattr(ratelimit, "_SCRIPT", recording_script())
    return lambda task_name: admitted(get_redis(), f"{key_prefix}{task_name}")


def test_short_waits_are_slept_through_in_the_worker(tasks, calls, admissions):
    _, _, fast = tasks
    run_in_worker(fast, 1)
    run_in_worker(fast, 2)  # 100 ms wait <= ESI_RATE_LIMIT_MAX_SLEEP: no retry
    assert [c[1] for c in calls] == [1, 2]
    times = admissions("t.fast")
    assert len(times) == 2
    assert times[1] - times[0] >= ratelimit.parse_rate("10/s").interval_us


def test_keys_bucket_by_value_whether_positional_keyword_or_default(tasks, calls):
    _, per_corp, _ = tasks
    assert run_in_worker(per_corp, 1, 10) == 1
    assert run_in_worker(per_corp, corp_id=2) == 2  # another corp: its own bucket
    with pytest.raises(Retry):
        run_in_worker(per_corp, corp_id=1, character_id=11)  # same corp by keyword
    with pytest.raises(Retry):
        run_in_worker(per_corp, 2, region="forge")  # explicit default == default
    assert [c[1] for c in calls] == [1, 2]


def test_redis_down_retries_with_backoff_and_never_runs(tasks, calls, settings, caplog):
    once_a_minute, _, _ = tasks
    settings.ESI_RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    ratelimit._failures = 0
    whens = []
    with caplog.at_level(logging.WARNING, logger="esi_views.ratelimit"):
        for _ in range(3):
            with pytest.raises(Retry) as info:
                run_in_worker(once_a_minute, 1)
            assert info.value.sig.options["retries"] == 0  # max_retries=0 and still retried
            whens.append(info.value.when)
    assert calls == []
    assert [1 <= w <= 2 for w in whens[:1]] == [True] and 2 <= whens[2] <= 8  # it backs off
    assert "Rate limiter Redis unavailable" in caplog.text
    ratelimit._failures = 0


def test_eager_calls_wait_for_their_turn(app, tasks, calls, admissions):
    _, _, fast = tasks
    start = time.monotonic()
    assert fast.apply(args=(1,)).get() == 1
    assert fast.apply(args=(2,)).get() == 2
    assert fast(3) == 3  # called directly: the same
    assert time.monotonic() - start >= 0.19
    times = admissions("t.fast")
    assert len(times) == 3
    assert min(gaps_us(times)) >= ratelimit.parse_rate("10/s").interval_us


def test_eager_call_with_redis_down_raises(tasks, calls, settings):
    once_a_minute, _, _ = tasks
    settings.ESI_RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:1/0"
    with pytest.raises(RateLimiterUnavailableError):
        once_a_minute.apply(args=(1,), throw=True)
    assert calls == []


# -- where the Redis comes from -----------------------------------------------------------


class FakeDjangoRedisCache:
    """Shaped like django-redis's cache: ``cache.client.get_client()``."""

    def __init__(self, location, params):
        class Client:
            def get_client(self, write=True):
                return "django-redis client"

        self.client = Client()

    def close(self, **kwargs):
        pass


FakeDjangoRedisCache.__module__ = "django_redis.cache"


def test_redis_from_the_django_cache_or_the_url(settings):
    settings.ESI_RATE_LIMIT_REDIS_URL = ""
    assert get_redis().ping()  # tests/settings.py: Django's RedisCache (real or fakeredis)
    with override_settings(ESI_RATE_LIMIT_REDIS_URL="redis://127.0.0.1:1/3"):
        client = get_redis()
        assert client.connection_pool.connection_kwargs["port"] == 1
        assert get_redis() is client  # one client (and pool) per URL per process
    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=locmem), pytest.raises(ImproperlyConfigured, match="LocMem"):
        get_redis()
    fake = {"default": {"BACKEND": f"{__name__}.FakeDjangoRedisCache"}}
    with override_settings(CACHES=fake):
        assert get_redis() == "django-redis client"


def test_system_check(settings, monkeypatch):
    settings.ESI_RATE_LIMIT_REDIS_URL = ""
    assert check_rate_limit_redis() == []
    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=locmem):
        monkeypatch.setattr(ratelimit, "registered_tasks", {"app.tasks.fetch"})
        [error] = check_rate_limit_redis()
        assert isinstance(error, Error) and error.id == "esi_views.E010"
        assert "ESI_RATE_LIMIT_REDIS_URL" in error.hint
        monkeypatch.setattr(ratelimit, "registered_tasks", set())
        [warning] = check_rate_limit_redis()
        assert isinstance(warning, Warning) and warning.id == "esi_views.W010"
        with override_settings(ESI_RATE_LIMIT_REDIS_URL="redis://127.0.0.1:6379/1"):
            assert check_rate_limit_redis() == []
        with override_settings(ESI_RATE_LIMIT_REDIS_URL="memcached://x"):
            assert [e.id for e in check_rate_limit_redis()] == ["esi_views.E011"]


# -- the limiter object behind the decorator ------------------------------------------------


def test_spacing_limiter_on_its_own(redis_client, key_prefix):
    limiter = SpacingLimiter("2/s", key_prefix + "geo", client=redis_client)
    assert limiter.rate == ratelimit.parse_rate("2/s")
    assert "every 0.5 s" in repr(limiter)
    assert limiter.acquire("a") == 0.0
    wait = limiter.acquire("b")
    assert 0.4 < wait <= 0.5
    assert limiter.acquire("b") <= wait  # b keeps its reserved slot
    start = time.monotonic()
    assert limiter.wait("b") == 0.0  # sleeps until its slot, then admitted
    assert time.monotonic() - start >= 0.3
    assert limiter.wait("c", max_sleep=0.1) > 0.1  # too long to sleep: the wait comes back
    with pytest.raises(ratelimit.InvalidRateError):
        SpacingLimiter("often", "k")


def test_the_decorator_builds_its_limiter_from_a_hook(app, redis_client, key_prefix):
    built = []

    class Recording(SpacingLimiter):
        def __init__(self, rate, key, **kwargs):
            super().__init__(rate, key, client=redis_client, **kwargs)
            built.append((rate, key))

    @app.task(bind=True, name="t.hooked", shared=False)
    @rate_limited_task("1/m", keys=["n"], limiter_class=Recording)
    def hooked(self, n):
        return n

    assert run_in_worker(hooked, 4) == 4
    with pytest.raises(Retry):
        run_in_worker(hooked, 4)
    assert built == [(ratelimit.parse_rate("1/m"), key_prefix + 't.hooked:{"n":4}')] * 2
    assert redis_client.exists(key_prefix + 't.hooked:{"n":4}')
