"""A Celery app for the integration tests, run by real worker subprocesses.

Configured from the environment the test gives the workers:
``ESI_RL_BROKER_URL``, ``ESI_RL_REDIS_URL`` (limiter and the records the test reads),
``ESI_RL_PREFIX`` (namespaces every key and the queue, one per test run) and
``ESI_RL_MAX_COUNTDOWN``.
"""

from __future__ import annotations

import json
import os
import time

import django
import redis
from celery import Celery
from celery.signals import task_retry, worker_ready
from django.conf import settings

BROKER_URL = os.environ.get("ESI_RL_BROKER_URL", "redis://127.0.0.1:6379/14")
REDIS_URL = os.environ.get("ESI_RL_REDIS_URL", "redis://127.0.0.1:6379/15")
PREFIX = os.environ.get("ESI_RL_PREFIX", "esi-rl-test")
QUEUE = f"{PREFIX}-queue"

IN_WORKER = not settings.configured  # the test process already runs tests.settings

if IN_WORKER:
    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "esi_views"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
        ESI_RATE_LIMIT_REDIS_URL=REDIS_URL,
        ESI_RATE_LIMIT_KEY_PREFIX=f"{PREFIX}:bucket:",
        ESI_RATE_LIMIT_MAX_COUNTDOWN=float(os.environ.get("ESI_RL_MAX_COUNTDOWN", "4")),
    )
    django.setup()

from esi_views.decorators import rate_limit_retry_task, rate_limited_task  # noqa: E402
from esi_views.deferral import is_deferring  # noqa: E402
from esi_views.exceptions import EsiErrorLimitedError, EsiRateLimitedError  # noqa: E402
from tests.ratelimit import recording  # noqa: E402

# The limiter writes each admission's Redis time next to its bucket: the test checks the
# spacing on those, not on when the task body happened to get the CPU. Only in workers:
# the test process imports this module too, and its other tests (e.g. on a Redis
# Cluster, where the extra key must be declared) run the product's script.
if IN_WORKER:
    recording.install()

app = Celery("esi_rl_test", broker=BROKER_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=4,
    # Every broker key (kombu's "unacked" bookkeeping too) under the run's prefix, so the
    # broker may share the test's Redis database and the test deletes all it made.
    broker_transport_options={"global_keyprefix": f"{PREFIX}:kombu:"},
)

_records = redis.Redis.from_url(REDIS_URL)


def record(kind: str, task, **extra) -> None:
    """What ran: the test checks completion and retry counts from these."""
    entry = {"t": time.time(), "id": task.request.id, "retries": task.request.retries, **extra}
    _records.rpush(f"{PREFIX}:runs:{kind}", json.dumps(entry))


@task_retry.connect
def _count_retry(sender=None, request=None, **kwargs) -> None:
    _records.hincrby(f"{PREFIX}:retries", request.id, 1)


@worker_ready.connect
def _ready(sender=None, **kwargs) -> None:
    _records.sadd(f"{PREFIX}:ready", sender.hostname)


@app.task(bind=True, name="rl.spaced")
@rate_limited_task("5/s")
def spaced(self, n: int) -> None:
    record("spaced", self, n=n)


@app.task(bind=True, name="rl.strict", max_retries=0)
@rate_limited_task("1/3s")
def strict(self, n: int) -> None:
    record("strict", self, n=n)


@app.task(bind=True, name="rl.per_corp")
@rate_limited_task("2/s", keys=["corp_id"])
def per_corp(self, corp_id: int, character_id: int = 0) -> None:
    record(f"corp{corp_id}", self, character_id=character_id)


@app.task(bind=True, name="rl.deferred", max_retries=0)
@rate_limit_retry_task
def deferred(self, name: str, limited: int, wait: float, error_limit: bool = False) -> str:
    """Hits an ESI limit on its first ``limited`` runs, then succeeds."""
    attempt = _records.incr(f"{PREFIX}:attempts:{name}")
    record(name, self, attempt=attempt, deferring=is_deferring())
    if attempt <= limited:
        if error_limit:
            raise EsiErrorLimitedError(reset=wait)
        raise EsiRateLimitedError(retry_after=wait, group="test")
    return "done"


@app.task(bind=True, name="rl.failing", max_retries=0)
@rate_limit_retry_task
def failing(self, name: str) -> None:
    """Any other error passes through (and is not retried: max_retries=0)."""
    record(name, self)
    raise ValueError("not a limit")
