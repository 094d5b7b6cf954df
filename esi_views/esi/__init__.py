"""Calling ESI within CCP's limits: ``token.esi()`` for a character, ``public()`` for the rest.

    answer = token.esi().get("/characters/{character_id}/skills/",
                             character_id=token.character_id)
    answer.data, answer.status, answer.from_cache
    names = public().post("/universe/names/", json=[30000142]).data

Every call shares one budget per ESI bucket with every other thread and process
(through Redis), answers from Django's cache while ESI says the data is fresh, and
raises ``EsiRateLimitedError`` / ``EsiErrorLimitedError`` when it cannot go out soon
enough. See the package documentation, "Calling ESI".
"""

from __future__ import annotations

from .client import Answer, EsiSession
from .errors import (
    EsiErrorLimitedError,
    EsiLimitError,
    EsiLimiterUnavailableError,
    EsiRateLimitedError,
    EsiResponseError,
    EsiRouteError,
    EsiScopeError,
    EsiUnreachableError,
)
from .routes import ROUTE_SCOPES, register_route

__all__ = [
    "ROUTE_SCOPES",
    "Answer",
    "EsiErrorLimitedError",
    "EsiLimitError",
    "EsiLimiterUnavailableError",
    "EsiRateLimitedError",
    "EsiResponseError",
    "EsiRouteError",
    "EsiScopeError",
    "EsiSession",
    "EsiUnreachableError",
    "public",
    "register_route",
]


def public() -> EsiSession:
    """A session for ESI's public routes (no token; the public bucket)."""
    return EsiSession(None)
