"""Whether the running code may wait for a limit or must let its Celery task be deferred.

``rate_limit_retry_task`` runs the task body inside ``deferring()``; the ESI client asks
``is_deferring()`` and, when true, raises its limit error at once instead of sleeping, so
the decorator can re-schedule the task and free the worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deferring: ContextVar[bool] = ContextVar("esi_views_deferring", default=False)


@contextmanager
def deferring() -> Iterator[None]:
    """Inside this block, limit errors are raised at once rather than waited out."""
    token = _deferring.set(True)
    try:
        yield
    finally:
        _deferring.reset(token)


def is_deferring() -> bool:
    return _deferring.get()
