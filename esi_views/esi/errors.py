"""Errors of the ESI client; all are ``EsiError``s. The limit errors live in exceptions.py,
shared with ``rate_limit_retry_task``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exceptions import (
    EsiError,
    EsiErrorLimitedError,
    EsiLimitError,
    EsiRateLimitedError,
    RedisUnavailableError,
)

if TYPE_CHECKING:
    from .client import Answer

__all__ = [
    "EsiErrorLimitedError",
    "EsiLimitError",
    "EsiLimiterUnavailableError",
    "EsiRateLimitedError",
    "EsiResponseError",
    "EsiRouteError",
    "EsiScopeError",
    "EsiUnreachableError",
]


class EsiRouteError(EsiError, ValueError):
    """The call was refused before any request: the path or its values are not acceptable."""


class EsiScopeError(EsiRouteError):
    """The route needs a scope the token does not have (no request was made)."""

    def __init__(self, message: str, *, scope: str, route: str) -> None:
        self.scope = scope
        self.route = route
        super().__init__(message)


class EsiLimiterUnavailableError(RedisUnavailableError):
    """Redis, which keeps the shared budget, did not answer: the call was not made."""


class EsiUnreachableError(EsiError):
    """No HTTP answer from ESI (connection refused or reset, timeout)."""


class EsiResponseError(EsiError):
    """ESI answered with an error status (4xx other than 420/429, or 5xx).

    ``status``, ``answer`` (with ``.data`` when ESI sent JSON, e.g. ``{"error": ...}``).
    """

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.status = answer.status
        detail = answer.data.get("error") if isinstance(answer.data, dict) else None
        super().__init__(f"ESI answered HTTP {answer.status}" + (f": {detail}" if detail else "."))
