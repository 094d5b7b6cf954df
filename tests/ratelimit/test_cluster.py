"""rate_limited_task's limiter on a real three-master Redis Cluster (tests/redis_cluster.py)."""

from __future__ import annotations

import itertools

import pytest
from celery import Celery
from celery.exceptions import Retry

from esi_views import ratelimit
from esi_views.ratelimit import SpacingLimiter, parse_rate, rate_limited_task
from esi_views.redis_scripts import get_redis, key_slot, redis_time

from .test_decorator import run_in_worker

TEN = parse_rate("10/s")


def test_the_cluster_is_real(redis_cluster):
    assert len(redis_cluster.get_primaries()) == 3
    assert abs(redis_time(redis_cluster) - redis_time(redis_cluster)) < 5


def test_buckets_on_every_master_keep_their_spacing(redis_cluster, cluster_key_prefix):
    # Enough buckets that they land on all three masters.
    keys = [f"{cluster_key_prefix}bucket-{i}" for i in range(12)]
    nodes = {redis_cluster.get_node_from_key(k).name for k in keys}
    assert len(nodes) == 3
    for key in keys:
        limiter = SpacingLimiter(TEN, key, client=redis_cluster)
        assert limiter.acquire("t0") == 0.0
        waits = [limiter.acquire(f"t{i}") for i in range(1, 4)]
        for i, wait in enumerate(waits, start=1):
            assert 0 < wait <= i * 0.1  # less the time the calls took (exact slots below)
        slots = [int(redis_cluster.zscore(key, f"t{i}")) for i in range(1, 4)]
        assert [b - a for a, b in itertools.pairwise(slots)] == [TEN.interval_us] * 2


def test_a_flushed_script_cache_is_reloaded_on_every_master(redis_cluster, cluster_key_prefix):
    limiter = SpacingLimiter(TEN, cluster_key_prefix + "k", client=redis_cluster)
    assert limiter.acquire("a") == 0.0
    redis_cluster.script_flush()  # on every primary (a restart, a failover)
    assert redis_cluster.script_exists(ratelimit._SCRIPT.sha) == [False]
    assert limiter.acquire("b") > 0  # NOSCRIPT -> SCRIPT LOAD on all primaries -> EVALSHA
    assert redis_cluster.script_exists(ratelimit._SCRIPT.sha) == [True]  # on all of them
    other = SpacingLimiter(TEN, cluster_key_prefix + "elsewhere", client=redis_cluster)
    assert key_slot(other.key) != key_slot(limiter.key)
    assert other.acquire("c") == 0.0


@pytest.fixture
def cluster_settings(settings, cluster_key_prefix):
    settings.ESI_RATE_LIMIT_KEY_PREFIX = cluster_key_prefix
    settings.ESI_RATE_LIMIT_REDIS_CLIENT = "tests.redis_cluster.cluster_client_factory"
    return settings


def test_rate_limited_task_through_the_settings_hook(redis_cluster, cluster_settings):
    from esi_views import redis_scripts

    redis_scripts._factory_clients.clear()
    client = get_redis()
    assert type(client).__name__ == "RedisCluster"
    app = Celery("rl-cluster-tests", broker="memory://", set_as_current=False)
    ran = []

    @app.task(bind=True, name="t.cluster", shared=False)
    @rate_limited_task("1/m", keys=["corp_id"])
    def per_corp(self, corp_id):
        ran.append(corp_id)
        return corp_id

    try:
        for corp in range(6):  # buckets spread over the masters
            assert run_in_worker(per_corp, corp) == corp
            with pytest.raises(Retry) as info:
                run_in_worker(per_corp, corp)
            assert 55 < info.value.when <= 60
        assert ran == list(range(6))
    finally:
        redis_scripts._factory_clients.clear()
        client.close()
