"""django-esi's exception names (``esi.errors``), as the same classes as our hierarchy.

After swapping ``esi.errors`` for ``esi_views.errors``, ``except TokenError`` and
``isinstance(exc, SSOUnavailableError)`` catch what they caught with django-esi:

- a dead token (revoked, owner changed) is a ``TokenInvalidError``;
- an expired token without a refresh token is a ``NotRefreshableTokenError`` and a
  ``TokenExpiredError`` (and, since we delete it, a ``TokenInvalidError`` too);
- an SSO outage (down, timeout, 5xx, 429, unusable answer) is an ``SSOUnavailableError``,
  which is an ``IncompleteResponseError``;
- an OAuth error answer of the SSO is an ``SSOOAuthError`` (``.error``, ``.description``).

See ``esi_views.exceptions`` for our finer classes.
"""

from .exceptions import (
    DjangoEsiException,
    IncompleteResponseError,
    NotRefreshableTokenError,
    SSOOAuthError,
    SSOUnavailableError,
    TokenError,
    TokenExpiredError,
    TokenInvalidError,
)

__all__ = [
    "DjangoEsiException",
    "IncompleteResponseError",
    "NotRefreshableTokenError",
    "SSOOAuthError",
    "SSOUnavailableError",
    "TokenError",
    "TokenExpiredError",
    "TokenInvalidError",
]
