"""The ESI limiter on a real three-master Redis Cluster (tests/redis_cluster.py)."""

from __future__ import annotations

import pytest

from esi_views.esi import EsiErrorLimitedError, limiter, public
from esi_views.esi.testing_support import clear_client_state
from esi_views.redis_scripts import key_slot

pytestmark = pytest.mark.django_db
WALLET = "esi-wallet.read_character_wallet.v1"


@pytest.fixture
def on_cluster(redis_cluster, cluster_key_prefix, settings, fake_esi):
    settings.ESI_RATE_LIMIT_REDIS_CLIENT = "tests.redis_cluster.cluster_client_factory"
    settings.ESI_LIMITER_KEY_PREFIX = cluster_key_prefix
    clear_client_state()
    yield redis_cluster
    clear_client_state()


def test_buckets_spread_over_the_masters_and_hold(on_cluster, fake_esi, esi_token, settings):
    settings.ESI_MAX_WAIT = 30.0
    fake_esi.set_limit("char-wallet", 10, window=2)
    characters = [90000101 + i for i in range(6)]
    nodes = set()
    for character_id in characters:
        token = esi_token(character_id=character_id, scopes=[WALLET])
        session = token.esi()
        for _ in range(8):  # 16 tokens through a 10-token bucket: some waits
            assert (
                session.get("/characters/{character_id}/wallet/", character_id=character_id).status
                == 200
            )
        user = f"{settings.ESI_SSO_CLIENT_ID}:{character_id}"
        keys = limiter.bucket_keys("char-wallet", user)
        assert key_slot(keys[0]) == key_slot(keys[1])  # one slot per script
        assert on_cluster.zcard(keys[0]) > 0  # the reservations live on the cluster
        nodes.add(on_cluster.get_node_from_key(keys[0]).name)
    assert len(nodes) >= 2
    assert fake_esi.calls["status:429"] == 0


def test_error_limit_state_on_the_cluster(on_cluster, fake_esi, settings):
    settings.ESI_MAX_WAIT = 0.0
    fake_esi.inject("error_limited")
    with pytest.raises(EsiErrorLimitedError):
        public().get("/status/")
    limiter.forget_local_state()
    calls = sum(fake_esi.calls.values())
    with pytest.raises(EsiErrorLimitedError):
        public().get("/markets/prices/")
    assert sum(fake_esi.calls.values()) == calls
