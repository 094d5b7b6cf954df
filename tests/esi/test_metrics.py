"""The prometheus exporter counts what the signals report."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import CollectorRegistry

from esi_views.esi import EsiRateLimitedError, metrics, public

pytestmark = pytest.mark.django_db
WALLET = "esi-wallet.read_character_wallet.v1"


def value(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0.0


def test_calls_limits_delays_and_refreshes_are_counted(fake_esi, esi_token, settings):
    registry = CollectorRegistry()
    metrics.install(registry)
    assert metrics.install(registry) is metrics.install(registry)  # idempotent
    token = esi_token(character_id=90000001, scopes=[WALLET])
    token.expires_at = timezone.now() - timedelta(minutes=1)
    token.save()
    session = token.esi()
    session.get("/characters/{character_id}/wallet/", character_id=90000001)
    public().get("/status/")
    public().get("/status/")
    settings.ESI_MAX_WAIT = 0.0
    fake_esi.set_limit("char-wallet", 2)
    with pytest.raises(EsiRateLimitedError):
        session.get("/characters/{character_id}/wallet/", character_id=90000001)
    with pytest.raises(EsiRateLimitedError):
        session.get("/characters/{character_id}/wallet/", character_id=90000001)

    assert (
        value(
            registry,
            "esi_views_esi_calls_total",
            group="char-wallet",
            status="200",
            from_cache="false",
        )
        == 1
    )
    assert (
        value(registry, "esi_views_esi_calls_total", group="none", status="200", from_cache="true")
        == 1
    )
    assert value(registry, "esi_views_esi_tokens_total", group="char-wallet") == 2 + 5
    assert value(registry, "esi_views_esi_limited_total", group="char-wallet", status="429") == 1
    assert value(registry, "esi_views_esi_delays_total", reason="rate_limit", action="raise") >= 1
    assert (
        value(registry, "esi_views_sso_calls_total", grant_type="refresh_token", outcome="ok") == 1
    )
    assert value(registry, "esi_views_sso_call_seconds_count", grant_type="refresh_token") == 1
