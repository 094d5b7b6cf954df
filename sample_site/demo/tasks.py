"""A rate-limited Celery task whose starts the demo's task page plots."""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from esi_views.decorators import rate_limited_task

RECORD_TTL = 3600


def record_key(batch: str, index: int) -> str:
    return f"demo:tasks:{batch}:{index}"


@shared_task(bind=True, name="demo.fetch_character_sheet")
@rate_limited_task(rate=settings.DEMO_TASK_RATE)
def fetch_character_sheet(self, batch: str, index: int, label: str) -> float:
    """Stands in for an ESI request: records when it started and finished."""
    started = time.time()
    cache.set(record_key(batch, index), {"started": started, "finished": None}, RECORD_TTL)
    time.sleep(0.15)  # the "ESI request"
    cache.set(record_key(batch, index), {"started": started, "finished": time.time()}, RECORD_TTL)
    return started
