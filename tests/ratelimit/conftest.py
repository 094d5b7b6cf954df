"""A Redis for the limiter tests: the real one CI names, else fakeredis (with Lua)."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings


def _client():
    if settings.REDIS_URL:  # CI: tests/settings.py points at DB 15 of the real Redis
        import redis

        return redis.Redis.from_url(settings.REDIS_URL)
    import fakeredis

    return fakeredis.FakeRedis()


@pytest.fixture
def redis_client():
    client = _client()
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client):
    """A fresh namespace per test; its keys are deleted afterwards (never a FLUSHDB)."""
    prefix = f"esi-rl-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)
