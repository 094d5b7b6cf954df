"""The Celery app of bench/esi_limits.py's deferral scenario, run by real worker processes.

Configured from the environment bench/esi_limits.py gives the workers: ``BENCH_DEFER_REDIS``
(broker, limiter, shared group cache and the records the benchmark reads),
``BENCH_DEFER_ESI`` (the fake ESI) and ``BENCH_DEFER_PREFIX`` (namespaces every key
and the queue, one per run).
"""

from __future__ import annotations

import json
import os
import time

import django
import redis
from celery import Celery
from celery.signals import task_failure, task_retry, worker_ready
from django.conf import settings

REDIS_URL = os.environ.get("BENCH_DEFER_REDIS", "redis://127.0.0.1:6379/13")
PREFIX = os.environ.get("BENCH_DEFER_PREFIX", "esi_views:benchdefer")
QUEUE = f"{PREFIX}:queue"
FIRST_CHARACTER = 96000001

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "esi_views"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        # Redis, so one worker's first call teaches every worker the route's group; the
        # routes called are all distinct, so no answer is served from this cache.
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": f"{PREFIX}:cache",
            }
        },
        USE_TZ=True,
        ESI_API_URL=os.environ.get("BENCH_DEFER_ESI", "http://127.0.0.1:1"),
        ESI_RATE_LIMIT_REDIS_URL=REDIS_URL,
        ESI_LIMITER_KEY_PREFIX=f"{PREFIX}:limiter:",
        ESI_API_CACHE_ALIAS="default",
        ESI_SSO_CLIENT_ID="fake-client-id",
        ESI_USER_CONTACT_EMAIL="bench@example.com",
    )
    django.setup()

from esi_views.decorators import rate_limit_retry_task  # noqa: E402
from esi_views.esi import public  # noqa: E402

app = Celery("esi_views_bench_deferral", broker=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"global_keyprefix": f"{PREFIX}:kombu:"},
)

_records = redis.Redis.from_url(REDIS_URL)


@task_retry.connect
def _count_retry(sender=None, request=None, **kwargs) -> None:
    _records.incr(f"{PREFIX}:deferrals")


@task_failure.connect
def _count_failure(sender=None, task_id=None, exception=None, **kwargs) -> None:
    _records.rpush(f"{PREFIX}:failed", repr(exception))


@worker_ready.connect
def _ready(sender=None, **kwargs) -> None:
    _records.sadd(f"{PREFIX}:ready", sender.hostname)


@app.task(bind=True, name="bench.deferral.call", max_retries=3)
@rate_limit_retry_task
def call(self, n: int) -> None:
    """One public ESI call (a distinct character each, so nothing comes from a cache)."""
    public().get("/characters/{character_id}", character_id=FIRST_CHARACTER + n)
    _records.rpush(
        f"{PREFIX}:done", json.dumps({"n": n, "t": time.time(), "retries": self.request.retries})
    )
