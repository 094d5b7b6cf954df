"""``rate_limit_retry_task``: defer a Celery task while ESI's limits say "not now".

django-esi's contract: decorate the function of a bound task, below ``@shared_task``::

    @shared_task(bind=True, max_retries=3)
    @rate_limit_retry_task
    def update_assets(self, character_id): ...

The body runs inside :func:`esi_views.deferral.deferring`, so our ESI client raises
``EsiRateLimitedError`` / ``EsiErrorLimitedError`` at once instead of sleeping in the
worker. On such an error (or django-esi's ``ESIBucketLimitException`` /
``ESIErrorLimitException`` when django-esi is installed) the task is retried after the
reset plus some jitter, and the retry does not count against ``max_retries``. Any other
exception, and every return value, passes through untouched.

A countdown is never longer than the broker's visibility timeout allows (a Redis or SQS
broker would deliver the held message a second time): a longer wait is split, the task
re-enqueued with the time it may run again in a message header, and the body not run
until then.
"""

from __future__ import annotations

import functools
import importlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .conf import esi_settings
from .deferral import deferring
from .exceptions import EsiErrorLimitedError, EsiLimitError, EsiRateLimitedError

__all__ = ["DEFER_UNTIL_HEADER", "limit_wait", "rate_limit_retry_task"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Message header carrying the epoch time before which the body must not run.
DEFER_UNTIL_HEADER = "esi_views_defer_until"
#: Wait when a limit error does not say how long (django-esi's error limit may not).
DEFAULT_WAIT = 60.0
#: Kombu's default visibility timeout for the Redis and SQS transports.
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
#: Jitter added to each wait: up to this fraction of it, at least MIN_JITTER seconds.
JITTER_FRACTION = 0.1
MIN_JITTER = 1.0
MAX_JITTER = 60.0


def _django_esi_limit_errors() -> tuple[type[BaseException], ...]:
    """django-esi's limit exceptions when it is installed beside us (for its ESI client)."""
    try:
        # By name: django-esi is optional, and not installed where we type-check.
        esi_exceptions = importlib.import_module("esi.exceptions")
    except ImportError:
        return ()
    names = ("ESIBucketLimitException", "ESIErrorLimitException")
    return tuple(
        c
        for c in (getattr(esi_exceptions, n, None) for n in names)
        if isinstance(c, type) and issubclass(c, BaseException)
    )


def limit_wait(exc: BaseException) -> float | None:
    """Seconds until ``exc``'s limit resets, or None when ``exc`` is no limit error."""
    if isinstance(exc, EsiRateLimitedError):
        wait = exc.retry_after
    elif isinstance(exc, EsiErrorLimitedError):
        wait = exc.reset
    elif isinstance(exc, EsiLimitError):
        wait = None
    elif _django_esi_limit_errors() and isinstance(exc, _django_esi_limit_errors()):
        wait = getattr(exc, "reset", None)  # both carry .reset (seconds); may be None
    else:
        return None
    try:
        wait = float(wait) if wait is not None else DEFAULT_WAIT
    except (TypeError, ValueError):
        wait = DEFAULT_WAIT
    return wait if wait == wait and wait >= 0 else DEFAULT_WAIT  # NaN or negative


def _jitter(wait: float) -> float:
    # Spreading wake-ups, not a secret.
    return random.uniform(0.0, min(MAX_JITTER, max(MIN_JITTER, wait * JITTER_FRACTION)))  # noqa: S311


def _max_countdown(task: Any) -> float:
    """The longest countdown the broker holds safely: under its visibility timeout."""
    options = getattr(getattr(task, "app", None), "conf", {}).get("broker_transport_options") or {}
    try:
        visibility = float(options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT))
    except (TypeError, ValueError):
        visibility = DEFAULT_VISIBILITY_TIMEOUT
    return max(1.0, min(float(esi_settings.RATE_LIMIT_MAX_COUNTDOWN), visibility * 0.9))


def _is_task(obj: Any) -> bool:
    return callable(getattr(obj, "retry", None)) and getattr(obj, "request", None) is not None


def _defer(task: Any, until: float, exc: BaseException | None) -> Any:
    """Retry ``task`` so that it runs at ``until`` (epoch s), without using up a retry."""
    request = task.request
    remaining = max(0.0, until - time.time())
    countdown = min(remaining, _max_countdown(task))
    headers = dict(request.headers or {})
    headers[DEFER_UNTIL_HEADER] = until
    # Deferral is not a failure: give back the retry that retry() counts.
    request.retries -= 1
    logger.info(
        "%s deferred %.1f s by ESI limits (countdown %.1f s)", task.name, remaining, countdown
    )
    return task.retry(countdown=countdown, headers=headers, exc=exc)


def _deferred_until(request: Any) -> float | None:
    value = (request.headers or {}).get(DEFER_UNTIL_HEADER)
    if value is None:
        value = getattr(request, DEFER_UNTIL_HEADER, None)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def rate_limit_retry_task(func: F) -> F:
    """Retry the bound task after an ESI rate or error limit resets (see the module doc)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        task: Any = args[0] if args else None
        if _is_task(task) and not (task.request.is_eager or task.request.called_directly):
            until = _deferred_until(task.request)
            # Woken early by a split countdown: go back to sleep without running the body.
            if until is not None and until - time.time() > 0.5:
                raise _defer(task, until, None)
        try:
            with deferring():
                return func(*args, **kwargs)
        except Exception as exc:
            wait = limit_wait(exc)
            if wait is None:
                raise
            if not _is_task(task):
                logger.error(
                    "%s hit an ESI limit but its first argument is not a bound "
                    "task, so it cannot be retried.",
                    func.__qualname__,
                )
                raise
            if task.request.is_eager or task.request.called_directly:
                raise  # no queue to come back through: let the caller see the limit
            raise _defer(task, time.time() + wait + _jitter(wait), exc) from exc

    return wrapper  # type: ignore[return-value]
