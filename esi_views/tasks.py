"""Celery tasks: thin wrappers over ``esi_views.cleanup`` (the only module importing Celery).

Schedule them with ``BEAT_SCHEDULE`` (see "Cleanup tasks" in the package documentation)::

    from esi_views.tasks import BEAT_SCHEDULE
    CELERY_BEAT_SCHEDULE = {**BEAT_SCHEDULE}

This module can be imported from settings.py: the cleanup functions (and with them the
models) are imported only when a task runs.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.schedules import crontab

__all__ = [
    "BEAT_SCHEDULE",
    "cleanup_callbackredirect",
    "cleanup_token",
    "cleanup_token_subset",
    "refresh_or_delete_token",
]


@shared_task(name="esi_views.tasks.cleanup_callbackredirect")
def cleanup_callbackredirect(max_age: int = 300) -> int:
    """Delete SSO flows older than ``max_age`` seconds; returns how many."""
    from . import cleanup

    return cleanup.cleanup_callbackredirect(max_age)


@shared_task(name="esi_views.tasks.cleanup_token")
def cleanup_token() -> dict[str, Any]:
    """Refresh every expired token, delete the dead ones; returns the report as a dict."""
    from . import cleanup

    return cleanup.cleanup_token().as_dict()


@shared_task(name="esi_views.tasks.cleanup_token_subset")
def cleanup_token_subset(fraction: int = 48) -> dict[str, Any]:
    """The next 1/``fraction`` of the tokens; ``fraction`` runs cover every token once."""
    from . import cleanup

    return cleanup.cleanup_token_subset(fraction).as_dict()


@shared_task(name="esi_views.tasks.refresh_or_delete_token")
def refresh_or_delete_token(token_pk: int) -> bool | None:
    """django-esi's task: refresh one token now, deleting it if the SSO says it is dead.

    True if refreshed, False if deleted, None if there is no such token (any more). An
    SSO outage keeps the token and raises ``SSOTransientError`` (the task fails; retry it
    or let cleanup come back to it).
    """
    from .models import Token

    token = Token.objects.filter(pk=token_pk).first()
    return None if token is None else token.refresh_or_delete()


# The recommended intervals: SSO flows every four hours, a 1/48 token subset every hour
# (each token is visited once every 48 hours).
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "esi_cleanup_callbackredirect": {
        "task": "esi_views.tasks.cleanup_callbackredirect",
        "schedule": crontab(minute="0", hour="*/4"),
    },
    "esi_cleanup_token_subset": {
        "task": "esi_views.tasks.cleanup_token_subset",
        "schedule": crontab(minute="0", hour="*/1"),
    },
}
