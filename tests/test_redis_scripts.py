"""esi_views.redis_scripts: the Lua plumbing every limiter shares."""

from __future__ import annotations

import time

import pytest
import redis
from django.test import override_settings
from redis.crc import key_slot as redis_py_key_slot

from esi_views import redis_scripts
from esi_views.exceptions import RedisUnavailableError
from esi_views.ratelimit import RateLimiterUnavailableError, SpacingLimiter, acquire, parse_rate
from esi_views.redis_scripts import (
    LuaScript,
    get_redis,
    key_slot,
    redis_configured,
    redis_time,
    redis_time_us,
    slot_keys,
)

from .ratelimit.conftest import key_prefix, redis_client  # noqa: F401  (fixtures)

ECHO = LuaScript("return {KEYS[1], ARGV[1], redis.call('TIME')[1]}", name="echo")
DOWN = "redis://127.0.0.1:1/0"  # nothing listens there


@pytest.mark.parametrize(
    "key",
    [
        "",
        "a",
        "esi_views:ratelimit:app.tasks.f",
        "x{tag}y",
        "x{}y{tag}",
        "{",
        "}{a}",
        "{a}{b}",
        "é{ü}",
        "esi:{sso}:holders",
    ],
)
def test_key_slot_agrees_with_redis_py(key):
    assert key_slot(key) == redis_py_key_slot(key.encode())
    assert key_slot(key.encode()) == key_slot(key)


def test_slot_keys_share_one_slot_and_refuse_braces():
    keys = slot_keys("esi_views:sso:", "sso", "holders", "queue", "seq")
    assert keys == [
        "esi_views:sso:{sso}:holders",
        "esi_views:sso:{sso}:queue",
        "esi_views:sso:{sso}:seq",
    ]
    assert len({key_slot(k) for k in keys}) == 1
    for prefix, tag in [("p:", "a}b"), ("p:", "{a"), ("p{x}:", "a")]:
        with pytest.raises(ValueError, match=r"brace|'\{'"):
            slot_keys(prefix, tag, "k")


def test_a_cross_slot_script_is_refused_on_any_client(redis_client, key_prefix):  # noqa: F811
    a, b = key_prefix + "a", key_prefix + "b"
    assert key_slot(a) != key_slot(b)
    with pytest.raises(ValueError, match="different cluster slots"):
        ECHO(redis_client, keys=[a, b], args=["x"])


def test_runs_with_evalsha_and_reloads_a_lost_script(redis_client, key_prefix):  # noqa: F811
    key = key_prefix + "k"
    calls = []
    original = redis_client.execute_command

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    redis_client.execute_command = counting
    try:
        redis_client.script_flush()
        calls.clear()
        result = ECHO(redis_client, keys=[key], args=["hello"])
        assert [v.decode() if isinstance(v, bytes) else v for v in result[:2]] == [key, "hello"]
        assert calls == ["EVALSHA", "SCRIPT LOAD", "EVALSHA"]
        calls.clear()
        ECHO(redis_client, keys=[key], args=["again"])
        assert calls == ["EVALSHA"]  # one round trip once loaded
        # A node that still lacks the script after SCRIPT LOAD (a cluster failing over):
        # EVAL carries the body.
        redis_client.script_flush()
        redis_client.script_load = lambda source: ECHO.sha  # loads nowhere
        calls.clear()
        assert ECHO(redis_client, keys=[key], args=["x"])[1] in (b"x", "x")
        assert calls == ["EVALSHA", "EVALSHA", "EVAL"]
    finally:
        redis_client.execute_command = original
        del redis_client.script_load


def test_redis_time_is_the_servers(redis_client):  # noqa: F811
    seconds, micros = redis_client.time()
    now_us = redis_time_us(redis_client)
    assert 0 <= now_us - (seconds * 1_000_000 + micros) < 5_000_000
    assert abs(redis_time(redis_client) - time.time()) < 60  # same machine here


def test_redis_down_becomes_our_error_with_the_cause():
    client = redis.Redis.from_url(DOWN, socket_connect_timeout=1)
    with pytest.raises(RedisUnavailableError, match="echo: Redis is unavailable") as info:
        ECHO(client, keys=["k"], args=["x"])
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    with pytest.raises(RedisUnavailableError):
        redis_time(client)
    # A script names its own error class (a subclass), as rate_limited_task's does.
    with pytest.raises(RateLimiterUnavailableError):
        acquire(client, "k", "t", parse_rate("1/s"))


def test_a_lua_error_is_reported_not_swallowed(redis_client):  # noqa: F811
    broken = LuaScript("return redis.call('NO_SUCH_COMMAND')", name="broken")
    with pytest.raises(RedisUnavailableError) as info:
        broken(redis_client)
    assert isinstance(info.value.__cause__, redis.ResponseError)


def make_client():
    """A factory named in ESI_RATE_LIMIT_REDIS_CLIENT (tests only)."""
    make_client.calls += 1
    return redis.Redis.from_url("redis://127.0.0.1:1/7")


make_client.calls = 0


def test_which_redis(settings):
    settings.ESI_RATE_LIMIT_REDIS_URL = ""
    assert redis_configured() and get_redis().ping()
    path = f"{__name__}.make_client"
    with override_settings(ESI_RATE_LIMIT_REDIS_CLIENT=path, ESI_RATE_LIMIT_REDIS_URL=DOWN):
        client = get_redis()  # the factory wins over the URL
        assert client.connection_pool.connection_kwargs["db"] == 7
        assert get_redis() is client and make_client.calls == 1  # once per process
    redis_scripts._factory_clients.clear()
    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=locmem):
        assert not redis_configured()


def unreachable_cluster():
    """A factory whose cluster is down (tests only)."""
    from redis.cluster import RedisCluster

    return RedisCluster(host="127.0.0.1", port=1, socket_connect_timeout=1)


def test_an_unreachable_cluster_factory_is_unavailable_not_a_crash(settings):
    settings.ESI_RATE_LIMIT_REDIS_CLIENT = f"{__name__}.unreachable_cluster"
    redis_scripts._factory_clients.clear()
    with pytest.raises(RedisUnavailableError, match="ESI_RATE_LIMIT_REDIS_CLIENT"):
        get_redis()
    assert redis_configured()  # configured, just down
    with pytest.raises(RateLimiterUnavailableError):
        SpacingLimiter("1/s", "k").acquire("t")
    assert redis_scripts._factory_clients == {}  # tried again next time
