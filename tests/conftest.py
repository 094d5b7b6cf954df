"""Which backends this run uses, said up front; and CI's demand for the real ones."""

from __future__ import annotations

import pytest
from django.conf import settings


def _backends() -> tuple[str, str]:
    db = settings.DATABASES["default"]
    if settings.DATABASE_URL:
        database = f"{db['ENGINE'].rsplit('.', 1)[-1]} at {db.get('HOST')}:{db.get('PORT')}"
    else:
        database = "SQLite fallback (set ESI_TEST_DATABASE_URL for PostgreSQL)"
    if settings.REDIS_URL:
        redis = f"Redis at {settings.REDIS_URL}"
    else:
        redis = "fakeredis fallback (set ESI_TEST_REDIS_URL for a real Redis)"
    return database, redis


def pytest_report_header(config):
    database, redis = _backends()
    return [f"esi-views database: {database}", f"esi-views redis: {redis}"]


def pytest_terminal_summary(terminalreporter):
    database, redis = _backends()
    terminalreporter.write_line(f"esi-views backends: database {database}; redis {redis}")


def _check_services() -> list[str]:
    problems = []
    if not settings.DATABASE_URL:
        problems.append("ESI_TEST_DATABASE_URL is not set")
    elif settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        problems.append("ESI_TEST_DATABASE_URL does not point at PostgreSQL")
    else:
        import psycopg

        db = settings.DATABASES["default"]
        try:
            psycopg.connect(
                host=db["HOST"],
                port=db["PORT"] or 5432,
                user=db["USER"],
                password=db["PASSWORD"] or None,
                dbname=db["NAME"],
                connect_timeout=5,
            ).close()
        except psycopg.Error as exc:
            problems.append(f"PostgreSQL unreachable: {exc}")
    if not settings.REDIS_URL:
        problems.append("ESI_TEST_REDIS_URL is not set")
    else:
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5).ping()
        except redis.RedisError as exc:
            problems.append(f"Redis unreachable: {exc}")
    return problems


def pytest_sessionstart(session):
    if settings.REQUIRE_SERVICES:
        problems = _check_services()
        if problems:
            raise pytest.UsageError("ESI_TEST_REQUIRE_SERVICES=1 but: " + "; ".join(problems))


# A local three-master Redis Cluster (session-wide) and a key namespace on it per test.
from tests.redis_cluster import redis_cluster  # noqa: E402, F401


@pytest.fixture
def cluster_key_prefix(redis_cluster):  # noqa: F811
    """A fresh key prefix on ``redis_cluster``; its keys are deleted afterwards."""
    import uuid

    prefix = f"esi-cluster-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    for key in list(redis_cluster.scan_iter(match=f"{prefix}*")):
        redis_cluster.delete(key)
