"""Every error this package raises on purpose: one hierarchy under ``EsiError``.

The families callers act on (django-esi's names, re-exported by ``esi_views.errors``,
are the parents, so ``except TokenError`` written for django-esi catches ours):

- ``TokenError``: this token cannot be used. ``TokenInvalidError`` (ours:
  ``TokenDeadError``, deleted), ``TokenExpiredError`` and ``NotRefreshableTokenError``
  (ours: ``NoRefreshTokenError``, which is all three).
- ``IncompleteResponseError``: no usable answer now, keep the token. ``SSOUnavailableError``
  (ours: ``SSOTransientError``, may carry ``retry_after``) is the SSO outage.
- ``SSOOAuthError``: the SSO answered with an OAuth error (``.error``, ``.description``).
- ``SSOConfigurationError``: our settings are wrong (also ``ImproperlyConfigured``).
- ``InvalidJWTError``: an access token failed verification (its own family: a forged
  token is not an outage). Met while refreshing, it is wrapped in the transient
  ``SSOInvalidAnswerError`` (the SSO sent something odd; the stored token is kept).
- ``FlowError`` (a step of the web flow refused a request), the ``rate_limited_task``
  errors and ``EsiLimitError`` (an ESI call cannot go out now).

Exceptions take their data as constructor arguments; wrapping ones are raised ``from``
what they wrap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise  # str, or a lazy translation of one


class EsiError(Exception):
    """Base class of everything this package raises on purpose."""


#: django-esi's base class is ours.
DjangoEsiException = EsiError


# -- django-esi's families -------------------------------------------------------------


class TokenError(EsiError):
    """This token cannot be used."""


class TokenInvalidError(TokenError):
    """The token is invalid for good (revoked, expired refresh token, changed hands)."""


class TokenExpiredError(TokenError):
    """The access token expired and cannot be renewed."""


class NotRefreshableTokenError(TokenError):
    """The token has no refresh token."""


class IncompleteResponseError(EsiError):
    """No usable answer could be had right now; the token is kept."""


class SSOUnavailableError(IncompleteResponseError):
    """The EVE SSO could not be reached or did not answer usefully; try again later."""


class SSOError(EsiError):
    """Talking to the EVE SSO failed. ``error`` is the OAuth error code when the SSO sent one."""

    def __init__(
        self,
        message: str = "",
        *,
        error: str | None = None,
        description: str | None = None,
        status: int | None = None,
    ) -> None:
        self.error = error
        self.description = description
        self.status = status
        super().__init__(message or description or error or self.__class__.__doc__)


class SSOOAuthError(SSOError):
    """The EVE SSO answered with an OAuth2 error (``error``, ``description``).

    Constructed as in django-esi (``SSOOAuthError("invalid_grant", "…")``) or with keywords.
    """

    def __init__(
        self,
        error: str | None = None,
        description: str | None = None,
        *,
        message: str = "",
        status: int | None = None,
    ) -> None:
        super().__init__(message, error=error, description=description, status=status)


# -- token dead: delete it ----------------------------------------------------------


class TokenDeadError(SSOError, TokenInvalidError):
    """The token can never be refreshed or used again (it is deleted)."""


class InvalidGrantError(TokenDeadError, SSOOAuthError):
    """The SSO answered ``invalid_grant``: the code or refresh token is revoked, used or expired."""


class InvalidTokenError(TokenDeadError, SSOOAuthError):
    """The SSO answered ``invalid_token``."""


class OwnerChangedError(TokenDeadError):
    """The character's owner hash changed: the character was sold or transferred."""

    def __init__(self, message: str = "", *, old_owner_hash: str, new_owner_hash: str) -> None:
        self.old_owner_hash = old_owner_hash
        self.new_owner_hash = new_owner_hash
        super().__init__(message or "The character's owner hash changed.")


class NoRefreshTokenError(TokenDeadError, NotRefreshableTokenError, TokenExpiredError):
    """The token expired and has no refresh token to renew it with."""


class TokenGoneError(TokenDeadError):
    """The token was deleted (by another process) before it could be refreshed."""


DEAD_TOKEN_ERRORS: dict[str, type[TokenDeadError]] = {
    "invalid_grant": InvalidGrantError,
    "invalid_token": InvalidTokenError,
}


# -- transient: keep the token, try later ----------------------------------------------


class SSOTransientError(SSOError, SSOUnavailableError):
    """The SSO could not answer now. ``retry_after`` (seconds) is set when the SSO said when.

    ``refresh_token`` is set when the SSO did answer a refresh but the answer could not be
    used (it failed verification, or verifying it failed): the SSO may already have
    retired the old refresh token, so this one must be stored.
    """

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        refresh_token: str | None = None,
        **kwargs,
    ) -> None:
        self.retry_after = retry_after
        self.refresh_token = refresh_token
        super().__init__(message, **kwargs)


class SSOUnreachableError(SSOTransientError):
    """No connection to the SSO could be made."""


class SSOTimeoutError(SSOTransientError):
    """The SSO did not answer in time."""


class SSOServerError(SSOTransientError):
    """The SSO answered with a 5xx status."""


class SSORateLimitedError(SSOTransientError):
    """The SSO answered 429 Too Many Requests."""


class SSOConcurrencyTimeoutError(SSOTransientError):
    """No slot of ``ESI_SSO_MAX_CONCURRENCY`` freed up in time: the call was not made."""


class SSOMalformedResponseError(SSOTransientError):
    """The SSO's answer was not what the protocol promises (bad JSON, missing fields)."""


class SSOInvalidAnswerError(SSOMalformedResponseError):
    """The SSO answered a refresh with an access token that failed verification.

    Transient: the stored token is not dead because the SSO sent something odd.
    ``reason`` is the ``InvalidJWTError``'s (raised ``from`` it).
    """

    def __init__(self, message: str = "", *, reason: str, **kwargs) -> None:
        self.reason = reason
        super().__init__(message or f"The EVE SSO's new access token failed: {reason}.", **kwargs)


# -- invalid JWTs: their own family -------------------------------------------------------


class InvalidJWTError(EsiError):
    """An access token failed verification. ``reason`` names the rule it broke."""

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or f"Access token rejected: {reason}.")


# -- configuration: fix the settings ---------------------------------------------------


class SSOConfigurationError(SSOError, ImproperlyConfigured):
    """Our SSO application settings are wrong or missing."""


class InvalidClientError(SSOConfigurationError, SSOOAuthError):
    """The SSO rejected our client id or secret (``invalid_client``)."""


class MissingSettingError(SSOConfigurationError):
    """A required ``ESI_*`` setting is not set."""


class TokenDecryptionError(EsiError, ImproperlyConfigured):
    """A stored secret was encrypted with a key that is no longer configured."""


# -- the rest ---------------------------------------------------------------------------


class SSORejectedError(SSOOAuthError, IncompleteResponseError):
    """The SSO refused the request for a reason outside the other families (keep the token)."""


class FlowError(EsiError):
    """A step of the token flow refused the request; rendered as ``esi_views/error.html``.

    ``retry_after`` (seconds) becomes the ``Retry-After`` header of a 503; ``retry_url``
    a "try again" link on the page.
    """

    def __init__(
        self,
        status: int,
        title: StrOrPromise,
        message: StrOrPromise,
        *,
        retry_after: int | None = None,
        retry_url: str | None = None,
    ) -> None:
        self.status, self.title, self.message = status, title, message
        self.retry_after, self.retry_url = retry_after, retry_url
        super().__init__(f"{status} {title}: {message}")


# -- Redis: the coordination store of every limiter ------------------------------------


class RedisUnavailableError(EsiError):
    """Redis could not run a limiter's script (down, timing out, cluster down, out of memory).

    The redis-py error is the ``__cause__``. Raised by ``esi_views.redis_scripts``; each
    limiter documents what it does about it.
    """


# -- rate_limited_task ---------------------------------------------------------------------


class InvalidRateError(EsiError, ValueError):
    """The rate string is not ``"N/window"`` with a positive N and a unit of s, m, h or d."""


class RateLimitUsageError(EsiError, TypeError):
    """``rate_limited_task`` was applied to something it cannot limit."""


class RateLimiterUnavailableError(RedisUnavailableError):
    """Redis did not answer, so the limit could not be checked (eager calls only)."""


# -- ESI calls: the shared budget said no ---------------------------------------------------


class EsiLimitError(EsiError):
    """An ESI call cannot go out now without breaking CCP's limits; try again later."""


class EsiRateLimitedError(EsiLimitError):
    """The route group's bucket is spent (or ESI answered 429).

    ``retry_after``: seconds until the bucket has room again; ``group``: the ESI
    rate-limit group (``None`` when ESI did not name it).
    """

    def __init__(self, message: str = "", *, retry_after: float, group: str | None = None) -> None:
        self.retry_after = retry_after
        self.group = group
        super().__init__(
            message or f"ESI rate limit for group {group or '?'}: retry in {retry_after:.1f} s."
        )


class EsiErrorLimitedError(EsiLimitError):
    """ESI's error limit is (nearly) spent; nothing may go out until ``reset`` seconds pass."""

    def __init__(self, message: str = "", *, reset: float) -> None:
        self.reset = reset
        super().__init__(message or f"ESI error limit reached: resets in {reset:.1f} s.")
