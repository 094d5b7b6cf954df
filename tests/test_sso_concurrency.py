"""ESI_SSO_MAX_CONCURRENCY: the token endpoint is never called more than N times at once.

The fake SSO counts the requests it handles at once (``max_concurrent``); with latency,
callers overlap, so a missing or leaky cap shows up there.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from esi_views import sso
from esi_views.exceptions import SSOConcurrencyTimeoutError, SSOTransientError
from esi_views.redis_scripts import key_slot, redis_time_us
from esi_views.sso_concurrency import RedisSemaphore, default_lease, local_semaphore

from .ratelimit.conftest import key_prefix, redis_client  # noqa: F401  (fixtures)
from .sso_helpers import login

ROOT = Path(__file__).resolve().parent.parent
DOWN = "redis://127.0.0.1:1/0"  # nothing listens there


def semaphore(client, prefix, limit=2, lease=30.0):
    return RedisSemaphore("t", limit, lease=lease, client=client, prefix=prefix)


# -- the semaphore script -------------------------------------------------------------------


def test_keys_share_one_cluster_slot(redis_client, key_prefix):  # noqa: F811
    sem = semaphore(redis_client, key_prefix)
    assert len({key_slot(k) for k in sem.keys}) == 1
    assert all("{t}" in k for k in sem.keys)


def test_at_most_limit_holders_and_a_release_frees_a_slot(redis_client, key_prefix):  # noqa: F811
    sem = semaphore(redis_client, key_prefix, limit=2)
    assert sem.try_acquire("a")[0] and sem.try_acquire("b")[0]
    taken, place, until_free = sem.try_acquire("c")
    assert (taken, place) == (False, 1) and 29 < until_free <= 30
    assert sem.try_acquire("a")[0]  # asking again while holding is not a second slot
    assert redis_client.zcard(sem.keys[0]) == 2
    assert sem.release("a") is True
    assert sem.try_acquire("c")[0]
    assert sem.release("a") is False  # already released


def test_waiters_are_served_in_arrival_order(redis_client, key_prefix):  # noqa: F811
    sem = semaphore(redis_client, key_prefix, limit=1)
    assert sem.try_acquire("holder")[0]
    assert sem.try_acquire("first") == (False, 1, pytest.approx(30, abs=1))
    assert sem.try_acquire("second")[:2] == (False, 2)
    sem.release("holder")
    # The second waiter polls first: it still waits for the one ahead of it.
    assert sem.try_acquire("second")[:2] == (False, 1)
    assert sem.try_acquire("first")[0]
    sem.release("first")
    assert sem.try_acquire("second")[0]


def test_a_waiter_that_stops_asking_leaves_the_line(redis_client, key_prefix):  # noqa: F811
    sem = semaphore(redis_client, key_prefix, limit=1)
    sem.waiter_ttl = 0.2
    assert sem.try_acquire("holder")[0]
    assert not sem.try_acquire("gone")[0]
    assert not sem.try_acquire("patient")[0]
    time.sleep(0.3)  # "gone" never asks again
    sem.release("holder")
    assert sem.try_acquire("patient")[0]


def test_an_expired_lease_frees_the_slot(redis_client, key_prefix):  # noqa: F811
    sem = semaphore(redis_client, key_prefix, limit=1, lease=0.5)
    assert sem.try_acquire("crashed")[0]  # and never released
    expiry = int(redis_client.zscore(sem.keys[0], "crashed"))
    holder = sem.acquire(timeout=30)
    assert holder is not None
    assert redis_time_us(redis_client) >= expiry  # not one microsecond before the lease ended
    assert sem.release(holder)


def test_acquire_times_out_and_leaves_the_queue(redis_client, key_prefix):  # noqa: F811
    sem = semaphore(redis_client, key_prefix, limit=1)
    assert sem.try_acquire("holder")[0]
    assert sem.acquire(timeout=0.2) is None
    assert redis_client.zcard(sem.keys[1]) == 0 and redis_client.zcard(sem.keys[2]) == 0


def test_the_default_lease_outlasts_the_longest_call(settings):
    settings.ESI_SSO_TIMEOUT = (5.0, 15.0)
    settings.ESI_SSO_MAX_RETRIES = 3
    settings.ESI_SSO_MAX_RETRY_AFTER = 10.0
    settings.ESI_SSO_BACKOFF_FACTOR = 0.25
    assert default_lease() >= 20 * 4 + 10 * 3


# -- the SSO client under the cap ---------------------------------------------------------------


def refresh_tokens(fake_sso, count):
    tokens = []
    for i in range(count):
        fake_sso.add_character(95000000 + i, f"Pilot {i}")
        tokens.append(login(fake_sso, 95000000 + i).refresh_token)
    return tokens


def refresh_in_threads(tokens, rounds=2):
    errors = []
    barrier = threading.Barrier(len(tokens))

    def run(token):
        barrier.wait()
        for _ in range(rounds):
            try:
                sso.refresh(token)
            except Exception as exc:  # collected: the test shows them
                errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.fixture
def user(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("sso-cap")


@pytest.fixture
def sso_cap(fake_sso, settings, key_prefix):  # noqa: F811
    settings.ESI_RATE_LIMIT_KEY_PREFIX = key_prefix
    settings.ESI_SSO_MAX_CONCURRENCY = 3
    settings.ESI_SSO_CONCURRENCY_TIMEOUT = 60
    return fake_sso


@pytest.mark.parametrize("backend", ["redis", "in-process"])
def test_eight_threads_never_exceed_the_cap(sso_cap, settings, backend):
    tokens = refresh_tokens(sso_cap, 8)
    if backend == "in-process":  # a site without Redis: the process-local stand-in
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    sso_cap.latency = 0.1
    before = sso_cap.calls["token"]
    sso_cap._protocol.max_in_flight.clear()
    assert refresh_in_threads(tokens) == []
    assert sso_cap.calls["token"] - before == 16
    print(f"\n8 threads, cap 3 ({backend}): at most {sso_cap.max_concurrent['token']} at once")
    assert 2 <= sso_cap.max_concurrent["token"] <= 3


def test_no_free_slot_in_time_is_transient_and_keeps_the_token(
    sso_cap,
    settings,
    esi_token,
    user,
    redis_client,  # noqa: F811
):
    token = esi_token(user)
    settings.ESI_SSO_MAX_CONCURRENCY = 1
    settings.ESI_SSO_CONCURRENCY_TIMEOUT = 0.2
    from esi_views.redis_scripts import get_redis
    from esi_views.sso_concurrency import _redis_semaphore

    blocker = _redis_semaphore(1)
    blocker.client = get_redis()
    assert blocker.try_acquire("someone else")[0]
    before = sso_cap.calls["token"]
    try:
        with pytest.raises(SSOConcurrencyTimeoutError) as info:
            token.refresh()
        assert isinstance(info.value, SSOTransientError)
        assert "ESI_SSO_MAX_CONCURRENCY" in str(info.value)
        assert sso_cap.calls["token"] == before  # the SSO was not called
        token.refresh_from_db()  # still there
    finally:
        blocker.release("someone else")
    token.refresh()
    assert sso_cap.calls["token"] == before + 1


@pytest.mark.parametrize("down", ["url", "cluster factory"])
def test_redis_down_falls_back_to_the_process_cap(sso_cap, settings, caplog, down):
    from esi_views import redis_scripts

    tokens = refresh_tokens(sso_cap, 4)
    if down == "url":
        settings.ESI_RATE_LIMIT_REDIS_URL = DOWN
    else:
        settings.ESI_RATE_LIMIT_REDIS_CLIENT = "tests.test_redis_scripts.unreachable_cluster"
        redis_scripts._factory_clients.clear()
    settings.ESI_SSO_MAX_CONCURRENCY = 2
    sso_cap.latency = 0.1
    sso_cap._protocol.max_in_flight.clear()
    with caplog.at_level(logging.WARNING, logger="esi_views.sso_concurrency"):
        assert refresh_in_threads(tokens, rounds=1) == []
    assert "capping this process only" in caplog.text
    assert sso_cap.max_concurrent["token"] <= 2


def test_no_cap_when_disabled(sso_cap, settings):
    settings.ESI_SSO_MAX_CONCURRENCY = None
    settings.ESI_RATE_LIMIT_REDIS_URL = DOWN  # never consulted
    [token] = refresh_tokens(sso_cap, 1)
    assert sso.refresh(token).access_token


def test_local_semaphore_times_out():
    sem = local_semaphore(1)
    with sem.slot(1) as first:
        assert first
        with sem.slot(0.05) as second:
            assert second is None
    with sem.slot(0.05) as again:
        assert again


# -- across processes, on a Redis Cluster (and the real Redis when the run has one) -----------

CHILD = """
import json, os, sys, threading, time
import django
from django.conf import settings
django.setup()
for name, value in json.loads(os.environ["ESI_CHILD_SETTINGS"]).items():
    setattr(settings, name, value)
from esi_views import sso
from esi_views.sso_concurrency import _redis_semaphore

if sys.argv[1] == "refresh":
    tokens = json.loads(sys.argv[2])
    errors = []
    barrier = threading.Barrier(len(tokens))
    def run(token):
        barrier.wait()
        for _ in range(2):
            try:
                sso.refresh(token)
            except Exception as exc:
                errors.append(repr(exc))
    threads = [threading.Thread(target=run, args=(t,)) for t in tokens]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps(errors), flush=True)
else:  # "hold": take the only slot, say so, and hang until killed
    semaphore = _redis_semaphore(1)
    assert semaphore.acquire(10) is not None
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture(params=["cluster", "redis"])
def shared_redis(request, settings, key_prefix, monkeypatch):  # noqa: F811
    """Settings (for this process and its children) naming a Redis all of them share."""
    from esi_views import redis_scripts

    child = {"ESI_RATE_LIMIT_KEY_PREFIX": key_prefix}
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        child["ESI_RATE_LIMIT_REDIS_CLIENT"] = "tests.redis_cluster.cluster_client_factory"
        client = cluster
    else:
        if not settings.REDIS_URL:
            pytest.skip("fakeredis cannot be shared between processes (the cluster case runs)")
        child["ESI_RATE_LIMIT_REDIS_URL"] = settings.REDIS_URL
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
    for name, value in child.items():
        setattr(settings, name, value)
    redis_scripts._factory_clients.clear()
    yield child, client
    redis_scripts._factory_clients.clear()
    for key in list(client.scan_iter(match=f"{key_prefix}*")):
        client.delete(key)


def spawn(fake_sso, child_settings, *args):
    env = {k: v for k, v in os.environ.items() if k != "ESI_TEST_DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        ESI_CHILD_SETTINGS=json.dumps(
            {
                **fake_sso.settings(),
                **child_settings,
                "ESI_SSO_MAX_CONCURRENCY": 4,
                "ESI_SSO_CONCURRENCY_TIMEOUT": 120,
                "ESI_SSO_CONCURRENCY_LEASE": 2.0,
            }
        ),
    )
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_processes_and_threads_never_exceed_the_cap(fake_sso, shared_redis):
    child_settings, _ = shared_redis
    tokens = refresh_tokens(fake_sso, 12)
    fake_sso.latency = 0.1
    fake_sso._protocol.max_in_flight.clear()
    children = [
        spawn(fake_sso, child_settings, "refresh", json.dumps(tokens[i::3])) for i in range(3)
    ]
    for child in children:
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err[-3000:]
        assert json.loads(out.strip().splitlines()[-1]) == []
    assert fake_sso.calls["token:refresh_token"] == 24
    print(f"\n3 processes x 4 threads, cap 4: at most {fake_sso.max_concurrent['token']} at once")
    assert 2 <= fake_sso.max_concurrent["token"] <= 4


def test_a_killed_holder_frees_its_slot_when_the_lease_ends(fake_sso, shared_redis, settings):
    child_settings, client = shared_redis
    holder = spawn(fake_sso, child_settings, "hold")
    try:
        line = holder.stdout.readline()
        assert line.strip() == "held", holder.stderr.read()[-3000:]
        holder.send_signal(signal.SIGKILL)  # mid-lease, no release
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.stdout.close()
        holder.stderr.close()
    from esi_views.sso_concurrency import _redis_semaphore

    settings.ESI_SSO_CONCURRENCY_LEASE = 2.0
    semaphore = _redis_semaphore(1)
    [(_dead, expiry)] = client.zrange(semaphore.keys[0], 0, -1, withscores=True)
    assert not semaphore.try_acquire(uuid.uuid4().hex)[0]  # the dead holder's slot is taken
    mine = semaphore.acquire(timeout=60)
    assert mine is not None
    assert redis_time_us(client) >= int(expiry)  # free exactly when the lease ran out
    assert semaphore.release(mine)


def test_system_check(settings):
    from django.core.checks import Error, Warning
    from django.test import override_settings

    from esi_views.checks import check_rate_limit_redis, check_sso_concurrency

    assert check_sso_concurrency() == []  # the tests' cache is Redis
    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=locmem):
        [warning] = check_sso_concurrency()
        assert isinstance(warning, Warning) and warning.id == "esi_views.W012"
        assert "per process only" in warning.msg
        factory = "tests.redis_cluster.cluster_client_factory"
        with override_settings(ESI_RATE_LIMIT_REDIS_CLIENT=factory):
            assert check_sso_concurrency() == [] and check_rate_limit_redis() == []
        with override_settings(ESI_SSO_MAX_CONCURRENCY=None):
            assert check_sso_concurrency() == []
    for bad in (0, -1, "4", True, 2.5):
        with override_settings(ESI_SSO_MAX_CONCURRENCY=bad):
            [error] = check_sso_concurrency()
            assert isinstance(error, Error) and error.id == "esi_views.E012"
