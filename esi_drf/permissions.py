"""DRF permissions that need an EVE SSO token: ``HasESIToken`` (one) and ``HasESITokens`` (all).

    class SkillsView(APIView):
        permission_classes = [HasESIToken]
        required_scopes = "esi-skills.read_skills.v1"

        def get(self, request):
            return Response(fetch_skills(request.esi_token.valid_access_token()))

Scopes come from ``HasESIToken.with_scopes("a b")``, else the view's
``get_required_scopes()``, else its ``required_scopes``. Where the token comes from
depends on how the request was authenticated:

- ``EveSSOAuthentication`` (a bearer access token): the token itself, if its ``scp``
  holds the scopes. ``request.esi_token`` is then ``request.auth`` (an
  ``EveAccessToken``; ``valid_access_token()`` works on both kinds).
- anything else (e.g. a session): the user's stored tokens, through
  ``Token.objects.for_user(...).valid_tokens()``, the lookup the mixins use. The client
  may name a character in the ``X-ESI-Character-ID`` header; otherwise the most recently
  refreshed token wins.

A refusal is a 403 whose JSON says which scopes are missing and where to get them
(see ``esi_drf.exceptions``), also when composed with ``&``, ``|`` and ``~``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from esi_views.models import Token
from esi_views.scopes import ScopesArg, normalize_scopes

from .authentication import EveAccessToken
from .composition import ESIPermissionMetaclass
from .exceptions import (
    CHARACTER_INVALID,
    TOKEN_REQUIRED,
    SSOUnavailable,
    token_required_detail,
)

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

__all__ = ["CHARACTER_HEADER", "HasESIToken", "HasESITokens"]

CHARACTER_HEADER = "X-ESI-Character-ID"
_MAX_CHARACTER_ID = 2**63 - 1  # Token.character_id is a BigIntegerField


class _InvalidCharacterHeader(ValueError):
    pass


def _normalized(owner: str, scopes: Any) -> frozenset[str]:
    if isinstance(scopes, Mapping):
        # normalize_scopes would read a dict's keys as scope names: an action name
        # like "list" would silently become the "scope" required.
        raise ImproperlyConfigured(
            f"{owner}: required scopes per action must be picked by the view's "
            "get_required_scopes() (e.g. return self.required_scopes[self.action]), "
            "not given as a dict."
        )
    try:
        return normalize_scopes(scopes)
    except TypeError as exc:
        raise ImproperlyConfigured(
            f"{owner}: scopes must be a space-delimited string or a list of scope names, "
            f"not {scopes!r}."
        ) from exc


def _stored_tokens(request: Request, scopes: frozenset[str], character_id: int | None) -> Any:
    found = Token.objects.for_user(request.user, scopes, character_id=character_id).valid_tokens()
    if found.sso_unavailable:
        # The user has tokens, but the SSO could not renew any now: "get a token" would
        # be wrong advice, "try again" is right.
        raise SSOUnavailable(
            _("The EVE SSO could not be reached to renew your token. Try again shortly."),
            wait=found.retry_after,
        )
    return found.tokens


class HasESIToken(BasePermission, metaclass=ESIPermissionMetaclass):
    """One token with the required scopes, as ``request.esi_token``."""

    #: Set by :meth:`with_scopes`; None means "ask the view".
    scopes: ClassVar[frozenset[str] | None] = None
    message: Any = None
    code: str | None = None

    @classmethod
    def with_scopes(cls, scopes: ScopesArg) -> type[HasESIToken]:
        """A subclass that requires ``scopes`` whatever the view says (e.g. for ``@api_view``)."""
        fixed = _normalized(f"{cls.__name__}.with_scopes()", scopes)
        name = f"{cls.__name__}.with_scopes({' '.join(sorted(fixed))!r})"
        metaclass: type = type(cls)  # ESIPermissionMetaclass, or a subclass of it
        return metaclass(
            name,
            (cls,),
            {
                "scopes": fixed,
                "__module__": cls.__module__,
                "__qualname__": name,
            },
        )

    # -- hooks ---------------------------------------------------------------------------

    def get_required_scopes(self, request: Request | None, view: Any) -> frozenset[str]:
        """The scopes this request needs; also read by the OpenAPI schema (request may be None)."""
        if self.scopes is not None:
            return self.scopes
        owner = type(view).__qualname__
        getter = getattr(view, "get_required_scopes", None)
        if callable(getter):
            return _normalized(f"{owner}.get_required_scopes()", getter())
        scopes = getattr(view, "required_scopes", None)
        if scopes is None:
            # Never "no scopes needed" by omission: that would hand out any token.
            raise ImproperlyConfigured(
                f"{owner} uses {type(self).__name__} but names no scopes: set "
                'required_scopes ("" for any token), define get_required_scopes(), or use '
                f"{type(self).__name__}.with_scopes(...)."
            )
        return _normalized(f"{owner}.required_scopes", scopes)

    def get_character_id(self, request: Request) -> int | None:
        """The character the client asked for in ``X-ESI-Character-ID``, if any."""
        raw = request.headers.get(CHARACTER_HEADER)
        if raw is None:
            return None
        value = raw.strip()
        if not (value.isascii() and value.isdigit() and len(value) <= 19):
            raise _InvalidCharacterHeader(value[:40])
        if not 0 < int(value) <= _MAX_CHARACTER_ID:
            raise _InvalidCharacterHeader(value)
        return int(value)

    # -- DRF -----------------------------------------------------------------------------

    def has_permission(self, request: Request, view: Any) -> bool:
        scopes = self.get_required_scopes(request, view)
        try:
            character_id = self.get_character_id(request)
        except _InvalidCharacterHeader:
            return self._refuse(
                request,
                scopes,
                CHARACTER_INVALID,
                _("%(header)s must be a character id (digits only).")
                % {"header": CHARACTER_HEADER},
            )
        if isinstance(request.auth, EveAccessToken):
            found = self._from_bearer(request.auth, scopes, character_id)
        else:
            found = self._from_stored_tokens(request, scopes, character_id)
        if not found:
            detail = (
                _("No usable EVE SSO token for that character with the required scopes.")
                if character_id is not None
                else None
            )
            return self._refuse(request, scopes, TOKEN_REQUIRED, detail)
        self._hand_over(request, found)
        return True

    # -- the two sources ------------------------------------------------------------------

    def _from_bearer(
        self, auth: EveAccessToken, scopes: frozenset[str], character_id: int | None
    ) -> list[EveAccessToken]:
        # The client proved who it is with this very token: check its scp, not the store.
        if character_id not in (None, auth.character_id) or not scopes <= auth.scopes:
            return []
        return [auth]

    def _from_stored_tokens(
        self, request: Request, scopes: frozenset[str], character_id: int | None
    ) -> Any:
        # for_user only ever returns this user's tokens, so a header naming someone
        # else's character simply finds nothing.
        tokens = _stored_tokens(request, scopes, character_id)
        return tokens[:1]

    def _hand_over(self, request: Request, found: Any) -> None:
        # Our own attribute on the request, as auth's request.user.
        request.esi_token = found[0]  # type: ignore[attr-defined]

    def _refuse(
        self,
        request: Request,
        scopes: frozenset[str],
        code: str,
        detail: StrOrPromise | None = None,
    ) -> bool:
        # DRF reads message and code off this instance right after has_permission.
        self.message = token_required_detail(request, scopes, detail=detail, code=code)
        self.code = code
        return False


class HasESITokens(HasESIToken):
    """Every valid token of the user with the scopes, as ``request.esi_tokens`` (a queryset).

    Bearer-authenticated requests get ``[request.auth]``. ``X-ESI-Character-ID``
    narrows the set to that character.
    """

    def _from_stored_tokens(
        self, request: Request, scopes: frozenset[str], character_id: int | None
    ) -> Any:
        tokens = _stored_tokens(request, scopes, character_id)
        return tokens if tokens else []  # already evaluated; the view reads these rows

    def _hand_over(self, request: Request, found: Any) -> None:
        request.esi_tokens = found  # type: ignore[attr-defined]  # as esi_token
