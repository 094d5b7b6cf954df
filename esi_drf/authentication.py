"""``Authorization: Bearer <EVE SSO access token>`` for DRF.

The JWT is checked by ``esi_views.access_tokens.verify_access_token``, the verifier the
SSO callback uses (signature against the cached JWKS, issuer, audience with our client
id, expiry, subject), so a warm request costs no call to the SSO. The token maps to the
Django user who holds a stored token for the same character and owner hash
(``get_user``, a hook). ``request.auth`` is an :class:`EveAccessToken`.

Answers: no ``Bearer`` header -> ``None`` (other authenticators try); a bad, expired,
foreign or unmapped token -> 401 with ``WWW-Authenticate: Bearer realm="api",
error="invalid_token", error_description="..."``; the SSO's keys unreachable -> 503
(``esi_drf.exceptions.SSOUnavailable``) with ``Retry-After``.

DRF takes the ``WWW-Authenticate`` header from the *first* authentication class and
turns a 401 into a 403 when that class gives none (as ``SessionAuthentication`` does),
so list ``EveSSOAuthentication`` first (system check ``esi_drf.W001``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib.auth import get_user_model
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from esi_views.access_tokens import AccessTokenClaims, verify_access_token
from esi_views.exceptions import InvalidJWTError, SSOConfigurationError, SSOError

from .exceptions import SSOUnavailable

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

__all__ = ["EveAccessToken", "EveSSOAuthentication"]

logger = logging.getLogger(__name__)

# Fixed texts per verifier rule: the header never echoes attacker-chosen claim values.
_REASONS = {
    "expired": _("The access token has expired."),
    "audience": _("The access token was not issued for this application."),
    "signature": _("The access token's signature does not verify."),
    "issuer": _("The access token was not issued by the EVE SSO."),
    "kid": _("The access token is signed with a key the EVE SSO does not publish."),
    "algorithm": _("The access token's signing algorithm is not accepted."),
}
_INVALID = _("The access token is invalid.")
_MALFORMED_HEADER = _("Invalid Authorization header: expected 'Bearer <access token>'.")
_UNKNOWN_CHARACTER = _("No account on this site holds a token for this character.")
_AMBIGUOUS = _("More than one account on this site holds this character; log in instead.")
_INACTIVE = _("The account holding this character is inactive.")
_ERROR_ATTRIBUTE = "_esi_bearer_error"
_UNSAFE_HEADER_CHARS = re.compile(r'[^\x20-\x7e]|["\\]')


class _Refused(AuthenticationFailed):
    """A 401 whose message also goes, untranslated, into ``WWW-Authenticate``."""

    def __init__(self, message: StrOrPromise) -> None:
        super().__init__(message)
        self.header_message = message


@dataclass(frozen=True)
class EveAccessToken:
    """A verified EVE SSO access token: ``request.auth`` under ``EveSSOAuthentication``.

    Duck-types with ``esi_views.models.Token`` where views need it (``character_id``,
    ``character_name``, ``valid_access_token()``), so a view can serve both bearer
    and session clients from ``request.esi_token``.
    """

    token: str = field(repr=False)
    claims: AccessTokenClaims

    @property
    def character_id(self) -> int:
        return self.claims.character_id

    @property
    def character_name(self) -> str:
        return self.claims.character_name

    @property
    def owner_hash(self) -> str:
        return self.claims.owner_hash

    @property
    def scopes(self) -> frozenset[str]:
        return self.claims.scopes

    @property
    def expires_at(self) -> datetime:
        return self.claims.expires_at

    @property
    def expired(self) -> bool:
        return self.claims.expires_at <= timezone.now()

    def valid_access_token(self) -> str:
        """The raw JWT, good for calling ESI as this character until ``expires_at``."""
        return self.token


class EveSSOAuthentication(BaseAuthentication):
    """Authenticate ``Authorization: Bearer <JWT>`` requests with EVE SSO access tokens."""

    keyword: ClassVar[str] = "Bearer"
    www_authenticate_realm: ClassVar[str] = "api"

    # -- hooks ---------------------------------------------------------------------------

    def get_client_id(self) -> str | None:
        """The client id the token's ``aud`` must hold; None means ``ESI_SSO_CLIENT_ID``."""
        return None

    def get_user(self, claims: AccessTokenClaims) -> Any:
        """The user this character acts for, or None (-> 401).

        Default: the one user holding a stored token of this character *and* owner hash
        (a sold character has a new owner hash and maps to nobody). Two users holding
        the same character are refused rather than guessed between.
        """
        from esi_views.models import Token  # here: importable before the app registry

        # One query. Filtering on Token rather than the reverse relation ("token__")
        # keeps working when another app's model claims that name (django-esi's Token,
        # installed side by side while migrating).
        holders = Token.objects.filter(
            character_id=claims.character_id, character_owner_hash=claims.owner_hash
        ).values("user_id")
        users = list(get_user_model()._default_manager.filter(pk__in=holders)[:2])
        if len(users) > 1:
            raise _Refused(_AMBIGUOUS)
        return users[0] if users else None

    # -- DRF -----------------------------------------------------------------------------

    @sensitive_variables()  # the bearer token, in error reports
    def authenticate(self, request: Request) -> tuple[Any, EveAccessToken] | None:
        raw = self._bearer_token(request)
        if raw is None:
            return None
        try:
            claims = self._verify(raw)
            user = self.get_user(claims)
            if user is None:
                raise _Refused(_UNKNOWN_CHARACTER)
            if not getattr(user, "is_active", True):
                raise _Refused(_INACTIVE)
        except AuthenticationFailed as exc:
            # authenticate_header() runs later, on the same request, to build the 401.
            setattr(request, _ERROR_ATTRIBUTE, getattr(exc, "header_message", exc.detail))
            raise
        return user, EveAccessToken(raw, claims)

    def authenticate_header(self, request: Request) -> str:
        header = f'{self.keyword} realm="{self.www_authenticate_realm}"'
        error = getattr(request, _ERROR_ATTRIBUTE, None)
        if error:
            # RFC 6750's error_description is ASCII: English, whatever the body's language.
            with translation.override("en"):
                description = _UNSAFE_HEADER_CHARS.sub("", str(error))
            header += f', error="invalid_token", error_description="{description}"'
        return header

    # -- steps ---------------------------------------------------------------------------

    @sensitive_variables()
    def _bearer_token(self, request: Request) -> str | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None  # Basic, Token, ...: someone else's scheme
        if len(parts) != 2:
            setattr(request, _ERROR_ATTRIBUTE, _MALFORMED_HEADER)
            raise _Refused(_MALFORMED_HEADER)
        try:
            return parts[1].decode("ascii")
        except UnicodeDecodeError:
            setattr(request, _ERROR_ATTRIBUTE, _MALFORMED_HEADER)
            raise _Refused(_MALFORMED_HEADER) from None

    @sensitive_variables()
    def _verify(self, raw: str) -> AccessTokenClaims:
        try:
            return verify_access_token(raw, client_id=self.get_client_id())
        except InvalidJWTError as exc:
            raise _Refused(_REASONS.get(exc.reason, _INVALID)) from exc
        except SSOConfigurationError:
            raise  # our settings are wrong: a 500 and a loud log, not a client error
        except SSOError as exc:
            logger.warning("Bearer token not verifiable, EVE SSO keys unavailable: %s", exc)
            raise SSOUnavailable(wait=getattr(exc, "retry_after", None)) from exc
