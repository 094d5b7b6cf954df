"""Every error this package raises about the SSO, in three families callers act on.

- ``TokenDeadError``: the token can never be used again (delete it).
- ``SSOTransientError``: try again later; keep the token. May carry ``retry_after``.
- ``SSOConfigurationError``: our side is set up wrongly (also ``ImproperlyConfigured``).

``SSORejectedError`` is the rare rest: the SSO refused the request for a reason that
is neither of those (e.g. ``invalid_scope``); keep the token and log it.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class EsiError(Exception):
    """Base class of everything this package raises on purpose."""


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


# -- token dead: delete it ----------------------------------------------------------


class TokenDeadError(SSOError):
    """The token can never be refreshed or used again."""


class InvalidGrantError(TokenDeadError):
    """The SSO answered ``invalid_grant``: the code or refresh token is revoked, used or expired."""


class InvalidTokenError(TokenDeadError):
    """The SSO answered ``invalid_token``."""


class OwnerChangedError(TokenDeadError):
    """The character's owner hash changed: the character was sold or transferred."""

    def __init__(self, message: str = "", *, old_owner_hash: str, new_owner_hash: str) -> None:
        self.old_owner_hash = old_owner_hash
        self.new_owner_hash = new_owner_hash
        super().__init__(message or "The character's owner hash changed.")


DEAD_TOKEN_ERRORS: dict[str, type[TokenDeadError]] = {
    "invalid_grant": InvalidGrantError,
    "invalid_token": InvalidTokenError,
}


# -- transient: keep the token, try later ----------------------------------------------


class SSOTransientError(SSOError):
    """The SSO could not answer now. ``retry_after`` (seconds) is set when the SSO said when.

    ``refresh_token`` is set when the SSO did answer a refresh but the answer could not be
    used (it failed verification, or verifying it failed): the SSO may already have
    retired the old refresh token, so this one must be stored.
    """

    refresh_token: str | None = None

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kwargs) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class SSOUnreachableError(SSOTransientError):
    """No connection to the SSO could be made."""


class SSOTimeoutError(SSOTransientError):
    """The SSO did not answer in time."""


class SSOServerError(SSOTransientError):
    """The SSO answered with a 5xx status."""


class SSORateLimitedError(SSOTransientError):
    """The SSO answered 429 Too Many Requests."""


class SSOMalformedResponseError(SSOTransientError):
    """The SSO's answer was not what the protocol promises (bad JSON, missing fields)."""


class InvalidJWTError(SSOMalformedResponseError):
    """An access token failed verification. ``reason`` names the rule it broke."""

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or f"Access token rejected: {reason}.")


# -- configuration: fix the settings ---------------------------------------------------


class SSOConfigurationError(SSOError, ImproperlyConfigured):
    """Our SSO application settings are wrong or missing."""


class InvalidClientError(SSOConfigurationError):
    """The SSO rejected our client id or secret (``invalid_client``)."""


class MissingSettingError(SSOConfigurationError):
    """A required ``ESI_*`` setting is not set."""


# -- the rest ---------------------------------------------------------------------------


class SSORejectedError(SSOError):
    """The SSO refused the request for a reason outside the three families."""


# -- Redis: the coordination store of every limiter ------------------------------------


class RedisUnavailableError(EsiError):
    """Redis could not run a limiter's script (down, timing out, cluster down, out of memory).

    The redis-py error is the ``__cause__``. Raised by ``esi_views.redis_scripts``; each
    limiter documents what it does about it.
    """


# -- ESI calls: the shared budget said no ---------------------------------------------------


class EsiLimitError(EsiError):
    """An ESI call cannot go out now without breaking CCP's limits; try again later."""


class EsiRateLimitedError(EsiLimitError):
    """The route group's bucket is spent (or ESI answered 429).

    ``retry_after``: seconds until the bucket has room again; ``group``: the ESI
    rate-limit group (``None`` when ESI did not name it).
    """

    def __init__(
        self, message: str = "", *, retry_after: float, group: str | None = None
    ) -> None:
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
